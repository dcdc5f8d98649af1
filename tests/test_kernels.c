/* test_kernels.c -- every SIMD kernel set against the scalar twin (src/kernels/ref.c), plus the
 * scalar dtype conversions of kernels.c checked exhaustively where the code space allows.
 * Owned by the kernels engineer. A set the CPU lacks is skipped with a "# skip" line.
 *
 * Besides closeness to ref (|a-b| <= 1e-5 * sum|x*w| + 1e-6), the SIMD sets promise bitwise
 * determinism: splitting the rows of a call, or the tokens of a batch, never changes a bit. */
#include "harness.h"
#include "kernels/kernels.h"
#include "kernels/membw.h"

#include <float.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frand(void) { return (float)((rnd() & 0xFFFFFF) / 16777216.0 * 2.0 - 1.0); }

static float bits_f(uint32_t u) {
    union { uint32_t u; float f; } v = {u};
    return v.f;
}
static uint32_t f_bits(float f) {
    union { float f; uint32_t u; } v = {f};
    return v.u;
}

/* ---- conversions ----------------------------------------------------------------------------- */

static void test_conversions(void) {
    int bad = 0;
    /* bf16: every code survives bf16 -> f32 -> bf16; NaNs stay NaN. */
    for (uint32_t c = 0; c < 65536; c++) {
        float f = ds3_bf16_to_f32((uint16_t)c);
        if (f_bits(f) != c << 16) bad++;
        uint16_t back = ds3_f32_to_bf16(f);
        if (isnan(f) ? !isnan(ds3_bf16_to_f32(back)) : back != c) bad++;
    }
    CHECK(bad == 0, "bf16 round trip: %d bad codes", bad);
    CHECK(ds3_f32_to_bf16(bits_f(0x3F808000u)) == 0x3F80, "bf16 tie rounds to even (down)");
    CHECK(ds3_f32_to_bf16(bits_f(0x3F818000u)) == 0x3F82, "bf16 tie rounds to even (up)");
    CHECK(ds3_f32_to_bf16(bits_f(0x3F808001u)) == 0x3F81, "bf16 above tie rounds up");
    CHECK(ds3_f32_to_bf16(FLT_MAX) == 0x7F80, "bf16 overflow rounds to inf");

    /* f16: every code survives f16 -> f32 -> f16; values checked against the compiler's _Float16
     * where it has one, and a random sweep of f32 -> f16 rounding likewise. */
    bad = 0;
    int badv = 0;
    for (uint32_t c = 0; c < 65536; c++) {
        float f = ds3_f16_to_f32((uint16_t)c);
        uint16_t back = ds3_f32_to_f16(f);
        if (isnan(f) ? !isnan(ds3_f16_to_f32(back)) : back != c) bad++;
#ifdef __FLT16_MAX__
        _Float16 h;
        uint16_t cc = (uint16_t)c;
        memcpy(&h, &cc, 2);
        float want = (float)h;
        if (!(isnan(f) && isnan(want)) && f_bits(f) != f_bits(want)) badv++;
#endif
    }
    CHECK(bad == 0, "f16 round trip: %d bad codes", bad);
    CHECK(badv == 0, "f16 -> f32 disagrees with _Float16 on %d codes", badv);
    CHECK(ds3_f16_to_f32(0x3C00) == 1.0f && ds3_f16_to_f32(0x0001) == 0x1p-24f &&
              ds3_f16_to_f32(0x7BFF) == 65504.0f && isinf(ds3_f16_to_f32(0x7C00)),
          "f16 known values");
    CHECK(ds3_f32_to_f16(65519.0f) == 0x7BFF && ds3_f32_to_f16(65520.0f) == 0x7C00 &&
              ds3_f32_to_f16(-1e9f) == 0xFC00 && ds3_f32_to_f16(0x1p-25f) == 0 &&
              ds3_f32_to_f16(0x1.8p-25f) == 1 && ds3_f32_to_f16(0x1.8p-24f) == 2,
          "f16 rounding at overflow and subnormal edges");
#ifdef __FLT16_MAX__
    badv = 0;
    for (int i = 0; i < 200000; i++) {
        /* random sign, exponent around the f16 range, random mantissa */
        uint32_t u = (rnd() & 0x807FFFFFu) | ((uint32_t)(96 + rnd() % 50) << 23);
        float f = bits_f(u);
        _Float16 h = (_Float16)f;
        uint16_t want;
        memcpy(&want, &h, 2);
        if (ds3_f32_to_f16(f) != want) badv++;
    }
    CHECK(badv == 0, "f32 -> f16 disagrees with _Float16 on %d of 200000 values", badv);
#endif

    /* e4m3fn: the table, known values, every finite code round-trips, rounding is nearest-even */
    bad = 0;
    for (int c = 0; c < 256; c++) {
        float f = ds3_e4m3_to_f32((uint8_t)c);
        if ((c & 0x7F) == 0x7F) {
            if (!isnan(f)) bad++;
            continue;
        }
        if (f_bits(ds3_fp8_table[c]) != f_bits(f)) bad++;
        if (ds3_f32_to_e4m3(f) != c) bad++;
    }
    CHECK(bad == 0, "e4m3 round trip / table: %d bad codes", bad);
    CHECK(ds3_e4m3_to_f32(0x7E) == 448.0f && ds3_e4m3_to_f32(0x01) == 0x1p-9f &&
              ds3_e4m3_to_f32(0x08) == 0x1p-6f && ds3_e4m3_to_f32(0x38) == 1.0f &&
              signbit(ds3_e4m3_to_f32(0x80)),
          "e4m3 known values");
    CHECK(ds3_f32_to_e4m3(1000.0f) == 0x7E && ds3_f32_to_e4m3(-1e30f) == 0xFE &&
              ds3_f32_to_e4m3(0x1p-11f) == 0 && ds3_f32_to_e4m3(0x1.8p-9f) == 2 &&
              ds3_f32_to_e4m3(1.0625f) == 0x38 && ds3_f32_to_e4m3(1.1875f) == 0x3A,
          "e4m3 saturation and ties to even");
    bad = 0;
    for (int i = 0; i < 20000; i++) {
        float f = frand() * 500.0f * (float)pow(2.0, -(double)(rnd() % 16));
        float got = ds3_e4m3_to_f32(ds3_f32_to_e4m3(f));
        float best = INFINITY;
        for (int c = 0; c < 256; c++)
            if ((c & 0x7F) != 0x7F) {
                float d = fabsf(ds3_e4m3_to_f32((uint8_t)c) - f);
                if (d < best) best = d;
            }
        if (fabsf(got - f) != best) bad++;
    }
    CHECK(bad == 0, "f32 -> e4m3 not nearest on %d of 20000 values", bad);
}

/* ---- weight matrices -------------------------------------------------------------------------- */

typedef struct {
    ds3_mat m;
    void *data;
    float *scale;
} tmat;

/* special != 0 puts edge-case scales into the FP8 blocks: huge (where scale * 2^120 or
 * scale * 2^24 would overflow), tiny (products land in f32 subnormals), negative, zero. */
static tmat make_mat(ds3_dtype dt, int64_t rows, int64_t cols, int special) {
    tmat t;
    memset(&t, 0, sizeof t);
    size_t n = (size_t)(rows * cols);
    t.data = malloc(n * ds3_dtype_size(dt) + 1);
    for (size_t i = 0; i < n; i++) {
        float f = frand();
        switch (dt) {
        case DS3_DT_F32: ((float *)t.data)[i] = f; break;
        case DS3_DT_BF16: ((uint16_t *)t.data)[i] = ds3_f32_to_bf16(f); break;
        case DS3_DT_F16: ((uint16_t *)t.data)[i] = ds3_f32_to_f16(f); break;
        default: {
            uint8_t q = (uint8_t)rnd();
            if ((q & 0x7F) == 0x7F) q ^= 1; /* no NaN codes */
            ((uint8_t *)t.data)[i] = q;
        }
        }
    }
    if (dt == DS3_DT_F8E4M3) {
        int64_t nbr = (rows + 127) / 128, nbc = (cols + 127) / 128;
        t.scale = malloc((size_t)(nbr * nbc) * sizeof(float));
        /* 300, 1e5: past the old per-weight 2^120 limit; 3e32: past the per-block 2^104 limit */
        static const float specials[] = {300.0f, 1e-38f, -0.004f, 0.0f, 1e5f, 2.5e-30f, 3e32f};
        for (int64_t i = 0; i < nbr * nbc; i++)
            t.scale[i] = special ? specials[i % 7] : (0.5f + 0.5f * frand()) * 0.002f;
    }
    t.m.dtype = dt;
    t.m.rows = rows;
    t.m.cols = cols;
    t.m.data = t.data;
    t.m.scale = t.scale;
    return t;
}

static void free_mat(tmat *t) {
    free(t->data);
    free(t->scale);
}

static double wval(const ds3_mat *w, int64_t r, int64_t c) {
    float f;
    ds3_kernels_ref.dequant_row(w, r, c, c + 1, &f);
    return f;
}

/* ---- matmul against ref -------------------------------------------------------------------- */

#define PAD_X 7
#define PAD_Y 5
#define SENT -12345.0f

static int n_mm_checks;

static void check_matmul(const ds3_kernels *k, const tmat *t, int64_t r0, int64_t r1, int T) {
    const ds3_mat *w = &t->m;
    int64_t K = w->cols, n = r1 - r0;
    size_t ldx = (size_t)K + PAD_X, ldy = (size_t)n + PAD_Y;
    float *x = malloc(sizeof(float) * ldx * (size_t)T);
    float *y = malloc(sizeof(float) * ldy * (size_t)T), *yr = malloc(sizeof(float) * ldy * (size_t)T);
    for (int tt = 0; tt < T; tt++)
        for (size_t c = 0; c < ldx; c++) x[(size_t)tt * ldx + c] = (int64_t)c < K ? frand() : NAN;
    for (size_t i = 0; i < ldy * (size_t)T; i++) y[i] = yr[i] = SENT;
    ds3_kernels_ref.matmul(w, r0, r1, x, ldx, T, yr, ldy);
    k->matmul(w, r0, r1, x, ldx, T, y, ldy);

    /* tolerance from the magnitude of the terms; dequantized rows once per row */
    double *wr = malloc(sizeof(double) * (size_t)K);
    int bad = 0, padbad = 0;
    double worst = 0;
    for (int64_t r = r0; r < r1; r++) {
        for (int64_t c = 0; c < K; c++) wr[c] = wval(w, r, c);
        for (int tt = 0; tt < T; tt++) {
            double mag = 0;
            for (int64_t c = 0; c < K; c++) mag += fabs(x[(size_t)tt * ldx + c] * wr[c]);
            double a = y[(size_t)tt * ldy + (r - r0)], b = yr[(size_t)tt * ldy + (r - r0)];
            double d = fabs(a - b), tol = 1e-5 * mag + 1e-6;
            if (!(d <= tol)) bad++;
            if (d / tol > worst) worst = d / tol;
        }
    }
    for (int tt = 0; tt < T; tt++)
        for (size_t i = (size_t)n; i < ldy; i++) padbad += y[(size_t)tt * ldy + i] != SENT;
    CHECK(bad == 0 && padbad == 0,
          "%s matmul %s %lldx%lld rows [%lld,%lld) T=%d: %d outside tolerance (worst %.3g x tol), "
          "%d writes past a row",
          k->name, ds3_dtype_name(w->dtype), (long long)w->rows, (long long)K, (long long)r0, (long long)r1, T,
          bad, worst, padbad);
    n_mm_checks++;

    /* determinism: split rows at an arbitrary point, and tokens one at a time */
    if (n >= 2) {
        int64_t m = r0 + 1 + (int64_t)(rnd() % (uint64_t)(n - 1));
        float *y2 = malloc(sizeof(float) * ldy * (size_t)T);
        k->matmul(w, r0, m, x, ldx, T, y2, ldy);
        k->matmul(w, m, r1, x, ldx, T, y2 + (m - r0), ldy);
        int diff = 0;
        for (int tt = 0; tt < T; tt++)
            for (int64_t i = 0; i < n; i++)
                diff += f_bits(y2[(size_t)tt * ldy + i]) != f_bits(y[(size_t)tt * ldy + i]);
        CHECK(diff == 0, "%s matmul %s: split at row %lld changes %d outputs", k->name, ds3_dtype_name(w->dtype),
              (long long)m, diff);
        free(y2);
    }
    if (T > 1) {
        float *y1 = malloc(sizeof(float) * (size_t)n);
        int diff = 0;
        for (int tt = 0; tt < T; tt++) {
            k->matmul(w, r0, r1, x + (size_t)tt * ldx, ldx, 1, y1, ldy);
            for (int64_t i = 0; i < n; i++) diff += f_bits(y1[i]) != f_bits(y[(size_t)tt * ldy + i]);
        }
        CHECK(diff == 0, "%s matmul %s T=%d: %d outputs differ from one-token calls", k->name,
              ds3_dtype_name(w->dtype), T, diff);
        free(y1);
    }
    free(wr);
    free(x);
    free(y);
    free(yr);
}

static void test_matmul(const ds3_kernels *k) {
    static const int64_t shapes[][2] = {{1, 1},   {3, 5},    {7, 16},   {17, 33},  {4, 128},
                                        {130, 200}, {257, 300}, {21, 1041}, {9, 2100}, {36, 129}};
    static const int Ts[] = {1, 2, 3, 4, 5, 6, 7, 13, 17, 25, 64, 70};
    for (int dt = 0; dt < 4; dt++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t R = shapes[s][0], C = shapes[s][1];
            tmat t = make_mat((ds3_dtype)dt, R, C, 0);
            for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
                int T = Ts[ti];
                if (R * C * T > 3000000) continue;
                check_matmul(k, &t, 0, R, T);
                if (R >= 9) check_matmul(k, &t, 5, R - 3, T);  /* a range starting mid-block */
                if (R > 200) check_matmul(k, &t, 127, 255, T); /* spanning an FP8 row block */
            }
            free_mat(&t);
        }
    /* FP8 with edge-case scales */
    tmat t = make_mat(DS3_DT_F8E4M3, 260, 390, 1);
    static const int Tsp[] = {1, 4, 7, 13, 30};
    for (size_t i = 0; i < sizeof Tsp / sizeof Tsp[0]; i++) check_matmul(k, &t, 3, 260, Tsp[i]);
    free_mat(&t);
}

/* ---- dequant_row, dot, axpy ------------------------------------------------------------------- */

static void test_dequant(const ds3_kernels *k) {
    for (int dt = 0; dt < 4; dt++)
        for (int special = 0; special < 2; special++) {
            if (special && dt != DS3_DT_F8E4M3) continue;
            tmat t = make_mat((ds3_dtype)dt, 300, 333, special);
            static const int64_t spans[][2] = {{0, 333}, {0, 1}, {5, 6}, {3, 130}, {127, 129}, {100, 333}, {17, 33}};
            int bad = 0, over = 0;
            float a[400], b[400];
            for (int64_t r = 0; r < 300; r += 37)
                for (size_t s = 0; s < sizeof spans / sizeof spans[0]; s++) {
                    int64_t c0 = spans[s][0], c1 = spans[s][1];
                    for (int i = 0; i < 400; i++) a[i] = b[i] = SENT;
                    ds3_kernels_ref.dequant_row(&t.m, r, c0, c1, a);
                    k->dequant_row(&t.m, r, c0, c1, b);
                    for (int64_t i = 0; i < c1 - c0; i++) bad += f_bits(a[i]) != f_bits(b[i]);
                    for (int64_t i = c1 - c0; i < 400; i++) over += b[i] != SENT;
                }
            CHECK(bad == 0 && over == 0, "%s dequant_row %s%s: %d values differ from ref, %d written past c1",
                  k->name, ds3_dtype_name((ds3_dtype)dt), special ? " (edge scales)" : "", bad, over);
            free_mat(&t);
        }
    /* every FP8 code (but NaN) through the SIMD conversion, with a scale of one */
    uint8_t q[256];
    float one = 1.0f, a[256], b[256];
    for (int i = 0; i < 256; i++) q[i] = (uint8_t)i;
    ds3_mat m = {DS3_DT_F8E4M3, 1, 256, q, &one};
    float s2[2] = {1.0f, 1.0f};
    m.scale = s2;
    ds3_kernels_ref.dequant_row(&m, 0, 0, 256, a);
    k->dequant_row(&m, 0, 0, 256, b);
    int bad = 0;
    for (int i = 0; i < 256; i++)
        if ((i & 0x7F) != 0x7F) bad += f_bits(a[i]) != f_bits(b[i]);
    CHECK(bad == 0, "%s: %d FP8 codes convert differently from the table", k->name, bad);
}

static void test_vec(const ds3_kernels *k) {
    static const int ns[] = {0, 1, 7, 15, 16, 17, 31, 63, 64, 65, 100, 1000, 4099};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        int n = ns[i];
        float *a = malloc(sizeof(float) * (size_t)(n + 1)), *b = malloc(sizeof(float) * (size_t)(n + 1));
        float *y1 = malloc(sizeof(float) * (size_t)(n + 1)), *y2 = malloc(sizeof(float) * (size_t)(n + 1));
        double mag = 0;
        for (int j = 0; j < n; j++) {
            a[j] = frand();
            b[j] = frand();
            y1[j] = y2[j] = frand();
            mag += fabs((double)a[j] * b[j]);
        }
        a[n] = b[n] = NAN; /* must not be read */
        y1[n] = y2[n] = SENT;
        float d1 = ds3_kernels_ref.dot(n, a, b), d2 = k->dot(n, a, b);
        CHECK(fabs((double)d1 - d2) <= 1e-5 * mag + 1e-6, "%s dot n=%d: %g vs ref %g", k->name, n, d2, d1);
        ds3_kernels_ref.axpy(n, 0.75f, a, y1);
        k->axpy(n, 0.75f, a, y2);
        double md = 0;
        for (int j = 0; j < n; j++) {
            double d = fabs((double)y1[j] - y2[j]);
            if (!(d <= md)) md = d;
        }
        CHECK(md <= 1e-6 && y2[n] == SENT, "%s axpy n=%d: max diff %g, tail %s", k->name, n, md,
              y2[n] == SENT ? "intact" : "overwritten");
        free(a);
        free(b);
        free(y1);
        free(y2);
    }
}

/* ---- vecmat ---------------------------------------------------------------------------------- */

/* y_j = x_j W[r0:r1, c0:c1] against a double-precision sum, bit-identical to the generic path
 * (dequant_row + this set's axpy: the same r-ordered chain), independent of nj and of where the
 * columns are split, and nothing written outside the block. Run with ds3_kern == k. */
static void check_vecmat(const ds3_kernels *k, const tmat *t, int64_t r0, int64_t r1, int64_t c0, int64_t c1, int nj) {
    const ds3_mat *w = &t->m;
    const int64_t nr = r1 - r0, nc = c1 - c0;
    const size_t ldx = (size_t)nr + PAD_X, ldy = (size_t)nc + PAD_Y;
    float *x = malloc(sizeof(float) * ldx * (size_t)nj + 4);
    float *y = malloc(sizeof(float) * ldy * (size_t)nj + 4), *yg = malloc(sizeof(float) * ldy * (size_t)nj + 4);
    for (int j = 0; j < nj; j++)
        for (size_t r = 0; r < ldx; r++) x[(size_t)j * ldx + r] = (int64_t)r < nr ? frand() : NAN;
    for (size_t i = 0; i < ldy * (size_t)nj; i++) y[i] = yg[i] = SENT;
    if (k->vecmat) k->vecmat(w, r0, r1, c0, c1, x, ldx, nj, y, ldy);
    else ds3_vecmat_generic(w, r0, r1, c0, c1, x, ldx, nj, y, ldy);
    ds3_vecmat_generic(w, r0, r1, c0, c1, x, ldx, nj, yg, ldy);
    int bad = 0, diff = 0, pad = 0;
    /* the AVX-512 FP8 bf16 route has its own order (16-bit activations, row pairs): the f64
     * bound and the invariances below, not the generic path's bits */
    const int same_as_generic =
        !(w->dtype == DS3_DT_F8E4M3 && k == ds3_kernels_by_name("avx512") && ds3_fp8_bf16 && ds3_fp8_bf16_ok());
    for (int j = 0; j < nj; j++) {
        for (int64_t c = c0; c < c1; c++) {
            double ref = 0, mag = 0;
            for (int64_t r = r0; r < r1; r++) {
                double v = (double)x[(size_t)j * ldx + (size_t)(r - r0)] * wval(w, r, c);
                ref += v;
                mag += fabs(v);
            }
            float a = y[(size_t)j * ldy + (size_t)(c - c0)];
            if (!(fabs(a - ref) <= 1e-5 * mag + 1e-6)) bad++;
            diff += same_as_generic && f_bits(a) != f_bits(yg[(size_t)j * ldy + (size_t)(c - c0)]);
        }
        for (size_t i = (size_t)nc; i < ldy; i++) pad += y[(size_t)j * ldy + i] != SENT;
    }
    CHECK(bad == 0 && diff == 0 && pad == 0,
          "%s vecmat %s rows [%lld,%lld) cols [%lld,%lld) nj=%d: %d off the f64 sum, %d differ from the generic "
          "path, %d writes outside",
          k->name, ds3_dtype_name(w->dtype), (long long)r0, (long long)r1, (long long)c0, (long long)c1, nj, bad, diff, pad);
    if (nj > 1) { /* the last vector alone, and the columns split at a multiple of 16 */
        float *y1 = malloc(sizeof(float) * ldy + 4);
        ds3_vecmat(w, r0, r1, c0, c1, x + (size_t)(nj - 1) * ldx, ldx, 1, y1, ldy);
        int d1 = 0;
        for (int64_t c = 0; c < nc; c++) d1 += f_bits(y1[c]) != f_bits(y[(size_t)(nj - 1) * ldy + (size_t)c]);
        int64_t cm = c0 + ((nc / 2) & ~(int64_t)15);
        int d2 = 0;
        if (cm > c0) {
            ds3_vecmat(w, r0, r1, c0, cm, x, ldx, nj, yg, ldy);
            ds3_vecmat(w, r0, r1, cm, c1, x, ldx, nj, yg + (cm - c0), ldy);
            for (int j = 0; j < nj; j++)
                for (int64_t c = 0; c < nc; c++) d2 += f_bits(yg[(size_t)j * ldy + (size_t)c]) != f_bits(y[(size_t)j * ldy + (size_t)c]);
        }
        CHECK(d1 == 0 && d2 == 0, "%s vecmat %s: %d outputs change when computed alone, %d when columns are split",
              k->name, ds3_dtype_name(w->dtype), d1, d2);
        free(y1);
    }
    free(x);
    free(y);
    free(yg);
}

/* silu_mul against ref (which uses libm's expf): within 1e-6 relative, the same NaN/inf
 * results on the edges, every length 1..67 (tails), in place (a == g) as the MoE calls it. */
static void test_silu(const ds3_kernels *k) {
    if (!k->silu_mul) return;
    enum { N = 4099 };
    static float g[N], u[N], a[N], r[N], gi[N];
    static const float edge[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 20.0f, -20.0f, 88.0f, -88.0f, 89.5f, -89.5f,
                                 104.0f, -104.0f, 1e30f, -1e30f, INFINITY, -INFINITY, NAN, 3.4e38f, -3.4e38f};
    const int ne = (int)(sizeof edge / sizeof edge[0]);
    for (int i = 0; i < N; i++) {
        g[i] = i < ne ? edge[i] : (frand() * 24.0f);
        u[i] = i < ne ? 1.0f : frand() * 2.0f;
    }
    ds3_kernels_ref.silu_mul(N, g, u, r);
    int bad = 0;
    for (int len = 1; len <= 67; len++) {
        for (int i = 0; i < N; i++) a[i] = SENT;
        k->silu_mul((size_t)len, g, u, a);
        for (int i = 0; i < len; i++) {
            const int same = isnan(r[i]) ? isnan(a[i]) : isinf(r[i]) ? a[i] == r[i] : fabsf(a[i] - r[i]) <= 1e-6f * fabsf(r[i]) + 1e-37f;
            bad += !same;
        }
        for (int i = len; i < len + 16 && i < N; i++) bad += a[i] != SENT;
    }
    memcpy(gi, g, sizeof g);
    k->silu_mul(N, gi, u, gi);
    for (int i = 0; i < N; i++) {
        const int same = isnan(r[i]) ? isnan(gi[i]) : isinf(r[i]) ? gi[i] == r[i] : fabsf(gi[i] - r[i]) <= 1e-6f * fabsf(r[i]) + 1e-37f;
        bad += !same;
    }
    CHECK(bad == 0, "%s silu_mul: %d values off ref (1e-6 relative), NaN/inf mismatches or writes past n", k->name, bad);
}

/* softmax against ref: each probability within 2e-6 relative (+1e-30), lengths 1..70 and 513
 * (tails), scores spread wide enough that some probabilities underflow. */
static void test_softmax(const ds3_kernels *k) {
    if (!k->softmax) return;
    static float a[600], b[600], c[600];
    int bad = 0;
    for (int n = 1; n <= 513; n = n < 70 ? n + 1 : 513) {
        for (int rep = 0; rep < 3; rep++) {
            const float spread = rep == 0 ? 1.0f : rep == 1 ? 30.0f : 300.0f;
            for (int i = 0; i < n; i++) a[i] = b[i] = frand() * spread;
            for (int i = n; i < n + 16; i++) b[i] = SENT;
            float ma[2] = {NAN, NAN}, mb[2] = {NAN, NAN}, mx = -INFINITY;
            for (int i = 0; i < n; i++) {
                c[i] = a[i];
                mx = fmaxf(mx, a[i] * 0.125f);
            }
            ds3_kernels_ref.softmax(a, n, 0.125f, ma);
            k->softmax(b, n, 0.125f, mb);
            k->softmax(c, n, 0.125f, NULL); /* the same probabilities without ms */
            for (int i = 0; i < n; i++) bad += !(fabsf(a[i] - b[i]) <= 2e-6f * fabsf(a[i]) + 1e-30f) || b[i] != c[i];
            for (int i = n; i < n + 16; i++) bad += b[i] != SENT;
            /* ms: the maximum exactly; the sum (>= 1, the maximum's own term) within 2e-6 of ref's */
            bad += ma[0] != mx || mb[0] != mx;
            bad += mb[0] != ma[0] || !(fabsf(mb[1] - ma[1]) <= 2e-6f * ma[1]) || !(ma[1] >= 1.0f);
        }
        if (n == 513) break;
    }
    CHECK(bad == 0, "%s softmax: %d probabilities off ref (2e-6 relative), writes past n, or (max, sum) off", k->name, bad);
}

static void test_vecmat(const ds3_kernels *k) {
    for (int dt = 0; dt < 4; dt++)
        for (int special = 0; special < 2; special++) {
            if (special && dt != DS3_DT_F8E4M3) continue;
            tmat t = make_mat((ds3_dtype)dt, 300, 290, special);
            static const int64_t box[][4] = {{0, 64, 0, 256}, {0, 1, 0, 1}, {3, 200, 16, 290}, {127, 260, 128, 200},
                                            {5, 40, 0, 17}, {0, 300, 0, 290}, {10, 11, 64, 65}};
            static const int njs[] = {1, 2, 5, 6, 7, 13};
            for (size_t b = 0; b < sizeof box / sizeof box[0]; b++)
                for (size_t i = 0; i < sizeof njs / sizeof njs[0]; i++)
                    check_vecmat(k, &t, box[b][0], box[b][1], box[b][2], box[b][3], njs[i]);
            check_vecmat(k, &t, 2, 77, 3, 250, 3); /* unaligned column start (FP8: the generic fallback) */
            free_mat(&t);
        }
}

/* Shared one-token calls (kernels.h ds3_share): however the blocks are split between an owner
 * and helpers, every output has the bits of the unshared call. A helper that runs first takes
 * every block (the rows of the four streams) and leaves the rows past them to the owner; run
 * side by side on two threads, any split gives the same result. */
typedef struct {
    const ds3_mat *w;
    int64_t r0, r1;
    const float *x;
    float *y;
    ds3_share *sh;
} share_arg;
static void *share_helper(void *p) {
    share_arg *a = p;
    ds3_matmul_shared(a->w, a->r0, a->r1, a->x, a->y, a->sh, 1);
    return NULL;
}
static void share_case(ds3_dtype dt, int64_t R, int64_t K, int64_t r0, const char *route) {
    const int64_t r1 = R;
    tmat t = make_mat(dt, R, K, 0);
    float *x = malloc(sizeof(float) * (size_t)K), *y0 = malloc(sizeof(float) * (size_t)R), *y = malloc(sizeof(float) * (size_t)R);
    for (int64_t i = 0; i < K; i++) x[i] = frand();
    ds3_kern->matmul(&t.m, r0, r1, x, (size_t)K, 1, y0, (size_t)R);
    const int nb = ds3_share_blocks(&t.m, r0, r1, 1);
    const int64_t h = (r1 - r0) / 4;
    CHECK(nb == (int)((h + DS3_SHARE_ROWS - 1) / DS3_SHARE_ROWS), "share %s%s: %lld rows give %d blocks", ds3_dtype_name(dt),
          route, (long long)(r1 - r0), nb);
    ds3_share sh;
    /* helper first: all blocks, none of the rows past the streams */
    for (int64_t i = 0; i < R; i++) y[i] = NAN;
    atomic_init(&sh.taken, 0);
    atomic_init(&sh.back, 0);
    sh.nb = nb;
    ds3_matmul_shared(&t.m, r0, r1, x, y, &sh, 1);
    int bad = 0, rest = 0;
    for (int64_t i = 0; i < r1 - r0; i++) {
        if (i < 4 * h) bad += f_bits(y[i]) != f_bits(y0[i]);
        else rest += y[i] == y[i];
    }
    CHECK(bad == 0 && rest == 0 && atomic_load(&sh.back) == nb,
          "share %s%s %lld rows, helper alone: %d stream rows differ, %d rows past the streams written", ds3_dtype_name(dt),
          route, (long long)(r1 - r0), bad, rest);
    ds3_matmul_shared(&t.m, r0, r1, x, y, &sh, 0);
    bad = 0;
    for (int64_t i = 0; i < r1 - r0; i++) bad += f_bits(y[i]) != f_bits(y0[i]);
    CHECK(bad == 0, "share %s%s %lld rows, owner after the helper: %d rows differ", ds3_dtype_name(dt), route,
          (long long)(r1 - r0), bad);
    /* owner and helper on two threads, a few times */
    int bad2 = 0, helped = 0;
    for (int rep = 0; rep < 20; rep++) {
        for (int64_t i = 0; i < R; i++) y[i] = NAN;
        atomic_init(&sh.taken, 0);
        atomic_init(&sh.back, 0);
        share_arg a = {&t.m, r0, r1, x, y, &sh};
        pthread_t th;
        if (pthread_create(&th, NULL, share_helper, &a) != 0) break;
        ds3_matmul_shared(&t.m, r0, r1, x, y, &sh, 0);
        pthread_join(th, NULL);
        helped += atomic_load(&sh.back) > 0;
        for (int64_t i = 0; i < r1 - r0; i++) bad2 += f_bits(y[i]) != f_bits(y0[i]);
    }
    CHECK(bad2 == 0, "share %s%s %lld rows, owner and helper together: %d outputs differ (helper took blocks in %d of 20)",
          ds3_dtype_name(dt), route, (long long)(r1 - r0), bad2, helped);
    free(x);
    free(y0);
    free(y);
    free_mat(&t);
}

static void test_share(void) {
    static const ds3_dtype dts[] = {DS3_DT_F8E4M3, DS3_DT_BF16, DS3_DT_F16, DS3_DT_F32};
    for (int route = ds3_fp8_bf16_ok() ? 0 : 1; route < 2; route++) { /* FP8: the bf16 route (where the CPU has it), then f32 */
        ds3_fp8_bf16 = !route;
        for (int d = 0; d < (route ? 1 : 4); d++) {
            const char *rn = route ? " (f32 route)" : "";
            share_case(dts[d], 64, 1024, 0, rn);
            share_case(dts[d], 102, 300, 0, rn); /* two rows past the streams */
            share_case(dts[d], 448, 448, 0, rn);
            share_case(dts[d], 1027, 1024, 2, rn); /* rows 2..1026: scale blocks by absolute row, one row past */
        }
    }
    ds3_fp8_bf16 = 1; /* the default */
    /* calls that cannot be shared run whole */
    tmat t = make_mat(DS3_DT_F8E4M3, 256, 256, 0);
    CHECK(ds3_share_blocks(&t.m, 0, 63, 1) == 0 && ds3_share_blocks(&t.m, 0, 256, 2) == 0,
          "share: under 64 rows or two tokens give no blocks");
    ds3_kernels_set("ref");
    CHECK(ds3_share_blocks(&t.m, 0, 256, 1) == 0, "share: the ref set gives no blocks");
    ds3_kernels_set("avx512");
    free_mat(&t);
}

int main(void) {
    TEST_BEGIN("test_kernels");
    ds3_kernels_init();
    test_conversions();
    CHECK(ds3_kernels_by_name("ref") == &ds3_kernels_ref, "ref set is always available");
    test_vec(&ds3_kernels_ref);
    CHECK(ds3_kernels_set("ref") == 0, "ds3_kernels_set(ref)");
    test_vecmat(&ds3_kernels_ref);
    static const char *sets[] = {"avx2", "avx512"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        const ds3_kernels *k = ds3_kernels_by_name(sets[i]);
        if (!k) {
            printf("# skip %s: not available on this CPU/build\n", sets[i]);
            continue;
        }
        CHECK(ds3_kernels_set(sets[i]) == 0 && ds3_kern == k, "ds3_kernels_set(%s)", sets[i]);
        n_mm_checks = 0;
        test_matmul(k);
        test_dequant(k);
        test_vec(k);
        test_vecmat(k);
        test_silu(k);
        test_softmax(k);
        printf("# %s: %d matmul cases against ref\n", sets[i], n_mm_checks);
    }
    /* The AVX-512 FP8 matmul's other route: exact f32 dequantization, for CPUs without
     * AVX512_BF16 (ds3_fp8_bf16 = 0). Where the bf16 route exists, check that it is the one
     * taken by default: its 16-bit activations round differently, so some outputs differ. */
    if (ds3_kernels_set("avx512") == 0 && ds3_fp8_bf16_ok()) {
        tmat t = make_mat(DS3_DT_F8E4M3, 64, 300, 0);
        float x[300], ya[64], yb[64];
        for (int i = 0; i < 300; i++) x[i] = frand();
        ds3_kern->matmul(&t.m, 0, 64, x, 300, 1, ya, 64);
        ds3_fp8_bf16 = 0;
        ds3_kern->matmul(&t.m, 0, 64, x, 300, 1, yb, 64);
        int diff = 0;
        for (int i = 0; i < 64; i++) diff += f_bits(ya[i]) != f_bits(yb[i]);
        CHECK(diff > 0, "avx512 FP8: the bf16 and f32 routes gave identical bits on all 64 rows (bf16 route not taken?)");
        free_mat(&t);
        n_mm_checks = 0;
        test_matmul(ds3_kern);
        test_vecmat(ds3_kern);
        printf("# avx512 FP8 f32 route: %d matmul cases against ref\n", n_mm_checks);
        ds3_fp8_bf16 = 1;
    } else {
        printf("# skip the avx512 FP8 route comparison: no AVX512_BF16/VBMI here\n");
    }
    if (ds3_kernels_set("avx512") == 0) test_share();
    else printf("# skip shared calls: no AVX-512 here\n");
    /* the bandwidth probe runs and returns something sane on small arrays */
    double bw = ds3_membw_measure_ex(2, 0.0, (size_t)1 << 20);
    CHECK(bw > 0.01 && bw < 1e5, "ds3_membw_measure_ex: %g GB/s", bw);
    /* the kernel probe: a rate for every thread, the slowest returned; a matrix with no rows
     * (nothing to time) is refused */
    {
        tmat t = make_mat(DS3_DT_F8E4M3, 300, 1024, 0);
        double g[3] = {-1, -1, -1};
        const double lo = ds3_kernel_probe(3, &t.m, 0.0, g);
        CHECK(g[0] > 0 && g[1] > 0 && g[2] > 0 && g[0] < 1e4, "ds3_kernel_probe rates %g %g %g", g[0], g[1], g[2]);
        CHECK(lo == fmin(g[0], fmin(g[1], g[2])), "ds3_kernel_probe returned %g, not the slowest thread", lo);
        ds3_mat none = t.m;
        none.rows = 0;
        CHECK(ds3_kernel_probe(1, &none, 0.0, g) < 0, "ds3_kernel_probe on an empty matrix");
        free_mat(&t);
    }
    return TEST_REPORT();
}
