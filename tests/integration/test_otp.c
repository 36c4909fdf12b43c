/* SMS one-time codes against a real Redis (db 13, flushed before each test),
 * one test per rule of the AuthService contract: 6 random digits, 5 minutes
 * (stretched by the accessibility multiplier, at most 15), 5 tries, 60 s
 * between sends, 10 codes per number and 50 per client address per
 * Asia/Shanghai day, one purpose per code, single use, and nothing in Redis
 * that gives away a number or a code. Also the server secret the hashes are
 * keyed with, and the development SMS sink. Time is passed in, never slept. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "auth/otp.h"
#include "auth/phone.h"
#include "auth/secret.h"
#include "auth/sms.h"
#include "store/store.h"

#define TEST_DB 13
/* 2025-03-10 15:00:00 UTC = 23:00 in Shanghai: one hour before the day
 * ends at 16:00 UTC. */
#define T0       1741618800000LL
#define MIN_MS   (60LL * 1000)
#define NEXT_DAY (T0 + 60 * MIN_MS)

#define PHONE   "13812345678"
#define PHONE_2 "13912345678"
#define IP      "203.0.113.7"

static char test_url[FXB_STORE_URL_MAX + 64];
static uint8_t secret[FXB_SECRET_LEN];

typedef struct fixture {
    fxb_store *s;
    fxb_otp_params p;
} fixture;

static fxb_store *open_store(const char *url)
{
    fxb_store_options opt = {.url = url, .connect_timeout_ms = 500, .command_timeout_ms = 2000};
    fxb_err err;
    fxb_store *s = fxb_store_new(&opt, &err);
    if (s == NULL)
        fail_msg("fxb_store_new: %s", err.message);
    return s;
}

static int group_setup(void **state)
{
    if (fxb_test_redis_url(TEST_DB, test_url, sizeof test_url) != 0)
        return -1;
    for (size_t i = 0; i < sizeof secret; i++)
        secret[i] = (uint8_t)(0xA5 ^ i);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int each_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->s = open_store(test_url);
    fxb_err err;
    redisReply *r = fxb_store_command(f->s, &err, "FLUSHDB");
    if (r == NULL) {
        fprintf(stderr, "FLUSHDB: %s\n", err.message);
        fxb_store_free(f->s);
        free(f);
        return -1;
    }
    freeReplyObject(r);
    fxb_otp_params_init(&f->p, secret);
    *state = f;
    return 0;
}

static int each_teardown(void **state)
{
    fixture *f = *state;
    fxb_store_free(f->s);
    free(f);
    return 0;
}

/* ---- helpers --------------------------------------------------------------- */

typedef struct issued {
    fxb_code rc;
    char code[FXB_OTP_DIGITS + 1];
    int64_t expires_at_ms;
    int64_t resend_after_ms;
    fxb_err err;
} issued;

static issued issue_full(fixture *f, const char *phone, const char *ip, int purpose, int pct,
                         int64_t now)
{
    issued out;
    memset(&out, 0, sizeof out);
    out.rc = fxb_otp_issue(f->s, &f->p, phone, ip, purpose, pct, now, out.code, &out.expires_at_ms,
                           &out.resend_after_ms, &out.err);
    return out;
}

static issued issue_at(fixture *f, const char *phone, int purpose, int64_t now)
{
    return issue_full(f, phone, IP, purpose, 100, now);
}

/* Issues and insists on success. */
static issued must_issue(fixture *f, const char *phone, int purpose, int64_t now)
{
    issued i = issue_at(f, phone, purpose, now);
    if (i.rc != FXB_OK)
        fail_msg("issue at T0%+lld ms: %s %s", (long long)(now - T0), i.err.reason, i.err.message);
    return i;
}

static fxb_code verify_at(fixture *f, const char *phone, int purpose, const char *code, int64_t now,
                          fxb_err *err)
{
    return fxb_otp_verify(f->s, &f->p, phone, purpose, code, now, err);
}

/* A six-digit code that is not `code`. */
static void wrong_code(const char *code, char out[FXB_OTP_DIGITS + 1])
{
    memcpy(out, code, FXB_OTP_DIGITS + 1);
    out[0] = out[0] == '9' ? '0' : (char)(out[0] + 1);
}

static void assert_err(fxb_code rc, const fxb_err *err, fxb_code code, const char *reason)
{
    if (rc != code || strcmp(err->reason, reason) != 0)
        fail_msg("want %s %s, got %s %s (%s)", fxb_code_name(code), reason, fxb_code_name(rc),
                 err->reason, err->message);
}

/* ---- issue and verify ------------------------------------------------------- */

static void
test_issued_code_is_six_digits_valid_five_minutes_resend_after_sixty_seconds(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    assert_int_equal(strlen(i.code), 6);
    assert_int_equal(strspn(i.code, "0123456789"), 6);
    assert_int_equal(i.expires_at_ms, T0 + 5 * MIN_MS);
    assert_int_equal(i.resend_after_ms, T0 + MIN_MS);
}

static void test_issued_code_verifies_for_its_number_and_purpose(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    fxb_err err;
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, i.code, T0 + 1000, &err), FXB_OK);
}

static void test_prefixed_forms_are_the_same_number(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, "+86" PHONE, FXB_OTP_SIGN_IN, T0);
    fxb_err err;
    assert_int_equal(verify_at(f, "86" PHONE, FXB_OTP_SIGN_IN, i.code, T0 + 1000, &err), FXB_OK);
}

static void test_a_code_is_single_use(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    fxb_err err;
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, i.code, T0 + 1000, &err), FXB_OK);
    fxb_code rc = verify_at(f, PHONE, FXB_OTP_SIGN_IN, i.code, T0 + 2000, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_EXPIRED");
}

static void test_a_code_is_not_valid_for_another_number(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    fxb_err err;
    fxb_code rc = verify_at(f, PHONE_2, FXB_OTP_SIGN_IN, i.code, T0 + 1000, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_EXPIRED");
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, i.code, T0 + 2000, &err), FXB_OK);
}

static void test_a_code_verifies_only_for_its_purpose(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    fxb_err err;
    fxb_code rc = verify_at(f, PHONE, FXB_OTP_STEP_UP, i.code, T0 + 1000, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_EXPIRED");
    rc = verify_at(f, PHONE, FXB_OTP_VERIFY_RELATIVE, i.code, T0 + 1000, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_EXPIRED");
    /* The mismatches cost the sign-in code nothing. */
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, i.code, T0 + 2000, &err), FXB_OK);
}

static void test_codes_of_different_purposes_live_side_by_side(void **state)
{
    fixture *f = *state;
    issued a = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    issued b = must_issue(f, PHONE, FXB_OTP_STEP_UP, T0 + MIN_MS);
    fxb_err err;
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_STEP_UP, b.code, T0 + MIN_MS + 1, &err), FXB_OK);
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, a.code, T0 + MIN_MS + 2, &err), FXB_OK);
}

static void test_a_new_code_replaces_the_previous_one_of_the_same_purpose(void **state)
{
    fixture *f = *state;
    issued a = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    issued b = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0 + MIN_MS);
    fxb_err err;
    if (strcmp(a.code, b.code) != 0) {
        fxb_code rc = verify_at(f, PHONE, FXB_OTP_SIGN_IN, a.code, T0 + MIN_MS + 1, &err);
        assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_INVALID");
    }
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, b.code, T0 + MIN_MS + 2, &err), FXB_OK);
}

static void test_codes_are_random_and_may_start_with_zero(void **state)
{
    fixture *f = *state;
    f->p.daily_limit_ip = 1000;
    int leading_zero = 0;
    int digit_count[10] = {0};
    char seen[300][FXB_OTP_DIGITS + 1];
    int repeats = 0;
    for (int n = 0; n < 300; n++) {
        char phone[FXB_PHONE_LEN + 1];
        snprintf(phone, sizeof phone, "1370000%04u", (unsigned)n % 10000u);
        issued i = must_issue(f, phone, FXB_OTP_SIGN_IN, T0);
        memcpy(seen[n], i.code, sizeof i.code);
        for (int k = 0; k < n; k++)
            repeats += strcmp(seen[k], i.code) == 0;
        leading_zero += i.code[0] == '0';
        for (int d = 0; d < FXB_OTP_DIGITS; d++)
            digit_count[i.code[d] - '0']++;
    }
    /* 300 draws: P(no leading zero) = 0.9^300 ~ 2e-14; P(any repeat) ~
     * 4.5%, so allow a few; every digit value expected 180 times. */
    assert_true(leading_zero > 0);
    assert_true(repeats <= 3);
    for (int d = 0; d < 10; d++)
        assert_true(digit_count[d] > 100 && digit_count[d] < 260);
}

/* ---- tries ---------------------------------------------------------------- */

static void test_each_wrong_try_says_how_many_tries_remain(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    char bad[FXB_OTP_DIGITS + 1];
    wrong_code(i.code, bad);
    for (int left = 4; left >= 1; left--) {
        fxb_err err;
        fxb_code rc = verify_at(f, PHONE, FXB_OTP_SIGN_IN, bad, T0 + 1000, &err);
        assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_INVALID");
        char want[64];
        snprintf(want, sizeof want, "%d tries left", left);
        assert_non_null(strstr(err.message, want));
        snprintf(want, sizeof want, "还可尝试%d次", left);
        assert_non_null(strstr(err.message_zh, want));
    }
    /* Four wrong tries leave the right code working. */
    fxb_err err;
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, i.code, T0 + 2000, &err), FXB_OK);
}

static void test_fifth_wrong_try_burns_the_code_even_for_the_right_code(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    char bad[FXB_OTP_DIGITS + 1];
    wrong_code(i.code, bad);
    fxb_err err;
    for (int n = 1; n <= 4; n++)
        assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, bad, T0 + n, &err),
                         FXB_UNAUTHENTICATED);
    fxb_code rc = verify_at(f, PHONE, FXB_OTP_SIGN_IN, bad, T0 + 5, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_EXHAUSTED");
    rc = verify_at(f, PHONE, FXB_OTP_SIGN_IN, i.code, T0 + 6, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_EXHAUSTED");
    assert_string_equal(err.message_zh, "验证码错误次数过多，请重新获取");
}

static void test_a_new_code_can_be_requested_after_a_burnt_one(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    char bad[FXB_OTP_DIGITS + 1];
    wrong_code(i.code, bad);
    fxb_err err;
    for (int n = 1; n <= 5; n++)
        verify_at(f, PHONE, FXB_OTP_SIGN_IN, bad, T0 + n, &err);
    issued j = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0 + MIN_MS);
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, j.code, T0 + MIN_MS + 1, &err), FXB_OK);
}

static void test_malformed_code_is_refused_without_costing_a_try(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    const char *malformed[] = {NULL,     "",        "12345",  "1234567",      "12a456",
                               " 12345", "123456 ", "-12345", "１２３４５６", "12\n456"};
    for (size_t k = 0; k < sizeof malformed / sizeof malformed[0]; k++) {
        for (int rep = 0; rep < 3; rep++) {
            fxb_err err;
            fxb_code rc = verify_at(f, PHONE, FXB_OTP_SIGN_IN, malformed[k], T0 + 1, &err);
            assert_err(rc, &err, FXB_INVALID_ARGUMENT, "CODE_MALFORMED");
        }
    }
    char bad[FXB_OTP_DIGITS + 1];
    wrong_code(i.code, bad);
    fxb_err err;
    fxb_code rc = verify_at(f, PHONE, FXB_OTP_SIGN_IN, bad, T0 + 2, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_INVALID");
    assert_non_null(strstr(err.message, "4 tries left"));
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, i.code, T0 + 3, &err), FXB_OK);
}

/* ---- validity --------------------------------------------------------------- */

static void test_code_is_valid_until_just_before_five_minutes(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    fxb_err err;
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, i.code, T0 + 5 * MIN_MS - 1, &err),
                     FXB_OK);
}

static void test_code_expires_at_five_minutes_even_when_right(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    fxb_err err;
    fxb_code rc = verify_at(f, PHONE, FXB_OTP_SIGN_IN, i.code, T0 + 5 * MIN_MS, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_EXPIRED");
    assert_string_equal(err.message_zh, "验证码已失效，请重新获取");
    rc = verify_at(f, PHONE, FXB_OTP_SIGN_IN, i.code, T0 + 9 * MIN_MS, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_EXPIRED");
}

static void test_never_issued_code_is_expired(void **state)
{
    fixture *f = *state;
    fxb_err err;
    fxb_code rc = verify_at(f, PHONE, FXB_OTP_SIGN_IN, "123456", T0, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_EXPIRED");
}

static void assert_validity(fixture *f, const char *phone, int pct, int64_t want_ms)
{
    issued i = issue_full(f, phone, IP, FXB_OTP_SIGN_IN, pct, T0);
    if (i.rc != FXB_OK)
        fail_msg("issue: %s", i.err.message);
    assert_int_equal(i.expires_at_ms, T0 + want_ms);
    fxb_err err;
    fxb_code rc = verify_at(f, phone, FXB_OTP_SIGN_IN, i.code, T0 + want_ms, &err);
    assert_err(rc, &err, FXB_UNAUTHENTICATED, "CODE_EXPIRED");
    assert_int_equal(verify_at(f, phone, FXB_OTP_SIGN_IN, i.code, T0 + want_ms - 1, &err), FXB_OK);
}

static void test_timeout_multiplier_extends_validity(void **state)
{
    assert_validity(*state, "13700000001", 150, 450 * 1000);
    assert_validity(*state, "13700000002", 200, 10 * MIN_MS);
}

static void test_timeout_multiplier_is_capped_at_fifteen_minutes(void **state)
{
    assert_validity(*state, "13700000003", 300, 15 * MIN_MS);
    assert_validity(*state, "13700000004", 301, 15 * MIN_MS);
    assert_validity(*state, "13700000005", 100000, 15 * MIN_MS);
}

static void test_timeout_multiplier_below_100_percent_means_five_minutes(void **state)
{
    assert_validity(*state, "13700000006", 0, 5 * MIN_MS);
    assert_validity(*state, "13700000007", 50, 5 * MIN_MS);
    assert_validity(*state, "13700000008", -300, 5 * MIN_MS);
}

/* ---- resend interval -------------------------------------------------------- */

static void test_resend_is_refused_until_sixty_seconds_have_passed(void **state)
{
    fixture *f = *state;
    must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    issued i = issue_at(f, PHONE, FXB_OTP_SIGN_IN, T0 + 59 * 1000);
    assert_err(i.rc, &i.err, FXB_RESOURCE_EXHAUSTED, "CODE_RESEND_TOO_SOON");
    assert_int_equal(i.err.retry_after_ms, 1000);
    assert_string_equal(i.code, "");
    i = issue_at(f, PHONE, FXB_OTP_SIGN_IN, T0 + MIN_MS - 1);
    assert_err(i.rc, &i.err, FXB_RESOURCE_EXHAUSTED, "CODE_RESEND_TOO_SOON");
    assert_int_equal(i.err.retry_after_ms, 1);
    must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0 + MIN_MS);
}

static void test_refused_resend_keeps_the_pending_code(void **state)
{
    fixture *f = *state;
    issued a = must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    issued b = issue_at(f, PHONE, FXB_OTP_SIGN_IN, T0 + 1000);
    assert_int_equal(b.rc, FXB_RESOURCE_EXHAUSTED);
    fxb_err err;
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, a.code, T0 + 2000, &err), FXB_OK);
}

static void test_resend_interval_is_per_number_across_purposes(void **state)
{
    fixture *f = *state;
    must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    issued i = issue_at(f, PHONE, FXB_OTP_STEP_UP, T0 + 1000);
    assert_err(i.rc, &i.err, FXB_RESOURCE_EXHAUSTED, "CODE_RESEND_TOO_SOON");
    assert_int_equal(i.err.retry_after_ms, 59 * 1000);
    /* Another number is not affected. */
    must_issue(f, PHONE_2, FXB_OTP_SIGN_IN, T0 + 1000);
}

/* ---- daily caps ----------------------------------------------------------- */

static void test_daily_cap_per_number_is_ten_and_resets_at_16_00_utc(void **state)
{
    fixture *f = *state;
    for (int n = 0; n < 10; n++)
        must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0 + n * MIN_MS);
    int64_t t = T0 + 10 * MIN_MS;
    issued i = issue_at(f, PHONE, FXB_OTP_SIGN_IN, t);
    assert_err(i.rc, &i.err, FXB_RESOURCE_EXHAUSTED, "CODE_DAILY_LIMIT_PHONE");
    assert_int_equal(i.err.retry_after_ms, NEXT_DAY - t);
    i = issue_at(f, PHONE, FXB_OTP_STEP_UP, NEXT_DAY - 1);
    assert_err(i.rc, &i.err, FXB_RESOURCE_EXHAUSTED, "CODE_DAILY_LIMIT_PHONE");
    assert_int_equal(i.err.retry_after_ms, 1);
    must_issue(f, PHONE, FXB_OTP_SIGN_IN, NEXT_DAY);
}

static void test_daily_cap_per_client_address_is_fifty_and_resets_at_16_00_utc(void **state)
{
    fixture *f = *state;
    char phone[FXB_PHONE_LEN + 1];
    for (int n = 0; n < 50; n++) {
        snprintf(phone, sizeof phone, "1500000%04u", (unsigned)n % 10000u);
        must_issue(f, phone, FXB_OTP_SIGN_IN, T0 + n);
    }
    issued i = issue_at(f, PHONE, FXB_OTP_SIGN_IN, T0 + 100);
    assert_err(i.rc, &i.err, FXB_RESOURCE_EXHAUSTED, "CODE_DAILY_LIMIT_IP");
    assert_int_equal(i.err.retry_after_ms, NEXT_DAY - (T0 + 100));
    /* Another address is not affected; the day after, this one works again. */
    i = issue_full(f, PHONE, "198.51.100.1", FXB_OTP_SIGN_IN, 100, T0 + 200);
    assert_int_equal(i.rc, FXB_OK);
    must_issue(f, PHONE_2, FXB_OTP_SIGN_IN, NEXT_DAY);
}

static void test_daily_caps_are_configurable(void **state)
{
    fixture *f = *state;
    f->p.daily_limit_phone = 2;
    f->p.daily_limit_ip = 3;
    must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0 + MIN_MS);
    issued i = issue_at(f, PHONE, FXB_OTP_SIGN_IN, T0 + 2 * MIN_MS);
    assert_err(i.rc, &i.err, FXB_RESOURCE_EXHAUSTED, "CODE_DAILY_LIMIT_PHONE");
    must_issue(f, PHONE_2, FXB_OTP_SIGN_IN, T0 + 2 * MIN_MS);
    i = issue_at(f, "13712345678", FXB_OTP_SIGN_IN, T0 + 2 * MIN_MS);
    assert_err(i.rc, &i.err, FXB_RESOURCE_EXHAUSTED, "CODE_DAILY_LIMIT_IP");
}

static void test_refused_request_does_not_spend_the_address_quota(void **state)
{
    fixture *f = *state;
    f->p.daily_limit_ip = 2;
    must_issue(f, PHONE, FXB_OTP_SIGN_IN, T0);
    for (int n = 1; n <= 5; n++) {
        issued i = issue_at(f, PHONE, FXB_OTP_SIGN_IN, T0 + n);
        assert_err(i.rc, &i.err, FXB_RESOURCE_EXHAUSTED, "CODE_RESEND_TOO_SOON");
    }
    must_issue(f, PHONE_2, FXB_OTP_SIGN_IN, T0 + 10);
    issued i = issue_at(f, "13712345678", FXB_OTP_SIGN_IN, T0 + 20);
    assert_err(i.rc, &i.err, FXB_RESOURCE_EXHAUSTED, "CODE_DAILY_LIMIT_IP");
}

static void test_ipv6_clients_of_one_slash_64_share_a_quota(void **state)
{
    fixture *f = *state;
    f->p.daily_limit_ip = 1;
    issued i = issue_full(f, PHONE, "2001:db8:1:2::1", FXB_OTP_SIGN_IN, 100, T0);
    assert_int_equal(i.rc, FXB_OK);
    i = issue_full(f, PHONE_2, "2001:db8:1:2:ffff::9", FXB_OTP_SIGN_IN, 100, T0);
    assert_err(i.rc, &i.err, FXB_RESOURCE_EXHAUSTED, "CODE_DAILY_LIMIT_IP");
    i = issue_full(f, PHONE_2, "2001:db8:1:3::1", FXB_OTP_SIGN_IN, 100, T0);
    assert_int_equal(i.rc, FXB_OK);
}

/* ---- bad requests -------------------------------------------------------- */

static void test_malformed_number_is_refused_before_anything_is_stored(void **state)
{
    fixture *f = *state;
    issued i = issue_at(f, "12812345678", FXB_OTP_SIGN_IN, T0);
    assert_err(i.rc, &i.err, FXB_INVALID_ARGUMENT, "PHONE_INVALID");
    i = issue_at(f, NULL, FXB_OTP_SIGN_IN, T0);
    assert_err(i.rc, &i.err, FXB_INVALID_ARGUMENT, "PHONE_INVALID");
    fxb_err err;
    fxb_code rc = verify_at(f, "1381234567", FXB_OTP_SIGN_IN, "123456", T0, &err);
    assert_err(rc, &err, FXB_INVALID_ARGUMENT, "PHONE_INVALID");
    redisReply *r = fxb_store_command(f->s, &err, "DBSIZE");
    assert_non_null(r);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

static void test_unknown_purpose_is_refused(void **state)
{
    fixture *f = *state;
    int bad[] = {0, 4, -1, 1000};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        issued i = issue_at(f, PHONE, bad[k], T0);
        assert_err(i.rc, &i.err, FXB_INVALID_ARGUMENT, "CODE_PURPOSE_INVALID");
        fxb_err err;
        fxb_code rc = verify_at(f, PHONE, bad[k], "123456", T0, &err);
        assert_err(rc, &err, FXB_INVALID_ARGUMENT, "CODE_PURPOSE_INVALID");
    }
}

static void test_missing_client_address_is_refused(void **state)
{
    fixture *f = *state;
    char huge[200];
    memset(huge, '1', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    const char *bad[] = {NULL, "", "1.2.3.4 ", "a\nb", huge};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        issued i = issue_full(f, PHONE, bad[k], FXB_OTP_SIGN_IN, 100, T0);
        assert_err(i.rc, &i.err, FXB_INVALID_ARGUMENT, "CLIENT_ADDRESS_INVALID");
    }
}

static void test_unreachable_store_is_unavailable(void **state)
{
    fxb_otp_params p;
    fxb_otp_params_init(&p, secret);
    fxb_store_options opt = {.url = "redis://127.0.0.1:1/13", .connect_timeout_ms = 200};
    fxb_err err;
    fxb_store *dead = fxb_store_new(&opt, &err);
    assert_non_null(dead);
    char code[FXB_OTP_DIGITS + 1];
    int64_t exp, resend;
    fxb_code rc =
        fxb_otp_issue(dead, &p, PHONE, IP, FXB_OTP_SIGN_IN, 100, T0, code, &exp, &resend, &err);
    assert_int_equal(rc, FXB_UNAVAILABLE);
    assert_string_equal(code, "");
    rc = fxb_otp_verify(dead, &p, PHONE, FXB_OTP_SIGN_IN, "123456", T0, &err);
    assert_int_equal(rc, FXB_UNAVAILABLE);
    fxb_store_free(dead);
}

/* ---- nothing in clear --------------------------------------------------------- */

static bool all_decimal(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool all_hex64(const char *s, size_t len)
{
    return len == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* Fails when text (a key or a value) gives away a number or a code. Values
 * made of decimal digits (counters, times) or 64 hex digits (hashes) may
 * contain six given digits by chance, so for them only equality with a code
 * counts. */
static void assert_no_secret_in(const char *text, size_t len, const char *const *phones,
                                size_t nphones, const char codes[][FXB_OTP_DIGITS + 1],
                                size_t ncodes, const char *where)
{
    char buf[1024];
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    for (size_t k = 0; k < nphones; k++) {
        if (strstr(buf, phones[k]) != NULL || strstr(buf, phones[k] + 3) != NULL)
            fail_msg("%s holds a phone number: %s", where, buf);
    }
    if (strstr(buf, IP) != NULL)
        fail_msg("%s holds the client address: %s", where, buf);
    bool opaque = all_decimal(buf, len) || all_hex64(buf, len);
    for (size_t k = 0; k < ncodes; k++) {
        if (opaque ? strcmp(buf, codes[k]) == 0 : strstr(buf, codes[k]) != NULL)
            fail_msg("%s holds a code: %s", where, buf);
    }
}

static void test_redis_holds_no_number_code_or_address_in_clear(void **state)
{
    fixture *f = *state;
    const char *phones[] = {PHONE, PHONE_2, "13700000001"};
    char codes[6][FXB_OTP_DIGITS + 1];
    size_t ncodes = 0;
    for (size_t k = 0; k < 3; k++) {
        issued a = must_issue(f, phones[k], FXB_OTP_SIGN_IN, T0);
        issued b = must_issue(f, phones[k], FXB_OTP_STEP_UP, T0 + MIN_MS);
        memcpy(codes[ncodes++], a.code, sizeof a.code);
        memcpy(codes[ncodes++], b.code, sizeof b.code);
        char bad[FXB_OTP_DIGITS + 1];
        wrong_code(a.code, bad);
        fxb_err err;
        verify_at(f, phones[k], FXB_OTP_SIGN_IN, bad, T0 + MIN_MS + 1, &err);
    }
    /* The development sink is allowed to hold them: that is its job. */
    fxb_store_options opt = {.url = test_url};
    fxb_err err;
    fxb_sms_sender *sms = fxb_sms_dev_new(&opt, false, &err);
    assert_non_null(sms);
    assert_int_equal(fxb_sms_send(sms, PHONE, codes[0], &err), FXB_OK);
    fxb_sms_free(sms);

    size_t keys_seen = 0;
    char cursor[32] = "0";
    do {
        redisReply *r = fxb_store_command(f->s, &err, "SCAN %s COUNT 100", cursor);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *list = r->element[1];
        for (size_t k = 0; k < list->elements; k++) {
            const char *key = list->element[k]->str;
            if (strcmp(key, FXB_SMS_DEV_STREAM) == 0)
                continue;
            keys_seen++;
            assert_no_secret_in(key, strlen(key), phones, 3, codes, ncodes, "a key");
            redisReply *t = fxb_store_command(f->s, &err, "TYPE %s", key);
            assert_non_null(t);
            redisReply *v = NULL;
            if (strcmp(t->str, "string") == 0)
                v = fxb_store_command(f->s, &err, "GET %s", key);
            else if (strcmp(t->str, "hash") == 0)
                v = fxb_store_command(f->s, &err, "HGETALL %s", key);
            else
                fail_msg("unexpected %s key %s", t->str, key);
            freeReplyObject(t);
            assert_non_null(v);
            if (v->type == REDIS_REPLY_ARRAY) {
                for (size_t e = 0; e < v->elements; e++)
                    assert_no_secret_in(v->element[e]->str, v->element[e]->len, phones, 3, codes,
                                        ncodes, key);
            } else {
                assert_no_secret_in(v->str, v->len, phones, 3, codes, ncodes, key);
            }
            freeReplyObject(v);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    /* last + day + 2 slots per number, and one address counter. */
    assert_int_equal(keys_seen, 3 * 4 + 1);
}

/* ---- the message ------------------------------------------------------------- */

static void test_sms_text_names_the_code_its_use_and_validity(void **state)
{
    char text[FXB_SMS_TEXT_MAX];
    assert_true(fxb_otp_sms_text(FXB_OTP_SIGN_IN, "012345", 5 * MIN_MS, text, sizeof text));
    assert_string_equal(text, "【放新办】验证码012345，用于登录，5分钟内有效。请勿告诉他人。");
    assert_true(fxb_otp_sms_text(FXB_OTP_STEP_UP, "999999", 15 * MIN_MS, text, sizeof text));
    assert_non_null(strstr(text, "15分钟"));
    assert_true(
        fxb_otp_sms_text(FXB_OTP_VERIFY_RELATIVE, "999999", 7 * MIN_MS + 1, text, sizeof text));
    assert_non_null(strstr(text, "8分钟"));
    assert_false(fxb_otp_sms_text(0, "123456", MIN_MS, text, sizeof text));
    assert_string_equal(text, "");
    assert_false(fxb_otp_sms_text(FXB_OTP_SIGN_IN, "12345", MIN_MS, text, sizeof text));
    assert_false(fxb_otp_sms_text(FXB_OTP_SIGN_IN, "123456", MIN_MS, text, 20));
}

/* ---- the development SMS sink ------------------------------------------------- */

static void test_dev_sms_sink_lets_tests_read_the_code(void **state)
{
    fixture *f = *state;
    issued i = must_issue(f, "+86" PHONE, FXB_OTP_SIGN_IN, T0);
    char text[FXB_SMS_TEXT_MAX];
    assert_true(fxb_otp_sms_text(FXB_OTP_SIGN_IN, i.code, i.expires_at_ms - T0, text, sizeof text));
    fxb_store_options opt = {.url = test_url};
    fxb_err err;
    fxb_sms_sender *sms = fxb_sms_dev_new(&opt, false, &err);
    assert_non_null(sms);
    assert_string_equal(fxb_sms_name(sms), "dev");
    assert_int_equal(fxb_sms_send(sms, "+86" PHONE, text, &err), FXB_OK);
    fxb_sms_free(sms);

    redisReply *r = fxb_store_command(f->s, &err, "XREVRANGE %s + - COUNT 1", FXB_SMS_DEV_STREAM);
    assert_non_null(r);
    assert_int_equal(r->elements, 1);
    redisReply *fields = r->element[0]->element[1];
    assert_int_equal(fields->elements, 6);
    assert_string_equal(fields->element[0]->str, "phone");
    assert_string_equal(fields->element[1]->str, PHONE);
    assert_string_equal(fields->element[2]->str, "text");
    assert_string_equal(fields->element[3]->str, text);
    assert_string_equal(fields->element[4]->str, "at_ms");
    assert_true(atoll(fields->element[5]->str) > T0);
    /* What a test does with it: find the six digits and sign in. */
    const char *p = strstr(fields->element[3]->str, "验证码") + strlen("验证码");
    char code[FXB_OTP_DIGITS + 1];
    memcpy(code, p, FXB_OTP_DIGITS);
    code[FXB_OTP_DIGITS] = '\0';
    freeReplyObject(r);
    assert_int_equal(verify_at(f, PHONE, FXB_OTP_SIGN_IN, code, T0 + 1, &err), FXB_OK);
}

static void test_dev_sms_stream_is_capped(void **state)
{
    fixture *f = *state;
    fxb_store_options opt = {.url = test_url};
    fxb_err err;
    fxb_sms_sender *sms = fxb_sms_dev_new(&opt, false, &err);
    assert_non_null(sms);
    for (int n = 0; n < 1300; n++)
        assert_int_equal(fxb_sms_send(sms, PHONE, "x", &err), FXB_OK);
    fxb_sms_free(sms);
    redisReply *r = fxb_store_command(f->s, &err, "XLEN %s", FXB_SMS_DEV_STREAM);
    assert_non_null(r);
    /* MAXLEN ~ trims whole macro nodes (100 entries by default). */
    assert_true(r->integer >= 1000 && r->integer <= 1100);
    freeReplyObject(r);
}

static void test_dev_sms_sink_is_refused_in_production(void **state)
{
    fxb_store_options opt = {.url = test_url};
    fxb_err err;
    assert_null(fxb_sms_dev_new(&opt, true, &err));
    assert_int_equal(err.code, FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "SMS_DEV_IN_PRODUCTION");
}

static void test_sms_send_checks_number_and_text(void **state)
{
    fxb_store_options opt = {.url = test_url};
    fxb_err err;
    fxb_sms_sender *sms = fxb_sms_dev_new(&opt, false, &err);
    assert_non_null(sms);
    fxb_code rc = fxb_sms_send(sms, "1381234567", "hi", &err);
    assert_err(rc, &err, FXB_INVALID_ARGUMENT, "PHONE_INVALID");
    rc = fxb_sms_send(sms, PHONE, "", &err);
    assert_err(rc, &err, FXB_INVALID_ARGUMENT, "SMS_TEXT_INVALID");
    rc = fxb_sms_send(sms, PHONE, NULL, &err);
    assert_err(rc, &err, FXB_INVALID_ARGUMENT, "SMS_TEXT_INVALID");
    char big[FXB_SMS_TEXT_MAX + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    rc = fxb_sms_send(sms, PHONE, big, &err);
    assert_err(rc, &err, FXB_INVALID_ARGUMENT, "SMS_TEXT_INVALID");
    fxb_sms_free(sms);
    rc = fxb_sms_send(NULL, PHONE, "hi", &err);
    assert_int_equal(rc, FXB_INTERNAL);
    fxb_sms_free(NULL);
}

static void test_dev_sms_sink_reports_an_unreachable_store(void **state)
{
    fxb_store_options opt = {.url = "redis://127.0.0.1:1/13", .connect_timeout_ms = 200};
    fxb_err err;
    fxb_sms_sender *sms = fxb_sms_dev_new(&opt, false, &err);
    assert_non_null(sms);
    fxb_code rc = fxb_sms_send(sms, PHONE, "hi", &err);
    assert_err(rc, &err, FXB_UNAVAILABLE, "SMS_SEND_FAILED");
    assert_null(strstr(err.message, PHONE));
    fxb_sms_free(sms);
}

/* ---- the server secret -------------------------------------------------------- */

static char *make_data_dir(void)
{
    char *dir = strdup("/tmp/fxb-test-secret.XXXXXX");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void remove_data_dir(char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
}

static void secret_path(const char *dir, char *out, size_t cap)
{
    snprintf(out, cap, "%s/keys/server-secret", dir);
}

static void test_secret_is_created_once_0600_and_reloaded_identical(void **state)
{
    char *dir = make_data_dir();
    uint8_t a[FXB_SECRET_LEN], b[FXB_SECRET_LEN], zero[FXB_SECRET_LEN] = {0};
    fxb_err err;
    assert_int_equal(fxb_secret_load_or_create(dir, a, true, &err), FXB_OK);
    assert_memory_not_equal(a, zero, sizeof a);
    char path[512];
    secret_path(dir, path, sizeof path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 32);
    char keys[512];
    snprintf(keys, sizeof keys, "%s/keys", dir);
    assert_int_equal(stat(keys, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(fxb_secret_load_or_create(dir, b, true, &err), FXB_OK);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(fxb_secret_load_or_create(dir, b, false, &err), FXB_OK);
    assert_memory_equal(a, b, sizeof a);
    remove_data_dir(dir);
}

static void test_secret_missing_is_not_created_without_permission(void **state)
{
    char *dir = make_data_dir();
    uint8_t a[FXB_SECRET_LEN];
    fxb_err err;
    assert_int_equal(fxb_secret_load_or_create(dir, a, false, &err), FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "SECRET_MISSING");
    char path[512];
    secret_path(dir, path, sizeof path);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(fxb_secret_load_or_create(NULL, a, true, &err), FXB_FAILED_PRECONDITION);
    remove_data_dir(dir);
}

static void test_secret_readable_by_group_or_others_is_refused(void **state)
{
    char *dir = make_data_dir();
    uint8_t a[FXB_SECRET_LEN], zero[FXB_SECRET_LEN] = {0};
    fxb_err err;
    assert_int_equal(fxb_secret_load_or_create(dir, a, true, &err), FXB_OK);
    char path[512];
    secret_path(dir, path, sizeof path);
    mode_t modes[] = {0640, 0604, 0620, 0660};
    for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
        assert_int_equal(chmod(path, modes[k]), 0);
        assert_int_equal(fxb_secret_load_or_create(dir, a, true, &err), FXB_FAILED_PRECONDITION);
        assert_string_equal(err.reason, "SECRET_INSECURE");
        assert_memory_equal(a, zero, sizeof a);
    }
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(fxb_secret_load_or_create(dir, a, true, &err), FXB_OK);
    remove_data_dir(dir);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_secret_of_the_wrong_size_is_refused_not_replaced(void **state)
{
    char *dir = make_data_dir();
    char keys[512], path[512];
    snprintf(keys, sizeof keys, "%s/keys", dir);
    assert_int_equal(mkdir(keys, 0700), 0);
    secret_path(dir, path, sizeof path);
    uint8_t a[FXB_SECRET_LEN + 1] = {1};
    size_t sizes[] = {0, 31, 33};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        write_file(path, a, sizes[k], 0600);
        fxb_err err;
        assert_int_equal(fxb_secret_load_or_create(dir, a, true, &err), FXB_FAILED_PRECONDITION);
        assert_string_equal(err.reason, "SECRET_INVALID");
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, (off_t)sizes[k]);
    }
    remove_data_dir(dir);
}

static void test_secret_behind_a_symlink_or_not_a_file_is_refused(void **state)
{
    char *dir = make_data_dir();
    char keys[512], path[512], real[512];
    snprintf(keys, sizeof keys, "%s/keys", dir);
    assert_int_equal(mkdir(keys, 0700), 0);
    secret_path(dir, path, sizeof path);
    snprintf(real, sizeof real, "%s/real", dir);
    uint8_t a[FXB_SECRET_LEN] = {1};
    write_file(real, a, sizeof a, 0600);
    assert_int_equal(symlink(real, path), 0);
    fxb_err err;
    assert_int_equal(fxb_secret_load_or_create(dir, a, true, &err), FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "SECRET_INSECURE");
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(fxb_secret_load_or_create(dir, a, true, &err), FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "SECRET_INVALID");
    remove_data_dir(dir);
}

static void test_hmac_is_sha256_over_label_nul_data(void **state)
{
    uint8_t key[FXB_SECRET_LEN];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)i;
    char out[FXB_HMAC_HEX_LEN + 1];
    /* Python: hmac.new(bytes(range(32)), b'fxb/test\x00hello', sha256). */
    assert_true(fxb_hmac_hex(key, "fxb/test", "hello", 5, out));
    assert_string_equal(out, "80bc2428c3589682f6a9732bcedbdca2154922b264e22b2ff159713ee70e600b");
}

static void test_hmac_labels_separate_domains(void **state)
{
    uint8_t key[FXB_SECRET_LEN] = {9};
    char a[FXB_HMAC_HEX_LEN + 1], b[FXB_HMAC_HEX_LEN + 1];
    assert_true(fxb_hmac_hex(key, "ab", "c", 1, a));
    assert_true(fxb_hmac_hex(key, "a", "bc", 2, b));
    assert_string_not_equal(a, b);
    assert_true(fxb_hmac_hex(key, "x", NULL, 0, a));
    assert_false(fxb_hmac_hex(key, "", "c", 1, a));
    assert_string_equal(a, "");
    assert_false(fxb_hmac_hex(key, NULL, "c", 1, a));
    assert_false(fxb_hmac_hex(NULL, "x", "c", 1, a));
    assert_false(fxb_hmac_hex(key, "x", NULL, 1, a));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, each_setup, each_teardown)
    const struct CMUnitTest tests[] = {
        T(test_issued_code_is_six_digits_valid_five_minutes_resend_after_sixty_seconds),
        T(test_issued_code_verifies_for_its_number_and_purpose),
        T(test_prefixed_forms_are_the_same_number),
        T(test_a_code_is_single_use),
        T(test_a_code_is_not_valid_for_another_number),
        T(test_a_code_verifies_only_for_its_purpose),
        T(test_codes_of_different_purposes_live_side_by_side),
        T(test_a_new_code_replaces_the_previous_one_of_the_same_purpose),
        T(test_codes_are_random_and_may_start_with_zero),
        T(test_each_wrong_try_says_how_many_tries_remain),
        T(test_fifth_wrong_try_burns_the_code_even_for_the_right_code),
        T(test_a_new_code_can_be_requested_after_a_burnt_one),
        T(test_malformed_code_is_refused_without_costing_a_try),
        T(test_code_is_valid_until_just_before_five_minutes),
        T(test_code_expires_at_five_minutes_even_when_right),
        T(test_never_issued_code_is_expired),
        T(test_timeout_multiplier_extends_validity),
        T(test_timeout_multiplier_is_capped_at_fifteen_minutes),
        T(test_timeout_multiplier_below_100_percent_means_five_minutes),
        T(test_resend_is_refused_until_sixty_seconds_have_passed),
        T(test_refused_resend_keeps_the_pending_code),
        T(test_resend_interval_is_per_number_across_purposes),
        T(test_daily_cap_per_number_is_ten_and_resets_at_16_00_utc),
        T(test_daily_cap_per_client_address_is_fifty_and_resets_at_16_00_utc),
        T(test_daily_caps_are_configurable),
        T(test_refused_request_does_not_spend_the_address_quota),
        T(test_ipv6_clients_of_one_slash_64_share_a_quota),
        T(test_malformed_number_is_refused_before_anything_is_stored),
        T(test_unknown_purpose_is_refused),
        T(test_missing_client_address_is_refused),
        T(test_unreachable_store_is_unavailable),
        T(test_redis_holds_no_number_code_or_address_in_clear),
        T(test_sms_text_names_the_code_its_use_and_validity),
        T(test_dev_sms_sink_lets_tests_read_the_code),
        T(test_dev_sms_stream_is_capped),
        T(test_dev_sms_sink_is_refused_in_production),
        T(test_sms_send_checks_number_and_text),
        T(test_dev_sms_sink_reports_an_unreachable_store),
        cmocka_unit_test(test_secret_is_created_once_0600_and_reloaded_identical),
        cmocka_unit_test(test_secret_missing_is_not_created_without_permission),
        cmocka_unit_test(test_secret_readable_by_group_or_others_is_refused),
        cmocka_unit_test(test_secret_of_the_wrong_size_is_refused_not_replaced),
        cmocka_unit_test(test_secret_behind_a_symlink_or_not_a_file_is_refused),
        cmocka_unit_test(test_hmac_is_sha256_over_label_nul_data),
        cmocka_unit_test(test_hmac_labels_separate_domains),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
