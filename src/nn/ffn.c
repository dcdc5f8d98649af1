/* ffn.c -- the SwiGLU feed-forward used by dense layers, routed experts and shared experts
 * (spec section 2): FFN(x) = W_down (silu(W_gate x) * (W_up x)). */
#include <math.h>

#include "nn/nn.h"

void ds3_swiglu_fwd(float *a, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float z = g[i];
        a[i] = z / (1.0f + expf(-z)) * u[i];
    }
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
