/* ds3.h -- public API of ds3, a C engine for DeepSeek-V3-architecture models.
 *
 * Usage:
 *     char err[DS3_ERR_LEN];
 *     ds3_model_params mp = ds3_model_default_params();
 *     ds3_model *m = ds3_model_load("path/to/hf_dir", &mp, err, sizeof err);
 *     if (!m) { fprintf(stderr, "%s\n", err); ... }
 *     ds3_session_params sp = ds3_session_default_params();
 *     ds3_session *s = ds3_session_new(m, &sp, err, sizeof err);
 *     ds3_session_eval(s, tokens, n, logits_all_positions_or_NULL, err, sizeof err);
 *     const float *last = ds3_session_logits(s);          // (vocab_size,)
 *     ds3_session_free(s); ds3_model_free(m);
 *
 * Ownership and threads:
 *   - ds3_model is immutable after load: weights are mmapped read-only (or read into RAM).
 *     Any number of sessions, on any threads, may share one model. Free it after its sessions.
 *   - ds3_session owns its latent KV caches, scratch buffers, thread pool and RNG. One thread
 *     at a time may call into a session.
 *   - Errors: functions that can fail on bad input return NULL or a negative ds3_status and
 *     write a one-line message (naming file and tensor or field) into the caller's buffer.
 *     Invariant violations (bugs) abort via assert.
 */
#ifndef DS3_H
#define DS3_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DS3_ERR_LEN 1024

typedef enum {
    DS3_OK = 0,
    DS3_ERR_IO = -1,      /* file missing, unreadable, short read            */
    DS3_ERR_FORMAT = -2,  /* malformed file or config                        */
    DS3_ERR_ARG = -3,     /* bad argument from the caller (token id, length)  */
    DS3_ERR_NOMEM = -4,   /* allocation failed                               */
    DS3_ERR_UNSUPP = -5,  /* valid input that ds3 does not support           */
} ds3_status;

typedef struct ds3_model ds3_model;
typedef struct ds3_session ds3_session;

/* ---- model ---------------------------------------------------------------------------- */

typedef struct {
    int use_mmap;   /* 1 (default): map shards read-only; 0: read them into RAM (--no-mmap) */
    int use_mlock;  /* 1: mlock the mapped weights so they stay resident (--mlock)          */
    int load_mtp;   /* 1 (default): load the MTP module when the checkpoint has one         */
    int verbose;    /* 1: progress and warnings on stderr                                   */
    int no_repack;  /* 1: GGUF Q8_0 / Q4_K weights keep the file's layout (--no-repack; env
                       DS3_NO_REPACK=1). By default the AVX-512 VNNI kernels get them
                       regrouped 16 rows at a time at load (a private copy when mapped). */
} ds3_model_params;

ds3_model_params ds3_model_default_params(void);

/* Load a Hugging Face checkpoint folder (config.json + *.safetensors, sharded or not). */
ds3_model *ds3_model_load(const char *dir, const ds3_model_params *p, char *err, size_t errlen);
void ds3_model_free(ds3_model *m);

/* Basic facts about a loaded model. */
int ds3_model_vocab_size(const ds3_model *m);
int ds3_model_has_mtp(const ds3_model *m);
int ds3_model_n_layers(const ds3_model *m);
int ds3_model_bos(const ds3_model *m);
int ds3_model_eos(const ds3_model *m);
const char *ds3_model_dir(const ds3_model *m);

typedef struct {
    double n_params_total;      /* every parameter of the main model (embedding and head included) */
    double n_params_active;     /* parameters touched per token (routed experts: top-k only)       */
    double n_params_mtp;        /* parameters of the MTP module(s) not shared with the main model  */
    double bytes_weights;       /* bytes of all mapped tensors                                      */
    double bytes_per_token;     /* weight bytes read to decode one token (main model)               */
    double kv_bytes_per_token;  /* latent cache bytes per token (all layers, f32)                   */
} ds3_model_stats;

void ds3_model_get_stats(const ds3_model *m, ds3_model_stats *out);
/* Print the config and the stats in human-readable form. */
void ds3_model_print_info(const ds3_model *m, void *FILE_stream);

/* ---- session -------------------------------------------------------------------------- */

typedef struct {
    int n_ctx;      /* positions the latent caches hold (default: min(4096, max_position_embeddings)) */
    int n_batch;    /* most tokens per forward chunk (default 512)                      */
    int n_threads;  /* worker threads (default: online cores)                           */
    int use_mtp;    /* 1: keep an MTP cache and allow MTP calls (default: if model has) */
} ds3_session_params;

ds3_session_params ds3_session_default_params(void);

ds3_session *ds3_session_new(const ds3_model *m, const ds3_session_params *p, char *err, size_t errlen);
void ds3_session_free(ds3_session *s);

const ds3_model *ds3_session_model(const ds3_session *s);

/* The session's effective sizes (after defaults), and whether it keeps an MTP cache. */
int ds3_session_n_ctx(const ds3_session *s);
int ds3_session_n_batch(const ds3_session *s);
int ds3_session_has_mtp(const ds3_session *s);

/* Forget all cached positions (both the main and the MTP cache). */
void ds3_session_reset(ds3_session *s);
/* Positions currently cached by the main model. */
int ds3_session_n_past(const ds3_session *s);
/* Roll the main model's cache back to n_past positions (speculative decoding). */
int ds3_session_truncate(ds3_session *s, int n_past);

/* Run the main model on n tokens at positions n_past..n_past+n-1 and append them to the cache.
 * logits_out: NULL, or (n, vocab_size) floats receiving the logits at every position.
 * The last position's logits are always kept and returned by ds3_session_logits().
 * The final-normed hidden states of these positions are kept for ds3_session_mtp_eval(). */
int ds3_session_eval(ds3_session *s, const int32_t *tokens, int n, float *logits_out, char *err,
                     size_t errlen);
const float *ds3_session_logits(const ds3_session *s);          /* (vocab_size,) */
const float *ds3_session_hidden(const ds3_session *s, int i);   /* (hidden_size,) of position i of
                                                                    the last eval call          */

/* MTP module (depth 1): run it on n positions p0..p0+n-1 of its own cache (p0 = its n_past),
 * with next-token ids next_tokens[0..n) and the main model's final-normed hidden states
 * hidden[i*hidden_size ...]. logits_out: NULL or (n, vocab_size). */
int ds3_session_mtp_eval(ds3_session *s, const int32_t *next_tokens, const float *hidden, int n,
                         float *logits_out, char *err, size_t errlen);
int ds3_session_mtp_n_past(const ds3_session *s);
int ds3_session_mtp_truncate(ds3_session *s, int n_past);
const float *ds3_session_mtp_logits(const ds3_session *s);      /* last position */
/* The MTP module's output for position i of the last ds3_session_mtp_eval chunk after its
 * shared_head.norm (hidden_size,): the vector that goes into its head; chaining the depth-1
 * module for a second draft feeds it back as the hidden. Valid until the next eval of either
 * kind (it lives in scratch); NULL when out of range. */
const float *ds3_session_mtp_hidden(const ds3_session *s, int i);

/* Expert routing of the last eval call, for tests and tools: ids (n_tokens, top_k) per MoE layer
 * (layer = index among MoE layers, MTP block last). Returns NULL when out of range. */
const int32_t *ds3_session_routing(const ds3_session *s, int moe_layer, int *n_tokens, int *top_k);

/* ---- kernels -------------------------------------------------------------------------- */

/* Name of the kernel set in use: "ref", "avx2" or "avx512" (DS3_KERNELS overrides). */
const char *ds3_kernels_name(void);

#ifdef __cplusplus
}
#endif
#endif /* DS3_H */
