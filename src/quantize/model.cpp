// Model-level quantization: apply, QAT, Hessian sensitivity, diagnostics, storage (quantize.h).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "condense/core/error.h"
#include "condense/core/json.h"
#include "condense/io/safetensors.h"
#include "condense/nn/checkpoint.h"
#include "kernels.h"

namespace condense::quantize {

namespace fs = std::filesystem;
using detail::FakeQuantKernel;

// ---- kernels ----

namespace detail {

ActRange dynamic_range(const torch::Tensor& x, bool symmetric) {
  auto mm = torch::aminmax(x.detach());
  return {std::get<0>(mm).item<double>(), std::get<1>(mm).item<double>(), symmetric};
}

torch::Tensor FakeQuantKernel::forward(nn::DenseImpl& layer, const torch::Tensor& x) {
  if (mode_ == Activations::None) return layer.float_forward(x);
  const ActRange r = mode_ == Activations::Static ? *range_ : dynamic_range(x, symmetric_);
  return layer.float_forward(fake_quantize_activation(x, r));
}

torch::Tensor QatKernel::forward(nn::DenseImpl& layer, const torch::Tensor& x) {
  auto w = fake_quantize(layer.weight, weights_);
  auto in = x;
  if (mode_ != Activations::None) {
    ActRange r = dynamic_range(x, symmetric_);
    if (mode_ == Activations::Static) {
      if (layer.is_training() || !seen_) {
        // Q8BERT: exponential moving average of the batch ranges during training.
        constexpr double kMomentum = 0.9;
        if (seen_) {
          ema_.lo = kMomentum * ema_.lo + (1 - kMomentum) * r.lo;
          ema_.hi = kMomentum * ema_.hi + (1 - kMomentum) * r.hi;
        } else {
          ema_ = r;
        }
        seen_ = true;
      }
      r = ema_;
    }
    in = fake_quantize_activation(x, r);
  }
  return torch::nn::functional::linear(in, w, layer.bias);
}

torch::Tensor ObserveKernel::forward(nn::DenseImpl& layer, const torch::Tensor& x) {
  observer_.observe(x);
  return layer.float_forward(x);
}

torch::Tensor TapKernel::forward(nn::DenseImpl& layer, const torch::Tensor& x) {
  auto y = inner_ ? inner_->forward(layer, x) : layer.float_forward(x);
  outputs.push_back(y.detach());
  return y;
}

}  // namespace detail

bool int8_capable(const Scheme& s) {
  // Symmetric uniform codes of any width are integers times one scale per row: widened to int8
  // they run through the same GEMM (W4A8, W2A8, binary weights with int8 activations).
  return (s.method == Method::Uniform || s.method == Method::PowerOfTwo) && s.symmetric &&
         s.granularity != Granularity::Group;
}

Int8Weights int8_weights(const QTensor& w) {
  CONDENSE_CHECK(int8_capable(w.scheme), "int8 weights: scheme {} is not symmetric uniform per-channel/per-tensor",
                 w.scheme.name());
  Int8Weights out;
  out.scale = w.scale.to(torch::kFloat32).expand({w.shape[0]}).contiguous();
  // Narrower codes widened to int8: the dequantized values are exactly code · scale.
  out.codes = w.scheme.bits == 8 ? w.codes.contiguous()
                                 : torch::round(w.dequantize() / out.scale.unsqueeze(1)).to(torch::kInt8).contiguous();
  return out;
}

// ---- options ----

void QuantizeOptions::validate() const {
  weights.validate("weights");
  if (embeddings) {
    embeddings->validate("embeddings");
    CONDENSE_CHECK(embeddings->granularity != Granularity::Group || embeddings->group_size > 0,
                   "embeddings: group_size must be positive");
  }
  CONDENSE_CHECK(!weights.is_float() || activations == Activations::None,
                 "activations: fp16/bf16 weights run with float activations (use --activations none)");
  CONDENSE_CHECK(calib_batches > 0 && calib_batch_size > 0, "calib_batches and calib_batch_size must be positive");
  CONDENSE_CHECK(percentile > 50 && percentile <= 100, "percentile must be in (50, 100], found {}", percentile);
  for (const auto& [name, bits] : layer_bits) {
    Scheme s = weights;
    s.bits = bits;
    s.validate("layer_bits[" + name + "]");
  }
}

nlohmann::json QuantizedModel::config() const {
  nlohmann::json layers_j = nlohmann::json::object();
  for (const auto& [name, l] : layers) {
    auto j = l.weight.scheme.to_json();
    j["shape"] = l.weight.shape;
    if (l.input) j["input"] = true;
    layers_j[name] = j;
  }
  return {{"quant_method", "condense"},
          {"format_version", 1},
          {"activations", to_string(options.activations)},
          {"act_symmetric", options.act_symmetric},
          {"observer", to_string(options.observer)},
          {"int8_kernels", options.int8_kernels},
          {"layers", layers_j}};
}

// ---- model ----

namespace {

struct DenseRef {
  std::string name;
  std::shared_ptr<nn::DenseImpl> layer;
};

std::vector<DenseRef> encoder_dense(nn::BertClassifier& model) {
  std::vector<DenseRef> out;
  for (const auto& item : model->named_modules()) {
    auto d = std::dynamic_pointer_cast<nn::DenseImpl>(item.value());
    if (d && item.key().rfind("bert.encoder.", 0) == 0) out.push_back({item.key(), d});
  }
  return out;
}

bool matches(const std::string& name, const std::string& prefix) { return name.rfind(prefix, 0) == 0; }

// The scheme of a layer: the options' weights with the longest matching layer_bits prefix applied.
Scheme scheme_for(const std::string& name, const QuantizeOptions& o) {
  Scheme s = o.weights;
  std::size_t best = 0;
  for (const auto& [prefix, bits] : o.layer_bits) {
    if (matches(name, prefix) && prefix.size() >= best) {
      best = prefix.size();
      s.bits = bits;
    }
  }
  return s;
}

bool kept_float(const std::string& name, const QuantizeOptions& o) {
  return std::any_of(o.keep_float.begin(), o.keep_float.end(), [&](const auto& p) { return matches(name, p); });
}

// The kernel a quantized layer runs with; the layer's weight already holds the dequantized values.
std::shared_ptr<nn::DenseKernel> runtime_kernel(const LayerQuant& l, nn::DenseImpl& layer, const QuantizeOptions& o) {
  if (l.weight.scheme.method == Method::BFloat16) return detail::make_bf16_kernel(layer.weight, layer.bias);
  if (o.activations == Activations::None) return nullptr;  // float product (weights-only quantization)
  if (o.int8_kernels && int8_capable(l.weight.scheme)) {
    return detail::make_int8_kernel(l.weight, layer.bias, o.activations, l.input);
  }
  return std::make_shared<FakeQuantKernel>(o.activations, o.act_symmetric, l.input);
}

// Runs `batches` batches of `data` through the model in eval mode without gradients.
void run_batches(nn::BertClassifier& model, const train::EncodedDataset& data, int64_t batches, int64_t batch_size) {
  torch::NoGradGuard guard;
  const bool was_training = model->is_training();
  model->eval();
  const int64_t n = static_cast<int64_t>(data.size());
  for (int64_t b = 0; b < batches && b * batch_size < n; ++b) {
    std::vector<std::size_t> idx;
    for (int64_t i = b * batch_size; i < std::min(n, (b + 1) * batch_size); ++i) idx.push_back(static_cast<std::size_t>(i));
    auto batch = train::make_batch(data, idx);
    model->forward(batch.input_ids, batch.token_type_ids, batch.attention_mask);
  }
  model->train(was_training);
}

void quantize_embedding(const std::string& name, torch::Tensor& table, const Scheme& s, QuantizedModel& q) {
  torch::NoGradGuard guard;
  auto qt = quantize_tensor(table, s);
  table.copy_(qt.dequantize());
  q.layers[name] = {std::move(qt), std::nullopt};
}

}  // namespace

std::vector<std::string> dense_layer_names(nn::BertClassifier& model) {
  std::vector<std::string> names;
  for (const auto& d : encoder_dense(model)) names.push_back(d.name);
  return names;
}

QuantizedModel apply(nn::BertClassifier& model, const QuantizeOptions& o, const train::EncodedDataset* calib) {
  o.validate();
  CONDENSE_CHECK(model->config().share.empty(),
                 "quantization needs unshared layers; this model shares '{}' across layers (condense_share)",
                 model->config().share);
  QuantizedModel q;
  q.options = o;
  auto dense = encoder_dense(model);
  std::erase_if(dense, [&](const DenseRef& d) { return kept_float(d.name, o); });
  for (const auto& d : dense) {
    CONDENSE_CHECK(d.layer->plain(), "{}: quantization needs plain linear layers (not weightnorm, cosinenorm, low-rank or hashed)", d.name);
  }
  std::map<std::string, ActRange> ranges;
  if (o.activations == Activations::Static) {
    // After QAT the ranges the model trained with (EMA) are kept; other layers are calibrated.
    std::vector<DenseRef> to_calibrate;
    for (const auto& d : dense) {
      auto qat = std::dynamic_pointer_cast<detail::QatKernel>(d.layer->kernel());
      if (qat && qat->range()) {
        ranges[d.name] = *qat->range();
      } else {
        to_calibrate.push_back(d);
      }
    }
    CONDENSE_CHECK(to_calibrate.empty() || (calib != nullptr && calib->size() > 0),
                   "static activation quantization needs calibration data");
    std::vector<std::shared_ptr<detail::ObserveKernel>> obs;
    for (const auto& d : to_calibrate) {
      obs.push_back(std::make_shared<detail::ObserveKernel>(RangeObserver(o.observer, o.act_symmetric, o.percentile)));
      d.layer->set_kernel(obs.back());
    }
    if (!to_calibrate.empty()) run_batches(model, *calib, o.calib_batches, o.calib_batch_size);
    for (std::size_t i = 0; i < to_calibrate.size(); ++i) {
      ranges[to_calibrate[i].name] = obs[i]->observer().range();
      to_calibrate[i].layer->set_kernel(nullptr);
    }
  }
  torch::NoGradGuard guard;
  for (const auto& d : dense) {
    LayerQuant l{quantize_tensor(d.layer->weight, scheme_for(d.name, o)), std::nullopt};
    if (auto it = ranges.find(d.name); it != ranges.end()) l.input = it->second;
    d.layer->weight.copy_(l.weight.dequantize());
    d.layer->set_kernel(runtime_kernel(l, *d.layer, o));
    q.layers[d.name] = std::move(l);
  }
  if (o.embeddings) {
    auto& e = *model->bert->embeddings;
    for (auto [name, table] : {std::pair{"bert.embeddings.word_embeddings", e.word_embeddings->weight},
                               std::pair{"bert.embeddings.position_embeddings", e.position_embeddings->weight},
                               std::pair{"bert.embeddings.token_type_embeddings", e.token_type_embeddings->weight}}) {
      if (!kept_float(name, o)) quantize_embedding(name, table, *o.embeddings, q);
    }
  }
  return q;
}

void prepare_qat(nn::BertClassifier& model, const QuantizeOptions& o) {
  o.validate();
  CONDENSE_CHECK(model->config().share.empty(),
                 "quantization needs unshared layers; this model shares '{}' across layers (condense_share)",
                 model->config().share);
  for (const auto& d : encoder_dense(model)) {
    if (kept_float(d.name, o)) continue;
    CONDENSE_CHECK(d.layer->plain(), "{}: quantization needs plain linear layers (not weightnorm, cosinenorm, low-rank or hashed)", d.name);
    d.layer->set_kernel(std::make_shared<detail::QatKernel>(scheme_for(d.name, o), o.activations, o.act_symmetric));
  }
}

// ---- Hessian sensitivity (Q-BERT / HAWQ-V2) ----

std::map<std::string, double> hessian_sensitivity(nn::BertClassifier& model, const train::EncodedDataset& data,
                                                  int64_t batches, int64_t iterations, uint64_t seed) {
  CONDENSE_CHECK(batches > 0 && iterations > 0, "hessian_sensitivity needs batches > 0 and iterations > 0");
  CONDENSE_CHECK(data.size() > 0, "hessian_sensitivity needs data");
  auto dense = encoder_dense(model);
  std::vector<torch::Tensor> weights;
  for (const auto& d : dense) weights.push_back(d.layer->weight);
  std::vector<double> trace(dense.size(), 0.0);
  const bool was_training = model->is_training();
  model->eval();  // no dropout: the Hessian of the deterministic loss
  // LibTorch's fused CPU attention has no double backward; the math path does.
  struct FlashOff {
    bool was = at::globalContext().userEnabledFlashSDP();
    FlashOff() { at::globalContext().setSDPUseFlash(false); }
    ~FlashOff() { at::globalContext().setSDPUseFlash(was); }
  } flash_off;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const int64_t bs = 8, n = static_cast<int64_t>(data.size());
  int64_t samples = 0;
  for (int64_t b = 0; b < batches; ++b) {
    std::vector<std::size_t> idx;
    for (int64_t i = 0; i < bs; ++i) idx.push_back(static_cast<std::size_t>((b * bs + i) % n));
    auto batch = train::make_batch(data, idx);
    auto out = model->forward(batch.input_ids, batch.token_type_ids, batch.attention_mask);
    auto loss = train::task_loss(out.logits, batch);
    auto grads = torch::autograd::grad({loss}, weights, {}, /*retain_graph=*/true, /*create_graph=*/true);
    // Hutchinson (1989): E[vᵀHv] = tr(H) for Rademacher v. Drawing v for every layer at once is
    // unbiased for each diagonal block, since the cross terms vᵢᵀHᵢⱼvⱼ vanish in expectation.
    for (int64_t it = 0; it < iterations; ++it) {
      std::vector<torch::Tensor> vs;
      torch::Tensor gv = torch::zeros({});
      for (std::size_t i = 0; i < weights.size(); ++i) {
        vs.push_back(torch::randint(0, 2, weights[i].sizes(), gen, torch::kFloat32) * 2 - 1);
        gv = gv + (grads[i] * vs.back()).sum();
      }
      auto hv = torch::autograd::grad({gv}, weights, {}, /*retain_graph=*/true);
      for (std::size_t i = 0; i < weights.size(); ++i) trace[i] += (hv[i] * vs[i]).sum().item<double>();
      ++samples;
    }
  }
  model->train(was_training);
  std::map<std::string, double> out;
  for (std::size_t i = 0; i < dense.size(); ++i) {
    // Mean eigenvalue (trace per parameter), so that large and small layers compare (HAWQ-V2).
    out[dense[i].name] = trace[i] / static_cast<double>(samples) / static_cast<double>(weights[i].numel());
  }
  return out;
}

std::map<std::string, int> assign_bits(const std::map<std::string, double>& sensitivity, nn::BertClassifier& model,
                                       int low, int high, double budget) {
  CONDENSE_CHECK(low < high, "assign_bits: low bits ({}) must be below high bits ({})", low, high);
  CONDENSE_CHECK(budget >= low, "assign_bits: a budget of {} bits per weight is below the low width {}", budget, low);
  std::map<std::string, int64_t> sizes;
  int64_t total = 0;
  for (const auto& d : encoder_dense(model)) {
    if (sensitivity.count(d.name)) {
      sizes[d.name] = d.layer->weight.numel();
      total += sizes[d.name];
    }
  }
  std::vector<std::string> order;
  for (const auto& [name, s] : sensitivity) {
    CONDENSE_CHECK(sizes.count(name), "assign_bits: '{}' is not an encoder dense layer of the model", name);
    order.push_back(name);
  }
  // Most sensitive per parameter first: each upgrade buys the most curvature per extra bit.
  std::sort(order.begin(), order.end(), [&](const auto& a, const auto& b) { return sensitivity.at(a) > sensitivity.at(b); });
  std::map<std::string, int> bits;
  double used = static_cast<double>(low) * static_cast<double>(total);
  for (const auto& name : order) {
    bits[name] = low;
    const double extra = static_cast<double>(high - low) * static_cast<double>(sizes[name]);
    if (used + extra <= budget * static_cast<double>(total)) {
      bits[name] = high;
      used += extra;
    }
  }
  return bits;
}

// ---- diagnostics ----

std::vector<LayerError> layer_errors(nn::BertClassifier& float_model, nn::BertClassifier& quant_model,
                                     const train::EncodedDataset& data, int64_t batches) {
  auto fd = encoder_dense(float_model), qd = encoder_dense(quant_model);
  CONDENSE_CHECK(fd.size() == qd.size(), "layer_errors: the models have {} and {} dense layers", fd.size(), qd.size());
  std::vector<std::shared_ptr<detail::TapKernel>> ft, qt;
  for (std::size_t i = 0; i < fd.size(); ++i) {
    ft.push_back(std::make_shared<detail::TapKernel>(fd[i].layer->kernel()));
    qt.push_back(std::make_shared<detail::TapKernel>(qd[i].layer->kernel()));
    fd[i].layer->set_kernel(ft.back());
    qd[i].layer->set_kernel(qt.back());
  }
  run_batches(float_model, data, batches, 32);
  run_batches(quant_model, data, batches, 32);
  std::vector<LayerError> out;
  for (std::size_t i = 0; i < fd.size(); ++i) {
    fd[i].layer->set_kernel(ft[i]->inner_);
    qd[i].layer->set_kernel(qt[i]->inner_);
    double diff = 0, norm = 0, dot = 0, qn = 0;
    for (std::size_t b = 0; b < ft[i]->outputs.size(); ++b) {
      const auto& y = ft[i]->outputs[b];
      const auto& yq = qt[i]->outputs[b];
      diff += (yq - y).pow(2).sum().item<double>();
      norm += y.pow(2).sum().item<double>();
      qn += yq.pow(2).sum().item<double>();
      dot += (y * yq).sum().item<double>();
    }
    out.push_back({fd[i].name, std::sqrt(diff / std::max(norm, 1e-30)), dot / std::sqrt(std::max(norm * qn, 1e-30))});
  }
  return out;
}

// ---- storage ----

namespace {

constexpr const char* kConfigKey = "quantization_config";

void add_tensor(std::vector<std::pair<std::string, torch::Tensor>>& out, const std::string& name, const torch::Tensor& t) {
  if (t.defined()) out.emplace_back(name, t.contiguous());
}

torch::Tensor view_tensor(const io::TensorView& v) {
  torch::ScalarType t;
  switch (v.dtype) {
    case io::DType::F32: t = torch::kFloat32; break;
    case io::DType::F16: t = torch::kFloat16; break;
    case io::DType::BF16: t = torch::kBFloat16; break;
    case io::DType::I8: t = torch::kInt8; break;
    case io::DType::U8: t = torch::kUInt8; break;
    default: fail("{}: tensor '{}' has dtype {}, which quantized parts do not use", v.name, v.name, io::dtype_name(v.dtype));
  }
  std::vector<int64_t> shape(v.shape.begin(), v.shape.end());
  return torch::from_blob(const_cast<std::byte*>(v.data), shape, t).clone();
}

}  // namespace

void save(nn::BertClassifier& model, const QuantizedModel& q, const fs::path& dir, const fs::path& tokenizer_dir,
          const std::map<std::string, std::string>& extra_files) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::set<std::string> replaced;
  for (const auto& [name, l] : q.layers) replaced.insert(name + ".weight");
  auto add_module_tensor = [&](const std::string& name, const torch::Tensor& value) {
    const std::string scope = name.substr(0, name.rfind('.'));
    if (!replaced.count(name)) {
      add_tensor(tensors, name, value.detach());
      return;
    }
    const auto& l = q.layers.at(scope);
    add_tensor(tensors, name, l.weight.codes);
    add_tensor(tensors, name + "_scale", l.weight.scale);
    add_tensor(tensors, name + "_zero_point", l.weight.zero_point);
    add_tensor(tensors, name + "_codebook", l.weight.codebook);
    if (l.input) add_tensor(tensors, scope + ".input_range", torch::tensor({l.input->lo, l.input->hi}, torch::kFloat32));
  };
  for (const auto& item : model->named_parameters()) add_module_tensor(item.key(), item.value());
  for (const auto& item : model->named_buffers()) add_module_tensor(item.key(), item.value());
  auto config = model->config().to_json();
  config[kConfigKey] = q.config();
  nn::save_tensors_folder(tensors, config, dir, tokenizer_dir, {{"condense", "quantize"}}, extra_files);
}

bool is_quantized(const fs::path& dir) {
  const auto path = dir / "config.json";
  if (!fs::exists(path)) return false;
  return read_json_file(path).contains(kConfigKey);
}

nn::BertClassifier load(const fs::path& dir, QuantizedModel* out) {
  const auto config_path = dir / "config.json";
  const auto file = dir / "model.safetensors";
  auto cfg = nn::BertConfig::load(config_path);
  const std::string where = config_path.string() + ": " + kConfigKey;
  CONDENSE_CHECK(cfg.extra.contains(kConfigKey), "{}: missing (not a quantized model)", where);
  const auto qj = cfg.extra[kConfigKey];
  cfg.extra.erase(kConfigKey);
  QuantizedModel q;
  try {
    CONDENSE_CHECK(qj.at("quant_method").get<std::string>() == "condense" && qj.at("format_version").get<int>() == 1,
                   "{}: unsupported quant_method/format_version", where);
    q.options.activations = parse_activations(qj.at("activations").get<std::string>());
    q.options.act_symmetric = qj.at("act_symmetric").get<bool>();
    q.options.observer = parse_observer(qj.at("observer").get<std::string>());
    q.options.int8_kernels = qj.at("int8_kernels").get<bool>();
    CONDENSE_CHECK(qj.at("layers").is_object(), "{}.layers: expected an object", where);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}", where, e.what());
  }
  nn::BertClassifier model(cfg);
  auto st = io::SafetensorsFile::open(file);
  const std::string src = file.string();
  nn::WeightOverrides overrides;
  const auto params = model->named_parameters();
  for (const auto& [name, lj] : qj.at("layers").items()) {
    const std::string lwhere = where + ".layers." + name;
    LayerQuant l;
    l.weight.scheme = Scheme::from_json(lj, lwhere);
    try {
      l.weight.shape = lj.at("shape").get<std::vector<int64_t>>();
    } catch (const nlohmann::json::exception& e) {
      fail("{}.shape: {}", lwhere, e.what());
    }
    auto part = [&](const std::string& suffix, bool required) -> torch::Tensor {
      const auto* v = st.find(name + suffix);
      CONDENSE_CHECK(v != nullptr || !required, "{}: tensor '{}{}' of a quantized layer is missing", src, name, suffix);
      if (v == nullptr) return {};
      overrides.consumed.insert(v->name);
      return view_tensor(*v);
    };
    const auto& s = l.weight.scheme;
    l.weight.codes = part(".weight", true);
    l.weight.scale = part(".weight_scale", !s.is_float() && s.method != Method::KMeans);
    l.weight.zero_point = part(".weight_zero_point", !s.is_float() && !s.symmetric && s.bits > 1 &&
                                                        (s.method == Method::Uniform || s.method == Method::PowerOfTwo));
    l.weight.codebook = part(".weight_codebook", s.method == Method::KMeans);
    l.weight.validate(src + ": tensor '" + name + ".weight'");
    const auto* param = params.find(name + ".weight");
    CONDENSE_CHECK(param != nullptr && param->sizes() == c10::IntArrayRef(l.weight.shape),
                   "{}: layer '{}' is not a [{}, {}] weight of this model (config.json and quantization_config disagree)",
                   where, name, l.weight.shape[0], l.weight.shape[1]);
    if (lj.value("input", false)) {
      auto r = part(".input_range", true);
      CONDENSE_CHECK(r.scalar_type() == torch::kFloat32 && r.numel() == 2 && torch::isfinite(r).all().item<bool>() &&
                         r[0].item<double>() <= r[1].item<double>(),
                     "{}: tensor '{}.input_range' must be two finite floats lo <= hi", src, name);
      l.input = ActRange{r[0].item<double>(), r[1].item<double>(), q.options.act_symmetric};
    }
    overrides.tensors[name + ".weight"] = l.weight.dequantize();
    q.layers[name] = std::move(l);
  }
  nn::load_weights(model, file, nullptr, &overrides);
  for (const auto& d : encoder_dense(model)) {
    auto it = q.layers.find(d.name);
    if (it == q.layers.end()) continue;
    CONDENSE_CHECK(q.options.activations != Activations::Static || it->second.input,
                   "{}: layer '{}' has static activations but no input_range", src, d.name);
    d.layer->set_kernel(runtime_kernel(it->second, *d.layer, q.options));
  }
  if (out) *out = std::move(q);
  return model;
}

}  // namespace condense::quantize
