#include "common.h"

#include <unistd.h>

#include <cstdio>

#include "condense/core/error.h"
#include "condense/core/file.h"
#include "condense/distill/distill.h"
#include "condense/nn/checkpoint.h"
#include "condense/quantize/quantize.h"

#include "condense_commit.h"  // generated at build time: CONDENSE_GIT_COMMIT

namespace condense::cli {

void TrainFlags::add_to(CLI::App& app) {
  app.add_option("--epochs", epochs, "Passes over the training data (default 3)");
  app.add_option("--batch-size", batch_size, "Examples per step (default 32)");
  app.add_option("--lr", learning_rate, "Peak learning rate (default 5e-5)");
  app.add_option("--warmup", warmup_ratio, "Fraction of steps with linear warm-up (default 0.1)");
  app.add_option("--weight-decay", weight_decay, "AdamW weight decay (default 0.01)");
  app.add_option("--max-grad-norm", max_grad_norm, "Gradient-norm clip, 0 = off (default 1.0)");
  app.add_option("--seed", seed, "Seed for batch order, dropout and new weights (default 42)");
  app.add_option("--max-length", max_length, "Tokens per example after truncation (default 128)");
  app.add_option("--train-limit", train_limit, "Use a seeded subset of this many training examples (0 = all)");
  app.add_option("--save-every", save_every, "Save training state every N steps (0 = never)");
  app.add_option("--state-dir", state_dir, "Where training state is kept (default <out>.state)");
  app.add_flag("--resume", resume, "Continue from the training state in --state-dir");
  app.add_flag("--keep-state", keep_state, "Keep the training state after the run finished");
  app.add_option("--stop-after", stop_after, "Stop after N steps, keeping the state (for interrupted runs)")
      ->group("");
  app.add_flag("--quiet", quiet, "No progress bar");
  app.add_flag("--bf16", bf16, "Mixed-precision training: forward pass under bf16 autocast (fp32 weights and optimizer)");
}

void TrainFlags::apply(train::TrainOptions& o, int& max_len, int64_t& limit) const {
  if (epochs) o.epochs = *epochs;
  if (batch_size) o.batch_size = *batch_size;
  if (learning_rate) o.learning_rate = *learning_rate;
  if (warmup_ratio) o.warmup_ratio = *warmup_ratio;
  if (weight_decay) o.weight_decay = *weight_decay;
  if (max_grad_norm) o.max_grad_norm = *max_grad_norm;
  if (seed) o.seed = *seed;
  if (save_every) o.save_every = *save_every;
  if (stop_after) o.stop_after = *stop_after;
  if (max_length) max_len = *max_length;
  if (train_limit) limit = *train_limit;
  if (!state_dir.empty()) o.state_dir = state_dir;
  o.resume = resume;
  if (bf16) o.bf16 = true;
}

void TaskFlags::add_to(CLI::App& app) {
  app.add_option("--task", task, "GLUE task: sst2, mrpc, cola, rte, qnli, stsb (default sst2)");
  app.add_option("--data", data, "Task folder with train.tsv/dev.tsv (default data/glue/<TASK>)");
}

data::Task TaskFlags::parsed() const { return data::parse_task(task); }

std::filesystem::path TaskFlags::dir() const {
  if (!data.empty()) return data;
  return std::filesystem::path("data") / "glue" / data::task_info(parsed()).dir_name;
}

void add_threads_flag(CLI::App& app, int& threads) {
  app.add_option("--threads", threads, "Intra-op threads (default: all cores)");
}

void set_threads(int threads) {
  if (threads > 0) at::set_num_threads(threads);
}

std::function<void(const train::Progress&)> progress_bar(const std::string& label, bool quiet) {
  if (quiet) return {};
  const bool tty = ::isatty(STDERR_FILENO);
  auto last_decile = std::make_shared<int64_t>(-1);
  return [label, tty, last_decile](const train::Progress& p) {
    const int64_t decile = p.step * 10 / std::max<int64_t>(1, p.total_steps);
    if (!tty && decile == *last_decile && p.step != p.total_steps) return;
    *last_decile = decile;
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * p.step / std::max<int64_t>(1, p.total_steps));
    std::string bar(static_cast<std::size_t>(filled), '=');
    bar.resize(kWidth, ' ');
    const auto eta = static_cast<int64_t>(p.eta_seconds);
    std::fprintf(stderr, "%s%s [%s] %lld/%lld loss %.4f %.0f ex/s ETA %lldm%02llds%s", tty ? "\r" : "", label.c_str(),
                 bar.c_str(), static_cast<long long>(p.step), static_cast<long long>(p.total_steps), p.loss,
                 p.examples_per_second, static_cast<long long>(eta / 60), static_cast<long long>(eta % 60),
                 tty ? "" : "\n");
    if (tty && p.step == p.total_steps) std::fputc('\n', stderr);
    std::fflush(stderr);
  };
}

data::Dataset load_split(const TaskFlags& t, const std::string& split, int64_t limit, uint64_t seed) {
  auto d = data::read_glue_split(t.parsed(), t.dir(), split);
  CONDENSE_CHECK(limit >= 0, "--train-limit must be >= 0, found {}", limit);
  if (limit > 0) d = data::take_subset(d, static_cast<std::size_t>(limit), seed);
  return d;
}

std::string build_commit() { return CONDENSE_GIT_COMMIT; }

nlohmann::json run_summary(const std::string& command, const data::Dataset& train_set, const data::Dataset& dev,
                           const train::TrainOptions& o, const train::TrainResult& tr, const train::EvalResult& ev,
                           const nlohmann::json& model_shape) {
  nlohmann::json j;
  j["command"] = command;
  j["commit"] = build_commit();
  j["task"] = data::task_info(dev.task).name;
  j["train_file"] = train_set.source.string();
  j["train_examples"] = train_set.examples.size();
  j["dev_file"] = dev.source.string();
  j["dev_examples"] = dev.examples.size();
  j["dev"] = ev.metrics;
  j.update(model_shape);
  j["train"] = {{"epochs", o.epochs},
                {"batch_size", o.batch_size},
                {"learning_rate", o.learning_rate},
                {"warmup_ratio", o.warmup_ratio},
                {"weight_decay", o.weight_decay},
                {"max_grad_norm", o.max_grad_norm},
                {"seed", o.seed},
                {"bf16", o.bf16},
                {"steps", tr.steps},
                {"resumed_from", tr.resumed_from},
                {"mean_loss_last_epoch", tr.mean_loss_last_epoch},
                {"examples_per_second", tr.examples_per_second},
                {"seconds", tr.seconds},
                {"threads", at::get_num_threads()}};
  return j;
}

nlohmann::json model_shape(const nn::BertClassifier& model) {
  const auto& c = model->config();
  nlohmann::json j{{"arch", "bert"},
                   {"parameters", model->num_parameters()},
                   {"layers", c.num_hidden_layers},
                   {"hidden_size", c.hidden_size}};
  if (c.bottleneck_size > 0) j["bottleneck_size"] = c.bottleneck_size;
  if (c.num_ffn > 1) j["num_ffn"] = c.num_ffn;
  return j;
}

nlohmann::json model_shape(const nn::TextNetClassifier& model) {
  const auto& c = model->config();
  return {{"arch", c.arch}, {"parameters", model->num_parameters()}, {"layers", 1}, {"hidden_size", c.hidden_size},
          {"embedding_dim", c.embedding_dim}};
}

AnyModel load_any_model(const std::filesystem::path& dir) {
  AnyModel m;
  if (nn::is_textnet_config(dir / "config.json")) {
    m.text = nn::load_textnet(dir);
  } else if (quantize::is_quantized(dir)) {
    m.bert = quantize::load(dir);
  } else {
    m.bert = nn::load_classifier(dir);
  }
  return m;
}

int64_t AnyModel::num_labels() const {
  return is_textnet() ? text->config().num_labels : bert->config().num_labels;
}

int64_t AnyModel::num_parameters() const { return is_textnet() ? text->num_parameters() : bert->num_parameters(); }

train::EvalResult AnyModel::evaluate(const train::EncodedDataset& d, const data::Dataset& gold, int64_t batch_size) {
  return is_textnet() ? train::evaluate(text, d, gold, batch_size) : train::evaluate(bert, d, gold, batch_size);
}

std::vector<runtime::BenchRow> AnyModel::bench(const runtime::BenchOptions& options) {
  return is_textnet() ? runtime::bench(text, options) : runtime::bench(bert, options);
}

void drop_state(const TrainFlags& flags, const std::filesystem::path& state_dir) {
  if (flags.keep_state || state_dir.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(state_dir, ec);  // best effort: the model is already published
}

std::string human_bytes(double b) {
  if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.1f} MB", b / 1e6);
  if (b >= 1e3) return fmt::format("{:.1f} kB", b / 1e3);
  return fmt::format("{:.0f} B", b);
}

train::LossFn kd_loss(const std::string& teacher, const train::EncodedDataset& train, double alpha,
                      double temperature) {
  if (teacher.empty()) {
    return [](nn::BertClassifier& m, const train::Batch& b) {
      return train::task_loss(m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits, b);
    };
  }
  auto t = nn::load_classifier(teacher);
  auto logits = train::predict_logits(t, train);
  distill::DistillOptions kd;
  kd.alpha = alpha;
  kd.temperature = temperature;
  return [logits, kd](nn::BertClassifier& m, const train::Batch& b) {
    auto s = m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
    return distill::distillation_loss(s, logits.index_select(0, b.indices), b, kd);
  };
}

nlohmann::json layer_losses_json(const std::vector<distill::LayerLossTerm>& terms) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& t : terms) {
    out.push_back({{"loss", distill::to_string(t.loss)},
                   {"weight", t.weight},
                   {"weight_end", t.weight_end ? nlohmann::json(*t.weight_end) : nlohmann::json()}});
  }
  return out;
}

train::LossFn kd_loss(const std::string& teacher, const train::EncodedDataset& train, double alpha, double temperature,
                      const std::vector<distill::LayerLossTerm>& layer_losses) {
  if (layer_losses.empty()) return kd_loss(teacher, train, alpha, temperature);
  auto t = nn::load_classifier(teacher);
  t->eval();
  auto logits = train::predict_logits(t, train);
  distill::DistillOptions kd;
  kd.alpha = alpha;
  kd.temperature = temperature;
  const auto& tc = t->config();
  const auto pairs = distill::resolve_layer_map({}, tc.num_hidden_layers, tc.num_hidden_layers);  // i ← i
  auto proj = distill::FeatureProjection(tc.hidden_size, tc.hidden_size, tc.num_hidden_layers, false);  // identity
  const auto fwd = distill::forward_options_for(layer_losses);
  return [t, logits, kd, pairs, proj, fwd, layer_losses, teacher](nn::BertClassifier& m,
                                                                  const train::Batch& b) mutable {
    const auto& sc = m->config();
    CONDENSE_CHECK(sc.num_hidden_layers == t->config().num_hidden_layers && sc.hidden_size == t->config().hidden_size,
                   "distill.layer_losses compare layer i with layer i of {}: it has {} layers of width {}, the model "
                   "{} of width {}",
                   teacher, t->config().num_hidden_layers, t->config().hidden_size, sc.num_hidden_layers,
                   sc.hidden_size);
    nn::BertOutput to;
    {
      torch::NoGradGuard guard;
      to = t->forward(b.input_ids, b.token_type_ids, b.attention_mask, fwd);
    }
    auto out = m->forward(b.input_ids, b.token_type_ids, b.attention_mask, fwd);
    return distill::distillation_loss(out.logits, logits.index_select(0, b.indices), b, kd) +
           distill::layer_objective(out, to, b.attention_mask, distill::layer_terms_at(layer_losses, b), pairs, proj);
  };
}

train::EvalResult record_written_model(nn::BertClassifier& loaded, const std::filesystem::path& out,
                                       const std::filesystem::path& src, const train::EncodedDataset& enc_dev,
                                       const data::Dataset& dev, nlohmann::json& m) {
  auto ev = train::evaluate(loaded, enc_dev, dev);
  m["dev"] = ev.metrics;
  m["file_bytes"] = nn::checkpoint_bytes(out);
  m["source_file_bytes"] = nn::checkpoint_bytes(src);
  write_file_atomic(out / "metrics.json", m.dump(2) + "\n");
  return ev;
}

}  // namespace condense::cli
