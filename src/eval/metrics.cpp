#include "condense/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "condense/core/error.h"

namespace condense::eval {

namespace {

template <typename A, typename B>
void check_sizes(const char* what, const std::vector<A>& a, const std::vector<B>& b) {
  CONDENSE_CHECK(!a.empty() && !b.empty(), "{}: empty input", what);
  CONDENSE_CHECK(a.size() == b.size(), "{}: size mismatch ({} predictions vs {} references)", what,
                 a.size(), b.size());
}

bool is_constant(const std::vector<double>& v) {
  return std::all_of(v.begin(), v.end(), [&](double x) { return x == v.front(); });
}

/// Pearson correlation of equally sized, non-empty vectors (sizes already checked).
double pearson_unchecked(const std::vector<double>& x, const std::vector<double>& y) {
  // Exactly-constant input is tested directly, as SciPy does: the mean of a constant vector
  // need not round to the constant, so "sum of squares == 0" would miss it.
  if (is_constant(x) || is_constant(y)) return 0.0;
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  // Two-pass (centre, then sum) for accuracy, as scipy.stats.pearsonr.
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double dx = x[i] - mx;
    const double dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx == 0 || syy == 0) return 0.0;
  const double r = sxy / (std::sqrt(sxx) * std::sqrt(syy));
  return std::clamp(r, -1.0, 1.0);  // |r| > 1 can only be rounding
}

/// 1-based ranks; a run of tied values gets the mean of the ranks it spans
/// (scipy.stats.rankdata method="average").
std::vector<double> average_ranks(const std::vector<double>& v) {
  std::vector<std::size_t> order(v.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> ranks(v.size());
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i + 1;
    while (j < order.size() && v[order[j]] == v[order[i]]) ++j;
    // Positions i..j-1 hold ranks i+1..j; their mean is (i+1+j)/2.
    const double rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (std::size_t k = i; k < j; ++k) ranks[order[k]] = rank;
    i = j;
  }
  return ranks;
}

void check_finite(const char* what, const std::vector<double>& v) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    CONDENSE_CHECK(std::isfinite(v[i]), "{}: value {} at position {} is not finite", what, v[i], i);
  }
}

}  // namespace

double accuracy(const std::vector<int64_t>& pred, const std::vector<int64_t>& gold) {
  check_sizes("accuracy", pred, gold);
  std::size_t correct = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) correct += pred[i] == gold[i] ? 1 : 0;
  return static_cast<double>(correct) / static_cast<double>(pred.size());
}

double f1_binary(const std::vector<int64_t>& pred, const std::vector<int64_t>& gold) {
  check_sizes("f1", pred, gold);
  std::size_t tp = 0, fp = 0, fn = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) {
    const bool p = pred[i] == 1;
    const bool g = gold[i] == 1;
    tp += p && g;
    fp += p && !g;
    fn += !p && g;
  }
  // F1 = 2PR/(P+R) = 2TP/(2TP+FP+FN); the second form is also defined when P or R is 0/0.
  const std::size_t denom = 2 * tp + fp + fn;
  if (denom == 0) return 0.0;  // no positives anywhere: sklearn's zero_division default
  return static_cast<double>(2 * tp) / static_cast<double>(denom);
}

double matthews_corrcoef(const std::vector<int64_t>& pred, const std::vector<int64_t>& gold) {
  check_sizes("matthews_corrcoef", pred, gold);
  // sklearn's form from the confusion matrix C over the union of labels: with t_k = row sums
  // (gold counts), p_k = column sums (predicted counts), c = trace, s = n:
  //   MCC = (c·s − Σ t_k p_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)).
  std::map<int64_t, std::pair<int64_t, int64_t>> counts;  // label -> (gold count, pred count)
  int64_t correct = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) {
    ++counts[gold[i]].first;
    ++counts[pred[i]].second;
    correct += pred[i] == gold[i] ? 1 : 0;
  }
  const auto s = static_cast<int64_t>(pred.size());
  int64_t tp_sum = 0, pp_sum = 0, tt_sum = 0;
  for (const auto& [label, c] : counts) {
    tp_sum += c.first * c.second;
    pp_sum += c.second * c.second;
    tt_sum += c.first * c.first;
  }
  // Exact integer covariances; only their product goes to floating point (it can exceed int64).
  const int64_t cov_ytyp = correct * s - tp_sum;
  const int64_t cov_ypyp = s * s - pp_sum;
  const int64_t cov_ytyt = s * s - tt_sum;
  if (cov_ypyp == 0 || cov_ytyt == 0) return 0.0;
  return static_cast<double>(cov_ytyp) /
         std::sqrt(static_cast<double>(cov_ytyt) * static_cast<double>(cov_ypyp));
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  check_sizes("pearson", x, y);
  check_finite("pearson", x);
  check_finite("pearson", y);
  return pearson_unchecked(x, y);
}

double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  check_sizes("spearman", x, y);
  check_finite("spearman", x);
  check_finite("spearman", y);
  return pearson_unchecked(average_ranks(x), average_ranks(y));
}

std::map<std::string, double> glue_metrics(condense::data::Task task,
                                           const std::vector<int64_t>& pred_labels,
                                           const std::vector<double>& pred_scores,
                                           const condense::data::Dataset& gold) {
  using condense::data::Task;
  const auto& info = condense::data::task_info(task);
  CONDENSE_CHECK(gold.task == task, "glue_metrics: gold data is task '{}', metrics asked for '{}'",
                 condense::data::task_info(gold.task).name, info.name);
  CONDENSE_CHECK(!gold.examples.empty(), "glue_metrics: {}: no gold examples", gold.source.string());

  std::map<std::string, double> m;
  if (info.regression) {
    std::vector<double> ref;
    ref.reserve(gold.examples.size());
    for (const auto& ex : gold.examples) ref.push_back(static_cast<double>(ex.score));
    check_sizes("glue_metrics (scores)", pred_scores, ref);
    m["pearson"] = pearson(pred_scores, ref);
    m["spearman"] = spearman(pred_scores, ref);
  } else {
    std::vector<int64_t> ref;
    ref.reserve(gold.examples.size());
    for (const auto& ex : gold.examples) ref.push_back(ex.label);
    check_sizes("glue_metrics (labels)", pred_labels, ref);
    switch (task) {
      case Task::CoLA:
        m["mcc"] = matthews_corrcoef(pred_labels, ref);
        break;
      case Task::MRPC:
        m["accuracy"] = accuracy(pred_labels, ref);
        m["f1"] = f1_binary(pred_labels, ref);
        break;
      default:
        m["accuracy"] = accuracy(pred_labels, ref);
        break;
    }
  }
  auto it = m.find(info.main_metric);
  CONDENSE_CHECK(it != m.end(), "glue_metrics: main metric '{}' of task '{}' was not computed",
                 info.main_metric, info.name);
  m["main"] = it->second;
  return m;
}

}  // namespace condense::eval
