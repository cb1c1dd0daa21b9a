#include "condense/text/wordpiece_trainer.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "condense/core/error.h"

namespace condense::text {

namespace {

// The UTF-8 characters of a string (one string per code point).
std::vector<std::string> characters(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace

std::vector<std::string> learn_wordpiece_vocab(const std::vector<std::string>& texts, const WordPieceTrainOptions& o) {
  CONDENSE_CHECK(o.vocab_size > static_cast<int64_t>(o.specials.size()),
                 "wordpiece option 'vocab_size' is {}; it must exceed the {} special tokens", o.vocab_size,
                 o.specials.size());
  CONDENSE_CHECK(o.min_frequency >= 1, "wordpiece option 'min_frequency' must be >= 1, found {}", o.min_frequency);
  // Words as the tokenizer sees them: a character-level vocabulary makes it emit every word as
  // "c ##c ##c ...", so a piece without "##" starts the next word. (Characters are collected from
  // the raw text in both cases; the tokenizer lower-cases and strips accents itself.)
  std::set<std::string> chars;
  for (const auto& t : texts) {
    for (auto& c : characters(t)) {
      if (c == " " || c == "\t" || c == "\n" || c == "\r") continue;
      chars.insert(c);
      if (c.size() == 1 && c[0] >= 'A' && c[0] <= 'Z') chars.insert(std::string(1, static_cast<char>(c[0] + 32)));
    }
  }
  std::vector<std::string> char_vocab = o.specials;
  for (const auto& c : chars) {
    char_vocab.push_back(c);
    char_vocab.push_back("##" + c);
  }
  WordPieceTokenizer chartok(char_vocab, o.tokenizer, "character vocabulary");
  std::map<std::string, int64_t> word_counts;
  for (const auto& t : texts) {
    std::string word;
    for (const auto& piece : chartok.tokenize(t)) {
      if (piece.rfind("##", 0) == 0) {
        word += piece.substr(2);
        continue;
      }
      if (!word.empty()) ++word_counts[word];
      word = piece == "[UNK]" ? std::string() : piece;
    }
    if (!word.empty()) ++word_counts[word];
  }
  // Pieces as ids; each distinct word as its current split and its count.
  std::vector<std::string> pieces;
  std::unordered_map<std::string, int32_t> piece_id;
  auto id_of = [&](const std::string& p) {
    auto [it, added] = piece_id.emplace(p, static_cast<int32_t>(pieces.size()));
    if (added) pieces.push_back(p);
    return it->second;
  };
  std::vector<std::vector<int32_t>> splits;
  std::vector<int64_t> counts;
  std::set<std::string> alphabet;
  for (const auto& [w, n] : word_counts) {
    if (n < o.min_frequency) continue;
    std::vector<int32_t> split;
    bool first = true;
    for (const auto& c : characters(w)) {
      const auto p = first ? c : "##" + c;
      alphabet.insert(p);
      split.push_back(id_of(p));
      first = false;
    }
    splits.push_back(std::move(split));
    counts.push_back(n);
  }
  std::vector<std::string> vocab = o.specials;
  std::set<std::string> in_vocab(vocab.begin(), vocab.end());
  for (const auto& a : alphabet) {
    if (in_vocab.insert(a).second) vocab.push_back(a);
  }
  auto key = [](int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); };
  while (static_cast<int64_t>(vocab.size()) < o.vocab_size) {
    std::unordered_map<uint64_t, int64_t> pair_count;
    for (std::size_t w = 0; w < splits.size(); ++w) {
      const auto& s = splits[w];
      for (std::size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size()) pair_count[key(s[i], s[i + 1])] += counts[w];
      }
    }
    if (pair_count.empty()) break;  // every word is a single piece
    double best = -1;
    std::pair<std::string, std::string> best_pair;
    uint64_t best_key = 0;
    for (const auto& [k, n] : pair_count) {
      const auto a = static_cast<int32_t>(k >> 32), b = static_cast<int32_t>(k & 0xffffffffu);
      const double score = static_cast<double>(n);
      std::pair<std::string, std::string> names{pieces[a], pieces[b]};
      if (score > best || (score == best && names < best_pair)) {
        best = score;
        best_pair = std::move(names);
        best_key = k;
      }
    }
    const auto a = static_cast<int32_t>(best_key >> 32), b = static_cast<int32_t>(best_key & 0xffffffffu);
    const std::string merged = pieces[a] + pieces[b].substr(2);
    const int32_t m = id_of(merged);
    if (in_vocab.insert(merged).second) vocab.push_back(merged);
    for (auto& s : splits) {
      for (std::size_t i = 0; i + 1 < s.size(); ++i) {
        if (s[i] == a && s[i + 1] == b) {
          s[i] = m;
          s.erase(s.begin() + static_cast<std::ptrdiff_t>(i) + 1);
        }
      }
    }
  }
  return vocab;
}

}  // namespace condense::text
