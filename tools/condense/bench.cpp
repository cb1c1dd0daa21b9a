// condense bench: latency (p50/p90) and throughput of a model at fixed shapes, through the
// inference runtime (default) or eager LibTorch.
#include <memory>

#include "commands.h"
#include "common.h"
#include "condense/kernels/isa.h"
#include "condense/nn/checkpoint.h"
#include "condense/runtime/bench.h"
#include "condense/runtime/engine.h"

namespace condense::cli {

namespace {
struct BenchArgs {
  std::string model, format = "md", runtime = "engine", precision = "auto";
  std::vector<int64_t> batches{1, 32}, seqs{128};
  int64_t iterations = 5;
  double seconds = 2.0;
  int threads = 0;
  bool profile = false, fp32_attention = false;
};

struct Row {
  std::string runtime, precision, kernels;
  runtime::BenchRow r;
  double gops = 0;  // operations (2 per multiply-add) per second at the p50 latency, engine only
};

void run(const BenchArgs& a) {
  set_threads(a.threads);
  CONDENSE_CHECK(a.format == "md" || a.format == "csv" || a.format == "json", "--format is '{}', expected md, csv or json",
                 a.format);
  CONDENSE_CHECK(a.runtime == "engine" || a.runtime == "torch", "--runtime is '{}', expected engine or torch", a.runtime);
  const auto precision = runtime::parse_precision(a.precision);
  std::vector<Row> rows;
  auto base = runtime::BenchOptions().with_batch_sizes(a.batches).with_min_iterations(a.iterations).with_min_seconds(a.seconds);
  const bool textnet = nn::is_textnet_config(std::filesystem::path(a.model) / "config.json");
  if (a.runtime == "torch" || textnet) {
    CONDENSE_CHECK(a.runtime == "torch" || a.precision == "auto",
                   "{}: BiLSTM/CNN students run in LibTorch only (--runtime torch), without --precision", a.model);
    auto m = load_any_model(a.model);
    for (int64_t seq : a.seqs) {
      for (const auto& r : m.bench(runtime::BenchOptions(base).with_seq_len(seq))) rows.push_back({"torch", "as stored", "LibTorch", r, 0});
    }
  } else {
    for (int64_t seq : a.seqs) {
      // One engine per sequence length, so that a profile covers one shape's forward passes.
      auto engine = runtime::Engine::load(a.model, runtime::EngineOptions().with_precision(precision).with_profile(a.profile).with_fp32_attention(a.fp32_attention));
      auto forward = [&](const torch::Tensor& ids, const torch::Tensor& types, const torch::Tensor& mask) {
        return engine.forward(ids, types, mask);
      };
      for (const auto& r : runtime::bench(forward, engine.vocab_size(), runtime::BenchOptions(base).with_seq_len(seq))) {
        const double ops = engine.flops(std::vector<int64_t>(static_cast<std::size_t>(r.batch), r.seq_len));
        rows.push_back({"engine", engine.precision(), engine.kernels(), r, ops / (r.p50_ms * 1e-3) / 1e9});
      }
      if (a.profile) {
        // To stderr: the tables on stdout stay machine-readable.
        double total = 0;
        for (const auto& [stage, ms] : engine.profile()) total += ms;
        fmt::print(stderr, "profile, seq {} (mean per forward pass over all batch sizes, with warm-up):\n", seq);
        for (const auto& [stage, ms] : engine.profile()) {
          fmt::print(stderr, "  {:<30} {:9.3f} ms {:5.1f}%\n", stage, ms, total > 0 ? 100 * ms / total : 0.0);
        }
      }
    }
  }
  if (a.format == "json") {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& [rt, prec, kern, r, gops] : rows) {
      j.push_back({{"model", a.model}, {"runtime", rt}, {"precision", prec}, {"kernels", kern},
                   {"isa", kernels::to_string(kernels::active_isa())}, {"batch", r.batch}, {"seq_len", r.seq_len},
                   {"iterations", r.iterations}, {"p50_ms", r.p50_ms}, {"p90_ms", r.p90_ms}, {"mean_ms", r.mean_ms},
                   {"examples_per_second", r.examples_per_second}, {"gop_per_s", gops}, {"threads", r.threads},
                   {"peak_rss_bytes", r.peak_rss_bytes}, {"commit", build_commit()}});
    }
    fmt::print("{}\n", j.dump(2));
    return;
  }
  if (a.format == "csv") {
    fmt::print("model,runtime,precision,kernels,batch,seq_len,iterations,p50_ms,p90_ms,examples_per_second,gop_per_s,threads,peak_rss_bytes\n");
    for (const auto& [rt, prec, kern, r, gops] : rows) {
      fmt::print("{},{},\"{}\",\"{}\",{},{},{},{:.3f},{:.3f},{:.1f},{:.1f},{},{}\n", a.model, rt, prec, kern, r.batch, r.seq_len,
                 r.iterations, r.p50_ms, r.p90_ms, r.examples_per_second, gops, r.threads, r.peak_rss_bytes);
    }
    return;
  }
  fmt::print("| model | runtime | precision | batch | seq | p50 ms | p90 ms | examples/s | GOP/s | threads | peak RSS |\n"
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& [rt, prec, kern, r, gops] : rows) {
    fmt::print("| {} | {} | {} | {} | {} | {:.2f} | {:.2f} | {:.1f} | {} | {} | {} |\n", a.model, rt, prec, r.batch, r.seq_len,
               r.p50_ms, r.p90_ms, r.examples_per_second, gops > 0 ? fmt::format("{:.0f}", gops) : "", r.threads,
               human_bytes(static_cast<double>(r.peak_rss_bytes)));
  }
  fmt::print("\nkernels: {}\n", rows.empty() ? "" : rows.front().kernels);
}
}  // namespace

void add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* sub = app.add_subcommand("bench", "Latency and throughput at batch 1 and 32, sequence 128");
  sub->add_option("--model", a->model, "Model folder")->required();
  sub->add_option("--runtime", a->runtime, "engine (the inference runtime, default) or torch (eager LibTorch)");
  sub->add_option("--precision", a->precision, "Engine products: auto (as stored, default), fp32, bf16 or int8");
  sub->add_option("--batch", a->batches, "Batch sizes, e.g. 1,32")->delimiter(',');
  sub->add_option("--seq", a->seqs, "Sequence lengths, e.g. 32,128,512 (default 128)")->delimiter(',');
  sub->add_option("--iterations", a->iterations, "Timed runs per shape, at least (default 5)");
  sub->add_option("--seconds", a->seconds, "Seconds per shape, at least (default 2)");
  sub->add_option("--format", a->format, "md, csv or json (default md)");
  sub->add_flag("--fp32-attention", a->fp32_attention, "Engine: attention in fp32 even where the products are bf16 or int8");
  sub->add_flag("--profile", a->profile, "Engine: time each stage (to stderr); use with one batch size");
  add_threads_flag(*sub, a->threads);
  sub->callback([a] { run(*a); });
}

}  // namespace condense::cli
