#include "joulecut/data.h"

#include <ATen/ATen.h>

#include <cstdlib>
#include <filesystem>

#include "joulecut/error.h"
#include "joulecut/idx.h"

namespace joulecut {
namespace fs = std::filesystem;

const char* split_name(Split split) { return split == Split::train ? "train" : "test"; }

namespace {

std::string fashion_mnist_dir() {
  if (const char* dir = std::getenv("JOULECUT_FASHION_MNIST_DIR")) return dir;
  return "/usr/share/datasets/fashion-mnist";
}

// MNIST-style file names; the .gz form is preferred when both exist.
std::string find_idx(const std::string& dir, const std::string& stem, const std::string& hint) {
  for (const auto& candidate : {stem + ".gz", stem}) {
    const fs::path p = fs::path(dir) / candidate;
    if (fs::exists(p)) return p.string();
  }
  throw UserError((fs::path(dir) / (stem + ".gz")).string() + ": missing" + hint);
}

struct IdxPair {
  IdxImages images;
  IdxLabels labels;
};

IdxPair read_pair(const DataSource& source, Split split, std::string* name) {
  std::string images_path, labels_path;
  if (!source.images.empty() || !source.labels.empty()) {
    if (source.images.empty() || source.labels.empty())
      throw UserError("--images and --labels must be given together (an IDX images file and its labels file)");
    images_path = source.images;
    labels_path = source.labels;
    *name = source.images;
  } else {
    std::string dir = source.data;
    std::string hint;
    if (source.data == "fashion-mnist") {
      dir = fashion_mnist_dir();
      hint = " (install the Debian package dataset-fashion-mnist: scripts/setup)";
      *name = "fashion-mnist";
    } else if (!fs::is_directory(source.data)) {
      throw UserError(source.data + ": unknown data set; use 'fashion-mnist', a directory of MNIST-style IDX "
                      "files, or --images FILE --labels FILE");
    } else {
      *name = source.data;
    }
    const std::string prefix = split == Split::train ? "train" : "t10k";
    images_path = find_idx(dir, prefix + "-images-idx3-ubyte", hint);
    labels_path = find_idx(dir, prefix + "-labels-idx1-ubyte", hint);
  }
  IdxPair pair{read_idx_images(images_path), read_idx_labels(labels_path)};
  check_idx_pair(pair.images, pair.labels, 256);
  return pair;
}

}  // namespace

TensorDataset load_dataset(const DataSource& source, Split split, const std::optional<DatasetSpec>& normalization) {
  std::string name;
  IdxPair pair = read_pair(source, split, &name);
  const auto n = pair.images.count;
  TensorDataset out;
  at::Tensor bytes = at::from_blob(pair.images.pixels.data(), {n, 1, pair.images.rows, pair.images.cols}, at::kByte);
  at::Tensor x = bytes.to(at::kFloat).div_(255.0f);

  std::int64_t max_label = 0;
  for (auto l : pair.labels.labels) max_label = std::max<std::int64_t>(max_label, l);

  if (normalization) {
    out.spec = *normalization;
  } else if (name == "fashion-mnist") {
    out.spec = fashion_mnist_spec();
  } else {
    out.spec.name = name;
    out.spec.classes = max_label + 1;
    // User data: normalize with the statistics of its training split where there is one.
    at::Tensor stats_source = x;
    if (split == Split::test && source.images.empty()) {
      IdxPair train = read_pair(source, Split::train, &name);
      stats_source = at::from_blob(train.images.pixels.data(), {train.images.count, 1, train.images.rows,
                                                                train.images.cols}, at::kByte)
                         .to(at::kFloat)
                         .div_(255.0f);
    }
    out.spec.mean = stats_source.mean().item<double>();
    out.spec.stddev = std::max(1e-6, stats_source.std().item<double>());
  }
  out.spec.height = pair.images.rows;
  out.spec.width = pair.images.cols;
  out.spec.channels = 1;
  if (max_label >= out.spec.classes)
    throw UserError(pair.labels.path + ": label " + std::to_string(max_label) + " is outside the model's " +
                    std::to_string(out.spec.classes) + " classes");
  out.images = x.sub_(out.spec.mean).div_(out.spec.stddev);
  out.labels = at::from_blob(pair.labels.labels.data(), {n}, at::kByte).to(at::kLong);
  out.description = name + " " + split_name(split) + " (" + std::to_string(n) + " images)";
  return out;
}

TensorDataset take_first(const TensorDataset& data, std::int64_t count) {
  if (count <= 0 || count >= data.size()) return data;
  TensorDataset out = data;
  out.images = data.images.narrow(0, 0, count);
  out.labels = data.labels.narrow(0, 0, count);
  out.description += ", first " + std::to_string(count);
  return out;
}

}  // namespace joulecut
