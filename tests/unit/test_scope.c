/* Delegation scopes as rules: what a grant may hold, its canonical form,
 * and the per-call checks (capability, item, category). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "auth/scope.h"

static void assert_canonical(const char *const *words, size_t n, const char *want)
{
    char out[FXB_SCOPE_TEXT_MAX + 1];
    fxb_err err;
    if (fxb_scope_canonical(words, n, out, &err) != FXB_OK)
        fail_msg("expected \"%s\", refused: %s", want, err.message);
    assert_string_equal(out, want);
}

static void assert_refused(const char *const *words, size_t n, const char *in_message)
{
    char out[FXB_SCOPE_TEXT_MAX + 1];
    fxb_err err;
    fxb_code rc = fxb_scope_canonical(words, n, out, &err);
    assert_int_equal(rc, FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "SCOPE_INVALID");
    if (strstr(err.message, in_message) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.message, in_message);
    assert_string_equal(out, "");
}

static void canonical_form_is_sorted_and_distinct(void **state)
{
    (void)state;
    const char *w[] = {"inbox.read", "item:110101-01", "filing.submit", "inbox.read",
                       "category:education"};
    assert_canonical(w, 5, "category:education filing.submit inbox.read item:110101-01");
    const char *one[] = {"benefits.read"};
    assert_canonical(one, 1, "benefits.read");
}

static void every_capability_is_known(void **state)
{
    (void)state;
    assert_true(fxb_scope_capability_known("filing.read"));
    assert_true(fxb_scope_capability_known("filing.submit"));
    assert_true(fxb_scope_capability_known("benefits.read"));
    assert_true(fxb_scope_capability_known("inbox.read"));
    assert_false(fxb_scope_capability_known("filing"));
    assert_false(fxb_scope_capability_known("identity.write"));
    assert_false(fxb_scope_capability_known(""));
    assert_false(fxb_scope_capability_known(NULL));
}

static void unknown_words_are_named(void **state)
{
    (void)state;
    const char *a[] = {"inbox.read", "payout.change"};
    assert_refused(a, 2, "\"payout.change\" is unknown");
    const char *b[] = {"inbox.read", "category:casino"};
    assert_refused(b, 2, "\"category:casino\"");
    const char *c[] = {"inbox.read", "item:"};
    assert_refused(c, 2, "\"item:\"");
    const char *d[] = {"inbox.read", "item:a b"};
    assert_refused(d, 2, "\"item:a b\"");
    const char *e[] = {"inbox.read", "Inbox.Read"};
    assert_refused(e, 2, "\"Inbox.Read\"");
    const char *f[] = {"inbox.read", ""};
    assert_refused(f, 2, "\"\" is unknown");
    const char *g[] = {"inbox.read", NULL};
    assert_refused(g, 2, "\"\" is unknown");
}

static void hostile_words_are_shown_bounded_and_printable(void **state)
{
    (void)state;
    char long_word[300];
    memset(long_word, 'x', sizeof long_word - 1);
    long_word[sizeof long_word - 1] = '\0';
    const char *a[] = {long_word};
    char out[FXB_SCOPE_TEXT_MAX + 1];
    fxb_err err;
    assert_int_equal(fxb_scope_canonical(a, 1, out, &err), FXB_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "longer than 64"));
    assert_true(strlen(err.message) < 200);
    const char *b[] = {"inbox.read", "item:\x1b[31m"};
    assert_int_equal(fxb_scope_canonical(b, 2, out, &err), FXB_INVALID_ARGUMENT);
    assert_null(strchr(err.message, '\x1b'));
}

static void a_grant_needs_a_capability(void **state)
{
    (void)state;
    const char *a[] = {"item:110101-01", "category:tax"};
    assert_refused(a, 2, "at least one capability");
    assert_refused(a, 0, "at least one capability");
}

static void filing_needs_an_item_or_category(void **state)
{
    (void)state;
    const char *a[] = {"filing.submit"};
    assert_refused(a, 1, "item:<code> or category:<name>");
    const char *b[] = {"filing.read", "inbox.read"};
    assert_refused(b, 2, "item:<code> or category:<name>");
    const char *c[] = {"filing.read", "category:tax"};
    assert_canonical(c, 2, "category:tax filing.read");
}

static void at_most_32_words(void **state)
{
    (void)state;
    char buf[33][24];
    const char *w[33];
    w[0] = "filing.submit";
    for (int i = 1; i < 33; i++) {
        snprintf(buf[i], sizeof buf[i], "item:I%03d", i);
        w[i] = buf[i];
    }
    assert_refused(w, 33, "at most 32");
    char out[FXB_SCOPE_TEXT_MAX + 1];
    fxb_err err;
    assert_int_equal(fxb_scope_canonical(w, 32, out, &err), FXB_OK);
}

static void item_codes(void **state)
{
    (void)state;
    assert_true(fxb_scope_item_code_valid("11410700MB1534.001-A_2"));
    char max[FXB_SCOPE_ITEM_MAX + 2];
    memset(max, '9', FXB_SCOPE_ITEM_MAX);
    max[FXB_SCOPE_ITEM_MAX] = '\0';
    assert_true(fxb_scope_item_code_valid(max));
    max[FXB_SCOPE_ITEM_MAX] = '9';
    max[FXB_SCOPE_ITEM_MAX + 1] = '\0';
    assert_false(fxb_scope_item_code_valid(max));
    assert_false(fxb_scope_item_code_valid(""));
    assert_false(fxb_scope_item_code_valid("a/b"));
    assert_false(fxb_scope_item_code_valid("a:b"));
    assert_false(fxb_scope_item_code_valid("事项"));
    assert_false(fxb_scope_item_code_valid(NULL));
}

static void has_matches_whole_words_only(void **state)
{
    (void)state;
    const char *s = "category:education filing.submit inbox.read";
    assert_true(fxb_scope_has(s, "inbox.read"));
    assert_true(fxb_scope_has(s, "category:education"));
    assert_false(fxb_scope_has(s, "inbox"));
    assert_false(fxb_scope_has(s, "filing.read"));
    assert_false(fxb_scope_has(s, "read"));
    assert_false(fxb_scope_has(s, ""));
    assert_false(fxb_scope_has("", "inbox.read"));
    assert_false(fxb_scope_has(NULL, "inbox.read"));
}

static void items_are_admitted_by_code_or_category(void **state)
{
    (void)state;
    const char *s = "category:education filing.submit item:A-1";
    assert_true(fxb_scope_allows_item(s, "A-1", NULL));
    assert_true(fxb_scope_allows_item(s, "A-1", "tax"));
    assert_true(fxb_scope_allows_item(s, "B-2", "education"));
    assert_false(fxb_scope_allows_item(s, "B-2", "tax"));
    assert_false(fxb_scope_allows_item(s, "B-2", ""));
    assert_false(fxb_scope_allows_item(s, "B-2", NULL));
    assert_false(fxb_scope_allows_item(s, "A-", NULL));
    assert_false(fxb_scope_allows_item(s, "", "education"));
    /* a category the catalogue does not have never matches */
    assert_false(fxb_scope_allows_item("category:x filing.submit", "B-2", "x"));
}

static void split_gives_the_words(void **state)
{
    (void)state;
    char buf[64];
    const char *w[4];
    size_t n = fxb_scope_split("a b c", buf, sizeof buf, w, 4);
    assert_int_equal(n, 3);
    assert_string_equal(w[0], "a");
    assert_string_equal(w[2], "c");
    assert_int_equal(fxb_scope_split("a b c", buf, sizeof buf, w, 2), 2);
    assert_int_equal(fxb_scope_split("", buf, sizeof buf, w, 4), 0);
    assert_int_equal(fxb_scope_split("a b c", buf, 3, w, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(canonical_form_is_sorted_and_distinct),
        cmocka_unit_test(every_capability_is_known),
        cmocka_unit_test(unknown_words_are_named),
        cmocka_unit_test(hostile_words_are_shown_bounded_and_printable),
        cmocka_unit_test(a_grant_needs_a_capability),
        cmocka_unit_test(filing_needs_an_item_or_category),
        cmocka_unit_test(at_most_32_words),
        cmocka_unit_test(item_codes),
        cmocka_unit_test(has_matches_whole_words_only),
        cmocka_unit_test(items_are_admitted_by_code_or_category),
        cmocka_unit_test(split_gives_the_words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
