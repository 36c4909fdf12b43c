/* The matching index (services/benefit/index.h) as rules: a rule matched
 * over the index gives exactly the rows where fxb_rule_eval, reading the
 * same values, says TRUE — for random and hand-written rules, on several
 * dates (a 29 February among them), after inserts, updates and removals,
 * and whichever way the index evaluates it (every rule is matched again
 * with each way forced through fxb_index_tune: bitmaps only, row by row,
 * streamed, plain bitsets); ranges at the edges of the bins and ages
 * across birthdays; values out of range are refused and leave the subject
 * as it was; the boundaries of every type; and a micro-benchmark (printed,
 * not asserted).
 *
 * The schema is parsed from JSON: district (enum), birth_date (date, with
 * the derived age), receives_pension / veteran (bool), children (int
 * 0..20), balance (int -1000..1000), score (int, the whole 64-bit range),
 * registered_on (date), tags (set) for persons, and one enterprise
 * attribute the person index must ignore. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "services/benefit/index.h"

static const char schema_json[] =
    "{\"attributes\": ["
    "{\"name\": \"district\", \"subject\": \"person\", \"type\": \"enum\", \"values\": "
    "[\"红旗区\", \"卫滨区\", \"牧野区\", \"凤泉区\", \"获嘉县\"], \"source\": \"xx-police\"},"
    "{\"name\": \"birth_date\", \"subject\": \"person\", \"type\": \"date\", \"source\": "
    "\"xx-police\"},"
    "{\"name\": \"receives_pension\", \"subject\": \"person\", \"type\": \"bool\", \"source\": "
    "\"xx-hrss\"},"
    "{\"name\": \"veteran\", \"subject\": \"person\", \"type\": \"bool\", \"source\": "
    "\"xx-va\"},"
    "{\"name\": \"children\", \"subject\": \"person\", \"type\": \"int\", \"min\": 0, "
    "\"max\": 20, \"source\": \"xx-civil\"},"
    "{\"name\": \"balance\", \"subject\": \"person\", \"type\": \"int\", \"min\": -1000, "
    "\"max\": 1000, \"source\": \"xx-bank\"},"
    "{\"name\": \"score\", \"subject\": \"person\", \"type\": \"int\", \"min\": "
    "-9223372036854775808, \"max\": 9223372036854775807, \"source\": \"xx-credit\"},"
    "{\"name\": \"registered_on\", \"subject\": \"person\", \"type\": \"date\", \"source\": "
    "\"xx-civil\"},"
    "{\"name\": \"tags\", \"subject\": \"person\", \"type\": \"set\", \"source\": "
    "\"xx-civil\"},"
    "{\"name\": \"grade\", \"subject\": \"person\", \"type\": \"enum\", \"values\": ["
    "\"g00\", \"g01\", \"g02\", \"g03\", \"g04\", \"g05\", \"g06\", \"g07\", \"g08\", \"g09\", "
    "\"g10\", \"g11\", \"g12\", \"g13\", \"g14\", \"g15\", \"g16\", \"g17\", \"g18\", \"g19\", "
    "\"g20\", \"g21\", \"g22\", \"g23\", \"g24\", \"g25\", \"g26\", \"g27\", \"g28\", \"g29\", "
    "\"g30\", \"g31\", \"g32\", \"g33\", \"g34\", \"g35\", \"g36\", \"g37\", \"g38\", \"g39\""
    "], \"source\": \"xx-edu\"},"
    "{\"name\": \"employees\", \"subject\": \"enterprise\", \"type\": \"int\", \"min\": 0, "
    "\"max\": 100000, \"source\": \"xx-amr\"}"
    "]}";

enum {
    A_DISTRICT,
    A_BIRTH,
    A_PENSION,
    A_VETERAN,
    A_CHILDREN,
    A_BALANCE,
    A_SCORE,
    A_REG,
    A_TAGS,
    A_GRADE, /* an enum of more values than the index keeps plain bitsets for */
    N_ATTRS
};
static const char *const attr_names[N_ATTRS] = {
    "district", "birth_date", "receives_pension", "veteran", "children",
    "balance",  "score",      "registered_on",    "tags",    "grade"};
static const char *const districts[] = {"红旗区", "卫滨区", "牧野区", "凤泉区", "获嘉县"};
static const char *const tag_pool[] = {"低保", "残疾", "独居", "退役军人", "失独", "a", "b"};
#define N_TAGS    (sizeof tag_pool / sizeof tag_pool[0])
#define TAGS_HELD 5

static const uint32_t todays[] = {20240229, 20230228, 20230301, 20251231, 21000228};
#define N_TODAYS (sizeof todays / sizeof todays[0])

static fxb_schema *schema;
static const fxb_attr *attrs[N_ATTRS];

/* --- the model: every subject's values, as the rule evaluator reads them -------------------- */

typedef struct subject {
    fxb_profile_value v[N_ATTRS];
    const char *tags[TAGS_HELD];
} subject;

typedef struct model {
    subject *rows;
    size_t n, cap;
} model;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int64_t between(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static bool chance(int percent)
{
    return (int)(rnd() % 100) < percent;
}

static int month_days(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : d[m - 1];
}

static int64_t random_date(int y0, int y1)
{
    static const int64_t edges[] = {10101,    10000101, 99991231, 20000229, 19960229,
                                    20240229, 19000101, 19991231, 20230228, 20230301};
    if (chance(8))
        return edges[rnd() % (sizeof edges / sizeof edges[0])];
    int y = (int)between(y0, y1), m = (int)between(1, 12);
    return (int64_t)y * 10000 + m * 100 + between(1, month_days(y, m));
}

static void random_values(subject *s)
{
    memset(s, 0, sizeof *s);
    for (int a = 0; a < N_ATTRS; a++)
        s->v[a].present = chance(85);
    s->v[A_DISTRICT].i = between(0, 4);
    s->v[A_BIRTH].i = random_date(1915, 2025);
    s->v[A_PENSION].i = between(0, 1);
    s->v[A_VETERAN].i = chance(20);
    s->v[A_CHILDREN].i = chance(10) ? (chance(50) ? 0 : 20) : between(0, 5);
    s->v[A_BALANCE].i = chance(10) ? (chance(50) ? -1000 : 1000) : between(-1000, 1000);
    static const int64_t scores[] = {INT64_MIN,          INT64_MAX,          0, -1, 1,
                                     999999999999999999, -999999999999999999};
    s->v[A_SCORE].i = chance(20) ? scores[rnd() % 7] : (int64_t)rnd();
    s->v[A_REG].i = random_date(1000, 9999);
    s->v[A_GRADE].i = chance(10) ? (chance(50) ? 0 : 39) : between(0, 39);
    size_t n = (size_t)between(0, TAGS_HELD);
    for (size_t i = 0; i < n; i++)
        s->tags[i] = tag_pool[rnd() % N_TAGS];
    s->v[A_TAGS].members = n > 0 || chance(50) ? s->tags : NULL;
    s->v[A_TAGS].n_members = n;
}

static void view_get(void *self, const fxb_attr *attr, fxb_profile_value *out)
{
    const subject *s = self;
    for (int a = 0; a < N_ATTRS; a++)
        if (attrs[a] == attr) {
            *out = s->v[a];
            if (a == A_TAGS && out->members != NULL)
                out->members = s->tags; /* the model's rows move when it grows */
            return;
        }
    memset(out, 0, sizeof *out);
}

static void subject_id(char *buf, size_t cap, size_t k)
{
    snprintf(buf, cap, "p%024zx", k * 2654435761u);
}

/* Writes s for subject k into both the index and the model. */
static void put(fxb_index *ix, model *m, size_t k, const subject *s)
{
    char id[40];
    subject_id(id, sizeof id, k);
    fxb_index_values v = {attrs, s->v, N_ATTRS};
    int64_t row = fxb_index_set(ix, id, &v);
    assert_true(row >= 0);
    if ((size_t)row >= m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        while (cap <= (size_t)row)
            cap *= 2;
        m->rows = realloc(m->rows, cap * sizeof *m->rows);
        assert_non_null(m->rows);
        memset(m->rows + m->cap, 0, (cap - m->cap) * sizeof *m->rows);
        m->cap = cap;
    }
    if ((size_t)row >= m->n)
        m->n = (size_t)row + 1;
    m->rows[row] = *s;
    m->rows[row].v[A_TAGS].members = s->v[A_TAGS].members ? m->rows[row].tags : NULL;
    assert_string_equal(fxb_index_subject(ix, (uint32_t)row), id);
}

static void forget(fxb_index *ix, model *m, size_t row)
{
    fxb_index_remove(ix, fxb_index_subject(ix, (uint32_t)row));
    memset(&m->rows[row], 0, sizeof m->rows[row]);
}

/* --- rules ------------------------------------------------------------------------------------ */

static fxb_rule *compile(const char *text)
{
    fxb_rule *r = NULL;
    fxb_rule_error where;
    fxb_err err;
    if (fxb_rule_compile(schema, FXB_SUBJECT_PERSON, text, &r, &where, &err) != FXB_OK)
        fail_msg("refused %s: %u:%u '%s' %s", text, where.line, where.col, where.token,
                 where.message);
    return r;
}

static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};

static void cat(char *buf, size_t cap, const char *fmt, ...)
{
    size_t n = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

static void date_literal(char *buf, size_t cap, int64_t d)
{
    snprintf(buf, cap, "\"%04d-%02d-%02d\"", (int)(d / 10000), (int)(d / 100 % 100),
             (int)(d % 100));
}

static void random_int_list(char *buf, size_t cap, int64_t lo, int64_t hi)
{
    int64_t start = between(lo, hi);
    int n = (int)between(1, 6);
    cat(buf, cap, "{");
    for (int i = 0; i < n; i++) /* runs of consecutive values, with gaps */
        cat(buf, cap, "%s%lld", i ? ", " : "", (long long)(start + i + (i > 2 ? 3 : 0)));
    cat(buf, cap, "}");
}

static void random_condition(char *buf, size_t cap)
{
    char d[32];
    const char *op = ops[rnd() % 6];
    switch (rnd() % 12) {
    case 0: {
        static const int64_t ages[] = {0, 1, 17, 18, 59, 60, 61, 80, 99, 100, 120, 149, 150, 2};
        if (chance(25)) {
            cat(buf, cap, "age in ");
            random_int_list(buf, cap, 0, 110);
        } else {
            cat(buf, cap, "age %s %lld", op,
                (long long)(chance(50) ? ages[rnd() % 14] : between(0, 110)));
        }
        break;
    }
    case 1:
        date_literal(d, sizeof d, random_date(1915, 2025));
        cat(buf, cap, "birth_date %s %s", op, d);
        break;
    case 2:
        date_literal(d, sizeof d, random_date(1000, 9999));
        cat(buf, cap, "registered_on %s %s", op, d);
        break;
    case 3:
        if (chance(40)) {
            cat(buf, cap, "district in {");
            int n = (int)between(1, 5);
            for (int i = 0; i < n; i++)
                cat(buf, cap, "%s\"%s\"", i ? ", " : "", districts[rnd() % 5]);
            cat(buf, cap, "}");
        } else {
            cat(buf, cap, "district %s \"%s\"", chance(50) ? "==" : "!=", districts[rnd() % 5]);
        }
        break;
    case 4:
    case 5: {
        const char *b = chance(50) ? "receives_pension" : "veteran";
        if (chance(50))
            cat(buf, cap, "%s", b);
        else
            cat(buf, cap, "%s %s %s", b, chance(50) ? "==" : "!=", chance(50) ? "true" : "false");
        break;
    }
    case 6:
        if (chance(25)) {
            cat(buf, cap, "children in ");
            random_int_list(buf, cap, 0, 11);
        } else {
            cat(buf, cap, "children %s %lld", op, (long long)between(0, 20));
        }
        break;
    case 7:
        if (chance(25)) {
            cat(buf, cap, "balance in ");
            random_int_list(buf, cap, -1000, 991);
        } else {
            cat(buf, cap, "balance %s %lld", op, (long long)between(-1000, 1000));
        }
        break;
    case 8: {
        static const char *const lits[] = {
            "0", "-1", "1", "999999999999999999", "-999999999999999999", "123456789012345678"};
        cat(buf, cap, "score %s %s", op, lits[rnd() % 6]);
        break;
    }
    case 10: {
        int g = (int)between(0, 39);
        if (chance(40))
            cat(buf, cap, "grade in {\"g%02d\", \"g%02d\", \"g%02d\"}", g, (g + 1) % 40,
                (g + 17) % 40);
        else
            cat(buf, cap, "grade %s \"g%02d\"", chance(50) ? "==" : "!=", g);
        break;
    }
    default:
        cat(buf, cap, "tags contains \"%s\"", chance(90) ? tag_pool[rnd() % N_TAGS] : "无此项");
        break;
    }
}

static void random_rule(char *buf, size_t cap, int depth)
{
    if (depth <= 0 || chance(35)) {
        random_condition(buf, cap);
        return;
    }
    switch (rnd() % 4) {
    case 0:
        cat(buf, cap, "!(");
        random_rule(buf, cap, depth - 1);
        cat(buf, cap, ")");
        break;
    default:
        cat(buf, cap, "(");
        random_rule(buf, cap, depth - 1);
        cat(buf, cap, chance(50) ? " && " : " || ");
        random_rule(buf, cap, depth - 1);
        cat(buf, cap, ")");
        break;
    }
}

/* --- the check: the index against the evaluator, row by row ---------------------------------- */

typedef struct marks {
    unsigned char *hit;
    size_t n;
    bool beyond;
} marks;

static bool mark(uint32_t row, void *arg)
{
    marks *mk = arg;
    if (row >= mk->n)
        mk->beyond = true;
    else
        mk->hit[row] = 1;
    return true;
}

/* The ways fxb_index_match may go about a rule (fxb_index_tune): the
 * planner's own choice, then each way forced. Every one must give exactly
 * the evaluator's rows. */
static const struct {
    int64_t rows_max, stream_max;
    int dense;
    const char *what;
} tunings[] = {
    {-1, -1, -1, "the planner's choice"},
    {0, 0, 0, "bitmaps only"},
    {INT64_MAX, 0, 0, "row by row after the first operand"},
    {0, INT64_MAX, 0, "smallest operand streamed"},
    {INT64_MAX, INT64_MAX, 0, "streamed, row by row"},
    {INT64_MAX, 0, 1, "plain bitsets, the rest row by row"},
    {0, 0, 1, "plain bitsets, the rest over bitmaps"},
};
#define N_TUNINGS (sizeof tunings / sizeof tunings[0])

/* Returns the number of rows matched. */
static uint64_t check_rule(fxb_index *ix, const model *m, const char *text, uint32_t today)
{
    fxb_rule *r = compile(text);
    unsigned char *want = calloc(m->n + 1, 1);
    assert_non_null(want);
    uint64_t count = 0;
    for (size_t row = 0; row < m->n; row++) {
        fxb_profile_view view = {view_get, &m->rows[row]};
        want[row] = fxb_rule_eval(r, &view, today, NULL) == FXB_TRUE;
        count += want[row];
    }
    void *rows = NULL;
    for (size_t t = N_TUNINGS; t-- > 0;) { /* the default last: its rows are kept */
        fxb_index_tune(ix, tunings[t].rows_max, tunings[t].stream_max, tunings[t].dense);
        if (rows != NULL)
            fxb_index_rows_free(rows);
        rows = fxb_index_match(ix, r, today);
        assert_non_null(rows);
        marks mk = {calloc(m->n + 1, 1), m->n, false};
        assert_non_null(mk.hit);
        fxb_index_rows_each(rows, mark, &mk);
        assert_false(mk.beyond);
        for (size_t row = 0; row < m->n; row++)
            if (want[row] != mk.hit[row])
                fail_msg("rule %s on %u (%s): row %zu is %s by the index, %s by the evaluator",
                         text, today, tunings[t].what, row, mk.hit[row] ? "matched" : "not matched",
                         want[row] ? "TRUE" : "not TRUE");
        assert_int_equal(fxb_index_rows_count(rows), count);
        free(mk.hit);
    }
    /* the list of subjects: the matched rows' subjects, in row order */
    size_t cap = (size_t)(count + 1) * 40;
    char *list = malloc(cap), *want_list = malloc(cap);
    assert_non_null(list);
    assert_non_null(want_list);
    size_t len = fxb_index_rows_subjects(ix, rows, list, cap), want_len = 0;
    for (size_t row = 0; row < m->n; row++) {
        if (!want[row])
            continue;
        const char *sub = fxb_index_subject(ix, (uint32_t)row);
        assert_non_null(sub);
        size_t n = strlen(sub);
        memcpy(want_list + want_len, sub, n);
        want_list[want_len + n] = '\n';
        want_len += n + 1;
    }
    assert_int_equal(len, want_len);
    assert_memory_equal(list, want_list, len);
    if (count > 0)
        assert_int_equal(fxb_index_rows_subjects(ix, rows, list, len - 1), 0); /* too small */
    free(list);
    free(want_list);
    free(want);
    fxb_index_rows_free(rows);
    fxb_rule_free(r);
    return count;
}

static const char *const hand_rules[] = {
    "age >= 80 && district in {\"红旗区\", \"卫滨区\"} && !receives_pension",
    "age >= 60 && !receives_pension && children <= 3 && district != \"牧野区\"",
    "age < 18 || age > 65",
    "age == 0",
    "age != 60",
    "age in {59, 60, 61, 70, 71}",
    "age >= 0",
    "age < 0",
    "age <= 150",
    "birth_date <= \"0001-01-01\"",
    "birth_date >= \"9999-12-31\"",
    "birth_date == \"2000-02-29\"",
    "birth_date != \"2024-02-29\"",
    "registered_on > \"1000-01-01\" && registered_on < \"9999-12-31\"",
    "balance == -1000 || balance == 1000",
    "balance <= -1000",
    "balance >= 1000",
    "balance in {-1000, -999, -998, 0, 999, 1000}",
    "children == 0 || children == 20",
    "children in {0, 1, 2, 19, 20}",
    "score < -999999999999999999",
    "score > 999999999999999999",
    "score == 0 || score != 0",
    "receives_pension == false",
    "receives_pension != true",
    "!receives_pension || veteran",
    "!(receives_pension && veteran)",
    "tags contains \"低保\" && !(tags contains \"残疾\")",
    "!(tags contains \"无此项\")",
    "district == \"获嘉县\" || !(district != \"红旗区\")",
    "(age >= 60 || veteran) && (tags contains \"独居\" || children == 0) && balance < 0",
    "!(age >= 60) && district in {\"红旗区\", \"卫滨区\"}",
    "!(age >= 25 && age <= 45) || !(children >= 2)",
    "district == \"获嘉县\" && receives_pension && veteran && children >= 2 && age < 45",
    "district != \"红旗区\" && !veteran && !(tags contains \"残疾\") && balance >= -500",
    "!(district in {\"红旗区\", \"卫滨区\", \"牧野区\"} || receives_pension) && age > 30",
    "(balance < 0 || score < 0) && !(registered_on >= \"5000-01-01\" && children < 3)",
    "grade in {\"g00\", \"g01\", \"g39\"} && district == \"红旗区\"",
    "!(grade == \"g07\") && receives_pension && !(district != \"卫滨区\")",
    "grade != \"g20\" || age < 18",
};
#define N_HAND (sizeof hand_rules / sizeof hand_rules[0])

static void check_many(fxb_index *ix, const model *m, int random_rules)
{
    for (size_t t = 0; t < N_TODAYS; t++)
        for (size_t i = 0; i < N_HAND; i++)
            check_rule(ix, m, hand_rules[i], todays[t]);
    char text[FXB_RULE_TEXT_MAX];
    for (int i = 0; i < random_rules; i++) {
        text[0] = '\0';
        random_rule(text, sizeof text, 4);
        check_rule(ix, m, text, todays[rnd() % N_TODAYS]);
    }
}

/* --- tests ------------------------------------------------------------------------------------ */

static int setup(void **state)
{
    char errors[2048];
    fxb_err err;
    if (fxb_schema_parse(schema_json, strlen(schema_json), &schema, errors, sizeof errors, &err) !=
        FXB_OK) {
        fprintf(stderr, "schema: %s\n", errors);
        return -1;
    }
    for (int a = 0; a < N_ATTRS; a++)
        if ((attrs[a] = fxb_schema_find(schema, FXB_SUBJECT_PERSON, attr_names[a])) == NULL)
            return -1;
    return 0;
}

static int teardown(void **state)
{
    fxb_schema_free(schema);
    return 0;
}

static void test_match_is_exactly_where_the_evaluator_says_true(void **state)
{
    fxb_index *ix = fxb_index_new(schema, FXB_SUBJECT_PERSON);
    assert_non_null(ix);
    model m = {0};
    subject s;
    for (size_t k = 0; k < 20000; k++) {
        random_values(&s);
        put(ix, &m, k, &s);
    }
    assert_int_equal(m.n, 20000);
    check_many(ix, &m, 150);

    /* A third updated (new values, new missing ones), some removed. */
    for (size_t k = 0; k < 20000; k += 3) {
        random_values(&s);
        put(ix, &m, k, &s);
    }
    for (size_t row = 1; row < m.n; row += 17)
        forget(ix, &m, row);
    assert_int_equal(m.n, 20000);
    check_many(ix, &m, 100);

    /* Compacted, the answers are the same. */
    fxb_index_optimize(ix);
    check_many(ix, &m, 50);
    free(m.rows);
    fxb_index_free(ix);
}

static void test_repeated_updates_of_the_same_subjects_keep_only_the_last_values(void **state)
{
    fxb_index *ix = fxb_index_new(schema, FXB_SUBJECT_PERSON);
    assert_non_null(ix);
    model m = {0};
    subject s;
    for (int round = 0; round < 3000; round++) {
        random_values(&s);
        /* Often change just one or two attributes of the current values. */
        size_t k = (size_t)between(0, 39);
        if (k < m.n && chance(60)) {
            subject cur = m.rows[k];
            int a = (int)between(0, N_ATTRS - 1);
            cur.v[a] = s.v[a];
            if (a == A_TAGS) {
                memcpy(cur.tags, s.tags, sizeof cur.tags);
                cur.v[A_TAGS].members = s.v[A_TAGS].members ? cur.tags : NULL;
            } else {
                cur.v[A_TAGS].members = m.rows[k].v[A_TAGS].members ? cur.tags : NULL;
            }
            s = cur;
            s.v[A_TAGS].members = cur.v[A_TAGS].members ? s.tags : NULL;
        }
        put(ix, &m, k, &s);
        if (chance(5))
            forget(ix, &m, (size_t)rnd() % m.n);
    }
    check_many(ix, &m, 300);
    fxb_index_stats st;
    fxb_index_stats_get(ix, &st);
    assert_int_equal(st.subjects, m.n);
    free(m.rows);
    fxb_index_free(ix);
}

static void test_values_out_of_range_are_refused_and_leave_the_subject_as_it_was(void **state)
{
    fxb_index *ix = fxb_index_new(schema, FXB_SUBJECT_PERSON);
    model m = {0};
    subject s;
    random_values(&s);
    for (int a = 0; a < N_ATTRS; a++)
        s.v[a].present = true;
    s.v[A_CHILDREN].i = 7;
    put(ix, &m, 0, &s);
    char id[40];
    subject_id(id, sizeof id, 0);

    subject bad;
    static const char *many[FXB_SET_MEMBERS_MAX + 1];
    for (size_t i = 0; i <= FXB_SET_MEMBERS_MAX; i++)
        many[i] = "x";
    struct {
        int attr;
        int64_t value;
    } cases[] = {{A_CHILDREN, 21}, {A_CHILDREN, -1},   {A_BALANCE, -1001},  {A_BALANCE, 1001},
                 {A_DISTRICT, 5},  {A_DISTRICT, -1},   {A_BIRTH, 20230229}, {A_BIRTH, 20231301},
                 {A_BIRTH, 0},     {A_REG, 100000101}, {A_TAGS, 0},         {A_GRADE, 40},
                 {A_GRADE, -1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bad = s;
        bad.v[A_CHILDREN].i = 3;
        bad.v[cases[c].attr].i = cases[c].value;
        if (cases[c].attr == A_TAGS) {
            bad.v[A_TAGS].members = many;
            bad.v[A_TAGS].n_members = FXB_SET_MEMBERS_MAX + 1;
        }
        fxb_index_values v = {attrs, bad.v, N_ATTRS};
        assert_int_equal(fxb_index_set(ix, id, &v), -1);
    }
    fxb_index_values none = {attrs, s.v, N_ATTRS};
    assert_int_equal(fxb_index_set(ix, "", &none), -1);
    assert_int_equal(fxb_index_set(ix, "p0123456789012345678901234567890x", &none), -1);
    /* An attribute of enterprises is not a person's. */
    const fxb_attr *emp = fxb_schema_find(schema, FXB_SUBJECT_ENTERPRISE, "employees");
    fxb_profile_value ev = {.present = true, .i = 5};
    fxb_index_values ents = {&emp, &ev, 1};
    assert_int_equal(fxb_index_set(ix, id, &ents), -1);
    /* age is derived: a value given for it is ignored. */
    const fxb_attr *age = fxb_schema_find(schema, FXB_SUBJECT_PERSON, "age");
    fxb_profile_value av = {.present = true, .i = 300};
    fxb_index_values ages = {&age, &av, 1};
    assert_int_equal(fxb_index_set(ix, "p-age-only", &ages), 1);
    m.n = 2; /* put() left room */
    memset(&m.rows[1], 0, sizeof m.rows[1]);

    assert_int_equal(check_rule(ix, &m, "children == 7", 20240229), 1);
    assert_int_equal(check_rule(ix, &m, "children == 3", 20240229), 0);
    assert_int_equal(check_rule(ix, &m, "age >= 0", 20240229), 1);
    check_many(ix, &m, 50);
    free(m.rows);
    fxb_index_free(ix);
}

static void test_boundaries_of_every_type(void **state)
{
    fxb_index *ix = fxb_index_new(schema, FXB_SUBJECT_PERSON);
    model m = {0};
    subject s;
    struct {
        int64_t children, balance, score, birth, reg;
    } edges[] = {
        {0, -1000, INT64_MIN, 10101, 10000101}, {20, 1000, INT64_MAX, 99991231, 99991231},
        {0, 1000, INT64_MIN + 1, 10102, 10101}, {20, -1000, INT64_MAX - 1, 99991230, 10000102},
        {1, -999, 0, 20240229, 20000229},       {19, 999, -1, 20230228, 20230301},
    };
    for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++) {
        random_values(&s);
        for (int a = 0; a < N_ATTRS; a++)
            s.v[a].present = true;
        s.v[A_CHILDREN].i = edges[k].children;
        s.v[A_BALANCE].i = edges[k].balance;
        s.v[A_SCORE].i = edges[k].score;
        s.v[A_BIRTH].i = edges[k].birth;
        s.v[A_REG].i = edges[k].reg;
        put(ix, &m, k, &s);
    }
    size_t n = sizeof edges / sizeof edges[0];
    assert_int_equal(check_rule(ix, &m, "children >= 0", 20240229), n);
    assert_int_equal(check_rule(ix, &m, "children < 0 || children > 20", 20240229), 0);
    assert_int_equal(check_rule(ix, &m, "balance == -1000", 20240229), 2);
    assert_int_equal(check_rule(ix, &m, "balance >= 1000", 20240229), 2);
    assert_int_equal(check_rule(ix, &m, "score < -999999999999999999", 20240229), 2);
    assert_int_equal(check_rule(ix, &m, "score > 999999999999999999", 20240229), 2);
    assert_int_equal(check_rule(ix, &m, "birth_date == \"0001-01-01\"", 20240229), 1);
    assert_int_equal(check_rule(ix, &m, "birth_date <= \"0001-01-02\"", 20240229), 2);
    assert_int_equal(check_rule(ix, &m, "birth_date >= \"9999-12-31\"", 20240229), 1);
    assert_int_equal(check_rule(ix, &m, "registered_on < \"1000-01-01\"", 20240229), 1);
    assert_int_equal(check_rule(ix, &m, "registered_on == \"9999-12-31\"", 20240229), 1);
    /* born 2024-02-29: one year old on 2025-02-28? No: on 1 March. */
    assert_int_equal(check_rule(ix, &m, "age == 0 && birth_date == \"2024-02-29\"", 20250228), 1);
    assert_int_equal(check_rule(ix, &m, "age == 1 && birth_date == \"2024-02-29\"", 20250301), 1);
    /* Birth dates after today count as age 0. */
    assert_int_equal(check_rule(ix, &m, "age == 0", 20240229), 3);
    assert_int_equal(check_rule(ix, &m, "age >= 150", 20240229), 2);
    check_many(ix, &m, 200);
    free(m.rows);
    fxb_index_free(ix);
}

static void test_an_empty_index_matches_nothing(void **state)
{
    fxb_index *ix = fxb_index_new(schema, FXB_SUBJECT_PERSON);
    assert_non_null(ix);
    model m = {0};
    for (size_t i = 0; i < N_HAND; i++)
        assert_int_equal(check_rule(ix, &m, hand_rules[i], 20240229), 0);
    assert_null(fxb_index_subject(ix, 0));
    fxb_index_remove(ix, "p-nobody");
    fxb_index_stats st;
    fxb_index_stats_get(ix, &st);
    assert_int_equal(st.subjects, 0);
    assert_int_equal(st.subject_bytes, 0);
    assert_int_equal(fxb_index_row_bytes(ix), 0);
    assert_true(st.bitmaps > 0);
    fxb_index_free(ix);
}

static void test_a_rule_can_match_everyone_or_no_one(void **state)
{
    fxb_index *ix = fxb_index_new(schema, FXB_SUBJECT_PERSON);
    model m = {0};
    subject s;
    for (size_t k = 0; k < 3000; k++) {
        random_values(&s);
        for (int a = 0; a < N_ATTRS; a++)
            s.v[a].present = true;
        put(ix, &m, k, &s);
    }
    fxb_index_optimize(ix);
    assert_int_equal(check_rule(ix, &m, "age >= 0", 20240229), 3000);
    assert_int_equal(check_rule(ix, &m, "balance >= -1000 && balance <= 1000", 20240229), 3000);
    assert_int_equal(check_rule(ix, &m, "receives_pension || !receives_pension", 20240229), 3000);
    assert_int_equal(check_rule(ix, &m, "registered_on >= \"0001-01-01\"", 20240229), 3000);
    assert_int_equal(check_rule(ix, &m, "receives_pension && !receives_pension", 20240229), 0);
    assert_int_equal(check_rule(ix, &m, "age < 0", 20240229), 0);
    assert_int_equal(check_rule(ix, &m, "children > 20", 20240229), 0);
    assert_int_equal(check_rule(ix, &m, "tags contains \"无此项\"", 20240229), 0);
    free(m.rows);
    fxb_index_free(ix);
}

/* Bins are whole calendar years (dates), single values (children) or
 * powers of two of the offset (balance, score): values on both sides of
 * every bin edge, birthdays on 28 / 29 February and 1 March, ranges that
 * start or end exactly on an edge, empty ranges, unknown values and NOT
 * over ranges, under every way of evaluating (check_rule). */
static void test_ranges_at_bin_edges_and_ages_across_birthdays(void **state)
{
    fxb_index *ix = fxb_index_new(schema, FXB_SUBJECT_PERSON);
    assert_non_null(ix);
    model m = {0};
    static const int years[] = {1,    1924, 1944, 1945, 1964, 1965,
                                1999, 2000, 2004, 2023, 2024, 9999};
    static const int md[] = {101, 102, 228, 229, 301, 601, 1230, 1231};
    int64_t births[sizeof years / sizeof years[0] * 8];
    size_t n_births = 0;
    for (size_t y = 0; y < sizeof years / sizeof years[0]; y++)
        for (size_t d = 0; d < 8; d++)
            if (md[d] != 229 || (years[y] % 4 == 0 && (years[y] % 100 != 0 || years[y] % 400 == 0)))
                births[n_births++] = (int64_t)years[y] * 10000 + md[d];
    /* balance offsets (balance + 1000) on both sides of each power of two */
    int64_t balances[40];
    size_t n_balances = 0;
    balances[n_balances++] = -1000;
    for (int k = 0; k <= 10; k++) {
        balances[n_balances++] = ((int64_t)1 << k) - 1 - 1000;
        balances[n_balances++] = ((int64_t)1 << k) - 1000;
    }
    balances[n_balances++] = 1000;
    static const int64_t scores[] = {INT64_MIN, INT64_MIN + 1, -4,       -3, -1, 0, 1, 2, 3,
                                     4,         INT64_MAX - 1, INT64_MAX};
    subject s;
    size_t k = 0;
    for (size_t i = 0; i < n_births * 3; i++, k++) {
        random_values(&s);
        for (int a = 0; a < N_ATTRS; a++)
            s.v[a].present = i % 11 != (size_t)a; /* each attribute unknown now and then */
        s.v[A_BIRTH].i = births[i % n_births];
        s.v[A_REG].i = births[(i * 7) % n_births];
        s.v[A_BALANCE].i = balances[i % n_balances];
        s.v[A_SCORE].i = scores[i % (sizeof scores / sizeof scores[0])];
        s.v[A_CHILDREN].i = (int64_t)(i % 21);
        put(ix, &m, k, &s);
    }
    char text[FXB_RULE_TEXT_MAX];
    static const char *const ops6[] = {"<", "<=", ">", ">=", "==", "!="};
    for (size_t y = 0; y < sizeof years / sizeof years[0]; y++)
        for (size_t d = 0; d < 8; d++)
            for (size_t o = 0; o < 6; o++) {
                if (md[d] == 229)
                    continue;
                snprintf(text, sizeof text, "birth_date %s \"%04d-%02d-%02d\"", ops6[o], years[y],
                         md[d] / 100, md[d] % 100);
                check_rule(ix, &m, text, 20240229);
                snprintf(text, sizeof text, "!(registered_on %s \"%04d-%02d-%02d\")", ops6[o],
                         years[y], md[d] / 100, md[d] % 100);
                check_rule(ix, &m, text, 20240229);
            }
    static const uint32_t days[] = {20240228, 20240229, 20240301, 20250228,
                                    20250301, 20241231, 20250101, 20230601};
    static const int ages[] = {0, 1, 20, 21, 59, 60, 61, 79, 80, 81, 100, 129, 130};
    for (size_t t = 0; t < sizeof days / sizeof days[0]; t++)
        for (size_t a = 0; a < sizeof ages / sizeof ages[0]; a++) {
            for (size_t o = 0; o < 6; o++) {
                snprintf(text, sizeof text, "age %s %d", ops6[o], ages[a]);
                check_rule(ix, &m, text, days[t]);
            }
            snprintf(text, sizeof text, "age in {%d, %d, %d}", ages[a], ages[a] + 1, ages[a] + 3);
            check_rule(ix, &m, text, days[t]);
            snprintf(text, sizeof text, "!(age >= %d) && receives_pension", ages[a]);
            check_rule(ix, &m, text, days[t]);
            snprintf(text, sizeof text, "age >= %d && age <= %d && !(age == %d)", ages[a],
                     ages[a] + 20, ages[a] + 1);
            check_rule(ix, &m, text, days[t]);
        }
    for (size_t b = 0; b < n_balances; b++)
        for (size_t o = 0; o < 6; o++) {
            snprintf(text, sizeof text, "balance %s %lld", ops6[o], (long long)balances[b]);
            check_rule(ix, &m, text, 20240229);
            snprintf(text, sizeof text, "!(balance %s %lld) || veteran", ops6[o],
                     (long long)balances[b]);
            check_rule(ix, &m, text, 20240229);
        }
    static const char *const score_lits[] = {"-999999999999999999", "-4", "-1", "0", "1", "3", "4",
                                             "999999999999999999"};
    for (size_t v = 0; v < sizeof score_lits / sizeof score_lits[0]; v++)
        for (size_t o = 0; o < 6; o++) {
            snprintf(text, sizeof text, "score %s %s", ops6[o], score_lits[v]);
            check_rule(ix, &m, text, 20240229);
        }
    for (int c = 0; c <= 20; c++) {
        snprintf(text, sizeof text, "children >= %d && !(children in {%d, %d})", c, (c + 1) % 21,
                 (c + 3) % 21);
        check_rule(ix, &m, text, 20240229);
    }
    static const char *const empty[] = {
        "age < 0",
        "balance > 1000",
        "balance < -1000",
        "children > 20",
        "birth_date < \"0001-01-01\"",
        "registered_on > \"9999-12-31\"",
        "age >= 60 && age < 60",
        "birth_date > \"2000-01-01\" && birth_date < \"2000-01-02\"",
        "children in {0, 1} && children >= 2",
    };
    for (size_t e = 0; e < sizeof empty / sizeof empty[0]; e++)
        assert_int_equal(check_rule(ix, &m, empty[e], 20240229), 0);
    check_many(ix, &m, 100);
    free(m.rows);
    fxb_index_free(ix);
}

/* --- micro-benchmark (printed, not asserted) ------------------------------------------------ */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct listing {
    const fxb_index *ix;
    uint64_t n, bytes;
} listing;

static bool list_subject(uint32_t row, void *arg)
{
    listing *l = arg;
    const char *id = fxb_index_subject(l->ix, row);
    l->n++;
    l->bytes += (unsigned char)id[1];
    return true;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_micro_benchmark(void **state)
{
    const char *env = getenv("FXB_INDEX_BENCH_ROWS");
    size_t rows = env != NULL ? (size_t)strtoull(env, NULL, 10) : 1000000;
    fxb_index *ix = fxb_index_new(schema, FXB_SUBJECT_PERSON);
    assert_non_null(ix);
    subject s;
    double t0 = now_ms();
    for (size_t k = 0; k < rows; k++) {
        random_values(&s);
        s.v[A_BIRTH].i = random_date(1925, 2024);
        s.v[A_BIRTH].present = chance(98);
        char id[40];
        subject_id(id, sizeof id, k);
        fxb_index_values v = {attrs, s.v, N_ATTRS};
        assert_true(fxb_index_set(ix, id, &v) >= 0);
    }
    double t1 = now_ms();
    fxb_index_stats before, after;
    fxb_index_stats_get(ix, &before);
    fxb_index_optimize(ix);
    double t2 = now_ms();
    fxb_index_stats_get(ix, &after);

    static const char *const rules[] = {
        "age >= 60 && district in {\"红旗区\", \"卫滨区\"} && !receives_pension && children <= 3",
        "age >= 18 && age < 60 && tags contains \"低保\" && balance < 0",
        "(age >= 80 || veteran) && district != \"牧野区\" && !(tags contains \"残疾\") && "
        "registered_on < \"2000-01-01\"",
    };
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
        fxb_rule *rule = compile(rules[r]);
        double match[15], total[15];
        uint64_t matched = 0;
        for (int i = 0; i < 15; i++) {
            double a = now_ms();
            void *hits = fxb_index_match(ix, rule, 20240229);
            double b = now_ms();
            listing l = {ix, 0, 0};
            fxb_index_rows_each(hits, list_subject, &l);
            double c = now_ms();
            matched = l.n;
            match[i] = b - a;
            total[i] = c - a;
            fxb_index_rows_free(hits);
        }
        qsort(match, 15, sizeof match[0], cmp_double);
        qsort(total, 15, sizeof total[0], cmp_double);
        printf("bench: %zu subjects, rule %zu (%zu conditions): %llu matched; match median %.2f "
               "ms (min %.2f), with listing the subjects median %.2f ms\n",
               rows, r + 1, fxb_rule_conditions(rule), (unsigned long long)matched, match[7],
               match[0], total[7]);
        fxb_rule_free(rule);
    }
    printf("bench: load %.0f ms (%.2f us/subject), optimize %.0f ms; %llu bitmaps, %.1f MB "
           "before / %.1f MB after run-optimize; row blocks %.1f MB; row->subject table %.1f MB\n",
           t1 - t0, (t1 - t0) * 1e3 / (double)(rows ? rows : 1), t2 - t1,
           (unsigned long long)after.bitmaps, before.bytes / 1e6, after.bytes / 1e6,
           fxb_index_row_bytes(ix) / 1e6, after.subject_bytes / 1e6);
    fxb_index_free(ix);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_is_exactly_where_the_evaluator_says_true),
        cmocka_unit_test(test_repeated_updates_of_the_same_subjects_keep_only_the_last_values),
        cmocka_unit_test(test_values_out_of_range_are_refused_and_leave_the_subject_as_it_was),
        cmocka_unit_test(test_boundaries_of_every_type),
        cmocka_unit_test(test_an_empty_index_matches_nothing),
        cmocka_unit_test(test_a_rule_can_match_everyone_or_no_one),
        cmocka_unit_test(test_ranges_at_bin_edges_and_ages_across_birthdays),
        cmocka_unit_test(test_micro_benchmark),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
