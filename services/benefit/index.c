/* The matching index (index.h): per attribute, roaring bitmaps over dense
 * rows; a rule is evaluated once over the tree on (TRUE, FALSE) bitmap
 * pairs instead of once per subject. Nothing per row is kept beside the
 * bitmaps and the row -> subject slots: an update reads a row's old value
 * back from the bitmaps (a few `contains`) and touches only what changed.
 *
 * Matching computes only the half of each pair its parent needs (the root
 * needs TRUE only, NOT swaps the need), borrows the index's own bitmaps
 * for leaves that are one bitmap, and works in place on what it owns. */
#include "services/benefit/index.h"

#include <roaring/roaring.h>
#include <stdlib.h>
#include <string.h>

#define SUBJECT_MAX      32 /* bytes of a subject id */
#define SUBJECT_SLOT     (SUBJECT_MAX + 1)
#define ROWS_PER_CHUNK   65536u           /* row -> subject slots per allocation */
#define ROWS_MAX         (UINT32_MAX - 1) /* row + 1 must fit the hash slots */
#define MEMBER_BYTES_MAX (FXB_ATTR_TEXT_MAX * 4)
#define SET_DISTINCT_MAX 65536 /* distinct members one set attribute may index */
#define DATE_HI          99991231
#define DATE_LO          10101 /* 0001-01-01 */

typedef roaring_bitmap_t bitmap;

typedef struct member {
    char *text;
    uint64_t hash;
    bitmap *rows;
} member;

/* One indexed attribute. Offsets of int and date values: value - base
 * (dates in days), 0..span, held in `bits` slices. */
typedef struct column {
    const fxb_attr *attr;
    fxb_attr_type type;
    bitmap *known;   /* bool, int, date, set; enum: NULL (the union of its values) */
    bitmap *truth;   /* bool */
    bitmap **values; /* enum, n_values */
    size_t n_values;
    bitmap **slices; /* int, date */
    unsigned bits;
    int64_t base;
    uint64_t span;
    member *members; /* set */
    size_t n_members, cap_members;
    uint32_t *member_slots; /* open addressing: member index + 1, 0 = empty */
    size_t member_slots_cap;
} column;

struct fxb_index {
    const fxb_schema *schema;
    fxb_subject_type type;
    column *cols;
    size_t n_cols;
    int *col_of;   /* per schema attribute: its column, or -1 */
    int age_col;   /* the birth_date column that derived age reads, or -1 */
    char **chunks; /* row -> subject: ROWS_PER_CHUNK slots of SUBJECT_SLOT bytes each */
    size_t n_chunks, cap_chunks;
    uint32_t n_rows;
    uint32_t *row_slots; /* subject -> row: row + 1, 0 = empty */
    size_t row_slots_cap;
    const fxb_profile_value **pending; /* per column, scratch for fxb_index_set */
    bitmap *empty;
};

/* --- small helpers ------------------------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static bool leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int64_t m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : days[m - 1];
}

static bool date_valid(int64_t d)
{
    if (d < DATE_LO || d > DATE_HI)
        return false;
    int64_t y = d / 10000, m = d / 100 % 100, day = d % 100;
    return y >= 1 && m >= 1 && m <= 12 && day >= 1 && day <= month_days(y, m);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t civil_days(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Days since 1900-01-01 of a valid yyyymmdd. */
static int64_t date_days(int64_t d)
{
    return civil_days(d / 10000, d / 100 % 100, d % 100) - civil_days(1900, 1, 1);
}

/* Where a value falls among a column's offsets: *exact with its offset;
 * otherwise *off is the first offset above it, and *past when there is
 * none. Dates that are not real dates fall between real ones. */
static void position(const column *c, int64_t v, uint64_t *off, bool *exact, bool *past)
{
    *off = 0;
    *exact = false;
    *past = false;
    if (c->type == FXB_ATTR_INT) {
        if (v < c->attr->min)
            return;
        if (v > c->attr->max) {
            *past = true;
            return;
        }
        *off = (uint64_t)v - (uint64_t)c->base;
        *exact = true;
        return;
    }
    if (v < DATE_LO)
        return;
    if (v > DATE_HI) {
        *past = true;
        return;
    }
    if (date_valid(v)) {
        *off = (uint64_t)(date_days(v) - c->base);
        *exact = true;
        return;
    }
    int64_t y = v / 10000, m = v / 100 % 100, d = v % 100;
    if (m == 0) {
        m = 1;
    } else if (m > 12) {
        y++;
        m = 1;
    } else if (d != 0) { /* past the month's last day */
        y += m == 12;
        m = m == 12 ? 1 : m + 1;
    }
    d = 1;
    if (y > 9999) {
        *past = true;
        return;
    }
    *off = (uint64_t)(date_days(y * 10000 + m * 100 + d) - c->base);
}

/* --- construction -------------------------------------------------------------------------- */

static bool column_init(column *c, const fxb_attr *a)
{
    c->attr = a;
    c->type = a->type;
    if (a->type != FXB_ATTR_ENUM && (c->known = roaring_bitmap_create()) == NULL)
        return false;
    switch (a->type) {
    case FXB_ATTR_BOOL:
        return (c->truth = roaring_bitmap_create()) != NULL;
    case FXB_ATTR_ENUM:
        c->values = calloc(a->n_values ? a->n_values : 1, sizeof *c->values);
        if (c->values == NULL)
            return false;
        c->n_values = a->n_values;
        for (size_t i = 0; i < a->n_values; i++)
            if ((c->values[i] = roaring_bitmap_create()) == NULL)
                return false;
        return true;
    case FXB_ATTR_INT:
    case FXB_ATTR_DATE:
        if (a->type == FXB_ATTR_INT) {
            c->base = a->min;
            c->span = (uint64_t)a->max - (uint64_t)a->min;
        } else {
            c->base = date_days(DATE_LO);
            c->span = (uint64_t)(date_days(DATE_HI) - c->base);
        }
        c->bits = 0;
        while (c->bits < 64 && (c->span >> c->bits) != 0)
            c->bits++;
        c->slices = calloc(c->bits ? c->bits : 1, sizeof *c->slices);
        if (c->slices == NULL)
            return false;
        for (unsigned i = 0; i < c->bits; i++)
            if ((c->slices[i] = roaring_bitmap_create()) == NULL)
                return false;
        return true;
    case FXB_ATTR_SET:
        return true;
    }
    return false;
}

static void column_release(column *c)
{
    if (c->known != NULL)
        roaring_bitmap_free(c->known);
    if (c->truth != NULL)
        roaring_bitmap_free(c->truth);
    for (size_t i = 0; c->values != NULL && i < c->n_values; i++)
        if (c->values[i] != NULL)
            roaring_bitmap_free(c->values[i]);
    free(c->values);
    for (unsigned i = 0; c->slices != NULL && i < c->bits; i++)
        if (c->slices[i] != NULL)
            roaring_bitmap_free(c->slices[i]);
    free(c->slices);
    for (size_t i = 0; i < c->n_members; i++) {
        free(c->members[i].text);
        roaring_bitmap_free(c->members[i].rows);
    }
    free(c->members);
    free(c->member_slots);
}

fxb_index *fxb_index_new(const fxb_schema *schema, fxb_subject_type type)
{
    if (schema == NULL)
        return NULL;
    fxb_index *ix = calloc(1, sizeof *ix);
    if (ix == NULL)
        return NULL;
    ix->schema = schema;
    ix->type = type;
    ix->age_col = -1;
    ix->col_of = malloc((schema->n_attrs ? schema->n_attrs : 1) * sizeof *ix->col_of);
    ix->cols = calloc(schema->n_attrs ? schema->n_attrs : 1, sizeof *ix->cols);
    ix->pending = calloc(schema->n_attrs ? schema->n_attrs : 1, sizeof *ix->pending);
    ix->empty = roaring_bitmap_create();
    if (ix->col_of == NULL || ix->cols == NULL || ix->pending == NULL || ix->empty == NULL) {
        fxb_index_free(ix);
        return NULL;
    }
    for (size_t i = 0; i < schema->n_attrs; i++) {
        const fxb_attr *a = &schema->attrs[i];
        ix->col_of[i] = -1;
        if (a->subject != type || a->derived)
            continue;
        column *c = &ix->cols[ix->n_cols];
        ix->col_of[i] = (int)ix->n_cols++;
        if (!column_init(c, a)) {
            fxb_index_free(ix);
            return NULL;
        }
        if (a->type == FXB_ATTR_DATE && strcmp(a->name, "birth_date") == 0)
            ix->age_col = ix->col_of[i];
    }
    return ix;
}

void fxb_index_free(fxb_index *ix)
{
    if (ix == NULL)
        return;
    for (size_t i = 0; i < ix->n_cols; i++)
        column_release(&ix->cols[i]);
    free(ix->cols);
    free(ix->col_of);
    free(ix->pending);
    for (size_t i = 0; i < ix->n_chunks; i++)
        free(ix->chunks[i]);
    free(ix->chunks);
    free(ix->row_slots);
    if (ix->empty != NULL)
        roaring_bitmap_free(ix->empty);
    free(ix);
}

/* The column an attribute of a rule or of a value set reads: derived age
 * reads birth_date. NULL when the index does not hold it. */
static column *column_for(const fxb_index *ix, const fxb_attr *a)
{
    if (a == NULL)
        return NULL;
    const fxb_schema *s = ix->schema;
    if (a < s->attrs || a >= s->attrs + s->n_attrs) {
        a = fxb_schema_find(s, a->subject, a->name);
        if (a == NULL)
            return NULL;
    }
    if (a->subject != ix->type)
        return NULL;
    if (a->derived)
        return ix->age_col >= 0 && strcmp(a->name, "age") == 0 ? &ix->cols[ix->age_col] : NULL;
    int k = ix->col_of[a - s->attrs];
    return k >= 0 ? &ix->cols[k] : NULL;
}

/* --- subjects ------------------------------------------------------------------------------ */

static char *slot(const fxb_index *ix, uint32_t row)
{
    return ix->chunks[row / ROWS_PER_CHUNK] + (size_t)(row % ROWS_PER_CHUNK) * SUBJECT_SLOT;
}

const char *fxb_index_subject(const fxb_index *ix, uint32_t row)
{
    if (ix == NULL || row >= ix->n_rows)
        return NULL;
    return slot(ix, row);
}

/* The row of subject, or -1; *at receives the hash slot where it is or
 * would go. */
static int64_t row_find(const fxb_index *ix, const char *subject, size_t *at)
{
    if (ix->row_slots_cap == 0)
        return -1;
    size_t mask = ix->row_slots_cap - 1;
    size_t i = (size_t)hash_str(subject) & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t r = ix->row_slots[i];
        if (r == 0) {
            *at = i;
            return -1;
        }
        if (strcmp(slot(ix, r - 1), subject) == 0) {
            *at = i;
            return r - 1;
        }
    }
}

static bool rows_rehash(fxb_index *ix, size_t cap)
{
    uint32_t *t = calloc(cap, sizeof *t);
    if (t == NULL)
        return false;
    for (uint32_t r = 0; r < ix->n_rows; r++) {
        size_t i = (size_t)hash_str(slot(ix, r)) & (cap - 1);
        while (t[i] != 0)
            i = (i + 1) & (cap - 1);
        t[i] = r + 1;
    }
    free(ix->row_slots);
    ix->row_slots = t;
    ix->row_slots_cap = cap;
    return true;
}

/* The subject's row, reserved when new (*is_new). -1 on allocation failure
 * or a bad subject. */
static int64_t row_of(fxb_index *ix, const char *subject, bool *is_new)
{
    *is_new = false;
    size_t len = strnlen(subject, SUBJECT_SLOT);
    if (len == 0 || len > SUBJECT_MAX)
        return -1;
    size_t at = 0;
    int64_t r = row_find(ix, subject, &at);
    if (r >= 0)
        return r;
    if (ix->n_rows >= ROWS_MAX)
        return -1;
    if ((size_t)ix->n_rows + 1 > ix->row_slots_cap / 4 * 3) {
        if (!rows_rehash(ix, ix->row_slots_cap ? ix->row_slots_cap * 2 : 1024))
            return -1;
        row_find(ix, subject, &at);
    }
    if (ix->n_rows / ROWS_PER_CHUNK >= ix->n_chunks) {
        if (ix->n_chunks == ix->cap_chunks) {
            size_t cap = ix->cap_chunks ? ix->cap_chunks * 2 : 16;
            char **c = realloc(ix->chunks, cap * sizeof *c);
            if (c == NULL)
                return -1;
            ix->chunks = c;
            ix->cap_chunks = cap;
        }
        char *chunk = malloc((size_t)ROWS_PER_CHUNK * SUBJECT_SLOT);
        if (chunk == NULL)
            return -1;
        ix->chunks[ix->n_chunks++] = chunk;
    }
    r = ix->n_rows++;
    memcpy(slot(ix, (uint32_t)r), subject, len + 1);
    ix->row_slots[at] = (uint32_t)r + 1;
    *is_new = true;
    return r;
}

/* --- set members --------------------------------------------------------------------------- */

static member *member_find(const column *c, const char *text, uint64_t h)
{
    if (c->member_slots_cap == 0)
        return NULL;
    size_t mask = c->member_slots_cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        uint32_t k = c->member_slots[i];
        if (k == 0)
            return NULL;
        member *m = &c->members[k - 1];
        if (m->hash == h && strcmp(m->text, text) == 0)
            return m;
    }
}

/* The member's entry, added (with an empty bitmap) when new. NULL on
 * allocation failure or past SET_DISTINCT_MAX. */
static member *member_get(column *c, const char *text)
{
    uint64_t h = hash_str(text);
    member *m = member_find(c, text, h);
    if (m != NULL)
        return m;
    if (c->n_members >= SET_DISTINCT_MAX)
        return NULL;
    if (c->n_members + 1 > c->member_slots_cap / 2) {
        size_t cap = c->member_slots_cap ? c->member_slots_cap * 2 : 64;
        uint32_t *t = calloc(cap, sizeof *t);
        if (t == NULL)
            return NULL;
        for (size_t k = 0; k < c->n_members; k++) {
            size_t i = (size_t)c->members[k].hash & (cap - 1);
            while (t[i] != 0)
                i = (i + 1) & (cap - 1);
            t[i] = (uint32_t)k + 1;
        }
        free(c->member_slots);
        c->member_slots = t;
        c->member_slots_cap = cap;
    }
    if (c->n_members == c->cap_members) {
        size_t cap = c->cap_members ? c->cap_members * 2 : 16;
        member *ms = realloc(c->members, cap * sizeof *ms);
        if (ms == NULL)
            return NULL;
        c->members = ms;
        c->cap_members = cap;
    }
    size_t len = strlen(text);
    m = &c->members[c->n_members];
    m->text = malloc(len + 1);
    m->rows = roaring_bitmap_create();
    if (m->text == NULL || m->rows == NULL) {
        free(m->text);
        if (m->rows != NULL)
            roaring_bitmap_free(m->rows);
        return NULL;
    }
    memcpy(m->text, text, len + 1);
    m->hash = h;
    size_t i = (size_t)h & (c->member_slots_cap - 1);
    while (c->member_slots[i] != 0)
        i = (i + 1) & (c->member_slots_cap - 1);
    c->member_slots[i] = (uint32_t)++c->n_members;
    return m;
}

/* --- writing rows -------------------------------------------------------------------------- */

static bool value_valid(const column *c, const fxb_profile_value *v)
{
    if (!v->present)
        return true;
    switch (c->type) {
    case FXB_ATTR_BOOL:
        return true;
    case FXB_ATTR_ENUM:
        return v->i >= 0 && (uint64_t)v->i < c->n_values;
    case FXB_ATTR_INT:
        return v->i >= c->attr->min && v->i <= c->attr->max;
    case FXB_ATTR_DATE:
        return date_valid(v->i);
    case FXB_ATTR_SET:
        if (v->members == NULL)
            return true;
        if (v->n_members > FXB_SET_MEMBERS_MAX)
            return false;
        for (size_t i = 0; i < v->n_members; i++)
            if (v->members[i] != NULL &&
                strnlen(v->members[i], MEMBER_BYTES_MAX + 1) > MEMBER_BYTES_MAX)
                return false;
        return true;
    }
    return false;
}

/* A scalar value as the column stores it (bool 0/1, enum index, offset). */
static uint64_t stored(const column *c, const fxb_profile_value *v)
{
    switch (c->type) {
    case FXB_ATTR_BOOL:
        return v->i != 0;
    case FXB_ATTR_DATE:
        return (uint64_t)(date_days(v->i) - c->base);
    case FXB_ATTR_INT:
        return (uint64_t)v->i - (uint64_t)c->base;
    default:
        return (uint64_t)v->i;
    }
}

/* A scalar row value read back from the bitmaps; false when unknown. */
static bool read_back(const column *c, uint32_t row, uint64_t *x)
{
    switch (c->type) {
    case FXB_ATTR_BOOL:
        if (!roaring_bitmap_contains(c->known, row))
            return false;
        *x = roaring_bitmap_contains(c->truth, row);
        return true;
    case FXB_ATTR_ENUM:
        for (size_t i = 0; i < c->n_values; i++)
            if (roaring_bitmap_contains(c->values[i], row)) {
                *x = i;
                return true;
            }
        return false;
    case FXB_ATTR_INT:
    case FXB_ATTR_DATE:
        if (!roaring_bitmap_contains(c->known, row))
            return false;
        *x = 0;
        for (unsigned b = 0; b < c->bits; b++)
            if (roaring_bitmap_contains(c->slices[b], row))
                *x |= (uint64_t)1 << b;
        return true;
    default:
        return false;
    }
}

static void scalar_put(column *c, uint32_t row, uint64_t x, bool on)
{
    void (*op)(bitmap *, uint32_t) = on ? roaring_bitmap_add : roaring_bitmap_remove;
    switch (c->type) {
    case FXB_ATTR_BOOL:
        op(c->known, row);
        if (x)
            op(c->truth, row);
        break;
    case FXB_ATTR_ENUM:
        op(c->values[x], row);
        break;
    default:
        op(c->known, row);
        for (uint64_t bits = x; bits != 0; bits &= bits - 1)
            op(c->slices[__builtin_ctzll(bits)], row);
        break;
    }
}

/* Members were created by fxb_index_set before any bitmap changed. */
static void set_put(column *c, uint32_t row, const fxb_profile_value *v)
{
    roaring_bitmap_add(c->known, row);
    for (size_t i = 0; v->members != NULL && i < v->n_members; i++)
        if (v->members[i] != NULL)
            roaring_bitmap_add(member_find(c, v->members[i], hash_str(v->members[i]))->rows, row);
}

static void set_clear(column *c, uint32_t row)
{
    if (!roaring_bitmap_contains(c->known, row))
        return;
    roaring_bitmap_remove(c->known, row);
    for (size_t i = 0; i < c->n_members; i++)
        roaring_bitmap_remove(c->members[i].rows, row);
}

/* Makes the row hold v (NULL: unknown); fresh rows hold nothing yet. */
static void column_write(column *c, uint32_t row, const fxb_profile_value *v, bool fresh)
{
    if (c->type == FXB_ATTR_SET) {
        if (!fresh)
            set_clear(c, row);
        if (v != NULL)
            set_put(c, row, v);
        return;
    }
    uint64_t old = 0, x = v != NULL ? stored(c, v) : 0;
    bool had = !fresh && read_back(c, row, &old);
    if (had && v != NULL && old == x)
        return;
    if (had)
        scalar_put(c, row, old, false);
    if (v != NULL)
        scalar_put(c, row, x, true);
}

int64_t fxb_index_set(fxb_index *ix, const char *subject, const fxb_index_values *v)
{
    if (ix == NULL || subject == NULL)
        return -1;
    if (v != NULL && v->n > 0 && (v->attrs == NULL || v->values == NULL))
        return -1;
    for (size_t k = 0; k < ix->n_cols; k++)
        ix->pending[k] = NULL;
    /* Check everything and allocate everything before a bitmap changes. */
    for (size_t i = 0; v != NULL && i < v->n; i++) {
        const fxb_attr *a = v->attrs[i];
        if (a != NULL && a->derived)
            continue; /* age is computed, never fed */
        column *c = column_for(ix, a);
        if (c == NULL || !value_valid(c, &v->values[i]))
            return -1;
        /* A repeated attribute: the last value wins. */
        ix->pending[c - ix->cols] = v->values[i].present ? &v->values[i] : NULL;
    }
    for (size_t k = 0; k < ix->n_cols; k++) {
        const fxb_profile_value *pv = ix->pending[k];
        if (pv == NULL || ix->cols[k].type != FXB_ATTR_SET || pv->members == NULL)
            continue;
        for (size_t i = 0; i < pv->n_members; i++)
            if (pv->members[i] != NULL && member_get(&ix->cols[k], pv->members[i]) == NULL)
                return -1;
    }
    bool fresh = false;
    int64_t row = row_of(ix, subject, &fresh);
    if (row < 0)
        return -1;
    for (size_t k = 0; k < ix->n_cols; k++)
        column_write(&ix->cols[k], (uint32_t)row, ix->pending[k], fresh);
    return row;
}

void fxb_index_remove(fxb_index *ix, const char *subject)
{
    if (ix == NULL || subject == NULL)
        return;
    size_t at = 0;
    int64_t row = row_find(ix, subject, &at);
    if (row < 0)
        return;
    for (size_t k = 0; k < ix->n_cols; k++)
        column_write(&ix->cols[k], (uint32_t)row, NULL, false);
}

/* Every bitmap of the index, for fn. */
static void each_bitmap(const fxb_index *ix, void (*fn)(bitmap *b, void *arg), void *arg)
{
    for (size_t k = 0; k < ix->n_cols; k++) {
        const column *c = &ix->cols[k];
        if (c->known != NULL)
            fn(c->known, arg);
        if (c->truth != NULL)
            fn(c->truth, arg);
        for (size_t i = 0; i < c->n_values; i++)
            fn(c->values[i], arg);
        for (unsigned i = 0; i < c->bits; i++)
            fn(c->slices[i], arg);
        for (size_t i = 0; i < c->n_members; i++)
            fn(c->members[i].rows, arg);
    }
}

static void optimize_one(bitmap *b, void *arg)
{
    roaring_bitmap_run_optimize(b);
    roaring_bitmap_shrink_to_fit(b);
}

void fxb_index_optimize(fxb_index *ix)
{
    if (ix != NULL)
        each_bitmap(ix, optimize_one, NULL);
}

static void stats_one(bitmap *b, void *arg)
{
    fxb_index_stats *st = arg;
    st->bitmaps++;
    st->bytes += roaring_bitmap_portable_size_in_bytes(b);
}

void fxb_index_stats_get(const fxb_index *ix, fxb_index_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof *out);
    if (ix == NULL)
        return;
    out->subjects = ix->n_rows;
    out->subject_bytes = (uint64_t)ix->n_chunks * ROWS_PER_CHUNK * SUBJECT_SLOT;
    each_bitmap(ix, stats_one, out);
}

/* --- matching: bitmaps owned or borrowed ---------------------------------------------------- */

typedef struct ref {
    bitmap *b;
    bool own;
} ref;

static ref borrow(const bitmap *b)
{
    return (ref){(bitmap *)b, false};
}

static void drop(ref *r)
{
    if (r->own && r->b != NULL)
        roaring_bitmap_free(r->b);
    r->b = NULL;
    r->own = false;
}

static bool empty(const ref *r)
{
    return roaring_bitmap_is_empty(r->b);
}

/* x := x AND / OR / AND NOT y, in place when x is ours. False when memory
 * ran out (x is then unchanged). */
static bool op_and(ref *x, const bitmap *y)
{
    if (x->own) {
        roaring_bitmap_and_inplace(x->b, y);
        return true;
    }
    bitmap *r = roaring_bitmap_and(x->b, y);
    if (r == NULL)
        return false;
    *x = (ref){r, true};
    return true;
}

static bool op_or(ref *x, const bitmap *y)
{
    if (x->own) {
        roaring_bitmap_or_inplace(x->b, y);
        return true;
    }
    bitmap *r = roaring_bitmap_or(x->b, y);
    if (r == NULL)
        return false;
    *x = (ref){r, true};
    return true;
}

static bool op_andnot(ref *x, const bitmap *y)
{
    if (x->own) {
        roaring_bitmap_andnot_inplace(x->b, y);
        return true;
    }
    bitmap *r = roaring_bitmap_andnot(x->b, y);
    if (r == NULL)
        return false;
    *x = (ref){r, true};
    return true;
}

/* x := x AND / OR y, y consumed; works in whichever of the two is ours. */
static bool join(ref *x, ref *y, bool conj)
{
    if (!x->own && y->own) {
        ref t = *x;
        *x = *y;
        *y = t;
    }
    bool ok = conj ? op_and(x, y->b) : op_or(x, y->b);
    drop(y);
    return ok;
}

/* Rows of dom (known rows of c) whose offset is below v (v <= span),
 * O'Neil & Quass: walk the bits from the top keeping the rows whose offset
 * equals v's so far. */
static bool bsi_below(const fxb_index *ix, const column *c, const bitmap *dom, uint64_t v, ref *out)
{
    ref eq = borrow(dom), lt = borrow(ix->empty);
    bool ok = true;
    for (int i = (int)c->bits - 1; i >= 0 && v != 0 && ok && !empty(&eq); i--) {
        const bitmap *s = c->slices[i];
        bool rest_zero = (v & (((uint64_t)1 << i) - 1)) == 0;
        if ((v >> i) & 1) {
            /* rows of eq with a 0 here are below v */
            ref d = borrow(eq.b);
            ok = op_andnot(&d, s) && join(&lt, &d, false);
            if (rest_zero)
                break; /* what is left of eq is at least v */
            ok = ok && op_and(&eq, s);
        } else {
            if (rest_zero)
                break;
            if (!roaring_bitmap_is_empty(s))
                ok = op_andnot(&eq, s);
        }
    }
    drop(&eq);
    if (!ok) {
        drop(&lt);
        return false;
    }
    *out = lt;
    return true;
}

/* Rows of dom whose offset is v. */
static bool bsi_equal(const column *c, const bitmap *dom, uint64_t v, ref *out)
{
    ref eq = borrow(dom);
    bool ok = true;
    for (int i = (int)c->bits - 1; i >= 0 && ok && !empty(&eq); i--)
        ok = (v >> i) & 1 ? op_and(&eq, c->slices[i]) : op_andnot(&eq, c->slices[i]);
    if (!ok) {
        drop(&eq);
        return false;
    }
    *out = eq;
    return true;
}

/* Rows of dom with an offset in [lo, hi] (hi <= span). */
static bool bsi_range(const fxb_index *ix, const column *c, const bitmap *dom, uint64_t lo,
                      uint64_t hi, ref *out)
{
    *out = borrow(ix->empty);
    if (lo > hi)
        return true;
    if (lo == hi)
        return bsi_equal(c, dom, lo, out);
    ref upper = borrow(dom), lower;
    if (hi < c->span && !bsi_below(ix, c, dom, hi + 1, &upper))
        return false;
    if (lo == 0 || empty(&upper)) {
        *out = upper;
        return true;
    }
    if (!bsi_below(ix, c, dom, lo, &lower)) {
        drop(&upper);
        return false;
    }
    bool ok = op_andnot(&upper, lower.b);
    drop(&lower);
    if (!ok) {
        drop(&upper);
        return false;
    }
    *out = upper;
    return true;
}

/* A condition's result: the rows s where it is TRUE (or, with neg, where
 * it is FALSE) within known; every other row is UNKNOWN. */
typedef struct leaf {
    ref s;
    bool neg;
    ref known;
} leaf;

static bool compare(fxb_rule_op op, int64_t x, int64_t v)
{
    switch (op) {
    case FXB_OP_EQ:
        return x == v;
    case FXB_OP_NE:
        return x != v;
    case FXB_OP_LT:
        return x < v;
    case FXB_OP_LE:
        return x <= v;
    case FXB_OP_GT:
        return x > v;
    case FXB_OP_GE:
        return x >= v;
    }
    return false;
}

/* Whether a condition (not CONTAINS) holds for the stored value x. */
static bool holds(const fxb_rule_node *n, int64_t x)
{
    if (n->kind == FXB_RN_TRUTH)
        return x != 0;
    if (n->kind == FXB_RN_CMP)
        return compare(n->op, x, n->value);
    for (size_t i = 0; i < n->n_values; i++)
        if (n->values[i] == x)
            return true;
    return false;
}

static bool leaf_enum(const column *c, const fxb_rule_node *n, leaf *out)
{
    size_t hits = 0;
    for (size_t i = 0; i < c->n_values; i++)
        hits += holds(n, (int64_t)i);
    /* Union the smaller side; the other is its complement within known. */
    bool want = hits * 2 <= c->n_values;
    out->neg = !want;
    const bitmap *pick[FXB_ENUM_VALUES_MAX];
    size_t k = 0;
    for (size_t i = 0; i < c->n_values && k < FXB_ENUM_VALUES_MAX; i++)
        if (holds(n, (int64_t)i) == want)
            pick[k++] = c->values[i];
    if (k == 1)
        out->s = borrow(pick[0]);
    else if (k > 1 && (out->s.b = roaring_bitmap_or_many(k, pick)) == NULL)
        return false;
    else if (k > 1)
        out->s.own = true;
    out->known = (ref){NULL, false}; /* computed when needed */
    return true;
}

/* The birth-date offsets [*lo, *hi] where `age op years` holds on today
 * (NE: where EQ holds); false when there are none. */
static bool age_bounds(const column *c, fxb_rule_op op, int64_t years, uint32_t today, uint64_t *lo,
                       uint64_t *hi)
{
    uint32_t l = 0, h = 0;
    if (!fxb_rule_age_range(op, years, today, &l, &h))
        return false;
    uint64_t off;
    bool exact, past;
    *lo = 0;
    *hi = c->span;
    if (l != 0) {
        position(c, l, &off, &exact, &past);
        if (past)
            return false;
        *lo = off;
    }
    if (h < DATE_HI) {
        position(c, h, &off, &exact, &past);
        if (!past) {
            if (!exact && off == 0)
                return false;
            *hi = exact ? off : off - 1;
        }
    }
    return *lo <= *hi;
}

static bool leaf_age(const fxb_index *ix, const column *c, const bitmap *dom,
                     const fxb_rule_node *n, uint32_t today, leaf *out)
{
    uint64_t lo, hi;
    if (n->kind != FXB_RN_IN) {
        fxb_rule_op op = n->kind == FXB_RN_TRUTH ? FXB_OP_NE : n->op;
        int64_t years = n->kind == FXB_RN_TRUTH ? 0 : n->value;
        out->neg = op == FXB_OP_NE; /* the complement of EQ's range */
        if (!age_bounds(c, op, years, today, &lo, &hi))
            return true;
        return bsi_range(ix, c, dom, lo, hi, &out->s);
    }
    /* A run of consecutive ages a..b is one birth-date range: age >= a and
     * age <= b. */
    for (size_t i = 0; i < n->n_values;) {
        size_t j = i;
        while (j + 1 < n->n_values && n->values[j + 1] == n->values[j] + 1)
            j++;
        uint64_t lo2, hi2;
        if (age_bounds(c, FXB_OP_GE, n->values[i], today, &lo, &hi) &&
            age_bounds(c, FXB_OP_LE, n->values[j], today, &lo2, &hi2)) {
            ref r;
            lo = lo > lo2 ? lo : lo2;
            hi = hi < hi2 ? hi : hi2;
            if (lo <= hi && (!bsi_range(ix, c, dom, lo, hi, &r) || !join(&out->s, &r, false)))
                return false;
        }
        i = j + 1;
    }
    return true;
}

static bool leaf_bsi(const fxb_index *ix, const column *c, const bitmap *dom,
                     const fxb_rule_node *n, leaf *out)
{
    uint64_t off;
    bool exact, past;
    if (n->kind == FXB_RN_IN) {
        out->s = borrow(ix->empty);
        for (size_t i = 0; i < n->n_values;) {
            position(c, n->values[i], &off, &exact, &past);
            size_t j = i + 1;
            if (!exact) {
                i = j;
                continue;
            }
            uint64_t hi = off;
            for (; j < n->n_values; j++) {
                uint64_t o2;
                bool e2, p2;
                position(c, n->values[j], &o2, &e2, &p2);
                if (!e2 || o2 != hi + 1)
                    break;
                hi = o2;
            }
            ref r;
            if (!bsi_range(ix, c, dom, off, hi, &r) || !join(&out->s, &r, false))
                return false;
            i = j;
        }
        return true;
    }
    fxb_rule_op op = n->kind == FXB_RN_TRUTH ? FXB_OP_NE : n->op;
    position(c, n->kind == FXB_RN_TRUTH ? 0 : n->value, &off, &exact, &past);
    out->neg = op == FXB_OP_NE || op == FXB_OP_GT || op == FXB_OP_GE;
    if (op == FXB_OP_EQ || op == FXB_OP_NE) {
        if (!exact) {
            out->s = borrow(ix->empty);
            return true;
        }
        return bsi_equal(c, dom, off, &out->s);
    }
    /* the rows below a bound: LT / GE v below v, LE / GT v below v + 1 */
    bool inclusive = exact && (op == FXB_OP_LE || op == FXB_OP_GT);
    if (past || (inclusive && off == c->span)) {
        out->s = borrow(dom);
        return true;
    }
    return bsi_below(ix, c, dom, inclusive ? off + 1 : off, &out->s);
}

/* A condition restricted to the rows within (NULL: all): bit-sliced
 * columns start from their known rows within, the others are one bitmap
 * or a union and are cut to within afterwards (by the caller). */
static bool leaf_eval(const fxb_index *ix, const fxb_rule_node *n, uint32_t today,
                      const bitmap *within, leaf *out)
{
    out->s = borrow(ix->empty);
    out->neg = false;
    const column *c = column_for(ix, n->attr);
    if (c == NULL) {
        out->known = borrow(ix->empty); /* UNKNOWN everywhere */
        return true;
    }
    out->known = borrow(c->known);
    if (n->kind != FXB_RN_CONTAINS && (c->type == FXB_ATTR_INT || c->type == FXB_ATTR_DATE)) {
        if (within != NULL && !op_and(&out->known, within))
            return false;
        const bitmap *dom = out->known.b;
        bool ok = c->type == FXB_ATTR_DATE && n->attr->derived ? leaf_age(ix, c, dom, n, today, out)
                                                               : leaf_bsi(ix, c, dom, n, out);
        if (ok && out->known.own && out->s.b == dom) { /* every row of dom: s needs its own */
            out->s.b = roaring_bitmap_copy(dom);
            out->s.own = ok = out->s.b != NULL;
        }
        if (!ok) {
            drop(&out->s);
            drop(&out->known);
        }
        return ok;
    }
    if (n->kind == FXB_RN_CONTAINS) {
        if (c->type != FXB_ATTR_SET || n->text == NULL) {
            out->known = borrow(ix->empty);
            return true;
        }
        const member *m = member_find(c, n->text, hash_str(n->text));
        if (m != NULL)
            out->s = borrow(m->rows);
        return true;
    }
    switch (c->type) {
    case FXB_ATTR_BOOL: {
        bool t1 = holds(n, 1), t0 = holds(n, 0);
        out->s = borrow(t1 == t0 ? ix->empty : c->truth);
        out->neg = t0;
        return true;
    }
    case FXB_ATTR_ENUM:
        return leaf_enum(c, n, out);
    default:
    case FXB_ATTR_SET:
        out->known = borrow(ix->empty); /* only `contains` applies to sets */
        return true;
    }
    return true;
}

/* The TRUE and FALSE rows of a subtree; only the halves asked for are
 * computed (the other is left as the empty bitmap). */
typedef struct pair {
    ref t, f;
} pair;

static void pair_drop(pair *p)
{
    drop(&p->t);
    drop(&p->f);
}

/* How many bit-sliced conditions a subtree holds: those cost O(bits)
 * operations, the others one bitmap or a union. */
static size_t cost(const fxb_index *ix, const fxb_rule_node *n)
{
    if (n->kind == FXB_RN_AND || n->kind == FXB_RN_OR)
        return cost(ix, n->a) + cost(ix, n->b);
    if (n->kind == FXB_RN_NOT)
        return cost(ix, n->a);
    const column *c = column_for(ix, n->attr);
    return c != NULL && (c->type == FXB_ATTR_INT || c->type == FXB_ATTR_DATE);
}

/* The TRUE and FALSE rows of a subtree within the rows `within` (NULL:
 * all rows); only the halves asked for are computed (the other is left as
 * the empty bitmap). */
static bool eval(const fxb_index *ix, const fxb_rule_node *n, uint32_t today, bool need_t,
                 bool need_f, const bitmap *within, pair *out)
{
    out->t = borrow(ix->empty);
    out->f = borrow(ix->empty);
    switch (n->kind) {
    case FXB_RN_NOT: {
        pair a;
        if (!eval(ix, n->a, today, need_f, need_t, within, &a))
            return false;
        out->t = a.f;
        out->f = a.t;
        return true;
    }
    case FXB_RN_AND:
    case FXB_RN_OR: {
        bool conj = n->kind == FXB_RN_AND;
        /* AND needing only TRUE: TRUE where both are, so the second side
         * is needed only where the first is TRUE (OR needing only FALSE:
         * where the first is FALSE). The cheaper side goes first. */
        bool narrow = conj ? !need_f : !need_t;
        const fxb_rule_node *first = n->a, *second = n->b;
        if (narrow && cost(ix, n->b) < cost(ix, n->a)) {
            first = n->b;
            second = n->a;
        }
        pair a, b;
        if (!eval(ix, first, today, need_t, need_f, within, &a))
            return false;
        if (narrow) {
            ref *keep = conj ? &a.t : &a.f;
            if (empty(keep)) {
                *out = a;
                return true;
            }
            bool ok = eval(ix, second, today, need_t, need_f, keep->b, &b);
            pair_drop(&a);
            if (!ok)
                return false;
            *out = b; /* within what a kept, so already the conjunction */
            return true;
        }
        if (!eval(ix, second, today, need_t, need_f, within, &b)) {
            pair_drop(&a);
            return false;
        }
        bool ok = (!need_t || join(&a.t, &b.t, conj)) && (!need_f || join(&a.f, &b.f, !conj));
        pair_drop(&b);
        if (!ok) {
            pair_drop(&a);
            return false;
        }
        *out = a;
        return true;
    }
    default:
        break;
    }
    leaf l;
    if (!leaf_eval(ix, n, today, within, &l))
        return false;
    const column *c = column_for(ix, n->attr);
    /* s is one side; the other, when asked for, is known minus s. */
    bool need_other = l.neg ? need_t : need_f;
    bool need_s = l.neg ? need_f : need_t;
    ref other = borrow(ix->empty);
    bool ok = true;
    /* bit-sliced leaves are computed within already; the others are cut */
    bool cut =
        within != NULL && c != NULL &&
        (n->kind == FXB_RN_CONTAINS || (c->type != FXB_ATTR_INT && c->type != FXB_ATTR_DATE));
    if (need_other) {
        if (l.known.b == NULL) { /* enum: known is the union of its values */
            l.known.b = roaring_bitmap_or_many(c->n_values, (const bitmap **)c->values);
            l.known.own = l.known.b != NULL;
            ok = l.known.b != NULL;
        }
        other = l.known;
        l.known = (ref){NULL, false};
        ok = ok && (!cut || op_and(&other, within)) && op_andnot(&other, l.s.b);
    }
    drop(&l.known);
    if (ok && need_s && cut)
        ok = op_and(&l.s, within);
    if (!need_s || !ok)
        drop(&l.s);
    if (!ok) {
        drop(&other);
        return false;
    }
    ref s = need_s ? l.s : borrow(ix->empty);
    out->t = l.neg ? other : s;
    out->f = l.neg ? s : other;
    return true;
}

void *fxb_index_match(const fxb_index *ix, const fxb_rule *rule, uint32_t today)
{
    if (ix == NULL || rule == NULL || fxb_rule_root(rule) == NULL)
        return NULL;
    pair p;
    if (!eval(ix, fxb_rule_root(rule), today, true, false, NULL, &p))
        return NULL;
    drop(&p.f);
    if (p.t.own)
        return p.t.b;
    return roaring_bitmap_copy(p.t.b);
}

uint64_t fxb_index_rows_count(const void *rows)
{
    return rows != NULL ? roaring_bitmap_get_cardinality(rows) : 0;
}

void fxb_index_rows_each(const void *rows, bool (*fn)(uint32_t row, void *arg), void *arg)
{
    if (rows != NULL && fn != NULL)
        roaring_iterate(rows, fn, arg);
}

size_t fxb_index_rows_subjects(const fxb_index *ix, const void *rows, char *buf, size_t cap)
{
    if (ix == NULL || rows == NULL || buf == NULL)
        return 0;
    roaring_uint32_iterator_t it;
    roaring_init_iterator(rows, &it);
    uint32_t batch[1024];
    size_t o = 0;
    for (;;) {
        uint32_t got = roaring_read_uint32_iterator(&it, batch, 1024);
        if (got == 0)
            break;
        for (uint32_t k = 0; k < got; k++) {
            if (k + 8 < got && batch[k + 8] < ix->n_rows)
                __builtin_prefetch(slot(ix, batch[k + 8]));
            if (batch[k] >= ix->n_rows)
                continue;
            const char *sub = slot(ix, batch[k]);
            size_t n = strnlen(sub, SUBJECT_SLOT);
            if (n == 0)
                continue;
            if (cap - o < n + 1)
                return 0;
            memcpy(buf + o, sub, n);
            buf[o + n] = '\n';
            o += n + 1;
        }
    }
    return o;
}

void fxb_index_rows_free(void *rows)
{
    if (rows != NULL)
        roaring_bitmap_free(rows);
}
