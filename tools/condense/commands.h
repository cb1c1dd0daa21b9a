#pragma once
// Each subcommand registers itself on the app; one file per subcommand.
#include <CLI/CLI.hpp>

namespace condense::cli {
void add_finetune(CLI::App& app);
void add_distill(CLI::App& app);
void add_eval(CLI::App& app);
void add_inspect(CLI::App& app);
void add_bench(CLI::App& app);
void add_run(CLI::App& app);
void add_export(CLI::App& app);
void add_report(CLI::App& app);
void add_quantize(CLI::App& app);
void add_prune(CLI::App& app);
void add_factorize(CLI::App& app);
void add_share(CLI::App& app);
}  // namespace condense::cli
