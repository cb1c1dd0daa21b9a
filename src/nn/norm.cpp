#include "condense/nn/norm.h"

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

torch::Tensor NormImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const int64_t width = x.size(-1);
  CONDENSE_CHECK(width == weight.size(0), "{} of width {} got input of width {}", to_string(kind_), weight.size(0),
                 width);
  if (kind_ == NormKind::LayerNorm) return torch::layer_norm(x, {width}, weight, bias, eps_);
  if (kind_ != NormKind::BatchNorm) return x * weight + bias;
  if (!is_training()) return (x - running_mean) / torch::sqrt(running_var + eps_) * weight + bias;
  // Statistics over real tokens only: padding would otherwise pull the mean toward whatever the
  // padded positions hold, and differently in every batch.
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
  return (x - mean) / torch::sqrt(var + eps_) * weight + bias;
}

DenseImpl::DenseImpl(int64_t in, int64_t out, NormKind kind)
    : mode_(kind == NormKind::WeightNorm ? Mode::WeightNorm
            : kind == NormKind::CosineNorm ? Mode::Cosine
                                           : Mode::Plain) {
  CONDENSE_CHECK(in > 0 && out > 0, "dense layer needs positive sizes, found {} -> {}", in, out);
  if (mode_ == Mode::WeightNorm) {
    weight_v = register_parameter("weight_v", torch::empty({out, in}));
    weight_g = register_parameter("weight_g", torch::empty({out}));
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
  } else {
    weight.normal_(0, std);
  }
  if (mode_ == Mode::Cosine) scale.fill_(1);
  bias.zero_();
}

torch::Tensor DenseImpl::effective_weight() const {
  CONDENSE_CHECK(mode_ != Mode::Cosine, "a cosinenorm layer has no single effective weight");
  if (mode_ == Mode::Plain) return weight;
  return weight_v * (weight_g / weight_v.norm(2, {1})).unsqueeze(1);
}

torch::Tensor DenseImpl::forward(const torch::Tensor& x) { return kernel_ ? kernel_->forward(*this, x) : float_forward(x); }

torch::Tensor DenseImpl::float_forward(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  if (mode_ != Mode::Cosine) return F::linear(x, effective_weight(), bias);
  auto xn = F::normalize(x, F::NormalizeFuncOptions().dim(-1).eps(1e-6));
  auto wn = F::normalize(weight, F::NormalizeFuncOptions().dim(1).eps(1e-6));
  return F::linear(xn, wn) * scale + bias;
}

void DenseImpl::copy_from(const torch::Tensor& w, const torch::Tensor& b) {
  torch::NoGradGuard guard;
  const auto& target = mode_ == Mode::WeightNorm ? weight_v : weight;
  CONDENSE_CHECK(w.sizes() == target.sizes() && b.sizes() == bias.sizes(), "dense copy: shapes differ");
  if (mode_ == Mode::WeightNorm) {
    weight_v.copy_(w);
    weight_g.copy_(w.norm(2, {1}));
  } else {
    weight.copy_(w);
  }
  bias.copy_(b);
}

}  // namespace condense::nn
