// Quantization: every quantizer within its named error bound, hand-computed codes, observers,
// the int8 path against its fake-quant reference, storage round trips and corrupted files, QAT
// gradients, Hessian sensitivity and bit assignment, layer diagnostics, recipe errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <numeric>
#include <random>

#include "condense/core/file.h"
#include "condense/io/safetensors.h"
#include "condense/nn/checkpoint.h"
#include "condense/pipeline/recipe.h"
#include "condense/quantize/quantize.h"
#include "single_thread.h"
#include "test_util.h"

namespace q = condense::quantize;
namespace nn = condense::nn;
namespace train = condense::train;
namespace ct = condense::testing;
namespace fs = std::filesystem;
using q::Granularity;
using q::Method;
using q::Scheme;

namespace {

torch::Tensor weights(int64_t rows, int64_t cols, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({rows, cols}) * 0.05;
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

nn::BertConfig tiny_config() {
  nn::BertConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 64;
  c.max_position_embeddings = 64;
  c.num_labels = 2;
  return c;
}

nn::BertClassifier tiny_model(uint64_t seed) {
  torch::manual_seed(seed);
  nn::BertClassifier m(tiny_config());
  m->eval();
  return m;
}

train::EncodedDataset tiny_data(int64_t n, uint64_t seed) {
  train::EncodedDataset d;
  d.task = condense::data::Task::SST2;
  std::mt19937 rng(static_cast<unsigned>(seed));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t len = 4 + static_cast<int64_t>(rng() % 12);
    std::vector<int64_t> ids{2};
    for (int64_t t = 1; t < len - 1; ++t) ids.push_back(5 + static_cast<int64_t>(rng() % 59));
    ids.push_back(3);
    d.input_ids.push_back(ids);
    d.token_type_ids.emplace_back(ids.size(), 0);
    d.labels.push_back(static_cast<int64_t>(rng() % 2));
    d.scores.push_back(0);
  }
  return d;
}

torch::Tensor logits_of(nn::BertClassifier& m, const train::EncodedDataset& d) {
  torch::NoGradGuard g;
  std::vector<std::size_t> idx(d.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto b = train::make_batch(d, idx);
  return m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
}

}  // namespace

// ---- quantizers on hand-computed values ----

TEST(Quantize, Int8SymmetricHandValues) {
  // absmax 1 -> scale 1/127; 0.5·127 = 63.5 rounds to even 64, 0.25·127 = 31.75 -> 32.
  auto w = torch::tensor({{-1.0f, 0.5f, 0.25f, 1.0f}});
  auto t = q::quantize_tensor(w, Scheme().with_granularity(Granularity::PerTensor));
  ASSERT_EQ(t.codes.scalar_type(), torch::kInt8);
  EXPECT_EQ(t.codes[0][0].item<int>(), -127);
  EXPECT_EQ(t.codes[0][1].item<int>(), 64);
  EXPECT_EQ(t.codes[0][2].item<int>(), 32);
  EXPECT_EQ(t.codes[0][3].item<int>(), 127);
  EXPECT_NEAR(t.scale[0].item<double>(), 1.0 / 127, 1e-9);
  EXPECT_NEAR(t.dequantize()[0][1].item<double>(), 64.0 / 127, 1e-6);
}

TEST(Quantize, Int2AsymmetricHandValues) {
  // min 0 (clamped to include 0), max 3 -> scale 1, zero point 0; codes are the values.
  auto w = torch::tensor({{0.0f, 1.0f, 2.0f, 3.0f}});
  auto t = q::quantize_tensor(w, Scheme().with_bits(2).with_symmetric(false).with_granularity(Granularity::PerTensor));
  ASSERT_EQ(t.codes.numel(), 1);  // four 2-bit codes in one byte: 0 | 1<<2 | 2<<4 | 3<<6 = 228
  EXPECT_EQ(t.codes[0].item<int>(), 228);
  EXPECT_EQ(t.zero_point[0].item<int>(), 0);
  EXPECT_TRUE(torch::allclose(t.dequantize(), w));
}

TEST(Quantize, BinaryIsSignTimesMeanMagnitude) {
  auto w = torch::tensor({{-0.2f, 0.4f, 0.6f, -1.0f}});
  auto t = q::quantize_tensor(w, Scheme().with_bits(1).with_granularity(Granularity::PerChannel));
  const float m = (0.2f + 0.4f + 0.6f + 1.0f) / 4;
  EXPECT_TRUE(torch::allclose(t.dequantize(), torch::tensor({{-m, m, m, -m}})));
  EXPECT_EQ(t.codes.numel(), 1);
}

TEST(Quantize, LogLevelsArePowersOfTwo) {
  // 4 bits: sign + 3-bit exponent index; levels 0 and scale·2^-(j-1), j = 1..7.
  auto w = torch::tensor({{1.0f, -0.5f, 0.26f, 0.0f, 0.001f, -0.13f}});
  auto t = q::quantize_tensor(w, Scheme().with_bits(4).with_method(Method::Log).with_granularity(Granularity::PerTensor));
  auto d = t.dequantize();
  EXPECT_FLOAT_EQ(d[0][0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(d[0][1].item<float>(), -0.5f);
  EXPECT_FLOAT_EQ(d[0][2].item<float>(), 0.25f);
  EXPECT_FLOAT_EQ(d[0][3].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(d[0][4].item<float>(), 0.0f);  // below half the smallest level 2^-6
  EXPECT_FLOAT_EQ(d[0][5].item<float>(), -0.125f);
}

// ---- error bounds ----

TEST(Quantize, UniformWithinHalfAStep) {
  auto w = weights(48, 256, 1);
  for (int bits : {8, 4, 2}) {
    for (bool sym : {true, false}) {
      for (auto g : {Granularity::PerTensor, Granularity::PerChannel, Granularity::Group}) {
        auto s = Scheme().with_bits(bits).with_symmetric(sym).with_granularity(g).with_group_size(64);
        auto t = q::quantize_tensor(w, s);
        t.validate("test");
        auto err = (t.dequantize() - w).abs();
        // Half a step of each group (codes are rounded against the scale as stored).
        auto step = t.scale.to(torch::kFloat32);
        auto groups = g == Granularity::PerTensor ? err.reshape({1, -1})
                      : g == Granularity::PerChannel ? err.reshape({48, -1}) : err.reshape({-1, 64});
        auto bound = step * (0.5 + 1e-5) + 1e-7;
        EXPECT_TRUE((groups.amax(1) <= bound).all().item<bool>()) << s.name();
      }
    }
  }
}

TEST(Quantize, WeightRangeObservers) {
  // A few large weights per row: min/max spends the 4-bit levels on them; the MSE range clips
  // where that lowers the total error, and never does worse than min/max.
  auto w = weights(16, 128, 8);
  w.select(1, 3).fill_(1.0);
  auto err = [&](const Scheme& s) { return (q::quantize_tensor(w, s).dequantize() - w).pow(2).sum(1); };
  auto base = Scheme().with_bits(4).with_symmetric(false);
  auto e_mm = err(base), e_mse = err(Scheme(base).with_range("mse"));
  EXPECT_TRUE((e_mse <= e_mm * (1 + 1e-6)).all().item<bool>());
  EXPECT_LT(e_mse.sum().item<double>(), e_mm.sum().item<double>());
  // Percentile: the 99.9th percentile of a row of 128 is its second-largest |w|, so the outlier
  // (1.0, against weights of about 0.05) is clipped to the bulk's range.
  auto p = q::quantize_tensor(w, Scheme(base).with_range("percentile"));
  EXPECT_LT(max_abs(p.dequantize()), 0.5);
  EXPECT_NE(ct::error_of([] { Scheme().with_range("max").validate("weights"); }).find("range must be minmax, mse or percentile"),
            std::string::npos);
}

TEST(Quantize, PowerOfTwoScales) {
  auto w = weights(16, 64, 2);
  auto t = q::quantize_tensor(w, Scheme().with_bits(4).with_method(Method::PowerOfTwo));
  auto l = torch::log2(t.scale);
  EXPECT_TRUE(torch::allclose(l, torch::round(l)));
  EXPECT_LE(max_abs(t.dequantize() - w), t.scale.max().item<double>() / 2 + 1e-7);
}

TEST(Quantize, KMeansBeatsItsLinearInitAndUsesFewValues) {
  auto w = weights(32, 128, 3);
  auto km = q::quantize_tensor(w, Scheme().with_bits(4).with_method(Method::KMeans).with_granularity(Granularity::PerTensor));
  auto un = q::quantize_tensor(w, Scheme().with_bits(4).with_symmetric(false).with_granularity(Granularity::PerTensor));
  auto dk = km.dequantize(), du = un.dequantize();
  EXPECT_LE(std::get<0>(at::_unique(dk)).numel(), 16);
  EXPECT_LT((dk - w).pow(2).mean().item<double>(), (du - w).pow(2).mean().item<double>());
  EXPECT_EQ(km.codebook.size(1), 16);
}

TEST(Quantize, FloatFormatsWithinTheirPrecision) {
  auto w = weights(8, 32, 4);
  auto h = q::quantize_tensor(w, Scheme().with_bits(16).with_method(Method::Float16));
  auto b = q::quantize_tensor(w, Scheme().with_bits(16).with_method(Method::BFloat16));
  EXPECT_TRUE(((h.dequantize() - w).abs() <= w.abs() * std::pow(2.0, -11) + 1e-8).all().item<bool>());
  EXPECT_TRUE(((b.dequantize() - w).abs() <= w.abs() * std::pow(2.0, -8) + 1e-30).all().item<bool>());
  EXPECT_EQ(h.nbytes(), 8 * 32 * 2);
}

TEST(Quantize, PackedSizes) {
  auto w = weights(384, 384, 5);
  auto t4 = q::quantize_tensor(w, Scheme().with_bits(4).with_granularity(Granularity::Group).with_group_size(128));
  EXPECT_EQ(t4.codes.numel(), 384 * 384 / 2);
  EXPECT_EQ(t4.nbytes(), 384 * 384 / 2 + 384 * 3 * 2);  // fp16 scale per group of 128
  auto t2 = q::quantize_tensor(w, Scheme().with_bits(2).with_granularity(Granularity::Group).with_group_size(128));
  EXPECT_GT(384.0 * 384 * 4 / t2.nbytes(), 13.0);  // the Q-BERT 2-bit compression
  auto t8 = q::quantize_tensor(w, Scheme());
  EXPECT_EQ(t8.nbytes(), 384 * 384 + 384 * 4);
}

TEST(Quantize, StraightThroughGradient) {
  auto w = weights(4, 8, 6).requires_grad_(true);
  auto y = q::fake_quantize(w, Scheme().with_bits(2)) * 3;
  y.sum().backward();
  EXPECT_TRUE(torch::allclose(w.grad(), torch::full_like(w, 3)));
}

TEST(Quantize, SchemeErrorsNameTheField) {
  EXPECT_NE(ct::error_of([] { Scheme().with_bits(3).validate("weights"); }).find("weights: bits must be 1, 2, 4 or 8"),
            std::string::npos);
  EXPECT_NE(ct::error_of([] { q::quantize_tensor(torch::zeros({4, 100}), Scheme().with_granularity(Granularity::Group)); })
                .find("group size 128 does not divide the row length 100"),
            std::string::npos);
  EXPECT_NE(ct::error_of([] { q::parse_observer("max"); }).find("unknown observer 'max'"), std::string::npos);
}

// ---- observers ----

TEST(Quantize, Observers) {
  auto x = torch::linspace(-1, 1, 20001);
  torch::manual_seed(0);
  auto bulk = torch::randn({20000});
  auto with_outlier = torch::cat({bulk, torch::tensor({50.0f})});
  q::RangeObserver mm(q::Observer::MinMax, false);
  mm.observe(x);
  mm.observe(x * 2);
  EXPECT_DOUBLE_EQ(mm.range().lo, -2);
  EXPECT_DOUBLE_EQ(mm.range().hi, 2);
  q::RangeObserver ema(q::Observer::MovingAverage, false);
  ema.observe(x);
  ema.observe(x * 2);
  EXPECT_NEAR(ema.range().hi, 0.9 * 1 + 0.1 * 2, 1e-9);
  for (auto kind : {q::Observer::Percentile, q::Observer::Entropy}) {
    q::RangeObserver o(kind, true);
    o.observe(with_outlier);
    const auto r = o.range();
    // The lone outlier is clipped; most of the bulk is kept.
    EXPECT_LT(r.hi, 10) << q::to_string(kind);
    EXPECT_GT(r.hi, 2) << q::to_string(kind);
  }
  // MSE: the range it picks quantizes the data it saw with no more error than min/max does,
  // and on a Gaussian it clips the tails (8-bit rounding error outweighs the few clipped values).
  q::RangeObserver mse(q::Observer::Mse, false), mm2(q::Observer::MinMax, false);
  mse.observe(bulk);
  mm2.observe(bulk);
  auto err = [&](const q::ActRange& r) { return (q::fake_quantize_activation(bulk, r) - bulk).pow(2).mean().item<double>(); };
  EXPECT_LE(err(mse.range()), err(mm2.range()));
  EXPECT_LT(mse.range().hi, mm2.range().hi);
  // Symmetric activations: 127 levels each side, zero point 0.
  auto p = q::ActRange{-2, 1, true}.params();
  EXPECT_DOUBLE_EQ(p.first, 2.0 / 127);
  EXPECT_EQ(p.second, 0);
  auto a = q::ActRange{-1, 3, false}.params();
  EXPECT_DOUBLE_EQ(a.first, 4.0 / 255);
  EXPECT_EQ(a.second, 64);  // round(1 / (4/255)) = round(63.75)
}

// ---- models ----

TEST(Quantize, Int8KernelMatchesFakeQuantReference) {
  auto data = tiny_data(24, 1);
  for (const char* backend : {"onednn", "torch"}) {
  ::setenv("CONDENSE_INT8_BACKEND", backend, 1);
  for (auto mode : {q::Activations::Dynamic, q::Activations::Static}) {
    auto a = tiny_model(1), b = tiny_model(1), f = tiny_model(1);
    auto opts = q::QuantizeOptions().with_activations(mode);
    q::apply(a, opts, &data);
    q::apply(b, opts.with_int8_kernels(false), &data);
    auto la = logits_of(a, data), lb = logits_of(b, data), lf = logits_of(f, data);
    // Same arithmetic up to float rounding of the rescale (a rare one-level flip on a tie).
    EXPECT_LT(max_abs(la - lb), 2e-3 * (1 + max_abs(lb))) << q::to_string(mode) << " " << backend;
    EXPECT_LT(max_abs(la - lf), 0.05 * (1 + max_abs(lf))) << q::to_string(mode) << " " << backend;
  }
  // Narrower symmetric codes run through the same integer GEMM, widened to int8 (W4A8, W2A8).
  for (int bits : {4, 2, 1}) {
    auto a = tiny_model(2), b = tiny_model(2);
    auto opts = q::QuantizeOptions().with_weights(Scheme().with_bits(bits)).with_activations(q::Activations::Static);
    q::apply(a, opts, &data);
    q::apply(b, opts.with_int8_kernels(false), &data);
    auto la = logits_of(a, data), lb = logits_of(b, data);
    EXPECT_LT(max_abs(la - lb), 2e-3 * (1 + max_abs(lb))) << bits << " bits " << backend;
  }
  }
  ::unsetenv("CONDENSE_INT8_BACKEND");
}

TEST(Quantize, SaveLoadRoundTripAndSmallerFile) {
  auto data = tiny_data(16, 2);
  const auto dir = ct::scratch_dir("quantize_roundtrip");
  nn::save_pretrained(*new nn::BertClassifier(tiny_model(3)), dir / "float", "");
  for (auto s : {Scheme(), Scheme().with_bits(4).with_symmetric(false).with_granularity(Granularity::Group).with_group_size(16),
                 Scheme().with_bits(2).with_method(Method::KMeans), Scheme().with_bits(1),
                 Scheme().with_bits(4).with_method(Method::Log), Scheme().with_bits(16).with_method(Method::BFloat16)}) {
    auto m = tiny_model(3);
    auto opts = q::QuantizeOptions().with_weights(s).with_embeddings(Scheme()).with_activations(
        s.bits == 8 ? q::Activations::Static : q::Activations::None);
    auto qm = q::apply(m, opts, &data);
    q::save(m, qm, dir / "q", "");
    q::QuantizedModel back;
    auto loaded = q::load(dir / "q", &back);
    loaded->eval();
    EXPECT_TRUE(torch::allclose(logits_of(m, data), logits_of(loaded, data), 1e-5, 1e-5)) << s.name();
    EXPECT_EQ(back.layers.size(), qm.layers.size());
    EXPECT_LT(nn::checkpoint_bytes(dir / "q"), nn::checkpoint_bytes(dir / "float")) << s.name();
    EXPECT_TRUE(q::is_quantized(dir / "q"));
    // A float loader refuses the folder instead of reading codes as weights.
    EXPECT_NE(ct::error_of([&] { nn::load_classifier(dir / "q"); }).find("quantization_config"), std::string::npos);
  }
}

TEST(Quantize, CorruptedFilesAreRejected) {
  const auto dir = ct::scratch_dir("quantize_corrupt");
  auto m = tiny_model(4);
  auto qm = q::apply(m, q::QuantizeOptions().with_weights(Scheme().with_bits(4).with_granularity(Granularity::Group).with_group_size(16)));
  q::save(m, qm, dir / "q", "");
  const auto cfg_path = dir / "q" / "config.json";
  const std::string good_cfg = condense::read_file(cfg_path);
  // A shape that does not match the packed codes.
  auto j = nlohmann::json::parse(good_cfg);
  j["quantization_config"]["layers"]["bert.encoder.layer.0.attention.self.query"]["shape"] = {32, 64};
  condense::write_file_atomic(cfg_path, j.dump());
  auto err = ct::error_of([&] { q::load(dir / "q"); });
  EXPECT_NE(err.find("bert.encoder.layer.0.attention.self.query.weight"), std::string::npos) << err;
  // A config with fewer layers than the quantized ones stored.
  j = nlohmann::json::parse(good_cfg);
  j["num_hidden_layers"] = 1;
  condense::write_file_atomic(cfg_path, j.dump());
  err = ct::error_of([&] { q::load(dir / "q"); });
  EXPECT_NE(err.find("bert.encoder.layer.1."), std::string::npos) << err;
  EXPECT_NE(err.find("is not a [32, 32] weight of this model"), std::string::npos) << err;
  // An unknown bit width.
  j = nlohmann::json::parse(good_cfg);
  j["quantization_config"]["layers"]["bert.encoder.layer.1.output.dense"]["bits"] = 3;
  condense::write_file_atomic(cfg_path, j.dump());
  err = ct::error_of([&] { q::load(dir / "q"); });
  EXPECT_NE(err.find("bits must be 1, 2, 4 or 8"), std::string::npos) << err;
  EXPECT_NE(err.find("bert.encoder.layer.1.output.dense"), std::string::npos) << err;
  // A missing scale tensor.
  condense::write_file_atomic(cfg_path, good_cfg);
  auto st = condense::io::SafetensorsFile::open(dir / "q" / "model.safetensors");
  std::vector<condense::io::TensorToWrite> keep;
  for (const auto& t : st.tensors()) {
    if (t.name != "bert.encoder.layer.0.intermediate.dense.weight_scale") keep.push_back({t.name, t.dtype, t.shape, t.data, t.nbytes});
  }
  condense::io::write_safetensors(dir / "q" / "model2.safetensors", keep);
  fs::rename(dir / "q" / "model2.safetensors", dir / "q" / "model.safetensors");
  err = ct::error_of([&] { q::load(dir / "q"); });
  EXPECT_NE(err.find("bert.encoder.layer.0.intermediate.dense.weight_scale"), std::string::npos) << err;
}

TEST(Quantize, QatTrainsThroughFakeQuant) {
  auto m = tiny_model(5);
  m->train();
  q::prepare_qat(m, q::QuantizeOptions().with_weights(Scheme().with_bits(4)).with_activations(q::Activations::Static));
  auto data = tiny_data(8, 3);
  std::vector<std::size_t> idx{0, 1, 2, 3, 4, 5, 6, 7};
  auto b = train::make_batch(data, idx);
  auto loss = train::task_loss(m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits, b);
  loss.backward();
  auto g = m->layer(0)->attention->self->query->weight.grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(g.abs().sum().item<double>(), 0);
  // The trained EMA ranges become the stored static ranges: no calibration data needed.
  m->eval();
  auto qm = q::apply(m, q::QuantizeOptions().with_weights(Scheme().with_bits(4)).with_activations(q::Activations::Static));
  EXPECT_TRUE(qm.layers.at("bert.encoder.layer.0.attention.self.query").input.has_value());
}

TEST(Quantize, HessianSensitivityAndBitBudget) {
  auto m = tiny_model(6);
  auto data = tiny_data(16, 4);
  auto s = q::hessian_sensitivity(m, data, 2, 4, 1);
  ASSERT_EQ(s.size(), q::dense_layer_names(m).size());
  for (const auto& [name, v] : s) EXPECT_TRUE(std::isfinite(v)) << name;
  auto bits = q::assign_bits(s, m, 2, 8, 3.0);
  double total = 0, used = 0;
  for (const auto& name : q::dense_layer_names(m)) {
    auto w = m->named_parameters()[name + ".weight"];
    total += static_cast<double>(w.numel());
    used += bits.at(name) * static_cast<double>(w.numel());
  }
  EXPECT_LE(used / total, 3.0 + 1e-9);
  EXPECT_GT(used / total, 2.0);  // the budget is spent on at least one layer
}

TEST(Quantize, LayerErrorsGrowAsBitsShrink) {
  auto data = tiny_data(16, 5);
  auto f = tiny_model(7), q8 = tiny_model(7), q2 = tiny_model(7);
  q::apply(q8, q::QuantizeOptions());
  q::apply(q2, q::QuantizeOptions().with_weights(Scheme().with_bits(2)));
  auto e8 = q::layer_errors(f, q8, data, 1), e2 = q::layer_errors(f, q2, data, 1), e0 = q::layer_errors(f, f, data, 1);
  ASSERT_EQ(e8.size(), e2.size());
  for (std::size_t i = 0; i < e8.size(); ++i) {
    EXPECT_LT(e8[i].relative_error, e2[i].relative_error) << e8[i].layer;
    EXPECT_NEAR(e0[i].relative_error, 0, 1e-7);
  }
}

// ---- recipes ----

TEST(Quantize, RecipeFileErrorsNameFileAndKey) {
  const auto dir = ct::scratch_dir("quantize_recipes");
  auto write = [&](const std::string& name, const std::string& text) {
    condense::write_file_atomic(dir / name, text);
    return dir / name;
  };
  auto ok = condense::pipeline::load_quantize_recipe(write(
      "ok.yaml", "weights: {bits: 4, granularity: group, group_size: 64, range: mse}\n"
                 "activations: {mode: static, observer: entropy}\nmixed_precision: {low: 2, high: 4, budget: 2.5}\n"
                 "qat: {epochs: 2, learning_rate: 1.0e-5, layer_losses: [{loss: hidden_mse, weight: 2}]}\n"));
  EXPECT_EQ(ok.options.weights.bits, 4);
  EXPECT_EQ(ok.options.weights.group_size, 64);
  EXPECT_EQ(ok.options.weights.range, "mse");
  EXPECT_EQ(ok.options.observer, q::Observer::Entropy);
  ASSERT_TRUE(ok.mixed_precision && ok.qat);
  EXPECT_DOUBLE_EQ(ok.mixed_precision->budget, 2.5);
  EXPECT_EQ(ok.qat->train.epochs, 2);
  ASSERT_EQ(ok.qat->layer_losses.size(), 1u);
  EXPECT_DOUBLE_EQ(ok.qat->layer_losses[0].weight, 2);
  auto err = ct::error_of([&] { condense::pipeline::load_quantize_recipe(write("typo.yaml", "weights: {bitz: 4}\n")); });
  EXPECT_NE(err.find("typo.yaml"), std::string::npos) << err;
  EXPECT_NE(err.find("weights.bitz"), std::string::npos) << err;
  err = ct::error_of([&] { condense::pipeline::load_quantize_recipe(write("bits.yaml", "weights: {bits: 3}\n")); });
  EXPECT_NE(err.find("bits.yaml"), std::string::npos) << err;
  EXPECT_NE(err.find("bits must be 1, 2, 4 or 8"), std::string::npos) << err;
  err = ct::error_of([&] {
    condense::pipeline::load_quantize_recipe(write("mp.yaml", "mixed_precision: {low: 4, high: 2, budget: 3}\n"));
  });
  EXPECT_NE(err.find("mixed_precision"), std::string::npos) << err;
  err = ct::error_of([&] {
    condense::pipeline::load_quantize_recipe(write("act.yaml", "weights: {method: bf16}\nactivations: {mode: static}\n"));
  });
  EXPECT_NE(err.find("fp16/bf16 weights run with float activations"), std::string::npos) << err;
}
