/* safetensors.h -- read Hugging Face safetensors checkpoints: one file or sharded through
 * model.safetensors.index.json; memory-mapped read-only (default), mlocked, or read into RAM.
 * Every header is validated before any tensor is touched: header length inside the file, JSON
 * well-formed without duplicate names, dtype known, shape x dtype size == byte length, offsets
 * inside the data buffer and non-overlapping, data aligned to the element size.
 * Reference: spec/deepseek-v3.md section 9.3 (format), 9.2 (index).
 *
 * Ownership: ds3_st owns its mappings/buffers and tensor table; tensor data pointers are valid
 * until ds3_st_close(). Not thread-safe to open/close; lookups are read-only and safe. */
#ifndef DS3_SAFETENSORS_H
#define DS3_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

#define DS3_ST_MAX_DIMS 8
#define DS3_DT_UNSUPPORTED (-1)  /* a dtype ds3 reads no tensor of (I8, F64, ...) */

typedef struct ds3_st_tensor {
    char *name;
    int dtype;                  /* ds3_dtype, or DS3_DT_UNSUPPORTED */
    char dtype_str[16];
    int ndim;
    int64_t shape[DS3_ST_MAX_DIMS];
    uint64_t begin, end;        /* byte offsets inside the file's data buffer */
    const void *data;           /* begin of the bytes (mapped or loaded) */
    int file;                   /* index into the shard list */
    int used;                   /* set by the model binder */
} ds3_st_tensor;

typedef struct ds3_st ds3_st;

typedef struct {
    int use_mmap;   /* 1: mmap; 0: read into RAM */
    int use_mlock;  /* 1: mlock the mappings */
} ds3_st_opts;

/* Open a checkpoint folder: model.safetensors.index.json if present, else model.safetensors,
 * else every *.safetensors in the folder (sorted). */
int ds3_st_open_dir(const char *dir, const ds3_st_opts *o, ds3_st **out, char *err, size_t errlen);
void ds3_st_close(ds3_st *st);

const ds3_st_tensor *ds3_st_find(const ds3_st *st, const char *name);
ds3_st_tensor *ds3_st_find_mut(ds3_st *st, const char *name);
int ds3_st_n_tensors(const ds3_st *st);
ds3_st_tensor *ds3_st_tensor_at(ds3_st *st, int i);
const char *ds3_st_file_path(const ds3_st *st, int file);
uint64_t ds3_st_total_bytes(const ds3_st *st);

/* Validate one header already in memory. `buf` = the JSON header (hlen bytes), data_len = bytes of
 * the data buffer. On success fills *tensors (malloc'd, names malloc'd) and *n. Exposed for the
 * fuzzer and the tests. */
int ds3_st_parse_header(const char *buf, size_t hlen, uint64_t data_len, const char *path,
                        ds3_st_tensor **tensors, int *n, char *err, size_t errlen);
void ds3_st_free_tensors(ds3_st_tensor *t, int n);

/* Writer: tensors given as (name, dtype, shape, data) are written as one .safetensors file,
 * atomically (temp + fsync + rename), header padded to 8 bytes, names in the given order. */
typedef struct {
    const char *name;
    int dtype;  /* ds3_dtype */
    int ndim;
    int64_t shape[DS3_ST_MAX_DIMS];
    const void *data;
} ds3_st_write_tensor;
int ds3_st_write(const char *path, const ds3_st_write_tensor *t, int n, char *err, size_t errlen);

#endif
