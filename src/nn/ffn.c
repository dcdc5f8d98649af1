/* ffn.c -- the SwiGLU feed-forward used by dense layers, routed experts and shared experts
 * (spec section 2): FFN(x) = W_down (silu(W_gate x) * (W_up x)). */
#include <math.h>

#include "nn/nn.h"

void ds3_swiglu_fwd(float *a, const float *g, const float *u, size_t n) {
    (ds3_kern->silu_mul ? ds3_kern->silu_mul : ds3_kernels_ref.silu_mul)(n, g, u, a);
}

void ds3_ffn_fwd(ds3_ctx *ctx, const ds3_ffn_w *w, const float *x, int T, float *out, float *g, float *u) {
    const int64_t I = w->gate.rows, d = w->gate.cols;
    ds3_mm_job up[2] = {
        {&w->gate, 0, I, x, (size_t)d, T, g, (size_t)I},
        {&w->up, 0, I, x, (size_t)d, T, u, (size_t)I},
    };
    ds3_mm(ctx, up, 2);
    ds3_swiglu_fwd(g, g, u, (size_t)T * I);
    ds3_linear_fwd(ctx, &w->down, g, T, out);
}

/* ---- training ---- */

/* a = silu(g) u:  dg = da u sig(g) (1 + g (1 - sig(g))),  du = da silu(g). */
void ds3_swiglu_bwd(float *dg, float *du, const float *da, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const float z = g[i], sg = 1.0f / (1.0f + expf(-z));
        dg[i] = da[i] * u[i] * sg * (1.0f + z * (1.0f - sg));
        du[i] = da[i] * z * sg;
    }
}

/* swiglu over rows of gu (N, 2I) = [g | u] into a (N, I) */
static void swiglu_rows(float *a, const float *gu, int N, int I) {
    for (int t = 0; t < N; t++) ds3_swiglu_fwd(a + (size_t)t * I, gu + (size_t)t * 2 * I, gu + (size_t)t * 2 * I + I, I);
}
static void swiglu_rows_bwd(float *dgu, const float *da, const float *gu, int N, int I) {
    for (int t = 0; t < N; t++) {
        const size_t o = (size_t)t * 2 * I;
        ds3_swiglu_bwd(dgu + o, dgu + o + I, da + (size_t)t * I, gu + o, gu + o + I, I);
    }
}

void ds3_ffn_fwd_t(ds3_ctx *ctx, const ds3_tffn *w, int d, int I, const float *x, int N, float *out, float *gu,
                   float *a) {
    ds3_tmm_job j1 = {DS3_TMM_NT, 0, N, 2 * I, d, x, d, w->gu, d, gu, 2 * (size_t)I};
    ds3_tmm(ctx->pool, &j1, 1);
    swiglu_rows(a, gu, N, I);
    ds3_tmm_job j2 = {DS3_TMM_NT, 0, N, d, I, a, I, w->down, I, out, d};
    ds3_tmm(ctx->pool, &j2, 1);
}

void ds3_ffn_bwd(ds3_ctx *ctx, const ds3_tffn *w, ds3_tffn *gw, int d, int I, const float *x, int N,
                 const float *dout, float *dx, const float *gu, const float *a, float *dgu, float *da) {
    ds3_tmm_job j1[2] = {
        {DS3_TMM_NN, 0, N, I, d, dout, d, w->down, I, da, I},      /* da = dout down      */
        {DS3_TMM_TN, 1, d, I, N, dout, d, a, I, gw->down, I},      /* ddown += dout^T a   */
    };
    ds3_tmm(ctx->pool, j1, 2);
    swiglu_rows_bwd(dgu, da, gu, N, I);
    ds3_tmm_job j2[2] = {
        {DS3_TMM_NN, 0, N, d, 2 * I, dgu, 2 * (size_t)I, w->gu, d, dx, d},   /* dx = dgu [gate; up]  */
        {DS3_TMM_TN, 1, 2 * I, d, N, dgu, 2 * (size_t)I, x, d, gw->gu, d},   /* dgu_w += dgu^T x     */
    };
    ds3_tmm(ctx->pool, j2, 2);
}
