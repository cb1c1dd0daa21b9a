// The machine's arithmetic peaks, the denominators of every "× limit" in docs/RESULTS.md:
// independent chains of AVX-512 FMA (fp32), VDPBF16PS (bf16) and VPDPBUSD (int8) in registers,
// no memory traffic, on 1..N threads. Build: cmake --build build --target peak_bench;
// run: build/peak_bench [threads] (default 2). Prints GFLOP/s or GOP/s (2 per multiply-add).
#include <immintrin.h>

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

// ops per instruction per lane: fp32 FMA 2, bf16 pair dot 4, int8 quad dot 8; 16 lanes.
double run(float (*loop)(), double ops_per_instr, int threads) {
  std::atomic<float> sink{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&] { sink = sink + loop(); });
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return ops_per_instr * 16.0 * kChains * static_cast<double>(kIters) * threads / s / 1e9;
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
  std::printf("fp32 FMA     %7.1f GFLOP/s\n", run(fp32_loop, 2, threads));
  if (__builtin_cpu_supports("avx512bf16")) std::printf("bf16 DPBF16  %7.1f GFLOP/s\n", run(bf16_loop, 4, threads));
  if (__builtin_cpu_supports("avx512vnni")) std::printf("int8 DPBUSD  %7.1f GOP/s\n", run(int8_loop, 8, threads));
  return 0;
}
