/* generate.h -- the generation loop: prefill the prompt in batches, then decode token by token
 * (or with MTP speculation, see speculative.h), streaming each token to a callback. */
#ifndef DS3_GENERATE_H
#define DS3_GENERATE_H

#include <stdint.h>

#include "ds3.h"
#include "infer/sampler.h"

typedef struct {
    int n_predict;              /* tokens to generate (>= 0) */
    int stop_at_eos;            /* stop after emitting the model's EOS (default 1) */
    int spec;                   /* 1: MTP self-speculative decoding when the model has MTP */
    int n_draft;                /* drafts per step with speculation (default 1) */
    /* Called for every generated token; return non-zero to stop. */
    int (*on_token)(void *ud, int32_t token);
    void *ud;
} ds3_gen_params;

typedef struct {
    int n_prompt, n_gen;
    double t_prompt, t_gen;     /* seconds */
    int n_drafted, n_accepted;  /* speculation */
    int n_steps;                /* main-model decode calls */
} ds3_gen_stats;

ds3_gen_params ds3_gen_default_params(void);

/* Generate after the prompt (appended at the session's current position). Returns 0 or a
 * negative ds3_status (message in err). */
int ds3_generate(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int n_prompt, const ds3_gen_params *gp,
                 ds3_gen_stats *st, char *err, size_t errlen);

/* The plain loop, and the MTP speculative loop (speculative.c). Same contract as ds3_generate. */
int ds3_generate_plain(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int n_prompt, const ds3_gen_params *gp,
                       ds3_gen_stats *st, char *err, size_t errlen);
int ds3_generate_spec(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int n_prompt, const ds3_gen_params *gp,
                      ds3_gen_stats *st, char *err, size_t errlen);

#endif
