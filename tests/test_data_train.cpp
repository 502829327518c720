// Tests that read the real Fashion-MNIST files (Debian package dataset-fashion-mnist).
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "joulecut/threads.h"
#include "joulecut/data.h"
#include "joulecut/evaluate.h"
#include "joulecut/models.h"

TEST_CASE("Fashion-MNIST test split loads straight from the gzip files", "[data]") {
  const auto test = joulecut::load_dataset({}, joulecut::Split::test);
  CHECK(test.size() == 10000);
  CHECK(test.images.sizes() == at::IntArrayRef({10000, 1, 28, 28}));
  CHECK(test.spec.classes == 10);
  // The test set is balanced: 1000 images per class.
  const auto counts = at::bincount(test.labels);
  CHECK(at::all(counts == 1000).item<bool>());
  // Normalized with the training statistics, the test images have mean near 0 and std near 1.
  CHECK(test.images.mean().item<double>() == Approx(0.0).margin(0.01));
  CHECK(test.images.std().item<double>() == Approx(1.0).margin(0.02));
}

TEST_CASE("a short training run learns, and is deterministic", "[train]") {
  joulecut::configure_threads(2);
  joulecut::TrainOptions options;
  options.arch = "mlp";
  options.epochs = 1;
  options.progress = false;
  const auto full = joulecut::train_reference_model(options, {}, "test");
  // One epoch of LeNet-300-100 reaches ~87%; a broken loop stays near 10%.
  CHECK(full.test_accuracy >= 0.80);
  CHECK(full.metadata.provenance_json.find("\"seed\":1") != std::string::npos);

  options.train_limit = 2000;
  const auto a = joulecut::train_reference_model(options, {}, "test");
  const auto b = joulecut::train_reference_model(options, {}, "test");
  CHECK(a.test_accuracy == b.test_accuracy);
  auto pb = b.module.parameters();
  auto it = pb.begin();
  for (const auto& p : a.module.parameters()) CHECK(at::equal(p, *it++));
}
