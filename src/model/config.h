/* config.h -- the architecture hyper-parameters of a DeepSeek-V3 / V2 checkpoint (HF config.json).
 * Reference: spec/deepseek-v3.md section 1; defaults are those of the HF config classes. */
#ifndef DS3_CONFIG_H
#define DS3_CONFIG_H

#include <jansson.h>

typedef enum { DS3_ARCH_V3 = 0, DS3_ARCH_V2 = 1 } ds3_arch;
typedef enum { DS3_SCORE_SIGMOID = 0, DS3_SCORE_SOFTMAX = 1 } ds3_score_func;
typedef enum { DS3_TOPK_NOAUX_TC = 0, DS3_TOPK_GREEDY = 1, DS3_TOPK_GROUP_LIMITED = 2 } ds3_topk_method;

typedef struct ds3_config {
    ds3_arch arch;
    int vocab_size;
    int hidden_size;            /* d */
    int intermediate_size;      /* dense SwiGLU width */
    int moe_intermediate_size;  /* routed expert width */
    int num_hidden_layers;      /* main blocks; the MTP blocks follow at index num_hidden_layers */
    int first_k_dense_replace;
    int moe_layer_freq;
    int n_heads;
    int q_lora_rank;            /* 0 = plain q_proj */
    int kv_lora_rank;
    int qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int n_routed_experts;       /* 0 = no MoE layers */
    int n_shared_experts;
    int num_experts_per_tok;
    int n_group, topk_group;
    ds3_score_func scoring_func;
    ds3_topk_method topk_method;
    int norm_topk_prob;
    float routed_scaling_factor;
    float rms_norm_eps;
    int max_position_embeddings;
    float rope_theta;
    /* rope_scaling (YaRN); yarn = 0 means plain RoPE */
    int yarn;
    float rope_factor;
    int rope_original_max_pos;
    float beta_fast, beta_slow, mscale, mscale_all_dim;
    int num_nextn_predict_layers;
    int bos_token_id, eos_token_id;
    int tie_word_embeddings;
    int fp8;                    /* quantization_config says fp8 e4m3 with 128x128 blocks */
    /* derived */
    int qk_head_dim;            /* nope + rope */
    float softmax_scale;        /* qk_head_dim^-0.5 * m^2 (YaRN) */
    float rope_cs_scale;        /* multiplier on cos/sin: g(f, mscale) / g(f, mscale_all_dim) (HF) */
} ds3_config;

/* Parse config.json text. `file` names it in messages. Returns 0 or a negative ds3_status. */
int ds3_config_parse(ds3_config *c, const char *json, size_t len, const char *file, char *err, size_t errlen);
int ds3_config_load(ds3_config *c, const char *path, char *err, size_t errlen);
/* Recompute the derived fields (qk_head_dim, softmax_scale, rope_cs_scale) after editing c. */
void ds3_config_derive(ds3_config *c);

/* Is main layer (or MTP layer, index >= num_hidden_layers) l a MoE layer? */
int ds3_config_is_moe(const ds3_config *c, int l);

/* YaRN-corrected inverse frequencies, dr/2 values. */
void ds3_config_rope_inv_freq(const ds3_config *c, float *inv_freq);

/* Serialise to HF config.json form (used by the trainer and converters). Caller json_decref()s. */
json_t *ds3_config_to_json(const ds3_config *c);

#endif
