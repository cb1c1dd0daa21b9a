#pragma once
/// \file
/// BERT WordPiece tokenizer that reproduces Hugging Face `tokenizers` (BertNormalizer +
/// BertPreTokenizer + WordPiece + the [CLS]/[SEP] template) id for id.
///
/// Parity is the point: a distilled student is only comparable with its teacher when both see
/// the same ids, so where `tokenizers` deviates from the Unicode standard or from the older
/// Python `BertTokenizer` (Unicode 8-era character classes, its CJK ranges, truncation ties),
/// this follows `tokenizers`. tests/unit/text_tokenizer_test.cpp checks every GLUE dev row and
/// every code point against it.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace condense::text {

/// Normalization settings of a BERT tokenizer, named after tokenizer_config.json.
/// Setters chain: `TokenizerOptions().lower_case(false).strip_accents(true)`.
class TokenizerOptions {
 public:
  /// Lower-cases after accent stripping (uncased checkpoints).
  TokenizerOptions& lower_case(bool v) { lower_case_ = v; return *this; }
  bool lower_case() const { return lower_case_; }

  /// NFD + removal of non-spacing marks. Unset means "same as lower_case", which is what
  /// Hugging Face does for `strip_accents: null`; cased checkpoints keep their accents.
  TokenizerOptions& strip_accents(std::optional<bool> v) { strip_accents_ = v; return *this; }
  std::optional<bool> strip_accents() const { return strip_accents_; }
  /// The setting actually applied, after resolving "unset".
  bool strips_accents() const { return strip_accents_.value_or(lower_case_); }

  /// Makes every CJK ideograph a word of its own (Chinese has no spaces between words).
  TokenizerOptions& tokenize_chinese_chars(bool v) { tokenize_chinese_chars_ = v; return *this; }
  bool tokenize_chinese_chars() const { return tokenize_chinese_chars_; }

  /// Words longer than this many code points become [UNK] without trying to split them.
  TokenizerOptions& max_input_chars_per_word(int v) { max_input_chars_per_word_ = v; return *this; }
  int max_input_chars_per_word() const { return max_input_chars_per_word_; }

 private:
  bool lower_case_ = true;
  std::optional<bool> strip_accents_;
  bool tokenize_chinese_chars_ = true;
  int max_input_chars_per_word_ = 100;
};

/// Model input for one example, before padding.
/// Truncates a text's ids (b == nullptr) or a pair's to `budget` ids in all, as Hugging Face
/// tokenizers' LongestFirst strategy does.
void truncate_longest_first(std::vector<int64_t>& a, std::vector<int64_t>* b, std::size_t budget);

struct Encoding {
  std::vector<int64_t> input_ids;
  /// 0 for [CLS], the first segment and its [SEP]; 1 for the second segment and its [SEP].
  std::vector<int64_t> token_type_ids;
};

/// Greedy longest-match-first WordPiece over BERT basic tokenization. Immutable after
/// construction, so one instance may be shared by threads.
class WordPieceTokenizer {
 public:
  /// vocab.txt: one token per line, id = line number (0-based), trailing '\r' ignored.
  /// Throws condense::Error naming the file when it cannot be read, is empty, repeats a token
  /// (with both line numbers) or lacks one of [CLS], [SEP], [PAD], [UNK].
  static WordPieceTokenizer from_vocab_file(const std::filesystem::path& vocab_txt, TokenizerOptions options = {});

  /// A Hugging Face model folder. With vocab.txt, options come from tokenizer_config.json when
  /// present (do_lower_case, strip_accents, tokenize_chinese_chars); otherwise tokenizer.json
  /// supplies model.vocab, the BertNormalizer settings and max_input_chars_per_word.
  static WordPieceTokenizer from_directory(const std::filesystem::path& dir);

  /// Builds a tokenizer from an in-memory vocabulary; `origin` names it in error messages.
  WordPieceTokenizer(std::vector<std::string> vocab, TokenizerOptions options, std::string origin = "vocabulary");

  /// Word pieces (vocabulary entries, "##" marks continuations), without [CLS]/[SEP].
  /// Throws condense::Error on invalid UTF-8: `tokenizers` only ever sees valid Unicode
  /// strings, so there is no reference behaviour to copy and guessing would silently change ids.
  std::vector<std::string> tokenize(std::string_view text) const;

  /// Same pieces as tokenize(), as ids; cheaper because no strings are built.
  std::vector<int64_t> tokenize_to_ids(std::string_view text) const;

  /// Ids of vocabulary entries; entries not in the vocabulary map to [UNK], as in Hugging Face.
  std::vector<int64_t> convert_tokens_to_ids(const std::vector<std::string>& tokens) const;

  /// `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, at most max_length ids. A single text is cut
  /// at the end; a pair is truncated longest-first as `tokenizers` does it: the shorter text
  /// keeps everything when it fits in half, otherwise the budget is split in half and the odd
  /// token goes to the longer text, to b on a tie. (The old Python loop gave ties to a.)
  /// Throws when max_length cannot hold the special tokens.
  Encoding encode(std::string_view a, std::optional<std::string_view> b = std::nullopt, int max_length = 128) const;

  /// Throws condense::Error for a token that is not in the vocabulary.
  int64_t token_to_id(std::string_view token) const;
  /// Throws condense::Error for an id outside [0, vocab_size()).
  const std::string& id_to_token(int64_t id) const;

  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  int64_t pad_id() const { return pad_id_; }
  int64_t cls_id() const { return cls_id_; }
  int64_t sep_id() const { return sep_id_; }
  int64_t unk_id() const { return unk_id_; }
  /// Throws condense::Error when the vocabulary has no [MASK].
  int64_t mask_id() const;

  const std::vector<std::string>& vocab() const { return vocab_; }
  const TokenizerOptions& options() const { return options_; }

  /// Tokens matched verbatim in the raw text before normalization, like Hugging Face's
  /// non-normalized added tokens: the special tokens present in the vocabulary, plus the
  /// added_tokens of tokenizer.json. "x[SEP]y" is three tokens; "[sep]" is not special.
  const std::vector<std::string>& special_tokens() const { return specials_; }

  /// Writes vocab.txt (one token per line) atomically.
  void save_vocab(const std::filesystem::path& vocab_txt) const;

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  using TokenMap = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;

  /// Buffers reused across the words of one call, so tokenizing allocates little.
  struct Scratch {
    std::string word, key;
    std::vector<int32_t> a, b;
    std::size_t offset = 0;  // byte offset of the current segment, for error messages
  };

  void set_specials(std::vector<std::string> specials);
  void tokenize_into(std::string_view text, std::vector<int64_t>& ids, Scratch& s) const;
  void normalize_segment(std::string_view segment, std::vector<int64_t>& ids, Scratch& s) const;
  void wordpiece(std::string_view word, std::size_t chars, std::vector<int64_t>& ids, std::string& key) const;

  std::vector<std::string> vocab_;
  TokenMap ids_;
  TokenizerOptions options_;
  std::string origin_;
  std::vector<std::string> specials_;  // longest first, so matching is leftmost-longest
  bool special_first_byte_[256] = {};
  std::size_t max_token_bytes_ = 0;
  int64_t pad_id_ = -1, cls_id_ = -1, sep_id_ = -1, unk_id_ = -1, mask_id_ = -1;
};

}  // namespace condense::text
