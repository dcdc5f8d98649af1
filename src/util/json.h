/* json.h -- typed field access over jansson with errors that name the file and the field.
 * Each getter returns 0 on success (value or default stored in *out) or a negative ds3_status
 * with a message like "config.json: field 'hidden_size': must be an integer in [1, 65536]".
 * A JSON null counts as absent. */
#ifndef DS3_JSON_H
#define DS3_JSON_H

#include <jansson.h>

#include "common.h"

/* required: 1 = error when absent; 0 = use def. */
int ds3_json_int(const json_t *obj, const char *key, int required, long def, long lo, long hi, long *out,
                 const char *file, char *err, size_t errlen);
int ds3_json_num(const json_t *obj, const char *key, int required, double def, double lo, double hi,
                 double *out, const char *file, char *err, size_t errlen);
int ds3_json_bool(const json_t *obj, const char *key, int required, int def, int *out, const char *file,
                  char *err, size_t errlen);
/* Copies at most outlen-1 bytes; an over-long string is an error. */
int ds3_json_str(const json_t *obj, const char *key, int required, const char *def, char *out, size_t outlen,
                 const char *file, char *err, size_t errlen);

/* Parse a JSON document (rejecting duplicate keys). NULL + err on failure. */
json_t *ds3_json_parse(const char *buf, size_t len, const char *file, char *err, size_t errlen);

#endif
