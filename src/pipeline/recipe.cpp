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

std::vector<distill::LayerLossTerm> read_layer_losses(const Reader& r, const YAML::Node& ll, const std::string& sec) {
  CONDENSE_CHECK(ll.IsSequence(), "{}: '{}.layer_losses' must be a list of {{loss, weight}}", r.file, sec);
  std::vector<distill::LayerLossTerm> out;
  for (std::size_t i = 0; i < ll.size(); ++i) {
    const auto section = fmt::format("{}.layer_losses[{}]", sec, i);
    r.only_keys(ll[i], section, {"loss", "weight", "weight_end"});
    CONDENSE_CHECK(ll[i]["loss"], "{}: '{}' needs a 'loss'", r.file, section);
    std::string name;
    distill::LayerLossTerm term;
    r.get(ll[i], section, "loss", name);
    r.get(ll[i], section, "weight", term.weight);
    if (ll[i]["weight_end"]) {
      double v = 0;
      r.get(ll[i], section, "weight_end", v);
      term.weight_end = v;
    }
    try {
      term.loss = distill::parse_layer_loss(name);
    } catch (const Error& e) {
      fail("{}: field '{}.loss': {}", r.file, section, e.what());
    }
    out.push_back(term);
  }
  return out;
}

void read_distill(const Reader& r, const YAML::Node& d, const std::string& sec, distill::DistillOptions& o) {
  r.only_keys(d, sec, {"loss", "temperature", "alpha", "prediction_weight", "layer_losses", "layer_map",
                       "shared_projection", "temperature_end", "alpha_end", "progressive", "mlm_weight",
                       "mlm_distill_weight", "mask_prob", "norm_fade"});
  if (d["loss"]) {
    std::string loss;
    r.get(d, sec, "loss", loss);
    try {
      o.soft_loss = distill::parse_soft_loss(loss);
    } catch (const Error& e) {
      fail("{}: field '{}.loss': {}", r.file, sec, e.what());
    }
  }
  r.get(d, sec, "temperature", o.temperature);
  r.get(d, sec, "alpha", o.alpha);
  r.get(d, sec, "prediction_weight", o.prediction_weight);
  if (d["temperature_end"]) {
    double v = 0;
    r.get(d, sec, "temperature_end", v);
    o.temperature_end = v;
  }
  if (d["alpha_end"]) {
    double v = 0;
    r.get(d, sec, "alpha_end", v);
    o.alpha_end = v;
  }
  r.get(d, sec, "shared_projection", o.shared_projection);
  r.get(d, sec, "progressive", o.progressive);
  r.get(d, sec, "mlm_weight", o.mlm_weight);
  r.get(d, sec, "mlm_distill_weight", o.mlm_distill_weight);
  r.get(d, sec, "mask_prob", o.mask_prob);
  r.get(d, sec, "norm_fade", o.norm_fade);
  if (auto ll = d["layer_losses"]) o.layer_losses = read_layer_losses(r, ll, sec);  // a stage's list replaces the recipe's
  if (auto m = d["layer_map"]) {
    const auto section = sec + ".layer_map";
    r.only_keys(m, section, {"strategy", "every", "teacher_layers", "exclude_last"});
    auto& lm = o.layer_map;
    r.get(m, section, "strategy", lm.strategy);
    r.get(m, section, "every", lm.every);
    r.get(m, section, "teacher_layers", lm.teacher_layers);
    r.get(m, section, "exclude_last", lm.exclude_last);
  }
}

void read_train(const Reader& r, const YAML::Node& t, const std::string& sec, train::TrainOptions& o, int* max_length,
                int64_t* train_limit) {
  std::set<std::string> keys{"epochs", "batch_size", "learning_rate", "warmup_ratio", "weight_decay", "max_grad_norm",
                             "seed", "bf16"};
  // Stages share one tokenized training set, so its size and length are recipe-wide.
  if (max_length != nullptr) keys.insert({"max_length", "train_limit"});
  r.only_keys(t, sec, keys);
  r.get(t, sec, "epochs", o.epochs);
  r.get(t, sec, "batch_size", o.batch_size);
  r.get(t, sec, "learning_rate", o.learning_rate);
  r.get(t, sec, "warmup_ratio", o.warmup_ratio);
  r.get(t, sec, "weight_decay", o.weight_decay);
  r.get(t, sec, "max_grad_norm", o.max_grad_norm);
  r.get(t, sec, "seed", o.seed);
  r.get(t, sec, "bf16", o.bf16);
  if (max_length != nullptr) {
    r.get(t, sec, "max_length", *max_length);
    r.get(t, sec, "train_limit", *train_limit);
  }
}

quantize::Scheme read_scheme(const Reader& r, const YAML::Node& n, const std::string& sec) {
  r.only_keys(n, sec, {"bits", "method", "symmetric", "granularity", "group_size", "range"});
  quantize::Scheme s;
  std::string method = quantize::to_string(s.method), gran = quantize::to_string(s.granularity);
  r.get(n, sec, "bits", s.bits);
  r.get(n, sec, "method", method);
  r.get(n, sec, "symmetric", s.symmetric);
  r.get(n, sec, "granularity", gran);
  r.get(n, sec, "group_size", s.group_size);
  r.get(n, sec, "range", s.range);
  try {
    s.method = quantize::parse_method(method);
    s.granularity = quantize::parse_granularity(gran);
    if (s.is_float() && !n["bits"]) s.bits = 16;
    s.validate(sec);
  } catch (const Error& e) {
    fail("{}: {}", r.file, e.what());
  }
  return s;
}

YAML::Node load_yaml(const std::filesystem::path& path) {
  CONDENSE_CHECK(std::filesystem::exists(path), "{}: recipe file not found", path.string());
  try {
    return YAML::LoadFile(path.string());
  } catch (const YAML::Exception& e) {
    fail("{}: not valid YAML ({})", path.string(), e.what());
  }
}

}  // namespace

QuantizeRecipe load_quantize_recipe(const std::filesystem::path& path) {
  auto root = load_yaml(path);
  Reader r{path.string()};
  QuantizeRecipe out;
  if (!root || root.IsNull()) return out;
  r.only_keys(root, "", {"name", "description", "weights", "embeddings", "activations", "keep_float",
                         "mixed_precision", "qat"});
  auto& o = out.options;
  if (auto w = root["weights"]) o.weights = read_scheme(r, w, "weights");
  if (auto e = root["embeddings"]) {
    if (e.IsScalar() && e.as<std::string>() == "none") {
      o.embeddings.reset();
    } else {
      o.embeddings = read_scheme(r, e, "embeddings");
    }
  }
  if (auto a = root["activations"]) {
    r.only_keys(a, "activations", {"mode", "symmetric", "observer", "percentile", "calib_batches", "int8_kernels"});
    std::string mode = quantize::to_string(o.activations), obs = quantize::to_string(o.observer);
    r.get(a, "activations", "mode", mode);
    r.get(a, "activations", "observer", obs);
    r.get(a, "activations", "symmetric", o.act_symmetric);
    r.get(a, "activations", "percentile", o.percentile);
    r.get(a, "activations", "calib_batches", o.calib_batches);
    r.get(a, "activations", "int8_kernels", o.int8_kernels);
    try {
      o.activations = quantize::parse_activations(mode);
      o.observer = quantize::parse_observer(obs);
    } catch (const Error& e) {
      fail("{}: field 'activations': {}", path.string(), e.what());
    }
  }
  r.get(root, "", "keep_float", o.keep_float);
  if (auto m = root["mixed_precision"]) {
    r.only_keys(m, "mixed_precision", {"low", "high", "budget"});
    QuantizeRecipe::Mixed mp;
    r.get(m, "mixed_precision", "low", mp.low);
    r.get(m, "mixed_precision", "high", mp.high);
    r.get(m, "mixed_precision", "budget", mp.budget);
    CONDENSE_CHECK(mp.low < mp.high && mp.budget >= mp.low && mp.budget <= mp.high,
                   "{}: field 'mixed_precision': needs low < high and low <= budget <= high, found {}, {}, {}",
                   path.string(), mp.low, mp.high, mp.budget);
    out.mixed_precision = mp;
  }
  if (auto q = root["qat"]) {
    r.only_keys(q, "qat", {"epochs", "batch_size", "learning_rate", "warmup_ratio", "weight_decay", "max_grad_norm",
                           "seed", "alpha", "temperature", "layer_losses"});
    QuantizeRecipe::Qat qat;
    qat.train.epochs = 1;
    qat.train.learning_rate = 2e-5;
    r.get(q, "qat", "alpha", qat.alpha);
    r.get(q, "qat", "temperature", qat.temperature);
    if (auto ll = q["layer_losses"]) qat.layer_losses = read_layer_losses(r, ll, "qat");
    YAML::Node t;
    for (const auto& kv : q) {
      const auto key = kv.first.as<std::string>();
      if (key != "alpha" && key != "temperature" && key != "layer_losses") t[key] = kv.second;
    }
    if (t.size() > 0) read_train(r, t, "qat", qat.train, nullptr, nullptr);
    out.qat = qat;
  }
  try {
    o.validate();
  } catch (const Error& e) {
    fail("{}: {}", path.string(), e.what());
  }
  return out;
}

void check_layer_losses(const PruneRecipe& recipe, const std::string& file) {
  CONDENSE_CHECK(recipe.layer_losses.empty() || recipe.options.granularity != prune::Granularity::Layers,
                 "{}: field 'distill.layer_losses': layer pruning removes the layers they compare", file);
}

PruneRecipe load_prune_recipe(const std::filesystem::path& path) {
  auto root = load_yaml(path);
  Reader r{path.string()};
  PruneRecipe out;
  if (!root || root.IsNull()) return out;
  r.only_keys(root, "", {"name", "description", "prune", "train", "distill"});
  auto& o = out.options;
  if (auto p = root["prune"]) {
    r.only_keys(p, "prune", {"criterion", "granularity", "sparsity", "global", "schedule", "update_every", "steps", "nm",
                             "depth", "layer_select", "regularization", "score_batches", "layerdrop", "soft_threshold",
                             "soft_lambda", "final_epochs", "joint"});
    std::string criterion = prune::to_string(o.criterion), granularity = prune::to_string(o.granularity),
                schedule = prune::to_string(o.schedule), nm;
    r.get(p, "prune", "criterion", criterion);
    r.get(p, "prune", "granularity", granularity);
    r.get(p, "prune", "schedule", schedule);
    r.get(p, "prune", "sparsity", o.sparsity);
    r.get(p, "prune", "global", o.global);
    r.get(p, "prune", "update_every", o.update_every);
    r.get(p, "prune", "steps", o.steps);
    r.get(p, "prune", "final_epochs", o.final_epochs);
    r.get(p, "prune", "joint", o.joint);
    r.get(p, "prune", "depth", o.depth);
    r.get(p, "prune", "layer_select", o.layer_select);
    r.get(p, "prune", "regularization", o.regularization);
    r.get(p, "prune", "score_batches", o.score_batches);
    r.get(p, "prune", "layerdrop", o.layerdrop);
    r.get(p, "prune", "soft_threshold", o.soft_threshold);
    r.get(p, "prune", "soft_lambda", o.soft_lambda);
    r.get(p, "prune", "nm", nm);
    try {
      o.criterion = prune::parse_criterion(criterion);
      o.granularity = prune::parse_granularity(granularity);
      o.schedule = prune::parse_schedule(schedule);
    } catch (const Error& e) {
      fail("{}: field 'prune': {}", path.string(), e.what());
    }
    if (!nm.empty()) {
      const auto colon = nm.find(':');
      try {
        CONDENSE_CHECK(colon != std::string::npos, "no colon");
        o.n = std::stoll(nm.substr(0, colon));
        o.m = std::stoll(nm.substr(colon + 1));
      } catch (const std::exception&) {
        fail("{}: field 'prune.nm': expected N:M with integers such as 2:4, found '{}'", path.string(), nm);
      }
    }
  }
  if (auto t = root["train"]) read_train(r, t, "train", o.train, nullptr, nullptr);
  if (auto d = root["distill"]) {
    r.only_keys(d, "distill", {"alpha", "temperature", "layer_losses"});
    r.get(d, "distill", "alpha", out.alpha);
    r.get(d, "distill", "temperature", out.temperature);
    if (auto ll = d["layer_losses"]) out.layer_losses = read_layer_losses(r, ll, "distill");
    for (std::size_t i = 0; i < out.layer_losses.size(); ++i) {
      // Pruned heads change the attention maps' shapes; the hidden states keep theirs.
      const auto l = out.layer_losses[i].loss;
      CONDENSE_CHECK(l == distill::LayerLoss::HiddenMSE || l == distill::LayerLoss::HiddenCosine,
                     "{}: field 'distill.layer_losses[{}].loss': pruning compares hidden states only (hidden_mse or "
                     "hidden_cosine), found {}",
                     path.string(), i, distill::to_string(l));
    }
    check_layer_losses(out, path.string());
  }
  try {
    o.validate();
  } catch (const Error& e) {
    fail("{}: {}", path.string(), e.what());
  }
  return out;
}

Recipe load_recipe(const std::filesystem::path& path) {
  auto root = load_yaml(path);
  Reader r{path.string()};
  Recipe out;
  if (!root || root.IsNull()) return out;
  r.only_keys(root, "", {"task", "student", "distill", "train", "stages", "augment", "dualtrain", "name", "description"});
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
    r.only_keys(s, "student",
                {"arch", "layers", "hidden_size", "num_attention_heads", "intermediate_size", "init", "init_layers", "norm",
                 "embedding_dim", "mlp_size", "kernel_sizes", "dropout", "bottleneck_size", "num_ffn", "hidden_act",
                 "vocab", "init_search"});
    if (auto is = s["init_search"]) {
      r.only_keys(is, "student.init_search", {"candidates", "held_out"});
      r.get(is, "student.init_search", "candidates", out.init_search.candidates);
      r.get(is, "student.init_search", "held_out", out.init_search.held_out);
      CONDENSE_CHECK(out.init_search.candidates.size() >= 2,
                     "{}: field 'student.init_search.candidates' needs two lists of teacher layers or more",
                     path.string());
    }
    if (s["vocab"]) {
      // A number (learn that many pieces from the training text) or a vocab.txt path.
      r.get(s, "student", "vocab", out.student_vocab);
      CONDENSE_CHECK(!out.student_vocab.empty(), "{}: field 'student.vocab' is empty", path.string());
    }
    r.get(s, "student", "arch", out.student.arch);
    CONDENSE_CHECK(out.student.arch == "bert" || out.student.arch == "bilstm" || out.student.arch == "cnn",
                   "{}: field 'student.arch' is '{}', expected bert, bilstm or cnn", path.string(), out.student.arch);
    if (s["norm"]) {
      std::string norm;
      r.get(s, "student", "norm", norm);
      try {
        out.student.norm = nn::parse_norm(norm);
      } catch (const Error& e) {
        fail("{}: field 'student.norm': {}", path.string(), e.what());
      }
    }
    r.get(s, "student", "layers", out.student.layers);
    int64_t v = 0;
    if (s["hidden_size"]) { r.get(s, "student", "hidden_size", v); out.student.hidden_size = v; }
    if (s["num_attention_heads"]) { r.get(s, "student", "num_attention_heads", v); out.student.num_attention_heads = v; }
    if (s["intermediate_size"]) { r.get(s, "student", "intermediate_size", v); out.student.intermediate_size = v; }
    r.get(s, "student", "init", out.student.init);
    r.get(s, "student", "init_layers", out.student.init_layers);
    if (s["embedding_dim"]) { r.get(s, "student", "embedding_dim", v); out.student.embedding_dim = v; }
    r.get(s, "student", "mlp_size", out.student.mlp_size);
    r.get(s, "student", "bottleneck_size", out.student.bottleneck_size);
    r.get(s, "student", "num_ffn", out.student.num_ffn);
    if (s["hidden_act"]) {
      std::string act;
      r.get(s, "student", "hidden_act", act);
      out.student.hidden_act = act;
    }
    r.get(s, "student", "kernel_sizes", out.student.kernel_sizes);
    r.get(s, "student", "dropout", out.student.dropout);
  }
  if (auto d = root["dualtrain"]) {
    r.only_keys(d, "dualtrain", {"mix_prob", "dual_weight", "shared_proj", "proj_weight"});
    distill::DualTrainOptions o;
    r.get(d, "dualtrain", "mix_prob", o.mixed.mix_prob);
    r.get(d, "dualtrain", "dual_weight", o.dual_weight);
    r.get(d, "dualtrain", "shared_proj", o.shared_proj);
    r.get(d, "dualtrain", "proj_weight", o.proj_weight);
    try {
      o.validate();
    } catch (const Error& e) {
      fail("{}: {}", path.string(), e.what());
    }
    out.dualtrain = o;
  }
  if (auto a = root["augment"]) {
    r.only_keys(a, "augment", {"method", "per_example", "replace_prob", "neighbours"});
    r.get(a, "augment", "method", out.augment.method);
    CONDENSE_CHECK(out.augment.method == "tinybert" || out.augment.method == "tang",
                   "{}: field 'augment.method' is '{}', expected tinybert or tang", path.string(), out.augment.method);
    r.get(a, "augment", "per_example", out.augment.per_example);
    r.get(a, "augment", "replace_prob", out.augment.replace_prob);
    r.get(a, "augment", "neighbours", out.augment.neighbours);
  }
  if (auto d = root["distill"]) read_distill(r, d, "distill", out.distill);
  if (auto t = root["train"]) read_train(r, t, "train", out.distill.train, &out.max_length, &out.train_limit);
  if (auto st = root["stages"]) {
    CONDENSE_CHECK(st.IsSequence() && st.size() > 0, "{}: 'stages' must be a non-empty list", path.string());
    for (std::size_t i = 0; i < st.size(); ++i) {
      const auto sec = fmt::format("stages[{}]", i);
      r.only_keys(st[i], sec, {"name", "distill", "train"});
      Stage stage{fmt::format("stage{}", i + 1), out.distill};
      // The hand-over from LayerNorm (norm_fade) happens once, in the first stage, unless a later
      // stage sets its own.
      if (i > 0) stage.distill.norm_fade = 0;
      r.get(st[i], sec, "name", stage.name);
      if (auto d = st[i]["distill"]) read_distill(r, d, sec + ".distill", stage.distill);
      if (auto t = st[i]["train"]) read_train(r, t, sec + ".train", stage.distill.train, nullptr, nullptr);
      try {
        stage.distill.validate();
      } catch (const Error& e) {
        fail("{}: {}: {}", path.string(), sec, e.what());
      }
      out.stages.push_back(std::move(stage));
    }
  }
  try {
    out.distill.validate();
  } catch (const Error& e) {
    fail("{}: {}", path.string(), e.what());
  }
  return out;
}

}  // namespace condense::pipeline
