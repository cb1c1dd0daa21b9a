#include "condense/pipeline/recipe.h"

#include <yaml-cpp/yaml.h>

#include <set>

#include "condense/core/error.h"
#include "condense/data/glue.h"

namespace condense::pipeline {

namespace {

struct Reader {
  std::string file;

  void only_keys(const YAML::Node& node, const std::string& section, const std::set<std::string>& allowed) const {
    CONDENSE_CHECK(node.IsMap(), "{}: '{}' must be a mapping", file, section);
    for (const auto& kv : node) {
      auto key = kv.first.as<std::string>();
      CONDENSE_CHECK(allowed.count(key), "{}: unknown key '{}{}'", file, section.empty() ? "" : section + ".", key);
    }
  }

  template <typename T>
  void get(const YAML::Node& node, const std::string& section, const char* key, T& out) const {
    if (!node[key]) return;
    try {
      out = node[key].as<T>();
    } catch (const YAML::Exception&) {
      fail("{}: field '{}{}' has an invalid value '{}'", file, section.empty() ? "" : section + ".", key,
           YAML::Dump(node[key]));
    }
  }
};

}  // namespace

Recipe load_recipe(const std::filesystem::path& path) {
  CONDENSE_CHECK(std::filesystem::exists(path), "{}: recipe file not found", path.string());
  YAML::Node root;
  try {
    root = YAML::LoadFile(path.string());
  } catch (const YAML::Exception& e) {
    fail("{}: not valid YAML ({})", path.string(), e.what());
  }
  Reader r{path.string()};
  Recipe out;
  if (!root || root.IsNull()) return out;
  r.only_keys(root, "", {"task", "student", "distill", "train", "name", "description"});
  if (root["task"]) {
    std::string task;
    r.get(root, "", "task", task);
    try {
      data::parse_task(task);
    } catch (const Error& e) {
      fail("{}: field 'task': {}", path.string(), e.what());
    }
    out.task = task;
  }
  if (auto s = root["student"]) {
    r.only_keys(s, "student", {"layers", "hidden_size", "num_attention_heads", "intermediate_size", "init", "init_layers"});
    r.get(s, "student", "layers", out.student.layers);
    int64_t v = 0;
    if (s["hidden_size"]) { r.get(s, "student", "hidden_size", v); out.student.hidden_size = v; }
    if (s["num_attention_heads"]) { r.get(s, "student", "num_attention_heads", v); out.student.num_attention_heads = v; }
    if (s["intermediate_size"]) { r.get(s, "student", "intermediate_size", v); out.student.intermediate_size = v; }
    r.get(s, "student", "init", out.student.init);
    r.get(s, "student", "init_layers", out.student.init_layers);
  }
  if (auto d = root["distill"]) {
    r.only_keys(d, "distill", {"loss", "temperature", "alpha"});
    std::string loss = "kl";
    r.get(d, "distill", "loss", loss);
    try {
      out.distill.soft_loss = distill::parse_soft_loss(loss);
    } catch (const Error& e) {
      fail("{}: field 'distill.loss': {}", path.string(), e.what());
    }
    r.get(d, "distill", "temperature", out.distill.temperature);
    r.get(d, "distill", "alpha", out.distill.alpha);
  }
  if (auto t = root["train"]) {
    r.only_keys(t, "train", {"epochs", "batch_size", "learning_rate", "warmup_ratio", "weight_decay", "max_grad_norm",
                             "seed", "max_length", "train_limit"});
    auto& o = out.distill.train;
    r.get(t, "train", "epochs", o.epochs);
    r.get(t, "train", "batch_size", o.batch_size);
    r.get(t, "train", "learning_rate", o.learning_rate);
    r.get(t, "train", "warmup_ratio", o.warmup_ratio);
    r.get(t, "train", "weight_decay", o.weight_decay);
    r.get(t, "train", "max_grad_norm", o.max_grad_norm);
    r.get(t, "train", "seed", o.seed);
    r.get(t, "train", "max_length", out.max_length);
    r.get(t, "train", "train_limit", out.train_limit);
  }
  try {
    out.distill.validate();
  } catch (const Error& e) {
    fail("{}: {}", path.string(), e.what());
  }
  return out;
}

}  // namespace condense::pipeline
