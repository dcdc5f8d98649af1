/* quant_ref.c -- scalar kernels for the GGML block-quantised dtypes: the reference twin of
 * quant_avx512.c / quant_avx2.c. matmul = dot products of the dequantised rows (bit-exact ggml
 * dequantisation) with the f32 activations, no activation rounding. Also the quantisers used by
 * the GGUF writer and the helpers declared in quant.h. Reference: ggml/src/ggml-quants.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"

int ds3_q_blck(ds3_dtype t) {
    switch (t) {
    case DS3_DT_Q8_0: case DS3_DT_Q8_0X16: case DS3_DT_Q4_0: return 32;
    case DS3_DT_Q4_K: case DS3_DT_Q4_KX16: case DS3_DT_Q5_K: case DS3_DT_Q6_K: case DS3_DT_Q2_K: case DS3_DT_Q3_K: return 256;
    default: return 0;
    }
}

size_t ds3_q_blck_bytes(ds3_dtype t) {
    switch (t) {
    case DS3_DT_Q8_0: case DS3_DT_Q8_0X16: return sizeof(ds3_blk_q8_0);
    case DS3_DT_Q4_0: return sizeof(ds3_blk_q4_0);
    case DS3_DT_Q4_K: case DS3_DT_Q4_KX16: return sizeof(ds3_blk_q4_k);
    case DS3_DT_Q5_K: return sizeof(ds3_blk_q5_k);
    case DS3_DT_Q6_K: return sizeof(ds3_blk_q6_k);
    case DS3_DT_Q2_K: return sizeof(ds3_blk_q2_k);
    case DS3_DT_Q3_K: return sizeof(ds3_blk_q3_k);
    default: return 0;
    }
}

size_t ds3_row_bytes(ds3_dtype t, int64_t cols) {
    if (DS3_DT_IS_QUANT(t)) return (size_t)(cols / ds3_q_blck(t)) * ds3_q_blck_bytes(t);
    return (size_t)cols * ds3_dtype_size(t);
}

double ds3_mat_bytes(const ds3_mat *w) {
    if (!w->data) return 0;
    double b = (double)w->rows * (double)ds3_row_bytes(w->dtype, w->cols);
    if (w->dtype == DS3_DT_F8E4M3) b += 4.0 * ((w->rows + 127) / 128) * ((w->cols + 127) / 128);
    return b;
}

static inline float f16(uint16_t h) { return ds3_f16_to_f32(h); }

static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

static void dq_q8_0(const ds3_blk_q8_0 *b, float *y) {
    const float d = f16(b->d);
    for (int j = 0; j < 32; j++) y[j] = b->qs[j] * d;
}
static void dq_q4_0(const ds3_blk_q4_0 *b, float *y) {
    const float d = f16(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = ((b->qs[j] & 0xF) - 8) * d;
        y[j + 16] = ((b->qs[j] >> 4) - 8) * d;
    }
}
static void dq_q4_k(const ds3_blk_q4_k *b, float *y) {
    const float d = f16(b->d), min = f16(b->dmin);
    const uint8_t *q = b->qs;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
        uint8_t sc, m;
        get_scale_min_k4(is, b->scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        get_scale_min_k4(is + 1, b->scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
    }
}
static void dq_q5_k(const ds3_blk_q5_k *b, float *y) {
    const float d = f16(b->d), min = f16(b->dmin);
    const uint8_t *ql = b->qs, *qh = b->qh;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
        uint8_t sc, m;
        get_scale_min_k4(is, b->scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        get_scale_min_k4(is + 1, b->scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
}
static void dq_q6_k(const ds3_blk_q6_k *b, float *y) {
    const float d = f16(b->d);
    const uint8_t *ql = b->ql, *qh = b->qh;
    const int8_t *sc = b->scales;
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
}
static void dq_q2_k(const ds3_blk_q2_k *b, float *y) {
    const float d = f16(b->d), min = f16(b->dmin);
    const uint8_t *q = b->qs;
    int is = 0;
    for (int n = 0; n < 256; n += 128, q += 32) {
        int shift = 0;
        for (int j = 0; j < 4; j++, shift += 2) {
            uint8_t sc = b->scales[is++];
            float dl = d * (sc & 0xF), ml = min * (sc >> 4);
            for (int l = 0; l < 16; l++) *y++ = dl * ((q[l] >> shift) & 3) - ml;
            sc = b->scales[is++];
            dl = d * (sc & 0xF);
            ml = min * (sc >> 4);
            for (int l = 0; l < 16; l++) *y++ = dl * ((q[l + 16] >> shift) & 3) - ml;
        }
    }
}
static void q3_k_scales(const uint8_t *s12, int8_t *scales) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[4];
    memcpy(aux, s12, 12);
    const uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    memcpy(scales, aux, 16);
}
static void dq_q3_k(const ds3_blk_q3_k *b, float *y) {
    const float d_all = f16(b->d);
    int8_t scales[16];
    q3_k_scales(b->scales, scales);
    const uint8_t *q = b->qs, *hm = b->hmask;
    uint8_t m = 1;
    int is = 0;
    for (int n = 0; n < 256; n += 128, q += 32) {
        int shift = 0;
        for (int j = 0; j < 4; j++, shift += 2, m <<= 1) {
            float dl = d_all * (scales[is++] - 32);
            for (int l = 0; l < 16; l++) *y++ = dl * ((int8_t)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            dl = d_all * (scales[is++] - 32);
            for (int l = 0; l < 16; l++) *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
        }
    }
}

void ds3_q_dequant_blocks(ds3_dtype t, const void *row, int64_t b0, int64_t nb, float *y) {
    const size_t bs = ds3_q_blck_bytes(t);
    const int qk = ds3_q_blck(t);
    const uint8_t *p = (const uint8_t *)row + (size_t)b0 * bs;
    for (int64_t i = 0; i < nb; i++, p += bs, y += qk) {
        switch (t) {
        case DS3_DT_Q8_0: dq_q8_0((const void *)p, y); break;
        case DS3_DT_Q4_0: dq_q4_0((const void *)p, y); break;
        case DS3_DT_Q4_K: dq_q4_k((const void *)p, y); break;
        case DS3_DT_Q5_K: dq_q5_k((const void *)p, y); break;
        case DS3_DT_Q6_K: dq_q6_k((const void *)p, y); break;
        case DS3_DT_Q2_K: dq_q2_k((const void *)p, y); break;
        case DS3_DT_Q3_K: dq_q3_k((const void *)p, y); break;
        default: memset(y, 0, (size_t)qk * sizeof *y); break;
        }
    }
}

/* ---- Q8_0x16 (layout in quant.h) ---- */

/* One group of 16 rows: src holds the rows in Q8_0 (row i at src + i * rb), dst the group. */
static void x16_group(uint8_t *dst, const uint8_t *src, int64_t nb, size_t rb) {
    for (int i = 0; i < DS3_Q8X16_ROWS; i++) {
        const uint8_t *blk = src + (size_t)i * rb;
        for (int64_t b = 0; b < nb; b++, blk += sizeof(ds3_blk_q8_0)) {
            uint8_t *o = dst + (size_t)b * 544;
            for (int j = 0; j < 8; j++) {
                uint32_t v;
                memcpy(&v, blk + 2 + 4 * j, 4);
                v ^= 0x80808080u;
                memcpy(o + 64 * j + 4 * i, &v, 4);
            }
            memcpy(o + 512 + 2 * i, blk, 2);
        }
    }
}

/* Regroup every 16 rows in place: each group is copied out, then rewritten by `group`. */
static int x16_repack(void *data, int64_t rows, int64_t nb, size_t rb, void (*group)(uint8_t *, const uint8_t *, int64_t, size_t)) {
    const size_t gb = DS3_Q8X16_ROWS * rb;
    uint8_t *tmp = malloc(gb);
    if (!tmp) return -1;
    for (int64_t g = 0; g < rows / DS3_Q8X16_ROWS; g++) {
        uint8_t *p = (uint8_t *)data + (size_t)g * gb;
        memcpy(tmp, p, gb);
        group(p, tmp, nb, rb);
    }
    free(tmp);
    return 0;
}

int ds3_q8_0x16_repack(void *data, int64_t rows, int64_t cols) {
    return x16_repack(data, rows, cols / 32, ds3_row_bytes(DS3_DT_Q8_0, cols), x16_group);
}

void ds3_q8_0x16_block(const ds3_mat *w, int64_t r, int64_t b, ds3_blk_q8_0 *out) {
    const size_t rb = ds3_row_bytes(DS3_DT_Q8_0X16, w->cols);
    const int i = (int)(r % DS3_Q8X16_ROWS);
    const uint8_t *p = (const uint8_t *)w->data + (size_t)(r - i) * rb + (size_t)b * 544;
    for (int k = 0; k < 32; k++) out->qs[k] = (int8_t)(p[64 * (k / 4) + 4 * i + k % 4] ^ 0x80);
    memcpy(&out->d, p + 512 + 2 * i, 2);
}

/* Q4_Kx16 (quant.h): one group of 16 rows (row i at src + i * rb) into dst */
static void k16_group(uint8_t *dst, const uint8_t *src, int64_t nb, size_t rb) {
    for (int i = 0; i < DS3_Q8X16_ROWS; i++) {
        const ds3_blk_q4_k *blk = (const ds3_blk_q4_k *)(src + (size_t)i * rb);
        for (int64_t b = 0; b < nb; b++, blk++) {
            uint8_t *o = dst + (size_t)b * sizeof(ds3_blk_q4_k) * DS3_Q8X16_ROWS;
            for (int v = 0; v < 32; v++) memcpy(o + 64 * v + 4 * i, blk->qs + 4 * v, 4);
            memcpy(o + 2048 + 4 * i, &blk->d, 2);
            memcpy(o + 2050 + 4 * i, &blk->dmin, 2);
            for (int k = 0; k < 3; k++) memcpy(o + 2112 + 64 * k + 4 * i, blk->scales + 4 * k, 4);
        }
    }
}

int ds3_q4_kx16_repack(void *data, int64_t rows, int64_t cols) {
    return x16_repack(data, rows, cols / 256, ds3_row_bytes(DS3_DT_Q4_K, cols), k16_group);
}

void ds3_q4_kx16_block(const ds3_mat *w, int64_t r, int64_t b, ds3_blk_q4_k *out) {
    const size_t rb = ds3_row_bytes(DS3_DT_Q4_KX16, w->cols);
    const int i = (int)(r % DS3_Q8X16_ROWS);
    const uint8_t *p = (const uint8_t *)w->data + (size_t)(r - i) * rb + (size_t)b * sizeof(ds3_blk_q4_k) * DS3_Q8X16_ROWS;
    for (int v = 0; v < 32; v++) memcpy(out->qs + 4 * v, p + 64 * v + 4 * i, 4);
    memcpy(&out->d, p + 2048 + 4 * i, 2);
    memcpy(&out->dmin, p + 2050 + 4 * i, 2);
    for (int k = 0; k < 3; k++) memcpy(out->scales + 4 * k, p + 2112 + 64 * k + 4 * i, 4);
}

/* Block b of row r of w dequantised into buf (any quantised dtype). */
static void ref_block(const ds3_mat *w, const uint8_t *row, int64_t r, int64_t b, float *buf) {
    if (w->dtype == DS3_DT_Q8_0X16) {
        ds3_blk_q8_0 q;
        ds3_q8_0x16_block(w, r, b, &q);
        dq_q8_0(&q, buf);
    } else if (w->dtype == DS3_DT_Q4_KX16) {
        ds3_blk_q4_k q;
        ds3_q4_kx16_block(w, r, b, &q);
        dq_q4_k(&q, buf);
    } else {
        ds3_q_dequant_blocks(w->dtype, row, b, 1, buf);
    }
}

/* ---- the reference kernels ---- */

static void qref_dequant_row(const ds3_mat *w, int64_t r, int64_t c0, int64_t c1, float *dst) {
    const int qk = ds3_q_blck(w->dtype);
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * ds3_row_bytes(w->dtype, w->cols);
    float buf[256];
    for (int64_t b = c0 / qk; b * qk < c1; b++) {
        ref_block(w, row, r, b, buf);
        for (int j = 0; j < qk; j++) {
            const int64_t c = b * qk + j;
            if (c >= c0 && c < c1) dst[c - c0] = buf[j];
        }
    }
}

/* y[t][r] = sum_k x[t][k] W[r][k], W dequantised one block at a time (no allocation); each
 * output is a sum of per-block partial dot products in block order. */
static void qref_matmul(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                        size_t ldy) {
    const int qk = ds3_q_blck(w->dtype);
    const int64_t nb = w->cols / qk;
    const size_t rb = ds3_row_bytes(w->dtype, w->cols);
    float buf[256];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * rb;
        for (int t = 0; t < T; t++) y[(size_t)t * ldy + (r - r0)] = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            ref_block(w, row, r, b, buf);
            for (int t = 0; t < T; t++) {
                const float *xt = x + (size_t)t * ldx + b * qk;
                float acc = 0.0f;
                for (int j = 0; j < qk; j++) acc += buf[j] * xt[j];
                y[(size_t)t * ldy + (r - r0)] += acc;
            }
        }
    }
}

const ds3_kernels ds3_qkernels_ref = {
    .name = "qref",
    .matmul = qref_matmul,
    .dequant_row = qref_dequant_row,
};

/* ---- activation quantisation (shared by the SIMD sets; scalar definition here) ---- */

void ds3_q8_quantize_act(const float *x, int64_t cols, int8_t *q, float *d, float *ds) {
    for (int64_t b = 0; b < cols / 32; b++) {
        const float *xb = x + b * 32;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float db = amax / 127.0f, id = db ? 1.0f / db : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            const int v = (int)nearbyintf(xb[j] * id);
            q[b * 32 + j] = (int8_t)v;
            sum += v;
        }
        d[b] = db;
        ds[b] = db * (float)sum;
    }
}

/* ---- quantisers ---- */

static inline int nearest_int(float f) { return (int)lrintf(f); }

static void qz_q8_0(const float *x, ds3_blk_q8_0 *b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    b->d = ds3_f32_to_f16(d);
    for (int j = 0; j < 32; j++) b->qs[j] = (int8_t)roundf(x[j] * id);
}

static void qz_q4_0(const float *x, ds3_blk_q4_0 *b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -8, id = d ? 1.0f / d : 0.0f;
    b->d = ds3_f32_to_f16(d);
    for (int j = 0; j < 16; j++) {
        const float x0 = x[j] * id, x1 = x[16 + j] * id;
        const uint8_t xi0 = (uint8_t)(int8_t)fminf(15.0f, x0 + 8.5f), xi1 = (uint8_t)(int8_t)fminf(15.0f, x1 + 8.5f);
        b->qs[j] = xi0 | (uint8_t)(xi1 << 4);
    }
}

/* K-quant with mins (Q4_K: nmax 15, Q5_K: nmax 31) over 8 sub-blocks of 32: x ~ d*sc*q - dmin*m.
 * Per sub-block: scale = (max - min)/nmax with min clamped to <= 0; super scales d = max(scale)/63,
 * dmin = max(-min)/63; 6-bit sc, m rounded; q re-rounded against the rounded scales. */
static void kquant_mins(const float *x, int nmax, uint16_t *dd, uint16_t *dmin, uint8_t scales[12], uint8_t L[256]) {
    float sc[8], mn[8];
    float maxsc = 0, maxmn = 0;
    for (int j = 0; j < 8; j++) {
        float lo = x[32 * j], hi = x[32 * j];
        for (int l = 1; l < 32; l++) {
            lo = fminf(lo, x[32 * j + l]);
            hi = fmaxf(hi, x[32 * j + l]);
        }
        if (lo > 0) lo = 0;
        sc[j] = (hi - lo) / nmax;
        mn[j] = -lo;
        maxsc = fmaxf(maxsc, sc[j]);
        maxmn = fmaxf(maxmn, mn[j]);
    }
    const float d = maxsc / 63.0f, dm = maxmn / 63.0f;
    const float id = d ? 1.0f / d : 0.0f, idm = dm ? 1.0f / dm : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        int a = nearest_int(id * sc[j]), b = nearest_int(idm * mn[j]);
        ls[j] = (uint8_t)(a < 0 ? 0 : a > 63 ? 63 : a);
        lm[j] = (uint8_t)(b < 0 ? 0 : b > 63 ? 63 : b);
    }
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            scales[j] = ls[j];
            scales[j + 4] = lm[j];
        } else {
            scales[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            scales[j - 0] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
    *dd = ds3_f32_to_f16(d);
    *dmin = ds3_f32_to_f16(dm);
    const float df = ds3_f16_to_f32(*dd), dmf = ds3_f16_to_f32(*dmin);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        get_scale_min_k4(j, scales, &s, &m);
        const float ds = df * s, dmm = dmf * m;
        for (int l = 0; l < 32; l++) {
            int q = ds ? nearest_int((x[32 * j + l] + dmm) / ds) : 0;
            L[32 * j + l] = (uint8_t)(q < 0 ? 0 : q > nmax ? nmax : q);
        }
    }
}

static void qz_q4_k(const float *x, ds3_blk_q4_k *b) {
    uint8_t L[256];
    memset(b->scales, 0, sizeof b->scales);
    kquant_mins(x, 15, &b->d, &b->dmin, b->scales, L);
    for (int j = 0; j < 256; j += 64)
        for (int l = 0; l < 32; l++) b->qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

static void qz_q5_k(const float *x, ds3_blk_q5_k *b) {
    uint8_t L[256];
    memset(b->scales, 0, sizeof b->scales);
    kquant_mins(x, 31, &b->d, &b->dmin, b->scales, L);
    memset(b->qh, 0, sizeof b->qh);
    uint8_t m1 = 1, m2 = 2;
    uint8_t *ql = b->qs;
    for (int n = 0; n < 256; n += 64, ql += 32, m1 <<= 2, m2 <<= 2)
        for (int j = 0; j < 32; j++) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                b->qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                b->qh[j] |= m2;
            }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
}

/* Q6_K: 16 sub-blocks of 16, symmetric: scale = max|x| / 32 (the value of largest magnitude maps
 * to -32 like ggml's make_qx_quants), int8 sub-scales against d = max|scale| / 127. */
static void qz_q6_k(const float *x, ds3_blk_q6_k *b) {
    float sc[16], maxabs = 0, maxsc = 0;
    for (int j = 0; j < 16; j++) {
        float amax = 0, mx = 0;
        for (int l = 0; l < 16; l++)
            if (fabsf(x[16 * j + l]) > amax) {
                amax = fabsf(x[16 * j + l]);
                mx = x[16 * j + l];
            }
        sc[j] = mx / -32.0f;
        if (fabsf(sc[j]) > maxabs) {
            maxabs = fabsf(sc[j]);
            maxsc = sc[j];
        }
    }
    const float d = maxsc / -128.0f, id = d ? 1.0f / d : 0.0f;
    b->d = ds3_f32_to_f16(d);
    const float df = ds3_f16_to_f32(b->d);
    uint8_t L[256];
    for (int j = 0; j < 16; j++) {
        int s = nearest_int(id * sc[j]);
        b->scales[j] = (int8_t)(s < -128 ? -128 : s > 127 ? 127 : s);
        const float ds = df * b->scales[j];
        for (int l = 0; l < 16; l++) {
            int q = ds ? nearest_int(x[16 * j + l] / ds) : 0;
            q = q < -32 ? -32 : q > 31 ? 31 : q;
            L[16 * j + l] = (uint8_t)(q + 32);
        }
    }
    uint8_t *ql = b->ql, *qh = b->qh;
    for (int j = 0; j < 256; j += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; l++) {
            const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
            ql[l] = (uint8_t)(q1 | (q3 << 4));
            ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
            qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                              ((L[j + l + 96] >> 4) << 6));
        }
}

int ds3_q_quantize_row(ds3_dtype t, const float *x, int64_t n, void *dst) {
    const int qk = ds3_q_blck(t);
    if (!qk || n % qk) return -1;
    uint8_t *p = dst;
    const size_t bs = ds3_q_blck_bytes(t);
    for (int64_t i = 0; i < n / qk; i++, p += bs, x += qk) {
        switch (t) {
        case DS3_DT_Q8_0: qz_q8_0(x, (void *)p); break;
        case DS3_DT_Q4_0: qz_q4_0(x, (void *)p); break;
        case DS3_DT_Q4_K: qz_q4_k(x, (void *)p); break;
        case DS3_DT_Q5_K: qz_q5_k(x, (void *)p); break;
        case DS3_DT_Q6_K: qz_q6_k(x, (void *)p); break;
        default: return -1;
        }
    }
    return 0;
}
