#pragma once
/// \file
/// Normalisation choices for students: what follows each residual connection (`Norm`) and how the
/// encoder's linear layers are parameterised (`Dense`).
///
/// - layernorm (Ba et al. 2016): per token over the width — BERT's own.
/// - batchnorm (Ioffe & Szegedy 2015): per feature over the batch's real tokens (padding is
///   masked out of the statistics); running estimates for evaluation.
/// - nonorm (MobileBERT, Sun et al. 2020): γ ⊙ x + β with no statistics; it folds into the next
///   linear layer at inference, which is why MobileBERT uses it.
/// - weightnorm (Salimans & Kingma 2016): linear layers with W = g · v / ‖v‖ per output row;
///   activations then go through nonorm.
/// - cosinenorm (Luo et al. 2018): linear layers computing γ_j · cos(w_j, x) + b_j; activations
///   through nonorm.
///
/// The invariances that define them (tests/unit/nn_norm_test.cpp): scaling a weight row leaves
/// batchnorm, weightnorm and cosinenorm outputs unchanged, and layernorm's when the whole matrix is
/// scaled; scaling the input leaves batchnorm, layernorm and cosinenorm unchanged but not weightnorm.
///
/// Parameter names stay those of Hugging Face where the kind has them (`LayerNorm.weight`,
/// `dense.weight`); batchnorm adds `running_mean`/`running_var` buffers, weightnorm stores
/// `weight_v`/`weight_g`, cosinenorm adds `scale`.

#include <torch/torch.h>

#include <memory>
#include <string>

namespace condense::nn {

enum class NormKind { LayerNorm, BatchNorm, NoNorm, WeightNorm, CosineNorm };

/// Parses layernorm, batchnorm, nonorm, weightnorm, cosinenorm; throws naming the value otherwise.
NormKind parse_norm(const std::string& name);
std::string to_string(NormKind kind);

/// The activation normalisation of a kind: LayerNorm, BatchNorm, or NoNorm (for nonorm,
/// weightnorm and cosinenorm). Parameters `weight` (γ) and `bias` (β) of the width.
class NormImpl : public torch::nn::Module {
 public:
  NormImpl(NormKind kind, int64_t width, double eps = 1e-12, double momentum = 0.1);
  /// x: [..., width]; mask: [batch, seq] with 1 for tokens (batchnorm only; undefined = all real).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});
  NormKind kind() const { return kind_; }
  /// Share s of LayerNorm in the output of another kind: γ ⊙ (s · LN(x) + (1 − s) · N(x)) + β,
  /// with N the kind's own normalisation (the identity for nonorm). 0 by default and ignored by
  /// layernorm; distillation moves it from 1 to 0 to hand a teacher's LayerNorm over gradually
  /// (DistillOptions::norm_fade). Training state only: never saved.
  void set_layernorm_share(double share);
  double layernorm_share() const { return layernorm_share_; }
  torch::Tensor weight, bias, running_mean, running_var;

 private:
  /// N(x): batchnorm's standardisation (batch statistics in training), the identity otherwise.
  torch::Tensor normalize(const torch::Tensor& x, const torch::Tensor& mask);
  NormKind kind_;
  double eps_, momentum_;
  double layernorm_share_ = 0;
};
TORCH_MODULE(Norm);

class DenseImpl;

/// Replaces the arithmetic of a Dense layer, e.g. with quantized weights and activations
/// (quantize/). The layer keeps its parameters, so a model with a kernel installed still trains
/// (QAT), saves and loads; removing the kernel restores the float product.
class DenseKernel {
 public:
  virtual ~DenseKernel() = default;
  /// The layer's output for input x ([..., in]).
  virtual torch::Tensor forward(DenseImpl& layer, const torch::Tensor& x) = 0;
};

/// A linear layer whose parameterisation follows the kind: plain `weight`/`bias` (every kind but
/// the two below), weightnorm `weight_v`/`weight_g`/`bias`, cosinenorm `weight`/`scale`/`bias`.
/// How a Dense layer stores its matrix when it is not a full one (factorize/): a low-rank product
/// W = U·V with `weight_up` [out, rank] and `weight_down` [rank, in] (SVD factorization), or the
/// hashing trick (Chen et al. 2015, HashedNets) with `weight_buckets` [buckets] shared by all
/// entries: W[i][j] = ξ(i, j) · buckets[h(i, j)], h and the sign ξ fixed hashes of the position.
struct DenseShape {
  int64_t rank = 0;
  int64_t buckets = 0;
};

class DenseImpl : public torch::nn::Module {
 public:
  DenseImpl(int64_t in, int64_t out, NormKind kind = NormKind::LayerNorm, DenseShape shape = {});
  torch::Tensor forward(const torch::Tensor& x);
  /// The matrix the layer multiplies by (g · v / ‖v‖ for weightnorm, U·V for low rank, the
  /// hashed expansion for buckets).
  torch::Tensor effective_weight() const;
  /// Sets the layer from a plain linear layer's weight and bias so that it computes the same
  /// function (weightnorm: v = W, g = ‖W_row‖; cosinenorm: the rows, whose lengths it ignores), or
  /// the closest one it can hold (low rank: truncated SVD; hashed: bucket means of ξ·W).
  void copy_from(const torch::Tensor& weight, const torch::Tensor& bias);
  /// Hugging Face initialisation: weights normal(0, std), biases 0 (g = row norms, scale 1).
  void reset(double std);
  bool plain() const { return mode_ == Mode::Plain; }
  bool low_rank() const { return mode_ == Mode::LowRank; }
  bool hashed() const { return mode_ == Mode::Hashed; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  /// Installs (or with nullptr removes) the kernel forward() delegates to.
  void set_kernel(std::shared_ptr<DenseKernel> kernel) { kernel_ = std::move(kernel); }
  const std::shared_ptr<DenseKernel>& kernel() const { return kernel_; }
  /// The float product, whatever kernel is installed.
  torch::Tensor float_forward(const torch::Tensor& x);
  torch::Tensor weight, bias, weight_v, weight_g, scale, weight_up, weight_down, weight_buckets;

 private:
  enum class Mode { Plain, WeightNorm, Cosine, LowRank, Hashed } mode_;
  int64_t in_ = 0, out_ = 0;
  torch::Tensor hash_index_, hash_sign_;  // fixed, recomputed from the shape: never saved
  std::shared_ptr<DenseKernel> kernel_;
};
TORCH_MODULE(Dense);

}  // namespace condense::nn
