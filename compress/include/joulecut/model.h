#pragma once
// Model I/O: load any TorchScript archive (joulecut's, or one traced/scripted by Python
// PyTorch), save atomically, and carry joulecut's metadata inside the archive as the extra
// file "joulecut/meta.json" (readable from Python with torch.jit.load(_extra_files=...)).
#include <torch/script.h>

#include <cstdint>
#include <optional>
#include <string>

#include "joulecut/dataset_spec.h"
#include "joulecut/input_spec.h"

namespace joulecut {

inline constexpr const char* kMetadataFile = "joulecut/meta.json";

struct ModelMetadata {
  std::string arch;             // reference architecture name, or "" for foreign models
  DatasetSpec dataset;          // input spec the model was trained with
  std::string provenance_json;  // free-form JSON object: training command, seed, accuracy...
  std::optional<InputSpec> inputs;  // forward()'s arguments, when not the data set's images
};

struct LoadedModel {
  torch::jit::Module module;
  std::string path;
  std::uintmax_t file_bytes = 0;
  std::optional<ModelMetadata> metadata;  // absent for models joulecut did not write
};

// Throws UserError with a one-line message naming the file when it is missing, not a
// TorchScript archive, or truncated.
LoadedModel load_model(const std::string& path);

// Saves atomically (temporary file, then rename). If `input_path` is given, refuses to
// overwrite that file. The module is saved as it is (callers choose eval/train mode).
void save_model(const torch::jit::Module& module, const std::optional<ModelMetadata>& metadata,
                const std::string& path, const std::string& input_path = "");

std::string metadata_to_json(const ModelMetadata& metadata);
ModelMetadata metadata_from_json(const std::string& json, const std::string& origin);

// The first line of a LibTorch error, for one-line messages.
std::string first_line(const std::string& text);

// One line saying what went wrong inside LibTorch: for c10::Error its message without the
// C++ backtrace; for an error raised in the TorchScript interpreter (a std::runtime_error
// carrying a TorchScript traceback) its final "SomethingError: ..." line.
std::string torch_error_summary(const std::exception& error);

}  // namespace joulecut
