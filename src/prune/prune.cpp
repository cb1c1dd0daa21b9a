#include "condense/prune/prune.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>

#include "condense/core/error.h"
#include "condense/data/glue.h"

namespace condense::prune {

namespace {

// ---- names -------------------------------------------------------------------------------------

template <typename E, std::size_t N>
E parse_enum(const std::string& name, const std::pair<const char*, E> (&table)[N], const char* what) {
  std::string known;
  for (const auto& [k, v] : table) {
    if (name == k) return v;
    known += known.empty() ? k : std::string(", ") + k;
  }
  fail("unknown {} '{}', expected one of {}", what, name, known);
}

template <typename E, std::size_t N>
std::string enum_name(E e, const std::pair<const char*, E> (&table)[N]) {
  for (const auto& [k, v] : table) {
    if (v == e) return k;
  }
  return "?";
}

constexpr std::pair<const char*, Criterion> kCriteria[] = {
    {"magnitude", Criterion::Magnitude}, {"taylor", Criterion::Taylor}, {"movement", Criterion::Movement},
    {"soft-movement", Criterion::SoftMovement}, {"l1", Criterion::L1}, {"l2", Criterion::L2},
    {"entropy", Criterion::Entropy}};
constexpr std::pair<const char*, Granularity> kGranularities[] = {
    {"unstructured", Granularity::Unstructured}, {"nm", Granularity::NM},
    {"heads", Granularity::Heads},               {"neurons", Granularity::Neurons},
    {"heads+neurons", Granularity::HeadsNeurons}, {"layers", Granularity::Layers}};
constexpr std::pair<const char*, Schedule> kSchedules[] = {
    {"oneshot", Schedule::OneShot}, {"iterative", Schedule::Iterative}, {"cubic", Schedule::Cubic}};

bool weight_level(Granularity g) { return g == Granularity::Unstructured || g == Granularity::NM; }
bool prunes_heads(Granularity g) { return g == Granularity::Heads || g == Granularity::HeadsNeurons; }
bool prunes_neurons(Granularity g) { return g == Granularity::Neurons || g == Granularity::HeadsNeurons; }

// ---- the model's prunable parts ----------------------------------------------------------------

struct DenseRef {
  std::string name;  // parameter name of the weight
  nn::Dense dense;
};

std::vector<DenseRef> encoder_denses(nn::BertClassifier& model) {
  std::vector<DenseRef> out;
  for (int64_t i = 0; i < model->config().num_hidden_layers; ++i) {
    auto l = model->layer(i);
    const std::string p = "bert.encoder.layer." + std::to_string(i) + ".";
    out.push_back({p + "attention.self.query.weight", l->attention->self->query});
    out.push_back({p + "attention.self.key.weight", l->attention->self->key});
    out.push_back({p + "attention.self.value.weight", l->attention->self->value});
    out.push_back({p + "attention.output.dense.weight", l->attention->output->dense});
    out.push_back({p + "intermediate.dense.weight", l->intermediate->dense});
    out.push_back({p + "output.dense.weight", l->output->dense});
  }
  return out;
}

void check_prunable(nn::BertClassifier& model) {
  const auto& c = model->config();
  CONDENSE_CHECK(c.share.empty(), "pruning needs unshared layers; this model shares '{}' across layers", c.share);
  CONDENSE_CHECK(c.bottleneck_size == 0 && c.num_ffn == 1,
                 "pruning needs plain BERT layers; this model has a MobileBERT bottleneck (condense_bottleneck_size / "
                 "condense_num_ffn)");
  for (auto& d : encoder_denses(model)) {
    CONDENSE_CHECK(d.dense->plain(), "pruning needs plain linear weights; '{}' is low-rank, hashed or {} parameterised",
                   d.name, nn::to_string(c.norm));
  }
}

// A Dense kernel multiplying the weight by a 0/1 mask. The weight itself is kept, so with the
// movement criterion a pruned weight can return (Sanh et al. 2020's straight-through mask); `track`
// keeps the masked weight's gradient, which the movement score needs unmasked.
class MaskKernel : public nn::DenseKernel {
 public:
  explicit MaskKernel(torch::Tensor m) : mask(std::move(m)) {}
  torch::Tensor forward(nn::DenseImpl& layer, const torch::Tensor& x) override {
    auto w = layer.weight * mask;
    if (track && w.requires_grad()) {
      w.retain_grad();
      effective = w;
    }
    return torch::linear(x, w, layer.bias);
  }
  torch::Tensor mask, effective;
  bool track = false;
};

std::shared_ptr<MaskKernel> mask_kernel(const nn::Dense& d) {
  return std::dynamic_pointer_cast<MaskKernel>(d->kernel());
}

// ---- scores ------------------------------------------------------------------------------------

// Fixed-order batches for score passes (independent of the fine-tuning order).
std::vector<train::Batch> score_batches(const train::EncodedDataset& d, int64_t count, int64_t batch_size,
                                        uint64_t seed) {
  auto plan = data::bucket_batches(d.lengths(), batch_size, true, seed + 7919);
  std::vector<train::Batch> out;
  for (std::size_t i = 0; i < plan.size() && static_cast<int64_t>(out.size()) < count; ++i) {
    out.push_back(train::make_batch(d, plan[i]));
  }
  return out;
}

// Gradients of the gates: one [heads] / [width] tensor per layer, requiring grad, equal to the
// current masks (ones where none).
struct Gates {
  std::vector<torch::Tensor> heads, neurons;
};

Gates install_gates(nn::BertClassifier& model, const Masks& masks) {
  Gates g;
  const auto& c = model->config();
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    auto l = model->layer(i);
    auto hg = masks.heads.empty() ? torch::ones({c.heads_at(i)}) : masks.heads[i].clone();
    auto ng = masks.neurons.empty() ? torch::ones({c.intermediate_at(i)}) : masks.neurons[i].clone();
    hg.requires_grad_(true);
    ng.requires_grad_(true);
    l->attention->self->head_gate = hg;
    l->intermediate->neuron_gate = ng;
    g.heads.push_back(hg);
    g.neurons.push_back(ng);
  }
  return g;
}

void zero_gate_grads(Gates& g) {
  for (auto* v : {&g.heads, &g.neurons}) {
    for (auto& t : *v) {
      if (t.grad().defined()) t.mutable_grad().zero_();
    }
  }
}

// Magnitude of a head: RMS of its q/k/v rows and attention-output columns; of a neuron: RMS of
// its intermediate row and output column.
void unit_magnitudes(nn::BertClassifier& model, std::vector<torch::Tensor>& heads, std::vector<torch::Tensor>& neurons) {
  torch::NoGradGuard ng;
  const auto& c = model->config();
  const int64_t d = c.head_dim();
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    auto l = model->layer(i);
    auto& s = *l->attention->self;
    const int64_t h = s.heads;
    auto rows = s.query->weight.pow(2).sum(1) + s.key->weight.pow(2).sum(1) + s.value->weight.pow(2).sum(1);
    auto cols = l->attention->output->dense->weight.pow(2).sum(0);
    auto per_head = (rows + cols).view({h, d}).sum(1) / static_cast<double>(d * (3 + 1) * c.hidden_size);
    heads.push_back(per_head.sqrt());
    auto nrow = l->intermediate->dense->weight.pow(2).sum(1) + l->output->dense->weight.pow(2).sum(0);
    neurons.push_back((nrow / static_cast<double>(2 * c.hidden_size)).sqrt());
  }
}

// Entropy of a histogram of each column of x [tokens, units] (32 bins over the column's range).
torch::Tensor column_entropy(const torch::Tensor& x) {
  constexpr int64_t kBins = 32;
  auto lo = std::get<0>(x.min(0, true)), hi = std::get<0>(x.max(0, true));
  auto idx = ((x - lo) / (hi - lo).clamp_min(1e-12) * kBins).floor().clamp(0, kBins - 1).to(torch::kLong);
  auto counts = torch::zeros({kBins, x.size(1)}).scatter_add_(0, idx, torch::ones_like(x));
  auto p = counts / static_cast<double>(x.size(0));
  return -(p * (p + 1e-12).log()).sum(0);
}

// Activation entropy of every head's context and every FFN neuron over the score batches
// (Luo & Wu 2017), on a sample of at most 4096 real tokens per layer.
void unit_entropies(nn::BertClassifier& model, const std::vector<train::Batch>& batches,
                    std::vector<torch::Tensor>& heads, std::vector<torch::Tensor>& neurons) {
  torch::NoGradGuard ng;
  model->eval();
  const auto& c = model->config();
  const int64_t L = c.num_hidden_layers;
  std::vector<std::vector<torch::Tensor>> ctx(L), act(L);
  int64_t tokens = 0;
  for (const auto& b : batches) {
    if (tokens >= 4096) break;
    auto out = model->forward(b.input_ids, b.token_type_ids, b.attention_mask, nn::ForwardOptions().with_hidden_states());
    auto keep = b.attention_mask.reshape({-1}).nonzero().squeeze(1);
    auto mask = (1.0 - b.attention_mask.to(torch::kFloat).unsqueeze(1).unsqueeze(2)) *
                std::numeric_limits<float>::lowest();
    for (int64_t i = 0; i < L; ++i) {
      auto l = model->layer(i);
      auto h = out.hidden_states[i];
      auto context = l->attention->self->forward(h, mask, nullptr);
      auto a = l->attention->output->forward(context, h);
      auto y = l->intermediate->forward(a);
      ctx[i].push_back(context.reshape({-1, context.size(-1)}).index_select(0, keep));
      act[i].push_back(y.reshape({-1, y.size(-1)}).index_select(0, keep));
    }
    tokens += keep.size(0);
  }
  for (int64_t i = 0; i < L; ++i) {
    auto cx = torch::cat(ctx[i]);
    const int64_t h = model->layer(i)->attention->self->heads;
    // A head's values: all d dimensions of its context over all tokens, as one sample.
    auto per_head = cx.view({cx.size(0), h, c.head_dim()}).permute({0, 2, 1}).reshape({-1, h});
    heads.push_back(column_entropy(per_head));
    neurons.push_back(column_entropy(torch::cat(act[i])));
  }
}

// Loss increase when each layer alone is skipped (eval mode, score batches).
std::vector<double> layer_importance(nn::BertClassifier& model, const std::vector<train::Batch>& batches,
                                     const train::LossFn& loss) {
  torch::NoGradGuard ng;
  model->eval();
  const int64_t L = model->config().num_hidden_layers;
  auto mean_loss = [&] {
    double s = 0;
    for (const auto& b : batches) s += loss(model, b).item<double>();
    return s / static_cast<double>(std::max<std::size_t>(1, batches.size()));
  };
  const auto saved = model->active_layers;
  const double base = mean_loss();
  std::vector<double> out;
  for (int64_t i = 0; i < L; ++i) {
    model->active_layers.clear();
    for (int64_t j = 0; j < L; ++j) {
      if (j != i) model->active_layers.push_back(j);
    }
    out.push_back(mean_loss() - base);
  }
  model->active_layers = saved;
  return out;
}

// One prunable unit (head or neuron) of a mask group (a layer's heads, or its neurons).
struct Unit {
  double per_weight;  // score / weights; −inf for a unit already removed
  std::size_t group;
  int64_t index;
  int64_t weights;
};

// Appends group `group`'s units with their scores divided by `weights`; with `keep_removed`, a unit
// 0 in `current` (when given) is ranked first so that it stays removed. Returns its all-ones mask.
torch::Tensor add_units(const torch::Tensor& scores, const torch::Tensor* current, std::size_t group, int64_t weights,
                        bool keep_removed, std::vector<Unit>& units) {
  auto s = scores.to(torch::kDouble).contiguous();
  auto acc = s.accessor<double, 1>();
  const bool check = keep_removed && current != nullptr;
  auto now = check ? current->to(torch::kFloat).contiguous() : torch::Tensor();
  for (int64_t i = 0; i < s.numel(); ++i) {
    const bool gone = check && now.data_ptr<float>()[i] == 0;
    units.push_back({gone ? -INFINITY : acc[i] / static_cast<double>(weights), group, i, weights});
  }
  return torch::ones({s.numel()});
}

// Zeroes units in ascending per-weight order while the removed weights stay within `target`
// (a unit that would overshoot is passed over for smaller ones), keeping one unit in every group.
void remove_cheapest(std::vector<Unit> units, std::vector<torch::Tensor>& masks, int64_t target) {
  std::vector<int64_t> alive;
  for (const auto& m : masks) alive.push_back(m.numel());
  int64_t smallest = INT64_MAX;
  for (const auto& u : units) smallest = std::min(smallest, u.weights);
  std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) { return a.per_weight < b.per_weight; });
  int64_t removed = 0;
  for (const auto& u : units) {
    if (removed + smallest > target) break;  // not even the smallest unit fits any more
    if (removed + u.weights > target || alive[u.group] <= 1) continue;
    masks[u.group][u.index] = 0;
    --alive[u.group];
    removed += u.weights;
  }
}

// Removes the lowest-scoring `sparsity` of all units over all layers, keeping at least one per layer;
// units already pruned (mask 0) stay pruned when `monotone`.
std::vector<torch::Tensor> unit_masks(const std::vector<torch::Tensor>& scores, const std::vector<torch::Tensor>& current,
                                      double sparsity, bool monotone) {
  std::vector<Unit> units;
  std::vector<torch::Tensor> masks;
  int64_t total = 0;
  for (std::size_t l = 0; l < scores.size(); ++l) {
    masks.push_back(add_units(scores[l], current.empty() ? nullptr : &current[l], l, 1, monotone, units));
    total += scores[l].numel();
  }
  remove_cheapest(std::move(units), masks, std::llround(sparsity * static_cast<double>(total)));
  return masks;
}

// Michel et al. 2019 normalise head importance per layer (L2) before ranking across layers.
std::vector<torch::Tensor> normalize_per_layer(std::vector<torch::Tensor> s) {
  for (auto& t : s) t = t / t.norm().clamp_min(1e-20);
  return s;
}

int64_t count_encoder_weights(nn::BertClassifier& model, bool nonzero) {
  torch::NoGradGuard ng;
  int64_t n = 0;
  for (auto& d : encoder_denses(model)) {
    auto w = d.dense->weight;
    if (auto k = mask_kernel(d.dense)) w = w * k->mask;
    n += nonzero ? w.ne(0).sum().item<int64_t>() : w.numel();
  }
  return n;
}

}  // namespace

Criterion parse_criterion(const std::string& name) { return parse_enum(name, kCriteria, "pruning criterion"); }
Granularity parse_granularity(const std::string& name) {
  return parse_enum(name, kGranularities, "pruning granularity");
}
Schedule parse_schedule(const std::string& name) { return parse_enum(name, kSchedules, "pruning schedule"); }
std::string to_string(Criterion c) { return enum_name(c, kCriteria); }
std::string to_string(Granularity g) { return enum_name(g, kGranularities); }
std::string to_string(Schedule s) { return enum_name(s, kSchedules); }

void PruneOptions::validate() const {
  CONDENSE_CHECK(sparsity >= 0 && sparsity < 1, "prune option 'sparsity' must be in [0, 1), found {}", sparsity);
  CONDENSE_CHECK(n >= 1 && m > n && m <= 64, "prune options 'n'/'m' must satisfy 1 <= n < m <= 64, found {}:{}", n, m);
  CONDENSE_CHECK(steps >= 1, "prune option 'steps' must be >= 1, found {}", steps);
  CONDENSE_CHECK(update_every >= 1, "prune option 'update_every' must be >= 1, found {}", update_every);
  CONDENSE_CHECK(regularization >= 0, "prune option 'regularization' must be >= 0, found {}", regularization);
  CONDENSE_CHECK(score_batches >= 1, "prune option 'score_batches' must be >= 1, found {}", score_batches);
  CONDENSE_CHECK(layerdrop >= 0 && layerdrop < 1, "prune option 'layerdrop' must be in [0, 1), found {}", layerdrop);
  CONDENSE_CHECK(layer_select == "importance" || layer_select == "every-other",
                 "prune option 'layer_select' must be importance or every-other, found '{}'", layer_select);
  CONDENSE_CHECK(granularity != Granularity::Layers || depth >= 1,
                 "prune option 'depth' (layers to keep) must be >= 1 for granularity layers");
  CONDENSE_CHECK(criterion != Criterion::Entropy || prunes_heads(granularity) || prunes_neurons(granularity),
                 "criterion entropy ranks heads and neurons; granularity {} has no activations to rank",
                 to_string(granularity));
  CONDENSE_CHECK((criterion != Criterion::Movement && criterion != Criterion::SoftMovement) || schedule == Schedule::Cubic,
                 "criterion {} accumulates scores while fine-tuning; it needs schedule cubic", to_string(criterion));
  CONDENSE_CHECK(criterion != Criterion::SoftMovement || granularity == Granularity::Unstructured,
                 "criterion soft-movement thresholds single weights; it needs granularity unstructured, found {}",
                 to_string(granularity));
  CONDENSE_CHECK(soft_threshold > 0 && soft_threshold < 1, "prune option 'soft_threshold' must be in (0, 1), found {}",
                 soft_threshold);
  CONDENSE_CHECK(soft_lambda >= 0, "prune option 'soft_lambda' must be >= 0, found {}", soft_lambda);
  CONDENSE_CHECK(schedule != Schedule::Cubic || train.epochs >= 1,
                 "schedule cubic prunes while fine-tuning; it needs at least one epoch");
  CONDENSE_CHECK(granularity != Granularity::Layers || schedule == Schedule::OneShot,
                 "granularity layers is one-shot (choose the depth, then fine-tune)");
  CONDENSE_CHECK(final_epochs >= 0, "prune option 'final_epochs' must be >= 0, found {}", final_epochs);
  CONDENSE_CHECK(final_epochs == 0 || schedule != Schedule::Cubic,
                 "prune option 'final_epochs' follows the last pruning step; schedule cubic already ends at its "
                 "final sparsity (raise train.epochs instead)");
  CONDENSE_CHECK(!joint || (granularity == Granularity::HeadsNeurons && criterion == Criterion::Taylor),
                 "prune option 'joint' ranks heads against neurons by taylor scores; it needs granularity "
                 "heads+neurons and criterion taylor, found {} and {}",
                 to_string(granularity), to_string(criterion));
  // epochs 0 = prune without fine-tuning; otherwise the loop's own checks.
  CONDENSE_CHECK(train.epochs >= 0, "train option 'epochs' must be >= 0, found {}", train.epochs);
  if (train.epochs > 0 || final_epochs > 0) {
    auto t = train;
    if (t.epochs == 0) t.epochs = final_epochs;
    t.validate();
  }
}

std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> joint_unit_masks(
    const std::vector<torch::Tensor>& head_scores, const std::vector<torch::Tensor>& neuron_scores, int64_t head_weights,
    int64_t neuron_weights, double sparsity, const std::vector<torch::Tensor>& heads_now,
    const std::vector<torch::Tensor>& neurons_now) {
  CONDENSE_CHECK(head_scores.size() == neuron_scores.size(), "joint_unit_masks: {} layers of head scores, {} of neuron scores",
                 head_scores.size(), neuron_scores.size());
  CONDENSE_CHECK(head_weights > 0 && neuron_weights > 0, "joint_unit_masks: unit weights must be > 0");
  // Groups 0..L−1 are the layers' heads, L..2L−1 their neurons.
  const std::size_t L = head_scores.size();
  std::vector<Unit> units;
  std::vector<torch::Tensor> masks(2 * L);
  int64_t total = 0;
  for (std::size_t l = 0; l < L; ++l) {
    masks[l] = add_units(head_scores[l], heads_now.empty() ? nullptr : &heads_now[l], l, head_weights, true, units);
    masks[L + l] =
        add_units(neuron_scores[l], neurons_now.empty() ? nullptr : &neurons_now[l], L + l, neuron_weights, true, units);
    total += head_scores[l].numel() * head_weights + neuron_scores[l].numel() * neuron_weights;
  }
  remove_cheapest(std::move(units), masks, std::llround(sparsity * static_cast<double>(total)));
  return {std::vector<torch::Tensor>(masks.begin(), masks.begin() + static_cast<std::ptrdiff_t>(L)),
          std::vector<torch::Tensor>(masks.begin() + static_cast<std::ptrdiff_t>(L), masks.end())};
}

nn::BertClassifier clone(nn::BertClassifier& model) {
  nn::BertClassifier out(model->config());
  torch::NoGradGuard ng;
  auto src = model->named_parameters();
  for (auto& p : out->named_parameters()) p.value().copy_(src[p.key()]);
  auto bsrc = model->named_buffers();
  for (auto& b : out->named_buffers()) b.value().copy_(bsrc[b.key()]);
  out->active_layers = model->active_layers;
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> encoder_weights(nn::BertClassifier& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& d : encoder_denses(model)) out.emplace_back(d.name, d.dense->weight);
  return out;
}

std::map<std::string, torch::Tensor> unstructured_masks(const std::map<std::string, torch::Tensor>& scores,
                                                        double sparsity, bool global) {
  // Exactly the asked count is kept (top-k, not a threshold): movement scores start equal and
  // stay tied in large groups early on, and a threshold would prune every tie with it.
  auto keep_top = [](const torch::Tensor& flat, double s) {
    const int64_t n = flat.numel();
    const int64_t keep = n - static_cast<int64_t>(std::llround(s * static_cast<double>(n)));
    auto mask = torch::zeros({n});
    if (keep > 0) mask.index_fill_(0, std::get<1>(flat.topk(keep)), 1.0);
    return mask;
  };
  std::map<std::string, torch::Tensor> out;
  if (global) {
    std::vector<torch::Tensor> all;
    for (const auto& [n, s] : scores) all.push_back(s.reshape({-1}).to(torch::kFloat));
    auto mask = keep_top(torch::cat(all), sparsity);
    int64_t offset = 0;
    for (const auto& [n, s] : scores) {
      out[n] = mask.slice(0, offset, offset + s.numel()).view(s.sizes()).clone();
      offset += s.numel();
    }
  } else {
    for (const auto& [n, s] : scores) out[n] = keep_top(s.reshape({-1}).to(torch::kFloat), sparsity).view(s.sizes());
  }
  return out;
}

torch::Tensor nm_mask(const torch::Tensor& score, int64_t n, int64_t m) {
  CONDENSE_CHECK(score.dim() == 2 && score.size(1) % m == 0,
                 "N:M pruning needs a matrix whose input dimension ({}) is a multiple of m = {}",
                 score.dim() == 2 ? score.size(1) : -1, m);
  auto g = score.reshape({score.size(0), score.size(1) / m, m});
  auto top = std::get<1>(g.topk(n, -1));
  return torch::zeros_like(g, torch::kFloat).scatter_(-1, top, 1.0).reshape(score.sizes());
}

void apply_masks(nn::BertClassifier& model, const Masks& masks) {
  for (auto& d : encoder_denses(model)) {
    auto it = masks.weights.find(d.name);
    if (it != masks.weights.end()) d.dense->set_kernel(std::make_shared<MaskKernel>(it->second));
  }
  for (int64_t i = 0; i < model->config().num_hidden_layers; ++i) {
    auto l = model->layer(i);
    if (!masks.heads.empty()) l->attention->self->head_gate = masks.heads[i];
    if (!masks.neurons.empty()) l->intermediate->neuron_gate = masks.neurons[i];
  }
  model->active_layers = masks.keep_layers;
}

void clear_masks(nn::BertClassifier& model) {
  for (auto& d : encoder_denses(model)) {
    if (mask_kernel(d.dense)) d.dense->set_kernel(nullptr);
  }
  for (int64_t i = 0; i < model->config().num_hidden_layers; ++i) {
    model->layer(i)->attention->self->head_gate = torch::Tensor();
    model->layer(i)->intermediate->neuron_gate = torch::Tensor();
  }
  model->active_layers.clear();
}

void bake_masks(nn::BertClassifier& model, const Masks& masks) {
  torch::NoGradGuard ng;
  for (auto& d : encoder_denses(model)) {
    auto it = masks.weights.find(d.name);
    if (it != masks.weights.end()) d.dense->weight.mul_(it->second);
  }
  clear_masks(model);
}

nn::BertClassifier shrink(nn::BertClassifier& model, const Masks& masks) {
  const auto& c = model->config();
  std::vector<int64_t> layers = masks.keep_layers;
  if (layers.empty()) {
    layers.resize(static_cast<std::size_t>(c.num_hidden_layers));
    std::iota(layers.begin(), layers.end(), 0);
  }
  auto kept = [](const torch::Tensor& mask, int64_t n) {
    return mask.defined() ? mask.nonzero().squeeze(1) : torch::arange(n, torch::kLong);
  };
  nn::BertConfig nc = c;
  nc.num_hidden_layers = static_cast<int64_t>(layers.size());
  nc.layer_heads.clear();
  nc.layer_intermediate.clear();
  std::vector<torch::Tensor> head_idx, neuron_idx;
  for (int64_t li : layers) {
    auto h = kept(masks.heads.empty() ? torch::Tensor() : masks.heads[li], c.heads_at(li));
    auto w = kept(masks.neurons.empty() ? torch::Tensor() : masks.neurons[li], c.intermediate_at(li));
    CONDENSE_CHECK(h.numel() >= 1 && w.numel() >= 1, "layer {} would keep no heads or no FFN neurons", li);
    head_idx.push_back(h);
    neuron_idx.push_back(w);
    nc.layer_heads.push_back(h.numel());
    nc.layer_intermediate.push_back(w.numel());
  }
  // Uniform widths go back into the plain fields (a model Hugging Face's BERT holds without help).
  const auto& H = nc.layer_heads;
  if (std::all_of(H.begin(), H.end(), [&](int64_t v) { return v == c.num_attention_heads; })) nc.layer_heads.clear();
  const auto& W = nc.layer_intermediate;
  if (std::all_of(W.begin(), W.end(), [&](int64_t v) { return v == W.front(); })) {
    nc.intermediate_size = W.front();
    nc.layer_intermediate.clear();
  }
  nn::BertClassifier out(nc);
  torch::NoGradGuard ng;
  auto src = model->named_parameters();
  auto bsrc = model->named_buffers();
  const int64_t d = c.head_dim();
  for (std::size_t k = 0; k < layers.size(); ++k) {
    const std::string from = "bert.encoder.layer." + std::to_string(layers[k]) + ".";
    const std::string to = "bert.encoder.layer." + std::to_string(k) + ".";
    // Rows of q/k/v belonging to kept heads: head h owns rows h·d … h·d + d − 1.
    auto rows = (head_idx[k].unsqueeze(1) * d + torch::arange(d, torch::kLong).unsqueeze(0)).reshape({-1});
    auto dst = out->named_parameters();
    for (auto& p : dst) {
      if (p.key().rfind(to, 0) != 0) continue;
      const std::string rest = p.key().substr(to.size());
      auto s = src[from + rest];
      torch::Tensor v = s;
      if (rest.rfind("attention.self.", 0) == 0) {
        v = s.index_select(0, rows);
      } else if (rest == "attention.output.dense.weight") {
        v = s.index_select(1, rows);
      } else if (rest.rfind("intermediate.dense.", 0) == 0) {
        v = s.index_select(0, neuron_idx[k]);
      } else if (rest == "output.dense.weight") {
        v = s.index_select(1, neuron_idx[k]);
      }
      p.value().copy_(v);
    }
    for (auto& b : out->named_buffers()) {
      if (b.key().rfind(to, 0) == 0) b.value().copy_(bsrc[from + b.key().substr(to.size())]);
    }
  }
  for (auto& p : out->named_parameters()) {
    if (p.key().rfind("bert.encoder.", 0) != 0) p.value().copy_(src[p.key()]);
  }
  for (auto& b : out->named_buffers()) {
    if (b.key().rfind("bert.encoder.", 0) != 0) b.value().copy_(bsrc[b.key()]);
  }
  // Weight masks (unstructured pruning) carry over as zeros in the kept rows and columns.
  return out;
}

PruneResult prune(nn::BertClassifier& input, const train::EncodedDataset& data, const PruneOptions& o,
                  const train::LossFn& user_loss) {
  o.validate();
  check_prunable(input);
  PruneResult result;
  auto model = clone(input);
  clear_masks(model);
  result.params_before = model->num_parameters();
  result.encoder_weights_before = count_encoder_weights(model, false);
  const auto& c = model->config();
  const int64_t L = c.num_hidden_layers;

  const train::LossFn loss = user_loss ? user_loss : train::LossFn([](nn::BertClassifier& m, const train::Batch& b) {
    return train::task_loss(m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits, b);
  });
  const bool regularize = o.criterion == Criterion::L1 || o.criterion == Criterion::L2;
  bool shrink_on = regularize;
  auto denses = encoder_denses(model);
  // L1 (Han et al. 2015's sparsity-inducing variant) or L2 toward zero on the encoder's linear
  // weights, so that weights the task does not hold up become prunable. Applied decoupled from the
  // gradient, after each optimizer step, as AdamW applies weight decay (Loshchilov & Hutter 2019):
  // a penalty added to the loss is divided away by Adam's per-weight normalisation (added to the
  // loss at λ = 1e-6 and 1e-5, the l1 and l2 rows came out identical to each other to the last
  // digit of SST-2 accuracy: neither changed anything). L1 is the proximal step
  // w <- sign(w)·max(|w| - lr·λ, 0) (soft shrinkage), which sets weights exactly to zero; L2
  // scales every weight by 1 - lr·λ.
  auto shrink_toward_zero = [&](int64_t, double lr) {
    if (!shrink_on || o.regularization <= 0) return;
    torch::NoGradGuard ng;
    const double t = lr * o.regularization;
    for (auto& d : denses) {
      auto& w = d.dense->weight;
      if (o.criterion == Criterion::L1) {
        w.copy_(torch::softshrink(w, t));
      } else {
        w.mul_(1.0 - std::min(t, 1.0));
      }
    }
  };

  Masks masks;
  const bool wl = weight_level(o.granularity);
  // Weight-level pruning runs through mask kernels from the start (ones), so scores and the
  // straight-through gradient see the masked weights.
  if (wl) {
    for (auto& d : denses) masks.weights[d.name] = torch::ones_like(d.dense->weight);
    apply_masks(model, masks);
  }
  // Score batches only for the criteria that read data before or between fine-tuning runs.
  const bool scored = o.criterion == Criterion::Taylor || o.criterion == Criterion::Entropy ||
                      (o.granularity == Granularity::Layers && o.layer_select == "importance");
  const auto batches = scored ? score_batches(data, o.score_batches, o.train.batch_size, o.train.seed)
                              : std::vector<train::Batch>{};

  // Accumulators read by the gradient criteria while fine-tuning (cubic schedule).
  std::map<std::string, torch::Tensor> wacc;
  std::vector<torch::Tensor> hacc, nacc;
  Gates gates;
  const bool structured_units = prunes_heads(o.granularity) || prunes_neurons(o.granularity);
  const bool soft = o.criterion == Criterion::SoftMovement;
  const bool movement = o.criterion == Criterion::Movement || soft;
  const bool needs_grad_scores = o.criterion == Criterion::Taylor || movement;
  double soft_tau = 0, soft_lambda = 0;  // soft movement's threshold and λ at the current step

  // Movement scores as trained parameters: Adam (β 0.9 / 0.999) with the paper's score learning
  // rate 1e-2, scores starting at 0 (Sanh et al. 2020, appendix: mask_scores lr 1e-2).
  std::map<std::string, torch::Tensor> adam_m, adam_v, hmap, nmap;
  std::map<std::string, int64_t> adam_t;
  auto adam_step = [&](const std::string& key, const torch::Tensor& grad, std::map<std::string, torch::Tensor>& scores) {
    constexpr double kLr = 1e-2, kB1 = 0.9, kB2 = 0.999, kEps = 1e-8;
    auto& mm = adam_m[key];
    auto& vv = adam_v[key];
    auto& ss = scores[key];
    if (!mm.defined()) {
      mm = torch::zeros_like(grad);
      vv = torch::zeros_like(grad);
      ss = torch::zeros_like(grad);
    }
    const double t = static_cast<double>(++adam_t[key]);
    mm.mul_(kB1).add_(grad, 1 - kB1);
    vv.mul_(kB2).addcmul_(grad, grad, 1 - kB2);
    auto mhat = mm / (1 - std::pow(kB1, t));
    auto vhat = vv / (1 - std::pow(kB2, t));
    ss.sub_(kLr * mhat / (vhat.sqrt() + kEps));
  };
  auto accumulate = [&](double decay) {
    torch::NoGradGuard ng;
    if (wl) {
      for (auto& d : denses) {
        auto k = mask_kernel(d.dense);
        torch::Tensor g;
        if (movement) {
          if (!k->effective.defined() || !k->effective.grad().defined()) continue;
          // Sanh et al.: ∂L/∂S = ∂L/∂W' · W through the straight-through mask; the scores are
          // trained by Adam like the weights (ScoreAdam), so S grows for weights moving away from 0.
          g = k->effective.grad() * d.dense->weight;
          if (soft && soft_lambda > 0 && wacc.count(d.name)) {
            // + ∂/∂S of λ · mean over matrices of mean σ(S) (the paper's l1 regulariser of the
            // sigmoid scores, masked_run_glue.py's `regularization`).
            auto sg = torch::sigmoid(wacc[d.name]);
            g = g + (soft_lambda / static_cast<double>(denses.size() * sg.numel())) * sg * (1 - sg);
          }
          adam_step(d.name, g, wacc);
          if (soft) k->mask = (torch::sigmoid(wacc[d.name]) > soft_tau).to(torch::kFloat);
          continue;
        } else {
          if (!d.dense->weight.grad().defined()) continue;
          g = (d.dense->weight.grad() * d.dense->weight).pow(2);  // Molchanov et al. 2019
        }
        auto& a = wacc[d.name];
        if (!a.defined()) a = torch::zeros_like(g);
        a.mul_(decay).add_(g, 1 - decay);
      }
    }
    if (structured_units) {
      if (hacc.empty()) {
        for (int64_t i = 0; i < L; ++i) {
          hacc.push_back(torch::zeros({c.heads_at(i)}));
          nacc.push_back(torch::zeros({c.intermediate_at(i)}));
        }
      }
      for (int64_t i = 0; i < L; ++i) {
        auto gh = gates.heads[i].grad(), gn = gates.neurons[i].grad();
        if (!gh.defined()) continue;
        if (o.criterion == Criterion::Movement) {
          // Gate movement: ∂L/∂ξ for the unit's gate, scores trained by Adam as above.
          adam_step("heads." + std::to_string(i), gh, hmap);
          adam_step("neurons." + std::to_string(i), gn, nmap);
          hacc[i] = hmap["heads." + std::to_string(i)];
          nacc[i] = nmap["neurons." + std::to_string(i)];
        } else {
          hacc[i].mul_(decay).add_(gh.abs(), 1 - decay);  // Michel et al.: E |∂L/∂ξ|
          nacc[i].mul_(decay).add_(gn.abs(), 1 - decay);
        }
      }
      zero_gate_grads(gates);
    }
  };

  // A pass over the score batches accumulating gradient scores (taylor before pruning).
  auto score_pass = [&] {
    model->eval();
    wacc.clear();
    hacc.clear();
    nacc.clear();
    // The gates also collect gradients during the fine-tuning run before this pass; those are not
    // part of the estimate (and a resumed run would have collected fewer of them).
    zero_gate_grads(gates);
    double k = 0;
    for (const auto& b : batches) {
      model->zero_grad();
      loss(model, b).backward();
      // decay k/(k+1) makes the running value the plain mean over the pass.
      accumulate(k / (k + 1));
      k += 1;
    }
    model->zero_grad();
  };

  // Sets `masks` to sparsity s from the current scores.
  auto update_masks = [&](double s) {
    if (wl) {
      std::map<std::string, torch::Tensor> scores;
      for (auto& d : denses) {
        torch::Tensor sc;
        if (needs_grad_scores) {
          sc = wacc.count(d.name) ? wacc[d.name].clone() : d.dense->weight.detach().abs();
        } else {
          sc = d.dense->weight.detach().abs();
        }
        // Pruned weights stay pruned except under movement (its scores decide freely).
        if (!movement) sc = sc.masked_fill(masks.weights[d.name] == 0, -INFINITY);
        scores[d.name] = sc;
      }
      if (o.granularity == Granularity::NM) {
        for (auto& [n, sc] : scores) masks.weights[n] = nm_mask(sc, o.n, o.m);
      } else {
        masks.weights = unstructured_masks(scores, s, o.global);
      }
      for (auto& d : denses) mask_kernel(d.dense)->mask = masks.weights[d.name];
      return;
    }
    std::vector<torch::Tensor> hs, ns;
    if (o.criterion == Criterion::Entropy) {
      clear_masks(model);
      apply_masks(model, masks);
      unit_entropies(model, batches, hs, ns);
    } else if (needs_grad_scores) {
      hs = normalize_per_layer(hacc);
      ns = normalize_per_layer(nacc);
    } else {
      unit_magnitudes(model, hs, ns);
    }
    const bool monotone = o.criterion != Criterion::Movement;
    if (o.joint) {
      // Raw E|∂L/∂ξ| (a loss change, comparable between a head and a neuron), not normalised per layer.
      std::tie(masks.heads, masks.neurons) =
          joint_unit_masks(hacc, nacc, 4 * c.head_dim() * c.block_width(), 2 * c.block_width(), s, masks.heads,
                           masks.neurons);
    } else {
      if (prunes_heads(o.granularity)) masks.heads = unit_masks(hs, masks.heads, s, monotone);
      if (prunes_neurons(o.granularity)) masks.neurons = unit_masks(ns, masks.neurons, s, monotone);
    }
    if (needs_grad_scores || o.criterion == Criterion::Entropy) {
      gates = install_gates(model, masks);
    } else {
      apply_masks(model, masks);
    }
  };

  // Each fine-tuning run keeps its training state in its own folder (run1, run2, ... under
  // train.state_dir), so a resumed prune replays the finished runs from their final state and the
  // masks between them from the same weights, and continues the interrupted run where it stopped.
  // Not the cubic schedule: its masks and movement scores change inside the run, and a resumed
  // loop would not restore them, so it always runs from the start.
  const bool resumable = o.schedule != Schedule::Cubic && !o.train.state_dir.empty();
  int64_t runs = 0;
  auto fine_tune = [&](std::function<void(int64_t)> hook, int64_t epochs) {
    if (epochs < 1 || !result.finished) return;
    auto t = o.train;
    t.epochs = epochs;
    t.after_backward = hook;
    if (regularize) t.after_step = shrink_toward_zero;
    if (resumable) {
      t.state_dir = o.train.state_dir / ("run" + std::to_string(++runs));
    } else {
      t.state_dir.clear();
      t.save_every = 0;
      t.resume = false;
    }
    model->layerdrop = o.layerdrop;
    result.fine_tuning.push_back(train::train_loop(model, data, t, loss));
    model->layerdrop = 0;
    result.finished = result.fine_tuning.back().finished;
  };

  if (structured_units && (needs_grad_scores || o.criterion == Criterion::Entropy)) gates = install_gates(model, masks);

  if (o.granularity == Granularity::Layers) {
    std::vector<int64_t> keep;
    CONDENSE_CHECK(o.depth <= L, "prune option 'depth' ({}) exceeds the model's {} layers", o.depth, L);
    if (o.layer_select == "every-other") {
      for (int64_t i = 0; i < o.depth; ++i) keep.push_back(i * L / o.depth);
    } else {
      auto imp = layer_importance(model, batches, loss);
      std::vector<int64_t> order(static_cast<std::size_t>(L));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return imp[a] > imp[b]; });
      keep.assign(order.begin(), order.begin() + o.depth);
      std::sort(keep.begin(), keep.end());
    }
    masks.keep_layers = keep;
    apply_masks(model, masks);
    fine_tune({}, o.train.epochs);
  } else if (o.schedule == Schedule::Cubic) {
    // Zhu & Gupta 2017: s_t = s_f · (1 − (1 − (t − t_i)/(t_f − t_i))³) between 10 % and 70 % of the
    // run, masks refreshed every update_every steps, the last 30 % at the final sparsity.
    const int64_t total = static_cast<int64_t>((data.size() + o.train.batch_size - 1) / o.train.batch_size) *
                          o.train.epochs;
    const int64_t ti = total / 10, tf = std::max(ti + 1, total * 7 / 10);
    if (wl && movement) {
      for (auto& d : denses) mask_kernel(d.dense)->track = true;
    }
    // The cubic curve's value at a step: 0 before t_i, 1 from t_f on.
    auto cubic = [&](int64_t step) {
      const double frac =
          step < ti ? 0.0 : std::min(1.0, static_cast<double>(step - ti) / static_cast<double>(tf - ti));
      return 1 - std::pow(1 - frac, 3);
    };
    double current = 0;
    fine_tune([&](int64_t step) {
      if (soft) {
        // Soft movement: τ and λ rise together on the cubic curve (the paper's threshold schedule,
        // regu_lambda = final_lambda · τ / final τ); the masks follow the scores every step.
        soft_tau = o.soft_threshold * cubic(step);
        soft_lambda = o.soft_lambda * soft_tau / o.soft_threshold;
        accumulate(0.99);
        return;
      }
      if (needs_grad_scores) accumulate(0.99);
      if (step < ti) return;
      if ((step - ti) % o.update_every != 0 && step != tf) return;
      if (step > tf) return;
      const double s = o.sparsity * cubic(step);
      if (s <= current && step != tf) return;
      current = s;
      torch::NoGradGuard ng;
      update_masks(s);
    }, o.train.epochs);
    if (soft) {
      for (auto& d : denses) masks.weights[d.name] = mask_kernel(d.dense)->mask;
    } else if (current < o.sparsity) {
      update_masks(o.sparsity);  // runs too short to reach t_f
    }
  } else {
    const int64_t rounds = o.schedule == Schedule::Iterative ? o.steps : 1;
    if (regularize && o.schedule == Schedule::OneShot) {
      // L1/L2 one-shot: a regularised fine-tuning drives weights toward zero first.
      fine_tune({}, o.train.epochs);
      shrink_on = false;
    }
    for (int64_t r = 1; r <= rounds && result.finished; ++r) {
      if (needs_grad_scores) score_pass();
      update_masks(o.sparsity * static_cast<double>(r) / static_cast<double>(rounds));
      if (r == rounds) shrink_on = false;
      fine_tune({}, o.train.epochs);
    }
  }
  fine_tune({}, o.final_epochs);  // recovery at the final shape (0 for cubic: validate())
  if (!result.finished) {
    result.model = model;  // stopped by train.stop_after: masked, not shrunk
    return result;
  }

  // Finish: weight masks multiplied in; heads, neurons and layers removed physically.
  model->eval();
  result.masks = masks;
  if (wl) {
    bake_masks(model, masks);
    result.model = model;
  } else {
    for (auto& t : result.masks.heads) t = t.detach();
    for (auto& t : result.masks.neurons) t = t.detach();
    clear_masks(model);
    result.model = shrink(model, result.masks);
  }
  result.params_after = result.model->num_parameters();
  result.encoder_weights_after = count_encoder_weights(result.model, wl);
  return result;
}

}  // namespace condense::prune
