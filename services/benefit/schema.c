/* The profile attribute schema: JSON in, checked as a whole (every broken
 * rule reported, one line each, so one run tells the editor of the file
 * everything to fix), typed attributes out. Nothing here touches the store;
 * profile.c keeps the stored schema cached per process. */
#include "services/benefit/schema.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server/text.h"

#define SCHEMA_JSON_MAX    (1024u * 1024u)    /* bytes of schema JSON */
#define SCHEMA_ENTRIES_MAX (2 * FXB_ATTR_MAX) /* attributes[] of both subject types */
#define DESCRIPTION_MAX    200                /* characters */
#define AGE_NAME           "age"
#define AGE_MAX            150
#define BIRTH_DATE_NAME    "birth_date"

static const char *const subject_names[] = {"person", "enterprise"};
static const char *const type_names[] = {NULL, "int", "bool", "enum", "date", "set"};

/* --- error lines ---------------------------------------------------------- */

typedef struct errbuf {
    char *buf;
    size_t cap, len;
    size_t count;
    bool truncated;
} errbuf;

static void eadd(errbuf *e, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends "<where>: <why>\n" while it fits; past the cap only counts, and
 * the text ends with "...\n" when room allows. */
static void eadd(errbuf *e, const char *where, const char *fmt, ...)
{
    e->count++;
    if (e->buf == NULL || e->cap == 0 || e->truncated)
        return;
    char line[512];
    int n = snprintf(line, sizeof line, "%s: ", where);
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    line[len] = '\0';
    if (e->len + len + 1 > e->cap) {
        e->truncated = true;
        if (e->len + 5 <= e->cap) {
            memcpy(e->buf + e->len, "...\n", 5);
            e->len += 4;
        }
        return;
    }
    memcpy(e->buf + e->len, line, len + 1);
    e->len += len;
}

/* --- text checks ---------------------------------------------------------- */

static bool name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > FXB_ATTR_NAME_MAX || s[0] < 'a' || s[0] > 'z')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

static bool dept_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > FXB_DEPT_CODE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static int lookup(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (names[i] != NULL && strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

/* --- parsing -------------------------------------------------------------- */

void fxb_schema_free(fxb_schema *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_attrs; i++) {
        fxb_attr *a = &s->attrs[i];
        for (size_t k = 0; k < a->n_values; k++)
            free(a->values[k]);
        free(a->values);
        free(a->description);
    }
    free(s->attrs);
    free(s);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d != NULL)
        memcpy(d, s, n + 1);
    return d;
}

static const char *const attr_keys[] = {"name", "type", "subject", "values",
                                        "min",  "max",  "source",  "description"};

/* Checks attributes[i] (object o) into *out; errors go to e. Returns false
 * only when memory ran out. */
static bool parse_attr(errbuf *e, json_t *o, size_t i, fxb_attr *out, bool *ok)
{
    char w[64];
    snprintf(w, sizeof w, "attributes[%zu]", i);
    size_t before = e->count;
    if (!json_is_object(o)) {
        eadd(e, w, "must be an object");
        *ok = false;
        return true;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (lookup(attr_keys, sizeof attr_keys / sizeof attr_keys[0], k) < 0) {
            char wk[FXB_ATTR_NAME_MAX + 80];
            snprintf(wk, sizeof wk, "%s", w);
            eadd(e, wk,
                 "unknown member \"%.32s\" (allowed: name, subject, type, values, min, "
                 "max, source, description)",
                 fxb_text_chars(k, strlen(k)) >= 0 ? k : "?");
        }
    }
    char f[96];
    /* name */
    json_t *name = json_object_get(o, "name");
    snprintf(f, sizeof f, "%s.name", w);
    if (!json_is_string(name))
        eadd(e, f, "required, a string");
    else if (!name_valid(json_string_value(name)))
        eadd(e, f, "must match [a-z][a-z0-9_]{0,31}");
    else
        snprintf(out->name, sizeof out->name, "%s", json_string_value(name));
    /* subject */
    json_t *subj = json_object_get(o, "subject");
    snprintf(f, sizeof f, "%s.subject", w);
    int si = json_is_string(subj) ? lookup(subject_names, 2, json_string_value(subj)) : -1;
    if (si < 0)
        eadd(e, f, "required: \"person\" or \"enterprise\"");
    else
        out->subject = (fxb_subject_type)si;
    if (si == FXB_SUBJECT_PERSON && strcmp(out->name, AGE_NAME) == 0)
        eadd(e, w, "\"age\" is derived from birth_date for persons and cannot be declared");
    /* type */
    json_t *type = json_object_get(o, "type");
    snprintf(f, sizeof f, "%s.type", w);
    int ti = json_is_string(type) ? lookup(type_names, 6, json_string_value(type)) : -1;
    if (ti < 1)
        eadd(e, f, "required: int, bool, enum, date or set");
    else
        out->type = (fxb_attr_type)ti;
    /* min / max: int only, both, 64-bit integers, min <= max */
    json_t *mn = json_object_get(o, "min"), *mx = json_object_get(o, "max");
    if (ti == FXB_ATTR_INT) {
        bool both = true;
        snprintf(f, sizeof f, "%s.min", w);
        if (!json_is_integer(mn)) {
            eadd(e, f, "required for int, an integer");
            both = false;
        }
        snprintf(f, sizeof f, "%s.max", w);
        if (!json_is_integer(mx)) {
            eadd(e, f, "required for int, an integer");
            both = false;
        }
        if (both) {
            out->min = (int64_t)json_integer_value(mn);
            out->max = (int64_t)json_integer_value(mx);
            if (out->min > out->max)
                eadd(e, f, "must not be less than min");
        }
    } else if (ti > 0) {
        if (mn != NULL) {
            snprintf(f, sizeof f, "%s.min", w);
            eadd(e, f, "only int attributes have bounds");
        }
        if (mx != NULL) {
            snprintf(f, sizeof f, "%s.max", w);
            eadd(e, f, "only int attributes have bounds");
        }
    }
    /* values: enum only, 1..256 distinct strings of 1..32 characters */
    json_t *vals = json_object_get(o, "values");
    snprintf(f, sizeof f, "%s.values", w);
    if (ti == FXB_ATTR_ENUM) {
        size_t n = json_is_array(vals) ? json_array_size(vals) : 0;
        if (!json_is_array(vals) || n == 0 || n > FXB_ENUM_VALUES_MAX) {
            eadd(e, f, "required for enum: 1..%d strings", FXB_ENUM_VALUES_MAX);
        } else {
            out->values = calloc(n, sizeof *out->values);
            if (out->values == NULL)
                return false;
            for (size_t vi = 0; vi < n; vi++) {
                json_t *x = json_array_get(vals, vi);
                char fk[112];
                snprintf(fk, sizeof fk, "%s.values[%zu]", w, vi);
                if (!json_is_string(x)) {
                    eadd(e, fk, "must be a string");
                    continue;
                }
                long chars = fxb_text_chars(json_string_value(x), json_string_length(x));
                if (chars < 1 || chars > FXB_ATTR_TEXT_MAX ||
                    strlen(json_string_value(x)) != json_string_length(x)) {
                    eadd(e, fk, "must be 1..%d characters of UTF-8 without control characters",
                         FXB_ATTR_TEXT_MAX);
                    continue;
                }
                bool dup = false;
                for (size_t j = 0; j < out->n_values && !dup; j++)
                    dup = strcmp(out->values[j], json_string_value(x)) == 0;
                if (dup) {
                    eadd(e, fk, "repeats an earlier value");
                    continue;
                }
                out->values[out->n_values] = dup_str(json_string_value(x));
                if (out->values[out->n_values] == NULL)
                    return false;
                out->n_values++;
            }
        }
    } else if (ti > 0 && vals != NULL) {
        eadd(e, f, "only enum attributes have values");
    }
    /* source */
    json_t *src = json_object_get(o, "source");
    snprintf(f, sizeof f, "%s.source", w);
    if (!json_is_string(src) || !dept_valid(json_string_value(src)))
        eadd(e, f, "required: a department code of 1..%d of [a-z0-9-]", FXB_DEPT_CODE_MAX);
    else
        snprintf(out->source, sizeof out->source, "%s", json_string_value(src));
    /* description: optional */
    json_t *desc = json_object_get(o, "description");
    snprintf(f, sizeof f, "%s.description", w);
    if (desc != NULL) {
        long chars = json_is_string(desc)
                         ? fxb_text_chars(json_string_value(desc), json_string_length(desc))
                         : -1;
        if (chars < 0 || chars > DESCRIPTION_MAX ||
            strlen(json_string_value(desc)) != json_string_length(desc))
            eadd(e, f, "must be a string of at most %d characters without control characters",
                 DESCRIPTION_MAX);
        else if ((out->description = dup_str(json_string_value(desc))) == NULL)
            return false;
    }
    *ok = e->count == before;
    return true;
}

static void clear_attr(fxb_attr *a)
{
    for (size_t k = 0; k < a->n_values; k++)
        free(a->values[k]);
    free(a->values);
    free(a->description);
    memset(a, 0, sizeof *a);
}

fxb_code fxb_schema_parse(const char *json, size_t len, fxb_schema **out, char *errors,
                          size_t errors_cap, fxb_err *err)
{
    *out = NULL;
    errbuf e = {.buf = errors, .cap = errors_cap};
    if (errors != NULL && errors_cap > 0)
        errors[0] = '\0';
    if (json == NULL || len > SCHEMA_JSON_MAX) {
        eadd(&e, "schema", "at most %u bytes of JSON", SCHEMA_JSON_MAX);
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "SCHEMA_INVALID", "属性目录无效",
                           "the schema is larger than %u bytes", SCHEMA_JSON_MAX);
    }
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        char w[64];
        snprintf(w, sizeof w, "line %d, column %d", jerr.line, jerr.column);
        eadd(&e, w, "not valid JSON (%s)", jerr.text);
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "SCHEMA_INVALID", "属性目录无效",
                           "the schema is not valid JSON");
    }
    fxb_schema *s = calloc(1, sizeof *s);
    bool oom = s == NULL;
    json_t *attrs = json_object_get(root, "attributes");
    size_t n = json_is_array(attrs) ? json_array_size(attrs) : 0;
    if (!json_is_object(root)) {
        eadd(&e, "schema", "must be an object {\"attributes\": [...]}");
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(root, k, v)
        {
            if (strcmp(k, "attributes") != 0)
                eadd(&e, "schema", "unknown member \"%.32s\" (allowed: attributes)",
                     fxb_text_chars(k, strlen(k)) >= 0 ? k : "?");
        }
        if (!json_is_array(attrs) || n == 0)
            eadd(&e, "attributes", "required: a non-empty array");
        else if (n > SCHEMA_ENTRIES_MAX)
            eadd(&e, "attributes", "at most %d entries (%d per subject type)", SCHEMA_ENTRIES_MAX,
                 FXB_ATTR_MAX);
    }
    if (n > SCHEMA_ENTRIES_MAX)
        n = SCHEMA_ENTRIES_MAX;
    if (!oom)
        s->attrs = calloc(n + 1, sizeof *s->attrs); /* + age */
    oom = oom || s->attrs == NULL;
    size_t per_subject[2] = {0, 0};
    const fxb_attr *birth = NULL;
    for (size_t i = 0; i < n && !oom; i++) {
        fxb_attr *a = &s->attrs[s->n_attrs];
        bool ok = false;
        if (!parse_attr(&e, json_array_get(attrs, i), i, a, &ok)) {
            clear_attr(a);
            oom = true;
            break;
        }
        if (!ok) {
            clear_attr(a);
            continue;
        }
        char w[64];
        snprintf(w, sizeof w, "attributes[%zu].name", i);
        if (fxb_schema_find(s, a->subject, a->name) != NULL) {
            eadd(&e, w, "\"%s\" is declared twice for %s", a->name, subject_names[a->subject]);
            clear_attr(a);
            continue;
        }
        per_subject[a->subject]++;
        s->n_attrs++;
    }
    for (size_t i = 0; i < s->n_attrs && !oom; i++)
        if (s->attrs[i].subject == FXB_SUBJECT_PERSON && s->attrs[i].type == FXB_ATTR_DATE &&
            strcmp(s->attrs[i].name, BIRTH_DATE_NAME) == 0)
            birth = &s->attrs[i];
    if (!oom && birth != NULL)
        per_subject[FXB_SUBJECT_PERSON]++;
    for (int k = 0; k < 2 && !oom; k++)
        if (per_subject[k] > FXB_ATTR_MAX)
            eadd(&e, "attributes", "%zu %s attributes%s; at most %d", per_subject[k],
                 subject_names[k],
                 k == FXB_SUBJECT_PERSON && birth ? " (with the derived age)" : "", FXB_ATTR_MAX);
    json_decref(root);
    if (oom) {
        fxb_schema_free(s);
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                           "out of memory parsing the schema");
    }
    if (e.count > 0) {
        fxb_schema_free(s);
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "SCHEMA_INVALID", "属性目录无效",
                           "the schema has %zu errors", e.count);
    }
    if (birth != NULL) {
        fxb_attr *age = &s->attrs[s->n_attrs];
        snprintf(age->name, sizeof age->name, "%s", AGE_NAME);
        age->subject = FXB_SUBJECT_PERSON;
        age->type = FXB_ATTR_INT;
        age->min = 0;
        age->max = AGE_MAX;
        snprintf(age->source, sizeof age->source, "%s", birth->source);
        age->description = dup_str("年龄（周岁，由出生日期计算）");
        age->derived = true;
        if (age->description == NULL) {
            fxb_schema_free(s);
            return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                               "out of memory parsing the schema");
        }
        s->n_attrs++;
    }
    *out = s;
    return FXB_OK;
}

const fxb_attr *fxb_schema_find(const fxb_schema *s, fxb_subject_type subject, const char *name)
{
    if (s == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < s->n_attrs; i++)
        if (s->attrs[i].subject == subject && strcmp(s->attrs[i].name, name) == 0)
            return &s->attrs[i];
    return NULL;
}

int fxb_schema_enum_index(const fxb_attr *attr, const char *value)
{
    if (attr == NULL || value == NULL || attr->type != FXB_ATTR_ENUM)
        return -1;
    for (size_t i = 0; i < attr->n_values; i++)
        if (strcmp(attr->values[i], value) == 0)
            return (int)i;
    return -1;
}
