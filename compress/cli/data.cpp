// compress data: what joulecut reads from a data set (samples, classes, inputs, normalization,
// in memory or streamed), optionally every batch decoded and timed, or the first input written
// as a NumPy .npy to check preprocessing against Python's.
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <sstream>

#include "joulecut/atomic_file.h"
#include "joulecut/data.h"
#include "joulecut/error.h"
#include "joulecut/progress.h"
#include "joulecut/text.h"
#include "options.h"

namespace joulecut::cli {
namespace {

struct DataCliOptions {
  DataSource data;
  std::string split = "test";
  std::int64_t batch = 256;
  bool decode_all = false;
  bool no_progress = false;
  std::string save_npy;
};

std::string npy_descr(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "<f4";
    case at::kHalf: return "<f2";
    case at::kLong: return "<i8";
    case at::kInt: return "<i4";
    case at::kShort: return "<i2";
    case at::kChar: return "|i1";
    case at::kByte: return "|u1";
    case at::kBool: return "|b1";
    default: throw UserError(std::string("--save-npy: dtype ") + c10::toString(t) + " has no .npy form here");
  }
}

void run_data(const DataCliOptions& o, const Invocation& invocation) {
  apply_threads(invocation.threads);
  if (o.split != "test" && o.split != "train") throw UserError("--split '" + o.split + "': choose test or train");
  if (o.batch <= 0) throw UserError("--batch must be positive");
  const auto loading = std::chrono::steady_clock::now();
  const TensorDataset data = load_dataset(o.data, o.split == "train" ? Split::train : Split::test);
  std::printf("data       %s\n", data.description.c_str());
  std::printf("samples    %lld, %s\n", (long long)data.size(),
              data.labelled() ? (std::to_string(data.spec.classes) + " classes").c_str() : "no labels");
  const auto first = data.input_tensors(0, std::min<std::int64_t>(1, data.size()));
  for (std::size_t i = 0; i < first.size(); ++i) {
    std::ostringstream shape;
    shape << first[i].sizes().slice(1);
    const std::string name = i < data.input_names.size() && !data.input_names[i].empty() ? data.input_names[i] + " " : "";
    std::printf("input %zu    %s%s %s\n", i + 1, name.c_str(), shape.str().c_str(), c10::toString(first[i].scalar_type()));
  }
  if (data.spec.as_stored) {
    std::printf("values     as stored (no scaling, no normalization)\n");
  } else if (!data.spec.channel_mean.empty()) {
    std::vector<std::string> mean, stddev;
    for (std::size_t c = 0; c < data.spec.channel_mean.size(); ++c) {
      mean.push_back(format("%.4f", data.spec.channel_mean[c]));
      stddev.push_back(format("%.4f", data.spec.channel_stddev[c]));
    }
    std::printf("values     pixels / 255, then (x - [%s]) / [%s] per channel\n", join(mean, ",").c_str(),
                join(stddev, ",").c_str());
  } else {
    std::printf("values     pixels / 255, then (x - %.4f) / %.4f\n", data.spec.mean, data.spec.stddev);
  }
  std::printf("memory     %s (%.1f MiB decoded)\n",
              data.stream ? "streamed in batches: at most two batches held (the next decoded on a background thread)"
                          : "held whole",
              double(data.decoded_bytes()) / (1 << 20));
  if (o.decode_all) {
    ProgressBar bar("reading every batch", data.size(), !o.no_progress);
    for (std::int64_t i = 0; i < data.size(); i += o.batch) {
      const auto n = std::min(o.batch, data.size() - i);
      (void)data.input_tensors(i, n);
      bar.update(i + n, "");
    }
    bar.finish("done");
    // From the start of loading: a held folder is decoded while it loads, a streamed one while it is read.
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - loading).count();
    std::printf("read       %lld samples in %.2f s, loading included: %.0f samples/s (batch %lld, %d threads)\n",
                (long long)data.size(),
                seconds, double(data.size()) / seconds, (long long)o.batch, invocation.threads);
  }
  if (!o.save_npy.empty()) {
    const at::Tensor x = data.input_tensors(0, data.size()).front().contiguous();
    std::ostringstream dims;
    for (std::int64_t d = 0; d < x.dim(); ++d) dims << x.size(d) << (x.dim() == 1 || d + 1 < x.dim() ? ", " : "");
    std::string header = "{'descr': '" + npy_descr(x.scalar_type()) + "', 'fortran_order': False, 'shape': (" +
                         dims.str() + "), }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string file = "\x93NUMPY";
    file += char(1);
    file += char(0);
    file += char(header.size() & 0xff);
    file += char(header.size() >> 8);
    file += header;
    file.append(static_cast<const char*>(x.data_ptr()), x.nbytes());
    write_file_atomic(o.save_npy, file);
    std::printf("wrote      %s (the first input, as the model is fed)\n", o.save_npy.c_str());
  }
}

}  // namespace

Command make_data_command(CLI::App& app) {
  auto o = std::make_shared<DataCliOptions>();
  auto* cmd = app.add_subcommand("data", "What joulecut reads from a data set: samples, classes, inputs, preprocessing");
  cmd->footer("Example: compress data ~/imagenet-val --resize 256 --crop 224 --mean 0.485,0.456,0.406 "
              "--std 0.229,0.224,0.225 --decode-all");
  cmd->add_option("path", o->data.data, "The data set (any --data form); or give --data, --test-data, ...")
      ->each([o](const std::string&) { o->data.data_given = true; });
  add_data_options(cmd, o->data);
  cmd->add_option("--split", o->split, "test or train")->capture_default_str();
  cmd->add_option("--batch", o->batch, "Batch size for --decode-all")->capture_default_str();
  cmd->add_flag("--decode-all", o->decode_all, "Read every batch and report samples per second");
  cmd->add_option("--save-npy", o->save_npy, "Write the first input of every sample as a NumPy .npy (atomically)");
  add_progress_flag(cmd, o->no_progress);
  return {cmd, [o](const Invocation& invocation) { run_data(*o, invocation); }};
}

}  // namespace joulecut::cli
