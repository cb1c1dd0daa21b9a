#pragma once
/// \file
/// Knowledge distillation of a BERT teacher into a smaller BERT student.
///
/// Losses: Hinton et al. 2015 soft targets (KL at temperature T, scaled by T²) mixed with the
/// hard-label loss by a weight alpha, or Caruana-style logit MSE (Ba & Caruana 2014); plus weighted
/// intermediate-layer terms (hidden-state MSE/cosine, attention MSE/KL, embedding MSE, PKD [CLS])
/// over a layer map, with learned projections when student and teacher widths differ.
/// The teacher is run once over the training set and its logits are cached: with a fixed
/// training set its outputs never change, so a teacher forward per step would only cost time.
/// Students are built from flags or a recipe, initialised from chosen teacher layers
/// (DistilBERT, Sanh et al. 2019: every other layer) or from scratch.

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "condense/nn/bert.h"
#include "condense/nn/textnet.h"
#include "condense/train/train.h"

namespace condense::distill {

/// The soft part of the distillation loss.
enum class SoftLoss {
  KL,   ///< KL(teacher_T || student_T) · T² (Hinton et al. 2015)
  MSE,  ///< mean squared error between raw logits (Ba & Caruana 2014)
};

/// Parses "kl" / "mse"; throws naming the value otherwise.
SoftLoss parse_soft_loss(const std::string& name);

/// Losses between intermediate representations of student and teacher. Each is summed over the
/// mapped layer pairs and averaged over real (non-padding) tokens.
enum class LayerLoss {
  HiddenMSE,     ///< ‖H_s W − H_t‖² per token (TinyBERT, Jiao et al. 2020); W learned when widths differ
  HiddenCosine,  ///< 1 − cos(H_s W, H_t) per token (DistilBERT, Sanh et al. 2019)
  AttentionMSE,  ///< MSE of pre-softmax attention scores per head (TinyBERT); heads must match
  AttentionKL,   ///< KL(A_t ‖ A_s) of attention rows per head (MiniLM, Wang et al. 2020)
  EmbeddingMSE,  ///< ‖E_s W_e − E_t‖² of the embedding-layer outputs (TinyBERT)
  PkdCls,        ///< ‖h_s/‖h_s‖ − h_t/‖h_t‖‖² of the [CLS] state (Patient KD, Sun et al. 2019)
};

/// Parses hidden_mse, hidden_cosine, attention_mse, attention_kl, embedding_mse, pkd_cls.
LayerLoss parse_layer_loss(const std::string& name);
std::string to_string(LayerLoss loss);

/// One weighted term of the intermediate objective.
struct LayerLossTerm {
  LayerLoss loss = LayerLoss::HiddenMSE;
  double weight = 1.0;
  /// When set, the weight moves linearly from `weight` (first step) to this (last step), e.g. to
  /// hand the intermediate terms' share over to the prediction loss as training goes on.
  std::optional<double> weight_end;
};

/// The terms with the weights of a batch's step (the fixed weights when no schedule is set).
std::vector<LayerLossTerm> layer_terms_at(const std::vector<LayerLossTerm>& terms, const train::Batch& batch);

/// Which teacher layer each student layer learns from. Layers are numbered from 1 (layer 0 is the
/// embedding output, matched only by EmbeddingMSE).
struct LayerMapOptions {
  /// uniform: student i ← teacher ⌊i·N/M⌋ (TinyBERT's g(m) = m·N/M); skip: i ← i·k (PKD-skip);
  /// last: i ← N − M + i (PKD-last); final: only M ← N (DistilBERT's output cosine);
  /// explicit: i ← teacher_layers[i − 1].
  std::string strategy = "uniform";
  int64_t every = 0;                   ///< skip's k; 0 = N / M
  std::vector<int64_t> teacher_layers; ///< explicit map, one entry per mapped student layer
  /// Leave the student's last layer out (PKD: the prediction loss already covers it).
  bool exclude_last = false;

  LayerMapOptions& with_strategy(std::string v) { strategy = std::move(v); return *this; }
  LayerMapOptions& with_every(int64_t v) { every = v; return *this; }
  LayerMapOptions& with_teacher_layers(std::vector<int64_t> v) { teacher_layers = std::move(v); return *this; }
  LayerMapOptions& with_exclude_last(bool v = true) { exclude_last = v; return *this; }
};

/// A student layer and the teacher layer it learns from (1-based).
struct LayerPair {
  int64_t student = 0, teacher = 0;
  bool operator==(const LayerPair&) const = default;
};

/// Resolves a map for a student of `student_layers` and a teacher of `teacher_layers`; throws a
/// message naming the field ('layer_map.every', 'layer_map.teacher_layers', ...) when it cannot hold.
std::vector<LayerPair> resolve_layer_map(const LayerMapOptions& map, int64_t student_layers, int64_t teacher_layers);

/// How the distillation loss is formed:
///   prediction_weight · (alpha · soft + (1 − alpha) · hard) + Σ_j weight_j · layer_loss_j.
struct DistillOptions {
  SoftLoss soft_loss = SoftLoss::KL;
  double temperature = 2.0;  ///< softens both distributions; only used by KL
  double alpha = 0.5;        ///< loss = alpha · soft + (1 − alpha) · hard-label loss
  /// Weight of the prediction-layer part; TinyBERT's intermediate stage sets it to 0.
  double prediction_weight = 1.0;
  /// Schedules: when set, temperature and alpha move linearly from the values above (first step)
  /// to these (last step), e.g. annealing T from 4 to 1 (Jafari et al. 2021, Annealing KD) or
  /// shifting weight from the teacher to the labels as training goes on.
  std::optional<double> temperature_end, alpha_end;
  std::vector<LayerLossTerm> layer_losses;  ///< intermediate terms; empty = logits only
  LayerMapOptions layer_map;                ///< layers the hidden/attention terms compare
  /// One projection for every layer (TinyBERT's W_h) instead of one per mapped layer.
  bool shared_projection = true;
  /// The teacher channels the student's hidden channels were taken from (init "teacher-slice":
  /// inherited_hidden_channels). The projections then start as that embedding (W[c_i][i] = 1)
  /// rather than at random, so the layer losses of an inherited student start from what the
  /// dropped channels miss instead of from noise that would pull its weights away from the
  /// teacher's. Empty: random projections (TinyBERT).
  std::vector<int64_t> projection_channels;
  /// MobileBERT's progressive knowledge transfer (Sun et al. 2020): the layer terms are learned
  /// one mapped student layer at a time, bottom up, each for train.epochs, with every other
  /// parameter of the student frozen, so a layer is fitted to the teacher's on top of lower
  /// layers that already match theirs. Needs layer_losses and prediction_weight 0.
  bool progressive = false;
  /// Masked-LM terms on unlabelled text (DistilBERT's triple loss, Sanh et al. 2019): the input is
  /// masked as in BERT pre-training (mask_prob of the real tokens), the student's MLM head is
  /// trained on the original tokens (mlm_weight, L_mlm) and on the teacher's MLM distribution at
  /// `temperature` (mlm_distill_weight, L_ce; needs a teacher with an MLM head). Both need an
  /// MlmSetup passed to distill().
  double mlm_weight = 0;
  double mlm_distill_weight = 0;
  double mask_prob = 0.15;
  /// Run the teacher once and reuse its outputs (default): its logits, and with layer losses also
  /// the hidden states and attention maps those terms read, when they fit in teacher_cache_mb
  /// (see caches_teacher_layers). false runs the teacher on every batch; it exists to measure what
  /// caching saves.
  bool cache_teacher = true;
  /// Memory the per-example layer outputs may take, in MiB (MRPC with TinyBERT's terms: ~3.4 GiB).
  /// Larger sets (augmented data, general distillation on a corpus) run the teacher on every batch.
  int64_t teacher_cache_mb = 6144;
  /// Gradual hand-over from the teacher's LayerNorm to a student's other normalisation (nonorm,
  /// batchnorm; the nonorm of weightnorm and cosinenorm): over the first norm_fade of the steps,
  /// each of the student's norms outputs γ ⊙ (s · LN(x) + (1 − s) · N(x)) + β with s falling
  /// linearly from 1 to 0 (NormImpl::set_layernorm_share), after Heimersheim 2024, who removes
  /// GPT-2's LayerNorms by fine-tuning. Swapping them all at once makes a student started from
  /// LayerNorm weights a different function (experiments/nonorm_fold_check.py). 0 = no fade.
  double norm_fade = 0;
  train::TrainOptions train; ///< the optimisation loop

  DistillOptions& with_soft_loss(SoftLoss v) { soft_loss = v; return *this; }
  DistillOptions& with_projection_channels(std::vector<int64_t> v) { projection_channels = std::move(v); return *this; }
  DistillOptions& with_temperature(double v) { temperature = v; return *this; }
  DistillOptions& with_alpha(double v) { alpha = v; return *this; }
  DistillOptions& with_cache_teacher(bool v) { cache_teacher = v; return *this; }
  DistillOptions& with_teacher_cache_mb(int64_t v) { teacher_cache_mb = v; return *this; }
  DistillOptions& with_prediction_weight(double v) { prediction_weight = v; return *this; }
  DistillOptions& with_temperature_end(double v) { temperature_end = v; return *this; }
  DistillOptions& with_alpha_end(double v) { alpha_end = v; return *this; }
  /// Temperature and alpha at a batch's step (the fixed values when no schedule is set).
  double temperature_at(const train::Batch& batch) const;
  double alpha_at(const train::Batch& batch) const;
  /// Whether any step gives the soft targets weight (alpha or alpha_end above 0).
  bool uses_soft_targets() const { return alpha > 0 || alpha_end.value_or(0) > 0; }
  DistillOptions& with_layer_losses(std::vector<LayerLossTerm> v) { layer_losses = std::move(v); return *this; }
  DistillOptions& with_layer_map(LayerMapOptions v) { layer_map = std::move(v); return *this; }
  DistillOptions& with_shared_projection(bool v) { shared_projection = v; return *this; }
  DistillOptions& with_progressive(bool v = true) { progressive = v; return *this; }
  DistillOptions& with_norm_fade(double v) { norm_fade = v; return *this; }
  DistillOptions& with_mlm_weight(double v) { mlm_weight = v; return *this; }
  DistillOptions& with_mlm_distill_weight(double v) { mlm_distill_weight = v; return *this; }
  DistillOptions& with_mask_prob(double v) { mask_prob = v; return *this; }
  bool uses_mlm() const { return mlm_weight > 0 || mlm_distill_weight > 0; }
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

/// Soft targets of several teachers in one logits tensor: T · log Σ_i w_i softmax(t_i / T), whose
/// softened distribution is the weighted mean of the teachers' (multi-teacher distillation, the
/// ensemble case of Hinton et al. 2015), so every loss above works on it unchanged. For logit MSE
/// and regression heads it is the weighted mean of the raw outputs. Weights are normalised to sum
/// to 1; empty weights mean equal ones.
torch::Tensor combine_teacher_logits(const std::vector<torch::Tensor>& logits, std::vector<double> weights,
                                     const DistillOptions& options);

/// TinyBERT's data augmentation (Jiao et al. 2020, Algorithm 1), with neighbours taken from the
/// teacher's word-embedding space: every example gets `per_example` variants in which each word
/// that is a single whole-word piece is replaced, with probability `replace_prob`, by one of its
/// `neighbours` nearest whole-word pieces (cosine similarity of the embedding rows). Words of
/// several pieces, punctuation and numbers stay. (TinyBERT asks BERT's MLM head for single-piece
/// words and GloVe for the rest; a fine-tuned classifier has no MLM head, its embeddings are what
/// the teacher itself considers similar.) Labels are copied, so augmented runs should learn from
/// the teacher's soft targets (alpha = 1).
struct AugmentOptions {
  int64_t per_example = 20;
  double replace_prob = 0.4;
  int64_t neighbours = 15;
  uint64_t seed = 42;

  AugmentOptions& with_per_example(int64_t v) { per_example = v; return *this; }
  AugmentOptions& with_replace_prob(double v) { replace_prob = v; return *this; }
  AugmentOptions& with_neighbours(int64_t v) { neighbours = v; return *this; }
  AugmentOptions& with_seed(uint64_t v) { seed = v; return *this; }
};

/// The examples of `d` followed by their variants (example i's variants are contiguous), so the
/// result has (1 + per_example) · |d| examples. Deterministic for a seed.
data::Dataset augment_dataset(const data::Dataset& d, const text::WordPieceTokenizer& tokenizer,
                              const torch::Tensor& word_embeddings, const AugmentOptions& options);

/// Tang et al. 2019's transfer-set augmentation for cross-architecture students: for each variant,
/// every word is replaced by [MASK] with probability mask_prob, else by a random word of the
/// training text with probability swap_prob (Tang et al. draw a word of the same part of speech;
/// condense has no tagger and draws from the text's word frequencies), and then, with probability
/// ngram_prob, only a random n-gram (n uniform in 1..max_ngram) is kept. n-gram sampling applies to
/// single-sentence tasks only: half of a pair would no longer match its label. Variants equal to
/// the original or to an earlier variant are dropped, so an example gets up to per_example. The
/// labels are copied but meaningless: the teacher labels the transfer set (alpha = 1).
struct TangAugmentOptions {
  int64_t per_example = 20;
  double mask_prob = 0.1;
  double swap_prob = 0.1;
  double ngram_prob = 0.25;
  int64_t max_ngram = 5;
  uint64_t seed = 42;

  TangAugmentOptions& with_per_example(int64_t v) { per_example = v; return *this; }
  TangAugmentOptions& with_mask_prob(double v) { mask_prob = v; return *this; }
  TangAugmentOptions& with_swap_prob(double v) { swap_prob = v; return *this; }
  TangAugmentOptions& with_ngram_prob(double v) { ngram_prob = v; return *this; }
  TangAugmentOptions& with_max_ngram(int64_t v) { max_ngram = v; return *this; }
  TangAugmentOptions& with_seed(uint64_t v) { seed = v; return *this; }
};

/// The examples of `d` followed by their variants (example i's contiguous). Deterministic for a seed.
data::Dataset tang_augment_dataset(const data::Dataset& d, const TangAugmentOptions& options);

/// Layer-loss primitives. `mask` is the [batch, seq] attention mask (1 = token); padding never
/// contributes. Student tensors must already be projected to the teacher's width.
/// Σ over real tokens of ‖s − t‖² / (tokens · width).
torch::Tensor hidden_mse_loss(const torch::Tensor& s, const torch::Tensor& t, const torch::Tensor& mask);
/// Mean over real tokens of 1 − cos(s, t).
torch::Tensor hidden_cosine_loss(const torch::Tensor& s, const torch::Tensor& t, const torch::Tensor& mask);
/// Mean squared difference of [batch, heads, seq, seq] scores over real (query, key) pairs.
torch::Tensor attention_mse_loss(const torch::Tensor& s, const torch::Tensor& t, const torch::Tensor& mask);
/// Mean over heads and real query rows of KL(t_row ‖ s_row) between attention probabilities.
torch::Tensor attention_kl_loss(const torch::Tensor& s_probs, const torch::Tensor& t_probs, const torch::Tensor& mask);
/// Batch mean of ‖s/‖s‖ − t/‖t‖‖² for [batch, width] [CLS] states.
torch::Tensor pkd_cls_loss(const torch::Tensor& s_cls, const torch::Tensor& t_cls);

/// Learned linear maps from the student's width to the teacher's (TinyBERT's W_h, W_e). Slot 0 is
/// the embedding output, slot i student layer i. Identity (no parameters) when the widths agree.
class FeatureProjectionImpl : public torch::nn::Module {
 public:
  FeatureProjectionImpl(int64_t student_width, int64_t teacher_width, int64_t student_layers, bool shared);
  torch::Tensor forward(const torch::Tensor& x, int64_t slot);
  bool identity() const { return maps_.empty(); }
  /// Every map becomes the embedding of student channel i into teacher channel channels[i].
  void start_as_embedding(const std::vector<int64_t>& channels);

 private:
  std::vector<torch::nn::Linear> maps_;
};
TORCH_MODULE(FeatureProjection);

/// The intermediate part of the objective for one batch: Σ weight · loss over the resolved pairs.
/// `student`/`teacher` must hold hidden states (and attention scores/probabilities when the terms
/// need them); `proj` maps student widths to teacher widths.
torch::Tensor layer_objective(const nn::BertOutput& student, const nn::BertOutput& teacher,
                              const torch::Tensor& mask, const std::vector<LayerLossTerm>& terms,
                              const std::vector<LayerPair>& pairs, FeatureProjection& proj);

/// The forward options a model needs for a set of layer-loss terms.
nn::ForwardOptions forward_options_for(const std::vector<LayerLossTerm>& terms);

/// The student's shape and initialisation. Unset sizes are taken from the teacher.
struct StudentOptions {
  /// "bert" (a smaller BERT), or a cross-architecture student (nn/textnet.h): "bilstm" (Tang et al.
  /// 2019) or "cnn" (Kim 2014). For these, hidden_size is the LSTM units per direction (default
  /// 150) or the filters per kernel width (default 100), and init "teacher" copies the teacher's
  /// word embeddings into theirs (the role word2vec plays in Tang et al.), "scratch" draws them.
  std::string arch = "bert";
  int64_t layers = 3;
  std::optional<int64_t> hidden_size, num_attention_heads, intermediate_size;
  /// "teacher": copy embeddings, pooler, head and the layers in init_layers from the teacher
  /// (widths must equal the teacher's); "scratch": Hugging Face random initialisation; anything
  /// else is a model folder to start from (e.g. a general-distillation student), whose shape must
  /// agree with the options given. "teacher-slice": like "teacher" for a narrower student (weight
  /// inheritance by width pruning, as in DynaBERT's width-adaptive networks, Hou et al. 2020, and
  /// Minitron, Muralidharan et al. 2024): each layer in init_layers keeps the teacher's most
  /// important hidden channels (inherited_hidden_channels), heads, head dimensions and FFN neurons,
  /// so a 4 × 312 TinyBERT-shaped student starts from the teacher instead of from noise.
  std::string init = "teacher";
  /// Teacher layer copied into each student layer; empty = every k-th layer starting at 0,
  /// k = teacher_layers / student_layers (DistilBERT's "one out of two").
  std::vector<int64_t> init_layers;
  /// Normalisation of the student (nn/norm.h). With init: teacher, LayerNorm's γ/β seed the new
  /// norm's and linear weights carry over (weightnorm: v = W, g = ‖W_row‖; cosinenorm: the rows).
  nn::NormKind norm = nn::NormKind::LayerNorm;
  /// Cross-architecture students: word-embedding width (default: the teacher's hidden size, so
  /// its embeddings can be copied), hidden ReLU layer of the head, CNN kernel widths, dropout.
  std::optional<int64_t> embedding_dim;
  int64_t mlp_size = 200;
  std::vector<int64_t> kernel_sizes{3, 4, 5};
  double dropout = 0.1;
  /// MobileBERT-style students (nn::BertConfig): bottleneck width inside each layer (0 = none),
  /// stacked FFNs per layer and the activation ("relu" as MobileBERT; default: the teacher's).
  /// A bottleneck student keeps the teacher's hidden size; with init "teacher" it copies the
  /// teacher's embeddings, pooler and head, and its layers start fresh.
  int64_t bottleneck_size = 0;
  int64_t num_ffn = 1;
  std::optional<std::string> hidden_act;
  /// A vocabulary of another size than the teacher's (a student with its own, smaller WordPiece
  /// vocabulary); with init "teacher" everything but the word embeddings is copied, and
  /// transfer_vocabulary() fills those.
  std::optional<int64_t> vocab_size;

  StudentOptions& with_arch(std::string v) { arch = std::move(v); return *this; }
  StudentOptions& with_embedding_dim(int64_t v) { embedding_dim = v; return *this; }
  StudentOptions& with_mlp_size(int64_t v) { mlp_size = v; return *this; }
  StudentOptions& with_kernel_sizes(std::vector<int64_t> v) { kernel_sizes = std::move(v); return *this; }
  StudentOptions& with_dropout(double v) { dropout = v; return *this; }
  StudentOptions& with_bottleneck_size(int64_t v) { bottleneck_size = v; return *this; }
  StudentOptions& with_num_ffn(int64_t v) { num_ffn = v; return *this; }
  StudentOptions& with_hidden_act(std::string v) { hidden_act = std::move(v); return *this; }
  StudentOptions& with_vocab_size(int64_t v) { vocab_size = v; return *this; }
  StudentOptions& with_layers(int64_t v) { layers = v; return *this; }
  StudentOptions& with_norm(nn::NormKind v) { norm = v; return *this; }
  StudentOptions& with_hidden_size(int64_t v) { hidden_size = v; return *this; }
  StudentOptions& with_num_attention_heads(int64_t v) { num_attention_heads = v; return *this; }
  StudentOptions& with_intermediate_size(int64_t v) { intermediate_size = v; return *this; }
  StudentOptions& with_init(std::string v) { init = std::move(v); return *this; }
  StudentOptions& with_init_layers(std::vector<int64_t> v) { init_layers = std::move(v); return *this; }
};

/// The teacher layers a student would be initialised from (resolves the default).
std::vector<int64_t> resolve_init_layers(const StudentOptions& s, int64_t teacher_layers);

/// The teacher's hidden channels a "teacher-slice" student of `width` keeps, ascending: the `width`
/// with the largest Σ (|γ| + |β|) over the model's LayerNorms. Every layer's output passes through
/// one of them, so a channel they scale down contributes little anywhere; the few outlier channels
/// BERT models are known for (Kovaleva et al. 2021) have the largest γ and are always kept.
std::vector<int64_t> inherited_hidden_channels(nn::BertClassifier& teacher, int64_t width);

/// Builds the student; throws naming the field when the shape or layer map is invalid.
nn::BertClassifier make_student(nn::BertClassifier& teacher, const StudentOptions& s, uint64_t seed);

/// Which teacher layers a student starts from, chosen by trying them. Which start scores best can
/// depend on the task (on this project's dev sets teacher layers 0, 2, 4 win on MRPC and 1, 3, 5 on
/// SST-2; docs/RESULTS.md), and choosing on the dev set would overstate the result, so each
/// candidate is distilled on part of the training set and scored on the rest, and the full run then
/// starts from the winner (the candidates' --init-layers is overridden).
struct InitSearchOptions {
  std::vector<std::vector<int64_t>> candidates;  ///< each an init_layers list; empty = no search
  double held_out = 0.1;                         ///< share of the training examples scored on

  InitSearchOptions& with_candidates(std::vector<std::vector<int64_t>> v) { candidates = std::move(v); return *this; }
  InitSearchOptions& with_held_out(double v) { held_out = v; return *this; }
  /// Throws naming the option when a candidate does not fit the student and teacher depths.
  void validate(const StudentOptions& s, int64_t teacher_layers) const;
};

struct InitSearchResult {
  std::vector<int64_t> chosen;  ///< the candidate with the best held-out score (the first of equals)
  std::vector<double> scores;   ///< held-out main metric per candidate, in the given order
};

/// For each candidate: a student from `s` with init_layers = candidate, distilled with `o` on
/// `fit` (no state saving), scored with the task's main metric on `held` against `held_gold`.
/// The teacher's logits over `fit` are computed once when `o` reads them from a cache.
InitSearchResult search_init_layers(nn::BertClassifier& teacher, const StudentOptions& s,
                                    const InitSearchOptions& search, const train::EncodedDataset& fit,
                                    const train::EncodedDataset& held, const data::Dataset& held_gold,
                                    const DistillOptions& o);

/// Initialises a student's word embeddings for its own vocabulary from the teacher's: a token the
/// teacher also has takes its row; any other takes the mean of the rows of the teacher pieces its
/// text splits into ("##x" pieces: of the teacher's "##" pieces of x). Widths must agree.
void transfer_vocabulary(nn::BertClassifier& student, const text::WordPieceTokenizer& student_tokenizer,
                         nn::BertClassifier& teacher, const text::WordPieceTokenizer& teacher_tokenizer);

/// Builds a BiLSTM or CNN student (s.arch) over the teacher's vocabulary with the teacher's
/// number of outputs; `pair` for sentence-pair tasks.
nn::TextNetClassifier make_text_student(nn::BertClassifier& teacher, const StudentOptions& s, bool pair,
                                        uint64_t seed);

/// What the masked-LM terms need besides the options.
struct MlmSetup {
  /// The student's head: trained with it (kept in the training state, not in the saved model,
  /// which is a classifier). Start it from the teacher's when the widths agree.
  nn::BertMlmHead student{nullptr};
  nn::BertMlmHead teacher{nullptr};  ///< required when mlm_distill_weight > 0
  int64_t mask_id = -1;
  int64_t vocab_size = 0;
  std::vector<int64_t> special_ids;  ///< never masked: [CLS], [SEP], [PAD]
};

/// BERT's masking (Devlin et al. 2019): each real token that is not special is chosen with
/// probability p; a chosen token becomes [MASK] 80 % of the time, a random token 10 %, and stays
/// 10 %. Returns the corrupted ids and the targets (original id where chosen, −100 elsewhere).
std::pair<torch::Tensor, torch::Tensor> mask_tokens(const torch::Tensor& ids, const torch::Tensor& attention_mask,
                                                    const MlmSetup& setup, double p, at::Generator generator);

/// Distils `teacher` into `student` on `train_set`. `teacher_logits` is the cache
/// ([N, num_labels], dataset order); compute it with train::predict_logits or pass an empty
/// tensor to have it computed here (ignored when options.cache_teacher is false). With layer
/// losses, the teacher's outputs those terms read are cached per example when
/// caches_teacher_layers() says so, and otherwise the teacher runs on every batch; `teacher_logits`
/// is not used. Throws before training when the layer map or the shapes cannot work (attention
/// terms need equal head counts).
train::TrainResult distill(nn::BertClassifier& student, nn::BertClassifier& teacher,
                           const train::EncodedDataset& train_set, const DistillOptions& options,
                           torch::Tensor teacher_logits = {}, const MlmSetup* mlm = nullptr);

/// Bytes the teacher's per-example outputs for `options.layer_losses` take on `train_set` (each
/// example at its own length, fp32: the mapped layers' hidden states, attention maps and logits).
int64_t teacher_layer_cache_bytes(const DistillOptions& options, int64_t student_layers,
                                  const nn::BertConfig& teacher, const train::EncodedDataset& train_set);
/// Whether distill() computes those outputs once instead of on every batch: the teacher runs in eval
/// mode, so they are the same every epoch, and a multi-epoch stage with layer losses (TinyBERT's 10
/// intermediate epochs, MobileBERT's progressive passes) then pays for one teacher pass in all.
/// True when there are layer losses, cache_teacher is set, there is no masked-LM term (its inputs
/// change every step) and the bytes fit in teacher_cache_mb.
bool caches_teacher_layers(const DistillOptions& options, int64_t student_layers, const nn::BertConfig& teacher,
                           const train::EncodedDataset& train_set);

/// Distils into a BiLSTM or CNN student: prediction-layer losses only (soft targets by KL or logit
/// MSE, mixed with the labels by alpha; Tang et al. use MSE), from the cached teacher logits
/// (computed here when `teacher_logits` is empty). alpha 0 trains on the labels alone (no KD).
/// Throws when the options ask for layer losses, which these students have no layers for.
train::TrainResult distill(nn::TextNetClassifier& student, nn::BertClassifier& teacher,
                           const train::EncodedDataset& train_set, const DistillOptions& options,
                           torch::Tensor teacher_logits = {});

// ---- DualTrain + SharedProj ---------------------------------------------------------------------
//
// Zhao et al. 2021 ("Extremely Small BERT Models from Mixed-Vocabulary Training") shrink a BERT
// through its vocabulary and width: the student has its own small WordPiece vocabulary and a
// narrow hidden size. Two devices carry the teacher's knowledge across the mismatch:
// - dual training: the teacher reads mixed-vocabulary input, each word segmented with the
//   student's vocabulary or its own, the student-vocabulary pieces embedded with the student's
//   (projected) word embeddings — so those embeddings are trained inside the teacher, in its
//   space;
// - shared projections: the student's layer weights are aligned with the teacher's through
//   projection matrices shared by all layers, lifting the student up (SharedProjUp) or taking
//   the teacher down (SharedProjDown).
// Zhao et al. apply both while distilling with masked-LM pre-training; condense applies them to
// task distillation from a fine-tuned classifier: the teacher (frozen) must give, on the mixed
// input, the logits it gives on its own segmentation (soft targets at the run's temperature).

/// A teacher-side view of a dataset in which some words are segmented with the student's
/// vocabulary: ids ≥ teacher_vocab_size are student pieces (id − teacher_vocab_size).
struct MixedVocabOptions {
  double mix_prob = 0.5;  ///< chance that a word is segmented with the student's vocabulary
  uint64_t seed = 42;
  int max_length = 128;
  MixedVocabOptions& with_mix_prob(double v) { mix_prob = v; return *this; }
  MixedVocabOptions& with_seed(uint64_t v) { seed = v; return *this; }
  MixedVocabOptions& with_max_length(int v) { max_length = v; return *this; }
};

/// Encodes every example for the teacher with words drawn per word (deterministic for the seed)
/// from either segmentation. Words are the teacher's: a piece without "##" starts one; a word the
/// teacher sees as [UNK], or that the student's vocabulary cannot spell, stays the teacher's.
/// Specials are the teacher's; truncation is longest-first as in WordPieceTokenizer::encode.
train::EncodedDataset encode_mixed_vocab(const data::Dataset& d, const text::WordPieceTokenizer& teacher_tokenizer,
                                         const text::WordPieceTokenizer& student_tokenizer,
                                         const MixedVocabOptions& options);

struct DualTrainOptions {
  double dual_weight = 1.0;         ///< weight of the mixed-input term (0 = no dual training)
  std::string shared_proj = "up";   ///< up, down or none
  double proj_weight = 1.0;         ///< weight of the weight-alignment term
  MixedVocabOptions mixed;
  DualTrainOptions& with_dual_weight(double v) { dual_weight = v; return *this; }
  DualTrainOptions& with_shared_proj(std::string v) { shared_proj = std::move(v); return *this; }
  DualTrainOptions& with_proj_weight(double v) { proj_weight = v; return *this; }
  DualTrainOptions& with_mixed(MixedVocabOptions v) { mixed = std::move(v); return *this; }
  /// Throws naming the field (dualtrain.shared_proj, dualtrain.dual_weight, ...).
  void validate() const;
};

/// The shared projections: `hidden` maps the student's hidden width to the teacher's (up: [H_t,
/// H_s]; down: [H_s, H_t]) and `ffn` the FFN widths; one pair for every layer.
class SharedProjectionImpl : public torch::nn::Module {
 public:
  SharedProjectionImpl(int64_t student_hidden, int64_t teacher_hidden, int64_t student_ffn, int64_t teacher_ffn,
                       bool up, uint64_t seed);
  torch::Tensor hidden, ffn;
  bool up = true;
};
TORCH_MODULE(SharedProjection);

/// Mean over the mapped layer pairs and each layer's linear weights, biases and LayerNorms of the
/// relative squared difference after projection — up: ‖P W_s Qᵀ − W_t‖² / ‖W_t‖² (P, Q the
/// projections of the weight's output and input widths), down: ‖W_s − P W_t Qᵀ‖² / ‖P W_t Qᵀ‖² —
/// each denominator plus 1e-4 per entry. About 1 for unrelated weights, 0 when aligned.
torch::Tensor shared_projection_loss(nn::BertClassifier& student, nn::BertClassifier& teacher,
                                     const std::vector<LayerPair>& pairs, SharedProjection& proj);

/// The teacher's logits on mixed-vocabulary ids (see encode_mixed_vocab): student pieces are
/// embedded with the student's word embeddings, taken to the teacher's width by `proj` (up: P·e;
/// down: Pᵀ·e).
torch::Tensor mixed_vocab_logits(nn::BertClassifier& teacher, nn::BertClassifier& student, SharedProjection& proj,
                                 const torch::Tensor& mixed_ids, const torch::Tensor& token_type_ids,
                                 const torch::Tensor& attention_mask);

/// Distils with prediction-layer KD from the cached teacher logits (options.alpha, temperature) on
/// the student's own segmentation `train_set`, plus dual_weight × soft-target loss of the teacher's
/// logits on `mixed` (same examples, same order) against the cache, plus proj_weight × the shared
/// projection loss over options.layer_map. The teacher's weights stay fixed.
train::TrainResult dual_train(nn::BertClassifier& student, nn::BertClassifier& teacher,
                              const train::EncodedDataset& train_set, const train::EncodedDataset& mixed,
                              const DistillOptions& options, const DualTrainOptions& dual,
                              const torch::Tensor& teacher_logits);

}  // namespace condense::distill
