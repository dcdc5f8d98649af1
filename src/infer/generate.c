/* generate.c -- plain autoregressive generation over a ds3_session: one batched prefill of the
 * prompt, then one main-model call per token. Speculative decoding (when requested and the model
 * has MTP weights) is delegated to ds3_generate_spec in speculative.c. */
#include "infer/generate.h"

#include <stdio.h>
#include <string.h>

#include "util/common.h"


ds3_gen_params ds3_gen_default_params(void) {
    ds3_gen_params p = {.n_predict = 128, .stop_at_eos = 1, .spec = DS3_SPEC_AUTO, .n_draft = 1};
    return p;
}

int ds3_generate(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int n_prompt, const ds3_gen_params *gp,
                 ds3_gen_stats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    if (n_prompt <= 0) return ds3_seterr(err, errlen, DS3_ERR_ARG, "the prompt is empty");
    if (gp->spec != DS3_SPEC_NONE && ds3_model_has_mtp(ds3_session_model(s)))
        return ds3_generate_spec(s, smp, prompt, n_prompt, gp, st, err, errlen);
    return ds3_generate_plain(s, smp, prompt, n_prompt, gp, st, err, errlen);
}

int ds3_generate_plain(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int n_prompt, const ds3_gen_params *gp,
                       ds3_gen_stats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    st->spec_mode = DS3_SPEC_NONE;
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
    st->t_plain = st->t_gen;
    return 0;
}

void ds3_gen_stats_describe(const ds3_gen_stats *st, int n_draft, char *buf, size_t n) {
    if (st->spec_mode == DS3_SPEC_NONE) {
        snprintf(buf, n, "plain decoding (no speculation)");
        return;
    }
    /* tokens of plain steps: all but the prefill's first token and the speculative steps' */
    const int n_plain = st->n_gen - (st->n_gen > 0) - st->n_gen_spec;
    const double share = st->n_gen > 1 ? (double)st->n_gen_spec / (st->n_gen - 1) : 0.0;
    int len = snprintf(buf, n, "speculation %s (MTP, %d draft): %.0f%% of tokens from speculative steps",
                       st->spec_mode == DS3_SPEC_AUTO ? "auto" : "mtp", n_draft, 100.0 * share);
    if (len < 0 || (size_t)len >= n) return;
    if (st->n_steps_spec > 0)
        len += snprintf(buf + len, n - (size_t)len, ", acceptance %.1f%%, %.2f accepted per step (%d/%d drafts)",
                        st->n_drafted ? 100.0 * st->n_accepted / st->n_drafted : 0.0,
                        (double)st->n_accepted / st->n_steps_spec, st->n_accepted, st->n_drafted);
    if (len < 0 || (size_t)len >= n) return;
    if (st->spec_mode != DS3_SPEC_AUTO) return;
    if (st->n_gen_spec > 0 && st->t_spec > 0)
        len += snprintf(buf + len, n - (size_t)len, "; speculative steps %.1f tok/s", st->n_gen_spec / st->t_spec);
    if (len < 0 || (size_t)len >= n) return;
    if (n_plain > 0 && st->t_plain > 0)
        len += snprintf(buf + len, n - (size_t)len, "; plain steps %.1f tok/s", n_plain / st->t_plain);
    if (len < 0 || (size_t)len >= n) return;
    snprintf(buf + len, n - (size_t)len, "; %d switch%s", st->n_switches, st->n_switches == 1 ? "" : "es");
}
