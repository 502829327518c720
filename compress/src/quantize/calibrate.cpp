#include "joulecut/calibrate.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include <map>
#include <memory>

#include "joulecut/error.h"
#include "joulecut/progress.h"

namespace joulecut {
namespace {

bool is_layer(const std::string& op) {
  return op == "aten::conv2d" || op == "aten::_convolution" || op == "aten::linear";
}

struct Observed {
  std::string layer, op;
  std::unique_ptr<Observer> input, output;
};

// State of one calibration run; only the thread running the model touches it.
struct Watch {
  const CalibrationOptions* options = nullptr;
  std::map<const void*, std::string> names;  // weight data pointer -> layer
  std::vector<Observed> layers;              // in first-execution order
  std::map<std::string, std::size_t> index;
  int depth = 0;  // inside a layer: its internals are not observed again
  int unnamed = 0;  // unnamed layers seen in this batch: they are named by call order
  std::string error;  // exceptions can't leave RecordFunction callbacks (LibTorch swallows them)
};
thread_local Watch* watching = nullptr;

void observe(Observer& observer, const at::Tensor& t) {
  const at::Tensor values = t.detach().to(at::kFloat).contiguous();
  observer.observe(values.data_ptr<float>(), std::size_t(values.numel()));
}

struct Context : at::ObserverContext {
  std::size_t layer = 0;
};

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction& fn) {
  if (!watching || !is_layer(fn.name()) || watching->depth++ > 0) return nullptr;
  const auto inputs = fn.inputs();
  if (inputs.size() < 2 || !inputs[0].isTensor() || !inputs[1].isTensor()) return nullptr;
  const void* weight = inputs[1].toTensor().data_ptr();
  const auto name = watching->names.find(weight);
  const std::string layer = name != watching->names.end() ? name->second : "op#" + std::to_string(watching->unnamed++);
  auto [it, added] = watching->index.emplace(layer, watching->layers.size());
  if (added)
    watching->layers.push_back({layer, fn.name(), make_observer(watching->options->observer, watching->options->percentile),
                                make_observer(watching->options->observer, watching->options->percentile)});
  try {
    observe(*watching->layers[it->second].input, inputs[0].toTensor());
  } catch (const std::exception& e) {
    if (watching->error.empty()) watching->error = unrendered_message(e);
  }
  auto context = std::make_unique<Context>();
  context->layer = it->second;
  return context;
}

void on_exit(const at::RecordFunction& fn, at::ObserverContext* context) {
  if (!watching || !is_layer(fn.name())) return;
  --watching->depth;
  if (!context) return;
  const auto outputs = fn.outputs();
  try {
    if (!outputs.empty() && outputs[0].isTensor())
      observe(*watching->layers[static_cast<Context*>(context)->layer].output, outputs[0].toTensor());
  } catch (const std::exception& e) {
    if (watching->error.empty()) watching->error = unrendered_message(e);
  }
}

}  // namespace

Calibration calibrate(const torch::jit::Module& input, const TensorDataset& data, const CalibrationOptions& options) {
  make_observer(options.observer, options.percentile);  // validates the name and percentile
  const std::int64_t samples = options.samples > 0 ? std::min(options.samples, data.size()) : data.size();
  if (samples <= 0) throw UserError("calibration: the calibration set is empty");
  if (options.batch <= 0) throw UserError("calibration: batch must be >= 1");
  Watch watch;
  watch.options = &options;
  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(on_enter, on_exit).needsInputs(true).needsOutputs(true).scopes(
          {at::RecordScope::FUNCTION}));
  watching = &watch;
  ProgressBar bar("calibration (" + options.observer + ")", samples, options.progress);
  try {
    at::NoGradGuard no_grad;
    for (std::int64_t start = 0; start < samples; start += options.batch) {
      const std::int64_t count = std::min(options.batch, samples - start);
      // A fresh clone per batch: once a method has run twice, the graph executor may run an
      // optimized plan whose ops no longer receive the layers' own weights (see graph_stats).
      torch::jit::Module module = input.clone();
      module.eval();
      watch.names.clear();
      watch.unnamed = 0;
      for (const auto& p : module.named_parameters(true)) {
        const auto dot = p.name.rfind('.');
        watch.names[p.value.data_ptr()] = dot == std::string::npos ? p.name : p.name.substr(0, dot);
      }
      module.forward(data.inputs(start, count));
      if (!watch.error.empty()) throw UserError("calibration: " + watch.error);
      bar.update(start + count, std::to_string(start + count) + " images");
    }
  } catch (...) {
    watching = nullptr;
    at::removeCallback(handle);
    throw;
  }
  watching = nullptr;
  at::removeCallback(handle);
  JOULECUT_ASSERT(watch.depth == 0, "unbalanced RecordFunction callbacks");
  if (watch.layers.empty())
    throw UserError("calibration: the model ran no Conv2d or Linear layer (aten::conv2d, aten::linear)");
  bar.finish(std::to_string(samples) + " images, " + std::to_string(watch.layers.size()) + " layers");
  Calibration result;
  result.observer = options.observer;
  result.samples = samples;
  for (const auto& l : watch.layers) result.layers.push_back({l.layer, l.op, l.input->range(), l.output->range()});
  return result;
}

}  // namespace joulecut
