/* test_spec.c -- MTP self-speculative decoding (src/infer/speculative.c, docs/speculative.md).
 *   1. the matmul/attention path gives the same bits for one batched eval as for token-by-token
 *      evals (what makes speculative greedy equal plain greedy bit for bit);
 *   2. greedy: speculative output == plain output, token for token, for 100 prompts x 200 tokens
 *      on every MTP checkpoint among the fixtures (and models/default when it exists), drafts
 *      1..3, and on a synthetic FP8 model whose MTP agrees with it (most drafts accepted, so
 *      the accept/bonus paths run as much as the reject path); the main and MTP caches end aligned and exact (the MTP logits after generation equal
 *      a fresh session's that ran the whole sequence at once);
 *   3. sampling: chi-square goodness of fit of the speculative sampler's (x1, x2) joint and x3
 *      marginal against the exact distribution computed by enumeration, on a tiny synthetic
 *      model (vocab 24, no filtering) and on a fixture with top-k/top-p/min-p, draft 1 and 2;
 *      the plain sampler passes the same test (a check of the test itself);
 *   4. the adaptive mode (DS3_SPEC_AUTO) with a schedule shortened so that both kinds of step
 *      run and alternate many times per generation (probes of 2 steps, periods from 3 steps, an
 *      MTP replay window of 8 so that long plain stretches leave gaps): greedy identity as in 2
 *      (the MTP cache is checked exact when the run left no gap, else its gap accounted for),
 *      the context limit, and the chi-square test of 3.
 * DS3_SPEC_PROMPTS=N overrides the prompt count of 2. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds3.h"
#include "harness.h"
#include "infer/generate.h"
#include "infer/sampler.h"
#include "model/synth.h"

static uint64_t rng_state = 0x1234567;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

typedef struct {
    int32_t *toks;
    int n, cap;
} collect;
static int on_tok(void *ud, int32_t t) {
    collect *c = ud;
    if (c->n < c->cap) c->toks[c->n] = t;
    c->n++;
    return 0;
}

static ds3_model *load(const char *dir) {
    char err[DS3_ERR_LEN];
    ds3_model_params mp = ds3_model_default_params();
    ds3_model *m = ds3_model_load(dir, &mp, err, sizeof err);
    if (!m) fprintf(stderr, "%s\n", err);
    return m;
}
static int g_threads = 1; /* threads of every test session */
static ds3_session *session(ds3_model *m, int n_threads, int n_batch) {
    char err[DS3_ERR_LEN];
    ds3_session_params sp = ds3_session_default_params();
    sp.n_threads = n_threads > g_threads ? n_threads : g_threads;
    sp.n_batch = n_batch;
    ds3_session *s = ds3_session_new(m, &sp, err, sizeof err);
    if (!s) fprintf(stderr, "%s\n", err);
    return s;
}

/* 1. batched eval == token-by-token eval, bitwise (main logits and hiddens). */
/* nth threads; kblock > 0: keys per softmax block (DS3_MLA_KBLOCK), so that with 2 threads a
 * one-token eval splits its keys between the threads (mla.c's keys_worker) while the batches
 * split heads: the bits must still agree. */
static void test_batch_invariance(ds3_model *m, const char *tag, int nth, int kblock) {
    const int V = ds3_model_vocab_size(m), n = 12;
    char kbs[16];
    snprintf(kbs, sizeof kbs, "%d", kblock);
    if (kblock > 0) setenv("DS3_MLA_KBLOCK", kbs, 1);
    ds3_session *a = session(m, nth, 64), *b = session(m, nth, 64), *c1 = session(m, nth, 64);
    unsetenv("DS3_MLA_KBLOCK");
    int32_t t[12];
    for (int i = 0; i < n; i++) t[i] = (int32_t)(rnd() % (uint32_t)V);
    float *la = malloc((size_t)n * V * sizeof *la), *lb = malloc((size_t)n * V * sizeof *lb);
    char err[DS3_ERR_LEN];
    ds3_session_eval(a, t, 4, NULL, err, sizeof err); /* prompt of 4, then 8 at once */
    ds3_session_eval(a, t + 4, 8, la, err, sizeof err);
    ds3_session_eval(b, t, 4, NULL, err, sizeof err); /* same prompt, then 1 + 2 + 5 */
    ds3_session_eval(b, t + 4, 1, lb, err, sizeof err);
    ds3_session_eval(b, t + 5, 2, lb + (size_t)V, err, sizeof err);
    ds3_session_eval(b, t + 7, 5, lb + (size_t)3 * V, err, sizeof err);
    CHECK(memcmp(la, lb, (size_t)8 * V * sizeof *la) == 0,
          "%s t%d kblock %d: logits of one 8-token eval differ from 1+2+5 evals (max %g)", tag, nth, kblock,
          th_maxdiff(la, lb, (size_t)8 * V));
    ds3_session_eval(c1, t, 4, NULL, err, sizeof err); /* same prompt, then 8 single tokens */
    for (int i = 4; i < n; i++) ds3_session_eval(c1, t + i, 1, lb + (size_t)(i - 4) * V, err, sizeof err);
    CHECK(memcmp(la, lb, (size_t)8 * V * sizeof *la) == 0,
          "%s t%d kblock %d: logits of one 8-token eval differ from 8 one-token evals (max %g)", tag, nth, kblock,
          th_maxdiff(la, lb, (size_t)8 * V));
    free(la);
    free(lb);
    ds3_session_free(a);
    ds3_session_free(b);
    ds3_session_free(c1);
}

static int quiet_errors; /* expected failures (context full) */
/* auto runs: steps per probe, MTP replay window, seed of a random schedule (0: timed) */
static int g_auto_probe = 2, g_auto_window = 8;
static uint64_t g_auto_seed;
static int gen(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int np, int n_predict, int spec, int n_draft,
               int eos, collect *out, ds3_gen_stats *st) {
    char err[DS3_ERR_LEN];
    ds3_gen_params gp = ds3_gen_default_params();
    gp.n_predict = n_predict;
    gp.stop_at_eos = eos;
    gp.spec = spec;
    gp.n_draft = n_draft;
    if (spec == DS3_SPEC_AUTO) { /* switch often: both kinds of step, and MTP gaps, in every run */
        gp.auto_probe = g_auto_probe;
        gp.auto_period = 3;
        gp.auto_window = g_auto_window;
        gp.auto_test_seed = g_auto_seed;
    }
    gp.on_token = on_tok;
    gp.ud = out;
    out->n = 0;
    ds3_session_reset(s);
    int rc = spec ? ds3_generate_spec(s, smp, prompt, np, &gp, st, err, sizeof err)
                  : ds3_generate_plain(s, smp, prompt, np, &gp, st, err, sizeof err);
    if (rc && !quiet_errors) fprintf(stderr, "generate: %s\n", err);
    return rc;
}

/* The caches of s after generating out[0..n_out) from prompt equal those of a fresh session f
 * that ran the main model over the whole sequence in one pass and the MTP over its first
 * n_mtp positions at once (bitwise: batch invariance). Returns 1 when they do. */
static int caches_exact(ds3_session *s, ds3_session *f, const int32_t *prompt, int np, const int32_t *out, int n_out,
                        int n_mtp, int32_t *all, const char *tag, int pi, int *bad) {
    const int V = ds3_model_vocab_size(ds3_session_model(s));
    const int n = np + n_out; /* tokens x_0..x_{n-1}; the main model saw x_0..x_{n-2} */
    char err[DS3_ERR_LEN];
    memcpy(all, prompt, (size_t)np * sizeof *all);
    memcpy(all + np, out, (size_t)n_out * sizeof *all);
    ds3_session_reset(f);
    int ok = ds3_session_eval(f, all, n - 1, NULL, err, sizeof err) == 0 &&
             ds3_session_mtp_eval(f, all + 1, ds3_session_hidden(f, 0), n_mtp, NULL, err, sizeof err) == 0;
    int mtp_same = ok && memcmp(ds3_session_mtp_logits(f), ds3_session_mtp_logits(s), (size_t)V * sizeof(float)) == 0;
    double mtp_diff = th_maxdiff(ds3_session_mtp_logits(f), ds3_session_mtp_logits(s), (size_t)V);
    /* main cache: one more token on both */
    ok = ok && ds3_session_eval(f, all + n - 1, 1, NULL, err, sizeof err) == 0 &&
         ds3_session_eval(s, all + n - 1, 1, NULL, err, sizeof err) == 0;
    if (!ok || !mtp_same || memcmp(ds3_session_logits(f), ds3_session_logits(s), (size_t)V * sizeof(float)) != 0) {
        if (*bad < 3)
            fprintf(stderr, "%s: prompt %d: caches after speculation differ from one pass (mtp %g, main %g)\n", tag, pi,
                    mtp_diff, th_maxdiff(ds3_session_logits(f), ds3_session_logits(s), (size_t)V));
        (*bad)++;
        return 0;
    }
    return 1;
}

/* 2. greedy identity + cache exactness; 4. the same for the adaptive mode (every other prompt) */
static void test_greedy(ds3_model *m, const char *tag, int n_prompts, int n_predict) {
    const int V = ds3_model_vocab_size(m);
    ds3_session *s = session(m, 1, 16), *f = session(m, 1, 4096);
    ds3_sampler_params spp = ds3_sampler_default_params();
    spp.temp = 0;
    ds3_sampler *smp = ds3_sampler_new(&spp, V);
    int32_t *a = malloc((size_t)n_predict * sizeof *a), *b = malloc((size_t)n_predict * sizeof *b);
    int32_t *all = malloc((size_t)(n_predict + 64) * sizeof *all);
    collect ca = {a, 0, n_predict}, cb = {b, 0, n_predict};
    long n_same = 0, n_tok = 0, drafted = 0, accepted = 0, steps = 0, n_gen = 0;
    long au_runs = 0, au_same = 0, au_spec = 0, au_plain = 0, au_switch = 0, au_gap = 0, au_exact = 0;
    long au_drafted = 0, au_accepted = 0;
    int bad_prompts = 0, bad_state = 0, bad_mtp = 0, au_bad = 0, au_bad_state = 0;
    for (int pi = 0; pi < n_prompts; pi++) {
        int32_t prompt[32];
        const int np = 1 + (int)(rnd() % 24);
        for (int i = 0; i < np; i++) prompt[i] = (int32_t)(rnd() % (uint32_t)V);
        const int nd = 1 + pi % 3, eos = pi % 10 == 9; /* drafts 1, 2, 3; sometimes stop at EOS */
        ds3_gen_stats sa, sb;
        if (gen(s, smp, prompt, np, n_predict, 0, 1, eos, &ca, &sa)) { bad_prompts++; continue; }
        const int n_past_plain = ds3_session_n_past(s);
        if (gen(s, smp, prompt, np, n_predict, 1, nd, eos, &cb, &sb)) { bad_prompts++; continue; }
        int same = ca.n == cb.n && memcmp(a, b, (size_t)ca.n * sizeof *a) == 0;
        if (!same) {
            int j = 0;
            while (j < ca.n && j < cb.n && a[j] == b[j]) j++;
            if (bad_prompts < 3)
                fprintf(stderr, "%s: prompt %d (draft %d): first difference at token %d of %d/%d\n", tag, pi, nd, j,
                        ca.n, cb.n);
            bad_prompts++;
        }
        n_same += same;
        n_tok += cb.n;
        drafted += sb.n_drafted;
        accepted += sb.n_accepted;
        steps += sb.n_steps;
        n_gen += sb.n_gen;
        /* both caches aligned with plain decoding's state */
        if (ds3_session_n_past(s) != n_past_plain || ds3_session_mtp_n_past(s) != n_past_plain) bad_state++;
        /* MTP cache exact: a fresh session over prompt + generated[0..n-1) in one pass, MTP over
         * every position at once, must give the same MTP logits (bitwise: batch invariance) */
        if (pi % 10 == 0 && same && cb.n >= 1) caches_exact(s, f, prompt, np, b, cb.n, np + cb.n - 1, all, tag, pi, &bad_mtp);
        if (pi % 2 == 0) continue;
        /* auto: a replay window of 256 never drops pairs mid-run (the only gap is the run's last
         * plain steps, so the MTP must equal one pass over the positions before them); 8 drops
         * them after every plain stretch longer than 8. The schedule is the timed one (probes of
         * 2 steps, periods from 3) or a random one. */
        g_auto_window = pi % 4 == 1 ? 256 : 8;
        g_auto_seed = (pi / 4) % 2 ? 0x9e3779b97f4a7c15ull * (uint64_t)(pi + 1) : 0;
        if (gen(s, smp, prompt, np, n_predict, DS3_SPEC_AUTO, nd, eos, &cb, &sb)) { au_bad++; continue; }
        au_runs++;
        same = ca.n == cb.n && memcmp(a, b, (size_t)ca.n * sizeof *a) == 0;
        if (!same && au_bad++ < 3) {
            int j = 0;
            while (j < ca.n && j < cb.n && a[j] == b[j]) j++;
            fprintf(stderr, "%s auto: prompt %d (draft %d): first difference at token %d of %d/%d\n", tag, pi, nd, j,
                    ca.n, cb.n);
        }
        au_same += same;
        au_spec += sb.n_gen_spec;
        au_plain += sb.n_gen - 1 - sb.n_gen_spec;
        au_switch += sb.n_switches;
        au_gap += sb.n_mtp_gap;
        au_drafted += sb.n_drafted;
        au_accepted += sb.n_accepted;
        /* the main cache is plain decoding's; the MTP's runs behind it by exactly the gap */
        if (ds3_session_n_past(s) != n_past_plain || ds3_session_mtp_n_past(s) + sb.n_mtp_gap != n_past_plain ||
            sb.spec_mode != DS3_SPEC_AUTO || sb.n_steps_spec > sb.n_steps)
            au_bad_state++;
        if (g_auto_window == 256 && same && cb.n >= 1)
            au_exact += caches_exact(s, f, prompt, np, b, cb.n, np + cb.n - 1 - sb.n_mtp_gap, all, tag, pi, &bad_mtp);
    }
    CHECK(bad_prompts == 0, "%s: %d of %d prompts differ between speculative and plain greedy", tag, bad_prompts, n_prompts);
    CHECK(bad_state == 0, "%s: %d generations ended with caches not aligned to plain decoding", tag, bad_state);
    CHECK(bad_mtp == 0, "%s: %d generations left an inexact cache", tag, bad_mtp);
    CHECK(drafted > 0 && accepted <= drafted, "%s: drafted %ld accepted %ld", tag, drafted, accepted);
    if (strstr(tag, "agree")) CHECK(accepted > drafted / 2, "%s: agreeing MTP accepted only %ld of %ld", tag, accepted, drafted);
    printf("  %-34s greedy: %ld/%d prompts identical, %ld tokens; acceptance %.1f%%, %.2f tokens/step\n", tag,
           n_same, n_prompts, n_tok, drafted ? 100.0 * accepted / drafted : 0.0,
           steps ? (double)(n_gen - n_prompts) / steps : 0.0);
    if (n_prompts >= 2) {
        CHECK(au_bad == 0 && au_same == au_runs, "%s auto: %d of %ld prompts differ from plain greedy", tag, au_bad, au_runs);
        CHECK(au_bad_state == 0, "%s auto: %d generations ended with the caches misaligned", tag, au_bad_state);
        /* the shortened schedule must have run both kinds of step and switched between them */
        CHECK(au_spec > 0 && au_plain > 0 && au_switch >= au_runs,
              "%s auto: %ld speculative and %ld plain tokens, %ld switches in %ld runs", tag, au_spec, au_plain, au_switch,
              au_runs);
        if (n_predict >= 100) CHECK(au_gap > 0, "%s auto: no MTP gap was exercised", tag);
        printf("  %-34s auto:   %ld/%ld prompts identical; %ld speculative + %ld plain tokens (acceptance %.1f%%), "
               "%ld switches, %ld MTP gap positions, %ld exact MTP caches checked\n",
               tag, au_same, au_runs, au_spec, au_plain, au_drafted ? 100.0 * au_accepted / au_drafted : 0.0, au_switch,
               au_gap, au_exact);
    }
    free(a);
    free(b);
    free(all);
    ds3_sampler_free(smp);
    ds3_session_free(s);
    ds3_session_free(f);
}

/* Edge cases: the context fills up mid-generation (drafts shrink to fit; both loops fail at the
 * same token), and n_batch 1 (no room to verify: speculation falls back to plain). */
static void test_edges(ds3_model *m, const char *tag) {
    const int V = ds3_model_vocab_size(m);
    char err[DS3_ERR_LEN];
    ds3_sampler_params spp = ds3_sampler_default_params();
    spp.temp = 0;
    ds3_sampler *smp = ds3_sampler_new(&spp, V);
    int32_t a[64], b[64], prompt[5] = {1 % V, 2 % V, 3 % V, 4 % V, 5 % V};
    quiet_errors = 1;
    for (int nb = 1; nb <= 16; nb += 15) {
        ds3_session_params sp = ds3_session_default_params();
        sp.n_threads = 1;
        sp.n_ctx = 40;
        sp.n_batch = nb;
        ds3_session *s = ds3_session_new(m, &sp, err, sizeof err);
        for (int nd = 1; nd <= 5 && s; nd++) { /* drafts 1-3; 4, 5: auto with 1 and 2 drafts */
            collect ca = {a, 0, 64}, cb = {b, 0, 64};
            ds3_gen_stats sa, sb;
            int ra = gen(s, smp, prompt, 5, 60, 0, 1, 0, &ca, &sa);
            int rb = gen(s, smp, prompt, 5, 60, nd <= 3 ? DS3_SPEC_MTP : DS3_SPEC_AUTO, nd <= 3 ? nd : nd - 3, 0, &cb, &sb);
            CHECK(ra != 0 && rb != 0, "%s: n_ctx 40: generating 60 tokens must fail (plain %d, spec %d)", tag, ra, rb);
            CHECK(ca.n == cb.n && ca.n == 36 && memcmp(a, b, (size_t)ca.n * sizeof *a) == 0,
                  "%s: n_batch %d draft %d: at the context limit plain emitted %d tokens, spec %d", tag, nb, nd, ca.n, cb.n);
            if (nb == 1) CHECK(sb.n_drafted == 0, "%s: n_batch 1 drafted %d", tag, sb.n_drafted);
        }
        ds3_session_free(s);
    }
    quiet_errors = 0;
    ds3_sampler_free(smp);
}

/* 4. a ds3_spec_auto_memo carries the choice over calls: a memo that chose plain (speculation)
 * makes the next call start with a full period of plain (speculative) steps, no probes; the
 * output stays plain greedy's; a fresh memo is filled in by the call. */
static void test_auto_memo(ds3_model *m, const char *tag) {
    const int V = ds3_model_vocab_size(m);
    char err[DS3_ERR_LEN];
    ds3_session *s = session(m, 1, 16);
    ds3_sampler_params spp = ds3_sampler_default_params();
    spp.temp = 0;
    ds3_sampler *smp = ds3_sampler_new(&spp, V);
    int32_t a[60], b[60], prompt[6] = {1 % V, 7 % V, 3 % V, 9 % V, 4 % V, 2 % V};
    collect ca = {a, 0, 60}, cb = {b, 0, 60};
    ds3_gen_stats sa, sb;
    CHECK(gen(s, smp, prompt, 6, 60, 0, 1, 0, &ca, &sa) == 0, "%s: plain generation failed", tag);
    for (int chosen = -1; chosen <= 1; chosen++) { /* -1: an empty memo */
        ds3_spec_auto_memo memo = {0};
        if (chosen >= 0) {
            memo.valid = 1;
            memo.nring[0] = memo.nring[1] = 1;
            memo.ring[0][0] = memo.ring[1][0] = 1e-3;
            memo.spec_steps = 1;
            memo.spec_tokens = 2;
            memo.chosen = chosen;
            memo.period = 256;
        }
        ds3_gen_params gp = ds3_gen_default_params();
        gp.n_predict = 60;
        gp.stop_at_eos = 0;
        gp.spec = DS3_SPEC_AUTO;
        gp.auto_memo = &memo;
        gp.on_token = on_tok;
        gp.ud = &cb;
        cb.n = 0;
        ds3_session_reset(s);
        int rc = ds3_generate_spec(s, smp, prompt, 6, &gp, &sb, err, sizeof err);
        CHECK(rc == 0 && cb.n == ca.n && memcmp(a, b, (size_t)ca.n * sizeof *a) == 0,
              "%s: auto with memo (chosen %d) differs from plain greedy", tag, chosen);
        if (chosen == 0) CHECK(sb.n_gen_spec == 0 && sb.n_switches == 0, "%s: memo chose plain, yet %d speculative tokens", tag, sb.n_gen_spec);
        if (chosen == 1)
            CHECK(sb.n_gen_spec == sb.n_gen - 1 && sb.n_switches == 0, "%s: memo chose speculation, yet %d of %d tokens speculative",
                  tag, sb.n_gen_spec, sb.n_gen - 1);
        if (chosen < 0) CHECK(memo.valid && memo.nring[0] > 0 && memo.nring[1] > 0 && memo.spec_tokens >= memo.spec_steps,
                              "%s: auto did not fill in the memo", tag);
    }
    ds3_sampler_free(smp);
    ds3_session_free(s);
}

/* ---- 3. chi-square ------------------------------------------------------------------------ */

/* Upper 0.001 quantile of chi-square with df degrees of freedom (Wilson-Hilferty). */
static double chi2_crit(int df) {
    const double z = 3.0902, h = 2.0 / (9.0 * df);
    double t = 1 - h + z * sqrt(h);
    return df * t * t * t;
}

/* Pearson chi-square of counts against probabilities (cells with expectation < 5 pooled). */
static int chi2_ok(const long *cnt, const double *prob, int n, long N, const char *what, const char *tag) {
    double stat = 0, pool_e = 0, pool_o = 0;
    int df = -1;
    for (int i = 0; i < n; i++) {
        double e = prob[i] * N;
        if (e < 5) {
            pool_e += e;
            pool_o += cnt[i];
            if (prob[i] == 0 && cnt[i] > 0) {
                fprintf(stderr, "%s %s: cell %d has probability 0 but %ld samples\n", tag, what, i, cnt[i]);
                return 0;
            }
            continue;
        }
        stat += (cnt[i] - e) * (cnt[i] - e) / e;
        df++;
    }
    if (pool_e > 0) {
        stat += (pool_o - pool_e) * (pool_o - pool_e) / (pool_e > 1e-9 ? pool_e : 1e-9);
        df++;
    }
    if (df < 1) df = 1;
    double crit = chi2_crit(df);
    printf("  %-34s %-10s chi2 %8.1f, df %4d, 0.1%% critical %7.1f: %s\n", tag, what, stat, df, crit,
           stat <= crit ? "ok" : "REJECT");
    return stat <= crit;
}

/* Exact distribution of (x1, x2) and of x3 after `prompt` under the sampler's filtering. */
static void exact_dist(ds3_model *m, ds3_sampler *smp, const int32_t *prompt, int np, double *p12, double *p3) {
    const int V = ds3_model_vocab_size(m);
    ds3_session *s = session(m, 1, 64);
    char err[DS3_ERR_LEN];
    float *p1 = malloc((size_t)V * sizeof *p1), *p2 = malloc((size_t)V * sizeof *p2), *pp3 = malloc((size_t)V * sizeof *pp3);
    memset(p12, 0, (size_t)V * V * sizeof *p12);
    memset(p3, 0, (size_t)V * sizeof *p3);
    ds3_session_eval(s, prompt, np, NULL, err, sizeof err);
    ds3_sampler_probs(smp, ds3_session_logits(s), p1);
    for (int a = 0; a < V; a++) {
        if (p1[a] <= 0) continue;
        ds3_session_truncate(s, np);
        int32_t ta = a;
        ds3_session_eval(s, &ta, 1, NULL, err, sizeof err);
        ds3_sampler_probs(smp, ds3_session_logits(s), p2);
        for (int b = 0; b < V; b++) {
            if (p2[b] <= 0) continue;
            p12[(size_t)a * V + b] = (double)p1[a] * p2[b];
            ds3_session_truncate(s, np + 1);
            int32_t tb = b;
            ds3_session_eval(s, &tb, 1, NULL, err, sizeof err);
            ds3_sampler_probs(smp, ds3_session_logits(s), pp3);
            for (int c = 0; c < V; c++) p3[c] += p12[(size_t)a * V + b] * pp3[c];
        }
    }
    free(p1);
    free(p2);
    free(pp3);
    ds3_session_free(s);
}

static void test_chi2(ds3_model *m, const char *tag, ds3_sampler_params spp, long N) {
    const int V = ds3_model_vocab_size(m);
    const int32_t prompt[3] = {3 % V, 7 % V, 5 % V};
    ds3_sampler *smp = ds3_sampler_new(&spp, V);
    double *p12 = malloc((size_t)V * V * sizeof *p12), *p3 = malloc((size_t)V * sizeof *p3);
    exact_dist(m, smp, prompt, 3, p12, p3);
    long *c12 = malloc((size_t)V * V * sizeof *c12), *c3 = malloc((size_t)V * sizeof *c3);
    ds3_session *s = session(m, 1, 64);
    int32_t out[4];
    collect co = {out, 0, 4};
    /* plain, spec draft 1, spec draft 2, auto draft 1 with a random schedule (a new one per
     * sample, so every order of plain and speculative steps occurs), auto draft 2 timed (probes
     * of 1 step: speculative, plain, then the faster) */
    static const char *names[5] = {"plain", "spec d1", "spec d2", "auto d1 random", "auto d2 timed"};
    for (int mode = 0; mode < 5; mode++) {
        memset(c12, 0, (size_t)V * V * sizeof *c12);
        memset(c3, 0, (size_t)V * sizeof *c3);
        long drafted = 0, accepted = 0, n_spec = 0, n_plain = 0;
        int fails = 0;
        const int kind = mode == 0 ? DS3_SPEC_NONE : mode < 3 ? DS3_SPEC_MTP : DS3_SPEC_AUTO;
        const int nd = mode == 0 ? 1 : mode % 2 ? 1 : 2;
        g_auto_probe = 1;
        g_auto_window = 8;
        for (long i = 0; i < N && !fails; i++) {
            ds3_gen_stats st;
            g_auto_seed = mode == 3 ? 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) : 0;
            fails += gen(s, smp, prompt, 3, 4, kind, nd, 0, &co, &st) != 0 || co.n != 4;
            c12[(size_t)out[0] * V + out[1]]++;
            c3[out[2]]++;
            drafted += st.n_drafted;
            accepted += st.n_accepted;
            n_spec += st.n_gen_spec;
            n_plain += st.n_gen - 1 - st.n_gen_spec;
        }
        g_auto_probe = 2;
        g_auto_seed = 0;
        CHECK(!fails, "%s: generation failed", tag);
        char t[128];
        snprintf(t, sizeof t, "%s %s", tag, names[mode]);
        if (kind == DS3_SPEC_AUTO) {
            printf("  %-34s %ld tokens from speculative steps, %ld from plain ones\n", t, n_spec, n_plain);
            CHECK(n_spec > N / 4 && n_plain > N / 4, "%s: %ld speculative and %ld plain tokens: both kinds must run", t,
                  n_spec, n_plain);
        }
        CHECK(chi2_ok(c12, p12, V * V, N, "(x1,x2)", t), "%s: (x1, x2) distribution differs from the exact one", t);
        CHECK(chi2_ok(c3, p3, V, N, "x3", t), "%s: x3 distribution differs from the exact one", t);
        if (mode) {
            double acc = (double)accepted / (double)drafted;
            printf("  %-34s acceptance %.1f%% over %ld drafts\n", t, 100 * acc, drafted);
            /* both branches (accept, and reject + residual) must be exercised */
            if (kind == DS3_SPEC_MTP)
                CHECK(acc > 0.05 && acc < 0.95, "%s: acceptance %.3f does not exercise both branches", t, acc);
            else /* fewer speculative steps: ask for a few hundred of each branch */
                CHECK(accepted >= 200 && drafted - accepted >= 200, "%s: %ld of %ld drafts accepted: both branches must run",
                      t, accepted, drafted);
        }
    }
    free(p12);
    free(p3);
    free(c12);
    free(c3);
    ds3_sampler_free(smp);
    ds3_session_free(s);
}

static int is_dir_with_config(const char *d) {
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", d);
    return access(p, R_OK) == 0;
}

/* ds3_argmax (four running maxima, then the first index of the maximum) against the plain
 * first-index loop, on arrays full of ties, NaNs, signed zeros and infinities. */
static int argmax_plain(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}
static void test_argmax(void) {
    float x[300];
    int bad = 0;
    for (int t = 0; t < 20000; t++) {
        const int n = 1 + (int)(rnd() % 300);
        for (int i = 0; i < n; i++) {
            const uint32_t r = rnd() % 20;
            x[i] = r == 0 ? NAN : r == 1 ? -0.0f : r == 2 ? 0.0f : r == 3 ? INFINITY : r == 4 ? -INFINITY : (float)(rnd() % 7);
        }
        bad += ds3_argmax(x, n) != argmax_plain(x, n);
    }
    CHECK(bad == 0 && ds3_argmax(x, 0) == 0, "ds3_argmax differs from the plain first-index loop on %d of 20000 arrays", bad);
}

int main(void) {
    TEST_BEGIN("test_spec");
    test_argmax();
    /* caches_exact compares bitwise with one pass over a whole generation; batches from
     * DS3_MLA_NAIVE_MIN_T tokens attend in the naive form (equal within 1e-4, test_golden, not
     * bitwise), so every batch here stays in the absorbed form */
    setenv("DS3_MLA_NAIVE_MIN_T", "1000000", 1);
    const char *dirs[] = {"tests/fixtures/golden/dev/checkpoint", "tests/fixtures/golden/fp8-dev/checkpoint",
                          "tests/fixtures/models/v3-bf16/checkpoint", "tests/fixtures/models/v3-fp8-qproj/checkpoint",
                          "tests/fixtures/models/v3-f32-nogroup/checkpoint", "models/default"};
    int n_prompts = 100;
    const char *e = getenv("DS3_SPEC_PROMPTS");
    if (e && atoi(e) > 0) n_prompts = atoi(e);
    int n_mtp = 0;
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (!is_dir_with_config(dirs[i])) {
            if (i + 1 < sizeof dirs / sizeof dirs[0]) CHECK(0, "%s: missing", dirs[i]);
            continue;
        }
        ds3_model *m = load(dirs[i]);
        CHECK(m != NULL, "%s: load failed", dirs[i]);
        if (!m) continue;
        if (ds3_model_has_mtp(m)) {
            n_mtp++;
            test_batch_invariance(m, dirs[i], 1, 0);
            test_batch_invariance(m, dirs[i], 2, 3);
            test_greedy(m, dirs[i], n_prompts, 200);
        }
        ds3_model_free(m);
    }
    CHECK(n_mtp >= 5, "only %d MTP checkpoints found", n_mtp);

    char tmpl[] = "/tmp/ds3_spec_XXXXXX";
    char *td = mkdtemp(tmpl);
    CHECK(td != NULL, "mkdtemp");
    if (td) {
        /* greedy identity where most drafts are accepted: the agreeing synthetic model (FP8) */
        ds3_config c;
        ds3_synth_bench_config(&c);
        c.vocab_size = 512;
        c.hidden_size = 256;
        c.intermediate_size = 256;
        c.moe_intermediate_size = 64;
        c.num_hidden_layers = 3;
        c.n_heads = 4;
        c.q_lora_rank = 64;
        c.kv_lora_rank = 64;
        c.qk_nope_head_dim = 32;
        c.qk_rope_head_dim = 16;
        c.v_head_dim = 32;
        c.n_routed_experts = 8;
        c.num_experts_per_tok = 2;
        c.n_group = 2;
        c.topk_group = 1;
        c.max_position_embeddings = 512;
        c.rope_original_max_pos = 128;
        char err[DS3_ERR_LEN];
        ds3_synth_opts so = {.mtp_agree = 1, .block_scale = 0.05f};
        int rc = ds3_synth_write_opts(td, &c, DS3_DT_F8E4M3, 5, &so, err, sizeof err);
        CHECK(rc == 0, "synth: %s", err);
        ds3_model *m = rc ? NULL : load(td);
        if (m) {
            test_batch_invariance(m, "synth-agree-fp8", 1, 0);
            test_greedy(m, "synth-agree-fp8", n_prompts, 200);
            test_edges(m, "synth-agree-fp8");
            test_auto_memo(m, "synth-agree-fp8");
            g_threads = 2; /* the same with 2 threads (work is split differently for 1 and k+1 tokens) */
            test_batch_invariance(m, "synth-agree-fp8 2 threads", 2, 0);
            test_batch_invariance(m, "synth-agree-fp8 2 threads", 2, 5);
            test_greedy(m, "synth-agree-fp8 2 threads", n_prompts / 5 > 0 ? n_prompts / 5 : 1, 200);
            /* one-token steps past 2 key blocks split their keys between the threads, the
             * verification batches their heads: greedy output must still be identical */
            setenv("DS3_MLA_KBLOCK", "16", 1);
            test_greedy(m, "synth-agree-fp8 2 threads kblock 16", n_prompts / 5 > 0 ? n_prompts / 5 : 1, 200);
            unsetenv("DS3_MLA_KBLOCK");
            g_threads = 1;
            ds3_model_free(m);
        }
    }
    if (td) {
        /* chi-square on a tiny synthetic model (vocab 24) without filtering ... */
        ds3_config c;
        ds3_synth_bench_config(&c);
        c.vocab_size = 24;
        c.hidden_size = 64;
        c.intermediate_size = 96;
        c.moe_intermediate_size = 32;
        c.num_hidden_layers = 2;
        c.n_heads = 2;
        c.q_lora_rank = 32;
        c.kv_lora_rank = 32;
        c.qk_nope_head_dim = 16;
        c.qk_rope_head_dim = 8;
        c.v_head_dim = 16;
        c.n_routed_experts = 8;
        c.num_experts_per_tok = 2;
        c.n_group = 2;
        c.topk_group = 1;
        c.max_position_embeddings = 64;
        c.rope_original_max_pos = 64;
        char err[DS3_ERR_LEN];
        int rc = ds3_synth_write(td, &c, DS3_DT_F32, 7, err, sizeof err);
        CHECK(rc == 0, "synth: %s", err);
        ds3_model *m = rc ? NULL : load(td);
        if (m) {
            ds3_sampler_params sp = {.temp = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 11};
            test_chi2(m, "synth-v24 t1", sp, 20000);
            ds3_model_free(m);
        }
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", td);
        if (system(cmd)) {}
    }
    /* ... and on a fixture (vocab 128) with every filter on */
    ds3_model *m = load("tests/fixtures/models/v3-f32-nogroup/checkpoint");
    if (m) {
        ds3_sampler_params sp = {.temp = 1.5f, .top_k = 12, .top_p = 0.9f, .min_p = 0.05f, .seed = 12};
        test_chi2(m, "v3-f32-nogroup t1.5 k12 p.9 m.05", sp, 20000);
        ds3_model_free(m);
    }
    return TEST_REPORT();
}
