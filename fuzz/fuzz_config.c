/* fuzz_config.c -- libFuzzer target for the config.json parser (ds3_config_parse).
 *
 * The input is the text of a config.json. An accepted config must satisfy the invariants the
 * loader relies on (positive sizes, even rope dim, top-k <= experts, groups dividing experts);
 * it is then put through the derived computations (YaRN frequencies, MoE layer map) and the
 * serialiser, and the serialised form must parse back. A refused one must leave a one-line
 * message naming the file. A broken promise traps. Build: `make fuzz`; run: docs/fuzzing.md. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "util/common.h"

#define FILE_NAME "config.json"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    char *text = malloc(n ? n : 1); /* exactly n bytes: no terminator to lean on */
    if (!text) return 0;
    memcpy(text, d, n);
    char err[DS3_ERR_LEN];
    err[0] = 0;
    ds3_config c;
    int rc = ds3_config_parse(&c, text, n, FILE_NAME, err, sizeof err);
    free(text);
    if (rc != 0) {
        if (rc > 0 || !err[0] || strchr(err, '\n') || strncmp(err, FILE_NAME, strlen(FILE_NAME)) != 0) __builtin_trap();
        return 0;
    }
    if (c.vocab_size < 1 || c.hidden_size < 1 || c.num_hidden_layers < 1 || c.n_heads < 1 || c.kv_lora_rank < 1 ||
        c.v_head_dim < 1 || c.q_lora_rank < 0 || c.qk_rope_head_dim < 0 || c.qk_rope_head_dim % 2 || c.qk_head_dim < 1 ||
        c.n_group < 1 || c.topk_group < 1 || c.moe_layer_freq < 1 || c.max_position_embeddings < 1)
        __builtin_trap();
    if (c.n_routed_experts > 0 && (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.n_routed_experts ||
                                   c.n_routed_experts % c.n_group || c.topk_group > c.n_group))
        __builtin_trap();
    float *f = malloc(((size_t)c.qk_rope_head_dim / 2 + 1) * sizeof *f);
    if (f) {
        ds3_config_rope_inv_freq(&c, f);
        free(f);
    }
    int moe = 0;
    for (int l = 0; l < c.num_hidden_layers + c.num_nextn_predict_layers; l++) moe += ds3_config_is_moe(&c, l);
    (void)moe;
    json_t *j = ds3_config_to_json(&c);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s) {
        ds3_config c2;
        if (ds3_config_parse(&c2, s, strlen(s), "roundtrip.json", err, sizeof err) == 0 &&
            (c2.hidden_size != c.hidden_size || c2.vocab_size != c.vocab_size || c2.n_routed_experts != c.n_routed_experts))
            __builtin_trap();
        free(s);
    }
    return 0;
}
