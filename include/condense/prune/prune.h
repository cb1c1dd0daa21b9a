#pragma once
/// \file
/// Pruning that ends in a smaller model: importance criteria, granularities, schedules, physical
/// shrinking of heads / FFN neurons / layers, and a sparse file format for unstructured sparsity.
///
/// Criteria (what a unit or weight is worth):
/// - magnitude: |w| (Han et al. 2015); for heads and neurons the RMS of the unit's weights.
/// - taylor: first-order Taylor estimate of the loss change (Molchanov et al. 2019): (g·w)² per
///   weight; for heads and neurons |∂L/∂ξ| of a gate ξ on the unit, which for heads is the head
///   importance of Michel et al. 2019 ("Are Sixteen Heads Really Better than One?").
/// - movement: scores S trained with ∂L/∂S = g·w while fine-tuning (Sanh et al. 2020, hard
///   movement: top-k of S through a straight-through mask, so pruned weights may come back; S
///   updated by Adam at the paper's score learning rate 1e-2); needs the cubic schedule.
/// - soft-movement: Sanh et al. 2020's soft variant: the same scores, the mask σ(S) > τ with τ
///   rising on the cubic schedule to `soft_threshold`, and a regulariser λ·mean σ(S) (λ rising to
///   `soft_lambda` with τ) that pulls every score down until the task's gradient holds it up. The
///   sparsity reached follows from λ and the length of the run, not from `sparsity`, and may differ
///   per matrix. Unstructured only.
/// - l1 / l2: fine-tune while shrinking the encoder weights toward zero after each step (proximal
///   L1 or multiplicative L2, decoupled from Adam), then rank by magnitude.
/// - entropy: entropy of a unit's activation histogram over data (Luo & Wu 2017): a unit whose
///   output barely varies carries little information. Heads and neurons only.
///
/// Granularity: unstructured (per-layer or global threshold), N:M (n kept of every m consecutive
/// input weights, 2:4 by default), attention heads, FFN neurons, heads and neurons together, whole
/// layers. Structured pruning always shrinks the model physically (see shrink()); unstructured
/// pruning keeps dense shapes — it saves storage through the sparse format (nn::save_sparse), not
/// latency, and metrics.json says so.
///
/// Schedules: one-shot (prune, then fine-tune), iterative (prune in `steps` equal steps with
/// fine-tuning after each), cubic (Zhu & Gupta 2017: sparsity s_f·(1 − (1 − t')³) over the middle of
/// one fine-tuning run, masks updated every `update_every` steps). Any of them can add a Hinton
/// distillation loss from the unpruned teacher (the caller's loss), and LayerDrop (Fan et al. 2020) while fine-tuning.

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "condense/nn/bert.h"
#include "condense/train/train.h"

namespace condense::prune {

enum class Criterion { Magnitude, Taylor, Movement, SoftMovement, L1, L2, Entropy };
enum class Granularity { Unstructured, NM, Heads, Neurons, HeadsNeurons, Layers };
enum class Schedule { OneShot, Iterative, Cubic };

Criterion parse_criterion(const std::string& name);
Granularity parse_granularity(const std::string& name);
Schedule parse_schedule(const std::string& name);
std::string to_string(Criterion c);
std::string to_string(Granularity g);
std::string to_string(Schedule s);

/// What is pruned. Structured masks are per encoder layer; an empty vector means "not pruned".
struct Masks {
  /// Unstructured / N:M: 0/1 masks of the encoder's linear weights, by parameter name.
  std::map<std::string, torch::Tensor> weights;
  /// Per layer [heads] and [intermediate] 0/1 masks.
  std::vector<torch::Tensor> heads, neurons;
  /// Encoder layers kept, in order (empty = all).
  std::vector<int64_t> keep_layers;
};

struct PruneOptions {
  Criterion criterion = Criterion::Magnitude;
  Granularity granularity = Granularity::Unstructured;
  /// Fraction removed: unstructured and N:M — of the encoder's linear weights; heads — of the
  /// attention weights; neurons — of the FFN weights; heads+neurons — of all encoder linear weights
  /// (the same fraction of the heads and of the neurons, or, with `joint`, whichever units are worth least
  /// per weight). Ignored for layers (see depth) and N:M (1 − n/m).
  double sparsity = 0.5;
  /// Unstructured: one threshold over all encoder weights instead of one per matrix.
  bool global = false;
  int64_t n = 2, m = 4;
  /// Layers: how many encoder layers to keep, chosen by `layer_select`.
  int64_t depth = 0;
  /// "importance" (the layers whose removal raises the loss least go first) or "every-other"
  /// (Fan et al. 2020's rule for LayerDrop models: keep layers evenly spaced).
  std::string layer_select = "importance";
  Schedule schedule = Schedule::OneShot;
  int64_t steps = 4;          ///< iterative: pruning steps, each followed by train.epochs of fine-tuning
  /// One-shot, iterative and layers: epochs of further fine-tuning at the final shape, after the
  /// last step's train.epochs (the recovery fine-tuning CoFi, Xia et al. 2022, runs after pruning
  /// with distillation). Lets a run spend little between steps and more on the model it keeps.
  int64_t final_epochs = 0;
  /// Heads+neurons with taylor: rank heads and neurons together, by Michel et al.'s estimate of the
  /// loss change when a unit's gate goes to 0 (E|∂L/∂ξ|, not normalised per layer) divided by the
  /// encoder weights the unit holds (a head 4·head_dim·width, a neuron 2·width), and remove the
  /// cheapest until `sparsity` of the weights is gone; so the split between attention and FFN, and
  /// between layers, follows the scores instead of half of each. See joint_unit_masks().
  bool joint = false;
  int64_t update_every = 50;  ///< cubic: optimizer steps between mask updates
  double regularization = 1.0;   ///< λ of the l1 / l2 criteria: each step shrinks by lr·λ (decoupled)
  /// soft-movement: final threshold on σ(S) and final λ of mean σ(S) (the paper's scripts: 0.1, and
  /// λ of a few hundred with distillation; a larger λ prunes more).
  double soft_threshold = 0.1;
  double soft_lambda = 400;
  int64_t score_batches = 32;    ///< batches used to estimate taylor / entropy / layer scores
  /// Fine-tuning (epochs = 0: prune without fine-tuning; cubic and movement need some).
  train::TrainOptions train = train::TrainOptions().with_epochs(1).with_learning_rate(3e-5);
  double layerdrop = 0;  ///< LayerDrop probability while fine-tuning

  PruneOptions& with_criterion(Criterion v) { criterion = v; return *this; }
  PruneOptions& with_granularity(Granularity v) { granularity = v; return *this; }
  PruneOptions& with_sparsity(double v) { sparsity = v; return *this; }
  PruneOptions& with_global(bool v = true) { global = v; return *this; }
  PruneOptions& with_nm(int64_t n_, int64_t m_) { n = n_; m = m_; return *this; }
  PruneOptions& with_depth(int64_t v) { depth = v; return *this; }
  PruneOptions& with_layer_select(std::string v) { layer_select = std::move(v); return *this; }
  PruneOptions& with_schedule(Schedule v) { schedule = v; return *this; }
  PruneOptions& with_steps(int64_t v) { steps = v; return *this; }
  PruneOptions& with_final_epochs(int64_t v) { final_epochs = v; return *this; }
  PruneOptions& with_joint(bool v = true) { joint = v; return *this; }
  PruneOptions& with_update_every(int64_t v) { update_every = v; return *this; }
  PruneOptions& with_regularization(double v) { regularization = v; return *this; }
  PruneOptions& with_soft_threshold(double v) { soft_threshold = v; return *this; }
  PruneOptions& with_soft_lambda(double v) { soft_lambda = v; return *this; }
  PruneOptions& with_score_batches(int64_t v) { score_batches = v; return *this; }
  PruneOptions& with_train(train::TrainOptions v) { train = std::move(v); return *this; }
  PruneOptions& with_layerdrop(double v) { layerdrop = v; return *this; }
  /// Throws condense::Error naming the first invalid field (and criterion/granularity clashes).
  void validate() const;
};

/// What prune() did.
struct PruneResult {
  Masks masks;
  nn::BertClassifier model{nullptr};  ///< the pruned model: shrunk when structured, masked-dense otherwise
  int64_t params_before = 0, params_after = 0;  ///< all parameters
  int64_t encoder_weights_before = 0, encoder_weights_after = 0;  ///< nonzero encoder linear weights
  std::vector<train::TrainResult> fine_tuning;
  /// false when train.stop_after interrupted a fine-tuning run: `model` is then the masked model
  /// at that point, and a call with train.resume continues from train.state_dir.
  bool finished = true;
};

/// Prunes a copy of `model` on `train` data. `loss` is the fine-tuning objective (empty = the task
/// loss); a caller distilling from the unpruned teacher passes its KD loss here. Gradient criteria
/// (taylor, movement, layer importance) read the same loss. With train.state_dir (and save_every),
/// the one-shot, iterative and layer schedules are resumable: each fine-tuning run keeps its state
/// in state_dir/runN, and with train.resume the call replays the finished runs and continues the
/// interrupted one, ending where an uninterrupted call would. The cubic schedule always starts over.
PruneResult prune(nn::BertClassifier& model, const train::EncodedDataset& train, const PruneOptions& options,
                  const train::LossFn& loss = {});

/// A deep copy (parameters and buffers) of a model.
nn::BertClassifier clone(nn::BertClassifier& model);

/// The encoder's linear weights pruning acts on, by parameter name (q, k, v, attention output,
/// intermediate, output of every layer).
std::vector<std::pair<std::string, torch::Tensor>> encoder_weights(nn::BertClassifier& model);

/// Masks keeping the `1 − sparsity` highest scores (per tensor, or with one global threshold).
std::map<std::string, torch::Tensor> unstructured_masks(const std::map<std::string, torch::Tensor>& scores,
                                                        double sparsity, bool global);
/// N:M masks: in each group of m consecutive entries along the input dimension keep the n best.
torch::Tensor nm_mask(const torch::Tensor& score, int64_t n, int64_t m);

/// Joint head and neuron masks (PruneOptions::joint): per layer, head scores [heads] and neuron
/// scores [intermediate] (loss change estimates, higher = more important) and the weights one head
/// and one neuron hold. Units are removed in ascending score / weights order until `sparsity` of
/// all their weights is removed, never more (a head that would overshoot is passed over for
/// smaller units); every layer keeps at least one head and one neuron. Units already 0 in
/// `heads_now` / `neurons_now` (empty = none) stay removed and count toward the target.
std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> joint_unit_masks(
    const std::vector<torch::Tensor>& head_scores, const std::vector<torch::Tensor>& neuron_scores, int64_t head_weights,
    int64_t neuron_weights, double sparsity, const std::vector<torch::Tensor>& heads_now = {},
    const std::vector<torch::Tensor>& neurons_now = {});

/// A new model without the masked heads, neurons and layers: linear layers rebuilt smaller, the
/// config recording per-layer heads and FFN widths. Its outputs equal the gated model's.
nn::BertClassifier shrink(nn::BertClassifier& model, const Masks& masks);

/// Installs the masks on `model` (gates on heads/neurons, masked kernels on weights); clear_masks
/// removes them, bake_masks multiplies the weight masks into the weights and removes them.
void apply_masks(nn::BertClassifier& model, const Masks& masks);
void clear_masks(nn::BertClassifier& model);
void bake_masks(nn::BertClassifier& model, const Masks& masks);

/// Unstructured results are saved with nn::save_sparse (nn/checkpoint.h): bitmap + values.

}  // namespace condense::prune
