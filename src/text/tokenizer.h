/* tokenizer.h -- Hugging Face byte-level BPE tokenizers (tokenizer.json): DeepSeek-V3, GPT-2,
 * Llama 3, Qwen 2 styles. See docs/tokenizer.md for what is supported and how it is checked.
 *
 *     char err[DS3_ERR_LEN];
 *     ds3_tokenizer *t = ds3_tokenizer_load("dir/tokenizer.json", err, sizeof err);
 *     int32_t *ids; size_t n;
 *     ds3_tokenizer_encode(t, text, len, 1, 0, &ids, &n, err, sizeof err);   // BOS as configured
 *     char *s; size_t slen;
 *     ds3_tokenizer_decode(t, ids, n, 0, &s, &slen, err, sizeof err);
 *
 * A loaded tokenizer is immutable apart from internal caches that are handed out per call, so
 * any number of threads may encode and decode with one tokenizer at the same time. */
#ifndef DS3_TEXT_TOKENIZER_H
#define DS3_TEXT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct ds3_tokenizer ds3_tokenizer;

/* Load tokenizer.json; tokenizer_config.json in the same folder is read when present (BOS/EOS
 * tokens, add_bos_token/add_eos_token, chat_template). NULL + one-line error naming file and field. */
ds3_tokenizer *ds3_tokenizer_load(const char *tokenizer_json_path, char *err, size_t errlen);
/* The same from memory. config may be NULL. `name` is used in error messages. */
ds3_tokenizer *ds3_tokenizer_load_mem(const char *json, size_t len, const char *config, size_t config_len,
                                      const char *name, char *err, size_t errlen);
void ds3_tokenizer_free(ds3_tokenizer *t);

/* Encode bytes (any bytes: ill-formed UTF-8 is replaced by U+FFFD per maximal subpart first, NUL is
 * ordinary text). add_special: add the BOS/EOS the tokenizer is configured to add (tokenizer_config's
 * add_bos_token/add_eos_token when present, else the post_processor template). literal_specials:
 * do not recognise added-token text at all. *ids is malloc'd (free it); returns 0 or a negative
 * ds3_status. */
int ds3_tokenizer_encode(const ds3_tokenizer *t, const char *text, size_t len, int add_special, int literal_specials,
                         int32_t **ids, size_t *n, char *err, size_t errlen);

/* Decode ids to UTF-8 text like HF decode(ids, skip_special_tokens): the bytes of all tokens are
 * joined, then ill-formed sequences become U+FFFD. *out is malloc'd and NUL-terminated. An id
 * outside [0, n_vocab) or with no token is an error (DS3_ERR_ARG). */
int ds3_tokenizer_decode(const ds3_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **out,
                         size_t *out_len, char *err, size_t errlen);

/* Streaming decoder for generation: push ids one at a time, get back only complete UTF-8 text.
 * The concatenation of all outputs plus ds3_detok_stream_finish equals ds3_tokenizer_decode. */
typedef struct ds3_detok_stream ds3_detok_stream;
ds3_detok_stream *ds3_detok_stream_new(const ds3_tokenizer *t, int skip_special);
/* *text points into the stream's buffer, valid until the next call. Returns 0 or DS3_ERR_ARG. */
int ds3_detok_stream_push(ds3_detok_stream *s, int32_t id, const char **text, size_t *len);
int ds3_detok_stream_finish(ds3_detok_stream *s, const char **text, size_t *len);
void ds3_detok_stream_free(ds3_detok_stream *s);

/* Facts. Ids are [0, n_vocab); a few may be holes (no token). */
int ds3_tokenizer_n_vocab(const ds3_tokenizer *t);
int32_t ds3_tokenizer_bos(const ds3_tokenizer *t);  /* -1 when none */
int32_t ds3_tokenizer_eos(const ds3_tokenizer *t);  /* -1 when none */
int ds3_tokenizer_adds_bos(const ds3_tokenizer *t); /* encode(add_special=1) starts with BOS */
int ds3_tokenizer_is_special(const ds3_tokenizer *t, int32_t id);
int ds3_tokenizer_is_added(const ds3_tokenizer *t, int32_t id);
/* The token's string as written in tokenizer.json (e.g. "Ġworld"), or NULL. */
const char *ds3_tokenizer_token_str(const ds3_tokenizer *t, int32_t id, size_t *len);
/* The bytes the token stands for when decoding (e.g. " world"; may be part of a UTF-8 sequence). */
const char *ds3_tokenizer_token_to_piece(const ds3_tokenizer *t, int32_t id, size_t *len);
/* Id of a token string (added token content or vocab entry), or -1. */
int32_t ds3_tokenizer_token_id(const ds3_tokenizer *t, const char *str, size_t len);
/* tokenizer_config.json's bos_token / eos_token text and chat_template (NULL when absent). */
const char *ds3_tokenizer_bos_text(const ds3_tokenizer *t);
const char *ds3_tokenizer_eos_text(const ds3_tokenizer *t);
const char *ds3_tokenizer_chat_template(const ds3_tokenizer *t);

/* Run only normalizer + pre-tokenizer over text (no added-token matching) and call fn for every
 * final piece (its bytes, before the byte-level mapping). For the BPE trainer and for debugging.
 * Stops and returns fn's value when it is non-zero. */
typedef int (*ds3_piece_fn)(void *ctx, const char *piece, size_t len);
int ds3_tokenizer_pretokenize(const ds3_tokenizer *t, const char *text, size_t len, ds3_piece_fn fn, void *ctx,
                              char *err, size_t errlen);

/* The Oniguruma -> PCRE2 regex translation used for pre-tokenizer patterns (malloc'd, NUL-terminated;
 * NULL on allocation failure). Exposed for tests and docs/tokenizer.md. */
char *ds3_tokenizer_translate_regex(const char *src, size_t n, size_t *out_len);

/* GPT-2's byte-level alphabet: the code point that stands for byte b. */
uint32_t ds3_bytelevel_char(unsigned char b);

#endif
