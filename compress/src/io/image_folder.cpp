// Image folders (torchvision's ImageFolder layout): the index of files and classes, decoding and
// preprocessing into normalized tensors, whole (small folders) or streamed in batches.
#include "io/image_folder.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>

#include "joulecut/error.h"
#include "joulecut/progress.h"

namespace joulecut {
namespace fs = std::filesystem;

namespace {

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

std::vector<double> parse_values(const std::string& text, const std::string& flag, int channels) {
  std::vector<double> values;
  std::size_t at = 0;
  while (at <= text.size()) {
    const auto comma = text.find(',', at);
    const std::string part = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    try {
      std::size_t used = 0;
      values.push_back(std::stod(part, &used));
      if (used != part.size()) throw std::invalid_argument(part);
    } catch (const std::exception&) {
      throw UserError(flag + " '" + text + "': '" + part + "' is not a number");
    }
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  if (values.size() == 1) values.assign(std::size_t(channels), values.front());
  if (values.size() != std::size_t(channels))
    throw UserError(flag + " '" + text + "': " + std::to_string(values.size()) + " values for " + std::to_string(channels) +
                    " channels");
  return values;
}

}  // namespace

bool looks_like_image_folder(const std::string& root) {
  if (!fs::is_directory(root)) return false;
  for (const auto& entry : fs::directory_iterator(root)) {
    if (!entry.is_directory()) continue;
    for (const auto& file : fs::directory_iterator(entry.path()))
      if (file.is_regular_file() && is_image_name(file.path())) return true;
  }
  return false;
}

ImageFolderIndex index_image_folder(const std::string& root) {
  ImageFolderIndex index;
  index.root = root;
  std::vector<fs::path> classes;
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory()) classes.push_back(entry.path());
  std::sort(classes.begin(), classes.end());  // torchvision: sorted class names
  for (const auto& dir : classes) {
    std::vector<std::string> files;
    for (const auto& f : fs::directory_iterator(dir))
      if (f.is_regular_file() && is_image_name(f.path())) files.push_back(f.path().string());
    if (files.empty()) throw UserError(dir.string() + ": empty class folder (no .png or .jpg images)");
    std::sort(files.begin(), files.end());
    const auto label = std::int64_t(index.class_names.size());
    index.class_names.push_back(dir.filename().string());
    for (auto& f : files) {
      index.files.push_back(std::move(f));
      index.labels.push_back(label);
    }
  }
  if (index.files.empty()) throw UserError(root + ": no images found (expected ROOT/CLASS/*.png or *.jpg)");
  return index;
}

struct ImageStream::Source {
  std::vector<std::string> files;
  at::Tensor decode_files(const std::vector<std::string>& paths, bool parallel) const;
  ImagePreprocess preprocess;
  std::vector<std::int64_t> shape;          // [C, H, W], every image's after preprocessing
  std::vector<float> mean, stddev;          // per channel
  at::Tensor decode(std::int64_t start, std::int64_t count, bool parallel) const;
};

at::Tensor ImageStream::Source::decode(std::int64_t start, std::int64_t count, bool parallel) const {
  return decode_files({files.begin() + start, files.begin() + start + count}, parallel);
}

at::Tensor ImageStream::Source::decode_files(const std::vector<std::string>& paths, bool parallel) const {
  const std::int64_t count = std::int64_t(paths.size());
  const std::int64_t c = shape[0], h = shape[1], w = shape[2];
  at::Tensor out = at::empty({count, c, h, w}, at::kFloat);
  float* data = out.data_ptr<float>();
  const auto one = [&](std::int64_t i) {
    const std::string& path = paths[std::size_t(i)];
    const Image image = preprocess_image(read_image(path, int(c)), preprocess, path);
    if (image.height != h || image.width != w)
      throw UserError(path + ": " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                      " pixels after preprocessing where the first image has " + std::to_string(w) + "x" +
                      std::to_string(h) + "; give " + option_ref("DataSource::resize") + " and " +
                      option_ref("DataSource::crop") + " so every image comes out the same size");
    float* dst = data + i * c * h * w;
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t x = 0; x < w; ++x)
        for (std::int64_t k = 0; k < c; ++k) {
          const float v = float(image.pixels[std::size_t((y * w + x) * c + k)]) / 255.0f;
          dst[(k * h + y) * w + x] = (v - mean[std::size_t(k)]) / stddev[std::size_t(k)];
        }
  };
  if (!parallel) {
    for (std::int64_t i = 0; i < count; ++i) one(i);
    return out;
  }
  // Errors inside the parallel region are carried out of it: the first file's in the folder's
  // order, whichever thread met its error first, so that the message is the same every run.
  std::mutex error_mutex;
  std::string first_error;
  std::int64_t first_error_index = count;
  at::parallel_for(0, count, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      try {
        one(i);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (i < first_error_index) first_error = unrendered_message(e), first_error_index = i;
      }
    }
  });
  if (!first_error.empty()) throw UserError(first_error);
  return out;
}

struct ImageStream::State {
  std::shared_ptr<const Source> source;
  mutable std::mutex mutex;
  mutable std::future<at::Tensor> next;
  mutable std::int64_t next_start = -1, next_count = 0;
  mutable std::future<at::Tensor> next_gather;  // training: the batch prefetch() named
  mutable std::vector<std::int64_t> next_indices;
  mutable std::int64_t peak = 0;
};

ImageStream::ImageStream(std::shared_ptr<const Source> source) : state_(std::make_unique<State>()) {
  state_->source = std::move(source);
}

ImageStream::~ImageStream() {
  if (state_ && state_->next.valid()) state_->next.wait();
  if (state_ && state_->next_gather.valid()) state_->next_gather.wait();
}

namespace {
std::vector<std::string> paths_of(const std::vector<std::string>& files, const std::vector<std::int64_t>& indices) {
  std::vector<std::string> paths;
  paths.reserve(indices.size());
  for (auto i : indices) {
    JOULECUT_ASSERT(i >= 0 && std::size_t(i) < files.size(), "image index outside the folder");
    paths.push_back(files[std::size_t(i)]);
  }
  return paths;
}
}  // namespace

at::Tensor ImageStream::gather(const std::vector<std::int64_t>& indices) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->next_gather.valid() && state_->next_indices == indices) return state_->next_gather.get();
  if (state_->next_gather.valid()) state_->next_gather.wait();
  state_->next_gather = {};
  return state_->source->decode_files(paths_of(state_->source->files, indices), /*parallel=*/true);
}

void ImageStream::prefetch(const std::vector<std::int64_t>& indices) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->next_gather.valid()) state_->next_gather.wait();
  auto source = state_->source;
  auto paths = paths_of(source->files, indices);
  state_->next_indices = indices;
  state_->next_gather = std::async(std::launch::async, [source, paths = std::move(paths)] {
    return source->decode_files(paths, /*parallel=*/false);
  });
  state_->peak = std::max<std::int64_t>(state_->peak, 2);
}

std::int64_t ImageStream::size() const { return std::int64_t(state_->source->files.size()); }
std::vector<std::int64_t> ImageStream::sample_shape() const { return state_->source->shape; }
std::int64_t ImageStream::peak_batches_held() const { return state_->peak; }

std::shared_ptr<const ImageStream> ImageStream::range(std::int64_t start, std::int64_t count) const {
  JOULECUT_ASSERT(start >= 0 && count >= 0 && start + count <= size(), "ImageStream::range outside the folder");
  auto source = std::make_shared<Source>(*state_->source);
  source->files.assign(state_->source->files.begin() + start, state_->source->files.begin() + start + count);
  return std::make_shared<const ImageStream>(source);
}

at::Tensor ImageStream::batch(std::int64_t start, std::int64_t count) const {
  JOULECUT_ASSERT(start >= 0 && count >= 0 && start + count <= size(), "ImageStream::batch outside the folder");
  std::lock_guard<std::mutex> lock(state_->mutex);
  at::Tensor result;
  if (state_->next.valid() && state_->next_start == start && state_->next_count == count) {
    result = state_->next.get();  // rethrows a decoding error
  } else {
    if (state_->next.valid()) state_->next.wait();  // a different batch was prefetched: drop it
    state_->next = {};
    result = state_->source->decode(start, count, /*parallel=*/true);
  }
  // Prefetch the batch that follows, on one background thread, while the caller computes.
  const std::int64_t next_start = start + count;
  if (next_start < size() && count > 0) {
    const std::int64_t next_count = std::min(count, size() - next_start);
    auto source = state_->source;
    state_->next = std::async(std::launch::async, [source, next_start, next_count] {
      return source->decode(next_start, next_count, /*parallel=*/false);
    });
    state_->next_start = next_start;
    state_->next_count = next_count;
    state_->peak = std::max<std::int64_t>(state_->peak, 2);
  } else {
    state_->peak = std::max<std::int64_t>(state_->peak, 1);
  }
  return result;
}

TensorDataset load_image_folder(const std::string& root, const DataSource& source, const char* split,
                                const std::optional<DatasetSpec>& normalization, const std::string& statistics_root) {
  const ImageFolderIndex index = index_image_folder(root);
  auto src = std::make_shared<ImageStream::Source>();
  src->files = index.files;
  int channels = 3;
  if (source.color == "gray") channels = 1;
  else if (source.color.empty() && normalization && normalization->channels == 1) channels = 1;
  else if (!source.color.empty() && source.color != "rgb")
    throw UserError(option_ref("DataSource::color") + " '" + source.color + "': choose rgb or gray");
  src->preprocess = {source.resize, source.crop, channels};
  const Image first = preprocess_image(read_image(index.files.front(), channels), src->preprocess, index.files.front());
  src->shape = {channels, first.height, first.width};
  TensorDataset out;
  out.spec.name = root;
  out.spec.channels = channels;
  out.spec.height = first.height;
  out.spec.width = first.width;
  out.spec.classes = std::int64_t(index.class_names.size());
  out.spec.class_names = index.class_names;
  // Normalization: the flags, else the model's metadata, else the training split's own statistics.
  if (!source.mean.empty() || !source.stddev.empty()) {
    if (source.mean.empty() || source.stddev.empty())
      throw UserError(option_ref("DataSource::mean") + " and " + option_ref("DataSource::stddev") +
                      " must be given together");
    out.spec.channel_mean = parse_values(source.mean, option_ref("DataSource::mean"), channels);
    out.spec.channel_stddev = parse_values(source.stddev, option_ref("DataSource::stddev"), channels);
    for (double s : out.spec.channel_stddev)
      if (s <= 0)
        throw UserError(option_ref("DataSource::stddev") + " '" + source.stddev + "': values must be positive");
  } else if (normalization && normalization->channel_mean.size() == std::size_t(channels)) {
    out.spec.channel_mean = normalization->channel_mean;
    out.spec.channel_stddev = normalization->channel_stddev;
  } else if (normalization && !normalization->as_stored) {
    out.spec.channel_mean.assign(std::size_t(channels), normalization->mean);
    out.spec.channel_stddev.assign(std::size_t(channels), normalization->stddev);
  } else {
    // At most 1,000 images of the training split (or of this one), in [0, 1].
    const ImageFolderIndex stats_index = statistics_root == root ? index : index_image_folder(statistics_root);
    auto stats = std::make_shared<ImageStream::Source>(*src);
    stats->files = stats_index.files;
    stats->mean.assign(std::size_t(channels), 0.0f);
    stats->stddev.assign(std::size_t(channels), 1.0f);
    // In batches, so the statistics never hold more than one batch of a large folder.
    const std::int64_t n = std::min<std::int64_t>(1000, std::int64_t(stats->files.size()));
    at::Tensor sum = at::zeros({channels}, at::kDouble), squares = at::zeros({channels}, at::kDouble);
    std::int64_t values = 0;
    for (std::int64_t start = 0; start < n; start += 64) {
      const at::Tensor x = stats->decode(start, std::min<std::int64_t>(64, n - start), true)
                               .transpose(0, 1).reshape({channels, -1}).to(at::kDouble);
      sum += x.sum(1);
      squares += x.pow(2).sum(1);
      values += x.size(1);
    }
    const at::Tensor mean = (sum / double(values)).to(at::kFloat);
    const at::Tensor stddev =
        ((squares - sum.pow(2) / double(values)) / double(std::max<std::int64_t>(values - 1, 1))).sqrt().to(at::kFloat).clamp_min(1e-6);
    out.spec.channel_mean.assign(mean.data_ptr<float>(), mean.data_ptr<float>() + channels);
    out.spec.channel_stddev.assign(stddev.data_ptr<float>(), stddev.data_ptr<float>() + channels);
  }
  out.spec.mean = out.spec.channel_mean.front();
  out.spec.stddev = out.spec.channel_stddev.front();
  src->mean.assign(out.spec.channel_mean.begin(), out.spec.channel_mean.end());
  src->stddev.assign(out.spec.channel_stddev.begin(), out.spec.channel_stddev.end());
  out.labels = at::tensor(index.labels, at::kLong);
  const std::int64_t n = std::int64_t(index.files.size());
  const std::int64_t bytes = n * channels * first.height * first.width * 4;
  if (bytes <= source.cache_mb * (std::int64_t(1) << 20)) {
    // Small enough to keep: decoded once, in parallel, with a progress bar.
    out.images = at::empty({n, channels, first.height, first.width}, at::kFloat);
    const std::int64_t step = 256;
    ProgressBar bar("decoding " + root, n, n > 2000);
    for (std::int64_t start = 0; start < n; start += step) {
      const std::int64_t count = std::min(step, n - start);
      out.images.narrow(0, start, count).copy_(src->decode(start, count, true));
      bar.update(start + count, "");
    }
    bar.finish(std::to_string(n) + " images");
  } else {
    out.stream = std::make_shared<const ImageStream>(src);
  }
  out.description = root + " " + split + " (" + std::to_string(n) + " images, " + std::to_string(out.spec.classes) +
                    " classes" + (out.stream ? ", streamed" : "") + ")";
  return out;
}

}  // namespace joulecut
