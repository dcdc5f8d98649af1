/* cli.h -- the subcommands of the `ds3` binary, one file each (src/cli/cmd_*.c).
 * Each returns the process exit status; only src/cli/ may call exit(). Every command accepts
 * --help / -h and prints its usage to stdout with exit 0; a bad flag prints a one-line error and
 * "run 'ds3 CMD --help' for usage" to stderr with exit 2. */
#ifndef DS3_CLI_H
#define DS3_CLI_H

int ds3_cmd_run(int argc, char **argv);
int ds3_cmd_chat(int argc, char **argv);
int ds3_cmd_logits(int argc, char **argv);
int ds3_cmd_info(int argc, char **argv);
int ds3_cmd_bench(int argc, char **argv);
int ds3_cmd_tokenize(int argc, char **argv);
int ds3_cmd_detokenize(int argc, char **argv);
int ds3_cmd_tokenizer_train(int argc, char **argv);
int ds3_cmd_train(int argc, char **argv);
int ds3_cmd_convert(int argc, char **argv);
int ds3_cmd_serve(int argc, char **argv);

/* Shared flag helpers (cli_util.c). They print "ds3 CMD: ..." and return -1 on a bad value. */
int cli_parse_int(const char *cmd, const char *flag, const char *val, long lo, long hi, long *out);
int cli_parse_float(const char *cmd, const char *flag, const char *val, double lo, double hi, double *out);
/* Print "ds3 CMD: msg" + the usage hint to stderr; returns 2 (the exit status for bad usage). */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parse "5,17,42" (commas or spaces) into a malloc'd int array; returns count or -1. */
int cli_parse_tokens(const char *cmd, const char *s, int **out);

#endif
