// condense distill: distil a fine-tuned teacher into a smaller student.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <memory>

#include "commands.h"
#include "common.h"
#include "condense/core/file.h"
#include "condense/distill/distill.h"
#include "condense/nn/checkpoint.h"
#include "condense/pipeline/recipe.h"
#include "condense/text/wordpiece_trainer.h"

namespace condense::cli {

namespace {
struct DistillArgs {
  std::string teacher, out, recipe;
  TaskFlags task;
  TrainFlags train;
  int threads = 0;
  std::optional<int64_t> layers, hidden, heads, intermediate, bottleneck, num_ffn;
  std::optional<std::string> hidden_act;
  std::optional<std::string> init, loss, norm;
  std::vector<int64_t> init_layers;
  std::optional<double> temperature, alpha, temperature_end, alpha_end, norm_fade;
  bool no_cache = false;
  std::optional<int64_t> teacher_cache_mb;
  std::vector<std::string> corpus;  ///< general distillation: text files, or "task" for the task's sentences
  std::vector<std::string> extra_teachers;
  std::optional<int64_t> augment, augment_neighbours;
  std::optional<double> augment_prob;
  std::optional<std::string> augment_method, arch;
  std::string student_vocab;  ///< N: learn an N-piece vocabulary from the training text; else a vocab.txt
  std::vector<double> teacher_weights;
  std::string init_search;  ///< "0,2,4;1,3,5": candidates for student.init_search
  std::optional<double> held_out;
};

// "0,2,4;1,3,5" -> {{0, 2, 4}, {1, 3, 5}}.
std::vector<std::vector<int64_t>> parse_candidates(const std::string& text) {
  std::vector<std::vector<int64_t>> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto end = std::min(text.find(';', start), text.size());
    std::vector<int64_t> layers;
    std::size_t p = start;
    while (p < end) {
      const auto comma = std::min(text.find(',', p), end);
      const auto piece = text.substr(p, comma - p);
      int64_t v = 0;
      const auto [ptr, ec] = std::from_chars(piece.data(), piece.data() + piece.size(), v);
      CONDENSE_CHECK(ec == std::errc() && ptr == piece.data() + piece.size() && !piece.empty(),
                     "--init-search '{}': '{}' is not a layer number (expected e.g. 0,2,4;1,3,5)", text, piece);
      layers.push_back(v);
      p = comma + 1;
    }
    CONDENSE_CHECK(!layers.empty(), "--init-search '{}': an empty candidate (expected e.g. 0,2,4;1,3,5)", text);
    out.push_back(std::move(layers));
    start = end + 1;
  }
  return out;
}

// General distillation reads unlabelled text: passages of each file, and the task's training
// sentences (labels ignored) where the list says "task".
data::Dataset load_corpus(const DistillArgs& a, int64_t limit, uint64_t seed) {
  data::Dataset all{a.task.parsed(), {}, {}};
  std::string sources;
  for (const auto& c : a.corpus) {
    auto part = c == "task" ? data::read_glue_split(a.task.parsed(), a.task.dir(), "train")
                            : data::read_text_corpus(a.task.parsed(), c);
    sources += (sources.empty() ? "" : ",") + part.source.string();
    all.examples.insert(all.examples.end(), part.examples.begin(), part.examples.end());
  }
  all.source = sources;
  CONDENSE_CHECK(limit >= 0, "--train-limit must be >= 0, found {}", limit);
  if (limit > 0) all = data::take_subset(all, static_cast<std::size_t>(limit), seed);
  return all;
}

nlohmann::json describe(const distill::DistillOptions& o, int64_t student_layers, const nn::BertClassifier& teacher) {
  nlohmann::json layer_map = nlohmann::json::array();
  if (!o.layer_losses.empty()) {
    for (const auto& p : distill::resolve_layer_map(o.layer_map, student_layers, teacher->config().num_hidden_layers)) {
      layer_map.push_back({p.student, p.teacher});
    }
  }
  return {{"loss", o.soft_loss == distill::SoftLoss::KL ? "kl" : "mse"},
          {"temperature", o.temperature},
          {"alpha", o.alpha},
          {"temperature_end", o.temperature_end ? nlohmann::json(*o.temperature_end) : nlohmann::json()},
          {"alpha_end", o.alpha_end ? nlohmann::json(*o.alpha_end) : nlohmann::json()},
          {"prediction_weight", o.prediction_weight},
          {"layer_losses", layer_losses_json(o.layer_losses)},
          {"layer_map", layer_map},
          {"layer_map_strategy", o.layer_map.strategy},
          {"progressive", o.progressive},
          {"norm_fade", o.norm_fade},
          {"mlm_weight", o.mlm_weight},
          {"mlm_distill_weight", o.mlm_distill_weight},
          {"cache_teacher", o.cache_teacher}};
}

void run(DistillArgs a, const CLI::App& sub) {
  set_threads(a.threads);
  pipeline::Recipe r;
  if (!a.recipe.empty()) {
    r = pipeline::load_recipe(a.recipe);
    if (r.task && sub.get_option("--task")->count() == 0) a.task.task = *r.task;
  }
  if (a.layers) r.student.layers = *a.layers;
  if (a.hidden) r.student.hidden_size = *a.hidden;
  if (a.heads) r.student.num_attention_heads = *a.heads;
  if (a.intermediate) r.student.intermediate_size = *a.intermediate;
  if (a.bottleneck) r.student.bottleneck_size = *a.bottleneck;
  if (a.num_ffn) r.student.num_ffn = *a.num_ffn;
  if (a.hidden_act) r.student.hidden_act = *a.hidden_act;
  if (a.init) r.student.init = *a.init;
  if (!a.init_layers.empty()) r.student.init_layers = a.init_layers;
  if (a.norm) r.student.norm = nn::parse_norm(*a.norm);
  if (a.arch) r.student.arch = *a.arch;
  if (!a.init_search.empty()) r.init_search.candidates = parse_candidates(a.init_search);
  if (a.held_out) r.init_search.held_out = *a.held_out;
  auto& aug = r.augment;
  if (a.augment) aug.per_example = *a.augment;
  if (a.augment_method) aug.method = *a.augment_method;
  if (a.augment_prob) aug.replace_prob = *a.augment_prob;
  if (a.augment_neighbours) aug.neighbours = *a.augment_neighbours;
  const bool text_student = r.student.arch != "bert";
  // One stage unless the recipe lists several; command-line flags override every stage.
  auto stages = r.stages;
  if (stages.empty()) stages.push_back({"distill", r.distill});
  const std::filesystem::path state_root = a.train.state_dir.empty() ? a.out + ".state" : a.train.state_dir;
  for (auto& st : stages) {
    auto& o = st.distill;
    a.train.apply(o.train, r.max_length, r.train_limit);
    if (a.loss) o.soft_loss = distill::parse_soft_loss(*a.loss);
    if (a.temperature) o.temperature = *a.temperature;
    if (a.alpha) o.alpha = *a.alpha;
    if (a.temperature_end) o.temperature_end = *a.temperature_end;
    if (a.alpha_end) o.alpha_end = *a.alpha_end;
    o.cache_teacher = !a.no_cache;
    if (a.teacher_cache_mb) o.teacher_cache_mb = *a.teacher_cache_mb;
    o.train.state_dir = stages.size() == 1 ? state_root : state_root / st.name;
    o.train.on_progress = progress_bar(stages.size() == 1 ? "distill" : st.name, a.train.quiet);
    o.validate();
    CONDENSE_CHECK(a.corpus.empty() || (o.prediction_weight == 0 && (!o.layer_losses.empty() || o.uses_mlm())),
                   "--corpus gives text without labels, so {} must set prediction_weight: 0 and list layer_losses "
                   "or masked-LM weights",
                   stages.size() == 1 ? std::string("the recipe") : "stage '" + st.name + "'");
  }
  if (a.norm_fade) {
    CONDENSE_CHECK(r.student.norm != nn::NormKind::LayerNorm && !text_student,
                   "--norm-fade hands LayerNorm over to another normalisation: it needs --norm batchnorm, nonorm, "
                   "weightnorm or cosinenorm on a BERT student");
    stages.front().distill.norm_fade = *a.norm_fade;  // the first stage's steps only
    stages.front().distill.validate();
  }
  const auto& first = stages.front().distill;

  auto tokenizer = text::WordPieceTokenizer::from_directory(a.teacher);
  const bool general = !a.corpus.empty();
  auto train_set = general ? load_corpus(a, r.train_limit, first.train.seed)
                           : load_split(a.task, "train", r.train_limit, first.train.seed);
  auto dev = general ? data::Dataset{} : load_split(a.task, "dev", 0, first.train.seed);
  auto teacher = nn::load_classifier(a.teacher);
  const auto& info = data::task_info(a.task.parsed());
  CONDENSE_CHECK(general || teacher->config().num_labels == info.num_labels,
                 "{}: teacher has {} outputs but task {} needs {} (fine-tune it on the task first)", a.teacher,
                 teacher->config().num_labels, info.name, info.num_labels);
  CONDENSE_CHECK(!text_student || !general, "--corpus (general distillation) needs a BERT student, not {}",
                 r.student.arch);
  // A student vocabulary of its own: learned from the training text (the sentences it will see)
  // or read from a file. The teacher keeps its segmentation; the student trains on its own, and
  // the teacher's cached logits line up by example.
  std::optional<text::WordPieceTokenizer> student_tok;
  const std::string student_vocab = a.student_vocab.empty() ? r.student_vocab : a.student_vocab;
  if (!student_vocab.empty()) {
    CONDENSE_CHECK(!text_student && !general, "--student-vocab needs a BERT student and a task's training set");
    for (const auto& st : stages) {
      CONDENSE_CHECK(st.distill.layer_losses.empty() && !st.distill.uses_mlm() && (st.distill.cache_teacher || !st.distill.uses_soft_targets()),
                     "--student-vocab segments the student's input differently from the teacher's, so only "
                     "prediction-layer distillation from the teacher cache can be used (no layer losses, masked-LM "
                     "terms or --no-teacher-cache)");
    }
    const bool learn = std::all_of(student_vocab.begin(), student_vocab.end(),
                                   [](char c) { return c >= '0' && c <= '9'; });
    if (learn) {
      std::vector<std::string> texts;
      for (const auto& e : train_set.examples) {
        texts.push_back(e.text_a);
        if (e.text_b) texts.push_back(*e.text_b);
      }
      auto vocab = text::learn_wordpiece_vocab(
          texts, text::WordPieceTrainOptions().with_vocab_size(std::stoll(student_vocab)).with_tokenizer(tokenizer.options()));
      student_tok.emplace(std::move(vocab), tokenizer.options(), "learned student vocabulary");
    } else {
      student_tok.emplace(text::WordPieceTokenizer::from_vocab_file(student_vocab, tokenizer.options()));
    }
    r.student.vocab_size = student_tok->vocab_size();
  }
  CONDENSE_CHECK(!r.dualtrain || (student_tok && stages.size() == 1),
                 "{}: 'dualtrain' mixes the teacher's and the student's vocabularies, so it needs a student vocabulary "
                 "(student.vocab or --student-vocab) and a single stage",
                 a.recipe);
  // student.init_search: init_layers chosen on held-out training examples (distill.h). The choice
  // is kept with the training state, so a resumed run does not search again.
  nlohmann::json init_search;
  if (!r.init_search.candidates.empty()) {
    CONDENSE_CHECK(!text_student && !general && !student_tok && !r.dualtrain && stages.size() == 1 &&
                       aug.per_example == 0 && a.extra_teachers.empty(),
                   "{}: student.init_search distils once per candidate on part of the training set, so it needs a "
                   "single-stage recipe for a BERT student without augment, dualtrain, a student vocabulary, "
                   "--extra-teachers or --corpus",
                   a.recipe.empty() ? std::string("--init-search") : a.recipe);
    r.init_search.validate(r.student, teacher->config().num_hidden_layers);
    const auto saved = state_root / "init_search.json";
    if (a.train.resume && std::filesystem::exists(saved)) {
      init_search = nlohmann::json::parse(read_file(saved));
    } else {
      auto [fit, held] = data::split_held_out(train_set, r.init_search.held_out, first.train.seed);
      auto o = first;
      o.train.on_progress = progress_bar("init search", a.train.quiet);
      if (r.student.init == "teacher-slice" && r.student.hidden_size) {
        o.projection_channels = distill::inherited_hidden_channels(teacher, *r.student.hidden_size);
      }
      const auto res = distill::search_init_layers(teacher, r.student, r.init_search,
                                                   train::encode(fit, tokenizer, r.max_length),
                                                   train::encode(held, tokenizer, r.max_length), held, o);
      init_search = {{"candidates", r.init_search.candidates}, {"held_out", r.init_search.held_out},
                     {"held_out_examples", held.examples.size()}, {"scores", res.scores}, {"chosen", res.chosen}};
      std::filesystem::create_directories(state_root);
      write_file_atomic(saved, init_search.dump(2) + "\n");
    }
    r.student.init_layers = init_search.at("chosen").get<std::vector<int64_t>>();
    if (!a.train.quiet) {
      fmt::print(stderr, "init search: held-out {} {} -> teacher layers {}\n", info.main_metric,
                 init_search.at("scores").dump(), init_search.at("chosen").dump());
    }
  }
  // One of the two holds the student: a smaller BERT, or a BiLSTM/CNN (cross-architecture).
  nn::BertClassifier student{nullptr};
  nn::TextNetClassifier text{nullptr};
  if (text_student) {
    text = distill::make_text_student(teacher, r.student, info.pair, first.train.seed);
  } else {
    student = distill::make_student(teacher, r.student, first.train.seed);
    if (student_tok && r.student.init == "teacher") distill::transfer_vocabulary(student, *student_tok, teacher, tokenizer);
    if (r.student.init == "teacher-slice") {
      // The projections to the teacher's width (none when the widths agree) start as the
      // embedding the slice came from.
      const auto kept = distill::inherited_hidden_channels(teacher, student->config().hidden_size);
      for (auto& st : stages) st.distill.projection_channels = kept;
    }
  }
  const int64_t student_layers = text_student ? 0 : student->config().num_hidden_layers;
  if (!a.extra_teachers.empty()) {
    for (const auto& st : stages) {
      CONDENSE_CHECK(st.distill.layer_losses.empty() && st.distill.cache_teacher && st.distill.uses_soft_targets() && !general,
                     "--extra-teachers combine the teachers' cached soft targets; they cannot be used with layer "
                     "losses, --corpus, --no-teacher-cache or alpha 0");
    }
    const auto vocab = read_file(std::filesystem::path(a.teacher) / "vocab.txt");
    for (const auto& t : a.extra_teachers) {
      CONDENSE_CHECK(read_file(std::filesystem::path(t) / "vocab.txt") == vocab,
                     "{}: vocab.txt differs from the first teacher's; all teachers must share one tokenizer",
                     (std::filesystem::path(t) / "vocab.txt").string());
    }
  }
  if (aug.per_example > 0) {
    CONDENSE_CHECK(!general, "--augment applies to a task's training set, not to --corpus text");
    const auto n = train_set.examples.size();
    if (aug.method == "tinybert") {
      train_set = distill::augment_dataset(train_set, tokenizer, teacher->bert->embeddings->word_embeddings->weight,
                                           distill::AugmentOptions()
                                               .with_per_example(aug.per_example)
                                               .with_replace_prob(aug.replace_prob)
                                               .with_neighbours(aug.neighbours)
                                               .with_seed(first.train.seed));
    } else if (aug.method == "tang") {
      train_set = distill::tang_augment_dataset(
          train_set, distill::TangAugmentOptions().with_per_example(aug.per_example).with_seed(first.train.seed));
    } else {
      fail("--augment-method is '{}', expected tinybert or tang", aug.method);
    }
    if (!a.train.quiet) fmt::print(stderr, "augmented {} examples to {}\n", n, train_set.examples.size());
  }
  // Masked-LM terms: the student's head starts from the teacher's when it has one of the same
  // width, else fresh; the teacher's is read from its model.safetensors.
  std::optional<distill::MlmSetup> mlm;
  bool any_mlm = false;
  for (const auto& st : stages) any_mlm |= st.distill.uses_mlm();
  if (any_mlm) {
    CONDENSE_CHECK(!text_student, "masked-LM terms need a BERT student");
    const auto weights = std::filesystem::path(a.teacher) / "model.safetensors";
    mlm.emplace();
    mlm->student = nn::BertMlmHead(student->config());
    if (nn::has_mlm_head(weights)) {
      mlm->teacher = nn::BertMlmHead(teacher->config());
      nn::load_mlm_head(mlm->teacher, weights);
      if (student->config().hidden_size == teacher->config().hidden_size) {
        torch::NoGradGuard guard;
        auto from = mlm->teacher->named_parameters();
        for (auto& p : mlm->student->named_parameters()) p.value().copy_(from[p.key()]);
      }
    }
    mlm->mask_id = tokenizer.mask_id();
    mlm->vocab_size = tokenizer.vocab_size();
    mlm->special_ids = {tokenizer.cls_id(), tokenizer.sep_id(), tokenizer.pad_id()};
    for (const auto& st : stages) {
      CONDENSE_CHECK(st.distill.mlm_distill_weight == 0 || mlm->teacher,
                     "{}: the teacher has no masked-LM head (cls.predictions.* absent), so mlm_distill_weight must be 0",
                     weights.string());
    }
  }
  auto enc_train = train::encode(train_set, tokenizer, r.max_length);
  const auto& stok = student_tok ? *student_tok : tokenizer;
  auto enc_student = student_tok ? train::encode(train_set, stok, r.max_length) : train::EncodedDataset{};
  const auto& enc_train_student = student_tok ? enc_student : enc_train;
  auto enc_dev = general ? train::EncodedDataset{} : train::encode(dev, stok, r.max_length);
  // DualTrain: the teacher's view with words drawn from both vocabularies (fixed for the seed).
  auto enc_mixed = r.dualtrain ? distill::encode_mixed_vocab(train_set, tokenizer, *student_tok,
                                                             distill::MixedVocabOptions(r.dualtrain->mixed)
                                                                 .with_seed(first.train.seed)
                                                                 .with_max_length(r.max_length))
                               : train::EncodedDataset{};
  // The teacher runs once over the training set and every epoch reads the cache, unless no stage
  // needs its logits alone (alpha 0 needs none; with layer losses distill() keeps its own cache of
  // the outputs those read when they fit in --teacher-cache-mb, else runs the teacher per batch).
  torch::Tensor teacher_logits;
  double cache_seconds = 0;
  nlohmann::json stage_log = nlohmann::json::array();
  train::TrainResult tr;
  for (const auto& st : stages) {
    const auto& o = st.distill;
    if (((o.cache_teacher && o.uses_soft_targets()) || r.dualtrain) && o.layer_losses.empty() &&
        !teacher_logits.defined()) {
      const auto t0 = std::chrono::steady_clock::now();
      teacher_logits = train::predict_logits(teacher, enc_train);
      if (!a.extra_teachers.empty()) {
        std::vector<torch::Tensor> all{teacher_logits};
        for (const auto& t : a.extra_teachers) {
          auto extra = nn::load_classifier(t);
          CONDENSE_CHECK(extra->config().num_labels == teacher->config().num_labels,
                         "{}: teacher has {} outputs but the first teacher has {}", t, extra->config().num_labels,
                         teacher->config().num_labels);
          all.push_back(train::predict_logits(extra, enc_train));
        }
        teacher_logits = distill::combine_teacher_logits(all, a.teacher_weights, o);
      }
      cache_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    const auto stage_start = std::chrono::steady_clock::now();
    if (r.dualtrain) {
      tr = distill::dual_train(student, teacher, enc_train_student, enc_mixed, o, *r.dualtrain, teacher_logits);
    } else {
      tr = text_student ? distill::distill(text, teacher, enc_train, o, teacher_logits)
                        : distill::distill(student, teacher, enc_train_student, o, teacher_logits, mlm ? &*mlm : nullptr);
    }
    if (o.train.resume && tr.resumed_from == 0) {
      fmt::print(stderr, "note: no training state in {}; trained from the start\n", o.train.state_dir.string());
    }
    if (!tr.finished) {
      fmt::print(stderr, "stopped after step {}; training state is in {}\n", tr.steps, o.train.state_dir.string());
      return;
    }
    auto d = describe(o, student_layers, teacher);
    d["name"] = st.name;
    d["epochs"] = o.train.epochs;
    d["learning_rate"] = o.train.learning_rate;
    d["steps"] = tr.steps;
    d["seconds"] = tr.seconds;
    // With its teacher cache built: the time of the stage's one teacher pass is in here, not in seconds.
    d["wall_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - stage_start).count();
    if (!text_student && !r.dualtrain && !o.layer_losses.empty()) {
      const bool cached = distill::caches_teacher_layers(o, student_layers, teacher->config(), enc_train_student);
      d["teacher_layer_cache_mib"] =
          cached ? nlohmann::json(static_cast<double>(distill::teacher_layer_cache_bytes(
                                      o, student_layers, teacher->config(), enc_train_student)) /
                                  (1 << 20))
                 : nlohmann::json();  // null: the teacher ran on every batch
    }
    d["mean_loss_last_epoch"] = tr.mean_loss_last_epoch;
    stage_log.push_back(d);
  }
  const auto& last = stages.back().distill;
  if (general) {
    // No labels, no dev score: the student is an initialisation for task distillation.
    nlohmann::json summary;
    summary["command"] = "distill";
    summary["commit"] = build_commit();
    summary["general_distillation"] = true;
    summary["corpus"] = train_set.source.string();
    summary["train_examples"] = train_set.examples.size();
    summary["teacher"] = a.teacher;
    summary["recipe"] = a.recipe;
    summary["max_length"] = r.max_length;
    summary["parameters"] = student->num_parameters();
    summary["layers"] = student->config().num_hidden_layers;
    summary["hidden_size"] = student->config().hidden_size;
    summary["train"] = {{"steps", tr.steps}, {"seconds", tr.seconds}, {"seed", last.train.seed},
                        {"epochs", last.train.epochs}, {"mean_loss_last_epoch", tr.mean_loss_last_epoch},
                        {"examples_per_second", tr.examples_per_second}, {"threads", at::get_num_threads()}};
    summary["distill"] = describe(last, student_layers, teacher);
    summary["distill"]["init"] = r.student.init;
    if (stages.size() > 1) summary["stages"] = stage_log;
    nn::save_pretrained(student, a.out, a.teacher, {{"condense", "distill"}},
                        {{"metrics.json", summary.dump(2) + "\n"}});
    drop_state(a.train, state_root);
    fmt::print("general distillation: {} passages, final loss {:.4f}, student {} layers x {} ({:.0f} ex/s) -> {}\n",
               train_set.examples.size(), tr.mean_loss_last_epoch, student->config().num_hidden_layers,
               student->config().hidden_size, tr.examples_per_second, a.out);
    return;
  }
  auto ev = text_student ? train::evaluate(text, enc_dev, dev) : train::evaluate(student, enc_dev, dev);
  auto summary = run_summary("distill", train_set, dev, last.train, tr, ev,
                             text_student ? model_shape(text) : model_shape(student));
  summary["teacher"] = a.teacher;
  if (aug.per_example > 0) {
    summary["augment"] = {{"method", aug.method}, {"per_example", aug.per_example}};
    if (aug.method == "tinybert") {
      summary["augment"]["replace_prob"] = aug.replace_prob;
      summary["augment"]["neighbours"] = aug.neighbours;
    }
  }
  if (!a.extra_teachers.empty()) {
    summary["extra_teachers"] = a.extra_teachers;
    summary["teacher_weights"] = a.teacher_weights;
  }
  summary["recipe"] = a.recipe;
  summary["max_length"] = r.max_length;
  summary["distill"] = describe(last, student_layers, teacher);
  summary["distill"]["teacher_cache_seconds"] = cache_seconds;
  summary["distill"]["init"] = r.student.init;
  if (!init_search.is_null()) summary["distill"]["init_search"] = init_search;
  if (stages.size() > 1) summary["stages"] = stage_log;
  if (text_student) {
    nn::save_textnet(text, a.out, a.teacher, {{"metrics.json", summary.dump(2) + "\n"}});
    drop_state(a.train, state_root);
    fmt::print("{} dev {}: {:.4f}  student {}, {} parameters ({:.0f} ex/s, {:.0f} s) -> {}\n", info.name,
               info.main_metric, ev.metrics.at("main"), text->config().arch, text->num_parameters(),
               tr.examples_per_second, tr.seconds, a.out);
    return;
  }
  summary["norm"] = nn::to_string(student->config().norm);
  summary["distill"]["init_layers"] =
      r.student.init == "teacher" || r.student.init == "teacher-slice"
          ? distill::resolve_init_layers(r.student, teacher->config().num_hidden_layers)
          : std::vector<int64_t>{};
  std::map<std::string, std::string> files{{"metrics.json", summary.dump(2) + "\n"}};
  std::filesystem::path tokenizer_files = a.teacher;
  if (student_tok) {
    // The student's own vocab.txt, with the teacher's normalisation settings (tokenizer.json
    // would carry the teacher's vocabulary, so it is not copied).
    summary["student_vocab_size"] = student_tok->vocab_size();
    if (r.dualtrain) {
      summary["dualtrain"] = {{"mix_prob", r.dualtrain->mixed.mix_prob},
                              {"dual_weight", r.dualtrain->dual_weight},
                              {"shared_proj", r.dualtrain->shared_proj},
                              {"proj_weight", r.dualtrain->proj_weight}};
    }
    files["metrics.json"] = summary.dump(2) + "\n";
    tokenizer_files.clear();
    std::string vocab;
    for (const auto& t : student_tok->vocab()) vocab += t + "\n";
    files["vocab.txt"] = vocab;
    const auto& to = student_tok->options();
    nlohmann::json cfg{{"tokenizer_class", "BertTokenizer"},
                       {"do_lower_case", to.lower_case()},
                       {"strip_accents", to.strip_accents() ? nlohmann::json(*to.strip_accents()) : nlohmann::json()},
                       {"tokenize_chinese_chars", to.tokenize_chinese_chars()}};
    files["tokenizer_config.json"] = cfg.dump(2) + "\n";
  }
  nn::save_pretrained(student, a.out, tokenizer_files, {{"condense", "distill"}}, files);
  drop_state(a.train, state_root);
  fmt::print("{} dev {}: {:.4f}  student {} layers, {} parameters ({:.0f} ex/s, {:.0f} s) -> {}\n", info.name,
             info.main_metric, ev.metrics.at("main"), student->config().num_hidden_layers, student->num_parameters(),
             tr.examples_per_second, tr.seconds, a.out);
}
}  // namespace

void add_distill(CLI::App& app) {
  auto a = std::make_shared<DistillArgs>();
  auto* sub = app.add_subcommand("distill", "Distil a fine-tuned teacher into a smaller student");
  sub->add_option("--teacher", a->teacher, "Fine-tuned teacher folder")->required();
  sub->add_option("--out", a->out, "Output student folder")->required();
  sub->add_option("--recipe", a->recipe, "YAML recipe (flags given on the command line override it)");
  a->task.add_to(*sub);
  a->train.add_to(*sub);
  add_threads_flag(*sub, a->threads);
  sub->add_option("--layers", a->layers, "Student layers (default 3)");
  sub->add_option("--hidden", a->hidden, "Student hidden size (default: teacher's)");
  sub->add_option("--heads", a->heads, "Student attention heads (default: teacher's)");
  sub->add_option("--intermediate", a->intermediate, "Student FFN size (default: teacher's)");
  sub->add_option("--student-vocab", a->student_vocab,
                  "Student vocabulary: N learns an N-piece WordPiece vocabulary from the training text, or a vocab.txt");
  sub->add_option("--bottleneck", a->bottleneck, "MobileBERT-style bottleneck width inside each layer (default 0 = none)");
  sub->add_option("--num-ffn", a->num_ffn, "FFNs stacked per layer (default 1; MobileBERT 4)");
  sub->add_option("--hidden-act", a->hidden_act, "Student activation: gelu, relu, ... (default: teacher's)");
  sub->add_option("--init", a->init, "teacher (copy layers), teacher-slice (copy layers narrowed to the student's widths), scratch, or a model folder to start from (default teacher)");
  sub->add_option("--init-layers", a->init_layers, "Teacher layers to copy, e.g. 0,2,4 (default every k-th)")
      ->delimiter(',');
  sub->add_option("--init-search", a->init_search,
                  "Choose --init-layers among candidates, e.g. 0,2,4;1,3,5: each is distilled on part of the training "
                  "set and scored on the rest (see --held-out), then the run starts from the best");
  sub->add_option("--held-out", a->held_out, "Share of the training examples --init-search scores on (default 0.1)");
  sub->add_option("--arch", a->arch, "Student architecture: bert (default), bilstm or cnn (cross-architecture)");
  sub->add_option("--norm", a->norm, "Student normalisation: layernorm, batchnorm, nonorm, weightnorm, cosinenorm");
  sub->add_option("--loss", a->loss, "kl (Hinton soft targets) or mse (logit MSE) (default kl)");
  sub->add_option("--temperature", a->temperature, "Softmax temperature for kl (default 2)");
  sub->add_option("--temperature-end", a->temperature_end, "Anneal the temperature linearly to this by the last step");
  sub->add_option("--alpha-end", a->alpha_end, "Move alpha linearly to this by the last step");
  sub->add_option("--norm-fade", a->norm_fade,
                  "Hand LayerNorm over to --norm gradually: its share falls from 1 to 0 over this fraction of the "
                  "(first stage's) steps");
  sub->add_option("--alpha", a->alpha, "Weight of the soft loss; 1-alpha goes to the labels (default 0.5)");
  sub->add_option("--extra-teachers", a->extra_teachers,
                  "More fine-tuned teachers (same tokenizer): soft targets become the weighted mean of all")
      ->delimiter(',');
  sub->add_option("--teacher-weights", a->teacher_weights, "Weights of --teacher and --extra-teachers (default equal)")
      ->delimiter(',');
  sub->add_option("--augment", a->augment,
                  "Transfer-set augmentation: variants per training example (default 0 = off; see --augment-method)");
  sub->add_option("--augment-method", a->augment_method,
                  "tinybert (teacher-embedding neighbours) or tang (masking, word swaps, n-gram sampling)");
  sub->add_option("--augment-prob", a->augment_prob, "Probability of replacing each eligible word (default 0.4)");
  sub->add_option("--augment-neighbours", a->augment_neighbours, "Nearest neighbours to choose from (default 15)");
  sub->add_flag("--no-teacher-cache", a->no_cache, "Run the teacher on every batch instead of once (for timing)");
  sub->add_option("--teacher-cache-mb", a->teacher_cache_mb,
                  "Layer losses: MiB the teacher's per-example hidden states and attention maps may take when "
                  "cached (default 6144; larger sets run the teacher on every batch)");
  sub->add_option("--corpus", a->corpus,
                  "General distillation on unlabelled text: text files, and 'task' for the task's training "
                  "sentences (comma-separated)")
      ->delimiter(',');
  sub->callback([a, sub] { run(*a, *sub); });
}

}  // namespace condense::cli
