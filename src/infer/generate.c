/* generate.c -- plain autoregressive generation over a ds3_session: one batched prefill of the
 * prompt, then one main-model call per token. Speculative decoding (when requested and the model
 * has MTP weights) is delegated to ds3_generate_spec in speculative.c. */
#include "infer/generate.h"

#include <string.h>

#include "util/common.h"


ds3_gen_params ds3_gen_default_params(void) {
    ds3_gen_params p = {.n_predict = 128, .stop_at_eos = 1, .spec = 0, .n_draft = 1};
    return p;
}

int ds3_generate(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int n_prompt, const ds3_gen_params *gp,
                 ds3_gen_stats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    if (n_prompt <= 0) return ds3_seterr(err, errlen, DS3_ERR_ARG, "the prompt is empty");
    if (gp->spec && ds3_model_has_mtp(ds3_session_model(s)))
        return ds3_generate_spec(s, smp, prompt, n_prompt, gp, st, err, errlen);
    return ds3_generate_plain(s, smp, prompt, n_prompt, gp, st, err, errlen);
}

int ds3_generate_plain(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int n_prompt, const ds3_gen_params *gp,
                       ds3_gen_stats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    if (n_prompt <= 0) return ds3_seterr(err, errlen, DS3_ERR_ARG, "the prompt is empty");
    double t0 = ds3_time_s();
    int rc = ds3_session_eval(s, prompt, n_prompt, NULL, err, errlen);
    if (rc) return rc;
    st->n_prompt = n_prompt;
    st->t_prompt = ds3_time_s() - t0;
    t0 = ds3_time_s();
    for (int i = 0; i < gp->n_predict; i++) {
        int32_t tok = ds3_sampler_sample(smp, ds3_session_logits(s));
        st->n_gen++;
        int stop = gp->on_token ? gp->on_token(gp->ud, tok) : 0;
        if (stop || (gp->stop_at_eos && tok == ds3_model_eos(ds3_session_model(s))) || i + 1 == gp->n_predict) break;
        if ((rc = ds3_session_eval(s, &tok, 1, NULL, err, errlen))) return rc;
        st->n_steps++;
    }
    st->t_gen = ds3_time_s() - t0;
    return 0;
}
