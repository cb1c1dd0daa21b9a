#pragma once
// Dense kernels of the quantize stage (internal): simulated 8-bit activations, QAT, calibration
// and output taps, and the integer int8 path.
#include <memory>
#include <optional>
#include <vector>

#include "condense/nn/norm.h"
#include "condense/quantize/quantize.h"

namespace condense::quantize::detail {

/// Weights already hold their dequantized values; inputs are quantized to 8 bits (range fixed
/// or, for dynamic quantization, the batch's own min/max) and dequantized: the arithmetic
/// of the integer path, in float. The reference the int8 kernel is tested against.
class FakeQuantKernel : public nn::DenseKernel {
 public:
  FakeQuantKernel(Activations mode, bool symmetric, std::optional<ActRange> range)
      : mode_(mode), symmetric_(symmetric), range_(range) {}
  torch::Tensor forward(nn::DenseImpl& layer, const torch::Tensor& x) override;

 private:
  Activations mode_;
  bool symmetric_;
  std::optional<ActRange> range_;
};

/// The range of x as a dynamic quantizer sees it (the batch's min and max).
ActRange dynamic_range(const torch::Tensor& x, bool symmetric);

/// Quantization-aware training: weights fake-quantized from the live parameters every step,
/// activations with EMA ranges while training (Q8BERT), frozen in eval mode.
class QatKernel : public nn::DenseKernel {
 public:
  QatKernel(Scheme weights, Activations mode, bool symmetric) : weights_(weights), mode_(mode), symmetric_(symmetric) {}
  torch::Tensor forward(nn::DenseImpl& layer, const torch::Tensor& x) override;
  std::optional<ActRange> range() const { return seen_ ? std::optional<ActRange>(ema_) : std::nullopt; }

 private:
  Scheme weights_;
  Activations mode_;
  bool symmetric_;
  ActRange ema_;
  bool seen_ = false;
};

/// Feeds a layer's inputs to an observer and computes the float product.
class ObserveKernel : public nn::DenseKernel {
 public:
  explicit ObserveKernel(RangeObserver observer) : observer_(std::move(observer)) {}
  torch::Tensor forward(nn::DenseImpl& layer, const torch::Tensor& x) override;
  const RangeObserver& observer() const { return observer_; }

 private:
  RangeObserver observer_;
};

/// Records the outputs of whatever kernel the layer had (layer diagnostics).
class TapKernel : public nn::DenseKernel {
 public:
  explicit TapKernel(std::shared_ptr<nn::DenseKernel> inner) : inner_(std::move(inner)) {}
  torch::Tensor forward(nn::DenseImpl& layer, const torch::Tensor& x) override;
  std::shared_ptr<nn::DenseKernel> inner_;
  std::vector<torch::Tensor> outputs;
};

/// The integer path: int8 weights packed once, inputs quantized to uint8 (static range or the
/// batch's), u8×s8 products accumulated in int32 by oneDNN (VNNI), rescaled per output channel.
std::shared_ptr<nn::DenseKernel> make_int8_kernel(const QTensor& weight, const torch::Tensor& bias,
                                                  Activations mode, std::optional<ActRange> range);

/// The bf16 path: weights held in bf16, inputs converted per call, products in bf16 with float
/// accumulation (LibTorch's oneDNN matmul: AMX or AVX-512 BF16 where the CPU has them).
std::shared_ptr<nn::DenseKernel> make_bf16_kernel(const torch::Tensor& weight, const torch::Tensor& bias);

}  // namespace condense::quantize::detail
