/* fp8_avx512.c -- FP8 (e4m3fn, 128x128 block scales) matmul through bf16 dot products, for CPUs
 * with AVX512_BF16 and AVX512_VBMI (Cooper Lake has BF16 only; Sapphire Rapids, Zen 4, Zen 5).
 * avx512.c's FP8 matmul calls ds3_fp8_bf16_matmul when ds3_fp8_bf16_ok(); its own f32 path
 * (exact dequantization, one fma per 16 weights) is the fallback. Reference twin: ref.c, compared
 * in tests/test_kernels.c. Owned by the kernels engineer; measured numbers in docs/kernels.md.
 *
 * Why: the f32 route spends three instructions per 16 weights turning e4m3 into f32 before its
 * fma, and FP8 decode was instruction-bound at ~60% of the memory roofline. Here 64 weights take
 * two byte-table lookups (vpermt2b: every e4m3 magnitude, subnormals included, is a normal bf16,
 * so the conversion is exact), a sign merge and two unpacks, then vdpbf16ps.
 *
 * Numerics. Activations are split once per call into bf16 pairs x = hi + lo (hi = bf16(x) rounded
 * to nearest even, lo = bf16(x - hi)): x carries 16 significant bits, relative error <= 2^-17
 * (vdpbf16ps and the split flush f32 subnormals: |x| < 2^-126 counts as 0). Every product is exact
 * in f32. One output (row r, token t) is, in this order and nowhere else:
 *   acc = 0
 *   per 128-column scale block b:  a0 = a1 = 0
 *     per 64-column chunk c of b (A = its columns 16L+0..7, B = 16L+8..15, L = 0..3):
 *       a0 = dp(a0, W_A, hi_A); a0 = dp(a0, W_A, lo_A); a1 = dp(a1, W_B, hi_B); a1 = dp(a1, W_B, lo_B)
 *     acc = fma(a0 + a1, scale[r/128][b], acc)
 *   y = reduce_add(acc)
 * with zeros past the last column. Decode (rows streamed from memory) and prefill (a converted tile
 * reused by every token) both do exactly this, so results do not depend on T or on the row split.
 *
 * Ownership: the split activations live in a per-thread scratch slot of kernels.c
 * (ds3_kern_scratch: grown on demand, freed when the thread exits). */
#include "kernels.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BF16T __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx512bf16,avx2,fma,f16c")))
#define AI static inline __attribute__((always_inline)) BF16T
#define UNROLL _Pragma("GCC unroll 16")

/* split activations of one token: per 64-column chunk [hi_A, lo_A, hi_B, lo_B], 32 bf16 each */
#define XS_CHUNK 128 /* uint16 per chunk */

/* ---- e4m3 -> bf16 byte tables (indexed by the 7 magnitude bits) ---------------------------- */

static _Alignas(64) uint8_t tab[4][64]; /* hi bytes of codes 0-63, 64-127; lo bytes likewise */
static void tab_init(void) {
    for (int c = 0; c < 128; c++) {
        union { float f; uint32_t u; } v = {ds3_fp8_table[c]}; /* exact in bf16: <= 4 significant bits */
        tab[c >> 6][c & 63] = (uint8_t)(v.u >> 24);
        tab[2 + (c >> 6)][c & 63] = (uint8_t)(v.u >> 16);
    }
}

typedef struct {
    __m512i h0, h1, l0, l1;
} tabs;

AI tabs tabs_load(void) {
    tabs t = {_mm512_load_si512(tab[0]), _mm512_load_si512(tab[1]), _mm512_load_si512(tab[2]),
              _mm512_load_si512(tab[3])};
    return t;
}

/* 64 e4m3 bytes -> 32 bf16 of columns A (16L + 0..7) and 32 of columns B (16L + 8..15): the
 * in-lane byte unpacks pair each weight's low and high byte. vpermt2b ignores index bit 7 (the
 * sign), which the ternary logic puts back. */
AI void cvt64(__m512i q, const tabs *t, __m512i *A, __m512i *B) {
    __m512i h = _mm512_permutex2var_epi8(t->h0, q, t->h1);
    const __m512i l = _mm512_permutex2var_epi8(t->l0, q, t->l1);
    h = _mm512_ternarylogic_epi32(h, q, _mm512_set1_epi8((char)0x80), 0xF8); /* h | (q & 0x80) */
    *A = _mm512_unpacklo_epi8(l, h);
    *B = _mm512_unpackhi_epi8(l, h);
}

AI __m512i load64(const uint8_t *p, int64_t n) { /* n valid bytes (<= 64); the rest read as code 0 */
    return n >= 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8((__mmask64)((1ULL << n) - 1), p);
}

/* ---- activations ----------------------------------------------------------------------------- */

static pthread_once_t tab_once = PTHREAD_ONCE_INIT;

/* Per-thread buffer of at least n uint16 (64-byte aligned, kernels.c); NULL when out of memory. */
static uint16_t *xs_get(size_t n) {
    pthread_once(&tab_once, tab_init);
    return ds3_kern_scratch(DS3_SCRATCH_FP8X, n * sizeof(uint16_t));
}
/* uint16 of one token's split activations over K columns */
static size_t xs_token(int64_t K) { return (size_t)((K + 63) / 64) * XS_CHUNK; }

/* The n (<= 16 used; none when n <= 0) values at x as bf16 hi = bf16(x) and lo = bf16(x - hi). */
AI void split16(const float *x, int64_t n, __m256i *h, __m256i *l) {
    const __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : n > 0 ? (__mmask16)((1u << n) - 1) : 0;
    const __m512 v = _mm512_maskz_loadu_ps(m, x);
    *h = (__m256i)_mm512_cvtneps_pbh(v);
    const __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(*h), 16));
    *l = (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, hf));
}

/* One token's K activations -> nch chunks of XS_CHUNK at d (zeros past K). */
BF16T static void xs_split(const float *x, int64_t K, uint16_t *d) {
    /* word j of A is column 16 (j / 8) + j % 8 of the chunk; B is 8 further */
    static const uint16_t ia[32] = {0,  1,  2,  3,  4,  5,  6,  7,  16, 17, 18, 19, 20, 21, 22, 23,
                                    32, 33, 34, 35, 36, 37, 38, 39, 48, 49, 50, 51, 52, 53, 54, 55};
    const __m512i idxa = _mm512_loadu_si512(ia), idxb = _mm512_add_epi16(idxa, _mm512_set1_epi16(8));
    for (int64_t k = 0; k < K; k += 64, d += XS_CHUNK) {
        __m256i h[4], l[4];
        UNROLL
        for (int q = 0; q < 4; q++) split16(x + k + 16 * q, K - k - 16 * q, &h[q], &l[q]);
        const __m512i h01 = _mm512_inserti64x4(_mm512_castsi256_si512(h[0]), h[1], 1);
        const __m512i h23 = _mm512_inserti64x4(_mm512_castsi256_si512(h[2]), h[3], 1);
        const __m512i l01 = _mm512_inserti64x4(_mm512_castsi256_si512(l[0]), l[1], 1);
        const __m512i l23 = _mm512_inserti64x4(_mm512_castsi256_si512(l[2]), l[3], 1);
        _mm512_store_si512(d, _mm512_permutex2var_epi16(h01, idxa, h23));
        _mm512_store_si512(d + 32, _mm512_permutex2var_epi16(l01, idxa, l23));
        _mm512_store_si512(d + 64, _mm512_permutex2var_epi16(h01, idxb, h23));
        _mm512_store_si512(d + 96, _mm512_permutex2var_epi16(l01, idxb, l23));
    }
}

/* a0/a1 of one (row, token) over one chunk: W_A, W_B against the token's split chunk xc */
AI void dp_chunk(__m512 *a0, __m512 *a1, __m512i A, __m512i B, const uint16_t *xc) {
    *a0 = _mm512_dpbf16_ps(*a0, (__m512bh)A, (__m512bh)_mm512_load_si512(xc));
    *a0 = _mm512_dpbf16_ps(*a0, (__m512bh)A, (__m512bh)_mm512_load_si512(xc + 32));
    *a1 = _mm512_dpbf16_ps(*a1, (__m512bh)B, (__m512bh)_mm512_load_si512(xc + 64));
    *a1 = _mm512_dpbf16_ps(*a1, (__m512bh)B, (__m512bh)_mm512_load_si512(xc + 96));
}

/* The 64-column chunk at k of R rows (rp) against NT tokens' split activations (token stride
 * xst): converted once, then each token's four products into its block sums a0/a1. */
AI void rows_chunk(const int R, const int NT, const uint8_t *const *rp, int64_t k, int64_t K, const uint16_t *xs,
                   size_t xst, const tabs *tb, __m512 a0[][4], __m512 a1[][4]) {
    const uint16_t *xc = xs + (size_t)(k / 64) * XS_CHUNK;
    UNROLL
    for (int i = 0; i < R; i++) {
        __m512i A, B;
        cvt64(load64(rp[i] + k, K - k), tb, &A, &B);
        UNROLL
        for (int j = 0; j < NT; j++) dp_chunk(&a0[i][j], &a1[i][j], A, B, xc + (size_t)j * xst);
    }
}

/* ---- decode: R rows x NT tokens, weights streamed from memory once -------------------------- */

#define PF_DIST 16384 /* as avx512.c: rows are short, so prefetch far ahead */
#define DEC_STREAMS 4
#define DEC_STREAM_PF 2048
#ifndef DEC8_MAXT
#define DEC8_MAXT 4 /* above this many tokens, the tile path (measured crossover, docs/kernels.md) */
#endif

/* The prefetch stream of a decode call, as in avx512.c: addresses at or past a stream's end
 * continue `jump` bytes on, at the same stream of the thread's next matmul (ds3_pf_next). */
typedef struct {
    const char *end;
    intptr_t jump, step;
} pf_stream;

/* R rows r + i * gap (i < R) x one token of split activations xs. */
AI void dec_rows(const int R, const int PFD, const ds3_mat *w, int64_t r, int64_t gap, const uint16_t *xs, float *y,
                 pf_stream pf, const tabs *tb) {
    enum { NT = 1 };
    const size_t xst = 0, ldy = 0;
    const int64_t K = w->cols, nbc = (K + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK;
    const uint8_t *rp[4];
    const float *sc[4];
    __m512 acc[4][4];
    UNROLL
    for (int i = 0; i < R; i++) {
        rp[i] = (const uint8_t *)w->data + (size_t)(r + i * gap) * (size_t)K;
        sc[i] = w->scale + ((r + i * gap) / DS3_FP8_BLOCK) * nbc;
        UNROLL
        for (int j = 0; j < NT; j++) acc[i][j] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nbc; b++) {
        __m512 a0[4][4], a1[4][4];
        UNROLL
        for (int i = 0; i < R; i++)
            UNROLL
            for (int j = 0; j < NT; j++) a0[i][j] = a1[i][j] = _mm512_setzero_ps();
        const int64_t k1 = (b + 1) * DS3_FP8_BLOCK < K ? (b + 1) * DS3_FP8_BLOCK : K;
        for (int64_t k = b * DS3_FP8_BLOCK; k < k1; k += 64) {
            UNROLL
            for (int i = 0; i < R; i++) {
                const char *a = (const char *)rp[i] + k + PFD;
                _mm_prefetch(a >= pf.end + i * pf.step ? a + pf.jump : a, _MM_HINT_T0);
            }
            rows_chunk(R, NT, rp, k, K, xs, xst, tb, a0, a1);
        }
        UNROLL
        for (int i = 0; i < R; i++) {
            const __m512 s = _mm512_set1_ps(sc[i][b]);
            UNROLL
            for (int j = 0; j < NT; j++) acc[i][j] = _mm512_fmadd_ps(_mm512_add_ps(a0[i][j], a1[i][j]), s, acc[i][j]);
        }
    }
    UNROLL
    for (int i = 0; i < R; i++)
        UNROLL
        for (int j = 0; j < NT; j++) y[(size_t)j * ldy + (size_t)(i * gap)] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Rows [r0, r1), one token: four sequential streams of rows read side by side (avx512.c's
 * decode explains why), then 4 rows at a time, then single rows. */
AI void decode1(const ds3_mat *w, int64_t r0, int64_t r1, const uint16_t *xs, float *y, const tabs *tb) {
    const size_t rowb = (size_t)w->cols;
    const char *base = (const char *)w->data + (size_t)r0 * rowb;
    const size_t total = (size_t)(r1 - r0) * rowb;
    const char *next = ds3_pf_next ? (const char *)ds3_pf_next : base + total;
    pf_stream pf = {base + total, next - (base + total), 0};
    int64_t r = r0;
    if (r1 - r0 >= 16 * DEC_STREAMS) {
        const int64_t h = (r1 - r0) / DEC_STREAMS;
        const size_t sb = (size_t)h * rowb;
        const pf_stream pfs = {base + sb, next - (base + sb), (intptr_t)sb};
        for (int q = 0; q < DEC_STREAMS; q++)
            for (size_t off = 0; off < sb && off < DEC_STREAM_PF; off += 64) _mm_prefetch(base + q * sb + off, _MM_HINT_T0);
        for (int64_t i = 0; i < h; i++) dec_rows(DEC_STREAMS, DEC_STREAM_PF, w, r0 + i, h, xs, y + i, pfs, tb);
        r = r0 + DEC_STREAMS * h;
    } else {
        const size_t nb = total < PF_DIST ? total : PF_DIST;
        for (size_t off = 0; off < nb; off += 64) _mm_prefetch(base + off, _MM_HINT_T0);
    }
    for (; r + 4 <= r1; r += 4) dec_rows(4, PF_DIST, w, r, 1, xs, y + (r - r0), pf, tb);
    for (; r < r1; r++) dec_rows(1, PF_DIST, w, r, 1, xs, y + (r - r0), pf, tb);
}

/* A shared one-token call (kernels.h, ds3_share): decode1's four streams, their rows claimed in
 * blocks by ds3_share_run, each block's rows run here. */
typedef struct {
    const ds3_mat *w;
    int64_t r0, h;
    const uint16_t *xs;
    float *y;
    const tabs *tb;
} share_arg;
_Static_assert(DEC_STREAMS == DS3_SHARE_STREAMS && DEC_STREAM_PF == DS3_SHARE_PF, "shared calls use the decode layout");

BF16T static void share_rows(void *p, int64_t i0, int64_t i1, size_t sb, const char *pf_end, intptr_t pf_jump) {
    const share_arg *a = p;
    const pf_stream pfs = {pf_end, pf_jump, (intptr_t)sb};
    for (int64_t i = i0; i < i1; i++) dec_rows(DEC_STREAMS, DEC_STREAM_PF, a->w, a->r0 + i, a->h, a->xs, a->y + i, pfs, a->tb);
}

/* Two to four tokens (speculative verification). Streaming whole rows past every token re-read
 * the split activations (4 bytes a value: 48 KB for 3 tokens of 4096) from L2 for every row pair,
 * and a 4-row register block spills: both ran at the speed of one token per pass. Here rows go
 * in groups of KB_ROWS and columns in pieces of KB_COLS, so a piece's activations stay in L1;
 * 2 rows x NT tokens of block sums take at most 16 registers and the running sums wait in acc.
 * Each row's next piece is prefetched one piece ahead (the group's other rows are read between),
 * the last piece's prefetch lands on the next group's first. */
enum { KB_ROWS = 16, KB_COLS = 1024 };

AI void kb_rows(const int R, const int NT, const ds3_mat *w, int64_t r, int64_t kc, int64_t kn, const uint16_t *xs,
                size_t xst, __m512 *acc, pf_stream pf, const tabs *tb) {
    const int64_t K = w->cols, nbc = (K + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK;
    const uint8_t *rp[4];
    const float *sc[4];
    UNROLL
    for (int i = 0; i < R; i++) {
        rp[i] = (const uint8_t *)w->data + (size_t)(r + i) * (size_t)K;
        sc[i] = w->scale + ((r + i) / DS3_FP8_BLOCK) * nbc;
    }
    for (int64_t k0 = kc, b = kc / DS3_FP8_BLOCK; k0 < kc + kn; k0 += DS3_FP8_BLOCK, b++) {
        __m512 a0[4][4], a1[4][4];
        UNROLL
        for (int i = 0; i < R; i++)
            UNROLL
            for (int j = 0; j < NT; j++) a0[i][j] = a1[i][j] = _mm512_setzero_ps();
        const int64_t k1 = k0 + DS3_FP8_BLOCK < kc + kn ? k0 + DS3_FP8_BLOCK : kc + kn;
        for (int64_t k = k0; k < k1; k += 64) {
            UNROLL
            for (int i = 0; i < R; i++) {
                const char *a = (const char *)rp[i] + (k + KB_COLS < K ? k + KB_COLS : k + KB_COLS - K + (int64_t)KB_ROWS * K);
                _mm_prefetch(a >= pf.end ? a + pf.jump : a, _MM_HINT_T0);
            }
            rows_chunk(R, NT, rp, k, K, xs, xst, tb, a0, a1);
        }
        UNROLL
        for (int i = 0; i < R; i++) {
            const __m512 s = _mm512_set1_ps(sc[i][b]);
            UNROLL
            for (int j = 0; j < NT; j++)
                acc[i * NT + j] = _mm512_fmadd_ps(_mm512_add_ps(a0[i][j], a1[i][j]), s,
                                                  k0 == 0 ? _mm512_setzero_ps() : acc[i * NT + j]);
        }
    }
}

AI void decode_kb(const int NT, const ds3_mat *w, int64_t r0, int64_t r1, const uint16_t *xs, size_t xst, float *y,
                  size_t ldy, const tabs *tb) {
    _Alignas(64) __m512 acc[KB_ROWS * 4]; /* (row of the group, token) running sums */
    const int64_t K = w->cols;
    const char *end = (const char *)w->data + (size_t)r1 * (size_t)K;
    const pf_stream pf = {end, ds3_pf_next ? (const char *)ds3_pf_next - end : 0, 0};
    for (int64_t i = r0; i < r1 && i < r0 + KB_ROWS; i++)
        for (int64_t o = 0; o < K && o < KB_COLS; o += 64) _mm_prefetch((const char *)w->data + (size_t)i * (size_t)K + o, _MM_HINT_T0);
    for (int64_t rg = r0; rg < r1; rg += KB_ROWS) {
        const int rn = r1 - rg < KB_ROWS ? (int)(r1 - rg) : KB_ROWS;
        for (int64_t kc = 0; kc < K; kc += KB_COLS) {
            const int64_t kn = K - kc < KB_COLS ? K - kc : KB_COLS;
            int i = 0;
            if (NT == 2)
                for (; i + 4 <= rn; i += 4) kb_rows(4, NT, w, rg + i, kc, kn, xs, xst, acc + i * NT, pf, tb);
            if (NT < 4)
                for (; i + 2 <= rn; i += 2) kb_rows(2, NT, w, rg + i, kc, kn, xs, xst, acc + i * NT, pf, tb);
            for (; i < rn; i++) kb_rows(1, NT, w, rg + i, kc, kn, xs, xst, acc + i * NT, pf, tb);
        }
        for (int i = 0; i < rn; i++)
            for (int j = 0; j < NT; j++) y[(size_t)j * ldy + (size_t)(rg - r0 + i)] = _mm512_reduce_add_ps(acc[i * NT + j]);
    }
}

/* ---- prefill: a converted tile reused by every token, 4 rows x 2 tokens per micro-kernel ----- */

enum { RT = 16, KC = 1024, TG = 64, MR = 4, MT = 2, TLD = KC + 32 /* uint16 per tile row: not a 4 KB multiple */ };

/* Rows g..g+3 of the tile (wt; their scale rows sc) x NT tokens over the tile's columns [0, kn)
 * (whole scale blocks but the last). The running sums acc live in ab (one per row and token)
 * and are folded once per block: the block sums a0/a1 (16 registers), the 4 rows' weights (8)
 * and one token's activations (4) fill the register file, and each activation vector serves
 * 4 rows (2 rows x 3 tokens read twice the activation bytes from L2 per product: 89 against
 * 141 GFLOP/s, 4096x4096 at T=512 on one core). */
AI void micro(const int NT, const uint16_t *wt, const float *const *sc, int64_t b0, int64_t kn, const uint16_t *xs,
              size_t xst, int first, int last, __m512 *ab, float *y, size_t ldy, int nrow) {
    for (int64_t k0 = 0, b = b0; k0 < kn; k0 += DS3_FP8_BLOCK, b++) {
        __m512 a0[MR][MT], a1[MR][MT];
        UNROLL
        for (int i = 0; i < MR; i++)
            UNROLL
            for (int j = 0; j < NT; j++) a0[i][j] = a1[i][j] = _mm512_setzero_ps();
        const int64_t k1 = k0 + DS3_FP8_BLOCK < kn ? k0 + DS3_FP8_BLOCK : kn;
        for (int64_t k = k0; k < k1; k += 64) {
            __m512i W[MR][2];
            UNROLL
            for (int i = 0; i < MR; i++) {
                W[i][0] = _mm512_load_si512(wt + (size_t)i * TLD + k);
                W[i][1] = _mm512_load_si512(wt + (size_t)i * TLD + k + 32);
            }
            const uint16_t *xc = xs + (size_t)(k / 64) * XS_CHUNK;
            UNROLL
            for (int j = 0; j < NT; j++)
                UNROLL
                for (int i = 0; i < MR; i++) dp_chunk(&a0[i][j], &a1[i][j], W[i][0], W[i][1], xc + (size_t)j * xst);
        }
        const int fin = last && k1 == kn, init = first && k0 == 0;
        UNROLL
        for (int i = 0; i < MR; i++) {
            const __m512 s = _mm512_set1_ps(sc[i][b]);
            UNROLL
            for (int j = 0; j < NT; j++) {
                const __m512 acc = _mm512_fmadd_ps(_mm512_add_ps(a0[i][j], a1[i][j]), s,
                                                   init ? _mm512_setzero_ps() : ab[j * MR + i]);
                if (!fin) ab[j * MR + i] = acc;
                else if (i < nrow) y[(size_t)j * ldy + i] = _mm512_reduce_add_ps(acc);
            }
        }
    }
}

BF16T static void micro_n(int nt, const uint16_t *wt, const float *const *sc, int64_t b0, int64_t kn, const uint16_t *xs,
                          size_t xst, int first, int last, __m512 *ab, float *y, size_t ldy, int nrow) {
    if (nt == 1) micro(1, wt, sc, b0, kn, xs, xst, first, last, ab, y, ldy, nrow);
    else micro(MT, wt, sc, b0, kn, xs, xst, first, last, ab, y, ldy, nrow);
}

/* Row r's columns [kc, kc + kn) as bf16 A/B words at d (kn rounded up to 64, zeros past K). */
AI void tile_row(const uint8_t *row, int64_t K, int64_t kc, int64_t kn, uint16_t *d, const tabs *tb) {
    for (int64_t k = 0; k < kn; k += 64) {
        __m512i A, B;
        cvt64(load64(row + kc + k, K - kc - k), tb, &A, &B);
        _mm512_store_si512(d + k, A);
        _mm512_store_si512(d + k + 32, B);
    }
}

BF16T static void prefill(const ds3_mat *w, int64_t r0, int64_t r1, const uint16_t *xs, size_t xst, int T, float *y,
                          size_t ldy, const tabs *tb) {
    _Alignas(64) uint16_t wt[RT * TLD];     /* (RT, KC) converted tile */
    _Alignas(64) __m512 ab[RT / MR][TG * MR]; /* running sums per (row group, token, row) */
    const int64_t K = w->cols, nbc = (K + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK;
    for (int64_t rt = r0; rt < r1; rt += RT) {
        const int rn = r1 - rt < RT ? (int)(r1 - rt) : RT, rn4 = (rn + MR - 1) / MR * MR;
        for (int64_t kc = 0; kc < K; kc += KC) {
            const int64_t kn = K - kc < KC ? K - kc : KC, kn64 = (kn + 63) & ~(int64_t)63;
            for (int i = 0; i < rn; i++)
                tile_row((const uint8_t *)w->data + (size_t)(rt + i) * (size_t)K, K, kc, kn, wt + (size_t)i * TLD, tb);
            for (int i = rn; i < rn4; i++) memset(wt + (size_t)i * TLD, 0, (size_t)kn64 * sizeof(uint16_t));
            const int first = kc == 0, last = kc + kn == K;
            for (int g = 0; g < rn; g += MR) {
                const int nrow = rn - g < MR ? rn - g : MR;
                const float *sc[MR];
                for (int i = 0; i < MR; i++) sc[i] = w->scale + ((rt + g + (i < nrow ? i : 0)) / DS3_FP8_BLOCK) * nbc;
                for (int t = 0; t < T; t += MT) {
                    const int nt = T - t < MT ? T - t : MT;
                    micro_n(nt, wt + (size_t)g * TLD, sc, kc / DS3_FP8_BLOCK, kn, xs + (size_t)t * xst + (size_t)(kc / 64) * XS_CHUNK,
                            xst, first, last, &ab[g / MR][t * MR], y + (size_t)t * ldy + (size_t)(rt - r0 + g), ldy, nrow);
                }
            }
        }
    }
}

/* ---- entry points ---------------------------------------------------------------------------- */

int ds3_fp8_bf16_ok(void) {
    static _Atomic int v = -1; /* pool threads may ask first together: each computes the same answer */
    int r = atomic_load_explicit(&v, memory_order_relaxed);
    if (r < 0) {
        __builtin_cpu_init();
        r = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vbmi") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
        atomic_store_explicit(&v, r, memory_order_relaxed);
    }
    return r;
}

/* y = x W^T for rows [r0, r1); 0, or -1 when the activation buffer could not be had (the caller
 * then takes its own path). */
BF16T int ds3_fp8_bf16_matmul(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                              size_t ldy) {
    const int64_t K = w->cols;
    const size_t xst = xs_token(K);
    const int tg = T <= DEC8_MAXT ? T : TG; /* tokens split at a time */
    uint16_t *xs = xs_get((size_t)tg * xst);
    if (!xs) return -1;
    const tabs tb = tabs_load();
    for (int t0 = 0; t0 < T; t0 += tg) {
        const int tn = T - t0 < tg ? T - t0 : tg;
        for (int t = 0; t < tn; t++) xs_split(x + (size_t)(t0 + t) * ldx, K, xs + (size_t)t * xst);
        float *yt = y + (size_t)t0 * ldy;
        if (T > DEC8_MAXT) {
            prefill(w, r0, r1, xs, xst, tn, yt, ldy, &tb);
            continue;
        }
        switch (tn) {
        case 1: decode1(w, r0, r1, xs, yt, &tb); break;
        case 2: decode_kb(2, w, r0, r1, xs, xst, yt, ldy, &tb); break;
        case 3: decode_kb(3, w, r0, r1, xs, xst, yt, ldy, &tb); break;
        default: decode_kb(4, w, r0, r1, xs, xst, yt, ldy, &tb); break;
        }
    }
    return 0;
}

/* avx512.c's ds3_matmul_shared for FP8 on this route; -1 when the thread's activation buffer
 * cannot be had (avx512.c's ds3_share_blocks asks for it on the owner's thread first, so then
 * only a helper, which leaves the blocks to the owner). */
BF16T int ds3_fp8_bf16_matmul_shared(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, float *y, ds3_share *sh,
                                     int helper) {
    uint16_t *xs = xs_get(xs_token(w->cols));
    if (!xs) return -1;
    const tabs tb = tabs_load();
    xs_split(x, w->cols, xs);
    const int64_t h = (r1 - r0) / DEC_STREAMS;
    share_arg a = {w, r0, h, xs, y, &tb};
    ds3_share_run(sh, helper, w, r0, r1, (size_t)w->cols, share_rows, &a);
    if (!helper) decode1(w, r0 + DEC_STREAMS * h, r1, xs, y + DEC_STREAMS * h, &tb); /* the rows past the streams */
    return 0;
}

/* The split-activation buffer of the calling thread exists (or could not be had: 0). */
int ds3_fp8_bf16_reserve(int64_t cols) { return xs_get(xs_token(cols)) != NULL; }

/* ---- vecmat: y_j = x_j W[r0:r1, c0:c1] (the absorbed attention's W_UK^T q) -------------------
 * Each output column is one lane: rows go in pairs (r, r + 1) from the start of each 128-row
 * scale block, a pair's two bf16 weights of a column interleaved in one dword against the pair's
 * split activations: a = dp(dp(a, P, hi pair), P, lo pair) in pair order; at the end of the
 * block y = fma(a, scale, y) (y = 0 before the first block). The weight conversion is the
 * matmul's; the f32 route (avx512.c) spent a scale lookup, a conversion and a multiply on every
 * 16 weights of every row, ~6 cycles per 16 weights in the absorb (latency bound). Each output
 * depends only on its column, so nj, the column range and its split do not change any bits. */
#define VM_COLS 256 /* columns per pass: 16 accumulators */
#define VM_PF_ROWS 16 /* rows prefetched ahead; past r1 at ds3_pf_next (the caller's next head) */

BF16T int ds3_fp8_bf16_vecmat(const ds3_mat *w, int64_t r0, int64_t r1, int64_t c0, int64_t c1, const float *x, size_t ldx,
                              int nj, float *y, size_t ldy) {
    pthread_once(&tab_once, tab_init);
    const tabs tb = tabs_load();
    const int64_t K = w->cols, nbc = (K + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK;
    const uint8_t *data = w->data;
    _Alignas(64) uint16_t xh[DS3_FP8_BLOCK + 16], xl[DS3_FP8_BLOCK + 16]; /* one block's rows, zero padded */
    for (int j = 0; j < nj; j++) {
        const float *xj = x + (size_t)j * ldx;
        float *yj = y + (size_t)j * ldy;
        for (int64_t c = c0; c < c1; c += VM_COLS) {
            const int nc = c1 - c < VM_COLS ? (int)(c1 - c) : VM_COLS, nq = (nc + 63) / 64;
            for (int64_t rs = r0, re; rs < r1; rs = re) {
                re = (rs / DS3_FP8_BLOCK + 1) * DS3_FP8_BLOCK < r1 ? (rs / DS3_FP8_BLOCK + 1) * DS3_FP8_BLOCK : r1;
                const int nr = (int)(re - rs);
                memset(xh, 0, sizeof xh);
                memset(xl, 0, sizeof xl);
                for (int i = 0; i < nr; i += 16) {
                    __m256i h, l;
                    split16(xj + (rs - r0) + i, nr - i, &h, &l);
                    _mm256_storeu_si256((__m256i *)(xh + i), h);
                    _mm256_storeu_si256((__m256i *)(xl + i), l);
                }
                __m512 a[4][4];
                UNROLL
                for (int q = 0; q < 4; q++)
                    UNROLL
                    for (int k = 0; k < 4; k++) a[q][k] = _mm512_setzero_ps();
                for (int i = 0; i < nr; i += 2) {
                    const uint8_t *p0 = data + (size_t)(rs + i) * (size_t)K + c, *p1 = p0 + K;
                    { /* the pair VM_PF_ROWS rows on; past r1, the caller's next rows (the absorb's
                       * next head: +0.7-0.8% decode against prefetching each head whole before it) */
                        const int64_t rq = rs + i + VM_PF_ROWS;
                        const char *q = rq < r1 ? (const char *)data + (size_t)rq * (size_t)K + c
                                        : ds3_pf_next ? (const char *)ds3_pf_next + (size_t)(rq - r1) * (size_t)K + (c - c0) : NULL;
                        if (q)
                            for (int o = 0; o < nc; o += 64) {
                                _mm_prefetch(q + o, _MM_HINT_T0);
                                _mm_prefetch(q + K + o, _MM_HINT_T0);
                            }
                    }
                    const int two = i + 1 < nr;
                    uint32_t ph, pl;
                    memcpy(&ph, xh + i, 4);
                    memcpy(&pl, xl + i, 4);
                    const __m512bh XH = (__m512bh)_mm512_set1_epi32((int)ph), XL = (__m512bh)_mm512_set1_epi32((int)pl);
                    UNROLL
                    for (int q = 0; q < 4; q++) {
                        if (q >= nq) break;
                        const int64_t n = nc - 64 * q;
                        __m512i A0, B0, A1 = _mm512_setzero_si512(), B1 = A1;
                        cvt64(load64(p0 + 64 * q, n), &tb, &A0, &B0);
                        if (two) cvt64(load64(p1 + 64 * q, n), &tb, &A1, &B1);
                        const __m512i P[4] = {_mm512_unpacklo_epi16(A0, A1), _mm512_unpackhi_epi16(A0, A1),
                                              _mm512_unpacklo_epi16(B0, B1), _mm512_unpackhi_epi16(B0, B1)};
                        UNROLL
                        for (int k = 0; k < 4; k++) {
                            a[q][k] = _mm512_dpbf16_ps(a[q][k], (__m512bh)P[k], XH);
                            a[q][k] = _mm512_dpbf16_ps(a[q][k], (__m512bh)P[k], XL);
                        }
                    }
                }
                /* lanes -> columns: a[q][k] lane 4L + i is column 64q + 16L + 4k + i */
                const float *srow = w->scale + (rs / DS3_FP8_BLOCK) * nbc;
                UNROLL
                for (int q = 0; q < 4; q++) {
                    if (q >= nq) break;
                    const __m512i t0 = _mm512_castps_si512(a[q][0]), t1 = _mm512_castps_si512(a[q][1]);
                    const __m512i t2 = _mm512_castps_si512(a[q][2]), t3 = _mm512_castps_si512(a[q][3]);
                    const __m512i u0 = _mm512_shuffle_i32x4(t0, t1, 0x44), u1 = _mm512_shuffle_i32x4(t2, t3, 0x44);
                    const __m512i u2 = _mm512_shuffle_i32x4(t0, t1, 0xEE), u3 = _mm512_shuffle_i32x4(t2, t3, 0xEE);
                    const __m512i o[4] = {_mm512_shuffle_i32x4(u0, u1, 0x88), _mm512_shuffle_i32x4(u0, u1, 0xDD),
                                          _mm512_shuffle_i32x4(u2, u3, 0x88), _mm512_shuffle_i32x4(u2, u3, 0xDD)};
                    UNROLL
                    for (int k = 0; k < 4; k++) {
                        const int64_t cc = c + 64 * q + 16 * k, n = c1 - cc;
                        if (n <= 0) break;
                        const __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
                        /* the 16 columns' scales: one block, or two when they straddle a boundary */
                        const int64_t b0 = cc / DS3_FP8_BLOCK, bnd = (b0 + 1) * DS3_FP8_BLOCK - cc;
                        __m512 sv = _mm512_set1_ps(srow[b0]);
                        if (bnd < 16 && b0 + 1 < nbc)
                            sv = _mm512_mask_blend_ps((__mmask16)(0xFFFFu << bnd), sv, _mm512_set1_ps(srow[b0 + 1]));
                        float *yo = yj + (cc - c0);
                        const __m512 prev = rs == r0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, yo);
                        _mm512_mask_storeu_ps(yo, m, _mm512_fmadd_ps(_mm512_castsi512_ps(o[k]), sv, prev));
                    }
                }
            }
        }
    }
    return 0;
}
