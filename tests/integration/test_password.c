/* Passwords: the argon2id hash and its cost, the SetPassword policy, the
 * lockout after 5 consecutive failures (15 minutes, cleared by a success),
 * and the sign-in check that answers the same, in the same time, whether or
 * not the number has an account or a password. Lockout runs against a real
 * Redis (db 13, flushed before each test); time is passed in, never slept. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <argon2.h>

#include "fixture.h"
#include "auth/password.h"
#include "auth/phone.h"
#include "store/store.h"

#define TEST_DB 13
#define T0      1741618800000LL /* 2025-03-10 15:00:00 UTC */
#define MIN_MS  (60LL * 1000)
#define LOCK_MS (15 * MIN_MS)
#define PHONE   "13812345678"
#define ACCOUNT "acct-42"
#define PW      "correct horse 电池"

static char test_url[FXB_STORE_URL_MAX + 64];
static uint8_t secret[FXB_SECRET_LEN];
static char stored[FXB_PASSWORD_ENCODED_MAX]; /* hash of PW, made once */

static int group_setup(void **state)
{
    if (fxb_test_redis_url(TEST_DB, test_url, sizeof test_url) != 0)
        return -1;
    fxb_err err;
    for (size_t i = 0; i < sizeof secret; i++)
        secret[i] = (uint8_t)(0x5A ^ i);
    if (fxb_password_hash(PW, stored, sizeof stored, &err) != FXB_OK) {
        fprintf(stderr, "hash: %s\n", err.message);
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int each_setup(void **state)
{
    fxb_store_options opt = {.url = test_url, .connect_timeout_ms = 500};
    fxb_err err;
    fxb_store *s = fxb_store_new(&opt, &err);
    if (s == NULL)
        return -1;
    redisReply *r = fxb_store_command(s, &err, "FLUSHDB");
    if (r == NULL) {
        fprintf(stderr, "FLUSHDB: %s\n", err.message);
        fxb_store_free(s);
        return -1;
    }
    freeReplyObject(r);
    *state = s;
    return 0;
}

static int each_teardown(void **state)
{
    fxb_store_free(*state);
    return 0;
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void assert_err(fxb_code rc, const fxb_err *err, fxb_code code, const char *reason)
{
    if (rc != code || strcmp(err->reason, reason) != 0)
        fail_msg("want %s %s, got %s %s (%s)", fxb_code_name(code), reason, fxb_code_name(rc),
                 err->reason, err->message);
}

/* ---- hashing -------------------------------------------------------------- */

static void test_hash_is_argon2id_with_the_documented_parameters(void **state)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "$argon2id$v=19$m=%d,t=%d,p=%d$", FXB_PASSWORD_M_COST_KIB,
             FXB_PASSWORD_T_COST, FXB_PASSWORD_PARALLELISM);
    assert_string_equal(prefix, "$argon2id$v=19$m=47104,t=2,p=1$");
    assert_memory_equal(stored, prefix, strlen(prefix));
    assert_false(fxb_password_needs_rehash(stored));
    assert_null(strstr(stored, "correct"));
}

static void test_hash_takes_tens_of_milliseconds(void **state)
{
    char out[FXB_PASSWORD_ENCODED_MAX];
    fxb_err err;
    double best = 1e9;
    for (int k = 0; k < 3; k++) {
        double t = mono_ms();
        assert_int_equal(fxb_password_hash("another password", out, sizeof out, &err), FXB_OK);
        double d = mono_ms() - t;
        best = d < best ? d : best;
    }
    print_message("argon2id hash: %.1f ms (best of 3)\n", best);
    /* Loose bounds: slow enough to hurt guessing, fast enough to serve. */
    assert_true(best > 20 && best < 1000);
}

static void test_each_hash_has_its_own_salt(void **state)
{
    char a[FXB_PASSWORD_ENCODED_MAX], b[FXB_PASSWORD_ENCODED_MAX];
    fxb_err err;
    assert_int_equal(fxb_password_hash(PW, a, sizeof a, &err), FXB_OK);
    assert_int_equal(fxb_password_hash(PW, b, sizeof b, &err), FXB_OK);
    assert_string_not_equal(a, b);
    assert_true(fxb_password_verify(a, PW));
    assert_true(fxb_password_verify(b, PW));
}

static void test_verify_accepts_only_the_exact_password(void **state)
{
    assert_true(fxb_password_verify(stored, PW));
    assert_false(fxb_password_verify(stored, "correct horse 电"));
    assert_false(fxb_password_verify(stored, "Correct horse 电池"));
    assert_false(fxb_password_verify(stored, PW " "));
    assert_false(fxb_password_verify(stored, ""));
    assert_false(fxb_password_verify(stored, NULL));
}

static void test_hash_refuses_empty_over_long_and_small_buffers(void **state)
{
    char out[FXB_PASSWORD_ENCODED_MAX] = "x";
    fxb_err err;
    assert_err(fxb_password_hash("", out, sizeof out, &err), &err, FXB_INVALID_ARGUMENT,
               "PASSWORD_WEAK");
    assert_string_equal(out, "");
    assert_err(fxb_password_hash(NULL, out, sizeof out, &err), &err, FXB_INVALID_ARGUMENT,
               "PASSWORD_WEAK");
    char big[FXB_PASSWORD_MAX_BYTES + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_err(fxb_password_hash(big, out, sizeof out, &err), &err, FXB_INVALID_ARGUMENT,
               "PASSWORD_WEAK");
    assert_int_equal(fxb_password_hash(PW, out, 64, &err), FXB_INTERNAL);
    assert_int_equal(fxb_password_hash(PW, NULL, sizeof out, &err), FXB_INTERNAL);
}

static void test_verify_refuses_tampered_or_foreign_hashes_quickly(void **state)
{
    const char *bad[] = {
        /* 4 GiB of memory: a corrupted record must not take the server down */
        "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
        "$argon2id$v=19$m=47104,t=1000,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
        "$argon2i$v=19$m=47104,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
        "$argon2id$v=16$m=47104,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
        "$argon2id$v=19$m=99999999999999999999,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+"
        "dWRWJTmaaJObG",
        "$argon2id$v=19$m=47104,t=2,p=1",
        "$argon2id$v=19$m=47104,t=2,p=1$",
        "plain text password",
        "",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        double t = mono_ms();
        assert_false(fxb_password_verify(bad[k], PW));
        assert_true(mono_ms() - t < 2000);
        assert_true(fxb_password_needs_rehash(bad[k]));
    }
    char longer[FXB_PASSWORD_ENCODED_MAX + 100];
    size_t n = strlen(stored);
    memcpy(longer, stored, n);
    memset(longer + n, 'A', sizeof longer - 1 - n);
    longer[sizeof longer - 1] = '\0';
    assert_false(fxb_password_verify(longer, PW));
}

static void test_hash_with_older_parameters_still_verifies_but_needs_rehash(void **state)
{
    /* A hash made with an older, cheaper setting (OWASP's m=19 MiB, t=2). */
    static const uint8_t salt[16] = "0123456789abcdef";
    char old[FXB_PASSWORD_ENCODED_MAX];
    assert_int_equal(
        argon2id_hash_encoded(2, 19456, 1, PW, strlen(PW), salt, sizeof salt, 32, old, sizeof old),
        ARGON2_OK);
    assert_true(fxb_password_verify(old, PW));
    assert_false(fxb_password_verify(old, "wrong password"));
    assert_true(fxb_password_needs_rehash(old));
    assert_false(fxb_password_needs_rehash(stored));
    assert_true(fxb_password_needs_rehash(NULL));
}

/* ---- policy --------------------------------------------------------------- */

static void assert_weak(const char *pw, const char *phone, const char *rule)
{
    fxb_err err;
    fxb_code rc = fxb_password_policy(pw, phone, &err);
    assert_err(rc, &err, FXB_INVALID_ARGUMENT, "PASSWORD_WEAK");
    if (strstr(err.message, rule) == NULL)
        fail_msg("message \"%s\" does not name the rule \"%s\"", err.message, rule);
    assert_true(err.message_zh[0] != '\0');
}

static void assert_ok(const char *pw, const char *phone)
{
    fxb_err err;
    fxb_code rc = fxb_password_policy(pw, phone, &err);
    if (rc != FXB_OK)
        fail_msg("\"%s\" refused: %s", pw, err.message);
}

static void test_policy_length_is_8_to_128_bytes(void **state)
{
    assert_weak("abcdefg", PHONE, "8..128 bytes");
    assert_weak("", PHONE, "8..128 bytes");
    assert_weak(NULL, PHONE, "8..128 bytes");
    assert_ok("abcdefgh", PHONE);
    char pw[FXB_PASSWORD_MAX_BYTES + 2];
    memset(pw, 'a', FXB_PASSWORD_MAX_BYTES);
    pw[FXB_PASSWORD_MAX_BYTES] = '\0';
    assert_ok(pw, PHONE);
    pw[FXB_PASSWORD_MAX_BYTES] = 'a';
    pw[FXB_PASSWORD_MAX_BYTES + 1] = '\0';
    assert_weak(pw, PHONE, "8..128 bytes");
}

static void test_policy_counts_bytes_not_characters(void **state)
{
    assert_ok("密码很安全", PHONE);             /* 5 characters, 15 bytes */
    assert_weak("密码", PHONE, "8..128 bytes"); /* 6 bytes */
}

static void test_policy_refuses_digits_only(void **state)
{
    assert_weak("12345678", PHONE, "digits only");
    assert_weak("00000000000000000000", PHONE, "digits only");
    assert_weak("１２３４５６７８", PHONE, "digits only"); /* full-width */
    assert_ok("1234567a", PHONE);
    assert_ok("1234 5678", PHONE);
}

static void test_policy_refuses_the_phone_number_in_any_form(void **state)
{
    assert_weak("+8613812345678", PHONE, "phone number");
    assert_weak("8613812345678", "+86" PHONE, "digits only");
    assert_weak(PHONE, PHONE, "digits only");
    assert_ok("+8613912345678", PHONE); /* someone else's number */
    assert_ok("+8613812345678", NULL);
}

static void test_policy_refuses_invalid_utf8(void **state)
{
    assert_weak("abcdefg\xff", PHONE, "UTF-8");
    assert_weak("abcdefg\xc0\xaf", PHONE, "UTF-8");         /* overlong '/' */
    assert_weak("abcdefg\xed\xa0\x80", PHONE, "UTF-8");     /* surrogate */
    assert_weak("abcdefg\xf4\x90\x80\x80", PHONE, "UTF-8"); /* > U+10FFFF */
    assert_weak("abcdefgh\xe5\xaf", PHONE, "UTF-8");        /* cut */
    assert_ok("abcdefg\xf0\x9f\x94\x91", PHONE);            /* emoji */
}

/* ---- lockout -------------------------------------------------------------- */

static void test_five_consecutive_failures_lock_the_account_for_15_minutes(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    for (int n = 1; n <= 4; n++)
        assert_int_equal(fxb_password_record_failure(s, ACCOUNT, T0 + n, &err), FXB_OK);
    assert_int_equal(fxb_password_check_lock(s, ACCOUNT, T0 + 4, &err), FXB_OK);
    fxb_code rc = fxb_password_record_failure(s, ACCOUNT, T0 + 5, &err);
    assert_err(rc, &err, FXB_RESOURCE_EXHAUSTED, "PASSWORD_LOCKED");
    assert_int_equal(err.retry_after_ms, LOCK_MS);
    rc = fxb_password_check_lock(s, ACCOUNT, T0 + 5 + LOCK_MS - 1, &err);
    assert_err(rc, &err, FXB_RESOURCE_EXHAUSTED, "PASSWORD_LOCKED");
    assert_int_equal(err.retry_after_ms, 1);
    assert_non_null(strstr(err.message_zh, "1分钟"));
}

static void test_lock_ends_after_15_minutes(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    for (int n = 1; n <= 5; n++)
        fxb_password_record_failure(s, ACCOUNT, T0, &err);
    assert_int_equal(fxb_password_check_lock(s, ACCOUNT, T0 + LOCK_MS, &err), FXB_OK);
    /* And counting starts afresh: four more failures do not lock. */
    for (int n = 1; n <= 4; n++)
        assert_int_equal(fxb_password_record_failure(s, ACCOUNT, T0 + LOCK_MS + n, &err), FXB_OK);
    assert_int_equal(fxb_password_record_failure(s, ACCOUNT, T0 + LOCK_MS + 5, &err),
                     FXB_RESOURCE_EXHAUSTED);
}

static void test_failures_during_a_lock_neither_count_nor_extend_it(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    for (int n = 1; n <= 5; n++)
        fxb_password_record_failure(s, ACCOUNT, T0, &err);
    for (int n = 1; n <= 10; n++) {
        fxb_code rc = fxb_password_record_failure(s, ACCOUNT, T0 + n * MIN_MS, &err);
        assert_err(rc, &err, FXB_RESOURCE_EXHAUSTED, "PASSWORD_LOCKED");
        assert_int_equal(err.retry_after_ms, LOCK_MS - n * MIN_MS);
    }
    assert_int_equal(fxb_password_check_lock(s, ACCOUNT, T0 + LOCK_MS, &err), FXB_OK);
    assert_int_equal(fxb_password_record_failure(s, ACCOUNT, T0 + LOCK_MS, &err), FXB_OK);
}

static void test_a_success_resets_the_failure_count(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    for (int n = 1; n <= 4; n++)
        fxb_password_record_failure(s, ACCOUNT, T0 + n, &err);
    assert_int_equal(fxb_password_record_success(s, ACCOUNT, T0 + 10, &err), FXB_OK);
    for (int n = 1; n <= 4; n++)
        assert_int_equal(fxb_password_record_failure(s, ACCOUNT, T0 + 10 + n, &err), FXB_OK);
    assert_int_equal(fxb_password_check_lock(s, ACCOUNT, T0 + 20, &err), FXB_OK);
}

static void test_accounts_lock_independently(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    for (int n = 1; n <= 5; n++)
        fxb_password_record_failure(s, ACCOUNT, T0, &err);
    assert_int_equal(fxb_password_check_lock(s, "acct-43", T0, &err), FXB_OK);
}

static void test_failure_count_is_forgotten_a_day_after_the_last_failure(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    fxb_password_record_failure(s, ACCOUNT, T0, &err);
    redisReply *r = fxb_store_command(s, &err, "PTTL {u:%s}:pwlock", ACCOUNT);
    assert_non_null(r);
    assert_true(r->integer > 24 * 60 * MIN_MS - 10000 && r->integer <= 24 * 60 * MIN_MS);
    freeReplyObject(r);
}

static void test_lock_functions_refuse_bad_account_ids(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    const char *bad[] = {NULL, "", "a:b", "{u:1}", "a b"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        assert_err(fxb_password_check_lock(s, bad[k], T0, &err), &err, FXB_INVALID_ARGUMENT,
                   "ACCOUNT_ID_INVALID");
        assert_err(fxb_password_record_failure(s, bad[k], T0, &err), &err, FXB_INVALID_ARGUMENT,
                   "ACCOUNT_ID_INVALID");
        assert_err(fxb_password_record_success(s, bad[k], T0, &err), &err, FXB_INVALID_ARGUMENT,
                   "ACCOUNT_ID_INVALID");
    }
}

static void test_lock_functions_report_an_unreachable_store(void **state)
{
    fxb_store_options opt = {.url = "redis://127.0.0.1:1/13", .connect_timeout_ms = 200};
    fxb_err err;
    fxb_store *dead = fxb_store_new(&opt, &err);
    assert_non_null(dead);
    assert_int_equal(fxb_password_check_lock(dead, ACCOUNT, T0, &err), FXB_UNAVAILABLE);
    assert_int_equal(fxb_password_record_failure(dead, ACCOUNT, T0, &err), FXB_UNAVAILABLE);
    assert_int_equal(fxb_password_authenticate(dead, secret, PHONE, ACCOUNT, stored, PW, T0, &err),
                     FXB_UNAVAILABLE);
    fxb_store_free(dead);
}

/* ---- sign-in ---------------------------------------------------------------- */

static fxb_code sign_in(fxb_store *s, const char *account, const char *encoded, const char *pw,
                        int64_t now, fxb_err *err)
{
    return fxb_password_authenticate(s, secret, PHONE, account, encoded, pw, now, err);
}

static void test_sign_in_with_the_right_password_succeeds(void **state)
{
    fxb_err err;
    assert_int_equal(sign_in(*state, ACCOUNT, stored, PW, T0, &err), FXB_OK);
    assert_int_equal(
        fxb_password_authenticate(*state, secret, "+86" PHONE, ACCOUNT, stored, PW, T0, &err),
        FXB_OK);
}

static void test_wrong_password_unknown_number_and_no_password_answer_alike(void **state)
{
    fxb_store *s = *state;
    fxb_err wrong, unknown, none;
    fxb_code a = sign_in(s, ACCOUNT, stored, "wrong password", T0, &wrong);
    fxb_code b = sign_in(s, NULL, NULL, "wrong password", T0, &unknown);
    fxb_code c = sign_in(s, "acct-7", NULL, "wrong password", T0, &none);
    assert_err(a, &wrong, FXB_UNAUTHENTICATED, "CREDENTIALS_INVALID");
    assert_err(b, &unknown, FXB_UNAUTHENTICATED, "CREDENTIALS_INVALID");
    assert_err(c, &none, FXB_UNAUTHENTICATED, "CREDENTIALS_INVALID");
    assert_string_equal(wrong.message, unknown.message);
    assert_string_equal(wrong.message, none.message);
    assert_string_equal(wrong.message_zh, unknown.message_zh);
    assert_string_equal(wrong.message_zh, none.message_zh);
    assert_non_null(strstr(wrong.message, "4 tries left"));
}

static void test_unknown_number_costs_as_much_time_as_a_wrong_password(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    double known = 1e9, unknown = 1e9, nopw = 1e9;
    for (int k = 0; k < 5; k++) {
        double t = mono_ms();
        sign_in(s, ACCOUNT, stored, "wrong password", T0, &err);
        double d = mono_ms() - t;
        known = d < known ? d : known;
        t = mono_ms();
        sign_in(s, NULL, NULL, "wrong password", T0, &err);
        d = mono_ms() - t;
        unknown = d < unknown ? d : unknown;
        t = mono_ms();
        sign_in(s, "acct-7", NULL, "wrong password", T0, &err);
        d = mono_ms() - t;
        nopw = d < nopw ? d : nopw;
    }
    print_message("sign-in: wrong password %.1f ms, unknown number %.1f ms, no password %.1f ms\n",
                  known, unknown, nopw);
    assert_true(unknown > known * 0.7 && unknown < known * 1.4);
    assert_true(nopw > known * 0.7 && nopw < known * 1.4);
}

static void test_unknown_number_locks_like_an_account(void **state)
{
    fxb_store *s = *state;
    fxb_err known, unknown;
    for (int n = 1; n <= 4; n++) {
        sign_in(s, ACCOUNT, stored, "wrong password", T0 + n, &known);
        sign_in(s, NULL, NULL, "wrong password", T0 + n, &unknown);
        assert_string_equal(known.message, unknown.message);
    }
    fxb_code a = sign_in(s, ACCOUNT, stored, "wrong password", T0 + 5, &known);
    fxb_code b = sign_in(s, NULL, NULL, "wrong password", T0 + 5, &unknown);
    assert_err(a, &known, FXB_RESOURCE_EXHAUSTED, "PASSWORD_LOCKED");
    assert_err(b, &unknown, FXB_RESOURCE_EXHAUSTED, "PASSWORD_LOCKED");
    assert_int_equal(known.retry_after_ms, unknown.retry_after_ms);
}

static void test_locked_account_refuses_even_the_right_password_until_unlocked(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    for (int n = 1; n <= 5; n++)
        sign_in(s, ACCOUNT, stored, "wrong password", T0, &err);
    fxb_code rc = sign_in(s, ACCOUNT, stored, PW, T0 + LOCK_MS - 1, &err);
    assert_err(rc, &err, FXB_RESOURCE_EXHAUSTED, "PASSWORD_LOCKED");
    assert_int_equal(err.retry_after_ms, 1);
    assert_int_equal(sign_in(s, ACCOUNT, stored, PW, T0 + LOCK_MS, &err), FXB_OK);
}

static void test_successful_sign_in_resets_the_count(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    for (int n = 1; n <= 4; n++)
        sign_in(s, ACCOUNT, stored, "wrong password", T0 + n, &err);
    assert_int_equal(sign_in(s, ACCOUNT, stored, PW, T0 + 10, &err), FXB_OK);
    fxb_code rc = sign_in(s, ACCOUNT, stored, "wrong password", T0 + 11, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CREDENTIALS_INVALID");
    assert_non_null(strstr(err.message, "4 tries left"));
}

static void test_sign_in_refuses_a_malformed_number(void **state)
{
    fxb_err err;
    fxb_code rc =
        fxb_password_authenticate(*state, secret, "12812345678", ACCOUNT, stored, PW, T0, &err);
    assert_err(rc, &err, FXB_INVALID_ARGUMENT, "PHONE_INVALID");
}

static void test_over_long_password_is_a_plain_failure(void **state)
{
    char big[4096];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fxb_err err;
    fxb_code rc = sign_in(*state, ACCOUNT, stored, big, T0, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CREDENTIALS_INVALID");
}

static void test_lock_state_holds_no_phone_number(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    sign_in(s, NULL, NULL, "wrong password", T0, &err);
    redisReply *r = fxb_store_command(s, &err, "KEYS *");
    assert_non_null(r);
    assert_int_equal(r->elements, 1);
    assert_null(strstr(r->element[0]->str, "12345678"));
    assert_memory_equal(r->element[0]->str, "{p:", 3);
    freeReplyObject(r);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, each_setup, each_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_is_argon2id_with_the_documented_parameters),
        cmocka_unit_test(test_hash_takes_tens_of_milliseconds),
        cmocka_unit_test(test_each_hash_has_its_own_salt),
        cmocka_unit_test(test_verify_accepts_only_the_exact_password),
        cmocka_unit_test(test_hash_refuses_empty_over_long_and_small_buffers),
        cmocka_unit_test(test_verify_refuses_tampered_or_foreign_hashes_quickly),
        cmocka_unit_test(test_hash_with_older_parameters_still_verifies_but_needs_rehash),
        cmocka_unit_test(test_policy_length_is_8_to_128_bytes),
        cmocka_unit_test(test_policy_counts_bytes_not_characters),
        cmocka_unit_test(test_policy_refuses_digits_only),
        cmocka_unit_test(test_policy_refuses_the_phone_number_in_any_form),
        cmocka_unit_test(test_policy_refuses_invalid_utf8),
        T(test_five_consecutive_failures_lock_the_account_for_15_minutes),
        T(test_lock_ends_after_15_minutes),
        T(test_failures_during_a_lock_neither_count_nor_extend_it),
        T(test_a_success_resets_the_failure_count),
        T(test_accounts_lock_independently),
        T(test_failure_count_is_forgotten_a_day_after_the_last_failure),
        T(test_lock_functions_refuse_bad_account_ids),
        T(test_lock_functions_report_an_unreachable_store),
        T(test_sign_in_with_the_right_password_succeeds),
        T(test_wrong_password_unknown_number_and_no_password_answer_alike),
        T(test_unknown_number_costs_as_much_time_as_a_wrong_password),
        T(test_unknown_number_locks_like_an_account),
        T(test_locked_account_refuses_even_the_right_password_until_unlocked),
        T(test_successful_sign_in_resets_the_count),
        T(test_sign_in_refuses_a_malformed_number),
        T(test_over_long_password_is_a_plain_failure),
        T(test_lock_state_holds_no_phone_number),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
