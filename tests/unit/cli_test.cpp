// The `condense` binary end to end (CONDENSE_CLI): every bad input gives a non-zero exit, exactly
// one line on stderr naming the file or field, and no output folder; a fine-tuning run killed with
// SIGKILL (or cut short with --stop-after) and resumed produces the same model, byte for byte, as
// an uninterrupted run; inspect, bench, export and distill produce what they promise.
//
// Fixtures are generated into a scratch folder by each test: a tiny random BERT (2 layers, hidden
// 32, 2 heads, FFN 64) with the teacher's vocabulary, saved as a Hugging Face folder, and a data
// folder with the first 300 SST-2 train rows and 100 dev rows.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "condense/core/file.h"
#include "condense/nn/bert.h"
#include "condense/nn/checkpoint.h"
#include "test_util.h"

namespace {

using condense::nn::BertClassifier;
using condense::nn::BertConfig;
namespace nn = condense::nn;
namespace fs = std::filesystem;
namespace ct = condense::testing;
using nlohmann::json;

fs::path env_path(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? fs::path(v) : fs::path();
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// ---------------------------------------------------------------------------------------------
// Running the binary

struct Result {
  int exit_code = -1;  ///< exit status, or -signal when killed
  std::string out, err;
};

/// Starts CONDENSE_CLI with `args`, stdout/stderr going to the given files; returns the pid.
pid_t spawn(const std::vector<std::string>& args, const fs::path& out_file, const fs::path& err_file) {
  const std::string cli = env_path("CONDENSE_CLI").string();
  std::vector<std::string> all{cli};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string out_s = out_file.string(), err_s = err_file.string();
  pid_t pid = ::fork();
  if (pid == 0) {
    int o = ::open(out_s.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = ::open(err_s.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) ::_exit(126);
    ::dup2(o, STDOUT_FILENO);
    ::dup2(e, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1000;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1001;
}

/// Runs CONDENSE_CLI to completion in `work` (a scratch folder that receives the captured streams).
Result run(const fs::path& work, const std::vector<std::string>& args) {
  static int counter = 0;
  const auto base = work / ("run" + std::to_string(counter++));
  const pid_t pid = spawn(args, base.string() + ".out", base.string() + ".err");
  Result r;
  r.exit_code = wait_for(pid);
  r.out = slurp(base.string() + ".out");
  r.err = slurp(base.string() + ".err");
  return r;
}

std::string show(const Result& r) {
  return "exit " + std::to_string(r.exit_code) + "\n--- stdout\n" + r.out + "--- stderr\n" + r.err;
}

// ---------------------------------------------------------------------------------------------
// Fixtures

BertConfig tiny_config(int64_t vocab_size) {
  BertConfig c;
  c.vocab_size = vocab_size;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 64;
  c.max_position_embeddings = 128;
  c.num_labels = 2;
  c.hidden_dropout_prob = 0.1;  // dropout on: the RNG state is part of what resume must restore
  c.attention_probs_dropout_prob = 0.1;
  return c;
}

int64_t count_lines(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) ++n;
  return n;
}

/// Header plus the first `rows` data rows of a GLUE TSV.
std::string head_of(const fs::path& tsv, int rows) {
  std::ifstream in(tsv);
  std::string line, out;
  for (int i = 0; i <= rows && std::getline(in, line); ++i) out += line + "\n";
  return out;
}

struct Fixture {
  fs::path work;   ///< this test's scratch folder
  fs::path model;  ///< tiny random model folder (config.json, model.safetensors, vocab.txt, ...)
  fs::path data;   ///< SST-2 folder with 300 train and 100 dev rows
  int64_t parameters = 0;
};

/// Builds the fixture in a fresh scratch folder; empty `work` when the inputs are missing.
Fixture make_fixture(const std::string& name) {
  Fixture f;
  const auto teacher = env_path("CONDENSE_TEACHER_DIR");
  const auto sst2 = ct::glue_dir("SST-2");
  if (env_path("CONDENSE_CLI").empty() || teacher.empty() || sst2.empty()) return f;
  f.work = ct::scratch_dir("cli_" + name);
  f.model = f.work / "tiny";
  f.data = f.work / "sst2";
  torch::manual_seed(1234);
  BertClassifier m(tiny_config(count_lines(teacher / "vocab.txt")));
  f.parameters = m->num_parameters();
  nn::save_pretrained(m, f.model, teacher);
  fs::create_directories(f.data);
  spit(f.data / "train.tsv", head_of(sst2 / "train.tsv", 300));
  spit(f.data / "dev.tsv", head_of(sst2 / "dev.tsv", 100));
  return f;
}

#define FIXTURE(f)                                                                        \
  auto f = make_fixture(::testing::UnitTest::GetInstance()->current_test_info()->name()); \
  if (f.work.empty()) GTEST_SKIP() << "CONDENSE_CLI, CONDENSE_TEACHER_DIR or SST-2 data missing"

/// Files or folders in the parent of `out` whose name starts with out's name (out, out.partial.*,
/// out.state, ...).
std::vector<std::string> leftovers(const fs::path& out) {
  std::vector<std::string> found;
  if (!fs::exists(out.parent_path())) return found;
  const auto stem = out.filename().string();
  for (const auto& e : fs::directory_iterator(out.parent_path())) {
    const auto n = e.path().filename().string();
    if (n.rfind(stem, 0) == 0) found.push_back(n);
  }
  return found;
}

/// The command failed the way the CLI promises: non-zero exit, one line on stderr that starts with
/// "condense: error: " and contains every needle, and nothing under `out`.
void expect_one_line_error(const Fixture& f, const std::vector<std::string>& args, const fs::path& out,
                           const std::vector<std::string>& needles) {
  auto r = run(f.work, args);
  EXPECT_NE(r.exit_code, 0) << show(r);
  EXPECT_GT(r.exit_code, 0) << "crashed: " << show(r);
  ASSERT_FALSE(r.err.empty()) << show(r);
  EXPECT_EQ(r.err.back(), '\n') << show(r);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << show(r);
  EXPECT_EQ(r.err.rfind("condense: error: ", 0), 0u) << show(r);
  for (const auto& n : needles) EXPECT_NE(r.err.find(n), std::string::npos) << "lacks '" << n << "': " << show(r);
  EXPECT_TRUE(leftovers(out).empty()) << "left behind: " << leftovers(out).front();
}

std::vector<std::string> finetune_args(const fs::path& model, const fs::path& data, const fs::path& out) {
  return {"finetune", "--model",    model.string(), "--data", data.string(),
          "--out",    out.string(), "--epochs",     "1",      "--quiet"};
}

/// A copy of the tiny model folder that a test may damage.
fs::path model_copy(const Fixture& f, const std::string& name) {
  auto dir = f.work / name;
  fs::copy(f.model, dir, fs::copy_options::recursive);
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Bad inputs

TEST(Cli, MissingModelDir) {
  FIXTURE(f);
  auto out = f.work / "out";
  auto missing = f.work / "no_such_model";
  expect_one_line_error(f, finetune_args(missing, f.data, out), out, {missing.string()});
  expect_one_line_error(f, {"eval", "--model", missing.string(), "--data", f.data.string()}, out, {missing.string()});
  expect_one_line_error(f, {"inspect", "--model", missing.string()}, out, {missing.string()});
  // A folder with the tokenizer but no weights names the weights file.
  auto no_weights = model_copy(f, "no_weights");
  fs::remove(no_weights / "model.safetensors");
  expect_one_line_error(f, finetune_args(no_weights, f.data, out), out, {(no_weights / "model.safetensors").string()});
}

TEST(Cli, TruncatedSafetensors) {
  FIXTURE(f);
  auto out = f.work / "out";
  auto m = model_copy(f, "truncated");
  const auto file = m / "model.safetensors";
  fs::resize_file(file, fs::file_size(file) / 2);
  expect_one_line_error(f, finetune_args(m, f.data, out), out, {file.string()});
  fs::resize_file(file, 5);  // shorter than the length prefix
  expect_one_line_error(f, finetune_args(m, f.data, out), out, {file.string(), "8-byte"});
  expect_one_line_error(f, {"bench", "--model", m.string(), "--seconds", "0.1"}, out, {file.string()});
}

TEST(Cli, HostileSafetensorsHeader) {
  FIXTURE(f);
  auto out = f.work / "out";
  auto m = model_copy(f, "hostile");
  const auto file = m / "model.safetensors";
  // Header length 2^63 (little-endian u64), then a few bytes: must be rejected before any allocation.
  std::string bytes(8, '\0');
  bytes[7] = static_cast<char>(0x80);
  bytes += "{\"a\":{}}";
  spit(file, bytes);
  expect_one_line_error(f, finetune_args(m, f.data, out), out, {file.string(), "header length"});
  expect_one_line_error(f, {"inspect", "--model", m.string(), "--json"}, out, {file.string(), "header length"});
}

TEST(Cli, ConfigAndWeightsDisagree) {
  FIXTURE(f);
  auto out = f.work / "out";
  auto m = model_copy(f, "mismatch");
  auto cfg = json::parse(slurp(m / "config.json"));
  cfg["intermediate_size"] = 128;
  spit(m / "config.json", cfg.dump(2));
  expect_one_line_error(
      f, finetune_args(m, f.data, out), out,
      {(m / "model.safetensors").string(), "bert.encoder.layer.0.intermediate.dense.weight", "[64,32]", "[128,32]"});
  // Fewer layers in the config than in the file.
  cfg["intermediate_size"] = 64;
  cfg["num_hidden_layers"] = 1;
  spit(m / "config.json", cfg.dump(2));
  expect_one_line_error(f, finetune_args(m, f.data, out), out, {"encoder.layer.1", "num_hidden_layers=1"});
  // A config field with a bad value names the file and the field.
  cfg["num_hidden_layers"] = 2;
  cfg["hidden_size"] = -4;
  spit(m / "config.json", cfg.dump(2));
  expect_one_line_error(f, finetune_args(m, f.data, out), out, {(m / "config.json").string(), "hidden_size"});
}

TEST(Cli, UnknownTask) {
  FIXTURE(f);
  auto out = f.work / "out";
  auto args = finetune_args(f.model, f.data, out);
  args.insert(args.end(), {"--task", "foo"});
  expect_one_line_error(f, args, out, {"unknown task 'foo'"});
  expect_one_line_error(f, {"eval", "--model", f.model.string(), "--data", f.data.string(), "--task", "foo"}, out,
                        {"unknown task 'foo'"});
}

TEST(Cli, EmptyDataset) {
  FIXTURE(f);
  auto out = f.work / "out";
  auto data = f.work / "empty_data";
  fs::create_directories(data);
  spit(data / "train.tsv", "sentence\tlabel\n");
  spit(data / "dev.tsv", head_of(f.data / "dev.tsv", 10));
  expect_one_line_error(f, finetune_args(f.model, data, out), out, {(data / "train.tsv").string(), "no examples"});
  // A missing split file is named too.
  fs::remove(data / "train.tsv");
  expect_one_line_error(f, finetune_args(f.model, data, out), out, {(data / "train.tsv").string()});
}

TEST(Cli, MalformedTsvRow) {
  FIXTURE(f);
  auto out = f.work / "out";
  auto data = f.work / "bad_data";
  fs::create_directories(data);
  spit(data / "train.tsv", "sentence\tlabel\na fine movie \t1\nno label here\nanother \t0\n");
  spit(data / "dev.tsv", head_of(f.data / "dev.tsv", 10));
  expect_one_line_error(f, finetune_args(f.model, data, out), out, {(data / "train.tsv").string() + ":3:"});
  spit(data / "train.tsv", "sentence\tlabel\na fine movie \t1\nbad label \t7\n");
  expect_one_line_error(f, finetune_args(f.model, data, out), out,
                        {(data / "train.tsv").string() + ":3:", "bad label '7'"});
}

TEST(Cli, BadRecipe) {
  FIXTURE(f);
  auto out = f.work / "student";
  auto recipe = f.work / "bad.yaml";
  spit(recipe, "student: {layers: 1}\ntrain: {epoch: 2}\n");
  auto args = std::vector<std::string>{"distill",  "--teacher",     f.model.string(), "--data",     f.data.string(),
                                       "--recipe", recipe.string(), "--out",          out.string(), "--quiet"};
  expect_one_line_error(f, args, out, {recipe.string(), "unknown key 'train.epoch'"});
  spit(recipe, "distill: {loss: kld}\n");
  expect_one_line_error(f, args, out, {recipe.string(), "distill.loss", "'kld'"});
  spit(recipe, "task: foo\n");
  expect_one_line_error(f, args, out, {recipe.string(), "field 'task'", "unknown task 'foo'"});
  spit(recipe, "train: {epochs: many}\n");
  expect_one_line_error(f, args, out, {recipe.string(), "train.epochs", "many"});
  fs::remove(recipe);
  expect_one_line_error(f, args, out, {recipe.string(), "not found"});
  // A bad student shape from flags.
  args = {"distill",       "--teacher", f.model.string(), "--data", f.data.string(), "--layers",   "2",
          "--init-layers", "0,5",       "--epochs",       "1",      "--out",         out.string(), "--quiet"};
  expect_one_line_error(f, args, out, {"init_layers", "teacher layer 5 does not exist"});
}

TEST(Cli, BadTrainingFlag) {
  FIXTURE(f);
  auto out = f.work / "out";
  auto args = finetune_args(f.model, f.data, out);
  args.insert(args.end(), {"--warmup", "1.5"});
  expect_one_line_error(f, args, out, {"'warmup_ratio'"});
  // Flag-parsing errors follow the same one-line rule.
  expect_one_line_error(f, {"finetune", "--model", f.model.string(), "--data", f.data.string()}, out, {"--out"});
  args = finetune_args(f.model, f.data, out);
  args.insert(args.end(), {"--batch-size", "abc"});
  expect_one_line_error(f, args, out, {"--batch-size", "abc"});
  args = finetune_args(f.model, f.data, out);
  args.push_back("--no-such-flag");
  expect_one_line_error(f, args, out, {"--no-such-flag"});
  expect_one_line_error(f, {"frobnicate"}, out, {"subcommand"});
  // --help is not an error.
  auto h = run(f.work, {"finetune", "--help"});
  EXPECT_EQ(h.exit_code, 0) << show(h);
  EXPECT_NE(h.out.find("--save-every"), std::string::npos) << show(h);
}

TEST(Cli, DivergingTrainingWritesNothing) {
  FIXTURE(f);
  auto out = f.work / "out";
  // A learning rate of 1e30 sends the loss to NaN within a step or two.
  auto args = finetune_args(f.model, f.data, out);
  args.insert(args.end(), {"--lr", "1e30", "--warmup", "0", "--threads", "1"});
  expect_one_line_error(f, args, out, {"training loss is", "NaN", "without writing a model"});
}

// ---------------------------------------------------------------------------------------------
// Interrupted runs

std::vector<std::string> resumable_args(const Fixture& f, const fs::path& out, const std::string& threads = "1") {
  // 300 rows / batch 8 = 38 steps per epoch, 76 in all; state every 5 steps. One thread: two
  // OpenMP threads are several times slower on a loaded two-core machine, and a model trained
  // with 1 thread differs in the last bits from one trained with 2 (both runs must match).
  return {"finetune",
          "--model",
          f.model.string(),
          "--data",
          f.data.string(),
          "--out",
          out.string(),
          "--epochs",
          "2",
          "--batch-size",
          "8",
          "--lr",
          "1e-3",
          "--save-every",
          "5",
          "--seed",
          "7",
          "--quiet",
          "--threads",
          threads};
}

json metrics_of(const fs::path& model_dir) {
  return json::parse(slurp(model_dir / "metrics.json"));
}

void expect_same_model(const fs::path& a, const fs::path& b) {
  ASSERT_TRUE(fs::exists(a / "model.safetensors"));
  ASSERT_TRUE(fs::exists(b / "model.safetensors"));
  const auto ja = metrics_of(a), jb = metrics_of(b);
  EXPECT_EQ(ja["dev"], jb["dev"]) << ja["dev"].dump() << " vs " << jb["dev"].dump();
  EXPECT_EQ(ja["train"]["steps"], jb["train"]["steps"]);
  EXPECT_EQ(ja["train"]["mean_loss_last_epoch"], jb["train"]["mean_loss_last_epoch"]);
  const bool same_bytes = slurp(a / "model.safetensors") == slurp(b / "model.safetensors");
  EXPECT_TRUE(same_bytes);
  if (!same_bytes) {
    auto ma = nn::load_classifier(a), mb = nn::load_classifier(b);
    auto pb = mb->named_parameters();
    for (const auto& p : ma->named_parameters()) {
      ADD_FAILURE() << p.key() << " max diff " << (p.value() - pb[p.key()]).abs().max().item<double>();
    }
  }
}

TEST(Cli, KillDashNineThenResumeIsBitExact) {
  FIXTURE(f);
  const auto a = f.work / "A", b = f.work / "B";
  auto ra = run(f.work, resumable_args(f, a));
  ASSERT_EQ(ra.exit_code, 0) << show(ra);
  EXPECT_TRUE(ra.err.empty()) << show(ra);
  EXPECT_EQ(metrics_of(a)["train"]["steps"], 76);
  EXPECT_EQ(metrics_of(a)["train"]["resumed_from"], 0);

  // Start B, wait until its first training state is on disk, then SIGKILL it mid-run.
  const auto state = fs::path(b.string() + ".state") / "train_state.pt";
  const pid_t pid = spawn(resumable_args(f, b), f.work / "B.out", f.work / "B.err");
  ASSERT_GT(pid, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(state) && std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) FAIL() << "B exited before saving state: " << slurp(f.work / "B.err");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(fs::exists(state)) << "no training state after 60 s";
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // a few more steps
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(wait_for(pid), -SIGKILL) << "B finished before it could be killed; make the run longer";
  ASSERT_FALSE(fs::exists(b)) << "a killed run must not publish a model";

  auto args = resumable_args(f, b);
  args.push_back("--resume");
  auto rb = run(f.work, args);
  ASSERT_EQ(rb.exit_code, 0) << show(rb);
  const auto jb = metrics_of(b);
  EXPECT_GT(jb["train"]["resumed_from"].get<int64_t>(), 0);
  EXPECT_EQ(jb["train"]["resumed_from"].get<int64_t>() % 5, 0);
  std::cerr << "killed run resumed from step " << jb["train"]["resumed_from"] << " of 76\n";
  expect_same_model(a, b);
  // No staging folders are left next to the outputs, and the finished run's state is gone.
  for (const auto& n : leftovers(b)) EXPECT_TRUE(n == "B" || n == "B.out" || n == "B.err") << n;
  EXPECT_FALSE(fs::exists(b.string() + ".state"));
}

TEST(Cli, StopAfterThenResumeIsBitExact) {
  FIXTURE(f);
  const auto a = f.work / "A", c = f.work / "C";
  auto ra = run(f.work, resumable_args(f, a));
  ASSERT_EQ(ra.exit_code, 0) << show(ra);

  auto args = resumable_args(f, c);
  args.insert(args.end(), {"--stop-after", "20"});
  auto rc = run(f.work, args);
  ASSERT_EQ(rc.exit_code, 0) << show(rc);
  EXPECT_NE(rc.err.find("stopped after step 20"), std::string::npos) << show(rc);
  EXPECT_FALSE(fs::exists(c));
  EXPECT_TRUE(fs::exists(fs::path(c.string() + ".state") / "train_state.pt"));

  // export --state turns the interrupted run's weights into a loadable folder.
  auto ex = run(f.work, {"export", "--model", f.model.string(), "--state", c.string() + ".state", "--out",
                         (f.work / "C_step20").string()});
  ASSERT_EQ(ex.exit_code, 0) << show(ex);
  auto ev20 =
      run(f.work, {"eval", "--model", (f.work / "C_step20").string(), "--data", f.data.string(), "--threads", "1"});
  EXPECT_EQ(ev20.exit_code, 0) << show(ev20);

  args = resumable_args(f, c);
  args.push_back("--resume");
  args.push_back("--keep-state");  // asked for: the finished run's state stays
  auto rr = run(f.work, args);
  ASSERT_EQ(rr.exit_code, 0) << show(rr);
  EXPECT_EQ(metrics_of(c)["train"]["resumed_from"], 20);
  EXPECT_TRUE(fs::exists(fs::path(c.string() + ".state") / "train_state.pt"));
  expect_same_model(a, c);
}

// ---------------------------------------------------------------------------------------------
// inspect, bench, export, distill

TEST(Cli, InspectJsonCountsParameters) {
  FIXTURE(f);
  auto r = run(f.work, {"inspect", "--model", f.model.string(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto j = json::parse(r.out);
  EXPECT_EQ(j["parameters"].get<int64_t>(), f.parameters);
  EXPECT_EQ(j["layers"], 2);
  EXPECT_EQ(j["hidden_size"], 32);
  EXPECT_EQ(j["heads"], 2);
  EXPECT_EQ(j["intermediate_size"], 64);
  EXPECT_EQ(j["num_labels"], 2);
  EXPECT_EQ(j["file_bytes"].get<uint64_t>(), fs::file_size(f.model / "model.safetensors"));
  int64_t sum = 0;
  for (const auto& m : j["modules"]) sum += m["parameters"].get<int64_t>();
  EXPECT_EQ(sum, f.parameters);
  // The table form ends with the same total.
  auto t = run(f.work, {"inspect", "--model", f.model.string()});
  ASSERT_EQ(t.exit_code, 0) << show(t);
  EXPECT_NE(t.out.find("| total | " + std::to_string(f.parameters) + " |"), std::string::npos) << t.out;
}

TEST(Cli, BenchJson) {
  FIXTURE(f);
  auto r = run(f.work, {"bench", "--model", f.model.string(), "--batch", "1,2", "--seq", "16", "--seconds", "0.1",
                        "--iterations", "2", "--format", "json", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto j = json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["batch"], 1);
  EXPECT_EQ(j[1]["batch"], 2);
  for (const auto& row : j) {
    EXPECT_EQ(row["seq_len"], 16);
    EXPECT_GE(row["iterations"].get<int64_t>(), 2);
    EXPECT_GT(row["p50_ms"].get<double>(), 0);
    EXPECT_GE(row["p90_ms"].get<double>(), row["p50_ms"].get<double>());
    EXPECT_GT(row["examples_per_second"].get<double>(), 0);
    EXPECT_EQ(row["threads"], 1);
  }
  expect_one_line_error(f, {"bench", "--model", f.model.string(), "--format", "xml"}, f.work / "out", {"--format"});
}

TEST(Cli, ExportFolderLoadsInEval) {
  FIXTURE(f);
  const auto exported = f.work / "exported";
  auto r = run(f.work, {"export", "--model", f.model.string(), "--out", exported.string()});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  for (const char* name : {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"}) {
    EXPECT_TRUE(fs::exists(exported / name)) << name;
  }
  auto e1 = run(f.work, {"eval", "--model", f.model.string(), "--data", f.data.string(), "--json",
                         (f.work / "orig.json").string(), "--threads", "1"});
  auto e2 = run(f.work, {"eval", "--model", exported.string(), "--data", f.data.string(), "--json",
                         (f.work / "exported.json").string(), "--threads", "1"});
  ASSERT_EQ(e1.exit_code, 0) << show(e1);
  ASSERT_EQ(e2.exit_code, 0) << show(e2);
  auto j1 = json::parse(slurp(f.work / "orig.json")), j2 = json::parse(slurp(f.work / "exported.json"));
  EXPECT_EQ(j2["examples"], 100);
  EXPECT_EQ(j1["metrics"], j2["metrics"]);
  auto m1 = nn::load_classifier(f.model), m2 = nn::load_classifier(exported);
  auto p2 = m2->named_parameters();
  for (const auto& p : m1->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), p2[p.key()])) << p.key();
  // Exporting over an existing folder replaces it without leaving staging folders.
  auto again = run(f.work, {"export", "--model", f.model.string(), "--out", exported.string()});
  ASSERT_EQ(again.exit_code, 0) << show(again);
  for (const auto& n : leftovers(exported)) {
    EXPECT_EQ(n.find(".partial."), std::string::npos) << n;
    EXPECT_EQ(n.find(".old."), std::string::npos) << n;
  }
}

TEST(Cli, DistillWithRecipe) {
  FIXTURE(f);
  const auto student = f.work / "student";
  const auto recipe = ct::source_dir() / "tests" / "data" / "tiny_recipe.yaml";
  auto r = run(f.work, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--recipe",
                        recipe.string(), "--out", student.string(), "--quiet", "--epochs", "1", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto j = metrics_of(student);
  EXPECT_EQ(j["layers"], 1);
  EXPECT_EQ(j["train_examples"], 200);      // train_limit from the recipe
  EXPECT_EQ(j["train"]["epochs"], 1);       // the flag overrides the recipe
  EXPECT_EQ(j["train"]["batch_size"], 16);  // from the recipe
  EXPECT_EQ(j["train"]["bf16"], true);      // mixed precision from the recipe
  EXPECT_EQ(j["distill"]["loss"], "mse");
  EXPECT_EQ(j["distill"]["init_layers"], json::array({1}));
  EXPECT_EQ(j["max_length"], 32);
  auto ev = run(f.work, {"eval", "--model", student.string(), "--data", f.data.string(), "--threads", "1"});
  EXPECT_EQ(ev.exit_code, 0) << show(ev);
}

// A student with another normalisation trains, evaluates and reloads through the CLI; exporting it
// to Hugging Face, which has only LayerNorm, is refused with one line.
TEST(Cli, NormStudentRunsButDoesNotExport) {
  FIXTURE(f);
  const auto student = f.work / "bn";
  auto r = run(f.work, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--layers", "1",
                        "--norm", "batchnorm", "--norm-fade", "0.5", "--train-limit", "32", "--epochs", "1",
                        "--batch-size", "16", "--out", student.string(), "--quiet", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_EQ(metrics_of(student)["norm"], "batchnorm");
  EXPECT_EQ(metrics_of(student)["distill"]["norm_fade"], 0.5);
  auto ev = run(f.work, {"eval", "--model", student.string(), "--data", f.data.string(), "--threads", "1"});
  EXPECT_EQ(ev.exit_code, 0) << show(ev);
  const auto out = f.work / "hf";
  expect_one_line_error(f, {"export", "--model", student.string(), "--out", out.string()}, out,
                        {"condense_norm", "batchnorm", "only LayerNorm"});
  expect_one_line_error(f, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--norm", "groupnorm",
                            "--out", out.string(), "--quiet"},
                        out, {"unknown normalisation 'groupnorm'"});
  expect_one_line_error(f, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--norm-fade", "0.5",
                            "--out", out.string(), "--quiet"},
                        out, {"--norm-fade", "needs --norm batchnorm"});
  expect_one_line_error(f, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--norm", "nonorm",
                            "--norm-fade", "2", "--out", out.string(), "--quiet"},
                        out, {"'norm_fade' must be in [0,1]"});
}

// --init-search: the start chosen on held-out training rows and every candidate's score go into
// metrics.json; a run that is resumed reads the choice back from its training state.
TEST(Cli, DistillInitSearch) {
  FIXTURE(f);
  const auto student = f.work / "searched";
  const std::vector<std::string> args{"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--layers",
                                      "1", "--init-search", "0;1", "--held-out", "0.25", "--train-limit", "32",
                                      "--epochs", "1", "--batch-size", "16", "--quiet", "--threads", "1"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = args;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  auto r = run(f.work, with({"--out", student.string()}));
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto d = metrics_of(student)["distill"];
  EXPECT_EQ(d["init_search"]["candidates"], json::array({json::array({0}), json::array({1})}));
  EXPECT_EQ(d["init_search"]["held_out_examples"], 8);
  ASSERT_EQ(d["init_search"]["scores"].size(), 2u);
  EXPECT_EQ(d["init_layers"], d["init_search"]["chosen"]);
  EXPECT_EQ(metrics_of(student)["train_examples"], 32);  // the full run trains on every example

  // Interrupted after its search and first step, then resumed: the saved choice is used.
  const auto resumed = f.work / "resumed";
  auto first = run(f.work, with({"--out", resumed.string(), "--save-every", "1", "--stop-after", "1"}));
  ASSERT_EQ(first.exit_code, 0) << show(first);
  const auto saved = fs::path(resumed.string() + ".state") / "init_search.json";
  ASSERT_TRUE(fs::exists(saved));
  auto choice = json::parse(slurp(saved));
  choice["chosen"] = json::array({1 - choice["chosen"][0].get<int>()});  // the other one, to see it is read
  spit(saved, choice.dump());
  auto second = run(f.work, with({"--out", resumed.string(), "--resume"}));
  ASSERT_EQ(second.exit_code, 0) << show(second);
  EXPECT_EQ(metrics_of(resumed)["distill"]["init_layers"], choice["chosen"]);

  const auto bad = f.work / "bad";
  expect_one_line_error(f, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--layers", "1",
                            "--init-search", "0;x", "--out", bad.string(), "--quiet"},
                        bad, {"--init-search '0;x'", "'x' is not a layer number"});
  expect_one_line_error(f, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--layers", "1",
                            "--init-search", "0;0,1", "--out", bad.string(), "--quiet"},
                        bad, {"init search candidate 2", "lists 2 layers but the student has 1"});
  expect_one_line_error(f, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--layers", "1",
                            "--init-search", "0;1", "--augment", "1", "--out", bad.string(), "--quiet"},
                        bad, {"student.init_search distils once per candidate"});
}

TEST(Cli, MultiTeacherDistillation) {
  FIXTURE(f);
  const auto second = model_copy(f, "second");
  const auto student = f.work / "student";
  auto r = run(f.work, {"distill", "--teacher", f.model.string(), "--extra-teachers", second.string(),
                        "--teacher-weights", "1,3", "--data", f.data.string(), "--layers", "1", "--train-limit", "32",
                        "--epochs", "1", "--out", student.string(), "--quiet", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto j = metrics_of(student);
  EXPECT_EQ(j["extra_teachers"], json::array({second.string()}));
  EXPECT_EQ(j["teacher_weights"], json::array({1.0, 3.0}));
  const auto bad = f.work / "bad";
  expect_one_line_error(f, {"distill", "--teacher", f.model.string(), "--extra-teachers", second.string(), "--data",
                            f.data.string(), "--layers", "1", "--alpha", "0", "--out", bad.string(), "--quiet"},
                        bad, {"--extra-teachers", "alpha 0"});
}

TEST(Cli, AugmentedDistillation) {
  FIXTURE(f);
  const auto student = f.work / "student";
  auto r = run(f.work, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--layers", "1",
                        "--train-limit", "32", "--augment", "2", "--alpha", "1", "--epochs", "1", "--out",
                        student.string(), "--quiet", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto j = metrics_of(student);
  EXPECT_EQ(j["train_examples"], 96);  // 32 sentences and 2 variants of each
  EXPECT_EQ(j["augment"]["per_example"], 2);
}

// A BiLSTM student from one command (Tang et al.: augmented transfer set, logit MSE); the folder
// evaluates to the same score through `condense eval`, and exporting it is refused with one line.
TEST(Cli, BiLstmStudentWithTangAugmentation) {
  FIXTURE(f);
  const auto student = f.work / "bilstm";
  auto r = run(f.work, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--arch", "bilstm",
                        "--hidden", "16", "--train-limit", "32", "--augment", "2", "--augment-method", "tang",
                        "--loss", "mse", "--alpha", "1", "--epochs", "1", "--out", student.string(), "--quiet",
                        "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto j = metrics_of(student);
  EXPECT_EQ(j["arch"], "bilstm");
  EXPECT_EQ(j["augment"]["method"], "tang");
  EXPECT_GT(j["train_examples"].get<int64_t>(), 32);  // the originals and their distinct variants
  EXPECT_LE(j["train_examples"].get<int64_t>(), 96);
  const auto scores = f.work / "eval.json";
  auto ev = run(f.work, {"eval", "--model", student.string(), "--data", f.data.string(), "--json", scores.string(),
                         "--threads", "1"});
  ASSERT_EQ(ev.exit_code, 0) << show(ev);
  auto e = json::parse(condense::read_file(scores));
  EXPECT_NEAR(e["metrics"]["accuracy"].get<double>(), j["dev"]["accuracy"].get<double>(), 1e-9);
  auto bench = run(f.work, {"bench", "--model", student.string(), "--batch", "1,4", "--seq", "16", "--iterations", "1",
                            "--seconds", "0", "--format", "json", "--threads", "1"});
  ASSERT_EQ(bench.exit_code, 0) << show(bench);
  auto rows = json::parse(bench.out);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1]["batch"], 4);
  EXPECT_GT(rows[1]["p50_ms"].get<double>(), 0);
  auto report = run(f.work, {"report", "--models", "base=" + f.model.string() + ",lstm=" + student.string(), "--data",
                             f.data.string(), "--seconds", "0", "--threads", "1"});
  ASSERT_EQ(report.exit_code, 0) << show(report);
  EXPECT_NE(report.out.find("| lstm | 1 | 16 |"), std::string::npos) << report.out;
  const auto out = f.work / "hf";
  expect_one_line_error(f, {"export", "--model", student.string(), "--out", out.string()}, out, {"condense-textnet"});
  expect_one_line_error(f, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--arch", "cnn",
                            "--augment", "1", "--augment-method", "eda", "--out", out.string(), "--quiet"},
                        out, {"--augment-method", "eda"});
}

// A student with a vocabulary learned from the training text: its folder carries that vocab.txt,
// and `condense eval` (which tokenizes with the folder's vocabulary) reproduces the stored score.
TEST(Cli, StudentWithItsOwnVocabulary) {
  FIXTURE(f);
  const auto student = f.work / "small_vocab";
  auto r = run(f.work, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--layers", "1",
                        "--student-vocab", "400", "--train-limit", "64", "--epochs", "1", "--out", student.string(),
                        "--quiet", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto j = metrics_of(student);
  EXPECT_EQ(j["student_vocab_size"], 400);
  EXPECT_EQ(count_lines(student / "vocab.txt"), 400);
  auto cfg = json::parse(condense::read_file(student / "config.json"));
  EXPECT_EQ(cfg["vocab_size"], 400);
  const auto scores = f.work / "eval.json";
  auto ev = run(f.work, {"eval", "--model", student.string(), "--data", f.data.string(), "--json", scores.string(),
                         "--threads", "1"});
  ASSERT_EQ(ev.exit_code, 0) << show(ev);
  EXPECT_NEAR(json::parse(condense::read_file(scores))["metrics"]["accuracy"].get<double>(),
              j["dev"]["accuracy"].get<double>(), 1e-9);
  const auto bad = f.work / "bad";
  expect_one_line_error(f, {"distill", "--teacher", f.model.string(), "--data", f.data.string(), "--layers", "1",
                            "--student-vocab", "400", "--recipe",
                            (ct::source_dir() / "recipes" / "distilbert-3layer.yaml").string(), "--out", bad.string(),
                            "--quiet"},
                        bad, {"--student-vocab", "no layer losses"});
}

// TinyBERT's two steps from the command line: general distillation on unlabelled text (a WikiText
// fixture plus the task's sentences), then task distillation that starts from its student.
TEST(Cli, GeneralThenTaskDistillation) {
  FIXTURE(f);
  const auto teacher = env_path("CONDENSE_TEACHER_DIR").string();
  const auto text = f.work / "wiki.txt";
  spit(text, " = Lobster = \n The lobster @-@ like animal is blue . It lives in the sea .\n \n Another line of text .\n");
  const auto gd = f.work / "gd";
  const auto recipes = ct::source_dir() / "recipes";
  std::vector<std::string> common{"--quiet", "--epochs", "1", "--batch-size", "16", "--max-length", "32", "--threads", "1"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), common.begin(), common.end());
    return args;
  };
  auto r = run(f.work, with({"distill", "--teacher", teacher, "--data", f.data.string(), "--recipe",
                             (recipes / "tinybert-4x312-general.yaml").string(), "--corpus", text.string() + ",task",
                             "--out", gd.string()}));
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto j = metrics_of(gd);
  EXPECT_EQ(j["general_distillation"], true);
  EXPECT_EQ(j["train_examples"], 302);  // 2 passages + 300 task sentences
  EXPECT_EQ(j["train"]["steps"], 19);   // ceil(302 / 16)
  EXPECT_EQ(j["hidden_size"], 312);
  EXPECT_FALSE(j.contains("dev"));

  const auto task = f.work / "task";
  r = run(f.work, with({"distill", "--teacher", teacher, "--data", f.data.string(), "--recipe",
                        (recipes / "tinybert-4x312.yaml").string(), "--init", gd.string(), "--train-limit", "32",
                        "--out", task.string()}));
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto t = metrics_of(task);
  EXPECT_EQ(t["distill"]["init"], gd.string());
  EXPECT_EQ(t["stages"].size(), 2u);
  EXPECT_TRUE(t["dev"].contains("accuracy"));

  // DistilBERT-style general distillation: masked-LM loss and cosine on the last hidden states.
  const auto mlm = f.work / "mlm";
  r = run(f.work, with({"distill", "--teacher", teacher, "--data", f.data.string(), "--recipe",
                        (recipes / "distilbert-3layer-general.yaml").string(), "--corpus", text.string() + ",task",
                        "--train-limit", "40", "--out", mlm.string()}));
  ASSERT_EQ(r.exit_code, 0) << show(r);
  EXPECT_EQ(metrics_of(mlm)["distill"]["mlm_weight"], 2.0);

  const auto bad = f.work / "bad";
  // The teacher has no masked-LM head, so L_ce cannot be formed: one line says why.
  const auto needs_head = f.work / "needs_head.yaml";
  spit(needs_head, "distill: {prediction_weight: 0, mlm_weight: 1, mlm_distill_weight: 1}\n");
  expect_one_line_error(f, with({"distill", "--teacher", teacher, "--data", f.data.string(), "--recipe",
                                 needs_head.string(), "--corpus", text.string(), "--out", bad.string()}),
                        bad, {"no masked-LM head", "cls.predictions", "mlm_distill_weight"});
  expect_one_line_error(f, with({"distill", "--teacher", teacher, "--data", f.data.string(), "--recipe",
                                 (recipes / "distil-3layer.yaml").string(), "--corpus", text.string(), "--out",
                                 bad.string()}),
                        bad, {"--corpus", "prediction_weight: 0"});
  expect_one_line_error(f, with({"distill", "--teacher", teacher, "--data", f.data.string(), "--init",
                                 (f.work / "nowhere").string(), "--out", bad.string()}),
                        bad, {"'init'", "nowhere", "a model folder with config.json"});
  expect_one_line_error(f, with({"distill", "--teacher", teacher, "--data", f.data.string(), "--init", gd.string(),
                                 "--layers", "3", "--out", bad.string()}),
                        bad, {"'layers' is 3", "has 4"});
}

// Every recipe under recipes/ runs from one command: the real teacher (its head untrained), 32
// training rows, one epoch per stage, sequences cut to 32 tokens. This keeps recipes from rotting.
std::vector<std::string> recipe_files(const std::string& sub = "") {
  std::vector<std::string> names;
  const auto dir = ct::source_dir() / "recipes" / sub;
  if (fs::exists(dir)) {
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() == ".yaml") names.push_back(e.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

class CliRecipe : public ::testing::TestWithParam<std::string> {};

TEST_P(CliRecipe, RunsFromOneCommand) {
  const std::string name = GetParam();
  auto f = make_fixture("recipe_" + name);
  if (f.work.empty()) GTEST_SKIP() << "CONDENSE_CLI, CONDENSE_TEACHER_DIR or SST-2 data missing";
  const auto student = f.work / "student";
  const auto recipe = ct::source_dir() / "recipes" / (name + ".yaml");
  auto r = run(f.work, {"distill", "--teacher", env_path("CONDENSE_TEACHER_DIR").string(), "--data", f.data.string(),
                        "--recipe", recipe.string(), "--out", student.string(), "--quiet", "--epochs", "1",
                        "--train-limit", "32", "--batch-size", "16", "--max-length", "32", "--threads", "1"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto j = metrics_of(student);
  EXPECT_EQ(j["recipe"], recipe.string());
  if (j.contains("augment")) {  // the 32 sentences and their variants
    EXPECT_GT(j["train_examples"].get<int64_t>(), 32);
  } else if (j.contains("stages")) {
    EXPECT_EQ(j["train_examples"], 32);
    for (const auto& st : j["stages"]) EXPECT_EQ(st["steps"], 2) << st.dump();
  } else {
    EXPECT_EQ(j["train_examples"], 32);
    EXPECT_EQ(j["train"]["steps"], 2);
  }
}

INSTANTIATE_TEST_SUITE_P(Recipes, CliRecipe, ::testing::ValuesIn(recipe_files()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// Every quantization recipe under recipes/quantize/ runs from one command on the tiny model (QAT
// recipes train a few steps on 32 sentences, guided by the model itself) and writes a smaller file that eval, bench and
// inspect read back.
class CliQuantizeRecipe : public ::testing::TestWithParam<std::string> {};

TEST_P(CliQuantizeRecipe, RunsFromOneCommand) {
  const std::string name = GetParam();
  auto f = make_fixture("qrecipe_" + name);
  if (f.work.empty()) GTEST_SKIP() << "CONDENSE_CLI, CONDENSE_TEACHER_DIR or SST-2 data missing";
  const auto out = f.work / "q";
  const auto recipe = ct::source_dir() / "recipes" / "quantize" / (name + ".yaml");
  auto r = run(f.work, {"quantize", "--model", f.model.string(), "--data", f.data.string(), "--recipe",
                        recipe.string(), "--out", out.string(), "--teacher", f.model.string(), "--quiet",
                        "--train-limit", "32", "--batch-size", "16", "--max-length", "32", "--calib-batches", "2",
                        "--group-size", "16", "--threads", "1"});  // the tiny model's rows hold 32 weights
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto j = metrics_of(out);
  EXPECT_EQ(j["recipe"], recipe.string());
  EXPECT_LT(j["file_bytes"].get<int64_t>(), j["source_file_bytes"].get<int64_t>());
  // At least 1.5x even here, where a k-means codebook of 16 floats serves a row of only 32 weights.
  EXPECT_GT(j["encoder_compression"].get<double>(), 1.5);
  EXPECT_EQ(j["layer_errors"].size(), 12u);  // 2 layers × 6 dense layers
  EXPECT_TRUE(j["dev"].contains("accuracy"));
  const std::vector<std::vector<std::string>> readers{
      {"eval", "--model", out.string(), "--data", f.data.string(), "--threads", "1"},
      {"inspect", "--model", out.string(), "--tensors"},
      {"bench", "--model", out.string(), "--batch", "2", "--seq", "16", "--seconds", "0.05", "--threads", "1"}};
  for (const auto& args : readers) {
    auto e = run(f.work, args);
    EXPECT_EQ(e.exit_code, 0) << args[0] << ": " << show(e);
  }
}

INSTANTIATE_TEST_SUITE_P(Recipes, CliQuantizeRecipe, ::testing::ValuesIn(recipe_files("quantize")),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// Every pruning recipe under recipes/prune/ runs from one command on the tiny model (a few steps on
// 32 sentences, distilled from the model itself) and writes a model that eval, bench, inspect and
// export read back; structured recipes remove parameters, unstructured ones store zeros sparsely.
class CliPruneRecipe : public ::testing::TestWithParam<std::string> {};

TEST_P(CliPruneRecipe, RunsFromOneCommand) {
  const std::string name = GetParam();
  auto f = make_fixture("precipe_" + name);
  if (f.work.empty()) GTEST_SKIP() << "CONDENSE_CLI, CONDENSE_TEACHER_DIR or SST-2 data missing";
  const auto out = f.work / "p";
  const auto recipe = ct::source_dir() / "recipes" / "prune" / (name + ".yaml");
  auto r = run(f.work, {"prune", "--model", f.model.string(), "--data", f.data.string(), "--recipe", recipe.string(),
                        "--out", out.string(), "--teacher", f.model.string(), "--quiet", "--train-limit", "32",
                        "--batch-size", "8", "--max-length", "32", "--epochs", "1", "--score-batches", "2",
                        "--update-every", "1", "--depth", "1", "--threads", "1",
                        // Soft movement's scores move at most 1e-2 a step: in 4 steps only a
                        // threshold near σ(0) = 0.5 can be crossed (the other criteria ignore it).
                        "--soft-threshold", "0.499"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto j = metrics_of(out);
  EXPECT_EQ(j["recipe"], recipe.string());
  EXPECT_EQ(j["layer_losses"].size(), name.find("layer-kd") != std::string::npos ? 1u : 0u);
  EXPECT_EQ(j["final_epochs"], name.ends_with("-recover") ? 4 : 0);
  EXPECT_LT(j["file_bytes"].get<int64_t>(), j["source_file_bytes"].get<int64_t>());
  EXPECT_GT(j["encoder_sparsity"].get<double>(), 0.1);
  EXPECT_TRUE(j["dev"].contains("accuracy"));
  const bool unstructured = j["granularity"] == "unstructured" || j["granularity"] == "nm";
  EXPECT_EQ(j["format"], unstructured ? "sparse-bitmap" : "dense");
  if (!unstructured) EXPECT_LT(j["params_after"].get<int64_t>(), j["params_before"].get<int64_t>());
  const std::vector<std::vector<std::string>> readers{
      {"eval", "--model", out.string(), "--data", f.data.string(), "--threads", "1"},
      {"inspect", "--model", out.string()},
      {"bench", "--model", out.string(), "--batch", "2", "--seq", "16", "--seconds", "0.05", "--threads", "1"},
      {"export", "--model", out.string(), "--out", (f.work / "hf").string()}};
  for (const auto& args : readers) {
    auto e = run(f.work, args);
    EXPECT_EQ(e.exit_code, 0) << args[0] << ": " << show(e);
  }
}

INSTANTIATE_TEST_SUITE_P(Recipes, CliPruneRecipe, ::testing::ValuesIn(recipe_files("prune")),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// Bad pruning input: an unknown criterion, a criterion the schedule cannot serve, and a sparse file
// whose bitmap disagrees with its values each fail with one line and write nothing.
TEST(Cli, PruneErrors) {
  FIXTURE(f);
  const auto out = f.work / "pruned";
  const std::vector<std::string> base{"prune", "--model", f.model.string(), "--data", f.data.string(), "--out",
                                      out.string(), "--train-limit", "16", "--threads", "1", "--quiet"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  expect_one_line_error(f, with({"--criterion", "weight"}), out, {"pruning criterion", "movement"});
  expect_one_line_error(f, with({"--criterion", "movement"}), out, {"schedule cubic"});
  expect_one_line_error(f, with({"--granularity", "layers", "--depth", "9", "--epochs", "0"}), out, {"depth"});
  const auto layer_kd = (ct::source_dir() / "recipes" / "prune" / "heads-ffn-50-layer-kd.yaml").string();
  expect_one_line_error(f, with({"--recipe", layer_kd}), out, {"distill.layer_losses", "--teacher"});
  expect_one_line_error(f,
                        with({"--recipe", layer_kd, "--teacher", f.model.string(), "--granularity", "layers", "--depth",
                              "1", "--schedule", "oneshot"}),
                        out, {"distill.layer_losses", "layer pruning"});
  auto r = run(f.work, with({"--sparsity", "0.8", "--epochs", "0"}));
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto cfg = json::parse(slurp(out / "config.json"));
  auto& tensors = cfg["sparsity_config"]["tensors"];
  ASSERT_FALSE(tensors.empty());
  cfg["sparsity_config"]["tensors"].push_back("bert.encoder.layer.0.attention.self.nothing.weight");
  spit(out / "config.json", cfg.dump());
  expect_one_line_error(f, {"eval", "--model", out.string(), "--data", f.data.string(), "--threads", "1"},
                        f.work / "none", {"sparsity_config", "bert.encoder.layer.0.attention.self.nothing.weight"});
}

// condense factorize and condense share build smaller models that eval, bench, inspect and export
// read back (export expands shared and hashed layers to a plain model); contradictory options fail
// with one line.
TEST(Cli, FactorizeAndShare) {
  FIXTURE(f);
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases{
      {"factorize", {"--rank", "8", "--embedding-size", "16"}},
      {"factorize", {"--energy", "0.6"}},
      {"share", {"--mode", "all"}},
      {"share", {"--mode", "ffn", "--from-scratch"}},
      {"share", {"--hash-compression", "4"}}};
  int k = 0;
  for (const auto& [cmd, extra] : cases) {
    const auto out = f.work / ("m" + std::to_string(k++));
    std::vector<std::string> args{cmd, "--model", f.model.string(), "--data", f.data.string(), "--out", out.string(),
                                  "--teacher", f.model.string(), "--train-limit", "32", "--batch-size", "16",
                                  "--max-length", "32", "--threads", "1", "--quiet"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = run(f.work, args);
    ASSERT_EQ(r.exit_code, 0) << show(r);
    auto j = metrics_of(out);
    EXPECT_LT(j["params_after"].get<int64_t>(), j["params_before"].get<int64_t>()) << cmd;
    EXPECT_LT(j["file_bytes"].get<int64_t>(), j["source_file_bytes"].get<int64_t>()) << cmd;
    EXPECT_TRUE(j["dev"].contains("accuracy"));
    const std::vector<std::vector<std::string>> readers{
        {"eval", "--model", out.string(), "--data", f.data.string(), "--threads", "1"},
        {"inspect", "--model", out.string()},
        {"bench", "--model", out.string(), "--batch", "2", "--seq", "16", "--seconds", "0.05", "--threads", "1"},
        {"export", "--model", out.string(), "--out", (out.string() + "-hf")}};
    for (const auto& a : readers) {
      auto e = run(f.work, a);
      EXPECT_EQ(e.exit_code, 0) << cmd << " " << a[0] << ": " << show(e);
    }
  }
  const auto bad = f.work / "bad";
  expect_one_line_error(f, {"factorize", "--model", f.model.string(), "--data", f.data.string(), "--out", bad.string(),
                            "--rank", "8", "--energy", "0.5", "--quiet"},
                        bad, {"exclude each other"});
  expect_one_line_error(f, {"share", "--model", f.model.string(), "--data", f.data.string(), "--out", bad.string(),
                            "--mode", "layers", "--quiet"},
                        bad, {"'mode'", "layers"});
}

// A quantized file whose parts disagree with its config fails with one line naming the tensor;
// a float loader (distill --teacher) refuses a quantized folder with one line too.
TEST(Cli, CorruptQuantizedModel) {
  FIXTURE(f);
  const auto out = f.work / "q4";
  auto r = run(f.work, {"quantize", "--model", f.model.string(), "--data", f.data.string(), "--bits", "4",
                        "--granularity", "group", "--group-size", "32", "--out", out.string(), "--train-limit", "16",
                        "--threads", "1", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << show(r);
  auto cfg = json::parse(slurp(out / "config.json"));
  cfg["quantization_config"]["layers"]["bert.encoder.layer.1.output.dense"]["shape"] = {8, 8};
  spit(out / "config.json", cfg.dump());
  expect_one_line_error(f, {"eval", "--model", out.string(), "--data", f.data.string(), "--threads", "1"},
                        f.work / "none", {"bert.encoder.layer.1.output.dense.weight"});
  expect_one_line_error(f, {"distill", "--teacher", out.string(), "--data", f.data.string(), "--out",
                            (f.work / "from_quantized").string(), "--quiet"},
                        f.work / "from_quantized", {"quantization_config"});
}

}  // namespace
