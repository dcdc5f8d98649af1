/* quant_simd.c -- placeholder for the AVX2 quantised kernel table until quant_avx2.c lands
 * (NULL matmul: ds3_kernels_init then uses the scalar twin for AVX2-only CPUs). */
#include "kernels.h"

const ds3_kernels ds3_qkernels_avx2 = {.name = "qavx2"};
