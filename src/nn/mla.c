/* mla.c -- Multi-head Latent Attention in the absorbed form (spec 3.2-3.7; DeepSeek's
 * model.py attn_impl="absorb"). The cache holds, per position, only the normalised latent
 * c_kv (rkv) and the rotated shared rope key k_pe (dr): rkv + dr floats, for all heads.
 *   q      = q_b(rmsnorm(q_a x))  or  q_proj x                      (T, H, dn + dr)
 *   q_pe   = rope(q[..., dn:])
 *   qa_h   = W_UK(h)^T q_nope_h          W_UK(h) = kv_b rows [h(dn+dv), h(dn+dv)+dn)   (T, rkv)
 *   score  = scale (qa_h . c_kv[s] + q_pe_h . k_pe[s]),  s <= pos (causal, absolute positions)
 *   lat_h  = sum_s softmax(score)_s c_kv[s]                                              (T, rkv)
 *   o_h    = W_UV(h) lat_h               W_UV(h) = kv_b rows [h(dn+dv)+dn, (h+1)(dn+dv))  (T, dv)
 *   out    = o_proj(concat_h o_h)
 * GGUF files in llama.cpp's split layout carry k_b = W_UK(h)^T and v_b = W_UV(h) per head
 * instead of kv_b (ds3_layer_w.k_b/v_b); then both products are plain matmuls over their rows.
 * Inference: one pool task per group of heads does absorb, scores, softmax, latent sum and W_UV
 * (the cache is a F32 ds3_mat, so the scores and the latent sum are matmul/vecmat kernels);
 * tasks are claimed dynamically, each thread uses its own scratch (ctx->tbuf[ith]). A query's
 * keys go in blocks of ctx->mla_kblock at fixed positions (softmax per block, the blocks merged by
 * their maxima and sums), and a one-token step with at least a block per thread splits its keys
 * between the threads instead of its heads (each cache row then read once, not by every thread:
 * decode at depth 2048 +5-7%); both give the same bits, which depend on a query's number of keys
 * only. Ownership: ds3_mla_buf (the session) holds the queries, latents and the split step's
 * blocks (blk); the cache rows belong to the caller.
 * Batches of ds3_mla_naive_min_t tokens or more (long prompts) take the naive form instead: one
 * task per head decompresses K_h, V_h from the cache and attends as plain MHA (fewer FLOPs when
 * many queries share the decompression). The absorbed form's bits do not depend on the batch
 * size; the naive form agrees with it to rounding (test_golden runs both). */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "nn/nn.h"

/* Heads per attention task: one pass of the score kernel over the cache serves all of them, and
 * there should be a task for every thread. */
static int heads_per_task(const ds3_config *c, int nth) {
    int g = (c->n_heads + nth - 1) / nth;
    return g > 16 ? 16 : g < 1 ? 1 : g;
}

size_t ds3_mla_tbuf_floats(const ds3_config *c, int T, int n_ctx, int kblock) {
    (void)T;
    /* absorbed: scores and probabilities of up to 16 heads over a key block, and per block the
     * 16 heads' latent sums and (max, sum) pairs; naive: one head's keys and values over the
     * cache and the scores of a block of DS3_MLA_TB queries */
    const size_t nb = (size_t)(n_ctx + kblock - 1) / (size_t)kblock;
    const size_t absorbed = (size_t)32 * (size_t)(kblock < n_ctx ? kblock : n_ctx) + nb * 16 * ((size_t)c->kv_lora_rank + 2);
    const size_t naive = (size_t)(c->qk_nope_head_dim + c->qk_rope_head_dim + c->v_head_dim + DS3_MLA_TB) * n_ctx +
                         (size_t)((c->qk_nope_head_dim > c->v_head_dim ? c->qk_nope_head_dim : c->v_head_dim) + 1) *
                             c->kv_lora_rank;
    return (absorbed > naive ? absorbed : naive) + 64;
}

int ds3_mla_naive_min_t(const ds3_config *c) {
    /* per (query, key, head) the absorbed form costs 2 rkv + dr multiply-adds, the naive one
     * dq + dv, plus rkv (dn + dv) per key and head to decompress, shared by the T queries */
    const double rkv = c->kv_lora_rank, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    const double saved = 2 * rkv + dr - (dn + dr + dv);
    const double t = saved > 0 ? rkv * (dn + dv) / saved : 1e9;
    return t < 16 ? 16 : t > 1e6 ? 1000000 : (int)ceil(t);
}

size_t ds3_mla_qcat_floats(const ds3_config *c, int T) {
    const int tb = T < DS3_MLA_TB ? T : DS3_MLA_TB;
    return (size_t)tb * c->n_heads * (c->kv_lora_rank + c->qk_rope_head_dim);
}
size_t ds3_mla_blk_floats(const ds3_config *c, int n_ctx, int kblock) {
    return (size_t)((n_ctx + kblock - 1) / kblock) * c->n_heads * ((size_t)c->kv_lora_rank + 2);
}
size_t ds3_mla_lat_floats(const ds3_config *c, int T) {
    const int tb = T < DS3_MLA_TB ? T : DS3_MLA_TB;
    return (size_t)tb * c->n_heads * c->kv_lora_rank;
}

/* Softmax of the n_keys scores a query may see, in place: row = softmax(scale row), by the set's
 * kernel (ref.c's when it has none); both attention forms share it. */
static void softmax_row(float *row, int n_keys, float scale, float ms[2]) {
    (ds3_kern->softmax ? ds3_kern->softmax : ds3_kernels_ref.softmax)(row, n_keys, scale, ms);
}

/* Ask for rows [r0, r1) of w to be brought into the cache (a hint): into L1, or (l2) only as far
 * as L2 for data needed later than the next few microseconds. */
static void prefetch_rows(const ds3_mat *w, int64_t r0, int64_t r1, int l2) {
    const size_t rb = ds3_row_bytes(w->dtype, w->cols);
    const char *p = (const char *)w->data + (size_t)r0 * rb;
    for (size_t off = 0, n = (size_t)(r1 - r0) * rb; off < n; off += 64) {
        if (l2) __builtin_prefetch(p + off, 0, 2);
        else __builtin_prefetch(p + off, 0, 3);
    }
}

typedef struct {
    const ds3_ctx *ctx;
    const ds3_config *c;
    const ds3_layer_w *w;
    const float *q;      /* (T, H, dq), rope already applied */
    ds3_mat cache;       /* (n_ctx, rkv + dr) F32 rows: the latent cache as a matrix */
    float *qcat;         /* (T, H, rkv + dr): [W_UK(h)^T q_nope | q_pe] per token and head */
    float *lat;          /* (T, H, rkv) */
    float *o;            /* (T, H, dv) */
    int T, pos0, g;      /* g heads per task */
    int kb;              /* keys per softmax block (ctx->mla_kblock) */
    float *blk;          /* one token's key blocks (keys_worker): (nb, H, rkv) latent sums, (nb, H, 2) (max, sum) */
    atomic_int next;     /* tasks are claimed dynamically; scratch is per executing thread */
} attn_task;

/* The absorb of heads [h0, h0 + gn): qcat = [W_UK(h)^T q_nope_h | q_pe_h] for the T tokens
 * (vecmat over kv_b's rows, or matmul over k_b's). pf_cache: also request the cache rows, a
 * share before each head, for the scores that follow on this thread. */
static void absorb_heads(const attn_task *a, int h0, int gn, int pf_cache) {
    const ds3_config *c = a->c;
    const ds3_layer_w *w = a->w;
    const int H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    const int rkv = c->kv_lora_rank, dq = dn + dr, ldc = rkv + dr, T = a->T;
    /* Each head's rows are a few KB: the first head is prefetched here, the next head's while
     * this one computes (the matmul and vecmat kernels continue their prefetch there,
     * ds3_pf_next). */
    if (!w->k_b.data) prefetch_rows(&w->kv_b, (int64_t)h0 * (dn + dv), (int64_t)h0 * (dn + dv) + dn, 0);
    /* The cache rows of this layer were last read a whole token ago (evicted since by the
     * weights): a share of them is requested before each head's absorb, so they are in the
     * cache when the scores need them. */
    const int64_t cshare = (a->cache.rows + gn - 1) / gn; /* cache rows per head of the group */
    for (int h = h0; h < h0 + gn; h++) {
        float *qc = a->qcat + (size_t)h * ldc;
        const int more = h + 1 < h0 + gn;
        const int64_t c0 = (h - h0) * cshare, c1 = c0 + cshare < a->cache.rows ? c0 + cshare : a->cache.rows;
        if (pf_cache && c0 < c1) prefetch_rows(&a->cache, c0, c1, 1);
        if (w->k_b.data) { /* GGUF split layout: k_b(h) = W_UK(h)^T (rkv, dn) */
            ds3_matmul_prefetch_next(more ? &w->k_b : NULL, (int64_t)(h + 1) * rkv);
            ds3_matmul(&w->k_b, (int64_t)h * rkv, (int64_t)(h + 1) * rkv, a->q + (size_t)h * dq, (size_t)H * dq, T, qc,
                       (size_t)H * ldc);
        } else {
            /* the vecmat kernels prefetch a few rows ahead and past the last one continue at
             * the next head's rows (FP8 decode +0.7-0.9% on both routes, BF16 +0.3-0.4%,
             * against prefetching the next head's rows whole here) */
            ds3_matmul_prefetch_next(more ? &w->kv_b : NULL, (int64_t)(h + 1) * (dn + dv));
            ds3_vecmat(&w->kv_b, (int64_t)h * (dn + dv), (int64_t)h * (dn + dv) + dn, 0, rkv, a->q + (size_t)h * dq,
                       (size_t)H * dq, T, qc, (size_t)H * ldc);
        }
        for (int t = 0; t < T; t++)
            memcpy(qc + (size_t)t * H * ldc + rkv, a->q + ((size_t)t * H + h) * dq + dn, (size_t)dr * sizeof(float));
    }
    ds3_matmul_prefetch_next(NULL, 0);
}

/* Heads [h0, h0 + gn) (gn <= 16) of token t over its key blocks [b0, b1) (keys [b kb, (b + 1) kb)
 * of its n_keys; nb blocks in all). Block b's softmax-weighted latent sums go to
 *   lb + b lbs + j rkv   (head h0 + j)        and its (max, sum) to bms + b bmss + 2 j,
 * or, when the query has a single block, straight into lat. sc, st: (16, kb) scratch.
 *   scores^T (nk, gn): the g query rows are the "weights" and the cache rows the "tokens", so a
 *   block's cache rows stream through once for all gn heads (the products and their order are
 *   those of cache x query: no bit depends on the number of keys or of heads). Keys go in
 *   blocks at fixed positions, so a block's rows are still in L2 when the latent sum reads them
 *   again, and the bits of a query depend only on its number of keys. */
static void block_scores(const attn_task *a, int t, int h0, int gn, int b0, int b1, float *sc, float *st, float *lb,
                         size_t lbs, float *bms, size_t bmss) {
    const ds3_config *c = a->c;
    const int H = c->n_heads, rkv = c->kv_lora_rank, ldc = rkv + c->qk_rope_head_dim, kb = a->kb;
    const int n_keys = a->pos0 + t + 1, nb = (n_keys + kb - 1) / kb;
    const ds3_mat qm = {DS3_DT_F32, gn, ldc, a->qcat + ((size_t)t * H + h0) * ldc, NULL};
    for (int b = b0; b < b1; b++) {
        const int k0 = b * kb, nk = n_keys - k0 < kb ? n_keys - k0 : kb;
        ds3_matmul(&qm, 0, gn, (const float *)a->cache.data + (size_t)k0 * ldc, (size_t)ldc, nk, st, (size_t)gn);
        for (int j = 0; j < gn; j++) {
            float *row = sc + (size_t)j * nk;
            for (int s = 0; s < nk; s++) row[s] = st[(size_t)s * gn + j];
            softmax_row(row, nk, c->softmax_scale, nb > 1 ? bms + (size_t)b * bmss + 2 * (size_t)j : NULL);
        }
        ds3_vecmat(&a->cache, k0, k0 + nk, 0, rkv, sc, (size_t)nk, gn,
                   nb > 1 ? lb + (size_t)b * lbs : a->lat + ((size_t)t * H + h0) * rkv, (size_t)rkv);
    }
}

/* lat_j = sum_b w_b lat_bj with w_b = s_b exp(m_b - M) / sum_b' s_b' exp(m_b' - M), in block
 * order (the blocks' layout as block_scores writes it), for gn heads: lat (gn, rkv). */
static void merge_blocks(int nb, int gn, int rkv, const float *lb, size_t lbs, const float *bms, size_t bmss, float *lat) {
    for (int j = 0; j < gn; j++) {
        const float *ms = bms + 2 * (size_t)j; /* block b's (max, sum): ms[b bmss], ms[b bmss + 1] */
        float mx = -INFINITY, tot = 0, *l = lat + (size_t)j * rkv;
        for (int b = 0; b < nb; b++) mx = fmaxf(mx, ms[(size_t)b * bmss]);
        for (int b = 0; b < nb; b++) tot += ms[(size_t)b * bmss + 1] * expf(ms[(size_t)b * bmss] - mx);
        for (int b = 0; b < nb; b++) {
            const float wb = ms[(size_t)b * bmss + 1] * expf(ms[(size_t)b * bmss] - mx) / tot;
            const float *src = lb + (size_t)b * lbs + (size_t)j * rkv;
            if (b == 0)
                for (int e = 0; e < rkv; e++) l[e] = wb * src[e];
            else
                ds3_kern->axpy(rkv, wb, src, l);
        }
    }
}

/* o_h = W_UV(h) lat_h for heads [h0, h0 + gn) and the T tokens (matmul over kv_b's rows, or v_b). */
static void uv_heads(const attn_task *a, int h0, int gn) {
    const ds3_config *c = a->c;
    const ds3_layer_w *w = a->w;
    const int H = c->n_heads, dn = c->qk_nope_head_dim, dv = c->v_head_dim, rkv = c->kv_lora_rank;
    for (int h = h0; h < h0 + gn; h++) {
        const float *lat = a->lat + (size_t)h * rkv;
        float *o = a->o + (size_t)h * dv;
        const int more = h + 1 < h0 + gn;
        if (w->v_b.data) { /* v_b(h) = W_UV(h) (dv, rkv) */
            ds3_matmul_prefetch_next(more ? &w->v_b : NULL, (int64_t)(h + 1) * dv);
            ds3_matmul(&w->v_b, (int64_t)h * dv, (int64_t)(h + 1) * dv, lat, (size_t)H * rkv, a->T, o, (size_t)H * dv);
        } else {
            ds3_matmul_prefetch_next(more ? &w->kv_b : NULL, (int64_t)(h + 1) * (dn + dv) + dn);
            ds3_matmul(&w->kv_b, (int64_t)h * (dn + dv) + dn, (int64_t)(h + 1) * (dn + dv), lat, (size_t)H * rkv, a->T, o,
                       (size_t)H * dv);
        }
    }
    ds3_matmul_prefetch_next(NULL, 0);
}

/* the first W_UV rows of head h, requested while the scores are computed */
static void prefetch_uv(const attn_task *a, int h) {
    const ds3_config *c = a->c;
    const int dn = c->qk_nope_head_dim, dv = c->v_head_dim;
    if (a->w->v_b.data) prefetch_rows(&a->w->v_b, (int64_t)h * dv, (int64_t)(h + 1) * dv, 0);
    else prefetch_rows(&a->w->kv_b, (int64_t)h * (dn + dv) + dn, (int64_t)(h + 1) * (dn + dv), 0);
}

/* One task = g heads over the block's T tokens, all three steps (the heads are independent):
 *   qcat = [W_UK(h)^T q_nope_h | q_pe_h]; per token: scores = qcat . cache rows, softmax and
 *   lat = p . cache[:, :rkv] per key block, the blocks merged; o_h = W_UV(h) lat_h.
 * The thread's scratch (ctx->tbuf[ith]): sc, st (16, kb) and the token's blocks (16 heads each). */
static void attn_worker(void *arg, int ith, int nth) {
    (void)nth;
    attn_task *a = arg;
    const ds3_config *c = a->c;
    const int H = c->n_heads, rkv = c->kv_lora_rank, g = a->g, kb = a->kb;
    const int n_tasks = (H + g - 1) / g, kbn = kb < a->cache.rows ? kb : (int)a->cache.rows;
    float *sc = a->ctx->tbuf[ith];                                          /* (16, nk) probabilities */
    float *st = sc + (size_t)16 * kbn;                                      /* (nk, 16) scores */
    float *lb = st + (size_t)16 * kbn;                                      /* (blocks, 16, rkv) latent sums */
    float *bms = lb + (size_t)((a->cache.rows + kb - 1) / kb) * 16 * rkv; /* (blocks, 16, 2) (max, sum) */
    for (int i; (i = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed)) < n_tasks;) {
        const int h0 = i * g, gn = H - h0 < g ? H - h0 : g;
        absorb_heads(a, h0, gn, 1);
        prefetch_uv(a, h0);
        for (int t = 0; t < a->T; t++) {
            const int nb = (a->pos0 + t + 1 + kb - 1) / kb;
            block_scores(a, t, h0, gn, 0, nb, sc, st, lb, (size_t)16 * rkv, bms, 32);
            if (nb > 1) merge_blocks(nb, gn, rkv, lb, (size_t)16 * rkv, bms, 32, a->lat + ((size_t)t * H + h0) * rkv);
        }
        uv_heads(a, h0, gn);
    }
}

/* One token whose keys span at least a block per thread: the keys are split instead of the
 * heads, so each block of the cache is read by one thread (for all heads) rather than by every
 * thread. Three passes: the absorb by head groups; the blocks (every head, 16 at a time); the
 * merge and W_UV by head groups. The same kernels and the same merge as attn_worker: the same
 * bits. a->blk holds every block's latent sums and (max, sum) pairs between the passes. */
static void absorb_worker(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    attn_task *a = arg;
    const int H = a->c->n_heads, g = a->g;
    for (int i; (i = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed)) < (H + g - 1) / g;)
        absorb_heads(a, i * g, H - i * g < g ? H - i * g : g, 0);
}
static void keys_worker(void *arg, int ith, int nth) {
    (void)nth;
    attn_task *a = arg;
    const int H = a->c->n_heads, rkv = a->c->kv_lora_rank, kb = a->kb, nb = (a->pos0 + 1 + kb - 1) / kb;
    float *sc = a->ctx->tbuf[ith], *st = sc + (size_t)16 * kb;
    float *bms = a->blk + (size_t)nb * H * rkv; /* (nb, H, 2) after the (nb, H, rkv) latent sums */
    for (int b; (b = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed)) < nb;)
        for (int h0 = 0; h0 < H; h0 += 16)
            block_scores(a, 0, h0, H - h0 < 16 ? H - h0 : 16, b, b + 1, sc, st, a->blk + (size_t)h0 * rkv, (size_t)H * rkv,
                         bms + 2 * (size_t)h0, 2 * (size_t)H);
}
static void merge_uv_worker(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    attn_task *a = arg;
    const int H = a->c->n_heads, rkv = a->c->kv_lora_rank, g = a->g, kb = a->kb, nb = (a->pos0 + 1 + kb - 1) / kb;
    const float *bms = a->blk + (size_t)nb * H * rkv;
    for (int i; (i = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed)) < (H + g - 1) / g;) {
        const int h0 = i * g, gn = H - h0 < g ? H - h0 : g;
        prefetch_uv(a, h0);
        merge_blocks(nb, gn, rkv, a->blk + (size_t)h0 * rkv, (size_t)H * rkv, bms + 2 * (size_t)h0, 2 * (size_t)H,
                     a->lat + (size_t)h0 * rkv);
        uv_heads(a, h0, gn);
    }
}

/* Naive form (spec 3.6), one task per head over all T queries of the call:
 *   K_h = [c_kv W_UK(h)^T | k_pe]  (n, dq)      V_h = c_kv W_UV(h)^T  (n, dv)     n = pos0 + T
 *   per block of DS3_MLA_TB queries: S = q_h K_h^T (causal), softmax, o_h = S V_h
 * Decompressing K_h and V_h costs n rkv (dn + dv) per head, shared by all T queries; each
 * (query, key) pair then costs dq + dv instead of the absorbed form's 2 rkv + dr. */
static void attn_naive_worker(void *arg, int ith, int nth) {
    (void)nth;
    attn_task *a = arg;
    const ds3_config *c = a->c;
    const ds3_layer_w *w = a->w;
    const int H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    const int rkv = c->kv_lora_rank, dq = dn + dr, ldc = rkv + dr, T = a->T, n = a->pos0 + T;
    const float *cache = a->cache.data;
    float *K = a->ctx->tbuf[ith];          /* (n, dq) */
    float *V = K + (size_t)n * dq;         /* (n, dv) */
    float *S = V + (size_t)n * dv;         /* (DS3_MLA_TB, n) */
    float *u = S + (size_t)DS3_MLA_TB * n; /* (max(dn, dv), rkv) + one row: a head's W_UK or W_UV in F32 */
    const ds3_mat Km = {DS3_DT_F32, n, dq, K, NULL}, Vm = {DS3_DT_F32, n, dv, V, NULL};
    const ds3_mat Ukm = {DS3_DT_F32, dn, rkv, u, NULL}, Uvm = {DS3_DT_F32, dv, rkv, u, NULL};
    const int quant = w->k_b.data ? DS3_DT_IS_QUANT(w->k_b.dtype) || DS3_DT_IS_QUANT(w->v_b.dtype)
                                  : DS3_DT_IS_QUANT(w->kv_b.dtype);
    for (int h; (h = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed)) < H;) {
        /* K_nope = c W_UK(h)^T, V = c W_UV(h)^T. Quantized weights are expanded to F32 per head
         * first (a few KB), so the products do not round c to 8 bits as a quantized matmul would. */
        const int64_t rk = (int64_t)h * (dn + dv), rv = rk + dn; /* kv_b rows of W_UK(h), W_UV(h) */
        if (w->k_b.data) { /* k_b(h) = W_UK(h)^T (rkv, dn): transposed */
            float *row = u + (size_t)dn * rkv;
            for (int r = 0; r < rkv; r++) {
                ds3_dequant_row(&w->k_b, (int64_t)h * rkv + r, 0, dn, row);
                for (int i = 0; i < dn; i++) u[(size_t)i * rkv + r] = row[i];
            }
            ds3_matmul(&Ukm, 0, dn, cache, (size_t)ldc, n, K, (size_t)dq);
        } else if (quant) {
            for (int i = 0; i < dn; i++) ds3_dequant_row(&w->kv_b, rk + i, 0, rkv, u + (size_t)i * rkv);
            ds3_matmul(&Ukm, 0, dn, cache, (size_t)ldc, n, K, (size_t)dq);
        } else {
            ds3_matmul(&w->kv_b, rk, rk + dn, cache, (size_t)ldc, n, K, (size_t)dq);
        }
        for (int s = 0; s < n; s++) memcpy(K + (size_t)s * dq + dn, cache + (size_t)s * ldc + rkv, (size_t)dr * sizeof(float));
        if (quant) {
            for (int i = 0; i < dv; i++) {
                if (w->v_b.data) ds3_dequant_row(&w->v_b, (int64_t)h * dv + i, 0, rkv, u + (size_t)i * rkv);
                else ds3_dequant_row(&w->kv_b, rv + i, 0, rkv, u + (size_t)i * rkv);
            }
            ds3_matmul(&Uvm, 0, dv, cache, (size_t)ldc, n, V, (size_t)dv);
        } else if (w->v_b.data) {
            ds3_matmul(&w->v_b, (int64_t)h * dv, (int64_t)(h + 1) * dv, cache, (size_t)ldc, n, V, (size_t)dv);
        } else {
            ds3_matmul(&w->kv_b, rv, rv + dv, cache, (size_t)ldc, n, V, (size_t)dv);
        }
        for (int t0 = 0; t0 < T; t0 += DS3_MLA_TB) {
            const int tn = T - t0 < DS3_MLA_TB ? T - t0 : DS3_MLA_TB, nk = a->pos0 + t0 + tn;
            ds3_matmul(&Km, 0, nk, a->q + ((size_t)t0 * H + h) * dq, (size_t)H * dq, tn, S, (size_t)nk); /* (tn, nk) */
            for (int t = 0; t < tn; t++) {
                float *row = S + (size_t)t * nk;
                const int lim = a->pos0 + t0 + t + 1;
                softmax_row(row, lim, c->softmax_scale, NULL);
                memset(row + lim, 0, (size_t)(nk - lim) * sizeof(float));
            }
            ds3_vecmat(&Vm, 0, nk, 0, dv, S, (size_t)nk, tn, a->o + ((size_t)t0 * H + h) * dv, (size_t)H * dv);
        }
    }
}

void ds3_mla_fwd(ds3_ctx *ctx, const ds3_config *c, const ds3_layer_w *w, const float *rope_inv_freq,
                 const float *x, int T, int pos0, float *cache, float *out, ds3_mla_buf *b) {
    const int H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int rkv = c->kv_lora_rank, dq = dn + dr, ldc = rkv + dr, d = c->hidden_size;
    double tp = ds3_prof_tick(ctx, DS3_PROF_QKV, 0);
    /* Query and KV down-projections read the same x: one parallel pass. */
    if (c->q_lora_rank > 0) {
        ds3_mm_job j[2] = {
            {&w->q_a, 0, w->q_a.rows, x, (size_t)d, T, b->q_lat, (size_t)c->q_lora_rank},
            {&w->kv_a, 0, w->kv_a.rows, x, (size_t)d, T, b->kv, (size_t)ldc},
        };
        ds3_mm(ctx, j, 2);
        ds3_rmsnorm_fwd(b->q_lat, (size_t)c->q_lora_rank, b->q_lat, (size_t)c->q_lora_rank, w->q_a_norm, T,
                        c->q_lora_rank, c->rms_norm_eps);
        ds3_linear_fwd(ctx, &w->q_b, b->q_lat, T, b->q);
    } else {
        ds3_mm_job j[2] = {
            {&w->q, 0, w->q.rows, x, (size_t)d, T, b->q, (size_t)H * dq},
            {&w->kv_a, 0, w->kv_a.rows, x, (size_t)d, T, b->kv, (size_t)ldc},
        };
        ds3_mm(ctx, j, 2);
    }
    ds3_rope_fwd(b->q + dn, T, (size_t)H * dq, H, (size_t)dq, dr, pos0, rope_inv_freq, c->rope_cs_scale);
    /* Cache rows for these positions: normalised latent, rotated shared rope key. */
    float *dst = cache + (size_t)pos0 * ldc;
    ds3_rmsnorm_fwd(dst, (size_t)ldc, b->kv, (size_t)ldc, w->kv_a_norm, T, rkv, c->rms_norm_eps);
    for (int t = 0; t < T; t++) memcpy(dst + (size_t)t * ldc + rkv, b->kv + (size_t)t * ldc + rkv, (size_t)dr * sizeof(float));
    ds3_rope_fwd(dst + rkv, T, (size_t)ldc, 1, 0, dr, pos0, rope_inv_freq, c->rope_cs_scale);
    tp = ds3_prof_tick(ctx, DS3_PROF_QKV, tp);
    if (T >= ctx->mla_naive_min_t) {
        attn_task a = {ctx, c, w, b->q, {DS3_DT_F32, (int64_t)(pos0 + T), ldc, cache, NULL}, NULL, NULL, b->o, T, pos0, 1, 0, NULL, 0};
        ds3_pool_run(ctx->pool, attn_naive_worker, &a);
        tp = ds3_prof_tick(ctx, DS3_PROF_ATTN, tp);
        ds3_linear_fwd(ctx, &w->o, b->o, T, out);
        ds3_prof_tick(ctx, DS3_PROF_OPROJ, tp);
        return;
    }
    /* Attention in token blocks of at most DS3_MLA_TB (the qcat/lat buffers hold one block). */
    for (int t0 = 0; t0 < T; t0 += DS3_MLA_TB) {
        const int tn = T - t0 < DS3_MLA_TB ? T - t0 : DS3_MLA_TB;
        attn_task a = {ctx, c, w, b->q + (size_t)t0 * H * dq, {DS3_DT_F32, (int64_t)(pos0 + t0 + tn), ldc, cache, NULL},
                       b->qcat, b->lat, b->o + (size_t)t0 * H * c->v_head_dim, tn, pos0 + t0, heads_per_task(c, ctx->nth),
                       ctx->mla_kblock, b->blk, 0};
        if (tn == 1 && ctx->nth > 1 && b->blk && (pos0 + t0) / a.kb + 1 >= ctx->nth) {
            /* one token deep into the cache: its key blocks split between the threads */
            ds3_pool_run(ctx->pool, absorb_worker, &a);
            atomic_store_explicit(&a.next, 0, memory_order_relaxed);
            ds3_pool_run(ctx->pool, keys_worker, &a);
            atomic_store_explicit(&a.next, 0, memory_order_relaxed);
            ds3_pool_run(ctx->pool, merge_uv_worker, &a);
            continue;
        }
        const double work = (double)H * tn * ((double)dn * rkv * 2 + (double)(pos0 + t0 + tn) * (ldc + rkv));
        ds3_pool_run_sized(ctx->pool, attn_worker, &a, work);
    }
    tp = ds3_prof_tick(ctx, DS3_PROF_ATTN, tp);
    ds3_linear_fwd(ctx, &w->o, b->o, T, out);
    ds3_prof_tick(ctx, DS3_PROF_OPROJ, tp);
}

/* ---- training ---- */
/* Naive MLA (spec 3.6) for B sequences of T tokens at positions 0..T-1:
 *   a    = x wa^T = [q_a x | c_kv | k_pe]  (q-LoRA)   or  [q_proj x | c_kv | k_pe]
 *   q    = q_b rmsnorm(q_a x) (or q_proj x); q_pe roped;  cn = rmsnorm(c_kv);  kpe = rope(k_pe)
 *   kvb  = cn kv_b^T = per head [k_nope | v];  k_h = [k_nope_h | kpe]
 *   P    = softmax_causal(scale q_h k_h^T);  o_h = P v_h;  out = o wo^T
 * One (sequence, head) pair per task; each task uses only its own thread scratch, and dk_pe is
 * kept per head and summed afterwards in head order, so nothing depends on the thread count. */

size_t ds3_mla_train_tbuf_floats(const ds3_config *c, int T) {
    const int dq = c->qk_head_dim, dv = c->v_head_dim;
    return (size_t)T * (2 * dq + dv) + (size_t)T * T + 64;
}

typedef struct {
    const ds3_ctx *ctx;
    const ds3_config *c;
    const ds3_mla_act *act;
    const float *dO;     /* backward: (N, H*dv) */
    ds3_mla_scratch *sc; /* backward */
    int B, T;
} tattn_task;

/* Kh (T, dq) = [k_nope_h | kpe] of sequence b */
static void gather_k(const ds3_config *c, const ds3_mla_act *act, int b, int h, int T, float *Kh) {
    const int H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim, dq = dn + dr;
    for (int t = 0; t < T; t++) {
        const size_t n = (size_t)b * T + t;
        memcpy(Kh + (size_t)t * dq, act->kvb + (n * H + h) * (dn + dv), (size_t)dn * sizeof(float));
        memcpy(Kh + (size_t)t * dq + dn, act->kpe + n * dr, (size_t)dr * sizeof(float));
    }
}

static void tattn_fwd_worker(void *arg, int ith, int nth) {
    const tattn_task *a = arg;
    const ds3_config *c = a->c;
    const int H = c->n_heads, dn = c->qk_nope_head_dim, dv = c->v_head_dim, dq = c->qk_head_dim, T = a->T;
    const float scale = c->softmax_scale;
    float *Kh = a->ctx->tbuf[ith];
    for (int bh = ith; bh < a->B * H; bh += nth) {
        const int b = bh / H, h = bh % H;
        const size_t n0 = (size_t)b * T;
        float *P = a->act->p + (size_t)bh * T * T;
        gather_k(c, a->act, b, h, T, Kh);
        ds3_tmm_job js = {DS3_TMM_NT, 0, T, T, dq, a->act->q + (n0 * H + h) * dq, (size_t)H * dq, Kh, dq, P, T};
        ds3_tmm_rows(&js, 0, T);
        for (int t = 0; t < T; t++) {
            float *row = P + (size_t)t * T;
            float mx = -INFINITY;
            for (int s = 0; s <= t; s++) {
                row[s] *= scale;
                mx = row[s] > mx ? row[s] : mx;
            }
            double sum = 0;
            for (int s = 0; s <= t; s++) sum += (row[s] = expf(row[s] - mx));
            const float inv = (float)(1.0 / sum);
            for (int s = 0; s <= t; s++) row[s] *= inv;
            for (int s = t + 1; s < T; s++) row[s] = 0;
        }
        ds3_tmm_job jo = {DS3_TMM_NN, 0, T, dv, T, P, T, a->act->kvb + (n0 * H + h) * (dn + dv) + dn,
                          (size_t)H * (dn + dv), a->act->o + (n0 * H + h) * dv, (size_t)H * dv};
        ds3_tmm_rows(&jo, 0, T);
    }
}

static void tattn_bwd_worker(void *arg, int ith, int nth) {
    const tattn_task *a = arg;
    const ds3_config *c = a->c;
    const int H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    const int dq = dn + dr, T = a->T;
    const float scale = c->softmax_scale;
    float *Kh = a->ctx->tbuf[ith];               /* (T, dq) */
    float *Vh = Kh + (size_t)T * dq;             /* (T, dv) */
    float *dKh = Vh + (size_t)T * dv;            /* (T, dq) */
    float *dP = dKh + (size_t)T * dq;            /* (T, T) */
    ds3_mla_scratch *sc = a->sc;
    for (int bh = ith; bh < a->B * H; bh += nth) {
        const int b = bh / H, h = bh % H;
        const size_t n0 = (size_t)b * T;
        const float *P = a->act->p + (size_t)bh * T * T;
        gather_k(c, a->act, b, h, T, Kh);
        for (int t = 0; t < T; t++)
            memcpy(Vh + (size_t)t * dv, a->act->kvb + ((n0 + t) * H + h) * (dn + dv) + dn, (size_t)dv * sizeof(float));
        const float *dOh = a->dO + (n0 * H + h) * dv;
        ds3_tmm_job j1 = {DS3_TMM_NT, 0, T, T, dv, dOh, (size_t)H * dv, Vh, dv, dP, T};       /* dP = dO V^T */
        ds3_tmm_rows(&j1, 0, T);
        ds3_tmm_job j2 = {DS3_TMM_TN, 0, T, dv, T, P, T, dOh, (size_t)H * dv,                /* dV = P^T dO */
                          sc->dkvb + (n0 * H + h) * (dn + dv) + dn, (size_t)H * (dn + dv)};
        ds3_tmm_rows(&j2, 0, T);
        for (int t = 0; t < T; t++) {
            const float *p = P + (size_t)t * T;
            float *g = dP + (size_t)t * T;
            double dot = 0;
            for (int s = 0; s <= t; s++) dot += (double)p[s] * g[s];
            for (int s = 0; s <= t; s++) g[s] = p[s] * (g[s] - (float)dot) * scale;
            for (int s = t + 1; s < T; s++) g[s] = 0;
        }
        ds3_tmm_job j3 = {DS3_TMM_NN, 0, T, dq, T, dP, T, Kh, dq, sc->dq + (n0 * H + h) * dq, (size_t)H * dq};
        ds3_tmm_rows(&j3, 0, T);                                                             /* dQ = dS K */
        ds3_tmm_job j4 = {DS3_TMM_TN, 0, T, dq, T, dP, T, a->act->q + (n0 * H + h) * dq, (size_t)H * dq, dKh, dq};
        ds3_tmm_rows(&j4, 0, T);                                                             /* dK = dS^T Q */
        for (int t = 0; t < T; t++) {
            const size_t n = n0 + t;
            memcpy(sc->dkvb + (n * H + h) * (dn + dv), dKh + (size_t)t * dq, (size_t)dn * sizeof(float));
            memcpy(sc->dkpe_h + (n * H + h) * dr, dKh + (size_t)t * dq + dn, (size_t)dr * sizeof(float));
        }
    }
}

void ds3_mla_fwd_t(ds3_ctx *ctx, const ds3_config *c, const ds3_tlayer *w, const float *rope_inv_freq,
                   const float *x, int B, int T, float *out, ds3_mla_act *act) {
    const int H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    const int dq = dn + dr, rkv = c->kv_lora_rank, rq = c->q_lora_rank, d = c->hidden_size, N = B * T;
    const int n1 = rq > 0 ? rq : H * dq, lda = n1 + rkv + dr;
    ds3_tmm_job ja = {DS3_TMM_NT, 0, N, lda, d, x, d, w->wa, d, act->a, lda};
    ds3_tmm(ctx->pool, &ja, 1);
    if (rq > 0) {
        ds3_rmsnorm_fwd_t(act->qan, rq, act->qa_rstd, act->a, lda, w->q_a_norm, N, rq, c->rms_norm_eps);
        ds3_tmm_job jq = {DS3_TMM_NT, 0, N, H * dq, rq, act->qan, rq, w->q_b, rq, act->q, (size_t)H * dq};
        ds3_tmm(ctx->pool, &jq, 1);
    } else {
        for (int t = 0; t < N; t++)
            memcpy(act->q + (size_t)t * H * dq, act->a + (size_t)t * lda, (size_t)H * dq * sizeof(float));
    }
    ds3_rmsnorm_fwd_t(act->cn, rkv, act->kv_rstd, act->a + n1, lda, w->kv_a_norm, N, rkv, c->rms_norm_eps);
    for (int t = 0; t < N; t++)
        memcpy(act->kpe + (size_t)t * dr, act->a + (size_t)t * lda + n1 + rkv, (size_t)dr * sizeof(float));
    for (int b = 0; b < B; b++) {
        ds3_rope_fwd(act->q + (size_t)b * T * H * dq + dn, T, (size_t)H * dq, H, dq, dr, 0, rope_inv_freq,
                     c->rope_cs_scale);
        ds3_rope_fwd(act->kpe + (size_t)b * T * dr, T, dr, 1, 0, dr, 0, rope_inv_freq, c->rope_cs_scale);
    }
    ds3_tmm_job jk = {DS3_TMM_NT, 0, N, H * (dn + dv), rkv, act->cn, rkv, w->kv_b, rkv, act->kvb, (size_t)H * (dn + dv)};
    ds3_tmm(ctx->pool, &jk, 1);
    tattn_task at = {ctx, c, act, NULL, NULL, B, T};
    ds3_pool_run(ctx->pool, tattn_fwd_worker, &at);
    ds3_tmm_job jo = {DS3_TMM_NT, 0, N, d, H * dv, act->o, (size_t)H * dv, w->o, (size_t)H * dv, out, d};
    ds3_tmm(ctx->pool, &jo, 1);
}

void ds3_mla_bwd(ds3_ctx *ctx, const ds3_config *c, const ds3_tlayer *w, ds3_tlayer *gw, const float *rope_inv_freq,
                 const float *x, int B, int T, const float *dout, float *dx, const ds3_mla_act *act,
                 ds3_mla_scratch *sc) {
    const int H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    const int dq = dn + dr, rkv = c->kv_lora_rank, rq = c->q_lora_rank, d = c->hidden_size, N = B * T;
    const int n1 = rq > 0 ? rq : H * dq, lda = n1 + rkv + dr;
    ds3_tmm_job j1[2] = {
        {DS3_TMM_NN, 0, N, H * dv, d, dout, d, w->o, (size_t)H * dv, sc->dO, (size_t)H * dv},
        {DS3_TMM_TN, 1, d, H * dv, N, dout, d, act->o, (size_t)H * dv, gw->o, (size_t)H * dv},
    };
    ds3_tmm(ctx->pool, j1, 2);
    tattn_task at = {ctx, c, act, sc->dO, sc, B, T};
    ds3_pool_run(ctx->pool, tattn_bwd_worker, &at);
    /* dk_pe: sum over heads in order, into its columns of da; rope backward on it and on dq_pe */
    for (int t = 0; t < N; t++) {
        float *g = sc->da + (size_t)t * lda + n1 + rkv;
        memset(g, 0, (size_t)dr * sizeof(float));
        for (int h = 0; h < H; h++) {
            const float *s = sc->dkpe_h + ((size_t)t * H + h) * dr;
            for (int i = 0; i < dr; i++) g[i] += s[i];
        }
    }
    for (int b = 0; b < B; b++) {
        ds3_rope_bwd(sc->dq + (size_t)b * T * H * dq + dn, T, (size_t)H * dq, H, dq, dr, 0, rope_inv_freq,
                     c->rope_cs_scale);
        ds3_rope_bwd(sc->da + (size_t)b * T * lda + n1 + rkv, T, lda, 1, 0, dr, 0, rope_inv_freq, c->rope_cs_scale);
    }
    ds3_tmm_job j2[4] = {
        {DS3_TMM_NN, 0, N, rkv, H * (dn + dv), sc->dkvb, (size_t)H * (dn + dv), w->kv_b, rkv, sc->dcn, rkv},
        {DS3_TMM_TN, 1, H * (dn + dv), rkv, N, sc->dkvb, (size_t)H * (dn + dv), act->cn, rkv, gw->kv_b, rkv},
        {DS3_TMM_NN, 0, N, rq, H * dq, sc->dq, (size_t)H * dq, w->q_b, rq, sc->dqan, rq},
        {DS3_TMM_TN, 1, H * dq, rq, N, sc->dq, (size_t)H * dq, act->qan, rq, gw->q_b, rq},
    };
    ds3_tmm(ctx->pool, j2, rq > 0 ? 4 : 2);
    for (int t = 0; t < N; t++) {
        float *g = sc->da + (size_t)t * lda;
        if (rq > 0) memset(g, 0, (size_t)rq * sizeof(float));
        else memcpy(g, sc->dq + (size_t)t * H * dq, (size_t)H * dq * sizeof(float));
        memset(g + n1, 0, (size_t)rkv * sizeof(float));
    }
    ds3_rmsnorm_bwd(sc->da + n1, lda, gw->kv_a_norm, sc->dcn, rkv, act->a + n1, lda, w->kv_a_norm, act->kv_rstd, N, rkv);
    if (rq > 0) ds3_rmsnorm_bwd(sc->da, lda, gw->q_a_norm, sc->dqan, rq, act->a, lda, w->q_a_norm, act->qa_rstd, N, rq);
    ds3_tmm_job j3[2] = {
        {DS3_TMM_NN, 0, N, d, lda, sc->da, lda, w->wa, d, dx, d},
        {DS3_TMM_TN, 1, lda, d, N, sc->da, lda, x, d, gw->wa, d},
    };
    ds3_tmm(ctx->pool, j3, 2);
}
