/* cmd_info.c -- `ds3 info -m DIR`: config, parameter counts, bytes per token, KV-cache size. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ds3.h"

int ds3_cmd_info(int argc, char **argv) {
    const char *C = "info", *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: ds3 info -m DIR\n\nPrint the model's config, total and per-token active parameters,\n"
                   "weight bytes read per decoded token and KV-cache bytes per token.\n");
            return 0;
        } else if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            if (i + 1 >= argc) return cli_usage_error(C, "%s needs a value", argv[i]);
            dir = argv[++i];
        } else return cli_usage_error(C, "unknown option '%s'", argv[i]);
    }
    if (!dir) return cli_usage_error(C, "-m DIR is required");
    char err[DS3_ERR_LEN];
    ds3_model_params mp = ds3_model_default_params();
    mp.verbose = 1;
    mp.no_repack = 1; /* report the file's dtypes (and skip the work) */
    ds3_model *m = ds3_model_load(dir, &mp, err, sizeof err);
    if (!m) { fprintf(stderr, "ds3 info: %s\n", err); return 1; }
    ds3_model_print_info(m, stdout);
    printf("kernels:          %s\n", ds3_kernels_name());
    ds3_model_free(m);
    return 0;
}
