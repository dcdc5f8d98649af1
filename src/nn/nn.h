/* nn.h -- the layers of the DeepSeek-V3 forward pass, one file each (src/nn/<layer>.c), written
 * for a batch of T tokens at consecutive positions. Backward passes for training live next to
 * their forward in the same file (`_bwd`).
 *
 * Threading: functions that take a ds3_ctx run their heavy parts on the context's pool with the
 * (ith, nth) contract; everything else runs on the calling thread. Results depend only on the
 * thread count. No function here allocates: callers pass buffers sized for T (see shape comments).
 * Reference for every equation: spec/deepseek-v3.md sections 2-6. */
#ifndef DS3_NN_H
#define DS3_NN_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "model/config.h"
#include "model/model.h"
#include "util/pool.h"

/* Execution context: the pool plus per-thread scratch (owned by the session). */
typedef struct ds3_ctx {
    ds3_pool *pool;
    int nth;
    float **tbuf;          /* (nth,) per-thread scratch of tbuf_floats floats each */
    size_t tbuf_floats;
    struct ds3_mm_job *chunks;  /* scratch for ds3_mm's row chunks */
    int chunk_cap;
} ds3_ctx;

/* One matrix product y[t, r - r0] = sum_k x[t, k] W[r, k] over rows [r0, r1) of W. */
typedef struct ds3_mm_job {
    const ds3_mat *w;
    int64_t r0, r1;
    const float *x;    /* (T, ldx) */
    size_t ldx;
    int T;
    float *y;          /* (T, ldy) */
    size_t ldy;
} ds3_mm_job;

/* ---- linear.c ---- */
/* Run several independent products in one parallel pass (rows are split into chunks). */
void ds3_mm(ds3_ctx *ctx, const ds3_mm_job *jobs, int n_jobs);
/* y (T, rows) = x (T, cols) W^T */
void ds3_linear_fwd(ds3_ctx *ctx, const ds3_mat *w, const float *x, int T, float *y);

/* ---- rmsnorm.c ---- */
/* out (T, n) = x / sqrt(mean(x^2) + eps) * w; rows strided by ldx / ldo. out may equal x. */
void ds3_rmsnorm_fwd(float *out, size_t ldo, const float *x, size_t ldx, const float *w, int T, int n, float eps);

/* ---- rope.c ---- */
/* Rotate interleaved pairs (2j, 2j+1) of n_vec vectors per token in place:
 * x[t*ldt + v*ldv + 0 .. dr) at position pos0 + t, angle = pos * inv_freq[j]; cos/sin scaled by cs. */
void ds3_rope_fwd(float *x, int T, size_t ldt, int n_vec, size_t ldv, int dr, int pos0, const float *inv_freq,
                  float cs);

/* ---- ffn.c ---- */
/* a (T, I) = silu(g) * u, elementwise over rows of g and u (ld = I). */
void ds3_swiglu_fwd(float *a, const float *g, const float *u, size_t n);
/* Dense SwiGLU FFN: out (T, d) = down(silu(gate x) * up x); g, u: (T, I) scratch. */
void ds3_ffn_fwd(ds3_ctx *ctx, const ds3_ffn_w *w, const float *x, int T, float *out, float *g, float *u);

/* ---- router.c ---- */
/* Choose top-k experts for one token from its router logits (Nr,). ids (K,), weights (K,) in
 * descending selection score. scratch: (2*Nr + n_group) floats. */
void ds3_router_select(const ds3_config *c, const float *logits, const float *bias, int32_t *ids, float *weights,
                       float *scratch);

/* ---- moe.c ---- */
typedef struct ds3_moe_buf {
    float *logits;     /* (T, Nr) */
    int32_t *ids;      /* (T, K) */
    float *wts;        /* (T, K) */
    int32_t *count;    /* (Nr,) */
    int32_t *offset;   /* (Nr + 1,) */
    int32_t *slot;     /* (T*K,) row of token-choice (t,k) in the grouped buffers */
    float *xg;         /* (T*K, d) inputs grouped by expert */
    float *hg, *hu;    /* (T*K, I) */
    float *yg;         /* (T*K, d) */
    float *sg, *su;    /* (T, Is) shared expert */
    float *sy;         /* (T, d) */
    float *rscratch;   /* (2*Nr + n_group) */
} ds3_moe_buf;
void ds3_moe_fwd(ds3_ctx *ctx, const ds3_config *c, const ds3_layer_w *w, const float *x, int T, float *out,
                 ds3_moe_buf *b);

/* ---- mla.c ---- */
typedef struct ds3_mla_buf {
    float *q_lat;      /* (T, rq) */
    float *q;          /* (T, H, dq) */
    float *kv;         /* (T, rkv + dr) */
    float *o;          /* (T, H, dv) */
} ds3_mla_buf;
/* Per-thread scratch floats needed by ds3_mla_fwd for T tokens and n_ctx cached positions. */
size_t ds3_mla_tbuf_floats(const ds3_config *c, int T, int n_ctx);
/* Absorbed MLA (spec 3.7) over T tokens at positions pos0..pos0+T-1. Writes their latents
 * [rmsnorm(c_kv) | rope(k_pe)] into cache (n_ctx, rkv + dr) rows pos0.., then attends causally
 * over rows 0..pos. out (T, d). */
void ds3_mla_fwd(ds3_ctx *ctx, const ds3_config *c, const ds3_layer_w *w, const float *rope_inv_freq,
                 const float *x, int T, int pos0, float *cache, float *out, ds3_mla_buf *b);

/* ---- head.c ---- */
/* out (T, d): rows of the embedding matrix for the token ids (dequantised). */
void ds3_embed_fwd(const ds3_mat *emb, const int32_t *tokens, int T, float *out);

#endif
