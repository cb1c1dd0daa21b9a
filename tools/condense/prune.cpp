// condense prune: unstructured, N:M, head, neuron and layer pruning with fine-tuning (optionally
// distilled from the unpruned teacher); structured results are physically smaller models,
// unstructured ones are stored in the sparse bitmap format.
#include <memory>

#include "commands.h"
#include "common.h"
#include "condense/nn/checkpoint.h"
#include "condense/pipeline/recipe.h"
#include "condense/prune/prune.h"

namespace condense::cli {

namespace {
struct PruneArgs {
  std::string model, out, teacher, recipe;
  TaskFlags task;
  TrainFlags train;
  int threads = 0;
  std::string criterion, granularity, schedule, nm, layer_select;
  double sparsity = 0.5, regularization = 0, layerdrop = 0, alpha = 0.5, temperature = 2.0, soft_threshold = 0.1,
         soft_lambda = 400;
  bool global = false, dense = false, joint = false;
  int64_t depth = 0, steps = 4, final_epochs = 0, update_every = 50, score_batches = 32;
};

pipeline::PruneRecipe resolve(const PruneArgs& a, const CLI::App& sub) {
  auto given = [&](const char* flag) { return sub.get_option(flag)->count() > 0; };
  auto r = a.recipe.empty() ? pipeline::PruneRecipe{} : pipeline::load_prune_recipe(a.recipe);
  auto& o = r.options;
  if (given("--criterion")) o.criterion = prune::parse_criterion(a.criterion);
  if (given("--granularity")) o.granularity = prune::parse_granularity(a.granularity);
  if (given("--schedule")) o.schedule = prune::parse_schedule(a.schedule);
  if (given("--sparsity")) o.sparsity = a.sparsity;
  if (given("--global")) o.global = true;
  if (given("--depth")) o.depth = a.depth;
  if (given("--layer-select")) o.layer_select = a.layer_select;
  if (given("--steps")) o.steps = a.steps;
  if (given("--final-epochs")) o.final_epochs = a.final_epochs;
  if (given("--joint")) o.joint = true;
  if (given("--update-every")) o.update_every = a.update_every;
  if (given("--score-batches")) o.score_batches = a.score_batches;
  if (given("--regularization")) o.regularization = a.regularization;
  if (given("--layerdrop")) o.layerdrop = a.layerdrop;
  if (given("--soft-threshold")) o.soft_threshold = a.soft_threshold;
  if (given("--soft-lambda")) o.soft_lambda = a.soft_lambda;
  if (given("--alpha")) r.alpha = a.alpha;
  if (given("--temperature")) r.temperature = a.temperature;
  if (given("--nm")) {
    const auto colon = a.nm.find(':');
    CONDENSE_CHECK(colon != std::string::npos, "--nm must look like 2:4, found '{}'", a.nm);
    try {
      o.n = std::stoll(a.nm.substr(0, colon));
      o.m = std::stoll(a.nm.substr(colon + 1));
    } catch (const std::exception&) {
      fail("--nm must look like 2:4, found '{}'", a.nm);
    }
    if (!given("--granularity")) o.granularity = prune::Granularity::NM;
  }
  return r;
}

void run(const PruneArgs& a, const CLI::App& sub) {
  set_threads(a.threads);
  const std::filesystem::path src(a.model), out(a.out);
  auto recipe = resolve(a, sub);
  auto& o = recipe.options;
  int max_len = 128;
  int64_t limit = 0;
  a.train.apply(o.train, max_len, limit);
  if (o.train.state_dir.empty()) o.train.state_dir = a.out + ".state";
  o.train.on_progress = progress_bar("prune", a.train.quiet);
  o.validate();

  auto tokenizer = text::WordPieceTokenizer::from_directory(src);
  torch::manual_seed(o.train.seed);  // a head missing from the file is drawn from the run's seed
  auto model = nn::load_classifier(src);
  auto train_set = load_split(a.task, "train", limit, o.train.seed);
  auto dev = load_split(a.task, "dev", 0, 0);
  auto enc_train = train::encode(train_set, tokenizer, max_len);
  auto enc_dev = train::encode(dev, tokenizer, max_len);
  const auto before = train::evaluate(model, enc_dev, dev);

  // With a teacher: Hinton KD from its logits, computed once for the training set.
  // With layer_losses in the recipe, also hidden-state distillation layer by layer (CoFi).
  pipeline::check_layer_losses(recipe, a.recipe);  // again: --granularity may have changed
  CONDENSE_CHECK(recipe.layer_losses.empty() || !a.teacher.empty(),
                 "{}: field 'distill.layer_losses' needs a --teacher to compare layers with", a.recipe);
  auto loss = kd_loss(a.teacher, enc_train, recipe.alpha, recipe.temperature, recipe.layer_losses);
  if (o.train.resume && o.schedule == prune::Schedule::Cubic) {
    fmt::print(stderr, "note: --resume does not apply to the cubic schedule (its masks change inside the run); "
                       "it starts over\n");
  }
  auto r = prune::prune(model, enc_train, o, loss);
  if (!r.finished) {
    fmt::print(stderr, "stopped after step {} of fine-tuning run {}; training state is in {}\n",
               r.fine_tuning.back().steps, r.fine_tuning.size(), o.train.state_dir.string());
    return;
  }
  const bool unstructured = o.granularity == prune::Granularity::Unstructured || o.granularity == prune::Granularity::NM;

  double fine_tune_seconds = 0;
  for (const auto& t : r.fine_tuning) fine_tune_seconds += t.seconds;
  const auto& c = r.model->config();
  nlohmann::json m{{"command", "prune"},
                   {"recipe", a.recipe},
                   {"commit", build_commit()},
                   {"source_model", a.model},
                   {"teacher", a.teacher},
                   {"task", data::task_info(dev.task).name},
                   {"criterion", prune::to_string(o.criterion)},
                   {"layer_losses", layer_losses_json(recipe.layer_losses)},
                   {"granularity", prune::to_string(o.granularity)},
                   {"schedule", prune::to_string(o.schedule)},
                   {"target_sparsity", o.sparsity},
                   {"params_before", r.params_before},
                   {"params_after", r.params_after},
                   {"encoder_weights_before", r.encoder_weights_before},
                   {"encoder_weights_after", r.encoder_weights_after},
                   {"encoder_sparsity", 1.0 - static_cast<double>(r.encoder_weights_after) /
                                                  static_cast<double>(r.encoder_weights_before)},
                   {"layers", c.num_hidden_layers},
                   {"layer_heads", c.layer_heads.empty() ? std::vector<int64_t>(c.num_hidden_layers, c.num_attention_heads)
                                                         : c.layer_heads},
                   {"layer_intermediate", c.layer_intermediate.empty()
                                              ? std::vector<int64_t>(c.num_hidden_layers, c.intermediate_size)
                                              : c.layer_intermediate},
                   {"fine_tune_epochs", o.train.epochs},
                   {"final_epochs", o.final_epochs},
                   {"joint", o.joint},
                   {"fine_tune_bf16", o.train.bf16},
                   {"fine_tune_seconds", fine_tune_seconds},
                   {"train_examples", train_set.examples.size()},
                   {"dev_before", before.metrics}};
  if (o.granularity == prune::Granularity::Layers) m["kept_layers"] = r.masks.keep_layers;
  if (o.criterion == prune::Criterion::SoftMovement) {
    // The sparsity soft movement reached is its result; `sparsity` was not a target.
    m.erase("target_sparsity");
    m["soft_threshold"] = o.soft_threshold;
    m["soft_lambda"] = o.soft_lambda;
    nlohmann::json per;
    for (const auto& [name, mask] : r.masks.weights) per[name] = 1.0 - mask.to(torch::kDouble).mean().item<double>();
    m["matrix_sparsity"] = per;
  }
  m["saves"] = unstructured ? "storage only: zeros stored as a bitmap plus values; dense kernels, so latency is unchanged"
                            : "parameters, storage and compute: heads, neurons or layers removed";
  if (unstructured && !a.dense) {
    auto sr = nn::save_sparse(r.model, out, src, {{"condense", "prune"}});
    m["format"] = "sparse-bitmap";
    m["sparse_tensors"] = sr.sparse_tensors;
  } else {
    nn::save_pretrained(r.model, out, src, {{"condense", "prune"}});
    m["format"] = "dense";
  }
  auto loaded = nn::load_classifier(out);
  auto ev = record_written_model(loaded, out, src, enc_dev, dev, m);
  const auto& info = data::task_info(dev.task);
  fmt::print("{} -> {}: {} {} at {:.1f} % of encoder weights; {} parameters (was {}), {} on disk (was {})\n", a.model,
             a.out, prune::to_string(o.criterion), prune::to_string(o.granularity),
             100 * m["encoder_sparsity"].get<double>(), r.params_after, r.params_before,
             human_bytes(static_cast<double>(m["file_bytes"].get<uint64_t>())),
             human_bytes(static_cast<double>(m["source_file_bytes"].get<uint64_t>())));
  fmt::print("{} dev {}: {:.4f} (before pruning {:.4f})\n", info.name, info.main_metric, ev.metrics.at("main"),
             before.metrics.at("main"));
  if (unstructured) fmt::print("note: {}\n", m["saves"].get<std::string>());
  drop_state(a.train, o.train.state_dir);
}
}  // namespace

void add_prune(CLI::App& app) {
  auto a = std::make_shared<PruneArgs>();
  auto* sub = app.add_subcommand("prune", "Prune a fine-tuned model (weights, N:M, heads, FFN neurons, layers)");
  sub->add_option("--model", a->model, "Fine-tuned model folder")->required();
  sub->add_option("--out", a->out, "Output folder")->required();
  sub->add_option("--recipe", a->recipe, "YAML recipe (recipes/prune/*.yaml); flags override it");
  a->task.add_to(*sub);
  sub->add_option("--criterion", a->criterion, "magnitude, taylor, movement, soft-movement, l1, l2 or entropy (default magnitude)");
  sub->add_option("--granularity", a->granularity,
                  "unstructured, nm, heads, neurons, heads+neurons or layers (default unstructured)");
  sub->add_option("--sparsity", a->sparsity, "Fraction removed (see docs/cli.md for what it counts; default 0.5)");
  sub->add_flag("--global", a->global, "Unstructured: one threshold over all encoder weights");
  sub->add_option("--nm", a->nm, "N:M pattern, e.g. 2:4 (implies --granularity nm)");
  sub->add_option("--depth", a->depth, "Layers: how many encoder layers to keep");
  sub->add_option("--layer-select", a->layer_select, "Layers: importance or every-other (default importance)");
  sub->add_option("--schedule", a->schedule, "oneshot, iterative or cubic (default oneshot)");
  sub->add_option("--steps", a->steps, "Iterative: pruning steps (default 4)");
  sub->add_option("--final-epochs", a->final_epochs,
                  "One-shot/iterative/layers: further fine-tuning epochs after the last step (default 0)");
  sub->add_flag("--joint", a->joint, "heads+neurons with taylor: rank heads and neurons together per weight");
  sub->add_option("--update-every", a->update_every, "Cubic: optimizer steps between mask updates (default 50)");
  sub->add_option("--score-batches", a->score_batches, "Batches for taylor/entropy/layer scores (default 32)");
  sub->add_option("--regularization", a->regularization, "l1/l2: λ of the shrinkage toward zero after each step (lr·λ; default 1)");
  sub->add_option("--layerdrop", a->layerdrop, "LayerDrop probability while fine-tuning (default 0)");
  sub->add_option("--soft-threshold", a->soft_threshold, "soft-movement: final threshold on sigmoid(S) (default 0.1)");
  sub->add_option("--soft-lambda", a->soft_lambda,
                  "soft-movement: final weight of the mean sigmoid(S) penalty; larger prunes more (default 400)");
  sub->add_option("--teacher", a->teacher, "Fine-tune with Hinton KD from this (unpruned) model");
  sub->add_option("--alpha", a->alpha, "With --teacher: weight of the soft loss (default 0.5)");
  sub->add_option("--temperature", a->temperature, "With --teacher: temperature (default 2)");
  sub->add_flag("--dense", a->dense, "Unstructured: store dense weights (zeros included) instead of the sparse format");
  a->train.add_to(*sub);
  add_threads_flag(*sub, a->threads);
  sub->callback([a, sub] { run(*a, *sub); });
}

}  // namespace condense::cli
