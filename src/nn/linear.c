/* linear.c -- y = x W^T for weights in their stored dtype, split across the pool by row chunks.
 * Several independent products (the gate and up projections of every active expert, say) go
 * in one parallel pass so that small matrices still keep every thread busy.
 * Each output element is computed by one kernel call in a fixed order, so results do not
 * depend on the chunking, on which thread claims a chunk, or on the thread count. */
#include "nn/nn.h"
#include "kernels/quant.h"

#include <stdatomic.h>

typedef struct {
    const ds3_mm_job *chunks;
    int n;
    atomic_int next;   /* chunks are claimed dynamically: a descheduled thread cannot stall the rest */
} mm_task;

static void mm_worker(void *arg, int ith, int nth) {
    (void)ith;
    mm_task *t = arg;
    for (int i; (i = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed)) < t->n;) {
        const ds3_mm_job *j = &t->chunks[i];
        /* chunks are claimed in turn, so this thread's next one is most likely i + nth */
        const ds3_mm_job *nx = i + nth < t->n ? &t->chunks[i + nth] : NULL;
        ds3_matmul_prefetch_next(nx ? nx->w : NULL, nx ? nx->r0 : 0);
        ds3_matmul(j->w, j->r0, j->r1, j->x, j->ldx, j->T, j->y, j->ldy);
    }
    ds3_matmul_prefetch_next(NULL, 0);
}

void ds3_mm(ds3_ctx *ctx, const ds3_mm_job *jobs, int n_jobs) {
    const int nth = ctx->nth;
    double work = 0;
    for (int i = 0; i < n_jobs; i++) work += (double)(jobs[i].r1 - jobs[i].r0) * jobs[i].w->cols * jobs[i].T;
    if (nth == 1 || work < 65536.0) { /* too small to be worth waking the workers */
        for (int i = 0; i < n_jobs; i++)
            ds3_matmul(jobs[i].w, jobs[i].r0, jobs[i].r1, jobs[i].x, jobs[i].ldx, jobs[i].T, jobs[i].y, jobs[i].ldy);
        return;
    }
    /* Aim for ~8 chunks per thread over all jobs, at least 16 rows each. More, shorter chunks
     * would shorten the tail of a pass, but every call has a fixed cost (the quantized kernels
     * round the activations again, the prefetch burst): measured on the 1.2B model, 24 chunks per
     * thread decoded Q8_0 ~9% slower than 8 and BF16 the same. */
    int64_t total = 0;
    double bytes = 0;
    for (int i = 0; i < n_jobs; i++) {
        total += jobs[i].r1 - jobs[i].r0;
        bytes += (double)(jobs[i].r1 - jobs[i].r0) * (double)ds3_row_bytes(jobs[i].w->dtype, jobs[i].w->cols);
    }
    int64_t per = total / (8 * nth);
    /* ...but not below ~64 KB of weights: a chunk has a fixed cost (claim, call, prefetch burst) */
    const int64_t min_rows = total > 0 ? (int64_t)(65536.0 * (double)total / (bytes + 1.0)) : 16;
    if (per < min_rows) per = min_rows;
    if (per < 16) per = 16;
    per = (per + 15) & ~(int64_t)15;
    int n = 0;
    for (int i = 0; i < n_jobs; i++) {
        for (int64_t r = jobs[i].r0; r < jobs[i].r1; r += per) {
            if (n == ctx->chunk_cap) { /* flush a full batch of chunks */
                mm_task t = {ctx->chunks, n, 0};
                ds3_pool_run(ctx->pool, mm_worker, &t);
                n = 0;
            }
            ds3_mm_job *c = &ctx->chunks[n++];
            *c = jobs[i];
            c->r0 = r;
            c->r1 = r + per < jobs[i].r1 ? r + per : jobs[i].r1;
            c->y = jobs[i].y + (r - jobs[i].r0);
        }
    }
    if (n) {
        mm_task t = {ctx->chunks, n, 0};
        ds3_pool_run(ctx->pool, mm_worker, &t);
    }
}

void ds3_linear_fwd(ds3_ctx *ctx, const ds3_mat *w, const float *x, int T, float *y) {
    ds3_mm_job j = {w, 0, w->rows, x, (size_t)w->cols, T, y, (size_t)w->rows};
    ds3_mm(ctx, &j, 1);
}
