#include "joulecut/dataset_spec.h"

#include <nlohmann/json.hpp>

#include "joulecut/error.h"

namespace joulecut {

DatasetSpec fashion_mnist_spec() {
  DatasetSpec spec;
  spec.name = "fashion-mnist";
  spec.channels = 1;
  spec.height = 28;
  spec.width = 28;
  spec.classes = 10;
  // Per-pixel statistics of the 60000 training images (bytes / 255).
  spec.mean = 0.2860;
  spec.stddev = 0.3530;
  spec.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return spec;
}

std::string spec_to_json(const DatasetSpec& spec) {
  nlohmann::json j = {{"name", spec.name},       {"input_shape", {spec.channels, spec.height, spec.width}},
                      {"classes", spec.classes}, {"mean", spec.mean},
                      {"stddev", spec.stddev},   {"class_names", spec.class_names}};
  if (!spec.channel_mean.empty()) {
    j["channel_mean"] = spec.channel_mean;
    j["channel_stddev"] = spec.channel_stddev;
  }
  if (spec.as_stored) j["as_stored"] = true;
  return j.dump();
}

DatasetSpec spec_from_json(const std::string& text, const std::string& origin) {
  try {
    const auto j = nlohmann::json::parse(text);
    DatasetSpec spec;
    spec.name = j.at("name").get<std::string>();
    const auto shape = j.at("input_shape").get<std::vector<std::int64_t>>();
    if (shape.size() != 3) throw UserError(origin + ": dataset input_shape must have 3 entries (C, H, W)");
    spec.channels = shape[0];
    spec.height = shape[1];
    spec.width = shape[2];
    spec.classes = j.at("classes").get<std::int64_t>();
    spec.mean = j.at("mean").get<double>();
    spec.stddev = j.at("stddev").get<double>();
    if (j.contains("class_names")) spec.class_names = j["class_names"].get<std::vector<std::string>>();
    if (spec.stddev <= 0) throw UserError(origin + ": dataset stddev must be positive");
    if (j.contains("channel_mean")) {
      spec.channel_mean = j["channel_mean"].get<std::vector<double>>();
      spec.channel_stddev = j.at("channel_stddev").get<std::vector<double>>();
      if (spec.channel_mean.size() != std::size_t(spec.channels) || spec.channel_stddev.size() != std::size_t(spec.channels))
        throw UserError(origin + ": dataset channel_mean/channel_stddev must have one value per channel");
      for (double s : spec.channel_stddev)
        if (s <= 0) throw UserError(origin + ": dataset stddev must be positive");
    }
    spec.as_stored = j.value("as_stored", false);
    return spec;
  } catch (const nlohmann::json::exception& e) {
    throw UserError(origin + ": bad dataset spec in metadata (" + e.what() + ")");
  }
}

}  // namespace joulecut
