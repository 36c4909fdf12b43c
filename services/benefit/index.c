/* The matching index (index.h): per attribute, roaring bitmaps over dense
 * rows, plus per-row data in blocks of 65,536 rows; a rule is evaluated
 * once over the tree, planned the way a database would plan a WHERE.
 *
 * What is held, per attribute:
 *   bool   `known` and `truth` bitmaps; in the row blocks the same two as
 *          plain bitsets (a bit a row)
 *   enum   `known` and one bitmap per value; in the blocks a plain bitset
 *          per value and one for known (up to 32 values; beyond, a cell
 *          of value + 1 a row, so that a row costs at most 33 bits)
 *   int,   `known` and bins: one bitmap per value when the attribute has at
 *   date   most 256 values, per calendar year for dates, per power of two
 *          of the offset otherwise; in the blocks a cell of the row's
 *          offset (value - minimum, dates in days) + 1 (0: unknown) in 1,
 *          2, 4 or 8 bytes
 *   set    `known` and one bitmap per member seen
 * An update reads the row's old value back from the blocks and touches
 * only what changed. Blocks and subject slots are carved from slabs on
 * huge pages (madvise) where the kernel grants them: matching reads rows
 * scattered over 100+ MB, and with 4 KiB pages most reads missed the TLB.
 *
 * Matching. Each condition becomes a leaf that knows its TRUE values (enum
 * and bool: a value mask; int, date and age: sorted offset intervals, whose
 * complement within the attribute's range is FALSE; sets: the member's
 * bitmap), and how many rows that is (the value and bin bitmaps' sizes).
 * eval(node, mask, want) gives the rows within mask where the node is TRUE
 * (or FALSE) under three-valued logic, computing only the half needed (the
 * root needs TRUE, NOT swaps the need):
 *   - a chain (AND wanting TRUE, OR wanting FALSE: every operand must be
 *     `want`) is flattened; range operands on one column merge into one
 *     range (`age >= 25 && age <= 45`); the operands run fewest rows
 *     first, each within what the previous left;
 *   - enum / bool operands that together keep few rows start the chain
 *     with their AND over the blocks' plain bitsets, 64 rows a word
 *     (CRoaring 0.2.66 as packaged intersects two array containers of a
 *     few thousand values with a scalar merge: ten times slower);
 *   - when the fewest-rows operand is a union of bitmaps (the bins inside
 *     a range, enum values, a member) and small, its bitmaps are read one
 *     by one and the other operands checked on their rows: the union is
 *     never built;
 *   - once a mask is small (1/32 of the rows), the rest is checked row by
 *     row from the blocks: one bit or one cell per condition, the
 *     cheapest per removed row first, the rows ahead prefetched, kept
 *     without a branch;
 *   - a range over a large mask is the union of the bins inside it (or
 *     known minus the bins outside, whichever holds fewer rows) plus the
 *     rows of the bins across its ends, checked one by one.
 * fxb_index_tune forces each way for the tests, which check every row
 * against fxb_rule_eval. */
#include "services/benefit/index.h"

#include <roaring/roaring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SUBJECT_MAX      32 /* bytes of a subject id */
#define SUBJECT_SLOT     (SUBJECT_MAX + 1)
#define CHUNK_ROWS       65536u /* rows per subject chunk and per row block */
#define CHUNK_WORDS      (CHUNK_ROWS / 64)
#define DENSE_BYTES      (CHUNK_WORDS * sizeof(uint64_t)) /* one plain bitset of a block */
#define ROWS_MAX         (UINT32_MAX - 1)                 /* row + 1 must fit the hash slots */
#define MEMBER_BYTES_MAX (FXB_ATTR_TEXT_MAX * 4)
#define SET_DISTINCT_MAX 65536 /* distinct members one set attribute may index */
#define DATE_HI          99991231
#define DATE_LO          10101 /* 0001-01-01 */
#define YEARS            9999
#define VALUE_BINS_MAX   256 /* int attributes with at most this many values: a bin each */
#define DENSE_VALUES_MAX 32  /* enums with more values keep a cell a row, not a bitset a value */
#define SMALL_DIV        32  /* masks under n_rows / SMALL_DIV rows go row by row */
#define SMALL_MIN        4096
#define DENSE_FRAC_MAX   0.75 /* the plain-bitset AND takes conditions at most this broad */
#define STREAM_DIV       16   /* a chain's first operand under n_rows / 16 rows is not built */
#define BATCH            1024 /* rows read from a bitmap at a time */
#define SLAB_ALIGN       ((size_t)2 << 20) /* a huge page */
#define PREFETCH         32                /* rows ahead whose cells are prefetched */
#define SUBJECT_AHEAD    64                /* rows ahead whose subject slots are prefetched */

typedef roaring_bitmap_t bitmap;

typedef struct member {
    char *text;
    uint64_t hash;
    bitmap *rows;
} member;

typedef enum bin_kind { BINS_NONE, BINS_VALUE, BINS_LOG2, BINS_YEAR } bin_kind;

/* One indexed attribute. Offsets of int and date values: value - base
 * (dates in days), 0..span. */
typedef struct column {
    const fxb_attr *attr;
    fxb_attr_type type;
    bitmap *known;   /* every type: rows where the value is given */
    bitmap *truth;   /* bool */
    bitmap **values; /* enum, n_values */
    size_t n_values;
    int64_t base; /* int, date */
    uint64_t span;
    bool dense;     /* bool, enum of at most DENSE_VALUES_MAX values: plain bitsets in the blocks */
    unsigned width; /* bytes of a row's cell in the blocks (int, date, other enums) */
    bool wide;      /* span is 2^64 - 1: the blocks hold the bare offset, `known` says if given */
    bin_kind bins_kind;
    bitmap **bins;      /* n_bins, created when first needed */
    uint64_t *bin_rows; /* rows in each bin (estimates read them often) */
    size_t n_bins, bin_first, bin_last;
    size_t off;      /* where this column's part of a row block starts */
    member *members; /* set */
    size_t n_members, cap_members;
    uint32_t *member_slots; /* open addressing: member index + 1, 0 = empty */
    size_t member_slots_cap;
} column;

/* Memory for fixed-size pieces (row blocks, subject chunks), carved from
 * slabs of a few pieces on huge pages where the kernel grants them:
 * matching reads scattered rows, and with 4 KiB pages most of those reads
 * also missed the TLB. Pieces live as long as the index. */
typedef struct pool {
    unsigned char **slabs;
    size_t n_slabs, cap_slabs;
    size_t piece, per_slab, used, slab_bytes;
} pool;

struct fxb_index {
    const fxb_schema *schema;
    fxb_subject_type type;
    column *cols;
    size_t n_cols;
    int *col_of;            /* per schema attribute: its column, or -1 */
    int age_col;            /* the birth_date column that derived age reads, or -1 */
    char **chunks;          /* row -> subject: CHUNK_ROWS slots of SUBJECT_SLOT bytes each */
    unsigned char **blocks; /* per chunk: every column's per-row part (block_size bytes) */
    size_t block_size;
    pool block_pool, subject_pool; /* where blocks and subject chunks are carved from */
    size_t n_chunks, cap_chunks;
    uint32_t n_rows;
    uint32_t *row_slots; /* subject -> row: row + 1, 0 = empty */
    size_t row_slots_cap;
    const fxb_profile_value **pending; /* per column, scratch for fxb_index_set */
    bitmap *empty;
    int64_t tune_rows, tune_stream; /* fxb_index_tune; -1: the planner's choice */
    int tune_dense;
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

/* The year of a day counted from 1970-01-01 (H. Hinnant). */
static int64_t civil_year(int64_t z)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    return yoe + era * 400 + (mp >= 10);
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

/* --- bins ------------------------------------------------------------------------------------ */

/* The bin of an offset. */
static size_t bin_of(const column *c, uint64_t off)
{
    switch (c->bins_kind) {
    case BINS_VALUE:
        return (size_t)off;
    case BINS_LOG2:
        return off == 0 ? 0 : (size_t)(64 - __builtin_clzll(off));
    case BINS_YEAR:
        return (size_t)(civil_year(c->base + (int64_t)off + civil_days(1900, 1, 1)) - 1);
    default:
        return 0;
    }
}

/* The offsets bin k covers, within 0..span. */
static void bin_bounds(const column *c, size_t k, uint64_t *lo, uint64_t *hi)
{
    switch (c->bins_kind) {
    case BINS_VALUE:
        *lo = *hi = k;
        return;
    case BINS_LOG2:
        *lo = k == 0 ? 0 : (uint64_t)1 << (k - 1);
        *hi = k == 0 ? 0 : k == 64 ? UINT64_MAX : ((uint64_t)1 << k) - 1;
        break;
    case BINS_YEAR: {
        int64_t y = (int64_t)k + 1;
        *lo = (uint64_t)(date_days(y * 10000 + 101) - c->base);
        *hi = (uint64_t)(date_days(y * 10000 + 1231) - c->base);
        break;
    }
    default:
        *lo = 0;
        *hi = c->span;
        return;
    }
    if (*hi > c->span)
        *hi = c->span;
}

/* The bin bitmap for an offset, created when missing; NULL on allocation
 * failure. */
static bitmap *bin_get(column *c, uint64_t off)
{
    size_t k = bin_of(c, off);
    if (c->bins[k] == NULL) {
        if ((c->bins[k] = roaring_bitmap_create()) == NULL)
            return NULL;
        if (k < c->bin_first)
            c->bin_first = k;
        if (k > c->bin_last)
            c->bin_last = k;
    }
    return c->bins[k];
}

/* --- construction -------------------------------------------------------------------------- */

/* A piece of pl->piece bytes (zeroed when zero); NULL on allocation
 * failure. */
static unsigned char *pool_take(pool *pl, bool zero)
{
    if (pl->n_slabs == 0 || pl->used == pl->per_slab) {
        if (pl->per_slab == 0) {
            pl->slab_bytes = (8 * pl->piece + SLAB_ALIGN - 1) / SLAB_ALIGN * SLAB_ALIGN;
            pl->per_slab = pl->slab_bytes / pl->piece;
        }
        if (pl->n_slabs == pl->cap_slabs) {
            size_t cap = pl->cap_slabs ? pl->cap_slabs * 2 : 8;
            unsigned char **s = realloc(pl->slabs, cap * sizeof *s);
            if (s == NULL)
                return NULL;
            pl->slabs = s;
            pl->cap_slabs = cap;
        }
        void *p = NULL;
        if (posix_memalign(&p, SLAB_ALIGN, pl->slab_bytes) != 0)
            return NULL;
#ifdef MADV_HUGEPAGE
        madvise(p, pl->slab_bytes, MADV_HUGEPAGE); /* a hint: failing is harmless */
#endif
        pl->slabs[pl->n_slabs++] = p;
        pl->used = 0;
    }
    unsigned char *b = pl->slabs[pl->n_slabs - 1] + pl->used++ * pl->piece;
    if (zero)
        memset(b, 0, pl->piece);
    return b;
}

static void pool_release(pool *pl)
{
    for (size_t i = 0; i < pl->n_slabs; i++)
        free(pl->slabs[i]);
    free(pl->slabs);
}

/* Sets up c for a; *block grows by the column's part of a row block. */
static bool column_init(column *c, const fxb_attr *a, size_t *block)
{
    c->attr = a;
    c->type = a->type;
    c->off = *block;
    if ((c->known = roaring_bitmap_create()) == NULL)
        return false;
    switch (a->type) {
    case FXB_ATTR_BOOL:
        c->dense = true;
        *block += 2 * DENSE_BYTES; /* known, truth */
        return (c->truth = roaring_bitmap_create()) != NULL;
    case FXB_ATTR_ENUM:
        c->values = calloc(a->n_values ? a->n_values : 1, sizeof *c->values);
        if (c->values == NULL)
            return false;
        c->n_values = a->n_values;
        for (size_t i = 0; i < a->n_values; i++)
            if ((c->values[i] = roaring_bitmap_create()) == NULL)
                return false;
        c->dense = a->n_values <= DENSE_VALUES_MAX;
        c->width = a->n_values < UINT8_MAX ? 1 : 2;
        if (c->dense)
            *block += (a->n_values + 1) * DENSE_BYTES; /* each value, then known */
        else
            *block += (size_t)CHUNK_ROWS * c->width; /* value + 1, 0: unknown */
        return true;
    case FXB_ATTR_INT:
    case FXB_ATTR_DATE:
        if (a->type == FXB_ATTR_INT) {
            c->base = a->min;
            c->span = (uint64_t)a->max - (uint64_t)a->min;
            c->bins_kind = c->span < VALUE_BINS_MAX ? BINS_VALUE : BINS_LOG2;
            c->n_bins = c->bins_kind == BINS_VALUE ? (size_t)c->span + 1 : 65;
        } else {
            c->base = date_days(DATE_LO);
            c->span = (uint64_t)(date_days(DATE_HI) - c->base);
            c->bins_kind = BINS_YEAR;
            c->n_bins = YEARS;
        }
        c->width = c->span < UINT8_MAX    ? 1
                   : c->span < UINT16_MAX ? 2
                   : c->span < UINT32_MAX ? 4
                                          : 8;
        c->wide = c->span == UINT64_MAX;
        c->bin_first = c->n_bins;
        c->bin_last = 0;
        *block += (size_t)CHUNK_ROWS * c->width;
        c->bins = calloc(c->n_bins, sizeof *c->bins);
        c->bin_rows = calloc(c->n_bins, sizeof *c->bin_rows);
        return c->bins != NULL && c->bin_rows != NULL;
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
    for (size_t i = 0; c->bins != NULL && i < c->n_bins; i++)
        if (c->bins[i] != NULL)
            roaring_bitmap_free(c->bins[i]);
    free(c->bins);
    free(c->bin_rows);
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
    ix->tune_rows = ix->tune_stream = -1;
    ix->tune_dense = -1;
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
        if (!column_init(c, a, &ix->block_size)) {
            fxb_index_free(ix);
            return NULL;
        }
        if (a->type == FXB_ATTR_DATE && strcmp(a->name, "birth_date") == 0)
            ix->age_col = ix->col_of[i];
    }
    ix->subject_pool.piece = (size_t)CHUNK_ROWS * SUBJECT_SLOT;
    ix->block_pool.piece = ix->block_size;
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
    pool_release(&ix->subject_pool);
    pool_release(&ix->block_pool);
    free(ix->chunks);
    free(ix->blocks);
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
    return ix->chunks[row / CHUNK_ROWS] + (size_t)(row % CHUNK_ROWS) * SUBJECT_SLOT;
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

/* A new chunk of subject slots and its row block (zeroed: unknown). */
static bool chunk_add(fxb_index *ix)
{
    if (ix->n_chunks == ix->cap_chunks) {
        size_t cap = ix->cap_chunks ? ix->cap_chunks * 2 : 16;
        char **c = realloc(ix->chunks, cap * sizeof *c);
        if (c == NULL)
            return false;
        ix->chunks = c;
        unsigned char **b = realloc(ix->blocks, cap * sizeof *b);
        if (b == NULL)
            return false;
        ix->blocks = b;
        ix->cap_chunks = cap;
    }
    /* a failure leaves a piece unused in its slab: harmless */
    char *chunk = (char *)pool_take(&ix->subject_pool, false);
    if (chunk == NULL)
        return false;
    unsigned char *block = NULL;
    if (ix->block_size > 0 && (block = pool_take(&ix->block_pool, true)) == NULL)
        return false;
    ix->chunks[ix->n_chunks] = chunk;
    ix->blocks[ix->n_chunks++] = block;
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
    if (ix->n_rows / CHUNK_ROWS >= ix->n_chunks && !chunk_add(ix))
        return -1;
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

/* --- the row blocks -------------------------------------------------------------------------- */

static unsigned char *block_of(const fxb_index *ix, const column *c, uint32_t row)
{
    return ix->blocks[row / CHUNK_ROWS] + c->off;
}

/* Plain bitset k of the column in the block holding row (enum: value k,
 * known at n_values; bool: known 0, truth 1). */
static uint64_t *dense_of(const fxb_index *ix, const column *c, size_t k, uint32_t row)
{
    return (uint64_t *)(void *)(block_of(ix, c, row) + k * DENSE_BYTES);
}

static bool bit_get(const uint64_t *w, uint32_t row)
{
    uint32_t r = row % CHUNK_ROWS;
    return (w[r >> 6] >> (r & 63)) & 1;
}

static void bit_put(uint64_t *w, uint32_t row, bool on)
{
    uint32_t r = row % CHUNK_ROWS;
    if (on)
        w[r >> 6] |= (uint64_t)1 << (r & 63);
    else
        w[r >> 6] &= ~((uint64_t)1 << (r & 63));
}

static uint64_t cell_load(const unsigned char *p, unsigned width)
{
    switch (width) {
    case 1:
        return *p;
    case 2: {
        uint16_t x;
        memcpy(&x, p, sizeof x);
        return x;
    }
    case 4: {
        uint32_t x;
        memcpy(&x, p, sizeof x);
        return x;
    }
    default: {
        uint64_t x;
        memcpy(&x, p, sizeof x);
        return x;
    }
    }
}

static void cell_store(unsigned char *p, unsigned width, uint64_t x)
{
    switch (width) {
    case 1:
        *p = (unsigned char)x;
        break;
    case 2: {
        uint16_t y = (uint16_t)x;
        memcpy(p, &y, sizeof y);
        break;
    }
    case 4: {
        uint32_t y = (uint32_t)x;
        memcpy(p, &y, sizeof y);
        break;
    }
    default:
        memcpy(p, &x, sizeof x);
        break;
    }
}

static unsigned char *cell_of(const fxb_index *ix, const column *c, uint32_t row)
{
    return block_of(ix, c, row) + (size_t)(row % CHUNK_ROWS) * c->width;
}

/* The offset an int / date row holds; false when unknown. */
static bool cell_get(const fxb_index *ix, const column *c, uint32_t row, uint64_t *off)
{
    uint64_t x = cell_load(cell_of(ix, c, row), c->width);
    if (c->wide) {
        if (!roaring_bitmap_contains(c->known, row))
            return false;
        *off = x;
        return true;
    }
    if (x == 0)
        return false;
    *off = x - 1;
    return true;
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

/* A scalar row value read back from the blocks; false when unknown. */
static bool read_back(const fxb_index *ix, const column *c, uint32_t row, uint64_t *x)
{
    switch (c->type) {
    case FXB_ATTR_BOOL:
        if (!bit_get(dense_of(ix, c, 0, row), row))
            return false;
        *x = bit_get(dense_of(ix, c, 1, row), row);
        return true;
    case FXB_ATTR_ENUM:
        if (!c->dense) {
            uint64_t v = cell_load(cell_of(ix, c, row), c->width);
            *x = v - 1;
            return v != 0;
        }
        if (!bit_get(dense_of(ix, c, c->n_values, row), row))
            return false;
        for (size_t i = 0; i < c->n_values; i++)
            if (bit_get(dense_of(ix, c, i, row), row)) {
                *x = i;
                return true;
            }
        return false;
    case FXB_ATTR_INT:
    case FXB_ATTR_DATE:
        return cell_get(ix, c, row, x);
    default:
        return false;
    }
}

/* Adds (on) or removes the scalar x of row everywhere the column keeps it.
 * An added int / date value's bin exists already (fxb_index_set). */
static void scalar_put(const fxb_index *ix, column *c, uint32_t row, uint64_t x, bool on)
{
    void (*op)(bitmap *, uint32_t) = on ? roaring_bitmap_add : roaring_bitmap_remove;
    op(c->known, row);
    switch (c->type) {
    case FXB_ATTR_BOOL:
        bit_put(dense_of(ix, c, 0, row), row, on);
        if (x) {
            op(c->truth, row);
            bit_put(dense_of(ix, c, 1, row), row, on);
        }
        break;
    case FXB_ATTR_ENUM:
        op(c->values[x], row);
        if (!c->dense) {
            cell_store(cell_of(ix, c, row), c->width, on ? x + 1 : 0);
            break;
        }
        bit_put(dense_of(ix, c, x, row), row, on);
        bit_put(dense_of(ix, c, c->n_values, row), row, on);
        break;
    default: {
        size_t k = bin_of(c, x);
        op(c->bins[k], row);
        if (on)
            c->bin_rows[k]++;
        else
            c->bin_rows[k]--;
        cell_store(cell_of(ix, c, row), c->width, on ? x + !c->wide : 0);
        break;
    }
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
static void column_write(const fxb_index *ix, column *c, uint32_t row, const fxb_profile_value *v,
                         bool fresh)
{
    if (c->type == FXB_ATTR_SET) {
        if (!fresh)
            set_clear(c, row);
        if (v != NULL)
            set_put(c, row, v);
        return;
    }
    uint64_t old = 0, x = v != NULL ? stored(c, v) : 0;
    bool had = !fresh && read_back(ix, c, row, &old);
    if (had && v != NULL && old == x)
        return;
    if (had)
        scalar_put(ix, c, row, old, false);
    if (v != NULL)
        scalar_put(ix, c, row, x, true);
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
        column *c = &ix->cols[k];
        if (pv == NULL)
            continue;
        if ((c->type == FXB_ATTR_INT || c->type == FXB_ATTR_DATE) &&
            bin_get(c, stored(c, pv)) == NULL)
            return -1;
        if (c->type != FXB_ATTR_SET || pv->members == NULL)
            continue;
        for (size_t i = 0; i < pv->n_members; i++)
            if (pv->members[i] != NULL && member_get(c, pv->members[i]) == NULL)
                return -1;
    }
    bool fresh = false;
    int64_t row = row_of(ix, subject, &fresh);
    if (row < 0)
        return -1;
    for (size_t k = 0; k < ix->n_cols; k++)
        column_write(ix, &ix->cols[k], (uint32_t)row, ix->pending[k], fresh);
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
        column_write(ix, &ix->cols[k], (uint32_t)row, NULL, false);
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
        for (size_t i = c->bin_first; i <= c->bin_last && i < c->n_bins; i++)
            if (c->bins[i] != NULL)
                fn(c->bins[i], arg);
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
    out->subject_bytes = (uint64_t)ix->subject_pool.n_slabs * ix->subject_pool.slab_bytes;
    each_bitmap(ix, stats_one, out);
}

uint64_t fxb_index_row_bytes(const fxb_index *ix)
{
    return ix != NULL ? (uint64_t)ix->block_pool.n_slabs * ix->block_pool.slab_bytes : 0;
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

static uint64_t card(const bitmap *b)
{
    return roaring_bitmap_get_cardinality(b);
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

/* x := x OR y, y consumed; works in whichever of the two is ours. */
static bool join(ref *x, ref *y)
{
    if (!x->own && y->own) {
        ref t = *x;
        *x = *y;
        *y = t;
    }
    bool ok = op_or(x, y->b);
    drop(y);
    return ok;
}

/* The union of parts (borrowed when there is one, the empty bitmap when
 * none). */
static bool union_of(const fxb_index *ix, const bitmap **parts, size_t n, ref *out)
{
    if (n == 0) {
        *out = borrow(ix->empty);
        return true;
    }
    if (n == 1) {
        *out = borrow(parts[0]);
        return true;
    }
    bitmap *u = roaring_bitmap_or_many(n, parts);
    *out = (ref){u, true};
    return u != NULL;
}

/* *out := base within mask (NULL: all rows). */
static bool within(const bitmap *base, const bitmap *mask, ref *out)
{
    *out = borrow(base);
    return mask == NULL || op_and(out, mask);
}

/* --- matching: the plan -------------------------------------------------------------------- */

typedef enum leaf_kind { LK_UNKNOWN, LK_VALUES, LK_RANGE, LK_MEMBER } leaf_kind;

typedef struct interval {
    uint64_t lo, hi;
} interval;

/* A node of the rule as the index runs it. Leaves know which rows hold
 * which values: LK_VALUES (enum, bool) a value mask, LK_RANGE (int, date,
 * age) offset intervals, LK_MEMBER (set contains) the member's bitmap;
 * LK_UNKNOWN is UNKNOWN on every row (an attribute the index lacks). */
typedef struct pnode {
    fxb_rule_node_kind kind; /* AND, OR, NOT; anything else is a leaf */
    struct pnode *a, *b;
    leaf_kind lk;
    const column *c;
    uint64_t holds[FXB_ENUM_VALUES_MAX / 64]; /* values (enum index, bool 0 / 1) where TRUE */
    const uint8_t *probe;                     /* enum: the values of the smaller side ... */
    size_t n_probe;                           /* ... */
    bool probe_true;                          /* ... TRUE's when set, FALSE's otherwise */
    const interval *iv[2]; /* LK_RANGE: offsets where FALSE [0] / TRUE [1], sorted, disjoint */
    size_t n_iv[2];
    const bitmap *member; /* LK_MEMBER; NULL when no row has it */
    double est[2];        /* estimated rows FALSE [0] / TRUE [1]; < 0 until asked */
} pnode;

typedef struct plan {
    const fxb_index *ix;
    uint32_t today;
    uint64_t small;  /* masks of at most this many rows are evaluated row by row */
    uint64_t stream; /* a chain's first operand up to this many rows is not built */
    int dense;       /* the plain-bitset AND: 1 whenever possible, 0 never, -1 when it pays */
    pnode *nodes, *root;
    size_t n_nodes, cap_nodes;
    interval *ivs;
    size_t n_ivs, cap_ivs;
    uint8_t *probes;
    size_t n_probes;
} plan;

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

/* Whether rows holding value v are `want` (1 TRUE, 0 FALSE) for leaf n. */
static bool side(const pnode *n, size_t v, int want)
{
    return (int)((n->holds[v / 64] >> (v % 64)) & 1) == want;
}

/* Appends [lo, hi] to the interval list that starts at `start` (inputs in
 * ascending order; touching intervals merge). */
static void iv_add(plan *p, size_t start, uint64_t lo, uint64_t hi)
{
    if (p->n_ivs > start) {
        interval *last = &p->ivs[p->n_ivs - 1];
        if (last->hi == UINT64_MAX || last->hi + 1 >= lo) {
            if (hi > last->hi)
                last->hi = hi;
            return;
        }
    }
    p->ivs[p->n_ivs++] = (interval){lo, hi};
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

/* The offsets where an age condition is TRUE. */
static void age_intervals(plan *p, size_t start, const column *c, const fxb_rule_node *n)
{
    uint64_t lo, hi;
    if (n->kind != FXB_RN_IN) {
        fxb_rule_op op = n->kind == FXB_RN_TRUTH ? FXB_OP_NE : n->op;
        int64_t years = n->kind == FXB_RN_TRUTH ? 0 : n->value;
        if (op != FXB_OP_NE) {
            if (age_bounds(c, op, years, p->today, &lo, &hi))
                iv_add(p, start, lo, hi);
        } else if (age_bounds(c, op, years, p->today, &lo, &hi)) { /* the complement of EQ's */
            if (lo > 0)
                iv_add(p, start, 0, lo - 1);
            if (hi < c->span)
                iv_add(p, start, hi + 1, c->span);
        } else {
            iv_add(p, start, 0, c->span);
        }
        return;
    }
    /* A run of consecutive ages a..b is one birth-date range (age >= a and
     * age <= b); older runs are earlier dates, so they are sorted after. */
    interval runs[FXB_RULE_IN_MAX];
    size_t n_runs = 0;
    for (size_t i = 0; i < n->n_values && n_runs < FXB_RULE_IN_MAX;) {
        size_t j = i;
        while (j + 1 < n->n_values && n->values[j + 1] == n->values[j] + 1)
            j++;
        uint64_t lo2, hi2;
        if (age_bounds(c, FXB_OP_GE, n->values[i], p->today, &lo, &hi) &&
            age_bounds(c, FXB_OP_LE, n->values[j], p->today, &lo2, &hi2)) {
            lo = lo > lo2 ? lo : lo2;
            hi = hi < hi2 ? hi : hi2;
            if (lo <= hi)
                runs[n_runs++] = (interval){lo, hi};
        }
        i = j + 1;
    }
    for (size_t i = 1; i < n_runs; i++)
        for (size_t j = i; j > 0 && runs[j - 1].lo > runs[j].lo; j--) {
            interval t = runs[j];
            runs[j] = runs[j - 1];
            runs[j - 1] = t;
        }
    for (size_t i = 0; i < n_runs; i++)
        iv_add(p, start, runs[i].lo, runs[i].hi);
}

/* The offsets where an int / date condition is TRUE. */
static void value_intervals(plan *p, size_t start, const column *c, const fxb_rule_node *n)
{
    uint64_t off;
    bool exact, past;
    if (n->kind == FXB_RN_IN) {
        for (size_t i = 0; i < n->n_values; i++) {
            position(c, n->values[i], &off, &exact, &past);
            if (exact)
                iv_add(p, start, off, off);
        }
        return;
    }
    fxb_rule_op op = n->kind == FXB_RN_TRUTH ? FXB_OP_NE : n->op;
    position(c, n->kind == FXB_RN_TRUTH ? 0 : n->value, &off, &exact, &past);
    /* not exact: off is the first offset above the value (past: none) */
    switch (op) {
    case FXB_OP_EQ:
        if (exact)
            iv_add(p, start, off, off);
        break;
    case FXB_OP_NE:
        if (!exact) {
            iv_add(p, start, 0, c->span);
            break;
        }
        if (off > 0)
            iv_add(p, start, 0, off - 1);
        if (off < c->span)
            iv_add(p, start, off + 1, c->span);
        break;
    case FXB_OP_LT:
    case FXB_OP_LE:
        if (past)
            iv_add(p, start, 0, c->span);
        else if (exact && op == FXB_OP_LE)
            iv_add(p, start, 0, off);
        else if (off > 0)
            iv_add(p, start, 0, off - 1);
        break;
    case FXB_OP_GT:
    case FXB_OP_GE:
        if (past)
            break;
        if (exact && op == FXB_OP_GT) {
            if (off < c->span)
                iv_add(p, start, off + 1, c->span);
        } else {
            iv_add(p, start, off, c->span);
        }
        break;
    }
}

/* Appends the complement of w (n intervals) within 0..span. */
static void iv_complement(plan *p, const interval *w, size_t n, uint64_t span)
{
    size_t start = p->n_ivs;
    uint64_t next = 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i].lo > next)
            iv_add(p, start, next, w[i].lo - 1);
        if (w[i].hi >= span)
            return;
        next = w[i].hi + 1;
    }
    iv_add(p, start, next, span);
}

static void plan_leaf(plan *p, pnode *pn, const fxb_rule_node *n)
{
    const column *c = column_for(p->ix, n->attr);
    pn->c = c;
    pn->lk = LK_UNKNOWN;
    if (c == NULL)
        return;
    if (n->kind == FXB_RN_CONTAINS) {
        if (c->type != FXB_ATTR_SET || n->text == NULL)
            return;
        const member *m = member_find(c, n->text, hash_str(n->text));
        pn->lk = LK_MEMBER;
        pn->member = m != NULL ? m->rows : NULL;
        return;
    }
    switch (c->type) {
    case FXB_ATTR_BOOL:
    case FXB_ATTR_ENUM: {
        size_t nv = c->type == FXB_ATTR_BOOL ? 2 : c->n_values, h = 0;
        for (size_t v = 0; v < nv; v++)
            if (holds(n, (int64_t)v)) {
                pn->holds[v / 64] |= (uint64_t)1 << (v % 64);
                h++;
            }
        pn->lk = LK_VALUES;
        pn->probe_true = h <= nv - h;
        pn->probe = p->probes + p->n_probes;
        for (size_t v = 0; c->type == FXB_ATTR_ENUM && v < nv; v++)
            if (side(pn, v, pn->probe_true))
                p->probes[p->n_probes++] = (uint8_t)v;
        pn->n_probe = (size_t)(p->probes + p->n_probes - pn->probe);
        return;
    }
    case FXB_ATTR_INT:
    case FXB_ATTR_DATE: {
        size_t start = p->n_ivs;
        if (n->attr->derived)
            age_intervals(p, start, c, n);
        else
            value_intervals(p, start, c, n);
        pn->iv[1] = p->ivs + start;
        pn->n_iv[1] = p->n_ivs - start;
        start = p->n_ivs;
        iv_complement(p, pn->iv[1], pn->n_iv[1], c->span);
        pn->iv[0] = p->ivs + start;
        pn->n_iv[0] = p->n_ivs - start;
        pn->lk = LK_RANGE;
        return;
    }
    case FXB_ATTR_SET: /* only `contains` applies to sets */
        return;
    }
}

static pnode *plan_node(plan *p, const fxb_rule_node *n)
{
    pnode *pn = &p->nodes[p->n_nodes++];
    memset(pn, 0, sizeof *pn);
    pn->kind = n->kind;
    pn->est[0] = pn->est[1] = -1;
    switch (n->kind) {
    case FXB_RN_AND:
    case FXB_RN_OR:
        pn->a = plan_node(p, n->a);
        pn->b = plan_node(p, n->b);
        break;
    case FXB_RN_NOT:
        pn->a = plan_node(p, n->a);
        break;
    default:
        plan_leaf(p, pn, n);
        break;
    }
    return pn;
}

/* Nodes, intervals and probed values a rule's plan may need. */
static void plan_size(const fxb_rule_node *n, size_t *nodes, size_t *ivs, size_t *probes)
{
    (*nodes)++;
    switch (n->kind) {
    case FXB_RN_AND:
    case FXB_RN_OR:
        plan_size(n->a, nodes, ivs, probes);
        plan_size(n->b, nodes, ivs, probes);
        return;
    case FXB_RN_NOT:
        plan_size(n->a, nodes, ivs, probes);
        return;
    default:
        *ivs += 2 * ((n->kind == FXB_RN_IN ? n->n_values : 0) + 3);
        *probes += FXB_ENUM_VALUES_MAX;
        return;
    }
}

static bool plan_init(plan *p, const fxb_index *ix, const fxb_rule_node *root, uint32_t today)
{
    memset(p, 0, sizeof *p);
    p->ix = ix;
    p->today = today;
    p->small = ix->n_rows / SMALL_DIV > SMALL_MIN ? ix->n_rows / SMALL_DIV : SMALL_MIN;
    p->stream = ix->n_rows / STREAM_DIV;
    if (ix->tune_rows >= 0)
        p->small = (uint64_t)ix->tune_rows;
    if (ix->tune_stream >= 0)
        p->stream = (uint64_t)ix->tune_stream;
    p->dense = ix->tune_dense < 0 ? -1 : ix->tune_dense > 0;
    size_t nodes = 0, ivs = 0, probes = 0;
    plan_size(root, &nodes, &ivs, &probes);
    nodes *= 2; /* room for merged ranges (merge_ranges) */
    ivs *= 3;
    p->cap_nodes = nodes;
    p->cap_ivs = ivs;
    p->nodes = malloc(nodes * sizeof *p->nodes);
    p->ivs = malloc(ivs * sizeof *p->ivs);
    p->probes = malloc(probes);
    if (p->nodes == NULL || p->ivs == NULL || p->probes == NULL) {
        free(p->nodes);
        free(p->ivs);
        free(p->probes);
        return false;
    }
    p->root = plan_node(p, root);
    return true;
}

static void plan_free(plan *p)
{
    free(p->nodes);
    free(p->ivs);
    free(p->probes);
}

/* --- matching: bins of a range ---------------------------------------------------------------- */

/* The nonempty bins of a column as they lie against intervals w: fully
 * inside, outside, or partly in (their rows are then checked one by one).
 * With lists false only the row counts are filled. */
typedef struct split {
    const bitmap **in, **out, **part;
    size_t n_in, n_out, n_part;
    uint64_t c_in, c_out, c_part;
} split;

static bool split_bins(const column *c, const interval *w, size_t nw, bool lists, split *s)
{
    memset(s, 0, sizeof *s);
    size_t n = c->bin_first <= c->bin_last ? c->bin_last - c->bin_first + 1 : 0;
    if (lists) {
        s->in = malloc(3 * (n ? n : 1) * sizeof *s->in);
        if (s->in == NULL)
            return false;
        s->out = s->in + n;
        s->part = s->out + n;
    }
    size_t j = 0;
    for (size_t k = c->bin_first; k <= c->bin_last && k < c->n_bins; k++) {
        const bitmap *b = c->bins[k];
        uint64_t cb = c->bin_rows[k];
        if (cb == 0)
            continue;
        uint64_t lo, hi;
        bin_bounds(c, k, &lo, &hi);
        while (j < nw && w[j].hi < lo)
            j++;
        if (j == nw || w[j].lo > hi) {
            s->c_out += cb;
            if (lists)
                s->out[s->n_out++] = b;
        } else if (w[j].lo <= lo && w[j].hi >= hi) {
            s->c_in += cb;
            if (lists)
                s->in[s->n_in++] = b;
        } else {
            s->c_part += cb;
            if (lists)
                s->part[s->n_part++] = b;
        }
    }
    return true;
}

static bool in_intervals(const interval *w, size_t n, uint64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (w[mid].hi < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && w[lo].lo <= x;
}

/* --- matching: estimates ------------------------------------------------------------------ */

static double leaf_est(const plan *p, const pnode *n, int want)
{
    const column *c = n->c;
    switch (n->lk) {
    case LK_VALUES: {
        if (c->type == FXB_ATTR_BOOL) {
            double k = (double)card(c->known), t = (double)card(c->truth);
            return (side(n, 1, want) ? t : 0) + (side(n, 0, want) ? k - t : 0);
        }
        double e = 0;
        for (size_t v = 0; v < c->n_values; v++)
            if (side(n, v, want))
                e += (double)card(c->values[v]);
        return e;
    }
    case LK_MEMBER: {
        double m = n->member != NULL ? (double)card(n->member) : 0;
        return want ? m : (double)card(c->known) - m;
    }
    case LK_RANGE: {
        split s;
        split_bins(c, n->iv[want], n->n_iv[want], false, &s);
        return (double)s.c_in + (double)s.c_part / 2;
    }
    default:
        return 0;
    }
}

/* Rows where n is `want`, estimated from the bitmaps' sizes (operands of
 * AND / OR taken as independent). */
static double est(const plan *p, pnode *n, int want)
{
    if (n->est[want] >= 0)
        return n->est[want];
    double rows = p->ix->n_rows, e;
    switch (n->kind) {
    case FXB_RN_NOT:
        e = est(p, n->a, !want);
        break;
    case FXB_RN_AND:
    case FXB_RN_OR: {
        double x = est(p, n->a, want), y = est(p, n->b, want);
        if ((n->kind == FXB_RN_AND) == (want == 1))
            e = rows > 0 ? x * y / rows : 0;
        else
            e = x + y < rows ? x + y : rows;
        break;
    }
    default:
        e = leaf_est(p, n, want);
        break;
    }
    n->est[want] = e;
    return e;
}

/* --- matching: row by row ------------------------------------------------------------------- */

static fxb_truth leaf_truth(const fxb_index *ix, const pnode *n, uint32_t row)
{
    const column *c = n->c;
    switch (n->lk) {
    case LK_VALUES: {
        if (!c->dense) {
            uint64_t v = cell_load(cell_of(ix, c, row), c->width);
            if (v == 0)
                return FXB_TRUTH_UNKNOWN;
            return side(n, v - 1, 1) ? FXB_TRUE : FXB_FALSE;
        }
        const uint64_t *d = dense_of(ix, c, 0, row);
        uint32_t r = row % CHUNK_ROWS;
        size_t wi = r >> 6;
        unsigned bit = r & 63;
        if (c->type == FXB_ATTR_BOOL) {
            if (!((d[wi] >> bit) & 1))
                return FXB_TRUTH_UNKNOWN;
            size_t v = (d[CHUNK_WORDS + wi] >> bit) & 1;
            return side(n, v, 1) ? FXB_TRUE : FXB_FALSE;
        }
        uint64_t any = 0;
        for (size_t i = 0; i < n->n_probe; i++)
            any |= d[(size_t)n->probe[i] * CHUNK_WORDS + wi];
        if ((any >> bit) & 1)
            return n->probe_true ? FXB_TRUE : FXB_FALSE;
        if (!((d[c->n_values * CHUNK_WORDS + wi] >> bit) & 1))
            return FXB_TRUTH_UNKNOWN;
        return n->probe_true ? FXB_FALSE : FXB_TRUE;
    }
    case LK_RANGE: {
        uint64_t off;
        if (!cell_get(ix, c, row, &off))
            return FXB_TRUTH_UNKNOWN;
        return in_intervals(n->iv[1], n->n_iv[1], off) ? FXB_TRUE : FXB_FALSE;
    }
    case LK_MEMBER:
        if (!roaring_bitmap_contains(c->known, row))
            return FXB_TRUTH_UNKNOWN;
        return n->member != NULL && roaring_bitmap_contains(n->member, row) ? FXB_TRUE : FXB_FALSE;
    default:
        return FXB_TRUTH_UNKNOWN;
    }
}

/* A subtree on one row, with Kleene's logic as fxb_rule_eval. */
static fxb_truth row_truth(const fxb_index *ix, const pnode *n, uint32_t row)
{
    switch (n->kind) {
    case FXB_RN_AND: {
        fxb_truth a = row_truth(ix, n->a, row);
        if (a == FXB_FALSE)
            return FXB_FALSE;
        fxb_truth b = row_truth(ix, n->b, row);
        if (b == FXB_FALSE)
            return FXB_FALSE;
        return a == FXB_TRUE && b == FXB_TRUE ? FXB_TRUE : FXB_TRUTH_UNKNOWN;
    }
    case FXB_RN_OR: {
        fxb_truth a = row_truth(ix, n->a, row);
        if (a == FXB_TRUE)
            return FXB_TRUE;
        fxb_truth b = row_truth(ix, n->b, row);
        if (b == FXB_TRUE)
            return FXB_TRUE;
        return a == FXB_FALSE && b == FXB_FALSE ? FXB_FALSE : FXB_TRUTH_UNKNOWN;
    }
    case FXB_RN_NOT: {
        fxb_truth a = row_truth(ix, n->a, row);
        return a == FXB_TRUTH_UNKNOWN ? a : a == FXB_TRUE ? FXB_FALSE : FXB_TRUE;
    }
    default:
        return leaf_truth(ix, n, row);
    }
}

/* A leaf under NOTs, with the need flipped as many times. */
static const pnode *strip(const pnode *n, int *want)
{
    while (n->kind == FXB_RN_NOT) {
        n = n->a;
        *want = !*want;
    }
    return n;
}

/* Keeps the rows of rows[0..m) where n is `want`; returns how many. The
 * cells and bits of the rows PREFETCH ahead are fetched meanwhile: the
 * rows are scattered, so each is a cache miss otherwise. */
static size_t keep_rows(const fxb_index *ix, const pnode *n, int want, uint32_t *rows, size_t m)
{
    int w = want;
    const pnode *x = strip(n, &w);
    const column *c = x->c;
    size_t k = 0;
    bool leaf = x->kind != FXB_RN_AND && x->kind != FXB_RN_OR;
    /* The common leaves inline, rows kept without a branch (whether a
     * row passes is as good as random). */
    if (leaf && x->lk == LK_RANGE && !c->wide) {
        const interval *iv = x->iv[w];
        size_t niv = x->n_iv[w];
        if (niv == 0)
            return 0;
        uint64_t lo = iv[0].lo, len = iv[0].hi - iv[0].lo;
        for (size_t i = 0; i < m && i < PREFETCH; i++)
            __builtin_prefetch(cell_of(ix, c, rows[i]));
        for (size_t i = 0; i < m; i++) {
            if (i + PREFETCH < m)
                __builtin_prefetch(cell_of(ix, c, rows[i + PREFETCH]));
            uint64_t v = cell_load(cell_of(ix, c, rows[i]), c->width); /* offset + 1, 0: unknown */
            bool keep =
                niv == 1 ? v - 1 - lo <= len && v != 0 : v != 0 && in_intervals(iv, niv, v - 1);
            rows[k] = rows[i];
            k += keep;
        }
        return k;
    }
    if (leaf && x->lk == LK_VALUES && !c->dense) {
        for (size_t i = 0; i < m && i < PREFETCH; i++)
            __builtin_prefetch(cell_of(ix, c, rows[i]));
        for (size_t i = 0; i < m; i++) {
            if (i + PREFETCH < m)
                __builtin_prefetch(cell_of(ix, c, rows[i + PREFETCH]));
            uint64_t v = cell_load(cell_of(ix, c, rows[i]), c->width); /* value + 1, 0: unknown */
            rows[k] = rows[i];
            k += v != 0 && side(x, v - 1, w);
        }
        return k;
    }
    if (leaf && x->lk == LK_VALUES) {
        bool is_bool = c->type == FXB_ATTR_BOOL;
        size_t kb = is_bool ? 0 : c->n_values; /* the known bitset */
        bool any_wins = x->probe_true == (w == 1), s1 = side(x, 1, w), s0 = side(x, 0, w);
        /* the bitsets read for every row: fetched ahead */
        size_t pb = is_bool || !any_wins || x->n_probe == 0 ? kb : x->probe[0];
        size_t pb2 = is_bool ? 1 : any_wins && x->n_probe > 1 ? x->probe[1] : pb;
        for (size_t i = 0; i < m && i < PREFETCH; i++) {
            __builtin_prefetch(dense_of(ix, c, pb, rows[i]) + (rows[i] % CHUNK_ROWS) / 64);
            __builtin_prefetch(dense_of(ix, c, pb2, rows[i]) + (rows[i] % CHUNK_ROWS) / 64);
        }
        for (size_t i = 0; i < m; i++) {
            uint32_t row = rows[i];
            if (i + PREFETCH < m) {
                uint32_t r = rows[i + PREFETCH];
                __builtin_prefetch(dense_of(ix, c, pb, r) + (r % CHUNK_ROWS) / 64);
                __builtin_prefetch(dense_of(ix, c, pb2, r) + (r % CHUNK_ROWS) / 64);
            }
            const uint64_t *d = dense_of(ix, c, 0, row);
            size_t wi = (row % CHUNK_ROWS) / 64;
            unsigned bit = row % 64;
            bool keep;
            if (is_bool) {
                bool known = (d[wi] >> bit) & 1, t = (d[CHUNK_WORDS + wi] >> bit) & 1;
                keep = known && (t ? s1 : s0);
            } else {
                uint64_t any = 0;
                for (size_t j = 0; j < x->n_probe; j++)
                    any |= d[(size_t)x->probe[j] * CHUNK_WORDS + wi];
                bool hit = (any >> bit) & 1;
                keep = any_wins ? hit : !hit && ((d[kb * CHUNK_WORDS + wi] >> bit) & 1);
            }
            rows[k] = row;
            k += keep;
        }
        return k;
    }
    for (size_t i = 0; i < m; i++)
        if ((int)row_truth(ix, x, rows[i]) == w)
            rows[k++] = rows[i];
    return k;
}

/* What checking n costs per row, roughly in bytes read: an offset cell,
 * the probed bits, a bitmap lookup (sets). */
static double row_cost(const pnode *n)
{
    switch (n->kind) {
    case FXB_RN_AND:
    case FXB_RN_OR:
        return row_cost(n->a) + row_cost(n->b);
    case FXB_RN_NOT:
        return row_cost(n->a);
    default:
        break;
    }
    switch (n->lk) {
    case LK_RANGE:
        return n->c->wide ? 16 : n->c->width;
    case LK_VALUES:
        return n->c->dense ? 0.25 * (double)(n->n_probe + 1) : n->c->width;
    case LK_MEMBER:
        return 16;
    default:
        return 0.1;
    }
}

/* Orders operands to be checked row by row: the cheapest per row they
 * remove first (cost / share of rows removed). */
static void order_for_rows(const plan *p, pnode **ops, size_t k, int want)
{
    double rows = p->ix->n_rows > 0 ? p->ix->n_rows : 1, rank[FXB_RULE_CONDITIONS_MAX];
    for (size_t i = 0; i < k; i++) {
        double removed = 1 - est(p, ops[i], want) / rows;
        rank[i] = row_cost(ops[i]) / (removed > 0.001 ? removed : 0.001);
    }
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && rank[j - 1] > rank[j]; j--) {
            double t = rank[j];
            rank[j] = rank[j - 1];
            rank[j - 1] = t;
            pnode *q = ops[j];
            ops[j] = ops[j - 1];
            ops[j - 1] = q;
        }
}

/* Adds to *r (made ours when something is added) the rows of src where
 * every one of ops is `want` (check: and where x is w). */
static bool add_rows(const fxb_index *ix, const bitmap *src, const pnode *x, int w,
                     pnode *const *ops, size_t k, int want, ref *r)
{
    roaring_uint32_iterator_t it;
    roaring_init_iterator(src, &it);
    uint32_t rows[BATCH];
    for (;;) {
        uint32_t got = roaring_read_uint32_iterator(&it, rows, BATCH);
        if (got == 0)
            return true;
        size_t m = x != NULL ? keep_rows(ix, x, w, rows, got) : got;
        for (size_t j = 0; j < k && m > 0; j++)
            m = keep_rows(ix, ops[j], want, rows, m);
        if (m == 0)
            continue;
        if (!r->own) {
            bitmap *b = roaring_bitmap_copy(r->b);
            if (b == NULL)
                return false;
            *r = (ref){b, true};
        }
        roaring_bitmap_add_many(r->b, m, rows);
    }
}

/* The rows of mask where every one of ops is `want`, checked row by row
 * (one operand at a time over a batch of rows). */
static bool rows_filter(const plan *p, const bitmap *mask, pnode *const *ops, size_t k, int want,
                        ref *out)
{
    *out = (ref){roaring_bitmap_create(), true};
    if (out->b == NULL)
        return false;
    if (!add_rows(p->ix, mask, NULL, 0, ops, k, want, out)) {
        drop(out);
        return false;
    }
    return true;
}

/* --- matching: plain bitsets ------------------------------------------------------------------ */

typedef struct dterm {
    const pnode *n; /* an LK_VALUES leaf */
    int want;
} dterm;

/* The words of term t's rows in block blk: a bitset of the block itself
 * when the term is one (a value, `truth`, known), else computed into u;
 * NULL when the term holds no row. */
static const uint64_t *term_words(const fxb_index *ix, const dterm *t, size_t blk, uint64_t *u)
{
    const pnode *n = t->n;
    const column *c = n->c;
    const uint64_t *d = (const uint64_t *)(const void *)(ix->blocks[blk] + c->off);
    const uint64_t *known, *sel = NULL;
    bool minus; /* the rows are known AND NOT sel (sel NULL: known); otherwise sel */
    if (c->type == FXB_ATTR_BOOL) {
        bool s1 = side(n, 1, t->want), s0 = side(n, 0, t->want);
        known = d;
        minus = s0;
        sel = s1 != s0 ? d + CHUNK_WORDS : NULL;
    } else {
        known = d + c->n_values * CHUNK_WORDS;
        minus = n->probe_true != (t->want == 1);
        if (n->n_probe == 1) {
            sel = d + (size_t)n->probe[0] * CHUNK_WORDS;
        } else if (n->n_probe > 1) {
            const uint64_t *a = d + (size_t)n->probe[0] * CHUNK_WORDS;
            const uint64_t *b = d + (size_t)n->probe[1] * CHUNK_WORDS;
            for (size_t i = 0; i < CHUNK_WORDS; i++)
                u[i] = a[i] | b[i];
            for (size_t j = 2; j < n->n_probe; j++) {
                a = d + (size_t)n->probe[j] * CHUNK_WORDS;
                for (size_t i = 0; i < CHUNK_WORDS; i++)
                    u[i] |= a[i];
            }
            sel = u;
        }
    }
    if (!minus)
        return sel;
    if (sel == NULL)
        return known;
    for (size_t i = 0; i < CHUNK_WORDS; i++)
        u[i] = known[i] & ~sel[i];
    return u;
}

/* The rows where every term holds, from the blocks' plain bitsets, among
 * them those where every one of ops is `want` (checked row by row). */
static bool dense_and(const plan *p, const dterm *t, size_t nt, pnode *const *ops, size_t k,
                      int want, ref *out)
{
    const fxb_index *ix = p->ix;
    bitmap *r = roaring_bitmap_create();
    if (r == NULL)
        return false;
    uint64_t s[CHUNK_WORDS], u[CHUNK_WORDS];
    uint32_t rows[BATCH + 64];
    size_t m = 0;
    for (size_t b = 0; b < ix->n_chunks; b++) {
        /* The terms ANDed in one pass where they are the block's own
         * bitsets; the last pass also lists the nonzero words, without a
         * branch (which word is nonzero is random: a branch would
         * mispredict). */
        const uint64_t *cur = NULL; /* NULL: every row */
        const uint64_t *last = NULL;
        bool none = false;
        for (size_t j = 0; j < nt && !none; j++) {
            const uint64_t *f = term_words(ix, &t[j], b, u);
            if (f == NULL) {
                none = true;
            } else if (j + 1 == nt) {
                last = f;
            } else if (cur == NULL && f != u) {
                cur = f;
            } else {
                uint64_t acc = 0;
                for (size_t i = 0; i < CHUNK_WORDS; i++) {
                    s[i] = (cur != NULL ? cur[i] : ~(uint64_t)0) & f[i];
                    acc |= s[i];
                }
                cur = s;
                none = acc == 0;
            }
        }
        if (none)
            continue;
        uint16_t nz[CHUNK_WORDS];
        size_t n_nz = 0;
        if (cur != NULL) {
            for (size_t i = 0; i < CHUNK_WORDS; i++) {
                uint64_t w = cur[i] & last[i];
                s[i] = w;
                nz[n_nz] = (uint16_t)i;
                n_nz += w != 0;
            }
        } else {
            for (size_t i = 0; i < CHUNK_WORDS; i++) {
                s[i] = last[i];
                nz[n_nz] = (uint16_t)i;
                n_nz += last[i] != 0;
            }
        }
        uint32_t base = (uint32_t)(b * CHUNK_ROWS);
        for (size_t z = 0; z < n_nz; z++) {
            size_t wi = nz[z];
            uint64_t w = s[wi];
            uint32_t at = base + (uint32_t)(wi * 64);
            do { /* most words hold one row: the loop's exit is predicted */
                rows[m++] = at + (uint32_t)__builtin_ctzll(w);
                w &= w - 1;
            } while (w != 0);
            if (m >= BATCH) {
                for (size_t j = 0; j < k && m > 0; j++)
                    m = keep_rows(ix, ops[j], want, rows, m);
                roaring_bitmap_add_many(r, m, rows);
                m = 0;
            }
        }
    }
    for (size_t j = 0; j < k && m > 0; j++)
        m = keep_rows(ix, ops[j], want, rows, m);
    if (m > 0)
        roaring_bitmap_add_many(r, m, rows);
    *out = (ref){r, true};
    return true;
}

/* --- matching: leaves over bitmaps --------------------------------------------------------------
 */

static bool values_set(const plan *p, const pnode *n, const bitmap *mask, int want, ref *out)
{
    const column *c = n->c;
    if (c->type == FXB_ATTR_BOOL) {
        bool s1 = side(n, 1, want), s0 = side(n, 0, want);
        if (s1 && s0)
            return within(c->known, mask, out);
        if (s1)
            return within(c->truth, mask, out);
        if (!s0) {
            *out = borrow(p->ix->empty);
            return true;
        }
        return within(c->known, mask, out) && op_andnot(out, c->truth);
    }
    if (n->probe_true != (want == 1)) { /* known minus the other side */
        if (!within(c->known, mask, out))
            return false;
        for (size_t i = 0; i < n->n_probe; i++)
            if (!op_andnot(out, c->values[n->probe[i]])) {
                drop(out);
                return false;
            }
        return true;
    }
    if (mask != NULL && n->n_probe <= 4) { /* cut each value by the mask first */
        *out = borrow(p->ix->empty);
        for (size_t i = 0; i < n->n_probe; i++) {
            ref t;
            if (!within(c->values[n->probe[i]], mask, &t) || !join(out, &t)) {
                drop(out);
                return false;
            }
        }
        return true;
    }
    const bitmap *parts[FXB_ENUM_VALUES_MAX];
    for (size_t i = 0; i < n->n_probe; i++)
        parts[i] = c->values[n->probe[i]];
    if (!union_of(p->ix, parts, n->n_probe, out))
        return false;
    if (mask != NULL && !op_and(out, mask)) {
        drop(out);
        return false;
    }
    return true;
}

/* An int / date / age range over the bins: the bins inside (or known
 * minus the bins outside and across, whichever side holds fewer rows),
 * then the rows of the bins across the range's ends one by one. */
static bool range_set(const plan *p, const pnode *n, const bitmap *mask, int want, ref *out)
{
    const column *c = n->c;
    const interval *w = n->iv[want];
    size_t nw = n->n_iv[want];
    *out = borrow(p->ix->empty);
    if (nw == 0)
        return true;
    if (nw == 1 && w[0].lo == 0 && w[0].hi >= c->span)
        return within(c->known, mask, out);
    split s;
    if (!split_bins(c, w, nw, true, &s))
        return false;
    bool ok;
    if (s.c_in <= s.c_out + s.c_part) {
        ok = union_of(p->ix, s.in, s.n_in, out) && (mask == NULL || op_and(out, mask));
    } else {
        ref x;
        ok = within(c->known, mask, out) && union_of(p->ix, s.out, s.n_out, &x);
        if (ok && s.n_out > 0) {
            ok = op_andnot(out, x.b);
            drop(&x);
        }
        for (size_t i = 0; ok && i < s.n_part; i++)
            ok = op_andnot(out, s.part[i]);
    }
    for (size_t i = 0; ok && i < s.n_part; i++) {
        ref src;
        ok = within(s.part[i], mask, &src) && add_rows(p->ix, src.b, n, want, NULL, 0, 1, out);
        drop(&src);
    }
    free(s.in);
    if (!ok)
        drop(out);
    return ok;
}

/* The rows within mask (NULL: all) where leaf n is `want`. */
static bool leaf_set(const plan *p, const pnode *n, const bitmap *mask, int want, ref *out)
{
    const column *c = n->c;
    switch (n->lk) {
    case LK_VALUES:
        return values_set(p, n, mask, want, out);
    case LK_RANGE:
        return range_set(p, n, mask, want, out);
    case LK_MEMBER:
        if (want) {
            *out = borrow(p->ix->empty);
            return n->member == NULL || within(n->member, mask, out);
        }
        if (!within(c->known, mask, out))
            return false;
        if (n->member != NULL && !op_andnot(out, n->member)) {
            drop(out);
            return false;
        }
        return true;
    default:
        *out = borrow(p->ix->empty);
        return true;
    }
}

/* --- matching: the tree ----------------------------------------------------------------------- */

static bool eval(plan *p, pnode *n, const bitmap *mask, int want, ref *out);

/* The operands of a run of AND (or OR) nodes. */
static size_t flatten(pnode *n, fxb_rule_node_kind kind, pnode **ops, size_t k)
{
    if (n->kind == kind && k + 2 <= FXB_RULE_CONDITIONS_MAX) {
        k = flatten(n->a, kind, ops, k);
        return flatten(n->b, kind, ops, k);
    }
    ops[k++] = n;
    return k;
}

/* A chain whose operand with the fewest rows, x (`w`), is a union of
 * disjoint bitmaps (bins inside a range, enum values, a member, `truth`):
 * their rows are read directly and the other operands checked on them row
 * by row, instead of building the union. *done false: x is not such a
 * union. */
static bool stream(const plan *p, const pnode *x, int w, pnode **ops, size_t k, int want, ref *out,
                   bool *done)
{
    const column *c = x->c;
    const bitmap *parts[FXB_ENUM_VALUES_MAX];
    const bitmap **src = parts;
    size_t n_src = 0;
    split s = {0};
    *done = false;
    switch (x->lk) {
    case LK_VALUES:
        if (c->type == FXB_ATTR_BOOL) {
            if (!side(x, 1, w) || side(x, 0, w))
                return true;
            parts[n_src++] = c->truth;
        } else {
            if (x->probe_true != (w == 1))
                return true;
            for (size_t i = 0; i < x->n_probe; i++)
                parts[n_src++] = c->values[x->probe[i]];
        }
        break;
    case LK_MEMBER:
        if (!w)
            return true;
        if (x->member != NULL)
            parts[n_src++] = x->member;
        break;
    case LK_RANGE:
        if (!split_bins(c, x->iv[w], x->n_iv[w], true, &s))
            return false;
        if (s.c_in > s.c_out + s.c_part) {
            free(s.in);
            return true;
        }
        src = s.in;
        n_src = s.n_in;
        break;
    default:
        return true;
    }
    *done = true;
    order_for_rows(p, ops, k, want);
    *out = (ref){roaring_bitmap_create(), true};
    bool ok = out->b != NULL;
    for (size_t i = 0; ok && i < n_src; i++)
        ok = add_rows(p->ix, src[i], NULL, 0, ops, k, want, out);
    for (size_t i = 0; ok && i < s.n_part; i++)
        ok = add_rows(p->ix, s.part[i], x, w, ops, k, want, out);
    free(s.in);
    if (!ok)
        drop(out);
    return ok;
}

/* Appends the intersection of two interval lists. */
static void iv_intersect(plan *p, const interval *a, size_t na, const interval *b, size_t nb)
{
    size_t start = p->n_ivs;
    for (size_t i = 0, j = 0; i < na && j < nb;) {
        uint64_t lo = a[i].lo > b[j].lo ? a[i].lo : b[j].lo;
        uint64_t hi = a[i].hi < b[j].hi ? a[i].hi : b[j].hi;
        if (lo <= hi)
            iv_add(p, start, lo, hi);
        if (a[i].hi < b[j].hi)
            i++;
        else
            j++;
    }
}

/* Range operands of a chain on one column become one: `age >= 25 && age
 * <= 45` is one birth-date range (one pass over its bins or cells). */
static size_t merge_ranges(plan *p, pnode **ops, size_t k, int want)
{
    for (size_t i = 0; i < k; i++) {
        int wi = want;
        const pnode *x = strip(ops[i], &wi);
        if (x->kind == FXB_RN_AND || x->kind == FXB_RN_OR || x->lk != LK_RANGE)
            continue;
        for (size_t j = i + 1; j < k;) {
            int wj = want;
            const pnode *y = strip(ops[j], &wj);
            size_t na = x->n_iv[wi], nb = y->n_iv[wj];
            if (y->kind == FXB_RN_AND || y->kind == FXB_RN_OR || y->lk != LK_RANGE ||
                y->c != x->c || p->n_nodes == p->cap_nodes ||
                p->n_ivs + 2 * (na + nb) + 1 > p->cap_ivs) {
                j++;
                continue;
            }
            pnode *mg = &p->nodes[p->n_nodes++];
            memset(mg, 0, sizeof *mg);
            mg->kind = FXB_RN_CMP;
            mg->lk = LK_RANGE;
            mg->c = x->c;
            mg->est[0] = mg->est[1] = -1;
            size_t start = p->n_ivs;
            iv_intersect(p, x->iv[wi], na, y->iv[wj], nb);
            mg->iv[want] = p->ivs + start;
            mg->n_iv[want] = p->n_ivs - start;
            start = p->n_ivs;
            iv_complement(p, mg->iv[want], mg->n_iv[want], x->c->span);
            mg->iv[!want] = p->ivs + start;
            mg->n_iv[!want] = p->n_ivs - start;
            ops[i] = mg;
            x = mg;
            wi = want;
            ops[j] = ops[--k];
        }
    }
    return k;
}

/* Every operand must be `want`: the fewest rows first, each within what
 * the previous left; row by row once that is small. */
static bool chain(plan *p, pnode **ops, size_t k, const bitmap *mask, int want, ref *out)
{
    const fxb_index *ix = p->ix;
    k = merge_ranges(p, ops, k, want);
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && est(p, ops[j - 1], want) > est(p, ops[j], want); j--) {
            pnode *t = ops[j];
            ops[j] = ops[j - 1];
            ops[j - 1] = t;
        }
    bool used[FXB_RULE_CONDITIONS_MAX] = {false};
    ref r = borrow(mask);
    if (mask == NULL && p->dense != 0 && ix->n_rows > 0) {
        /* Enum / bool operands that together keep few rows: their AND over
         * the plain bitsets first. */
        dterm d[FXB_RULE_CONDITIONS_MAX];
        size_t nd = 0;
        double rows = ix->n_rows, frac = 1;
        for (size_t i = 0; i < k; i++) {
            int w = want;
            const pnode *x = strip(ops[i], &w);
            double e = est(p, ops[i], want);
            if (x->lk != LK_VALUES || !x->c->dense || (p->dense < 0 && e > DENSE_FRAC_MAX * rows))
                continue;
            d[nd++] = (dterm){x, w};
            frac *= e / rows;
        }
        if (p->dense > 0 ? nd > 0 : (nd >= 2 && frac * rows * 2 < est(p, ops[0], want))) {
            for (size_t i = 0, j = 0; i < k && j < nd; i++) {
                int w = want;
                if (strip(ops[i], &w) == d[j].n && w == d[j].want) {
                    used[i] = true;
                    j++;
                }
            }
            /* few rows expected: the other operands row by row on the way */
            pnode *rest[FXB_RULE_CONDITIONS_MAX] = {NULL};
            size_t n_rest = 0;
            bool fuse = frac * rows <= (double)p->small;
            for (size_t i = 0; fuse && i < k; i++)
                if (!used[i])
                    rest[n_rest++] = ops[i];
            order_for_rows(p, rest, n_rest, want);
            if (!dense_and(p, d, nd, rest, n_rest, want, &r))
                return false;
            if (fuse) {
                *out = r;
                return true;
            }
        }
    }
    if (r.b == NULL && est(p, ops[0], want) <= (double)p->stream) {
        int w = want;
        const pnode *x = strip(ops[0], &w);
        bool done;
        if (!stream(p, x, w, ops + 1, k - 1, want, out, &done))
            return false;
        if (done)
            return true;
    }
    for (size_t i = 0; i < k; i++) {
        if (used[i])
            continue;
        ref t;
        if (r.b == NULL) {
            if (!eval(p, ops[i], NULL, want, &r))
                return false;
        } else if (card(r.b) <= p->small) {
            pnode *rest[FXB_RULE_CONDITIONS_MAX];
            size_t n_rest = 0;
            for (size_t j = i; j < k; j++)
                if (!used[j])
                    rest[n_rest++] = ops[j];
            order_for_rows(p, rest, n_rest, want);
            bool ok = rows_filter(p, r.b, rest, n_rest, want, &t);
            drop(&r);
            if (!ok)
                return false;
            r = t;
            break;
        } else {
            bool ok = eval(p, ops[i], r.b, want, &t);
            drop(&r);
            if (!ok)
                return false;
            r = t;
        }
        if (empty(&r))
            break;
    }
    *out = r;
    return true;
}

/* Some operand is `want`: the union. */
static bool any_of(plan *p, pnode **ops, size_t k, const bitmap *mask, int want, ref *out)
{
    *out = borrow(p->ix->empty);
    for (size_t i = 0; i < k; i++) {
        ref t;
        if (!eval(p, ops[i], mask, want, &t) || !join(out, &t)) {
            drop(out);
            return false;
        }
    }
    return true;
}

/* The rows within mask (NULL: all rows) where n is `want` (1 TRUE, 0
 * FALSE). *out may borrow the index's bitmaps or the mask. */
static bool eval(plan *p, pnode *n, const bitmap *mask, int want, ref *out)
{
    if (mask != NULL && card(mask) <= p->small)
        return rows_filter(p, mask, &n, 1, want, out);
    switch (n->kind) {
    case FXB_RN_NOT:
        return eval(p, n->a, mask, !want, out);
    case FXB_RN_AND:
    case FXB_RN_OR: {
        pnode *ops[FXB_RULE_CONDITIONS_MAX];
        size_t k = flatten(n, n->kind, ops, 0);
        if ((n->kind == FXB_RN_AND) == (want == 1))
            return chain(p, ops, k, mask, want, out);
        return any_of(p, ops, k, mask, want, out);
    }
    default:
        return leaf_set(p, n, mask, want, out);
    }
}

void fxb_index_tune(fxb_index *ix, int64_t rows_max, int64_t stream_max, int dense)
{
    if (ix == NULL)
        return;
    ix->tune_rows = rows_max;
    ix->tune_stream = stream_max;
    ix->tune_dense = dense;
}

void *fxb_index_match(const fxb_index *ix, const fxb_rule *rule, uint32_t today)
{
    if (ix == NULL || rule == NULL || fxb_rule_root(rule) == NULL)
        return NULL;
    plan p;
    if (!plan_init(&p, ix, fxb_rule_root(rule), today))
        return NULL;
    ref r;
    bool ok = eval(&p, p.root, NULL, 1, &r);
    plan_free(&p);
    if (!ok)
        return NULL;
    if (r.own)
        return r.b;
    return roaring_bitmap_copy(r.b);
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

/* The two lines a subject slot may span. A macro: GCC takes a function of
 * nothing but prefetches for pure and drops its calls. */
#define SUBJECT_PREFETCH(ix, row)                                                                  \
    do {                                                                                           \
        if ((row) < (ix)->n_rows) {                                                                \
            const char *s_ = slot((ix), (row));                                                    \
            __builtin_prefetch(s_);                                                                \
            __builtin_prefetch(s_ + SUBJECT_SLOT - 1);                                             \
        }                                                                                          \
    } while (0)

size_t fxb_index_rows_subjects(const fxb_index *ix, const void *rows, char *buf, size_t cap)
{
    if (ix == NULL || rows == NULL || buf == NULL)
        return 0;
    roaring_uint32_iterator_t it;
    roaring_init_iterator(rows, &it);
    uint32_t batch[BATCH];
    size_t o = 0;
    for (;;) {
        uint32_t got = roaring_read_uint32_iterator(&it, batch, BATCH);
        if (got == 0)
            break;
        /* the slots are scattered: fetch SUBJECT_AHEAD rows ahead (both
         * lines a slot may span) */
        for (uint32_t k = 0; k < got && k < SUBJECT_AHEAD; k++)
            SUBJECT_PREFETCH(ix, batch[k]);
        for (uint32_t k = 0; k < got; k++) {
            if (k + SUBJECT_AHEAD < got)
                SUBJECT_PREFETCH(ix, batch[k + SUBJECT_AHEAD]);
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
