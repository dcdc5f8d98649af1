/* train_util.h -- helpers shared by the tests/test_train_*.c binaries: tiny configs, random
 * fills, an execution context, and a finite-difference checker for directional derivatives. */
#ifndef DS3_TEST_TRAIN_UTIL_H
#define DS3_TEST_TRAIN_UTIL_H

#include <string.h>

#include "harness.h"
#include "model/config.h"
#include "nn/nn.h"
#include "train/tmodel.h"
#include "util/common.h"

static uint64_t tu_rng = 12345;
static inline float tu_uniform(void) { return (float)((ds3_rng_next(&tu_rng) >> 40) / 16777216.0 * 2.0 - 1.0); }
static inline void tu_fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * tu_uniform();
}
/* tu_rand/tu_zeros buffers are kept on one list and released together by tu_free_all()
 * (LeakSanitizer runs in `make test-asan`); a test that calls tu_free_all must not free() them. */
static void *tu_allocs[8192];
static int tu_n_allocs;
static inline void *tu_keep(void *p) {
    if (p && tu_n_allocs < (int)(sizeof tu_allocs / sizeof tu_allocs[0])) tu_allocs[tu_n_allocs++] = p;
    return p;
}
static inline void tu_free_all(void) {
    while (tu_n_allocs > 0) free(tu_allocs[--tu_n_allocs]);
}
static inline float *tu_rand(size_t n, float scale) {
    float *x = tu_keep(ds3_alloc_aligned((n ? n : 1) * sizeof(float)));
    tu_fill(x, n, scale);
    return x;
}
static inline float *tu_zeros(size_t n) { return tu_keep(ds3_alloc_aligned((n ? n : 1) * sizeof(float))); }

static inline int tu_config(ds3_config *c, const char *json) {
    char err[DS3_ERR_LEN];
    int rc = ds3_config_parse(c, json, strlen(json), "test-config", err, sizeof err);
    if (rc) fprintf(stderr, "config: %s\n", err);
    return rc;
}

static inline ds3_ctx tu_ctx(int nth, size_t tbuf_floats) {
    ds3_ctx c;
    memset(&c, 0, sizeof c);
    c.nth = nth;
    c.pool = ds3_pool_new(nth);
    c.tbuf_floats = tbuf_floats;
    c.tbuf = calloc((size_t)nth, sizeof(float *));
    for (int i = 0; i < nth; i++) c.tbuf[i] = ds3_alloc_aligned((tbuf_floats ? tbuf_floats : 1) * sizeof(float));
    return c;
}
static inline void tu_ctx_free(ds3_ctx *c) {
    for (int i = 0; i < c->nth; i++) free(c->tbuf[i]);
    free(c->tbuf);
    ds3_pool_free(c->pool);
}

static inline double tu_dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Check the gradient g of loss() with respect to x (n floats) along a random direction:
 * (loss(x + e u) - loss(x - e u)) / 2e  vs  g . u.  Returns the relative error. */
typedef double (*tu_loss_fn)(void *ctx);
/* Denominator floor: f32 forward noise makes tiny directional derivatives unmeasurable. */
static double tu_fd_floor = 1e-9;
static inline double tu_fd(tu_loss_fn loss, void *ctx, float *x, const float *g, size_t n, float eps) {
    float *u = ds3_alloc_aligned((n ? n : 1) * sizeof(float)), *x0 = ds3_alloc_aligned((n ? n : 1) * sizeof(float));
    tu_fill(u, n, 1.0f);
    memcpy(x0, x, n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = x0[i] + eps * u[i];
    double lp = loss(ctx);
    for (size_t i = 0; i < n; i++) x[i] = x0[i] - eps * u[i];
    double lm = loss(ctx);
    memcpy(x, x0, n * sizeof(float));
    double fd = (lp - lm) / (2.0 * eps), an = tu_dot(g, u, n);
    free(u);
    free(x0);
    double den = fabs(fd) > fabs(an) ? fabs(fd) : fabs(an);
    if (getenv("TU_VERBOSE")) fprintf(stderr, "fd %.8g an %.8g\n", fd, an);
    if (den < tu_fd_floor) den = tu_fd_floor;
    return fabs(fd - an) / den;
}

#endif
