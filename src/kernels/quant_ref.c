/* quant_ref.c -- scalar kernels for the GGML block-quantised dtypes (placeholder table until the
 * GGUF work lands: NULL entries mean "not available"). */
#include "kernels.h"

const ds3_kernels ds3_qkernels_ref = {.name = "qref"};
