/* cmd_train.c -- `ds3 train`: train a DeepSeek-V3-architecture model from scratch on CPU
 * (src/train/trainer.c; docs/training.md). Settings: defaults, then the "training" object of
 * MODEL.json, then flags. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "train/plot.h"
#include "train/trainer.h"
#include "util/common.h"

#define C "train"

static void usage(void) {
    printf("usage: ds3 train --config MODEL.json --data FILE... --tokenizer TOKENIZER.json --out DIR [options]\n\n"
           "  --config FILE         Hugging Face DeepSeek-V3 config.json; an optional \"training\" object holds\n"
           "                        defaults for the options below (same names, '-' written '_')\n"
           "  --data FILE...        text files / folders (split per SPLITS.md) or *.bin uint32 token files\n"
           "  --val-data FILE       use this file as the validation split (the --data files are all train)\n"
           "  --tokenizer FILE      tokenizer.json, or 'bytes' for byte-level ids (vocab 256)\n"
           "  --out DIR             log.jsonl, loss.png, maxvio.png and the checkpoint ckpt/ go here\n"
           "  --steps N             total optimizer steps of the run (default 1000)\n"
           "  --batch B             sequences per step (default 8)\n"
           "  --seq T               tokens per sequence (default 256)\n"
           "  --lr LR               peak learning rate (default 1e-3)\n"
           "  --min-lr LR           final learning rate of the cosine decay (default lr/10)\n"
           "  --warmup N            linear warm-up steps (default steps/20)\n"
           "  --weight-decay X      AdamW decoupled weight decay on matrices (default 0.1)\n"
           "  --grad-clip X         clip the global gradient norm (default 1.0; 0 = off)\n"
           "  --beta1 X --beta2 X --adam-eps X   AdamW (defaults 0.9, 0.95, 1e-8)\n"
           "  --seed S              init and data-order seed (default 1337)\n"
           "  --init-std X          std of the normal init of matrices (default 0.02)\n"
           "  --balance MODE        lossfree (bias update + sequence-wise loss, default), aux (classic\n"
           "                        batch-wise auxiliary loss), none; also seq, bias (one part of lossfree)\n"
           "  --bias-gamma X        bias update speed (default 1e-3)\n"
           "  --bal-alpha X         balance loss weight (default 1e-4; try 1e-2 for aux)\n"
           "  --mtp-lambda X        MTP loss weight (default 0.3)\n"
           "  --no-mtp              train without the MTP module even if the config has one\n"
           "  --eval-interval N     evaluate on the validation split every N steps (default 100)\n"
           "  --eval-windows N      evaluate on at most N windows (default 0: the whole split)\n"
           "  --ckpt-interval N     checkpoint every N steps (default 500; always at the end)\n"
           "  --log-interval N      plain progress line every N steps when not on a terminal (default 10)\n"
           "  -t, --threads N       threads (default: all cores); results are bit-identical for a thread count\n"
           "  --resume              continue the run found in --out (its saved settings; --steps may change)\n"
           "  --stop-after K        end this invocation after step K with a checkpoint\n"
           "  --keep-best           also keep the checkpoint with the best validation loss in OUT/best/\n"
           "  --progress / --no-progress   force the progress bar on or off\n"
           "  -q, --quiet           no progress output\n\n"
           "       ds3 train --plot OUT.png KEY LOG.jsonl...   plot KEY (loss, val_loss, maxvio_global, ...) of\n"
           "                        several runs in one PNG (colours in order: blue, red, green, orange, purple)\n");
}

/* ds3 train --plot OUT.png KEY LOG.jsonl...: one curve of KEY per log (series colours in order:
 * blue, red, green, orange, purple, ...), for comparing runs (docs/experiments.md). */
static int plot_logs(int argc, char **argv) {
    if (argc < 5) return cli_usage_error(C, "--plot OUT.png KEY LOG.jsonl...");
    const char *out = argv[2], *key = argv[3];
    int n = argc - 4;
    ds3_plot_series *s = calloc((size_t)n, sizeof *s);
    for (int k = 0; k < n; k++) {
        char err[DS3_ERR_LEN];
        size_t len;
        char *text = ds3_read_file(argv[4 + k], &len, (size_t)1 << 32, err, sizeof err);
        if (!text) { fprintf(stderr, "ds3 train: %s\n", err); return 1; }
        double *x = malloc((len / 16 + 1) * sizeof(double) * 2), *y = x + len / 16 + 1;
        long m = 0;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            json_error_t je;
            json_t *j = json_loads(line, 0, &je);
            if (!j) continue;
            json_t *v = json_object_get(j, key);
            if (v && json_is_number(v)) x[m] = (double)json_integer_value(json_object_get(j, "step")), y[m++] = json_number_value(v);
            json_decref(j);
        }
        free(text);
        s[k] = (ds3_plot_series){argv[4 + k], x, y, m, 0};
        printf("%s: %ld points of %s, colour #%06x\n", argv[4 + k], m, key, ds3_plot_color(k));
    }
    int rc = ds3_plot_png(out, key, "step", s, n, NULL, 0);
    for (int k = 0; k < n; k++) free((void *)s[k].x);
    free(s);
    return rc ? 1 : 0;
}

int ds3_cmd_train(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--plot")) return plot_logs(argc, argv);
    ds3_train_opts o;
    ds3_train_default_opts(&o);
    const char **data = calloc((size_t)argc + 1, sizeof *data);
    int nd = 0;
    char err[DS3_ERR_LEN];
    /* first pass: --config (its "training" object gives defaults under the flags) */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--config") && i + 1 < argc) o.config = argv[i + 1];
    if (o.config && ds3_train_opts_from_json(&o, o.config, err, sizeof err)) {
        fprintf(stderr, "ds3 train: %s\n", err);
        free(data);
        return 1;
    }
    long steps_given = 0;
    int iv_given[3] = {0, 0, 0}; /* eval-interval, ckpt-interval, eval-windows */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double x;
#define INT(flag, lo, hi, dst) else if (!strcmp(a, flag)) { if (cli_parse_int(C, a, v, lo, hi, &n)) goto bad; dst = n; i++; }
#define NUM(flag, lo, hi, dst) else if (!strcmp(a, flag)) { if (cli_parse_float(C, a, v, lo, hi, &x)) goto bad; dst = x; i++; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); free(data); return 0; }
        else if (!strcmp(a, "--config")) { if (!v) goto needs; i++; }
        else if (!strcmp(a, "--data")) {
            if (!v || v[0] == '-') goto needs;
            while (i + 1 < argc && argv[i + 1][0] != '-') data[nd++] = argv[++i];
        }
        else if (!strcmp(a, "--val-data")) { if (!v) goto needs; o.val_data = v; i++; }
        else if (!strcmp(a, "--tokenizer")) { if (!v) goto needs; o.tokenizer = v; i++; }
        else if (!strcmp(a, "--out")) { if (!v) goto needs; o.out = v; i++; }
        else if (!strcmp(a, "--steps")) { if (cli_parse_int(C, a, v, 1, 1L << 40, &n)) goto bad; o.steps = steps_given = n; i++; }
        INT("--batch", 1, 1 << 16, o.batch)
        INT("--seq", 2, 1 << 20, o.seq)
        NUM("--lr", 0, 10, o.lr)
        NUM("--min-lr", 0, 10, o.min_lr)
        INT("--warmup", 0, 1L << 40, o.warmup)
        NUM("--weight-decay", 0, 10, o.weight_decay)
        NUM("--grad-clip", 0, 1e9, o.grad_clip)
        NUM("--beta1", 0, 1, o.beta1)
        NUM("--beta2", 0, 1, o.beta2)
        NUM("--adam-eps", 0, 1, o.adam_eps)
        INT("--seed", 0, 1L << 62, o.seed)
        NUM("--init-std", 0, 10, o.init_std)
        NUM("--bias-gamma", 0, 10, o.bias_gamma)
        NUM("--bal-alpha", 0, 100, o.bal_alpha)
        NUM("--mtp-lambda", 0, 100, o.mtp_lambda)
        else if (!strcmp(a, "--eval-interval")) { if (cli_parse_int(C, a, v, 0, 1L << 40, &n)) goto bad; o.eval_interval = n; iv_given[0] = 1; i++; }
        else if (!strcmp(a, "--ckpt-interval")) { if (cli_parse_int(C, a, v, 0, 1L << 40, &n)) goto bad; o.ckpt_interval = n; iv_given[1] = 1; i++; }
        else if (!strcmp(a, "--eval-windows")) { if (cli_parse_int(C, a, v, 0, 1L << 40, &n)) goto bad; o.eval_windows = n; iv_given[2] = 1; i++; }
        INT("--log-interval", 1, 1L << 40, o.log_interval)
        INT("--stop-after", 1, 1L << 40, o.stop_after)
        else if (!strcmp(a, "--keep-best")) o.keep_best = 1;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (cli_parse_int(C, a, v, 1, 512, &n)) goto bad; o.threads = (int)n; i++; }
        else if (!strcmp(a, "--balance")) {
            if (!v) goto needs;
            if (!strcmp(v, "lossfree")) o.balance = 1, o.bias_update = 1;
            else if (!strcmp(v, "aux")) o.balance = 2, o.bias_update = 0;
            else if (!strcmp(v, "none")) o.balance = 0, o.bias_update = 0;
            else if (!strcmp(v, "seq")) o.balance = 1, o.bias_update = 0;
            else if (!strcmp(v, "bias")) o.balance = 0, o.bias_update = 1;
            else { cli_usage_error(C, "--balance: '%s' is not lossfree, aux, none, seq or bias", v); goto bad; }
            i++;
        }
        else if (!strcmp(a, "--no-mtp")) o.mtp = 0;
        else if (!strcmp(a, "--resume")) o.resume = 1;
        else if (!strcmp(a, "--progress")) o.progress = 1;
        else if (!strcmp(a, "--no-progress")) o.progress = 0;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o.quiet = 1;
        else { cli_usage_error(C, "unknown option '%s'", a); goto bad; }
        continue;
    needs:
        cli_usage_error(C, "%s needs a value", a);
        goto bad;
#undef INT
#undef NUM
    }
    if (!o.out) { cli_usage_error(C, "--out DIR is required"); goto bad; }
    if (!o.resume && !o.config) { cli_usage_error(C, "--config MODEL.json is required"); goto bad; }
    if (!o.resume && !nd) { cli_usage_error(C, "--data FILE is required"); goto bad; }
    if (!o.resume && !o.tokenizer) { cli_usage_error(C, "--tokenizer is required (a tokenizer.json or 'bytes')"); goto bad; }
    if (o.resume) { /* keep the saved run length and intervals unless given again */
        if (!steps_given) o.steps = 0;
        if (!iv_given[0]) o.eval_interval = -1;
        if (!iv_given[1]) o.ckpt_interval = -1;
        if (!iv_given[2]) o.eval_windows = -1;
    }
    o.data = data, o.n_data = nd;
    int rc = ds3_train_run(&o, err, sizeof err);
    free(data);
    if (rc < 0) {
        fprintf(stderr, "ds3 train: %s\n", err);
        return 1;
    }
    return rc;
bad:
    free(data);
    return 2;
}
