#include "condense/nn/norm.h"

#include <cmath>

#include "condense/core/error.h"

namespace condense::nn {

NormKind parse_norm(const std::string& name) {
  for (auto k : {NormKind::LayerNorm, NormKind::BatchNorm, NormKind::NoNorm, NormKind::WeightNorm,
                 NormKind::CosineNorm}) {
    if (name == to_string(k)) return k;
  }
  fail("unknown normalisation '{}' (expected layernorm, batchnorm, nonorm, weightnorm or cosinenorm)", name);
}

std::string to_string(NormKind kind) {
  switch (kind) {
    case NormKind::LayerNorm: return "layernorm";
    case NormKind::BatchNorm: return "batchnorm";
    case NormKind::NoNorm: return "nonorm";
    case NormKind::WeightNorm: return "weightnorm";
    case NormKind::CosineNorm: return "cosinenorm";
  }
  return "?";
}

NormImpl::NormImpl(NormKind kind, int64_t width, double eps, double momentum)
    : kind_(kind), eps_(eps), momentum_(momentum) {
  CONDENSE_CHECK(width > 0 && eps > 0 && momentum > 0 && momentum <= 1,
                 "{} needs width > 0, eps > 0 and momentum in (0, 1], found {}, {}, {}", to_string(kind), width, eps,
                 momentum);
  weight = register_parameter("weight", torch::ones({width}));
  bias = register_parameter("bias", torch::zeros({width}));
  if (kind == NormKind::BatchNorm) {
    running_mean = register_buffer("running_mean", torch::zeros({width}));
    running_var = register_buffer("running_var", torch::ones({width}));
  }
}

void NormImpl::set_layernorm_share(double share) {
  CONDENSE_CHECK(share >= 0 && share <= 1, "{}: LayerNorm share must be in [0,1], found {}", to_string(kind_), share);
  layernorm_share_ = share;
}

torch::Tensor NormImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const int64_t width = x.size(-1);
  CONDENSE_CHECK(width == weight.size(0), "{} of width {} got input of width {}", to_string(kind_), weight.size(0),
                 width);
  if (kind_ == NormKind::LayerNorm) return torch::layer_norm(x, {width}, weight, bias, eps_);
  auto y = normalize(x, mask);
  if (layernorm_share_ > 0) {
    y = layernorm_share_ * torch::layer_norm(x, {width}, {}, {}, eps_) + (1 - layernorm_share_) * y;
  }
  return y * weight + bias;
}

torch::Tensor NormImpl::normalize(const torch::Tensor& x, const torch::Tensor& mask) {
  if (kind_ != NormKind::BatchNorm) return x;
  if (!is_training()) return (x - running_mean) / torch::sqrt(running_var + eps_);
  // Statistics over real tokens only: padding would otherwise pull the mean toward whatever the
  // padded positions hold, and differently in every batch.
  const int64_t width = x.size(-1);
  auto flat = x.reshape({-1, width});
  auto w = mask.defined() ? mask.reshape({-1, 1}).to(x.dtype()) : torch::ones({flat.size(0), 1}, x.options());
  const auto n = w.sum();
  const double count = n.item<double>();
  CONDENSE_CHECK(count >= 2, "batchnorm needs at least 2 real tokens in a training batch, found {}", count);
  auto mean = (flat * w).sum(0) / n;
  auto var = ((flat - mean).pow(2) * w).sum(0) / n;
  {
    torch::NoGradGuard guard;
    running_mean.mul_(1 - momentum_).add_(mean.detach() * momentum_);
    running_var.mul_(1 - momentum_).add_(var.detach() * (count / (count - 1)) * momentum_);
  }
  return (x - mean) / torch::sqrt(var + eps_);
}

DenseImpl::DenseImpl(int64_t in, int64_t out, NormKind kind, DenseShape shape)
    : mode_(kind == NormKind::WeightNorm ? Mode::WeightNorm
            : kind == NormKind::CosineNorm ? Mode::Cosine
            : shape.rank > 0               ? Mode::LowRank
            : shape.buckets > 0            ? Mode::Hashed
                                           : Mode::Plain),
      in_(in),
      out_(out) {
  CONDENSE_CHECK(in > 0 && out > 0, "dense layer needs positive sizes, found {} -> {}", in, out);
  CONDENSE_CHECK((shape.rank == 0 && shape.buckets == 0) || mode_ == Mode::LowRank || mode_ == Mode::Hashed,
                 "low-rank and hashed layers need plain weights, not {}", to_string(kind));
  if (mode_ == Mode::WeightNorm) {
    weight_v = register_parameter("weight_v", torch::empty({out, in}));
    weight_g = register_parameter("weight_g", torch::empty({out}));
  } else if (mode_ == Mode::LowRank) {
    weight_up = register_parameter("weight_up", torch::empty({out, shape.rank}));
    weight_down = register_parameter("weight_down", torch::empty({shape.rank, in}));
  } else if (mode_ == Mode::Hashed) {
    weight_buckets = register_parameter("weight_buckets", torch::empty({shape.buckets}));
    // HashedNets: a fixed hash of (row, column) picks the bucket and a second bit the sign, so
    // only the buckets are stored. splitmix64 of the flat position, salted with the shape.
    hash_index_ = torch::empty({out, in}, torch::kLong);
    hash_sign_ = torch::empty({out, in});
    auto* idx = hash_index_.data_ptr<int64_t>();
    auto* sgn = hash_sign_.data_ptr<float>();
    const uint64_t salt = static_cast<uint64_t>(out) * 0x9E3779B97F4A7C15ULL ^ static_cast<uint64_t>(in);
    for (int64_t k = 0; k < out * in; ++k) {
      uint64_t z = static_cast<uint64_t>(k) + salt + 0x9E3779B97F4A7C15ULL;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      z ^= z >> 31;
      idx[k] = static_cast<int64_t>(z % static_cast<uint64_t>(shape.buckets));
      sgn[k] = (z >> 63) ? -1.0f : 1.0f;
    }
  } else {
    weight = register_parameter("weight", torch::empty({out, in}));
  }
  if (mode_ == Mode::Cosine) scale = register_parameter("scale", torch::ones({out}));
  bias = register_parameter("bias", torch::zeros({out}));
  reset(0.02);
}

void DenseImpl::reset(double std) {
  torch::NoGradGuard guard;
  if (mode_ == Mode::WeightNorm) {
    weight_v.normal_(0, std);
    weight_g.copy_(weight_v.norm(2, {1}));
  } else if (mode_ == Mode::LowRank) {
    // U·V then has entries of about std: each factor std^(1/2) / rank^(1/4).
    const double s = std::sqrt(std) / std::pow(static_cast<double>(weight_down.size(0)), 0.25);
    weight_up.normal_(0, s);
    weight_down.normal_(0, s);
  } else if (mode_ == Mode::Hashed) {
    weight_buckets.normal_(0, std);
  } else {
    weight.normal_(0, std);
  }
  if (mode_ == Mode::Cosine) scale.fill_(1);
  bias.zero_();
}

torch::Tensor DenseImpl::effective_weight() const {
  CONDENSE_CHECK(mode_ != Mode::Cosine, "a cosinenorm layer has no single effective weight");
  if (mode_ == Mode::Plain) return weight;
  if (mode_ == Mode::LowRank) return torch::matmul(weight_up, weight_down);
  if (mode_ == Mode::Hashed) return weight_buckets.index({hash_index_}) * hash_sign_;
  return weight_v * (weight_g / weight_v.norm(2, {1})).unsqueeze(1);
}

torch::Tensor DenseImpl::forward(const torch::Tensor& x) { return kernel_ ? kernel_->forward(*this, x) : float_forward(x); }

torch::Tensor DenseImpl::float_forward(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  // Two thin products instead of one: rank·(in + out) multiply-adds per row instead of in·out.
  if (mode_ == Mode::LowRank) return F::linear(F::linear(x, weight_down), weight_up, bias);
  if (mode_ != Mode::Cosine) return F::linear(x, effective_weight(), bias);
  auto xn = F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6));
  auto wn = F::normalize(weight, F::NormalizeFuncOptions().dim(1).eps(1e-6));
  return F::linear(xn, wn) * scale + bias;
}

void DenseImpl::copy_from(const torch::Tensor& w, const torch::Tensor& b) {
  torch::NoGradGuard guard;
  CONDENSE_CHECK(w.dim() == 2 && w.size(0) == out_ && w.size(1) == in_ && b.sizes() == bias.sizes(),
                 "dense copy: shapes differ");
  if (mode_ == Mode::LowRank) {
    // Eckart–Young: the truncated SVD is the closest rank-r matrix; the singular values are split
    // evenly (√σ on each side) so both factors train at similar scales.
    auto [u, sv, vh] = torch::linalg_svd(w.to(torch::kDouble), /*full_matrices=*/false);
    const int64_t r = weight_down.size(0);
    auto root = sv.slice(0, 0, r).sqrt();
    weight_up.copy_(u.slice(1, 0, r) * root.unsqueeze(0));
    weight_down.copy_(vh.slice(0, 0, r) * root.unsqueeze(1));
  } else if (mode_ == Mode::Hashed) {
    // Least squares for shared values: each bucket takes the mean of ξ·w over its entries.
    auto sums = torch::zeros({weight_buckets.size(0)}, torch::kDouble)
                    .index_add_(0, hash_index_.reshape({-1}), (w * hash_sign_).reshape({-1}).to(torch::kDouble));
    auto counts = torch::zeros({weight_buckets.size(0)}, torch::kDouble)
                      .index_add_(0, hash_index_.reshape({-1}), torch::ones({w.numel()}, torch::kDouble));
    weight_buckets.copy_(sums / counts.clamp_min(1));
  } else if (mode_ == Mode::WeightNorm) {
    weight_v.copy_(w);
    weight_g.copy_(w.norm(2, {1}));
  } else {
    weight.copy_(w);
  }
  bias.copy_(b);
}

}  // namespace condense::nn
