// One vector body of the transformer kernels (kernels/transformer.h), written with GCC vector
// extensions and compiled once per ISA: the including file defines CONDENSE_VEC_BYTES (16, 32
// or 64) and CONDENSE_ISA_NS, and is built with the matching -m flags, so the same source
// becomes SSE2, AVX2 or AVX-512 code.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace condense::kernels::CONDENSE_ISA_NS {

constexpr int W = CONDENSE_VEC_BYTES / 4;  // floats per vector
typedef float vf __attribute__((vector_size(CONDENSE_VEC_BYTES), aligned(4)));
typedef int32_t vi __attribute__((vector_size(CONDENSE_VEC_BYTES), aligned(4)));
typedef uint32_t vu __attribute__((vector_size(CONDENSE_VEC_BYTES), aligned(4)));

// vf is aligned(4), so these are unaligned vector moves; GCC gives vector types their element's
// alias set, so the casts are well-defined there. (A memcpy into a local vf instead went through
// the stack at -mavx2 under generic tuning, two 16-byte stores and a 32-byte reload per load,
// which cannot be store-forwarded: attention ran 10x slower than with these.)
inline vf load(const float* p) { return *reinterpret_cast<const vf*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vf*>(p) = v; }
// x − 0 folds to x (exact in IEEE arithmetic), leaving one broadcast, from memory an FMA's
// embedded {1toN} operand; `vf{} + x` would keep an add per use (x + 0 differs from x for −0).
inline vf splat(float x) { return x - vf{}; }
inline float hsum(vf v) { float s = 0; for (int i = 0; i < W; ++i) s += v[i]; return s; }
inline float hmax(vf v) { float s = v[0]; for (int i = 1; i < W; ++i) s = std::max(s, v[i]); return s; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf vmin(vf a, vf b) { return a < b ? a : b; }

// e^x for x ≤ 0 (softmax after subtracting the row maximum): x = n·ln2 + r with |r| ≤ ln2/2,
// e^r by a degree-6 polynomial (relative error < 2e-7), 2^n by building the exponent bits.
inline vf vexp(vf x) {
  x = vmax(x, splat(-87.0f));
  const vf magic = splat(12582912.0f);  // 1.5·2²³: adding it rounds to an integer
  vf t = x * 1.44269504088896341f + magic;
  vf n = t - magic;
  vf r = x - n * 0.693145751953125f - n * 1.42860682030941723212e-6f;
  vf p = splat(1.0f / 720) ;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &e, sizeof scale);
  return p * scale;
}

// One row of scores (len real, padded to lp) becomes e^(s − max) in place, the padding 0;
// returns 1 / Σ e, the normalisation left to the caller (applied once per output row).
inline float softmax_row(float* sr, int64_t len, int64_t lp) {
  for (int64_t j = len; j < lp; ++j) sr[j] = -std::numeric_limits<float>::infinity();
  vf m = load(sr);
  for (int64_t j = W; j < lp; j += W) m = vmax(m, load(sr + j));
  const vf mx = splat(hmax(m));
  vf sum{};
  for (int64_t j = 0; j < lp; j += W) {
    const vf e = vexp(load(sr + j) - mx);
    store(sr + j, e);
    sum += e;
  }
  return 1.0f / hsum(sum);
}

// Query rows per tile: the tile's accumulators stay in registers (AVX-512 has 32 vector
// registers, AVX2 and SSE 16): scores R × W, then context R × 2W.
constexpr int64_t R = W == 16 ? 8 : 4;

// One tile of up to R query rows against all keys. Scores are computed R rows at a time with the
// key chunk loaded once per head column (register tiling, as in a GEMM micro-kernel), softmax per
// row, then P·V with R × 2W accumulators, so each loaded V vector feeds R rows.
inline void attention_tile(const float* q, const float* kt, const float* v, const float* vt, int64_t ld, int64_t len,
                           int64_t lp, int64_t d, float scale, int64_t rows, float* out, int64_t ld_out, float* s,
                           float* qs) {
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t c = 0; c < d; ++c) qs[r * d + c] = r < rows ? q[r * ld + c] * scale : 0.0f;
  }
  for (int64_t j = 0; j < lp; j += W) {
    vf acc[R];
    for (int64_t r = 0; r < R; ++r) acc[r] = vf{};
    for (int64_t c = 0; c < d; ++c) {
      const vf kv = load(kt + c * lp + j);
      for (int64_t r = 0; r < R; ++r) acc[r] += splat(qs[r * d + c]) * kv;
    }
    for (int64_t r = 0; r < R; ++r) store(s + r * lp + j, acc[r]);
  }
  float inv[R];
  for (int64_t r = 0; r < rows; ++r) inv[r] = softmax_row(s + r * lp, len, lp);
  const int64_t dv = d / (2 * W) * (2 * W);
  for (int64_t c = 0; c < dv; c += 2 * W) {
    vf a0[R], a1[R];
    for (int64_t r = 0; r < R; ++r) a0[r] = a1[r] = vf{};
    for (int64_t j = 0; j < len; ++j) {
      const vf v0 = load(v + j * ld + c), v1 = load(v + j * ld + c + W);
      for (int64_t r = 0; r < R; ++r) {
        const vf p = splat(s[r * lp + j]);
        a0[r] += p * v0;
        a1[r] += p * v1;
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      store(out + r * ld_out + c, a0[r] * inv[r]);
      store(out + r * ld_out + c + W, a1[r] * inv[r]);
    }
  }
  // Head widths that are not a multiple of 2W (TinyBERT's 312 / 12 = 26): the last d − dv columns
  // from vt, V's zero-padded copy of them (len × tw), in whole vectors. Read column by column
  // from V itself they ran scalar with a stride of ld and took most of the forward pass.
  const int64_t tw = (d - dv + W - 1) / W * W;
  for (int64_t c = 0; c < tw; c += W) {
    vf a[R];
    for (int64_t r = 0; r < R; ++r) a[r] = vf{};
    for (int64_t j = 0; j < len; ++j) {
      const vf vv = load(vt + j * tw + c);
      for (int64_t r = 0; r < R; ++r) a[r] += splat(s[r * lp + j]) * vv;
    }
    const int64_t n = std::min<int64_t>(W, d - dv - c);
    for (int64_t r = 0; r < rows; ++r) {
      const vf o = a[r] * inv[r];
      for (int64_t i = 0; i < n; ++i) out[r * ld_out + dv + c + i] = o[i];
    }
  }
}

// Scratch: Kᵀ (d × lp), the tile's scores (R × lp), scaled queries (R × d) and V's last d − dv
// columns zero-padded (len × at most 2W); see attention_scratch_floats.
inline void attention_head(const float* q, const float* k, const float* v, int64_t ld, int64_t len, int64_t d,
                           float scale, float* out, int64_t ld_out, float* scratch) {
  const int64_t lp = (len + W - 1) / W * W;
  float* kt = scratch;
  float* s = kt + d * lp;
  float* qs = s + R * lp;
  float* vt = qs + R * d;
  for (int64_t c = 0; c < d; ++c) {
    for (int64_t j = 0; j < len; ++j) kt[c * lp + j] = k[j * ld + c];
    for (int64_t j = len; j < lp; ++j) kt[c * lp + j] = 0.0f;
  }
  const int64_t dv = d / (2 * W) * (2 * W), tw = (d - dv + W - 1) / W * W;
  for (int64_t j = 0; j < len; ++j) {
    for (int64_t c = 0; c < tw; ++c) vt[j * tw + c] = dv + c < d ? v[j * ld + dv + c] : 0.0f;
  }
  for (int64_t i = 0; i < len; i += R) {
    attention_tile(q + i * ld, kt, v, vt, ld, len, lp, d, scale, std::min<int64_t>(R, len - i), out + i * ld_out,
                   ld_out, s, qs);
  }
}

inline void add_layer_norm(const float* x, const float* residual, const float* gamma, const float* beta, int64_t rows,
                           int64_t h, float eps, float* out) {
  const int64_t hv = h / W * W;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * h;
    const float* rr = residual ? residual + r * h : nullptr;
    float* o = out + r * h;
    vf sv{};
    float st = 0;
    for (int64_t c = 0; c < hv; c += W) {
      vf t = load(xr + c);
      if (rr) t += load(rr + c);
      store(o + c, t);
      sv += t;
    }
    for (int64_t c = hv; c < h; ++c) {
      o[c] = xr[c] + (rr ? rr[c] : 0.0f);
      st += o[c];
    }
    const float mean = (hsum(sv) + st) / static_cast<float>(h);
    vf qv{};
    float qt = 0;
    for (int64_t c = 0; c < hv; c += W) {
      const vf t = load(o + c) - mean;
      qv += t * t;
    }
    for (int64_t c = hv; c < h; ++c) qt += (o[c] - mean) * (o[c] - mean);
    const float rstd = 1.0f / std::sqrt((hsum(qv) + qt) / static_cast<float>(h) + eps);
    for (int64_t c = 0; c < hv; c += W) store(o + c, (load(o + c) - mean) * rstd * load(gamma + c) + load(beta + c));
    for (int64_t c = hv; c < h; ++c) o[c] = (o[c] - mean) * rstd * gamma[c] + beta[c];
  }
}

inline void min_max(const float* x, int64_t n, float* lo, float* hi) {
  float l = x[0], u = x[0];
  int64_t i = 0;
  if (n >= W) {
    vf vl = load(x), vh = vl;
    for (i = W; i + W <= n; i += W) {
      const vf t = load(x + i);
      vl = vmin(vl, t);
      vh = vmax(vh, t);
    }
    for (int c = 0; c < W; ++c) { l = std::min(l, vl[c]); u = std::max(u, vh[c]); }
  }
  for (; i < n; ++i) { l = std::min(l, x[i]); u = std::max(u, x[i]); }
  *lo = l;
  *hi = u;
}

inline void to_bf16(const float* x, int64_t n, uint16_t* y) {
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    vu u;
    std::memcpy(&u, x + i, sizeof u);
    const vf f = load(x + i);
    vu r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    r = f != f ? (u >> 16) | 0x40u : r;  // NaN: keep it a (quiet) NaN
    for (int c = 0; c < W; ++c) y[i + c] = static_cast<uint16_t>(r[c]);
  }
  for (; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    y[i] = x[i] != x[i] ? static_cast<uint16_t>((u >> 16) | 0x40u) : static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
}

}  // namespace condense::kernels::CONDENSE_ISA_NS
