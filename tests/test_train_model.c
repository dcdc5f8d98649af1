/* test_train_model.c -- the whole training step on tiny models: every parameter tensor's
 * gradient against finite differences of the total loss (main CE + lambda MTP CE + balance
 * losses, with a non-zero selection bias), for the sequence-wise and the classic auxiliary
 * balance loss; determinism across thread counts; the bias update rule.
 * Owned by the training engineer. */
#include "train_util.h"
#include "train/adamw.h"

typedef struct { ds3_tmodel *m; int32_t *inp, *tgt; int B; } mt_t;
static double mt_loss(void *p) {
    mt_t *a = p;
    ds3_tstats st;
    memset(a->m->loads, 0, (size_t)a->m->n_moe * a->m->cfg.n_routed_experts * sizeof(int64_t));
    ds3_tmodel_step(a->m, a->inp, a->tgt, a->B, 0, &st, NULL, NULL);
    return st.total;
}

static const char *CFG_LORA =
    "{\"model_type\":\"deepseek_v3\",\"vocab_size\":40,\"hidden_size\":16,\"intermediate_size\":24,"
    "\"moe_intermediate_size\":8,\"num_hidden_layers\":2,\"first_k_dense_replace\":1,\"num_attention_heads\":2,"
    "\"q_lora_rank\":12,\"kv_lora_rank\":8,\"qk_nope_head_dim\":4,\"qk_rope_head_dim\":4,\"v_head_dim\":4,"
    "\"n_routed_experts\":6,\"n_shared_experts\":1,\"num_experts_per_tok\":2,\"n_group\":3,\"topk_group\":2,"
    "\"num_nextn_predict_layers\":1,\"routed_scaling_factor\":2.5}";
static const char *CFG_PLAIN =
    "{\"model_type\":\"deepseek_v3\",\"vocab_size\":32,\"hidden_size\":16,\"intermediate_size\":24,"
    "\"moe_intermediate_size\":8,\"num_hidden_layers\":1,\"first_k_dense_replace\":0,\"num_attention_heads\":2,"
    "\"q_lora_rank\":null,\"kv_lora_rank\":8,\"qk_nope_head_dim\":4,\"qk_rope_head_dim\":4,\"v_head_dim\":4,"
    "\"n_routed_experts\":4,\"n_shared_experts\":0,\"num_experts_per_tok\":2,\"n_group\":1,\"topk_group\":1,"
    "\"num_nextn_predict_layers\":1,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":2,"
    "\"original_max_position_embeddings\":4,\"mscale\":1,\"mscale_all_dim\":0.5}}";

static void fd_model(const char *name, const char *json, int bal_mode, float alpha) {
    ds3_config c;
    if (tu_config(&c, json)) { CHECK(0, "%s: config", name); return; }
    char err[DS3_ERR_LEN];
    const int B = 2, T = 6, N = B * T;
    ds3_tmodel *m = ds3_tmodel_new(&c, B, T, 2, err, sizeof err);
    if (!m) { CHECK(0, "%s: %s", name, err); return; }
    ds3_tmodel_init(m, 7, 0.3f);
    for (int i = 0; i < m->n_tensors; i++) /* perturb norms and set a selection bias */
        if (m->tensors[i].ndim == 1) tu_fill(m->params + m->tensors[i].off, m->tensors[i].n, m->tensors[i].trainable ? 0.0f : 0.05f);
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].ndim == 1 && m->tensors[i].trainable)
            for (size_t k = 0; k < m->tensors[i].n; k++) m->params[m->tensors[i].off + k] += 1.0f;
    m->bal_mode = bal_mode, m->bal_alpha = alpha, m->mtp_lambda = 0.3f;
    int32_t inp[12], tgt[12];
    for (int i = 0; i < N; i++) inp[i] = (int)(ds3_rng_next(&tu_rng) % c.vocab_size), tgt[i] = (int)(ds3_rng_next(&tu_rng) % c.vocab_size);
    tgt[4] = -1;
    mt_t a = {m, inp, tgt, B};
    ds3_tstats st;
    ds3_tmodel_zero_grad(m);
    ds3_tmodel_step(m, inp, tgt, B, 1, &st, NULL, NULL);
    CHECK(st.mtp_loss > 0 && (bal_mode == DS3_BAL_NONE || st.bal_loss > 0), "%s: losses %g %g %g", name, st.loss,
          st.mtp_loss, st.bal_loss);
    CHECK(fabs(mt_loss(&a) - st.total) < 1e-6, "%s: no-grad forward differs", name);
    float *g = tu_zeros(m->n_params);
    memcpy(g, m->grads, m->n_params * 4);
    int bad = 0, checked = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ds3_tinfo *t = &m->tensors[i];
        if (!t->trainable) continue;
        /* skip experts that got no token (zero gradient is right and FD is exactly 0) */
        double e = tu_fd(mt_loss, &a, m->params + t->off, g + t->off, t->n, 1e-3f);
        checked++;
        if (e > 3e-2) {
            bad++;
            fprintf(stderr, "  %s: %s rel err %g\n", name, t->name, e);
        }
    }
    CHECK(bad == 0, "%s: %d of %d tensors fail the finite-difference check", name, bad, checked);
    /* same step with 1 thread: identical gradients */
    ds3_tmodel *m1 = ds3_tmodel_new(&c, B, T, 1, err, sizeof err);
    memcpy(m1->params, m->params, m->n_params * 4);
    m1->bal_mode = bal_mode, m1->bal_alpha = alpha, m1->mtp_lambda = 0.3f;
    ds3_tmodel_zero_grad(m1);
    ds3_tstats st1;
    ds3_tmodel_step(m1, inp, tgt, B, 1, &st1, NULL, NULL);
    CHECK(st1.total == st.total && !memcmp(m1->grads, g, m->n_params * 4), "%s: 1 and 2 threads differ", name);
    ds3_tmodel_free(m1);
    free(g);
    ds3_tmodel_free(m);
}

static void test_bias_update(void) {
    ds3_config c;
    tu_config(&c, CFG_PLAIN);
    char err[DS3_ERR_LEN];
    ds3_tmodel *m = ds3_tmodel_new(&c, 1, 4, 1, err, sizeof err);
    int64_t loads[4] = {5, 1, 1, 1}; /* mean 2 */
    memcpy(m->loads, loads, sizeof loads);
    m->loads[3] = 2, m->loads[2] = 0;  /* 5,1,0,2 -> mean 2 */
    ds3_tmodel_bias_update(m, 0.01f);
    const float *b = m->layers[0].router_bias;
    CHECK(b[0] == -0.01f && b[1] == 0.01f && b[2] == 0.01f && b[3] == 0.0f, "bias update: %g %g %g %g", b[0], b[1], b[2],
          b[3]);
    int64_t l2[4] = {3, 1, 0, 0};
    CHECK(fabs(ds3_maxvio(l2, 4) - 2.0) < 1e-12, "maxvio");
    ds3_tmodel_free(m);
}

int main(void) {
    TEST_BEGIN("test_train_model");
    tu_fd_floor = 1e-2; /* a directional derivative below 0.01 is f32 noise at loss ~4 */
    fd_model("qlora-seqbal", CFG_LORA, DS3_BAL_SEQ, 0.05f);
    fd_model("qlora-aux", CFG_LORA, DS3_BAL_AUX, 0.05f);
    fd_model("plain-yarn-nobal", CFG_PLAIN, DS3_BAL_NONE, 0.0f);
    test_bias_update();
    return TEST_REPORT();
}
