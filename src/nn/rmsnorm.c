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
