// Attention with bf16 products (kernels/transformer.h: attention_head_bf16), AVX-512 BF16.
//
// VDPBF16PS adds, per fp32 lane, the products of one pair of bf16 numbers: twice the
// multiply-adds of an fp32 FMA per instruction. Scores: lanes are 16 keys and the pair runs
// along the head width, so Kᵀ is stored as pairs Kp[c/2][j] = (k[j][c], k[j][c+1]) and a query
// pair is broadcast. P·V: lanes are 16 head columns and the pair runs along the keys, so V is
// stored as Vp[j/2][c] = (v[j][c], v[j+1][c]) and a pair of probabilities is broadcast. The
// softmax stays fp32 (the fp32 kernel's exp); its normalisation uses the fp32 sum.
//
// With AMX (Intel Sapphire Rapids and later) the same pair layouts are tiles: TDPBF16PS multiplies a
// 16 × 32 bf16 tile (16 queries × 32 head columns, or 16 queries × 32 keys of probabilities) by 16
// rows of pairs (Kᵀ or V) into a 16 × 16 fp32 tile, 8,192 multiply-adds per instruction, where
// VDPBF16PS does 32 (and on those CPUs at half the fp32 FMA rate). Head widths 32 and 64 (the tile
// is 32 bf16 wide); others take the VDPBF16PS path.
// GCC 12 warns inside its own AVX-512 headers (an "uninitialized" __Y in _mm512_undefined_*).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define CONDENSE_VEC_BYTES 64
#define CONDENSE_ISA_NS avx512bf16
#include "transformer_body.h"

#include "amx.h"
#include "condense/kernels/transformer.h"

#include <stdexcept>

namespace condense::kernels {

namespace avx512bf16 {
namespace {

// 16 floats → 16 bf16 (round to nearest even; the instruction flushes denormals to zero).
inline __m256i bf16x16(const float* x) { return (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x)); }
inline __m256i bf16x16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

// Kᵀ as pairs kp[c/2][j] = (k[j][c], k[j][c+1]) and V as pairs vp[j/2][c] = (v[j][c], v[j+1][c]),
// keys from len up to lp zero.
void pack_pairs(const float* k, const float* v, int64_t ld, int64_t len, int64_t d, int64_t lp, uint32_t* kp,
                uint32_t* vp) {
  const __m512 zero = _mm512_setzero_ps();
  alignas(64) uint32_t row[8];
  for (int64_t j = 0; j < lp; ++j) {
    for (int64_t c = 0; c < d; c += 16) {
      if (j < len) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(row), bf16x16(k + j * ld + c));
      } else {
        std::memset(row, 0, sizeof row);
      }
      for (int64_t t = 0; t < 8; ++t) kp[(c / 2 + t) * lp + j] = row[t];
    }
  }
  for (int64_t j = 0; j < lp; j += 2) {
    for (int64_t c = 0; c < d; c += 16) {
      const __m256i a = bf16x16(j < len ? _mm512_loadu_ps(v + j * ld + c) : zero);
      const __m256i b = bf16x16(j + 1 < len ? _mm512_loadu_ps(v + (j + 1) * ld + c) : zero);
      // unpack interleaves within 128-bit halves: lo = columns 0-3 | 8-11, hi = 4-7 | 12-15
      const __m256i lo = _mm256_unpacklo_epi16(a, b), hi = _mm256_unpackhi_epi16(a, b);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(vp + j / 2 * d + c), _mm256_permute2x128_si256(lo, hi, 0x20));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(vp + j / 2 * d + c + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
  }
}

void attention(const float* q, const float* k, const float* v, int64_t ld, int64_t len, int64_t d, float scale,
               float* out, int64_t ld_out, float* scratch) {
  const int64_t lp = (len + 15) / 16 * 16, dp = d / 2;
  auto* kp = reinterpret_cast<uint32_t*>(scratch);        // dp × lp pairs
  uint32_t* vp = kp + dp * lp;                            // lp/2 × d pairs
  float* s = reinterpret_cast<float*>(vp + lp / 2 * d);   // R × lp scores, then probabilities
  auto* pb = reinterpret_cast<uint16_t*>(s + R * lp);     // R × lp probabilities in bf16
  auto* qb = pb + R * lp;                                 // R × d scaled queries in bf16
  pack_pairs(k, v, ld, len, d, lp, kp, vp);
  const __m512 vscale = _mm512_set1_ps(scale), zero = _mm512_setzero_ps();
  for (int64_t i0 = 0; i0 < len; i0 += R) {
    const int64_t rows = std::min<int64_t>(R, len - i0);
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t c = 0; c < d; c += 16) {
        const __m512 x = r < rows ? _mm512_mul_ps(_mm512_loadu_ps(q + (i0 + r) * ld + c), vscale) : zero;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb + r * d + c), bf16x16(x));
      }
    }
    for (int64_t j = 0; j < lp; j += 16) {
      __m512 acc[R];
      for (int64_t r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
      for (int64_t c = 0; c < dp; ++c) {
        const __m512bh kv = (__m512bh)_mm512_loadu_si512(kp + c * lp + j);
        for (int64_t r = 0; r < R; ++r) {
          uint32_t qc;
          std::memcpy(&qc, qb + r * d + 2 * c, 4);
          acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_set1_epi32(static_cast<int>(qc)), kv);
        }
      }
      for (int64_t r = 0; r < R; ++r) _mm512_storeu_ps(s + r * lp + j, acc[r]);
    }
    float inv[R];
    for (int64_t r = 0; r < R; ++r) {
      float* sr = s + r * lp;
      if (r >= rows) {
        for (int64_t j = 0; j < lp; ++j) pb[r * lp + j] = 0;
        continue;
      }
      inv[r] = softmax_row(sr, len, lp);
      for (int64_t j = 0; j < lp; j += 16) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(pb + r * lp + j), bf16x16(sr + j));
      }
    }
    for (int64_t c = 0; c < d; c += 32) {
      const bool two = c + 16 < d;
      __m512 a0[R], a1[R];
      for (int64_t r = 0; r < R; ++r) a0[r] = a1[r] = _mm512_setzero_ps();
      for (int64_t jj = 0; jj < (len + 1) / 2; ++jj) {
        const __m512bh v0 = (__m512bh)_mm512_loadu_si512(vp + jj * d + c);
        const __m512bh v1 = two ? (__m512bh)_mm512_loadu_si512(vp + jj * d + c + 16) : v0;
        for (int64_t r = 0; r < R; ++r) {
          uint32_t pr;
          std::memcpy(&pr, pb + r * lp + 2 * jj, 4);
          const __m512bh p = (__m512bh)_mm512_set1_epi32(static_cast<int>(pr));
          a0[r] = _mm512_dpbf16_ps(a0[r], p, v0);
          if (two) a1[r] = _mm512_dpbf16_ps(a1[r], p, v1);
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        _mm512_storeu_ps(out + (i0 + r) * ld_out + c, _mm512_mul_ps(a0[r], _mm512_set1_ps(inv[r])));
        if (two) _mm512_storeu_ps(out + (i0 + r) * ld_out + c + 16, _mm512_mul_ps(a1[r], _mm512_set1_ps(inv[r])));
      }
    }
  }
}

// The AMX kernel: 16 queries at a time. Tiles (all 16 rows × 64 bytes): 0-1 the queries' bf16
// (head columns 0-31, 32-63), then the P·V accumulators 0-3 (16 head columns each); 4 a tile of
// probabilities; 5 a tile of V pairs; 6 a block of 16 × 16 scores; 7 a tile of Kᵀ pairs.
template <int64_t D>
void attention_amx(const float* q, const float* k, const float* v, int64_t ld, int64_t len, float scale, float* out,
                   int64_t ld_out, float* scratch) {
  static_assert(D == 32 || D == 64, "one or two 32-column tiles per head");
  const int64_t lp = (len + 31) / 32 * 32, lk = (len + 15) / 16 * 16;  // keys for P·V tiles / for scores
  auto* kp = reinterpret_cast<uint32_t*>(scratch);        // D/2 × lp pairs
  uint32_t* vp = kp + D / 2 * lp;                         // lp/2 × D pairs
  float* s = reinterpret_cast<float*>(vp + lp / 2 * D);   // 16 × lp scores, then probabilities
  auto* pb = reinterpret_cast<uint16_t*>(s + 16 * lp);    // 16 × lp probabilities in bf16
  auto* qb = pb + 16 * lp;                                // 16 × D scaled queries in bf16
  float* o = reinterpret_cast<float*>(qb + 16 * D);       // 16 × D unnormalised context
  pack_pairs(k, v, ld, len, D, lp, kp, vp);
  amx::configure_16x64();
  const __m512 vscale = _mm512_set1_ps(scale), zero = _mm512_setzero_ps();
  for (int64_t i0 = 0; i0 < len; i0 += 16) {
    const int64_t rows = std::min<int64_t>(16, len - i0);
    for (int64_t r = 0; r < 16; ++r) {
      for (int64_t c = 0; c < D; c += 16) {
        const __m512 x = r < rows ? _mm512_mul_ps(_mm512_loadu_ps(q + (i0 + r) * ld + c), vscale) : zero;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb + r * D + c), bf16x16(x));
      }
    }
    _tile_loadd(0, qb, D * 2);
    if constexpr (D == 64) _tile_loadd(1, qb + 32, D * 2);
    for (int64_t j = 0; j < lk; j += 16) {
      _tile_zero(6);
      _tile_loadd(7, kp + j, lp * 4);
      _tile_dpbf16ps(6, 0, 7);
      if constexpr (D == 64) {
        _tile_loadd(7, kp + 16 * lp + j, lp * 4);
        _tile_dpbf16ps(6, 1, 7);
      }
      _tile_stored(6, s + j, lp * 4);
    }
    float inv[16];
    for (int64_t r = 0; r < 16; ++r) {
      if (r >= rows) {
        std::memset(pb + r * lp, 0, static_cast<std::size_t>(lp) * 2);
        continue;
      }
      float* sr = s + r * lp;
      inv[r] = softmax_row(sr, len, lp);  // keys from len on become e^-87 ≈ 0, against zero V pairs
      for (int64_t j = 0; j < lp; j += 16) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(pb + r * lp + j), bf16x16(sr + j));
      }
    }
    _tile_zero(0);
    _tile_zero(1);
    if constexpr (D == 64) {
      _tile_zero(2);
      _tile_zero(3);
    }
    for (int64_t j = 0; j < lp; j += 32) {
      _tile_loadd(4, pb + j, lp * 2);
      const uint32_t* vj = vp + j / 2 * D;
      _tile_loadd(5, vj, D * 4);
      _tile_dpbf16ps(0, 4, 5);
      _tile_loadd(5, vj + 16, D * 4);
      _tile_dpbf16ps(1, 4, 5);
      if constexpr (D == 64) {
        _tile_loadd(5, vj + 32, D * 4);
        _tile_dpbf16ps(2, 4, 5);
        _tile_loadd(5, vj + 48, D * 4);
        _tile_dpbf16ps(3, 4, 5);
      }
    }
    _tile_stored(0, o, D * 4);
    _tile_stored(1, o + 16, D * 4);
    if constexpr (D == 64) {
      _tile_stored(2, o + 32, D * 4);
      _tile_stored(3, o + 48, D * 4);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const __m512 f = _mm512_set1_ps(inv[r]);
      for (int64_t c = 0; c < D; c += 16) {
        _mm512_storeu_ps(out + (i0 + r) * ld_out + c, _mm512_mul_ps(_mm512_loadu_ps(o + r * D + c), f));
      }
    }
  }
  _tile_release();
}

}  // namespace
}  // namespace avx512bf16

bool attention_bf16_supported(int64_t d) {
  return d > 0 && d % 16 == 0 && static_cast<int>(active_isa()) >= static_cast<int>(Isa::Avx512Vnni);
}

void attention_head_bf16(const float* q, const float* k, const float* v, int64_t ld, int64_t len, int64_t d,
                         float scale, float* out, int64_t ld_out, float* scratch) {
  if (!attention_bf16_supported(d)) {
    throw std::invalid_argument("attention_head_bf16 needs AVX-512 BF16 and a head width that is a multiple of 16");
  }
  if (len <= 0) return;
  if (active_isa() == Isa::Avx512Amx && d == 32) {
    avx512bf16::attention_amx<32>(q, k, v, ld, len, scale, out, ld_out, scratch);
  } else if (active_isa() == Isa::Avx512Amx && d == 64) {
    avx512bf16::attention_amx<64>(q, k, v, ld, len, scale, out, ld_out, scratch);
  } else {
    avx512bf16::attention(q, k, v, ld, len, d, scale, out, ld_out, scratch);
  }
}

}  // namespace condense::kernels
