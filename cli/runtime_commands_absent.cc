// schism-coordinator's stand-ins for the handlers of the commands that run a model: this binary
// links no libtorch, its command table leaves those commands out (needs_runtime), and these are
// never called; they exist so that the one table links.
#include "cli/commands.h"

namespace schism::cli {
namespace {

int NoRuntime(const Args& args) {
  return Fail(args.command().name, kExitUsageError,
              "not in schism-coordinator (no model runtime); use the schism binary");
}

}  // namespace

bool ModelRuntimeLinked() { return false; }

int RunEmbedded(const Args& args) { return NoRuntime(args); }
int RunWorker(const Args& args) { return NoRuntime(args); }
int RunExportWorker(const Args& args) { return NoRuntime(args); }
int RunExport(const Args& args) { return NoRuntime(args); }
int RunEvaluate(const Args& args) { return NoRuntime(args); }
int RunGenerate(const Args& args) { return NoRuntime(args); }
int RunChat(const Args& args) { return NoRuntime(args); }

}  // namespace schism::cli
