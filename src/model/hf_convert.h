/* hf_convert.h -- re-write a Hugging Face safetensors checkpoint with another float dtype. */
#ifndef DS3_HF_CONVERT_H
#define DS3_HF_CONVERT_H

#include <stddef.h>

#include "kernels/kernels.h"

/* Copy src_dir (config.json, *.safetensors, tokenizer files) to dst_dir as one model.safetensors
 * whose F32/BF16/F16 tensors with 2+ dimensions or named "*norm*" are converted to `dt`
 * (F32, BF16 or F16; round to nearest even). FP8 tensors, their scales, the router bias
 * (e_score_correction_bias) and 1-D integer tensors are kept as they are. Files are written
 * atomically. */
int ds3_hf_convert(const char *src_dir, const char *dst_dir, ds3_dtype dt, char *err, size_t errlen);

#endif
