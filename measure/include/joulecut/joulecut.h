#pragma once
// joulecut's C++ API in one include, for deployment pipelines: load a TorchScript model, build
// passes from pipeline text, run them with calibration or training data, measure the model
// before and after (energy windows with their provenance), and save the result.
// docs/api.md lists what each part promises and which errors it throws;
// examples/deploy_pipeline.cpp uses it the way a C++ inference service would.
//
// Errors: joulecut::UserError (error.h) for anything the caller can fix (a bad file, options
// out of range, a pass that cannot apply); other exceptions are bugs or LibTorch failures.

#include "joulecut/error.h"        // UserError, did_you_mean
#include "joulecut/atomic_file.h"  // write_file_atomic, sha256_file
#include "joulecut/platform.h"     // cpu_model, blas_info
#include "joulecut/threads.h"      // configure_threads

#include "joulecut/model.h"     // load_model, save_model, ModelMetadata
#include "joulecut/data.h"      // DataSource, load_dataset, TensorDataset
#include "joulecut/evaluate.h"  // evaluate, check_model_accepts
#include "joulecut/graph_stats.h"  // analyze_model: parameters, MACs per layer

#include "joulecut/pass.h"      // Pass, PassContext, parse_pipeline, print_pipeline
#include "joulecut/freeze.h"    // freeze_for_inference: the deployable form
#include "joulecut/timing.h"    // TimingService: how passes time a choice
#include "joulecut/prune.h"
#include "joulecut/quantize.h"
#include "joulecut/distill.h"
#include "joulecut/recipe.h"    // load_recipe

#include "joulecut/measure/runner.h"         // EnergySession, measure()
#include "joulecut/measure/measure_files.h"  // measure_files: side-by-side comparisons
#include "joulecut/pipeline.h"               // load_pipeline_input, pass_context, apply_passes
