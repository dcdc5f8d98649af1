/* speculative.c -- MTP self-speculative decoding (spec 6.4). Placeholder: falls back to the
 * plain loop until the speculative loop lands. */
#include "infer/generate.h"

int ds3_generate_spec(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int n_prompt, const ds3_gen_params *gp,
                      ds3_gen_stats *st, char *err, size_t errlen) {
    return ds3_generate_plain(s, smp, prompt, n_prompt, gp, st, err, errlen);
}
