/* model.h -- internal definition of ds3_model: the config plus every weight bound to its role.
 * Weights are ds3_mat views into the checkpoint (mapped or loaded; never converted). Small
 * vectors (norm weights, router bias) are converted to owned f32 arrays at load.
 * Reference: spec/deepseek-v3.md sections 2, 3.1, 5.1, 6.1, 9.1. */
#ifndef DS3_MODEL_H
#define DS3_MODEL_H

#include "ds3.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "model/config.h"

typedef struct {
    ds3_mat gate, up, down;  /* (I, d), (I, d), (d, I) */
} ds3_ffn_w;

typedef struct ds3_layer_w {
    float *attn_norm;        /* (d,) input_layernorm */
    float *ffn_norm;         /* (d,) post_attention_layernorm */
    /* MLA */
    ds3_mat q_a;             /* (rq, d)          q-LoRA only */
    float *q_a_norm;         /* (rq,)            q-LoRA only */
    ds3_mat q_b;             /* (H*dq, rq)       q-LoRA only */
    ds3_mat q;               /* (H*dq, d)        plain q_proj */
    ds3_mat kv_a;            /* (rkv+dr, d) */
    float *kv_a_norm;        /* (rkv,) */
    ds3_mat kv_b;            /* (H*(dn+dv), rkv): per head [W_UK (dn rows) | W_UV (dv rows)] */
    ds3_mat o;               /* (d, H*dv) */
    /* GGUF split MLA layout (llama.cpp attn_k_b / attn_v_b); when k_b.data is set, kv_b is unset:
     * k_b (H*rkv, dn): rows [h*rkv, (h+1)*rkv) = W_UK(h)^T;  v_b (H*dv, rkv): rows [h*dv, ..) = W_UV(h) */
    ds3_mat k_b, v_b;
    /* FFN: dense or MoE */
    int is_moe;
    ds3_ffn_w dense;         /* dense layers */
    ds3_mat router;          /* (Nr, d) */
    float *router_bias;      /* (Nr,) e_score_correction_bias, or NULL */
    ds3_ffn_w *experts;      /* (Nr,) */
    ds3_ffn_w shared;        /* width Ns*moe_inter; absent when Ns == 0 */
    int has_shared;
    /* MTP only */
    float *enorm, *hnorm;    /* (d,) */
    ds3_mat eh_proj;         /* (d, 2d): columns [0,d) take enorm(emb), [d,2d) take hnorm(h) */
    ds3_mat mtp_embed;       /* (V, d) */
    float *head_norm;        /* (d,) shared_head.norm */
    ds3_mat mtp_head;        /* (V, d) shared_head.head */
} ds3_layer_w;

struct ds3_model {
    char *dir;
    ds3_config cfg;
    ds3_st *st;
    struct ds3_gguf *gguf;   /* set instead of st for a GGUF file (src/model/model_gguf.c) */
    void *repacked;          /* owned: Q8_0x16 copies of a mapped GGUF's Q8_0 matrices, or NULL */
    ds3_mat embed;           /* (V, d) */
    float *final_norm;       /* (d,) */
    ds3_mat head;            /* (V, d) */
    ds3_layer_w *layers;     /* (L,) main blocks */
    ds3_layer_w *mtp;        /* (n_mtp,) MTP blocks, or NULL */
    int n_mtp;
    int n_moe_layers;        /* among main layers */
    float *rope_inv_freq;    /* (dr/2,) */
    int verbose;
};

/* Bind every block through a format-specific layer binder (ctx, w, layer index, is_mtp) and set
 * up the RoPE frequencies. Returns 0 or a negative ds3_status (message left by the binder). */
typedef int (*ds3_bind_layer_fn)(void *ctx, ds3_layer_w *w, int l, int is_mtp);
int ds3_model_bind_blocks(ds3_model *m, int load_mtp, ds3_bind_layer_fn bind, void *ctx);

/* GGUF model files (src/model/model_gguf.c): ds3_model_load calls it for a regular file. */
ds3_model *ds3_model_load_gguf(const char *path, const ds3_model_params *p, char *err, size_t errlen);
/* Release the GGUF mapping of a model (called by ds3_model_free). */
void ds3_model_gguf_close(ds3_model *m);
double ds3_model_gguf_bytes(const ds3_model *m);  /* data bytes of the GGUF file */

#endif
