/* harness.h -- a tiny test harness in the spirit of Redis' testhelp.h.
 *
 * CHECK(cond, fmt, ...) counts one check; a failure prints the location and message.
 * Each test binary ends with TEST_REPORT(), which prints "# <prog>: N passed, N failed" and
 * returns non-zero on failure; tests/run.sh adds the counts of all binaries. Tests find their
 * data relative to the repository root (they run from it). */
#ifndef DS3_TEST_HARNESS_H
#define DS3_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int th_passed, th_failed;
static const char *th_prog = "test";

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (cond) {                                                                          \
            th_passed++;                                                                     \
        } else {                                                                             \
            th_failed++;                                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                            \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
        }                                                                                    \
    } while (0)

#define TEST_BEGIN(name) (th_prog = (name))

#define TEST_REPORT()                                                                        \
    (printf("# %s: %d passed, %d failed\n", th_prog, th_passed, th_failed), th_failed ? 1 : 0)

/* max |a-b| over n floats (NaN counts as infinite). */
static inline double th_maxdiff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

/* Load a .npy file ('<f4' or '<i4', C order, v1.0). Returns malloc'd data; shape in shape[]. */
static inline void *th_npy_load(const char *path, char *kind, int *ndim, long shape[8]) {
    unsigned char pre[10];
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY\x01\x00", 8) != 0) {
        fclose(f);
        return NULL;
    }
    unsigned hl = pre[8] | (pre[9] << 8);
    char *h = malloc(hl + 1);
    if (!h || fread(h, 1, hl, f) != hl) {
        free(h);
        fclose(f);
        return NULL;
    }
    h[hl] = 0;
    char *d = strstr(h, "'descr': '"), *s = strstr(h, "'shape': (");
    if (!d || !s || !strstr(h, "'fortran_order': False") || d[10] != '<' || d[12] != '4' ||
        (d[11] != 'f' && d[11] != 'i')) {
        free(h);
        fclose(f);
        return NULL;
    }
    *kind = d[11];
    long n = 1;
    char *p = s + 10;
    *ndim = 0;
    while (*p != ')' && *ndim < 8) {
        shape[*ndim] = strtol(p, &p, 10);
        n *= shape[(*ndim)++];
        while (*p == ',' || *p == ' ') p++;
    }
    free(h);
    void *data = malloc(n > 0 ? (size_t)n * 4 : 4);
    if (!data || fread(data, 4, (size_t)n, f) != (size_t)n) {
        free(data);
        fclose(f);
        return NULL;
    }
    fclose(f);
    return data;
}

#endif
