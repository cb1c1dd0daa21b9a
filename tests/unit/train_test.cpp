// Training loop: dynamic padding, task losses, the learning-rate schedule, option validation,
// the NaN guard, determinism, and resuming an interrupted run bit for bit.
//
// Everything runs on a tiny random BERT (2 layers, hidden 32, 2 heads, FFN 64) with the teacher's
// real vocabulary so that the real tokenizer and real SST-2 rows can be used; each test takes well
// under a second on two cores.
#include "condense/train/train.h"

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "condense/core/error.h"
#include "condense/data/glue.h"
#include "condense/nn/bert.h"
#include "condense/text/tokenizer.h"
#include "single_thread.h"
#include "test_util.h"

namespace {

using condense::testing::error_of;
using condense::testing::teacher_dir;

using condense::Error;
using condense::nn::BertClassifier;
using condense::nn::BertConfig;
using condense::train::Batch;
using condense::train::EncodedDataset;
using condense::train::TrainOptions;
namespace data = condense::data;
namespace train = condense::train;
namespace fs = std::filesystem;
namespace ct = condense::testing;

// A tiny BERT; dropout stays on (0.1) so that the RNG state matters for resume.
BertConfig tiny_config(int64_t vocab_size, int64_t num_labels = 2) {
  BertConfig c;
  c.vocab_size = vocab_size;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 64;
  c.max_position_embeddings = 64;
  c.num_labels = num_labels;
  c.hidden_dropout_prob = 0.1;
  c.attention_probs_dropout_prob = 0.1;
  return c;
}

BertClassifier tiny_model(int64_t vocab_size, uint64_t seed, int64_t num_labels = 2) {
  torch::manual_seed(seed);
  return BertClassifier(tiny_config(vocab_size, num_labels));
}

/// Real SST-2 dev rows, tokenized with the teacher's tokenizer (skips when either is missing).
struct Sst2Fixture {
  std::optional<condense::text::WordPieceTokenizer> tokenizer;
  data::Dataset gold;
  EncodedDataset enc;
};

bool load_sst2(Sst2Fixture& f, std::size_t n, int max_length = 32) {
  if (teacher_dir().empty() || ct::glue_dir("SST-2").empty()) return false;
  f.tokenizer = condense::text::WordPieceTokenizer::from_directory(teacher_dir());
  auto dev = data::read_glue_split(data::Task::SST2, ct::glue_dir("SST-2"), "dev");
  f.gold = dev;
  f.gold.examples.resize(std::min(n, dev.examples.size()));
  f.enc = train::encode(f.gold, *f.tokenizer, max_length);
  return true;
}

#define REQUIRE_SST2(f, n) \
  Sst2Fixture f;           \
  if (!load_sst2(f, n)) GTEST_SKIP() << "CONDENSE_TEACHER_DIR or SST-2 data missing"

void expect_same_weights(BertClassifier& a, BertClassifier& b) {
  auto pa = a->named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) {
    ASSERT_TRUE(pb.contains(p.key())) << p.key();
    EXPECT_TRUE(torch::equal(p.value(), pb[p.key()]))
        << p.key() << " max diff " << (p.value() - pb[p.key()]).abs().max().item<double>();
  }
}

EncodedDataset hand_dataset() {
  EncodedDataset d;
  d.pad_id = 7;
  d.input_ids = {{101, 5, 6, 102}, {101, 8, 102}, {101, 9, 102, 10, 11, 102}};
  d.token_type_ids = {{0, 0, 0, 0}, {0, 0, 0}, {0, 0, 0, 1, 1, 1}};
  d.labels = {1, 0, 1};
  d.scores = {0.5f, 1.5f, 2.5f};
  return d;
}

// ---------------------------------------------------------------------------------------------
// Batches and losses

TEST(Train, MakeBatchPadsToTheLongestOfTheBatch) {
  auto d = hand_dataset();
  auto b = train::make_batch(d, {1, 0});
  ASSERT_EQ(b.input_ids.sizes(), (c10::IntArrayRef{2, 4}));  // longest of rows 1 and 0 is 4, not 6
  EXPECT_TRUE(torch::equal(b.input_ids, torch::tensor({101, 8, 102, 7, 101, 5, 6, 102}, torch::kInt64).view({2, 4})));
  EXPECT_TRUE(torch::equal(b.attention_mask, torch::tensor({1, 1, 1, 0, 1, 1, 1, 1}, torch::kInt64).view({2, 4})));
  EXPECT_TRUE(torch::equal(b.token_type_ids, torch::zeros({2, 4}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.labels, torch::tensor({0, 1}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.scores, torch::tensor({1.5f, 0.5f})));
  EXPECT_TRUE(torch::equal(b.indices, torch::tensor({1, 0}, torch::kInt64)));
  EXPECT_EQ(b.size(), 2);

  auto c = train::make_batch(d, {2, 1});
  ASSERT_EQ(c.input_ids.sizes(), (c10::IntArrayRef{2, 6}));
  EXPECT_TRUE(torch::equal(c.input_ids[1], torch::tensor({101, 8, 102, 7, 7, 7}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(c.token_type_ids[0], torch::tensor({0, 0, 0, 1, 1, 1}, torch::kInt64)));
  // Padding positions get segment 0 and mask 0, whatever the last real token's segment was.
  EXPECT_TRUE(torch::equal(c.token_type_ids[1], torch::zeros({6}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(c.attention_mask[1], torch::tensor({1, 1, 1, 0, 0, 0}, torch::kInt64)));
  EXPECT_EQ(c.input_ids.dtype(), torch::kInt64);
  EXPECT_EQ(c.attention_mask.dtype(), torch::kInt64);
}

TEST(Train, TaskLossIsCrossEntropyOrMse) {
  auto d = hand_dataset();
  auto b = train::make_batch(d, {1, 0});  // labels {0, 1}, scores {1.5, 0.5}
  // Cross-entropy: row 0 logits (1, 2), label 0: -log(e/(e+e^2)) = log(1 + e);
  //                row 1 logits (0, 0), label 1: log 2.
  auto ce = train::task_loss(torch::tensor({1.f, 2.f, 0.f, 0.f}).view({2, 2}), b);
  EXPECT_NEAR(ce.item<double>(), (std::log(1 + std::exp(1.0)) + std::log(2.0)) / 2, 1e-6);
  // One output = regression: MSE against the score, ((2 - 1.5)^2 + (-1 - 0.5)^2) / 2 = 1.25.
  auto mse = train::task_loss(torch::tensor({2.f, -1.f}).view({2, 1}), b);
  EXPECT_NEAR(mse.item<double>(), 1.25, 1e-6);
}

TEST(Train, EncodeRejectsAnEmptyDatasetAndTheLoopToo) {
  data::Dataset empty{data::Task::SST2, "empty/train.tsv", {}};
  auto tok = condense::text::WordPieceTokenizer({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"}, {});
  EXPECT_NE(error_of([&] { train::encode(empty, tok); }).find("empty/train.tsv: no examples"), std::string::npos);
  EncodedDataset none;
  auto model = tiny_model(16, 1);
  auto msg = error_of([&] { train::finetune(model, none, TrainOptions().with_epochs(1)); });
  EXPECT_NE(msg.find("training set is empty"), std::string::npos) << msg;
}

// ---------------------------------------------------------------------------------------------
// Options

TEST(Train, ValidateNamesTheBadField) {
  auto bad = [](auto mutate, const std::string& field) {
    TrainOptions o;
    mutate(o);
    auto msg = error_of([&] { o.validate(); });
    EXPECT_NE(msg.find("'" + field + "'"), std::string::npos) << msg;
  };
  EXPECT_NO_THROW(TrainOptions().validate());
  bad([](TrainOptions& o) { o.epochs = 0; }, "epochs");
  bad([](TrainOptions& o) { o.batch_size = -1; }, "batch_size");
  bad([](TrainOptions& o) { o.learning_rate = 0; }, "learning_rate");
  bad([](TrainOptions& o) { o.learning_rate = std::numeric_limits<double>::quiet_NaN(); }, "learning_rate");
  bad([](TrainOptions& o) { o.learning_rate = std::numeric_limits<double>::infinity(); }, "learning_rate");
  bad([](TrainOptions& o) { o.warmup_ratio = 1.0; }, "warmup_ratio");
  bad([](TrainOptions& o) { o.warmup_ratio = -0.1; }, "warmup_ratio");
  bad([](TrainOptions& o) { o.weight_decay = -1; }, "weight_decay");
  bad([](TrainOptions& o) { o.save_every = -2; }, "save_every");
  bad([](TrainOptions& o) { o.save_every = 5; }, "save_every");  // no state_dir
  bad([](TrainOptions& o) { o.resume = true; }, "resume");       // no state_dir
  EXPECT_NO_THROW(TrainOptions().with_save_every(5).with_state_dir("x").with_resume().validate());
}

TEST(Train, WarmupStartsAtZeroAndDecaysLinearly) {
  REQUIRE_SST2(f, 16);
  auto model = tiny_model(f.tokenizer->vocab_size(), 1);
  std::vector<double> lrs;
  std::vector<int64_t> steps;
  auto o = TrainOptions().with_epochs(2).with_batch_size(4).with_learning_rate(1e-3).with_warmup_ratio(0.25);
  o.on_progress = [&](const train::Progress& p) {
    lrs.push_back(p.learning_rate);
    steps.push_back(p.step);
    EXPECT_EQ(p.total_steps, 8);
    EXPECT_TRUE(std::isfinite(p.loss));
  };
  auto r = train::finetune(model, f.enc, o);
  EXPECT_EQ(r.steps, 8);
  EXPECT_TRUE(r.finished);
  // 16 examples / batch 4 x 2 epochs = 8 steps; warm-up ceil(0.25 * 8) = 2 steps:
  // step 0: 0, step 1: peak/2, then peak * (8 - s) / 6 for s = 2..7.
  const double peak = 1e-3;
  std::vector<double> want{0, peak / 2};
  for (int s = 2; s < 8; ++s) want.push_back(peak * (8 - s) / 6.0);
  ASSERT_EQ(lrs.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(lrs[i], want[i], 1e-15) << "step " << i;
    EXPECT_EQ(steps[i], static_cast<int64_t>(i) + 1);
  }

  // No warm-up: the first step already uses the peak.
  lrs.clear();
  o.warmup_ratio = 0;
  train::finetune(model, f.enc, o);
  ASSERT_EQ(lrs.size(), 8u);
  EXPECT_DOUBLE_EQ(lrs[0], peak);
  EXPECT_DOUBLE_EQ(lrs[4], peak / 2);
}

// Mixed precision: the forward runs under bf16 autocast (products in bf16, logits and loss in
// fp32), the weights stay fp32, the autocast cache does not serve last step's weights, and the
// state is restored after the loop; the tiny model still fits its 32 sentences.
TEST(Train, Bf16AutocastTrainsWithFp32Weights) {
  REQUIRE_SST2(f, 32);
  auto o = TrainOptions().with_epochs(30).with_batch_size(8).with_learning_rate(5e-3).with_seed(4).with_bf16();
  auto model = tiny_model(f.tokenizer->vocab_size(), 9);
  std::vector<float> probe;
  bool products_bf16 = true, logits_fp32 = true;
  auto r = train::train_loop(model, f.enc, o, [&](BertClassifier& m, const Batch& b) {
    auto logits = m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
    auto p = torch::nn::functional::linear(torch::ones({1, 32}), m->classifier->weight);
    products_bf16 = products_bf16 && p.scalar_type() == torch::kBFloat16;
    logits_fp32 = logits_fp32 && logits.scalar_type() == torch::kFloat;
    probe.push_back(p.to(torch::kFloat)[0][0].item<float>());
    return train::task_loss(logits, b);
  });
  EXPECT_TRUE(products_bf16);
  EXPECT_TRUE(logits_fp32);
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
  for (const auto& p : model->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat);
  // Each step reads the weights the optimizer just wrote (a stale autocast cache would repeat them).
  ASSERT_EQ(probe.size(), 120u);
  int changed = 0;
  for (std::size_t i = 1; i < probe.size(); ++i) changed += probe[i] != probe[i - 1];
  EXPECT_GT(changed, 60);  // some steps move it less than one bf16 step; a stale cache, none
  EXPECT_LT(r.mean_loss_last_epoch, 0.35);

  // The same run in fp32 learns as well and lands on different weights.
  auto ref = tiny_model(f.tokenizer->vocab_size(), 9);
  auto rf = train::finetune(ref, f.enc, TrainOptions(o).with_bf16(false));
  EXPECT_LT(rf.mean_loss_last_epoch, 0.35);
  EXPECT_FALSE(torch::equal(ref->classifier->weight, model->classifier->weight));
}

TEST(Train, ZeroLearningRateStepLeavesWeightsUnchanged) {
  // With warm-up the first step has lr 0: AdamW (decoupled decay lr·wd·w included) must not move.
  REQUIRE_SST2(f, 4);
  auto model = tiny_model(f.tokenizer->vocab_size(), 3);
  auto before = tiny_model(f.tokenizer->vocab_size(), 3);
  auto o = TrainOptions().with_epochs(1).with_batch_size(4).with_warmup_ratio(0.5);  // 1 step, warm = 1
  train::finetune(model, f.enc, o);
  expect_same_weights(model, before);
}

TEST(Train, NanLossStopsWithoutWritingState) {
  REQUIRE_SST2(f, 16);
  auto dir = ct::scratch_dir("train_nan");
  auto model = tiny_model(f.tokenizer->vocab_size(), 1);
  auto before = tiny_model(f.tokenizer->vocab_size(), 1);
  auto o = TrainOptions().with_epochs(1).with_batch_size(4).with_save_every(1).with_state_dir(dir / "state");
  auto msg = error_of([&] {
    train::train_loop(model, f.enc, o, [](BertClassifier& m, const Batch& b) {
      auto logits = m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
      return logits.sum() * std::numeric_limits<float>::quiet_NaN();
    });
  });
  EXPECT_NE(msg.find("loss is NaN"), std::string::npos) << msg;
  EXPECT_NE(msg.find("step 0"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(dir / "state" / "train_state.pt"));
  EXPECT_TRUE(fs::is_empty(dir));
  expect_same_weights(model, before);  // the failing step did not update anything

  // Inf is caught as well, after some good steps; the state of the good steps is kept.
  int calls = 0;
  auto msg2 = error_of([&] {
    train::train_loop(model, f.enc, o, [&](BertClassifier& m, const Batch& b) {
      auto loss = train::task_loss(m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits, b);
      return ++calls == 3 ? loss * std::numeric_limits<float>::infinity() : loss;
    });
  });
  EXPECT_NE(msg2.find("step 2: training loss is +Inf"), std::string::npos) << msg2;
}

// ---------------------------------------------------------------------------------------------
// Determinism and resume

TEST(Train, SameSeedGivesIdenticalWeights) {
  REQUIRE_SST2(f, 48);
  auto o = TrainOptions().with_epochs(2).with_batch_size(8).with_learning_rate(1e-3).with_seed(11);
  auto a = tiny_model(f.tokenizer->vocab_size(), 5);
  auto b = tiny_model(f.tokenizer->vocab_size(), 5);
  auto ra = train::finetune(a, f.enc, o);
  // Disturb the global generator in between: the loop must reseed it.
  torch::rand({100});
  auto rb = train::finetune(b, f.enc, o);
  expect_same_weights(a, b);
  EXPECT_EQ(ra.mean_loss_last_epoch, rb.mean_loss_last_epoch);
  EXPECT_EQ(ra.steps, 12);

  // A different seed (batch order, dropout) gives different weights.
  auto c = tiny_model(f.tokenizer->vocab_size(), 5);
  train::finetune(c, f.enc, TrainOptions(o).with_seed(12));
  EXPECT_FALSE(torch::equal(a->classifier->weight, c->classifier->weight));
}

void check_resume(int64_t stop_after) {
  REQUIRE_SST2(f, 60);
  const auto vocab = f.tokenizer->vocab_size();
  auto dir = ct::scratch_dir("train_resume_" + std::to_string(stop_after));
  // 60 examples / batch 8 = 8 steps per epoch (the last batch is short), 3 epochs = 24 steps.
  auto base = TrainOptions().with_epochs(3).with_batch_size(8).with_learning_rate(2e-3).with_seed(3).with_save_every(3);
  ASSERT_GT(tiny_config(vocab).hidden_dropout_prob, 0);

  auto full = tiny_model(vocab, 21);
  auto rf = train::finetune(full, f.enc, TrainOptions(base).with_state_dir(dir / "full"));
  EXPECT_EQ(rf.steps, 24);
  EXPECT_TRUE(fs::exists(dir / "full" / "train_state.pt"));

  auto part = tiny_model(vocab, 21);
  auto rp = train::finetune(part, f.enc, TrainOptions(base).with_state_dir(dir / "cut").with_stop_after(stop_after));
  EXPECT_FALSE(rp.finished);
  EXPECT_EQ(rp.steps, stop_after);
  ASSERT_TRUE(fs::exists(dir / "cut" / "train_state.pt"));

  // A fresh process would build the model from another seed; the state must overwrite all of it.
  torch::rand({1000});
  auto resumed = tiny_model(vocab, 999);
  auto rr = train::finetune(resumed, f.enc, TrainOptions(base).with_state_dir(dir / "cut").with_resume());
  EXPECT_TRUE(rr.finished);
  EXPECT_EQ(rr.steps, 24);
  EXPECT_EQ(rr.resumed_from, stop_after);  // stopping saves the exact position, between saves too
  EXPECT_EQ(rr.mean_loss_last_epoch, rf.mean_loss_last_epoch);
  expect_same_weights(resumed, full);

  auto ef = train::evaluate(full, f.enc, f.gold);
  auto er = train::evaluate(resumed, f.enc, f.gold);
  EXPECT_EQ(ef.metrics, er.metrics);
  EXPECT_TRUE(torch::equal(ef.logits, er.logits));

  // Resuming a finished run does nothing and keeps the weights.
  auto again = tiny_model(vocab, 5);
  auto ra = train::finetune(again, f.enc, TrainOptions(base).with_state_dir(dir / "full").with_resume());
  EXPECT_EQ(ra.steps, 24);
  EXPECT_EQ(ra.resumed_from, 24);
  expect_same_weights(again, full);
}

TEST(Resume, StopAtASaveThenResumeIsBitExact) {
  check_resume(9);
}

TEST(Resume, StopBetweenSavesKeepsTheExactPosition) {
  check_resume(10);
}

TEST(Resume, WithoutStateStartsFresh) {
  REQUIRE_SST2(f, 16);
  auto dir = ct::scratch_dir("train_resume_fresh");
  auto o = TrainOptions().with_epochs(1).with_batch_size(8).with_seed(4);
  auto a = tiny_model(f.tokenizer->vocab_size(), 8);
  auto b = tiny_model(f.tokenizer->vocab_size(), 8);
  train::finetune(a, f.enc, o);
  auto r = train::finetune(b, f.enc, TrainOptions(o).with_state_dir(dir / "none").with_resume());
  EXPECT_EQ(r.resumed_from, 0);
  expect_same_weights(a, b);
}

TEST(Resume, ChangedRunShapeIsAnErrorNamingTheField) {
  // Resuming with another batch size, seed, epoch count or training set would silently follow
  // another schedule and batch order; the state records them and refuses.
  REQUIRE_SST2(f, 16);
  auto dir = ct::scratch_dir("train_resume_shape");
  auto o = TrainOptions().with_epochs(2).with_batch_size(4).with_seed(4).with_state_dir(dir);
  auto m = tiny_model(f.tokenizer->vocab_size(), 8);
  train::finetune(m, f.enc, TrainOptions(o).with_stop_after(2));
  ASSERT_TRUE(fs::exists(dir / "train_state.pt"));
  auto msg = error_of([&] { train::finetune(m, f.enc, TrainOptions(o).with_batch_size(8).with_resume()); });
  EXPECT_NE(msg.find("field 'batch_size' was 4 in the interrupted run but is 8 now"), std::string::npos) << msg;
  msg = error_of([&] { train::finetune(m, f.enc, TrainOptions(o).with_seed(5).with_resume()); });
  EXPECT_NE(msg.find("field 'seed' was 4"), std::string::npos) << msg;
  auto r = train::finetune(m, f.enc, TrainOptions(o).with_resume());
  EXPECT_EQ(r.resumed_from, 2);
  EXPECT_TRUE(r.finished);
}

TEST(Resume, CorruptStateIsAnErrorNamingTheFile) {
  REQUIRE_SST2(f, 16);
  auto dir = ct::scratch_dir("train_resume_corrupt");
  {
    std::ofstream out(dir / "train_state.pt", std::ios::binary);
    out << "not a torch archive";
  }
  auto m = tiny_model(f.tokenizer->vocab_size(), 8);
  auto msg = error_of([&] { train::finetune(m, f.enc, TrainOptions().with_state_dir(dir).with_resume()); });
  EXPECT_NE(msg.find((dir / "train_state.pt").string() + ": cannot read training state"), std::string::npos) << msg;
}

}  // namespace
