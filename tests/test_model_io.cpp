#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/graph_stats.h"
#include "joulecut/freeze.h"
#include "joulecut/model.h"
#include "joulecut/models.h"
#include "temp_dir.h"

using Catch::Matchers::Contains;
using joulecut::UserError;

TEST_CASE("save then load keeps weights, outputs and metadata", "[io][model]") {
  TempDir dir;
  auto module = joulecut::build_reference_model("lenet5", 7);
  module.eval();
  joulecut::ModelMetadata meta;
  meta.arch = "lenet5";
  meta.dataset = joulecut::fashion_mnist_spec();
  meta.provenance_json = R"({"seed": 7})";
  const auto path = dir.file("m.pt");
  joulecut::save_model(module, meta, path);
  auto loaded = joulecut::load_model(path);
  REQUIRE(loaded.metadata.has_value());
  CHECK(loaded.metadata->arch == "lenet5");
  CHECK(loaded.metadata->dataset.mean == Approx(0.2860));
  CHECK(loaded.metadata->dataset.class_names.size() == 10);
  CHECK(loaded.metadata->provenance_json.find("\"seed\":7") != std::string::npos);
  CHECK(loaded.file_bytes == joulecut::file_size_bytes(path));
  const auto x = at::randn({3, 1, 28, 28});
  at::NoGradGuard no_grad;
  CHECK(at::equal(module.forward({x}).toTensor(), loaded.module.forward({x}).toTensor()));
}

TEST_CASE("bad model files give one-line errors naming the file", "[io][model]") {
  TempDir dir;
  SECTION("missing") {
    CHECK_THROWS_WITH(joulecut::load_model(dir.file("missing.pt")), Contains("missing.pt") && Contains("cannot open"));
  }
  SECTION("not a TorchScript archive") {
    std::ofstream(dir.file("text.pt")) << "this is not a model\n";
    CHECK_THROWS_WITH(joulecut::load_model(dir.file("text.pt")), Contains("text.pt: not a TorchScript archive"));
  }
  SECTION("truncated archive") {
    auto module = joulecut::build_reference_model("mlp", 1);
    joulecut::save_model(module, std::nullopt, dir.file("full.pt"));
    std::ifstream in(dir.file("full.pt"), std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(dir.file("cut.pt"), std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() / 2));
    try {
      joulecut::load_model(dir.file("cut.pt"));
      FAIL("a truncated archive loaded");
    } catch (const UserError& e) {
      const std::string message = e.what();
      CHECK_THAT(message, Contains("cut.pt") && Contains("truncated or corrupt"));
      CHECK(message.find('\n') == std::string::npos);
    }
  }
  SECTION("a zip that is not TorchScript") {
    std::ofstream(dir.file("zip.pt"), std::ios::binary) << std::string("PK\x03\x04garbage", 11);
    CHECK_THROWS_AS(joulecut::load_model(dir.file("zip.pt")), UserError);
  }
}

TEST_CASE("saving never overwrites the input and leaves no partial file", "[io][model]") {
  TempDir dir;
  auto module = joulecut::build_reference_model("mlp", 1);
  const auto path = dir.file("in.pt");
  joulecut::save_model(module, std::nullopt, path);
  const auto before = joulecut::sha256_file(path);
  auto other = joulecut::build_reference_model("mlp", 2);
  CHECK_THROWS_WITH(joulecut::save_model(other, std::nullopt, path, path), Contains("refusing to overwrite"));
  CHECK(joulecut::sha256_file(path) == before);
  CHECK_THROWS_AS(joulecut::save_model(other, std::nullopt, dir.file("missing-dir/out.pt")), UserError);
  CHECK_FALSE(std::filesystem::exists(dir.file("missing-dir")));
}

TEST_CASE("a model that does not fit the data set's input is reported", "[io][model]") {
  torch::jit::Module m("Wrong");
  m.register_parameter("weight", at::randn({10, 100}), false);
  m.define("def forward(self, x):\n    return torch.linear(torch.flatten(x, 1), self.weight)\n");
  joulecut::TensorDataset data;
  data.spec = joulecut::fashion_mnist_spec();
  data.images = at::zeros({4, 1, 28, 28});
  data.labels = at::zeros({4}, at::kLong);
  try {
    joulecut::check_model_accepts(m, data, "wrong.pt");
    FAIL("the mismatch went unnoticed");
  } catch (const UserError& e) {
    const std::string message = e.what();
    CHECK_THAT(message, Contains("wrong.pt: model does not accept fashion-mnist input of shape [2, 1, 28, 28]"));
    CHECK(message.find('\n') == std::string::npos);
  }
}

// Files written by Python PyTorch 1.13 (tests/fixtures/make_python_fixtures.py): joulecut
// loads, runs and counts models it did not write.
TEST_CASE("TorchScript scripted and traced by Python load and run", "[io][model][macs]") {
  const std::vector<float> expected = {0.095747f, -0.097602f, -0.264124f, 0.108740f, 0.029009f,
                                       -0.069833f, -0.101879f, 0.025213f, -0.070046f, 0.207596f};
  for (const char* name : {"python-scripted-cnn.pt", "python-traced-cnn.pt"}) {
    INFO(name);
    auto loaded = joulecut::load_model(std::string(JOULECUT_FIXTURES) + "/" + name);
    CHECK_FALSE(loaded.metadata.has_value());
    loaded.module.eval();
    at::NoGradGuard no_grad;
    const auto x = at::linspace(-1, 1, 784).reshape({1, 1, 28, 28});
    const auto y = loaded.module.forward({x}).toTensor();
    REQUIRE(y.numel() == 10);
    for (int i = 0; i < 10; ++i) CHECK(y[0][i].item<float>() == Approx(expected[i]).margin(1e-5));
    const auto stats = joulecut::analyze_model(loaded.module, at::zeros({1, 1, 28, 28}));
    REQUIRE(stats.layers.size() == 3);
    CHECK(stats.layers[0].macs == 8 * 28 * 28 * 9);
    CHECK(stats.layers[1].macs == 16 * 14 * 14 * (4 * 9));  // groups = 2
    CHECK(stats.layers[2].macs == 16 * 10);
    if (std::string(name) == "python-scripted-cnn.pt") {
      CHECK(stats.layers[0].name == "features.0");
      CHECK(stats.layers[1].name == "features.4");
      CHECK(stats.layers[2].name == "classifier");
    }
  }
}

TEST_CASE("deployable forms: plain, frozen and frozen + optimize_for_inference compute the same", "[io][model]") {
  torch::jit::Module model = joulecut::build_reference_model("lenet5", 3);
  const at::Tensor x = at::randn({2, 1, 28, 28});
  at::NoGradGuard no_grad;
  model.eval();
  const at::Tensor expected = model.forward({x}).toTensor();
  const joulecut::DeployableForms made = joulecut::deployable_forms(model);
  REQUIRE(made.forms.size() == 3);
  CHECK(made.why_not_frozen.empty());
  CHECK(made.forms[0].name == "plain");
  CHECK(made.forms[1].name == "frozen");
  CHECK(made.forms[2].name == "frozen + optimize_for_inference");
  for (auto form : made.forms) CHECK(at::allclose(form.module.forward({x}).toTensor(), expected, 1e-4, 1e-5));
}

