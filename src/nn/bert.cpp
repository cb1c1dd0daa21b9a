#include "condense/nn/bert.h"

#include <cmath>

#include "condense/core/error.h"
#include "condense/core/file.h"
#include "condense/core/json.h"

namespace condense::nn {

namespace {

template <typename T>
T get_or(const nlohmann::json& j, const char* key, T fallback, const std::string& source) {
  return json_get_or<T>(j, key, fallback, source);
}

torch::Tensor activation(const torch::Tensor& x, const std::string& act) {
  if (act == "gelu") return torch::gelu(x);
  if (act == "gelu_new" || act == "gelu_pytorch_tanh") return torch::gelu(x, "tanh");
  if (act == "relu") return torch::relu(x);
  if (act == "silu" || act == "swish") return torch::silu(x);
  fail("unsupported hidden_act '{}'", act);
}

}  // namespace

void BertConfig::validate(const std::string& source) const {
  auto positive = [&](int64_t v, const char* field) {
    CONDENSE_CHECK(v > 0, "{}: field '{}' must be positive, found {}", source, field, v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(intermediate_size, "intermediate_size");
  positive(max_position_embeddings, "max_position_embeddings");
  positive(type_vocab_size, "type_vocab_size");
  positive(num_labels, "num_labels");
  CONDENSE_CHECK(bottleneck_size >= 0 && bottleneck_size <= hidden_size,
                 "{}: field 'condense_bottleneck_size' must be in [0, hidden_size = {}], found {}", source, hidden_size,
                 bottleneck_size);
  positive(num_ffn, "condense_num_ffn");
  CONDENSE_CHECK(block_width() % num_attention_heads == 0,
                 "{}: field '{}' ({}) must be a multiple of num_attention_heads ({})", source,
                 bottleneck_size > 0 ? "condense_bottleneck_size" : "hidden_size", block_width(), num_attention_heads);
  if (!layer_heads.empty()) {
    CONDENSE_CHECK(static_cast<int64_t>(layer_heads.size()) == num_hidden_layers,
                   "{}: field 'condense_layer_heads' has {} entries for {} layers", source, layer_heads.size(),
                   num_hidden_layers);
    for (auto h : layer_heads) {
      CONDENSE_CHECK(h >= 1 && h <= num_attention_heads,
                     "{}: field 'condense_layer_heads' holds {}, expected 1..num_attention_heads ({})", source, h,
                     num_attention_heads);
    }
  }
  if (!layer_intermediate.empty()) {
    CONDENSE_CHECK(static_cast<int64_t>(layer_intermediate.size()) == num_hidden_layers,
                   "{}: field 'condense_intermediate_sizes' has {} entries for {} layers", source,
                   layer_intermediate.size(), num_hidden_layers);
    for (auto w : layer_intermediate) {
      CONDENSE_CHECK(w >= 1, "{}: field 'condense_intermediate_sizes' holds {}, expected >= 1", source, w);
    }
  }
  CONDENSE_CHECK(share.empty() || share == "all" || share == "attention" || share == "ffn",
                 "{}: field 'condense_share' is '{}', expected all, attention or ffn", source, share);
  CONDENSE_CHECK(embedding_size >= 0 && embedding_size <= hidden_size,
                 "{}: field 'condense_embedding_size' must be in [0, hidden_size = {}], found {}", source, hidden_size,
                 embedding_size);
  for (const auto* m : {&ranks, &hash_buckets}) {
    const char* field = m == &ranks ? "condense_ranks" : "condense_hash_buckets";
    for (const auto& [name, v] : *m) {
      CONDENSE_CHECK(v >= 1, "{}: field '{}' gives '{}' the value {}, expected >= 1", source, field, name, v);
      CONDENSE_CHECK(name.rfind("bert.encoder.layer.", 0) == 0, "{}: field '{}' names '{}', not an encoder layer",
                     source, field, name);
    }
  }
  CONDENSE_CHECK((ranks.empty() && hash_buckets.empty() && share.empty() && embedding_size == 0) ||
                     (bottleneck_size == 0 && num_ffn == 1 && (norm == NormKind::LayerNorm || norm == NormKind::BatchNorm ||
                                                               norm == NormKind::NoNorm)),
                 "{}: low-rank, hashed, shared or factorized-embedding models need plain BERT layers", source);
  CONDENSE_CHECK(share.empty() || !per_layer_shapes(),
                 "{}: field 'condense_share' needs uniform layers (no condense_layer_heads / condense_intermediate_sizes)",
                 source);
  CONDENSE_CHECK(!per_layer_shapes() || (bottleneck_size == 0 && num_ffn == 1),
                 "{}: per-layer shapes (condense_layer_heads / condense_intermediate_sizes) need a plain BERT layer, "
                 "not a bottleneck one",
                 source);
  CONDENSE_CHECK(hidden_dropout_prob >= 0 && hidden_dropout_prob < 1, "{}: field 'hidden_dropout_prob' must be in [0,1)",
                 source);
  CONDENSE_CHECK(attention_probs_dropout_prob >= 0 && attention_probs_dropout_prob < 1,
                 "{}: field 'attention_probs_dropout_prob' must be in [0,1)", source);
  CONDENSE_CHECK(layer_norm_eps > 0, "{}: field 'layer_norm_eps' must be positive", source);
  static const char* kActs[] = {"gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish"};
  bool known = false;
  for (auto a : kActs) known |= hidden_act == a;
  CONDENSE_CHECK(known, "{}: field 'hidden_act' is '{}', expected one of gelu, gelu_new, relu, silu", source,
                 hidden_act);
}

BertConfig BertConfig::from_json(const nlohmann::json& j, const std::string& source) {
  CONDENSE_CHECK(j.is_object(), "{}: expected a JSON object", source);
  if (j.contains("model_type") && j["model_type"].is_string()) {
    auto t = j["model_type"].get<std::string>();
    CONDENSE_CHECK(t != "condense-textnet",
                   "{}: field 'model_type' is 'condense-textnet' (a BiLSTM or CNN student); commands that need a BERT "
                   "encoder cannot use it",
                   source);
    CONDENSE_CHECK(t == "bert", "{}: field 'model_type' is '{}', only 'bert' is supported", source, t);
  }
  BertConfig c;
  c.vocab_size = get_or<int64_t>(j, "vocab_size", c.vocab_size, source);
  c.hidden_size = get_or<int64_t>(j, "hidden_size", c.hidden_size, source);
  c.num_hidden_layers = get_or<int64_t>(j, "num_hidden_layers", c.num_hidden_layers, source);
  c.num_attention_heads = get_or<int64_t>(j, "num_attention_heads", c.num_attention_heads, source);
  c.intermediate_size = get_or<int64_t>(j, "intermediate_size", c.intermediate_size, source);
  c.max_position_embeddings = get_or<int64_t>(j, "max_position_embeddings", c.max_position_embeddings, source);
  c.type_vocab_size = get_or<int64_t>(j, "type_vocab_size", c.type_vocab_size, source);
  c.pad_token_id = get_or<int64_t>(j, "pad_token_id", c.pad_token_id, source);
  c.hidden_dropout_prob = get_or<double>(j, "hidden_dropout_prob", c.hidden_dropout_prob, source);
  c.attention_probs_dropout_prob =
      get_or<double>(j, "attention_probs_dropout_prob", c.attention_probs_dropout_prob, source);
  c.layer_norm_eps = get_or<double>(j, "layer_norm_eps", c.layer_norm_eps, source);
  c.initializer_range = get_or<double>(j, "initializer_range", c.initializer_range, source);
  c.hidden_act = get_or<std::string>(j, "hidden_act", c.hidden_act, source);
  if (j.contains("condense_norm")) {
    try {
      c.norm = parse_norm(get_or<std::string>(j, "condense_norm", "layernorm", source));
    } catch (const Error& e) {
      fail("{}: field 'condense_norm': {}", source, e.what());
    }
  }
  c.bottleneck_size = get_or<int64_t>(j, "condense_bottleneck_size", 0, source);
  c.num_ffn = get_or<int64_t>(j, "condense_num_ffn", 1, source);
  c.layer_heads = get_or<std::vector<int64_t>>(j, "condense_layer_heads", {}, source);
  c.layer_intermediate = get_or<std::vector<int64_t>>(j, "condense_intermediate_sizes", {}, source);
  c.ranks = get_or<std::map<std::string, int64_t>>(j, "condense_ranks", {}, source);
  c.hash_buckets = get_or<std::map<std::string, int64_t>>(j, "condense_hash_buckets", {}, source);
  c.embedding_size = get_or<int64_t>(j, "condense_embedding_size", 0, source);
  c.share = get_or<std::string>(j, "condense_share", "", source);
  if (j.contains("position_embedding_type") && j["position_embedding_type"].is_string()) {
    auto p = j["position_embedding_type"].get<std::string>();
    CONDENSE_CHECK(p == "absolute", "{}: field 'position_embedding_type' is '{}', only 'absolute' is supported",
                   source, p);
  }
  if (j.contains("num_labels")) {
    c.num_labels = get_or<int64_t>(j, "num_labels", c.num_labels, source);
  } else if (j.contains("id2label") && j["id2label"].is_object()) {
    c.num_labels = static_cast<int64_t>(j["id2label"].size());
  }
  if (get_or<std::string>(j, "problem_type", "", source) == "regression") c.num_labels = 1;
  c.extra = j;
  c.validate(source);
  return c;
}

DenseShape BertConfig::dense_shape(const std::string& name) const {
  DenseShape d;
  if (auto it = ranks.find(name); it != ranks.end()) d.rank = it->second;
  if (auto it = hash_buckets.find(name); it != hash_buckets.end()) d.buckets = it->second;
  return d;
}

int64_t BertConfig::heads_at(int64_t layer) const {
  return layer_heads.empty() ? num_attention_heads : layer_heads.at(static_cast<std::size_t>(layer));
}

int64_t BertConfig::intermediate_at(int64_t layer) const {
  return layer_intermediate.empty() ? intermediate_size : layer_intermediate.at(static_cast<std::size_t>(layer));
}

BertConfig BertConfig::load(const std::filesystem::path& config_json) {
  return from_json(read_json_file(config_json), config_json.string());
}

nlohmann::json BertConfig::to_json() const {
  nlohmann::json j = extra.is_object() ? extra : nlohmann::json::object();
  j.erase("_name_or_path");
  j["model_type"] = "bert";
  j["architectures"] = {"BertForSequenceClassification"};
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["intermediate_size"] = intermediate_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["type_vocab_size"] = type_vocab_size;
  j["pad_token_id"] = pad_token_id;
  j["hidden_dropout_prob"] = hidden_dropout_prob;
  j["attention_probs_dropout_prob"] = attention_probs_dropout_prob;
  j["layer_norm_eps"] = layer_norm_eps;
  j["initializer_range"] = initializer_range;
  j["hidden_act"] = hidden_act;
  j["position_embedding_type"] = "absolute";
  j["num_labels"] = num_labels;
  if (norm == NormKind::LayerNorm) {
    j.erase("condense_norm");
  } else {
    j["condense_norm"] = to_string(norm);
  }
  j.erase("condense_bottleneck_size");
  j.erase("condense_num_ffn");
  if (bottleneck_size > 0) j["condense_bottleneck_size"] = bottleneck_size;
  if (num_ffn != 1) j["condense_num_ffn"] = num_ffn;
  j.erase("condense_layer_heads");
  j.erase("condense_intermediate_sizes");
  if (!layer_heads.empty()) j["condense_layer_heads"] = layer_heads;
  if (!layer_intermediate.empty()) j["condense_intermediate_sizes"] = layer_intermediate;
  for (const char* k : {"condense_ranks", "condense_hash_buckets", "condense_embedding_size", "condense_share"}) {
    j.erase(k);
  }
  if (!ranks.empty()) j["condense_ranks"] = ranks;
  if (!hash_buckets.empty()) j["condense_hash_buckets"] = hash_buckets;
  if (embedding_size > 0) j["condense_embedding_size"] = embedding_size;
  if (!share.empty()) j["condense_share"] = share;
  // These shapes need the modeling file checkpoint.h writes beside the weights.
  j.erase("auto_map");
  if (needs_modeling_file()) {
    j["auto_map"] = {{"AutoModelForSequenceClassification",
                      "modeling_condense.CondensePrunedBertForSequenceClassification"}};
    j["architectures"] = {"CondensePrunedBertForSequenceClassification"};
  }
  nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
  for (int64_t i = 0; i < num_labels; ++i) {
    id2label[std::to_string(i)] = "LABEL_" + std::to_string(i);
    label2id["LABEL_" + std::to_string(i)] = i;
  }
  j["id2label"] = id2label;
  j["label2id"] = label2id;
  j["problem_type"] = num_labels == 1 ? "regression" : "single_label_classification";
  return j;
}

BertEmbeddingsImpl::BertEmbeddingsImpl(const BertConfig& c) {
  const int64_t e = c.embedding_size > 0 ? c.embedding_size : c.hidden_size;
  word_embeddings = register_module("word_embeddings", torch::nn::Embedding(c.vocab_size, e));
  if (c.embedding_size > 0) {
    word_projection = register_module("word_projection",
                                      torch::nn::Linear(torch::nn::LinearOptions(e, c.hidden_size).bias(false)));
  }
  position_embeddings =
      register_module("position_embeddings", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
  token_type_embeddings =
      register_module("token_type_embeddings", torch::nn::Embedding(c.type_vocab_size, c.hidden_size));
  LayerNorm = register_module("LayerNorm", Norm(c.norm, c.hidden_size, c.layer_norm_eps));
  dropout = register_module("dropout", torch::nn::Dropout(c.hidden_dropout_prob));
}

torch::Tensor BertEmbeddingsImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                          const torch::Tensor& token_mask) {
  auto words = word_embeddings(input_ids);
  if (word_projection) words = word_projection(words);
  return forward_words(words, token_type_ids, token_mask);
}

torch::Tensor BertEmbeddingsImpl::forward_words(const torch::Tensor& words, const torch::Tensor& token_type_ids,
                                                const torch::Tensor& token_mask) {
  const int64_t seq = words.size(1);
  CONDENSE_CHECK(seq <= position_embeddings->weight.size(0),
                 "sequence length {} exceeds max_position_embeddings {}", seq, position_embeddings->weight.size(0));
  auto positions = torch::arange(seq, token_type_ids.options()).unsqueeze(0);
  auto x = words + position_embeddings(positions) + token_type_embeddings(token_type_ids);
  return dropout(LayerNorm(x, token_mask));
}

BertSelfAttentionImpl::BertSelfAttentionImpl(const BertConfig& c, int64_t heads_, const std::string& prefix)
    : heads(heads_), head_dim(c.head_dim()), dropout_p(c.attention_probs_dropout_prob) {
  const int64_t w = c.block_width(), inner = heads * head_dim;
  query = register_module("query", Dense(w, inner, c.norm, c.dense_shape(prefix + "query")));
  key = register_module("key", Dense(w, inner, c.norm, c.dense_shape(prefix + "key")));
  value = register_module("value", Dense(w, inner, c.norm, c.dense_shape(prefix + "value")));
  dropout = register_module("dropout", torch::nn::Dropout(c.attention_probs_dropout_prob));
}

torch::Tensor BertSelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& additive_mask,
                                             AttentionTaps* taps) {
  const int64_t b = x.size(0), s = x.size(1);
  auto split = [&](const torch::Tensor& t) { return t.view({b, s, heads, head_dim}).transpose(1, 2); };
  auto q = split(query(x)), k = split(key(x)), v = split(value(x));
  torch::Tensor context;
  if (taps == nullptr) {
    // The fused kernel is faster and needs less memory; it is used whenever the caller does not
    // ask for the attention probabilities.
    context = at::scaled_dot_product_attention(q, k, v, additive_mask, is_training() ? dropout_p : 0.0);
  } else {
    auto scores = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(head_dim));
    auto probs = torch::softmax(scores + additive_mask, -1);
    if (taps->want_scores) taps->scores = scores;
    if (taps->want_probs) taps->probs = probs;
    context = torch::matmul(dropout(probs), v);
  }
  if (head_gate.defined()) context = context * head_gate.view({1, heads, 1, 1});
  return context.transpose(1, 2).reshape({b, s, heads * head_dim});
}

BertResidualOutputImpl::BertResidualOutputImpl(int64_t in, int64_t out, const BertConfig& c, const std::string& prefix) {
  dense = register_module("dense", Dense(in, out, c.norm, c.dense_shape(prefix + "dense")));
  LayerNorm = register_module("LayerNorm", Norm(c.norm, out, c.layer_norm_eps));
  dropout = register_module("dropout", torch::nn::Dropout(c.hidden_dropout_prob));
}

torch::Tensor BertResidualOutputImpl::forward(const torch::Tensor& x, const torch::Tensor& residual,
                                              const torch::Tensor& token_mask) {
  return LayerNorm(dropout(dense(x)) + residual, token_mask);
}

BertAttentionImpl::BertAttentionImpl(const BertConfig& c, int64_t heads, const std::string& prefix) {
  self = register_module("self", BertSelfAttention(c, heads, prefix + "self."));
  output = register_module("output", BertResidualOutput(heads * c.head_dim(), c.block_width(), c, prefix + "output."));
}

torch::Tensor BertAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& additive_mask,
                                         AttentionTaps* taps, const torch::Tensor& token_mask) {
  return output(self(x, additive_mask, taps), x, token_mask);
}

BertIntermediateImpl::BertIntermediateImpl(const BertConfig& c, int64_t width, const std::string& prefix)
    : act(c.hidden_act) {
  dense = register_module("dense", Dense(c.block_width(), width, c.norm, c.dense_shape(prefix + "dense")));
}

torch::Tensor BertIntermediateImpl::forward(const torch::Tensor& x) {
  auto y = activation(dense(x), act);
  return neuron_gate.defined() ? y * neuron_gate : y;
}

BertFeedForwardImpl::BertFeedForwardImpl(const BertConfig& c) {
  intermediate = register_module("intermediate", BertIntermediate(c, c.intermediate_size));
  output = register_module("output", BertResidualOutput(c.intermediate_size, c.block_width(), c));
}

torch::Tensor BertFeedForwardImpl::forward(const torch::Tensor& x, const torch::Tensor& token_mask) {
  return output(intermediate(x), x, token_mask);
}

BertBottleneckImpl::BertBottleneckImpl(const BertConfig& c) {
  input_dense = register_module("input_dense", Dense(c.hidden_size, c.bottleneck_size, c.norm));
  input_norm = register_module("input_LayerNorm", Norm(c.norm, c.bottleneck_size, c.layer_norm_eps));
  output = register_module("output", BertResidualOutput(c.bottleneck_size, c.hidden_size, c));
}

torch::Tensor BertBottleneckImpl::down(const torch::Tensor& x, const torch::Tensor& token_mask) {
  return input_norm(input_dense(x), token_mask);
}

BertLayerImpl::BertLayerImpl(const BertConfig& c, int64_t index, const BertLayerImpl* first) {
  const std::string p = "bert.encoder.layer." + std::to_string(index) + ".";
  if (first != nullptr && c.shares("attention")) {
    attention = first->attention;  // ALBERT sharing: layer 0's block, not registered again
  } else {
    attention = register_module("attention", BertAttention(c, c.heads_at(index), p + "attention."));
  }
  if (first != nullptr && c.shares("ffn")) {
    intermediate = first->intermediate;
    output = first->output;
  } else {
    intermediate = register_module("intermediate", BertIntermediate(c, c.intermediate_at(index), p + "intermediate."));
    output = register_module("output", BertResidualOutput(c.intermediate_at(index), c.block_width(), c, p + "output."));
  }
  if (c.bottleneck_size > 0) bottleneck = register_module("bottleneck", BertBottleneck(c));
  if (c.num_ffn > 1) {
    ffn = register_module("ffn", torch::nn::ModuleList());
    for (int64_t i = 1; i < c.num_ffn; ++i) ffn->push_back(BertFeedForward(c));
  }
}

torch::Tensor BertLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& additive_mask,
                                     AttentionTaps* taps, const torch::Tensor& token_mask) {
  auto h = bottleneck ? bottleneck->down(x, token_mask) : x;
  auto a = attention(h, additive_mask, taps, token_mask);
  if (ffn) {
    for (const auto& f : *ffn) a = f->as<BertFeedForwardImpl>()->forward(a, token_mask);
  }
  auto y = output(intermediate(a), a, token_mask);
  return bottleneck ? bottleneck->output(y, x, token_mask) : y;
}

BertEncoderImpl::BertEncoderImpl(const BertConfig& c) {
  layer = register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const BertLayerImpl* first = i == 0 ? nullptr : layer->ptr<BertLayerImpl>(0).get();
    layer->push_back(BertLayer(c, i, first));
  }
}

BertPoolerImpl::BertPoolerImpl(const BertConfig& c) {
  dense = register_module("dense", torch::nn::Linear(c.hidden_size, c.hidden_size));
}

torch::Tensor BertPoolerImpl::forward(const torch::Tensor& hidden) {
  return torch::tanh(dense(hidden.select(1, 0)));
}

BertModelImpl::BertModelImpl(const BertConfig& c) {
  embeddings = register_module("embeddings", BertEmbeddings(c));
  encoder = register_module("encoder", BertEncoder(c));
  pooler = register_module("pooler", BertPooler(c));
}

BertClassifierImpl::BertClassifierImpl(BertConfig c) : config_(std::move(c)) {
  config_.validate("model config");
  bert = register_module("bert", BertModel(config_));
  dropout = register_module("dropout", torch::nn::Dropout(config_.hidden_dropout_prob));
  classifier = register_module("classifier", torch::nn::Linear(config_.hidden_size, config_.num_labels));
  reset_parameters();
}

BertLayer BertClassifierImpl::layer(int64_t i) const {
  return bert->encoder->layer->ptr<BertLayerImpl>(i);
}

void BertClassifierImpl::reset_parameters() {
  torch::NoGradGuard guard;
  const double std = config_.initializer_range;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* lin = m->as<torch::nn::Linear>()) {
      lin->weight.normal_(0, std);
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* dense = m->as<Dense>()) {
      dense->reset(std);
    } else if (auto* emb = m->as<torch::nn::Embedding>()) {
      emb->weight.normal_(0, std);
    } else if (auto* norm = m->as<Norm>()) {
      norm->weight.fill_(1);
      norm->bias.zero_();
      if (norm->running_mean.defined()) {
        norm->running_mean.zero_();
        norm->running_var.fill_(1);
      }
    }
  }
  // HF zeroes the padding row of the word embeddings (nn.Embedding padding_idx).
  if (config_.pad_token_id >= 0 && config_.pad_token_id < config_.vocab_size) {
    bert->embeddings->word_embeddings->weight[config_.pad_token_id].zero_();
  }
}

int64_t BertClassifierImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

BertOutput BertClassifierImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                       const torch::Tensor& attention_mask, ForwardOptions options) {
  CONDENSE_CHECK(input_ids.dim() == 2, "input_ids must be [batch, seq], found {} dims", input_ids.dim());
  // Only batchnorm reads the token mask; the others get an undefined tensor and skip the work.
  const torch::Tensor token_mask = config_.norm == NormKind::BatchNorm ? attention_mask : torch::Tensor();
  return forward_embedded(bert->embeddings(input_ids, token_type_ids, token_mask), attention_mask, options);
}

BertOutput BertClassifierImpl::forward_embedded(const torch::Tensor& embedded, const torch::Tensor& attention_mask,
                                                ForwardOptions options) {
  BertOutput out;
  const torch::Tensor token_mask = config_.norm == NormKind::BatchNorm ? attention_mask : torch::Tensor();
  auto x = embedded;
  // Padding keys get the most negative float so that softmax gives them zero weight, as in HF.
  auto additive_mask = (1.0 - attention_mask.to(x.dtype()).unsqueeze(1).unsqueeze(2)) *
                       std::numeric_limits<float>::lowest();
  if (options.hidden_states) out.hidden_states.push_back(x);
  const bool tap = options.attentions || options.attention_scores;
  const int64_t n_layers = static_cast<int64_t>(bert->encoder->layer->size());
  std::vector<int64_t> order = active_layers;
  if (order.empty()) {
    for (int64_t i = 0; i < n_layers; ++i) order.push_back(i);
  }
  for (int64_t li : order) {
    CONDENSE_CHECK(li >= 0 && li < n_layers, "active layer {} is outside 0..{}", li, n_layers - 1);
    const auto& m = bert->encoder->layer[static_cast<std::size_t>(li)];
    AttentionTaps taps{options.attentions, options.attention_scores, {}, {}};
    // LayerDrop: a skipped layer passes its input through. Not while attention maps are tapped
    // (a distillation loss reads every layer's map).
    const bool skip = is_training() && layerdrop > 0 && !tap && torch::rand({1}).item<double>() < layerdrop;
    if (!skip) x = m->as<BertLayerImpl>()->forward(x, additive_mask, tap ? &taps : nullptr, token_mask);
    if (options.hidden_states) out.hidden_states.push_back(x);
    if (options.attentions) out.attentions.push_back(taps.probs);
    if (options.attention_scores) out.attention_scores.push_back(taps.scores);
  }
  out.pooled = bert->pooler(x);
  // fp32 logits under bf16 autocast too (softmax-based losses read them); a no-op otherwise.
  out.logits = classifier(dropout(out.pooled)).to(torch::kFloat);
  return out;
}

BertMlmTransformImpl::BertMlmTransformImpl(const BertConfig& c) {
  dense = register_module("dense", torch::nn::Linear(c.hidden_size, c.hidden_size));
  LayerNorm = register_module(
      "LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
}

BertMlmHeadImpl::BertMlmHeadImpl(const BertConfig& c) : act(c.hidden_act) {
  transform = register_module("transform", BertMlmTransform(c));
  bias = register_parameter("bias", torch::zeros({c.vocab_size}));
  torch::NoGradGuard guard;
  transform->dense->weight.normal_(0, c.initializer_range);
  transform->dense->bias.zero_();
}

torch::Tensor BertMlmHeadImpl::forward(const torch::Tensor& hidden, const torch::Tensor& word_embeddings) {
  auto h = transform->LayerNorm(activation(transform->dense(hidden), act));
  return torch::matmul(h, word_embeddings.t()) + bias;
}

}  // namespace condense::nn
