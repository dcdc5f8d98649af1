/* model_gguf.c -- load a llama.cpp `deepseek2` GGUF file into the same ds3_model / ds3_layer_w
 * structures as a Hugging Face checkpoint. The deepseek2.* keys are mapped onto config.json
 * fields and validated by ds3_config_parse (so both formats get the same checks); tensors keep
 * their stored GGML type (F32/F16/BF16/Q8_0/Q4_0/Q2_K..Q6_K) and are bound as ds3_mat views.
 * ggml's ne[] order is reversed against PyTorch: ne = [cols, rows] is a row-major (rows, cols)
 * matrix; ne = [cols, rows, n] is n such matrices back to back (experts, per-head k_b/v_b).
 * Both MLA layouts: the legacy attn_kv_b, and the split attn_k_b / attn_v_b (spec:
 * /work/shared/spec/gguf-deepseek2.md, docs/gguf.md). Router semantics are llama.cpp's
 * (normalise if expert_weights_norm, then always scale): arch V3 in ds3's router.
 * Ownership: the model owns the ds3_gguf (mapping); ds3_model_free releases it. */
#include <jansson.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <string.h>

#include "io/gguf.h"
#include "kernels/quant.h"
#include "model/model.h"
#include "util/common.h"

typedef struct {
    ds3_model *m;
    ds3_gguf *g;
    const char *path;
    char *err;
    size_t errlen;
} gbind;

void ds3_model_gguf_close(ds3_model *m) {
    if (m && m->gguf) {
        ds3_gguf_close(m->gguf);
        m->gguf = NULL;
        free(m->repacked);
        m->repacked = NULL;
    }
}

int ds3_model_is_gguf(const ds3_model *m) { return m && m->gguf != NULL; }

double ds3_model_gguf_bytes(const ds3_model *m) { return m->gguf ? (double)ds3_gguf_data_bytes(m->gguf) : 0; }

static const char *ne_str(const ds3_gguf_tensor *t, char buf[128]) {
    int o = snprintf(buf, 128, "{");
    for (int i = 0; i < t->n_dims; i++) o += snprintf(buf + o, 128 - (size_t)o, "%s%lld", i ? ", " : "", (long long)t->ne[i]);
    snprintf(buf + o, 128 - (size_t)o, "}");
    return buf;
}

static int weight_type_ok(gbind *b, const ds3_gguf_tensor *t) {
    if (t->dtype < 0 || t->dtype == DS3_DT_I32 || t->dtype == DS3_DT_F8E4M3)
        return ds3_seterr(b->err, b->errlen, DS3_ERR_UNSUPP, "%s: tensor '%s': GGML type %s is not supported for weights",
                          b->path, t->name, ds3_ggml_type_name(t->type));
    return 0;
}

/* Bind n matrices (rows, cols) stored as one tensor of ne = [cols, rows, n] (n = 1: 2-D), or one
 * (n*rows, cols) matrix when `flat` (k_b / v_b). required = 0: absent leaves *out zeroed. */
static int gmat_n(gbind *b, ds3_mat *out, size_t out_stride, const char *name, int64_t n, int64_t rows, int64_t cols,
                  int required, int flat) {
    ds3_gguf_tensor *t = ds3_gguf_find_tensor(b->g, name);
    if (!t) {
        if (!required) return 0;
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: missing tensor '%s'", b->path, name);
    }
    int rc = weight_type_ok(b, t);
    if (rc) return rc;
    char sb[128];
    const int nd_want = n > 1 || flat ? 3 : 2;
    int nd = t->n_dims;
    while (nd > nd_want && t->ne[nd - 1] == 1) nd--;
    const int ok = t->ne[0] == cols && t->ne[1] == rows && (nd_want == 2 ? nd <= 2 : (nd <= 3 && t->ne[2] == n));
    if (!ok)
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT,
                          "%s: tensor '%s': ne %s does not match the model keys (expected {%lld, %lld%s%lld%s})", b->path, name,
                          ne_str(t, sb), (long long)cols, (long long)rows, nd_want == 3 ? ", " : "",
                          nd_want == 3 ? (long long)n : 0LL, "");
    t->used = 1;
    const size_t mat_bytes = ds3_row_bytes((ds3_dtype)t->dtype, cols) * (size_t)rows;
    if (flat) {
        memset(out, 0, sizeof *out);
        *out = (ds3_mat){(ds3_dtype)t->dtype, rows * n, cols, t->data, NULL};
        return 0;
    }
    for (int64_t e = 0; e < n; e++) {
        ds3_mat *o = (ds3_mat *)((char *)out + (size_t)e * out_stride);
        *o = (ds3_mat){(ds3_dtype)t->dtype, rows, cols, (const uint8_t *)t->data + (size_t)e * mat_bytes, NULL};
    }
    return 0;
}

static int gmat(gbind *b, ds3_mat *out, const char *name, int64_t rows, int64_t cols, int required) {
    memset(out, 0, sizeof *out);
    return gmat_n(b, out, sizeof *out, name, 1, rows, cols, required, 0);
}

static int gvec(gbind *b, float **out, const char *name, int64_t n, int required) {
    *out = NULL;
    ds3_gguf_tensor *t = ds3_gguf_find_tensor(b->g, name);
    if (!t) {
        if (!required) return 0;
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: missing tensor '%s'", b->path, name);
    }
    if (t->dtype != DS3_DT_F32 && t->dtype != DS3_DT_F16 && t->dtype != DS3_DT_BF16)
        return ds3_seterr(b->err, b->errlen, DS3_ERR_UNSUPP, "%s: tensor '%s': GGML type %s is not supported for a vector",
                          b->path, name, ds3_ggml_type_name(t->type));
    char sb[128];
    int nd = t->n_dims;
    while (nd > 1 && t->ne[nd - 1] == 1) nd--;
    if (nd != 1 || t->ne[0] != n)
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: tensor '%s': ne %s does not match the model keys (expected {%lld})",
                          b->path, name, ne_str(t, sb), (long long)n);
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) return ds3_seterr(b->err, b->errlen, DS3_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (t->dtype == DS3_DT_F32) memcpy(&v[i], (const char *)t->data + 4 * i, 4);
        else {
            uint16_t h;
            memcpy(&h, (const char *)t->data + 2 * i, 2);
            v[i] = t->dtype == DS3_DT_F16 ? ds3_f16_to_f32(h) : ds3_bf16_to_f32(h);
        }
    }
    t->used = 1;
    *out = v;
    return 0;
}

static int bind_ffn(gbind *b, ds3_ffn_w *f, const char *p, const char *suffix, int64_t d, int64_t inter) {
    char n[256];
    int rc;
    snprintf(n, sizeof n, "%s.ffn_gate%s.weight", p, suffix);
    if ((rc = gmat(b, &f->gate, n, inter, d, 1))) return rc;
    snprintf(n, sizeof n, "%s.ffn_up%s.weight", p, suffix);
    if ((rc = gmat(b, &f->up, n, inter, d, 1))) return rc;
    snprintf(n, sizeof n, "%s.ffn_down%s.weight", p, suffix);
    return gmat(b, &f->down, n, d, inter, 1);
}

static int bind_layer(gbind *b, ds3_layer_w *w, int l, int is_mtp) {
    const ds3_config *c = &b->m->cfg;
    const int64_t d = c->hidden_size, H = c->n_heads, dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    const int64_t rkv = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    char p[64], n[256];
    int rc;
    snprintf(p, sizeof p, "blk.%d", l);
#define NAME(fmt) (snprintf(n, sizeof n, "%s." fmt, p), n)
    if ((rc = gvec(b, &w->attn_norm, NAME("attn_norm.weight"), d, 1))) return rc;
    if ((rc = gvec(b, &w->ffn_norm, NAME("ffn_norm.weight"), d, 1))) return rc;
    if (c->q_lora_rank > 0) {
        if ((rc = gmat(b, &w->q_a, NAME("attn_q_a.weight"), c->q_lora_rank, d, 1))) return rc;
        if ((rc = gvec(b, &w->q_a_norm, NAME("attn_q_a_norm.weight"), c->q_lora_rank, 1))) return rc;
        if ((rc = gmat(b, &w->q_b, NAME("attn_q_b.weight"), H * c->qk_head_dim, c->q_lora_rank, 1))) return rc;
    } else {
        if ((rc = gmat(b, &w->q, NAME("attn_q.weight"), H * c->qk_head_dim, d, 1))) return rc;
    }
    if ((rc = gmat(b, &w->kv_a, NAME("attn_kv_a_mqa.weight"), rkv + dr, d, 1))) return rc;
    if ((rc = gvec(b, &w->kv_a_norm, NAME("attn_kv_a_norm.weight"), rkv, 1))) return rc;
    if (ds3_gguf_find_tensor(b->g, NAME("attn_kv_b.weight"))) {
        if ((rc = gmat(b, &w->kv_b, n, H * (dn + dv), rkv, 1))) return rc;
    } else {
        if ((rc = gmat_n(b, &w->k_b, 0, NAME("attn_k_b.weight"), H, rkv, dn, 1, 1))) return rc;
        if ((rc = gmat_n(b, &w->v_b, 0, NAME("attn_v_b.weight"), H, dv, rkv, 1, 1))) return rc;
    }
    if ((rc = gmat(b, &w->o, NAME("attn_output.weight"), d, H * dv, 1))) return rc;
    w->is_moe = ds3_config_is_moe(c, l);
    if (!w->is_moe) {
        if ((rc = bind_ffn(b, &w->dense, p, "", d, c->intermediate_size))) return rc;
    } else {
        const int Nr = c->n_routed_experts;
        const int64_t I = c->moe_intermediate_size;
        if ((rc = gmat(b, &w->router, NAME("ffn_gate_inp.weight"), Nr, d, 1))) return rc;
        if ((rc = gvec(b, &w->router_bias, NAME("exp_probs_b.bias"), Nr, c->topk_method == DS3_TOPK_NOAUX_TC))) return rc;
        w->experts = calloc((size_t)Nr, sizeof *w->experts);
        if (!w->experts) return ds3_seterr(b->err, b->errlen, DS3_ERR_NOMEM, "out of memory");
        if (ds3_gguf_find_tensor(b->g, NAME("ffn_gate_up_exps.weight"))) {
            /* fused [gate; up] per expert: rows [0, I) gate, [I, 2I) up */
            ds3_ffn_w tmp;
            if ((rc = gmat_n(b, &w->experts[0].gate, sizeof(ds3_ffn_w), n, Nr, 2 * I, d, 1, 0))) return rc;
            for (int e = 0; e < Nr; e++) {
                tmp.gate = w->experts[e].gate;
                const size_t half = ds3_row_bytes(tmp.gate.dtype, d) * (size_t)I;
                w->experts[e].gate.rows = I;
                w->experts[e].up = w->experts[e].gate;
                w->experts[e].up.data = (const uint8_t *)tmp.gate.data + half;
            }
        } else {
            if ((rc = gmat_n(b, &w->experts[0].gate, sizeof(ds3_ffn_w), NAME("ffn_gate_exps.weight"), Nr, I, d, 1, 0)))
                return rc;
            if ((rc = gmat_n(b, &w->experts[0].up, sizeof(ds3_ffn_w), NAME("ffn_up_exps.weight"), Nr, I, d, 1, 0))) return rc;
        }
        if ((rc = gmat_n(b, &w->experts[0].down, sizeof(ds3_ffn_w), NAME("ffn_down_exps.weight"), Nr, d, I, 1, 0))) return rc;
        if (c->n_shared_experts > 0) {
            w->has_shared = 1;
            if ((rc = bind_ffn(b, &w->shared, p, "_shexp", d, (int64_t)c->n_shared_experts * I))) return rc;
        }
    }
    if (is_mtp) {
        const int64_t V = c->vocab_size;
        if ((rc = gvec(b, &w->enorm, NAME("nextn.enorm.weight"), d, 1))) return rc;
        if ((rc = gvec(b, &w->hnorm, NAME("nextn.hnorm.weight"), d, 1))) return rc;
        if ((rc = gmat(b, &w->eh_proj, NAME("nextn.eh_proj.weight"), d, 2 * d, 1))) return rc;
        if ((rc = gvec(b, &w->head_norm, NAME("nextn.shared_head_norm.weight"), d, 0))) return rc;
        if (!w->head_norm) {
            w->head_norm = malloc((size_t)d * sizeof(float));
            if (!w->head_norm) return ds3_seterr(b->err, b->errlen, DS3_ERR_NOMEM, "out of memory");
            memcpy(w->head_norm, b->m->final_norm, (size_t)d * sizeof(float));
        }
        if ((rc = gmat(b, &w->mtp_embed, NAME("nextn.embed_tokens.weight"), V, d, 0))) return rc;
        if (!w->mtp_embed.data) w->mtp_embed = b->m->embed;
        if ((rc = gmat(b, &w->mtp_head, NAME("nextn.shared_head_head.weight"), V, d, 0))) return rc;
        if (!w->mtp_head.data) w->mtp_head = b->m->head;
    }
#undef NAME
    return 0;
}

/* A u32 key that may also be a per-layer array (then every element must agree for ds3). */
static int bind_layer_cb(void *b, ds3_layer_w *w, int l, int is_mtp) { return bind_layer(b, w, l, is_mtp); }

static int key_u32(gbind *b, const char *key, int required, uint32_t def, uint32_t *v) {
    const ds3_gguf_kv *kv = ds3_gguf_find_kv(b->g, key);
    if (kv && kv->type == GGUF_T_ARRAY) {
        if (kv->arr_n == 0)
            return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: key '%s' is an empty array", b->path, key);
        int64_t first = ds3_gguf_arr_int(kv, 0);
        for (uint64_t i = 0; i < kv->arr_n; i++) {
            int64_t x = ds3_gguf_arr_int(kv, i);
            if (x != first && x != 0)
                return ds3_seterr(b->err, b->errlen, DS3_ERR_UNSUPP,
                                  "%s: key '%s': per-layer values that differ are not supported", b->path, key);
        }
        if (first < 0 || first > UINT32_MAX)
            return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: key '%s': value out of range", b->path, key);
        *v = (uint32_t)first;
        return 0;
    }
    int rc = ds3_gguf_get_u32(b->g, key, v, b->err, b->errlen);
    if (rc < 0) return rc;
    if (rc == 1) {
        if (required) return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: missing key '%s'", b->path, key);
        *v = def;
    }
    return 0;
}

/* Map the deepseek2.* keys to a config.json object and run the shared parser/validator. */
static int gguf_config(gbind *b, ds3_config *c) {
    char arch[64] = "";
    int rc = ds3_gguf_get_str(b->g, "general.architecture", arch, sizeof arch, b->err, b->errlen);
    if (rc < 0) return rc;
    if (rc == 1) return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: missing key 'general.architecture'", b->path);
    if (strcmp(arch, "deepseek2"))
        return ds3_seterr(b->err, b->errlen, DS3_ERR_UNSUPP,
                          "%s: general.architecture = '%s' is not supported (ds3 runs deepseek2: DeepSeek V2/V3)", b->path, arch);
    uint32_t blocks, nextn, d, ctx, ffn, heads, kvr, qr, kl, vl, klm = 0, vlm = 0, dr, dense, E, K, S, ffe, G, Gu, gating;
    float eps, base = 10000.0f, wscale = 1.0f;
    int wnorm = 0;
    const char *P = "deepseek2.";
    char k[128];
#define KEY(s) (snprintf(k, sizeof k, "%s%s", P, s), k)
#define U32(s, req, def, out)                                  \
    do {                                                       \
        if ((rc = key_u32(b, KEY(s), req, def, &(out)))) return rc; \
    } while (0)
    U32("block_count", 1, 0, blocks);
    U32("nextn_predict_layers", 0, 0, nextn);
    U32("embedding_length", 1, 0, d);
    U32("context_length", 0, 4096, ctx);
    U32("feed_forward_length", 0, 0, ffn);
    U32("attention.head_count", 1, 0, heads);
    U32("attention.kv_lora_rank", 1, 0, kvr);
    U32("attention.q_lora_rank", 0, 0, qr);
    U32("rope.dimension_count", 1, 0, dr);
    U32("attention.key_length", 1, 0, kl);
    U32("attention.value_length", 1, 0, vl);
    U32("attention.key_length_mla", 0, 0, klm);
    U32("attention.value_length_mla", 0, 0, vlm);
    U32("leading_dense_block_count", 0, 0, dense);
    U32("expert_count", 0, 0, E);
    U32("expert_used_count", 0, 0, K);
    U32("expert_shared_count", 0, 0, S);
    U32("expert_feed_forward_length", 0, 0, ffe);
    U32("expert_group_count", 0, 1, G);
    U32("expert_group_used_count", 0, 1, Gu);
    U32("expert_gating_func", 0, 1, gating);
    if ((rc = ds3_gguf_get_f32(b->g, KEY("attention.layer_norm_rms_epsilon"), &eps, b->err, b->errlen)) < 0) return rc;
    if (rc == 1) return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: missing key '%s'", b->path, k);
    if ((rc = ds3_gguf_get_f32(b->g, KEY("rope.freq_base"), &base, b->err, b->errlen)) < 0) return rc;
    if ((rc = ds3_gguf_get_f32(b->g, KEY("expert_weights_scale"), &wscale, b->err, b->errlen)) < 0) return rc;
    if ((rc = ds3_gguf_get_bool(b->g, KEY("expert_weights_norm"), &wnorm, b->err, b->errlen)) < 0) return rc;
    if (wscale == 0.0f) wscale = 1.0f;
    if (nextn >= blocks)
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: nextn_predict_layers %u >= block_count %u", b->path, nextn,
                          blocks);
    int mla = klm > 0 && vlm > 0;
    if (mla && klm <= dr)
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: key_length_mla %u <= rope.dimension_count %u", b->path, klm, dr);
    if (!mla && kl <= dr)
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: key_length %u <= rope.dimension_count %u", b->path, kl, dr);
    const uint32_t dn = mla ? klm - dr : kl - dr, dv = mla ? vlm : vl;
    /* vocab from the embedding */
    ds3_gguf_tensor *emb = ds3_gguf_find_tensor(b->g, "token_embd.weight");
    if (!emb) return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", b->path);
    const int64_t V = emb->n_dims >= 2 ? emb->ne[1] : 0;
    uint32_t bos = 0, eos = 1;
    int has_bos = ds3_gguf_get_u32(b->g, "tokenizer.ggml.bos_token_id", &bos, b->err, b->errlen);
    int has_eos = ds3_gguf_get_u32(b->g, "tokenizer.ggml.eos_token_id", &eos, b->err, b->errlen);
    if (has_bos < 0) return has_bos;
    if (has_eos < 0) return has_eos;
    const int has_bias = ds3_gguf_find_tensor(b->g, (snprintf(k, sizeof k, "blk.%u.exp_probs_b.bias", dense), k)) != NULL;
    json_t *j = json_object();
    json_object_set_new(j, "model_type", json_string("deepseek_v3"));
    json_object_set_new(j, "vocab_size", json_integer(V));
    json_object_set_new(j, "hidden_size", json_integer(d));
    json_object_set_new(j, "intermediate_size", json_integer(ffn ? ffn : 1));
    json_object_set_new(j, "moe_intermediate_size", json_integer(ffe ? ffe : 1));
    json_object_set_new(j, "num_hidden_layers", json_integer(blocks - nextn));
    json_object_set_new(j, "first_k_dense_replace", json_integer(E ? dense : blocks));
    json_object_set_new(j, "moe_layer_freq", json_integer(1));
    json_object_set_new(j, "num_attention_heads", json_integer(heads));
    json_object_set_new(j, "q_lora_rank", qr ? json_integer(qr) : json_null());
    json_object_set_new(j, "kv_lora_rank", json_integer(kvr));
    json_object_set_new(j, "qk_nope_head_dim", json_integer(dn));
    json_object_set_new(j, "qk_rope_head_dim", json_integer(dr));
    json_object_set_new(j, "v_head_dim", json_integer(dv));
    json_object_set_new(j, "n_routed_experts", json_integer(E));
    json_object_set_new(j, "n_shared_experts", json_integer(S));
    json_object_set_new(j, "num_experts_per_tok", json_integer(K));
    json_object_set_new(j, "n_group", json_integer(G ? G : 1));
    json_object_set_new(j, "topk_group", json_integer(Gu ? Gu : 1));
    json_object_set_new(j, "scoring_func", json_string(gating == 2 ? "sigmoid" : "softmax"));
    json_object_set_new(j, "topk_method", json_string(has_bias ? "noaux_tc" : G > 1 ? "group_limited_greedy" : "greedy"));
    json_object_set_new(j, "norm_topk_prob", json_boolean(wnorm));
    json_object_set_new(j, "routed_scaling_factor", json_real(wscale));
    json_object_set_new(j, "rms_norm_eps", json_real(eps));
    json_object_set_new(j, "rope_theta", json_real(base));
    json_object_set_new(j, "max_position_embeddings", json_integer(ctx ? ctx : 4096));
    json_object_set_new(j, "num_nextn_predict_layers", json_integer(nextn));
    json_object_set_new(j, "bos_token_id", json_integer(has_bos == 0 ? (json_int_t)bos : -1));
    json_object_set_new(j, "eos_token_id", json_integer(has_eos == 0 ? (json_int_t)eos : -1));
    json_object_set_new(j, "tie_word_embeddings", json_boolean(ds3_gguf_find_tensor(b->g, "output.weight") == NULL));
    char rs[32] = "";
    if ((rc = ds3_gguf_get_str(b->g, KEY("rope.scaling.type"), rs, sizeof rs, b->err, b->errlen)) < 0) goto out;
    if (!strcmp(rs, "yarn")) {
        float factor = 1.0f, logmul = 0.0f;
        uint32_t orig = 4096;
        if ((rc = ds3_gguf_get_f32(b->g, KEY("rope.scaling.factor"), &factor, b->err, b->errlen)) < 0) goto out;
        if ((rc = ds3_gguf_get_f32(b->g, KEY("rope.scaling.yarn_log_multiplier"), &logmul, b->err, b->errlen)) < 0) goto out;
        if ((rc = key_u32(b, KEY("rope.scaling.original_context_length"), 0, 4096, &orig))) goto out;
        json_t *y = json_object();
        json_object_set_new(y, "type", json_string("yarn"));
        json_object_set_new(y, "factor", json_real(factor < 1.0f ? 1.0 : factor));
        json_object_set_new(y, "original_max_position_embeddings", json_integer(orig));
        /* llama.cpp stores 0.1 * mscale_all_dim; with mscale == mscale_all_dim the rope cos/sin
         * are unscaled and the softmax scale gets mscale^2, as llama.cpp computes it. */
        json_object_set_new(y, "mscale", json_real(logmul / 0.1f));
        json_object_set_new(y, "mscale_all_dim", json_real(logmul / 0.1f));
        json_object_set_new(j, "rope_scaling", y);
    } else if (rs[0] && strcmp(rs, "none")) {
        rc = ds3_seterr(b->err, b->errlen, DS3_ERR_UNSUPP, "%s: rope.scaling.type '%s' is not supported", b->path, rs);
        goto out;
    }
    {
        char *text = json_dumps(j, JSON_COMPACT);
        char what[4200];
        snprintf(what, sizeof what, "%s (deepseek2.* keys as config.json fields)", b->path);
        rc = text ? ds3_config_parse(c, text, strlen(text), what, b->err, b->errlen)
                  : ds3_seterr(b->err, b->errlen, DS3_ERR_NOMEM, "out of memory");
        free(text);
    }
out:
    json_decref(j);
    return rc;
#undef U32
#undef KEY
}

/* ---- load-time repacking (Q8_0 -> Q8_0x16, Q4_K -> Q4_Kx16, quant.h) ----
 * The AVX-512 VNNI kernels read these matrices 2-3x faster regrouped 16 rows at a time. Every
 * such matrix a matmul reads is repacked once; all views of the same bytes (a tied
 * embedding, the MTP head) follow. kv_b is left alone: the absorbed attention reads it by
 * column (vecmat), row by row. */
typedef struct {
    ds3_mat **v;  /* every view */
    int *mm;      /* 1: a matmul operand */
    int n, cap;
} view_list;

static int vl_add(view_list *l, ds3_mat *w, int mm) {
    if (!w->data) return 0;
    if (l->n == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 256;
        ds3_mat **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        int *m = realloc(l->mm, (size_t)cap * sizeof *m);
        if (!m) return -1;
        l->mm = m;
        l->cap = cap;
    }
    l->v[l->n] = w;
    l->mm[l->n++] = mm;
    return 0;
}

static int vl_ffn(view_list *l, ds3_ffn_w *f) { return vl_add(l, &f->gate, 1) || vl_add(l, &f->up, 1) || vl_add(l, &f->down, 1); }

static int vl_layer(view_list *l, const ds3_config *c, ds3_layer_w *w) {
    int rc = vl_add(l, &w->q_a, 1) || vl_add(l, &w->q_b, 1) || vl_add(l, &w->q, 1) || vl_add(l, &w->kv_a, 1) ||
             vl_add(l, &w->kv_b, 0) || vl_add(l, &w->k_b, 1) || vl_add(l, &w->v_b, 1) || vl_add(l, &w->o, 1) ||
             vl_ffn(l, &w->dense) || vl_add(l, &w->router, 1) || vl_ffn(l, &w->shared) || vl_add(l, &w->eh_proj, 1) ||
             vl_add(l, &w->mtp_embed, 0) || vl_add(l, &w->mtp_head, 1);
    if (w->experts)
        for (int e = 0; e < c->n_routed_experts && !rc; e++) rc = vl_ffn(l, &w->experts[e]);
    return rc;
}

/* the regrouped twin of a dtype (Q8_0 -> Q8_0x16, Q4_K -> Q4_Kx16), or -1 */
static int x16_type(ds3_dtype t) { return t == DS3_DT_Q8_0 ? DS3_DT_Q8_0X16 : t == DS3_DT_Q4_K ? DS3_DT_Q4_KX16 : -1; }

static int x16_ok(const view_list *l, int i) {
    const ds3_mat *w = l->v[i];
    return l->mm[i] && x16_type(w->dtype) >= 0 && w->rows % DS3_Q8X16_ROWS == 0 && w->cols % ds3_q_blck(w->dtype) == 0;
}

static int x16_repack_all(ds3_model *m, char *err, size_t errlen) {
    const ds3_config *c = &m->cfg;
    view_list l = {0};
    int rc = vl_add(&l, &m->embed, 0) || vl_add(&l, &m->head, 1);
    for (int i = 0; i < c->num_hidden_layers && !rc; i++) rc = vl_layer(&l, c, &m->layers[i]);
    for (int i = 0; i < m->n_mtp && !rc; i++) rc = vl_layer(&l, c, &m->mtp[i]);
    const int where = ds3_gguf_storage(m->gguf);
    size_t total = 0;
    for (int i = 0; i < l.n && !rc; i++)
        if (x16_ok(&l, i)) total += (size_t)l.v[i]->rows * ds3_row_bytes(l.v[i]->dtype, l.v[i]->cols);
    /* A buffer the reader owns is rewritten in place. From a mapping, the matrices are read with
     * pread into one new buffer and repacked there: reading them through the mapping would fault
     * every page in (1.2 GB: 4 s in the kernel here, against 0.5 s). */
    uint8_t *out = NULL;
    int fd = -1;
    if (!rc && total && where == DS3_GGUF_MAPPED) {
        if (!(out = ds3_alloc_aligned(total))) rc = -1;
        else if ((fd = open(ds3_gguf_path(m->gguf), O_RDONLY | O_CLOEXEC)) < 0)
            rc = ds3_seterr(err, errlen, DS3_ERR_IO, "%s: cannot reopen to repack: %s", ds3_gguf_path(m->gguf), strerror(errno));
    }
    size_t off = 0;
    for (int i = 0; i < l.n && !rc && total && where != DS3_GGUF_CALLER; i++) {
        if (!x16_ok(&l, i)) continue; /* not Q8_0/Q4_K (any more: an alias already done), or not eligible */
        ds3_mat *w = l.v[i];
        const void *src = w->data;
        const int64_t cols = w->cols;
        const ds3_dtype from = w->dtype, to = (ds3_dtype)x16_type(from);
        const size_t bytes = (size_t)w->rows * ds3_row_bytes(from, cols);
        void *dst = out ? out + off : (void *)src;
        off += out ? bytes : 0;
        if (out) {
            const off_t fo = (off_t)ds3_gguf_file_offset(m->gguf, src);
            for (size_t got = 0; got < bytes && !rc;) {
                const ssize_t n = pread(fd, (uint8_t *)dst + got, bytes - got, fo + (off_t)got);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) rc = ds3_seterr(err, errlen, DS3_ERR_IO, "%s: short read while repacking", ds3_gguf_path(m->gguf));
                else got += (size_t)n;
            }
        }
        if (!rc && (to == DS3_DT_Q8_0X16 ? ds3_q8_0x16_repack(dst, w->rows, cols) : ds3_q4_kx16_repack(dst, w->rows, cols)))
            rc = -1;
        for (int j = 0; j < l.n; j++) /* every view of these bytes, this one included */
            if (l.v[j]->data == src && l.v[j]->cols == cols && l.v[j]->dtype == from) {
                l.v[j]->data = dst;
                l.v[j]->dtype = to;
            }
    }
    if (fd >= 0) close(fd);
    if (out && off) m->repacked = out; /* views point into it now, even after a failure (then freed with the model) */
    else free(out);
    free(l.v);
    free(l.mm);
    if (rc == -1) rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory repacking Q8_0/Q4_K weights");
    return rc;
}

ds3_model *ds3_model_load_gguf(const char *path, const ds3_model_params *p, char *err, size_t errlen) {
    ds3_model *m = calloc(1, sizeof *m);
    if (!m) {
        ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->dir = strdup(path);
    m->verbose = p->verbose;
    if (ds3_gguf_open(path, p->use_mmap, p->use_mlock, &m->gguf, err, errlen)) goto fail;
    gbind b = {m, m->gguf, path, err, errlen};
    if (gguf_config(&b, &m->cfg)) goto fail;
    const ds3_config *c = &m->cfg;
    const int64_t V = c->vocab_size, d = c->hidden_size;
    if (gmat(&b, &m->embed, "token_embd.weight", V, d, 1)) goto fail;
    if (gvec(&b, &m->final_norm, "output_norm.weight", d, 1)) goto fail;
    if (gmat(&b, &m->head, "output.weight", V, d, 0)) goto fail;
    if (!m->head.data) m->head = m->embed;
    int rc = ds3_model_bind_blocks(m, p->load_mtp, bind_layer_cb, &b);
    if (rc == DS3_ERR_NOMEM) goto nomem;
    if (rc) goto fail;
    const char *nr = getenv("DS3_NO_REPACK");
    if (!p->no_repack && !(nr && *nr && strcmp(nr, "0")) && ds3_x16_wanted() && x16_repack_all(m, err, errlen)) goto fail;
    if (p->verbose) {
        int unused = 0;
        for (int i = 0; i < ds3_gguf_n_tensors(m->gguf); i++) {
            ds3_gguf_tensor *t = ds3_gguf_tensor_at(m->gguf, i);
            if (!t->used && unused++ < 5) fprintf(stderr, "ds3: note: tensor '%s' is not used\n", t->name);
        }
        if (unused > 5) fprintf(stderr, "ds3: note: %d tensors are not used in all\n", unused);
    }
    return m;
nomem:
    ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
fail:
    ds3_model_free(m);
    return NULL;
}
