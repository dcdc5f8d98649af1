/* membw.c -- machine probes for `ds3 bench` (see membw.h): the STREAM-triad memory bandwidth, and
 * each thread's one-token kernel speed from L2. Owned by the kernels engineer.
 * Reference: McCalpin's STREAM benchmark (triad kernel, best-of-N timing). The arrays come from
 * ds3_alloc_aligned, as the weights read with --no-mmap do (2 MB aligned, huge pages where the
 * kernel gives them), so the roofline compares like with like. */
#include "kernels/membw.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"
#include "util/pool.h"

typedef struct {
    float *a, *b, *c;
    size_t n;
    int init;
} triad_job;

static void triad_fn(void *arg, int ith, int nth) {
    triad_job *j = arg;
    long lo, hi;
    ds3_split((long)j->n, ith, nth, 1024, &lo, &hi);
    float *restrict a = j->a;
    const float *restrict b = j->b, *restrict c = j->c;
    if (j->init) {
        for (long i = lo; i < hi; i++) {
            a[i] = 0.0f;
            j->b[i] = 1.0f;
            j->c[i] = 2.0f;
        }
        return;
    }
    const float s = 3.0f;
    for (long i = lo; i < hi; i++) a[i] = b[i] + s * c[i];
}

double ds3_membw_measure_ex(int n_threads, double seconds, size_t bytes_per_array) {
    if (n_threads < 1) n_threads = 1;
    size_t n = bytes_per_array / sizeof(float);
    if (n < 1024) n = 1024;
    triad_job j = {0};
    j.n = n;
    void *pa = ds3_alloc_aligned(n * sizeof(float)), *pb = ds3_alloc_aligned(n * sizeof(float)),
         *pc = ds3_alloc_aligned(n * sizeof(float));
    if (!pa || !pb || !pc) {
        free(pa);
        free(pb);
        free(pc);
        return -1.0;
    }
    j.a = pa;
    j.b = pb;
    j.c = pc;
    ds3_pool *pool = ds3_pool_new(n_threads);
    if (!pool) {
        free(pa);
        free(pb);
        free(pc);
        return -1.0;
    }
    j.init = 1;
    ds3_pool_run(pool, triad_fn, &j);
    j.init = 0;
    ds3_pool_run(pool, triad_fn, &j); /* warm-up: page tables, TLB, frequency */
    double best = 1e30, t_end = ds3_time_s() + seconds;
    int reps = 0;
    do {
        double t0 = ds3_time_s();
        ds3_pool_run(pool, triad_fn, &j);
        double dt = ds3_time_s() - t0;
        if (dt < best) best = dt;
        reps++;
    } while (reps < 3 || ds3_time_s() < t_end);
    ds3_pool_free(pool);
    free(pa);
    free(pb);
    free(pc);
    return 3.0 * (double)n * sizeof(float) / best / 1e9;
}

double ds3_membw_measure(int n_threads, double seconds) {
    return ds3_membw_measure_ex(n_threads, seconds, DS3_MEMBW_DEFAULT_BYTES);
}

typedef struct {
    const ds3_mat *w;
    int64_t rows;
    double seconds, *gws;
    atomic_int failed;
} kprobe_job;

static void kprobe_fn(void *arg, int ith, int nth) {
    (void)nth;
    kprobe_job *j = arg;
    const ds3_mat *w = j->w;
    const size_t rb = ds3_row_bytes(w->dtype, w->cols), nb = (size_t)j->rows * rb;
    /* a private copy: each core streams its own lines, as each reads its own rows in decode */
    ds3_mat c = *w;
    void *d = ds3_alloc_aligned(nb);
    float *x = ds3_alloc_aligned((size_t)w->cols * sizeof(float)), *y = ds3_alloc_aligned((size_t)j->rows * sizeof(float));
    if (!d || !x || !y) {
        atomic_store(&j->failed, 1);
        free(d);
        free(x);
        free(y);
        return;
    }
    memcpy(d, w->data, nb);
    c.data = d;
    c.rows = j->rows;
    for (int64_t i = 0; i < w->cols; i++) x[i] = (float)(i % 7) * 0.25f - 0.75f;
    ds3_matmul_prefetch_next(NULL, 0); /* the caller's thread may hold a hint from its last pass */
    double best = 1e30;
    const double t_end = ds3_time_s() + j->seconds;
    int reps = 0;
    do {
        const double t0 = ds3_time_s();
        ds3_matmul(&c, 0, c.rows, x, (size_t)w->cols, 1, y, (size_t)c.rows);
        const double dt = ds3_time_s() - t0;
        if (dt < best) best = dt;
    } while (++reps < 8 || ds3_time_s() < t_end);
    j->gws[ith] = (double)c.rows * (double)w->cols / best / 1e9;
    free(d);
    free(x);
    free(y);
}

double ds3_kernel_probe(int n_threads, const ds3_mat *w, double seconds, double *gws) {
    if (n_threads < 1) n_threads = 1;
    const size_t rb = ds3_row_bytes(w->dtype, w->cols);
    int64_t rows = rb ? (int64_t)(((size_t)256 << 10) / rb) : 0;
    if (rows > w->rows) rows = w->rows;
    /* whole 128-row scale blocks keep an FP8 copy's scales where the original's are; repacked
     * GGUF layouts interleave 16 rows */
    if (rows >= 128) rows -= rows % 128;
    else if (rows >= 16) rows -= rows % 16;
    else rows = w->rows < 16 ? w->rows : 16; /* very long rows: one whole group, past 256 KB */
    if (rows < 1) return -1.0;
    kprobe_job j = {w, rows, seconds, gws, 0};
    ds3_pool *pool = ds3_pool_new(n_threads);
    if (!pool) return -1.0;
    ds3_pool_run(pool, kprobe_fn, &j);
    ds3_pool_free(pool);
    if (atomic_load(&j.failed)) return -1.0;
    double lo = gws[0];
    for (int i = 1; i < n_threads; i++) lo = gws[i] < lo ? gws[i] : lo;
    return lo;
}
