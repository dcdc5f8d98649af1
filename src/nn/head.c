/* head.c -- token embedding lookup (spec section 2: plain row lookup, no scaling). The final
 * norm and the lm head are an rmsnorm plus a linear, composed in src/model/session.c. */
#include "nn/nn.h"

void ds3_embed_fwd(const ds3_mat *emb, const int32_t *tokens, int T, float *out) {
    for (int t = 0; t < T; t++) ds3_kern->dequant_row(emb, tokens[t], 0, emb->cols, out + (size_t)t * emb->cols);
}
