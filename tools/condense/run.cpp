// condense run: classifies text with the inference runtime — one example per input line, a tab
// between the two sentences of a pair — and prints the label and class probabilities per line.
#include <fstream>
#include <iostream>
#include <memory>

#include "commands.h"
#include "common.h"
#include "condense/runtime/engine.h"
#include "condense/text/tokenizer.h"

namespace condense::cli {

namespace {
struct RunArgs {
  std::string model, input = "-", precision = "auto", format = "tsv";
  int64_t batch = 32, max_length = 128;
  int threads = 0;
  bool fp32_attention = false;
};

void run(const RunArgs& a) {
  set_threads(a.threads);
  CONDENSE_CHECK(a.format == "tsv" || a.format == "json", "--format is '{}', expected tsv or json", a.format);
  CONDENSE_CHECK(a.batch > 0, "--batch must be positive, found {}", a.batch);
  auto engine = runtime::Engine::load(a.model, runtime::EngineOptions()
                                                       .with_precision(runtime::parse_precision(a.precision))
                                                       .with_fp32_attention(a.fp32_attention));
  CONDENSE_CHECK(a.max_length >= 2 && a.max_length <= engine.max_positions(), "--max-length must be in 2..{}, found {}",
                 engine.max_positions(), a.max_length);
  auto tokenizer = text::WordPieceTokenizer::from_directory(a.model);
  std::ifstream file;
  if (a.input != "-") {
    file.open(a.input);
    CONDENSE_CHECK(file.good(), "{}: cannot open the input file", a.input);
  }
  std::istream& in = a.input == "-" ? std::cin : file;
  const int64_t labels = engine.num_labels();
  auto flush = [&](const runtime::TokenBatch& b) {
    if (b.size() == 0) return;
    auto logits = engine.forward(b);
    for (int64_t s = 0; s < b.size(); ++s) {
      const float* l = logits.data() + s * labels;
      if (labels == 1) {  // regression (STS-B)
        if (a.format == "tsv") {
          fmt::print("{:.6f}\n", l[0]);
        } else {
          fmt::print("{}\n", nlohmann::json{{"score", l[0]}}.dump());
        }
        continue;
      }
      float mx = l[0];
      int64_t arg = 0;
      for (int64_t c = 1; c < labels; ++c) {
        if (l[c] > mx) mx = l[c], arg = c;
      }
      std::vector<double> p(static_cast<std::size_t>(labels));
      double sum = 0;
      for (int64_t c = 0; c < labels; ++c) sum += (p[c] = std::exp(static_cast<double>(l[c] - mx)));
      for (auto& v : p) v /= sum;
      if (a.format == "tsv") {
        fmt::print("{}", arg);
        for (double v : p) fmt::print("\t{:.6f}", v);
        fmt::print("\n");
      } else {
        fmt::print("{}\n", nlohmann::json{{"label", arg}, {"probabilities", p}}.dump());
      }
    }
  };
  runtime::TokenBatch batch;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto tab = line.find('\t');
    auto enc = tab == std::string::npos
                   ? tokenizer.encode(line, std::nullopt, static_cast<int>(a.max_length))
                   : tokenizer.encode(std::string_view(line).substr(0, tab), std::string_view(line).substr(tab + 1),
                                      static_cast<int>(a.max_length));
    batch.add(std::vector<int32_t>(enc.input_ids.begin(), enc.input_ids.end()),
              std::vector<int32_t>(enc.token_type_ids.begin(), enc.token_type_ids.end()));
    if (batch.size() == a.batch) {
      flush(batch);
      batch = runtime::TokenBatch();
    }
  }
  CONDENSE_CHECK(!in.bad(), "{}: read error at line {}", a.input, line_no + 1);
  flush(batch);
}
}  // namespace

void add_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  auto* sub = app.add_subcommand("run", "Classify text with the inference runtime (one example per line, tab between a pair)");
  sub->add_option("--model", a->model, "Model folder (float, pruned or quantized)")->required();
  sub->add_option("--input", a->input, "Text file, or - for standard input (default)");
  sub->add_option("--precision", a->precision, "auto (as stored, default), fp32, bf16 or int8");
  sub->add_option("--batch", a->batch, "Lines per forward pass (default 32)");
  sub->add_option("--max-length", a->max_length, "Tokens per example, truncated beyond (default 128)");
  sub->add_option("--format", a->format, "tsv (label, then one probability per class; default) or json lines");
  sub->add_flag("--fp32-attention", a->fp32_attention, "Attention in fp32 even where the products are bf16 or int8");
  add_threads_flag(*sub, a->threads);
  sub->callback([a] { run(*a); });
}

}  // namespace condense::cli
