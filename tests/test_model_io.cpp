#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
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
