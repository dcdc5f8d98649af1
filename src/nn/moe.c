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
        memcpy(b->xg + (size_t)row * d, x + (size_t)(i / K) * d, (size_t)d * sizeof(float));
    }
    /* gate/up of every active expert plus the shared expert, one pass. Jobs live in the
     * per-thread scratch of thread 0 (the caller) to avoid allocation. */
    ds3_mm_job *jobs = (ds3_mm_job *)ctx->tbuf[0];
    int nj = 0;
    for (int e = 0; e < Nr; e++) {
        int n = b->offset[e + 1] - b->offset[e];
        if (!n) continue;
        const float *xe = b->xg + (size_t)b->offset[e] * d;
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
    nj = 0;
    for (int e = 0; e < Nr; e++) {
        int n = b->offset[e + 1] - b->offset[e];
        if (!n) continue;
        jobs[nj++] = (ds3_mm_job){&w->experts[e].down, 0, d, b->hg + (size_t)b->offset[e] * I, (size_t)I, n,
                                  b->yg + (size_t)b->offset[e] * d, (size_t)d};
    }
    if (w->has_shared) jobs[nj++] = (ds3_mm_job){&w->shared.down, 0, d, b->sg, (size_t)Is, T, b->sy, (size_t)d};
    ds3_mm(ctx, jobs, nj);
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * d;
        if (w->has_shared) memcpy(o, b->sy + (size_t)t * d, (size_t)d * sizeof(float));
        else memset(o, 0, (size_t)d * sizeof(float));
        for (int k = 0; k < K; k++)
            ds3_kern->axpy(d, b->wts[t * K + k], b->yg + (size_t)b->slot[t * K + k] * d, o);
    }
}
