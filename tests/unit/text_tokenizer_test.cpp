#include "condense/text/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "condense/core/error.h"
#include "condense/core/file.h"
#include "test_util.h"

namespace fs = std::filesystem;
using condense::text::Encoding;
using condense::text::TokenizerOptions;
using condense::text::WordPieceTokenizer;

namespace {

using condense::testing::error_of;

using Tokens = std::vector<std::string>;
using Ids = std::vector<int64_t>;

const Tokens kTinyVocab = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##want", "##ed", "want", "wa", "runn", "##ing", ",", ".", "!",
    "hello", "world", "a", "##a", "é", "##é", "¿", "HELLO", "héllo", "中", "国", "x", "##y", "y", "b", "c", "d", "e",
    "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "z", "[", "]", "sep",
    "ab", "helloworld"};

fs::path write_vocab(const std::string& name, const Tokens& tokens) {
  auto dir = condense::testing::scratch_dir(name);
  std::string text;
  for (const auto& t : tokens) text += t + "\n";
  condense::write_file_atomic(dir / "vocab.txt", text);
  return dir / "vocab.txt";
}

WordPieceTokenizer tiny(const std::string& name, TokenizerOptions options = {}) {
  return WordPieceTokenizer::from_vocab_file(write_vocab(name, kTinyVocab), options);
}

// Same row rules as tests/ref/tokenize_ref.py: strict UTF-8, BOM dropped, split on '\n', one
// trailing '\r' removed, empty rows skipped, first row is the header, cells split on '\t'.
struct Tsv {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::size_t column(const std::string& name) const {
    auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) throw std::runtime_error("no column " + name);
    return static_cast<std::size_t>(it - header.begin());
  }
};

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (true) {
    auto end = s.find(sep, pos);
    out.emplace_back(s.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos));
    if (end == std::string_view::npos) return out;
    pos = end + 1;
  }
}

Tsv read_tsv(const fs::path& path) {
  std::string text = condense::read_file(path);
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
  Tsv tsv;
  bool first = true;
  for (auto& line : split(text, '\n')) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    auto cells = split(line, '\t');
    if (first) {
      tsv.header = std::move(cells);
      first = false;
    } else {
      tsv.rows.push_back(std::move(cells));
    }
  }
  return tsv;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string ids_text(const Ids& ids) {
  std::string s;
  for (auto id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return s;
}

/// Runs tokenize_ref.py over `tsv` and returns its lines ("ids\ttype_ids").
std::vector<std::string> reference(const std::string& python, const std::string& model, const std::string& task,
                                   const fs::path& tsv, const fs::path& scratch) {
  auto script = condense::testing::source_dir() / "tests" / "ref" / "tokenize_ref.py";
  auto out = scratch / (task + "_ref.txt");
  std::string cmd = "'" + python + "' '" + script.string() + "' --model '" + model + "' --task " + task + " --input '" +
                    tsv.string() + "' --out '" + out.string() + "' --max-length 128";
  int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << cmd;
  if (rc != 0) return {};
  auto lines = split(condense::read_file(out), '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

#define REQUIRE_REFERENCE(python, teacher)                                                            \
  const std::string python = env("CONDENSE_PYTHON");                                                  \
  const std::string teacher = env("CONDENSE_TEACHER_DIR");                                            \
  if (python.empty() || teacher.empty()) {                                                            \
    GTEST_SKIP() << "set CONDENSE_PYTHON (with tokenizers) and CONDENSE_TEACHER_DIR (a Hugging Face " \
                    "BERT folder) to compare with Hugging Face";                                      \
  }

/// Encodes every row with ours and compares with the reference; returns the number compared.
std::size_t expect_parity(const WordPieceTokenizer& tok, const std::string& task, const fs::path& tsv_path,
                          const std::vector<std::string>& ref) {
  auto tsv = read_tsv(tsv_path);
  EXPECT_EQ(ref.size(), tsv.rows.size()) << "reference rows for " << tsv_path;
  bool pair = task == "mrpc";
  std::size_t ca = tsv.column(pair ? "#1 String" : "sentence");
  std::size_t cb = pair ? tsv.column("#2 String") : 0;
  std::size_t n = std::min(ref.size(), tsv.rows.size());
  for (std::size_t i = 0; i < n; ++i) {
    const auto& row = tsv.rows[i];
    Encoding e = pair ? tok.encode(row.at(ca), std::string_view(row.at(cb)), 128) : tok.encode(row.at(ca), std::nullopt, 128);
    std::string mine = ids_text(e.input_ids) + "\t" + ids_text(e.token_type_ids);
    if (mine != ref[i]) {
      ADD_FAILURE() << tsv_path << " row " << i + 1 << " differs from Hugging Face\n  text: " << row.at(ca)
                    << (pair ? "\n  text b: " + row.at(cb) : std::string()) << "\n  ours: " << mine
                    << "\n  hf:   " << ref[i];
      return i;
    }
  }
  return n;
}

}  // namespace

// ---- tiny vocabulary -------------------------------------------------------------------------

TEST(Tokenizer, GreedyLongestMatchWithContinuationPieces) {
  auto tok = tiny("tok_longest");
  EXPECT_EQ(tok.tokenize("unwanted running"), (Tokens{"un", "##want", "##ed", "runn", "##ing"}));
  // "want" as a whole word is a single piece, not "wa" + something.
  EXPECT_EQ(tok.tokenize("want"), (Tokens{"want"}));
  EXPECT_EQ(tok.tokenize_to_ids("unwanted"), tok.convert_tokens_to_ids({"un", "##want", "##ed"}));
}

TEST(Tokenizer, WordWithoutFullSegmentationIsUnknown) {
  auto tok = tiny("tok_nomatch");
  // "unwant" matches, "##edx" cannot: the whole word becomes [UNK], not "un ##want [UNK]".
  EXPECT_EQ(tok.tokenize("unwantedx hello"), (Tokens{"[UNK]", "hello"}));
  EXPECT_EQ(tok.tokenize(""), Tokens{});
  EXPECT_EQ(tok.tokenize(" \t\n "), Tokens{});
}

TEST(Tokenizer, OverlongWordIsUnknownCountingCodePoints) {
  auto tok = tiny("tok_overlong");
  EXPECT_EQ(tok.tokenize(std::string(100, 'a')).size(), 100u);
  EXPECT_EQ(tok.tokenize(std::string(101, 'a')), (Tokens{"[UNK]"}));
  // 100 two-byte characters are 100 characters, not 200.
  auto plain = tiny("tok_overlong2", TokenizerOptions().lower_case(false));
  std::string e100;
  for (int i = 0; i < 100; ++i) e100 += "é";
  EXPECT_EQ(plain.tokenize(e100).size(), 100u);
  EXPECT_EQ(plain.tokenize(e100 + "é"), (Tokens{"[UNK]"}));
  auto short_words = tiny("tok_overlong3", TokenizerOptions().max_input_chars_per_word(3));
  EXPECT_EQ(short_words.tokenize("aaa aaaa"), (Tokens{"a", "##a", "##a", "[UNK]"}));
}

TEST(Tokenizer, SplitsPunctuation) {
  auto tok = tiny("tok_punct");
  EXPECT_EQ(tok.tokenize("hello,world!"), (Tokens{"hello", ",", "world", "!"}));
  EXPECT_EQ(tok.tokenize("¿hello."), (Tokens{"¿", "hello", "."}));
  // '$' is ASCII punctuation even though Unicode calls it a symbol (Sc).
  EXPECT_EQ(tok.tokenize("a$b"), (Tokens{"a", "[UNK]", "b"}));
}

TEST(Tokenizer, LowerCasesAndStripsAccentsLikeHuggingFace) {
  EXPECT_EQ(tiny("tok_acc1").tokenize("HÉLLO"), (Tokens{"hello"}));  // strip_accents unset follows lower_case
  EXPECT_EQ(tiny("tok_acc2", TokenizerOptions().lower_case(false)).tokenize("HÉLLO héllo"), (Tokens{"[UNK]", "héllo"}));
  EXPECT_EQ(tiny("tok_acc3", TokenizerOptions().lower_case(false).strip_accents(true)).tokenize("HÉLLO"), (Tokens{"HELLO"}));
  EXPECT_EQ(tiny("tok_acc4", TokenizerOptions().strip_accents(false)).tokenize("HÉLLO"), (Tokens{"héllo"}));
  // NFD of a precomposed character, then the combining mark is dropped.
  EXPECT_EQ(tiny("tok_acc5").tokenize("he\xCC\x81llo"), (Tokens{"hello"}));
  EXPECT_TRUE(TokenizerOptions().strips_accents());
  EXPECT_FALSE(TokenizerOptions().lower_case(false).strips_accents());
}

TEST(Tokenizer, SplitsCjkCharacters) {
  EXPECT_EQ(tiny("tok_cjk1").tokenize("x中国x"), (Tokens{"x", "中", "国", "x"}));
  EXPECT_EQ(tiny("tok_cjk2", TokenizerOptions().tokenize_chinese_chars(false)).tokenize("中国"), (Tokens{"[UNK]"}));
}

TEST(Tokenizer, DropsControlCharactersAndTreatsTabsAsSpace) {
  auto tok = tiny("tok_ctl");
  EXPECT_EQ(tok.tokenize(std::string_view("hel\0lo", 6)), (Tokens{"hello"}));
  EXPECT_EQ(tok.tokenize("hel\x07lo\tworld"), (Tokens{"hello", "world"}));
  EXPECT_EQ(tok.tokenize("a\u200Bb"), (Tokens{"ab"}));          // zero-width space is Cf
  EXPECT_EQ(tok.tokenize("hel\uFFFDlo"), (Tokens{"hello"}));    // replacement character
  EXPECT_EQ(tok.tokenize("hello\u00A0world\u3000x"), (Tokens{"hello", "world", "x"}));  // Zs
  EXPECT_EQ(tok.tokenize("hello\u2028world"), (Tokens{"hello", "world"}));  // line separator
}

TEST(Tokenizer, KeepsSpecialTokensInTextWhole) {
  auto tok = tiny("tok_special");
  EXPECT_EQ(tok.tokenize("hello[SEP]world"), (Tokens{"hello", "[SEP]", "world"}));
  EXPECT_EQ(tok.tokenize("[sep]"), (Tokens{"[", "sep", "]"}));  // matched case-sensitively, before lower-casing
  EXPECT_EQ(tok.tokenize("[MASK][MASK]"), (Tokens{"[MASK]", "[MASK]"}));
}

TEST(Tokenizer, RejectsInvalidUtf8) {
  auto tok = tiny("tok_utf8");
  auto msg = error_of([&] { tok.tokenize("ok \xC3"); });
  EXPECT_NE(msg.find("invalid UTF-8 at byte 3"), std::string::npos) << msg;
  msg = error_of([&] { tok.tokenize("hello[SEP]\xED\xA0\x80"); });  // a UTF-16 surrogate
  EXPECT_NE(msg.find("invalid UTF-8 at byte 10"), std::string::npos) << msg;
}

TEST(Tokenizer, EncodesSingleAndPairWithSegmentIds) {
  auto tok = tiny("tok_encode");
  auto id = [&](const char* t) { return tok.token_to_id(t); };
  Encoding single = tok.encode("hello world");
  EXPECT_EQ(single.input_ids, (Ids{id("[CLS]"), id("hello"), id("world"), id("[SEP]")}));
  EXPECT_EQ(single.token_type_ids, (Ids{0, 0, 0, 0}));
  Encoding pair = tok.encode("hello", std::string_view("world !"));
  EXPECT_EQ(pair.input_ids, (Ids{id("[CLS]"), id("hello"), id("[SEP]"), id("world"), id("!"), id("[SEP]")}));
  EXPECT_EQ(pair.token_type_ids, (Ids{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(tok.encode("").input_ids, (Ids{id("[CLS]"), id("[SEP]")}));
}

TEST(Tokenizer, TruncatesLongestFirstLikeTokenizers) {
  auto tok = tiny("tok_trunc");
  auto lengths = [&](const char* a, const char* b, int max_length) {
    Encoding e = tok.encode(a, std::string_view(b), max_length);
    std::size_t first_sep = static_cast<std::size_t>(
        std::find(e.input_ids.begin(), e.input_ids.end(), tok.sep_id()) - e.input_ids.begin());
    EXPECT_LE(e.input_ids.size(), static_cast<std::size_t>(max_length));
    return std::pair<std::size_t, std::size_t>(first_sep - 1, e.input_ids.size() - first_sep - 2);
  };
  using P = std::pair<std::size_t, std::size_t>;
  // Expected values were produced with tokenizers 0.23 (enable_truncation longest_first).
  EXPECT_EQ(lengths("a b c d e", "f g h i j", 10), (P{3, 4}));  // tie: b keeps the odd token
  EXPECT_EQ(lengths("a b c d e f", "g h i j k l m", 10), (P{3, 4}));
  EXPECT_EQ(lengths("a b c d e f g h", "i j", 10), (P{5, 2}));  // the short one is kept whole
  EXPECT_EQ(lengths("a b c d e f g h i j k l", "m n o p q r s t u v w x y z", 10), (P{3, 4}));
  EXPECT_EQ(lengths("a b c d e f g", "h i j k", 9), (P{3, 3}));
  EXPECT_EQ(lengths("a b", "c d", 7), (P{2, 2}));  // fits: untouched
  EXPECT_EQ(lengths("a b", "c d", 3), (P{0, 0}));
  Encoding cut = tok.encode("a b c d e", std::nullopt, 4);
  EXPECT_EQ(cut.input_ids, (Ids{tok.cls_id(), tok.token_to_id("a"), tok.token_to_id("b"), tok.sep_id()}));
  EXPECT_NE(error_of([&] { tok.encode("a", std::string_view("b"), 2); }).find("max_length 2"), std::string::npos);
}

TEST(Tokenizer, VocabularyLookups) {
  auto tok = tiny("tok_lookup");
  EXPECT_EQ(tok.vocab_size(), static_cast<int64_t>(kTinyVocab.size()));
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.unk_id(), 1);
  EXPECT_EQ(tok.cls_id(), 2);
  EXPECT_EQ(tok.sep_id(), 3);
  EXPECT_EQ(tok.mask_id(), 4);
  EXPECT_EQ(tok.id_to_token(15), "hello");
  EXPECT_EQ(tok.convert_tokens_to_ids({"hello", "nope"}), (Ids{15, 1}));
  EXPECT_NE(error_of([&] { tok.token_to_id("nope"); }).find("'nope' is not in the vocabulary"), std::string::npos);
  EXPECT_NE(error_of([&] { tok.id_to_token(-1); }).find("token id -1"), std::string::npos);
  EXPECT_EQ(tok.vocab(), kTinyVocab);
}

TEST(Tokenizer, SaveVocabRoundTrips) {
  auto tok = tiny("tok_save", TokenizerOptions().lower_case(false));
  auto out = condense::testing::scratch_dir("tok_save_out") / "vocab.txt";
  tok.save_vocab(out);
  auto again = WordPieceTokenizer::from_vocab_file(out, tok.options());
  EXPECT_EQ(again.vocab(), tok.vocab());
  EXPECT_FALSE(again.options().lower_case());
}

TEST(Tokenizer, VocabFileErrorsNameTheFile) {
  auto dir = condense::testing::scratch_dir("tok_errors");
  auto missing = dir / "missing_vocab.txt";
  auto msg = error_of([&] { WordPieceTokenizer::from_vocab_file(missing); });
  EXPECT_NE(msg.find(missing.string()), std::string::npos) << msg;

  condense::write_file_atomic(dir / "empty.txt", "");
  msg = error_of([&] { WordPieceTokenizer::from_vocab_file(dir / "empty.txt"); });
  EXPECT_NE(msg.find("empty.txt: empty vocabulary"), std::string::npos) << msg;

  condense::write_file_atomic(dir / "dup.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\nhello\n");
  msg = error_of([&] { WordPieceTokenizer::from_vocab_file(dir / "dup.txt"); });
  EXPECT_NE(msg.find("dup.txt: line 7 repeats token 'hello' of line 5"), std::string::npos) << msg;

  condense::write_file_atomic(dir / "nocls.txt", "[PAD]\n[UNK]\n[SEP]\nhello\n");
  msg = error_of([&] { WordPieceTokenizer::from_vocab_file(dir / "nocls.txt"); });
  EXPECT_NE(msg.find("nocls.txt: no [CLS] token"), std::string::npos) << msg;

  // No [MASK]: fine for encoding, an error only when asked for.
  condense::write_file_atomic(dir / "nomask.txt", "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhello\r\n");
  auto tok = WordPieceTokenizer::from_vocab_file(dir / "nomask.txt");
  EXPECT_EQ(tok.tokenize("hello"), (Tokens{"hello"}));  // CRLF line ends tolerated
  EXPECT_NE(error_of([&] { tok.mask_id(); }).find("no [MASK]"), std::string::npos);

  msg = error_of([&] { WordPieceTokenizer::from_directory(dir / "nothing_here"); });
  EXPECT_NE(msg.find("nothing_here"), std::string::npos) << msg;
  msg = error_of([&] { WordPieceTokenizer::from_directory(dir); });
  EXPECT_NE(msg.find("neither vocab.txt nor tokenizer.json"), std::string::npos) << msg;
}

TEST(Tokenizer, FromDirectoryReadsOptions) {
  auto vocab = write_vocab("tok_dir_cfg", kTinyVocab);
  auto dir = vocab.parent_path();
  condense::write_file_atomic(dir / "tokenizer_config.json",
                              R"({"do_lower_case": false, "strip_accents": true, "tokenize_chinese_chars": false})");
  auto tok = WordPieceTokenizer::from_directory(dir);
  EXPECT_FALSE(tok.options().lower_case());
  EXPECT_EQ(tok.options().strip_accents(), std::optional<bool>(true));
  EXPECT_FALSE(tok.options().tokenize_chinese_chars());
  EXPECT_EQ(tok.tokenize("HÉLLO"), (Tokens{"HELLO"}));

  // tokenizer.json alone: vocabulary from model.vocab, options from the BertNormalizer.
  auto json_dir = condense::testing::scratch_dir("tok_dir_json");
  nlohmann::json j;
  j["model"] = {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"continuing_subword_prefix", "##"},
                {"max_input_chars_per_word", 5}, {"vocab", nlohmann::json::object()}};
  for (std::size_t i = 0; i < kTinyVocab.size(); ++i) j["model"]["vocab"][kTinyVocab[i]] = i;
  j["normalizer"] = {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true},
                     {"strip_accents", false}, {"lowercase", true}};
  j["added_tokens"] = nlohmann::json::array({{{"id", 56}, {"content", "helloworld"}, {"normalized", false}}});
  condense::write_file_atomic(json_dir / "tokenizer.json", j.dump());
  auto tj = WordPieceTokenizer::from_directory(json_dir);
  EXPECT_EQ(tj.vocab(), kTinyVocab);
  EXPECT_TRUE(tj.options().lower_case());
  EXPECT_EQ(tj.options().strip_accents(), std::optional<bool>(false));
  EXPECT_EQ(tj.options().max_input_chars_per_word(), 5);
  EXPECT_EQ(tj.tokenize("HÉLLO aaaaaa xhelloworldy"), (Tokens{"héllo", "[UNK]", "x", "helloworld", "y"}));

  j["normalizer"] = {{"type", "Lowercase"}};
  condense::write_file_atomic(json_dir / "tokenizer.json", j.dump());
  auto msg = error_of([&] { WordPieceTokenizer::from_directory(json_dir); });
  EXPECT_NE(msg.find("tokenizer.json: normalizer must be a BertNormalizer"), std::string::npos) << msg;
}

// ---- parity with Hugging Face on real data ---------------------------------------------------

TEST(Tokenizer, MatchesHuggingFaceOnSst2Dev) {
  REQUIRE_REFERENCE(python, teacher);
  auto tsv = condense::testing::glue_dir("SST-2") / "dev.tsv";
  ASSERT_TRUE(fs::exists(tsv)) << tsv;
  auto ref = reference(python, teacher, "sst2", tsv, condense::testing::scratch_dir("tok_sst2"));
  auto tok = WordPieceTokenizer::from_directory(teacher);
  EXPECT_EQ(expect_parity(tok, "sst2", tsv, ref), 872u);
}

TEST(Tokenizer, MatchesHuggingFaceOnMrpcDev) {
  REQUIRE_REFERENCE(python, teacher);
  auto tsv = condense::testing::glue_dir("MRPC") / "dev.tsv";
  ASSERT_TRUE(fs::exists(tsv)) << tsv;
  auto ref = reference(python, teacher, "mrpc", tsv, condense::testing::scratch_dir("tok_mrpc"));
  auto tok = WordPieceTokenizer::from_directory(teacher);
  EXPECT_EQ(expect_parity(tok, "mrpc", tsv, ref), 408u);
}

// Every code point (planes 0-3 and 14; 15-16 are private use) alone and inside a word, so
// each Unicode class decision — control, whitespace, punctuation, CJK, accents, case — is
// checked against tokenizers, not just the ones GLUE happens to contain.
TEST(Tokenizer, MatchesHuggingFaceOnEveryCodePoint) {
  REQUIRE_REFERENCE(python, teacher);
  auto scratch = condense::testing::scratch_dir("tok_codepoints");
  std::string tsv = "sentence\n";
  auto utf8 = [](char32_t c) {
    std::string s;
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else if (c < 0x800) {
      s += static_cast<char>(0xC0 | (c >> 6));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      s += static_cast<char>(0xE0 | (c >> 12));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (c >> 18));
      s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
    return s;
  };
  std::size_t rows = 0;
  for (char32_t c = 0; c < 0xE1000; ++c) {
    if (c == 0x40000) c = 0xE0000;
    if ((c >= 0xD800 && c < 0xE000) || c == '\t' || c == '\n' || c == '\r') continue;
    tsv += utf8(c) + "\nx" + utf8(c) + "y\n";
    rows += 2;
  }
  auto input = scratch / "codepoints.tsv";
  condense::write_file_atomic(input, tsv);
  auto ref = reference(python, teacher, "sst2", input, scratch);
  auto tok = WordPieceTokenizer::from_directory(teacher);
  EXPECT_EQ(expect_parity(tok, "sst2", input, ref), rows);
}

TEST(Tokenizer, TokenizerJsonAloneMatchesVocabTxt) {
  REQUIRE_REFERENCE(python, teacher);
  auto dir = condense::testing::scratch_dir("tok_json_only");
  fs::copy_file(fs::path(teacher) / "tokenizer.json", dir / "tokenizer.json");
  auto from_txt = WordPieceTokenizer::from_directory(teacher);
  auto from_json = WordPieceTokenizer::from_directory(dir);
  EXPECT_EQ(from_json.vocab(), from_txt.vocab());
  EXPECT_EQ(from_json.options().lower_case(), from_txt.options().lower_case());
  EXPECT_EQ(from_json.options().strips_accents(), from_txt.options().strips_accents());
  EXPECT_EQ(from_json.special_tokens(), from_txt.special_tokens());
  auto tsv = read_tsv(condense::testing::glue_dir("SST-2") / "dev.tsv");
  std::size_t col = tsv.column("sentence");
  for (const auto& row : tsv.rows) {
    ASSERT_EQ(from_json.encode(row.at(col)).input_ids, from_txt.encode(row.at(col)).input_ids) << row.at(col);
  }
}

TEST(Tokenizer, TokenizesSst2TrainQuickly) {
  REQUIRE_REFERENCE(python, teacher);
  auto path = condense::testing::glue_dir("SST-2") / "train.tsv";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not found";
  auto tsv = read_tsv(path);
  std::size_t col = tsv.column("sentence");
  auto tok = WordPieceTokenizer::from_directory(teacher);
  auto t0 = std::chrono::steady_clock::now();
  std::size_t tokens = 0;
  for (const auto& row : tsv.rows) tokens += tok.encode(row.at(col)).input_ids.size();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "encoded " << tsv.rows.size() << " SST-2 train sentences (" << tokens << " ids) in " << s << " s\n";
  EXPECT_LT(s, 5.0);  // generous: shared CI machines; typically a small fraction of a second
}
