#include "joulecut/model.h"
#include "graph/quantized_engine.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <sstream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/torch_compat.h"

namespace joulecut {

std::string first_line(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
  return line;
}

std::string torch_error_summary(const std::exception& error) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&error))
    return first_line(compat::what_without_backtrace(*c10_error));
  const std::string text = error.what();
  // TorchScript tracebacks end with the Python-style exception line.
  std::istringstream lines(text);
  std::string line, last_error;
  while (std::getline(lines, line)) {
    const auto colon = line.find("Error: ");
    if (colon != std::string::npos && line.find(' ') > colon) last_error = line.substr(colon + 7);
  }
  return last_error.empty() ? first_line(text) : first_line(last_error);
}

std::string metadata_to_json(const ModelMetadata& metadata) {
  nlohmann::json j;
  j["format"] = "joulecut-model-1";
  j["arch"] = metadata.arch;
  j["dataset"] = nlohmann::json::parse(spec_to_json(metadata.dataset));
  j["provenance"] = metadata.provenance_json.empty() ? nlohmann::json::object()
                                                     : nlohmann::json::parse(metadata.provenance_json);
  if (metadata.inputs) j["inputs"] = nlohmann::json::parse(input_spec_to_json(*metadata.inputs));
  return j.dump(2);
}

ModelMetadata metadata_from_json(const std::string& text, const std::string& origin) {
  try {
    const auto j = nlohmann::json::parse(text);
    ModelMetadata metadata;
    metadata.arch = j.value("arch", "");
    metadata.dataset = spec_from_json(j.at("dataset").dump(), origin);
    metadata.provenance_json = j.contains("provenance") ? j["provenance"].dump() : "{}";
    if (j.contains("inputs")) metadata.inputs = input_spec_from_json(j["inputs"].dump(), origin);
    return metadata;
  } catch (const nlohmann::json::exception& e) {
    throw UserError(origin + ": unreadable " + kMetadataFile + " (" + e.what() + ")");
  }
}

LoadedModel load_model(const std::string& path) {
  std::ifstream probe(path, std::ios::binary);
  if (!probe) throw UserError(path + ": cannot open model (" + std::strerror(errno) + ")");
  char magic[4] = {};
  probe.read(magic, 4);
  const bool is_zip = probe.gcount() == 4 && std::memcmp(magic, "PK\x03\x04", 4) == 0;
  probe.close();
  if (!is_zip)
    throw UserError(path + ": not a TorchScript archive (expected a zip file as written by torch.jit.save)");

  LoadedModel loaded;
  loaded.path = path;
  loaded.file_bytes = file_size_bytes(path);
  torch::jit::ExtraFilesMap extra{{kMetadataFile, ""}};
  try {
    // Quantized layers repack their weights at load, for the engine set then: the same engine
    // the torch backend quantizes for (FBGEMM on x86), so files from PyTorch's torch.ao load as
    // they run there (oneDNN's packing refuses some shapes, e.g. a one-channel first conv).
    static const bool engine_chosen = [] {
      try {
        graph::choose_engine("load");
      } catch (const UserError&) {
        // No quantized engine: quantized files fail at load and say so.
      }
      return true;
    }();
    (void)engine_chosen;
    loaded.module = torch::jit::load(path, c10::Device(c10::kCPU), extra);
  } catch (const c10::Error& e) {
    const std::string why = first_line(compat::what_without_backtrace(e));
    if (why.find("central directory") != std::string::npos || why.find("failed reading") != std::string::npos)
      throw UserError(path + ": truncated or corrupt TorchScript archive (" + why + ")");
    const std::string newer = compat::newer_file_hint(compat::what_without_backtrace(e));
    if (!newer.empty()) throw UserError(path + ": " + newer);
    throw UserError(path + ": cannot load as TorchScript (" + why + ")");
  } catch (const std::exception& e) {  // the TorchScript compiler's own errors (torch::jit::ErrorReport)
    const std::string newer = compat::newer_file_hint(e.what());
    if (!newer.empty()) throw UserError(path + ": " + newer);
    throw UserError(path + ": cannot load as TorchScript (" + first_line(e.what()) + ")");
  }
  if (!extra[kMetadataFile].empty()) loaded.metadata = metadata_from_json(extra[kMetadataFile], path);
  return loaded;
}

void save_model(const torch::jit::Module& module, const std::optional<ModelMetadata>& metadata,
                const std::string& path, const std::string& input_path) {
  if (!input_path.empty()) refuse_to_overwrite_input(input_path, path);
  torch::jit::ExtraFilesMap extra;
  if (metadata) extra[kMetadataFile] = metadata_to_json(*metadata);
  std::ostringstream buffer;
  module.save(buffer, extra);
  write_file_atomic(path, buffer.str());
}

}  // namespace joulecut
