/* bench_quant.c -- micro-benchmark of the block-quantised matmul kernels (ds3_qkern), one thread,
 * timed with the thread's CPU time so that other jobs on the machine disturb it little.
 *
 * Build and run (after `make`):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/bench_quant.c build/libds3.a -lpthread -lm \
 *      -o build/bench_quant && build/bench_quant [l2|dram|all] [types] [seconds]
 * l2: the shapes of the DeepSeek-V3-shaped 1.2B benchmark model, small enough to stay in L2
 * (decode T=1,2 in G weights/s; T=64 in G multiply-adds/s). dram: T=1 over 256 MB of copies of
 * the matrix (GB/s of weight bytes). types: comma list, e.g. q8_0,q4_k (default q8_0,q4_k; q8_0x16 / q4_kx16 are repacked as at load). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "util/common.h"

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint32_t seed = 12345;
static float frand(void) {
    seed = seed * 1664525u + 1013904223u;
    return (float)(seed >> 8) * (1.0f / 8388608.0f) - 1.0f;
}

static void *make_q(ds3_dtype dt, int64_t rows, int64_t cols) {
    const size_t rb = ds3_row_bytes(dt, cols);
    uint8_t *q = ds3_alloc_aligned(rb * (size_t)rows + 4096);
    float *x = malloc((size_t)cols * sizeof *x);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) x[c] = frand();
        ds3_q_quantize_row(dt, x, cols, q + (size_t)r * rb);
    }
    free(x);
    return q;
}

static ds3_dtype parse_type(const char *s) {
    for (int t = DS3_DT_Q8_0; t < DS3_DT_COUNT; t++) {
        char lc[16];
        const char *n = ds3_dtype_name((ds3_dtype)t);
        size_t i = 0;
        for (; n[i] && i < 15; i++) lc[i] = (char)(n[i] >= 'A' && n[i] <= 'Z' ? n[i] + 32 : n[i]);
        lc[i] = 0;
        if (!strcmp(lc, s)) return (ds3_dtype)t;
    }
    return DS3_DT_COUNT;
}

/* run matmul over all rows until `secs` of CPU time; returns seconds per call */
static double time_calls(const ds3_mat *ms, int nm, const float *x, int T, float *y, double secs) {
    ds3_qkern->matmul(&ms[0], 0, ms[0].rows, x, (size_t)ms[0].cols, T, y, (size_t)ms[0].rows); /* warm */
    long calls = 0;
    const double t0 = cpu_s();
    double t;
    do {
        for (int i = 0; i < 8; i++, calls++) {
            const ds3_mat *m = &ms[calls % nm];
            ds3_qkern->matmul(m, 0, m->rows, x, (size_t)m->cols, T, y, (size_t)m->rows);
        }
    } while ((t = cpu_s() - t0) < secs);
    return t / (double)calls;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "all";
    const char *types = argc > 2 ? argv[2] : "q8_0,q4_k";
    const double secs = argc > 3 ? atof(argv[3]) : 0.3;
    ds3_kernels_init();
    printf("bench_quant: quantised kernels %s, 1 thread, CPU time\n", ds3_qkern->name);
    static const int64_t shapes[][2] = {{448, 1024}, {1024, 448}, {1536, 384}, {1024, 1024}, {2048, 1024}, {256, 64}, {64, 256}};
    const int Ts[] = {1, 2, 4, 64};
    float *x = malloc(64 * 4096 * sizeof *x), *y = malloc(64 * 32768 * sizeof *y);
    for (int i = 0; i < 64 * 4096; i++) x[i] = frand() * (i % 13 == 0 ? 4.0f : 1.0f);
    char tl[256];
    snprintf(tl, sizeof tl, "%s", types);
    for (char *sv, *tn = strtok_r(tl, ",", &sv); tn; tn = strtok_r(NULL, ",", &sv)) {
        const ds3_dtype dt = parse_type(tn);
        if (dt == DS3_DT_COUNT) { fprintf(stderr, "unknown type %s\n", tn); continue; }
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t R = shapes[si][0], K = shapes[si][1];
            const int x16 = dt == DS3_DT_Q8_0X16 || dt == DS3_DT_Q4_KX16;
            if (K % ds3_q_blck(dt) || (x16 && R % 16)) continue;
            ds3_mat m = {dt, R, K, make_q(dt == DS3_DT_Q8_0X16 ? DS3_DT_Q8_0 : dt == DS3_DT_Q4_KX16 ? DS3_DT_Q4_K : dt, R, K), NULL};
            if (dt == DS3_DT_Q8_0X16 && ds3_q8_0x16_repack((void *)m.data, R, K)) return 1;
            if (dt == DS3_DT_Q4_KX16 && ds3_q4_kx16_repack((void *)m.data, R, K)) return 1;
            const double mb = (double)R * (double)ds3_row_bytes(dt, K);
            if (!strcmp(mode, "l2") || !strcmp(mode, "all")) {
                printf("%-5s %5lldx%-5lld L2  ", ds3_dtype_name(dt), (long long)R, (long long)K);
                for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
                    const int T = Ts[ti];
                    const double s = time_calls(&m, 1, x, T, y, secs);
                    printf(" T=%-2d %6.1f us %5.1f Gw/s", T, s * 1e6, (double)R * K * T / s * 1e-9);
                }
                printf("\n");
                fflush(stdout);
            }
            if (!strcmp(mode, "dram") || !strcmp(mode, "all")) {
                const int nm = (int)(256e6 / mb) + 1;
                ds3_mat *ms = malloc((size_t)nm * sizeof *ms);
                uint8_t *big = ds3_alloc_aligned((size_t)(mb * nm) + 4096);
                for (int i = 0; i < nm; i++) {
                    memcpy(big + (size_t)(mb * i), m.data, (size_t)mb);
                    ms[i] = m;
                    ms[i].data = big + (size_t)(mb * i);
                }
                printf("%-5s %5lldx%-5lld DRAM", ds3_dtype_name(dt), (long long)R, (long long)K);
                for (int T = 1; T <= 2; T++) {
                    const double s = time_calls(ms, nm, x, T, y, secs * 2);
                    printf(" T=%d %6.1f us %5.1f GB/s", T, s * 1e6, mb / s * 1e-9);
                }
                printf("\n");
                fflush(stdout);
                free(ms);
                free(big);
            }
            free((void *)m.data);
        }
    }
    free(x);
    free(y);
    return 0;
}
