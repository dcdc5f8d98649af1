/* test_train_ref.c -- one training step of a small model against PyTorch autograd and
 * torch.optim.AdamW: losses (main, MTP, balance, total), every gradient, the expert loads and
 * every parameter after the AdamW step. Fixture: tests/fixtures/train/onestep, written by
 * tools/train_ref/train_ref.py (never run at test time).
 * Tolerances: losses 2e-5 relative; gradients max|c - torch| <= 2e-4 * max|torch| + 1e-7 per
 * tensor; parameters after the step 1e-3 * lr where |grad| > 1e-4 * max|grad| (below that Adam's
 * update m/sqrt(v) is the sign of a rounding-level number and may legitimately differ).
 * Owned by the training engineer. */
#include "train_util.h"
#include "io/safetensors.h"
#include "train/adamw.h"

#define FIX "tests/fixtures/train/onestep"

int main(void) {
    TEST_BEGIN("test_train_ref");
    char err[DS3_ERR_LEN];
    ds3_config c;
    if (ds3_config_load(&c, FIX "/config.json", err, sizeof err)) { CHECK(0, "%s", err); return TEST_REPORT(); }
    ds3_st *st;
    ds3_st_opts o = {0, 0};
    if (ds3_st_open_dir(FIX, &o, &st, err, sizeof err)) { CHECK(0, "%s", err); return TEST_REPORT(); }
    const ds3_st_tensor *ti = ds3_st_find(st, "inp"), *tt = ds3_st_find(st, "tgt"), *tl = ds3_st_find(st, "losses");
    const ds3_st_tensor *ts = ds3_st_find(st, "settings"), *tld = ds3_st_find(st, "loads");
    if (!ti || !tt || !tl || !ts || !tld) { CHECK(0, "fixture incomplete"); return TEST_REPORT(); }
    const int B = (int)ti->shape[0], T = (int)ti->shape[1];
    const float *ref = tl->data, *set = ts->data;
    ds3_tmodel *m = ds3_tmodel_new(&c, B, T, 2, err, sizeof err);
    if (!m || ds3_tmodel_load(m, FIX "/init", err, sizeof err)) { CHECK(0, "%s", err); return TEST_REPORT(); }
    m->bal_mode = DS3_BAL_SEQ, m->bal_alpha = set[0], m->mtp_lambda = set[1];
    ds3_tstats s;
    ds3_tmodel_zero_grad(m);
    memset(m->loads, 0, (size_t)m->n_moe * c.n_routed_experts * sizeof(int64_t));
    ds3_tmodel_step(m, ti->data, tt->data, B, 1, &s, NULL, NULL);
    printf("# C     loss %.6f mtp %.6f bal %.6f total %.6f\n# torch loss %.6f mtp %.6f bal %.6f total %.6f\n", s.loss,
           s.mtp_loss, s.bal_loss, s.total, ref[0], ref[1], ref[2], ref[3]);
    CHECK(fabs(s.loss - ref[0]) < 2e-5 * ref[0], "main loss %g vs %g", s.loss, ref[0]);
    CHECK(fabs(s.mtp_loss - ref[1]) < 2e-5 * ref[1], "mtp loss %g vs %g", s.mtp_loss, ref[1]);
    CHECK(fabs(s.bal_loss - ref[2]) < 2e-5 * ref[2], "balance loss %g vs %g", s.bal_loss, ref[2]);
    CHECK(fabs(s.total - ref[3]) < 2e-5 * ref[3], "total loss %g vs %g", s.total, ref[3]);
    const int32_t *lref = tld->data;
    int lok = 1;
    for (int i = 0; i < m->n_moe * c.n_routed_experts; i++) lok &= m->loads[i] == lref[i];
    CHECK(lok, "expert loads differ from torch (routing)");
    double worst = 0;
    const char *worst_name = "";
    int n_grad = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ds3_tinfo *t = &m->tensors[i];
        if (!t->trainable) continue;
        char nm[160];
        snprintf(nm, sizeof nm, "grad.%s", t->name);
        const ds3_st_tensor *g = ds3_st_find(st, nm);
        if (!g) { CHECK(0, "fixture lacks %s", nm); continue; }
        const float *gr = g->data, *gc = m->grads + t->off;
        double mx = 0, df = 0;
        for (size_t k = 0; k < t->n; k++) mx = fmax(mx, fabs(gr[k])), df = fmax(df, fabs(gr[k] - gc[k]));
        double rel = df / (mx + 1e-7 / 2e-4);
        if (rel > worst) worst = rel, worst_name = t->name;
        CHECK(df <= 2e-4 * mx + 1e-7, "%s: max diff %g (max |g| %g)", nm, df, mx);
        n_grad++;
    }
    printf("# %d gradients; worst relative difference %.3g (%s)\n", n_grad, worst, worst_name);
    /* one AdamW step */
    float *mo = tu_zeros(m->n_params), *ve = tu_zeros(m->n_params);
    ds3_adamw_cfg ac = {set[2], set[3], set[4], set[5], set[6]};
    ds3_adamw_step(m, mo, ve, 1, &ac);
    int bad = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ds3_tinfo *t = &m->tensors[i];
        char nm[160];
        snprintf(nm, sizeof nm, "step.%s", t->name);
        const ds3_st_tensor *p = ds3_st_find(st, nm);
        snprintf(nm, sizeof nm, "grad.%s", t->name);
        const ds3_st_tensor *g = ds3_st_find(st, nm);
        if (!p) { bad++; continue; }
        const float *pr = p->data, *pc = m->params + t->off, *gr = g ? g->data : NULL;
        double gmax = 0;
        for (size_t k = 0; gr && k < t->n; k++) gmax = fmax(gmax, fabs(gr[k]));
        for (size_t k = 0; k < t->n; k++) {
            if (gr && fabs(gr[k]) <= 1e-4 * gmax) continue;
            if (fabs(pr[k] - pc[k]) > 1e-3 * ac.lr + 1e-6 * fabs(pr[k])) {
                if (bad++ < 5) fprintf(stderr, "  %s[%zu]: %g vs torch %g\n", t->name, k, pc[k], pr[k]);
            }
        }
    }
    CHECK(bad == 0, "%d parameters differ from torch after the AdamW step", bad);
    free(mo), free(ve);
    ds3_tmodel_free(m);
    ds3_st_close(st);
    return TEST_REPORT();
}
