// The int8 product of kernels::Linear on AMX tiles (internal to the kernels; linear.cpp picks it).
//
// oneDNN 2.6 (Debian's) runs the runtime's int8 products on AMX at 0.5–1.1 TOP/s on two cores
// with an fp32 output, a small part of what the tiles can do (TDPBUSD alone: 3.7–4.2 TOP/s on two
// cores, bench/kernels/peak_bench.cpp). This kernel keeps a 32-row block of the input in L1 and
// streams the packed weights past it with a software prefetch, and applies scales, zero point,
// bias and activation to the tile's int32 sums while they are in L1: 1.1–2.7x oneDNN's speed on
// BERT's products alone (bench/kernels/linear_bench.cpp, BM_Int8Epilogue; docs/RESULTS.md).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "condense/kernels/linear.h"

namespace condense::kernels {

class AmxInt8 {
 public:
  /// The shapes the tiles take whole: 32 output columns (two 16-column tiles) and 64 inputs (one
  /// tile row of bytes) at a time. Others stay on oneDNN.
  static bool fits(int64_t n, int64_t k) { return n > 0 && k > 0 && n % 32 == 0 && k % 64 == 0; }
  /// w: int8 [n, k] row-major, scales: n, bias: n or null. Requires fits(n, k); copies what it needs.
  AmxInt8(const int8_t* w, int64_t n, int64_t k, const float* scales, const float* bias, Epilogue epilogue);
  /// y[m, n] = epilogue(sx · scales[n] · Σₖ (x[m, k] − zx) · w[n, k] + bias[n]), the formula of
  /// int8_gemm_ref. Needs active_isa() == Isa::Avx512Amx. Runs over the parallel_for of linear.h.
  void run(const uint8_t* x, int64_t m, float sx, int32_t zx, float* y) const;

 private:
  int64_t n_, k_;
  std::vector<int8_t> packed_;   // per 16 output columns, k/4 rows of 16 columns × 4 inputs (TDPBUSD's B)
  std::vector<int32_t> colsum_;  // Σₖ w[n, k]: the zero point's share, zx · colsum, is taken off the sums
  std::vector<float> scales_, bias_;
  Epilogue epilogue_;
};

/// The scheduler set by set_parallel_for (linear.h), or body(0, n) on this thread (linear.cpp).
void run_parallel(int64_t n, const std::function<void(int64_t, int64_t)>& body);

}  // namespace condense::kernels
