#pragma once
/// \file
/// Low-rank factorization and weight sharing, each building a new, smaller model from a trained
/// one (then fine-tuned or distilled by the caller):
///
/// - SVD factorization of the encoder's linear layers, W ≈ U_r·V_r (Eckart–Young: the truncated
///   SVD is the closest rank-r matrix), at a fixed rank or the smallest rank keeping a fraction of
///   the spectrum's energy Σσ²; a layer is factorized only where r·(in + out) < in·out.
/// - ALBERT's factorized embedding (Lan et al. 2020): vocab × H ≈ (vocab × E)·(E × H), from the
///   SVD of the trained word-embedding table.
/// - ALBERT's cross-layer sharing: all layers, attention only or FFN only, the shared block
///   initialised with the mean of the layers' blocks (or freshly, for distillation from scratch).
/// - The hashing trick (Chen et al. 2015, HashedNets): each linear layer's entries drawn from
///   in·out / compression shared values through a fixed hash, the values fitted by least squares.
///
/// k-means weight sharing (a per-layer codebook with packed indices) is a quantizer:
/// quantize::Method::KMeans (`condense quantize --method kmeans`, recipes/quantize/kmeans.yaml).

#include <map>
#include <string>

#include "condense/nn/bert.h"

namespace condense::factorize {

struct FactorizeOptions {
  int64_t rank = 0;      ///< rank of every encoder linear layer (0: use energy)
  double energy = 0;     ///< else the smallest rank keeping this fraction of Σσ² (0 < energy < 1)
  int64_t embedding_size = 0;  ///< ALBERT factorized embeddings of this width (0 = keep the table)

  FactorizeOptions& with_rank(int64_t v) { rank = v; return *this; }
  FactorizeOptions& with_energy(double v) { energy = v; return *this; }
  FactorizeOptions& with_embedding_size(int64_t v) { embedding_size = v; return *this; }
  /// Throws condense::Error naming the first invalid field.
  void validate() const;
};

/// What factorize() chose, per encoder linear layer.
struct FactorizeReport {
  std::map<std::string, int64_t> ranks;         ///< factorized layers and their rank
  std::map<std::string, double> energy_kept;    ///< Σσ² kept / Σσ², per factorized layer
  std::vector<std::string> kept_dense;          ///< layers where the rank would not save anything
};

/// A new model with low-rank encoder layers and/or a factorized embedding.
nn::BertClassifier factorize(nn::BertClassifier& model, const FactorizeOptions& options,
                             FactorizeReport* report = nullptr);

struct ShareOptions {
  std::string mode;       ///< "all", "attention", "ffn" or "" (no cross-layer sharing)
  bool from_scratch = false;  ///< shared blocks freshly initialised instead of averaged
  double hash_compression = 0;  ///< HashedNets: entries per shared value in each encoder layer (0 = off)

  ShareOptions& with_mode(std::string v) { mode = std::move(v); return *this; }
  ShareOptions& with_from_scratch(bool v = true) { from_scratch = v; return *this; }
  ShareOptions& with_hash_compression(double v) { hash_compression = v; return *this; }
  void validate() const;
};

/// A new model whose layers share blocks and/or whose linear layers are hashed.
nn::BertClassifier share(nn::BertClassifier& model, const ShareOptions& options);

/// The equivalent model without condense-only storage (shared blocks repeated per layer, hashed
/// layers expanded to full matrices): what `condense export` writes for Hugging Face.
nn::BertClassifier expand(nn::BertClassifier& model);

}  // namespace condense::factorize
