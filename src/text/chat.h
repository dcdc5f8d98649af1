/* chat.h -- the DeepSeek-V3 chat template (tokenizer_config.json's Jinja template), rendered natively.
 *
 *   {BOS}{system prompts joined by "\n\n"}<｜User｜>u1<｜Assistant｜>a1<｜end▁of▁sentence｜><｜User｜>u2<｜Assistant｜>
 *
 * Tool calls and tool outputs follow the template too, upstream quirks included (see chat.c).
 * Encode the result with add_special = 0: the template already writes the BOS text. */
#ifndef DS3_TEXT_CHAT_H
#define DS3_TEXT_CHAT_H

#include <stddef.h>

typedef struct {
    const char *type;      /* "function" */
    const char *name;      /* function name */
    const char *arguments; /* JSON text of the arguments */
} ds3_chat_tool_call;

typedef struct {
    const char *role;    /* "system", "user", "assistant", "tool"; other roles are ignored (as upstream) */
    const char *content; /* NULL = none (an assistant turn that only makes tool calls) */
    const ds3_chat_tool_call *tool_calls;
    size_t n_tool_calls;
} ds3_chat_msg;

/* Render messages. bos_token NULL means "<｜begin▁of▁sentence｜>". *out is malloc'd, NUL-terminated.
 * Returns 0 or a negative ds3_status with a one-line message (e.g. a user turn without content). */
int ds3_chat_render(const ds3_chat_msg *msgs, size_t n, int add_generation_prompt, const char *bos_token, char **out,
                    size_t *out_len, char *err, size_t errlen);

/* The same from a JSON array of OpenAI/HF-style messages:
 *   [{"role": "user", "content": "..."},
 *    {"role": "assistant", "content": null, "tool_calls": [{"type": "function",
 *        "function": {"name": "f", "arguments": "{\"x\": 1}"}}]}, {"role": "tool", "content": "..."}]
 * "arguments" may be a string (used as is) or an object (written as compact JSON). */
int ds3_chat_render_json(const char *messages_json, size_t len, int add_generation_prompt, const char *bos_token,
                         char **out, size_t *out_len, char *err, size_t errlen);

#endif
