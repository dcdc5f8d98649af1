/* safetensors.c -- validated reader (mmap or RAM) and atomic writer for safetensors files.
 * Reference: github.com/huggingface/safetensors (format), spec/deepseek-v3.md 9.2-9.3.
 * Ownership: ds3_st owns every mapping, buffer, name and the hash index. */
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/common.h"
#include "util/json.h"

#define MAX_HEADER (100u << 20)
#define MAX_SHARDS 100000

typedef struct {
    char *path;
    void *base;       /* mapping or malloc'd buffer holding the whole file */
    size_t size;
    int mapped;
} st_file;

struct ds3_st {
    st_file *files;
    int n_files;
    ds3_st_tensor *t;
    int n, cap;
    int *hash;        /* open addressing, -1 = empty; size hcap (power of 2) */
    int hcap;
};

static const struct {
    const char *s;
    int dt;
    int size;
} DTYPES[] = {
    {"F32", DS3_DT_F32, 4},     {"BF16", DS3_DT_BF16, 2},      {"F16", DS3_DT_F16, 2},
    {"F8_E4M3", DS3_DT_F8E4M3, 1}, {"I32", DS3_DT_I32, 4},     {"F64", DS3_DT_UNSUPPORTED, 8},
    {"I64", DS3_DT_UNSUPPORTED, 8}, {"U64", DS3_DT_UNSUPPORTED, 8}, {"U32", DS3_DT_UNSUPPORTED, 4},
    {"I16", DS3_DT_UNSUPPORTED, 2}, {"U16", DS3_DT_UNSUPPORTED, 2}, {"I8", DS3_DT_UNSUPPORTED, 1},
    {"U8", DS3_DT_UNSUPPORTED, 1}, {"BOOL", DS3_DT_UNSUPPORTED, 1}, {"F8_E5M2", DS3_DT_UNSUPPORTED, 1},
    {"F8_E8M0", DS3_DT_UNSUPPORTED, 1},
};

static uint32_t fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

void ds3_st_free_tensors(ds3_st_tensor *t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++) free(t[i].name);
    free(t);
}

static int cmp_begin(const void *a, const void *b) {
    const ds3_st_tensor *x = *(ds3_st_tensor *const *)a, *y = *(ds3_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

int ds3_st_parse_header(const char *buf, size_t hlen, uint64_t data_len, const char *path,
                        ds3_st_tensor **tensors, int *n_out, char *err, size_t errlen) {
    *tensors = NULL;
    *n_out = 0;
    json_t *j = ds3_json_parse(buf, hlen, path, err, errlen);
    if (!j) return DS3_ERR_FORMAT;
    int rc = DS3_ERR_FORMAT, n = 0;
    ds3_st_tensor *t = NULL;
    ds3_st_tensor **order = NULL;
    if (!json_is_object(j)) {
        ds3_seterr(err, errlen, rc, "%s: safetensors header is not a JSON object", path);
        goto out;
    }
    size_t cap = json_object_size(j);
    t = calloc(cap ? cap : 1, sizeof *t);
    if (!t) {
        rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v)) {
                ds3_seterr(err, errlen, rc, "%s: __metadata__ must be an object", path);
                goto out;
            }
            continue;
        }
        if (!json_is_object(v)) {
            ds3_seterr(err, errlen, rc, "%s: tensor '%.200s': entry is not an object", path, key);
            goto out;
        }
        if (!key[0] || strlen(key) > 1024) {
            ds3_seterr(err, errlen, rc, "%s: tensor name is empty or longer than 1024 bytes", path);
            goto out;
        }
        ds3_st_tensor *x = &t[n];
        const json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
                     *of = json_object_get(v, "data_offsets");
        if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(of) || json_array_size(of) != 2) {
            ds3_seterr(err, errlen, rc, "%s: tensor '%.200s': needs string 'dtype', array 'shape', 2-element 'data_offsets'",
                       path, key);
            goto out;
        }
        int esize = 0;
        x->dtype = -2;
        for (size_t k = 0; k < sizeof DTYPES / sizeof DTYPES[0]; k++)
            if (!strcmp(json_string_value(dt), DTYPES[k].s)) {
                x->dtype = DTYPES[k].dt;
                esize = DTYPES[k].size;
                snprintf(x->dtype_str, sizeof x->dtype_str, "%s", DTYPES[k].s);
            }
        if (x->dtype == -2) {
            ds3_seterr(err, errlen, rc, "%s: tensor '%.200s': unknown dtype '%.32s'", path, key, json_string_value(dt));
            goto out;
        }
        size_t nd = json_array_size(sh);
        if (nd > DS3_ST_MAX_DIMS) {
            ds3_seterr(err, errlen, rc, "%s: tensor '%.200s': %zu dimensions (at most %d)", path, key, nd, DS3_ST_MAX_DIMS);
            goto out;
        }
        uint64_t nel = 1;
        x->ndim = (int)nd;
        for (size_t k = 0; k < nd; k++) {
            const json_t *d = json_array_get(sh, k);
            if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > (1LL << 40)) {
                ds3_seterr(err, errlen, rc, "%s: tensor '%.200s': shape[%zu] is not a valid size", path, key, k);
                goto out;
            }
            x->shape[k] = json_integer_value(d);
            if (!ds3_mul_ok(nel, (uint64_t)x->shape[k], &nel)) {
                ds3_seterr(err, errlen, rc, "%s: tensor '%.200s': shape overflows", path, key);
                goto out;
            }
        }
        const json_t *b = json_array_get(of, 0), *e = json_array_get(of, 1);
        if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
            json_integer_value(e) < json_integer_value(b)) {
            ds3_seterr(err, errlen, rc, "%s: tensor '%.200s': bad data_offsets", path, key);
            goto out;
        }
        x->begin = (uint64_t)json_integer_value(b);
        x->end = (uint64_t)json_integer_value(e);
        uint64_t bytes;
        if (!ds3_mul_ok(nel, (uint64_t)esize, &bytes) || bytes != x->end - x->begin) {
            ds3_seterr(err, errlen, rc,
                       "%s: tensor '%.200s': dtype %s x shape needs %llu bytes but data_offsets span %llu", path, key,
                       x->dtype_str, (unsigned long long)(nel * esize), (unsigned long long)(x->end - x->begin));
            goto out;
        }
        if (x->end > data_len) {
            ds3_seterr(err, errlen, rc,
                       "%s: tensor '%.200s': data_offsets end %llu is past the end of the data (%llu bytes; truncated file?)",
                       path, key, (unsigned long long)x->end, (unsigned long long)data_len);
            goto out;
        }
        x->name = strdup(key);
        if (!x->name) {
            rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", path);
            goto out;
        }
        n++;
    }
    /* Non-overlap: sort by begin and compare neighbours. */
    order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) {
        rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < n; i++) order[i] = &t[i];
    qsort(order, (size_t)n, sizeof *order, cmp_begin);
    /* Compare each non-empty tensor with the furthest-reaching one before it (not just its
     * neighbour: an empty tensor sorted in between must not hide an overlap). */
    const ds3_st_tensor *reach = NULL;
    for (int i = 0; i < n; i++) {
        if (order[i]->end == order[i]->begin) continue;
        if (reach && order[i]->begin < reach->end) {
            ds3_seterr(err, errlen, rc, "%s: tensors '%.200s' and '%.200s' overlap in the data buffer", path,
                       reach->name, order[i]->name);
            goto out;
        }
        if (!reach || order[i]->end > reach->end) reach = order[i];
    }
    rc = 0;
out:
    free(order);
    json_decref(j);
    if (rc) ds3_st_free_tensors(t, n);
    else {
        *tensors = t;
        *n_out = n;
    }
    return rc;
}

static int hash_insert(ds3_st *st, int idx) {
    uint32_t m = (uint32_t)st->hcap - 1, h = fnv1a(st->t[idx].name) & m;
    while (st->hash[h] >= 0) {
        if (!strcmp(st->t[st->hash[h]].name, st->t[idx].name)) return st->hash[h];
        h = (h + 1) & m;
    }
    st->hash[h] = idx;
    return -1;
}

static int open_file(ds3_st *st, const char *path, const ds3_st_opts *o, char *err, size_t errlen) {
    /* O_NONBLOCK: a FIFO planted in the folder must not hang the open; S_ISREG refuses it. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: file is %zu bytes, too short for a safetensors header", path, size);
    }
    /* Registered before anything can fail, so ds3_st_close releases whatever was acquired. */
    int fi = st->n_files++;
    st_file *f = &st->files[fi];
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    f->size = size;
    if (!f->path) {
        close(fd);
        return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", path);
    }
    if (o->use_mmap) {
        void *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (base == MAP_FAILED) {
            close(fd);
            return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        }
        f->base = base;
        f->mapped = 1;
        if (o->use_mlock && mlock(f->base, size) != 0) {
            close(fd);
            return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: mlock failed: %s (raise ulimit -l)", path, strerror(errno));
        }
    } else {
        f->base = ds3_alloc_aligned(size);
        if (!f->base) {
            close(fd);
            return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: cannot allocate %zu bytes (--no-mmap)", path, size);
        }
        size_t got = 0;
        while (got < size) {
            ssize_t r = pread(fd, (char *)f->base + got, size - got, (off_t)got);
            if (r <= 0) {
                if (r < 0 && errno == EINTR) continue;
                close(fd);
                return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: short read", path);
            }
            got += (size_t)r;
        }
    }
    close(fd);
    const uint8_t *p = f->base;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)p[i] << (8 * i);
    if (hlen > size - 8)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: header length %llu is past the end of the file (%zu bytes)",
                          path, (unsigned long long)hlen, size);
    if (hlen > MAX_HEADER)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: header length %llu is over the %u-byte limit", path,
                          (unsigned long long)hlen, MAX_HEADER);
    ds3_st_tensor *t;
    int n;
    int rc = ds3_st_parse_header((const char *)p + 8, (size_t)hlen, size - 8 - hlen, path, &t, &n, err, errlen);
    if (rc) return rc;
    size_t data_off = 8 + (size_t)hlen;
    for (int i = 0; i < n; i++) {
        size_t es = t[i].dtype >= 0 ? ds3_dtype_size((ds3_dtype)t[i].dtype) : 1;
        if ((data_off + t[i].begin) % es != 0) {
            ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tensor '%.200s' is not aligned to its %zu-byte elements", path,
                       t[i].name, es);
            ds3_st_free_tensors(t, n);
            return DS3_ERR_FORMAT;
        }
        t[i].data = p + data_off + t[i].begin;
        t[i].file = fi;
    }
    /* Append to the table, refusing duplicates across shards. */
    if (st->n + n > st->cap) {
        int nc = (st->n + n) * 2;
        ds3_st_tensor *nt = realloc(st->t, (size_t)nc * sizeof *nt);
        if (!nt) {
            ds3_st_free_tensors(t, n);
            return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
        }
        st->t = nt;
        st->cap = nc;
    }
    if (n) memcpy(st->t + st->n, t, (size_t)n * sizeof *t); /* st->t is still NULL after empty shards */
    free(t);
    st->n += n;
    return 0;
}

static int build_index(ds3_st *st, char *err, size_t errlen) {
    int hc = 16;
    while (hc < st->n * 2) hc *= 2;
    free(st->hash);
    st->hash = malloc((size_t)hc * sizeof(int));
    if (!st->hash) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
    st->hcap = hc;
    memset(st->hash, 0xff, (size_t)hc * sizeof(int));
    for (int i = 0; i < st->n; i++) {
        int prev = hash_insert(st, i);
        if (prev >= 0)
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "tensor '%.200s' appears twice: in %s and in %s", st->t[i].name,
                              st->files[st->t[prev].file].path, st->files[st->t[i].file].path);
    }
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int ds3_st_open_dir(const char *dir, const ds3_st_opts *o, ds3_st **out, char *err, size_t errlen) {
    *out = NULL;
    ds3_st *st = calloc(1, sizeof *st);
    if (!st) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
    char path[4096];
    char **names = NULL;
    int n_names = 0, rc = 0;
    json_t *idx = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        rc = ds3_seterr(err, errlen, DS3_ERR_IO, "%s: not a directory", dir);
        goto fail;
    }
    ds3_path_join(path, sizeof path, dir, "model.safetensors.index.json");
    if (access(path, F_OK) == 0) {
        size_t len;
        char *text = ds3_read_file(path, &len, 256u << 20, err, errlen);
        if (!text) {
            rc = DS3_ERR_IO;
            goto fail;
        }
        idx = ds3_json_parse(text, len, path, err, errlen);
        free(text);
        if (!idx) {
            rc = DS3_ERR_FORMAT;
            goto fail;
        }
        json_t *wm = json_object_get(idx, "weight_map");
        if (!json_is_object(wm) || json_object_size(wm) == 0) {
            rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: missing or empty 'weight_map' object", path);
            goto fail;
        }
        names = calloc(json_object_size(wm), sizeof *names);
        if (!names) {
            rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        const char *k;
        json_t *v;
        json_object_foreach(wm, k, v) {
            if (!json_is_string(v)) {
                rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: weight_map['%.200s'] is not a string", path, k);
                goto fail;
            }
            const char *f = json_string_value(v);
            if (!f[0] || strchr(f, '/') || !strcmp(f, "..") || !strcmp(f, ".")) {
                rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: weight_map['%.200s'] = '%.200s' is not a plain file name",
                                path, k, f);
                goto fail;
            }
            int seen = 0;
            for (int i = 0; i < n_names && !seen; i++) seen = !strcmp(names[i], f);
            if (!seen) names[n_names++] = (char *)f;
        }
        qsort(names, (size_t)n_names, sizeof *names, cmp_str);
    } else {
        ds3_path_join(path, sizeof path, dir, "model.safetensors");
        if (access(path, F_OK) == 0) {
            names = calloc(1, sizeof *names);
            if (!names || !(names[0] = strdup("model.safetensors"))) {
                rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
                goto fail;
            }
            n_names = 1;
        } else {
            DIR *d = opendir(dir);
            struct dirent *e = NULL;
            int cap = 0;
            while (d && (e = readdir(d))) {
                size_t l = strlen(e->d_name);
                if (l > 12 && !strcmp(e->d_name + l - 12, ".safetensors")) {
                    if (n_names == cap) {
                        int nc = cap ? cap * 2 : 16;
                        char **nn = realloc(names, (size_t)nc * sizeof *names);
                        if (!nn) break;
                        names = nn;
                        cap = nc;
                    }
                    if (!(names[n_names] = strdup(e->d_name))) break;
                    n_names++;
                }
            }
            if (d) closedir(d);
            if (e) {
                rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory listing the folder", dir);
                goto fail;
            }
            if (n_names == 0) {
                rc = ds3_seterr(err, errlen, DS3_ERR_IO, "%s: no model.safetensors.index.json and no *.safetensors files", dir);
                goto fail;
            }
            qsort(names, (size_t)n_names, sizeof *names, cmp_str);
        }
    }
    if (n_names > MAX_SHARDS) {
        rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: too many shards (%d)", dir, n_names);
        goto fail;
    }
    st->files = calloc((size_t)n_names, sizeof *st->files);
    if (!st->files) {
        rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n_names; i++) {
        if (ds3_path_join(path, sizeof path, dir, names[i]) != 0) {
            rc = ds3_seterr(err, errlen, DS3_ERR_IO, "%s: path of shard '%.200s' is too long", dir, names[i]);
            goto fail;
        }
        if (access(path, F_OK) != 0) {
            /* Name one tensor the index puts there, so the message says what is lost. */
            const char *k, *lost = "?";
            json_t *v;
            json_object_foreach(json_object_get(idx, "weight_map"), k, v) {
                if (!strcmp(json_string_value(v), names[i])) {
                    lost = k;
                    break;
                }
            }
            rc = ds3_seterr(err, errlen, DS3_ERR_IO, "%s: shard '%s' named by the index (for tensor '%.200s' and maybe more) is missing",
                            dir, names[i], lost);
            goto fail;
        }
        if ((rc = open_file(st, path, o, err, errlen))) goto fail;
    }
    if ((rc = build_index(st, err, errlen))) goto fail;
    if (idx) {
        /* Every name in the index must be in the shard the index names. */
        json_t *wm = json_object_get(idx, "weight_map");
        const char *k;
        json_t *v;
        json_object_foreach(wm, k, v) {
            const ds3_st_tensor *t = ds3_st_find(st, k);
            const char *f = json_string_value(v);
            const char *base = t ? strrchr(st->files[t->file].path, '/') : NULL;
            base = base ? base + 1 : (t ? st->files[t->file].path : NULL);
            if (!t || strcmp(base, f) != 0) {
                rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s/%s: tensor '%.200s' listed in the index is not in that shard",
                                dir, f, k);
                goto fail;
            }
        }
    }
    if (!idx)
        for (int i = 0; i < n_names; i++) free(names[i]);
    free(names);
    json_decref(idx);
    *out = st;
    return 0;
fail:
    if (!idx && names)
        for (int i = 0; i < n_names; i++) free(names[i]);
    free(names);
    json_decref(idx);
    ds3_st_close(st);
    return rc ? rc : DS3_ERR_FORMAT;
}

void ds3_st_close(ds3_st *st) {
    if (!st) return;
    for (int i = 0; i < st->n_files; i++) {
        st_file *f = &st->files[i];
        if (f->base) {
            if (f->mapped) munmap(f->base, f->size);
            else free(f->base);
        }
        free(f->path);
    }
    free(st->files);
    ds3_st_free_tensors(st->t, st->n);
    free(st->hash);
    free(st);
}

const ds3_st_tensor *ds3_st_find(const ds3_st *st, const char *name) {
    if (!st->hcap) return NULL;
    uint32_t m = (uint32_t)st->hcap - 1, h = fnv1a(name) & m;
    while (st->hash[h] >= 0) {
        if (!strcmp(st->t[st->hash[h]].name, name)) return &st->t[st->hash[h]];
        h = (h + 1) & m;
    }
    return NULL;
}

ds3_st_tensor *ds3_st_find_mut(ds3_st *st, const char *name) { return (ds3_st_tensor *)ds3_st_find(st, name); }
int ds3_st_n_tensors(const ds3_st *st) { return st->n; }
ds3_st_tensor *ds3_st_tensor_at(ds3_st *st, int i) { return &st->t[i]; }
const char *ds3_st_file_path(const ds3_st *st, int file) { return st->files[file].path; }

uint64_t ds3_st_total_bytes(const ds3_st *st) {
    uint64_t s = 0;
    for (int i = 0; i < st->n; i++) s += st->t[i].end - st->t[i].begin;
    return s;
}

int ds3_st_write(const char *path, const ds3_st_write_tensor *t, int n, char *err, size_t errlen) {
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t nel = 1;
        json_t *shape = json_array();
        for (int k = 0; k < t[i].ndim; k++) {
            nel *= (uint64_t)t[i].shape[k];
            json_array_append_new(shape, json_integer(t[i].shape[k]));
        }
        uint64_t bytes = nel * ds3_dtype_size((ds3_dtype)t[i].dtype);
        const char *ds = t[i].dtype == DS3_DT_F32 ? "F32" : t[i].dtype == DS3_DT_BF16 ? "BF16"
                       : t[i].dtype == DS3_DT_F16 ? "F16" : t[i].dtype == DS3_DT_F8E4M3 ? "F8_E4M3" : "I32";
        json_object_set_new(h, t[i].name, json_pack("{s:s,s:o,s:[I,I]}", "dtype", ds, "shape", shape, "data_offsets",
                                                    (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
    }
    char *hs = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!hs) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", path);
    size_t hl = strlen(hs), hpad = (hl + 7) & ~(size_t)7;
    size_t total = 8 + hpad + off;
    char *buf = malloc(total);
    if (!buf) {
        free(hs);
        return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, total);
    }
    for (int i = 0; i < 8; i++) buf[i] = (char)((uint64_t)hpad >> (8 * i));
    memcpy(buf + 8, hs, hl);
    memset(buf + 8 + hl, ' ', hpad - hl);
    free(hs);
    char *p = buf + 8 + hpad;
    for (int i = 0; i < n; i++) {
        uint64_t nel = 1;
        for (int k = 0; k < t[i].ndim; k++) nel *= (uint64_t)t[i].shape[k];
        size_t bytes = nel * ds3_dtype_size((ds3_dtype)t[i].dtype);
        memcpy(p, t[i].data, bytes);
        p += bytes;
    }
    int rc = ds3_write_file_atomic(path, buf, total, err, errlen);
    free(buf);
    return rc;
}
