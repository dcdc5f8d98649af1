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

/* ---- training ---- */

#include <string.h>

void ds3_router_fwd_t(const ds3_config *c, const float *logits, const float *bias, int N, float *s, int32_t *ids,
                      float *wts, float *scratch) {
    const int Nr = c->n_routed_experts, K = c->num_experts_per_tok;
    for (int t = 0; t < N; t++) {
        ds3_router_select(c, logits + (size_t)t * Nr, bias, ids + (size_t)t * K, wts + (size_t)t * K, scratch);
        memcpy(s + (size_t)t * Nr, scratch, (size_t)Nr * sizeof(float)); /* the unbiased scores */
    }
}

/* w_k = sf * s_k / (S + 1e-20) with S = sum of the chosen s (normalised), or w_k = sf * s_k:
 *   normalised: ds_k = sf * (dw_k - sum_j dw_j w_j / sf) / (S + 1e-20)
 * then scores -> logits: sigmoid ds * s (1 - s); softmax s * (ds - sum ds s). */
void ds3_router_bwd(const ds3_config *c, const float *logits, const float *s, const int32_t *ids, const float *dwts,
                    const float *ds_extra, int N, float *dlogits) {
    const int Nr = c->n_routed_experts, K = c->num_experts_per_tok;
    const int normed = c->arch == DS3_ARCH_V3 ? c->norm_topk_prob : (K > 1 && c->norm_topk_prob);
    const float sf = c->arch == DS3_ARCH_V3 || !normed ? c->routed_scaling_factor : 1.0f;
    (void)logits;
    for (int t = 0; t < N; t++) {
        const float *st = s + (size_t)t * Nr;
        const int32_t *id = ids + (size_t)t * K;
        const float *dw = dwts + (size_t)t * K;
        float *dl = dlogits + (size_t)t * Nr;
        for (int e = 0; e < Nr; e++) dl[e] = ds_extra ? ds_extra[(size_t)t * Nr + e] : 0.0f;
        if (normed) {
            float S = 0;
            for (int k = 0; k < K; k++) S += st[id[k]];
            const float den = S + 1e-20f;
            double dot = 0;
            for (int k = 0; k < K; k++) dot += (double)dw[k] * st[id[k]];
            for (int k = 0; k < K; k++) dl[id[k]] += sf * (dw[k] - (float)(dot / den)) / den;
        } else {
            for (int k = 0; k < K; k++) dl[id[k]] += sf * dw[k];
        }
        if (c->scoring_func == DS3_SCORE_SIGMOID) {
            for (int e = 0; e < Nr; e++) dl[e] *= st[e] * (1.0f - st[e]);
        } else {
            double dot = 0;
            for (int e = 0; e < Nr; e++) dot += (double)dl[e] * st[e];
            for (int e = 0; e < Nr; e++) dl[e] = st[e] * (dl[e] - (float)dot);
        }
    }
}

double ds3_balance_loss(const ds3_config *c, const float *s, const int32_t *ids, int N, int group, float alpha,
                        float *ds) {
    const int Nr = c->n_routed_experts, K = c->num_experts_per_tok;
    const int n_groups = N / group;
    double total = 0;
    /* f (Nr,) and P (Nr,) live in a small stack buffer; Nr is at most a few hundred here. */
    double f[1024], P[1024];
    if (Nr > 1024) return 0; /* not supported; the trainer checks Nr <= 1024 */
    for (int g = 0; g < n_groups; g++) {
        const int t0 = g * group;
        for (int e = 0; e < Nr; e++) f[e] = P[e] = 0;
        for (int t = t0; t < t0 + group; t++)
            for (int k = 0; k < K; k++) f[ids[(size_t)t * K + k]] += 1;
        for (int e = 0; e < Nr; e++) f[e] *= (double)Nr / ((double)K * group);
        for (int t = t0; t < t0 + group; t++) {
            const float *st = s + (size_t)t * Nr;
            double sum = 0;
            for (int e = 0; e < Nr; e++) sum += st[e];
            for (int e = 0; e < Nr; e++) P[e] += st[e] / sum;
        }
        double L = 0;
        for (int e = 0; e < Nr; e++) L += f[e] * P[e] / group;
        total += alpha * L / n_groups;
        if (ds) {
            /* dL/ds'_et = alpha f_e / (group n_groups);  ds_et = (g_e - sum_j g_j s'_jt) / sum_j s_jt */
            for (int t = t0; t < t0 + group; t++) {
                const float *st = s + (size_t)t * Nr;
                float *dt = ds + (size_t)t * Nr;
                double sum = 0, dot = 0;
                for (int e = 0; e < Nr; e++) sum += st[e];
                const double gsc = alpha / ((double)group * n_groups);
                for (int e = 0; e < Nr; e++) dot += gsc * f[e] * st[e] / sum;
                for (int e = 0; e < Nr; e++) dt[e] = (float)((gsc * f[e] - dot) / sum);
            }
        }
    }
    return total;
}
