/* test_golden.c -- the forward pass against reference outputs: DeepSeek's own inference code
 * (tests/fixtures/golden: dev F32, fp8-dev FP8, v2lite-dev BF16) and the independent PyTorch
 * reference of tools/ref on checkpoints of other shapes, dtypes and routing rules
 * (tests/fixtures/models). For every set, every kernel set this CPU runs and 1 and 2 threads
 * (1: absorbed attention throughout; 2: naive attention for every batch of 2 or more tokens):
 *   logits at every position            max |diff| <= 1e-4
 *   routed expert sets per MoE layer    identical
 *   MTP logits / MTP expert sets        <= 1e-4 / identical
 *   KV-cache decode (prefill 20 + 10 single steps, main and MTP)  <= 1e-4 / identical */
#include <dirent.h>
#include <stdint.h>
#include <unistd.h>

#include "ds3.h"
#include "harness.h"
#include "kernels/kernels.h"

#define TOL 1e-4

typedef struct {
    void *data;
    long shape[8];
    int ndim;
} arr;

static int load(const char *dir, const char *name, arr *a) {
    char p[1024], kind;
    snprintf(p, sizeof p, "%s/outputs/%s.npy", dir, name);
    a->data = th_npy_load(p, &kind, &a->ndim, a->shape);
    return a->data != NULL;
}

static int cmp_int(const void *a, const void *b) { return *(const int32_t *)a - *(const int32_t *)b; }

/* Compare routing of n tokens (rows t0.. of the golden [.., L, K] slice) as sets. */
static int same_sets(const int32_t *got, const int32_t *want, int n, int K) {
    int32_t a[64], b[64];
    for (int t = 0; t < n; t++) {
        memcpy(a, got + (size_t)t * K, K * sizeof *a);
        memcpy(b, want + (size_t)t * K, K * sizeof *b);
        qsort(a, K, sizeof *a, cmp_int);
        qsort(b, K, sizeof *b, cmp_int);
        if (memcmp(a, b, K * sizeof *a)) return 0;
    }
    return 1;
}

static int n_moe_main(ds3_session *s, int *K) {
    int n = 0, T;
    while (ds3_session_routing(s, n, &T, K)) n++;
    return n - 1; /* the last slot is the MTP block */
}

static void check_routing(ds3_session *s, const arr *golden, int t0, int n, const char *what, const char *tag) {
    if (!golden->data) return;
    int K, T;
    int nm = n_moe_main(s, &K);
    CHECK(golden->shape[0] == nm, "%s %s: %d MoE layers, golden has %ld", tag, what, nm, golden->shape[0]);
    for (int l = 0; l < nm && l < golden->shape[0]; l++) {
        const int32_t *got = ds3_session_routing(s, l, &T, &K);
        const int32_t *want = (const int32_t *)golden->data + ((size_t)l * golden->shape[1] + t0) * K;
        CHECK(T == n && same_sets(got, want, n, K), "%s %s: MoE layer %d expert sets differ", tag, what, l);
    }
}

static void run_set(const char *dir, const char *kern, int nth) {
    char ck[1024], err[DS3_ERR_LEN], tag[512];
    snprintf(ck, sizeof ck, "%s/checkpoint", dir);
    snprintf(tag, sizeof tag, "[%s %s t%d]", dir, kern, nth);
    ds3_model *m = ds3_model_load(ck, NULL, err, sizeof err);
    CHECK(m != NULL, "%s load: %s", tag, err);
    if (!m) return;
    ds3_session_params sp = ds3_session_default_params();
    sp.n_threads = nth;
    /* 1 thread: every batch attends in the absorbed form; 2 threads: batches of 2 or more in the
     * naive form (mla.c), so the decode check compares naive prefill with absorbed steps, and
     * key blocks of 5, so that the decode steps split their keys between the threads */
    setenv("DS3_MLA_NAIVE_MIN_T", nth == 2 ? "2" : "1000000", 1);
    if (nth == 2) setenv("DS3_MLA_KBLOCK", "5", 1);
    ds3_session *s = ds3_session_new(m, &sp, err, sizeof err);
    unsetenv("DS3_MLA_NAIVE_MIN_T");
    unsetenv("DS3_MLA_KBLOCK");
    CHECK(s != NULL, "%s session: %s", tag, err);
    if (!s) { ds3_model_free(m); return; }
    const int V = ds3_model_vocab_size(m), has_mtp = ds3_model_has_mtp(m);
    const int d = 0; (void)d;
    for (int i = 0; i < 4; i++) {
        char nm[64];
        arr tok = {0}, lg = {0}, rt = {0}, mid = {0}, mlg = {0}, mrt = {0};
        snprintf(nm, sizeof nm, "seq%d_tokens", i);
        if (!load(dir, nm, &tok)) continue;
        snprintf(nm, sizeof nm, "seq%d_logits", i);
        load(dir, nm, &lg);
        snprintf(nm, sizeof nm, "seq%d_routing", i);
        load(dir, nm, &rt);
        const int L = (int)tok.shape[0];
        float *out = malloc((size_t)L * V * sizeof(float));
        ds3_session_reset(s);
        int rc = ds3_session_eval(s, tok.data, L, out, err, sizeof err);
        CHECK(rc == 0, "%s seq%d eval: %s", tag, i, err);
        double md = lg.data ? th_maxdiff(out, lg.data, (size_t)L * V) : INFINITY;
        CHECK(md <= TOL, "%s seq%d logits max |diff| = %g", tag, i, md);
        snprintf(nm, sizeof nm, "seq%d", i);
        check_routing(s, &rt, 0, L, nm, tag);
        snprintf(nm, sizeof nm, "seq%d_mtp_input_ids", i);
        if (has_mtp && load(dir, nm, &mid)) {
            snprintf(nm, sizeof nm, "seq%d_mtp_logits", i);
            load(dir, nm, &mlg);
            snprintf(nm, sizeof nm, "seq%d_mtp_routing", i);
            load(dir, nm, &mrt);
            rc = ds3_session_mtp_eval(s, mid.data, ds3_session_hidden(s, 0), L, out, err, sizeof err);
            CHECK(rc == 0, "%s seq%d mtp eval: %s", tag, i, err);
            md = mlg.data ? th_maxdiff(out, mlg.data, (size_t)L * V) : INFINITY;
            CHECK(md <= TOL, "%s seq%d MTP logits max |diff| = %g", tag, i, md);
            if (mrt.data) {
                int K, T, nm2 = n_moe_main(s, &K);
                const int32_t *got = ds3_session_routing(s, nm2, &T, &K);
                CHECK(got && T == L && same_sets(got, mrt.data, L, K), "%s seq%d MTP expert sets differ", tag, i);
            }
        }
        free(out);
        free(tok.data); free(lg.data); free(rt.data); free(mid.data); free(mlg.data); free(mrt.data);
    }
    /* Decode: prefill 20, then one token at a time through the caches. */
    arr tok = {0}, lg = {0}, rt = {0}, mid = {0}, mlg = {0};
    if (load(dir, "decode_tokens", &tok) && load(dir, "decode_logits", &lg)) {
        load(dir, "decode_routing", &rt);
        const int T = (int)tok.shape[0], P = 20;
        const int mtp = has_mtp && load(dir, "decode_mtp_input_ids", &mid) && load(dir, "decode_mtp_logits", &mlg);
        float *out = malloc((size_t)T * V * sizeof(float)), *mout = malloc((size_t)T * V * sizeof(float));
        ds3_session_reset(s);
        int ok = ds3_session_eval(s, tok.data, P, out, err, sizeof err) == 0;
        check_routing(s, &rt, 0, P, "decode prefill", tag);
        if (mtp) ok &= ds3_session_mtp_eval(s, mid.data, ds3_session_hidden(s, 0), P, mout, err, sizeof err) == 0;
        int route_ok = 1;
        for (int p = P; p < T && ok; p++) {
            ok &= ds3_session_eval(s, (int32_t *)tok.data + p, 1, out + (size_t)p * V, err, sizeof err) == 0;
            if (rt.data) {
                int K, n, nm = n_moe_main(s, &K);
                for (int l = 0; l < nm; l++) {
                    const int32_t *got = ds3_session_routing(s, l, &n, &K);
                    route_ok &= same_sets(got, (int32_t *)rt.data + ((size_t)l * rt.shape[1] + p) * K, 1, K);
                }
            }
            if (mtp)
                ok &= ds3_session_mtp_eval(s, (int32_t *)mid.data + p, ds3_session_hidden(s, 0), 1, mout + (size_t)p * V,
                                           err, sizeof err) == 0;
        }
        CHECK(ok, "%s decode: %s", tag, err);
        double md = th_maxdiff(out, lg.data, (size_t)T * V);
        CHECK(md <= TOL, "%s decode logits max |diff| = %g", tag, md);
        CHECK(route_ok, "%s decode routing differs", tag);
        if (mtp) {
            md = th_maxdiff(mout, mlg.data, (size_t)T * V);
            CHECK(md <= TOL, "%s decode MTP logits max |diff| = %g", tag, md);
        }
        free(out);
        free(mout);
    }
    free(tok.data); free(lg.data); free(rt.data); free(mid.data); free(mlg.data);
    ds3_session_free(s);
    ds3_model_free(m);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
    TEST_BEGIN("golden");
    const char *roots[] = {"tests/fixtures/golden", "tests/fixtures/models"};
    const char *kerns[] = {"ref", "avx2", "avx512"};
    int n_sets = 0;
    for (int r = 0; r < 2; r++) {
        DIR *d = opendir(roots[r]);
        if (!d) continue;
        char *names[64];
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)) && n < 64) {
            char p[1024];
            snprintf(p, sizeof p, "%s/%s/checkpoint/config.json", roots[r], e->d_name);
            if (e->d_name[0] != '.' && access(p, R_OK) == 0) names[n++] = strdup(e->d_name);
        }
        closedir(d);
        qsort(names, n, sizeof *names, cmp_str);
        for (int i = 0; i < n; i++) {
            char dir[1024];
            snprintf(dir, sizeof dir, "%s/%s", roots[r], names[i]);
            for (int k = 0; k < 3; k++) {
                if (ds3_kernels_set(kerns[k]) != 0) {
                    if (i == 0 && r == 0) printf("note: kernel set %s not available on this CPU, skipped\n", kerns[k]);
                    continue;
                }
                run_set(dir, kerns[k], 1);
                run_set(dir, kerns[k], 2);
                /* FP8 checkpoints: the AVX-512 set's other FP8 route too (exact f32
                 * dequantization, taken on CPUs without AVX512_BF16) */
                if (k == 2 && strstr(names[i], "fp8") && ds3_fp8_bf16_ok()) {
                    ds3_fp8_bf16 = 0;
                    run_set(dir, "avx512 (FP8 via f32)", 2);
                    ds3_fp8_bf16 = 1;
                }
            }
            n_sets++;
            free(names[i]);
        }
    }
    CHECK(n_sets >= 8, "expected at least 8 fixture sets, found %d", n_sets);
    return TEST_REPORT();
}
