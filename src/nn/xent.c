/* xent.c -- softmax cross-entropy over the vocabulary for training (spec 6.3 / 7.4 losses), with
 * its gradient written in place over the logits (llm.c's crossentropy_softmax_backward fused with
 * the forward). Rows are split across the pool; the sum is taken in row order afterwards, so the
 * result depends on nothing but the inputs. Owned by the training engineer. */
#include <math.h>

#include "nn/nn.h"

typedef struct {
    float *logits;
    const int32_t *targets;
    int N, V, grad;
    float scale;
    float *row_loss;
} xent_task;

static void xent_worker(void *arg, int ith, int nth) {
    const xent_task *a = arg;
    long lo, hi;
    ds3_split(a->N, ith, nth, 1, &lo, &hi);
    for (long t = lo; t < hi; t++) {
        float *l = a->logits + (size_t)t * a->V;
        const int y = a->targets[t];
        if (y < 0) {
            a->row_loss[t] = 0;
            if (a->grad)
                for (int i = 0; i < a->V; i++) l[i] = 0;
            continue;
        }
        float mx = -INFINITY;
        for (int i = 0; i < a->V; i++) mx = l[i] > mx ? l[i] : mx;
        double sum = 0;
        for (int i = 0; i < a->V; i++) sum += exp((double)(l[i] - mx));
        const double lse = mx + log(sum);
        a->row_loss[t] = (float)(lse - l[y]);
        if (a->grad) {
            for (int i = 0; i < a->V; i++) l[i] = (float)exp((double)l[i] - lse) * a->scale;
            l[y] -= a->scale;
        }
    }
}

double ds3_xent(ds3_ctx *ctx, float *logits, const int32_t *targets, int N, int V, float scale, int grad,
                float *row_loss) {
    xent_task a = {logits, targets, N, V, grad, scale, row_loss};
    if (ctx && ctx->pool) ds3_pool_run(ctx->pool, xent_worker, &a);
    else xent_worker(&a, 0, 1);
    double s = 0;
    for (int t = 0; t < N; t++) s += row_loss[t];
    return s;
}
