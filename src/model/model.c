/* model.c -- load a Hugging Face DeepSeek-V3/V2 checkpoint into a ds3_model: parse config.json,
 * open the safetensors shards, bind every tensor to its role after checking its dtype and shape
 * against the config, and validate FP8 block scales. Reference: spec/deepseek-v3.md 1, 3.1, 5.1,
 * 6.1, 8, 9. Ownership: the model owns the shard mappings (ds3_st), the converted f32 vectors and
 * the layer tables; ds3_model_free releases all of it. A model is immutable once loaded. */
#include "model/model.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/quant.h"
#include "util/common.h"

typedef struct {
    ds3_model *m;
    const char *dir;
    char *err;
    size_t errlen;
} binder;

static int is_float_dtype(int dt) {
    return dt == DS3_DT_F32 || dt == DS3_DT_BF16 || dt == DS3_DT_F16 || dt == DS3_DT_F8E4M3;
}

static const char *tfile(binder *b, const ds3_st_tensor *t) { return ds3_st_file_path(b->m->st, t->file); }

/* "[d0, d1, ...]" of a tensor as stored (at most 8 dims of at most 2^40: fits 160 bytes). */
static const char *shape_str(const ds3_st_tensor *t, char buf[160]) {
    int o = snprintf(buf, 160, "[");
    for (int i = 0; i < t->ndim && o < 150; i++) o += snprintf(buf + o, 160 - (size_t)o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    snprintf(buf + o, 160 - (size_t)o, "]");
    return buf;
}

/* Bind a 2-D weight (rows, cols). required = 0: leaves *out zeroed when absent. */
static int bind_mat(binder *b, ds3_mat *out, const char *name, int64_t rows, int64_t cols, int required) {
    memset(out, 0, sizeof *out);
    ds3_st_tensor *t = ds3_st_find_mut(b->m->st, name);
    if (!t) {
        if (!required) return 0;
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: missing tensor '%s'", b->dir, name);
    }
    if (!is_float_dtype(t->dtype))
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: tensor '%s': dtype %s is not supported for weights",
                          tfile(b, t), name, t->dtype_str);
    char sb[160];
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT,
                          "%s: tensor '%s': shape %s%s does not match config.json (expected [%lld, %lld])", tfile(b, t),
                          name, shape_str(t, sb), t->ndim != 2 ? " (not 2-D)" : "", (long long)rows, (long long)cols);
    t->used = 1;
    out->dtype = (ds3_dtype)t->dtype;
    out->rows = rows;
    out->cols = cols;
    out->data = t->data;
    if (t->dtype == DS3_DT_F8E4M3) {
        char sname[1200];
        snprintf(sname, sizeof sname, "%s_scale_inv", name);
        ds3_st_tensor *s = ds3_st_find_mut(b->m->st, sname);
        int64_t br = (rows + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK, bc = (cols + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK;
        if (!s)
            return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: FP8 tensor '%s' has no '%s'", b->dir, name, sname);
        if (s->dtype != DS3_DT_F32 || s->ndim != 2 || s->shape[0] != br || s->shape[1] != bc)
            return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT,
                              "%s: tensor '%s': is %s %s, expected F32 [%lld, %lld] block scales for [%lld, %lld] weights",
                              tfile(b, s), sname, s->dtype_str, shape_str(s, sb), (long long)br, (long long)bc,
                              (long long)rows, (long long)cols);
        const float *sc = s->data;
        for (int64_t i = 0; i < br * bc; i++)
            if (!isfinite(sc[i]) || sc[i] <= 0.0f)
                return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT,
                                  "%s: tensor '%s': block scale [%lld, %lld] = %g is not a finite positive number",
                                  tfile(b, s), sname, (long long)(i / bc), (long long)(i % bc), (double)sc[i]);
        s->used = 1;
        out->scale = sc;
    }
    return 0;
}

/* Bind a 1-D vector of n floats, converted to an owned f32 array. */
static int bind_vec(binder *b, float **out, const char *name, int64_t n, int required) {
    *out = NULL;
    ds3_st_tensor *t = ds3_st_find_mut(b->m->st, name);
    if (!t) {
        if (!required) return 0;
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: missing tensor '%s'", b->dir, name);
    }
    if (t->dtype != DS3_DT_F32 && t->dtype != DS3_DT_BF16 && t->dtype != DS3_DT_F16)
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT, "%s: tensor '%s': dtype %s is not supported for a vector",
                          tfile(b, t), name, t->dtype_str);
    char sb[160];
    if (t->ndim != 1 || t->shape[0] != n)
        return ds3_seterr(b->err, b->errlen, DS3_ERR_FORMAT,
                          "%s: tensor '%s': shape %s%s does not match config.json (expected [%lld])", tfile(b, t), name,
                          shape_str(t, sb), t->ndim != 1 ? " (not 1-D)" : "", (long long)n);
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) return ds3_seterr(b->err, b->errlen, DS3_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        if (t->dtype == DS3_DT_F32) v[i] = ((const float *)t->data)[i];
        else if (t->dtype == DS3_DT_BF16) v[i] = ds3_bf16_to_f32(((const uint16_t *)t->data)[i]);
        else v[i] = ds3_f16_to_f32(((const uint16_t *)t->data)[i]);
    }
    t->used = 1;
    *out = v;
    return 0;
}

static int bind_ffn(binder *b, ds3_ffn_w *f, const char *prefix, int64_t d, int64_t inter) {
    char n[1024];
    int rc;
    snprintf(n, sizeof n, "%s.gate_proj.weight", prefix);
    if ((rc = bind_mat(b, &f->gate, n, inter, d, 1))) return rc;
    snprintf(n, sizeof n, "%s.up_proj.weight", prefix);
    if ((rc = bind_mat(b, &f->up, n, inter, d, 1))) return rc;
    snprintf(n, sizeof n, "%s.down_proj.weight", prefix);
    return bind_mat(b, &f->down, n, d, inter, 1);
}

static int bind_layer(binder *b, ds3_layer_w *w, int l, int is_mtp) {
    const ds3_config *c = &b->m->cfg;
    const int64_t d = c->hidden_size, H = c->n_heads;
    char p[256], n[1024];
    int rc;
    snprintf(p, sizeof p, "model.layers.%d", l);
#define NAME(fmt) (snprintf(n, sizeof n, "%s." fmt, p), n)
    if ((rc = bind_vec(b, &w->attn_norm, NAME("input_layernorm.weight"), d, 1))) return rc;
    if ((rc = bind_vec(b, &w->ffn_norm, NAME("post_attention_layernorm.weight"), d, 1))) return rc;
    if (c->q_lora_rank > 0) {
        if ((rc = bind_mat(b, &w->q_a, NAME("self_attn.q_a_proj.weight"), c->q_lora_rank, d, 1))) return rc;
        if ((rc = bind_vec(b, &w->q_a_norm, NAME("self_attn.q_a_layernorm.weight"), c->q_lora_rank, 1))) return rc;
        if ((rc = bind_mat(b, &w->q_b, NAME("self_attn.q_b_proj.weight"), H * c->qk_head_dim, c->q_lora_rank, 1)))
            return rc;
    } else {
        if ((rc = bind_mat(b, &w->q, NAME("self_attn.q_proj.weight"), H * c->qk_head_dim, d, 1))) return rc;
    }
    if ((rc = bind_mat(b, &w->kv_a, NAME("self_attn.kv_a_proj_with_mqa.weight"), c->kv_lora_rank + c->qk_rope_head_dim,
                       d, 1)))
        return rc;
    if ((rc = bind_vec(b, &w->kv_a_norm, NAME("self_attn.kv_a_layernorm.weight"), c->kv_lora_rank, 1))) return rc;
    if ((rc = bind_mat(b, &w->kv_b, NAME("self_attn.kv_b_proj.weight"), H * (c->qk_nope_head_dim + c->v_head_dim),
                       c->kv_lora_rank, 1)))
        return rc;
    if ((rc = bind_mat(b, &w->o, NAME("self_attn.o_proj.weight"), d, H * c->v_head_dim, 1))) return rc;
    w->is_moe = ds3_config_is_moe(c, l);
    if (!w->is_moe) {
        snprintf(n, sizeof n, "%s.mlp", p);
        if ((rc = bind_ffn(b, &w->dense, n, d, c->intermediate_size))) return rc;
    } else {
        const int Nr = c->n_routed_experts;
        if ((rc = bind_mat(b, &w->router, NAME("mlp.gate.weight"), Nr, d, 1))) return rc;
        /* The bias exists for noaux_tc (V3); derive from the file, not from the hidden size. */
        if ((rc = bind_vec(b, &w->router_bias, NAME("mlp.gate.e_score_correction_bias"), Nr,
                           c->topk_method == DS3_TOPK_NOAUX_TC)))
            return rc;
        w->experts = calloc((size_t)Nr, sizeof *w->experts);
        if (!w->experts) return ds3_seterr(b->err, b->errlen, DS3_ERR_NOMEM, "out of memory");
        for (int e = 0; e < Nr; e++) {
            snprintf(n, sizeof n, "%s.mlp.experts.%d", p, e);
            if ((rc = bind_ffn(b, &w->experts[e], n, d, c->moe_intermediate_size))) return rc;
        }
        if (c->n_shared_experts > 0) {
            w->has_shared = 1;
            snprintf(n, sizeof n, "%s.mlp.shared_experts", p);
            if ((rc = bind_ffn(b, &w->shared, n, d, (int64_t)c->n_shared_experts * c->moe_intermediate_size)))
                return rc;
        }
    }
    if (is_mtp) {
        const int64_t V = c->vocab_size;
        if ((rc = bind_vec(b, &w->enorm, NAME("enorm.weight"), d, 1))) return rc;
        if ((rc = bind_vec(b, &w->hnorm, NAME("hnorm.weight"), d, 1))) return rc;
        if ((rc = bind_mat(b, &w->eh_proj, NAME("eh_proj.weight"), d, 2 * d, 1))) return rc;
        if ((rc = bind_vec(b, &w->head_norm, NAME("shared_head.norm.weight"), d, 1))) return rc;
        /* The MTP copies of embedding and head may be omitted (they equal the main ones). */
        if ((rc = bind_mat(b, &w->mtp_embed, NAME("embed_tokens.weight"), V, d, 0))) return rc;
        if (!w->mtp_embed.data) w->mtp_embed = b->m->embed;
        if ((rc = bind_mat(b, &w->mtp_head, NAME("shared_head.head.weight"), V, d, 0))) return rc;
        if (!w->mtp_head.data) w->mtp_head = b->m->head;
    }
#undef NAME
    return 0;
}

static int bind_layer_cb(void *b, ds3_layer_w *w, int l, int is_mtp) { return bind_layer(b, w, l, is_mtp); }

static void free_layer(ds3_layer_w *w) {
    free(w->attn_norm);
    free(w->ffn_norm);
    free(w->q_a_norm);
    free(w->kv_a_norm);
    free(w->router_bias);
    free(w->experts);
    free(w->enorm);
    free(w->hnorm);
    free(w->head_norm);
}

/* Bind the main blocks and the MTP blocks with a format's layer binder, then derive what the
 * forward needs (RoPE frequencies). Shared by the safetensors and GGUF loaders. */
int ds3_model_bind_blocks(ds3_model *m, int load_mtp, ds3_bind_layer_fn bind, void *binder_ctx) {
    const ds3_config *c = &m->cfg;
    m->layers = calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
    if (!m->layers) return DS3_ERR_NOMEM;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        int rc = bind(binder_ctx, &m->layers[l], l, 0);
        if (rc) return rc;
        m->n_moe_layers += m->layers[l].is_moe;
    }
    if (load_mtp && c->num_nextn_predict_layers > 0) {
        m->n_mtp = c->num_nextn_predict_layers;
        m->mtp = calloc((size_t)m->n_mtp, sizeof *m->mtp);
        if (!m->mtp) return DS3_ERR_NOMEM;
        for (int k = 0; k < m->n_mtp; k++) {
            int rc = bind(binder_ctx, &m->mtp[k], c->num_hidden_layers + k, 1);
            if (rc) return rc;
        }
    }
    m->rope_inv_freq = malloc((size_t)(c->qk_rope_head_dim / 2 + 1) * sizeof(float));
    if (!m->rope_inv_freq) return DS3_ERR_NOMEM;
    ds3_config_rope_inv_freq(c, m->rope_inv_freq);
    return 0;
}

ds3_model_params ds3_model_default_params(void) {
    ds3_model_params p = {.use_mmap = 1, .use_mlock = 0, .load_mtp = 1, .verbose = 0};
    return p;
}

void ds3_model_free(ds3_model *m) {
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->cfg.num_hidden_layers; l++) free_layer(&m->layers[l]);
    if (m->mtp)
        for (int l = 0; l < m->n_mtp; l++) free_layer(&m->mtp[l]);
    free(m->layers);
    free(m->mtp);
    free(m->final_norm);
    free(m->rope_inv_freq);
    ds3_st_close(m->st);
    ds3_model_gguf_close(m);
    free(m->dir);
    free(m);
}

ds3_model *ds3_model_load(const char *dir, const ds3_model_params *p, char *err, size_t errlen) {
    ds3_kernels_init();
    ds3_model_params defp = ds3_model_default_params();
    if (!p) p = &defp;
    struct stat sb;
    if (!dir || stat(dir, &sb) != 0) {
        ds3_seterr(err, errlen, DS3_ERR_IO, "%s: model directory does not exist", dir ? dir : "(null)");
        return NULL;
    }
    if (S_ISREG(sb.st_mode)) { /* a GGUF file, or not a model at all */
        char magic[4] = {0};
        FILE *f = fopen(dir, "rb");
        size_t got = f ? fread(magic, 1, 4, f) : 0;
        if (f) fclose(f);
        if (got == 4 && !memcmp(magic, "GGUF", 4)) return ds3_model_load_gguf(dir, p, err, errlen);
        ds3_seterr(err, errlen, DS3_ERR_IO,
                   "%s: not a model directory (expected a folder with config.json and *.safetensors, or a .gguf file)",
                   dir);
        return NULL;
    }
    if (!S_ISDIR(sb.st_mode)) {
        ds3_seterr(err, errlen, DS3_ERR_IO, "%s: not a model directory (expected a folder with config.json and *.safetensors)",
                   dir);
        return NULL;
    }
    ds3_model *m = calloc(1, sizeof *m);
    if (!m) {
        ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->dir = strdup(dir);
    m->verbose = p->verbose;
    char path[4096];
    ds3_path_join(path, sizeof path, dir, "config.json");
    if (ds3_config_load(&m->cfg, path, err, errlen)) goto fail;
    ds3_config *c = &m->cfg;
    ds3_st_opts so = {.use_mmap = p->use_mmap, .use_mlock = p->use_mlock};
    if (ds3_st_open_dir(dir, &so, &m->st, err, errlen)) goto fail;

    binder b = {m, dir, err, errlen};
    const int64_t V = c->vocab_size, d = c->hidden_size;
    if (bind_mat(&b, &m->embed, "model.embed_tokens.weight", V, d, 1)) goto fail;
    if (bind_vec(&b, &m->final_norm, "model.norm.weight", d, 1)) goto fail;
    if (bind_mat(&b, &m->head, "lm_head.weight", V, d, !c->tie_word_embeddings)) goto fail;
    if (!m->head.data) m->head = m->embed;
    int rc = ds3_model_bind_blocks(m, p->load_mtp, bind_layer_cb, &b);
    if (rc == DS3_ERR_NOMEM) goto nomem;
    if (rc) goto fail;
    if (p->verbose) {
        int unused = 0;
        for (int i = 0; i < ds3_st_n_tensors(m->st); i++) {
            ds3_st_tensor *t = ds3_st_tensor_at(m->st, i);
            if (!t->used) {
                if (unused < 5) fprintf(stderr, "ds3: note: tensor '%s' is not used\n", t->name);
                unused++;
            }
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

int ds3_model_vocab_size(const ds3_model *m) { return m->cfg.vocab_size; }
int ds3_model_has_mtp(const ds3_model *m) { return m->n_mtp > 0; }
int ds3_model_n_layers(const ds3_model *m) { return m->cfg.num_hidden_layers; }
int ds3_model_bos(const ds3_model *m) { return m->cfg.bos_token_id; }
int ds3_model_eos(const ds3_model *m) { return m->cfg.eos_token_id; }
const char *ds3_model_dir(const ds3_model *m) { return m->dir; }

static double mat_bytes(const ds3_mat *w) {
    if (!w->data) return 0;
    if (DS3_DT_IS_QUANT(w->dtype)) return ds3_mat_bytes(w);
    double b = (double)w->rows * w->cols * ds3_dtype_size(w->dtype);
    if (w->dtype == DS3_DT_F8E4M3)
        b += 4.0 * ((w->rows + 127) / 128) * ((w->cols + 127) / 128);
    return b;
}
static double mat_params(const ds3_mat *w) { return w->data ? (double)w->rows * w->cols : 0; }
static double ffn_bytes(const ds3_ffn_w *f) { return mat_bytes(&f->gate) + mat_bytes(&f->up) + mat_bytes(&f->down); }
static double ffn_params(const ds3_ffn_w *f) { return mat_params(&f->gate) + mat_params(&f->up) + mat_params(&f->down); }

/* Parameters and bytes of one block: total, and per token (top-k routed experts only). */
static void layer_stats(const ds3_model *m, const ds3_layer_w *w, double *p_tot, double *p_act, double *b_tok) {
    const ds3_config *c = &m->cfg;
    double p = 2.0 * c->hidden_size, b = 0;
    const ds3_mat *att[] = {&w->q_a, &w->q_b, &w->q, &w->kv_a, &w->kv_b, &w->o, &w->k_b, &w->v_b};
    for (int i = 0; i < 8; i++) {
        p += mat_params(att[i]);
        b += mat_bytes(att[i]);
    }
    p += c->kv_lora_rank + (c->q_lora_rank ? c->q_lora_rank : 0);
    double act = p;
    if (!w->is_moe) {
        p += ffn_params(&w->dense);
        act += ffn_params(&w->dense);
        b += ffn_bytes(&w->dense);
    } else {
        p += mat_params(&w->router) + (w->router_bias ? c->n_routed_experts : 0);
        act += mat_params(&w->router);
        b += mat_bytes(&w->router);
        for (int e = 0; e < c->n_routed_experts; e++) p += ffn_params(&w->experts[e]);
        act += c->num_experts_per_tok * ffn_params(&w->experts[0]);
        b += c->num_experts_per_tok * ffn_bytes(&w->experts[0]);
        if (w->has_shared) {
            p += ffn_params(&w->shared);
            act += ffn_params(&w->shared);
            b += ffn_bytes(&w->shared);
        }
    }
    *p_tot += p;
    *p_act += act;
    *b_tok += b;
}

void ds3_model_get_stats(const ds3_model *m, ds3_model_stats *s) {
    const ds3_config *c = &m->cfg;
    memset(s, 0, sizeof *s);
    double pt = mat_params(&m->embed) + c->hidden_size, pa = c->hidden_size, bt = 0;
    if (m->head.data != m->embed.data) pt += mat_params(&m->head);
    pa += mat_params(&m->head) + c->hidden_size; /* one embedding row is read, the head fully */
    bt += mat_bytes(&m->head) + (double)ds3_row_bytes(m->embed.dtype, c->hidden_size);
    for (int l = 0; l < c->num_hidden_layers; l++) layer_stats(m, &m->layers[l], &pt, &pa, &bt);
    s->n_params_total = pt;
    s->n_params_active = pa;
    s->bytes_per_token = bt;
    double mt = 0, ma = 0, mb = 0;
    for (int k = 0; k < m->n_mtp; k++) {
        layer_stats(m, &m->mtp[k], &mt, &ma, &mb);
        mt += mat_params(&m->mtp[k].eh_proj) + 3.0 * c->hidden_size;
        if (m->mtp[k].mtp_embed.data != m->embed.data) mt += mat_params(&m->mtp[k].mtp_embed);
        if (m->mtp[k].mtp_head.data != m->head.data) mt += mat_params(&m->mtp[k].mtp_head);
    }
    s->n_params_mtp = mt;
    s->bytes_weights = m->st ? (double)ds3_st_total_bytes(m->st) : ds3_model_gguf_bytes(m);
    s->kv_bytes_per_token = 4.0 * c->num_hidden_layers * (c->kv_lora_rank + c->qk_rope_head_dim);
}

void ds3_model_print_info(const ds3_model *m, void *stream) {
    FILE *f = stream;
    const ds3_config *c = &m->cfg;
    ds3_model_stats s;
    ds3_model_get_stats(m, &s);
    const char *tm = c->topk_method == DS3_TOPK_NOAUX_TC ? "noaux_tc" : c->topk_method == DS3_TOPK_GREEDY ? "greedy"
                                                                                                      : "group_limited_greedy";
    fprintf(f, "model:            %s\n", m->dir);
    fprintf(f, "model_type:       %s\n", c->arch == DS3_ARCH_V3 ? "deepseek_v3" : "deepseek_v2");
    fprintf(f, "vocab_size:       %d\n", c->vocab_size);
    fprintf(f, "hidden_size:      %d\n", c->hidden_size);
    fprintf(f, "layers:           %d (%d dense first, %d MoE) + %d MTP\n", c->num_hidden_layers,
            c->num_hidden_layers - m->n_moe_layers, m->n_moe_layers, c->num_nextn_predict_layers);
    fprintf(f, "attention:        MLA, %d heads, q_lora_rank %d%s, kv_lora_rank %d, nope/rope/v %d/%d/%d\n", c->n_heads,
            c->q_lora_rank, c->q_lora_rank ? "" : " (q_proj)", c->kv_lora_rank, c->qk_nope_head_dim, c->qk_rope_head_dim,
            c->v_head_dim);
    fprintf(f, "rope:             theta %g%s", (double)c->rope_theta, c->yarn ? ", YaRN" : "\n");
    if (c->yarn)
        fprintf(f, " factor %g, original %d, beta %g/%g, mscale %g/%g\n", (double)c->rope_factor,
                c->rope_original_max_pos, (double)c->beta_fast, (double)c->beta_slow, (double)c->mscale,
                (double)c->mscale_all_dim);
    fprintf(f, "softmax_scale:    %.7f\n", (double)c->softmax_scale);
    fprintf(f, "dense ffn:        %d\n", c->intermediate_size);
    if (c->n_routed_experts)
        fprintf(f, "moe:              %d routed (top %d, width %d) + %d shared; %s, %s, groups %d keep %d, norm %s, scale %g\n",
                c->n_routed_experts, c->num_experts_per_tok, c->moe_intermediate_size, c->n_shared_experts,
                c->scoring_func == DS3_SCORE_SIGMOID ? "sigmoid" : "softmax", tm, c->n_group, c->topk_group,
                c->norm_topk_prob ? "yes" : "no", (double)c->routed_scaling_factor);
    fprintf(f, "max_position:     %d\n", c->max_position_embeddings);
    fprintf(f, "weights dtype:    embed %s, head %s, attn %s\n", ds3_dtype_name(m->embed.dtype), ds3_dtype_name(m->head.dtype),
            ds3_dtype_name(m->layers[0].kv_a.dtype));
    fprintf(f, "params total:     %.0f (%.3f B)\n", s.n_params_total, s.n_params_total / 1e9);
    fprintf(f, "params active:    %.0f (%.3f B) per token\n", s.n_params_active, s.n_params_active / 1e9);
    if (m->n_mtp) fprintf(f, "params MTP:       %.0f (%.3f B, not shared with the main model)\n", s.n_params_mtp, s.n_params_mtp / 1e9);
    fprintf(f, "weight bytes:     %.0f (%.2f GiB in the files)\n", s.bytes_weights, s.bytes_weights / 1073741824.0);
    fprintf(f, "bytes per token:  %.0f (%.2f MiB of weights read to decode one token)\n", s.bytes_per_token,
            s.bytes_per_token / 1048576.0);
    fprintf(f, "kv cache / token: %.0f bytes (f32 latent: %d x (%d + %d) x 4)\n", s.kv_bytes_per_token,
            c->num_hidden_layers, c->kv_lora_rank, c->qk_rope_head_dim);
}
