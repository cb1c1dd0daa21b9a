#pragma once
/// \file
/// Fine-tuning: tokenized datasets, dynamically padded batches, the AdamW training loop with
/// linear warm-up and decay, resumable training state, and GLUE evaluation.
///
/// The loop is shared by every stage that trains (fine-tuning, distillation, later QAT and
/// pruning with fine-tuning): a stage supplies only its loss function.

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "condense/data/glue.h"
#include "condense/nn/bert.h"
#include "condense/nn/textnet.h"
#include "condense/text/tokenizer.h"

namespace condense::train {

/// A GLUE dataset after tokenization; row i of every field is example i.
struct EncodedDataset {
  data::Task task = data::Task::SST2;
  std::vector<std::vector<int64_t>> input_ids;
  std::vector<std::vector<int64_t>> token_type_ids;
  std::vector<int64_t> labels;
  std::vector<float> scores;
  int64_t pad_id = 0;

  std::size_t size() const { return input_ids.size(); }
  std::vector<std::size_t> lengths() const;
};

/// Tokenizes every example ([CLS] a [SEP] (b [SEP]), truncated to max_length).
EncodedDataset encode(const data::Dataset& d, const text::WordPieceTokenizer& tokenizer, int max_length = 128);

/// One padded batch: int64 [batch, longest] ids, segment ids and mask (1 = token), int64 labels,
/// float scores (STS-B) and the example indices (for cached teacher outputs).
struct Batch {
  torch::Tensor input_ids, token_type_ids, attention_mask, labels, scores, indices;
  /// Position in the run (set by train_loop), for losses whose weights follow a schedule.
  int64_t step = 0, total_steps = 0;
  int64_t size() const { return input_ids.size(0); }
};

/// Pads the chosen examples to the longest among them (dynamic padding).
Batch make_batch(const EncodedDataset& d, const std::vector<std::size_t>& indices);

/// Cross-entropy for classification, mean squared error against the score for regression.
torch::Tensor task_loss(const torch::Tensor& logits, const Batch& batch);

/// What the loop reports to a progress display after each step.
struct Progress {
  int64_t step = 0, total_steps = 0, epoch = 0;
  double loss = 0;              ///< running mean over the last 50 steps
  double examples_per_second = 0;
  double eta_seconds = 0;
  double learning_rate = 0;
};

/// Options of the training loop. Defaults follow BERT fine-tuning (Devlin et al. 2019).
struct TrainOptions {
  int64_t epochs = 3;              ///< passes over the training data
  int64_t batch_size = 32;
  double learning_rate = 5e-5;     ///< peak learning rate after warm-up
  double warmup_ratio = 0.1;       ///< fraction of steps with linear warm-up from 0
  double weight_decay = 0.01;      ///< AdamW decay, not applied to biases and LayerNorm
  double max_grad_norm = 1.0;      ///< global gradient-norm clip; <= 0 disables
  uint64_t seed = 42;              ///< batch order, dropout and fresh weights
  int64_t save_every = 0;          ///< steps between training-state saves; 0 = never
  std::filesystem::path state_dir; ///< where training state goes (required when save_every > 0)
  bool resume = false;             ///< continue from state_dir/train_state.pt when present
  int64_t stop_after = -1;         ///< stop after this many steps (testing interruptions); -1 = run to the end
  /// Mixed precision: the forward pass under bf16 autocast (products in bf16, as
  /// torch.autocast("cpu", torch.bfloat16)); weights, gradients, optimizer state and the loss
  /// stay fp32. Pays on CPUs with AVX-512 BF16 or AMX; elsewhere bf16 is emulated and slower.
  bool bf16 = false;
  std::function<void(const Progress&)> on_progress;  ///< called after every step
  /// Called before each step's forward pass with the step index and the run's total steps (also
  /// on the first step after a resume): settings that follow the step, such as
  /// DistillOptions::norm_fade's LayerNorm share.
  std::function<void(int64_t step, int64_t total_steps)> before_step;
  /// Called after backward and clipping, before the optimizer step, with the step index: stages
  /// that read gradients (pruning importance, movement scores) accumulate them here.
  std::function<void(int64_t step)> after_backward;
  /// Called after each optimizer step with the step's learning rate: decoupled (proximal) updates
  /// of the weights, such as pruning's L1/L2 shrinkage toward zero.
  std::function<void(int64_t step, double lr)> after_step;

  TrainOptions& with_epochs(int64_t v) { epochs = v; return *this; }
  TrainOptions& with_batch_size(int64_t v) { batch_size = v; return *this; }
  TrainOptions& with_learning_rate(double v) { learning_rate = v; return *this; }
  TrainOptions& with_warmup_ratio(double v) { warmup_ratio = v; return *this; }
  TrainOptions& with_weight_decay(double v) { weight_decay = v; return *this; }
  TrainOptions& with_max_grad_norm(double v) { max_grad_norm = v; return *this; }
  TrainOptions& with_seed(uint64_t v) { seed = v; return *this; }
  TrainOptions& with_save_every(int64_t v) { save_every = v; return *this; }
  TrainOptions& with_state_dir(std::filesystem::path v) { state_dir = std::move(v); return *this; }
  TrainOptions& with_resume(bool v = true) { resume = v; return *this; }
  TrainOptions& with_stop_after(int64_t v) { stop_after = v; return *this; }
  TrainOptions& with_bf16(bool v = true) { bf16 = v; return *this; }
  /// Throws condense::Error naming the first invalid field.
  void validate() const;
};

/// What a training run did.
struct TrainResult {
  int64_t steps = 0;              ///< optimizer steps taken in total (including before a resume)
  int64_t resumed_from = 0;       ///< step the run resumed at (0 = fresh)
  double mean_loss_last_epoch = 0;
  double examples_per_second = 0; ///< training throughput of this process
  double seconds = 0;
  bool finished = true;           ///< false when stop_after cut the run short
};

/// Computes the loss of one batch; the model is in training mode.
using LossFn = std::function<torch::Tensor(nn::BertClassifier& model, const Batch& batch)>;
/// The same for any module: the function closes over the model it trains.
using BatchLossFn = std::function<torch::Tensor(const Batch& batch)>;
/// A model's logits [batch, num_labels] for one batch.
using BatchForwardFn = std::function<torch::Tensor(const Batch& batch)>;

/// The shared loop: AdamW, linear warm-up and decay, clipping, NaN check, state saves, resume.
/// `aux` (may be null) holds extra trainable modules the loss uses, such as the projections of
/// intermediate-layer distillation: their parameters join the optimizer, the gradient clip and the
/// training state, but not the model.
TrainResult train_loop(nn::BertClassifier& model, const EncodedDataset& train, const TrainOptions& options,
                       const LossFn& loss, std::shared_ptr<torch::nn::Module> aux = nullptr);
/// The loop for any module (BiLSTM and CNN students); the BERT overload forwards here.
TrainResult train_loop(torch::nn::Module& model, const EncodedDataset& train, const TrainOptions& options,
                       const BatchLossFn& loss, std::shared_ptr<torch::nn::Module> aux = nullptr);

/// Fine-tunes on the task's own labels (cross-entropy or MSE).
TrainResult finetune(nn::BertClassifier& model, const EncodedDataset& train, const TrainOptions& options);

/// Predictions and GLUE metrics on a dataset.
struct EvalResult {
  std::map<std::string, double> metrics;  ///< as eval::glue_metrics, "main" included
  torch::Tensor logits;                   ///< [N, num_labels] in dataset order
  double examples_per_second = 0;
};

/// Runs the model in eval mode over `d` (length-sorted batches) and scores it against `gold`.
EvalResult evaluate(nn::BertClassifier& model, const EncodedDataset& d, const data::Dataset& gold,
                    int64_t batch_size = 64);
EvalResult evaluate(nn::TextNetClassifier& model, const EncodedDataset& d, const data::Dataset& gold,
                    int64_t batch_size = 64);

/// Logits for every example of `d`, in dataset order, computed once in eval mode without gradients.
torch::Tensor predict_logits(nn::BertClassifier& model, const EncodedDataset& d, int64_t batch_size = 64);
torch::Tensor predict_logits(nn::TextNetClassifier& model, const EncodedDataset& d, int64_t batch_size = 64);
/// The same for any module, given how it computes a batch's logits.
torch::Tensor predict_logits(torch::nn::Module& model, const BatchForwardFn& forward, int64_t num_labels,
                             const EncodedDataset& d, int64_t batch_size = 64);

}  // namespace condense::train
