#pragma once
// Labelled image data as tensors, from Fashion-MNIST (the Debian package's gzip files,
// read directly) or from a user's IDX files.
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

#include "joulecut/dataset_spec.h"

namespace joulecut {

enum class Split { train, test };
const char* split_name(Split split);

// Where data comes from.
//  data = "fashion-mnist": /usr/share/datasets/fashion-mnist (or $JOULECUT_FASHION_MNIST_DIR)
//  data = a directory: holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] like MNIST
//  images + labels: one explicit IDX pair, used for whichever split is asked for
struct DataSource {
  std::string data = "fashion-mnist";
  std::string images;
  std::string labels;
  bool data_given = false;  // --data given (else `data` is the default)
  // The model's input (joulecut/input_spec.h) and the output that holds its scores.
  std::string input_shape, input_dtype, input_range;
  std::string output;  // --model-output INDEX|KEY for tuple, list and dict outputs
};

struct TensorDataset {
  DatasetSpec spec;
  std::string description;  // e.g. "fashion-mnist test (10000 images)"
  at::Tensor images;        // float32 [N, C, H, W], normalized with spec.mean / spec.stddev
  at::Tensor labels;        // int64 [N]
  std::int64_t size() const { return labels.size(0); }
};

// Loads a split. `normalization`, when given (e.g. from a model's metadata), fixes mean and
// stddev; otherwise Fashion-MNIST uses its known values and user data its own train split's
// statistics (or those of the images given). Throws UserError on any bad file.
TensorDataset load_dataset(const DataSource& source, Split split,
                           const std::optional<DatasetSpec>& normalization = std::nullopt);

// The first `count` samples (all if count <= 0 or larger than the set).
TensorDataset take_first(const TensorDataset& data, std::int64_t count);

}  // namespace joulecut
