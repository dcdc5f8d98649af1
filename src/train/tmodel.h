/* tmodel.h -- a DeepSeek-V3-architecture model for training: f32 master weights in one
 * allocation (a table of named tensors in the Hugging Face naming), gradients mirroring them,
 * and the activations of one batch of B sequences of T tokens, in the spirit of llm.c's
 * ParameterTensors / ActivationTensors. The step runs the main model, the MTP module (depth 1,
 * spec 6.3) and the balance terms (spec 7.1, 7.2) forward, then everything backward.
 *
 * Losses (spec 7.4): L = CE_main + lambda * CE_mtp + sum over MoE layers of L_bal, where CE_mtp is
 * the mean over positions that have a target two tokens ahead (the last position of each sequence
 * has none), and L_bal is the sequence-wise loss (DS3_BAL_SEQ, alpha per spec 7.2) or a classic
 * batch-wise auxiliary loss (DS3_BAL_AUX: the same formula over all N tokens of the batch).
 * Embedding and output head are shared by the main model and the MTP module.
 *
 * Threads: a model owns its pool; results depend only on the inputs (not on the thread count
 * for the kernels used here; the step is bit-reproducible for a given thread count). */
#ifndef DS3_TMODEL_H
#define DS3_TMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "nn/nn.h"

enum { DS3_BAL_NONE = 0, DS3_BAL_SEQ = 1, DS3_BAL_AUX = 2 };

typedef struct ds3_tinfo {
    char name[112];
    int ndim;
    int64_t shape[2];
    size_t off, n;        /* floats into params / grads */
    int decay;            /* weight decay applies (matrices) */
    int trainable;        /* 0: e_score_correction_bias (set by the bias update, not AdamW) */
} ds3_tinfo;

typedef struct ds3_tlayer_act {
    float *xn1, *rstd1, *h_mid, *xn2, *rstd2;   /* (N,d), (N,), (N,d), (N,d), (N,) */
    ds3_mla_act mla;
    float *ffn_gu, *ffn_a;                      /* dense: (N, 2*inter), (N, inter) */
    ds3_moe_act moe;
} ds3_tlayer_act;

typedef struct ds3_tstats {
    double loss;       /* mean main cross-entropy */
    double mtp_loss;   /* mean MTP cross-entropy (unweighted), 0 without MTP */
    double bal_loss;   /* sum over MoE layers of the balance loss (alpha included) */
    double total;      /* loss + lambda mtp_loss + bal_loss */
    int64_t n_tok, n_mtp;
} ds3_tstats;

typedef struct ds3_tmodel {
    ds3_config cfg;
    int use_mtp;                 /* cfg.num_nextn_predict_layers > 0 (depth 1 is trained) */
    int Bmax, T, nth;
    /* parameters */
    size_t n_params;
    float *params, *grads;
    ds3_tinfo *tensors;
    int n_tensors, cap_tensors;
    float *embed, *final_norm, *head;
    ds3_tlayer *layers, *glayers;        /* (L + use_mtp,): the MTP block last */
    ds3_tffn *exp_mem, *gexp_mem;
    float *rope_inv_freq;
    /* training objective */
    int bal_mode;
    float bal_alpha, mtp_lambda;
    /* loads: (n_moe, Nr) expert assignment counts accumulated by every forward */
    int n_moe, *moe_index;               /* moe_index[l] = row in loads or -1 */
    int64_t *loads;
    /* activations */
    ds3_ctx ctx;
    float **hs;                          /* (L+1) residual streams (N, d); hs[0] = embeddings */
    ds3_tlayer_act *acts;                /* (L + use_mtp,) */
    float *hf, *rstd_f;                  /* final norm output */
    float *logits, *row_loss;            /* (N, V), (N,) */
    float *dhf, *dh, *dxn, *tmp;         /* (N, d) */
    float *dgu, *dfa;                    /* (N, 2*inter), (N, inter) dense FFN scratch */
    ds3_mla_scratch mla_sc;
    ds3_moe_scratch moe_sc;
    /* MTP */
    int32_t *mtp_tgt, *mtp_nxt;          /* (N,) */
    float *e, *rstd_e, *rstd_hn, *cat, *dcat, *z0, *z1, *zf, *rstd_z, *dzf, *dz;
} ds3_tmodel;

/* Build a model for config c with batches of up to Bmax sequences of T tokens; weights zero. */
ds3_tmodel *ds3_tmodel_new(const ds3_config *c, int Bmax, int T, int n_threads, char *err, size_t errlen);
void ds3_tmodel_free(ds3_tmodel *m);
/* Random init: matrices N(0, std), norms 1, biases 0 (spec 7.5), from a seed. */
void ds3_tmodel_init(ds3_tmodel *m, uint64_t seed, float std);
/* Load every tensor of the table from a checkpoint folder (f32/bf16/f16 converted); MTP copies of
 * the embedding and head are ignored. */
int ds3_tmodel_load(ds3_tmodel *m, const char *dir, char *err, size_t errlen);
/* Write model.safetensors (f32) into dir, with the MTP copies of embedding and head. */
int ds3_tmodel_save(const ds3_tmodel *m, const char *path, char *err, size_t errlen);
const ds3_tinfo *ds3_tmodel_find(const ds3_tmodel *m, const char *name);

/* One forward (and, when grad, backward accumulating into grads) over B <= Bmax sequences:
 * inp, tgt (B*T,). Loads accumulate into m->loads. logits_out / mtp_logits_out: NULL or (B*T, V). */
void ds3_tmodel_step(ds3_tmodel *m, const int32_t *inp, const int32_t *tgt, int B, int grad, ds3_tstats *st,
                     float *logits_out, float *mtp_logits_out);
void ds3_tmodel_zero_grad(ds3_tmodel *m);

/* Loss-free balancing (spec 7.1): b_e += gamma * sign(mean load - load_e) per MoE layer, from
 * m->loads (the caller zeroes loads before the step's forward). */
void ds3_tmodel_bias_update(ds3_tmodel *m, float gamma);

/* MaxVio of one MoE layer's loads: max_i load_i / mean load - 1. */
double ds3_maxvio(const int64_t *loads, int Nr);

/* Deterministic RNG (splitmix64): the trainer's only source of randomness. */
static inline uint64_t ds3_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
