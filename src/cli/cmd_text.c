/* cmd_text.c -- `ds3 tokenize`, `ds3 detokenize`, `ds3 tokenizer-train` over src/text/.
 * Exit status: 0 ok, 1 runtime error (bad file, bad id), 2 bad usage. Owned by the tokenizer maintainer. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "text/bpe_train.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "util/common.h"

static char *read_stream(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    if (!b) return NULL;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb) return free(b), NULL;
            b = nb, cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) return free(b), NULL;
    b[n] = 0;
    *len = n;
    return b;
}

/* Output buffer so printing millions of ids is not dominated by stdio calls. */
static void print_ids(FILE *f, const int32_t *ids, size_t n, int json) {
    if (json) fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        if (i) fputs(json ? "," : " ", f);
        fprintf(f, "%d", (int)ids[i]);
    }
    if (json) fputc(']', f);
    fputc('\n', f);
}

static const char TOKENIZE_USAGE[] =
    "usage: ds3 tokenize -t TOKENIZER.json [--no-bos] [--literal-specials] [--json | --jsonl] [--chat [--add-generation-prompt]]\n"
    "\n"
    "Reads raw UTF-8 bytes from stdin (NUL bytes included) and prints the token ids, space-separated.\n"
    "  -t, --tokenizer PATH   tokenizer.json (tokenizer_config.json beside it is read when present)\n"
    "  --no-bos               do not add the BOS (by default it is added as tokenizer_config.json says)\n"
    "  --literal-specials     treat added-token text such as <｜User｜> as plain text\n"
    "  --json                 print one JSON array\n"
    "  --jsonl                batch mode: every stdin line is one JSON string; prints one JSON array per line\n"
    "  --chat                 stdin is a JSON array of chat messages: render the chat template, then tokenize\n"
    "                         (the template writes the BOS itself)\n"
    "  --add-generation-prompt  with --chat: end with the assistant prefix\n"
    "  --stats                print bytes, tokens, load and encode time (MB/s) to stderr\n"
    "  --repeat N             encode N times (benchmarking; output once)\n"
    "Ill-formed UTF-8 is replaced by U+FFFD per maximal subpart before encoding, as a lossy decode would.\n";

int ds3_cmd_tokenize(int argc, char **argv) {
    const char *C = "tokenize", *path = NULL;
    int no_bos = 0, literal = 0, json = 0, jsonl = 0, stats = 0, chat = 0, gen_prompt = 0;
    long repeat = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(TOKENIZE_USAGE, stdout), 0;
        else if (!strcmp(a, "-t") || !strcmp(a, "--tokenizer")) {
            if (i + 1 >= argc) return cli_usage_error(C, "%s needs a value", a);
            path = argv[++i];
        } else if (!strcmp(a, "--no-bos")) no_bos = 1;
        else if (!strcmp(a, "--literal-specials")) literal = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--jsonl")) jsonl = 1;
        else if (!strcmp(a, "--stats")) stats = 1;
        else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--add-generation-prompt")) gen_prompt = 1;
        else if (!strcmp(a, "--repeat")) {
            if (cli_parse_int(C, a, i + 1 < argc ? argv[++i] : NULL, 1, 100000, &repeat)) return 2;
        } else return cli_usage_error(C, "unknown option '%s'", a);
    }
    if (!path) return cli_usage_error(C, "-t TOKENIZER.json is required");
    if (jsonl && (json || chat)) return cli_usage_error(C, "--jsonl cannot be combined with --json or --chat");
    if (gen_prompt && !chat) return cli_usage_error(C, "--add-generation-prompt needs --chat");
    char err[DS3_ERR_LEN];
    double t0 = ds3_time_s();
    ds3_tokenizer *t = ds3_tokenizer_load(path, err, sizeof err);
    if (!t) return fprintf(stderr, "ds3 %s: %s\n", C, err), 1;
    double t_load = ds3_time_s() - t0;
    size_t len;
    char *in = read_stream(stdin, &len);
    if (!in) {
        ds3_tokenizer_free(t);
        return fprintf(stderr, "ds3 %s: cannot read stdin\n", C), 1;
    }
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    int rc = 0;
    size_t total_tokens = 0;
    double t_enc = 0;
    if (jsonl) {
        size_t pos = 0, line = 0;
        while (pos < len && !rc) {
            char *nl = memchr(in + pos, '\n', len - pos);
            size_t end = nl ? (size_t)(nl - in) : len;
            line++;
            json_error_t je;
            json_t *s = json_loadb(in + pos, end - pos, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            if (!json_is_string(s)) {
                fprintf(stderr, "ds3 %s: stdin line %zu: not a JSON string%s%s\n", C, line, s ? "" : ": ", s ? "" : je.text);
                json_decref(s);
                rc = 1;
                break;
            }
            int32_t *ids;
            size_t n;
            double t1 = ds3_time_s();
            int r = ds3_tokenizer_encode(t, json_string_value(s), json_string_length(s), !no_bos, literal, &ids, &n, err,
                                         sizeof err);
            t_enc += ds3_time_s() - t1;
            json_decref(s);
            if (r) {
                fprintf(stderr, "ds3 %s: stdin line %zu: %s\n", C, line, err);
                rc = 1;
                break;
            }
            print_ids(stdout, ids, n, 1);
            total_tokens += n;
            free(ids);
            pos = end + 1;
        }
    } else {
        char *text = in;
        size_t tlen = len;
        int add = !no_bos;
        if (chat) {
            const char *bos = ds3_tokenizer_bos_text(t);
            if (ds3_chat_render_json(in, len, gen_prompt, bos, &text, &tlen, err, sizeof err)) {
                fprintf(stderr, "ds3 %s: stdin: %s\n", C, err);
                free(in);
                ds3_tokenizer_free(t);
                return 1;
            }
            add = 0;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        for (long r = 0; r < repeat && !rc; r++) {
            free(ids);
            double t1 = ds3_time_s();
            if (ds3_tokenizer_encode(t, text, tlen, add, literal, &ids, &n, err, sizeof err)) {
                fprintf(stderr, "ds3 %s: %s\n", C, err);
                rc = 1;
            }
            double dt = ds3_time_s() - t1;
            if (r == 0 || dt < t_enc) t_enc = dt; /* best of N */
        }
        if (!rc) print_ids(stdout, ids, n, json);
        total_tokens = n;
        free(ids);
        if (text != in) free(text);
    }
    if (stats)
        fprintf(stderr, "tokenize: %zu bytes, %zu tokens, load %.3f s, encode %.4f s, %.2f MB/s (1 thread%s)\n", len,
                total_tokens, t_load, t_enc, t_enc > 0 ? len / t_enc / 1e6 : 0.0, repeat > 1 ? ", best of repeats" : "");
    fflush(stdout);
    free(in);
    ds3_tokenizer_free(t);
    return rc;
}

static const char DETOKENIZE_USAGE[] =
    "usage: ds3 detokenize -t TOKENIZER.json [--skip-special]\n"
    "\n"
    "Reads token ids from stdin (separated by spaces, commas or newlines; JSON brackets are ignored) and\n"
    "writes the text bytes to stdout. Ill-formed UTF-8 across tokens becomes U+FFFD, as HF decode does.\n"
    "  -t, --tokenizer PATH   tokenizer.json\n"
    "  --skip-special         leave out special tokens (skip_special_tokens=True)\n";

int ds3_cmd_detokenize(int argc, char **argv) {
    const char *C = "detokenize", *path = NULL;
    int skip = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return fputs(DETOKENIZE_USAGE, stdout), 0;
        else if (!strcmp(a, "-t") || !strcmp(a, "--tokenizer")) {
            if (i + 1 >= argc) return cli_usage_error(C, "%s needs a value", a);
            path = argv[++i];
        } else if (!strcmp(a, "--skip-special")) skip = 1;
        else return cli_usage_error(C, "unknown option '%s'", a);
    }
    if (!path) return cli_usage_error(C, "-t TOKENIZER.json is required");
    char err[DS3_ERR_LEN];
    ds3_tokenizer *t = ds3_tokenizer_load(path, err, sizeof err);
    if (!t) return fprintf(stderr, "ds3 %s: %s\n", C, err), 1;
    size_t len;
    char *in = read_stream(stdin, &len);
    if (!in) {
        ds3_tokenizer_free(t);
        return fprintf(stderr, "ds3 %s: cannot read stdin\n", C), 1;
    }
    size_t n = 0, cap = 1024;
    int32_t *ids = malloc(cap * sizeof *ids);
    int rc = ids ? 0 : 1;
    for (char *p = in; ids && *p && !rc;) {
        if (strchr(" ,\t\r\n[]", *p)) {
            p++;
            continue;
        }
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && !strchr(" ,\t\r\n[]", *end))) {
            fprintf(stderr, "ds3 %s: stdin: bad token id near '%.20s'\n", C, p);
            rc = 1;
            break;
        }
        if (n == cap) {
            int32_t *ni = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!ni) {
                rc = 1;
                break;
            }
            ids = ni;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (!rc && (size_t)strlen(in) != len) {
        fprintf(stderr, "ds3 %s: stdin: NUL byte in the id list\n", C);
        rc = 1;
    }
    if (!rc) {
        char *text;
        size_t tl;
        if (ds3_tokenizer_decode(t, ids, n, skip, &text, &tl, err, sizeof err)) {
            fprintf(stderr, "ds3 %s: %s\n", C, err);
            rc = 1;
        } else {
            fwrite(text, 1, tl, stdout);
            free(text);
        }
    }
    free(ids);
    free(in);
    ds3_tokenizer_free(t);
    return rc;
}

static const char TRAIN_USAGE[] =
    "usage: ds3 tokenizer-train --input FILE... --vocab-size N -o tokenizer.json [--split train|validation|all]\n"
    "                           [--min-frequency N] [--verbose]\n"
    "\n"
    "Trains a byte-level BPE with DeepSeek-V3's pre-tokenizer rules and writes a Hugging Face tokenizer.json\n"
    "(id 0 BOS <｜begin▁of▁sentence｜>, id 1 EOS <｜end▁of▁sentence｜>, ids 2..257 the bytes, then merges).\n"
    "  --input FILE...       one or more corpus files (the flag may also be repeated)\n"
    "  --vocab-size N        total ids, 258..4194304\n"
    "  -o PATH               output file (written atomically)\n"
    "  --split S             use only the train (or validation) part of each file, by the SPLITS.md rule\n"
    "                        (last ~10%% of the bytes is validation); default all\n"
    "  --min-frequency N     stop when the most frequent pair occurs fewer than N times (default 2)\n";

int ds3_cmd_tokenizer_train(int argc, char **argv) {
    const char *C = "tokenizer-train", *out = NULL, *split = "all";
    long vocab = -1, minf = 2;
    int verbose = 0;
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    size_t n_in = 0;
    if (!inputs) return 1;
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            free(inputs);
            return fputs(TRAIN_USAGE, stdout), 0;
        } else if (!strcmp(a, "--input")) {
            int k = 0;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) && strcmp(argv[i + 1], "-o")) inputs[n_in++] = argv[++i], k++;
            if (!k) rc = cli_usage_error(C, "--input needs at least one file");
        } else if (!strcmp(a, "--vocab-size")) {
            if (cli_parse_int(C, a, i + 1 < argc ? argv[++i] : NULL, 258, 1 << 22, &vocab)) rc = 2;
        } else if (!strcmp(a, "--min-frequency")) {
            if (cli_parse_int(C, a, i + 1 < argc ? argv[++i] : NULL, 1, 1L << 30, &minf)) rc = 2;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (i + 1 >= argc) rc = cli_usage_error(C, "%s needs a value", a);
            else out = argv[++i];
        } else if (!strcmp(a, "--split")) {
            if (i + 1 >= argc) rc = cli_usage_error(C, "--split needs a value");
            else split = argv[++i];
            if (!rc && strcmp(split, "train") && strcmp(split, "validation") && strcmp(split, "all"))
                rc = cli_usage_error(C, "--split: '%s' is not train, validation or all", split);
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) verbose = 1;
        else rc = cli_usage_error(C, "unknown option '%s'", a);
    }
    if (!rc && !n_in) rc = cli_usage_error(C, "--input FILE is required");
    if (!rc && vocab < 0) rc = cli_usage_error(C, "--vocab-size N is required");
    if (!rc && !out) rc = cli_usage_error(C, "-o PATH is required");
    if (rc) {
        free(inputs);
        return rc;
    }
    char err[DS3_ERR_LEN];
    char **bufs = calloc(n_in, sizeof *bufs);
    const char **texts = calloc(n_in, sizeof *texts);
    size_t *lens = calloc(n_in, sizeof *lens);
    if (!bufs || !texts || !lens) rc = 1;
    for (size_t i = 0; i < n_in && !rc; i++) {
        size_t n;
        bufs[i] = ds3_read_file(inputs[i], &n, (size_t)1 << 34, err, sizeof err);
        if (!bufs[i]) {
            fprintf(stderr, "ds3 %s: %s\n", C, err);
            rc = 1;
            break;
        }
        size_t s = ds3_corpus_split_offset((const unsigned char *)bufs[i], n);
        if (!strcmp(split, "train")) texts[i] = bufs[i], lens[i] = s;
        else if (!strcmp(split, "validation")) texts[i] = bufs[i] + s, lens[i] = n - s;
        else texts[i] = bufs[i], lens[i] = n;
    }
    if (!rc) {
        ds3_bpe_train_params p = ds3_bpe_train_default_params();
        p.vocab_size = (int)vocab, p.min_frequency = (int)minf, p.verbose = verbose;
        char *json;
        size_t jl;
        int n_merges = 0;
        double t0 = ds3_time_s();
        if (ds3_bpe_train(texts, lens, n_in, &p, &json, &jl, &n_merges, err, sizeof err)) {
            fprintf(stderr, "ds3 %s: %s\n", C, err);
            rc = 1;
        } else {
            if (ds3_write_file_atomic(out, json, jl, err, sizeof err)) {
                fprintf(stderr, "ds3 %s: %s\n", C, err);
                rc = 1;
            } else {
                fprintf(stderr, "tokenizer-train: %d merges, vocab %d, %.2f s -> %s\n", n_merges, 258 + n_merges,
                        ds3_time_s() - t0, out);
            }
            free(json);
        }
    }
    for (size_t i = 0; bufs && i < n_in; i++) free(bufs[i]);
    free(bufs), free(texts), free(lens), free(inputs);
    return rc;
}
