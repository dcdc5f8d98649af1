/* common.h -- small shared helpers: error messages, checked allocation, file I/O.
 *
 * Error tiers (see docs/architecture.md):
 *   1. assert()/DS3_ASSERT for bugs (invariants the code itself guarantees);
 *   2. a returned status (ds3_status, negative) plus a one-line message written with
 *      ds3_seterr() into the caller's (char *err, size_t errlen) buffer for bad input;
 *   3. exit() only in src/cli/.
 */
#ifndef DS3_COMMON_H
#define DS3_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ds3.h"

#define DS3_ASSERT(x)                                                                        \
    do {                                                                                     \
        if (!(x)) ds3_panic(__FILE__, __LINE__, #x);                                         \
    } while (0)

void ds3_panic(const char *file, int line, const char *what);

/* Write a formatted one-line message into err (may be NULL). Returns `status` so callers can
 * `return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: tensor %s: ...", path, name);`. */
int ds3_seterr(char *err, size_t errlen, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Allocation that returns NULL on failure (callers report DS3_ERR_NOMEM). Memory is zeroed.
 * ds3_alloc_aligned returns 64-byte aligned memory; free it with free(). */
void *ds3_calloc(size_t n, size_t size);
void *ds3_alloc_aligned(size_t bytes);

/* Read a whole file into a malloc'd NUL-terminated buffer. Returns NULL and sets err. */
char *ds3_read_file(const char *path, size_t *len_out, size_t max_len, char *err, size_t errlen);

/* Atomic write: path.tmp.<pid>, fsync, rename, fsync(dir). Returns 0 or a negative status. */
int ds3_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* Join a directory and a file name into out (returns -1 when it does not fit). */
int ds3_path_join(char *out, size_t outlen, const char *dir, const char *name);

/* Monotonic time in seconds. */
double ds3_time_s(void);

/* Number of online CPUs (>= 1). */
int ds3_n_cpus(void);

/* Overflow-checked size arithmetic: return 0 on overflow. */
static inline int ds3_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

#endif
