/* bench_kernels.c -- micro-benchmark of the matmul kernels against the machine's memory bandwidth.
 * Owned by the kernels engineer; numbers are recorded in docs/kernels.md.
 *
 * Build and run (after `make`):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/bench_kernels.c build/libds3.a -lpthread -lm \
 *      -o build/bench_kernels && build/bench_kernels [threads [set [all|decode|small|passes|prefill [triad GB/s]]]]
 * decode: one large matrix, T=1 (SHORT=1: 448-column rows); small: 512 expert-sized matrices, one
 * parallel pass per matrix and 18 per pass (the MoE decode pattern). Both report GB/s of weight
 * bytes streamed and the fraction of the triad bandwidth; prefill (T=64, 512) reports GFLOP/s.
 * passes: the one-token pass sequence of the 1.2B bench model (bench/run.sh's v3-1b-*) through
 * ds3_mm, back to back, FP8 and BF16: GB/s per kind of pass (docs/kernels.md, session 8). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/membw.h"
#include "nn/nn.h"
#include "util/common.h"
#include "util/pool.h"

typedef struct {
    const ds3_mat *w;
    const float *x;
    float *y;
    int T;
} mm_job;

static void mm_fn(void *arg, int ith, int nth) {
    mm_job *j = arg;
    long lo, hi;
    ds3_split((long)j->w->rows, ith, nth, 16, &lo, &hi);
    if (hi > lo) ds3_kern->matmul(j->w, lo, hi, j->x, (size_t)j->w->cols, j->T, j->y + lo, (size_t)j->w->rows);
}


typedef struct {
    const ds3_mat *ms;
    int n;
    const float *x;
    float *y;
    atomic_int next;
} many_job;

/* like ds3_mm: whole matrices claimed in turn, the next one likely i + nth (prefetch hint) */
static void many_fn(void *arg, int ith, int nth) {
    many_job *j = arg;
    for (int i; (i = atomic_fetch_add(&j->next, 1)) < j->n;) {
        ds3_matmul_prefetch_next(i + nth < j->n ? &j->ms[i + nth] : NULL, 0);
        ds3_kern->matmul(&j->ms[i], 0, j->ms[i].rows, j->x, (size_t)j->ms[i].cols, 1, j->y + (size_t)ith * 1024, 1024);
    }
    ds3_matmul_prefetch_next(NULL, 0);
}

/* A matrix of random finite values: in its own buffer, or (arena) carved from *arena onward. */
static ds3_mat make_in(ds3_dtype dt, int64_t rows, int64_t cols, uint8_t **arena) {
    ds3_mat m = {dt, rows, cols, NULL, NULL};
    size_t n = (size_t)(rows * cols), bytes = n * ds3_dtype_size(dt);
    uint8_t *d = arena ? *arena : ds3_alloc_aligned(bytes);
    if (arena) *arena += (bytes + 4095) & ~(size_t)4095;
    uint32_t s = 12345;
    for (size_t i = 0; i < bytes; i++) {
        s = s * 1664525u + 1013904223u;
        d[i] = (uint8_t)(s >> 24);
    }
    if (dt == DS3_DT_F8E4M3) {
        for (size_t i = 0; i < n; i++)
            if ((d[i] & 0x7F) == 0x7F) d[i] ^= 1;
        size_t ns = (size_t)(((rows + 127) / 128) * ((cols + 127) / 128));
        float *sc = ds3_alloc_aligned(ns * sizeof(float));
        for (size_t i = 0; i < ns; i++) sc[i] = 0.001f;
        m.scale = sc;
    } else if (dt == DS3_DT_BF16 || dt == DS3_DT_F16) {
        uint16_t *h = (uint16_t *)d; /* keep values finite and modest */
        for (size_t i = 0; i < n; i++) h[i] = (uint16_t)(h[i] & (dt == DS3_DT_BF16 ? 0xBFFF : 0xBBFF));
    } else {
        float *f = (float *)d;
        for (size_t i = 0; i < n; i++) f[i] = (float)(i % 7) * 0.1f;
    }
    m.data = d;
    return m;
}
static ds3_mat make(ds3_dtype dt, int64_t rows, int64_t cols) { return make_in(dt, rows, cols, NULL); }

/* The 1.2B bench model's one-token passes (hidden 1024, 16 heads, q_lora 384, kv_lora 256 + 32,
 * 12 MoE layers of 8 routed + 1 shared experts of width 448, 32K vocabulary): per layer
 * q_a+kv_a, q_b, o, the router (BF16), gate/up of 9 experts + shared (one pass), their downs; then
 * the BF16 head. The weights sit in one huge-page buffer, as `--no-mmap` loads them; each pass
 * runs as the model runs it (ds3_mm), without the attention and serial work between. */
enum { PL = 12, PK = 7 };
static void passes(ds3_pool *pool, int nth, ds3_dtype dt, double bw) {
    const size_t es = ds3_dtype_size(dt), per_layer = (672 * 1024 + 1536 * 384 + 1024 * 1024 + 30 * 448 * 1024) * es;
    uint8_t *arena = ds3_alloc_aligned(PL * (per_layer + 64 * 1024 * 2 + 40 * 4096) + 32768 * 1024 * 2 + 4096), *a = arena;
    static ds3_mm_job jl[PL * 6 + 1][20];
    int nj[PL * 6 + 1] = {0};
    size_t yo[PL * 6 + 1] = {0}; /* each job writes its own rows of y, as in the model */
    float *x = ds3_alloc_aligned(sizeof(float) * 10 * 1024), *y = ds3_alloc_aligned(sizeof(float) * 32768);
    for (int i = 0; i < 10 * 1024; i++) x[i] = (float)(i % 13) * 0.01f;
    ds3_mat *ms = calloc(PL * 38 + 1, sizeof *ms), *m = ms;
#define JOB(pass, mat, xp, ldx)                                                                                \
    (*m = (mat), jl[pass][nj[pass]++] = (ds3_mm_job){m, 0, m->rows, (xp), (ldx), 1, y + yo[pass], (size_t)m->rows}, \
     yo[pass] += (size_t)m->rows, m++)
    for (int l = 0; l < PL; l++) {
        JOB(l * 6 + 0, make_in(dt, 384, 1024, &a), x, 1024);
        JOB(l * 6 + 0, make_in(dt, 288, 1024, &a), x, 1024);
        JOB(l * 6 + 1, make_in(dt, 1536, 384, &a), x, 384);
        JOB(l * 6 + 2, make_in(dt, 1024, 1024, &a), x, 1024);
        JOB(l * 6 + 3, make_in(DS3_DT_BF16, 64, 1024, &a), x, 1024);
        for (int e = 0; e < 10; e++) {
            JOB(l * 6 + 4, make_in(dt, 448, 1024, &a), x + e * 1024, 1024);
            JOB(l * 6 + 4, make_in(dt, 448, 1024, &a), x + e * 1024, 1024);
            JOB(l * 6 + 5, make_in(dt, 1024, 448, &a), x + e * 448, 448);
        }
    }
    JOB(PL * 6, make_in(DS3_DT_BF16, 32768, 1024, &a), x, 1024);
#undef JOB
    ds3_ctx ctx = {.pool = pool, .nth = nth, .chunk_cap = 4096};
    ctx.chunks = calloc(4096, sizeof *ctx.chunks);
    ctx.chunk_start = calloc(4097, sizeof *ctx.chunk_start);
    ctx.chunk_next = calloc(4096, sizeof *ctx.chunk_next);
    ctx.shares = calloc(4096, sizeof *ctx.shares);
    ctx.busy = calloc((size_t)nth, sizeof *ctx.busy);
    static const char *names[PK] = {"q_a+kv_a", "q_b", "o", "router", "gate/up", "down", "head"};
    double t[PK] = {0}, bytes[PK] = {0};
    const int ntok = 100;
    for (int tok = -2; tok < ntok; tok++)
        for (int p = 0; p <= PL * 6; p++) {
            const int k = p == PL * 6 ? 6 : p % 6;
            const double t0 = ds3_time_s();
            ds3_mm(&ctx, jl[p], nj[p]);
            if (tok < 0) continue; /* warm-up tokens */
            t[k] += ds3_time_s() - t0;
            for (int j = 0; j < nj[p]; j++) bytes[k] += (double)jl[p][j].w->rows * (double)ds3_row_bytes(jl[p][j].w->dtype, jl[p][j].w->cols);
        }
    double tt = 0, bt = 0;
    for (int k = 0; k < PK; k++) {
        printf("passes  %-7s %-8s %8.2f us/pass  %6.1f GB/s\n", ds3_dtype_name(dt), names[k], t[k] * 1e6 / ntok / (k == 6 ? 1 : PL),
               bytes[k] / t[k] / 1e9);
        tt += t[k];
        bt += bytes[k];
    }
    printf("passes  %-7s all: %.1f MB a token, %.1f GB/s (%.0f%% of triad), %.1f tok/s from the passes alone\n",
           ds3_dtype_name(dt), bt / ntok / 1e6, bt / tt / 1e9, 100.0 * bt / tt / 1e9 / bw, ntok / tt);
    for (int i = 0; i < PL * 38 + 1; i++) free((void *)ms[i].scale);
    free(ms);
    free(ctx.chunks);
    free(ctx.chunk_start);
    free(ctx.chunk_next);
    free(ctx.shares);
    free((void *)ctx.busy);
    free(arena);
    free(x);
    free(y);
}

static double run(ds3_pool *pool, const ds3_mat *w, int T, double min_s, int *reps_out) {
    float *x = ds3_alloc_aligned(sizeof(float) * (size_t)w->cols * (size_t)T);
    float *y = ds3_alloc_aligned(sizeof(float) * (size_t)w->rows * (size_t)T);
    for (size_t i = 0; i < (size_t)w->cols * (size_t)T; i++) x[i] = (float)(i % 13) * 0.01f;
    mm_job j = {w, x, y, T};
    ds3_pool_run(pool, mm_fn, &j);
    double best = 1e30, t_end = ds3_time_s() + min_s;
    int reps = 0;
    do {
        double t0 = ds3_time_s();
        ds3_pool_run(pool, mm_fn, &j);
        double dt = ds3_time_s() - t0;
        if (dt < best) best = dt;
        reps++;
    } while (reps < 3 || ds3_time_s() < t_end);
    free(x);
    free(y);
    *reps_out = reps;
    return best;
}

int main(int argc, char **argv) {
    int nth = argc > 1 ? atoi(argv[1]) : 2;
    ds3_kernels_init();
    if (argc > 2 && ds3_kernels_set(argv[2]) != 0) {
        fprintf(stderr, "kernel set %s not available\n", argv[2]);
        return 1;
    }
    printf("kernels: %s, threads: %d\n", ds3_kern->name, nth);
    double bw = argc > 4 ? atof(argv[4]) : ds3_membw_measure(nth, 1.0);
    printf("triad (3 x 256 MB floats): %.1f GB/s\n", bw);
    const char *mode = argc > 3 ? argv[3] : "all";
    int do_small = !strcmp(mode, "all") || !strcmp(mode, "small");
    int do_dec = !strcmp(mode, "all") || !strcmp(mode, "decode"), do_pre = !strcmp(mode, "all") || !strcmp(mode, "prefill");
    ds3_pool *pool = ds3_pool_new(nth);
    if (!strcmp(mode, "all") || !strcmp(mode, "passes")) {
        passes(pool, nth, DS3_DT_F8E4M3, bw);
        passes(pool, nth, DS3_DT_BF16, bw);
    }
    static const ds3_dtype dts[] = {DS3_DT_BF16, DS3_DT_F8E4M3, DS3_DT_F16, DS3_DT_F32};
    for (int i = 0; i < 4 && do_dec; i++) {
        /* 16384 x 7168: 117 MB in FP8, 235 MB in BF16 -- well above the last-level cache */
        ds3_mat w = getenv("SHORT") ? make(dts[i], 16384 * 16, 448) : make(dts[i], 16384, 7168);
        int reps;
        double bytes = (double)w.rows * (double)w.cols * (double)ds3_dtype_size(w.dtype);
        double t = run(pool, &w, 1, 1.0, &reps);
        printf("decode  %-7s %lldx%lld T=1: %7.3f ms  %6.1f GB/s  (%.0f%% of triad)\n", ds3_dtype_name(w.dtype),
               (long long)w.rows, (long long)w.cols, t * 1e3, bytes / t / 1e9, 100.0 * bytes / t / 1e9 / bw);
        free((void *)w.data);
        free((void *)w.scale);
    }
    for (int i = 0; i < 2 && do_small; i++) {
        /* expert-sized matrices (448 x 1024 and 1024 x 448), 512 of them: the decode pattern of the
         * MoE layers, where rows are short and every matrix starts a fresh stream */
        enum { NM = 512 };
        static ds3_mat ms[NM];
        double bytes = 0;
        for (int k = 0; k < NM; k++) {
            ms[k] = make(dts[i], k % 3 == 2 ? 1024 : 448, k % 3 == 2 ? 448 : 1024);
            bytes += (double)ms[k].rows * (double)ms[k].cols * (double)ds3_dtype_size(dts[i]);
        }
        float *x = ds3_alloc_aligned(sizeof(float) * 1024), *y = ds3_alloc_aligned(sizeof(float) * 1024);
        for (int k = 0; k < 1024; k++) x[k] = (float)(k % 13) * 0.01f;
        double best = 1e30;
        for (int rep = 0; rep < 20; rep++) {
            double t0 = ds3_time_s();
            for (int k = 0; k < NM; k++) {
                mm_job j = {&ms[k], x, y, 1};
                ds3_pool_run(pool, mm_fn, &j);
            }
            double dt = ds3_time_s() - t0;
            if (dt < best) best = dt;
        }
        printf("decode  %-7s %d expert matrices (448x1024, 1024x448) T=1: %7.3f ms  %6.1f GB/s  (%.0f%% of triad)\n",
               ds3_dtype_name(dts[i]), NM, best * 1e3, bytes / best / 1e9, 100.0 * bytes / best / 1e9 / bw);
        best = 1e30;
        float *y2 = ds3_alloc_aligned(sizeof(float) * 1024 * 64);
        for (int rep = 0; rep < 20; rep++) {
            double t0 = ds3_time_s();
            for (int k = 0; k < NM; k += 18) {
                many_job mj = {ms + k, NM - k < 18 ? NM - k : 18, x, y2, 0};
                ds3_pool_run(pool, many_fn, &mj);
            }
            double dt = ds3_time_s() - t0;
            if (dt < best) best = dt;
        }
        free(y2);
        printf("decode  %-7s the same, 18 whole matrices per parallel pass:   %7.3f ms  %6.1f GB/s  (%.0f%% of triad)\n",
               ds3_dtype_name(dts[i]), best * 1e3, bytes / best / 1e9, 100.0 * bytes / best / 1e9 / bw);
        for (int k = 0; k < NM; k++) {
            free((void *)ms[k].data);
            free((void *)ms[k].scale);
        }
        free(x);
        free(y);
    }
    for (int i = 0; i < 4 && do_pre; i++) {
        ds3_mat w = make(dts[i], 4096, 4096);
        static const int Ts[] = {1, 2, 3, 4, 16, 64, 512};
        for (int k = 0; k < 6; k++) {
            int reps, T = Ts[k];
            double t = run(pool, &w, T, 0.5, &reps);
            printf("matmul  %-7s 4096x4096 T=%-3d: %8.3f ms  %7.1f GFLOP/s\n", ds3_dtype_name(w.dtype), T, t * 1e3,
                   2.0 * 4096 * 4096 * T / t / 1e9);
        }
        free((void *)w.data);
        free((void *)w.scale);
    }
    ds3_pool_free(pool);
    return 0;
}
