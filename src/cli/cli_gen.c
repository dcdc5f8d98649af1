/* cli_gen.c -- the generation flags shared by run/chat/serve/bench and model loading for them. */
#include "cli/cli_gen.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "infer/generate.h"
#include "io/gguf.h"

void cli_gen_defaults(cli_gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_ctx = 0;
    o->n_batch = 512;
    o->n_predict = 128;
    o->spec = -1;
    o->n_draft = 1;
    o->mp = ds3_model_default_params();
    o->sp = ds3_sampler_default_params();
    o->sp.seed = 0;
}

void cli_gen_usage(FILE *f) {
    fprintf(f, "  -m, --model DIR       model folder (config.json, *.safetensors, tokenizer.json); default:\n"
               "                        $DS3_MODEL, else models/default of the ds3 checkout\n"
               "  -n, --n-predict N     tokens to generate (default 128)\n"
               "  -t, --threads N       threads (default: all cores)\n"
               "  -c, --ctx-size N      context positions (default: min(4096, model max))\n"
               "  -b, --batch-size N    prompt tokens per forward chunk (default 512)\n"
               "  --temp T              temperature; 0 = greedy (default 0.8)\n"
               "  --top-k K             keep the K most likely tokens; 0 = off (default 40)\n"
               "  --top-p P             nucleus sampling; 1 = off (default 0.95)\n"
               "  --min-p P             drop tokens below P x the top probability (default 0.05)\n"
               "  --seed S              RNG seed (default 0)\n"
               "  --spec auto|mtp|none  MTP self-speculative decoding: auto (the default when the model has MTP\n"
               "                        weights) speculates while it measures faster than plain decoding,\n"
               "                        mtp on every step, none never\n"
               "  --draft N             tokens drafted per speculative step (default 1)\n"
               "  --ignore-eos          keep generating after the end-of-sequence token\n"
               "  --no-mmap             read the weights into RAM instead of mapping them\n"
               "  --mlock               lock the mapped weights in RAM\n"
               "  --no-repack           keep GGUF Q8_0/Q4_K weights in the file's layout (default: regrouped\n"
               "                        16 rows at a time at load for the AVX-512 VNNI kernels)\n");
}

int cli_gen_flag(const char *C, cli_gen_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    long l;
    double d;
#define NEEDV() do { if (!v) { cli_usage_error(C, "%s needs a value", a); return -1; } } while (0)
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEEDV(); o->model = v; (*i)++; return 1; }
    if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { if (cli_parse_int(C, a, v, 0, 1 << 24, &l)) return -1; o->n_predict = (int)l; (*i)++; return 1; }
    if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (cli_parse_int(C, a, v, 1, 512, &l)) return -1; o->threads = (int)l; (*i)++; return 1; }
    if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { if (cli_parse_int(C, a, v, 1, 1 << 24, &l)) return -1; o->n_ctx = (int)l; (*i)++; return 1; }
    if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) { if (cli_parse_int(C, a, v, 1, 1 << 16, &l)) return -1; o->n_batch = (int)l; (*i)++; return 1; }
    if (!strcmp(a, "--temp")) { if (cli_parse_float(C, a, v, 0, 100, &d)) return -1; o->sp.temp = (float)d; (*i)++; return 1; }
    if (!strcmp(a, "--top-k")) { if (cli_parse_int(C, a, v, 0, INT_MAX, &l)) return -1; o->sp.top_k = (int)l; (*i)++; return 1; }
    if (!strcmp(a, "--top-p")) { if (cli_parse_float(C, a, v, 0, 1, &d)) return -1; o->sp.top_p = (float)d; (*i)++; return 1; }
    if (!strcmp(a, "--min-p")) { if (cli_parse_float(C, a, v, 0, 1, &d)) return -1; o->sp.min_p = (float)d; (*i)++; return 1; }
    if (!strcmp(a, "--seed")) { if (cli_parse_int(C, a, v, 0, LONG_MAX, &l)) return -1; o->sp.seed = (uint64_t)l; (*i)++; return 1; }
    if (!strcmp(a, "--draft")) { if (cli_parse_int(C, a, v, 1, 16, &l)) return -1; o->n_draft = (int)l; (*i)++; return 1; }
    if (!strcmp(a, "--spec")) {
        NEEDV();
        if (!strcmp(v, "auto")) o->spec = DS3_SPEC_AUTO;
        else if (!strcmp(v, "mtp")) o->spec = DS3_SPEC_MTP;
        else if (!strcmp(v, "none")) o->spec = DS3_SPEC_NONE;
        else { cli_usage_error(C, "--spec: '%s' is not auto, mtp or none", v); return -1; }
        (*i)++;
        return 1;
    }
    if (!strcmp(a, "--ignore-eos")) { o->ignore_eos = 1; return 1; }
    if (!strcmp(a, "--no-mmap")) { o->mp.use_mmap = 0; return 1; }
    if (!strcmp(a, "--mlock")) { o->mp.use_mlock = 1; return 1; }
    if (!strcmp(a, "--no-repack")) { o->mp.no_repack = 1; return 1; }
    return 0;
#undef NEEDV
}

const char *cli_model_dir(const char *C, const cli_gen_opts *o) {
    if (o->model) return o->model;
    const char *env = getenv("DS3_MODEL");
    if (env && *env) return env;
    static char path[PATH_MAX + 32];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    struct stat st;
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;                                 /* .../build */
        snprintf(path, sizeof path, "%s/../models/default", exe);
        if (stat(path, &st) == 0) return path;
    }
    if (stat("models/default", &st) == 0) return "models/default";
    fprintf(stderr, "ds3 %s: no model given and no default model found (models/default); use -m DIR\n"
                    "run 'ds3 %s --help' for usage\n", C, C);
    return NULL;
}

int cli_load(const char *C, cli_gen_opts *o, ds3_model **m, ds3_session **s, ds3_tokenizer **tok) {
    char err[DS3_ERR_LEN];
    *m = NULL;
    *s = NULL;
    if (tok) *tok = NULL;
    const char *dir = cli_model_dir(C, o);
    if (!dir) return 2;
    int want_mtp = o->spec != 0;
    o->mp.load_mtp = want_mtp;
    *m = ds3_model_load(dir, &o->mp, err, sizeof err);
    if (!*m) {
        fprintf(stderr, "ds3 %s: %s\nrun 'ds3 %s --help' for usage\n", C, err, C);
        return 1;
    }
    /* unset or auto: adaptive speculation when the model has MTP weights, else plain */
    if (o->spec < 0 || (o->spec == DS3_SPEC_AUTO && !ds3_model_has_mtp(*m)))
        o->spec = ds3_model_has_mtp(*m) ? DS3_SPEC_AUTO : DS3_SPEC_NONE;
    if (o->spec == DS3_SPEC_MTP && !ds3_model_has_mtp(*m)) {
        fprintf(stderr, "ds3 %s: %s: --spec mtp needs a model with MTP weights\n", C, dir);
        return 1;
    }
    if (tok && ds3_model_is_gguf(*m)) { /* a GGUF file: its embedded tokenizer */
        *tok = ds3_gguf_load_tokenizer(dir, err, sizeof err);
        if (!*tok) fprintf(stderr, "ds3 %s: note: %s\n", C, err);
    } else if (tok) {
        char tp[4096];
        snprintf(tp, sizeof tp, "%s/tokenizer.json", dir);
        if (access(tp, R_OK) == 0) {
            *tok = ds3_tokenizer_load(tp, err, sizeof err);
            if (!*tok) {
                fprintf(stderr, "ds3 %s: %s\n", C, err);
                return 1;
            }
        }
    }
    ds3_session_params sp = ds3_session_default_params();
    sp.n_ctx = o->n_ctx;
    sp.n_batch = o->n_batch;
    sp.n_threads = o->threads;
    sp.use_mtp = o->spec ? 1 : 0;
    *s = ds3_session_new(*m, &sp, err, sizeof err);
    if (!*s) {
        fprintf(stderr, "ds3 %s: %s\n", C, err);
        return 1;
    }
    return 0;
}
