/* quant.h -- GGML block-quantised formats (bit-exact with ggml-common.h), their scalar
 * dequantisers and quantisers, and the 8-bit activation format of the fast kernels.
 *
 * Blocks (QK = elements per block, bytes):
 *   Q8_0 (32, 34): f16 d, int8 q[32]                 x = d*q
 *   Q4_0 (32, 18): f16 d, u8 qs[16]                  x[j] = d*((qs[j]&15)-8), x[j+16] = d*((qs[j]>>4)-8)
 *   Q2_K (256, 84), Q3_K (256, 110), Q4_K (256, 144), Q5_K (256, 176), Q6_K (256, 210): super-blocks
 *   of 256 with 6-bit (Q3..Q5) / 8-bit (Q6) / 4-bit (Q2) sub-block scales; see quant_ref.c.
 * Reference: ggml/src/ggml-common.h, ggml/src/ggml-quants.c (dequantize_row_*, quantize_row_*_ref). */
#ifndef DS3_QUANT_H
#define DS3_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

typedef struct { uint16_t d; int8_t qs[32]; } ds3_blk_q8_0;
typedef struct { uint16_t d; uint8_t qs[16]; } ds3_blk_q4_0;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } ds3_blk_q4_k;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } ds3_blk_q5_k;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } ds3_blk_q6_k;
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } ds3_blk_q2_k;
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } ds3_blk_q3_k;

/* Q8_0x16 (DS3_DT_Q8_0X16): Q8_0 rows regrouped at load so that the AVX-512 VNNI kernel reads 16
 * rows at once with one row per 32-bit lane (as llama.cpp's CPU repack buffers do). The matrix
 * needs rows % 16 == 0. Group g (rows 16g..16g+15) keeps the bytes that rows held before,
 * [16g rb, 16(g+1) rb) with rb = ds3_row_bytes(cols), so row-range arithmetic at 16-row
 * boundaries is unchanged; inside the group, block b (columns 32b..32b+31) is 544 bytes at b*544:
 *   byte 64j + 4i + m (j < 8, i < 16, m < 4) = q[16g + i][32b + 4j + m] + 128 (as uint8)
 *   bytes 512 + 2i, 513 + 2i                 = f16 d of row 16g + i, block b
 * The values are exactly those of the Q8_0 blocks (ds3_q8_0x16_block gives one back). */
#define DS3_Q8X16_ROWS 16
/* Q4_Kx16 (DS3_DT_Q4_KX16) likewise from Q4_K: super-block s of group g is 2304 bytes at s*2304
 * (the 16 rows' 144-byte blocks):
 *   bytes 64v + 4i + m (v < 32)  = qs[4v + m] of row 16g + i (nibbles as stored)
 *   bytes 2048 + 4i .. +3        = f16 d, f16 dmin of row 16g + i
 *   bytes 2112 + 64k + 4i + m    = scales[4k + m] of row 16g + i (k < 3, 6-bit packing as stored) */
int ds3_q4_kx16_repack(void *data, int64_t rows, int64_t cols); /* as Q8_0's; cols % 256 == 0 */
void ds3_q4_kx16_block(const ds3_mat *w, int64_t r, int64_t b, ds3_blk_q4_k *out);
/* 1 when the kernels in use read Q8_0x16 / Q4_Kx16 faster (AVX-512 VNNI), so loaders repack. */
int ds3_x16_wanted(void);
/* Repack a (rows, cols) Q8_0 matrix in place; rows % 16 == 0, cols % 32 == 0. -1: out of memory. */
int ds3_q8_0x16_repack(void *data, int64_t rows, int64_t cols);
/* Block b of row r of a Q8_0x16 matrix, as a plain Q8_0 block. */
void ds3_q8_0x16_block(const ds3_mat *w, int64_t r, int64_t b, ds3_blk_q8_0 *out);

/* Elements per block and bytes per block of a quantised ds3_dtype (0 for others). */
int ds3_q_blck(ds3_dtype t);
size_t ds3_q_blck_bytes(ds3_dtype t);
/* Bytes of one row of `cols` elements (any dtype; FP8 scales not included). */
size_t ds3_row_bytes(ds3_dtype t, int64_t cols);
/* Bytes of a whole matrix (FP8 block scales included). */
double ds3_mat_bytes(const ds3_mat *w);

/* Dequantise blocks [b0, b0 + nb) of one row (row = pointer to its first block) into y. */
void ds3_q_dequant_blocks(ds3_dtype t, const void *row, int64_t b0, int64_t nb, float *y);

/* Quantise n floats (n a multiple of the block size) into dst (n / blck blocks). Q8_0 and Q4_0
 * round exactly like ggml's quantize_row_*_ref; the K-quants use a simpler min/max search
 * (one pass per sub-block, then re-rounding against the 6/8-bit quantised sub-block scales).
 * Returns 0, or -1 for a dtype without a quantiser. */
int ds3_q_quantize_row(ds3_dtype t, const float *x, int64_t n, void *dst);

/* The fast kernels' activation format: per block of 32 values one f32 scale and the int8
 * values (round-to-nearest of x/d, d = max|x|/127), plus per 32 the float d*sum(q). */
typedef struct {
    int8_t *q;      /* (cols,) */
    float *d;       /* (cols/32,) */
    float *ds;      /* (cols/32,) d * sum(q) */
} ds3_q8_act;
void ds3_q8_quantize_act(const float *x, int64_t cols, int8_t *q, float *d, float *ds);

#endif
