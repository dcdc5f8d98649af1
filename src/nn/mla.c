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
 * Heads are split across threads; each thread has its own scratch (ctx->tbuf[ith]). */
#include <math.h>
#include <string.h>

#include "nn/nn.h"

size_t ds3_mla_tbuf_floats(const ds3_config *c, int T, int n_ctx) {
    /* wuk (dn, rkv) + qa (T, rkv) + lat (T, rkv) + scores (n_ctx) */
    return (size_t)c->qk_nope_head_dim * c->kv_lora_rank + 2 * (size_t)T * c->kv_lora_rank + (size_t)n_ctx + 64;
}

typedef struct {
    const ds3_ctx *ctx;
    const ds3_config *c;
    const ds3_layer_w *w;
    const float *q;      /* (T, H, dq), rope already applied */
    const float *cache;  /* (n_ctx, rkv + dr) */
    float *o;            /* (T, H, dv) */
    int T, pos0;
} attn_task;

static void attn_worker(void *arg, int ith, int nth) {
    const attn_task *a = arg;
    const ds3_config *c = a->c;
    const int H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    const int rkv = c->kv_lora_rank, dq = dn + dr, ldc = rkv + dr, T = a->T;
    const float scale = c->softmax_scale;
    float *wuk = a->ctx->tbuf[ith];                  /* (dn, rkv) */
    float *qa = wuk + (size_t)dn * rkv;               /* (T, rkv) */
    float *lat = qa + (size_t)T * rkv;                /* (T, rkv) */
    float *sc = lat + (size_t)T * rkv;                /* (n_ctx,) */
    const ds3_mat *kvb = &a->w->kv_b;
    for (int h = ith; h < H; h += nth) {
        const int64_t row0 = (int64_t)h * (dn + dv);
        for (int j = 0; j < dn; j++) ds3_kern->dequant_row(kvb, row0 + j, 0, rkv, wuk + (size_t)j * rkv);
        for (int t = 0; t < T; t++) {
            const float *qn = a->q + ((size_t)t * H + h) * dq;
            float *qat = qa + (size_t)t * rkv;
            memset(qat, 0, (size_t)rkv * sizeof(float));
            for (int j = 0; j < dn; j++) ds3_kern->axpy(rkv, qn[j], wuk + (size_t)j * rkv, qat);
        }
        for (int t = 0; t < T; t++) {
            const float *qpe = a->q + ((size_t)t * H + h) * dq + dn;
            const float *qat = qa + (size_t)t * rkv;
            const int n_keys = a->pos0 + t + 1;
            float mx = -INFINITY;
            for (int s = 0; s < n_keys; s++) {
                const float *kc = a->cache + (size_t)s * ldc;
                float v = scale * (ds3_kern->dot(rkv, qat, kc) + ds3_kern->dot(dr, qpe, kc + rkv));
                sc[s] = v;
                mx = v > mx ? v : mx;
            }
            double sum = 0;
            for (int s = 0; s < n_keys; s++) sum += (sc[s] = expf(sc[s] - mx));
            const float inv = (float)(1.0 / sum);
            float *lt = lat + (size_t)t * rkv;
            memset(lt, 0, (size_t)rkv * sizeof(float));
            for (int s = 0; s < n_keys; s++) ds3_kern->axpy(rkv, sc[s] * inv, a->cache + (size_t)s * ldc, lt);
        }
        ds3_kern->matmul(kvb, row0 + dn, row0 + dn + dv, lat, (size_t)rkv, T, a->o + (size_t)h * dv, (size_t)H * dv);
    }
}

void ds3_mla_fwd(ds3_ctx *ctx, const ds3_config *c, const ds3_layer_w *w, const float *rope_inv_freq,
                 const float *x, int T, int pos0, float *cache, float *out, ds3_mla_buf *b) {
    const int H = c->n_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int rkv = c->kv_lora_rank, dq = dn + dr, ldc = rkv + dr, d = c->hidden_size;
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
    attn_task a = {ctx, c, w, b->q, cache, b->o, T, pos0};
    const double work = (double)H * T * ((double)c->qk_nope_head_dim * rkv * 2 + (double)(pos0 + T) * (ldc + rkv));
    ds3_pool_run_sized(ctx->pool, attn_worker, &a, work);
    ds3_linear_fwd(ctx, &w->o, b->o, T, out);
}
