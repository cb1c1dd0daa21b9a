#include "condense/data/glue.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <numeric>
#include <random>
#include <utility>

#include "condense/core/error.h"
#include "condense/core/file.h"

namespace condense::data {

namespace {

const std::array<TaskInfo, 6>& task_table() {
  // Label names follow the GLUE release / Hugging Face `datasets` glue configs, so label ids
  // mean the same thing as in checkpoints fine-tuned with the Python tooling.
  static const std::array<TaskInfo, 6> table = {{
      {"sst2", "SST-2", 2, false, false, "accuracy", {"negative", "positive"}},
      {"mrpc", "MRPC", 2, false, true, "f1", {"not_equivalent", "equivalent"}},
      {"cola", "CoLA", 2, false, false, "mcc", {"unacceptable", "acceptable"}},
      {"rte", "RTE", 2, false, true, "accuracy", {"entailment", "not_entailment"}},
      {"qnli", "QNLI", 2, false, true, "accuracy", {"entailment", "not_entailment"}},
      {"stsb", "STS-B", 1, true, true, "pearson", {}},
  }};
  return table;
}

/// Where the fields of one example are in a row.
struct Layout {
  std::size_t num_fields = 0;
  std::size_t text_a = 0;
  std::optional<std::size_t> text_b;
  std::size_t label = 0;
};

/// How a task's file is laid out: header names of text_a, text_b (empty when single-sentence)
/// and the label column, and the column layout of the GLUE release used when there is no header.
struct FileSpec {
  std::string_view text_a;
  std::string_view text_b;
  std::string_view label;
  Layout headerless;
};

FileSpec file_spec(Task task) {
  switch (task) {
    case Task::SST2:  // sentence \t label
      return {"sentence", "", "label", {2, 0, std::nullopt, 1}};
    case Task::MRPC:  // Quality \t #1 ID \t #2 ID \t #1 String \t #2 String
      return {"#1 String", "#2 String", "Quality", {5, 3, 4, 0}};
    case Task::CoLA:  // source \t label \t original annotation \t sentence (no header in GLUE)
      return {"sentence", "", "label", {4, 3, std::nullopt, 1}};
    case Task::RTE:  // index \t sentence1 \t sentence2 \t label
      return {"sentence1", "sentence2", "label", {4, 1, 2, 3}};
    case Task::QNLI:  // index \t question \t sentence \t label
      return {"question", "sentence", "label", {4, 1, 2, 3}};
    case Task::STSB:  // index genre filename year old_index source1 source2 sentence1 sentence2 score
      return {"sentence1", "sentence2", "score", {10, 7, 8, 9}};
  }
  fail("invalid task value {}", static_cast<int>(task));
}

std::vector<std::string_view> split_tabs(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    std::size_t tab = line.find('\t', start);
    if (tab == std::string_view::npos) {
      fields.push_back(line.substr(start));
      return fields;
    }
    fields.push_back(line.substr(start, tab - start));
    start = tab + 1;
  }
}

/// Parses the label field into `ex`; returns an error description (empty on success).
std::string parse_label(Task task, std::string_view field, Example& ex) {
  switch (task) {
    case Task::SST2:
    case Task::MRPC:
    case Task::CoLA:
      if (field == "0" || field == "1") {
        ex.label = field == "1" ? 1 : 0;
        return {};
      }
      return fmt::format("bad label '{}' (expected one of: 0, 1)", field);
    case Task::RTE:
    case Task::QNLI:
      // GLUE's processors and HF `datasets` map entailment -> 0, not_entailment -> 1.
      if (field == "entailment" || field == "not_entailment") {
        ex.label = field == "entailment" ? 0 : 1;
        return {};
      }
      return fmt::format("bad label '{}' (expected one of: entailment, not_entailment)", field);
    case Task::STSB: {
      // STS-B scores come as "5.000", "3.8", "0", "2.33333333333333": parse the whole field.
      double v = 0;
      const char* end = field.data() + field.size();
      auto [ptr, ec] = std::from_chars(field.data(), end, v);
      if (field.empty() || ec != std::errc() || ptr != end || !std::isfinite(v) || v < 0 || v > 5) {
        return fmt::format("bad score '{}' (expected a number in [0, 5])", field);
      }
      ex.score = static_cast<float>(v);
      ex.label = 0;
      return {};
    }
  }
  return "invalid task";
}

/// Parses one row; returns an error description (empty on success).
std::string parse_row(Task task, const std::vector<std::string_view>& fields, const Layout& layout,
                      Example& ex) {
  if (fields.size() != layout.num_fields) {
    return fmt::format("expected {} tab-separated fields, found {}", layout.num_fields, fields.size());
  }
  std::string err = parse_label(task, fields[layout.label], ex);
  if (!err.empty()) return err;
  ex.text_a = std::string(fields[layout.text_a]);
  if (layout.text_b) {
    ex.text_b = std::string(fields[*layout.text_b]);
  } else {
    ex.text_b.reset();
  }
  return {};
}

/// The layout given by a header row, or nullopt when `fields` is not a header for the task.
std::optional<Layout> header_layout(const FileSpec& spec, const std::vector<std::string_view>& fields) {
  auto find = [&](std::string_view name) -> std::optional<std::size_t> {
    auto it = std::find(fields.begin(), fields.end(), name);
    if (it == fields.end()) return std::nullopt;
    return static_cast<std::size_t>(it - fields.begin());
  };
  auto a = find(spec.text_a);
  auto label = find(spec.label);
  if (!a || !label) return std::nullopt;
  Layout layout;
  layout.num_fields = fields.size();
  layout.text_a = *a;
  layout.label = *label;
  if (!spec.text_b.empty()) {
    auto b = find(spec.text_b);
    if (!b) return std::nullopt;
    layout.text_b = *b;
  }
  return layout;
}

std::string header_names(const FileSpec& spec) {
  std::string s = fmt::format("'{}'", spec.text_a);
  if (!spec.text_b.empty()) s += fmt::format(", '{}'", spec.text_b);
  s += fmt::format(", '{}'", spec.label);
  return s;
}

/// Unbiased uniform integer in [0, bound) from 64-bit engine output. 2^64 mod bound raw values
/// are rejected so that every residue is equally likely; spelled out (rather than
/// std::uniform_int_distribution) so the sequence is the same on every standard library.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // == 2^64 mod bound
  while (true) {
    uint64_t x = rng();
    if (x >= threshold) return x % bound;
  }
}

/// Fisher-Yates (Durstenfeld) shuffle: for i = n-1 .. 1 swap v[i] with v[uniform(0..i)].
template <typename T>
void shuffle_in_place(std::vector<T>& v, std::mt19937_64& rng) {
  for (std::size_t i = v.size(); i > 1; --i) {
    std::size_t j = static_cast<std::size_t>(uniform_below(rng, i));
    std::swap(v[i - 1], v[j]);
  }
}

/// 0..n-1 in the seeded order take_subset and split_held_out draw examples in.
std::vector<std::size_t> seeded_order(std::size_t n, uint64_t seed) {
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::mt19937_64 rng(seed);
  shuffle_in_place(order, rng);
  return order;
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

Task parse_task(std::string_view name) {
  const std::string n = lower_ascii(name);
  if (n == "sst2" || n == "sst-2") return Task::SST2;
  if (n == "mrpc") return Task::MRPC;
  if (n == "cola") return Task::CoLA;
  if (n == "rte") return Task::RTE;
  if (n == "qnli") return Task::QNLI;
  if (n == "stsb" || n == "sts-b") return Task::STSB;
  fail("unknown task '{}' (expected one of: sst2, mrpc, cola, rte, qnli, stsb)", name);
}

const TaskInfo& task_info(Task task) {
  const auto i = static_cast<std::size_t>(task);
  CONDENSE_CHECK(i < task_table().size(), "invalid task value {}", static_cast<int>(task));
  return task_table()[i];
}

Dataset read_glue(Task task, const std::filesystem::path& tsv) {
  const FileSpec spec = file_spec(task);
  const std::string file = tsv.string();
  const std::string content = read_file(tsv);

  std::string_view text(content);
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // UTF-8 BOM (MRPC has one)

  // Split into lines; a missing final newline (CoLA dev) and trailing empty lines are fine.
  std::vector<std::string_view> lines;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(start, nl - start);
    if (line.ends_with('\r')) line.remove_suffix(1);  // CRLF
    lines.push_back(line);
    start = nl + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();

  Dataset d{task, tsv, {}};
  CONDENSE_CHECK(!lines.empty(), "{}: no examples", file);
  d.examples.reserve(lines.size());

  // The first line is a header when it names the task's columns; otherwise it is data in the
  // GLUE release layout (CoLA's train/dev have no header).
  Layout layout = spec.headerless;
  std::size_t first_data = 0;
  if (auto h = header_layout(spec, split_tabs(lines[0]))) {
    layout = *h;
    first_data = 1;
  } else {
    Example ex;
    std::string err = parse_row(task, split_tabs(lines[0]), layout, ex);
    CONDENSE_CHECK(err.empty(), "{}:1: first line is neither a header with columns {} nor a data row ({})",
                   file, header_names(spec), err);
  }

  for (std::size_t i = first_data; i < lines.size(); ++i) {
    const std::size_t line_no = i + 1;
    CONDENSE_CHECK(!lines[i].empty(), "{}:{}: empty line", file, line_no);
    Example ex;
    std::string err = parse_row(task, split_tabs(lines[i]), layout, ex);
    CONDENSE_CHECK(err.empty(), "{}:{}: {}", file, line_no, err);
    d.examples.push_back(std::move(ex));
  }
  CONDENSE_CHECK(!d.examples.empty(), "{}: no examples", file);
  return d;
}

Dataset read_glue_split(Task task, const std::filesystem::path& task_dir, std::string_view split) {
  CONDENSE_CHECK(split == "train" || split == "dev", "unknown split '{}' (expected train or dev)", split);
  return read_glue(task, task_dir / (std::string(split) + ".tsv"));
}

Dataset read_text_corpus(Task task, const std::filesystem::path& txt, std::size_t max_words) {
  CONDENSE_CHECK(max_words > 0, "{}: max_words must be positive", txt.string());
  const std::string bytes = read_file(txt);
  Dataset d{task, txt, {}};
  // Every replacement is shorter than its pattern, so searching again from the same position
  // terminates, and it catches overlapping runs such as " <unk> <unk> " (the shared space).
  auto replace_all = [](std::string& s, std::string_view from, std::string_view to) {
    for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p)) s.replace(p, from.size(), to);
  };
  std::size_t start = 0;
  while (start < bytes.size()) {
    std::size_t end = bytes.find('\n', start);
    if (end == std::string::npos) end = bytes.size();
    std::string line = bytes.substr(start, end - start);
    start = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto first = line.find_first_not_of(' ');
    if (first == std::string::npos) continue;                // blank
    if (line.compare(first, 2, "= ") == 0) continue;         // " = Heading = "
    line = " " + line + " ";
    replace_all(line, " <unk> ", " ");  // first: "<unk> @-@ x" would otherwise become "<unk>-x"
    replace_all(line, " @-@ ", "-");
    replace_all(line, " @,@ ", ",");
    replace_all(line, " @.@ ", ".");
    // Markers left beside a dropped <unk> ("The <unk> @,@ <unk> @-@ square") lose their spaces.
    replace_all(line, "@-@", "-");
    replace_all(line, "@,@", ",");
    replace_all(line, "@.@", ".");
    // Words, cut into passages at sentence ends once max_words is reached.
    std::vector<std::string> words;
    for (std::size_t p = 0; p < line.size();) {
      const auto q = line.find(' ', p);
      const auto w = line.substr(p, (q == std::string::npos ? line.size() : q) - p);
      if (!w.empty()) words.push_back(w);
      if (q == std::string::npos) break;
      p = q + 1;
    }
    std::string passage, sentence;
    std::size_t passage_words = 0, sentence_words = 0;
    auto flush_passage = [&] {
      if (passage_words > 0) d.examples.push_back({passage, std::nullopt, 0, 0});
      passage.clear();
      passage_words = 0;
    };
    auto end_sentence = [&] {
      if (sentence_words == 0) return;
      if (passage_words > 0 && passage_words + sentence_words > max_words) flush_passage();
      passage += (passage.empty() ? "" : " ") + sentence;
      passage_words += sentence_words;
      sentence.clear();
      sentence_words = 0;
    };
    for (const auto& w : words) {
      sentence += (sentence.empty() ? "" : " ") + w;
      ++sentence_words;
      if (w == "." || w == "!" || w == "?") end_sentence();
    }
    end_sentence();
    flush_passage();
  }
  CONDENSE_CHECK(!d.examples.empty(), "{}: no text", txt.string());
  return d;
}

std::pair<Dataset, Dataset> split_held_out(const Dataset& d, double fraction, uint64_t seed) {
  CONDENSE_CHECK(fraction > 0 && fraction < 1, "{}: held-out fraction must be in (0, 1), found {}", d.source.string(),
                 fraction);
  const std::size_t n = d.examples.size();
  CONDENSE_CHECK(n >= 2, "{}: {} example(s) cannot be split into a training and a held-out part", d.source.string(), n);
  const auto held = std::clamp<std::size_t>(static_cast<std::size_t>(std::llround(fraction * static_cast<double>(n))),
                                            1, n - 1);
  const auto order = seeded_order(n, seed);
  std::vector<bool> is_held(n, false);
  for (std::size_t i = 0; i < held; ++i) is_held[order[i]] = true;
  std::pair<Dataset, Dataset> out{Dataset{d.task, d.source, {}}, Dataset{d.task, d.source, {}}};
  out.first.examples.reserve(n - held);
  out.second.examples.reserve(held);
  for (std::size_t i = 0; i < n; ++i) (is_held[i] ? out.second : out.first).examples.push_back(d.examples[i]);
  return out;
}

Dataset take_subset(const Dataset& d, std::size_t n, uint64_t seed) {
  CONDENSE_CHECK(n > 0, "{}: subset size must be positive", d.source.string());
  if (n >= d.examples.size()) return d;
  const auto order = seeded_order(d.examples.size(), seed);
  Dataset out{d.task, d.source, {}};
  out.examples.reserve(n);
  for (std::size_t i = 0; i < n; ++i) out.examples.push_back(d.examples[order[i]]);
  return out;
}

std::vector<std::vector<std::size_t>> bucket_batches(const std::vector<std::size_t>& lengths,
                                                     std::size_t batch_size, bool shuffle,
                                                     uint64_t seed, std::size_t bucket_factor) {
  CONDENSE_CHECK(batch_size > 0, "batch size must be positive");
  CONDENSE_CHECK(bucket_factor > 0, "bucket factor must be positive");
  std::vector<std::size_t> order(lengths.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  auto by_length = [&](std::size_t x, std::size_t y) { return lengths[x] < lengths[y]; };

  std::vector<std::vector<std::size_t>> batches;
  batches.reserve((order.size() + batch_size - 1) / batch_size);
  auto cut = [&](std::size_t begin, std::size_t end) {
    for (std::size_t b = begin; b < end; b += batch_size) {
      batches.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(b),
                           order.begin() + static_cast<std::ptrdiff_t>(std::min(end, b + batch_size)));
    }
  };

  if (!shuffle) {
    // Stable: equal lengths keep index order, so evaluation order is fully determined.
    std::stable_sort(order.begin(), order.end(), by_length);
    cut(0, order.size());
    return batches;
  }

  std::mt19937_64 rng(seed);
  shuffle_in_place(order, rng);
  // Guard the multiplication: a huge factor just means one chunk holding everything.
  const std::size_t chunk = bucket_factor > order.size() / batch_size + 1 ? order.size()
                                                                        : batch_size * bucket_factor;
  for (std::size_t c = 0; c < order.size(); c += chunk) {
    const std::size_t end = std::min(order.size(), c + chunk);
    std::stable_sort(order.begin() + static_cast<std::ptrdiff_t>(c),
                     order.begin() + static_cast<std::ptrdiff_t>(end), by_length);
    cut(c, end);
  }
  shuffle_in_place(batches, rng);
  return batches;
}

}  // namespace condense::data
