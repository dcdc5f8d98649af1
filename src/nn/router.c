/* router.c -- DeepSeekMoE expert selection for one token (spec 5.2, 5.3).
 *   scores: sigmoid (V3) or softmax over all routed experts (V2), in f32;
 *   selection score = score + e_score_correction_bias (the bias only chooses, never weighs);
 *   group limiting (n_group > 1, topk_method noaux_tc or group_limited_greedy): a group's score
 *   is the sum of its top-2 selection scores when there is a bias (V3), else its max (V2); only
 *   the topk_group best groups stay, the rest are masked with -inf (never 0: biased scores can
 *   be negative);
 *   weights: V3 normalises the unbiased scores of the chosen experts when norm_topk_prob and
 *   always multiplies by routed_scaling_factor (official model.py, HF); V2's hub code either
 *   normalises (norm_topk_prob, top_k > 1) or scales, never both. */
#include <math.h>

#include "nn/nn.h"

void ds3_router_select(const ds3_config *c, const float *logits, const float *bias, int32_t *ids, float *weights,
                       float *scratch) {
    const int Nr = c->n_routed_experts, K = c->num_experts_per_tok, G = c->n_group;
    float *s = scratch, *sel = scratch + Nr, *gs = scratch + 2 * Nr;
    if (c->scoring_func == DS3_SCORE_SIGMOID) {
        for (int e = 0; e < Nr; e++) s[e] = 1.0f / (1.0f + expf(-logits[e]));
    } else {
        float mx = -INFINITY;
        for (int e = 0; e < Nr; e++) mx = logits[e] > mx ? logits[e] : mx;
        float sum = 0;
        for (int e = 0; e < Nr; e++) sum += (s[e] = expf(logits[e] - mx));
        for (int e = 0; e < Nr; e++) s[e] /= sum;
    }
    for (int e = 0; e < Nr; e++) sel[e] = bias ? s[e] + bias[e] : s[e];
    if (G > 1 && c->topk_method != DS3_TOPK_GREEDY) {
        const int per = Nr / G;
        for (int g = 0; g < G; g++) {
            const float *x = sel + g * per;
            if (bias) { /* sum of the two largest */
                float a = -INFINITY, b = -INFINITY;
                for (int i = 0; i < per; i++) {
                    if (x[i] > a) { b = a; a = x[i]; }
                    else if (x[i] > b) b = x[i];
                }
                gs[g] = per >= 2 ? a + b : a;
            } else {
                float a = -INFINITY;
                for (int i = 0; i < per; i++) a = x[i] > a ? x[i] : a;
                gs[g] = a;
            }
        }
        /* Keep the topk_group best groups: mark the kept ones by setting gs to +inf. */
        for (int k = 0; k < c->topk_group; k++) {
            int best = -1;
            for (int g = 0; g < G; g++)
                if (gs[g] != INFINITY && (best < 0 || gs[g] > gs[best])) best = g;
            gs[best] = INFINITY;
        }
        for (int g = 0; g < G; g++)
            if (gs[g] != INFINITY)
                for (int i = 0; i < per; i++) sel[g * per + i] = -INFINITY;
    }
    /* Top-K by selection score, descending; ties go to the lower expert id. */
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int e = 0; e < Nr; e++) {
            if (sel[e] == -INFINITY && best >= 0) continue;
            int taken = 0;
            for (int j = 0; j < k && !taken; j++) taken = ids[j] == e;
            if (taken) continue;
            if (best < 0 || sel[e] > sel[best]) best = e;
        }
        ids[k] = best;
    }
    float sum = 0;
    for (int k = 0; k < K; k++) sum += (weights[k] = s[ids[k]]);
    if (c->arch == DS3_ARCH_V3) {
        if (c->norm_topk_prob)
            for (int k = 0; k < K; k++) weights[k] /= sum + 1e-20f;
        for (int k = 0; k < K; k++) weights[k] *= c->routed_scaling_factor;
    } else {
        if (K > 1 && c->norm_topk_prob)
            for (int k = 0; k < K; k++) weights[k] /= sum + 1e-20f;
        else
            for (int k = 0; k < K; k++) weights[k] *= c->routed_scaling_factor;
    }
}
