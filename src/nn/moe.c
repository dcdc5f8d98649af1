/* moe.c -- the DeepSeekMoE layer (spec 5.4): out = sum_k w_k Expert_{id_k}(x) + Shared(x).
 * Tokens are grouped by expert (a counting sort of the (token, choice) pairs) so every active
 * expert runs one matrix-matrix product over its tokens; all experts' gate/up products go in
 * one parallel pass, then all down products. The routed sum is added per token in top-k order,
 * so the result does not depend on threading. Buffers: ds3_moe_buf (owned by the session). */
#include <string.h>

#include "nn/nn.h"

void ds3_moe_fwd(ds3_ctx *ctx, const ds3_config *c, const ds3_layer_w *w, const float *x, int T, float *out,
                 ds3_moe_buf *b) {
    const int Nr = c->n_routed_experts, K = c->num_experts_per_tok, d = c->hidden_size;
    const int I = c->moe_intermediate_size;
    const int Is = c->n_shared_experts * I;
    double tp = ds3_prof_tick(ctx, DS3_PROF_ROUTER, 0);
    ds3_linear_fwd(ctx, &w->router, x, T, b->logits);
    for (int t = 0; t < T; t++)
        ds3_router_select(c, b->logits + (size_t)t * Nr, w->router_bias, b->ids + (size_t)t * K,
                          b->wts + (size_t)t * K, b->rscratch);
    /* Group (t, k) pairs by expert. */
    memset(b->count, 0, (size_t)Nr * sizeof *b->count);
    for (int i = 0; i < T * K; i++) b->count[b->ids[i]]++;
    b->offset[0] = 0;
    for (int e = 0; e < Nr; e++) b->offset[e + 1] = b->offset[e] + b->count[e];
    memset(b->count, 0, (size_t)Nr * sizeof *b->count);
    for (int i = 0; i < T * K; i++) {
        int e = b->ids[i], row = b->offset[e] + b->count[e]++;
        b->slot[i] = row;
        if (T > 1) memcpy(b->xg + (size_t)row * d, x + (size_t)(i / K) * d, (size_t)d * sizeof(float));
    }
    /* gate/up of every active expert plus the shared expert, one pass. Jobs live in the
     * per-thread scratch of thread 0 (the caller) to avoid allocation. */
    ds3_mm_job *jobs = (ds3_mm_job *)ctx->tbuf[0];
    int nj = 0;
    tp = ds3_prof_tick(ctx, DS3_PROF_ROUTER, tp);
    for (int e = 0; e < Nr; e++) {
        int n = b->offset[e + 1] - b->offset[e];
        if (!n) continue;
        /* one token: every active expert's one row is x itself, nothing to gather */
        const float *xe = T == 1 ? x : b->xg + (size_t)b->offset[e] * d;
        jobs[nj++] = (ds3_mm_job){&w->experts[e].gate, 0, I, xe, (size_t)d, n, b->hg + (size_t)b->offset[e] * I, (size_t)I};
        jobs[nj++] = (ds3_mm_job){&w->experts[e].up, 0, I, xe, (size_t)d, n, b->hu + (size_t)b->offset[e] * I, (size_t)I};
    }
    if (w->has_shared) {
        jobs[nj++] = (ds3_mm_job){&w->shared.gate, 0, Is, x, (size_t)d, T, b->sg, (size_t)Is};
        jobs[nj++] = (ds3_mm_job){&w->shared.up, 0, Is, x, (size_t)d, T, b->su, (size_t)Is};
    }
    ds3_mm(ctx, jobs, nj);
    ds3_swiglu_fwd(b->hg, b->hg, b->hu, (size_t)T * K * I);
    if (w->has_shared) ds3_swiglu_fwd(b->sg, b->sg, b->su, (size_t)T * Is);
    tp = ds3_prof_tick(ctx, DS3_PROF_EXP_GU, tp);
    nj = 0;
    for (int e = 0; e < Nr; e++) {
        int n = b->offset[e + 1] - b->offset[e];
        if (!n) continue;
        jobs[nj++] = (ds3_mm_job){&w->experts[e].down, 0, d, b->hg + (size_t)b->offset[e] * I, (size_t)I, n,
                                  b->yg + (size_t)b->offset[e] * d, (size_t)d};
    }
    if (w->has_shared) jobs[nj++] = (ds3_mm_job){&w->shared.down, 0, d, b->sg, (size_t)Is, T, b->sy, (size_t)d};
    ds3_mm(ctx, jobs, nj);
    tp = ds3_prof_tick(ctx, DS3_PROF_EXP_DOWN, tp);
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * d;
        if (w->has_shared) memcpy(o, b->sy + (size_t)t * d, (size_t)d * sizeof(float));
        else memset(o, 0, (size_t)d * sizeof(float));
        for (int k = 0; k < K; k++)
            ds3_kern->axpy(d, b->wts[t * K + k], b->yg + (size_t)b->slot[t * K + k] * d, o);
    }
    ds3_prof_tick(ctx, DS3_PROF_MOE_SUM, tp);
}

/* ---- training ---- */
/* Same grouping as the inference forward: (token, choice) pairs sorted by expert (counting
 * sort, stable in token order), one product per active expert, all experts in one pass. The
 * backward runs the same passes in reverse; the router gradient comes through the gate values
 * (dwts_tk = dout_t . y_tk) and, when balancing, through the balance loss on the scores. */

static void moe_swiglu_rows(float *a, const float *gu, int n, int I) {
    for (int t = 0; t < n; t++) ds3_swiglu_fwd(a + (size_t)t * I, gu + (size_t)t * 2 * I, gu + (size_t)t * 2 * I + I, I);
}

void ds3_moe_fwd_t(ds3_ctx *ctx, const ds3_config *c, const ds3_tlayer *w, const float *x, int N, float *out,
                   ds3_moe_act *act, ds3_moe_scratch *sc, int64_t *counts) {
    const int Nr = c->n_routed_experts, K = c->num_experts_per_tok, d = c->hidden_size;
    const int I = c->moe_intermediate_size, Is = c->n_shared_experts * I;
    const int has_shared = w->shared.gu != NULL;
    ds3_tmm_job jr = {DS3_TMM_NT, 0, N, Nr, d, x, d, w->router, d, act->logits, Nr};
    ds3_tmm(ctx->pool, &jr, 1);
    ds3_router_fwd_t(c, act->logits, w->router_bias, N, act->s, act->ids, act->wts, sc->rscratch);
    int32_t *cnt = act->offset; /* count into offset[1..], then prefix sums */
    memset(cnt, 0, (size_t)(Nr + 1) * sizeof *cnt);
    for (int i = 0; i < N * K; i++) cnt[act->ids[i] + 1]++;
    for (int e = 0; e < Nr; e++) {
        if (counts) counts[e] += cnt[e + 1];
        cnt[e + 1] += cnt[e];
    }
    int32_t *fill = (int32_t *)sc->dlogits; /* (Nr,) running fill, borrowed scratch */
    for (int e = 0; e < Nr; e++) fill[e] = act->offset[e];
    for (int i = 0; i < N * K; i++) {
        const int e = act->ids[i], row = fill[e]++;
        act->slot[i] = row;
        act->tok[row] = i / K;
        memcpy(sc->xg + (size_t)row * d, x + (size_t)(i / K) * d, (size_t)d * sizeof(float));
    }
    ds3_tmm_job *jobs = sc->jobs;
    int nj = 0;
    for (int e = 0; e < Nr; e++) {
        const int o = act->offset[e], n = act->offset[e + 1] - o;
        if (!n) continue;
        jobs[nj++] = (ds3_tmm_job){DS3_TMM_NT, 0, n, 2 * I, d, sc->xg + (size_t)o * d, d, w->experts[e].gu, d,
                                   act->gu + (size_t)o * 2 * I, 2 * (size_t)I};
    }
    if (has_shared)
        jobs[nj++] = (ds3_tmm_job){DS3_TMM_NT, 0, N, 2 * Is, d, x, d, w->shared.gu, d, act->sgu, 2 * (size_t)Is};
    ds3_tmm(ctx->pool, jobs, nj);
    moe_swiglu_rows(act->a, act->gu, N * K, I);
    if (has_shared) moe_swiglu_rows(act->sa, act->sgu, N, Is);
    nj = 0;
    for (int e = 0; e < Nr; e++) {
        const int o = act->offset[e], n = act->offset[e + 1] - o;
        if (!n) continue;
        jobs[nj++] = (ds3_tmm_job){DS3_TMM_NT, 0, n, d, I, act->a + (size_t)o * I, I, w->experts[e].down, I,
                                   act->yg + (size_t)o * d, d};
    }
    if (has_shared) jobs[nj++] = (ds3_tmm_job){DS3_TMM_NT, 0, N, d, Is, act->sa, Is, w->shared.down, Is, out, d};
    ds3_tmm(ctx->pool, jobs, nj);
    for (int t = 0; t < N; t++) {
        float *o = out + (size_t)t * d;
        if (!has_shared) memset(o, 0, (size_t)d * sizeof(float));
        for (int k = 0; k < K; k++) {
            const float wk = act->wts[t * K + k];
            const float *y = act->yg + (size_t)act->slot[t * K + k] * d;
            for (int i = 0; i < d; i++) o[i] += wk * y[i];
        }
    }
}

void ds3_moe_bwd(ds3_ctx *ctx, const ds3_config *c, const ds3_tlayer *w, ds3_tlayer *gw, const float *x, int N,
                 const float *dout, float *dx, const ds3_moe_act *act, ds3_moe_scratch *sc) {
    const int Nr = c->n_routed_experts, K = c->num_experts_per_tok, d = c->hidden_size;
    const int I = c->moe_intermediate_size, Is = c->n_shared_experts * I;
    const int has_shared = w->shared.gu != NULL;
    /* gate values and expert outputs */
    for (int t = 0; t < N; t++) {
        const float *g = dout + (size_t)t * d;
        for (int k = 0; k < K; k++) {
            const int row = act->slot[t * K + k];
            const float *y = act->yg + (size_t)row * d;
            float *dy = sc->dyg + (size_t)row * d;
            const float wk = act->wts[t * K + k];
            double dot = 0;
            for (int i = 0; i < d; i++) {
                dot += (double)g[i] * y[i];
                dy[i] = wk * g[i];
            }
            sc->dwts[t * K + k] = (float)dot;
        }
    }
    ds3_tmm_job *jobs = sc->jobs;
    int nj = 0;
    for (int e = 0; e < Nr; e++) {
        const int o = act->offset[e], n = act->offset[e + 1] - o;
        if (!n) continue;
        jobs[nj++] = (ds3_tmm_job){DS3_TMM_NN, 0, n, I, d, sc->dyg + (size_t)o * d, d, w->experts[e].down, I,
                                   sc->da + (size_t)o * I, I};
        jobs[nj++] = (ds3_tmm_job){DS3_TMM_TN, 1, d, I, n, sc->dyg + (size_t)o * d, d, act->a + (size_t)o * I, I,
                                   gw->experts[e].down, I};
    }
    if (has_shared) {
        jobs[nj++] = (ds3_tmm_job){DS3_TMM_NN, 0, N, Is, d, dout, d, w->shared.down, Is, sc->dsa, Is};
        jobs[nj++] = (ds3_tmm_job){DS3_TMM_TN, 1, d, Is, N, dout, d, act->sa, Is, gw->shared.down, Is};
    }
    ds3_tmm(ctx->pool, jobs, nj);
    for (int r = 0; r < N * K; r++) {
        const size_t o = (size_t)r * 2 * I;
        ds3_swiglu_bwd(sc->dgu + o, sc->dgu + o + I, sc->da + (size_t)r * I, act->gu + o, act->gu + o + I, I);
    }
    if (has_shared)
        for (int t = 0; t < N; t++) {
            const size_t o = (size_t)t * 2 * Is;
            ds3_swiglu_bwd(sc->dsgu + o, sc->dsgu + o + Is, sc->dsa + (size_t)t * Is, act->sgu + o, act->sgu + o + Is, Is);
        }
    for (int r = 0; r < N * K; r++)
        memcpy(sc->xg + (size_t)r * d, x + (size_t)act->tok[r] * d, (size_t)d * sizeof(float));
    nj = 0;
    for (int e = 0; e < Nr; e++) {
        const int o = act->offset[e], n = act->offset[e + 1] - o;
        if (!n) continue;
        jobs[nj++] = (ds3_tmm_job){DS3_TMM_NN, 0, n, d, 2 * I, sc->dgu + (size_t)o * 2 * I, 2 * (size_t)I,
                                   w->experts[e].gu, d, sc->dxg + (size_t)o * d, d};
        jobs[nj++] = (ds3_tmm_job){DS3_TMM_TN, 1, 2 * I, d, n, sc->dgu + (size_t)o * 2 * I, 2 * (size_t)I,
                                   sc->xg + (size_t)o * d, d, gw->experts[e].gu, d};
    }
    if (has_shared) {
        jobs[nj++] = (ds3_tmm_job){DS3_TMM_NN, 0, N, d, 2 * Is, sc->dsgu, 2 * (size_t)Is, w->shared.gu, d, dx, d};
        jobs[nj++] = (ds3_tmm_job){DS3_TMM_TN, 1, 2 * Is, d, N, sc->dsgu, 2 * (size_t)Is, x, d, gw->shared.gu, d};
    }
    ds3_tmm(ctx->pool, jobs, nj);
    /* router: dlogits from the gate values (+ balance loss), then dx += dlogits router */
    ds3_router_bwd(c, act->logits, act->s, act->ids, sc->dwts, act->dsbal, N, sc->dlogits);
    ds3_tmm_job jr[2] = {
        {DS3_TMM_NN, has_shared, N, d, Nr, sc->dlogits, Nr, w->router, d, dx, d},
        {DS3_TMM_TN, 1, Nr, d, N, sc->dlogits, Nr, x, d, gw->router, d},
    };
    ds3_tmm(ctx->pool, jr, 2);
    for (int t = 0; t < N; t++) {
        float *o = dx + (size_t)t * d;
        for (int k = 0; k < K; k++) {
            const float *g = sc->dxg + (size_t)act->slot[t * K + k] * d;
            for (int i = 0; i < d; i++) o[i] += g[i];
        }
    }
}
