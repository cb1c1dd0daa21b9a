// Attention as the runtime calls it (head width 32 and 64, sequences of 32, 128 and 512 tokens,
// rows of the fused QKV output of 12 heads), one thread: every head of 4,096 tokens' worth of
// sequences per iteration, so q, k and v come from memory as they do after the QKV product (one
// head's data repeated would stay in L1 and run about twice as fast). The fp32 kernel at each ISA
// level and the bf16 one (VDPBF16PS, or AMX tiles where the CPU has them), so the choice of
// attention kernel per CPU rests on a measurement.
// Build: cmake --build build --target attention_bench; run: build/attention_bench
// (CONDENSE_ISA=avx512_vnni keeps the bf16 kernel off AMX). Time is per head and sequence;
// counter GFLOPS = 4·len²·d per head and sequence / time (softmax and packing are in the time).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

#include "condense/kernels/transformer.h"

namespace {

namespace ck = condense::kernels;

constexpr int64_t kHeads = 12, kTokens = 4096;

struct Inputs {
  int64_t len, d, seqs, inner, ld;
  std::vector<float> qkv, out, scratch;
  Inputs(int64_t len_, int64_t d_)
      : len(len_), d(d_), seqs(std::max<int64_t>(1, kTokens / len_)), inner(kHeads * d_), ld(3 * inner) {
    std::mt19937 g(1);
    std::normal_distribution<float> n(0.0f, 1.0f);
    qkv.resize(static_cast<std::size_t>(seqs * len * ld));
    for (auto& x : qkv) x = n(g);
    out.resize(static_cast<std::size_t>(seqs * len * inner));
    scratch.resize(static_cast<std::size_t>(ck::attention_scratch_floats(len, d)));
  }
  // Every head of every sequence, in the runtime's order.
  template <class F>
  void each(F f) {
    for (int64_t s = 0; s < seqs; ++s) {
      for (int64_t h = 0; h < kHeads; ++h) {
        const float* q = qkv.data() + s * len * ld + h * d;
        f(q, q + inner, q + 2 * inner, out.data() + s * len * inner + h * d);
      }
    }
  }
};

void args(benchmark::internal::Benchmark* b) {
  for (int64_t d : {32, 64}) {
    for (int64_t len : {32, 128, 512}) b->Args({len, d});
  }
  b->ArgNames({"len", "d"})->Unit(benchmark::kMillisecond);
}

void set_counters(benchmark::State& s, const Inputs& in) {
  const double calls = static_cast<double>(in.seqs * kHeads);
  s.counters["GFLOPS"] = benchmark::Counter(4.0 * in.len * in.len * in.d * calls * static_cast<double>(s.iterations()) / 1e9,
                                            benchmark::Counter::kIsRate);
  s.counters["us_per_head"] = benchmark::Counter(calls * static_cast<double>(s.iterations()) * 1e-6,
                                                 benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_Fp32(benchmark::State& s, ck::Isa isa) {
  if (!ck::cpu_supports(isa)) return s.SkipWithError("this CPU lacks the ISA");
  Inputs in(s.range(0), s.range(1));
  const float scale = 0.125f;
  for (auto _ : s) {
    in.each([&](const float* q, const float* k, const float* v, float* out) {
      ck::attention_head(q, k, v, in.ld, in.len, in.d, scale, out, in.inner, in.scratch.data(), isa);
    });
    benchmark::DoNotOptimize(in.out.data());
  }
  set_counters(s, in);
}

void BM_Bf16(benchmark::State& s) {
  Inputs in(s.range(0), s.range(1));
  if (!ck::attention_bf16_supported(in.d)) return s.SkipWithError("no AVX-512 BF16");
  for (auto _ : s) {
    in.each([&](const float* q, const float* k, const float* v, float* out) {
      ck::attention_head_bf16(q, k, v, in.ld, in.len, in.d, 0.125f, out, in.inner, in.scratch.data());
    });
    benchmark::DoNotOptimize(in.out.data());
  }
  set_counters(s, in);
}

BENCHMARK_CAPTURE(BM_Fp32, avx2, ck::Isa::Avx2)->Apply(args);
BENCHMARK_CAPTURE(BM_Fp32, avx512, ck::Isa::Avx512)->Apply(args);
BENCHMARK(BM_Bf16)->Apply(args);

}  // namespace

BENCHMARK_MAIN();
