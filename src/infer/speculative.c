/* speculative.c -- MTP self-speculative decoding (spec 6.4; docs/speculative.md).
 *
 * State between steps (P = main n_past):
 *   - the main cache holds positions 0..P-1; x_P is the last emitted token, not yet evaluated;
 *   - the MTP cache holds positions 0..P-1 too: MTP position i was run on (h_i, x_{i+1}), h_i the
 *     main model's final-normed hidden at i, so its logits at P-1 are the draft distribution q_1
 *     for x_{P+1}. (After a gap, below, it holds fewer positions, the last of them still the
 *     pair (h_{P-1}, x_P).)
 * One step:
 *   1. draft d_1 ~ q_1; with n_draft k > 1, chain the depth-1 module on its own output
 *      (shared_head-normed hidden at P-1+j, d_j) at position P+j-1 for d_{j+1} ~ q_{j+1}, then
 *      roll the MTP cache back to where it was (those positions used drafted, not exact, hiddens);
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
 * Chen et al. 2023). Buffers are allocated once per call, not per token.
 *
 * DS3_SPEC_AUTO mixes these steps with plain ones (one main eval of x_P, sample from its logits),
 * choosing per phase whichever kind measured the lower wall time per emitted token in this run:
 * speculation pays only where a verify pass costs less than (1 + mean accepted) plain steps,
 * which depends on the model's routing, the acceptance and the machine. Each step is an exact
 * plain or an exact speculative step and the choice depends only on the past, so greedy output
 * stays bit-identical to plain decoding and sampled output keeps the main model's distribution.
 * Plain steps do not run the MTP (that would cost a block and a head per token); they keep
 * (h_P, x_{P+1}) and the MTP catches up over them in one batched call before the next
 * speculative step. Even batched, that catch-up costs a good part of a plain step per position on
 * a small model (measured: 35-115 us per position against ~300 us per plain step on models/default,
 * 2 threads), so after a long plain stretch only the last auto_window pairs are replayed: the MTP
 * cache then skips the older ones (its positions run behind the main model's by that gap, which
 * only shortens the drafts' context; the output never depends on the MTP). Likewise a run that
 * ends with plain steps leaves their pairs unreplayed (ds3_gen_stats.n_mtp_gap). */
#include <math.h>
#include <stdio.h>
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

/* ---- DS3_SPEC_AUTO: which kind of step runs next.
 * Run in phases: a probe of the kind not in use (probe steps), then the kind with the lower cost
 * per token for `period` steps (a quarter of it when the two costs are within 15%); a new choice
 * (the first, or a flip) runs only period/8 steps before a confirming probe, then the period
 * doubles each time a probe confirms the choice again (so a long run spends ever less on probes). A step kind's cost per token is the median of its last AUTO_RING
 * step times (robust to a step that lost its core to another process), divided for speculative
 * steps by their mean tokens per step. With a ds3_spec_auto_memo from an earlier call, the call
 * starts with that call's choice and measurements instead of two probes. */
#define AUTO_RING DS3_SPEC_AUTO_RING
typedef struct {
    int spec;           /* kind of the current phase: 1 speculative, 0 plain */
    int left;           /* steps left in it */
    int probing;        /* it is a probe, not the chosen kind */
    int chosen;         /* the last choice (-1 before the first) */
    int confirmed;      /* a probe after the choice's first (short) run agreed with it */
    int probe, period0, period;
    double ring[2][AUTO_RING]; /* recent step times in seconds, [0] plain, [1] speculative */
    int nring[2], iring[2];
    long spec_steps, spec_tokens; /* speculative steps timed and the tokens they emitted */
    uint64_t test_rng;  /* ds3_gen_params.auto_test_seed: random kinds instead of timed ones */
} auto_ctl;

static int auto_coin(auto_ctl *a) {
    a->test_rng ^= a->test_rng << 13;
    a->test_rng ^= a->test_rng >> 7;
    a->test_rng ^= a->test_rng << 17;
    return (int)(a->test_rng >> 63);
}

static void auto_init(auto_ctl *a, const ds3_gen_params *gp) {
    memset(a, 0, sizeof *a);
    a->probe = gp->auto_probe > 0 ? gp->auto_probe : 4;
    a->period0 = a->period = gp->auto_period > 0 ? gp->auto_period : 256;
    a->spec = 1; /* measure speculation first: the MTP is primed by the prefill */
    a->left = a->probe;
    a->probing = 1;
    a->chosen = -1;
    if ((a->test_rng = gp->auto_test_seed)) {
        a->spec = auto_coin(a);
        return;
    }
    const ds3_spec_auto_memo *mm = gp->auto_memo;
    if (mm && mm->valid && mm->nring[0] > 0 && mm->nring[1] > 0 && mm->spec_tokens > 0) {
        memcpy(a->ring, mm->ring, sizeof a->ring);
        memcpy(a->nring, mm->nring, sizeof a->nring);
        memcpy(a->iring, mm->iring, sizeof a->iring);
        a->spec_steps = mm->spec_steps;
        a->spec_tokens = mm->spec_tokens;
        a->chosen = a->spec = mm->chosen != 0;
        a->confirmed = 1;
        a->period = mm->period < a->period0 ? a->period0 : mm->period > 16 * a->period0 ? 16 * a->period0 : mm->period;
        a->left = a->period;
        a->probing = 0;
    }
}

/* Keep the measurements for the caller's next call. */
static void auto_save(const auto_ctl *a, const ds3_gen_params *gp) {
    ds3_spec_auto_memo *mm = gp->auto_memo;
    if (!mm || a->test_rng || a->chosen < 0) return;
    memcpy(mm->ring, a->ring, sizeof a->ring);
    memcpy(mm->nring, a->nring, sizeof a->nring);
    memcpy(mm->iring, a->iring, sizeof a->iring);
    mm->spec_steps = a->spec_steps;
    mm->spec_tokens = a->spec_tokens;
    mm->chosen = a->chosen;
    mm->period = a->period;
    mm->valid = 1;
}

static void auto_record(auto_ctl *a, int kind, double dt, int n_tokens) {
    a->ring[kind][a->iring[kind]] = dt;
    a->iring[kind] = (a->iring[kind] + 1) % AUTO_RING;
    if (a->nring[kind] < AUTO_RING) a->nring[kind]++;
    if (kind == 1) {
        a->spec_steps++;
        a->spec_tokens += n_tokens;
    }
}

/* Seconds per emitted token of a step kind (median step time / tokens per step). */
static double auto_cost(const auto_ctl *a, int kind) {
    double v[AUTO_RING];
    const int n = a->nring[kind];
    memcpy(v, a->ring[kind], (size_t)n * sizeof *v);
    for (int i = 1; i < n; i++) /* insertion sort of <= 8 values */
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    double med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    if (kind == 1 && a->spec_tokens > 0) med *= (double)a->spec_steps / a->spec_tokens;
    return med;
}

/* After each step: advance the schedule. */
static void auto_next(auto_ctl *a, ds3_gen_stats *st) {
    const int prev = a->spec;
    if (a->test_rng) {
        a->spec = auto_coin(a);
        st->n_switches += a->spec != prev;
        return;
    }
    if (--a->left > 0) return;
    if (!a->nring[0] || !a->nring[1]) { /* the start: measure the other kind as well */
        a->spec = a->nring[1] == 0;
        a->left = a->probe;
        a->probing = 1;
    } else {
        const double cs = auto_cost(a, 1), cp = auto_cost(a, 0);
        const int best = cs < cp;
        /* Within 15% the estimate (a few steps, tokens per step from few speculative steps) may
         * have it wrong, but either choice then costs little, and so does probing again soon. */
        const int close = fabs(cs - cp) < 0.15 * (cs < cp ? cs : cp);
        if (a->probing || best != a->spec) { /* after a probe, or the running kind fell behind: run the faster */
            const int short_run = a->period0 / 8 > 4 * a->probe ? a->period0 / 8 : 4 * a->probe;
            if (a->chosen < 0 || best != a->chosen) {
                /* a first choice, or a flip: rests on one probe, which a burst of load on this
                 * shared machine can spoil, so check it again after a short run */
                a->period = a->period0;
                a->confirmed = 0;
                a->left = short_run;
            } else if (!a->confirmed) {
                a->confirmed = 1;
                a->left = a->period;
            } else {
                a->period = a->period < 16 * a->period0 ? 2 * a->period : a->period;
                a->left = a->period;
            }
            if (close && a->left > a->period / 4) a->left = a->period / 4 > 4 * a->probe ? a->period / 4 : 4 * a->probe;
            if (a->left > a->period) a->left = a->period;
            a->chosen = best;
            a->spec = best;
            a->probing = 0;
        } else { /* the chosen kind ran its period: probe the other */
            a->spec = !best;
            a->left = a->probe;
            a->probing = 1;
        }
    }
    st->n_switches += a->spec != prev;
    if (getenv("DS3_SPEC_TRACE"))
        fprintf(stderr, "[auto] gen %d: cost spec %.1f us/tok (%d), plain %.1f us/tok (%d) -> %s %s %d steps\n", st->n_gen,
                a->nring[1] ? 1e6 * auto_cost(a, 1) : 0.0, a->nring[1], a->nring[0] ? 1e6 * auto_cost(a, 0) : 0.0,
                a->nring[0], a->spec ? "spec" : "plain", a->probing ? "probe" : "run", a->left);
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
    const int is_auto = gp->spec == DS3_SPEC_AUTO;
    st->spec_mode = is_auto ? DS3_SPEC_AUTO : DS3_SPEC_MTP;
    int K = gp->n_draft < 1 ? 1 : gp->n_draft;
    int rc = 0;
    /* Session limits: the verify pass must fit in one chunk (its hiddens are kept per chunk). */
    const int n_batch = ds3_session_n_batch(s), n_ctx = ds3_session_n_ctx(s);
    if (K > n_batch - 1) K = n_batch - 1;
    /* auto: (h_P, x_{P+1}) of the latest plain steps not yet seen by the MTP, replayed in one
     * batched MTP call before the next speculative step; when the buffer is full the older half
     * is dropped (those positions become the MTP's gap) */
    const int pend_cap = gp->auto_window > 1 ? gp->auto_window : 8;
    float *logits = malloc((size_t)(K + 1) * V * sizeof *logits); /* (K+1, V) verify logits */
    float *q = greedy ? NULL : malloc((size_t)K * V * sizeof *q); /* (K, V) draft distributions */
    float *p = greedy ? NULL : malloc((size_t)V * sizeof *p);      /* (V,) target distribution */
    float *hid = malloc((size_t)d * sizeof *hid);                  /* (d,) chained MTP hidden */
    int32_t *toks = malloc((size_t)(K + 2) * sizeof *toks);        /* [x_P, d_1..d_K] */
    float *pend_h = is_auto ? malloc((size_t)pend_cap * d * sizeof *pend_h) : NULL; /* (pend_cap, d) */
    int32_t *pend_t = is_auto ? malloc((size_t)pend_cap * sizeof *pend_t) : NULL;   /* (pend_cap,) */
    int n_pend = 0;
    if (!logits || (!greedy && (!q || !p)) || !hid || !toks || (is_auto && (!pend_h || !pend_t))) {
        rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory for speculative decoding (n_draft %d)", K);
        goto out;
    }
    emitter em = {s, gp, st, ds3_model_eos(m)};
    auto_ctl ac;
    auto_init(&ac, gp);

    /* ---- prefill: main model chunk by chunk, the MTP on every prompt position whose next token
     * is known (the last one waits for the sampled token). */
    double t0 = ds3_time_s();
    const int N0 = ds3_session_n_past(s);
    /* Positions cached by the main model before this call that the MTP never saw (the caller
     * evaluated them directly, or an auto run skipped them): their hiddens are gone, so the MTP
     * simply continues at its own n_past, behind the main model's. That only shortens the drafts'
     * context, never changes the output, and costs nothing. */
    if (ds3_session_mtp_n_past(s) > N0) ds3_session_mtp_truncate(s, N0);
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
        double ts = ds3_time_s();
        int stop_at = 0;
        if (is_auto && !ac.spec) {
            /* plain step: x_P at P, sample x_{P+1}; keep (h_P, x_{P+1}) for the MTP */
            if (n_pend == pend_cap) { /* drop the older half: the MTP will skip those positions */
                const int keep = pend_cap / 2;
                memmove(pend_h, pend_h + (size_t)(n_pend - keep) * d, (size_t)keep * d * sizeof *pend_h);
                memmove(pend_t, pend_t + (n_pend - keep), (size_t)keep * sizeof *pend_t);
                st->n_mtp_gap += n_pend - keep;
                n_pend = keep;
            }
            if ((rc = ds3_session_eval(s, &x, 1, NULL, err, errlen))) goto out;
            st->n_steps++;
            const int32_t nx = ds3_sampler_sample(smp, ds3_session_logits(s));
            memcpy(pend_h + (size_t)n_pend * d, ds3_session_hidden(s, 0), (size_t)d * sizeof *pend_h);
            pend_t[n_pend++] = nx;
            stop_at = emit(&em, nx);
            x = nx;
            const double t_step = ds3_time_s() - ts;
            st->t_plain += t_step;
            auto_record(&ac, 0, t_step, 1);
            if (stop_at) break;
            auto_next(&ac, st);
            continue;
        }
        if (n_pend) { /* catch the MTP up over the latest plain steps: its last logits become q_1 */
            if ((rc = ds3_session_mtp_eval(s, pend_t, pend_h, n_pend, NULL, err, errlen))) goto out;
            n_pend = 0;
            const double tc = ds3_time_s();
            st->t_plain += tc - ts;
            ts = tc;
        }
        const int P = ds3_session_n_past(s), Mb = ds3_session_mtp_n_past(s); /* Mb < P after a gap */
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
        if (k > 1) ds3_session_mtp_truncate(s, Mb);
        /* 2. verify */
        if ((rc = ds3_session_eval(s, toks, k + 1, logits, err, errlen))) goto out;
        st->n_steps++;
        st->n_steps_spec++;
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
        for (int j = 1; j <= a + 1 && !stop_at; j++)
            if (emit(&em, toks[j])) stop_at = j;
        st->n_gen_spec += stop_at ? stop_at : a + 1;
        /* 4. roll back and catch the MTP up on the exact (hidden, next token) pairs */
        const int n_ok = stop_at ? stop_at : a + 1; /* pairs (h_{P+j}, toks[j+1]) for j < n_ok */
        ds3_session_truncate(s, P + n_ok);
        if ((rc = ds3_session_mtp_eval(s, toks + 1, ds3_session_hidden(s, 0), n_ok, NULL, err, errlen))) goto out;
        const double t_step = ds3_time_s() - ts;
        st->t_spec += t_step;
        if (stop_at) break;
        x = nx;
        if (is_auto) {
            auto_record(&ac, 1, t_step, a + 1);
            auto_next(&ac, st);
        }
    }
done:
    /* plain steps at the end stay unreplayed: replaying them would cost time for drafts that no
     * step of this call will make (a later call continues the MTP at its own n_past) */
    st->n_mtp_gap += n_pend;
    if (is_auto) auto_save(&ac, gp);
    if (is_auto && getenv("DS3_SPEC_TRACE"))
        fprintf(stderr, "[auto] end: spec %d tok in %.3f ms, plain %d tok in %.3f ms, total %.3f ms\n", st->n_gen_spec,
                1e3 * st->t_spec, st->n_gen - 1 - st->n_gen_spec, 1e3 * st->t_plain, 1e3 * (ds3_time_s() - t0));
    st->t_gen = ds3_time_s() - t0;
out:
    free(logits);
    free(q);
    free(p);
    free(hid);
    free(toks);
    free(pend_h);
    free(pend_t);
    return rc;
}
