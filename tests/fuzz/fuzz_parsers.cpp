// libFuzzer targets for the parsers of user data (scripts/fuzz builds and runs them). Each input
// must either parse or throw UserError; anything else (a crash, a sanitizer report, an
// exception of another type, a hang) is a finding. One binary per target, chosen at compile time.
#include <cstddef>
#include <cstdint>
#include <string>

#include "joulecut/cifar.h"
#include "joulecut/error.h"
#include "joulecut/image.h"
#include "joulecut/input_spec.h"
#include "joulecut/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
#if defined(FUZZ_NPY)
    const auto a = joulecut::parse_npy(data, size, "fuzz.npy");
    if (a.data.size() != std::size_t(a.count()) * a.element_size()) __builtin_trap();
#elif defined(FUZZ_CIFAR)
    const auto b = joulecut::parse_cifar(data, size, "fuzz.bin");
    if (b.pixels.size() != std::size_t(b.count) * 3072 || b.labels.size() != std::size_t(b.count)) __builtin_trap();
#elif defined(FUZZ_IMAGE)
    const int channels = size > 0 && (data[size - 1] & 1) ? 1 : 3;
    const auto image = joulecut::decode_image(data, size, "fuzz.img", channels);
    if (image.pixels.size() != std::size_t(image.width) * std::size_t(image.height) * std::size_t(channels)) __builtin_trap();
    if (std::int64_t(image.width) * image.height <= (1 << 16)) {
      joulecut::ImagePreprocess p{1 + image.height % 23, 0, channels};
      const auto out = joulecut::preprocess_image(image, p, "fuzz.img");
      if (out.pixels.size() != std::size_t(out.width) * std::size_t(out.height) * std::size_t(channels)) __builtin_trap();
      joulecut::resize_bilinear(image, 1 + image.width % 17, 1 + image.height % 13);
    }
#elif defined(FUZZ_INPUT_SPEC)
    const std::string text(reinterpret_cast<const char*>(data), size);
    const auto a = text.find('\n'), b = a == std::string::npos ? a : text.find('\n', a + 1);
    const auto spec = joulecut::parse_input_spec(text.substr(0, a), a == std::string::npos ? "" : text.substr(a + 1, b - a - 1),
                                                 b == std::string::npos ? "" : text.substr(b + 1));
    joulecut::input_spec_from_json(joulecut::input_spec_to_json(spec), "fuzz");
#else
#error "define one of FUZZ_NPY, FUZZ_CIFAR, FUZZ_IMAGE, FUZZ_INPUT_SPEC"
#endif
  } catch (const joulecut::UserError&) {
  }
  return 0;
}
