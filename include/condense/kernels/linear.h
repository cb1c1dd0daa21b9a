#pragma once
/// \file
/// A linear layer y = epilogue(x · Wᵀ + b) for the inference runtime (no LibTorch), in fp32,
/// bf16 (bf16 inputs and weights, float accumulation and output) or int8 (uint8 inputs with a
/// zero point, int8 weights with per-output-channel scales, int32 accumulation). The products
/// run in oneDNN's matmul, which picks the CPU's best kernel once (AVX-512, AVX-512 BF16/VNNI,
/// AMX; capped by CONDENSE_ISA, kernels/isa.h); the weights are reordered into its blocked
/// layout at construction, and primitives are built once per row count. GELU runs as a fused
/// post-op. On AMX, int8 products whose shapes fit its tiles run in condense's own tile kernel
/// instead (src/kernels/int8_amx.h: oneDNN 2.6 uses a fraction of the tiles there). The scalar
/// twins are linear_ref and int8_gemm_ref (kernels/int8_gemm.h).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace condense::kernels {

enum class LinearType { F32, BF16, S8 };
/// The activation after the bias: Gelu is BERT's exact (erf) GELU, GeluTanh its tanh approximation.
enum class Epilogue { None, Gelu, GeluTanh, Relu, Silu };

struct LinearWeights {
  LinearType type = LinearType::F32;
  int64_t n = 0, k = 0;            ///< outputs and inputs
  const float* w = nullptr;        ///< F32, BF16: float [n, k] row-major (rounded to bf16 once for BF16)
  const int8_t* w_s8 = nullptr;    ///< S8: int8 codes [n, k] row-major
  const float* scales = nullptr;   ///< S8: n per-output-channel scales
  const float* bias = nullptr;     ///< n values, or null
  Epilogue epilogue = Epilogue::None;
};

/// How Linear spreads work it runs itself (the int8 product on AMX tiles; oneDNN threads on its
/// own): fn(n, body) calls body(begin, end) on disjoint ranges that cover [0, n), possibly on
/// several threads at once. The runtime installs LibTorch's at::parallel_for (same thread pool
/// and count as oneDNN's); by default, and after set_parallel_for(nullptr), body(0, n) runs on the
/// calling thread. The kernels themselves do not depend on LibTorch, hence the hook.
using ParallelFor = void (*)(int64_t n, const std::function<void(int64_t, int64_t)>& body);
void set_parallel_for(ParallelFor fn);

/// Whether oneDNN has a bf16 matmul for this CPU (AVX-512 and up, within CONDENSE_ISA); without
/// one a BF16 Linear cannot be built, and the runtime runs bf16-stored layers in fp32.
bool bf16_products_supported();

/// The scalar twin for F32: y[m, n] = epilogue(Σₖ x[m, k] w[n, k] + bias[n]).
void linear_ref(const float* x, int64_t m, const LinearWeights& w, float* y);

class Linear {
 public:
  explicit Linear(const LinearWeights& w);  ///< copies what it needs
  ~Linear();
  Linear(const Linear&) = delete;
  Linear& operator=(const Linear&) = delete;

  void run(const float* x, int64_t m, float* y) const;                          ///< F32
  void run(const uint16_t* x, int64_t m, float* y) const;                       ///< BF16 (bf16 bit patterns)
  void run(const uint8_t* x, int64_t m, float sx, int32_t zx, float* y) const;  ///< S8: x dequantizes as sx·(x − zx)
  LinearType type() const { return type_; }
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  /// Whether int8 products run as two saturation-free halves (CPUs without VNNI; see linear.cpp).
  bool splits_int8() const;
  /// oneDNN's name for the kernel it chose (e.g. "brg:avx512_core_amx_int8"), once it ran.
  std::string implementation() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  LinearType type_;
  int64_t n_, k_;
};

}  // namespace condense::kernels
