// BiLSTM and TextCNN students: padding never changes a result, pairs are encoded segment by
// segment, folders round-trip, bad configs fail with the field named, and the students learn.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "condense/core/file.h"
#include "condense/nn/checkpoint.h"
#include "condense/nn/textnet.h"
#include "condense/train/train.h"
#include "single_thread.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
namespace ct = condense::testing;
using condense::nn::TextNetClassifier;
using condense::nn::TextNetConfig;

TextNetConfig tiny(const std::string& arch, bool pair = false) {
  TextNetConfig c;
  c.arch = arch;
  c.vocab_size = 50;
  c.embedding_dim = 8;
  c.hidden_size = 6;
  c.kernel_sizes = {2, 3};
  c.mlp_size = 5;
  c.num_labels = 3;
  c.pair = pair;
  return c;
}

torch::Tensor ids(std::vector<std::vector<int64_t>> rows, torch::Tensor* mask) {
  std::size_t longest = 0;
  for (const auto& r : rows) longest = std::max(longest, r.size());
  auto t = torch::zeros({static_cast<int64_t>(rows.size()), static_cast<int64_t>(longest)}, torch::kInt64);
  *mask = torch::zeros_like(t);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    for (std::size_t j = 0; j < rows[i].size(); ++j) {
      t[static_cast<int64_t>(i)][static_cast<int64_t>(j)] = rows[i][j];
      (*mask)[static_cast<int64_t>(i)][static_cast<int64_t>(j)] = 1;
    }
  }
  return t;
}

class TextNetArch : public ::testing::TestWithParam<std::string> {};

// A sentence gives the same logits alone, beside a longer one, and with extra padding columns;
// a sentence shorter than the widest kernel still works.
TEST_P(TextNetArch, PaddingDoesNotChangeLogits) {
  torch::manual_seed(1);
  TextNetClassifier m(tiny(GetParam()));
  m->eval();
  torch::NoGradGuard g;
  torch::Tensor mask1, mask2;
  auto alone = ids({{2, 7, 9}}, &mask1);
  auto batch = ids({{2, 7, 9}, {4, 5, 6, 7, 8, 11, 12}, {3}}, &mask2);
  auto a = m->forward(alone, torch::zeros_like(alone), mask1);
  auto b = m->forward(batch, torch::zeros_like(batch), mask2);
  EXPECT_EQ(b.sizes(), (std::vector<int64_t>{3, 3}));
  EXPECT_TRUE(torch::allclose(a[0], b[0], 1e-5, 1e-6)) << a << b;
  auto padded = torch::cat({batch, torch::full({3, 4}, 17, torch::kInt64)}, 1);  // junk ids under mask 0
  auto b2 = m->forward(padded, torch::zeros_like(padded), torch::cat({mask2, torch::zeros({3, 4}, torch::kInt64)}, 1));
  EXPECT_TRUE(torch::allclose(b, b2, 1e-5, 1e-6));
  EXPECT_TRUE(torch::isfinite(b).all().item<bool>());
}

// [CLS] a [SEP] b [SEP] with token types 0/1: the pair model's features are exactly those of
// encoding each segment alone.
TEST_P(TextNetArch, PairsAreEncodedSegmentBySegment) {
  torch::manual_seed(2);
  TextNetClassifier m(tiny(GetParam(), /*pair=*/true));
  m->eval();
  torch::NoGradGuard g;
  torch::Tensor mask, mask_a, mask_b;
  auto x = ids({{1, 5, 6, 2, 8, 9, 10, 2}, {1, 4, 2, 7, 2}}, &mask);
  auto tt = torch::tensor({{0, 0, 0, 0, 1, 1, 1, 1}, {0, 0, 0, 1, 1, 0, 0, 0}}, torch::kInt64);
  auto got = m->forward(x, tt, mask);
  auto a = ids({{1, 5, 6, 2}, {1, 4, 2}}, &mask_a);
  auto b = ids({{8, 9, 10, 2}, {7, 2}}, &mask_b);
  auto u = m->encode(a, mask_a.sum(1)), v = m->encode(b, mask_b.sum(1));
  auto f = torch::cat({u, v, u * v, (u - v).abs()}, 1);
  auto want = m->classifier(torch::relu(m->mlp(f)));
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-6)) << got << want;
}

TEST_P(TextNetArch, FolderRoundTrip) {
  torch::manual_seed(3);
  TextNetClassifier m(tiny(GetParam()));
  m->eval();
  const auto dir = ct::scratch_dir("textnet_roundtrip_" + GetParam()) / "model";
  condense::nn::save_textnet(m, dir, "", {{"metrics.json", "{}\n"}});
  EXPECT_TRUE(condense::nn::is_textnet_config(dir / "config.json"));
  auto back = condense::nn::load_textnet(dir);
  EXPECT_EQ(back->config().to_json(), m->config().to_json());
  torch::Tensor mask;
  auto x = ids({{2, 7, 9, 11}}, &mask);
  torch::NoGradGuard g;
  EXPECT_TRUE(torch::equal(m->forward(x, torch::zeros_like(x), mask), back->forward(x, torch::zeros_like(x), mask)));
  // The BERT loader refuses it with a line that says what it is.
  auto msg = ct::error_of([&] { condense::nn::load_classifier(dir); });
  EXPECT_NE(msg.find("condense-textnet"), std::string::npos) << msg;
}

// The students learn a toy task (label = which of three marker words the sentence holds)
// through the shared training loop.
TEST_P(TextNetArch, LearnsThroughTheTrainingLoop) {
  condense::train::EncodedDataset d;
  d.task = condense::data::Task::SST2;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 192; ++i) {
    const int64_t label = static_cast<int64_t>(rng() % 3);
    std::vector<int64_t> row{1};
    const auto n = 3 + rng() % 6;
    for (uint64_t j = 0; j < n; ++j) row.push_back(static_cast<int64_t>(10 + rng() % 30));
    row.insert(row.begin() + 1 + static_cast<int64_t>(rng() % n), 40 + label);
    row.push_back(2);
    d.input_ids.push_back(row);
    d.token_type_ids.emplace_back(row.size(), 0);
    d.labels.push_back(label);
    d.scores.push_back(0);
  }
  torch::manual_seed(4);
  TextNetClassifier m(tiny(GetParam()));
  auto o = condense::train::TrainOptions().with_epochs(40).with_batch_size(16).with_learning_rate(2e-2);
  auto r = condense::train::train_loop(*m, d, o, [&](const condense::train::Batch& b) {
    return condense::train::task_loss(m->forward(b.input_ids, b.token_type_ids, b.attention_mask), b);
  });
  EXPECT_LT(r.mean_loss_last_epoch, 0.2);
  auto logits = condense::train::predict_logits(m, d);
  auto acc = (logits.argmax(1) == torch::tensor(d.labels)).to(torch::kFloat32).mean().item<float>();
  std::cerr << GetParam() << ": last-epoch loss " << r.mean_loss_last_epoch << ", accuracy " << acc << "\n";
  EXPECT_GT(acc, 0.95);
}

INSTANTIATE_TEST_SUITE_P(TextNet, TextNetArch, ::testing::Values("bilstm", "cnn"));

TEST(TextNetConfig, ErrorsNameTheField) {
  auto c = tiny("rnn");
  EXPECT_NE(ct::error_of([&] { c.validate("cfg.json"); }).find("cfg.json: field 'arch' is 'rnn'"), std::string::npos);
  c = tiny("cnn");
  c.kernel_sizes = {};
  EXPECT_NE(ct::error_of([&] { c.validate("cfg.json"); }).find("field 'kernel_sizes' is empty"), std::string::npos);
  c = tiny("bilstm");
  c.pad_token_id = 50;
  EXPECT_NE(ct::error_of([&] { c.validate("cfg.json"); }).find("field 'pad_token_id'"), std::string::npos);
  auto j = tiny("bilstm").to_json();
  j["hidden_size"] = "wide";
  EXPECT_NE(ct::error_of([&] { TextNetConfig::from_json(j, "x.json"); }).find("x.json: field 'hidden_size' has the wrong type"),
            std::string::npos);
}

TEST(TextNetConfig, WeightsMustMatchTheConfig) {
  torch::manual_seed(5);
  TextNetClassifier m(tiny("bilstm"));
  const auto dir = ct::scratch_dir("textnet_mismatch") / "model";
  condense::nn::save_textnet(m, dir, "");
  auto j = m->config().to_json();
  j["hidden_size"] = 7;
  condense::write_file_atomic(dir / "config.json", j.dump());
  auto msg = ct::error_of([&] { condense::nn::load_textnet(dir); });
  EXPECT_NE(msg.find("model.safetensors: tensor 'lstm."), std::string::npos) << msg;
  EXPECT_NE(msg.find("has shape"), std::string::npos) << msg;
}

}  // namespace
