/* main.c -- the `ds3` binary: dispatch to one subcommand per file (src/cli/cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ds3.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} cmds[] = {
    {"run", ds3_cmd_run, "generate tokens from a prompt"},
    {"chat", ds3_cmd_chat, "interactive chat with a model's chat template"},
    {"logits", ds3_cmd_logits, "write the logits of every position (and MTP logits)"},
    {"info", ds3_cmd_info, "print a model's config, parameter counts and memory needs"},
    {"bench", ds3_cmd_bench, "measure prompt and decode speed against the memory roofline"},
    {"tokenize", ds3_cmd_tokenize, "text (stdin) to token ids"},
    {"detokenize", ds3_cmd_detokenize, "token ids (stdin) to text"},
    {"tokenizer-train", ds3_cmd_tokenizer_train, "train a byte-level BPE tokenizer.json"},
    {"train", ds3_cmd_train, "train a DeepSeek-V3-architecture model from scratch"},
    {"convert", ds3_cmd_convert, "convert checkpoints (HF safetensors <-> GGUF)"},
    {"serve", ds3_cmd_serve, "OpenAI-compatible HTTP server"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: ds3 COMMAND [options]   (ds3 COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-16s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\nkernels in use: %s (DS3_KERNELS=ref|avx2|avx512 to force)\n", ds3_kernels_name());
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "ds3: unknown command '%s'\nrun 'ds3 --help' for the list of commands\n", argv[1]);
    return 2;
}
