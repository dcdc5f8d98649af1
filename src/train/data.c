/* data.c -- train/validation token streams and random batches (see data.h for the rules).
 * Owned by the training engineer. */
#include "train/data.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "train/tmodel.h"
#include "util/common.h"

size_t ds3_split_point(const unsigned char *buf, size_t size) {
    size_t S = size / 10 * 9 + (size % 10) * 9 / 10; /* floor(size * 9 / 10) without overflow */
    while (S < size && (buf[S] & 0xC0) == 0x80) S++;
    return S;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Expand folders into their regular files; sort the file list byte-wise. */
static int expand(const char *const *in, int n, char ***out, int *nout, char *err, size_t errlen) {
    int cap = 16, k = 0;
    char **v = malloc((size_t)cap * sizeof *v);
    for (int i = 0; i < n; i++) {
        struct stat sb;
        if (stat(in[i], &sb)) {
            free(v);
            return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: no such file or folder", in[i]);
        }
        if (S_ISDIR(sb.st_mode)) {
            DIR *dir = opendir(in[i]);
            struct dirent *e;
            while (dir && (e = readdir(dir))) {
                if (e->d_name[0] == '.') continue;
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", in[i], e->d_name);
                if (stat(p, &sb) || !S_ISREG(sb.st_mode)) continue;
                if (ends_with(p, ".md")) continue; /* READMEs next to corpora */
                if (k == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
                v[k++] = strdup(p);
            }
            if (dir) closedir(dir);
        } else {
            if (k == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            v[k++] = strdup(in[i]);
        }
    }
    qsort(v, (size_t)k, sizeof *v, cmp_str);
    *out = v, *nout = k;
    return 0;
}

typedef struct { int32_t *t; size_t n, cap; } tvec;
static void tv_add(tvec *v, const int32_t *t, size_t n) {
    if (v->n + n > v->cap) {
        v->cap = (v->n + n) * 2 + 1024;
        v->t = realloc(v->t, v->cap * sizeof *v->t);
    }
    memcpy(v->t + v->n, t, n * sizeof *t);
    v->n += n;
}
typedef struct { char *b; size_t n, cap; } bvec;
static void bv_add(bvec *v, const char *b, size_t n) {
    if (v->n + n > v->cap) {
        v->cap = (v->n + n) * 2 + 1024;
        v->b = realloc(v->b, v->cap);
    }
    memcpy(v->b + v->n, b, n);
    v->n += n;
}

static int tokenize(const char *text, size_t len, const ds3_tokenizer *tok, int off, tvec *out, char *err,
                    size_t errlen) {
    if (!tok) {
        int32_t buf[4096];
        for (size_t i = 0; i < len;) {
            size_t k = 0;
            for (; k < 4096 && i < len; k++, i++) buf[k] = (unsigned char)text[i] + off;
            tv_add(out, buf, k);
        }
        return 0;
    }
    /* encode in pieces cut at newlines (~1 MB) so memory stays bounded */
    size_t i = 0;
    while (i < len) {
        size_t j = i + (1u << 20) < len ? i + (1u << 20) : len;
        while (j < len && text[j - 1] != '\n') j++;
        int32_t *ids;
        size_t n;
        int rc = ds3_tokenizer_encode(tok, text + i, j - i, 0, 1, &ids, &n, err, errlen);
        if (rc) return rc;
        tv_add(out, ids, n);
        free(ids);
        i = j;
    }
    return 0;
}

int ds3_tokens_load(const char *path, int32_t **t, size_t *n, char *err, size_t errlen) {
    size_t len;
    char *b = ds3_read_file(path, &len, (size_t)1 << 40, err, errlen);
    if (!b) return DS3_ERR_IO;
    if (len % 4) {
        free(b);
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: size %zu is not a multiple of 4 (uint32 token ids)", path, len);
    }
    *n = len / 4;
    *t = malloc(len ? len : 4);
    for (size_t i = 0; i < *n; i++) {
        const unsigned char *p = (const unsigned char *)b + 4 * i;
        uint32_t v = p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        (*t)[i] = v > 0x7fffffff ? -1 : (int32_t)v;
    }
    free(b);
    return 0;
}

int ds3_tokens_save(const char *path, const int32_t *t, size_t n, char *err, size_t errlen) {
    unsigned char *b = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)t[i];
        b[4 * i] = v & 255, b[4 * i + 1] = (v >> 8) & 255, b[4 * i + 2] = (v >> 16) & 255, b[4 * i + 3] = v >> 24;
    }
    int rc = ds3_write_file_atomic(path, b, n * 4, err, errlen);
    free(b);
    return rc;
}

int ds3_tdata_load(ds3_tdata *d, const char *const *files, int n_files, const char *val_file, const ds3_tokenizer *tok,
                   int byte_offset, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    char **fl;
    int nf, rc = expand(files, n_files, &fl, &nf, err, errlen);
    if (rc) return rc;
    tvec tr = {0}, va = {0};
    bvec ttext = {0}, vtext = {0};
    for (int i = 0; i < nf && !rc; i++) {
        if (ends_with(fl[i], ".bin")) {
            int32_t *t;
            size_t n;
            if ((rc = ds3_tokens_load(fl[i], &t, &n, err, errlen))) break;
            size_t S = val_file ? n : n / 10 * 9 + (n % 10) * 9 / 10;
            tv_add(&tr, t, S);
            tv_add(&va, t + S, n - S);
            free(t);
        } else {
            size_t len;
            char *b = ds3_read_file(fl[i], &len, (size_t)1 << 40, err, errlen);
            if (!b) { rc = DS3_ERR_IO; break; }
            size_t S = val_file ? len : ds3_split_point((const unsigned char *)b, len);
            bv_add(&ttext, b, S);
            bv_add(&vtext, b + S, len - S);
            free(b);
        }
    }
    if (!rc && ttext.n) rc = tokenize(ttext.b, ttext.n, tok, byte_offset, &tr, err, errlen);
    if (!rc && vtext.n) rc = tokenize(vtext.b, vtext.n, tok, byte_offset, &va, err, errlen);
    if (!rc && val_file) {
        if (ends_with(val_file, ".bin")) {
            int32_t *t;
            size_t n;
            if (!(rc = ds3_tokens_load(val_file, &t, &n, err, errlen))) tv_add(&va, t, n), free(t);
        } else {
            size_t len;
            char *b = ds3_read_file(val_file, &len, (size_t)1 << 40, err, errlen);
            if (!b) rc = DS3_ERR_IO;
            else rc = tokenize(b, len, tok, byte_offset, &va, err, errlen), free(b);
        }
    }
    free(ttext.b), free(vtext.b);
    for (int i = 0; i < nf; i++) free(fl[i]);
    free(fl);
    if (rc) {
        free(tr.t), free(va.t);
        return rc;
    }
    d->train = tr.t, d->n_train = tr.n, d->val = va.t, d->n_val = va.n;
    d->max_id = -1;
    for (size_t i = 0; i < tr.n; i++) d->max_id = tr.t[i] > d->max_id ? tr.t[i] : d->max_id;
    for (size_t i = 0; i < va.n; i++) d->max_id = va.t[i] > d->max_id ? va.t[i] : d->max_id;
    for (size_t i = 0; i < tr.n; i++)
        if (tr.t[i] < 0) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "training data: token id out of range at %zu", i);
    return 0;
}

void ds3_tdata_free(ds3_tdata *d) {
    free(d->train), free(d->val);
    memset(d, 0, sizeof *d);
}

void ds3_tdata_batch(const ds3_tdata *d, uint64_t *rng, int B, int T, int32_t *inp, int32_t *tgt) {
    const uint64_t span = d->n_train - (size_t)T; /* window start in [0, n_train - T - 1] */
    for (int b = 0; b < B; b++) {
        const size_t o = (size_t)(ds3_rng_next(rng) % span);
        memcpy(inp + (size_t)b * T, d->train + o, (size_t)T * sizeof *inp);
        memcpy(tgt + (size_t)b * T, d->train + o + 1, (size_t)T * sizeof *tgt);
    }
}
