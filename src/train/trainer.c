/* trainer.c -- the training loop of `ds3 train` (see trainer.h and docs/training.md).
 *
 * Out folder:
 *   log.jsonl              one JSON object per step (and eval results on eval steps)
 *   loss.png, maxvio.png   curves redrawn at every eval and at the end
 *   ckpt/                  the latest checkpoint: config.json, model.safetensors (f32),
 *                          tokenizer.json, tokenizer_config.json (a Hugging Face folder), plus
 *                          optimizer.safetensors (AdamW moments) and trainer_state.json (step,
 *                          RNG = data-loader state, settings)
 *   data.train.bin, data.val.bin   the tokenized streams (reused by --resume)
 * A checkpoint is written into ckpt.tmp/ (every file atomically), then swapped in by renames
 * (ckpt -> ckpt.old, ckpt.tmp -> ckpt, ckpt.old removed); resume falls back to ckpt.old if a
 * crash hit between the renames. Owned by the training engineer. */
#include "train/trainer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "text/tokenizer.h"
#include "train/adamw.h"
#include "train/data.h"
#include "train/plot.h"
#include "train/tmodel.h"
#include "util/common.h"
#include "util/json.h"

void ds3_train_default_opts(ds3_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 1000, o->batch = 8, o->seq = 256;
    o->lr = 1e-3, o->min_lr = -1, o->warmup = -1;
    o->weight_decay = 0.1, o->grad_clip = 1.0, o->beta1 = 0.9, o->beta2 = 0.95, o->adam_eps = 1e-8;
    o->seed = 1337, o->threads = 0;
    o->eval_interval = 100, o->ckpt_interval = 500, o->log_interval = 10;
    o->balance = 1, o->bias_update = 1, o->bias_gamma = 1e-3, o->bal_alpha = 1e-4, o->mtp_lambda = 0.3;
    o->init_std = 0.02, o->mtp = -1, o->progress = -1;
}

static const char *bal_name(int b, int upd) {
    return b == 2 ? "aux" : b == 1 ? (upd ? "lossfree" : "seq") : (upd ? "bias" : "none");
}
static int bal_parse(const char *s, int *bal, int *upd) {
    if (!strcmp(s, "lossfree")) *bal = 1, *upd = 1;
    else if (!strcmp(s, "aux")) *bal = 2, *upd = 0;
    else if (!strcmp(s, "none")) *bal = 0, *upd = 0;
    else if (!strcmp(s, "seq")) *bal = 1, *upd = 0;
    else if (!strcmp(s, "bias")) *bal = 0, *upd = 1;
    else return -1;
    return 0;
}

/* settings <-> JSON (the "training" object of config.json and of trainer_state.json) */
static json_t *opts_json(const ds3_train_opts *o) {
    json_t *j = json_object();
    json_object_set_new(j, "steps", json_integer(o->steps));
    json_object_set_new(j, "batch", json_integer(o->batch));
    json_object_set_new(j, "seq", json_integer(o->seq));
    json_object_set_new(j, "lr", json_real(o->lr));
    json_object_set_new(j, "min_lr", json_real(o->min_lr));
    json_object_set_new(j, "warmup", json_integer(o->warmup));
    json_object_set_new(j, "weight_decay", json_real(o->weight_decay));
    json_object_set_new(j, "grad_clip", json_real(o->grad_clip));
    json_object_set_new(j, "beta1", json_real(o->beta1));
    json_object_set_new(j, "beta2", json_real(o->beta2));
    json_object_set_new(j, "adam_eps", json_real(o->adam_eps));
    json_object_set_new(j, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(j, "balance", json_string(bal_name(o->balance, o->bias_update)));
    json_object_set_new(j, "bias_gamma", json_real(o->bias_gamma));
    json_object_set_new(j, "bal_alpha", json_real(o->bal_alpha));
    json_object_set_new(j, "mtp_lambda", json_real(o->mtp_lambda));
    json_object_set_new(j, "mtp", json_integer(o->mtp));
    json_object_set_new(j, "init_std", json_real(o->init_std));
    json_object_set_new(j, "eval_interval", json_integer(o->eval_interval));
    json_object_set_new(j, "ckpt_interval", json_integer(o->ckpt_interval));
    json_object_set_new(j, "keep_best", json_integer(o->keep_best));
    json_object_set_new(j, "eval_windows", json_integer(o->eval_windows));
    return j;
}

static int opts_read(ds3_train_opts *o, const json_t *j, const char *file, char *err, size_t errlen) {
    long v;
    double x;
#define RI(key, dst, lo, hi)                                                                    \
    if (json_object_get(j, key)) {                                                              \
        if (ds3_json_int(j, key, 1, 0, lo, hi, &v, file, err, errlen)) return DS3_ERR_FORMAT;   \
        dst = v;                                                                                \
    }
#define RN(key, dst, lo, hi)                                                                    \
    if (json_object_get(j, key)) {                                                              \
        if (ds3_json_num(j, key, 1, 0, lo, hi, &x, file, err, errlen)) return DS3_ERR_FORMAT;   \
        dst = x;                                                                                \
    }
    RI("steps", o->steps, 1, 1L << 40);
    RI("batch", o->batch, 1, 1 << 16);
    RI("seq", o->seq, 2, 1 << 20);
    RN("lr", o->lr, 0, 10);
    RN("min_lr", o->min_lr, -1, 10);
    RI("warmup", o->warmup, -1, 1L << 40);
    RN("weight_decay", o->weight_decay, 0, 10);
    RN("grad_clip", o->grad_clip, 0, 1e9);
    RN("beta1", o->beta1, 0, 1);
    RN("beta2", o->beta2, 0, 1);
    RN("adam_eps", o->adam_eps, 0, 1);
    RI("seed", o->seed, 0, LONG_MAX);
    RN("bias_gamma", o->bias_gamma, 0, 10);
    RN("bal_alpha", o->bal_alpha, 0, 100);
    RN("mtp_lambda", o->mtp_lambda, 0, 100);
    RI("mtp", o->mtp, -1, 1);
    RN("init_std", o->init_std, 0, 10);
    RI("eval_interval", o->eval_interval, 0, 1L << 40);
    RI("ckpt_interval", o->ckpt_interval, 0, 1L << 40);
    RI("eval_windows", o->eval_windows, 0, 1L << 40);
    RI("keep_best", o->keep_best, 0, 1);
#undef RI
#undef RN
    const json_t *b = json_object_get(j, "balance");
    if (b) {
        if (!json_is_string(b) || bal_parse(json_string_value(b), &o->balance, &o->bias_update))
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: field 'training.balance' must be lossfree, aux, seq, bias or none",
                              file);
    }
    return 0;
}

int ds3_train_opts_from_json(ds3_train_opts *o, const char *path, char *err, size_t errlen) {
    size_t len;
    char *text = ds3_read_file(path, &len, 16u << 20, err, errlen);
    if (!text) return DS3_ERR_IO;
    json_t *j = ds3_json_parse(text, len, path, err, errlen);
    free(text);
    if (!j) return DS3_ERR_FORMAT;
    const json_t *t = json_object_get(j, "training");
    int rc = t && json_is_object(t) ? opts_read(o, t, path, err, errlen) : 0;
    json_decref(j);
    return rc;
}

/* ---- small file helpers ---- */

static int rm_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : -1;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    return rmdir(dir);
}
static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) fsync(fd), close(fd);
}
static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}
static int write_json(const char *path, json_t *j, char *err, size_t errlen) {
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    if (!s) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: cannot serialise", path);
    size_t n = strlen(s);
    char *t = malloc(n + 2);
    memcpy(t, s, n), t[n] = '\n';
    int rc = ds3_write_file_atomic(path, t, n + 1, err, errlen);
    free(s), free(t);
    return rc;
}

/* A byte-level HF tokenizer.json whose token ids are the byte values (+ offset 0). */
static char *bytes_tokenizer_json(void) {
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        uint32_t cp = ds3_bytelevel_char((unsigned char)b);
        char u[8];
        int n = 0;
        if (cp < 0x80) u[n++] = (char)cp;
        else if (cp < 0x800) u[n++] = (char)(0xC0 | (cp >> 6)), u[n++] = (char)(0x80 | (cp & 63));
        else u[n++] = (char)(0xE0 | (cp >> 12)), u[n++] = (char)(0x80 | ((cp >> 6) & 63)), u[n++] = (char)(0x80 | (cp & 63));
        u[n] = 0;
        json_object_set_new(vocab, u, json_integer(b));
    }
    json_t *bl = json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0);
    json_t *j = json_pack("{s:s,s:n,s:n,s:[],s:n,s:O,s:n,s:O,s:{s:s,s:n,s:n,s:n,s:n,s:b,s:b,s:b,s:o,s:[]}}", "version", "1.0",
                          "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer", bl, "post_processor",
                          "decoder", bl, "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix",
                          "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab,
                          "merges");
    json_decref(bl);
    char *s = json_dumps(j, JSON_INDENT(1));
    json_decref(j);
    return s;
}

/* ---- the run ---- */

typedef struct {
    long step;
    double loss, val_loss, maxvio, val_maxvio;
    int has_val;
} hist_pt;

typedef struct {
    ds3_train_opts o;
    ds3_config cfg;
    char cfg_path[4096];
    ds3_tmodel *m;
    float *mom, *vel;
    ds3_tdata data;
    uint64_t rng;
    long step;              /* optimizer steps done */
    double tokens_seen, elapsed;
    char *tok_json, *tok_cfg_json;
    size_t tok_json_len, tok_cfg_len;
    FILE *log;
    hist_pt *hist;
    long n_hist, cap_hist;
    int32_t *inp, *tgt;
    double best_val;        /* --keep-best: best validation loss so far (from the log on resume) */
} trun;

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C kills */
}

static void path2(char *out, size_t n, const char *a, const char *b) {
    if (ds3_path_join(out, n, a, b)) out[0] = 0;
}

/* Write the checkpoint folder `name` (ckpt, or best for --keep-best) inside --out. */
static int save_ckpt_as(trun *R, const char *name, char *err, size_t errlen) {
    char tmp[4096], fin[4096], old[4096], p[4096], nt[64], no[64];
    snprintf(nt, sizeof nt, "%s.tmp", name);
    snprintf(no, sizeof no, "%s.old", name);
    path2(tmp, sizeof tmp, R->o.out, nt);
    path2(fin, sizeof fin, R->o.out, name);
    path2(old, sizeof old, R->o.out, no);
    rm_flat_dir(tmp);
    if (mkdir(tmp, 0755)) return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    int rc;
    json_t *cj = ds3_config_to_json(&R->cfg);
    json_object_set_new(cj, "training", opts_json(&R->o));
    path2(p, sizeof p, tmp, "config.json");
    rc = write_json(p, cj, err, errlen);
    json_decref(cj);
    if (rc) return rc;
    path2(p, sizeof p, tmp, "model.safetensors");
    if ((rc = ds3_tmodel_save(R->m, p, err, errlen))) return rc;
    path2(p, sizeof p, tmp, "tokenizer.json");
    if ((rc = ds3_write_file_atomic(p, R->tok_json, R->tok_json_len, err, errlen))) return rc;
    path2(p, sizeof p, tmp, "tokenizer_config.json");
    if ((rc = ds3_write_file_atomic(p, R->tok_cfg_json, R->tok_cfg_len, err, errlen))) return rc;
    ds3_st_write_tensor ot[2] = {{"adam.m", DS3_DT_F32, 1, {(int64_t)R->m->n_params}, R->mom},
                                 {"adam.v", DS3_DT_F32, 1, {(int64_t)R->m->n_params}, R->vel}};
    path2(p, sizeof p, tmp, "optimizer.safetensors");
    if ((rc = ds3_st_write(p, ot, 2, err, errlen))) return rc;
    char rng[32];
    snprintf(rng, sizeof rng, "%016" PRIx64, R->rng);
    json_t *sj = json_pack("{s:i,s:I,s:s,s:f,s:f,s:i}", "version", 1, "step", (json_int_t)R->step, "rng", rng,
                           "tokens_seen", R->tokens_seen, "elapsed_s", R->elapsed, "threads", R->m->nth);
    json_object_set_new(sj, "training", opts_json(&R->o));
    path2(p, sizeof p, tmp, "trainer_state.json");
    rc = write_json(p, sj, err, errlen);
    json_decref(sj);
    if (rc) return rc;
    fsync_dir(tmp);
    rm_flat_dir(old);
    if (exists(fin) && rename(fin, old)) return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: rename: %s", fin, strerror(errno));
    if (rename(tmp, fin)) return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: rename: %s", tmp, strerror(errno));
    fsync_dir(R->o.out);
    rm_flat_dir(old);
    return 0;
}

static int save_ckpt(trun *R, char *err, size_t errlen) { return save_ckpt_as(R, "ckpt", err, errlen); }

static void hist_add(trun *R, hist_pt h) {
    if (R->n_hist == R->cap_hist) {
        R->cap_hist = R->cap_hist * 2 + 256;
        R->hist = realloc(R->hist, (size_t)R->cap_hist * sizeof *R->hist);
    }
    R->hist[R->n_hist++] = h;
}

static void draw_plots(trun *R) {
    if (!R->n_hist) return;
    double *x = malloc((size_t)R->n_hist * sizeof(double) * 6);
    double *y = x + R->n_hist, *vx = y + R->n_hist, *vy = vx + R->n_hist, *mx = vy + R->n_hist, *my = mx + R->n_hist;
    long nv = 0, nm = 0;
    for (long i = 0; i < R->n_hist; i++) {
        x[i] = (double)R->hist[i].step, y[i] = R->hist[i].loss;
        if (R->hist[i].has_val) {
            vx[nv] = x[i], vy[nv++] = R->hist[i].val_loss;
            mx[nm] = x[i], my[nm++] = R->hist[i].val_maxvio;
        }
    }
    char p[4096];
    ds3_plot_series s[2] = {{"train loss", x, y, R->n_hist, 0x1f77b4}, {"val loss", vx, vy, nv, 0xd62728}};
    path2(p, sizeof p, R->o.out, "loss.png");
    ds3_plot_png(p, "loss", "step", s, nv ? 2 : 1, NULL, 0);
    if (R->m->n_moe && nm) {
        double *bx = malloc((size_t)R->n_hist * sizeof(double) * 2), *by = bx + R->n_hist;
        for (long i = 0; i < R->n_hist; i++) bx[i] = x[i], by[i] = R->hist[i].maxvio;
        ds3_plot_series s2[2] = {{"maxvio batch", bx, by, R->n_hist, 0x1f77b4}, {"maxvio global (val)", mx, my, nm, 0xd62728}};
        path2(p, sizeof p, R->o.out, "maxvio.png");
        ds3_plot_png(p, "MaxVio (mean over MoE layers)", "step", s2, 2, NULL, 0);
        free(bx);
    }
    free(x);
}

/* Evaluate over the validation split: mean main/MTP loss per token, MaxVio_global per layer. */
static void evaluate(trun *R, double *loss, double *mtp, double *maxvio_mean, double *maxvio_layers) {
    ds3_tmodel *m = R->m;
    const int T = m->T, Bm = m->Bmax, Nr = m->cfg.n_routed_experts;
    long nw = R->data.n_val > (size_t)T ? (long)((R->data.n_val - 1) / T) : 0;
    if (R->o.eval_windows > 0 && nw > R->o.eval_windows) nw = R->o.eval_windows;
    memset(m->loads, 0, (size_t)(m->n_moe ? m->n_moe : 1) * (Nr ? Nr : 1) * sizeof(int64_t));
    double sl = 0, sm = 0;
    int64_t nt = 0, nmt = 0;
    for (long w = 0; w < nw; w += Bm) {
        const int B = nw - w < Bm ? (int)(nw - w) : Bm;
        for (int b = 0; b < B; b++) {
            memcpy(R->inp + (size_t)b * T, R->data.val + (size_t)(w + b) * T, (size_t)T * 4);
            memcpy(R->tgt + (size_t)b * T, R->data.val + (size_t)(w + b) * T + 1, (size_t)T * 4);
        }
        ds3_tstats st;
        ds3_tmodel_step(m, R->inp, R->tgt, B, 0, &st, NULL, NULL);
        sl += st.loss * st.n_tok, nt += st.n_tok;
        sm += st.mtp_loss * st.n_mtp, nmt += st.n_mtp;
    }
    *loss = nt ? sl / nt : NAN;
    *mtp = nmt ? sm / nmt : 0;
    double s = 0;
    for (int i = 0; i < m->n_moe; i++) s += (maxvio_layers[i] = ds3_maxvio(m->loads + (size_t)i * Nr, Nr));
    *maxvio_mean = m->n_moe ? s / m->n_moe : 0;
}

static void fmt_time(char *b, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) { snprintf(b, n, "--:--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(b, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(b, n, "%02ld:%02ld", t / 60, t % 60);
}

/* Keep the log lines with step <= upto; refill the history from them. */
static int reload_log(trun *R, const char *path, long upto, char *err, size_t errlen) {
    size_t len = 0;
    char *text = exists(path) ? ds3_read_file(path, &len, (size_t)1 << 34, err, errlen) : NULL;
    char *keep = malloc(len + 1);
    size_t kn = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        json_error_t je;
        json_t *j = json_loadb(line, ll, 0, &je);
        if (j) {
            long st = (long)json_integer_value(json_object_get(j, "step"));
            if (st <= upto) {
                memcpy(keep + kn, line, ll), kn += ll, keep[kn++] = '\n';
                hist_pt h = {st, json_number_value(json_object_get(j, "loss")), 0,
                             json_number_value(json_object_get(j, "maxvio_batch")), 0, 0};
                if (json_object_get(j, "val_loss")) {
                    h.has_val = 1;
                    h.val_loss = json_number_value(json_object_get(j, "val_loss"));
                    h.val_maxvio = json_number_value(json_object_get(j, "maxvio_global"));
                }
                hist_add(R, h);
                if (h.has_val && h.val_loss < R->best_val) R->best_val = h.val_loss;
            }
            json_decref(j);
        }
        line = nl ? nl + 1 : line + ll;
    }
    int rc = ds3_write_file_atomic(path, keep, kn, err, errlen);
    free(keep), free(text);
    return rc;
}

static int load_state(trun *R, const char *dir, char *err, size_t errlen) {
    char p[4096];
    path2(p, sizeof p, dir, "trainer_state.json");
    size_t len;
    char *text = ds3_read_file(p, &len, 1u << 24, err, errlen);
    if (!text) return DS3_ERR_IO;
    json_t *j = ds3_json_parse(text, len, p, err, errlen);
    free(text);
    if (!j) return DS3_ERR_FORMAT;
    R->step = (long)json_integer_value(json_object_get(j, "step"));
    const char *rng = json_string_value(json_object_get(j, "rng"));
    R->rng = rng ? strtoull(rng, NULL, 16) : 0;
    R->tokens_seen = json_number_value(json_object_get(j, "tokens_seen"));
    R->elapsed = json_number_value(json_object_get(j, "elapsed_s"));
    json_decref(j);
    int rc = ds3_tmodel_load(R->m, dir, err, errlen);
    if (rc) return rc;
    path2(p, sizeof p, dir, "optimizer.safetensors");
    /* the optimizer file is opened on its own: ds3_st_open_dir would pick model.safetensors */
    size_t olen;
    char *ob = ds3_read_file(p, &olen, (size_t)1 << 40, err, errlen);
    if (!ob) return DS3_ERR_IO;
    uint64_t hl;
    memcpy(&hl, ob, 8);
    ds3_st_tensor *ts;
    int nt;
    if (olen < 8 || hl > olen - 8 ||
        ds3_st_parse_header(ob + 8, (size_t)hl, olen - 8 - hl, p, &ts, &nt, err, errlen)) {
        free(ob);
        return DS3_ERR_FORMAT;
    }
    rc = 0;
    for (int i = 0; i < nt; i++) {
        float *dst = !strcmp(ts[i].name, "adam.m") ? R->mom : !strcmp(ts[i].name, "adam.v") ? R->vel : NULL;
        if (!dst) continue;
        if (ts[i].end - ts[i].begin != R->m->n_params * 4) {
            rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: %s has the wrong size", p, ts[i].name);
            break;
        }
        memcpy(dst, ob + 8 + hl + ts[i].begin, R->m->n_params * 4);
    }
    ds3_st_free_tensors(ts, nt);
    free(ob);
    return rc;
}

int ds3_train_run(const ds3_train_opts *oin, char *err, size_t errlen) {
    trun R;
    memset(&R, 0, sizeof R);
    R.o = *oin;
    R.best_val = INFINITY;
    ds3_train_opts *o = &R.o;
    int rc = 0;
    char p[4096], ck[4096];
    {   /* mkdir -p */
        char d[4096];
        snprintf(d, sizeof d, "%s", o->out);
        for (char *q = d + 1; *q; q++)
            if (*q == '/') *q = 0, mkdir(d, 0755), *q = '/';
        mkdir(d, 0755);
    }
    path2(ck, sizeof ck, o->out, "ckpt");
    if (o->resume && !exists(ck)) {
        path2(ck, sizeof ck, o->out, "ckpt.old");
        if (!exists(ck))
            return ds3_seterr(err, errlen, DS3_ERR_IO, "%s: no checkpoint to resume (ckpt/ is missing)", o->out);
    }
    long steps_flag = o->steps, stop_after = o->stop_after, eval_iv = o->eval_interval, ck_iv = o->ckpt_interval;
    /* config: MODEL.json, or on resume the checkpoint's config.json and its saved settings */
    if (o->resume) {
        path2(R.cfg_path, sizeof R.cfg_path, ck, "config.json");
        path2(p, sizeof p, ck, "trainer_state.json");
        ds3_train_opts saved = *o;
        if ((rc = ds3_train_opts_from_json(&saved, p, err, errlen))) return rc;
        saved.data = o->data, saved.n_data = o->n_data, saved.val_data = o->val_data, saved.out = o->out;
        saved.tokenizer = o->tokenizer, saved.threads = o->threads, saved.progress = o->progress, saved.quiet = o->quiet;
        saved.log_interval = o->log_interval;
        if (steps_flag > 0) saved.steps = steps_flag;
        saved.stop_after = stop_after;
        if (eval_iv >= 0) saved.eval_interval = eval_iv;
        if (ck_iv >= 0) saved.ckpt_interval = ck_iv;
        if (oin->eval_windows >= 0) saved.eval_windows = oin->eval_windows;
        *o = saved;
    } else {
        snprintf(R.cfg_path, sizeof R.cfg_path, "%s", o->config);
    }
    if ((rc = ds3_config_load(&R.cfg, R.cfg_path, err, errlen))) return rc;
    if (o->mtp == 0) R.cfg.num_nextn_predict_layers = 0;
    if (R.cfg.num_nextn_predict_layers > 1) R.cfg.num_nextn_predict_layers = 1;
    if (o->min_lr < 0) o->min_lr = o->lr * 0.1;
    if (o->warmup < 0) o->warmup = o->steps / 20;
    /* tokenizer */
    ds3_tokenizer *tok = NULL;
    if (o->resume && (!o->tokenizer || !o->tokenizer[0])) {
        path2(p, sizeof p, ck, "tokenizer.json");
        o->tokenizer = NULL;
    }
    const char *tpath = o->tokenizer ? o->tokenizer : p;
    int bytes_mode = o->tokenizer && !strcmp(o->tokenizer, "bytes");
    if (!bytes_mode) {
        R.tok_json = ds3_read_file(tpath, &R.tok_json_len, 1u << 30, err, errlen);
        if (!R.tok_json) return DS3_ERR_IO;
        /* a checkpoint written in bytes mode carries the generated byte-level tokenizer */
        char *bj = bytes_tokenizer_json();
        bytes_mode = !strcmp(bj, R.tok_json);
        free(bj);
        if (!bytes_mode) {
            tok = ds3_tokenizer_load(tpath, err, errlen);
            if (!tok) return DS3_ERR_FORMAT;
        }
        char cp[4096];
        snprintf(cp, sizeof cp, "%s", tpath);
        char *slash = strrchr(cp, '/');
        snprintf(slash ? slash + 1 : cp, sizeof cp - (slash ? (size_t)(slash + 1 - cp) : 0), "tokenizer_config.json");
        R.tok_cfg_json = exists(cp) ? ds3_read_file(cp, &R.tok_cfg_len, 1u << 26, err, errlen) : NULL;
    } else {
        R.tok_json = bytes_tokenizer_json();
        R.tok_json_len = strlen(R.tok_json);
    }
    if (!R.tok_cfg_json) {
        json_t *tc = json_pack("{s:s,s:b,s:b,s:n,s:n,s:i}", "tokenizer_class", "PreTrainedTokenizerFast", "add_bos_token", 0,
                               "add_eos_token", 0, "bos_token", "eos_token", "model_max_length", o->seq);
        R.tok_cfg_json = json_dumps(tc, JSON_INDENT(2));
        R.tok_cfg_len = strlen(R.tok_cfg_json);
        json_decref(tc);
    }
    /* data: the tokenized streams are cached in the out folder */
    char ctr[4096], cva[4096];
    path2(ctr, sizeof ctr, o->out, "data.train.bin");
    path2(cva, sizeof cva, o->out, "data.val.bin");
    if (o->resume && exists(ctr) && exists(cva)) {
        if ((rc = ds3_tokens_load(ctr, &R.data.train, &R.data.n_train, err, errlen)) ||
            (rc = ds3_tokens_load(cva, &R.data.val, &R.data.n_val, err, errlen)))
            goto done;
    } else {
        if (!o->n_data) { rc = ds3_seterr(err, errlen, DS3_ERR_ARG, "no training data (--data)"); goto done; }
        if ((rc = ds3_tdata_load(&R.data, o->data, o->n_data, o->val_data, tok, 0, err, errlen))) goto done;
        if ((rc = ds3_tokens_save(ctr, R.data.train, R.data.n_train, err, errlen)) ||
            (rc = ds3_tokens_save(cva, R.data.val, R.data.n_val, err, errlen)))
            goto done;
    }
    for (size_t i = 0; i < R.data.n_train; i++)
        if (R.data.train[i] >= R.cfg.vocab_size) {
            rc = ds3_seterr(err, errlen, DS3_ERR_ARG, "token id %d is outside the model's vocab_size %d", R.data.train[i],
                            R.cfg.vocab_size);
            goto done;
        }
    if (R.data.n_train < (size_t)o->seq + 2) {
        rc = ds3_seterr(err, errlen, DS3_ERR_ARG, "training split has %zu tokens, fewer than --seq %d + 2", R.data.n_train, o->seq);
        goto done;
    }
    /* model and optimizer */
    R.m = ds3_tmodel_new(&R.cfg, o->batch, o->seq, o->threads, err, errlen);
    if (!R.m) { rc = DS3_ERR_NOMEM; goto done; }
    R.m->bal_mode = o->balance, R.m->bal_alpha = (float)o->bal_alpha, R.m->mtp_lambda = (float)o->mtp_lambda;
    R.mom = ds3_alloc_aligned(R.m->n_params * 4), R.vel = ds3_alloc_aligned(R.m->n_params * 4);
    R.inp = malloc((size_t)o->batch * o->seq * 4), R.tgt = malloc((size_t)o->batch * o->seq * 4);
    if (!R.mom || !R.vel || !R.inp || !R.tgt) { rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "out of memory"); goto done; }
    path2(p, sizeof p, o->out, "log.jsonl");
    if (o->resume) {
        if ((rc = load_state(&R, ck, err, errlen))) goto done;
        if ((rc = reload_log(&R, p, R.step, err, errlen))) goto done;
    } else {
        ds3_tmodel_init(R.m, o->seed, (float)o->init_std);
        R.rng = o->seed ^ 0x5DEECE66Dull;
        if (exists(p)) unlink(p);
    }
    R.log = fopen(p, "a");
    if (!R.log) { rc = ds3_seterr(err, errlen, DS3_ERR_IO, "%s: %s", p, strerror(errno)); goto done; }
    const int tty = o->progress < 0 ? isatty(2) : o->progress;
    const int Nr = R.cfg.n_routed_experts;
    if (!o->quiet) {
        fprintf(stderr, "ds3 train: %.3fM parameters (%d tensors), %s; train %zu tokens, val %zu tokens; batch %d x %d; "
                        "%d threads; balance %s; MTP %s; kernels %s/%s\n",
                R.m->n_params / 1e6, R.m->n_tensors, R.cfg_path, R.data.n_train, R.data.n_val, o->batch, o->seq,
                R.m->nth, bal_name(o->balance, o->bias_update), R.m->use_mtp ? "on" : "off", ds3_kernels_name(),
                ds3_tmm_kernels());
        if (o->resume) fprintf(stderr, "ds3 train: resuming %s at step %ld of %ld\n", ck, R.step, o->steps);
    }
    g_stop = 0;
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_sa);
    ds3_adamw_cfg ac = {0, (float)o->beta1, (float)o->beta2, (float)o->adam_eps, (float)o->weight_decay};
    double *mv = calloc((size_t)(R.m->n_moe + 1), sizeof(double));
    const double t_start = ds3_time_s(), elapsed0 = R.elapsed;
    const long step0 = R.step;
    int interrupted = 0;
    while (R.step < o->steps) {
        const double t0 = ds3_time_s();
        ds3_tdata_batch(&R.data, &R.rng, o->batch, o->seq, R.inp, R.tgt);
        ds3_tmodel_zero_grad(R.m);
        memset(R.m->loads, 0, (size_t)(R.m->n_moe ? R.m->n_moe : 1) * (Nr ? Nr : 1) * sizeof(int64_t));
        ds3_tstats st;
        ds3_tmodel_step(R.m, R.inp, R.tgt, o->batch, 1, &st, NULL, NULL);
        const double gn = ds3_grad_norm(R.m);
        if (o->grad_clip > 0 && gn > o->grad_clip) ds3_grad_scale(R.m, (float)(o->grad_clip / gn));
        const double lr = ds3_lr_schedule(R.step, o->steps, o->warmup, o->lr, o->min_lr);
        ac.lr = (float)lr;
        R.step++;
        ds3_adamw_step(R.m, R.mom, R.vel, R.step, &ac);
        if (o->bias_update && R.m->n_moe) ds3_tmodel_bias_update(R.m, (float)o->bias_gamma);
        double mvb = 0;
        for (int i = 0; i < R.m->n_moe; i++) mvb += (mv[i] = ds3_maxvio(R.m->loads + (size_t)i * Nr, Nr));
        if (R.m->n_moe) mvb /= R.m->n_moe;
        const double dt = ds3_time_s() - t0, tok_s = (double)o->batch * o->seq / dt;
        R.tokens_seen += (double)o->batch * o->seq;
        R.elapsed = elapsed0 + (ds3_time_s() - t_start);
        const double eta = (ds3_time_s() - t_start) / (double)(R.step - step0) * (double)(o->steps - R.step);
        /* log line */
        char line[8192];
        int n = snprintf(line, sizeof line,
                         "{\"step\":%ld,\"loss\":%.17g,\"mtp_loss\":%.17g,\"bal_loss\":%.17g,\"lr\":%.9g,"
                         "\"grad_norm\":%.9g,\"tok_s\":%.1f,\"tokens\":%.0f,\"elapsed_s\":%.3f,\"maxvio_batch\":%.9g",
                         R.step, st.loss, st.mtp_loss, st.bal_loss, lr, gn, tok_s, R.tokens_seen, R.elapsed, mvb);
        if (R.m->n_moe) {
            n += snprintf(line + n, sizeof line - n, ",\"maxvio\":[");
            for (int i = 0; i < R.m->n_moe && n < 7000; i++) n += snprintf(line + n, sizeof line - n, "%s%.6g", i ? "," : "", mv[i]);
            n += snprintf(line + n, sizeof line - n, "]");
        }
        hist_pt h = {R.step, st.loss, 0, mvb, 0, 0};
        int new_best = 0;
        const int last = R.step == o->steps;
        const int stop_now = (o->stop_after > 0 && R.step >= o->stop_after) || g_stop;
        if ((o->eval_interval > 0 && R.step % o->eval_interval == 0) || last) {
            double vl, vm, vmv, *lay = calloc((size_t)R.m->n_moe + 1, sizeof(double));
            evaluate(&R, &vl, &vm, &vmv, lay);
            n += snprintf(line + n, sizeof line - n, ",\"val_loss\":%.17g,\"val_mtp_loss\":%.17g,\"maxvio_global\":%.9g", vl,
                          vm, vmv);
            if (R.m->n_moe) {
                n += snprintf(line + n, sizeof line - n, ",\"maxvio_global_layers\":[");
                for (int i = 0; i < R.m->n_moe && n < 7900; i++)
                    n += snprintf(line + n, sizeof line - n, "%s%.6g", i ? "," : "", lay[i]);
                n += snprintf(line + n, sizeof line - n, "]");
            }
            h.has_val = 1, h.val_loss = vl, h.val_maxvio = vmv;
            if (o->keep_best && vl < R.best_val) {
                R.best_val = vl;
                new_best = 1;
            }
            free(lay);
            if (!o->quiet)
                fprintf(stderr, "%sstep %ld: val_loss %.4f%s maxvio_global %.3f\n", tty ? "\r\033[K" : "", R.step, vl,
                        R.m->use_mtp ? "" : "", vmv);
        }
        snprintf(line + n, sizeof line - n, "}\n");
        fputs(line, R.log);
        fflush(R.log);
        hist_add(&R, h);
        if (h.has_val) draw_plots(&R);
        if (!o->quiet) {
            char e1[32], e2[32];
            fmt_time(e1, sizeof e1, R.elapsed), fmt_time(e2, sizeof e2, eta);
            if (tty) {
                char bar[32];
                const int w = 24, f = (int)((double)R.step / o->steps * w);
                for (int i = 0; i < w; i++) bar[i] = i < f ? '#' : '.';
                bar[w] = 0;
                fprintf(stderr, "\r\033[K[%s] %ld/%ld loss %.4f mtp %.4f bal %.2e lr %.2e maxvio %.2f | %.0f tok/s | %s < %s",
                        bar, R.step, o->steps, st.loss, st.mtp_loss, st.bal_loss, lr, mvb, tok_s, e1, e2);
            } else if (R.step % (o->log_interval > 0 ? o->log_interval : 1) == 0 || last || R.step == step0 + 1) {
                fprintf(stderr, "step %ld/%ld loss %.4f mtp %.4f bal %.2e lr %.2e gnorm %.3f maxvio %.2f %.0f tok/s elapsed %s eta %s\n",
                        R.step, o->steps, st.loss, st.mtp_loss, st.bal_loss, lr, gn, mvb, tok_s, e1, e2);
            }
        }
        if ((o->ckpt_interval > 0 && R.step % o->ckpt_interval == 0) || last || stop_now) {
            if ((rc = save_ckpt(&R, err, errlen))) break;
        }
        if (new_best) {
            if ((rc = save_ckpt_as(&R, "best", err, errlen))) break;
            if (!o->quiet) fprintf(stderr, "%sstep %ld: new best val_loss %.4f, saved in %s/best\n", tty ? "\r\033[K" : "", R.step, R.best_val, o->out);
        }
        if (stop_now) {
            interrupted = g_stop ? 2 : 1;
            break;
        }
    }
    if (tty && !o->quiet) fputc('\n', stderr);
    sigaction(SIGINT, &old_sa, NULL);
    free(mv);
    draw_plots(&R);
    if (!rc && !o->quiet) {
        if (interrupted == 2) fprintf(stderr, "ds3 train: interrupted at step %ld; checkpoint saved in %s/ckpt; continue with --resume\n", R.step, o->out);
        else if (interrupted == 1) fprintf(stderr, "ds3 train: stopped after step %ld (--stop-after); checkpoint saved in %s/ckpt\n", R.step, o->out);
        else fprintf(stderr, "ds3 train: done, %ld steps; checkpoint in %s/ckpt\n", R.step, o->out);
    }
    if (!rc && interrupted == 2) rc = 130;
done:
    if (R.log) fclose(R.log);
    ds3_tmodel_free(R.m);
    ds3_tdata_free(&R.data);
    ds3_tokenizer_free(tok);
    free(R.mom), free(R.vel), free(R.inp), free(R.tgt), free(R.hist), free(R.tok_json), free(R.tok_cfg_json);
    return rc;
}
