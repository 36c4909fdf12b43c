/* The key schema rules: ids that reach a key are checked so that client
 * input can never forge a key of another owner or escape its hash tag. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "store/keys.h"

static int arena_setup(void **state)
{
    static fxb_arena arena;
    fxb_arena_init(&arena, 0);
    *state = &arena;
    return 0;
}

static int arena_teardown(void **state)
{
    fxb_arena_free(*state);
    return 0;
}

static void test_id_accepts_letters_digits_underscore_and_dash(void **state)
{
    assert_true(fxb_key_id_valid("42"));
    assert_true(fxb_key_id_valid("a"));
    assert_true(fxb_key_id_valid("User_01-abc"));
    assert_true(
        fxb_key_id_valid("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"));
}

static void test_id_rejects_null_and_empty(void **state)
{
    assert_false(fxb_key_id_valid(NULL));
    assert_false(fxb_key_id_valid(""));
}

static void test_id_accepts_exactly_max_length(void **state)
{
    char id[FXB_KEY_ID_MAX + 1];
    memset(id, 'a', FXB_KEY_ID_MAX);
    id[FXB_KEY_ID_MAX] = '\0';
    assert_true(fxb_key_id_valid(id));
}

static void test_id_rejects_longer_than_max(void **state)
{
    char id[FXB_KEY_ID_MAX + 2];
    memset(id, 'a', FXB_KEY_ID_MAX + 1);
    id[FXB_KEY_ID_MAX + 1] = '\0';
    assert_false(fxb_key_id_valid(id));
}

static void test_id_rejects_braces_that_would_break_the_hash_tag(void **state)
{
    assert_false(fxb_key_id_valid("{u:1}"));
    assert_false(fxb_key_id_valid("1}"));
    assert_false(fxb_key_id_valid("{1"));
}

static void test_id_rejects_colons_that_would_forge_a_namespace(void **state)
{
    assert_false(fxb_key_id_valid("1:sessions"));
    assert_false(fxb_key_id_valid(":"));
}

static void test_id_rejects_spaces_and_control_characters(void **state)
{
    assert_false(fxb_key_id_valid("a b"));
    assert_false(fxb_key_id_valid(" a"));
    assert_false(fxb_key_id_valid("a\n"));
    assert_false(fxb_key_id_valid("a\r\nDEL x"));
    assert_false(fxb_key_id_valid("a\t"));
}

static void test_id_rejects_other_punctuation_and_non_ascii(void **state)
{
    const char *bad[] = {"a.b", "a/b", "a*", "a?",   "a[1]",        "a\\b", "a\"",
                         "a'",  "a@b", "a%", "用户", "caf\xc3\xa9", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (fxb_key_id_valid(bad[i]))
            fail_msg("id \"%s\" should be rejected", bad[i]);
}

static void test_owned_key_puts_tag_and_id_in_one_hash_tag(void **state)
{
    char *k = fxb_key_owned(*state, "u", "42", "sessions");
    assert_non_null(k);
    assert_string_equal(k, "{u:42}:sessions");
}

static void test_owned_key_suffix_may_have_colons_and_dots(void **state)
{
    char *k = fxb_key_owned(*state, "u", "a-1", "filing:2024.v2_x-y");
    assert_non_null(k);
    assert_string_equal(k, "{u:a-1}:filing:2024.v2_x-y");
}

static void test_owned_key_rejects_invalid_id(void **state)
{
    assert_null(fxb_key_owned(*state, "u", "", "sessions"));
    assert_null(fxb_key_owned(*state, "u", NULL, "sessions"));
    assert_null(fxb_key_owned(*state, "u", "1}:x", "sessions"));
    assert_null(fxb_key_owned(*state, "u", "1:2", "sessions"));
    assert_null(fxb_key_owned(*state, "u", "1 2", "sessions"));
}

static void test_owned_key_rejects_invalid_tag(void **state)
{
    assert_null(fxb_key_owned(*state, "", "42", "sessions"));
    assert_null(fxb_key_owned(*state, NULL, "42", "sessions"));
    assert_null(fxb_key_owned(*state, "u}", "42", "sessions"));
    assert_null(fxb_key_owned(*state, "u:x", "42", "sessions"));
}

static void test_owned_key_rejects_empty_suffix(void **state)
{
    assert_null(fxb_key_owned(*state, "u", "42", ""));
    assert_null(fxb_key_owned(*state, "u", "42", NULL));
}

static void test_owned_key_rejects_suffix_with_braces_or_spaces(void **state)
{
    assert_null(fxb_key_owned(*state, "u", "42", "{u:43}"));
    assert_null(fxb_key_owned(*state, "u", "42", "a b"));
    assert_null(fxb_key_owned(*state, "u", "42", "a\n"));
    assert_null(fxb_key_owned(*state, "u", "42", "a*"));
}

static void test_owned_key_rejects_overlong_suffix(void **state)
{
    char suffix[1024];
    memset(suffix, 's', sizeof suffix - 1);
    suffix[sizeof suffix - 1] = '\0';
    assert_null(fxb_key_owned(*state, "u", "42", suffix));
}

static void test_owned_key_rejects_null_arena(void **state)
{
    assert_null(fxb_key_owned(NULL, "u", "42", "sessions"));
}

static void test_owned_key_fails_when_arena_is_exhausted(void **state)
{
    fxb_arena tiny;
    fxb_arena_init(&tiny, 4);
    assert_null(fxb_key_owned(&tiny, "u", "42", "sessions"));
    fxb_arena_free(&tiny);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_accepts_letters_digits_underscore_and_dash),
        cmocka_unit_test(test_id_rejects_null_and_empty),
        cmocka_unit_test(test_id_accepts_exactly_max_length),
        cmocka_unit_test(test_id_rejects_longer_than_max),
        cmocka_unit_test(test_id_rejects_braces_that_would_break_the_hash_tag),
        cmocka_unit_test(test_id_rejects_colons_that_would_forge_a_namespace),
        cmocka_unit_test(test_id_rejects_spaces_and_control_characters),
        cmocka_unit_test(test_id_rejects_other_punctuation_and_non_ascii),
        cmocka_unit_test_setup_teardown(test_owned_key_puts_tag_and_id_in_one_hash_tag, arena_setup,
                                        arena_teardown),
        cmocka_unit_test_setup_teardown(test_owned_key_suffix_may_have_colons_and_dots, arena_setup,
                                        arena_teardown),
        cmocka_unit_test_setup_teardown(test_owned_key_rejects_invalid_id, arena_setup,
                                        arena_teardown),
        cmocka_unit_test_setup_teardown(test_owned_key_rejects_invalid_tag, arena_setup,
                                        arena_teardown),
        cmocka_unit_test_setup_teardown(test_owned_key_rejects_empty_suffix, arena_setup,
                                        arena_teardown),
        cmocka_unit_test_setup_teardown(test_owned_key_rejects_suffix_with_braces_or_spaces,
                                        arena_setup, arena_teardown),
        cmocka_unit_test_setup_teardown(test_owned_key_rejects_overlong_suffix, arena_setup,
                                        arena_teardown),
        cmocka_unit_test(test_owned_key_rejects_null_arena),
        cmocka_unit_test(test_owned_key_fails_when_arena_is_exhausted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
