// kernels/int8_amx.h: the int8 product on AMX tiles (TDPBUSD: uint8 × int8 → int32).
//
// Tiles (all 16 rows × 64 bytes): 0-3 the int32 sums of a 32 × 32 output block (rows 0-15 and
// 16-31 × columns 0-15 and 16-31), 4-5 the input's two 16-row halves (64 inputs each), 6-7 the
// weights of the two 16-column halves in TDPBUSD's layout (16 rows of 4 consecutive inputs for
// 16 columns). One 32-row input block (32 × k bytes, 12 KiB at k = 384) stays in L1 while the
// packed weights stream from L2 past it, the next step's weights prefetched (without it the tile
// loads wait on L2: a quarter slower in a standalone probe at k = 384, n = 1536).
//
// This file is compiled for AVX-512 and AMX (CMakeLists.txt) and runs only where active_isa() is
// avx512_amx. Template code it shares with other files (std containers) must stay inlined: an
// out-of-line copy here could be the one the linker keeps for every file, and would then run
// AVX-512 instructions on CPUs without them (`nm -C` on its object shows no weak symbols).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12, inside its own AVX-512 headers
#include "int8_amx.h"

#include <immintrin.h>

#define CONDENSE_VEC_BYTES 64
#define CONDENSE_ISA_NS int8amx
#include "transformer_body.h"

#include <cstring>
#include <stdexcept>

#include "amx.h"
#include "condense/kernels/isa.h"

namespace condense::kernels {

namespace int8amx {
namespace {

inline vf vabs(vf x) { return x < 0 ? -x : x; }

// 1 / x from the 14-bit estimate and one Newton step (~1 ulp of fp32): a division instruction
// costs an order of magnitude more throughput, and the activations need one per element.
inline vf vrcp(vf x) {
  const vf r = (vf)_mm512_rcp14_ps((__m512)x);
  return r * (2.0f - x * r);
}

// erf by Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7), with e^(−x²) from vexp.
inline vf verf(vf x) {
  const vf a = vabs(x);
  const vf t = vrcp(1.0f + 0.3275911f * a);
  vf p = splat(1.061405429f);
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const vf y = 1.0f - p * t * vexp(-a * a);
  return x < 0 ? -y : y;
}

// The activations of Epilogue (linear_ref has the exact formulas), with every exponent ≤ 0.
inline vf activate(vf v, Epilogue e) {
  switch (e) {
    case Epilogue::None: break;
    case Epilogue::Gelu: return 0.5f * v * (1.0f + verf(v * 0.70710678118654752f));
    case Epilogue::GeluTanh: {
      const vf u = 0.79788456080286536f * (v + 0.044715f * v * v * v);
      const vf e2 = vexp(-2.0f * vabs(u));
      const vf th = (1.0f - e2) * vrcp(1.0f + e2);
      return 0.5f * v * (1.0f + (u < 0 ? -th : th));
    }
    case Epilogue::Relu: return vmax(v, vf{});
    case Epilogue::Silu: {
      const vf e1 = vexp(-vabs(v));
      return v * (v >= 0 ? 1.0f : e1) * vrcp(1.0f + e1);
    }
  }
  return v;
}

__attribute__((target("amx-tile,amx-int8"))) void product_32x32(const uint8_t* a, const int8_t* b0, const int8_t* b1,
                                                                int64_t k, int32_t* sums) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const int64_t steps = k / 64;
  for (int64_t t = 0; t < steps; ++t) {
    if (t + 1 < steps) {  // the next step's weights (2 × 1 KiB), so the tile loads find them in L1
      for (int64_t l = 0; l < 1024; l += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(b0 + (t + 1) * 1024 + l), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(b1 + (t + 1) * 1024 + l), _MM_HINT_T0);
      }
    }
    _tile_loadd(4, a + t * 64, k);
    _tile_loadd(5, a + 16 * k + t * 64, k);
    _tile_loadd(6, b0 + t * 1024, 64);
    _tile_loadd(7, b1 + t * 1024, 64);
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 4, 7);
    _tile_dpbusd(2, 5, 6);
    _tile_dpbusd(3, 5, 7);
  }
  _tile_stored(0, sums, 64);
  _tile_stored(1, sums + 256, 64);
  _tile_stored(2, sums + 512, 64);
  _tile_stored(3, sums + 768, 64);
}

}  // namespace
}  // namespace int8amx

AmxInt8::AmxInt8(const int8_t* w, int64_t n, int64_t k, const float* scales, const float* bias, Epilogue epilogue)
    : n_(n), k_(k), epilogue_(epilogue) {
  if (!fits(n, k)) throw std::invalid_argument("AmxInt8: n must be a multiple of 32 and k of 64");
  packed_.resize(static_cast<std::size_t>(n * k));
  colsum_.assign(static_cast<std::size_t>(n), 0);
  for (int64_t j = 0; j < n; ++j) {
    const int8_t* wr = w + j * k;
    int32_t s = 0;
    for (int64_t t = 0; t < k; ++t) {
      s += wr[t];
      // column block j / 16, row t / 4 of that block, column j % 16 within the row, input t % 4
      packed_[static_cast<std::size_t>(((j / 16) * (k / 4) + t / 4) * 64 + (j % 16) * 4 + t % 4)] = wr[t];
    }
    colsum_[static_cast<std::size_t>(j)] = s;
  }
  scales_.assign(scales, scales + n);
  bias_.assign(static_cast<std::size_t>(n), 0.0f);
  if (bias != nullptr) std::memcpy(bias_.data(), bias, static_cast<std::size_t>(n) * sizeof(float));
}

void AmxInt8::run(const uint8_t* x, int64_t m, float sx, int32_t zx, float* y) const {
  using namespace int8amx;
  if (active_isa() != Isa::Avx512Amx) throw std::logic_error("AmxInt8::run needs AMX (active_isa avx512_amx)");
  if (m <= 0) return;
  const int64_t k = k_, n = n_, blocks = (m + 31) / 32;
  // Work units: a 32-row block × a run of 32-column blocks. Enough row blocks keep all columns in
  // one unit (the input block is read once); a few rows (batch 1) split the columns instead.
  const int64_t col_units = blocks >= 8 ? 1 : n / 32, cols_per_unit = n / col_units;
  run_parallel(blocks * col_units, [&](int64_t begin, int64_t end) {
    amx::configure_16x64();
    alignas(64) int32_t sums[1024];
    std::vector<uint8_t> tail;  // the last block padded with zero rows, copied once per thread
    for (int64_t u = begin; u < end; ++u) {
      const int64_t blk = u / col_units, c0 = u % col_units * cols_per_unit;
      const int64_t row0 = blk * 32, rows = std::min<int64_t>(32, m - row0);
      const uint8_t* a = x + row0 * k;
      if (rows < 32) {  // a row count that is not a multiple of 32
        if (tail.empty()) {
          tail.assign(static_cast<std::size_t>(32 * k), 0);
          std::memcpy(tail.data(), a, static_cast<std::size_t>(rows * k));
        }
        a = tail.data();
      }
      for (int64_t c = c0; c < c0 + cols_per_unit; c += 32) {
        const int8_t* b0 = packed_.data() + c / 16 * (k / 4) * 64;
        product_32x32(a, b0, b0 + (k / 4) * 64, k, sums);
        for (int64_t half = 0; half < 2; ++half) {
          const int64_t col = c + half * 16;
          const vf scale = sx * load(scales_.data() + col), bias = load(bias_.data() + col);
          const vi zero_share = zx * *reinterpret_cast<const vi*>(colsum_.data() + col);
          for (int64_t r = 0; r < rows; ++r) {
            const int32_t* s = sums + (r / 16 * 2 + half) * 256 + r % 16 * 16;
            const vi acc = *reinterpret_cast<const vi*>(s) - zero_share;
            store(y + (row0 + r) * n + col, activate(__builtin_convertvector(acc, vf) * scale + bias, epilogue_));
          }
        }
      }
    }
    _tile_release();
  });
}

}  // namespace condense::kernels
