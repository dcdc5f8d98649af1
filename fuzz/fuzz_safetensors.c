/* fuzz_safetensors.c -- libFuzzer target for the safetensors header validator.
 *
 * The input is a whole .safetensors file image: 8-byte little-endian header length, the JSON
 * header, then the data buffer (only its length matters to the validator). The header is copied
 * into a buffer of exactly its size so ASan sees any read past it. On success the tensor table
 * must satisfy what ds3_st_parse_header promises (offsets inside the data, byte length =
 * shape x dtype size, no overlaps); on failure the message must be one non-empty line naming
 * the file. A broken promise traps. Build: `make fuzz`; run: see docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "util/common.h"

#define FILE_NAME "fuzz.safetensors"

static int esize(const ds3_st_tensor *t) {
    static const struct {
        const char *s;
        int size;
    } sz[] = {{"F32", 4}, {"BF16", 2}, {"F16", 2}, {"F8_E4M3", 1}, {"I32", 4}, {"F64", 8}, {"I64", 8}, {"U64", 8},
              {"U32", 4}, {"I16", 2}, {"U16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1}};
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++)
        if (!strcmp(t->dtype_str, sz[i].s)) return sz[i].size;
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n < 8) return 0;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)d[i] << (8 * i);
    if (hlen > n - 8) return 0; /* the reader refuses this before parsing (see open_file) */
    char *h = malloc(hlen ? hlen : 1);
    if (!h) return 0;
    memcpy(h, d + 8, hlen);
    const uint64_t data_len = n - 8 - hlen;
    char err[DS3_ERR_LEN];
    err[0] = 0;
    ds3_st_tensor *t = NULL;
    int nt = -1;
    int rc = ds3_st_parse_header(h, hlen, data_len, FILE_NAME, &t, &nt, err, sizeof err);
    if (rc == 0) {
        if (nt < 0 || (nt > 0 && !t)) __builtin_trap();
        for (int i = 0; i < nt; i++) {
            const ds3_st_tensor *x = &t[i];
            if (!x->name || !x->name[0] || x->ndim < 0 || x->ndim > DS3_ST_MAX_DIMS) __builtin_trap();
            if (x->begin > x->end || x->end > data_len) __builtin_trap();
            int es = esize(x);
            if (es < 0) __builtin_trap();
            uint64_t nel = 1;
            for (int k = 0; k < x->ndim; k++) {
                if (x->shape[k] < 0) __builtin_trap();
                nel *= (uint64_t)x->shape[k]; /* cannot wrap: validated */
            }
            if (nel * (uint64_t)es != x->end - x->begin) __builtin_trap();
            for (int j = 0; j < i; j++) {
                const ds3_st_tensor *y = &t[j];
                if (x->begin < y->end && y->begin < x->end && x->begin != x->end && y->begin != y->end)
                    __builtin_trap(); /* overlap */
                if (!strcmp(x->name, y->name)) __builtin_trap();
            }
        }
    } else {
        if (rc >= 0 || t || nt != 0) __builtin_trap();
        if (!err[0] || strchr(err, '\n') || strncmp(err, FILE_NAME, strlen(FILE_NAME)) != 0) __builtin_trap();
    }
    ds3_st_free_tensors(t, nt > 0 ? nt : 0);
    free(h);
    return 0;
}
