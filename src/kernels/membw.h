/* membw.h -- measure the machine's memory bandwidth with a STREAM-triad-style loop, so matmul
 * speeds can be reported as a fraction of what the memory system delivers. */
#ifndef DS3_MEMBW_H
#define DS3_MEMBW_H

#include <stddef.h>

#define DS3_MEMBW_DEFAULT_BYTES ((size_t)256 << 20) /* per array; 3 arrays, far above any LLC */

/* GB/s (1e9 bytes/s) of a[i] = b[i] + s*c[i] over three float arrays of `bytes_per_array`
 * bytes each, split between n_threads threads (ds3_pool), repeated for about `seconds`; the best
 * repetition counts, as in STREAM. Bytes counted: 2 read + 1 written per element (the cache's
 * write-allocate read is not counted). Returns a negative value when memory or threads fail. */
double ds3_membw_measure_ex(int n_threads, double seconds, size_t bytes_per_array);
double ds3_membw_measure(int n_threads, double seconds); /* DS3_MEMBW_DEFAULT_BYTES */

#endif
