// Distillation: the soft-target and logit-MSE losses against hand-computed values, the alpha
// mix, the student's layer map and initialisation from the teacher, recipe files, and a tiny
// end-to-end run (teacher fine-tuned on 200 SST-2 rows, student distilled from it).
#include "condense/distill/distill.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "condense/core/error.h"
#include "condense/core/file.h"
#include "condense/data/glue.h"
#include "condense/nn/bert.h"
#include "condense/pipeline/recipe.h"
#include "condense/text/tokenizer.h"
#include "single_thread.h"
#include "test_util.h"

namespace {

using condense::testing::error_of;
using condense::testing::teacher_dir;

using condense::Error;
using condense::distill::DistillOptions;
using condense::distill::SoftLoss;
using condense::distill::StudentOptions;
using condense::nn::BertClassifier;
using condense::nn::BertConfig;
using condense::train::Batch;
using condense::train::TrainOptions;
namespace data = condense::data;
namespace distill = condense::distill;
namespace pipeline = condense::pipeline;
namespace train = condense::train;
namespace fs = std::filesystem;
namespace ct = condense::testing;

#define EXPECT_HAS(haystack, needle)                                                              \
  do {                                                                                            \
    const std::string h_ = (haystack);                                                            \
    EXPECT_NE(h_.find(needle), std::string::npos) << "'" << h_ << "' lacks '" << (needle) << "'"; \
  } while (0)

BertConfig tiny_config(int64_t layers, int64_t vocab_size = 64, int64_t num_labels = 2) {
  BertConfig c;
  c.vocab_size = vocab_size;
  c.hidden_size = 32;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 2;
  c.intermediate_size = 64;
  c.max_position_embeddings = 64;
  c.num_labels = num_labels;
  return c;
}

BertClassifier tiny_model(int64_t layers, uint64_t seed, int64_t vocab_size = 64, int64_t num_labels = 2) {
  torch::manual_seed(seed);
  return BertClassifier(tiny_config(layers, vocab_size, num_labels));
}

torch::Tensor rows(std::initializer_list<std::initializer_list<float>> r) {
  std::vector<torch::Tensor> out;
  for (auto row : r) out.push_back(torch::tensor(std::vector<float>(row)));
  return torch::stack(out);
}

Batch labels_batch(std::vector<int64_t> labels, std::vector<float> scores = {}) {
  Batch b;
  b.labels = torch::tensor(labels, torch::kInt64);
  b.scores = scores.empty() ? torch::zeros({static_cast<int64_t>(labels.size())}) : torch::tensor(scores);
  return b;
}

double val(const torch::Tensor& t) {
  return t.item<double>();
}

// ---------------------------------------------------------------------------------------------
// Losses
//
// soft(s, t, T) = T² · mean_rows Σ_j p_t,j (log p_t,j − log p_s,j), p = softmax(logits / T).
//
// 2 classes, T = 1:
//   row A: s = (0, 0)     -> p_s = (1/2, 1/2);  t = (ln 3, 0) -> p_t = (3/4, 1/4)
//          KL = 3/4 ln((3/4)/(1/2)) + 1/4 ln((1/4)/(1/2)) = 3/4 ln(3/2) − 1/4 ln 2      ≈ 0.130812
//   row B: s = (ln 3, 0)  -> p_s = (3/4, 1/4);  t = (0, 0)    -> p_t = (1/2, 1/2)
//          KL = 1/2 ln((1/2)/(3/4)) + 1/2 ln((1/2)/(1/4)) = 1/2 ln(4/3)                  ≈ 0.143841
//   mean = (A + B) / 2, T² = 1.
// 2 classes, T = 2: s = (0, 0), t = (2 ln 3, 0): t / T = (ln 3, 0), so the distributions are
//   row A's and KL ≈ 0.130812, times T² = 4 -> ≈ 0.523248.
// 3 classes, T = 1:
//   row C: s = (0, 0, 0) -> p_s = (1/3, 1/3, 1/3); t = (ln 2, 0, 0) -> p_t = (1/2, 1/4, 1/4)
//          KL = 1/2 ln(3/2) + 2 · 1/4 ln(3/4) = 1/2 ln(9/8)                               ≈ 0.058892
//   row D: s = (ln 2, 0, 0) -> p_s = (1/2, 1/4, 1/4); t = (0, 0, 0) -> p_t uniform
//          KL = 1/3 (ln((1/3)/(1/2)) + 2 ln((1/3)/(1/4))) = 1/3 ln(32/27)                  ≈ 0.056633
// 3 classes, T = 2: logits doubled give the T = 1 distributions, so soft = 4 · the T = 1 value.

TEST(Distill, SoftTargetLossMatchesHandValues2x2) {
  const double l3 = std::log(3.0), l2 = std::log(2.0);
  const double a = 0.75 * std::log(1.5) - 0.25 * l2, b = 0.5 * std::log(4.0 / 3.0);
  EXPECT_NEAR(a, 0.130812, 1e-6);
  EXPECT_NEAR(b, 0.143841, 1e-6);
  auto s = rows({{0, 0}, {float(l3), 0}});
  auto t = rows({{float(l3), 0}, {0, 0}});
  EXPECT_NEAR(val(distill::soft_target_loss(s, t, 1.0)), (a + b) / 2, 1e-6);
  // T = 2 with doubled teacher logits: same distributions as row A, scaled by T² = 4.
  EXPECT_NEAR(val(distill::soft_target_loss(rows({{0, 0}}), rows({{float(2 * l3), 0}}), 2.0)), 4 * a, 1e-6);
  // The direction matters: KL(teacher || student), not the reverse.
  EXPECT_NEAR(val(distill::soft_target_loss(rows({{float(l3), 0}}), rows({{0, 0}}), 1.0)), b, 1e-6);
}

TEST(Distill, SoftTargetLossMatchesHandValues2x3) {
  const double l2 = std::log(2.0);
  const double c = 0.5 * std::log(9.0 / 8.0), d = std::log(32.0 / 27.0) / 3;
  EXPECT_NEAR(c, 0.058892, 1e-6);
  EXPECT_NEAR(d, 0.056633, 1e-6);
  auto s = rows({{0, 0, 0}, {float(l2), 0, 0}});
  auto t = rows({{float(l2), 0, 0}, {0, 0, 0}});
  EXPECT_NEAR(val(distill::soft_target_loss(s, t, 1.0)), (c + d) / 2, 1e-6);
  EXPECT_NEAR(val(distill::soft_target_loss(2 * s, 2 * t, 2.0)), 4 * (c + d) / 2, 1e-6);
  // Adding a constant to a row's logits changes no probability.
  EXPECT_NEAR(val(distill::soft_target_loss(s + 5, t - 3, 1.0)), (c + d) / 2, 1e-6);
}

TEST(Distill, SoftTargetLossIsZeroWhenStudentEqualsTeacher) {
  torch::manual_seed(0);
  auto t = torch::randn({5, 3}) * 4;
  for (double T : {0.5, 1.0, 2.0, 8.0}) EXPECT_NEAR(val(distill::soft_target_loss(t.clone(), t, T)), 0.0, 1e-6);
  // And positive otherwise.
  EXPECT_GT(val(distill::soft_target_loss(t.flip(1), t, 2.0)), 1e-3);
}

TEST(Distill, SoftTargetLossChecksShapes) {
  EXPECT_HAS(error_of([] { distill::soft_target_loss(torch::zeros({2, 2}), torch::zeros({2, 3}), 1.0); }), "2x3");
  EXPECT_HAS(error_of([] { distill::logit_mse_loss(torch::zeros({2, 2}), torch::zeros({3, 2})); }), "differ in shape");
}

TEST(Distill, LogitMseLossHandValue) {
  // Differences 1, 0, 0, 2 -> (1 + 0 + 0 + 4) / 4 = 1.25.
  EXPECT_NEAR(val(distill::logit_mse_loss(rows({{1, 2}, {3, 4}}), rows({{0, 2}, {3, 2}}))), 1.25, 1e-7);
}

TEST(Distill, RegressionHeadUsesMse) {
  // One output: the soft loss is the MSE between outputs, with no temperature and no T² factor.
  auto s = rows({{1}, {2}}), t = rows({{0}, {4}});  // (1 + 4) / 2 = 2.5
  EXPECT_NEAR(val(distill::soft_target_loss(s, t, 1.0)), 2.5, 1e-7);
  EXPECT_NEAR(val(distill::soft_target_loss(s, t, 4.0)), 2.5, 1e-7);
  // alpha = 0: hard loss = MSE against the gold scores: ((1 − 1.5)^2 + (2 − 0)^2) / 2 = 2.125.
  auto b = labels_batch({0, 0}, {1.5f, 0.f});
  auto o = DistillOptions().with_alpha(0);
  EXPECT_NEAR(val(distill::distillation_loss(s, t, b, o)), 2.125, 1e-6);
  EXPECT_NEAR(val(distill::distillation_loss(s, t, b, o.with_alpha(0.5))), 0.5 * 2.5 + 0.5 * 2.125, 1e-6);
}

TEST(Distill, DistillationLossMixesWithAlpha) {
  const double l3 = std::log(3.0);
  auto s = rows({{0, 0}, {float(l3), 0}});
  auto t = rows({{float(l3), 0}, {0, 0}});
  auto b = labels_batch({1, 0});
  // Hard loss: row 0 logits (0, 0) label 1 -> ln 2; row 1 (ln 3, 0) label 0 -> −ln(3/4).
  const double ce = (std::log(2.0) - std::log(0.75)) / 2;
  EXPECT_NEAR(val(train::task_loss(s, b)), ce, 1e-6);
  for (double T : {1.0, 2.0}) {
    const double soft = val(distill::soft_target_loss(s, t, T));
    auto o = DistillOptions().with_temperature(T);
    EXPECT_NEAR(val(distill::distillation_loss(s, t, b, o.with_alpha(1))), soft, 1e-6);
    EXPECT_NEAR(val(distill::distillation_loss(s, t, b, o.with_alpha(0))), ce, 1e-6);
    EXPECT_NEAR(val(distill::distillation_loss(s, t, b, o.with_alpha(0.5))), 0.5 * soft + 0.5 * ce, 1e-6);
    EXPECT_NEAR(val(distill::distillation_loss(s, t, b, o.with_alpha(0.25))), 0.25 * soft + 0.75 * ce, 1e-6);
  }
  // The MSE variant replaces the soft part and ignores the temperature.
  auto o = DistillOptions().with_soft_loss(SoftLoss::MSE).with_alpha(1).with_temperature(5);
  EXPECT_NEAR(val(distill::distillation_loss(s, t, b, o)), val(distill::logit_mse_loss(s, t)), 1e-7);
}

TEST(Distill, OptionsValidateAndParseLossNames) {
  EXPECT_EQ(distill::parse_soft_loss("kl"), SoftLoss::KL);
  EXPECT_EQ(distill::parse_soft_loss("mse"), SoftLoss::MSE);
  EXPECT_HAS(error_of([] { distill::parse_soft_loss("KLD"); }), "'KLD'");
  EXPECT_NO_THROW(DistillOptions().validate());
  EXPECT_HAS(error_of([] { DistillOptions().with_temperature(0).validate(); }), "'temperature'");
  EXPECT_HAS(error_of([] { DistillOptions().with_temperature(NAN).validate(); }), "'temperature'");
  EXPECT_HAS(error_of([] { DistillOptions().with_alpha(1.5).validate(); }), "'alpha'");
  EXPECT_HAS(error_of([] { DistillOptions().with_alpha(-0.1).validate(); }), "'alpha'");
  EXPECT_HAS(error_of([] { DistillOptions().with_train(TrainOptions().with_epochs(0)).validate(); }), "'epochs'");
}

// ---------------------------------------------------------------------------------------------
// Students

TEST(Distill, ResolveInitLayers) {
  using V = std::vector<int64_t>;
  EXPECT_EQ(distill::resolve_init_layers(StudentOptions().with_layers(3), 6), (V{0, 2, 4}));
  EXPECT_EQ(distill::resolve_init_layers(StudentOptions().with_layers(6), 12), (V{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(distill::resolve_init_layers(StudentOptions().with_layers(4), 12), (V{0, 3, 6, 9}));
  EXPECT_EQ(distill::resolve_init_layers(StudentOptions().with_layers(6), 6), (V{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(distill::resolve_init_layers(StudentOptions().with_layers(1), 6), (V{0}));
  EXPECT_EQ(distill::resolve_init_layers(StudentOptions().with_layers(3).with_init_layers({5, 1, 1}), 6), (V{5, 1, 1}));

  EXPECT_HAS(error_of([] {
               distill::resolve_init_layers(StudentOptions().with_layers(3).with_init_layers({0, 2}), 6);
             }),
             "lists 2 layers but the student has 3");
  EXPECT_HAS(error_of([] {
               distill::resolve_init_layers(StudentOptions().with_layers(2).with_init_layers({0, 6}), 6);
             }),
             "teacher layer 6 does not exist (teacher has 6)");
  EXPECT_HAS(error_of([] { distill::resolve_init_layers(StudentOptions().with_layers(1).with_init_layers({-1}), 6); }),
             "teacher layer -1 does not exist");
  EXPECT_HAS(error_of([] { distill::resolve_init_layers(StudentOptions().with_layers(7), 6); }), "'layers' is 7");
  EXPECT_HAS(error_of([] { distill::resolve_init_layers(StudentOptions().with_layers(0), 6); }), "'layers'");
}

/// Parameters under `prefix` (e.g. "bert.encoder.layer.3."), keyed by the rest of the name.
std::map<std::string, torch::Tensor> under(BertClassifier& m, const std::string& prefix) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m->named_parameters()) {
    if (p.key().rfind(prefix, 0) == 0) out[p.key().substr(prefix.size())] = p.value();
  }
  return out;
}

void expect_same(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b,
                 const std::string& what) {
  ASSERT_FALSE(a.empty()) << what;
  ASSERT_EQ(a.size(), b.size()) << what;
  for (const auto& [k, v] : a) {
    ASSERT_TRUE(b.count(k)) << what << " " << k;
    EXPECT_TRUE(torch::equal(v, b.at(k))) << what << " " << k;
  }
}

TEST(Distill, MakeStudentCopiesTheChosenTeacherLayers) {
  auto teacher = tiny_model(4, 1);
  // An explicit, non-monotone map; then the default (4 -> 2: layers 0 and 2).
  for (auto [opts, map] :
       {std::pair{StudentOptions().with_layers(2).with_init_layers({3, 1}), std::vector<int64_t>{3, 1}},
        std::pair{StudentOptions().with_layers(2), std::vector<int64_t>{0, 2}}}) {
    auto student = distill::make_student(teacher, opts, 5);
    EXPECT_EQ(student->config().num_hidden_layers, 2);
    EXPECT_EQ(student->config().hidden_size, 32);
    EXPECT_EQ(student->config().vocab_size, teacher->config().vocab_size);
    for (int64_t i = 0; i < 2; ++i) {
      expect_same(under(student, "bert.encoder.layer." + std::to_string(i) + "."),
                  under(teacher, "bert.encoder.layer." + std::to_string(map[i]) + "."),
                  "student layer " + std::to_string(i));
    }
    expect_same(under(student, "bert.embeddings."), under(teacher, "bert.embeddings."), "embeddings");
    expect_same(under(student, "bert.pooler."), under(teacher, "bert.pooler."), "pooler");
    expect_same(under(student, "classifier."), under(teacher, "classifier."), "classifier");
    // A copy, not shared storage: training the student must not touch the teacher.
    EXPECT_NE(student->classifier->weight.data_ptr(), teacher->classifier->weight.data_ptr());
  }
  // Students of a 4-layer teacher have fewer parameters than it.
  auto s = distill::make_student(teacher, StudentOptions().with_layers(2), 5);
  EXPECT_LT(s->num_parameters(), teacher->num_parameters());
}

TEST(Distill, MakeStudentFromScratchAndWidthChecks) {
  auto teacher = tiny_model(4, 1);
  auto narrow = StudentOptions().with_layers(2).with_hidden_size(16).with_intermediate_size(32);
  auto msg = error_of([&] { distill::make_student(teacher, narrow, 5); });
  EXPECT_HAS(msg, "'init' is 'teacher'");
  EXPECT_HAS(msg, "hidden 16");
  auto scratch = distill::make_student(teacher, StudentOptions(narrow).with_init("scratch"), 5);
  EXPECT_EQ(scratch->config().hidden_size, 16);
  EXPECT_EQ(scratch->config().intermediate_size, 32);
  EXPECT_EQ(scratch->config().num_hidden_layers, 2);
  // Scratch students depend only on the seed.
  auto again = distill::make_student(teacher, StudentOptions(narrow).with_init("scratch"), 5);
  EXPECT_TRUE(torch::equal(scratch->classifier->weight, again->classifier->weight));

  EXPECT_HAS(error_of([&] { distill::make_student(teacher, StudentOptions().with_layers(2).with_init("copy"), 5); }),
             "'init' is 'copy'");
  EXPECT_HAS(
      error_of([&] { distill::make_student(teacher, StudentOptions().with_layers(2).with_num_attention_heads(3), 5); }),
      "student options");
  EXPECT_HAS(error_of([&] {
               distill::make_student(teacher, StudentOptions().with_layers(2).with_init_layers({4, 0}), 5);
             }),
             "teacher layer 4 does not exist");
}

TEST(Distill, TeacherSliceStudentKeepsTheTeachersImportantChannels) {
  auto teacher = tiny_model(4, 1);
  // Nothing to cut: the slice is the plain layer copy, parameter for parameter.
  {
    auto sliced = distill::make_student(
        teacher, StudentOptions().with_layers(2).with_init_layers({3, 1}).with_init("teacher-slice"), 5);
    auto copied = distill::make_student(teacher, StudentOptions().with_layers(2).with_init_layers({3, 1}), 5);
    expect_same(under(sliced, ""), under(copied, ""), "full-width slice");
  }
  // Hidden channels 0..7 get γ = β = 0 in every LayerNorm, so they are the ones dropped; in the
  // teacher's layer 0, query rows 0..3 (head 0) and 16..19 (head 1) are zeroed, so those head
  // dimensions score 0; in its layer 2 the first 16 FFN neurons are zeroed.
  {
    torch::NoGradGuard guard;
    for (auto& p : teacher->named_parameters()) {
      if (p.key().find("LayerNorm.") != std::string::npos) p.value().narrow(0, 0, 8).zero_();
    }
    auto params = teacher->named_parameters();
    auto q = params["bert.encoder.layer.0.attention.self.query.weight"];
    q.narrow(0, 0, 4).zero_();
    q.narrow(0, 16, 4).zero_();
    params["bert.encoder.layer.2.intermediate.dense.weight"].narrow(0, 0, 16).zero_();
  }
  auto hidden = torch::arange(8, 32, torch::kInt64);
  EXPECT_EQ(distill::inherited_hidden_channels(teacher, 24), (std::vector<int64_t>(hidden.data_ptr<int64_t>(), hidden.data_ptr<int64_t>() + 24)));
  auto opts = StudentOptions().with_layers(2).with_init_layers({0, 2}).with_hidden_size(24).with_intermediate_size(48)
                  .with_init("teacher-slice");
  auto student = distill::make_student(teacher, opts, 5);
  EXPECT_EQ(student->config().head_dim(), 12);
  auto t = teacher->named_parameters();
  auto s = student->named_parameters();
  EXPECT_TRUE(torch::equal(s["bert.embeddings.word_embeddings.weight"], t["bert.embeddings.word_embeddings.weight"].index_select(1, hidden)));
  EXPECT_TRUE(torch::equal(s["classifier.weight"], t["classifier.weight"].index_select(1, hidden)));
  EXPECT_TRUE(torch::equal(s["bert.encoder.layer.1.output.LayerNorm.weight"],
                           t["bert.encoder.layer.2.output.LayerNorm.weight"].index_select(0, hidden)));
  // Queries keep dimensions 4..15 of each head, scaled by √(12/16) so q·k/√12 stays at the teacher's scale.
  auto qk_rows = torch::cat({torch::arange(4, 16, torch::kInt64), torch::arange(20, 32, torch::kInt64)});
  auto want_q = t["bert.encoder.layer.0.attention.self.query.weight"].index_select(0, qk_rows).index_select(1, hidden) *
                std::sqrt(12.0 / 16.0);
  EXPECT_TRUE(torch::allclose(s["bert.encoder.layer.0.attention.self.query.weight"], want_q));
  EXPECT_TRUE(torch::equal(s["bert.encoder.layer.0.attention.self.key.weight"],
                           t["bert.encoder.layer.0.attention.self.key.weight"].index_select(0, qk_rows).index_select(1, hidden)));
  auto ffn = torch::arange(16, 64, torch::kInt64);
  EXPECT_TRUE(torch::equal(s["bert.encoder.layer.1.intermediate.dense.weight"],
                           t["bert.encoder.layer.2.intermediate.dense.weight"].index_select(0, ffn).index_select(1, hidden)));
  EXPECT_TRUE(torch::equal(s["bert.encoder.layer.1.output.dense.weight"],
                           t["bert.encoder.layer.2.output.dense.weight"].index_select(0, hidden).index_select(1, ffn)));

  // The projection to the teacher's width starts as the embedding the slice came from.
  auto proj = distill::FeatureProjection(24, 32, 2, true);
  proj->start_as_embedding(distill::inherited_hidden_channels(teacher, 24));
  auto x = torch::randn({2, 3, 24});
  auto y = proj->forward(x, 1);
  EXPECT_TRUE(torch::equal(y.index_select(2, hidden), x));
  EXPECT_EQ(y.narrow(2, 0, 8).abs().sum().item<float>(), 0.0f);
  EXPECT_HAS(error_of([&] { proj->start_as_embedding({1, 2}); }), "lists 2 channels but the student is 24 wide");

  EXPECT_HAS(error_of([&] { distill::make_student(teacher, StudentOptions(opts).with_num_attention_heads(4), 5); }),
             "student's heads (4 of width 6)");
  EXPECT_HAS(error_of([&] { distill::make_student(teacher, StudentOptions(opts).with_intermediate_size(128), 5); }),
             "'init' is 'teacher-slice'");
  EXPECT_HAS(error_of([&] { distill::inherited_hidden_channels(teacher, 40); }), "keeps 1 to 32");
}

TEST(Distill, DistillChecksTeacherAndCache) {
  auto teacher = tiny_model(2, 1, 64, 2);
  auto student3 = tiny_model(1, 2, 64, 3);
  train::EncodedDataset d;
  d.input_ids = {{2, 5, 3}, {2, 6, 7, 3}};
  d.token_type_ids = {{0, 0, 0}, {0, 0, 0, 0}};
  d.labels = {0, 1};
  d.scores = {0, 0};
  auto o = DistillOptions().with_train(TrainOptions().with_epochs(1).with_batch_size(2));
  EXPECT_HAS(error_of([&] { distill::distill(student3, teacher, d, o); }),
             "student has 3 outputs but the teacher has 2");
  auto student = tiny_model(1, 2);
  EXPECT_HAS(error_of([&] {
               distill::distill(student, teacher, d, o, torch::zeros({3, 2}));
             }),
             "teacher cache has 3 rows but the training set has 2");
  EXPECT_HAS(error_of([&] { distill::distill(student, teacher, d, DistillOptions(o).with_alpha(2)); }), "'alpha'");
  auto r = distill::distill(student, teacher, d, o);
  EXPECT_EQ(r.steps, 1);
}

// ---------------------------------------------------------------------------------------------
// Recipes

fs::path write(const fs::path& dir, const std::string& name, const std::string& text) {
  auto p = dir / name;
  std::ofstream(p) << text;
  return p;
}

TEST(Distill, RecipeLoadsEveryKey) {
  auto r = pipeline::load_recipe(ct::source_dir() / "tests" / "data" / "tiny_recipe.yaml");
  ASSERT_TRUE(r.task);
  EXPECT_EQ(*r.task, "sst2");
  EXPECT_EQ(r.student.layers, 1);
  EXPECT_EQ(r.student.hidden_size, 32);
  EXPECT_EQ(r.student.num_attention_heads, 2);
  EXPECT_EQ(r.student.intermediate_size, 64);
  EXPECT_EQ(r.student.init, "teacher");
  EXPECT_EQ(r.student.init_layers, (std::vector<int64_t>{1}));
  EXPECT_EQ(r.distill.soft_loss, SoftLoss::MSE);
  EXPECT_DOUBLE_EQ(r.distill.temperature, 3.5);
  EXPECT_DOUBLE_EQ(r.distill.alpha, 0.25);
  const auto& t = r.distill.train;
  EXPECT_EQ(t.epochs, 2);
  EXPECT_EQ(t.batch_size, 16);
  EXPECT_DOUBLE_EQ(t.learning_rate, 1e-3);
  EXPECT_DOUBLE_EQ(t.warmup_ratio, 0.2);
  EXPECT_DOUBLE_EQ(t.weight_decay, 0.05);
  EXPECT_DOUBLE_EQ(t.max_grad_norm, 0.5);
  EXPECT_EQ(t.seed, 7u);
  EXPECT_TRUE(t.bf16);
  EXPECT_EQ(r.max_length, 32);
  EXPECT_EQ(r.train_limit, 200);

  // Absent keys keep the library defaults; an empty file is all defaults.
  auto dir = ct::scratch_dir("distill_recipe");
  auto partial = pipeline::load_recipe(write(dir, "partial.yaml", "distill: {alpha: 0.9}\n"));
  EXPECT_FALSE(partial.task);
  EXPECT_DOUBLE_EQ(partial.distill.alpha, 0.9);
  EXPECT_DOUBLE_EQ(partial.distill.temperature, DistillOptions().temperature);
  EXPECT_EQ(partial.distill.soft_loss, SoftLoss::KL);
  EXPECT_EQ(partial.student.layers, StudentOptions().layers);
  EXPECT_EQ(partial.distill.train.epochs, TrainOptions().epochs);
  EXPECT_EQ(partial.max_length, 128);
  auto empty = pipeline::load_recipe(write(dir, "empty.yaml", ""));
  EXPECT_EQ(empty.student.layers, 3);
  EXPECT_TRUE(empty.init_search.candidates.empty());
  auto search = pipeline::load_recipe(
      write(dir, "search.yaml", "student: {init_search: {candidates: [[0, 2, 4], [1, 3, 5]], held_out: 0.2}}\n"));
  EXPECT_EQ(search.init_search.candidates, (std::vector<std::vector<int64_t>>{{0, 2, 4}, {1, 3, 5}}));
  EXPECT_DOUBLE_EQ(search.init_search.held_out, 0.2);
}

TEST(Distill, RecipeErrorsNameFileAndKey) {
  auto dir = ct::scratch_dir("distill_recipe_errors");
  auto check = [&](const std::string& name, const std::string& yaml, const std::vector<std::string>& needles) {
    auto p = write(dir, name, yaml);
    auto msg = error_of([&] { pipeline::load_recipe(p); });
    EXPECT_HAS(msg, p.string() + ":");
    for (const auto& n : needles) EXPECT_HAS(msg, n);
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  };
  check("top.yaml", "studnet: {layers: 2}\n", {"unknown key 'studnet'"});
  check("nested.yaml", "train: {epoch: 2}\n", {"unknown key 'train.epoch'"});
  check("student_key.yaml", "student: {layer: 2}\n", {"unknown key 'student.layer'"});
  check("type.yaml", "train: {epochs: three}\n", {"'train.epochs'", "three"});
  check("type_float.yaml", "distill: {temperature: hot}\n", {"'distill.temperature'", "hot"});
  check("type_list.yaml", "student: {init_layers: 2x}\n", {"'student.init_layers'"});
  check("loss.yaml", "distill: {loss: kld}\n", {"'distill.loss'", "'kld'"});
  check("task.yaml", "task: foo\n", {"field 'task'", "unknown task 'foo'"});
  check("task_type.yaml", "task: {name: sst2}\n", {"field 'task' has an invalid value"});
  check("range.yaml", "distill: {alpha: 1.5}\n", {"'alpha'"});
  check("range_train.yaml", "train: {batch_size: 0}\n", {"'batch_size'"});
  check("not_map.yaml", "student: 3\n", {"'student' must be a mapping"});
  check("yaml.yaml", "train: {epochs: [1, 2\n", {"not valid YAML"});
  check("arch.yaml", "student: {arch: transformer}\n", {"field 'student.arch' is 'transformer'"});
  check("augment.yaml", "augment: {method: eda}\n", {"field 'augment.method' is 'eda'"});
  check("augment_key.yaml", "augment: {per_sentence: 3}\n", {"unknown key 'augment.per_sentence'"});
  check("weight_end.yaml", "distill: {layer_losses: [{loss: hidden_mse, weight_end: -1}]}\n", {"weight_end"});
  check("mask.yaml", "distill: {mlm_weight: 1, mask_prob: 1.5}\n", {"'mask_prob'"});
  check("search_key.yaml", "student: {init_search: {candidate: [[0]]}}\n", {"unknown key 'student.init_search.candidate'"});
  check("search_one.yaml", "student: {init_search: {candidates: [[0, 2, 4]]}}\n",
        {"'student.init_search.candidates'", "two lists"});
  check("search_type.yaml", "student: {init_search: {candidates: [0, 2, 4]}}\n", {"'student.init_search.candidates'"});
  auto missing = dir / "missing.yaml";
  EXPECT_HAS(error_of([&] { pipeline::load_recipe(missing); }), missing.string() + ": recipe file not found");
}

// ---------------------------------------------------------------------------------------------
// End to end

TEST(Distill, TinyEndToEndStudentMovesTowardTheTeacher) {
  if (teacher_dir().empty() || ct::glue_dir("SST-2").empty()) GTEST_SKIP() << "teacher vocabulary or SST-2 missing";
  auto tok = condense::text::WordPieceTokenizer::from_directory(teacher_dir());
  auto full = data::read_glue_split(data::Task::SST2, ct::glue_dir("SST-2"), "train");
  auto train_set = data::take_subset(full, 200, 1);
  auto enc = train::encode(train_set, tok, 32);

  // A 2-layer teacher fine-tuned briefly (at a high rate, so that its outputs are confident and
  // far from those of a random network).
  auto teacher = tiny_model(2, 1, tok.vocab_size());
  train::finetune(teacher, enc,
                  TrainOptions().with_epochs(4).with_batch_size(16).with_learning_rate(5e-3).with_seed(1));
  auto teacher_logits = train::predict_logits(teacher, enc);
  ASSERT_EQ(teacher_logits.size(0), 200);
  ASSERT_GT((teacher_logits.select(1, 0) - teacher_logits.select(1, 1)).abs().mean().item<double>(), 0.5);

  // A 1-layer student of the same width. Copying teacher layers would start it almost on the
  // teacher (a random-init BERT layer barely changes the [CLS] path), so it starts from scratch.
  const auto sopts = StudentOptions().with_layers(1).with_init("scratch");
  auto student = distill::make_student(teacher, sopts, 2);
  const double kl_before = val(distill::soft_target_loss(train::predict_logits(student, enc), teacher_logits, 1.0));
  ASSERT_GT(kl_before, 0.05);

  // 200 / 16 = 13 steps per epoch, 3 epochs = 39 steps: while fewer than 50 steps have run,
  // Progress::loss is the mean of all of them, so each step's loss can be recovered.
  std::vector<double> step_loss;
  double prev_sum = 0;
  auto o = DistillOptions().with_alpha(0.5).with_temperature(2.0).with_train(
      TrainOptions().with_epochs(3).with_batch_size(16).with_learning_rate(1e-2).with_seed(2));
  o.train.on_progress = [&](const train::Progress& p) {
    const double sum = p.loss * static_cast<double>(p.step);
    step_loss.push_back(sum - prev_sum);
    prev_sum = sum;
  };
  auto r = distill::distill(student, teacher, enc, o);  // the cache is computed inside
  EXPECT_TRUE(r.finished);
  ASSERT_EQ(r.steps, 39);
  ASSERT_EQ(step_loss.size(), 39u);
  auto epoch_mean = [&](int e) {
    double s = 0;
    for (int i = 13 * e; i < 13 * (e + 1); ++i) s += step_loss[static_cast<std::size_t>(i)];
    return s / 13;
  };
  EXPECT_NEAR(epoch_mean(2), r.mean_loss_last_epoch, 1e-6);
  EXPECT_LT(epoch_mean(2), epoch_mean(0));

  const double kl_after = val(distill::soft_target_loss(train::predict_logits(student, enc), teacher_logits, 1.0));
  EXPECT_LT(kl_after, 0.9 * kl_before);  // 0.285 -> 0.218 on the reference machine
  std::cerr << "KL(teacher || student) " << kl_before << " -> " << kl_after << ", epoch loss " << epoch_mean(0)
            << " -> " << epoch_mean(2) << "\n";

  // The teacher is untouched by distillation.
  EXPECT_TRUE(torch::equal(train::predict_logits(teacher, enc), teacher_logits));

  // Passing the cache gives the same result as computing it inside.
  auto student2 = distill::make_student(teacher, sopts, 2);
  auto o2 = o;
  o2.train.on_progress = nullptr;
  distill::distill(student2, teacher, enc, o2, teacher_logits);
  EXPECT_TRUE(torch::equal(student2->classifier->weight, student->classifier->weight));

  // Running the teacher on every batch instead (cache_teacher = false) trains the same student up
  // to float rounding: the teacher then sees each batch padded differently, nothing else changes.
  auto student3 = distill::make_student(teacher, sopts, 2);
  distill::distill(student3, teacher, enc, DistillOptions(o2).with_cache_teacher(false));
  const double diff = (student3->classifier->weight - student->classifier->weight).abs().max().item<double>();
  std::cerr << "uncached vs cached teacher: max classifier weight diff " << diff << "\n";
  EXPECT_LT(diff, 1e-4);
}

// The init search distils one student per candidate on the fitting part and scores it on the
// held-out part: each score must be what that candidate's own run gives (training is
// deterministic for a seed), and the choice the best of them.
TEST(Distill, InitSearchScoresEachCandidateOnHeldOutExamples) {
  std::vector<std::string> vocab{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "plot", "."};
  condense::text::WordPieceTokenizer tok(vocab, condense::text::TokenizerOptions());
  data::Dataset d{data::Task::SST2, "toy.tsv", {}};
  std::mt19937 rng(3);
  for (int i = 0; i < 80; ++i) {
    std::string t;
    for (int k = 0; k < 4; ++k) t += std::string(k ? " " : "") + vocab[5 + rng() % 5];
    d.examples.push_back({t, std::nullopt, static_cast<int64_t>(t.rfind("good", 0) == 0), 0});
  }
  auto [fit, held] = data::split_held_out(d, 0.25, 1);
  ASSERT_EQ(held.examples.size(), 20u);
  auto enc_fit = train::encode(fit, tok, 16);
  auto enc_held = train::encode(held, tok, 16);
  auto teacher = tiny_model(3, 5, tok.vocab_size());
  train::finetune(teacher, enc_fit, TrainOptions().with_epochs(3).with_batch_size(8).with_learning_rate(3e-3).with_seed(1));

  const auto s = StudentOptions().with_layers(2);
  auto o = DistillOptions().with_train(TrainOptions().with_epochs(2).with_batch_size(8).with_learning_rate(1e-3).with_seed(4));
  const auto search = distill::InitSearchOptions().with_candidates({{0, 1}, {1, 2}, {0, 2}});
  const auto r = distill::search_init_layers(teacher, s, search, enc_fit, enc_held, held, o);
  ASSERT_EQ(r.scores.size(), 3u);
  const auto best = std::max_element(r.scores.begin(), r.scores.end()) - r.scores.begin();
  EXPECT_EQ(r.chosen, search.candidates[static_cast<std::size_t>(best)]);
  for (std::size_t i = 0; i < 3; ++i) {
    auto student = distill::make_student(teacher, StudentOptions(s).with_init_layers(search.candidates[i]), o.train.seed);
    distill::distill(student, teacher, enc_fit, o);
    EXPECT_DOUBLE_EQ(train::evaluate(student, enc_held, held).metrics.at("main"), r.scores[i]) << "candidate " << i;
  }
  std::cerr << "held-out accuracy per candidate: " << r.scores[0] << " " << r.scores[1] << " " << r.scores[2] << "\n";

  // Candidates that do not fit, and options out of range, name what is wrong.
  auto err = [&](const distill::InitSearchOptions& so, const StudentOptions& so_student = StudentOptions().with_layers(2)) {
    return error_of([&] { distill::search_init_layers(teacher, so_student, so, enc_fit, enc_held, held, o); });
  };
  EXPECT_HAS(err(distill::InitSearchOptions().with_candidates({{0, 1}, {0, 1, 2}})), "init search candidate 2");
  EXPECT_HAS(err(distill::InitSearchOptions().with_candidates({{0, 1}, {0, 7}})), "teacher layer 7 does not exist");
  EXPECT_HAS(err(distill::InitSearchOptions().with_candidates({{0, 1}})), "two candidates");
  EXPECT_HAS(err(distill::InitSearchOptions(search).with_held_out(1.0)), "'held_out'");
  EXPECT_HAS(err(search, StudentOptions().with_layers(2).with_init("scratch")), "init teacher");
}

// ---------------------------------------------------------------------------------------------
// Intermediate-layer losses, hand-computed (b = batch, s = sequence, d = width, h = heads).

namespace layers {

using distill::LayerLoss;
using distill::LayerLossTerm;
using distill::LayerMapOptions;
using distill::LayerPair;

torch::Tensor t3(std::initializer_list<std::initializer_list<float>> r) { return rows(r).unsqueeze(0); }
torch::Tensor mask_of(std::vector<int64_t> m) { return torch::tensor(m, torch::kInt64).unsqueeze(0); }

TEST(DistillLayers, HiddenMseCountsOnlyRealTokens) {
  // token 1: (1,2) vs (1,0) -> 4; token 2: (3,4) vs (3,1) -> 9; token 3 is padding.
  // (4 + 9) / (2 tokens · 2 features) = 3.25
  auto s = t3({{1, 2}, {3, 4}, {9, 9}}), t = t3({{1, 0}, {3, 1}, {0, 0}});
  EXPECT_NEAR(val(distill::hidden_mse_loss(s, t, mask_of({1, 1, 0}))), 3.25, 1e-6);
  // With every token real the padding row adds 81 + 81: (13 + 162) / 6.
  EXPECT_NEAR(val(distill::hidden_mse_loss(s, t, mask_of({1, 1, 1}))), 175.0 / 6.0, 1e-5);
  EXPECT_HAS(error_of([&] { distill::hidden_mse_loss(s, t3({{1, 0}}), mask_of({1})); }), "hidden_mse");
}

TEST(DistillLayers, HiddenCosine) {
  // orthogonal -> 1, parallel -> 0, the padded opposite pair (would be 2) is ignored: mean 0.5.
  auto s = t3({{1, 0}, {1, 1}, {1, 0}}), t = t3({{0, 1}, {2, 2}, {-1, 0}});
  EXPECT_NEAR(val(distill::hidden_cosine_loss(s, t, mask_of({1, 1, 0}))), 0.5, 1e-6);
  EXPECT_NEAR(val(distill::hidden_cosine_loss(s, t, mask_of({1, 1, 1}))), 1.0, 1e-6);
}

TEST(DistillLayers, AttentionMseOverRealQueryKeyPairs) {
  // 2 heads, 2 tokens, the second padding: only (query 0, key 0) counts: (1² + 3²) / (1 pair · 2 heads) = 5.
  auto s = torch::full({1, 2, 2, 2}, 100.0f), t = torch::zeros({1, 2, 2, 2});
  s[0][0][0][0] = 1;
  s[0][1][0][0] = 3;
  EXPECT_NEAR(val(distill::attention_mse_loss(s, t, mask_of({1, 0}))), 5.0, 1e-6);
  // All real: head 0 off by 1 everywhere, head 1 exact: 4 / (4 pairs · 2 heads) = 0.5.
  auto s2 = torch::zeros({1, 2, 2, 2}), t2 = torch::zeros({1, 2, 2, 2});
  t2[0][0].fill_(1);
  EXPECT_NEAR(val(distill::attention_mse_loss(s2, t2, mask_of({1, 1}))), 0.5, 1e-6);
}

TEST(DistillLayers, AttentionKlPerRealQueryRow) {
  // row 1: t = (1/2, 1/2), s = (3/4, 1/4): KL = 1/2 ln(4/3)        ≈ 0.143841
  // row 2: t = (1, 0),     s = (1/2, 1/2): KL = ln 2                ≈ 0.693147
  // row 3 is a padding query (would be large) and the third key is padding (probability 0).
  auto t = torch::tensor({0.5f, 0.5f, 0.f, 1.f, 0.f, 0.f, 0.f, 0.f, 1.f}).view({1, 1, 3, 3});
  auto s = torch::tensor({0.75f, 0.25f, 0.f, 0.5f, 0.5f, 0.f, 1.f, 0.f, 0.f}).view({1, 1, 3, 3});
  const double want = (0.5 * std::log(4.0 / 3.0) + std::log(2.0)) / 2;
  EXPECT_NEAR(val(distill::attention_kl_loss(s, t, mask_of({1, 1, 0}))), want, 1e-6);
  EXPECT_NEAR(val(distill::attention_kl_loss(t, t, mask_of({1, 1, 1}))), 0.0, 1e-7);
}

TEST(DistillLayers, PkdClsIsScaleInvariant) {
  // (3,4)/5 = (0.6, 0.8) vs (0,2)/2 = (0, 1): 0.36 + 0.04 = 0.4; (1,0) vs (5,0): 0. Mean 0.2.
  auto s = rows({{3, 4}, {1, 0}}), t = rows({{0, 2}, {5, 0}});
  EXPECT_NEAR(val(distill::pkd_cls_loss(s, t)), 0.2, 1e-6);
  EXPECT_NEAR(val(distill::pkd_cls_loss(s * 7, t * 0.5)), 0.2, 1e-6);
}

// Loading `yaml` written to dir/name fails with a message naming the file and containing `needle`.
void expect_recipe_error(const fs::path& dir, const std::string& name, const std::string& yaml, const std::string& needle) {
  auto p = write(dir, name, yaml);
  auto msg = error_of([&] { pipeline::load_recipe(p); });
  EXPECT_HAS(msg, p.string() + ":");
  EXPECT_HAS(msg, needle);
}

std::vector<LayerPair> map(LayerMapOptions o, int64_t m, int64_t n) { return distill::resolve_layer_map(o, m, n); }

TEST(DistillLayers, LayerMaps) {
  using V = std::vector<LayerPair>;
  EXPECT_EQ(map(LayerMapOptions(), 3, 6), (V{{1, 2}, {2, 4}, {3, 6}}));                  // TinyBERT g(m) = m·N/M
  EXPECT_EQ(map(LayerMapOptions(), 4, 6), (V{{1, 1}, {2, 3}, {3, 4}, {4, 6}}));
  auto skip = LayerMapOptions().with_strategy("skip");
  EXPECT_EQ(map(LayerMapOptions(skip).with_exclude_last(), 3, 6), (V{{1, 2}, {2, 4}}));  // PKD-skip
  EXPECT_EQ(map(LayerMapOptions(skip).with_every(1), 3, 6), (V{{1, 1}, {2, 2}, {3, 3}}));
  EXPECT_EQ(map(LayerMapOptions(skip).with_every(2).with_exclude_last(), 4, 6), (V{{1, 2}, {2, 4}, {3, 6}}));
  auto last = LayerMapOptions().with_strategy("last");
  EXPECT_EQ(map(LayerMapOptions(last).with_exclude_last(), 3, 6), (V{{1, 4}, {2, 5}}));  // PKD-last
  EXPECT_EQ(map(last, 3, 6), (V{{1, 4}, {2, 5}, {3, 6}}));
  EXPECT_EQ(map(LayerMapOptions().with_strategy("final"), 3, 6), (V{{3, 6}}));           // DistilBERT output
  auto ex = LayerMapOptions().with_strategy("explicit").with_teacher_layers({1, 3, 6});
  EXPECT_EQ(map(ex, 3, 6), (V{{1, 1}, {2, 3}, {3, 6}}));
  EXPECT_EQ(map(LayerMapOptions(ex).with_teacher_layers({5, 5}).with_exclude_last(), 3, 6), (V{{1, 5}, {2, 5}}));
}

TEST(DistillLayers, LayerMapErrorsNameTheField) {
  auto err = [](LayerMapOptions o, int64_t m, int64_t n) { return error_of([&] { distill::resolve_layer_map(o, m, n); }); };
  auto ex = LayerMapOptions().with_strategy("explicit");
  EXPECT_HAS(err(LayerMapOptions(ex).with_teacher_layers({1, 3}), 3, 6),
             "layer_map.teacher_layers lists 2 teacher layers but 3 student layers are mapped");
  EXPECT_HAS(err(LayerMapOptions(ex).with_teacher_layers({1, 7, 6}), 3, 6), "teacher layer 7 does not exist (layers are 1..6)");
  EXPECT_HAS(err(LayerMapOptions(ex).with_teacher_layers({0, 2, 6}), 3, 6), "teacher layer 0 does not exist");
  EXPECT_HAS(err(LayerMapOptions().with_strategy("skip").with_every(3), 3, 6),
             "layer_map.every is 3: student layer 3 would learn from teacher layer 9 but the teacher has 6");
  EXPECT_HAS(err(LayerMapOptions(), 7, 6), "at most the teacher's 6 layers, found 7");
  EXPECT_HAS(err(LayerMapOptions().with_every(2), 3, 6), "layer_map.every is only used by strategy 'skip'");
  EXPECT_HAS(err(LayerMapOptions().with_teacher_layers({1}), 1, 6), "only used by strategy 'explicit'");
  EXPECT_HAS(err(LayerMapOptions().with_strategy("final").with_exclude_last(), 3, 6), "leaves nothing");
  EXPECT_HAS(err(LayerMapOptions().with_strategy("every-other"), 3, 6), "'every-other'");
  EXPECT_HAS(error_of([] { DistillOptions().with_layer_map(LayerMapOptions().with_strategy("zigzag")).validate(); }),
             "'layer_map.strategy' is 'zigzag'");
  EXPECT_HAS(error_of([] { DistillOptions().with_layer_losses({{LayerLoss::HiddenMSE, -1}}).validate(); }),
             "weight of hidden_mse must be >= 0");
  EXPECT_HAS(error_of([] { DistillOptions().with_prediction_weight(0).validate(); }), "weight 0");
  EXPECT_HAS(error_of([] { distill::parse_layer_loss("hidden_l2"); }), "unknown layer loss 'hidden_l2'");
  EXPECT_EQ(distill::parse_layer_loss("attention_kl"), LayerLoss::AttentionKL);
}

TEST(DistillLayers, AttentionScoresAreThePreSoftmaxScores) {
  auto m = tiny_model(2, 3);
  m->eval();
  auto ids = torch::tensor({2, 5, 9, 3, 0, 0}, torch::kInt64).view({1, 6});
  auto mask = torch::tensor({1, 1, 1, 1, 0, 0}, torch::kInt64).view({1, 6});
  auto out = m->forward(ids, torch::zeros_like(ids), mask,
                        condense::nn::ForwardOptions().with_attentions().with_attention_scores());
  ASSERT_EQ(out.attention_scores.size(), 2u);
  for (int l = 0; l < 2; ++l) {
    auto masked = out.attention_scores[l].masked_fill(mask.view({1, 1, 1, 6}) == 0, -1e30);
    EXPECT_LT((torch::softmax(masked, -1) - out.attentions[l]).abs().max().item<double>(), 1e-6);
  }
}

TEST(DistillLayers, ProjectionsOnlyWhenWidthsDiffer) {
  EXPECT_TRUE(distill::FeatureProjection(32, 32, 3, true)->identity());
  EXPECT_EQ(distill::FeatureProjection(16, 32, 3, true)->parameters().size(), 2u);   // one W_h, one bias
  EXPECT_EQ(distill::FeatureProjection(16, 32, 3, false)->parameters().size(), 8u);  // embeddings + 3 layers
  auto p = distill::FeatureProjection(16, 32, 3, false);
  EXPECT_EQ(p->forward(torch::zeros({2, 5, 16}), 3).sizes(), (c10::IntArrayRef{2, 5, 32}));
}

// A synthetic dataset: `n` random sentences over a 64-token vocabulary.
train::EncodedDataset synthetic(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  train::EncodedDataset d;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t len = 3 + torch::randint(8, {1}).item<int64_t>();
    auto ids = torch::randint(5, 64, {len}, torch::kInt64);
    std::vector<int64_t> row{2};
    for (int64_t j = 0; j < len; ++j) row.push_back(ids[j].item<int64_t>());
    row.push_back(3);
    d.token_type_ids.emplace_back(row.size(), 0);
    d.input_ids.push_back(std::move(row));
    d.labels.push_back(i % 2);
    d.scores.push_back(0);
  }
  return d;
}

// TinyBERT's intermediate stage on a narrower student (16 wide vs 32): embedding, hidden-state
// and attention MSE through learned projections, no prediction loss. The loss must fall, the
// teacher must not change, and a run interrupted and resumed (projections in the training
// state) must end bit-identical to an uninterrupted one.
TEST(DistillLayers, TinyIntermediateDistillationLearnsAndResumes) {
  auto teacher = tiny_model(2, 1);
  auto teacher_before = train::predict_logits(teacher, synthetic(8, 5));
  auto data = synthetic(64, 4);
  const auto sopts = StudentOptions().with_layers(1).with_hidden_size(16).with_intermediate_size(32).with_init("scratch");
  auto o = DistillOptions()
               .with_prediction_weight(0)
               .with_layer_losses({{LayerLoss::EmbeddingMSE, 1}, {LayerLoss::HiddenMSE, 1}, {LayerLoss::AttentionMSE, 1}})
               .with_layer_map(LayerMapOptions().with_strategy("last"))
               .with_train(TrainOptions().with_epochs(4).with_batch_size(16).with_learning_rate(3e-3).with_seed(3));
  std::vector<double> losses;
  double prev = 0;
  auto logged = o;
  logged.train.on_progress = [&](const train::Progress& p) {
    const double sum = p.loss * static_cast<double>(p.step);
    losses.push_back(sum - prev);
    prev = sum;
  };
  auto a = distill::make_student(teacher, sopts, 2);
  auto r = distill::distill(a, teacher, data, logged);
  ASSERT_EQ(r.steps, 16);
  const double first = (losses[0] + losses[1] + losses[2] + losses[3]) / 4;
  const double last = (losses[12] + losses[13] + losses[14] + losses[15]) / 4;
  std::cerr << "intermediate loss " << first << " -> " << last << "\n";
  EXPECT_LT(last, 0.8 * first);
  EXPECT_TRUE(torch::equal(train::predict_logits(teacher, synthetic(8, 5)), teacher_before));

  auto dir = ct::scratch_dir("distill_layers_resume");
  auto b = distill::make_student(teacher, sopts, 2);
  auto interrupted = o;
  interrupted.train.with_state_dir(dir).with_save_every(2).with_stop_after(6);
  EXPECT_FALSE(distill::distill(b, teacher, data, interrupted).finished);
  auto c = distill::make_student(teacher, sopts, 99);  // different weights: the state must replace them
  auto resumed = o;
  resumed.train.with_state_dir(dir).with_save_every(2).with_resume();
  auto rr = distill::distill(c, teacher, data, resumed);
  EXPECT_EQ(rr.resumed_from, 6);
  for (const auto& p : a->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), c->named_parameters()[p.key()])) << p.key();
  }
}

// The teacher's outputs for layer terms, cached once per example (default), must train the student
// as running the teacher on every batch does (teacher_cache_mb 0): the same values up to float
// rounding, for every layer term, a narrower student (projections) and the logits of the
// prediction term. The size estimate is checked by hand on two examples.
TEST(DistillLayers, CachedTeacherLayersTrainAsPerBatchTeacher) {
  auto teacher = tiny_model(3, 1);
  auto data = synthetic(48, 6);
  struct Case {
    const char* name;
    StudentOptions student;
    std::vector<distill::LayerLossTerm> terms;
    const char* map;
    double prediction_weight;
  };
  const std::vector<Case> cases{
      {"tinybert", StudentOptions().with_layers(2).with_hidden_size(16).with_intermediate_size(32).with_init("scratch"),
       {{LayerLoss::EmbeddingMSE, 1}, {LayerLoss::HiddenMSE, 1}, {LayerLoss::AttentionMSE, 1}}, "uniform", 1.0},
      {"cosine-kl-pkd", StudentOptions().with_layers(1).with_init_layers({0}),
       {{LayerLoss::HiddenCosine, 1}, {LayerLoss::AttentionKL, 1}, {LayerLoss::PkdCls, 1}}, "last", 0.0}};
  for (const auto& c : cases) {
    auto o = DistillOptions()
                 .with_prediction_weight(c.prediction_weight)
                 .with_layer_losses(c.terms)
                 .with_layer_map(LayerMapOptions().with_strategy(c.map))
                 .with_train(TrainOptions().with_epochs(3).with_batch_size(8).with_learning_rate(3e-3).with_seed(3));
    const int64_t layers = c.student.layers;
    EXPECT_TRUE(distill::caches_teacher_layers(o, layers, teacher->config(), data)) << c.name;
    auto per_batch = o;
    per_batch.with_teacher_cache_mb(0);
    EXPECT_FALSE(distill::caches_teacher_layers(per_batch, layers, teacher->config(), data)) << c.name;
    auto a = distill::make_student(teacher, c.student, 2);
    auto b = distill::make_student(teacher, c.student, 2);
    torch::manual_seed(7);  // the projections are drawn from the global generator
    distill::distill(a, teacher, data, o);
    torch::manual_seed(7);
    distill::distill(b, teacher, data, per_batch);
    double worst = 0;
    for (const auto& p : a->named_parameters()) {
      worst = std::max(worst, (p.value() - b->named_parameters()[p.key()]).abs().max().item<double>());
    }
    std::cerr << c.name << ": largest parameter difference " << worst << "\n";
    EXPECT_LT(worst, 1e-4) << c.name;
    EXPECT_FALSE(torch::equal(a->named_parameters()["bert.encoder.layer.0.attention.self.query.weight"],
                              distill::make_student(teacher, c.student, 2)
                                  ->named_parameters()["bert.encoder.layer.0.attention.self.query.weight"]))
        << c.name << ": the student must have trained";
  }

  // Two examples of 3 and 5 tokens; a 1-layer student mapped to teacher layer 3 ("last"): hidden
  // slots 0 (embeddings) and 3 of 32 floats per token, layer 3's scores (2 heads) per token pair,
  // 2 logits per example: 4 · (2·2 + (3+5)·32·2 + (9+25)·2) = 2,336 bytes.
  train::EncodedDataset two;
  for (int64_t len : {3, 5}) {
    two.input_ids.emplace_back(len, 7);
    two.token_type_ids.emplace_back(len, 0);
    two.labels.push_back(0);
    two.scores.push_back(0);
  }
  auto o = DistillOptions()
               .with_layer_losses({{LayerLoss::EmbeddingMSE, 1}, {LayerLoss::HiddenMSE, 1}, {LayerLoss::AttentionMSE, 1}})
               .with_layer_map(LayerMapOptions().with_strategy("last"));
  EXPECT_EQ(distill::teacher_layer_cache_bytes(o, 1, teacher->config(), two), 2336);
  EXPECT_EQ(distill::teacher_layer_cache_bytes(DistillOptions(), 1, teacher->config(), two), 0);
  EXPECT_FALSE(distill::caches_teacher_layers(DistillOptions(o).with_cache_teacher(false), 1, teacher->config(), two));
  EXPECT_HAS(error_of([&] { DistillOptions().with_teacher_cache_mb(-1).validate(); }), "'teacher_cache_mb'");
}

TEST(DistillLayers, ShapeProblemsAreClearErrors) {
  auto teacher = tiny_model(2, 1);  // 2 heads
  auto data = synthetic(8, 4);
  auto student = distill::make_student(
      teacher, StudentOptions().with_layers(1).with_num_attention_heads(4).with_init("scratch"), 2);
  auto o = DistillOptions().with_layer_losses({{LayerLoss::AttentionMSE, 1}}).with_train(TrainOptions().with_epochs(1));
  EXPECT_HAS(error_of([&] { distill::distill(student, teacher, data, o); }),
             "attention_mse compares attention maps head by head, but the student has 4 heads and the teacher 2");
  auto s3 = distill::make_student(teacher, StudentOptions().with_layers(2).with_init("scratch"), 2);
  auto bad = DistillOptions(o).with_layer_losses({{LayerLoss::HiddenMSE, 1}});
  bad.layer_map.with_strategy("explicit").with_teacher_layers({2});
  EXPECT_HAS(error_of([&] { distill::distill(s3, teacher, data, bad); }),
             "layer_map.teacher_layers lists 1 teacher layers but 2 student layers are mapped");
}

TEST(DistillLayers, RecipeLayerKeys) {
  auto dir = ct::scratch_dir("distill_layer_recipe");
  auto r = pipeline::load_recipe(write(dir, "pkd.yaml",
                                       "distill:\n"
                                       "  prediction_weight: 0.5\n"
                                       "  shared_projection: false\n"
                                       "  layer_losses: [{loss: pkd_cls, weight: 100}, {loss: attention_kl}]\n"
                                       "  layer_map: {strategy: skip, every: 2, exclude_last: true}\n"));
  EXPECT_DOUBLE_EQ(r.distill.prediction_weight, 0.5);
  EXPECT_FALSE(r.distill.shared_projection);
  ASSERT_EQ(r.distill.layer_losses.size(), 2u);
  EXPECT_EQ(r.distill.layer_losses[0].loss, LayerLoss::PkdCls);
  EXPECT_DOUBLE_EQ(r.distill.layer_losses[0].weight, 100);
  EXPECT_EQ(r.distill.layer_losses[1].loss, LayerLoss::AttentionKL);
  EXPECT_DOUBLE_EQ(r.distill.layer_losses[1].weight, 1);
  EXPECT_EQ(r.distill.layer_map.strategy, "skip");
  EXPECT_EQ(r.distill.layer_map.every, 2);
  EXPECT_TRUE(r.distill.layer_map.exclude_last);
  auto check = [&](const std::string& name, const std::string& yaml, const std::string& needle) {
    expect_recipe_error(dir, name, yaml, needle);
  };
  check("bad_loss.yaml", "distill: {layer_losses: [{loss: hiden_mse}]}\n", "'distill.layer_losses[0].loss'");
  check("no_loss.yaml", "distill: {layer_losses: [{weight: 2}]}\n", "'distill.layer_losses[0]' needs a 'loss'");
  check("bad_key.yaml", "distill: {layer_map: {strategi: skip}}\n", "unknown key 'distill.layer_map.strategi'");
  check("not_list.yaml", "distill: {layer_losses: hidden_mse}\n", "must be a list");
  check("strategy.yaml", "distill: {layer_map: {strategy: zigzag}}\n", "'layer_map.strategy' is 'zigzag'");
}

TEST(DistillLayers, RecipeStagesOverrideTheRecipe) {
  auto dir = ct::scratch_dir("distill_stage_recipe");
  auto r = pipeline::load_recipe(write(dir, "two.yaml",
                                       "distill: {temperature: 3.0, layer_losses: [{loss: hidden_mse}]}\n"
                                       "train: {epochs: 5, learning_rate: 1.0e-4, max_length: 64}\n"
                                       "stages:\n"
                                       "  - {name: inter, distill: {prediction_weight: 0}, train: {epochs: 7}}\n"
                                       "  - distill: {layer_losses: [], alpha: 1.0}\n"
                                       "    train: {learning_rate: 2.0e-5}\n"));
  ASSERT_EQ(r.stages.size(), 2u);
  EXPECT_EQ(r.stages[0].name, "inter");
  EXPECT_EQ(r.stages[1].name, "stage2");
  EXPECT_DOUBLE_EQ(r.stages[0].distill.prediction_weight, 0);
  EXPECT_EQ(r.stages[0].distill.layer_losses.size(), 1u);  // inherited
  EXPECT_EQ(r.stages[0].distill.train.epochs, 7);
  EXPECT_DOUBLE_EQ(r.stages[0].distill.train.learning_rate, 1e-4);
  EXPECT_DOUBLE_EQ(r.stages[0].distill.temperature, 3.0);
  EXPECT_TRUE(r.stages[1].distill.layer_losses.empty());   // replaced
  EXPECT_DOUBLE_EQ(r.stages[1].distill.alpha, 1.0);
  EXPECT_EQ(r.stages[1].distill.train.epochs, 5);
  EXPECT_DOUBLE_EQ(r.stages[1].distill.train.learning_rate, 2e-5);
  EXPECT_EQ(r.max_length, 64);
  auto check = [&](const std::string& name, const std::string& yaml, const std::string& needle) {
    expect_recipe_error(dir, name, yaml, needle);
  };
  check("stage_len.yaml", "stages: [{train: {max_length: 32}}]\n", "unknown key 'stages[0].train.max_length'");
  check("stage_key.yaml", "stages: [{distil: {}}]\n", "unknown key 'stages[0].distil'");
  check("stage_zero.yaml", "stages: [{distill: {prediction_weight: 0}}]\n", "stages[0]: distill options give every loss term weight 0");
  check("stage_empty.yaml", "stages: []\n", "'stages' must be a non-empty list");
}

TEST(DistillLayers, StudentsOfOtherNormsStartFromTheTeacher) {
  auto teacher = tiny_model(2, 1);
  auto wn = distill::make_student(teacher, StudentOptions().with_layers(1).with_init_layers({1}).with_norm(
                                               condense::nn::NormKind::WeightNorm), 2);
  auto t = teacher->named_parameters();
  auto s = wn->named_parameters();
  const std::string tq = "bert.encoder.layer.1.attention.self.query.", sq = "bert.encoder.layer.0.attention.self.query.";
  EXPECT_TRUE(torch::equal(s[sq + "weight_v"], t[tq + "weight"]));
  EXPECT_TRUE(torch::allclose(s[sq + "weight_g"], t[tq + "weight"].norm(2, {1})));
  EXPECT_TRUE(torch::allclose(wn->layer(0)->attention->self->query->effective_weight(), t[tq + "weight"], 1e-5, 1e-6));
  auto bn = distill::make_student(teacher, StudentOptions().with_layers(1).with_init_layers({0}).with_norm(
                                               condense::nn::NormKind::BatchNorm), 2);
  EXPECT_TRUE(torch::equal(bn->named_parameters()["bert.encoder.layer.0.output.LayerNorm.weight"],
                           t["bert.encoder.layer.0.output.LayerNorm.weight"]));
  EXPECT_EQ(bn->named_buffers().size(), 6u);  // running mean and variance of 3 norms: embeddings, attention, output
}

// norm_fade: a NoNorm student starts as the teacher's LayerNorm function, hands over linearly
// during the first half of the steps, and is all NoNorm when distillation returns.
TEST(DistillLayers, NormFadeHandsLayerNormOverDuringTheFirstSteps) {
  auto teacher = tiny_model(2, 1);
  auto data = synthetic(64, 4);
  auto student = distill::make_student(
      teacher, StudentOptions().with_layers(2).with_norm(condense::nn::NormKind::NoNorm), 2);
  std::vector<std::shared_ptr<condense::nn::NormImpl>> norms;
  for (const auto& m : student->modules(false)) {
    if (auto n = std::dynamic_pointer_cast<condense::nn::NormImpl>(m)) norms.push_back(n);
  }
  ASSERT_EQ(norms.size(), 5u);  // embeddings, then attention and output of each layer
  auto o = DistillOptions().with_norm_fade(0.5).with_train(
      TrainOptions().with_epochs(2).with_batch_size(16).with_learning_rate(1e-3).with_seed(3));
  std::vector<double> shares;
  std::vector<torch::Tensor> first_logits;
  o.train.before_step = [&](int64_t step, int64_t total) {
    EXPECT_EQ(total, 8);
    for (const auto& n : norms) EXPECT_DOUBLE_EQ(n->layernorm_share(), norms[0]->layernorm_share());
    shares.push_back(norms[0]->layernorm_share());
    if (step == 0) {  // share 1: the student computes what the same model with LayerNorm computes
      torch::NoGradGuard g;
      auto b = train::make_batch(data, {0, 1, 2, 3});
      auto ln = distill::make_student(teacher, StudentOptions().with_layers(2), 2);
      ln->eval();
      student->eval();
      first_logits = {student->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits,
                      ln->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits};
      student->train();
    }
  };
  auto r = distill::distill(student, teacher, data, o);
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(shares, (std::vector<double>{1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0, 0.0}));
  ASSERT_EQ(first_logits.size(), 2u);
  EXPECT_TRUE(torch::allclose(first_logits[0], first_logits[1], 1e-4, 1e-5));
  for (const auto& n : norms) EXPECT_EQ(n->layernorm_share(), 0.0);
  EXPECT_HAS(error_of([] { DistillOptions().with_norm_fade(1.5).validate(); }), "'norm_fade' must be in [0,1]");
  // In a recipe with stages the fade belongs to the first stage unless a later one sets its own.
  auto dir = ct::scratch_dir("distill_norm_fade_recipe");
  auto rs = pipeline::load_recipe(write(dir, "fade.yaml",
                                        "distill: {norm_fade: 0.3}\nstages:\n  - {name: a}\n  - {name: b}\n"
                                        "  - {name: c, distill: {norm_fade: 0.2}}\n"));
  ASSERT_EQ(rs.stages.size(), 3u);
  EXPECT_DOUBLE_EQ(rs.stages[0].distill.norm_fade, 0.3);
  EXPECT_DOUBLE_EQ(rs.stages[1].distill.norm_fade, 0.0);
  EXPECT_DOUBLE_EQ(rs.stages[2].distill.norm_fade, 0.2);
}

TEST(DistillLayers, MultiTeacherSoftTargetsAreTheMeanDistribution) {
  // t1 = (ln 3, 0) -> (3/4, 1/4); t2 = (0, 0) -> (1/2, 1/2). Equal weights: (5/8, 3/8); weights 1:3: (9/16, 7/16).
  auto t1 = rows({{std::log(3.0f), 0}}), t2 = rows({{0, 0}});
  auto o = DistillOptions().with_temperature(1.0);
  auto p = torch::softmax(distill::combine_teacher_logits({t1, t2}, {}, o), 1);
  EXPECT_NEAR(p[0][0].item<double>(), 5.0 / 8.0, 1e-6);
  p = torch::softmax(distill::combine_teacher_logits({t1, t2}, {1, 3}, o), 1);
  EXPECT_NEAR(p[0][0].item<double>(), 9.0 / 16.0, 1e-6);
  // At T = 2 the mix is of the softened distributions: t1·2 softened by 2 is (3/4, 1/4) again.
  auto o2 = DistillOptions().with_temperature(2.0);
  p = torch::softmax(distill::combine_teacher_logits({t1 * 2, t2}, {}, o2) / 2.0, 1);
  EXPECT_NEAR(p[0][0].item<double>(), 5.0 / 8.0, 1e-6);
  // Logit MSE averages raw logits.
  auto mse = distill::combine_teacher_logits({rows({{2, 4}}), rows({{0, 0}})}, {}, DistillOptions().with_soft_loss(SoftLoss::MSE));
  EXPECT_TRUE(torch::allclose(mse, rows({{1, 2}})));
  EXPECT_HAS(error_of([&] { distill::combine_teacher_logits({t1, t2}, {1}, o); }), "1 teacher weights given for 2 teachers");
  EXPECT_HAS(error_of([&] { distill::combine_teacher_logits({t1, t2}, {0, 0}, o); }), "sum to 0");
  EXPECT_HAS(error_of([&] { distill::combine_teacher_logits({t1, rows({{0, 0, 0}})}, {}, o); }), "disagree");
}

TEST(DistillLayers, AugmentationReplacesWholeWordsByEmbeddingNeighbours) {
  std::vector<std::string> vocab{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "great", "bad",
                                 "awful", "movie", "film", "##s", ".", "2"};
  condense::text::WordPieceTokenizer tok(vocab, condense::text::TokenizerOptions());
  auto emb = torch::zeros({14, 3});
  auto set = [&](int64_t id, std::vector<float> v) { emb[id] = torch::tensor(v); };
  set(5, {1, 0, 0});         // good
  set(6, {0.9f, 0.1f, 0});   // great: good's nearest
  set(7, {-1, 0, 0});        // bad
  set(8, {-0.9f, -0.1f, 0}); // awful: bad's nearest
  set(9, {0, 0, 1});         // movie
  set(10, {0, 0.1f, 0.9f});  // film: movie's nearest
  data::Dataset d{data::Task::SST2, "x", {{"Good movies . 2 bad film ", std::nullopt, 1, 0}}};
  auto all = distill::augment_dataset(d, tok, emb, distill::AugmentOptions().with_per_example(2).with_replace_prob(1.0)
                                                     .with_neighbours(1));
  ASSERT_EQ(all.examples.size(), 3u);
  EXPECT_EQ(all.examples[0].text_a, "Good movies . 2 bad film ");  // the original first
  // Every single-piece word replaced by its nearest neighbour; "movies" (two pieces), "." and "2" kept.
  EXPECT_EQ(all.examples[1].text_a, "great movies . 2 awful movie ");
  EXPECT_EQ(all.examples[2].text_a, "great movies . 2 awful movie ");
  EXPECT_EQ(all.examples[2].label, 1);
  auto none = distill::augment_dataset(d, tok, emb, distill::AugmentOptions().with_per_example(3).with_replace_prob(0));
  for (const auto& e : none.examples) EXPECT_EQ(e.text_a, d.examples[0].text_a);
  auto o = distill::AugmentOptions().with_per_example(5).with_replace_prob(0.5).with_neighbours(3).with_seed(9);
  auto a = distill::augment_dataset(d, tok, emb, o), b = distill::augment_dataset(d, tok, emb, o);
  for (std::size_t i = 0; i < a.examples.size(); ++i) EXPECT_EQ(a.examples[i].text_a, b.examples[i].text_a);
  EXPECT_HAS(error_of([&] { distill::augment_dataset(d, tok, torch::zeros({3, 3}), o); }), "one row per vocabulary entry");
  EXPECT_HAS(error_of([&] { distill::augment_dataset(d, tok, emb, distill::AugmentOptions().with_replace_prob(2)); }),
             "'replace_prob'");
}

// Tang et al.'s transfer set: [MASK], word swaps from the text itself, n-grams of single sentences.
TEST(DistillLayers, TangAugmentationMasksSwapsAndSamplesNgrams) {
  data::Dataset d{data::Task::SST2, "x", {{"a b c d e f", std::nullopt, 1, 0}, {"g h i j", std::nullopt, 0, 0}}};
  // All masked: the variant is all [MASK]; identical variants are dropped, so one per example.
  auto masked = distill::tang_augment_dataset(
      d, distill::TangAugmentOptions().with_per_example(4).with_mask_prob(1).with_swap_prob(0).with_ngram_prob(0));
  ASSERT_EQ(masked.examples.size(), 4u);
  EXPECT_EQ(masked.examples[0].text_a, "a b c d e f");
  EXPECT_EQ(masked.examples[2].text_a, "[MASK] [MASK] [MASK] [MASK] [MASK] [MASK]");
  EXPECT_EQ(masked.examples[2].label, 1);
  EXPECT_EQ(masked.examples[3].text_a, "[MASK] [MASK] [MASK] [MASK]");
  // Only n-gram sampling: every variant is a contiguous run of 1..2 words of its sentence.
  auto ngrams = distill::tang_augment_dataset(
      d, distill::TangAugmentOptions().with_per_example(200).with_mask_prob(0).with_swap_prob(0).with_ngram_prob(1)
             .with_max_ngram(2).with_seed(3));
  std::set<std::string> seen;
  for (std::size_t i = 2; i < ngrams.examples.size(); ++i) {
    const auto& t = ngrams.examples[i].text_a;
    const auto& src = ngrams.examples[i].label == 1 ? d.examples[0].text_a : d.examples[1].text_a;
    EXPECT_NE(src.find(t), std::string::npos) << t;
    EXPECT_LE(std::count(t.begin(), t.end(), ' '), 1) << t;
    EXPECT_TRUE(seen.insert(t).second) << "duplicate " << t;
  }
  EXPECT_EQ(seen.size(), 6u + 5u + 4u + 3u);  // every 1- and 2-gram of both sentences, each once
  // Only swaps: words come from the set's own words; lengths stay.
  auto swaps = distill::tang_augment_dataset(
      d, distill::TangAugmentOptions().with_per_example(5).with_mask_prob(0).with_swap_prob(1).with_ngram_prob(0));
  for (const auto& e : swaps.examples) {
    for (char c : e.text_a) EXPECT_TRUE(c == ' ' || (c >= 'a' && c <= 'j')) << e.text_a;
  }
  // Pairs keep both sentences whole (no n-grams), deterministically for a seed.
  data::Dataset pairs{data::Task::MRPC, "x", {{"a b c d", std::string("e f g h"), 1, 0}}};
  auto o = distill::TangAugmentOptions().with_per_example(8).with_ngram_prob(1).with_seed(5);
  auto p1 = distill::tang_augment_dataset(pairs, o), p2 = distill::tang_augment_dataset(pairs, o);
  ASSERT_EQ(p1.examples.size(), p2.examples.size());
  for (std::size_t i = 0; i < p1.examples.size(); ++i) {
    EXPECT_EQ(p1.examples[i].text_a, p2.examples[i].text_a);
    EXPECT_EQ(std::count(p1.examples[i].text_a.begin(), p1.examples[i].text_a.end(), ' '), 3);
    EXPECT_EQ(std::count(p1.examples[i].text_b->begin(), p1.examples[i].text_b->end(), ' '), 3);
  }
  EXPECT_HAS(error_of([&] { distill::tang_augment_dataset(d, distill::TangAugmentOptions().with_mask_prob(0.7).with_swap_prob(0.5)); }),
             "'mask_prob' + 'swap_prob'");
  EXPECT_HAS(error_of([&] { distill::tang_augment_dataset(d, distill::TangAugmentOptions().with_max_ngram(0)); }),
             "'max_ngram'");
}

// Cross-architecture students: the teacher's word embeddings seed theirs, logit-MSE distillation
// from the cache pulls the student's logits toward the teacher's, and layer losses are refused.
TEST(DistillLayers, TextStudentsLearnFromTheTeachersLogits) {
  auto teacher = tiny_model(2, 1);
  auto data = synthetic(96, 4);
  for (const std::string arch : {"bilstm", "cnn"}) {
    auto s = distill::make_text_student(teacher, StudentOptions().with_arch(arch).with_hidden_size(16), false, 3);
    EXPECT_EQ(s->config().embedding_dim, 32);
    EXPECT_EQ(s->config().num_labels, 2);
    EXPECT_TRUE(torch::equal(s->embeddings->weight, teacher->bert->embeddings->word_embeddings->weight));
    // The targets: teacher logits scaled up so that they are far from a fresh student's.
    auto target = train::predict_logits(teacher, data) * 20;
    auto mse_before = val(distill::logit_mse_loss(train::predict_logits(s, data), target));
    auto o = DistillOptions().with_soft_loss(SoftLoss::MSE).with_alpha(1.0).with_train(
        TrainOptions().with_epochs(20).with_batch_size(16).with_learning_rate(1e-2).with_seed(3));
    distill::distill(s, teacher, data, o, target);
    auto mse_after = val(distill::logit_mse_loss(train::predict_logits(s, data), target));
    std::cerr << arch << " logit MSE " << mse_before << " -> " << mse_after << "\n";
    EXPECT_LT(mse_after, 0.3 * mse_before) << arch;
    auto layered = DistillOptions().with_layer_losses({{LayerLoss::HiddenMSE, 1}});
    EXPECT_HAS(error_of([&] { distill::distill(s, teacher, data, layered, target); }), "no transformer layers");
  }
  EXPECT_HAS(error_of([&] { distill::make_text_student(teacher, StudentOptions().with_arch("rnn"), false, 1); }),
             "'arch' is 'rnn'");
  EXPECT_HAS(error_of([&] {
               distill::make_text_student(teacher, StudentOptions().with_arch("cnn").with_embedding_dim(8), false, 1);
             }),
             "'embedding_dim' is 8");
  auto scratch = distill::make_text_student(
      teacher, StudentOptions().with_arch("cnn").with_embedding_dim(8).with_init("scratch"), true, 1);
  EXPECT_TRUE(scratch->config().pair);
}

// MobileBERT's progressive transfer on a bottleneck student: while layer 1 is fitted, layer 2,
// the embeddings and the head stay exactly as they were; afterwards every layer has moved and
// the layer-1 feature-map loss has fallen. Embeddings and head came from the teacher.
TEST(DistillLayers, ProgressiveTransferTrainsOneLayerAtATime) {
  auto teacher = tiny_model(2, 1);
  auto data = synthetic(64, 4);
  auto student = distill::make_student(
      teacher, StudentOptions().with_layers(2).with_bottleneck_size(16).with_num_ffn(2).with_hidden_act("relu"), 2);
  EXPECT_TRUE(torch::equal(student->bert->embeddings->word_embeddings->weight,
                           teacher->bert->embeddings->word_embeddings->weight));
  EXPECT_TRUE(torch::equal(student->classifier->weight, teacher->classifier->weight));
  auto snapshot = [](const torch::nn::Module& m) {
    std::map<std::string, torch::Tensor> out;
    for (const auto& p : m.named_parameters()) out[p.key()] = p.value().clone();
    return out;
  };
  const auto before = snapshot(*student);
  const auto terms = std::vector<distill::LayerLossTerm>{{LayerLoss::HiddenMSE, 1}, {LayerLoss::AttentionKL, 1}};
  auto layer1_loss = [&] {
    torch::NoGradGuard g;
    auto b = train::make_batch(data, {0, 1, 2, 3, 4, 5, 6, 7});
    const auto fwd = distill::forward_options_for(terms);
    auto s = student->forward(b.input_ids, b.token_type_ids, b.attention_mask, fwd);
    auto t = teacher->forward(b.input_ids, b.token_type_ids, b.attention_mask, fwd);
    return val(distill::hidden_mse_loss(s.hidden_states[1], t.hidden_states[1], b.attention_mask));
  };
  const double loss_before = layer1_loss();
  auto o = DistillOptions().with_prediction_weight(0).with_progressive().with_layer_losses(terms).with_train(
      TrainOptions().with_epochs(3).with_batch_size(16).with_learning_rate(5e-3).with_seed(3));
  std::map<std::string, torch::Tensor> after_layer1;
  int64_t steps = 0;
  o.train.on_progress = [&](const train::Progress& p) {
    if (++steps == p.total_steps) {  // the end of the first pass (layer 1)
      if (after_layer1.empty()) after_layer1 = snapshot(*student);
    }
  };
  auto r = distill::distill(student, teacher, data, o);
  EXPECT_TRUE(r.finished);
  ASSERT_FALSE(after_layer1.empty());
  for (const auto& [name, v] : before) {
    const bool layer1 = name.rfind("bert.encoder.layer.0.", 0) == 0;
    EXPECT_EQ(torch::equal(v, after_layer1.at(name)), !layer1) << name;
  }
  const auto after = snapshot(*student);
  EXPECT_FALSE(torch::equal(before.at("bert.encoder.layer.1.bottleneck.input_dense.weight"),
                            after.at("bert.encoder.layer.1.bottleneck.input_dense.weight")));
  EXPECT_TRUE(torch::equal(before.at("bert.encoder.layer.0.ffn.0.output.dense.weight"),
                           after_layer1.at("bert.encoder.layer.0.ffn.0.output.dense.weight")) == false);
  EXPECT_TRUE(torch::equal(after_layer1.at("bert.encoder.layer.0.ffn.0.output.dense.weight"),
                           after.at("bert.encoder.layer.0.ffn.0.output.dense.weight")));  // frozen in pass 2
  const double loss_after = layer1_loss();
  std::cerr << "layer-1 feature-map loss " << loss_before << " -> " << loss_after << "\n";
  EXPECT_LT(loss_after, 0.7 * loss_before);
  for (const auto& p : student->parameters()) EXPECT_TRUE(p.requires_grad());  // unfrozen again
  EXPECT_HAS(error_of([&] { DistillOptions().with_progressive().validate(); }), "'progressive'");
}

// BERT's masking: only real, non-special tokens; 80/10/10 among the chosen; same draws for the
// same generator.
TEST(DistillLayers, MaskTokensFollowsBert) {
  distill::MlmSetup m;
  m.mask_id = 4;
  m.vocab_size = 64;
  m.special_ids = {2, 3, 0};
  auto ids = torch::randint(5, 64, {64, 64}, torch::kInt64);
  ids.select(1, 0).fill_(2);
  ids.select(1, 40).fill_(3);
  auto mask = torch::ones_like(ids);
  mask.narrow(1, 50, 14).zero_();
  auto [x, y] = distill::mask_tokens(ids, mask, m, 0.5, at::make_generator<at::CPUGeneratorImpl>(7));
  auto chosen = y != -100;
  EXPECT_FALSE(chosen.select(1, 0).any().item<bool>());
  EXPECT_FALSE(chosen.select(1, 40).any().item<bool>());
  EXPECT_FALSE(chosen.narrow(1, 50, 14).any().item<bool>());
  EXPECT_TRUE(torch::equal(y.masked_select(chosen), ids.masked_select(chosen)));
  EXPECT_TRUE(torch::equal(x.masked_select(~chosen), ids.masked_select(~chosen)));
  const double n = chosen.sum().item<double>(), eligible = 64.0 * 48;
  EXPECT_NEAR(n / eligible, 0.5, 0.03);
  const double masked = ((x == 4) & chosen).sum().item<double>() / n;
  const double kept = ((x == ids) & chosen).sum().item<double>() / n;
  EXPECT_NEAR(masked, 0.8, 0.03);
  EXPECT_NEAR(kept, 0.1 + 0.1 / 64, 0.03);  // 10 % kept, plus random draws of the same id
  auto [x2, y2] = distill::mask_tokens(ids, mask, m, 0.5, at::make_generator<at::CPUGeneratorImpl>(7));
  EXPECT_TRUE(torch::equal(x, x2));
  EXPECT_TRUE(torch::equal(y, y2));
}

// DistilBERT's masked-LM terms on a tiny teacher with an MLM head: the student's head (started
// from the teacher's) and encoder learn, the loss falls, the teacher's head stays; without the
// setup, or without a teacher head for L_ce, distill() refuses.
TEST(DistillLayers, MaskedLmDistillationLearns) {
  auto teacher = tiny_model(2, 1);
  condense::nn::BertMlmHead t_head(teacher->config());
  {
    torch::NoGradGuard g;  // a peaked teacher distribution, far from a fresh head's near-uniform one
    t_head->bias.normal_(0, 2);
    t_head->transform->dense->weight.normal_(0, 0.5);
  }
  auto data = synthetic(64, 4);
  distill::MlmSetup m;
  m.teacher = t_head;
  m.student = condense::nn::BertMlmHead(teacher->config());
  m.mask_id = 4;
  m.vocab_size = 64;
  m.special_ids = {2, 3, 0};
  auto student = distill::make_student(teacher, StudentOptions().with_layers(1), 2);
  const auto head_before = m.student->bias.clone();
  const auto teacher_head_before = t_head->transform->dense->weight.clone();
  // L_ce alone: the teacher's masked-LM distribution is learnable; L_mlm on random tokens is not
  // (its floor is ln 59), so it is checked only for moving toward that floor.
  auto o = DistillOptions().with_prediction_weight(0).with_mlm_distill_weight(1).with_mask_prob(0.3)
               .with_train(TrainOptions().with_epochs(6).with_batch_size(16).with_learning_rate(3e-3).with_seed(3));
  std::vector<double> losses;
  double prev = 0;
  o.train.on_progress = [&](const train::Progress& p) {
    const double sum = p.loss * static_cast<double>(p.step);
    losses.push_back(sum - prev);
    prev = sum;
  };
  auto r = distill::distill(student, teacher, data, o, {}, &m);
  ASSERT_EQ(r.steps, 24);
  const double first = (losses[0] + losses[1] + losses[2] + losses[3]) / 4;
  const double last = (losses[20] + losses[21] + losses[22] + losses[23]) / 4;
  std::cerr << "masked-LM distillation loss " << first << " -> " << last << "\n";
  EXPECT_LT(last, 0.5 * first);
  losses.clear();
  prev = 0;
  auto with_labels = o;
  with_labels.mlm_weight = 1;
  with_labels.mlm_distill_weight = 0;
  distill::distill(student, teacher, data, with_labels, {}, &m);
  EXPECT_LT((losses[20] + losses[21] + losses[22] + losses[23]) / 4, (losses[0] + losses[1] + losses[2] + losses[3]) / 4);
  EXPECT_FALSE(torch::equal(head_before, m.student->bias));
  EXPECT_TRUE(torch::equal(teacher_head_before, t_head->transform->dense->weight));
  EXPECT_HAS(error_of([&] { distill::distill(student, teacher, data, o); }), "MLM head");
  distill::MlmSetup no_teacher = m;
  no_teacher.teacher = nullptr;
  EXPECT_HAS(error_of([&] { distill::distill(student, teacher, data, o, {}, &no_teacher); }), "'mlm_distill_weight'");
}

// A student with its own vocabulary: shared tokens keep the teacher's row, new ones take the mean
// of the teacher pieces they split into, "##" pieces prefer the teacher's "##" forms.
TEST(DistillLayers, TransferVocabularyMapsRows) {
  std::vector<std::string> tv{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "##ly", "##s", "s", "ly"};
  std::vector<std::string> sv{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "badly", "##s", "##goods"};
  condense::text::WordPieceTokenizer ttok(tv, condense::text::TokenizerOptions());
  condense::text::WordPieceTokenizer stok(sv, condense::text::TokenizerOptions());
  auto teacher = tiny_model(2, 1, static_cast<int64_t>(tv.size()));
  auto student = distill::make_student(teacher, StudentOptions().with_layers(1).with_vocab_size(9), 2);
  EXPECT_EQ(student->config().vocab_size, 9);
  distill::transfer_vocabulary(student, stok, teacher, ttok);
  const auto& s = student->bert->embeddings->word_embeddings->weight;
  const auto& t = teacher->bert->embeddings->word_embeddings->weight;
  EXPECT_TRUE(torch::equal(s[5], t[5]));                                    // good
  EXPECT_TRUE(torch::allclose(s[6], (t[6] + t[7]) / 2));                    // badly = bad ##ly
  EXPECT_TRUE(torch::equal(s[7], t[8]));                                    // ##s
  EXPECT_TRUE(torch::allclose(s[8], (t[5] + t[8]) / 2));                    // ##goods: good -> (no ##good), ##s
  EXPECT_TRUE(torch::equal(student->layer(0)->attention->self->query->weight, teacher->layer(0)->attention->self->query->weight));
}

TEST(DistillLayers, TemperatureAndAlphaSchedules) {
  auto s = rows({{0, 0}, {1, -1}}), t = rows({{std::log(3.0f), 0}, {0, 0}});
  auto b = labels_batch({0, 1});
  b.total_steps = 3;
  auto o = DistillOptions().with_temperature(4).with_temperature_end(1).with_alpha(1.0);
  const double want_t[] = {4.0, 2.5, 1.0};  // linear from the first step to the last
  for (int step = 0; step < 3; ++step) {
    b.step = step;
    EXPECT_DOUBLE_EQ(o.temperature_at(b), want_t[step]);
    EXPECT_NEAR(val(distill::distillation_loss(s, t, b, o)), val(distill::soft_target_loss(s, t, want_t[step])), 1e-6);
  }
  auto mix = DistillOptions().with_temperature(1).with_alpha(1.0).with_alpha_end(0.0);
  b.step = 1;  // alpha 0.5
  EXPECT_DOUBLE_EQ(mix.alpha_at(b), 0.5);
  EXPECT_NEAR(val(distill::distillation_loss(s, t, b, mix)),
              0.5 * val(distill::soft_target_loss(s, t, 1.0)) + 0.5 * val(train::task_loss(s, b)), 1e-6);
  b.step = 2;
  EXPECT_NEAR(val(distill::distillation_loss(s, t, b, mix)), val(train::task_loss(s, b)), 1e-6);
  EXPECT_TRUE(DistillOptions().with_alpha(0).with_alpha_end(0.5).uses_soft_targets());
  EXPECT_FALSE(DistillOptions().with_alpha(0).uses_soft_targets());
  EXPECT_HAS(error_of([] { DistillOptions().with_temperature_end(0).validate(); }), "'temperature_end' must be positive");
  EXPECT_HAS(error_of([] { DistillOptions().with_alpha_end(2).validate(); }), "'alpha_end' must be in [0,1]");
  auto dir = ct::scratch_dir("distill_schedule_recipe");
  auto r = pipeline::load_recipe(write(dir, "anneal.yaml", "distill: {temperature: 4, temperature_end: 1, alpha_end: 0.2}\n"));
  EXPECT_EQ(r.distill.temperature_end, 1.0);
  EXPECT_EQ(r.distill.alpha_end, 0.2);
  // Layer-loss weights follow their own schedules; terms without one keep their weight.
  auto terms = std::vector<distill::LayerLossTerm>{{LayerLoss::HiddenMSE, 2.0, 0.0}, {LayerLoss::AttentionMSE, 1.0, {}}};
  b.total_steps = 5;
  b.step = 1;
  auto at = distill::layer_terms_at(terms, b);
  EXPECT_DOUBLE_EQ(at[0].weight, 1.5);
  EXPECT_DOUBLE_EQ(at[1].weight, 1.0);
  b.step = 4;
  EXPECT_DOUBLE_EQ(distill::layer_terms_at(terms, b)[0].weight, 0.0);
  auto rl = pipeline::load_recipe(
      write(dir, "fade.yaml", "distill: {layer_losses: [{loss: hidden_mse, weight: 2, weight_end: 0}]}\n"));
  EXPECT_EQ(rl.distill.layer_losses.at(0).weight_end, 0.0);
}

}  // namespace layers

}  // namespace

// ---------------------------------------------------------------------------------------------
// DualTrain + SharedProj (Zhao et al. 2021)

namespace {
double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }
std::vector<std::string> dual_teacher_vocab() {
  return {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "##s", "movie", "great", "."};
}
std::vector<std::string> dual_student_vocab() {
  return {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "films", "mo", "##vie", "."};
}
}  // namespace

// Words keep their text whichever vocabulary segments them; a word the student cannot spell
// ("bad", "great") stays the teacher's; mix_prob 0 is the teacher's own encoding.
TEST(DualTrain, MixedVocabularyEncoding) {
  condense::text::WordPieceTokenizer ttok(dual_teacher_vocab(), condense::text::TokenizerOptions());
  condense::text::WordPieceTokenizer stok(dual_student_vocab(), condense::text::TokenizerOptions());
  data::Dataset d{data::Task::MRPC, "x", {{"good films movie", std::string("bad great ."), 1, 0}}};
  const int64_t V = ttok.vocab_size();
  auto none = distill::encode_mixed_vocab(d, ttok, stok, distill::MixedVocabOptions().with_mix_prob(0));
  auto plain = train::encode(d, ttok, 128);
  EXPECT_EQ(none.input_ids, plain.input_ids);
  EXPECT_EQ(none.token_type_ids, plain.token_type_ids);
  auto all = distill::encode_mixed_vocab(d, ttok, stok, distill::MixedVocabOptions().with_mix_prob(1));
  // [CLS] good(s) films(s) mo ##vie(s) [SEP] bad(t) great(t) .(s) [SEP]
  const std::vector<int64_t> want{2, V + 5, V + 6, V + 7, V + 8, 3, 6, 10, V + 9, 3};
  EXPECT_EQ(all.input_ids[0], want);
  EXPECT_EQ(all.token_type_ids[0], (std::vector<int64_t>{0, 0, 0, 0, 0, 0, 1, 1, 1, 1}));
  EXPECT_EQ(all.labels, plain.labels);
  // Truncation is longest-first, as the tokenizer's.
  auto cut = distill::encode_mixed_vocab(d, ttok, stok, distill::MixedVocabOptions().with_mix_prob(1).with_max_length(7));
  EXPECT_EQ(cut.input_ids[0], (std::vector<int64_t>{2, V + 5, V + 6, 3, 6, 10, 3}));
  // A draw per word: with 0.5 some words of a long text go each way, the same for the same seed.
  data::Dataset many{data::Task::SST2, "x", {{"good good good good good good good good good good", std::nullopt, 1, 0}}};
  auto half = distill::encode_mixed_vocab(many, ttok, stok, distill::MixedVocabOptions().with_mix_prob(0.5).with_seed(3));
  int students = 0;
  for (auto id : half.input_ids[0]) students += id >= V;
  EXPECT_GT(students, 0);
  EXPECT_LT(students, 10);
  EXPECT_EQ(half.input_ids, distill::encode_mixed_vocab(many, ttok, stok, distill::MixedVocabOptions().with_mix_prob(0.5).with_seed(3)).input_ids);
}

// The teacher reading student pieces: with the student's embedding rows equal to the teacher's
// for the same tokens and an identity projection, mixed input gives the teacher's own logits.
TEST(DualTrain, MixedLogitsEqualTeacherWhenEmbeddingsAgree) {
  auto teacher = tiny_model(2, 4);
  auto student = tiny_model(1, 5);
  teacher->eval();
  student->eval();
  {
    torch::NoGradGuard g;
    student->bert->embeddings->word_embeddings->weight.copy_(teacher->bert->embeddings->word_embeddings->weight);
  }
  distill::SharedProjection proj(32, 32, 64, 64, true, 1);
  EXPECT_TRUE(torch::equal(proj->hidden, torch::eye(32)));
  auto ids = torch::tensor({2, 7, 9, 11, 3}, torch::kInt64).unsqueeze(0);
  auto mixed = torch::tensor({2, 64 + 7, 9, 64 + 11, 3}, torch::kInt64).unsqueeze(0);
  auto types = torch::zeros_like(ids), mask = torch::ones_like(ids);
  torch::NoGradGuard g;
  auto want = teacher->forward(ids, types, mask).logits;
  auto got = distill::mixed_vocab_logits(teacher, student, proj, mixed, types, mask);
  EXPECT_LT(max_abs_diff(want, got), 1e-5);
  // Another student row changes the teacher's output: the gradient reaches the student's table.
  student->bert->embeddings->word_embeddings->weight[7].add_(torch::arange(32, torch::kFloat) / 8);
  EXPECT_GT(max_abs_diff(want, distill::mixed_vocab_logits(teacher, student, proj, mixed, types, mask)), 1e-4);
}

// SharedProjUp: a teacher whose layers are exactly P·W·Qᵀ of the student's costs nothing; moving
// one teacher entry by d costs d² / numel of that tensor (one pair). SharedProjDown likewise.
TEST(DualTrain, SharedProjectionLossHandValues) {
  auto s_cfg = tiny_config(1);
  s_cfg.hidden_size = 16;
  s_cfg.intermediate_size = 24;
  torch::manual_seed(6);
  BertClassifier student(s_cfg);
  auto teacher = tiny_model(1, 7);  // hidden 32, FFN 64
  distill::SharedProjection up(16, 32, 24, 64, true, 8);
  EXPECT_EQ(up->hidden.sizes(), (std::vector<int64_t>{32, 16}));
  // Orthonormal columns: PᵀP = I.
  EXPECT_LT(max_abs_diff(up->hidden.t().matmul(up->hidden), torch::eye(16)), 1e-5);
  const std::vector<distill::LayerPair> pairs{{1, 1}};
  {
    torch::NoGradGuard g;
    auto sp = student->named_parameters();
    for (auto& p : teacher->named_parameters()) {
      const std::string pre = "bert.encoder.layer.0.";
      if (p.key().rfind(pre, 0) != 0) continue;
      const std::string rest = p.key().substr(pre.size());
      const auto& po = rest.rfind("intermediate.dense.", 0) == 0 ? up->ffn : up->hidden;
      const auto& pi = rest == "output.dense.weight" ? up->ffn : up->hidden;
      auto w = sp[p.key()];
      p.value().copy_(w.dim() == 2 ? po.matmul(w).matmul(pi.t()) : po.matmul(w));
    }
  }
  EXPECT_LT(val(distill::shared_projection_loss(student, teacher, pairs, up)), 1e-10);
  auto twin = tiny_model(1, 12);
  {
    torch::NoGradGuard g;
    auto tp = teacher->named_parameters();
    for (auto& p : twin->named_parameters()) p.value().copy_(tp[p.key()]);
    teacher->layer(0)->attention->self->query->weight[3][5].add_(0.5);  // [32, 32]
  }
  // The mean over the layer's tensors (16: q, k, v, attention output, FFN in and out, two
  // LayerNorms, each weight and bias) of ‖Δ‖² / (‖W_t‖² + 1e-4 · entries).
  const double n = static_cast<double>(teacher->layer(0)->parameters().size());
  EXPECT_EQ(n, 16);
  const double q2 = n * (val(teacher->layer(0)->attention->self->query->weight.pow(2).sum()) + 1e-4 * 32 * 32);
  EXPECT_NEAR(val(distill::shared_projection_loss(student, teacher, pairs, up)), 0.25 / q2, 1e-7);
  // Down with same-width (identity) projections: ‖W_s − W_t‖² / ‖W_t‖², here the one entry.
  distill::SharedProjection down(32, 32, 64, 64, false, 9);
  EXPECT_NEAR(val(distill::shared_projection_loss(twin, teacher, pairs, down)), 0.25 / q2, 1e-7);
}

// A run: the student learns, the projection moves, the teacher's weights and their autograd flags
// come back unchanged; bad options name their field.
TEST(DualTrain, TrainsStudentAndKeepsTeacher) {
  condense::text::WordPieceTokenizer ttok(dual_teacher_vocab(), condense::text::TokenizerOptions());
  condense::text::WordPieceTokenizer stok(dual_student_vocab(), condense::text::TokenizerOptions());
  data::Dataset d{data::Task::SST2, "x", {}};
  const char* words[] = {"good", "bad", "film", "films", "movie", "great", "."};
  std::mt19937 rng(1);
  for (int i = 0; i < 48; ++i) {
    std::string t;
    for (int k = 0; k < 5; ++k) t += std::string(k ? " " : "") + words[rng() % 7];
    d.examples.push_back({t, std::nullopt, static_cast<int64_t>(t.find("good") != std::string::npos), 0});
  }
  auto teacher = tiny_model(2, 10, ttok.vocab_size());
  auto s_cfg = tiny_config(1, stok.vocab_size());
  s_cfg.hidden_size = 16;
  s_cfg.intermediate_size = 24;
  torch::manual_seed(11);
  BertClassifier student(s_cfg);
  auto enc_t = train::encode(d, ttok, 32);
  auto enc_s = train::encode(d, stok, 32);
  auto mixed = distill::encode_mixed_vocab(d, ttok, stok, distill::MixedVocabOptions().with_max_length(32));
  auto logits = train::predict_logits(teacher, enc_t);
  const auto teacher_q = teacher->layer(0)->attention->self->query->weight.clone();
  const auto emb_before = student->bert->embeddings->word_embeddings->weight.clone();
  std::vector<double> losses;
  auto o = DistillOptions().with_alpha(0.5).with_train(TrainOptions().with_epochs(3).with_batch_size(8).with_learning_rate(1e-3));
  o.train.on_progress = [&](const train::Progress& p) { losses.push_back(p.loss); };
  auto dual = distill::DualTrainOptions().with_shared_proj("up");
  auto r = distill::dual_train(student, teacher, enc_s, mixed, o, dual, logits);
  EXPECT_EQ(r.steps, 18);
  EXPECT_TRUE(torch::equal(teacher_q, teacher->layer(0)->attention->self->query->weight));
  for (auto& p : teacher->parameters()) EXPECT_TRUE(p.requires_grad());
  EXPECT_FALSE(torch::equal(emb_before, student->bert->embeddings->word_embeddings->weight));
  EXPECT_LT(losses.back(), losses.front());
  EXPECT_HAS(error_of([&] { distill::dual_train(student, teacher, enc_s, mixed, o, distill::DualTrainOptions().with_shared_proj("sideways"), logits); }),
             "'shared_proj'");
  auto short_mixed = mixed;
  short_mixed.input_ids.pop_back();
  short_mixed.token_type_ids.pop_back();
  EXPECT_HAS(error_of([&] { distill::dual_train(student, teacher, enc_s, short_mixed, o, dual, logits); }), "mixed-vocabulary");
  const auto dir = ct::scratch_dir("dualtrain_recipe");
  condense::write_file_atomic(dir / "r.yaml", "dualtrain: {mix_prob: 0.5, shared_proj: diagonal}\n");
  EXPECT_HAS(error_of([&] { pipeline::load_recipe(dir / "r.yaml"); }), "shared_proj");
  condense::write_file_atomic(dir / "k.yaml", "dualtrain: {mix_prob: 0.5, shared: up}\n");
  EXPECT_HAS(error_of([&] { pipeline::load_recipe(dir / "k.yaml"); }), "shared");
  condense::write_file_atomic(dir / "ok.yaml", "dualtrain: {mix_prob: 0.3, shared_proj: down, proj_weight: 2}\n");
  auto rec = pipeline::load_recipe(dir / "ok.yaml");
  ASSERT_TRUE(rec.dualtrain.has_value());
  EXPECT_EQ(rec.dualtrain->shared_proj, "down");
  EXPECT_DOUBLE_EQ(rec.dualtrain->mixed.mix_prob, 0.3);
  EXPECT_DOUBLE_EQ(rec.dualtrain->proj_weight, 2);
}
