/* adamw.c -- AdamW (Loshchilov & Hutter; the update order of torch.optim.AdamW, single-tensor
 * path), gradient clipping and the warm-up + cosine schedule. Elementwise, split across the
 * model's pool, so results do not depend on the thread count. Owned by the training engineer. */
#include "train/adamw.h"

#include <math.h>

typedef struct {
    ds3_tmodel *m;
    float *mom, *vel;
    float lr, b1, b2, eps, wd, bc1, bc2s;
} adam_task;

static void adam_worker(void *arg, int ith, int nth) {
    const adam_task *a = arg;
    const ds3_tmodel *m = a->m;
    for (int i = 0; i < m->n_tensors; i++) {
        const ds3_tinfo *t = &m->tensors[i];
        if (!t->trainable) continue;
        long lo, hi;
        ds3_split((long)t->n, ith, nth, 16, &lo, &hi);
        float *p = m->params + t->off, *g = m->grads + t->off, *mo = a->mom + t->off, *ve = a->vel + t->off;
        const float decay = t->decay ? 1.0f - a->lr * a->wd : 1.0f;
        const float step = a->lr / a->bc1;
        for (long k = lo; k < hi; k++) {
            p[k] *= decay;
            mo[k] = a->b1 * mo[k] + (1.0f - a->b1) * g[k];
            ve[k] = a->b2 * ve[k] + (1.0f - a->b2) * g[k] * g[k];
            const float den = sqrtf(ve[k]) / a->bc2s + a->eps;
            p[k] -= step * (mo[k] / den);
        }
    }
}

void ds3_adamw_step(ds3_tmodel *m, float *mom, float *vel, long t, const ds3_adamw_cfg *c) {
    adam_task a = {m, mom, vel, c->lr, c->beta1, c->beta2, c->eps, c->weight_decay,
                   (float)(1.0 - pow(c->beta1, (double)t)), (float)sqrt(1.0 - pow(c->beta2, (double)t))};
    ds3_pool_run(m->ctx.pool, adam_worker, &a);
}

double ds3_grad_norm(const ds3_tmodel *m) {
    double s = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ds3_tinfo *t = &m->tensors[i];
        if (!t->trainable) continue;
        const float *g = m->grads + t->off;
        for (size_t k = 0; k < t->n; k++) s += (double)g[k] * g[k];
    }
    return sqrt(s);
}

void ds3_grad_scale(ds3_tmodel *m, float s) {
    for (size_t k = 0; k < m->n_params; k++) m->grads[k] *= s;
}

double ds3_lr_schedule(long step, long total, long warmup, double lr_max, double lr_min) {
    if (warmup > 0 && step < warmup) return lr_max * (double)(step + 1) / (double)warmup;
    const long span = total - warmup - 1;
    if (span <= 0) return lr_max;
    double p = (double)(step - warmup) / (double)span;
    if (p > 1) p = 1;
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + cos(M_PI * p));
}
