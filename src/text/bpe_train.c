/* bpe_train.c -- byte-level BPE training (the classic Sennrich et al. / GPT-2 algorithm, as HF
 * tokenizers' BpeTrainer does it) with DeepSeek-V3's pre-tokenizer, writing a tokenizer.json.
 *
 * Words: the corpus is cut into pieces by the tokenizer's own pre-tokenizer (ds3_tokenizer_pretokenize
 * on a bootstrap tokenizer with DeepSeek-V3's Split rules), identical pieces are counted once.
 * Merges: repeatedly the most frequent adjacent pair (ties: smaller left id, then smaller right id),
 * kept in a lazily updated max-heap; every merge rewrites only the words that contain the pair
 * (pair -> word index lists), so the cost follows the number of affected words, not the corpus size.
 * Owned by the tokenizer maintainer (src/text/). */
#include "text/bpe_train.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer.h"
#include "text/utf8.h"
#include "util/common.h"

#define BOS_TEXT "<｜begin▁of▁sentence｜>"
#define EOS_TEXT "<｜end▁of▁sentence｜>"
#define FIRST_BYTE_ID 2
#define FIRST_MERGE_ID 258

/* DeepSeek-V3's pre-tokenizer regexes, exactly as in its tokenizer.json (after JSON unescaping;
 * \r and \n are the control characters). test_tokenizer checks this against the fixture. */
static const char *const DSV3_SPLITS[3] = {
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
     "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"),
};

ds3_bpe_train_params ds3_bpe_train_default_params(void) {
    ds3_bpe_train_params p = {.vocab_size = 8192, .min_frequency = 2, .verbose = 0};
    return p;
}

size_t ds3_corpus_split_offset(const unsigned char *buf, size_t size) {
    size_t s = size / 10 * 9 + (size % 10) * 9 / 10; /* floor(size * 9 / 10) without overflow */
    while (s < size && (buf[s] & 0xC0) == 0x80) s++;
    return s;
}

static json_t *pretok_json(void) {
    json_t *seq = json_array();
    for (int i = 0; i < 3; i++)
        json_array_append_new(seq, json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
                                             DSV3_SPLITS[i], "behavior", "Isolated", "invert", 0));
    json_array_append_new(seq, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                                         "trim_offsets", 1, "use_regex", 0));
    return json_pack("{s:s, s:o}", "type", "Sequence", "pretokenizers", seq);
}

/* ---- small containers ------------------------------------------------------------------- */

typedef struct {
    int32_t *v;
    int32_t n, cap;
} ivec;

static int ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        int32_t nc = a->cap ? a->cap * 2 : 4;
        int32_t *nv = realloc(a->v, (size_t)nc * sizeof *nv);
        if (!nv) return -1;
        a->v = nv, a->cap = nc;
    }
    a->v[a->n++] = x;
    return 0;
}

static inline uint64_t mix(uint64_t x) {
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    x ^= x >> 33;
    return x;
}

static uint64_t hbytes(const unsigned char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return mix(h);
}

typedef struct {
    /* words */
    unsigned char *wbytes; /* piece bytes arena */
    size_t wb_len, wb_cap;
    size_t *w_off; /* into wbytes */
    int32_t *w_len;
    int64_t *w_cnt;
    int32_t *w_sym0; /* offset into sym */
    int32_t *w_nsym;
    uint32_t *w_stamp;
    size_t n_words, cap_words;
    int32_t *wslot; /* hash of words: index or -1 */
    size_t wmask;
    int32_t *sym;
    /* pairs */
    uint64_t *p_key;
    int32_t *p_slot; /* hash slot -> pair index */
    size_t pmask;
    int64_t *p_cnt;
    ivec *p_where;
    uint32_t *p_stamp;
    size_t n_pairs, cap_pairs;
    /* heap of (count, pair key) */
    struct he { int64_t cnt; uint64_t key; } *heap;
    size_t hn, hcap;
    int oom;
} trainer;

static int word_add(trainer *T, const unsigned char *s, size_t n) {
    if ((T->n_words + 1) * 2 > T->wmask + 1) { /* grow the word hash */
        size_t nm = (T->wmask + 1) * 2;
        int32_t *ns = malloc(nm * sizeof *ns);
        if (!ns) return -1;
        memset(ns, 0xff, nm * sizeof *ns);
        for (size_t w = 0; w < T->n_words; w++) {
            size_t i = hbytes(T->wbytes + T->w_off[w], (size_t)T->w_len[w]) & (nm - 1);
            while (ns[i] >= 0) i = (i + 1) & (nm - 1);
            ns[i] = (int32_t)w;
        }
        free(T->wslot);
        T->wslot = ns, T->wmask = nm - 1;
    }
    size_t i = hbytes(s, n) & T->wmask;
    while (T->wslot[i] >= 0) {
        int32_t w = T->wslot[i];
        if ((size_t)T->w_len[w] == n && memcmp(T->wbytes + T->w_off[w], s, n) == 0) {
            T->w_cnt[w]++;
            return 0;
        }
        i = (i + 1) & T->wmask;
    }
    if (T->n_words == T->cap_words) {
        size_t nc = T->cap_words ? T->cap_words * 2 : 1024;
        size_t *no = realloc(T->w_off, nc * sizeof *no);
        if (!no) return -1;
        T->w_off = no;
        int32_t *nl = realloc(T->w_len, nc * sizeof *nl);
        if (!nl) return -1;
        T->w_len = nl;
        int64_t *ncnt = realloc(T->w_cnt, nc * sizeof *ncnt);
        if (!ncnt) return -1;
        T->w_cnt = ncnt;
        T->cap_words = nc;
    }
    if (T->wb_len + n > T->wb_cap) {
        size_t nc = T->wb_cap ? T->wb_cap * 2 : 1 << 16;
        while (nc < T->wb_len + n) nc *= 2;
        unsigned char *nb = realloc(T->wbytes, nc);
        if (!nb) return -1;
        T->wbytes = nb, T->wb_cap = nc;
    }
    if (n > INT32_MAX) return -1;
    memcpy(T->wbytes + T->wb_len, s, n);
    size_t w = T->n_words++;
    T->w_off[w] = T->wb_len, T->w_len[w] = (int32_t)n, T->w_cnt[w] = 1;
    T->wb_len += n;
    T->wslot[i] = (int32_t)w;
    return 0;
}

static int on_piece(void *ctx, const char *piece, size_t len) {
    return word_add(ctx, (const unsigned char *)piece, len) ? DS3_ERR_NOMEM : 0;
}

/* Pair index for (a, b), created with count 0 when absent (create=1); -1 when absent or OOM. */
static int32_t pair_get(trainer *T, int32_t a, int32_t b, int create) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = mix(k) & T->pmask;
    while (T->p_slot[i] >= 0) {
        if (T->p_key[T->p_slot[i]] == k) return T->p_slot[i];
        i = (i + 1) & T->pmask;
    }
    if (!create) return -1;
    if (T->n_pairs == T->cap_pairs) {
        size_t nc = T->cap_pairs * 2;
        uint64_t *nk = realloc(T->p_key, nc * sizeof *nk);
        if (!nk) return T->oom = 1, -1;
        T->p_key = nk;
        int64_t *ncnt = realloc(T->p_cnt, nc * sizeof *ncnt);
        if (!ncnt) return T->oom = 1, -1;
        T->p_cnt = ncnt;
        ivec *nw = realloc(T->p_where, nc * sizeof *nw);
        if (!nw) return T->oom = 1, -1;
        T->p_where = nw;
        uint32_t *nst = realloc(T->p_stamp, nc * sizeof *nst);
        if (!nst) return T->oom = 1, -1;
        T->p_stamp = nst;
        T->cap_pairs = nc;
    }
    int32_t p = (int32_t)T->n_pairs++;
    T->p_key[p] = k, T->p_cnt[p] = 0, T->p_stamp[p] = 0;
    memset(&T->p_where[p], 0, sizeof(ivec));
    T->p_slot[i] = p;
    if (T->n_pairs * 2 > T->pmask + 1) { /* rehash */
        size_t nm = (T->pmask + 1) * 2;
        int32_t *ns = malloc(nm * sizeof *ns);
        if (!ns) return T->oom = 1, -1;
        memset(ns, 0xff, nm * sizeof *ns);
        for (size_t q = 0; q < T->n_pairs; q++) {
            size_t j = mix(T->p_key[q]) & (nm - 1);
            while (ns[j] >= 0) j = (j + 1) & (nm - 1);
            ns[j] = (int32_t)q;
        }
        free(T->p_slot);
        T->p_slot = ns, T->pmask = nm - 1;
    }
    return p;
}

static inline int he_less(const struct he *x, const struct he *y) { /* x has lower priority than y */
    if (x->cnt != y->cnt) return x->cnt < y->cnt;
    return x->key > y->key; /* smaller (left, right) ids win ties */
}

static void heap_push(trainer *T, int64_t cnt, uint64_t key) {
    if (T->hn == T->hcap) {
        size_t nc = T->hcap ? T->hcap * 2 : 1024;
        struct he *nh = realloc(T->heap, nc * sizeof *nh);
        if (!nh) {
            T->oom = 1;
            return;
        }
        T->heap = nh, T->hcap = nc;
    }
    struct he e = {cnt, key};
    size_t i = T->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!he_less(&T->heap[p], &e)) break;
        T->heap[i] = T->heap[p];
        i = p;
    }
    T->heap[i] = e;
}

static struct he heap_pop(trainer *T) {
    struct he top = T->heap[0], last = T->heap[--T->hn];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= T->hn) break;
        if (c + 1 < T->hn && he_less(&T->heap[c], &T->heap[c + 1])) c++;
        if (!he_less(&last, &T->heap[c])) break;
        T->heap[i] = T->heap[c];
        i = c;
    }
    if (T->hn) T->heap[i] = last;
    return top;
}

static void word_pairs(trainer *T, int32_t w, int sign, int32_t new_id, uint32_t stamp, ivec *touched) {
    const int32_t *s = T->sym + T->w_sym0[w];
    for (int32_t i = 0; i + 1 < T->w_nsym[w]; i++) {
        int32_t p = pair_get(T, s[i], s[i + 1], sign > 0);
        if (p < 0) continue;
        T->p_cnt[p] += sign * T->w_cnt[w];
        if (sign > 0 && (s[i] == new_id || s[i + 1] == new_id)) {
            if (T->p_where[p].n == 0 || T->p_where[p].v[T->p_where[p].n - 1] != w)
                if (ivec_push(&T->p_where[p], w)) T->oom = 1;
            if (T->p_stamp[p] != stamp) {
                T->p_stamp[p] = stamp;
                if (ivec_push(touched, p)) T->oom = 1;
            }
        }
    }
}

static void trainer_free(trainer *T) {
    free(T->wbytes), free(T->w_off), free(T->w_len), free(T->w_cnt), free(T->w_sym0), free(T->w_nsym);
    free(T->w_stamp), free(T->wslot), free(T->sym);
    for (size_t p = 0; p < T->n_pairs; p++) free(T->p_where[p].v);
    free(T->p_key), free(T->p_slot), free(T->p_cnt), free(T->p_where), free(T->p_stamp), free(T->heap);
}

/* The token string (byte-level alphabet) of a byte string. */
static char *bl_string(const unsigned char *b, size_t n) {
    char *s = malloc(n * 2 + 1);
    if (!s) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += (size_t)ds3_utf8_put(ds3_bytelevel_char(b[i]), s + o);
    s[o] = 0;
    return s;
}

int ds3_bpe_train(const char *const *texts, const size_t *lens, size_t n_texts, const ds3_bpe_train_params *p,
                  char **json_out, size_t *json_len, int *n_merges_out, char *err, size_t errlen) {
    *json_out = NULL, *json_len = 0;
    if (p->vocab_size < FIRST_MERGE_ID || p->vocab_size > (1 << 22))
        return ds3_seterr(err, errlen, DS3_ERR_ARG, "tokenizer-train: vocab size %d out of range [%d, %d]",
                          p->vocab_size, FIRST_MERGE_ID, 1 << 22);
    int rc = 0;
    trainer T;
    memset(&T, 0, sizeof T);
    json_t *vocab = NULL, *merges = NULL, *root = NULL;
    unsigned char *tb = NULL; /* token bytes arena */
    size_t *t_off = NULL, *t_len = NULL;
    ds3_tokenizer *pt = NULL;
#define OOM() do { rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "tokenizer-train: out of memory"); goto done; } while (0)

    /* 1. A bootstrap tokenizer with just the pre-tokenizer and the byte vocab. */
    {
        json_t *bv = json_object();
        for (int b = 0; b < 256; b++) {
            char s[5];
            s[ds3_utf8_put(ds3_bytelevel_char((unsigned char)b), s)] = 0;
            json_object_set_new(bv, s, json_integer(b));
        }
        json_t *boot = json_pack("{s:o, s:o, s:{s:s, s:o, s:[]}}", "pre_tokenizer", pretok_json(), "decoder",
                                 json_pack("{s:s}", "type", "ByteLevel"), "model", "type", "BPE", "vocab", bv,
                                 "merges");
        char *bj = boot ? json_dumps(boot, JSON_COMPACT) : NULL;
        json_decref(boot);
        if (!bj) OOM();
        pt = ds3_tokenizer_load_mem(bj, strlen(bj), NULL, 0, "tokenizer-train (bootstrap)", err, errlen);
        free(bj);
        if (!pt) {
            rc = DS3_ERR_FORMAT;
            goto done;
        }
    }
    /* 2. Count the pieces. */
    T.wmask = 1023;
    T.wslot = malloc(1024 * sizeof *T.wslot);
    if (!T.wslot) OOM();
    memset(T.wslot, 0xff, 1024 * sizeof *T.wslot);
    for (size_t i = 0; i < n_texts; i++) {
        rc = ds3_tokenizer_pretokenize(pt, texts[i], lens[i], on_piece, &T, err, errlen);
        if (rc) goto done;
    }
    if (p->verbose) fprintf(stderr, "tokenizer-train: %zu distinct pieces\n", T.n_words);
    /* 3. Symbols: one per byte, ids FIRST_BYTE_ID + byte. */
    T.w_sym0 = malloc((T.n_words + 1) * sizeof *T.w_sym0);
    T.w_nsym = malloc((T.n_words + 1) * sizeof *T.w_nsym);
    T.w_stamp = calloc(T.n_words + 1, sizeof *T.w_stamp);
    T.sym = malloc((T.wb_len + 1) * sizeof *T.sym);
    if (!T.w_sym0 || !T.w_nsym || !T.w_stamp || !T.sym) OOM();
    if (T.wb_len > INT32_MAX) {
        rc = ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "tokenizer-train: corpus has over 2 GB of distinct pieces");
        goto done;
    }
    for (size_t w = 0; w < T.n_words; w++) {
        T.w_sym0[w] = (int32_t)T.w_off[w];
        T.w_nsym[w] = T.w_len[w];
        for (int32_t i = 0; i < T.w_len[w]; i++) T.sym[T.w_off[w] + (size_t)i] = FIRST_BYTE_ID + T.wbytes[T.w_off[w] + (size_t)i];
    }
    T.cap_pairs = 1024;
    T.pmask = 2047;
    T.p_key = malloc(T.cap_pairs * sizeof *T.p_key);
    T.p_cnt = malloc(T.cap_pairs * sizeof *T.p_cnt);
    T.p_where = malloc(T.cap_pairs * sizeof *T.p_where);
    T.p_stamp = malloc(T.cap_pairs * sizeof *T.p_stamp);
    T.p_slot = malloc((T.pmask + 1) * sizeof *T.p_slot);
    if (!T.p_key || !T.p_cnt || !T.p_where || !T.p_stamp || !T.p_slot) OOM();
    memset(T.p_slot, 0xff, (T.pmask + 1) * sizeof *T.p_slot);
    for (size_t w = 0; w < T.n_words; w++) {
        const int32_t *s = T.sym + T.w_sym0[w];
        for (int32_t i = 0; i + 1 < T.w_nsym[w]; i++) {
            int32_t q = pair_get(&T, s[i], s[i + 1], 1);
            if (q < 0) OOM();
            T.p_cnt[q] += T.w_cnt[w];
            ivec *wh = &T.p_where[q];
            if ((wh->n == 0 || wh->v[wh->n - 1] != (int32_t)w) && ivec_push(wh, (int32_t)w)) OOM();
        }
    }
    for (size_t q = 0; q < T.n_pairs; q++) heap_push(&T, T.p_cnt[q], T.p_key[q]);
    if (T.oom) OOM();

    /* Token bytes, for the merged strings. */
    size_t n_tok_max = (size_t)p->vocab_size;
    t_off = calloc(n_tok_max, sizeof *t_off);
    t_len = calloc(n_tok_max, sizeof *t_len);
    size_t tb_cap = 1 << 16, tb_len = 0;
    tb = malloc(tb_cap);
    if (!t_off || !t_len || !tb) OOM();
    for (int b = 0; b < 256; b++) {
        tb[tb_len] = (unsigned char)b;
        t_off[FIRST_BYTE_ID + b] = tb_len++, t_len[FIRST_BYTE_ID + b] = 1;
    }
    merges = json_array();
    if (!merges) OOM();

    /* 4. Merge loop. */
    int32_t next_id = FIRST_MERGE_ID;
    uint32_t stamp = 0;
    ivec touched = {0};
    while (next_id < p->vocab_size && T.hn) {
        struct he top = heap_pop(&T);
        int32_t a = (int32_t)(top.key >> 32), b = (int32_t)(uint32_t)top.key;
        int32_t q = pair_get(&T, a, b, 0);
        if (q < 0) continue;
        if (T.p_cnt[q] != top.cnt) { /* stale entry: requeue with the current count */
            if (T.p_cnt[q] > 0) heap_push(&T, T.p_cnt[q], top.key);
            continue;
        }
        if (top.cnt < (p->min_frequency > 1 ? p->min_frequency : 1)) break;
        int32_t nid = next_id++;
        /* token bytes */
        size_t nl = t_len[a] + t_len[b];
        if (tb_len + nl > tb_cap) {
            while (tb_len + nl > tb_cap) tb_cap *= 2;
            unsigned char *ntb = realloc(tb, tb_cap);
            if (!ntb) OOM();
            tb = ntb;
        }
        memcpy(tb + tb_len, tb + t_off[a], t_len[a]);
        memcpy(tb + tb_len + t_len[a], tb + t_off[b], t_len[b]);
        t_off[nid] = tb_len, t_len[nid] = nl, tb_len += nl;
        char *sa = bl_string(tb + t_off[a], t_len[a]), *sb = bl_string(tb + t_off[b], t_len[b]);
        json_t *m = (sa && sb) ? json_pack("[s, s]", sa, sb) : NULL;
        free(sa), free(sb);
        if (!m || json_array_append_new(merges, m)) OOM();
        /* rewrite the words that contain (a, b) */
        stamp++;
        touched.n = 0;
        ivec where = T.p_where[q];
        memset(&T.p_where[q], 0, sizeof(ivec));
        for (int32_t k = 0; k < where.n; k++) {
            int32_t w = where.v[k];
            if (T.w_stamp[w] == stamp) continue;
            T.w_stamp[w] = stamp;
            int32_t *s = T.sym + T.w_sym0[w], n = T.w_nsym[w], found = 0;
            for (int32_t i = 0; i + 1 < n; i++)
                if (s[i] == a && s[i + 1] == b) {
                    found = 1;
                    break;
                }
            if (!found) continue;
            word_pairs(&T, w, -1, nid, stamp, &touched);
            int32_t o = 0;
            for (int32_t i = 0; i < n;) {
                if (i + 1 < n && s[i] == a && s[i + 1] == b) s[o++] = nid, i += 2;
                else s[o++] = s[i++];
            }
            T.w_nsym[w] = o;
            word_pairs(&T, w, +1, nid, stamp, &touched);
        }
        free(where.v);
        for (int32_t k = 0; k < touched.n; k++)
            if (T.p_cnt[touched.v[k]] > 0) heap_push(&T, T.p_cnt[touched.v[k]], T.p_key[touched.v[k]]);
        if (T.oom) {
            free(touched.v);
            OOM();
        }
        if (p->verbose && (nid % 1000 == 0))
            fprintf(stderr, "tokenizer-train: %d tokens, last merge count %lld\n", nid + 1, (long long)top.cnt);
    }
    free(touched.v);
    if (n_merges_out) *n_merges_out = next_id - FIRST_MERGE_ID;

    /* 5. The tokenizer.json. */
    vocab = json_object();
    if (!vocab) OOM();
    json_object_set_new(vocab, BOS_TEXT, json_integer(0));
    json_object_set_new(vocab, EOS_TEXT, json_integer(1));
    for (int32_t id = FIRST_BYTE_ID; id < next_id; id++) {
        char *s = bl_string(tb + t_off[id], t_len[id]);
        if (!s) OOM();
        json_object_set_new(vocab, s, json_integer(id));
        free(s);
    }
    json_t *added = json_pack("[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}, {s:i, s:s, s:b, s:b, s:b, s:b, s:b}]", "id", 0,
                              "content", BOS_TEXT, "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                              "special", 1, "id", 1, "content", EOS_TEXT, "single_word", 0, "lstrip", 0, "rstrip", 0,
                              "normalized", 0, "special", 1);
    json_t *post = json_pack(
        "{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}, "
        "{s:{s:s, s:i}}], s:{s:{s:s, s:[i], s:[s]}}}",
        "type", "TemplateProcessing", "single", "SpecialToken", "id", BOS_TEXT, "type_id", 0, "Sequence", "id", "A",
        "type_id", 0, "pair", "SpecialToken", "id", BOS_TEXT, "type_id", 0, "Sequence", "id", "A", "type_id", 0,
        "SpecialToken", "id", BOS_TEXT, "type_id", 1, "Sequence", "id", "B", "type_id", 1, "special_tokens", BOS_TEXT,
        "id", BOS_TEXT, "ids", 0, "tokens", BOS_TEXT);
    json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:O, s:O}", "type", "BPE", "dropout",
                              "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0,
                              "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab, "merges", merges);
    root = json_pack("{s:s, s:n, s:n, s:o, s:n, s:o, s:o, s:{s:s, s:b, s:b, s:b}, s:o}", "version", "1.0",
                     "truncation", "padding", "added_tokens", added, "normalizer", "pre_tokenizer", pretok_json(),
                     "post_processor", post, "decoder", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1,
                     "use_regex", 1, "model", model);
    if (!root) OOM();
    *json_out = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    if (!*json_out) OOM();
    *json_len = strlen(*json_out);
done:
#undef OOM
    json_decref(root), json_decref(vocab), json_decref(merges);
    free(tb), free(t_off), free(t_len);
    trainer_free(&T);
    ds3_tokenizer_free(pt);
    return rc;
}
