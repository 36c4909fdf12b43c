/* Unified social credit codes (GB 32100-2015) as rules: published examples
 * verified by an independent calculation, each reason of refusal, and the
 * embedded GB 11714 organisation code.
 *
 * Independent calculations (alphabet 0-9 A-H J-N P-R T U W-Y, values 0-30;
 * weights 3^(i-1) mod 31 = 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28;
 * check = alphabet[(31 - sum mod 31) mod 31]):
 *   91350100M000100Y43: 9*1 + 1*3 + 3*9 + 5*27 + 1*26 + M(21)*20 + 1*8 +
 *     Y(30)*30 + 4*28 = 1640; 1640 mod 31 = 28; 31 - 28 = 3 -> '3'.
 *     Org code M000100Y-4 (GB 11714: weights 3 7 9 10 5 8 4 2, A = 10):
 *     M(22)*3 + 1*5 + Y(34)*2 = 139; 139 mod 11 = 7; 11 - 7 = 4 -> '4'.
 *   91110000600037341L: 9*1 + 1*3 + 1*9 + 1*27 + 6*20 + 3*8 + 7*24 +
 *     3*10 + 4*30 + 1*28 = 538; 538 mod 31 = 11; 31 - 11 = 20 -> 'L'.
 *     Org code 60003734-1: 6*3 + 3*5 + 7*8 + 3*4 + 4*2 = 109; 109 mod
 *     11 = 10; 11 - 10 = 1 -> '1'.
 * Both are thus valid; constructed codes below were computed the same way
 * (a Python one-liner, not fxb). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "auth/uscc.h"

static void assert_reason(const char *code, const char *reason)
{
    fxb_err err;
    fxb_code rc = fxb_uscc_check(code, &err);
    if (rc != FXB_INVALID_ARGUMENT || strcmp(err.reason, reason) != 0)
        fail_msg("%s: expected %s, got %d %s", code ? code : "(null)", reason, rc, err.reason);
}

static void assert_valid(const char *code)
{
    fxb_err err;
    if (fxb_uscc_check(code, &err) != FXB_OK)
        fail_msg("%s: expected valid, got %s", code, err.reason);
}

static void test_published_examples_are_valid(void **state)
{
    (void)state;
    assert_valid("91350100M000100Y43");
    assert_valid("91110000600037341L");
    /* Constructed, not published: both check characters X. Org code
     * 71093123: 7*3 + 1*7 + 9*10 + 3*5 + 1*8 + 2*4 + 3*2 = 155; 155 mod 11
     * = 1; 11 - 1 = 10 -> 'X'. GB 32100: sum 1304; 1304 mod 31 = 2;
     * 31 - 2 = 29 -> 'X'. */
    assert_valid("9111000071093123XX");
}

static void test_check_chars_are_computed_as_the_standards_say(void **state)
{
    (void)state;
    assert_int_equal(fxb_uscc_check_char("91350100M000100Y4"), '3');
    assert_int_equal(fxb_uscc_check_char("91110000600037341"), 'L');
    assert_int_equal(fxb_orgcode_check_char("M000100Y"), '4');
    assert_int_equal(fxb_orgcode_check_char("60003734"), '1');
    assert_int_equal(fxb_orgcode_check_char("71093123"), 'X');
    assert_int_equal(fxb_uscc_check_char("9135010OM000100Y4"), '\0'); /* O */
    assert_int_equal(fxb_orgcode_check_char("m000100Y"), '\0');
}

static void test_length_must_be_18(void **state)
{
    (void)state;
    assert_reason(NULL, "USCC_FORMAT");
    assert_reason("", "USCC_FORMAT");
    assert_reason("91350100M000100Y4", "USCC_FORMAT");
    assert_reason("91350100M000100Y433", "USCC_FORMAT");
}

/* I, O, Z, S, V are not in the alphabet (they read like 1, 0, 2, 5, U). */
static void test_letters_i_o_z_s_v_and_lower_case_are_refused(void **state)
{
    (void)state;
    static const char letters[] = "IOZSVm";
    for (size_t i = 0; letters[i] != '\0'; i++) {
        char code[] = "91350100M000100Y43";
        code[8] = letters[i];
        assert_reason(code, "USCC_FORMAT");
        code[8] = 'M';
        code[17] = letters[i];
        assert_reason(code, "USCC_FORMAT");
    }
    assert_reason("91350100m000100y43", "USCC_FORMAT");
    assert_reason("91350100M000100Y4-", "USCC_FORMAT");
}

static void test_registration_authority_0_and_non_digit_region_are_refused(void **state)
{
    (void)state;
    assert_reason("01350100M000100Y43", "USCC_FORMAT");
    assert_reason("9135A100M000100Y43", "USCC_FORMAT");
}

static void test_one_character_changed_fails_the_check(void **state)
{
    (void)state;
    assert_reason("91350100M000100Y44", "USCC_CHECK"); /* the check itself */
    assert_reason("91350100M000200Y43", "USCC_CHECK"); /* a body digit */
    assert_reason("91350101M000100Y43", "USCC_CHECK"); /* a region digit */
    assert_reason("92110000600037341L", "USCC_CHECK"); /* the category */
    assert_reason("19350100M000100Y43", "USCC_CHECK"); /* two swapped */
}

/* The 18th character right, the embedded organisation code's wrong:
 * 91350100M000100Y5 -> GB 32100 check '6' (computed), but M000100Y wants
 * '4', not '5'. Likewise 91110000600037342P (org check wants '1') and
 * 91350100M000200Y4T (org body changed; M000200Y wants 'X'). */
static void test_embedded_organisation_code_check_is_validated(void **state)
{
    (void)state;
    assert_reason("91350100M000100Y56", "USCC_ORG_CHECK");
    assert_reason("91110000600037342P", "USCC_ORG_CHECK");
    assert_reason("91350100M000200Y4T", "USCC_ORG_CHECK");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_examples_are_valid),
        cmocka_unit_test(test_check_chars_are_computed_as_the_standards_say),
        cmocka_unit_test(test_length_must_be_18),
        cmocka_unit_test(test_letters_i_o_z_s_v_and_lower_case_are_refused),
        cmocka_unit_test(test_registration_authority_0_and_non_digit_region_are_refused),
        cmocka_unit_test(test_one_character_changed_fails_the_check),
        cmocka_unit_test(test_embedded_organisation_code_check_is_validated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
