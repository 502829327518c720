#pragma once
// What a model expects as input: recorded with every model joulecut writes, so that
// evaluation and measurement use exactly the normalization it was trained with. Torch-free.
#include <cstdint>
#include <string>
#include <vector>

namespace joulecut {

struct DatasetSpec {
  std::string name;  // "fashion-mnist", or the directory / file a user gave
  std::int64_t channels = 1;
  std::int64_t height = 28;
  std::int64_t width = 28;
  std::int64_t classes = 10;
  // Input x (in [0,1], from bytes / 255) is fed to the model as (x - mean) / stddev, per
  // channel when channel_mean/channel_stddev hold one value per channel.
  double mean = 0.0;
  double stddev = 1.0;
  std::vector<double> channel_mean, channel_stddev;
  // Arrays (NumPy) are fed as stored: no / 255, no normalization.
  bool as_stored = false;
  std::vector<std::string> class_names;
};

// Fashion-MNIST, with the per-pixel mean and standard deviation of its training split.
DatasetSpec fashion_mnist_spec();

std::string spec_to_json(const DatasetSpec& spec);
// Throws UserError (naming `origin`) when the JSON is not a dataset spec.
DatasetSpec spec_from_json(const std::string& json, const std::string& origin);

}  // namespace joulecut
