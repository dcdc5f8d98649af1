/* avx512.c -- the AVX-512 kernel set (matmul, dequant_row, dot, axpy) for F32/BF16/F16/FP8 weights.
 * Reference twin: ref.c; tests/test_kernels.c compares the two. Owned by the kernels engineer;
 * the interface is kernels.h. Design notes and measured numbers: docs/kernels.md.
 *
 * Numerics (shared by every path, so results never depend on T, on how rows are split, or on
 * which loop computed an element): weights are dequantized exactly to f32 (FP8: round(e4m3*scale),
 * the same value ref.c uses), each output keeps one 16-lane f32 accumulator that sees
 * fma(x[k..k+15], w[k..k+15]) in k order (a zero-filled final chunk for the tail), and the 16
 * lanes are summed by one fixed tree (_mm512_reduce_add_ps). Decode (T <= 3) streams weight rows
 * four or eight at a time straight from memory (one token: one row from each of four
 * sequential runs); prefill dequantizes a 16-row x 1024-col tile into a stack buffer and runs a
 * 4-row x 6-token register-blocked micro-kernel over it. */
#include "kernels.h"

#include <assert.h>
#include <immintrin.h>
#include <float.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))
/* register-blocked loops must be fully unrolled so accumulators stay in registers */
#define UNROLL _Pragma("GCC unroll 16")

#ifndef FP8_VIA_F16
#define FP8_VIA_F16 0
#endif
#if FP8_VIA_F16
/* e4m3fn byte -> f32 * 2^-8, exactly: sign-extend to 16 bits and shift the 7 magnitude bits so
 * the 4 exponent bits land at the bottom of an f16 exponent (bias 15 = 7 + 8); e4m3 subnormals
 * become f16 subnormals of the same ratio, and vcvtph2ps turns every code into a normal f32. No
 * f32 subnormal ever reaches the multiplier (they cost microcode assists). The caller multiplies by
 * scale*2^8. Codes 0x7F/0xFF (NaN) do not occur in checkpoints and are not special-cased. */
#define FP8_POW 0x1p8f
AI __m512 fp8_bits(__m128i q) {
    __m256i v = _mm256_cvtepi8_epi16(q);
    v = _mm256_and_si256(_mm256_slli_epi16(v, 7), _mm256_set1_epi16((short)0xBF80));
    return _mm512_cvtph_ps(v);
}
#else
#define FP8_POW 0x1p120f
AI __m512 fp8_bits(__m128i q) {
    __m512i v = _mm512_cvtepi8_epi32(q);
    v = _mm512_and_si512(_mm512_slli_epi32(v, 20), _mm512_set1_epi32((int)0x87F00000u));
    return _mm512_castsi512_ps(v);
}
#endif

/* 16 weights of row `p` (element type dt) starting at element k, as f32. Masked lanes read as 0.
 * FP8: w = bits * s1 (and * s2 when `two`), see fp8_scales. */
AI __m512 load_w(const int dt, const void *p, int64_t k, __mmask16 m, const int masked, __m512 s1,
                 __m512 s2, const int two) {
    switch (dt) {
    case DS3_DT_F32:
        return masked ? _mm512_maskz_loadu_ps(m, (const float *)p + k) : _mm512_loadu_ps((const float *)p + k);
    case DS3_DT_BF16: {
        const uint16_t *q = (const uint16_t *)p + k;
        __m256i h = masked ? _mm256_maskz_loadu_epi16(m, q) : _mm256_loadu_si256((const __m256i *)q);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case DS3_DT_F16: {
        const uint16_t *q = (const uint16_t *)p + k;
        __m256i h = masked ? _mm256_maskz_loadu_epi16(m, q) : _mm256_loadu_si256((const __m256i *)q);
        return _mm512_cvtph_ps(h);
    }
    default: { /* FP8 */
        const uint8_t *q = (const uint8_t *)p + k;
        __m128i b = masked ? _mm_maskz_loadu_epi8(m, q) : _mm_loadu_si128((const __m128i *)q);
        __m512 v = _mm512_mul_ps(fp8_bits(b), s1);
        return two ? _mm512_mul_ps(v, s2) : v;
    }
    }
}

/* Per-block FP8 multipliers. bits * (scale*2^p) is exactly round(e4m3*scale) -- the same value
 * ref.c computes -- since the power of two only moves exponents, unless scale*2^p overflows;
 * those blocks (never seen in real checkpoints) take two multiplies: bits*2^p (exact), then *scale. */
static inline int fp8_big(float s) { return !(fabsf(s * FP8_POW) <= FLT_MAX); }

/* FP8 matmul (decode and prefill alike) applies the block scale once per 128-column block
 * instead of once per weight: blk = sum_k (x_k * XPOW) * bits_k over the block, then
 * acc = fma(blk * pre, f, acc) with f = scale * SPOW (XPOW * SPOW = FP8_POW, so the powers of two
 * cancel exactly; XPOW keeps the products far from f32 subnormals). One multiply fewer per 16
 * weights in the instruction-bound FP8 loop. A block whose scale * SPOW overflows (|scale| >=
 * 2^104; never in checkpoints) takes pre = SPOW, f = scale. */
#if FP8_VIA_F16
#define FP8_XPOW 1.0f
#define FP8_SPOW 0x1p8f
#else
#define FP8_XPOW 0x1p96f
#define FP8_SPOW 0x1p24f
#endif
static inline void fp8_block_mult(float s, float *pre, float *f) {
    int big = !(fabsf(s * FP8_SPOW) <= FLT_MAX);
    *pre = big ? FP8_SPOW : 1.0f;
    *f = big ? s : s * FP8_SPOW;
}

AI __mmask16 tail_mask(int64_t n) { return (__mmask16)((1u << n) - 1u); }

/* ---- decode: R rows (1 or 4) x NT tokens (1..6), weights streamed once ---------------------- */

#ifndef DEC8_MAXT
#define DEC8_MAXT 3
#endif
#ifndef PF_HINT
#define PF_HINT _MM_HINT_T0
#endif
#ifndef PF_DIST
#define PF_DIST 16384 /* far ahead: model rows are short (448-1024 values), so a 2 KB distance left most of each row unprefetched; measured +25-45% full-model decode */
#endif

AI void dec_chunk(const int dt, const int R, const int NT, const void *const *rp, int64_t k, __mmask16 m,
                  const int masked, const float *x, size_t ldx, __m512 acc[8][6]) {
    __m512 xv[6];
    UNROLL
    for (int j = 0; j < NT; j++) {
        xv[j] = masked ? _mm512_maskz_loadu_ps(m, x + (size_t)j * ldx + k) : _mm512_loadu_ps(x + (size_t)j * ldx + k);
        if (dt == DS3_DT_F8E4M3) xv[j] = _mm512_mul_ps(xv[j], _mm512_set1_ps(FP8_XPOW));
    }
    UNROLL
    for (int i = 0; i < R; i++) {
        __m512 wv;
        if (dt == DS3_DT_F8E4M3) { /* raw bits: the block scale comes later (fp8_block_mult) */
            const uint8_t *q = (const uint8_t *)rp[i] + k;
            wv = fp8_bits(masked ? _mm_maskz_loadu_epi8(m, q) : _mm_loadu_si128((const __m128i *)q));
        } else {
            const __m512 none = _mm512_setzero_ps(); /* BF16/F16/F32 take no scale */
            wv = load_w(dt, rp[i], k, m, masked, none, none, 0);
        }
        UNROLL
        for (int j = 0; j < NT; j++) acc[i][j] = _mm512_fmadd_ps(xv[j], wv, acc[i][j]);
    }
}

/* The prefetch stream of one decode call: rows [r0, r1) are the bytes [base, end); addresses at
 * or past end continue at ds3_pf_next (the thread's next matmul) by adding `jump`. A register
 * block over several streams (see decode) has row i's stream end `step` bytes after row i - 1's;
 * adding `jump` there lands on stream i of the next call when it has the same shape (the experts'
 * matrices): +0.6-1.2% decode, per-token A/B (before, every stream went on at the next start). */
typedef struct {
    const char *end;
    intptr_t jump, step;
} pf_stream;

AI void dec_span(const int dt, const int R, const int NT, const int PFD, const void *const *rp, int64_t k0,
                 int64_t k1, const float *x, size_t ldx, __m512 acc[8][6], pf_stream pf) {
    /* one cache line of every row per step, with a software prefetch PFD bytes ahead: the
     * hardware prefetcher alone leaves FP8 rows (4x fewer bytes per instruction) latency bound */
    const int esz = dt == DS3_DT_F32 ? 4 : dt == DS3_DT_F8E4M3 ? 1 : 2, step = 64 / esz;
    int64_t k = k0;
    for (; k + step <= k1; k += step) {
        UNROLL
        for (int i = 0; i < R; i++) {
            const char *a = (const char *)rp[i] + (k * esz + PFD);
            _mm_prefetch(a >= pf.end + i * pf.step ? a + pf.jump : a, PF_HINT);
        }
        UNROLL
        for (int c = 0; c < step; c += 16) dec_chunk(dt, R, NT, rp, k + c, 0, 0, x, ldx, acc);
    }
    for (; k + 16 <= k1; k += 16) dec_chunk(dt, R, NT, rp, k, 0, 0, x, ldx, acc);
    if (k < k1) dec_chunk(dt, R, NT, rp, k, tail_mask(k1 - k), 1, x, ldx, acc);
}

/* R rows in one register block: rows r + i * gap (gap 1: consecutive rows; gap h: one row of each of
 * R streams of h rows), each output y[i * gap] computed exactly as by any other grouping. */
AI void dec_rows(const int dt, const int R, const int NT, const int PFD, const ds3_mat *w, int64_t r, int64_t gap,
                 const float *x, size_t ldx, float *y, size_t ldy, pf_stream pf) {
    const int64_t K = w->cols;
    const size_t esz = dt == DS3_DT_F32 ? 4 : dt == DS3_DT_F8E4M3 ? 1 : 2;
    const void *rp[8];
    __m512 acc[8][6];
    UNROLL
    for (int i = 0; i < R; i++) {
        rp[i] = (const char *)w->data + (size_t)(r + i * gap) * (size_t)K * esz;
        UNROLL
        for (int j = 0; j < NT; j++) acc[i][j] = _mm512_setzero_ps();
    }
    if (dt == DS3_DT_F8E4M3) {
        const int64_t nbc = (K + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK;
        const float *sc[8];
        UNROLL
        for (int i = 0; i < R; i++) sc[i] = w->scale + ((r + i * gap) / DS3_FP8_BLOCK) * nbc;
        const int shared = sc[R - 1] == sc[0]; /* all R rows in one 128-row scale block */
        for (int64_t b = 0; b < nbc; b++) {
            int64_t k0 = b * DS3_FP8_BLOCK, k1 = k0 + DS3_FP8_BLOCK < K ? k0 + DS3_FP8_BLOCK : K;
            __m512 blk[8][6];
            UNROLL
            for (int i = 0; i < R; i++)
                UNROLL
                for (int j = 0; j < NT; j++) blk[i][j] = _mm512_setzero_ps();
            dec_span(dt, R, NT, PFD, rp, k0, k1, x, ldx, blk, pf);
            /* rows sharing one scale block (consecutive rows) look it up once; blk * pre is
             * skipped when pre is 1 (exact), the usual case */
            float pre0, f0;
            fp8_block_mult(sc[0][b], &pre0, &f0);
            UNROLL
            for (int i = 0; i < R; i++) {
                float pre = pre0, f = f0;
                if (i && !shared) fp8_block_mult(sc[i][b], &pre, &f);
                const __m512 fv = _mm512_set1_ps(f), pv = _mm512_set1_ps(pre);
                UNROLL
                for (int j = 0; j < NT; j++)
                    acc[i][j] = _mm512_fmadd_ps(pre == 1.0f ? blk[i][j] : _mm512_mul_ps(blk[i][j], pv), fv, acc[i][j]);
            }
        }
    } else {
        dec_span(dt, R, NT, PFD, rp, 0, K, x, ldx, acc, pf);
    }
    UNROLL
    for (int i = 0; i < R; i++)
        UNROLL
        for (int j = 0; j < NT; j++) y[(size_t)j * ldy + (size_t)(i * gap)] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Up to DEC_STREAMS_MAXT tokens (FP8: one): the call's rows go as DEC_STREAMS runs of
 * consecutive rows read side by side, one row of each run per register block, so every run is a
 * strictly sequential stream.
 * Eight consecutive rows per block interleave eight short streams (one per row), which the
 * hardware prefetcher follows poorly; a few long sequential streams per core draw ~25% more
 * bandwidth here (1.2B BF16 model, decode +24-29%, per-token interleaved A/B; two streams +17-19%,
 * six or eight streams or two rows per stream no better than one stream). The software prefetch
 * then runs DEC_STREAM_PF bytes ahead in each stream: the streams' prefetches share the L1, and
 * 4 x 2 KB measured best (4 x 4 KB: +15%). FP8 one token: +13-15% once rows from different
 * scale blocks fold their block sums without the multiply by 1 (before that, every stream layout
 * measured 1-9% slower than eight consecutive rows sharing one scale). Two and three tokens
 * (speculative verification) stream the same way: MTP self-speculative decoding with one draft
 * +6-16% (`ds3 bench --spec`, BF16 bench model with an agreeing MTP). */
#define DEC_STREAMS 4
#define DEC_STREAM_PF 2048
_Static_assert(DEC_STREAMS == DS3_SHARE_STREAMS && DEC_STREAM_PF == DS3_SHARE_PF, "shared calls use the decode layout");

/* FP8 goes through fp8_avx512.c (bf16 dot products) when the CPU has it and DS3_FP8_DOT allows */
static int fp8_bf16_on(void) { return ds3_fp8_bf16 && ds3_fp8_bf16_ok(); }
#ifndef DEC_STREAMS_MAXT
#define DEC_STREAMS_MAXT 3
#endif

AI void decode(const int dt, const int NT, const ds3_mat *w, int64_t r0, int64_t r1, const float *x,
               size_t ldx, float *y, size_t ldy) {
    /* The rows [r0, r1) are contiguous. The streaming loop prefetches ahead, so without this burst
     * the first bytes of every stream would arrive one demand miss at a time; expert matrices
     * are small enough that this start-up cost is a large share. Prefetches past the last row
     * continue at ds3_pf_next, where this thread's next call starts. */
    const size_t esz = dt == DS3_DT_F32 ? 4 : dt == DS3_DT_F8E4M3 ? 1 : 2;
    const size_t rowb = (size_t)w->cols * esz;
    const char *base = (const char *)w->data + (size_t)r0 * rowb;
    const size_t total = (size_t)(r1 - r0) * rowb;
    const char *next = ds3_pf_next ? (const char *)ds3_pf_next : base + total;
    pf_stream pf = {base + total, next - (base + total), 0};
    int64_t r = r0;
    if (NT <= (dt == DS3_DT_F8E4M3 ? 1 : DEC_STREAMS_MAXT) && r1 - r0 >= 16 * DEC_STREAMS) {
        const int64_t h = (r1 - r0) / DEC_STREAMS; /* rows per stream; the remainder follows */
        const size_t sb = (size_t)h * rowb;
        /* a stream's prefetch past its end would fetch the next stream's start again: it goes on
         * at the same stream of the next call (ds3_pf_next + q * sb) instead */
        const pf_stream pfs = {base + sb, next - (base + sb), (intptr_t)sb};
        for (int q = 0; q < DEC_STREAMS; q++)
            for (size_t off = 0; off < sb && off < DEC_STREAM_PF; off += 64) _mm_prefetch(base + q * sb + off, PF_HINT);
        for (int64_t i = 0; i < h; i++)
            dec_rows(dt, DEC_STREAMS, NT, DEC_STREAM_PF, w, r0 + i, h, x, ldx, y + i, ldy, pfs);
        r = r0 + DEC_STREAMS * h;
    } else {
        size_t nb = total < PF_DIST ? total : PF_DIST;
        for (size_t off = 0; off < nb; off += 64) _mm_prefetch(base + off, PF_HINT);
    }
    if (dt == DS3_DT_F8E4M3 ? NT == 1 : NT <= DEC8_MAXT) /* FP8 keeps block sums too: 8 rows only for 1 token */
        for (; r + 8 <= r1; r += 8) dec_rows(dt, 8, NT, PF_DIST, w, r, 1, x, ldx, y + (r - r0), ldy, pf);
    for (; r + 4 <= r1; r += 4) dec_rows(dt, 4, NT, PF_DIST, w, r, 1, x, ldx, y + (r - r0), ldy, pf);
    for (; r < r1; r++) dec_rows(dt, 1, NT, PF_DIST, w, r, 1, x, ldx, y + (r - r0), ldy, pf);
}

/* A shared one-token call (kernels.h, ds3_share): decode's four streams, their rows claimed in
 * blocks by ds3_share_run, each block's rows run here; the owner then runs the rows past the
 * streams as decode does. FP8 on the bf16 route goes to fp8_avx512.c. */
typedef struct {
    int dt;
    const ds3_mat *w;
    int64_t r0, h; /* first row, rows per stream */
    const float *x;
    float *y;
} share_arg;
AI void share_rows_dt(const int dt, const share_arg *a, int64_t i0, int64_t i1, size_t sb, const char *pf_end,
                      intptr_t pf_jump) {
    const pf_stream pfs = {pf_end, pf_jump, (intptr_t)sb};
    for (int64_t i = i0; i < i1; i++) dec_rows(dt, DEC_STREAMS, 1, DEC_STREAM_PF, a->w, a->r0 + i, a->h, a->x, 0, a->y + i, 0, pfs);
}
static void share_rows(void *p, int64_t i0, int64_t i1, size_t sb, const char *pf_end, intptr_t pf_jump) {
    const share_arg *a = p;
    switch (a->dt) {
    case DS3_DT_F32: share_rows_dt(DS3_DT_F32, a, i0, i1, sb, pf_end, pf_jump); break;
    case DS3_DT_BF16: share_rows_dt(DS3_DT_BF16, a, i0, i1, sb, pf_end, pf_jump); break;
    case DS3_DT_F16: share_rows_dt(DS3_DT_F16, a, i0, i1, sb, pf_end, pf_jump); break;
    default: share_rows_dt(DS3_DT_F8E4M3, a, i0, i1, sb, pf_end, pf_jump); break;
    }
}

static void avx512_matmul(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                          size_t ldy);
static int fp8_route(const ds3_mat *w) { return w->dtype == DS3_DT_F8E4M3 && fp8_bf16_on(); }

int ds3_share_blocks(const ds3_mat *w, int64_t r0, int64_t r1, int T) {
    if (T != 1 || ds3_kern != &ds3_kernels_avx512 || r1 - r0 < 16 * DEC_STREAMS ||
        (w->dtype != DS3_DT_F32 && w->dtype != DS3_DT_BF16 && w->dtype != DS3_DT_F16 && w->dtype != DS3_DT_F8E4M3))
        return 0;
    if (fp8_route(w) && !ds3_fp8_bf16_reserve(w->cols)) return 0; /* the owner's buffer, before any claim */
    const int64_t h = (r1 - r0) / DEC_STREAMS;
    return (int)((h + DS3_SHARE_ROWS - 1) / DS3_SHARE_ROWS);
}

void ds3_matmul_shared(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, float *y, ds3_share *sh, int helper) {
    if (fp8_route(w)) {
        const int rc = ds3_fp8_bf16_matmul_shared(w, r0, r1, x, y, sh, helper);
        assert(rc == 0 || helper); /* the owner's buffer came with ds3_share_blocks */
        (void)rc;                  /* a helper out of memory leaves the blocks to the owner */
        return;
    }
    const int64_t h = (r1 - r0) / DEC_STREAMS;
    share_arg a = {w->dtype, w, r0, h, x, y};
    ds3_share_run(sh, helper, w, r0, r1, ds3_row_bytes(w->dtype, w->cols), share_rows, &a);
    /* the owner's last rows past the streams (fewer than four): any row split gives the same bits */
    if (!helper && r0 + DEC_STREAMS * h < r1)
        avx512_matmul(w, r0 + DEC_STREAMS * h, r1, x, (size_t)w->cols, 1, y + DEC_STREAMS * h, (size_t)(r1 - r0));
}

/* ---- dequantization of a column span of one row (also the public dequant_row) -------------- */

AI void deq_span(const int dt, const ds3_mat *w, int64_t r, int64_t c0, int64_t c1, float *dst) {
    const size_t esz = dt == DS3_DT_F32 ? 4 : dt == DS3_DT_F8E4M3 ? 1 : 2;
    const void *row = (const char *)w->data + (size_t)r * (size_t)w->cols * esz;
    __m512 s1 = _mm512_setzero_ps(), s2 = s1;
    int two = 0;
    int64_t c = c0;
    while (c < c1) {
        int64_t e = c1;
        if (dt == DS3_DT_F8E4M3) { /* one scale block at a time */
            int64_t nbc = (w->cols + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK;
            int64_t be = (c / DS3_FP8_BLOCK + 1) * DS3_FP8_BLOCK;
            if (be < e) e = be;
            float s = w->scale[(r / DS3_FP8_BLOCK) * nbc + c / DS3_FP8_BLOCK];
            two = fp8_big(s);
            s1 = _mm512_set1_ps(two ? FP8_POW : s * FP8_POW);
            s2 = _mm512_set1_ps(s);
        }
        for (; c + 16 <= e; c += 16) {
            __m512 v = two ? load_w(dt, row, c, 0, 0, s1, s2, 1) : load_w(dt, row, c, 0, 0, s1, s2, 0);
            _mm512_storeu_ps(dst + (c - c0), v);
        }
        if (c < e) {
            __mmask16 m = tail_mask(e - c);
            __m512 v = two ? load_w(dt, row, c, m, 1, s1, s2, 1) : load_w(dt, row, c, m, 1, s1, s2, 0);
            _mm512_mask_storeu_ps(dst + (c - c0), m, v);
            c = e;
        }
    }
}

static void avx512_dequant_row(const ds3_mat *w, int64_t r, int64_t c0, int64_t c1, float *dst) {
    switch (w->dtype) {
    case DS3_DT_F32: deq_span(DS3_DT_F32, w, r, c0, c1, dst); break;
    case DS3_DT_BF16: deq_span(DS3_DT_BF16, w, r, c0, c1, dst); break;
    case DS3_DT_F16: deq_span(DS3_DT_F16, w, r, c0, c1, dst); break;
    case DS3_DT_F8E4M3: deq_span(DS3_DT_F8E4M3, w, r, c0, c1, dst); break;
    default: break;
    }
}

/* ---- prefill: dequantized tile + 4-row x 6-token micro-kernel ------------------------------- */

#ifndef PF_RT
#define PF_RT 16
#define PF_KC 1024
#endif
enum { RT = PF_RT, KC = PF_KC, TG = 64, MT = 6, WLD = KC + 16 };

/* acc[i][j] (row i of the 4-row group, token j) over kn columns of the tile; wt rows are WLD
 * apart (not a multiple of 4 KB, which would put every row in the same L1 sets) and zero-padded
 * to a multiple of 16, x rows ldx apart. Partial sums live in ab between column tiles; the last
 * tile reduces them into y. */
AI void micro(const int NT, const int f8, const float *wt, const float *x, size_t ldx, int64_t kn, int first,
              int last, __m512 *ab, float *y, size_t ldy, int nrow, const float *pre, const float *f) {
    __m512 acc[4][MT];
    UNROLL
    for (int i = 0; i < 4; i++)
        UNROLL
        for (int j = 0; j < NT; j++) acc[i][j] = first || f8 ? _mm512_setzero_ps() : ab[j * 4 + i];
    int64_t k = 0;
    for (; k + 16 <= kn; k += 16) {
        __m512 wv[4];
        UNROLL
        for (int i = 0; i < 4; i++) wv[i] = _mm512_load_ps(wt + (size_t)i * WLD + k);
        UNROLL
        for (int j = 0; j < NT; j++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)j * ldx + k);
            UNROLL
            for (int i = 0; i < 4; i++) acc[i][j] = _mm512_fmadd_ps(xv, wv[i], acc[i][j]);
        }
    }
    if (k < kn) {
        __mmask16 m = tail_mask(kn - k);
        __m512 wv[4];
        UNROLL
        for (int i = 0; i < 4; i++) wv[i] = _mm512_load_ps(wt + (size_t)i * WLD + k);
        UNROLL
        for (int j = 0; j < NT; j++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)j * ldx + k);
            UNROLL
            for (int i = 0; i < 4; i++) acc[i][j] = _mm512_fmadd_ps(xv, wv[i], acc[i][j]);
        }
    }
    if (f8) { /* FP8: acc holds one 128-column block's sums (kn <= 128); fold in its scale */
        UNROLL
        for (int i = 0; i < 4; i++) {
            const __m512 pv = _mm512_set1_ps(pre[i]), fv = _mm512_set1_ps(f[i]);
            UNROLL
            for (int j = 0; j < NT; j++)
                acc[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(acc[i][j], pv), fv, first ? _mm512_setzero_ps() : ab[j * 4 + i]);
        }
    }
    if (last) {
        UNROLL
        for (int j = 0; j < NT; j++)
            UNROLL
            for (int i = 0; i < nrow; i++) y[(size_t)j * ldy + i] = _mm512_reduce_add_ps(acc[i][j]);
    } else {
        UNROLL
        for (int i = 0; i < 4; i++)
            UNROLL
            for (int j = 0; j < NT; j++) ab[j * 4 + i] = acc[i][j];
    }
}

/* The micro-kernel for a runtime token count (1..MT), plain (f8 = 0) or folding FP8 block scales. */
#define MICRO_NT(F8)                                                                                  \
    switch (nt) {                                                                                     \
    case 1: micro(1, F8, wt, x, ldx, kn, first, last, ab, y, ldy, nrow, pre, f); break;              \
    case 2: micro(2, F8, wt, x, ldx, kn, first, last, ab, y, ldy, nrow, pre, f); break;              \
    case 3: micro(3, F8, wt, x, ldx, kn, first, last, ab, y, ldy, nrow, pre, f); break;              \
    case 4: micro(4, F8, wt, x, ldx, kn, first, last, ab, y, ldy, nrow, pre, f); break;              \
    case 5: micro(5, F8, wt, x, ldx, kn, first, last, ab, y, ldy, nrow, pre, f); break;              \
    default: micro(MT, F8, wt, x, ldx, kn, first, last, ab, y, ldy, nrow, pre, f); break;            \
    }
static void micro_n(int nt, int f8, const float *wt, const float *x, size_t ldx, int64_t kn, int first, int last,
                    __m512 *ab, float *y, size_t ldy, int nrow, const float *pre, const float *f) {
    if (f8) MICRO_NT(1) else MICRO_NT(0)
}
#undef MICRO_NT

/* FP8 tile row: bits * FP8_XPOW (exact: e4m3 * 2^-24 as a normal f32), so that x * tile is the
 * very product the decode loop forms as (x * FP8_XPOW) * bits. */
AI void deq_raw8(const ds3_mat *w, int64_t r, int64_t c0, int64_t c1, float *dst) {
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * (size_t)w->cols;
    const __m512 xp = _mm512_set1_ps(FP8_XPOW);
    int64_t c = c0;
    for (; c + 16 <= c1; c += 16)
        _mm512_storeu_ps(dst + (c - c0), _mm512_mul_ps(fp8_bits(_mm_loadu_si128((const __m128i *)(row + c))), xp));
    if (c < c1) {
        __mmask16 m = tail_mask(c1 - c);
        _mm512_mask_storeu_ps(dst + (c - c0), m, _mm512_mul_ps(fp8_bits(_mm_maskz_loadu_epi8(m, row + c)), xp));
    }
}

AI void prefill(const int dt, const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T,
                float *y, size_t ldy) {
    _Alignas(64) float wt[RT * WLD];        /* (RT, KC) dequantized tile, zero padded */
    _Alignas(64) __m512 ab[RT / 4][TG * 4]; /* partial 16-lane sums per (row group, token, row) */
    const int64_t K = w->cols;
    for (int t0 = 0; t0 < T; t0 += TG) {
        int tn = T - t0 < TG ? T - t0 : TG;
        for (int64_t rt = r0; rt < r1; rt += RT) {
            int rn = r1 - rt < RT ? (int)(r1 - rt) : RT;
            for (int64_t kc = 0; kc < K; kc += KC) {
                int64_t kn = K - kc < KC ? K - kc : KC, kn16 = (kn + 15) & ~(int64_t)15;
                for (int i = 0; i < RT; i++) {
                    float *d = wt + (size_t)i * WLD;
                    if (i < rn) {
                        if (dt == DS3_DT_F8E4M3) deq_raw8(w, rt + i, kc, kc + kn, d);
                        else deq_span(dt, w, rt + i, kc, kc + kn, d);
                        memset(d + kn, 0, (size_t)(kn16 - kn) * sizeof(float));
                    } else if (i < ((rn + 3) & ~3)) {
                        memset(d, 0, (size_t)kn16 * sizeof(float));
                    }
                }
                if (dt == DS3_DT_F8E4M3) { /* one 128-column scale block at a time (KC is a multiple of 128) */
                    const int64_t nbc = (K + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK;
                    for (int64_t sb = 0; sb < kn; sb += DS3_FP8_BLOCK) {
                        const int64_t sn = kn - sb < DS3_FP8_BLOCK ? kn - sb : DS3_FP8_BLOCK, cb = (kc + sb) / DS3_FP8_BLOCK;
                        const int first = kc + sb == 0, last = kc + sb + sn == K;
                        for (int g = 0; g * 4 < rn; g++) {
                            float pre[4], f[4];
                            for (int i = 0; i < 4; i++) {
                                int64_t rr = rt + g * 4 + (i < rn - g * 4 ? i : 0);
                                fp8_block_mult(w->scale[(rr / DS3_FP8_BLOCK) * nbc + cb], &pre[i], &f[i]);
                            }
                            for (int tb = 0; tb < tn; tb += MT) {
                                int nt = tn - tb < MT ? tn - tb : MT, nrow = rn - g * 4 < 4 ? rn - g * 4 : 4;
                                const float *xb = x + (size_t)(t0 + tb) * ldx + kc + sb;
                                float *yb = y + (size_t)(t0 + tb) * ldy + (size_t)(rt - r0) + (size_t)g * 4;
                                micro_n(nt, 1, wt + (size_t)g * 4 * WLD + sb, xb, ldx, sn, first, last, &ab[g][tb * 4], yb,
                                        ldy, nrow, pre, f);
                            }
                        }
                    }
                    continue;
                }
                int first = kc == 0, last = kc + kn == K;
                for (int tb = 0; tb < tn; tb += MT) {
                    int nt = tn - tb < MT ? tn - tb : MT;
                    const float *xb = x + (size_t)(t0 + tb) * ldx + kc;
                    { /* the token group after next: the attention's scores pass cache rows as the
                       * tokens, straight from memory (decode at depth 512 +1.1-1.6%) */
                        const int tp = tb + 2 * MT < tn ? tb + 2 * MT : tn, tq = tp + MT < tn ? tp + MT : tn;
                        for (int t = tp; t < tq; t++)
                            for (int64_t o = 0; o < kn; o += 16) _mm_prefetch((const char *)(x + (size_t)(t0 + t) * ldx + kc + o), _MM_HINT_T0);
                    }
                    for (int g = 0; g * 4 < rn; g++) {
                        int nrow = rn - g * 4 < 4 ? rn - g * 4 : 4;
                        float *yb = y + (size_t)(t0 + tb) * ldy + (size_t)(rt - r0) + (size_t)g * 4;
                        micro_n(nt, 0, wt + (size_t)g * 4 * WLD, xb, ldx, kn, first, last, &ab[g][tb * 4], yb,
                                ldy, nrow, NULL, NULL);
                    }
                }
            }
        }
    }
}

/* measured crossover (2048x7168, one core): streaming wins up to ~24 tokens, F32 (4 bytes a
 * weight) up to ~16 */
#ifndef DEC_MAXT
#define DEC_MAXT 24
#define DEC_MAXT_F32 16
#define DEC_MAXT_FP8 12
#endif

/* ---- entry points ---------------------------------------------------------------------------- */

AI void matmul_dt(const int dt, const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T,
                  float *y, size_t ldy) {
    /* Both paths compute identical bits; the choice only trades speed. Up to DEC_MAXT tokens the
     * weights are dequantized in registers, streamed once per group of at most 6 tokens; above
     * that they are dequantized once into a tile that every token reuses. */
    if (T > (dt == DS3_DT_F32 ? DEC_MAXT_F32 : dt == DS3_DT_F8E4M3 ? DEC_MAXT_FP8 : DEC_MAXT)) {
        prefill(dt, w, r0, r1, x, ldx, T, y, ldy);
        return;
    }
    const int gmax = dt == DS3_DT_F8E4M3 ? 3 : 6; /* FP8 holds block sums as well: 3 tokens a pass */
    int passes = (T + gmax - 1) / gmax;
    for (int p = 0, t0 = 0; p < passes; p++) {
        int nt = (T - t0) / (passes - p); /* near-equal groups: 7 = 4 + 3, not 6 + 1 */
        const float *xp = x + (size_t)t0 * ldx;
        float *yp = y + (size_t)t0 * ldy;
        switch (nt) {
        case 1: decode(dt, 1, w, r0, r1, xp, ldx, yp, ldy); break;
        case 2: decode(dt, 2, w, r0, r1, xp, ldx, yp, ldy); break;
        case 3: decode(dt, 3, w, r0, r1, xp, ldx, yp, ldy); break;
        case 4: decode(dt, 4, w, r0, r1, xp, ldx, yp, ldy); break;
        case 5: decode(dt, 5, w, r0, r1, xp, ldx, yp, ldy); break;
        default: decode(dt, 6, w, r0, r1, xp, ldx, yp, ldy); break;
        }
        t0 += nt;
    }
}

static void matmul_f32(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                       size_t ldy) {
    matmul_dt(DS3_DT_F32, w, r0, r1, x, ldx, T, y, ldy);
}
static void matmul_bf16(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                        size_t ldy) {
    matmul_dt(DS3_DT_BF16, w, r0, r1, x, ldx, T, y, ldy);
}
static void matmul_f16(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                       size_t ldy) {
    matmul_dt(DS3_DT_F16, w, r0, r1, x, ldx, T, y, ldy);
}
static void matmul_fp8(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T, float *y,
                       size_t ldy) {
    if (fp8_bf16_on() && ds3_fp8_bf16_matmul(w, r0, r1, x, ldx, T, y, ldy) == 0) return;
    matmul_dt(DS3_DT_F8E4M3, w, r0, r1, x, ldx, T, y, ldy);
}

static void avx512_matmul(const ds3_mat *w, int64_t r0, int64_t r1, const float *x, size_t ldx, int T,
                          float *y, size_t ldy) {
    if (r1 <= r0 || T <= 0) return;
    switch (w->dtype) {
    case DS3_DT_F32: matmul_f32(w, r0, r1, x, ldx, T, y, ldy); break;
    case DS3_DT_BF16: matmul_bf16(w, r0, r1, x, ldx, T, y, ldy); break;
    case DS3_DT_F16: matmul_f16(w, r0, r1, x, ldx, T, y, ldy); break;
    case DS3_DT_F8E4M3: matmul_fp8(w, r0, r1, x, ldx, T, y, ldy); break;
    default: break;
    }
}

/* ---- vecmat: y_j = x_j W[r0:r1, c0:c1] ------------------------------------------------------- */

/* NJ vectors x NC*16 columns (16-lane chunks, masked at the right edge) over rows [r0, r1):
 * every output lane is one fma chain in r order from 0, as in ds3_vecmat_generic. With one
 * vector (decode) a block is up to 256 columns wide, so a row of up to 256 values is read once,
 * front to back, and the rows stream with a prefetch VM_PF_ROWS rows ahead that continues at
 * ds3_pf_next past the last row when the block spans whole rows. */
#define VM_PF_ROWS 16
AI void vm_block(const int dt, const int NJ, const int NC, const ds3_mat *w, int64_t r0, int64_t r1, int64_t c,
                 int64_t c1, const float *x, size_t ldx, float *y, size_t ldy) {
    const size_t esz = dt == DS3_DT_F32 ? 4 : dt == DS3_DT_F8E4M3 ? 1 : 2;
    const int64_t nbc = (w->cols + DS3_FP8_BLOCK - 1) / DS3_FP8_BLOCK;
    const size_t rowb = (size_t)w->cols * esz;
    __mmask16 m[16];
    UNROLL
    for (int q = 0; q < NC; q++) {
        int64_t n = c1 - (c + 16 * q);
        m[q] = n >= 16 ? (__mmask16)0xFFFF : n > 0 ? tail_mask(n) : 0;
    }
    /* prefetch span of a row: the block's bytes; whole rows form one stream that goes on at ds3_pf_next */
    const size_t span = (size_t)((c1 - c < 16 * NC ? c1 - c : 16 * NC)) * esz;
    const int whole = c == 0 && c1 == w->cols;
    const char *pend = (const char *)w->data + (size_t)r1 * rowb;
    const intptr_t pjump = whole && ds3_pf_next ? (const char *)ds3_pf_next - pend : 0;
    __m512 acc[8][16];
    UNROLL
    for (int j = 0; j < NJ; j++)
        UNROLL
        for (int q = 0; q < NC; q++) acc[j][q] = _mm512_setzero_ps();
    for (int64_t r = r0; r < r1; r++) {
        const void *row = (const char *)w->data + (size_t)r * rowb;
        if (NJ == 1) {
            const char *pa = (const char *)row + VM_PF_ROWS * rowb + (size_t)c * esz;
            if (pa < pend || pjump)
                for (size_t o = 0; o < span; o += 64) _mm_prefetch(pa >= pend ? pa + o + pjump : pa + o, PF_HINT);
        }
        __m512 wv[16];
        UNROLL
        for (int q = 0; q < NC; q++) {
            __m512 s1 = _mm512_setzero_ps(), s2 = s1;
            int two = 0;
            if (dt == DS3_DT_F8E4M3 && m[q]) { /* c0 % 16 == 0 (checked by the caller): no chunk straddles a
                                                  * block; chunks past c1 read nothing, not even their scale */
                float sc = w->scale[(r / DS3_FP8_BLOCK) * nbc + (c + 16 * q) / DS3_FP8_BLOCK];
                two = fp8_big(sc);
                s1 = _mm512_set1_ps(two ? FP8_POW : sc * FP8_POW);
                s2 = _mm512_set1_ps(sc);
            }
            wv[q] = two ? load_w(dt, row, c + 16 * q, m[q], 1, s1, s2, 1) : load_w(dt, row, c + 16 * q, m[q], 1, s1, s2, 0);
        }
        UNROLL
        for (int j = 0; j < NJ; j++) {
            __m512 xv = _mm512_set1_ps(x[(size_t)j * ldx + (size_t)(r - r0)]);
            UNROLL
            for (int q = 0; q < NC; q++) acc[j][q] = _mm512_fmadd_ps(xv, wv[q], acc[j][q]);
        }
    }
    UNROLL
    for (int j = 0; j < NJ; j++)
        UNROLL
        for (int q = 0; q < NC; q++) _mm512_mask_storeu_ps(y + (size_t)j * ldy + 16 * q, m[q], acc[j][q]);
}

/* Up to 8 vectors per pass (the attention's head groups read the cache once), 48-64 columns;
 * a single vector (decode) 256 columns. */
AI void vecmat_dt(const int dt, const ds3_mat *w, int64_t r0, int64_t r1, int64_t c0, int64_t c1, const float *x,
                  size_t ldx, int nj, float *y, size_t ldy) {
    for (int j0 = 0; j0 < nj; j0 += 8) {
        const int n = nj - j0 < 8 ? nj - j0 : 8, cw = n == 1 ? 256 : n > 6 ? 48 : 64;
        const float *xj = x + (size_t)j0 * ldx;
        for (int64_t c = c0; c < c1; c += cw) {
            float *yj = y + (size_t)j0 * ldy + (c - c0);
            switch (n) {
            case 1: vm_block(dt, 1, 16, w, r0, r1, c, c1, xj, ldx, yj, ldy); break;
            case 2: vm_block(dt, 2, 4, w, r0, r1, c, c1, xj, ldx, yj, ldy); break;
            case 3: vm_block(dt, 3, 4, w, r0, r1, c, c1, xj, ldx, yj, ldy); break;
            case 4: vm_block(dt, 4, 4, w, r0, r1, c, c1, xj, ldx, yj, ldy); break;
            case 5: vm_block(dt, 5, 4, w, r0, r1, c, c1, xj, ldx, yj, ldy); break;
            case 6: vm_block(dt, 6, 4, w, r0, r1, c, c1, xj, ldx, yj, ldy); break;
            case 7: vm_block(dt, 7, 3, w, r0, r1, c, c1, xj, ldx, yj, ldy); break;
            default: vm_block(dt, 8, 3, w, r0, r1, c, c1, xj, ldx, yj, ldy); break;
            }
        }
    }
}

static void avx512_vecmat(const ds3_mat *w, int64_t r0, int64_t r1, int64_t c0, int64_t c1, const float *x,
                          size_t ldx, int nj, float *y, size_t ldy) {
    if (c1 <= c0 || nj <= 0) return;
    switch (w->dtype) {
    case DS3_DT_F32: vecmat_dt(DS3_DT_F32, w, r0, r1, c0, c1, x, ldx, nj, y, ldy); break;
    case DS3_DT_BF16: vecmat_dt(DS3_DT_BF16, w, r0, r1, c0, c1, x, ldx, nj, y, ldy); break;
    case DS3_DT_F16: vecmat_dt(DS3_DT_F16, w, r0, r1, c0, c1, x, ldx, nj, y, ldy); break;
    case DS3_DT_F8E4M3:
        if (fp8_bf16_on() && r1 > r0 &&
            ds3_fp8_bf16_vecmat(w, r0, r1, c0, c1, x, ldx, nj, y, ldy) == 0)
            break;
        if (c0 % 16 == 0) vecmat_dt(DS3_DT_F8E4M3, w, r0, r1, c0, c1, x, ldx, nj, y, ldy);
        else ds3_vecmat_generic(w, r0, r1, c0, c1, x, ldx, nj, y, ldy);
        break;
    default: ds3_vecmat_generic(w, r0, r1, c0, c1, x, ldx, nj, y, ldy); break;
    }
}

static float avx512_dot(int n, const float *a, const float *b) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

static void avx512_axpy(int n, float a, const float *x, float *y) {
    __m512 av = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

/* exp(x) for 16 lanes: x = n ln2 + r, |r| <= ln2/2, exp(r) by Cephes' expf polynomial (~1 ulp),
 * scaled by 2^n with vscalefps (which overflows to inf and underflows to 0 by itself). x is
 * clamped to [-88, 89] first so that n stays small; NaN goes through as 89 (silu's z keeps it). */
AI __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(89.0f)), _mm512_set1_ps(-88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* SwiGLU's silu(g) * u in the order of ref.c (g / (1 + e) * u); only exp differs (<= ~2 ulp).
 * Decode runs it on the main thread between two passes while the other threads wait: 9 us per
 * MoE layer of the 1.2B model with libm's expf, ~1 us here. */
static void avx512_silu_mul(size_t n, const float *g, const float *u, float *a) {
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : tail_mask((int64_t)(n - i));
        const __m512 z = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
        const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), z)));
        _mm512_mask_storeu_ps(a + i, m, _mm512_mul_ps(_mm512_div_ps(z, d), uv));
    }
}

/* softmax(scale * row) in place, in ref.c's steps (scale, max, exp(x - max), one sum, multiply
 * by its inverse); exp is exp16 and the sum is 16 f32 lanes added by a fixed tree. Against libm's
 * expf per score: FP8 decode of 512 tokens from an empty cache +2.4-2.8% (per-token A/B medians),
 * 128 tokens +0.1%. */
static void avx512_softmax(float *row, int n, float scale, float ms[2]) {
    const __m512 sv = _mm512_set1_ps(scale);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : tail_mask(n - i);
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + i), sv);
        _mm512_mask_storeu_ps(row + i, m, v);
        mx = _mm512_mask_max_ps(mx, m, mx, v);
    }
    const float mxs = _mm512_reduce_max_ps(mx);
    const __m512 mv = _mm512_set1_ps(mxs);
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : tail_mask(n - i);
        const __m512 e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + i), mv)));
        _mm512_mask_storeu_ps(row + i, m, e);
        sum = _mm512_add_ps(sum, e);
    }
    const float tot = _mm512_reduce_add_ps(sum);
    const __m512 inv = _mm512_set1_ps(1.0f / tot);
    if (ms) {
        ms[0] = mxs;
        ms[1] = tot;
    }
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : tail_mask(n - i);
        _mm512_mask_storeu_ps(row + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + i), inv));
    }
}

const ds3_kernels ds3_kernels_avx512 = {
    .name = "avx512",
    .matmul = avx512_matmul,
    .dequant_row = avx512_dequant_row,
    .vecmat = avx512_vecmat,
    .dot = avx512_dot,
    .axpy = avx512_axpy,
    .silu_mul = avx512_silu_mul,
    .softmax = avx512_softmax,
};
