#include "cli.h"
int cmd_report(int argc, char **argv) { (void)argc; (void)argv; return 0; }
int cli_report(const char *const *run_dirs, int n, const char *out_dir, const char *title) { return 0; }
