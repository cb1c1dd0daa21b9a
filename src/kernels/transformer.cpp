// Scalar references of the transformer kernels and the dispatch to their per-ISA builds.
#include "condense/kernels/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "transformer_isa.h"

namespace condense::kernels {

namespace {
const TransformerKernels& table(Isa isa) {
  if (!cpu_supports(isa)) throw std::invalid_argument(std::string("this CPU cannot run ") + to_string(isa) + " kernels");
  switch (isa) {
    case Isa::Generic: return generic::kernels;
    case Isa::Avx2: return avx2::kernels;
    default: return avx512::kernels;
  }
}
}  // namespace

const char* kernel_name(Isa isa) {
  switch (isa) {
    case Isa::Generic: return "generic";
    case Isa::Avx2: return "avx2";
    default: return "avx512";
  }
}

int64_t attention_scratch_floats(int64_t len, int64_t d) {
  const int64_t lp = (len + 31) / 32 * 32;  // keys padded to the AMX tile's 32
  // fp32: Kᵀ, a tile of 8 rows' scores, their scaled queries, V's columns past the last multiple
  // of 32 zero-padded (d + 8 + 32 per key, 8 d); bf16: K and V pairs (d × lp floats), scores and
  // bf16 probabilities of a tile (8 × 1.5 lp), bf16 queries (4 d); AMX: the pairs, 16 rows'
  // scores and probabilities (24 lp), queries (8 d) and context (16 d).
  return lp * (d + 40) + 24 * d + 64;
}

void attention_head(const float* q, const float* k, const float* v, int64_t ld, int64_t len, int64_t d, float scale,
                    float* out, int64_t ld_out, float* scratch, Isa isa) {
  if (len <= 0) return;
  table(isa).attention_head(q, k, v, ld, len, d, scale, out, ld_out, scratch);
}

void attention_head_ref(const float* q, const float* k, const float* v, int64_t ld, int64_t len, int64_t d,
                        float scale, float* out, int64_t ld_out) {
  std::vector<double> s(static_cast<std::size_t>(len));
  for (int64_t i = 0; i < len; ++i) {
    double mx = -INFINITY;
    for (int64_t j = 0; j < len; ++j) {
      double acc = 0;
      for (int64_t c = 0; c < d; ++c) acc += static_cast<double>(q[i * ld + c]) * k[j * ld + c];
      s[j] = acc * scale;
      mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j < len; ++j) sum += (s[j] = std::exp(s[j] - mx));
    for (int64_t c = 0; c < d; ++c) {
      double acc = 0;
      for (int64_t j = 0; j < len; ++j) acc += s[j] * v[j * ld + c];
      out[i * ld_out + c] = static_cast<float>(acc / sum);
    }
  }
}

void attention_head_bf16_ref(const float* q, const float* k, const float* v, int64_t ld, int64_t len, int64_t d,
                             float scale, float* out, int64_t ld_out) {
  auto bf = [](float x) {
    uint16_t h;
    to_bf16_ref(&x, 1, &h);
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float y;
    std::memcpy(&y, &u, 4);
    return static_cast<double>(y);
  };
  std::vector<double> s(static_cast<std::size_t>(len));
  for (int64_t i = 0; i < len; ++i) {
    double mx = -INFINITY;
    for (int64_t j = 0; j < len; ++j) {
      double acc = 0;
      for (int64_t c = 0; c < d; ++c) acc += bf(q[i * ld + c] * scale) * bf(k[j * ld + c]);
      s[j] = acc;
      mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j < len; ++j) {
      const float e = static_cast<float>(std::exp(s[j] - mx));
      sum += e;
      s[j] = bf(e);
    }
    for (int64_t c = 0; c < d; ++c) {
      double acc = 0;
      for (int64_t j = 0; j < len; ++j) acc += s[j] * bf(v[j * ld + c]);
      out[i * ld_out + c] = static_cast<float>(acc / sum);
    }
  }
}

void add_layer_norm(const float* x, const float* residual, const float* gamma, const float* beta, int64_t rows,
                    int64_t h, float eps, float* out, Isa isa) {
  table(isa).add_layer_norm(x, residual, gamma, beta, rows, h, eps, out);
}

void add_layer_norm_ref(const float* x, const float* residual, const float* gamma, const float* beta, int64_t rows,
                        int64_t h, float eps, float* out) {
  std::vector<double> t(static_cast<std::size_t>(h));
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < h; ++c) mean += (t[c] = static_cast<double>(x[r * h + c]) + (residual ? residual[r * h + c] : 0.0f));
    mean /= static_cast<double>(h);
    for (int64_t c = 0; c < h; ++c) var += (t[c] - mean) * (t[c] - mean);
    const double rstd = 1.0 / std::sqrt(var / static_cast<double>(h) + eps);
    for (int64_t c = 0; c < h; ++c) out[r * h + c] = static_cast<float>((t[c] - mean) * rstd * gamma[c] + beta[c]);
  }
}

void min_max(const float* x, int64_t n, float* lo, float* hi, Isa isa) {
  if (n <= 0) throw std::invalid_argument("min_max of an empty array");
  table(isa).min_max(x, n, lo, hi);
}

void min_max_ref(const float* x, int64_t n, float* lo, float* hi) {
  if (n <= 0) throw std::invalid_argument("min_max of an empty array");
  *lo = *hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    *lo = std::min(*lo, x[i]);
    *hi = std::max(*hi, x[i]);
  }
}

void to_bf16(const float* x, int64_t n, uint16_t* y, Isa isa) { table(isa).to_bf16(x, n, y); }

void to_bf16_ref(const float* x, int64_t n, uint16_t* y) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    if (std::isnan(x[i])) {
      y[i] = static_cast<uint16_t>((u >> 16) | 0x40u);
    } else {
      y[i] = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
  }
}

}  // namespace condense::kernels
