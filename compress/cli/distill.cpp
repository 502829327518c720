// compress distill: a student trained from a teacher (knowledge distillation), optionally
// beside the same student trained without it, then measured. The training flags come from
// the distill pass's option table.
#include <ATen/Parallel.h>

#include <cstdio>
#include <filesystem>

#include "joulecut/atomic_file.h"
#include "joulecut/distill.h"
#include "joulecut/error.h"
#include "joulecut/evaluate.h"
#include "joulecut/model.h"
#include "joulecut/models.h"
#include "joulecut/text.h"
#include "options.h"

namespace joulecut::cli {
namespace {

struct DistillCliOptions {
  std::string teacher, student, student_arch, output, checkpoint;
  std::vector<std::string> hints;
  PassOptionMap given;  // the distill pass's options as given
  std::uint64_t seed = 1;
  DataSource data;
  bool baseline = false, resume = false, no_progress = false;
  AfterMeasurement measurement{"1,64"};
};

// The command trains longer than the pass does inside a pipeline.
const std::map<std::string, std::string> kCommandDefaults = {{"epochs", "10"}};

// The distill pass's options: the command's defaults, the flags given, and every --hint.
DistillPassOptions pass_options_of(const DistillCliOptions& o) {
  PassOptionMap given = kCommandDefaults;
  for (const auto& [k, v] : o.given) given[k] = v;
  for (const auto& h : o.hints) given["hints"] += (given["hints"].empty() ? "" : "|") + h;
  return DistillPass::parse(given);
}

struct Student {
  torch::jit::Module module;
  ModelMetadata metadata;
  std::string id;  // in the provenance: "file SHA256" or "arch NAME"
};

// The student: the file (with its metadata when it has some), or a fresh reference architecture
// built from `seed`; the data set is the teacher's (`spec`) unless the file says otherwise.
Student load_student(const DistillCliOptions& o, const std::optional<DatasetSpec>& spec, std::uint64_t seed) {
  Student student;
  student.metadata.dataset = spec ? *spec : fashion_mnist_spec();
  if (!o.student.empty()) {
    auto loaded = load_model(o.student);
    student.module = loaded.module;
    if (loaded.metadata) student.metadata = *loaded.metadata;
    student.id = "file " + sha256_file(o.student);
  } else {
    student.module = build_reference_model(o.student_arch, seed);
    student.metadata.arch = o.student_arch;
    student.id = "arch " + o.student_arch;
  }
  return student;
}

// What identifies the run: its checkpoint fingerprint, and the provenance of what it writes.
json settings_json_of(const DistillCliOptions& o, const DistillOptions& settings, const DistillPassOptions& pass_options,
                      const std::string& student_id, const TensorDataset& train) {
  const LoopOptions& loop = settings.loop;
  return {{"teacher_sha256", sha256_file(o.teacher)},
          {"student", student_id},
          {"data", train.description},
          {"epochs", loop.epochs},
          {"batch", loop.batch},
          {"lr", loop.learning_rate},
          {"optimizer", loop.optimizer},
          {"momentum", loop.momentum},
          {"weight_decay", loop.weight_decay},
          {"schedule", loop.schedule},
          {"step_epochs", loop.step_epochs},
          {"gamma", loop.gamma},
          {"seed", loop.seed},
          {"temperature", settings.loss.temperature},
          {"alpha", settings.loss.alpha},
          {"hints", o.hints},
          {"hint_weight", settings.hint_weight},
          {"pass", DistillPass(pass_options).text()},  // every option of the table, so a new one counts too
          {"threads", at::get_num_threads()}};
}

// Writes the distilled student with its provenance (in `metadata`) and says so.
void save_distilled(const DistillCliOptions& o, const Invocation& invocation, const DistillResult& result,
                    const json& settings_json, const TensorDataset& test, ModelMetadata& metadata) {
  metadata.provenance_json =
      json{{"command", invocation.command_line},
           {"distillation", settings_json},
           {"test_accuracy", test.labelled() ? json(result.loop.test_accuracy) : json(nullptr)}}
          .dump();
  save_model(result.student, metadata, o.output, o.teacher);
  if (test.labelled())
    std::printf("wrote %s (sha256 %s): test accuracy %.2f%% after distillation\n", o.output.c_str(),
                sha256_file(o.output).substr(0, 16).c_str(), 100 * result.loop.test_accuracy);
  else
    std::printf("wrote %s (sha256 %s): no labels, no accuracy; the measurement compares it with the teacher by fidelity\n",
                o.output.c_str(), sha256_file(o.output).substr(0, 16).c_str());
}

// The same student, initialisation, data order, optimizer and epochs; labels only. Returns the
// path it wrote.
std::string train_baseline(const DistillCliOptions& o, const Invocation& invocation, const torch::jit::Module& student,
                           const TensorDataset& train, const TensorDataset& test, const LoopOptions& loop,
                           const ModelMetadata& metadata, const json& settings_json, double distilled_accuracy) {
  const std::string path = std::filesystem::path(o.output).replace_extension("").string() + "-baseline.pt";
  refuse_to_overwrite_input(o.teacher, path);
  torch::jit::Module plain = student.clone();
  LoopOptions plain_loop = loop;
  plain_loop.checkpoint.clear();
  plain_loop.resume = false;
  std::fprintf(stderr, "baseline: the same student and budget without the teacher\n");
  const auto plain_result = train_loop(plain, train, &test, plain_loop);
  ModelMetadata plain_metadata = metadata;
  plain_metadata.provenance_json =
      json{{"command", invocation.command_line}, {"baseline_of", settings_json}, {"test_accuracy", plain_result.test_accuracy}}
          .dump();
  save_model(plain, plain_metadata, path, o.teacher);
  std::printf("wrote %s: test accuracy %.2f%% without distillation (%+.2f pt from distillation)\n", path.c_str(),
              100 * plain_result.test_accuracy, 100 * (distilled_accuracy - plain_result.test_accuracy));
  return path;
}

void run_distill(const DistillCliOptions& o, const Invocation& invocation) {
  apply_threads(invocation.threads);
  if (o.student.empty() == o.student_arch.empty())
    throw UserError("give the student as a file (--student S.pt) or an architecture (--student-arch NAME), one of them");
  check_output(o.teacher, o.output);
  if (!o.student.empty()) refuse_to_overwrite_input(o.student, o.output);
  const DistillPassOptions pass_options = pass_options_of(o);
  DistillOptions distill_settings = distill_options(pass_options, o.seed, !o.no_progress);
  auto& loop = distill_settings.loop;
  auto teacher = load_model(o.teacher);
  std::optional<DatasetSpec> spec;
  if (teacher.metadata) spec = teacher.metadata->dataset;
  Student student = load_student(o, spec, loop.seed);
  const auto train = load_dataset(o.data, Split::train, spec);
  auto test = load_dataset(o.data, Split::test, spec);
  if (o.baseline && !train.labelled())
    throw UserError(train.description + ": --baseline trains on labels alone, and this data has none");
  check_model_accepts(teacher.module, test, o.teacher);
  check_model_accepts(student.module, test, o.student.empty() ? o.student_arch : o.student);
  loop.checkpoint = o.checkpoint.empty() ? o.output + ".ckpt" : o.checkpoint;
  loop.resume = o.resume;
  const json settings_json = settings_json_of(o, distill_settings, pass_options, student.id, train);
  loop.fingerprint = settings_json.dump();
  // On stdout with the notes and results: stderr stays for progress and the one-line error.
  std::printf("distilling %s into %s: %d epochs, %s lr %g (%s), T %g, alpha %g, seed %llu, %d threads\n",
              o.teacher.c_str(), o.student.empty() ? o.student_arch.c_str() : o.student.c_str(), loop.epochs,
              loop.optimizer.c_str(), loop.learning_rate, loop.schedule.c_str(), distill_settings.loss.temperature,
              distill_settings.loss.alpha, (unsigned long long)loop.seed, at::get_num_threads());
  const auto result = distill(teacher.module, student.module, train, &test, distill_settings);
  for (const auto& n : result.notes) std::printf("  note: %s\n", n.c_str());
  if (result.loop.resumed_at_epoch > 0)
    std::printf("  resumed from %s at epoch %d\n", loop.checkpoint.c_str(), result.loop.resumed_at_epoch);
  save_distilled(o, invocation, result, settings_json, test, student.metadata);
  std::vector<std::string> models{o.teacher};
  if (o.baseline)
    models.push_back(train_baseline(o, invocation, student.module, train, test, loop, student.metadata, settings_json,
                                    result.loop.test_accuracy));
  models.push_back(o.output);
  if (o.measurement.no_measure) return;
  measure_side_by_side(models, o.data, o.measurement, !o.no_progress);
}

}  // namespace

Command make_distill_command(CLI::App& app) {
  auto o = std::make_shared<DistillCliOptions>();
  auto* cmd = app.add_subcommand("distill", "Train a student from a teacher (knowledge distillation), then measure");
  cmd->footer(
      "Loss: alpha * T^2 * KL(teacher || student at temperature T) + (1 - alpha) * cross-entropy, plus\n"
      "hint-weight * MSE between named layers' outputs (--hint TEACHER_LAYER:STUDENT_LAYER, through a learned\n"
      "1x1 projection when widths differ; the projection is not exported). A student with zeros (pruned)\n"
      "keeps them. A checkpoint is written after every epoch and on Ctrl-C; --resume continues it.\n"
      "Example: compress distill --teacher models/trained/resnet8.pt --student-arch lenet5-half -o s.pt --baseline");
  cmd->add_option("--teacher", o->teacher, "Teacher TorchScript file (never modified)")->required();
  cmd->add_option("--student", o->student, "Student TorchScript file (trained, pruned or fresh; never modified)");
  cmd->add_option("--student-arch", o->student_arch,
                  "Or a fresh reference architecture: " + join(reference_architectures(), ", "))
      ->check(CLI::IsMember(reference_architectures()));
  cmd->add_option("-o,--output", o->output, "Distilled student (written atomically)")->required();
  PassFlags flags{{DistillPass::kName}, {}, kCommandDefaults, {"teacher", "hints"}, ""};
  add_pass_flags(cmd, flags, o->given);
  cmd->add_option("--hint", o->hints, "Feature hint TEACHER_LAYER:STUDENT_LAYER (repeatable)");
  cmd->add_option("--seed", o->seed, "Seed: student initialisation, data order, projections")->capture_default_str();
  cmd->add_flag("--baseline", o->baseline, "Also train the same student with the same budget without the teacher");
  cmd->add_option("--checkpoint", o->checkpoint, "Checkpoint path (default: OUTPUT.ckpt)");
  cmd->add_flag("--resume", o->resume, "Continue from the checkpoint of this same run");
  add_after_measurement(cmd, o->measurement, "--measure-batch");
  add_progress_flag(cmd, o->no_progress);
  add_data_options(cmd, o->data);
  return {cmd, [o](const Invocation& invocation) { run_distill(*o, invocation); }};
}

}  // namespace joulecut::cli
