// condense factorize / condense share: low-rank (SVD) layers, ALBERT factorized embeddings and
// cross-layer sharing, the hashing trick; each builds the smaller model from a trained one, then
// fine-tunes it (with --teacher, Hinton KD from the teacher) and writes it with its dev metrics.
#include <memory>

#include "commands.h"
#include "common.h"
#include "condense/factorize/factorize.h"
#include "condense/nn/checkpoint.h"

namespace condense::cli {

namespace {
struct CompressArgs {
  std::string model, out, teacher;
  TaskFlags task;
  TrainFlags train;
  int threads = 0;
  double alpha = 0.5, temperature = 2.0;
  // factorize
  int64_t rank = 0, embedding_size = 0;
  double energy = 0;
  // share
  std::string mode;
  bool from_scratch = false;
  double hash_compression = 0;
};

using Build = std::function<nn::BertClassifier(nn::BertClassifier&, nlohmann::json&)>;

// Shared by both commands: build, fine-tune (epochs 0 = none), save, evaluate the file, report.
void compress(const std::string& command, const CompressArgs& a, const Build& build) {
  set_threads(a.threads);
  const std::filesystem::path src(a.model), out(a.out);
  train::TrainOptions o = train::TrainOptions().with_epochs(1).with_learning_rate(5e-5);
  int max_len = 128;
  int64_t limit = 0;
  a.train.apply(o, max_len, limit);
  o.on_progress = progress_bar(command, a.train.quiet);
  auto tokenizer = text::WordPieceTokenizer::from_directory(src);
  torch::manual_seed(o.seed);  // a head missing from the file is drawn from the run's seed
  auto model = nn::load_classifier(src);
  auto train_set = load_split(a.task, "train", limit, o.seed);
  auto dev = load_split(a.task, "dev", 0, 0);
  auto enc_train = train::encode(train_set, tokenizer, max_len);
  auto enc_dev = train::encode(dev, tokenizer, max_len);

  nlohmann::json m{{"command", command}, {"commit", build_commit()}, {"source_model", a.model},
                   {"teacher", a.teacher}, {"task", data::task_info(dev.task).name}};
  torch::manual_seed(o.seed);
  auto small = build(model, m);
  const auto before = train::evaluate(small, enc_dev, dev);  // right after building, before fine-tuning
  m["dev_before_fine_tuning"] = before.metrics;
  if (o.epochs > 0) {
    o.validate();
    auto tr = train::train_loop(small, enc_train, o, kd_loss(a.teacher, enc_train, a.alpha, a.temperature));
    m["fine_tune"] = {{"epochs", o.epochs}, {"learning_rate", o.learning_rate}, {"seed", o.seed},
                      {"steps", tr.steps}, {"seconds", tr.seconds}, {"train_examples", train_set.examples.size()}};
  }
  m["params_before"] = model->num_parameters();
  m["params_after"] = small->num_parameters();
  nn::save_pretrained(small, out, src, {{"condense", command}});
  auto loaded = nn::load_classifier(out);
  auto ev = record_written_model(loaded, out, src, enc_dev, dev, m);
  const auto& info = data::task_info(dev.task);
  fmt::print("{} -> {}: {} parameters (was {}), {} on disk (was {})\n", a.model, a.out, small->num_parameters(),
             model->num_parameters(), human_bytes(static_cast<double>(m["file_bytes"].get<uint64_t>())),
             human_bytes(static_cast<double>(m["source_file_bytes"].get<uint64_t>())));
  fmt::print("{} dev {}: {:.4f} (before fine-tuning {:.4f})\n", info.name, info.main_metric, ev.metrics.at("main"),
             before.metrics.at("main"));
}

void add_common(CLI::App* sub, CompressArgs& a) {
  sub->add_option("--model", a.model, "Fine-tuned model folder")->required();
  sub->add_option("--out", a.out, "Output folder")->required();
  a.task.add_to(*sub);
  sub->add_option("--teacher", a.teacher, "Fine-tune with Hinton KD from this model");
  sub->add_option("--alpha", a.alpha, "With --teacher: weight of the soft loss (default 0.5)");
  sub->add_option("--temperature", a.temperature, "With --teacher: temperature (default 2)");
  a.train.add_to(*sub);
  add_threads_flag(*sub, a.threads);
}
}  // namespace

void add_factorize(CLI::App& app) {
  auto a = std::make_shared<CompressArgs>();
  auto* sub = app.add_subcommand("factorize", "Low-rank (SVD) linear layers and/or ALBERT factorized embeddings");
  add_common(sub, *a);
  sub->add_option("--rank", a->rank, "Rank of every encoder linear layer");
  sub->add_option("--energy", a->energy, "Instead: smallest rank keeping this fraction of the spectrum's energy");
  sub->add_option("--embedding-size", a->embedding_size, "ALBERT factorized word embeddings of this width");
  sub->callback([a] {
    compress("factorize", *a, [&](nn::BertClassifier& m, nlohmann::json& j) {
      factorize::FactorizeOptions o;
      o.rank = a->rank;
      o.energy = a->energy;
      o.embedding_size = a->embedding_size;
      factorize::FactorizeReport rep;
      auto out = factorize::factorize(m, o, &rep);
      j["rank"] = a->rank;
      j["energy"] = a->energy;
      j["embedding_size"] = a->embedding_size;
      j["ranks"] = rep.ranks;
      j["energy_kept"] = rep.energy_kept;
      j["kept_dense"] = rep.kept_dense;
      return out;
    });
  });
}

void add_share(CLI::App& app) {
  auto a = std::make_shared<CompressArgs>();
  auto* sub = app.add_subcommand("share", "Cross-layer parameter sharing (ALBERT) and/or the hashing trick");
  add_common(sub, *a);
  sub->add_option("--mode", a->mode, "Cross-layer sharing: all, attention or ffn");
  sub->add_flag("--from-scratch", a->from_scratch, "Shared blocks freshly initialised (distil with --teacher)");
  sub->add_option("--hash-compression", a->hash_compression,
                  "HashedNets: weights per stored value in each encoder linear layer (e.g. 8)");
  sub->callback([a] {
    compress("share", *a, [&](nn::BertClassifier& m, nlohmann::json& j) {
      factorize::ShareOptions o;
      o.mode = a->mode;
      o.from_scratch = a->from_scratch;
      o.hash_compression = a->hash_compression;
      j["mode"] = a->mode;
      j["from_scratch"] = a->from_scratch;
      j["hash_compression"] = a->hash_compression;
      return factorize::share(m, o);
    });
  });
}

}  // namespace condense::cli
