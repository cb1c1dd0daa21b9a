#include "condense/factorize/factorize.h"

#include <cmath>
#include <set>

#include "condense/core/error.h"

namespace condense::factorize {

namespace {

// The encoder's linear layers within a layer, and the block each belongs to.
constexpr const char* kDensePaths[] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                       "attention.output.dense", "intermediate.dense", "output.dense"};
constexpr const char* kNormPaths[] = {"attention.output.LayerNorm", "output.LayerNorm"};

std::string block_of(const std::string& path) { return path.rfind("attention.", 0) == 0 ? "attention" : "ffn"; }

std::string layer_name(int64_t i, const std::string& path) {
  return "bert.encoder.layer." + std::to_string(i) + "." + path;
}

nn::Dense dense_of(nn::BertClassifier& m, int64_t i, const std::string& path) {
  auto l = m->layer(i);
  if (path == "attention.self.query") return l->attention->self->query;
  if (path == "attention.self.key") return l->attention->self->key;
  if (path == "attention.self.value") return l->attention->self->value;
  if (path == "attention.output.dense") return l->attention->output->dense;
  if (path == "intermediate.dense") return l->intermediate->dense;
  return l->output->dense;
}

nn::Norm norm_of(nn::BertClassifier& m, int64_t i, const std::string& path) {
  auto l = m->layer(i);
  return path == "output.LayerNorm" ? l->output->LayerNorm : l->attention->output->LayerNorm;
}

// Copies the source model into `target` block by block: every encoder linear layer through
// Dense::copy_from (which fits low-rank and hashed storage), norms directly; a block the target
// shares takes the mean over the source's layers (unless `fresh`). Parameters outside the
// encoder are copied by name, except those `skip` names.
void transfer(nn::BertClassifier& src, nn::BertClassifier& target, bool fresh,
              const std::set<std::string>& skip = {}) {
  torch::NoGradGuard ng;
  const auto& tc = target->config();
  const int64_t L = tc.num_hidden_layers;
  CONDENSE_CHECK(L == src->config().num_hidden_layers, "layer counts differ");
  for (int64_t i = 0; i < L; ++i) {
    for (const char* path : kDensePaths) {
      const bool shared = tc.shares(block_of(path));
      if (shared && i > 0) continue;  // the same module as layer 0's
      if (shared && fresh) continue;  // keeps its fresh initialisation
      torch::Tensor w, b;
      if (shared) {
        for (int64_t j = 0; j < L; ++j) {
          auto d = dense_of(src, j, path);
          w = w.defined() ? w + d->effective_weight() : d->effective_weight().clone();
          b = b.defined() ? b + d->bias : d->bias.clone();
        }
        w = w / static_cast<double>(L);
        b = b / static_cast<double>(L);
      } else {
        auto d = dense_of(src, i, path);
        w = d->effective_weight();
        b = d->bias;
      }
      dense_of(target, i, path)->copy_from(w, b);
    }
    for (const char* path : kNormPaths) {
      const bool shared = tc.shares(block_of(path));
      if (shared && (i > 0 || fresh)) continue;
      auto t = norm_of(target, i, path);
      auto sp = t->named_parameters();
      auto sb = t->named_buffers();
      auto fill = [&](torch::OrderedDict<std::string, torch::Tensor>& dst, bool buffers) {
        for (auto& item : dst) {
          torch::Tensor acc;
          const int64_t from = shared ? 0 : i, to = shared ? L : i + 1;
          for (int64_t j = from; j < to; ++j) {
            auto n = norm_of(src, j, path);
            auto v = buffers ? n->named_buffers()[item.key()] : n->named_parameters()[item.key()];
            acc = acc.defined() ? acc + v : v.clone();
          }
          item.value().copy_(acc / static_cast<double>(to - from));
        }
      };
      fill(sp, false);
      fill(sb, true);
    }
  }
  auto from = src->named_parameters();
  for (auto& p : target->named_parameters()) {
    if (p.key().rfind("bert.encoder.", 0) == 0 || skip.count(p.key())) continue;
    p.value().copy_(from[p.key()]);
  }
  auto bfrom = src->named_buffers();
  for (auto& b : target->named_buffers()) {
    if (b.key().rfind("bert.encoder.", 0) == 0 || skip.count(b.key())) continue;
    b.value().copy_(bfrom[b.key()]);
  }
}

void check_plain(nn::BertClassifier& m, const char* what) {
  const auto& c = m->config();
  CONDENSE_CHECK(c.bottleneck_size == 0 && c.num_ffn == 1, "{} needs plain BERT layers, not a bottleneck student", what);
  CONDENSE_CHECK(c.norm != nn::NormKind::WeightNorm && c.norm != nn::NormKind::CosineNorm,
                 "{} needs plain linear weights, not {}", what, nn::to_string(c.norm));
}

}  // namespace

void FactorizeOptions::validate() const {
  CONDENSE_CHECK(rank >= 0, "factorize option 'rank' must be >= 0, found {}", rank);
  CONDENSE_CHECK(energy >= 0 && energy < 1, "factorize option 'energy' must be in [0, 1), found {}", energy);
  CONDENSE_CHECK(!(rank > 0 && energy > 0), "factorize options 'rank' and 'energy' exclude each other");
  CONDENSE_CHECK(embedding_size >= 0, "factorize option 'embedding_size' must be >= 0, found {}", embedding_size);
  CONDENSE_CHECK(rank > 0 || energy > 0 || embedding_size > 0,
                 "factorize needs 'rank', 'energy' or 'embedding_size'");
}

nn::BertClassifier factorize(nn::BertClassifier& model, const FactorizeOptions& o, FactorizeReport* report) {
  o.validate();
  check_plain(model, "factorization");
  const auto& c = model->config();
  CONDENSE_CHECK(c.share.empty() && c.hash_buckets.empty(),
                 "factorization needs an unshared, unhashed model (condense_share / condense_hash_buckets)");
  FactorizeReport rep;
  nn::BertConfig nc = c;
  torch::NoGradGuard ng;
  if (o.rank > 0 || o.energy > 0) {
    nc.ranks.clear();
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      for (const char* path : kDensePaths) {
        auto d = dense_of(model, i, path);
        auto w = d->effective_weight().to(torch::kDouble);
        const int64_t out = w.size(0), in = w.size(1);
        auto sv = torch::linalg_svdvals(w);
        auto energy = sv.pow(2).cumsum(0) / sv.pow(2).sum();
        int64_t r = o.rank;
        if (o.energy > 0) r = (energy < o.energy).sum().item<int64_t>() + 1;
        r = std::min<int64_t>(r, sv.size(0));
        const auto name = layer_name(i, path);
        if (r * (in + out) >= in * out) {
          rep.kept_dense.push_back(name);
          continue;
        }
        nc.ranks[name] = r;
        rep.ranks[name] = r;
        rep.energy_kept[name] = energy[r - 1].item<double>();
      }
    }
  }
  if (o.embedding_size > 0) {
    CONDENSE_CHECK(o.embedding_size < c.hidden_size, "factorize option 'embedding_size' ({}) must be below hidden_size ({})",
                   o.embedding_size, c.hidden_size);
    nc.embedding_size = o.embedding_size;
  }
  nc.validate("factorized model");
  nn::BertClassifier out(nc);
  std::set<std::string> skip;
  if (o.embedding_size > 0) {
    // ALBERT's factorization fitted to the trained table: W ≈ (U_E √S)(√S V_Eᵀ).
    const int64_t e = o.embedding_size;
    auto w = (c.embedding_size > 0 ? torch::matmul(model->bert->embeddings->word_embeddings->weight,
                                                   model->bert->embeddings->word_projection->weight.t())
                                   : model->bert->embeddings->word_embeddings->weight)
                 .to(torch::kDouble);
    auto [u, sv, vh] = torch::linalg_svd(w, false);
    auto root = sv.slice(0, 0, e).sqrt();
    out->bert->embeddings->word_embeddings->weight.copy_(u.slice(1, 0, e) * root.unsqueeze(0));
    out->bert->embeddings->word_projection->weight.copy_((vh.slice(0, 0, e) * root.unsqueeze(1)).t());
    skip = {"bert.embeddings.word_embeddings.weight", "bert.embeddings.word_projection.weight"};
  }
  transfer(model, out, false, skip);
  if (report) *report = std::move(rep);
  return out;
}

void ShareOptions::validate() const {
  CONDENSE_CHECK(mode.empty() || mode == "all" || mode == "attention" || mode == "ffn",
                 "share option 'mode' must be all, attention or ffn, found '{}'", mode);
  CONDENSE_CHECK(hash_compression == 0 || hash_compression >= 1,
                 "share option 'hash_compression' must be 0 (off) or >= 1, found {}", hash_compression);
  CONDENSE_CHECK(!mode.empty() || hash_compression > 0, "share needs a 'mode' or 'hash_compression'");
  CONDENSE_CHECK(!from_scratch || !mode.empty(), "share option 'from_scratch' applies to cross-layer sharing");
}

nn::BertClassifier share(nn::BertClassifier& model, const ShareOptions& o) {
  o.validate();
  check_plain(model, "weight sharing");
  const auto& c = model->config();
  CONDENSE_CHECK(c.share.empty() && c.ranks.empty() && c.hash_buckets.empty() && !c.per_layer_shapes(),
                 "weight sharing starts from a plain model (not shared, low-rank, hashed or pruned per layer)");
  nn::BertConfig nc = c;
  nc.share = o.mode;
  if (o.hash_compression > 0) {
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      for (const char* path : kDensePaths) {
        if (nc.shares(block_of(path)) && i > 0) continue;
        auto d = dense_of(model, i, path);
        const double n = static_cast<double>(d->out_features() * d->in_features());
        nc.hash_buckets[layer_name(i, path)] = std::max<int64_t>(1, std::llround(n / o.hash_compression));
      }
    }
  }
  nc.validate("shared model");
  nn::BertClassifier out(nc);
  transfer(model, out, o.from_scratch);
  return out;
}

nn::BertClassifier expand(nn::BertClassifier& model) {
  nn::BertConfig nc = model->config();
  nc.share.clear();
  nc.hash_buckets.clear();
  nn::BertClassifier out(nc);
  // Every target layer is unshared, so transfer copies layer i from the source's layer i (which
  // for a shared source is layer 0's module) and expands hashed matrices through effective_weight.
  // Low-rank layers stay low-rank: copy_from of U·V at the same rank is exact up to rounding.
  transfer(model, out, false);
  return out;
}

}  // namespace condense::factorize
