/* Deferred benefit lists (services/benefit/lists.h) against a private
 * redis-server: a deferred match writes its subjects to the unlisted
 * stream instead of their lists, fxb_lists_work writes them in slices and
 * settles the pending set, a reader repairs its own list first, malformed
 * entries and keys of another type do not block the work, a lost SADD is
 * recovered, and a grant-out leaves the lists to the work. */
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
#include "services/benefit/lists.h"

#define PID      "b00000000000000cc"
#define PID2     "b00000000000000cd"
#define UNLISTED "{b:" PID "}:unlisted"
#define NOW      1700000000000LL

static fxb_store *s;

static fxb_err terr;

static redisReply *checked(redisReply *r)
{
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    return r;
}

/* a command that must succeed, and one whose integer answer is wanted */
#define run(...) checked(fxb_store_command(s, &terr, __VA_ARGS__))
#define num(...) fxb_test_reply_number(fxb_store_command(s, &terr, __VA_ARGS__))

static void policy_record(const char *pid)
{
    freeReplyObject(run("HSET {b:%s}:policy status 2 benefit_kind 2 amount_fen 0 quota 0 "
                        "budget_fen 0 confirm 0 valid_from_ms 0 valid_until_ms 0",
                        pid));
}

static int each_setup(void **state)
{
    (void)state;
    s = fxb_test_store_open(fxb_test_private_url());
    if (s == NULL)
        return -1;
    freeReplyObject(run("FLUSHALL"));
    policy_record(PID);
    policy_record(PID2);
    return 0;
}

static int each_teardown(void **state)
{
    (void)state;
    fxb_store_free(s);
    s = NULL;
    return 0;
}

static char subj[64][32];

static const char *person(int i)
{
    snprintf(subj[i], sizeof subj[i], "p%024x", 0x500 + i);
    return subj[i];
}

/* Matches subjects [from, from + n) deferred, naming the policy pending as
 * the grant-out does. */
static void defer_match(const char *pid, int from, int n, int64_t now)
{
    fxb_ent_match m[64];
    fxb_ent_outcome o[64];
    for (int i = 0; i < n; i++)
        m[i] = (fxb_ent_match){.subject = person(from + i), .held = ""};
    const char *argv[3];
    fxb_store_cmd extra;
    fxb_lists_pending_cmd(argv, pid, &extra);
    redisReply *rep = NULL;
    fxb_err err;
    assert_int_equal(fxb_ent_match_batch_with(s, pid, m, (size_t)n, now, "engine", o,
                                              FXB_ENT_DEFER_LISTS, 1, &extra, &rep, &err),
                     FXB_OK);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    freeReplyObject(rep);
    for (int i = 0; i < n; i++)
        assert_int_equal(o[i], FXB_ENT_NEW_GRANTED);
}

static long long score(const char *subject, const char *pid)
{
    return fxb_test_reply_number(
        fxb_store_command(s, &terr, "ZSCORE {p:%s}:benefits %s", subject, pid));
}

static fxb_lists_progress work(size_t max, fxb_code want)
{
    fxb_lists_progress pr;
    fxb_err err;
    assert_int_equal(fxb_lists_work(s, max, &pr, &err), want);
    return pr;
}

static void test_a_deferred_match_writes_the_unlisted_stream_not_the_lists(void **state)
{
    (void)state;
    defer_match(PID, 0, 5, NOW);
    for (int i = 0; i < 5; i++)
        assert_int_equal(score(person(i), PID), -1);
    assert_int_equal(num("XLEN %s", UNLISTED), 1);
    redisReply *r = run("XRANGE %s - +", UNLISTED);
    assert_int_equal(r->elements, 1);
    const redisReply *kv = r->element[0]->element[1];
    assert_int_equal(kv->elements, 6);
    assert_string_equal(kv->element[0]->str, "n");
    assert_string_equal(kv->element[1]->str, "5");
    assert_string_equal(kv->element[2]->str, "subjects");
    char want[5 * 32];
    assert_true(snprintf(want, sizeof want, "%s,%s,%s,%s,%s", person(0), person(1), person(2),
                         person(3), person(4)) < (int)sizeof want);
    assert_string_equal(kv->element[3]->str, want);
    assert_string_equal(kv->element[5]->str, "1700000000000");
    freeReplyObject(r);
    assert_int_equal(num("SISMEMBER " FXB_LISTS_PENDING " %s", PID), 1);

    /* matching them again creates nothing, so no entry either */
    defer_match(PID, 5, 1, NOW + 1);
    fxb_ent_match m = {.subject = person(0), .held = ""};
    fxb_ent_outcome o;
    fxb_err err;
    assert_int_equal(fxb_ent_match_batch_with(s, PID, &m, 1, NOW + 2, "engine", &o,
                                              FXB_ENT_DEFER_LISTS, 0, NULL, NULL, &err),
                     FXB_OK);
    assert_int_equal(o, FXB_ENT_UNCHANGED);
    assert_int_equal(num("XLEN %s", UNLISTED), 2);

    /* not deferred: the list at once, no entry */
    assert_int_equal(fxb_ent_match_batch(s, PID2, &m, 1, NOW + 3, "engine", &o, &err), FXB_OK);
    assert_int_equal(o, FXB_ENT_NEW_GRANTED);
    assert_int_equal(score(person(0), PID2), NOW + 3);
    assert_int_equal(num("EXISTS %s", "{b:" PID2 "}:unlisted"), 0);
}

static void test_work_lists_in_slices_and_settles(void **state)
{
    (void)state;
    /* 20 entries of 2 subjects in PID, 1 of 3 in PID2 */
    for (int i = 0; i < 20; i++)
        defer_match(PID, 2 * i, 2, NOW + i);
    defer_match(PID2, 0, 3, NOW + 100);
    size_t entries = 0, listed = 0;
    int slices = 0;
    fxb_lists_progress pr;
    do {
        pr = work(8, FXB_OK);
        entries += pr.entries;
        listed += pr.listed;
        assert_int_equal(pr.dropped, 0);
        assert_int_equal(pr.failed, 0);
        assert_true(pr.entries <= 8);
        assert_true(++slices <= 5);
    } while (pr.more);
    assert_int_equal(entries, 21);
    assert_int_equal(listed, 43);
    assert_true(slices >= 3);
    for (int i = 0; i < 40; i++)
        assert_int_equal(score(person(i), PID), NOW + i / 2);
    for (int i = 0; i < 3; i++)
        assert_int_equal(score(person(i), PID2), NOW + 100);
    assert_int_equal(num("XLEN %s", UNLISTED), 0);
    assert_int_equal(num("SCARD %s", FXB_LISTS_PENDING), 0);

    /* nothing pending: nothing done, nothing more */
    pr = work(8, FXB_OK);
    assert_int_equal(pr.entries, 0);
    assert_false(pr.more);
    work(0, FXB_INVALID_ARGUMENT);
}

static void test_a_reader_repairs_its_own_list_first(void **state)
{
    (void)state;
    defer_match(PID, 0, 3, NOW);
    defer_match(PID2, 1, 1, NOW + 7);
    size_t added = 99;
    fxb_err err;
    assert_int_equal(fxb_lists_repair(s, person(1), &added, &err), FXB_OK);
    assert_int_equal(added, 2);
    assert_int_equal(score(person(1), PID), NOW);
    assert_int_equal(score(person(1), PID2), NOW + 7);
    /* the others are left to the work */
    assert_int_equal(score(person(0), PID), -1);
    /* again: NX, nothing changes */
    assert_int_equal(fxb_lists_repair(s, person(1), &added, &err), FXB_OK);
    assert_int_equal(score(person(1), PID), NOW);
    /* a subject with no entitlement */
    assert_int_equal(fxb_lists_repair(s, person(9), &added, &err), FXB_OK);
    assert_int_equal(added, 0);
    assert_int_equal(num("EXISTS {p:%s}:benefits", person(9)), 0);
    /* nothing pending: nothing read */
    freeReplyObject(run("DEL %s", FXB_LISTS_PENDING));
    assert_int_equal(fxb_lists_repair(s, person(0), &added, &err), FXB_OK);
    assert_int_equal(added, 0);
    static const char *const bad[] = {"", "x00000000000000000000000001", "p123",
                                      "p00000000000000000000000G1", "{p:1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(fxb_lists_repair(s, bad[i], &added, &err), FXB_INVALID_ARGUMENT);
        assert_string_equal(err.reason, "SUBJECT_ID_INVALID");
    }
    assert_int_equal(fxb_lists_repair(s, NULL, &added, &err), FXB_INVALID_ARGUMENT);
}

static void test_malformed_entries_and_foreign_keys_do_not_block(void **state)
{
    (void)state;
    defer_match(PID, 0, 2, NOW);
    /* no at_ms; an at_ms that is not a number; bad subjects among good ones */
    freeReplyObject(run("XADD %s * n 1 subjects %s", UNLISTED, person(3)));
    freeReplyObject(run("XADD %s * n 1 subjects %s at_ms soon", UNLISTED, person(3)));
    char mixed[128];
    snprintf(mixed, sizeof mixed, "nobody,%s,,p%024d,{x}", person(4), 7);
    freeReplyObject(run("XADD %s * n 5 subjects %s at_ms 42", UNLISTED, mixed));
    /* a list key of another type */
    freeReplyObject(run("SET {p:%s}:benefits oops", person(1)));
    /* an id in the pending set that is not a policy id */
    freeReplyObject(run("SADD %s not-a-policy", FXB_LISTS_PENDING));
    fxb_lists_progress pr = work(100, FXB_OK);
    assert_false(pr.more);
    assert_int_equal(pr.entries, 4);
    /* person 0, person 4, p..07 */
    assert_int_equal(pr.listed, 3);
    assert_int_equal(pr.failed, 1);
    /* two malformed entries, three bad subjects */
    assert_int_equal(pr.dropped, 5);
    assert_int_equal(score(person(0), PID), NOW);
    assert_int_equal(score(person(4), PID), 42);
    assert_int_equal(score(person(3), PID), -1);
    assert_int_equal(num("XLEN %s", UNLISTED), 0);
    assert_int_equal(num("SCARD %s", FXB_LISTS_PENDING), 0);
}

static void test_settle_takes_back_a_policy_a_batch_came_to(void **state)
{
    (void)state;
    /* an entry whose SADD was lost: the work does not see it ... */
    defer_match(PID, 0, 2, NOW);
    freeReplyObject(run("DEL %s", FXB_LISTS_PENDING));
    fxb_lists_progress pr = work(8, FXB_OK);
    assert_int_equal(pr.entries, 0);
    assert_int_equal(num("XLEN %s", UNLISTED), 1);
    /* ... until recovered */
    const char *ids[] = {PID, PID2, "junk", "b00000000000000ff"};
    size_t found = 9;
    fxb_err err;
    assert_int_equal(fxb_lists_recover(s, ids, 4, &found, &err), FXB_OK);
    assert_int_equal(found, 1);
    assert_int_equal(num("SISMEMBER " FXB_LISTS_PENDING " %s", PID), 1);
    assert_int_equal(num("SISMEMBER " FXB_LISTS_PENDING " %s", PID2), 0);
    pr = work(8, FXB_OK);
    assert_int_equal(pr.listed, 2);
    assert_int_equal(fxb_lists_recover(s, ids, 4, &found, &err), FXB_OK);
    assert_int_equal(found, 0);
    assert_int_equal(fxb_lists_recover(s, NULL, 0, &found, &err), FXB_OK);
    assert_int_equal(fxb_lists_recover(s, NULL, 1, &found, &err), FXB_INVALID_ARGUMENT);

    /* a pending policy with an empty stream leaves the set */
    freeReplyObject(run("SADD %s %s", FXB_LISTS_PENDING, PID2));
    pr = work(8, FXB_OK);
    assert_false(pr.more);
    assert_int_equal(num("SCARD %s", FXB_LISTS_PENDING), 0);
}

static void test_pending_has(void **state)
{
    (void)state;
    freeReplyObject(run("SADD %s %s %s", FXB_LISTS_PENDING, PID, "other"));
    redisReply *m = run("SMEMBERS %s", FXB_LISTS_PENDING);
    assert_true(fxb_lists_pending_has(m, PID));
    assert_false(fxb_lists_pending_has(m, PID2));
    assert_false(fxb_lists_pending_has(m, NULL));
    assert_false(fxb_lists_pending_has(NULL, PID));
    freeReplyObject(m);
    redisReply *str = run("PING");
    assert_false(fxb_lists_pending_has(str, PID));
    freeReplyObject(str);
}

/* The grant-out defers: no list until the work, then every subject's. */
static void test_a_grant_out_leaves_the_lists_to_the_work(void **state)
{
    (void)state;
    enum { N = 2500 };
    char(*names)[32] = calloc(N, sizeof *names);
    const char **subjects = calloc(N, sizeof *subjects);
    assert_non_null(names);
    assert_non_null(subjects);
    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "p%024zx", 0x10000 + i);
        subjects[i] = names[i];
    }
    fxb_policy p = {.code = "T-2",
                    .title = "测试",
                    .category = 2,
                    .subject = FXB_SUBJECT_PERSON,
                    .kind = FXB_BENEFIT_SERVICE,
                    .status = FXB_POLICY_PUBLISHED};
    snprintf(p.id, sizeof p.id, "%s", PID);
    /* (opening a store empties the database: first) */
    fxb_store *stores[2] = {s, fxb_test_store_open(fxb_test_private_url())};
    assert_non_null(stores[1]);
    policy_record(PID);
    fxb_grantout_counts c;
    fxb_err err;
    assert_int_equal(fxb_grantout_run(stores, 2, &p, subjects, N, "engine", NULL, NULL, &c, &err),
                     FXB_OK);
    assert_int_equal(c.granted, N);
    assert_int_equal(num("SISMEMBER " FXB_LISTS_PENDING " %s", PID), 1);
    assert_int_equal(num("XLEN %s", UNLISTED), 3);
    /* (the last batch, of 500, is larger than the repair size: no list) */
    for (size_t i = 0; i < N; i += 97)
        assert_int_equal(score(names[i], PID), -1);
    fxb_lists_progress pr = work(100, FXB_OK);
    assert_false(pr.more);
    assert_int_equal(pr.listed, N);
    for (size_t i = 0; i < N; i++)
        assert_true(score(names[i], PID) > 0);
    fxb_store_free(stores[1]);
    free(names);
    free(subjects);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_deferred_match_writes_the_unlisted_stream_not_the_lists, each_setup,
            each_teardown),
        cmocka_unit_test_setup_teardown(test_work_lists_in_slices_and_settles, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_a_reader_repairs_its_own_list_first, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_entries_and_foreign_keys_do_not_block,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_settle_takes_back_a_policy_a_batch_came_to, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_pending_has, each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_a_grant_out_leaves_the_lists_to_the_work, each_setup,
                                        each_teardown),
    };
    return cmocka_run_group_tests(tests, fxb_test_private_group_setup,
                                  fxb_test_private_group_teardown);
}
