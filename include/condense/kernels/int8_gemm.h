#pragma once
/// \file
/// int8 matrix product for quantized linear layers (no LibTorch):
///   y[m, n] = sx · sw[n] · Σₖ (x[m, k] − zx) · w[n, k] + bias[n]
/// with uint8 activations x (scale sx, zero point zx), int8 weights w (one scale sw[n] per output
/// channel) and int32 accumulation. The fast path is oneDNN's matmul (Debian libdnnl-dev), which
/// picks the best int8 kernel of the CPU once (AVX-512 VNNI, AMX) — measured 4–7x above fp32 MKL
/// at BERT shapes on this project's machine (docs/RESULTS.md). The weights are reordered into
/// oneDNN's blocked layout once, at construction.
///
/// It is a kernels::Linear of type S8 (kernels/linear.h), which handles oneDNN's pitfalls.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace condense::kernels {

/// The scalar reference of Int8Gemm::run (same formula, plain loops).
void int8_gemm_ref(const uint8_t* x, int64_t m, int64_t k, float sx, int32_t zx, const int8_t* w, int64_t n,
                   const float* sw, const float* bias, float* y);

class Int8Gemm {
 public:
  /// w: int8 [n, k] row-major; sw: n scales; bias: n values or null. Copies what it needs.
  Int8Gemm(const int8_t* w, int64_t n, int64_t k, const float* sw, const float* bias);
  ~Int8Gemm();
  Int8Gemm(const Int8Gemm&) = delete;
  Int8Gemm& operator=(const Int8Gemm&) = delete;

  /// y (float [m, n]) from x (uint8 [m, k]). Thread-safe; primitives are built once per m.
  void run(const uint8_t* x, int64_t m, float sx, int32_t zx, float* y) const;
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  /// oneDNN's name for the implementation it chose (e.g. "brg:avx512_core_vnni").
  std::string implementation() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t n_, k_;
};

}  // namespace condense::kernels

namespace condense::kernels {

/// Activation quantization: q[i] = clamp(round_half_even(x[i] · inv_scale) + zp, 0, 255), the
/// rounding of LibTorch's fake_quantize_per_tensor_affine, so the integer path reproduces the
/// fake-quant model. An AVX-512 version is chosen once from CPUID (CONDENSE_ISA below avx512
/// forces the scalar one); quantize_u8_ref is its scalar twin.
void quantize_u8(const float* x, int64_t n, float inv_scale, int32_t zp, uint8_t* q);
void quantize_u8_ref(const float* x, int64_t n, float inv_scale, int32_t zp, uint8_t* q);
/// The ISA quantize_u8 runs with: "avx512" or "generic".
const char* quantize_isa();

}  // namespace condense::kernels
