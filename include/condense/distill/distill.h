#pragma once
/// \file
/// Knowledge distillation of a BERT teacher into a smaller BERT student.
///
/// Losses: Hinton et al. 2015 soft targets (KL at temperature T, scaled by T²) mixed with the
/// hard-label loss by a weight alpha, or Caruana-style logit MSE (Ba & Caruana 2014).
/// The teacher is run once over the training set and its logits are cached: with a fixed
/// training set its outputs never change, so a teacher forward per step would only cost time.
/// Students are built from flags or a recipe, initialised from chosen teacher layers
/// (DistilBERT, Sanh et al. 2019: every other layer) or from scratch.

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "condense/nn/bert.h"
#include "condense/train/train.h"

namespace condense::distill {

/// The soft part of the distillation loss.
enum class SoftLoss {
  KL,   ///< KL(teacher_T || student_T) · T² (Hinton et al. 2015)
  MSE,  ///< mean squared error between raw logits (Ba & Caruana 2014)
};

/// Parses "kl" / "mse"; throws naming the value otherwise.
SoftLoss parse_soft_loss(const std::string& name);

/// How the distillation loss is formed.
struct DistillOptions {
  SoftLoss soft_loss = SoftLoss::KL;
  double temperature = 2.0;  ///< softens both distributions; only used by KL
  double alpha = 0.5;        ///< loss = alpha · soft + (1 − alpha) · hard-label loss
  /// Run the teacher once and reuse its logits (default). false runs the teacher on every batch,
  /// which only data augmentation needs; it exists to measure what caching saves.
  bool cache_teacher = true;
  train::TrainOptions train; ///< the optimisation loop

  DistillOptions& with_soft_loss(SoftLoss v) { soft_loss = v; return *this; }
  DistillOptions& with_temperature(double v) { temperature = v; return *this; }
  DistillOptions& with_alpha(double v) { alpha = v; return *this; }
  DistillOptions& with_cache_teacher(bool v) { cache_teacher = v; return *this; }
  DistillOptions& with_train(train::TrainOptions v) { train = std::move(v); return *this; }
  void validate() const;
};

/// Soft-target loss, batch mean: T² · Σ p_t · (log p_t − log p_s) with p = softmax(logits / T).
/// For regression heads (one output) it is the MSE between outputs, whatever the choice.
torch::Tensor soft_target_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                               double temperature);

/// Mean squared error between logits.
torch::Tensor logit_mse_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits);

/// alpha · soft + (1 − alpha) · hard (cross-entropy or MSE against the labels).
torch::Tensor distillation_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                                const train::Batch& batch, const DistillOptions& options);

/// The student's shape and initialisation. Unset sizes are taken from the teacher.
struct StudentOptions {
  int64_t layers = 3;
  std::optional<int64_t> hidden_size, num_attention_heads, intermediate_size;
  /// "teacher": copy embeddings, pooler, head and the layers in init_layers from the teacher
  /// (widths must equal the teacher's); "scratch": Hugging Face random initialisation.
  std::string init = "teacher";
  /// Teacher layer copied into each student layer; empty = every k-th layer starting at 0,
  /// k = teacher_layers / student_layers (DistilBERT's "one out of two").
  std::vector<int64_t> init_layers;

  StudentOptions& with_layers(int64_t v) { layers = v; return *this; }
  StudentOptions& with_hidden_size(int64_t v) { hidden_size = v; return *this; }
  StudentOptions& with_num_attention_heads(int64_t v) { num_attention_heads = v; return *this; }
  StudentOptions& with_intermediate_size(int64_t v) { intermediate_size = v; return *this; }
  StudentOptions& with_init(std::string v) { init = std::move(v); return *this; }
  StudentOptions& with_init_layers(std::vector<int64_t> v) { init_layers = std::move(v); return *this; }
};

/// The teacher layers a student would be initialised from (resolves the default).
std::vector<int64_t> resolve_init_layers(const StudentOptions& s, int64_t teacher_layers);

/// Builds the student; throws naming the field when the shape or layer map is invalid.
nn::BertClassifier make_student(nn::BertClassifier& teacher, const StudentOptions& s, uint64_t seed);

/// Distils `teacher` into `student` on `train_set`. `teacher_logits` is the cache
/// ([N, num_labels], dataset order); compute it with train::predict_logits or pass an empty
/// tensor to have it computed here (ignored when options.cache_teacher is false).
train::TrainResult distill(nn::BertClassifier& student, nn::BertClassifier& teacher,
                           const train::EncodedDataset& train_set, const DistillOptions& options,
                           torch::Tensor teacher_logits = {});

}  // namespace condense::distill
