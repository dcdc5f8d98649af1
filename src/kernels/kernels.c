/* kernels.c -- dtype helpers, scalar conversions and the once-at-startup choice of kernel set.
 * The chosen set is a process-wide immutable pointer (ds3_kern). */
#include "kernels.h"
#include "kernels/quant.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const ds3_kernels *ds3_kern = &ds3_kernels_ref;
const ds3_kernels *ds3_qkern = &ds3_qkernels_ref;
_Thread_local const void *ds3_pf_next;
float ds3_fp8_table[256];
int ds3_fp8_bf16 = 1;

const char *ds3_dtype_name(ds3_dtype t) {
    static const char *names[] = {"F32", "BF16", "F16", "F8_E4M3", "I32", "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K",
                                  "Q2_K", "Q3_K", "Q8_0x16", "Q4_Kx16"};
    return (unsigned)t < DS3_DT_COUNT ? names[t] : "?";
}

/* Bytes per element; 0 for block-quantised types (use their block sizes). */
size_t ds3_dtype_size(ds3_dtype t) {
    static const size_t sz[] = {4, 2, 2, 1, 4};
    return (unsigned)t <= DS3_DT_I32 ? sz[t] : 0;
}

float ds3_e4m3_to_f32(uint8_t v) {
    int e = (v >> 3) & 0xF, m = v & 7;
    if (e == 0xF && m == 7) return NAN;
    float r = e ? ldexpf(1.0f + m / 8.0f, e - 7) : ldexpf((float)m, -9);
    return (v & 0x80) ? -r : r;
}

uint8_t ds3_f32_to_e4m3(float f) {
    union { float f; uint32_t u; } v = {f};
    uint8_t sign = (v.u >> 24) & 0x80;
    uint32_t a = v.u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return 0x7F;                     /* NaN */
    if (a >= 0x43E00000u) return sign | 0x7E;             /* >= 448: saturate (no inf in e4m3fn) */
    if (a < 0x3C800000u) {                                /* < 2^-6: subnormal, steps of 2^-9 */
        union { uint32_t u; float f; } x = {a};
        float q = x.f * 512.0f;                           /* exact: power-of-two scale */
        uint32_t m = (uint32_t)nearbyintf(q);             /* round half to even (default mode) */
        return sign | (uint8_t)m;                         /* m == 8 is the smallest normal, code 0x08 */
    }
    int e = (int)(a >> 23) - 127;                         /* -6 .. 8 */
    uint32_t mant = a & 0x7FFFFF, r = mant >> 20, rem = mant & 0xFFFFF;
    if (rem > 0x80000u || (rem == 0x80000u && (r & 1))) r++;
    if (r == 8) {
        r = 0;
        e++;
    }
    if (e > 8 || (e == 8 && r == 7)) return sign | 0x7E;  /* 0x7F is NaN: saturate at 448 */
    return sign | (uint8_t)(((e + 7) << 3) | r);
}

float ds3_f16_to_f32(uint16_t h) {
    uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    union { uint32_t u; float f; } v;
    if (e == 0) {
        float r = ldexpf((float)m, -24);
        return s ? -r : r;
    } else if (e == 31) {
        v.u = s | 0x7F800000u | (m << 13);
    } else {
        v.u = s | ((e + 112) << 23) | (m << 13);
    }
    return v.f;
}

uint16_t ds3_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = {f};
    uint32_t s = (v.u >> 16) & 0x8000;
    float a = fabsf(f);
    if (isnan(f)) return (uint16_t)(s | 0x7E00);
    if (a >= 65520.0f) return (uint16_t)(s | 0x7C00);
    if (a < 6.103515625e-05f) { /* subnormal: multiples of 2^-24, round to nearest even */
        float q = a * 16777216.0f;
        float r = nearbyintf(q);
        return (uint16_t)(s | (uint16_t)r);
    }
    uint32_t u = v.u & 0x7FFFFFFFu;
    u += 0xFFFu + ((u >> 13) & 1u);
    uint32_t e = (u >> 23) - 112, m = (u >> 13) & 0x3FF;
    return (uint16_t)(s | (e << 10) | m);
}

static _Thread_local void *scratch_buf[DS3_SCRATCH_N];
static _Thread_local size_t scratch_cap[DS3_SCRATCH_N];
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static void scratch_release(void *unused) {
    (void)unused;
    for (int i = 0; i < DS3_SCRATCH_N; i++) {
        free(scratch_buf[i]);
        scratch_buf[i] = NULL;
        scratch_cap[i] = 0;
    }
}
static void scratch_key_init(void) { (void)pthread_key_create(&scratch_key, scratch_release); }

void *ds3_kern_scratch(int slot, size_t bytes) {
    assert(slot >= 0 && slot < DS3_SCRATCH_N); /* a caller's bug, not bad input */
    if (bytes <= scratch_cap[slot]) return scratch_buf[slot];
    free(scratch_buf[slot]);
    scratch_buf[slot] = NULL;
    scratch_cap[slot] = 0;
    void *p;
    if (posix_memalign(&p, 64, bytes)) return NULL;
    scratch_buf[slot] = p;
    scratch_cap[slot] = bytes;
    pthread_once(&scratch_once, scratch_key_init);
    if (!pthread_getspecific(scratch_key)) (void)pthread_setspecific(scratch_key, (void *)1);
    return p;
}

#if defined(__x86_64__) && !defined(DS3_NO_SIMD)
static int cpu_has(const char *name) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (!strcmp(name, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!strcmp(name, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
#endif
    return !strcmp(name, "ref");
}
#endif

const ds3_kernels *ds3_kernels_by_name(const char *name) {
    if (!strcmp(name, "ref")) return &ds3_kernels_ref;
#if defined(__x86_64__) && !defined(DS3_NO_SIMD)
    if (!strcmp(name, "avx2") && cpu_has("avx2") && ds3_kernels_avx2.matmul) return &ds3_kernels_avx2;
    if (!strcmp(name, "avx512") && cpu_has("avx512") && ds3_kernels_avx512.matmul)
        return &ds3_kernels_avx512;
#endif
    return NULL;
}

/* The quantised set with the same ISA as k (falling back to ref when that one is absent). */
static const ds3_kernels *ds3_qkern_for(const ds3_kernels *k) {
#if defined(__x86_64__) && !defined(DS3_NO_SIMD)
    if (k == &ds3_kernels_avx512 && ds3_qkernels_avx512.matmul) return &ds3_qkernels_avx512;
    if (k == &ds3_kernels_avx2 && ds3_qkernels_avx2.matmul) return &ds3_qkernels_avx2;
#endif
    return &ds3_qkernels_ref;
}

void ds3_share_run(ds3_share *sh, int helper, const ds3_mat *w, int64_t r0, int64_t r1, size_t rowb, ds3_share_rows_fn rows,
                   void *arg) {
    const int64_t h = (r1 - r0) / DS3_SHARE_STREAMS;
    const size_t sb = (size_t)h * rowb;
    const char *base = (const char *)w->data + (size_t)r0 * rowb;
    const char *next = ds3_pf_next ? (const char *)ds3_pf_next : base + (size_t)(r1 - r0) * rowb;
    const int nb = sh->nb;
    if (!helper) {
        for (int q = 0; q < DS3_SHARE_STREAMS; q++)
            for (size_t off = 0; off < sb && off < DS3_SHARE_PF; off += 64) __builtin_prefetch(base + q * sb + off, 0, 3);
        for (int64_t k = 0; atomic_fetch_add_explicit(&sh->taken, 1, memory_order_relaxed) < nb; k++) {
            const int64_t i0 = k * DS3_SHARE_ROWS, i1 = i0 + DS3_SHARE_ROWS < h ? i0 + DS3_SHARE_ROWS : h;
            rows(arg, i0, i1, sb, base + sb, next - (base + sb));
        }
        return;
    }
    while (atomic_fetch_add_explicit(&sh->taken, 1, memory_order_relaxed) < nb) {
        const int64_t k = nb - 1 - atomic_fetch_add_explicit(&sh->back, 1, memory_order_relaxed);
        const int64_t i0 = k * DS3_SHARE_ROWS, i1 = i0 + DS3_SHARE_ROWS < h ? i0 + DS3_SHARE_ROWS : h;
        const char *b0 = base + (size_t)i0 * rowb;
        for (int q = 0; q < DS3_SHARE_STREAMS; q++)
            for (size_t off = 0; off < (size_t)(i1 - i0) * rowb && off < DS3_SHARE_PF; off += 64)
                __builtin_prefetch(b0 + q * sb + off, 0, 3);
        rows(arg, i0, i1, sb, base + (size_t)i1 * rowb, -(intptr_t)((size_t)(i1 - i0 + DS3_SHARE_ROWS) * rowb));
    }
}

#if !defined(__x86_64__) || defined(DS3_NO_SIMD)
/* Builds without the SIMD files (other ISAs, NO_SIMD=1): nothing regrouped, FP8 on the f32 path. */
int ds3_x16_wanted(void) { return 0; }
int ds3_fp8_bf16_ok(void) { return 0; }
int ds3_share_blocks(const ds3_mat *w, int64_t r0, int64_t r1, int T) {
    (void)w, (void)r0, (void)r1, (void)T;
    return 0;
}
void ds3_matmul_shared(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, float *y, ds3_share *sh, int helper) {
    (void)w, (void)r0, (void)r1, (void)x, (void)y, (void)sh, (void)helper;
    assert(0 && "no shared calls without the SIMD files");
}
#endif

static void init_once(void) {
    for (int i = 0; i < 256; i++) ds3_fp8_table[i] = ds3_e4m3_to_f32((uint8_t)i);
    const char *fd = getenv("DS3_FP8_DOT");
    if (fd && !strcmp(fd, "f32")) ds3_fp8_bf16 = 0;
    const char *env = getenv("DS3_KERNELS");
    const ds3_kernels *k = NULL;
    if (env && *env) {
        k = ds3_kernels_by_name(env);
        if (!k) fprintf(stderr, "ds3: DS3_KERNELS=%s is not available on this CPU; using the best set\n", env);
    }
    if (!k) k = ds3_kernels_by_name("avx512");
    if (!k) k = ds3_kernels_by_name("avx2");
    if (!k) k = &ds3_kernels_ref;
    ds3_kern = k;
    ds3_qkern = ds3_qkern_for(k);
}

void ds3_kernels_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_once);
}

int ds3_kernels_set(const char *name) {
    ds3_kernels_init();
    const ds3_kernels *k = ds3_kernels_by_name(name);
    if (!k) return -1;
    ds3_kern = k;
    ds3_qkern = ds3_qkern_for(k);
    return 0;
}

const char *ds3_kernels_name(void) {
    ds3_kernels_init();
    return ds3_kern->name;
}

/* The generic (and reference) vecmat: one dequantized row span at a time, added with the
 * current set's axpy, so every output is the same r-ordered sum as the set's SIMD vecmat. */
void ds3_vecmat_generic(const ds3_mat *w, int64_t r0, int64_t r1, int64_t c0, int64_t c1, const float *x, size_t ldx,
                        int nj, float *y, size_t ldy) {
    enum { CB = 512 };
    float buf[CB];
    for (int64_t cb = c0; cb < c1; cb += CB) {
        const int n = (int)(c1 - cb < CB ? c1 - cb : CB);
        for (int j = 0; j < nj; j++) memset(y + (size_t)j * ldy + (cb - c0), 0, (size_t)n * sizeof(float));
        for (int64_t r = r0; r < r1; r++) {
            ds3_dequant_row(w, r, cb, cb + n, buf);
            for (int j = 0; j < nj; j++) ds3_kern->axpy(n, x[(size_t)j * ldx + (size_t)(r - r0)], buf, y + (size_t)j * ldy + (cb - c0));
        }
    }
}
