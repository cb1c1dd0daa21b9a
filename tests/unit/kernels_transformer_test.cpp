// The runtime's kernels against their scalar twins, on every ISA this CPU has (the others skip),
// and the oneDNN products (fp32, bf16, int8, fused activations) against plain loops. CTest runs
// this binary once more per lower CONDENSE_ISA, so oneDNN's narrower paths are checked too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "condense/kernels/int8_gemm.h"
#include "condense/kernels/isa.h"
#include "condense/kernels/linear.h"
#include "condense/kernels/transformer.h"

namespace k = condense::kernels;

namespace {
std::vector<float> randn(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

class PerIsa : public ::testing::TestWithParam<k::Isa> {
 protected:
  void SetUp() override {
    if (!k::cpu_supports(GetParam())) GTEST_SKIP() << "this CPU has no " << k::to_string(GetParam());
  }
};
}  // namespace

TEST_P(PerIsa, AttentionMatchesReference) {
  for (int64_t d : {32, 64, 20, 26, 40}) {  // 26: TinyBERT's 312 / 12; 20, 26, 40: tails past 2W
    for (int64_t len : {1, 7, 17, 128}) {
      const int64_t heads = 3, inner = heads * d, ld = 3 * inner;
      auto qkv = randn(len * ld, static_cast<uint32_t>(len * 31 + d), 1.5f);
      std::vector<float> got(static_cast<std::size_t>(len * inner)), want(got.size());
      std::vector<float> scratch(static_cast<std::size_t>(k::attention_scratch_floats(len, d)));
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      for (int64_t h = 0; h < heads; ++h) {
        const float* q = qkv.data() + h * d;
        k::attention_head(q, q + inner, q + 2 * inner, ld, len, d, scale, got.data() + h * d, inner, scratch.data(),
                          GetParam());
        k::attention_head_ref(q, q + inner, q + 2 * inner, ld, len, d, scale, want.data() + h * d, inner);
      }
      for (std::size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i], want[i], 2e-5f * (1.0f + std::abs(want[i]))) << "d " << d << " len " << len << " at " << i;
      }
    }
  }
}

TEST_P(PerIsa, AttentionRowsAreConvexCombinationsOfValues) {
  // Constant values: every output equals that constant whatever the scores (softmax sums to 1).
  const int64_t len = 33, d = 32, ld = 3 * d;
  auto qkv = randn(len * ld, 5, 4.0f);
  for (int64_t j = 0; j < len; ++j) {
    for (int64_t c = 0; c < d; ++c) qkv[j * ld + 2 * d + c] = 0.25f * static_cast<float>(c);
  }
  std::vector<float> out(static_cast<std::size_t>(len * d)), scratch(static_cast<std::size_t>(k::attention_scratch_floats(len, d)));
  k::attention_head(qkv.data(), qkv.data() + d, qkv.data() + 2 * d, ld, len, d, 0.5f, out.data(), d, scratch.data(),
                    GetParam());
  for (int64_t i = 0; i < len; ++i) {
    for (int64_t c = 0; c < d; ++c) ASSERT_NEAR(out[i * d + c], 0.25f * static_cast<float>(c), 1e-5f);
  }
}

TEST_P(PerIsa, AddLayerNormMatchesReference) {
  for (int64_t h : {384, 312, 5}) {
    const int64_t rows = 9;
    auto x = randn(rows * h, 1, 3.0f), r = randn(rows * h, 2), g = randn(h, 3), b = randn(h, 4);
    for (auto& v : x) v += 10.0f;  // a large mean: the two-pass variance must not lose it
    std::vector<float> got(x.size()), want(x.size()), alias = x;
    k::add_layer_norm(x.data(), r.data(), g.data(), b.data(), rows, h, 1e-12f, got.data(), GetParam());
    k::add_layer_norm_ref(x.data(), r.data(), g.data(), b.data(), rows, h, 1e-12f, want.data());
    for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f) << "h " << h << " at " << i;
    // in place, output over the input (as the runtime calls it), and without a residual
    k::add_layer_norm(alias.data(), r.data(), g.data(), b.data(), rows, h, 1e-12f, alias.data(), GetParam());
    for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(alias[i], got[i]);
    k::add_layer_norm(x.data(), nullptr, g.data(), b.data(), rows, h, 1e-5f, got.data(), GetParam());
    k::add_layer_norm_ref(x.data(), nullptr, g.data(), b.data(), rows, h, 1e-5f, want.data());
    for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f);
  }
}

TEST_P(PerIsa, MinMaxAndBf16AreExact) {
  for (int64_t n : {1, 15, 16, 1000, 1031}) {
    auto x = randn(n, static_cast<uint32_t>(n), 5.0f);
    float lo, hi, lo_r, hi_r;
    k::min_max(x.data(), n, &lo, &hi, GetParam());
    k::min_max_ref(x.data(), n, &lo_r, &hi_r);
    EXPECT_EQ(lo, lo_r);
    EXPECT_EQ(hi, hi_r);
  }
  // Round to nearest even at the tie, carries into the exponent, infinities and NaN.
  std::vector<float> x = randn(100, 9);
  const uint32_t specials[] = {0x3f808000u, 0x3f818000u, 0x3f80c000u, 0x3fffffffu, 0x7f800000u, 0xff800000u, 0x7fc00001u,
                               0x00000001u, 0x80000000u};
  for (uint32_t u : specials) {
    float f;
    std::memcpy(&f, &u, 4);
    x.push_back(f);
  }
  std::vector<uint16_t> got(x.size()), want(x.size());
  k::to_bf16(x.data(), static_cast<int64_t>(x.size()), got.data(), GetParam());
  k::to_bf16_ref(x.data(), static_cast<int64_t>(x.size()), want.data());
  EXPECT_EQ(got, want);
  EXPECT_EQ(want[100], 0x3f80);  // 1.00390625 is halfway: rounds to the even 1.0
  EXPECT_EQ(want[101], 0x3f82);  // halfway above an odd mantissa: rounds up
  EXPECT_TRUE(std::isnan(bf16_to_float(want[106])));
}

INSTANTIATE_TEST_SUITE_P(Isa, PerIsa, ::testing::Values(k::Isa::Generic, k::Isa::Avx2, k::Isa::Avx512),
                         [](const auto& info) { return std::string(k::to_string(info.param)); });

TEST(KernelsAttentionBf16, MatchesItsTwinAndStaysCloseToFp32) {
  if (!k::attention_bf16_supported(32)) GTEST_SKIP() << "no AVX-512 BF16 at the active ISA level";
  EXPECT_FALSE(k::attention_bf16_supported(20));  // head widths must be multiples of 16
  // At the AMX level widths 32 and 64 run on tiles and 16 and 48 on VDPBF16PS (the capped_avx512_vnni
  // run takes VDPBF16PS for all); lengths cross the 16-query and 32-key tile edges.
  for (int64_t d : {32, 64, 16, 48}) {
    for (int64_t len : {1, 2, 7, 17, 33, 128}) {
      const int64_t heads = 2, inner = heads * d, ld = 3 * inner;
      auto qkv = randn(len * ld, static_cast<uint32_t>(len * 17 + d), 1.5f);
      std::vector<float> got(static_cast<std::size_t>(len * inner)), twin(got.size()), exact(got.size());
      std::vector<float> scratch(static_cast<std::size_t>(k::attention_scratch_floats(len, d)) + 1, -1.0f);
      scratch.back() = 12345.0f;  // a guard: the kernel must stay inside the scratch it asked for
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      for (int64_t h = 0; h < heads; ++h) {
        const float* q = qkv.data() + h * d;
        k::attention_head_bf16(q, q + inner, q + 2 * inner, ld, len, d, scale, got.data() + h * d, inner, scratch.data());
        k::attention_head_bf16_ref(q, q + inner, q + 2 * inner, ld, len, d, scale, twin.data() + h * d, inner);
        k::attention_head_ref(q, q + inner, q + 2 * inner, ld, len, d, scale, exact.data() + h * d, inner);
      }
      ASSERT_EQ(scratch.back(), 12345.0f) << "d " << d << " len " << len;
      for (std::size_t i = 0; i < got.size(); ++i) {
        // Same roundings, other summation order: a probability may round to the neighbouring
        // bf16 (2⁻⁸ relative), which bounds the difference to the twin.
        ASSERT_NEAR(got[i], twin[i], 1e-2f * (1.0f + std::abs(twin[i]))) << "d " << d << " len " << len << " at " << i;
        ASSERT_NEAR(got[i], exact[i], 6e-2f * (1.0f + std::abs(exact[i]))) << "d " << d << " len " << len << " at " << i;
      }
    }
  }
}

TEST(KernelsIsa, ParsesNamesAndActiveNeverExceedsTheCpu) {
  EXPECT_EQ(k::parse_isa("avx2"), k::Isa::Avx2);
  EXPECT_EQ(k::parse_isa("avx512_amx"), k::Isa::Avx512Amx);
  EXPECT_STREQ(k::to_string(k::Isa::Avx512Amx), "avx512_amx");
  EXPECT_THROW(k::parse_isa("sse9"), std::invalid_argument);
  EXPECT_TRUE(k::cpu_supports(k::active_isa()));
  EXPECT_TRUE(k::cpu_supports(k::Isa::Generic));
}

TEST(KernelsLinear, Fp32AndActivationsMatchLoops) {
  const int64_t m = 37, kk = 96, n = 50;
  auto x = randn(m * kk, 1), w = randn(n * kk, 2, 0.2f), b = randn(n, 3);
  for (auto epi : {k::Epilogue::None, k::Epilogue::Gelu, k::Epilogue::GeluTanh, k::Epilogue::Relu, k::Epilogue::Silu}) {
    k::LinearWeights lw;
    lw.n = n;
    lw.k = kk;
    lw.w = w.data();
    lw.bias = b.data();
    lw.epilogue = epi;
    k::Linear lin(lw);
    std::vector<float> got(static_cast<std::size_t>(m * n)), want(got.size());
    lin.run(x.data(), m, got.data());
    k::linear_ref(x.data(), m, lw, want.data());
    for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f) << static_cast<int>(epi) << " at " << i;
    // another row count builds another primitive over the same packed weights
    lin.run(x.data(), 3, got.data());
    for (std::size_t i = 0; i < 3 * static_cast<std::size_t>(n); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f);
  }
  k::LinearWeights lw;
  lw.n = n;
  lw.k = kk;
  lw.w = w.data();
  k::Linear lin(lw);  // no bias
  std::vector<float> got(static_cast<std::size_t>(m * n)), want(got.size());
  lin.run(x.data(), m, got.data());
  k::linear_ref(x.data(), m, lw, want.data());
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f);
  std::vector<uint8_t> u8(static_cast<std::size_t>(m * kk));
  EXPECT_THROW(lin.run(u8.data(), m, 1.0f, 0, got.data()), std::invalid_argument);
}

TEST(KernelsLinear, Bf16MatchesLoopsOnRoundedOperands) {
  if (static_cast<int>(k::active_isa()) < static_cast<int>(k::Isa::Avx512)) GTEST_SKIP() << "bf16 products need AVX-512";
  const int64_t m = 20, kk = 64, n = 48;
  auto x = randn(m * kk, 4), w = randn(n * kk, 5, 0.2f), b = randn(n, 6);
  std::vector<uint16_t> xb(x.size()), wb(w.size());
  k::to_bf16_ref(x.data(), m * kk, xb.data());
  k::to_bf16_ref(w.data(), n * kk, wb.data());
  std::vector<float> xr(x.size()), wr(w.size());
  for (std::size_t i = 0; i < x.size(); ++i) xr[i] = bf16_to_float(xb[i]);
  for (std::size_t i = 0; i < w.size(); ++i) wr[i] = bf16_to_float(wb[i]);
  k::LinearWeights lw;
  lw.type = k::LinearType::BF16;
  lw.n = n;
  lw.k = kk;
  lw.w = w.data();
  lw.bias = b.data();
  lw.epilogue = k::Epilogue::Gelu;
  k::Linear lin(lw);
  std::vector<float> got(static_cast<std::size_t>(m * n)), want(got.size());
  lin.run(xb.data(), m, got.data());
  k::LinearWeights ref = lw;
  ref.w = wr.data();
  k::linear_ref(xr.data(), m, ref, want.data());
  // Products of bf16 values are exact in fp32; only the accumulation order differs.
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-3f) << i;
}

namespace {
k::LinearWeights s8_weights(int64_t n, int64_t kk, const std::vector<int8_t>& w, const std::vector<float>& sw,
                           const std::vector<float>& b, k::Epilogue epi) {
  k::LinearWeights lw;
  lw.type = k::LinearType::S8;
  lw.n = n;
  lw.k = kk;
  lw.w_s8 = w.data();
  lw.scales = sw.data();
  lw.bias = b.data();
  lw.epilogue = epi;
  return lw;
}
}  // namespace

TEST(KernelsLinear, Int8MatchesIntegerLoops) {
  const int64_t m = 33, kk = 80, n = 24;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> u(0, 255), s(-127, 127);
  std::vector<uint8_t> x(static_cast<std::size_t>(m * kk));
  std::vector<int8_t> w(static_cast<std::size_t>(n * kk));
  for (auto& v : x) v = static_cast<uint8_t>(u(rng));
  for (auto& v : w) v = static_cast<int8_t>(s(rng));
  auto sw = randn(n, 7, 0.01f), b = randn(n, 8);
  for (auto& v : sw) v = std::abs(v) + 1e-3f;
  const k::LinearWeights lw = s8_weights(n, kk, w, sw, b, k::Epilogue::None);
  k::Linear lin(lw);
  std::vector<float> got(static_cast<std::size_t>(m * n)), want(got.size());
  lin.run(x.data(), m, 0.02f, 131, got.data());
  k::int8_gemm_ref(x.data(), m, kk, 0.02f, 131, w.data(), n, sw.data(), b.data(), want.data());
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f * (1.0f + std::abs(want[i]))) << i;
  std::vector<float> xf(static_cast<std::size_t>(m * kk));
  EXPECT_THROW(lin.run(xf.data(), m, got.data()), std::invalid_argument);
}

namespace {
// A scheduler that hands out one unit at a time, last first: the kernel must not depend on the
// order or size of its ranges.
void one_at_a_time(int64_t n, const std::function<void(int64_t, int64_t)>& body) {
  for (int64_t i = n - 1; i >= 0; --i) body(i, i + 1);
}
}  // namespace

TEST(KernelsLinear, Int8ActivationsAndRowTailsMatchDequantizedLoops) {
  // (k, n): shapes that fit the AMX tiles (k % 64, n % 32; condense's own kernel on AMX CPUs) and
  // one that does not (oneDNN everywhere); row counts below, at and across 32-row blocks.
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> u(0, 255), s(-127, 127);
  for (auto [kk, n] : std::vector<std::pair<int64_t, int64_t>>{{128, 64}, {384, 96}, {80, 24}}) {
    const int64_t m = 70;
    std::vector<uint8_t> x(static_cast<std::size_t>(m * kk));
    std::vector<int8_t> w(static_cast<std::size_t>(n * kk));
    for (auto& v : x) v = static_cast<uint8_t>(u(rng));
    for (auto& v : w) v = static_cast<int8_t>(s(rng));
    auto sw = randn(n, 21, 3e-4f), b = randn(n, 22);
    for (auto& v : sw) v = std::abs(v) + 1e-4f;
    const float sx = 0.02f;
    const int32_t zx = 119;
    // The same product in float: x dequantized as sx·(x − zx), w as sw[n]·w.
    std::vector<float> xf(x.size()), wf(w.size());
    for (std::size_t i = 0; i < x.size(); ++i) xf[i] = sx * static_cast<float>(static_cast<int32_t>(x[i]) - zx);
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t t = 0; t < kk; ++t) {
        const auto i = static_cast<std::size_t>(j * kk + t);
        wf[i] = sw[static_cast<std::size_t>(j)] * static_cast<float>(w[i]);
      }
    }
    for (auto epi : {k::Epilogue::None, k::Epilogue::Gelu, k::Epilogue::GeluTanh, k::Epilogue::Relu, k::Epilogue::Silu}) {
      const k::LinearWeights lw = s8_weights(n, kk, w, sw, b, epi);
      k::Linear lin(lw);
      if (k::active_isa() == k::Isa::Avx512Amx && kk % 64 == 0 && n % 32 == 0) {
        EXPECT_EQ(lin.implementation(), "condense:amx_int8");
      }
      k::LinearWeights ref = lw;
      ref.type = k::LinearType::F32;
      ref.w = wf.data();
      std::vector<float> want(static_cast<std::size_t>(m * n));
      k::linear_ref(xf.data(), m, ref, want.data());
      for (int64_t rows : {int64_t{1}, int64_t{5}, int64_t{32}, int64_t{45}, m}) {
        for (bool split : {false, true}) {
          k::set_parallel_for(split ? one_at_a_time : nullptr);
          std::vector<float> got(static_cast<std::size_t>(rows * n), std::numeric_limits<float>::quiet_NaN());
          lin.run(x.data(), rows, sx, zx, got.data());
          for (std::size_t i = 0; i < got.size(); ++i) {
            ASSERT_NEAR(got[i], want[i], 2e-5f * (1.0f + std::abs(want[i])))
                << lin.implementation() << " k=" << kk << " n=" << n << " epilogue " << static_cast<int>(epi)
                << " rows " << rows << " at " << i;
          }
        }
      }
      k::set_parallel_for(nullptr);
    }
  }
}
