#pragma once
/// \file
/// Whole-model latency and throughput: p50/p90 per forward pass at fixed batch and sequence
/// length, examples per second, peak resident memory, thread count.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "condense/nn/bert.h"
#include "condense/nn/textnet.h"

namespace condense::runtime {

/// What to measure. Defaults: batch 1 and 32 at sequence length 128.
struct BenchOptions {
  std::vector<int64_t> batch_sizes{1, 32};
  int64_t seq_len = 128;
  int64_t warmup = 2;          ///< untimed runs per shape
  int64_t min_iterations = 5;  ///< timed runs per shape, at least
  double min_seconds = 2.0;    ///< and at least this long per shape
  uint64_t seed = 0;           ///< for the random input ids

  BenchOptions& with_batch_sizes(std::vector<int64_t> v) { batch_sizes = std::move(v); return *this; }
  BenchOptions& with_seq_len(int64_t v) { seq_len = v; return *this; }
  BenchOptions& with_min_iterations(int64_t v) { min_iterations = v; return *this; }
  BenchOptions& with_min_seconds(double v) { min_seconds = v; return *this; }
  void validate() const;
};

/// One measured shape.
struct BenchRow {
  int64_t batch = 0, seq_len = 0, iterations = 0;
  double p50_ms = 0, p90_ms = 0, mean_ms = 0;
  double examples_per_second = 0;  ///< batch / mean latency
  int64_t threads = 0;
  int64_t peak_rss_bytes = 0;      ///< process peak resident set after the runs
};

/// Runs the model in eval mode without gradients on random ids of each shape.
std::vector<BenchRow> bench(nn::BertClassifier& model, const BenchOptions& options);
std::vector<BenchRow> bench(nn::TextNetClassifier& model, const BenchOptions& options);

/// The measurement itself, for any model: `forward(ids, token_types, mask)` returns its logits;
/// ids are drawn from [1000, vocab_size) so that no row holds special tokens.
using BenchForward = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&)>;
std::vector<BenchRow> bench(const BenchForward& forward, int64_t vocab_size, const BenchOptions& options);

/// Process peak resident memory in bytes (getrusage).
int64_t peak_rss_bytes();

}  // namespace condense::runtime
