/* Benefit policies against a private redis-server (its database emptied
 * before each test; the published set, the revision and the wake-up
 * channel are process-wide state): every field of a draft is bounded, codes
 * are unique (and a code left by a half-done create is taken over), only a
 * DRAFT is updated and only with the version read, publishing compiles the
 * rule and refuses it with line, column and token, publishing and closing
 * move the published set and the revision and wake the engines, and the
 * lists index every policy. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "services/benefit/benefit.h"
#include "services/benefit/policy.h"
#include "services/benefit/schema.h"

#define NOW  1767225600000LL /* 2026-01-01 08:00 China time */
#define DEPT "xx-civil-affairs"

static char url[FXB_STORE_URL_MAX + 64];
static fxb_schema *schema;

static const char schema_json[] =
    "{\"attributes\": ["
    "{\"name\": \"birth_date\", \"subject\": \"person\", \"type\": \"date\", \"source\": "
    "\"xx-police\"},"
    "{\"name\": \"district\", \"subject\": \"person\", \"type\": \"enum\", \"values\": "
    "[\"红旗区\", \"卫滨区\"], \"source\": \"xx-police\"},"
    "{\"name\": \"receives_pension\", \"subject\": \"person\", \"type\": \"bool\", \"source\": "
    "\"xx-hrss\"},"
    "{\"name\": \"employees\", \"subject\": \"enterprise\", \"type\": \"int\", \"min\": 0, "
    "\"max\": 1000000, \"source\": \"xx-market\"}]}";

static int group_setup(void **state)
{
    (void)state;
    char errors[1024];
    fxb_err err;
    if (fxb_schema_parse(schema_json, strlen(schema_json), &schema, errors, sizeof errors, &err) !=
        FXB_OK) {
        fprintf(stderr, "schema: %s\n", errors);
        return -1;
    }
    return fxb_test_private_redis_start(url, sizeof url);
}

static int group_teardown(void **state)
{
    (void)state;
    fxb_schema_free(schema);
    fxb_test_private_redis_stop();
    return 0;
}

static int each_setup(void **state)
{
    *state = fxb_test_store_open(url);
    return *state != NULL ? 0 : -1;
}

static int each_teardown(void **state)
{
    fxb_store_free(*state);
    return 0;
}

/* --- helpers -------------------------------------------------------------------- */

static Fxb__V1__PolicyDraft draft(const char *code)
{
    Fxb__V1__PolicyDraft d = FXB__V1__POLICY_DRAFT__INIT;
    d.code = (char *)code;
    d.title = "高龄津贴";
    d.category = FXB__V1__POLICY_CATEGORY__POLICY_CATEGORY_PEOPLE;
    d.department = DEPT;
    d.subject_type = FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON;
    d.rule = "age >= 80 && district in {\"红旗区\", \"卫滨区\"} && !receives_pension";
    d.benefit_kind = FXB__V1__BENEFIT_KIND__BENEFIT_KIND_CASH;
    d.amount_fen = 10000;
    d.valid_from_ms = NOW - 1000;
    d.valid_until_ms = 0;
    d.budget_fen = 1000000;
    d.quota = 100;
    d.confirmation_required = false;
    d.summary = "80岁以上老人每月发放";
    d.legal_basis = "新政〔2026〕1号";
    return d;
}

static redisReply *cmd(fxb_store *s, const char *fmt, ...)
{
    fxb_err err;
    va_list ap;
    va_start(ap, fmt);
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* split on spaces: the tests' arguments have none inside */
    const char *argv[16];
    int argc = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, " ", &save); t && argc < 16; t = strtok_r(NULL, " ", &save))
        argv[argc++] = t;
    redisReply *r = fxb_store_commandv(s, &err, argc, argv, NULL);
    assert_non_null(r);
    return r;
}

static long long cmd_int(fxb_store *s, const char *fmt, const char *arg)
{
    redisReply *r = cmd(s, fmt, arg);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                  : -1;
    freeReplyObject(r);
    return v;
}

static char *cmd_str(fxb_store *s, const char *fmt, const char *arg)
{
    redisReply *r = cmd(s, fmt, arg);
    char *v = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

static void create_ok(fxb_store *s, const Fxb__V1__PolicyDraft *d, char id[FXB_POLICY_ID_LEN + 1])
{
    fxb_err err;
    fxb_code rc = fxb_policy_create(s, d, "u1", NOW, id, &err);
    if (rc != FXB_OK)
        fprintf(stderr, "create: %s %s\n", err.reason, err.message);
    assert_int_equal(rc, FXB_OK);
    assert_true(fxb_policy_id_valid(id));
}

static fxb_policy load_ok(fxb_store *s, const char *id, fxb_arena *a)
{
    fxb_policy p;
    fxb_err err;
    assert_int_equal(fxb_policy_load(s, id, a, &p, &err), FXB_OK);
    return p;
}

static void expect_draft_refused(Fxb__V1__PolicyDraft d, const char *reason)
{
    fxb_err err;
    fxb_code rc = fxb_policy_draft_check(&d, &err);
    if (rc != FXB_INVALID_ARGUMENT || strcmp(err.reason, reason) != 0)
        fprintf(stderr, "expected %s, got %d %s\n", reason, rc, err.reason);
    assert_int_equal(rc, FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, reason);
    assert_true(err.message_zh[0] != '\0');
}

static void expect_draft_ok(Fxb__V1__PolicyDraft d)
{
    fxb_err err;
    fxb_code rc = fxb_policy_draft_check(&d, &err);
    if (rc != FXB_OK)
        fprintf(stderr, "refused: %s %s\n", err.reason, err.message);
    assert_int_equal(rc, FXB_OK);
}

/* n copies of a UTF-8 character (arena-free: static buffer per call). */
static char *repeat(char *buf, size_t cap, const char *ch, size_t n)
{
    size_t l = strlen(ch);
    assert_true(n * l < cap);
    for (size_t i = 0; i < n; i++)
        memcpy(buf + i * l, ch, l);
    buf[n * l] = '\0';
    return buf;
}

/* A subscriber on FXB_BENEFIT_CHANNEL. */
static redisContext *subscribe(void)
{
    fxb_store_url u;
    fxb_err err;
    assert_int_equal(fxb_store_url_parse(url, &u, &err), FXB_OK);
    redisContext *c = redisConnect(u.host, u.port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisReply *r = redisCommand(c, "SUBSCRIBE %s", FXB_BENEFIT_CHANNEL);
    assert_non_null(r);
    freeReplyObject(r);
    struct timeval tv = {5, 0};
    redisSetTimeout(c, tv);
    return c;
}

/* The next message's payload (the policy id). */
static void expect_message(redisContext *c, const char *id)
{
    redisReply *r = NULL;
    assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    assert_string_equal(r->element[0]->str, "message");
    assert_string_equal(r->element[1]->str, FXB_BENEFIT_CHANNEL);
    assert_string_equal(r->element[2]->str, id);
    freeReplyObject(r);
}

/* --- the tests -------------------------------------------------------------------- */

static void test_policy_ids_are_b_and_16_lower_hex(void **state)
{
    (void)state;
    assert_true(fxb_policy_id_valid("b0123456789abcdef"));
    assert_false(fxb_policy_id_valid("b0123456789ABCDEF"));
    assert_false(fxb_policy_id_valid("c0123456789abcdef"));
    assert_false(fxb_policy_id_valid("b0123456789abcde"));
    assert_false(fxb_policy_id_valid("b0123456789abcdef0"));
    assert_false(fxb_policy_id_valid(NULL));
    fxb_arena a;
    fxb_arena_init(&a, 0);
    assert_string_equal(fxb_policy_key(&a, "b0123456789abcdef", "policy"),
                        "{b:b0123456789abcdef}:policy");
    assert_null(fxb_policy_key(&a, "b01}", "policy"));
    fxb_arena_free(&a);
}

static void test_every_draft_field_is_bounded(void **state)
{
    (void)state;
    char buf[4096];
    Fxb__V1__PolicyDraft d = draft("OLD-AGE-1");
    expect_draft_ok(d);
    fxb_err err;
    assert_int_equal(fxb_policy_draft_check(NULL, &err), FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "DRAFT_REQUIRED");

    /* code: [A-Z0-9-]{3,32} */
    const char *bad_codes[] = {"", "AB", "old-age", "OLD AGE", "OLD_AGE", "老龄"};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        d = draft(bad_codes[i]);
        expect_draft_refused(d, "POLICY_CODE_INVALID");
    }
    expect_draft_ok(draft("ABC"));
    expect_draft_ok(draft(repeat(buf, sizeof buf, "A", 32)));
    expect_draft_refused(draft(repeat(buf, sizeof buf, "A", 33)), "POLICY_CODE_INVALID");

    /* title: 1..100 characters, not bytes */
    d = draft("T-1");
    d.title = repeat(buf, sizeof buf, "龄", 100);
    expect_draft_ok(d);
    d.title = repeat(buf, sizeof buf, "龄", 101);
    expect_draft_refused(d, "TITLE_INVALID");
    d.title = "";
    expect_draft_refused(d, "TITLE_INVALID");
    d.title = "a\x01"
              "b";
    expect_draft_refused(d, "TITLE_INVALID");

    d = draft("C-1");
    d.category = 0;
    expect_draft_refused(d, "CATEGORY_INVALID");
    d.category = 6;
    expect_draft_refused(d, "CATEGORY_INVALID");

    d = draft("D-1");
    const char *bad_depts[] = {"", "Xx-civil", "xx_civil", "xx civil"};
    for (size_t i = 0; i < sizeof bad_depts / sizeof bad_depts[0]; i++) {
        d.department = (char *)bad_depts[i];
        expect_draft_refused(d, "DEPARTMENT_INVALID");
    }
    d.department = repeat(buf, sizeof buf, "a", 32);
    expect_draft_ok(d);
    d.department = repeat(buf, sizeof buf, "a", 33);
    expect_draft_refused(d, "DEPARTMENT_INVALID");

    d = draft("S-1");
    d.subject_type = 0;
    expect_draft_refused(d, "SUBJECT_TYPE_INVALID");
    d.subject_type = 3;
    expect_draft_refused(d, "SUBJECT_TYPE_INVALID");

    /* rule: 1..2000 bytes, line breaks allowed, other controls not */
    d = draft("R-1");
    d.rule = "";
    expect_draft_refused(d, "RULE_INVALID");
    d.rule = "age >= 80\n&& !receives_pension";
    expect_draft_ok(d);
    d.rule = "age >= 80 \x07";
    expect_draft_refused(d, "RULE_INVALID");
    d.rule = repeat(buf, sizeof buf, "a", 2000);
    expect_draft_ok(d);
    d.rule = repeat(buf, sizeof buf, "a", 2001);
    expect_draft_refused(d, "RULE_INVALID");

    d = draft("K-1");
    d.benefit_kind = 0;
    expect_draft_refused(d, "BENEFIT_KIND_INVALID");
    d.benefit_kind = 5;
    expect_draft_refused(d, "BENEFIT_KIND_INVALID");

    /* amounts: CASH > 0, others >= 0, at most 10^12 fen */
    d = draft("A-1");
    d.amount_fen = 0;
    expect_draft_refused(d, "AMOUNT_INVALID");
    d.benefit_kind = FXB__V1__BENEFIT_KIND__BENEFIT_KIND_SERVICE;
    expect_draft_ok(d);
    d.amount_fen = -1;
    expect_draft_refused(d, "AMOUNT_INVALID");
    d.amount_fen = FXB_POLICY_FEN_MAX;
    expect_draft_ok(d);
    d.amount_fen = FXB_POLICY_FEN_MAX + 1;
    expect_draft_refused(d, "AMOUNT_INVALID");

    d = draft("B-1");
    d.budget_fen = -1;
    expect_draft_refused(d, "BUDGET_INVALID");
    d.budget_fen = FXB_POLICY_FEN_MAX + 1;
    expect_draft_refused(d, "BUDGET_INVALID");
    d = draft("Q-1");
    d.quota = -1;
    expect_draft_refused(d, "QUOTA_INVALID");
    d.quota = FXB_POLICY_QUOTA_MAX + 1;
    expect_draft_refused(d, "QUOTA_INVALID");

    /* the window: until after from, or open-ended */
    d = draft("W-1");
    d.valid_until_ms = d.valid_from_ms;
    expect_draft_refused(d, "VALIDITY_INVALID");
    d.valid_until_ms = d.valid_from_ms + 1;
    expect_draft_ok(d);
    d.valid_from_ms = -1;
    expect_draft_refused(d, "VALIDITY_INVALID");

    d = draft("X-1");
    d.summary = repeat(buf, sizeof buf, "说", 500);
    expect_draft_ok(d);
    d.summary = repeat(buf, sizeof buf, "说", 501);
    expect_draft_refused(d, "SUMMARY_INVALID");
    d = draft("X-2");
    d.legal_basis = repeat(buf, sizeof buf, "法", 200);
    expect_draft_ok(d);
    d.legal_basis = repeat(buf, sizeof buf, "法", 201);
    expect_draft_refused(d, "LEGAL_BASIS_INVALID");
}

static void test_create_stores_a_draft_and_lists_it(void **state)
{
    fxb_store *s = *state;
    Fxb__V1__PolicyDraft d = draft("OLD-AGE-1");
    char id[FXB_POLICY_ID_LEN + 1];
    create_ok(s, &d, id);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_policy p = load_ok(s, id, &a);
    assert_string_equal(p.id, id);
    assert_string_equal(p.code, "OLD-AGE-1");
    assert_string_equal(p.title, "高龄津贴");
    assert_string_equal(p.department, DEPT);
    assert_string_equal(p.rule, d.rule);
    assert_int_equal(p.category, FXB__V1__POLICY_CATEGORY__POLICY_CATEGORY_PEOPLE);
    assert_int_equal(p.subject, FXB_SUBJECT_PERSON);
    assert_int_equal(p.kind, FXB_BENEFIT_CASH);
    assert_int_equal(p.amount_fen, 10000);
    assert_int_equal(p.budget_fen, 1000000);
    assert_int_equal(p.quota, 100);
    assert_false(p.confirm);
    assert_int_equal(p.status, FXB_POLICY_DRAFT);
    assert_int_equal(p.version, 1);
    char *created = cmd_str(s, "HGET {b:%s}:policy created_at_ms", id);
    assert_string_equal(created, "1767225600000");
    free(created);
    char *holder = cmd_str(s, "GET fxb:benefit:code:%s", "OLD-AGE-1");
    assert_string_equal(holder, id);
    free(holder);
    assert_int_equal(cmd_int(s, "ZSCORE fxb:benefit:policies %s", id), NOW);
    assert_int_equal(cmd_int(s, "ZSCORE fxb:benefit:dept:" DEPT " %s", id), NOW);
    /* a draft is not matched */
    assert_int_equal(cmd_int(s, "SISMEMBER " FXB_BENEFIT_PUBLISHED " %s", id), 0);
    /* an enterprise policy */
    Fxb__V1__PolicyDraft e = draft("SME-1");
    e.subject_type = FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
    e.confirmation_required = true;
    char eid[FXB_POLICY_ID_LEN + 1];
    create_ok(s, &e, eid);
    fxb_policy q = load_ok(s, eid, &a);
    assert_int_equal(q.subject, FXB_SUBJECT_ENTERPRISE);
    assert_true(q.confirm);
    assert_string_not_equal(id, eid);
    fxb_err err;
    assert_int_equal(fxb_policy_load(s, "b0000000000000000", &a, &p, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, "POLICY_NOT_FOUND");
    fxb_arena_free(&a);
}

static void test_codes_are_unique(void **state)
{
    fxb_store *s = *state;
    Fxb__V1__PolicyDraft d = draft("UNIQ-1");
    char id[FXB_POLICY_ID_LEN + 1], id2[FXB_POLICY_ID_LEN + 1];
    create_ok(s, &d, id);
    fxb_err err;
    assert_int_equal(fxb_policy_create(s, &d, "u1", NOW, id2, &err), FXB_ALREADY_EXISTS);
    assert_string_equal(err.reason, "POLICY_CODE_TAKEN");
    assert_string_equal(id2, "");
    assert_int_equal(cmd_int(s, "ZCARD %s", "fxb:benefit:policies"), 1);

    /* a code held by a policy that never came into being is taken over */
    redisReply *r = cmd(s, "SET fxb:benefit:code:GHOST-1 %s", "b00000000000000ff");
    freeReplyObject(r);
    Fxb__V1__PolicyDraft g = draft("GHOST-1");
    create_ok(s, &g, id2);
    char *holder = cmd_str(s, "GET fxb:benefit:code:%s", "GHOST-1");
    assert_string_equal(holder, id2);
    free(holder);

    /* renaming to a taken code is refused; to a free one releases the old */
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_policy cur = load_ok(s, id2, &a);
    Fxb__V1__PolicyDraft u = draft("UNIQ-1");
    int64_t v = 0;
    assert_int_equal(fxb_policy_update(s, &cur, 0, &u, NOW, &v, &err), FXB_ALREADY_EXISTS);
    assert_string_equal(err.reason, "POLICY_CODE_TAKEN");
    u.code = "RENAMED-1";
    assert_int_equal(fxb_policy_update(s, &cur, 0, &u, NOW, &v, &err), FXB_OK);
    assert_int_equal(v, 2);
    assert_int_equal(cmd_int(s, "EXISTS fxb:benefit:code:%s", "GHOST-1"), 0);
    holder = cmd_str(s, "GET fxb:benefit:code:%s", "RENAMED-1");
    assert_string_equal(holder, id2);
    free(holder);
    /* and the freed code can be used again */
    Fxb__V1__PolicyDraft again = draft("GHOST-1");
    create_ok(s, &again, id2);
    fxb_arena_free(&a);
}

static void test_only_a_draft_is_updated_and_only_at_the_version_read(void **state)
{
    fxb_store *s = *state;
    Fxb__V1__PolicyDraft d = draft("UPD-1");
    char id[FXB_POLICY_ID_LEN + 1];
    create_ok(s, &d, id);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_policy cur = load_ok(s, id, &a);
    fxb_err err;
    int64_t v = 0;
    d.title = "高龄津贴（修订）";
    d.amount_fen = 20000;
    assert_int_equal(fxb_policy_update(s, &cur, 1, &d, NOW + 1, &v, &err), FXB_OK);
    assert_int_equal(v, 2);
    fxb_policy p = load_ok(s, id, &a);
    assert_string_equal(p.title, "高龄津贴（修订）");
    assert_int_equal(p.amount_fen, 20000);
    assert_int_equal(p.version, 2);
    assert_int_equal(p.status, FXB_POLICY_DRAFT);

    /* a stale version: ABORTED, nothing written */
    d.title = "stale";
    assert_int_equal(fxb_policy_update(s, &p, 1, &d, NOW + 2, &v, &err), FXB_ABORTED);
    assert_string_equal(err.reason, "VERSION_CONFLICT");
    p = load_ok(s, id, &a);
    assert_string_equal(p.title, "高龄津贴（修订）");

    /* the department never changes */
    d = draft("UPD-1");
    d.department = "xx-police";
    assert_int_equal(fxb_policy_update(s, &p, 0, &d, NOW + 2, &v, &err), FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "DEPARTMENT_IMMUTABLE");

    /* a bad field: the draft's reason */
    d = draft("UPD-1");
    d.title = "";
    assert_int_equal(fxb_policy_update(s, &p, 0, &d, NOW + 2, &v, &err), FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "TITLE_INVALID");

    /* published: no more updates */
    assert_int_equal(fxb_policy_publish(s, schema, &p, NOW + 3, NULL, &v, &err), FXB_OK);
    p = load_ok(s, id, &a);
    d = draft("UPD-1");
    assert_int_equal(fxb_policy_update(s, &p, 0, &d, NOW + 4, &v, &err), FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "POLICY_STATE");
    /* also when the caller's copy is older than the record */
    assert_int_equal(fxb_policy_update(s, &cur, 0, &d, NOW + 4, &v, &err), FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "POLICY_STATE");
    fxb_arena_free(&a);
}

static void test_publish_refuses_rule_errors_with_line_column_and_token(void **state)
{
    fxb_store *s = *state;
    struct {
        const char *rule;
        fxb_subject_type subject;
        const char *reason;
        uint32_t line, col;
        const char *token;
    } cases[] = {
        {"age >= && x", FXB_SUBJECT_PERSON, "RULE_SYNTAX", 1, 8, "&&"},
        {"district == 3", FXB_SUBJECT_PERSON, "RULE_TYPE", 1, 13, "3"},
        {"age >= 80 &&\n  shoe_size > 3", FXB_SUBJECT_PERSON, "RULE_TYPE", 2, 3, "shoe_size"},
        {"employees > 10", FXB_SUBJECT_PERSON, "RULE_TYPE", 1, 1, "employees"},
    };
    long long rev = cmd_int(s, "INCR %s", FXB_BENEFIT_REV);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char code[16];
        snprintf(code, sizeof code, "BAD-%zu", i);
        Fxb__V1__PolicyDraft d = draft(code);
        d.rule = (char *)cases[i].rule;
        char id[FXB_POLICY_ID_LEN + 1];
        create_ok(s, &d, id);
        fxb_policy p = load_ok(s, id, &a);
        fxb_rule_error where;
        fxb_err err;
        int64_t v = 0;
        assert_int_equal(fxb_policy_publish(s, schema, &p, NOW, &where, &v, &err),
                         FXB_INVALID_ARGUMENT);
        assert_string_equal(err.reason, cases[i].reason);
        assert_int_equal(where.line, cases[i].line);
        assert_int_equal(where.col, cases[i].col);
        assert_string_equal(where.token, cases[i].token);
        char want[128];
        snprintf(want, sizeof want, "line %u, column %u, near '%s': ", cases[i].line, cases[i].col,
                 cases[i].token);
        if (strncmp(err.message, want, strlen(want)) != 0)
            fprintf(stderr, "message: %s\n", err.message);
        assert_memory_equal(err.message, want, strlen(want));
        /* nothing moved */
        p = load_ok(s, id, &a);
        assert_int_equal(p.status, FXB_POLICY_DRAFT);
        assert_int_equal(p.version, 1);
        assert_int_equal(cmd_int(s, "SISMEMBER " FXB_BENEFIT_PUBLISHED " %s", id), 0);
    }
    assert_int_equal(cmd_int(s, "GET %s", FXB_BENEFIT_REV), rev);
    fxb_arena_free(&a);
}

static void test_publish_and_close_move_the_published_set_and_wake_the_engines(void **state)
{
    fxb_store *s = *state;
    redisContext *sub = subscribe();
    Fxb__V1__PolicyDraft d = draft("PUB-1");
    char id[FXB_POLICY_ID_LEN + 1];
    create_ok(s, &d, id);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_policy p = load_ok(s, id, &a);
    fxb_err err;
    int64_t v = 0;

    /* a DRAFT cannot be closed */
    assert_int_equal(fxb_policy_close(s, &p, "end", NOW, &v, &err), FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "POLICY_STATE");

    assert_int_equal(fxb_policy_publish(s, schema, &p, NOW + 10, NULL, &v, &err), FXB_OK);
    assert_int_equal(v, 2);
    p = load_ok(s, id, &a);
    assert_int_equal(p.status, FXB_POLICY_PUBLISHED);
    assert_int_equal(p.version, 2);
    char *at = cmd_str(s, "HGET {b:%s}:policy published_at_ms", id);
    assert_string_equal(at, "1767225600010");
    free(at);
    assert_int_equal(cmd_int(s, "SISMEMBER " FXB_BENEFIT_PUBLISHED " %s", id), 1);
    assert_int_equal(cmd_int(s, "GET %s", FXB_BENEFIT_REV), 1);
    expect_message(sub, id);
    char **ids = NULL;
    size_t n = 0;
    assert_int_equal(fxb_policy_published_ids(s, &a, &ids, &n, &err), FXB_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], id);

    /* twice: the state is refused, nothing announced */
    assert_int_equal(fxb_policy_publish(s, schema, &p, NOW + 11, NULL, &v, &err),
                     FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "POLICY_STATE");

    assert_int_equal(fxb_policy_close(s, &p, "预算用尽", NOW + 20, &v, &err), FXB_OK);
    assert_int_equal(v, 3);
    p = load_ok(s, id, &a);
    assert_int_equal(p.status, FXB_POLICY_CLOSED);
    char *why = cmd_str(s, "HGET {b:%s}:policy close_reason", id);
    assert_string_equal(why, "预算用尽");
    free(why);
    assert_int_equal(cmd_int(s, "SISMEMBER " FXB_BENEFIT_PUBLISHED " %s", id), 0);
    assert_int_equal(cmd_int(s, "GET %s", FXB_BENEFIT_REV), 2);
    expect_message(sub, id);
    assert_int_equal(fxb_policy_close(s, &p, "again", NOW + 30, &v, &err), FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "POLICY_STATE");
    assert_int_equal(fxb_policy_published_ids(s, &a, &ids, &n, &err), FXB_OK);
    assert_int_equal(n, 0);
    redisFree(sub);
    fxb_arena_free(&a);
}

static void test_publish_refuses_a_policy_changed_meanwhile(void **state)
{
    fxb_store *s = *state;
    Fxb__V1__PolicyDraft d = draft("RACE-1");
    char id[FXB_POLICY_ID_LEN + 1];
    create_ok(s, &d, id);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_policy old = load_ok(s, id, &a);
    fxb_policy cur = load_ok(s, id, &a);
    fxb_err err;
    int64_t v = 0;
    d.rule = "age >= 70";
    assert_int_equal(fxb_policy_update(s, &cur, 0, &d, NOW, &v, &err), FXB_OK);
    /* the rule compiled is not the one stored any more */
    assert_int_equal(fxb_policy_publish(s, schema, &old, NOW, NULL, &v, &err), FXB_ABORTED);
    assert_string_equal(err.reason, "VERSION_CONFLICT");
    assert_int_equal(load_ok(s, id, &a).status, FXB_POLICY_DRAFT);
    fxb_arena_free(&a);
}

static void test_windows_and_the_engines_notes(void **state)
{
    fxb_store *s = *state;
    fxb_policy p = {.valid_from_ms = 100, .valid_until_ms = 200};
    assert_false(fxb_policy_in_window(&p, 99));
    assert_true(fxb_policy_in_window(&p, 100));
    assert_true(fxb_policy_in_window(&p, 199));
    assert_false(fxb_policy_in_window(&p, 200));
    p.valid_until_ms = 0;
    assert_true(fxb_policy_in_window(&p, INT64_MAX));

    Fxb__V1__PolicyDraft d = draft("NOTE-1");
    char id[FXB_POLICY_ID_LEN + 1];
    create_ok(s, &d, id);
    fxb_err err;
    assert_int_equal(fxb_policy_note_match(s, id, NOW + 5, 12345, &err), FXB_OK);
    assert_int_equal(cmd_int(s, "HGET {b:%s}:policy last_match_subjects", id), 12345);
    assert_int_equal(cmd_int(s, "HGET {b:%s}:policy last_match_at_ms", id), NOW + 5);
    /* never a stub for a policy that is gone */
    assert_int_equal(fxb_policy_note_match(s, "b00000000000000aa", NOW, 1, &err), FXB_OK);
    assert_int_equal(cmd_int(s, "EXISTS {b:%s}:policy", "b00000000000000aa"), 0);
}

static void test_hashes_read_back_as_written(void **state)
{
    fxb_store *s = *state;
    Fxb__V1__PolicyDraft d = draft("HASH-1");
    d.valid_until_ms = NOW + 86400000;
    char id[FXB_POLICY_ID_LEN + 1];
    create_ok(s, &d, id);
    char key[64];
    snprintf(key, sizeof key, "{b:%s}:policy", id);
    redisReply *r = cmd(s, "HGETALL %s", key);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_policy p;
    assert_true(fxb_policy_from_hash(id, r, &a, &p));
    assert_int_equal(p.valid_until_ms, NOW + 86400000);
    assert_false(fxb_policy_from_hash("nope", r, &a, &p));
    freeReplyObject(r);
    r = cmd(s, "HGETALL %s", "{b:b0000000000000000}:policy");
    assert_false(fxb_policy_from_hash("b0000000000000000", r, &a, &p));
    freeReplyObject(r);
    fxb_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_ids_are_b_and_16_lower_hex),
        cmocka_unit_test(test_every_draft_field_is_bounded),
        cmocka_unit_test_setup_teardown(test_create_stores_a_draft_and_lists_it, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_codes_are_unique, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_only_a_draft_is_updated_and_only_at_the_version_read,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_publish_refuses_rule_errors_with_line_column_and_token,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(
            test_publish_and_close_move_the_published_set_and_wake_the_engines, each_setup,
            each_teardown),
        cmocka_unit_test_setup_teardown(test_publish_refuses_a_policy_changed_meanwhile, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_windows_and_the_engines_notes, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_hashes_read_back_as_written, each_setup,
                                        each_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
