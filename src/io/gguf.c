/* gguf.c -- validated GGUF (v2/v3) reader: mmap or RAM, every count, length and offset checked
 * against the bytes that are really there before it is used. Reference: ggml/docs/gguf.md and
 * ggml/src/gguf.cpp (the checks llama.cpp makes), docs/gguf.md. Ownership: see gguf.h. */
#include "io/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/common.h"

#define GGUF_MAGIC "GGUF"
#define MAX_NAME 4096          /* longest key or tensor name accepted */
#define MAX_KEYS (1u << 20)
#define MAX_TENSORS (1u << 24)

struct ds3_gguf {
    char *path;
    const uint8_t *base;
    size_t size;
    int mapped, owned;         /* mapped: munmap; owned: free */
    uint32_t version, alignment;
    ds3_gguf_kv *kv;
    int n_kv;
    ds3_gguf_tensor *t;
    int n_t;
    uint64_t data_off, data_len;
    int *kv_hash, *t_hash;     /* open-addressing tables of indices (size hcap each), -1 empty */
    int kv_hcap, t_hcap;
};

/* ---- GGML type table ---- */
static const struct {
    const char *name;
    int blck;
    int size;
} ggml_types[GGML_T_COUNT] = {
    [GGML_T_F32] = {"F32", 1, 4},       [GGML_T_F16] = {"F16", 1, 2},       [GGML_T_Q4_0] = {"Q4_0", 32, 18},
    [GGML_T_Q4_1] = {"Q4_1", 32, 20},   [GGML_T_Q5_0] = {"Q5_0", 32, 22},   [GGML_T_Q5_1] = {"Q5_1", 32, 24},
    [GGML_T_Q8_0] = {"Q8_0", 32, 34},   [GGML_T_Q8_1] = {"Q8_1", 32, 36},   [GGML_T_Q2_K] = {"Q2_K", 256, 84},
    [GGML_T_Q3_K] = {"Q3_K", 256, 110}, [GGML_T_Q4_K] = {"Q4_K", 256, 144}, [GGML_T_Q5_K] = {"Q5_K", 256, 176},
    [GGML_T_Q6_K] = {"Q6_K", 256, 210}, [GGML_T_Q8_K] = {"Q8_K", 256, 292}, [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74},         [18] = {"IQ3_XXS", 256, 98},        [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},          [21] = {"IQ3_S", 256, 110},         [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136},        [GGML_T_I8] = {"I8", 1, 1},         [GGML_T_I16] = {"I16", 1, 2},
    [GGML_T_I32] = {"I32", 1, 4},       [GGML_T_I64] = {"I64", 1, 8},       [GGML_T_F64] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},          [GGML_T_BF16] = {"BF16", 1, 2},     [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},          [39] = {"MXFP4", 32, 17},
};

const char *ds3_ggml_type_name(uint32_t t) { return t < GGML_T_COUNT && ggml_types[t].name ? ggml_types[t].name : "?"; }
int ds3_ggml_blck_size(uint32_t t) { return t < GGML_T_COUNT ? ggml_types[t].blck : 0; }
size_t ds3_ggml_type_size(uint32_t t) { return t < GGML_T_COUNT ? (size_t)ggml_types[t].size : 0; }

int ds3_ggml_to_dtype(uint32_t t) {
    switch (t) {
    case GGML_T_F32: return DS3_DT_F32;
    case GGML_T_F16: return DS3_DT_F16;
    case GGML_T_BF16: return DS3_DT_BF16;
    case GGML_T_Q8_0: return DS3_DT_Q8_0;
    case GGML_T_Q4_0: return DS3_DT_Q4_0;
    case GGML_T_Q4_K: return DS3_DT_Q4_K;
    case GGML_T_Q5_K: return DS3_DT_Q5_K;
    case GGML_T_Q6_K: return DS3_DT_Q6_K;
    case GGML_T_Q2_K: return DS3_DT_Q2_K;
    case GGML_T_Q3_K: return DS3_DT_Q3_K;
    default: return -1;
    }
}

int ds3_dtype_to_ggml(int dt) {
    switch (dt) {
    case DS3_DT_F32: return GGML_T_F32;
    case DS3_DT_F16: return GGML_T_F16;
    case DS3_DT_BF16: return GGML_T_BF16;
    case DS3_DT_Q8_0: return GGML_T_Q8_0;
    case DS3_DT_Q4_0: return GGML_T_Q4_0;
    case DS3_DT_Q4_K: return GGML_T_Q4_K;
    case DS3_DT_Q5_K: return GGML_T_Q5_K;
    case DS3_DT_Q6_K: return GGML_T_Q6_K;
    case DS3_DT_Q2_K: return GGML_T_Q2_K;
    case DS3_DT_Q3_K: return GGML_T_Q3_K;
    default: return -1;
    }
}

/* ---- bounded little-endian cursor ---- */
typedef struct {
    const uint8_t *p;
    size_t len, off;
    const char *path;
    char *err;
    size_t errlen;
} cur;

static int need(cur *c, uint64_t n, const char *what) {
    if (n > c->len - c->off)
        return ds3_seterr(c->err, c->errlen, DS3_ERR_FORMAT, "%s: %s at byte %zu needs %llu bytes, past the end of the file (%zu bytes)",
                          c->path, what, c->off, (unsigned long long)n, c->len);
    return 0;
}
static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static int rd_u32(cur *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return DS3_ERR_FORMAT;
    *v = (uint32_t)rd_le(c->p + c->off, 4);
    c->off += 4;
    return 0;
}
static int rd_u64(cur *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return DS3_ERR_FORMAT;
    *v = rd_le(c->p + c->off, 8);
    c->off += 8;
    return 0;
}
static int rd_str(cur *c, ds3_gguf_str *s, const char *what) {
    uint64_t n;
    if (rd_u64(c, &n, what)) return DS3_ERR_FORMAT;
    if (n > c->len - c->off)
        return ds3_seterr(c->err, c->errlen, DS3_ERR_FORMAT, "%s: %s: string length %llu at byte %zu is past the end of the file",
                          c->path, what, (unsigned long long)n, c->off - 8);
    s->s = (const char *)c->p + c->off;
    s->n = n;
    c->off += n;
    return 0;
}

static const int scalar_size[GGUF_T_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *gguf_type_names[GGUF_T_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                                    "bool", "string", "array", "u64", "i64", "f64"};

static void rd_scalar(ds3_gguf_kv *kv, const uint8_t *p) {
    const int n = scalar_size[kv->type];
    uint64_t raw = rd_le(p, n);
    switch (kv->type) {
    case GGUF_T_I8: kv->v.i = (int8_t)raw; break;
    case GGUF_T_I16: kv->v.i = (int16_t)raw; break;
    case GGUF_T_I32: kv->v.i = (int32_t)raw; break;
    case GGUF_T_I64: kv->v.i = (int64_t)raw; break;
    case GGUF_T_F32: {
        union { uint32_t u; float f; } x = {(uint32_t)raw};
        kv->v.f = x.f;
        break;
    }
    case GGUF_T_F64: {
        union { uint64_t u; double f; } x = {raw};
        kv->v.f = x.f;
        break;
    }
    default: kv->v.u = raw; break;
    }
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Copy a name (rejecting embedded NULs) into a NUL-terminated malloc'd string. */
static int dup_name(cur *c, const ds3_gguf_str *s, char **out, const char *what, uint64_t idx) {
    if (s->n == 0 || s->n > MAX_NAME)
        return ds3_seterr(c->err, c->errlen, DS3_ERR_FORMAT, "%s: %s %llu: name length %llu is not in 1..%d", c->path, what,
                          (unsigned long long)idx, (unsigned long long)s->n, MAX_NAME);
    if (memchr(s->s, 0, s->n))
        return ds3_seterr(c->err, c->errlen, DS3_ERR_FORMAT, "%s: %s %llu: name contains a NUL byte", c->path, what,
                          (unsigned long long)idx);
    *out = malloc(s->n + 1);
    if (!*out) return ds3_seterr(c->err, c->errlen, DS3_ERR_NOMEM, "%s: out of memory", c->path);
    memcpy(*out, s->s, s->n);
    (*out)[s->n] = 0;
    return 0;
}

/* Insert index i under name into table; returns the index already there for a duplicate, or -1. */
static int hash_insert(int *tab, int cap, const char *name, int i, char *const *names_of, size_t stride) {
    uint64_t h = hash_str(name) & (uint64_t)(cap - 1);
    while (tab[h] >= 0) {
        const char *other = *(char *const *)((const char *)names_of + (size_t)tab[h] * stride);
        if (!strcmp(other, name)) return tab[h];
        h = (h + 1) & (uint64_t)(cap - 1);
    }
    tab[h] = i;
    return -1;
}
static int hash_find(const int *tab, int cap, const char *name, char *const *names_of, size_t stride) {
    if (!tab) return -1;
    uint64_t h = hash_str(name) & (uint64_t)(cap - 1);
    while (tab[h] >= 0) {
        const char *other = *(char *const *)((const char *)names_of + (size_t)tab[h] * stride);
        if (!strcmp(other, name)) return tab[h];
        h = (h + 1) & (uint64_t)(cap - 1);
    }
    return -1;
}
static int pow2_cap(int n) {
    int c = 16;
    while (c < 2 * n) c <<= 1;
    return c;
}

static int parse_kv(cur *c, ds3_gguf_kv *kv, uint64_t idx) {
    ds3_gguf_str key;
    if (rd_str(c, &key, "key")) return DS3_ERR_FORMAT;
    int rc = dup_name(c, &key, &kv->key, "key", idx);
    if (rc) return rc;
    if (rd_u32(c, &kv->type, "value type")) return DS3_ERR_FORMAT;
    if (kv->type >= GGUF_T_COUNT)
        return ds3_seterr(c->err, c->errlen, DS3_ERR_FORMAT, "%s: key '%s': unknown value type %u", c->path, kv->key, kv->type);
    if (kv->type == GGUF_T_STRING) return rd_str(c, &kv->v.str, kv->key);
    if (kv->type != GGUF_T_ARRAY) {
        if (need(c, (uint64_t)scalar_size[kv->type], kv->key)) return DS3_ERR_FORMAT;
        rd_scalar(kv, c->p + c->off);
        c->off += (size_t)scalar_size[kv->type];
        return 0;
    }
    if (rd_u32(c, &kv->arr_type, "array type") || rd_u64(c, &kv->arr_n, "array length")) return DS3_ERR_FORMAT;
    if (kv->arr_type >= GGUF_T_COUNT || kv->arr_type == GGUF_T_ARRAY)
        return ds3_seterr(c->err, c->errlen, DS3_ERR_FORMAT, "%s: key '%s': array element type %u is %s", c->path, kv->key,
                          kv->arr_type, kv->arr_type == GGUF_T_ARRAY ? "a nested array (not supported)" : "unknown");
    if (kv->arr_type == GGUF_T_STRING) {
        /* every string takes at least its 8-byte length */
        if (kv->arr_n > (c->len - c->off) / 8)
            return ds3_seterr(c->err, c->errlen, DS3_ERR_FORMAT, "%s: key '%s': array of %llu strings does not fit in the file",
                              c->path, kv->key, (unsigned long long)kv->arr_n);
        kv->arr_str = malloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof *kv->arr_str);
        if (!kv->arr_str) return ds3_seterr(c->err, c->errlen, DS3_ERR_NOMEM, "%s: out of memory", c->path);
        for (uint64_t i = 0; i < kv->arr_n; i++)
            if (rd_str(c, &kv->arr_str[i], kv->key)) return DS3_ERR_FORMAT;
        return 0;
    }
    uint64_t bytes;
    if (!ds3_mul_ok(kv->arr_n, (uint64_t)scalar_size[kv->arr_type], &bytes) || bytes > c->len - c->off)
        return ds3_seterr(c->err, c->errlen, DS3_ERR_FORMAT, "%s: key '%s': array of %llu %s is past the end of the file",
                          c->path, kv->key, (unsigned long long)kv->arr_n, gguf_type_names[kv->arr_type]);
    kv->arr = c->p + c->off;
    c->off += bytes;
    return 0;
}

static int cmp_off(const void *a, const void *b) {
    const ds3_gguf_tensor *x = *(ds3_gguf_tensor *const *)a, *y = *(ds3_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int parse(ds3_gguf *g, char *err, size_t errlen) {
    cur c = {g->base, g->size, 0, g->path, err, errlen};
    if (g->size < 4 || memcmp(g->base, GGUF_MAGIC, 4) != 0)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: not a GGUF file (bad magic)", g->path);
    c.off = 4;
    if (rd_u32(&c, &g->version, "version")) return DS3_ERR_FORMAT;
    if (g->version != 2 && g->version != 3)
        return ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: GGUF version %u is not supported (only 2 and 3)", g->path, g->version);
    uint64_t nt, nkv;
    if (rd_u64(&c, &nt, "tensor count") || rd_u64(&c, &nkv, "key/value count")) return DS3_ERR_FORMAT;
    /* A key/value takes at least 8 (key length) + 1 + 4 (type) + 1 bytes; a tensor info 8 + 1 + 4 + 8 + 4 + 8. */
    const uint64_t rest = g->size - c.off;
    if (nkv > MAX_KEYS || nkv > rest / 14)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: key/value count %llu cannot fit in the file (%zu bytes)", g->path,
                          (unsigned long long)nkv, g->size);
    if (nt > MAX_TENSORS || nt > rest / 33)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tensor count %llu cannot fit in the file (%zu bytes)", g->path,
                          (unsigned long long)nt, g->size);
    g->kv = calloc((size_t)(nkv ? nkv : 1), sizeof *g->kv);
    g->t = calloc((size_t)(nt ? nt : 1), sizeof *g->t);
    g->kv_hcap = pow2_cap((int)nkv);
    g->t_hcap = pow2_cap((int)nt);
    g->kv_hash = malloc((size_t)g->kv_hcap * sizeof(int));
    g->t_hash = malloc((size_t)g->t_hcap * sizeof(int));
    if (!g->kv || !g->t || !g->kv_hash || !g->t_hash) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", g->path);
    memset(g->kv_hash, 0xff, (size_t)g->kv_hcap * sizeof(int));
    memset(g->t_hash, 0xff, (size_t)g->t_hcap * sizeof(int));
    for (uint64_t i = 0; i < nkv; i++) {
        int rc = parse_kv(&c, &g->kv[i], i);
        g->n_kv = (int)i + 1;  /* so that close frees what was allocated */
        if (rc) return rc;
        if (hash_insert(g->kv_hash, g->kv_hcap, g->kv[i].key, (int)i, &g->kv[0].key, sizeof *g->kv) >= 0)
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: duplicate key '%s'", g->path, g->kv[i].key);
    }
    g->alignment = DS3_GGUF_DEFAULT_ALIGNMENT;
    const ds3_gguf_kv *al = ds3_gguf_find_kv(g, "general.alignment");
    if (al) {
        if (al->type != GGUF_T_U32)
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: general.alignment has type %s, expected u32", g->path,
                              gguf_type_names[al->type]);
        if (al->v.u == 0 || (al->v.u & (al->v.u - 1)) || al->v.u > (1u << 24))
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: general.alignment %llu is not a power of two up to 2^24",
                              g->path, (unsigned long long)al->v.u);
        g->alignment = (uint32_t)al->v.u;
    }
    for (uint64_t i = 0; i < nt; i++) {
        ds3_gguf_tensor *t = &g->t[i];
        ds3_gguf_str name;
        if (rd_str(&c, &name, "tensor name")) return DS3_ERR_FORMAT;
        int rc = dup_name(&c, &name, &t->name, "tensor", i);
        g->n_t = (int)i + 1;
        if (rc) return rc;
        if (hash_insert(g->t_hash, g->t_hcap, t->name, (int)i, &g->t[0].name, sizeof *g->t) >= 0)
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: duplicate tensor '%s'", g->path, t->name);
        uint32_t nd;
        if (rd_u32(&c, &nd, t->name)) return DS3_ERR_FORMAT;
        if (nd < 1 || nd > DS3_GGUF_MAX_DIMS)
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tensor '%s': %u dimensions (expected 1..%d)", g->path, t->name,
                              nd, DS3_GGUF_MAX_DIMS);
        t->n_dims = (int)nd;
        uint64_t nel = 1;
        for (int d = 0; d < DS3_GGUF_MAX_DIMS; d++) {
            uint64_t v = 1;
            if (d < (int)nd && rd_u64(&c, &v, t->name)) return DS3_ERR_FORMAT;
            if (v > (uint64_t)INT64_MAX || !ds3_mul_ok(nel, v, &nel) || nel > (uint64_t)INT64_MAX)
                return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tensor '%s': dimension %d (%llu) overflows the element count",
                                  g->path, t->name, d, (unsigned long long)v);
            t->ne[d] = (int64_t)v;
        }
        if (rd_u32(&c, &t->type, t->name) || rd_u64(&c, &t->offset, t->name)) return DS3_ERR_FORMAT;
        const int blck = ds3_ggml_blck_size(t->type);
        if (!blck)
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tensor '%s': unknown GGML type %u", g->path, t->name, t->type);
        if (t->ne[0] % blck)
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tensor '%s': ne[0] = %lld is not a multiple of the %s block size %d",
                              g->path, t->name, (long long)t->ne[0], ds3_ggml_type_name(t->type), blck);
        if (!ds3_mul_ok(nel / (uint64_t)blck, ds3_ggml_type_size(t->type), &t->nbytes))
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tensor '%s': byte size overflows", g->path, t->name);
        if (t->offset % g->alignment)
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tensor '%s': data offset %llu is not a multiple of the alignment %u",
                              g->path, t->name, (unsigned long long)t->offset, g->alignment);
        t->dtype = ds3_ggml_to_dtype(t->type);
    }
    /* Data section: the header end rounded up to the alignment. */
    uint64_t doff = ((uint64_t)c.off + g->alignment - 1) / g->alignment * g->alignment;
    if (doff > g->size) {
        if (nt)
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: the data section (at %llu) starts past the end of the file (%zu bytes)",
                              g->path, (unsigned long long)doff, g->size);
        doff = g->size;
    }
    g->data_off = doff;
    g->data_len = g->size - doff;
    ds3_gguf_tensor **by_off = malloc((size_t)(nt ? nt : 1) * sizeof *by_off);
    if (!by_off) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < nt; i++) {
        ds3_gguf_tensor *t = &g->t[i];
        if (t->offset > g->data_len || t->nbytes > g->data_len - t->offset) {
            free(by_off);
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT,
                              "%s: tensor '%s': data [%llu, +%llu) is past the end of the data section (%llu bytes)", g->path,
                              t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                              (unsigned long long)g->data_len);
        }
        t->data = g->base + doff + t->offset;
        by_off[i] = t;
    }
    qsort(by_off, (size_t)nt, sizeof *by_off, cmp_off);
    for (uint64_t i = 1; i < nt; i++)
        if (by_off[i - 1]->offset + by_off[i - 1]->nbytes > by_off[i]->offset) {
            int rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section", g->path,
                                by_off[i - 1]->name, by_off[i]->name);
            free(by_off);
            return rc;
        }
    free(by_off);
    return 0;
}

static ds3_gguf *gguf_new(const char *path) {
    ds3_gguf *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->path = strdup(path ? path : "(memory)");
    if (!g->path) {
        free(g);
        return NULL;
    }
    return g;
}

int ds3_gguf_parse(const void *buf, size_t len, const char *path, ds3_gguf **out, char *err, size_t errlen) {
    *out = NULL;
    ds3_gguf *g = gguf_new(path);
    if (!g) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
    g->base = buf;
    g->size = len;
    int rc = parse(g, err, errlen);
    if (rc) {
        ds3_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

uint64_t ds3_gguf_file_offset(const ds3_gguf *g, const void *p) { return (uint64_t)((const uint8_t *)p - g->base); }

int ds3_gguf_storage(const ds3_gguf *g) { return g->owned ? DS3_GGUF_RAM : g->mapped ? DS3_GGUF_MAPPED : DS3_GGUF_CALLER; }

int ds3_gguf_open(const char *path, int use_mmap, int use_mlock, ds3_gguf **out, char *err, size_t errlen) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: not a regular file", path);
    }
    const size_t size = (size_t)sb.st_size;
    if (size < 24) {
        close(fd);
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: file is %zu bytes, too short for a GGUF header", path, size);
    }
    ds3_gguf *g = gguf_new(path);
    if (!g) {
        close(fd);
        return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
    }
    g->size = size;
    int rc = 0;
    if (use_mmap) {
        void *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (base == MAP_FAILED) rc = ds3_seterr(err, errlen, DS3_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        else {
            g->base = base;
            g->mapped = 1;
            if (use_mlock && mlock(base, size) != 0)
                rc = ds3_seterr(err, errlen, DS3_ERR_IO, "%s: mlock failed: %s (raise ulimit -l)", path, strerror(errno));
        }
    } else {
        uint8_t *buf = ds3_alloc_aligned(size);
        if (!buf) rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: cannot allocate %zu bytes (--no-mmap)", path, size);
        else {
            g->base = buf;
            g->owned = 1;
            size_t got = 0;
            while (got < size && !rc) {
                ssize_t r = pread(fd, buf + got, size - got, (off_t)got);
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) rc = ds3_seterr(err, errlen, DS3_ERR_IO, "%s: short read", path);
                else got += (size_t)r;
            }
        }
    }
    close(fd);
    if (!rc) rc = parse(g, err, errlen);
    if (rc) {
        ds3_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

void ds3_gguf_close(ds3_gguf *g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].arr_str);
    }
    for (int i = 0; i < g->n_t; i++) free(g->t[i].name);
    free(g->kv);
    free(g->t);
    free(g->kv_hash);
    free(g->t_hash);
    if (g->mapped) munmap((void *)g->base, g->size);
    if (g->owned) free((void *)g->base);
    free(g->path);
    free(g);
}

const char *ds3_gguf_path(const ds3_gguf *g) { return g->path; }
uint32_t ds3_gguf_version(const ds3_gguf *g) { return g->version; }
uint32_t ds3_gguf_alignment(const ds3_gguf *g) { return g->alignment; }
uint64_t ds3_gguf_data_bytes(const ds3_gguf *g) { return g->data_len; }
int ds3_gguf_n_kv(const ds3_gguf *g) { return g->n_kv; }
const ds3_gguf_kv *ds3_gguf_kv_at(const ds3_gguf *g, int i) { return i >= 0 && i < g->n_kv ? &g->kv[i] : NULL; }
int ds3_gguf_n_tensors(const ds3_gguf *g) { return g->n_t; }
ds3_gguf_tensor *ds3_gguf_tensor_at(ds3_gguf *g, int i) { return i >= 0 && i < g->n_t ? &g->t[i] : NULL; }

const ds3_gguf_kv *ds3_gguf_find_kv(const ds3_gguf *g, const char *key) {
    if (!g->n_kv) return NULL;
    int i = hash_find(g->kv_hash, g->kv_hcap, key, &g->kv[0].key, sizeof *g->kv);
    return i >= 0 ? &g->kv[i] : NULL;
}
ds3_gguf_tensor *ds3_gguf_find_tensor(ds3_gguf *g, const char *name) {
    if (!g->n_t) return NULL;
    int i = hash_find(g->t_hash, g->t_hcap, name, &g->t[0].name, sizeof *g->t);
    return i >= 0 ? &g->t[i] : NULL;
}

static int is_int_type(uint32_t t) {
    return t == GGUF_T_U8 || t == GGUF_T_I8 || t == GGUF_T_U16 || t == GGUF_T_I16 || t == GGUF_T_U32 || t == GGUF_T_I32 ||
           t == GGUF_T_U64 || t == GGUF_T_I64;
}
static int is_signed(uint32_t t) { return t == GGUF_T_I8 || t == GGUF_T_I16 || t == GGUF_T_I32 || t == GGUF_T_I64; }

int ds3_gguf_get_u32(const ds3_gguf *g, const char *key, uint32_t *v, char *err, size_t errlen) {
    const ds3_gguf_kv *kv = ds3_gguf_find_kv(g, key);
    if (!kv) return 1;
    if (!is_int_type(kv->type))
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: key '%s' has type %s, expected an integer", g->path, key,
                          gguf_type_names[kv->type]);
    if ((is_signed(kv->type) && kv->v.i < 0) || (!is_signed(kv->type) && kv->v.u > UINT32_MAX) ||
        (is_signed(kv->type) && kv->v.i > (int64_t)UINT32_MAX))
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: key '%s': value out of range", g->path, key);
    *v = is_signed(kv->type) ? (uint32_t)kv->v.i : (uint32_t)kv->v.u;
    return 0;
}

int ds3_gguf_get_f32(const ds3_gguf *g, const char *key, float *v, char *err, size_t errlen) {
    const ds3_gguf_kv *kv = ds3_gguf_find_kv(g, key);
    if (!kv) return 1;
    if (kv->type != GGUF_T_F32 && kv->type != GGUF_T_F64)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: key '%s' has type %s, expected f32", g->path, key,
                          gguf_type_names[kv->type]);
    *v = (float)kv->v.f;
    return 0;
}

int ds3_gguf_get_bool(const ds3_gguf *g, const char *key, int *v, char *err, size_t errlen) {
    const ds3_gguf_kv *kv = ds3_gguf_find_kv(g, key);
    if (!kv) return 1;
    if (kv->type != GGUF_T_BOOL)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: key '%s' has type %s, expected bool", g->path, key,
                          gguf_type_names[kv->type]);
    *v = kv->v.u != 0;
    return 0;
}

int ds3_gguf_get_str(const ds3_gguf *g, const char *key, char *buf, size_t cap, char *err, size_t errlen) {
    const ds3_gguf_kv *kv = ds3_gguf_find_kv(g, key);
    if (!kv) return 1;
    if (kv->type != GGUF_T_STRING)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: key '%s' has type %s, expected string", g->path, key,
                          gguf_type_names[kv->type]);
    size_t n = kv->v.str.n < cap - 1 ? (size_t)kv->v.str.n : cap - 1;
    memcpy(buf, kv->v.str.s, n);
    buf[n] = 0;
    return 0;
}

int64_t ds3_gguf_arr_int(const ds3_gguf_kv *kv, uint64_t i) {
    if (kv->type != GGUF_T_ARRAY || i >= kv->arr_n || !is_int_type(kv->arr_type)) return 0;
    const int n = scalar_size[kv->arr_type];
    uint64_t raw = rd_le((const uint8_t *)kv->arr + i * (uint64_t)n, n);
    switch (kv->arr_type) {
    case GGUF_T_I8: return (int8_t)raw;
    case GGUF_T_I16: return (int16_t)raw;
    case GGUF_T_I32: return (int32_t)raw;
    case GGUF_T_I64: return (int64_t)raw;
    default: return (int64_t)raw;
    }
}
