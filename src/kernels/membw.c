/* membw.c -- STREAM-triad memory bandwidth probe (see membw.h). Owned by the kernels engineer.
 * Reference: McCalpin's STREAM benchmark (triad kernel, best-of-N timing). The arrays come from
 * ds3_alloc_aligned, as the weights read with --no-mmap do (2 MB aligned, huge pages where the
 * kernel gives them), so the roofline compares like with like. */
#include "kernels/membw.h"

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
