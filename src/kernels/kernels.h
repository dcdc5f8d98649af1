/* kernels.h -- the hot loops of ds3, one implementation per instruction set.
 *
 * Every kernel set (ref = plain scalar C, avx2, avx512) fills the same table. One set is chosen
 * once at startup (ds3_kernels_init: the best the CPU supports, or DS3_KERNELS=ref|avx2|avx512).
 * The scalar set is the reference twin: tests compare every SIMD kernel against it.
 *
 * Weights are row-major [rows, cols] matrices W (PyTorch's [out_features, in_features]) in their
 * stored dtype; nothing is expanded in memory. FP8 (e4m3fn) weights carry F32 block scales
 * `scale` of shape (ceil(rows/128), ceil(cols/128)): W[r][c] = e4m3(q[r][c]) * scale[r/128][c/128].
 */
#ifndef DS3_KERNELS_H
#define DS3_KERNELS_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

typedef enum {
    DS3_DT_F32 = 0,
    DS3_DT_BF16 = 1,
    DS3_DT_F16 = 2,
    DS3_DT_F8E4M3 = 3,  /* with F32 128x128 block scales */
    DS3_DT_I32 = 4,     /* only for non-weight tensors read by tools */
    /* GGML block-quantised types (GGUF), handled by the ds3_qkern tables (src/kernels/quant*.c) */
    DS3_DT_Q8_0 = 5,
    DS3_DT_Q4_0 = 6,
    DS3_DT_Q4_K = 7,
    DS3_DT_Q5_K = 8,
    DS3_DT_Q6_K = 9,
    DS3_DT_Q2_K = 10,
    DS3_DT_Q3_K = 11,
    /* Q8_0 repacked at load for the AVX-512 VNNI kernels (16 rows interleaved; quant.h) */
    DS3_DT_Q8_0X16 = 12,
    DS3_DT_Q4_KX16 = 13, /* Q4_K likewise */
    DS3_DT_COUNT
} ds3_dtype;

#define DS3_DT_IS_QUANT(t) ((t) >= DS3_DT_Q8_0 && (t) < DS3_DT_COUNT)

const char *ds3_dtype_name(ds3_dtype t);
size_t ds3_dtype_size(ds3_dtype t);  /* bytes per element */

#define DS3_FP8_BLOCK 128

/* A weight matrix view: what the kernels read. Immutable; data points into the mapped file. */
typedef struct ds3_mat {
    ds3_dtype dtype;
    int64_t rows, cols;   /* (rows, cols) = (out_features, in_features) */
    const void *data;     /* rows*cols elements, row-major */
    const float *scale;   /* FP8 only: (ceil(rows/128), ceil(cols/128)) */
} ds3_mat;

typedef struct ds3_kernels {
    const char *name;
    /* y[t*ldy + (r - r0)] = sum_k x[t*ldx + k] * W[r][k]   for t in [0,T), r in [r0, r1).
     * r0, r1 are absolute row indices of W (FP8 scales are looked up by absolute row). */
    void (*matmul)(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T,
                   float *y, size_t ldy);
    /* dst[c - c0] = W[r][c] for c in [c0, c1), dequantized to f32. */
    void (*dequant_row)(const ds3_mat *w, int64_t r, int64_t c0, int64_t c1, float *dst);
    /* y[j*ldy + (c - c0)] = sum_{r in [r0, r1)} x[j*ldx + (r - r0)] * W[r][c]   for j in [0, nj),
     * c in [c0, c1): vectors times a block of W (W^T x; the absorbed attention's W_UK^T q and p C).
     * Each output is one f32 sum in r order starting from 0 (fma in the SIMD sets), whatever nj
     * or the column range. NULL: ds3_vecmat_generic (dequant_row + axpy of the same set). */
    void (*vecmat)(const ds3_mat *w, int64_t r0, int64_t r1, int64_t c0, int64_t c1, const float *x, size_t ldx,
                   int nj, float *y, size_t ldy);
    float (*dot)(int n, const float *a, const float *b);
    void (*axpy)(int n, float a, const float *x, float *y);  /* y += a * x */
    /* a[i] = silu(g[i]) * u[i] = g / (1 + exp(-g)) * u (SwiGLU); a may alias g. NULL: ref's. */
    void (*silu_mul)(size_t n, const float *g, const float *u, float *a);
    /* row = softmax(scale * row) over n >= 1 values, in place (attention probabilities); ms, when
     * not NULL, gets the maximum of scale * row and the sum of the exponentials the probabilities
     * were divided by (mla.c merges key blocks with them). NULL: ref's. */
    void (*softmax)(float *row, int n, float scale, float ms[2]);
} ds3_kernels;

/* Kernel sets for the block-quantised dtypes (same table layout; NULL matmul = not available).
 * ds3_kernels_init picks the one matching ds3_kern's ISA. */
extern const ds3_kernels *ds3_qkern;
extern const ds3_kernels ds3_qkernels_ref, ds3_qkernels_avx2, ds3_qkernels_avx512;

extern const ds3_kernels ds3_kernels_ref;
extern const ds3_kernels ds3_kernels_avx2;    /* may be absent on non-x86 builds */
extern const ds3_kernels ds3_kernels_avx512;

/* Per-thread kernel scratch (the quantized kernels' activations, FP8's split activations): one
 * slot per use, at least `bytes` (64-byte aligned), grown on demand and freed when the thread
 * exits (a pthread key destructor runs in the exiting thread while its TLS is still valid; pool
 * threads come and go with sessions, and LeakSanitizer checks this). NULL when out of memory.
 * The pointer stays valid until the same slot is asked for more bytes. */
enum { DS3_SCRATCH_QACT, DS3_SCRATCH_QZ, DS3_SCRATCH_FP8X, DS3_SCRATCH_N };
void *ds3_kern_scratch(int slot, size_t bytes);

/* The AVX-512 FP8 matmul's route: 1 (default) = bf16 dot products on CPUs with AVX512_BF16 and
 * VBMI (fp8_avx512.c: activations carried to 16 bits, ~2x fewer instructions), 0 = exact f32
 * dequantization (avx512.c). Chosen at startup (DS3_FP8_DOT=f32 gives 0); tests flip it. */
extern int ds3_fp8_bf16;
int ds3_fp8_bf16_ok(void);
int ds3_fp8_bf16_matmul(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                        size_t ldy);
int ds3_fp8_bf16_vecmat(const ds3_mat *w, int64_t r0, int64_t r1, int64_t c0, int64_t c1, const float *x, size_t ldx,
                        int nj, float *y, size_t ldy);

/* One one-token decode call shared by several threads (linear.c: a thread with no work left
 * helps the others finish their last pieces). The call's rows go as DS3_SHARE_STREAMS streams of
 * h rows (the decode layout); stream row i belongs to block i / DS3_SHARE_ROWS of nb. The owner
 * takes blocks from the front, helpers from the back, each block once: a block is claimed by
 * raising `taken` (no claims once it reaches nb), a helper's block is then nb - 1 - (back++).
 * Every row is computed as an unshared call computes it, so sharing changes no bits. */
#define DS3_SHARE_ROWS 16
#define DS3_SHARE_STREAMS 4
#define DS3_SHARE_PF 2048 /* bytes of each stream prefetched when a run of blocks starts */
typedef struct ds3_share {
    _Atomic int taken; /* blocks claimed, front and back together */
    _Atomic int back;  /* blocks claimed from the back */
    int nb;            /* blocks of the call (ds3_share_blocks) */
} ds3_share;
/* Blocks of rows [r0, r1) of w for T tokens when the call can be shared here, else 0 (it runs
 * whole, unshared): the AVX-512 set, one token, 64 rows or more, F32/BF16/F16/FP8. */
int ds3_share_blocks(const ds3_mat *w, int64_t r0, int64_t r1, int T);
/* Run the blocks of a shared call this thread can claim: as the owner (front; it also runs the
 * rows past the streams) or as a helper (back). sh->nb from ds3_share_blocks, > 0; the owner
 * calls ds3_share_blocks on its own thread first. */
void ds3_matmul_shared(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, float *y, ds3_share *sh, int helper);
/* For the kernel sets: the claim loop of a shared call over rows [r0, r1) of w, rowb bytes a
 * row (kernels.c). The rows go as DS3_SHARE_STREAMS streams of h = (r1 - r0) / DS3_SHARE_STREAMS
 * rows, sb = h rowb bytes apart. Calls rows(arg, i0, i1, sb, pf_end, pf_jump) for each block this
 * thread claims (stream rows [i0, i1)); the kernel's prefetch, at or past pf_end + q sb in stream
 * q, moves by pf_jump: the owner's go on at ds3_pf_next past the call (or just past it), a
 * helper's (blocks back to front) to the block before. Each run starts with a burst of
 * prefetches at its streams' first bytes. */
typedef void (*ds3_share_rows_fn)(void *arg, int64_t i0, int64_t i1, size_t sb, const char *pf_end, intptr_t pf_jump);
void ds3_share_run(ds3_share *sh, int helper, const ds3_mat *w, int64_t r0, int64_t r1, size_t rowb, ds3_share_rows_fn rows,
                   void *arg);
int ds3_fp8_bf16_matmul_shared(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, float *y, ds3_share *sh,
                               int helper);
int ds3_fp8_bf16_reserve(int64_t cols);

/* The kernel set in use. ds3_kernels_init() is idempotent and thread-safe; every entry point
 * that computes calls it. */
extern const ds3_kernels *ds3_kern;
void ds3_kernels_init(void);
/* Look up a set by name if this CPU can run it; NULL otherwise. */
const ds3_kernels *ds3_kernels_by_name(const char *name);
/* Force a set (tests); returns 0 or -1 if unsupported here. */
int ds3_kernels_set(const char *name);

/* Dtype-dispatching entry points: model code calls these, never a table directly. */
static inline void ds3_matmul(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                              size_t ldy) {
    (DS3_DT_IS_QUANT(w->dtype) ? ds3_qkern : ds3_kern)->matmul(w, r0, r1, x, ldx, T, y, ldy);
}
static inline void ds3_dequant_row(const ds3_mat *w, int64_t r, int64_t c0, int64_t c1, float *dst) {
    (DS3_DT_IS_QUANT(w->dtype) ? ds3_qkern : ds3_kern)->dequant_row(w, r, c0, c1, dst);
}

/* Where the calling thread's next matmul will read: the decode kernels (dense and quantized)
 * prefetch a fixed distance ahead, and past the end of their own rows they prefetch from here
 * instead, so the stream does not stall at every small matrix. A hint only; NULL clears it. */
extern _Thread_local const void *ds3_pf_next;
size_t ds3_row_bytes(ds3_dtype t, int64_t cols); /* quant.h */
static inline void ds3_matmul_prefetch_next(const ds3_mat *w, int64_t r0) {
    ds3_pf_next = w ? (const char *)w->data + (size_t)r0 * ds3_row_bytes(w->dtype, w->cols) : NULL;
}

void ds3_vecmat_generic(const ds3_mat *w, int64_t r0, int64_t r1, int64_t c0, int64_t c1, const float *x, size_t ldx,
                        int nj, float *y, size_t ldy);
static inline void ds3_vecmat(const ds3_mat *w, int64_t r0, int64_t r1, int64_t c0, int64_t c1, const float *x,
                              size_t ldx, int nj, float *y, size_t ldy) {
    const ds3_kernels *k = DS3_DT_IS_QUANT(w->dtype) ? ds3_qkern : ds3_kern;
    if (k->vecmat) k->vecmat(w, r0, r1, c0, c1, x, ldx, nj, y, ldy);
    else ds3_vecmat_generic(w, r0, r1, c0, c1, x, ldx, nj, y, ldy);
}

/* Scalar conversions shared by all sets. */
static inline float ds3_bf16_to_f32(uint16_t b) {
    union { uint32_t u; float f; } v = { (uint32_t)b << 16 };
    return v.f;
}
static inline uint16_t ds3_f32_to_bf16(float f) {  /* round to nearest even; NaN stays NaN */
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    v.u += 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)(v.u >> 16);
}
float ds3_f16_to_f32(uint16_t h);
uint16_t ds3_f32_to_f16(float f);
extern float ds3_fp8_table[256];  /* e4m3fn byte -> f32; filled by ds3_kernels_init */
float ds3_e4m3_to_f32(uint8_t v);
uint8_t ds3_f32_to_e4m3(float f);  /* round to nearest even, saturating at +-448 */

#endif
