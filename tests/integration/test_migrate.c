/* Schema migrations against real Redis, using the migrations/ table the
 * build embeds. Runs in db 15 of the shared server, flushed before each
 * test (and only that db). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "store/keys.h"
#include "store/migrate.h"

#define TEST_DB 15

static char test_url[FXB_STORE_URL_MAX + 1];

static void must_ok(fxb_store *s, const char *fmt, const char *arg)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, fmt, arg);
    if (r == NULL)
        fail_msg("%s: %s", fmt, err.message);
    freeReplyObject(r);
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

static int applied(fxb_store *s)
{
    int v = -1;
    fxb_err err;
    if (fxb_migrate_applied(s, &v, &err) != FXB_OK)
        fail_msg("fxb_migrate_applied: %s", err.message);
    return v;
}

/* Runs fxb_migrate_apply and returns what it printed (caller frees). */
static char *apply_capturing(fxb_store *s, fxb_code want)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    fxb_err err;
    fxb_code rc = fxb_migrate_apply(s, out, &err);
    fclose(out);
    if (rc != want)
        fail_msg("fxb_migrate_apply returned %d (%s: %s), wanted %d", rc, err.reason, err.message,
                 want);
    return buf;
}

static char *hget(fxb_store *s, const char *field)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "HGET %s %s", FXB_KEY_META, field);
    assert_non_null(r);
    char *v = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return v;
}

static void test_migrations_are_numbered_strictly_increasing_from_1(void **state)
{
    assert_true(fxb_migrations_count >= 1);
    int prev = 0;
    for (size_t i = 0; i < fxb_migrations_count; i++) {
        assert_true(fxb_migrations[i].version > prev);
        assert_non_null(fxb_migrations[i].name);
        assert_non_null(fxb_migrations[i].source);
        prev = fxb_migrations[i].version;
    }
    assert_int_equal(fxb_migrations[0].version, 1);
    assert_string_equal(fxb_migrations[0].name, "0001_init");
    assert_int_equal(fxb_migrate_latest(), prev);
}

static void test_fresh_store_has_applied_version_0(void **state)
{
    assert_int_equal(applied(*state), 0);
}

static void test_check_on_fresh_store_says_schema_behind_and_how_to_fix_it(void **state)
{
    fxb_err err;
    assert_int_equal(fxb_migrate_check(*state, &err), FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "SCHEMA_BEHIND");
    char want[160];
    snprintf(want, sizeof want,
             "store schema is at version 0 but this server needs %d: run `fxb-admin migrate`",
             fxb_migrate_latest());
    assert_string_equal(err.message, want);
    assert_true(err.message_zh[0] != '\0');
}

static void test_apply_brings_a_fresh_store_to_the_latest_version(void **state)
{
    fxb_store *s = *state;
    char *out = apply_capturing(s, FXB_OK);
    for (size_t i = 0; i < fxb_migrations_count; i++)
        assert_non_null(strstr(out, fxb_migrations[i].name));
    assert_non_null(strstr(out, "applied 0001_init"));
    free(out);
    assert_int_equal(applied(s), fxb_migrate_latest());
    fxb_err err;
    assert_int_equal(fxb_migrate_check(s, &err), FXB_OK);
}

static void test_apply_twice_is_a_noop(void **state)
{
    fxb_store *s = *state;
    free(apply_capturing(s, FXB_OK));
    char *created = hget(s, "created_at");
    assert_non_null(created);
    char *out = apply_capturing(s, FXB_OK);
    assert_string_equal(out, "");
    free(out);
    char *again = hget(s, "created_at");
    assert_string_equal(again, created);
    assert_int_equal(applied(s), fxb_migrate_latest());
    free(created);
    free(again);
}

static void test_apply_accepts_a_null_output_stream(void **state)
{
    fxb_err err;
    assert_int_equal(fxb_migrate_apply(*state, NULL, &err), FXB_OK);
    assert_int_equal(applied(*state), fxb_migrate_latest());
}

static void test_init_marks_the_store_as_fxb_with_its_creation_time(void **state)
{
    fxb_store *s = *state;
    free(apply_capturing(s, FXB_OK));
    char *schema = hget(s, "schema");
    assert_non_null(schema);
    assert_string_equal(schema, "fxb");
    free(schema);

    char *created = hget(s, "created_at");
    assert_non_null(created);
    char *end;
    long long ms = strtoll(created, &end, 10);
    assert_true(*end == '\0'); /* an integer, not Lua's 1.7e+12 */
    long long now = (long long)time(NULL) * 1000;
    assert_true(ms > now - 60000 && ms < now + 60000);
    free(created);
}

static void test_init_rerun_keeps_the_first_creation_time(void **state)
{
    fxb_store *s = *state;
    must_ok(s, "HSET " FXB_KEY_META " created_at %s", "12345");
    free(apply_capturing(s, FXB_OK));
    char *created = hget(s, "created_at");
    assert_string_equal(created, "12345");
    free(created);
}

static char *get_text(fxb_store *s, const char *key)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "GET %s", key);
    assert_non_null(r);
    char *out = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return out;
}

static void test_person_account_links_are_filled_in_for_bound_id_numbers(void **state)
{
    fxb_store *s = *state;
    /* two bound numbers (blind indexes, 32 hex) and a malformed key */
    must_ok(s, "SET fxb:idnum:0123456789abcdef0123456789abcdef %s", "acc-1");
    must_ok(s, "SET fxb:idnum:fedcba9876543210fedcba9876543210 %s", "acc-2");
    must_ok(s, "SET fxb:idnum:NOT-HEX %s", "acc-3");
    free(apply_capturing(s, FXB_OK));
    char *a = get_text(s, "{p:p0123456789abcdef01234567}:account");
    char *b = get_text(s, "{p:pfedcba9876543210fedcba98}:account");
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, "acc-1");
    assert_string_equal(b, "acc-2");
    free(a);
    free(b);
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "KEYS {p:*}:account");
    assert_non_null(r);
    assert_int_equal(r->elements, 2);
    freeReplyObject(r);
}

static void test_apply_on_a_partly_migrated_store_runs_only_what_is_pending(void **state)
{
    fxb_store *s = *state;
    char latest[16];
    snprintf(latest, sizeof latest, "%d", fxb_migrate_latest());
    must_ok(s, "SET " FXB_KEY_SCHEMA_VERSION " %s", latest);
    char *out = apply_capturing(s, FXB_OK);
    assert_string_equal(out, "");
    free(out);
    char *schema = hget(s, "schema");
    assert_null(schema); /* 0001 did not run again */
}

static void test_check_on_store_ahead_says_upgrade_the_server(void **state)
{
    fxb_store *s = *state;
    char ahead[16];
    snprintf(ahead, sizeof ahead, "%d", fxb_migrate_latest() + 1);
    must_ok(s, "SET " FXB_KEY_SCHEMA_VERSION " %s", ahead);
    fxb_err err;
    assert_int_equal(fxb_migrate_check(s, &err), FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "SCHEMA_AHEAD");
    assert_non_null(strstr(err.message, "upgrade fxb-server"));
    assert_non_null(strstr(err.message, ahead));
}

static void test_apply_refuses_a_store_ahead_and_leaves_it_untouched(void **state)
{
    fxb_store *s = *state;
    char ahead[16];
    snprintf(ahead, sizeof ahead, "%d", fxb_migrate_latest() + 1);
    must_ok(s, "SET " FXB_KEY_SCHEMA_VERSION " %s", ahead);
    char *out = apply_capturing(s, FXB_FAILED_PRECONDITION);
    free(out);
    assert_int_equal(applied(s), fxb_migrate_latest() + 1);
    char *schema = hget(s, "schema");
    assert_null(schema);
}

static void test_applied_rejects_a_version_that_is_not_a_number(void **state)
{
    fxb_store *s = *state;
    const char *bad[] = {"abc", "", "1x", "-1", " 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        must_ok(s, "SET " FXB_KEY_SCHEMA_VERSION " %s", bad[i]);
        int v = 77;
        fxb_err err;
        if (fxb_migrate_applied(s, &v, &err) != FXB_FAILED_PRECONDITION)
            fail_msg("version \"%s\" was accepted as %d", bad[i], v);
        assert_string_equal(err.reason, "SCHEMA_VERSION_INVALID");
        assert_int_equal(fxb_migrate_check(s, &err), FXB_FAILED_PRECONDITION);
    }
}

static void test_check_on_unreachable_store_is_store_unavailable(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", ntohs(a.sin_port));
    fxb_store_options opt = {.url = url, .connect_timeout_ms = 300};
    fxb_err err;
    fxb_store *s = fxb_store_new(&opt, &err);
    assert_non_null(s);
    assert_int_equal(fxb_migrate_check(s, &err), FXB_UNAVAILABLE);
    assert_string_equal(err.reason, "STORE_UNAVAILABLE");
    assert_int_equal(fxb_migrate_apply(s, NULL, &err), FXB_UNAVAILABLE);
    assert_string_equal(err.reason, "STORE_UNAVAILABLE");
    fxb_store_free(s);
}

static int group_setup(void **state)
{
    if (fxb_test_redis_url(TEST_DB, test_url, sizeof test_url) != 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

#define WITH_DB(t) cmocka_unit_test_setup_teardown(t, each_setup, each_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrations_are_numbered_strictly_increasing_from_1),
        WITH_DB(test_fresh_store_has_applied_version_0),
        WITH_DB(test_check_on_fresh_store_says_schema_behind_and_how_to_fix_it),
        WITH_DB(test_apply_brings_a_fresh_store_to_the_latest_version),
        WITH_DB(test_apply_twice_is_a_noop),
        WITH_DB(test_apply_accepts_a_null_output_stream),
        WITH_DB(test_init_marks_the_store_as_fxb_with_its_creation_time),
        WITH_DB(test_init_rerun_keeps_the_first_creation_time),
        WITH_DB(test_person_account_links_are_filled_in_for_bound_id_numbers),
        WITH_DB(test_apply_on_a_partly_migrated_store_runs_only_what_is_pending),
        WITH_DB(test_check_on_store_ahead_says_upgrade_the_server),
        WITH_DB(test_apply_refuses_a_store_ahead_and_leaves_it_untouched),
        WITH_DB(test_applied_rejects_a_version_that_is_not_a_number),
        cmocka_unit_test(test_check_on_unreachable_store_is_store_unavailable),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
