/* The calendar's date arithmetic as rules, no Redis: which yyyymmdd are
 * real dates, day numbers across leap years and month ends, the China-time
 * date of a UTC instant (China midnight is 16:00 UTC the day before) and the
 * end of a China day, weekdays, and what a day's name may be.
 *
 * Expected values were computed independently with Python's datetime
 * (date(y, m, d) - date(1970, 1, 1), isoweekday(), datetime(..., tzinfo=utc)
 * .timestamp()), not with fxb:
 *   2000-01-01 day 10957, Saturday;  2000-02-29 day 11016, Tuesday;
 *   2024-02-29 day 19782, Thursday;  2100-02-28 day 47540, Sunday;
 *   2100-12-31 day 47846, Friday;
 *   2024-02-09T16:00:00Z = 1707494400000 ms (China: 2024-02-10 00:00);
 *   2000-02-28T16:00:00Z = 951753600000;  2100-02-28T16:00:00Z = 4107513600000;
 *   2024-12-31T16:00:00Z = 1735660800000 (China: 2025-01-01 00:00). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "services/calendar/calendar.h"

#define HOUR_MS (3600LL * 1000)

static void test_real_dates_in_the_supported_years_are_valid(void **state)
{
    (void)state;
    assert_true(fxb_calendar_date_valid(20000101));
    assert_true(fxb_calendar_date_valid(21001231));
    assert_true(fxb_calendar_date_valid(20240131));
    assert_true(fxb_calendar_date_valid(20240430));
    assert_true(fxb_calendar_date_valid(20241231));
    assert_false(fxb_calendar_date_valid(19991231)); /* before 2000 */
    assert_false(fxb_calendar_date_valid(21010101)); /* after 2100 */
    assert_false(fxb_calendar_date_valid(20240431)); /* April has 30 days */
    assert_false(fxb_calendar_date_valid(20240631));
    assert_false(fxb_calendar_date_valid(20241301)); /* month 13 */
    assert_false(fxb_calendar_date_valid(20240001)); /* month 0 */
    assert_false(fxb_calendar_date_valid(20240100)); /* day 0 */
    assert_false(fxb_calendar_date_valid(20240132));
    assert_false(fxb_calendar_date_valid(0));
    assert_false(fxb_calendar_date_valid(2024011)); /* 7 digits */
    assert_false(fxb_calendar_date_valid(UINT32_MAX));
}

static void test_february_29_exists_only_in_leap_years(void **state)
{
    (void)state;
    assert_true(fxb_calendar_date_valid(20000229));  /* divisible by 400 */
    assert_true(fxb_calendar_date_valid(20240229));  /* divisible by 4 */
    assert_false(fxb_calendar_date_valid(20230229)); /* not divisible by 4 */
    assert_false(fxb_calendar_date_valid(21000229)); /* by 100, not by 400 */
    assert_false(fxb_calendar_date_valid(20240230));
}

static void test_day_numbers_count_from_1970_across_leap_years(void **state)
{
    (void)state;
    assert_int_equal(fxb_calendar_day_number(20000101), 10957);
    assert_int_equal(fxb_calendar_day_number(20000229), 11016);
    assert_int_equal(fxb_calendar_day_number(20240229), 19782);
    assert_int_equal(fxb_calendar_day_number(21000228), 47540);
    assert_int_equal(fxb_calendar_day_number(21001231), 47846);
    /* 2000 is a leap year, 2100 is not */
    assert_int_equal(fxb_calendar_day_number(20000301) - fxb_calendar_day_number(20000228), 2);
    assert_int_equal(fxb_calendar_day_number(21000301) - fxb_calendar_day_number(21000228), 1);
    /* 366 days in 2000 and 2024, 365 in 2100 and 2025 */
    assert_int_equal(fxb_calendar_day_number(20010101) - fxb_calendar_day_number(20000101), 366);
    assert_int_equal(fxb_calendar_day_number(20250101) - fxb_calendar_day_number(20240101), 366);
    assert_int_equal(fxb_calendar_day_number(21001231) - fxb_calendar_day_number(21000101), 364);
    assert_int_equal(fxb_calendar_day_number(20260101) - fxb_calendar_day_number(20250101), 365);
    assert_int_equal(fxb_calendar_day_number(20240431), 0); /* invalid */
}

static void test_month_ends_roll_into_the_next_month(void **state)
{
    (void)state;
    static const uint32_t pairs[][2] = {
        {20240131, 20240201}, {20240229, 20240301}, {20230228, 20230301},
        {20240331, 20240401}, {20240430, 20240501}, {20240930, 20241001},
        {20241231, 20250101}, {20000228, 20000229}, {21000228, 21000301},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        int64_t a = fxb_calendar_day_number(pairs[i][0]);
        int64_t b = fxb_calendar_day_number(pairs[i][1]);
        if (b - a != 1)
            fail_msg("%u -> %u: %lld days", pairs[i][0], pairs[i][1], (long long)(b - a));
        /* the day after, seen from its own end of day */
        assert_int_equal(fxb_calendar_date_of(fxb_calendar_end_of_day_ms(pairs[i][0]) + 1),
                         pairs[i][1]);
    }
}

static void test_weekdays_run_monday_1_to_sunday_7(void **state)
{
    (void)state;
    assert_int_equal(fxb_calendar_weekday(20000101), 6);
    assert_int_equal(fxb_calendar_weekday(20000229), 2);
    assert_int_equal(fxb_calendar_weekday(20240101), 1);
    assert_int_equal(fxb_calendar_weekday(20240209), 5); /* 除夕 2024 */
    assert_int_equal(fxb_calendar_weekday(20240218), 7); /* a make-up working Sunday */
    assert_int_equal(fxb_calendar_weekday(20240229), 4);
    assert_int_equal(fxb_calendar_weekday(20260214), 6);
    assert_int_equal(fxb_calendar_weekday(21000228), 7);
    assert_int_equal(fxb_calendar_weekday(21001231), 5);
    assert_int_equal(fxb_calendar_weekday(20240230), 0); /* invalid */
}

static void test_the_china_date_changes_at_16_utc(void **state)
{
    (void)state;
    const int64_t china_midnight = 1707494400000LL; /* 2024-02-09T16:00:00Z */
    assert_int_equal(fxb_calendar_date_of(china_midnight - 1), 20240209);
    assert_int_equal(fxb_calendar_date_of(china_midnight), 20240210);
    /* UTC midnight is 08:00 in China: the same China date either side */
    const int64_t utc_midnight = china_midnight + 8 * HOUR_MS; /* 2024-02-10T00:00:00Z */
    assert_int_equal(fxb_calendar_date_of(utc_midnight - 1), 20240210);
    assert_int_equal(fxb_calendar_date_of(utc_midnight), 20240210);
    assert_int_equal(fxb_calendar_date_of(utc_midnight + 16 * HOUR_MS - 1), 20240210);
    assert_int_equal(fxb_calendar_date_of(utc_midnight + 16 * HOUR_MS), 20240211);
    /* new year: 2024-12-31T16:00:00Z is 2025-01-01 in China */
    assert_int_equal(fxb_calendar_date_of(1735660800000LL - 1), 20241231);
    assert_int_equal(fxb_calendar_date_of(1735660800000LL), 20250101);
    /* leap days at both ends of the range */
    assert_int_equal(fxb_calendar_date_of(951753600000LL), 20000229);
    assert_int_equal(fxb_calendar_date_of(951753600000LL - 1), 20000228);
    assert_int_equal(fxb_calendar_date_of(4107513600000LL), 21000301);
    assert_int_equal(fxb_calendar_date_of(4107513600000LL - 1), 21000228);
}

static void test_the_epoch_and_negative_times_floor_correctly(void **state)
{
    (void)state;
    assert_int_equal(fxb_calendar_date_of(0), 19700101);            /* 08:00 China */
    assert_int_equal(fxb_calendar_date_of(-1), 19700101);           /* 07:59:59.999 */
    assert_int_equal(fxb_calendar_date_of(-8 * HOUR_MS), 19700101); /* 00:00 China */
    assert_int_equal(fxb_calendar_date_of(-8 * HOUR_MS - 1), 19691231);
    /* instants no calendar year 1..9999 holds: 0, never garbage */
    assert_int_equal(fxb_calendar_date_of(INT64_MAX), 0);
    assert_int_equal(fxb_calendar_date_of(INT64_MIN), 0);
}

static void test_end_of_day_is_the_last_china_millisecond(void **state)
{
    (void)state;
    /* 2024-02-09 23:59:59.999 China = 2024-02-09T15:59:59.999Z */
    assert_int_equal(fxb_calendar_end_of_day_ms(20240209), 1707494399999LL);
    assert_int_equal(fxb_calendar_end_of_day_ms(20240210) - fxb_calendar_end_of_day_ms(20240209),
                     86400000LL);
    assert_int_equal(fxb_calendar_end_of_day_ms(20000228), 951753600000LL - 1);
    assert_int_equal(fxb_calendar_end_of_day_ms(21000228), 4107513600000LL - 1);
    assert_int_equal(fxb_calendar_date_of(fxb_calendar_end_of_day_ms(20240209)), 20240209);
    assert_int_equal(fxb_calendar_date_of(fxb_calendar_end_of_day_ms(20240209) + 1), 20240210);
    assert_int_equal(fxb_calendar_end_of_day_ms(20240230), -1);
    assert_int_equal(fxb_calendar_end_of_day_ms(19991231), -1);
    assert_int_equal(fxb_calendar_end_of_day_ms(0), -1);
}

static void test_every_day_of_the_range_round_trips(void **state)
{
    (void)state;
    /* 2000-01-01 .. 2100-12-31, one day after another: each a valid date,
     * its end of day maps back to it, and the next instant is the next day */
    uint32_t date = 20000101;
    int64_t day = fxb_calendar_day_number(date);
    size_t n = 0;
    while (date != 0 && fxb_calendar_date_valid(date)) {
        assert_int_equal(fxb_calendar_day_number(date), day);
        int64_t end = fxb_calendar_end_of_day_ms(date);
        assert_int_equal(fxb_calendar_date_of(end), date);
        assert_int_equal(fxb_calendar_weekday(date), (int)(((day + 3) % 7 + 7) % 7) + 1);
        date = fxb_calendar_date_of(end + 1);
        day++;
        n++;
    }
    assert_int_equal(date, 21010101);
    assert_int_equal(n, 36890); /* 101 years, 25 of them leap (2000..2096 by 4) */
}

static void test_a_name_is_1_to_20_characters_of_utf8(void **state)
{
    (void)state;
    assert_true(fxb_calendar_name_valid("元旦"));
    assert_true(fxb_calendar_name_valid("国庆节、中秋节调休上班"));
    assert_true(fxb_calendar_name_valid("New Year"));
    assert_true(fxb_calendar_name_valid("一二三四五六七八九十一二三四五六七八九十")); /* 20 */
    assert_false(fxb_calendar_name_valid("一二三四五六七八九十一二三四五六七八九十一"));
    assert_true(fxb_calendar_name_valid("abcdefghijklmnopqrst"));
    assert_false(fxb_calendar_name_valid("abcdefghijklmnopqrstu"));
    assert_true(fxb_calendar_name_valid("\xf0\x9f\x8e\x86")); /* U+1F386, 4 bytes */
    assert_false(fxb_calendar_name_valid(""));
    assert_false(fxb_calendar_name_valid(NULL));
    assert_false(fxb_calendar_name_valid(" 元旦"));
    assert_false(fxb_calendar_name_valid("元旦 "));
    assert_false(fxb_calendar_name_valid("元\n旦"));
    assert_false(fxb_calendar_name_valid("\x7f"));
    assert_false(fxb_calendar_name_valid("\xc2\x85"));         /* U+0085, a C1 control */
    assert_false(fxb_calendar_name_valid("\xe5\x85"));         /* truncated */
    assert_false(fxb_calendar_name_valid("\xc0\xaf"));         /* overlong */
    assert_false(fxb_calendar_name_valid("\xed\xa0\x80"));     /* a surrogate */
    assert_false(fxb_calendar_name_valid("\xf4\x90\x80\x80")); /* beyond U+10FFFF */
    assert_false(fxb_calendar_name_valid("\xff"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_dates_in_the_supported_years_are_valid),
        cmocka_unit_test(test_february_29_exists_only_in_leap_years),
        cmocka_unit_test(test_day_numbers_count_from_1970_across_leap_years),
        cmocka_unit_test(test_month_ends_roll_into_the_next_month),
        cmocka_unit_test(test_weekdays_run_monday_1_to_sunday_7),
        cmocka_unit_test(test_the_china_date_changes_at_16_utc),
        cmocka_unit_test(test_the_epoch_and_negative_times_floor_correctly),
        cmocka_unit_test(test_end_of_day_is_the_last_china_millisecond),
        cmocka_unit_test(test_every_day_of_the_range_round_trips),
        cmocka_unit_test(test_a_name_is_1_to_20_characters_of_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
