#pragma once
/// \file
/// The inference runtime: a BERT classifier folder (fp32, pruned and shrunk, or quantized)
/// turned into packed weights once and run without autograd or LibTorch ops on the hot path.
/// Per layer: one fused QKV product, attention per sequence and head on unpadded tokens
/// (kernels/transformer.h), the output product, residual + LayerNorm, the FFN input product with
/// GELU fused in, the FFN output product, residual + LayerNorm. Products are fp32, bf16 or int8
/// (kernels/linear.h); attention is fp32, or bf16 products with an fp32 softmax where the products
/// are bf16 or int8 and the CPU has AVX-512 BF16; everything else is fp32.
///
/// Padding-free batches (the "packed" layout of TurboTransformers and FasterTransformer's
/// "remove padding"): the sequences of a batch are concatenated, so products run over the real
/// tokens only and attention runs per sequence. The pooler reads only each sequence's [CLS], so
/// the last layer runs its products after attention on those rows alone (not where an int8 product
/// takes its activation range per call, which depends on the rows it sees).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "condense/nn/bert.h"
#include "condense/quantize/quantize.h"

namespace condense::runtime {

/// Arithmetic of the encoder's products.
enum class Precision {
  Auto,  ///< as stored: int8 where the folder holds int8-capable codes with quantized activations,
         ///< bf16 where it holds bf16 weights, fp32 elsewhere
  F32,   ///< fp32 (quantized folders run their dequantized weights)
  BF16,  ///< bf16 inputs and weights, fp32 accumulation (AMX / AVX-512 BF16)
  Int8   ///< int8: stored codes where the folder has them; otherwise weights quantized at load
         ///< (symmetric, per output channel) and activations per call (dynamic, uint8 asymmetric)
};
std::string to_string(Precision p);
/// auto, fp32, bf16, int8; throws condense::Error otherwise.
Precision parse_precision(const std::string& name);

struct EngineOptions {
  Precision precision = Precision::Auto;
  bool profile = false;  ///< time each stage of every forward pass (Engine::profile)
  /// Attention's two products follow the layer's products: bf16 (kernels::attention_head_bf16)
  /// where those are bf16 or int8 and the CPU has AVX-512 BF16, fp32 elsewhere; true keeps fp32.
  bool fp32_attention = false;
  EngineOptions& with_fp32_attention(bool v) { fp32_attention = v; return *this; }
  EngineOptions& with_precision(Precision v) { precision = v; return *this; }
  EngineOptions& with_profile(bool v) { profile = v; return *this; }
};

/// Sequences of one batch without padding: ids and token types concatenated, sequence b is
/// [offsets[b], offsets[b + 1]).
struct TokenBatch {
  std::vector<int32_t> ids, types;
  std::vector<int64_t> offsets{0};
  void add(const std::vector<int32_t>& seq_ids, const std::vector<int32_t>& seq_types);
  int64_t size() const { return static_cast<int64_t>(offsets.size()) - 1; }
  int64_t tokens() const { return offsets.back(); }
  /// The rows of padded [batch, seq] ids/types whose mask is 1 (a prefix of each row).
  static TokenBatch from_padded(const torch::Tensor& ids, const torch::Tensor& types, const torch::Tensor& mask);
};

class Engine {
 public:
  /// Loads a folder written by condense (quantized or not). Shared or hashed layers are expanded,
  /// low-rank layers multiplied out. Throws condense::Error naming the folder and what the
  /// runtime cannot run (MobileBERT bottlenecks, stacked FFNs, norms other than LayerNorm).
  static Engine load(const std::filesystem::path& dir, const EngineOptions& options = {});
  /// From a model in memory; `q` (may be null) describes its quantized layers.
  static Engine from_model(nn::BertClassifier& model, const quantize::QuantizedModel* q, const EngineOptions& options,
                           const std::string& source = "model");
  Engine(Engine&&) noexcept;
  Engine& operator=(Engine&&) noexcept;
  ~Engine();

  /// Logits [batch, num_labels], row-major. One call at a time per engine (its workspace is reused).
  std::vector<float> forward(const TokenBatch& batch) const;
  /// The same on padded tensors (mask 1 on a prefix of each row), as a [batch, num_labels] tensor.
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& types, const torch::Tensor& mask) const;

  int64_t num_labels() const;
  int64_t vocab_size() const;
  int64_t max_positions() const;
  /// Per-product precision summary, e.g. "int8 (18 products)" or "int8 12, fp32 6".
  std::string precision() const;
  /// The kernels used: our ISA level and oneDNN's implementation names of the products.
  std::string kernels() const;
  /// Floating-point operations (2 per multiply-add) of one forward pass over the given sequence
  /// lengths, products and attention, as the engine runs it: the last layer's products after
  /// attention on [CLS] rows only where it does that. For comparing with the machine's peak.
  double flops(const std::vector<int64_t>& lengths) const;
  /// With EngineOptions::profile: mean milliseconds per forward pass spent in each stage
  /// (embeddings, input conversion, each product, attention, LayerNorm, head), in order.
  std::vector<std::pair<std::string, double>> profile() const;

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace condense::runtime
