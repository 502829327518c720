// compress: the joulecut command line. Each subcommand lives in its own file (cli/<command>.cpp)
// and is one call into the C++ API; this file only registers them and turns errors into one
// line and a non-zero exit.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>

#include "joulecut/error.h"
#include "joulecut/text.h"
#include "joulecut/model.h"
#include "joulecut/platform.h"
#include "joulecut/torch_compat.h"
#include "joulecut/version.h"
#include "options.h"

int main(int argc, char** argv) {
  // Before anything runs: OpenBLAS reads OPENBLAS_CORETYPE only when it loads.
  joulecut::restart_with_better_openblas_kernels(argv);
  using namespace joulecut::cli;
  CLI::App app{"joulecut compress: make neural networks cheaper to run, and measure what it bought.\n"
               "Run 'compress SUBCOMMAND --help' for each job."};
  app.set_version_flag("--version", std::string("joulecut ") + JOULECUT_VERSION + " (" + JOULECUT_GIT_REVISION +
                                        "), LibTorch " + joulecut::compat::torch_version());
  app.require_subcommand(1);
  Invocation invocation;
  app.add_option("--threads", invocation.threads, "LibTorch threads (default: all logical cores); BLAS runs 1 thread")
      ->check(CLI::Range(0, 4096));
  // Usage errors, like every other error: one line, then a non-zero exit.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("compress: error: ") + e.what() + " (see --help)\n";
  });

  const std::vector<Command> commands = {
      make_info_command(app),    make_eval_command(app),     make_train_command(app),     make_measure_command(app),
      make_prune_command(app),   make_compare_command(app),  make_quantize_command(app),  make_distill_command(app),
      make_run_command(app),     make_sweep_command(app),    make_search_command(app),    make_report_command(app),
      make_calibrate_command(app), make_sensitivity_command(app), make_data_command(app)};

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  invocation.command_line = "compress";
  for (int i = 1; i < argc; ++i) invocation.command_line += std::string(" ") + argv[i];
  try {
    for (const auto& command : commands)
      if (*command.app) command.run(invocation);
  } catch (const joulecut::UserError& e) {
    std::fprintf(stderr, "compress: error: %s\n", joulecut::printable(e.message_with(flag_for_option)).c_str());
    return 1;
  } catch (const std::exception& e) {
    // Unexpected failures inside LibTorch: one line; JOULECUT_DEBUG=1 shows the whole trace.
    if (std::getenv("JOULECUT_DEBUG")) std::fprintf(stderr, "%s\n", e.what());
    std::fprintf(stderr, "compress: error: %s (set JOULECUT_DEBUG=1 for the full trace)\n",
                 joulecut::printable(joulecut::torch_error_summary(e)).c_str());
    return 1;
  }
  return 0;
}
