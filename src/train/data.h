/* data.h -- training data: token streams for the train and validation splits.
 *
 * Inputs, one or more files (a folder stands for its regular files):
 *   *.bin  pre-tokenized: little-endian uint32 token ids, nothing else;
 *   other  text: each file's bytes are split per /work/shared/data/corpora/SPLITS.md (train =
 *          bytes [0, S), S = floor(9 size / 10) moved forward past UTF-8 continuation bytes;
 *          validation = the rest); the train parts are concatenated in byte-wise file-name
 *          order, the validation parts likewise, and each stream is tokenized after splitting.
 *   A .bin file is split the same way on tokens (S = floor(9 n / 10)) unless a separate
 *   validation file is given.
 * Tokenizers: a HF tokenizer.json (src/text/tokenizer.h, no BOS/EOS added) or the byte-level
 * fallback (id = byte value + offset, vocabulary 256 + offset).
 * Batches: B windows of T+1 tokens at offsets drawn from the trainer's RNG (the only loader
 * state, saved in checkpoints), inputs = window[0..T), targets = window[1..T]. */
#ifndef DS3_TRAIN_DATA_H
#define DS3_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"

typedef struct ds3_tdata {
    int32_t *train, *val;
    size_t n_train, n_val;
    int max_id;
} ds3_tdata;

/* tok NULL: byte-level ids (byte + byte_offset). val_file: NULL or a file used whole as the
 * validation split (then the inputs are used whole for training). */
int ds3_tdata_load(ds3_tdata *d, const char *const *files, int n_files, const char *val_file, const ds3_tokenizer *tok,
                   int byte_offset, char *err, size_t errlen);
void ds3_tdata_free(ds3_tdata *d);
/* SPLITS.md split point of a byte buffer. */
size_t ds3_split_point(const unsigned char *buf, size_t size);
/* inp, tgt: (B, T). */
void ds3_tdata_batch(const ds3_tdata *d, uint64_t *rng, int B, int T, int32_t *inp, int32_t *tgt);
/* Save / load a token stream as a .bin file (atomic write). */
int ds3_tokens_save(const char *path, const int32_t *t, size_t n, char *err, size_t errlen);
int ds3_tokens_load(const char *path, int32_t **t, size_t *n, char *err, size_t errlen);

#endif
