/* cmd_later.c -- subcommands that later issues implement (each moves to its own file). */
#include <stdio.h>

#include "cli.h"

static int todo(const char *c) {
    fprintf(stderr, "ds3 %s: not implemented yet\n", c);
    return 2;
}
int ds3_cmd_serve(int argc, char **argv) { return todo("serve"); }
