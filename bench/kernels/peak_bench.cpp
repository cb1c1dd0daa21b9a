// The machine's arithmetic peaks, the denominators of every "× limit" in docs/RESULTS.md:
// independent chains of AVX-512 FMA (fp32), VDPBF16PS (bf16) and VPDPBUSD (int8) in registers,
// and, where the CPU has AMX, TDPBUSD and TDPBF16PS into four tiles; no memory traffic, on 1..N
// threads. Build: cmake --build build --target peak_bench;
// run: build/peak_bench [threads] (default 2). Prints GFLOP/s or GOP/s (2 per multiply-add).
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

constexpr int kChains = 12;  // ≥ latency × throughput of each instruction on current cores
constexpr long kIters = 20'000'000;

__attribute__((target("avx512f"))) float fp32_loop() {
  __m512 acc[kChains];
  for (auto& a : acc) a = _mm512_set1_ps(0.5f);
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(0.001f);
  for (long i = 0; i < kIters; ++i) {
    for (auto& a : acc) a = _mm512_fmadd_ps(a, x, y);
  }
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512bf16"))) float bf16_loop() {
  __m512 acc[kChains];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  for (long i = 0; i < kIters; ++i) {
    for (auto& a : acc) a = _mm512_dpbf16_ps(a, x, x);
  }
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512vnni"))) float int8_loop() {
  __m512i acc[kChains];
  for (auto& a : acc) a = _mm512_setzero_si512();
  const __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(1);
  for (long i = 0; i < kIters; ++i) {
    for (auto& a : acc) a = _mm512_dpbusd_epi32(a, x, y);
  }
  __m512i s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_epi32(s, acc[c]);
  return static_cast<float>(_mm512_reduce_add_epi32(s));
}

// AMX: four independent int8 tile products (16 × 16 int32 sums of 64-byte rows each), operand
// tiles loaded once. The caller has asked the kernel for the tile state (see main).
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
constexpr long kAmxIters = kIters / 4;

// Int8: TDPBUSD (16 × 16 int32 sums of 64 byte products); bf16: TDPBF16PS (16 × 16 fp32 sums of
// 32 bf16 pair products). Operand tiles hold zeros and a one, so no value overflows or goes subnormal.
template <bool Bf16>
__attribute__((target("amx-tile,amx-int8,amx-bf16"))) float amx_loop() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
  alignas(64) static const uint8_t ones[1024] = {1};
  _tile_loadd(4, ones, 64);  // tile numbers are immediates
  _tile_loadd(5, ones, 64);
  _tile_loadd(6, ones, 64);
  _tile_loadd(7, ones, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (long i = 0; i < kAmxIters; ++i) {
    if constexpr (Bf16) {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    } else {
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
  }
  alignas(64) int32_t out[256];
  _tile_stored(0, out, 64);
  _tile_release();
  return static_cast<float>(out[0]);
}

// CPUID leaf 7 EDX: AMX-BF16 bit 22, AMX-TILE bit 24, AMX-INT8 bit 25.
bool amx_usable() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24)) || !(d & (1u << 25))) {
    return false;
  }
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;  // as src/kernels/isa.cpp
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

// ops per instruction per lane: fp32 FMA 2, bf16 pair dot 4, int8 quad dot 8; 16 lanes (by
// default instrs counts lane-instructions; the AMX loop passes its own count).
double run(float (*loop)(), double ops_per_instr, int threads, double instrs = 16.0 * kChains * kIters) {
  std::atomic<float> sink{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&] { sink = sink + loop(); });
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return ops_per_instr * instrs * threads / s / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const bool f = __builtin_cpu_supports("avx512f");
  if (!f) {
    std::printf("this CPU has no AVX-512: peak_bench measures AVX-512 instructions only\n");
    return 0;
  }
  std::printf("threads %d\n", threads);
  std::printf("fp32 FMA       %7.1f GFLOP/s\n", run(fp32_loop, 2, threads));
  if (__builtin_cpu_supports("avx512bf16")) std::printf("bf16 DPBF16    %7.1f GFLOP/s\n", run(bf16_loop, 4, threads));
  if (__builtin_cpu_supports("avx512vnni")) std::printf("int8 DPBUSD    %7.1f GOP/s\n", run(int8_loop, 8, threads));
  // TDPBUSD: 16 × 16 sums of 64 products each; TDPBF16PS of 32; 2 ops per product.
  if (amx_usable()) {
    std::printf("bf16 TDPBF16PS %7.1f GFLOP/s\n", run(amx_loop<true>, 2.0 * 16 * 16 * 32, threads, 4.0 * kAmxIters));
    std::printf("int8 TDPBUSD   %7.1f GOP/s\n", run(amx_loop<false>, 2.0 * 16 * 16 * 64, threads, 4.0 * kAmxIters));
  }
  return 0;
}
