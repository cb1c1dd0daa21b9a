#pragma once
/// \file
/// YAML recipes: a distillation run described in a file instead of flags.
///
/// ```yaml
/// task: sst2                      # optional
/// student: {layers: 3, init: teacher, init_layers: [0, 2, 4]}   # or hidden_size, num_attention_heads, intermediate_size, vocab
///          # or init_search: {candidates: [[0, 2, 4], [1, 3, 5]], held_out: 0.1} (distill::InitSearchOptions)
/// distill: {loss: kl, temperature: 2.0, alpha: 0.5, prediction_weight: 1.0,
///           layer_losses: [{loss: hidden_mse, weight: 1.0}, {loss: attention_mse, weight: 1.0}],
///           layer_map: {strategy: skip, every: 2, exclude_last: true}, shared_projection: true}
/// train:   {epochs: 3, batch_size: 32, learning_rate: 1.0e-4, warmup_ratio: 0.1, weight_decay: 0.01,
///           max_grad_norm: 1.0, seed: 42, max_length: 128, train_limit: 0, bf16: false}
/// augment: {method: tang, per_example: 20}   # optional transfer-set augmentation (tinybert: replace_prob, neighbours)
/// dualtrain: {mix_prob: 0.5, dual_weight: 1.0, shared_proj: up, proj_weight: 1.0}   # DualTrain + SharedProj
/// stages:                        # optional; each entry overrides distill/train for one stage
///   - {name: intermediate, distill: {prediction_weight: 0, layer_losses: [...]}, train: {epochs: 10}}
///   - {name: prediction, distill: {layer_losses: [], alpha: 1.0, temperature: 1.0}}
/// ```
/// Unknown keys are errors (a typo must not silently fall back to a default).

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "condense/distill/distill.h"
#include "condense/prune/prune.h"
#include "condense/quantize/quantize.h"

namespace condense::pipeline {

/// One stage of a multi-stage recipe: its options are the recipe's, overridden by the stage's own
/// `distill` and `train` keys (a stage's layer_losses list replaces the recipe's).
struct Stage {
  std::string name;
  distill::DistillOptions distill;
};

/// Transfer-set augmentation of the task's training set (distill/distill.h).
struct AugmentSpec {
  std::string method = "tinybert";  ///< tinybert (AugmentOptions) or tang (TangAugmentOptions)
  int64_t per_example = 0;          ///< 0 = no augmentation
  double replace_prob = 0.4;        ///< tinybert only
  int64_t neighbours = 15;          ///< tinybert only
};

/// A parsed recipe. Fields absent from the file keep the library defaults.
struct Recipe {
  std::optional<std::string> task;
  distill::StudentOptions student;
  distill::DistillOptions distill;
  /// Stages run in order on the same student (TinyBERT: intermediate layers, then predictions).
  /// Empty = one stage with `distill`.
  std::vector<Stage> stages;
  AugmentSpec augment;
  /// student.vocab: the student's own vocabulary, a piece count to learn from the training text or
  /// a vocab.txt (`--student-vocab` overrides; empty = the teacher's).
  std::string student_vocab;
  /// student.init_search: choose init_layers among candidates on held-out training examples.
  distill::InitSearchOptions init_search;
  /// DualTrain + SharedProj (distill.h); needs a student vocabulary of its own.
  std::optional<distill::DualTrainOptions> dualtrain;
  int max_length = 128;
  int64_t train_limit = 0;  ///< 0 = the whole training set
};

/// Reads a recipe; errors name the file and the key.
Recipe load_recipe(const std::filesystem::path& path);

/// A quantization recipe (`condense quantize --recipe`):
///
/// ```yaml
/// weights: {bits: 4, method: uniform, symmetric: false, granularity: group, group_size: 128}
/// embeddings: {bits: 8, method: uniform, symmetric: true, granularity: channel}   # or "none"
/// activations: {mode: static, symmetric: false, observer: minmax, percentile: 99.99, calib_batches: 16}
/// keep_float: [bert.encoder.layer.5.output.dense]
/// mixed_precision: {low: 2, high: 4, budget: 2.1}      # Hessian-guided bit widths (Q-BERT)
/// qat: {epochs: 1, learning_rate: 2.0e-5, alpha: 0.5, temperature: 2.0,    # with --teacher: KD
///       layer_losses: [{loss: hidden_mse, weight: 1}, {loss: attention_mse, weight: 1}]}
/// ```
struct QuantizeRecipe {
  quantize::QuantizeOptions options;
  struct Mixed { int low = 2, high = 4; double budget = 0; };
  std::optional<Mixed> mixed_precision;
  /// QAT; with a teacher, Hinton KD plus optional intermediate terms (TernaryBERT, Zhang et al.
  /// 2020: hidden states and attention scores of the quantized model fitted to the float one's),
  /// over the default uniform layer map.
  struct Qat {
    train::TrainOptions train;
    double alpha = 0.5, temperature = 2.0;
    std::vector<distill::LayerLossTerm> layer_losses;
  };
  std::optional<Qat> qat;
};
QuantizeRecipe load_quantize_recipe(const std::filesystem::path& path);

/// A pruning recipe (`condense prune --recipe`):
///
/// ```yaml
/// prune: {criterion: movement, granularity: unstructured, sparsity: 0.9, global: false,
///         schedule: cubic, update_every: 50, steps: 4, final_epochs: 0, joint: false, nm: "2:4", depth: 3,
///         layer_select: importance, regularization: 1.0e-5, score_batches: 32, layerdrop: 0,
///         soft_threshold: 0.1, soft_lambda: 400}                 # soft-movement only
/// train: {epochs: 3, learning_rate: 3.0e-5, batch_size: 32}   # fine-tuning while/after pruning
/// distill: {alpha: 0.5, temperature: 2.0,                      # with --teacher
///           layer_losses: [{loss: hidden_mse, weight: 1.0}]}    # layer i of the pruned model ← layer i of the teacher
/// ```
struct PruneRecipe {
  prune::PruneOptions options;
  double alpha = 0.5, temperature = 2.0;
  /// Layer-wise distillation while pruning (CoFi, Xia et al. 2022): hidden-state terms between each
  /// layer of the model being pruned and the same layer of the unpruned teacher.
  std::vector<distill::LayerLossTerm> layer_losses;
};
PruneRecipe load_prune_recipe(const std::filesystem::path& path);
/// Throws "<file>: field 'distill.layer_losses': ..." when the recipe's layer terms cannot serve its
/// granularity (layer pruning removes the layers they compare). The loader calls it; so does a
/// caller that overrides the granularity afterwards.
void check_layer_losses(const PruneRecipe& recipe, const std::string& file);

}  // namespace condense::pipeline
