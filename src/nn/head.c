/* head.c -- token embedding lookup (spec section 2: plain row lookup, no scaling). The final
 * norm and the lm head are an rmsnorm plus a linear, composed in src/model/session.c. */
#include "nn/nn.h"

void ds3_embed_fwd(const ds3_mat *emb, const int32_t *tokens, int T, float *out) {
    for (int t = 0; t < T; t++) ds3_dequant_row(emb, tokens[t], 0, emb->cols, out + (size_t)t * emb->cols);
}

/* ---- training ---- */

#include <string.h>

void ds3_embed_fwd_t(float *out, const float *emb, const int32_t *tokens, int N, int d) {
    for (int t = 0; t < N; t++) memcpy(out + (size_t)t * d, emb + (size_t)tokens[t] * d, (size_t)d * sizeof(float));
}

void ds3_embed_bwd(float *demb, const float *dout, const int32_t *tokens, int N, int d) {
    for (int t = 0; t < N; t++) {
        float *g = demb + (size_t)tokens[t] * d;
        const float *s = dout + (size_t)t * d;
        for (int i = 0; i < d; i++) g[i] += s[i];
    }
}
