#pragma once
// Shared plumbing of the subcommands: flag groups, data loading, progress display, JSON output.
// No training or model logic lives here; it only fills library Options structs.

#include <CLI/CLI.hpp>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "condense/core/error.h"
#include "condense/data/glue.h"
#include "condense/distill/distill.h"
#include "condense/nn/bert.h"
#include "condense/nn/textnet.h"
#include "condense/runtime/bench.h"
#include "condense/text/tokenizer.h"
#include "condense/train/train.h"

namespace condense::cli {

/// Training flags; each is optional so that a recipe value is only overridden when given.
struct TrainFlags {
  std::optional<int64_t> epochs, batch_size, save_every, stop_after;
  std::optional<double> learning_rate, warmup_ratio, weight_decay, max_grad_norm;
  std::optional<uint64_t> seed;
  std::optional<int> max_length;
  std::optional<int64_t> train_limit;
  std::string state_dir;
  bool resume = false;
  bool keep_state = false;
  bool quiet = false;
  bool bf16 = false;

  void add_to(CLI::App& app);
  /// Copies the given flags over `o` (and max_length/train_limit over the two ints).
  void apply(train::TrainOptions& o, int& max_len, int64_t& limit) const;
};

/// Task and data flags shared by finetune, distill, eval and report.
struct TaskFlags {
  std::string task = "sst2";
  std::string data;  ///< task folder holding train.tsv / dev.tsv; default data/glue/<TASK>

  void add_to(CLI::App& app);
  data::Task parsed() const;
  std::filesystem::path dir() const;
};

/// --threads N (0 = all cores) applied to LibTorch's intra-op pool.
void add_threads_flag(CLI::App& app, int& threads);
void set_threads(int threads);

/// A one-line progress bar on stderr (rewritten in place on a terminal, every 10% otherwise).
std::function<void(const train::Progress&)> progress_bar(const std::string& label, bool quiet);

/// Loads a split, optionally a seeded subset of `limit` examples (0 = all).
data::Dataset load_split(const TaskFlags& t, const std::string& split, int64_t limit, uint64_t seed);

/// The git commit this binary was built from ("unknown" outside a checkout).
std::string build_commit();

/// JSON summary of a trained model's run, stored as metrics.json beside the weights.
nlohmann::json run_summary(const std::string& command, const data::Dataset& train_set, const data::Dataset& dev,
                           const train::TrainOptions& o, const train::TrainResult& tr, const train::EvalResult& ev,
                           const nlohmann::json& model_shape);

/// A model folder of either kind — a BERT classifier (float or quantized) or a BiLSTM/CNN student
/// (config.json model_type condense-textnet) — with the operations the commands need of both.
struct AnyModel {
  nn::BertClassifier bert{nullptr};
  nn::TextNetClassifier text{nullptr};

  bool is_textnet() const { return !text.is_empty(); }
  int64_t num_labels() const;
  int64_t num_parameters() const;
  train::EvalResult evaluate(const train::EncodedDataset& d, const data::Dataset& gold, int64_t batch_size = 64);
  std::vector<runtime::BenchRow> bench(const runtime::BenchOptions& options);
};
AnyModel load_any_model(const std::filesystem::path& dir);

/// [{loss, weight, weight_end}] for metrics.json.
nlohmann::json layer_losses_json(const std::vector<distill::LayerLossTerm>& terms);

/// The shape fields of metrics.json: parameters, layers, hidden_size (and arch for TextNets).
nlohmann::json model_shape(const nn::BertClassifier& model);
nlohmann::json model_shape(const nn::TextNetClassifier& model);

/// The fine-tuning loss of the compression commands: Hinton KD (alpha · soft + (1 − alpha) · task)
/// from `teacher`'s logits, computed once for `train`; an empty teacher gives the task loss alone.
train::LossFn kd_loss(const std::string& teacher, const train::EncodedDataset& train, double alpha,
                      double temperature);
/// The same plus layer-wise terms (CoFi, Xia et al. 2022): each batch also runs the teacher and
/// compares layer i of the model being trained with the teacher's layer i (the model keeps the
/// teacher's depth and width, as head and neuron pruning do). Empty `layer_losses` = kd_loss above;
/// otherwise `teacher` must be given (the caller says so in its own words).
train::LossFn kd_loss(const std::string& teacher, const train::EncodedDataset& train, double alpha, double temperature,
                      const std::vector<distill::LayerLossTerm>& layer_losses);

/// The end of every compression command: evaluates the model as written (`loaded`, read back from
/// `out`: the file is what users get), adds its dev metrics and the file sizes of `out` and `src` to
/// `m`, and writes `out`/metrics.json.
train::EvalResult record_written_model(nn::BertClassifier& loaded, const std::filesystem::path& out,
                                       const std::filesystem::path& src, const train::EncodedDataset& enc_dev,
                                       const data::Dataset& dev, nlohmann::json& m);

/// Removes a finished run's training state (it is the size of three models) unless --keep-state.
void drop_state(const TrainFlags& flags, const std::filesystem::path& state_dir);

/// "12.3 MB"-style sizes.
std::string human_bytes(double bytes);

}  // namespace condense::cli
