/* test_hostile.c -- corrupt and hostile checkpoints must be refused cleanly.
 *
 * Copies the small fixture checkpoints (tests/fixtures/golden/{dev,fp8-dev}/checkpoint and
 * tests/fixtures/models/x/checkpoint) into a temp folder, damages the copy (truncated shards,
 * bad header lengths, malformed or inconsistent headers, overlapping / out-of-file offsets,
 * dtype / shape / byte-size mismatches, missing and duplicate tensors, broken indexes, bad FP8
 * block scales, out-of-range or inconsistent config.json fields) and checks for each case that
 * ds3_model_load returns NULL with a one-line message naming the file (or folder) and the tensor
 * or field. Valid but unusual checkpoints (padded headers, reordered tensors, no __metadata__,
 * extra index metadata, no index, --no-mmap) must still load. Run under ASan/UBSan by
 * `make test-asan`, this is also the leak and crash check of the loader's error paths.
 * DS3_HOSTILE_VERBOSE=1 prints every error message. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds3.h"
#include "harness.h"
#include "io/safetensors.h"
#include "model/config.h"

#define DEV "tests/fixtures/golden/dev/checkpoint"
#define FP8 "tests/fixtures/golden/fp8-dev/checkpoint"
#define MODELS "tests/fixtures/models"

/* Tensors of the dev checkpoint used as victims. */
#define EMB "model.embed_tokens.weight"                    /* F32 [512, 128], shard 1, offset 0 */
#define NRM "model.layers.0.input_layernorm.weight"        /* F32 [128] */
#define DWN "model.layers.0.mlp.down_proj.weight"          /* F32 [128, 256] */
#define W8 "model.layers.0.mlp.gate_proj.weight"           /* fp8-dev: F8_E4M3 */
#define S8 "model.layers.0.mlp.gate_proj.weight_scale_inv" /* fp8-dev: F32 [5, 3] */

static char g_root[256];
static char g_dir[512];
static int g_case, g_verbose;

/* ---- files ------------------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (!b || fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        fclose(f);
        return NULL;
    }
    fclose(f);
    b[sz] = 0;
    *n = (size_t)sz;
    return b;
}

static void spit(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    if (n && fwrite(d, 1, n, f) != n) exit(1);
    fclose(f);
}

static void pathf(char *out, size_t n, const char *dir, const char *file) { snprintf(out, n, "%s/%s", dir, file); }

static void copy_dir(const char *src, const char *dst) {
    if (mkdir(dst, 0700) != 0) {
        fprintf(stderr, "mkdir %s: %s\n", dst, strerror(errno));
        exit(1);
    }
    DIR *d = opendir(src);
    if (!d) {
        fprintf(stderr, "opendir %s: %s\n", src, strerror(errno));
        exit(1);
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char a[1024], b[1024];
        pathf(a, sizeof a, src, e->d_name);
        pathf(b, sizeof b, dst, e->d_name);
        size_t n;
        char *buf = slurp(a, &n);
        if (!buf) continue;
        spit(b, buf, n);
        free(buf);
    }
    closedir(d);
}

static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        pathf(p, sizeof p, dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) rm_dir(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static const char *new_case(const char *base) {
    snprintf(g_dir, sizeof g_dir, "%s/c%03d", g_root, ++g_case);
    copy_dir(base, g_dir);
    return g_dir;
}

/* ---- JSON files ------------------------------------------------------------------------- */

static json_t *load_json(const char *dir, const char *file) {
    char p[1024];
    pathf(p, sizeof p, dir, file);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j) {
        fprintf(stderr, "%s: %s\n", p, je.text);
        exit(1);
    }
    return j;
}

static void save_json(const char *dir, const char *file, json_t *j) {
    char p[1024];
    pathf(p, sizeof p, dir, file);
    char *s = json_dumps(j, JSON_INDENT(1));
    spit(p, s, strlen(s));
    free(s);
    json_decref(j);
}

/* Set (val != NULL, reference stolen) or delete (val == NULL) a field of a JSON file. */
static void json_file_set(const char *dir, const char *file, const char *obj, const char *key, json_t *val) {
    json_t *j = load_json(dir, file);
    json_t *o = obj ? json_object_get(j, obj) : j;
    if (val) json_object_set_new(o, key, val);
    else json_object_del(o, key);
    save_json(dir, file, j);
}
#define CFG_SET(dir, key, val) json_file_set(dir, "config.json", NULL, key, val)
#define IDX_SET(dir, key, val) json_file_set(dir, "model.safetensors.index.json", "weight_map", key, val)

static void write_text(const char *dir, const char *file, const char *text) {
    char p[1024];
    pathf(p, sizeof p, dir, file);
    spit(p, text, strlen(text));
}

/* Basename of the shard holding `name`, from the index. Static buffer. */
static const char *shard_of(const char *dir, const char *name) {
    static char out[256];
    json_t *j = load_json(dir, "model.safetensors.index.json");
    const char *s = json_string_value(json_object_get(json_object_get(j, "weight_map"), name));
    snprintf(out, sizeof out, "%s", s ? s : "?");
    json_decref(j);
    return out;
}

/* ---- safetensors files ------------------------------------------------------------------ */

typedef struct {
    char path[1024];
    json_t *h;            /* header */
    unsigned char *data;  /* data buffer */
    size_t dlen;
    uint64_t hlen;        /* header length as stored */
    size_t size;          /* file size as stored */
} stf;

static void st_load(stf *s, const char *dir, const char *file) {
    memset(s, 0, sizeof *s);
    pathf(s->path, sizeof s->path, dir, file);
    size_t n;
    unsigned char *b = (unsigned char *)slurp(s->path, &n);
    if (!b || n < 8) {
        fprintf(stderr, "cannot read %s\n", s->path);
        exit(1);
    }
    for (int i = 0; i < 8; i++) s->hlen |= (uint64_t)b[i] << (8 * i);
    json_error_t je;
    s->h = json_loadb((const char *)b + 8, s->hlen, 0, &je);
    if (!s->h) {
        fprintf(stderr, "%s: %s\n", s->path, je.text);
        exit(1);
    }
    s->size = n;
    s->dlen = n - 8 - s->hlen;
    s->data = malloc(s->dlen + 64);
    memcpy(s->data, b + 8 + s->hlen, s->dlen);
    free(b);
}

static void st_free(stf *s) {
    json_decref(s->h);
    free(s->data);
}

/* Write header text hdr (hl bytes) with the length field hlen, then the data. */
static void write_raw(const char *path, const char *hdr, size_t hl, uint64_t hlen, const void *data, size_t dlen) {
    unsigned char *b = malloc(8 + hl + dlen);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, hdr, hl);
    if (dlen) memcpy(b + 8 + hl, data, dlen);
    spit(path, b, 8 + hl + dlen);
    free(b);
}

/* Serialise the header (compact, padded with `extra` more spaces, then to 8 bytes). */
static char *st_header_text(stf *s, size_t extra, size_t *hl) {
    char *t = json_dumps(s->h, JSON_COMPACT);
    size_t l = strlen(t), pl = (l + extra + 7) & ~(size_t)7;
    char *p = malloc(pl + 1);
    memcpy(p, t, l);
    memset(p + l, ' ', pl - l);
    p[pl] = 0;
    free(t);
    *hl = pl;
    return p;
}

static void st_save(stf *s) {
    size_t hl;
    char *h = st_header_text(s, 0, &hl);
    write_raw(s->path, h, hl, hl, s->data, s->dlen);
    free(h);
    st_free(s);
}

static json_t *ent(stf *s, const char *name) {
    json_t *e = json_object_get(s->h, name);
    if (!e) {
        fprintf(stderr, "%s: no tensor %s\n", s->path, name);
        exit(1);
    }
    return e;
}
static void set_offsets(stf *s, const char *name, long long b, long long e) {
    json_object_set_new(ent(s, name), "data_offsets", json_pack("[I,I]", (json_int_t)b, (json_int_t)e));
}
static void get_offsets(stf *s, const char *name, long long *b, long long *e) {
    json_t *o = json_object_get(ent(s, name), "data_offsets");
    *b = json_integer_value(json_array_get(o, 0));
    *e = json_integer_value(json_array_get(o, 1));
}
static void set_dtype(stf *s, const char *name, const char *dt) {
    json_object_set_new(ent(s, name), "dtype", json_string(dt));
}
static void set_shape(stf *s, const char *name, int nd, ...) {
    json_t *a = json_array();
    va_list ap;
    va_start(ap, nd);
    for (int i = 0; i < nd; i++) json_array_append_new(a, json_integer(va_arg(ap, long long)));
    va_end(ap);
    json_object_set_new(ent(s, name), "shape", a);
}
/* The tensor whose data ends last. */
static const char *last_tensor(stf *s) {
    const char *k, *best = NULL;
    json_t *v;
    long long m = -1;
    json_object_foreach(s->h, k, v) {
        if (!strcmp(k, "__metadata__")) continue;
        long long e = json_integer_value(json_array_get(json_object_get(v, "data_offsets"), 1));
        if (e > m) {
            m = e;
            best = k;
        }
    }
    return best;
}

static void truncate_file(const char *dir, const char *file, long long size) {
    char p[1024];
    pathf(p, sizeof p, dir, file);
    if (truncate(p, size) != 0) exit(1);
}

/* Shard = first shard of the dev copy in g_dir, holding EMB at offset 0 and NRM. */
#define SH1 "model-00001-of-00003.safetensors"
#define SH2 "model-00002-of-00003.safetensors"
#define SH3 "model-00003-of-00003.safetensors"

/* ---- checks ----------------------------------------------------------------------------- */

static ds3_model_params params(int mmap) {
    ds3_model_params p = ds3_model_default_params();
    p.use_mmap = mmap;
    return p;
}

/* Load g_dir; expect failure with a one-line message containing every given substring. */
static void expect_fail_p(const char *what, int mmap, ...) {
    char err[DS3_ERR_LEN] = "";
    ds3_model_params p = params(mmap);
    ds3_model *m = ds3_model_load(g_dir, &p, err, sizeof err);
    CHECK(m == NULL, "%s: hostile checkpoint loaded", what);
    if (m) ds3_model_free(m);
    else {
        CHECK(err[0] && !strchr(err, '\n') && !strchr(err, '\r'), "%s: message empty or not one line: '%s'", what, err);
        CHECK(strlen(err) < DS3_ERR_LEN - 1, "%s: message truncated", what);
        va_list ap;
        va_start(ap, mmap);
        const char *s;
        while ((s = va_arg(ap, const char *)))
            CHECK(strstr(err, s) != NULL, "%s: message does not name '%s': %s", what, s, err);
        va_end(ap);
    }
    if (g_verbose) printf("  %-44s %s\n", what, err);
    rm_dir(g_dir);
}
#define EXPECT_FAIL(what, ...) expect_fail_p(what, 1, __VA_ARGS__, (const char *)NULL)
#define EXPECT_FAIL_NOMMAP(what, ...) expect_fail_p(what, 0, __VA_ARGS__, (const char *)NULL)

static void expect_ok_p(const char *what, int mmap) {
    char err[DS3_ERR_LEN] = "";
    ds3_model_params p = params(mmap);
    ds3_model *m = ds3_model_load(g_dir, &p, err, sizeof err);
    CHECK(m != NULL, "%s: valid checkpoint refused: %s", what, err);
    if (m) {
        CHECK(ds3_model_vocab_size(m) > 0, "%s: vocab", what);
        ds3_model_free(m);
    }
    if (g_verbose) printf("  %-44s loads\n", what);
    rm_dir(g_dir);
}
#define EXPECT_OK(what) expect_ok_p(what, 1)

/* ---- cases: shard files ----------------------------------------------------------------- */

static void cases_truncate(void) {
    stf s;
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    const long long H = (long long)s.hlen, SZ = (long long)s.size;
    char last[256];
    snprintf(last, sizeof last, "%s", last_tensor(&s));
    st_free(&s);
    rm_dir(g_dir);
    const long long cuts[] = {0, 1, 7, 8, 12, 8 + H / 2, 8 + H - 1, 8 + H, 8 + H + 100, SZ / 2, SZ - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char what[64];
        for (int mm = 1; mm >= 0; mm--) {
            snprintf(what, sizeof what, "truncated at %lld%s", cuts[i], mm ? "" : " (no mmap)");
            new_case(DEV);
            truncate_file(g_dir, SH1, cuts[i]);
            if (cuts[i] == SZ - 1) expect_fail_p(what, mm, SH1, last, "past the end", (const char *)NULL);
            else if (cuts[i] > 8 + H) expect_fail_p(what, mm, SH1, "tensor '", "past the end", (const char *)NULL);
            else expect_fail_p(what, mm, SH1, (const char *)NULL);
        }
    }
}

/* Rewrite SH1 with the header length field set to hlen (header and data unchanged). */
static void case_hlen(const char *what, uint64_t hlen, const char *must) {
    stf s;
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    size_t hl;
    char *h = st_header_text(&s, 0, &hl);
    if (hlen == UINT64_MAX) hlen = (uint64_t)(8 + hl + s.dlen) - 8 + 1; /* one past the end */
    write_raw(s.path, h, hl, hlen, s.data, s.dlen);
    free(h);
    st_free(&s);
    EXPECT_FAIL(what, SH1, must);
}

/* Replace SH1's header by text (padded to 8 with spaces unless raw). */
static void case_header_text(const char *what, const char *text, int pad, const char *must) {
    stf s;
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    size_t l = strlen(text), pl = pad ? (l + 7) & ~(size_t)7 : l;
    char *h = malloc(pl + 1);
    memcpy(h, text, l);
    memset(h + l, ' ', pl - l);
    write_raw(s.path, h, pl, pl, s.data, s.dlen);
    free(h);
    st_free(&s);
    EXPECT_FAIL(what, SH1, must);
}

static void cases_header(void) {
    case_hlen("header length past the end", UINT64_MAX, "header length");
    case_hlen("header length 2^63", 1ULL << 63, "header length");
    case_hlen("header length 2^64-2", UINT64_MAX - 1, "header length");
    case_hlen("header length 0", 0, "JSON");
    case_hlen("header length 200 MB", 200ull << 20, "header length");
    case_hlen("header length 1", 1, "JSON");
    case_header_text("header not JSON", "{\"a\": ", 1, "JSON");
    case_header_text("header binary garbage", "\x01\x02\xff\xfe\x80", 1, "JSON");
    case_header_text("header is an array", "[1, 2, 3]", 1, "not a JSON object");
    case_header_text("header is a string", "\"model\"", 1, "JSON");
    case_header_text("header is null", "null", 1, "JSON");
    case_header_text("header empty object + pad NUL", "{}\0", 0, "");

    /* trailing garbage after the object */
    stf s;
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    size_t hl;
    char *h = st_header_text(&s, 0, &hl);
    char *g = malloc(hl + 16);
    memcpy(g, h, hl);
    memcpy(g + hl, "xx}     ", 8);
    write_raw(s.path, g, hl + 8, hl + 8, s.data, s.dlen);
    free(g);
    free(h);
    st_free(&s);
    EXPECT_FAIL("header trailing garbage", SH1, "JSON");

    /* duplicate key: NRM's entry a second time */
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    char *t = json_dumps(s.h, JSON_COMPACT), *e = json_dumps(ent(&s, NRM), JSON_COMPACT);
    size_t tl = strlen(t);
    char *d = malloc(tl + strlen(e) + 256);
    memcpy(d, t, tl - 1); /* drop the final '}' */
    int n = sprintf(d + tl - 1, ",\"%s\":%s}", NRM, e);
    size_t dl = tl - 1 + (size_t)n, pl = (dl + 7) & ~(size_t)7;
    memset(d + dl, ' ', pl - dl);
    write_raw(s.path, d, pl, pl, s.data, s.dlen);
    free(d);
    free(t);
    free(e);
    st_free(&s);
    EXPECT_FAIL("duplicate key in a header", SH1, "duplicate", NRM);

    /* __metadata__ not an object; tensor entry not an object; empty name */
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    json_object_set_new(s.h, "__metadata__", json_string("pt"));
    st_save(&s);
    EXPECT_FAIL("__metadata__ not an object", SH1, "__metadata__");
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    json_object_set_new(s.h, NRM, json_integer(5));
    st_save(&s);
    EXPECT_FAIL("tensor entry not an object", SH1, NRM);
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    json_object_set_new(s.h, "", json_deep_copy(ent(&s, NRM)));
    st_save(&s);
    EXPECT_FAIL("empty tensor name", SH1, "empty");
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    json_object_del(ent(&s, NRM), "data_offsets");
    st_save(&s);
    EXPECT_FAIL("no data_offsets", SH1, NRM, "data_offsets");
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    json_object_set_new(ent(&s, NRM), "data_offsets", json_pack("[I,I,I]", (json_int_t)0, (json_int_t)1, (json_int_t)2));
    st_save(&s);
    EXPECT_FAIL("3 data_offsets", SH1, NRM, "data_offsets");
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    json_object_set_new(ent(&s, NRM), "shape", json_string("128"));
    st_save(&s);
    EXPECT_FAIL("shape not an array", SH1, NRM, "shape");
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    json_object_set_new(ent(&s, NRM), "dtype", json_integer(4));
    st_save(&s);
    EXPECT_FAIL("dtype not a string", SH1, NRM, "dtype");
}

/* Open SH1 of a fresh dev copy for editing. */
static stf *sh1(void) {
    static stf s;
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    return &s;
}

static void cases_offsets(void) {
    stf *s;
    long long b, e;

    s = sh1();
    set_offsets(s, NRM, (long long)s->dlen, (long long)s->dlen + 512);
    st_save(s);
    EXPECT_FAIL("offsets past the end", SH1, NRM, "past the end");

    s = sh1();
    set_offsets(s, NRM, (1LL << 62), (1LL << 62) + 512);
    st_save(s);
    EXPECT_FAIL("offsets 2^62", SH1, NRM);

    s = sh1();
    set_offsets(s, NRM, 0, 512);
    st_save(s);
    EXPECT_FAIL("overlapping offsets", SH1, NRM, EMB, "overlap");

    s = sh1();
    get_offsets(s, EMB, &b, &e);
    set_offsets(s, NRM, e - 256, e + 256);
    st_save(s);
    EXPECT_FAIL("partly overlapping offsets", SH1, NRM, EMB, "overlap");

    /* An empty tensor inside EMB must not hide NRM overlapping EMB further on. */
    s = sh1();
    json_object_set_new(s->h, "zz.empty", json_pack("{s:s,s:[i],s:[i,i]}", "dtype", "F32", "shape", 0, "data_offsets", 16, 16));
    set_offsets(s, NRM, 1024, 1536);
    st_save(s);
    EXPECT_FAIL("overlap behind an empty tensor", SH1, NRM, EMB, "overlap");

    s = sh1();
    set_offsets(s, NRM, 512, 0);
    st_save(s);
    EXPECT_FAIL("begin > end", SH1, NRM, "data_offsets");

    s = sh1();
    set_offsets(s, NRM, -512, 0);
    st_save(s);
    EXPECT_FAIL("negative offset", SH1, NRM, "data_offsets");

    s = sh1();
    json_object_set_new(ent(s, NRM), "data_offsets", json_pack("[s,i]", "0", 512));
    st_save(s);
    EXPECT_FAIL("offset is a string", SH1, NRM, "data_offsets");

    s = sh1();
    json_object_set_new(ent(s, NRM), "data_offsets", json_pack("[f,f]", 0.0, 512.0));
    st_save(s);
    EXPECT_FAIL("offsets are reals", SH1, NRM, "data_offsets");

    /* misaligned F32: the last tensor moved by 2 bytes */
    s = sh1();
    char last[256];
    snprintf(last, sizeof last, "%s", last_tensor(s));
    get_offsets(s, last, &b, &e);
    set_offsets(s, last, b + 2, e + 2);
    memset(s->data + s->dlen, 0, 2);
    s->dlen += 2;
    st_save(s);
    EXPECT_FAIL("misaligned F32 tensor", SH1, last, "aligned");

    /* misaligned: the whole data buffer starts at an odd offset */
    s = sh1();
    {
        size_t hl;
        char *h = st_header_text(s, 0, &hl);
        char *h2 = malloc(hl + 2);
        memcpy(h2, h, hl);
        h2[hl] = ' ';
        write_raw(s->path, h2, hl + 1, hl + 1, s->data, s->dlen);
        free(h);
        free(h2);
        st_free(s);
    }
    EXPECT_FAIL("misaligned data buffer", SH1, "aligned");
}

static void cases_dtype_shape(void) {
    stf *s;
    s = sh1();
    set_dtype(s, NRM, "Q4_K");
    st_save(s);
    EXPECT_FAIL("unknown dtype", SH1, NRM, "Q4_K");

    s = sh1();
    set_dtype(s, NRM, "");
    st_save(s);
    EXPECT_FAIL("empty dtype", SH1, NRM, "dtype");

    s = sh1();
    set_dtype(s, NRM, "BF16");
    st_save(s);
    EXPECT_FAIL("dtype/size mismatch", SH1, NRM, "bytes");

    s = sh1();
    set_dtype(s, NRM, "F64");
    st_save(s);
    EXPECT_FAIL("F64 size mismatch", SH1, NRM, "bytes");

    s = sh1();
    set_shape(s, NRM, 1, 127LL);
    st_save(s);
    EXPECT_FAIL("shape/size mismatch", SH1, NRM, "bytes");

    s = sh1();
    set_shape(s, NRM, 1, -128LL);
    st_save(s);
    EXPECT_FAIL("negative dim", SH1, NRM, "shape");

    s = sh1();
    set_shape(s, NRM, 2, 1LL << 40, 1LL << 40);
    st_save(s);
    EXPECT_FAIL("huge shape", SH1, NRM);

    s = sh1();
    set_shape(s, NRM, 9, 1LL, 1LL, 1LL, 1LL, 1LL, 1LL, 1LL, 1LL, 128LL);
    st_save(s);
    EXPECT_FAIL("9 dimensions", SH1, NRM, "dimensions");

    s = sh1();
    json_object_set_new(ent(s, NRM), "shape", json_pack("[f]", 128.0));
    st_save(s);
    EXPECT_FAIL("real dim", SH1, NRM, "shape");

    /* sizes consistent with the file but not with config.json */
    s = sh1();
    set_shape(s, DWN, 2, 256LL, 128LL);
    st_save(s);
    EXPECT_FAIL("transposed weight", SH1, DWN, "config.json");

    s = sh1();
    set_shape(s, DWN, 1, 128LL * 256);
    st_save(s);
    EXPECT_FAIL("1-D where 2-D expected", SH1, DWN, "2-D");

    s = sh1();
    set_shape(s, EMB, 3, 512LL, 128LL, 1LL);
    st_save(s);
    EXPECT_FAIL("3-D where 2-D expected", SH1, EMB, "2-D");

    s = sh1();
    set_shape(s, NRM, 2, 1LL, 128LL);
    st_save(s);
    EXPECT_FAIL("2-D where 1-D expected", SH1, NRM, "1-D");

    s = sh1();
    set_shape(s, NRM, 0);
    set_offsets(s, NRM, 262144, 262148);
    st_save(s);
    EXPECT_FAIL("scalar where 1-D expected", SH1, NRM);

    s = sh1();
    set_dtype(s, NRM, "I32");
    st_save(s);
    EXPECT_FAIL("I32 vector", SH1, NRM, "I32");

    s = sh1();
    set_dtype(s, EMB, "U32");
    st_save(s);
    EXPECT_FAIL("U32 weight", SH1, EMB, "U32");

    s = sh1();
    set_dtype(s, EMB, "I32");
    st_save(s);
    EXPECT_FAIL("I32 weight", SH1, EMB, "I32");
}

static void cases_tensors(void) {
    stf s;
    /* missing tensor (gone from the shard and the index) */
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    json_object_del(s.h, NRM);
    st_save(&s);
    IDX_SET(g_dir, NRM, NULL);
    EXPECT_FAIL("missing tensor", "c0", NRM, "missing");

    new_case(DEV);
    const char *sh = shard_of(g_dir, "lm_head.weight");
    st_load(&s, g_dir, sh);
    json_object_del(s.h, "lm_head.weight");
    st_save(&s);
    IDX_SET(g_dir, "lm_head.weight", NULL);
    EXPECT_FAIL("missing lm_head", "lm_head.weight", "missing");

    /* missing expert tensor, no index at all */
    new_case(DEV);
    const char *ex = "model.layers.2.mlp.experts.15.up_proj.weight";
    char shn[256];
    snprintf(shn, sizeof shn, "%s", shard_of(g_dir, ex));
    char p[1024];
    pathf(p, sizeof p, g_dir, "model.safetensors.index.json");
    unlink(p);
    st_load(&s, g_dir, shn);
    json_object_del(s.h, ex);
    st_save(&s);
    EXPECT_FAIL("missing expert, no index", ex, "missing");

    /* index names it, shard lacks it */
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    json_object_del(s.h, NRM);
    st_save(&s);
    EXPECT_FAIL("index names a tensor its shard lacks", SH1, NRM);

    /* index points to the wrong (existing) shard */
    new_case(DEV);
    IDX_SET(g_dir, NRM, json_string(SH2));
    EXPECT_FAIL("index names the wrong shard", SH2, NRM);

    /* the same tensor in two shards: with and without the index */
    for (int with_index = 1; with_index >= 0; with_index--) {
        new_case(DEV);
        stf a, b;
        st_load(&a, g_dir, SH1);
        st_load(&b, g_dir, SH2);
        long long bb, be;
        get_offsets(&a, NRM, &bb, &be);
        json_t *en = json_deep_copy(ent(&a, NRM));
        json_object_set_new(en, "data_offsets", json_pack("[I,I]", (json_int_t)b.dlen, (json_int_t)(b.dlen + (be - bb))));
        json_object_set_new(b.h, NRM, en);
        b.data = realloc(b.data, b.dlen + (size_t)(be - bb));
        memcpy(b.data + b.dlen, a.data + bb, (size_t)(be - bb));
        b.dlen += (size_t)(be - bb);
        st_save(&b);
        st_free(&a);
        if (!with_index) {
            pathf(p, sizeof p, g_dir, "model.safetensors.index.json");
            unlink(p);
        }
        EXPECT_FAIL(with_index ? "tensor in two shards" : "tensor in two shards, no index", SH1, SH2, NRM, "twice");
    }
}

static void cases_index(void) {
    char p[1024];
    new_case(DEV);
    IDX_SET(g_dir, NRM, json_string("model-00009-of-00003.safetensors"));
    EXPECT_FAIL("index names a missing shard", "model-00009-of-00003.safetensors", NRM, "missing");
    new_case(DEV);
    pathf(p, sizeof p, g_dir, "model.safetensors.index.json");
    unlink(p);
    pathf(p, sizeof p, g_dir, "model.safetensors");
    mkfifo(p, 0600);
    EXPECT_FAIL("model.safetensors is a FIFO", "model.safetensors", "regular file");

    new_case(DEV);
    pathf(p, sizeof p, g_dir, SH3);
    unlink(p);
    EXPECT_FAIL("shard deleted", SH3, "missing");

    const char *bad[] = {"../x.safetensors", "../" SH1, "/etc/passwd", "", ".", "..", "sub/" SH1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char what[128];
        snprintf(what, sizeof what, "index path '%s'", bad[i]);
        new_case(DEV);
        IDX_SET(g_dir, NRM, json_string(bad[i]));
        EXPECT_FAIL(what, "index.json", NRM, "plain file name");
    }

    new_case(DEV);
    IDX_SET(g_dir, NRM, json_integer(1));
    EXPECT_FAIL("index value not a string", "index.json", NRM, "not a string");

    new_case(DEV);
    IDX_SET(g_dir, NRM, json_string("config.json"));
    EXPECT_FAIL("index names config.json as a shard", "config.json");

    new_case(DEV);
    pathf(p, sizeof p, g_dir, "dir.safetensors");
    mkdir(p, 0700);
    IDX_SET(g_dir, NRM, json_string("dir.safetensors"));
    EXPECT_FAIL("index names a directory", "dir.safetensors");

    new_case(DEV);
    write_text(g_dir, "model.safetensors.index.json", "{\"weight_map\": {\"a\": ");
    EXPECT_FAIL("index not JSON", "index.json", "JSON");

    new_case(DEV);
    write_text(g_dir, "model.safetensors.index.json", "[]");
    EXPECT_FAIL("index is an array", "index.json", "weight_map");

    new_case(DEV);
    write_text(g_dir, "model.safetensors.index.json", "{\"metadata\": {}}");
    EXPECT_FAIL("index without weight_map", "index.json", "weight_map");

    new_case(DEV);
    write_text(g_dir, "model.safetensors.index.json", "{\"weight_map\": {}}");
    EXPECT_FAIL("index with empty weight_map", "index.json", "weight_map");

    new_case(DEV);
    write_text(g_dir, "model.safetensors.index.json",
               "{\"weight_map\": {\"" NRM "\": \"" SH1 "\", \"" NRM "\": \"" SH1 "\"}}");
    EXPECT_FAIL("index duplicate key", "index.json", "duplicate");
}

/* ---- cases: FP8 scales ------------------------------------------------------------------ */

static void case_scale_value(const char *what, float v, int at) {
    stf s;
    new_case(FP8);
    char sh[256];
    snprintf(sh, sizeof sh, "%s", shard_of(g_dir, S8));
    st_load(&s, g_dir, sh);
    long long b, e;
    get_offsets(&s, S8, &b, &e);
    memcpy(s.data + b + 4 * at, &v, 4);
    st_save(&s);
    EXPECT_FAIL(what, sh, S8, "scale");
}

static void cases_fp8(void) {
    case_scale_value("NaN scale", NAN, 0);
    case_scale_value("-NaN scale", -NAN, 14);
    case_scale_value("+Inf scale", INFINITY, 7);
    case_scale_value("-Inf scale", -INFINITY, 3);
    case_scale_value("zero scale", 0.0f, 5);
    case_scale_value("-0 scale", -0.0f, 5);
    case_scale_value("negative scale", -1.0f, 14);

    stf s;
    char sh[256];
    new_case(FP8);
    snprintf(sh, sizeof sh, "%s", shard_of(g_dir, S8));
    st_load(&s, g_dir, sh);
    set_shape(&s, S8, 2, 3LL, 5LL);
    st_save(&s);
    EXPECT_FAIL("scale transposed", sh, S8);

    new_case(FP8);
    st_load(&s, g_dir, sh);
    set_shape(&s, S8, 1, 15LL);
    st_save(&s);
    EXPECT_FAIL("scale 1-D", sh, S8);

    new_case(FP8);
    st_load(&s, g_dir, sh);
    set_dtype(&s, S8, "I32");
    st_save(&s);
    EXPECT_FAIL("scale I32", sh, S8);

    new_case(FP8);
    st_load(&s, g_dir, sh);
    long long b, e;
    get_offsets(&s, S8, &b, &e);
    set_dtype(&s, S8, "BF16");
    set_offsets(&s, S8, b, b + 30);
    st_save(&s);
    EXPECT_FAIL("scale BF16", sh, S8);

    new_case(FP8);
    st_load(&s, g_dir, sh);
    json_object_del(s.h, S8);
    st_save(&s);
    IDX_SET(g_dir, S8, NULL);
    EXPECT_FAIL("scale missing", S8, W8);

    /* FP8 weight with a wrong shape */
    new_case(FP8);
    snprintf(sh, sizeof sh, "%s", shard_of(g_dir, W8));
    st_load(&s, g_dir, sh);
    json_t *shp = json_object_get(ent(&s, W8), "shape");
    long long r = json_integer_value(json_array_get(shp, 0)), c = json_integer_value(json_array_get(shp, 1));
    set_shape(&s, W8, 2, c, r);
    st_save(&s);
    EXPECT_FAIL("FP8 weight transposed", sh, W8);
}

/* ---- cases: config.json ----------------------------------------------------------------- */

static void cfg_case(const char *what, const char *base, const char *key, json_t *val, const char *must) {
    new_case(base);
    CFG_SET(g_dir, key, val);
    EXPECT_FAIL(what, "config.json", must ? must : key);
}
/* config.json consistent in itself but not with the tensors: the message names a tensor. */
static void cfg_case_t(const char *what, const char *base, const char *key, json_t *val, const char *tensor) {
    new_case(base);
    CFG_SET(g_dir, key, val);
    EXPECT_FAIL(what, tensor);
}

static void cases_config(void) {
    new_case(DEV);
    write_text(g_dir, "config.json", "{\"model_type\": \"deepseek_v3\", ");
    EXPECT_FAIL("config not JSON", "config.json", "JSON");
    new_case(DEV);
    write_text(g_dir, "config.json", "");
    EXPECT_FAIL("config empty", "config.json", "JSON");
    new_case(DEV);
    write_text(g_dir, "config.json", "[1]");
    EXPECT_FAIL("config is an array", "config.json", "object");
    new_case(DEV);
    char p[1024];
    pathf(p, sizeof p, g_dir, "config.json");
    unlink(p);
    EXPECT_FAIL("config missing", "config.json");
    new_case(DEV);
    pathf(p, sizeof p, g_dir, "config.json");
    unlink(p);
    mkdir(p, 0700);
    EXPECT_FAIL("config is a directory", "config.json");
    new_case(DEV);
    write_text(g_dir, "config.json", "{\"model_type\": \"deepseek_v3\", \"hidden_size\": 1e400}");
    EXPECT_FAIL("config real overflow", "config.json");
    new_case(DEV);
    write_text(g_dir, "config.json", "{\"model_type\": \"deepseek_v3\", \"hidden_size\": 99999999999999999999999}");
    EXPECT_FAIL("config integer overflow", "config.json");
    new_case(DEV);
    write_text(g_dir, "config.json", "{\"model_type\": \"deepseek_v3\", \"model_type\": \"deepseek_v2\"}");
    EXPECT_FAIL("config duplicate key", "config.json", "model_type");

    cfg_case("unknown model_type", DEV, "model_type", json_string("llama"), NULL);
    cfg_case("model_type not a string", DEV, "model_type", json_integer(3), NULL);
    cfg_case("model_type too long", DEV, "model_type", json_string("deepseek_v3deepseek_v3deepseek_v3deepseek_v3deepseek_v3deepseek_v3"), NULL);
    cfg_case("missing model_type", DEV, "model_type", NULL, NULL);
    cfg_case("model_type null", DEV, "model_type", json_null(), NULL);

    const char *keys[] = {"hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "kv_lora_rank",
                          "intermediate_size", "moe_intermediate_size", "v_head_dim", "max_position_embeddings"};
    const long long vals[] = {0, -1, -2147483648LL, 1LL << 31, 1LL << 40, 9223372036854775807LL};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        for (size_t v = 0; v < sizeof vals / sizeof vals[0]; v++) {
            char what[128];
            snprintf(what, sizeof what, "%s = %lld", keys[k], vals[v]);
            cfg_case(what, DEV, keys[k], json_integer(vals[v]), NULL);
        }
    cfg_case("hidden_size as a string", DEV, "hidden_size", json_string("128"), NULL);
    cfg_case("hidden_size 128.5", DEV, "hidden_size", json_real(128.5), NULL);
    cfg_case("hidden_size 1e30", DEV, "hidden_size", json_real(1e30), NULL);
    cfg_case("hidden_size true", DEV, "hidden_size", json_true(), NULL);
    cfg_case("vocab_size array", DEV, "vocab_size", json_pack("[i]", 512), NULL);
    cfg_case("num_hidden_layers object", DEV, "num_hidden_layers", json_object(), NULL);
    cfg_case("rms_norm_eps string", DEV, "rms_norm_eps", json_string("1e-6"), NULL);
    cfg_case("rms_norm_eps negative", DEV, "rms_norm_eps", json_real(-1e-6), NULL);
    cfg_case("rope_theta 0", DEV, "rope_theta", json_integer(0), NULL);
    cfg_case("routed_scaling_factor negative", DEV, "routed_scaling_factor", json_real(-2.5), NULL);
    cfg_case("norm_topk_prob a number", DEV, "norm_topk_prob", json_integer(1), NULL);
    cfg_case("odd qk_rope_head_dim", DEV, "qk_rope_head_dim", json_integer(7), NULL);
    cfg_case("negative qk_nope_head_dim", DEV, "qk_nope_head_dim", json_integer(-16), NULL);
    cfg_case("num_experts_per_tok > n_routed_experts", DEV, "num_experts_per_tok", json_integer(17), NULL);
    cfg_case("num_experts_per_tok 0", DEV, "num_experts_per_tok", json_integer(0), NULL);
    cfg_case("n_group not dividing n_routed_experts", DEV, "n_group", json_integer(3), NULL);
    cfg_case("n_group 0", DEV, "n_group", json_integer(0), NULL);
    cfg_case("topk_group > n_group", DEV, "topk_group", json_integer(3), NULL);
    cfg_case("n_routed_experts negative", DEV, "n_routed_experts", json_integer(-16), NULL);
    cfg_case("n_routed_experts 7 (n_group 2)", DEV, "n_routed_experts", json_integer(7), "n_group");
    cfg_case("scoring_func unknown", DEV, "scoring_func", json_string("relu"), NULL);
    cfg_case("topk_method unknown", DEV, "topk_method", json_string("best"), NULL);
    cfg_case("hidden_act unknown", DEV, "hidden_act", json_string("gelu"), NULL);
    cfg_case("num_nextn_predict_layers huge", DEV, "num_nextn_predict_layers", json_integer(1000), NULL);
    cfg_case("first_k_dense_replace negative", DEV, "first_k_dense_replace", json_integer(-1), NULL);
    cfg_case("moe_layer_freq 0", DEV, "moe_layer_freq", json_integer(0), NULL);
    cfg_case("q_lora_rank negative", DEV, "q_lora_rank", json_integer(-64), NULL);
    cfg_case("rope_scaling unknown type", DEV, "rope_scaling", json_pack("{s:s,s:f}", "type", "dynamic", "factor", 2.0),
             "rope_scaling");
    cfg_case("rope_scaling unknown rope_type", DEV, "rope_scaling", json_pack("{s:s,s:f}", "rope_type", "linear", "factor", 2.0),
             "rope_scaling");
    cfg_case("rope_scaling a string", DEV, "rope_scaling", json_string("yarn"), NULL);
    cfg_case("rope_scaling type a number", DEV, "rope_scaling", json_pack("{s:i}", "type", 1), "type");
    cfg_case("yarn without factor", DEV, "rope_scaling", json_pack("{s:s}", "type", "yarn"), "factor");
    cfg_case("yarn factor 0", DEV, "rope_scaling", json_pack("{s:s,s:i}", "type", "yarn", "factor", 0), "factor");
    cfg_case("yarn factor NaN-ish string", DEV, "rope_scaling", json_pack("{s:s,s:s}", "type", "yarn", "factor", "nan"), "factor");
    cfg_case("yarn original_max 0", DEV, "rope_scaling",
             json_pack("{s:s,s:i,s:i}", "type", "yarn", "factor", 4, "original_max_position_embeddings", 0),
             "original_max_position_embeddings");
    cfg_case("yarn beta_fast negative", DEV, "rope_scaling",
             json_pack("{s:s,s:i,s:i}", "type", "yarn", "factor", 4, "beta_fast", -32), "beta_fast");

    /* sizes inconsistent with the tensors */
    cfg_case("hidden_size 64 (tensors have 128)", DEV, "hidden_size", json_integer(64), "model.embed_tokens.weight");
    cfg_case("vocab_size 513", DEV, "vocab_size", json_integer(513), "model.embed_tokens.weight");
    cfg_case_t("num_hidden_layers 9", DEV, "num_hidden_layers", json_integer(9), "model.layers.4.");
    cfg_case("n_routed_experts 32", DEV, "n_routed_experts", json_integer(32), "mlp.gate.weight");
    cfg_case("tie_word_embeddings wrong type", DEV, "tie_word_embeddings", json_string("no"), NULL);

    /* V2 model: group-limited routing and YaRN */
    char v2[512];
    snprintf(v2, sizeof v2, "%s/v2-f16-grouped/checkpoint", MODELS);
    cfg_case("v2: rope_scaling unknown type", v2, "rope_scaling", json_pack("{s:s,s:f}", "type", "ntk", "factor", 2.0),
             "rope_scaling");
    cfg_case("v2: topk_group > n_group", v2, "topk_group", json_integer(5), NULL);
    cfg_case("v2: n_group 3", v2, "n_group", json_integer(3), NULL);
    cfg_case("v2: kv_lora_rank 0", v2, "kv_lora_rank", json_integer(0), NULL);
    cfg_case_t("v2: q_lora_rank null (tensors have q_a)", v2, "q_lora_rank", json_null(), "q_proj");
}

/* ---- valid but unusual ------------------------------------------------------------------ */

static void cases_valid(void) {
    const char *models[] = {"v3-bf16", "v2-f16-grouped", "v3-f32-nogroup", "v3-fp8-qproj", "v2-softmax-normtopk"};
    char p[1024];
    new_case(DEV);
    EXPECT_OK("dev as is");
    new_case(FP8);
    EXPECT_OK("fp8-dev as is");
    new_case(FP8);
    expect_ok_p("fp8-dev, no mmap", 0);
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        snprintf(p, sizeof p, "%s/%s/checkpoint", MODELS, models[i]);
        new_case(p);
        EXPECT_OK(models[i]);
    }

    new_case(DEV);
    json_t *j = load_json(g_dir, "model.safetensors.index.json");
    json_object_set_new(j, "metadata", json_pack("{s:i,s:s,s:[i,{}]}", "total_size", 1, "note", "x", "list", 1));
    json_object_set_new(j, "extra", json_pack("[n,b,f]", 1, 2.5));
    save_json(g_dir, "model.safetensors.index.json", j);
    EXPECT_OK("index with extra metadata");

    new_case(DEV);
    j = load_json(g_dir, "model.safetensors.index.json");
    json_object_del(j, "metadata");
    save_json(g_dir, "model.safetensors.index.json", j);
    EXPECT_OK("index without metadata");

    new_case(DEV);
    IDX_SET(g_dir, NRM, NULL);
    EXPECT_OK("index omits a tensor its shard has");

    new_case(DEV);
    pathf(p, sizeof p, g_dir, "model.safetensors.index.json");
    unlink(p);
    EXPECT_OK("no index (shards found by scanning)");

    stf s;
    new_case(DEV);
    st_load(&s, g_dir, SH1);
    {
        size_t hl;
        char *h = st_header_text(&s, 64, &hl);
        write_raw(s.path, h, hl, hl, s.data, s.dlen);
        free(h);
        st_free(&s);
    }
    EXPECT_OK("header padded with 64 spaces");

    new_case(DEV);
    st_load(&s, g_dir, SH1);
    {
        size_t hl;
        char *h = st_header_text(&s, 8, &hl);
        memmove(h + 8, h, hl - 8);
        memcpy(h, " \n\t\r    ", 8);
        write_raw(s.path, h, hl, hl, s.data, s.dlen);
        free(h);
        st_free(&s);
    }
    EXPECT_OK("header with leading whitespace");

    new_case(DEV);
    st_load(&s, g_dir, SH2);
    {
        json_t *r = json_object();
        const char *k;
        json_t *v;
        size_t n = json_object_size(s.h), i = 0;
        const char **keys = malloc(n * sizeof *keys);
        json_object_foreach(s.h, k, v) keys[i++] = k;
        while (i--) json_object_set(r, keys[i], json_object_get(s.h, keys[i]));
        free(keys);
        json_decref(s.h);
        s.h = r;
        st_save(&s);
    }
    EXPECT_OK("header keys in reverse order");

    new_case(DEV);
    st_load(&s, g_dir, SH1);
    json_object_del(s.h, "__metadata__");
    st_save(&s);
    st_load(&s, g_dir, SH2);
    json_object_set_new(s.h, "__metadata__", json_pack("{s:s,s:s}", "format", "pt", "x", "y"));
    st_save(&s);
    EXPECT_OK("__metadata__ absent / extra");

    new_case(DEV);
    st_load(&s, g_dir, SH1);
    json_object_set_new(s.h, "extra.unused", json_pack("{s:s,s:[i],s:[I,I]}", "dtype", "I8", "shape", 8, "data_offsets",
                                                       (json_int_t)s.dlen, (json_int_t)s.dlen + 8));
    json_object_set_new(s.h, "extra.empty", json_pack("{s:s,s:[i,i],s:[I,I]}", "dtype", "F32", "shape", 0, 4, "data_offsets",
                                                      (json_int_t)s.dlen, (json_int_t)s.dlen));
    memset(s.data + s.dlen, 0, 8);
    s.dlen += 8;
    st_save(&s);
    EXPECT_OK("extra unused and empty tensors");

    new_case(DEV);
    CFG_SET(g_dir, "some_future_field", json_pack("{s:[i,i]}", "x", 1, 2));
    CFG_SET(g_dir, "rope_scaling", json_null());
    EXPECT_OK("config: unknown field, rope_scaling null");
}

/* ---- the header parser directly (what the fuzzer drives) -------------------------------- */

static void cases_parse_header(void) {
    const char *bad[] = {"", "{", "{}}", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}x",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,0]}}",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9223372036854775807,-9223372036854775808]}}",
                         "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ds3_st_tensor *t = NULL;
        int n = -1;
        char err[DS3_ERR_LEN] = "";
        int rc = ds3_st_parse_header(bad[i], strlen(bad[i]), 4, "x.safetensors", &t, &n, err, sizeof err);
        CHECK(rc < 0 && t == NULL && n == 0, "parse_header case %zu: accepted", i);
        CHECK(strstr(err, "x.safetensors") && !strchr(err, '\n'), "parse_header case %zu: message '%s'", i, err);
        if (g_verbose) printf("  parse_header %-31zu %s\n", i, err);
        ds3_st_free_tensors(t, n > 0 ? n : 0);
    }
    const char *good = "{\"__metadata__\":{},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"e\":{\"dtype\":\"BF16\",\"shape\":[0,3],\"data_offsets\":[4,4]}}";
    ds3_st_tensor *t = NULL;
    int n = 0;
    char err[DS3_ERR_LEN] = "";
    int rc = ds3_st_parse_header(good, strlen(good), 4, "x.safetensors", &t, &n, err, sizeof err);
    CHECK(rc == 0 && n == 2, "parse_header good: %s", err);
    ds3_st_free_tensors(t, n);

    /* config parser directly */
    ds3_config c;
    rc = ds3_config_parse(&c, "{\"model_type\":\"deepseek_v3\"}", 28, "cfg.json", err, sizeof err);
    CHECK(rc == 0, "config with defaults only: %s", err);
    rc = ds3_config_parse(&c, "{\"model_type\":\"deepseek_v3\",\"n_group\":3}", 40, "cfg.json", err, sizeof err);
    CHECK(rc < 0 && strstr(err, "cfg.json") && strstr(err, "n_group"), "config n_group 3: %s", err);
}

int main(void) {
    TEST_BEGIN("test_hostile");
    g_verbose = getenv("DS3_HOSTILE_VERBOSE") != NULL;
    snprintf(g_root, sizeof g_root, "/tmp/ds3_hostile.XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    cases_parse_header();
    cases_truncate();
    cases_header();
    cases_offsets();
    cases_dtype_shape();
    cases_tensors();
    cases_index();
    cases_fp8();
    cases_config();
    cases_valid();
    rm_dir(g_root);
    printf("# %d checkpoints built and loaded\n", g_case);
    return TEST_REPORT();
}
