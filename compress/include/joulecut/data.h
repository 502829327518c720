#pragma once
// Labelled image data as tensors, from Fashion-MNIST (the Debian package's gzip files,
// read directly) or from a user's IDX files.
#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <optional>
#include <string>
#include <vector>

#include "joulecut/dataset_spec.h"

namespace joulecut {

enum class Split { train, test };
const char* split_name(Split split);

// Where data comes from. `data` (or, per split, `train_data` / `test_data`) is recognized by
// content, not by name:
//  "fashion-mnist": /usr/share/datasets/fashion-mnist (or $JOULECUT_FASHION_MNIST_DIR)
//  a directory holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] like MNIST
//  a NumPy .npy of inputs (any shape and dtype; `labels` may name a labels .npy), or an .npz
//    whose arrays are named after forward()'s arguments, plus an optional `labels`
//  a CIFAR-10 / CIFAR-100 binary batch file
//  a directory holding those per split: train.npz and test.npz (or val.npz); CIFAR-10's
//    data_batch_*.bin and test_batch.bin; CIFAR-100's train.bin and test.bin
// images + labels: one explicit IDX pair, used for whichever split is asked for.
// One file is one split: the training split (calibration, training) then needs --train-data.
struct DataSource {
  std::string data = "fashion-mnist";
  std::string images;
  std::string labels;
  std::string train_data, test_data;  // a split each, in any of the forms above
  bool data_given = false;  // --data given (else `data` is the default)
  // The model's input (joulecut/input_spec.h) and the output that holds its scores.
  std::string input_shape, input_dtype, input_range;
  std::string output;  // --model-output INDEX|KEY for tuple, list and dict outputs
  bool given() const { return data_given || !images.empty() || !train_data.empty() || !test_data.empty(); }
};

struct TensorDataset {
  DatasetSpec spec;
  std::string description;  // e.g. "fashion-mnist test (10000 images)"
  // forward()'s first argument for every sample, [N, ...]: for images float32 [N, C, H, W],
  // normalized as spec says; arrays as stored.
  at::Tensor images;
  std::vector<at::Tensor> more_inputs;    // its further arguments, each [N, ...]
  std::vector<std::string> input_names;   // the arrays' names (.npz), one per input, or empty
  at::Tensor labels;        // int64 [N], or undefined: data without labels
  std::string output;       // which model output the labels score (--model-output), "" for a tensor output
  std::int64_t size() const { return images.defined() ? images.size(0) : 0; }
  bool labelled() const { return labels.defined(); }
  // forward()'s arguments for samples [start, start + count).
  std::vector<c10::IValue> inputs(std::int64_t start, std::int64_t count) const;
  // The same samples as tensors.
  std::vector<at::Tensor> input_tensors(std::int64_t start, std::int64_t count) const;
};

// Loads a split. `normalization`, when given (e.g. from a model's metadata), fixes mean and
// stddev; otherwise Fashion-MNIST uses its known values and user data its own train split's
// statistics (or those of the images given). Throws UserError on any bad file.
TensorDataset load_dataset(const DataSource& source, Split split,
                           const std::optional<DatasetSpec>& normalization = std::nullopt);

// The first `count` samples (all if count <= 0 or larger than the set).
TensorDataset take_first(const TensorDataset& data, std::int64_t count);

}  // namespace joulecut
