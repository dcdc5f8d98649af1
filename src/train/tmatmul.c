/* tmatmul.c -- f32 matrix products for training: NT through ds3_kern->matmul, NN and TN with
 * one micro-kernel C[m, j] (+)= sum_k A(m, k) B[k, j] whose A is read either row-major (NN) or
 * transposed (TN). Scalar twin plus AVX-512 / AVX2 versions (function target attributes, chosen
 * at runtime), register-blocked 4 rows x 32 (AVX-512) or 4 x 16 (AVX2) columns, k innermost in
 * order, so each element sees the same additions whatever the blocking.
 * Owned by the training engineer. */
#include "train/tmatmul.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* A(m, k) = A[m*ars + k*acs] */
typedef void (*tmm_kernel)(int m0, int m1, int N, int K, const float *A, size_t ars, size_t acs, const float *B,
                           size_t ldb, float *C, size_t ldc, int acc);

static void kern_ref(int m0, int m1, int N, int K, const float *A, size_t ars, size_t acs, const float *B, size_t ldb,
                     float *C, size_t ldc, int acc) {
    for (int m = m0; m < m1; m++) {
        float *c = C + (size_t)m * ldc;
        if (!acc) memset(c, 0, (size_t)N * sizeof(float));
        for (int k = 0; k < K; k++) {
            const float a = A[(size_t)m * ars + (size_t)k * acs];
            const float *b = B + (size_t)k * ldb;
            for (int j = 0; j < N; j++) c[j] = __builtin_fmaf(a, b[j], c[j]);
        }
    }
}

#if defined(__x86_64__)
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define T256 __attribute__((target("avx2,fma")))

T512 static void kern_avx512(int m0, int m1, int N, int K, const float *A, size_t ars, size_t acs, const float *B,
                             size_t ldb, float *C, size_t ldc, int acc) {
    for (int j0 = 0; j0 < N; j0 += 32) {
        const int nj = N - j0 < 32 ? N - j0 : 32;
        const __mmask16 k0 = nj >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nj) - 1);
        const __mmask16 k1 = nj >= 32 ? (__mmask16)0xFFFF : nj > 16 ? (__mmask16)((1u << (nj - 16)) - 1) : 0;
        int m = m0;
        for (; m + 4 <= m1; m += 4) {
            __m512 c00, c01, c10, c11, c20, c21, c30, c31;
            float *cp = C + (size_t)m * ldc + j0;
            if (acc) {
                c00 = _mm512_maskz_loadu_ps(k0, cp), c01 = _mm512_maskz_loadu_ps(k1, cp + 16);
                c10 = _mm512_maskz_loadu_ps(k0, cp + ldc), c11 = _mm512_maskz_loadu_ps(k1, cp + ldc + 16);
                c20 = _mm512_maskz_loadu_ps(k0, cp + 2 * ldc), c21 = _mm512_maskz_loadu_ps(k1, cp + 2 * ldc + 16);
                c30 = _mm512_maskz_loadu_ps(k0, cp + 3 * ldc), c31 = _mm512_maskz_loadu_ps(k1, cp + 3 * ldc + 16);
            } else {
                c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = _mm512_setzero_ps();
            }
            const float *a0 = A + (size_t)m * ars, *a1 = a0 + ars, *a2 = a1 + ars, *a3 = a2 + ars;
            const float *bp = B + j0;
            for (int k = 0; k < K; k++) {
                const __m512 b0 = _mm512_maskz_loadu_ps(k0, bp), b1 = _mm512_maskz_loadu_ps(k1, bp + 16);
                const size_t ko = (size_t)k * acs;
                __m512 x = _mm512_set1_ps(a0[ko]);
                c00 = _mm512_fmadd_ps(x, b0, c00), c01 = _mm512_fmadd_ps(x, b1, c01);
                x = _mm512_set1_ps(a1[ko]);
                c10 = _mm512_fmadd_ps(x, b0, c10), c11 = _mm512_fmadd_ps(x, b1, c11);
                x = _mm512_set1_ps(a2[ko]);
                c20 = _mm512_fmadd_ps(x, b0, c20), c21 = _mm512_fmadd_ps(x, b1, c21);
                x = _mm512_set1_ps(a3[ko]);
                c30 = _mm512_fmadd_ps(x, b0, c30), c31 = _mm512_fmadd_ps(x, b1, c31);
                bp += ldb;
            }
            _mm512_mask_storeu_ps(cp, k0, c00), _mm512_mask_storeu_ps(cp + 16, k1, c01);
            _mm512_mask_storeu_ps(cp + ldc, k0, c10), _mm512_mask_storeu_ps(cp + ldc + 16, k1, c11);
            _mm512_mask_storeu_ps(cp + 2 * ldc, k0, c20), _mm512_mask_storeu_ps(cp + 2 * ldc + 16, k1, c21);
            _mm512_mask_storeu_ps(cp + 3 * ldc, k0, c30), _mm512_mask_storeu_ps(cp + 3 * ldc + 16, k1, c31);
        }
        for (; m < m1; m++) {
            float *cp = C + (size_t)m * ldc + j0;
            __m512 c0 = acc ? _mm512_maskz_loadu_ps(k0, cp) : _mm512_setzero_ps();
            __m512 c1 = acc ? _mm512_maskz_loadu_ps(k1, cp + 16) : _mm512_setzero_ps();
            const float *a0 = A + (size_t)m * ars;
            const float *bp = B + j0;
            for (int k = 0; k < K; k++) {
                const __m512 x = _mm512_set1_ps(a0[(size_t)k * acs]);
                c0 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(k0, bp), c0);
                c1 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(k1, bp + 16), c1);
                bp += ldb;
            }
            _mm512_mask_storeu_ps(cp, k0, c0), _mm512_mask_storeu_ps(cp + 16, k1, c1);
        }
    }
}

T256 static void kern_avx2(int m0, int m1, int N, int K, const float *A, size_t ars, size_t acs, const float *B,
                           size_t ldb, float *C, size_t ldc, int acc) {
    int j0 = 0;
    for (; j0 + 16 <= N; j0 += 16) {
        for (int m = m0; m < m1; m += 2) {
            const int two = m + 1 < m1;
            float *cp = C + (size_t)m * ldc + j0;
            __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00;
            if (acc) {
                c00 = _mm256_loadu_ps(cp), c01 = _mm256_loadu_ps(cp + 8);
                if (two) c10 = _mm256_loadu_ps(cp + ldc), c11 = _mm256_loadu_ps(cp + ldc + 8);
            }
            const float *a0 = A + (size_t)m * ars, *a1 = two ? a0 + ars : a0;
            const float *bp = B + j0;
            for (int k = 0; k < K; k++) {
                const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
                const size_t ko = (size_t)k * acs;
                __m256 x = _mm256_set1_ps(a0[ko]);
                c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01);
                x = _mm256_set1_ps(a1[ko]);
                c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11);
                bp += ldb;
            }
            _mm256_storeu_ps(cp, c00), _mm256_storeu_ps(cp + 8, c01);
            if (two) _mm256_storeu_ps(cp + ldc, c10), _mm256_storeu_ps(cp + ldc + 8, c11);
        }
    }
    if (j0 < N) { /* column tail: scalar with fma, the same additions */
        for (int m = m0; m < m1; m++) {
            float *c = C + (size_t)m * ldc;
            if (!acc)
                for (int j = j0; j < N; j++) c[j] = 0;
            for (int k = 0; k < K; k++) {
                const float a = A[(size_t)m * ars + (size_t)k * acs];
                const float *b = B + (size_t)k * ldb;
                for (int j = j0; j < N; j++) c[j] = __builtin_fmaf(a, b[j], c[j]);
            }
        }
    }
}
#endif

static tmm_kernel g_kern;
static const char *g_name;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

int ds3_tmm_set(const char *name) {
    if (!strcmp(name, "ref")) { g_kern = kern_ref; g_name = "ref"; return 0; }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!strcmp(name, "avx512") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
        g_kern = kern_avx512; g_name = "avx512"; return 0;
    }
    if (!strcmp(name, "avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        g_kern = kern_avx2; g_name = "avx2"; return 0;
    }
#endif
    return -1;
}

static void tmm_init(void) {
    const char *env = getenv("DS3_TKERNELS");
    if (env && !ds3_tmm_set(env)) return;
    if (!ds3_tmm_set("avx512") || !ds3_tmm_set("avx2")) return;
    ds3_tmm_set("ref");
}

const char *ds3_tmm_kernels(void) {
    pthread_once(&g_once, tmm_init);
    return g_name;
}

void ds3_tmm_rows(const ds3_tmm_job *j, int m0, int m1) {
    pthread_once(&g_once, tmm_init);
    if (m1 <= m0) return;
    switch (j->op) {
    case DS3_TMM_NT: {
        ds3_mat w = {DS3_DT_F32, j->N, j->K, j->B, NULL};
        if (j->M > 0) ds3_kern->matmul(&w, m0, m1, j->A, j->lda, j->M, j->C + m0, j->ldc);
        break;
    }
    case DS3_TMM_NN: g_kern(m0, m1, j->N, j->K, j->A, j->lda, 1, j->B, j->ldb, j->C, j->ldc, j->acc); break;
    case DS3_TMM_TN: g_kern(m0, m1, j->N, j->K, j->A, 1, j->lda, j->B, j->ldb, j->C, j->ldc, j->acc); break;
    }
}

/* ---- the parallel pass ---- */
typedef struct { int job, r0, r1; } tmm_chunk;
typedef struct {
    const ds3_tmm_job *jobs;
    const tmm_chunk *ch;
    int n;
} tmm_task;

static void tmm_worker(void *arg, int ith, int nth) {
    const tmm_task *t = arg;
    for (int i = ith; i < t->n; i += nth) ds3_tmm_rows(&t->jobs[t->ch[i].job], t->ch[i].r0, t->ch[i].r1);
}

static int job_rows(const ds3_tmm_job *j) { return j->op == DS3_TMM_NT ? j->N : j->M; }

void ds3_tmm(ds3_pool *pool, const ds3_tmm_job *jobs, int n) {
    ds3_kernels_init();
    const int nth = pool ? ds3_pool_size(pool) : 1;
    if (nth <= 1) {
        for (int i = 0; i < n; i++) ds3_tmm_rows(&jobs[i], 0, job_rows(&jobs[i]));
        return;
    }
    /* Work estimate: rows * N * K (NT: rows * M * K); ~4 chunks per thread over all jobs. */
    double total = 0;
    for (int i = 0; i < n; i++) {
        const ds3_tmm_job *j = &jobs[i];
        total += (double)j->M * j->N * j->K;
    }
    const double per = total / (4.0 * nth) + 1;
    enum { CAP = 2048 };
    tmm_chunk ch[CAP];
    int nc = 0;
    for (int i = 0; i < n; i++) {
        const ds3_tmm_job *j = &jobs[i];
        const int rows = job_rows(j);
        if (rows <= 0 || j->M <= 0 || j->N <= 0) continue;
        const double row_cost = (double)j->M * j->N * j->K / rows + 1;
        int step = (int)(per / row_cost);
        step = (step + 15) & ~15;
        if (step < 16) step = 16;
        for (int r = 0; r < rows; r += step) {
            if (nc == CAP) {
                tmm_task t = {jobs, ch, nc};
                ds3_pool_run(pool, tmm_worker, &t);
                nc = 0;
            }
            ch[nc++] = (tmm_chunk){i, r, r + step < rows ? r + step : rows};
        }
    }
    if (nc) {
        tmm_task t = {jobs, ch, nc};
        ds3_pool_run(pool, tmm_worker, &t);
    }
}
