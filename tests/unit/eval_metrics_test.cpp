// GLUE metrics: hand-derived small cases, degenerate inputs, and values cross-checked against
// scikit-learn 1.9.1 / SciPy 1.17.1 (computed once with
// `$HOME/.cache/condense/venv/bin/python` and pasted here as constants).
#include "condense/eval/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "condense/core/error.h"
#include "condense/data/glue.h"
#include "test_util.h"

namespace {

using condense::Error;
using condense::data::Dataset;
using condense::data::Task;
namespace ev = condense::eval;
namespace fs = std::filesystem;

constexpr double kTol = 1e-12;

// pred / gold of the small hand-worked case:
//   pred 1 0 1 1 0
//   gold 1 1 1 0 0
// TP = 2 (positions 0, 2), TN = 1 (4), FP = 1 (3), FN = 1 (1).
const std::vector<int64_t> kPred5 = {1, 0, 1, 1, 0};
const std::vector<int64_t> kGold5 = {1, 1, 1, 0, 0};

// 30-example case cross-checked with sklearn.
const std::vector<int64_t> kGold30 = {1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1,
                                      0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1};
const std::vector<int64_t> kPred30 = {1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1,
                                      1, 1, 0, 0, 1, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1};

// 20 scores with ties in both vectors (x: 3.2 three times, 1.5, 2.0, 5.0 twice), cross-checked
// with scipy.
const std::vector<double> kX20 = {3.2, 1.5, 4.75, 2.0, 0.0, 5.0, 3.2, 2.25, 4.0, 1.5,
                                  3.8, 0.6, 2.0,  4.4, 3.2, 1.0, 2.8, 5.0,  0.25, 3.6};
const std::vector<double> kY20 = {2.9, 1.0, 4.2, 2.6, 0.4, 4.8, 3.5, 2.0, 3.1, 1.9,
                                  4.0, 1.2, 1.6, 4.4, 2.5, 0.8, 3.0, 4.6, 0.5, 3.3};

TEST(Metrics, AccuracyHandComputed) {
  // 3 of 5 positions agree (0, 2, 4) -> 3/5.
  EXPECT_NEAR(ev::accuracy(kPred5, kGold5), 0.6, kTol);
  EXPECT_EQ(ev::accuracy({7}, {7}), 1.0);
  EXPECT_EQ(ev::accuracy({0, 1}, {1, 0}), 0.0);
}

TEST(Metrics, F1HandComputed) {
  // P = TP/(TP+FP) = 2/3, R = TP/(TP+FN) = 2/3, F1 = 2PR/(P+R) = 2/3 = 2·2/(2·2+1+1).
  EXPECT_NEAR(ev::f1_binary(kPred5, kGold5), 2.0 / 3.0, kTol);
  // Only class 1 is positive. pred 1 1 1 0, gold 1 0 0 0: TP 1, FP 2, FN 0 -> 2/(2+2) = 0.5,
  // whereas class 0's F1 would be 2·1/(2·1+0+2) = 0.5 too — so also check the swapped labelling:
  // pred 0 0 0 1, gold 0 1 1 1: TP 1 (pos 3), FP 0, FN 2 -> 2/(2+0+2) = 0.5; and
  // pred 1 1 0 0, gold 1 0 0 0: TP 1, FP 1, FN 0 -> 2/3 (class 0 would give 2·2/(4+1+0) = 0.8).
  EXPECT_NEAR(ev::f1_binary({1, 1, 1, 0}, {1, 0, 0, 0}), 0.5, kTol);
  EXPECT_NEAR(ev::f1_binary({0, 0, 0, 1}, {0, 1, 1, 1}), 0.5, kTol);
  EXPECT_NEAR(ev::f1_binary({1, 1, 0, 0}, {1, 0, 0, 0}), 2.0 / 3.0, kTol);
  // Any label other than 1 is negative (sklearn pos_label=1 with labels {0, 1}).
  EXPECT_NEAR(ev::f1_binary({1, 0, 0}, {1, 1, 0}), 2.0 / 3.0, kTol);  // TP 1, FN 1 -> 2/3
}

TEST(Metrics, F1Degenerate) {
  // No positive anywhere: precision and recall are 0/0; sklearn's zero_division gives 0.
  EXPECT_EQ(ev::f1_binary({0, 0, 0}, {0, 0, 0}), 0.0);
  // Positives only in gold (all predicted negative): TP 0 -> 0.
  EXPECT_EQ(ev::f1_binary({0, 0}, {1, 0}), 0.0);
  EXPECT_EQ(ev::f1_binary({1, 1}, {1, 1}), 1.0);
}

TEST(Metrics, MatthewsHandComputed) {
  // (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2·1 − 1·1) / sqrt(3·3·2·2) = 1/6.
  EXPECT_NEAR(ev::matthews_corrcoef(kPred5, kGold5), 1.0 / 6.0, kTol);
  EXPECT_NEAR(ev::matthews_corrcoef({0, 1, 1, 0}, {0, 1, 1, 0}), 1.0, kTol);   // perfect
  EXPECT_NEAR(ev::matthews_corrcoef({1, 0, 0, 1}, {0, 1, 1, 0}), -1.0, kTol);  // inverted
  // MCC is symmetric in pred and gold.
  EXPECT_NEAR(ev::matthews_corrcoef(kGold5, kPred5), 1.0 / 6.0, kTol);
}

TEST(Metrics, MatthewsDegenerateIsZero) {
  // A constant prediction makes TP+FP or TN+FN zero: the formula is 0/0; sklearn returns 0.
  EXPECT_EQ(ev::matthews_corrcoef({1, 1, 1}, {0, 1, 1}), 0.0);
  EXPECT_EQ(ev::matthews_corrcoef({0, 0, 0, 0}, {0, 1, 0, 1}), 0.0);
  // Constant gold, even with perfect predictions.
  EXPECT_EQ(ev::matthews_corrcoef({1, 1}, {1, 1}), 0.0);
  EXPECT_EQ(ev::matthews_corrcoef({0}, {0}), 0.0);
}

TEST(Metrics, PearsonHandComputed) {
  // x = 1..5, y = 2 4 5 4 5: means 3 and 4; dx = -2 -1 0 1 2, dy = -2 0 1 0 1;
  // Σdxdy = 4+0+0+0+2 = 6, Σdx² = 10, Σdy² = 6 -> r = 6/sqrt(60) = 0.7745966692414834.
  const std::vector<double> x = {1, 2, 3, 4, 5}, y = {2, 4, 5, 4, 5};
  EXPECT_NEAR(ev::pearson(x, y), 6.0 / std::sqrt(60.0), kTol);
  EXPECT_NEAR(ev::pearson(x, y), 0.7745966692414835, kTol);  // scipy.stats.pearsonr
  EXPECT_NEAR(ev::pearson(x, x), 1.0, kTol);
  EXPECT_NEAR(ev::pearson(x, {10, 8, 6, 4, 2}), -1.0, kTol);
  // Invariant under affine maps with positive slope.
  EXPECT_NEAR(ev::pearson({3, 5, 7, 9, 11}, y), 6.0 / std::sqrt(60.0), kTol);
}

TEST(Metrics, SpearmanTiesAveraged) {
  // y = 2 4 5 4 5 ranks with ties averaged: 2 -> 1; the two 4s share ranks 2,3 -> 2.5; the two 5s
  // share 4,5 -> 4.5. Ranks(y) = 1 2.5 4.5 2.5 4.5 (mean 3), ranks(x) = 1..5.
  // dy = -2 -0.5 1.5 -0.5 1.5: Σdxdy = 4+0.5+0-0.5+3 = 7, Σdx² = 10, Σdy² = 9 -> 7/sqrt(90).
  const std::vector<double> x = {1, 2, 3, 4, 5}, y = {2, 4, 5, 4, 5};
  EXPECT_NEAR(ev::spearman(x, y), 7.0 / std::sqrt(90.0), kTol);
  EXPECT_NEAR(ev::spearman(x, y), 0.7378647873726218, kTol);  // scipy.stats.spearmanr
  // Monotone but nonlinear -> exactly 1 (Pearson would not be).
  EXPECT_NEAR(ev::spearman({1, 2, 3, 4}, {1, 8, 27, 64}), 1.0, kTol);
  EXPECT_LT(ev::pearson({1, 2, 3, 4}, {1, 8, 27, 64}), 1.0 - 1e-3);
}

TEST(Metrics, CorrelationOfConstantInputIsZero) {
  // Undefined (0/0); SciPy returns NaN, we return 0 (see metrics.h). 0.1 is not exactly
  // representable, so the mean of three 0.1s need not be 0.1: constancy is tested directly.
  EXPECT_EQ(ev::pearson({0.1, 0.1, 0.1}, {1, 2, 3}), 0.0);
  EXPECT_EQ(ev::pearson({1, 2, 3}, {0.1, 0.1, 0.1}), 0.0);
  EXPECT_EQ(ev::spearman({2, 2, 2}, {1, 2, 3}), 0.0);
  EXPECT_EQ(ev::pearson({4}, {5}), 0.0);
}

TEST(Metrics, MatchesSklearnAndScipy) {
  // sklearn.metrics.accuracy_score / f1_score / matthews_corrcoef (gold, pred)
  EXPECT_NEAR(ev::accuracy(kPred30, kGold30), 0.8, kTol);
  EXPECT_NEAR(ev::f1_binary(kPred30, kGold30), 0.8421052631578947, kTol);
  EXPECT_NEAR(ev::matthews_corrcoef(kPred30, kGold30), 0.569377990430622, kTol);
  // Multiclass MCC (Gorodkin's generalisation, as sklearn).
  const std::vector<int64_t> g3 = {0, 1, 2, 2, 1, 0, 0, 2, 1, 1, 2, 0};
  const std::vector<int64_t> p3 = {0, 2, 2, 2, 1, 0, 1, 2, 0, 1, 2, 0};
  EXPECT_NEAR(ev::matthews_corrcoef(p3, g3), 0.6316139407998892, kTol);
  // scipy.stats.pearsonr / spearmanr (x, y)
  EXPECT_NEAR(ev::pearson(kX20, kY20), 0.9632160984600505, kTol);
  EXPECT_NEAR(ev::spearman(kX20, kY20), 0.958917774389974, kTol);
}

TEST(Metrics, SizeMismatchAndEmptyInputAreErrors) {
  EXPECT_THROW(ev::accuracy({}, {}), Error);
  EXPECT_THROW(ev::accuracy({1, 0}, {1}), Error);
  EXPECT_THROW(ev::f1_binary({}, {}), Error);
  EXPECT_THROW(ev::f1_binary({1}, {1, 0}), Error);
  EXPECT_THROW(ev::matthews_corrcoef({}, {}), Error);
  EXPECT_THROW(ev::matthews_corrcoef({1, 0, 1}, {1, 0}), Error);
  EXPECT_THROW(ev::pearson({}, {}), Error);
  EXPECT_THROW(ev::pearson({1, 2}, {1, 2, 3}), Error);
  EXPECT_THROW(ev::spearman({}, {}), Error);
  EXPECT_THROW(ev::spearman({1, 2, 3}, {1, 2}), Error);
  EXPECT_THROW(ev::pearson({1, NAN}, {1, 2}), Error);
  try {
    ev::accuracy({1, 0, 1}, {1});
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "accuracy: size mismatch (3 predictions vs 1 references)");
  }
}

Dataset labelled(Task task, const std::vector<int64_t>& labels) {
  Dataset d{task, "fixture.tsv", {}};
  for (int64_t l : labels) d.examples.push_back({"a", std::string("b"), l, 0});
  return d;
}

TEST(Metrics, GlueMetricsKeysPerTask) {
  using Keys = std::vector<std::string>;
  auto keys = [](const std::map<std::string, double>& m) {
    Keys k;
    for (const auto& [name, v] : m) k.push_back(name);
    return k;
  };
  for (Task t : {Task::SST2, Task::RTE, Task::QNLI}) {
    auto m = ev::glue_metrics(t, kPred5, {}, labelled(t, kGold5));
    EXPECT_EQ(keys(m), (Keys{"accuracy", "main"}));
    EXPECT_NEAR(m["main"], 0.6, kTol);
  }
  auto mrpc = ev::glue_metrics(Task::MRPC, kPred5, {}, labelled(Task::MRPC, kGold5));
  EXPECT_EQ(keys(mrpc), (Keys{"accuracy", "f1", "main"}));
  EXPECT_NEAR(mrpc["accuracy"], 0.6, kTol);
  EXPECT_NEAR(mrpc["f1"], 2.0 / 3.0, kTol);
  EXPECT_EQ(mrpc["main"], mrpc["f1"]);
  auto cola = ev::glue_metrics(Task::CoLA, kPred5, {}, labelled(Task::CoLA, kGold5));
  EXPECT_EQ(keys(cola), (Keys{"main", "mcc"}));
  EXPECT_NEAR(cola["mcc"], 1.0 / 6.0, kTol);
  EXPECT_EQ(cola["main"], cola["mcc"]);

  Dataset stsb{Task::STSB, "fixture.tsv", {}};
  for (double s : {2.0, 4.0, 5.0, 4.0, 5.0}) stsb.examples.push_back({"a", std::string("b"), 0, float(s)});
  auto m = ev::glue_metrics(Task::STSB, {}, {1, 2, 3, 4, 5}, stsb);
  EXPECT_EQ(keys(m), (Keys{"main", "pearson", "spearman"}));
  EXPECT_NEAR(m["pearson"], 6.0 / std::sqrt(60.0), kTol);
  EXPECT_NEAR(m["spearman"], 7.0 / std::sqrt(90.0), kTol);
  EXPECT_EQ(m["main"], m["pearson"]);
}

TEST(Metrics, GlueMetricsChecksInputs) {
  EXPECT_THROW(ev::glue_metrics(Task::SST2, {1, 0}, {}, labelled(Task::SST2, kGold5)), Error);
  EXPECT_THROW(ev::glue_metrics(Task::SST2, kPred5, {}, labelled(Task::CoLA, kGold5)), Error);
  EXPECT_THROW(ev::glue_metrics(Task::SST2, {}, {}, labelled(Task::SST2, {})), Error);
  Dataset stsb{Task::STSB, "fixture.tsv", {{"a", std::string("b"), 0, 1.0f}, {"c", std::string("d"), 0, 2.0f}}};
  // STS-B reads scores, not labels.
  EXPECT_THROW(ev::glue_metrics(Task::STSB, {1, 0}, {}, stsb), Error);
  EXPECT_NO_THROW(ev::glue_metrics(Task::STSB, {}, {0.5, 1.5}, stsb));
}

// Whole real dev sets with deterministic predictions, against the Python reference on the same
// predictions (see the comment in each block for how the Python side built them).
TEST(Metrics, RealDevSetsMatchReference) {
  namespace ct = condense::testing;
  bool any = false;
  if (fs::path dir = ct::glue_dir("CoLA"); !dir.empty() && fs::exists(dir / "dev.tsv")) {
    any = true;
    // pred = gold with every 4th example (i % 4 == 0) flipped; sklearn matthews_corrcoef.
    Dataset gold = condense::data::read_glue_split(Task::CoLA, dir, "dev");
    std::vector<int64_t> pred;
    for (std::size_t i = 0; i < gold.examples.size(); ++i)
      pred.push_back(i % 4 == 0 ? 1 - gold.examples[i].label : gold.examples[i].label);
    EXPECT_NEAR(ev::glue_metrics(Task::CoLA, pred, {}, gold)["mcc"], 0.45855716539093977, kTol);
  }
  if (fs::path dir = ct::glue_dir("MRPC"); !dir.empty() && fs::exists(dir / "dev.tsv")) {
    any = true;
    // pred = gold with every 3rd example flipped; sklearn accuracy_score / f1_score.
    Dataset gold = condense::data::read_glue_split(Task::MRPC, dir, "dev");
    std::vector<int64_t> pred;
    for (std::size_t i = 0; i < gold.examples.size(); ++i)
      pred.push_back(i % 3 == 0 ? 1 - gold.examples[i].label : gold.examples[i].label);
    auto m = ev::glue_metrics(Task::MRPC, pred, {}, gold);
    EXPECT_NEAR(m["accuracy"], 0.6666666666666666, kTol);
    EXPECT_NEAR(m["f1"], 0.7354085603112841, kTol);
  }
  if (fs::path dir = ct::glue_dir("STS-B"); !dir.empty() && fs::exists(dir / "dev.tsv")) {
    any = true;
    // gold = float64(float32(score)) (Example::score is a float); pred = floor(gold), which has
    // only 6 distinct values, so spearman exercises heavy ties. scipy pearsonr / spearmanr.
    Dataset gold = condense::data::read_glue_split(Task::STSB, dir, "dev");
    std::vector<double> pred;
    for (const auto& ex : gold.examples) pred.push_back(std::floor(static_cast<double>(ex.score)));
    auto m = ev::glue_metrics(Task::STSB, {}, pred, gold);
    EXPECT_NEAR(m["pearson"], 0.9804704812555057, kTol);
    EXPECT_NEAR(m["spearman"], 0.9806313248133829, kTol);
  }
  if (!any) GTEST_SKIP() << "no GLUE dev data present";
}

}  // namespace
