/* test_train_ops.c -- every training backward of src/nn/ checked by finite differences
 * (directional derivatives along random directions), plus the training matmul kernels
 * (src/train/tmatmul.c) against their scalar twin and across thread counts.
 * Owned by the training engineer. */
#include "train_util.h"
#include "train/tmatmul.h"

#define TOL 2e-2

/* ---- tmatmul ---- */
static void naive(const ds3_tmm_job *j, float *C) {
    for (int m = 0; m < j->M; m++)
        for (int n = 0; n < j->N; n++) {
            double s = j->acc ? j->C[(size_t)m * j->ldc + n] : 0;
            for (int k = 0; k < j->K; k++) {
                double a = j->op == DS3_TMM_TN ? j->A[(size_t)k * j->lda + m] : j->A[(size_t)m * j->lda + k];
                double b = j->op == DS3_TMM_NT ? j->B[(size_t)n * j->ldb + k] : j->B[(size_t)k * j->ldb + n];
                s += a * b;
            }
            C[(size_t)m * j->ldc + n] = (float)s;
        }
}

static void test_tmm(void) {
    const char *best = ds3_tmm_kernels();
    ds3_pool *pool = ds3_pool_new(2);
    int shapes[][3] = {{37, 45, 29}, {64, 128, 70}, {5, 3, 1}, {1, 33, 17}, {130, 16, 64}};
    for (int op = 0; op < 3; op++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
            for (int acc = 0; acc < (op == DS3_TMM_NT ? 1 : 2); acc++) {
                const int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
                const size_t lda = (op == DS3_TMM_TN ? M : K) + 3, ldb = op == DS3_TMM_NT ? K : N + 5, ldc = N + 2;
                const size_t arows = op == DS3_TMM_TN ? K : M, brows = op == DS3_TMM_NT ? N : K;
                float *A = tu_rand(arows * lda, 1), *B = tu_rand(brows * ldb, 1), *C0 = tu_rand(M * ldc, 1);
                float *C1 = tu_zeros(M * ldc), *C2 = tu_zeros(M * ldc), *C3 = tu_zeros(M * ldc), *Cr = tu_zeros(M * ldc);
                memcpy(C1, C0, M * ldc * 4), memcpy(C2, C0, M * ldc * 4), memcpy(C3, C0, M * ldc * 4);
                memcpy(Cr, C0, M * ldc * 4);
                ds3_tmm_job j = {op, acc, M, N, K, A, lda, B, ldb, C0, ldc};
                naive(&j, Cr);
                ds3_tmm_set("ref");
                j.C = C1, ds3_tmm(NULL, &j, 1);
                ds3_tmm_set(best);
                j.C = C2, ds3_tmm(NULL, &j, 1);
                j.C = C3, ds3_tmm(pool, &j, 1);
                double e1 = 0, e2 = 0;
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) {
                        size_t i = (size_t)m * ldc + n;
                        e1 = fmax(e1, fabs(C1[i] - Cr[i])), e2 = fmax(e2, fabs(C2[i] - Cr[i]));
                    }
                CHECK(e1 < 1e-4 && e2 < 1e-4, "tmm op %d %dx%dx%d acc %d: ref err %g, %s err %g", op, M, N, K, acc, e1,
                      best, e2);
                CHECK(!memcmp(C2, C3, M * ldc * 4), "tmm op %d %dx%dx%d: threaded result differs", op, M, N, K);
                tu_free_all(); /* A, B, C0..C3, Cr */
            }
    ds3_pool_free(pool);
    printf("# tmm kernels: %s\n", best);
}

/* ---- rmsnorm ---- */
typedef struct { float *x, *w, *r, *y, *rstd; int T, n; } rn_t;
static double rn_loss(void *p) {
    rn_t *a = p;
    ds3_rmsnorm_fwd_t(a->y, a->n, a->rstd, a->x, a->n, a->w, a->T, a->n, 1e-6f);
    return tu_dot(a->y, a->r, (size_t)a->T * a->n);
}
static void test_rmsnorm(void) {
    rn_t a = {tu_rand(5 * 24, 1), tu_rand(24, 1), tu_rand(5 * 24, 1), tu_zeros(5 * 24), tu_zeros(5), 5, 24};
    float *dx = tu_zeros(5 * 24), *dw = tu_zeros(24);
    rn_loss(&a);
    ds3_rmsnorm_bwd(dx, 24, dw, a.r, 24, a.x, 24, a.w, a.rstd, 5, 24);
    double ex = tu_fd(rn_loss, &a, a.x, dx, 5 * 24, 1e-3f), ew = tu_fd(rn_loss, &a, a.w, dw, 24, 1e-3f);
    CHECK(ex < TOL && ew < TOL, "rmsnorm: dx rel err %g, dw rel err %g", ex, ew);
}

/* ---- rope ---- */
typedef struct { float *x, *y, *r, *inv; int T; } rp_t;
static double rp_loss(void *p) {
    rp_t *a = p;
    memcpy(a->y, a->x, (size_t)a->T * 3 * 8 * 4);
    ds3_rope_fwd(a->y, a->T, 24, 3, 8, 8, 2, a->inv, 1.3f);
    return tu_dot(a->y, a->r, (size_t)a->T * 24);
}
static void test_rope(void) {
    float inv[4] = {1.0f, 0.3f, 0.05f, 0.001f};
    rp_t a = {tu_rand(6 * 24, 1), tu_zeros(6 * 24), tu_rand(6 * 24, 1), inv, 6};
    float *dx = tu_zeros(6 * 24);
    memcpy(dx, a.r, 6 * 24 * 4);
    ds3_rope_bwd(dx, 6, 24, 3, 8, 8, 2, inv, 1.3f);
    double e = tu_fd(rp_loss, &a, a.x, dx, 6 * 24, 1e-3f);
    CHECK(e < TOL, "rope: rel err %g", e);
}

/* ---- dense SwiGLU FFN ---- */
typedef struct { ds3_ctx *ctx; ds3_tffn w; float *x, *r, *y, *gu, *a; int N, d, I; } ffn_t;
static double ffn_loss(void *p) {
    ffn_t *a = p;
    ds3_ffn_fwd_t(a->ctx, &a->w, a->d, a->I, a->x, a->N, a->y, a->gu, a->a);
    return tu_dot(a->y, a->r, (size_t)a->N * a->d);
}
static void test_ffn(ds3_ctx *ctx) {
    const int N = 7, d = 20, I = 36;
    ffn_t a = {ctx, {tu_rand(2 * I * d, 0.3f), tu_rand(d * I, 0.3f)}, tu_rand(N * d, 1), tu_rand(N * d, 1),
               tu_zeros(N * d), tu_zeros(N * 2 * I), tu_zeros(N * I), N, d, I};
    ds3_tffn g = {tu_zeros(2 * I * d), tu_zeros(d * I)};
    float *dx = tu_zeros(N * d), *dgu = tu_zeros(N * 2 * I), *da = tu_zeros(N * I);
    ffn_loss(&a);
    ds3_ffn_bwd(ctx, &a.w, &g, d, I, a.x, N, a.r, dx, a.gu, a.a, dgu, da);
    double e1 = tu_fd(ffn_loss, &a, a.x, dx, N * d, 1e-3f);
    double e2 = tu_fd(ffn_loss, &a, a.w.gu, g.gu, 2 * I * d, 1e-3f);
    double e3 = tu_fd(ffn_loss, &a, a.w.down, g.down, d * I, 1e-3f);
    CHECK(e1 < TOL && e2 < TOL && e3 < TOL, "ffn: dx %g dgu %g ddown %g", e1, e2, e3);
}

/* ---- cross-entropy ---- */
typedef struct { ds3_ctx *ctx; float *l, *tmp, *rl; int32_t *y; int N, V; } xe_t;
static double xe_loss(void *p) {
    xe_t *a = p;
    memcpy(a->tmp, a->l, (size_t)a->N * a->V * 4);
    return ds3_xent(a->ctx, a->tmp, a->y, a->N, a->V, 1.0f, 0, a->rl);
}
static void test_xent(ds3_ctx *ctx) {
    const int N = 6, V = 50;
    int32_t y[6] = {3, 0, 49, -1, 17, 17};
    xe_t a = {ctx, tu_rand(N * V, 3), tu_zeros(N * V), tu_zeros(N), y, N, V};
    float *g = tu_zeros(N * V);
    memcpy(g, a.l, N * V * 4);
    double s = ds3_xent(ctx, g, y, N, V, 1.0f, 1, a.rl);
    double s2 = xe_loss(&a);
    CHECK(s == s2, "xent: grad and no-grad losses differ");
    double e = tu_fd(xe_loss, &a, a.l, g, N * V, 1e-3f);
    CHECK(e < TOL, "xent: rel err %g", e);
    double z = 0;
    for (int i = 0; i < V; i++) z += fabs(g[3 * V + i]);
    CHECK(z == 0 && a.rl[3] == 0, "xent: ignored row has a gradient or loss");
}

/* ---- router + balance loss ---- */
typedef struct { const ds3_config *c; float *l, *bias, *s, *w, *rw, *ds, *sc; int32_t *ids; int N, group; float alpha; } rt_t;
static double rt_loss(void *p) {
    rt_t *a = p;
    ds3_router_fwd_t(a->c, a->l, a->bias, a->N, a->s, a->ids, a->w, a->sc);
    const int K = a->c->num_experts_per_tok;
    return tu_dot(a->w, a->rw, (size_t)a->N * K) + ds3_balance_loss(a->c, a->s, a->ids, a->N, a->group, a->alpha, NULL);
}
static void test_router(const char *name, const char *json, int group) {
    ds3_config c;
    if (tu_config(&c, json)) { CHECK(0, "config %s", name); return; }
    const int N = 8, Nr = c.n_routed_experts, K = c.num_experts_per_tok;
    rt_t a = {&c, tu_rand(N * Nr, 2), tu_rand(Nr, 0.2f), tu_zeros(N * Nr), tu_zeros(N * K), tu_rand(N * K, 1),
              tu_zeros(N * Nr), tu_zeros(2 * Nr + 16), tu_keep(malloc(N * K * 4)), N, group, 0.5f};
    int32_t *ids0 = tu_keep(malloc(N * K * 4));
    rt_loss(&a);
    memcpy(ids0, a.ids, N * K * 4);
    float *dl = tu_zeros(N * Nr);
    ds3_balance_loss(&c, a.s, a.ids, N, group, a.alpha, a.ds);
    ds3_router_bwd(&c, a.l, a.s, a.ids, a.rw, a.ds, N, dl);
    double e = tu_fd(rt_loss, &a, a.l, dl, N * Nr, 1e-3f);
    rt_loss(&a);
    CHECK(!memcmp(ids0, a.ids, N * K * 4), "router %s: selection moved (pick another seed)", name);
    CHECK(e < TOL, "router %s: rel err %g", name, e);
    /* the inference selection gives the same ids and weights */
    float wt[64], scr[256];
    int32_t id[64];
    int same = 1;
    for (int t = 0; t < N; t++) {
        ds3_router_select(&c, a.l + t * Nr, a.bias, id, wt, scr);
        for (int k = 0; k < K; k++) same &= id[k] == a.ids[t * K + k] && wt[k] == a.w[t * K + k];
    }
    CHECK(same, "router %s: training selection differs from ds3_router_select", name);
}

/* ---- one layer's weights ---- */
static void alloc_layer(const ds3_config *c, ds3_tlayer *w, ds3_tlayer *g, int moe) {
    const int d = c->hidden_size, H = c->n_heads, dq = c->qk_head_dim, dn = c->qk_nope_head_dim;
    const int dv = c->v_head_dim, rkv = c->kv_lora_rank, rq = c->q_lora_rank, dr = c->qk_rope_head_dim;
    const int n1 = rq ? rq : H * dq, Nr = c->n_routed_experts, I = c->moe_intermediate_size;
    const int Is = c->n_shared_experts * I;
    memset(w, 0, sizeof *w), memset(g, 0, sizeof *g);
#define PAIR(f, n, s) (w->f = tu_rand(n, s), g->f = tu_zeros(n))
    PAIR(wa, (size_t)(n1 + rkv + dr) * d, 0.3f);
    if (rq) { PAIR(q_a_norm, rq, 1); PAIR(q_b, (size_t)H * dq * rq, 0.3f); }
    PAIR(kv_a_norm, rkv, 1);
    PAIR(kv_b, (size_t)H * (dn + dv) * rkv, 0.3f);
    PAIR(o, (size_t)d * H * dv, 0.3f);
    if (moe) {
        w->is_moe = g->is_moe = 1;
        PAIR(router, (size_t)Nr * d, 0.5f);
        w->router_bias = tu_rand(Nr, 0.1f);
        w->experts = tu_keep(calloc(Nr, sizeof(ds3_tffn))), g->experts = tu_keep(calloc(Nr, sizeof(ds3_tffn)));
        for (int e = 0; e < Nr; e++) {
            PAIR(experts[e].gu, (size_t)2 * I * d, 0.3f);
            PAIR(experts[e].down, (size_t)d * I, 0.3f);
        }
        if (Is) { PAIR(shared.gu, (size_t)2 * Is * d, 0.3f); PAIR(shared.down, (size_t)d * Is, 0.3f); }
    }
#undef PAIR
}

/* ---- MoE layer ---- */
typedef struct { ds3_ctx *ctx; const ds3_config *c; ds3_tlayer *w; float *x, *r, *y; ds3_moe_act *act; ds3_moe_scratch *sc; int N, T; } moe_t;
static double moe_loss(void *p) {
    moe_t *a = p;
    ds3_moe_fwd_t(a->ctx, a->c, a->w, a->x, a->N, a->y, a->act, a->sc, NULL);
    double bal = ds3_balance_loss(a->c, a->act->s, a->act->ids, a->N, a->T, 0.3f, a->act->dsbal);
    return tu_dot(a->y, a->r, (size_t)a->N * a->c->hidden_size) + bal;
}
static void test_moe(ds3_ctx *ctx, const char *name, const char *json) {
    ds3_config c;
    if (tu_config(&c, json)) { CHECK(0, "config %s", name); return; }
    const int N = 12, T = 6, d = c.hidden_size, Nr = c.n_routed_experts, K = c.num_experts_per_tok;
    const int I = c.moe_intermediate_size, Is = c.n_shared_experts * I;
    ds3_tlayer w, g;
    alloc_layer(&c, &w, &g, 1);
    ds3_moe_act act = {tu_zeros(N * Nr), tu_zeros(N * Nr), tu_keep(malloc(N * K * 4)), tu_zeros(N * K), tu_zeros(N * Nr),
                       tu_keep(malloc((Nr + 1) * 4)), tu_keep(malloc(N * K * 4)), tu_keep(malloc(N * K * 4)), tu_zeros(N * K * 2 * I),
                       tu_zeros(N * K * I), tu_zeros(N * K * d), tu_zeros(N * 2 * Is), tu_zeros(N * Is)};
    ds3_moe_scratch sc = {tu_zeros(N * K * d), tu_zeros(N * K * d), tu_zeros(N * K * 2 * I), tu_zeros(N * K * I),
                          tu_zeros(N * K * d), tu_zeros(N * 2 * Is), tu_zeros(N * Is), tu_zeros(N * K),
                          tu_zeros(N * Nr + Nr), tu_zeros(2 * Nr + 16), tu_keep(calloc(2 * Nr + 8, sizeof(ds3_tmm_job)))};
    moe_t a = {ctx, &c, &w, tu_rand(N * d, 1), tu_rand(N * d, 1), tu_zeros(N * d), &act, &sc, N, T};
    float *dx = tu_zeros(N * d);
    moe_loss(&a);
    ds3_moe_bwd(ctx, &c, &w, &g, a.x, N, a.r, dx, &act, &sc);
    double e[5] = {tu_fd(moe_loss, &a, a.x, dx, N * d, 1e-3f), tu_fd(moe_loss, &a, w.router, g.router, Nr * d, 1e-3f),
                   tu_fd(moe_loss, &a, w.experts[1].gu, g.experts[1].gu, 2 * I * d, 1e-3f),
                   tu_fd(moe_loss, &a, w.experts[2].down, g.experts[2].down, d * I, 1e-3f),
                   Is ? tu_fd(moe_loss, &a, w.shared.gu, g.shared.gu, 2 * Is * d, 1e-3f) : 0};
    CHECK(e[0] < TOL && e[1] < TOL && e[2] < TOL && e[3] < TOL && e[4] < TOL,
          "moe %s: dx %g drouter %g dgu %g ddown %g dshared %g", name, e[0], e[1], e[2], e[3], e[4]);
}

/* ---- MLA ---- */
typedef struct { ds3_ctx *ctx; const ds3_config *c; ds3_tlayer *w; float *inv, *x, *r, *y; ds3_mla_act *act; int B, T; } mla_t;
static double mla_loss(void *p) {
    mla_t *a = p;
    ds3_mla_fwd_t(a->ctx, a->c, a->w, a->inv, a->x, a->B, a->T, a->y, a->act);
    return tu_dot(a->y, a->r, (size_t)a->B * a->T * a->c->hidden_size);
}
static void test_mla(ds3_ctx *ctx, const char *name, const char *json) {
    ds3_config c;
    if (tu_config(&c, json)) { CHECK(0, "config %s", name); return; }
    const int B = 2, T = 5, N = B * T, d = c.hidden_size, H = c.n_heads, dq = c.qk_head_dim, dn = c.qk_nope_head_dim;
    const int dv = c.v_head_dim, rkv = c.kv_lora_rank, rq = c.q_lora_rank, dr = c.qk_rope_head_dim;
    const int n1 = rq ? rq : H * dq, lda = n1 + rkv + dr;
    ds3_tlayer w, g;
    alloc_layer(&c, &w, &g, 0);
    float inv[64];
    ds3_config_rope_inv_freq(&c, inv);
    ds3_mla_act act = {tu_zeros(N * lda), tu_zeros(N), tu_zeros(N * (rq ? rq : 1)), tu_zeros(N * H * dq), tu_zeros(N),
                       tu_zeros(N * rkv), tu_zeros(N * dr), tu_zeros(N * H * (dn + dv)), tu_zeros(B * H * T * T),
                       tu_zeros(N * H * dv)};
    ds3_mla_scratch sc = {tu_zeros(N * H * dv), tu_zeros(N * H * dq), tu_zeros(N * H * (dn + dv)), tu_zeros(N * H * dr),
                          tu_zeros(N * rkv), tu_zeros(N * (rq ? rq : 1)), tu_zeros(N * lda)};
    mla_t a = {ctx, &c, &w, inv, tu_rand(N * d, 1), tu_rand(N * d, 1), tu_zeros(N * d), &act, B, T};
    float *dx = tu_zeros(N * d);
    mla_loss(&a);
    ds3_mla_bwd(ctx, &c, &w, &g, inv, a.x, B, T, a.r, dx, &act, &sc);
    double e[7] = {tu_fd(mla_loss, &a, a.x, dx, N * d, 1e-3f),
                   tu_fd(mla_loss, &a, w.wa, g.wa, (size_t)lda * d, 1e-3f),
                   tu_fd(mla_loss, &a, w.kv_a_norm, g.kv_a_norm, rkv, 1e-3f),
                   tu_fd(mla_loss, &a, w.kv_b, g.kv_b, (size_t)H * (dn + dv) * rkv, 1e-3f),
                   tu_fd(mla_loss, &a, w.o, g.o, (size_t)d * H * dv, 1e-3f),
                   rq ? tu_fd(mla_loss, &a, w.q_a_norm, g.q_a_norm, rq, 1e-3f) : 0,
                   rq ? tu_fd(mla_loss, &a, w.q_b, g.q_b, (size_t)H * dq * rq, 1e-3f) : 0};
    int ok = 1;
    for (int i = 0; i < 7; i++) ok &= e[i] < TOL;
    CHECK(ok, "mla %s: dx %g dwa %g dkvnorm %g dkvb %g do %g dqnorm %g dqb %g", name, e[0], e[1], e[2], e[3], e[4], e[5],
          e[6]);
    /* causal: the output of position 0 must not depend on later tokens */
    float *y0 = tu_zeros(N * d);
    mla_loss(&a);
    memcpy(y0, a.y, N * d * 4);
    a.x[3 * d + 1] += 1.0f;
    mla_loss(&a);
    CHECK(th_maxdiff(y0, a.y, (size_t)3 * d) == 0, "mla %s: not causal (diff %g, later %g)", name,
          th_maxdiff(y0, a.y, (size_t)3 * d), th_maxdiff(y0 + 3 * d, a.y + 3 * d, (size_t)2 * d));
}

#define BASE "\"model_type\":\"deepseek_v3\",\"vocab_size\":64,\"hidden_size\":24,\"intermediate_size\":40,"

int main(void) {
    TEST_BEGIN("test_train_ops");
    test_tmm();
    ds3_ctx ctx = tu_ctx(2, 4096);
    test_rmsnorm();
    test_rope();
    test_ffn(&ctx);
    test_xent(&ctx);
    test_router("v3-grouped", "{" BASE "\"n_routed_experts\":8,\"num_experts_per_tok\":3,\"n_group\":4,\"topk_group\":2}", 4);
    test_router("v3-batchwise", "{" BASE "\"n_routed_experts\":8,\"num_experts_per_tok\":2,\"n_group\":1,\"topk_group\":1}", 8);
    test_router("v3-nonorm", "{" BASE "\"n_routed_experts\":6,\"num_experts_per_tok\":2,\"n_group\":1,\"topk_group\":1,\"norm_topk_prob\":false}", 4);
    test_router("v2-softmax", "{\"model_type\":\"deepseek_v2\",\"vocab_size\":64,\"hidden_size\":24,\"n_routed_experts\":8,"
                "\"num_experts_per_tok\":3,\"routed_scaling_factor\":1.5}", 8);
    test_moe(&ctx, "v3-shared", "{" BASE "\"moe_intermediate_size\":12,\"n_routed_experts\":6,\"n_shared_experts\":1,"
             "\"num_experts_per_tok\":2,\"n_group\":2,\"topk_group\":1}");
    test_moe(&ctx, "v3-noshared", "{" BASE "\"moe_intermediate_size\":12,\"n_routed_experts\":4,\"n_shared_experts\":0,"
             "\"num_experts_per_tok\":2,\"n_group\":1,\"topk_group\":1}");
    test_mla(&ctx, "qlora", "{" BASE "\"num_attention_heads\":3,\"q_lora_rank\":16,\"kv_lora_rank\":12,"
             "\"qk_nope_head_dim\":8,\"qk_rope_head_dim\":4,\"v_head_dim\":6}");
    test_mla(&ctx, "qproj-yarn", "{" BASE "\"num_attention_heads\":2,\"q_lora_rank\":null,\"kv_lora_rank\":10,"
             "\"qk_nope_head_dim\":6,\"qk_rope_head_dim\":8,\"v_head_dim\":5,\"rope_scaling\":{\"type\":\"yarn\","
             "\"factor\":4,\"original_max_position_embeddings\":4,\"mscale\":1,\"mscale_all_dim\":0.8}}");
    tu_ctx_free(&ctx);
    tu_free_all();
    return TEST_REPORT();
}
