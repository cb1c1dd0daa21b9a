// The inference runtime against the training-time model: the same logits within a tolerance per
// precision (fp32 1e-4, int8 against the quantize stage's own int8 path, bf16 and int8-at-load
// against fp32 within their rounding), on unpadded batches of mixed lengths, for dense, pruned
// (per-layer heads and FFN widths), low-rank and shared models, from memory and from a folder.
#include <gtest/gtest.h>

#include <numeric>

#include "condense/factorize/factorize.h"
#include "condense/kernels/isa.h"
#include "condense/kernels/linear.h"
#include "condense/kernels/transformer.h"
#include "condense/nn/checkpoint.h"
#include "condense/quantize/quantize.h"
#include "condense/runtime/engine.h"
#include "test_util.h"
#include "tiny_bert.h"

namespace {

using condense::runtime::Engine;
using condense::runtime::EngineOptions;
using condense::runtime::Precision;
namespace nn = condense::nn;
namespace q = condense::quantize;
namespace ct = condense::testing;

// Head width 32 and FFN 128 exercise the vector bodies; the tiny_bert model (head width 8) the tails.
nn::BertClassifier wide_model(uint64_t seed, std::vector<int64_t> heads = {}, std::vector<int64_t> inter = {}) {
  nn::BertConfig c;
  c.vocab_size = 64;
  c.hidden_size = 96;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 3;
  c.intermediate_size = 128;
  c.max_position_embeddings = 64;
  c.num_labels = 3;
  c.layer_heads = std::move(heads);
  c.layer_intermediate = std::move(inter);
  torch::manual_seed(seed);
  nn::BertClassifier m(c);
  m->eval();
  return m;
}

torch::Tensor engine_logits(const Engine& e, const condense::train::EncodedDataset& d) {
  std::vector<std::size_t> idx(d.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto b = condense::train::make_batch(d, idx);
  return e.forward(b.input_ids, b.token_type_ids, b.attention_mask);
}

double scale_of(const torch::Tensor& t) { return 1 + t.abs().max().item<double>(); }

// Attention of bf16 and int8 engines (head width 32): bf16 where the CPU has AVX-512 BF16.
std::string low_attention() { return condense::kernels::attention_bf16_supported(32) ? "bf16" : "fp32"; }

}  // namespace

TEST(RuntimeEngine, Fp32MatchesTheModelOnMixedLengths) {
  auto data = ct::tiny_sst2(20, 1);
  for (int variant = 0; variant < 2; ++variant) {
    auto m = variant == 0 ? ct::tiny_bert(1) : wide_model(2);
    auto e = Engine::from_model(m, nullptr, EngineOptions().with_precision(Precision::F32));
    auto want = ct::tiny_logits(m, data), got = engine_logits(e, data);
    EXPECT_LT(ct::max_diff(got, want), 1e-4 * scale_of(want)) << "variant " << variant;
    EXPECT_EQ(e.precision(), "fp32 12 products, attention fp32");  // fused QKV, attention output, FFN in, FFN out: 4 × 3 layers
  }
}

TEST(RuntimeEngine, PaddingFreeBatchEqualsOneSequenceAtATime) {
  auto m = wide_model(3);
  auto e = Engine::from_model(m, nullptr, EngineOptions().with_precision(Precision::F32));
  condense::runtime::TokenBatch all;
  std::vector<std::vector<float>> single;
  for (int len : {3, 17, 1, 40}) {
    std::vector<int32_t> ids(static_cast<std::size_t>(len)), types(static_cast<std::size_t>(len), 0);
    for (int i = 0; i < len; ++i) ids[i] = 5 + (i * 7 + len) % 50;
    all.add(ids, types);
    condense::runtime::TokenBatch one;
    one.add(ids, types);
    single.push_back(e.forward(one));
  }
  auto out = e.forward(all);
  ASSERT_EQ(out.size(), 4u * 3u);
  for (std::size_t s = 0; s < 4; ++s) {
    for (std::size_t c = 0; c < 3; ++c) EXPECT_NEAR(out[s * 3 + c], single[s][c], 1e-5);
  }
}

TEST(RuntimeEngine, PrunedLowRankAndSharedModels) {
  auto data = ct::tiny_sst2(12, 2);
  auto pruned = wide_model(4, {3, 1, 2}, {128, 16, 40});
  auto e = Engine::from_model(pruned, nullptr, EngineOptions().with_precision(Precision::F32));
  auto want = ct::tiny_logits(pruned, data);
  EXPECT_LT(ct::max_diff(engine_logits(e, data), want), 1e-4 * scale_of(want));
  auto dense = wide_model(5);
  auto low = condense::factorize::factorize(dense, condense::factorize::FactorizeOptions().with_rank(16).with_embedding_size(24));
  low->eval();
  auto el = Engine::from_model(low, nullptr, {});
  want = ct::tiny_logits(low, data);
  EXPECT_LT(ct::max_diff(engine_logits(el, data), want), 1e-4 * scale_of(want));
  auto shared = condense::factorize::share(dense, condense::factorize::ShareOptions().with_mode("all"));
  shared->eval();
  auto es = Engine::from_model(shared, nullptr, {});
  want = ct::tiny_logits(shared, data);
  EXPECT_LT(ct::max_diff(engine_logits(es, data), want), 1e-4 * scale_of(want));
}

TEST(RuntimeEngine, Int8MatchesTheQuantizedModelsIntegerPath) {
  auto data = ct::tiny_sst2(24, 3);
  for (auto mode : {q::Activations::Static, q::Activations::Dynamic}) {
    auto m = wide_model(6);
    auto qm = q::apply(m, q::QuantizeOptions().with_activations(mode), &data);
    auto e = Engine::from_model(m, &qm, {});
    EXPECT_EQ(e.precision(), "int8 12 products, attention " + low_attention()) << q::to_string(mode);
    auto want = ct::tiny_logits(m, data), got = engine_logits(e, data);
    // The same integer products; attention and LayerNorm round differently, which can move an
    // activation across one quantization level.
    EXPECT_LT(ct::max_diff(got, want), 1e-2 * scale_of(want)) << q::to_string(mode);
    // fp32 attention on request: the training-time model's arithmetic apart from the products.
    auto ef = Engine::from_model(m, &qm, EngineOptions().with_fp32_attention(true));
    EXPECT_EQ(ef.precision(), "int8 12 products, attention fp32");
    EXPECT_LT(ct::max_diff(engine_logits(ef, data), want), 1e-2 * scale_of(want)) << q::to_string(mode);
  }
  // 4-bit symmetric codes widened to int8 (W4A8), and a weight-only model running its dequantized weights in fp32.
  auto m4 = wide_model(7);
  auto q4 = q::apply(m4, q::QuantizeOptions().with_weights(q::Scheme().with_bits(4)).with_activations(q::Activations::Static), &data);
  auto want = ct::tiny_logits(m4, data);
  EXPECT_LT(ct::max_diff(engine_logits(Engine::from_model(m4, &q4, {}), data), want), 1e-2 * scale_of(want));
  auto mw = wide_model(8);
  auto qw = q::apply(mw, q::QuantizeOptions().with_weights(q::Scheme().with_bits(4).with_method(q::Method::Log)));
  auto ew = Engine::from_model(mw, &qw, {});
  EXPECT_EQ(ew.precision(), "fp32 12 products, attention fp32");
  want = ct::tiny_logits(mw, data);
  EXPECT_LT(ct::max_diff(engine_logits(ew, data), want), 1e-4 * scale_of(want));
}

TEST(RuntimeEngine, Bf16AndInt8AtLoadStayCloseToFp32) {
  auto data = ct::tiny_sst2(24, 4);
  auto m = wide_model(9);
  auto want = ct::tiny_logits(m, data);
  auto mb = wide_model(9);
  auto qb = q::apply(mb, q::QuantizeOptions().with_weights(q::Scheme().with_method(q::Method::BFloat16).with_bits(16)));
  const auto wb = ct::tiny_logits(mb, data);
  if (!condense::kernels::bf16_products_supported()) {
    // Without bf16 products (AVX2 CPUs): asking for bf16 is one clear error; a bf16 folder runs
    // its bf16-valued weights in fp32 and stays as close to the quantize stage's model.
    EXPECT_NE(ct::error_of([&] { Engine::from_model(m, nullptr, EngineOptions().with_precision(Precision::BF16)); })
                  .find("precision bf16 needs a CPU with AVX-512"),
              std::string::npos);
    auto es = Engine::from_model(mb, &qb, {});
    EXPECT_EQ(es.precision(), "fp32 12 products, attention fp32");
    EXPECT_LT(ct::max_diff(engine_logits(es, data), wb), 3e-2 * scale_of(wb));
  } else {
    auto eb = Engine::from_model(m, nullptr, EngineOptions().with_precision(Precision::BF16));
    EXPECT_EQ(eb.precision(), "bf16 12 products, attention " + low_attention());
    EXPECT_LT(ct::max_diff(engine_logits(eb, data), want), 3e-2 * scale_of(want));
    // A folder quantized to bf16 runs its products in bf16 as stored (auto), like the quantize stage.
    auto es = Engine::from_model(mb, &qb, {});
    EXPECT_EQ(es.precision(), "bf16 12 products, attention " + low_attention());
    EXPECT_LT(ct::max_diff(engine_logits(es, data), wb), 3e-2 * scale_of(wb));
  }
  auto ei = Engine::from_model(m, nullptr, EngineOptions().with_precision(Precision::Int8));
  EXPECT_EQ(ei.precision(), "int8 12 products, attention " + low_attention());
  EXPECT_LT(ct::max_diff(engine_logits(ei, data), want), 5e-2 * scale_of(want));
}

TEST(RuntimeEngine, LoadsFoldersAsWritten) {
  auto data = ct::tiny_sst2(10, 5);
  const auto dir = ct::scratch_dir("runtime_engine_load");
  auto m = wide_model(10, {2, 3, 1}, {64, 128, 8});
  nn::save_pretrained(m, dir / "float", "");
  auto want = ct::tiny_logits(m, data);
  EXPECT_LT(ct::max_diff(engine_logits(Engine::load(dir / "float"), data), want), 1e-4 * scale_of(want));
  auto qm = q::apply(m, q::QuantizeOptions().with_activations(q::Activations::Static), &data);
  q::save(m, qm, dir / "int8", "");
  want = ct::tiny_logits(m, data);
  auto e = Engine::load(dir / "int8");
  EXPECT_EQ(e.precision(), "int8 12 products, attention " + low_attention());
  EXPECT_LT(ct::max_diff(engine_logits(e, data), want), 1e-2 * scale_of(want));
  // fp32 on the same folder runs its dequantized weights
  EXPECT_EQ(Engine::load(dir / "int8", EngineOptions().with_precision(Precision::F32)).precision(), "fp32 12 products, attention fp32");
}

TEST(RuntimeEngine, ClearErrors) {
  nn::BertConfig c = ct::tiny_bert(1)->config();
  c.bottleneck_size = 16;
  nn::BertClassifier mobile(c);
  EXPECT_NE(ct::error_of([&] { Engine::from_model(mobile, nullptr, {}, "mobile/"); }).find("mobile/: MobileBERT bottleneck"),
            std::string::npos);
  // bench_methods.sh times every shape this rejects in LibTorch instead, by this one phrase.
  nn::BertConfig bn = ct::tiny_bert(1)->config();
  bn.norm = nn::NormKind::BatchNorm;
  nn::BertClassifier batchnorm(bn);
  EXPECT_NE(ct::error_of([&] { Engine::from_model(batchnorm, nullptr, {}, "bn/"); })
                .find("bn/: norm 'batchnorm' is not supported by the runtime"),
            std::string::npos);
  auto m = ct::tiny_bert(2);
  auto e = Engine::from_model(m, nullptr, {});
  condense::runtime::TokenBatch b;
  b.add({2, 500, 3}, {0, 0, 0});
  EXPECT_NE(ct::error_of([&] { e.forward(b); }).find("token id 500 outside the vocabulary of 64"), std::string::npos);
  auto ids = torch::ones({1, 4}, torch::kLong), mask = torch::tensor({{1, 0, 1, 1}});
  EXPECT_NE(ct::error_of([&] { e.forward(ids, torch::zeros_like(ids), mask); }).find("not a prefix of ones"),
            std::string::npos);
  EXPECT_NE(ct::error_of([] { condense::runtime::parse_precision("int3"); }).find("precision is 'int3'"), std::string::npos);
}

TEST(RuntimeEngine, FlopsCountProductsAndAttention) {
  auto m = ct::tiny_bert(3, 2);  // hidden 32, FFN 64, 2 labels
  auto e = Engine::from_model(m, nullptr, {});
  // Per token and layer 3·32² multiply-adds up to attention (QKV) and 32² + 2·32·64 after it, in
  // the last layer on the [CLS] row alone; attention 2·len²·32 per layer; pooler and classifier
  // per sequence.
  const double before = 3.0 * 32 * 32, after = 32.0 * 32 + 2.0 * 32 * 64, attention = 2 * 2 * 100.0 * 32;
  const double want = 2 * 10 * (before + after) + attention + 2 * 10 * before + 2 * 1 * after + attention +
                      2 * (32.0 * 32 + 32 * 2);
  EXPECT_DOUBLE_EQ(e.flops({10}), want);
  // A per-call int8 range keeps every row (the range depends on them).
  auto data = ct::tiny_sst2(8, 3);
  auto qm = q::apply(m, q::QuantizeOptions().with_activations(q::Activations::Dynamic), &data);
  auto ed = Engine::from_model(m, &qm, {});
  EXPECT_DOUBLE_EQ(ed.flops({10}), 2 * (2 * 10 * (before + after) + attention) + 2 * (32.0 * 32 + 32 * 2));
}
