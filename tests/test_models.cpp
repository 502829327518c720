#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include "joulecut/error.h"
#include "joulecut/models.h"

TEST_CASE("every reference architecture runs on Fashion-MNIST-shaped input", "[models]") {
  for (const auto& arch : joulecut::reference_architectures()) {
    INFO(arch);
    auto m = joulecut::build_reference_model(arch, 1);
    m.eval();
    at::NoGradGuard no_grad;
    const auto y = m.forward({at::randn({3, 1, 28, 28})}).toTensor();
    CHECK(y.sizes() == at::IntArrayRef({3, 10}));
    CHECK_FALSE(joulecut::describe_architecture(arch).empty());
  }
}

TEST_CASE("initialisation is fixed by the seed", "[models]") {
  auto a = joulecut::build_reference_model("resnet8", 3);
  auto b = joulecut::build_reference_model("resnet8", 3);
  auto c = joulecut::build_reference_model("resnet8", 4);
  auto pa = a.parameters(), pb = b.parameters(), pc = c.parameters();
  auto ib = pb.begin(), ic = pc.begin();
  bool all_equal = true, any_differs = false;
  for (const auto& p : pa) {
    all_equal = all_equal && at::equal(p, *ib);
    any_differs = any_differs || !at::equal(p, *ic);
    ++ib;
    ++ic;
  }
  CHECK(all_equal);
  CHECK(any_differs);
}

TEST_CASE("unknown architectures are named in the error", "[models]") {
  CHECK_THROWS_WITH(joulecut::build_reference_model("vgg", 1), Catch::Matchers::Contains("unknown architecture 'vgg'"));
}
