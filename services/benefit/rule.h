/* The eligibility rule language of benefit policies (issue 7): a small,
 * safe expression over the profile schema (services/benefit/schema.h), e.g.
 *
 *   age >= 80 && district in {"红旗区", "卫滨区"} && !receives_pension
 *
 * Grammar (whitespace and newlines between tokens are free):
 *   rule    := or
 *   or      := and ( "||" and )*
 *   and     := unary ( "&&" unary )*
 *   unary   := "!" unary | primary
 *   primary := "(" or ")" | condition
 *   condition := ATTR                       (a bool attribute is true)
 *              | ATTR op literal            op: == != < <= > >=
 *              | ATTR "in" "{" literal ( "," literal )* "}"
 *              | ATTR "contains" STRING     (set attributes)
 *   literal := INT | STRING | "true" | "false"
 * INT: optional "-" and 1..18 digits. STRING: "..." with \" and \\ only,
 * valid UTF-8, 1..32 characters. Dates are written as STRING "YYYY-MM-DD".
 * Types, checked against the schema: int and age take INT (<, <=, ... and
 * in); bool takes true / false with == and != (or stands alone); enum takes
 * STRING values of the schema with == != in; date takes date strings with
 * every comparison; set takes contains only. The rule is at most 2,000
 * bytes, 64 conditions and 32 levels deep. Nothing but the profile is
 * reachable: no functions, no other subjects, no store.
 *
 * Missing values follow SQL's three-valued logic: a condition on an
 * attribute the profile lacks is UNKNOWN; !UNKNOWN is UNKNOWN; && and ||
 * are Kleene's; a subject is eligible only when the rule is TRUE (so
 * `!receives_pension` does not grant to people whose pension status is
 * unknown). This is also what PostgreSQL's WHERE does with NULLs. */
#ifndef FXB_BENEFIT_RULE_H
#define FXB_BENEFIT_RULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "services/benefit/schema.h"

#define FXB_RULE_TEXT_MAX       2000
#define FXB_RULE_CONDITIONS_MAX 64
#define FXB_RULE_DEPTH_MAX      32
#define FXB_RULE_IN_MAX         64 /* literals in one `in` list */

/* Where and why a rule was refused: 1-based line and column (in
 * characters) of the offending token, the token itself (bounded, printable)
 * and an English message. */
typedef struct fxb_rule_error {
    uint32_t line, col;
    char token[64];
    char message[256];
} fxb_rule_error;

typedef enum fxb_rule_node_kind {
    FXB_RN_AND = 1,
    FXB_RN_OR,
    FXB_RN_NOT,
    FXB_RN_TRUTH,    /* a bool attribute standing alone */
    FXB_RN_CMP,      /* attr op value */
    FXB_RN_IN,       /* attr in {values} */
    FXB_RN_CONTAINS, /* set attr contains text */
} fxb_rule_node_kind;

typedef enum fxb_rule_op {
    FXB_OP_EQ = 1,
    FXB_OP_NE,
    FXB_OP_LT,
    FXB_OP_LE,
    FXB_OP_GT,
    FXB_OP_GE,
} fxb_rule_op;

/* A checked rule, as a tree. Values are in the attribute's stored form:
 * int and age as given, bool 0/1, enum as the value's index in the schema,
 * date as yyyymmdd. */
typedef struct fxb_rule_node {
    fxb_rule_node_kind kind;
    const struct fxb_rule_node *a, *b; /* AND / OR: both; NOT: a */
    const fxb_attr *attr;              /* conditions (points into the schema) */
    fxb_rule_op op;                    /* CMP */
    int64_t value;                     /* CMP */
    const int64_t *values;             /* IN, sorted, distinct */
    size_t n_values;
    const char *text;   /* CONTAINS */
    const char *source; /* the condition's source text, for explanations */
    uint32_t index;     /* conditions: 0..n-1 in source order */
} fxb_rule_node;

typedef struct fxb_rule fxb_rule;

/* Parses and type-checks text for subjects of one type. The rule keeps
 * pointers into schema, which must outlive it. INVALID_ARGUMENT
 * RULE_SYNTAX (with *where filled: line, column, token, message) or
 * RULE_TYPE (an unknown attribute, a literal of the wrong type, an enum
 * value outside the schema, an operator the type does not take, ...). */
fxb_code fxb_rule_compile(const fxb_schema *schema, fxb_subject_type subject, const char *text,
                          fxb_rule **out, fxb_rule_error *where, fxb_err *err);

void fxb_rule_free(fxb_rule *r);

const fxb_rule_node *fxb_rule_root(const fxb_rule *r);

/* Number of conditions (leaves). */
size_t fxb_rule_conditions(const fxb_rule *r);

/* One subject's values, as the evaluator asks for them. */
typedef struct fxb_profile_value {
    bool present;
    int64_t i;                  /* int, bool 0/1, enum index, date yyyymmdd */
    const char *const *members; /* set */
    size_t n_members;
} fxb_profile_value;

typedef struct fxb_profile_view {
    /* Fills *out with the subject's value of attr (never a derived one). */
    void (*get)(void *self, const fxb_attr *attr, fxb_profile_value *out);
    void *self;
} fxb_profile_view;

typedef enum fxb_truth {
    FXB_FALSE = 0,
    FXB_TRUE = 1,
    FXB_TRUTH_UNKNOWN = 2,
} fxb_truth;

/* Evaluates the rule for one subject on the China date `today` (yyyymmdd:
 * ages are whole years on that date). When held is not NULL it receives,
 * per condition index, the condition's own truth (for the explanation the
 * subject sees: which conditions held — its own data only). */
fxb_truth fxb_rule_eval(const fxb_rule *r, const fxb_profile_view *p, uint32_t today,
                        fxb_truth *held);

/* The birth dates (yyyymmdd, inclusive bounds; lo = 0 / hi = 99991231 for
 * open ends) for which `age op years` holds on `today`; false when no date
 * can (e.g. age < 0). For index-based evaluation of age conditions. EQ
 * gives one range; NE is the complement of EQ's range (the caller inverts). */
bool fxb_rule_age_range(fxb_rule_op op, int64_t years, uint32_t today, uint32_t *lo, uint32_t *hi);

/* Whole years between birth (yyyymmdd) and today; a 29 February birthday
 * counts on 1 March in common years (China civil practice). */
int64_t fxb_rule_age(uint32_t birth, uint32_t today);

#endif
