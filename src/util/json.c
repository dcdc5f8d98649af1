/* json.c -- typed, range-checked field access over jansson (see json.h). */
#include "json.h"

#include <math.h>
#include <string.h>

static const json_t *field(const json_t *obj, const char *key) {
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return (v && !json_is_null(v)) ? v : NULL;
}

int ds3_json_int(const json_t *obj, const char *key, int required, long def, long lo, long hi, long *out,
                 const char *file, char *err, size_t errlen) {
    const json_t *v = field(obj, key);
    if (!v) {
        if (required) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: missing field '%s'", file, key);
        *out = def;
        return 0;
    }
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v)) d = json_real_value(v);
    else return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: field '%s' must be an integer", file, key);
    if (!(d >= (double)lo && d <= (double)hi)) {
        if (json_is_integer(v)) /* exact, not rounded through double */
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: field '%s' = %lld is out of range [%ld, %ld]", file,
                              key, (long long)json_integer_value(v), lo, hi);
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: field '%s' = %.6g is out of range [%ld, %ld]", file,
                          key, d, lo, hi);
    }
    *out = (long)d;
    return 0;
}

int ds3_json_num(const json_t *obj, const char *key, int required, double def, double lo, double hi,
                 double *out, const char *file, char *err, size_t errlen) {
    const json_t *v = field(obj, key);
    if (!v) {
        if (required) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: missing field '%s'", file, key);
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: field '%s' must be a number", file, key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: field '%s' = %g is out of range [%g, %g]", file, key,
                          d, lo, hi);
    *out = d;
    return 0;
}

int ds3_json_bool(const json_t *obj, const char *key, int required, int def, int *out, const char *file,
                  char *err, size_t errlen) {
    const json_t *v = field(obj, key);
    if (!v) {
        if (required) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: missing field '%s'", file, key);
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: field '%s' must be true or false", file, key);
    *out = json_is_true(v);
    return 0;
}

int ds3_json_str(const json_t *obj, const char *key, int required, const char *def, char *out, size_t outlen,
                 const char *file, char *err, size_t errlen) {
    const json_t *v = field(obj, key);
    const char *s = def;
    if (!v) {
        if (required) return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: missing field '%s'", file, key);
    } else {
        if (!json_is_string(v))
            return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: field '%s' must be a string", file, key);
        s = json_string_value(v);
    }
    if (!s) s = "";
    if (strlen(s) >= outlen)
        return ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: field '%s' is too long", file, key);
    strcpy(out, s);
    return 0;
}

/* jansson names a duplicate key only when it is at most 20 bytes long; the key is the string
 * token that ends at the error position, so find its opening quote and name it ourselves. */
static int duplicate_key(const char *buf, size_t len, const json_error_t *je, const char **key, int *klen) {
#if JANSSON_VERSION_HEX >= 0x020b00
    if (json_error_code(je) != json_error_duplicate_key) return 0;
#else
    if (!strstr(je->text, "duplicate object key")) return 0;
#endif
    if (je->position < 2 || (size_t)je->position > len || buf[je->position - 1] != '"') return 0;
    size_t end = (size_t)je->position - 1;
    for (size_t b = end; b-- > 0;) {
        if (buf[b] != '"') continue;
        size_t bs = 0;
        while (bs < b && buf[b - 1 - bs] == '\\') bs++;
        if (bs % 2) continue;
        *key = buf + b + 1;
        *klen = (int)(end - b - 1 > 200 ? 200 : end - b - 1);
        return 1;
    }
    return 0;
}

json_t *ds3_json_parse(const char *buf, size_t len, const char *file, char *err, size_t errlen) {
    json_error_t je;
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    const char *key;
    int klen;
    if (j) return j;
    if (duplicate_key(buf, len, &je, &key, &klen))
        ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: invalid JSON at line %d column %d: duplicate key '%.*s'", file,
                   je.line, je.column, klen, key);
    else
        ds3_seterr(err, errlen, DS3_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", file, je.line, je.column,
                   je.text);
    return NULL;
}
