// Low-rank factorization and sharing: SVD layers are the closest rank-r matrices (and exact at
// full rank), energy picks the rank, factorized embeddings reproduce a low-rank table, shared
// layers hold one copy of each parameter and train, hashed layers store only their buckets, and
// every kind saves, loads and expands to an equivalent plain model.
#include <gtest/gtest.h>
#include <torch/torch.h>


#include "condense/factorize/factorize.h"
#include "condense/nn/checkpoint.h"
#include "condense/train/train.h"
#include "single_thread.h"
#include "test_util.h"
#include "tiny_bert.h"

namespace fz = condense::factorize;
namespace nn = condense::nn;
namespace train = condense::train;
namespace ct = condense::testing;


TEST(Factorize, LowRankDenseIsTheTruncatedSvd) {
  torch::manual_seed(1);
  auto w = torch::randn({24, 16});
  auto b = torch::randn({24});
  nn::Dense d(16, 24, nn::NormKind::LayerNorm, nn::DenseShape{4, 0});
  d->copy_from(w, b);
  EXPECT_TRUE(d->low_rank());
  // Eckart–Young: the error is exactly the energy of the dropped singular values.
  auto sv = torch::linalg_svdvals(w.to(torch::kDouble));
  const double expected = sv.slice(0, 4).pow(2).sum().sqrt().item<double>();
  const double err = (d->effective_weight().to(torch::kDouble) - w.to(torch::kDouble)).norm().item<double>();
  EXPECT_NEAR(err, expected, 1e-4);
  auto x = torch::randn({3, 16});
  torch::NoGradGuard g;
  EXPECT_LT(ct::max_diff(d(x), torch::nn::functional::linear(x, d->effective_weight(), b)), 1e-5);
  EXPECT_EQ(d->named_parameters().size(), 3u);  // weight_up, weight_down, bias
}

TEST(Factorize, HashedDenseStoresBucketsAndFitsMeans) {
  torch::manual_seed(2);
  nn::Dense d(16, 8, nn::NormKind::LayerNorm, nn::DenseShape{0, 10});
  EXPECT_EQ(d->weight_buckets.numel(), 10);
  auto w = d->effective_weight().detach().clone();  // already representable: the fit is exact
  nn::Dense e(16, 8, nn::NormKind::LayerNorm, nn::DenseShape{0, 10});
  e->copy_from(w, torch::zeros({8}));
  EXPECT_LT(ct::max_diff(e->effective_weight(), w), 1e-6);
  // Gradients reach the shared values.
  auto y = e(torch::randn({4, 16})).sum();
  y.backward();
  EXPECT_GT(e->weight_buckets.grad().abs().sum().item<double>(), 0);
}

TEST(Factorize, RankSavesOrStaysDenseAndEnergyPicksTheRank) {
  auto m = ct::tiny_bert(3);
  auto d = ct::tiny_sst2(8, 3);
  fz::FactorizeReport rep;
  // Rank 8 on 32×32 (q/k/v, attention output) and 32×64 layers saves parameters everywhere.
  auto low = fz::factorize(m, fz::FactorizeOptions().with_rank(8), &rep);
  EXPECT_EQ(rep.ranks.size(), 18u);
  EXPECT_LT(low->num_parameters(), m->num_parameters());
  EXPECT_GT(ct::max_diff(ct::tiny_logits(low, d), ct::tiny_logits(m, d)), 0);
  // Rank 16 on a 32×32 matrix would not save anything: those layers stay dense.
  fz::factorize(m, fz::FactorizeOptions().with_rank(16), &rep);
  EXPECT_EQ(rep.kept_dense.size(), 12u);
  // Energy: each factorized layer keeps at least the asked share of Σσ².
  auto e = fz::factorize(m, fz::FactorizeOptions().with_energy(0.5), &rep);
  for (const auto& [name, kept] : rep.energy_kept) EXPECT_GE(kept, 0.5) << name;
  EXPECT_NE(ct::error_of([] { fz::FactorizeOptions().validate(); }).find("rank"), std::string::npos);
}

TEST(Factorize, FactorizedEmbeddingOfALowRankTableIsExact) {
  auto m = ct::tiny_bert(4);
  {
    torch::NoGradGuard g;
    auto& w = m->bert->embeddings->word_embeddings->weight;
    w.copy_(torch::matmul(torch::randn({64, 8}), torch::randn({8, 32})) * 0.05);
  }
  auto d = ct::tiny_sst2(8, 4);
  auto f = fz::factorize(m, fz::FactorizeOptions().with_embedding_size(8));
  EXPECT_EQ(f->bert->embeddings->word_embeddings->weight.size(1), 8);
  EXPECT_LT(ct::max_diff(ct::tiny_logits(f, d), ct::tiny_logits(m, d)), 1e-4);
  const auto dir = ct::scratch_dir("factorize_io") / "m";
  nn::save_pretrained(f, dir, {});
  auto back = nn::load_classifier(dir);
  EXPECT_EQ(back->config().embedding_size, 8);
  EXPECT_LT(ct::max_diff(ct::tiny_logits(back, d), ct::tiny_logits(f, d)), 1e-6);
}

TEST(Factorize, SharedLayersHoldOneCopyAndExpand) {
  auto m = ct::tiny_bert(5);
  auto d = ct::tiny_sst2(16, 5);
  for (const char* mode : {"all", "attention", "ffn"}) {
    auto s = fz::share(m, fz::ShareOptions().with_mode(mode));
    EXPECT_EQ(s->config().share, mode);
    int64_t layer1 = 0;
    for (const auto& p : s->named_parameters()) layer1 += p.key().rfind("bert.encoder.layer.1.", 0) == 0;
    EXPECT_EQ(layer1, std::string(mode) == "all" ? 0 : std::string(mode) == "attention" ? 6 : 10) << mode;
    EXPECT_EQ(s->layer(2)->attention.get() == s->layer(0)->attention.get(), std::string(mode) != "ffn");
    // Saved and loaded back; expanded to an unshared model computing the same function.
    const auto dir = ct::scratch_dir(std::string("share_io_") + mode) / "m";
    nn::save_pretrained(s, dir, {});
    auto back = nn::load_classifier(dir);
    EXPECT_LT(ct::max_diff(ct::tiny_logits(back, d), ct::tiny_logits(s, d)), 1e-6);
    auto plain = fz::expand(s);
    EXPECT_TRUE(plain->config().share.empty());
    EXPECT_LT(ct::max_diff(ct::tiny_logits(plain, d), ct::tiny_logits(s, d)), 1e-5);
  }
  // The shared block is the mean of the layers' blocks.
  auto s = fz::share(m, fz::ShareOptions().with_mode("all"));
  auto mean = (m->layer(0)->output->dense->weight + m->layer(1)->output->dense->weight +
               m->layer(2)->output->dense->weight) / 3;
  EXPECT_LT(ct::max_diff(s->layer(0)->output->dense->weight, mean), 1e-6);
  // Training a shared model updates the one copy (the optimizer sees each parameter once).
  auto before = s->layer(0)->output->dense->weight.clone();
  train::finetune(s, d, train::TrainOptions().with_epochs(1).with_batch_size(8));
  EXPECT_GT(ct::max_diff(s->layer(2)->output->dense->weight, before), 0);
}

TEST(Factorize, HashedModelRoundTripsAndExpands) {
  auto m = ct::tiny_bert(6);
  auto d = ct::tiny_sst2(8, 6);
  auto h = fz::share(m, fz::ShareOptions().with_hash_compression(4));
  EXPECT_EQ(h->config().hash_buckets.size(), 18u);
  EXPECT_EQ(h->layer(0)->intermediate->dense->weight_buckets.numel(), 32 * 64 / 4);
  const auto dir = ct::scratch_dir("hash_io") / "m";
  nn::save_pretrained(h, dir, {});
  auto back = nn::load_classifier(dir);
  EXPECT_LT(ct::max_diff(ct::tiny_logits(back, d), ct::tiny_logits(h, d)), 1e-6);
  auto plain = fz::expand(h);
  EXPECT_TRUE(plain->config().hash_buckets.empty());
  EXPECT_LT(ct::max_diff(ct::tiny_logits(plain, d), ct::tiny_logits(h, d)), 1e-5);
  EXPECT_NE(ct::error_of([] { fz::ShareOptions().with_mode("some").validate(); }).find("mode"), std::string::npos);
}
