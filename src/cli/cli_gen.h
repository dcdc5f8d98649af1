/* cli_gen.h -- flags shared by the generating commands (run, chat, serve, bench):
 * model location, threads, context, sampling, speculation, memory mapping. */
#ifndef DS3_CLI_GEN_H
#define DS3_CLI_GEN_H

#include <stdio.h>

#include "ds3.h"
#include "infer/sampler.h"
#include "text/tokenizer.h"

typedef struct {
    const char *model;     /* -m; NULL = default model */
    int threads, n_ctx, n_batch, n_predict;
    int spec;              /* -1 unset (auto when the model has MTP), else DS3_SPEC_NONE/_MTP/_AUTO */
    int n_draft;
    int ignore_eos;
    ds3_model_params mp;
    ds3_sampler_params sp;
} cli_gen_opts;

void cli_gen_defaults(cli_gen_opts *o);
/* Try to consume argv[*i] (and its value). 1 = consumed, 0 = not a generation flag, -1 = bad value
 * (message printed). */
int cli_gen_flag(const char *cmd, cli_gen_opts *o, int argc, char **argv, int *i);
/* The help lines for those flags. */
void cli_gen_usage(FILE *f);
/* Resolve the model folder: -m, else $DS3_MODEL, else models/default next to the binary's repo.
 * Returns a static or caller string, or NULL with a message printed. */
const char *cli_model_dir(const char *cmd, const cli_gen_opts *o);
/* Load model (+ tokenizer when the folder has tokenizer.json; *tok may be NULL) and a session. */
int cli_load(const char *cmd, cli_gen_opts *o, ds3_model **m, ds3_session **s, ds3_tokenizer **tok);

#endif
