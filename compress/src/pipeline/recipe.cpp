#include "joulecut/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "joulecut/atomic_file.h"
#include "joulecut/error.h"
#include "joulecut/text.h"

namespace joulecut {
namespace {

using json = nlohmann::ordered_json;

// YAML scalars become numbers or booleans when they read as one; everything else stays text.
json from_yaml(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null: return nullptr;
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& item : node) out.push_back(from_yaml(item));
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& item : node) out[item.first.as<std::string>()] = from_yaml(item.second);
      return out;
    }
    default: {
      const std::string text = node.as<std::string>();
      if (node.Tag() == "!") return text;  // quoted in the file: stays text
      if (text == "true") return true;
      if (text == "false") return false;
      try {
        std::size_t used = 0;
        const long long i = std::stoll(text, &used);
        if (used == text.size()) return i;
        const double d = std::stod(text, &used);
        if (used == text.size()) return d;
      } catch (const std::exception&) {
      }
      return text;
    }
  }
}

json read_document(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UserError(path + ": cannot open recipe (" + std::string(std::strerror(errno)) + ")");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext == ".json") {
    try {
      return json::parse(buffer.str());
    } catch (const json::parse_error& e) {
      throw UserError(path + ": not valid JSON (" + std::string(e.what()) + ")");
    }
  }
  if (ext != ".yaml" && ext != ".yml") throw UserError(path + ": a recipe is a .yaml, .yml or .json file");
  try {
    return from_yaml(YAML::Load(buffer.str()));
  } catch (const YAML::Exception& e) {
    throw UserError(path + ": not valid YAML (line " + std::to_string(e.mark.line + 1) + ": " + e.msg + ")");
  }
}

std::string scalar_text(const json& v, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer()) return std::to_string(v.get<long long>());
  if (v.is_number()) {
    std::ostringstream out;
    out.precision(15);
    out << v.get<double>();
    return out.str();
  }
  throw UserError(where + " must be a number or text, not " + std::string(v.type_name()));
}

// A list of passes: "a<..>,b", or a list whose items are "a<..>" or {a: {k: v}}.
std::vector<PassSpec> read_passes(const json& v, const std::string& where) {
  if (v.is_string()) return parse_pipeline_text(v.get<std::string>());
  if (!v.is_array() || v.empty()) throw UserError(where + " must be a pipeline text or a non-empty list of passes");
  std::vector<PassSpec> passes;
  for (const auto& item : v) {
    if (item.is_string()) {
      for (auto& p : parse_pipeline_text(item.get<std::string>())) passes.push_back(p);
    } else if (item.is_object() && item.size() == 1) {
      PassSpec spec;
      spec.name = item.begin().key();
      const json& options = item.begin().value();
      if (!options.is_null() && !options.is_object())
        throw UserError(where + ": options of " + spec.name + " must be a map of option: value");
      if (options.is_object())
        for (const auto& [k, value] : options.items()) spec.set(k, scalar_text(value, where + ": " + spec.name + "." + k));
      passes.push_back(spec);
    } else {
      throw UserError(where + ": each pass is \"name<k=v>\" or {name: {option: value}}");
    }
  }
  return passes;
}

void check_keys(const json& object, const std::vector<std::string>& known, const std::string& where) {
  for (const auto& [key, value] : object.items()) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    throw UserError(where + ": unknown key '" + key + "'" + did_you_mean(key, known) + " (known: " + join(known, ", ") + ")");
  }
}

std::string resolve(const std::filesystem::path& base, const std::string& path) {
  if (path.empty() || std::filesystem::path(path).is_absolute()) return path;
  return (base / path).lexically_normal().string();
}

std::int64_t integer(const json& v, const std::string& where, std::int64_t low) {
  if (!v.is_number_integer() || v.get<std::int64_t>() < low)
    throw UserError(where + " must be an integer >= " + std::to_string(low));
  return v.get<std::int64_t>();
}

}  // namespace

Recipe load_recipe(const std::string& path) {
  const json doc = read_document(path);
  if (!doc.is_object()) throw UserError(path + ": a recipe is a map of keys (name, model, passes, ...)");
  check_keys(doc, {"name", "model", "data", "images", "labels", "train-data", "test-data", "input-shape", "input-dtype",
                   "input-range", "model-output", "resize", "crop", "mean", "std", "color", "cache-mb", "seed", "passes",
                   "variants", "measure", "grid", "search"},
             path);
  const std::filesystem::path base = std::filesystem::path(path).parent_path();
  Recipe r;
  r.source = path;
  try {
    r.name = doc.contains("name") ? scalar_text(doc["name"], "name") : std::filesystem::path(path).stem().string();
    if (!doc.contains("model")) throw UserError("'model' is missing (a TorchScript file, relative to the recipe)");
    r.model_as_written = scalar_text(doc["model"], "model");
    r.model = resolve(base, r.model_as_written);
    if (doc.contains("data")) {
      const std::string data = scalar_text(doc["data"], "data");
      r.data.data = data == "fashion-mnist" ? data : resolve(base, data);
      r.data.data_given = true;
    }
    if (doc.contains("images") != doc.contains("labels")) throw UserError("'images' and 'labels' must be given together");
    if (doc.contains("images")) {
      r.data.images = resolve(base, scalar_text(doc["images"], "images"));
      r.data.labels = resolve(base, scalar_text(doc["labels"], "labels"));
    }
    // The same keys as the flags of every subcommand.
    if (doc.contains("train-data")) r.data.train_data = resolve(base, scalar_text(doc["train-data"], "train-data"));
    if (doc.contains("test-data")) r.data.test_data = resolve(base, scalar_text(doc["test-data"], "test-data"));
    const std::pair<const char*, std::string*> texts[] = {
        {"input-shape", &r.data.input_shape}, {"input-dtype", &r.data.input_dtype}, {"input-range", &r.data.input_range},
        {"model-output", &r.data.output},     {"mean", &r.data.mean},               {"std", &r.data.stddev},
        {"color", &r.data.color}};
    for (const auto& [key, field] : texts)
      if (doc.contains(key)) *field = scalar_text(doc[key], key);
    if (doc.contains("resize")) r.data.resize = int(integer(doc["resize"], "resize", 0));
    if (doc.contains("crop")) r.data.crop = int(integer(doc["crop"], "crop", 0));
    if (doc.contains("cache-mb")) r.data.cache_mb = integer(doc["cache-mb"], "cache-mb", 0);
    if (doc.contains("seed")) r.seed = std::uint64_t(integer(doc["seed"], "seed", 0));
    if (doc.contains("passes") == doc.contains("variants"))
      throw UserError("give either 'passes' (one pipeline) or 'variants' (named pipelines), not " +
                      std::string(doc.contains("passes") ? "both" : "neither"));
    if (doc.contains("passes")) r.variants.push_back({"pipeline", read_passes(doc["passes"], "passes")});
    if (doc.contains("variants")) {
      if (!doc["variants"].is_object() || doc["variants"].empty())
        throw UserError("'variants' must be a map of name: passes");
      for (const auto& [name, passes] : doc["variants"].items())
        r.variants.push_back({name, read_passes(passes, "variants." + name)});
    }
    if (doc.contains("measure")) {
      const json& m = doc["measure"];
      if (!m.is_object()) throw UserError("'measure' must be a map");
      check_keys(m, {"batches", "windows", "device", "meter", "warmup-seconds", "accuracy-limit", "metric"}, path + ": measure");
      if (m.contains("metric")) {
        r.measure.metric = scalar_text(m["metric"], "measure.metric");
        if (r.measure.metric != "auto" && r.measure.metric != "top1" && r.measure.metric != "agreement" &&
            r.measure.metric != "cosine" && r.measure.metric != "snr")
          throw UserError("measure.metric '" + r.measure.metric + "': choose top1, agreement, cosine, snr or auto");
      }
      if (m.contains("batches")) {
        r.measure.batches.clear();
        const json list = m["batches"].is_array() ? m["batches"] : json::array({m["batches"]});
        for (const auto& b : list) r.measure.batches.push_back(integer(b, "measure.batches", 1));
        if (r.measure.batches.empty()) throw UserError("measure.batches: give at least one batch size");
      }
      if (m.contains("windows")) r.measure.windows = int(integer(m["windows"], "measure.windows", 2));
      if (m.contains("device")) r.measure.device = scalar_text(m["device"], "measure.device");
      if (m.contains("meter")) r.measure.meter = scalar_text(m["meter"], "measure.meter");
      if (m.contains("warmup-seconds")) {
        if (!m["warmup-seconds"].is_number() || m["warmup-seconds"].get<double>() < 0)
          throw UserError("measure.warmup-seconds must be a number >= 0");
        r.measure.warmup_seconds = m["warmup-seconds"].get<double>();
      }
      if (m.contains("accuracy-limit")) r.measure.accuracy_limit = integer(m["accuracy-limit"], "measure.accuracy-limit", 0);
    }
    if (doc.contains("grid")) r.grid = scalar_text(doc["grid"], "grid");
    if (doc.contains("search")) r.search = scalar_text(doc["search"], "search");
    parse_grid(r.grid);
    parse_grid(r.search);
  } catch (const UserError& e) {
    const std::string message = e.unrendered();
    if (message.rfind(path, 0) == 0) throw;
    throw UserError(path + ": " + message);
  }
  return r;
}

Recipe inline_recipe(const std::string& model, const std::string& passes) {
  Recipe r;
  r.source = kInlineRecipeSource;
  r.name = std::filesystem::path(model).stem().string();
  r.model = r.model_as_written = model;
  r.variants.push_back({"pipeline", parse_pipeline_text(passes)});
  return r;
}

std::string Recipe::canonical_json() const {
  json variants_json = json::object();
  for (const auto& v : variants) variants_json[v.name] = pipeline_text(v.passes);
  json batches = json::array();
  for (auto b : measure.batches) batches.push_back(b);
  json out{{"name", name},
              {"model", model_as_written},
              {"data", data.data},
              {"images", data.images.empty() ? "" : std::filesystem::path(data.images).filename().string()},
              {"labels", data.labels.empty() ? "" : std::filesystem::path(data.labels).filename().string()},

              {"seed", seed},
              {"variants", variants_json},
              {"measure",
               {{"batches", batches},
                {"windows", measure.windows},
                {"device", measure.device},
                {"meter", measure.meter},
                {"warmup-seconds", measure.warmup_seconds},
                {"accuracy-limit", measure.accuracy_limit}}}}
  ;
  // Keys added later appear only when set, so earlier recipes keep their identity (sweep folders).
  const std::pair<const char*, std::string> more[] = {
      {"train-data", data.train_data}, {"test-data", data.test_data},     {"input-shape", data.input_shape},
      {"input-dtype", data.input_dtype}, {"input-range", data.input_range}, {"model-output", data.output},
      {"mean", data.mean},             {"std", data.stddev},              {"color", data.color}};
  for (const auto& [key, value] : more)
    if (!value.empty()) out[key] = value;
  if (data.resize) out["resize"] = data.resize;
  if (measure.metric != "auto") out["measure"]["metric"] = measure.metric;
  if (data.crop) out["crop"] = data.crop;
  return out.dump();
}

std::vector<GridAxis> parse_grid(const std::string& text) {
  std::vector<GridAxis> axes;
  std::string normalized = text;
  for (char& c : normalized)
    if (c == ';' || c == '\n' || c == '\t') c = ' ';
  std::istringstream in(normalized);
  std::string item;
  while (in >> item) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw UserError("grid '" + text + "': '" + item + "' must be key=value,value,... (e.g. prune.sparsity=0.5,0.9)");
    GridAxis axis{item.substr(0, eq), {}};
    if (axis.key != "seed" && axis.key.find('.') == std::string::npos)
      throw UserError("grid key '" + axis.key + "' must be PASS.OPTION (e.g. prune.sparsity) or seed");
    std::stringstream values(item.substr(eq + 1));
    std::string v;
    bool any = false;
    while (std::getline(values, v, ',')) {
      axis.values.push_back(v);  // an empty value is one: "quant.exclude=,conv1" tries no exclusion first
      any = any || !v.empty();
    }
    if (!any) throw UserError("grid key '" + axis.key + "' has no values");
    for (const auto& a : axes)
      if (a.key == axis.key) throw UserError("grid key '" + axis.key + "' given twice");
    axes.push_back(axis);
  }
  return axes;
}

namespace {

// The pass a grid key's first part names: its position, its name, or a unique prefix.
std::size_t find_pass(const std::string& ref, const std::string& key, const RecipeVariant& variant) {
  std::vector<std::size_t> exact, prefix;
  std::vector<std::string> names;
  for (std::size_t i = 0; i < variant.passes.size(); ++i) {
    const std::string& name = variant.passes[i].name;
    names.push_back(name);
    if (ref == std::to_string(i + 1) || ref == name) exact.push_back(i);
    else if (name.compare(0, ref.size(), ref) == 0) prefix.push_back(i);
  }
  const auto& found = exact.empty() ? prefix : exact;
  const std::string list = join(names, ", ");
  if (found.empty())
    throw UserError("grid key '" + key + "': no pass '" + ref + "' in " + variant.name + did_you_mean(ref, names) +
                    " (its passes: " + list + ")");
  if (found.size() > 1)
    throw UserError("grid key '" + key + "': '" + ref + "' matches several passes of " + variant.name + " (" + list +
                    "); use the full name or the position, e.g. " + std::to_string(found[0] + 1) + "." +
                    key.substr(key.rfind('.') + 1));
  return found.front();
}

}  // namespace

std::string RecipePoint::label() const {
  // A recipe's single pipeline is called "pipeline": a sweep's points are told apart by their values.
  const std::string first = variant == "pipeline" && !config.empty() ? "" : variant;
  std::vector<std::string> parts;
  if (!first.empty()) parts.push_back(first);
  for (const auto& [k, v] : config) parts.push_back(k + "=" + v);
  return join(parts, " ");
}

std::vector<RecipePoint> expand(const Recipe& recipe, const std::vector<GridAxis>& grid) {
  std::vector<RecipePoint> points;
  for (const auto& variant : recipe.variants) {
    std::vector<std::size_t> at(grid.size(), 0);
    std::vector<std::pair<std::size_t, std::string>> targets;  // pass index and option per axis
    for (const auto& axis : grid) {
      if (axis.key == "seed") {
        targets.emplace_back(0, "");
        continue;
      }
      const auto dot = axis.key.rfind('.');
      targets.emplace_back(find_pass(axis.key.substr(0, dot), axis.key, variant), axis.key.substr(dot + 1));
    }
    while (true) {
      RecipePoint p;
      p.index = std::int64_t(points.size());
      p.variant = variant.name;
      p.passes = variant.passes;
      p.seed = recipe.seed;
      for (std::size_t a = 0; a < grid.size(); ++a) {
        const std::string& value = grid[a].values[at[a]];
        p.config.emplace_back(grid[a].key, value);
        if (grid[a].key == "seed") {
          try {
            p.seed = std::stoull(value);
          } catch (const std::exception&) {
            throw UserError("grid key 'seed': '" + value + "' is not a seed (a non-negative integer)");
          }
        } else {
          p.passes[targets[a].first].set(targets[a].second, value);
        }
      }
      points.push_back(p);
      // Odometer: the last axis fastest.
      std::size_t a = grid.size();
      while (a > 0 && ++at[a - 1] == grid[a - 1].values.size()) at[--a] = 0;
      if (a == 0) break;
    }
  }
  return points;
}

std::string sweep_id(const Recipe& recipe, const std::string& model_sha256, const std::vector<GridAxis>& grid) {
  std::string text = recipe.canonical_json() + "\nmodel " + model_sha256 + "\ngrid";
  for (const auto& axis : grid) {
    text += " " + axis.key + "=" + join(axis.values, ",");
  }
  return sha256_hex(text).substr(0, 16);
}

Shard parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  Shard s;
  try {
    if (slash == std::string::npos) throw std::invalid_argument(text);
    std::size_t used = 0;
    s.index = std::stoi(text.substr(0, slash), &used);
    if (used != slash) throw std::invalid_argument(text);
    s.count = std::stoi(text.substr(slash + 1), &used);
    if (used != text.size() - slash - 1) throw std::invalid_argument(text);
  } catch (const std::exception&) {
    throw UserError(option_ref("SweepOptions::shard") + " '" + text +
                    "': write i/N, e.g. 2/8 for the second of eight shards");
  }
  if (s.count < 1)
    throw UserError(option_ref("SweepOptions::shard") + " '" + text + "': the number of shards must be at least 1");
  if (s.index < 1 || s.index > s.count)
    throw UserError(option_ref("SweepOptions::shard") + " '" + text + "': the shard index must be between 1 and " +
                    std::to_string(s.count) + " (shards count from 1)");
  return s;
}

}  // namespace joulecut
