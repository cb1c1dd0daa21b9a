// Normalisation choices: the invariances that define them (scaling a weight vector, scaling the
// input), masked BatchNorm against torch's batch_norm on the real tokens only, NoNorm's affine
// map, the LayerNorm share that hands LayerNorm over to another kind, dense layers initialised from
// a plain one computing the same function, and a BERT student of each kind that trains, saves and
// loads.
#include "condense/nn/norm.h"

#include <gtest/gtest.h>

#include "condense/nn/bert.h"
#include "condense/nn/checkpoint.h"
#include "single_thread.h"
#include "test_util.h"

namespace {

namespace nn = condense::nn;
namespace ct = condense::testing;
using condense::testing::error_of;
using nn::NormKind;

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// norm(dense(x)) for a kind: the dense layer is bias-free so that scaling its weights scales its output.
struct Block {
  nn::Dense dense;
  nn::Norm norm;
  Block(NormKind kind, uint64_t seed) : dense(nullptr), norm(nullptr) {
    torch::manual_seed(seed);
    dense = nn::Dense(5, 6, kind);
    dense->reset(0.5);
    norm = nn::Norm(kind, 6, 1e-12);
  }
  torch::Tensor operator()(const torch::Tensor& x) { return norm(dense(x)); }
  // The tensor holding the weight vectors (v for weightnorm).
  torch::Tensor& rows() { return dense->weight_v.defined() ? dense->weight_v : dense->weight; }
};

torch::Tensor input() {
  torch::manual_seed(7);
  return torch::randn({3, 4, 5});
}

TEST(Norm, ScalingAWeightVectorChangesNothing) {
  for (auto kind : {NormKind::BatchNorm, NormKind::WeightNorm, NormKind::CosineNorm}) {
    Block b(kind, 1);
    auto x = input();
    auto y = b(x).detach();
    {
      torch::NoGradGuard g;
      b.rows()[2] *= 5.0;  // one output feature's weight vector
    }
    EXPECT_LT(max_diff(b(x), y), 1e-4) << nn::to_string(kind);
  }
  // LayerNorm normalises across features, so only scaling every row alike leaves it unchanged.
  Block ln(NormKind::LayerNorm, 1);
  auto x = input();
  auto y = ln(x).detach();
  {
    torch::NoGradGuard g;
    ln.rows() *= 3.7;
  }
  EXPECT_LT(max_diff(ln(x), y), 1e-5);
  {
    torch::NoGradGuard g;
    ln.rows()[2] *= 5.0;
  }
  EXPECT_GT(max_diff(ln(x), y), 1e-3);
}

TEST(Norm, ScalingTheInputChangesNothingExceptForWeightNorm) {
  for (auto kind : {NormKind::BatchNorm, NormKind::LayerNorm, NormKind::CosineNorm}) {
    Block b(kind, 2);
    auto x = input();
    EXPECT_LT(max_diff(b(x * 3.0), b(x)), 1e-4) << nn::to_string(kind);
    EXPECT_LT(max_diff(b(x * 0.01), b(x)), 1e-4) << nn::to_string(kind);
  }
  Block wn(NormKind::WeightNorm, 2);  // followed by NoNorm (γ = 1, β = 0): linear in x
  auto x = input();
  EXPECT_GT(max_diff(wn(x * 2.0), wn(x)), 1e-2);
  EXPECT_LT(max_diff(wn(x * 2.0), 2.0 * wn(x)), 1e-5);
}

TEST(Norm, MaskedBatchNormUsesOnlyRealTokens) {
  torch::manual_seed(5);
  nn::Norm bn(NormKind::BatchNorm, 4, 1e-5);
  auto x = torch::randn({2, 5, 4});
  auto mask = torch::tensor({1, 1, 1, 0, 0, 1, 1, 1, 1, 0}, torch::kInt64).view({2, 5});
  auto real_rows = mask.reshape({-1}).nonzero().squeeze(1);
  auto real = x.reshape({-1, 4}).index_select(0, real_rows);
  auto ours = bn(x, mask).reshape({-1, 4}).index_select(0, real_rows);
  // Reference twin: torch's batch_norm over the 7 real tokens alone, running estimates included.
  auto rm = torch::zeros({4}), rv = torch::ones({4});
  auto ref = torch::batch_norm(real, bn->weight, bn->bias, rm, rv, /*training=*/true, 0.1, 1e-5, false);
  EXPECT_LT(max_diff(ours, ref), 1e-5);
  EXPECT_LT(max_diff(bn->running_mean, rm), 1e-6);
  EXPECT_LT(max_diff(bn->running_var, rv), 1e-6);
  // Garbage in the padding changes nothing at the real tokens.
  auto x2 = x.clone();
  x2[0][4].fill_(1e3);
  x2[1][4].fill_(-1e3);
  EXPECT_LT(max_diff(bn(x2, mask).reshape({-1, 4}).index_select(0, real_rows), ours), 1e-5);
  bn->eval();
  EXPECT_GT(max_diff(bn->running_mean, rm), 0.0);  // the second training call moved it again
  EXPECT_LT(max_diff(bn(x), (x - bn->running_mean) / torch::sqrt(bn->running_var + 1e-5)), 1e-5);
  nn::Norm lone(NormKind::BatchNorm, 4);
  EXPECT_NE(error_of([&] { lone(torch::randn({1, 2, 4}), torch::tensor({1, 0}, torch::kInt64).view({1, 2})); })
                .find("at least 2 real tokens"),
            std::string::npos);
}

TEST(Norm, NoNormIsAnElementwiseAffineMap) {
  nn::Norm n(NormKind::NoNorm, 3);
  {
    torch::NoGradGuard g;
    n->weight.copy_(torch::tensor({1.f, 2.f, 3.f}));
    n->bias.copy_(torch::tensor({0.f, -1.f, 1.f}));
  }
  EXPECT_LT(max_diff(n(torch::tensor({4.f, 5.f, 6.f}).view({1, 3})), torch::tensor({4.f, 9.f, 19.f}).view({1, 3})),
            1e-6);
  EXPECT_EQ(n->named_buffers().size(), 0u);
}

// The LayerNorm share (distillation's norm_fade): share 1 is LayerNorm with the kind's γ and β,
// share s mixes the two normalised values before the affine map, 0 is the kind's own output.
TEST(Norm, LayerNormShareMixesLayerNormIntoOtherKinds) {
  torch::manual_seed(8);
  auto x = torch::randn({2, 3, 6}) * 3 + 1;
  for (auto kind : {NormKind::NoNorm, NormKind::BatchNorm}) {
    nn::Norm n(kind, 6, 1e-12);
    {
      torch::NoGradGuard g;
      n->weight.copy_(torch::rand({6}) + 0.5);
      n->bias.copy_(torch::randn({6}));
    }
    n->eval();  // batchnorm: the running estimates, so that every call normalises alike
    const auto own = n(x);
    const auto ln = torch::layer_norm(x, {6}, n->weight, n->bias, 1e-12);
    n->set_layernorm_share(1);
    EXPECT_LT(max_diff(n(x), ln), 1e-5) << nn::to_string(kind);
    n->set_layernorm_share(0.25);
    EXPECT_DOUBLE_EQ(n->layernorm_share(), 0.25);
    // Both outputs are γ ⊙ (normalised) + β, so the mix of the normalised values is the mix of the outputs.
    EXPECT_LT(max_diff(n(x), 0.25 * ln + 0.75 * own), 1e-5) << nn::to_string(kind);
    n->set_layernorm_share(0);
    EXPECT_TRUE(torch::equal(n(x), own)) << nn::to_string(kind);
    EXPECT_NE(error_of([&] { n->set_layernorm_share(1.5); }).find("LayerNorm share must be in [0,1]"),
              std::string::npos);
  }
  nn::Norm ln(NormKind::LayerNorm, 6);
  const auto before = ln(x);
  ln->set_layernorm_share(0.5);  // LayerNorm is already all LayerNorm
  EXPECT_TRUE(torch::equal(ln(x), before));
}

TEST(Norm, DenseCopiedFromAPlainLayerComputesTheSame) {
  torch::manual_seed(6);
  torch::nn::Linear lin(5, 6);
  auto x = torch::randn({7, 5});
  for (auto kind : {NormKind::LayerNorm, NormKind::WeightNorm}) {
    nn::Dense d(5, 6, kind);
    d->copy_from(lin->weight, lin->bias);
    EXPECT_LT(max_diff(d(x), lin(x)), 1e-5) << nn::to_string(kind);
    EXPECT_LT(max_diff(d->effective_weight(), lin->weight), 1e-6);
  }
  nn::Dense cos(5, 6, NormKind::CosineNorm);
  cos->copy_from(lin->weight, lin->bias);
  auto cosine = torch::cosine_similarity(x.unsqueeze(1), lin->weight.unsqueeze(0), -1);
  EXPECT_LT(max_diff(cos(x), cosine + lin->bias), 1e-5);
  EXPECT_NE(error_of([&] { cos->effective_weight(); }).find("no single effective weight"), std::string::npos);
}

TEST(Norm, ParseNames) {
  EXPECT_EQ(nn::parse_norm("batchnorm"), NormKind::BatchNorm);
  EXPECT_EQ(nn::parse_norm(nn::to_string(NormKind::CosineNorm)), NormKind::CosineNorm);
  EXPECT_NE(error_of([] { nn::parse_norm("groupnorm"); }).find("unknown normalisation 'groupnorm'"), std::string::npos);
}

// A tiny BERT of each kind: a few optimiser steps lower its loss, and save/load round-trips it
// exactly (BatchNorm's running estimates included).
TEST(Norm, BertStudentOfEachKindTrainsAndRoundTrips) {
  for (auto kind : {NormKind::LayerNorm, NormKind::BatchNorm, NormKind::NoNorm, NormKind::WeightNorm,
                    NormKind::CosineNorm}) {
    nn::BertConfig c;
    c.vocab_size = 50;
    c.hidden_size = 16;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.intermediate_size = 32;
    c.max_position_embeddings = 16;
    c.norm = kind;
    torch::manual_seed(3);
    nn::BertClassifier m(c);
    auto ids = torch::randint(5, 50, {8, 6}, torch::kInt64);
    auto mask = torch::ones({8, 6}, torch::kInt64);
    mask.slice(1, 4).slice(0, 0, 4).zero_();
    auto labels = torch::tensor({0, 1, 0, 1, 1, 0, 1, 0}, torch::kInt64);
    torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(1e-2));
    double first = 0, last = 0;
    for (int step = 0; step < 15; ++step) {
      opt.zero_grad();
      auto loss = torch::cross_entropy_loss(m->forward(ids, torch::zeros_like(ids), mask).logits, labels);
      if (step == 0) first = loss.item<double>();
      last = loss.item<double>();
      loss.backward();
      opt.step();
    }
    EXPECT_LT(last, first) << nn::to_string(kind);
    m->eval();
    auto logits = m->forward(ids, torch::zeros_like(ids), mask).logits;
    auto dir = ct::scratch_dir("norm_roundtrip_" + nn::to_string(kind));
    nn::save_pretrained(m, dir / "model", {});
    auto loaded = nn::load_classifier(dir / "model");
    EXPECT_EQ(loaded->config().norm, kind);
    loaded->eval();
    EXPECT_TRUE(torch::equal(loaded->forward(ids, torch::zeros_like(ids), mask).logits, logits)) << nn::to_string(kind);
  }
}

}  // namespace
