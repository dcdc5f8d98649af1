/* session.c -- ds3_session: the per-user state of a model (latent KV caches for the main model
 * and the MTP module, scratch buffers sized once for n_batch tokens, the thread pool) and the
 * batched forward pass (spec section 2):
 *   h = embed(tokens); for each block: h += MLA(norm(h)); h += FFN_or_MoE(norm(h));
 *   hf = norm(h); logits = head(hf)
 * and the MTP module (spec 6.2): x = eh_proj([enorm(embed(next)); hnorm(hf)]); x = block(x);
 *   mtp_logits = shared_head(shared_head.norm(x)).
 * Ownership: the session owns everything it allocates and borrows the model (which must
 * outlive it). Nothing is allocated per token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "nn/nn.h"
#include "util/common.h"

struct ds3_session {
    const ds3_model *m;
    ds3_session_params p;
    ds3_ctx ctx;
    int n_past, mtp_n_past;
    size_t ldc;              /* rkv + dr */
    float *cache;            /* (L, n_ctx, ldc) */
    float *mtp_cache;        /* (n_ctx, ldc) or NULL */
    float *h;                /* (B, d) residual stream */
    float *xn;               /* (B, d) normed input of a sub-layer */
    float *tmp;              /* (B, d) sub-layer output */
    float *hfin;             /* (B, d) final-normed hidden of the last eval chunk */
    float *cat;              /* (B, 2d) MTP input concat */
    float *fg, *fu;          /* (B, intermediate_size) dense FFN scratch */
    ds3_mla_buf mla;
    ds3_moe_buf moe;
    float *logits;           /* (V,) last position, main */
    float *mtp_logits;       /* (V,) last position, MTP */
    int32_t *routing;        /* (n_moe + 1, B, K) */
    int last_T, last_mtp_T;
};

ds3_session_params ds3_session_default_params(void) {
    ds3_session_params p = {.n_ctx = 0, .n_batch = 512, .n_threads = 0, .use_mtp = -1};
    return p;
}

static void prof_print(const ds3_ctx *ctx) {
    static const char *names[DS3_PROF_N] = {"q/kv proj+rope", "attention", "o proj", "router", "experts gate/up",
                                            "experts down", "moe sum", "dense ffn", "norm+residual", "head"};
    double tot = 0;
    for (int i = 0; i < DS3_PROF_N; i++) tot += ctx->prof[i];
    fprintf(stderr, "ds3 profile (DS3_PROFILE, wall seconds on the calling thread):\n");
    for (int i = 0; i < DS3_PROF_N; i++)
        fprintf(stderr, "  %-16s %9.4f s  %5.1f%%\n", names[i], ctx->prof[i], tot > 0 ? 100 * ctx->prof[i] / tot : 0);
}

void ds3_session_free(ds3_session *s) {
    if (!s) return;
    if (s->ctx.prof) {
        prof_print(&s->ctx);
        free(s->ctx.prof);
    }
    if (s->ctx.pool) ds3_pool_free(s->ctx.pool);
    if (s->ctx.tbuf)
        for (int i = 0; i < s->ctx.nth; i++) free(s->ctx.tbuf[i]);
    free(s->ctx.tbuf);
    free(s->ctx.chunks);
    free(s->ctx.chunk_start);
    free(s->ctx.chunk_next);
    free(s->ctx.shares);
    free((void *)s->ctx.busy);
    void *bufs[] = {s->cache, s->mtp_cache, s->h, s->xn, s->tmp, s->hfin, s->cat, s->fg, s->fu,
                    s->mla.q_lat, s->mla.q, s->mla.kv, s->mla.o, s->mla.qcat, s->mla.lat, s->mla.blk, s->moe.logits, s->moe.ids, s->moe.wts,
                    s->moe.count, s->moe.offset, s->moe.slot, s->moe.xg, s->moe.hg, s->moe.hu, s->moe.yg,
                    s->moe.sg, s->moe.su, s->moe.sy, s->moe.rscratch, s->logits, s->mtp_logits, s->routing};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s);
}

/* A tuning override from the environment (the tests force code paths with them): a positive
 * integer, else dflt. */
static int env_positive(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : dflt;
}

#define ALLOC(ptr, n)                                                                        \
    do {                                                                                     \
        (ptr) = ds3_alloc_aligned((size_t)(n) * sizeof *(ptr));                              \
        if (!(ptr)) goto nomem;                                                              \
    } while (0)

ds3_session *ds3_session_new(const ds3_model *m, const ds3_session_params *pp, char *err, size_t errlen) {
    ds3_kernels_init();
    ds3_session_params p = pp ? *pp : ds3_session_default_params();
    const ds3_config *c = &m->cfg;
    if (p.n_ctx <= 0) p.n_ctx = c->max_position_embeddings < 4096 ? c->max_position_embeddings : 4096;
    if (p.n_batch <= 0) p.n_batch = 512;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (p.n_threads <= 0) p.n_threads = ds3_n_cpus();
    if (p.n_threads > 512) p.n_threads = 512;
    if (p.use_mtp < 0) p.use_mtp = m->n_mtp > 0;
    if (p.use_mtp && m->n_mtp == 0) {
        ds3_seterr(err, errlen, DS3_ERR_ARG, "%s: the model has no MTP module", m->dir);
        return NULL;
    }
    if (p.n_ctx > (1 << 24)) {
        ds3_seterr(err, errlen, DS3_ERR_ARG, "n_ctx %d is too large", p.n_ctx);
        return NULL;
    }
    ds3_session *s = calloc(1, sizeof *s);
    if (!s) goto nomem;
    s->m = m;
    s->p = p;
    const size_t B = (size_t)p.n_batch, d = (size_t)c->hidden_size, V = (size_t)c->vocab_size;
    const size_t H = (size_t)c->n_heads, K = (size_t)(c->num_experts_per_tok > 0 ? c->num_experts_per_tok : 1);
    const size_t Nr = (size_t)(c->n_routed_experts > 0 ? c->n_routed_experts : 1);
    const size_t I = (size_t)c->moe_intermediate_size, Is = (size_t)c->n_shared_experts * I;
    s->ldc = (size_t)c->kv_lora_rank + (size_t)c->qk_rope_head_dim;
    ALLOC(s->cache, (size_t)c->num_hidden_layers * p.n_ctx * s->ldc);
    if (p.use_mtp) ALLOC(s->mtp_cache, (size_t)p.n_ctx * s->ldc);
    ALLOC(s->h, B * d);
    ALLOC(s->xn, B * d);
    ALLOC(s->tmp, B * d);
    ALLOC(s->hfin, B * d);
    ALLOC(s->cat, B * 2 * d);
    ALLOC(s->fg, B * (size_t)c->intermediate_size);
    ALLOC(s->fu, B * (size_t)c->intermediate_size);
    ALLOC(s->mla.q_lat, B * (size_t)(c->q_lora_rank > 0 ? c->q_lora_rank : 1));
    ALLOC(s->mla.q, B * H * (size_t)c->qk_head_dim);
    ALLOC(s->mla.kv, B * s->ldc);
    ALLOC(s->mla.o, B * H * (size_t)c->v_head_dim);
    ALLOC(s->mla.qcat, ds3_mla_qcat_floats(c, (int)B));
    ALLOC(s->mla.lat, ds3_mla_lat_floats(c, (int)B));
    s->ctx.mla_kblock = env_positive("DS3_MLA_KBLOCK", DS3_MLA_KBLOCK);
    if (p.n_threads > 1) ALLOC(s->mla.blk, ds3_mla_blk_floats(c, p.n_ctx, s->ctx.mla_kblock));
    if (c->n_routed_experts > 0) {
        ALLOC(s->moe.logits, B * Nr);
        ALLOC(s->moe.ids, B * K);
        ALLOC(s->moe.wts, B * K);
        ALLOC(s->moe.count, Nr);
        ALLOC(s->moe.offset, Nr + 1);
        ALLOC(s->moe.slot, B * K);
        ALLOC(s->moe.xg, B * K * d);
        ALLOC(s->moe.hg, B * K * I);
        ALLOC(s->moe.hu, B * K * I);
        ALLOC(s->moe.yg, B * K * d);
        ALLOC(s->moe.sg, B * (Is ? Is : 1));
        ALLOC(s->moe.su, B * (Is ? Is : 1));
        ALLOC(s->moe.sy, B * d);
        ALLOC(s->moe.rscratch, 2 * Nr + (size_t)c->n_group + 8);
    }
    ALLOC(s->logits, V);
    ALLOC(s->mtp_logits, V);
    ALLOC(s->routing, ((size_t)m->n_moe_layers + 1) * B * K);
    /* Execution context. */
    s->ctx.nth = p.n_threads;
    s->ctx.pool = ds3_pool_new(p.n_threads);
    if (!s->ctx.pool) goto nomem;
    size_t tf = ds3_mla_tbuf_floats(c, (int)B, p.n_ctx, s->ctx.mla_kblock);
    size_t jobs_floats = (2 * Nr + 8) * (sizeof(ds3_mm_job) / sizeof(float) + 1);
    if (tf < jobs_floats) tf = jobs_floats;
    s->ctx.tbuf_floats = tf;
    s->ctx.tbuf = calloc((size_t)p.n_threads, sizeof(float *));
    if (!s->ctx.tbuf) goto nomem;
    for (int i = 0; i < p.n_threads; i++) ALLOC(s->ctx.tbuf[i], tf);
    s->ctx.chunk_cap = 4096;
    s->ctx.mla_naive_min_t = env_positive("DS3_MLA_NAIVE_MIN_T", ds3_mla_naive_min_t(c));
    const char *pe = getenv("DS3_PROFILE");
    if (pe && *pe && strcmp(pe, "0") != 0) {
        s->ctx.prof = calloc(DS3_PROF_N, sizeof(double));
        if (!s->ctx.prof) goto nomem;
    }
    ALLOC(s->ctx.chunks, (size_t)s->ctx.chunk_cap);
    ALLOC(s->ctx.chunk_start, (size_t)s->ctx.chunk_cap + 1);
    ALLOC(s->ctx.chunk_next, (size_t)s->ctx.chunk_cap);
    ALLOC(s->ctx.shares, (size_t)s->ctx.chunk_cap);
    ALLOC(s->ctx.busy, (size_t)p.n_threads);
    return s;
nomem:
    ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory allocating the session (n_ctx %d, n_batch %d)", p.n_ctx,
               p.n_batch);
    ds3_session_free(s);
    return NULL;
}

const ds3_model *ds3_session_model(const ds3_session *s) { return s->m; }

void ds3_session_reset(ds3_session *s) {
    s->n_past = 0;
    s->mtp_n_past = 0;
}
int ds3_session_n_past(const ds3_session *s) { return s->n_past; }
int ds3_session_n_ctx(const ds3_session *s) { return s->p.n_ctx; }
int ds3_session_n_batch(const ds3_session *s) { return s->p.n_batch; }
int ds3_session_has_mtp(const ds3_session *s) { return s->mtp_cache != NULL; }
int ds3_session_mtp_n_past(const ds3_session *s) { return s->mtp_n_past; }

int ds3_session_truncate(ds3_session *s, int n_past) {
    if (n_past < 0 || n_past > s->n_past) return DS3_ERR_ARG;
    s->n_past = n_past;
    return 0;
}
int ds3_session_mtp_truncate(ds3_session *s, int n_past) {
    if (n_past < 0 || n_past > s->mtp_n_past) return DS3_ERR_ARG;
    s->mtp_n_past = n_past;
    return 0;
}

const float *ds3_session_logits(const ds3_session *s) { return s->logits; }
const float *ds3_session_mtp_logits(const ds3_session *s) { return s->mtp_logits; }
const float *ds3_session_mtp_hidden(const ds3_session *s, int i) {
    if (i < 0 || i >= s->last_mtp_T) return NULL;
    return s->xn + (size_t)i * s->m->cfg.hidden_size; /* shared_head.norm output, kept until the next eval */
}
const float *ds3_session_hidden(const ds3_session *s, int i) {
    if (i < 0 || i >= s->last_T) return NULL;
    return s->hfin + (size_t)i * s->m->cfg.hidden_size;
}

const int32_t *ds3_session_routing(const ds3_session *s, int moe_layer, int *n_tokens, int *top_k) {
    const ds3_config *c = &s->m->cfg;
    if (moe_layer < 0 || moe_layer > s->m->n_moe_layers || c->n_routed_experts == 0) return NULL;
    int is_mtp = moe_layer == s->m->n_moe_layers;
    *n_tokens = is_mtp ? s->last_mtp_T : s->last_T;
    *top_k = c->num_experts_per_tok;
    return s->routing + (size_t)moe_layer * s->p.n_batch * c->num_experts_per_tok;
}

/* One transformer block on T tokens of h (in place). */
static void block_fwd(ds3_session *s, const ds3_layer_w *w, float *cache, int T, int pos0, int32_t *route_rec) {
    const ds3_model *m = s->m;
    const ds3_config *c = &m->cfg;
    const int d = c->hidden_size;
    double tp = ds3_prof_tick(&s->ctx, DS3_PROF_NORM, 0);
    ds3_rmsnorm_fwd(s->xn, (size_t)d, s->h, (size_t)d, w->attn_norm, T, d, c->rms_norm_eps);
    tp = ds3_prof_tick(&s->ctx, DS3_PROF_NORM, tp);
    ds3_mla_fwd(&s->ctx, c, w, m->rope_inv_freq, s->xn, T, pos0, cache, s->tmp, &s->mla);
    tp = ds3_prof_now(&s->ctx); /* mla timed its own stages */
    for (size_t i = 0; i < (size_t)T * d; i++) s->h[i] += s->tmp[i];
    ds3_rmsnorm_fwd(s->xn, (size_t)d, s->h, (size_t)d, w->ffn_norm, T, d, c->rms_norm_eps);
    tp = ds3_prof_tick(&s->ctx, DS3_PROF_NORM, tp);
    if (w->is_moe) {
        ds3_moe_fwd(&s->ctx, c, w, s->xn, T, s->tmp, &s->moe);
        if (route_rec) memcpy(route_rec, s->moe.ids, (size_t)T * c->num_experts_per_tok * sizeof(int32_t));
        tp = ds3_prof_now(&s->ctx); /* moe timed its own stages */
    } else {
        ds3_ffn_fwd(&s->ctx, &w->dense, s->xn, T, s->tmp, s->fg, s->fu);
        tp = ds3_prof_tick(&s->ctx, DS3_PROF_FFN, tp);
    }
    for (size_t i = 0; i < (size_t)T * d; i++) s->h[i] += s->tmp[i];
    ds3_prof_tick(&s->ctx, DS3_PROF_NORM, tp);
}

/* logits for rows of x (T, d): all rows into out (T, V) when out, else only the last row. */
static void head_fwd(ds3_session *s, const ds3_mat *head, const float *x, int T, float *out, float *last) {
    const int V = s->m->cfg.vocab_size, d = s->m->cfg.hidden_size;
    double tp = ds3_prof_tick(&s->ctx, DS3_PROF_HEAD, 0);
    if (out) {
        ds3_linear_fwd(&s->ctx, head, x, T, out);
        memcpy(last, out + (size_t)(T - 1) * V, (size_t)V * sizeof(float));
    } else {
        ds3_linear_fwd(&s->ctx, head, x + (size_t)(T - 1) * d, 1, last);
    }
    ds3_prof_tick(&s->ctx, DS3_PROF_HEAD, tp);
}

int ds3_session_eval(ds3_session *s, const int32_t *tokens, int n, float *logits_out, char *err, size_t errlen) {
    const ds3_model *m = s->m;
    const ds3_config *c = &m->cfg;
    const int d = c->hidden_size, V = c->vocab_size, B = s->p.n_batch;
    if (n <= 0) return ds3_seterr(err, errlen, DS3_ERR_ARG, "no tokens to evaluate");
    if (n > s->p.n_ctx - s->n_past)
        return ds3_seterr(err, errlen, DS3_ERR_ARG, "context is full: %d cached + %d new tokens > n_ctx %d", s->n_past, n,
                          s->p.n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return ds3_seterr(err, errlen, DS3_ERR_ARG, "token id %d at position %d is out of range [0, %d)", tokens[i], i, V);
    for (int start = 0; start < n; start += B) {
        const int T = n - start < B ? n - start : B, pos0 = s->n_past;
        ds3_embed_fwd(&m->embed, tokens + start, T, s->h);
        int mi = 0;
        for (int l = 0; l < c->num_hidden_layers; l++) {
            const ds3_layer_w *w = &m->layers[l];
            int32_t *rec = w->is_moe ? s->routing + (size_t)(mi++) * B * c->num_experts_per_tok : NULL;
            block_fwd(s, w, s->cache + (size_t)l * s->p.n_ctx * s->ldc, T, pos0, rec);
        }
        ds3_rmsnorm_fwd(s->hfin, (size_t)d, s->h, (size_t)d, m->final_norm, T, d, c->rms_norm_eps);
        const int last_chunk = start + T >= n;
        if (logits_out || last_chunk)
            head_fwd(s, &m->head, s->hfin, T, logits_out ? logits_out + (size_t)start * V : NULL, s->logits);
        s->n_past += T;
        s->last_T = T;
    }
    return 0;
}

int ds3_session_mtp_eval(ds3_session *s, const int32_t *next_tokens, const float *hidden, int n, float *logits_out,
                         char *err, size_t errlen) {
    const ds3_model *m = s->m;
    const ds3_config *c = &m->cfg;
    const int d = c->hidden_size, V = c->vocab_size, B = s->p.n_batch;
    if (!s->mtp_cache) return ds3_seterr(err, errlen, DS3_ERR_ARG, "%s: no MTP module in this session", m->dir);
    if (n <= 0) return ds3_seterr(err, errlen, DS3_ERR_ARG, "no tokens to evaluate");
    if (n > s->p.n_ctx - s->mtp_n_past)
        return ds3_seterr(err, errlen, DS3_ERR_ARG, "MTP context is full: %d cached + %d new > n_ctx %d", s->mtp_n_past, n,
                          s->p.n_ctx);
    for (int i = 0; i < n; i++)
        if (next_tokens[i] < 0 || next_tokens[i] >= V)
            return ds3_seterr(err, errlen, DS3_ERR_ARG, "token id %d at position %d is out of range [0, %d)", next_tokens[i],
                              i, V);
    const ds3_layer_w *w = &m->mtp[0];
    for (int start = 0; start < n; start += B) {
        const int T = n - start < B ? n - start : B, pos0 = s->mtp_n_past;
        ds3_embed_fwd(&w->mtp_embed, next_tokens + start, T, s->xn);
        /* concat order: [enorm(embedding) ; hnorm(hidden)] (spec 6.2, as the serving frameworks) */
        ds3_rmsnorm_fwd(s->cat, 2 * (size_t)d, s->xn, (size_t)d, w->enorm, T, d, c->rms_norm_eps);
        ds3_rmsnorm_fwd(s->cat + d, 2 * (size_t)d, hidden + (size_t)start * d, (size_t)d, w->hnorm, T, d, c->rms_norm_eps);
        ds3_linear_fwd(&s->ctx, &w->eh_proj, s->cat, T, s->h);
        int32_t *rec = w->is_moe ? s->routing + (size_t)m->n_moe_layers * B * c->num_experts_per_tok : NULL;
        block_fwd(s, w, s->mtp_cache, T, pos0, rec);
        ds3_rmsnorm_fwd(s->xn, (size_t)d, s->h, (size_t)d, w->head_norm, T, d, c->rms_norm_eps);
        const int last_chunk = start + T >= n;
        if (logits_out || last_chunk)
            head_fwd(s, &w->mtp_head, s->xn, T, logits_out ? logits_out + (size_t)start * V : NULL, s->mtp_logits);
        s->mtp_n_past += T;
        s->last_mtp_T = T;
    }
    return 0;
}
