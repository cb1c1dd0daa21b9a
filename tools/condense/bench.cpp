// condense bench: latency (p50/p90) and throughput of a model at fixed shapes.
#include <memory>

#include "commands.h"
#include "common.h"
#include "condense/nn/checkpoint.h"
#include "condense/runtime/bench.h"

namespace condense::cli {

namespace {
struct BenchArgs {
  std::string model, format = "md";
  std::vector<int64_t> batches{1, 32};
  int64_t seq = 128, iterations = 5;
  double seconds = 2.0;
  int threads = 0;
};

void run(const BenchArgs& a) {
  set_threads(a.threads);
  CONDENSE_CHECK(a.format == "md" || a.format == "csv" || a.format == "json", "--format is '{}', expected md, csv or json",
                 a.format);
  const auto o = runtime::BenchOptions()
                     .with_batch_sizes(a.batches)
                     .with_seq_len(a.seq)
                     .with_min_iterations(a.iterations)
                     .with_min_seconds(a.seconds);
  auto rows = load_any_model(a.model).bench(o);  // a BERT folder or a BiLSTM/CNN student
  if (a.format == "json") {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : rows) {
      j.push_back({{"model", a.model}, {"batch", r.batch}, {"seq_len", r.seq_len}, {"iterations", r.iterations},
                   {"p50_ms", r.p50_ms}, {"p90_ms", r.p90_ms}, {"mean_ms", r.mean_ms},
                   {"examples_per_second", r.examples_per_second}, {"threads", r.threads},
                   {"peak_rss_bytes", r.peak_rss_bytes}, {"commit", build_commit()}});
    }
    fmt::print("{}\n", j.dump(2));
    return;
  }
  if (a.format == "csv") {
    fmt::print("model,batch,seq_len,iterations,p50_ms,p90_ms,examples_per_second,threads,peak_rss_bytes\n");
    for (const auto& r : rows) {
      fmt::print("{},{},{},{},{:.3f},{:.3f},{:.1f},{},{}\n", a.model, r.batch, r.seq_len, r.iterations, r.p50_ms, r.p90_ms,
                 r.examples_per_second, r.threads, r.peak_rss_bytes);
    }
    return;
  }
  fmt::print("| model | batch | seq | p50 ms | p90 ms | examples/s | threads | peak RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& r : rows) {
    fmt::print("| {} | {} | {} | {:.2f} | {:.2f} | {:.1f} | {} | {} |\n", a.model, r.batch, r.seq_len, r.p50_ms, r.p90_ms,
               r.examples_per_second, r.threads, human_bytes(static_cast<double>(r.peak_rss_bytes)));
  }
}
}  // namespace

void add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* sub = app.add_subcommand("bench", "Latency and throughput at batch 1 and 32, sequence 128");
  sub->add_option("--model", a->model, "Model folder")->required();
  sub->add_option("--batch", a->batches, "Batch sizes, e.g. 1,32")->delimiter(',');
  sub->add_option("--seq", a->seq, "Sequence length (default 128)");
  sub->add_option("--iterations", a->iterations, "Timed runs per shape, at least (default 5)");
  sub->add_option("--seconds", a->seconds, "Seconds per shape, at least (default 2)");
  sub->add_option("--format", a->format, "md, csv or json (default md)");
  add_threads_flag(*sub, a->threads);
  sub->callback([a] { run(*a); });
}

}  // namespace condense::cli
