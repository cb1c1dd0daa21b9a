#pragma once
/// \file
/// The metrics GLUE reports (Wang et al., ICLR 2019, Table 1), computed the way the reference
/// implementations do — scikit-learn for accuracy/F1/MCC and SciPy for the correlations — so the
/// numbers can be compared with published results and with the Python tooling.
///
/// Every function throws condense::Error when its inputs are empty or differ in size.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "condense/data/glue.h"

namespace condense::eval {

/// Fraction of positions where pred == gold.
double accuracy(const std::vector<int64_t>& pred, const std::vector<int64_t>& gold);

/// F1 of the positive class 1, as sklearn.metrics.f1_score(gold, pred) (average="binary"):
/// 2·TP / (2·TP + FP + FN). When there are no positives in either vector the score is 0, as
/// sklearn's default zero_division gives.
double f1_binary(const std::vector<int64_t>& pred, const std::vector<int64_t>& gold);

/// Matthews correlation coefficient (Matthews 1975, "Comparison of the predicted and observed
/// secondary structure of T4 phage lysozyme"), the CoLA metric because it stays informative on
/// CoLA's unbalanced labels. Computed with sklearn's multiclass form (Gorodkin 2004), which for
/// two classes equals (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)); any label values are
/// allowed. Returns 0 when a denominator factor is 0 (e.g. a constant prediction), as sklearn.
double matthews_corrcoef(const std::vector<int64_t>& pred, const std::vector<int64_t>& gold);

/// Pearson product-moment correlation, as scipy.stats.pearsonr's statistic. Returns 0 when
/// either input is constant: SciPy returns NaN there, but a constant predictor carries no
/// correlation and a NaN would poison checkpoint selection.
double pearson(const std::vector<double>& x, const std::vector<double>& y);

/// Spearman rank correlation, as scipy.stats.spearmanr: Pearson correlation of the ranks, with
/// tied values given the average of their ranks (scipy.stats.rankdata method="average").
/// Returns 0 when either input is constant (SciPy: NaN), like pearson().
double spearman(const std::vector<double>& x, const std::vector<double>& y);

/// All metrics GLUE reports for the task, keyed "accuracy", "f1", "mcc", "pearson",
/// "spearman": SST-2/RTE/QNLI {accuracy}; MRPC {accuracy, f1}; CoLA {mcc}; STS-B {pearson,
/// spearman}; plus "main" = the value of task_info(task).main_metric.
///
/// Classification tasks read pred_labels (pred_scores is ignored and may be empty); STS-B reads
/// pred_scores against Example::score (pred_labels ignored). The used predictions must have one
/// entry per gold example, and gold.task must equal task; otherwise an Error.
std::map<std::string, double> glue_metrics(condense::data::Task task,
                                           const std::vector<int64_t>& pred_labels,
                                           const std::vector<double>& pred_scores,
                                           const condense::data::Dataset& gold);

}  // namespace condense::eval
