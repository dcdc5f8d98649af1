/* test_quant.c -- the GGML block-quantised kernels (src/kernels/quant*.c).
 *   1. quantisers: Q8_0 byte-identical with gguf-py / llama-quantize on every Q8_0 tensor of
 *      dev-q8_0.gguf (re-quantised from dev-f32.gguf, same seed); every quantiser's round trip
 *      within a per-type relative RMS bound.
 *   2. every SIMD set against the scalar twin on many shapes (rows 1..17, cols 32..2816, T 1..9):
 *      the SIMD kernels round activations to 8 bits (per 32: d = max|x|/127), so they are checked
 *      against an exact emulation of that rounding (relative 1e-5) and the f32 twin within the
 *      rounding bound sum_k |w_k| d_k / 2 (+1e-5 relative); row-range splits and T give bitwise
 *      identical outputs; dequant_row equals the twin exactly. */
#include "harness.h"
#include "io/gguf.h"
#include "kernels/quant.h"
#include "util/common.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static const ds3_dtype qtypes[] = {DS3_DT_Q8_0, DS3_DT_Q4_0, DS3_DT_Q4_K,  DS3_DT_Q5_K,
                                   DS3_DT_Q6_K, DS3_DT_Q2_K, DS3_DT_Q3_K, DS3_DT_Q8_0X16, DS3_DT_Q4_KX16};
#define NQ ((int)(sizeof qtypes / sizeof qtypes[0]))

/* random quantised matrix: via the quantiser, or random bytes with small f16 scales (Q2_K/Q3_K) */
static void *make_q(ds3_dtype t, int64_t rows, int64_t cols, float *src) {
    if (t == DS3_DT_Q8_0X16) { /* Q8_0, repacked */
        void *q = make_q(DS3_DT_Q8_0, rows, cols, src);
        CHECK(ds3_q8_0x16_repack(q, rows, cols) == 0, "repack");
        return q;
    }
    if (t == DS3_DT_Q4_KX16) { /* Q4_K, repacked */
        void *q = make_q(DS3_DT_Q4_K, rows, cols, src);
        CHECK(ds3_q4_kx16_repack(q, rows, cols) == 0, "repack");
        return q;
    }
    const size_t rb = ds3_row_bytes(t, cols);
    uint8_t *q = malloc(rb * (size_t)rows);
    for (int64_t i = 0; i < rows * cols; i++) src[i] = frand() * (1.0f + 3.0f * (i % 7 == 0));
    for (int64_t r = 0; r < rows; r++) {
        if (ds3_q_quantize_row(t, src + r * cols, cols, q + (size_t)r * rb) == 0) continue;
        for (size_t i = 0; i < rb; i++) q[(size_t)r * rb + i] = (uint8_t)(frand() * 127 + 128);
        const size_t bs = ds3_q_blck_bytes(t);
        for (size_t b = 0; b < rb / bs; b++) {
            uint8_t *blk = q + (size_t)r * rb + b * bs;
            uint16_t d = ds3_f32_to_f16(0.01f + 0.01f * (frand() + 1)), dm = ds3_f32_to_f16(0.005f);
            if (t == DS3_DT_Q2_K) { memcpy(blk + 80, &d, 2); memcpy(blk + 82, &dm, 2); }
            else memcpy(blk + 108, &d, 2);
        }
    }
    return q;
}

static void test_quantizers(void) {
    /* round trip */
    const double bound[] = {0.01, 0.12, 0.11, 0.05, 0.03}; /* simple K-quantisers (quant_ref.c) */
    for (int i = 0; i < 5; i++) {
        const ds3_dtype t = qtypes[i];
        const int64_t n = 4096;
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        void *q = make_q(t, 1, n, x);
        ds3_q_dequant_blocks(t, q, 0, n / ds3_q_blck(t), y);
        double se = 0, sx = 0;
        for (int64_t k = 0; k < n; k++) {
            se += (double)(x[k] - y[k]) * (x[k] - y[k]);
            sx += (double)x[k] * x[k];
        }
        CHECK(sqrt(se / sx) < bound[i], "%s round trip: relative RMS error %.4f >= %.4f", ds3_dtype_name(t), sqrt(se / sx), bound[i]);
        free(x);
        free(y);
        free(q);
    }
    /* Q8_0 byte-identical with gguf-py on the dev model */
    char err[DS3_ERR_LEN];
    ds3_gguf *gf = NULL, *gq = NULL;
    int rc = ds3_gguf_open("tests/fixtures/gguf/dev-f32.gguf", 1, 0, &gf, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    rc = rc ? rc : ds3_gguf_open("tests/fixtures/gguf/dev-q8_0.gguf", 1, 0, &gq, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc) goto out;
    int n_q8 = 0, same = 0;
    for (int i = 0; i < ds3_gguf_n_tensors(gq); i++) {
        ds3_gguf_tensor *tq = ds3_gguf_tensor_at(gq, i), *tf = ds3_gguf_find_tensor(gf, tq->name);
        if (tq->type != GGML_T_Q8_0 || !tf || tf->type != GGML_T_F32) continue;
        n_q8++;
        uint8_t *buf = malloc(tq->nbytes);
        ds3_q_quantize_row(DS3_DT_Q8_0, tf->data, (int64_t)(tf->nbytes / 4), buf);
        if (!memcmp(buf, tq->data, tq->nbytes)) same++;
        else CHECK(0, "Q8_0 quantiser differs from gguf-py on '%s'", tq->name);
        free(buf);
    }
    CHECK(n_q8 > 20 && same == n_q8, "Q8_0: %d/%d tensors byte-identical with gguf-py", same, n_q8);
out:
    ds3_gguf_close(gf);
    ds3_gguf_close(gq);
}

/* y_emul[t][r] = sum_k W[r][k] * (q_k * d_k) with the activation rounding of the SIMD kernels */
static void emulate(const ds3_mat *w, const float *x, int T, double *y, double *bound) {
    const int64_t K = w->cols;
    int8_t *q = malloc((size_t)K);
    float *d = malloc((size_t)(K / 32) * sizeof *d), *ds = malloc((size_t)(K / 32) * sizeof *ds);
    float *row = malloc((size_t)K * sizeof *row);
    for (int t = 0; t < T; t++) {
        ds3_q8_quantize_act(x + (size_t)t * K, K, q, d, ds);
        for (int64_t r = 0; r < w->rows; r++) {
            ds3_qkernels_ref.dequant_row(w, r, 0, K, row);
            double s = 0, b = 0, m = 0;
            for (int64_t k = 0; k < K; k++) {
                s += (double)row[k] * q[k] * d[k / 32];
                b += fabs((double)row[k]) * d[k / 32] * 0.5;
                m += fabs((double)row[k] * x[(size_t)t * K + k]);
            }
            y[(size_t)t * w->rows + r] = s;
            bound[(size_t)t * w->rows + r] = b * 1.0001 + 1e-5 * m + 1e-6;
        }
    }
    free(q);
    free(d);
    free(ds);
    free(row);
}

static void test_set(const char *set) {
    if (ds3_kernels_set(set)) return;
    const ds3_kernels *qk = ds3_qkern;
    if (qk == &ds3_qkernels_ref) return;
    const int64_t colsv[] = {32, 64, 96, 256, 512, 768, 1024, 1600, 2816};
    const int64_t rowsv[] = {1, 3, 4, 5, 17}, rowsv16[] = {16, 32, 48, 160, 272}; /* Q8_0x16: whole groups */
    const int Tv[] = {1, 2, 3, 4, 5, 7, 9};
    for (int ti = 0; ti < NQ; ti++) {
        const ds3_dtype dt = qtypes[ti];
        const int qk_ = ds3_q_blck(dt);
        int n_shapes = 0, bad_emul = 0, bad_bound = 0, bad_split = 0, bad_T = 0, bad_dq = 0;
        for (size_t ci = 0; ci < sizeof colsv / sizeof colsv[0]; ci++) {
            const int64_t K = colsv[ci];
            if (K % qk_) continue;
            for (size_t ri = 0; ri < sizeof rowsv / sizeof rowsv[0]; ri++) {
                const int64_t R = dt == DS3_DT_Q8_0X16 || dt == DS3_DT_Q4_KX16 ? rowsv16[ri] : rowsv[ri];
                float *src = malloc((size_t)(R * K) * sizeof *src);
                void *q = make_q(dt, R, K, src);
                ds3_mat w = {dt, R, K, q, NULL};
                const int Tmax = 9;
                float *x = malloc((size_t)Tmax * K * sizeof *x);
                for (int64_t i = 0; i < Tmax * K; i++) x[i] = frand() * (i % 13 == 0 ? 4.0f : 1.0f);
                double *ye = malloc((size_t)Tmax * R * sizeof *ye), *yb = malloc((size_t)Tmax * R * sizeof *yb);
                float *yr = malloc((size_t)Tmax * R * sizeof *yr), *ys = malloc((size_t)Tmax * R * sizeof *ys);
                float *y2 = malloc((size_t)Tmax * R * sizeof *y2);
                emulate(&w, x, Tmax, ye, yb);
                ds3_qkernels_ref.matmul(&w, 0, R, x, (size_t)K, Tmax, yr, (size_t)R);
                for (size_t tj = 0; tj < sizeof Tv / sizeof Tv[0]; tj++) {
                    const int T = Tv[tj];
                    n_shapes++;
                    qk->matmul(&w, 0, R, x, (size_t)K, T, ys, (size_t)R);
                    for (int t = 0; t < T; t++)
                        for (int64_t r = 0; r < R; r++) {
                            const size_t i = (size_t)t * R + r;
                            const int simd_exact = dt != DS3_DT_Q2_K && dt != DS3_DT_Q3_K;
                            if (simd_exact && fabs(ys[i] - ye[i]) > 1e-5 * (fabs(ye[i]) + yb[i]) + 1e-5) {
                                if (!bad_emul++)
                                    fprintf(stderr, "  %s %s K=%lld R=%lld T=%d t=%d r=%lld: simd %.7g emul %.7g\n", set,
                                            ds3_dtype_name(dt), (long long)K, (long long)R, T, t, (long long)r, ys[i], ye[i]);
                            }
                            if (fabs(ys[i] - yr[i]) > yb[i]) bad_bound++;
                            if (T == Tmax || tj == 0) {
                                /* token t of a T-token call equals the same token alone (T = 1 call) */
                                qk->matmul(&w, r, r + 1, x + (size_t)t * K, (size_t)K, 1, y2, 1);
                                if (memcmp(&y2[0], &ys[i], sizeof(float))) bad_T++;
                            }
                        }
                    /* split rows in two ranges */
                    if (R > 1) {
                        const int64_t mid = R / 2 + 1;
                        qk->matmul(&w, 0, mid, x, (size_t)K, T, y2, (size_t)R);
                        qk->matmul(&w, mid, R, x, (size_t)K, T, y2 + mid, (size_t)R);
                        for (int t = 0; t < T; t++)
                            if (memcmp(y2 + (size_t)t * R, ys + (size_t)t * R, (size_t)R * sizeof(float))) bad_split++;
                    }
                }
                /* dequant_row */
                float *d1 = malloc((size_t)K * sizeof *d1), *d2 = malloc((size_t)K * sizeof *d2);
                for (int64_t r = 0; r < R; r++) {
                    ds3_qkernels_ref.dequant_row(&w, r, 3 % K, K, d1);
                    qk->dequant_row(&w, r, 3 % K, K, d2);
                    if (memcmp(d1, d2, (size_t)(K - 3 % K) * sizeof(float))) bad_dq++;
                }
                free(d1);
                free(d2);
                free(src);
                free(q);
                free(x);
                free(ye);
                free(yb);
                free(yr);
                free(ys);
                free(y2);
            }
        }
        CHECK(bad_emul == 0, "%s %s: %d outputs differ from the exact activation-rounding emulation", set, ds3_dtype_name(dt), bad_emul);
        CHECK(bad_bound == 0, "%s %s: %d outputs outside the activation-rounding bound of the f32 twin", set, ds3_dtype_name(dt),
              bad_bound);
        CHECK(bad_T == 0, "%s %s: %d outputs depend on T", set, ds3_dtype_name(dt), bad_T);
        CHECK(bad_split == 0, "%s %s: %d token rows depend on the row split", set, ds3_dtype_name(dt), bad_split);
        CHECK(bad_dq == 0, "%s %s: %d dequantised rows differ from the twin", set, ds3_dtype_name(dt), bad_dq);
        CHECK(n_shapes > 0, "%s %s: no shapes", set, ds3_dtype_name(dt));
    }
}

/* The twin itself against a straightforward dequantise-then-dot in double. */
static void test_ref(void) {
    for (int ti = 0; ti < NQ; ti++) {
        const ds3_dtype dt = qtypes[ti];
        const int64_t K = 512, R = dt == DS3_DT_Q8_0X16 || dt == DS3_DT_Q4_KX16 ? 16 : 5;
        float *src = malloc((size_t)(R * K) * sizeof *src), *x = malloc((size_t)(3 * K) * sizeof *x);
        void *q = make_q(dt, R, K, src);
        ds3_mat w = {dt, R, K, q, NULL};
        for (int64_t i = 0; i < 3 * K; i++) x[i] = frand();
        float y[3 * 16], row[512];
        ds3_qkernels_ref.matmul(&w, 0, R, x, (size_t)K, 3, y, (size_t)R);
        double md = 0;
        for (int t = 0; t < 3; t++)
            for (int64_t r = 0; r < R; r++) {
                if (dt == DS3_DT_Q8_0X16 || dt == DS3_DT_Q4_KX16) ds3_qkernels_ref.dequant_row(&w, r, 0, K, row);
                else ds3_q_dequant_blocks(dt, (const uint8_t *)q + (size_t)r * ds3_row_bytes(dt, K), 0, K / ds3_q_blck(dt), row);
                double s = 0;
                for (int64_t k = 0; k < K; k++) s += (double)row[k] * x[t * K + k];
                md = fmax(md, fabs(s - y[t * R + r]));
            }
        CHECK(md < 1e-3, "%s ref matmul vs double dot: %.3g", ds3_dtype_name(dt), md);
        free(src);
        free(x);
        free(q);
    }
}

/* Q8_0x16 / Q4_Kx16 hold the very values of the matrix they were repacked from: every block
 * comes back byte for byte, and the scalar twin gives the same bits for both layouts. */
static void test_x16_layout(ds3_dtype from, ds3_dtype to, int64_t R, int64_t K) {
    const size_t rb = ds3_row_bytes(from, K), bytes = rb * (size_t)R, bs = ds3_q_blck_bytes(from);
    float *src = malloc((size_t)(R * K) * sizeof *src), *x = malloc((size_t)(2 * K) * sizeof *x);
    uint8_t *q = make_q(from, R, K, src), *p = malloc(bytes);
    memcpy(p, q, bytes);
    CHECK((to == DS3_DT_Q8_0X16 ? ds3_q8_0x16_repack(p, R, K) : ds3_q4_kx16_repack(p, R, K)) == 0, "repack");
    CHECK(memcmp(p, q, bytes) != 0, "%s: repacking changed nothing", ds3_dtype_name(to));
    const ds3_mat a = {from, R, K, q, NULL}, b = {to, R, K, p, NULL};
    int bad_blk = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < K / ds3_q_blck(from); k++) {
            union { ds3_blk_q8_0 q8; ds3_blk_q4_k q4; } blk;
            if (to == DS3_DT_Q8_0X16) ds3_q8_0x16_block(&b, r, k, &blk.q8);
            else ds3_q4_kx16_block(&b, r, k, &blk.q4);
            if (memcmp(&blk, q + (size_t)r * rb + (size_t)k * bs, bs)) bad_blk++;
        }
    CHECK(bad_blk == 0, "%s: %d blocks differ from the %s source", ds3_dtype_name(to), bad_blk, ds3_dtype_name(from));
    for (int64_t i = 0; i < 2 * K; i++) x[i] = frand();
    float *ya = malloc((size_t)(2 * R) * sizeof *ya), *yb = malloc((size_t)(2 * R) * sizeof *yb);
    ds3_qkernels_ref.matmul(&a, 0, R, x, (size_t)K, 2, ya, (size_t)R);
    ds3_qkernels_ref.matmul(&b, 0, R, x, (size_t)K, 2, yb, (size_t)R);
    CHECK(!memcmp(ya, yb, (size_t)(2 * R) * sizeof *ya), "%s: the twin differs from %s's", ds3_dtype_name(to),
          ds3_dtype_name(from));
    free(src);
    free(x);
    free(q);
    free(p);
    free(ya);
    free(yb);
}

int main(void) {
    TEST_BEGIN("test_quant");
    ds3_kernels_init();
    const char *best = ds3_kernels_name();
    test_quantizers();
    test_ref();
    test_x16_layout(DS3_DT_Q8_0, DS3_DT_Q8_0X16, 48, 96 * 32);
    test_x16_layout(DS3_DT_Q4_K, DS3_DT_Q4_KX16, 32, 6 * 256);
    test_set("avx2");
    test_set("avx512");
    ds3_kernels_set(best);
    return TEST_REPORT();
}
