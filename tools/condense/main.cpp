// condense: the command-line front end. The library throws; only here do errors become one
// line on stderr and a non-zero exit status.
#include <c10/util/Exception.h>

#include <cstdio>
#include <string>

#include "commands.h"
#include "condense/core/error.h"

namespace {
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"condense: distil, compress and run BERT models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "condense 0.1.0");
  condense::cli::add_finetune(app);
  condense::cli::add_distill(app);
  condense::cli::add_eval(app);
  condense::cli::add_inspect(app);
  condense::cli::add_bench(app);
  condense::cli::add_run(app);
  condense::cli::add_export(app);
  condense::cli::add_report(app);
  condense::cli::add_quantize(app);
  condense::cli::add_prune(app);
  condense::cli::add_factorize(app);
  condense::cli::add_share(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0 with CLI11's output; a bad flag is one line like every other error.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "condense: error: %s (see --help)\n", first_line(e.what()).c_str());
    return e.get_exit_code();
  } catch (const condense::Error& e) {
    std::fprintf(stderr, "condense: error: %s\n", first_line(e.what()).c_str());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "condense: error: %s\n", first_line(e.what_without_backtrace()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "condense: error: %s\n", first_line(e.what()).c_str());
    return 1;
  }
  return 0;
}
