/* rmsnorm.c -- RMSNorm (spec section 2): y = x / sqrt(mean(x^2) + eps) * w, statistics in f32
 * (accumulated in double so long rows do not lose precision). */
#include <math.h>

#include "nn/nn.h"

void ds3_rmsnorm_fwd(float *out, size_t ldo, const float *x, size_t ldx, const float *w, int T, int n, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * ldx;
        float *yr = out + (size_t)t * ldo;
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / n + eps));
        for (int i = 0; i < n; i++) yr[i] = xr[i] * r * w[i];
    }
}

/* ---- training ---- */

void ds3_rmsnorm_fwd_t(float *out, size_t ldo, float *rstd, const float *x, size_t ldx, const float *w, int T, int n,
                       float eps) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * ldx;
        float *yr = out + (size_t)t * ldo;
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / n + eps));
        rstd[t] = r;
        for (int i = 0; i < n; i++) yr[i] = xr[i] * r * w[i];
    }
}

/* y_i = w_i x_i r, r = (mean x^2 + eps)^-1/2:
 *   dx_i = r (w_i g_i - xh_i mean_j(w_j g_j xh_j)),  xh = x r;   dw_i = sum_t g_i xh_i. */
void ds3_rmsnorm_bwd(float *dx, size_t lddx, float *dw, const float *dout, size_t ldd, const float *x, size_t ldx,
                     const float *w, const float *rstd, int T, int n) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * ldx, *g = dout + (size_t)t * ldd;
        float *dxr = dx + (size_t)t * lddx;
        const float r = rstd[t];
        double dot = 0;
        for (int i = 0; i < n; i++) dot += (double)w[i] * g[i] * xr[i] * r;
        const float m = (float)(dot / n);
        for (int i = 0; i < n; i++) {
            const float xh = xr[i] * r;
            dxr[i] += r * (w[i] * g[i] - xh * m);
            dw[i] += g[i] * xh;
        }
    }
}
