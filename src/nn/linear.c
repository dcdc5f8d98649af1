/* linear.c -- y = x W^T for weights in their stored dtype, split across the pool by row chunks.
 * Several independent products (the gate and up projections of every active expert, say) go
 * in one parallel pass so that small matrices still keep every thread busy.
 * Each output element is computed by one kernel call in a fixed order, so results do not
 * depend on the chunking, on which thread claims a chunk, or on the thread count.
 * The end of a one-token pass: a thread left without pieces helps with the others' last ones,
 * taking row blocks from the back of their calls (ds3_share in kernels.h: the AVX-512 set's
 * F32/BF16/F16/FP8 decode). Per-token interleaved A/B on the 1.2B models: FP8 decode +1.6 to
 * +3.2% (four runs with FP8 alone; blocks of 8 rows +1.7-1.9%, 32 rows +0.7-1.1%), then +0.6 and
 * +3.2% with its BF16 head shared too; BF16 +0.9 and +2.3%. The same bits. Buffers: ctx->shares,
 * ctx->busy (session). */
#include "nn/nn.h"
#include "kernels/quant.h"

#include <stdatomic.h>

typedef struct {
    const ds3_mm_job *pieces;  /* chunk c is pieces [start[c], start[c + 1]) */
    const int *start;
    _Atomic int *pnext;        /* (n,) the next unclaimed piece of each chunk */
    ds3_share *share;          /* (pieces,) blocks of the pieces run as shared calls */
    _Atomic int *busy;         /* (nth,) the piece each thread runs shared, -1 none */
    int n;                     /* chunks */
    atomic_int next;           /* chunks are claimed dynamically: a descheduled thread cannot stall the rest */
} mm_task;

/* Run the pieces of chunk c that nobody has claimed yet, one claim per piece. A piece whose call
 * can be shared (ds3_share_blocks) is published in busy[ith] while it runs, for mm_help. */
static void mm_chunk(mm_task *t, int c, int ith, int nth) {
    for (int p; (p = atomic_fetch_add_explicit(&t->pnext[c], 1, memory_order_relaxed)) < t->start[c + 1];) {
        const ds3_mm_job *j = &t->pieces[p];
        /* the kernels' prefetch stream runs on into the next piece of this chunk, or into
         * the chunk this thread most likely claims next (claims go in turn: c + nth) */
        const ds3_mm_job *nx = p + 1 < t->start[c + 1] ? j + 1 : c + nth < t->n ? &t->pieces[t->start[c + nth]] : NULL;
        ds3_matmul_prefetch_next(nx ? nx->w : NULL, nx ? nx->r0 : 0);
        const int nb = nth > 1 ? ds3_share_blocks(j->w, j->r0, j->r1, j->T) : 0;
        if (nb > 0) {
            ds3_share *sh = &t->share[p];
            atomic_store_explicit(&sh->taken, 0, memory_order_relaxed);
            atomic_store_explicit(&sh->back, 0, memory_order_relaxed);
            sh->nb = nb;
            atomic_store_explicit(&t->busy[ith], p, memory_order_release);
            ds3_matmul_shared(j->w, j->r0, j->r1, j->x, j->y, sh, 0);
            atomic_store_explicit(&t->busy[ith], -1, memory_order_relaxed);
        } else {
            ds3_matmul(j->w, j->r0, j->r1, j->x, j->ldx, j->T, j->y, j->ldy);
        }
    }
}

/* Every piece has a runner now: take blocks from the back of the others' shared calls, the one
 * with most blocks left first, until none is left. */
static void mm_help(mm_task *t, int ith, int nth) {
    for (;;) {
        int best = -1, most = 0;
        for (int o = 0; o < nth; o++) {
            const int p = o == ith ? -1 : atomic_load_explicit(&t->busy[o], memory_order_acquire);
            if (p < 0) continue;
            const int left = t->share[p].nb - atomic_load_explicit(&t->share[p].taken, memory_order_relaxed);
            if (left > most) {
                most = left;
                best = p;
            }
        }
        if (best < 0) return;
        const ds3_mm_job *j = &t->pieces[best];
        ds3_matmul_shared(j->w, j->r0, j->r1, j->x, j->y, &t->share[best], 1);
    }
}

static void mm_worker(void *arg, int ith, int nth) {
    mm_task *t = arg;
    int last = 0;
    for (int c; (c = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed)) < t->n;) {
        mm_chunk(t, c, ith, nth);
        last = c;
    }
    /* Every chunk has an owner now: help with the pieces its owner has not reached yet. A thread
     * that finishes early (its core less disturbed, its pieces less contended) takes the other
     * chunks' unstarted pieces, whole, so a piece's stream is never split. Decode, per-token interleaved
     * A/B with pieces capped at MM_PIECE_BYTES: FP8 +0.4 to +6.9% (four runs), Q8_0 -0.1 to
     * +1.2%; the gain comes in the minutes when one core is slowed. */
    for (int k = 1; k < t->n; k++) mm_chunk(t, (last + k) % t->n, ith, nth);
    ds3_matmul_prefetch_next(NULL, 0);
    /* then the pieces under way, a block of rows at a time (the owner waited ~4-10 µs at each
     * expert pass's end for the other thread's last piece of ~0.5 MB) */
    mm_help(t, ith, nth);
}

/* Close the open chunk (pieces from chunk_start[nc] to np), if any, and run the nc (+1) chunks. */
static void mm_run(ds3_ctx *ctx, int np, int nc) {
    if (ctx->chunk_start[nc] < np) ctx->chunk_start[++nc] = np;
    if (!nc) return;
    for (int c = 0; c < nc; c++) atomic_init(&ctx->chunk_next[c], ctx->chunk_start[c]);
    for (int i = 0; i < ctx->nth; i++) atomic_store_explicit(&ctx->busy[i], -1, memory_order_relaxed);
    mm_task t = {ctx->chunks, ctx->chunk_start, ctx->chunk_next, ctx->shares, ctx->busy, nc, 0};
    ds3_pool_run(ctx->pool, mm_worker, &t);
}

/* Chunks per thread. A pass of a few tokens streams its weights: every chunk boundary breaks the
 * prefetch stream and costs a call, so each thread gets one chunk of equal cost (measured on the
 * 1.2B model, one chunk per thread instead of eight: decode +10% on Q8_0, +4% on FP8). A pass of
 * many tokens is compute bound and long enough that finer chunks balance it better. A few-token
 * chunk is cut into pieces of at most MM_PIECE_BYTES of weights, which a thread done with its own
 * chunk may take over (mm_worker); each piece is one kernel call whose prefetch runs on into the
 * next piece, so the owner's stream is not broken. */
#define MM_FEW_TOKENS 8
#define MM_CPT_FEW 1
#define MM_CPT_MANY 8
#define MM_PIECE_BYTES 1048576.0

void ds3_mm(ds3_ctx *ctx, const ds3_mm_job *jobs, int n_jobs) {
    const int nth = ctx->nth;
    double cost = 0, bytes = 0;
    int tmax = 0;
    for (int i = 0; i < n_jobs; i++) {
        cost += (double)(jobs[i].r1 - jobs[i].r0) * (double)jobs[i].w->cols * jobs[i].T;
        bytes += (double)(jobs[i].r1 - jobs[i].r0) * (double)ds3_row_bytes(jobs[i].w->dtype, jobs[i].w->cols);
        if (jobs[i].T > tmax) tmax = jobs[i].T;
    }
    if (nth == 1 || cost < 65536.0) { /* too small to be worth waking the workers */
        for (int i = 0; i < n_jobs; i++)
            ds3_matmul(jobs[i].w, jobs[i].r0, jobs[i].r1, jobs[i].x, jobs[i].ldx, jobs[i].T, jobs[i].y, jobs[i].ldy);
        return;
    }
    /* Chunks of about equal cost (rows x cols x tokens), which may span several jobs: a chunk
     * is a run of pieces, each a row range of one job, cut at multiples of 16 rows. */
    const int cpt = tmax <= MM_FEW_TOKENS ? MM_CPT_FEW : MM_CPT_MANY;
    double target = cost / (double)(cpt * nth);
    const double floor = 65536.0 * cost / (bytes + 1.0); /* not below ~64 KB of weights a chunk */
    if (target < floor) target = floor;
    int np = 0, nc = 0;
    double acc = 0;
    ctx->chunk_start[0] = 0;
    for (int i = 0; i < n_jobs; i++) {
        const double rc = (double)jobs[i].w->cols * jobs[i].T; /* cost of one row */
        for (int64_t r = jobs[i].r0; r < jobs[i].r1;) {
            if (np == ctx->chunk_cap) { /* flush a full batch of pieces */
                mm_run(ctx, np, nc);
                np = nc = 0;
                acc = 0;
            }
            int64_t want = (int64_t)((target - acc) / rc + 0.5);
            want = (want + 15) & ~(int64_t)15;
            if (want < 16) want = 16;
            if (tmax <= MM_FEW_TOKENS) { /* pieces small enough for another thread to take (mm_worker) */
                const int64_t cap = (int64_t)(MM_PIECE_BYTES / (double)ds3_row_bytes(jobs[i].w->dtype, jobs[i].w->cols)) & ~(int64_t)15;
                if (cap >= 16 && want > cap) want = cap;
            }
            const int64_t e = r + want < jobs[i].r1 ? r + want : jobs[i].r1;
            ds3_mm_job *c = &ctx->chunks[np++];
            *c = jobs[i];
            c->r0 = r;
            c->r1 = e;
            c->y = jobs[i].y + (r - jobs[i].r0);
            acc += (double)(e - r) * rc;
            r = e;
            if (acc >= target - 8 * rc) { /* full (to within half a 16-row step): close it */
                ctx->chunk_start[++nc] = np;
                acc = 0;
            }
        }
    }
    mm_run(ctx, np, nc);
}

void ds3_linear_fwd(ds3_ctx *ctx, const ds3_mat *w, const float *x, int T, float *y) {
    ds3_mm_job j = {w, 0, w->rows, x, (size_t)w->cols, T, y, (size_t)w->rows};
    ds3_mm(ctx, &j, 1);
}
