// condense quantize: PTQ (static, dynamic, weight-only), QAT (optionally guided by a teacher),
// Hessian mixed precision; writes the packed model and its dev metrics.
#include <algorithm>
#include <memory>

#include "commands.h"
#include "common.h"
#include "condense/distill/distill.h"
#include "condense/nn/checkpoint.h"
#include "condense/pipeline/recipe.h"
#include "condense/quantize/quantize.h"

namespace condense::cli {

namespace {
struct QuantizeArgs {
  std::string model, out, teacher, recipe;
  TaskFlags task;
  TrainFlags train;
  int threads = 0;
  int bits = 8;
  std::string method = "uniform", granularity = "channel", activations = "none", observer = "minmax";
  std::string weight_range = "minmax";
  std::string embeddings = "none";
  bool asymmetric = false, act_symmetric = false, no_int8_kernels = false, qat = false;
  int64_t group_size = 128, calib_batches = 16, diagnose_batches = 4;
  double percentile = 99.99;
  std::vector<std::string> keep_float;
  std::vector<int> mixed;  ///< LOW,HIGH bit widths for Hessian mixed precision
  double budget = 0;       ///< average bits per encoder weight for mixed precision
  double alpha = 0.5, temperature = 2.0;
};

std::optional<quantize::Scheme> embedding_scheme(const std::string& e) {
  if (e == "none") return std::nullopt;
  if (e == "fp16") return quantize::Scheme().with_bits(16).with_method(quantize::Method::Float16);
  if (e == "bf16") return quantize::Scheme().with_bits(16).with_method(quantize::Method::BFloat16);
  if (e == "int8") return quantize::Scheme();
  if (e == "int4") return quantize::Scheme().with_bits(4).with_granularity(quantize::Granularity::Group).with_group_size(32);
  fail("--embeddings must be none, fp16, bf16, int8 or int4, found '{}'", e);
}

// The recipe (or the defaults) with every flag the user gave on top.
pipeline::QuantizeRecipe resolve(const QuantizeArgs& a, const CLI::App& sub) {
  auto given = [&](const char* flag) { return sub.get_option(flag)->count() > 0; };
  auto r = a.recipe.empty() ? pipeline::QuantizeRecipe{} : pipeline::load_quantize_recipe(a.recipe);
  auto& o = r.options;
  auto& w = o.weights;
  if (given("--method")) {
    w.method = quantize::parse_method(a.method);
    if (w.is_float()) w.bits = 16;
  }
  if (given("--bits")) w.bits = a.bits;
  if (given("--asymmetric")) w.symmetric = false;
  if (given("--granularity")) w.granularity = quantize::parse_granularity(a.granularity);
  if (given("--group-size")) w.group_size = a.group_size;
  if (given("--weight-range")) w.range = a.weight_range;
  if (given("--embeddings")) o.embeddings = embedding_scheme(a.embeddings);
  if (given("--activations")) o.activations = quantize::parse_activations(a.activations);
  if (given("--act-symmetric")) o.act_symmetric = true;
  if (given("--observer")) o.observer = quantize::parse_observer(a.observer);
  if (given("--percentile")) o.percentile = a.percentile;
  if (given("--calib-batches")) o.calib_batches = a.calib_batches;
  if (given("--keep-float")) o.keep_float = a.keep_float;
  if (given("--no-int8-kernels")) o.int8_kernels = false;
  if (given("--mixed-precision")) {
    CONDENSE_CHECK(a.mixed.size() == 2 && a.budget > 0, "--mixed-precision needs LOW,HIGH and --budget BITS");
    r.mixed_precision = pipeline::QuantizeRecipe::Mixed{a.mixed[0], a.mixed[1], a.budget};
  }
  if (given("--qat") && !r.qat) {
    r.qat = pipeline::QuantizeRecipe::Qat{};
    r.qat->train.epochs = 1;
    r.qat->train.learning_rate = 2e-5;
  }
  if (r.qat) {
    if (given("--alpha")) r.qat->alpha = a.alpha;
    if (given("--temperature")) r.qat->temperature = a.temperature;
  }
  o.validate();
  return r;
}

// Bytes of the encoder's Dense weights (codes and their parameters) against fp32.
std::pair<int64_t, int64_t> encoder_bytes(const quantize::QuantizedModel& q) {
  int64_t packed = 0, fp32 = 0;
  for (const auto& [name, l] : q.layers) {
    if (name.rfind("bert.encoder.", 0) != 0) continue;
    packed += l.weight.nbytes();
    fp32 += l.weight.numel() * 4;
  }
  return {packed, fp32};
}

void run(const QuantizeArgs& a, const CLI::App& sub) {
  set_threads(a.threads);
  const std::filesystem::path src(a.model), out(a.out);
  CONDENSE_CHECK(!a.out.empty(), "--out is required");
  auto tokenizer = text::WordPieceTokenizer::from_directory(src);
  auto model = nn::load_classifier(src);
  auto recipe = resolve(a, sub);
  auto& o = recipe.options;
  train::TrainOptions topts = recipe.qat ? recipe.qat->train : train::TrainOptions();
  int max_len = 128;
  int64_t limit = 0;
  a.train.apply(topts, max_len, limit);
  auto train_set = load_split(a.task, "train", limit, topts.seed);
  auto dev = load_split(a.task, "dev", 0, 0);
  auto enc_train = train::encode(train_set, tokenizer, max_len);
  auto enc_dev = train::encode(dev, tokenizer, max_len);

  nlohmann::json extra = nlohmann::json::object();
  if (recipe.mixed_precision) {
    const auto& mp = *recipe.mixed_precision;
    auto sens = quantize::hessian_sensitivity(model, enc_train, 4, 8, topts.seed);
    o.with_layer_bits(quantize::assign_bits(sens, model, mp.low, mp.high, mp.budget));
    extra["hessian_trace_per_weight"] = sens;
    extra["layer_bits"] = o.layer_bits;
  }
  o.validate();
  auto float_model = nn::load_classifier(src);  // the reference for the layer diagnostics

  if (recipe.qat) {
    // QAT (Q8BERT): fine-tune with fake-quant weights and activations; with --teacher, the loss is
    // Hinton KD from the teacher's cached logits mixed with the labels (alpha, temperature).
    quantize::prepare_qat(model, o);
    topts.on_progress = progress_bar("qat", a.train.quiet);
    if (topts.save_every > 0 && topts.state_dir.empty()) topts.state_dir = out.string() + ".state";
    if (!a.teacher.empty()) {
      auto teacher = nn::load_classifier(a.teacher);
      distill::DistillOptions d;
      d.alpha = recipe.qat->alpha;
      d.temperature = recipe.qat->temperature;
      d.layer_losses = recipe.qat->layer_losses;
      d.train = topts;
      distill::distill(model, teacher, enc_train, d);
      extra["qat_teacher"] = a.teacher;
    } else {
      CONDENSE_CHECK(recipe.qat->layer_losses.empty(), "qat.layer_losses need a --teacher to fit");
      train::finetune(model, enc_train, topts);
    }
    extra["qat"] = {{"epochs", topts.epochs}, {"learning_rate", topts.learning_rate}, {"seed", topts.seed},
                    {"alpha", a.teacher.empty() ? 0.0 : recipe.qat->alpha}, {"temperature", recipe.qat->temperature},
                    {"layer_losses", recipe.qat->layer_losses.size()}};
  }
  auto q = quantize::apply(model, o, &enc_train);

  // Diagnostics: which layer's output moved most from the float model's.
  nlohmann::json diag = nlohmann::json::array();
  auto errors = quantize::layer_errors(float_model, model, enc_dev, a.diagnose_batches);
  for (const auto& e : errors) {
    diag.push_back({{"layer", e.layer}, {"relative_error", e.relative_error}, {"cosine", e.cosine}});
  }
  std::sort(errors.begin(), errors.end(), [](const auto& x, const auto& y) { return x.relative_error > y.relative_error; });
  const auto [enc_packed, enc_fp32] = encoder_bytes(q);
  nlohmann::json m{{"command", "quantize"},
                   {"recipe", a.recipe},
                   {"commit", build_commit()},
                   {"source_model", a.model},
                   {"task", data::task_info(dev.task).name},
                   {"weights", o.weights.name()},
                   {"embeddings", a.embeddings},
                   {"activations", quantize::to_string(o.activations)},
                   {"act_symmetric", o.act_symmetric},
                   {"observer", quantize::to_string(o.observer)},
                   {"calib_batches", o.calib_batches},
                   {"encoder_weight_bytes", enc_packed},
                   {"encoder_weight_bytes_fp32", enc_fp32},
                   {"encoder_compression", enc_packed > 0 ? static_cast<double>(enc_fp32) / enc_packed : 1.0},
                   {"layer_errors", diag}};
  m.update(extra);
  quantize::save(model, q, out, src);
  auto loaded = quantize::load(out);
  auto ev = record_written_model(loaded, out, src, enc_dev, dev, m);
  fmt::print("{}: {} ({} activations) -> {}: {} on disk (source {}), encoder weights {:.2f}x smaller\n", a.model,
             o.weights.name(), quantize::to_string(o.activations), a.out,
             human_bytes(static_cast<double>(m["file_bytes"].get<uint64_t>())),
             human_bytes(static_cast<double>(m["source_file_bytes"].get<uint64_t>())),
             m["encoder_compression"].get<double>());
  for (const auto& [k, v] : ev.metrics) {
    if (k != "main") fmt::print("{} dev {}: {:.4f}\n", data::task_info(dev.task).name, k, v);
  }
  fmt::print("largest output errors against the float model (metrics.json has every layer):\n");
  for (std::size_t i = 0; i < std::min<std::size_t>(3, errors.size()); ++i) {
    fmt::print("  {}: {:.2f} % (cosine {:.4f})\n", errors[i].layer, 100 * errors[i].relative_error, errors[i].cosine);
  }
  drop_state(a.train, topts.state_dir);
}
}  // namespace

void add_quantize(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  auto* sub = app.add_subcommand("quantize", "Quantize a fine-tuned model (PTQ, QAT, mixed precision)");
  sub->add_option("--model", a->model, "Fine-tuned float model folder")->required();
  sub->add_option("--recipe", a->recipe, "YAML recipe (recipes/q8bert.yaml, ...); flags override it");
  sub->add_option("--out", a->out, "Output folder")->required();
  a->task.add_to(*sub);
  sub->add_option("--bits", a->bits, "Weight bits: 8, 4, 2 or 1 (default 8)");
  sub->add_option("--method", a->method, "uniform, pow2, log, kmeans, fp16 or bf16 (default uniform)");
  sub->add_flag("--asymmetric", a->asymmetric, "Weights with a zero point (uniform, pow2)");
  sub->add_option("--granularity", a->granularity, "tensor, channel or group (default channel)");
  sub->add_option("--group-size", a->group_size, "Weights per group (default 128)");
  sub->add_option("--weight-range", a->weight_range, "Weight ranges per group: minmax, mse or percentile (99.9th of |w|)");
  sub->add_option("--activations", a->activations, "none, dynamic or static 8-bit inputs (default none)");
  sub->add_flag("--act-symmetric", a->act_symmetric, "int8 activations without a zero point");
  sub->add_option("--observer", a->observer, "Static calibration: minmax, ema, percentile, mse, entropy");
  sub->add_option("--percentile", a->percentile, "Percentile observer (default 99.99)");
  sub->add_option("--calib-batches", a->calib_batches, "Calibration batches of 32 training examples (default 16)");
  sub->add_option("--embeddings", a->embeddings, "Embedding tables: none, fp16, bf16, int8, int4 (default none)");
  sub->add_option("--keep-float", a->keep_float, "Layers (name prefixes) kept in float")->delimiter(',');
  sub->add_option("--mixed-precision", a->mixed, "LOW,HIGH: Hessian-guided bit widths per layer")->delimiter(',');
  sub->add_option("--budget", a->budget, "Average bits per encoder weight for --mixed-precision");
  sub->add_flag("--no-int8-kernels", a->no_int8_kernels, "Simulate int8 arithmetic in float instead");
  sub->add_flag("--qat", a->qat, "Quantization-aware training before quantizing");
  sub->add_option("--teacher", a->teacher, "QAT guided by this model's soft targets");
  sub->add_option("--alpha", a->alpha, "QAT with a teacher: weight of the soft loss (default 0.5)");
  sub->add_option("--temperature", a->temperature, "QAT with a teacher: temperature (default 2)");
  sub->add_option("--diagnose-batches", a->diagnose_batches, "Dev batches for the per-layer error report (default 4)");
  a->train.add_to(*sub);
  add_threads_flag(*sub, a->threads);
  sub->callback([a, sub] { run(*a, *sub); });
}

}  // namespace condense::cli
