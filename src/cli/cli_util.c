/* cli_util.c -- flag parsing shared by the subcommands. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ds3 %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nrun 'ds3 %s --help' for usage\n", cmd);
    return 2;
}

int cli_parse_int(const char *cmd, const char *flag, const char *val, long lo, long hi, long *out) {
    if (!val) return cli_usage_error(cmd, "%s needs a value", flag), -1;
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end) return cli_usage_error(cmd, "%s: '%s' is not an integer", flag, val), -1;
    if (v < lo || v > hi)
        return cli_usage_error(cmd, "%s: %ld is out of range [%ld, %ld]", flag, v, lo, hi), -1;
    *out = v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *flag, const char *val, double lo, double hi, double *out) {
    if (!val) return cli_usage_error(cmd, "%s needs a value", flag), -1;
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !isfinite(v))
        return cli_usage_error(cmd, "%s: '%s' is not a number", flag, val), -1;
    if (v < lo || v > hi) return cli_usage_error(cmd, "%s: %g is out of range [%g, %g]", flag, v, lo, hi), -1;
    *out = v;
    return 0;
}

int cli_parse_tokens(const char *cmd, const char *s, int **out) {
    if (!s) return cli_usage_error(cmd, "--tokens needs a value"), -1;
    size_t cap = 16, n = 0;
    int *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > 0x7fffffff || (*end && *end != ',' && *end != ' ')) {
            free(v);
            cli_usage_error(cmd, "--tokens: bad token id near '%.20s'", p);
            return -1;
        }
        if (n == cap) {
            int *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) { free(v); return -1; }
            v = nv;
        }
        v[n++] = (int)x;
        p = end;
    }
    if (n == 0) {
        free(v);
        cli_usage_error(cmd, "--tokens: no token ids given");
        return -1;
    }
    *out = v;
    return (int)n;
}
