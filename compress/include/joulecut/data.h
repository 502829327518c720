#pragma once
// Labelled image data as tensors, from Fashion-MNIST (the Debian package's gzip files,
// read directly) or from a user's IDX files.
#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "joulecut/data_source.h"
#include "joulecut/dataset_spec.h"

namespace joulecut {

enum class Split { train, test };
const char* split_name(Split split);

// Batches of a large image folder, decoded and preprocessed when asked for. A call for the batch
// that follows the previous one finds it decoded already (a background thread prefetches it), so
// at most two batches are held. Thread-safe.
class ImageStream {
 public:
  struct Source;
  explicit ImageStream(std::shared_ptr<const Source> source);
  ~ImageStream();
  std::int64_t size() const;
  std::vector<std::int64_t> sample_shape() const;  // [C, H, W]
  at::Tensor batch(std::int64_t start, std::int64_t count) const;  // float32 [count, C, H, W], normalized
  std::int64_t peak_batches_held() const;  // for the memory-bound test
  std::shared_ptr<const ImageStream> range(std::int64_t start, std::int64_t count) const;  // those images
  // Images in any order (training batches), decoded in parallel; a call for the indices last
  // given to prefetch() finds them decoded (or being decoded) on the background thread.
  at::Tensor gather(const std::vector<std::int64_t>& indices) const;
  void prefetch(const std::vector<std::int64_t>& indices) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
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
  // A large image folder: `images` is undefined and batches are decoded when asked for.
  std::shared_ptr<const ImageStream> stream;
  at::Device stream_device = at::kCPU;  // where streamed batches are moved when read
  // The bytes the first input holds in memory (or would, decoded whole).
  std::int64_t decoded_bytes() const;
  std::int64_t size() const;
  bool labelled() const { return labels.defined(); }
  // forward()'s arguments for samples [start, start + count).
  std::vector<c10::IValue> inputs(std::int64_t start, std::int64_t count) const;
  // The same samples as tensors.
  std::vector<at::Tensor> input_tensors(std::int64_t start, std::int64_t count) const;
  // The first input of the samples `index` (int64 [k]), in that order: training batches.
  at::Tensor gather_first(const at::Tensor& index) const;
  // Every input of the samples `index`, as forward()'s arguments.
  std::vector<c10::IValue> gather(const at::Tensor& index) const;
};

// Loads a split. `normalization`, when given (e.g. from a model's metadata), fixes mean and
// stddev; otherwise Fashion-MNIST uses its known values and user data its own train split's
// statistics (or those of the images given). Throws UserError on any bad file.
TensorDataset load_dataset(const DataSource& source, Split split,
                           const std::optional<DatasetSpec>& normalization = std::nullopt);

// The first `count` samples (all if count <= 0 or larger than the set).
TensorDataset take_first(const TensorDataset& data, std::int64_t count);
// Samples [start, start + count). Precondition: inside the set.
TensorDataset slice(const TensorDataset& data, std::int64_t start, std::int64_t count);

// Throws UserError naming `what` (e.g. "fine-tuning") when the data has no labels.
void require_labels(const TensorDataset& data, const std::string& what);

}  // namespace joulecut
