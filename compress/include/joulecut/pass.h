#pragma once
// The pass interface shared by every compression pass (see STYLE.md, after LLVM's new pass
// manager): a small class with a textual name, a plain options struct, and
// run(module, context) -> result. Passes clone, then transform: the input module is never
// changed. Passes never measure; the pipeline measures between passes.
#include <torch/script.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/pass_options.h"
#include "joulecut/timing.h"

namespace joulecut {

// What a pass may use besides the module.
struct PassContext {
  const TensorDataset* train = nullptr;  // fine-tuning, calibration
  const TensorDataset* test = nullptr;   // progress reports only; never used to choose
  std::uint64_t seed = 1;
  bool progress = true;
  // Distillation's default teacher: the model a pipeline started from (before its first pass).
  const torch::jit::Module* teacher = nullptr;
  // How a pass times a choice that depends on speed; null: default_timing().
  const TimingService* timing = nullptr;
  const TimingService& timer() const { return timing ? *timing : default_timing(); }
};

// What a pass changed, per layer.
struct LayerChange {
  std::string layer;
  std::string what;  // e.g. "sparsity"
  double before = 0;
  double after = 0;
  std::string note;
};

struct PassReport {
  std::string pass;                // the pass as text, with its options
  std::string summary;             // one line
  std::vector<LayerChange> layers;
  std::vector<std::string> notes;  // e.g. "no speedup expected: masked zeros"
  // What harms the model and the user must see (printed loudly, kept in every report and ledger):
  // e.g. quantize-static's fidelity guard not met.
  std::vector<std::string> warnings;
};

struct PassResult {
  torch::jit::Module module;
  PassReport report;
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual std::string name() const = 0;
  // The options as text, "k=v,k=v", only those that differ from the defaults, in the order
  // the registry lists them; "" when all are defaults.
  virtual std::string options_text() const = 0;
  // Precondition: `module` is not frozen (passes read named parameters). Throws UserError
  // when the pass cannot apply; a pass that applies to nothing says so, it never silently
  // does nothing.
  virtual PassResult run(const torch::jit::Module& module, PassContext& context) const = 0;
  // True when run() needs context.train (fine-tuning, calibration, distillation), so callers
  // load the training split only then.
  virtual bool needs_training_data() const { return false; }
  std::string text() const;  // name<options>, as written in a pipeline
};

// What a pass throws when it cannot apply or refuses a value: "NAME: MESSAGE", NAME being the
// pass's registered name (its kName). MESSAGE may hold option_ref()s (joulecut/error.h).
UserError pass_error(const std::string& pass, const std::string& message);

// Parses "a<k=v,k=v>,b" into passes from the registry (compress/src/passes.def). Aliases:
// fold-bn (fold-batchnorm), quantize-int8 (quantize-static), prune (prune-magnitude).
std::vector<std::unique_ptr<Pass>> parse_pipeline(const std::string& text);
// One registered pass (canonical name or alias) from its options; throws UserError for an
// unknown pass or option, or a value the pass refuses.
std::unique_ptr<Pass> make_pass(const std::string& name, const PassOptionMap& options);
// Prints passes back as text: parse_pipeline(print_pipeline(p)) gives the same passes.
std::string print_pipeline(const std::vector<std::unique_ptr<Pass>>& passes);
// The registered names, in registry order.
std::vector<std::string> pass_names();
// Every registered pass name with its options and their defaults, for --help.
std::string describe_passes();
// The options of the registered pass `name` (canonical or alias), from its option table.
// Throws UserError for an unknown pass.
std::vector<OptionInfo> pass_options(const std::string& name);

}  // namespace joulecut
