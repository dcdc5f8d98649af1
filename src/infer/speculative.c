/* speculative.c -- MTP self-speculative decoding (spec 6.4; docs/speculative.md).
 *
 * State between steps (P = main n_past):
 *   - the main cache holds positions 0..P-1; x_P is the last emitted token, not yet evaluated;
 *   - the MTP cache holds positions 0..P-1 too: MTP position i was run on (h_i, x_{i+1}), h_i the
 *     main model's final-normed hidden at i, so its logits at P-1 are the draft distribution q_1
 *     for x_{P+1}.
 * One step:
 *   1. draft d_1 ~ q_1; with n_draft k > 1, chain the depth-1 module on its own output
 *      (shared_head-normed hidden at P-1+j, d_j) at position P+j-1 for d_{j+1} ~ q_{j+1}, then
 *      roll the MTP cache back to P (those positions used drafted, not exact, hiddens);
 *   2. verify: one main eval of [x_P, d_1..d_k] at P..P+k with logits at every position;
 *      row j is the exact target distribution p_j of x_{P+j+1};
 *   3. accept the longest prefix: greedy accepts d_{j+1} iff argmax p_j == d_{j+1}; sampling
 *      accepts with probability min(1, p_j(d)/q_{j+1}(d)), and on the first rejection draws from
 *      norm(max(0, p_j - q_{j+1})). With a accepted, the new token comes from row a (the
 *      residual after a rejection, p_k itself when all k were accepted);
 *   4. roll the main cache back to P+a+1 (keep x_P, d_1..d_a) and run the MTP on the newly exact
 *      pairs (h_{P+j}, x_{P+j+1}), j = 0..a, from the verify pass's hiddens: its last logits
 *      are q_1 of the next step.
 * Positions that survive were computed by the same kernels as plain decoding (the matmul
 * kernels give the same bits for any token count), so greedy output equals plain greedy.
 * Temperature, top-k, top-p and min-p filter p and q alike (ds3_sampler_probs), so the sampled
 * sequence has exactly the main model's (filtered) distribution (Leviathan et al. 2023,
 * Chen et al. 2023). Buffers are allocated once per call, not per token. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer/generate.h"
#include "model/model.h"
#include "util/common.h"

typedef struct {
    ds3_session *s;
    const ds3_gen_params *gp;
    ds3_gen_stats *st;
    int eos;
} emitter;

/* Hand out one generated token; returns 1 when generation must stop after it. */
static int emit(emitter *e, int32_t tok) {
    e->st->n_gen++;
    int stop = e->gp->on_token ? e->gp->on_token(e->gp->ud, tok) : 0;
    return stop || (e->gp->stop_at_eos && tok == e->eos) || e->st->n_gen >= e->gp->n_predict;
}

int ds3_generate_spec(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int n_prompt, const ds3_gen_params *gp,
                      ds3_gen_stats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    const ds3_model *m = ds3_session_model(s);
    if (n_prompt <= 0) return ds3_seterr(err, errlen, DS3_ERR_ARG, "the prompt is empty");
    if (!ds3_session_has_mtp(s) || ds3_session_n_batch(s) < 2) /* verify needs >= 2 tokens per chunk */
        return ds3_generate_plain(s, smp, prompt, n_prompt, gp, st, err, errlen);
    const int V = m->cfg.vocab_size, d = m->cfg.hidden_size;
    const int greedy = ds3_sampler_params_of(smp)->temp <= 0.0f;
    int K = gp->n_draft < 1 ? 1 : gp->n_draft;
    int rc = 0;
    /* Session limits: the verify pass must fit in one chunk (its hiddens are kept per chunk). */
    const int n_batch = ds3_session_n_batch(s), n_ctx = ds3_session_n_ctx(s);
    if (K > n_batch - 1) K = n_batch - 1;
    float *logits = malloc((size_t)(K + 1) * V * sizeof *logits); /* (K+1, V) verify logits */
    float *q = greedy ? NULL : malloc((size_t)K * V * sizeof *q); /* (K, V) draft distributions */
    float *p = greedy ? NULL : malloc((size_t)V * sizeof *p);      /* (V,) target distribution */
    float *hid = malloc((size_t)d * sizeof *hid);                  /* (d,) chained MTP hidden */
    float *zero = calloc((size_t)d, sizeof *zero);                 /* (d,) stand-in hidden */
    int32_t *toks = malloc((size_t)(K + 2) * sizeof *toks);        /* [x_P, d_1..d_K] */
    if (!logits || (!greedy && (!q || !p)) || !hid || !zero || !toks) {
        rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory for speculative decoding (n_draft %d)", K);
        goto out;
    }
    emitter em = {s, gp, st, ds3_model_eos(m)};

    /* ---- prefill: main model chunk by chunk, the MTP on every prompt position whose next token
     * is known (the last one waits for the sampled token). */
    double t0 = ds3_time_s();
    const int N0 = ds3_session_n_past(s);
    int M0 = ds3_session_mtp_n_past(s);
    if (M0 > N0) ds3_session_mtp_truncate(s, M0 = N0);
    /* Positions cached by the main model before this call that the MTP never saw (the caller
     * evaluated them directly): their hiddens are gone, so the MTP gets a zero hidden there. This
     * only affects draft quality, never the output. Position N0-1's next token is prompt[0]. */
    for (int pos = M0; pos < N0; pos++) {
        int32_t nt = pos == N0 - 1 ? prompt[0] : (int32_t)ds3_model_bos(m);
        if (nt < 0 || nt >= V) nt = 0;
        if ((rc = ds3_session_mtp_eval(s, &nt, zero, 1, NULL, err, errlen))) goto out;
    }
    int T = 0;
    for (int start = 0; start < n_prompt; start += n_batch) {
        T = n_prompt - start < n_batch ? n_prompt - start : n_batch;
        if ((rc = ds3_session_eval(s, prompt + start, T, NULL, err, errlen))) goto out;
        const int nm = start + T < n_prompt ? T : T - 1; /* rows whose next token is known */
        if (nm > 0 && (rc = ds3_session_mtp_eval(s, prompt + start + 1, ds3_session_hidden(s, 0), nm, NULL, err, errlen)))
            goto out;
    }
    st->n_prompt = n_prompt;
    int32_t x = ds3_sampler_sample(smp, ds3_session_logits(s));
    /* MTP at the last prompt position: (h_{n-1}, x_n) -> q_1. */
    rc = ds3_session_mtp_eval(s, &x, ds3_session_hidden(s, T - 1), 1, NULL, err, errlen);
    st->t_prompt = ds3_time_s() - t0;
    if (rc) goto out;
    t0 = ds3_time_s();
    if (gp->n_predict <= 0) goto done;
    if (emit(&em, x)) goto done;

    /* ---- decode */
    for (;;) {
        const int P = ds3_session_n_past(s);
        int k = K;
        if (k > gp->n_predict - st->n_gen - 1) k = gp->n_predict - st->n_gen - 1; /* no drafts past the end */
        if (k > n_ctx - P - 1) k = n_ctx - P - 1;                                 /* room in the cache */
        if (k < 0) k = 0;
        /* 1. draft */
        toks[0] = x;
        for (int j = 0; j < k; j++) {
            const float *ql = ds3_session_mtp_logits(s);
            if (greedy) {
                toks[j + 1] = ds3_argmax(ql, V);
            } else {
                ds3_sampler_probs(smp, ql, q + (size_t)j * V);
                toks[j + 1] = ds3_sampler_draw(smp, q + (size_t)j * V);
            }
            if (j + 1 < k) { /* chain: the module's own output stands in for h_{P+j} */
                memcpy(hid, ds3_session_mtp_hidden(s, 0), (size_t)d * sizeof *hid);
                if ((rc = ds3_session_mtp_eval(s, &toks[j + 1], hid, 1, NULL, err, errlen))) goto out;
            }
        }
        if (k > 1) ds3_session_mtp_truncate(s, P);
        /* 2. verify */
        if ((rc = ds3_session_eval(s, toks, k + 1, logits, err, errlen))) goto out;
        st->n_steps++;
        st->n_drafted += k;
        /* 3. accept */
        int a = 0;
        int32_t nx = -1;
        for (; a < k; a++) {
            const float *row = logits + (size_t)a * V;
            const int32_t dt = toks[a + 1];
            if (greedy) {
                int32_t t = ds3_argmax(row, V);
                if (t != dt) { nx = t; break; }
                continue;
            }
            ds3_sampler_probs(smp, row, p);
            const float *qa = q + (size_t)a * V;
            const double u = ds3_sampler_uniform(smp);
            if (u * qa[dt] < p[dt]) continue; /* accept with probability min(1, p/q) */
            /* reject: residual norm(max(0, p - q)) */
            double sum = 0;
            for (int i = 0; i < V; i++) {
                float r = p[i] - qa[i];
                p[i] = r > 0 ? r : 0.0f;
                sum += p[i];
            }
            if (sum > 0) {
                for (int i = 0; i < V; i++) p[i] = (float)(p[i] / sum);
            } else { /* p == q up to rounding: rejection had probability ~0; p itself is exact */
                ds3_sampler_probs(smp, row, p);
            }
            nx = ds3_sampler_draw(smp, p);
            break;
        }
        if (a == k) nx = ds3_sampler_sample(smp, logits + (size_t)k * V);
        st->n_accepted += a;
        toks[a + 1] = nx;
        /* emit d_1..d_a, nx: token toks[j] sits at position P+j */
        int stop_at = 0;
        for (int j = 1; j <= a + 1 && !stop_at; j++)
            if (emit(&em, toks[j])) stop_at = j;
        /* 4. roll back and catch the MTP up on the exact (hidden, next token) pairs */
        const int n_ok = stop_at ? stop_at : a + 1; /* pairs (h_{P+j}, toks[j+1]) for j < n_ok */
        ds3_session_truncate(s, P + n_ok);
        if ((rc = ds3_session_mtp_eval(s, toks + 1, ds3_session_hidden(s, 0), n_ok, NULL, err, errlen))) goto out;
        if (stop_at) break;
        x = nx;
    }
done:
    st->t_gen = ds3_time_s() - t0;
out:
    free(logits);
    free(q);
    free(p);
    free(hid);
    free(zero);
    free(toks);
    return rc;
}
