/* hf_convert.c -- change the float dtype of a Hugging Face checkpoint (e.g. a trainer's F32
 * checkpoint to BF16 for shipping), keeping names, shapes and the non-weight files. The router
 * correction bias stays F32 as in DeepSeek's release: it decides routing by small margins. */
#include "model/hf_convert.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "io/safetensors.h"
#include "util/common.h"

static float to_f32(int dt, const void *p, size_t i) {
    if (dt == DS3_DT_F32) return ((const float *)p)[i];
    if (dt == DS3_DT_BF16) return ds3_bf16_to_f32(((const uint16_t *)p)[i]);
    return ds3_f16_to_f32(((const uint16_t *)p)[i]);
}

int ds3_hf_convert(const char *src, const char *dst, ds3_dtype dt, char *err, size_t errlen) {
    if (dt != DS3_DT_F32 && dt != DS3_DT_BF16 && dt != DS3_DT_F16)
        return ds3_seterr(err, errlen, DS3_ERR_ARG, "convert: target dtype must be F32, BF16 or F16");
    if (mkdir(dst, 0755) != 0 && errno != EEXIST)
        return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: cannot create: %s", dst, strerror(errno));
    ds3_st *st;
    ds3_st_opts so = {1, 0};
    int rc = ds3_st_open_dir(src, &so, &st, err, errlen);
    if (rc) return rc;
    const int n = ds3_st_n_tensors(st);
    ds3_st_write_tensor *wt = calloc((size_t)n, sizeof *wt);
    void **bufs = calloc((size_t)n, sizeof *bufs);
    if (!wt || !bufs) {
        rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        ds3_st_tensor *t = ds3_st_tensor_at(st, i);
        if (t->dtype < 0) {
            rc = ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: tensor '%s': dtype %s cannot be converted",
                            ds3_st_file_path(st, t->file), t->name, t->dtype_str);
            goto out;
        }
        wt[i].name = t->name;
        wt[i].ndim = t->ndim;
        memcpy(wt[i].shape, t->shape, sizeof t->shape);
        wt[i].dtype = t->dtype;
        wt[i].data = t->data;
        const int is_float = t->dtype == DS3_DT_F32 || t->dtype == DS3_DT_BF16 || t->dtype == DS3_DT_F16;
        const int keep = !is_float || strstr(t->name, "e_score_correction_bias") || strstr(t->name, "_scale_inv") ||
                         (t->ndim < 2 && !strstr(t->name, "norm"));
        if (keep || t->dtype == (int)dt) continue;
        size_t nel = 1;
        for (int k = 0; k < t->ndim; k++) nel *= (size_t)t->shape[k];
        void *b = malloc(nel * ds3_dtype_size(dt) + 1);
        if (!b) {
            rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (size_t k = 0; k < nel; k++) {
            float v = to_f32(t->dtype, t->data, k);
            if (dt == DS3_DT_F32) ((float *)b)[k] = v;
            else if (dt == DS3_DT_BF16) ((uint16_t *)b)[k] = ds3_f32_to_bf16(v);
            else ((uint16_t *)b)[k] = ds3_f32_to_f16(v);
        }
        bufs[i] = b;
        wt[i].data = b;
        wt[i].dtype = dt;
    }
    char path[4096];
    ds3_path_join(path, sizeof path, dst, "model.safetensors");
    if ((rc = ds3_st_write(path, wt, n, err, errlen))) goto out;
    /* The side files: config.json (torch_dtype updated), tokenizer files, notes. */
    const char *side[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"};
    for (size_t i = 0; i < sizeof side / sizeof side[0]; i++) {
        char sp[4096], dp[4096];
        ds3_path_join(sp, sizeof sp, src, side[i]);
        ds3_path_join(dp, sizeof dp, dst, side[i]);
        size_t len;
        char e2[16];
        char *txt = ds3_read_file(sp, &len, 64u << 20, e2, sizeof e2);
        if (!txt) continue;
        if (i == 0) {
            json_error_t je;
            json_t *j = json_loadb(txt, len, 0, &je);
            if (j) {
                json_object_set_new(j, "torch_dtype", json_string(dt == DS3_DT_F32 ? "float32" : dt == DS3_DT_BF16 ? "bfloat16" : "float16"));
                json_object_del(j, "training");
                free(txt);
                txt = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                len = strlen(txt);
                json_decref(j);
            }
        }
        rc = ds3_write_file_atomic(dp, txt, len, err, errlen);
        free(txt);
        if (rc) goto out;
    }
out:
    if (bufs)
        for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(wt);
    ds3_st_close(st);
    return rc;
}
