/* synth.c -- random-weight checkpoints in the Hugging Face layout, written shard by shard (one
 * per block) so memory stays bounded for billion-parameter benchmark models. Files are written
 * atomically by ds3_st_write. Owns only temporary buffers. */
#include "model/synth.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "io/safetensors.h"
#include "util/common.h"

void ds3_synth_bench_config(ds3_config *c) {
    memset(c, 0, sizeof *c);
    c->arch = DS3_ARCH_V3;
    c->vocab_size = 32768;
    c->hidden_size = 1024;
    c->intermediate_size = 2816;
    c->moe_intermediate_size = 448;
    c->num_hidden_layers = 13;
    c->first_k_dense_replace = 1;
    c->moe_layer_freq = 1;
    c->n_heads = 16;
    c->q_lora_rank = 384;
    c->kv_lora_rank = 256;
    c->qk_nope_head_dim = 64;
    c->qk_rope_head_dim = 32;
    c->v_head_dim = 64;
    c->n_routed_experts = 64;
    c->n_shared_experts = 1;
    c->num_experts_per_tok = 8;
    c->n_group = 8;
    c->topk_group = 4;
    c->scoring_func = DS3_SCORE_SIGMOID;
    c->topk_method = DS3_TOPK_NOAUX_TC;
    c->norm_topk_prob = 1;
    c->routed_scaling_factor = 2.5f;
    c->rms_norm_eps = 1e-6f;
    c->max_position_embeddings = 16384;
    c->rope_theta = 10000.0f;
    c->yarn = 1;
    c->rope_factor = 4.0f;
    c->rope_original_max_pos = 4096;
    c->beta_fast = 32.0f;
    c->beta_slow = 1.0f;
    c->mscale = 1.0f;
    c->mscale_all_dim = 1.0f;
    c->num_nextn_predict_layers = 1;
    c->bos_token_id = 0;
    c->eos_token_id = 1;
    ds3_config_derive(c);
}

typedef struct {
    uint64_t s[2];
} rng_t;
static inline uint64_t rng_next(rng_t *r) { /* xorshift128+ */
    uint64_t x = r->s[0], y = r->s[1];
    r->s[0] = y;
    x ^= x << 23;
    r->s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
    return r->s[1] + y;
}
static inline float rng_unif(rng_t *r) { return (float)((rng_next(r) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

typedef struct {
    ds3_st_write_tensor *t;
    void **bufs;
    int n, cap;
    char **names;
} shard;

static void *shard_add(shard *sh, const char *name, int dtype, int64_t r, int64_t c) {
    if (sh->n == sh->cap) {
        sh->cap = sh->cap ? sh->cap * 2 : 64;
        sh->t = realloc(sh->t, (size_t)sh->cap * sizeof *sh->t);
        sh->bufs = realloc(sh->bufs, (size_t)sh->cap * sizeof *sh->bufs);
        sh->names = realloc(sh->names, (size_t)sh->cap * sizeof *sh->names);
    }
    size_t bytes = (size_t)r * (c ? c : 1) * ds3_dtype_size((ds3_dtype)dtype);
    void *b = malloc(bytes ? bytes : 1);
    ds3_st_write_tensor *t = &sh->t[sh->n];
    sh->names[sh->n] = strdup(name);
    t->name = sh->names[sh->n];
    t->dtype = dtype;
    t->ndim = c ? 2 : 1;
    t->shape[0] = r;
    t->shape[1] = c;
    t->data = b;
    sh->bufs[sh->n++] = b;
    return b;
}

static void shard_free(shard *sh) {
    for (int i = 0; i < sh->n; i++) {
        free(sh->bufs[i]);
        free(sh->names[i]);
    }
    free(sh->t);
    free(sh->bufs);
    free(sh->names);
    memset(sh, 0, sizeof *sh);
}

/* A matrix (rows, cols) in dtype dt; FP8 also writes <name>_scale_inv. */
/* mul scales the whole matrix (1 for the plain checkpoint: bit-identical to no scaling). */
static void add_mat_mul(shard *sh, rng_t *r, const char *name, int dt, int64_t rows, int64_t cols, float mul) {
    const float a = sqrtf(3.0f / (float)cols) * mul;
    void *b = shard_add(sh, name, dt, rows, cols);
    const size_t n = (size_t)rows * cols;
    if (dt == DS3_DT_F32) {
        float *p = b;
        for (size_t i = 0; i < n; i++) p[i] = a * rng_unif(r);
    } else if (dt == DS3_DT_BF16) {
        uint16_t *p = b;
        for (size_t i = 0; i < n; i++) p[i] = ds3_f32_to_bf16(a * rng_unif(r));
    } else if (dt == DS3_DT_F16) {
        uint16_t *p = b;
        for (size_t i = 0; i < n; i++) p[i] = ds3_f32_to_f16(a * rng_unif(r));
    } else { /* FP8: values uniform in [-448, 448] times a block scale of a/448 */
        uint8_t *p = b;
        for (size_t i = 0; i < n; i++) p[i] = ds3_f32_to_e4m3(448.0f * rng_unif(r));
        char sn[512];
        snprintf(sn, sizeof sn, "%s_scale_inv", name);
        int64_t br = (rows + 127) / 128, bc = (cols + 127) / 128;
        float *s = shard_add(sh, sn, DS3_DT_F32, br, bc);
        for (int64_t i = 0; i < br * bc; i++) s[i] = a / 448.0f * (1.0f + 0.05f * rng_unif(r));
    }
}
static void add_mat(shard *sh, rng_t *r, const char *name, int dt, int64_t rows, int64_t cols) {
    add_mat_mul(sh, r, name, dt, rows, cols, 1.0f);
}

/* The identity on the first half of the input: (n, 2n) = [I | 0] (eh_proj of the agreeing MTP). */
static void add_eye_half(shard *sh, const char *name, int dt, int64_t n) {
    void *b = shard_add(sh, name, dt, n, 2 * n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < 2 * n; j++) {
            float v = i == j ? 1.0f : 0.0f;
            size_t k = (size_t)i * 2 * n + j;
            if (dt == DS3_DT_F32) ((float *)b)[k] = v;
            else ((uint16_t *)b)[k] = dt == DS3_DT_F16 ? ds3_f32_to_f16(v) : ds3_f32_to_bf16(v);
        }
}

static void add_vec(shard *sh, rng_t *r, const char *name, int dt, int64_t n, float base, float noise) {
    void *b = shard_add(sh, name, dt, n, 0);
    for (int64_t i = 0; i < n; i++) {
        float v = base + noise * rng_unif(r);
        if (dt == DS3_DT_F32) ((float *)b)[i] = v;
        else ((uint16_t *)b)[i] = dt == DS3_DT_F16 ? ds3_f32_to_f16(v) : ds3_f32_to_bf16(v);
    }
}

static void add_ffn(shard *sh, rng_t *r, const char *prefix, int dt, int64_t d, int64_t inter, float down_mul) {
    char n[512];
    snprintf(n, sizeof n, "%s.gate_proj.weight", prefix);
    add_mat(sh, r, n, dt, inter, d);
    snprintf(n, sizeof n, "%s.up_proj.weight", prefix);
    add_mat(sh, r, n, dt, inter, d);
    snprintf(n, sizeof n, "%s.down_proj.weight", prefix);
    add_mat_mul(sh, r, n, dt, d, inter, down_mul);
}

static int write_shard(const char *dir, int idx, int total, shard *sh, json_t *wm, char *err, size_t errlen) {
    char fn[256], path[4096];
    snprintf(fn, sizeof fn, "model-%05d-of-%05d.safetensors", idx + 1, total);
    ds3_path_join(path, sizeof path, dir, fn);
    int rc = ds3_st_write(path, sh->t, sh->n, err, errlen);
    for (int i = 0; i < sh->n; i++) json_object_set_new(wm, sh->t[i].name, json_string(fn));
    shard_free(sh);
    return rc;
}

int ds3_synth_write(const char *dir, const ds3_config *cfg, ds3_dtype wdt, uint64_t seed, char *err, size_t errlen) {
    return ds3_synth_write_opts(dir, cfg, wdt, seed, NULL, err, errlen);
}

int ds3_synth_write_opts(const char *dir, const ds3_config *cfg, ds3_dtype wdt, uint64_t seed, const ds3_synth_opts *o,
                         char *err, size_t errlen) {
    const int agree = o && o->mtp_agree;
    const float bs = agree ? o->block_scale : 1.0f; /* multiplier on every block's output projections */
    ds3_config cc = *cfg, *c = &cc;
    ds3_config_derive(c);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    const int fp8 = wdt == DS3_DT_F8E4M3;
    const int odt = fp8 ? DS3_DT_BF16 : (int)wdt; /* dtype of non-block tensors */
    const int64_t d = c->hidden_size, V = c->vocab_size, H = c->n_heads;
    rng_t r = {{seed * 0x9E3779B97F4A7C15ull + 1, seed ^ 0xD1B54A32D192ED03ull}};
    for (int i = 0; i < 16; i++) rng_next(&r);
    json_t *wm = json_object();
    const int n_blocks = c->num_hidden_layers + c->num_nextn_predict_layers, total = n_blocks + 1;
    shard sh = {0};
    int rc = 0;
    /* agreeing MTP: embedding rows at rms ~1, so block_scale is relative to the token's own part */
    add_mat_mul(&sh, &r, "model.embed_tokens.weight", odt, V, d, agree ? sqrtf((float)d) : 1.0f);
    add_vec(&sh, &r, "model.norm.weight", odt, d, 1.0f, agree ? 0.0f : 0.1f);
    add_mat(&sh, &r, "lm_head.weight", odt, V, d);
    if ((rc = write_shard(dir, 0, total, &sh, wm, err, errlen))) goto out;
    for (int l = 0; l < n_blocks; l++) {
        char p[256], n[512];
        snprintf(p, sizeof p, "model.layers.%d", l);
#define NM(fmt) (snprintf(n, sizeof n, "%s." fmt, p), n)
        add_vec(&sh, &r, NM("input_layernorm.weight"), odt, d, 1.0f, 0.1f);
        add_vec(&sh, &r, NM("post_attention_layernorm.weight"), odt, d, 1.0f, 0.1f);
        if (c->q_lora_rank > 0) {
            add_mat(&sh, &r, NM("self_attn.q_a_proj.weight"), wdt, c->q_lora_rank, d);
            add_vec(&sh, &r, NM("self_attn.q_a_layernorm.weight"), odt, c->q_lora_rank, 1.0f, 0.1f);
            add_mat(&sh, &r, NM("self_attn.q_b_proj.weight"), wdt, H * c->qk_head_dim, c->q_lora_rank);
        } else {
            add_mat(&sh, &r, NM("self_attn.q_proj.weight"), wdt, H * c->qk_head_dim, d);
        }
        add_mat(&sh, &r, NM("self_attn.kv_a_proj_with_mqa.weight"), wdt, c->kv_lora_rank + c->qk_rope_head_dim, d);
        add_vec(&sh, &r, NM("self_attn.kv_a_layernorm.weight"), odt, c->kv_lora_rank, 1.0f, 0.1f);
        add_mat(&sh, &r, NM("self_attn.kv_b_proj.weight"), wdt, H * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank);
        add_mat_mul(&sh, &r, NM("self_attn.o_proj.weight"), wdt, d, H * c->v_head_dim, bs);
        if (ds3_config_is_moe(c, l)) {
            add_mat(&sh, &r, NM("mlp.gate.weight"), odt, c->n_routed_experts, d);
            if (c->topk_method == DS3_TOPK_NOAUX_TC)
                add_vec(&sh, &r, NM("mlp.gate.e_score_correction_bias"), DS3_DT_F32, c->n_routed_experts, 0.0f, 0.01f);
            for (int e = 0; e < c->n_routed_experts; e++) {
                snprintf(n, sizeof n, "%s.mlp.experts.%d", p, e);
                add_ffn(&sh, &r, n, wdt, d, c->moe_intermediate_size, bs);
            }
            if (c->n_shared_experts) {
                snprintf(n, sizeof n, "%s.mlp.shared_experts", p);
                add_ffn(&sh, &r, n, wdt, d, (int64_t)c->n_shared_experts * c->moe_intermediate_size, bs);
            }
        } else {
            snprintf(n, sizeof n, "%s.mlp", p);
            add_ffn(&sh, &r, n, wdt, d, c->intermediate_size, bs);
        }
        if (l >= c->num_hidden_layers) { /* MTP block extras */
            if (agree) { /* z = [I | 0] [enorm(E x); hnorm(h)] = E x (rms ~1, enorm = 1) */
                add_vec(&sh, &r, NM("enorm.weight"), odt, d, 1.0f, 0.0f);
                add_vec(&sh, &r, NM("hnorm.weight"), odt, d, 1.0f, 0.0f);
                add_eye_half(&sh, NM("eh_proj.weight"), odt, d);
                add_vec(&sh, &r, NM("shared_head.norm.weight"), odt, d, 1.0f, 0.0f);
            } else {
                add_vec(&sh, &r, NM("enorm.weight"), odt, d, 1.0f, 0.1f);
                add_vec(&sh, &r, NM("hnorm.weight"), odt, d, 1.0f, 0.1f);
                add_mat(&sh, &r, NM("eh_proj.weight"), odt, d, 2 * d);
                add_vec(&sh, &r, NM("shared_head.norm.weight"), odt, d, 1.0f, 0.1f);
            }
        }
#undef NM
        if ((rc = write_shard(dir, l + 1, total, &sh, wm, err, errlen))) goto out;
    }
    {
        json_t *cj = ds3_config_to_json(c);
        json_object_set_new(cj, "torch_dtype", json_string(wdt == DS3_DT_F32 ? "float32" : wdt == DS3_DT_F16 ? "float16" : "bfloat16"));
        if (fp8)
            json_object_set_new(cj, "quantization_config",
                                json_pack("{s:s,s:s,s:s,s:[i,i]}", "activation_scheme", "dynamic", "fmt", "e4m3",
                                          "quant_method", "fp8", "weight_block_size", 128, 128));
        char *txt = json_dumps(cj, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(cj);
        char path[4096];
        ds3_path_join(path, sizeof path, dir, "config.json");
        rc = ds3_write_file_atomic(path, txt, strlen(txt), err, errlen);
        free(txt);
        if (rc) goto out;
        json_t *idx = json_pack("{s:{},s:O}", "metadata", "weight_map", wm);
        txt = json_dumps(idx, JSON_INDENT(2));
        json_decref(idx);
        ds3_path_join(path, sizeof path, dir, "model.safetensors.index.json");
        rc = ds3_write_file_atomic(path, txt, strlen(txt), err, errlen);
        free(txt);
    }
out:
    shard_free(&sh);
    json_decref(wm);
    return rc;
}
