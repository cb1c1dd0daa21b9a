#pragma once
// A tiny BERT classifier and a synthetic SST-2-like dataset for the compression tests (pruning,
// factorization): hidden 32, 4 heads, FFN 64, a learnable label (is the first word id even).
#include <torch/torch.h>

#include <numeric>
#include <random>

#include "condense/nn/bert.h"
#include "condense/train/train.h"

namespace condense::testing {

inline nn::BertClassifier tiny_bert(uint64_t seed, int64_t layers = 3) {
  nn::BertConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.intermediate_size = 64;
  c.max_position_embeddings = 64;
  c.num_labels = 2;
  torch::manual_seed(seed);
  nn::BertClassifier m(c);
  m->eval();
  return m;
}

inline train::EncodedDataset tiny_sst2(int64_t n, uint64_t seed) {
  train::EncodedDataset d;
  d.task = data::Task::SST2;
  std::mt19937 rng(static_cast<unsigned>(seed));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t len = 4 + static_cast<int64_t>(rng() % 12);
    std::vector<int64_t> ids{2};
    for (int64_t t = 1; t < len - 1; ++t) ids.push_back(5 + static_cast<int64_t>(rng() % 59));
    ids.push_back(3);
    d.input_ids.push_back(ids);
    d.token_type_ids.emplace_back(ids.size(), 0);
    d.labels.push_back(ids[1] % 2);
    d.scores.push_back(0);
  }
  return d;
}

/// Logits of the whole dataset in one batch, eval mode, no gradients.
inline torch::Tensor tiny_logits(nn::BertClassifier& m, const train::EncodedDataset& d) {
  torch::NoGradGuard g;
  m->eval();
  std::vector<std::size_t> idx(d.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto b = train::make_batch(d, idx);
  return m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
}

inline double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

}  // namespace condense::testing
