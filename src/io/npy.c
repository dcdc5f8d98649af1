/* npy.c -- NumPy .npy v1.0 writer (header: magic, version, u16 length, Python dict literal
 * padded with spaces to a multiple of 64 bytes, then raw little-endian C-order data). */
#include "io/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"

int ds3_npy_write(const char *path, const void *data, char kind, const int64_t *shape, int ndim, char *err,
                  size_t errlen) {
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '<%c4', 'fortran_order': False, 'shape': (", kind);
    size_t nel = 1;
    for (int i = 0; i < ndim; i++) {
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld,%s", (long long)shape[i], i + 1 < ndim ? " " : "");
        nel *= (size_t)shape[i];
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    size_t hl = (size_t)n + 1, total_h = 10 + hl;
    size_t pad = (64 - total_h % 64) % 64;
    hl += pad;
    size_t bytes = 10 + hl + nel * 4;
    char *buf = malloc(bytes);
    if (!buf) return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "%s: out of memory", path);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)(hl & 0xff);
    buf[9] = (char)(hl >> 8);
    memcpy(buf + 10, dict, (size_t)n);
    memset(buf + 10 + n, ' ', pad);
    buf[10 + hl - 1] = '\n';
    memcpy(buf + 10 + hl, data, nel * 4);
    int rc = ds3_write_file_atomic(path, buf, bytes, err, errlen);
    free(buf);
    return rc;
}

int ds3_write_f32(const char *path, const float *data, const int64_t *shape, int ndim, char *err, size_t errlen) {
    size_t l = strlen(path);
    if (l > 4 && !strcmp(path + l - 4, ".npy")) return ds3_npy_write(path, data, 'f', shape, ndim, err, errlen);
    size_t nel = 1;
    for (int i = 0; i < ndim; i++) nel *= (size_t)shape[i];
    return ds3_write_file_atomic(path, data, nel * sizeof(float), err, errlen);
}
