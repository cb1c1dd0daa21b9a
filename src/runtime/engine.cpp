// The inference runtime (runtime/engine.h).
#include "condense/runtime/engine.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <optional>

#include "condense/core/error.h"
#include "condense/kernels/int8_gemm.h"
#include "condense/kernels/linear.h"
#include "condense/kernels/transformer.h"
#include "condense/nn/checkpoint.h"

namespace condense::runtime {

namespace k = condense::kernels;

std::string to_string(Precision p) {
  switch (p) {
    case Precision::Auto: return "auto";
    case Precision::F32: return "fp32";
    case Precision::BF16: return "bf16";
    case Precision::Int8: return "int8";
  }
  return "auto";
}

Precision parse_precision(const std::string& name) {
  for (Precision p : {Precision::Auto, Precision::F32, Precision::BF16, Precision::Int8}) {
    if (name == to_string(p)) return p;
  }
  fail("precision is '{}', expected auto, fp32, bf16 or int8", name);
}

void TokenBatch::add(const std::vector<int32_t>& seq_ids, const std::vector<int32_t>& seq_types) {
  CONDENSE_CHECK(seq_ids.size() == seq_types.size(), "token batch: {} ids but {} token types", seq_ids.size(),
                 seq_types.size());
  CONDENSE_CHECK(!seq_ids.empty(), "token batch: an empty sequence (it needs at least [CLS])");
  ids.insert(ids.end(), seq_ids.begin(), seq_ids.end());
  types.insert(types.end(), seq_types.begin(), seq_types.end());
  offsets.push_back(static_cast<int64_t>(ids.size()));
}

TokenBatch TokenBatch::from_padded(const torch::Tensor& ids, const torch::Tensor& types, const torch::Tensor& mask) {
  CONDENSE_CHECK(ids.dim() == 2 && ids.sizes() == types.sizes() && ids.sizes() == mask.sizes(),
                 "token batch: ids, types and mask must be [batch, seq] of one shape");
  auto i64 = ids.to(torch::kLong).contiguous(), t64 = types.to(torch::kLong).contiguous(), m64 = mask.to(torch::kLong).contiguous();
  const int64_t b = ids.size(0), s = ids.size(1);
  const int64_t *pi = i64.data_ptr<int64_t>(), *pt = t64.data_ptr<int64_t>(), *pm = m64.data_ptr<int64_t>();
  TokenBatch out;
  for (int64_t r = 0; r < b; ++r) {
    int64_t len = 0;
    while (len < s && pm[r * s + len] != 0) ++len;
    for (int64_t c = len; c < s; ++c) {
      CONDENSE_CHECK(pm[r * s + c] == 0, "token batch: row {} of the attention mask is not a prefix of ones", r);
    }
    std::vector<int32_t> si(static_cast<std::size_t>(len)), st(static_cast<std::size_t>(len));
    for (int64_t c = 0; c < len; ++c) {
      si[c] = static_cast<int32_t>(pi[r * s + c]);
      st[c] = static_cast<int32_t>(pt[r * s + c]);
    }
    out.add(si, st);
  }
  return out;
}

namespace {

// Growing buffers reused across calls (no allocation and no page faults per forward).
template <class T>
T* grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<std::size_t>(n));
  return v.data();
}

// Stages timed by EngineOptions::profile, in the order Engine::profile reports them.
enum Stage { kEmbed, kConvert, kQkv, kAttention, kAttnOut, kNorm, kFfnIn, kFfnOut, kHead, kStages };
constexpr const char* kStageNames[kStages] = {"embeddings", "input conversion (bf16/int8)", "QKV product", "attention",
                                              "attention output product", "residual + LayerNorm", "FFN input product + GELU",
                                              "FFN output product", "pooler + classifier"};

struct Workspace {
  std::vector<float> x, qkv, ctx, tmp, inter, rank, cls, cls_ctx, pooled, words;
  std::vector<uint8_t> u8;
  std::vector<uint16_t> bf;
  bool profile = false;
  std::array<double, kStages> ms{};
  int64_t calls = 0;
  std::chrono::steady_clock::time_point last;
  // Charges the time since the previous tick to `stage` (no clock reads unless profiling).
  void tick(Stage stage) {
    if (!profile) return;
    const auto now = std::chrono::steady_clock::now();
    ms[stage] += std::chrono::duration<double, std::milli>(now - last).count();
    last = now;
  }
};

// One product of the encoder: a Linear and how its input is prepared (bf16 conversion or 8-bit
// quantization with a static or per-call range), or for low-rank layers two chained Linears.
struct Proj {
  std::unique_ptr<k::Linear> lin, up;  // up: the second factor of a low-rank layer (x·Vᵀ then ·Uᵀ)
  int64_t n = 0, k = 0, rank = 0;
  bool dynamic = false, symmetric = false;
  float sx = 1;
  int32_t zx = 0;

  void run_one(const k::Linear& l, const float* x, int64_t m, float* y, Workspace& ws) const {
    const int64_t kk = l.k();
    switch (l.type()) {
      case k::LinearType::F32: l.run(x, m, y); break;
      case k::LinearType::BF16: {
        uint16_t* b = grow(ws.bf, m * kk);
        at::parallel_for(0, m * kk, 1 << 15, [&](int64_t a, int64_t e) { k::to_bf16(x + a, e - a, b + a); });
        ws.tick(kConvert);
        l.run(b, m, y);
        break;
      }
      case k::LinearType::S8: {
        float scale = sx;
        int32_t zp = zx;
        const int64_t n = m * kk;
        constexpr int64_t kGrain = 1 << 15;  // below this one thread is faster than waking another
        if (dynamic) {
          // The range over all rows, in chunks per thread (a reduction: one slot per thread).
          std::array<float, 64> los, his;
          los.fill(std::numeric_limits<float>::infinity());
          his.fill(-std::numeric_limits<float>::infinity());
          at::parallel_for(0, n, kGrain, [&](int64_t a, int64_t e) {
            float l = 0, u = 0;
            k::min_max(x + a, e - a, &l, &u);
            const auto t = static_cast<std::size_t>(at::get_thread_num()) % los.size();
            los[t] = std::min(los[t], l);
            his[t] = std::max(his[t], u);
          });
          const float lo = *std::min_element(los.begin(), los.end()), hi = *std::max_element(his.begin(), his.end());
          auto [s, z] = quantize::ActRange{lo, hi, symmetric}.params();
          scale = static_cast<float>(s);
          zp = symmetric ? 128 : static_cast<int32_t>(z);
        }
        uint8_t* q = grow(ws.u8, n);
        // The same float inverse scale as fake_quantize_per_tensor_affine (quantize stage).
        const float inv = 1.0f / scale;
        at::parallel_for(0, n, kGrain, [&](int64_t a, int64_t e) { k::quantize_u8(x + a, e - a, inv, zp, q + a); });
        ws.tick(kConvert);
        l.run(q, m, scale, zp, y);
        break;
      }
    }
  }
  void run(const float* x, int64_t m, float* y, Workspace& ws) const {
    if (up) {
      float* r = grow(ws.rank, m * rank);
      run_one(*lin, x, m, r, ws);
      run_one(*up, r, m, y, ws);
    } else {
      run_one(*lin, x, m, y, ws);
    }
  }
  std::string type_name() const {
    const auto t = lin->type();
    return t == k::LinearType::S8 ? "int8" : t == k::LinearType::BF16 ? "bf16" : "fp32";
  }
};

struct LayerPlan {
  int64_t heads = 0, head_dim = 0, inner = 0;
  bool bf16_attention = false;
  std::unique_ptr<Proj> qkv;     // fused [3·inner, H], or null when q, k and v differ in kind
  std::unique_ptr<Proj> q, k, v;
  std::unique_ptr<Proj> attn_out, ffn_in, ffn_out;
  std::vector<float> ln1_g, ln1_b, ln2_g, ln2_b;

  // Whether the layer, when it is the last one, may run its products after attention on the
  // [CLS] rows alone: the pooler reads nothing else, and every step from the attention output on
  // is row by row. Not with a per-call int8 range, which is taken over the rows a product sees
  // (as the training-time model takes it over all tokens).
  bool cls_rows_suffice() const {
    for (const auto* p : {attn_out.get(), ffn_in.get(), ffn_out.get()}) {
      if (p->dynamic) return false;
    }
    return true;
  }
};

std::vector<float> to_vec(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kFloat32).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

k::Epilogue epilogue_of(const std::string& act, const std::string& source) {
  if (act == "gelu") return k::Epilogue::Gelu;
  if (act == "gelu_new" || act == "gelu_pytorch_tanh") return k::Epilogue::GeluTanh;
  if (act == "relu") return k::Epilogue::Relu;
  if (act == "silu" || act == "swish") return k::Epilogue::Silu;
  fail("{}: hidden_act '{}' is not supported by the runtime", source, act);
}

// What one Dense layer becomes.
struct DenseSpec {
  torch::Tensor weight, bias;            // float [n, k] (effective: low-rank multiplied out, gates folded)
  torch::Tensor down, up_w;              // low-rank factors when kept as two products
  const quantize::LayerQuant* q = nullptr;
  bool gated = false;                    // a pruning gate was folded into weight (codes no longer match)
};

struct Builder {
  Precision precision;
  const quantize::QuantizedModel* qm;
  std::string source;

  // How the input of a layer with stored quantization is quantized.
  void act_params(const DenseSpec& d, Proj& p) const {
    const auto mode = qm ? qm->options.activations : quantize::Activations::None;
    if (d.q != nullptr && mode == quantize::Activations::Static && d.q->input) {
      auto [s, z] = d.q->input->params();
      p.sx = static_cast<float>(s);
      p.zx = d.q->input->symmetric ? 128 : static_cast<int32_t>(z);
      p.symmetric = d.q->input->symmetric;
      p.dynamic = false;
    } else {
      p.dynamic = true;
      p.symmetric = mode == quantize::Activations::Dynamic && qm->options.act_symmetric;
    }
  }

  bool stored_int8(const DenseSpec& d) const {
    return d.q != nullptr && !d.gated && quantize::int8_capable(d.q->weight.scheme);
  }

  k::LinearType type_of(const DenseSpec& d) const {
    switch (precision) {
      case Precision::F32: return k::LinearType::F32;
      case Precision::BF16:
        CONDENSE_CHECK(k::bf16_products_supported(),
                       "precision bf16 needs a CPU with AVX-512 (oneDNN has no bf16 product for this one, ISA {}); "
                       "use fp32 or int8",
                       k::to_string(k::active_isa()));
        return k::LinearType::BF16;
      case Precision::Int8: return k::LinearType::S8;
      case Precision::Auto:
        if (stored_int8(d) && qm->options.activations != quantize::Activations::None) return k::LinearType::S8;
        // bf16-stored layers run in bf16 as the quantize stage does (bf16 inputs, fp32 accumulation);
        // on a CPU without bf16 products, in fp32 on the same (bf16-valued) weights.
        if (d.q != nullptr && !d.gated && d.q->weight.scheme.method == quantize::Method::BFloat16)
          return k::bf16_products_supported() ? k::LinearType::BF16 : k::LinearType::F32;
        return k::LinearType::F32;
    }
    return k::LinearType::F32;
  }

  // int8 codes and per-row scales: the stored ones, or symmetric per-row quantization of the weight.
  std::pair<torch::Tensor, torch::Tensor> int8_of(const DenseSpec& d) const {
    if (stored_int8(d)) {
      auto w = quantize::int8_weights(d.q->weight);
      return {w.codes, w.scale};
    }
    auto w = d.weight.detach().to(torch::kFloat32);
    auto scale = w.abs().amax(1).clamp_min(1e-12) / 127.0;
    auto codes = torch::round(w / scale.unsqueeze(1)).clamp(-127, 127).to(torch::kInt8).contiguous();
    return {codes, scale.to(torch::kFloat32).contiguous()};
  }

  // The fused product of several layers with the same input (rows concatenated).
  std::unique_ptr<Proj> build(const std::vector<const DenseSpec*>& parts, k::Epilogue epi) const {
    auto p = std::make_unique<Proj>();
    const k::LinearType t = type_of(*parts[0]);
    std::vector<torch::Tensor> ws, bs;
    for (const auto* d : parts) bs.push_back(d->bias.defined() ? d->bias.detach().to(torch::kFloat32)
                                                               : torch::zeros({d->weight.size(0)}));
    auto bias = torch::cat(bs).contiguous();
    p->k = parts[0]->weight.size(1);
    p->n = bias.numel();
    k::LinearWeights lw;
    lw.type = t;
    lw.n = p->n;
    lw.k = p->k;
    lw.bias = bias.data_ptr<float>();
    lw.epilogue = epi;
    torch::Tensor keep_w, keep_s;
    if (t == k::LinearType::S8) {
      std::vector<torch::Tensor> cs, ss;
      for (const auto* d : parts) {
        auto [c, s] = int8_of(*d);
        cs.push_back(c);
        ss.push_back(s);
      }
      keep_w = torch::cat(cs).contiguous();
      keep_s = torch::cat(ss).contiguous();
      lw.w_s8 = keep_w.data_ptr<int8_t>();
      lw.scales = keep_s.data_ptr<float>();
      act_params(*parts[0], *p);
      p->lin = std::make_unique<k::Linear>(lw);
      return p;
    }
    if (parts.size() == 1 && parts[0]->down.defined()) {  // low rank, kept as two products
      const auto& d = *parts[0];
      auto down = d.down.detach().to(torch::kFloat32).contiguous();
      auto upw = d.up_w.detach().to(torch::kFloat32).contiguous();
      p->rank = down.size(0);
      k::LinearWeights a;
      a.type = t;
      a.n = p->rank;
      a.k = p->k;
      a.w = down.data_ptr<float>();
      k::LinearWeights b = lw;
      b.k = p->rank;
      b.w = upw.data_ptr<float>();
      p->lin = std::make_unique<k::Linear>(a);
      p->up = std::make_unique<k::Linear>(b);
      return p;
    }
    for (const auto* d : parts) ws.push_back(d->weight.detach().to(torch::kFloat32));
    keep_w = torch::cat(ws).contiguous();
    lw.w = keep_w.data_ptr<float>();
    p->lin = std::make_unique<k::Linear>(lw);
    return p;
  }

  // Whether q, k and v can run as one product: same kind, no low-rank factors, equal input quantization.
  bool fusable(const std::vector<const DenseSpec*>& parts) const {
    const auto t = type_of(*parts[0]);
    Proj a, b;
    for (const auto* d : parts) {
      if (d->down.defined() || type_of(*d) != t) return false;
    }
    if (t != k::LinearType::S8) return true;
    act_params(*parts[0], a);
    for (const auto* d : parts) {
      act_params(*d, b);
      if (a.dynamic != b.dynamic || a.symmetric != b.symmetric || a.sx != b.sx || a.zx != b.zx) return false;
    }
    return true;
  }
};

DenseSpec spec_of(nn::DenseImpl& d, const std::string& name, const quantize::QuantizedModel* qm, Precision prec,
                  const std::string& source) {
  DenseSpec s;
  torch::NoGradGuard g;
  if (d.low_rank() && prec != Precision::Int8) {
    s.down = d.weight_down;
    s.up_w = d.weight_up;
  }
  s.weight = d.effective_weight().detach().to(torch::kFloat32);
  s.bias = d.bias.defined() ? d.bias.detach().to(torch::kFloat32) : torch::Tensor();
  if (qm != nullptr) {
    if (auto it = qm->layers.find(name); it != qm->layers.end()) s.q = &it->second;
  }
  (void)source;
  return s;
}

}  // namespace

struct Engine::Impl {
  nn::BertConfig config;
  std::string source;
  std::vector<float> word, pos, type, emb_g, emb_b;
  int64_t emb_width = 0;                  // word-table width (embedding_size, or hidden)
  std::unique_ptr<k::Linear> word_proj;   // factorized embeddings (ALBERT)
  std::vector<LayerPlan> layers;
  std::unique_ptr<k::Linear> pooler, classifier;
  int64_t hidden = 0, labels = 0, vocab = 0, max_pos = 0, type_vocab = 0;
  float eps = 1e-12f;
  mutable std::mutex mu;
  mutable Workspace ws;

  void run(const TokenBatch& b, float* logits) const;
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;
Engine::~Engine() = default;

Engine Engine::load(const std::filesystem::path& dir, const EngineOptions& options) {
  // Products condense runs itself (int8 on AMX tiles) share LibTorch's threads with the rest.
  k::set_parallel_for([](int64_t n, const std::function<void(int64_t, int64_t)>& body) { at::parallel_for(0, n, 1, body); });
  if (quantize::is_quantized(dir)) {
    quantize::QuantizedModel q;
    auto model = quantize::load(dir, &q);
    return from_model(model, &q, options, dir.string());
  }
  auto model = nn::load_classifier(dir);
  return from_model(model, nullptr, options, dir.string());
}

Engine Engine::from_model(nn::BertClassifier& model, const quantize::QuantizedModel* q, const EngineOptions& options,
                          const std::string& source) {
  torch::NoGradGuard guard;
  const auto& c = model->config();
  CONDENSE_CHECK(c.norm == nn::NormKind::LayerNorm,
                 "{}: norm '{}' is not supported by the runtime (it runs LayerNorm models)", source,
                 nn::to_string(c.norm));
  CONDENSE_CHECK(c.bottleneck_size == 0, "{}: MobileBERT bottleneck layers are not supported by the runtime", source);
  CONDENSE_CHECK(c.num_ffn == 1, "{}: stacked FFNs (num_ffn {}) are not supported by the runtime", source, c.num_ffn);
  auto impl = std::make_unique<Impl>();
  impl->config = c;
  impl->source = source;
  impl->ws.profile = options.profile;
  impl->hidden = c.hidden_size;
  impl->labels = c.num_labels;
  impl->eps = static_cast<float>(c.layer_norm_eps);
  auto& emb = *model->bert->embeddings;
  impl->word = to_vec(emb.word_embeddings->weight);
  impl->vocab = emb.word_embeddings->weight.size(0);
  impl->emb_width = emb.word_embeddings->weight.size(1);
  impl->pos = to_vec(emb.position_embeddings->weight);
  impl->max_pos = emb.position_embeddings->weight.size(0);
  impl->type = to_vec(emb.token_type_embeddings->weight);
  impl->type_vocab = emb.token_type_embeddings->weight.size(0);
  auto* ln = emb.LayerNorm->as<nn::NormImpl>();
  CONDENSE_CHECK(ln != nullptr, "{}: embeddings LayerNorm missing", source);
  impl->emb_g = to_vec(ln->weight);
  impl->emb_b = to_vec(ln->bias);
  if (emb.word_projection) {
    auto w = emb.word_projection->weight.detach().to(torch::kFloat32).contiguous();
    auto b = emb.word_projection->bias.defined() ? emb.word_projection->bias.detach().to(torch::kFloat32).contiguous()
                                                 : torch::zeros({w.size(0)});
    k::LinearWeights lw;
    lw.n = w.size(0);
    lw.k = w.size(1);
    lw.w = w.data_ptr<float>();
    lw.bias = b.data_ptr<float>();
    impl->word_proj = std::make_unique<k::Linear>(lw);
  }
  Builder builder{options.precision, q, source};
  const auto epi = epilogue_of(c.hidden_act, source);
  std::vector<int64_t> order = model->active_layers;
  if (order.empty()) {
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) order.push_back(i);
  }
  for (int64_t li : order) {
    auto layer = model->layer(li);
    const std::string pre = "bert.encoder.layer." + std::to_string(li) + ".";
    auto& self = *layer->attention->self;
    LayerPlan plan;
    plan.heads = self.heads;
    plan.head_dim = self.head_dim;
    plan.inner = self.heads * self.head_dim;
    auto sq = spec_of(*self.query, pre + "attention.self.query", q, options.precision, source);
    auto sk = spec_of(*self.key, pre + "attention.self.key", q, options.precision, source);
    auto sv = spec_of(*self.value, pre + "attention.self.value", q, options.precision, source);
    auto so = spec_of(*layer->attention->output->dense, pre + "attention.output.dense", q, options.precision, source);
    auto si = spec_of(*layer->intermediate->dense, pre + "intermediate.dense", q, options.precision, source);
    auto sf = spec_of(*layer->output->dense, pre + "output.dense", q, options.precision, source);
    // Pruning gates (present only mid-pruning) scale whole input columns of the next product.
    if (self.head_gate.defined() && !torch::all(self.head_gate == 1).item<bool>()) {
      auto g = self.head_gate.detach().to(torch::kFloat32).repeat_interleave(plan.head_dim);
      so.weight = so.weight * g.unsqueeze(0);
      so.down = so.down.defined() ? so.down * g.unsqueeze(0) : so.down;
      so.gated = true;
    }
    if (auto& ng = layer->intermediate->neuron_gate; ng.defined() && !torch::all(ng == 1).item<bool>()) {
      auto g = ng.detach().to(torch::kFloat32).reshape({-1});
      sf.weight = sf.weight * g.unsqueeze(0);
      sf.down = sf.down.defined() ? sf.down * g.unsqueeze(0) : sf.down;
      sf.gated = true;
    }
    if (builder.fusable({&sq, &sk, &sv})) {
      plan.qkv = builder.build({&sq, &sk, &sv}, k::Epilogue::None);
    } else {
      plan.q = builder.build({&sq}, k::Epilogue::None);
      plan.k = builder.build({&sk}, k::Epilogue::None);
      plan.v = builder.build({&sv}, k::Epilogue::None);
    }
    plan.attn_out = builder.build({&so}, k::Epilogue::None);
    {
      const auto t = (plan.qkv ? plan.qkv : plan.q)->lin->type();
      plan.bf16_attention = !options.fp32_attention && t != k::LinearType::F32 && k::attention_bf16_supported(plan.head_dim);
    }
    plan.ffn_in = builder.build({&si}, epi);
    plan.ffn_out = builder.build({&sf}, k::Epilogue::None);
    auto* n1 = layer->attention->output->LayerNorm->as<nn::NormImpl>();
    auto* n2 = layer->output->LayerNorm->as<nn::NormImpl>();
    plan.ln1_g = to_vec(n1->weight);
    plan.ln1_b = to_vec(n1->bias);
    plan.ln2_g = to_vec(n2->weight);
    plan.ln2_b = to_vec(n2->bias);
    impl->layers.push_back(std::move(plan));
  }
  auto lin = [](const torch::nn::Linear& l) {
    auto w = l->weight.detach().to(torch::kFloat32).contiguous();
    auto b = l->bias.detach().to(torch::kFloat32).contiguous();
    k::LinearWeights lw;
    lw.n = w.size(0);
    lw.k = w.size(1);
    lw.w = w.data_ptr<float>();
    lw.bias = b.data_ptr<float>();
    return std::make_unique<k::Linear>(lw);
  };
  impl->pooler = lin(model->bert->pooler->dense);
  impl->classifier = lin(model->classifier);
  return Engine(std::move(impl));
}

void Engine::Impl::run(const TokenBatch& b, float* logits) const {
  const int64_t t = b.tokens(), nb = b.size(), h = hidden;
  CONDENSE_CHECK(nb > 0, "{}: an empty batch", source);
  for (int64_t s = 0; s < nb; ++s) {
    CONDENSE_CHECK(b.offsets[s + 1] - b.offsets[s] <= max_pos, "{}: a sequence of {} tokens exceeds max_position_embeddings {}",
                   source, b.offsets[s + 1] - b.offsets[s], max_pos);
  }
  for (int64_t i = 0; i < t; ++i) {
    CONDENSE_CHECK(b.ids[i] >= 0 && b.ids[i] < vocab, "{}: token id {} outside the vocabulary of {}", source, b.ids[i], vocab);
    CONDENSE_CHECK(b.types[i] >= 0 && b.types[i] < type_vocab, "{}: token type {} outside 0..{}", source, b.types[i],
                   type_vocab - 1);
  }
  if (ws.profile) {
    ws.last = std::chrono::steady_clock::now();
    ++ws.calls;
  }
  float* x = grow(ws.x, t * h);
  // Embeddings: word (projected when factorized) + position + type, then LayerNorm.
  const float* words = word.data();
  int64_t wstride = emb_width;
  if (word_proj) {
    float* g = grow(ws.words, t * emb_width);
    for (int64_t i = 0; i < t; ++i) std::memcpy(g + i * emb_width, words + b.ids[i] * emb_width, emb_width * sizeof(float));
    word_proj->run(g, t, x);
  }
  at::parallel_for(0, nb, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      for (int64_t i = b.offsets[s]; i < b.offsets[s + 1]; ++i) {
        float* xi = x + i * h;
        const float* p = pos.data() + (i - b.offsets[s]) * h;
        const float* ty = type.data() + b.types[i] * h;
        if (word_proj) {
          for (int64_t c = 0; c < h; ++c) xi[c] += p[c] + ty[c];
        } else {
          const float* w = words + b.ids[i] * wstride;
          for (int64_t c = 0; c < h; ++c) xi[c] = w[c] + p[c] + ty[c];
        }
      }
      const int64_t r0 = b.offsets[s], rows = b.offsets[s + 1] - r0;
      k::add_layer_norm(x + r0 * h, nullptr, emb_g.data(), emb_b.data(), rows, h, eps, x + r0 * h);
    }
  });
  ws.tick(kEmbed);
  bool cls_ready = false;  // the last layer ran on the [CLS] rows and left them in ws.cls
  for (std::size_t li = 0; li < layers.size(); ++li) {
    const auto& L = layers[li];
    const int64_t inner = L.inner;
    const float *q, *kk, *v;
    int64_t ld;
    if (L.qkv) {
      float* qkv = grow(ws.qkv, t * 3 * inner);
      L.qkv->run(x, t, qkv, ws);
      q = qkv;
      kk = qkv + inner;
      v = qkv + 2 * inner;
      ld = 3 * inner;
    } else {
      float* qkv = grow(ws.qkv, t * 3 * inner);
      L.q->run(x, t, qkv, ws);
      L.k->run(x, t, qkv + t * inner, ws);
      L.v->run(x, t, qkv + 2 * t * inner, ws);
      q = qkv;
      kk = qkv + t * inner;
      v = qkv + 2 * t * inner;
      ld = inner;
    }
    ws.tick(kQkv);
    float* ctx = grow(ws.ctx, t * inner);
    const float scale = 1.0f / std::sqrt(static_cast<float>(L.head_dim));
    at::parallel_for(0, nb * L.heads, 1, [&](int64_t j0, int64_t j1) {
      thread_local std::vector<float> scratch;
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t s = j / L.heads, hd = j % L.heads, r0 = b.offsets[s], len = b.offsets[s + 1] - r0;
        float* sc = grow(scratch, k::attention_scratch_floats(len, L.head_dim));
        const int64_t col = hd * L.head_dim;
        if (L.bf16_attention) {
          k::attention_head_bf16(q + r0 * ld + col, kk + r0 * ld + col, v + r0 * ld + col, ld, len, L.head_dim, scale,
                                 ctx + r0 * inner + col, inner, sc);
        } else {
          k::attention_head(q + r0 * ld + col, kk + r0 * ld + col, v + r0 * ld + col, ld, len, L.head_dim, scale,
                            ctx + r0 * inner + col, inner, sc);
        }
      }
    });
    ws.tick(kAttention);
    // The rows the rest of the layer runs on: every token, or in the last layer only each
    // sequence's [CLS] (cls_rows_suffice), which saves that layer's output and FFN products on
    // all other tokens: about a quarter of a 3-layer model's products, at any batch and length.
    int64_t m = t;
    const float* c = ctx;
    float* xr = x;
    if (li + 1 == layers.size() && L.cls_rows_suffice()) {
      float* c1 = grow(ws.cls_ctx, nb * inner);
      float* x1 = grow(ws.cls, nb * h);
      for (int64_t s = 0; s < nb; ++s) {
        std::memcpy(c1 + s * inner, ctx + b.offsets[s] * inner, inner * sizeof(float));
        std::memcpy(x1 + s * h, x + b.offsets[s] * h, h * sizeof(float));
      }
      m = nb;
      c = c1;
      xr = x1;
      cls_ready = true;
    }
    float* tmp = grow(ws.tmp, m * h);
    L.attn_out->run(c, m, tmp, ws);
    ws.tick(kAttnOut);
    at::parallel_for(0, m, 64, [&](int64_t r0, int64_t r1) {
      k::add_layer_norm(tmp + r0 * h, xr + r0 * h, L.ln1_g.data(), L.ln1_b.data(), r1 - r0, h, eps, xr + r0 * h);
    });
    ws.tick(kNorm);
    float* inter = grow(ws.inter, m * L.ffn_in->n);
    L.ffn_in->run(xr, m, inter, ws);
    ws.tick(kFfnIn);
    L.ffn_out->run(inter, m, tmp, ws);
    ws.tick(kFfnOut);
    at::parallel_for(0, m, 64, [&](int64_t r0, int64_t r1) {
      k::add_layer_norm(tmp + r0 * h, xr + r0 * h, L.ln2_g.data(), L.ln2_b.data(), r1 - r0, h, eps, xr + r0 * h);
    });
    ws.tick(kNorm);
  }
  // Pooler on each sequence's first token ([CLS]), tanh, then the classifier.
  float* cls = grow(ws.cls, nb * h);
  if (!cls_ready) {
    for (int64_t s = 0; s < nb; ++s) std::memcpy(cls + s * h, x + b.offsets[s] * h, h * sizeof(float));
  }
  float* pooled = grow(ws.pooled, nb * h);
  pooler->run(cls, nb, pooled);
  for (int64_t i = 0; i < nb * h; ++i) pooled[i] = std::tanh(pooled[i]);
  classifier->run(pooled, nb, logits);
  ws.tick(kHead);
}

std::vector<float> Engine::forward(const TokenBatch& batch) const {
  std::vector<float> out(static_cast<std::size_t>(batch.size() * impl_->labels));
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->run(batch, out.data());
  return out;
}

torch::Tensor Engine::forward(const torch::Tensor& ids, const torch::Tensor& types, const torch::Tensor& mask) const {
  auto b = TokenBatch::from_padded(ids, types, mask);
  auto out = torch::empty({b.size(), impl_->labels});
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->run(b, out.data_ptr<float>());
  return out;
}

std::vector<std::pair<std::string, double>> Engine::profile() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<std::pair<std::string, double>> out;
  const double calls = static_cast<double>(std::max<int64_t>(1, impl_->ws.calls));
  for (int i = 0; i < kStages; ++i) out.emplace_back(kStageNames[i], impl_->ws.ms[static_cast<std::size_t>(i)] / calls);
  return out;
}

int64_t Engine::num_labels() const { return impl_->labels; }
int64_t Engine::vocab_size() const { return impl_->vocab; }
int64_t Engine::max_positions() const { return impl_->max_pos; }

std::string Engine::precision() const {
  std::map<std::string, int> count;
  for (const auto& L : impl_->layers) {
    for (const auto* p : {L.qkv.get(), L.q.get(), L.k.get(), L.v.get(), L.attn_out.get(), L.ffn_in.get(), L.ffn_out.get()}) {
      if (p) count[p->type_name()] += 1;
    }
  }
  std::string out;
  for (const auto& [name, n] : count) out += (out.empty() ? "" : ", ") + name + " " + std::to_string(n);
  bool bf16_attention = false;
  for (const auto& L : impl_->layers) bf16_attention = bf16_attention || L.bf16_attention;
  return out.empty() ? "none" : out + " products, attention " + (bf16_attention ? "bf16" : "fp32");
}

std::string Engine::kernels() const {
  std::string gemm = impl_->layers.empty() ? impl_->classifier->implementation()
                                           : impl_->layers[0].ffn_in->lin->implementation();
  // oneDNN names its kernels "brg:...", "gemm:..."; condense's own product is "condense:amx_int8".
  const bool ours = gemm.rfind("condense:", 0) == 0;
  return std::string(k::kernel_name(k::active_isa())) + (ours ? " + " : " + oneDNN ") + (gemm.empty() ? "(not run yet)" : gemm);
}

double Engine::flops(const std::vector<int64_t>& lengths) const {
  double tokens = 0, sq = 0;
  for (int64_t l : lengths) {
    tokens += static_cast<double>(l);
    sq += static_cast<double>(l) * static_cast<double>(l);
  }
  auto macs = [](const Proj* p) -> double {
    if (p == nullptr) return 0;
    return p->up ? static_cast<double>(p->rank) * (p->k + p->n) : static_cast<double>(p->n) * p->k;
  };
  const double nb = static_cast<double>(lengths.size()), h = static_cast<double>(impl_->hidden);
  double f = 0;
  for (std::size_t li = 0; li < impl_->layers.size(); ++li) {
    const auto& L = impl_->layers[li];
    double before = 0, after = 0;  // per row, up to attention and from its output on
    for (const auto* p : {L.qkv.get(), L.q.get(), L.k.get(), L.v.get()}) before += macs(p);
    for (const auto* p : {L.attn_out.get(), L.ffn_in.get(), L.ffn_out.get()}) after += macs(p);
    // What run() computes: the last layer's products after attention on [CLS] rows alone.
    const double rows_after = li + 1 == impl_->layers.size() && L.cls_rows_suffice() ? nb : tokens;
    f += 2 * tokens * before + 2 * rows_after * after + 2 * 2 * sq * static_cast<double>(L.inner);  // + QKᵀ and P·V
  }
  f += 2 * nb * (h * h + h * static_cast<double>(impl_->labels));
  if (impl_->word_proj) f += 2 * tokens * static_cast<double>(impl_->word_proj->n() * impl_->word_proj->k());
  return f;
}

}  // namespace condense::runtime
