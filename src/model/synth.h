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

#endif
