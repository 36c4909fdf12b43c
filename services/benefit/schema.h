/* The profile attribute schema (issue 7, regulation art. 15-16, 24): the
 * typed attributes departments share about people and enterprises, which
 * benefit rules are written over. Data, not code: data/benefit/schema.json
 * is the seed, `fxb-admin profile schema import [FILE]` replaces it, and the
 * stored schema (Redis key fxb:profile:schema, the JSON text, with
 * fxb:profile:schema:rev incremented on every change) is what servers load.
 *
 * JSON:
 *   {"attributes": [
 *     {"name": "district", "subject": "person", "type": "enum",
 *      "values": ["红旗区", "卫滨区", ...], "source": "xx-police",
 *      "description": "户籍所在区县"},
 *     {"name": "birth_date", "subject": "person", "type": "date", ...},
 *     {"name": "receives_pension", "subject": "person", "type": "bool", ...},
 *     {"name": "children", "subject": "person", "type": "int", "min": 0, "max": 20, ...},
 *     {"name": "certifications", "subject": "enterprise", "type": "set", ...}]}
 * name: [a-z][a-z0-9_]{0,31}, unique per subject type; type: int (with min
 * / max, 64-bit), bool, enum (1..256 values, each 1..32 UTF-8 characters),
 * date (yyyymmdd), set (of strings, each 1..32 characters, at most 64 per
 * profile); source: the department code that feeds it.
 * Derived attribute: every person schema with a date attribute birth_date
 * has `age` (int, whole years at the evaluation date, China time), which
 * rules may use and feeds never send. */
#ifndef FXB_BENEFIT_SCHEMA_H
#define FXB_BENEFIT_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/status.h"

#define FXB_ATTR_NAME_MAX   32
#define FXB_ATTR_MAX        64 /* attributes per subject type */
#define FXB_ENUM_VALUES_MAX 256
#define FXB_ATTR_TEXT_MAX   32 /* characters of an enum value / set member */
#define FXB_SET_MEMBERS_MAX 64
#define FXB_DEPT_CODE_MAX   32

typedef enum fxb_subject_type {
    FXB_SUBJECT_PERSON = 0,
    FXB_SUBJECT_ENTERPRISE = 1,
} fxb_subject_type;

typedef enum fxb_attr_type {
    FXB_ATTR_INT = 1,
    FXB_ATTR_BOOL,
    FXB_ATTR_ENUM,
    FXB_ATTR_DATE,
    FXB_ATTR_SET,
} fxb_attr_type;

typedef struct fxb_attr {
    char name[FXB_ATTR_NAME_MAX + 1];
    fxb_subject_type subject;
    fxb_attr_type type;
    int64_t min, max; /* int: bounds (inclusive) */
    char **values;    /* enum: the values, in the schema's order */
    size_t n_values;
    char source[FXB_DEPT_CODE_MAX + 1];
    char *description;
    bool derived; /* age: computed from birth_date, never fed */
} fxb_attr;

typedef struct fxb_schema {
    fxb_attr *attrs;
    size_t n_attrs;
    int64_t rev; /* fxb:profile:schema:rev when loaded */
} fxb_schema;

/* Parses and validates schema JSON (all-or-nothing). Every error is
 * written to `errors` (one line each: "attributes[3].values: why"), at
 * most errors_cap bytes in total, and the call returns INVALID_ARGUMENT
 * SCHEMA_INVALID. On success *out is a new schema (free with
 * fxb_schema_free); the derived `age` is added for persons with a
 * birth_date. */
fxb_code fxb_schema_parse(const char *json, size_t len, fxb_schema **out, char *errors,
                          size_t errors_cap, fxb_err *err);

void fxb_schema_free(fxb_schema *s);

/* The attribute of that subject type and name, or NULL. */
const fxb_attr *fxb_schema_find(const fxb_schema *s, fxb_subject_type subject, const char *name);

/* Index of an enum value in attr->values, or -1. */
int fxb_schema_enum_index(const fxb_attr *attr, const char *value);

#endif
