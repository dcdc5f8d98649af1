/* membw.h -- measure the machine's memory bandwidth with a STREAM-triad-style loop, so matmul
 * speeds can be reported as a fraction of what the memory system delivers. */
#ifndef DS3_MEMBW_H
#define DS3_MEMBW_H

#include <stddef.h>

#include "kernels/kernels.h"

#define DS3_MEMBW_DEFAULT_BYTES ((size_t)256 << 20) /* per array; 3 arrays, far above any LLC */

/* GB/s (1e9 bytes/s) of a[i] = b[i] + s*c[i] over three float arrays of `bytes_per_array`
 * bytes each, split between n_threads threads (ds3_pool), repeated for about `seconds`; the best
 * repetition counts, as in STREAM. Bytes counted: 2 read + 1 written per element (the cache's
 * write-allocate read is not counted). Returns a negative value when memory or threads fail. */
double ds3_membw_measure_ex(int n_threads, double seconds, size_t bytes_per_array);
double ds3_membw_measure(int n_threads, double seconds); /* DS3_MEMBW_DEFAULT_BYTES */

/* Each of n_threads threads (at once, as in decode) times one-token products of its own copy of
 * the first rows of w, sized to stay in L2 (<= 256 KB), for about `seconds`; gws[i] (n_threads
 * entries) gets thread i's best rate in G weights/s. It shows what the kernel does on each core
 * when memory is not in the way: on a shared host a core whose neighbour takes its vector units
 * reads far below the others. Returns the slowest thread's rate, or a negative value when memory
 * or threads fail. */
double ds3_kernel_probe(int n_threads, const ds3_mat *w, double seconds, double *gws);

#endif
