/* Delegated-call grant checks and the activity log against a real Redis
 * (db 5, flushed before each test): every status of a grant record gives
 * its refusal, nothing is cached, acts are appended in order and a notice
 * reaches the principal's inbox only when asked for. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "auth/grant.h"
#include "store/inbox.h"

#define GID       "G0000000000000000000a1"
#define PRINCIPAL "P0000000000000000000p1"
#define AGENT     "A0000000000000000000a1"
#define NOW       1790000000000LL

#define TEST_DB 5

static char test_url[FXB_STORE_URL_MAX + 64];

static int group_setup(void **state)
{
    (void)state;
    return fxb_test_redis_url(TEST_DB, test_url, sizeof test_url);
}

static int each_setup(void **state)
{
    *state = fxb_test_store_open(test_url);
    return *state != NULL ? 0 : -1;
}

static int each_teardown(void **state)
{
    fxb_store_free(*state);
    return 0;
}

static void put_grant(fxb_store *s, const char *status, long long from, long long until,
                      const char *notify)
{
    fxb_err err;
    redisReply *r = fxb_store_command(
        s, &err,
        "HSET {g:" GID "}:grant status %s principal " PRINCIPAL " agent " AGENT
        " valid_from_ms %lld valid_until_ms %lld notify_activity %s scope inbox.read",
        status, from, until, notify);
    assert_non_null(r);
    freeReplyObject(r);
}

static void assert_check(fxb_store *s, const char *principal, const char *agent, long long now,
                         fxb_code want, const char *reason)
{
    fxb_err err;
    fxb_err_clear(&err);
    fxb_grant_live live = {.notify = true, .scope = "x"};
    fxb_code rc = fxb_grant_check_live(s, GID, principal, agent, now, &live, &err);
    if (rc != want)
        fail_msg("expected %d, got %d %s", want, rc, err.reason);
    if (reason)
        assert_string_equal(err.reason, reason);
    if (rc != FXB_OK) {
        assert_false(live.notify);
        assert_string_equal(live.scope, "");
    } else {
        assert_string_equal(live.scope, "inbox.read");
    }
}

static void an_active_grant_admits_its_agent_inside_its_window(void **state)
{
    fxb_store *s = *state;
    put_grant(s, "active", NOW - 1000, NOW + 1000, "0");
    assert_check(s, PRINCIPAL, AGENT, NOW, FXB_OK, NULL);
    assert_check(s, PRINCIPAL, AGENT, NOW - 1000, FXB_OK, NULL);
    assert_check(s, PRINCIPAL, AGENT, NOW + 999, FXB_OK, NULL);
    assert_check(s, PRINCIPAL, AGENT, NOW + 1000, FXB_PERMISSION_DENIED, FXB_GRANT_EXPIRED);
    assert_check(s, PRINCIPAL, AGENT, NOW - 1001, FXB_PERMISSION_DENIED, FXB_GRANT_NOT_ACTIVE);
}

static void a_grant_naming_others_reads_as_revoked(void **state)
{
    fxb_store *s = *state;
    put_grant(s, "active", NOW - 1000, NOW + 1000, "0");
    assert_check(s, AGENT, AGENT, NOW, FXB_PERMISSION_DENIED, FXB_GRANT_REVOKED);
    assert_check(s, PRINCIPAL, PRINCIPAL, NOW, FXB_PERMISSION_DENIED, FXB_GRANT_REVOKED);
    fxb_err err;
    fxb_grant_live live;
    assert_int_equal(fxb_grant_check_live(s, "no-such-grant", PRINCIPAL, AGENT, NOW, &live, &err),
                     FXB_PERMISSION_DENIED);
    assert_string_equal(err.reason, FXB_GRANT_REVOKED);
    /* an id that cannot form a key */
    assert_int_equal(fxb_grant_check_live(s, "a}b", PRINCIPAL, AGENT, NOW, &live, &err),
                     FXB_PERMISSION_DENIED);
    /* a record without its scope grants nothing */
    redisReply *r = fxb_store_command(s, &err, "HDEL {g:" GID "}:grant scope");
    freeReplyObject(r);
    assert_check(s, PRINCIPAL, AGENT, NOW, FXB_PERMISSION_DENIED, FXB_GRANT_REVOKED);
}

static void every_status_but_active_is_refused(void **state)
{
    fxb_store *s = *state;
    static const struct {
        const char *status;
        const char *reason;
    } cases[] = {
        {"pending_agent", FXB_GRANT_NOT_ACTIVE}, {"pending_principal", FXB_GRANT_NOT_ACTIVE},
        {"declined", FXB_GRANT_REVOKED},         {"rejected", FXB_GRANT_REVOKED},
        {"revoked", FXB_GRANT_REVOKED},          {"resigned", FXB_GRANT_REVOKED},
        {"withdrawn", FXB_GRANT_REVOKED},        {"expired", FXB_GRANT_EXPIRED},
        {"ACTIVE", FXB_GRANT_REVOKED},           {"", FXB_GRANT_REVOKED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put_grant(s, cases[i].status, NOW - 1000, NOW + 1000, "1");
        assert_check(s, PRINCIPAL, AGENT, NOW, FXB_PERMISSION_DENIED, cases[i].reason);
    }
}

static void a_revocation_applies_to_the_very_next_check(void **state)
{
    fxb_store *s = *state;
    put_grant(s, "active", NOW - 1000, NOW + 1000, "1");
    fxb_err err;
    fxb_grant_live live;
    assert_int_equal(fxb_grant_check_live(s, GID, PRINCIPAL, AGENT, NOW, &live, &err), FXB_OK);
    assert_true(live.notify);
    redisReply *r = fxb_store_command(s, &err, "HSET {g:" GID "}:grant status revoked");
    freeReplyObject(r);
    assert_check(s, PRINCIPAL, AGENT, NOW, FXB_PERMISSION_DENIED, FXB_GRANT_REVOKED);
}

static void item_categories_come_from_the_catalogue(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    char cat[32];
    assert_int_equal(fxb_grant_item_category(s, "EDU-1", cat, sizeof cat, &err), FXB_OK);
    assert_string_equal(cat, "");
    redisReply *r = fxb_store_command(s, &err, "HSET fxb:item:EDU-1 category education");
    freeReplyObject(r);
    r = fxb_store_command(s, &err, "HSET fxb:item:ODD-1 category casino");
    freeReplyObject(r);
    assert_int_equal(fxb_grant_item_category(s, "EDU-1", cat, sizeof cat, &err), FXB_OK);
    assert_string_equal(cat, "education");
    /* an unknown category in the catalogue is none */
    assert_int_equal(fxb_grant_item_category(s, "ODD-1", cat, sizeof cat, &err), FXB_OK);
    assert_string_equal(cat, "");
    /* an invalid code never reaches a key */
    assert_int_equal(fxb_grant_item_category(s, "EDU-1 x", cat, sizeof cat, &err), FXB_OK);
    assert_string_equal(cat, "");
}

static long long xlen(fxb_store *s, const char *key)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "XLEN %s", key);
    assert_non_null(r);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

static long long pttl(fxb_store *s, const char *key)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "PEXPIRETIME %s", key);
    assert_non_null(r);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

static void acts_are_logged_in_order_with_notices_when_asked(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    put_grant(s, "active", NOW - 1000, NOW + 1000, "1");
    fxb_grant_act act = {.grant_id = GID,
                         .principal = PRINCIPAL,
                         .agent = AGENT,
                         .method = "/fxb.v1.InboxService/ListMessages",
                         .result = FXB_OK,
                         .at_ms = NOW,
                         .notify = false};
    assert_int_equal(fxb_grant_record_act(s, &act, &err), FXB_OK);
    act.method = "/fxb.v1.DiagService/ProbeItem";
    act.item = "EDU-1";
    act.result = FXB_PERMISSION_DENIED;
    act.reason = "OUT_OF_SCOPE";
    act.at_ms = NOW + 1;
    act.notify = true;
    assert_int_equal(fxb_grant_record_act(s, &act, &err), FXB_OK);
    assert_int_equal(xlen(s, "{g:" GID "}:activity"), 2);
    assert_int_equal(xlen(s, "{u:" PRINCIPAL "}:inbox"), 1);

    redisReply *r = fxb_store_command(s, &err, "XRANGE {g:" GID "}:activity - +");
    assert_non_null(r);
    assert_int_equal(r->elements, 2);
    const redisReply *f = r->element[1]->element[1];
    const char *want[] = {"at_ms",  "1790000000001", "method", "/fxb.v1.DiagService/ProbeItem",
                          "item",   "EDU-1",         "result", "PERMISSION_DENIED",
                          "reason", "OUT_OF_SCOPE",  "agent",  AGENT};
    assert_int_equal(f->elements, 12);
    for (size_t i = 0; i < 12; i++)
        assert_string_equal(f->element[i]->str, want[i]);
    /* the first act: OK, no item, no reason */
    f = r->element[0]->element[1];
    assert_string_equal(f->element[5]->str, "");
    assert_string_equal(f->element[7]->str, "OK");
    assert_string_equal(f->element[9]->str, "");
    freeReplyObject(r);

    r = fxb_store_command(s, &err, "XRANGE {u:" PRINCIPAL "}:inbox - +");
    assert_non_null(r);
    f = r->element[0]->element[1];
    bool kind = false, ref = false;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        kind |= strcmp(f->element[i]->str, "kind") == 0 &&
                strcmp(f->element[i + 1]->str, "proxy.activity") == 0;
        ref |= strcmp(f->element[i]->str, "ref") == 0 && strcmp(f->element[i + 1]->str, GID) == 0;
    }
    assert_true(kind);
    assert_true(ref);
    freeReplyObject(r);
}

static void an_act_needs_a_grant_and_a_method(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    /* no record: nothing written, no notice */
    fxb_grant_act none = {
        .grant_id = GID, .principal = PRINCIPAL, .method = "/x/y", .at_ms = NOW, .notify = true};
    assert_int_equal(fxb_grant_record_act(s, &none, &err), FXB_OK);
    assert_int_equal(xlen(s, "{g:" GID "}:activity"), 0);
    assert_int_equal(xlen(s, "{u:" PRINCIPAL "}:inbox"), 0);
    fxb_grant_act act = {.grant_id = "bad id", .method = "/x/y", .at_ms = NOW};
    assert_int_equal(fxb_grant_record_act(s, &act, &err), FXB_INVALID_ARGUMENT);
    act.grant_id = GID;
    act.method = NULL;
    assert_int_equal(fxb_grant_record_act(s, &act, &err), FXB_INVALID_ARGUMENT);
    assert_int_equal(xlen(s, "{g:" GID "}:activity"), 0);
}

static void the_log_ends_with_its_grant(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    put_grant(s, "revoked", NOW - 1000, NOW + 1000, "0");
    redisReply *r = fxb_store_command(s, &err, "PEXPIREAT {g:" GID "}:grant 4102444800000");
    freeReplyObject(r);
    fxb_grant_act act = {.grant_id = GID, .method = "/x/y", .at_ms = NOW};
    assert_int_equal(fxb_grant_record_act(s, &act, &err), FXB_OK);
    assert_int_equal(pttl(s, "{g:" GID "}:activity"), 4102444800000LL);
}

static void the_log_is_capped(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    put_grant(s, "active", NOW - 1000, NOW + 1000, "0");
    fxb_grant_act act = {.grant_id = GID, .method = "/x/y", .at_ms = NOW};
    for (int i = 0; i < FXB_GRANT_ACTIVITY_MAX + 500; i++)
        assert_int_equal(fxb_grant_record_act(s, &act, &err), FXB_OK);
    long long n = xlen(s, "{g:" GID "}:activity");
    assert_true(n >= FXB_GRANT_ACTIVITY_MAX && n < FXB_GRANT_ACTIVITY_MAX + 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, each_setup, each_teardown)
        T(an_active_grant_admits_its_agent_inside_its_window),
        T(a_grant_naming_others_reads_as_revoked),
        T(every_status_but_active_is_refused),
        T(a_revocation_applies_to_the_very_next_check),
        T(item_categories_come_from_the_catalogue),
        T(acts_are_logged_in_order_with_notices_when_asked),
        T(an_act_needs_a_grant_and_a_method),
        T(the_log_ends_with_its_grant),
        T(the_log_is_capped),
#undef T
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
