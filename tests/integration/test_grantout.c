/* The write-out of a full match (services/benefit/grantout.h) against a
 * private redis-server: every subject matched exactly once over several
 * connections, the quota never exceeded, notices for the granted and the
 * awaiting, a stop asked by the caller, a refused batch skipped, and the
 * argument checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "services/benefit/entitlement.h"
#include "services/benefit/grantout.h"
#include "store/inbox.h"

#define PID    "b00000000000000aa"
#define PKEY   "{b:" PID "}:policy"
#define ENT    "{b:" PID "}:ent"
#define AMOUNT 2000

typedef struct world {
    fxb_store *st[3];
    char (*names)[32];
    const char **subjects;
    size_t n;
} world;

static void cmd(fxb_store *s, const char *fmt, const char *arg)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, fmt, arg);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

static long long num(fxb_store *s, const char *fmt, const char *arg)
{
    fxb_err err;
    return fxb_test_reply_number(fxb_store_command(s, &err, fmt, arg));
}

/* n persons p<i>, the even ones with an account acct-<i>; a published cash
 * policy with the given quota and confirmation. */
static world *make_world(size_t n, const char *quota, bool confirm)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    for (int i = 0; i < 3; i++) {
        w->st[i] = fxb_test_store_open(fxb_test_private_url());
        assert_non_null(w->st[i]);
    }
    cmd(w->st[0], "FLUSHALL", NULL);
    w->n = n;
    w->names = calloc(n, sizeof *w->names);
    w->subjects = calloc(n, sizeof *w->subjects);
    assert_non_null(w->names);
    assert_non_null(w->subjects);
    for (size_t i = 0; i < n; i++) {
        snprintf(w->names[i], sizeof w->names[i], "p%024zx", i);
        w->subjects[i] = w->names[i];
        if (i % 2 == 0) {
            char key[64], acct[32];
            snprintf(key, sizeof key, "{p:%s}:account", w->names[i]);
            snprintf(acct, sizeof acct, "acct-%zu", i);
            fxb_err err;
            redisReply *r = fxb_store_command(w->st[0], &err, "SET %s %s", key, acct);
            assert_non_null(r);
            freeReplyObject(r);
        }
    }
    fxb_err err;
    redisReply *r =
        fxb_store_command(w->st[0], &err,
                          "HSET " PKEY " status 2 benefit_kind 1 amount_fen %d quota %s "
                          "budget_fen 0 confirm %d valid_from_ms 0 valid_until_ms 0",
                          AMOUNT, quota, confirm ? 1 : 0);
    assert_non_null(r);
    freeReplyObject(r);
    return w;
}

static void free_world(world *w)
{
    for (int i = 0; i < 3; i++)
        fxb_store_free(w->st[i]);
    free(w->names);
    free(w->subjects);
    free(w);
}

static fxb_policy policy(bool confirm)
{
    fxb_policy p = {.code = "T-1",
                    .title = "测试补贴",
                    .category = 2,
                    .subject = FXB_SUBJECT_PERSON,
                    .kind = FXB_BENEFIT_CASH,
                    .amount_fen = AMOUNT,
                    .confirm = confirm,
                    .status = FXB_POLICY_PUBLISHED};
    snprintf(p.id, sizeof p.id, "%s", PID);
    return p;
}

/* The messages in every account's inbox (the even subjects'). */
static long long inbox_total(world *w)
{
    long long total = 0;
    for (size_t i = 0; i < w->n; i += 2) {
        char key[64];
        snprintf(key, sizeof key, "{u:acct-%zu}:inbox", i);
        total += num(w->st[0], "XLEN %s", key);
    }
    return total;
}

static void test_three_connections_match_every_subject_once_within_the_quota(void **state)
{
    (void)state;
    enum { N = 5 * FXB_ENT_BATCH_MAX + 321 };
    world *w = make_world(N, "4000", false);
    fxb_policy p = policy(false);
    fxb_grantout_counts c;
    fxb_err err;
    assert_int_equal(fxb_grantout_run(w->st, 3, &p, w->subjects, N, "engine", NULL, NULL, &c, &err),
                     FXB_OK);
    assert_int_equal(c.granted, 4000);
    assert_int_equal(c.held, N - 4000);
    assert_int_equal(c.waiting + c.unchanged + c.not_open + c.refused + c.unsent, 0);
    assert_int_equal(num(w->st[0], "HLEN %s", ENT), N);
    assert_int_equal(num(w->st[0], "HGET " PKEY " %s", "grants_used"), 4000);
    /* notices: the granted persons with an account, nobody else */
    long long want = 0;
    for (size_t i = 0; i < N; i += 2) {
        fxb_ent e;
        fxb_err gerr;
        assert_int_equal(fxb_ent_get(w->st[0], PID, w->names[i], &e, &gerr), FXB_OK);
        want += e.state == FXB_ENT_GRANTED;
    }
    assert_int_equal(c.notices, want);
    assert_int_equal(inbox_total(w), want);
    /* a second run changes nothing and notifies nobody */
    assert_int_equal(fxb_grantout_run(w->st, 2, &p, w->subjects, N, "engine", NULL, NULL, &c, &err),
                     FXB_OK);
    assert_int_equal(c.unchanged, N);
    assert_int_equal(c.notices, 0);
    assert_int_equal(inbox_total(w), want);
    free_world(w);
}

static void test_awaiting_confirmation_is_notified_as_such(void **state)
{
    (void)state;
    world *w = make_world(1500, "0", true);
    fxb_policy p = policy(true);
    fxb_grantout_counts c;
    fxb_err err;
    assert_int_equal(
        fxb_grantout_run(w->st, 2, &p, w->subjects, 1500, "engine", NULL, NULL, &c, &err), FXB_OK);
    assert_int_equal(c.waiting, 1500);
    assert_int_equal(c.granted, 0);
    assert_int_equal(c.notices, 750);
    fxb_err e2;
    redisReply *r = fxb_store_command(w->st[0], &e2, "XRANGE {u:acct-0}:inbox - +");
    assert_non_null(r);
    assert_int_equal(r->elements, 1);
    const redisReply *kv = r->element[0]->element[1];
    assert_string_equal(kv->element[0]->str, "kind");
    assert_string_equal(kv->element[1]->str, "benefit.awaiting");
    freeReplyObject(r);
    free_world(w);
}

typedef struct stopper {
    int calls, stop_at;
} stopper;

static fxb_code stop_go(void *arg, fxb_err *err)
{
    stopper *s = arg;
    if (++s->calls >= s->stop_at)
        return fxb_err_set(err, FXB_ABORTED, "ENGINE_INTERRUPTED", "系统繁忙，请稍后重试",
                           "the lease was lost");
    return FXB_OK;
}

static void test_a_stop_from_the_caller_ends_every_thread_and_keeps_what_was_done(void **state)
{
    (void)state;
    enum { N = 40 * FXB_ENT_BATCH_MAX };
    world *w = make_world(N, "0", false);
    fxb_policy p = policy(false);
    fxb_grantout_counts c;
    fxb_err err;
    stopper st = {0, 3};
    assert_int_equal(
        fxb_grantout_run(w->st, 2, &p, w->subjects, N, "engine", stop_go, &st, &c, &err),
        FXB_ABORTED);
    assert_string_equal(err.reason, "ENGINE_INTERRUPTED");
    assert_int_equal(st.calls, 3);
    /* the caller did two batches; the other thread some, never all */
    assert_true(c.granted >= 2 * FXB_ENT_BATCH_MAX);
    assert_true(c.granted < N);
    assert_int_equal(c.granted % FXB_ENT_BATCH_MAX, 0);
    assert_int_equal(num(w->st[0], "HLEN %s", ENT), (long long)c.granted);
    /* the rest comes with the next run (a match is idempotent) */
    assert_int_equal(fxb_grantout_run(w->st, 3, &p, w->subjects, N, "engine", NULL, NULL, &c, &err),
                     FXB_OK);
    assert_int_equal(num(w->st[0], "HLEN %s", ENT), N);
    assert_int_equal(num(w->st[0], "HGET " PKEY " %s", "grants_used"), N);
    free_world(w);
}

static void test_a_refused_batch_is_skipped_and_the_others_are_written(void **state)
{
    (void)state;
    enum { N = 3 * FXB_ENT_BATCH_MAX };
    world *w = make_world(N, "0", false);
    /* subject 1500 is not a subject id: its batch (the second) is refused */
    snprintf(w->names[1500], sizeof w->names[1500], "not-a-subject");
    fxb_policy p = policy(false);
    fxb_grantout_counts c;
    fxb_err err;
    assert_int_equal(fxb_grantout_run(w->st, 3, &p, w->subjects, N, "engine", NULL, NULL, &c, &err),
                     FXB_OK);
    assert_int_equal(c.refused, FXB_ENT_BATCH_MAX);
    assert_int_equal(c.granted, N - FXB_ENT_BATCH_MAX);
    assert_int_equal(num(w->st[0], "HLEN %s", ENT), N - FXB_ENT_BATCH_MAX);
    assert_int_equal(num(w->st[0], "HEXISTS " ENT " %s", w->names[1499]), 0);
    assert_int_equal(num(w->st[0], "HEXISTS " ENT " %s", w->names[2000]), 1);
    free_world(w);
}

static void test_a_closed_policy_grants_nothing(void **state)
{
    (void)state;
    world *w = make_world(1200, "0", false);
    cmd(w->st[0], "HSET " PKEY " status %s", "3");
    fxb_policy p = policy(false);
    fxb_grantout_counts c;
    fxb_err err;
    assert_int_equal(
        fxb_grantout_run(w->st, 2, &p, w->subjects, 1200, "engine", NULL, NULL, &c, &err), FXB_OK);
    assert_int_equal(c.not_open, 1200);
    assert_int_equal(c.notices, 0);
    assert_int_equal(num(w->st[0], "EXISTS %s", ENT), 0);
    free_world(w);
}

static void test_bad_arguments_are_refused_before_anything_is_written(void **state)
{
    (void)state;
    world *w = make_world(10, "0", false);
    fxb_policy p = policy(false);
    fxb_grantout_counts c;
    fxb_err err;
    fxb_store *nine[FXB_GRANTOUT_STORES_MAX + 1];
    for (size_t i = 0; i < FXB_GRANTOUT_STORES_MAX + 1; i++)
        nine[i] = w->st[0];
    fxb_store *holey[2] = {w->st[0], NULL};
    assert_int_equal(fxb_grantout_run(NULL, 1, &p, w->subjects, 10, "e", NULL, NULL, &c, &err),
                     FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_grantout_run(w->st, 0, &p, w->subjects, 10, "e", NULL, NULL, &c, &err),
                     FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_grantout_run(nine, FXB_GRANTOUT_STORES_MAX + 1, &p, w->subjects, 10, "e",
                                      NULL, NULL, &c, &err),
                     FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_grantout_run(holey, 2, &p, w->subjects, 10, "e", NULL, NULL, &c, &err),
                     FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "GRANTOUT_INVALID");
    assert_int_equal(fxb_grantout_run(w->st, 1, NULL, w->subjects, 10, "e", NULL, NULL, &c, &err),
                     FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_grantout_run(w->st, 1, &p, NULL, 10, "e", NULL, NULL, &c, &err),
                     FXB_INVALID_ARGUMENT);
    /* nothing to do is done */
    assert_int_equal(fxb_grantout_run(w->st, 1, &p, NULL, 0, "e", NULL, NULL, &c, &err), FXB_OK);
    assert_int_equal(num(w->st[0], "EXISTS %s", ENT), 0);
    free_world(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_connections_match_every_subject_once_within_the_quota),
        cmocka_unit_test(test_awaiting_confirmation_is_notified_as_such),
        cmocka_unit_test(test_a_stop_from_the_caller_ends_every_thread_and_keeps_what_was_done),
        cmocka_unit_test(test_a_refused_batch_is_skipped_and_the_others_are_written),
        cmocka_unit_test(test_a_closed_policy_grants_nothing),
        cmocka_unit_test(test_bad_arguments_are_refused_before_anything_is_written),
    };
    return cmocka_run_group_tests(tests, fxb_test_private_group_setup,
                                  fxb_test_private_group_teardown);
}
