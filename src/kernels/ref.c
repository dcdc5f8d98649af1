/* ref.c -- the scalar reference kernels: the plain-C twin every SIMD kernel is tested against,
 * and the path the whole engine can run on (DS3_KERNELS=ref). Written for clarity, not speed. */
#include "kernels.h"

#include <math.h>

static inline float w_at(const ds3_mat *w, int64_t r, int64_t c) {
    switch (w->dtype) {
    case DS3_DT_F32: return ((const float *)w->data)[r * w->cols + c];
    case DS3_DT_BF16: return ds3_bf16_to_f32(((const uint16_t *)w->data)[r * w->cols + c]);
    case DS3_DT_F16: return ds3_f16_to_f32(((const uint16_t *)w->data)[r * w->cols + c]);
    case DS3_DT_F8E4M3: {
        int64_t nbc = (w->cols + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK;
        float s = w->scale[(r / DS3_FP8_BLOCK) * nbc + c / DS3_FP8_BLOCK];
        return ds3_fp8_table[((const uint8_t *)w->data)[r * w->cols + c]] * s;
    }
    default: return 0.0f;
    }
}

static void ref_matmul(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T,
                       float *y, size_t ldy) {
    for (int t = 0; t < T; t++)
        for (int64_t r = r0; r < r1; r++) {
            float acc = 0.0f;
            for (int64_t c = 0; c < w->cols; c++) acc += x[(size_t)t * ldx + c] * w_at(w, r, c);
            y[(size_t)t * ldy + (r - r0)] = acc;
        }
}

static void ref_dequant_row(const ds3_mat *w, int64_t r, int64_t c0, int64_t c1, float *dst) {
    for (int64_t c = c0; c < c1; c++) dst[c - c0] = w_at(w, r, c);
}

static float ref_dot(int n, const float *a, const float *b) {
    float acc = 0.0f;
    for (int i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

static void ref_axpy(int n, float a, const float *x, float *y) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void ref_silu_mul(size_t n, const float *g, const float *u, float *a) {
    for (size_t i = 0; i < n; i++) {
        float z = g[i];
        a[i] = z / (1.0f + expf(-z)) * u[i];
    }
}

static void ref_softmax(float *row, int n, float scale, float ms[2]) {
    float mx = -INFINITY;
    for (int s = 0; s < n; s++) {
        row[s] *= scale;
        mx = row[s] > mx ? row[s] : mx;
    }
    double sum = 0;
    for (int s = 0; s < n; s++) sum += (row[s] = expf(row[s] - mx));
    const float inv = (float)(1.0 / sum);
    for (int s = 0; s < n; s++) row[s] *= inv;
    if (ms) {
        ms[0] = mx;
        ms[1] = (float)sum;
    }
}

const ds3_kernels ds3_kernels_ref = {
    .name = "ref",
    .matmul = ref_matmul,
    .dequant_row = ref_dequant_row,
    .dot = ref_dot,
    .axpy = ref_axpy,
    .silu_mul = ref_silu_mul,
    .softmax = ref_softmax,
};
