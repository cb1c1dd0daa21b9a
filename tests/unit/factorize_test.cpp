// Low-rank factorization and sharing: SVD layers are the closest rank-r matrices (and exact at
// full rank), energy picks the rank, factorized embeddings reproduce a low-rank table, shared
// layers hold one copy of each parameter and train, hashed layers store only their buckets, and
// every kind saves, loads and expands to an equivalent plain model.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <numeric>
#include <random>

#include "condense/factorize/factorize.h"
#include "condense/nn/checkpoint.h"
#include "condense/train/train.h"
#include "single_thread.h"
#include "test_util.h"

namespace fz = condense::factorize;
namespace nn = condense::nn;
namespace train = condense::train;
namespace ct = condense::testing;

namespace {

nn::BertClassifier tiny_model(uint64_t seed) {
  nn::BertConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.intermediate_size = 64;
  c.max_position_embeddings = 64;
  c.num_labels = 2;
  torch::manual_seed(seed);
  nn::BertClassifier m(c);
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
    d.labels.push_back(ids[1] % 2);
    d.scores.push_back(0);
  }
  return d;
}

torch::Tensor logits_of(nn::BertClassifier& m, const train::EncodedDataset& d) {
  torch::NoGradGuard g;
  m->eval();
  std::vector<std::size_t> idx(d.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto b = train::make_batch(d, idx);
  return m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

}  // namespace

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
  EXPECT_LT(max_diff(d(x), torch::nn::functional::linear(x, d->effective_weight(), b)), 1e-5);
  EXPECT_EQ(d->named_parameters().size(), 3u);  // weight_up, weight_down, bias
}

TEST(Factorize, HashedDenseStoresBucketsAndFitsMeans) {
  torch::manual_seed(2);
  nn::Dense d(16, 8, nn::NormKind::LayerNorm, nn::DenseShape{0, 10});
  EXPECT_EQ(d->weight_buckets.numel(), 10);
  auto w = d->effective_weight().detach().clone();  // already representable: the fit is exact
  nn::Dense e(16, 8, nn::NormKind::LayerNorm, nn::DenseShape{0, 10});
  e->copy_from(w, torch::zeros({8}));
  EXPECT_LT(max_diff(e->effective_weight(), w), 1e-6);
  // Gradients reach the shared values.
  auto y = e(torch::randn({4, 16})).sum();
  y.backward();
  EXPECT_GT(e->weight_buckets.grad().abs().sum().item<double>(), 0);
}

TEST(Factorize, RankSavesOrStaysDenseAndEnergyPicksTheRank) {
  auto m = tiny_model(3);
  auto d = tiny_data(8, 3);
  fz::FactorizeReport rep;
  // Rank 8 on 32×32 (q/k/v, attention output) and 32×64 layers saves parameters everywhere.
  auto low = fz::factorize(m, fz::FactorizeOptions().with_rank(8), &rep);
  EXPECT_EQ(rep.ranks.size(), 18u);
  EXPECT_LT(low->num_parameters(), m->num_parameters());
  EXPECT_GT(max_diff(logits_of(low, d), logits_of(m, d)), 0);
  // Rank 16 on a 32×32 matrix would not save anything: those layers stay dense.
  fz::factorize(m, fz::FactorizeOptions().with_rank(16), &rep);
  EXPECT_EQ(rep.kept_dense.size(), 12u);
  // Energy: each factorized layer keeps at least the asked share of Σσ².
  auto e = fz::factorize(m, fz::FactorizeOptions().with_energy(0.5), &rep);
  for (const auto& [name, kept] : rep.energy_kept) EXPECT_GE(kept, 0.5) << name;
  EXPECT_NE(ct::error_of([] { fz::FactorizeOptions().validate(); }).find("rank"), std::string::npos);
}

TEST(Factorize, FactorizedEmbeddingOfALowRankTableIsExact) {
  auto m = tiny_model(4);
  {
    torch::NoGradGuard g;
    auto& w = m->bert->embeddings->word_embeddings->weight;
    w.copy_(torch::matmul(torch::randn({64, 8}), torch::randn({8, 32})) * 0.05);
  }
  auto d = tiny_data(8, 4);
  auto f = fz::factorize(m, fz::FactorizeOptions().with_embedding_size(8));
  EXPECT_EQ(f->bert->embeddings->word_embeddings->weight.size(1), 8);
  EXPECT_LT(max_diff(logits_of(f, d), logits_of(m, d)), 1e-4);
  const auto dir = ct::scratch_dir("factorize_io") / "m";
  nn::save_pretrained(f, dir, {});
  auto back = nn::load_classifier(dir);
  EXPECT_EQ(back->config().embedding_size, 8);
  EXPECT_LT(max_diff(logits_of(back, d), logits_of(f, d)), 1e-6);
}

TEST(Factorize, SharedLayersHoldOneCopyAndExpand) {
  auto m = tiny_model(5);
  auto d = tiny_data(16, 5);
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
    EXPECT_LT(max_diff(logits_of(back, d), logits_of(s, d)), 1e-6);
    auto plain = fz::expand(s);
    EXPECT_TRUE(plain->config().share.empty());
    EXPECT_LT(max_diff(logits_of(plain, d), logits_of(s, d)), 1e-5);
  }
  // The shared block is the mean of the layers' blocks.
  auto s = fz::share(m, fz::ShareOptions().with_mode("all"));
  auto mean = (m->layer(0)->output->dense->weight + m->layer(1)->output->dense->weight +
               m->layer(2)->output->dense->weight) / 3;
  EXPECT_LT(max_diff(s->layer(0)->output->dense->weight, mean), 1e-6);
  // Training a shared model updates the one copy (the optimizer sees each parameter once).
  auto before = s->layer(0)->output->dense->weight.clone();
  train::finetune(s, d, train::TrainOptions().with_epochs(1).with_batch_size(8));
  EXPECT_GT(max_diff(s->layer(2)->output->dense->weight, before), 0);
}

TEST(Factorize, HashedModelRoundTripsAndExpands) {
  auto m = tiny_model(6);
  auto d = tiny_data(8, 6);
  auto h = fz::share(m, fz::ShareOptions().with_hash_compression(4));
  EXPECT_EQ(h->config().hash_buckets.size(), 18u);
  EXPECT_EQ(h->layer(0)->intermediate->dense->weight_buckets.numel(), 32 * 64 / 4);
  const auto dir = ct::scratch_dir("hash_io") / "m";
  nn::save_pretrained(h, dir, {});
  auto back = nn::load_classifier(dir);
  EXPECT_LT(max_diff(logits_of(back, d), logits_of(h, d)), 1e-6);
  auto plain = fz::expand(h);
  EXPECT_TRUE(plain->config().hash_buckets.empty());
  EXPECT_LT(max_diff(logits_of(plain, d), logits_of(h, d)), 1e-5);
  EXPECT_NE(ct::error_of([] { fz::ShareOptions().with_mode("some").validate(); }).find("mode"), std::string::npos);
}
