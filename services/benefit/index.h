/* The matching index (issue 7): every profile of one subject type held in
 * process memory as compressed bitmaps (CRoaring, Debian's libroaring), so a
 * policy rule is matched against millions of subjects with a few dozen
 * bitmap operations instead of scanning hashes in Redis.
 *
 * Subjects get dense row numbers (0, 1, 2, ... in the order the index first
 * sees them; a subject keeps its row for the life of the index). Per
 * attribute of the schema (services/benefit/schema.h):
 *   bool         bitmaps of the rows where it is true / known
 *   enum         one bitmap per value, and known
 *   set          one bitmap per member seen (known: rows where the set is given)
 *   int, date    bitmaps of value bins (each value, each calendar year, or
 *                each power of two of the value minus the minimum), and known
 * plus, per row, the bool and enum values as plain bitsets (enums of many
 * values: a cell) and the int / date values as cells, read when few rows
 * are left to check (index.c tells how a rule is planned). A rule
 * (services/benefit/rule.h) is evaluated over the tree with three-valued
 * logic, exactly as fxb_rule_eval answers per subject — the tests check
 * that on every row. Age conditions become birth-date ranges at `today`
 * (fxb_rule_age_range).
 *
 * Thread safety: one writer (fxb_index_set / remove) at a time, any number
 * of readers between writes — the caller holds a rwlock (fxb_index does
 * not lock). Memory: reported by fxb_index_stats and fxb_index_row_bytes. */
#ifndef FXB_BENEFIT_INDEX_H
#define FXB_BENEFIT_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "services/benefit/rule.h"
#include "services/benefit/schema.h"

typedef struct fxb_index fxb_index;

/* An empty index for subjects of one type under schema (borrowed: it must
 * outlive the index). NULL on allocation failure. */
fxb_index *fxb_index_new(const fxb_schema *schema, fxb_subject_type type);
void fxb_index_free(fxb_index *ix);

/* One subject's values, keyed by the schema's attributes (the same view the
 * rule evaluator reads). */
typedef struct fxb_index_values {
    const fxb_attr *const *attrs;
    const fxb_profile_value *values;
    size_t n;
} fxb_index_values;

/* Sets (replaces) the subject's values; attributes not listed become
 * unknown. subject: up to 32 bytes (e.g. "p" + 24 hex). Returns the
 * subject's row, or -1 on allocation failure / a value out of its
 * attribute's range (the subject is then left as it was). */
int64_t fxb_index_set(fxb_index *ix, const char *subject, const fxb_index_values *v);

/* Compacts every bitmap (run containers where they are smaller, spare
 * capacity released): call after a bulk load of many fxb_index_set. Never
 * fails; the index is unchanged in meaning. */
void fxb_index_optimize(fxb_index *ix);

/* Forgets the subject's values (its row stays reserved, matching nothing). */
void fxb_index_remove(fxb_index *ix, const char *subject);

/* The subject of a row (NULL when none). */
const char *fxb_index_subject(const fxb_index *ix, uint32_t row);

/* Matches the rule on the China date today (yyyymmdd). *rows receives a new
 * roaring bitmap (as void *: roaring_bitmap_t *, free with
 * fxb_index_rows_free) of the rows where the rule is TRUE. NULL on
 * allocation failure. */
void *fxb_index_match(const fxb_index *ix, const fxb_rule *rule, uint32_t today);
uint64_t fxb_index_rows_count(const void *rows);
/* Calls fn for each row in ascending order until it returns false. */
void fxb_index_rows_each(const void *rows, bool (*fn)(uint32_t row, void *arg), void *arg);
void fxb_index_rows_free(void *rows);

/* The subjects of rows in ascending row order, each followed by '\n',
 * written to buf: the list a match produces, in one pass (rows read in
 * batches, the subject table prefetched). Returns the bytes written, or 0
 * when cap is too small (nothing usable then). */
size_t fxb_index_rows_subjects(const fxb_index *ix, const void *rows, char *buf, size_t cap);

typedef struct fxb_index_stats {
    uint64_t subjects;      /* rows in use */
    uint64_t bitmaps;       /* bitmaps held */
    uint64_t bytes;         /* serialized size of every bitmap (a good proxy of their memory) */
    uint64_t subject_bytes; /* the row -> subject table */
} fxb_index_stats;

void fxb_index_stats_get(const fxb_index *ix, fxb_index_stats *out);

/* Bytes of the per-row blocks beside the bitmaps (plain bitsets of enum and
 * bool values, int and date values), which matching reads row by row. */
uint64_t fxb_index_row_bytes(const fxb_index *ix);

/* How fxb_index_match goes about a rule, for tests that force every way
 * (the rows matched never depend on it): masks of at most rows_max rows are
 * checked row by row; a conjunction whose smallest operand has at most
 * stream_max rows reads that operand's bitmaps one by one instead of
 * building it; dense 1 ANDs enum / bool operands over the plain bitsets
 * whenever there are any, 0 never. Negative: the planner's own choice (the
 * default). Not thread-safe: call it when no match runs. */
void fxb_index_tune(fxb_index *ix, int64_t rows_max, int64_t stream_max, int dense);

#endif
