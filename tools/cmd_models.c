#include "cli.h"
int cmd_models(int argc, char **argv) { (void)argc; (void)argv; return 0; }
