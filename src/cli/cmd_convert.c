/* cmd_convert.c -- `ds3 convert -m HF_DIR -o model.gguf --type f16|bf16|f32|q8_0|q4_0|q4_k|q5_k|q6_k`:
 * write a Hugging Face DeepSeek-V3/V2 checkpoint (any dtype ds3 reads, FP8 included) as a GGUF
 * file of llama.cpp's `deepseek2` architecture, exactly in the layout llama.cpp's converter writes
 * (split attn_k_b / attn_v_b MLA, stacked expert tensors, F32 norms and router), with the
 * tokenizer embedded (tokenizer.ggml.*, from tokenizer.json + tokenizer_config.json). Tensors are
 * dequantised row by row and re-encoded while the file is written, so memory stays bounded.
 * Matrices whose row length is not a multiple of the target's block size fall back to Q8_0
 * (rows of 32) or F16. MTP layers are not exported (like llama.cpp's converter).
 * Reference: /work/shared/spec/gguf-deepseek2.md, docs/gguf.md. */
#include <jansson.h>
#include <string.h>

#include "cli/cli.h"
#include "io/gguf.h"
#include "model/hf_convert.h"
#include "kernels/quant.h"
#include "model/model.h"
#include "util/common.h"

static void usage(void) {
    printf("usage: ds3 convert -m HF_DIR -o OUT.gguf [--type TYPE] [--name NAME]\n"
           "       ds3 convert -m HF_DIR -o OUT_DIR --type f32|f16|bf16   (a Hugging Face folder in another dtype)\n\n"
           "Write a Hugging Face DeepSeek-V3/V2 checkpoint as a llama.cpp GGUF file (architecture deepseek2)\n"
           "with its tokenizer embedded.\n\n"
           "  -m, --model DIR   checkpoint folder (config.json, *.safetensors, tokenizer.json)\n"
           "  -o, --out FILE    output .gguf\n"
           "  --type TYPE       f32 | f16 | bf16 | q8_0 | q4_0 | q4_k | q5_k | q6_k (default f16); norms and the\n"
           "                    router stay F32; rows not a multiple of the block size fall back to q8_0/f16\n"
           "  --name NAME       general.name (default: the folder name)\n");
}

/* ---- tensor sources ---- */
enum { SRC_MAT, SRC_EXPERTS, SRC_KB, SRC_VB, SRC_VEC };
typedef struct {
    int kind;
    ds3_dtype out;
    int64_t rows, cols;         /* of the output (all of it: experts stacked, heads stacked) */
    const ds3_mat *m;           /* SRC_MAT, SRC_KB/VB (kv_b) */
    const ds3_layer_w *lw;      /* SRC_EXPERTS */
    int which, n_exp;           /* 0 gate, 1 up, 2 down */
    const float *vec;
    int H, dn, dv, rkv;
} src_t;

static int get_row(src_t *s, int64_t i, float *row, float *cache, int *cached_h) {
    switch (s->kind) {
    case SRC_MAT: ds3_dequant_row(s->m, i, 0, s->cols, row); return 0;
    case SRC_EXPERTS: {
        const int64_t per = s->rows / s->n_exp;
        const ds3_ffn_w *f = &s->lw->experts[i / per];
        const ds3_mat *m = s->which == 0 ? &f->gate : s->which == 1 ? &f->up : &f->down;
        ds3_dequant_row(m, i % per, 0, s->cols, row);
        return 0;
    }
    case SRC_KB: { /* row (h, c) of k_b = column c of W_UK(h) (dn values) */
        const int h = (int)(i / s->rkv), c = (int)(i % s->rkv);
        if (*cached_h != h) {
            for (int j = 0; j < s->dn; j++)
                ds3_dequant_row(s->m, (int64_t)h * (s->dn + s->dv) + j, 0, s->rkv, cache + (size_t)j * s->rkv);
            *cached_h = h;
        }
        for (int j = 0; j < s->dn; j++) row[j] = cache[(size_t)j * s->rkv + c];
        return 0;
    }
    case SRC_VB: {
        const int h = (int)(i / s->dv), j = (int)(i % s->dv);
        ds3_dequant_row(s->m, (int64_t)h * (s->dn + s->dv) + s->dn + j, 0, s->rkv, row);
        return 0;
    }
    default: memcpy(row, s->vec, (size_t)s->cols * sizeof(float)); return 0;
    }
}

static int fill(void *ctx, void *buf, size_t nbytes, char *err, size_t errlen) {
    src_t *s = ctx;
    float *row = malloc((size_t)s->cols * sizeof *row);
    float *cache = s->kind == SRC_KB ? malloc((size_t)s->dn * s->rkv * sizeof *cache) : NULL;
    if (!row || (s->kind == SRC_KB && !cache)) {
        free(row);
        free(cache);
        return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory");
    }
    const size_t rb = ds3_row_bytes(s->out, s->cols);
    int cached_h = -1;
    for (int64_t i = 0; i < s->rows; i++) {
        get_row(s, i, row, cache, &cached_h);
        uint8_t *dst = (uint8_t *)buf + (size_t)i * rb;
        if (s->out == DS3_DT_F32) memcpy(dst, row, rb);
        else if (s->out == DS3_DT_F16)
            for (int64_t k = 0; k < s->cols; k++) ((uint16_t *)dst)[k] = ds3_f32_to_f16(row[k]);
        else if (s->out == DS3_DT_BF16)
            for (int64_t k = 0; k < s->cols; k++) ((uint16_t *)dst)[k] = ds3_f32_to_bf16(row[k]);
        else ds3_q_quantize_row(s->out, row, s->cols, dst);
    }
    free(row);
    free(cache);
    (void)nbytes;
    return 0;
}

typedef struct {
    ds3_gguf_writer *w;
    ds3_dtype target;
    src_t *srcs;
    int n, cap;
} conv;

static ds3_dtype pick(ds3_dtype target, int64_t cols) {
    if (!DS3_DT_IS_QUANT(target)) return target;
    if (cols % ds3_q_blck(target) == 0) return target;
    if (cols % 32 == 0) return DS3_DT_Q8_0;
    return DS3_DT_F16;
}

static src_t *add(conv *c, const char *name, src_t s, int n_dims, int64_t n3) {
    if (c->n == c->cap) return NULL; /* sized up front */
    src_t *p = &c->srcs[c->n++];
    *p = s;
    int64_t ne[3] = {s.cols, n_dims >= 2 ? (n_dims == 3 ? s.rows / n3 : s.rows) : 1, n3};
    ds3_gguf_w_tensor_cb(c->w, name, (uint32_t)ds3_dtype_to_ggml(s.out), n_dims, ne, ds3_row_bytes(s.out, s.cols) * (size_t)s.rows,
                         fill, p);
    return p;
}

static void add_mat(conv *c, const char *name, const ds3_mat *m, int force_f32) {
    src_t s = {.kind = SRC_MAT, .m = m, .rows = m->rows, .cols = m->cols};
    s.out = force_f32 ? DS3_DT_F32 : pick(c->target, m->cols);
    add(c, name, s, 2, 1);
}
static void add_vec(conv *c, const char *name, const float *v, int64_t n) {
    src_t s = {.kind = SRC_VEC, .vec = v, .rows = 1, .cols = n, .out = DS3_DT_F32};
    add(c, name, s, 1, 1);
}

/* ---- tokenizer ---- */
static const char *DSV3_SPLIT3 =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

static const char *pre_name(const json_t *pt) {
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (!type) return "default";
    if (!strcmp(type, "ByteLevel")) return json_is_false(json_object_get(pt, "use_regex")) ? "default" : "gpt2";
    if (!strcmp(type, "Sequence")) {
        const json_t *arr = json_object_get(pt, "pretokenizers");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            const json_t *p = json_array_get(arr, i);
            const char *re = json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
            if (re && !strcmp(re, DSV3_SPLIT3)) return "deepseek-v3";
        }
    }
    return "default";
}

static const char *tok_content(const json_t *t) {
    if (json_is_string(t)) return json_string_value(t);
    return json_string_value(json_object_get(t, "content"));
}

static int add_tokenizer(ds3_gguf_writer *w, const char *dir, const ds3_config *cfg, char *err, size_t errlen) {
    char path[4200];
    ds3_path_join(path, sizeof path, dir, "tokenizer.json");
    json_error_t je;
    json_t *tj = json_load_file(path, 0, &je);
    if (!tj) { /* llama.cpp still needs the key: "no_vocab" = a model without a vocabulary */
        fprintf(stderr, "ds3 convert: note: %s: no tokenizer embedded (%s)\n", path, je.text);
        ds3_gguf_w_str(w, "tokenizer.ggml.model", "no_vocab");
        return 0;
    }
    ds3_path_join(path, sizeof path, dir, "tokenizer_config.json");
    json_t *tc = json_load_file(path, 0, &je);
    const json_t *model = json_object_get(tj, "model"), *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges"), *added = json_object_get(tj, "added_tokens");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    int rc = 0;
    if (!mtype || strcmp(mtype, "BPE") || !json_is_object(vocab)) {
        rc = ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s/tokenizer.json: only byte-level BPE tokenizers can be embedded", dir);
        goto out;
    }
    const int64_t V = cfg->vocab_size;
    char **toks = calloc((size_t)V, sizeof *toks);
    int32_t *types = calloc((size_t)V, sizeof *types);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)vocab, k, v) {
        json_int_t id = json_integer_value(v);
        if (id >= 0 && id < V) {
            toks[id] = strdup(k);
            types[id] = 1;
        }
    }
    int32_t bos = cfg->bos_token_id, eos = cfg->eos_token_id;
    const char *bos_s = tc ? tok_content(json_object_get(tc, "bos_token")) : NULL;
    const char *eos_s = tc ? tok_content(json_object_get(tc, "eos_token")) : NULL;
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        json_int_t id = json_integer_value(json_object_get(a, "id"));
        const char *c = json_string_value(json_object_get(a, "content"));
        if (!c || id < 0 || id >= V) continue;
        free(toks[id]);
        toks[id] = strdup(c);
        types[id] = json_is_true(json_object_get(a, "special")) ? 3 : 4;
        if (bos_s && !strcmp(c, bos_s)) bos = (int32_t)id;
        if (eos_s && !strcmp(c, eos_s)) eos = (int32_t)id;
    }
    for (int64_t i = 0; i < V; i++)
        if (!toks[i]) {
            char b[32];
            snprintf(b, sizeof b, "[PAD%lld]", (long long)i);
            toks[i] = strdup(b);
            types[i] = 5; /* unused */
        }
    size_t nm = json_array_size(merges);
    char **ms = calloc(nm ? nm : 1, sizeof *ms);
    for (size_t i = 0; i < nm; i++) {
        const json_t *m = json_array_get(merges, i);
        if (json_is_string(m)) ms[i] = strdup(json_string_value(m));
        else {
            const char *a = json_string_value(json_array_get(m, 0)), *b = json_string_value(json_array_get(m, 1));
            size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0;
            ms[i] = malloc(la + lb + 2);
            snprintf(ms[i], la + lb + 2, "%s %s", a ? a : "", b ? b : "");
        }
    }
    ds3_gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
    ds3_gguf_w_str(w, "tokenizer.ggml.pre", pre_name(json_object_get(tj, "pre_tokenizer")));
    ds3_gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, NULL, (uint64_t)V);
    ds3_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)V);
    ds3_gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, NULL, nm);
    if (bos >= 0) ds3_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (eos >= 0) ds3_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    int add_bos = 1;
    if (tc && json_is_boolean(json_object_get(tc, "add_bos_token"))) add_bos = json_is_true(json_object_get(tc, "add_bos_token"));
    ds3_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", add_bos && bos >= 0);
    ds3_gguf_w_bool(w, "tokenizer.ggml.add_eos_token", 0);
    const char *tmpl = tc ? json_string_value(json_object_get(tc, "chat_template")) : NULL;
    if (tmpl) ds3_gguf_w_str(w, "tokenizer.chat_template", tmpl);
    for (int64_t i = 0; i < V; i++) free(toks[i]);
    for (size_t i = 0; i < nm; i++) free(ms[i]);
    free(toks);
    free(types);
    free(ms);
out:
    json_decref(tj);
    json_decref(tc);
    return rc;
}

static const struct {
    const char *name;
    ds3_dtype dt;
    uint32_t ftype;
} types_tab[] = {{"f32", DS3_DT_F32, 0},   {"f16", DS3_DT_F16, 1},   {"bf16", DS3_DT_BF16, 32}, {"q8_0", DS3_DT_Q8_0, 7},
                 {"q4_0", DS3_DT_Q4_0, 2}, {"q4_k", DS3_DT_Q4_K, 14}, {"q5_k", DS3_DT_Q5_K, 16}, {"q6_k", DS3_DT_Q6_K, 18}};

int ds3_cmd_convert(int argc, char **argv) {
    const char *C = "convert", *dir = NULL, *out = NULL, *tname = "f16", *name = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!v) return cli_usage_error(C, "%s needs a value", a); dir = v; i++; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) { if (!v) return cli_usage_error(C, "%s needs a value", a); out = v; i++; }
        else if (!strcmp(a, "--type")) { if (!v) return cli_usage_error(C, "%s needs a value", a); tname = v; i++; }
        else if (!strcmp(a, "--name")) { if (!v) return cli_usage_error(C, "%s needs a value", a); name = v; i++; }
        else return cli_usage_error(C, "unknown option '%s'", a);
    }
    if (!dir || !out) return cli_usage_error(C, "-m DIR and -o OUT are required");
    {   /* -o not ending in .gguf: a Hugging Face folder in another float dtype */
        size_t ol = strlen(out);
        if (ol < 5 || strcmp(out + ol - 5, ".gguf") != 0) {
            ds3_dtype dt = !strcasecmp(tname, "bf16") ? DS3_DT_BF16 : !strcasecmp(tname, "f16") ? DS3_DT_F16
                         : !strcasecmp(tname, "f32") ? DS3_DT_F32 : DS3_DT_COUNT;
            if (dt == DS3_DT_COUNT) return cli_usage_error(C, "--type: a Hugging Face output folder takes f32, f16 or bf16");
            char e2[DS3_ERR_LEN];
            if (ds3_hf_convert(dir, out, dt, e2, sizeof e2)) { fprintf(stderr, "ds3 convert: %s\n", e2); return 1; }
            fprintf(stderr, "ds3 convert: wrote %s (%s)\n", out, tname);
            return 0;
        }
    }
    int ti = -1;
    for (size_t i = 0; i < sizeof types_tab / sizeof types_tab[0]; i++)
        if (!strcasecmp(tname, types_tab[i].name)) ti = (int)i;
    if (ti < 0) return cli_usage_error(C, "--type: '%s' is not f32, f16, bf16, q8_0, q4_0, q4_k, q5_k or q6_k", tname);
    char err[DS3_ERR_LEN];
    ds3_model_params mp = ds3_model_default_params();
    mp.load_mtp = 0;
    ds3_model *m = ds3_model_load(dir, &mp, err, sizeof err);
    if (!m) { fprintf(stderr, "ds3 convert: %s\n", err); return 1; }
    if (m->gguf) { fprintf(stderr, "ds3 convert: %s is already a GGUF file\n", dir); ds3_model_free(m); return 1; }
    const ds3_config *c = &m->cfg;
    ds3_gguf_writer *w = ds3_gguf_writer_new();
    conv cv = {w, types_tab[ti].dt, NULL, 0, 0};
    cv.cap = 8 + c->num_hidden_layers * 32;
    cv.srcs = calloc((size_t)cv.cap, sizeof *cv.srcs);
    if (!name) {
        const char *s = strrchr(dir, '/');
        name = s && s[1] ? s + 1 : dir;
    }
    if (c->num_hidden_layers == 26 || c->num_hidden_layers == 27)
        fprintf(stderr, "ds3 convert: warning: llama.cpp treats deepseek2 models with %d layers as 'lite' and ignores q_lora_rank\n",
                c->num_hidden_layers);
    if (c->arch == DS3_ARCH_V2 && c->n_group > 1 && c->topk_method == DS3_TOPK_GROUP_LIMITED)
        fprintf(stderr, "ds3 convert: warning: llama.cpp scores expert groups by their top-2 sum, not by their max as "
                        "DeepSeek-V2's group_limited_greedy does\n");
    const char *P = "deepseek2.";
    char k[256];
#define KEY(s) (snprintf(k, sizeof k, "%s%s", P, s), k)
    ds3_gguf_w_str(w, "general.architecture", "deepseek2");
    ds3_gguf_w_str(w, "general.name", name);
    ds3_gguf_w_u32(w, "general.file_type", types_tab[ti].ftype);
    ds3_gguf_w_u32(w, "general.quantization_version", 2);
    ds3_gguf_w_u32(w, KEY("context_length"), (uint32_t)c->max_position_embeddings);
    ds3_gguf_w_u32(w, KEY("embedding_length"), (uint32_t)c->hidden_size);
    ds3_gguf_w_u32(w, KEY("block_count"), (uint32_t)c->num_hidden_layers);
    ds3_gguf_w_u32(w, KEY("feed_forward_length"), (uint32_t)c->intermediate_size);
    ds3_gguf_w_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads);
    ds3_gguf_w_u32(w, KEY("attention.head_count_kv"), 1);
    ds3_gguf_w_u32(w, KEY("attention.key_length"), (uint32_t)(c->kv_lora_rank + c->qk_rope_head_dim));
    ds3_gguf_w_u32(w, KEY("attention.value_length"), (uint32_t)c->kv_lora_rank);
    ds3_gguf_w_u32(w, KEY("attention.key_length_mla"), (uint32_t)c->qk_head_dim);
    ds3_gguf_w_u32(w, KEY("attention.value_length_mla"), (uint32_t)c->v_head_dim);
    ds3_gguf_w_u32(w, KEY("attention.q_lora_rank"), (uint32_t)c->q_lora_rank);
    ds3_gguf_w_u32(w, KEY("attention.kv_lora_rank"), (uint32_t)c->kv_lora_rank);
    ds3_gguf_w_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_norm_eps);
    ds3_gguf_w_u32(w, KEY("rope.dimension_count"), (uint32_t)c->qk_rope_head_dim);
    ds3_gguf_w_f32(w, KEY("rope.freq_base"), c->rope_theta);
    if (c->yarn) {
        ds3_gguf_w_str(w, KEY("rope.scaling.type"), "yarn");
        ds3_gguf_w_f32(w, KEY("rope.scaling.factor"), c->rope_factor);
        ds3_gguf_w_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)c->rope_original_max_pos);
        ds3_gguf_w_f32(w, KEY("rope.scaling.yarn_log_multiplier"), 0.1f * c->mscale_all_dim);
    }
    const int n_dense = c->n_routed_experts ? (c->first_k_dense_replace < c->num_hidden_layers ? c->first_k_dense_replace
                                                                                              : c->num_hidden_layers)
                                            : c->num_hidden_layers;
    ds3_gguf_w_u32(w, KEY("leading_dense_block_count"), (uint32_t)n_dense);
    ds3_gguf_w_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size);
    if (c->n_routed_experts) {
        ds3_gguf_w_u32(w, KEY("expert_count"), (uint32_t)c->n_routed_experts);
        ds3_gguf_w_u32(w, KEY("expert_used_count"), (uint32_t)c->num_experts_per_tok);
        ds3_gguf_w_u32(w, KEY("expert_shared_count"), (uint32_t)c->n_shared_experts);
        ds3_gguf_w_u32(w, KEY("expert_feed_forward_length"), (uint32_t)c->moe_intermediate_size);
        if (c->n_group > 1 && c->topk_method != DS3_TOPK_GREEDY) {
            ds3_gguf_w_u32(w, KEY("expert_group_count"), (uint32_t)c->n_group);
            ds3_gguf_w_u32(w, KEY("expert_group_used_count"), (uint32_t)c->topk_group);
        }
        ds3_gguf_w_u32(w, KEY("expert_gating_func"), c->scoring_func == DS3_SCORE_SIGMOID ? 2 : 1);
        /* llama.cpp normalises (if asked) and then always scales; V2 does one or the other */
        const int v2_norm = c->arch == DS3_ARCH_V2 && c->num_experts_per_tok > 1 && c->norm_topk_prob;
        const int norm = c->arch == DS3_ARCH_V3 ? c->norm_topk_prob : v2_norm;
        ds3_gguf_w_f32(w, KEY("expert_weights_scale"), v2_norm ? 1.0f : c->routed_scaling_factor);
        ds3_gguf_w_bool(w, KEY("expert_weights_norm"), norm);
    }
    ds3_gguf_w_u32(w, KEY("nextn_predict_layers"), 0);
#undef KEY
    int rc = add_tokenizer(w, dir, c, err, sizeof err);
    if (rc) { fprintf(stderr, "ds3 convert: %s\n", err); goto done; }
    add_mat(&cv, "token_embd.weight", &m->embed, 0);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const ds3_layer_w *lw = &m->layers[l];
        char n[128];
#define N(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        add_vec(&cv, N("attn_norm.weight"), lw->attn_norm, c->hidden_size);
        if (c->q_lora_rank > 0) {
            add_mat(&cv, N("attn_q_a.weight"), &lw->q_a, 0);
            add_vec(&cv, N("attn_q_a_norm.weight"), lw->q_a_norm, c->q_lora_rank);
            add_mat(&cv, N("attn_q_b.weight"), &lw->q_b, 0);
        } else {
            add_mat(&cv, N("attn_q.weight"), &lw->q, 0);
        }
        add_mat(&cv, N("attn_kv_a_mqa.weight"), &lw->kv_a, 0);
        add_vec(&cv, N("attn_kv_a_norm.weight"), lw->kv_a_norm, c->kv_lora_rank);
        src_t kb = {.kind = SRC_KB, .m = &lw->kv_b, .rows = (int64_t)c->n_heads * c->kv_lora_rank, .cols = c->qk_nope_head_dim,
                    .H = c->n_heads, .dn = c->qk_nope_head_dim, .dv = c->v_head_dim, .rkv = c->kv_lora_rank};
        kb.out = pick(cv.target, kb.cols);
        add(&cv, N("attn_k_b.weight"), kb, 3, c->n_heads);
        src_t vb = kb;
        vb.kind = SRC_VB;
        vb.rows = (int64_t)c->n_heads * c->v_head_dim;
        vb.cols = c->kv_lora_rank;
        vb.out = pick(cv.target, vb.cols);
        add(&cv, N("attn_v_b.weight"), vb, 3, c->n_heads);
        add_mat(&cv, N("attn_output.weight"), &lw->o, 0);
        add_vec(&cv, N("ffn_norm.weight"), lw->ffn_norm, c->hidden_size);
        if (!lw->is_moe) {
            add_mat(&cv, N("ffn_gate.weight"), &lw->dense.gate, 0);
            add_mat(&cv, N("ffn_up.weight"), &lw->dense.up, 0);
            add_mat(&cv, N("ffn_down.weight"), &lw->dense.down, 0);
        } else {
            const int E = c->n_routed_experts, I = c->moe_intermediate_size, d = c->hidden_size;
            add_mat(&cv, N("ffn_gate_inp.weight"), &lw->router, 1);
            if (lw->router_bias) add_vec(&cv, N("exp_probs_b.bias"), lw->router_bias, E);
            const char *en[3] = {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"};
            for (int wi = 0; wi < 3; wi++) {
                src_t s = {.kind = SRC_EXPERTS, .lw = lw, .which = wi, .n_exp = E, .rows = (int64_t)E * (wi < 2 ? I : d),
                           .cols = wi < 2 ? d : I};
                s.out = pick(cv.target, s.cols);
                add(&cv, N(en[wi]), s, 3, E);
            }
            if (lw->has_shared) {
                add_mat(&cv, N("ffn_gate_shexp.weight"), &lw->shared.gate, 0);
                add_mat(&cv, N("ffn_up_shexp.weight"), &lw->shared.up, 0);
                add_mat(&cv, N("ffn_down_shexp.weight"), &lw->shared.down, 0);
            }
        }
#undef N
    }
    add_vec(&cv, "output_norm.weight", m->final_norm, c->hidden_size);
    if (m->head.data != m->embed.data) add_mat(&cv, "output.weight", &m->head, 0);
    rc = ds3_gguf_writer_write(w, out, err, sizeof err);
    if (rc) fprintf(stderr, "ds3 convert: %s\n", err);
    else fprintf(stderr, "ds3 convert: wrote %s (%s, %d tensors)\n", out, types_tab[ti].name, cv.n);
done:
    ds3_gguf_writer_free(w);
    free(cv.srcs);
    ds3_model_free(m);
    return rc ? 1 : 0;
}
