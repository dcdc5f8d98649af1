/* fuzz_gguf.c -- libFuzzer target for the GGUF reader (src/io/gguf.c) and the embedded-tokenizer
 * builder. The input is a whole .gguf file image, copied into a buffer of exactly its size so
 * ASan sees any read past it. On success every promise of ds3_gguf_parse is re-checked (tensor
 * data inside the buffer and aligned, byte size = elements / block x block bytes, no overlaps,
 * strings inside the buffer) and the tokenizer.json builder runs over the keys; on failure the
 * message must be one non-empty line naming the file. A broken promise traps.
 * Build: `make fuzz`; run: build-fuzz/fuzz_gguf -max_total_time=600 fuzz/corpus/gguf */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "util/common.h"

#define FILE_NAME "fuzz.gguf"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return 0;
    memcpy(buf, d, n);
    char err[DS3_ERR_LEN] = "";
    ds3_gguf *g = NULL;
    int rc = ds3_gguf_parse(buf, n, FILE_NAME, &g, err, sizeof err);
    if (rc) {
        if (g || !err[0] || !strstr(err, FILE_NAME) || strchr(err, '\n')) __builtin_trap();
        free(buf);
        return 0;
    }
    const uint8_t *end = buf + n;
    for (int i = 0; i < ds3_gguf_n_tensors(g); i++) {
        const ds3_gguf_tensor *t = ds3_gguf_tensor_at(g, i);
        const uint8_t *p = t->data;
        if (p < buf || p > end || t->nbytes > (size_t)(end - p)) __builtin_trap();
        if (t->offset % ds3_gguf_alignment(g)) __builtin_trap();
        uint64_t nel = 1;
        for (int k = 0; k < DS3_GGUF_MAX_DIMS; k++) nel *= (uint64_t)t->ne[k];
        if (nel / (uint64_t)ds3_ggml_blck_size(t->type) * ds3_ggml_type_size(t->type) != t->nbytes) __builtin_trap();
        for (int j = 0; j < i; j++) {
            const ds3_gguf_tensor *u = ds3_gguf_tensor_at(g, j);
            if (t->nbytes && u->nbytes && t->offset < u->offset + u->nbytes && u->offset < t->offset + t->nbytes) __builtin_trap();
            if (i < 64 && !strcmp(t->name, u->name)) __builtin_trap();
        }
        volatile uint8_t s = 0;
        if (t->nbytes) s ^= p[0] ^ p[t->nbytes - 1];
    }
    for (int i = 0; i < ds3_gguf_n_kv(g); i++) {
        const ds3_gguf_kv *kv = ds3_gguf_kv_at(g, i);
        if (kv->type == GGUF_T_STRING && ((const uint8_t *)kv->v.str.s < buf || kv->v.str.n > (uint64_t)(end - (const uint8_t *)kv->v.str.s)))
            __builtin_trap();
        if (kv->type == GGUF_T_ARRAY && kv->arr_type == GGUF_T_STRING)
            for (uint64_t k = 0; k < kv->arr_n; k++)
                if (kv->arr_str[k].n > (uint64_t)(end - (const uint8_t *)kv->arr_str[k].s)) __builtin_trap();
        if (kv->type == GGUF_T_ARRAY) (void)ds3_gguf_arr_int(kv, kv->arr_n ? kv->arr_n - 1 : 0);
    }
    char *json = NULL, *cfg = NULL;
    size_t jl, cl;
    if (ds3_gguf_tokenizer_json(g, &json, &jl, &cfg, &cl, err, sizeof err) == 0 && (!json || !cfg)) __builtin_trap();
    free(json);
    free(cfg);
    ds3_gguf_close(g);
    free(buf);
    return 0;
}
