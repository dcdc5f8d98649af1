/* test_tokenizer.c -- src/text: tokenizer, streaming decoder, chat template, BPE trainer.
 *
 * References: tests/fixtures/tokenizer/vectors-dev.json (HF tokenizers 0.23.2) and vectors-extra.json
 * (the same library via npm, texts written for ds3: scripts, emoji, whitespace, long documents, random
 * strings, ill-formed UTF-8, tool-call chats). Runs from the repository root. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include <time.h>

#include "harness.h"
#include "text/bpe_train.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "text/utf8.h"
#include "util/common.h"

#define FIX "tests/fixtures/tokenizer/"

static ds3_tokenizer *T; /* DeepSeek-V3 */

static int ids_eq(const int32_t *a, size_t na, json_t *b) {
    if (na != json_array_size(b)) return 0;
    for (size_t i = 0; i < na; i++)
        if (a[i] != json_integer_value(json_array_get(b, i))) return 0;
    return 1;
}

static unsigned char *unhex(const char *h, size_t *n) {
    size_t l = strlen(h) / 2;
    unsigned char *b = malloc(l + 1);
    for (size_t i = 0; i < l; i++) {
        unsigned x;
        sscanf(h + 2 * i, "%2x", &x);
        b[i] = (unsigned char)x;
    }
    *n = l;
    return b;
}

/* Streaming decode must equal one-shot decode, and every chunk must be well-formed on its own. */
static int stream_matches(const ds3_tokenizer *t, const int32_t *ids, size_t n, const char *want, size_t wl) {
    ds3_detok_stream *s = ds3_detok_stream_new(t, 0);
    char *acc = malloc(wl * 2 + 64);
    size_t al = 0, cap = wl * 2 + 64;
    int ok = 1;
    for (size_t i = 0; i <= n && ok; i++) {
        const char *p;
        size_t l;
        int rc = i < n ? ds3_detok_stream_push(s, ids[i], &p, &l) : ds3_detok_stream_finish(s, &p, &l);
        if (rc || !ds3_utf8_valid((const unsigned char *)p, l)) ok = 0;
        if (al + l > cap) ok = 0;
        else memcpy(acc + al, p, l), al += l;
    }
    ok = ok && al == wl && memcmp(acc, want, wl) == 0;
    free(acc);
    ds3_detok_stream_free(s);
    return ok;
}

static int contains_added_text(const char *s) {
    return strstr(s, "<｜") || strstr(s, "<|EOT|>") || strstr(s, "<think>") || strstr(s, "</think>");
}

static void check_vectors(const char *path) {
    json_error_t je;
    json_t *v = json_load_file(path, JSON_ALLOW_NUL, &je);
    CHECK(v != NULL, "%s: %s", path, je.text);
    if (!v) return;
    json_t *cases = json_object_get(v, "cases"), *c;
    size_t i;
    int n_ok = 0, n_cases = 0;
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        size_t tl;
        unsigned char *hex = NULL;
        const char *text;
        if (json_object_get(c, "text_hex")) text = (const char *)(hex = unhex(json_string_value(json_object_get(c, "text_hex")), &tl));
        else text = json_string_value(json_object_get(c, "text")), tl = json_string_length(json_object_get(c, "text"));
        int literal = json_object_get(c, "special") != NULL;
        json_t *want = json_object_get(c, "ids");
        const char *dec_want = json_string_value(json_object_get(c, "decoded"));
        size_t dec_wl = json_string_length(json_object_get(c, "decoded"));
        char err[DS3_ERR_LEN];
        int32_t *ids;
        size_t n;
        int rc = ds3_tokenizer_encode(T, text, tl, 0, literal, &ids, &n, err, sizeof err);
        int ok = rc == 0 && ids_eq(ids, n, want);
        CHECK(ok, "%s: %s: ids differ (%zu vs %zu tokens)", path, name, n, json_array_size(want));
        /* decode */
        char *d;
        size_t dl;
        rc = ds3_tokenizer_decode(T, ids, n, 0, &d, &dl, err, sizeof err);
        int dok = rc == 0 && dl == dec_wl && memcmp(d, dec_want, dl) == 0;
        CHECK(dok, "%s: %s: decoded text differs", path, name);
        if (!rc) free(d);
        CHECK(stream_matches(T, ids, n, dec_want, dec_wl), "%s: %s: streaming decode differs", path, name);
        free(ids);
        /* add_special: BOS (id 0) in front, as tokenizer_config.json's add_bos_token says */
        rc = ds3_tokenizer_encode(T, text, tl, 1, literal, &ids, &n, err, sizeof err);
        CHECK(rc == 0 && n == json_array_size(want) + 1 && ids[0] == 0 && ids_eq(ids + 1, n - 1, want),
              "%s: %s: BOS mode", path, name);
        free(ids);
        /* the other special-token mode: without added-token text both modes agree */
        if (!literal && !hex && !contains_added_text(text)) {
            rc = ds3_tokenizer_encode(T, text, tl, 0, 1, &ids, &n, err, sizeof err);
            CHECK(rc == 0 && ids_eq(ids, n, want), "%s: %s: literal mode differs on plain text", path, name);
            free(ids);
        }
        /* chat cases: render natively */
        json_t *msgs = json_object_get(c, "messages");
        if (msgs) {
            char *mj = json_dumps(msgs, JSON_COMPACT | JSON_ENCODE_ANY), *out;
            size_t ol;
            rc = ds3_chat_render_json(mj, strlen(mj), json_is_true(json_object_get(c, "add_generation_prompt")),
                                      ds3_tokenizer_bos_text(T), &out, &ol, err, sizeof err);
            CHECK(rc == 0 && ol == tl && memcmp(out, text, tl) == 0, "%s: %s: chat template rendering differs", path,
                  name);
            if (!rc) free(out);
            free(mj);
        }
        n_ok += ok && dok;
        n_cases++;
        free(hex);
    }
    printf("%s: %d/%d cases match\n", path, n_ok, n_cases);
    json_decref(v);
}

static void test_utf8(void) {
    struct {
        const char *in;
        size_t n;
        const char *out;
    } c[] = {
        {"abc", 3, "abc"},
        {"a\xff" "b", 3, "a\xEF\xBF\xBD" "b"},
        {"\xe2\x82", 2, "\xEF\xBF\xBD"},                                      /* truncated: one U+FFFD */
        {"\xe0\x80\xaf", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},          /* overlong: each byte */
        {"\xed\xa0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},          /* surrogate */
        {"\xf0\x9f\x98" "x", 4, "\xEF\xBF\xBD" "x"},                          /* maximal subpart */
        {"\xf4\x90\x80\x80", 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"\xc3\xa9\x00z", 4, "\xc3\xa9\x00z"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        size_t ol;
        char *o = ds3_utf8_lossy((const unsigned char *)c[i].in, c[i].n, &ol);
        size_t wl = strlen(c[i].out) + (i == 7 ? 2 : 0);
        CHECK(o && ol == wl && memcmp(o, c[i].out, wl) == 0, "utf8 lossy case %zu", i);
        free(o);
    }
    /* the stream gives the same as the one-shot lossy decoder, for any split of random bytes */
    srand(7);
    for (int it = 0; it < 3000; it++) {
        unsigned char b[64];
        size_t n = (size_t)(rand() % 64);
        for (size_t i = 0; i < n; i++) {
            int r = rand() % 4;
            b[i] = r == 0 ? (unsigned char)(rand() % 128) : r == 1 ? (unsigned char)(0x80 + rand() % 64)
                                                             : (unsigned char)(0xC0 + rand() % 64);
        }
        size_t wl;
        char *w = ds3_utf8_lossy(b, n, &wl);
        ds3_utf8_stream st = {0};
        char out[64 * 4 + 64];
        size_t o = 0;
        for (size_t i = 0; i < n;) {
            size_t k = 1 + (size_t)(rand() % 4);
            if (i + k > n) k = n - i;
            size_t l = ds3_utf8_stream_feed(&st, b + i, k, out + o);
            if (!ds3_utf8_valid((unsigned char *)out + o, l)) o = 9999;
            if (o > 200) break;
            o += l;
            i += k;
        }
        if (o <= 200) o += ds3_utf8_stream_finish(&st, out + o);
        CHECK(o == wl && memcmp(out, w, wl) == 0, "utf8 stream == lossy (iteration %d)", it);
        free(w);
        if (o != wl) break;
    }
}

/* \s translation: for every code point, the compiled pattern matches iff Unicode White_Space. */
static void test_regex_translation(void) {
    const char *pats[] = {"\\s", "[\\s]", "[^\\S]", "\\S", "[\\S]", "[^\\s]", "[^\\r\\n\\s]"};
    for (size_t k = 0; k < sizeof pats / sizeof *pats; k++) {
        size_t tl;
        char *tp = ds3_tokenizer_translate_regex(pats[k], strlen(pats[k]), &tl);
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)tp, tl, PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &ec, &eo, NULL);
        CHECK(re != NULL, "pattern %s -> %s compiles", pats[k], tp);
        if (!re) continue;
        pcre2_match_data *md = pcre2_match_data_create(1, NULL);
        int neg = k >= 3 && k <= 5, bad = 0;
        uint32_t first_bad = 0;
        for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
            if (cp >= 0xD800 && cp <= 0xDFFF) continue;
            char u[4];
            int l = ds3_utf8_put(cp, u);
            int m = pcre2_match(re, (PCRE2_SPTR)u, (size_t)l, 0, 0, md, NULL) >= 0;
            int want = ds3_unicode_is_white_space(cp) ^ neg;
            if (k == 6) want = ds3_unicode_is_white_space(cp) == 0 && cp != '\r' && cp != '\n';
            if (m != want && !bad++) first_bad = cp;
        }
        CHECK(bad == 0, "pattern %s: %d code points disagree with White_Space (first U+%04X)", pats[k], bad, first_bad);
        pcre2_match_data_free(md);
        pcre2_code_free(re);
        free(tp);
    }
}

static char *slurp(const char *path, size_t *n) {
    char err[256];
    return ds3_read_file(path, n, 1u << 30, err, sizeof err);
}

/* Insert extra added_tokens entries into the fixture JSON text. */
static char *with_added(const char *extra) {
    size_t n;
    char *j = slurp(FIX "tokenizer.json", &n);
    char *p = strstr(j, "\"added_tokens\"");
    p = strchr(p, '[') + 1;
    size_t el = strlen(extra), off = (size_t)(p - j);
    char *r = malloc(n + el + 2);
    memcpy(r, j, off);
    memcpy(r + off, extra, el);
    r[off + el] = ',';
    memcpy(r + off + el + 1, j + off, n - off + 1);
    free(j);
    return r;
}

/* Expected ids from HF tokenizers 0.23.2 (npm) with the same two tokens added. */
static void test_added_flags(void) {
    char *j = with_added(
        "{\"id\":128815,\"content\":\"Ġxyz\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,"
        "\"special\":false},{\"id\":128816,\"content\":\"<sw>\",\"single_word\":true,\"lstrip\":true,\"rstrip\":true,"
        "\"normalized\":false,\"special\":false}");
    char err[DS3_ERR_LEN];
    ds3_tokenizer *t = ds3_tokenizer_load_mem(j, strlen(j), NULL, 0, "flags.json", err, sizeof err);
    CHECK(t != NULL, "load with extra added tokens: %s", err);
    free(j);
    if (!t) return;
    struct {
        const char *s;
        int32_t ids[6];
        int n;
    } c[] = {
        {"aĠxyzb", {67, 128815, 68}, 3},
        {"a <sw> b", {67, 128816, 68}, 3},
        {"a<sw>b", {67, 30, 1743, 120126}, 4},
        {"x  <sw>  y", {90, 128816, 91}, 3},
        {"é<sw>", {619, 30, 1743, 32}, 4},
        {"<sw><sw>", {128816, 128816}, 2},
        {" <sw>", {128816}, 1},
        {"\u3000<sw>\u00a0x", {128816, 90}, 2},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        int32_t *ids;
        size_t n;
        int rc = ds3_tokenizer_encode(t, c[i].s, strlen(c[i].s), 0, 0, &ids, &n, err, sizeof err);
        int ok = rc == 0 && n == (size_t)c[i].n && memcmp(ids, c[i].ids, n * 4) == 0;
        CHECK(ok, "added-token flags: '%s'", c[i].s);
        free(ids);
    }
    /* an added token decodes through the ByteLevel decoder like HF: "Ġxyz" -> " xyz" */
    int32_t d[2] = {128815, 19923};
    char *o;
    size_t ol;
    CHECK(ds3_tokenizer_decode(t, d, 2, 0, &o, &ol, err, sizeof err) == 0 && ol == 9 && !memcmp(o, " xyzHello", 9),
          "added token through ByteLevel decoder");
    free(o);
    ds3_tokenizer_free(t);
}

static void test_hostile(void) {
    /* A small valid tokenizer: trained on a few words. */
    const char *txt = "hello hello world worlds hello there";
    size_t tl = strlen(txt);
    ds3_bpe_train_params p = ds3_bpe_train_default_params();
    p.vocab_size = 270;
    char *good, err[DS3_ERR_LEN];
    size_t gl;
    CHECK(ds3_bpe_train(&txt, &tl, 1, &p, &good, &gl, NULL, err, sizeof err) == 0, "train tiny: %s", err);
    ds3_tokenizer *t = ds3_tokenizer_load_mem(good, gl, NULL, 0, "tiny.json", err, sizeof err);
    CHECK(t != NULL, "tiny tokenizer loads: %s", err);
    ds3_tokenizer_free(t);
    json_error_t je;
    struct {
        const char *what, *path_in_json, *set, *expect;
    } c[] = {
        {"bad JSON", NULL, NULL, "bad JSON"},
        {"unknown model type", "model.type", "\"WordPiece\"", "model.type"},
        {"merge names unknown token", "merges+", "[\"zz\", \"h\"]", "model.merges[0]: token 'zz'"},
        {"merge result not in vocab", "merges+", "[\"w\", \"h\"]", "merged token 'wh'"},
        {"merge malformed", "merges+", "\"a b c\"", "model.merges[0]"},
        {"merge not string", "merges+", "42", "model.merges[0]"},
        {"duplicate vocab id", "vocab.dup", "5", "also used"},
        {"out-of-range id", "vocab.dup", "99999999", "model.vocab['dup']"},
        {"negative id", "vocab.dup", "-1", "model.vocab['dup']"},
        {"non-integer id", "vocab.dup", "\"x\"", "model.vocab['dup']"},
        {"sparse id", "vocab.dup", "5000000", "out of range"},
        {"regex rejected", "pre_tokenizer.pretokenizers.0.pattern.Regex", "\"(\"", "pre_tokenizer.pretokenizers[0].pattern.Regex"},
        {"unknown behavior", "pre_tokenizer.pretokenizers.0.behavior", "\"Sideways\"", "behavior"},
        {"unknown pre-tokenizer", "pre_tokenizer.pretokenizers.1.type", "\"Whitespace\"", "pre_tokenizer.pretokenizers[1].type"},
        {"unknown normalizer", "normalizer", "{\"type\": \"Lowercase\"}", "normalizer.type"},
        {"unknown decoder", "decoder", "{\"type\": \"WordPiece\"}", "decoder.type"},
        {"added id conflict", "added_tokens.0.id", "5", "added_tokens[0].id"},
        {"added empty content", "added_tokens.1.content", "\"\"", "added_tokens[1].content"},
        {"added id out of range", "added_tokens.1.id", "-7", "added_tokens[1].id"},
        {"post-processor bad id", "post_processor.special_tokens.<｜begin▁of▁sentence｜>.ids", "[123456]", "post_processor"},
        {"model missing", "model", "null", "model"},
        {"vocab not object", "model.vocab", "[]", "model.vocab"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        char *js;
        if (!c[i].path_in_json) {
            js = strdup("{\"model\": {\"type\": \"BPE\", ");
        } else {
            json_t *root = json_loads(good, 0, &je);
            json_t *val = json_loads(c[i].set, JSON_DECODE_ANY, &je);
            char pathb[256];
            snprintf(pathb, sizeof pathb, "%s", c[i].path_in_json);
            if (!strcmp(pathb, "merges+")) {
                json_array_insert_new(json_object_get(json_object_get(root, "model"), "merges"), 0, val);
            } else if (!strncmp(pathb, "vocab.", 6)) {
                json_object_set_new(json_object_get(json_object_get(root, "model"), "vocab"), pathb + 6, val);
            } else {
                /* walk a.b.0.c */
                json_t *cur = root;
                char *save, *tok = strtok_r(pathb, ".", &save), *next;
                while (tok && (next = strtok_r(NULL, ".", &save))) {
                    cur = json_is_array(cur) ? json_array_get(cur, (size_t)atoi(tok)) : json_object_get(cur, tok);
                    tok = next;
                }
                if (json_is_array(cur)) json_array_set_new(cur, (size_t)atoi(tok), val);
                else json_object_set_new(cur, tok, val);
            }
            js = json_dumps(root, JSON_COMPACT);
            json_decref(root);
        }
        err[0] = 0;
        t = ds3_tokenizer_load_mem(js, strlen(js), NULL, 0, "hostile.json", err, sizeof err);
        CHECK(t == NULL, "hostile %s: rejected", c[i].what);
        CHECK(strstr(err, "hostile.json") && strstr(err, c[i].expect) && !strchr(err, '\n'),
              "hostile %s: error '%s' should name the file and '%s'", c[i].what, err, c[i].expect);
        ds3_tokenizer_free(t);
        free(js);
    }
    /* from files: the message names the file; a broken tokenizer_config.json names that file */
    char dir[] = "/tmp/ds3_tok_XXXXXX";
    if (mkdtemp(dir)) {
        char f1[512], f2[512];
        snprintf(f1, sizeof f1, "%s/tokenizer.json", dir);
        snprintf(f2, sizeof f2, "%s/tokenizer_config.json", dir);
        FILE *f = fopen(f1, "wb");
        fwrite(good, 1, gl, f);
        fclose(f);
        f = fopen(f2, "wb");
        fputs("{\"add_bos_token\": true,", f);
        fclose(f);
        t = ds3_tokenizer_load(f1, err, sizeof err);
        CHECK(t == NULL && strstr(err, "tokenizer_config.json") && strstr(err, dir), "bad config named: %s", err);
        f = fopen(f2, "wb");
        fputs("{\"add_bos_token\": false, \"bos_token\": {\"content\": \"<｜begin▁of▁sentence｜>\"}}", f);
        fclose(f);
        t = ds3_tokenizer_load(f1, err, sizeof err);
        CHECK(t && !ds3_tokenizer_adds_bos(t) && ds3_tokenizer_bos(t) == 0, "config add_bos_token false honoured");
        ds3_tokenizer_free(t);
        unlink(f2);
        t = ds3_tokenizer_load(f1, err, sizeof err);
        CHECK(t && ds3_tokenizer_adds_bos(t) && ds3_tokenizer_eos(t) == 1, "no config: post-processor adds BOS");
        ds3_tokenizer_free(t);
        unlink(f1);
        rmdir(dir);
        t = ds3_tokenizer_load(f1, err, sizeof err);
        CHECK(t == NULL && strstr(err, f1), "missing file named: %s", err);
    }
    free(good);
}

static void test_decode_errors(void) {
    char err[DS3_ERR_LEN], *o;
    size_t ol;
    int32_t bad[] = {5, 128815};
    CHECK(ds3_tokenizer_decode(T, bad, 2, 0, &o, &ol, err, sizeof err) == DS3_ERR_ARG && strstr(err, "128815"),
          "decode rejects id 128815: %s", err);
    int32_t neg[] = {-1};
    CHECK(ds3_tokenizer_decode(T, neg, 1, 0, &o, &ol, err, sizeof err) == DS3_ERR_ARG, "decode rejects -1");
    CHECK(ds3_tokenizer_decode(T, NULL, 0, 0, &o, &ol, err, sizeof err) == 0 && ol == 0, "decode([]) is empty");
    free(o);
    int32_t sp[] = {0, 19923, 1};
    CHECK(ds3_tokenizer_decode(T, sp, 3, 1, &o, &ol, err, sizeof err) == 0 && ol == 5 && !memcmp(o, "Hello", 5),
          "skip_special drops BOS/EOS");
    free(o);
    ds3_detok_stream *s = ds3_detok_stream_new(T, 0);
    const char *p;
    size_t l;
    CHECK(ds3_detok_stream_push(s, 999999, &p, &l) == DS3_ERR_ARG, "stream rejects bad id");
    ds3_detok_stream_free(s);
    /* random id sequences (many tokens are partial UTF-8): stream == one-shot, chunks well-formed */
    srand(11);
    int bad_n = 0;
    for (int it = 0; it < 300; it++) {
        int32_t ids[40];
        size_t n = (size_t)(1 + rand() % 40);
        for (size_t i = 0; i < n; i++) ids[i] = rand() % 3 == 0 ? 100 + rand() % 200 : rand() % 128815;
        char *d;
        size_t dl;
        if (ds3_tokenizer_decode(T, ids, n, 0, &d, &dl, err, sizeof err)) {
            bad_n++;
            continue;
        }
        if (!stream_matches(T, ids, n, d, dl)) bad_n++;
        free(d);
    }
    CHECK(bad_n == 0, "random id streams: %d mismatches", bad_n);
    /* facts */
    size_t len;
    CHECK(ds3_tokenizer_n_vocab(T) == 128815, "n_vocab");
    CHECK(ds3_tokenizer_bos(T) == 0 && ds3_tokenizer_eos(T) == 1 && ds3_tokenizer_adds_bos(T), "bos/eos");
    CHECK(ds3_tokenizer_is_special(T, 0) && ds3_tokenizer_is_special(T, 128805) && !ds3_tokenizer_is_special(T, 128803) &&
              ds3_tokenizer_is_added(T, 128803) && !ds3_tokenizer_is_special(T, 19923),
          "special flags");
    const char *ts = ds3_tokenizer_token_str(T, 2058, &len);
    CHECK(ts && len == 7 && !memcmp(ts, "Ġworld", 7), "token_str");
    ts = ds3_tokenizer_token_to_piece(T, 2058, &len);
    CHECK(ts && len == 6 && !memcmp(ts, " world", 6), "token_to_piece");
    CHECK(ds3_tokenizer_token_id(T, "<｜User｜>", strlen("<｜User｜>")) == 128803, "token_id");
    CHECK(ds3_tokenizer_chat_template(T) && strstr(ds3_tokenizer_chat_template(T), "add_generation_prompt"),
          "chat_template read");
}

static double enc_time(const char *s, size_t n, size_t *ntok) {
    char err[DS3_ERR_LEN];
    int32_t *ids;
    /* CPU time of this thread, not wall time: other jobs on the machine must not matter. */
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    int rc = ds3_tokenizer_encode(T, s, n, 0, 0, &ids, ntok, err, sizeof err);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    double dt = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
    if (rc) return -1;
    char *d;
    size_t dl;
    int ok = ds3_tokenizer_decode(T, ids, *ntok, 0, &d, &dl, err, sizeof err) == 0 && dl == n && !memcmp(d, s, n);
    if (ok) free(d);
    free(ids);
    return ok ? dt : -2;
}

/* Long runs of one character: linear time, exact roundtrip. */
static void test_long_runs(void) {
    const char *units[] = {"a", " ", "7", "\xcc\x81", "\xf0\x9f\x98\x80", "\n", "!", "\xe4\xb8\xad", "\x00"};
    size_t ulen[] = {1, 1, 1, 2, 4, 1, 1, 3, 1};
    for (size_t u = 0; u < sizeof units / sizeof *units; u++) {
        double t[2] = {1e9, 1e9};
        size_t sizes[2] = {1 << 18, 1 << 20}, ntok = 0;
        int ok = 1;
        for (int k = 0; k < 2; k++) {
            size_t n = sizes[k] / ulen[u] * ulen[u];
            char *s = malloc(n);
            for (size_t i = 0; i < n; i += ulen[u]) memcpy(s + i, units[u], ulen[u]);
            for (int r = 0; r < 2; r++) { /* best of 2: the first run also pays page faults */
                double dt = enc_time(s, n, &ntok);
                if (dt < 0) ok = 0;
                else if (dt < t[k]) t[k] = dt;
            }
            free(s);
        }
        CHECK(ok, "long run %zu: encode + exact roundtrip", u);
        /* 4x the input must not cost 16x (quadratic): a ratio of CPU times, so the machine's load and
         * speed do not matter (speed itself is measured by bench/tokenizer_bench.sh, not here). */
        CHECK(t[1] < 12 * t[0] + 0.05, "long run %zu: %.4f s for 256K, %.4f s for 1M (not linear)", u, t[0], t[1]);
    }
}

struct thr {
    const char *s;
    size_t n;
    int ok;
    int32_t *want;
    size_t nwant;
};

static void *thr_fn(void *a) {
    struct thr *x = a;
    char err[DS3_ERR_LEN];
    x->ok = 1;
    for (int r = 0; r < 5; r++) {
        int32_t *ids;
        size_t n;
        if (ds3_tokenizer_encode(T, x->s, x->n, 0, 0, &ids, &n, err, sizeof err) || n != x->nwant ||
            memcmp(ids, x->want, n * 4))
            x->ok = 0;
        free(ids);
    }
    return NULL;
}

static void test_threads(void) {
    size_t n;
    char *s = slurp(FIX "corpus/o_almada.txt", &n);
    char err[DS3_ERR_LEN];
    struct thr x[3];
    int32_t *want;
    size_t nw;
    CHECK(ds3_tokenizer_encode(T, s, n, 0, 0, &want, &nw, err, sizeof err) == 0, "encode corpus");
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        x[i] = (struct thr){s + i * 7, n - (size_t)i * 7, 0, NULL, 0};
        ds3_tokenizer_encode(T, x[i].s, x[i].n, 0, 0, &x[i].want, &x[i].nwant, err, sizeof err);
        pthread_create(&th[i], NULL, thr_fn, &x[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK(x[i].ok, "concurrent encode %d", i);
        free(x[i].want);
    }
    free(want);
    free(s);
}

struct piece_ctx {
    size_t n, bytes;
};
static int count_piece(void *c, const char *p, size_t l) {
    (void)p;
    ((struct piece_ctx *)c)->n++;
    ((struct piece_ctx *)c)->bytes += l;
    return 0;
}

static void test_trainer(void) {
    size_t n;
    char *s = slurp(FIX "corpus/o_almada.txt", &n);
    size_t S = ds3_corpus_split_offset((unsigned char *)s, n);
    CHECK(n == 83141 && S == 74826, "SPLITS.md offset for o_almada.txt (%zu)", S);
    ds3_bpe_train_params p = ds3_bpe_train_default_params();
    p.vocab_size = 1200;
    char *js, err[DS3_ERR_LEN];
    size_t jl;
    int nm = 0;
    const char *txt = s;
    int rc = ds3_bpe_train(&txt, &S, 1, &p, &js, &jl, &nm, err, sizeof err);
    CHECK(rc == 0 && nm == 1200 - 258, "train 1200 ids: %s (%d merges)", rc ? err : "", nm);
    if (rc) {
        free(s);
        return;
    }
    /* its pre_tokenizer is exactly DeepSeek-V3's */
    json_error_t je;
    json_t *a = json_loads(js, 0, &je), *b = json_load_file(FIX "tokenizer.json", 0, &je);
    CHECK(json_equal(json_object_get(a, "pre_tokenizer"), json_object_get(b, "pre_tokenizer")),
          "trained pre_tokenizer == DeepSeek-V3's");
    json_decref(a), json_decref(b);
    ds3_tokenizer *t = ds3_tokenizer_load_mem(js, jl, NULL, 0, "trained.json", err, sizeof err);
    CHECK(t != NULL, "trained tokenizer loads: %s", err);
    if (t) {
        CHECK(ds3_tokenizer_n_vocab(t) == 1200 && ds3_tokenizer_bos(t) == 0 && ds3_tokenizer_eos(t) == 1 &&
                  ds3_tokenizer_adds_bos(t),
              "trained tokenizer facts");
        int32_t *ids;
        size_t ni;
        rc = ds3_tokenizer_encode(t, s + S, n - S, 1, 0, &ids, &ni, err, sizeof err);
        CHECK(rc == 0 && ids[0] == 0 && ni < (n - S) / 2, "validation split compresses (%zu tokens for %zu bytes)", ni,
              n - S);
        char *d;
        size_t dl;
        rc = ds3_tokenizer_decode(t, ids + 1, ni - 1, 0, &d, &dl, err, sizeof err);
        CHECK(rc == 0 && dl == n - S && !memcmp(d, s + S, dl), "trained tokenizer roundtrip");
        if (!rc) free(d);
        free(ids);
        /* pretokenize API: pieces cover the text */
        struct piece_ctx pc = {0, 0};
        CHECK(ds3_tokenizer_pretokenize(t, s, 5000, count_piece, &pc, err, sizeof err) == 0 && pc.bytes == 5000 &&
                  pc.n > 500,
              "pretokenize covers the text");
        ds3_tokenizer_free(t);
    }
    free(js);
    free(s);
}

static void test_chat_misc(void) {
    char *o, err[DS3_ERR_LEN];
    size_t ol;
    const char *m = "[{\"role\":\"user\",\"content\":null}]";
    CHECK(ds3_chat_render_json(m, strlen(m), 1, NULL, &o, &ol, err, sizeof err) != 0 && strstr(err, "messages[0]"),
          "user without content is an error");
    ds3_chat_tool_call tc = {"function", "f", "{}"};
    ds3_chat_msg msgs[] = {{"user", "q", NULL, 0}, {"assistant", NULL, &tc, 1}, {"tool", "r", NULL, 0},
                           {"assistant", "done", NULL, 0}};
    CHECK(ds3_chat_render(msgs, 4, 1, NULL, &o, &ol, err, sizeof err) == 0 &&
              !strcmp(o, "<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>"
                         "function<｜tool▁sep｜>f\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁outputs▁begin｜>"
                         "<｜tool▁output▁begin｜>r<｜tool▁output▁end｜><｜tool▁outputs▁end｜>done<｜end▁of▁sentence｜>"
                         "<｜Assistant｜>"),
          "tool turn rendering");
    free(o);
}

int main(void) {
    TEST_BEGIN("test_tokenizer");
    char err[DS3_ERR_LEN];
    double t0 = ds3_time_s();
    T = ds3_tokenizer_load(FIX "tokenizer.json", err, sizeof err);
    CHECK(T != NULL, "load DeepSeek-V3 tokenizer: %s", err);
    if (!T) return TEST_REPORT();
    printf("load: %.3f s\n", ds3_time_s() - t0);
    test_utf8();
    test_regex_translation();
    check_vectors(FIX "vectors-dev.json");
    check_vectors(FIX "vectors-extra.json");
    test_added_flags();
    test_decode_errors();
    test_hostile();
    test_long_runs();
    test_threads();
    test_trainer();
    test_chat_misc();
    ds3_tokenizer_free(T);
    return TEST_REPORT();
}
