/* trainer.h -- the training loop behind `ds3 train` (docs/training.md): data, model, AdamW with
 * warm-up + cosine schedule, clipping, loss-free balancing / auxiliary loss / none, MTP, evals
 * over the whole validation split, JSON-lines log + PNG curves, atomic HF checkpoints with the
 * optimizer and loader state, bit-exact resume, Ctrl-C handling. */
#ifndef DS3_TRAINER_H
#define DS3_TRAINER_H

#include <stddef.h>
#include <stdint.h>

typedef struct ds3_train_opts {
    const char *config;          /* MODEL.json (HF config.json; optional "training" object) */
    const char **data;           /* input files / folders */
    int n_data;
    const char *val_data;        /* NULL: split per SPLITS.md */
    const char *tokenizer;       /* tokenizer.json, or "bytes" for the byte-level fallback */
    const char *out;
    long steps;                  /* total run length; the schedule is defined over it */
    int batch, seq;
    double lr, min_lr;           /* peak and final learning rate */
    long warmup;
    double weight_decay, grad_clip, beta1, beta2, adam_eps;
    uint64_t seed;
    int threads;
    int resume;
    long stop_after;             /* 0: run to the end */
    long eval_interval, ckpt_interval, log_interval;
    long eval_windows;           /* 0: the whole validation split */
    int balance;                 /* DS3_BAL_* plus loss-free bias update for DS3_BAL_SEQ */
    int bias_update;             /* loss-free bias update on/off */
    double bias_gamma, bal_alpha, mtp_lambda, init_std;
    int mtp;                     /* -1: as the config says; 0: train without the MTP module */
    int progress;                /* -1 auto (a terminal), 0 plain lines, 1 bar */
    int quiet;
    int keep_best;               /* also keep the checkpoint of the best validation loss in best/ */
} ds3_train_opts;

void ds3_train_default_opts(ds3_train_opts *o);
/* Read the "training" object of a config.json into o (keys as the long flag names with '_'). */
int ds3_train_opts_from_json(ds3_train_opts *o, const char *config_path, char *err, size_t errlen);
/* Run (or resume) training. Returns 0, 130 when interrupted by SIGINT (checkpoint saved), or a
 * negative ds3_status with err set. */
int ds3_train_run(const ds3_train_opts *o, char *err, size_t errlen);

#endif
