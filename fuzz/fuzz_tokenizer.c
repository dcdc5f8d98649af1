/* fuzz_tokenizer.c -- libFuzzer target for src/text: arbitrary bytes into encode and decode of the
 * DeepSeek-V3 tokenizer, the streaming decoder, the chat renderer and the tokenizer.json loader.
 *
 * Build: make fuzz   (clang, -fsanitize=fuzzer,address,undefined)
 * Run:   build-fuzz/fuzz_tokenizer -max_total_time=600 -max_len=4096 fuzz/corpus-tokenizer
 * Needs tests/fixtures/tokenizer/tokenizer.json (run from the repository root) or DS3_FUZZ_TOKENIZER.
 *
 * The first input byte picks the mode; the checks are invariants that must hold for any input:
 *   0-3  encode (mode bits: add_special, literal) -> decode must give the lossy UTF-8 of the input
 *        (minus the BOS) and the streaming decoder must agree chunk by chunk;
 *   4    the input as little-endian 24-bit ids (mod vocab) -> decode == streaming decode;
 *   5    the input as a tokenizer.json (must load or fail with a one-line message, never crash);
 *        when it loads, encode + decode the input too;
 *   6    the input as chat messages JSON -> render, then encode. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/chat.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

static ds3_tokenizer *T;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *p = getenv("DS3_FUZZ_TOKENIZER");
    char err[1024];
    T = ds3_tokenizer_load(p ? p : "tests/fixtures/tokenizer/tokenizer.json", err, sizeof err);
    if (!T) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err);
        abort();
    }
    return 0;
}

static void check_stream(const ds3_tokenizer *t, const int32_t *ids, size_t n, const char *want, size_t wl) {
    ds3_detok_stream *s = ds3_detok_stream_new(t, 0);
    if (!s) return;
    size_t off = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *p;
        size_t l;
        int rc = i < n ? ds3_detok_stream_push(s, ids[i], &p, &l) : ds3_detok_stream_finish(s, &p, &l);
        if (rc) abort();
        if (!ds3_utf8_valid((const unsigned char *)p, l)) abort(); /* never a broken sequence */
        if (off + l > wl || memcmp(want + off, p, l)) abort();
        off += l;
    }
    if (off != wl) abort();
    ds3_detok_stream_free(s);
}

static void roundtrip(const ds3_tokenizer *t, const uint8_t *d, size_t n, int add, int literal) {
    char err[1024];
    int32_t *ids;
    size_t ni;
    if (ds3_tokenizer_encode(t, (const char *)d, n, add, literal, &ids, &ni, err, sizeof err)) return;
    size_t skip = (add && ds3_tokenizer_adds_bos(t) && ni > 0) ? 1 : 0;
    char *out;
    size_t ol;
    if (ds3_tokenizer_decode(t, ids + skip, ni - skip, 0, &out, &ol, err, sizeof err) == 0) {
        size_t wl;
        char *want = ds3_utf8_lossy(d, n, &wl);
        /* a suffix EOS may follow when the tokenizer adds one; only the DeepSeek fixture is checked strictly */
        if (t == T && want && (ol != wl || memcmp(out, want, wl))) abort();
        if (want) check_stream(t, ids + skip, ni - skip, out, ol);
        free(want);
        free(out);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 7;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    char err[1024];
    if (mode < 4) {
        roundtrip(T, d, n, mode & 1, (mode >> 1) & 1);
    } else if (mode == 4) {
        size_t ni = n / 3;
        int32_t *ids = malloc((ni + 1) * sizeof *ids);
        for (size_t i = 0; i < ni; i++)
            ids[i] = (int32_t)(((uint32_t)d[3 * i] | (uint32_t)d[3 * i + 1] << 8 | (uint32_t)d[3 * i + 2] << 16) %
                               (uint32_t)ds3_tokenizer_n_vocab(T));
        char *out;
        size_t ol;
        if (ds3_tokenizer_decode(T, ids, ni, 0, &out, &ol, err, sizeof err) == 0) {
            check_stream(T, ids, ni, out, ol);
            free(out);
        }
        free(ids);
    } else if (mode == 5) {
        ds3_tokenizer *t = ds3_tokenizer_load_mem((const char *)d, n, NULL, 0, "fuzz.json", err, sizeof err);
        if (!t && strchr(err, '\n')) abort();
        if (t) {
            roundtrip(t, d, n > 256 ? 256 : n, 1, 0);
            ds3_tokenizer_free(t);
        }
    } else {
        char *out;
        size_t ol;
        if (ds3_chat_render_json((const char *)d, n, (data[0] >> 3) & 1, NULL, &out, &ol, err, sizeof err) == 0) {
            roundtrip(T, (const uint8_t *)out, ol, 0, 0);
            free(out);
        }
    }
    return 0;
}
