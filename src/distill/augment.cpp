// Transfer-set augmentation: TinyBERT's embedding-neighbour replacement (Jiao et al. 2020) and
// Tang et al. 2019's masking, word swaps and n-gram sampling.
#include <algorithm>
#include <cctype>
#include <random>
#include <set>
#include <unordered_map>

#include "condense/core/error.h"
#include "condense/distill/distill.h"

namespace condense::distill {

namespace {

// std::mt19937_64's output is fixed by the standard; the draws below use it directly so a seed
// gives the same variants with any standard library (as data::take_subset does).
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::size_t p = 0;
  while (p < text.size()) {
    auto q = text.find(' ', p);
    if (q == std::string::npos) q = text.size();
    if (q > p) words.push_back(text.substr(p, q - p));
    p = q + 1;
  }
  return words;
}

std::string join_words(const std::vector<std::string>& words, std::size_t from, std::size_t to) {
  std::string out;
  for (std::size_t i = from; i < to; ++i) out += (i == from ? "" : " ") + words[i];
  return out;
}

// A whole-word piece: lower-case ASCII letters only (no "##" continuation, special token,
// punctuation or number), the only pieces augmentation replaces or uses as replacements.
bool whole_word(const std::string& t) {
  if (t.empty()) return false;
  for (char c : t) {
    if (c < 'a' || c > 'z') return false;
  }
  return true;
}

}  // namespace

data::Dataset augment_dataset(const data::Dataset& d, const text::WordPieceTokenizer& tok,
                              const torch::Tensor& emb, const AugmentOptions& o) {
  CONDENSE_CHECK(o.per_example >= 0, "augment option 'per_example' must be >= 0, found {}", o.per_example);
  CONDENSE_CHECK(o.replace_prob >= 0 && o.replace_prob <= 1, "augment option 'replace_prob' must be in [0,1], found {}",
                 o.replace_prob);
  CONDENSE_CHECK(o.neighbours > 0, "augment option 'neighbours' must be positive, found {}", o.neighbours);
  CONDENSE_CHECK(emb.dim() == 2 && emb.size(0) == tok.vocab_size(),
                 "augmentation needs word embeddings with one row per vocabulary entry ({}), found {}",
                 tok.vocab_size(), fmt::format("{}", fmt::join(emb.sizes(), "x")));
  // Candidate rows, unit-normalised, so one matrix product gives every cosine similarity.
  std::vector<int64_t> cand;
  for (int64_t i = 0; i < tok.vocab_size(); ++i) {
    if (whole_word(tok.id_to_token(i))) cand.push_back(i);
  }
  CONDENSE_CHECK(static_cast<int64_t>(cand.size()) > 1, "augmentation: the vocabulary has no whole-word pieces");
  torch::NoGradGuard guard;
  auto cand_ids = torch::tensor(cand, torch::kInt64);
  const auto table = emb.detach().to(torch::kFloat32);
  auto unit = torch::nn::functional::normalize(table.index_select(0, cand_ids),
                                               torch::nn::functional::NormalizeFuncOptions().dim(1));
  const int64_t k = std::min<int64_t>(o.neighbours, static_cast<int64_t>(cand.size()) - 1);
  std::unordered_map<std::string, std::vector<std::string>> cache;  // word -> its neighbours
  auto neighbours_of = [&](const std::string& word) -> const std::vector<std::string>& {
    auto it = cache.find(word);
    if (it != cache.end()) return it->second;
    std::vector<std::string> out;
    const auto pieces = tok.tokenize(word);
    if (pieces.size() == 1 && whole_word(pieces[0])) {
      const int64_t id = tok.token_to_id(pieces[0]);
      auto sims = torch::mv(unit, torch::nn::functional::normalize(
                                      table[id],
                                      torch::nn::functional::NormalizeFuncOptions().dim(0)));
      auto top = std::get<1>(sims.topk(k + 1));
      for (int64_t j = 0; j < top.size(0); ++j) {
        const int64_t other = cand[static_cast<std::size_t>(top[j].item<int64_t>())];
        if (other != id && static_cast<int64_t>(out.size()) < k) out.push_back(tok.id_to_token(other));
      }
    }
    return cache.emplace(word, std::move(out)).first->second;
  };
  std::mt19937_64 rng(o.seed);
  auto uniform = [&] { return uniform01(rng); };
  auto vary = [&](const std::string& text) {
    std::string out;
    std::size_t p = 0;
    while (p <= text.size()) {
      auto q = text.find(' ', p);
      if (q == std::string::npos) q = text.size();
      std::string word = text.substr(p, q - p);
      if (!word.empty()) {
        std::string lower = word;
        for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        const auto& nb = neighbours_of(lower);
        if (!nb.empty() && uniform() < o.replace_prob) word = nb[rng() % nb.size()];
      }
      out += (p == 0 ? "" : " ") + word;
      p = q + 1;
    }
    return out;
  };
  data::Dataset out{d.task, d.source, d.examples};
  out.examples.reserve(d.examples.size() * static_cast<std::size_t>(1 + o.per_example));
  for (const auto& e : d.examples) {
    for (int64_t v = 0; v < o.per_example; ++v) {
      data::Example x = e;
      x.text_a = vary(e.text_a);
      if (e.text_b) x.text_b = vary(*e.text_b);
      out.examples.push_back(std::move(x));
    }
  }
  return out;
}

data::Dataset tang_augment_dataset(const data::Dataset& d, const TangAugmentOptions& o) {
  auto probability = [](double v, const char* field) {
    CONDENSE_CHECK(v >= 0 && v <= 1, "augment option '{}' must be in [0,1], found {}", field, v);
  };
  CONDENSE_CHECK(o.per_example >= 0, "augment option 'per_example' must be >= 0, found {}", o.per_example);
  probability(o.mask_prob, "mask_prob");
  probability(o.swap_prob, "swap_prob");
  probability(o.ngram_prob, "ngram_prob");
  CONDENSE_CHECK(o.mask_prob + o.swap_prob <= 1, "augment options 'mask_prob' + 'swap_prob' must not exceed 1, found {}",
                 o.mask_prob + o.swap_prob);
  CONDENSE_CHECK(o.max_ngram > 0, "augment option 'max_ngram' must be positive, found {}", o.max_ngram);
  // Every word occurrence of the set, so swaps follow the text's own word frequencies.
  std::vector<std::string> pool;
  for (const auto& e : d.examples) {
    for (auto& w : split_words(e.text_a)) pool.push_back(std::move(w));
    if (e.text_b) {
      for (auto& w : split_words(*e.text_b)) pool.push_back(std::move(w));
    }
  }
  std::mt19937_64 rng(o.seed);
  auto vary = [&](const std::string& text, bool ngrams) {
    auto words = split_words(text);
    for (auto& w : words) {
      const double x = uniform01(rng);
      if (x < o.mask_prob) {
        w = "[MASK]";
      } else if (x < o.mask_prob + o.swap_prob && !pool.empty()) {
        w = pool[rng() % pool.size()];
      }
    }
    if (ngrams && !words.empty() && uniform01(rng) < o.ngram_prob) {
      const auto n = std::min<std::size_t>(words.size(), 1 + rng() % static_cast<uint64_t>(o.max_ngram));
      const auto start = rng() % (words.size() - n + 1);
      return join_words(words, start, start + n);
    }
    return join_words(words, 0, words.size());
  };
  const bool single = !d.examples.empty() && !d.examples.front().text_b;
  data::Dataset out{d.task, d.source, d.examples};
  out.examples.reserve(d.examples.size() * static_cast<std::size_t>(1 + o.per_example));
  for (const auto& e : d.examples) {
    std::set<std::pair<std::string, std::string>> seen{{e.text_a, e.text_b.value_or("")}};
    for (int64_t v = 0; v < o.per_example; ++v) {
      data::Example x = e;
      x.text_a = vary(e.text_a, single);
      if (e.text_b) x.text_b = vary(*e.text_b, false);
      if (x.text_a.empty() || !seen.emplace(x.text_a, x.text_b.value_or("")).second) continue;
      out.examples.push_back(std::move(x));
    }
  }
  return out;
}

}  // namespace condense::distill
