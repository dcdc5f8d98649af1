/* generate.h -- the generation loop: prefill the prompt in batches, then decode token by token
 * (or with MTP speculation, see speculative.c), streaming each token to a callback. */
#ifndef DS3_GENERATE_H
#define DS3_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "ds3.h"
#include "infer/sampler.h"

/* ds3_gen_params.spec */
enum {
    DS3_SPEC_NONE = 0, /* plain decoding */
    DS3_SPEC_MTP = 1,  /* every decode step is an MTP speculative step */
    DS3_SPEC_AUTO = 2, /* speculative or plain steps, whichever measures faster per token in this run
                        * (re-probed now and then); plain when the session has no MTP */
};

/* DS3_SPEC_AUTO's measurements, which a caller may keep across generate calls on one session
 * (ds3_gen_params.auto_memo; chat keeps one for its turns) so that a later call starts with the
 * earlier choice instead of probing both kinds of step again. Zero-initialise; the generator
 * fills it in. */
#define DS3_SPEC_AUTO_RING 8
typedef struct {
    int valid;
    double ring[2][DS3_SPEC_AUTO_RING]; /* latest step times in seconds: [0] plain, [1] speculative */
    int nring[2], iring[2];
    long spec_steps, spec_tokens;       /* speculative steps timed, and the tokens they emitted */
    int chosen, period;                 /* the last choice (1 speculative, 0 plain) and its period */
} ds3_spec_auto_memo;

typedef struct {
    int n_predict;              /* tokens to generate (>= 0) */
    int stop_at_eos;            /* stop after emitting the model's EOS (default 1) */
    int spec;                   /* DS3_SPEC_* (default DS3_SPEC_AUTO) */
    int n_draft;                /* drafts per step with speculation (default 1) */
    /* DS3_SPEC_AUTO schedule, in main-model steps (0 = default): a probe of the kind of step not
     * in use lasts auto_probe steps (default 4); the faster kind then runs auto_period steps
     * (default 256) before the next probe, a period that doubles while the choice holds (up to
     * 16x). Before speculation resumes, the MTP replays at most the last auto_window plain steps
     * (default 8; between auto_window/2 and auto_window after a longer plain stretch). */
    int auto_probe, auto_period, auto_window;
    /* Tests: when non-zero, the kind of every DS3_SPEC_AUTO step is drawn at random from a
     * generator with this seed instead of from the timings (reaches every transition quickly). */
    uint64_t auto_test_seed;
    ds3_spec_auto_memo *auto_memo; /* NULL, or measurements carried over calls (see above) */
    /* Called for every generated token; return non-zero to stop. */
    int (*on_token)(void *ud, int32_t token);
    void *ud;
} ds3_gen_params;

typedef struct {
    int n_prompt, n_gen;
    double t_prompt, t_gen;     /* seconds */
    int n_drafted, n_accepted;  /* speculation */
    int n_steps;                /* main-model decode calls (plain and speculative) */
    int spec_mode;              /* the loop that ran: DS3_SPEC_NONE, _MTP or _AUTO */
    int n_steps_spec;           /* speculative steps among n_steps */
    int n_gen_spec;             /* tokens emitted by speculative steps (the first token of a run
                                 * comes from the prefill, the rest from plain or speculative steps) */
    int n_switches;             /* DS3_SPEC_AUTO: changes between plain and speculative steps */
    int n_mtp_gap;              /* DS3_SPEC_AUTO: positions of plain steps the MTP never saw (older
                                 * ones of long plain stretches, and those at the end of the run):
                                 * the MTP cache ends that far behind the main one */
    double t_spec, t_plain;     /* seconds in speculative / plain steps (t_plain includes the MTP
                                 * catch-up over positions decoded by plain steps) */
} ds3_gen_stats;

ds3_gen_params ds3_gen_default_params(void);

/* Generate after the prompt (appended at the session's current position). Returns 0 or a
 * negative ds3_status (message in err). */
int ds3_generate(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int n_prompt, const ds3_gen_params *gp,
                 ds3_gen_stats *st, char *err, size_t errlen);

/* The plain loop, and the MTP speculative loop (speculative.c; gp->spec == DS3_SPEC_AUTO makes it
 * adaptive, anything else speculates on every step). Same contract as ds3_generate. */
int ds3_generate_plain(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int n_prompt, const ds3_gen_params *gp,
                       ds3_gen_stats *st, char *err, size_t errlen);
int ds3_generate_spec(ds3_session *s, ds3_sampler *smp, const int32_t *prompt, int n_prompt, const ds3_gen_params *gp,
                      ds3_gen_stats *st, char *err, size_t errlen);

/* One line describing how the decode went: the mode, the share of tokens from speculative steps,
 * acceptance, accepted drafts per speculative step and tok/s of each kind of step. */
void ds3_gen_stats_describe(const ds3_gen_stats *st, int n_draft, char *buf, size_t n);

#endif
