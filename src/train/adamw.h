/* adamw.h -- AdamW with decoupled weight decay (PyTorch's torch.optim.AdamW), global-norm
 * gradient clipping, and the learning-rate schedule (linear warm-up, cosine decay to a floor).
 * Weight decay applies to matrices only (ds3_tinfo.decay); norms and biases get none; tensors
 * that are not trainable (the router's selection bias) are never touched. */
#ifndef DS3_ADAMW_H
#define DS3_ADAMW_H

#include "train/tmodel.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} ds3_adamw_cfg;

/* One update at step t (1-based) with moments mom, vel (n_params floats each). */
void ds3_adamw_step(ds3_tmodel *m, float *mom, float *vel, long t, const ds3_adamw_cfg *cfg);
/* L2 norm of all trainable gradients (summed in tensor order, in double). */
double ds3_grad_norm(const ds3_tmodel *m);
void ds3_grad_scale(ds3_tmodel *m, float s);
/* lr at step (0-based) of total: warm-up from 0 over `warmup` steps, then cosine from lr_max to
 * lr_min at the last step. */
double ds3_lr_schedule(long step, long total, long warmup, double lr_max, double lr_min);

#endif
