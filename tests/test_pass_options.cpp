// Option tables: one declaration gives parsing, printing, defaults and did-you-mean.
#include <catch2/catch.hpp>

#include "joulecut/error.h"
#include "joulecut/pass_options.h"

using Catch::Matchers::Contains;
using joulecut::OptionTable;
using joulecut::OptionType;

namespace {

struct Selection {
  std::string include;
  bool first_last = false;
};

struct ToyOptions {
  double ratio = 0.5;
  int rounds = 1;
  std::int64_t batch = 64;
  std::string mode = "fast";
  std::string teacher;
  Selection layers;
};

const OptionTable<ToyOptions>& toy_table() {
  using O = ToyOptions;
  static const OptionTable<O> table(
      "toy", {joulecut::option("ratio", "fraction removed", &O::ratio), joulecut::option("rounds", "rounds", &O::rounds),
              joulecut::option("batch", "batch size", &O::batch), joulecut::option("mode", "fast or slow", &O::mode),
              joulecut::path_option("teacher", "a file", &O::teacher),
              joulecut::option_at<O>("include", "globs", [](O& o) -> std::string& { return o.layers.include; }),
              joulecut::option_at<O>("first-last", "also the ends", [](O& o) -> bool& { return o.layers.first_last; })});
  return table;
}

}  // namespace

TEST_CASE("an option table reads every type and prints only what differs from the defaults", "[options]") {
  const auto& t = toy_table();
  const ToyOptions o = t.parse({{"ratio", "0.25"}, {"rounds", "3"}, {"batch", "128"}, {"include", "conv*"}, {"first-last", "true"}});
  CHECK(o.ratio == 0.25);
  CHECK(o.rounds == 3);
  CHECK(o.batch == 128);
  CHECK(o.mode == "fast");
  CHECK(o.layers.include == "conv*");
  CHECK(o.layers.first_last);
  // Table order, not the order given; defaults left out.
  CHECK(t.print(o) == "ratio=0.25,rounds=3,batch=128,include=conv*,first-last=true");
  CHECK(t.print(ToyOptions{}).empty());
  // Printing reads back as the same options.
  joulecut::PassOptionMap again;
  const std::string text = t.print(o);
  for (std::size_t start = 0; start < text.size();) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    again[item.substr(0, item.find('='))] = item.substr(item.find('=') + 1);
    start = comma + 1;
  }
  CHECK(t.print(t.parse(again)) == text);
}

TEST_CASE("an option table describes its options with their defaults", "[options]") {
  const auto info = toy_table().describe();
  REQUIRE(info.size() == 7);
  CHECK(info[0].name == "ratio");
  CHECK(info[0].type == OptionType::number);
  CHECK(info[0].default_text == "0.5");
  CHECK(info[1].type == OptionType::integer);
  CHECK(info[2].default_text == "64");
  CHECK(info[3].type == OptionType::text);
  CHECK(info[3].default_text == "fast");
  CHECK(info[4].type == OptionType::path);
  CHECK(info[6].type == OptionType::flag);
  CHECK(info[6].default_text == "false");
  CHECK(joulecut::options_summary(info) == "ratio=0.5 rounds=1 batch=64 mode=fast teacher= include= first-last=false");
  CHECK(joulecut::options_summary({}) == "no options");
}

TEST_CASE("an option table refuses bad values and unknown keys, naming the pass", "[options]") {
  const auto& t = toy_table();
  CHECK_THROWS_WITH(t.parse({{"ratio", "half"}}), Contains("toy: ratio='half' is not a number"));
  CHECK_THROWS_WITH(t.parse({{"rounds", "2.5"}}), Contains("toy: rounds must be an integer"));
  CHECK_THROWS_WITH(t.parse({{"first-last", "yes"}}), Contains("toy: first-last='yes' must be true or false"));
  CHECK_THROWS_WITH(t.parse({{"rati", "0.1"}}), Contains("toy: unknown option 'rati'") && Contains("did you mean 'ratio'"));
  CHECK_THROWS_AS(t.parse({{"nothing", "1"}}), joulecut::UserError);
  const OptionTable<ToyOptions> empty("bare", {});
  CHECK_THROWS_WITH(empty.parse({{"x", "1"}}), Contains("bare: unknown option 'x'") && Contains("it has no options"));
}
