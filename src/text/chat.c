/* chat.c -- native rendering of DeepSeek-V3's chat template.
 *
 * Reference: the Jinja "chat_template" in DeepSeek-V3's tokenizer_config.json (deepseek-ai/DeepSeek-V3
 * @e815299b), rendered by HF transformers with trim_blocks/lstrip_blocks; docs/tokenizer.md. This file
 * mirrors that template statement by statement, namespace variables and quirks included:
 *   - all system messages are hoisted behind the BOS, joined with "\n\n";
 *   - ns.is_first is never reset, so only the very first tool call of the whole conversation opens
 *     with <｜Assistant｜><｜tool▁calls▁begin｜>; every later call (in any message) is written with a
 *     leading "\n" and closes with <｜tool▁calls▁end｜><｜end▁of▁sentence｜>. With exactly one tool call
 *     that closing pair is therefore never written (upstream quirk, kept);
 *   - ns.is_output_first is never reset either: only the first tool output of the conversation opens
 *     <｜tool▁outputs▁begin｜>;
 *   - an assistant text after tool outputs closes them with <｜tool▁outputs▁end｜> instead of opening
 *     with <｜Assistant｜>; a trailing tool turn gets <｜tool▁outputs▁end｜> and no generation prompt.
 * Owned by the tokenizer maintainer (src/text/). */
#include "text/chat.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "util/common.h"

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s) {
    size_t l = strlen(s);
    if (b->oom) return;
    if (b->n + l + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->n + l + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np, b->cap = nc;
    }
    memcpy(b->p + b->n, s, l);
    b->n += l;
    b->p[b->n] = 0;
}

static void put_call(sbuf *b, const ds3_chat_tool_call *c) {
    put(b, c->type), put(b, "<｜tool▁sep｜>"), put(b, c->name), put(b, "\n```json\n"), put(b, c->arguments);
    put(b, "\n```<｜tool▁call▁end｜>");
}

int ds3_chat_render(const ds3_chat_msg *m, size_t n, int add_generation_prompt, const char *bos_token, char **out,
                    size_t *out_len, char *err, size_t errlen) {
    *out = NULL, *out_len = 0;
    /* Upstream concatenates strings with '+', which fails on a missing value: so do we. */
    for (size_t i = 0; i < n; i++) {
        const char *r = m[i].role;
        if (!r) return ds3_seterr(err, errlen, DS3_ERR_ARG, "chat: messages[%zu].role: missing", i);
        int needs_content = !strcmp(r, "system") || !strcmp(r, "user") || !strcmp(r, "tool");
        if (needs_content && !m[i].content)
            return ds3_seterr(err, errlen, DS3_ERR_ARG, "chat: messages[%zu].content: missing for role '%s'", i, r);
        if (!strcmp(r, "assistant") && !m[i].content)
            for (size_t k = 0; k < m[i].n_tool_calls; k++) {
                const ds3_chat_tool_call *c = &m[i].tool_calls[k];
                if (!c->type || !c->name || !c->arguments)
                    return ds3_seterr(err, errlen, DS3_ERR_ARG,
                                      "chat: messages[%zu].tool_calls[%zu]: needs type, function.name and arguments", i, k);
            }
    }
    sbuf b = {0};
    int is_first = 0, is_tool = 0, is_output_first = 1, is_first_sp = 1;
    put(&b, bos_token ? bos_token : "<｜begin▁of▁sentence｜>");
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m[i].role, "system")) continue;
        if (!is_first_sp) put(&b, "\n\n");
        put(&b, m[i].content);
        is_first_sp = 0;
    }
    for (size_t i = 0; i < n; i++) {
        const ds3_chat_msg *x = &m[i];
        if (!strcmp(x->role, "user")) {
            is_tool = 0;
            put(&b, "<｜User｜>"), put(&b, x->content);
        } else if (!strcmp(x->role, "assistant") && !x->content) {
            is_tool = 0;
            for (size_t k = 0; k < x->n_tool_calls; k++) {
                if (!is_first) {
                    put(&b, "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>");
                    put_call(&b, &x->tool_calls[k]);
                    is_first = 1;
                } else {
                    put(&b, "\n<｜tool▁call▁begin｜>");
                    put_call(&b, &x->tool_calls[k]);
                    put(&b, "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>");
                }
            }
        } else if (!strcmp(x->role, "assistant")) {
            if (is_tool) {
                put(&b, "<｜tool▁outputs▁end｜>"), put(&b, x->content), put(&b, "<｜end▁of▁sentence｜>");
                is_tool = 0;
            } else {
                put(&b, "<｜Assistant｜>"), put(&b, x->content), put(&b, "<｜end▁of▁sentence｜>");
            }
        } else if (!strcmp(x->role, "tool")) {
            is_tool = 1;
            if (is_output_first) {
                put(&b, "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>"), put(&b, x->content);
                put(&b, "<｜tool▁output▁end｜>");
                is_output_first = 0;
            } else {
                put(&b, "\n<｜tool▁output▁begin｜>"), put(&b, x->content), put(&b, "<｜tool▁output▁end｜>");
            }
        }
    }
    if (is_tool) put(&b, "<｜tool▁outputs▁end｜>");
    if (add_generation_prompt && !is_tool) put(&b, "<｜Assistant｜>");
    if (b.oom) {
        free(b.p);
        return ds3_seterr(err, errlen, DS3_ERR_NOMEM, "chat: out of memory");
    }
    *out = b.p, *out_len = b.n;
    return 0;
}

int ds3_chat_render_json(const char *js, size_t len, int add_generation_prompt, const char *bos_token, char **out,
                         size_t *out_len, char *err, size_t errlen) {
    *out = NULL, *out_len = 0;
    json_error_t je;
    json_t *root = json_loadb(js, len, 0, &je);
    if (!root) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "chat: messages: bad JSON at line %d: %s", je.line, je.text);
    if (json_is_object(root) && json_object_get(root, "messages")) { /* accept {"messages": [...]} too */
        json_t *a = json_incref(json_object_get(root, "messages"));
        json_decref(root);
        root = a;
    }
    if (!json_is_array(root)) {
        json_decref(root);
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "chat: messages: not an array");
    }
    size_t n = json_array_size(root), n_calls = 0;
    for (size_t i = 0; i < n; i++) n_calls += json_array_size(json_object_get(json_array_get(root, i), "tool_calls"));
    ds3_chat_msg *msgs = calloc(n + 1, sizeof *msgs);
    ds3_chat_tool_call *calls = calloc(n_calls + 1, sizeof *calls);
    char **owned = calloc(n_calls + 1, sizeof *owned);
    int rc = 0;
    if (!msgs || !calls || !owned) {
        rc = ds3_seterr(err, errlen, DS3_ERR_NOMEM, "chat: out of memory");
        goto done;
    }
    size_t ci = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(root, i);
        if (!json_is_object(e)) {
            rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "chat: messages[%zu]: not an object", i);
            goto done;
        }
        msgs[i].role = json_string_value(json_object_get(e, "role"));
        json_t *c = json_object_get(e, "content");
        if (c && !json_is_null(c) && !json_is_string(c)) {
            rc = ds3_seterr(err, errlen, DS3_ERR_FORMAT, "chat: messages[%zu].content: must be a string or null", i);
            goto done;
        }
        msgs[i].content = json_string_value(c);
        json_t *tc = json_object_get(e, "tool_calls");
        msgs[i].tool_calls = calls + ci;
        for (size_t k = 0; k < json_array_size(tc); k++, ci++) {
            json_t *call = json_array_get(tc, k), *fn = json_object_get(call, "function");
            json_t *args = json_object_get(fn, "arguments");
            calls[ci].type = json_string_value(json_object_get(call, "type"));
            calls[ci].name = json_string_value(json_object_get(fn, "name"));
            if (json_is_string(args)) calls[ci].arguments = json_string_value(args);
            else if (args) calls[ci].arguments = owned[ci] = json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
        }
        msgs[i].n_tool_calls = json_array_size(tc);
    }
    rc = ds3_chat_render(msgs, n, add_generation_prompt, bos_token, out, out_len, err, errlen);
done:
    for (size_t k = 0; owned && k < n_calls; k++) free(owned[k]);
    free(owned), free(calls), free(msgs);
    json_decref(root);
    return rc;
}
