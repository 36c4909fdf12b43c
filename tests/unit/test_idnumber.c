/* Resident ID numbers (GB 11643-1999) as rules: what the standard's own
 * examples say, each reason of refusal in its order, what a valid number
 * tells, and age on a date. Check characters quoted in comments were
 * computed independently of fxb (weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4
 * 2, sum mod 11 indexing "10X98765432"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "auth/idnumber.h"

#define TODAY 20260115

static void assert_reason(const char *id, const char *reason)
{
    fxb_err err;
    fxb_idnumber out;
    memset(&out, 0x5a, sizeof(out));
    fxb_code rc = fxb_idnumber_check(id, TODAY, &out, &err);
    if (rc != FXB_INVALID_ARGUMENT || strcmp(err.reason, reason) != 0)
        fail_msg("%s: expected %s, got %d %s", id ? id : "(null)", reason, rc, err.reason);
    /* The number never appears in what is logged or shown. */
    if (id != NULL && id[0] != '\0') {
        assert_null(strstr(err.message, id));
        assert_null(strstr(err.message_zh, id));
    }
    assert_int_equal(out.birth, 0);
    assert_string_equal(out.id, "");
}

static void assert_valid(const char *id)
{
    fxb_err err;
    if (fxb_idnumber_check(id, TODAY, NULL, &err) != FXB_OK)
        fail_msg("%s: expected valid, got %s", id, err.reason);
}

/* GB 11643-1999 appendix example: Beijing Chaoyang, 1949-12-31, sequence
 * 002 (even: female); sum 167, 167 mod 11 = 2 -> 'X'. */
static void test_standard_example_is_valid_and_read(void **state)
{
    (void)state;
    fxb_idnumber out;
    fxb_err err;
    assert_int_equal(fxb_idnumber_check("11010519491231002X", TODAY, &out, &err), FXB_OK);
    assert_string_equal(out.id, "11010519491231002X");
    assert_string_equal(out.region, "110105");
    assert_int_equal(out.birth, 19491231);
    assert_int_equal(out.sex, FXB_SEX_FEMALE);
}

/* 410702199001011237: sum 181, 181 mod 11 = 5 -> '7'; 17th digit 3: male. */
static void test_odd_seventeenth_digit_is_male(void **state)
{
    (void)state;
    fxb_idnumber out;
    fxb_err err;
    assert_int_equal(fxb_idnumber_check("410702199001011237", TODAY, &out, &err), FXB_OK);
    assert_int_equal(out.sex, FXB_SEX_MALE);
    assert_string_equal(out.region, "410702");
    assert_int_equal(out.birth, 19900101);
}

static void test_lower_case_x_is_normalised_to_upper(void **state)
{
    (void)state;
    fxb_idnumber out;
    fxb_err err;
    assert_int_equal(fxb_idnumber_check("11010519491231002x", TODAY, &out, &err), FXB_OK);
    assert_string_equal(out.id, "11010519491231002X");
}

static void test_check_char_is_iso7064_mod11_2(void **state)
{
    (void)state;
    assert_int_equal(fxb_idnumber_check_char("11010519491231002"), 'X');
    assert_int_equal(fxb_idnumber_check_char("44052418800101001"), '4'); /* sum 195 -> 8 */
    assert_int_equal(fxb_idnumber_check_char("41070219900101123"), '7');
    assert_int_equal(fxb_idnumber_check_char("11010120000229002"), '6'); /* sum 116 -> 6 */
    assert_int_equal(fxb_idnumber_check_char("1101051949123100A"), '\0');
    assert_int_equal(fxb_idnumber_check_char(NULL), '\0');
}

static void test_format_needs_17_digits_and_a_digit_or_x(void **state)
{
    (void)state;
    assert_reason(NULL, "ID_NUMBER_FORMAT");
    assert_reason("", "ID_NUMBER_FORMAT");
    assert_reason("11010519491231002", "ID_NUMBER_FORMAT");   /* 17 */
    assert_reason("11010519491231002X0", "ID_NUMBER_FORMAT"); /* 19 */
    assert_reason("1101051949123100XX", "ID_NUMBER_FORMAT");  /* X not last */
    assert_reason("11010519491231002Y", "ID_NUMBER_FORMAT");
    assert_reason("11010519491231 02X", "ID_NUMBER_FORMAT");
    assert_reason("１101051949123100", "ID_NUMBER_FORMAT"); /* full-width 1: 18 bytes */
    assert_reason("110105194912310021", "ID_NUMBER_CHECK"); /* right shape */
}

static void test_region_must_be_a_province_level_code(void **state)
{
    (void)state;
    static const int bad[] = {0,  10, 16, 19, 20, 24, 30, 38, 40, 47,
                              49, 55, 60, 66, 70, 72, 80, 84, 90, 99};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char id[19];
        snprintf(id, sizeof(id), "%02d0105199001011230", bad[i]);
        id[17] = '\0';
        id[17] = fxb_idnumber_check_char(id); /* a right check: region alone is wrong */
        id[18] = '\0';
        assert_reason(id, "ID_NUMBER_REGION");
    }
    static const int good[] = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34,
                               35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
                               53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char id[19];
        snprintf(id, sizeof(id), "%02d0105199001011230", good[i]);
        id[17] = '\0';
        id[17] = fxb_idnumber_check_char(id);
        id[18] = '\0';
        assert_valid(id);
    }
}

/* The standard's second example, 440524188001010014 (check '4' verified
 * above), was born in 1880: its check is right, but we refuse births
 * before 1900. */
static void test_birth_before_1900_is_refused(void **state)
{
    (void)state;
    assert_reason("440524188001010014", "ID_NUMBER_BIRTH_DATE");
    assert_valid("32010219000101001X"); /* 1900-01-01 itself; check X computed */
}

static void test_birth_date_must_be_a_calendar_date_with_leap_years(void **state)
{
    (void)state;
    assert_valid("110101200002290026"); /* 2000: leap (divisible by 400) */
    static const char *bad[] = {"19000229", "20230229", "19991301", "19990001",
                                "19990100", "19990431", "19990632", "21000229"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char id[19];
        snprintf(id, sizeof(id), "110101%s0010", bad[i]);
        id[17] = '\0';
        id[17] = fxb_idnumber_check_char(id);
        id[18] = '\0';
        assert_reason(id, "ID_NUMBER_BIRTH_DATE");
    }
    /* 1900 is not leap (divisible by 100, not 400): 650101190002280011 is
     * the last February day that year. */
    assert_valid("650101190002280011");
}

static void test_birth_after_today_is_refused_today_is_not(void **state)
{
    (void)state;
    char id[19] = "11010120260116001";
    id[17] = fxb_idnumber_check_char(id);
    id[18] = '\0';
    assert_reason(id, "ID_NUMBER_BIRTH_DATE"); /* tomorrow */
    memcpy(id, "11010120260115001", 17);
    id[17] = fxb_idnumber_check_char(id);
    assert_valid(id); /* born today */
}

static void test_check_char_mismatch_and_transposition_are_caught(void **state)
{
    (void)state;
    assert_reason("110105194912310021", "ID_NUMBER_CHECK"); /* last changed */
    assert_reason("410702199001011327", "ID_NUMBER_CHECK"); /* of ...1237: 16, 17 swapped */
    assert_reason("41070219900101123X", "ID_NUMBER_CHECK");
    assert_reason("410702199001011287", "ID_NUMBER_CHECK"); /* one digit changed */
}

static void test_checks_run_in_order_format_region_birth_check(void **state)
{
    (void)state;
    assert_reason("00010519491331002Y", "ID_NUMBER_FORMAT");
    assert_reason("000105194913310021", "ID_NUMBER_REGION");
    assert_reason("110105194913310021", "ID_NUMBER_BIRTH_DATE");
}

static void test_invalid_today_is_internal(void **state)
{
    (void)state;
    fxb_err err;
    assert_int_equal(fxb_idnumber_check("11010519491231002X", 20260230, NULL, &err), FXB_INTERNAL);
    assert_string_equal(err.reason, "CLOCK_INVALID");
}

static void test_age_counts_whole_years_birthday_inclusive(void **state)
{
    (void)state;
    assert_int_equal(fxb_age_on(19900615, 20260614), 35);
    assert_int_equal(fxb_age_on(19900615, 20260615), 36);
    assert_int_equal(fxb_age_on(19900615, 20260616), 36);
    assert_int_equal(fxb_age_on(19900615, 19900615), 0);
    assert_int_equal(fxb_age_on(20080101, 20251231), 17);
    assert_int_equal(fxb_age_on(20080101, 20260101), 18);
}

static void test_age_of_29_february_birthday_counts_on_1_march_in_common_years(void **state)
{
    (void)state;
    assert_int_equal(fxb_age_on(20080229, 20260228), 17);
    assert_int_equal(fxb_age_on(20080229, 20260301), 18);
    assert_int_equal(fxb_age_on(20080229, 20280228), 19);
    assert_int_equal(fxb_age_on(20080229, 20280229), 20); /* leap year: the day itself */
}

static void test_age_of_invalid_dates_is_minus_one(void **state)
{
    (void)state;
    assert_int_equal(fxb_age_on(20260116, 20260115), -1);
    assert_int_equal(fxb_age_on(20230229, 20260115), -1);
    assert_int_equal(fxb_age_on(19900101, 20261301), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard_example_is_valid_and_read),
        cmocka_unit_test(test_odd_seventeenth_digit_is_male),
        cmocka_unit_test(test_lower_case_x_is_normalised_to_upper),
        cmocka_unit_test(test_check_char_is_iso7064_mod11_2),
        cmocka_unit_test(test_format_needs_17_digits_and_a_digit_or_x),
        cmocka_unit_test(test_region_must_be_a_province_level_code),
        cmocka_unit_test(test_birth_before_1900_is_refused),
        cmocka_unit_test(test_birth_date_must_be_a_calendar_date_with_leap_years),
        cmocka_unit_test(test_birth_after_today_is_refused_today_is_not),
        cmocka_unit_test(test_check_char_mismatch_and_transposition_are_caught),
        cmocka_unit_test(test_checks_run_in_order_format_region_birth_check),
        cmocka_unit_test(test_invalid_today_is_internal),
        cmocka_unit_test(test_age_counts_whole_years_birthday_inclusive),
        cmocka_unit_test(test_age_of_29_february_birthday_counts_on_1_march_in_common_years),
        cmocka_unit_test(test_age_of_invalid_dates_is_minus_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
