/* gguf_tok.c -- the tokenizer embedded in a GGUF file (tokenizer.ggml.*) as a Hugging Face
 * tokenizer.json text, so the one tokenizer implementation (src/text/tokenizer.c) serves both
 * formats. Supported: tokenizer.ggml.model = gpt2 (byte-level BPE) with tokens, merges,
 * token_type (3 = control -> special added token, 4 = user-defined -> added token), bos/eos ids,
 * add_bos_token, chat_template; tokenizer.ggml.pre picks the pre-tokenizer: deepseek-v3 (and
 * deepseek3-llm) -> DeepSeek-V3's three Split regexes, deepseek-llm -> DeepSeek LLM's, anything
 * else (gpt2, default, ...) -> GPT-2's ByteLevel regex. Reference: llama.cpp src/llama-vocab.cpp. */
#include <jansson.h>
#include <string.h>

#include "io/gguf.h"
#include "text/tokenizer.h"
#include "util/common.h"

static const char *DSV3[3] = {
    "\\p{N}{1,3}",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};
static const char *DSLLM[4] = {
    "[\r\n]",
    "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf\xc7\x84-\xca\x93\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd\xcd\xbf\xce\x86\xce\x88-\xcf\xb5\xcf\xb7-\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-\xe1\x8f\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd-\xe1\xb2\xbf\xe1\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a\xe1\xb8\x80-\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85\xe1\xbd\x88-\xe1\xbd\x8d\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d\xe1\xbd\x9f-\xe1\xbd\xbd\xe1\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe\xe1\xbf\x82-\xe1\xbf\x84\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93\xe1\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-\xe1\xbf\xbc\xe2\x84\x82\xe2\x84\x87\xe2\x84\x8a-\xe2\x84\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d\xe2\x84\xa4\xe2\x84\xa6\xe2\x84\xa8\xe2\x84\xaa-\xe2\x84\xad\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc-\xe2\x84\xbf\xe2\x85\x85-\xe2\x85\x89\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80-\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2\xb3\xb3\xea\x99\x80-\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1-\xea\x9e\x87\xea\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef\xac\x86\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a\xf0\x90\x90\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0\x90\x93\x98-\xf0\x90\x93\xbb\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2\xa0-\xf0\x91\xa3\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
    "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3\x80\x80-\xe3\x80\x82]+",
    "\\s+$",
};

static json_t *split(const char *re) {
    return json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex", re, "behavior", "Isolated", "invert", 0);
}

static json_t *pretokenizer(const char *pre) {
    json_t *seq = json_array();
    if (!strcmp(pre, "deepseek-v3") || !strcmp(pre, "deepseek3-llm")) {
        for (int i = 0; i < 3; i++) json_array_append_new(seq, split(DSV3[i]));
    } else if (!strcmp(pre, "deepseek-llm")) {
        for (int i = 0; i < 4; i++) json_array_append_new(seq, split(DSLLM[i]));
    } else { /* GPT-2 */
        json_decref(seq);
        return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1);
    }
    json_array_append_new(seq, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
                                         "use_regex", 0));
    return json_pack("{s:s, s:o}", "type", "Sequence", "pretokenizers", seq);
}

int ds3_gguf_tokenizer_json(const ds3_gguf *g, char **out, size_t *len, char **config, size_t *config_len, char *err,
                            size_t errlen) {
    *out = NULL;
    *config = NULL;
    const char *path = ds3_gguf_path(g);
    char model[32] = "", pre[64] = "default";
    int rc = ds3_gguf_get_str(g, "tokenizer.ggml.model", model, sizeof model, err, errlen);
    if (rc < 0) return rc;
    if (rc == 1) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: no embedded tokenizer (key tokenizer.ggml.model)", path);
    if (strcmp(model, "gpt2"))
        return ds3_seterr(err, errlen, DS3_ERR_UNSUPP, "%s: tokenizer.ggml.model = '%s' is not supported (gpt2 byte-level BPE only)",
                          path, model);
    if ((rc = ds3_gguf_get_str(g, "tokenizer.ggml.pre", pre, sizeof pre, err, errlen)) < 0) return rc;
    const ds3_gguf_kv *tk = ds3_gguf_find_kv(g, "tokenizer.ggml.tokens"), *mg = ds3_gguf_find_kv(g, "tokenizer.ggml.merges");
    const ds3_gguf_kv *tt = ds3_gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (!tk || tk->type != GGUF_T_ARRAY || tk->arr_type != GGUF_T_STRING)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tokenizer.ggml.tokens is missing or not a string array", path);
    if (mg && (mg->type != GGUF_T_ARRAY || mg->arr_type != GGUF_T_STRING))
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tokenizer.ggml.merges is not a string array", path);
    if (tt && (tt->type != GGUF_T_ARRAY || (tt->arr_type != GGUF_T_I32 && tt->arr_type != GGUF_T_U32) || tt->arr_n != tk->arr_n))
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tokenizer.ggml.token_type is not an i32 array of %llu", path,
                          (unsigned long long)tk->arr_n);
    uint32_t bos = UINT32_MAX, eos = UINT32_MAX;
    int add_bos = -1, add_eos = 0;
    if ((rc = ds3_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos, err, errlen)) < 0) return rc;
    if ((rc = ds3_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &eos, err, errlen)) < 0) return rc;
    if ((rc = ds3_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, err, errlen)) < 0) return rc;
    if ((rc = ds3_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &add_eos, err, errlen)) < 0) return rc;
    json_t *vocab = json_object(), *added = json_array(), *merges = json_array();
    char *bos_s = NULL, *eos_s = NULL;
    rc = 0;
    for (uint64_t i = 0; i < tk->arr_n && !rc; i++) {
        const ds3_gguf_str *s = &tk->arr_str[i];
        json_t *str = json_stringn(s->s, (size_t)s->n);
        if (!str) {
            rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%llu] is not valid UTF-8", path,
                            (unsigned long long)i);
            break;
        }
        const int64_t type = tt ? ds3_gguf_arr_int(tt, i) : 1;
        if (i == bos) bos_s = strdup(json_string_value(str));
        if (i == eos) eos_s = strdup(json_string_value(str));
        if (type == 3 || type == 4) {
            json_array_append_new(added, json_pack("{s:I, s:o, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)i, "content", str,
                                                   "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", type == 4,
                                                   "special", type == 3));
        } else if (type == 5) { /* unused slot */
            json_decref(str);
        } else {
            json_object_setn_new(vocab, s->s, (size_t)s->n, json_integer((json_int_t)i));
            json_decref(str);
        }
    }
    for (uint64_t i = 0; mg && i < mg->arr_n && !rc; i++) {
        json_t *m = json_stringn(mg->arr_str[i].s, (size_t)mg->arr_str[i].n);
        if (!m) rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu] is not valid UTF-8", path, (unsigned long long)i);
        else json_array_append_new(merges, m);
    }
    if (rc) {
        json_decref(vocab);
        json_decref(added);
        json_decref(merges);
        free(bos_s);
        free(eos_s);
        return rc;
    }
    json_t *tj = json_pack("{s:s, s:n, s:n, s:o, s:{s:s, s:[]}, s:o, s:n, s:{s:s, s:b, s:b, s:b}, s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:o, s:o}}",
                           "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer", "type", "Sequence",
                           "normalizers", "pre_tokenizer", pretokenizer(pre), "post_processor", "decoder", "type", "ByteLevel",
                           "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1, "model", "type", "BPE", "dropout",
                           "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                           "vocab", vocab, "merges", merges);
    json_t *cj = json_object();
    if (bos_s) json_object_set_new(cj, "bos_token", json_string(bos_s));
    if (eos_s) json_object_set_new(cj, "eos_token", json_string(eos_s));
    json_object_set_new(cj, "add_bos_token", json_boolean(add_bos < 0 ? bos_s != NULL : add_bos && bos_s));
    json_object_set_new(cj, "add_eos_token", json_boolean(add_eos && eos_s));
    const ds3_gguf_kv *ct = ds3_gguf_find_kv(g, "tokenizer.chat_template");
    if (ct && ct->type == GGUF_T_STRING) {
        json_t *t = json_stringn(ct->v.str.s, (size_t)ct->v.str.n);
        if (t) json_object_set_new(cj, "chat_template", t);
    }
    free(bos_s);
    free(eos_s);
    *out = tj ? json_dumps(tj, JSON_COMPACT) : NULL;
    *config = json_dumps(cj, JSON_COMPACT);
    json_decref(tj);
    json_decref(cj);
    if (!*out || !*config) {
        free(*out);
        free(*config);
        *out = *config = NULL;
        return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory building the tokenizer", path);
    }
    *len = strlen(*out);
    *config_len = strlen(*config);
    return 0;
}

ds3_tokenizer *ds3_gguf_load_tokenizer(const char *path, char *err, size_t errlen) {
    ds3_gguf *g = NULL;
    if (ds3_gguf_open(path, 1, 0, &g, err, errlen)) return NULL;
    char *json = NULL, *cfg = NULL;
    size_t jl = 0, cl = 0;
    ds3_tokenizer *t = NULL;
    if (!ds3_gguf_tokenizer_json(g, &json, &jl, &cfg, &cl, err, errlen))
        t = ds3_tokenizer_load_mem(json, jl, cfg, cl, path, err, errlen);
    free(json);
    free(cfg);
    ds3_gguf_close(g);
    return t;
}
