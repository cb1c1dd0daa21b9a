#pragma once
/// \file
/// Non-transformer students for cross-architecture distillation: a BiLSTM and a TextCNN sentence
/// classifier over the teacher's WordPiece vocabulary.
///
/// BiLSTM: Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural
/// Networks" — one bidirectional LSTM layer, max-pooled over time (Conneau et al. 2017), and a ReLU
/// MLP head. TextCNN: Kim 2014 — parallel convolutions of several widths, max-pooled over time.
/// Sentence pairs are encoded separately by the same encoder (siamese, as Tang et al.) and joined
/// as [u, v, u ⊙ v, |u − v|] before the head. Both read the batches BERT reads ([CLS] a [SEP] b
/// [SEP], right-padded) so one training loop and one teacher cache serve every student.
///
/// Saved as a folder like a BERT model (config.json with model_type "condense-textnet",
/// model.safetensors, vocab.txt); Hugging Face has no such architecture, so it is not exportable.

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace condense::nn {

struct TextNetConfig {
  std::string arch = "bilstm";  ///< "bilstm" or "cnn"
  int64_t vocab_size = 30522;
  int64_t embedding_dim = 300;
  /// bilstm: LSTM units per direction (sentence vector 2·hidden); cnn: filters per kernel width.
  int64_t hidden_size = 150;
  std::vector<int64_t> kernel_sizes{3, 4, 5};  ///< cnn only
  int64_t mlp_size = 200;                      ///< hidden ReLU layer of the head; 0 = linear head
  double dropout = 0.1;
  int64_t num_labels = 2;  ///< 1 = regression
  int64_t pad_token_id = 0;
  /// Sentence-pair tasks: encode segment a and segment b separately (token_type_ids tell them apart).
  bool pair = false;

  int64_t sentence_width() const;  ///< width of one sentence vector
  /// Throws naming `source` and the field when a value is invalid.
  void validate(const std::string& source) const;
  static TextNetConfig from_json(const nlohmann::json& j, const std::string& source);
  static TextNetConfig load(const std::filesystem::path& config_json);
  nlohmann::json to_json() const;
};

/// Whether a config.json describes a TextNet (model_type "condense-textnet") rather than BERT.
bool is_textnet_config(const std::filesystem::path& config_json);

class TextNetClassifierImpl : public torch::nn::Module {
 public:
  explicit TextNetClassifierImpl(TextNetConfig config);
  /// Logits [batch, num_labels] for right-padded [batch, seq] ids; `attention_mask` marks real
  /// tokens and `token_type_ids` the second segment of a pair. Padding never changes the result.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& token_type_ids,
                        const torch::Tensor& attention_mask);
  /// One sentence vector per row: [batch, sentence_width()] (max over real positions).
  torch::Tensor encode(const torch::Tensor& input_ids, const torch::Tensor& lengths);
  const TextNetConfig& config() const { return config_; }
  int64_t num_parameters() const;

  torch::nn::Embedding embeddings{nullptr};
  torch::nn::LSTM lstm{nullptr};                 ///< bilstm
  torch::nn::ModuleList convs{nullptr};          ///< cnn: one Conv1d per kernel size
  torch::nn::Linear mlp{nullptr}, classifier{nullptr};
  torch::nn::Dropout dropout{nullptr};

 private:
  TextNetConfig config_;
};
TORCH_MODULE(TextNetClassifier);

/// Writes `dir` atomically: config.json, model.safetensors, the tokenizer files of `tokenizer_dir`
/// and `extra_files` (name -> contents).
void save_textnet(TextNetClassifier& model, const std::filesystem::path& dir, const std::filesystem::path& tokenizer_dir,
                  const std::map<std::string, std::string>& extra_files = {});
/// Loads a folder written by save_textnet; every tensor must be present with its shape.
TextNetClassifier load_textnet(const std::filesystem::path& dir);

}  // namespace condense::nn
