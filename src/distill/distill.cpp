#include "condense/distill/distill.h"

#include <cmath>

#include "condense/core/error.h"

namespace condense::distill {

SoftLoss parse_soft_loss(const std::string& name) {
  if (name == "kl") return SoftLoss::KL;
  if (name == "mse") return SoftLoss::MSE;
  fail("unknown distillation loss '{}' (expected kl or mse)", name);
}

void DistillOptions::validate() const {
  CONDENSE_CHECK(temperature > 0 && std::isfinite(temperature), "distill option 'temperature' must be positive, found {}",
                 temperature);
  CONDENSE_CHECK(alpha >= 0 && alpha <= 1, "distill option 'alpha' must be in [0,1], found {}", alpha);
  train.validate();
}

torch::Tensor soft_target_loss(const torch::Tensor& s, const torch::Tensor& t, double temperature) {
  CONDENSE_CHECK(s.sizes() == t.sizes(), "student logits {} and teacher logits {} differ in shape",
                 fmt::format("{}", fmt::join(s.sizes(), "x")), fmt::format("{}", fmt::join(t.sizes(), "x")));
  if (s.size(1) == 1) return torch::mse_loss(s, t);
  auto log_ps = torch::log_softmax(s / temperature, 1);
  auto log_pt = torch::log_softmax(t / temperature, 1);
  // T² keeps the soft-target gradients comparable across temperatures (Hinton et al. 2015, §2).
  auto kl = (log_pt.exp() * (log_pt - log_ps)).sum(1).mean();
  return kl * (temperature * temperature);
}

torch::Tensor logit_mse_loss(const torch::Tensor& s, const torch::Tensor& t) {
  CONDENSE_CHECK(s.sizes() == t.sizes(), "student and teacher logits differ in shape");
  return torch::mse_loss(s, t);
}

torch::Tensor distillation_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                                const train::Batch& batch, const DistillOptions& o) {
  auto soft = o.soft_loss == SoftLoss::KL ? soft_target_loss(student_logits, teacher_logits, o.temperature)
                                          : logit_mse_loss(student_logits, teacher_logits);
  if (o.alpha >= 1.0) return soft;
  return o.alpha * soft + (1.0 - o.alpha) * train::task_loss(student_logits, batch);
}

std::vector<int64_t> resolve_init_layers(const StudentOptions& s, int64_t teacher_layers) {
  CONDENSE_CHECK(s.layers > 0, "student option 'layers' must be positive, found {}", s.layers);
  if (!s.init_layers.empty()) {
    CONDENSE_CHECK(static_cast<int64_t>(s.init_layers.size()) == s.layers,
                   "student option 'init_layers' lists {} layers but the student has {}", s.init_layers.size(), s.layers);
    for (auto l : s.init_layers) {
      CONDENSE_CHECK(l >= 0 && l < teacher_layers, "student option 'init_layers': teacher layer {} does not exist (teacher has {})",
                     l, teacher_layers);
    }
    return s.init_layers;
  }
  CONDENSE_CHECK(s.layers <= teacher_layers, "student option 'layers' is {} but the teacher has only {}", s.layers,
                 teacher_layers);
  std::vector<int64_t> out;
  const int64_t k = teacher_layers / s.layers;
  for (int64_t i = 0; i < s.layers; ++i) out.push_back(i * k);
  return out;
}

nn::BertClassifier make_student(nn::BertClassifier& teacher, const StudentOptions& s, uint64_t seed) {
  const auto& tc = teacher->config();
  nn::BertConfig c = tc;
  c.num_hidden_layers = s.layers;
  if (s.hidden_size) c.hidden_size = *s.hidden_size;
  if (s.num_attention_heads) c.num_attention_heads = *s.num_attention_heads;
  if (s.intermediate_size) c.intermediate_size = *s.intermediate_size;
  c.validate("student options");
  torch::manual_seed(seed);
  nn::BertClassifier student(c);
  CONDENSE_CHECK(s.init == "teacher" || s.init == "scratch", "student option 'init' is '{}', expected teacher or scratch",
                 s.init);
  if (s.init == "scratch") return student;
  CONDENSE_CHECK(c.hidden_size == tc.hidden_size && c.intermediate_size == tc.intermediate_size &&
                     c.num_attention_heads == tc.num_attention_heads,
                 "student option 'init' is 'teacher' but the student's widths (hidden {}, heads {}, intermediate {}) "
                 "differ from the teacher's ({}, {}, {}); use init: scratch",
                 c.hidden_size, c.num_attention_heads, c.intermediate_size, tc.hidden_size, tc.num_attention_heads,
                 tc.intermediate_size);
  const auto map = resolve_init_layers(s, tc.num_hidden_layers);
  torch::NoGradGuard guard;
  auto tparams = teacher->named_parameters();
  for (auto& p : student->named_parameters()) {
    std::string name = p.key();
    const std::string prefix = "bert.encoder.layer.";
    if (name.rfind(prefix, 0) == 0) {
      auto dot = name.find('.', prefix.size());
      const int64_t li = std::stoll(name.substr(prefix.size(), dot - prefix.size()));
      name = prefix + std::to_string(map[static_cast<std::size_t>(li)]) + name.substr(dot);
    }
    p.value().copy_(tparams[name]);
  }
  return student;
}

train::TrainResult distill(nn::BertClassifier& student, nn::BertClassifier& teacher,
                           const train::EncodedDataset& train_set, const DistillOptions& o,
                           torch::Tensor teacher_logits) {
  o.validate();
  CONDENSE_CHECK(student->config().num_labels == teacher->config().num_labels,
                 "student has {} outputs but the teacher has {}", student->config().num_labels,
                 teacher->config().num_labels);
  // With alpha = 0 the loss is the hard-label loss alone: the teacher only supplied the initial
  // weights, so neither a cache nor a per-batch teacher forward is needed (the no-KD baseline).
  if (o.alpha <= 0.0) {
    return train::train_loop(student, train_set, o.train, [&](nn::BertClassifier& m, const train::Batch& b) {
      return train::task_loss(m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits, b);
    });
  }
  if (!o.cache_teacher) {
    teacher->eval();
    return train::train_loop(student, train_set, o.train, [&](nn::BertClassifier& m, const train::Batch& b) {
      torch::Tensor t;
      {
        torch::NoGradGuard guard;
        t = teacher->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
      }
      auto logits = m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
      return distillation_loss(logits, t, b, o);
    });
  }
  if (!teacher_logits.defined()) teacher_logits = train::predict_logits(teacher, train_set);
  CONDENSE_CHECK(teacher_logits.size(0) == static_cast<int64_t>(train_set.size()),
                 "teacher cache has {} rows but the training set has {} examples", teacher_logits.size(0),
                 train_set.size());
  return train::train_loop(student, train_set, o.train, [&](nn::BertClassifier& m, const train::Batch& b) {
    auto logits = m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits;
    return distillation_loss(logits, teacher_logits.index_select(0, b.indices), b, o);
  });
}

}  // namespace condense::distill
