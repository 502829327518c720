// The pass registry and the pipeline runner: every pass's options come from its table, and a
// pipeline runs the same way for the CLI, sweeps and the C++ API.
#include <catch2/catch.hpp>

#include <chrono>

#include <nlohmann/json.hpp>

#include "joulecut/error.h"
#include "joulecut/models.h"
#include "joulecut/pipeline.h"
#include "temp_dir.h"

using namespace joulecut;
using Catch::Matchers::Contains;

TEST_CASE("every registered pass prints and parses its options through its table", "[pass]") {
  int round_trips = 0;
  for (const auto& name : pass_names()) {
    const auto options = pass_options(name);
    INFO(name);
    // Defaults give the bare name; each option set away from its default prints back.
    CHECK(make_pass(name, {})->text() == name);
    for (const auto& o : options) {
      CHECK(!o.help.empty());
      if (o.type != OptionType::number) continue;
      // A number option: pick a different value that every pass accepts (in [0, 1) or > 0).
      const std::string value = o.default_text == "0.25" ? "0.3" : "0.25";
      std::unique_ptr<Pass> pass;
      try {
        pass = make_pass(name, {{o.name, value}});
      } catch (const UserError&) {
        continue;  // out of this pass's range (its own check); the table read it
      }
      CHECK(pass->text() == name + "<" + o.name + "=" + value + ">");
      CHECK(parse_pipeline(pass->text())[0]->text() == pass->text());
      ++round_trips;
    }
  }
  CHECK(round_trips >= 14);  // 14 number options today: the loop checked them, not only skipped them
  // A switch (on by default) reads and prints back too.
  CHECK(make_pass("distill", {{"keep-zeros", "false"}})->text() == "distill<keep-zeros=false>");
  CHECK(make_pass("distill", {{"keep-zeros", "true"}})->text() == "distill");
  CHECK(pass_options("fold-bn").empty());  // aliases resolve
  CHECK(pass_options("prune").size() == pass_options("prune-magnitude").size());
  CHECK_THROWS_WITH(pass_options("prune-magic"), Contains("unknown pass 'prune-magic'"));
}

TEST_CASE("--help's pass list shows every option with its default", "[pass]") {
  const std::string help = describe_passes();
  CHECK_THAT(help, Contains("prune-magnitude: unstructured L1 pruning"));
  CHECK_THAT(help, Contains("sparsity=0.5 scope=layer include= exclude= first-last=false finetune-epochs=0"));
  CHECK_THAT(help, Contains("quantize-static: static int8") && Contains("backend=onednn observer=minmax percentile=99.99"));
  CHECK_THAT(help, Contains("distill: ") && Contains("epochs=3") && Contains("weight-decay=0.0005"));
  CHECK_THAT(help, Contains("fold-batchnorm: ") && Contains("no options"));
}

TEST_CASE("a pass says whether it needs training data", "[pass]") {
  CHECK_FALSE(needs_training_data(parse_pipeline("prune-magnitude,prune-channel,fold-bn,fuse-relu,lower-sparse")));
  CHECK(needs_training_data(parse_pipeline("prune-magnitude<finetune-epochs=1>")));
  CHECK(needs_training_data(parse_pipeline("quantize-static")));
  CHECK(needs_training_data(parse_pipeline("fold-bn,distill")));
}

TEST_CASE("the pipeline runner applies passes in order with hooks, and records provenance", "[pass]") {
  TempDir dir;
  const std::string path = dir.file("lenet5.pt");
  ModelMetadata metadata;
  metadata.arch = "lenet5";
  metadata.provenance_json = R"({"trained": true})";
  save_model(build_reference_model("lenet5", 1), metadata, path);

  const auto passes = parse_pipeline("prune-magnitude<sparsity=0.5>,prune-nm");
  const PipelineInput input = load_pipeline_input(path, DataSource{}, needs_training_data(passes));
  CHECK_FALSE(input.train);  // no pass trains: the data set is not read
  CHECK(input.metadata.arch == "lenet5");
  PassContext context = pass_context(input, 7, false);
  CHECK(context.seed == 7);
  CHECK(context.teacher == &input.loaded.module);

  std::vector<std::string> events;
  PassHooks hooks;
  hooks.before = [&](std::size_t i, const Pass& p) { events.push_back("before " + std::to_string(i) + " " + p.name()); };
  hooks.after = [&](std::size_t i, const Pass& p, const PassResult& r) {
    events.push_back("after " + std::to_string(i) + " " + p.name() + ": " + r.report.pass);
  };
  const auto applied = apply_passes(passes, input.loaded.module, context, hooks);
  CHECK(events == std::vector<std::string>{"before 0 prune-magnitude", "after 0 prune-magnitude: prune-magnitude",
                                           "before 1 prune-nm", "after 1 prune-nm: prune-nm"});
  REQUIRE(applied.reports.size() == 2);
  // The input is never changed.
  for (const auto& p : input.loaded.module.named_parameters(true))
    if (p.name == "fc1.weight") CHECK((p.value == 0).sum().item<std::int64_t>() == 0);

  const auto provenance =
      nlohmann::json::parse(pipeline_provenance("test", print_pipeline(passes), 7, input, R"({"stage": 2})"));
  CHECK(provenance["command"] == "test");
  CHECK(provenance["pipeline"] == "prune-magnitude,prune-nm");
  CHECK(provenance["seed"] == 7);
  CHECK(provenance["source"] == path);
  CHECK(provenance["source_sha256"] == input.sha256);
  CHECK(provenance["source_provenance"]["trained"] == true);
  CHECK(provenance["stage"] == 2);
}

TEST_CASE("the timing service runs both sides alternately after warm-up, and gives each one's median", "[pass]") {
  std::string order;
  int slow_runs = 0;
  const auto fast = [&] { order += 'a'; };
  const auto slow = [&] {
    order += 'b';
    ++slow_runs;
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(300);
    while (std::chrono::steady_clock::now() < until) {
    }
  };
  const PairTiming t = default_timing().compare("test: fast vs slow", fast, slow, 0.0);
  // 3 warm-up pairs and at least 9 timed ones, always a then b.
  REQUIRE(order.size() >= 24);
  for (std::size_t i = 0; i < order.size(); ++i) CHECK(order[i] == (i % 2 == 0 ? 'a' : 'b'));
  CHECK(t.b_us >= 300);  // a bound the busy wait guarantees; no assertion on which side is faster
  CHECK(t.a_us >= 0);
  slow_runs = 0;
  CHECK(default_timing().median_us("test: slow", slow, 2, 5) >= 300);
  CHECK(slow_runs == 7);
}
