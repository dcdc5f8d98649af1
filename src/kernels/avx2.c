/* avx2.c -- the AVX2+FMA+F16C kernel set (matmul, dequant_row, dot, axpy) for F32/BF16/F16/FP8
 * weights: the same design as avx512.c at 8 lanes and 16 registers. Reference twin: ref.c;
 * tests/test_kernels.c compares the two. Owned by the kernels engineer; interface kernels.h.
 *
 * Numerics, as in avx512.c: weights dequantized exactly (FP8: round(e4m3*scale), ref.c's value),
 * one 8-lane f32 accumulator per output fed fma(x[k..k+7], w[k..k+7]) in k order with a zero-padded
 * final chunk, then one fixed reduction tree (hsum8). Every path computes the same bits, so results
 * never depend on T or on how rows are split. AVX2 has no byte/word masked loads: tails go
 * through small zero-padded copies. */
#include "kernels.h"

#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* e4m3fn -> f32 * 2^-120: sign-extend, move the 7 magnitude bits under the f32 exponent, keep
 * them and the sign (see avx512.c); the caller multiplies by scale*2^120. */
AI __m256 fp8_bits(__m128i q) {
    __m256i v = _mm256_cvtepi8_epi32(q);
    v = _mm256_and_si256(_mm256_slli_epi32(v, 20), _mm256_set1_epi32((int)0x87F00000u));
    return _mm256_castsi256_ps(v);
}

/* 8 weights starting at element k of row p. FP8: bits*s1 (then *s2 when `two`). */
AI __m256 load_w(const int dt, const void *p, int64_t k, __m256 s1, __m256 s2, const int two) {
    switch (dt) {
    case DS3_DT_F32: return _mm256_loadu_ps((const float *)p + k);
    case DS3_DT_BF16: {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + k));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    case DS3_DT_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + k)));
    default: {
        __m128i b = _mm_loadl_epi64((const __m128i *)((const uint8_t *)p + k));
        __m256 v = _mm256_mul_ps(fp8_bits(b), s1);
        return two ? _mm256_mul_ps(v, s2) : v;
    }
    }
}

/* See avx512.c: scale*2^120 must not overflow for the one-multiply form to be exact. */
static inline int fp8_big(float s) { return !(fabsf(s * 0x1p120f) <= FLT_MAX); }

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI __m256i tail_mask8(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#define ESZ(dt) ((dt) == DS3_DT_F32 ? 4 : (dt) == DS3_DT_F8E4M3 ? 1 : 2)

/* ---- decode: R rows (1, 2 or 4) x NT tokens (1..4), weights streamed once ------------------- */

AI void dec_chunk(const int dt, const int R, const int NT, const void *const *rp, int64_t k, const __m256 *s1,
                  const __m256 *s2, const int two, const float *x, size_t ldx, __m256 acc[4][4]) {
    __m256 xv[4];
    UNROLL
    for (int j = 0; j < NT; j++) xv[j] = _mm256_loadu_ps(x + (size_t)j * ldx + k);
    UNROLL
    for (int i = 0; i < R; i++) {
        __m256 wv = load_w(dt, rp[i], k, s1[i], s2[i], two);
        UNROLL
        for (int j = 0; j < NT; j++) acc[i][j] = _mm256_fmadd_ps(xv[j], wv, acc[i][j]);
    }
}

/* the last n < 8 columns: zero-padded copies of weights and x, then an ordinary chunk */
AI void dec_tail(const int dt, const int R, const int NT, const void *const *rp, int64_t k, int64_t n,
                 const __m256 *s1, const __m256 *s2, const int two, const float *x, size_t ldx,
                 __m256 acc[4][4]) {
    _Alignas(32) unsigned char wb[4][32];
    _Alignas(32) float xb[4][8];
    const void *tp[4];
    memset(wb, 0, sizeof wb);
    memset(xb, 0, sizeof xb);
    for (int i = 0; i < R; i++) {
        memcpy(wb[i], (const char *)rp[i] + k * ESZ(dt), (size_t)(n * ESZ(dt)));
        tp[i] = wb[i];
    }
    for (int j = 0; j < NT; j++) memcpy(xb[j], x + (size_t)j * ldx + k, (size_t)n * sizeof(float));
    dec_chunk(dt, R, NT, tp, 0, s1, s2, two, &xb[0][0], 8, acc);
}

#ifndef PF_DIST
#define PF_DIST 16384 /* see avx512.c: model rows are short, prefetch far ahead */
#endif

AI void dec_span(const int dt, const int R, const int NT, const void *const *rp, int64_t k0, int64_t k1,
                 const __m256 *s1, const __m256 *s2, const int two, const float *x, size_t ldx,
                 __m256 acc[4][4]) {
    const int step = 64 / ESZ(dt); /* one cache line per row per step, prefetched ahead */
    int64_t k = k0;
    for (; k + step <= k1; k += step) {
        UNROLL
        for (int i = 0; i < R; i++) _mm_prefetch((const char *)rp[i] + (k * ESZ(dt) + PF_DIST), _MM_HINT_T0);
        UNROLL
        for (int c = 0; c < step; c += 8) dec_chunk(dt, R, NT, rp, k + c, s1, s2, two, x, ldx, acc);
    }
    for (; k + 8 <= k1; k += 8) dec_chunk(dt, R, NT, rp, k, s1, s2, two, x, ldx, acc);
    if (k < k1) dec_tail(dt, R, NT, rp, k, k1 - k, s1, s2, two, x, ldx, acc);
}

AI void dec_rows(const int dt, const int R, const int NT, const ds3_mat *w, int64_t r, const float *x,
                 size_t ldx, float *y, size_t ldy) {
    const int64_t K = w->cols;
    const void *rp[4];
    __m256 acc[4][4];
    UNROLL
    for (int i = 0; i < R; i++) {
        rp[i] = (const char *)w->data + (size_t)(r + i) * (size_t)K * ESZ(dt);
        UNROLL
        for (int j = 0; j < NT; j++) acc[i][j] = _mm256_setzero_ps();
    }
    if (dt == DS3_DT_F8E4M3) {
        const int64_t nbc = (K + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK;
        const float *sc[4];
        UNROLL
        for (int i = 0; i < R; i++) sc[i] = w->scale + ((r + i) / DS3_FP8_BLOCK) * nbc;
        for (int64_t b = 0; b < nbc; b++) {
            int64_t k0 = b * DS3_FP8_BLOCK, k1 = k0 + DS3_FP8_BLOCK < K ? k0 + DS3_FP8_BLOCK : K;
            __m256 s1[4], s2[4];
            int big = 0;
            UNROLL
            for (int i = 0; i < R; i++) big |= fp8_big(sc[i][b]);
            UNROLL
            for (int i = 0; i < R; i++) {
                s1[i] = _mm256_set1_ps(big ? 0x1p120f : sc[i][b] * 0x1p120f);
                s2[i] = _mm256_set1_ps(sc[i][b]);
            }
            if (!big) dec_span(dt, R, NT, rp, k0, k1, s1, s2, 0, x, ldx, acc);
            else dec_span(dt, R, NT, rp, k0, k1, s1, s2, 1, x, ldx, acc);
        }
    } else {
        __m256 z[4];
        UNROLL
        for (int i = 0; i < 4; i++) z[i] = _mm256_setzero_ps();
        dec_span(dt, R, NT, rp, 0, K, z, z, 0, x, ldx, acc);
    }
    UNROLL
    for (int i = 0; i < R; i++)
        UNROLL
        for (int j = 0; j < NT; j++) y[(size_t)j * ldy + i] = hsum8(acc[i][j]);
}

AI void decode(const int dt, const int NT, const ds3_mat *w, int64_t r0, int64_t r1, const float *x,
               size_t ldx, float *y, size_t ldy) {
    int64_t r = r0;
    if (NT <= 2)
        for (; r + 4 <= r1; r += 4) dec_rows(dt, 4, NT, w, r, x, ldx, y + (r - r0), ldy);
    for (; r + 2 <= r1; r += 2) dec_rows(dt, 2, NT, w, r, x, ldx, y + (r - r0), ldy);
    for (; r < r1; r++) dec_rows(dt, 1, NT, w, r, x, ldx, y + (r - r0), ldy);
}

/* ---- dequantization of a column span of one row (also the public dequant_row) -------------- */

AI void deq_span(const int dt, const ds3_mat *w, int64_t r, int64_t c0, int64_t c1, float *dst) {
    const void *row = (const char *)w->data + (size_t)r * (size_t)w->cols * ESZ(dt);
    __m256 s1 = _mm256_setzero_ps(), s2 = s1;
    float s = 0.0f;
    int two = 0;
    int64_t c = c0;
    while (c < c1) {
        int64_t e = c1;
        if (dt == DS3_DT_F8E4M3) { /* one scale block at a time */
            int64_t nbc = (w->cols + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK;
            int64_t be = (c / DS3_FP8_BLOCK + 1) * DS3_FP8_BLOCK;
            if (be < e) e = be;
            s = w->scale[(r / DS3_FP8_BLOCK) * nbc + c / DS3_FP8_BLOCK];
            two = fp8_big(s);
            s1 = _mm256_set1_ps(two ? 0x1p120f : s * 0x1p120f);
            s2 = _mm256_set1_ps(s);
        }
        for (; c + 8 <= e; c += 8)
            _mm256_storeu_ps(dst + (c - c0), two ? load_w(dt, row, c, s1, s2, 1) : load_w(dt, row, c, s1, s2, 0));
        for (; c < e; c++) { /* scalar tail: the conversions are exact, so the values agree */
            float v;
            switch (dt) {
            case DS3_DT_F32: v = ((const float *)row)[c]; break;
            case DS3_DT_BF16: v = ds3_bf16_to_f32(((const uint16_t *)row)[c]); break;
            case DS3_DT_F16: v = ds3_f16_to_f32(((const uint16_t *)row)[c]); break;
            default: v = ds3_fp8_table[((const uint8_t *)row)[c]] * s; break;
            }
            dst[c - c0] = v;
        }
    }
}

static void avx2_dequant_row(const ds3_mat *w, int64_t r, int64_t c0, int64_t c1, float *dst) {
    switch (w->dtype) {
    case DS3_DT_F32: deq_span(DS3_DT_F32, w, r, c0, c1, dst); break;
    case DS3_DT_BF16: deq_span(DS3_DT_BF16, w, r, c0, c1, dst); break;
    case DS3_DT_F16: deq_span(DS3_DT_F16, w, r, c0, c1, dst); break;
    case DS3_DT_F8E4M3: deq_span(DS3_DT_F8E4M3, w, r, c0, c1, dst); break;
    default: break;
    }
}

/* ---- prefill: dequantized tile + 4-row x 3-token micro-kernel ------------------------------- */

enum { RT = 16, KC = 1024, TG = 64, MT = 3 };

AI void micro(const int NT, const float *wt, const float *x, size_t ldx, int64_t kn, int first, int last,
              __m256 *ab, float *y, size_t ldy, int nrow) {
    __m256 acc[4][MT];
    UNROLL
    for (int i = 0; i < 4; i++)
        UNROLL
        for (int j = 0; j < NT; j++) acc[i][j] = first ? _mm256_setzero_ps() : ab[j * 4 + i];
    int64_t k = 0;
    for (; k + 8 <= kn; k += 8) {
        __m256 xv[MT];
        UNROLL
        for (int j = 0; j < NT; j++) xv[j] = _mm256_loadu_ps(x + (size_t)j * ldx + k);
        UNROLL
        for (int i = 0; i < 4; i++) {
            __m256 wv = _mm256_load_ps(wt + (size_t)i * KC + k);
            UNROLL
            for (int j = 0; j < NT; j++) acc[i][j] = _mm256_fmadd_ps(xv[j], wv, acc[i][j]);
        }
    }
    if (k < kn) {
        __m256i m = tail_mask8(kn - k);
        __m256 xv[MT];
        UNROLL
        for (int j = 0; j < NT; j++) xv[j] = _mm256_maskload_ps(x + (size_t)j * ldx + k, m);
        UNROLL
        for (int i = 0; i < 4; i++) {
            __m256 wv = _mm256_load_ps(wt + (size_t)i * KC + k);
            UNROLL
            for (int j = 0; j < NT; j++) acc[i][j] = _mm256_fmadd_ps(xv[j], wv, acc[i][j]);
        }
    }
    if (last) {
        UNROLL
        for (int j = 0; j < NT; j++)
            for (int i = 0; i < nrow; i++) y[(size_t)j * ldy + i] = hsum8(acc[i][j]);
    } else {
        UNROLL
        for (int i = 0; i < 4; i++)
            UNROLL
            for (int j = 0; j < NT; j++) ab[j * 4 + i] = acc[i][j];
    }
}

static void micro_n(int nt, const float *wt, const float *x, size_t ldx, int64_t kn, int first, int last,
                    __m256 *ab, float *y, size_t ldy, int nrow) {
    switch (nt) {
    case 1: micro(1, wt, x, ldx, kn, first, last, ab, y, ldy, nrow); break;
    case 2: micro(2, wt, x, ldx, kn, first, last, ab, y, ldy, nrow); break;
    default: micro(MT, wt, x, ldx, kn, first, last, ab, y, ldy, nrow); break;
    }
}

AI void prefill(const int dt, const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T,
                float *y, size_t ldy) {
    _Alignas(32) float wt[RT * KC];         /* (RT, KC) dequantized tile, zero padded */
    _Alignas(32) __m256 ab[RT / 4][TG * 4]; /* partial 8-lane sums per (row group, token, row) */
    const int64_t K = w->cols;
    for (int t0 = 0; t0 < T; t0 += TG) {
        int tn = T - t0 < TG ? T - t0 : TG;
        for (int64_t rt = r0; rt < r1; rt += RT) {
            int rn = r1 - rt < RT ? (int)(r1 - rt) : RT;
            for (int64_t kc = 0; kc < K; kc += KC) {
                int64_t kn = K - kc < KC ? K - kc : KC, kn8 = (kn + 7) & ~(int64_t)7;
                for (int i = 0; i < RT; i++) {
                    float *d = wt + (size_t)i * KC;
                    if (i < rn) {
                        deq_span(dt, w, rt + i, kc, kc + kn, d);
                        memset(d + kn, 0, (size_t)(kn8 - kn) * sizeof(float));
                    } else if (i < ((rn + 3) & ~3)) {
                        memset(d, 0, (size_t)kn8 * sizeof(float));
                    }
                }
                int first = kc == 0, last = kc + kn == K;
                for (int tb = 0; tb < tn; tb += MT) {
                    int nt = tn - tb < MT ? tn - tb : MT;
                    const float *xb = x + (size_t)(t0 + tb) * ldx + kc;
                    for (int g = 0; g * 4 < rn; g++) {
                        int nrow = rn - g * 4 < 4 ? rn - g * 4 : 4;
                        float *yb = y + (size_t)(t0 + tb) * ldy + (size_t)(rt - r0) + (size_t)g * 4;
                        micro_n(nt, wt + (size_t)g * 4 * KC, xb, ldx, kn, first, last, &ab[g][tb * 4], yb,
                                ldy, nrow);
                    }
                }
            }
        }
    }
}

/* ---- entry points ---------------------------------------------------------------------------- */

AI void matmul_dt(const int dt, const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T,
                  float *y, size_t ldy) {
    switch (T) { /* identical bits either way; the switch point only trades speed */
    case 1: decode(dt, 1, w, r0, r1, x, ldx, y, ldy); break;
    case 2: decode(dt, 2, w, r0, r1, x, ldx, y, ldy); break;
    case 3: decode(dt, 3, w, r0, r1, x, ldx, y, ldy); break;
    case 4: decode(dt, 4, w, r0, r1, x, ldx, y, ldy); break;
    default: prefill(dt, w, r0, r1, x, ldx, T, y, ldy);
    }
}

static void avx2_matmul(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                        size_t ldy) {
    if (r1 <= r0 || T <= 0) return;
    switch (w->dtype) {
    case DS3_DT_F32: matmul_dt(DS3_DT_F32, w, r0, r1, x, ldx, T, y, ldy); break;
    case DS3_DT_BF16: matmul_dt(DS3_DT_BF16, w, r0, r1, x, ldx, T, y, ldy); break;
    case DS3_DT_F16: matmul_dt(DS3_DT_F16, w, r0, r1, x, ldx, T, y, ldy); break;
    case DS3_DT_F8E4M3: matmul_dt(DS3_DT_F8E4M3, w, r0, r1, x, ldx, T, y, ldy); break;
    default: break;
    }
}

static float avx2_dot(int n, const float *a, const float *b) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    if (i < n) {
        __m256i m = tail_mask8(n - i);
        s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
    }
    return hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

static void avx2_axpy(int n, float a, const float *x, float *y) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    if (i < n) {
        __m256i m = tail_mask8(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_fmadd_ps(av, _mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m)));
    }
}

const ds3_kernels ds3_kernels_avx2 = {
    .name = "avx2",
    .matmul = avx2_matmul,
    .dequant_row = avx2_dequant_row,
    .dot = avx2_dot,
    .axpy = avx2_axpy,
};
