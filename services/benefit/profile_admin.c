/* fxb-admin profile: `schema import [FILE]` replaces the attribute schema
 * (the embedded seed data/benefit/schema.json without FILE; "-" reads
 * stdin), all or nothing; `import FILE` feeds profiles from NDJSON or CSV
 * as a department (--dept) or as the administrator (any attribute).
 *
 * The import streams the file: rows are read, checked and prepared one by
 * one, and applied in batches of BATCH_ROWS with two pipelined round trips
 * per batch (fxb_profile_apply_batch), so memory stays flat and 6.1
 * million rows take minutes, not hours. A bad row is reported (row, field,
 * reason: never the value, never the ID number) and skipped; it never
 * stops the import and, since each record is checked whole before it is
 * written, never changes stored data. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "server/admin_cmds.h"
#include "server/arena.h"
#include "server/handler.h"
#include "services/benefit/profile.h"
#include "services/benefit/schema.h"
#include "store/crypto.h"
#include "store/datafile.h"

#define SEED_NAME         "benefit/schema.json"
#define SCHEMA_FILE_MAX   (1024u * 1024u)
#define SCHEMA_ERRS_CAP   (64u * 1024u)
#define BATCH_ROWS        1000
#define ROW_BYTES_MAX     (64u * 1024u) /* a longer line is a bad row */
#define CSV_COLUMNS_MAX   (2 + FXB_ATTR_MAX)
#define LISTED_MAX        100 /* rejected rows printed */
#define FIELD_TEXT_MAX    48
#define PROGRESS_EVERY_US 200000u

#define USAGE                                                                                      \
    "fxb-admin: profile schema import [FILE] | profile import FILE [--format ndjson|csv] "         \
    "[--dept CODE] [--progress]\n"

/* --- schema import ---------------------------------------------------------- */

/* The whole of in (at most max bytes) in a malloc'd buffer; NULL with errno
 * set on failure (EFBIG when too large). */
static char *read_all(FILE *in, size_t max, size_t *len)
{
    size_t cap = 64 * 1024, n = 0;
    char *buf = malloc(cap + 1);
    while (buf != NULL) {
        size_t got = fread(buf + n, 1, cap - n, in);
        n += got;
        if (got == 0) {
            if (ferror(in)) {
                free(buf);
                return NULL;
            }
            buf[n] = '\0';
            *len = n;
            return buf;
        }
        if (n == cap) {
            if (cap > max) {
                free(buf);
                errno = EFBIG;
                return NULL;
            }
            cap *= 2;
            char *grown = realloc(buf, cap + 1);
            if (grown == NULL)
                free(buf);
            buf = grown;
        }
    }
    return NULL;
}

static int cmd_schema_import(const fxb_store_options *so, const char *path)
{
    const char *json;
    size_t len;
    char *owned = NULL;
    const char *what = path;
    if (path == NULL) {
        const fxb_datafile *f = fxb_datafile_find(SEED_NAME);
        if (f == NULL) {
            fprintf(stderr, "fxb-admin: profile: no embedded %s in this build\n", SEED_NAME);
            return 1;
        }
        json = f->bytes;
        len = f->len;
        what = "data/" SEED_NAME " (embedded)";
    } else {
        FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
        if (in == NULL) {
            fprintf(stderr, "fxb-admin: cannot open %s: %s\n", path, strerror(errno));
            return 1;
        }
        owned = read_all(in, SCHEMA_FILE_MAX, &len);
        int saved = errno;
        if (in != stdin)
            fclose(in);
        if (owned == NULL) {
            fprintf(stderr, "fxb-admin: cannot read %s: %s\n", path,
                    saved == EFBIG ? "larger than the schema limit" : strerror(saved));
            return 1;
        }
        json = owned;
    }
    char *errs = malloc(SCHEMA_ERRS_CAP);
    if (errs == NULL) {
        free(owned);
        fprintf(stderr, "fxb-admin: out of memory\n");
        return 1;
    }
    fxb_err err;
    fxb_schema *schema = NULL;
    int rc = 1;
    fxb_store *st = NULL;
    if (fxb_schema_parse(json, len, &schema, errs, SCHEMA_ERRS_CAP, &err) != FXB_OK) {
        fputs(errs, stderr);
        fprintf(stderr, "fxb-admin: profile schema: %s: %s; nothing was imported\n", what,
                err.message);
    } else if ((st = fxb_store_new(so, &err)) == NULL) {
        fprintf(stderr, "fxb-admin: FXB_REDIS_URL: %s\n", err.message);
        rc = 2;
    } else if (fxb_profile_schema_store(st, json, len, &err) != FXB_OK) {
        fprintf(stderr, "fxb-admin: profile schema: %s\n", err.message);
    } else {
        size_t n[2] = {0, 0};
        bool age = false;
        for (size_t i = 0; i < schema->n_attrs; i++) {
            if (schema->attrs[i].derived)
                age = true;
            else
                n[schema->attrs[i].subject]++;
        }
        long long rev = 0;
        redisReply *r = fxb_store_command(st, &err, "GET fxb:profile:schema:rev");
        if (r != NULL) {
            if (r->type == REDIS_REPLY_STRING)
                rev = strtoll(r->str, NULL, 10);
            freeReplyObject(r);
        }
        printf("profile schema: %s: %zu person attributes%s, %zu enterprise attributes; rev %lld\n",
               what, n[0], age ? " (+ derived age)" : "", n[1], rev);
        rc = 0;
    }
    fxb_store_free(st);
    fxb_schema_free(schema);
    free(errs);
    free(owned);
    return rc;
}

/* --- profile import ------------------------------------------------------------ */

typedef enum fmt { FMT_NDJSON, FMT_CSV } fmt;

typedef struct listed {
    size_t row;
    char field[FIELD_TEXT_MAX + 1];
    char reason[FXB_ERR_REASON_MAX];
    char message[160];
} listed;

typedef struct import {
    const fxb_crypto *crypto;
    const fxb_schema *schema;
    fxb_store *st;
    const char *dept;
    fmt format;
    /* the batch: prepared writes and their arena */
    fxb_arena batch_arena, row_arena;
    fxb_profile_write *w;
    size_t n_w;
    /* CSV header */
    bool have_header;
    bool by_credit_code;
    size_t n_cols;
    char *cols[CSV_COLUMNS_MAX];
    /* counts */
    size_t rows, applied, unchanged, rejected;
    listed *list;
    size_t n_list;
    /* progress */
    bool progress;
    uint64_t bytes, total_bytes, started_us, shown_us;
} import;

static bool attr_name_like(const char *s)
{
    size_t n = strnlen(s, FXB_ATTR_NAME_MAX + 1);
    if (n == 0 || n > FXB_ATTR_NAME_MAX || s[0] < 'a' || s[0] > 'z')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* Records a rejected row (the first LISTED_MAX are kept for printing). */
static void row_rejected(import *im, size_t row, const char *field, const char *reason,
                         const char *message)
{
    im->rejected++;
    if (im->n_list >= LISTED_MAX)
        return;
    listed *l = &im->list[im->n_list++];
    l->row = row;
    snprintf(l->field, sizeof l->field, "%s", field);
    snprintf(l->reason, sizeof l->reason, "%s", reason);
    snprintf(l->message, sizeof l->message, "%s", message);
}

/* The field of a rejection as the file names it: an attribute's name for
 * values[i], "clear.<name>" for clear[j] (only names that look like one:
 * an unknown name could be anything, even personal data). */
static void field_text(const Fxb__V1__ProfileRecord *rec, const char *field, char *out, size_t cap)
{
    size_t i;
    char rest;
    if (sscanf(field, "values[%zu%c", &i, &rest) == 2 && rest == ']' && i < rec->n_values) {
        if (attr_name_like(rec->values[i]->name))
            snprintf(out, cap, "%s", rec->values[i]->name);
        else
            snprintf(out, cap, "values[%zu]", i);
        return;
    }
    if (sscanf(field, "clear[%zu%c", &i, &rest) == 2 && rest == ']' && i < rec->n_clear) {
        if (attr_name_like(rec->clear[i]))
            snprintf(out, cap, "clear.%s", rec->clear[i]);
        else
            snprintf(out, cap, "clear[%zu]", i);
        return;
    }
    snprintf(out, cap, "%s", field);
}

static fxb_code flush_batch(import *im, fxb_err *err)
{
    fxb_code rc = fxb_profile_apply_batch(im->st, im->w, im->n_w, err);
    if (rc != FXB_OK)
        return rc;
    for (size_t i = 0; i < im->n_w; i++) {
        im->applied++;
        if (!im->w[i].changed)
            im->unchanged++;
    }
    im->n_w = 0;
    fxb_arena_reset(&im->batch_arena);
    return FXB_OK;
}

/* Prepares rec (row) into the batch, or records its rejection. Store or
 * memory failures return their code. */
static fxb_code take_record(import *im, size_t row, const Fxb__V1__ProfileRecord *rec,
                            int64_t now_ms, fxb_err *err)
{
    Fxb__V1__RejectedRecord rej = FXB__V1__REJECTED_RECORD__INIT;
    fxb_code rc = fxb_profile_prepare(im->crypto, im->schema, im->dept, rec, now_ms,
                                      &im->w[im->n_w], &rej, &im->batch_arena, err);
    if (rc != FXB_OK) {
        if (rej.reason == NULL || rej.reason[0] == '\0')
            return rc;
        char field[FIELD_TEXT_MAX + 1];
        field_text(rec, rej.field, field, sizeof field);
        row_rejected(im, row, field, rej.reason, rej.message);
        return FXB_OK;
    }
    if (++im->n_w == BATCH_ROWS)
        return flush_batch(im, err);
    return FXB_OK;
}

/* --- NDJSON ---------------------------------------------------------------- */

/* Builds the record of one NDJSON line (its strings point into root); a
 * row-level problem is reported through *field / *reason. */
static bool ndjson_record(fxb_arena *a, json_t *root, Fxb__V1__ProfileRecord *rec,
                          const char **field, const char **reason, const char **message)
{
    *rec = (Fxb__V1__ProfileRecord)FXB__V1__PROFILE_RECORD__INIT;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        if (strcmp(k, "subject_type") != 0 && strcmp(k, "id_number") != 0 &&
            strcmp(k, "credit_code") != 0 && strcmp(k, "values") != 0 && strcmp(k, "clear") != 0) {
            *field = "-";
            *reason = "FIELD_UNKNOWN";
            *message = "members allowed: subject_type, id_number, credit_code, values, clear";
            return false;
        }
    }
    json_t *t = json_object_get(root, "subject_type");
    if (json_is_string(t) && strcmp(json_string_value(t), "person") == 0)
        rec->subject_type = FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON;
    else if (json_is_string(t) && strcmp(json_string_value(t), "enterprise") == 0)
        rec->subject_type = FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
    json_t *id = json_object_get(root, "id_number"), *cc = json_object_get(root, "credit_code");
    if (id != NULL && cc != NULL) {
        *field = "-";
        *reason = "SUBJECT_AMBIGUOUS";
        *message = "a row names its subject by id_number or by credit_code, not both";
        return false;
    }
    if (id != NULL) {
        rec->subject_case = FXB__V1__PROFILE_RECORD__SUBJECT_ID_NUMBER;
        rec->id_number = json_is_string(id) ? (char *)json_string_value(id) : (char *)"";
    } else if (cc != NULL) {
        rec->subject_case = FXB__V1__PROFILE_RECORD__SUBJECT_CREDIT_CODE;
        rec->credit_code = json_is_string(cc) ? (char *)json_string_value(cc) : (char *)"";
    }
    json_t *vals = json_object_get(root, "values");
    if (vals != NULL && !json_is_object(vals)) {
        *field = "values";
        *reason = "VALUES_INVALID";
        *message = "values must be an object of attribute: value";
        return false;
    }
    size_t n = json_object_size(vals);
    if (n > FXB_ATTR_MAX) {
        *field = "values";
        *reason = "TOO_MANY_VALUES";
        *message = "a record sets at most 64 attributes";
        return false;
    }
    rec->values = fxb_arena_calloc(a, n ? n : 1, sizeof *rec->values);
    Fxb__V1__AttributeValue *items = fxb_arena_calloc(a, n ? n : 1, sizeof *items);
    if (rec->values == NULL || items == NULL)
        return false;
    json_object_foreach(vals, k, v)
    {
        Fxb__V1__AttributeValue *x = &items[rec->n_values];
        *x = (Fxb__V1__AttributeValue)FXB__V1__ATTRIBUTE_VALUE__INIT;
        x->name = (char *)k;
        rec->values[rec->n_values++] = x;
        if (json_is_integer(v)) {
            x->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_INT_VALUE;
            x->int_value = (int64_t)json_integer_value(v);
        } else if (json_is_boolean(v)) {
            x->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_BOOL_VALUE;
            x->bool_value = json_is_true(v);
        } else if (json_is_string(v)) {
            x->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_TEXT_VALUE;
            x->text_value = (char *)json_string_value(v);
        } else if (json_is_array(v)) {
            size_t m = json_array_size(v);
            Fxb__V1__StringSet *set = fxb_arena_alloc(a, sizeof *set);
            if (set == NULL)
                return false;
            *set = (Fxb__V1__StringSet)FXB__V1__STRING_SET__INIT;
            set->members = fxb_arena_calloc(a, m ? m : 1, sizeof *set->members);
            if (set->members == NULL)
                return false;
            for (size_t i = 0; i < m; i++) {
                json_t *e = json_array_get(v, i);
                /* a non-string member reads as empty, which the check refuses */
                set->members[i] = json_is_string(e) ? (char *)json_string_value(e) : (char *)"";
            }
            set->n_members = m;
            x->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_SET_VALUE;
            x->set_value = set;
        } else if (!json_is_null(v)) {
            /* a number with a fraction, an object: no attribute type takes
             * it (null is a value missing, which the check refuses) */
            *field = attr_name_like(k) ? k : "values";
            *reason = "TYPE_MISMATCH";
            *message = "no attribute takes a number with a fraction or an object";
            return false;
        }
    }
    json_t *clear = json_object_get(root, "clear");
    if (clear != NULL && !json_is_array(clear)) {
        *field = "clear";
        *reason = "CLEAR_INVALID";
        *message = "clear must be an array of attribute names";
        return false;
    }
    size_t m = json_array_size(clear);
    if (m > FXB_ATTR_MAX) {
        *field = "clear";
        *reason = "TOO_MANY_CLEARS";
        *message = "a record clears at most 64 attributes";
        return false;
    }
    rec->clear = fxb_arena_calloc(a, m ? m : 1, sizeof *rec->clear);
    if (rec->clear == NULL)
        return false;
    for (size_t i = 0; i < m; i++) {
        json_t *e = json_array_get(clear, i);
        rec->clear[i] = json_is_string(e) ? (char *)json_string_value(e) : (char *)"";
    }
    rec->n_clear = m;
    return true;
}

static fxb_code ndjson_row(import *im, size_t row, const char *line, size_t len, int64_t now_ms,
                           fxb_err *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        /* jansson's text may quote the line: not printed */
        row_rejected(im, row, "-", "JSON_INVALID", "not a JSON object on one line");
        json_decref(root);
        return FXB_OK;
    }
    Fxb__V1__ProfileRecord rec;
    const char *field = NULL, *reason = NULL, *message = NULL;
    fxb_code rc = FXB_OK;
    if (ndjson_record(&im->row_arena, root, &rec, &field, &reason, &message))
        rc = take_record(im, row, &rec, now_ms, err);
    else if (reason != NULL)
        row_rejected(im, row, field, reason, message);
    else
        rc = fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "", "out of memory");
    json_decref(root);
    return rc;
}

/* --- CSV -------------------------------------------------------------------- */

/* Splits one CSV line (RFC 4180 quoting within the line) into at most
 * CSV_COLUMNS_MAX cells in the arena; -1 on bad quoting or too many cells. */
static long csv_split(fxb_arena *a, const char *line, size_t len, char **cells)
{
    char *buf = fxb_arena_alloc(a, len + 1);
    if (buf == NULL)
        return -1;
    size_t n = 0, o = 0, i = 0;
    for (;;) {
        if (n == CSV_COLUMNS_MAX)
            return -1;
        cells[n++] = buf + o;
        if (i < len && line[i] == '"') {
            i++;
            for (;;) {
                if (i >= len)
                    return -1;
                if (line[i] == '"') {
                    if (i + 1 < len && line[i + 1] == '"') {
                        buf[o++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                buf[o++] = line[i++];
            }
            if (i < len && line[i] != ',')
                return -1;
        } else {
            while (i < len && line[i] != ',') {
                if (line[i] == '"')
                    return -1;
                buf[o++] = line[i++];
            }
        }
        buf[o++] = '\0';
        if (i >= len)
            return (long)n;
        i++; /* the comma */
    }
}

static int csv_header(import *im, char **cells, size_t n)
{
    if (n < 2 || strcmp(cells[0], "subject_type") != 0 ||
        (strcmp(cells[1], "id_number") != 0 && strcmp(cells[1], "credit_code") != 0)) {
        fprintf(stderr, "fxb-admin: profile import: the header must start "
                        "subject_type,id_number or subject_type,credit_code\n");
        return 1;
    }
    im->by_credit_code = strcmp(cells[1], "credit_code") == 0;
    for (size_t i = 2; i < n; i++) {
        const fxb_attr *p = fxb_schema_find(im->schema, FXB_SUBJECT_PERSON, cells[i]);
        const fxb_attr *e = fxb_schema_find(im->schema, FXB_SUBJECT_ENTERPRISE, cells[i]);
        if ((p == NULL || p->derived) && e == NULL) {
            if (attr_name_like(cells[i]))
                fprintf(stderr,
                        "fxb-admin: profile import: column %zu (%s) is no attribute "
                        "of the schema that feeds may write\n",
                        i + 1, cells[i]);
            else
                fprintf(stderr,
                        "fxb-admin: profile import: column %zu is no attribute of the "
                        "schema\n",
                        i + 1);
            return 1;
        }
        for (size_t k = 2; k < i; k++)
            if (strcmp(im->cols[k], cells[i]) == 0) {
                fprintf(stderr, "fxb-admin: profile import: column %s appears twice\n", cells[i]);
                return 1;
            }
        im->cols[i] = strdup(cells[i]);
        if (im->cols[i] == NULL)
            return 1;
    }
    im->n_cols = n;
    im->have_header = true;
    return 0;
}

static fxb_code csv_row(import *im, size_t row, const char *line, size_t len, int64_t now_ms,
                        fxb_err *err)
{
    fxb_arena *a = &im->row_arena;
    char *cells[CSV_COLUMNS_MAX];
    long n = csv_split(a, line, len, cells);
    if (n < 0) {
        row_rejected(im, row, "-", "CSV_INVALID", "bad quoting or too many cells");
        return FXB_OK;
    }
    if ((size_t)n != im->n_cols) {
        row_rejected(im, row, "-", "CSV_COLUMNS", "not as many cells as the header has columns");
        return FXB_OK;
    }
    Fxb__V1__ProfileRecord rec = FXB__V1__PROFILE_RECORD__INIT;
    fxb_subject_type type = FXB_SUBJECT_PERSON;
    if (strcmp(cells[0], "person") == 0) {
        rec.subject_type = FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON;
    } else if (strcmp(cells[0], "enterprise") == 0) {
        rec.subject_type = FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
        type = FXB_SUBJECT_ENTERPRISE;
    }
    if (im->by_credit_code) {
        rec.subject_case = FXB__V1__PROFILE_RECORD__SUBJECT_CREDIT_CODE;
        rec.credit_code = cells[1];
    } else {
        rec.subject_case = FXB__V1__PROFILE_RECORD__SUBJECT_ID_NUMBER;
        rec.id_number = cells[1];
    }
    size_t cols = im->n_cols - 2;
    rec.values = fxb_arena_calloc(a, cols ? cols : 1, sizeof *rec.values);
    Fxb__V1__AttributeValue *items = fxb_arena_calloc(a, cols ? cols : 1, sizeof *items);
    if (rec.values == NULL || items == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "", "out of memory");
    for (size_t c = 2; c < im->n_cols; c++) {
        char *cell = cells[c];
        if (cell[0] == '\0')
            continue; /* not given */
        Fxb__V1__AttributeValue *x = &items[rec.n_values];
        *x = (Fxb__V1__AttributeValue)FXB__V1__ATTRIBUTE_VALUE__INIT;
        x->name = im->cols[c];
        rec.values[rec.n_values++] = x;
        const fxb_attr *attr = fxb_schema_find(im->schema, type, im->cols[c]);
        fxb_attr_type t = attr != NULL ? attr->type : FXB_ATTR_ENUM;
        if (t == FXB_ATTR_INT) {
            char *end;
            errno = 0;
            long long v = strtoll(cell, &end, 10);
            if (*end != '\0' || errno != 0 || end == cell) {
                row_rejected(im, row, im->cols[c], "TYPE_MISMATCH",
                             "the cell is not a whole number");
                return FXB_OK;
            }
            x->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_INT_VALUE;
            x->int_value = v;
        } else if (t == FXB_ATTR_BOOL) {
            bool yes = strcmp(cell, "true") == 0 || strcmp(cell, "1") == 0;
            bool no = strcmp(cell, "false") == 0 || strcmp(cell, "0") == 0;
            if (!yes && !no) {
                row_rejected(im, row, im->cols[c], "TYPE_MISMATCH",
                             "the cell is not true, false, 1 or 0");
                return FXB_OK;
            }
            x->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_BOOL_VALUE;
            x->bool_value = yes;
        } else if (t == FXB_ATTR_SET) {
            size_t m = 1;
            for (const char *p = cell; *p; p++)
                m += *p == '|';
            Fxb__V1__StringSet *set = fxb_arena_alloc(a, sizeof *set);
            char **members = fxb_arena_calloc(a, m, sizeof *members);
            if (set == NULL || members == NULL)
                return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "",
                                   "out of memory");
            *set = (Fxb__V1__StringSet)FXB__V1__STRING_SET__INIT;
            char *p = cell;
            for (size_t k = 0; k < m; k++) {
                members[k] = p;
                char *bar = strchr(p, '|');
                if (bar != NULL) {
                    *bar = '\0';
                    p = bar + 1;
                }
            }
            set->members = members;
            set->n_members = m;
            x->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_SET_VALUE;
            x->set_value = set;
        } else {
            x->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_TEXT_VALUE;
            x->text_value = cell;
        }
    }
    return take_record(im, row, &rec, now_ms, err);
}

/* --- the import loop ------------------------------------------------------------ */

static void show_progress(import *im, bool final)
{
    uint64_t now = fxb_now_us();
    if (!final && now - im->shown_us < PROGRESS_EVERY_US)
        return;
    im->shown_us = now;
    double secs = (double)(now - im->started_us) / 1e6;
    double rate = secs > 0 ? (double)im->rows / secs : 0;
    if (im->total_bytes > 0)
        fprintf(stderr, "\rprofile import: %zu rows, %.1f / %.1f MiB (%3.0f%%), %.0f rows/s   ",
                im->rows, (double)im->bytes / 1048576.0, (double)im->total_bytes / 1048576.0,
                100.0 * (double)im->bytes / (double)im->total_bytes, rate);
    else
        fprintf(stderr, "\rprofile import: %zu rows, %.1f MiB, %.0f rows/s   ", im->rows,
                (double)im->bytes / 1048576.0, rate);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t')
            return false;
    return true;
}

static int run_import(import *im, FILE *in)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    size_t lineno = 0;
    fxb_err err;
    fxb_code rc = FXB_OK;
    int64_t now_ms = fxb_wall_ms();
    while (rc == FXB_OK && (got = getline(&line, &cap, in)) != -1) {
        lineno++;
        im->bytes += (uint64_t)got;
        size_t len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        line[len] = '\0';
        char *p = line;
        if (lineno == 1 && len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) {
            p += 3; /* a UTF-8 byte order mark */
            len -= 3;
        }
        if (blank(p, len))
            continue;
        fxb_arena_reset(&im->row_arena);
        if (im->format == FMT_CSV && !im->have_header) {
            char *cells[CSV_COLUMNS_MAX];
            long n = csv_split(&im->row_arena, p, len, cells);
            if (n < 0) {
                fprintf(stderr,
                        "fxb-admin: profile import: the header row is not valid CSV "
                        "(at most %d columns)\n",
                        CSV_COLUMNS_MAX);
                free(line);
                return 1;
            }
            if (csv_header(im, cells, (size_t)n) != 0) {
                free(line);
                return 1;
            }
            continue;
        }
        im->rows++;
        if (im->rows % BATCH_ROWS == 0)
            now_ms = fxb_wall_ms();
        if (len > ROW_BYTES_MAX)
            row_rejected(im, lineno, "-", "ROW_TOO_LONG", "a row is at most 64 KiB");
        else if (im->format == FMT_CSV)
            rc = csv_row(im, lineno, p, len, now_ms, &err);
        else
            rc = ndjson_row(im, lineno, p, len, now_ms, &err);
        if (im->progress)
            show_progress(im, false);
    }
    bool read_failed = rc == FXB_OK && ferror(in);
    free(line);
    if (rc == FXB_OK && im->n_w > 0)
        rc = flush_batch(im, &err);
    if (im->progress)
        show_progress(im, true);
    if (read_failed) {
        fprintf(stderr, "fxb-admin: profile import: read error: %s\n", strerror(errno));
        return 1;
    }
    if (rc != FXB_OK) {
        /* rows already applied stay applied; the batch in flight may be
         * partly applied, and re-running the import is safe (unchanged
         * rows write nothing) */
        fprintf(stderr, "fxb-admin: profile import stopped after %zu rows: %s\n", im->rows,
                err.message);
        return 1;
    }
    if (im->format == FMT_CSV && !im->have_header) {
        fprintf(stderr, "fxb-admin: profile import: the file has no header row\n");
        return 1;
    }
    printf("profile import: %zu rows, %zu applied, %zu unchanged, %zu rejected\n", im->rows,
           im->applied, im->unchanged, im->rejected);
    for (size_t i = 0; i < im->n_list; i++)
        printf("  row %zu: %s: %s (%s)\n", im->list[i].row, im->list[i].field, im->list[i].reason,
               im->list[i].message);
    if (im->rejected > im->n_list)
        printf("  ... and %zu more rejected rows\n", im->rejected - im->n_list);
    return im->rejected == 0 ? 0 : 1;
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

static int cmd_import(const fxb_config *cfg, const fxb_store_options *so, const char *path,
                      fmt format, const char *dept, bool progress)
{
    fxb_err err;
    char ddir[FXB_CONFIG_STR_MAX + 32];
    snprintf(ddir, sizeof ddir, "%s/%s", cfg->data_dir, FXB_CRYPTO_KEY_SUBDIR);
    fxb_crypto *c = fxb_crypto_load(ddir, false, &err);
    if (c == NULL) {
        fprintf(stderr, "fxb-admin: %s (run `fxb-admin keys init` first)\n", err.message);
        return 1;
    }
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (in == NULL) {
        fprintf(stderr, "fxb-admin: cannot open %s: %s\n", path, strerror(errno));
        fxb_crypto_free(c);
        return 1;
    }
import im = {.crypto = c, .dept = dept, .format = format, .progress = progress };
    struct stat sb;
    if (fstat(fileno(in), &sb) == 0 && S_ISREG(sb.st_mode))
        im.total_bytes = (uint64_t)sb.st_size;
    int rc = 1;
    im.st = fxb_store_new(so, &err);
    im.w = calloc(BATCH_ROWS, sizeof *im.w);
    im.list = calloc(LISTED_MAX, sizeof *im.list);
    fxb_arena_init(&im.batch_arena, 0);
    fxb_arena_init(&im.row_arena, 0);
    if (im.st == NULL) {
        fprintf(stderr, "fxb-admin: FXB_REDIS_URL: %s\n", err.message);
        rc = 2;
    } else if (im.w == NULL || im.list == NULL) {
        fprintf(stderr, "fxb-admin: out of memory\n");
    } else if (fxb_profile_schema_acquire(im.st, &im.schema, &err) != FXB_OK) {
        fprintf(stderr, "fxb-admin: profile import: %s\n", err.message);
    } else {
        im.started_us = fxb_now_us();
        rc = run_import(&im, in);
        double secs = (double)(fxb_now_us() - im.started_us) / 1e6;
        if (progress)
            fprintf(stderr, "profile import: %zu rows in %.1f s (%.0f rows/s)\n", im.rows, secs,
                    secs > 0 ? (double)im.rows / secs : 0.0);
    }
    fxb_profile_schema_release(im.schema);
    for (size_t i = 0; i < CSV_COLUMNS_MAX; i++)
        free(im.cols[i]);
    fxb_arena_free(&im.batch_arena);
    fxb_arena_free(&im.row_arena);
    free(im.w);
    free(im.list);
    fxb_store_free(im.st);
    if (in != stdin)
        fclose(in);
    fxb_crypto_free(c);
    return rc;
}

int fxb_admin_profile(const fxb_config *cfg, const fxb_store_options *so, int argc, char **argv,
                      int i)
{
    if (i + 1 < argc && strcmp(argv[i], "schema") == 0 && strcmp(argv[i + 1], "import") == 0 &&
        argc - i <= 3)
        return cmd_schema_import(so, i + 2 < argc ? argv[i + 2] : NULL);
    if (i + 1 >= argc || strcmp(argv[i], "import") != 0) {
        fprintf(stderr, USAGE);
        return 2;
    }
    const char *path = argv[i + 1];
    size_t plen = strlen(path);
    fmt format = plen > 4 && strcmp(path + plen - 4, ".csv") == 0 ? FMT_CSV : FMT_NDJSON;
    const char *dept = NULL;
    bool progress = isatty(STDERR_FILENO) == 1;
    for (i += 2; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--progress") == 0) {
            progress = true;
            continue;
        }
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--format") == 0 && val != NULL) {
            if (strcmp(val, "ndjson") == 0) {
                format = FMT_NDJSON;
            } else if (strcmp(val, "csv") == 0) {
                format = FMT_CSV;
            } else {
                fprintf(stderr, "fxb-admin: profile import: --format is ndjson or csv\n");
                return 2;
            }
        } else if (strcmp(opt, "--dept") == 0 && val != NULL) {
            if (!dept_valid(val)) {
                fprintf(stderr, "fxb-admin: profile import: --dept must be 1..%d of [a-z0-9-]\n",
                        FXB_DEPT_CODE_MAX);
                return 2;
            }
            dept = val;
        } else {
            fprintf(stderr, "fxb-admin: profile import: unknown or incomplete argument \"%s\"\n",
                    opt);
            return 2;
        }
        i++;
    }
    return cmd_import(cfg, so, path, format, dept, progress);
}
