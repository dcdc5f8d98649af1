/* cmd_run.c -- `ds3 run`: generate from a prompt given as token ids (--tokens) or text
 * (-p / -f, with the model's tokenizer.json), streaming output; statistics on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_gen.h"
#include "infer/generate.h"
#include "util/common.h"

static void usage(void) {
    printf("usage: ds3 run [-m DIR] (-p PROMPT | -f FILE | --tokens 5,17,42) [options]\n\n"
           "Generate text (or token ids with --tokens) and print speed statistics on stderr.\n\n"
           "  -p, --prompt TEXT     prompt text (needs tokenizer.json in the model folder)\n"
           "  -f, --file FILE       read the prompt text from FILE\n"
           "  --tokens LIST         prompt as token ids; prints generated ids space-separated\n"
           "  --no-bos              do not add the BOS token to a text prompt\n");
    cli_gen_usage(stdout);
}

typedef struct {
    ds3_detok_stream *ds;
    int ids;
} run_out;

static int on_token(void *ud, int32_t tok) {
    run_out *o = ud;
    if (o->ds) {
        const char *txt;
        size_t n;
        if (ds3_detok_stream_push(o->ds, tok, &txt, &n) == 0 && n) fwrite(txt, 1, n, stdout);
    } else {
        printf(o->ids++ ? " %d" : "%d", tok);
    }
    fflush(stdout);
    return 0;
}

int ds3_cmd_run(int argc, char **argv) {
    const char *C = "run", *prompt = NULL, *file = NULL, *toks = NULL;
    int no_bos = 0;
    cli_gen_opts o;
    cli_gen_defaults(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        int r = cli_gen_flag(C, &o, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { if (!v) return cli_usage_error(C, "%s needs a value", a); prompt = v; i++; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (!v) return cli_usage_error(C, "%s needs a value", a); file = v; i++; }
        else if (!strcmp(a, "--tokens")) { if (!v) return cli_usage_error(C, "%s needs a value", a); toks = v; i++; }
        else if (!strcmp(a, "--no-bos")) no_bos = 1;
        else return cli_usage_error(C, "unknown option '%s'", a);
    }
    if ((prompt != NULL) + (file != NULL) + (toks != NULL) > 1) return cli_usage_error(C, "give only one of -p, -f, --tokens");
    int32_t *ids = NULL;
    int n = 0;
    if (toks) {
        int *v;
        if ((n = cli_parse_tokens(C, toks, &v)) < 0) return 2;
        ids = malloc((size_t)n * sizeof *ids);
        for (int i = 0; i < n; i++) ids[i] = v[i];
        free(v);
    }
    char err[DS3_ERR_LEN];
    char *ftext = NULL;
    if (file) {
        size_t len;
        ftext = ds3_read_file(file, &len, 64u << 20, err, sizeof err);
        if (!ftext) { fprintf(stderr, "ds3 run: %s\n", err); return 1; }
        prompt = ftext;
    }
    ds3_model *m;
    ds3_session *s;
    ds3_tokenizer *tok;
    int rc = cli_load(C, &o, &m, &s, &tok);
    if (rc) goto done;
    rc = 1;
    if (!toks) {
        if (!tok) {
            fprintf(stderr, "ds3 run: %s has no tokenizer.json; give the prompt as --tokens\nrun 'ds3 run --help' for usage\n", ds3_model_dir(m));
            goto done;
        }
        if (!prompt) prompt = "Once upon a time";
        size_t nn;
        if (ds3_tokenizer_encode(tok, prompt, strlen(prompt), !no_bos, 0, &ids, &nn, err, sizeof err)) {
            fprintf(stderr, "ds3 run: %s\n", err);
            goto done;
        }
        n = (int)nn;
        if (n == 0) { fprintf(stderr, "ds3 run: the prompt is empty\nrun 'ds3 run --help' for usage\n"); rc = 2; goto done; }
    }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= ds3_model_vocab_size(m)) {
            fprintf(stderr, "ds3 run: token id %d is out of range [0, %d)\n", ids[i], ds3_model_vocab_size(m));
            rc = 2;
            goto done;
        }
    ds3_sampler *smp = ds3_sampler_new(&o.sp, ds3_model_vocab_size(m));
    run_out ro = {0};
    if (!toks) {
        ro.ds = ds3_detok_stream_new(tok, 1);
        fputs(prompt, stdout);
        fflush(stdout);
    }
    ds3_gen_params gp = ds3_gen_default_params();
    gp.n_predict = o.n_predict;
    gp.stop_at_eos = !o.ignore_eos;
    gp.spec = o.spec;
    gp.n_draft = o.n_draft;
    gp.on_token = on_token;
    gp.ud = &ro;
    ds3_gen_stats st;
    int g = ds3_generate(s, smp, ids, n, &gp, &st, err, sizeof err);
    if (ro.ds) {
        const char *txt;
        size_t tn;
        if (ds3_detok_stream_finish(ro.ds, &txt, &tn) == 0 && tn) fwrite(txt, 1, tn, stdout);
        ds3_detok_stream_free(ro.ds);
    }
    printf("\n");
    fflush(stdout);
    ds3_sampler_free(smp);
    if (g) { fprintf(stderr, "ds3 run: %s\n", err); goto done; }
    fprintf(stderr, "ds3 run: prompt %d tokens in %.3f s (%.1f tok/s) | generation %d tokens in %.3f s (%.1f tok/s)\n",
            st.n_prompt, st.t_prompt, st.t_prompt > 0 ? st.n_prompt / st.t_prompt : 0.0, st.n_gen, st.t_gen,
            st.t_gen > 0 ? st.n_gen / st.t_gen : 0.0);
    if (o.spec) {
        char line[512];
        ds3_gen_stats_describe(&st, o.n_draft, line, sizeof line);
        fprintf(stderr, "ds3 run: %s\n", line);
    }
    rc = 0;
done:
    free(ids);
    free(ftext);
    ds3_session_free(s);
    ds3_tokenizer_free(tok);
    ds3_model_free(m);
    return rc;
}
