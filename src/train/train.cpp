#include "condense/train/train.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>

#include <chrono>
#include <cmath>
#include <deque>
#include <numeric>

#include "condense/core/error.h"
#include "condense/core/file.h"
#include "condense/eval/metrics.h"

namespace condense::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::vector<std::size_t> EncodedDataset::lengths() const {
  std::vector<std::size_t> out(input_ids.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = input_ids[i].size();
  return out;
}

EncodedDataset encode(const data::Dataset& d, const text::WordPieceTokenizer& tokenizer, int max_length) {
  CONDENSE_CHECK(!d.examples.empty(), "{}: no examples", d.source.string());
  CONDENSE_CHECK(max_length >= 3, "max_length must be at least 3, found {}", max_length);
  EncodedDataset out;
  out.task = d.task;
  out.pad_id = tokenizer.pad_id();
  out.input_ids.reserve(d.examples.size());
  for (const auto& ex : d.examples) {
    auto enc = ex.text_b ? tokenizer.encode(ex.text_a, std::string_view(*ex.text_b), max_length)
                         : tokenizer.encode(ex.text_a, std::nullopt, max_length);
    out.input_ids.push_back(std::move(enc.input_ids));
    out.token_type_ids.push_back(std::move(enc.token_type_ids));
    out.labels.push_back(ex.label);
    out.scores.push_back(ex.score);
  }
  return out;
}

Batch make_batch(const EncodedDataset& d, const std::vector<std::size_t>& indices) {
  const int64_t b = static_cast<int64_t>(indices.size());
  int64_t longest = 0;
  for (auto i : indices) longest = std::max<int64_t>(longest, static_cast<int64_t>(d.input_ids[i].size()));
  auto ids = torch::full({b, longest}, d.pad_id, torch::kInt64);
  auto types = torch::zeros({b, longest}, torch::kInt64);
  auto mask = torch::zeros({b, longest}, torch::kInt64);
  auto labels = torch::empty({b}, torch::kInt64);
  auto scores = torch::empty({b}, torch::kFloat32);
  auto idx = torch::empty({b}, torch::kInt64);
  auto ids_a = ids.accessor<int64_t, 2>(), types_a = types.accessor<int64_t, 2>(), mask_a = mask.accessor<int64_t, 2>();
  for (int64_t r = 0; r < b; ++r) {
    const auto i = indices[r];
    for (std::size_t t = 0; t < d.input_ids[i].size(); ++t) {
      ids_a[r][t] = d.input_ids[i][t];
      types_a[r][t] = d.token_type_ids[i][t];
      mask_a[r][t] = 1;
    }
    labels[r] = d.labels[i];
    scores[r] = d.scores[i];
    idx[r] = static_cast<int64_t>(i);
  }
  return {ids, types, mask, labels, scores, idx};
}

torch::Tensor task_loss(const torch::Tensor& logits, const Batch& batch) {
  if (logits.size(1) == 1) return torch::mse_loss(logits.squeeze(1), batch.scores);
  return torch::nn::functional::cross_entropy(logits, batch.labels);
}

void TrainOptions::validate() const {
  CONDENSE_CHECK(epochs > 0, "train option 'epochs' must be positive, found {}", epochs);
  CONDENSE_CHECK(batch_size > 0, "train option 'batch_size' must be positive, found {}", batch_size);
  CONDENSE_CHECK(learning_rate > 0 && std::isfinite(learning_rate),
                 "train option 'learning_rate' must be positive, found {}", learning_rate);
  CONDENSE_CHECK(warmup_ratio >= 0 && warmup_ratio < 1, "train option 'warmup_ratio' must be in [0,1), found {}",
                 warmup_ratio);
  CONDENSE_CHECK(weight_decay >= 0, "train option 'weight_decay' must be >= 0, found {}", weight_decay);
  CONDENSE_CHECK(save_every >= 0, "train option 'save_every' must be >= 0, found {}", save_every);
  CONDENSE_CHECK(save_every == 0 || !state_dir.empty(), "train option 'save_every' needs a state directory");
  CONDENSE_CHECK(!resume || !state_dir.empty(), "train option 'resume' needs a state directory");
}

namespace {

// Hugging Face's split: no weight decay on biases and LayerNorm weights (Loshchilov & Hutter 2019
// decouple decay from the gradient; BERT's recipe exempts these parameters).
std::unique_ptr<torch::optim::AdamW> make_optimizer(torch::nn::Module& model, torch::nn::Module* aux,
                                                    const TrainOptions& o) {
  std::vector<torch::Tensor> decay, no_decay;
  auto add = [&](const torch::OrderedDict<std::string, torch::Tensor>& params) {
    for (auto& p : params) {
      const auto& n = p.key();
      bool exempt = n.find("bias") != std::string::npos || n.find("LayerNorm") != std::string::npos;
      (exempt ? no_decay : decay).push_back(p.value());
    }
  };
  add(model.named_parameters());
  if (aux != nullptr) add(aux->named_parameters());
  auto base = torch::optim::AdamWOptions(o.learning_rate).betas({0.9, 0.999}).eps(1e-8);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(base).weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(base).weight_decay(0.0)));
  return std::make_unique<torch::optim::AdamW>(std::move(groups), base);
}

// Linear warm-up to the peak, then linear decay to zero (HF get_linear_schedule_with_warmup).
double scheduled_lr(const TrainOptions& o, int64_t step, int64_t total) {
  const int64_t warm = static_cast<int64_t>(std::ceil(o.warmup_ratio * static_cast<double>(total)));
  if (step < warm) return o.learning_rate * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warm));
  return o.learning_rate * std::max(0.0, static_cast<double>(total - step) / static_cast<double>(std::max<int64_t>(1, total - warm)));
}

// Dropout draws from the default CPU generator; its state is part of the training state.
torch::Tensor rng_state() {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_rng_state(const torch::Tensor& state) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

struct LoopState {
  int64_t step = 0;
  double epoch_loss_sum = 0;
  int64_t epoch_loss_count = 0;
  double last_epoch_mean = 0;
};

const char* kStateFile = "train_state.pt";

// What a resumed run must share with the interrupted one for its schedule and batches to match.
torch::Tensor run_shape(const TrainOptions& o, std::size_t examples) {
  return torch::tensor({o.epochs, o.batch_size, static_cast<int64_t>(o.seed), static_cast<int64_t>(examples)},
                       torch::kInt64);
}

void save_state(const fs::path& dir, torch::nn::Module& model, torch::nn::Module* aux, torch::optim::AdamW& opt,
                const LoopState& s, const torch::Tensor& shape) {
  ensure_directory(dir);
  torch::serialize::OutputArchive ar, model_ar, opt_ar, aux_ar;
  model.save(model_ar);
  opt.save(opt_ar);
  ar.write("model", model_ar);
  if (aux != nullptr) {
    aux->save(aux_ar);
    ar.write("aux", aux_ar);
  }
  ar.write("optimizer", opt_ar);
  ar.write("rng", rng_state());
  ar.write("step", torch::tensor(s.step, torch::kInt64));
  ar.write("run_shape", shape);
  ar.write("loss", torch::tensor({s.epoch_loss_sum, static_cast<double>(s.epoch_loss_count), s.last_epoch_mean},
                                 torch::kFloat64));
  AtomicFile f(dir / kStateFile);
  ar.save_to([&f](const void* data, std::size_t n) {
    f.write(data, n);
    return n;
  });
  f.commit();
}

bool load_state(const fs::path& dir, torch::nn::Module& model, torch::nn::Module* aux, torch::optim::AdamW& opt,
                LoopState& s, const torch::Tensor& shape) {
  const auto path = dir / kStateFile;
  if (!fs::exists(path)) return false;
  torch::serialize::InputArchive ar, model_ar, opt_ar;
  torch::Tensor saved_shape;
  try {
    ar.load_from(path.string());
    ar.read("run_shape", saved_shape);
  } catch (const c10::Error& e) {
    fail("{}: cannot read training state ({})", path.string(), e.what_without_backtrace());
  }
  static const char* kFields[] = {"epochs", "batch_size", "seed", "training examples"};
  for (int i = 0; i < 4; ++i) {
    const auto was = saved_shape[i].item<int64_t>(), now = shape[i].item<int64_t>();
    CONDENSE_CHECK(was == now, "{}: field '{}' was {} in the interrupted run but is {} now; resume needs the same value",
                   path.string(), kFields[i], was, now);
  }
  try {
    ar.read("model", model_ar);
    ar.read("optimizer", opt_ar);
    model.load(model_ar);
    if (aux != nullptr) {
      torch::serialize::InputArchive aux_ar;
      ar.read("aux", aux_ar);
      aux->load(aux_ar);
    }
    opt.load(opt_ar);
    torch::Tensor rng, step, loss;
    ar.read("rng", rng);
    ar.read("step", step);
    ar.read("loss", loss);
    set_rng_state(rng);
    s.step = step.item<int64_t>();
    s.epoch_loss_sum = loss[0].item<double>();
    s.epoch_loss_count = static_cast<int64_t>(loss[1].item<double>());
    s.last_epoch_mean = loss[2].item<double>();
  } catch (const c10::Error& e) {
    fail("{}: cannot read training state ({})", path.string(), e.what_without_backtrace());
  }
  return true;
}

// The CPU autocast state for one forward pass, restored on exit. The autocast cache keeps bf16
// copies of the weights for the pass; it is cleared when the outermost region ends, as
// torch.autocast's __exit__ does, because the optimizer step changes the weights next.
class Bf16Autocast {
 public:
  explicit Bf16Autocast(bool on) : on_(on) {
    if (!on_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(at::kCPU);
    prev_dtype_ = at::autocast::get_autocast_dtype(at::kCPU);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::increment_nesting();
  }
  ~Bf16Autocast() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCPU, prev_enabled_);
    at::autocast::set_autocast_dtype(at::kCPU, prev_dtype_);
  }
  Bf16Autocast(const Bf16Autocast&) = delete;
  Bf16Autocast& operator=(const Bf16Autocast&) = delete;

 private:
  bool on_, prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

}  // namespace

TrainResult train_loop(torch::nn::Module& model, const EncodedDataset& train, const TrainOptions& o,
                       const BatchLossFn& loss_fn, std::shared_ptr<torch::nn::Module> aux) {
  o.validate();
  CONDENSE_CHECK(train.size() > 0, "training set is empty");
  const auto lengths = train.lengths();
  const int64_t steps_per_epoch =
      (static_cast<int64_t>(train.size()) + o.batch_size - 1) / o.batch_size;
  const int64_t total = steps_per_epoch * o.epochs;

  torch::manual_seed(o.seed);
  auto opt = make_optimizer(model, aux.get(), o);
  auto clipped = model.parameters();
  if (aux) {
    auto extra = aux->parameters();
    clipped.insert(clipped.end(), extra.begin(), extra.end());
  }
  LoopState s;
  TrainResult result;
  const auto shape = run_shape(o, train.size());
  if (o.resume && load_state(o.state_dir, model, aux.get(), *opt, s, shape)) result.resumed_from = s.step;

  model.train();
  std::deque<double> recent;
  double recent_sum = 0;
  int64_t examples = 0;
  const auto t0 = Clock::now();
  int64_t epoch = s.step / steps_per_epoch;
  std::vector<std::vector<std::size_t>> plan;
  if (s.step < total) plan = data::bucket_batches(lengths, o.batch_size, true, o.seed + epoch);

  while (s.step < total) {
    if (o.stop_after >= 0 && s.step >= o.stop_after) {
      // An interrupted run keeps its exact position so that --resume continues from here.
      if (!o.state_dir.empty()) save_state(o.state_dir, model, aux.get(), *opt, s, shape);
      result.finished = false;
      break;
    }
    const int64_t e = s.step / steps_per_epoch;
    if (e != epoch) {
      epoch = e;
      // Batch order depends only on (seed, epoch) so a resumed run sees the same batches.
      plan = data::bucket_batches(lengths, o.batch_size, true, o.seed + epoch);
    }
    const auto& idx = plan[static_cast<std::size_t>(s.step % steps_per_epoch)];
    auto batch = make_batch(train, idx);
    batch.step = s.step;
    batch.total_steps = total;
    if (o.before_step) o.before_step(s.step, total);

    const double lr = scheduled_lr(o, s.step, total);
    for (auto& g : opt->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    opt->zero_grad();
    torch::Tensor loss;
    {
      Bf16Autocast autocast(o.bf16);
      // The loss itself in fp32 (autocast leaves most losses in fp32 but not a plain mean).
      loss = loss_fn(batch).to(torch::kFloat);
    }
    const double value = loss.item<double>();
    CONDENSE_CHECK(std::isfinite(value),
                   "step {}: training loss is {} (learning rate {:.3g}); stopping without writing a model", s.step,
                   std::isnan(value) ? "NaN" : (value > 0 ? "+Inf" : "-Inf"), lr);
    loss.backward();
    if (o.max_grad_norm > 0) torch::nn::utils::clip_grad_norm_(clipped, o.max_grad_norm);
    if (o.after_backward) o.after_backward(s.step);
    opt->step();
    if (o.after_step) o.after_step(s.step, lr);
    ++s.step;
    examples += batch.size();

    s.epoch_loss_sum += value;
    ++s.epoch_loss_count;
    if (s.step % steps_per_epoch == 0) {
      s.last_epoch_mean = s.epoch_loss_sum / static_cast<double>(s.epoch_loss_count);
      s.epoch_loss_sum = 0;
      s.epoch_loss_count = 0;
    }
    recent.push_back(value);
    recent_sum += value;
    if (recent.size() > 50) {
      recent_sum -= recent.front();
      recent.pop_front();
    }
    if (o.save_every > 0 && (s.step % o.save_every == 0 || s.step == total)) save_state(o.state_dir, model, aux.get(), *opt, s, shape);
    if (o.on_progress) {
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      Progress p;
      p.step = s.step;
      p.total_steps = total;
      p.epoch = s.step / steps_per_epoch;
      p.loss = recent_sum / static_cast<double>(recent.size());
      p.examples_per_second = static_cast<double>(examples) / std::max(1e-9, secs);
      p.eta_seconds = secs / static_cast<double>(s.step - result.resumed_from) * static_cast<double>(total - s.step);
      p.learning_rate = lr;
      o.on_progress(p);
    }
  }
  result.steps = s.step;
  result.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  result.examples_per_second = static_cast<double>(examples) / std::max(1e-9, result.seconds);
  result.mean_loss_last_epoch = s.last_epoch_mean;
  model.eval();
  return result;
}

TrainResult train_loop(nn::BertClassifier& model, const EncodedDataset& train, const TrainOptions& options,
                       const LossFn& loss, std::shared_ptr<torch::nn::Module> aux) {
  return train_loop(*model, train, options, [&](const Batch& b) { return loss(model, b); }, std::move(aux));
}

TrainResult finetune(nn::BertClassifier& model, const EncodedDataset& train, const TrainOptions& options) {
  return train_loop(model, train, options, [](nn::BertClassifier& m, const Batch& b) {
    return task_loss(m->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits, b);
  });
}

torch::Tensor predict_logits(torch::nn::Module& model, const BatchForwardFn& forward, int64_t num_labels,
                             const EncodedDataset& d, int64_t batch_size) {
  CONDENSE_CHECK(batch_size > 0, "batch size must be positive, found {}", batch_size);
  torch::NoGradGuard guard;
  const bool was_training = model.is_training();
  model.eval();
  auto out = torch::empty({static_cast<int64_t>(d.size()), num_labels}, torch::kFloat32);
  for (const auto& idx : data::bucket_batches(d.lengths(), static_cast<std::size_t>(batch_size), false, 0)) {
    auto b = make_batch(d, idx);
    out.index_copy_(0, b.indices, forward(b));
  }
  if (was_training) model.train();
  return out;
}

torch::Tensor predict_logits(nn::BertClassifier& model, const EncodedDataset& d, int64_t batch_size) {
  return predict_logits(
      *model, [&](const Batch& b) { return model->forward(b.input_ids, b.token_type_ids, b.attention_mask).logits; },
      model->config().num_labels, d, batch_size);
}

torch::Tensor predict_logits(nn::TextNetClassifier& model, const EncodedDataset& d, int64_t batch_size) {
  return predict_logits(
      *model, [&](const Batch& b) { return model->forward(b.input_ids, b.token_type_ids, b.attention_mask); },
      model->config().num_labels, d, batch_size);
}

namespace {
// GLUE metrics of logits already computed (`seconds` is the time they took).
EvalResult score_logits(torch::Tensor logits, const EncodedDataset& d, const data::Dataset& gold, double seconds) {
  EvalResult r;
  r.logits = std::move(logits);
  r.examples_per_second = static_cast<double>(d.size()) / std::max(1e-9, seconds);
  std::vector<int64_t> labels;
  std::vector<double> scores;
  if (r.logits.size(1) == 1) {
    auto s = r.logits.squeeze(1).to(torch::kFloat64).contiguous();
    scores.assign(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
  } else {
    auto a = r.logits.argmax(1).contiguous();
    labels.assign(a.data_ptr<int64_t>(), a.data_ptr<int64_t>() + a.numel());
  }
  r.metrics = eval::glue_metrics(d.task, labels, scores, gold);
  return r;
}

template <typename Model>
EvalResult evaluate_model(Model& model, const EncodedDataset& d, const data::Dataset& gold, int64_t batch_size) {
  const auto t0 = Clock::now();
  auto logits = predict_logits(model, d, batch_size);
  return score_logits(std::move(logits), d, gold, std::chrono::duration<double>(Clock::now() - t0).count());
}
}  // namespace

EvalResult evaluate(nn::BertClassifier& model, const EncodedDataset& d, const data::Dataset& gold, int64_t batch_size) {
  return evaluate_model(model, d, gold, batch_size);
}

EvalResult evaluate(nn::TextNetClassifier& model, const EncodedDataset& d, const data::Dataset& gold,
                    int64_t batch_size) {
  return evaluate_model(model, d, gold, batch_size);
}

}  // namespace condense::train
