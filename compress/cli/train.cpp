// compress train: a reference architecture trained in C++, written as TorchScript.
#include <ATen/Parallel.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/model.h"
#include "joulecut/models.h"
#include "options.h"

namespace joulecut::cli {
namespace {

struct TrainCliOptions {
  TrainOptions train;
  DataSource data;
  std::string output;
  bool json = false, no_progress = false;
};

void run_train(TrainCliOptions options, const Invocation& invocation) {
  apply_threads(invocation.threads);
  options.train.progress = !options.no_progress;
  options.train = with_defaults(options.train);
  // Fail before hours of training, not after.
  check_writable(options.output);
  std::fprintf(stderr, "training %s (%s): %d epochs, batch %lld, lr %g, seed %llu, %d threads\n",
               options.train.arch.c_str(), describe_architecture(options.train.arch).c_str(), options.train.epochs,
               (long long)options.train.batch, options.train.learning_rate, (unsigned long long)options.train.seed,
               at::get_num_threads());
  auto result = train_reference_model(options.train, options.data, invocation.command_line);
  save_model(result.module, result.metadata, options.output);
  const std::string sha = sha256_file(options.output);
  double mean_epoch = 0;
  for (double s : result.epoch_seconds) mean_epoch += s / double(result.epoch_seconds.size());
  if (options.json) {
    json out = json::parse(result.metadata.provenance_json);
    out["output"] = options.output;
    out["sha256"] = sha;
    out["epoch_seconds"] = result.epoch_seconds;  // not stored in the file: it would change its hash
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("wrote %s\n  sha256 %s\n  test accuracy %.2f%%, %.1f s per epoch (%d threads)\n", options.output.c_str(),
              sha.c_str(), 100 * result.test_accuracy, mean_epoch, at::get_num_threads());
}

}  // namespace

Command make_train_command(CLI::App& app) {
  auto o = std::make_shared<TrainCliOptions>();
  auto* cmd = app.add_subcommand("train", "Train a reference model in C++ and write it as TorchScript");
  std::string arch_help = "Architecture:";
  for (const auto& a : reference_architectures()) arch_help += "\n  " + a + ": " + describe_architecture(a);
  cmd->add_option("arch", o->train.arch, arch_help)->required()->check(CLI::IsMember(reference_architectures()));
  cmd->add_option("-o,--output", o->output, "Output TorchScript file (written atomically)")->required();
  add_data_options(cmd, o->data);
  cmd->add_option("--epochs", o->train.epochs, "Epochs (default: the architecture's)");
  cmd->add_option("--batch", o->train.batch, "Batch size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--lr", o->train.learning_rate, "Peak learning rate (default: the architecture's)");
  cmd->add_option("--weight-decay", o->train.weight_decay, "Weight decay (default: the architecture's)");
  cmd->add_option("--optimizer", o->train.optimizer, "sgd (Nesterov momentum) or adam (default: the architecture's)")
      ->check(CLI::IsMember({"sgd", "adam"}));
  cmd->add_option("--seed", o->train.seed, "Seed for initialisation and shuffling")->capture_default_str();
  cmd->add_option("--train-limit", o->train.train_limit, "Train on the first N images only (0: all)");
  cmd->add_flag("--no-progress", o->no_progress, "No progress bar");
  cmd->add_flag("--json", o->json, "Machine-readable summary");
  return {cmd, [o](const Invocation& invocation) { run_train(*o, invocation); }};
}

}  // namespace joulecut::cli
