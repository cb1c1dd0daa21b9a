// Attention with bf16 products (kernels/transformer.h: attention_head_bf16), AVX-512 BF16.
//
// VDPBF16PS adds, per fp32 lane, the products of one pair of bf16 numbers: twice the
// multiply-adds of an fp32 FMA per instruction. Scores: lanes are 16 keys and the pair runs
// along the head width, so Kᵀ is stored as pairs Kp[c/2][j] = (k[j][c], k[j][c+1]) and a query
// pair is broadcast. P·V: lanes are 16 head columns and the pair runs along the keys, so V is
// stored as Vp[j/2][c] = (v[j][c], v[j+1][c]) and a pair of probabilities is broadcast. The
// softmax stays fp32 (the fp32 kernel's exp); its normalisation uses the fp32 sum.
// GCC 12 warns inside its own AVX-512 headers (an "uninitialized" __Y in _mm512_undefined_*).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define CONDENSE_VEC_BYTES 64
#define CONDENSE_ISA_NS avx512bf16
#include "transformer_body.h"

#include "condense/kernels/transformer.h"

#include <stdexcept>

namespace condense::kernels {

namespace avx512bf16 {
namespace {

// 16 floats → 16 bf16 (round to nearest even; the instruction flushes denormals to zero).
inline __m256i bf16x16(const float* x) { return (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x)); }
inline __m256i bf16x16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

void attention(const float* q, const float* k, const float* v, int64_t ld, int64_t len, int64_t d, float scale,
               float* out, int64_t ld_out, float* scratch) {
  const int64_t lp = (len + 15) / 16 * 16, dp = d / 2;
  auto* kp = reinterpret_cast<uint32_t*>(scratch);        // dp × lp pairs
  uint32_t* vp = kp + dp * lp;                            // lp/2 × d pairs
  float* s = reinterpret_cast<float*>(vp + lp / 2 * d);   // R × lp scores, then probabilities
  auto* pb = reinterpret_cast<uint16_t*>(s + R * lp);     // R × lp probabilities in bf16
  auto* qb = pb + R * lp;                                 // R × d scaled queries in bf16
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
  const __m512 zero = _mm512_setzero_ps();
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
  const __m512 vscale = _mm512_set1_ps(scale);
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

}  // namespace
}  // namespace avx512bf16

bool attention_bf16_supported(int64_t d) {
  return d > 0 && d % 16 == 0 && cpu_supports(Isa::Avx512Vnni) && active_isa() == Isa::Avx512Vnni;
}

void attention_head_bf16(const float* q, const float* k, const float* v, int64_t ld, int64_t len, int64_t d,
                         float scale, float* out, int64_t ld_out, float* scratch) {
  if (!attention_bf16_supported(d)) {
    throw std::invalid_argument("attention_head_bf16 needs AVX-512 BF16 and a head width that is a multiple of 16");
  }
  if (len <= 0) return;
  avx512bf16::attention(q, k, v, ld, len, d, scale, out, ld_out, scratch);
}

}  // namespace condense::kernels
