#pragma once
// Internal: names of the attributes passes add to a model's root module for one layer (CSR
// buffers, packed int8 weights, folded biases), and the way back to the layer, so the passes
// that write them and graph_stats, which reads them, agree. Attribute names can't contain
// dots: "layer1.conv1" is stored as "<prefix>layer1__conv1".
#include <string>

namespace joulecut {

inline constexpr const char* kCsrValues = "joulecut_csr_values__";
inline constexpr const char* kCsrColumns = "joulecut_csr_columns__";
inline constexpr const char* kCsrRowOffsets = "joulecut_csr_row_offsets__";
inline constexpr const char* kPackedLinear = "joulecut_qlinear__";
inline constexpr const char* kFoldedBias = "joulecut_folded_bias__";
inline constexpr const char* kInt8Layer = "joulecut_int8__";  // static int8 Conv2d/Linear, onednn or torch backend
// backend=cuda: a Linear's packed int8 weight, its scales and its bias (joulecut/int8_cuda.h)
inline constexpr const char* kDp4aWeight = "joulecut_dp4a_weight__";
inline constexpr const char* kDp4aScale = "joulecut_dp4a_scale__";
inline constexpr const char* kDp4aBias = "joulecut_dp4a_bias__";
// quantize-static's SmoothQuant: 1/s of one LayerNorm output, named by its value number (not a layer)
inline constexpr const char* kSmoothing = "joulecut_smooth__";

inline std::string root_attribute_name(const std::string& prefix, const std::string& layer) {
  std::string flat = layer;
  for (std::size_t at = flat.find('.'); at != std::string::npos; at = flat.find('.', at + 2)) flat.replace(at, 1, "__");
  return prefix + flat;
}

// The layer a root attribute belongs to, or "" when `name` does not start with `prefix`.
inline std::string layer_of_root_attribute(const std::string& prefix, const std::string& name) {
  if (name.compare(0, prefix.size(), prefix) != 0) return "";
  std::string layer = name.substr(prefix.size());
  for (std::size_t at = layer.find("__"); at != std::string::npos; at = layer.find("__", at + 1)) layer.replace(at, 2, ".");
  return layer;
}

}  // namespace joulecut
