#include "joulecut/data.h"

#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>

#include "joulecut/cifar.h"
#include "joulecut/error.h"
#include "joulecut/text.h"
#include "joulecut/idx.h"
#include "joulecut/npy.h"
#include "io/image_folder.h"

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
      throw UserError(option_ref("DataSource::images") + " and " + option_ref("DataSource::labels") +
                      " must be given together (an IDX images file and its labels file)");
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
      throw UserError(source.data +
                      ": unknown data set; use 'fashion-mnist', a directory of MNIST-style IDX files, or " +
                      option_ref("DataSource::images") + " FILE " + option_ref("DataSource::labels") + " FILE");
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

namespace {

TensorDataset load_idx_dataset(const DataSource& source, Split split, const std::optional<DatasetSpec>& normalization) {
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

// ---- NumPy ---------------------------------------------------------------------------------

at::Tensor tensor_of(const NpyArray& a, const std::string& origin) {
  static const std::map<std::string, at::ScalarType> types = {
      {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf}, {"int64", at::kLong},
      {"int32", at::kInt},     {"int16", at::kShort},    {"int8", at::kChar},    {"uint8", at::kByte},
      {"bool", at::kBool}};
  const auto it = types.find(a.dtype);
  JOULECUT_ASSERT(it != types.end(), "parse_npy returned dtype " + a.dtype);
  if (a.shape.empty()) throw UserError(origin + ": a 0-d array holds no samples; the first dimension counts them");
  at::Tensor t = at::empty(a.shape, at::TensorOptions().dtype(it->second));
  std::memcpy(t.data_ptr(), a.data.data(), a.data.size());
  // float64 arrays are what NumPy makes by default; models take float32.
  return a.dtype == "float64" ? t.to(at::kFloat) : t;
}

at::Tensor labels_of(const NpyArray& a, const std::string& origin, std::int64_t samples) {
  at::Tensor t = tensor_of(a, origin);
  if (t.dim() != 1 || t.is_floating_point() || t.scalar_type() == at::kBool)
    throw UserError(origin + ": labels must be a 1-D integer array, got " + a.dtype + " of " +
                    std::to_string(t.dim()) + " dimensions");
  if (t.size(0) != samples)
    throw UserError(origin + ": " + std::to_string(t.size(0)) + " labels for " + std::to_string(samples) + " inputs");
  t = t.to(at::kLong);
  if (samples > 0 && t.min().item<std::int64_t>() < 0)
    throw UserError(origin + ": negative label " + std::to_string(t.min().item<std::int64_t>()));
  return t;
}

TensorDataset numpy_dataset(const std::vector<std::pair<std::string, NpyArray>>& arrays, const NpyArray* labels,
                            const std::string& origin, const std::string& labels_origin, Split split) {
  TensorDataset out;
  out.spec.name = origin;
  out.spec.as_stored = true;
  for (const auto& [name, array] : arrays) {
    at::Tensor t = tensor_of(array, origin + (name.empty() ? "" : ":" + name));
    if (out.images.defined() && t.size(0) != out.images.size(0))
      throw UserError(origin + ": array '" + name + "' has " + std::to_string(t.size(0)) + " samples, '" +
                      out.input_names.front() + "' " + std::to_string(out.images.size(0)));
    if (!out.images.defined()) out.images = t;
    else out.more_inputs.push_back(t);
    out.input_names.push_back(name);
  }
  if (out.size() == 0) throw UserError(origin + ": no samples (the first dimension is 0)");
  if (labels) {
    out.labels = labels_of(*labels, labels_origin, out.size());
    out.spec.classes = out.labels.max().item<std::int64_t>() + 1;
  } else {
    out.spec.classes = 0;
  }
  if (out.images.dim() == 4) {
    out.spec.channels = out.images.size(1);
    out.spec.height = out.images.size(2);
    out.spec.width = out.images.size(3);
  }
  out.description = origin + " " + split_name(split) + " (" + std::to_string(out.size()) + " samples" +
                    (out.labelled() ? "" : ", no labels") + ")";
  return out;
}

TensorDataset load_npy(const std::string& path, const std::string& labels_path, Split split) {
  const NpyArray inputs = read_npy(path);
  std::optional<NpyArray> labels;
  if (!labels_path.empty()) labels = read_npy(labels_path);
  return numpy_dataset({{"", inputs}}, labels ? &*labels : nullptr, path, labels_path, split);
}

TensorDataset load_npz(const std::string& path, Split split) {
  auto arrays = read_npz(path);
  std::optional<NpyArray> labels;
  if (arrays.count("labels")) {
    labels = arrays["labels"];
    arrays.erase("labels");
  }
  if (arrays.empty()) throw UserError(path + ": .npz holds labels but no inputs");
  // Arranged in forward()'s order later (arrange_inputs), when the model is known.
  std::vector<std::pair<std::string, NpyArray>> ordered(arrays.begin(), arrays.end());
  return numpy_dataset(ordered, labels ? &*labels : nullptr, path, path + ":labels", split);
}

// ---- CIFAR -----------------------------------------------------------------------------------

// Pixels in [0, 1] per channel, normalized with `normalization`'s values or the data's own.
void normalize_images(TensorDataset& out, at::Tensor x, const std::optional<DatasetSpec>& normalization,
                      const at::Tensor& statistics_source) {
  const std::int64_t channels = x.size(1);
  if (normalization) {
    out.spec.mean = normalization->mean;
    out.spec.stddev = normalization->stddev;
    out.spec.channel_mean = normalization->channel_mean;
    out.spec.channel_stddev = normalization->channel_stddev;
  } else {
    const at::Tensor per_channel = statistics_source.transpose(0, 1).reshape({channels, -1});
    const at::Tensor mean = per_channel.mean(1), stddev = per_channel.std(1).clamp_min(1e-6);
    out.spec.channel_mean.assign(mean.data_ptr<float>(), mean.data_ptr<float>() + channels);
    out.spec.channel_stddev.assign(stddev.data_ptr<float>(), stddev.data_ptr<float>() + channels);
    out.spec.mean = statistics_source.mean().item<double>();
    out.spec.stddev = std::max(1e-6, statistics_source.std().item<double>());
  }
  if (out.spec.channel_mean.size() == std::size_t(channels)) {
    const at::Tensor mean = at::tensor(std::vector<float>(out.spec.channel_mean.begin(), out.spec.channel_mean.end()));
    const at::Tensor stddev =
        at::tensor(std::vector<float>(out.spec.channel_stddev.begin(), out.spec.channel_stddev.end()));
    out.images = x.sub_(mean.view({1, channels, 1, 1})).div_(stddev.view({1, channels, 1, 1}));
  } else {
    out.images = x.sub_(out.spec.mean).div_(out.spec.stddev);
  }
}

at::Tensor cifar_pixels(CifarBatch& b) {
  return at::from_blob(b.pixels.data(), {b.count, 3, 32, 32}, at::kByte).to(at::kFloat).div_(255.0f);
}

TensorDataset load_cifar(const std::vector<std::string>& files, const std::vector<std::string>& statistics_files,
                         const std::string& name, Split split, const std::optional<DatasetSpec>& normalization) {
  std::vector<at::Tensor> pixels, labels;
  int classes = 0;
  for (const auto& f : files) {
    CifarBatch b = read_cifar(f);
    if (classes && b.classes != classes)
      throw UserError(f + ": a CIFAR-" + std::to_string(b.classes) + " batch among CIFAR-" + std::to_string(classes) + " ones");
    classes = b.classes;
    pixels.push_back(cifar_pixels(b));
    labels.push_back(at::from_blob(b.labels.data(), {b.count}, at::kByte).to(at::kLong));
  }
  TensorDataset out;
  out.spec.name = name;
  out.spec.channels = 3;
  out.spec.height = out.spec.width = 32;
  out.spec.classes = classes;
  at::Tensor x = at::cat(pixels);
  at::Tensor statistics = x;
  if (!normalization && statistics_files != files) {
    std::vector<at::Tensor> s;
    for (const auto& f : statistics_files) {
      CifarBatch b = read_cifar(f);
      s.push_back(cifar_pixels(b));
    }
    statistics = at::cat(s);
  }
  normalize_images(out, x, normalization, statistics);
  out.labels = at::cat(labels);
  out.description = name + " " + split_name(split) + " (" + std::to_string(out.size()) + " images)";
  return out;
}

// CIFAR's files per split in a directory (or its cifar-10-batches-bin / cifar-100-binary folder).
std::optional<std::pair<std::vector<std::string>, std::vector<std::string>>> cifar_files(const fs::path& dir) {
  for (const fs::path& d : {dir, dir / "cifar-10-batches-bin", dir / "cifar-100-binary"}) {
    std::vector<std::string> train;
    for (int i = 1; i <= 5; ++i)
      if (fs::exists(d / ("data_batch_" + std::to_string(i) + ".bin"))) train.push_back((d / ("data_batch_" + std::to_string(i) + ".bin")).string());
    if (!train.empty() && fs::exists(d / "test_batch.bin")) return std::make_pair(train, std::vector<std::string>{(d / "test_batch.bin").string()});
    if (fs::exists(d / "train.bin") && fs::exists(d / "test.bin"))
      return std::make_pair(std::vector<std::string>{(d / "train.bin").string()}, std::vector<std::string>{(d / "test.bin").string()});
  }
  return std::nullopt;
}

std::optional<std::string> numpy_split_file(const fs::path& dir, Split split) {
  const std::vector<std::string> stems = split == Split::train ? std::vector<std::string>{"train"}
                                                               : std::vector<std::string>{"test", "val"};
  for (const auto& stem : stems)
    for (const auto& ext : {".npz", ".npy"})
      if (fs::exists(dir / (stem + ext))) return (dir / (stem + ext)).string();
  return std::nullopt;
}

bool holds_idx(const fs::path& dir) {
  for (const auto& stem : {"t10k-images-idx3-ubyte", "train-images-idx3-ubyte"})
    for (const auto& ext : {"", ".gz"})
      if (fs::exists(dir / (std::string(stem) + ext))) return true;
  return false;
}

TensorDataset load_file(const std::string& path, const DataSource& source, Split split,
                        const std::optional<DatasetSpec>& normalization) {
  if (looks_like_npy(path)) return load_npy(path, source.labels, split);
  if (looks_like_zip(path)) return load_npz(path, split);
  if (looks_like_cifar(path)) return load_cifar({path}, {path}, path, split, normalization);
  throw UserError(path +
                  ": unknown data file: expected a NumPy .npy or .npz, a CIFAR-10/100 binary batch, or an IDX "
                  "pair given with " +
                  option_ref("DataSource::images") + " and " + option_ref("DataSource::labels"));
}

// One file for both splits: the first three quarters train, the last quarter is held out.
TensorDataset one_file_split(const TensorDataset& all, Split split) {
  const std::int64_t n = all.size();
  if (n < 2) throw UserError(all.description + ": one sample cannot be split into training and held-out samples");
  const std::int64_t held = std::max<std::int64_t>(1, n / 4);
  TensorDataset part = split == Split::train ? slice(all, 0, n - held) : slice(all, n - held, held);
  part.description = all.description + format(split == Split::train
                                                   ? ": the first %lld of %lld samples (training; the last %lld held out)"
                                                   : ": the last %lld of %lld samples (held out from training)",
                                               (long long)part.size(), (long long)n, (long long)held);
  return part;
}

TensorDataset load_any(const DataSource& source, Split split, const std::optional<DatasetSpec>& normalization) {
  const std::string& per_split = split == Split::train ? source.train_data : source.test_data;
  const std::string path = per_split.empty() ? source.data : per_split;
  if (!source.images.empty() || path == "fashion-mnist") return load_idx_dataset(source, split, normalization);
  if (!fs::exists(path))
    throw UserError(path +
                    ": unknown data set (no such file or directory); use 'fashion-mnist', a directory or file "
                    "of IDX, NumPy (.npy/.npz) or CIFAR data, or " +
                    option_ref("DataSource::images") + " FILE " + option_ref("DataSource::labels") + " FILE");
  if (fs::is_regular_file(path)) {
    if (per_split.empty() && source.split_one_file)
      return one_file_split(load_file(path, source, Split::test, normalization), split);
    if (per_split.empty() && split == Split::train)
      throw UserError(path +
                      ": one file is one split, read for evaluation; give the training split (calibration and "
                      "training read it) with " +
                      option_ref("DataSource::train_data") + " FILE");
    return load_file(path, source, split, normalization);
  }
  if (holds_idx(path)) {
    DataSource idx = source;
    idx.data = path;
    return load_idx_dataset(idx, split, normalization);
  }
  if (const auto file = numpy_split_file(path, split)) return load_file(*file, source, split, normalization);
  // Image folders: ROOT/train/CLASS/... and ROOT/test|val/CLASS/..., or ROOT/CLASS/... as one split.
  const fs::path train_root = fs::path(path) / "train";
  fs::path test_root = fs::path(path) / "test";
  if (!fs::is_directory(test_root)) test_root = fs::path(path) / "val";
  if (looks_like_image_folder(train_root.string()) && looks_like_image_folder(test_root.string()))
    return load_image_folder((split == Split::train ? train_root : test_root).string(), source, split_name(split),
                             normalization, train_root.string());
  // Only a test/ or val/ split of class folders (as ImageNet's validation set ships): that one split.
  if (!fs::exists(train_root) && looks_like_image_folder(test_root.string())) {
    if (per_split.empty() && split == Split::train)
      throw UserError(path + ": holds only " + test_root.filename().string() +
                      "/, one split, read for evaluation; give the training split with " +
                      option_ref("DataSource::train_data") + " DIR");
    return load_image_folder(test_root.string(), source, split_name(split), normalization, test_root.string());
  }
  if (looks_like_image_folder(path)) {
    if (per_split.empty() && split == Split::train)
      throw UserError(path + ": one image folder is one split, read for evaluation; give the training split with " +
                      option_ref("DataSource::train_data") + " DIR, or lay out DIR/train and DIR/test");
    return load_image_folder(path, source, split_name(split), normalization, path);
  }
  if (const auto cifar = cifar_files(path))
    return load_cifar(split == Split::train ? cifar->first : cifar->second, cifar->first, path, split, normalization);
  throw UserError(path + ": no data set found: expected MNIST-style IDX files, train.npz/test.npz, CIFAR-10's "
                  "data_batch_*.bin and test_batch.bin, CIFAR-100's train.bin and test.bin, or images in ROOT/CLASS/*.png|jpg");
}

}  // namespace

TensorDataset load_dataset(const DataSource& source, Split split, const std::optional<DatasetSpec>& normalization) {
  TensorDataset data = load_any(source, split, normalization);
  data.output = source.output;
  return data;
}

std::int64_t TensorDataset::size() const {
  if (stream) return stream->size();
  return images.defined() ? images.size(0) : 0;
}

std::int64_t TensorDataset::decoded_bytes() const {
  if (!stream) return images.defined() ? std::int64_t(images.nbytes()) : 0;
  std::int64_t per_sample = 4;
  for (auto d : stream->sample_shape()) per_sample *= d;
  return per_sample * stream->size();
}

std::vector<at::Tensor> TensorDataset::input_tensors(std::int64_t start, std::int64_t count) const {
  std::vector<at::Tensor> out{stream ? stream->batch(start, count).to(stream_device) : images.narrow(0, start, count)};
  for (const auto& t : more_inputs) out.push_back(t.narrow(0, start, count));
  return out;
}

std::vector<c10::IValue> TensorDataset::inputs(std::int64_t start, std::int64_t count) const {
  const auto tensors = input_tensors(start, count);
  return {tensors.begin(), tensors.end()};
}

TensorDataset slice(const TensorDataset& data, std::int64_t start, std::int64_t count) {
  JOULECUT_ASSERT(start >= 0 && count >= 0 && start + count <= data.size(), "slice outside the data set");
  TensorDataset out = data;
  if (data.stream) out.stream = data.stream->range(start, count);
  else out.images = data.images.narrow(0, start, count);
  for (auto& t : out.more_inputs) t = t.narrow(0, start, count);
  if (data.labelled()) out.labels = data.labels.narrow(0, start, count);
  return out;
}

TensorDataset take_first(const TensorDataset& data, std::int64_t count) {
  if (count <= 0 || count >= data.size()) return data;
  TensorDataset out = slice(data, 0, count);
  out.description += ", first " + std::to_string(count);
  return out;
}

at::Tensor TensorDataset::gather_first(const at::Tensor& index) const {
  if (!stream) return images.index_select(0, index);
  const at::Tensor i = index.to(at::kCPU, at::kLong).contiguous();
  return stream->gather({i.data_ptr<std::int64_t>(), i.data_ptr<std::int64_t>() + i.numel()}).to(stream_device);
}

std::vector<c10::IValue> TensorDataset::gather(const at::Tensor& index) const {
  std::vector<c10::IValue> out{gather_first(index)};
  for (const auto& t : more_inputs) out.emplace_back(t.index_select(0, index));
  return out;
}

void require_labels(const TensorDataset& data, const std::string& what) {
  if (!data.labelled())
    throw UserError(data.description + ": " + what + " needs labels (this data has none)");
}

}  // namespace joulecut
