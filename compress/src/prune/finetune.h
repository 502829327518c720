#pragma once
// Internal to the pruning passes: fine-tuning with the pruned structure kept.
#include <functional>
#include <string>
#include <vector>

#include "joulecut/pass.h"
#include "joulecut/pass_options.h"

namespace joulecut::prune_detail {

template <class Options>
std::vector<OptionDecl<Options>> finetune_options() {
  return {option<Options>("finetune-epochs", "fine-tune with the zeros kept (0: none; needs training data)",
                          &Options::finetune_epochs),
          option<Options>("finetune-lr", "peak fine-tuning learning rate (cosine schedule)", &Options::finetune_lr)};
}

void check_finetune(const std::string& pass, int epochs);

// Fine-tunes `module` on context.train when epochs > 0 (throws UserError without training
// data); `after_step` runs after every optimizer step. Adds notes to `report`.
void finetune(torch::jit::Module& module, int epochs, double lr, PassContext& context, PassReport& report,
              const std::string& pass, const std::string& what, const std::function<void()>& after_step = {});

}  // namespace joulecut::prune_detail
