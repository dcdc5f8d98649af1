/* gguf.h -- read and write GGUF files (llama.cpp's model format, versions 2 and 3).
 *
 * Reader: the file is memory-mapped read-only (or read into RAM) and the whole header is
 * validated before anything is used: magic, version, counts against the bytes that remain,
 * every string length and array length inside the file, value types known, no nested arrays,
 * keys and tensor names unique, general.alignment a power of two, tensor dims 1..4 with
 * non-negative extents whose product does not overflow, ne[0] a multiple of the type's block
 * size, data offsets aligned, inside the data section and non-overlapping, types known.
 * Reference: docs/gguf.md, ggml/docs/gguf.md, /work/shared/spec/gguf-deepseek2.md.
 *
 * Ownership: ds3_gguf owns its mapping (or buffer), its key/value table and tensor table;
 * every pointer handed out (strings, arrays, tensor data) is valid until ds3_gguf_close().
 * Lookups are read-only and thread-safe. */
#ifndef DS3_GGUF_H
#define DS3_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* GGUF value types */
enum {
    GGUF_T_U8 = 0, GGUF_T_I8 = 1, GGUF_T_U16 = 2, GGUF_T_I16 = 3, GGUF_T_U32 = 4, GGUF_T_I32 = 5,
    GGUF_T_F32 = 6, GGUF_T_BOOL = 7, GGUF_T_STRING = 8, GGUF_T_ARRAY = 9, GGUF_T_U64 = 10,
    GGUF_T_I64 = 11, GGUF_T_F64 = 12, GGUF_T_COUNT
};

/* GGML tensor types (the subset with known layouts; others are rejected as unknown). */
enum {
    GGML_T_F32 = 0, GGML_T_F16 = 1, GGML_T_Q4_0 = 2, GGML_T_Q4_1 = 3, GGML_T_Q5_0 = 6, GGML_T_Q5_1 = 7,
    GGML_T_Q8_0 = 8, GGML_T_Q8_1 = 9, GGML_T_Q2_K = 10, GGML_T_Q3_K = 11, GGML_T_Q4_K = 12, GGML_T_Q5_K = 13,
    GGML_T_Q6_K = 14, GGML_T_Q8_K = 15, GGML_T_I8 = 24, GGML_T_I16 = 25, GGML_T_I32 = 26, GGML_T_I64 = 27,
    GGML_T_F64 = 28, GGML_T_BF16 = 30, GGML_T_COUNT = 40
};

#define DS3_GGUF_MAX_DIMS 4
#define DS3_GGUF_DEFAULT_ALIGNMENT 32

typedef struct {
    const char *s;  /* not NUL-terminated: points into the file */
    uint64_t n;
} ds3_gguf_str;

typedef struct {
    char *key;            /* NUL-terminated copy */
    uint32_t type;        /* GGUF_T_* */
    union {
        uint64_t u;       /* unsigned ints and bool */
        int64_t i;        /* signed ints */
        double f;         /* f32/f64 */
        ds3_gguf_str str;
    } v;
    /* arrays */
    uint32_t arr_type;
    uint64_t arr_n;
    const void *arr;      /* raw little-endian elements in the file (numeric types) */
    ds3_gguf_str *arr_str; /* (arr_n,) for string arrays (malloc'd) */
} ds3_gguf_kv;

typedef struct {
    char *name;           /* NUL-terminated copy */
    uint32_t type;        /* GGML_T_* */
    int dtype;            /* ds3_dtype, or -1 when ds3 has no kernels for the type */
    int n_dims;
    int64_t ne[DS3_GGUF_MAX_DIMS];  /* ggml order: ne[0] is contiguous; missing dims are 1 */
    uint64_t offset;      /* inside the data section */
    uint64_t nbytes;
    const void *data;
    int used;             /* set by the model binder */
} ds3_gguf_tensor;

typedef struct ds3_gguf ds3_gguf;

/* Open: use_mmap 1 = map read-only (MAP_POPULATE not used), 0 = read into RAM; use_mlock locks. */
int ds3_gguf_open(const char *path, int use_mmap, int use_mlock, ds3_gguf **out, char *err, size_t errlen);
/* Parse a whole file already in memory (not copied: buf must outlive the result). For the fuzzer. */
int ds3_gguf_parse(const void *buf, size_t len, const char *path, ds3_gguf **out, char *err, size_t errlen);
void ds3_gguf_close(ds3_gguf *g);
/* Where the tensor data lives: DS3_GGUF_CALLER (ds3_gguf_parse's buffer), DS3_GGUF_MAPPED (a
 * read-only private mapping of the file) or DS3_GGUF_RAM (read into a buffer the reader owns,
 * --no-mmap: the loader may rewrite tensor data in place). */
enum { DS3_GGUF_CALLER, DS3_GGUF_MAPPED, DS3_GGUF_RAM };
int ds3_gguf_storage(const ds3_gguf *g);
/* Byte offset in the file of a pointer into the tensor data (any storage). */
uint64_t ds3_gguf_file_offset(const ds3_gguf *g, const void *p);

const char *ds3_gguf_path(const ds3_gguf *g);
uint32_t ds3_gguf_version(const ds3_gguf *g);
uint32_t ds3_gguf_alignment(const ds3_gguf *g);
uint64_t ds3_gguf_data_bytes(const ds3_gguf *g);  /* size of the data section */
int ds3_gguf_n_kv(const ds3_gguf *g);
const ds3_gguf_kv *ds3_gguf_kv_at(const ds3_gguf *g, int i);
const ds3_gguf_kv *ds3_gguf_find_kv(const ds3_gguf *g, const char *key);
int ds3_gguf_n_tensors(const ds3_gguf *g);
ds3_gguf_tensor *ds3_gguf_tensor_at(ds3_gguf *g, int i);
ds3_gguf_tensor *ds3_gguf_find_tensor(ds3_gguf *g, const char *name);

/* Typed getters: 0 on success; DS3_ERR_FORMAT (with message) when the key has another type;
 * 1 when the key is absent (value untouched). Integers accept any integer type whose value fits. */
int ds3_gguf_get_u32(const ds3_gguf *g, const char *key, uint32_t *v, char *err, size_t errlen);
int ds3_gguf_get_f32(const ds3_gguf *g, const char *key, float *v, char *err, size_t errlen);
int ds3_gguf_get_bool(const ds3_gguf *g, const char *key, int *v, char *err, size_t errlen);
/* String value copied into buf (truncated to cap-1). */
int ds3_gguf_get_str(const ds3_gguf *g, const char *key, char *buf, size_t cap, char *err, size_t errlen);
/* Element i of a numeric array as int64 (integer types) -- for per-layer arrays. */
int64_t ds3_gguf_arr_int(const ds3_gguf_kv *kv, uint64_t i);

const char *ds3_ggml_type_name(uint32_t t);
/* Block size (elements) and bytes per block of a GGML type; 0 for unknown types. */
int ds3_ggml_blck_size(uint32_t t);
size_t ds3_ggml_type_size(uint32_t t);
/* The ds3_dtype ds3 runs a GGML type as (-1: none) and back (-1: none). */
int ds3_ggml_to_dtype(uint32_t t);
int ds3_dtype_to_ggml(int dtype);

/* ---- writer (gguf_write.c) ---- */
typedef struct ds3_gguf_writer ds3_gguf_writer;
ds3_gguf_writer *ds3_gguf_writer_new(void);
void ds3_gguf_writer_free(ds3_gguf_writer *w);
void ds3_gguf_w_u32(ds3_gguf_writer *w, const char *key, uint32_t v);
void ds3_gguf_w_i32(ds3_gguf_writer *w, const char *key, int32_t v);
void ds3_gguf_w_f32(ds3_gguf_writer *w, const char *key, float v);
void ds3_gguf_w_bool(ds3_gguf_writer *w, const char *key, int v);
void ds3_gguf_w_str(ds3_gguf_writer *w, const char *key, const char *s);
void ds3_gguf_w_arr_str(ds3_gguf_writer *w, const char *key, const char *const *s, const size_t *lens, uint64_t n);
void ds3_gguf_w_arr_i32(ds3_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
/* Add a tensor: ne in ggml order, data of nbytes (copied lazily: must stay valid until
 * ds3_gguf_writer_write returns, or pass own = 1 to hand over a malloc'd buffer). */
void ds3_gguf_w_tensor(ds3_gguf_writer *w, const char *name, uint32_t ggml_type, int n_dims, const int64_t *ne,
                       const void *data, size_t nbytes, int own);
/* Tensor data produced at write time: fill exactly nbytes into buf; return 0 or a ds3_status. */
typedef int (*ds3_gguf_fill_fn)(void *ctx, void *buf, size_t nbytes, char *err, size_t errlen);
void ds3_gguf_w_tensor_cb(ds3_gguf_writer *w, const char *name, uint32_t ggml_type, int n_dims, const int64_t *ne,
                          size_t nbytes, ds3_gguf_fill_fn fill, void *ctx);
/* Write the file atomically (temp + fsync + rename), alignment 32. */
int ds3_gguf_writer_write(ds3_gguf_writer *w, const char *path, char *err, size_t errlen);

/* ---- embedded tokenizer (gguf_tok.c) ---- */
/* Build a Hugging Face tokenizer.json text (malloc'd, NUL-terminated) from the tokenizer.ggml.*
 * keys (gpt2-style byte-level BPE: tokens, merges, token_type, bos/eos, pre-tokenizer name). */
int ds3_gguf_tokenizer_json(const ds3_gguf *g, char **json, size_t *len, char **config, size_t *config_len, char *err,
                            size_t errlen);

/* Open a GGUF file, build its tokenizer and load it (src/text/tokenizer.h). NULL + message. */
struct ds3_tokenizer;
struct ds3_tokenizer *ds3_gguf_load_tokenizer(const char *path, char *err, size_t errlen);
/* Whether a loaded model came from a GGUF file (src/model/model_gguf.c). */
struct ds3_model;
int ds3_model_is_gguf(const struct ds3_model *m);

#endif
