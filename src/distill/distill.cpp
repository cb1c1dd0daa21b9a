#include "condense/distill/distill.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>

#include "condense/core/error.h"
#include "condense/nn/checkpoint.h"

namespace condense::distill {

SoftLoss parse_soft_loss(const std::string& name) {
  if (name == "kl") return SoftLoss::KL;
  if (name == "mse") return SoftLoss::MSE;
  fail("unknown distillation loss '{}' (expected kl or mse)", name);
}

LayerLoss parse_layer_loss(const std::string& name) {
  for (auto l : {LayerLoss::HiddenMSE, LayerLoss::HiddenCosine, LayerLoss::AttentionMSE, LayerLoss::AttentionKL,
                 LayerLoss::EmbeddingMSE, LayerLoss::PkdCls}) {
    if (name == to_string(l)) return l;
  }
  fail("unknown layer loss '{}' (expected hidden_mse, hidden_cosine, attention_mse, attention_kl, embedding_mse or "
       "pkd_cls)",
       name);
}

std::string to_string(LayerLoss loss) {
  switch (loss) {
    case LayerLoss::HiddenMSE: return "hidden_mse";
    case LayerLoss::HiddenCosine: return "hidden_cosine";
    case LayerLoss::AttentionMSE: return "attention_mse";
    case LayerLoss::AttentionKL: return "attention_kl";
    case LayerLoss::EmbeddingMSE: return "embedding_mse";
    case LayerLoss::PkdCls: return "pkd_cls";
  }
  return "?";
}

void DistillOptions::validate() const {
  CONDENSE_CHECK(mlm_weight >= 0 && mlm_distill_weight >= 0 && std::isfinite(mlm_weight + mlm_distill_weight),
                 "distill options 'mlm_weight' and 'mlm_distill_weight' must be >= 0");
  CONDENSE_CHECK(mask_prob > 0 && mask_prob < 1, "distill option 'mask_prob' must be in (0,1), found {}", mask_prob);
  CONDENSE_CHECK(teacher_cache_mb >= 0, "distill option 'teacher_cache_mb' must be >= 0, found {}", teacher_cache_mb);
  CONDENSE_CHECK(!progressive || !uses_mlm(), "distill option 'progressive' cannot be combined with masked-LM terms");
  CONDENSE_CHECK(!progressive || (!layer_losses.empty() && prediction_weight == 0),
                 "distill option 'progressive' trains layer terms one layer at a time: it needs layer_losses and "
                 "prediction_weight 0");
  CONDENSE_CHECK(temperature > 0 && std::isfinite(temperature), "distill option 'temperature' must be positive, found {}",
                 temperature);
  CONDENSE_CHECK(alpha >= 0 && alpha <= 1, "distill option 'alpha' must be in [0,1], found {}", alpha);
  CONDENSE_CHECK(!temperature_end || (*temperature_end > 0 && std::isfinite(*temperature_end)),
                 "distill option 'temperature_end' must be positive, found {}", temperature_end.value_or(0));
  CONDENSE_CHECK(!alpha_end || (*alpha_end >= 0 && *alpha_end <= 1),
                 "distill option 'alpha_end' must be in [0,1], found {}", alpha_end.value_or(0));
  CONDENSE_CHECK(norm_fade >= 0 && norm_fade <= 1, "distill option 'norm_fade' must be in [0,1], found {}", norm_fade);
  CONDENSE_CHECK(prediction_weight >= 0 && std::isfinite(prediction_weight),
                 "distill option 'prediction_weight' must be >= 0, found {}", prediction_weight);
  double total = prediction_weight + mlm_weight + mlm_distill_weight;
  for (const auto& t : layer_losses) {
    CONDENSE_CHECK(t.weight >= 0 && std::isfinite(t.weight), "distill option 'layer_losses': weight of {} must be >= 0, found {}",
                   to_string(t.loss), t.weight);
    CONDENSE_CHECK(!t.weight_end || (*t.weight_end >= 0 && std::isfinite(*t.weight_end)),
                   "distill option 'layer_losses': weight_end of {} must be >= 0, found {}", to_string(t.loss),
                   t.weight_end.value_or(0));
    total += std::max(t.weight, t.weight_end.value_or(0));
  }
  CONDENSE_CHECK(total > 0, "distill options give every loss term weight 0; nothing would be learned");
  static const char* kStrategies[] = {"uniform", "skip", "last", "final", "explicit"};
  bool known = false;
  for (auto k : kStrategies) known |= layer_map.strategy == k;
  CONDENSE_CHECK(known, "distill option 'layer_map.strategy' is '{}', expected uniform, skip, last, final or explicit",
                 layer_map.strategy);
  train.validate();
}

std::vector<LayerPair> resolve_layer_map(const LayerMapOptions& m, int64_t M, int64_t N) {
  CONDENSE_CHECK(M > 0 && N > 0, "layer map needs layers on both sides (student {}, teacher {})", M, N);
  std::vector<LayerPair> pairs;
  const int64_t mapped = m.exclude_last ? M - 1 : M;
  if (m.strategy == "explicit") {
    CONDENSE_CHECK(static_cast<int64_t>(m.teacher_layers.size()) == mapped,
                   "layer_map.teacher_layers lists {} teacher layers but {} student layers are mapped (student has {}{})",
                   m.teacher_layers.size(), mapped, M, m.exclude_last ? ", last excluded" : "");
    for (int64_t i = 1; i <= mapped; ++i) {
      const auto t = m.teacher_layers[static_cast<std::size_t>(i - 1)];
      CONDENSE_CHECK(t >= 1 && t <= N, "layer_map.teacher_layers: teacher layer {} does not exist (layers are 1..{})", t,
                     N);
      pairs.push_back({i, t});
    }
    return pairs;
  }
  CONDENSE_CHECK(m.every == 0 || m.strategy == "skip", "layer_map.every is only used by strategy 'skip', not '{}'",
                 m.strategy);
  CONDENSE_CHECK(m.teacher_layers.empty(), "layer_map.teacher_layers is only used by strategy 'explicit', not '{}'",
                 m.strategy);
  CONDENSE_CHECK(M <= N, "layer_map: strategy '{}' needs a student with at most the teacher's {} layers, found {}",
                 m.strategy, N, M);
  if (m.strategy == "final") {
    CONDENSE_CHECK(!m.exclude_last, "layer_map: strategy 'final' maps only the last layer; exclude_last leaves nothing");
    return {{M, N}};
  }
  if (m.strategy == "skip") {
    const int64_t k = m.every > 0 ? m.every : N / M;
    CONDENSE_CHECK(m.every >= 0, "layer_map.every must be positive, found {}", m.every);
    CONDENSE_CHECK(mapped * k <= N, "layer_map.every is {}: student layer {} would learn from teacher layer {} but the "
                   "teacher has {}", k, mapped, mapped * k, N);
    for (int64_t i = 1; i <= mapped; ++i) pairs.push_back({i, i * k});
  } else if (m.strategy == "last") {
    for (int64_t i = 1; i <= mapped; ++i) pairs.push_back({i, N - M + i});
  } else {
    CONDENSE_CHECK(m.strategy == "uniform", "layer_map.strategy is '{}', expected uniform, skip, last, final or explicit",
                   m.strategy);
    for (int64_t i = 1; i <= mapped; ++i) pairs.push_back({i, i * N / M});
  }
  return pairs;
}

namespace {

// [batch, seq] mask as float [batch, seq, 1] and the number of real tokens.
std::pair<torch::Tensor, torch::Tensor> token_mask(const torch::Tensor& mask, const torch::Tensor& like) {
  auto m = mask.to(like.dtype()).unsqueeze(-1);
  return {m, m.sum().clamp_min(1.0)};
}

void check_same(const torch::Tensor& s, const torch::Tensor& t, const char* what) {
  CONDENSE_CHECK(s.sizes() == t.sizes(), "{}: student tensor {} and teacher tensor {} differ in shape", what,
                 fmt::format("{}", fmt::join(s.sizes(), "x")), fmt::format("{}", fmt::join(t.sizes(), "x")));
}

}  // namespace

torch::Tensor hidden_mse_loss(const torch::Tensor& s, const torch::Tensor& t, const torch::Tensor& mask) {
  check_same(s, t, "hidden_mse");
  auto [m, n] = token_mask(mask, s);
  return ((s - t).pow(2) * m).sum() / (n * static_cast<double>(s.size(-1)));
}

torch::Tensor hidden_cosine_loss(const torch::Tensor& s, const torch::Tensor& t, const torch::Tensor& mask) {
  check_same(s, t, "hidden_cosine");
  auto [m, n] = token_mask(mask, s);
  auto cos = torch::cosine_similarity(s, t, -1, 1e-8).unsqueeze(-1);
  return ((1.0 - cos) * m).sum() / n;
}

torch::Tensor attention_mse_loss(const torch::Tensor& s, const torch::Tensor& t, const torch::Tensor& mask) {
  check_same(s, t, "attention_mse");
  // A (query, key) pair counts when both are real tokens.
  auto tok = mask.to(s.dtype());
  auto pair = (tok.unsqueeze(2) * tok.unsqueeze(1)).unsqueeze(1);  // [b, 1, q, k]
  const double heads = static_cast<double>(s.size(1));
  return ((s - t).pow(2) * pair).sum() / (pair.sum().clamp_min(1.0) * heads);
}

torch::Tensor attention_kl_loss(const torch::Tensor& s_probs, const torch::Tensor& t_probs, const torch::Tensor& mask) {
  check_same(s_probs, t_probs, "attention_kl");
  auto tok = mask.to(s_probs.dtype());
  // Padding keys have probability 0 in both; clamping keeps 0·log 0 at 0 instead of NaN.
  auto log_s = s_probs.clamp_min(1e-12).log(), log_t = t_probs.clamp_min(1e-12).log();
  auto rows = (t_probs * (log_t - log_s)).sum(-1);  // [b, h, q]
  auto q = tok.unsqueeze(1);                        // [b, 1, q]
  const double heads = static_cast<double>(s_probs.size(1));
  return (rows * q).sum() / (q.sum().clamp_min(1.0) * heads);
}

torch::Tensor pkd_cls_loss(const torch::Tensor& s, const torch::Tensor& t) {
  check_same(s, t, "pkd_cls");
  auto ns = torch::nn::functional::normalize(s, torch::nn::functional::NormalizeFuncOptions().dim(-1));
  auto nt = torch::nn::functional::normalize(t, torch::nn::functional::NormalizeFuncOptions().dim(-1));
  return (ns - nt).pow(2).sum(-1).mean();
}

FeatureProjectionImpl::FeatureProjectionImpl(int64_t student_width, int64_t teacher_width, int64_t student_layers,
                                             bool shared) {
  if (student_width == teacher_width) return;
  const int64_t n = shared ? 1 : student_layers + 1;
  for (int64_t i = 0; i < n; ++i) {
    auto lin = register_module("map" + std::to_string(i), torch::nn::Linear(student_width, teacher_width));
    torch::NoGradGuard guard;
    lin->weight.normal_(0, 0.02);
    lin->bias.zero_();
    maps_.push_back(lin);
  }
}

void FeatureProjectionImpl::start_as_embedding(const std::vector<int64_t>& channels) {
  torch::NoGradGuard guard;
  for (auto& lin : maps_) {
    CONDENSE_CHECK(static_cast<int64_t>(channels.size()) == lin->weight.size(1),
                   "distill option 'projection_channels' lists {} channels but the student is {} wide", channels.size(),
                   lin->weight.size(1));
    lin->weight.zero_();
    lin->bias.zero_();
    for (std::size_t i = 0; i < channels.size(); ++i) {
      CONDENSE_CHECK(channels[i] >= 0 && channels[i] < lin->weight.size(0),
                     "distill option 'projection_channels': channel {} is outside the teacher's {}", channels[i],
                     lin->weight.size(0));
      lin->weight[channels[i]][static_cast<int64_t>(i)] = 1.0;
    }
  }
}

torch::Tensor FeatureProjectionImpl::forward(const torch::Tensor& x, int64_t slot) {
  if (maps_.empty()) return x;
  return maps_.size() == 1 ? maps_[0]->forward(x) : maps_.at(static_cast<std::size_t>(slot))->forward(x);
}

nn::ForwardOptions forward_options_for(const std::vector<LayerLossTerm>& terms) {
  nn::ForwardOptions f;
  for (const auto& t : terms) {
    if (t.loss == LayerLoss::AttentionMSE) f.attention_scores = true;
    else if (t.loss == LayerLoss::AttentionKL) f.attentions = true;
    else f.hidden_states = true;
  }
  return f;
}

torch::Tensor layer_objective(const nn::BertOutput& s, const nn::BertOutput& t, const torch::Tensor& mask,
                              const std::vector<LayerLossTerm>& terms, const std::vector<LayerPair>& pairs,
                              FeatureProjection& proj) {
  auto total = torch::zeros({}, mask.options().dtype(torch::kFloat32));
  // Each student slot is projected once per batch, however many terms read it.
  std::map<int64_t, torch::Tensor> projected;
  auto hidden = [&](int64_t slot) {
    auto& h = projected[slot];
    if (!h.defined()) h = proj->forward(s.hidden_states.at(static_cast<std::size_t>(slot)), slot);
    return h;
  };
  auto teacher_hidden = [&](int64_t layer) { return t.hidden_states.at(static_cast<std::size_t>(layer)); };
  for (const auto& term : terms) {
    if (term.weight == 0) continue;
    torch::Tensor sum = torch::zeros_like(total);
    if (term.loss == LayerLoss::EmbeddingMSE) {
      sum = hidden_mse_loss(hidden(0), teacher_hidden(0), mask);
    } else {
      for (const auto& p : pairs) {
        const auto si = static_cast<std::size_t>(p.student - 1), ti = static_cast<std::size_t>(p.teacher - 1);
        switch (term.loss) {
          case LayerLoss::HiddenMSE: sum = sum + hidden_mse_loss(hidden(p.student), teacher_hidden(p.teacher), mask); break;
          case LayerLoss::HiddenCosine:
            sum = sum + hidden_cosine_loss(hidden(p.student), teacher_hidden(p.teacher), mask);
            break;
          case LayerLoss::AttentionMSE:
            sum = sum + attention_mse_loss(s.attention_scores.at(si), t.attention_scores.at(ti), mask);
            break;
          case LayerLoss::AttentionKL:
            sum = sum + attention_kl_loss(s.attentions.at(si), t.attentions.at(ti), mask);
            break;
          case LayerLoss::PkdCls:
            sum = sum + pkd_cls_loss(hidden(p.student).select(1, 0), teacher_hidden(p.teacher).select(1, 0));
            break;
          case LayerLoss::EmbeddingMSE: break;
        }
      }
    }
    total = total + term.weight * sum;
  }
  return total;
}

torch::Tensor soft_target_loss(const torch::Tensor& s, const torch::Tensor& t, double temperature) {
  CONDENSE_CHECK(s.sizes() == t.sizes(), "student logits {} and teacher logits {} differ in shape",
                 fmt::format("{}", fmt::join(s.sizes(), "x")), fmt::format("{}", fmt::join(t.sizes(), "x")));
  if (s.size(1) == 1) return torch::mse_loss(s, t);
  auto log_ps = torch::log_softmax(s / temperature, 1);
  auto log_pt = torch::log_softmax(t / temperature, 1);
  // T² keeps the soft-target gradients comparable across temperatures (Hinton et al. 2015, §2).
  auto kl = (log_pt.exp() * (log_pt - log_ps)).sum(1).mean();
  return kl * (temperature * temperature);
}

torch::Tensor logit_mse_loss(const torch::Tensor& s, const torch::Tensor& t) {
  CONDENSE_CHECK(s.sizes() == t.sizes(), "student and teacher logits differ in shape");
  return torch::mse_loss(s, t);
}

namespace {
// Linear from `from` at the first step to `to` at the last.
double scheduled(double from, const std::optional<double>& to, const train::Batch& b) {
  if (!to || b.total_steps <= 1) return from;
  const double f = std::clamp(static_cast<double>(b.step) / static_cast<double>(b.total_steps - 1), 0.0, 1.0);
  return from + (*to - from) * f;
}
}  // namespace

std::vector<LayerLossTerm> layer_terms_at(const std::vector<LayerLossTerm>& terms, const train::Batch& b) {
  auto out = terms;
  for (auto& t : out) t.weight = scheduled(t.weight, t.weight_end, b);
  return out;
}

double DistillOptions::temperature_at(const train::Batch& b) const { return scheduled(temperature, temperature_end, b); }
double DistillOptions::alpha_at(const train::Batch& b) const { return scheduled(alpha, alpha_end, b); }

torch::Tensor distillation_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                                const train::Batch& batch, const DistillOptions& o) {
  const double alpha = o.alpha_at(batch);
  auto soft = o.soft_loss == SoftLoss::KL ? soft_target_loss(student_logits, teacher_logits, o.temperature_at(batch))
                                          : logit_mse_loss(student_logits, teacher_logits);
  if (alpha >= 1.0) return soft;
  return alpha * soft + (1.0 - alpha) * train::task_loss(student_logits, batch);
}

torch::Tensor combine_teacher_logits(const std::vector<torch::Tensor>& logits, std::vector<double> weights,
                                     const DistillOptions& o) {
  CONDENSE_CHECK(!logits.empty(), "no teacher logits to combine");
  if (weights.empty()) weights.assign(logits.size(), 1.0);
  CONDENSE_CHECK(weights.size() == logits.size(), "{} teacher weights given for {} teachers", weights.size(),
                 logits.size());
  double total = 0;
  for (double w : weights) {
    CONDENSE_CHECK(w >= 0 && std::isfinite(w), "teacher weights must be >= 0, found {}", w);
    total += w;
  }
  CONDENSE_CHECK(total > 0, "teacher weights sum to 0");
  for (const auto& l : logits) {
    CONDENSE_CHECK(l.sizes() == logits[0].sizes(), "teachers disagree on the logits' shape ({} vs {})",
                   fmt::format("{}", fmt::join(l.sizes(), "x")), fmt::format("{}", fmt::join(logits[0].sizes(), "x")));
  }
  const bool mean_of_outputs = o.soft_loss == SoftLoss::MSE || logits[0].size(1) == 1;
  torch::Tensor acc = torch::zeros_like(logits[0]);
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const double w = weights[i] / total;
    acc = acc + w * (mean_of_outputs ? logits[i] : torch::softmax(logits[i] / o.temperature, 1));
  }
  if (mean_of_outputs) return acc;
  return o.temperature * torch::log(acc.clamp_min(1e-30));
}

std::vector<int64_t> resolve_init_layers(const StudentOptions& s, int64_t teacher_layers) {
  CONDENSE_CHECK(s.layers > 0, "student option 'layers' must be positive, found {}", s.layers);
  if (!s.init_layers.empty()) {
    CONDENSE_CHECK(static_cast<int64_t>(s.init_layers.size()) == s.layers,
                   "student option 'init_layers' lists {} layers but the student has {}", s.init_layers.size(), s.layers);
    for (auto l : s.init_layers) {
      CONDENSE_CHECK(l >= 0 && l < teacher_layers, "student option 'init_layers': teacher layer {} does not exist (teacher has {})",
                     l, teacher_layers);
    }
    return s.init_layers;
  }
  CONDENSE_CHECK(s.layers <= teacher_layers, "student option 'layers' is {} but the teacher has only {}", s.layers,
                 teacher_layers);
  std::vector<int64_t> out;
  const int64_t k = teacher_layers / s.layers;
  for (int64_t i = 0; i < s.layers; ++i) out.push_back(i * k);
  return out;
}

namespace {

/// The indices of the k largest of `score` (1-D), ascending: what a slice keeps.
torch::Tensor top_sorted(const torch::Tensor& score, int64_t k) {
  return std::get<0>(std::get<1>(score.topk(k)).sort());
}

/// init "teacher-slice": every student parameter is a slice of the teacher's, through the kept
/// hidden channels, heads and head dimensions, and FFN neurons; none is left at random.
void slice_teacher_into(nn::BertClassifier& student, nn::BertClassifier& teacher, const std::vector<int64_t>& layers) {
  const auto& sc = student->config();
  const auto& tc = teacher->config();
  auto fail_if = [&](bool bad, const std::string& what) {
    CONDENSE_CHECK(!bad, "student option 'init' is 'teacher-slice' but {}; use init: scratch", what);
  };
  fail_if(tc.per_layer_shapes() || !tc.ranks.empty() || !tc.hash_buckets.empty() || tc.embedding_size > 0 ||
              tc.bottleneck_size > 0 || tc.num_ffn > 1 || tc.norm != nn::NormKind::LayerNorm,
          "the teacher is not a plain BERT (pruned, factorized, shared or bottleneck layers, or another norm)");
  fail_if(sc.bottleneck_size > 0 || sc.num_ffn > 1 || sc.norm != nn::NormKind::LayerNorm || sc.vocab_size != tc.vocab_size,
          "the student is not a plain BERT over the teacher's vocabulary with LayerNorm");
  const int64_t th = tc.num_attention_heads, td = tc.head_dim(), sh = sc.num_attention_heads, sd = sc.head_dim();
  fail_if(sh > th || sd > td || sc.intermediate_size > tc.intermediate_size,
          fmt::format("the student's heads ({} of width {}) or intermediate size ({}) exceed the teacher's ({} of {}, {})",
                      sh, sd, sc.intermediate_size, th, td, tc.intermediate_size));
  torch::NoGradGuard guard;
  auto t = teacher->named_parameters();
  auto hid = torch::tensor(inherited_hidden_channels(teacher, sc.hidden_size), torch::kInt64);
  std::map<std::string, torch::Tensor> v;
  auto cols = [&](const std::string& name) { return t[name].index_select(1, hid); };
  for (const char* e : {"word_embeddings", "position_embeddings", "token_type_embeddings"}) {
    v[fmt::format("bert.embeddings.{}.weight", e)] = cols(fmt::format("bert.embeddings.{}.weight", e));
  }
  for (const char* w : {"weight", "bias"}) {
    v[fmt::format("bert.embeddings.LayerNorm.{}", w)] = t[fmt::format("bert.embeddings.LayerNorm.{}", w)].index_select(0, hid);
  }
  for (std::size_t li = 0; li < layers.size(); ++li) {
    const auto T = fmt::format("bert.encoder.layer.{}.", layers[li]);
    const auto S = fmt::format("bert.encoder.layer.{}.", li);
    auto wq = cols(T + "attention.self.query.weight"), wk = cols(T + "attention.self.key.weight");
    auto wv = cols(T + "attention.self.value.weight");
    auto wo = t[T + "attention.output.dense.weight"].index_select(0, hid);
    // Heads by the size of what they add to the residual stream; inside a head, query/key
    // dimensions by ‖W_q row‖·‖W_k row‖ (their share of the scores) and value dimensions by
    // ‖W_v row‖·‖W_o column‖ (their share of the output) — the product-of-norms proxy of
    // structured pruning, applied per dimension.
    auto qk_score = wq.norm(2, {1}) * wk.norm(2, {1});
    auto v_score = wv.norm(2, {1}) * wo.norm(2, {0});
    auto heads = top_sorted(v_score.reshape({th, td}).sum(1), sh);
    std::vector<torch::Tensor> qk_rows, v_rows;
    for (int64_t i = 0; i < sh; ++i) {
      const int64_t h = heads[i].item<int64_t>();
      qk_rows.push_back(top_sorted(qk_score.narrow(0, h * td, td), sd) + h * td);
      v_rows.push_back(top_sorted(v_score.narrow(0, h * td, td), sd) + h * td);
    }
    auto qk = torch::cat(qk_rows), vr = torch::cat(v_rows);
    // Scores are q·k/√d: with sd of td dimensions left, scaling W_q by √(sd/td) keeps the
    // remaining dimensions' share of the teacher's scores at the teacher's scale.
    const double q_scale = std::sqrt(static_cast<double>(sd) / static_cast<double>(td));
    v[S + "attention.self.query.weight"] = wq.index_select(0, qk) * q_scale;
    v[S + "attention.self.query.bias"] = t[T + "attention.self.query.bias"].index_select(0, qk) * q_scale;
    v[S + "attention.self.key.weight"] = wk.index_select(0, qk);
    v[S + "attention.self.key.bias"] = t[T + "attention.self.key.bias"].index_select(0, qk);
    v[S + "attention.self.value.weight"] = wv.index_select(0, vr);
    v[S + "attention.self.value.bias"] = t[T + "attention.self.value.bias"].index_select(0, vr);
    v[S + "attention.output.dense.weight"] = wo.index_select(1, vr);
    auto w_in = cols(T + "intermediate.dense.weight");
    auto w_out = t[T + "output.dense.weight"].index_select(0, hid);
    auto ffn = top_sorted(w_in.norm(2, {1}) * w_out.norm(2, {0}), sc.intermediate_size);
    v[S + "intermediate.dense.weight"] = w_in.index_select(0, ffn);
    v[S + "intermediate.dense.bias"] = t[T + "intermediate.dense.bias"].index_select(0, ffn);
    v[S + "output.dense.weight"] = w_out.index_select(1, ffn);
    for (const char* m : {"attention.output.dense.bias", "attention.output.LayerNorm.weight",
                          "attention.output.LayerNorm.bias", "output.dense.bias", "output.LayerNorm.weight",
                          "output.LayerNorm.bias"}) {
      v[S + m] = t[T + m].index_select(0, hid);
    }
  }
  v["bert.pooler.dense.weight"] = cols("bert.pooler.dense.weight").index_select(0, hid);
  v["bert.pooler.dense.bias"] = t["bert.pooler.dense.bias"].index_select(0, hid);
  v["classifier.weight"] = cols("classifier.weight");
  v["classifier.bias"] = t["classifier.bias"];
  for (auto& p : student->named_parameters()) {
    auto it = v.find(p.key());
    fail_if(it == v.end(), fmt::format("it has no teacher slice for the student's parameter {}", p.key()));
    fail_if(it->second.sizes() != p.value().sizes(),
            fmt::format("the slice for {} has shape {} against the student's {}", p.key(), fmt::join(it->second.sizes(), "x"),
                        fmt::join(p.value().sizes(), "x")));
    p.value().copy_(it->second);
  }
}

}  // namespace

std::vector<int64_t> inherited_hidden_channels(nn::BertClassifier& teacher, int64_t width) {
  const auto& tc = teacher->config();
  CONDENSE_CHECK(width > 0 && width <= tc.hidden_size, "student option 'hidden_size' is {}: init teacher-slice keeps 1 to {} "
                 "of the teacher's hidden channels", width, tc.hidden_size);
  torch::NoGradGuard guard;
  auto score = torch::zeros({tc.hidden_size});
  for (const auto& p : teacher->named_parameters()) {
    const auto& name = p.key();
    if (name.find("LayerNorm.") != std::string::npos && p.value().dim() == 1 && p.value().size(0) == tc.hidden_size) {
      score += p.value().abs();
    }
  }
  auto kept = top_sorted(score, width);
  return {kept.data_ptr<int64_t>(), kept.data_ptr<int64_t>() + width};
}

nn::BertClassifier make_student(nn::BertClassifier& teacher, const StudentOptions& s, uint64_t seed) {
  const auto& tc = teacher->config();
  nn::BertConfig c = tc;
  c.num_hidden_layers = s.layers;
  // A student has uniform layers even when the teacher was pruned to per-layer shapes.
  c.layer_heads.clear();
  c.layer_intermediate.clear();
  if (s.hidden_size) c.hidden_size = *s.hidden_size;
  if (s.num_attention_heads) c.num_attention_heads = *s.num_attention_heads;
  if (s.intermediate_size) c.intermediate_size = *s.intermediate_size;
  c.norm = s.norm;
  c.bottleneck_size = s.bottleneck_size;
  c.num_ffn = s.num_ffn;
  if (s.vocab_size) c.vocab_size = *s.vocab_size;
  if (s.hidden_act) c.hidden_act = *s.hidden_act;
  c.validate("student options");
  torch::manual_seed(seed);
  if (s.init != "teacher" && s.init != "scratch" && s.init != "teacher-slice") {
    // A model folder, e.g. the student of a general-distillation run (TinyBERT's second stage
    // starts from the first): its shape wins; explicit shape options must agree with it.
    CONDENSE_CHECK(std::filesystem::exists(std::filesystem::path(s.init) / "config.json"),
                   "student option 'init' is '{}': expected teacher, teacher-slice, scratch or a model folder with config.json", s.init);
    // The task head follows the teacher; a head of another shape (general distillation trains
    // none that matters) starts afresh, the encoder and pooler are kept.
    auto loaded = nn::load_classifier(s.init, tc.num_labels);
    const auto& lc = loaded->config();
    auto agree = [&](const std::optional<int64_t>& want, int64_t have, const char* field) {
      CONDENSE_CHECK(!want || *want == have, "student option '{}' is {} but the model in {} has {}", field, *want, s.init,
                     have);
    };
    agree(s.layers, lc.num_hidden_layers, "layers");
    agree(s.hidden_size, lc.hidden_size, "hidden_size");
    agree(s.num_attention_heads, lc.num_attention_heads, "num_attention_heads");
    agree(s.intermediate_size, lc.intermediate_size, "intermediate_size");
    CONDENSE_CHECK(s.norm == lc.norm || s.norm == nn::NormKind::LayerNorm,
                   "student option 'norm' is {} but the model in {} uses {}", nn::to_string(s.norm), s.init,
                   nn::to_string(lc.norm));
    CONDENSE_CHECK(lc.vocab_size == tc.vocab_size, "the model in {} has a vocabulary of {} but the teacher's has {}",
                   s.init, lc.vocab_size, tc.vocab_size);
    return loaded;
  }
  nn::BertClassifier student(c);
  if (s.init == "scratch") return student;
  if (s.init == "teacher-slice") {
    slice_teacher_into(student, teacher, resolve_init_layers(s, tc.num_hidden_layers));
    return student;
  }
  if (c.bottleneck_size > 0 || c.num_ffn > 1) {
    // The layers have no teacher counterpart; what has the teacher's shape is copied.
    CONDENSE_CHECK(c.hidden_size == tc.hidden_size,
                   "student option 'init' is 'teacher' but the bottleneck student's hidden size {} differs from the "
                   "teacher's {}; use init: scratch",
                   c.hidden_size, tc.hidden_size);
    torch::NoGradGuard guard;
    auto tparams = teacher->named_parameters();
    for (auto& p : student->named_parameters()) {
      if (p.key().rfind("bert.encoder.", 0) != 0) p.value().copy_(tparams[p.key()]);
    }
    return student;
  }
  CONDENSE_CHECK(c.hidden_size == tc.hidden_size && c.intermediate_size == tc.intermediate_size &&
                     c.num_attention_heads == tc.num_attention_heads && !tc.per_layer_shapes(),
                 "student option 'init' is 'teacher' but the student's widths (hidden {}, heads {}, intermediate {}) "
                 "differ from the teacher's ({}, {}, {}); use init: scratch",
                 c.hidden_size, c.num_attention_heads, c.intermediate_size, tc.hidden_size, tc.num_attention_heads,
                 tc.intermediate_size);
  const auto map = resolve_init_layers(s, tc.num_hidden_layers);
  torch::NoGradGuard guard;
  auto tparams = teacher->named_parameters();
  for (auto& p : student->named_parameters()) {
    std::string name = p.key();
    const std::string prefix = "bert.encoder.layer.";
    if (name.rfind(prefix, 0) == 0) {
      auto dot = name.find('.', prefix.size());
      const int64_t li = std::stoll(name.substr(prefix.size(), dot - prefix.size()));
      name = prefix + std::to_string(map[static_cast<std::size_t>(li)]) + name.substr(dot);
    }
    // Weight-normalised and cosine layers take the teacher's plain weight in their own form.
    auto ends_with = [&](const std::string& suffix) {
      return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (name == "bert.embeddings.word_embeddings.weight" && c.vocab_size != tc.vocab_size) {
      continue;  // another vocabulary: transfer_vocabulary() maps the rows
    }
    if (ends_with(".weight_v")) {
      p.value().copy_(tparams[name.substr(0, name.size() - 2)]);
    } else if (ends_with(".weight_g")) {
      p.value().copy_(tparams[name.substr(0, name.size() - 2)].norm(2, {1}));
    } else if (ends_with(".scale")) {
      continue;  // cosine layers start at scale 1
    } else {
      p.value().copy_(tparams[name]);
    }
  }
  return student;
}

void InitSearchOptions::validate(const StudentOptions& s, int64_t teacher_layers) const {
  CONDENSE_CHECK(held_out > 0 && held_out < 1, "init search option 'held_out' must be in (0, 1), found {}", held_out);
  CONDENSE_CHECK(candidates.size() >= 2, "init search needs two candidates or more, found {}", candidates.size());
  CONDENSE_CHECK(s.arch == "bert" && (s.init == "teacher" || s.init == "teacher-slice"),
                 "init search chooses teacher layers to copy: it needs a BERT student with init teacher or "
                 "teacher-slice, not {} with init {}",
                 s.arch, s.init);
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    StudentOptions c = s;
    c.init_layers = candidates[i];
    try {
      resolve_init_layers(c, teacher_layers);
    } catch (const Error& e) {
      fail("init search candidate {}: {}", i + 1, e.what());
    }
  }
}

InitSearchResult search_init_layers(nn::BertClassifier& teacher, const StudentOptions& s,
                                    const InitSearchOptions& search, const train::EncodedDataset& fit,
                                    const train::EncodedDataset& held, const data::Dataset& held_gold,
                                    const DistillOptions& given) {
  search.validate(s, teacher->config().num_hidden_layers);
  // The candidates' runs are scratch work: nothing saved, nothing resumed, no interruption.
  DistillOptions o = given;
  o.train.save_every = 0;
  o.train.resume = false;
  o.train.stop_after = -1;
  o.train.state_dir.clear();
  torch::Tensor logits;
  if (o.cache_teacher && o.uses_soft_targets() && o.layer_losses.empty()) logits = train::predict_logits(teacher, fit);
  InitSearchResult r;
  for (const auto& c : search.candidates) {
    StudentOptions cs = s;
    cs.init_layers = c;
    auto student = make_student(teacher, cs, o.train.seed);
    distill(student, teacher, fit, o, logits);
    r.scores.push_back(train::evaluate(student, held, held_gold).metrics.at("main"));
  }
  // max_element returns the first of equal scores.
  const auto best = std::max_element(r.scores.begin(), r.scores.end()) - r.scores.begin();
  r.chosen = search.candidates[static_cast<std::size_t>(best)];
  return r;
}

void transfer_vocabulary(nn::BertClassifier& student, const text::WordPieceTokenizer& stok, nn::BertClassifier& teacher,
                         const text::WordPieceTokenizer& ttok) {
  auto& to = student->bert->embeddings->word_embeddings->weight;
  const auto& from = teacher->bert->embeddings->word_embeddings->weight;
  CONDENSE_CHECK(to.size(0) == stok.vocab_size(), "student has {} word embeddings but its vocabulary {} entries",
                 to.size(0), stok.vocab_size());
  CONDENSE_CHECK(to.size(1) == from.size(1), "student word embeddings are {} wide but the teacher's {}", to.size(1),
                 from.size(1));
  torch::NoGradGuard guard;
  for (int64_t i = 0; i < stok.vocab_size(); ++i) {
    const auto& token = stok.id_to_token(i);
    // The teacher's id of a token, or -1 when its vocabulary lacks it.
    auto teacher_id = [&](const std::string& t) {
      const auto id = ttok.convert_tokens_to_ids({t})[0];
      return id != ttok.unk_id() || t == "[UNK]" ? id : int64_t{-1};
    };
    if (const auto same = teacher_id(token); same >= 0) {
      to[i].copy_(from[same]);
      continue;
    }
    const bool continuation = token.rfind("##", 0) == 0;
    std::vector<int64_t> ids;
    for (auto id : ttok.tokenize_to_ids(continuation ? token.substr(2) : token)) {
      if (id == ttok.unk_id()) continue;
      if (continuation) {
        // The same text inside a word: prefer the teacher's "##" form of each piece.
        const auto& piece = ttok.id_to_token(id);
        if (piece.rfind("##", 0) != 0) {
          if (const auto inner = teacher_id("##" + piece); inner >= 0) id = inner;
        }
      }
      ids.push_back(id);
    }
    if (!ids.empty()) to[i].copy_(from.index_select(0, torch::tensor(ids, torch::kInt64)).mean(0));
  }
}

nn::TextNetClassifier make_text_student(nn::BertClassifier& teacher, const StudentOptions& s, bool pair,
                                        uint64_t seed) {
  CONDENSE_CHECK(s.arch == "bilstm" || s.arch == "cnn", "student option 'arch' is '{}': expected bert, bilstm or cnn",
                 s.arch);
  CONDENSE_CHECK(s.init == "teacher" || s.init == "scratch",
                 "student option 'init' is '{}': a {} student starts from the teacher's word embeddings (teacher) or "
                 "from random ones (scratch)",
                 s.init, s.arch);
  const auto& tc = teacher->config();
  nn::TextNetConfig c;
  c.arch = s.arch;
  c.vocab_size = tc.vocab_size;
  c.pad_token_id = tc.pad_token_id;
  c.num_labels = tc.num_labels;
  c.embedding_dim = s.embedding_dim.value_or(tc.hidden_size);
  c.hidden_size = s.hidden_size.value_or(s.arch == "bilstm" ? 150 : 100);
  c.kernel_sizes = s.kernel_sizes;
  c.mlp_size = s.mlp_size;
  c.dropout = s.dropout;
  c.pair = pair;
  c.validate("student options");
  torch::manual_seed(seed);
  nn::TextNetClassifier student(c);
  if (s.init == "teacher") {
    const auto& table = teacher->bert->embeddings->word_embeddings->weight;
    CONDENSE_CHECK(c.embedding_dim == table.size(1),
                   "student option 'embedding_dim' is {} but init 'teacher' copies the teacher's {}-wide word "
                   "embeddings; use init: scratch or embedding_dim {}",
                   c.embedding_dim, table.size(1), table.size(1));
    torch::NoGradGuard guard;
    student->embeddings->weight.copy_(table);
  }
  return student;
}

train::TrainResult distill(nn::TextNetClassifier& student, nn::BertClassifier& teacher,
                           const train::EncodedDataset& train_set, const DistillOptions& o,
                           torch::Tensor teacher_logits) {
  o.validate();
  CONDENSE_CHECK(o.layer_losses.empty() && o.prediction_weight > 0,
                 "a {} student has no transformer layers: distil it with prediction losses only (no layer_losses, "
                 "prediction_weight > 0)",
                 student->config().arch);
  CONDENSE_CHECK(student->config().num_labels == teacher->config().num_labels,
                 "student has {} outputs but the teacher has {}", student->config().num_labels,
                 teacher->config().num_labels);
  auto logits_of = [&student](const train::Batch& b) {
    return student->forward(b.input_ids, b.token_type_ids, b.attention_mask);
  };
  if (!o.uses_soft_targets()) {
    return train::train_loop(*student, train_set, o.train,
                             [&](const train::Batch& b) { return train::task_loss(logits_of(b), b); });
  }
  if (!teacher_logits.defined()) teacher_logits = train::predict_logits(teacher, train_set);
  CONDENSE_CHECK(teacher_logits.size(0) == static_cast<int64_t>(train_set.size()),
                 "teacher cache has {} rows but the training set has {} examples", teacher_logits.size(0),
                 train_set.size());
  return train::train_loop(*student, train_set, o.train, [&](const train::Batch& b) {
    return o.prediction_weight * distillation_loss(logits_of(b), teacher_logits.index_select(0, b.indices), b, o);
  });
}

std::pair<torch::Tensor, torch::Tensor> mask_tokens(const torch::Tensor& ids, const torch::Tensor& attention_mask,
                                                    const MlmSetup& m, double p, at::Generator gen) {
  CONDENSE_CHECK(m.mask_id >= 0 && m.vocab_size > 0, "masked-LM setup needs the [MASK] id and the vocabulary size");
  auto eligible = attention_mask.to(torch::kBool);
  for (auto id : m.special_ids) eligible &= ids != id;
  auto draw = torch::rand(ids.sizes(), gen);
  auto chosen = eligible & (draw < p);
  auto how = torch::rand(ids.sizes(), gen);  // < 0.8: [MASK]; < 0.9: random token; else keep
  auto random_ids = torch::randint(m.vocab_size, ids.sizes(), gen, torch::kInt64);
  auto corrupted = torch::where(chosen & (how < 0.8), torch::full_like(ids, m.mask_id), ids);
  corrupted = torch::where(chosen & (how >= 0.8) & (how < 0.9), random_ids, corrupted);
  auto targets = torch::where(chosen, ids, torch::full_like(ids, -100));
  return {corrupted, targets};
}

namespace {

// The teacher outputs a set of layer terms reads: hidden-state slots (0 = embedding output, l =
// layer l), and the layers (0-based) whose pre-softmax scores or probabilities are compared.
struct TeacherNeeds {
  std::vector<int64_t> hidden, scores, probs;
};

TeacherNeeds teacher_needs(const std::vector<LayerLossTerm>& terms, const std::vector<LayerPair>& pairs) {
  std::set<int64_t> hidden, scores, probs;
  for (const auto& term : terms) {
    if (term.loss == LayerLoss::EmbeddingMSE) {
      hidden.insert(0);
      continue;
    }
    for (const auto& p : pairs) {
      if (term.loss == LayerLoss::AttentionMSE) scores.insert(p.teacher - 1);
      else if (term.loss == LayerLoss::AttentionKL) probs.insert(p.teacher - 1);
      else hidden.insert(p.teacher);
    }
  }
  return {{hidden.begin(), hidden.end()}, {scores.begin(), scores.end()}, {probs.begin(), probs.end()}};
}

// The teacher's outputs per example, each trimmed to the example's own length, from which every
// batch's padded BertOutput is assembled. Padding positions come back as 0: every layer loss masks
// them (attention terms by (query, key) pairs of real tokens), and a padding key's teacher
// probability is 0 either way.
class TeacherLayerCache {
 public:
  TeacherLayerCache(nn::BertClassifier& teacher, const train::EncodedDataset& d, const TeacherNeeds& needs,
                    const nn::ForwardOptions& fwd)
      : needs_(needs), layers_(teacher->config().num_hidden_layers) {
    const auto n = d.size();
    hidden_.assign(needs_.hidden.size(), std::vector<torch::Tensor>(n));
    scores_.assign(needs_.scores.size(), std::vector<torch::Tensor>(n));
    probs_.assign(needs_.probs.size(), std::vector<torch::Tensor>(n));
    // One pass in eval mode without gradients (predict_logits), keeping each example's slices.
    logits_ = train::predict_logits(
        *teacher,
        [&](const train::Batch& b) {
          auto out = teacher->forward(b.input_ids, b.token_type_ids, b.attention_mask, fwd);
          auto ids = b.indices.contiguous();
          for (int64_t row = 0; row < b.size(); ++row) {
            const auto i = static_cast<std::size_t>(ids.data_ptr<int64_t>()[row]);
            const auto len = static_cast<int64_t>(d.input_ids[i].size());
            for (std::size_t k = 0; k < needs_.hidden.size(); ++k) {
              hidden_[k][i] =
                  out.hidden_states.at(static_cast<std::size_t>(needs_.hidden[k]))[row].narrow(0, 0, len).clone();
            }
            auto square = [&](const torch::Tensor& a) { return a[row].narrow(1, 0, len).narrow(2, 0, len).clone(); };
            for (std::size_t k = 0; k < needs_.scores.size(); ++k) {
              scores_[k][i] = square(out.attention_scores.at(static_cast<std::size_t>(needs_.scores[k])));
            }
            for (std::size_t k = 0; k < needs_.probs.size(); ++k) {
              probs_[k][i] = square(out.attentions.at(static_cast<std::size_t>(needs_.probs[k])));
            }
          }
          return out.logits;
        },
        teacher->config().num_labels, d);
  }

  // The batch's teacher output, shaped as teacher->forward would return it for the slots needed.
  nn::BertOutput batch(const train::Batch& b) const {
    nn::BertOutput out;
    out.logits = logits_.index_select(0, b.indices);
    out.hidden_states.resize(static_cast<std::size_t>(layers_ + 1));
    out.attention_scores.resize(static_cast<std::size_t>(layers_));
    out.attentions.resize(static_cast<std::size_t>(layers_));
    const int64_t rows = b.size(), seq = b.input_ids.size(1);
    auto idx = b.indices.contiguous();
    const auto* ids = idx.data_ptr<int64_t>();
    auto gather = [&](const std::vector<torch::Tensor>& per_example, bool square) {
      const auto& first = per_example.at(static_cast<std::size_t>(ids[0]));
      auto t = square ? torch::zeros({rows, first.size(0), seq, seq}) : torch::zeros({rows, seq, first.size(1)});
      for (int64_t r = 0; r < rows; ++r) {
        const auto& x = per_example.at(static_cast<std::size_t>(ids[r]));
        const int64_t len = square ? x.size(1) : x.size(0);
        auto dst = square ? t[r].narrow(1, 0, len).narrow(2, 0, len) : t[r].narrow(0, 0, len);
        dst.copy_(x);
      }
      return t;
    };
    for (std::size_t k = 0; k < needs_.hidden.size(); ++k) {
      out.hidden_states[static_cast<std::size_t>(needs_.hidden[k])] = gather(hidden_[k], false);
    }
    for (std::size_t k = 0; k < needs_.scores.size(); ++k) {
      out.attention_scores[static_cast<std::size_t>(needs_.scores[k])] = gather(scores_[k], true);
    }
    for (std::size_t k = 0; k < needs_.probs.size(); ++k) {
      out.attentions[static_cast<std::size_t>(needs_.probs[k])] = gather(probs_[k], true);
    }
    return out;
  }

 private:
  TeacherNeeds needs_;
  int64_t layers_;
  std::vector<std::vector<torch::Tensor>> hidden_, scores_, probs_;  // [slot][example]
  torch::Tensor logits_;
};

}  // namespace

int64_t teacher_layer_cache_bytes(const DistillOptions& o, int64_t student_layers, const nn::BertConfig& tc,
                                  const train::EncodedDataset& d) {
  if (o.layer_losses.empty()) return 0;
  const auto needs = teacher_needs(o.layer_losses, resolve_layer_map(o.layer_map, student_layers, tc.num_hidden_layers));
  auto heads = [&](int64_t layer) {
    return tc.layer_heads.empty() ? tc.num_attention_heads : tc.layer_heads.at(static_cast<std::size_t>(layer));
  };
  int64_t per_token = static_cast<int64_t>(needs.hidden.size()) * tc.hidden_size, per_pair = 0;
  for (auto l : needs.scores) per_pair += heads(l);
  for (auto l : needs.probs) per_pair += heads(l);
  int64_t floats = static_cast<int64_t>(d.size()) * tc.num_labels;
  for (auto len : d.lengths()) {
    const auto l = static_cast<int64_t>(len);
    floats += l * per_token + l * l * per_pair;
  }
  return floats * static_cast<int64_t>(sizeof(float));
}

bool caches_teacher_layers(const DistillOptions& o, int64_t student_layers, const nn::BertConfig& teacher,
                           const train::EncodedDataset& d) {
  return !o.layer_losses.empty() && o.cache_teacher && !o.uses_mlm() &&
         teacher_layer_cache_bytes(o, student_layers, teacher, d) <= o.teacher_cache_mb * (int64_t{1} << 20);
}

namespace {

// DistillOptions::norm_fade: sets the LayerNorm share of the student's non-LayerNorm norms before
// every step, and back to 0 (the student's own normalisation) when training ends however it ends.
class NormFade {
 public:
  NormFade(nn::BertClassifier& student, DistillOptions& o) {
    if (o.norm_fade <= 0) return;
    for (const auto& m : student->modules(/*include_self=*/false)) {
      if (auto n = std::dynamic_pointer_cast<nn::NormImpl>(m); n && n->kind() != nn::NormKind::LayerNorm) {
        norms_.push_back(n);
      }
    }
    if (norms_.empty()) return;
    o.train.before_step = [norms = norms_, fade = o.norm_fade, next = o.train.before_step](int64_t step, int64_t total) {
      const double share = std::max(0.0, 1.0 - static_cast<double>(step) / (fade * static_cast<double>(total)));
      for (const auto& n : norms) n->set_layernorm_share(share);
      if (next) next(step, total);
    };
  }
  ~NormFade() {
    for (const auto& n : norms_) n->set_layernorm_share(0);
  }
  NormFade(const NormFade&) = delete;
  NormFade& operator=(const NormFade&) = delete;

 private:
  std::vector<std::shared_ptr<nn::NormImpl>> norms_;
};

}  // namespace

train::TrainResult distill(nn::BertClassifier& student, nn::BertClassifier& teacher,
                           const train::EncodedDataset& train_set, const DistillOptions& given,
                           torch::Tensor teacher_logits, const MlmSetup* mlm) {
  given.validate();
  DistillOptions o = given;
  NormFade fade(student, o);
  CONDENSE_CHECK(student->config().num_labels == teacher->config().num_labels,
                 "student has {} outputs but the teacher has {}", student->config().num_labels,
                 teacher->config().num_labels);
  if (o.uses_mlm()) {
    CONDENSE_CHECK(mlm != nullptr && mlm->student, "masked-LM terms need the student's MLM head (an MlmSetup)");
    CONDENSE_CHECK(o.mlm_distill_weight == 0 || mlm->teacher,
                   "distill option 'mlm_distill_weight' needs a teacher with a masked-LM head (cls.predictions.*)");
  }
  nn::BertMlmHead s_head{nullptr}, t_head{nullptr};  // shared handles to the caller's heads
  if (mlm != nullptr) {
    s_head = mlm->student;
    t_head = mlm->teacher;
  }
  if (!o.layer_losses.empty() || o.uses_mlm()) {
    const auto& sc = student->config();
    const auto& tc = teacher->config();
    const auto pairs = o.layer_losses.empty()
                           ? std::vector<LayerPair>{}
                           : resolve_layer_map(o.layer_map, sc.num_hidden_layers, tc.num_hidden_layers);
    for (const auto& term : o.layer_losses) {
      const bool attention = term.loss == LayerLoss::AttentionMSE || term.loss == LayerLoss::AttentionKL;
      CONDENSE_CHECK(!attention || sc.num_attention_heads == tc.num_attention_heads,
                     "layer loss {} compares attention maps head by head, but the student has {} heads and the teacher "
                     "{}",
                     to_string(term.loss), sc.num_attention_heads, tc.num_attention_heads);
    }
    auto proj = FeatureProjection(sc.hidden_size, tc.hidden_size, sc.num_hidden_layers, o.shared_projection);
    if (!o.projection_channels.empty()) proj->start_as_embedding(o.projection_channels);
    auto fwd = forward_options_for(o.layer_losses);
    if (o.uses_mlm()) fwd.with_hidden_states();
    teacher->eval();
    // The trainable extras: the projections, plus the student's MLM head when there is one. (Only
    // then are they wrapped, so training states of runs without MLM keep their layout.)
    std::shared_ptr<torch::nn::Module> aux = proj.ptr();
    if (o.uses_mlm()) {
      aux = std::make_shared<torch::nn::Module>();
      aux->register_module("projection", proj);
      aux->register_module("mlm_head", s_head);
      if (t_head) t_head->eval();
    }
    std::optional<TeacherLayerCache> cache;
    if (caches_teacher_layers(o, sc.num_hidden_layers, tc, train_set)) {
      cache.emplace(teacher, train_set, teacher_needs(o.layer_losses, pairs), fwd);
    }
    auto run = [&](const std::vector<LayerPair>& active, const train::TrainOptions& to) {
      return train::train_loop(
          student, train_set, to,
          [&](nn::BertClassifier& m, const train::Batch& b) {
            auto ids = b.input_ids;
            torch::Tensor targets;
            if (o.uses_mlm()) {
              // Masks depend only on (seed, step), so a resumed run sees the same ones.
              auto gen = at::make_generator<at::CPUGeneratorImpl>(to.seed * 1000003ULL + static_cast<uint64_t>(b.step));
              std::tie(ids, targets) = mask_tokens(b.input_ids, b.attention_mask, *mlm, o.mask_prob, gen);
            }
            nn::BertOutput t;
            if (cache) {
              t = cache->batch(b);
            } else {
              torch::NoGradGuard guard;
              t = teacher->forward(ids, b.token_type_ids, b.attention_mask, fwd);
            }
            auto out = m->forward(ids, b.token_type_ids, b.attention_mask, fwd);
            auto loss = layer_objective(out, t, b.attention_mask, layer_terms_at(o.layer_losses, b), active, proj);
            if (o.prediction_weight > 0) {
              loss = loss + o.prediction_weight * distillation_loss(out.logits, t.logits, b, o);
            }
            if (o.uses_mlm()) {
              const int64_t width = out.hidden_states.back().size(-1);
              auto flat_targets = targets.reshape({-1});
              auto rows = torch::nonzero(flat_targets != -100).squeeze(1);
              if (rows.numel() > 0) {
                auto s_hidden = out.hidden_states.back().reshape({-1, width}).index_select(0, rows);
                auto s_logits = s_head(s_hidden, m->bert->embeddings->word_embeddings->weight);
                if (o.mlm_weight > 0) {
                  loss = loss + o.mlm_weight * torch::cross_entropy_loss(s_logits, flat_targets.index_select(0, rows));
                }
                if (o.mlm_distill_weight > 0) {
                  torch::Tensor t_logits;
                  {
                    torch::NoGradGuard guard;
                    const int64_t tw = t.hidden_states.back().size(-1);
                    t_logits = t_head(t.hidden_states.back().reshape({-1, tw}).index_select(0, rows),
                                            teacher->bert->embeddings->word_embeddings->weight);
                  }
                  loss = loss + o.mlm_distill_weight * soft_target_loss(s_logits, t_logits, o.temperature_at(b));
                }
              } else {
                loss = loss + 0 * out.hidden_states.back().sum();  // no token drawn: keep the graph
              }
            }
            return loss;
          },
          aux);
    };
    if (!o.progressive) return run(pairs, o.train);
    // One pass per mapped layer, bottom up; the state of each lives in its own folder so an
    // interrupted run replays finished layers from their final state and resumes the current one.
    std::vector<LayerPair> order = pairs;
    std::sort(order.begin(), order.end(), [](const LayerPair& a, const LayerPair& b) { return a.student < b.student; });
    train::TrainResult last;
    for (const auto& pair : order) {
      for (auto& p : student->parameters()) p.set_requires_grad(false);
      for (auto& p : student->layer(pair.student - 1)->parameters()) p.set_requires_grad(true);
      auto to = o.train;
      if (!to.state_dir.empty()) to.state_dir = to.state_dir / ("layer" + std::to_string(pair.student));
      last = run({pair}, to);
      if (!last.finished) break;
    }
    for (auto& p : student->parameters()) p.set_requires_grad(true);
    return last;
  }
  // With alpha = 0 the loss is the hard-label loss alone: the teacher only supplied the initial
  // weights, so neither a cache nor a per-batch teacher forward is needed (the no-KD baseline).
  if (!o.uses_soft_targets()) {
    return train::train_loop(student, train_set, o.train, [&](nn::BertClassifier& m, const train::Batch& b) {
      return train::task_loss(m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits, b);
    });
  }
  if (!o.cache_teacher) {
    teacher->eval();
    return train::train_loop(student, train_set, o.train, [&](nn::BertClassifier& m, const train::Batch& b) {
      torch::Tensor t;
      {
        torch::NoGradGuard guard;
        t = teacher->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
      }
      auto logits = m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
      return distillation_loss(logits, t, b, o);
    });
  }
  if (!teacher_logits.defined()) teacher_logits = train::predict_logits(teacher, train_set);
  CONDENSE_CHECK(teacher_logits.size(0) == static_cast<int64_t>(train_set.size()),
                 "teacher cache has {} rows but the training set has {} examples", teacher_logits.size(0),
                 train_set.size());
  return train::train_loop(student, train_set, o.train, [&](nn::BertClassifier& m, const train::Batch& b) {
    auto logits = m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
    return distillation_loss(logits, teacher_logits.index_select(0, b.indices), b, o);
  });
}

}  // namespace condense::distill
