/* gguf_write.c -- GGUF v3 writer: key/values in the order added, tensor infos, data aligned to
 * 32 bytes. Tensor data is given as a buffer or produced by a callback at write time (so a
 * converter never holds the whole output in memory). Written to path.tmp.<pid>, fsynced, renamed
 * (atomic like ds3_write_file_atomic). Reference: ggml/docs/gguf.md. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "io/gguf.h"
#include "util/common.h"

#define ALIGN 32

typedef struct {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[4];
    const void *data;
    size_t nbytes;
    int own;
    ds3_gguf_fill_fn fill;
    void *ctx;
} wtensor;

struct ds3_gguf_writer {
    uint8_t *kv;
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    wtensor *t;
    int n_t, t_cap;
    int oom;
};

ds3_gguf_writer *ds3_gguf_writer_new(void) { return calloc(1, sizeof(ds3_gguf_writer)); }

void ds3_gguf_writer_free(ds3_gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        if (w->t[i].own) free((void *)w->t[i].data);
    }
    free(w->t);
    free(w->kv);
    free(w);
}

static void put(ds3_gguf_writer *w, const void *p, size_t n) {
    if (w->oom) return;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        uint8_t *nb = realloc(w->kv, cap);
        if (!nb) {
            w->oom = 1;
            return;
        }
        w->kv = nb;
        w->kv_cap = cap;
    }
    if (n) memcpy(w->kv + w->kv_len, p, n); /* p may be NULL for an empty string or array */
    w->kv_len += n;
}
static void put_u32(ds3_gguf_writer *w, uint32_t v) { put(w, &v, 4); } /* little-endian hosts only (x86, arm64) */
static void put_u64(ds3_gguf_writer *w, uint64_t v) { put(w, &v, 8); }
static void put_str(ds3_gguf_writer *w, const char *s, size_t n) {
    put_u64(w, n);
    put(w, s, n);
}
static void key(ds3_gguf_writer *w, const char *k, uint32_t type) {
    put_str(w, k, strlen(k));
    put_u32(w, type);
    w->n_kv++;
}

void ds3_gguf_w_u32(ds3_gguf_writer *w, const char *k, uint32_t v) { key(w, k, GGUF_T_U32); put_u32(w, v); }
void ds3_gguf_w_i32(ds3_gguf_writer *w, const char *k, int32_t v) { key(w, k, GGUF_T_I32); put(w, &v, 4); }
void ds3_gguf_w_f32(ds3_gguf_writer *w, const char *k, float v) { key(w, k, GGUF_T_F32); put(w, &v, 4); }
void ds3_gguf_w_bool(ds3_gguf_writer *w, const char *k, int v) {
    uint8_t b = v != 0;
    key(w, k, GGUF_T_BOOL);
    put(w, &b, 1);
}
void ds3_gguf_w_str(ds3_gguf_writer *w, const char *k, const char *s) { key(w, k, GGUF_T_STRING); put_str(w, s, strlen(s)); }
void ds3_gguf_w_arr_str(ds3_gguf_writer *w, const char *k, const char *const *s, const size_t *lens, uint64_t n) {
    key(w, k, GGUF_T_ARRAY);
    put_u32(w, GGUF_T_STRING);
    put_u64(w, n);
    for (uint64_t i = 0; i < n; i++) put_str(w, s[i], lens ? lens[i] : strlen(s[i]));
}
void ds3_gguf_w_arr_i32(ds3_gguf_writer *w, const char *k, const int32_t *v, uint64_t n) {
    key(w, k, GGUF_T_ARRAY);
    put_u32(w, GGUF_T_I32);
    put_u64(w, n);
    put(w, v, (size_t)n * 4);
}

static wtensor *add_t(ds3_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne, size_t nbytes) {
    if (w->n_t == w->t_cap) {
        int cap = w->t_cap ? 2 * w->t_cap : 256;
        wtensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) {
            w->oom = 1;
            return NULL;
        }
        w->t = nt;
        w->t_cap = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) {
        w->oom = 1;
        return NULL;
    }
    w->n_t++;
    t->type = type;
    t->n_dims = n_dims;
    for (int i = 0; i < 4; i++) t->ne[i] = i < n_dims ? ne[i] : 1;
    t->nbytes = nbytes;
    return t;
}

void ds3_gguf_w_tensor(ds3_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne, const void *data,
                       size_t nbytes, int own) {
    wtensor *t = add_t(w, name, type, n_dims, ne, nbytes);
    if (!t) {
        if (own) free((void *)data);
        return;
    }
    t->data = data;
    t->own = own;
}

void ds3_gguf_w_tensor_cb(ds3_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne, size_t nbytes,
                          ds3_gguf_fill_fn fill, void *ctx) {
    wtensor *t = add_t(w, name, type, n_dims, ne, nbytes);
    if (!t) return;
    t->fill = fill;
    t->ctx = ctx;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t r = write(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

int ds3_gguf_writer_write(ds3_gguf_writer *w, const char *path, char *err, size_t errlen) {
    if (w->oom) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory building the GGUF header", path);
    /* header */
    ds3_gguf_writer *h = ds3_gguf_writer_new();
    if (!h) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
    put(h, "GGUF", 4);
    put_u32(h, 3);
    put_u64(h, (uint64_t)w->n_t);
    put_u64(h, w->n_kv);
    put(h, w->kv, w->kv_len);
    uint64_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(h, t->name, strlen(t->name));
        put_u32(h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(h, (uint64_t)t->ne[d]);
        put_u32(h, t->type);
        put_u64(h, off);
        off += (t->nbytes + ALIGN - 1) / ALIGN * ALIGN;
    }
    static const uint8_t zeros[ALIGN];
    put(h, zeros, (ALIGN - h->kv_len % ALIGN) % ALIGN);
    if (h->oom) {
        ds3_gguf_writer_free(h);
        return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", path);
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ds3_gguf_writer_free(h);
        return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    int rc = write_all(fd, h->kv, h->kv_len) ? DS3_ERR_IO : 0;
    ds3_gguf_writer_free(h);
    for (int i = 0; i < w->n_t && !rc; i++) {
        wtensor *t = &w->t[i];
        const void *data = t->data;
        void *buf = NULL;
        if (t->fill) {
            buf = malloc(t->nbytes ? t->nbytes : 1);
            if (!buf) {
                rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory for tensor '%s'", path, t->name);
                break;
            }
            if ((rc = t->fill(t->ctx, buf, t->nbytes, err, errlen))) {
                free(buf);
                break;
            }
            data = buf;
        }
        if (write_all(fd, data, t->nbytes) || write_all(fd, zeros, (ALIGN - t->nbytes % ALIGN) % ALIGN)) rc = DS3_ERR_IO;
        free(buf);
        if (t->own) {
            free((void *)t->data);
            t->data = NULL;
            t->own = 0;
        }
    }
    if (!rc && fsync(fd)) rc = DS3_ERR_IO;
    if (close(fd) && !rc) rc = DS3_ERR_IO;
    if (rc == DS3_ERR_IO) ds3_seterr(err, errlen, DS3_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path)) rc = ds3_seterr(err, errlen, DS3_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}
