/* tokenizer.c -- Hugging Face tokenizer.json, byte-level BPE kind (DeepSeek-V3, GPT-2, Llama 3,
 * Qwen 2 styles): loading and validation, added-token matching, the pre-tokenizer regexes (run by
 * PCRE2 with UTF+UCP+JIT after translating Oniguruma-only semantics), ByteLevel, BPE merges by rank,
 * post-processor / tokenizer_config BOS-EOS handling, decoding and a streaming decoder.
 *
 * Reference: HF tokenizers 0.23 (Rust) behaviour, as pinned by tests/fixtures/tokenizer/vectors-*.json;
 * docs/tokenizer.md describes the supported subset, the regex translation and the invalid-UTF-8 rule.
 * Owned by the tokenizer maintainer (src/text/). The tokenizer owns all of its tables; per-call
 * scratch (regex match data, BPE buffers, the piece cache) lives in workspaces lent out per call. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/tokenizer.h"

#include <jansson.h>
#include <limits.h>
#include <pcre2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/utf8.h"
#include "util/common.h"

#define MAX_STEPS 16         /* pre-tokenizer steps after flattening Sequences */
#define MAX_FILE (1u << 30)  /* tokenizer.json size limit */
#define MAX_IDS (1 << 24)    /* ids must be below this */
#define N_WS 8               /* workspaces kept for reuse (one per concurrently encoding thread) */
#define SCAN_MAX 48          /* pieces up to this many symbols merge by linear scan, longer ones by heap */
#define CACHE_KEY_MAX 128    /* pieces longer than this are not cached */
#define CACHE_SLOTS (1 << 16)
#define CACHE_ARENA (4u << 20)

enum { TF_PRESENT = 1, TF_VOCAB = 2, TF_ADDED = 4, TF_SPECIAL = 8 };
enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };

typedef struct {
    uint32_t str_off, str_len; /* token string as in tokenizer.json */
    uint32_t dec_off, dec_len; /* bytes it decodes to */
    uint8_t flags;
} tokinfo;

typedef struct {
    int32_t id;
    uint8_t special, lstrip, rstrip, single_word, normalized;
} added_tok;

typedef struct {
    int is_split;       /* 1: regex split; 0: ByteLevel without regex (just a marker) */
    pcre2_code *re;
    int jit;
    int behavior, invert;
    int prefix_space;   /* ByteLevel add_prefix_space */
} pt_step;

/* Open-addressing map from a 64-bit key to two int32 values. */
typedef struct {
    uint64_t *keys;
    int32_t *v1, *v2;
    size_t mask, n;
} u64map;
#define U64_EMPTY UINT64_MAX

/* Open-addressing map from a byte string to an id; keys live in the tokinfo blobs. */
typedef struct {
    int32_t *slot; /* id, -1 empty */
    uint32_t *hash;
    size_t mask;
    int use_dec; /* key = decoded bytes instead of token string */
} strmap;

typedef struct cache_slot {
    uint64_t h;
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;
} cache_slot;

typedef struct ws {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    size_t *split[MAX_STEPS];
    size_t split_cap[MAX_STEPS];
    char *pref[MAX_STEPS];
    size_t pref_cap[MAX_STEPS];
    int32_t *out;
    size_t n_out, cap_out;
    /* BPE scratch */
    int32_t *sym, *rk, *mid, *prev, *next;
    struct hent { int32_t rank, pos; } *heap;
    size_t sym_cap;
    /* cache */
    cache_slot *cslot;
    unsigned char *arena;
    size_t arena_used, n_cached;
    int err; /* status of the failing step */
    char errmsg[256];
} ws;

struct ds3_tokenizer {
    char *name;
    int n_ids;
    tokinfo *tok;
    char *blob;
    size_t blob_len, blob_cap;
    strmap by_str;
    strmap by_dec; /* only for ignore_merges */
    u64map merges;
    int32_t byte_id[256];
    int32_t unk_id;
    int ignore_merges;
    /* added tokens */
    added_tok *added;
    int n_added;
    u64map trie; /* (node << 8 | byte) -> child */
    int32_t *trie_term; /* node -> added index or -1 */
    int n_nodes, trie_cap;
    uint8_t first_byte[2][256];
    int has_trie[2];
    /* pre-tokenizer */
    pt_step steps[MAX_STEPS];
    int n_steps;
    int has_bytelevel;
    /* post-processing */
    int32_t prefix[4], suffix[4];
    int n_prefix, n_suffix;
    int32_t bos, eos;
    char *bos_text, *eos_text, *chat_template;
    _Atomic(ws *) pool[N_WS];
};

static const char WS_CLASS[] = "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

/* ---- byte-level alphabet (GPT-2 bytes_to_unicode) ------------------------------------------ */

static uint32_t bl_char[256];
static int16_t bl_byte[324]; /* code point -> byte, -1 */
static atomic_int bl_ready;

static void bl_init(void) {
    if (atomic_load(&bl_ready)) return;
    int n = 0;
    uint32_t tab[256];
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        tab[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
    int16_t inv[324];
    for (int i = 0; i < 324; i++) inv[i] = -1;
    for (int b = 0; b < 256; b++) inv[tab[b]] = (int16_t)b;
    /* Idempotent: every thread computes the same tables. */
    memcpy(bl_char, tab, sizeof tab);
    memcpy(bl_byte, inv, sizeof inv);
    atomic_store(&bl_ready, 1);
}

uint32_t ds3_bytelevel_char(unsigned char b) {
    bl_init();
    return bl_char[b];
}

/* ---- hashing and maps ------------------------------------------------------------------- */

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0x100000001b3ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ mix64(w)) * 0x9fb21c651e98df25ull;
        s += 8, n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ mix64(w ^ ((uint64_t)n << 56))) * 0x9fb21c651e98df25ull;
    return mix64(h);
}

static int u64map_init(u64map *m, size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    m->keys = malloc(cap * sizeof *m->keys);
    m->v1 = malloc(cap * sizeof *m->v1);
    m->v2 = malloc(cap * sizeof *m->v2);
    if (!m->keys || !m->v1 || !m->v2) return -1;
    memset(m->keys, 0xff, cap * sizeof *m->keys);
    m->mask = cap - 1;
    m->n = 0;
    return 0;
}

static void u64map_free(u64map *m) {
    free(m->keys), free(m->v1), free(m->v2);
    memset(m, 0, sizeof *m);
}

static inline size_t u64map_find(const u64map *m, uint64_t k) {
    size_t i = (size_t)mix64(k) & m->mask;
    while (m->keys[i] != k && m->keys[i] != U64_EMPTY) i = (i + 1) & m->mask;
    return i;
}

static int u64map_grow(u64map *m) {
    u64map nm;
    if (u64map_init(&nm, (m->mask + 1)) != 0) return u64map_free(&nm), -1;
    for (size_t i = 0; i <= m->mask; i++)
        if (m->keys[i] != U64_EMPTY) {
            size_t j = u64map_find(&nm, m->keys[i]);
            nm.keys[j] = m->keys[i], nm.v1[j] = m->v1[i], nm.v2[j] = m->v2[i];
            nm.n++;
        }
    u64map_free(m);
    *m = nm;
    return 0;
}

/* Insert or overwrite. */
static int u64map_put(u64map *m, uint64_t k, int32_t a, int32_t b) {
    if ((m->n + 1) * 2 > m->mask + 1 && u64map_grow(m) != 0) return -1;
    size_t i = u64map_find(m, k);
    if (m->keys[i] == U64_EMPTY) m->keys[i] = k, m->n++;
    m->v1[i] = a, m->v2[i] = b;
    return 0;
}

static inline const char *tok_key(const ds3_tokenizer *t, const strmap *m, int32_t id, size_t *len) {
    const tokinfo *ti = &t->tok[id];
    if (m->use_dec) return *len = ti->dec_len, t->blob + ti->dec_off;
    return *len = ti->str_len, t->blob + ti->str_off;
}

static int strmap_init(strmap *m, size_t n, int use_dec) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    m->slot = malloc(cap * sizeof *m->slot);
    m->hash = malloc(cap * sizeof *m->hash);
    if (!m->slot || !m->hash) return -1;
    memset(m->slot, 0xff, cap * sizeof *m->slot);
    m->mask = cap - 1;
    m->use_dec = use_dec;
    return 0;
}

static void strmap_free(strmap *m) {
    free(m->slot), free(m->hash);
    memset(m, 0, sizeof *m);
}

static int32_t strmap_get(const ds3_tokenizer *t, const strmap *m, const char *s, size_t n) {
    if (!m->slot) return -1;
    uint64_t h = hash_bytes(s, n);
    size_t i = (size_t)h & m->mask;
    uint32_t h32 = (uint32_t)(h >> 32);
    while (m->slot[i] >= 0) {
        if (m->hash[i] == h32) {
            size_t kl;
            const char *k = tok_key(t, m, m->slot[i], &kl);
            if (kl == n && memcmp(k, s, n) == 0) return m->slot[i];
        }
        i = (i + 1) & m->mask;
    }
    return -1;
}

/* Insert id (its key must not be present yet; caller checked). Capacity is fixed at init. */
static void strmap_add(const ds3_tokenizer *t, strmap *m, int32_t id) {
    size_t n;
    const char *s = tok_key(t, m, id, &n);
    uint64_t h = hash_bytes(s, n);
    size_t i = (size_t)h & m->mask;
    while (m->slot[i] >= 0) i = (i + 1) & m->mask;
    m->slot[i] = id;
    m->hash[i] = (uint32_t)(h >> 32);
}

/* ---- loading helpers -------------------------------------------------------------------- */

static int blob_add(ds3_tokenizer *t, const char *s, size_t n, uint32_t *off) {
    if (t->blob_len + n + 1 > UINT32_MAX) return -1;
    if (t->blob_len + n + 1 > t->blob_cap) {
        size_t nc = t->blob_cap ? t->blob_cap * 2 : 1 << 20;
        while (nc < t->blob_len + n + 1) nc *= 2;
        char *nb = realloc(t->blob, nc);
        if (!nb) return -1;
        t->blob = nb, t->blob_cap = nc;
    }
    memcpy(t->blob + t->blob_len, s, n);
    *off = (uint32_t)t->blob_len;
    t->blob_len += n;
    t->blob[t->blob_len++] = 0; /* keeps every token string NUL-terminated for callers */
    return 0;
}

/* Bytes a token string decodes to through the ByteLevel decoder: the inverse byte map when every
 * character is in the alphabet, else the string's own UTF-8 (HF's ByteLevel::decode_chain). */
static size_t bytelevel_decode_str(const char *s, size_t n, char *out) {
    size_t o = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        int l = ds3_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (!l || cp >= 324 || bl_byte[cp] < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[o++] = (char)bl_byte[cp];
        i += (size_t)l;
    }
    return o;
}

static const char *jstr(json_t *j, size_t *len) {
    if (!json_is_string(j)) return NULL;
    if (len) *len = json_string_length(j);
    return json_string_value(j);
}

/* A string token field of tokenizer_config: "text" or {"content": "text"}. */
static char *config_token_text(json_t *j) {
    if (json_is_object(j)) j = json_object_get(j, "content");
    size_t n;
    const char *s = jstr(j, &n);
    if (!s) return NULL;
    char *r = malloc(n + 1);
    if (r) memcpy(r, s, n), r[n] = 0;
    return r;
}

/* Translate an Oniguruma (Ruby syntax) regex as HF tokenizers runs it into PCRE2 syntax where
 * their Unicode semantics differ:
 *   \s / \S  -> Unicode White_Space (PCRE2's UCP \s also matches U+180E);
 *   \h / \H  -> hex digit (Oniguruma), not horizontal space (PCRE2);
 *   \w / \W  -> Letter | Mark | Decimal_Number | Connector_Punctuation (Oniguruma's Unicode \w).
 * Everything else is copied: \p{..} classes, lookarounds, (?i) etc. mean the same in both. */
char *ds3_tokenizer_translate_regex(const char *src, size_t n, size_t *out_len) {
    size_t cap = n * 4 + 64 + 200, o = 0;
    /* Worst case growth per source byte is bounded by the longest replacement below. */
    size_t need = n * (sizeof WS_CLASS + 16) + 16;
    if (need > cap) cap = need;
    char *out = malloc(cap);
    if (!out) return NULL;
    int in_class = 0;
#define EMIT(str) (memcpy(out + o, (str), strlen(str)), o += strlen(str))
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '\\' && i + 1 < n) {
            char e = src[i + 1];
            i++;
            switch (e) {
            case 's':
                if (in_class) EMIT(WS_CLASS);
                else EMIT("["), EMIT(WS_CLASS), EMIT("]");
                continue;
            case 'S':
                /* Inside a class: complement of PCRE2's \s (which has U+180E) plus U+180E. */
                if (in_class) EMIT("\\P{Xsp}\\x{180E}");
                else EMIT("[^"), EMIT(WS_CLASS), EMIT("]");
                continue;
            case 'h':
                if (in_class) EMIT("0-9a-fA-F");
                else EMIT("[0-9a-fA-F]");
                continue;
            case 'H':
                if (in_class) EMIT("\\x{0}-\\x{2F}\\x{3A}-\\x{40}\\x{47}-\\x{60}\\x{67}-\\x{10FFFF}");
                else EMIT("[^0-9a-fA-F]");
                continue;
            case 'w':
                if (in_class) EMIT("\\p{L}\\p{M}\\p{Nd}\\p{Pc}");
                else EMIT("[\\p{L}\\p{M}\\p{Nd}\\p{Pc}]");
                continue;
            case 'W':
                if (!in_class) {
                    EMIT("[^\\p{L}\\p{M}\\p{Nd}\\p{Pc}]");
                    continue;
                }
                break;
            default:
                break;
            }
            out[o++] = '\\';
            out[o++] = e;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            out[o++] = c;
            /* A ']' right after '[' or '[^' is a literal member. */
            if (i + 1 < n && src[i + 1] == '^') out[o++] = src[++i];
            if (i + 1 < n && src[i + 1] == ']') out[o++] = src[++i];
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && src[i + 1] == ':') {
            /* POSIX [:name:] inside a class: copy through its closing ":]". */
            const char *end = NULL;
            for (size_t k = i + 2; k + 1 < n; k++)
                if (src[k] == ':' && src[k + 1] == ']') {
                    end = src + k + 2;
                    break;
                }
            if (end) {
                size_t l = (size_t)(end - (src + i));
                memcpy(out + o, src + i, l);
                o += l;
                i += l - 1;
                continue;
            }
        }
        if (in_class && c == ']') in_class = 0;
        out[o++] = c;
    }
#undef EMIT
    out[o] = 0;
    *out_len = o;
    return out;
}

static int compile_regex(ds3_tokenizer *t, pt_step *st, const char *pat, size_t n, int literal, const char *field,
                         char *err, size_t errlen) {
    size_t tl = n;
    char *tp = NULL;
    if (!literal) {
        tp = ds3_tokenizer_translate_regex(pat, n, &tl);
        if (!tp) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: %s: out of memory", t->name, field);
    }
    int ec;
    PCRE2_SIZE eo;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
    if (literal) opts |= PCRE2_LITERAL;
    else opts |= PCRE2_MULTILINE;
    if (!ds3_utf8_valid((const unsigned char *)pat, n)) {
        free(tp);
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s: pattern is not valid UTF-8", t->name, field);
    }
    st->re = pcre2_compile((PCRE2_SPTR)(literal ? pat : tp), literal ? n : tl, opts, &ec, &eo, NULL);
    free(tp);
    if (!st->re) {
        PCRE2_UCHAR msg[200];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s: PCRE2 rejects the regex '%.80s': %s", t->name, field,
                          pat, (const char *)msg);
    }
    st->jit = pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE) == 0;
    st->is_split = 1;
    return 0;
}

static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int parse_pretok(ds3_tokenizer *t, json_t *j, const char *field, char *err, size_t errlen) {
    if (json_is_null(j)) return 0;
    if (!json_is_object(j)) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s: not an object", t->name, field);
    const char *type = jstr(json_object_get(j, "type"), NULL);
    if (!type) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s.type: missing", t->name, field);
    char sub[256];
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "pretokenizers");
        if (!json_is_array(arr))
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s.pretokenizers: not an array", t->name, field);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", field, i);
            int rc = parse_pretok(t, json_array_get(arr, i), sub, err, errlen);
            if (rc) return rc;
        }
        return 0;
    }
    if (t->n_steps >= MAX_STEPS)
        return ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: %s: more than %d pre-tokenizer steps", t->name, field,
                          MAX_STEPS);
    pt_step *st = &t->steps[t->n_steps];
    memset(st, 0, sizeof *st);
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(j, "pattern");
        json_t *rx = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
        size_t pn;
        const char *ps = jstr(rx ? rx : lit, &pn);
        snprintf(sub, sizeof sub, "%s.pattern.%s", field, rx ? "Regex" : "String");
        if (!ps) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s.pattern: needs Regex or String", t->name, field);
        const char *beh = jstr(json_object_get(j, "behavior"), NULL);
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        st->behavior = -1;
        for (int b = 0; b < 5 && beh; b++)
            if (!strcmp(beh, names[b])) st->behavior = b;
        if (st->behavior < 0)
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s.behavior: unknown '%s'", t->name, field,
                              beh ? beh : "(missing)");
        st->invert = json_is_true(json_object_get(j, "invert"));
        int rc = compile_regex(t, st, ps, pn, rx == NULL, sub, err, errlen);
        if (rc) return rc;
    } else if (!strcmp(type, "ByteLevel")) {
        json_t *ur = json_object_get(j, "use_regex");
        st->prefix_space = json_is_true(json_object_get(j, "add_prefix_space"));
        if (ur == NULL || json_is_true(ur)) {
            snprintf(sub, sizeof sub, "%s (ByteLevel regex)", field);
            int rc = compile_regex(t, st, GPT2_REGEX, strlen(GPT2_REGEX), 0, sub, err, errlen);
            if (rc) return rc;
            st->behavior = B_ISOLATED;
        }
        t->has_bytelevel = 1;
    } else if (!strcmp(type, "Digits")) {
        const char *p = json_is_true(json_object_get(j, "individual_digits")) ? "\\p{N}" : "\\p{N}+";
        int rc = compile_regex(t, st, p, strlen(p), 0, field, err, errlen);
        if (rc) return rc;
        st->behavior = B_ISOLATED;
    } else {
        return ds3_seterr(err, errlen, DS3_ERR_UNSUPP,
                          "%s: %s.type: pre-tokenizer '%s' is not supported (byte-level BPE: Sequence, Split, "
                          "ByteLevel, Digits)",
                          t->name, field, type);
    }
    if (st->is_split || st->prefix_space) t->n_steps++;
    else memset(st, 0, sizeof *st);
    return 0;
}

/* ---- added tokens trie ---------------------------------------------------------------------- */

static int trie_new_node(ds3_tokenizer *t) {
    if (t->n_nodes == t->trie_cap) {
        int nc = t->trie_cap ? t->trie_cap * 2 : 1024;
        int32_t *nt = realloc(t->trie_term, (size_t)nc * sizeof *nt);
        if (!nt) return -1;
        t->trie_term = nt, t->trie_cap = nc;
    }
    t->trie_term[t->n_nodes] = -1;
    return t->n_nodes++;
}

static int trie_add(ds3_tokenizer *t, int root, const unsigned char *s, size_t n, int idx) {
    int node = root;
    t->first_byte[root][s[0]] = 1;
    t->has_trie[root] = 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t k = ((uint64_t)node << 8) | s[i];
        size_t slot = u64map_find(&t->trie, k);
        if (t->trie.keys[slot] != U64_EMPTY) {
            node = t->trie.v1[slot];
        } else {
            int c = trie_new_node(t);
            if (c < 0 || u64map_put(&t->trie, k, c, 0) != 0) return -1;
            node = c;
        }
    }
    t->trie_term[node] = idx;
    return 0;
}

/* Longest added token starting at s[0]; returns its index (length in *len) or -1. */
static inline int trie_match(const ds3_tokenizer *t, int root, const unsigned char *s, size_t n, size_t *len) {
    int node = root, best = -1;
    for (size_t i = 0; i < n; i++) {
        size_t slot = u64map_find(&t->trie, ((uint64_t)node << 8) | s[i]);
        if (t->trie.keys[slot] == U64_EMPTY) break;
        node = t->trie.v1[slot];
        if (t->trie_term[node] >= 0) best = t->trie_term[node], *len = i + 1;
    }
    return best;
}

/* ---- post-processor ------------------------------------------------------------------------ */

static int add_pp_token(ds3_tokenizer *t, int32_t *arr, int *n, int32_t id, const char *field, char *err,
                        size_t errlen) {
    if (id < 0 || id >= t->n_ids || !(t->tok[id].flags & TF_PRESENT))
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s: token id %d does not exist", t->name, field, (int)id);
    if (*n >= 4) return ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: %s: too many template tokens", t->name, field);
    arr[(*n)++] = id;
    return 0;
}

static int parse_postproc(ds3_tokenizer *t, json_t *j, const char *field, char *err, size_t errlen) {
    if (json_is_null(j) || !j) return 0;
    const char *type = jstr(json_object_get(j, "type"), NULL);
    if (!type) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s.type: missing", t->name, field);
    char sub[200];
    if (!strcmp(type, "ByteLevel")) return 0; /* only adjusts offsets */
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "processors");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.processors[%zu]", field, i);
            int rc = parse_postproc(t, json_array_get(arr, i), sub, err, errlen);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(j, "single"), *sp = json_object_get(j, "special_tokens");
        if (!json_is_array(single))
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s.single: not an array", t->name, field);
        int seen_seq = 0;
        for (size_t i = 0; i < json_array_size(single); i++) {
            json_t *e = json_array_get(single, i);
            snprintf(sub, sizeof sub, "%s.single[%zu]", field, i);
            if (json_object_get(e, "Sequence")) {
                seen_seq = 1;
                continue;
            }
            const char *name = jstr(json_object_get(json_object_get(e, "SpecialToken"), "id"), NULL);
            if (!name) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s: unknown piece", t->name, sub);
            json_t *ids = json_object_get(json_object_get(sp, name), "ids");
            if (!json_is_array(ids))
                return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s.special_tokens.%s.ids: missing", t->name, field,
                                  name);
            for (size_t k = 0; k < json_array_size(ids); k++) {
                json_t *v = json_array_get(ids, k);
                json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
                if (id > INT32_MAX) id = -1;
                int rc = seen_seq ? add_pp_token(t, t->suffix, &t->n_suffix, (int32_t)id, sub, err, errlen)
                                  : add_pp_token(t, t->prefix, &t->n_prefix, (int32_t)id, sub, err, errlen);
                if (rc) return rc;
            }
        }
        return 0;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        json_t *cls = json_object_get(j, "cls"), *sep = json_object_get(j, "sep");
        json_t *ci = json_array_get(cls, 1), *si = json_array_get(sep, 1);
        if (!json_is_integer(ci) || !json_is_integer(si))
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s.cls/sep: expected [token, id]", t->name, field);
        json_int_t a = json_integer_value(ci), b = json_integer_value(si);
        int rc = add_pp_token(t, t->prefix, &t->n_prefix, a > INT32_MAX ? -1 : (int32_t)a, field, err, errlen);
        if (!rc) rc = add_pp_token(t, t->suffix, &t->n_suffix, b > INT32_MAX ? -1 : (int32_t)b, field, err, errlen);
        return rc;
    }
    return ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: %s.type: post-processor '%s' is not supported", t->name, field,
                      type);
}

static int parse_decoder(ds3_tokenizer *t, json_t *j, const char *field, char *err, size_t errlen) {
    if (!j || json_is_null(j)) return 0; /* treated as ByteLevel: the only decoder a byte-level BPE needs */
    const char *type = jstr(json_object_get(j, "type"), NULL);
    if (!type) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s.type: missing", t->name, field);
    if (!strcmp(type, "ByteLevel")) return 0;
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "decoders");
        char sub[200];
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.decoders[%zu]", field, i);
            int rc = parse_decoder(t, json_array_get(arr, i), sub, err, errlen);
            if (rc) return rc;
        }
        return 0;
    }
    return ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: %s.type: decoder '%s' is not supported (ByteLevel only)",
                      t->name, field, type);
}

static int parse_normalizer(ds3_tokenizer *t, json_t *j, const char *field, char *err, size_t errlen) {
    if (!j || json_is_null(j)) return 0;
    const char *type = jstr(json_object_get(j, "type"), NULL);
    if (!type) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s.type: missing", t->name, field);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "normalizers");
        char sub[200];
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", field, i);
            int rc = parse_normalizer(t, json_array_get(arr, i), sub, err, errlen);
            if (rc) return rc;
        }
        return 0;
    }
    return ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: %s.type: normalizer '%s' is not supported", t->name, field,
                      type);
}

/* ---- load ------------------------------------------------------------------------------ */

static int load_config(ds3_tokenizer *t, const char *cfg, size_t cfg_len, const char *cfg_name, int *add_bos,
                       int *add_eos, char *err, size_t errlen) {
    json_error_t je;
    json_t *c = json_loadb(cfg, cfg_len, 0, &je);
    if (!c || !json_is_object(c)) {
        json_decref(c);
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: bad JSON at line %d column %d: %s", cfg_name, je.line,
                          je.column, c ? "not an object" : je.text);
    }
    json_t *v;
    if ((v = json_object_get(c, "add_bos_token")) && json_is_boolean(v)) *add_bos = json_is_true(v);
    if ((v = json_object_get(c, "add_eos_token")) && json_is_boolean(v)) *add_eos = json_is_true(v);
    t->bos_text = config_token_text(json_object_get(c, "bos_token"));
    t->eos_text = config_token_text(json_object_get(c, "eos_token"));
    v = json_object_get(c, "chat_template");
    if (json_is_array(v)) { /* [{"name": "default", "template": "..."}, ...] */
        json_t *pick = NULL, *e;
        size_t i;
        json_array_foreach(v, i, e) {
            const char *nm = jstr(json_object_get(e, "name"), NULL);
            if (!pick || (nm && !strcmp(nm, "default"))) pick = e;
        }
        v = pick ? json_object_get(pick, "template") : NULL;
    }
    if (json_is_string(v)) t->chat_template = strdup(json_string_value(v));
    json_decref(c);
    return 0;
}

static int load_json(ds3_tokenizer *t, json_t *root, char *err, size_t errlen) {
    const char *N = t->name;
    if (!json_is_object(root)) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: top level is not an object", N);
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: model: missing or not an object", N);
    const char *mt = jstr(json_object_get(model, "type"), NULL);
    if (json_object_get(model, "type") && !mt)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: model.type: not a string", N);
    if (mt && strcmp(mt, "BPE"))
        return ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: model.type: '%s' is not supported (byte-level BPE only)", N,
                          mt);
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: model.vocab: not an object", N);
    if (!json_is_array(merges)) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: model.merges: not an array", N);
    json_t *dp = json_object_get(model, "dropout");
    if (dp && !json_is_null(dp) && !(json_is_number(dp) && json_number_value(dp) == 0))
        return ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: model.dropout: BPE dropout is not supported", N);
    const char *fields[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        json_t *f = json_object_get(model, fields[i]);
        if (f && !json_is_null(f) && !(json_is_string(f) && json_string_length(f) == 0))
            return ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: model.%s: not supported for byte-level BPE", N, fields[i]);
    }
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: added_tokens: not an array", N);

    /* Id space. */
    size_t n_vocab = json_object_size(vocab), n_added = json_array_size(added);
    json_int_t max_id = -1;
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach(vocab, key, klen, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= MAX_IDS)
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: model.vocab['%.60s']: id is not an integer in [0, %d)", N,
                              key, MAX_IDS);
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    }
    for (size_t i = 0; i < n_added; i++) {
        json_t *e = json_array_get(added, i), *id = json_object_get(e, "id");
        if (!json_is_object(e) || !json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MAX_IDS)
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: added_tokens[%zu].id: not an integer in [0, %d)", N, i,
                              MAX_IDS);
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: model.vocab: empty", N);
    /* Holes are allowed, but a few entries with huge ids would make the tables huge. */
    if ((size_t)max_id >= 2 * (n_vocab + n_added) + 1024)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: model.vocab: id %lld is out of range for %zu tokens", N,
                          (long long)max_id, n_vocab + n_added);
    t->n_ids = (int)max_id + 1;
    t->tok = calloc((size_t)t->n_ids, sizeof *t->tok);
    if (!t->tok || strmap_init(&t->by_str, n_vocab + n_added, 0) != 0)
        return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", N);
    char *dec = malloc(4096);
    if (!dec) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", N);
    size_t dec_cap = 4096;
    int rc = 0;
#define FAIL(st, ...) do { rc = ds3_seterr(err, errlen, st, __VA_ARGS__); goto out; } while (0)
    json_object_keylen_foreach(vocab, key, klen, val) {
        int32_t id = (int32_t)json_integer_value(val);
        tokinfo *ti = &t->tok[id];
        if (ti->flags)
            FAIL(DS3_ERR_FORMAT, "%s: model.vocab['%.60s']: id %d is also used by '%.60s'", N, key, (int)id,
                 t->blob + ti->str_off);
        if (klen == 0) FAIL(DS3_ERR_FORMAT, "%s: model.vocab: empty token string (id %d)", N, (int)id);
        if (klen >= dec_cap) {
            char *nd = realloc(dec, klen + 1);
            if (!nd) FAIL(DS3_ERR_NOMEM, "%s: out of memory", N);
            dec = nd, dec_cap = klen + 1;
        }
        size_t dl = bytelevel_decode_str(key, klen, dec);
        if (blob_add(t, key, klen, &ti->str_off) || blob_add(t, dec, dl, &ti->dec_off))
            FAIL(DS3_ERR_NOMEM, "%s: out of memory", N);
        ti->str_len = (uint32_t)klen, ti->dec_len = (uint32_t)dl;
        ti->flags = TF_PRESENT | TF_VOCAB;
        strmap_add(t, &t->by_str, id); /* jansson rejected duplicate keys already */
    }
    if (n_added) {
        t->added = calloc(n_added, sizeof *t->added);
        if (!t->added || u64map_init(&t->trie, 1024) != 0) FAIL(DS3_ERR_NOMEM, "%s: out of memory", N);
        trie_new_node(t), trie_new_node(t); /* roots: 0 = matched on raw text, 1 = on normalized text */
    }
    for (size_t i = 0; i < n_added; i++) {
        json_t *e = json_array_get(added, i);
        int32_t id = (int32_t)json_integer_value(json_object_get(e, "id"));
        size_t cl;
        const char *c = jstr(json_object_get(e, "content"), &cl);
        if (!c || cl == 0) FAIL(DS3_ERR_FORMAT, "%s: added_tokens[%zu].content: missing or empty", N, i);
        if (!ds3_utf8_valid((const unsigned char *)c, cl))
            FAIL(DS3_ERR_FORMAT, "%s: added_tokens[%zu].content: not valid UTF-8", N, i);
        int32_t have = strmap_get(t, &t->by_str, c, cl);
        tokinfo *ti = &t->tok[id];
        if (have >= 0 && (t->tok[have].flags & TF_ADDED))
            FAIL(DS3_ERR_FORMAT, "%s: added_tokens[%zu].content: duplicate of id %d", N, i, (int)have);
        if (have >= 0 && have != id)
            FAIL(DS3_ERR_FORMAT, "%s: added_tokens[%zu].id: %d, but the vocab has '%.60s' as id %d", N, i, (int)id, c,
                 (int)have);
        if (have < 0 && ti->flags)
            FAIL(DS3_ERR_FORMAT, "%s: added_tokens[%zu].id: %d is already used by '%.60s'", N, i, (int)id,
                 t->blob + ti->str_off);
        if (have < 0) {
            if (cl >= dec_cap) {
                char *nd = realloc(dec, cl + 1);
                if (!nd) FAIL(DS3_ERR_NOMEM, "%s: out of memory", N);
                dec = nd, dec_cap = cl + 1;
            }
            size_t dl = bytelevel_decode_str(c, cl, dec);
            if (blob_add(t, c, cl, &ti->str_off) || blob_add(t, dec, dl, &ti->dec_off))
                FAIL(DS3_ERR_NOMEM, "%s: out of memory", N);
            ti->str_len = (uint32_t)cl, ti->dec_len = (uint32_t)dl;
            ti->flags |= TF_PRESENT;
            strmap_add(t, &t->by_str, id);
        }
        ti->flags |= TF_ADDED;
        added_tok *a = &t->added[i];
        a->id = id;
        a->special = json_is_true(json_object_get(e, "special"));
        a->lstrip = json_is_true(json_object_get(e, "lstrip"));
        a->rstrip = json_is_true(json_object_get(e, "rstrip"));
        a->single_word = json_is_true(json_object_get(e, "single_word"));
        /* HF: AddedToken.normalized defaults to !special */
        json_t *nz = json_object_get(e, "normalized");
        a->normalized = nz ? json_is_true(nz) : !a->special;
        if (a->special) ti->flags |= TF_SPECIAL;
        if (trie_add(t, a->normalized ? 1 : 0, (const unsigned char *)c, cl, (int)i) != 0)
            FAIL(DS3_ERR_NOMEM, "%s: out of memory", N);
        t->n_added++;
    }

    /* Merges: pair of vocab ids -> (rank, merged id). The last duplicate wins, as in HF. */
    size_t n_merges = json_array_size(merges);
    if (u64map_init(&t->merges, n_merges + 1) != 0) FAIL(DS3_ERR_NOMEM, "%s: out of memory", N);
    char *cat = NULL;
    size_t cat_cap = 0;
    for (size_t i = 0; i < n_merges; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(m)) {
            a = json_string_value(m);
            size_t ml = json_string_length(m);
            const char *sp = memchr(a, ' ', ml);
            if (!sp || memchr(sp + 1, ' ', ml - (size_t)(sp + 1 - a))) {
                free(cat);
                FAIL(DS3_ERR_FORMAT, "%s: model.merges[%zu]: '%.60s' is not of the form 'left right'", N, i, a);
            }
            al = (size_t)(sp - a), b = sp + 1, bl = ml - al - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = jstr(json_array_get(m, 0), &al);
            b = jstr(json_array_get(m, 1), &bl);
        } else {
            free(cat);
            FAIL(DS3_ERR_FORMAT, "%s: model.merges[%zu]: expected \"left right\" or [\"left\", \"right\"]", N, i);
        }
        int32_t ia = strmap_get(t, &t->by_str, a, al), ib = strmap_get(t, &t->by_str, b, bl);
        if (ia < 0 || !(t->tok[ia].flags & TF_VOCAB)) {
            free(cat);
            FAIL(DS3_ERR_FORMAT, "%s: model.merges[%zu]: token '%.*s' is not in the vocab", N, i, (int)(al > 60 ? 60 : al),
                 a);
        }
        if (ib < 0 || !(t->tok[ib].flags & TF_VOCAB)) {
            free(cat);
            FAIL(DS3_ERR_FORMAT, "%s: model.merges[%zu]: token '%.*s' is not in the vocab", N, i, (int)(bl > 60 ? 60 : bl),
                 b);
        }
        if (al + bl > cat_cap) {
            cat_cap = (al + bl) * 2;
            char *nc = realloc(cat, cat_cap);
            if (!nc) {
                free(cat);
                FAIL(DS3_ERR_NOMEM, "%s: out of memory", N);
            }
            cat = nc;
        }
        memcpy(cat, a, al), memcpy(cat + al, b, bl);
        int32_t im = strmap_get(t, &t->by_str, cat, al + bl);
        if (im < 0 || !(t->tok[im].flags & TF_VOCAB)) {
            int l = (int)(al + bl > 60 ? 60 : al + bl);
            ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: model.merges[%zu]: merged token '%.*s' is not in the vocab", N,
                       i, l, cat);
            free(cat);
            rc = DS3_ERR_FORMAT;
            goto out;
        }
        if (u64map_put(&t->merges, ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib, (int32_t)i, im) != 0) {
            free(cat);
            FAIL(DS3_ERR_NOMEM, "%s: out of memory", N);
        }
    }
    free(cat);

    /* Single-byte tokens, and the optional unk. */
    for (int b = 0; b < 256; b++) {
        char s[4];
        int l = ds3_utf8_put(bl_char[b], s);
        int32_t id = strmap_get(t, &t->by_str, s, (size_t)l);
        t->byte_id[b] = (id >= 0 && (t->tok[id].flags & TF_VOCAB)) ? id : -1;
    }
    t->unk_id = -1;
    size_t ul;
    const char *unk = jstr(json_object_get(model, "unk_token"), &ul);
    if (unk) t->unk_id = strmap_get(t, &t->by_str, unk, ul);
    if (t->ignore_merges) {
        if (strmap_init(&t->by_dec, n_vocab, 1) != 0) FAIL(DS3_ERR_NOMEM, "%s: out of memory", N);
        for (int32_t id = 0; id < t->n_ids; id++)
            if ((t->tok[id].flags & TF_VOCAB) &&
                strmap_get(t, &t->by_dec, t->blob + t->tok[id].dec_off, t->tok[id].dec_len) < 0)
                strmap_add(t, &t->by_dec, id);
    }

    rc = parse_normalizer(t, json_object_get(root, "normalizer"), "normalizer", err, errlen);
    if (rc) goto out;
    rc = parse_pretok(t, json_object_get(root, "pre_tokenizer"), "pre_tokenizer", err, errlen);
    if (rc) goto out;
    if (!t->has_bytelevel)
        FAIL(DS3_ERR_UNSUPP, "%s: pre_tokenizer: no ByteLevel step (only byte-level BPE is supported)", N);
    rc = parse_decoder(t, json_object_get(root, "decoder"), "decoder", err, errlen);
    if (rc) goto out;
    rc = parse_postproc(t, json_object_get(root, "post_processor"), "post_processor", err, errlen);
out:
#undef FAIL
    free(dec);
    return rc;
}

void ds3_tokenizer_free(ds3_tokenizer *t);

ds3_tokenizer *ds3_tokenizer_load_mem(const char *json, size_t len, const char *config, size_t config_len,
                                      const char *name, char *err, size_t errlen) {
    bl_init();
    ds3_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", name), NULL;
    t->name = strdup(name ? name : "tokenizer.json");
    t->bos = t->eos = -1;
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root) {
        ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: bad JSON at line %d column %d: %s", t->name, je.line, je.column,
                   je.text);
        ds3_tokenizer_free(t);
        return NULL;
    }
    int rc = load_json(t, root, err, errlen);
    json_decref(root);
    int add_bos = -1, add_eos = -1;
    if (!rc && config) {
        char cname[1024];
        snprintf(cname, sizeof cname, "%s (tokenizer_config.json)", t->name);
        rc = load_config(t, config, config_len, cname, &add_bos, &add_eos, err, errlen);
    }
    if (rc) {
        ds3_tokenizer_free(t);
        return NULL;
    }
    /* BOS / EOS ids: tokenizer_config's tokens first, then the post-processor template, then the
     * conventional names. */
    if (t->bos_text) t->bos = strmap_get(t, &t->by_str, t->bos_text, strlen(t->bos_text));
    if (t->eos_text) t->eos = strmap_get(t, &t->by_str, t->eos_text, strlen(t->eos_text));
    if (t->bos < 0 && t->n_prefix) t->bos = t->prefix[0];
    if (t->eos < 0 && t->n_suffix) t->eos = t->suffix[t->n_suffix - 1];
    static const char *eos_names[] = {"<｜end▁of▁sentence｜>", "<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>"};
    static const char *bos_names[] = {"<｜begin▁of▁sentence｜>", "<|begin_of_text|>", "<s>"};
    for (size_t i = 0; t->eos < 0 && i < sizeof eos_names / sizeof *eos_names; i++)
        t->eos = strmap_get(t, &t->by_str, eos_names[i], strlen(eos_names[i]));
    for (size_t i = 0; t->bos < 0 && i < sizeof bos_names / sizeof *bos_names; i++)
        t->bos = strmap_get(t, &t->by_str, bos_names[i], strlen(bos_names[i]));
    /* LlamaTokenizerFast (DeepSeek-V3) rebuilds the post-processor from add_bos_token / add_eos_token. */
    if (add_bos >= 0 || add_eos >= 0) {
        t->n_prefix = t->n_suffix = 0;
        if (add_bos == 1 && t->bos >= 0) t->prefix[t->n_prefix++] = t->bos;
        if (add_eos == 1 && t->eos >= 0) t->suffix[t->n_suffix++] = t->eos;
    }
    return t;
}

ds3_tokenizer *ds3_tokenizer_load(const char *path, char *err, size_t errlen) {
    size_t n, cn = 0;
    char *buf = ds3_read_file(path, &n, MAX_FILE, err, errlen);
    if (!buf) return NULL;
    /* tokenizer_config.json beside it */
    char cpath[4096];
    const char *slash = strrchr(path, '/');
    int dl = slash ? (int)(slash - path) : 0;
    char *cfg = NULL;
    if (snprintf(cpath, sizeof cpath, "%.*s%stokenizer_config.json", dl, path, slash ? "/" : "") < (int)sizeof cpath) {
        FILE *f = fopen(cpath, "rb");
        if (f) {
            fclose(f);
            cfg = ds3_read_file(cpath, &cn, 64u << 20, err, errlen);
            if (!cfg) {
                free(buf);
                return NULL;
            }
        }
    }
    ds3_tokenizer *t = ds3_tokenizer_load_mem(buf, n, cfg, cn, path, err, errlen);
    if (!t && cfg && err && strstr(err, "(tokenizer_config.json)")) {
        /* name the config file itself */
        char tmp[DS3_ERR_LEN];
        const char *p = strstr(err, "(tokenizer_config.json)") + strlen("(tokenizer_config.json)");
        snprintf(tmp, sizeof tmp, "%.400s%.600s", cpath, p);
        ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s", tmp);
    }
    free(buf);
    free(cfg);
    return t;
}

static void ws_free(ws *w) {
    if (!w) return;
    pcre2_match_data_free(w->md);
    pcre2_match_context_free(w->mctx);
    pcre2_jit_stack_free(w->jstack);
    for (int i = 0; i < MAX_STEPS; i++) free(w->split[i]), free(w->pref[i]);
    free(w->out), free(w->sym), free(w->rk), free(w->mid), free(w->prev), free(w->next), free(w->heap);
    free(w->cslot), free(w->arena);
    free(w);
}

void ds3_tokenizer_free(ds3_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < N_WS; i++) ws_free(atomic_load(&t->pool[i]));
    for (int i = 0; i < MAX_STEPS; i++) pcre2_code_free(t->steps[i].re);
    free(t->tok), free(t->blob), free(t->added), free(t->trie_term);
    strmap_free(&t->by_str), strmap_free(&t->by_dec);
    u64map_free(&t->merges), u64map_free(&t->trie);
    free(t->bos_text), free(t->eos_text), free(t->chat_template), free(t->name);
    free(t);
}

/* ---- workspaces ----------------------------------------------------------------------- */

static ws *ws_get(const ds3_tokenizer *tc) {
    ds3_tokenizer *t = (ds3_tokenizer *)tc; /* the pool is the only mutable part, and it is atomic */
    for (int i = 0; i < N_WS; i++) {
        ws *w = atomic_exchange(&t->pool[i], NULL);
        if (w) return w;
    }
    ws *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->md = pcre2_match_data_create(1, NULL);
    w->mctx = pcre2_match_context_create(NULL);
    w->jstack = pcre2_jit_stack_create(32 << 10, 4 << 20, NULL);
    w->cslot = calloc(CACHE_SLOTS, sizeof *w->cslot);
    w->arena = malloc(CACHE_ARENA);
    if (!w->md || !w->mctx || !w->jstack || !w->cslot || !w->arena) {
        ws_free(w);
        return NULL;
    }
    /* Hostile patterns must fail, not hang. */
    pcre2_set_match_limit(w->mctx, 50u * 1000 * 1000);
    pcre2_set_depth_limit(w->mctx, 100000);
    pcre2_jit_stack_assign(w->mctx, NULL, w->jstack);
    return w;
}

static void ws_put(const ds3_tokenizer *tc, ws *w) {
    ds3_tokenizer *t = (ds3_tokenizer *)tc;
    for (int i = 0; i < N_WS; i++) {
        ws *expect = NULL;
        if (atomic_compare_exchange_strong(&t->pool[i], &expect, w)) return;
    }
    ws_free(w);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return -1;
    *p = np, *cap = nc;
    return 0;
}

static inline int out_push(ws *w, int32_t id) {
    if (w->n_out == w->cap_out && grow((void **)&w->out, &w->cap_out, w->n_out + 1, sizeof *w->out)) return -1;
    w->out[w->n_out++] = id;
    return 0;
}

/* ---- BPE ------------------------------------------------------------------------------ */

static inline int merge_lookup(const ds3_tokenizer *t, int32_t a, int32_t b, int32_t *merged) {
    const u64map *m = &t->merges;
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)mix64(k) & m->mask;
    for (;;) {
        uint64_t kk = m->keys[i];
        if (kk == k) return *merged = m->v2[i], m->v1[i];
        if (kk == U64_EMPTY) return INT32_MAX;
        i = (i + 1) & m->mask;
    }
}

static inline int heap_less(const struct hent *a, const struct hent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct hent *h, size_t *n, struct hent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static struct hent heap_pop(struct hent *h, size_t *n) {
    struct hent top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* Merge the symbols sym[0..n) in place; returns the new count. Lowest rank first, leftmost on ties. */
static size_t bpe_merge(const ds3_tokenizer *t, ws *w, size_t n) {
    int32_t *sym = w->sym, *rk = w->rk, *mid = w->mid;
    if (n <= SCAN_MAX) {
        for (size_t i = 0; i + 1 < n; i++) rk[i] = merge_lookup(t, sym[i], sym[i + 1], &mid[i]);
        while (n > 1) {
            size_t best = 0;
            int32_t br = rk[0];
            for (size_t i = 1; i + 1 < n; i++)
                if (rk[i] < br) br = rk[i], best = i;
            if (br == INT32_MAX) break;
            sym[best] = mid[best];
            for (size_t i = best + 1; i + 1 < n; i++) sym[i] = sym[i + 1];
            for (size_t i = best + 1; i + 2 < n; i++) rk[i] = rk[i + 1], mid[i] = mid[i + 1];
            n--;
            if (best > 0) rk[best - 1] = merge_lookup(t, sym[best - 1], sym[best], &mid[best - 1]);
            if (best + 1 < n) rk[best] = merge_lookup(t, sym[best], sym[best + 1], &mid[best]);
        }
        return n;
    }
    /* Long pieces: doubly linked symbols + a heap of candidate pairs keyed by (rank, left position).
     * Stale entries are detected on pop by re-checking the pair. O(n log n). */
    int32_t *prev = w->prev, *next = w->next;
    struct hent *h = w->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) prev[i] = (int32_t)i - 1, next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t r = merge_lookup(t, sym[i], sym[i + 1], &mid[i]);
        if (r != INT32_MAX) heap_push(h, &hn, (struct hent){r, (int32_t)i});
    }
    while (hn) {
        struct hent e = heap_pop(h, &hn);
        int32_t p = e.pos, q = next[p];
        if (sym[p] < 0 || q < 0) continue;
        int32_t m = -1;
        if (merge_lookup(t, sym[p], sym[q], &m) != e.rank) continue;
        sym[p] = m;
        sym[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        if (prev[p] >= 0) {
            int32_t r = merge_lookup(t, sym[prev[p]], sym[p], &m);
            if (r != INT32_MAX) heap_push(h, &hn, (struct hent){r, prev[p]});
        }
        if (next[p] >= 0) {
            int32_t r = merge_lookup(t, sym[p], sym[next[p]], &m);
            if (r != INT32_MAX) heap_push(h, &hn, (struct hent){r, p});
        }
    }
    size_t o = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) sym[o++] = sym[i];
    return o;
}

static void cache_clear(ws *w) {
    memset(w->cslot, 0, CACHE_SLOTS * sizeof *w->cslot);
    w->arena_used = 0;
    w->n_cached = 0;
}

/* Encode one final piece (raw bytes) and append its ids. */
static int bpe_piece(const ds3_tokenizer *t, ws *w, const unsigned char *p, size_t n) {
    if (n == 1) {
        int32_t id = t->byte_id[p[0]];
        if (id < 0) id = t->unk_id;
        return id >= 0 ? out_push(w, id) : 0;
    }
    uint64_t h = 0;
    size_t slot = 0;
    if (n <= CACHE_KEY_MAX) {
        h = hash_bytes(p, n) | 1;
        slot = (size_t)h & (CACHE_SLOTS - 1);
        for (;;) {
            cache_slot *c = &w->cslot[slot];
            if (c->h == 0) break;
            if (c->h == h && c->key_len == n && memcmp(w->arena + c->key_off, p, n) == 0) {
                if (grow((void **)&w->out, &w->cap_out, w->n_out + c->n_ids, sizeof *w->out)) return -1;
                memcpy(w->out + w->n_out, w->arena + c->ids_off, c->n_ids * sizeof(int32_t));
                w->n_out += c->n_ids;
                return 0;
            }
            slot = (slot + 1) & (CACHE_SLOTS - 1);
        }
    }
    size_t start = w->n_out;
    int32_t whole = t->ignore_merges ? strmap_get(t, &t->by_dec, (const char *)p, n) : -1;
    if (whole >= 0) {
        if (out_push(w, whole)) return -1;
    } else {
        if (n > w->sym_cap) {
            size_t c = w->sym_cap;
            if (grow((void **)&w->rk, &c, n, sizeof *w->rk)) return -1;
            c = w->sym_cap;
            if (grow((void **)&w->mid, &c, n, sizeof *w->mid)) return -1;
            c = w->sym_cap;
            if (grow((void **)&w->prev, &c, n, sizeof *w->prev)) return -1;
            c = w->sym_cap;
            if (grow((void **)&w->next, &c, n, sizeof *w->next)) return -1;
            c = w->sym_cap;
            if (grow((void **)&w->heap, &c, 2 * n, sizeof *w->heap)) return -1;
            c = w->sym_cap;
            if (grow((void **)&w->sym, &c, n, sizeof *w->sym)) return -1;
            w->sym_cap = c;
        }
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            int32_t id = t->byte_id[p[i]];
            if (id < 0) id = t->unk_id;
            if (id >= 0) w->sym[m++] = id;
        }
        m = bpe_merge(t, w, m);
        if (grow((void **)&w->out, &w->cap_out, w->n_out + m, sizeof *w->out)) return -1;
        memcpy(w->out + w->n_out, w->sym, m * sizeof(int32_t));
        w->n_out += m;
    }
    if (n <= CACHE_KEY_MAX) {
        size_t nid = w->n_out - start;
        size_t need = ((n + 3) & ~(size_t)3) + nid * 4;
        if (w->arena_used + need > CACHE_ARENA || w->n_cached * 2 >= CACHE_SLOTS || nid > 65535) {
            if (nid > 65535) return 0;
            cache_clear(w);
            slot = (size_t)h & (CACHE_SLOTS - 1);
        }
        cache_slot *c = &w->cslot[slot];
        c->h = h;
        c->key_off = (uint32_t)w->arena_used;
        c->key_len = (uint16_t)n;
        memcpy(w->arena + w->arena_used, p, n);
        w->arena_used += (n + 3) & ~(size_t)3;
        c->ids_off = (uint32_t)w->arena_used;
        c->n_ids = (uint16_t)nid;
        memcpy(w->arena + w->arena_used, w->out + start, nid * 4);
        w->arena_used += nid * 4;
        w->n_cached++;
    }
    return 0;
}

/* ---- pre-tokenizer --------------------------------------------------------------------- */

typedef struct {
    ds3_piece_fn fn; /* NULL: BPE into w->out */
    void *ctx;
} sink;

static int run_steps(const ds3_tokenizer *t, ws *w, int k, const char *s, size_t n, const sink *sk);

static int regex_fail(ws *w, int rc) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    w->err = DS3_ERR_FORMAT;
    snprintf(w->errmsg, sizeof w->errmsg, "pre-tokenizer regex failed while matching: %s", (const char *)msg);
    return w->err;
}

/* Find all matches of step k's regex in s[0..n), with the empty-match rules of the onig crate's
 * find_iter (an empty match right after the previous match is skipped). Fills w->split[k] with
 * (start, end, is_match) triples after applying invert. Returns count or negative. */
static long find_matches(const pt_step *st, ws *w, int k, const char *s, size_t n) {
    size_t cnt = 0, last_end = 0, prev = 0;
    long last_match_end = -1;
#define PUSH(a, b, m)                                                                                            \
    do {                                                                                                       \
        if (grow((void **)&w->split[k], &w->split_cap[k], 3 * (cnt + 1), sizeof(size_t))) return DS3_ERR_NOMEM; \
        w->split[k][3 * cnt] = (a), w->split[k][3 * cnt + 1] = (b), w->split[k][3 * cnt + 2] = (m);            \
        cnt++;                                                                                                 \
    } while (0)
    while (last_end <= n) {
        int rc = st->jit ? pcre2_jit_match(st->re, (PCRE2_SPTR)s, n, last_end, 0, w->md, w->mctx)
                         : pcre2_match(st->re, (PCRE2_SPTR)s, n, last_end, PCRE2_NO_UTF_CHECK, w->md, w->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return regex_fail(w, rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t ms = ov[0], me = ov[1];
        if (me < ms) me = ms; /* \K tricks */
        if (ms == me && last_match_end == (long)me) {
            size_t adv = 1;
            if (last_end < n) {
                uint32_t cp;
                int l = ds3_utf8_next((const unsigned char *)s + last_end, n - last_end, &cp);
                adv = l ? (size_t)l : 1;
            }
            last_end += adv;
            continue;
        }
        last_end = me;
        last_match_end = (long)me;
        if (prev != ms) PUSH(prev, ms, st->invert);
        PUSH(ms, me, !st->invert);
        prev = me;
    }
    if (prev != n) PUSH(prev, n, st->invert);
#undef PUSH
    return (long)cnt;
}

static int run_steps(const ds3_tokenizer *t, ws *w, int k, const char *s, size_t n, const sink *sk) {
    if (n == 0) return 0;
    if (k == t->n_steps) {
        if (sk->fn) return sk->fn(sk->ctx, s, n);
        return bpe_piece(t, w, (const unsigned char *)s, n) ? DS3_ERR_NOMEM : 0;
    }
    const pt_step *st = &t->steps[k];
    if (st->prefix_space && s[0] != ' ') {
        if (grow((void **)&w->pref[k], &w->pref_cap[k], n + 1, 1)) return DS3_ERR_NOMEM;
        w->pref[k][0] = ' ';
        memcpy(w->pref[k] + 1, s, n);
        s = w->pref[k], n++;
    }
    if (!st->is_split) return run_steps(t, w, k + 1, s, n, sk);
    long cnt = find_matches(st, w, k, s, n);
    if (cnt < 0) return (int)cnt;
    size_t *v = w->split[k];
    /* Apply the behaviour by rewriting the triples in place into (start, end, keep). */
    size_t o = 0;
    switch (st->behavior) {
    case B_REMOVED:
        for (long i = 0; i < cnt; i++)
            if (!v[3 * i + 2]) v[3 * o] = v[3 * i], v[3 * o + 1] = v[3 * i + 1], o++;
        break;
    case B_ISOLATED:
        o = (size_t)cnt;
        break;
    case B_MERGED_PREV: {
        int pm = 0;
        for (long i = 0; i < cnt; i++) {
            int m = (int)v[3 * i + 2];
            if (m && !pm && o > 0) v[3 * (o - 1) + 1] = v[3 * i + 1];
            else v[3 * o] = v[3 * i], v[3 * o + 1] = v[3 * i + 1], o++;
            pm = m;
        }
        break;
    }
    case B_MERGED_NEXT: {
        /* Walk backwards, merging a match into the following piece; write from the end. */
        int pm = 0;
        size_t wpos = (size_t)cnt; /* output occupies [wpos, cnt) */
        for (long i = cnt - 1; i >= 0; i--) {
            int m = (int)v[3 * i + 2];
            if (m && !pm && wpos < (size_t)cnt) v[3 * wpos] = v[3 * i];
            else wpos--, v[3 * wpos] = v[3 * i], v[3 * wpos + 1] = v[3 * i + 1];
            pm = m;
        }
        for (size_t i = wpos; i < (size_t)cnt; i++) v[3 * o] = v[3 * i], v[3 * o + 1] = v[3 * i + 1], o++;
        break;
    }
    case B_CONTIGUOUS: {
        int pm = 0;
        for (long i = 0; i < cnt; i++) {
            int m = (int)v[3 * i + 2];
            if (m == pm && o > 0) v[3 * (o - 1) + 1] = v[3 * i + 1];
            else v[3 * o] = v[3 * i], v[3 * o + 1] = v[3 * i + 1], o++;
            pm = m;
        }
        break;
    }
    }
    for (size_t i = 0; i < o; i++) {
        /* w->split[k] may move while deeper steps run? No: deeper steps use their own slots. */
        size_t a = w->split[k][3 * i], b = w->split[k][3 * i + 1];
        int rc = run_steps(t, w, k + 1, s + a, b - a, sk);
        if (rc) return rc;
    }
    return 0;
}

/* ---- encode -------------------------------------------------------------------------- */

static int is_word_char(uint32_t c) {
    /* Approximation of Unicode \w for single_word: ASCII alnum, '_', and any non-ASCII letter-ish
     * code point that is not white space or common punctuation. */
    if (c < 128) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    return !ds3_unicode_is_white_space(c) && !(c >= 0x2000 && c <= 0x206F) && !(c >= 0x3000 && c <= 0x303F);
}

static uint32_t last_cp(const unsigned char *s, size_t n) {
    size_t i = n;
    while (i > 0 && (s[i - 1] & 0xC0) == 0x80) i--;
    if (i > 0) i--;
    uint32_t cp = 0;
    ds3_utf8_next(s + i, n - i, &cp);
    return cp;
}

/* Split s on the added tokens of trie `root`; gaps go to the next stage. */
static int split_added(const ds3_tokenizer *t, ws *w, int root, const char *s, size_t n, const sink *sk, int literal);

static int encode_gap(const ds3_tokenizer *t, ws *w, const char *s, size_t n, const sink *sk, int literal, int pass) {
    if (n == 0) return 0;
    /* (normalizer would run here, before pass 2) */
    if (pass == 0 && !literal && t->has_trie[1]) return split_added(t, w, 1, s, n, sk, literal);
    return run_steps(t, w, 0, s, n, sk);
}

static int split_added(const ds3_tokenizer *t, ws *w, int root, const char *s, size_t n, const sink *sk, int literal) {
    const unsigned char *u = (const unsigned char *)s;
    size_t start_off = 0, i = 0;
    while (i < n) {
        if (!t->first_byte[root][u[i]]) {
            i++;
            continue;
        }
        size_t len = 0;
        int idx = trie_match(t, root, u + i, n - i, &len);
        if (idx < 0) {
            i++;
            continue;
        }
        const added_tok *a = &t->added[idx];
        size_t ms = i, me = i + len;
        if (a->single_word) {
            int ok_l = ms == 0 || !is_word_char(last_cp(u, ms));
            uint32_t nc = 0;
            int ok_r = me == n || (ds3_utf8_next(u + me, n - me, &nc), !is_word_char(nc));
            if (!ok_l || !ok_r) {
                i = me; /* find_iter is non-overlapping: continue after the rejected match */
                continue;
            }
        }
        size_t start = ms, stop = me;
        if (a->lstrip) {
            size_t j = ms;
            while (j > start_off) {
                size_t k = j - 1;
                while (k > start_off && (u[k] & 0xC0) == 0x80) k--;
                uint32_t cp;
                if (!ds3_utf8_next(u + k, j - k, &cp) || !ds3_unicode_is_white_space(cp)) break;
                j = k;
            }
            start = j;
        }
        if (a->rstrip) {
            while (stop < n) {
                uint32_t cp;
                int l = ds3_utf8_next(u + stop, n - stop, &cp);
                if (!l || !ds3_unicode_is_white_space(cp)) break;
                stop += (size_t)l;
            }
        }
        int rc = encode_gap(t, w, s + start_off, start - start_off, sk, literal, root);
        if (rc) return rc;
        if (!sk->fn && out_push(w, a->id)) return DS3_ERR_NOMEM;
        start_off = stop;
        i = stop > me ? stop : me;
    }
    return encode_gap(t, w, s + start_off, n - start_off, sk, literal, root);
}

static int encode_all(const ds3_tokenizer *t, ws *w, const char *text, size_t len, int literal, const sink *sk) {
    if (!literal && t->has_trie[0]) return split_added(t, w, 0, text, len, sk, literal);
    return encode_gap(t, w, text, len, sk, literal, 0);
}

static int finish_err(ws *w, int rc, const ds3_tokenizer *t, char *err, size_t errlen) {
    if (rc == DS3_ERR_NOMEM) return ds3_seterr(err, errlen, rc, "%s: encode: out of memory", t->name);
    if (w && w->err) return ds3_seterr(err, errlen, rc, "%s: %s", t->name, w->errmsg);
    return ds3_seterr(err, errlen, rc, "%s: encode failed", t->name);
}

int ds3_tokenizer_encode(const ds3_tokenizer *t, const char *text, size_t len, int add_special, int literal_specials,
                         int32_t **ids, size_t *n, char *err, size_t errlen) {
    *ids = NULL, *n = 0;
    ws *w = ws_get(t);
    if (!w) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: encode: out of memory", t->name);
    w->n_out = 0, w->err = 0;
    char *fixed = NULL;
    if (!ds3_utf8_valid((const unsigned char *)text, len)) {
        fixed = ds3_utf8_lossy((const unsigned char *)text, len, &len);
        if (!fixed) {
            ws_put(t, w);
            return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: encode: out of memory", t->name);
        }
        text = fixed;
    }
    int rc = 0;
    if (add_special)
        for (int i = 0; i < t->n_prefix && !rc; i++) rc = out_push(w, t->prefix[i]) ? DS3_ERR_NOMEM : 0;
    sink sk = {NULL, NULL};
    if (!rc) rc = encode_all(t, w, text, len, literal_specials, &sk);
    if (add_special)
        for (int i = 0; i < t->n_suffix && !rc; i++) rc = out_push(w, t->suffix[i]) ? DS3_ERR_NOMEM : 0;
    free(fixed);
    if (rc) {
        rc = finish_err(w, rc, t, err, errlen);
        ws_put(t, w);
        return rc;
    }
    *ids = malloc((w->n_out ? w->n_out : 1) * sizeof **ids);
    if (!*ids) {
        ws_put(t, w);
        return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: encode: out of memory", t->name);
    }
    if (w->n_out) memcpy(*ids, w->out, w->n_out * sizeof **ids);
    *n = w->n_out;
    /* Don't let one huge input pin a huge buffer in the pool. */
    if (w->cap_out > (1u << 22)) free(w->out), w->out = NULL, w->cap_out = 0;
    ws_put(t, w);
    return 0;
}

int ds3_tokenizer_pretokenize(const ds3_tokenizer *t, const char *text, size_t len, ds3_piece_fn fn, void *ctx,
                              char *err, size_t errlen) {
    ws *w = ws_get(t);
    if (!w) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", t->name);
    w->err = 0;
    char *fixed = NULL;
    if (!ds3_utf8_valid((const unsigned char *)text, len)) {
        fixed = ds3_utf8_lossy((const unsigned char *)text, len, &len);
        if (!fixed) {
            ws_put(t, w);
            return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", t->name);
        }
        text = fixed;
    }
    sink sk = {fn, ctx};
    int rc = encode_gap(t, w, text, len, &sk, 1, 0);
    free(fixed);
    if (rc < 0) rc = finish_err(w, rc, t, err, errlen);
    ws_put(t, w);
    return rc;
}

/* ---- decode ------------------------------------------------------------------------ */

static int id_ok(const ds3_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->tok[id].flags & TF_PRESENT);
}

int ds3_tokenizer_decode(const ds3_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **out,
                         size_t *out_len, char *err, size_t errlen) {
    *out = NULL, *out_len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!id_ok(t, ids[i]))
            return ds3_seterr(err, errlen, DS3_ERR_ARG, "%s: decode: token id %ld (position %zu) is not in the vocabulary "
                              "[0, %d)", t->name, (long)ids[i], i, t->n_ids);
        total += t->tok[ids[i]].dec_len;
    }
    char *raw = malloc(total + 1);
    if (!raw) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: decode: out of memory", t->name);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const tokinfo *ti = &t->tok[ids[i]];
        if (skip_special && (ti->flags & TF_SPECIAL)) continue;
        memcpy(raw + o, t->blob + ti->dec_off, ti->dec_len);
        o += ti->dec_len;
    }
    raw[o] = 0;
    if (!ds3_utf8_valid((const unsigned char *)raw, o)) {
        char *fixed = ds3_utf8_lossy((const unsigned char *)raw, o, &o);
        free(raw);
        if (!fixed) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: decode: out of memory", t->name);
        raw = fixed;
    }
    *out = raw, *out_len = o;
    return 0;
}

struct ds3_detok_stream {
    const ds3_tokenizer *t;
    int skip_special;
    ds3_utf8_stream st;
    char *buf;
    size_t cap;
};

ds3_detok_stream *ds3_detok_stream_new(const ds3_tokenizer *t, int skip_special) {
    ds3_detok_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->t = t, s->skip_special = skip_special;
    return s;
}

int ds3_detok_stream_push(ds3_detok_stream *s, int32_t id, const char **text, size_t *len) {
    *text = "", *len = 0;
    if (!id_ok(s->t, id)) return DS3_ERR_ARG;
    const tokinfo *ti = &s->t->tok[id];
    if (s->skip_special && (ti->flags & TF_SPECIAL)) return 0;
    size_t need = ds3_utf8_stream_bound(ti->dec_len);
    if (grow((void **)&s->buf, &s->cap, need, 1)) return DS3_ERR_NOMEM;
    *len = ds3_utf8_stream_feed(&s->st, (const unsigned char *)s->t->blob + ti->dec_off, ti->dec_len, s->buf);
    *text = s->buf;
    return 0;
}

int ds3_detok_stream_finish(ds3_detok_stream *s, const char **text, size_t *len) {
    if (grow((void **)&s->buf, &s->cap, 16, 1)) return DS3_ERR_NOMEM;
    *len = ds3_utf8_stream_finish(&s->st, s->buf);
    *text = s->buf;
    return 0;
}

void ds3_detok_stream_free(ds3_detok_stream *s) {
    if (!s) return;
    free(s->buf);
    free(s);
}

/* ---- facts ------------------------------------------------------------------------- */

int ds3_tokenizer_n_vocab(const ds3_tokenizer *t) { return t->n_ids; }
int32_t ds3_tokenizer_bos(const ds3_tokenizer *t) { return t->bos; }
int32_t ds3_tokenizer_eos(const ds3_tokenizer *t) { return t->eos; }
int ds3_tokenizer_adds_bos(const ds3_tokenizer *t) { return t->n_prefix > 0 && t->prefix[0] == t->bos; }
int ds3_tokenizer_is_special(const ds3_tokenizer *t, int32_t id) {
    return id_ok(t, id) && (t->tok[id].flags & TF_SPECIAL);
}
int ds3_tokenizer_is_added(const ds3_tokenizer *t, int32_t id) { return id_ok(t, id) && (t->tok[id].flags & TF_ADDED); }
const char *ds3_tokenizer_token_str(const ds3_tokenizer *t, int32_t id, size_t *len) {
    if (!id_ok(t, id)) return NULL;
    if (len) *len = t->tok[id].str_len;
    return t->blob + t->tok[id].str_off;
}
const char *ds3_tokenizer_token_to_piece(const ds3_tokenizer *t, int32_t id, size_t *len) {
    if (!id_ok(t, id)) return NULL;
    if (len) *len = t->tok[id].dec_len;
    return t->blob + t->tok[id].dec_off;
}
int32_t ds3_tokenizer_token_id(const ds3_tokenizer *t, const char *str, size_t len) {
    return strmap_get(t, &t->by_str, str, len);
}
const char *ds3_tokenizer_bos_text(const ds3_tokenizer *t) { return t->bos_text; }
const char *ds3_tokenizer_eos_text(const ds3_tokenizer *t) { return t->eos_text; }
const char *ds3_tokenizer_chat_template(const ds3_tokenizer *t) { return t->chat_template; }
