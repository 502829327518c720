#pragma once
// Pass options, declared once. Each pass lists its options in one OptionTable: name, type,
// default (read from the options struct), one-line help, and how the value is read. From that
// table come the parsing and printing of pipeline text ("k=v,k=v"), the defaults in --help,
// the CLI flags of the commands that expose the pass (compress/cli), recipe and grid keys, and
// the did-you-mean for a misspelt option. Checks of ranges stay with the pass (its constructor
// or parse), so the CLI and pipelines check a value the same way. Torch-free.
//
// Example (one option = one row):
//   static const OptionTable<MyOptions> table("my-pass", {
//       option("ratio", "fraction of channels removed, in [0, 1)", &MyOptions::ratio),
//       option_at<MyOptions>("include", "'|'-separated globs", [](MyOptions& o) -> std::string& { return o.layers.include; }),
//   });
#include <cstdint>
#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "joulecut/error.h"
#include "joulecut/text.h"

namespace joulecut {

// Options as written in pipeline text, a recipe or on the command line: key -> value text.
using PassOptionMap = std::map<std::string, std::string>;

// path: a file; in a recipe, a relative path is read from the recipe's folder.
enum class OptionType { number, integer, text, flag, path };
const char* option_type_name(OptionType type);  // "number", "integer", "text", "true|false", "file"

// One option as help texts, CLI flags and grids see it.
struct OptionInfo {
  std::string name;          // "sparsity"
  OptionType type = OptionType::text;
  std::string default_text;  // as it reads back ("0.5", "layer"; "" for an empty text)
  std::string help;          // one line
  std::vector<std::string> choices;  // a choice option's values ("onednn", "torch", "cuda"); else empty
};

// One value of a choice option and, optionally, what it means ("joulecut's int8 runtime").
struct OptionChoice {
  std::string value;
  std::string meaning;
};

// Shortest text that reads back as the same double.
std::string number_text(double v);

// "name=default name=default ..." for a one-line summary of a pass's options.
std::string options_summary(const std::vector<OptionInfo>& options);

namespace option_detail {
// Each reads `text` as the option `key` of `pass`, or throws UserError naming both.
double read_number(const std::string& pass, const std::string& key, const std::string& text);
std::int64_t read_integer(const std::string& pass, const std::string& key, const std::string& text);
bool read_flag(const std::string& pass, const std::string& key, const std::string& text);
// Throws UserError: "PASS: unknown option 'KEY' (did you mean ...) (known: ...)".
[[noreturn]] void unknown_option(const std::string& pass, const std::string& key, const std::vector<std::string>& known);

template <class T, class = void>
struct Traits;
template <>
struct Traits<double> {
  static constexpr OptionType type = OptionType::number;
  static std::string text(double v) { return number_text(v); }
  static double read(const std::string& p, const std::string& k, const std::string& t) { return read_number(p, k, t); }
};
template <class T>
struct Traits<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  static constexpr OptionType type = OptionType::integer;
  static std::string text(T v) { return std::to_string(v); }
  static T read(const std::string& p, const std::string& k, const std::string& t) { return T(read_integer(p, k, t)); }
};
template <>
struct Traits<bool> {
  static constexpr OptionType type = OptionType::flag;
  static std::string text(bool v) { return v ? "true" : "false"; }
  static bool read(const std::string& p, const std::string& k, const std::string& t) { return read_flag(p, k, t); }
};
template <>
struct Traits<std::string> {
  static constexpr OptionType type = OptionType::text;
  static std::string text(const std::string& v) { return v; }
  static std::string read(const std::string&, const std::string&, const std::string& t) { return t; }
};
}  // namespace option_detail

// One row of an option table.
template <class Options>
struct OptionDecl {
  OptionInfo info;  // default_text is filled in by the table, from Options{}
  std::function<std::string(const Options&)> get;                                        // the value as text
  std::function<void(Options&, const std::string& pass, const std::string& text)> set;  // reads it; throws UserError
};

// An option stored where `access` points (a field of the options struct or of a struct in it).
template <class Options, class Access>
OptionDecl<Options> option_at(std::string name, std::string help, Access access) {
  using T = std::decay_t<decltype(access(std::declval<Options&>()))>;
  using Tr = option_detail::Traits<T>;
  OptionDecl<Options> d;
  d.info = {std::move(name), Tr::type, "", std::move(help)};
  d.get = [access](const Options& o) {
    Options copy = o;  // options structs are small; this keeps `access` one function
    return Tr::text(access(copy));
  };
  d.set = [access, key = d.info.name](Options& o, const std::string& pass, const std::string& text) {
    access(o) = Tr::read(pass, key, text);
  };
  return d;
}

// An option stored in a field of the options struct.
template <class Options, class T>
OptionDecl<Options> option(std::string name, std::string help, T Options::*field) {
  return option_at<Options>(std::move(name), std::move(help), [field](Options& o) -> T& { return o.*field; });
}

namespace option_detail {
// "PASS: KEY 'VALUE': choose a (meaning), b or c (did you mean 'b'?)", as a UserError.
[[noreturn]] inline void wrong_choice(const std::string& pass, const std::string& key, const std::string& value,
                                      const std::vector<OptionChoice>& choices) {
  std::string list;
  std::vector<std::string> values;
  for (std::size_t i = 0; i < choices.size(); ++i) {
    list += i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ";
    list += choices[i].value + (choices[i].meaning.empty() ? "" : " (" + choices[i].meaning + ")");
    values.push_back(choices[i].value);
  }
  throw UserError(pass + ": " + key + " '" + value + "': choose " + list + did_you_mean(value, values));
}
}  // namespace option_detail

// A text option whose value is one of `choices`, declared here once: the table reads no other
// value, OptionTable::check() refuses one set directly in the struct, and help shows them.
template <class Options>
OptionDecl<Options> choice_option(std::string name, std::string help, std::string Options::*field,
                                  std::vector<OptionChoice> choices) {
  OptionDecl<Options> d = option(std::move(name), std::move(help), field);
  for (const auto& c : choices) d.info.choices.push_back(c.value);
  d.set = [field, key = d.info.name, choices](Options& o, const std::string& pass, const std::string& text) {
    const bool known = std::any_of(choices.begin(), choices.end(), [&](const OptionChoice& c) { return c.value == text; });
    if (!known) option_detail::wrong_choice(pass, key, text, choices);
    o.*field = text;
  };
  return d;
}

// A text option that names a file.
template <class Options>
OptionDecl<Options> path_option(std::string name, std::string help, std::string Options::*field) {
  OptionDecl<Options> d = option(std::move(name), std::move(help), field);
  d.info.type = OptionType::path;
  return d;
}

template <class Options>
class OptionTable {
 public:
  OptionTable(std::string pass, std::vector<OptionDecl<Options>> rows) : pass_(std::move(pass)), rows_(std::move(rows)) {
    const Options defaults{};
    for (auto& r : rows_) r.info.default_text = r.get(defaults);
  }

  // Defaults, then every given option read by its row. Unknown keys throw UserError with a
  // did-you-mean. Ranges are the pass's to check.
  Options parse(const PassOptionMap& map) const {
    Options o{};
    for (const auto& [key, value] : map) {
      const OptionDecl<Options>* row = find(key);
      if (!row) option_detail::unknown_option(pass_, key, names());
      row->set(o, pass_, value);
    }
    return o;
  }

  // "k=v,k=v": the options that differ from the defaults, in table order ("" when none), so
  // parse(print(o)) gives o back.
  std::string print(const Options& o) const {
    std::vector<std::string> changed;
    for (const auto& r : rows_) {
      const std::string value = r.get(o);
      if (value != r.info.default_text) changed.push_back(r.info.name + "=" + value);
    }
    return join(changed, ",");
  }

  // Throws UserError for a choice option whose value in `o` is not one of its choices (options
  // built in C++ rather than parsed from text).
  void check(const Options& o) const {
    for (const auto& r : rows_)
      if (!r.info.choices.empty()) {
        Options copy = o;
        r.set(copy, pass_, r.get(o));
      }
  }

  std::vector<OptionInfo> describe() const {
    std::vector<OptionInfo> out;
    for (const auto& r : rows_) out.push_back(r.info);
    return out;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& r : rows_) out.push_back(r.info.name);
    return out;
  }
  const std::string& pass() const { return pass_; }

 private:
  const OptionDecl<Options>* find(const std::string& key) const {
    for (const auto& r : rows_)
      if (r.info.name == key) return &r;
    return nullptr;
  }
  std::string pass_;
  std::vector<OptionDecl<Options>> rows_;
};

}  // namespace joulecut
