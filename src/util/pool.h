/* pool.h -- a persistent thread pool with ggml's (ith, nth) contract.
 *
 * ds3_pool_run(pool, fn, arg) calls fn(arg, ith, nth) once for every ith in [0, nth) and returns
 * when all calls have returned. The calling thread runs ith = 0. Work functions split their
 * work by ith/nth themselves, so results depend only on nth (deterministic per thread count).
 * A pool belongs to one session; ds3_pool_run must not be called concurrently or recursively. */
#ifndef DS3_POOL_H
#define DS3_POOL_H

typedef struct ds3_pool ds3_pool;
typedef void (*ds3_pool_fn)(void *arg, int ith, int nth);

ds3_pool *ds3_pool_new(int n_threads);  /* NULL on failure */
void ds3_pool_free(ds3_pool *p);
int ds3_pool_size(const ds3_pool *p);
void ds3_pool_run(ds3_pool *p, ds3_pool_fn fn, void *arg);
/* Run fn(arg, 0, 1) on the caller instead when the job is too small to be worth waking workers. */
static inline void ds3_pool_run_sized(ds3_pool *p, ds3_pool_fn fn, void *arg, double work) {
    if (work < 65536.0) fn(arg, 0, 1);
    else ds3_pool_run(p, fn, arg);
}
void ds3_pool_set_serial(ds3_pool *p, int on);

/* Split [0, n) into nth near-equal contiguous ranges, aligned to `align` items. */
static inline void ds3_split(long n, int ith, int nth, long align, long *lo, long *hi) {
    long chunks = (n + align - 1) / align;
    long per = chunks / nth, rem = chunks % nth;
    long c0 = ith * per + (ith < rem ? ith : rem);
    long c1 = c0 + per + (ith < rem ? 1 : 0);
    *lo = c0 * align < n ? c0 * align : n;
    *hi = c1 * align < n ? c1 * align : n;
}

#endif
