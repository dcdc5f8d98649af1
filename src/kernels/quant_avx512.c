/* quant_avx512.c -- AVX-512 (VNNI + VBMI) matmul for the GGML block-quantised dtypes Q8_0, Q4_0,
 * Q4_K, Q5_K, Q6_K (Q2_K/Q3_K and dequant_row run the scalar twin in quant_ref.c).
 *
 * Like llama.cpp, each matmul call first rounds the activations x (T, cols) to 8 bits: per block
 * of 32 one f32 scale d = max|x|/127 and int8 q = round(x/d) (ds3_q8_quantize_act's numbers),
 * plus per-block sums. Weight bytes are unpacked to unsigned 8-bit values (Q8_0: w + 128;
 * Q4/Q5/Q6: the stored unsigned codes) and multiplied with vpdpbusd (64 products per
 * instruction); offsets (Q8_0's 128, Q4_0's 8, Q6_K's 32) and K-quant mins come back through
 * the activation block sums.
 * Q8_0x16, Q4_Kx16 (Q8_0 / Q4_K regrouped 16 rows at a time at load, quant.h): one row per
 * 32-bit lane, no horizontal sums (x16_matmul, k16_matmul; the fastest path, see docs/kernels.md).
 * Q8_0, Q4_0, Q4_K as stored (the "Z" path): per group of 16 blocks the 8 vpdpbusd results are summed in
 * integers to one lane per block (tree8), so block scales, activation scales and offsets cost one
 * vector operation per group. Q5_K, Q6_K: one f32 accumulator term per pair of blocks.
 * Tiles of 4 (or 1) rows x up to 4 tokens: the weights stream once per 4 tokens, with a software
 * prefetch PF_DIST bytes ahead in every row (plus a burst over the first PF_DIST bytes of a call).
 * Error vs the f32 twin: the activation rounding only, |err| <= sum_k |w_k| * d_k / 2 per output
 * (tests/test_quant.c checks a bound of that form). Results do not depend on how rows are split
 * or on T (each output's arithmetic is the same in every tile shape).
 * CPUs without AVX-512 VNNI + VBMI use the AVX2 set (ds3_qkernels_avx2) instead. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c")))
#define AI static inline __attribute__((always_inline)) VNNI
#define UNROLL _Pragma("GCC unroll 16")
#ifndef RMAX8_T
#define RMAX8_T 2 /* up to this T, tiles of 8 rows: twice the rows in flight, measured 2x from DRAM at T=1 */
#endif
#ifndef ZMIN_K
#define ZMIN_K 128 /* Q8_0/Q4_0 rows shorter than this (attn_k_b: 64) take the pair path: a Z group would be mostly padding */
#endif
#ifndef PF_DIST
#define PF_DIST 16384 /* software prefetch distance, bytes ahead of the row being read */
#endif
#ifndef PF_BURST
#define PF_BURST PF_DIST /* prefetched at the start of a call (4-16 KB measured the same in full decode) */
#endif
/* the Z path (8-row tiles of 1 KB rows at one token) prefetches half as far: Q8_0 decode +1-2%,
 * Q4_K neutral (session 5, per-token interleaved A/B; 24 KB: -2%, 4 KB: -30%) */
#ifndef ZPF_DIST
#define ZPF_DIST 8192
#endif

/* The prefetch stream of the current call: addresses at or past the end of its rows continue
 * at ds3_pf_next (the thread's next matmul), as in the dense decode kernels. Set per call. */
static _Thread_local const char *qpf_end;
static _Thread_local intptr_t qpf_jump;
AI const char *pf_at(const char *a) { return a >= qpf_end ? a + qpf_jump : a; }

/* ---- activations ---- */
typedef struct {
    int8_t *q;      /* (T, K) */
    float *dav;     /* (T, K/32*8): each block's d, 8 times (one 8-lane half of a pair vector) */
    float *dsv;     /* (T, K/32*8): kofs * d * sum(q) / 8, 8 times */
    float *ds32;    /* (T, K/32): d * sum(q) */
    float *ds16;    /* (T, K/16): d * sum of each half-block (16) */
    size_t K;
} qact;

static int qact_alloc(qact *a, int T, int64_t K) {
    const size_t nb = (size_t)K / 32;
    const size_t bytes = (size_t)T * ((size_t)K + 64 + nb * 8 * 4 * 2 + nb * 4 + nb * 2 * 4 + 256);
    char *p = ds3_kern_scratch(DS3_SCRATCH_QACT, bytes); /* per-thread, kernels.c */
    if (!p) return -1;
    a->K = (size_t)K;
    a->q = (int8_t *)p;
    p += ((size_t)T * K + 64 + 63) & ~(size_t)63;
    a->dav = (float *)p;
    p += (size_t)T * nb * 8 * 4;
    a->dsv = (float *)p;
    p += (size_t)T * nb * 8 * 4;
    a->ds32 = (float *)p;
    p += (size_t)T * nb * 4;
    a->ds16 = (float *)p;
    return 0;
}

/* One block of 32 activations rounded to 8 bits, llama.cpp's rule: d = max|x| / 127, q = round(x / d)
 * (q written to dst, 32 bytes); returns d and the two 16-lane halves of q as int32. */
AI float act_block_q8(const float *x, int8_t *dst, __m512i *i0, __m512i *i1) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
    const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    *i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
    *i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
    _mm_storeu_si128((__m128i *)dst, _mm512_cvtsepi32_epi8(*i0));
    _mm_storeu_si128((__m128i *)(dst + 16), _mm512_cvtsepi32_epi8(*i1));
    return d;
}

/* One token's row: quantise K floats. kofs multiplies the block sum in dsv (Q8_0: 128, Q4_0: 8). */
VNNI static void quant_act_row(const float *x, int64_t K, float kofs, int8_t *q, float *dav, float *dsv, float *ds32,
                               float *ds16) {
    for (int64_t b = 0; b < K / 32; b++) {
        __m512i i0, i1;
        const float d = act_block_q8(x + 32 * b, q + 32 * b, &i0, &i1);
        const int s0 = _mm512_reduce_add_epi32(i0), s1 = _mm512_reduce_add_epi32(i1);
        _mm256_storeu_ps(dav + 8 * b, _mm256_set1_ps(d));
        _mm256_storeu_ps(dsv + 8 * b, _mm256_set1_ps(kofs * d * (float)(s0 + s1) * 0.125f));
        ds32[b] = d * (float)(s0 + s1);
        ds16[2 * b] = d * (float)s0;
        ds16[2 * b + 1] = d * (float)s1;
    }
}

static int qact_fill(qact *a, const float *x, size_t ldx, int T, int64_t K, float kofs) {
    if (qact_alloc(a, T, K)) return -1;
    const size_t nb = (size_t)K / 32;
    for (int t = 0; t < T; t++)
        quant_act_row(x + (size_t)t * ldx, K, kofs, a->q + (size_t)t * K, a->dav + (size_t)t * nb * 8,
                      a->dsv + (size_t)t * nb * 8, a->ds32 + (size_t)t * nb, a->ds16 + (size_t)t * nb * 2);
    return 0;
}

/* ---- per-token view used by the tiles ---- */
typedef struct {
    const int8_t *q;
    const float *dav, *dsv, *ds32, *ds16;
} tokv;

AI tokv tok_at(const qact *a, int t) {
    const size_t K = a->K, nb = K / 32;
    tokv v = {a->q + (size_t)t * K, a->dav + (size_t)t * nb * 8, a->dsv + (size_t)t * nb * 8, a->ds32 + (size_t)t * nb,
              a->ds16 + (size_t)t * nb * 2};
    return v;
}

AI __m512i dpbusd(__m512i w, __m512i a) { return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, a); }

/* ---- Q8_0 / Q4_0 rows shorter than ZMIN_K (attn_k_b: 64 columns): pairs of
 * 32-blocks, acc += (cvt(I) * DA - DSk) * DW, no padding to 512 ---- */

/* weights of blocks 2p, 2p+1 (half = 1: only block 2p, upper lanes zero) */
AI void w_q8_0(const uint8_t *row, int64_t p, int half, __m512i *W, __m512 *DW) {
    const ds3_blk_q8_0 *b0 = (const ds3_blk_q8_0 *)row + 2 * p;
    const __m512i x80 = _mm512_set1_epi8((char)0x80);
    if (!half) {
        const ds3_blk_q8_0 *b1 = b0 + 1;
        __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b0->qs)),
                                       _mm256_loadu_si256((const __m256i *)b1->qs), 1);
        *W = _mm512_xor_si512(w, x80);
        *DW = _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16((short)b1->d), _mm_set1_epi16((short)b0->d)));
    } else {
        *W = _mm512_zextsi256_si512(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b0->qs), _mm256_set1_epi8((char)0x80)));
        *DW = _mm512_zextps256_ps512(_mm256_cvtph_ps(_mm_set1_epi16((short)b0->d)));
    }
}

AI void w_q4_0(const uint8_t *row, int64_t p, int half, __m512i *W, __m512 *DW) {
    const ds3_blk_q4_0 *b0 = (const ds3_blk_q4_0 *)row + 2 * p;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m128i q0 = _mm_loadu_si128((const __m128i *)b0->qs);
    __m128i q1 = half ? _mm_setzero_si128() : _mm_loadu_si128((const __m128i *)(b0 + 1)->qs);
    __m256i Q = _mm256_set_m128i(q1, q0);
    __m256i lo = _mm256_and_si256(Q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(Q, 4), m4);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); /* [lo0 lo1 hi0 hi1] */
    z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));           /* [lo0 hi0 lo1 hi1] */
    if (half) {
        *W = _mm512_zextsi256_si512(_mm512_castsi512_si256(z));
        *DW = _mm512_zextps256_ps512(_mm256_cvtph_ps(_mm_set1_epi16((short)b0->d)));
    } else {
        *W = z;
        *DW = _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16((short)(b0 + 1)->d), _mm_set1_epi16((short)b0->d)));
    }
}

#define TILE_0(NAME, WFN)                                                                                           \
    AI void NAME(const uint8_t *const *rows, const int R, const tokv *tk, const int C, int64_t nb, float *out,      \
                 size_t ldo, int pf) {                                                                              \
        __m512 acc[4][4];                                                                                           \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();      \
        const int64_t np = nb / 2;                                                                                  \
        for (int64_t p = 0; p <= np; p++) {                                                                         \
            const int half = p == np;                                                                               \
            if (half && !(nb & 1)) break;                                                                           \
            __m512i W[4];                                                                                           \
            __m512 DW[4];                                                                                           \
            UNROLL for (int r = 0; r < R; r++) {                                                                    \
                if (pf) _mm_prefetch(pf_at((const char *)rows[r] + PF_DIST + 68 * p), _MM_HINT_T0);                 \
                WFN(rows[r], p, half, &W[r], &DW[r]);                                                               \
            }                                                                                                       \
            UNROLL for (int c = 0; c < C; c++) {                                                                    \
                const __mmask64 m = half ? 0xFFFFFFFFull : ~0ull;                                                   \
                const __mmask16 mf = half ? 0x00FF : 0xFFFF;                                                        \
                const __m512i A = _mm512_maskz_loadu_epi8(m, tk[c].q + 64 * p);                                     \
                const __m512 DA = _mm512_maskz_loadu_ps(mf, tk[c].dav + 16 * p);                                    \
                const __m512 DS = _mm512_maskz_loadu_ps(mf, tk[c].dsv + 16 * p);                                    \
                UNROLL for (int r = 0; r < R; r++) {                                                                \
                    const __m512 t = _mm512_fmsub_ps(_mm512_cvtepi32_ps(dpbusd(W[r], A)), DA, DS);                  \
                    acc[r][c] = _mm512_fmadd_ps(t, DW[r], acc[r][c]);                                               \
                }                                                                                                   \
            }                                                                                                       \
        }                                                                                                           \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) out[(size_t)c * ldo + r] =            \
            _mm512_reduce_add_ps(acc[r][c]);                                                                        \
    }

TILE_0(tile_q8_0, w_q8_0)
TILE_0(tile_q4_0, w_q4_0)

/* ---- K-quants: super-blocks of 256 = 4 pairs of 32-blocks ----
 * acc += cvt(I) * DA * SCp per pair; per super-block acc -= corr(row) * corr(token):
 *   Q4_K/Q5_K: MIN (8 lanes: dmin*m_j) . ds32 (8 sub-block sums);  Q6_K: 32*d*sc (16) . ds16 (16). */

static const int32_t perm_pair[4][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5}, {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7}};
static const int32_t perm_q6[4][16] = {
    {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}, {4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7},
    {8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11}, {12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15}};

/* Q4_K/Q5_K 6-bit scales and mins of a super-block as f32 vectors (8 lanes, upper 8 zero). */
AI void k4_scales(const uint8_t *s12, float d, float dmin, __m512 *SC, __m512 *MIN) {
    uint32_t u[3];
    memcpy(u, s12, 12);
    const uint32_t km1 = 0x3f3f3f3f, km2 = 0x0f0f0f0f, km3 = 0x03030303;
    uint32_t sc[2], mn[2];
    sc[0] = u[0] & km1;
    mn[0] = u[1] & km1;
    sc[1] = (u[2] & km2) | (((u[0] >> 6) & km3) << 4);
    mn[1] = ((u[2] >> 4) & km2) | (((u[1] >> 6) & km3) << 4);
    __m128i vs = _mm_set_epi32(0, 0, (int)sc[1], (int)sc[0]), vm = _mm_set_epi32(0, 0, (int)mn[1], (int)mn[0]);
    *SC = _mm512_zextps256_ps512(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(vs)), _mm256_set1_ps(d)));
    *MIN = _mm512_zextps256_ps512(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(vm)), _mm256_set1_ps(dmin)));
}

AI __m512i w_q5_k(const ds3_blk_q5_k *b, int j, __m256i qh) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const __m256i Q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * j));
    __m256i lo = _mm256_and_si256(Q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(Q, 4), m4);
    const __m256i h0 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j)), one);
    const __m256i h1 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j + 1)), one);
    lo = _mm256_or_si256(lo, _mm256_slli_epi16(h0, 4));
    hi = _mm256_or_si256(hi, _mm256_slli_epi16(h1, 4));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
/* Q6_K pair P: elements 64P..64P+63 = chunks (2 per pair) of half h = P/2 */
AI __m512i w_q6_k(const ds3_blk_q6_k *b, int P) {
    const int h = P >> 1, k = P & 1;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
    const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    __m256i a, c;
    if (!k) { /* chunks 0 and 1: low nibbles, qh bits 0-1 and 2-3 */
        a = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
        c = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
    } else { /* chunks 2 and 3: high nibbles, qh bits 4-5 and 6-7 */
        a = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
        c = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
    }
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), c, 1);
}

/* type: 1 = Q5_K, 2 = Q6_K */
AI void tile_k(const int type, const uint8_t *const *rows, const int R, const tokv *tk, const int C, int64_t nsb, float *out,
               size_t ldo, int pf) {
    __m512 acc[4][4];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    const size_t bs = type == 1 ? sizeof(ds3_blk_q5_k) : sizeof(ds3_blk_q6_k);
    for (int64_t s = 0; s < nsb; s++) {
        __m512 SC[4], CR[4];
        __m256i QH[4];
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *bp = rows[r] + (size_t)s * bs;
            if (pf)
                for (size_t o = 0; o < bs; o += 64) _mm_prefetch(pf_at((const char *)bp + PF_DIST + o), _MM_HINT_T0);
            if (type == 1) {
                const ds3_blk_q5_k *b = (const ds3_blk_q5_k *)bp;
                k4_scales(b->scales, _cvtsh_ss(b->d), _cvtsh_ss(b->dmin), &SC[r], &CR[r]);
                QH[r] = _mm256_loadu_si256((const __m256i *)b->qh);
            } else {
                const ds3_blk_q6_k *b = (const ds3_blk_q6_k *)bp;
                SC[r] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b->scales))),
                                      _mm512_set1_ps(_cvtsh_ss(b->d)));
                CR[r] = _mm512_mul_ps(SC[r], _mm512_set1_ps(32.0f));
            }
        }
        UNROLL for (int c = 0; c < C; c++) {
            const __m512 T = type == 2 ? _mm512_loadu_ps(tk[c].ds16 + 16 * s)
                                       : _mm512_zextps256_ps512(_mm256_loadu_ps(tk[c].ds32 + 8 * s));
            UNROLL for (int r = 0; r < R; r++) acc[r][c] = _mm512_fnmadd_ps(CR[r], T, acc[r][c]);
        }
        for (int j = 0; j < 4; j++) {
            __m512i W[4];
            __m512 S[4];
            const __m512i perm = _mm512_loadu_si512(type == 2 ? perm_q6[j] : perm_pair[j]);
            UNROLL for (int r = 0; r < R; r++) {
                const uint8_t *bp = rows[r] + (size_t)s * bs;
                W[r] = type == 1 ? w_q5_k((const ds3_blk_q5_k *)bp, j, QH[r]) : w_q6_k((const ds3_blk_q6_k *)bp, j);
                S[r] = _mm512_permutexvar_ps(perm, SC[r]);
            }
            const int64_t p = s * 4 + j;
            UNROLL for (int c = 0; c < C; c++) {
                const __m512i A = _mm512_loadu_si512(tk[c].q + 64 * p);
                const __m512 DA = _mm512_loadu_ps(tk[c].dav + 16 * p);
                UNROLL for (int r = 0; r < R; r++) {
                    const __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(dpbusd(W[r], A)), DA);
                    acc[r][c] = _mm512_fmadd_ps(t, S[r], acc[r][c]);
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) out[(size_t)c * ldo + r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* ---- the "Z" path (Q8_0, Q4_0, Q4_K): groups of 512 values, block sums reduced in integers ----
 * A group is 16 blocks of 32 = 8 vectors of 64 bytes (Q8_0/Q4_0: 8 pairs of blocks; Q4_K: two
 * super-blocks). vpdpbusd of one vector gives 16 int32 lanes, 0-7 from its first block and 8-15
 * from its second; tree8 adds the 8 vectors' lanes of each block into one int32 per block (exact),
 * in the lane order zblk below. The float work (block scales, activation scales, offsets, mins)
 * is then one vector per group instead of one per pair of blocks. */

/* lane l of a tree8 result holds block zblk(l) of the group (blocks in activation storage order) */
static inline int zblk(int l) { return (l & 8) + 2 * (l & 3) + ((l >> 2) & 1); }
static inline int zlane(int i) { return (i & 8) + 4 * (i & 1) + ((i & 6) >> 1); } /* inverse of zblk */
/* Q4_K: the activation blocks of a super-block are stored as sub-blocks 0 2 1 3 4 6 5 7 (the order
 * in which the weight nibbles unpack, see wq4k_grp); an involution */
static const int kperm[8] = {0, 2, 1, 3, 4, 6, 5, 7};

typedef struct {
    int8_t *q;     /* (T, Kp) int8, Kp = cols rounded up to 512, zero padded; Q4_K: kperm order */
    float *da;     /* (T, Kp/32) per block d, in zblk lane order per group of 16 */
    float *ds;     /* (T, Kp/32) kofs * d * sum(q), same order (Q4_K: kofs 1, for the mins) */
    size_t Kp;
} zact;

typedef struct {
    const int8_t *q;
    const float *da, *ds;
} ztok;

VNNI static void zact_row(const float *x, int64_t K, size_t Kp, int kq, float kofs, int8_t *q, float *da, float *ds) {
    const int64_t nb = K / 32;
    memset(q + K, 0, Kp - (size_t)K);
    for (size_t b = (size_t)nb & ~(size_t)15; b < Kp / 32; b++) da[b] = ds[b] = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const int64_t m = kq ? (b & ~(int64_t)7) + kperm[b & 7] : b; /* storage block */
        __m512i i0, i1;
        const float d = act_block_q8(x + 32 * b, q + 32 * m, &i0, &i1);
        const int s = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
        const int64_t z = (m & ~(int64_t)15) + zlane((int)(m & 15));
        da[z] = d;
        ds[z] = kofs * d * (float)s;
    }
}

static int zact_fill(zact *a, const float *x, size_t ldx, int T, int64_t K, int kq, float kofs) {
    const size_t Kp = ((size_t)K + 511) & ~(size_t)511;
    const size_t bytes = (size_t)T * (Kp + Kp / 32 * 8) + 64;
    char *zbuf = ds3_kern_scratch(DS3_SCRATCH_QZ, bytes);
    if (!zbuf) return -1;
    a->Kp = Kp;
    a->q = (int8_t *)zbuf;
    a->da = (float *)(zbuf + (size_t)T * Kp);
    a->ds = a->da + (size_t)T * (Kp / 32);
    for (int t = 0; t < T; t++)
        zact_row(x + (size_t)t * ldx, K, Kp, kq, kofs, a->q + (size_t)t * Kp, a->da + (size_t)t * (Kp / 32),
                 a->ds + (size_t)t * (Kp / 32));
    return 0;
}

AI ztok ztok_at(const zact *a, int t) {
    ztok v = {a->q + (size_t)t * a->Kp, a->da + (size_t)t * (a->Kp / 32), a->ds + (size_t)t * (a->Kp / 32)};
    return v;
}

/* 8 vectors of 16 int32 -> one: lane l = sum of the 8 lanes of block zblk(l). Only v[0..NP) are
 * non-zero; the steps that would add zeros are skipped. */
AI __m512i tree8(const __m512i *v, const int NP) {
    const __m512i z = _mm512_setzero_si512();
    const __m512i x01 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[0], NP > 1 ? v[1] : z), _mm512_unpackhi_epi32(v[0], NP > 1 ? v[1] : z));
    const __m512i x23 = NP > 2 ? _mm512_add_epi32(_mm512_unpacklo_epi32(v[2], v[3]), _mm512_unpackhi_epi32(v[2], v[3])) : z;
    const __m512i x45 = NP > 4 ? _mm512_add_epi32(_mm512_unpacklo_epi32(v[4], v[5]), _mm512_unpackhi_epi32(v[4], v[5])) : z;
    const __m512i x67 = NP > 4 ? _mm512_add_epi32(_mm512_unpacklo_epi32(v[6], v[7]), _mm512_unpackhi_epi32(v[6], v[7])) : z;
    const __m512i y0 = _mm512_add_epi32(_mm512_unpacklo_epi64(x01, x23), _mm512_unpackhi_epi64(x01, x23));
    const __m512i y1 = NP > 4 ? _mm512_add_epi32(_mm512_unpacklo_epi64(x45, x67), _mm512_unpackhi_epi64(x45, x67)) : z;
    return _mm512_add_epi32(_mm512_shuffle_i32x4(y0, y1, 0x88), _mm512_shuffle_i32x4(y0, y1, 0xDD));
}

/* f16 block scales of the group's blocks, in zblk lane order (blocks >= nblk: 0) */
AI __m512 zscales(const uint8_t *p, int stride, int nblk) {
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15), _mm512_set1_epi32(stride));
    __m512i g;
    if (nblk == 16) g = _mm512_i32gather_epi32(idx, p, 1);
    else {
        const __mmask16 m = _mm512_cmplt_epi32_mask(_mm512_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15),
                                                    _mm512_set1_epi32(nblk));
        g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, p, 1);
    }
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
}

/* Q8_0: lane l of the scale vector <- word 17*zblk(l) of the group, as an index into the pair
 * of 64-byte loads (window) that holds it: lanes 0 1 4 5 window 0, 2 3 6 7 window 1, ... */
static const int16_t q8_dix[32] = {0, 34, 4, 38, 17, 51, 21, 55, 8, 42, 12, 46, 25, 59, 29, 63};

/* Q8_0 group: 16 blocks (544 bytes) from p; weights + 128 as unsigned bytes, DW = block scales in
 * zblk order. Nine 64-byte loads; pair q (bytes 68q+2..68q+67) lies in loads q and q+1. */
static const int8_t q8_bix[64] = {2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
                                  24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
                                  48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67};
AI void wq8_grp(const uint8_t *p, int nblk, const int NP, __m512i *W, __m512 *DW) {
    const __m512i x80 = _mm512_set1_epi8((char)0x80);
    __m512i L[9];
    UNROLL for (int k = 0; k <= NP; k++) {
        if (nblk == 16 && k < 8) L[k] = _mm512_loadu_si512(p + 64 * k);
        else {
            const int64_t left = 34 * nblk - 64 * k;
            L[k] = _mm512_maskz_loadu_epi8(left >= 64 ? ~0ull : left <= 0 ? 0 : (1ull << left) - 1, p + 64 * k);
        }
    }
    const __m512i bix = _mm512_loadu_si512(q8_bix);
    UNROLL for (int q = 0; q < 8; q++)
        W[q] = q < NP ? _mm512_xor_si512(
                            _mm512_permutex2var_epi8(L[q], _mm512_add_epi8(bix, _mm512_set1_epi8((char)(4 * q))), L[q + 1]), x80)
                      : _mm512_setzero_si512();
    /* the 16 f16 scales (words 17m) from four 128-byte windows, 4 blocks each */
    const __m512i ix = _mm512_loadu_si512(q8_dix);
    __m512i h = _mm512_maskz_permutex2var_epi16(0x0033, L[0], ix, L[1]);
    if (NP > 2) h = _mm512_or_si512(h, _mm512_maskz_permutex2var_epi16(0x00CC, L[2], ix, L[3]));
    if (NP > 4) h = _mm512_or_si512(h, _mm512_maskz_permutex2var_epi16(0x3300, L[4], ix, L[5]));
    if (NP > 6) h = _mm512_or_si512(h, _mm512_maskz_permutex2var_epi16(0xCC00, L[6], ix, L[7]));
    *DW = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
}

/* Q4_0 group: 16 blocks (288 bytes); pair q -> [lo0 hi0 lo1 hi1] = elements of block 2q, 2q+1 */
AI void wq4_grp(const uint8_t *p, int nblk, const int NP, __m512i *W, __m512 *DW) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    UNROLL for (int q = NP; q < 8; q++) W[q] = _mm512_setzero_si512();
    UNROLL for (int q = 0; q < NP; q++) {
        __m128i q0, q1;
        if (nblk == 16) {
            q0 = _mm_loadu_si128((const __m128i *)(p + 36 * q + 2));
            q1 = _mm_loadu_si128((const __m128i *)(p + 36 * q + 20));
        } else {
            q0 = _mm_maskz_loadu_epi8(2 * q < nblk ? 0xFFFF : 0, p + 36 * q + 2);
            q1 = _mm_maskz_loadu_epi8(2 * q + 1 < nblk ? 0xFFFF : 0, p + 36 * q + 20);
        }
        const __m256i Q = _mm256_set_m128i(q1, q0);
        const __m256i lo = _mm256_and_si256(Q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(Q, 4), m4);
        const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        W[q] = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
    }
    *DW = zscales(p, 18, nblk);
}

/* Q4_K 6-bit scales/mins of one super-block: A = bytes sc0..3 m0..3, B = sc4..7 m4..7 */
static inline void k4_sm(const uint8_t *s12, uint64_t *A, uint64_t *B) {
    uint64_t u0;
    uint32_t u1;
    memcpy(&u0, s12, 8);
    memcpy(&u1, s12 + 8, 4);
    *A = u0 & 0x3f3f3f3f3f3f3f3full;
    *B = ((u0 >> 2) & 0x3030303030303030ull) | (uint64_t)(u1 & 0x0f0f0f0fu) | ((uint64_t)((u1 >> 4) & 0x0f0f0f0fu) << 32);
}

/* Q4_K group: super-blocks p (and p + 144 when two). W: lo/hi nibbles of qs[0..63], qs[64..127]
 * = sub-blocks (0,2) (1,3) (4,6) (5,7); SC = d*sc, MN = dmin*m per block in zblk lane order. */
AI void wq4k_grp(const uint8_t *p, int two, __m512i *W, __m512 *SC, __m512 *MN) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const ds3_blk_q4_k *b0 = (const ds3_blk_q4_k *)p, *b1 = b0 + 1;
    UNROLL for (int s = 0; s < 2; s++) {
        if (s == 1 && !two) {
            W[4] = W[5] = W[6] = W[7] = _mm512_setzero_si512();
            break;
        }
        const ds3_blk_q4_k *b = s ? b1 : b0;
        const __m512i Q0 = _mm512_loadu_si512(b->qs), Q1 = _mm512_loadu_si512(b->qs + 64);
        W[4 * s + 0] = _mm512_and_si512(Q0, m4);
        W[4 * s + 1] = _mm512_and_si512(_mm512_srli_epi16(Q0, 4), m4);
        W[4 * s + 2] = _mm512_and_si512(Q1, m4);
        W[4 * s + 3] = _mm512_and_si512(_mm512_srli_epi16(Q1, 4), m4);
    }
    uint64_t A0, B0, A1 = 0, B1 = 0;
    uint32_t dd0, dd1 = 0;
    k4_sm(b0->scales, &A0, &B0);
    memcpy(&dd0, &b0->d, 4);
    if (two) {
        k4_sm(b1->scales, &A1, &B1);
        memcpy(&dd1, &b1->d, 4);
    }
    /* words of A = (sc0 sc1)(sc2 sc3)(m0 m1)(m2 m3), of B likewise for 4..7: interleaving them gives
     * sc in lane order 0 1 4 5 2 3 6 7, then m in the same order */
    const __m128i X = _mm_set_epi64x((long long)A1, (long long)A0), Y = _mm_set_epi64x((long long)B1, (long long)B0);
    const __m128i z0 = _mm_unpacklo_epi16(X, Y), z1 = _mm_unpackhi_epi16(X, Y);
    const __m512 scf = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi64(z0, z1)));
    const __m512 mnf = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi64(z0, z1)));
    const __m512 dm = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_set_epi32(0, 0, (int)dd1, (int)dd0))); /* d0 dmin0 d1 dmin1 */
    *SC = _mm512_mul_ps(scf, _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2), dm));
    *MN = _mm512_mul_ps(mnf, _mm512_permutexvar_ps(_mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3), dm));
}

/* One group of R rows x C tokens. type 0 Q8_0, 1 Q4_0, 2 Q4_K; n = blocks (Q8_0/Q4_0, 16 = full)
 * or super-blocks (Q4_K, 2 = full) in this group; only its first NP (1, 2, 4 or 8) vectors are
 * non-zero (a short tail, e.g. the 64 columns of attn_k_b, skips the rest: the integer block sums
 * are the same whichever vectors are added, so outputs still do not depend on T or the split). */
AI void zgroup(const int type, const uint8_t *const *rows, const int R, const ztok *tk, const int C, int64_t g, int n,
               const int NP, __m512 acc[8][4], int pf) {
    const size_t gb = type == 0 ? 544 : 288; /* bytes per group */
    const size_t pfb = NP == 8 ? gb + 32 : (size_t)NP * 68 + 64;
    UNROLL for (int r = 0; r < R; r++) {
        const uint8_t *p = rows[r] + (size_t)g * gb;
        if (pf)
            UNROLL for (size_t o = 0; o < pfb; o += 64) _mm_prefetch(pf_at((const char *)p + ZPF_DIST + o), _MM_HINT_T0);
        __m512i W[8];
        __m512 S, M = _mm512_setzero_ps();
        if (type == 0) wq8_grp(p, n, NP, W, &S);
        else if (type == 1) wq4_grp(p, n, NP, W, &S);
        else wq4k_grp(p, n == 2, W, &S, &M);
        UNROLL for (int c = 0; c < C; c++) {
            const int8_t *aq = tk[c].q + (size_t)g * 512;
            __m512i d[8];
            UNROLL for (int q = 0; q < 8; q++)
                d[q] = q < NP ? _mm512_dpbusd_epi32(_mm512_setzero_si512(), W[q], _mm512_loadu_si512(aq + 64 * q))
                              : _mm512_setzero_si512();
            const __m512 f = _mm512_cvtepi32_ps(tree8(d, NP));
            const __m512 DA = _mm512_loadu_ps(tk[c].da + 16 * g), DS = _mm512_loadu_ps(tk[c].ds + 16 * g);
            if (type == 2) {
                acc[r][c] = _mm512_fmadd_ps(_mm512_mul_ps(f, DA), S, acc[r][c]);
                acc[r][c] = _mm512_fnmadd_ps(M, DS, acc[r][c]);
            } else {
                acc[r][c] = _mm512_fmadd_ps(_mm512_fmsub_ps(f, DA, DS), S, acc[r][c]);
            }
        }
    }
}

AI void ztile(const int type, const uint8_t *const *rows, const int R, const ztok *tk, const int C, int64_t cols,
              float *out, size_t ldo, int pf) {
    __m512 acc[8][4];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    const int64_t nb = type == 2 ? cols / 256 : cols / 32, per = type == 2 ? 2 : 16;
    const int64_t ng = nb / per;
    const int tail = (int)(nb % per);
    for (int64_t g = 0; g < ng; g++) zgroup(type, rows, R, tk, C, g, per, 8, acc, pf);
    if (tail) {
        const int np = type == 2 ? 4 : (tail + 1) / 2; /* vectors holding data */
        if (np <= 1) zgroup(type, rows, R, tk, C, ng, tail, 1, acc, pf);
        else if (np <= 2) zgroup(type, rows, R, tk, C, ng, tail, 2, acc, pf);
        else if (np <= 4) zgroup(type, rows, R, tk, C, ng, tail, 4, acc, pf);
        else zgroup(type, rows, R, tk, C, ng, tail, 8, acc, pf);
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) out[(size_t)c * ldo + r] =
        _mm512_reduce_add_ps(acc[r][c]);
}

/* ---- Q8_0x16: 16 rows in the 16 lanes (layout in quant.h, repacked at load) ----
 * Lane i of every vector is row 16g + i, so vpdpbusd of a block's 8 weight vectors with the
 * token's activation dwords broadcast leaves the 16 rows' integer block sums in one vector: no
 * byte permutes, no horizontal reduction, the 16 f16 scales one load. Per block and row:
 * t = cvt(I) * da - ds (ds = 128 d sum(q), the +128 of the stored bytes), then
 * acc[b & 1] = fma(t, dw, acc[b & 1]); y = acc[0] + acc[1] (two chains hide the fma latency).
 * Every tile shape does exactly this, so results do not depend on T or on the row split. */
#ifndef XPF_DIST
#define XPF_DIST 4096
#endif

typedef struct {
    int8_t *q;  /* (T, K) */
    float *da;  /* (T, K/32) block scales d */
    float *ds;  /* (T, K/32) kofs * d * sum(q): Q8_0x16 128 (the stored + 128), Q4_Kx16 1 (the mins) */
    size_t K;
} xact;

VNNI static int xact_fill(xact *a, const float *x, size_t ldx, int T, int64_t K, float kofs) {
    const size_t nb = (size_t)K / 32;
    char *zbuf = ds3_kern_scratch(DS3_SCRATCH_QZ, (size_t)T * ((size_t)K + 8 * nb) + 64);
    if (!zbuf) return -1;
    a->K = (size_t)K;
    a->q = (int8_t *)zbuf;
    a->da = (float *)(zbuf + (size_t)T * (size_t)K);
    a->ds = a->da + (size_t)T * nb;
    for (int t = 0; t < T; t++)
        for (size_t b = 0; b < nb; b++) {
            __m512i i0, i1;
            const float d = act_block_q8(x + (size_t)t * ldx + 32 * b, a->q + (size_t)t * K + 32 * b, &i0, &i1);
            a->da[(size_t)t * nb + b] = d;
            a->ds[(size_t)t * nb + b] = kofs * d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
        }
    return 0;
}

/* one block (544 bytes at p) of the group for C tokens into acc[c] */
AI void x16_block(const uint8_t *p, int64_t b, const int32_t *const *aq, const float *const *da, const float *const *ds,
                  const int C, __m512 *acc, int pf) {
    if (pf)
        UNROLL for (int o = 0; o < 544; o += 64) _mm_prefetch(pf_at((const char *)p + XPF_DIST + o), _MM_HINT_T0);
    __m512i W[8];
    UNROLL for (int j = 0; j < 8; j++) W[j] = _mm512_loadu_si512(p + 64 * j);
    const __m512 DW = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 512)));
    UNROLL for (int c = 0; c < C; c++) {
        const int32_t *a = aq[c] + 8 * b;
        __m512i i0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W[0], _mm512_set1_epi32(a[0]));
        __m512i i1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W[1], _mm512_set1_epi32(a[1]));
        UNROLL for (int j = 2; j < 8; j += 2) {
            i0 = _mm512_dpbusd_epi32(i0, W[j], _mm512_set1_epi32(a[j]));
            i1 = _mm512_dpbusd_epi32(i1, W[j + 1], _mm512_set1_epi32(a[j + 1]));
        }
        const __m512 t = _mm512_fmsub_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1)), _mm512_set1_ps(da[c][b]),
                                         _mm512_set1_ps(ds[c][b]));
        acc[c] = _mm512_fmadd_ps(t, DW, acc[c]);
    }
}

/* The 16 rows of group g (at gp) x tokens t0..t0+C-1 -> out[c * 16 + i]. */
AI void x16_tile(const uint8_t *gp, int64_t nb, const xact *a, int t0, const int C, float *out, int pf) {
    const size_t K = a->K, nbs = K / 32;
    const int32_t *aq[4];
    const float *da[4], *ds[4];
    __m512 acc0[4], acc1[4];
    UNROLL for (int c = 0; c < C; c++) {
        aq[c] = (const int32_t *)(a->q + (size_t)(t0 + c) * K);
        da[c] = a->da + (size_t)(t0 + c) * nbs;
        ds[c] = a->ds + (size_t)(t0 + c) * nbs;
        acc0[c] = acc1[c] = _mm512_setzero_ps();
    }
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        x16_block(gp + (size_t)b * 544, b, aq, da, ds, C, acc0, pf);
        x16_block(gp + (size_t)(b + 1) * 544, b + 1, aq, da, ds, C, acc1, pf);
    }
    if (b < nb) x16_block(gp + (size_t)b * 544, b, aq, da, ds, C, acc0, pf);
    UNROLL for (int c = 0; c < C; c++) _mm512_storeu_ps(out + 16 * c, _mm512_add_ps(acc0[c], acc1[c]));
}

/* One token, four groups from four runs of groups (gp[q], q < 4) side by side: every run is a
 * strictly sequential stream (see the dense decode's streams in avx512.c). Prefetches run XSPF
 * bytes ahead in each stream. Past its end (the next stream's start, read long ago) the last
 * stream's go on as pf_at does (remainder groups, then ds3_pf_next); stream q's go to where
 * stream q of the thread's next call starts if that call has the same shape, as the experts'
 * matrices do (+1% Q8_0 decode, per-token A/B; before, they were dropped). */
#ifndef XSPF
#define XSPF 2048 /* per stream; 1 KB -4%, 4 KB -7%, 8 KB -11%, none -20% (Q8_0 decode, per-token A/B) */
#endif
AI void x16_tile4(const uint8_t *const *gp, const char *const *end, int64_t nb, const xact *a, float *out) {
    const int32_t *aq[1] = {(const int32_t *)a->q};
    const float *da[1] = {a->da}, *ds[1] = {a->ds};
    __m512 acc[4][2];
    UNROLL for (int q = 0; q < 4; q++) acc[q][0] = acc[q][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        UNROLL for (int q = 0; q < 4; q++) {
            const uint8_t *p = gp[q] + (size_t)b * 544;
            UNROLL for (int o = 0; o < 544; o += 64) {
                const char *pa = (const char *)p + XSPF + o;
                if (pa < end[q]) _mm_prefetch(pa, _MM_HINT_T0);
                else if (q == 3) _mm_prefetch(pf_at(pa), _MM_HINT_T0);
                else if (qpf_jump) /* stream q of the next call (experts: the same shape) */
                    _mm_prefetch(qpf_end + qpf_jump + q * (end[1] - end[0]) + (pa - end[q]), _MM_HINT_T0);
            }
            x16_block(p, b, aq, da, ds, 1, &acc[q][b & 1], 0);
        }
    }
    UNROLL for (int q = 0; q < 4; q++) _mm512_storeu_ps(out + 16 * q, _mm512_add_ps(acc[q][0], acc[q][1]));
}

/* ---- Q4_Kx16 (layout in quant.h): as Q8_0x16, 16 rows in the lanes ----
 * Per super-block the 16 rows' 6-bit scales and mins are unpacked in lanes and multiplied by
 * d / dmin (exact in f32, as in the Z path); per 64-byte vector the low nibbles go to sub-block
 * 2j, the high ones to 2j + 1. Per sub-block s and row: acc[s & 1] = fma(cvt(I) * da, d sc, acc),
 * then acc[s & 1] -= (dmin m) * (da sum(q)); y = acc[0] + acc[1]. The same in every tile shape.
 * One group at a time also for one token: four streams as for Q8_0x16 measured 20-25% slower
 * (Q4_K does twice the arithmetic per byte; per-token A/B). */
AI void k16_block(const uint8_t *p, int64_t sb, const int32_t *const *aq, const float *const *da, const float *const *ds,
                  const int C, __m512 (*acc)[2]) {
    const __m512i U0 = _mm512_loadu_si512(p + 2112), U1 = _mm512_loadu_si512(p + 2176), U2 = _mm512_loadu_si512(p + 2240);
    const __m512i DD = _mm512_loadu_si512(p + 2048);
    const __m512 D = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(DD)), DM = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(DD, 16)));
    const __m512i m63 = _mm512_set1_epi32(63), m15 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3);
    const __m512i n4 = _mm512_set1_epi8(0x0F);
    UNROLL for (int j = 0; j < 4; j++) {
        __m512 SC[2], MN[2];
        UNROLL for (int h = 0; h < 2; h++) {
            const int q = 2 * j + h; /* sub-block */
            __m512i sc, mn;
            if (q < 4) {
                sc = _mm512_and_si512(_mm512_srli_epi32(U0, 8 * q), m63);
                mn = _mm512_and_si512(_mm512_srli_epi32(U1, 8 * q), m63);
            } else {
                const int k = q - 4;
                sc = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(U2, 8 * k), m15),
                                     _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(U0, 8 * k + 6), m3), 4));
                mn = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(U2, 8 * k + 4), m15),
                                     _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(U1, 8 * k + 6), m3), 4));
            }
            SC[h] = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), D);
            MN[h] = _mm512_mul_ps(_mm512_cvtepi32_ps(mn), DM);
        }
        __m512i I0[4], I1[4];
        UNROLL for (int c = 0; c < C; c++) I0[c] = I1[c] = _mm512_setzero_si512();
        UNROLL for (int v = 0; v < 8; v++) {
            const __m512i W = _mm512_loadu_si512(p + 64 * (8 * j + v));
            const __m512i lo = _mm512_and_si512(W, n4), hi = _mm512_and_si512(_mm512_srli_epi16(W, 4), n4);
            UNROLL for (int c = 0; c < C; c++) {
                const int32_t *a = aq[c] + 64 * sb + 16 * j;
                I0[c] = _mm512_dpbusd_epi32(I0[c], lo, _mm512_set1_epi32(a[v]));
                I1[c] = _mm512_dpbusd_epi32(I1[c], hi, _mm512_set1_epi32(a[8 + v]));
            }
        }
        UNROLL for (int c = 0; c < C; c++) {
            const int64_t s0 = 8 * sb + 2 * j;
            acc[c][0] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(I0[c]), _mm512_set1_ps(da[c][s0])), SC[0], acc[c][0]);
            acc[c][0] = _mm512_fnmadd_ps(MN[0], _mm512_set1_ps(ds[c][s0]), acc[c][0]);
            acc[c][1] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(I1[c]), _mm512_set1_ps(da[c][s0 + 1])), SC[1], acc[c][1]);
            acc[c][1] = _mm512_fnmadd_ps(MN[1], _mm512_set1_ps(ds[c][s0 + 1]), acc[c][1]);
        }
    }
}

AI void k16_tile(const uint8_t *gp, int64_t nsb, const xact *a, int t0, const int C, float *out, int pf) {
    const size_t K = a->K, nbs = K / 32;
    const int32_t *aq[4];
    const float *da[4], *ds[4];
    __m512 acc[4][2];
    UNROLL for (int c = 0; c < C; c++) {
        aq[c] = (const int32_t *)(a->q + (size_t)(t0 + c) * K);
        da[c] = a->da + (size_t)(t0 + c) * nbs;
        ds[c] = a->ds + (size_t)(t0 + c) * nbs;
        acc[c][0] = acc[c][1] = _mm512_setzero_ps();
    }
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *p = gp + (size_t)sb * 2304;
        if (pf)
            for (int o = 0; o < 2304; o += 64) _mm_prefetch(pf_at((const char *)p + XPF_DIST + o), _MM_HINT_T0);
        k16_block(p, sb, aq, da, ds, C, acc);
    }
    UNROLL for (int c = 0; c < C; c++) _mm512_storeu_ps(out + 16 * c, _mm512_add_ps(acc[c][0], acc[c][1]));
}

/* Rows [r0, r1) of a Q8_0x16 (kq = 0) or Q4_Kx16 (kq = 1) matrix, one group of 16 rows at a time,
 * up to 4 tokens per pass over it. A whole group is computed even when the call wants part of it
 * (a split off the 16-row grid): the same arithmetic, so the same bits. */
AI void x16_groups(const int kq, const ds3_mat *w, int64_t r0, int64_t r1, const xact *a, int T, float *y, size_t ldy) {
    const int64_t nb = kq ? w->cols / 256 : w->cols / 32;
    const size_t gb = DS3_Q8X16_ROWS * ds3_row_bytes(w->dtype, w->cols);
    float tmp[4 * 16];
    for (int64_t r = r0; r < r1;) {
        const int64_t g = r / DS3_Q8X16_ROWS, gr0 = g * DS3_Q8X16_ROWS;
        const int64_t n = (gr0 + DS3_Q8X16_ROWS < r1 ? gr0 + DS3_Q8X16_ROWS : r1) - r;
        const uint8_t *gp = (const uint8_t *)w->data + (size_t)g * gb;
        for (int t = 0; t < T; t += 4) {
            const int C = T - t < 4 ? T - t : 4, pf = t == 0;
#define X16_TILE(CC) (kq ? k16_tile(gp, nb, a, t, CC, tmp, pf) : x16_tile(gp, nb, a, t, CC, tmp, pf))
            if (C == 4) X16_TILE(4);
            else if (C == 3) X16_TILE(3);
            else if (C == 2) X16_TILE(2);
            else X16_TILE(1);
#undef X16_TILE
            for (int c = 0; c < C; c++)
                for (int64_t i = 0; i < n; i++) y[(size_t)(t + c) * ldy + (size_t)(r + i - r0)] = tmp[c * 16 + (r - gr0) + i];
        }
        r += n;
    }
}

/* one token over at least 8 whole groups: four streams (x16_tile4) */
static inline int x16_streams(int64_t r0, int64_t r1, int T) {
    return T == 1 && r0 % DS3_Q8X16_ROWS == 0 && (r1 - r0) / DS3_Q8X16_ROWS >= 8;
}

VNNI static void x16_matmul(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                            size_t ldy) {
    const int64_t nb = w->cols / 32;
    const size_t gb = DS3_Q8X16_ROWS * ds3_row_bytes(DS3_DT_Q8_0X16, w->cols);
    xact a;
    if (xact_fill(&a, x, ldx, T, w->cols, 128.0f)) {
        ds3_qkernels_ref.matmul(w, r0, r1, x, ldx, T, y, ldy);
        return;
    }
    float tmp[4 * 16];
    if (x16_streams(r0, r1, T)) {
        const int64_t h = (r1 - r0) / DS3_Q8X16_ROWS / 4; /* groups per stream; the rest follow */
        const uint8_t *g0 = (const uint8_t *)w->data + (size_t)(r0 / DS3_Q8X16_ROWS) * gb;
        for (int q = 0; q < 4; q++)
            for (int o = 0; o < XSPF; o += 64) _mm_prefetch((const char *)g0 + (size_t)q * h * gb + o, _MM_HINT_T0);
        const char *end[4];
        for (int q = 0; q < 4; q++) end[q] = (const char *)g0 + (size_t)(q + 1) * h * gb;
        for (int64_t i = 0; i < h; i++) {
            const uint8_t *gp[4];
            for (int q = 0; q < 4; q++) gp[q] = g0 + (size_t)(q * h + i) * gb;
            x16_tile4(gp, end, nb, &a, tmp);
            for (int q = 0; q < 4; q++) memcpy(y + (size_t)((q * h + i) * DS3_Q8X16_ROWS), tmp + 16 * q, 16 * sizeof(float));
        }
        r0 += 4 * h * DS3_Q8X16_ROWS;
        y += 4 * h * DS3_Q8X16_ROWS;
    }
    x16_groups(0, w, r0, r1, &a, T, y, ldy);
}

VNNI static void k16_matmul(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                            size_t ldy) {
    xact a;
    if (xact_fill(&a, x, ldx, T, w->cols, 1.0f)) ds3_qkernels_ref.matmul(w, r0, r1, x, ldx, T, y, ldy);
    else x16_groups(1, w, r0, r1, &a, T, y, ldy);
}

VNNI static void ztile_dispatch(int type, const uint8_t *const *rows, int R, const ztok *tk, int C, int64_t cols, float *out,
                                size_t ldo, int pf) {
#define ZT(TY, RR, CC) ztile(TY, rows, RR, tk, CC, cols, out, ldo, pf)
#define ZC(TY, RR)                                                                                                  \
    do {                                                                                                            \
        if (C == 4) ZT(TY, RR, 4);                                                                                  \
        else if (C == 3) ZT(TY, RR, 3);                                                                             \
        else if (C == 2) ZT(TY, RR, 2);                                                                             \
        else ZT(TY, RR, 1);                                                                                         \
    } while (0)
#define ZR(TY)                                                                                                      \
    do {                                                                                                            \
        if (R == 8) {                                                                                               \
            if (C == 2) ZT(TY, 8, 2);                                                                               \
            else ZT(TY, 8, 1);                                                                                      \
        } else if (R == 4) ZC(TY, 4);                                                                               \
        else ZC(TY, 1);                                                                                             \
    } while (0)
    if (type == 0) ZR(0);
    else if (type == 1) ZR(1);
    else ZR(2);
}

VNNI static void tile_dispatch(ds3_dtype dt, const uint8_t *const *rows, int R, const tokv *tk, int C, int64_t cols, float *out,
                               size_t ldo, int pf) {
#define DISPATCH(CALL)                                                                                              \
    do {                                                                                                            \
        if (R == 4) {                                                                                               \
            if (C == 4) CALL(4, 4);                                                                                 \
            else if (C == 3) CALL(4, 3);                                                                            \
            else if (C == 2) CALL(4, 2);                                                                            \
            else CALL(4, 1);                                                                                        \
        } else {                                                                                                    \
            if (C == 4) CALL(1, 4);                                                                                 \
            else if (C == 3) CALL(1, 3);                                                                            \
            else if (C == 2) CALL(1, 2);                                                                            \
            else CALL(1, 1);                                                                                        \
        }                                                                                                           \
    } while (0)
    switch (dt) {
    case DS3_DT_Q8_0:
#define C80(RR, CC) tile_q8_0(rows, RR, tk, CC, cols / 32, out, ldo, pf)
        DISPATCH(C80);
        break;
    case DS3_DT_Q4_0:
#define C40(RR, CC) tile_q4_0(rows, RR, tk, CC, cols / 32, out, ldo, pf)
        DISPATCH(C40);
        break;
    case DS3_DT_Q5_K:
#define C5K(RR, CC) tile_k(1, rows, RR, tk, CC, cols / 256, out, ldo, pf)
        DISPATCH(C5K);
        break;
    case DS3_DT_Q6_K:
#define C6K(RR, CC) tile_k(2, rows, RR, tk, CC, cols / 256, out, ldo, pf)
        DISPATCH(C6K);
        break;
    default: break;
    }
}

/* VNNI for vpdpbusd, VBMI for the byte permutes of wq8_grp (Ice Lake, Zen 4 and later) */
static int has_vnni(void) {
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi") ? 1 : 0;
    }
    return v;
}

VNNI static void q512_matmul(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                             size_t ldy) {
    const ds3_dtype dt = w->dtype;
    if (dt == DS3_DT_Q2_K || dt == DS3_DT_Q3_K || !has_vnni()) {
        const ds3_kernels *fb = dt != DS3_DT_Q2_K && dt != DS3_DT_Q3_K && ds3_qkernels_avx2.matmul ? &ds3_qkernels_avx2
                                                                                                    : &ds3_qkernels_ref;
        fb->matmul(w, r0, r1, x, ldx, T, y, ldy);
        return;
    }
    const size_t rb = ds3_row_bytes(dt, w->cols);
    const uint8_t *base = w->data;
    /* The rows [r0, r1) are contiguous; the tiles prefetch PF_DIST bytes ahead of each row, so
     * prefetch the first PF_DIST bytes now or they would arrive one demand miss at a time. */
    {
        const size_t total = (size_t)(r1 - r0) * rb;
        /* Q8_0x16's four streams burst their own starts (x16_matmul; +0-2% without this one) */
        const size_t nbp = dt == DS3_DT_Q8_0X16 && x16_streams(r0, r1, T) ? 0 : total < PF_BURST ? total : PF_BURST;
        const char *b0 = (const char *)base + (size_t)r0 * rb;
        for (size_t off = 0; off < nbp; off += 64) _mm_prefetch(b0 + off, _MM_HINT_T0);
        qpf_end = b0 + total;
        qpf_jump = ds3_pf_next ? (const char *)ds3_pf_next - qpf_end : 0;
    }
    if (dt == DS3_DT_Q8_0X16) {
        x16_matmul(w, r0, r1, x, ldx, T, y, ldy);
        return;
    }
    if (dt == DS3_DT_Q4_KX16) {
        k16_matmul(w, r0, r1, x, ldx, T, y, ldy);
        return;
    }
    const int zk = w->cols >= ZMIN_K;
    const int ztype = dt == DS3_DT_Q8_0 && zk ? 0 : dt == DS3_DT_Q4_0 && zk ? 1 : dt == DS3_DT_Q4_K ? 2 : -1;
    zact za = {0};
    qact a = {0};
    if (ztype >= 0 ? zact_fill(&za, x, ldx, T, w->cols, ztype == 2, ztype == 0 ? 128.0f : ztype == 1 ? 8.0f : 1.0f)
                   : qact_fill(&a, x, ldx, T, w->cols, dt == DS3_DT_Q8_0 ? 128.0f : dt == DS3_DT_Q4_0 ? 8.0f : 0.0f)) {
        ds3_qkernels_ref.matmul(w, r0, r1, x, ldx, T, y, ldy);
        return;
    }
    float tmp[32];
    for (int64_t r = r0; r < r1;) {
        /* 8 rows at once for one or two tokens (the Z path), else 4, then single rows */
        const int R = ztype >= 0 && T <= RMAX8_T && r1 - r >= 8 ? 8 : r1 - r >= 4 ? 4 : 1;
        const uint8_t *rows[8];
        for (int i = 0; i < R; i++) rows[i] = base + (size_t)(r + i) * rb;
        /* up to 4 tokens per pass over the rows; only the first pass prefetches */
        for (int t = 0; t < T; t += 4) {
            const int C = T - t < 4 ? T - t : 4;
            if (ztype >= 0) {
                ztok tk[4];
                for (int c = 0; c < C; c++) tk[c] = ztok_at(&za, t + c);
                ztile_dispatch(ztype, rows, R, tk, C, w->cols, tmp, 8, t == 0);
            } else {
                tokv tk[4];
                for (int c = 0; c < C; c++) tk[c] = tok_at(&a, t + c);
                tile_dispatch(dt, rows, R, tk, C, w->cols, tmp, 8, t == 0);
            }
            for (int c = 0; c < C; c++)
                for (int i = 0; i < R; i++) y[(size_t)(t + c) * ldy + (size_t)(r + i - r0)] = tmp[c * 8 + i];
        }
        r += R;
    }
}

int ds3_x16_wanted(void) {
    ds3_kernels_init();
    return ds3_qkern == &ds3_qkernels_avx512 && has_vnni();
}

static void q512_dequant_row(const ds3_mat *w, int64_t r, int64_t c0, int64_t c1, float *dst) {
    ds3_qkernels_ref.dequant_row(w, r, c0, c1, dst);
}

const ds3_kernels ds3_qkernels_avx512 = {
    .name = "qavx512",
    .matmul = q512_matmul,
    .dequant_row = q512_dequant_row,
};
