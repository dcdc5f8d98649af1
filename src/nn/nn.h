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
#include "train/tmatmul.h"

/* Execution context: the pool plus per-thread scratch (owned by the session). */
typedef struct ds3_ctx {
    ds3_pool *pool;
    int nth;
    float **tbuf;          /* (nth,) per-thread scratch of tbuf_floats floats each */
    size_t tbuf_floats;
    struct ds3_mm_job *chunks;  /* scratch for ds3_mm: (chunk_cap,) pieces of jobs */
    int *chunk_start;           /* (chunk_cap + 1,) where each chunk's pieces start */
    _Atomic int *chunk_next;    /* (chunk_cap,) the next unclaimed piece of each chunk (ds3_mm) */
    int chunk_cap;
    ds3_share *shares;          /* (chunk_cap,) per piece: its blocks, when its call is shared (ds3_mm) */
    _Atomic int *busy;          /* (nth,) the piece each thread runs as a shared call, -1 none (ds3_mm) */
    double *prof;          /* (DS3_PROF_N,) seconds per stage when DS3_PROFILE is set, else NULL */
    int mla_naive_min_t;   /* batches of at least this many tokens attend in the naive form (mla.c) */
    int mla_kblock;        /* keys per softmax block of the absorbed form (mla.c, DS3_MLA_KBLOCK) */
} ds3_ctx;

/* Stages timed by DS3_PROFILE=1 (wall time on the calling thread; printed by ds3_session_free). */
enum { DS3_PROF_QKV, DS3_PROF_ATTN, DS3_PROF_OPROJ, DS3_PROF_ROUTER, DS3_PROF_EXP_GU, DS3_PROF_EXP_DOWN,
       DS3_PROF_MOE_SUM, DS3_PROF_FFN, DS3_PROF_NORM, DS3_PROF_HEAD, DS3_PROF_N };
double ds3_time_s(void);
/* t = ds3_prof_tick(ctx, slot, t): adds the time since t to slot (nothing when t is 0, the
 * start of a sequence) and returns now. */
static inline double ds3_prof_tick(const ds3_ctx *ctx, int slot, double t) {
    if (!ctx->prof) return 0;
    double now = ds3_time_s();
    if (t > 0) ctx->prof[slot] += now - t;
    return now;
}
/* Restart the clock without charging any slot (after a call that timed itself). */
static inline double ds3_prof_now(const ds3_ctx *ctx) { return ctx->prof ? ds3_time_s() : 0; }

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
    float *qcat;       /* (min(T, DS3_MLA_TB), H, rkv + dr) absorbed queries */
    float *lat;        /* (min(T, DS3_MLA_TB), H, rkv) attention-weighted latents */
    float *blk;        /* (ds3_mla_blk_floats) one token's key blocks when they are split between threads, or NULL */
} ds3_mla_buf;
enum { DS3_MLA_TB = 32 }; /* tokens per attention block */
/* Keys per softmax block of the absorbed form: a query's keys go in blocks at fixed positions
 * (0, KB, 2 KB, ...), each block's scores, softmax and latent sum done while its cache rows are
 * in L2, the blocks merged by their maxima and sums. DS3_MLA_KBLOCK=N in the environment
 * overrides it (the tests force several blocks on short sequences). */
enum { DS3_MLA_KBLOCK = 256 };
/* From this many tokens in one call, ds3_mla_fwd attends in the naive form (keys and values
 * decompressed per head: fewer FLOPs once the decompression is shared by enough queries; 86
 * for the benchmark model, 171 for V3 and V2-Lite). DS3_MLA_NAIVE_MIN_T=N in the environment
 * overrides it (the tests force both forms). The two forms agree to rounding, not bitwise. */
int ds3_mla_naive_min_t(const ds3_config *c);
/* Per-thread scratch floats needed by ds3_mla_fwd for T tokens and n_ctx cached positions. */
size_t ds3_mla_tbuf_floats(const ds3_config *c, int T, int n_ctx, int kblock);
/* Sizes of ds3_mla_buf.qcat and .lat for batches of up to T tokens. */
size_t ds3_mla_qcat_floats(const ds3_config *c, int T);
size_t ds3_mla_lat_floats(const ds3_config *c, int T);
/* Size of ds3_mla_buf.blk for n_ctx cached positions and key blocks of kblock. */
size_t ds3_mla_blk_floats(const ds3_config *c, int n_ctx, int kblock);
/* MLA over T tokens at positions pos0..pos0+T-1. Writes their latents [rmsnorm(c_kv) |
 * rope(k_pe)] into cache (n_ctx, rkv + dr) rows pos0.., then attends causally over rows 0..pos:
 * absorbed (spec 3.7) below ctx->mla_naive_min_t tokens, naive (spec 3.6) from it. out (T, d). */
void ds3_mla_fwd(ds3_ctx *ctx, const ds3_config *c, const ds3_layer_w *w, const float *rope_inv_freq,
                 const float *x, int T, int pos0, float *cache, float *out, ds3_mla_buf *b);

/* ---- head.c ---- */
/* out (T, d): rows of the embedding matrix for the token ids (dequantised). */
void ds3_embed_fwd(const ds3_mat *emb, const int32_t *tokens, int T, float *out);

/* ---- training (forward with saved activations + backward) ---- */
/* Training runs on f32 master weights (plain float arrays, row-major PyTorch order) for a batch
 * of B sequences of T tokens (N = B*T rows), positions 0..T-1 in each sequence. A `_fwd_t`
 * forward saves what its backward needs; a `_bwd` takes the gradient of the output and
 * accumulates weight gradients (+=) into the gradient arrays; the gradient of the input is
 * written (=) unless the comment says it accumulates. Heavy products go through ds3_tmm
 * (src/train/tmatmul.h) on ctx->pool. Reference: spec sections 2-7; llm.c's layer pairs. */

/* Weights of one SwiGLU FFN: gate and up stacked as one (2I, d) matrix [gate; up]. */
typedef struct ds3_tffn {
    float *gu;       /* (2I, d) */
    float *down;     /* (d, I) */
} ds3_tffn;

/* Weights (or their gradients) of one transformer block for training. */
typedef struct ds3_tlayer {
    float *attn_norm, *ffn_norm;     /* (d,) */
    float *wa;        /* (n1 + rkv + dr, d): [q_a (rq rows) or q_proj (H*dq rows) ; kv_a] */
    float *q_a_norm;  /* (rq,)  q-LoRA only */
    float *q_b;       /* (H*dq, rq) q-LoRA only */
    float *kv_a_norm; /* (rkv,) */
    float *kv_b;      /* (H*(dn+dv), rkv) */
    float *o;         /* (d, H*dv) */
    int is_moe;
    ds3_tffn dense;   /* (2*inter, d), (d, inter) */
    float *router;    /* (Nr, d) */
    float *router_bias; /* (Nr,) selection bias: a parameter without gradient */
    ds3_tffn *experts;  /* (Nr,) */
    ds3_tffn shared;    /* width Ns*moe_inter, gu NULL when Ns == 0 */
    /* MTP block only */
    float *enorm, *hnorm, *eh_proj /* (d, 2d) */, *head_norm;
} ds3_tlayer;

/* rmsnorm.c: out = x * rstd * w with rstd (T,) saved. */
void ds3_rmsnorm_fwd_t(float *out, size_t ldo, float *rstd, const float *x, size_t ldx, const float *w, int T, int n,
                       float eps);
/* dx (+=) and dw (+=) from dout. */
void ds3_rmsnorm_bwd(float *dx, size_t lddx, float *dw, const float *dout, size_t ldd, const float *x, size_t ldx,
                     const float *w, const float *rstd, int T, int n);

/* rope.c: the transpose of ds3_rope_fwd (rotation by -angle, times cs), in place on gradients. */
void ds3_rope_bwd(float *dx, int T, size_t ldt, int n_vec, size_t ldv, int dr, int pos0, const float *inv_freq,
                  float cs);

/* ffn.c */
/* dg, du (n) from da, with a = silu(g) * u. */
void ds3_swiglu_bwd(float *dg, float *du, const float *da, const float *g, const float *u, size_t n);
/* gu (N, 2I) = x [gate; up]^T, a (N, I) = silu(g) u, out (N, d) = a down^T. */
void ds3_ffn_fwd_t(ds3_ctx *ctx, const ds3_tffn *w, int d, int I, const float *x, int N, float *out, float *gu,
                   float *a);
/* dx (N, d) written; dgu (N, 2I), da (N, I) scratch. */
void ds3_ffn_bwd(ds3_ctx *ctx, const ds3_tffn *w, ds3_tffn *gw, int d, int I, const float *x, int N,
                 const float *dout, float *dx, const float *gu, const float *a, float *dgu, float *da);

/* head.c */
void ds3_embed_fwd_t(float *out, const float *emb, const int32_t *tokens, int N, int d);
/* demb (+=) rows of the tokens, in token order (deterministic). */
void ds3_embed_bwd(float *demb, const float *dout, const int32_t *tokens, int N, int d);

/* xent.c: cross-entropy of logits (N, V) against targets (N,) (target < 0: ignored). Writes
 * row_loss (N,) (0 for ignored rows); when grad, replaces logits by dloss/dlogits * scale.
 * Returns the sum of row losses (in row order, double). */
double ds3_xent(ds3_ctx *ctx, float *logits, const int32_t *targets, int N, int V, float scale, int grad,
                float *row_loss);

/* router.c: training router for N tokens on logits (N, Nr): scores s (N, Nr) saved, ids and
 * gate values wts (N, K) exactly as ds3_router_select (bias chooses only). */
void ds3_router_fwd_t(const ds3_config *c, const float *logits, const float *bias, int N, float *s, int32_t *ids,
                      float *wts, float *scratch);
/* dlogits (N, Nr) written, from dwts (N, K) (gradient flows through the normalised, scaled gate
 * values of the chosen experts) plus ds_extra (N, Nr) on the scores (balance loss) or NULL. */
void ds3_router_bwd(const ds3_config *c, const float *logits, const float *s, const int32_t *ids, const float *dwts,
                    const float *ds_extra, int N, float *dlogits);
/* Balance loss (spec 7.2) over groups of `group` consecutive tokens (a sequence: the sequence-
 * wise loss; all N tokens: the classic batch-wise auxiliary loss), averaged over the groups:
 *   f_i = Nr/(K*group) * count_i,  P_i = mean_t s_it / sum_j s_jt,  L = alpha * sum_i f_i P_i.
 * Returns L; ds (N, Nr) written with dL/ds (NULL: loss only). */
double ds3_balance_loss(const ds3_config *c, const float *s, const int32_t *ids, int N, int group, float alpha,
                        float *ds);

/* moe.c */
typedef struct ds3_moe_act {
    float *logits;     /* (N, Nr) router logits */
    float *s;          /* (N, Nr) scores */
    int32_t *ids;      /* (N, K) */
    float *wts;        /* (N, K) */
    float *dsbal;      /* (N, Nr) balance-loss gradient on s, or NULL */
    int32_t *offset;   /* (Nr + 1,) grouped rows of each expert */
    int32_t *slot;     /* (N*K,) grouped row of choice (t, k) */
    int32_t *tok;      /* (N*K,) token of each grouped row */
    float *gu;         /* (N*K, 2I) expert gate|up pre-activations */
    float *a;          /* (N*K, I) */
    float *yg;         /* (N*K, d) expert outputs */
    float *sgu, *sa;   /* (N, 2Is), (N, Is) shared expert */
} ds3_moe_act;
/* Scratch shared by every MoE layer (one step at a time): */
typedef struct ds3_moe_scratch {
    float *xg;         /* (N*K, d) grouped inputs */
    float *dyg;        /* (N*K, d) */
    float *dgu;        /* (N*K, 2I) */
    float *da;         /* (N*K, I) */
    float *dxg;        /* (N*K, d) */
    float *dsgu, *dsa; /* (N, 2Is), (N, Is) */
    float *dwts;       /* (N, K) */
    float *dlogits;    /* (N, Nr) */
    float *rscratch;   /* (2*Nr + n_group + 8) */
    ds3_tmm_job *jobs; /* (2*Nr + 8) */
} ds3_moe_scratch;
/* out (N, d). counts (Nr,) += expert loads of this call. */
void ds3_moe_fwd_t(ds3_ctx *ctx, const ds3_config *c, const ds3_tlayer *w, const float *x, int N, float *out,
                   ds3_moe_act *act, ds3_moe_scratch *sc, int64_t *counts);
/* dx (N, d) written. */
void ds3_moe_bwd(ds3_ctx *ctx, const ds3_config *c, const ds3_tlayer *w, ds3_tlayer *gw, const float *x, int N,
                 const float *dout, float *dx, const ds3_moe_act *act, ds3_moe_scratch *sc);

/* mla.c: naive MLA (spec 3.6) for B sequences of T tokens, keys and values per head. */
typedef struct ds3_mla_act {
    float *a;          /* (N, n1 + rkv + dr) x wa^T: [q_a or q ; c_kv ; k_pe] before norms and rope */
    float *qa_rstd;    /* (N,) q-LoRA only */
    float *qan;        /* (N, rq) q-LoRA only */
    float *q;          /* (N, H, dq) rope applied */
    float *kv_rstd;    /* (N,) */
    float *cn;         /* (N, rkv) */
    float *kpe;        /* (N, dr) rope applied */
    float *kvb;        /* (N, H, dn + dv) */
    float *p;          /* (B, H, T, T) attention probabilities */
    float *o;          /* (N, H, dv) */
} ds3_mla_act;
typedef struct ds3_mla_scratch {
    float *dO;         /* (N, H*dv) */
    float *dq;         /* (N, H, dq) */
    float *dkvb;       /* (N, H, dn + dv) */
    float *dkpe_h;     /* (N, H, dr) */
    float *dcn;        /* (N, rkv) */
    float *dqan;       /* (N, rq) */
    float *da;         /* (N, n1 + rkv + dr) */
} ds3_mla_scratch;
/* Per-thread scratch floats (ctx->tbuf) the training attention needs for sequences of T. */
size_t ds3_mla_train_tbuf_floats(const ds3_config *c, int T);
void ds3_mla_fwd_t(ds3_ctx *ctx, const ds3_config *c, const ds3_tlayer *w, const float *rope_inv_freq,
                   const float *x, int B, int T, float *out, ds3_mla_act *act);
/* dx (N, d) written. */
void ds3_mla_bwd(ds3_ctx *ctx, const ds3_config *c, const ds3_tlayer *w, ds3_tlayer *gw, const float *rope_inv_freq,
                 const float *x, int B, int T, const float *dout, float *dx, const ds3_mla_act *act,
                 ds3_mla_scratch *sc);

#endif
