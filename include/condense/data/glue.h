#pragma once
/// \file
/// GLUE task readers (Wang et al., "GLUE: A Multi-Task Benchmark and Analysis Platform for Natural
/// Language Understanding", ICLR 2019) and torch-free, length-bucketed batching.
///
/// The readers take the TSV files exactly as the standard `download_glue_data.py` writes them and
/// are strict: every row must have the header's column count and a valid label, or the read fails
/// with `<file>:<line>: <what>`. Text is split on tab only — GLUE text is tokenized and carries bare
/// `"`, ``` `` ``` and `''`, so a CSV quote parser would merge rows (this is how pandas-written
/// copies of MRPC got damaged). Text fields are kept byte-for-byte (SST-2 sentences end with a
/// space; the tokenizer normalizes whitespace, the reader does not).
///
/// Everything random here uses std::mt19937_64 (whose output the C++ standard fixes) with our own
/// Fisher-Yates and range reduction, because std::shuffle and std::uniform_int_distribution are
/// implementation-defined: a seed must give the same subset and batches with libstdc++ and libc++.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace condense::data {

/// The GLUE tasks condense supports. MNLI/QQP are absent because their data is not available
/// here; WNLI is left out, as in the BERT paper (Devlin et al., NAACL 2019), because its dev set
/// is adversarial to its train set and models do no better than the majority class.
enum class Task { SST2, MRPC, CoLA, RTE, QNLI, STSB };

/// Parses a task name: "sst2"/"sst-2", "mrpc", "cola", "rte", "qnli", "stsb"/"sts-b"
/// (case-insensitive). Throws condense::Error
/// "unknown task 'x' (expected one of: sst2, mrpc, cola, rte, qnli, stsb)" otherwise.
Task parse_task(std::string_view name);

/// Static facts about a task.
struct TaskInfo {
  std::string name;      ///< canonical lower-case name, e.g. "sst2" (what parse_task accepts)
  std::string dir_name;  ///< directory in glue_data/, e.g. "SST-2"
  int num_labels;        ///< classes; 1 for STS-B (regression)
  bool regression;       ///< STS-B: predict a similarity score in [0, 5]
  bool pair;             ///< sentence-pair task (text_b present)
  /// The metric used to pick checkpoints: "accuracy", "f1" (MRPC), "mcc" (CoLA) or
  /// "pearson" (STS-B). GLUE's leaderboard averages F1/accuracy for MRPC and Pearson/Spearman
  /// for STS-B; we choose one so "best" is a single number — glue_metrics() reports all.
  std::string main_metric;
  /// Names of label ids 0..num_labels-1; empty for STS-B.
  std::vector<std::string> label_names;
};

/// The TaskInfo of a task (a reference to a static table).
const TaskInfo& task_info(Task task);

/// One labelled example.
struct Example {
  std::string text_a;                 ///< first sentence (SST-2/CoLA: the only one; QNLI: the question)
  std::optional<std::string> text_b;  ///< second sentence of pair tasks
  int64_t label = 0;                  ///< class id for classification tasks; 0 for STS-B
  float score = 0;                    ///< STS-B similarity in [0, 5]; 0 for classification tasks
};

/// The examples of one TSV file, in file order.
struct Dataset {
  Task task;
  std::filesystem::path source;  ///< the file read (or the file a subset was taken from)
  std::vector<Example> examples;
};

/// Reads one GLUE TSV (train or dev; test files have no labels and are rejected).
///
/// Columns are found by header name: SST-2 `sentence`,`label`; MRPC `Quality`,`#1 String`,
/// `#2 String`; CoLA `sentence`,`label`; RTE `sentence1`,`sentence2`,`label`; QNLI `question`,
/// `sentence`,`label`; STS-B `sentence1`,`sentence2`,`score`. When the first row is not such a
/// header it is read as data with the GLUE release's column layout — this is the normal case for
/// CoLA, whose train/dev files have no header (source, label, original annotation, sentence).
///
/// Accepts a UTF-8 BOM (MRPC has one), CRLF line endings, a missing final newline (CoLA dev) and
/// trailing empty lines. Labels: SST-2/CoLA/MRPC `0`/`1`; RTE/QNLI `entailment` -> 0,
/// `not_entailment` -> 1 (the GLUE/Hugging Face convention); STS-B a float score in [0, 5].
///
/// Throws condense::Error: `<file>: cannot open file (...)` when missing;
/// `<file>:<line>: expected 5 tab-separated fields, found 3` for a wrong column count;
/// `<file>:<line>: bad label 'x' (expected one of: 0, 1)` for an unparsable or unknown label
/// (for STS-B, `bad score 'x' (expected a number in [0, 5])`); `<file>: no examples` when empty.
Dataset read_glue(Task task, const std::filesystem::path& tsv);

/// Reads `task_dir/train.tsv` or `task_dir/dev.tsv` (split = "train" | "dev"; anything else is
/// an Error).
Dataset read_glue_split(Task task, const std::filesystem::path& task_dir, std::string_view split);

/// Unlabelled text for general distillation (TinyBERT, Jiao et al. 2020): passages from a plain
/// text file, one paragraph per line. WikiText markup is undone (" @-@ " -> "-", " @,@ " -> ",",
/// " @.@ " -> "."; "<unk>" dropped, since WordPiece would spell it as four pieces), section headings
/// (" = Title = ") and blank lines are skipped, and paragraphs are cut at sentence ends (" . ")
/// into passages of at most max_words words (longer sentences become passages of their own), so a
/// 128-token window sees whole text instead of only the start of a long paragraph. Examples carry
/// label 0, which no loss reads. Throws `<file>: cannot open file (...)` or `<file>: no text`.
Dataset read_text_corpus(Task task, const std::filesystem::path& txt, std::size_t max_words = 80);

/// The first n examples of `d` after a seeded shuffle, in shuffled order; deterministic across
/// standard libraries. n >= size returns all examples in their original order. n == 0 is an Error.
Dataset take_subset(const Dataset& d, std::size_t n, uint64_t seed);

/// Splits `d` by a seeded shuffle into (rest, held out): round(fraction · size) examples held out,
/// at least one of each side; both keep the file's order. For choices made on training data
/// (distill::search_init_layers) so that the dev set stays unseen. Throws unless 0 < fraction < 1
/// and `d` has two examples or more.
std::pair<Dataset, Dataset> split_held_out(const Dataset& d, double fraction, uint64_t seed);

/// Splits example indices 0..lengths.size()-1 into batches of at most batch_size whose lengths
/// are similar, so padding to the longest member wastes little compute.
///
/// shuffle = true (training): shuffle the indices with the seed, cut them into chunks of
/// batch_size * bucket_factor, sort each chunk by length (stable, ascending), cut the chunks into
/// batches, then shuffle the batch order. Chunking keeps the randomness of an epoch while
/// sorting makes batches homogeneous; the final shuffle keeps long batches from clustering.
/// Only the last batch of the last chunk can be short.
///
/// shuffle = false (evaluation): stable-sort all indices by ascending length and cut in order;
/// the seed is unused.
///
/// Every index appears exactly once. Deterministic for a seed across standard libraries.
/// batch_size == 0 or bucket_factor == 0 is an Error; no lengths gives no batches.
std::vector<std::vector<std::size_t>> bucket_batches(const std::vector<std::size_t>& lengths,
                                                     std::size_t batch_size, bool shuffle,
                                                     uint64_t seed, std::size_t bucket_factor = 50);

}  // namespace condense::data
