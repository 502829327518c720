#include "prune/finetune.h"

#include "joulecut/error.h"
#include "joulecut/text.h"
#include "joulecut/train_loop.h"

namespace joulecut::prune_detail {

void check_finetune(const std::string& pass, int epochs) {
  if (epochs < 0) throw UserError(pass + ": finetune-epochs must be >= 0");
}

void finetune(torch::jit::Module& module, int epochs, double lr, PassContext& context, PassReport& report,
              const std::string& pass, const std::string& what, const std::function<void()>& after_step) {
  if (epochs <= 0) return;
  if (!context.train)
    throw UserError(pass + ": finetune-epochs needs training data (" + option_ref("DataSource::data") + ")");
  at::AutoGradMode grad_enabled(true);  // callers prune under no_grad
  LoopOptions loop;
  loop.epochs = epochs;
  loop.learning_rate = lr;
  loop.seed = context.seed;
  loop.progress = context.progress;
  const auto result = train_loop(module, *context.train, context.test, loop, after_step);
  report.notes.push_back(format("fine-tuned %d epoch(s), lr %g, seed %llu%s%s", epochs, lr,
                                (unsigned long long)context.seed, what.empty() ? "" : ", ", what.c_str()));
  if (context.test && context.test->labelled())
    report.notes.push_back(format("test accuracy after fine-tuning %.2f%%", 100 * result.test_accuracy));
}

}  // namespace joulecut::prune_detail
