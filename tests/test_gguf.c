/* test_gguf.c -- GGUF reader, model binding, writer and hostile inputs.
 *   1. llama.cpp agreement: dev-f32.gguf / dev-q8_0.gguf (written by llama.cpp's gguf-py) with the
 *      log-probabilities llama.cpp v0.4.0 computed on them (tests/fixtures/gguf/, from
 *      /work/shared/gguf): F32 within 1e-3 at every position, same argmax everywhere; Q8_0 within
 *      0.15 at >= 90% of the positions and the same argmax at >= 90% (llama.cpp rounds the
 *      activations to 8 bits, ds3's ref set does not, and a near-tie routing flip moves a
 *      position by up to ~1); every kernel set, 1 and 2 threads.
 *   2. writer round trip: a model written by ds3_gguf_writer reads back bit-identically.
 *   3. hostile files: bad magic/version, huge counts, strings past the end, misaligned and
 *      overlapping data, unknown types, bad shapes -- each a clear error, never a crash. */
#include <jansson.h>

#include "harness.h"
#include "io/gguf.h"
#include "kernels/quant.h"
#include "model/model.h"
#include "text/tokenizer.h"
#include "util/common.h"

#define FIX "tests/fixtures/gguf/"

static int32_t toks[64];
static int n_toks;

static void load_tokens(void) {
    json_error_t je;
    json_t *j = json_load_file(FIX "tokens48.json", 0, &je);
    n_toks = 0;
    for (size_t i = 0; j && i < json_array_size(j) && i < 64; i++) toks[n_toks++] = (int32_t)json_integer_value(json_array_get(j, i));
    json_decref(j);
}

static float *read_f32(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *v = malloc(n * sizeof *v);
    size_t got = fread(v, sizeof *v, n, f);
    fclose(f);
    if (got != n) {
        free(v);
        return NULL;
    }
    return v;
}

/* ds3's log-softmax of every position vs llama.cpp's (log-probabilities above -30). Returns the
 * max |diff|; counts positions within tol and argmax agreements (up to near-ties, below). */
static double compare_logprobs(const float *logits, const float *ref, int n, int V, double tol, int *agree, int *first_flip,
                               int *n_close) {
    double md = 0;
    *n_close = 0;
    *agree = 0;
    *first_flip = n;
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * V, *r = ref + (size_t)i * V;
        double mx = -INFINITY, s = 0;
        int am = 0, ram = 0;
        for (int v = 0; v < V; v++) {
            if (l[v] > mx) mx = l[v];
            if (l[v] > l[am]) am = v;
            if (!isnan(r[v]) && (isnan(r[ram]) || r[v] > r[ram])) ram = v;
        }
        for (int v = 0; v < V; v++) s += exp((double)l[v] - mx);
        const double lse = mx + log(s);
        /* argmax agreement, up to ties: ds3's top token is one llama.cpp rates within tol of its own
         * top (logits of near-tied tokens differ by less than the quantization noise) */
        if (am == ram || (!isnan(r[am]) && r[am] >= r[ram] - tol)) (*agree)++;
        else if (*first_flip == n) *first_flip = i;
        double pd = 0;
        for (int v = 0; v < V; v++)
            if (!isnan(r[v]) && r[v] > -30) { /* far tails: llama.cpp's f32 softmax loses them */
                double d = fabs(((double)l[v] - lse) - r[v]);
                if (d > pd) pd = d;
            }
        if (pd > md) md = pd;
        *n_close += pd <= tol;
        if (getenv("DS3_TEST_VERBOSE") && getenv("DS3_TEST_POS")) printf("  pos %d: max diff %.3g%s\n", i, pd, am == ram ? "" : " (argmax differs)");
    }
    return md;
}

static void test_llamacpp(const char *name, double tol, double min_agree) {
    char path[256], rpath[256], err[DS3_ERR_LEN];
    snprintf(path, sizeof path, FIX "dev-%s.gguf", name);
    snprintf(rpath, sizeof rpath, FIX "dev-%s.llamacpp-logprobs.f32", name);
    ds3_model_params mp = ds3_model_default_params();
    ds3_model *m = ds3_model_load(path, &mp, err, sizeof err);
    CHECK(m != NULL, "%s: %s", path, err);
    if (!m) return;
    if (!strcmp(name, "q8_0")) { /* the VNNI kernels get Q8_0 regrouped at load (quant.h), the rest as stored */
        const ds3_dtype want = ds3_x16_wanted() ? DS3_DT_Q8_0X16 : DS3_DT_Q8_0;
        const ds3_layer_w *l1 = &m->layers[1];
        CHECK(m->layers[0].q_a.dtype == want && l1->experts[0].down.dtype == want && l1->shared.up.dtype == want,
              "q8_0: matrices loaded as %s, want %s", ds3_dtype_name(m->layers[0].q_a.dtype), ds3_dtype_name(want));
        CHECK(m->embed.dtype == DS3_DT_Q8_0, "q8_0: the embedding stays Q8_0 (%s)", ds3_dtype_name(m->embed.dtype));
    }
    const int V = ds3_model_vocab_size(m);
    float *ref = read_f32(rpath, (size_t)n_toks * V);
    CHECK(ref != NULL, "%s unreadable", rpath);
    float *lg = malloc((size_t)n_toks * V * sizeof *lg);
    const char *sets[] = {"ref", "avx2", "avx512"};
    for (int si = 0; si < 3 && ref; si++) {
        if (ds3_kernels_set(sets[si])) continue;
        for (int nt = 1; nt <= 2; nt++) {
            ds3_session_params sp = ds3_session_default_params();
            sp.n_threads = nt;
            sp.n_ctx = 64;
            /* 2 threads: the prompt attends in the naive form (mla.c), 1 thread: absorbed */
            setenv("DS3_MLA_NAIVE_MIN_T", nt == 2 ? "2" : "1000000", 1);
            ds3_session *s = ds3_session_new(m, &sp, err, sizeof err);
            unsetenv("DS3_MLA_NAIVE_MIN_T");
            CHECK(s != NULL, "session: %s", err);
            if (!s) continue;
            int rc = ds3_session_eval(s, toks, n_toks, lg, err, sizeof err);
            CHECK(rc == 0, "eval: %s", err);
            int agree, flip, close;
            double md = compare_logprobs(lg, ref, n_toks, V, tol, &agree, &flip, &close);
            CHECK(close >= min_agree * n_toks, "%s [%s, %d threads]: |logprob - llama.cpp| <= %g at only %d/%d positions (max %.3g)",
                  name, sets[si], nt, tol, close, n_toks, md);
            CHECK(agree >= min_agree * n_toks, "%s [%s, %d threads]: argmax agrees at %d/%d positions", name, sets[si], nt, agree,
                  n_toks);
            if (getenv("DS3_TEST_VERBOSE"))
                printf("%s [%s, %d threads]: max diff %.3g, %d/%d positions within %g, argmax %d/%d (first flip %d)\n", name,
                       sets[si], nt, md, close, n_toks, tol, agree, n_toks, flip);
            ds3_session_free(s);
        }
    }
    ds3_kernels_set("ref");
    ds3_kernels_init();
    free(lg);
    free(ref);
    ds3_model_free(m);
}

/* ---- writer round trip + hostile files ---- */

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n ? *n : 1);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

/* a small valid file: two keys, two tensors (F32 {4,2}, Q8_0 {32,1}) */
static uint8_t *small_gguf(size_t *n) {
    ds3_gguf_writer *w = ds3_gguf_writer_new();
    ds3_gguf_w_str(w, "general.architecture", "test");
    ds3_gguf_w_u32(w, "general.alignment", 32);
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint8_t q[34];
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = (float)i - 16;
    ds3_q_quantize_row(DS3_DT_Q8_0, x, 32, q);
    int64_t ne1[2] = {4, 2}, ne2[2] = {32, 1};
    ds3_gguf_w_tensor(w, "a", GGML_T_F32, 2, ne1, a, sizeof a, 0);
    ds3_gguf_w_tensor(w, "b", GGML_T_Q8_0, 2, ne2, q, sizeof q, 0);
    char err[DS3_ERR_LEN];
    int rc = ds3_gguf_writer_write(w, "/tmp/ds3_test_small.gguf", err, sizeof err);
    CHECK(rc == 0, "writer: %s", err);
    ds3_gguf_writer_free(w);
    return slurp("/tmp/ds3_test_small.gguf", n);
}

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* parse buf; expect failure whose message contains `want` (NULL: expect success) */
static void expect(const uint8_t *buf, size_t n, const char *want, const char *what) {
    char err[DS3_ERR_LEN] = "";
    ds3_gguf *g = NULL;
    int rc = ds3_gguf_parse(buf, n, "hostile.gguf", &g, err, sizeof err);
    if (!want) CHECK(rc == 0 && g, "%s: expected success, got: %s", what, err);
    else CHECK(rc < 0 && !g && strstr(err, want) && strstr(err, "hostile.gguf"), "%s: expected error with '%s', got rc %d: %s", what,
               want, rc, err);
    ds3_gguf_close(g);
}

static void test_hostile(void) {
    size_t n;
    uint8_t *good = small_gguf(&n);
    CHECK(good && n > 64, "small file");
    if (!good) return;
    expect(good, n, NULL, "valid");
    {   /* read back the values */
        ds3_gguf *g = NULL;
        char err[DS3_ERR_LEN];
        CHECK(ds3_gguf_parse(good, n, "x", &g, err, sizeof err) == 0, "%s", err);
        ds3_gguf_tensor *a = g ? ds3_gguf_find_tensor(g, "a") : NULL, *b = g ? ds3_gguf_find_tensor(g, "b") : NULL;
        CHECK(a && a->ne[0] == 4 && a->ne[1] == 2 && ((const float *)a->data)[7] == 8.0f, "tensor a read back");
        CHECK(b && b->dtype == DS3_DT_Q8_0 && b->nbytes == 34, "tensor b read back");
        char s[32];
        CHECK(g && ds3_gguf_get_str(g, "general.architecture", s, sizeof s, err, sizeof err) == 0 && !strcmp(s, "test"), "key");
        ds3_gguf_close(g);
    }
    uint8_t *h = malloc(n + 64);
    /* header fields: magic 0, version 4, n_tensors 8, n_kv 16; first key length at 24 */
#define MUT(stmt, want, what)      \
    do {                           \
        memcpy(h, good, n);        \
        size_t hn = n;             \
        stmt;                      \
        expect(h, hn, want, what); \
    } while (0)
    MUT(h[0] = 'X', "bad magic", "bad magic");
    MUT(put32(h + 4, 1), "version 1", "version 1");
    MUT(put32(h + 4, 99), "version 99", "version 99");
    MUT(put64(h + 8, 1ull << 60), "tensor count", "huge tensor count");
    MUT(put64(h + 16, 1ull << 62), "key/value count", "huge kv count");
    MUT(put64(h + 16, 50), "cannot fit", "kv count past the end");
    MUT(put64(h + 24, 1ull << 40), "past the end", "key length past the end");
    MUT(put64(h + 24, 0), "name length", "empty key");
    MUT(hn = 10, "past the end", "truncated to 10 bytes");
    MUT(hn = 3, "bad magic", "truncated to 3 bytes");
    for (size_t cut = 24; cut < n - 30; cut += 7) /* the last 30 bytes are padding */ MUT(hn = cut, "hostile.gguf", "truncated");
    /* find the offsets of things by searching */
    const uint8_t *p = memmem(good, n, "general.architecture", 20);
    size_t ktype = (size_t)(p - good) + 20;  /* value type of the first key */
    MUT(put32(h + ktype, 77), "unknown value type", "unknown value type");
    MUT(put64(h + ktype + 4, 1ull << 50), "past the end", "string value past the end");
    p = memmem(good, n, "general.alignment", 17);
    size_t aval = (size_t)(p - good) + 17 + 4;
    MUT(put32(h + aval, 3), "power of two", "alignment 3");
    MUT(put32(h + aval, 0), "power of two", "alignment 0");
    MUT(put32(h + aval - 4, GGUF_T_STRING), "past the end", "alignment as string");
    /* tensor infos: name 'a' then n_dims, ne..., type, offset */
    p = memmem(good, n, "\x01\0\0\0\0\0\0\0a", 9);
    size_t ta = (size_t)(p - good) + 9;
    MUT(put32(h + ta, 5), "dimensions", "5 dims");
    MUT(put32(h + ta, 0), "dimensions", "0 dims");
    MUT(put64(h + ta + 4, 1ull << 62), "", "huge ne");
    MUT((put64(h + ta + 4, 1ull << 40), put64(h + ta + 12, 1ull << 40)), "overflows", "ne product overflow");
    MUT(put32(h + ta + 20, 77), "unknown GGML type", "unknown type");
    MUT(put32(h + ta + 20, GGML_T_Q8_0), "multiple of the Q8_0 block", "ne[0] not a block multiple");
    MUT(put64(h + ta + 24, 8), "alignment", "misaligned offset");
    MUT(put64(h + ta + 24, 1ull << 40), "past the end of the data", "offset past the end");
    MUT(put64(h + ta + 24, 32), "overlap", "overlapping tensors");
    p = memmem(good, n, "\x01\0\0\0\0\0\0\0b", 9);
    size_t tb = (size_t)(p - good) + 9;
    MUT((memcpy(h + tb - 1, "a", 1)), "duplicate tensor", "duplicate tensor name");
    MUT(put64(h + tb + 12, 3), "past the end of the data", "tensor data past the end");
    MUT(hn = n - 31, "past the end of the data", "data section truncated");
    /* an array: nested, huge, unknown element type */
    {
        ds3_gguf_writer *w = ds3_gguf_writer_new();
        int32_t v[3] = {1, 2, 3};
        ds3_gguf_w_arr_i32(w, "arr", v, 3);
        char err[DS3_ERR_LEN];
        ds3_gguf_writer_write(w, "/tmp/ds3_test_arr.gguf", err, sizeof err);
        ds3_gguf_writer_free(w);
        size_t an;
        uint8_t *ag = slurp("/tmp/ds3_test_arr.gguf", &an), *ah = malloc(an);
        expect(ag, an, NULL, "array file");
        const size_t at = 24 + 8 + 3 + 4; /* array element type */
        memcpy(ah, ag, an); put32(ah + at, GGUF_T_ARRAY); expect(ah, an, "nested", "nested array");
        memcpy(ah, ag, an); put32(ah + at, 99); expect(ah, an, "unknown", "array of unknown type");
        memcpy(ah, ag, an); put64(ah + at + 4, 1ull << 61); expect(ah, an, "past the end", "huge array");
        memcpy(ah, ag, an); put32(ah + at, GGUF_T_STRING); put64(ah + at + 4, 1ull << 40); expect(ah, an, "does not fit", "huge string array");
        free(ag);
        free(ah);
    }
    free(h);
    free(good);
    /* model-level: a GGUF that is not deepseek2, and a deepseek2 file missing tensors */
    char err[DS3_ERR_LEN];
    ds3_model_params mp = ds3_model_default_params();
    ds3_model *m = ds3_model_load("/tmp/ds3_test_small.gguf", &mp, err, sizeof err);
    CHECK(!m && strstr(err, "general.architecture"), "non-deepseek2 GGUF: %s", err);
    ds3_model_free(m);
    m = ds3_model_load("/tmp/ds3_test_arr.gguf", &mp, err, sizeof err);
    CHECK(!m && strstr(err, "general.architecture"), "GGUF without architecture: %s", err);
    ds3_model_free(m);
}

/* ds3 convert's writer on the dev model: every tensor of dev-f32.gguf re-written and read back
 * bit-identically; the embedded tokenizer encodes and decodes. */
static void test_roundtrip_tokenizer(void) {
    char err[DS3_ERR_LEN];
    ds3_gguf *g = NULL;
    CHECK(ds3_gguf_open(FIX "dev-f32.gguf", 1, 0, &g, err, sizeof err) == 0, "%s", err);
    if (!g) return;
    ds3_gguf_writer *w = ds3_gguf_writer_new();
    for (int i = 0; i < ds3_gguf_n_tensors(g); i++) {
        ds3_gguf_tensor *t = ds3_gguf_tensor_at(g, i);
        ds3_gguf_w_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes, 0);
    }
    CHECK(ds3_gguf_writer_write(w, "/tmp/ds3_test_rt.gguf", err, sizeof err) == 0, "%s", err);
    ds3_gguf_writer_free(w);
    ds3_gguf *r = NULL;
    CHECK(ds3_gguf_open("/tmp/ds3_test_rt.gguf", 0, 0, &r, err, sizeof err) == 0, "%s", err);
    int same = 0;
    for (int i = 0; r && i < ds3_gguf_n_tensors(g); i++) {
        ds3_gguf_tensor *t = ds3_gguf_tensor_at(g, i), *u = ds3_gguf_find_tensor(r, t->name);
        same += u && u->nbytes == t->nbytes && u->type == t->type && !memcmp(u->ne, t->ne, sizeof t->ne) &&
                !memcmp(u->data, t->data, t->nbytes);
    }
    CHECK(same == ds3_gguf_n_tensors(g), "round trip: %d/%d tensors identical", same, ds3_gguf_n_tensors(g));
    ds3_gguf_close(r);
    ds3_gguf_close(g);
    struct ds3_tokenizer *tok = ds3_gguf_load_tokenizer(FIX "dev-q8_0.gguf", err, sizeof err);
    CHECK(tok != NULL, "embedded tokenizer: %s", err);
    if (tok) {
        const char *text = "hello world, the cat sat on the mat.";
        int32_t *ids = NULL;
        size_t n = 0;
        char *back = NULL;
        size_t bl = 0;
        CHECK(ds3_tokenizer_encode(tok, text, strlen(text), 0, 0, &ids, &n, err, sizeof err) == 0 && n > 3 && n < strlen(text),
              "encode: %zu ids (%s)", n, err);
        CHECK(ds3_tokenizer_decode(tok, ids, n, 0, &back, &bl, err, sizeof err) == 0 && bl == strlen(text) && !memcmp(back, text, bl),
              "decode round trip");
        CHECK(ds3_tokenizer_n_vocab(tok) == 1000, "vocab %d", ds3_tokenizer_n_vocab(tok));
        free(ids);
        free(back);
        ds3_tokenizer_free(tok);
    }
}

/* Q8_0x16 repacking at load: in place (--no-mmap) and copied out of a mapping give the same
 * bits; against the file's layout (no_repack) only the summation order differs. */
static void test_repack_paths(void) {
    const char *path = FIX "dev-q8_0.gguf";
    char err[DS3_ERR_LEN];
    float *lg[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++) {
        ds3_model_params mp = ds3_model_default_params();
        mp.use_mmap = k != 1;
        mp.no_repack = k == 2;
        ds3_model *m = ds3_model_load(path, &mp, err, sizeof err);
        CHECK(m != NULL, "%s: %s", path, err);
        if (!m) break;
        const int V = ds3_model_vocab_size(m);
        ds3_session_params sp = ds3_session_default_params();
        sp.n_threads = 2;
        sp.n_ctx = 64;
        ds3_session *s = ds3_session_new(m, &sp, err, sizeof err);
        lg[k] = malloc((size_t)n_toks * V * sizeof(float));
        CHECK(s && ds3_session_eval(s, toks, n_toks, lg[k], err, sizeof err) == 0, "eval: %s", err);
        ds3_session_free(s);
        if (k) {
            double md = 0;
            for (size_t i = 0; i < (size_t)n_toks * V; i++) md = fmax(md, fabs(lg[k][i] - lg[0][i]));
            if (k == 1) CHECK(md == 0, "q8_0: --no-mmap (repacked in place) differs from mmap (copied): %g", md);
            else CHECK(md < 1e-3, "q8_0: no_repack differs from repacked by %g", md);
        }
        ds3_model_free(m);
    }
    for (int k = 0; k < 3; k++) free(lg[k]);
}

int main(void) {
    TEST_BEGIN("test_gguf");
    ds3_kernels_init();
    const char *best = ds3_kernels_name();
    load_tokens();
    CHECK(n_toks == 48, "tokens48.json: %d tokens", n_toks);
    test_llamacpp("f32", 1e-3, 1.0);
    test_llamacpp("q8_0", 0.15, 0.9);
    test_repack_paths();
    test_hostile();
    test_roundtrip_tokenizer();
    ds3_kernels_set(best);
    return TEST_REPORT();
}
