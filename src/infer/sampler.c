/* sampler.c -- greedy and filtered random sampling (llama.cpp's order: top-k, softmax with
 * temperature, top-p, min-p, renormalise). RNG: xoshiro256** seeded with splitmix64, so a seed
 * gives the same tokens on every machine. Owns its candidate buffers (allocated once). */
#include "infer/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ds3_sampler {
    ds3_sampler_params p;
    int V;
    uint64_t rng[4];
    int *idx;      /* (V,) candidate ids */
    float *val;    /* (V,) scratch */
};

ds3_sampler_params ds3_sampler_default_params(void) {
    ds3_sampler_params p = {.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .seed = 0x5eed};
    return p;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t next_u64(ds3_sampler *s) {
    uint64_t *r = s->rng, res = rotl(r[1] * 5, 7) * 9, t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = rotl(r[3], 45);
    return res;
}

ds3_sampler *ds3_sampler_new(const ds3_sampler_params *p, int V) {
    ds3_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = p ? *p : ds3_sampler_default_params();
    s->V = V;
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    s->idx = malloc((size_t)V * sizeof *s->idx);
    s->val = malloc((size_t)V * sizeof *s->val);
    if (!s->idx || !s->val) {
        ds3_sampler_free(s);
        return NULL;
    }
    return s;
}

void ds3_sampler_free(ds3_sampler *s) {
    if (!s) return;
    free(s->idx);
    free(s->val);
    free(s);
}

const ds3_sampler_params *ds3_sampler_params_of(const ds3_sampler *s) { return &s->p; }

double ds3_sampler_uniform(ds3_sampler *s) { return (next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

/* The first index of the largest value (NaNs never win; x[0] = NaN gives 0), as the plain loop
 * `if (x[i] > x[b]) b = i` would, but with four independent running maxima and then a search
 * for the first index holding the maximum: the plain loop's compare waits on the load of x[b]
 * (137 us against 20 us over 32K logits, once a token, on the thread the others wait for). */
int ds3_argmax(const float *x, int n) {
    if (n <= 0 || x[0] != x[0]) return 0;
    float m0 = x[0], m1 = x[0], m2 = x[0], m3 = x[0];
    int i = 1;
    for (; i + 4 <= n; i += 4) {
        m0 = x[i] > m0 ? x[i] : m0;
        m1 = x[i + 1] > m1 ? x[i + 1] : m1;
        m2 = x[i + 2] > m2 ? x[i + 2] : m2;
        m3 = x[i + 3] > m3 ? x[i + 3] : m3;
    }
    for (; i < n; i++) m0 = x[i] > m0 ? x[i] : m0;
    m0 = m1 > m0 ? m1 : m0;
    m0 = m2 > m0 ? m2 : m0;
    m0 = m3 > m0 ? m3 : m0;
    for (i = 0; i < n; i++)
        if (x[i] == m0) return i;
    return 0;
}

static int cmp_desc(const void *a, const void *b, void *ctx) {
    const float *val = ctx;
    float x = val[*(const int *)a], y = val[*(const int *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

/* Fill idx[0..n) with the surviving candidates and val[id] with their probabilities. */
static int filter(ds3_sampler *s, const float *logits) {
    const int V = s->V;
    int n = V;
    for (int i = 0; i < V; i++) s->idx[i] = i;
    /* top-k: keep the k largest logits (partial selection, then sort the survivors). */
    int k = s->p.top_k > 0 && s->p.top_k < V ? s->p.top_k : V;
    if (k < V) {
        /* quickselect on idx by logit, descending */
        int lo = 0, hi = V - 1;
        while (lo < hi) {
            float pivot = logits[s->idx[(lo + hi) / 2]];
            int i = lo, j = hi;
            while (i <= j) {
                while (logits[s->idx[i]] > pivot) i++;
                while (logits[s->idx[j]] < pivot) j--;
                if (i <= j) {
                    int t = s->idx[i];
                    s->idx[i] = s->idx[j];
                    s->idx[j] = t;
                    i++;
                    j--;
                }
            }
            if (k - 1 <= j) hi = j;
            else if (k - 1 >= i) lo = i;
            else break;
        }
        n = k;
    }
    /* softmax with temperature over the survivors */
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, logits[s->idx[i]]);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        float v = expf((logits[s->idx[i]] - mx) / s->p.temp);
        s->val[s->idx[i]] = v;
        sum += v;
    }
    for (int i = 0; i < n; i++) s->val[s->idx[i]] = (float)(s->val[s->idx[i]] / sum);
    qsort_r(s->idx, (size_t)n, sizeof *s->idx, cmp_desc, s->val); /* reentrant: sessions run in parallel */
    if (s->p.top_p < 1.0f) {
        double c = 0;
        int m = 0;
        while (m < n) {
            c += s->val[s->idx[m++]];
            if (c >= s->p.top_p) break;
        }
        n = m;
    }
    if (s->p.min_p > 0.0f) {
        float lim = s->p.min_p * s->val[s->idx[0]];
        int m = 1;
        while (m < n && s->val[s->idx[m]] >= lim) m++;
        n = m;
    }
    sum = 0;
    for (int i = 0; i < n; i++) sum += s->val[s->idx[i]];
    for (int i = 0; i < n; i++) s->val[s->idx[i]] = (float)(s->val[s->idx[i]] / sum);
    return n;
}

void ds3_sampler_probs(ds3_sampler *s, const float *logits, float *probs) {
    memset(probs, 0, (size_t)s->V * sizeof *probs);
    if (s->p.temp <= 0.0f) {
        probs[ds3_argmax(logits, s->V)] = 1.0f;
        return;
    }
    int n = filter(s, logits);
    for (int i = 0; i < n; i++) probs[s->idx[i]] = s->val[s->idx[i]];
}

int ds3_sampler_draw(ds3_sampler *s, const float *probs) {
    double u = ds3_sampler_uniform(s), c = 0;
    int last = -1;
    for (int i = 0; i < s->V; i++) {
        if (probs[i] <= 0.0f) continue;
        c += probs[i];
        last = i;
        if (u < c) return i;
    }
    return last >= 0 ? last : 0;
}

int ds3_sampler_sample(ds3_sampler *s, const float *logits) {
    if (s->p.temp <= 0.0f) return ds3_argmax(logits, s->V);
    int n = filter(s, logits);
    double u = ds3_sampler_uniform(s), c = 0;
    for (int i = 0; i < n; i++) {
        c += s->val[s->idx[i]];
        if (u < c) return s->idx[i];
    }
    return s->idx[n - 1];
}
