/* quant_avx512.c -- AVX-512 (VNNI) matmul for the GGML block-quantised dtypes Q8_0, Q4_0, Q4_K,
 * Q5_K, Q6_K (Q2_K/Q3_K and dequant_row run the scalar twin in quant_ref.c).
 *
 * Like llama.cpp, each matmul call first rounds the activations x (T, cols) to 8 bits: per block
 * of 32 one f32 scale d = max|x|/127 and int8 q = round(x/d) (ds3_q8_quantize_act's numbers),
 * plus per-block sums. Weight bytes are unpacked to unsigned 8-bit values (Q8_0: w + 128;
 * Q4/Q5/Q6: the stored unsigned codes) and multiplied with vpdpbusd (64 products per
 * instruction); offsets (Q8_0's 128, Q4_0's 8, Q6_K's 32) and K-quant mins come back through
 * the activation block sums. One 16-lane f32 accumulator per (row, token) sees one term per pair
 * of 32-blocks: lanes 0-7 belong to the first block, 8-15 to the second, and the per-block
 * scales come in as lane vectors. Register tiles of 4 rows x 4 tokens reuse unpacked weights
 * across tokens (prompt processing) and stream four rows at once (decode).
 * Error vs the f32 twin: the activation rounding only, |err| <= sum_k |w_k| * d_k / 2 per output
 * (tests/test_quant.c checks a bound of that form). Results do not depend on how rows are split
 * or on T (each output's arithmetic is the same in every tile shape).
 * CPUs with AVX-512 but no VNNI use the AVX2 set (ds3_qkernels_avx2) instead. */
#include <immintrin.h>
#include <string.h>

#include "kernels/quant.h"

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define AI static inline __attribute__((always_inline)) VNNI
#define UNROLL _Pragma("GCC unroll 16")
#ifndef PF_BYTES
#define PF_BYTES 1024 /* software prefetch distance along each weight row */
#endif

/* ---- activations ---- */
typedef struct {
    int8_t *q;      /* (T, K) */
    float *dav;     /* (T, K/32*8): each block's d, 8 times (one 8-lane half of a pair vector) */
    float *dsv;     /* (T, K/32*8): kofs * d * sum(q) / 8, 8 times */
    float *ds32;    /* (T, K/32): d * sum(q) */
    float *ds16;    /* (T, K/16): d * sum of each half-block (16) */
    size_t K;
} qact;

static _Thread_local void *act_buf;
static _Thread_local size_t act_cap;

static int qact_alloc(qact *a, int T, int64_t K) {
    const size_t nb = (size_t)K / 32;
    const size_t bytes = (size_t)T * ((size_t)K + 64 + nb * 8 * 4 * 2 + nb * 4 + nb * 2 * 4 + 256);
    if (bytes > act_cap) {
        free(act_buf);
        act_buf = NULL;
        act_cap = 0;
        if (posix_memalign(&act_buf, 64, bytes)) return -1;
        act_cap = bytes;
    }
    char *p = act_buf;
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

/* One token's row: quantise K floats. kofs multiplies the block sum in dsv (Q8_0: 128, Q4_0: 8). */
VNNI static void quant_act_row(const float *x, int64_t K, float kofs, int8_t *q, float *dav, float *dsv, float *ds32,
                               float *ds16) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < K / 32; b++) {
        const __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
        const __m512 a = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1));
        const float amax = _mm512_reduce_max_ps(a);
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid)), i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        _mm_storeu_si128((__m128i *)(q + 32 * b), _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(q + 32 * b + 16), _mm512_cvtsepi32_epi8(i1));
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

/* ---- Q8_0 / Q4_0: pairs of 32-blocks; acc += (cvt(I) * DA - DSk) * DW ---- */

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
                 size_t ldo) {                                                                                      \
        __m512 acc[4][4];                                                                                           \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();      \
        const int64_t np = nb / 2;                                                                                  \
        for (int64_t p = 0; p <= np; p++) {                                                                         \
            const int half = p == np;                                                                               \
            if (half && !(nb & 1)) break;                                                                           \
            __m512i W[4];                                                                                           \
            __m512 DW[4];                                                                                           \
            UNROLL for (int r = 0; r < R; r++) {                                                                    \
                _mm_prefetch((const char *)rows[r] + PF_BYTES + 68 * p, _MM_HINT_T0);                               \
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

/* unsigned weight codes of pair j (elements 64j..64j+63) of a super-block */
AI __m512i w_q4_k(const ds3_blk_q4_k *b, int j) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i Q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * j));
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(Q, m4)),
                              _mm256_and_si256(_mm256_srli_epi16(Q, 4), m4), 1);
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

/* type: 0 = Q4_K, 1 = Q5_K, 2 = Q6_K */
AI void tile_k(const int type, const uint8_t *const *rows, const int R, const tokv *tk, const int C, int64_t nsb, float *out,
               size_t ldo) {
    __m512 acc[4][4];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    const size_t bs = type == 0 ? sizeof(ds3_blk_q4_k) : type == 1 ? sizeof(ds3_blk_q5_k) : sizeof(ds3_blk_q6_k);
    for (int64_t s = 0; s < nsb; s++) {
        __m512 SC[4], CR[4];
        __m256i QH[4];
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *bp = rows[r] + (size_t)s * bs;
            for (size_t o = 0; o < bs; o += 64) _mm_prefetch((const char *)bp + PF_BYTES + o, _MM_HINT_T0);
            if (type == 0) {
                const ds3_blk_q4_k *b = (const ds3_blk_q4_k *)bp;
                k4_scales(b->scales, _cvtsh_ss(b->d), _cvtsh_ss(b->dmin), &SC[r], &CR[r]);
            } else if (type == 1) {
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
                W[r] = type == 0 ? w_q4_k((const ds3_blk_q4_k *)bp, j)
                       : type == 1 ? w_q5_k((const ds3_blk_q5_k *)bp, j, QH[r])
                                   : w_q6_k((const ds3_blk_q6_k *)bp, j);
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

VNNI static void tile_dispatch(ds3_dtype dt, const uint8_t *const *rows, int R, const tokv *tk, int C, int64_t cols, float *out,
                               size_t ldo) {
#define DISPATCH(CALL)                                                                                              \
    do {                                                                                                            \
        if (R == 4 && C == 4) CALL(4, 4);                                                                           \
        else if (R == 4 && C == 1) CALL(4, 1);                                                                      \
        else if (R == 1 && C == 4) CALL(1, 4);                                                                      \
        else CALL(1, 1);                                                                                            \
    } while (0)
    switch (dt) {
    case DS3_DT_Q8_0:
#define C80(RR, CC) tile_q8_0(rows, RR, tk, CC, cols / 32, out, ldo)
        DISPATCH(C80);
        break;
    case DS3_DT_Q4_0:
#define C40(RR, CC) tile_q4_0(rows, RR, tk, CC, cols / 32, out, ldo)
        DISPATCH(C40);
        break;
    case DS3_DT_Q4_K:
#define C4K(RR, CC) tile_k(0, rows, RR, tk, CC, cols / 256, out, ldo)
        DISPATCH(C4K);
        break;
    case DS3_DT_Q5_K:
#define C5K(RR, CC) tile_k(1, rows, RR, tk, CC, cols / 256, out, ldo)
        DISPATCH(C5K);
        break;
    case DS3_DT_Q6_K:
#define C6K(RR, CC) tile_k(2, rows, RR, tk, CC, cols / 256, out, ldo)
        DISPATCH(C6K);
        break;
    default: break;
    }
}

static int has_vnni(void) {
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512vnni") ? 1 : 0;
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
    qact a;
    const float kofs = dt == DS3_DT_Q8_0 ? 128.0f : dt == DS3_DT_Q4_0 ? 8.0f : 0.0f;
    if (qact_fill(&a, x, ldx, T, w->cols, kofs)) {
        ds3_qkernels_ref.matmul(w, r0, r1, x, ldx, T, y, ldy);
        return;
    }
    const size_t rb = ds3_row_bytes(dt, w->cols);
    const uint8_t *base = w->data;
    float tmp[16];
    for (int64_t r = r0; r < r1; r += 4) {
        const int R = r1 - r >= 4 ? 4 : 1;
        const int Rn = r1 - r >= 4 ? 4 : (int)(r1 - r);
        for (int rr = 0; rr < Rn; rr += R) {
            const uint8_t *rows[4];
            for (int i = 0; i < R; i++) rows[i] = base + (size_t)(r + rr + i) * rb;
            int t = 0;
            for (; t + 4 <= T; t += 4) {
                tokv tk[4] = {tok_at(&a, t), tok_at(&a, t + 1), tok_at(&a, t + 2), tok_at(&a, t + 3)};
                tile_dispatch(dt, rows, R, tk, 4, w->cols, tmp, 4);
                for (int c = 0; c < 4; c++)
                    for (int i = 0; i < R; i++) y[(size_t)(t + c) * ldy + (size_t)(r + rr + i - r0)] = tmp[c * 4 + i];
            }
            for (; t < T; t++) {
                tokv tk = tok_at(&a, t);
                tile_dispatch(dt, rows, R, &tk, 1, w->cols, tmp, 4);
                for (int i = 0; i < R; i++) y[(size_t)t * ldy + (size_t)(r + rr + i - r0)] = tmp[i];
            }
        }
    }
}

static void q512_dequant_row(const ds3_mat *w, int64_t r, int64_t c0, int64_t c1, float *dst) {
    ds3_qkernels_ref.dequant_row(w, r, c0, c1, dst);
}

const ds3_kernels ds3_qkernels_avx512 = {
    .name = "qavx512",
    .matmul = q512_matmul,
    .dequant_row = q512_dequant_row,
};
