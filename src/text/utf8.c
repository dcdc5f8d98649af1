/* utf8.c -- UTF-8 decoding with "substitution of maximal subparts" (Unicode 14 §3.9, Table 3-7),
 * lossy copies, a streaming validator for detokenization, and the White_Space property.
 * Reference: the Unicode Standard ch. 3 (well-formed byte sequences), PropList.txt (White_Space).
 * Owned by the tokenizer maintainer (src/text/). */
#include "text/utf8.h"

#include <stdlib.h>
#include <string.h>

/* Valid range of the second byte for each lead byte (Table 3-7); later bytes are 80..BF. */
static int lead_info(unsigned char b, int *need, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80, *hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) return *need = 1, 1;
    if (b == 0xE0) return *need = 2, *lo = 0xA0, 1;
    if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return *need = 2, 1;
    if (b == 0xED) return *need = 2, *hi = 0x9F, 1;
    if (b == 0xF0) return *need = 3, *lo = 0x90, 1;
    if (b >= 0xF1 && b <= 0xF3) return *need = 3, 1;
    if (b == 0xF4) return *need = 3, *hi = 0x8F, 1;
    return 0;
}

int ds3_utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char b = s[0];
    if (b < 0x80) return *cp = b, 1;
    int need;
    unsigned char lo, hi;
    if (!lead_info(b, &need, &lo, &hi)) return 0;
    if (n < (size_t)need + 1) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i <= need; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (need == 1) *cp = ((uint32_t)(b & 0x1F) << 6) | (s[1] & 0x3F);
    else if (need == 2) *cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    else
        *cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
              (s[3] & 0x3F);
    return need + 1;
}

int ds3_utf8_bad_len(const unsigned char *s, size_t n) {
    int need;
    unsigned char lo, hi;
    if (!lead_info(s[0], &need, &lo, &hi)) return 1;
    /* The maximal subpart is the lead plus the continuation bytes that could still have led to a
     * well-formed sequence. */
    size_t k = 1;
    if (k < n && s[1] >= lo && s[1] <= hi) {
        k = 2;
        while (k < n && (int)k <= need && (s[k] & 0xC0) == 0x80) k++;
    }
    return (int)k;
}

int ds3_utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int l = ds3_utf8_next(s + i, n - i, &cp);
        if (!l) return 0;
        i += (size_t)l;
    }
    return 1;
}

char *ds3_utf8_lossy(const unsigned char *s, size_t n, size_t *out_len) {
    /* Each bad byte becomes at most 3 output bytes. */
    if (n > ((size_t)-1) / 4) return NULL;
    char *out = malloc(3 * n + 1);
    if (!out) return NULL;
    size_t o = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        int l = ds3_utf8_next(s + i, n - i, &cp);
        if (l) {
            memcpy(out + o, s + i, (size_t)l);
            o += (size_t)l, i += (size_t)l;
        } else {
            i += (size_t)ds3_utf8_bad_len(s + i, n - i);
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

int ds3_utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int ds3_unicode_is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* The stream keeps at most 3 pending bytes: the prefix of a sequence that may still complete.
 * Whenever the pending bytes plus the new byte can no longer be the prefix of a well-formed
 * sequence, the maximal subpart is replaced, exactly as the one-shot lossy decoder does. */
static int could_complete(const unsigned char *p, int n) {
    int need;
    unsigned char lo, hi;
    if (!lead_info(p[0], &need, &lo, &hi)) return 0;
    if (n > need) return 0;
    if (n >= 2 && (p[1] < lo || p[1] > hi)) return 0;
    for (int i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return 1;
}

size_t ds3_utf8_stream_feed(ds3_utf8_stream *st, const unsigned char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = s[i];
        if (st->npend == 0) {
            if (b < 0x80) {
                out[o++] = (char)b;
                continue;
            }
            st->pend[0] = b;
            st->npend = 1;
        } else {
            st->pend[st->npend++] = b;
        }
        /* Resolve the pending bytes as far as possible. */
        for (;;) {
            if (st->npend == 0) break;
            uint32_t cp;
            int l = ds3_utf8_next(st->pend, (size_t)st->npend, &cp);
            if (l) {
                memcpy(out + o, st->pend, (size_t)l);
                o += (size_t)l;
                memmove(st->pend, st->pend + l, (size_t)(st->npend - l));
                st->npend -= l;
                continue;
            }
            if (could_complete(st->pend, st->npend)) break;
            /* Ill-formed: replace the maximal subpart, then re-examine the rest. */
            int k = ds3_utf8_bad_len(st->pend, (size_t)st->npend);
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            memmove(st->pend, st->pend + k, (size_t)(st->npend - k));
            st->npend -= k;
            if (st->npend == 1 && st->pend[0] < 0x80) {
                out[o++] = (char)st->pend[0];
                st->npend = 0;
            }
        }
    }
    return o;
}

size_t ds3_utf8_stream_finish(ds3_utf8_stream *st, char *out) {
    size_t o = 0;
    while (st->npend > 0) {
        uint32_t cp;
        int l = ds3_utf8_next(st->pend, (size_t)st->npend, &cp);
        if (l) {
            memcpy(out + o, st->pend, (size_t)l);
            o += (size_t)l;
        } else {
            l = ds3_utf8_bad_len(st->pend, (size_t)st->npend);
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
        memmove(st->pend, st->pend + l, (size_t)(st->npend - l));
        st->npend -= l;
    }
    return o;
}
