/* utf8.h -- UTF-8 helpers shared by the tokenizer, the chat template and the BPE trainer.
 *
 * Invalid input is handled the way the reference (HF tokenizers, which only ever sees Rust
 * `String`s) would see it after the caller decoded the bytes lossily: every maximal subpart of an
 * ill-formed sequence becomes one U+FFFD ("substitution of maximal subparts", Unicode 14 §3.9,
 * the same rule as Rust's String::from_utf8_lossy, Python's errors='replace' and WHATWG's
 * TextDecoder). Owned by the tokenizer maintainer (src/text/). */
#ifndef DS3_TEXT_UTF8_H
#define DS3_TEXT_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the well-formed sequence starting at s[0] (1..4), or 0 when s[0..n) does not start
 * with one. *cp gets the code point. n must be >= 1. */
int ds3_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);

/* Length of the maximal subpart of an ill-formed sequence at s[0] (>= 1): the bytes that one
 * U+FFFD replaces. Only meaningful where ds3_utf8_next returned 0. */
int ds3_utf8_bad_len(const unsigned char *s, size_t n);

/* Returns 1 when s[0..n) is entirely well-formed UTF-8. */
int ds3_utf8_valid(const unsigned char *s, size_t n);

/* Lossy copy: returns a malloc'd buffer (NUL-terminated, *out_len set) where each maximal ill-formed
 * subpart is U+FFFD. NULL on allocation failure. */
char *ds3_utf8_lossy(const unsigned char *s, size_t n, size_t *out_len);

/* Encode one code point (<= 0x10FFFF) into out (4 bytes room); returns the byte count. */
int ds3_utf8_put(uint32_t cp, char *out);

/* Unicode White_Space (Unicode 14 PropList.txt): what Oniguruma's \s and Rust's char::is_whitespace
 * both mean. */
int ds3_unicode_is_white_space(uint32_t cp);

/* Streaming validator for detokenization: bytes go in, only complete well-formed text (with U+FFFD
 * substituted exactly as ds3_utf8_lossy would) comes out. */
typedef struct {
    unsigned char pend[4];
    int npend;
} ds3_utf8_stream;

/* Append the text that bytes s[0..n) complete to out (room: n + 8 bytes is always enough since
 * pending bytes at most turn into one U+FFFD each... use ds3_utf8_stream_bound). Returns bytes written. */
size_t ds3_utf8_stream_feed(ds3_utf8_stream *st, const unsigned char *s, size_t n, char *out);
/* Emit what is pending at the end of the stream (a truncated sequence becomes one U+FFFD). */
size_t ds3_utf8_stream_finish(ds3_utf8_stream *st, char *out);
/* Output room that feeding n bytes may need. */
static inline size_t ds3_utf8_stream_bound(size_t n) { return 3 * (n + 4) + 4; }

#endif
