/* bpe_train.h -- train a byte-level BPE tokenizer with DeepSeek-V3's pre-tokenizer rules and write it
 * as a Hugging Face tokenizer.json that both ds3 and HF `tokenizers` load.
 *
 * Vocabulary layout: id 0 "<｜begin▁of▁sentence｜>" (BOS), id 1 "<｜end▁of▁sentence｜>" (EOS), ids 2..257
 * the 256 byte tokens, then one id per merge. The post-processor adds the BOS (add_special_tokens). */
#ifndef DS3_TEXT_BPE_TRAIN_H
#define DS3_TEXT_BPE_TRAIN_H

#include <stddef.h>

typedef struct {
    int vocab_size;    /* total ids including BOS/EOS and the 256 bytes (>= 258) */
    int min_frequency; /* stop when the best pair occurs fewer times (default 2) */
    int verbose;       /* progress on stderr */
} ds3_bpe_train_params;

ds3_bpe_train_params ds3_bpe_train_default_params(void);

/* Train on n_texts byte buffers (UTF-8; ill-formed bytes are replaced like the tokenizer does).
 * *json_out (malloc'd) receives the tokenizer.json text. *n_merges_out (may be NULL) the merges
 * learned, which is fewer than asked when the corpus runs out of pairs. */
int ds3_bpe_train(const char *const *texts, const size_t *lens, size_t n_texts, const ds3_bpe_train_params *p,
                  char **json_out, size_t *json_len, int *n_merges_out, char *err, size_t errlen);

/* SPLITS.md rule: the byte offset S where a file of `size` bytes splits into train [0, S) and
 * validation [S, size). */
size_t ds3_corpus_split_offset(const unsigned char *buf, size_t size);

#endif
