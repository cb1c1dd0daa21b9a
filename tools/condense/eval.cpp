// condense eval: GLUE metrics of a model on a split, optionally dumping its logits.
#include <memory>

#include "commands.h"
#include "common.h"
#include "condense/core/file.h"
#include "condense/io/safetensors.h"
#include "condense/nn/checkpoint.h"
#include "condense/nn/textnet.h"

namespace condense::cli {

namespace {
struct EvalArgs {
  std::string model, split = "dev", json_out, logits_out;
  TaskFlags task;
  int threads = 0;
  int max_length = 128;
  int64_t batch_size = 64, limit = 0;
};

void run(const EvalArgs& a) {
  set_threads(a.threads);
  auto tokenizer = text::WordPieceTokenizer::from_directory(a.model);
  auto model = load_any_model(a.model);  // a BERT folder or a BiLSTM/CNN student
  const int64_t outputs = model.num_labels();
  auto d = load_split(a.task, a.split, 0, 0);
  if (a.limit > 0 && static_cast<std::size_t>(a.limit) < d.examples.size()) d.examples.resize(static_cast<std::size_t>(a.limit));
  const auto& info = data::task_info(d.task);
  CONDENSE_CHECK(outputs == info.num_labels, "{}: model has {} outputs but task {} needs {}", a.model, outputs,
                 info.name, info.num_labels);
  CONDENSE_CHECK(!model.is_textnet() || model.text->config().pair == info.pair,
                 "{}: the {} student was built for {} but task {} has {}", a.model, model.text->config().arch,
                 model.text->config().pair ? "sentence pairs" : "single sentences", info.name,
                 info.pair ? "sentence pairs" : "single sentences");
  auto enc = train::encode(d, tokenizer, a.max_length);
  auto ev = model.evaluate(enc, d, a.batch_size);
  nlohmann::json j{{"model", a.model}, {"task", info.name}, {"split", a.split}, {"file", d.source.string()},
                   {"examples", d.examples.size()}, {"metrics", ev.metrics},
                   {"examples_per_second", ev.examples_per_second}, {"commit", build_commit()}};
  if (!a.json_out.empty()) write_file_atomic(a.json_out, j.dump(2) + "\n");
  if (!a.logits_out.empty()) {
    auto l = ev.logits.contiguous();
    io::write_safetensors(a.logits_out, {{"logits", io::DType::F32, {l.size(0), l.size(1)}, l.data_ptr(), l.nbytes()}});
  }
  for (const auto& [k, v] : ev.metrics) {
    if (k != "main") fmt::print("{} {} {}: {:.4f}\n", info.name, a.split, k, v);
  }
}
}  // namespace

void add_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* sub = app.add_subcommand("eval", "Evaluate a model on a GLUE split");
  sub->add_option("--model", a->model, "Model folder")->required();
  a->task.add_to(*sub);
  sub->add_option("--split", a->split, "train or dev (default dev)");
  sub->add_option("--limit", a->limit, "Only the first N examples (0 = all)");
  sub->add_option("--max-length", a->max_length, "Tokens per example (default 128)");
  sub->add_option("--batch-size", a->batch_size, "Examples per forward pass (default 64)");
  sub->add_option("--json", a->json_out, "Write the metrics as JSON here");
  sub->add_option("--logits", a->logits_out, "Write the logits ([N, labels], dataset order) as safetensors here");
  add_threads_flag(*sub, a->threads);
  sub->callback([a] { run(*a); });
}

}  // namespace condense::cli
