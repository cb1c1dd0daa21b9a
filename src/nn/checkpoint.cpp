#include "condense/nn/checkpoint.h"

#include <unistd.h>

#include <map>
#include <cstring>
#include <set>

#include "condense/core/error.h"
#include "condense/core/file.h"
#include "condense/io/safetensors.h"

namespace condense::nn {

namespace {

namespace fs = std::filesystem;

torch::ScalarType to_torch(io::DType d, const std::string& where) {
  switch (d) {
    case io::DType::F64: return torch::kFloat64;
    case io::DType::F32: return torch::kFloat32;
    case io::DType::F16: return torch::kFloat16;
    case io::DType::BF16: return torch::kBFloat16;
    case io::DType::I64: return torch::kInt64;
    case io::DType::I32: return torch::kInt32;
    case io::DType::I16: return torch::kInt16;
    case io::DType::I8: return torch::kInt8;
    case io::DType::U8: return torch::kUInt8;
    case io::DType::BOOL: return torch::kBool;
    default: fail("{}: dtype {} is not supported for model weights", where, io::dtype_name(d));
  }
}

io::DType from_torch(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat64: return io::DType::F64;
    case torch::kFloat32: return io::DType::F32;
    case torch::kFloat16: return io::DType::F16;
    case torch::kBFloat16: return io::DType::BF16;
    case torch::kInt64: return io::DType::I64;
    case torch::kInt32: return io::DType::I32;
    case torch::kInt8: return io::DType::I8;
    case torch::kUInt8: return io::DType::U8;
    default: fail("cannot store tensors of type {} in safetensors", c10::toString(t));
  }
}

std::string shape_str(c10::IntArrayRef s) { return fmt::format("[{}]", fmt::join(s, ",")); }

// "out/model/" -> "out/model". Staging and backup names are formed by appending to the path; with
// a trailing separator they would land inside the target, and renaming the target into itself fails.
fs::path without_trailing_separator(const fs::path& p) {
  return !p.has_filename() && p.has_relative_path() ? p.parent_path() : p;
}

// Copies a file tensor (already checked to have `param`'s shape) into `param`, converting its dtype.
void copy_from_view(torch::Tensor& param, const io::TensorView& view, const std::string& src, const std::string& name) {
  std::vector<int64_t> shape(view.shape.begin(), view.shape.end());
  auto t = torch::from_blob(const_cast<std::byte*>(view.data), shape, to_torch(view.dtype, src + ": " + name));
  param.copy_(t.to(param.dtype()));
}

// Tensors a BERT encoder of this config cannot run without.
bool is_required(const std::string& name) {
  return name.rfind("bert.embeddings.", 0) == 0 || name.rfind("bert.encoder.", 0) == 0;
}

}  // namespace

void load_weights(BertClassifier& model, const fs::path& file, LoadReport* report, const WeightOverrides* overrides) {
  auto st = io::SafetensorsFile::open(file);
  const std::string src = file.string();
  const auto& cfg = model->config();
  // A file carries either bare BertModel names or `bert.`-prefixed ones; decide once.
  const bool prefixed = st.find("bert.embeddings.word_embeddings.weight") != nullptr;
  std::set<std::string> used;
  LoadReport local;
  torch::NoGradGuard guard;
  // Buffers too: a batchnorm student's running estimates are part of the model.
  std::vector<std::pair<std::string, torch::Tensor>> targets;
  for (auto& item : model->named_parameters()) targets.emplace_back(item.key(), item.value());
  for (auto& item : model->named_buffers()) targets.emplace_back(item.key(), item.value());
  for (auto& item : targets) {
    const std::string& name = item.first;
    std::string file_name = name;
    if (!prefixed && name.rfind("bert.", 0) == 0) file_name = name.substr(5);
    if (overrides) {
      if (auto it = overrides->tensors.find(name); it != overrides->tensors.end()) {
        CONDENSE_CHECK(it->second.sizes() == item.second.sizes(), "{}: tensor '{}' has shape {} but the config needs {}",
                       src, file_name, shape_str(it->second.sizes()), shape_str(item.second.sizes()));
        item.second.copy_(it->second);
        used.insert(file_name);
        continue;
      }
    }
    const io::TensorView* view = st.find(file_name);
    if (view == nullptr) {
      CONDENSE_CHECK(!is_required(name),
                     "{}: tensor '{}' required by the config (num_hidden_layers={}, hidden_size={}) is missing", src,
                     file_name, cfg.num_hidden_layers, cfg.hidden_size);
      local.initialized.push_back(name);
      continue;
    }
    std::vector<int64_t> shape(view->shape.begin(), view->shape.end());
    auto& param = item.second;
    if (c10::IntArrayRef(shape) != param.sizes()) {
      // A task head of another width is replaced, as `transformers` does with ignore_mismatched_sizes.
      CONDENSE_CHECK(name.rfind("classifier.", 0) == 0,
                     "{}: tensor '{}' has shape {} but the config (hidden_size={}, intermediate_size={}, "
                     "vocab_size={}) needs {}",
                     src, file_name, shape_str(shape), cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size,
                     shape_str(param.sizes()));
      local.initialized.push_back(name);
      used.insert(file_name);
      continue;
    }
    copy_from_view(param, *view, src, file_name);
    CONDENSE_CHECK(torch::isfinite(param).all().item<bool>(), "{}: tensor '{}' contains NaN or Inf", src, file_name);
    used.insert(file_name);
  }
  for (const auto& v : st.tensors()) {
    if (used.count(v.name) || (overrides && overrides->consumed.count(v.name))) continue;
    // Layers beyond the config mean config and weights disagree; anything else is reported.
    const std::string bare = v.name.rfind("bert.", 0) == 0 ? v.name.substr(5) : v.name;
    CONDENSE_CHECK(bare.rfind("encoder.layer.", 0) != 0,
                   "{}: tensor '{}' does not belong to a model with num_hidden_layers={} (config and weights disagree)",
                   src, v.name, cfg.num_hidden_layers);
    local.unused.push_back(v.name);
  }
  if (report) *report = std::move(local);
}

namespace {

constexpr const char* kSparseKey = "sparsity_config";

// Decodes the sparse tensors listed in config.json into dense overrides, checking every part.
WeightOverrides decode_sparse(BertClassifier& model, const nlohmann::json& sc, const fs::path& file,
                              const std::string& where) {
  WeightOverrides o;
  std::vector<std::string> names;
  try {
    CONDENSE_CHECK(sc.at("format").get<std::string>() == "bitmap" && sc.at("format_version").get<int>() == 1,
                   "{}: unsupported format/format_version (expected bitmap, 1)", where);
    names = sc.at("tensors").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}", where, e.what());
  }
  auto st = io::SafetensorsFile::open(file);
  const std::string src = file.string();
  auto params = model->named_parameters();
  for (const auto& name : names) {
    const auto* param = params.find(name);
    CONDENSE_CHECK(param != nullptr, "{}: tensor '{}' is not a parameter of this model", where, name);
    const auto* bv = st.find(name + "_bitmap");
    const auto* vv = st.find(name + "_values");
    CONDENSE_CHECK(bv != nullptr && vv != nullptr, "{}: tensor '{}_bitmap' or '{}_values' is missing", src, name, name);
    const int64_t n = param->numel();
    CONDENSE_CHECK(bv->dtype == io::DType::U8 && bv->numel() == (n + 7) / 8,
                   "{}: tensor '{}_bitmap' must be {} uint8 bytes for a {} weight", src, name, (n + 7) / 8,
                   shape_str(param->sizes()));
    auto bytes = torch::empty({bv->numel()}, torch::kUInt8);
    std::memcpy(bytes.data_ptr(), bv->data, bv->nbytes);
    // Bit j of byte k is entry 8k + j.
    auto bits = bytes.unsqueeze(1).bitwise_right_shift(torch::arange(8, torch::kUInt8)).bitwise_and(1);
    auto mask = bits.reshape({-1}).slice(0, 0, n).to(torch::kBool);
    const int64_t nnz = mask.sum().item<int64_t>();
    CONDENSE_CHECK(vv->dtype == io::DType::F32 && vv->numel() == nnz,
                   "{}: tensor '{}_values' must hold {} float32 values (the bitmap's set bits), found {}", src, name,
                   nnz, vv->numel());
    auto values = torch::empty({nnz}, torch::kFloat32);
    std::memcpy(values.data_ptr(), vv->data, vv->nbytes);
    CONDENSE_CHECK(torch::isfinite(values).all().item<bool>(), "{}: tensor '{}_values' contains NaN or Inf", src, name);
    auto dense = torch::zeros({n}, torch::kFloat32);
    dense.masked_scatter_(mask, values);
    o.tensors[name] = dense.view(param->sizes());
    o.consumed.insert(name + "_bitmap");
    o.consumed.insert(name + "_values");
  }
  return o;
}

}  // namespace

SparseSaveReport save_sparse(BertClassifier& model, const fs::path& dir, const fs::path& tokenizer_dir,
                             const std::map<std::string, std::string>& metadata,
                             const std::map<std::string, std::string>& extra_files) {
  SparseSaveReport r;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::vector<std::string> sparse;
  torch::NoGradGuard guard;
  for (const auto& item : model->named_parameters()) {
    const auto& name = item.key();
    auto w = item.value().detach().to(torch::kFloat32).contiguous();
    const bool encoder_weight = name.rfind("bert.encoder.", 0) == 0 && w.dim() == 2;
    const int64_t n = w.numel(), nnz = encoder_weight ? w.ne(0).sum().item<int64_t>() : n;
    // Bitmap + values beat dense fp32 below 31/32 density.
    if (!encoder_weight || nnz * 32 + n > n * 32) {
      tensors.emplace_back(name, item.value().detach());
      continue;
    }
    auto flat = w.reshape({-1});
    auto mask = flat.ne(0);
    auto padded = torch::zeros({(n + 7) / 8 * 8}, torch::kUInt8);
    padded.slice(0, 0, n).copy_(mask.to(torch::kUInt8));
    auto bitmap = padded.view({-1, 8}).bitwise_left_shift(torch::arange(8, torch::kUInt8)).sum(1).to(torch::kUInt8);
    tensors.emplace_back(name + "_bitmap", bitmap);
    tensors.emplace_back(name + "_values", flat.masked_select(mask));
    sparse.push_back(name);
    r.sparse_tensors += 1;
    r.stored_values += nnz;
    r.dense_entries += n;
  }
  for (const auto& item : model->named_buffers()) tensors.emplace_back(item.key(), item.value().detach());
  auto config = model->config().to_json();
  config[kSparseKey] = {{"format", "bitmap"}, {"format_version", 1}, {"tensors", sparse}};
  auto files = extra_files;
  save_tensors_folder(tensors, config, dir, tokenizer_dir, metadata, files);
  return r;
}

BertClassifier load_classifier(const fs::path& dir, std::optional<int64_t> num_labels, LoadReport* report) {
  CONDENSE_CHECK(fs::is_directory(dir), "{}: not a model directory", dir.string());
  auto cfg = BertConfig::load(dir / "config.json");
  CONDENSE_CHECK(!cfg.extra.contains("quantization_config"),
                 "{}: field 'quantization_config': this is a quantized model, which eval, bench and inspect read; "
                 "training starts from a float model",
                 (dir / "config.json").string());
  if (num_labels) {
    CONDENSE_CHECK(*num_labels > 0, "num_labels must be positive, found {}", *num_labels);
    cfg.num_labels = *num_labels;
  }
  std::optional<nlohmann::json> sparse;
  if (cfg.extra.contains(kSparseKey)) {
    sparse = cfg.extra[kSparseKey];
    cfg.extra.erase(kSparseKey);  // a model saved again is dense unless saved with save_sparse
  }
  BertClassifier model(cfg);
  if (sparse) {
    auto overrides = decode_sparse(model, *sparse, dir / "model.safetensors", (dir / "config.json").string() + ": " + kSparseKey);
    load_weights(model, dir / "model.safetensors", report, &overrides);
  } else {
    load_weights(model, dir / "model.safetensors", report);
  }
  return model;
}

bool has_mlm_head(const fs::path& file) {
  return io::SafetensorsFile::open(file).find("cls.predictions.bias") != nullptr;
}

void load_mlm_head(BertMlmHead& head, const fs::path& file) {
  auto st = io::SafetensorsFile::open(file);
  const std::string src = file.string();
  torch::NoGradGuard guard;
  for (auto& item : head->named_parameters()) {
    const std::string name = "cls.predictions." + item.key();
    const io::TensorView* view = st.find(name);
    CONDENSE_CHECK(view != nullptr, "{}: tensor '{}' of the masked-LM head is missing", src, name);
    std::vector<int64_t> shape(view->shape.begin(), view->shape.end());
    CONDENSE_CHECK(c10::IntArrayRef(shape) == item.value().sizes(), "{}: tensor '{}' has shape {} but the model needs {}",
                   src, name, shape_str(shape), shape_str(item.value().sizes()));
    copy_from_view(item.value(), *view, src, name);
  }
}

void publish_directory(const fs::path& staging_dir, const fs::path& target) {
  const fs::path staging = without_trailing_separator(staging_dir), final_dir = without_trailing_separator(target);
  fs::path old;
  std::error_code ec;
  if (fs::exists(final_dir)) {
    old = final_dir;
    old += ".old." + std::to_string(::getpid());
    fs::rename(final_dir, old, ec);
    CONDENSE_CHECK(!ec, "{}: cannot move the existing directory aside ({})", final_dir.string(), ec.message());
  }
  fs::rename(staging, final_dir, ec);
  if (ec) {
    if (!old.empty()) fs::rename(old, final_dir);
    fail("{}: cannot publish directory ({})", final_dir.string(), ec.message());
  }
  if (!old.empty()) fs::remove_all(old);
}

void save_tensors_folder(const std::vector<std::pair<std::string, torch::Tensor>>& tensors, const nlohmann::json& config,
                         const fs::path& target, const fs::path& tokenizer_dir,
                         const std::map<std::string, std::string>& metadata,
                         const std::map<std::string, std::string>& extra_files) {
  const fs::path dir = without_trailing_separator(target);
  fs::path staging = dir;
  staging += ".partial." + std::to_string(::getpid());
  fs::remove_all(staging);
  ensure_directory(staging);
  try {
    std::vector<torch::Tensor> keep;
    std::vector<io::TensorToWrite> out;
    for (const auto& [name, value] : tensors) {
      auto t = value.detach().contiguous();
      keep.push_back(t);
      out.push_back({name, from_torch(t.scalar_type()), std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                     t.data_ptr(), t.nbytes()});
    }
    auto meta = metadata;
    meta.emplace("format", "pt");
    io::write_safetensors(staging / "model.safetensors", out, meta);
    write_file_atomic(staging / "config.json", config.dump(2) + "\n");
    for (const char* f : {"vocab.txt", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json"}) {
      if (!tokenizer_dir.empty() && fs::exists(tokenizer_dir / f)) write_file_atomic(staging / f, read_file(tokenizer_dir / f));
    }
    for (const auto& [name, contents] : extra_files) write_file_atomic(staging / name, contents);
    publish_directory(staging, dir);
  } catch (...) {
    fs::remove_all(staging);
    throw;
  }
}

void save_module_folder(torch::nn::Module& module, const nlohmann::json& config, const fs::path& target,
                        const fs::path& tokenizer_dir, const std::map<std::string, std::string>& metadata,
                        const std::map<std::string, std::string>& extra_files) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& item : module.named_parameters()) tensors.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers()) tensors.emplace_back(item.key(), item.value());
  save_tensors_folder(tensors, config, target, tokenizer_dir, metadata, extra_files);
}

namespace {
// transformers' BertConfig holds one head count and one FFN width, so a model pruned to per-layer
// shapes ships this modeling file (config.json auto_map points at it): it builds the standard BERT
// and resizes each layer's linear layers before the weights load. Transformers' attention infers
// the head count from the projection width, so nothing else changes.
constexpr const char* kPrunedBertModeling = R"PY(# Written by condense: BERT with per-layer attention heads and FFN widths (a pruned model),
# low-rank linear layers (SVD factorization) and/or a factorized word embedding (ALBERT).
# Load with AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).
import torch
from torch import nn
from torch.nn import functional as F
from transformers import BertForSequenceClassification


class LowRankLinear(nn.Module):
    """W = weight_up @ weight_down, applied as two thin products."""

    def __init__(self, n_in, n_out, rank):
        super().__init__()
        self.weight_up = nn.Parameter(torch.zeros(n_out, rank))
        self.weight_down = nn.Parameter(torch.zeros(rank, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return F.linear(F.linear(x, self.weight_down), self.weight_up, self.bias)


class FactorizedEmbedding(nn.Embedding):
    """vocab x E lookup followed by the (unregistered here) E -> hidden projection."""

    def __init__(self, vocab, e, projection, padding_idx):
        super().__init__(vocab, e, padding_idx=padding_idx)
        self._projection = [projection]

    def forward(self, ids):
        return self._projection[0](super().forward(ids))


class CondensePrunedBertForSequenceClassification(BertForSequenceClassification):
    def __init__(self, config):
        super().__init__(config)
        n = config.num_hidden_layers
        head_dim = config.hidden_size // config.num_attention_heads
        heads = getattr(config, "condense_layer_heads", None) or [config.num_attention_heads] * n
        widths = getattr(config, "condense_intermediate_sizes", None) or [config.intermediate_size] * n
        ranks = getattr(config, "condense_ranks", None) or {}
        hidden = config.hidden_size

        def linear(name, n_in, n_out):
            r = ranks.get(name, 0)
            return LowRankLinear(n_in, n_out, r) if r else nn.Linear(n_in, n_out)

        for i, (layer, h, w) in enumerate(zip(self.bert.encoder.layer, heads, widths)):
            p = f"bert.encoder.layer.{i}."
            inner = h * head_dim
            att = layer.attention.self
            att.query = linear(p + "attention.self.query", hidden, inner)
            att.key = linear(p + "attention.self.key", hidden, inner)
            att.value = linear(p + "attention.self.value", hidden, inner)
            att.num_attention_heads, att.all_head_size = h, inner
            layer.attention.output.dense = linear(p + "attention.output.dense", inner, hidden)
            layer.intermediate.dense = linear(p + "intermediate.dense", hidden, w)
            layer.output.dense = linear(p + "output.dense", w, hidden)
        e = getattr(config, "condense_embedding_size", 0) or 0
        if e:
            emb = self.bert.embeddings
            emb.word_projection = nn.Linear(e, hidden, bias=False)
            emb.word_embeddings = FactorizedEmbedding(config.vocab_size, e, emb.word_projection, config.pad_token_id)
        self.post_init()
)PY";
}  // namespace

void save_pretrained(BertClassifier& model, const fs::path& target, const fs::path& tokenizer_dir,
                     const std::map<std::string, std::string>& metadata,
                     const std::map<std::string, std::string>& extra_files) {
  auto files = extra_files;
  if (model->config().needs_modeling_file()) files[kPrunedModelingFile] = kPrunedBertModeling;
  save_module_folder(*model, model->config().to_json(), target, tokenizer_dir, metadata, files);
}

void load_module_weights(torch::nn::Module& module, const fs::path& file) {
  auto st = io::SafetensorsFile::open(file);
  const std::string src = file.string();
  torch::NoGradGuard guard;
  std::vector<std::pair<std::string, torch::Tensor>> targets;
  for (auto& item : module.named_parameters()) targets.emplace_back(item.key(), item.value());
  for (auto& item : module.named_buffers()) targets.emplace_back(item.key(), item.value());
  std::set<std::string> used;
  for (auto& [name, param] : targets) {
    const io::TensorView* view = st.find(name);
    CONDENSE_CHECK(view != nullptr, "{}: tensor '{}' required by the config is missing", src, name);
    std::vector<int64_t> shape(view->shape.begin(), view->shape.end());
    CONDENSE_CHECK(c10::IntArrayRef(shape) == param.sizes(), "{}: tensor '{}' has shape {} but the config needs {}",
                   src, name, shape_str(shape), shape_str(param.sizes()));
    copy_from_view(param, *view, src, name);
    CONDENSE_CHECK(torch::isfinite(param).all().item<bool>(), "{}: tensor '{}' contains NaN or Inf", src, name);
    used.insert(name);
  }
  for (const auto& v : st.tensors()) {
    CONDENSE_CHECK(used.count(v.name) > 0, "{}: tensor '{}' does not belong to a model of this config", src, v.name);
  }
}

std::uintmax_t checkpoint_bytes(const fs::path& dir) {
  std::error_code ec;
  auto n = fs::file_size(dir / "model.safetensors", ec);
  CONDENSE_CHECK(!ec, "{}: cannot read size ({})", (dir / "model.safetensors").string(), ec.message());
  return n;
}

}  // namespace condense::nn
