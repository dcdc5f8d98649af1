/* config.c -- parse and validate HF config.json for model_type deepseek_v3 / deepseek_v2.
 * Reference: spec/deepseek-v3.md section 1 (field table, HF defaults), 3.5 (softmax scale),
 * 4 (YaRN). Absent fields take the HF config class defaults of the model type. Every size is
 * range-checked so later arithmetic (shapes, cache sizes) cannot overflow. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "util/json.h"

#define GET_INT(key, req, def, lo, hi, dst)                                                     \
    do {                                                                                        \
        long v_;                                                                                \
        int rc_ = ds3_json_int(j, key, req, def, lo, hi, &v_, file, err, errlen);              \
        if (rc_) goto fail;                                                                     \
        (dst) = (int)v_;                                                                        \
    } while (0)
#define GET_NUM(obj, key, req, def, lo, hi, dst)                                                \
    do {                                                                                        \
        double v_;                                                                              \
        int rc_ = ds3_json_num(obj, key, req, def, lo, hi, &v_, file, err, errlen);            \
        if (rc_) goto fail;                                                                     \
        (dst) = (float)v_;                                                                      \
    } while (0)

static float yarn_g(float s, float m) { return s <= 1.0f ? 1.0f : 0.1f * m * logf(s) + 1.0f; }

int ds3_config_parse(ds3_config *c, const char *text, size_t len, const char *file, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    json_t *j = ds3_json_parse(text, len, file, err, errlen);
    if (!j) return DS3_ERR_FORMAT;
    int rc = DS3_ERR_FORMAT;
    if (!json_is_object(j)) {
        ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: top level must be a JSON object", file);
        goto fail;
    }
    char mt[64];
    if (ds3_json_str(j, "model_type", 1, NULL, mt, sizeof mt, file, err, errlen)) goto fail;
    if (!strcmp(mt, "deepseek_v3")) c->arch = DS3_ARCH_V3;
    else if (!strcmp(mt, "deepseek_v2")) c->arch = DS3_ARCH_V2;
    else {
        ds3_seterr(err, errlen, DS3_ERR_UNSUPP,
                   "%s: field 'model_type' = '%s' is not supported (expected deepseek_v3 or deepseek_v2)", file, mt);
        rc = DS3_ERR_UNSUPP;
        goto fail;
    }
    const int v3 = c->arch == DS3_ARCH_V3;
    const long BIG = 1 << 20;
    GET_INT("vocab_size", 0, v3 ? 129280 : 102400, 1, 1 << 24, c->vocab_size);
    GET_INT("hidden_size", 0, v3 ? 7168 : 4096, 1, 65536, c->hidden_size);
    GET_INT("intermediate_size", 0, v3 ? 18432 : 11008, 1, BIG, c->intermediate_size);
    GET_INT("moe_intermediate_size", 0, v3 ? 2048 : 1407, 1, BIG, c->moe_intermediate_size);
    GET_INT("num_hidden_layers", 0, v3 ? 61 : 30, 1, 1024, c->num_hidden_layers);
    GET_INT("first_k_dense_replace", 0, v3 ? 3 : 0, 0, 1024, c->first_k_dense_replace);
    GET_INT("moe_layer_freq", 0, 1, 1, 1024, c->moe_layer_freq);
    GET_INT("num_attention_heads", 0, v3 ? 128 : 32, 1, 4096, c->n_heads);
    /* q_lora_rank: null means "no query compression" (V2-Lite), not "use the default". */
    if (json_object_get(j, "q_lora_rank") && json_is_null(json_object_get(j, "q_lora_rank"))) c->q_lora_rank = 0;
    else GET_INT("q_lora_rank", 0, 1536, 0, BIG, c->q_lora_rank);
    GET_INT("kv_lora_rank", 0, 512, 1, BIG, c->kv_lora_rank);
    GET_INT("qk_nope_head_dim", 0, 128, 0, 65536, c->qk_nope_head_dim);
    GET_INT("qk_rope_head_dim", 0, 64, 0, 65536, c->qk_rope_head_dim);
    GET_INT("v_head_dim", 0, 128, 1, 65536, c->v_head_dim);
    GET_INT("n_routed_experts", 0, v3 ? 256 : 0, 0, 65536, c->n_routed_experts);
    GET_INT("n_shared_experts", 0, v3 ? 1 : 0, 0, 65536, c->n_shared_experts);
    GET_INT("num_experts_per_tok", 0, v3 ? 8 : 0, 0, 65536, c->num_experts_per_tok);
    GET_INT("n_group", 0, v3 ? 8 : 1, 1, 65536, c->n_group);
    GET_INT("topk_group", 0, v3 ? 4 : 1, 1, 65536, c->topk_group);
    GET_INT("max_position_embeddings", 0, v3 ? 4096 : 2048, 1, 1 << 30, c->max_position_embeddings);
    GET_INT("num_nextn_predict_layers", 0, 0, 0, 64, c->num_nextn_predict_layers);
    GET_INT("bos_token_id", 0, v3 ? 0 : 100000, -1, 1 << 24, c->bos_token_id);
    GET_INT("eos_token_id", 0, v3 ? 1 : 100001, -1, 1 << 24, c->eos_token_id);
    GET_NUM(j, "routed_scaling_factor", 0, v3 ? 2.5 : 1.0, 0.0, 1e6, c->routed_scaling_factor);
    GET_NUM(j, "rms_norm_eps", 0, 1e-6, 0.0, 1.0, c->rms_norm_eps);
    GET_NUM(j, "rope_theta", 0, 10000.0, 1e-3, 1e12, c->rope_theta);
    if (ds3_json_bool(j, "norm_topk_prob", 0, v3 ? 1 : 0, &c->norm_topk_prob, file, err, errlen)) goto fail;
    if (ds3_json_bool(j, "tie_word_embeddings", 0, 0, &c->tie_word_embeddings, file, err, errlen)) goto fail;

    char s[64];
    if (ds3_json_str(j, "scoring_func", 0, v3 ? "sigmoid" : "softmax", s, sizeof s, file, err, errlen)) goto fail;
    if (!strcmp(s, "sigmoid")) c->scoring_func = DS3_SCORE_SIGMOID;
    else if (!strcmp(s, "softmax")) c->scoring_func = DS3_SCORE_SOFTMAX;
    else {
        ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: field 'scoring_func' = '%s' is not supported", file, s);
        goto fail;
    }
    if (ds3_json_str(j, "topk_method", 0, v3 ? "noaux_tc" : "greedy", s, sizeof s, file, err, errlen)) goto fail;
    if (!strcmp(s, "noaux_tc")) c->topk_method = DS3_TOPK_NOAUX_TC;
    else if (!strcmp(s, "greedy") || !strcmp(s, "gready")) c->topk_method = DS3_TOPK_GREEDY;
    else if (!strcmp(s, "group_limited_greedy")) c->topk_method = DS3_TOPK_GROUP_LIMITED;
    else {
        ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: field 'topk_method' = '%s' is not supported", file, s);
        goto fail;
    }
    if (ds3_json_str(j, "hidden_act", 0, "silu", s, sizeof s, file, err, errlen)) goto fail;
    if (strcmp(s, "silu")) {
        ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: field 'hidden_act' = '%s' is not supported (silu only)", file, s);
        goto fail;
    }

    /* rope_scaling: null/absent = plain RoPE; type yarn (or deepseek_yarn) = YaRN. */
    const json_t *rs = json_object_get(j, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        if (!json_is_object(rs)) {
            ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: field 'rope_scaling' must be an object or null", file);
            goto fail;
        }
        if (ds3_json_str(rs, "type", 0, "", s, sizeof s, file, err, errlen)) goto fail;
        if (!s[0] && ds3_json_str(rs, "rope_type", 0, "", s, sizeof s, file, err, errlen)) goto fail;
        if (!strcmp(s, "yarn") || !strcmp(s, "deepseek_yarn")) {
            c->yarn = 1;
            GET_NUM(rs, "factor", 1, 1.0, 1.0, 1e6, c->rope_factor);
            long l;
            if (ds3_json_int(rs, "original_max_position_embeddings", 0, 4096, 1, 1 << 30, &l, file, err, errlen))
                goto fail;
            c->rope_original_max_pos = (int)l;
            GET_NUM(rs, "beta_fast", 0, 32.0, 0.0, 1e6, c->beta_fast);
            GET_NUM(rs, "beta_slow", 0, 1.0, 0.0, 1e6, c->beta_slow);
            GET_NUM(rs, "mscale", 0, 1.0, 0.0, 1e6, c->mscale);
            GET_NUM(rs, "mscale_all_dim", 0, 0.0, 0.0, 1e6, c->mscale_all_dim);
        } else if (s[0] && strcmp(s, "default") != 0) {
            ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: field 'rope_scaling.type' = '%s' is not supported", file, s);
            rc = DS3_ERR_UNSUPP;
            goto fail;
        }
    }
    const json_t *qc = json_object_get(j, "quantization_config");
    if (qc && json_is_object(qc)) {
        if (ds3_json_str(qc, "quant_method", 0, "", s, sizeof s, file, err, errlen)) goto fail;
        if (!strcmp(s, "fp8")) c->fp8 = 1;
    }

    /* Consistency. */
#define BAD(...)                                                                                \
    do {                                                                                        \
        ds3_seterr(err, errlen, DS3_ERR_FORMAT, __VA_ARGS__);                                  \
        goto fail;                                                                              \
    } while (0)
    if (c->qk_rope_head_dim % 2) BAD("%s: field 'qk_rope_head_dim' = %d must be even", file, c->qk_rope_head_dim);
    c->qk_head_dim = c->qk_nope_head_dim + c->qk_rope_head_dim;
    if (c->qk_head_dim < 1) BAD("%s: fields 'qk_nope_head_dim' + 'qk_rope_head_dim' must be > 0", file);
    if ((long)c->n_heads * c->qk_head_dim > (1L << 24) || (long)c->n_heads * (c->qk_nope_head_dim + c->v_head_dim) > (1L << 24))
        BAD("%s: field 'num_attention_heads' = %d makes the projections absurdly large", file, c->n_heads);
    if (c->n_routed_experts > 0) {
        if (c->num_experts_per_tok < 1 || c->num_experts_per_tok > c->n_routed_experts)
            BAD("%s: field 'num_experts_per_tok' = %d must be in [1, n_routed_experts = %d]", file,
                c->num_experts_per_tok, c->n_routed_experts);
        if (c->n_routed_experts % c->n_group)
            BAD("%s: field 'n_group' = %d must divide n_routed_experts = %d", file, c->n_group, c->n_routed_experts);
        if (c->topk_group > c->n_group)
            BAD("%s: field 'topk_group' = %d must be <= n_group = %d", file, c->topk_group, c->n_group);
        if (c->topk_method != DS3_TOPK_GREEDY && c->n_group > 1 &&
            (long)c->topk_group * (c->n_routed_experts / c->n_group) < c->num_experts_per_tok)
            BAD("%s: field 'topk_group' = %d keeps fewer experts than num_experts_per_tok = %d", file,
                c->topk_group, c->num_experts_per_tok);
    }
    if (c->yarn && c->rope_original_max_pos < 1) BAD("%s: field 'rope_scaling.original_max_position_embeddings' must be > 0", file);
    if (c->rope_theta <= 1.0f) BAD("%s: field 'rope_theta' = %g must be > 1", file, (double)c->rope_theta);
    if (c->yarn && (c->beta_fast <= 0 || c->beta_slow <= 0))
        BAD("%s: fields 'rope_scaling.beta_fast' / 'beta_slow' must be > 0", file);

    ds3_config_derive(c);
    rc = 0;
fail:
    json_decref(j);
    return rc;
}

void ds3_config_derive(ds3_config *c) {
    c->qk_head_dim = c->qk_nope_head_dim + c->qk_rope_head_dim;
    c->softmax_scale = 1.0f / sqrtf((float)c->qk_head_dim);
    c->rope_cs_scale = 1.0f;
    if (c->yarn) {
        if (c->mscale_all_dim > 0) {
            float m = yarn_g(c->rope_factor, c->mscale_all_dim);
            c->softmax_scale *= m * m;
        }
        c->rope_cs_scale = yarn_g(c->rope_factor, c->mscale) / yarn_g(c->rope_factor, c->mscale_all_dim);
    }
}

int ds3_config_load(ds3_config *c, const char *path, char *err, size_t errlen) {
    size_t len;
    char *text = ds3_read_file(path, &len, 16u << 20, err, errlen);
    if (!text) return DS3_ERR_IO;
    int rc = ds3_config_parse(c, text, len, path, err, errlen);
    free(text);
    return rc;
}

int ds3_config_is_moe(const ds3_config *c, int l) {
    return c->n_routed_experts > 0 && l >= c->first_k_dense_replace && l % c->moe_layer_freq == 0;
}

void ds3_config_rope_inv_freq(const ds3_config *c, float *inv_freq) {
    const int d = c->qk_rope_head_dim, half = d / 2;
    const double base = c->rope_theta;
    double low = 0, high = 0;
    if (c->yarn) {
        const double L0 = c->rope_original_max_pos;
        double dfast = d * log(L0 / (c->beta_fast * 2 * M_PI)) / (2 * log(base));
        double dslow = d * log(L0 / (c->beta_slow * 2 * M_PI)) / (2 * log(base));
        low = floor(dfast);
        if (low < 0) low = 0;
        high = ceil(dslow);
        if (high > d - 1) high = d - 1;
        if (low == high) high += 0.001;
    }
    for (int i = 0; i < half; i++) {
        float f = (float)(1.0 / pow(base, (double)(2 * i) / d));
        if (c->yarn) {
            float ramp = (float)((i - low) / (high - low));
            if (ramp < 0) ramp = 0;
            if (ramp > 1) ramp = 1;
            f = f / c->rope_factor * ramp + f * (1.0f - ramp);
        }
        inv_freq[i] = f;
    }
}

json_t *ds3_config_to_json(const ds3_config *c) {
    const int v3 = c->arch == DS3_ARCH_V3;
    json_t *j = json_object();
    json_object_set_new(j, "architectures", json_pack("[s]", v3 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM"));
    json_object_set_new(j, "model_type", json_string(v3 ? "deepseek_v3" : "deepseek_v2"));
    json_object_set_new(j, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(j, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(j, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(j, "moe_intermediate_size", json_integer(c->moe_intermediate_size));
    json_object_set_new(j, "num_hidden_layers", json_integer(c->num_hidden_layers));
    json_object_set_new(j, "first_k_dense_replace", json_integer(c->first_k_dense_replace));
    json_object_set_new(j, "moe_layer_freq", json_integer(c->moe_layer_freq));
    json_object_set_new(j, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(j, "num_key_value_heads", json_integer(c->n_heads));
    json_object_set_new(j, "q_lora_rank", c->q_lora_rank ? json_integer(c->q_lora_rank) : json_null());
    json_object_set_new(j, "kv_lora_rank", json_integer(c->kv_lora_rank));
    json_object_set_new(j, "qk_nope_head_dim", json_integer(c->qk_nope_head_dim));
    json_object_set_new(j, "qk_rope_head_dim", json_integer(c->qk_rope_head_dim));
    json_object_set_new(j, "v_head_dim", json_integer(c->v_head_dim));
    json_object_set_new(j, "n_routed_experts", json_integer(c->n_routed_experts));
    json_object_set_new(j, "n_shared_experts", json_integer(c->n_shared_experts));
    json_object_set_new(j, "num_experts_per_tok", json_integer(c->num_experts_per_tok));
    json_object_set_new(j, "n_group", json_integer(c->n_group));
    json_object_set_new(j, "topk_group", json_integer(c->topk_group));
    json_object_set_new(j, "routed_scaling_factor", json_real(c->routed_scaling_factor));
    json_object_set_new(j, "scoring_func", json_string(c->scoring_func == DS3_SCORE_SIGMOID ? "sigmoid" : "softmax"));
    json_object_set_new(j, "topk_method", json_string(c->topk_method == DS3_TOPK_NOAUX_TC ? "noaux_tc"
                                                     : c->topk_method == DS3_TOPK_GREEDY ? "greedy"
                                                                                         : "group_limited_greedy"));
    json_object_set_new(j, "norm_topk_prob", json_boolean(c->norm_topk_prob));
    json_object_set_new(j, "num_nextn_predict_layers", json_integer(c->num_nextn_predict_layers));
    json_object_set_new(j, "hidden_act", json_string("silu"));
    json_object_set_new(j, "rms_norm_eps", json_real(c->rms_norm_eps));
    json_object_set_new(j, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(j, "max_position_embeddings", json_integer(c->max_position_embeddings));
    if (c->yarn) {
        json_object_set_new(j, "rope_scaling",
                            json_pack("{s:s,s:f,s:i,s:f,s:f,s:f,s:f}", "type", "yarn", "factor", (double)c->rope_factor,
                                      "original_max_position_embeddings", c->rope_original_max_pos, "beta_fast",
                                      (double)c->beta_fast, "beta_slow", (double)c->beta_slow, "mscale",
                                      (double)c->mscale, "mscale_all_dim", (double)c->mscale_all_dim));
    } else {
        json_object_set_new(j, "rope_scaling", json_null());
    }
    json_object_set_new(j, "attention_bias", json_false());
    json_object_set_new(j, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    json_object_set_new(j, "bos_token_id", json_integer(c->bos_token_id));
    json_object_set_new(j, "eos_token_id", json_integer(c->eos_token_id));
    json_object_set_new(j, "torch_dtype", json_string("float32"));
    return j;
}
