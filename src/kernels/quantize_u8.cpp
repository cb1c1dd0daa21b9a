// Activation quantization to uint8 (kernels/int8_gemm.h): scalar reference and AVX-512 version.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "condense/kernels/int8_gemm.h"
#include "condense/kernels/isa.h"

namespace condense::kernels {

void quantize_u8_ref(const float* x, int64_t n, float inv_scale, int32_t zp, uint8_t* q) {
  for (int64_t i = 0; i < n; ++i) {
    q[i] = static_cast<uint8_t>(std::clamp(static_cast<int32_t>(std::nearbyint(x[i] * inv_scale)) + zp, 0, 255));
  }
}

namespace {

__attribute__((target("avx512f"))) void quantize_u8_avx512(const float* x, int64_t n, float inv_scale, int32_t zp,
                                                            uint8_t* q) {
  const __m512 vinv = _mm512_set1_ps(inv_scale);
  const __m512i vzp = _mm512_set1_epi32(zp), v0 = _mm512_setzero_si512(), v255 = _mm512_set1_epi32(255);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    // cvtps_epi32 rounds half to even under the default MXCSR, as nearbyint does.
    __m512i r = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv)), vzp);
    r = _mm512_min_epi32(_mm512_max_epi32(r, v0), v255);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(r));
  }
  quantize_u8_ref(x + i, n - i, inv_scale, zp, q + i);
}

using QuantizeFn = void (*)(const float*, int64_t, float, int32_t, uint8_t*);

struct Dispatch {
  QuantizeFn fn = quantize_u8_ref;
  const char* isa = "generic";
  Dispatch() {
    if (cpu_supports(Isa::Avx512) && static_cast<int>(active_isa()) >= static_cast<int>(Isa::Avx512)) {
      fn = quantize_u8_avx512;
      isa = "avx512";
    }
  }
};

const Dispatch& dispatch() {
  static const Dispatch d;
  return d;
}

}  // namespace

void quantize_u8(const float* x, int64_t n, float inv_scale, int32_t zp, uint8_t* q) { dispatch().fn(x, n, inv_scale, zp, q); }

const char* quantize_isa() { return dispatch().isa; }

}  // namespace condense::kernels
