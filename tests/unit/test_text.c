/* Text checks (server/text.h) as rules: characters are code points, text
 * is well-formed UTF-8 without control characters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "server/text.h"

static long chars(const char *s)
{
    return fxb_text_chars(s, strlen(s));
}

static void code_points_are_counted(void **state)
{
    (void)state;
    assert_int_equal(chars(""), 0);
    assert_int_equal(chars("abc"), 3);
    assert_int_equal(chars("新乡市"), 3);           /* 3 bytes each */
    assert_int_equal(chars("é"), 1);                /* 2 bytes */
    assert_int_equal(chars("\xf0\x9f\x98\x80"), 1); /* U+1F600, 4 bytes */
    assert_int_equal(chars("a 红旗区 b"), 7);
}

static void controls_are_refused(void **state)
{
    (void)state;
    assert_int_equal(chars("a\nb"), -1);
    assert_int_equal(chars("a\tb"), -1);
    assert_int_equal(chars("\x1b[31m"), -1);
    assert_int_equal(chars("a\x7f"), -1);
    assert_int_equal(chars("\xc2\x85"), -1); /* U+0085, C1 */
    assert_int_equal(chars("\xc2\xa0"), 1);  /* U+00A0 is not a control */
    assert_int_equal(fxb_text_chars("a\0b", 3), -1);
    /* bidirectional controls and separators (text that reads otherwise
     * than it is) */
    assert_int_equal(chars("\xe2\x80\xae"), -1); /* U+202E RLO */
    assert_int_equal(chars("\xe2\x81\xa6"), -1); /* U+2066 LRI */
    assert_int_equal(chars("\xe2\x80\x8f"), -1); /* U+200F RLM */
    assert_int_equal(chars("\xd8\x9c"), -1);     /* U+061C ALM */
    assert_int_equal(chars("\xe2\x80\xa8"), -1); /* U+2028 */
    assert_int_equal(chars("\xe2\x80\x94"), 1);  /* U+2014 em dash is text */
}

static void one_character_at_a_time(void **state)
{
    (void)state;
    uint32_t cp = 0;
    assert_int_equal(fxb_utf8_next((const unsigned char *)"\xe6\x96\xb0x", 4, &cp), 3);
    assert_int_equal(cp, 0x65B0); /* 新 */
    assert_int_equal(fxb_utf8_next((const unsigned char *)"\xe6\x96", 2, &cp), 0);
    assert_int_equal(fxb_utf8_next((const unsigned char *)"", 0, &cp), 0);
    assert_true(fxb_text_is_control(0x202E));
    assert_false(fxb_text_is_control('a'));
}

static void malformed_utf8_is_refused(void **state)
{
    (void)state;
    assert_int_equal(chars("\xc0\xaf"), -1);         /* overlong '/' */
    assert_int_equal(chars("\xe0\x80\xaf"), -1);     /* overlong */
    assert_int_equal(chars("\xed\xa0\x80"), -1);     /* surrogate D800 */
    assert_int_equal(chars("\xf4\x90\x80\x80"), -1); /* past U+10FFFF */
    assert_int_equal(chars("\xe6\x96"), -1);         /* cut */
    assert_int_equal(chars("\x80"), -1);             /* lone continuation */
    assert_int_equal(chars("\xff"), -1);
    assert_int_equal(chars("\xf8\x88\x80\x80\x80"), -1);
}

static void the_bounded_form_counts_bytes_first(void **state)
{
    (void)state;
    assert_int_equal(fxb_text_chars_max("新乡", 6), 2);
    assert_int_equal(fxb_text_chars_max("新乡", 5), -1);
    assert_int_equal(fxb_text_chars_max("", 0), 0);
    assert_int_equal(fxb_text_chars_max("a", 0), -1);
    assert_int_equal(fxb_text_chars_max("a\n", 10), -1);
}

static void a_field_is_checked_in_characters_within_its_bounds(void **state)
{
    (void)state;
    assert_true(fxb_text_ok(NULL, 0, 5));
    assert_false(fxb_text_ok(NULL, 1, 5));
    assert_true(fxb_text_ok("新乡市", 3, 3)); /* 9 bytes, 3 characters */
    assert_false(fxb_text_ok("新乡市", 1, 2));
    assert_false(fxb_text_ok("新乡市", 4, 10));
    assert_false(fxb_text_ok("a\tb", 0, 10)); /* a control */
    assert_false(fxb_text_ok("\xff", 0, 10)); /* not UTF-8 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(code_points_are_counted),
        cmocka_unit_test(controls_are_refused),
        cmocka_unit_test(malformed_utf8_is_refused),
        cmocka_unit_test(the_bounded_form_counts_bytes_first),
        cmocka_unit_test(one_character_at_a_time),
        cmocka_unit_test(a_field_is_checked_in_characters_within_its_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
