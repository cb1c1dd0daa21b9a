#include "condense/nn/textnet.h"

#include <limits>

#include "condense/core/error.h"
#include "condense/core/file.h"
#include "condense/core/json.h"
#include "condense/nn/checkpoint.h"

namespace condense::nn {

namespace fs = std::filesystem;

int64_t TextNetConfig::sentence_width() const {
  return arch == "bilstm" ? 2 * hidden_size : hidden_size * static_cast<int64_t>(kernel_sizes.size());
}

void TextNetConfig::validate(const std::string& source) const {
  CONDENSE_CHECK(arch == "bilstm" || arch == "cnn", "{}: field 'arch' is '{}', expected 'bilstm' or 'cnn'", source, arch);
  auto positive = [&](const char* field, int64_t v) {
    CONDENSE_CHECK(v > 0, "{}: field '{}' must be positive, found {}", source, field, v);
  };
  positive("vocab_size", vocab_size);
  positive("embedding_dim", embedding_dim);
  positive("hidden_size", hidden_size);
  positive("num_labels", num_labels);
  CONDENSE_CHECK(mlp_size >= 0, "{}: field 'mlp_size' must be >= 0, found {}", source, mlp_size);
  CONDENSE_CHECK(dropout >= 0 && dropout < 1, "{}: field 'dropout' must be in [0, 1), found {}", source, dropout);
  CONDENSE_CHECK(pad_token_id >= 0 && pad_token_id < vocab_size,
                 "{}: field 'pad_token_id' is {} but the vocabulary has {} entries", source, pad_token_id, vocab_size);
  if (arch == "cnn") {
    CONDENSE_CHECK(!kernel_sizes.empty(), "{}: field 'kernel_sizes' is empty; a cnn needs at least one width", source);
    for (auto k : kernel_sizes) positive("kernel_sizes", k);
  }
}

TextNetConfig TextNetConfig::from_json(const nlohmann::json& j, const std::string& source) {
  CONDENSE_CHECK(j.is_object(), "{}: expected a JSON object", source);
  const auto type = json_get_or<std::string>(j, "model_type", "", source);
  CONDENSE_CHECK(type == "condense-textnet", "{}: field 'model_type' is '{}', expected 'condense-textnet'", source,
                 type);
  TextNetConfig c;
  c.arch = json_get_or<std::string>(j, "arch", c.arch, source);
  c.vocab_size = json_get_or<int64_t>(j, "vocab_size", c.vocab_size, source);
  c.embedding_dim = json_get_or<int64_t>(j, "embedding_dim", c.embedding_dim, source);
  c.hidden_size = json_get_or<int64_t>(j, "hidden_size", c.hidden_size, source);
  c.kernel_sizes = json_get_or<std::vector<int64_t>>(j, "kernel_sizes", c.kernel_sizes, source);
  c.mlp_size = json_get_or<int64_t>(j, "mlp_size", c.mlp_size, source);
  c.dropout = json_get_or<double>(j, "dropout", c.dropout, source);
  c.num_labels = json_get_or<int64_t>(j, "num_labels", c.num_labels, source);
  c.pad_token_id = json_get_or<int64_t>(j, "pad_token_id", c.pad_token_id, source);
  c.pair = json_get_or<bool>(j, "pair", c.pair, source);
  c.validate(source);
  return c;
}

TextNetConfig TextNetConfig::load(const fs::path& config_json) {
  return from_json(read_json_file(config_json), config_json.string());
}

nlohmann::json TextNetConfig::to_json() const {
  return {{"model_type", "condense-textnet"}, {"arch", arch},           {"vocab_size", vocab_size},
          {"embedding_dim", embedding_dim},   {"hidden_size", hidden_size}, {"kernel_sizes", kernel_sizes},
          {"mlp_size", mlp_size},             {"dropout", dropout},     {"num_labels", num_labels},
          {"pad_token_id", pad_token_id},     {"pair", pair}};
}

bool is_textnet_config(const fs::path& config_json) {
  if (!fs::exists(config_json)) return false;
  try {
    auto j = nlohmann::json::parse(read_file(config_json));
    return j.is_object() && j.value("model_type", std::string()) == "condense-textnet";
  } catch (const nlohmann::json::exception&) {
    return false;  // the loader that follows reports the parse error with its context
  }
}

TextNetClassifierImpl::TextNetClassifierImpl(TextNetConfig config) : config_(std::move(config)) {
  config_.validate("TextNetConfig");
  embeddings = register_module(
      "embeddings",
      torch::nn::Embedding(torch::nn::EmbeddingOptions(config_.vocab_size, config_.embedding_dim).padding_idx(config_.pad_token_id)));
  if (config_.arch == "bilstm") {
    lstm = register_module("lstm", torch::nn::LSTM(torch::nn::LSTMOptions(config_.embedding_dim, config_.hidden_size)
                                                       .bidirectional(true)
                                                       .batch_first(true)));
  } else {
    convs = register_module("convs", torch::nn::ModuleList());
    for (auto k : config_.kernel_sizes) {
      // Wide convolution (padding k − 1): a sentence shorter than the kernel still has windows.
      convs->push_back(torch::nn::Conv1d(torch::nn::Conv1dOptions(config_.embedding_dim, config_.hidden_size, k).padding(k - 1)));
    }
  }
  const int64_t features = config_.sentence_width() * (config_.pair ? 4 : 1);
  int64_t head_in = features;
  if (config_.mlp_size > 0) {
    mlp = register_module("mlp", torch::nn::Linear(features, config_.mlp_size));
    head_in = config_.mlp_size;
  }
  classifier = register_module("classifier", torch::nn::Linear(head_in, config_.num_labels));
  dropout = register_module("dropout", torch::nn::Dropout(config_.dropout));
}

namespace {
// [batch, len, width] -> [batch, width]: maximum over the first lengths[b] positions of each row.
torch::Tensor masked_max(const torch::Tensor& h, const torch::Tensor& lengths) {
  auto valid = torch::arange(h.size(1), lengths.options()).unsqueeze(0) < lengths.unsqueeze(1);
  return h.masked_fill(~valid.unsqueeze(2), -std::numeric_limits<float>::infinity()).amax(1);
}
}  // namespace

torch::Tensor TextNetClassifierImpl::encode(const torch::Tensor& input_ids, const torch::Tensor& lengths_in) {
  auto lengths = lengths_in.to(torch::kInt64).clamp_min(1);
  const int64_t longest = std::min<int64_t>(input_ids.size(1), lengths.max().item<int64_t>());
  lengths = lengths.clamp_max(longest);
  auto ids = input_ids.narrow(1, 0, longest);
  auto x = dropout(embeddings(ids));  // [batch, len, emb]
  if (config_.arch == "bilstm") {
    // Packing runs each row over its own length only, so the backward direction starts at the
    // last real token, not at the padding.
    auto packed = torch::nn::utils::rnn::pack_padded_sequence(x, lengths, /*batch_first=*/true, /*enforce_sorted=*/false);
    auto out = std::get<0>(lstm->forward_with_packed_input(packed));
    auto h = std::get<0>(torch::nn::utils::rnn::pad_packed_sequence(out, /*batch_first=*/true));
    return masked_max(h, lengths);
  }
  auto valid = (torch::arange(longest, lengths.options()).unsqueeze(0) < lengths.unsqueeze(1)).to(x.dtype());
  auto xt = (x * valid.unsqueeze(2)).transpose(1, 2);  // [batch, emb, len], padding zeroed
  std::vector<torch::Tensor> pooled;
  for (std::size_t i = 0; i < convs->size(); ++i) {
    auto c = torch::relu(convs[i]->as<torch::nn::Conv1d>()->forward(xt)).transpose(1, 2);  // [batch, len+k-1, filters]
    pooled.push_back(masked_max(c, lengths + config_.kernel_sizes[i] - 1));
  }
  return torch::cat(pooled, 1);
}

torch::Tensor TextNetClassifierImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                                             const torch::Tensor& attention_mask) {
  auto mask = attention_mask.to(torch::kInt64);
  torch::Tensor features;
  if (!config_.pair) {
    features = encode(input_ids, mask.sum(1));
  } else {
    // Segment a is the prefix with token type 0, segment b follows it; shift b to the front.
    auto second = mask * token_type_ids.to(torch::kInt64);
    auto len_a = (mask - second).sum(1), len_b = second.sum(1);
    const int64_t seq = input_ids.size(1);
    auto idx = (torch::arange(seq, len_a.options()).unsqueeze(0) + len_a.unsqueeze(1)).clamp_max(seq - 1);
    auto u = encode(input_ids, len_a);
    auto v = encode(input_ids.gather(1, idx), len_b);
    features = torch::cat({u, v, u * v, (u - v).abs()}, 1);
  }
  auto h = dropout(features);
  if (mlp) h = dropout(torch::relu(mlp(h)));
  return classifier(h).to(torch::kFloat);  // fp32 logits under bf16 autocast too (losses read them)
}

int64_t TextNetClassifierImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

void save_textnet(TextNetClassifier& model, const fs::path& dir, const fs::path& tokenizer_dir,
                  const std::map<std::string, std::string>& extra_files) {
  save_module_folder(*model, model->config().to_json(), dir, tokenizer_dir, {{"condense", "textnet"}}, extra_files);
}

TextNetClassifier load_textnet(const fs::path& dir) {
  CONDENSE_CHECK(fs::is_directory(dir), "{}: not a model directory", dir.string());
  TextNetClassifier model(TextNetConfig::load(dir / "config.json"));
  load_module_weights(*model, dir / "model.safetensors");
  model->eval();
  return model;
}

}  // namespace condense::nn
