// Execution kernels of quantized Dense layers: the integer path (uint8 activations × int8
// weights, int32 accumulation in oneDNN, kernels/int8_gemm.h, rescaled per output channel) and
// the bf16 path (bf16 weights and inputs, float32 accumulation and output).
#include "condense/core/error.h"
#include "condense/kernels/int8_gemm.h"
#include "kernels.h"

namespace condense::quantize::detail {

namespace {

class Int8Kernel : public nn::DenseKernel {
 public:
  Int8Kernel(const QTensor& w, const torch::Tensor& bias, Activations mode, std::optional<ActRange> range)
      : mode_(mode), range_(range) {
    CONDENSE_CHECK(int8_capable(w.scheme), "int8 kernel: scheme {} is not 8-bit symmetric per-channel/per-tensor",
                   w.scheme.name());
    CONDENSE_CHECK(mode != Activations::None, "int8 kernel: activations must be quantized (static or dynamic)");
    CONDENSE_CHECK(mode != Activations::Static || range, "int8 kernel: static activations need a range");
    auto codes = w.codes.contiguous();
    auto scale = w.scale.to(torch::kFloat32).expand({w.shape[0]}).contiguous();
    auto b = bias.defined() ? bias.detach().to(torch::kFloat32).contiguous() : torch::Tensor();
    gemm_ = std::make_unique<kernels::Int8Gemm>(codes.data_ptr<int8_t>(), w.shape[0], w.shape[1],
                                                scale.data_ptr<float>(), b.defined() ? b.data_ptr<float>() : nullptr);
  }

  torch::Tensor forward(nn::DenseImpl& layer, const torch::Tensor& x) override {
    CONDENSE_CHECK(!(layer.is_training() && torch::GradMode::is_enabled()),
                   "int8 kernels run inference only (train with QAT fake-quant instead)");
    const int64_t k = gemm_->k();
    CONDENSE_CHECK(x.size(-1) == k, "int8 kernel: input width {} but the weight has {} columns", x.size(-1), k);
    auto x2 = x.detach().reshape({-1, k}).to(torch::kFloat32).contiguous();
    const ActRange r = mode_ == Activations::Static ? *range_ : dynamic_range(x2, range_ ? range_->symmetric : false);
    auto [scale, zp] = r.params();
    // Symmetric int8 in [-128, 127] is uint8 with zero point 128: the same levels.
    if (r.symmetric) zp = 128;
    const int64_t m = x2.size(0);
    auto xq = torch::empty({m, k}, torch::kUInt8);
    // The same float inverse scale as fake_quantize_per_tensor_affine, so the codes are identical.
    const float inv_scale = 1.0f / static_cast<float>(scale);
    kernels::quantize_u8(x2.data_ptr<float>(), m * k, inv_scale, static_cast<int32_t>(zp), xq.data_ptr<uint8_t>());
    auto y = torch::empty({m, gemm_->n()}, x2.options());
    gemm_->run(xq.data_ptr<uint8_t>(), m, static_cast<float>(scale), static_cast<int32_t>(zp), y.data_ptr<float>());
    auto sizes = x.sizes().vec();
    sizes.back() = gemm_->n();
    return y.reshape(sizes);
  }

 private:
  Activations mode_;
  std::optional<ActRange> range_;
  std::unique_ptr<kernels::Int8Gemm> gemm_;
};

class Bf16Kernel : public nn::DenseKernel {
 public:
  Bf16Kernel(const torch::Tensor& weight, const torch::Tensor& bias)
      : weight_(weight.detach().to(torch::kBFloat16).contiguous()),
        bias_(bias.defined() ? bias.detach().to(torch::kBFloat16) : torch::Tensor()) {}

  torch::Tensor forward(nn::DenseImpl& layer, const torch::Tensor& x) override {
    CONDENSE_CHECK(!(layer.is_training() && torch::GradMode::is_enabled()),
                   "bf16 kernels run inference only (train with QAT fake-quant instead)");
    return torch::nn::functional::linear(x.to(torch::kBFloat16), weight_, bias_).to(x.scalar_type());
  }

 private:
  torch::Tensor weight_, bias_;
};

}  // namespace

std::shared_ptr<nn::DenseKernel> make_bf16_kernel(const torch::Tensor& weight, const torch::Tensor& bias) {
  return std::make_shared<Bf16Kernel>(weight, bias);
}

std::shared_ptr<nn::DenseKernel> make_int8_kernel(const QTensor& weight, const torch::Tensor& bias, Activations mode,
                                                  std::optional<ActRange> range) {
  return std::make_shared<Int8Kernel>(weight, bias, mode, range);
}

}  // namespace condense::quantize::detail
