// Learning a WordPiece vocabulary: frequent words become single pieces, every training word
// tokenizes without [UNK], the size is honoured, and the result is deterministic.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "condense/text/wordpiece_trainer.h"
#include "test_util.h"

namespace {

using condense::text::learn_wordpiece_vocab;
using condense::text::WordPieceTokenizer;
using condense::text::WordPieceTrainOptions;

bool has(const std::vector<std::string>& v, const std::string& t) { return std::find(v.begin(), v.end(), t) != v.end(); }

TEST(WordPieceTrainer, FrequentWordsBecomeWholePieces) {
  std::vector<std::string> texts;
  for (int i = 0; i < 50; ++i) texts.push_back("the movie was great , the acting was GREAT !");
  texts.push_back("an unrelated zebra appears once");
  // Room for every merge: learning stops once each word is a single piece.
  auto vocab = learn_wordpiece_vocab(texts, WordPieceTrainOptions().with_vocab_size(300));
  EXPECT_LT(vocab.size(), 300u);
  EXPECT_EQ(vocab[0], "[PAD]");
  EXPECT_EQ(vocab[4], "[MASK]");
  EXPECT_TRUE(has(vocab, "z"));    // every character, as a word start...
  EXPECT_TRUE(has(vocab, "##b"));  // ...and inside a word, as seen
  EXPECT_FALSE(has(vocab, "##z"));
  EXPECT_TRUE(has(vocab, "great")) << "a word seen 100 times (after lower-casing) should be one piece";
  EXPECT_TRUE(has(vocab, "the"));
  WordPieceTokenizer tok(vocab, condense::text::TokenizerOptions());
  for (const auto& t : texts) {
    for (const auto& p : tok.tokenize(t)) EXPECT_NE(p, "[UNK]") << t;
  }
  EXPECT_EQ(tok.tokenize("the movie"), (std::vector<std::string>{"the", "movie"}));
  EXPECT_EQ(learn_wordpiece_vocab(texts, WordPieceTrainOptions().with_vocab_size(300)), vocab);
  // A small budget keeps characters and the highest-scoring merges only.
  auto small = learn_wordpiece_vocab(texts, WordPieceTrainOptions().with_vocab_size(45));
  EXPECT_EQ(small.size(), 45u);
  EXPECT_TRUE(std::equal(small.begin(), small.end(), vocab.begin()));  // a prefix: merges come in the same order
}

TEST(WordPieceTrainer, OnRealSentences) {
  const auto sst2 = condense::testing::glue_dir("SST-2");
  if (sst2.empty()) GTEST_SKIP() << "SST-2 data missing";
  std::ifstream in(sst2 / "dev.tsv");
  std::string line;
  std::getline(in, line);  // header
  std::vector<std::string> texts;
  while (std::getline(in, line)) texts.push_back(line.substr(0, line.find('\t')));
  auto vocab = learn_wordpiece_vocab(texts, WordPieceTrainOptions().with_vocab_size(1000));
  EXPECT_EQ(vocab.size(), 1000u);
  WordPieceTokenizer tok(vocab, condense::text::TokenizerOptions());
  std::size_t pieces = 0, words = 0;
  for (const auto& t : texts) {
    auto p = tok.tokenize(t);
    for (const auto& x : p) {
      ASSERT_NE(x, "[UNK]") << t;
      words += x.rfind("##", 0) != 0;
    }
    pieces += p.size();
  }
  // 1,000 pieces for 872 sentences: most words stay whole or split once or twice.
  EXPECT_LT(static_cast<double>(pieces) / static_cast<double>(words), 2.0);
  auto msg = condense::testing::error_of([&] { learn_wordpiece_vocab(texts, WordPieceTrainOptions().with_vocab_size(3)); });
  EXPECT_NE(msg.find("'vocab_size' is 3"), std::string::npos) << msg;
}

}  // namespace
