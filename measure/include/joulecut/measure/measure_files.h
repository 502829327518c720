#pragma once
// `compress measure` and `compress compare` as one API call: load TorchScript files, prepare
// each as it would be deployed, evaluate accuracy, and measure them side by side.
#include <cstdint>
#include <string>
#include <vector>

#include "joulecut/data.h"
#include "joulecut/measure/report.h"
#include "joulecut/measure/runner.h"

namespace joulecut::measure {

struct MeasureJob {
  std::vector<std::string> models;            // TorchScript files; the first is the baseline
  DataSource data;                            // accuracy and the input batches come from its test split
  std::vector<std::int64_t> batches = {1, 64};
  RunOptions run;                             // run.batch is set per batch size
  bool optimize = true;                       // freeze + optimize_for_inference (the fair baseline)
  std::int64_t accuracy_limit = 0;            // 0: the whole test split; < 0: skip accuracy
  // Quality: "top1" (accuracy), "agreement", "cosine" or "snr" (fidelity against the first
  // model, label-free), or "auto": accuracy with labels, and fidelity too when there are none.
  std::string metric = "auto";
  bool progress = true;
};

// Throws UserError for any bad file, shape, device or meter.
Report measure_files(const MeasureJob& job);

}  // namespace joulecut::measure
