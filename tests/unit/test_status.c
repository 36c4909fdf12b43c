/* Status mapping and the google.rpc.Status details every error carries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "google/protobuf/any.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "server/status.h"

static void test_code_names_match_grpc(void **state)
{
    assert_string_equal(fxb_code_name(FXB_OK), "OK");
    assert_string_equal(fxb_code_name(FXB_INVALID_ARGUMENT), "INVALID_ARGUMENT");
    assert_string_equal(fxb_code_name(FXB_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    assert_string_equal(fxb_code_name(FXB_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_int_equal(FXB_UNAVAILABLE, 14);
    assert_int_equal(FXB_UNAUTHENTICATED, 16);
    assert_string_equal(fxb_code_name(-1), "UNKNOWN");
    assert_string_equal(fxb_code_name(17), "UNKNOWN");
}

static void test_err_set_returns_code_and_formats(void **state)
{
    fxb_err e;
    assert_int_equal(
        fxb_err_set(&e, FXB_NOT_FOUND, "ITEM_NOT_FOUND", "事项不存在", "no item %d", 7),
        FXB_NOT_FOUND);
    assert_string_equal(e.reason, "ITEM_NOT_FOUND");
    assert_string_equal(e.message, "no item 7");
    assert_string_equal(e.message_zh, "事项不存在");
    assert_int_equal(fxb_err_set(NULL, FXB_INTERNAL, "X", "", "y"), FXB_INTERNAL);
}

static void test_long_messages_are_cut_on_utf8_boundaries(void **state)
{
    char zh[3 * 400 + 1];
    for (int i = 0; i < 400; i++)
        memcpy(zh + 3 * i, "新", 3);
    zh[1200] = '\0';
    fxb_err e;
    fxb_err_set(&e, FXB_INVALID_ARGUMENT, "R", zh, "%s", zh);
    size_t n = strlen(e.message_zh);
    assert_true(n < FXB_ERR_MESSAGE_MAX);
    assert_int_equal(n % 3, 0);
    assert_int_equal(strlen(e.message) % 3, 0);
}

static void test_utf8_truncate_never_splits_a_character(void **state)
{
    char s[] = "ab新c";
    fxb_utf8_truncate(s, 3);
    assert_string_equal(s, "ab");
    char t[] = "ab新c";
    fxb_utf8_truncate(t, 5);
    assert_string_equal(t, "ab新");
    char u[] = "abc";
    fxb_utf8_truncate(u, 10);
    assert_string_equal(u, "abc");
}

static void test_details_carry_error_info_and_localized_message(void **state)
{
    fxb_err e;
    fxb_err_set(&e, FXB_UNAVAILABLE, "STORE_UNAVAILABLE", "系统繁忙，请稍后重试", "store down");
    e.retry_after_ms = 1500;
    size_t len = 0;
    unsigned char *buf = fxb_err_pack_details(&e, &len);
    assert_non_null(buf);
    Google__Rpc__Status *st = google__rpc__status__unpack(NULL, len, buf);
    assert_non_null(st);
    assert_int_equal(st->code, FXB_UNAVAILABLE);
    assert_string_equal(st->message, "store down");
    assert_int_equal(st->n_details, 3);
    assert_string_equal(st->details[0]->type_url, "type.googleapis.com/google.rpc.ErrorInfo");
    Google__Rpc__ErrorInfo *info = google__rpc__error_info__unpack(NULL, st->details[0]->value.len,
                                                                   st->details[0]->value.data);
    assert_string_equal(info->reason, "STORE_UNAVAILABLE");
    assert_string_equal(info->domain, "fxb");
    assert_string_equal(st->details[1]->type_url,
                        "type.googleapis.com/google.rpc.LocalizedMessage");
    Google__Rpc__LocalizedMessage *loc = google__rpc__localized_message__unpack(
        NULL, st->details[1]->value.len, st->details[1]->value.data);
    assert_string_equal(loc->locale, "zh-CN");
    assert_string_equal(loc->message, "系统繁忙，请稍后重试");
    Google__Rpc__RetryInfo *retry = google__rpc__retry_info__unpack(NULL, st->details[2]->value.len,
                                                                    st->details[2]->value.data);
    assert_int_equal(retry->retry_delay->seconds, 1);
    assert_int_equal(retry->retry_delay->nanos, 500000000);
    google__rpc__retry_info__free_unpacked(retry, NULL);
    google__rpc__localized_message__free_unpacked(loc, NULL);
    google__rpc__error_info__free_unpacked(info, NULL);
    google__rpc__status__free_unpacked(st, NULL);
    free(buf);
}

static void test_details_reason_defaults_to_code_name(void **state)
{
    fxb_err e;
    fxb_err_clear(&e);
    e.code = FXB_INTERNAL;
    size_t len = 0;
    unsigned char *buf = fxb_err_pack_details(&e, &len);
    Google__Rpc__Status *st = google__rpc__status__unpack(NULL, len, buf);
    assert_int_equal(st->n_details, 1); /* no empty localized message */
    Google__Rpc__ErrorInfo *info = google__rpc__error_info__unpack(NULL, st->details[0]->value.len,
                                                                   st->details[0]->value.data);
    assert_string_equal(info->reason, "INTERNAL");
    google__rpc__error_info__free_unpacked(info, NULL);
    google__rpc__status__free_unpacked(st, NULL);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_names_match_grpc),
        cmocka_unit_test(test_err_set_returns_code_and_formats),
        cmocka_unit_test(test_long_messages_are_cut_on_utf8_boundaries),
        cmocka_unit_test(test_utf8_truncate_never_splits_a_character),
        cmocka_unit_test(test_details_carry_error_info_and_localized_message),
        cmocka_unit_test(test_details_reason_defaults_to_code_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
