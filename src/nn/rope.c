/* rope.c -- rotary position embedding on interleaved pairs (2j, 2j+1), as DeepSeek's official
 * model.py does with view_as_complex (spec 4.4): no permutation of the checkpoint rows is needed.
 * Angles are pos * inv_freq[j] in f32 (inv_freq already YaRN-corrected, spec 4.2). */
#include <math.h>

#include "nn/nn.h"

/* Rotate by +angle (sign = 1) or -angle (sign = -1, the transpose: used by the backward). */
static void rope_apply(float *x, int T, size_t ldt, int n_vec, size_t ldv, int dr, int pos0, const float *inv_freq,
                       float cs, float sign) {
    for (int t = 0; t < T; t++) {
        const float pos = (float)(pos0 + t);
        for (int j = 0; j < dr / 2; j++) {
            float a = pos * inv_freq[j];
            float c = (float)cos((double)a) * cs, s = sign * (float)sin((double)a) * cs;
            for (int v = 0; v < n_vec; v++) {
                float *p = x + (size_t)t * ldt + (size_t)v * ldv + 2 * j;
                float x0 = p[0], x1 = p[1];
                p[0] = x0 * c - x1 * s;
                p[1] = x0 * s + x1 * c;
            }
        }
    }
}

void ds3_rope_fwd(float *x, int T, size_t ldt, int n_vec, size_t ldv, int dr, int pos0, const float *inv_freq,
                  float cs) {
    rope_apply(x, T, ldt, n_vec, ldv, dr, pos0, inv_freq, cs, 1.0f);
}

/* ---- training ---- */

/* y = cs R(a) x  =>  dx = cs R(-a) dy: the same loop with the sine negated. */
void ds3_rope_bwd(float *dx, int T, size_t ldt, int n_vec, size_t ldv, int dr, int pos0, const float *inv_freq,
                  float cs) {
    rope_apply(dx, T, ldt, n_vec, ldv, dr, pos0, inv_freq, cs, -1.0f);
}
