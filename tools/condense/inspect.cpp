// condense inspect: parameters by module, bytes on disk, dtypes of a checkpoint.
#include <map>
#include <memory>

#include <fmt/ranges.h>

#include "commands.h"
#include "common.h"
#include "condense/io/safetensors.h"
#include "condense/nn/checkpoint.h"
#include "condense/quantize/quantize.h"

namespace condense::cli {

namespace {
struct InspectArgs {
  std::string model;
  bool json = false;
  bool tensors = false;
};

// Groups "bert.encoder.layer.3.attention.self.query.weight" under "encoder.layer.3".
std::string module_of(std::string name) {
  if (name.rfind("bert.", 0) == 0) name = name.substr(5);
  std::size_t parts = name.rfind("encoder.layer.", 0) == 0 ? 3 : 1;
  std::size_t pos = 0;
  for (std::size_t i = 0; i < parts && pos != std::string::npos; ++i) pos = name.find('.', pos + (i ? 1 : 0));
  return pos == std::string::npos ? name : name.substr(0, pos);
}

void run(const InspectArgs& a) {
  const std::filesystem::path dir(a.model);
  auto cfg = nn::BertConfig::load(dir / "config.json");
  auto st = io::SafetensorsFile::open(dir / "model.safetensors");
  // A quantized folder stores a weight as packed codes plus scales: count its logical weights
  // (the shape in quantization_config) and put every byte of its parts on the module.
  std::map<std::string, int64_t> logical;  // "<layer>.weight" -> weights it stands for
  std::map<std::string, std::string> schemes;
  if (cfg.extra.contains("quantization_config")) {
    quantize::QuantizedModel q;
    quantize::load(dir, &q);  // validates every part before anything is reported
    for (const auto& [name, l] : q.layers) {
      logical[name + ".weight"] = l.weight.numel();
      schemes[name.rfind("bert.", 0) == 0 ? name.substr(5) : name] = l.weight.scheme.name();
    }
  }
  auto is_part = [&](const std::string& n) {
    for (const char* suffix : {"_scale", "_zero_point", "_codebook"}) {
      const std::string s(suffix);
      if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0 &&
          logical.count(n.substr(0, n.size() - s.size()))) return true;
    }
    return n.size() > 12 && n.compare(n.size() - 12, 12, ".input_range") == 0;
  };
  struct Row { int64_t params = 0; std::size_t bytes = 0; std::set<std::string> dtypes; };
  std::map<std::string, Row> rows;
  std::vector<std::string> order;
  int64_t total = 0;
  for (const auto& t : st.tensors()) {
    auto m = module_of(t.name);
    if (!rows.count(m)) order.push_back(m);
    auto& r = rows[m];
    const int64_t n = logical.count(t.name) ? logical[t.name] : is_part(t.name) ? 0 : t.numel();
    r.params += n;
    r.bytes += t.nbytes;
    if (!is_part(t.name)) r.dtypes.insert(std::string(io::dtype_name(t.dtype)));
    total += n;
  }
  const auto file_bytes = nn::checkpoint_bytes(dir);
  // Per tensor: a packed weight's bits per weight count its codes against the weights it holds;
  // its scales and zero points are listed as their own rows (0 weights).
  nlohmann::json tensor_rows = nlohmann::json::array();
  for (const auto& t : st.tensors()) {
    const int64_t n = logical.count(t.name) ? logical[t.name] : is_part(t.name) ? 0 : t.numel();
    tensor_rows.push_back({{"tensor", t.name}, {"dtype", std::string(io::dtype_name(t.dtype))}, {"shape", t.shape},
                           {"bytes", t.nbytes}, {"weights", n},
                           {"bits_per_weight", n > 0 ? 8.0 * static_cast<double>(t.nbytes) / n : 0.0}});
  }
  if (a.json) {
    nlohmann::json j{{"model", a.model}, {"parameters", total}, {"file_bytes", file_bytes},
                     {"layers", cfg.num_hidden_layers}, {"hidden_size", cfg.hidden_size},
                     {"heads", cfg.num_attention_heads}, {"intermediate_size", cfg.intermediate_size},
                     {"vocab_size", cfg.vocab_size}, {"num_labels", cfg.num_labels}};
    for (const auto& m : order) {
      j["modules"].push_back({{"module", m}, {"parameters", rows[m].params}, {"bytes", rows[m].bytes},
                              {"bits_per_weight", 8.0 * static_cast<double>(rows[m].bytes) / std::max<int64_t>(1, rows[m].params)},
                              {"dtypes", std::vector<std::string>(rows[m].dtypes.begin(), rows[m].dtypes.end())}});
    }
    if (!schemes.empty()) j["quantized_layers"] = schemes;
    if (a.tensors) j["tensors"] = tensor_rows;
    fmt::print("{}\n", j.dump(2));
    return;
  }
  // Pruned models list their per-layer shapes; factorized and shared ones say how they store weights.
  auto per_layer = [&](const std::vector<int64_t>& v, int64_t uniform) {
    return v.empty() ? std::to_string(uniform) : fmt::format("{} (per layer)", fmt::join(v, "/"));
  };
  fmt::print("{}: BERT {} layers, hidden {}, heads {}, FFN {}, vocab {}, {} labels\n", a.model, cfg.num_hidden_layers,
             cfg.hidden_size, per_layer(cfg.layer_heads, cfg.num_attention_heads),
             per_layer(cfg.layer_intermediate, cfg.intermediate_size), cfg.vocab_size, cfg.num_labels);
  std::vector<std::string> storage;
  if (!cfg.ranks.empty()) storage.push_back(fmt::format("{} low-rank layers", cfg.ranks.size()));
  if (!cfg.hash_buckets.empty()) storage.push_back(fmt::format("{} hashed layers", cfg.hash_buckets.size()));
  if (cfg.embedding_size > 0) storage.push_back(fmt::format("factorized embeddings (E = {})", cfg.embedding_size));
  if (!cfg.share.empty()) storage.push_back(fmt::format("cross-layer sharing: {}", cfg.share));
  if (cfg.extra.contains("sparsity_config")) storage.push_back("sparse weights (bitmap + values)");
  if (!storage.empty()) fmt::print("storage: {}\n", fmt::join(storage, ", "));
  fmt::print("| module | parameters | bytes | bits/weight | dtype |\n|---|---:|---:|---:|---|\n");
  for (const auto& m : order) {
    fmt::print("| {} | {} | {} | {:.2f} | {} |\n", m, rows[m].params, rows[m].bytes,
               8.0 * static_cast<double>(rows[m].bytes) / std::max<int64_t>(1, rows[m].params), fmt::join(rows[m].dtypes, ","));
  }
  fmt::print("| total | {} | {} ({}) on disk | {:.2f} | |\n", total, file_bytes, human_bytes(static_cast<double>(file_bytes)),
             8.0 * static_cast<double>(file_bytes) / std::max<int64_t>(1, total));
  if (a.tensors) {
    fmt::print("\n| tensor | dtype | shape | bytes | weights | bits/weight |\n|---|---|---|---:|---:|---:|\n");
    for (const auto& r : tensor_rows) {
      fmt::print("| {} | {} | [{}] | {} | {} | {:.2f} |\n", r["tensor"].get<std::string>(), r["dtype"].get<std::string>(),
                 fmt::join(r["shape"].get<std::vector<int64_t>>(), ", "), r["bytes"].get<std::size_t>(),
                 r["weights"].get<int64_t>(), r["bits_per_weight"].get<double>());
    }
  }
  if (!schemes.empty()) {
    fmt::print("\nquantized layers:\n");
    for (const auto& [name, scheme] : schemes) fmt::print("  {}: {}\n", name, scheme);
  }
}
}  // namespace

void add_inspect(CLI::App& app) {
  auto a = std::make_shared<InspectArgs>();
  auto* sub = app.add_subcommand("inspect", "Parameters by module, bytes on disk and dtypes of a checkpoint");
  sub->add_option("--model", a->model, "Model folder")->required();
  sub->add_flag("--json", a->json, "Print JSON instead of a table");
  sub->add_flag("--tensors", a->tensors, "One row per stored tensor: dtype, shape, bytes, bits per weight");
  sub->callback([a] { run(*a); });
}

}  // namespace condense::cli
