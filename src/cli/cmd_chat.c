/* cmd_chat.c -- `ds3 chat`: an interactive REPL with the model's chat template (DeepSeek-V3's,
 * rendered natively by src/text/chat.c), streaming replies. Each turn re-renders the whole
 * conversation, keeps the cached prefix that still matches and evaluates only the rest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_gen.h"
#include "infer/generate.h"
#include "text/chat.h"
#include "util/common.h"

static void usage(void) {
    printf("usage: ds3 chat [-m DIR] [-s SYSTEM] [options]\n\n"
           "Chat with a model that has tokenizer.json. Type a message and press Enter;\n"
           "/reset starts over, /exit (or Ctrl-D) quits.\n\n"
           "  -s, --system TEXT     system prompt\n");
    cli_gen_usage(stdout);
}

typedef struct {
    ds3_detok_stream *ds;
    char *reply;
    size_t len, cap;
} chat_out;

static int on_token(void *ud, int32_t tok) {
    chat_out *o = ud;
    const char *t;
    size_t n;
    if (ds3_detok_stream_push(o->ds, tok, &t, &n) == 0 && n) {
        fwrite(t, 1, n, stdout);
        fflush(stdout);
        if (o->len + n + 1 > o->cap) {
            o->cap = (o->len + n + 1) * 2;
            o->reply = realloc(o->reply, o->cap);
        }
        memcpy(o->reply + o->len, t, n);
        o->len += n;
        o->reply[o->len] = 0;
    }
    return 0;
}

int ds3_cmd_chat(int argc, char **argv) {
    const char *C = "chat", *system = NULL;
    cli_gen_opts o;
    cli_gen_defaults(&o);
    o.n_predict = 512;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        int r = cli_gen_flag(C, &o, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "-s") || !strcmp(a, "--system")) { if (!v) return cli_usage_error(C, "%s needs a value", a); system = v; i++; }
        else return cli_usage_error(C, "unknown option '%s'", a);
    }
    ds3_model *m;
    ds3_session *s;
    ds3_tokenizer *tok;
    int rc = cli_load(C, &o, &m, &s, &tok);
    if (rc) goto done;
    rc = 1;
    if (!tok) { fprintf(stderr, "ds3 chat: %s has no tokenizer.json\nrun 'ds3 chat --help' for usage\n", ds3_model_dir(m)); goto done; }
    char err[DS3_ERR_LEN];
    ds3_sampler *smp = ds3_sampler_new(&o.sp, ds3_model_vocab_size(m));
    ds3_chat_msg *msgs = calloc(1024, sizeof *msgs);
    char **owned = calloc(1024, sizeof *owned);
    size_t nm = 0;
    int32_t *cached = NULL; /* tokens currently in the session's cache */
    size_t n_cached = 0;
    ds3_spec_auto_memo memo = {0}; /* --spec auto: the choice carries over from turn to turn */
    if (system) msgs[nm++] = (ds3_chat_msg){.role = "system", .content = system};
    char *line = NULL;
    size_t lcap = 0;
    fprintf(stderr, "ds3 chat: %s — type /exit or Ctrl-D to quit, /reset to start over\n", ds3_model_dir(m));
    for (;;) {
        printf("\n> ");
        fflush(stdout);
        ssize_t ln = getline(&line, &lcap, stdin);
        if (ln < 0) break;
        while (ln > 0 && (line[ln - 1] == '\n' || line[ln - 1] == '\r')) line[--ln] = 0;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            nm = system ? 1 : 0;
            n_cached = 0;
            ds3_session_reset(s);
            continue;
        }
        if (!ln) continue;
        if (nm + 2 >= 1024) { fprintf(stderr, "ds3 chat: conversation too long; /reset\n"); continue; }
        owned[nm] = strdup(line);
        msgs[nm] = (ds3_chat_msg){.role = "user", .content = owned[nm]};
        nm++;
        char *text;
        size_t tl;
        int32_t *ids;
        size_t n;
        if (ds3_chat_render(msgs, nm, 1, ds3_tokenizer_bos_text(tok), &text, &tl, err, sizeof err) ||
            ds3_tokenizer_encode(tok, text, tl, 0, 0, &ids, &n, err, sizeof err)) {
            fprintf(stderr, "ds3 chat: %s\n", err);
            break;
        }
        free(text);
        size_t keep = 0;
        while (keep < n_cached && keep < n && cached[keep] == ids[keep]) keep++;
        if (keep == n) keep--; /* always evaluate at least the last token */
        ds3_session_truncate(s, (int)keep);
        if (ds3_session_mtp_n_past(s) > (int)keep) ds3_session_mtp_truncate(s, (int)keep);
        chat_out co = {ds3_detok_stream_new(tok, 1), NULL, 0, 0};
        ds3_gen_params gp = ds3_gen_default_params();
        gp.n_predict = o.n_predict;
        gp.stop_at_eos = 1;
        gp.spec = o.spec;
        gp.n_draft = o.n_draft;
        gp.auto_memo = &memo;
        gp.on_token = on_token;
        gp.ud = &co;
        ds3_gen_stats st;
        int g = ds3_generate(s, smp, ids + keep, (int)(n - keep), &gp, &st, err, sizeof err);
        const char *t;
        size_t tn;
        if (ds3_detok_stream_finish(co.ds, &t, &tn) == 0 && tn) fwrite(t, 1, tn, stdout);
        ds3_detok_stream_free(co.ds);
        free(cached);
        cached = ids;
        n_cached = n; /* the prompt is cached; generated tokens are re-evaluated next turn */
        ds3_session_truncate(s, (int)n);
        if (ds3_session_mtp_n_past(s) > (int)n) ds3_session_mtp_truncate(s, (int)n);
        if (g) { fprintf(stderr, "\nds3 chat: %s\n", err); free(co.reply); break; }
        owned[nm] = co.reply ? co.reply : strdup("");
        msgs[nm] = (ds3_chat_msg){.role = "assistant", .content = owned[nm]};
        nm++;
        if (o.spec) {
            char desc[512];
            ds3_gen_stats_describe(&st, o.n_draft, desc, sizeof desc);
            fprintf(stderr, "\n[%d tokens, %.1f tok/s; %s]", st.n_gen, st.t_gen > 0 ? st.n_gen / st.t_gen : 0.0, desc);
        } else {
            fprintf(stderr, "\n[%d tokens, %.1f tok/s]", st.n_gen, st.t_gen > 0 ? st.n_gen / st.t_gen : 0.0);
        }
    }
    printf("\n");
    for (size_t i = 0; i < 1024; i++) free(owned[i]);
    free(owned);
    free(msgs);
    free(line);
    free(cached);
    ds3_sampler_free(smp);
    rc = 0;
done:
    ds3_session_free(s);
    ds3_tokenizer_free(tok);
    ds3_model_free(m);
    return rc;
}
