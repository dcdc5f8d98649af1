/* quant_simd.c -- placeholders for the AVX2 / AVX-512 quantised kernel tables. */
#include "kernels.h"

const ds3_kernels ds3_qkernels_avx2 = {.name = "qavx2"};
const ds3_kernels ds3_qkernels_avx512 = {.name = "qavx512"};
