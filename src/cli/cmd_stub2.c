/* cmd_stub2.c -- run and bench placeholders (replaced as the inference core lands). */
#include <stdio.h>
#include "cli.h"
int ds3_cmd_bench(int argc, char **argv) { fprintf(stderr, "ds3 bench: not implemented yet\n"); return 2; }
