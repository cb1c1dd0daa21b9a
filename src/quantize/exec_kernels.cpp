// Execution kernels of quantized Dense layers: the integer path (uint8 activations × int8
// weights, int32 accumulation in oneDNN, kernels/int8_gemm.h, rescaled per output channel) and
// the bf16 path (bf16 weights and inputs, float32 accumulation and output).
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdlib>
#include <cstring>

#include "condense/core/error.h"
#include "condense/kernels/int8_gemm.h"
#include "condense/kernels/linear.h"
#include "kernels.h"

namespace condense::quantize::detail {

namespace {

// Two int8 GEMMs: kernels::Int8Gemm (Debian's libdnnl 2.x, or on AMX CPUs condense's own tile
// kernel where the shape fits, kernels/linear.h; the default) or the oneDNN 3.x inside LibTorch
// through its onednn::qlinear_pointwise op. CONDENSE_INT8_BACKEND picks one: unset, "onednn"
// (Int8Gemm kept on libdnnl) or "torch"; bench/kernels/linear_bench.cpp and `condense bench`
// measure them (docs/RESULTS.md).
bool torch_backend() {  // read per layer built, so a process may compare both
  const char* b = std::getenv("CONDENSE_INT8_BACKEND");
  if (b == nullptr || std::strcmp(b, "onednn") == 0) return false;
  CONDENSE_CHECK(std::strcmp(b, "torch") == 0, "CONDENSE_INT8_BACKEND is '{}', expected onednn or torch", b);
  return true;
}

// LibTorch's oneDNN int8 linear: weights prepacked once, uint8 inputs with a zero point, float output.
class TorchInt8Linear {
 public:
  TorchInt8Linear(const torch::Tensor& codes, const torch::Tensor& scale, const torch::Tensor& bias)
      : op_(c10::Dispatcher::singleton().findSchemaOrThrow("onednn::qlinear_pointwise", "")),
        scale_(scale), zero_(torch::zeros({codes.size(0)}, torch::kLong)), bias_(bias) {
    torch::jit::Stack st{codes, c10::IValue()};
    c10::Dispatcher::singleton().findSchemaOrThrow("onednn::qlinear_prepack", "").callBoxed(&st);
    packed_ = st[0].toTensor();
  }
  torch::Tensor run(const torch::Tensor& xq, double sx, int64_t zx) const {
    torch::jit::Stack st{xq, sx, zx, packed_, scale_, zero_,
                         bias_.defined() ? c10::optional<torch::Tensor>(bias_) : c10::optional<torch::Tensor>(),
                         1.0, int64_t{0}, c10::optional<at::ScalarType>(at::kFloat), std::string("none"),
                         c10::List<std::optional<c10::Scalar>>(), std::string("")};
    op_.callBoxed(&st);
    return st[0].toTensor();
  }

 private:
  c10::OperatorHandle op_;
  torch::Tensor packed_, scale_, zero_, bias_;
};

class Int8Kernel : public nn::DenseKernel {
 public:
  Int8Kernel(const QTensor& w, const torch::Tensor& bias, Activations mode, std::optional<ActRange> range)
      : mode_(mode), range_(range) {
    CONDENSE_CHECK(int8_capable(w.scheme), "int8 kernel: scheme {} is not symmetric uniform per-channel/per-tensor",
                   w.scheme.name());
    CONDENSE_CHECK(mode != Activations::None, "int8 kernel: activations must be quantized (static or dynamic)");
    CONDENSE_CHECK(mode != Activations::Static || range, "int8 kernel: static activations need a range");
    auto [codes, scale] = int8_weights(w);
    auto b = bias.defined() ? bias.detach().to(torch::kFloat32).contiguous() : torch::Tensor();
    n_ = w.shape[0];
    k_ = w.shape[1];
    if (torch_backend()) {
      torch_ = std::make_unique<TorchInt8Linear>(codes, scale, b);
    } else {
      kernels::set_parallel_for(  // for the products condense runs itself (int8 on AMX tiles)
          [](int64_t n, const std::function<void(int64_t, int64_t)>& body) { at::parallel_for(0, n, 1, body); });
      gemm_ = std::make_unique<kernels::Int8Gemm>(codes.data_ptr<int8_t>(), n_, k_, scale.data_ptr<float>(),
                                                  b.defined() ? b.data_ptr<float>() : nullptr);
    }
  }

  torch::Tensor forward(nn::DenseImpl& layer, const torch::Tensor& x) override {
    CONDENSE_CHECK(!(layer.is_training() && torch::GradMode::is_enabled()),
                   "int8 kernels run inference only (train with QAT fake-quant instead)");
    const int64_t k = k_;
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
    torch::Tensor y;
    if (torch_) {
      y = torch_->run(xq, static_cast<float>(scale), zp);
    } else {
      y = torch::empty({m, n_}, x2.options());
      gemm_->run(xq.data_ptr<uint8_t>(), m, static_cast<float>(scale), static_cast<int32_t>(zp), y.data_ptr<float>());
    }
    auto sizes = x.sizes().vec();
    sizes.back() = n_;
    return y.reshape(sizes);
  }

 private:
  Activations mode_;
  std::optional<ActRange> range_;
  int64_t n_ = 0, k_ = 0;
  std::unique_ptr<kernels::Int8Gemm> gemm_;
  std::unique_ptr<TorchInt8Linear> torch_;
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
