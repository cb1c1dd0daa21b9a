// Pruning: masks (unstructured, global, N:M), physical shrinking equal to the gated model, per-layer
// shapes saved and loaded, the sparse format (round trip, size, corrupted parts), each criterion's
// defining property on constructed models, schedules reaching their target, LayerDrop, errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <set>

#include "condense/core/file.h"
#include "condense/core/json.h"
#include "condense/io/safetensors.h"
#include "condense/nn/checkpoint.h"
#include "condense/pipeline/recipe.h"
#include "condense/prune/prune.h"
#include "single_thread.h"
#include "test_util.h"
#include "tiny_bert.h"

namespace prune = condense::prune;
namespace nn = condense::nn;
namespace train = condense::train;
namespace ct = condense::testing;
namespace fs = std::filesystem;
using prune::Criterion;
using prune::Granularity;
using prune::Schedule;

namespace {

double density(const torch::Tensor& t) { return t.ne(0).to(torch::kDouble).mean().item<double>(); }

}  // namespace

// ---- masks ----

TEST(Prune, UnstructuredMasksPerTensorAndGlobal) {
  std::map<std::string, torch::Tensor> s{{"a", torch::arange(1, 101, torch::kFloat).view({10, 10})},
                                         {"b", torch::arange(1, 101, torch::kFloat).view({10, 10}) * 100 + 0.5}};
  auto per = prune::unstructured_masks(s, 0.7, false);
  EXPECT_EQ(per["a"].sum().item<int64_t>(), 30);
  EXPECT_EQ(per["b"].sum().item<int64_t>(), 30);
  EXPECT_EQ(per["a"].view({-1})[69].item<float>(), 0);  // 70 is the threshold value: pruned
  EXPECT_EQ(per["a"].view({-1})[70].item<float>(), 1);
  // Global: one threshold, so the larger-scored matrix b keeps more.
  auto glob = prune::unstructured_masks(s, 0.5, true);
  EXPECT_EQ(glob["a"].sum().item<int64_t>() + glob["b"].sum().item<int64_t>(), 100);
  EXPECT_LT(glob["a"].sum().item<int64_t>(), glob["b"].sum().item<int64_t>());
}

TEST(Prune, NmMaskKeepsNOfEveryM) {
  torch::manual_seed(3);
  auto s = torch::randn({8, 16});
  auto m = prune::nm_mask(s.abs(), 2, 4);
  auto groups = m.view({8, 4, 4}).sum(-1);
  EXPECT_TRUE(groups.eq(2).all().item<bool>());
  // The kept two are the two largest of their group.
  auto g = s.abs().view({8, 4, 4});
  auto kept_min = (g + (1 - m.view({8, 4, 4})) * 1e9).amin(-1);
  auto dropped_max = (g * (1 - m.view({8, 4, 4}))).amax(-1);
  EXPECT_TRUE((kept_min >= dropped_max).all().item<bool>());
  EXPECT_NE(ct::error_of([&] { prune::nm_mask(torch::ones({4, 6}), 2, 4); }).find("multiple of m"), std::string::npos);
}

// ---- shrinking ----

TEST(Prune, ShrinkEqualsGatedModel) {
  auto m = ct::tiny_bert(1);
  auto d = ct::tiny_sst2(12, 1);
  prune::Masks masks;
  masks.heads = {torch::tensor({1.f, 0.f, 1.f, 0.f}), torch::tensor({0.f, 0.f, 0.f, 1.f}), torch::ones({4})};
  for (int64_t i = 0; i < 3; ++i) {
    auto n = torch::ones({64});
    n.slice(0, i * 10, i * 10 + 20 + i).zero_();
    masks.neurons.push_back(n);
  }
  masks.keep_layers = {0, 2};
  prune::apply_masks(m, masks);
  auto gated = ct::tiny_logits(m, d);
  prune::clear_masks(m);
  auto small = prune::shrink(m, masks);
  const auto& c = small->config();
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.layer_heads, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(c.layer_intermediate, (std::vector<int64_t>{44, 42}));
  EXPECT_EQ(small->layer(0)->attention->self->query->weight.size(0), 2 * 8);
  EXPECT_EQ(small->layer(1)->output->dense->weight.size(1), 42);
  EXPECT_LT(ct::max_diff(ct::tiny_logits(small, d), gated), 1e-5);
  EXPECT_GT(ct::max_diff(ct::tiny_logits(m, d), gated), 1e-4);  // the masks did change the function
}

TEST(Prune, ShrunkModelSavesAndLoadsWithPerLayerShapes) {
  auto m = ct::tiny_bert(2);
  auto d = ct::tiny_sst2(8, 2);
  prune::Masks masks;
  masks.heads = {torch::tensor({1.f, 1.f, 0.f, 1.f}), torch::tensor({1.f, 0.f, 0.f, 0.f}), torch::ones({4})};
  auto small = prune::shrink(m, masks);
  const auto dir = ct::scratch_dir("prune_shrunk_io") / "model";
  nn::save_pretrained(small, dir, {});
  auto cfg = condense::read_json_file(dir / "config.json");
  EXPECT_EQ(cfg["condense_layer_heads"], nlohmann::json({3, 1, 4}));
  EXPECT_FALSE(cfg.contains("condense_intermediate_sizes"));  // uniform widths stay plain
  EXPECT_TRUE(cfg.contains("auto_map"));
  EXPECT_TRUE(fs::exists(dir / nn::kPrunedModelingFile));
  auto back = nn::load_classifier(dir);
  EXPECT_LT(ct::max_diff(ct::tiny_logits(back, d), ct::tiny_logits(small, d)), 1e-6);
  // Inconsistent per-layer fields are refused naming the field.
  cfg["condense_layer_heads"] = {3, 1};
  condense::write_file_atomic(dir / "config.json", cfg.dump());
  EXPECT_NE(ct::error_of([&] { nn::load_classifier(dir); }).find("condense_layer_heads"), std::string::npos);
}

// ---- sparse format ----

TEST(Prune, SparseFormatRoundTripsAndShrinksTheFile) {
  auto m = ct::tiny_bert(3);
  auto d = ct::tiny_sst2(8, 3);
  auto data = ct::tiny_sst2(32, 4);
  auto r = prune::prune(m, data, prune::PruneOptions().with_sparsity(0.9).with_train(train::TrainOptions().with_epochs(0)));
  for (auto& [name, w] : prune::encoder_weights(r.model)) EXPECT_NEAR(density(w), 0.1, 0.01) << name;
  const auto root = ct::scratch_dir("prune_sparse");
  auto rep = nn::save_sparse(r.model, root / "sparse", {});
  nn::save_pretrained(r.model, root / "dense", {});
  EXPECT_EQ(rep.sparse_tensors, 18);
  auto back = nn::load_classifier(root / "sparse");
  EXPECT_EQ(ct::max_diff(ct::tiny_logits(back, d), ct::tiny_logits(r.model, d)), 0.0);
  // Encoder weights take 32·0.1 + 1 bits instead of 32 (less a little header for the extra names).
  const double enc = static_cast<double>(r.encoder_weights_before);
  const double saved = static_cast<double>(nn::checkpoint_bytes(root / "dense")) -
                       static_cast<double>(nn::checkpoint_bytes(root / "sparse"));
  EXPECT_NEAR(saved / (enc * 4), 1 - (0.1 * 32 + 1) / 32, 0.03);
  // A bitmap whose set bits disagree with the number of values is refused, naming the tensor.
  auto cfg = condense::read_json_file(root / "sparse" / "config.json");
  auto st = condense::io::SafetensorsFile::open(root / "sparse" / "model.safetensors");
  std::vector<condense::io::TensorToWrite> out;
  std::vector<std::vector<std::byte>> keep;
  for (const auto& v : st.tensors()) {
    keep.emplace_back(v.data, v.data + v.nbytes);
    if (v.name == "bert.encoder.layer.1.intermediate.dense.weight_bitmap") keep.back()[0] ^= std::byte{0x01};
    out.push_back({v.name, v.dtype, v.shape, keep.back().data(), v.nbytes});
  }
  condense::io::write_safetensors(root / "broken.safetensors", out, {});
  fs::create_directories(root / "broken");
  fs::copy_file(root / "broken.safetensors", root / "broken" / "model.safetensors");
  condense::write_file_atomic(root / "broken" / "config.json", cfg.dump());
  auto msg = ct::error_of([&] { nn::load_classifier(root / "broken"); });
  EXPECT_NE(msg.find("bert.encoder.layer.1.intermediate.dense.weight_values"), std::string::npos) << msg;
}

// ---- criteria ----

TEST(Prune, MagnitudePrunesTheSmallestWeights) {
  auto m = ct::tiny_bert(4);
  auto data = ct::tiny_sst2(16, 5);
  auto before = prune::encoder_weights(m);
  auto r = prune::prune(m, data, prune::PruneOptions().with_sparsity(0.5).with_train(train::TrainOptions().with_epochs(0)));
  auto after = prune::encoder_weights(r.model);
  for (std::size_t i = 0; i < before.size(); ++i) {
    auto w = before[i].second.abs();
    auto kept = after[i].second.ne(0);
    EXPECT_GE(w.masked_select(kept).min().item<float>(), w.masked_select(kept.logical_not()).max().item<float>());
  }
  EXPECT_NEAR(static_cast<double>(r.encoder_weights_after) / static_cast<double>(r.encoder_weights_before), 0.5, 1e-3);
}

TEST(Prune, TaylorHeadImportanceFindsADeadHead) {
  // Head 2 of layer 1 has zero value weights: its output is 0 whatever the gate, so ∂L/∂ξ = 0 and
  // Michel et al.'s importance ranks it last.
  auto m = ct::tiny_bert(5);
  {
    torch::NoGradGuard g;
    auto& v = m->layer(1)->attention->self->value;
    v->weight.slice(0, 16, 24).zero_();
    v->bias.slice(0, 16, 24).zero_();
  }
  auto data = ct::tiny_sst2(32, 6);
  auto o = prune::PruneOptions()
               .with_criterion(Criterion::Taylor)
               .with_granularity(Granularity::Heads)
               .with_sparsity(1.0 / 12)
               .with_score_batches(4)
               .with_train(train::TrainOptions().with_epochs(0).with_batch_size(8));
  auto r = prune::prune(m, data, o);
  EXPECT_EQ(r.masks.heads[1][2].item<float>(), 0);
  EXPECT_EQ(r.masks.heads[0].sum().item<float>() + r.masks.heads[1].sum().item<float>() + r.masks.heads[2].sum().item<float>(), 11);
  EXPECT_EQ(r.model->config().layer_heads, (std::vector<int64_t>{4, 3, 4}));
}

TEST(Prune, EntropyPrunesAConstantNeuron) {
  // Neuron 5 of layer 0 gets zero input weights: its activation is the same for every token, so
  // the entropy of its histogram is 0, the lowest possible.
  auto m = ct::tiny_bert(6);
  {
    torch::NoGradGuard g;
    m->layer(0)->intermediate->dense->weight[5].zero_();
  }
  auto data = ct::tiny_sst2(32, 7);
  auto o = prune::PruneOptions()
               .with_criterion(Criterion::Entropy)
               .with_granularity(Granularity::Neurons)
               .with_sparsity(1.0 / 192)
               .with_score_batches(4)
               .with_train(train::TrainOptions().with_epochs(0).with_batch_size(8));
  auto r = prune::prune(m, data, o);
  EXPECT_EQ(r.masks.neurons[0][5].item<float>(), 0);
  EXPECT_EQ(r.model->config().layer_intermediate, (std::vector<int64_t>{63, 64, 64}));
}

TEST(Prune, LayerSelection) {
  auto m = ct::tiny_bert(7, 6);
  auto data = ct::tiny_sst2(16, 8);
  auto o = prune::PruneOptions()
               .with_granularity(Granularity::Layers)
               .with_depth(3)
               .with_layer_select("every-other")
               .with_train(train::TrainOptions().with_epochs(0));
  auto r = prune::prune(m, data, o);
  EXPECT_EQ(r.masks.keep_layers, (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(r.model->config().num_hidden_layers, 3);
  // The shrunk model computes what the full one does with only those layers active.
  m->active_layers = {0, 2, 4};
  EXPECT_LT(ct::max_diff(ct::tiny_logits(r.model, data), ct::tiny_logits(m, data)), 1e-5);
  m->active_layers.clear();
  auto imp = prune::prune(m, data, o.with_layer_select("importance").with_depth(2).with_score_batches(2));
  EXPECT_EQ(imp.masks.keep_layers.size(), 2u);
  EXPECT_TRUE(std::is_sorted(imp.masks.keep_layers.begin(), imp.masks.keep_layers.end()));
}

// ---- schedules ----

TEST(Prune, CubicMovementReachesTargetAndTrains) {
  auto m = ct::tiny_bert(8);
  auto data = ct::tiny_sst2(64, 9);
  auto o = prune::PruneOptions()
               .with_criterion(Criterion::Movement)
               .with_schedule(Schedule::Cubic)
               .with_sparsity(0.8)
               .with_update_every(2)
               .with_train(train::TrainOptions().with_epochs(2).with_batch_size(8).with_learning_rate(1e-3));
  auto r = prune::prune(m, data, o);
  ASSERT_EQ(r.fine_tuning.size(), 1u);
  EXPECT_EQ(r.fine_tuning[0].steps, 16);
  for (auto& [name, w] : prune::encoder_weights(r.model)) EXPECT_NEAR(density(w), 0.2, 0.01) << name;
  // The masks are not magnitude's: movement kept some weights smaller than ones it dropped.
  auto mag = prune::prune(m, data, prune::PruneOptions().with_sparsity(0.8).with_train(train::TrainOptions().with_epochs(0)));
  EXPECT_FALSE(torch::equal(r.masks.weights.begin()->second, mag.masks.weights.begin()->second));
}

TEST(Prune, SoftMovementSparsityFollowsLambda) {
  // Soft movement (Sanh et al. 2020) has no sparsity target: the penalty λ·mean σ(S) pulls scores
  // under the threshold unless the task's gradient holds them up, so a larger λ prunes more and
  // λ = 0 (scores move only with the task's gradient, at most 1e-2 a step) prunes almost nothing.
  auto m = ct::tiny_bert(8);
  auto data = ct::tiny_sst2(64, 9);
  auto run = [&](double lambda) {
    return prune::prune(m, data,
                        prune::PruneOptions()
                            .with_criterion(Criterion::SoftMovement)
                            .with_granularity(Granularity::Unstructured)
                            .with_schedule(Schedule::Cubic)
                            .with_soft_lambda(lambda)
                            .with_train(train::TrainOptions().with_epochs(40).with_batch_size(8).with_learning_rate(1e-3)));
  };
  auto sparsity = [](const prune::PruneResult& r) {
    return 1.0 - static_cast<double>(r.encoder_weights_after) / static_cast<double>(r.encoder_weights_before);
  };
  auto none = run(0), mid = run(50), hard = run(5000);
  EXPECT_LT(sparsity(none), 0.02);
  EXPECT_GT(sparsity(mid), sparsity(none));
  EXPECT_GT(sparsity(hard), sparsity(mid));
  EXPECT_GT(sparsity(hard), 0.5);
  // The result's weights are zero exactly where its masks are, and the matrices differ in sparsity.
  std::set<int64_t> kept;
  for (auto& [name, w] : prune::encoder_weights(mid.model)) {
    const auto& mask = mid.masks.weights.at(name);
    EXPECT_TRUE(torch::equal(w.ne(0), mask.ne(0))) << name;
    kept.insert(mask.sum().item<int64_t>());
  }
  EXPECT_GT(kept.size(), 1u);
}

TEST(Prune, IterativeL1AndStructuredCubic) {
  auto m = ct::tiny_bert(9);
  auto data = ct::tiny_sst2(32, 10);
  auto it = prune::prune(m, data,
                         prune::PruneOptions()
                             .with_criterion(Criterion::L1)
                             .with_schedule(Schedule::Iterative)
                             .with_steps(2)
                             .with_sparsity(0.6)
                             .with_train(train::TrainOptions().with_epochs(1).with_batch_size(8)));
  EXPECT_EQ(it.fine_tuning.size(), 2u);
  EXPECT_NEAR(static_cast<double>(it.encoder_weights_after) / static_cast<double>(it.encoder_weights_before), 0.4, 1e-3);
  auto st = prune::prune(m, data,
                         prune::PruneOptions()
                             .with_criterion(Criterion::Taylor)
                             .with_granularity(Granularity::HeadsNeurons)
                             .with_schedule(Schedule::Cubic)
                             .with_update_every(1)
                             .with_sparsity(0.5)
                             .with_train(train::TrainOptions().with_epochs(2).with_batch_size(8)));
  EXPECT_EQ(st.model->config().layer_heads.size(), 3u);
  int64_t heads = 0;
  for (auto h : st.model->config().layer_heads) heads += h;
  EXPECT_EQ(heads, 6);
  EXPECT_NEAR(static_cast<double>(st.encoder_weights_after) / static_cast<double>(st.encoder_weights_before), 0.5, 0.01);
}

// The l1/l2 shrinkage must change what magnitude pruning sees: the same seed, data and steps with
// and without it, then the encoder's summed |w|.
TEST(Prune, L1AndL2ShrinkWeightsBeyondMagnitude) {
  auto data = ct::tiny_sst2(32, 10);
  auto run = [&](Criterion c, double lambda) {
    auto m = ct::tiny_bert(9);
    auto r = prune::prune(m, data,
                          prune::PruneOptions()
                              .with_criterion(c)
                              .with_regularization(lambda)
                              .with_schedule(Schedule::OneShot)
                              .with_sparsity(0.1)
                              .with_train(train::TrainOptions().with_epochs(2).with_batch_size(8).with_learning_rate(1e-3)));
    double abs_sum = 0;
    for (auto& p : r.model->named_parameters()) {
      if (p.key().find("encoder") != std::string::npos && p.value().dim() == 2) abs_sum += p.value().abs().sum().item<double>();
    }
    return abs_sum;
  };
  const auto mag = run(Criterion::Magnitude, 0);
  const auto l1 = run(Criterion::L1, 20.0);  // lr·λ up to 0.02 a step
  const auto l2 = run(Criterion::L2, 100.0);  // ×(1 − lr·λ), about ×0.67 over the 8 steps
  EXPECT_LT(l1, 0.9 * mag);
  EXPECT_LT(l2, 0.9 * mag);
}

TEST(Prune, JointUnitMasksRankPerWeight) {
  // Two layers of 2 heads (64 weights each) and 3 neurons (2 each): 268 weights. Score per weight,
  // ascending: L1n1 .01, L0n0 .05, L0h0 .1, L1n0 .12, L1h0 .2, L0n1 .25, L1h1 .5, L0h1 1, L0n2 1.5, L1n2 2.
  const std::vector<torch::Tensor> hs = {torch::tensor({6.4, 64.0}), torch::tensor({12.8, 32.0})};
  const std::vector<torch::Tensor> ns = {torch::tensor({0.1, 0.5, 3.0}), torch::tensor({0.24, 0.02, 4.0})};
  auto same = [](const torch::Tensor& m, std::vector<float> want) {
    return torch::equal(m, torch::tensor(want));
  };
  // Half (134): the five cheapest units remove exactly 2 + 2 + 64 + 2 + 64.
  auto [h, n] = prune::joint_unit_masks(hs, ns, 64, 2, 0.5);
  EXPECT_TRUE(same(h[0], {0, 1}) && same(h[1], {0, 1}));
  EXPECT_TRUE(same(n[0], {0, 1, 1}) && same(n[1], {0, 0, 1}));
  // 100: L1h0 would overshoot (134) and is passed over; L0n1 fills; each layer keeps one neuron,
  // so L0n2 and L1n2 stay although they are next. 72 removed, never more than the target.
  std::tie(h, n) = prune::joint_unit_masks(hs, ns, 64, 2, 100.0 / 268);
  EXPECT_TRUE(same(h[0], {0, 1}) && same(h[1], {1, 1}));
  EXPECT_TRUE(same(n[0], {0, 0, 1}) && same(n[1], {0, 0, 1}));
  // A unit already removed stays removed and counts: L1h1 (score .5) goes first.
  const std::vector<torch::Tensor> hnow = {torch::tensor({1.0f, 1.0f}), torch::tensor({1.0f, 0.0f})};
  std::tie(h, n) = prune::joint_unit_masks(hs, ns, 64, 2, 0.5, hnow, {});
  EXPECT_TRUE(same(h[0], {0, 1}) && same(h[1], {1, 0}));
  EXPECT_TRUE(same(n[0], {0, 1, 1}) && same(n[1], {0, 0, 1}));
}

TEST(Prune, JointTaylorAndFinalEpochs) {
  // Iterative joint taylor pruning to half of the encoder weights (a head is 16 neurons' worth of
  // weights here, so the target is met exactly), then one recovery epoch at the final shape.
  auto m = ct::tiny_bert(12);
  auto data = ct::tiny_sst2(32, 13);
  auto r = prune::prune(m, data,
                        prune::PruneOptions()
                            .with_criterion(Criterion::Taylor)
                            .with_granularity(Granularity::HeadsNeurons)
                            .with_schedule(Schedule::Iterative)
                            .with_steps(2)
                            .with_final_epochs(1)
                            .with_joint()
                            .with_sparsity(0.5)
                            .with_score_batches(2)
                            .with_train(train::TrainOptions().with_epochs(1).with_batch_size(8)));
  EXPECT_EQ(r.fine_tuning.size(), 3u);  // 2 steps + the recovery run
  EXPECT_EQ(2 * r.encoder_weights_after, r.encoder_weights_before);
  const auto& c = r.model->config();
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_GE(c.heads_at(i), 1);
    EXPECT_GE(c.intermediate_at(i), 1);
  }
}

// Iterative pruning interrupted inside its first fine-tuning run and resumed must end where an
// uninterrupted run ends: the finished runs replay from their saved state, the masks between them
// are recomputed from the same weights, and the interrupted run continues at its step.
TEST(Prune, IterativePruningResumesWhereItStopped) {
  auto data = ct::tiny_sst2(32, 13);
  const auto opts = prune::PruneOptions()
                        .with_criterion(Criterion::Taylor)
                        .with_granularity(Granularity::HeadsNeurons)
                        .with_schedule(Schedule::Iterative)
                        .with_steps(2)
                        .with_final_epochs(1)
                        .with_sparsity(0.5)
                        .with_score_batches(2)
                        .with_train(train::TrainOptions().with_epochs(1).with_batch_size(8).with_seed(5));
  auto run = [&](const train::TrainOptions& t) {
    auto m = ct::tiny_bert(12);
    torch::manual_seed(5);  // as `condense prune` does at its start
    return prune::prune(m, data, prune::PruneOptions(opts).with_train(t));
  };
  const auto whole = run(opts.train);
  ASSERT_TRUE(whole.finished);
  ASSERT_EQ(whole.fine_tuning.size(), 3u);

  const auto dir = ct::scratch_dir("prune_resume");
  auto saving = opts.train;
  saving.with_state_dir(dir).with_save_every(1);
  const auto stopped = run(train::TrainOptions(saving).with_stop_after(3));
  EXPECT_FALSE(stopped.finished);
  EXPECT_EQ(stopped.fine_tuning.size(), 1u);
  EXPECT_TRUE(fs::exists(dir / "run1"));
  EXPECT_FALSE(fs::exists(dir / "run2"));

  const auto resumed = run(train::TrainOptions(saving).with_resume());
  ASSERT_TRUE(resumed.finished);
  ASSERT_EQ(resumed.fine_tuning.size(), 3u);
  EXPECT_EQ(resumed.fine_tuning[0].resumed_from, 3);
  EXPECT_EQ(resumed.fine_tuning[1].resumed_from, 0);
  auto expect_same = [&](const prune::PruneResult& r, const char* what) {
    EXPECT_EQ(r.model->config().layer_heads, whole.model->config().layer_heads) << what;
    EXPECT_EQ(r.model->config().layer_intermediate, whole.model->config().layer_intermediate) << what;
    auto want = whole.model->named_parameters();
    for (const auto& p : r.model->named_parameters()) {
      EXPECT_TRUE(torch::equal(p.value(), want[p.key()])) << what << ": " << p.key();
    }
  };
  expect_same(resumed, "resumed");
  // Every run finished: a further resume replays all three from their final state.
  const auto replayed = run(train::TrainOptions(saving).with_resume());
  EXPECT_EQ(replayed.fine_tuning[2].resumed_from, replayed.fine_tuning[2].steps);
  expect_same(replayed, "replayed");
}

// ---- LayerDrop ----

TEST(Prune, LayerDropOnlyActsInTraining) {
  auto m = ct::tiny_bert(10);
  auto d = ct::tiny_sst2(8, 11);
  auto ref = ct::tiny_logits(m, d);
  m->layerdrop = 0.5;
  EXPECT_EQ(ct::max_diff(ct::tiny_logits(m, d), ref), 0.0);
  // In training mode with dropout off, some layer subsets must differ from the full model.
  bool differed = false;
  m->train();
  torch::manual_seed(1);
  for (int i = 0; i < 8 && !differed; ++i) {
    torch::NoGradGuard g;
    std::vector<std::size_t> idx(d.size());
    std::iota(idx.begin(), idx.end(), 0);
    auto b = train::make_batch(d, idx);
    m->eval();
    auto full = m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
    m->train();
    for (auto& mod : m->modules(false)) {
      if (auto* dr = mod->as<torch::nn::Dropout>()) dr->options.p(0);
    }
    auto dropped = m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
    differed = ct::max_diff(full, dropped) > 1e-4;
  }
  EXPECT_TRUE(differed);
}

// ---- errors ----

TEST(Prune, OptionErrorsNameTheField) {
  EXPECT_NE(ct::error_of([] {
              prune::PruneOptions().with_criterion(Criterion::Movement).validate();
            }).find("schedule cubic"),
            std::string::npos);
  EXPECT_NE(ct::error_of([] {
              prune::PruneOptions().with_criterion(Criterion::Entropy).validate();
            }).find("entropy"),
            std::string::npos);
  EXPECT_NE(ct::error_of([] {
              prune::PruneOptions()
                  .with_criterion(Criterion::SoftMovement)
                  .with_schedule(Schedule::Cubic)
                  .with_granularity(Granularity::Heads)
                  .validate();
            }).find("granularity unstructured"),
            std::string::npos);
  EXPECT_NE(ct::error_of([] { prune::PruneOptions().with_sparsity(1.0).validate(); }).find("sparsity"),
            std::string::npos);
  EXPECT_NE(ct::error_of([] {
              prune::PruneOptions().with_schedule(Schedule::Cubic).with_final_epochs(2).validate();
            }).find("'final_epochs'"),
            std::string::npos);
  EXPECT_NE(ct::error_of([] { prune::PruneOptions().with_final_epochs(-1).validate(); }).find("'final_epochs'"),
            std::string::npos);
  EXPECT_NE(ct::error_of([] {
              prune::PruneOptions().with_criterion(Criterion::Taylor).with_granularity(Granularity::Heads).with_joint().validate();
            }).find("'joint'"),
            std::string::npos);
  EXPECT_NE(ct::error_of([] { prune::parse_granularity("rows"); }).find("heads+neurons"), std::string::npos);
  const auto dir = ct::scratch_dir("prune_recipe");
  condense::write_file_atomic(dir / "r.yaml", "prune: {criterion: magnitude, sparsity: 0.5, nm: two}\n");
  EXPECT_NE(ct::error_of([&] { condense::pipeline::load_prune_recipe(dir / "r.yaml"); }).find("prune.nm"),
            std::string::npos);
  condense::write_file_atomic(dir / "j.yaml", "prune: {criterion: taylor, granularity: heads+neurons, joint: true, final_epochs: 3}\n");
  const auto jr = condense::pipeline::load_prune_recipe(dir / "j.yaml");
  EXPECT_TRUE(jr.options.joint);
  EXPECT_EQ(jr.options.final_epochs, 3);
  condense::write_file_atomic(dir / "s.yaml", "prune: {criterion: magnitude, sparsty: 0.5}\n");
  EXPECT_NE(ct::error_of([&] { condense::pipeline::load_prune_recipe(dir / "s.yaml"); }).find("sparsty"),
            std::string::npos);
  // Layer-wise distillation while pruning: hidden-state terms are read; attention maps (whose head
  // count pruning changes) and layer pruning (which removes the layers compared) are refused.
  condense::write_file_atomic(dir / "l.yaml",
                              "prune: {granularity: heads}\n"
                              "distill: {layer_losses: [{loss: hidden_mse, weight: 0.5}]}\n");
  const auto lr = condense::pipeline::load_prune_recipe(dir / "l.yaml");
  ASSERT_EQ(lr.layer_losses.size(), 1u);
  EXPECT_EQ(lr.layer_losses[0].loss, condense::distill::LayerLoss::HiddenMSE);
  EXPECT_DOUBLE_EQ(lr.layer_losses[0].weight, 0.5);
  condense::write_file_atomic(dir / "a.yaml", "distill: {layer_losses: [{loss: attention_kl}]}\n");
  EXPECT_NE(
      ct::error_of([&] { condense::pipeline::load_prune_recipe(dir / "a.yaml"); }).find("distill.layer_losses[0].loss"),
      std::string::npos);
  condense::write_file_atomic(dir / "d.yaml",
                              "prune: {granularity: layers, depth: 2}\n"
                              "distill: {layer_losses: [{loss: hidden_mse}]}\n");
  EXPECT_NE(ct::error_of([&] { condense::pipeline::load_prune_recipe(dir / "d.yaml"); }).find("distill.layer_losses"),
            std::string::npos);
}
