/* npy.h -- write NumPy .npy (format 1.0) float32/int32 arrays, atomically. */
#ifndef DS3_NPY_H
#define DS3_NPY_H
#include <stddef.h>
#include <stdint.h>

/* kind: 'f' (float32) or 'i' (int32). */
int ds3_npy_write(const char *path, const void *data, char kind, const int64_t *shape, int ndim, char *err,
                  size_t errlen);
/* Write raw little-endian bytes, or .npy when path ends in ".npy". */
int ds3_write_f32(const char *path, const float *data, const int64_t *shape, int ndim, char *err, size_t errlen);

#endif
