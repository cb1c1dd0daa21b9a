// The BERT encoder and its checkpoints: numerical parity with Hugging Face `transformers`
// (tests/ref/bert_ref.py computes the reference), checkpoint errors that name the file and the
// field or tensor, and the atomic publish of save_pretrained.
#include "condense/nn/bert.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "condense/core/error.h"
#include "condense/core/file.h"
#include "condense/data/glue.h"
#include "condense/io/safetensors.h"
#include "condense/nn/checkpoint.h"
#include "condense/text/tokenizer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using condense::nn::BertClassifier;
using condense::nn::BertConfig;
using condense::nn::BertOutput;
using condense::nn::ForwardOptions;
using condense::nn::LoadReport;

namespace {

using condense::testing::error_of;

// Every comparison with transformers uses this bound: both sides compute in float32 on the CPU,
// so the differences are rounding only (observed ~1e-6); a wrong mask, scale, activation or
// LayerNorm eps is off by 1e-2 or more.
constexpr double kTolerance = 1e-4;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// --- tensors <-> safetensors ------------------------------------------------------------------

condense::io::DType st_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return condense::io::DType::F32;
    case torch::kInt64: return condense::io::DType::I64;
    default: throw std::runtime_error("test helper: unsupported dtype");
  }
}

// Writes named tensors in the given order (the order decides which tensor errors name first).
void write_tensors(const fs::path& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  std::vector<torch::Tensor> keep;
  std::vector<condense::io::TensorToWrite> out;
  for (const auto& [name, t] : tensors) {
    auto c = t.detach().contiguous();
    keep.push_back(c);
    out.push_back({name, st_dtype(c.scalar_type()), std::vector<int64_t>(c.sizes().begin(), c.sizes().end()),
                   c.data_ptr(), c.nbytes()});
  }
  condense::io::write_safetensors(path, out);
}

// All tensors of a file as float32/int64 torch tensors (copied: views may be unaligned).
std::map<std::string, torch::Tensor> read_tensors(const fs::path& path) {
  auto st = condense::io::SafetensorsFile::open(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& v : st.tensors()) {
    auto type = v.dtype == condense::io::DType::F32 ? torch::kFloat32 : torch::kInt64;
    auto t = torch::empty(v.shape, torch::TensorOptions().dtype(type));
    std::memcpy(t.data_ptr(), v.data, v.nbytes);
    out.emplace(v.name, t);
  }
  return out;
}

// The model's parameters under their checkpoint names; `bare` drops the `bert.` prefix as a
// sentence-transformers BertModel file (the teacher) has it.
std::vector<std::pair<std::string, torch::Tensor>> params_of(BertClassifier& model, bool bare = false) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : model->named_parameters()) {
    std::string name = p.key();
    if (bare && name.rfind("bert.", 0) == 0) name = name.substr(5);
    out.emplace_back(name, p.value());
  }
  return out;
}

// --- comparisons ------------------------------------------------------------------------------

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return INFINITY;
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// [batch, seq, ...] restricted to positions where mask == 1: padding positions are undefined in
// both implementations (they only must not leak into real tokens, which this checks).
torch::Tensor real_positions(const torch::Tensor& t, const torch::Tensor& mask) {
  return t.index({mask.to(torch::kBool)});
}

// Attention rows of real query tokens: [batch, heads, q, k] -> [real q, heads, k]. Padded key
// columns stay in, so a mask that leaks weight onto padding shows up.
torch::Tensor real_query_rows(const torch::Tensor& attn, const torch::Tensor& mask) {
  return attn.permute({0, 2, 1, 3}).index({mask.to(torch::kBool)});
}

struct Inputs {
  torch::Tensor ids, types, mask;
};

Inputs pad_batch(const std::vector<condense::text::Encoding>& encs, int64_t pad_id) {
  int64_t longest = 0;
  for (const auto& e : encs) longest = std::max<int64_t>(longest, static_cast<int64_t>(e.input_ids.size()));
  const auto n = static_cast<int64_t>(encs.size());
  Inputs in{torch::full({n, longest}, pad_id, torch::kInt64), torch::zeros({n, longest}, torch::kInt64),
            torch::zeros({n, longest}, torch::kInt64)};
  for (int64_t i = 0; i < n; ++i) {
    const auto& e = encs[static_cast<std::size_t>(i)];
    for (std::size_t j = 0; j < e.input_ids.size(); ++j) {
      in.ids[i][static_cast<int64_t>(j)] = e.input_ids[j];
      in.types[i][static_cast<int64_t>(j)] = e.token_type_ids[j];
      in.mask[i][static_cast<int64_t>(j)] = 1;
    }
  }
  return in;
}

struct RefJob {
  std::string arch, attn;  // base|cls, eager|sdpa
  fs::path model, out;
};

// Runs tests/ref/bert_ref.py once for all jobs (one interpreter start: importing transformers is
// the slow part). Returns the script's output on failure, empty on success.
std::string run_reference(const fs::path& scratch, const Inputs& in, const std::vector<RefJob>& jobs) {
  write_tensors(scratch / "inputs.safetensors",
                {{"input_ids", in.ids}, {"token_type_ids", in.types}, {"attention_mask", in.mask}});
  std::string cmd = quote(env("CONDENSE_PYTHON")) + " " +
                    quote((condense::testing::source_dir() / "tests" / "ref" / "bert_ref.py").string()) +
                    " --inputs " + quote((scratch / "inputs.safetensors").string());
  for (const auto& j : jobs) {
    cmd += " --job " + j.arch + " " + j.attn + " " + quote(j.model.string()) + " " + quote(j.out.string());
  }
  const auto log = scratch / "bert_ref.log";
  cmd += " > " + quote(log.string()) + " 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc == 0) return "";
  std::string text = fs::exists(log) ? condense::read_file(log) : "(no log)";
  return "bert_ref.py failed (status " + std::to_string(rc) + "):\n" + text;
}

// A file bert_ref.py wrote, after checking it ran the attention implementation asked for (a
// silent fallback would make the eager/sdpa distinction meaningless).
std::map<std::string, torch::Tensor> read_reference(const fs::path& path, const std::string& attn) {
  auto meta = condense::io::SafetensorsFile::open(path).metadata();
  EXPECT_EQ(meta["attn"], attn) << path;
  return read_tensors(path);
}

BertOutput forward(BertClassifier& model, const Inputs& in, ForwardOptions opt) {
  torch::NoGradGuard guard;
  return model->forward(in.ids, in.types, in.mask, opt);
}

// The largest differences of one reference file against our output, by kind.
struct Diffs {
  double hidden = 0, attention = 0, pooled = 0, logits = 0;
};

Diffs compare(const BertOutput& ours, const std::map<std::string, torch::Tensor>& ref, const Inputs& in,
              const std::string& what) {
  Diffs d;
  const auto n_hidden = ours.hidden_states.size();
  for (std::size_t i = 0; i < n_hidden; ++i) {
    auto key = "hidden_states." + std::to_string(i);
    if (!ref.count(key)) {
      ADD_FAILURE() << what << ": reference lacks " << key;
      continue;
    }
    d.hidden = std::max(d.hidden, max_abs(real_positions(ours.hidden_states[i], in.mask),
                                          real_positions(ref.at(key), in.mask)));
  }
  EXPECT_FALSE(ref.count("hidden_states." + std::to_string(n_hidden)))
      << what << ": transformers has more hidden states than we do";
  for (std::size_t i = 0; i < ours.attentions.size(); ++i) {
    auto key = "attentions." + std::to_string(i);
    if (!ref.count(key)) {
      ADD_FAILURE() << what << ": reference lacks " << key;
      continue;
    }
    d.attention = std::max(d.attention, max_abs(real_query_rows(ours.attentions[i], in.mask),
                                                real_query_rows(ref.at(key), in.mask)));
  }
  d.pooled = max_abs(ours.pooled, ref.at("pooled"));
  if (ref.count("logits")) d.logits = max_abs(ours.logits, ref.at("logits"));
  EXPECT_LE(d.hidden, kTolerance) << what << ": hidden states";
  EXPECT_LE(d.attention, kTolerance) << what << ": attentions";
  EXPECT_LE(d.pooled, kTolerance) << what << ": pooled output";
  EXPECT_LE(d.logits, kTolerance) << what << ": logits";
  auto num = [](double v, bool compared) { return compared ? fmt::format("{:.3g}", v) : std::string("-"); };
  std::printf("[ max diff ] %-36s hidden %-9s attention %-9s pooled %-9s logits %s\n", what.c_str(),
              num(d.hidden, true).c_str(), num(d.attention, !ours.attentions.empty()).c_str(),
              num(d.pooled, true).c_str(), num(d.logits, ref.count("logits") > 0).c_str());
  return d;
}

bool have_python() { return !env("CONDENSE_PYTHON").empty(); }

// --- tiny random models -----------------------------------------------------------------------

BertConfig tiny_config(int64_t hidden = 32, int64_t layers = 2, int64_t heads = 4, int64_t labels = 2,
                       std::string act = "gelu") {
  BertConfig c;
  c.vocab_size = 50;
  c.hidden_size = hidden;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.intermediate_size = 48;
  c.max_position_embeddings = 16;
  c.num_labels = labels;
  c.hidden_act = std::move(act);
  return c;
}

// Weights far from the 0.02-std initialisation: with near-zero weights every layer is almost the
// identity after LayerNorm, and e.g. gelu vs gelu_new or a wrong attention scale would hide in
// rounding. Unit-variance pre-activations make attention peaked and activations non-linear.
void randomize(BertClassifier& model, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard guard;
  for (auto& p : model->named_parameters()) {
    const auto& name = p.key();
    auto& t = p.value();
    if (name.find("LayerNorm.weight") != std::string::npos) {
      t.copy_(1 + 0.2 * torch::randn_like(t));
    } else if (t.dim() == 1) {
      t.copy_(0.2 * torch::randn_like(t));
    } else if (name.find("embeddings") != std::string::npos) {
      t.copy_(torch::randn_like(t));
    } else {
      t.copy_(1.5 * torch::randn_like(t) / std::sqrt(static_cast<double>(t.size(1))));
    }
  }
}

// Random ids with varied lengths (one row full, one of length 1 + [CLS]) and both segment ids.
Inputs random_inputs(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed) {
  torch::manual_seed(seed);
  Inputs in{torch::randint(1, vocab, {batch, seq}, torch::kInt64), torch::zeros({batch, seq}, torch::kInt64),
            torch::zeros({batch, seq}, torch::kInt64)};
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t len = b == 0 ? seq : b == 1 ? 2 : 2 + (b * 7) % (seq - 2);
    in.mask.index_put_({b, torch::indexing::Slice(0, len)}, 1);
    in.types.index_put_({b, torch::indexing::Slice(len / 2, len)}, 1);
    in.ids.index_put_({b, torch::indexing::Slice(len, torch::indexing::None)}, 0);
  }
  return in;
}

// Saves a tiny model into `scratch`/`name` and returns the folder.
fs::path save_tiny(const fs::path& scratch, const std::string& name, const BertConfig& c, uint64_t seed = 1) {
  BertClassifier model(c);
  randomize(model, seed);
  condense::nn::save_pretrained(model, scratch / name, {});
  return scratch / name;
}

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(condense::read_file(p)); }
void write_json(const fs::path& p, const nlohmann::json& j) { condense::write_file_atomic(p, j.dump(2)); }

// --- parity with transformers -----------------------------------------------------------------

TEST(Bert, MatchesTransformersOnTeacher) {
  const std::string teacher = env("CONDENSE_TEACHER_DIR");
  if (!have_python() || teacher.empty()) GTEST_SKIP() << "CONDENSE_PYTHON or CONDENSE_TEACHER_DIR not set";
  const auto sst2_dir = condense::testing::glue_dir("SST-2"), mrpc_dir = condense::testing::glue_dir("MRPC");
  if (sst2_dir.empty() || mrpc_dir.empty()) GTEST_SKIP() << "GLUE SST-2/MRPC data not found";
  const auto scratch = condense::testing::scratch_dir("bert_teacher_parity");

  // Real sentences of different lengths in one batch, so most rows carry padding.
  auto tok = condense::text::WordPieceTokenizer::from_directory(teacher);
  auto sst2 = condense::data::read_glue_split(condense::data::Task::SST2, sst2_dir, "dev");
  auto mrpc = condense::data::read_glue_split(condense::data::Task::MRPC, mrpc_dir, "dev");
  std::vector<condense::text::Encoding> encs;
  for (std::size_t i = 0; i < 16; ++i) encs.push_back(tok.encode(sst2.examples.at(i).text_a));
  for (std::size_t i = 0; i < 8; ++i) {
    const auto& e = mrpc.examples.at(i);
    encs.push_back(tok.encode(e.text_a, *e.text_b));
  }
  const auto in = pad_batch(encs, tok.pad_id());
  ASSERT_GT(in.mask.sum().item<int64_t>(), 0);
  ASSERT_LT(in.mask.sum().item<int64_t>(), in.mask.numel()) << "the batch should contain padding";
  ASSERT_TRUE(in.types.any().item<bool>()) << "the MRPC pairs should give segment 1 tokens";
  std::printf("[ batch    ] %lld sequences padded to %lld tokens, %lld real\n",
              static_cast<long long>(in.ids.size(0)), static_cast<long long>(in.ids.size(1)),
              static_cast<long long>(in.mask.sum().item<int64_t>()));

  // The teacher is a bare BertModel: the head is fresh, the position_ids buffer unused.
  LoadReport report;
  auto model = condense::nn::load_classifier(teacher, std::nullopt, &report);
  model->eval();
  EXPECT_EQ(report.initialized, (std::vector<std::string>{"classifier.weight", "classifier.bias"}));
  EXPECT_EQ(report.unused, (std::vector<std::string>{"embeddings.position_ids"}));
  // Our fresh head goes to transformers through save_pretrained, so the logits compare like for like.
  const auto saved = scratch / "saved";
  condense::nn::save_pretrained(model, saved, teacher);

  const auto err = run_reference(scratch, in,
                                 {{"base", "sdpa", teacher, scratch / "base_sdpa.safetensors"},
                                  {"base", "eager", teacher, scratch / "base_eager.safetensors"},
                                  {"cls", "sdpa", saved, scratch / "cls_sdpa.safetensors"},
                                  {"cls", "eager", saved, scratch / "cls_eager.safetensors"}});
  ASSERT_TRUE(err.empty()) << err;

  // Asking for attention maps switches our attention from the fused kernel to an explicit
  // softmax; both paths must match both of transformers' implementations.
  auto explicit_out = forward(model, in, ForwardOptions().with_hidden_states().with_attentions());
  auto fused_out = forward(model, in, ForwardOptions().with_hidden_states());
  ASSERT_EQ(explicit_out.hidden_states.size(), 7u);
  ASSERT_EQ(explicit_out.attentions.size(), 6u);
  EXPECT_EQ(explicit_out.attentions[0].sizes(), (c10::IntArrayRef{in.ids.size(0), 12, in.ids.size(1), in.ids.size(1)}));
  compare(explicit_out, read_reference(scratch / "base_eager.safetensors", "eager"), in, "teacher base eager");
  compare(fused_out, read_reference(scratch / "base_sdpa.safetensors", "sdpa"), in, "teacher base sdpa");
  compare(explicit_out, read_reference(scratch / "cls_eager.safetensors", "eager"), in, "teacher cls eager");
  compare(fused_out, read_reference(scratch / "cls_sdpa.safetensors", "sdpa"), in, "teacher cls sdpa");

  // The saved folder reloads bit for bit (no dtype change or renaming on the way).
  LoadReport reload_report;
  auto reloaded = condense::nn::load_classifier(saved, std::nullopt, &reload_report);
  EXPECT_TRUE(reload_report.initialized.empty());
  EXPECT_TRUE(reload_report.unused.empty());
  auto reloaded_params = reloaded->named_parameters();
  for (const auto& p : model->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), reloaded_params[p.key()])) << p.key();
  }
}

// Tiny random models of several shapes and activations, created here, saved with save_pretrained
// and loaded by transformers' BertForSequenceClassification.
void check_random_models(const std::string& scratch_name, const std::vector<BertConfig>& configs) {
  if (!have_python()) GTEST_SKIP() << "CONDENSE_PYTHON not set";
  const auto scratch = condense::testing::scratch_dir(scratch_name);
  const auto in = random_inputs(6, 14, configs.front().vocab_size, 7);
  std::vector<BertClassifier> models;
  std::vector<RefJob> jobs;
  for (std::size_t i = 0; i < configs.size(); ++i) {
    ASSERT_EQ(configs[i].vocab_size, configs.front().vocab_size);
    models.emplace_back(configs[i]);
    randomize(models.back(), 100 + i);
    models.back()->eval();
    const auto dir = scratch / ("model" + std::to_string(i));
    condense::nn::save_pretrained(models.back(), dir, {});
    jobs.push_back({"cls", "sdpa", dir, scratch / ("sdpa" + std::to_string(i) + ".safetensors")});
    jobs.push_back({"cls", "eager", dir, scratch / ("eager" + std::to_string(i) + ".safetensors")});
  }
  const auto err = run_reference(scratch, in, jobs);
  ASSERT_TRUE(err.empty()) << err;
  for (std::size_t i = 0; i < configs.size(); ++i) {
    const auto& c = configs[i];
    const auto name = fmt::format("{} L{} H{} A{} labels {}", c.hidden_act, c.num_hidden_layers, c.hidden_size,
                                  c.num_attention_heads, c.num_labels);
    auto explicit_out = forward(models[i], in, ForwardOptions().with_hidden_states().with_attentions());
    auto fused_out = forward(models[i], in, ForwardOptions().with_hidden_states());
    ASSERT_EQ(explicit_out.logits.sizes(), (c10::IntArrayRef{in.ids.size(0), c.num_labels})) << name;
    compare(explicit_out, read_reference(scratch / ("eager" + std::to_string(i) + ".safetensors"), "eager"), in,
            name + " eager");
    compare(fused_out, read_reference(scratch / ("sdpa" + std::to_string(i) + ".safetensors"), "sdpa"), in,
            name + " sdpa");
    // Guard against a vacuous pass: the random weights must give logits that are far apart.
    EXPECT_GT(explicit_out.logits.std().item<double>(), 0.05) << name << ": logits nearly constant";
  }
}

TEST(Bert, MatchesTransformersOnRandomShapes) {
  auto make = [](int64_t layers, int64_t hidden, int64_t heads, int64_t inter, const char* act, double eps) {
    BertConfig c;
    c.vocab_size = 100;
    c.num_hidden_layers = layers;
    c.hidden_size = hidden;
    c.num_attention_heads = heads;
    c.intermediate_size = inter;
    c.max_position_embeddings = 20;  // > seq 14, and not 512, so the table size comes from the file
    c.type_vocab_size = 2;
    c.num_labels = 3;
    c.hidden_act = act;
    // Not the default: with eps 1e-3 a LayerNorm that ignored the config is off by ~1e-3.
    c.layer_norm_eps = eps;
    return c;
  };
  check_random_models("bert_random_parity", {make(2, 64, 4, 96, "gelu_new", 1e-5), make(2, 64, 4, 96, "relu", 1e-12),
                                             make(3, 48, 6, 80, "gelu", 1e-3), make(1, 32, 2, 40, "silu", 1e-6)});
}

TEST(Bert, RegressionHeadMatchesTransformers) {
  BertConfig c;
  c.vocab_size = 100;
  c.num_hidden_layers = 2;
  c.hidden_size = 64;
  c.num_attention_heads = 4;
  c.intermediate_size = 96;
  c.max_position_embeddings = 20;
  c.num_labels = 1;  // STS-B style: one output, problem_type regression in config.json
  c.hidden_act = "gelu_pytorch_tanh";
  BertClassifier probe(c);
  EXPECT_EQ(probe->config().to_json().at("problem_type"), "regression");
  check_random_models("bert_regression_parity", {c});
}

TEST(Bert, ConfigRoundTripKeepsUnknownFields) {
  auto j = tiny_config().to_json();
  j["custom_field"] = {{"nested", 1}};
  j["_name_or_path"] = "somewhere/else";
  auto c = BertConfig::from_json(j, "test config");
  auto back = c.to_json();
  EXPECT_EQ(back.at("custom_field"), j.at("custom_field"));
  EXPECT_FALSE(back.contains("_name_or_path")) << "a local path must not be written into exported configs";
  EXPECT_EQ(back.at("num_labels"), 2);
  EXPECT_EQ(back.at("id2label").size(), 2u);
}

// --- checkpoint errors ------------------------------------------------------------------------

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    scratch_ = condense::testing::scratch_dir(std::string("checkpoint_") +
                                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    dir_ = save_tiny(scratch_, "model", tiny_config());
  }
  std::string load_error() const {
    return error_of([&] { condense::nn::load_classifier(dir_); });
  }
  std::string weights() const { return (dir_ / "model.safetensors").string(); }
  std::string config() const { return (dir_ / "config.json").string(); }
  void edit_config(const std::function<void(nlohmann::json&)>& f) const {
    auto j = read_json(dir_ / "config.json");
    f(j);
    write_json(dir_ / "config.json", j);
  }
  fs::path scratch_, dir_;
};

TEST_F(Checkpoint, TinyModelRoundTrips) {
  BertClassifier a(tiny_config());
  randomize(a, 5);
  condense::nn::save_pretrained(a, scratch_ / "rt", {}, {{"note", "hello"}});
  LoadReport report;
  auto b = condense::nn::load_classifier(scratch_ / "rt", std::nullopt, &report);
  EXPECT_TRUE(report.initialized.empty());
  EXPECT_TRUE(report.unused.empty());
  auto pa = a->named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
  auto st = condense::io::SafetensorsFile::open(scratch_ / "rt" / "model.safetensors");
  EXPECT_EQ(st.metadata().at("note"), "hello");
  EXPECT_EQ(st.metadata().at("format"), "pt") << "transformers refuses safetensors files without format=pt";
}

// MobileBERT-style layers: a 16-wide bottleneck with 3 stacked FFNs inside a 32-wide model. Layer
// outputs keep the model width, attention runs in the bottleneck, the folder round-trips with its
// shape recorded, and an invalid bottleneck names its field.
TEST_F(Checkpoint, BottleneckModelRoundTrips) {
  auto c = tiny_config();
  c.bottleneck_size = 16;
  c.num_ffn = 3;
  BertClassifier a(c);
  randomize(a, 6);
  a->eval();
  auto names = a->named_parameters();
  EXPECT_TRUE(names.contains("bert.encoder.layer.1.bottleneck.input_dense.weight"));
  EXPECT_EQ(names["bert.encoder.layer.1.bottleneck.input_dense.weight"].sizes(), (c10::IntArrayRef{16, 32}));
  EXPECT_EQ(names["bert.encoder.layer.1.bottleneck.output.dense.weight"].sizes(), (c10::IntArrayRef{32, 16}));
  EXPECT_EQ(names["bert.encoder.layer.0.attention.self.query.weight"].sizes(), (c10::IntArrayRef{16, 16}));
  EXPECT_TRUE(names.contains("bert.encoder.layer.0.ffn.1.output.LayerNorm.weight"));
  EXPECT_FALSE(names.contains("bert.encoder.layer.0.ffn.2.output.LayerNorm.weight"));  // 2 extra + the last
  BertClassifier plain(tiny_config());
  EXPECT_LT(a->num_parameters(), plain->num_parameters());
  EXPECT_FALSE(c.hf_compatible());
  auto ids = torch::tensor({{2, 5, 9, 11, 3}}, torch::kInt64);
  auto mask = torch::ones_like(ids);
  auto out = a->forward(ids, torch::zeros_like(ids), mask,
                        condense::nn::ForwardOptions().with_hidden_states().with_attentions());
  ASSERT_EQ(out.hidden_states.size(), 3u);
  EXPECT_EQ(out.hidden_states[2].sizes(), (c10::IntArrayRef{1, 5, 32}));
  EXPECT_EQ(out.attentions[0].sizes(), (c10::IntArrayRef{1, 4, 5, 5}));
  condense::nn::save_pretrained(a, scratch_ / "mb", {});
  auto j = nlohmann::json::parse(condense::read_file(scratch_ / "mb" / "config.json"));
  EXPECT_EQ(j["condense_bottleneck_size"], 16);
  EXPECT_EQ(j["condense_num_ffn"], 3);
  auto b = condense::nn::load_classifier(scratch_ / "mb");
  b->eval();
  EXPECT_TRUE(torch::equal(a->forward(ids, torch::zeros_like(ids), mask).logits,
                           b->forward(ids, torch::zeros_like(ids), mask).logits));
  j["condense_bottleneck_size"] = 10;  // not a multiple of 4 heads
  condense::write_file_atomic(scratch_ / "mb" / "config.json", j.dump());
  auto msg = condense::testing::error_of([&] { condense::nn::load_classifier(scratch_ / "mb"); });
  EXPECT_NE(msg.find("field 'condense_bottleneck_size' (10) must be a multiple of num_attention_heads"),
            std::string::npos) << msg;
  // A plain model's config says nothing about bottlenecks (Hugging Face reads it unchanged).
  EXPECT_FALSE(tiny_config().to_json().contains("condense_bottleneck_size"));
}

// A masked-LM head saved under Hugging Face's names loads back; a file without one says so.
TEST_F(Checkpoint, MlmHeadLoadsFromHuggingFaceNames) {
  auto c = tiny_config();
  torch::manual_seed(8);
  condense::nn::BertMlmHead head(c);
  {
    torch::NoGradGuard g;
    head->bias.normal_();
  }
  std::vector<torch::Tensor> keep;
  std::vector<condense::io::TensorToWrite> out;
  for (const auto& p : head->named_parameters()) {
    auto t = p.value().detach().contiguous();
    keep.push_back(t);
    out.push_back({"cls.predictions." + p.key(), condense::io::DType::F32,
                   std::vector<int64_t>(t.sizes().begin(), t.sizes().end()), t.data_ptr(), t.nbytes()});
  }
  condense::io::write_safetensors(scratch_ / "mlm.safetensors", out, {});
  EXPECT_TRUE(condense::nn::has_mlm_head(scratch_ / "mlm.safetensors"));
  EXPECT_FALSE(condense::nn::has_mlm_head(dir_ / "model.safetensors"));
  condense::nn::BertMlmHead back(c);
  condense::nn::load_mlm_head(back, scratch_ / "mlm.safetensors");
  EXPECT_TRUE(torch::equal(back->bias, head->bias));
  EXPECT_TRUE(torch::equal(back->transform->dense->weight, head->transform->dense->weight));
  BertClassifier model(c);
  EXPECT_EQ(back(torch::zeros({3, 32}), model->bert->embeddings->word_embeddings->weight).sizes(),
            (c10::IntArrayRef{3, 50}));
  auto msg = condense::testing::error_of([&] { condense::nn::load_mlm_head(back, dir_ / "model.safetensors"); });
  EXPECT_NE(msg.find("'cls.predictions.bias' of the masked-LM head is missing"), std::string::npos) << msg;
}

TEST_F(Checkpoint, MissingWeightsFile) {
  fs::remove(dir_ / "model.safetensors");
  auto e = load_error();
  EXPECT_NE(e.find(weights()), std::string::npos) << e;
  EXPECT_NE(e.find("cannot open file"), std::string::npos) << e;
}

TEST_F(Checkpoint, MissingConfig) {
  fs::remove(dir_ / "config.json");
  auto e = load_error();
  EXPECT_NE(e.find(config()), std::string::npos) << e;
  EXPECT_NE(e.find("cannot open file"), std::string::npos) << e;
}

TEST_F(Checkpoint, MissingDirectory) {
  auto e = error_of([&] { condense::nn::load_classifier(scratch_ / "nope"); });
  EXPECT_NE(e.find((scratch_ / "nope").string() + ": not a model directory"), std::string::npos) << e;
}

TEST_F(Checkpoint, ConfigNotJson) {
  condense::write_file_atomic(dir_ / "config.json", "{\"hidden_size\": 32,");
  auto e = load_error();
  EXPECT_NE(e.find(config() + ": not valid JSON"), std::string::npos) << e;
}

TEST_F(Checkpoint, ConfigFieldOfWrongType) {
  edit_config([](auto& j) { j["hidden_size"] = "32"; });
  auto e = load_error();
  EXPECT_NE(e.find(config() + ": field 'hidden_size' has the wrong type (\"32\")"), std::string::npos) << e;
  edit_config([](auto& j) {
    j["hidden_size"] = 32;
    j["layer_norm_eps"] = nlohmann::json::array({1e-12});
  });
  e = load_error();
  EXPECT_NE(e.find(config() + ": field 'layer_norm_eps' has the wrong type"), std::string::npos) << e;
}

TEST_F(Checkpoint, HiddenSizeNotMultipleOfHeads) {
  edit_config([](auto& j) { j["num_attention_heads"] = 5; });
  auto e = load_error();
  EXPECT_NE(e.find(config() + ": field 'hidden_size' (32) must be a multiple of num_attention_heads (5)"),
            std::string::npos)
      << e;
}

TEST_F(Checkpoint, UnsupportedActivationAndPositionType) {
  edit_config([](auto& j) { j["hidden_act"] = "quick_gelu"; });
  auto e = load_error();
  EXPECT_NE(e.find(config() + ": field 'hidden_act' is 'quick_gelu'"), std::string::npos) << e;
  edit_config([](auto& j) {
    j["hidden_act"] = "gelu";
    j["position_embedding_type"] = "relative_key";
  });
  e = load_error();
  EXPECT_NE(e.find(config() + ": field 'position_embedding_type' is 'relative_key'"), std::string::npos) << e;
}

TEST_F(Checkpoint, RequiredTensorMissing) {
  BertClassifier model(tiny_config());
  // Teacher (bare BertModel) names, as the brief's example: the message names the file's tensor.
  auto bare = params_of(model, /*bare=*/true);
  std::erase_if(bare, [](const auto& p) { return p.first == "encoder.layer.1.output.dense.weight"; });
  write_tensors(dir_ / "model.safetensors", bare);
  auto e = load_error();
  EXPECT_NE(e.find(weights() + ": tensor 'encoder.layer.1.output.dense.weight' required by the config "
                               "(num_hidden_layers=2, hidden_size=32) is missing"),
            std::string::npos)
      << e;
  // The same with BertForSequenceClassification names.
  auto prefixed = params_of(model);
  std::erase_if(prefixed, [](const auto& p) { return p.first == "bert.embeddings.LayerNorm.bias"; });
  write_tensors(dir_ / "model.safetensors", prefixed);
  e = load_error();
  EXPECT_NE(e.find(weights() + ": tensor 'bert.embeddings.LayerNorm.bias' required by the config"), std::string::npos)
      << e;
}

TEST_F(Checkpoint, ShapeMismatchBetweenConfigAndWeights) {
  edit_config([](auto& j) { j["hidden_size"] = 64; });  // the weights are hidden 32
  auto e = load_error();
  EXPECT_NE(e.find(weights() + ": tensor 'bert.embeddings.word_embeddings.weight' has shape [50,32] but the config "
                               "(hidden_size=64, intermediate_size=48, vocab_size=50) needs [50,64]"),
            std::string::npos)
      << e;
}

TEST_F(Checkpoint, ExtraLayerBeyondConfig) {
  save_tiny(scratch_, "three", tiny_config(32, /*layers=*/3));
  fs::copy_file(scratch_ / "three" / "model.safetensors", dir_ / "model.safetensors",
                fs::copy_options::overwrite_existing);
  auto e = load_error();
  EXPECT_NE(e.find(weights() + ": tensor 'bert.encoder.layer.2.attention.self.query.weight' does not belong to a "
                               "model with num_hidden_layers=2 (config and weights disagree)"),
            std::string::npos)
      << e;
}

TEST_F(Checkpoint, NaNInWeights) {
  BertClassifier model(tiny_config());
  auto params = params_of(model);
  for (auto& [name, t] : params) {
    if (name == "bert.encoder.layer.0.intermediate.dense.weight") {
      t = t.clone();
      t[3][4] = NAN;
    }
  }
  write_tensors(dir_ / "model.safetensors", params);
  auto e = load_error();
  EXPECT_NE(e.find(weights() + ": tensor 'bert.encoder.layer.0.intermediate.dense.weight' contains NaN or Inf"),
            std::string::npos)
      << e;
}

TEST_F(Checkpoint, TruncatedWeights) {
  const auto size = fs::file_size(dir_ / "model.safetensors");
  fs::resize_file(dir_ / "model.safetensors", size - 100);
  auto e = load_error();
  EXPECT_NE(e.find(weights() + ": tensor '"), std::string::npos) << e;
  EXPECT_NE(e.find("file truncated?"), std::string::npos) << e;
}

TEST_F(Checkpoint, TeacherFormatReportsFreshHeadAndUnusedBuffer) {
  // A sentence-transformers BertModel file: bare names, a position_ids buffer, no classifier.
  BertClassifier source(tiny_config());
  randomize(source, 9);
  auto bare = params_of(source, /*bare=*/true);
  std::erase_if(bare, [](const auto& p) { return p.first.rfind("classifier.", 0) == 0; });
  bare.emplace_back("embeddings.position_ids", torch::arange(16, torch::kInt64).unsqueeze(0));
  write_tensors(dir_ / "model.safetensors", bare);
  LoadReport report;
  auto model = condense::nn::load_classifier(dir_, std::nullopt, &report);
  EXPECT_EQ(report.initialized, (std::vector<std::string>{"classifier.weight", "classifier.bias"}));
  EXPECT_EQ(report.unused, (std::vector<std::string>{"embeddings.position_ids"}));
  // Everything but the head came from the file, the pooler included.
  for (const auto& p : source->named_parameters()) {
    if (p.key().rfind("classifier.", 0) == 0) continue;
    EXPECT_TRUE(torch::equal(p.value(), model->named_parameters()[p.key()])) << p.key();
  }
  // A fresh head: HF initialisation (zero bias), not the file's.
  EXPECT_TRUE(torch::equal(model->classifier->bias, torch::zeros({2})));
}

TEST_F(Checkpoint, NumLabelsOverrideReinitialisesHead) {
  LoadReport report;
  auto model = condense::nn::load_classifier(dir_, 3, &report);
  EXPECT_EQ(model->config().num_labels, 3);
  EXPECT_EQ(report.initialized, (std::vector<std::string>{"classifier.weight", "classifier.bias"}));
  EXPECT_TRUE(report.unused.empty()) << "the replaced head counts as used";
}

// --- atomic save ------------------------------------------------------------------------------

// name -> size and hash of every file under `dir` (recursively), to detect any change while
// keeping failure messages short.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    auto rel = fs::relative(e.path(), dir).string();
    if (!e.is_regular_file()) {
      out[rel] = "<dir>";
      continue;
    }
    const auto bytes = condense::read_file(e.path());
    out[rel] = fmt::format("{} bytes, hash {:016x}", bytes.size(), std::hash<std::string>{}(bytes));
  }
  return out;
}

// Entries beside the target left by an unfinished save (staging or backup directories).
std::vector<std::string> leftovers(const fs::path& parent) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(parent)) {
    auto n = e.path().filename().string();
    if (n.find(".partial.") != std::string::npos || n.find(".old.") != std::string::npos ||
        n.find(".tmp.") != std::string::npos)
      out.push_back(n);
  }
  return out;
}

TEST_F(Checkpoint, SaveIsAtomicWhenItFailsMidway) {
  const auto scratch = scratch_ / "save";
  fs::create_directories(scratch);
  const auto target = scratch / "out" / "model";
  BertClassifier first(tiny_config()), second(tiny_config(32, 2, 4, 2, "relu"));
  randomize(first, 1);
  randomize(second, 2);
  condense::nn::save_pretrained(first, target, {}, {}, {{"metrics.json", "{\"first\": true}\n"}});
  const auto before = snapshot(target);
  ASSERT_TRUE(before.count("model.safetensors"));

  // Failures at different points of the save, all after the staging directory exists:
  // 1. in model.safetensors (metadata must be valid UTF-8, checked by the writer);
  auto e = error_of([&] { condense::nn::save_pretrained(second, target, {}, {{"note", "\xff"}}); });
  EXPECT_NE(e.find("__metadata__ key 'note' or its value is not valid UTF-8"), std::string::npos) << e;
  EXPECT_EQ(snapshot(target), before);
  EXPECT_EQ(leftovers(target.parent_path()), std::vector<std::string>{});
  // 2. after model.safetensors and config.json, in the last extra file (its subdirectory does
  //    not exist in the staging folder).
  e = error_of([&] {
    condense::nn::save_pretrained(second, target, {}, {}, {{"metrics.json", "{}"}, {"reports/x.json", "{}"}});
  });
  EXPECT_NE(e.find("reports/x.json"), std::string::npos) << e;
  EXPECT_EQ(snapshot(target), before);
  EXPECT_EQ(leftovers(target.parent_path()), std::vector<std::string>{});

  // A failed first save leaves no target at all.
  const auto fresh = scratch / "out" / "fresh";
  EXPECT_NE(error_of([&] { condense::nn::save_pretrained(second, fresh, {}, {{"note", "\xff"}}); }),
            "(no condense::Error thrown)");
  EXPECT_FALSE(fs::exists(fresh));
  EXPECT_EQ(leftovers(target.parent_path()), std::vector<std::string>{});

  // The model on disk is still the first one.
  auto loaded = condense::nn::load_classifier(target);
  EXPECT_EQ(loaded->config().hidden_act, "gelu");
  EXPECT_TRUE(torch::equal(loaded->classifier->weight, first->classifier->weight));
}

TEST_F(Checkpoint, SaveOverwritesExistingDirectory) {
  const auto scratch = scratch_ / "save";
  fs::create_directories(scratch);
  const auto target = scratch / "model";
  const auto tokenizer = scratch / "tokenizer";
  fs::create_directories(tokenizer);
  condense::write_file_atomic(tokenizer / "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n");
  condense::write_file_atomic(tokenizer / "unrelated.txt", "not a tokenizer file\n");
  BertClassifier first(tiny_config()), second(tiny_config(32, 3, 4, 3));
  randomize(first, 1);
  randomize(second, 2);
  condense::nn::save_pretrained(first, target, tokenizer, {}, {{"metrics.json", "{}"}});
  condense::write_file_atomic(target / "stale.txt", "from an earlier run\n");
  condense::nn::save_pretrained(second, target, tokenizer);
  // The folder is replaced as a whole: files of the old model do not survive.
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(target)) names.insert(e.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"config.json", "model.safetensors", "vocab.txt"}));
  EXPECT_EQ(condense::read_file(target / "vocab.txt"), condense::read_file(tokenizer / "vocab.txt"));
  EXPECT_EQ(leftovers(scratch), std::vector<std::string>{});
  auto loaded = condense::nn::load_classifier(target);
  EXPECT_EQ(loaded->config().num_hidden_layers, 3);
  EXPECT_EQ(loaded->config().num_labels, 3);
  EXPECT_TRUE(torch::equal(loaded->classifier->weight, second->classifier->weight));
}

TEST_F(Checkpoint, SaveToPathWithTrailingSlash) {
  // `condense export --out dir/` passes the slash through; the staging folder must still be a
  // sibling of the target, not a child of it.
  const auto scratch = scratch_ / "save";
  fs::create_directories(scratch);
  BertClassifier model(tiny_config());
  randomize(model, 3);
  const auto with_slash = fs::path((scratch / "model").string() + "/");
  condense::nn::save_pretrained(model, with_slash, {});  // new folder
  condense::nn::save_pretrained(model, with_slash, {});  // over an existing one
  EXPECT_TRUE(fs::exists(scratch / "model" / "model.safetensors"));
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(scratch / "model")) names.insert(e.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"config.json", "model.safetensors"}));
  EXPECT_EQ(leftovers(scratch), std::vector<std::string>{});
}

}  // namespace
