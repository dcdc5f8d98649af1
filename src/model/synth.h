/* synth.h -- write DeepSeek-V3-shaped checkpoints with random weights (benchmarks, tests). */
#ifndef DS3_SYNTH_H
#define DS3_SYNTH_H

#include <stdint.h>

#include "kernels/kernels.h"
#include "model/config.h"

/* The benchmark shape: DeepSeek-V3's architecture at about 1.2B total / 0.2B active parameters
 * (13 layers, 1 dense; 64 routed experts top-8 in 8 groups keeping 4; 1 shared; MLA with
 * q-LoRA; YaRN; 1 MTP layer; vocab 32768). */
void ds3_synth_bench_config(ds3_config *c);

/* Write config.json + one shard per block (+ index) into dir (created if missing).
 * wdtype: F32, BF16, F16 for every matrix, or F8E4M3 for the block linears (then BF16 for
 * embedding, head, router, eh_proj and norms, F32 block scales, like the DeepSeek release).
 * Weights ~ U(-a, a) with variance 1/fan_in; norms 1; router bias small. */
int ds3_synth_write(const char *dir, const ds3_config *c, ds3_dtype wdtype, uint64_t seed, char *err, size_t errlen);

/* Variants of the random checkpoint (ds3_synth_write = all zero).
 * mtp_agree: a model whose MTP module predicts what the main model will predict next, to
 * measure the ceiling of MTP speculation (docs/speculative.md). Every block's output
 * projections (o_proj, every down_proj, MTP block included) are scaled by block_scale, so the
 * residual stream stays close to the token embedding and the main model is nearly a bigram
 * model: next = argmax head(norm(E x_t)) + small context effects. The MTP block gets
 * eh_proj = [I | 0] and enorm = 1, the embedding is scaled to rms ~1 (so the MTP block's input
 * is the embedding of x_{t+1}; the hidden is ignored), model.norm = shared_head.norm = 1, and shares the
 * main embedding and head, so its prediction for x_{t+2} is the main model's bigram map applied
 * to x_{t+1}. Same shapes, dtypes and bytes per token as the plain checkpoint. */
typedef struct {
    int mtp_agree;
    float block_scale;  /* with mtp_agree; e.g. 0.02 */
} ds3_synth_opts;
int ds3_synth_write_opts(const char *dir, const ds3_config *c, ds3_dtype wdtype, uint64_t seed, const ds3_synth_opts *o,
                         char *err, size_t errlen);

#endif
