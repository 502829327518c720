#include "joulecut/train_loop.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/model.h"
#include "joulecut/model_input.h"
#include "joulecut/progress.h"
#include "joulecut/text.h"

namespace joulecut {
namespace {

// Fisher-Yates with a fixed engine, so the order is the same with every standard library.
std::vector<std::int64_t> shuffled(std::int64_t n, std::uint64_t seed) {
  std::vector<std::int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 engine(seed);
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto j = std::int64_t(engine() % std::uint64_t(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

std::atomic<bool> interrupted{false};
extern "C" void on_interrupt(int) { interrupted = true; }

// Ctrl-C sets a flag the loop checks after each step, while a checkpoint path is set; the
// previous handler comes back when the loop ends.
class InterruptGuard {
 public:
  explicit InterruptGuard(bool active) : active_(active) {
    interrupted = false;
    if (active_) previous_ = std::signal(SIGINT, on_interrupt);
  }
  ~InterruptGuard() {
    if (active_) std::signal(SIGINT, previous_);
  }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  bool active_;
  void (*previous_)(int) = SIG_DFL;
};

struct Position {
  int epoch = 1;           // the epoch to run next (1-based)
  std::int64_t step = 0;   // steps of that epoch already done
};

void save_checkpoint(const LoopOptions& o, torch::jit::Module& module, torch::optim::Optimizer& optimizer,
                     const std::vector<at::Tensor>& extra, const Position& at) {
  std::ostringstream module_bytes, state_bytes;
  module.save(module_bytes);
  write_file_atomic(o.checkpoint, module_bytes.str());
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  for (std::size_t i = 0; i < extra.size(); ++i) archive.write("extra_" + std::to_string(i), extra[i]);
  archive.save_to(state_bytes);
  write_file_atomic(o.checkpoint + ".state", state_bytes.str());
  // Written last: a checkpoint counts only once its position is written.
  const nlohmann::json position = {{"fingerprint", o.fingerprint}, {"epoch", at.epoch}, {"step", at.step}};
  write_file_atomic(o.checkpoint + ".json", position.dump(2) + "\n");
}

std::optional<nlohmann::json> read_position(const std::string& checkpoint) {
  std::ifstream in(checkpoint + ".json");
  if (!in) return std::nullopt;
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw UserError(checkpoint + ".json: not a joulecut checkpoint (" + std::string(e.what()) + ")");
  }
}

// Loads the checkpoint when resuming. Precondition: check_loop_options(o) passed.
Position prepare_checkpoint(const LoopOptions& o, torch::jit::Module& module, torch::optim::Optimizer& optimizer,
                            std::vector<at::Tensor>& extra) {
  Position start;
  if (!o.resume) return start;
  const auto position = read_position(o.checkpoint);
  try {
    start.epoch = position->at("epoch").get<int>();
    start.step = position->at("step").get<std::int64_t>();
    torch::jit::Module saved = torch::jit::load(o.checkpoint);
    at::NoGradGuard no_grad;
    std::map<std::string, at::Tensor> values;
    for (const auto& p : saved.named_parameters(true)) values[p.name] = p.value;
    for (const auto& b : saved.named_buffers(true)) values[b.name] = b.value;
    for (const auto& p : module.named_parameters(true)) p.value.copy_(values.at(p.name));
    for (const auto& b : module.named_buffers(true)) b.value.copy_(values.at(b.name));
    torch::serialize::InputArchive archive;
    archive.load_from(o.checkpoint + ".state");
    optimizer.load(archive);
    for (std::size_t i = 0; i < extra.size(); ++i) {
      at::Tensor t;
      archive.read("extra_" + std::to_string(i), t);
      extra[i].copy_(t);
    }
  } catch (const std::exception& e) {
    throw UserError(o.checkpoint + ": cannot resume from this checkpoint (" + torch_error_summary(e) + ")");
  }
  return start;
}

// The seed of one batch's views: distinct for every (run seed, epoch, step).
std::uint64_t view_seed(std::uint64_t seed, int epoch, std::int64_t step) {
  std::uint64_t h = seed * 0x9E3779B97F4A7C15ULL ^ (std::uint64_t(epoch) << 32) ^ std::uint64_t(step);
  h ^= h >> 31;  // splitmix64's finalizer: nearby inputs give unrelated seeds
  h *= 0xBF58476D1CE4E5B9ULL;
  h ^= h >> 27;
  return h;
}

// The module's parameters made trainable leaves, then the extra ones. Throws UserError when the
// module has none.
std::vector<at::Tensor> trainable_parameters(torch::jit::Module& module, std::vector<at::Tensor>& extra) {
  std::vector<at::Tensor> parameters;
  for (auto p : module.parameters()) {
    // Module::clone() copies parameters with autograd history; the optimizer needs leaves.
    if (!p.is_leaf()) p.detach_();
    p.requires_grad_(true);
    parameters.push_back(p);
  }
  if (parameters.empty())
    throw UserError("the model has no trainable parameters (a frozen module cannot be trained)");
  for (auto& p : extra) parameters.push_back(p.requires_grad_(true));
  return parameters;
}

// SGD (Nesterov momentum when there is momentum) or Adam, as the options say.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const LoopOptions& options, const std::vector<at::Tensor>& parameters) {
  if (options.optimizer == "adam")
    return std::make_unique<torch::optim::Adam>(
        parameters, torch::optim::AdamOptions(options.learning_rate).weight_decay(options.weight_decay));
  return std::make_unique<torch::optim::SGD>(parameters, torch::optim::SGDOptions(options.learning_rate)
                                                             .momentum(options.momentum)
                                                             .nesterov(options.momentum > 0)
                                                             .weight_decay(options.weight_decay));
}

// The learning rate of a step: step decay every step_epochs epochs, or cosine (per step) to zero
// over the run's `total_steps`.
double learning_rate_at(const LoopOptions& options, int epoch, std::int64_t step, double total_steps) {
  if (options.schedule == "step") return options.learning_rate * std::pow(options.gamma, (epoch - 1) / options.step_epochs);
  return 0.5 * options.learning_rate * (1 + std::cos(M_PI * double(step) / total_steps));  // to zero over the run
}

// What every step of one train_loop call uses.
struct TrainingRun {
  torch::jit::Module& module;
  const TensorDataset& train;
  const LoopOptions& options;
  const std::function<void()>& after_step;
  const BatchLoss& batch_loss;
  torch::optim::Optimizer& optimizer;
  const std::vector<at::Tensor>& extra;
  std::int64_t steps_per_epoch;
  double total_steps;
};

// An epoch's running sums, over the steps run so far.
struct EpochTotals {
  double loss_sum = 0;
  std::int64_t correct = 0, seen = 0;
};

// Step `s` of `epoch` (its batch: positions of `order`): one optimizer step; adds the batch's
// loss and correct answers to `totals`.
void train_step(const TrainingRun& run, int epoch, std::int64_t s, const at::Tensor& order, EpochTotals& totals) {
  const LoopOptions& options = run.options;
  const TensorDataset& train = run.train;
  const std::int64_t n = train.size();
  const std::int64_t step = std::int64_t(epoch - 1) * run.steps_per_epoch + s;
  const double lr = learning_rate_at(options, epoch, step, run.total_steps);
  for (auto& group : run.optimizer.param_groups()) group.options().set_lr(lr);
  const auto count = std::min(options.batch, n - s * options.batch);
  const at::Tensor index = order.narrow(0, s * options.batch, count);
  // A streamed folder: decode the next batch on the background thread while this one trains.
  if (train.stream && s + 1 < run.steps_per_epoch) {
    const at::Tensor next = order.narrow(0, (s + 1) * options.batch, std::min(options.batch, n - (s + 1) * options.batch));
    train.stream->prefetch({next.data_ptr<std::int64_t>(), next.data_ptr<std::int64_t>() + next.numel()});
  }
  std::vector<c10::IValue> x = train.gather(index);
  if (options.augment.any())
    x.front() = augment_images(x.front().toTensor(), options.augment, view_seed(options.seed, epoch, s));
  const at::Tensor y = train.labelled() ? train.labels.index_select(0, index) : at::Tensor();
  at::Tensor loss, logits;
  if (run.batch_loss) {
    std::tie(loss, logits) = run.batch_loss(x, y, index);
  } else {
    logits = select_output(run.module.forward(x), train.output, train.description);
    loss = at::cross_entropy_loss(logits, y);
  }
  run.optimizer.zero_grad();
  loss.backward();
  run.optimizer.step();
  if (run.after_step) run.after_step();
  totals.loss_sum += loss.item<double>() * double(count);
  if (y.defined()) totals.correct += logits.argmax(1).eq(y).sum().item<std::int64_t>();
  totals.seen += count;
}

// The progress bar's status during an epoch.
std::string step_status(const EpochTotals& t, bool labelled) {
  if (labelled)
    return format("loss %.4f train-acc %.2f%%", t.loss_sum / double(t.seen), 100.0 * double(t.correct) / double(t.seen));
  return format("loss %.4f (no labels)", t.loss_sum / double(t.seen));
}

// The steps of one epoch from step `first`. On Ctrl-C: saves a checkpoint where it stopped and
// throws UserError.
EpochTotals train_epoch(const TrainingRun& run, int epoch, std::int64_t first, const at::Tensor& order, ProgressBar& bar) {
  EpochTotals totals;
  for (std::int64_t s = first; s < run.steps_per_epoch; ++s) {
    train_step(run, epoch, s, order, totals);
    bar.update(s + 1, step_status(totals, run.train.labelled()));
    if (interrupted) {
      bar.finish("interrupted");
      const Position here = s + 1 < run.steps_per_epoch ? Position{epoch, s + 1} : Position{epoch + 1, 0};
      save_checkpoint(run.options, run.module, run.optimizer, run.extra, here);
      throw UserError("interrupted at epoch " + std::to_string(epoch) + ", step " + std::to_string(s + 1) +
                      ": checkpoint saved to " + run.options.checkpoint + "; run the same command with " +
                      option_ref("LoopOptions::resume") + " to continue");
    }
  }
  return totals;
}

// The status that ends an epoch; with a labelled test set, evaluates the module on it
// (result.test_accuracy).
std::string epoch_status(torch::jit::Module& module, const TensorDataset& train, const TensorDataset* test,
                         const EpochTotals& t, LoopResult& result) {
  std::string status = train.labelled()
                           ? format("loss %.4f train-acc %.2f%%", t.seen ? t.loss_sum / double(t.seen) : 0.0,
                                    t.seen ? 100.0 * double(t.correct) / double(t.seen) : 0.0)
                           : format("loss %.4f", t.seen ? t.loss_sum / double(t.seen) : 0.0);
  if (test && test->labelled()) {
    result.test_accuracy = evaluate(module, *test).accuracy.value;
    status += format(" test-acc %.2f%%", 100.0 * result.test_accuracy);
  }
  return status;
}

}  // namespace

at::Tensor augment_images(const at::Tensor& images, const Augmentation& a, std::uint64_t seed) {
  if (a.crop_padding < 0) throw UserError("crop-padding must be >= 0, got " + std::to_string(a.crop_padding));
  if (!a.any()) return images;
  if (images.dim() != 4 || !images.is_floating_point())
    throw UserError("augmentation (crop-padding, flip) needs image batches [N, C, H, W] of floats; this data gives " +
                    shape_text(images.sizes()) + " " + std::string(c10::toString(images.scalar_type())) +
                    " (token ids, vectors): train without " + option_ref("Augmentation::crop_padding") + " and " +
                    option_ref("Augmentation::horizontal_flip"));
  at::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const std::int64_t n = images.size(0), h = images.size(2), w = images.size(3);
  at::Tensor out = images;
  if (a.crop_padding > 0) {
    const std::int64_t p = a.crop_padding;
    const at::Tensor padded = at::replication_pad2d(images, {p, p, p, p});
    const at::Tensor offsets = at::randint(0, 2 * p + 1, {n, 2}, gen, at::TensorOptions().dtype(at::kLong));
    const auto off = offsets.accessor<std::int64_t, 2>();
    out = at::empty_like(images);
    for (std::int64_t i = 0; i < n; ++i) out[i].copy_(padded[i].narrow(1, off[i][0], h).narrow(2, off[i][1], w));
  }
  if (a.horizontal_flip) {
    const at::Tensor mirrored = at::rand({n}, gen, at::TensorOptions().dtype(at::kFloat)).lt(0.5).view({n, 1, 1, 1});
    out = at::where(mirrored.to(out.device()), out.flip({3}), out);
  }
  return out;
}

void check_loop_options(const LoopOptions& options) {
  if (options.epochs <= 0) throw UserError("training needs at least one epoch");
  if (options.batch <= 0) throw UserError(option_ref("LoopOptions::batch") + " must be positive");
  if (options.augment.crop_padding < 0)
    throw UserError("crop-padding must be >= 0, got " + std::to_string(options.augment.crop_padding));
  if (options.optimizer != "sgd" && options.optimizer != "adam")
    throw UserError("optimizer '" + options.optimizer + "': choose sgd or adam");
  if (options.schedule != "cosine" && options.schedule != "step")
    throw UserError("schedule '" + options.schedule + "': choose cosine or step");
  if (options.schedule == "step" && (options.step_epochs <= 0 || !(options.gamma > 0)))
    throw UserError("schedule step needs step_epochs >= 1 and gamma > 0");
  const std::string& checkpoint = options.checkpoint;
  if (checkpoint.empty()) {
    if (options.resume) throw UserError(option_ref("LoopOptions::resume") + " needs a checkpoint path");
    return;
  }
  const auto position = read_position(checkpoint);
  if (!position) {
    if (options.resume) throw UserError(checkpoint + ": no checkpoint to resume from (" + checkpoint + ".json is missing)");
    return;
  }
  if (position->value("fingerprint", "") != options.fingerprint)
    throw UserError(checkpoint + ": checkpoint of another run (different model, data or options); remove it or choose "
                    "another checkpoint path");
  if (!options.resume)
    throw UserError(checkpoint + ": a checkpoint of this run exists; add " + option_ref("LoopOptions::resume") +
                    " to continue it, or remove it to "
                    "start over");
}

KeepZeros::KeepZeros(const std::vector<at::Tensor>& weights) {
  for (const auto& w : weights) masks_.emplace_back(w, w.ne(0).to(w.scalar_type()));
}

void KeepZeros::operator()() const {
  at::NoGradGuard no_grad;
  for (const auto& [weight, mask] : masks_) weight.mul_(mask);
}

LoopResult train_loop(torch::jit::Module& module, const TensorDataset& train, const TensorDataset* test,
                      const LoopOptions& options, const std::function<void()>& after_step, const BatchLoss& batch_loss,
                      std::vector<at::Tensor> extra_parameters) {
  // A distillation loss may learn from the teacher alone; the plain loss needs labels.
  if (!batch_loss) require_labels(train, "fine-tuning");
  check_loop_options(options);
  if (options.augment.any() && train.size() > 0) augment_images(train.gather_first(at::arange(1, at::kLong)), options.augment, 0);
  const std::vector<at::Tensor> parameters = trainable_parameters(module, extra_parameters);
  const std::unique_ptr<torch::optim::Optimizer> optimizer = make_optimizer(options, parameters);
  const Position start = prepare_checkpoint(options, module, *optimizer, extra_parameters);
  InterruptGuard interrupt_guard(!options.checkpoint.empty());
  const std::int64_t n = train.size();
  const std::int64_t steps_per_epoch = (n + options.batch - 1) / options.batch;
  const TrainingRun run{module,     train,      options,          after_step,      batch_loss,
                        *optimizer, extra_parameters, steps_per_epoch, double(steps_per_epoch) * options.epochs};
  LoopResult result;
  result.resumed_at_epoch = start.epoch > 1 || start.step > 0 ? start.epoch : 0;
  for (int epoch = start.epoch; epoch <= options.epochs; ++epoch) {
    module.train();
    const auto started = std::chrono::steady_clock::now();
    const at::Tensor order = at::tensor(shuffled(n, options.seed * 1000003ULL + std::uint64_t(epoch)), at::kLong);
    ProgressBar bar("epoch " + std::to_string(epoch) + "/" + std::to_string(options.epochs), steps_per_epoch,
                    options.progress);
    const EpochTotals totals = train_epoch(run, epoch, epoch == start.epoch ? start.step : 0, order, bar);
    result.epoch_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    bar.finish(epoch_status(module, train, test, totals, result));
    if (!options.checkpoint.empty()) save_checkpoint(options, module, *optimizer, extra_parameters, {epoch + 1, 0});
  }
  // Done: the caller saves the result, and a finished run's checkpoint would only block the next.
  if (!options.checkpoint.empty())
    for (const char* suffix : {".json", "", ".state"}) std::filesystem::remove(options.checkpoint + suffix);
  module.eval();
  return result;
}

}  // namespace joulecut
