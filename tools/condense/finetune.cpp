// condense finetune: fine-tune a Hugging Face BERT checkpoint on a GLUE task.
#include <memory>

#include "commands.h"
#include "common.h"
#include "condense/nn/checkpoint.h"

namespace condense::cli {

namespace {
struct FinetuneArgs {
  std::string model, out;
  TaskFlags task;
  TrainFlags train;
  int threads = 0;
  double layerdrop = 0;
};

void run(const FinetuneArgs& a) {
  set_threads(a.threads);
  train::TrainOptions o;
  int max_len = 128;
  int64_t limit = 0;
  a.train.apply(o, max_len, limit);
  if (o.state_dir.empty()) o.state_dir = a.out + ".state";
  o.on_progress = progress_bar("finetune", a.train.quiet);

  auto tokenizer = text::WordPieceTokenizer::from_directory(a.model);
  auto train_set = load_split(a.task, "train", limit, o.seed);
  auto dev = load_split(a.task, "dev", 0, o.seed);
  const auto& info = data::task_info(a.task.parsed());
  nn::LoadReport report;
  torch::manual_seed(o.seed);  // a fresh head is drawn from the run's seed
  auto model = nn::load_classifier(a.model, info.num_labels, &report);
  auto enc_train = train::encode(train_set, tokenizer, max_len);
  auto enc_dev = train::encode(dev, tokenizer, max_len);
  CONDENSE_CHECK(a.layerdrop >= 0 && a.layerdrop < 1, "--layerdrop must be in [0, 1), found {}", a.layerdrop);
  model->layerdrop = a.layerdrop;  // LayerDrop (Fan et al. 2020): prune to any depth later
  auto tr = train::finetune(model, enc_train, o);
  model->layerdrop = 0;
  if (o.resume && tr.resumed_from == 0) {
    fmt::print(stderr, "note: no training state in {}; trained from the start\n", o.state_dir.string());
  }
  if (!tr.finished) {
    fmt::print(stderr, "stopped after step {}; training state is in {}\n", tr.steps, o.state_dir.string());
    return;
  }
  auto ev = train::evaluate(model, enc_dev, dev);
  auto summary = run_summary("finetune", train_set, dev, o, tr, ev, model_shape(model));
  summary["base_model"] = a.model;
  summary["max_length"] = max_len;
  if (a.layerdrop > 0) summary["layerdrop"] = a.layerdrop;
  nn::save_pretrained(model, a.out, a.model, {{"condense", "finetune"}}, {{"metrics.json", summary.dump(2) + "\n"}});
  drop_state(a.train, o.state_dir);
  fmt::print("{} dev {}: {}  ({} train examples, {:.0f} ex/s, {:.0f} s) -> {}\n", info.name, info.main_metric,
             fmt::format("{:.4f}", ev.metrics.at("main")), train_set.examples.size(), tr.examples_per_second, tr.seconds,
             a.out);
}
}  // namespace

void add_finetune(CLI::App& app) {
  auto a = std::make_shared<FinetuneArgs>();
  auto* sub = app.add_subcommand("finetune", "Fine-tune a BERT checkpoint on a GLUE task");
  sub->add_option("--model", a->model, "Hugging Face model folder (config.json, model.safetensors, vocab.txt)")->required();
  sub->add_option("--out", a->out, "Output model folder")->required();
  a->task.add_to(*sub);
  sub->add_option("--layerdrop", a->layerdrop,
                  "Skip each layer with this probability while training (LayerDrop; then condense prune "
                  "--granularity layers picks any depth)");
  a->train.add_to(*sub);
  add_threads_flag(*sub, a->threads);
  sub->callback([a] { run(*a); });
}

}  // namespace condense::cli
