/* The rating invitation against a real Redis (db 8, flushed before each
 * test): the application core calls fxb_rating_invite when an application
 * ends; it leaves one "rating.invite" notice naming the application in the
 * subject's inbox (a person's or an enterprise's), and a bad subject or an
 * unreachable store is logged, never a crash. The RatingService itself is
 * tested end to end (tests/e2e/test_rating.py). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "services/rating/rating.h"
#include "store/inbox.h"

#define TEST_DB 8

#define PERSON     "acct-rating-1"
#define ENTERPRISE "e0123456789abcdef01234567"
#define AID        "AAAAAAAAAAAAAAAAAAAAAA"
#define NOW_MS     1772762400000LL

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

/* The single entry of subject's inbox: its fields into the buffers. */
static void only_entry(fxb_store *s, const char *subject, char *kind, char *ref, char *body,
                       size_t cap)
{
    char key[128];
    assert_true(fxb_inbox_key(key, sizeof key, subject));
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - +", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    const redisReply *f = r->element[0]->element[1];
    kind[0] = ref[0] = body[0] = '\0';
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const char *name = f->element[i]->str, *val = f->element[i + 1]->str;
        if (strcmp(name, "kind") == 0)
            snprintf(kind, cap, "%s", val);
        else if (strcmp(name, "ref") == 0)
            snprintf(ref, cap, "%s", val);
        else if (strcmp(name, "body") == 0)
            snprintf(body, cap, "%s", val);
    }
    freeReplyObject(r);
}

static long long inbox_len(fxb_store *s, const char *subject)
{
    char key[128];
    assert_true(fxb_inbox_key(key, sizeof key, subject));
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "XLEN %s", key);
    assert_non_null(r);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

static void test_an_ended_application_invites_its_applicant_to_rate(void **state)
{
    fxb_store *s = *state;
    fxb_rating_invite(s, AID, PERSON, "个人参保证明查询打印", NOW_MS);
    char kind[64], ref[64], body[1024];
    only_entry(s, PERSON, kind, ref, body, sizeof body);
    assert_string_equal(kind, "rating.invite");
    assert_string_equal(ref, AID);
    assert_non_null(strstr(body, "个人参保证明查询打印"));
}

static void test_an_enterprise_applicant_is_invited_in_its_own_inbox(void **state)
{
    fxb_store *s = *state;
    fxb_rating_invite(s, AID, ENTERPRISE, "企业设立登记", NOW_MS);
    assert_int_equal(inbox_len(s, ENTERPRISE), 1);
    assert_int_equal(inbox_len(s, PERSON), 0);
}

static void test_a_long_item_name_is_cut_to_fit_the_notice(void **state)
{
    fxb_store *s = *state;
    char name[3 * 600 + 1] = "";
    for (int i = 0; i < 600; i++)
        strcat(name, "长");
    fxb_rating_invite(s, AID, PERSON, name, NOW_MS);
    assert_int_equal(inbox_len(s, PERSON), 1);
}

static void test_a_bad_subject_is_logged_not_written(void **state)
{
    fxb_store *s = *state;
    fxb_rating_invite(s, AID, "{u:bad}", "事项", NOW_MS);
    fxb_rating_invite(s, AID, NULL, "事项", NOW_MS);
    fxb_rating_invite(NULL, AID, PERSON, "事项", NOW_MS);
    fxb_rating_invite(s, AID, PERSON, NULL, NOW_MS);
    fxb_err err;
    /* only the last one, with an empty name: one inbox entry (its copy in
     * the vendor-push outbox is the push module's business) */
    redisReply *r = fxb_store_command(s, &err, "KEYS *:inbox");
    assert_non_null(r);
    assert_int_equal(r->elements, 1);
    freeReplyObject(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_an_ended_application_invites_its_applicant_to_rate,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_an_enterprise_applicant_is_invited_in_its_own_inbox,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_a_long_item_name_is_cut_to_fit_the_notice, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_a_bad_subject_is_logged_not_written, each_setup,
                                        each_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
