/* test_train_ckpt.c -- a checkpoint written by the trainer (ds3_tmodel_save + config.json) loads
 * in the inference engine (ds3_model_load, the path of `ds3 logits` / `ds3 run`) and gives the
 * same main and MTP logits as the training forward pass (naive vs absorbed MLA: rounding-level
 * differences only; tolerance 2e-4 absolute on logits of magnitude ~1).
 * Owned by the training engineer. */
#include <sys/stat.h>
#include <unistd.h>

#include "train_util.h"

int main(void) {
    TEST_BEGIN("test_train_ckpt");
    char err[DS3_ERR_LEN];
    ds3_config c;
    if (ds3_config_load(&c, "tests/fixtures/train/tiny.json", err, sizeof err)) { CHECK(0, "%s", err); return TEST_REPORT(); }
    const int T = 24, V = c.vocab_size;
    ds3_tmodel *m = ds3_tmodel_new(&c, 1, T, 2, err, sizeof err);
    ds3_tmodel_init(m, 99, 0.2f);
    for (int i = 0; i < m->n_tensors; i++) /* non-trivial norms and selection bias */
        if (m->tensors[i].ndim == 1)
            for (size_t k = 0; k < m->tensors[i].n; k++)
                m->params[m->tensors[i].off + k] = (m->tensors[i].trainable ? 1.0f : 0.0f) + 0.1f * tu_uniform();
    char dir[] = "/tmp/ds3_train_ckpt_XXXXXX", p[256];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(ds3_tmodel_save(m, p, err, sizeof err) == 0, "save: %s", err);
    json_t *cj = ds3_config_to_json(&c);
    char *s = json_dumps(cj, JSON_INDENT(1));
    snprintf(p, sizeof p, "%s/config.json", dir);
    ds3_write_file_atomic(p, s, strlen(s), err, sizeof err);
    free(s), json_decref(cj);
    int32_t inp[24], tgt[24];
    for (int i = 0; i < T; i++) inp[i] = (int)(ds3_rng_next(&tu_rng) % V), tgt[i] = (int)(ds3_rng_next(&tu_rng) % V);
    float *lt = tu_zeros((size_t)T * V), *mt = tu_zeros((size_t)T * V), *li = tu_zeros((size_t)T * V), *mi = tu_zeros((size_t)T * V);
    ds3_tstats st;
    ds3_tmodel_step(m, inp, tgt, 1, 0, &st, lt, mt);
    ds3_model_params mp = ds3_model_default_params();
    ds3_model *im = ds3_model_load(dir, &mp, err, sizeof err);
    CHECK(im != NULL, "load: %s", err);
    if (im) {
        CHECK(ds3_model_has_mtp(im), "checkpoint has no MTP module for the loader");
        ds3_session_params sp = ds3_session_default_params();
        sp.n_threads = 2;
        ds3_session *se = ds3_session_new(im, &sp, err, sizeof err);
        CHECK(ds3_session_eval(se, inp, T, li, err, sizeof err) == 0, "eval: %s", err);
        double d1 = th_maxdiff(lt, li, (size_t)T * V);
        CHECK(d1 < 2e-4, "main logits differ by %g", d1);
        /* MTP: position i takes token i+1 (= tgt[i]) and the final-normed hidden of position i */
        float *hid = tu_zeros((size_t)T * c.hidden_size);
        for (int i = 0; i < T; i++) memcpy(hid + (size_t)i * c.hidden_size, ds3_session_hidden(se, i), c.hidden_size * 4);
        CHECK(ds3_session_mtp_eval(se, tgt, hid, T, mi, err, sizeof err) == 0, "mtp eval: %s", err);
        double d2 = th_maxdiff(mt, mi, (size_t)T * V);
        CHECK(d2 < 2e-4, "MTP logits differ by %g", d2);
        printf("# max |logit diff|: main %.3g, MTP %.3g\n", d1, d2);
        free(hid);
        ds3_session_free(se);
        ds3_model_free(im);
    }
    snprintf(p, sizeof p, "rm -rf %s", dir);
    CHECK(system(p) == 0, "cleanup");
    free(lt), free(mt), free(li), free(mi);
    ds3_tmodel_free(m);
    return TEST_REPORT();
}
