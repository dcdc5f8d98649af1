/* tmatmul.h -- f32 matrix-matrix products for training (forward and both backward products).
 *
 *   DS3_TMM_NT  C[M,N]  = A[M,K] . B[N,K]^T      forward y = x W^T (B = W, contiguous rows);
 *                                                 runs on ds3_kern->matmul, split over rows of B
 *   DS3_TMM_NN  C[M,N] (+)= A[M,K] . B[K,N]       dX = dY . W
 *   DS3_TMM_TN  C[M,N] (+)= A[K,M]^T . B[K,N]     dW = dY^T . X
 * NN and TN are split over rows of C. Every element of C is summed by one call in a fixed order
 * (k = 0..K-1), so results never depend on the chunking or the thread count.
 * Two kernel sets: a plain scalar twin and an AVX-512 (or AVX2) one, picked once at startup
 * (DS3_TKERNELS=ref|avx2|avx512 overrides); test_train_tmm checks them against each other. */
#ifndef DS3_TMATMUL_H
#define DS3_TMATMUL_H

#include <stddef.h>

#include "util/pool.h"

enum { DS3_TMM_NT = 0, DS3_TMM_NN = 1, DS3_TMM_TN = 2 };

typedef struct ds3_tmm_job {
    int op, acc;         /* acc: C += product (NN, TN only); else C = product */
    int M, N, K;
    const float *A;
    size_t lda;
    const float *B;
    size_t ldb;          /* NT: must equal K */
    float *C;
    size_t ldc;
} ds3_tmm_job;

/* Run n independent jobs in one parallel pass on pool (NULL: the calling thread only). Jobs may
 * not write overlapping outputs. */
void ds3_tmm(ds3_pool *pool, const ds3_tmm_job *jobs, int n);
/* Rows [m0, m1) of C for one job (NT: rows [m0, m1) of B, i.e. columns of C), calling thread. */
void ds3_tmm_rows(const ds3_tmm_job *j, int m0, int m1);

/* Kernel set: "ref", "avx2" or "avx512". ds3_tmm_set returns -1 when the CPU lacks it. */
const char *ds3_tmm_kernels(void);
int ds3_tmm_set(const char *name);

#endif
