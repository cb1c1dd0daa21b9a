// DualTrain + SharedProj (Zhao et al. 2021, "Extremely Small BERT Models from Mixed-Vocabulary
// Training"), applied to task distillation: see distill.h.
#include <random>

#include "condense/core/error.h"
#include "condense/distill/distill.h"
#include "condense/text/tokenizer.h"

namespace condense::distill {

train::EncodedDataset encode_mixed_vocab(const data::Dataset& d, const text::WordPieceTokenizer& ttok,
                                         const text::WordPieceTokenizer& stok, const MixedVocabOptions& o) {
  CONDENSE_CHECK(o.mix_prob >= 0 && o.mix_prob <= 1, "dualtrain option 'mix_prob' must be in [0, 1], found {}",
                 o.mix_prob);
  // Labels, scores and the teacher's pad id as for the plain encoding; the ids are rebuilt below.
  auto out = train::encode(d, ttok, o.max_length);
  const int64_t offset = ttok.vocab_size();
  const int64_t s_unk = stok.unk_id();
  for (std::size_t n = 0; n < d.examples.size(); ++n) {
    // One stream per example: the mix does not depend on which other examples are encoded.
    std::mt19937_64 rng(o.seed * 1000003ULL + n);
    std::uniform_real_distribution<double> coin(0.0, 1.0);
    auto segment = [&](const std::string& text) {
      const auto pieces = ttok.tokenize(text);
      std::vector<int64_t> ids;
      for (std::size_t i = 0; i < pieces.size();) {
        std::size_t j = i + 1;
        while (j < pieces.size() && pieces[j].rfind("##", 0) == 0) ++j;
        bool unknown = false;
        std::string word;
        for (std::size_t k = i; k < j; ++k) {
          unknown |= pieces[k] == "[UNK]";
          word += k == i ? pieces[k] : pieces[k].substr(2);
        }
        bool student = !unknown && coin(rng) < o.mix_prob;
        if (student) {
          // The word is already normalised and split by the teacher's basic tokenizer, whose
          // settings the student's vocabulary shares, so the student splits only into pieces.
          auto sids = stok.convert_tokens_to_ids(stok.tokenize(word));
          student = !sids.empty() && std::find(sids.begin(), sids.end(), s_unk) == sids.end();
          if (student) {
            for (auto id : sids) ids.push_back(id + offset);
          }
        }
        if (!student) {
          auto tids = ttok.convert_tokens_to_ids(std::vector<std::string>(pieces.begin() + static_cast<std::ptrdiff_t>(i),
                                                                          pieces.begin() + static_cast<std::ptrdiff_t>(j)));
          ids.insert(ids.end(), tids.begin(), tids.end());
        }
        i = j;
      }
      return ids;
    };
    const auto& ex = d.examples[n];
    auto a = segment(ex.text_a);
    std::vector<int64_t> b;
    if (ex.text_b) b = segment(*ex.text_b);
    const int specials = ex.text_b ? 3 : 2;
    CONDENSE_CHECK(o.max_length >= specials, "max_length {} cannot hold the special tokens", o.max_length);
    text::truncate_longest_first(a, ex.text_b ? &b : nullptr, static_cast<std::size_t>(o.max_length - specials));
    auto& ids = out.input_ids[n];
    auto& types = out.token_type_ids[n];
    ids.assign(1, ttok.cls_id());
    ids.insert(ids.end(), a.begin(), a.end());
    ids.push_back(ttok.sep_id());
    types.assign(ids.size(), 0);
    if (ex.text_b) {
      ids.insert(ids.end(), b.begin(), b.end());
      ids.push_back(ttok.sep_id());
      types.resize(ids.size(), 1);
    }
  }
  return out;
}

void DualTrainOptions::validate() const {
  CONDENSE_CHECK(shared_proj == "up" || shared_proj == "down" || shared_proj == "none",
                 "dualtrain option 'shared_proj' must be up, down or none, found '{}'", shared_proj);
  CONDENSE_CHECK(dual_weight >= 0, "dualtrain option 'dual_weight' must be >= 0, found {}", dual_weight);
  CONDENSE_CHECK(proj_weight >= 0, "dualtrain option 'proj_weight' must be >= 0, found {}", proj_weight);
  CONDENSE_CHECK(mixed.mix_prob >= 0 && mixed.mix_prob <= 1, "dualtrain option 'mix_prob' must be in [0, 1], found {}",
                 mixed.mix_prob);
}

SharedProjectionImpl::SharedProjectionImpl(int64_t sh, int64_t th, int64_t sf, int64_t tf, bool up_, uint64_t seed)
    : up(up_) {
  torch::manual_seed(seed);
  // Orthonormal columns (up, [teacher, student]) or rows (down, [student, teacher]): a projection
  // that starts by preserving lengths; the identity when the widths agree.
  auto make = [&](int64_t s, int64_t t) {
    auto p = up ? torch::empty({t, s}) : torch::empty({s, t});
    if (s == t) {
      p = torch::eye(s);
    } else {
      torch::NoGradGuard ng;
      torch::nn::init::orthogonal_(p);
    }
    return p;
  };
  hidden = register_parameter("hidden", make(sh, th));
  ffn = register_parameter("ffn", make(sf, tf));
}

namespace {

void check_plain(nn::BertClassifier& m, const char* who) {
  const auto& c = m->config();
  CONDENSE_CHECK(c.norm == nn::NormKind::LayerNorm && c.bottleneck_size == 0 && c.num_ffn == 1 && c.share.empty() &&
                     c.layer_heads.empty() && c.layer_intermediate.empty() && c.embedding_size == 0,
                 "DualTrain's shared projections align plain BERT layers; the {} has another layout "
                 "(norm, bottleneck, stacked FFNs, sharing, per-layer widths or factorized embeddings)",
                 who);
}

}  // namespace

torch::Tensor shared_projection_loss(nn::BertClassifier& student, nn::BertClassifier& teacher,
                                     const std::vector<LayerPair>& pairs, SharedProjection& proj) {
  auto sp = student->named_parameters();
  auto tp = teacher->named_parameters();
  torch::Tensor total = torch::zeros({});
  int64_t tensors = 0;
  for (const auto& pr : pairs) {
    const std::string sprefix = "bert.encoder.layer." + std::to_string(pr.student - 1) + ".";
    const std::string tprefix = "bert.encoder.layer." + std::to_string(pr.teacher - 1) + ".";
    for (const auto& item : sp) {
      if (item.key().rfind(sprefix, 0) != 0) continue;
      const std::string rest = item.key().substr(sprefix.size());
      const auto* t = tp.find(tprefix + rest);
      CONDENSE_CHECK(t != nullptr, "teacher has no parameter {} to align {} with", tprefix + rest, item.key());
      // Which widths a tensor's dimensions have: the FFN's for the intermediate layer's rows and
      // the output layer's columns, the hidden width otherwise.
      const bool out_ffn = rest.rfind("intermediate.dense.", 0) == 0;
      const bool in_ffn = rest == "output.dense.weight";
      const auto& p_out = out_ffn ? proj->ffn : proj->hidden;
      const auto& p_in = in_ffn ? proj->ffn : proj->hidden;
      const auto& w = item.value();
      torch::Tensor pred, target;
      if (proj->up) {
        pred = w.dim() == 2 ? p_out.matmul(w).matmul(p_in.t()) : p_out.matmul(w);
        target = t->detach();
      } else {
        auto td = t->detach();
        pred = w;
        target = td.dim() == 2 ? p_out.matmul(td).matmul(p_in.t()) : p_out.matmul(td);
      }
      // Relative squared error: every tensor counts alike whatever its size and scale (a mean
      // over entries would leave the alignment's gradient far below the task's); entries of
      // 1e-2 set the floor, so that an all-zero target (a fresh bias) does not blow it up.
      total = total + (pred - target).pow(2).sum() / (target.pow(2).sum() + 1e-4 * static_cast<double>(target.numel()));
      ++tensors;
    }
  }
  return tensors == 0 ? total : total / static_cast<double>(tensors);
}

torch::Tensor mixed_vocab_logits(nn::BertClassifier& teacher, nn::BertClassifier& student, SharedProjection& proj,
                                 const torch::Tensor& mixed_ids, const torch::Tensor& token_type_ids,
                                 const torch::Tensor& attention_mask) {
  const int64_t offset = teacher->config().vocab_size;
  auto is_student = mixed_ids >= offset;
  auto tid = torch::where(is_student, torch::zeros_like(mixed_ids), mixed_ids);
  auto sid = torch::where(is_student, mixed_ids - offset, torch::zeros_like(mixed_ids));
  auto& te = teacher->bert->embeddings;
  auto tw = te->word_embeddings(tid);
  auto sw = student->bert->embeddings->word_embeddings(sid);
  // Student embeddings into the teacher's width: P·e up, Pᵀ·e down (P: [student, teacher]).
  sw = proj->up ? sw.matmul(proj->hidden.t()) : sw.matmul(proj->hidden);
  auto words = torch::where(is_student.unsqueeze(-1), sw, tw);
  const torch::Tensor token_mask =
      teacher->config().norm == nn::NormKind::BatchNorm ? attention_mask : torch::Tensor();
  return teacher->forward_embedded(te->forward_words(words, token_type_ids, token_mask), attention_mask).logits;
}

train::TrainResult dual_train(nn::BertClassifier& student, nn::BertClassifier& teacher,
                              const train::EncodedDataset& train_set, const train::EncodedDataset& mixed,
                              const DistillOptions& o, const DualTrainOptions& dual, const torch::Tensor& teacher_logits) {
  o.validate();
  dual.validate();
  CONDENSE_CHECK(o.layer_losses.empty() && !o.uses_mlm() && !o.progressive,
                 "DualTrain distils predictions plus its own terms; layer losses, masked-LM terms and progressive "
                 "training are not combined with it");
  CONDENSE_CHECK(mixed.size() == train_set.size(), "mixed-vocabulary data has {} examples but the training set {}",
                 mixed.size(), train_set.size());
  CONDENSE_CHECK(teacher_logits.defined() && teacher_logits.size(0) == static_cast<int64_t>(train_set.size()),
                 "DualTrain needs the teacher's cached logits for every training example");
  CONDENSE_CHECK(student->config().num_labels == teacher->config().num_labels,
                 "student has {} outputs but the teacher has {}", student->config().num_labels,
                 teacher->config().num_labels);
  check_plain(student, "student");
  check_plain(teacher, "teacher");
  const auto& sc = student->config();
  const auto& tc = teacher->config();
  const auto pairs = resolve_layer_map(o.layer_map, sc.num_hidden_layers, tc.num_hidden_layers);
  auto proj = SharedProjection(sc.hidden_size, tc.hidden_size, sc.intermediate_size, tc.intermediate_size,
                               dual.shared_proj != "down", o.train.seed);
  // The teacher is fixed: its parameters leave autograd for the run (the mixed-input term's
  // gradient goes through it to the student's embeddings and the projection only).
  teacher->eval();
  std::vector<std::pair<torch::Tensor, bool>> frozen;
  for (auto& p : teacher->parameters()) {
    frozen.emplace_back(p, p.requires_grad());
    p.requires_grad_(false);
  }
  struct Restore {
    std::vector<std::pair<torch::Tensor, bool>>& f;
    ~Restore() {
      for (auto& [p, r] : f) p.requires_grad_(r);
    }
  } restore{frozen};
  const bool align = dual.shared_proj != "none" && dual.proj_weight > 0;
  return train::train_loop(
      student, train_set, o.train,
      [&](nn::BertClassifier& m, const train::Batch& b) {
        auto t = teacher_logits.index_select(0, b.indices);
        auto out = m->forward(b.input_ids, b.token_type_ids, b.attention_mask);
        auto loss = o.prediction_weight * distillation_loss(out.logits, t, b, o);
        if (dual.dual_weight > 0) {
          auto idx = b.indices.contiguous();
          std::vector<std::size_t> rows(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
          auto mb = train::make_batch(mixed, rows);
          auto ml = mixed_vocab_logits(teacher, m, proj, mb.input_ids, mb.token_type_ids, mb.attention_mask);
          loss = loss + dual.dual_weight * soft_target_loss(ml, t, o.temperature_at(b));
        }
        if (align) loss = loss + dual.proj_weight * shared_projection_loss(m, teacher, pairs, proj);
        return loss;
      },
      proj.ptr());
}

}  // namespace condense::distill
