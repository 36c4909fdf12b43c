/* The audit stream against a real Redis (db 12, flushed before each test):
 * one record per call with who, whom, what, why and when; ids only; bad
 * fields refused before anything is appended; never trimmed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "store/audit.h"

#define TEST_DB 12

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

static long long stream_len(fxb_store *s)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "XLEN %s", FXB_AUDIT_STREAM);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

/* The value of field in the entry (an XRANGE element). */
static const char *field(const redisReply *entry, const char *name)
{
    const redisReply *kv = entry->element[1];
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (strcmp(kv->element[i]->str, name) == 0)
            return kv->element[i + 1]->str;
    return NULL;
}

static void test_a_record_names_who_whom_what_why_and_when(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    assert_int_equal(fxb_audit_append(s, "officer-7", "citizen-42", "identity.read",
                                      "case 2024-001", 1700000000123, &err),
                     FXB_OK);
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - +", FXB_AUDIT_STREAM);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    const redisReply *e = r->element[0];
    assert_int_equal(e->element[1]->elements, 10); /* exactly five fields */
    assert_string_equal(field(e, "actor"), "officer-7");
    assert_string_equal(field(e, "subject"), "citizen-42");
    assert_string_equal(field(e, "action"), "identity.read");
    assert_string_equal(field(e, "why"), "case 2024-001");
    assert_string_equal(field(e, "at_ms"), "1700000000123");
    freeReplyObject(r);
}

static void test_records_are_appended_in_order_and_never_trimmed(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    for (int i = 0; i < 1200; i++)
        assert_int_equal(fxb_audit_append(s, "a1", "s1", "identity.unbind", NULL, i, &err), FXB_OK);
    assert_int_equal(stream_len(s), 1200);
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - + COUNT 1", FXB_AUDIT_STREAM);
    assert_non_null(r);
    assert_string_equal(field(r->element[0], "at_ms"), "0");
    assert_string_equal(field(r->element[0], "why"), "");
    freeReplyObject(r);
}

static void test_invalid_fields_are_refused_and_nothing_is_appended(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    char long_why[FXB_AUDIT_WHY_MAX + 2];
    memset(long_why, 'w', sizeof long_why - 1);
    long_why[sizeof long_why - 1] = '\0';
    struct {
        const char *actor, *subject, *action, *why, *field;
    } bad[] = {
        {NULL, "s", "x.y", "", "actor"},
        {"{u:1}", "s", "x.y", "", "actor"},
        {"a", "", "x.y", "", "subject"},
        {"a", "s", "", "", "action"},
        {"a", "s", "Identity Unbind", "", "action"},
        {"a", "s", "x.y", "line\nbreak", "why"},
        {"a", "s", "x.y", long_why, "why"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(
            fxb_audit_append(s, bad[i].actor, bad[i].subject, bad[i].action, bad[i].why, 1, &err),
            FXB_INVALID_ARGUMENT);
        assert_string_equal(err.reason, "AUDIT_RECORD_INVALID");
        assert_non_null(strstr(err.message, bad[i].field));
    }
    assert_int_equal(fxb_audit_append(s, "a", "s", "x.y", "", -1, &err), FXB_INVALID_ARGUMENT);
    assert_int_equal(stream_len(s), 0);
}

static void test_unreachable_store_is_unavailable(void **state)
{
    (void)state;
    fxb_store_options opt = {.url = "redis://127.0.0.1:1/12", .connect_timeout_ms = 200};
    fxb_err err;
    fxb_store *s = fxb_store_new(&opt, &err);
    assert_non_null(s);
    assert_int_equal(fxb_audit_append(s, "a", "s", "x.y", "", 1, &err), FXB_UNAVAILABLE);
    fxb_store_free(s);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, each_setup, each_teardown)
    const struct CMUnitTest tests[] = {
        T(test_a_record_names_who_whom_what_why_and_when),
        T(test_records_are_appended_in_order_and_never_trimmed),
        T(test_invalid_fields_are_refused_and_nothing_is_appended),
        cmocka_unit_test(test_unreachable_store_is_unavailable),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
