/* sampler.h -- turn logits into a token: greedy, or temperature + top-k + top-p + min-p with a
 * seeded RNG (deterministic for a given seed). Also exposes the filtered distribution, which
 * speculative sampling needs so that draft and target use exactly the same rules. */
#ifndef DS3_SAMPLER_H
#define DS3_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temp;     /* <= 0: greedy */
    int top_k;      /* 0: off */
    float top_p;    /* 1: off */
    float min_p;    /* 0: off */
    uint64_t seed;
} ds3_sampler_params;

ds3_sampler_params ds3_sampler_default_params(void);  /* temp 0.8, top_k 40, top_p 0.95, min_p 0.05 */

typedef struct ds3_sampler ds3_sampler;
ds3_sampler *ds3_sampler_new(const ds3_sampler_params *p, int vocab_size);
void ds3_sampler_free(ds3_sampler *s);
const ds3_sampler_params *ds3_sampler_params_of(const ds3_sampler *s);

/* Draw one token id from logits (vocab_size,). */
int ds3_sampler_sample(ds3_sampler *s, const float *logits);
/* The distribution ds3_sampler_sample draws from, dense (vocab_size,), summing to 1
 * (one-hot at the argmax when greedy). */
void ds3_sampler_probs(ds3_sampler *s, const float *logits, float *probs);
/* Draw from a dense distribution (vocab_size,) that sums to ~1. */
int ds3_sampler_draw(ds3_sampler *s, const float *probs);
/* Uniform in [0, 1) from the sampler's RNG. */
double ds3_sampler_uniform(ds3_sampler *s);
int ds3_argmax(const float *x, int n);

#endif
