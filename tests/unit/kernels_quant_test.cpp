// Kernels of quantization: sub-byte packing on hand-computed bytes, and the oneDNN int8 GEMM
// against its scalar reference twin.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "condense/kernels/int8_gemm.h"
#include "condense/kernels/pack.h"

namespace k = condense::kernels;

TEST(KernelsPack, HandComputedBytes) {
  // 2-bit codes 1, 2, 3, 0 -> 1 | 2 << 2 | 3 << 4 | 0 << 6 = 57; a fifth code starts a new byte.
  std::vector<uint8_t> codes{1, 2, 3, 0, 3};
  std::vector<uint8_t> out(k::packed_bytes(5, 2));
  ASSERT_EQ(out.size(), 2u);
  k::pack_bits_ref(codes.data(), 5, 2, out.data());
  EXPECT_EQ(out[0], 57);
  EXPECT_EQ(out[1], 3);
  // 4-bit: low nibble first.
  std::vector<uint8_t> nib{0xA, 0x5, 0xF};
  std::vector<uint8_t> o4(k::packed_bytes(3, 4));
  k::pack_bits_ref(nib.data(), 3, 4, o4.data());
  EXPECT_EQ(o4[0], 0x5A);
  EXPECT_EQ(o4[1], 0x0F);
  // 1-bit: element i is bit i.
  std::vector<uint8_t> bits{1, 0, 0, 1, 0, 0, 0, 1, 1};
  std::vector<uint8_t> o1(k::packed_bytes(9, 1));
  k::pack_bits_ref(bits.data(), 9, 1, o1.data());
  EXPECT_EQ(o1[0], 0x89);
  EXPECT_EQ(o1[1], 0x01);
}

TEST(KernelsPack, RoundTripsEveryWidth) {
  std::mt19937 rng(7);
  for (int bits : {1, 2, 4, 8}) {
    const int64_t n = 1001;
    std::vector<uint8_t> codes(n), back(n), packed(k::packed_bytes(n, bits));
    for (auto& c : codes) c = static_cast<uint8_t>(rng() & ((1u << bits) - 1));
    k::pack_bits_ref(codes.data(), n, bits, packed.data());
    k::unpack_bits_ref(packed.data(), n, bits, back.data());
    EXPECT_EQ(codes, back) << bits << " bits";
    EXPECT_EQ(packed.size(), static_cast<std::size_t>((n * bits + 7) / 8));
  }
}

TEST(KernelsInt8Gemm, ReferenceHandComputed) {
  // x = [[3, 1]] with zero point 1, w = [[2, -1], [0, 4]]: acc = (2·2 + 0·(-1), 2·0 + 0·4) = (4, 0).
  const uint8_t x[] = {3, 1};
  const int8_t w[] = {2, -1, 0, 4};
  const float sw[] = {0.5f, 2.0f}, bias[] = {1.0f, -1.0f};
  float y[2];
  k::int8_gemm_ref(x, 1, 2, 0.25f, 1, w, 2, sw, bias, y);
  EXPECT_FLOAT_EQ(y[0], 0.25f * 0.5f * 4 + 1);
  EXPECT_FLOAT_EQ(y[1], -1.0f);
}

TEST(KernelsInt8Gemm, MatchesReferenceAtSeveralShapes) {
  std::mt19937 rng(3);
  for (auto [m, kk, n] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 16, 8}, {7, 64, 24}, {130, 384, 96}}) {
    std::vector<uint8_t> x(static_cast<std::size_t>(m * kk));
    std::vector<int8_t> w(static_cast<std::size_t>(n * kk));
    std::vector<float> sw(static_cast<std::size_t>(n)), bias(static_cast<std::size_t>(n));
    for (auto& v : x) v = static_cast<uint8_t>(rng() % 256);
    for (auto& v : w) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
    for (auto& v : sw) v = 0.001f + static_cast<float>(rng() % 100) / 1e4f;
    for (auto& v : bias) v = static_cast<float>(static_cast<int>(rng() % 200) - 100) / 50.0f;
    std::vector<float> ref(static_cast<std::size_t>(m * n)), got(ref.size());
    const float sx = 0.02f;
    const int32_t zx = 117;
    k::int8_gemm_ref(x.data(), m, kk, sx, zx, w.data(), n, sw.data(), bias.data(), ref.data());
    k::Int8Gemm g(w.data(), n, kk, sw.data(), bias.data());
    g.run(x.data(), m, sx, zx, got.data());
    for (std::size_t i = 0; i < ref.size(); ++i) {
      // int32 accumulation is exact; only the float rescale may round differently.
      ASSERT_NEAR(got[i], ref[i], 1e-5 * (1 + std::abs(ref[i]))) << "m=" << m << " k=" << kk << " n=" << n << " i=" << i;
    }
    // A second call with another m reuses the packed weights.
    std::vector<float> one(static_cast<std::size_t>(n));
    g.run(x.data(), 1, sx, zx, one.data());
    for (int64_t j = 0; j < n; ++j) ASSERT_NEAR(one[static_cast<std::size_t>(j)], ref[static_cast<std::size_t>(j)], 1e-5 * (1 + std::abs(ref[static_cast<std::size_t>(j)])));
    EXPECT_FALSE(g.implementation().empty());
  }
}

TEST(KernelsQuantizeU8, MatchesReferenceAndRoundsHalfToEven) {
  // 0.5 and 2.5 round to even (0, 2), 1.5 to 2; clamped at both ends.
  const float x[] = {0.5f, 1.5f, 2.5f, -100.0f, 1000.0f, 3.2f};
  uint8_t q[6];
  k::quantize_u8_ref(x, 6, 1.0f, 10, q);
  EXPECT_EQ(q[0], 10);
  EXPECT_EQ(q[1], 12);
  EXPECT_EQ(q[2], 12);
  EXPECT_EQ(q[3], 0);
  EXPECT_EQ(q[4], 255);
  EXPECT_EQ(q[5], 13);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0, 3);
  std::vector<float> v(1000 + 7);
  for (auto& f : v) f = nd(rng);
  std::vector<uint8_t> a(v.size()), b(v.size());
  k::quantize_u8_ref(v.data(), static_cast<int64_t>(v.size()), 1 / 0.05f, 128, a.data());
  k::quantize_u8(v.data(), static_cast<int64_t>(v.size()), 1 / 0.05f, 128, b.data());
  EXPECT_EQ(a, b) << k::quantize_isa();
}
