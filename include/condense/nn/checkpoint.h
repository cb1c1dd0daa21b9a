#pragma once
/// \file
/// Hugging Face checkpoint folders (config.json, model.safetensors, vocab.txt) in and out.
///
/// Loading accepts both BertModel names (`encoder.layer.0...`, as all-MiniLM-L6-v2 ships) and
/// BertForSequenceClassification names (`bert.encoder.layer.0...`). Every tensor the config
/// requires must be present with the right shape; the pooler and classifier may be absent
/// (a fresh head is initialised, as `transformers` does, and reported).
/// Saving writes the whole folder under a temporary name and renames it into place, so a crash
/// never leaves a half-written checkpoint.

#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "condense/nn/bert.h"

namespace condense::nn {

/// What a load did beyond copying tensors one to one.
struct LoadReport {
  /// Model parameters the file lacked, freshly initialised (e.g. `classifier.weight`).
  std::vector<std::string> initialized;
  /// File tensors the model does not use (e.g. `embeddings.position_ids`, an MLM head).
  std::vector<std::string> unused;
};

/// Tensors a caller supplies instead of the file's (model names), e.g. the dequantized weights of
/// a quantized file; `consumed` lists file tensors the caller has read itself (packed codes,
/// scales), which are then neither copied nor reported as unused.
struct WeightOverrides {
  std::map<std::string, torch::Tensor> tensors;
  std::set<std::string> consumed;
};

/// Loads `dir`/config.json and `dir`/model.safetensors. A quantized folder (config.json with
/// `quantization_config`) is refused: quantize::load reads those. `num_labels` overrides the config's
/// (a new task head); a head whose shape then differs from the file's is re-initialised.
BertClassifier load_classifier(const std::filesystem::path& dir, std::optional<int64_t> num_labels = std::nullopt,
                               LoadReport* report = nullptr);

/// Copies tensors from a safetensors file into `model` with the checks above.
void load_weights(BertClassifier& model, const std::filesystem::path& safetensors_file, LoadReport* report = nullptr,
                  const WeightOverrides* overrides = nullptr);

/// The modeling file save_pretrained adds for models with per-layer shapes (see BertConfig).
inline constexpr const char* kPrunedModelingFile = "modeling_condense.py";

/// Writes model.safetensors and config.json (plus modeling_condense.py when the model has
/// per-layer shapes, so `transformers` can load it with trust_remote_code), and copies the tokenizer files (vocab.txt,
/// tokenizer_config.json, tokenizer.json, special_tokens_map.json) found in `tokenizer_dir`.
/// `metadata` goes into the safetensors header; `extra_files` (name -> contents, e.g. metrics.json)
/// are written beside the model inside the same atomic publish.
void save_pretrained(BertClassifier& model, const std::filesystem::path& dir,
                     const std::filesystem::path& tokenizer_dir,
                     const std::map<std::string, std::string>& metadata = {},
                     const std::map<std::string, std::string>& extra_files = {});

/// The folder writer behind save_pretrained, for any module: its parameters and buffers under their
/// own names in model.safetensors, `config` as config.json, tokenizer files and `extra_files`,
/// published atomically.
void save_module_folder(torch::nn::Module& module, const nlohmann::json& config, const std::filesystem::path& dir,
                        const std::filesystem::path& tokenizer_dir, const std::map<std::string, std::string>& metadata,
                        const std::map<std::string, std::string>& extra_files);

/// The folder writer for named tensors: model.safetensors (in the given order), config.json,
/// tokenizer files and `extra_files`, published atomically.
void save_tensors_folder(const std::vector<std::pair<std::string, torch::Tensor>>& tensors, const nlohmann::json& config,
                         const std::filesystem::path& dir, const std::filesystem::path& tokenizer_dir,
                         const std::map<std::string, std::string>& metadata,
                         const std::map<std::string, std::string>& extra_files);

/// Copies every parameter and buffer of `module` from a safetensors file. Each must be present
/// with its shape and finite; a tensor the module does not have is an error too (strict: these
/// files are condense's own).
void load_module_weights(torch::nn::Module& module, const std::filesystem::path& safetensors_file);

/// Sparse storage of unstructured pruning (prune/): each weight with enough zeros is stored as
/// `<name>_values` (its nonzero entries, fp32, row-major) and `<name>_bitmap` (uint8, bit j of byte
/// k set when entry 8k + j is nonzero) — 32·d + 1 bits per entry at density d, so a weight is stored
/// this way only below 31/32 density — and config.json lists them under `sparsity_config`.
/// load_classifier decodes such folders transparently (they are ordinary condense models);
/// `condense export` writes them dense for Hugging Face.
struct SparseSaveReport {
  int64_t sparse_tensors = 0;
  int64_t stored_values = 0, dense_entries = 0;  ///< over the sparse tensors
};
SparseSaveReport save_sparse(BertClassifier& model, const std::filesystem::path& dir,
                             const std::filesystem::path& tokenizer_dir,
                             const std::map<std::string, std::string>& metadata = {},
                             const std::map<std::string, std::string>& extra_files = {});

/// Whether a safetensors file carries a masked-LM head (`cls.predictions.bias`).
bool has_mlm_head(const std::filesystem::path& safetensors_file);
/// Loads `cls.predictions.*` into `head`; throws naming the tensor when one is missing or has
/// another shape (the decoder weight, tied to the word embeddings, is not read).
void load_mlm_head(BertMlmHead& head, const std::filesystem::path& safetensors_file);

/// Replaces directory `final_dir` by `staging_dir` (both on one file system) in two renames.
void publish_directory(const std::filesystem::path& staging_dir, const std::filesystem::path& final_dir);

/// Bytes of model.safetensors in `dir` (the size on disk users compare).
std::uintmax_t checkpoint_bytes(const std::filesystem::path& dir);

}  // namespace condense::nn
