// condense report: the side-by-side table of models (size, accuracy, latency, speedup).
#include <fstream>
#include <memory>

#include "commands.h"
#include "common.h"
#include "condense/core/file.h"
#include "condense/eval/metrics.h"
#include "condense/nn/checkpoint.h"
#include "condense/runtime/bench.h"
#include "condense/runtime/engine.h"

namespace condense::cli {

namespace {
struct ReportArgs {
  std::vector<std::string> models;  // name=folder
  TaskFlags task;
  std::string out;
  int threads = 0;
  double seconds = 2.0;
};

struct Entry {
  std::string name, dir;
  int64_t layers = 0, hidden = 0, params = 0;
  std::uintmax_t bytes = 0;
  double metric = 0;
  std::string metric_source;
  double b1 = 0, b32 = 0;
  std::string runtime;  // what ran the latency: the inference runtime, or LibTorch where it cannot
};

void run(const ReportArgs& a) {
  set_threads(a.threads);
  const auto& info = data::task_info(a.task.parsed());
  std::optional<data::Dataset> dev;
  std::vector<Entry> entries;
  for (const auto& spec : a.models) {
    Entry e;
    auto eq = spec.find('=');
    e.name = eq == std::string::npos ? spec : spec.substr(0, eq);
    e.dir = eq == std::string::npos ? spec : spec.substr(eq + 1);
    // A BERT folder or a BiLSTM/CNN student (one recurrent/convolutional layer of `hidden` units).
    auto model = load_any_model(e.dir);
    e.layers = model.is_textnet() ? 1 : model.bert->config().num_hidden_layers;
    e.hidden = model.is_textnet() ? model.text->config().hidden_size : model.bert->config().hidden_size;
    e.params = model.num_parameters();
    e.bytes = nn::checkpoint_bytes(e.dir);
    // Accuracy comes from the dev evaluation the training command stored, when it is for this
    // task; otherwise the model is evaluated now.
    const auto metrics_file = std::filesystem::path(e.dir) / "metrics.json";
    bool have = false;
    if (std::filesystem::exists(metrics_file)) {
      auto j = nlohmann::json::parse(read_file(metrics_file), nullptr, false);
      if (!j.is_discarded() && j.value("task", "") == info.name && j.contains("dev") && j["dev"].contains("main")) {
        e.metric = j["dev"]["main"].get<double>();
        e.metric_source = metrics_file.string();
        have = true;
      }
    }
    if (!have) {
      if (!dev) dev = load_split(a.task, "dev", 0, 0);
      auto tok = text::WordPieceTokenizer::from_directory(e.dir);
      e.metric = model.evaluate(train::encode(*dev, tok, 128), *dev).metrics.at("main");
      e.metric_source = "evaluated now";
    }
    const auto bo = runtime::BenchOptions().with_batch_sizes({1, 32}).with_min_seconds(a.seconds);
    // Latency as deployed: through the inference runtime, the folder as stored (int8 products
    // for int8 folders); BiLSTM/CNN students and architectures the runtime does not run
    // (MobileBERT bottlenecks, norms other than LayerNorm) through LibTorch.
    std::vector<runtime::BenchRow> rows;
    if (!model.is_textnet()) {
      try {
        auto engine = runtime::Engine::load(e.dir);
        rows = runtime::bench([&](const torch::Tensor& ids, const torch::Tensor& types,
                                  const torch::Tensor& mask) { return engine.forward(ids, types, mask); },
                              engine.vocab_size(), bo);
        e.runtime = "runtime, " + engine.precision();
      } catch (const Error&) {
        rows.clear();
      }
    }
    if (rows.empty()) {
      rows = model.bench(bo);
      e.runtime = "LibTorch";
    }
    e.b1 = rows[0].p50_ms;
    e.b32 = rows[1].p50_ms;
    entries.push_back(e);
  }
  std::string md = fmt::format(
      "| model | layers | hidden | parameters | size on disk | {} dev {} | latency b1 s128 (p50 ms) | latency b32 s128 "
      "(p50 ms) | speedup b1 | speedup b32 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
      info.name, info.main_metric);
  for (const auto& e : entries) {
    md += fmt::format("| {} | {} | {} | {:.1f} M | {} | {:.2f} | {:.1f} | {:.1f} | {:.2f}x | {:.2f}x |\n", e.name,
                      e.layers, e.hidden, static_cast<double>(e.params) / 1e6, human_bytes(static_cast<double>(e.bytes)),
                      100.0 * e.metric, e.b1, e.b32, entries[0].b1 / e.b1, entries[0].b32 / e.b32);
  }
  md += fmt::format("\nthreads {}, commit {}; speedups are relative to the first row, measured in this run.\n",
                    at::get_num_threads(), build_commit());
  md += "latency through:";
  for (const auto& e : entries) md += fmt::format(" {}: {};", e.name, e.runtime);
  md.back() = '\n';
  fmt::print("{}", md);
  if (!a.out.empty()) write_file_atomic(a.out, md);
}
}  // namespace

void add_report(CLI::App& app) {
  auto a = std::make_shared<ReportArgs>();
  auto* sub = app.add_subcommand("report", "Table of models: size, dev metric, latency, speedup");
  sub->add_option("--models", a->models, "name=folder entries, the first is the baseline")->required()->delimiter(',');
  a->task.add_to(*sub);
  sub->add_option("--out", a->out, "Also write the table (markdown) here");
  sub->add_option("--seconds", a->seconds, "Benchmark seconds per shape (default 2)");
  add_threads_flag(*sub, a->threads);
  sub->callback([a] { run(*a); });
}

}  // namespace condense::cli
