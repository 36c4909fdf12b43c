/* Phone numbers and peer addresses as the AuthService contract defines
 * them: which inputs are a mainland mobile number, the one normal form,
 * the mask shown to users, the keyed tag used in Redis keys, and the client
 * address taken from a gRPC peer string. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/phone.h"

static void assert_normalizes(const char *in, const char *want)
{
    char out[FXB_PHONE_LEN + 1];
    fxb_err err;
    fxb_err_clear(&err);
    assert_int_equal(fxb_phone_normalize(in, out, &err), FXB_OK);
    assert_string_equal(out, want);
}

static void assert_rejected(const char *in)
{
    char out[FXB_PHONE_LEN + 1] = "x";
    fxb_err err;
    assert_int_equal(fxb_phone_normalize(in, out, &err), FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "PHONE_INVALID");
    assert_string_equal(out, "");
    if (in != NULL)
        assert_false(fxb_phone_valid(in));
}

/* ---- what a number is ---------------------------------------------------- */

static void test_every_second_digit_3_to_9_is_a_mobile_prefix(void **state)
{
    char phone[] = "13012345678";
    for (char d = '3'; d <= '9'; d++) {
        phone[1] = d;
        assert_true(fxb_phone_valid(phone));
        assert_normalizes(phone, phone);
    }
}

static void test_second_digit_0_1_2_is_not_a_mobile_prefix(void **state)
{
    assert_rejected("10012345678");
    assert_rejected("11012345678");
    assert_rejected("12012345678");
}

static void test_first_digit_must_be_1(void **state)
{
    assert_rejected("23812345678");
    assert_rejected("03812345678");
}

static void test_ten_and_twelve_digits_are_rejected(void **state)
{
    assert_rejected("1381234567");
    assert_rejected("138123456789");
}

static void test_letters_and_punctuation_are_rejected(void **state)
{
    assert_rejected("1381234567a");
    assert_rejected("138-1234-5678");
    assert_rejected("138.12345678");
    assert_rejected("abcdefghijk");
}

static void test_full_width_digits_are_rejected(void **state)
{
    /* "１３８１２３４５６７８": the app must send ASCII digits. */
    assert_rejected("\xef\xbc\x91\xef\xbc\x93\xef\xbc\x98\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93"
                    "\xef\xbc\x94\xef\xbc\x95\xef\xbc\x96\xef\xbc\x97\xef\xbc\x98");
}

static void test_other_non_ascii_is_rejected(void **state)
{
    assert_rejected("手机13812345678");
    assert_rejected("1381234567\xff");
    assert_rejected("\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a");
}

static void test_plus86_and_86_prefixes_normalise_to_the_bare_number(void **state)
{
    assert_normalizes("+8613812345678", "13812345678");
    assert_normalizes("8613812345678", "13812345678");
    assert_normalizes("13812345678", "13812345678");
}

static void test_prefixed_forms_are_not_valid_bare_numbers(void **state)
{
    assert_false(fxb_phone_valid("+8613812345678"));
    assert_false(fxb_phone_valid("8613812345678"));
}

static void test_prefix_followed_by_an_invalid_number_is_rejected(void **state)
{
    assert_rejected("+8612812345678");
    assert_rejected("+861381234567");
    assert_rejected("86138123456789");
    assert_rejected("+86");
    assert_rejected("86");
}

static void test_other_country_codes_and_international_zeros_are_rejected(void **state)
{
    assert_rejected("008613812345678");
    assert_rejected("+8513812345678");
    assert_rejected("+113812345678");
    assert_rejected("++8613812345678");
}

static void test_spaces_anywhere_are_rejected(void **state)
{
    assert_rejected(" 13812345678");
    assert_rejected("13812345678 ");
    assert_rejected("138 1234 5678");
    assert_rejected("+86 13812345678");
    assert_rejected("1381234567\t8");
    assert_rejected("13812345678\n");
}

static void test_null_and_empty_are_rejected_with_an_explanation(void **state)
{
    char out[FXB_PHONE_LEN + 1] = "x";
    fxb_err err;
    assert_int_equal(fxb_phone_normalize(NULL, out, &err), FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "PHONE_INVALID");
    assert_string_equal(err.message_zh, "手机号码格式不正确");
    assert_non_null(strstr(err.message, "11 digits"));
    assert_non_null(strstr(err.message, "+86"));
    assert_string_equal(out, "");
    assert_false(fxb_phone_valid(NULL));
    assert_rejected("");
}

static void test_null_output_buffer_is_an_error_not_a_crash(void **state)
{
    fxb_err err;
    assert_int_equal(fxb_phone_normalize("13812345678", NULL, &err), FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_phone_normalize("13812345678", (char *)NULL, NULL), FXB_INVALID_ARGUMENT);
}

static void test_huge_input_is_rejected_without_reading_it_all(void **state)
{
    size_t n = 10 * 1024;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, '1', n);
    big[n] = '\0';
    assert_rejected(big);
    /* A valid number followed by 10 KiB of digits is still not a number. */
    memcpy(big, "13812345678", 11);
    assert_rejected(big);
    memcpy(big, "+8613812345678", 14);
    assert_rejected(big);
    free(big);
}

static void test_error_pointer_may_be_null(void **state)
{
    char out[FXB_PHONE_LEN + 1];
    assert_int_equal(fxb_phone_normalize("bad", out, NULL), FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_phone_normalize("13812345678", out, NULL), FXB_OK);
}

/* ---- masking ------------------------------------------------------------- */

static void test_mask_keeps_first_three_and_last_four_digits(void **state)
{
    char out[FXB_PHONE_LEN + 1];
    assert_true(fxb_phone_mask("13812345678", out));
    assert_string_equal(out, "138****5678");
}

static void test_mask_accepts_prefixed_forms(void **state)
{
    char out[FXB_PHONE_LEN + 1];
    assert_true(fxb_phone_mask("+8619900001111", out));
    assert_string_equal(out, "199****1111");
}

static void test_mask_of_anything_unrecognised_shows_nothing_of_it(void **state)
{
    char out[FXB_PHONE_LEN + 1];
    assert_false(fxb_phone_mask("12812345678", out));
    assert_string_equal(out, "*");
    assert_false(fxb_phone_mask("1381234567", out));
    assert_string_equal(out, "*");
    assert_false(fxb_phone_mask(NULL, out));
    assert_string_equal(out, "*");
    assert_false(fxb_phone_mask("", out));
    assert_string_equal(out, "*");
    assert_false(fxb_phone_mask("13812345678", NULL));
}

/* ---- the keyed tag --------------------------------------------------------- */

static void test_tag_is_16_hex_digits_stable_for_one_secret(void **state)
{
    uint8_t secret[FXB_SECRET_LEN];
    memset(secret, 7, sizeof secret);
    char a[FXB_PHONE_TAG_LEN + 1], b[FXB_PHONE_TAG_LEN + 1];
    assert_true(fxb_phone_tag(secret, "13812345678", a));
    assert_true(fxb_phone_tag(secret, "13812345678", b));
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), FXB_PHONE_TAG_LEN);
    assert_int_equal(strspn(a, "0123456789abcdef"), FXB_PHONE_TAG_LEN);
    assert_null(strstr(a, "5678"));
}

static void test_tag_differs_between_numbers_and_between_secrets(void **state)
{
    uint8_t s1[FXB_SECRET_LEN], s2[FXB_SECRET_LEN];
    memset(s1, 1, sizeof s1);
    memset(s2, 2, sizeof s2);
    char a[FXB_PHONE_TAG_LEN + 1], b[FXB_PHONE_TAG_LEN + 1], c[FXB_PHONE_TAG_LEN + 1];
    assert_true(fxb_phone_tag(s1, "13812345678", a));
    assert_true(fxb_phone_tag(s1, "13812345679", b));
    assert_true(fxb_phone_tag(s2, "13812345678", c));
    assert_string_not_equal(a, b);
    assert_string_not_equal(a, c);
}

static void test_tag_requires_the_bare_form(void **state)
{
    uint8_t secret[FXB_SECRET_LEN] = {0};
    char t[FXB_PHONE_TAG_LEN + 1] = "x";
    assert_false(fxb_phone_tag(secret, "+8613812345678", t));
    assert_string_equal(t, "");
    assert_false(fxb_phone_tag(secret, NULL, t));
    assert_false(fxb_phone_tag(NULL, "13812345678", t));
}

/* ---- peer addresses -------------------------------------------------------- */

static void assert_peer(const char *peer, const char *want)
{
    char out[FXB_PEER_IP_MAX];
    if (want == NULL) {
        assert_false(fxb_peer_ip(peer, out));
        assert_string_equal(out, "");
    } else {
        assert_true(fxb_peer_ip(peer, out));
        assert_string_equal(out, want);
    }
}

static void test_peer_ipv4_drops_the_port(void **state)
{
    assert_peer("ipv4:1.2.3.4:5678", "1.2.3.4");
    assert_peer("ipv4:127.0.0.1:1", "127.0.0.1");
    assert_peer("ipv4:255.255.255.255:65535", "255.255.255.255");
}

static void test_peer_ipv6_in_brackets_drops_the_port(void **state)
{
    assert_peer("ipv6:[::1]:5678", "::1");
    assert_peer("ipv6:[2001:db8::1]:443", "2001:db8::1");
}

static void test_peer_ipv6_percent_encoded_as_grpc_1_48_writes_it(void **state)
{
    assert_peer("ipv6:%5B::1%5D:5678", "::1");
    assert_peer("ipv6:%5b2001:DB8:0:0::1%5d:5678", "2001:db8::1");
}

static void test_peer_ipv6_is_written_in_canonical_form(void **state)
{
    assert_peer("ipv6:[2001:0DB8:0000:0000:0000:0000:0000:0001]:5678", "2001:db8::1");
}

static void test_peer_ipv6_zone_id_is_dropped(void **state)
{
    assert_peer("ipv6:[fe80::1%25eth0]:5678", "fe80::1");
    assert_peer("ipv6:%5Bfe80::1%25eth0%5D:5678", "fe80::1");
}

static void test_peer_ipv4_mapped_ipv6_is_the_ipv4_client(void **state)
{
    assert_peer("ipv6:[::ffff:10.0.0.7]:5678", "10.0.0.7");
}

static void test_peer_ipv6_without_brackets_from_old_grpc(void **state)
{
    assert_peer("ipv6:::1:5678", "::1");
}

static void test_peer_unix_sockets_are_one_local_client(void **state)
{
    assert_peer("unix:/tmp/fxb.sock", "unix");
    assert_peer("unix:", "unix");
    assert_peer("unix-abstract:fxb", "unix");
}

static void test_peer_garbage_gives_nothing(void **state)
{
    assert_peer(NULL, NULL);
    assert_peer("", NULL);
    assert_peer("1.2.3.4:5678", NULL);
    assert_peer("ipv4:1.2.3.4", NULL);
    assert_peer("ipv4:1.2.3.4:", NULL);
    assert_peer("ipv4:1.2.3.4:99999", NULL);
    assert_peer("ipv4:1.2.3.4:12a", NULL);
    assert_peer("ipv4:1.2.3.4:5678 ", NULL);
    assert_peer("ipv4:999.2.3.4:5678", NULL);
    assert_peer("ipv4::5678", NULL);
    assert_peer("ipv4:[::1]:5678", NULL);
    assert_peer("ipv6:[::1]", NULL);
    assert_peer("ipv6:[::1:5678", NULL);
    assert_peer("ipv6:[]:5678", NULL);
    assert_peer("ipv6:[zz::1]:5678", NULL);
    assert_peer("ipv6:%5B::1%5D", NULL);
    assert_peer("ipv6:%5G::1%5D:5678", NULL);
    assert_peer("ipv6:%00::1:5678", NULL);
    assert_peer("ipv6:[1.2.3.4]:5678", NULL);
    assert_peer("dns:example.com:443", NULL);
    assert_peer("IPV4:1.2.3.4:5678", NULL);
}

static void test_peer_huge_input_gives_nothing(void **state)
{
    size_t n = 10 * 1024;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, '1', n);
    memcpy(big, "ipv4:1.2.3.4:", 13);
    big[n] = '\0';
    assert_peer(big, NULL);
    free(big);
}

static void test_peer_null_output_is_not_a_crash(void **state)
{
    assert_false(fxb_peer_ip("ipv4:1.2.3.4:5", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_second_digit_3_to_9_is_a_mobile_prefix),
        cmocka_unit_test(test_second_digit_0_1_2_is_not_a_mobile_prefix),
        cmocka_unit_test(test_first_digit_must_be_1),
        cmocka_unit_test(test_ten_and_twelve_digits_are_rejected),
        cmocka_unit_test(test_letters_and_punctuation_are_rejected),
        cmocka_unit_test(test_full_width_digits_are_rejected),
        cmocka_unit_test(test_other_non_ascii_is_rejected),
        cmocka_unit_test(test_plus86_and_86_prefixes_normalise_to_the_bare_number),
        cmocka_unit_test(test_prefixed_forms_are_not_valid_bare_numbers),
        cmocka_unit_test(test_prefix_followed_by_an_invalid_number_is_rejected),
        cmocka_unit_test(test_other_country_codes_and_international_zeros_are_rejected),
        cmocka_unit_test(test_spaces_anywhere_are_rejected),
        cmocka_unit_test(test_null_and_empty_are_rejected_with_an_explanation),
        cmocka_unit_test(test_null_output_buffer_is_an_error_not_a_crash),
        cmocka_unit_test(test_huge_input_is_rejected_without_reading_it_all),
        cmocka_unit_test(test_error_pointer_may_be_null),
        cmocka_unit_test(test_mask_keeps_first_three_and_last_four_digits),
        cmocka_unit_test(test_mask_accepts_prefixed_forms),
        cmocka_unit_test(test_mask_of_anything_unrecognised_shows_nothing_of_it),
        cmocka_unit_test(test_tag_is_16_hex_digits_stable_for_one_secret),
        cmocka_unit_test(test_tag_differs_between_numbers_and_between_secrets),
        cmocka_unit_test(test_tag_requires_the_bare_form),
        cmocka_unit_test(test_peer_ipv4_drops_the_port),
        cmocka_unit_test(test_peer_ipv6_in_brackets_drops_the_port),
        cmocka_unit_test(test_peer_ipv6_percent_encoded_as_grpc_1_48_writes_it),
        cmocka_unit_test(test_peer_ipv6_is_written_in_canonical_form),
        cmocka_unit_test(test_peer_ipv6_zone_id_is_dropped),
        cmocka_unit_test(test_peer_ipv4_mapped_ipv6_is_the_ipv4_client),
        cmocka_unit_test(test_peer_ipv6_without_brackets_from_old_grpc),
        cmocka_unit_test(test_peer_unix_sockets_are_one_local_client),
        cmocka_unit_test(test_peer_garbage_gives_nothing),
        cmocka_unit_test(test_peer_huge_input_gives_nothing),
        cmocka_unit_test(test_peer_null_output_is_not_a_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
