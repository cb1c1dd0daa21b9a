// condense export: write a clean Hugging Face folder from a model or from training state.
#include <memory>

#include "commands.h"
#include "common.h"
#include "condense/factorize/factorize.h"
#include "condense/nn/checkpoint.h"

namespace condense::cli {

namespace {
struct ExportArgs {
  std::string model, out, state;
};

void run(const ExportArgs& a) {
  auto model = nn::load_classifier(a.model);
  CONDENSE_CHECK(model->config().norm == nn::NormKind::LayerNorm,
                 "{}: field 'condense_norm' is '{}'; Hugging Face BERT has only LayerNorm, so this student cannot be "
                 "exported to it (condense eval and bench run it)",
                 (std::filesystem::path(a.model) / "config.json").string(), nn::to_string(model->config().norm));
  CONDENSE_CHECK(model->config().hf_compatible(),
                 "{}: fields 'condense_bottleneck_size' / 'condense_num_ffn' describe a MobileBERT-style bottleneck "
                 "student, which Hugging Face BERT cannot hold (condense eval and bench run it)",
                 (std::filesystem::path(a.model) / "config.json").string());
  if (!a.state.empty()) {
    // Weights from an interrupted run's training state, shape from the model folder.
    const auto path = std::filesystem::path(a.state) / "train_state.pt";
    CONDENSE_CHECK(std::filesystem::exists(path), "{}: no training state", path.string());
    torch::serialize::InputArchive ar, model_ar;
    try {
      ar.load_from(path.string());
      ar.read("model", model_ar);
      model->load(model_ar);
    } catch (const c10::Error& e) {
      fail("{}: cannot read training state ({})", path.string(), e.what_without_backtrace());
    }
  }
  // Shared and hashed layers are condense's storage; Hugging Face gets the equivalent full layers.
  if (model->config().condense_only_storage()) model = factorize::expand(model);
  nn::save_pretrained(model, a.out, a.model, {{"condense", "export"}});
  fmt::print("exported {} ({} parameters) -> {}\n", a.model, model->num_parameters(), a.out);
}
}  // namespace

void add_export(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  auto* sub = app.add_subcommand("export", "Write a Hugging Face folder (config.json, model.safetensors, vocab.txt)");
  sub->add_option("--model", a->model, "Model folder (config and tokenizer come from here)")->required();
  sub->add_option("--state", a->state, "Take the weights from this training-state folder instead");
  sub->add_option("--out", a->out, "Output folder")->required();
  sub->callback([a] { run(*a); });
}

}  // namespace condense::cli
