/* Decoding a stored profile hash (profile.h's stored text) into typed
 * values, once, for both readers: the rule evaluator (a view) and the
 * matching index (its input form). A value that does not fit its
 * attribute any more (the schema changed since it was stored) is absent,
 * never an error: the index refuses a subject with an out-of-range value,
 * and one stale field must not hide the whole subject. */
#include "services/benefit/profile_view.h"

#include <stdlib.h>
#include <string.h>

#define SET_SEP '\x1f'

static bool parse_i64(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    char buf[24];
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (end == buf || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* A real calendar date yyyymmdd (the range the index holds). */
static bool date_ok(int64_t d)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (d < 10101 || d > 99991231)
        return false;
    int64_t y = d / 10000, m = d / 100 % 100, day = d % 100;
    if (y < 1 || m < 1 || m > 12 || day < 1)
        return false;
    return day <= days[m - 1] + (m == 2 && leap(y));
}

/* Splits set text into arena-held members; false on allocation failure.
 * More members than the schema allows: absent (stale). */
static bool decode_set(fxb_arena *a, const char *text, size_t len, fxb_profile_value *v)
{
    size_t n = len > 0 ? 1 : 0;
    for (size_t i = 0; i < len; i++)
        n += text[i] == SET_SEP;
    if (n > FXB_SET_MEMBERS_MAX)
        return true;
    const char **m = fxb_arena_calloc(a, n ? n : 1, sizeof *m);
    if (m == NULL)
        return false;
    size_t at = 0;
    for (size_t k = 0; k < n; k++) {
        const char *end = memchr(text + at, SET_SEP, len - at);
        size_t l = end ? (size_t)(end - (text + at)) : len - at;
        m[k] = fxb_arena_strndup(a, text + at, l);
        if (m[k] == NULL)
            return false;
        at += l + 1;
    }
    v->members = m;
    v->n_members = n;
    v->present = true;
    return true;
}

/* Decodes one stored text for attr into *v (left absent when it does not
 * fit); false on allocation failure only. */
static bool decode_one(fxb_arena *a, const fxb_attr *attr, const char *text, size_t len,
                       fxb_profile_value *v)
{
    int64_t i;
    switch (attr->type) {
    case FXB_ATTR_INT:
        if (parse_i64(text, len, &i) && i >= attr->min && i <= attr->max) {
            v->i = i;
            v->present = true;
        }
        return true;
    case FXB_ATTR_BOOL:
        if (len == 1 && (text[0] == '0' || text[0] == '1')) {
            v->i = text[0] == '1';
            v->present = true;
        }
        return true;
    case FXB_ATTR_ENUM:
        for (size_t k = 0; k < attr->n_values; k++) {
            if (strlen(attr->values[k]) == len && memcmp(attr->values[k], text, len) == 0) {
                v->i = (int64_t)k;
                v->present = true;
                break;
            }
        }
        return true;
    case FXB_ATTR_DATE:
        if (parse_i64(text, len, &i) && date_ok(i)) {
            v->i = i;
            v->present = true;
        }
        return true;
    case FXB_ATTR_SET:
        return decode_set(a, text, len, v);
    }
    return true;
}

/* The slot of the attribute named (name, len) among d's attributes, or -1. */
static long slot_of(const fxb_profile_decoded *d, const char *name, size_t len)
{
    if (len == 0 || len > FXB_ATTR_NAME_MAX)
        return -1;
    for (size_t k = 0; k < d->n; k++)
        if (d->attrs[k]->name[len] == '\0' && memcmp(d->attrs[k]->name, name, len) == 0)
            return (long)k;
    return -1;
}

bool fxb_profile_decode(const fxb_schema *schema, fxb_subject_type type, const redisReply *hash,
                        fxb_arena *a, fxb_profile_decoded *out)
{
    memset(out, 0, sizeof *out);
    size_t n = 0;
    for (size_t i = 0; i < schema->n_attrs; i++)
        n += schema->attrs[i].subject == type && !schema->attrs[i].derived;
    out->attrs = fxb_arena_calloc(a, n ? n : 1, sizeof *out->attrs);
    out->values = fxb_arena_calloc(a, n ? n : 1, sizeof *out->values);
    if (out->attrs == NULL || out->values == NULL)
        return false;
    for (size_t i = 0; i < schema->n_attrs; i++) {
        const fxb_attr *attr = &schema->attrs[i];
        if (attr->subject == type && !attr->derived)
            out->attrs[out->n++] = attr;
    }
    if (hash == NULL)
        return true;
    bool pairs = hash->type == REDIS_REPLY_ARRAY;
#ifdef REDIS_REPLY_MAP
    pairs = pairs || hash->type == REDIS_REPLY_MAP;
#endif
    if (!pairs)
        return true;
    for (size_t i = 0; i + 1 < hash->elements; i += 2) {
        const redisReply *f = hash->element[i], *v = hash->element[i + 1];
        if (f == NULL || v == NULL || f->type != REDIS_REPLY_STRING ||
            v->type != REDIS_REPLY_STRING || f->len == 0 || f->str[0] == '@' || f->str[0] == '_')
            continue;
        long k = slot_of(out, f->str, f->len);
        if (k < 0 || out->values[k].present)
            continue;
        if (!decode_one(a, out->attrs[k], v->str, v->len, &out->values[k]))
            return false;
    }
    return true;
}

/* The evaluator asks by attribute pointer; attrs are in schema order, so
 * their addresses ascend: a binary search. */
static void view_get(void *self, const fxb_attr *attr, fxb_profile_value *out)
{
    const fxb_profile_decoded *d = self;
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->attrs[mid] == attr) {
            *out = d->values[mid];
            return;
        }
        if (d->attrs[mid] < attr)
            lo = mid + 1;
        else
            hi = mid;
    }
    memset(out, 0, sizeof *out);
}

fxb_profile_view fxb_profile_decoded_view(const fxb_profile_decoded *d)
{
    fxb_profile_view v = {view_get, (void *)d};
    return v;
}

fxb_index_values fxb_profile_decoded_index_values(const fxb_profile_decoded *d)
{
    fxb_index_values v = {d->attrs, d->values, d->n};
    return v;
}
