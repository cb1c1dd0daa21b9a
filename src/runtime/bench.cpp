#include "condense/runtime/bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>

#include "condense/core/error.h"

namespace condense::runtime {

void BenchOptions::validate() const {
  CONDENSE_CHECK(!batch_sizes.empty(), "bench option 'batch_sizes' is empty");
  for (auto b : batch_sizes) CONDENSE_CHECK(b > 0, "bench option 'batch_sizes' has {}; sizes must be positive", b);
  CONDENSE_CHECK(seq_len > 0, "bench option 'seq_len' must be positive, found {}", seq_len);
  CONDENSE_CHECK(min_iterations > 0, "bench option 'min_iterations' must be positive, found {}", min_iterations);
}

int64_t peak_rss_bytes() {
  struct rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

std::vector<BenchRow> bench(nn::BertClassifier& model, const BenchOptions& o) {
  CONDENSE_CHECK(o.seq_len <= model->config().max_position_embeddings, "bench seq_len {} exceeds the model's {} positions",
                 o.seq_len, model->config().max_position_embeddings);
  model->eval();
  return bench([&](const torch::Tensor& ids, const torch::Tensor& types,
                   const torch::Tensor& mask) { return model->forward(ids, types, mask).logits; },
               model->config().vocab_size, o);
}

std::vector<BenchRow> bench(nn::TextNetClassifier& model, const BenchOptions& o) {
  model->eval();
  return bench([&](const torch::Tensor& ids, const torch::Tensor& types,
                   const torch::Tensor& mask) { return model->forward(ids, types, mask); },
               model->config().vocab_size, o);
}

std::vector<BenchRow> bench(const BenchForward& forward, int64_t vocab_size, const BenchOptions& o) {
  o.validate();
  CONDENSE_CHECK(vocab_size > 1000, "bench draws ids from [1000, vocab_size); the vocabulary has only {}", vocab_size);
  using Clock = std::chrono::steady_clock;
  torch::NoGradGuard guard;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  std::vector<BenchRow> rows;
  for (auto b : o.batch_sizes) {
    // Ids avoid the special tokens so every row is a full-length "sentence".
    auto ids = torch::randint(1000, vocab_size, {b, o.seq_len}, gen, torch::kInt64);
    auto types = torch::zeros_like(ids);
    auto mask = torch::ones_like(ids);
    for (int64_t i = 0; i < o.warmup; ++i) forward(ids, types, mask);
    std::vector<double> ms;
    const auto start = Clock::now();
    while (static_cast<int64_t>(ms.size()) < o.min_iterations ||
           std::chrono::duration<double>(Clock::now() - start).count() < o.min_seconds) {
      const auto t = Clock::now();
      (void)forward(ids, types, mask).sum().item<float>();
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
    }
    std::sort(ms.begin(), ms.end());
    auto pct = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<std::size_t>(q * static_cast<double>(ms.size())))]; };
    BenchRow r;
    r.batch = b;
    r.seq_len = o.seq_len;
    r.iterations = static_cast<int64_t>(ms.size());
    r.p50_ms = pct(0.5);
    r.p90_ms = pct(0.9);
    double sum = 0;
    for (double v : ms) sum += v;
    r.mean_ms = sum / static_cast<double>(ms.size());
    r.examples_per_second = static_cast<double>(b) * 1000.0 / r.mean_ms;
    r.threads = at::get_num_threads();
    r.peak_rss_bytes = peak_rss_bytes();
    rows.push_back(r);
  }
  return rows;
}

}  // namespace condense::runtime
