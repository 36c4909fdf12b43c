/* The application core (services/filing/application.c) against a real
 * Redis (db 1, flushed before each test): a transition is refused from
 * any status but the ones it leaves, naming the current one; it writes the
 * record and one history entry; the department queue, the running list
 * and the timers follow the new status; notices go to the subject and the
 * agent; an ended application releases its wallet entries; the sweeper
 * claims each due timer once and ends the application it names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "services/catalog/catalog.h"
#include "services/filing/application.h"
#include "services/material/material.h"

#define TEST_DB 1
#define AID     "AAAAAAAAAAAAAAAAAAAAAA"
#define AID2    "BBBBBBBBBBBBBBBBBBBBBB"
#define SUBJECT "acc-app-1"
#define AGENT   "acc-agent-1"
#define DEPT    "xx-hf"
#define NOW     1764200000000LL /* 2025-11-27 */

#define ST(x) FXB__V1__APPLICATION_STATUS__APPLICATION_STATUS_##x

static char test_url[FXB_STORE_URL_MAX + 64];

typedef struct fixture {
    fxb_store *s;
    fxb_arena a;
} fixture;

static int group_setup(void **state)
{
    (void)state;
    return fxb_test_redis_url(TEST_DB, test_url, sizeof test_url);
}

static int each_setup(void **state)
{
    fxb_store_options opt = {.url = test_url};
    fxb_err err;
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->s = fxb_store_new(&opt, &err);
    if (f->s == NULL || !fxb_store_ping(f->s)) {
        fprintf(stderr, "cannot reach %s\n", test_url);
        fxb_store_free(f->s);
        free(f);
        return -1;
    }
    redisReply *r = fxb_store_command(f->s, &err, "FLUSHDB");
    if (r == NULL) {
        fxb_store_free(f->s);
        free(f);
        return -1;
    }
    fxb_catalog_cache_clear(); /* a flushed store starts its revisions again */
    freeReplyObject(r);
    fxb_arena_init(&f->a, 0);
    *state = f;
    return 0;
}

static int each_teardown(void **state)
{
    fixture *f = *state;
    fxb_arena_free(&f->a);
    fxb_store_free(f->s);
    free(f);
    return 0;
}

/* Runs a command and returns its reply (the test frees it). */
static redisReply *cmd(fxb_store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static redisReply *cmd(fxb_store *s, const char *fmt, ...)
{
    fxb_err err;
    va_list ap;
    va_start(ap, fmt);
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* split on spaces: the tests never need spaces inside an argument */
    const char *argv[32];
    int argc = 0;
    char *save = NULL;
    for (char *w = strtok_r(buf, " ", &save); w != NULL && argc < 32;
         w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    redisReply *r = fxb_store_commandv(s, &err, argc, argv, NULL);
    assert_non_null(r);
    return r;
}

static long long int_cmd(fxb_store *s, const char *verb, const char *arg)
{
    redisReply *r = cmd(s, "%s %s", verb, arg);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                  : -1;
    freeReplyObject(r);
    return v;
}

/* A record as CreateApplication writes it, in status word. */
static void put_app(fixture *f, const char *aid, const char *status, const char *grant)
{
    redisReply *r = cmd(f->s,
                        "HSET {a:%s}:app subject " SUBJECT " filed_by %s grant_id %s item_code "
                        "XX-GJJ-0001 item_name 住房公积金提取 department " DEPT
                        " guide_version 1 status %s created_at_ms 1 submitted_at_ms 5 "
                        "submission 1",
                        aid, grant[0] ? AGENT : SUBJECT, grant[0] ? grant : "-", status);
    freeReplyObject(r);
    if (grant[0] == '\0') {
        r = cmd(f->s, "HSET {a:%s}:app grant_id x", aid);
        freeReplyObject(r);
        r = cmd(f->s, "HDEL {a:%s}:app grant_id", aid);
        freeReplyObject(r);
    }
}

static fxb_code change(fixture *f, const char *aid, const fxb_app_status *from, size_t n_from,
                       fxb_app_status to, const char *const *set, const char *const *del,
                       int64_t now, fxb_err *err)
{
    fxb_app_change c = {.aid = aid,
                        .from = from,
                        .n_from = n_from,
                        .to = to,
                        .actor_role = "officer",
                        .actor_id = "officer-1",
                        .reason = "测试",
                        .legal_basis = "",
                        .set = set,
                        .del = del,
                        .now_ms = now};
    return fxb_app_transition(f->s, &f->a, &c, err);
}

static long long zscore(fxb_store *s, const char *key, const char *member)
{
    fxb_err err;
    const char *argv[] = {"ZSCORE", key, member};
    redisReply *r = fxb_store_commandv(s, &err, 3, argv, NULL);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
    freeReplyObject(r);
    return v;
}

static long long inbox_len(fxb_store *s, const char *who)
{
    char key[128];
    snprintf(key, sizeof key, "{u:%s}:inbox", who);
    return int_cmd(s, "XLEN", key);
}

/* --- tests ------------------------------------------------------------------ */

static void test_status_words_round_trip_and_ended_statuses(void **state)
{
    (void)state;
    for (int s = ST(DRAFT); s <= ST(REVOKED); s++) {
        const char *w = fxb_app_status_word((fxb_app_status)s);
        assert_non_null(w);
        assert_int_equal(fxb_app_status_parse(w), s);
        assert_true(fxb_app_status_zh((fxb_app_status)s)[0] != '\0');
    }
    assert_null(fxb_app_status_word(ST(UNSPECIFIED)));
    assert_int_equal(fxb_app_status_parse("nonsense"), ST(UNSPECIFIED));
    assert_true(fxb_app_status_ended(ST(DENIED)));
    assert_true(fxb_app_status_ended(ST(COMPLETED)));
    assert_true(fxb_app_status_ended(ST(WITHDRAWN)));
    assert_true(fxb_app_status_ended(ST(REVOKED)));
    assert_false(fxb_app_status_ended(ST(APPROVED)));
    assert_false(fxb_app_status_ended(ST(DRAFT)));
}

static void test_a_transition_from_another_status_is_refused_naming_it(void **state)
{
    fixture *f = *state;
    fxb_err err;
    put_app(f, AID, "draft", "");
    const fxb_app_status from[] = {ST(SUBMITTED)};
    assert_int_equal(change(f, AID, from, 1, ST(ACCEPTED), NULL, NULL, NOW, &err),
                     FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, FXB_APP_STATE);
    assert_non_null(strstr(err.message, "DRAFT"));
    assert_non_null(strstr(err.message_zh, "草稿"));
    Fxb__V1__Application *app;
    assert_int_equal(fxb_app_read(f->s, &f->a, AID, true, NOW, &app, &err), FXB_OK);
    assert_int_equal(app->status, ST(DRAFT));
    assert_int_equal(app->n_history, 0);
    /* unknown ids */
    assert_int_equal(change(f, AID2, from, 1, ST(ACCEPTED), NULL, NULL, NOW, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, FXB_APP_NOT_FOUND);
    assert_int_equal(change(f, "bad id", from, 1, ST(ACCEPTED), NULL, NULL, NOW, &err),
                     FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_app_read(f->s, &f->a, "short", false, NOW, &app, &err),
                     FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, FXB_APP_ID_INVALID);
}

static void test_a_transition_writes_fields_and_one_history_entry(void **state)
{
    fixture *f = *state;
    fxb_err err;
    put_app(f, AID, "submitted", "");
    redisReply *r = cmd(f->s, "HSET {a:%s}:app denial_reason old", AID);
    freeReplyObject(r);
    const fxb_app_status from[] = {ST(DRAFT), ST(SUBMITTED)};
    const char *set[] = {APP_F_ACCEPTED, "1000", APP_F_DEADLINE_MS, "9000", APP_F_DEADLINE_DATE,
                         "20251205",     NULL};
    const char *del[] = {APP_F_DENIAL_REASON, NULL};
    assert_int_equal(change(f, AID, from, 2, ST(ACCEPTED), set, del, NOW, &err), FXB_OK);
    Fxb__V1__Application *app;
    assert_int_equal(fxb_app_read(f->s, &f->a, AID, true, NOW, &app, &err), FXB_OK);
    assert_int_equal(app->status, ST(ACCEPTED));
    assert_int_equal(app->accepted_at_ms, 1000);
    assert_int_equal(app->deadline_ms, 9000);
    assert_int_equal(app->deadline_date, 20251205);
    assert_string_equal(app->denial_reason, "");
    assert_int_equal(app->n_history, 1);
    assert_int_equal(app->history[0]->from, ST(SUBMITTED));
    assert_int_equal(app->history[0]->to, ST(ACCEPTED));
    assert_int_equal(app->history[0]->at_ms, NOW);
    assert_string_equal(app->history[0]->actor_role, "officer");
    assert_string_equal(app->history[0]->actor_id, "officer-1");
    assert_string_equal(app->history[0]->reason, "测试");
    /* past its deadline and undecided: overdue */
    assert_int_equal(app->time_state, FXB__V1__TIME_STATE__TIME_STATE_OVERDUE);
    /* reads without history leave it out */
    assert_int_equal(fxb_app_read(f->s, &f->a, AID, false, NOW, &app, &err), FXB_OK);
    assert_int_equal(app->n_history, 0);
}

static void test_the_indexes_follow_the_status(void **state)
{
    fixture *f = *state;
    fxb_err err;
    put_app(f, AID, "draft", "");
    const fxb_app_status from_draft[] = {ST(DRAFT)};
    const char *fix[] = {APP_F_FIX_BY, "7000", NULL};
    assert_int_equal(change(f, AID, from_draft, 1, ST(NEEDS_CORRECTION), fix, NULL, NOW, &err),
                     FXB_OK);
    assert_int_equal(zscore(f->s, FXB_APP_TIMERS_KEY, AID " fix"), 7000);
    assert_int_equal(zscore(f->s, "fxb:dept:" DEPT ":queue", AID), -1);

    const fxb_app_status from_nc[] = {ST(NEEDS_CORRECTION)};
    assert_int_equal(change(f, AID, from_nc, 1, ST(SUBMITTED), NULL, NULL, NOW, &err), FXB_OK);
    assert_int_equal(zscore(f->s, FXB_APP_TIMERS_KEY, AID " fix"), -1);
    assert_int_equal(zscore(f->s, "fxb:dept:" DEPT ":queue", AID), 5);

    const fxb_app_status from_sub[] = {ST(SUBMITTED)};
    const char *acc[] = {
        APP_F_DEADLINE_MS, "8000", APP_F_TOLERATED, "M02", APP_F_SUPPLEMENT_BY, "6000", NULL};
    assert_int_equal(change(f, AID, from_sub, 1, ST(ACCEPTED), acc, NULL, NOW, &err), FXB_OK);
    assert_int_equal(zscore(f->s, "fxb:dept:" DEPT ":running", AID), 8000);
    assert_int_equal(zscore(f->s, FXB_APP_TIMERS_KEY, AID " supplement"), 6000);
    assert_int_equal(zscore(f->s, "fxb:dept:" DEPT ":queue", AID), 5);

    const fxb_app_status from_acc[] = {ST(ACCEPTED)};
    assert_int_equal(change(f, AID, from_acc, 1, ST(WITHDRAWN), NULL, NULL, NOW, &err), FXB_OK);
    assert_int_equal(zscore(f->s, "fxb:dept:" DEPT ":running", AID), -1);
    assert_int_equal(zscore(f->s, "fxb:dept:" DEPT ":queue", AID), -1);
    assert_int_equal(int_cmd(f->s, "ZCARD", FXB_APP_TIMERS_KEY), 0);
}

static void test_notices_go_to_the_subject_and_to_the_agent(void **state)
{
    fixture *f = *state;
    fxb_err err;
    put_app(f, AID, "draft", "G1");
    put_app(f, AID2, "draft", "");
    const fxb_app_status from[] = {ST(DRAFT)};
    assert_int_equal(change(f, AID, from, 1, ST(SUBMITTED), NULL, NULL, NOW, &err), FXB_OK);
    assert_int_equal(inbox_len(f->s, SUBJECT), 1);
    assert_int_equal(inbox_len(f->s, AGENT), 1);
    assert_int_equal(change(f, AID2, from, 1, ST(SUBMITTED), NULL, NULL, NOW, &err), FXB_OK);
    assert_int_equal(inbox_len(f->s, SUBJECT), 2);
    assert_int_equal(inbox_len(f->s, AGENT), 1);
    redisReply *r = cmd(f->s, "XREVRANGE {u:%s}:inbox + - COUNT 1", SUBJECT);
    const redisReply *kv = r->element[0]->element[1];
    bool kind = false, ref = false, body = false;
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        if (strcmp(kv->element[i]->str, "kind") == 0)
            kind = strcmp(kv->element[i + 1]->str, "filing.status") == 0;
        if (strcmp(kv->element[i]->str, "ref") == 0)
            ref = strcmp(kv->element[i + 1]->str, AID2) == 0;
        if (strcmp(kv->element[i]->str, "body") == 0)
            body = strstr(kv->element[i + 1]->str, "住房公积金提取") != NULL;
    }
    freeReplyObject(r);
    assert_true(kind && ref && body);
}

static void test_an_ended_application_releases_its_wallet_entries(void **state)
{
    fixture *f = *state;
    fxb_err err;
    put_app(f, AID, "submitted", "");
    redisReply *r = cmd(f->s, "HSET {u:%s}:material:M1 kind upload in_use 1", SUBJECT);
    freeReplyObject(r);
    r = cmd(f->s, "HSET {u:%s}:material:M2 kind licence in_use 2", SUBJECT);
    freeReplyObject(r);
    r = cmd(f->s, "HSET {a:%s}:materials M01 M1 M02 +M2", AID);
    freeReplyObject(r);
    const fxb_app_status from[] = {ST(SUBMITTED)};
    assert_int_equal(change(f, AID, from, 1, ST(WITHDRAWN), NULL, NULL, NOW, &err), FXB_OK);
    assert_int_equal(int_cmd(f->s, "HGET", "{u:" SUBJECT "}:material:M1 in_use"), 0);
    assert_int_equal(int_cmd(f->s, "HGET", "{u:" SUBJECT "}:material:M2 in_use"), 1);
    /* the materials as read: the "+" marks what the server attached */
    Fxb__V1__Application *app;
    assert_int_equal(fxb_app_read(f->s, &f->a, AID, false, NOW, &app, &err), FXB_OK);
    assert_int_equal(app->n_materials, 2);
    assert_string_equal(app->materials[1]->material_code, "M02");
    assert_string_equal(app->materials[1]->material_ids[0], "M2");
    assert_true(app->materials[1]->auto_attached);
    assert_false(app->materials[0]->auto_attached);
}

static void test_wallet_use_counts_only_existing_entries_and_never_below_zero(void **state)
{
    fixture *f = *state;
    fxb_err err;
    redisReply *r = cmd(f->s, "HSET {u:%s}:material:M1 kind upload in_use 0", SUBJECT);
    freeReplyObject(r);
    const char *ids[] = {"M1", "GONE"};
    assert_int_equal(fxb_app_material_use(f->s, SUBJECT, ids, 2, 1, &err), FXB_OK);
    assert_int_equal(int_cmd(f->s, "HGET", "{u:" SUBJECT "}:material:M1 in_use"), 1);
    /* a deleted entry gets no stray hash */
    assert_int_equal(int_cmd(f->s, "EXISTS", "{u:" SUBJECT "}:material:GONE"), 0);
    assert_int_equal(fxb_app_material_use(f->s, SUBJECT, ids, 1, -1, &err), FXB_OK);
    assert_int_equal(fxb_app_material_use(f->s, SUBJECT, ids, 1, -1, &err), FXB_OK);
    assert_int_equal(int_cmd(f->s, "HGET", "{u:" SUBJECT "}:material:M1 in_use"), 0);
}

static void test_problems_are_stored_and_read_back(void **state)
{
    fixture *f = *state;
    fxb_err err;
    Fxb__V1__Problem p1, p2;
    fxb__v1__problem__init(&p1);
    fxb__v1__problem__init(&p2);
    p1.material_code = "M01";
    p1.material_name = "房屋租赁合同";
    p1.kind = FXB__V1__PROBLEM_KIND__PROBLEM_KIND_MISSING;
    p1.why = "缺少";
    p1.how_to_fix = "请上传";
    p2 = p1;
    p2.material_code = "M02";
    p2.kind = FXB__V1__PROBLEM_KIND__PROBLEM_KIND_OFFICER_NOTE;
    Fxb__V1__Problem *list[] = {&p1, &p2};
    char *hex = fxb_app_problems_encode(&f->a, list, 2);
    assert_non_null(hex);
    assert_string_equal(fxb_app_problems_encode(&f->a, list, 0), "");
    put_app(f, AID, "draft", "");
    const fxb_app_status from[] = {ST(DRAFT)};
    const char *set[] = {APP_F_PROBLEMS, hex, APP_F_FIX_BY, "99999", NULL};
    assert_int_equal(change(f, AID, from, 1, ST(NEEDS_CORRECTION), set, NULL, NOW, &err), FXB_OK);
    Fxb__V1__Application *app;
    assert_int_equal(fxb_app_read(f->s, &f->a, AID, false, NOW, &app, &err), FXB_OK);
    assert_int_equal(app->n_problems, 2);
    assert_string_equal(app->problems[0]->material_name, "房屋租赁合同");
    assert_int_equal(app->problems[1]->kind, FXB__V1__PROBLEM_KIND__PROBLEM_KIND_OFFICER_NOTE);
    /* the notice lists them */
    redisReply *r = cmd(f->s, "XREVRANGE {u:%s}:inbox + - COUNT 1", SUBJECT);
    const redisReply *kv = r->element[0]->element[1];
    bool listed = false;
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (strcmp(kv->element[i]->str, "body") == 0)
            listed = strstr(kv->element[i + 1]->str, "房屋租赁合同") != NULL;
    freeReplyObject(r);
    assert_true(listed);
}

static void test_the_sweeper_ends_what_fell_due_and_claims_each_timer_once(void **state)
{
    fixture *f = *state;
    fxb_err err;
    put_app(f, AID, "draft", "");
    put_app(f, AID2, "draft", "");
    const fxb_app_status from[] = {ST(DRAFT)};
    const char *due[] = {APP_F_FIX_BY, "1000", NULL};
    const char *later[] = {APP_F_FIX_BY, "5000", NULL};
    assert_int_equal(change(f, AID, from, 1, ST(NEEDS_CORRECTION), due, NULL, NOW, &err), FXB_OK);
    assert_int_equal(change(f, AID2, from, 1, ST(NEEDS_CORRECTION), later, NULL, NOW, &err),
                     FXB_OK);
    size_t done = 99;
    assert_int_equal(fxb_app_sweep(f->s, 2000, 100, &done, &err), FXB_OK);
    assert_int_equal(done, 1);
    Fxb__V1__Application *app;
    assert_int_equal(fxb_app_read(f->s, &f->a, AID, true, NOW, &app, &err), FXB_OK);
    assert_int_equal(app->status, ST(WITHDRAWN));
    assert_string_equal(app->history[app->n_history - 1]->actor_role, "system");
    assert_string_equal(app->history[app->n_history - 1]->reason, "补正期限已过，视为撤回");
    assert_int_equal(fxb_app_read(f->s, &f->a, AID2, false, NOW, &app, &err), FXB_OK);
    assert_int_equal(app->status, ST(NEEDS_CORRECTION));
    /* a timer another server claimed (removed) first is not acted on */
    const char *argv[] = {"ZREM", FXB_APP_TIMERS_KEY, AID2 " fix"};
    redisReply *r = fxb_store_commandv(f->s, &err, 3, argv, NULL);
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(fxb_app_sweep(f->s, 9000, 100, &done, &err), FXB_OK);
    assert_int_equal(done, 0);
    assert_int_equal(fxb_app_read(f->s, &f->a, AID2, false, NOW, &app, &err), FXB_OK);
    assert_int_equal(app->status, ST(NEEDS_CORRECTION));
    /* a stale timer (the record's deadline is later) goes back at that time */
    const char *zadd[] = {"ZADD", FXB_APP_TIMERS_KEY, "100", AID2 " fix"};
    r = fxb_store_commandv(f->s, &err, 4, zadd, NULL);
    freeReplyObject(r);
    assert_int_equal(fxb_app_sweep(f->s, 3000, 100, &done, &err), FXB_OK);
    assert_int_equal(done, 0);
    assert_int_equal(zscore(f->s, FXB_APP_TIMERS_KEY, AID2 " fix"), 5000);
}

static void test_a_broken_commitment_not_rectified_is_revoked_and_recorded(void **state)
{
    fixture *f = *state;
    fxb_err err;
    put_app(f, AID, "approved", "");
    const fxb_app_status from[] = {ST(APPROVED)};
    const char *set[] = {APP_F_BROKEN, "1", APP_F_RECTIFY_BY, "1500", NULL};
    assert_int_equal(change(f, AID, from, 1, ST(APPROVED), set, NULL, NOW, &err), FXB_OK);
    assert_int_equal(zscore(f->s, FXB_APP_TIMERS_KEY, AID " rectify"), 1500);
    size_t done = 0;
    assert_int_equal(fxb_app_sweep(f->s, 1000, 100, &done, &err), FXB_OK);
    assert_int_equal(done, 0);
    assert_int_equal(fxb_app_sweep(f->s, 2000, 100, &done, &err), FXB_OK);
    assert_int_equal(done, 1);
    Fxb__V1__Application *app;
    assert_int_equal(fxb_app_read(f->s, &f->a, AID, false, NOW, &app, &err), FXB_OK);
    assert_int_equal(app->status, ST(REVOKED));
    redisReply *r = cmd(f->s, "HGET fxb:credit:%s false_commitment", SUBJECT);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, AID);
    freeReplyObject(r);
}

static void test_a_long_item_name_still_gives_a_valid_notice(void **state)
{
    fixture *f = *state;
    fxb_err err;
    put_app(f, AID, "in_review", "");
    char name[64 * 3 + 1] = "";
    for (int i = 0; i < 60; i++)
        strcat(name, "长");
    const char *argv[] = {"HSET", "{a:" AID "}:app", APP_F_ITEM_NAME, name};
    redisReply *r = fxb_store_commandv(f->s, &err, 4, argv, NULL);
    assert_non_null(r);
    freeReplyObject(r);
    const fxb_app_status from[] = {ST(IN_REVIEW)};
    assert_int_equal(change(f, AID, from, 1, ST(SPECIAL_PROCEDURE), NULL, NULL, NOW, &err), FXB_OK);
    /* the title is cut at a character boundary, so the notice is taken */
    assert_int_equal(inbox_len(f->s, SUBJECT), 1);
    Fxb__V1__Application *app;
    assert_int_equal(fxb_app_read(f->s, &f->a, AID, false, NOW, &app, &err), FXB_OK);
    assert_int_equal(app->time_state, FXB__V1__TIME_STATE__TIME_STATE_PAUSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_words_round_trip_and_ended_statuses),
        cmocka_unit_test_setup_teardown(test_a_transition_from_another_status_is_refused_naming_it,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_a_transition_writes_fields_and_one_history_entry,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_the_indexes_follow_the_status, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_notices_go_to_the_subject_and_to_the_agent, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_an_ended_application_releases_its_wallet_entries,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(
            test_wallet_use_counts_only_existing_entries_and_never_below_zero, each_setup,
            each_teardown),
        cmocka_unit_test_setup_teardown(test_problems_are_stored_and_read_back, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_a_long_item_name_still_gives_a_valid_notice,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(
            test_the_sweeper_ends_what_fell_due_and_claims_each_timer_once, each_setup,
            each_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_broken_commitment_not_rectified_is_revoked_and_recorded, each_setup,
            each_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
