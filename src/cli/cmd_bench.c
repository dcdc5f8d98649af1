/* cmd_bench.c -- `ds3 bench`: prompt-processing and decode speed of a model next to this
 * machine's memory bandwidth (measured in the same run), and the decode roofline fraction
 * = decode tok/s x weight bytes read per token / bandwidth. `--synth DIR` writes the
 * DeepSeek-V3-shaped benchmark model (about 1.2B total / 0.2B active parameters). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ds3.h"
#include "infer/generate.h"
#include "infer/sampler.h"
#include "kernels/membw.h"
#include "model/model.h"
#include "model/synth.h"
#include "util/common.h"

static void usage(void) {
    printf("usage: ds3 bench -m DIR [options]\n"
           "       ds3 bench --synth DIR [--dtype bf16|fp8|f16|f32] [--seed S] [--mtp-agree [--block-scale S]]\n\n"
           "  -m, --model DIR       model to measure\n"
           "  -t, --threads N       threads (default: all cores)\n"
           "  -p, --n-prompt N      prompt length for prompt processing (default 512)\n"
           "  -n, --n-gen N         tokens to decode (default 128), timed twice: from an empty cache (as\n"
           "                        llama-bench's tg) and after the prompt (depth N-prompt)\n"
           "  -r, --reps N          repetitions; the best counts (default 5, as llama-bench)\n"
           "  --json                one JSON object on stdout (fields pp_tok_s, tg_tok_s, bytes_per_token,\n"
           "                        mem_bw_gb_s, roofline_fraction, ...)\n"
           "  --no-mmap, --mlock    load the weights into RAM / lock them (recommended: the page cache may\n"
           "                        be trimmed under you)\n"
           "  --no-repack           keep GGUF Q8_0/Q4_K weights in the file's layout\n"
           "  --synth DIR           write the synthetic benchmark checkpoint to DIR and exit\n"
           "  --mtp-agree           with --synth: an MTP module that agrees with the main model (the main\n"
           "                        model made nearly bigram by scaling block outputs by --block-scale,\n"
           "                        default 0.02; see docs/speculative.md): the ceiling of MTP speculation\n"
           "  --spec                also measure greedy decode with MTP speculation on every step against\n"
           "                        plain decode (same prompt, interleaved repetitions): acceptance rate,\n"
           "                        tokens per main step, decode tok/s and the speed-up; and the adaptive\n"
           "                        mode (--spec auto of run/chat) (JSON: spec_* fields)\n"
           "  --draft N             drafts per step with --spec (default 1)\n");
}

static double rss_bytes(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double v = 0;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) v = atof(line + kl + 1) * 1024.0;
    if (f) fclose(f);
    return v;
}

/* The kernel probe's matrix: the last layer's expert (or dense) up projection, the kind of
 * product most of a token's bytes go through. */
static const ds3_mat *probe_matrix(const ds3_model *m) {
    const ds3_layer_w *w = &m->layers[m->cfg.num_hidden_layers - 1];
    return w->is_moe ? &w->experts[0].up : &w->dense.up;
}

/* One kernel probe (membw.h): each thread's best over the probes so far in kbest, the slowest
 * thread of any probe in *kmin. */
static void probe_kernel(const ds3_model *m, int nth, double *kg, double *kbest, double *kmin) {
    if (ds3_kernel_probe(nth, probe_matrix(m), 0.1, kg) < 0) return;
    for (int i = 0; i < nth; i++) {
        kbest[i] = kg[i] > kbest[i] ? kg[i] : kbest[i];
        *kmin = kg[i] < *kmin ? kg[i] : *kmin;
    }
}

/* n per-thread rates, each in fmt, joined by sep */
static void print_rates(FILE *f, const double *v, long n, const char *fmt, const char *sep) {
    for (long i = 0; i < n; i++) {
        if (i) fputs(sep, f);
        fprintf(f, fmt, v[i]);
    }
}

typedef struct {
    double acceptance, tokens_per_step, plain_tg, spec_tg;
    double auto_tg, auto_spec_share; /* --spec auto: tok/s, share of tokens from speculative steps */
    int identical;
} bench_spec_res;

typedef struct {
    int32_t *t;
    int n;
} bench_toks;
static int bench_on_tok(void *ud, int32_t t) {
    bench_toks *b = ud;
    b->t[b->n++] = t;
    return 0;
}

/* Greedy decode of ng tokens after the prompt, plain, speculative on every step (the mechanism)
 * and adaptive (DS3_SPEC_AUTO, the default of run/chat), alternating, best of reps. */
static int bench_spec(ds3_session *s, const int32_t *prompt, int np, int ng, int reps, int n_draft, int quiet,
                      bench_spec_res *r, char *err, size_t errlen) {
    ds3_sampler_params spp = ds3_sampler_default_params();
    spp.temp = 0;
    ds3_sampler *smp = ds3_sampler_new(&spp, ds3_model_vocab_size(ds3_session_model(s)));
    int32_t *out[3] = {malloc((size_t)ng * sizeof(int32_t)), malloc((size_t)ng * sizeof(int32_t)),
                       malloc((size_t)ng * sizeof(int32_t))};
    double best[3] = {1e30, 1e30, 1e30};
    int rc = 0, n[3] = {0, 0, 0};
    static const char *names[3] = {"plain", "spec ", "auto "};
    r->identical = 1;
    for (int rep = 0; rep < reps && !rc; rep++)
        for (int mode = 0; mode < 3 && !rc; mode++) {
            ds3_gen_params gp = ds3_gen_default_params();
            bench_toks bt = {out[mode], 0};
            gp.n_predict = ng;
            gp.stop_at_eos = 0;
            gp.spec = mode == 0 ? DS3_SPEC_NONE : mode == 1 ? DS3_SPEC_MTP : DS3_SPEC_AUTO;
            gp.n_draft = n_draft;
            gp.on_token = bench_on_tok;
            gp.ud = &bt;
            ds3_gen_stats st;
            ds3_session_reset(s);
            rc = mode ? ds3_generate_spec(s, smp, prompt, np, &gp, &st, err, errlen)
                      : ds3_generate_plain(s, smp, prompt, np, &gp, &st, err, errlen);
            if (rc) break;
            n[mode] = bt.n;
            if (st.t_gen < best[mode]) {
                best[mode] = st.t_gen;
                if (mode == 2) r->auto_spec_share = st.n_gen > 1 ? (double)st.n_gen_spec / (st.n_gen - 1) : 0;
            }
            r->plain_tg = n[0] / best[0];
            r->spec_tg = n[1] / best[1];
            r->auto_tg = n[2] / best[2];
            if (mode == 1) {
                r->acceptance = st.n_drafted ? (double)st.n_accepted / st.n_drafted : 0;
                r->tokens_per_step = st.n_steps ? (double)(st.n_gen - 1) / st.n_steps : 0;
            }
            if (mode) r->identical &= n[0] == n[mode] && !memcmp(out[0], out[mode], (size_t)n[0] * sizeof(int32_t));
            if (!quiet)
                fprintf(stderr, "ds3 bench: rep %d %s: %.2f tok/s\n", rep + 1, names[mode], st.n_gen / st.t_gen);
        }
    for (int i = 0; i < 3; i++) free(out[i]);
    ds3_sampler_free(smp);
    return rc;
}

int ds3_cmd_bench(int argc, char **argv) {
    const char *C = "bench", *dir = NULL, *synth = NULL, *dts = "bf16";
    long threads = 0, np = 512, ng = 128, reps = 5, seed = 1;
    int json = 0, spec = 0, agree = 0;
    long n_draft = 1;
    double bscale = 0.02;
    ds3_model_params mp = ds3_model_default_params();
    mp.load_mtp = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!v) return cli_usage_error(C, "%s needs a value", a); dir = v; i++; }
        else if (!strcmp(a, "--synth")) { if (!v) return cli_usage_error(C, "%s needs a value", a); synth = v; i++; }
        else if (!strcmp(a, "--dtype")) { if (!v) return cli_usage_error(C, "%s needs a value", a); dts = v; i++; }
        else if (!strcmp(a, "--seed")) { if (cli_parse_int(C, a, v, 0, 1L << 40, &seed)) return 2; i++; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (cli_parse_int(C, a, v, 1, 512, &threads)) return 2; i++; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) { if (cli_parse_int(C, a, v, 1, 1 << 16, &np)) return 2; i++; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) { if (cli_parse_int(C, a, v, 1, 1 << 16, &ng)) return 2; i++; }
        else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) { if (cli_parse_int(C, a, v, 1, 100, &reps)) return 2; i++; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--spec")) spec = 1;
        else if (!strcmp(a, "--mtp-agree")) agree = 1;
        else if (!strcmp(a, "--draft")) { if (cli_parse_int(C, a, v, 1, 16, &n_draft)) return 2; i++; }
        else if (!strcmp(a, "--block-scale")) { if (cli_parse_float(C, a, v, 0, 1, &bscale)) return 2; i++; }
        else if (!strcmp(a, "--no-mmap")) mp.use_mmap = 0;
        else if (!strcmp(a, "--mlock")) mp.use_mlock = 1;
        else if (!strcmp(a, "--no-repack")) mp.no_repack = 1;
        else return cli_usage_error(C, "unknown option '%s'", a);
    }
    char err[DS3_ERR_LEN];
    if (synth) {
        ds3_dtype dt;
        if (!strcmp(dts, "bf16")) dt = DS3_DT_BF16;
        else if (!strcmp(dts, "fp8")) dt = DS3_DT_F8E4M3;
        else if (!strcmp(dts, "f16")) dt = DS3_DT_F16;
        else if (!strcmp(dts, "f32")) dt = DS3_DT_F32;
        else return cli_usage_error(C, "--dtype: '%s' is not bf16, fp8, f16 or f32", dts);
        ds3_config c;
        ds3_synth_bench_config(&c);
        ds3_synth_opts so = {.mtp_agree = agree, .block_scale = (float)bscale};
        if (ds3_synth_write_opts(synth, &c, dt, (uint64_t)seed, &so, err, sizeof err)) { fprintf(stderr, "ds3 bench: %s\n", err); return 1; }
        fprintf(stderr, "ds3 bench: wrote %s (%s%s)\n", synth, dts, agree ? ", agreeing MTP" : "");
        return 0;
    }
    if (!dir) return cli_usage_error(C, "-m DIR is required");
    if (threads <= 0) threads = ds3_n_cpus();
    mp.load_mtp = spec;
    ds3_model *m = ds3_model_load(dir, &mp, err, sizeof err);
    if (!m) { fprintf(stderr, "ds3 bench: %s\n", err); return 1; }
    if (spec && !ds3_model_has_mtp(m)) { fprintf(stderr, "ds3 bench: %s: --spec needs MTP weights\n", dir); ds3_model_free(m); return 1; }
    ds3_model_stats ms;
    ds3_model_get_stats(m, &ms);
    ds3_session_params sp = ds3_session_default_params();
    sp.n_threads = (int)threads;
    sp.n_ctx = (int)(np + ng + 8 + n_draft);
    sp.n_batch = (int)np;
    sp.use_mtp = spec;
    ds3_session *s = ds3_session_new(m, &sp, err, sizeof err);
    if (!s) { fprintf(stderr, "ds3 bench: %s\n", err); ds3_model_free(m); return 1; }
    if (!json) fprintf(stderr, "ds3 bench: measuring memory bandwidth (%ld threads)...\n", threads);
    double bw = ds3_membw_measure((int)threads, 1.0);
    /* the kernel's speed per thread from L2, probed with the triad: on a shared host a core whose
     * vector units a neighbour takes computes far slower, which decode then shows */
    double *kg = calloc((size_t)threads, sizeof *kg), *kbest = calloc((size_t)threads, sizeof *kbest), kmin = 1e30;
    if (!kg || !kbest) { fprintf(stderr, "ds3 bench: out of memory\n"); free(kg); free(kbest); ds3_session_free(s); ds3_model_free(m); return 1; }
    probe_kernel(m, (int)threads, kg, kbest, &kmin);
    const int V = ds3_model_vocab_size(m);
    int32_t *toks = malloc((size_t)np * sizeof *toks);
    uint64_t x = 88172645463325252ull;
    for (long i = 0; i < np; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        toks[i] = (int32_t)(x % (uint64_t)V);
    }
    /* Decode is timed twice, as llama-bench does it and after the prompt: tg from an empty cache
     * (llama-bench's tg128, the figure comparable with it) and tg at depth np (after the timed
     * prompt; attention then reads np cached positions per layer, counted in its roofline). */
    double best_pp = 1e30, best_tg = 1e30, best_tgd = 1e30, rss_max = 0;
    /* warm-up (as llama-bench): first touches of scratch and cache pages stay out of the timings */
    int rc = ds3_session_eval(s, toks, np < 16 ? (int)np : 16, NULL, err, sizeof err);
    for (int i = 0; i < 4 && !rc; i++) rc = ds3_session_eval(s, toks + i, 1, NULL, err, sizeof err);
    for (long r = 0; r < reps && !rc; r++) {
        ds3_session_reset(s);
        double t0 = ds3_time_s();
        int32_t t = toks[0];
        for (long i = 0; i < ng && !rc; i++) {
            rc = ds3_session_eval(s, &t, 1, NULL, err, sizeof err);
            t = ds3_argmax(ds3_session_logits(s), V);
        }
        double t1 = ds3_time_s();
        best_tg = t1 - t0 < best_tg ? t1 - t0 : best_tg;
        if (rc) break;
        ds3_session_reset(s);
        t0 = ds3_time_s();
        if ((rc = ds3_session_eval(s, toks, (int)np, NULL, err, sizeof err))) break;
        t1 = ds3_time_s();
        best_pp = t1 - t0 < best_pp ? t1 - t0 : best_pp;
        t0 = ds3_time_s();
        for (long i = 0; i < ng && !rc; i++) {
            t = ds3_argmax(ds3_session_logits(s), V);
            rc = ds3_session_eval(s, &t, 1, NULL, err, sizeof err);
        }
        t1 = ds3_time_s();
        best_tgd = t1 - t0 < best_tgd ? t1 - t0 : best_tgd;
        double rss = rss_bytes("VmRSS:");
        rss_max = rss > rss_max ? rss : rss_max;
        {   /* bandwidth on a shared machine varies from second to second (a neighbour's burst can
             * halve it for a whole probe): one more probe per rep, best of all (STREAM's convention) */
            double b = ds3_membw_measure((int)threads, 0.5);
            if (b > bw) bw = b;
        }
        probe_kernel(m, (int)threads, kg, kbest, &kmin);
        if (!json) {
            fprintf(stderr, "ds3 bench: rep %ld: pp %.1f tok/s, tg %.2f tok/s, tg after the prompt %.2f tok/s; kernel (L2)", r + 1,
                    np / best_pp, ng / best_tg, ng / best_tgd);
            print_rates(stderr, kg, threads, " %.1f", ",");
            fprintf(stderr, " G weights/s per thread\n");
        }
    }
    if (rc) { fprintf(stderr, "ds3 bench: %s\n", err); goto out; }
    if (kmin >= 1e30) kmin = 0; /* no probe succeeded */
    bench_spec_res sr = {0};
    if (spec && (rc = bench_spec(s, toks, (int)np, (int)ng, (int)reps, (int)n_draft, json, &sr, err, sizeof err))) {
        fprintf(stderr, "ds3 bench: %s\n", err);
        goto out;
    }
    const double pp = np / best_pp, tg = ng / best_tg, frac = tg * ms.bytes_per_token / (bw * 1e9);
    /* at depth np each decoded token also reads the latent cache of every earlier position */
    const double bytes_d = ms.bytes_per_token + ms.kv_bytes_per_token * (np + 0.5 * ng);
    const double tgd = ng / best_tgd, fracd = tgd * bytes_d / (bw * 1e9);
    const double kv = ms.kv_bytes_per_token * sp.n_ctx;
    const double limit = (ms.bytes_weights + kv) * 1.10;
    if (json) {
        printf("{\"model\": \"%s\", \"kernels\": \"%s\", \"threads\": %ld, \"n_prompt\": %ld, \"n_gen\": %ld, "
               "\"pp_tok_s\": %.3f, \"tg_tok_s\": %.3f, \"bytes_per_token\": %.0f, \"mem_bw_gb_s\": %.3f, "
               "\"roofline_fraction\": %.4f, \"tg_depth_tok_s\": %.3f, \"bytes_per_token_depth\": %.0f, "
               "\"roofline_fraction_depth\": %.4f, \"params_total\": %.0f, \"params_active\": %.0f, "
               "\"weights_bytes\": %.0f, \"rss_bytes\": %.0f, \"rss_limit_bytes\": %.0f",
               dir, ds3_kernels_name(), threads, np, ng, pp, tg, ms.bytes_per_token, bw, frac, tgd, bytes_d, fracd, ms.n_params_total,
               ms.n_params_active, ms.bytes_weights, rss_max, limit);
        printf(", \"kernel_gw_s\": [");
        print_rates(stdout, kbest, threads, "%.3f", ", ");
        printf("], \"kernel_gw_s_min\": %.3f", kmin);
        if (spec)
            printf(", \"spec_draft\": %ld, \"spec_acceptance\": %.4f, \"spec_tokens_per_step\": %.3f, "
                   "\"spec_plain_tg_tok_s\": %.3f, \"spec_tg_tok_s\": %.3f, \"spec_speedup\": %.3f, \"spec_identical\": %d, "
                   "\"spec_auto_tg_tok_s\": %.3f, \"spec_auto_speedup\": %.3f, \"spec_auto_spec_share\": %.3f",
                   n_draft, sr.acceptance, sr.tokens_per_step, sr.plain_tg, sr.spec_tg, sr.spec_tg / sr.plain_tg, sr.identical,
                   sr.auto_tg, sr.auto_tg / sr.plain_tg, sr.auto_spec_share);
        printf("}\n");
    } else {
        printf("model            %s\n", dir);
        printf("kernels          %s, %ld threads\n", ds3_kernels_name(), threads);
        printf("params           %.3f B total, %.3f B active per token\n", ms.n_params_total / 1e9, ms.n_params_active / 1e9);
        printf("prompt (pp%ld)   %.1f tok/s\n", np, pp);
        printf("decode (tg%ld)   %.2f tok/s (from an empty cache, as llama-bench)\n", ng, tg);
        printf("bytes / token    %.1f MB\n", ms.bytes_per_token / 1e6);
        printf("memory bw        %.2f GB/s (triad)\n", bw);
        printf("roofline         %.3f of the bandwidth limit (%.2f tok/s)\n", frac, bw * 1e9 / ms.bytes_per_token);
        printf("decode @ %-7ld %.2f tok/s after the prompt; %.1f MB/token with the cache, roofline %.3f\n", np, tgd,
               bytes_d / 1e6, fracd);
        printf("resident memory  %.0f MB (limit weights + KV + 10%% = %.0f MB)\n", rss_max / 1e6, limit / 1e6);
        double kb_max = 0;
        for (long i = 0; i < threads; i++) kb_max = kbest[i] > kb_max ? kbest[i] : kb_max;
        printf("kernel (L2)      %s, G weights/s per thread: best", ds3_dtype_name(probe_matrix(m)->dtype));
        print_rates(stdout, kbest, threads, " %.1f", ",");
        printf("; worst probe %.1f = %.2f of the best (low: the host took cycles from a core)\n", kmin,
               kb_max > 0 ? kmin / kb_max : 0.0);
        if (spec) {
            printf("speculation      MTP, %ld draft: acceptance %.1f%%, %.2f tokens per main step\n", n_draft,
                   100 * sr.acceptance, sr.tokens_per_step);
            printf("decode plain     %.2f tok/s\n", sr.plain_tg);
            printf("decode spec      %.2f tok/s (%.2fx)\n", sr.spec_tg, sr.spec_tg / sr.plain_tg);
            printf("decode auto      %.2f tok/s (%.2fx), %.0f%% of tokens from speculative steps%s\n", sr.auto_tg,
                   sr.auto_tg / sr.plain_tg, 100 * sr.auto_spec_share, sr.identical ? "" : " -- OUTPUT DIFFERS FROM PLAIN");
        }
    }
out:
    free(toks);
    free(kg);
    free(kbest);
    ds3_session_free(s);
    ds3_model_free(m);
    return rc ? 1 : 0;
}
