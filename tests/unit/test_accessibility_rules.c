/* The rules of the accessibility settings (regulation art. 9; MIIT 2021
 * elderly-friendly app spec; WCAG 2.2.1): which values an update may carry,
 * how elder mode and the font scale give text sizes, and when elder mode is
 * suggested from a verified birth date, on the Asia/Shanghai calendar. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/accessibility/accessibility.h"

/* UTC epoch ms of a civil date-time (proleptic Gregorian), for tests. */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t utc_ms(int y, int mo, int d, int h, int mi)
{
    return ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 * 1000LL;
}

static fxb_a11y_settings valid_input(void)
{
    fxb_a11y_settings s;
    fxb_a11y_defaults(&s);
    return s;
}

static void assert_refused(const fxb_a11y_settings *in, const char *reason, const char *field)
{
    fxb_a11y_settings out;
    memset(&out, 0x5a, sizeof out);
    fxb_a11y_settings before = out;
    fxb_err err;
    fxb_err_clear(&err);
    assert_int_equal(fxb_a11y_validate(in, &out, &err), FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, reason);
    assert_non_null(strstr(err.message, field));
    assert_true(err.message_zh[0] != '\0');
    assert_memory_equal(&out, &before, sizeof out);
}

static fxb_a11y_settings assert_accepted(const fxb_a11y_settings *in)
{
    fxb_a11y_settings out;
    fxb_err err;
    fxb_err_clear(&err);
    assert_int_equal(fxb_a11y_validate(in, &out, &err), FXB_OK);
    return out;
}

/* ---- defaults ------------------------------------------------------------- */

static void test_defaults_are_normal_text_normal_speech_normal_time_in_chinese(void **state)
{
    fxb_a11y_settings s;
    memset(&s, 0x7f, sizeof s);
    fxb_a11y_defaults(&s);
    assert_false(s.elder_mode);
    assert_int_equal(s.font_scale_pct, 100);
    assert_false(s.high_contrast);
    assert_false(s.reduced_motion);
    assert_false(s.screen_reader_hints);
    assert_false(s.voice_broadcast);
    assert_int_equal(s.speech_rate_pct, 100);
    assert_int_equal(s.timeout_pct, 100);
    assert_string_equal(s.language, "zh-CN");
}

/* ---- ranges ---------------------------------------------------------------- */

static void test_font_scale_accepts_100_to_200_inclusive(void **state)
{
    fxb_a11y_settings in = valid_input();
    for (uint32_t v = 100; v <= 200; v++) {
        in.font_scale_pct = v;
        assert_int_equal(assert_accepted(&in).font_scale_pct, v);
    }
}

static void test_font_scale_outside_range_is_refused_naming_the_field(void **state)
{
    fxb_a11y_settings in = valid_input();
    const uint32_t bad[] = {1, 99, 201, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        in.font_scale_pct = bad[i];
        assert_refused(&in, "FONT_SCALE_OUT_OF_RANGE", "settings.font_scale_percent");
    }
}

static void test_speech_rate_accepts_50_to_200_and_refuses_the_rest(void **state)
{
    fxb_a11y_settings in = valid_input();
    in.speech_rate_pct = 50;
    assert_int_equal(assert_accepted(&in).speech_rate_pct, 50);
    in.speech_rate_pct = 200;
    assert_int_equal(assert_accepted(&in).speech_rate_pct, 200);
    const uint32_t bad[] = {1, 49, 201, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        in.speech_rate_pct = bad[i];
        assert_refused(&in, "SPEECH_RATE_OUT_OF_RANGE", "settings.speech_rate_percent");
    }
}

static void test_timeout_multiplier_accepts_100_to_300_and_refuses_the_rest(void **state)
{
    fxb_a11y_settings in = valid_input();
    in.timeout_pct = 100;
    assert_int_equal(assert_accepted(&in).timeout_pct, 100);
    in.timeout_pct = 300;
    assert_int_equal(assert_accepted(&in).timeout_pct, 300);
    const uint32_t bad[] = {1, 50, 99, 301, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        in.timeout_pct = bad[i];
        assert_refused(&in, "TIMEOUT_MULTIPLIER_OUT_OF_RANGE",
                       "settings.timeout_multiplier_percent");
    }
}

static void test_zero_percentages_mean_the_default(void **state)
{
    fxb_a11y_settings in = valid_input();
    in.font_scale_pct = 0;
    in.speech_rate_pct = 0;
    in.timeout_pct = 0;
    fxb_a11y_settings out = assert_accepted(&in);
    assert_int_equal(out.font_scale_pct, 100);
    assert_int_equal(out.speech_rate_pct, 100);
    assert_int_equal(out.timeout_pct, 100);
}

static void test_only_zh_cn_is_supported_and_empty_means_zh_cn(void **state)
{
    fxb_a11y_settings in = valid_input();
    const char *ok[] = {"zh-CN", "zh-cn", "ZH-CN", "", NULL};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        in.language = ok[i];
        assert_string_equal(assert_accepted(&in).language, "zh-CN");
    }
    const char *bad[] = {"en", "en-US", "zh", "zh-TW", "zh-CN ", " zh-CN", "zh_CN", "zh-CNx"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        in.language = bad[i];
        assert_refused(&in, "LANGUAGE_UNSUPPORTED", "settings.language");
    }
}

static void test_an_overlong_language_is_refused_without_reading_it_all(void **state)
{
    /* not NUL-terminated within the bound: only FXB_A11Y_LANGUAGE_MAX + 1
     * bytes may be read (ASan would catch more) */
    char *buf = malloc(FXB_A11Y_LANGUAGE_MAX + 1);
    assert_non_null(buf);
    memset(buf, 'z', FXB_A11Y_LANGUAGE_MAX + 1);
    assert_null(fxb_a11y_language(buf));
    free(buf);
}

static void test_the_first_bad_field_in_proto_order_is_reported(void **state)
{
    fxb_a11y_settings in = valid_input();
    in.font_scale_pct = 500;
    in.speech_rate_pct = 500;
    in.timeout_pct = 500;
    in.language = "en";
    assert_refused(&in, "FONT_SCALE_OUT_OF_RANGE", "font_scale_percent");
    in.font_scale_pct = 100;
    assert_refused(&in, "SPEECH_RATE_OUT_OF_RANGE", "speech_rate_percent");
    in.speech_rate_pct = 100;
    assert_refused(&in, "TIMEOUT_MULTIPLIER_OUT_OF_RANGE", "timeout_multiplier_percent");
    in.timeout_pct = 100;
    assert_refused(&in, "LANGUAGE_UNSUPPORTED", "language");
}

static void test_switches_are_kept_as_chosen(void **state)
{
    fxb_a11y_settings in = valid_input();
    in.high_contrast = true;
    in.reduced_motion = true;
    in.screen_reader_hints = true;
    in.voice_broadcast = true;
    fxb_a11y_settings out = assert_accepted(&in);
    assert_true(out.high_contrast && out.reduced_motion && out.screen_reader_hints &&
                out.voice_broadcast);
    assert_false(out.elder_mode);
}

static void test_validate_may_write_over_its_input(void **state)
{
    fxb_a11y_settings s = valid_input();
    s.font_scale_pct = 0;
    s.elder_mode = true;
    s.language = "zh-cn";
    fxb_err err;
    assert_int_equal(fxb_a11y_validate(&s, &s, &err), FXB_OK);
    assert_int_equal(s.font_scale_pct, FXB_A11Y_ELDER_PRESET);
    assert_string_equal(s.language, "zh-CN");
}

/* ---- large-font version (MIIT: body >= 18 dp, largest >= 30 dp) ---------- */

static void test_text_sizes_scale_16_and_24_dp_by_the_font_scale(void **state)
{
    uint32_t body, largest;
    fxb_a11y_derive_dp(100, false, &body, &largest);
    assert_int_equal(body, 16);
    assert_int_equal(largest, 24);
    fxb_a11y_derive_dp(150, false, &body, &largest);
    assert_int_equal(body, 24);
    assert_int_equal(largest, 36);
    fxb_a11y_derive_dp(200, false, &body, &largest);
    assert_int_equal(body, 32);
    assert_int_equal(largest, 48);
    /* rounded to the nearest dp: 16 x 1.03 = 16.48, 24 x 1.03 = 24.72 */
    fxb_a11y_derive_dp(103, false, &body, &largest);
    assert_int_equal(body, 16);
    assert_int_equal(largest, 25);
}

static void test_elder_mode_never_shows_text_below_18_and_30_dp(void **state)
{
    for (uint32_t pct = FXB_A11Y_FONT_SCALE_MIN; pct <= FXB_A11Y_FONT_SCALE_MAX; pct++) {
        uint32_t body, largest, nbody, nlargest;
        fxb_a11y_derive_dp(pct, true, &body, &largest);
        fxb_a11y_derive_dp(pct, false, &nbody, &nlargest);
        assert_true(body >= 18);
        assert_true(largest >= 30);
        assert_true(body >= nbody && largest >= nlargest);
    }
    uint32_t body, largest;
    fxb_a11y_derive_dp(100, true, &body, &largest);
    assert_int_equal(body, 18);
    assert_int_equal(largest, 30);
}

static void test_the_elder_preset_is_the_smallest_scale_meeting_both_minimums(void **state)
{
    uint32_t body, largest;
    fxb_a11y_derive_dp(FXB_A11Y_ELDER_PRESET, false, &body, &largest);
    assert_true(body >= FXB_A11Y_ELDER_BODY_DP);
    assert_true(largest >= FXB_A11Y_ELDER_LARGEST);
    /* exact sizes, not rounded ones: one percent less is 29.76 dp */
    assert_true(FXB_A11Y_LARGEST_DP_BASE * FXB_A11Y_ELDER_PRESET >= FXB_A11Y_ELDER_LARGEST * 100);
    assert_true(FXB_A11Y_BODY_DP_BASE * FXB_A11Y_ELDER_PRESET >= FXB_A11Y_ELDER_BODY_DP * 100);
    assert_true(FXB_A11Y_LARGEST_DP_BASE * (FXB_A11Y_ELDER_PRESET - 1) <
                FXB_A11Y_ELDER_LARGEST * 100);
}

static void test_turning_elder_mode_on_raises_a_small_font_scale_to_the_preset(void **state)
{
    fxb_a11y_settings in = valid_input();
    in.elder_mode = true;
    in.font_scale_pct = 100;
    assert_int_equal(assert_accepted(&in).font_scale_pct, 125);
    in.font_scale_pct = 124;
    assert_int_equal(assert_accepted(&in).font_scale_pct, 125);
    /* a larger choice is kept */
    in.font_scale_pct = 180;
    assert_int_equal(assert_accepted(&in).font_scale_pct, 180);
    /* without elder mode a small scale stays small */
    in.elder_mode = false;
    in.font_scale_pct = 100;
    assert_int_equal(assert_accepted(&in).font_scale_pct, 100);
}

static void test_out_of_range_stored_scales_are_clamped_before_deriving(void **state)
{
    uint32_t body, largest;
    fxb_a11y_derive_dp(0, false, &body, &largest);
    assert_int_equal(body, 16);
    fxb_a11y_derive_dp(UINT32_MAX, false, &body, &largest);
    assert_int_equal(body, 32);
    assert_int_equal(largest, 48);
}

/* ---- age in Asia/Shanghai, elder mode suggestion ------------------------- */

static void test_age_counts_whole_years_on_the_shanghai_date(void **state)
{
    int age;
    /* 2025-06-15 12:00 Shanghai */
    int64_t now = utc_ms(2025, 6, 15, 4, 0);
    assert_true(fxb_a11y_age_on("19650615", now, &age));
    assert_int_equal(age, 60);
    assert_true(fxb_a11y_age_on("19650616", now, &age));
    assert_int_equal(age, 59);
    assert_true(fxb_a11y_age_on("19650614", now, &age));
    assert_int_equal(age, 60);
    assert_true(fxb_a11y_age_on("20250615", now, &age));
    assert_int_equal(age, 0);
}

static void test_the_birthday_starts_at_midnight_shanghai_not_utc(void **state)
{
    int age;
    /* 2025-06-14 15:59:59 UTC = 23:59:59 on the 14th in Shanghai */
    assert_true(fxb_a11y_age_on("19650615", utc_ms(2025, 6, 14, 15, 59) + 59999, &age));
    assert_int_equal(age, 59);
    /* 16:00 UTC = 00:00 on the 15th in Shanghai, still the 14th in UTC */
    assert_true(fxb_a11y_age_on("19650615", utc_ms(2025, 6, 14, 16, 0), &age));
    assert_int_equal(age, 60);
}

static void test_a_29_february_birthday_is_reached_on_1_march_in_common_years(void **state)
{
    int age;
    assert_true(fxb_a11y_age_on("19640229", utc_ms(2024, 2, 28, 16, 0) - 1, &age)); /* 2-28 */
    assert_int_equal(age, 59);
    assert_true(fxb_a11y_age_on("19640229", utc_ms(2024, 2, 28, 16, 0), &age)); /* 2-29 */
    assert_int_equal(age, 60);
    assert_true(fxb_a11y_age_on("19640229", utc_ms(2025, 2, 28, 4, 0), &age));
    assert_int_equal(age, 60);
    assert_true(fxb_a11y_age_on("19640229", utc_ms(2025, 3, 1, 4, 0), &age));
    assert_int_equal(age, 61);
}

static void test_malformed_or_impossible_birth_dates_give_no_age(void **state)
{
    int64_t now = utc_ms(2025, 6, 15, 4, 0);
    const char *bad[] = {
        "",         "1965061",  "196506150", "1965-06-1", "19650015",
        "19651315", "19650600", "19650631",  "19650230",  "19000229", /* 1900 was not a leap year */
        "18991231", "2025061a", " 19650615", "20250616",              /* tomorrow */
        "99991231", "18500101",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int age = 5;
        assert_false(fxb_a11y_age_on(bad[i], now, &age));
        assert_int_equal(age, -1);
    }
    int age = 5;
    assert_false(fxb_a11y_age_on(NULL, now, &age));
    assert_false(fxb_a11y_age_on("19650615", -1, &age));
    assert_true(fxb_a11y_age_on("20000229", now, &age)); /* 2000 was */
    assert_int_equal(age, 25);
}

static void test_elder_mode_is_suggested_from_60_when_not_already_on(void **state)
{
    int64_t now = utc_ms(2025, 6, 15, 4, 0);
    assert_true(fxb_a11y_elder_suggested("19650615", false, now));
    assert_true(fxb_a11y_elder_suggested("19300101", false, now));
    assert_false(fxb_a11y_elder_suggested("19650616", false, now)); /* 59 */
    assert_false(fxb_a11y_elder_suggested("19650615", true, now));  /* already on */
}

static void test_an_unknown_birth_date_suggests_nothing(void **state)
{
    int64_t now = utc_ms(2025, 6, 15, 4, 0);
    assert_false(fxb_a11y_elder_suggested(NULL, false, now));
    assert_false(fxb_a11y_elder_suggested("", false, now));
    assert_false(fxb_a11y_elder_suggested("19500231", false, now));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_normal_text_normal_speech_normal_time_in_chinese),
        cmocka_unit_test(test_font_scale_accepts_100_to_200_inclusive),
        cmocka_unit_test(test_font_scale_outside_range_is_refused_naming_the_field),
        cmocka_unit_test(test_speech_rate_accepts_50_to_200_and_refuses_the_rest),
        cmocka_unit_test(test_timeout_multiplier_accepts_100_to_300_and_refuses_the_rest),
        cmocka_unit_test(test_zero_percentages_mean_the_default),
        cmocka_unit_test(test_only_zh_cn_is_supported_and_empty_means_zh_cn),
        cmocka_unit_test(test_an_overlong_language_is_refused_without_reading_it_all),
        cmocka_unit_test(test_the_first_bad_field_in_proto_order_is_reported),
        cmocka_unit_test(test_switches_are_kept_as_chosen),
        cmocka_unit_test(test_validate_may_write_over_its_input),
        cmocka_unit_test(test_text_sizes_scale_16_and_24_dp_by_the_font_scale),
        cmocka_unit_test(test_elder_mode_never_shows_text_below_18_and_30_dp),
        cmocka_unit_test(test_the_elder_preset_is_the_smallest_scale_meeting_both_minimums),
        cmocka_unit_test(test_turning_elder_mode_on_raises_a_small_font_scale_to_the_preset),
        cmocka_unit_test(test_out_of_range_stored_scales_are_clamped_before_deriving),
        cmocka_unit_test(test_age_counts_whole_years_on_the_shanghai_date),
        cmocka_unit_test(test_the_birthday_starts_at_midnight_shanghai_not_utc),
        cmocka_unit_test(test_a_29_february_birthday_is_reached_on_1_march_in_common_years),
        cmocka_unit_test(test_malformed_or_impossible_birth_dates_give_no_age),
        cmocka_unit_test(test_elder_mode_is_suggested_from_60_when_not_already_on),
        cmocka_unit_test(test_an_unknown_birth_date_suggests_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
