#pragma once
/// \file
/// BERT encoder (Devlin et al. 2019) in LibTorch with Hugging Face parameter names, any shape.
///
/// Parameter names match `transformers`' BertForSequenceClassification exactly
/// (`bert.encoder.layer.3.attention.self.query.weight`, `classifier.bias`, ...) so checkpoints move
/// between condense and Hugging Face without a renaming table. The forward pass can return every
/// hidden state and every attention map because intermediate-layer distillation needs them.

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "condense/nn/norm.h"

namespace condense::nn {

/// The fields of a Hugging Face BERT `config.json` that shape the model.
struct BertConfig {
  int64_t vocab_size = 30522;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  int64_t pad_token_id = 0;
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  double layer_norm_eps = 1e-12;
  double initializer_range = 0.02;
  /// "gelu" (erf), "gelu_new"/"gelu_pytorch_tanh" (tanh approximation), "relu", "silu".
  std::string hidden_act = "gelu";
  /// Outputs of the classification head; 1 means regression (STS-B).
  int64_t num_labels = 2;
  /// Normalisation of a student (nn/norm.h); stored as `condense_norm` in config.json when it is
  /// not BERT's LayerNorm, which Hugging Face cannot load.
  NormKind norm = NormKind::LayerNorm;
  /// MobileBERT-style bottleneck (Sun et al. 2020): when > 0, each layer projects its input from
  /// hidden_size down to this width, runs attention and FFNs there, and projects back up (with a
  /// residual around the whole block), so layer outputs keep hidden_size — the teacher's width,
  /// matched without a projection — while the block's cost shrinks. 0 = plain BERT.
  /// Stored as `condense_bottleneck_size`.
  int64_t bottleneck_size = 0;
  /// FFNs stacked per layer (MobileBERT uses 4 to restore the FFN/attention parameter ratio that
  /// the narrow block loses). Stored as `condense_num_ffn`.
  int64_t num_ffn = 1;
  /// Per-layer attention heads and FFN widths of a physically pruned model (prune/, Michel et al.
  /// 2019 heads, FFN neurons): empty = every layer has num_attention_heads and intermediate_size.
  /// head_dim stays hidden_size / num_attention_heads. Stored as `condense_layer_heads` and
  /// `condense_intermediate_sizes`; each layer keeps at least one head and one neuron.
  std::vector<int64_t> layer_heads, layer_intermediate;
  /// Low-rank and hashed encoder linear layers (factorize/; nn::DenseShape), by module name
  /// ("bert.encoder.layer.0.attention.self.query"). Stored as `condense_ranks` and
  /// `condense_hash_buckets`.
  std::map<std::string, int64_t> ranks, hash_buckets;
  /// ALBERT's factorized embedding (Lan et al. 2020): when > 0, word embeddings are
  /// vocab × embedding_size followed by `word_projection` (embedding_size → hidden, no bias).
  /// Stored as `condense_embedding_size`.
  int64_t embedding_size = 0;
  /// ALBERT's cross-layer sharing: "all" (every layer runs layer 0's parameters), "attention" or
  /// "ffn" (that block shared, the rest per layer), "" = none. Only layer 0 stores shared blocks.
  /// Stored as `condense_share`.
  std::string share;
  /// Everything else in the file, kept so that a round trip does not lose fields.
  nlohmann::json extra = nlohmann::json::object();

  /// Width attention and FFNs run at: bottleneck_size when set, else hidden_size.
  int64_t block_width() const { return bottleneck_size > 0 ? bottleneck_size : hidden_size; }
  int64_t head_dim() const { return block_width() / num_attention_heads; }
  /// Heads and FFN width of layer i (the per-layer values when set).
  int64_t heads_at(int64_t layer) const;
  int64_t intermediate_at(int64_t layer) const;
  /// Whether some layer's heads or FFN width differ from the uniform values.
  bool per_layer_shapes() const { return !layer_heads.empty() || !layer_intermediate.empty(); }
  /// The storage of the encoder linear layer called `name`.
  DenseShape dense_shape(const std::string& name) const;
  /// Whether the modeling file written beside the weights is needed for transformers to build the
  /// model (per-layer shapes, low-rank layers, factorized embeddings).
  bool needs_modeling_file() const { return per_layer_shapes() || !ranks.empty() || embedding_size > 0; }
  bool shares(const std::string& block) const { return share == "all" || share == block; }
  /// Whether Hugging Face's BertForSequenceClassification can hold this model.
  bool hf_compatible() const { return norm == NormKind::LayerNorm && bottleneck_size == 0 && num_ffn == 1; }
  /// Layout changes only condense reads (hashed layers, shared layers): `condense export` expands
  /// them into an equivalent plain model first.
  bool condense_only_storage() const { return !hash_buckets.empty() || !share.empty(); }
  /// Throws condense::Error naming `source` and the field when values are inconsistent.
  void validate(const std::string& source) const;
  static BertConfig from_json(const nlohmann::json& j, const std::string& source);
  static BertConfig load(const std::filesystem::path& config_json);
  /// A Hugging Face config for BertForSequenceClassification.
  nlohmann::json to_json() const;
};

/// What a forward pass returns. hidden_states[0] is the embedding output, hidden_states[i] the
/// output of layer i; attentions[i] is the softmax attention of layer i + 1, [batch, heads, seq, seq];
/// attention_scores[i] the same layer's scores before the mask and softmax (QKᵀ/√d), which
/// TinyBERT (Jiao et al. 2020) fits because they converge faster than the probabilities.
struct BertOutput {
  torch::Tensor logits;
  torch::Tensor pooled;
  std::vector<torch::Tensor> hidden_states;
  std::vector<torch::Tensor> attentions;
  std::vector<torch::Tensor> attention_scores;
};

/// Which intermediate tensors forward() keeps.
struct ForwardOptions {
  bool hidden_states = false;
  bool attentions = false;
  bool attention_scores = false;
  ForwardOptions& with_hidden_states(bool v = true) { hidden_states = v; return *this; }
  ForwardOptions& with_attentions(bool v = true) { attentions = v; return *this; }
  ForwardOptions& with_attention_scores(bool v = true) { attention_scores = v; return *this; }
};

/// Where a layer puts the attention tensors a caller asked for.
struct AttentionTaps {
  bool want_probs = false, want_scores = false;
  torch::Tensor probs, scores;
};

class BertEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit BertEmbeddingsImpl(const BertConfig& c);
  /// token_mask ([batch, seq], 1 = token) is read only by batchnorm.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                        const torch::Tensor& token_mask = {});
  /// The same from word vectors [batch, seq, width] already looked up (and projected).
  torch::Tensor forward_words(const torch::Tensor& words, const torch::Tensor& token_type_ids,
                              const torch::Tensor& token_mask = {});
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::Linear word_projection{nullptr};  ///< only with embedding_size > 0
  Norm LayerNorm{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(BertEmbeddings);

class BertSelfAttentionImpl : public torch::nn::Module {
 public:
  /// `prefix` names the module ("bert.encoder.layer.0.attention.self.") for low-rank lookups.
  BertSelfAttentionImpl(const BertConfig& c, int64_t heads, const std::string& prefix = "");
  /// additive_mask: [batch, 1, 1, seq], 0 for tokens and a large negative number for padding.
  /// When taps is non-null its requested fields receive the attention probabilities / scores.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& additive_mask, AttentionTaps* taps);
  Dense query{nullptr}, key{nullptr}, value{nullptr};
  torch::nn::Dropout dropout{nullptr};
  int64_t heads = 0, head_dim = 0;
  double dropout_p = 0;
  /// Optional [heads] multipliers of each head's context (Michel et al. 2019 head mask): pruning
  /// reads its gradient as head importance and zeroes pruned heads with it. Undefined = none; not a
  /// parameter, so it is never saved.
  torch::Tensor head_gate;
};
TORCH_MODULE(BertSelfAttention);

/// `attention.output` and `output` in Hugging Face: dense, dropout, residual, LayerNorm.
class BertResidualOutputImpl : public torch::nn::Module {
 public:
  BertResidualOutputImpl(int64_t in, int64_t out, const BertConfig& c, const std::string& prefix = "");
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual, const torch::Tensor& token_mask = {});
  Dense dense{nullptr};
  Norm LayerNorm{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(BertResidualOutput);

class BertAttentionImpl : public torch::nn::Module {
 public:
  BertAttentionImpl(const BertConfig& c, int64_t heads, const std::string& prefix = "");
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& additive_mask, AttentionTaps* taps,
                        const torch::Tensor& token_mask = {});
  BertSelfAttention self{nullptr};
  BertResidualOutput output{nullptr};
};
TORCH_MODULE(BertAttention);

class BertIntermediateImpl : public torch::nn::Module {
 public:
  BertIntermediateImpl(const BertConfig& c, int64_t width, const std::string& prefix = "");
  torch::Tensor forward(const torch::Tensor& x);
  Dense dense{nullptr};
  std::string act;
  /// Optional [width] multipliers of the activations (FFN-neuron mask, as head_gate); never saved.
  torch::Tensor neuron_gate;
};
TORCH_MODULE(BertIntermediate);

/// One extra FFN of a stacked-FFN layer: intermediate, then dense + residual + norm.
class BertFeedForwardImpl : public torch::nn::Module {
 public:
  explicit BertFeedForwardImpl(const BertConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& token_mask = {});
  BertIntermediate intermediate{nullptr};
  BertResidualOutput output{nullptr};
};
TORCH_MODULE(BertFeedForward);

/// MobileBERT's bottleneck: `input` (dense hidden → block width, norm) before the block and
/// `output` (dense back to hidden, residual from the layer input, norm) after it.
class BertBottleneckImpl : public torch::nn::Module {
 public:
  explicit BertBottleneckImpl(const BertConfig& c);
  torch::Tensor down(const torch::Tensor& x, const torch::Tensor& token_mask = {});
  Dense input_dense{nullptr};
  Norm input_norm{nullptr};
  BertResidualOutput output{nullptr};
};
TORCH_MODULE(BertBottleneck);

class BertLayerImpl : public torch::nn::Module {
 public:
  /// With cross-layer sharing, layers after the first take the shared blocks from `first` without
  /// registering them (so each parameter exists once).
  BertLayerImpl(const BertConfig& c, int64_t index, const BertLayerImpl* first = nullptr);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& additive_mask, AttentionTaps* taps,
                        const torch::Tensor& token_mask = {});
  BertAttention attention{nullptr};
  BertIntermediate intermediate{nullptr};
  BertResidualOutput output{nullptr};
  BertBottleneck bottleneck{nullptr};  ///< only when bottleneck_size > 0
  torch::nn::ModuleList ffn{nullptr};  ///< the num_ffn − 1 FFNs before intermediate/output
};
TORCH_MODULE(BertLayer);

class BertEncoderImpl : public torch::nn::Module {
 public:
  explicit BertEncoderImpl(const BertConfig& c);
  torch::nn::ModuleList layer{nullptr};
};
TORCH_MODULE(BertEncoder);

class BertPoolerImpl : public torch::nn::Module {
 public:
  explicit BertPoolerImpl(const BertConfig& c);
  /// tanh(dense(hidden[:, 0])): the [CLS] summary the classifier reads.
  torch::Tensor forward(const torch::Tensor& hidden);
  torch::nn::Linear dense{nullptr};
};
TORCH_MODULE(BertPooler);

/// The encoder without a head (`BertModel` in Hugging Face).
class BertModelImpl : public torch::nn::Module {
 public:
  explicit BertModelImpl(const BertConfig& c);
  BertEmbeddings embeddings{nullptr};
  BertEncoder encoder{nullptr};
  BertPooler pooler{nullptr};
};
TORCH_MODULE(BertModel);

/// BertModel plus the sequence-classification (or regression) head: pooler (tanh dense on
/// [CLS]), dropout, linear classifier. Registered under `bert.` and `classifier.` like HF's
/// BertForSequenceClassification.
class BertClassifierImpl : public torch::nn::Module {
 public:
  explicit BertClassifierImpl(BertConfig c);
  /// input_ids, token_type_ids, attention_mask: int64 [batch, seq]; mask 1 = token, 0 = padding.
  BertOutput forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                     const torch::Tensor& attention_mask, ForwardOptions options = {});
  /// forward() from the embedding layer's output [batch, seq, hidden] (inputs built by hand, such
  /// as mixed-vocabulary input in DualTrain).
  BertOutput forward_embedded(const torch::Tensor& embedded, const torch::Tensor& attention_mask,
                              ForwardOptions options = {});
  /// Hugging Face's initialisation: normal(0, initializer_range) weights, zero biases, unit LayerNorm.
  void reset_parameters();
  const BertConfig& config() const { return config_; }
  /// Layer i of the encoder.
  BertLayer layer(int64_t i) const;
  int64_t num_parameters() const;
  /// LayerDrop (Fan et al. 2020): in training mode each encoder layer is skipped with this
  /// probability (structured dropout), which makes the model robust to removing layers later.
  double layerdrop = 0;
  /// Encoder layers forward() runs, in order (empty = all): a LayerDrop-trained model evaluated at a
  /// smaller depth without rebuilding it, and layer-importance scoring in pruning.
  std::vector<int64_t> active_layers;

  BertModel bert{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear classifier{nullptr};

 private:
  BertConfig config_;
};
TORCH_MODULE(BertClassifier);

/// `cls.predictions.transform` of Hugging Face's masked-LM head: dense, activation, LayerNorm.
class BertMlmTransformImpl : public torch::nn::Module {
 public:
  explicit BertMlmTransformImpl(const BertConfig& c);
  torch::nn::Linear dense{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
};
TORCH_MODULE(BertMlmTransform);

/// Hugging Face's masked-LM head (`cls.predictions.*` of BertForMaskedLM / BertForPreTraining):
/// the transform, then a decoder tied to the word embeddings plus a per-token bias. Kept apart
/// from BertClassifier: only masked-LM distillation on unlabelled text needs it.
class BertMlmHeadImpl : public torch::nn::Module {
 public:
  explicit BertMlmHeadImpl(const BertConfig& c);
  /// Vocabulary logits [n, vocab] for hidden states [n, hidden], decoding with `word_embeddings`
  /// ([vocab, hidden], the model's own table: the decoder is tied to it).
  torch::Tensor forward(const torch::Tensor& hidden, const torch::Tensor& word_embeddings);
  BertMlmTransform transform{nullptr};
  torch::Tensor bias;
  std::string act;
};
TORCH_MODULE(BertMlmHead);

}  // namespace condense::nn
