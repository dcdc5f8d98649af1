/* tmodel.c -- the model for training: parameter table, activations, and the whole-model
 * forward/backward step (main model, MTP module, balance losses). Layer math lives in src/nn/
 * (`_fwd_t` / `_bwd` pairs); this file only composes it (spec 2, 6.3, 7.2).
 * Owned by the training engineer. */
#include "train/tmodel.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "io/safetensors.h"
#include "util/common.h"

/* ---- parameter table ---- */

/* Pass 0 counts, pass 1 assigns; returns the tensor's memory (NULL in pass 0). */
static float *P(ds3_tmodel *m, int pass, int64_t r, int64_t cdim, int decay, int trainable, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static float *P(ds3_tmodel *m, int pass, int64_t r, int64_t cdim, int decay, int trainable, const char *fmt, ...) {
    const size_t n = (size_t)r * (size_t)(cdim > 0 ? cdim : 1);
    if (pass == 0) {
        m->n_params += n;
        m->cap_tensors++;
        return NULL;
    }
    ds3_tinfo *t = &m->tensors[m->n_tensors++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ndim = cdim > 0 ? 2 : 1;
    t->shape[0] = r;
    t->shape[1] = cdim > 0 ? cdim : 0;
    t->off = m->n_params;
    t->n = n;
    t->decay = decay;
    t->trainable = trainable;
    m->n_params += n;
    return m->params + t->off;
}

/* Stacked matrices ([gate; up], [q_a; kv_a]) are one allocation, named as their parts. */
static float *P2(ds3_tmodel *m, int pass, int64_t r1, int64_t r2, int64_t cdim, const char *n1, const char *n2) {
    float *a = P(m, pass, r1, cdim, 1, 1, "%s", n1);
    P(m, pass, r2, cdim, 1, 1, "%s", n2);
    return a;
}

static void build_layer(ds3_tmodel *m, int pass, int l, ds3_tlayer *w) {
    const ds3_config *c = &m->cfg;
    const int d = c->hidden_size, H = c->n_heads, dq = c->qk_head_dim, dn = c->qk_nope_head_dim;
    const int dv = c->v_head_dim, rkv = c->kv_lora_rank, rq = c->q_lora_rank, dr = c->qk_rope_head_dim;
    const int mtp = l >= c->num_hidden_layers;
    char a[160], b[160];
#define NM(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)
    if (mtp) {
        w->enorm = P(m, pass, d, 0, 0, 1, "model.layers.%d.enorm.weight", l);
        w->hnorm = P(m, pass, d, 0, 0, 1, "model.layers.%d.hnorm.weight", l);
        w->eh_proj = P(m, pass, d, 2 * d, 1, 1, "model.layers.%d.eh_proj.weight", l);
    }
    w->attn_norm = P(m, pass, d, 0, 0, 1, "model.layers.%d.input_layernorm.weight", l);
    if (rq > 0) {
        NM(a, "model.layers.%d.self_attn.q_a_proj.weight", l);
        NM(b, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l);
        w->wa = P2(m, pass, rq, rkv + dr, d, a, b);
        w->q_a_norm = P(m, pass, rq, 0, 0, 1, "model.layers.%d.self_attn.q_a_layernorm.weight", l);
        w->q_b = P(m, pass, (int64_t)H * dq, rq, 1, 1, "model.layers.%d.self_attn.q_b_proj.weight", l);
    } else {
        NM(a, "model.layers.%d.self_attn.q_proj.weight", l);
        NM(b, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l);
        w->wa = P2(m, pass, (int64_t)H * dq, rkv + dr, d, a, b);
    }
    w->kv_a_norm = P(m, pass, rkv, 0, 0, 1, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
    w->kv_b = P(m, pass, (int64_t)H * (dn + dv), rkv, 1, 1, "model.layers.%d.self_attn.kv_b_proj.weight", l);
    w->o = P(m, pass, d, (int64_t)H * dv, 1, 1, "model.layers.%d.self_attn.o_proj.weight", l);
    w->ffn_norm = P(m, pass, d, 0, 0, 1, "model.layers.%d.post_attention_layernorm.weight", l);
    w->is_moe = ds3_config_is_moe(c, l);
    if (!w->is_moe) {
        const int I = c->intermediate_size;
        NM(a, "model.layers.%d.mlp.gate_proj.weight", l);
        NM(b, "model.layers.%d.mlp.up_proj.weight", l);
        w->dense.gu = P2(m, pass, I, I, d, a, b);
        w->dense.down = P(m, pass, d, I, 1, 1, "model.layers.%d.mlp.down_proj.weight", l);
    } else {
        const int Nr = c->n_routed_experts, I = c->moe_intermediate_size, Is = c->n_shared_experts * I;
        w->router = P(m, pass, Nr, d, 1, 1, "model.layers.%d.mlp.gate.weight", l);
        w->router_bias = c->arch == DS3_ARCH_V3
                             ? P(m, pass, Nr, 0, 0, 0, "model.layers.%d.mlp.gate.e_score_correction_bias", l)
                             : NULL;
        for (int e = 0; e < Nr; e++) {
            ds3_tffn f;
            NM(a, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e);
            NM(b, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, e);
            f.gu = P2(m, pass, I, I, d, a, b);
            f.down = P(m, pass, d, I, 1, 1, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e);
            if (pass) w->experts[e] = f;
        }
        if (Is > 0) {
            NM(a, "model.layers.%d.mlp.shared_experts.gate_proj.weight", l);
            NM(b, "model.layers.%d.mlp.shared_experts.up_proj.weight", l);
            w->shared.gu = P2(m, pass, Is, Is, d, a, b);
            w->shared.down = P(m, pass, d, Is, 1, 1, "model.layers.%d.mlp.shared_experts.down_proj.weight", l);
        }
    }
    if (mtp) w->head_norm = P(m, pass, d, 0, 0, 1, "model.layers.%d.shared_head.norm.weight", l);
#undef NM
}

static void build(ds3_tmodel *m, int pass) {
    const ds3_config *c = &m->cfg;
    const int d = c->hidden_size, V = c->vocab_size;
    m->n_params = 0;
    m->embed = P(m, pass, V, d, 1, 1, "model.embed_tokens.weight");
    for (int l = 0; l < c->num_hidden_layers + m->use_mtp; l++) build_layer(m, pass, l, &m->layers[l]);
    m->final_norm = P(m, pass, d, 0, 0, 1, "model.norm.weight");
    m->head = P(m, pass, V, d, 1, 1, "lm_head.weight");
}

#define GP(p) ((p) ? m->grads + ((p) - m->params) : NULL)
static void grad_layer(ds3_tmodel *m, const ds3_tlayer *w, ds3_tlayer *g, ds3_tffn *gexp) {
    *g = *w;
    g->attn_norm = GP(w->attn_norm), g->ffn_norm = GP(w->ffn_norm), g->wa = GP(w->wa), g->q_a_norm = GP(w->q_a_norm);
    g->q_b = GP(w->q_b), g->kv_a_norm = GP(w->kv_a_norm), g->kv_b = GP(w->kv_b), g->o = GP(w->o);
    g->dense.gu = GP(w->dense.gu), g->dense.down = GP(w->dense.down), g->router = GP(w->router);
    g->router_bias = NULL, g->shared.gu = GP(w->shared.gu), g->shared.down = GP(w->shared.down);
    g->enorm = GP(w->enorm), g->hnorm = GP(w->hnorm), g->eh_proj = GP(w->eh_proj), g->head_norm = GP(w->head_norm);
    if (w->is_moe) {
        g->experts = gexp;
        for (int e = 0; e < m->cfg.n_routed_experts; e++) gexp[e] = (ds3_tffn){GP(w->experts[e].gu), GP(w->experts[e].down)};
    }
}

const ds3_tinfo *ds3_tmodel_find(const ds3_tmodel *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

/* ---- allocation ---- */

void ds3_tmodel_free(ds3_tmodel *m) {
    if (!m) return;
    if (m->ctx.pool) ds3_pool_free(m->ctx.pool);
    if (m->ctx.tbuf)
        for (int i = 0; i < m->ctx.nth; i++) free(m->ctx.tbuf[i]);
    free(m->ctx.tbuf);
    const int nl = m->cfg.num_hidden_layers + m->use_mtp;
    if (m->acts) {
        for (int l = 0; l < nl; l++) {
            ds3_tlayer_act *A = &m->acts[l];
            void *p[] = {A->xn1, A->rstd1, A->h_mid, A->xn2, A->rstd2, A->mla.a, A->mla.qa_rstd, A->mla.qan,
                         A->mla.q, A->mla.kv_rstd, A->mla.cn, A->mla.kpe, A->mla.kvb, A->mla.p, A->mla.o,
                         A->ffn_gu, A->ffn_a, A->moe.logits, A->moe.s, A->moe.ids, A->moe.wts, A->moe.dsbal,
                         A->moe.offset, A->moe.slot, A->moe.tok, A->moe.gu, A->moe.a, A->moe.yg, A->moe.sgu,
                         A->moe.sa};
            for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
        }
    }
    if (m->hs)
        for (int l = 0; l <= m->cfg.num_hidden_layers; l++) free(m->hs[l]);
    void *p[] = {m->params, m->grads, m->tensors, m->layers, m->glayers, m->exp_mem, m->gexp_mem, m->rope_inv_freq,
                 m->moe_index, m->loads, m->hs, m->acts, m->hf, m->rstd_f, m->logits, m->row_loss, m->dhf, m->dh,
                 m->dxn, m->tmp, m->dgu, m->dfa, m->mla_sc.dO, m->mla_sc.dq, m->mla_sc.dkvb, m->mla_sc.dkpe_h,
                 m->mla_sc.dcn, m->mla_sc.dqan, m->mla_sc.da, m->moe_sc.xg, m->moe_sc.dyg, m->moe_sc.dgu,
                 m->moe_sc.da, m->moe_sc.dxg, m->moe_sc.dsgu, m->moe_sc.dsa, m->moe_sc.dwts, m->moe_sc.dlogits,
                 m->moe_sc.rscratch, m->moe_sc.jobs, m->mtp_tgt, m->mtp_nxt, m->e, m->rstd_e, m->rstd_hn, m->cat, m->dcat,
                 m->z0, m->z1, m->zf, m->rstd_z, m->dzf, m->dz};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
    free(m);
}

#define ALLOC(ptr, n)                                                                        \
    do {                                                                                     \
        (ptr) = ds3_alloc_aligned(((size_t)(n) > 0 ? (size_t)(n) : 1) * sizeof *(ptr));     \
        if (!(ptr)) goto nomem;                                                              \
    } while (0)

ds3_tmodel *ds3_tmodel_new(const ds3_config *c, int Bmax, int T, int n_threads, char *err, size_t errlen) {
    ds3_kernels_init();
    if (c->n_routed_experts > 1024) {
        ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "training supports at most 1024 routed experts (config has %d)",
                   c->n_routed_experts);
        return NULL;
    }
    if (Bmax < 1 || T < 2) {
        ds3_seterr(err, errlen, DS3_ERR_ARG, "batch %d x sequence %d is too small (need B >= 1, T >= 2)", Bmax, T);
        return NULL;
    }
    ds3_tmodel *m = calloc(1, sizeof *m);
    if (!m) goto nomem;
    m->cfg = *c;
    m->use_mtp = c->num_nextn_predict_layers > 0;
    m->Bmax = Bmax, m->T = T;
    m->nth = n_threads > 0 ? n_threads : ds3_n_cpus();
    m->bal_mode = DS3_BAL_SEQ, m->bal_alpha = 1e-4f, m->mtp_lambda = 0.3f;
    const int L = c->num_hidden_layers, nl = L + m->use_mtp, Nr = c->n_routed_experts;
    m->layers = calloc((size_t)nl, sizeof *m->layers);
    m->glayers = calloc((size_t)nl, sizeof *m->glayers);
    m->exp_mem = calloc((size_t)nl * (Nr ? Nr : 1), sizeof *m->exp_mem);
    m->gexp_mem = calloc((size_t)nl * (Nr ? Nr : 1), sizeof *m->gexp_mem);
    m->moe_index = calloc((size_t)nl, sizeof *m->moe_index);
    if (!m->layers || !m->glayers || !m->exp_mem || !m->gexp_mem || !m->moe_index) goto nomem;
    for (int l = 0; l < nl; l++) m->layers[l].experts = m->exp_mem + (size_t)l * Nr;
    build(m, 0);
    m->tensors = calloc((size_t)m->cap_tensors, sizeof *m->tensors);
    if (!m->tensors) goto nomem;
    ALLOC(m->params, m->n_params);
    ALLOC(m->grads, m->n_params);
    build(m, 1);
    for (int l = 0; l < nl; l++) {
        grad_layer(m, &m->layers[l], &m->glayers[l], m->gexp_mem + (size_t)l * Nr);
        m->moe_index[l] = m->layers[l].is_moe ? m->n_moe++ : -1;
    }
    ALLOC(m->loads, (size_t)(m->n_moe ? m->n_moe : 1) * (Nr ? Nr : 1));
    ALLOC(m->rope_inv_freq, c->qk_rope_head_dim / 2 + 1);
    ds3_config_rope_inv_freq(c, m->rope_inv_freq);

    /* activations */
    const size_t N = (size_t)Bmax * T, d = c->hidden_size, V = c->vocab_size, H = c->n_heads;
    const size_t dq = c->qk_head_dim, dn = c->qk_nope_head_dim, dv = c->v_head_dim, dr = c->qk_rope_head_dim;
    const size_t rq = c->q_lora_rank, rkv = c->kv_lora_rank, n1 = rq ? rq : H * dq, lda = n1 + rkv + dr;
    const size_t K = c->num_experts_per_tok ? c->num_experts_per_tok : 1, I = c->moe_intermediate_size;
    const size_t Is = (size_t)c->n_shared_experts * I, Id = c->intermediate_size;
    m->hs = calloc((size_t)L + 1, sizeof *m->hs);
    m->acts = calloc((size_t)nl, sizeof *m->acts);
    if (!m->hs || !m->acts) goto nomem;
    for (int l = 0; l <= L; l++) ALLOC(m->hs[l], N * d);
    for (int l = 0; l < nl; l++) {
        ds3_tlayer_act *A = &m->acts[l];
        ALLOC(A->xn1, N * d); ALLOC(A->rstd1, N); ALLOC(A->h_mid, N * d); ALLOC(A->xn2, N * d); ALLOC(A->rstd2, N);
        ALLOC(A->mla.a, N * lda); ALLOC(A->mla.kv_rstd, N); ALLOC(A->mla.cn, N * rkv); ALLOC(A->mla.kpe, N * dr);
        if (rq) { ALLOC(A->mla.qa_rstd, N); ALLOC(A->mla.qan, N * rq); }
        ALLOC(A->mla.q, N * H * dq); ALLOC(A->mla.kvb, N * H * (dn + dv)); ALLOC(A->mla.p, (size_t)Bmax * H * T * T);
        ALLOC(A->mla.o, N * H * dv);
        if (!m->layers[l].is_moe) {
            ALLOC(A->ffn_gu, N * 2 * Id); ALLOC(A->ffn_a, N * Id);
        } else {
            ds3_moe_act *M = &A->moe;
            ALLOC(M->logits, N * Nr); ALLOC(M->s, N * Nr); ALLOC(M->ids, N * K); ALLOC(M->wts, N * K);
            ALLOC(M->dsbal, N * Nr); ALLOC(M->offset, (size_t)Nr + 1); ALLOC(M->slot, N * K); ALLOC(M->tok, N * K);
            ALLOC(M->gu, N * K * 2 * I); ALLOC(M->a, N * K * I); ALLOC(M->yg, N * K * d);
            if (Is) { ALLOC(M->sgu, N * 2 * Is); ALLOC(M->sa, N * Is); }
        }
    }
    ALLOC(m->hf, N * d); ALLOC(m->rstd_f, N); ALLOC(m->logits, N * V); ALLOC(m->row_loss, N);
    ALLOC(m->dhf, N * d); ALLOC(m->dh, N * d); ALLOC(m->dxn, N * d); ALLOC(m->tmp, N * d);
    ALLOC(m->dgu, N * 2 * Id); ALLOC(m->dfa, N * Id);
    ALLOC(m->mla_sc.dO, N * H * dv); ALLOC(m->mla_sc.dq, N * H * dq); ALLOC(m->mla_sc.dkvb, N * H * (dn + dv));
    ALLOC(m->mla_sc.dkpe_h, N * H * dr); ALLOC(m->mla_sc.dcn, N * rkv); ALLOC(m->mla_sc.dqan, N * (rq ? rq : 1));
    ALLOC(m->mla_sc.da, N * lda);
    if (m->n_moe) {
        ds3_moe_scratch *S = &m->moe_sc;
        ALLOC(S->xg, N * K * d); ALLOC(S->dyg, N * K * d); ALLOC(S->dgu, N * K * 2 * I); ALLOC(S->da, N * K * I);
        ALLOC(S->dxg, N * K * d); ALLOC(S->dwts, N * K); ALLOC(S->dlogits, N * Nr + Nr);
        if (Is) { ALLOC(S->dsgu, N * 2 * Is); ALLOC(S->dsa, N * Is); }
        ALLOC(S->rscratch, 2 * (size_t)Nr + c->n_group + 8); ALLOC(S->jobs, 2 * (size_t)Nr + 8);
    }
    if (m->use_mtp) {
        ALLOC(m->mtp_tgt, N); ALLOC(m->mtp_nxt, N); ALLOC(m->e, N * d); ALLOC(m->rstd_e, N); ALLOC(m->rstd_hn, N); ALLOC(m->cat, N * 2 * d);
        ALLOC(m->dcat, N * 2 * d); ALLOC(m->z0, N * d); ALLOC(m->z1, N * d); ALLOC(m->zf, N * d); ALLOC(m->rstd_z, N);
        ALLOC(m->dzf, N * d); ALLOC(m->dz, N * d);
    }
    m->ctx.nth = m->nth;
    m->ctx.pool = ds3_pool_new(m->nth);
    if (!m->ctx.pool) goto nomem;
    m->ctx.tbuf_floats = ds3_mla_train_tbuf_floats(c, T);
    m->ctx.tbuf = calloc((size_t)m->nth, sizeof(float *));
    if (!m->ctx.tbuf) goto nomem;
    for (int i = 0; i < m->nth; i++) ALLOC(m->ctx.tbuf[i], m->ctx.tbuf_floats);
    return m;
nomem:
    ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory building the training model (batch %d x %d)", Bmax, T);
    ds3_tmodel_free(m);
    return NULL;
}

/* ---- init, load, save ---- */

static float gauss(uint64_t *s) {
    double u1 = ((ds3_rng_next(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (ds3_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2 * M_PI * u2));
}

void ds3_tmodel_init(ds3_tmodel *m, uint64_t seed, float std) {
    uint64_t s = seed;
    for (int i = 0; i < m->n_tensors; i++) {
        const ds3_tinfo *t = &m->tensors[i];
        float *p = m->params + t->off;
        if (!t->trainable) memset(p, 0, t->n * sizeof(float));
        else if (t->ndim == 1) for (size_t k = 0; k < t->n; k++) p[k] = 1.0f;
        else for (size_t k = 0; k < t->n; k++) p[k] = std * gauss(&s);
    }
}

int ds3_tmodel_load(ds3_tmodel *m, const char *dir, char *err, size_t errlen) {
    ds3_st *st;
    ds3_st_opts o = {1, 0};
    int rc = ds3_st_open_dir(dir, &o, &st, err, errlen);
    if (rc) return rc;
    for (int i = 0; i < m->n_tensors; i++) {
        const ds3_tinfo *t = &m->tensors[i];
        const ds3_st_tensor *s = ds3_st_find(st, t->name);
        if (!s) {
            rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tensor %s is missing", dir, t->name);
            break;
        }
        int64_t n = 1;
        for (int k = 0; k < s->ndim; k++) n *= s->shape[k];
        if (s->ndim != t->ndim || s->shape[0] != t->shape[0] || (t->ndim == 2 && s->shape[1] != t->shape[1])) {
            rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tensor %s has the wrong shape for this config", dir,
                            t->name);
            break;
        }
        float *p = m->params + t->off;
        if (s->dtype == DS3_DT_F32) memcpy(p, s->data, t->n * sizeof(float));
        else if (s->dtype == DS3_DT_BF16)
            for (size_t k = 0; k < t->n; k++) p[k] = ds3_bf16_to_f32(((const uint16_t *)s->data)[k]);
        else if (s->dtype == DS3_DT_F16)
            for (size_t k = 0; k < t->n; k++) p[k] = ds3_f16_to_f32(((const uint16_t *)s->data)[k]);
        else {
            rc = ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: tensor %s: dtype %s cannot be trained", dir, t->name,
                            s->dtype_str);
            break;
        }
    }
    ds3_st_close(st);
    return rc;
}

int ds3_tmodel_save(const ds3_tmodel *m, const char *path, char *err, size_t errlen) {
    const int n = m->n_tensors + 2;
    ds3_st_write_tensor *w = calloc((size_t)n, sizeof *w);
    char names[2][112];
    if (!w) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory writing %s", path);
    int k = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ds3_tinfo *t = &m->tensors[i];
        w[k++] = (ds3_st_write_tensor){t->name, DS3_DT_F32, t->ndim, {t->shape[0], t->shape[1]}, m->params + t->off};
    }
    if (m->use_mtp) { /* copies of the shared embedding and head, so any loader finds them */
        const int L = m->cfg.num_hidden_layers;
        const int64_t V = m->cfg.vocab_size, d = m->cfg.hidden_size;
        snprintf(names[0], sizeof names[0], "model.layers.%d.embed_tokens.weight", L);
        snprintf(names[1], sizeof names[1], "model.layers.%d.shared_head.head.weight", L);
        w[k++] = (ds3_st_write_tensor){names[0], DS3_DT_F32, 2, {V, d}, m->embed};
        w[k++] = (ds3_st_write_tensor){names[1], DS3_DT_F32, 2, {V, d}, m->head};
    }
    int rc = ds3_st_write(path, w, k, err, errlen);
    free(w);
    return rc;
}

/* ---- the step ---- */

void ds3_tmodel_zero_grad(ds3_tmodel *m) { memset(m->grads, 0, m->n_params * sizeof(float)); }

double ds3_maxvio(const int64_t *loads, int Nr) {
    int64_t mx = 0, sum = 0;
    for (int e = 0; e < Nr; e++) {
        sum += loads[e];
        mx = loads[e] > mx ? loads[e] : mx;
    }
    if (!sum) return 0;
    return (double)mx * Nr / (double)sum - 1.0;
}

static void add(float *y, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static double block_fwd(ds3_tmodel *m, int l, const float *hin, float *hout, int B, int grad) {
    const ds3_config *c = &m->cfg;
    const int d = c->hidden_size, N = B * m->T;
    const ds3_tlayer *w = &m->layers[l];
    ds3_tlayer_act *A = &m->acts[l];
    double bal = 0;
    ds3_rmsnorm_fwd_t(A->xn1, d, A->rstd1, hin, d, w->attn_norm, N, d, c->rms_norm_eps);
    ds3_mla_fwd_t(&m->ctx, c, w, m->rope_inv_freq, A->xn1, B, m->T, m->tmp, &A->mla);
    add(A->h_mid, hin, m->tmp, (size_t)N * d);
    ds3_rmsnorm_fwd_t(A->xn2, d, A->rstd2, A->h_mid, d, w->ffn_norm, N, d, c->rms_norm_eps);
    if (w->is_moe) {
        int64_t *loads = m->loads + (size_t)m->moe_index[l] * c->n_routed_experts;
        ds3_moe_fwd_t(&m->ctx, c, w, A->xn2, N, m->tmp, &A->moe, &m->moe_sc, loads);
        if (m->bal_mode != DS3_BAL_NONE) {
            const int group = m->bal_mode == DS3_BAL_SEQ ? m->T : N;
            bal = ds3_balance_loss(c, A->moe.s, A->moe.ids, N, group, m->bal_alpha, grad ? A->moe.dsbal : NULL);
        }
        if (grad && m->bal_mode == DS3_BAL_NONE) memset(A->moe.dsbal, 0, (size_t)N * c->n_routed_experts * sizeof(float));
    } else {
        ds3_ffn_fwd_t(&m->ctx, &w->dense, d, c->intermediate_size, A->xn2, N, m->tmp, A->ffn_gu, A->ffn_a);
    }
    add(hout, A->h_mid, m->tmp, (size_t)N * d);
    return bal;
}

/* dh: in d(hout), out d(hin) */
static void block_bwd(ds3_tmodel *m, int l, const float *hin, float *dh, int B) {
    const ds3_config *c = &m->cfg;
    const int d = c->hidden_size, N = B * m->T;
    const ds3_tlayer *w = &m->layers[l];
    ds3_tlayer *g = &m->glayers[l];
    const ds3_tlayer_act *A = &m->acts[l];
    if (w->is_moe) ds3_moe_bwd(&m->ctx, c, w, g, A->xn2, N, dh, m->dxn, &A->moe, &m->moe_sc);
    else ds3_ffn_bwd(&m->ctx, &w->dense, &g->dense, d, c->intermediate_size, A->xn2, N, dh, m->dxn, A->ffn_gu, A->ffn_a,
                     m->dgu, m->dfa);
    ds3_rmsnorm_bwd(dh, d, g->ffn_norm, m->dxn, d, A->h_mid, d, w->ffn_norm, A->rstd2, N, d);
    ds3_mla_bwd(&m->ctx, c, w, g, m->rope_inv_freq, A->xn1, B, m->T, dh, m->dxn, &A->mla, &m->mla_sc);
    ds3_rmsnorm_bwd(dh, d, g->attn_norm, m->dxn, d, hin, d, w->attn_norm, A->rstd1, N, d);
}

/* logits = x head^T; cross-entropy; when grad: dx (=, or += when acc) and dhead += */
static double head_loss(ds3_tmodel *m, const float *x, const int32_t *tgt, int N, float scale, int grad, float *dx,
                        int acc, float *logits_out) {
    const int d = m->cfg.hidden_size, V = m->cfg.vocab_size;
    ds3_tmm_job j = {DS3_TMM_NT, 0, N, V, d, x, d, m->head, d, m->logits, V};
    ds3_tmm(m->ctx.pool, &j, 1);
    if (logits_out) memcpy(logits_out, m->logits, (size_t)N * V * sizeof(float));
    double s = ds3_xent(&m->ctx, m->logits, tgt, N, V, scale, grad, m->row_loss);
    if (grad) {
        ds3_tmm_job jb[2] = {
            {DS3_TMM_NN, acc, N, d, V, m->logits, V, m->head, d, dx, d},
            {DS3_TMM_TN, 1, V, d, N, m->logits, V, x, d, m->grads + (m->head - m->params), d},
        };
        ds3_tmm(m->ctx.pool, jb, 2);
    }
    return s;
}

void ds3_tmodel_step(ds3_tmodel *m, const int32_t *inp, const int32_t *tgt, int B, int grad, ds3_tstats *st,
                     float *logits_out, float *mtp_logits_out) {
    const ds3_config *c = &m->cfg;
    const int d = c->hidden_size, L = c->num_hidden_layers, T = m->T, N = B * T;
    const float eps = c->rms_norm_eps;
    float *gembed = m->grads + (m->embed - m->params);
    DS3_ASSERT(B >= 1 && B <= m->Bmax);
    memset(st, 0, sizeof *st);
    ds3_embed_fwd_t(m->hs[0], m->embed, inp, N, d);
    double bal = 0;
    for (int l = 0; l < L; l++) bal += block_fwd(m, l, m->hs[l], m->hs[l + 1], B, grad);
    ds3_rmsnorm_fwd_t(m->hf, d, m->rstd_f, m->hs[L], d, m->final_norm, N, d, eps);
    int nv = 0;
    for (int i = 0; i < N; i++) nv += tgt[i] >= 0;
    st->n_tok = nv;
    st->loss = head_loss(m, m->hf, tgt, N, nv ? 1.0f / nv : 0.0f, grad, m->dhf, 0, logits_out) / (nv ? nv : 1);
    if (m->use_mtp) {
        ds3_tlayer *w = &m->layers[L], *g = &m->glayers[L];
        int nm = 0;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const int i = b * T + t;
                m->mtp_tgt[i] = t < T - 1 ? tgt[i + 1] : -1;
                nm += m->mtp_tgt[i] >= 0;
            }
        /* next tokens t_{i+1} are the main targets; a masked target is embedded as token 0 */
        int32_t *nxt_buf = m->mtp_nxt;
        for (int i = 0; i < N; i++) nxt_buf[i] = tgt[i] >= 0 ? tgt[i] : 0;
        ds3_embed_fwd_t(m->e, m->embed, nxt_buf, N, d);
        ds3_rmsnorm_fwd_t(m->cat, 2 * (size_t)d, m->rstd_e, m->e, d, w->enorm, N, d, eps);
        ds3_rmsnorm_fwd_t(m->cat + d, 2 * (size_t)d, m->rstd_hn, m->hf, d, w->hnorm, N, d, eps);
        ds3_tmm_job je = {DS3_TMM_NT, 0, N, d, 2 * d, m->cat, 2 * (size_t)d, w->eh_proj, 2 * (size_t)d, m->z0, d};
        ds3_tmm(m->ctx.pool, &je, 1);
        bal += block_fwd(m, L, m->z0, m->z1, B, grad);
        ds3_rmsnorm_fwd_t(m->zf, d, m->rstd_z, m->z1, d, w->head_norm, N, d, eps);
        st->n_mtp = nm;
        st->mtp_loss = head_loss(m, m->zf, m->mtp_tgt, N, nm ? m->mtp_lambda / nm : 0.0f, grad, m->dzf, 0,
                                 mtp_logits_out) / (nm ? nm : 1);
        if (grad) {
            memset(m->dz, 0, (size_t)N * d * sizeof(float));
            ds3_rmsnorm_bwd(m->dz, d, g->head_norm, m->dzf, d, m->z1, d, w->head_norm, m->rstd_z, N, d);
            block_bwd(m, L, m->z0, m->dz, B);
            ds3_tmm_job jb[2] = {
                {DS3_TMM_NN, 0, N, 2 * d, d, m->dz, d, w->eh_proj, 2 * (size_t)d, m->dcat, 2 * (size_t)d},
                {DS3_TMM_TN, 1, d, 2 * d, N, m->dz, d, m->cat, 2 * (size_t)d, g->eh_proj, 2 * (size_t)d},
            };
            ds3_tmm(m->ctx.pool, jb, 2);
            memset(m->dz, 0, (size_t)N * d * sizeof(float)); /* now: d(embedding of next tokens) */
            ds3_rmsnorm_bwd(m->dz, d, g->enorm, m->dcat, 2 * (size_t)d, m->e, d, w->enorm, m->rstd_e, N, d);
            ds3_embed_bwd(gembed, m->dz, nxt_buf, N, d);
            ds3_rmsnorm_bwd(m->dhf, d, g->hnorm, m->dcat + d, 2 * (size_t)d, m->hf, d, w->hnorm, m->rstd_hn, N, d);
        }
    }
    st->bal_loss = bal;
    st->total = st->loss + m->mtp_lambda * st->mtp_loss * (m->use_mtp ? 1 : 0) + bal;
    if (!grad) return;
    memset(m->dh, 0, (size_t)N * d * sizeof(float));
    ds3_rmsnorm_bwd(m->dh, d, m->grads + (m->final_norm - m->params), m->dhf, d, m->hs[L], d, m->final_norm, m->rstd_f,
                    N, d);
    for (int l = L - 1; l >= 0; l--) block_bwd(m, l, m->hs[l], m->dh, B);
    ds3_embed_bwd(gembed, m->dh, inp, N, d);
}

void ds3_tmodel_bias_update(ds3_tmodel *m, float gamma) {
    const int Nr = m->cfg.n_routed_experts;
    for (int l = 0; l < m->cfg.num_hidden_layers + m->use_mtp; l++) {
        const int mi = m->moe_index[l];
        float *b = m->layers[l].router_bias;
        if (mi < 0 || !b) continue;
        const int64_t *c = m->loads + (size_t)mi * Nr;
        int64_t sum = 0;
        for (int e = 0; e < Nr; e++) sum += c[e];
        /* sign(mean - c_e), compared exactly in integers: mean - c_e = (sum - Nr c_e) / Nr */
        for (int e = 0; e < Nr; e++) {
            const int64_t diff = sum - (int64_t)Nr * c[e];
            b[e] += diff > 0 ? gamma : diff < 0 ? -gamma : 0.0f;
        }
    }
}
