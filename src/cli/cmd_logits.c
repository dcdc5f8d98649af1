/* cmd_logits.c -- `ds3 logits`: the logits of every position (and the MTP logits) of a token
 * sequence, written as raw little-endian float32 [n_tokens, vocab] or .npy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ds3.h"
#include "io/npy.h"

static void usage(void) {
    printf("usage: ds3 logits -m DIR --tokens 5,17,42 -o OUT [options]\n\n"
           "Write the logits at every position as little-endian float32 [n_tokens, vocab_size]\n"
           "(NumPy .npy when OUT ends in .npy).\n\n"
           "  -m, --model DIR       Hugging Face checkpoint folder (config.json + *.safetensors)\n"
           "  --tokens LIST         token ids, comma-separated\n"
           "  -o, --out OUT         output file for the main model's logits\n"
           "  --mtp-out OUT2        also write MTP logits: position i takes token i+1 (the last position\n"
           "                        takes the argmax of the main model's last logits)\n"
           "  --decode              feed the tokens one at a time through the KV caches\n"
           "  -b, --batch-size N    tokens per forward chunk (default 512)\n"
           "  -t, --threads N       threads (default: all cores)\n"
           "  --no-mmap             read the weights into RAM instead of mapping them\n"
           "  --mlock               lock the mapped weights in RAM\n"
           "  --no-repack           keep GGUF Q8_0/Q4_K weights in the file's layout\n");
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

int ds3_cmd_logits(int argc, char **argv) {
    const char *C = "logits", *dir = NULL, *out = NULL, *mtp_out = NULL, *toks = NULL;
    int decode = 0;
    long threads = 0, batch = 512;
    ds3_model_params mp = ds3_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!v) return cli_usage_error(C, "%s needs a value", a); dir = v; i++; }
        else if (!strcmp(a, "--tokens")) { if (!v) return cli_usage_error(C, "%s needs a value", a); toks = v; i++; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) { if (!v) return cli_usage_error(C, "%s needs a value", a); out = v; i++; }
        else if (!strcmp(a, "--mtp-out")) { if (!v) return cli_usage_error(C, "%s needs a value", a); mtp_out = v; i++; }
        else if (!strcmp(a, "--decode")) decode = 1;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (cli_parse_int(C, a, v, 1, 512, &threads)) return 2; i++; }
        else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) { if (cli_parse_int(C, a, v, 1, 1 << 16, &batch)) return 2; i++; }
        else if (!strcmp(a, "--no-mmap")) mp.use_mmap = 0;
        else if (!strcmp(a, "--mlock")) mp.use_mlock = 1;
        else if (!strcmp(a, "--no-repack")) mp.no_repack = 1;
        else return cli_usage_error(C, "unknown option '%s'", a);
    }
    if (!dir) return cli_usage_error(C, "-m DIR is required");
    if (!toks) return cli_usage_error(C, "--tokens is required");
    if (!out) return cli_usage_error(C, "-o OUT is required");
    int *ids;
    int n = cli_parse_tokens(C, toks, &ids);
    if (n < 0) return 2;
    char err[DS3_ERR_LEN];
    mp.load_mtp = mtp_out != NULL;
    ds3_model *m = ds3_model_load(dir, &mp, err, sizeof err);
    if (!m) { fprintf(stderr, "ds3 logits: %s\n", err); free(ids); return 1; }
    if (mtp_out && !ds3_model_has_mtp(m)) {
        fprintf(stderr, "ds3 logits: %s: the model has no MTP layer (num_nextn_predict_layers is 0)\n", dir);
        ds3_model_free(m); free(ids); return 1;
    }
    ds3_session_params sp = ds3_session_default_params();
    sp.n_threads = (int)threads;
    sp.n_batch = decode ? 1 : (int)batch;
    if (sp.n_ctx < n) sp.n_ctx = n;
    sp.use_mtp = mtp_out != NULL;
    int rc = 1;
    ds3_session *s = ds3_session_new(m, &sp, err, sizeof err);
    const int V = ds3_model_vocab_size(m);
    float *lg = malloc((size_t)n * V * sizeof(float)), *mlg = mtp_out ? malloc((size_t)n * V * sizeof(float)) : NULL;
    int32_t *t32 = malloc((size_t)(n + 1) * sizeof(int32_t));
    if (!s || !lg || (mtp_out && !mlg) || !t32) { fprintf(stderr, "ds3 logits: %s\n", s ? "out of memory" : err); goto done; }
    for (int i = 0; i < n; i++) t32[i] = ids[i];
    const int step = decode ? 1 : (int)batch;
    for (int start = 0; start < n; start += step) {
        int T = n - start < step ? n - start : step;
        if (ds3_session_eval(s, t32 + start, T, lg + (size_t)start * V, err, sizeof err)) {
            fprintf(stderr, "ds3 logits: %s\n", err); goto done;
        }
        if (mtp_out) {
            if (start + T >= n) t32[n] = argmax(lg + (size_t)(n - 1) * V, V);
            if (ds3_session_mtp_eval(s, t32 + start + 1, ds3_session_hidden(s, 0), T, mlg + (size_t)start * V, err, sizeof err)) {
                fprintf(stderr, "ds3 logits: %s\n", err); goto done;
            }
        }
    }
    int64_t shape[2] = {n, V};
    if (ds3_write_f32(out, lg, shape, 2, err, sizeof err) || (mtp_out && ds3_write_f32(mtp_out, mlg, shape, 2, err, sizeof err))) {
        fprintf(stderr, "ds3 logits: %s\n", err); goto done;
    }
    rc = 0;
done:
    free(lg); free(mlg); free(t32); free(ids);
    ds3_session_free(s);
    ds3_model_free(m);
    return rc;
}
