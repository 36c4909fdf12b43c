/* The profile attribute schema (services/benefit/schema.h) rule by rule:
 * the seed parses, every rule of the JSON is enforced with an error line
 * naming the attribute and the member, all errors come at once (and are
 * bounded), the derived age exists exactly when persons have a date
 * birth_date, and the lookups answer as documented. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/benefit/schema.h"
#include "store/datafile.h"

static char errs[8192];

static fxb_schema *parse_ok(const char *json)
{
    fxb_schema *s = NULL;
    fxb_err err;
    if (fxb_schema_parse(json, strlen(json), &s, errs, sizeof errs, &err) != FXB_OK)
        fail_msg("expected a valid schema, got %s:\n%s", err.reason, errs);
    return s;
}

/* Parses json, expects it refused with an error line containing each of
 * the NULL-terminated wanted strings. */
static void assert_refused(const char *json, ...)
{
    fxb_schema *s = (fxb_schema *)1;
    fxb_err err;
    fxb_code rc = fxb_schema_parse(json, strlen(json), &s, errs, sizeof errs, &err);
    if (rc != FXB_INVALID_ARGUMENT || strcmp(err.reason, "SCHEMA_INVALID") != 0)
        fail_msg("expected SCHEMA_INVALID for %s, got %d %s", json, rc, err.reason);
    assert_null(s);
    va_list ap;
    va_start(ap, json);
    for (const char *want; (want = va_arg(ap, const char *)) != NULL;)
        if (strstr(errs, want) == NULL)
            fail_msg("no error line with \"%s\" in:\n%s", want, errs);
    va_end(ap);
}

static size_t lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

#define ONE(attr) "{\"attributes\": [" attr "]}"
#define BOOL_ATTR                                                                                  \
    "{\"name\": \"veteran\", \"subject\": \"person\", \"type\": \"bool\", \"source\": "            \
    "\"xx-veterans\"}"

static void test_the_embedded_seed_is_valid_and_complete(void **state)
{
    (void)state;
    const fxb_datafile *f = fxb_datafile_find("benefit/schema.json");
    assert_non_null(f);
    fxb_schema *s = NULL;
    fxb_err err;
    if (fxb_schema_parse(f->bytes, f->len, &s, errs, sizeof errs, &err) != FXB_OK)
        fail_msg("seed: %s", errs);
    static const char *const persons[] = {
        "birth_date", "district", "disability_level", "low_income",     "receives_pension",
        "employment", "children", "veteran",          "household_type", "age"};
    static const char *const enterprises[] = {"industry_code",    "size_class",        "district",
                                              "employees",        "tax_credit_rating", "high_tech",
                                              "established_date", "certifications"};
    for (size_t i = 0; i < sizeof persons / sizeof persons[0]; i++)
        assert_non_null(fxb_schema_find(s, FXB_SUBJECT_PERSON, persons[i]));
    for (size_t i = 0; i < sizeof enterprises / sizeof enterprises[0]; i++)
        assert_non_null(fxb_schema_find(s, FXB_SUBJECT_ENTERPRISE, enterprises[i]));
    assert_int_equal(s->n_attrs, 18);
    const fxb_attr *d = fxb_schema_find(s, FXB_SUBJECT_PERSON, "district");
    assert_int_equal(d->n_values, 15);
    assert_string_equal(d->source, "xx-police");
    assert_int_equal(fxb_schema_enum_index(d, "红旗区"), 0);
    assert_int_equal(fxb_schema_enum_index(d, "经开区"), 14);
    const fxb_attr *ic = fxb_schema_find(s, FXB_SUBJECT_ENTERPRISE, "industry_code");
    assert_int_equal(ic->n_values, 20); /* GB/T 4754 sections A..T */
    const fxb_attr *dl = fxb_schema_find(s, FXB_SUBJECT_PERSON, "disability_level");
    assert_int_equal(dl->min, 0);
    assert_int_equal(dl->max, 4);
    assert_string_equal(dl->source, "xx-disabled-federation");
    const fxb_attr *emp = fxb_schema_find(s, FXB_SUBJECT_ENTERPRISE, "employees");
    assert_int_equal(emp->max, 1000000);
    assert_string_equal(emp->source, "xx-hrss");
    assert_int_equal(fxb_schema_find(s, FXB_SUBJECT_ENTERPRISE, "certifications")->type,
                     FXB_ATTR_SET);
    fxb_schema_free(s);
}

static void test_age_is_derived_from_a_person_date_birth_date(void **state)
{
    (void)state;
    fxb_schema *s = parse_ok(ONE("{\"name\": \"birth_date\", \"subject\": \"person\", \"type\": "
                                 "\"date\", \"source\": \"xx-police\"}"));
    const fxb_attr *age = fxb_schema_find(s, FXB_SUBJECT_PERSON, "age");
    assert_non_null(age);
    assert_true(age->derived);
    assert_int_equal(age->type, FXB_ATTR_INT);
    assert_string_equal(age->source, "xx-police");
    assert_null(fxb_schema_find(s, FXB_SUBJECT_ENTERPRISE, "age"));
    assert_false(fxb_schema_find(s, FXB_SUBJECT_PERSON, "birth_date")->derived);
    fxb_schema_free(s);
    /* no birth_date, or one that is not a date, or an enterprise's: no age */
    s = parse_ok(ONE(BOOL_ATTR));
    assert_null(fxb_schema_find(s, FXB_SUBJECT_PERSON, "age"));
    fxb_schema_free(s);
    s = parse_ok(ONE("{\"name\": \"birth_date\", \"subject\": \"person\", \"type\": \"int\", "
                     "\"min\": 0, \"max\": 1, \"source\": \"xx-police\"}"));
    assert_null(fxb_schema_find(s, FXB_SUBJECT_PERSON, "age"));
    fxb_schema_free(s);
    s = parse_ok(ONE("{\"name\": \"birth_date\", \"subject\": \"enterprise\", \"type\": "
                     "\"date\", \"source\": \"xx-market\"}"));
    assert_null(fxb_schema_find(s, FXB_SUBJECT_PERSON, "age"));
    fxb_schema_free(s);
}

static void test_age_cannot_be_declared_for_persons(void **state)
{
    (void)state;
    assert_refused(ONE("{\"name\": \"age\", \"subject\": \"person\", \"type\": \"int\", \"min\": "
                       "0, \"max\": 150, \"source\": \"xx-police\"}"),
                   "attributes[0]: \"age\" is derived", NULL);
    /* an enterprise may have its own "age" */
    fxb_schema *s = parse_ok(ONE("{\"name\": \"age\", \"subject\": \"enterprise\", \"type\": "
                                 "\"int\", \"min\": 0, \"max\": 500, \"source\": \"xx-market\"}"));
    assert_false(fxb_schema_find(s, FXB_SUBJECT_ENTERPRISE, "age")->derived);
    fxb_schema_free(s);
}

static void test_the_document_is_an_object_with_a_non_empty_attributes_array(void **state)
{
    (void)state;
    assert_refused("{\"attributes\": [", "not valid JSON", NULL);
    assert_refused("[]", "schema: must be an object", NULL);
    assert_refused("{}", "attributes: required: a non-empty array", NULL);
    assert_refused("{\"attributes\": []}", "attributes: required: a non-empty array", NULL);
    assert_refused("{\"attributes\": {}}", "attributes: required: a non-empty array", NULL);
    assert_refused("{\"attributes\": [" BOOL_ATTR "], \"version\": 2}",
                   "schema: unknown member \"version\"", NULL);
    assert_refused("{\"attributes\": [1]}", "attributes[0]: must be an object", NULL);
    /* duplicate members are refused, not silently merged */
    assert_refused("{\"attributes\": [], \"attributes\": [" BOOL_ATTR "]}", "not valid JSON", NULL);
}

static void test_unknown_members_of_an_attribute_are_refused(void **state)
{
    (void)state;
    assert_refused(ONE("{\"name\": \"veteran\", \"subject\": \"person\", \"type\": \"bool\", "
                       "\"source\": \"xx-veterans\", \"sorce\": \"x\"}"),
                   "attributes[0]: unknown member \"sorce\"", NULL);
}

static void test_names_are_lower_snake_case_of_at_most_32(void **state)
{
    (void)state;
    static const char *const bad[] = {"\"\"",
                                      "\"Veteran\"",
                                      "\"1st\"",
                                      "\"_x\"",
                                      "\"a-b\"",
                                      "\"a b\"",
                                      "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
                                      "3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[512];
        snprintf(json, sizeof json,
                 ONE("{\"name\": %s, \"subject\": \"person\", \"type\": \"bool\", \"source\": "
                     "\"xx-a\"}"),
                 bad[i]);
        assert_refused(json, "attributes[0].name:", NULL);
    }
    fxb_schema *s = parse_ok(ONE("{\"name\": \"a_234567890123456789012345678901\", \"subject\": "
                                 "\"person\", \"type\": \"bool\", \"source\": \"xx-a\"}"));
    assert_non_null(fxb_schema_find(s, FXB_SUBJECT_PERSON, "a_234567890123456789012345678901"));
    fxb_schema_free(s);
    assert_refused(ONE("{\"subject\": \"person\", \"type\": \"bool\", \"source\": \"xx-a\"}"),
                   "attributes[0].name: required", NULL);
}

static void test_names_are_unique_per_subject_type(void **state)
{
    (void)state;
    assert_refused("{\"attributes\": [" BOOL_ATTR ", " BOOL_ATTR "]}",
                   "attributes[1].name: \"veteran\" is declared twice for person", NULL);
    fxb_schema *s = parse_ok("{\"attributes\": [" BOOL_ATTR
                             ", {\"name\": \"veteran\", \"subject\": \"enterprise\", \"type\": "
                             "\"bool\", \"source\": \"xx-veterans\"}]}");
    assert_int_equal(s->n_attrs, 2);
    fxb_schema_free(s);
}

static void test_subject_is_person_or_enterprise(void **state)
{
    (void)state;
    assert_refused(ONE("{\"name\": \"x\", \"subject\": \"people\", \"type\": \"bool\", "
                       "\"source\": \"xx-a\"}"),
                   "attributes[0].subject: required", NULL);
    assert_refused(ONE("{\"name\": \"x\", \"type\": \"bool\", \"source\": \"xx-a\"}"),
                   "attributes[0].subject: required", NULL);
}

static void test_type_is_one_of_the_five(void **state)
{
    (void)state;
    assert_refused(ONE("{\"name\": \"x\", \"subject\": \"person\", \"type\": \"string\", "
                       "\"source\": \"xx-a\"}"),
                   "attributes[0].type: required: int, bool, enum, date or set", NULL);
    static const char *const good[] = {"bool", "date", "set"};
    for (size_t i = 0; i < 3; i++) {
        char json[256];
        snprintf(json, sizeof json,
                 ONE("{\"name\": \"x\", \"subject\": \"enterprise\", \"type\": \"%s\", "
                     "\"source\": \"xx-a\"}"),
                 good[i]);
        fxb_schema *s = parse_ok(json);
        assert_int_equal(s->attrs[0].type, (int)i == 0 ? FXB_ATTR_BOOL
                                           : i == 1    ? FXB_ATTR_DATE
                                                       : FXB_ATTR_SET);
        fxb_schema_free(s);
    }
}

static void test_int_needs_64_bit_bounds_with_min_not_above_max(void **state)
{
    (void)state;
    fxb_schema *s = parse_ok(ONE("{\"name\": \"n\", \"subject\": \"person\", \"type\": \"int\", "
                                 "\"min\": -9223372036854775808, \"max\": 9223372036854775807, "
                                 "\"source\": \"xx-a\"}"));
    assert_true(s->attrs[0].min == INT64_MIN);
    assert_true(s->attrs[0].max == INT64_MAX);
    fxb_schema_free(s);
    assert_refused(ONE("{\"name\": \"n\", \"subject\": \"person\", \"type\": \"int\", \"max\": "
                       "3, \"source\": \"xx-a\"}"),
                   "attributes[0].min: required for int", NULL);
    assert_refused(ONE("{\"name\": \"n\", \"subject\": \"person\", \"type\": \"int\", \"min\": "
                       "3, \"source\": \"xx-a\"}"),
                   "attributes[0].max: required for int", NULL);
    assert_refused(ONE("{\"name\": \"n\", \"subject\": \"person\", \"type\": \"int\", \"min\": "
                       "1.5, \"max\": 3, \"source\": \"xx-a\"}"),
                   "attributes[0].min: required for int, an integer", NULL);
    assert_refused(ONE("{\"name\": \"n\", \"subject\": \"person\", \"type\": \"int\", \"min\": "
                       "4, \"max\": 3, \"source\": \"xx-a\"}"),
                   "attributes[0].max: must not be less than min", NULL);
    /* beyond 64 bits is not JSON jansson accepts: refused as a whole */
    assert_refused(ONE("{\"name\": \"n\", \"subject\": \"person\", \"type\": \"int\", \"min\": "
                       "0, \"max\": 9223372036854775808, \"source\": \"xx-a\"}"),
                   "not valid JSON", NULL);
}

static void test_only_int_has_bounds_and_only_enum_has_values(void **state)
{
    (void)state;
    assert_refused(ONE("{\"name\": \"b\", \"subject\": \"person\", \"type\": \"bool\", \"min\": "
                       "0, \"max\": 1, \"values\": [\"a\"], \"source\": \"xx-a\"}"),
                   "attributes[0].min: only int attributes have bounds",
                   "attributes[0].max: only int attributes have bounds",
                   "attributes[0].values: only enum attributes have values", NULL);
}

static void test_enum_has_1_to_256_distinct_values_of_1_to_32_characters(void **state)
{
    (void)state;
    assert_refused(ONE("{\"name\": \"e\", \"subject\": \"person\", \"type\": \"enum\", "
                       "\"source\": \"xx-a\"}"),
                   "attributes[0].values: required for enum: 1..256 strings", NULL);
    assert_refused(ONE("{\"name\": \"e\", \"subject\": \"person\", \"type\": \"enum\", "
                       "\"values\": [], \"source\": \"xx-a\"}"),
                   "attributes[0].values: required for enum", NULL);
    assert_refused(
        ONE("{\"name\": \"e\", \"subject\": \"person\", \"type\": \"enum\", "
            "\"values\": [\"a\", 2, \"\", \"a\", \"x\\u0001\", "
            "\"一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十一二三\"], "
            "\"source\": \"xx-a\"}"),
        "attributes[0].values[1]: must be a string", "attributes[0].values[2]: must be 1..32",
        "attributes[0].values[3]: repeats an earlier value",
        "attributes[0].values[4]: must be 1..32", "attributes[0].values[5]: must be 1..32", NULL);
    /* 32 Chinese characters (96 bytes) is within the bound: characters, not bytes */
    fxb_schema *s =
        parse_ok(ONE("{\"name\": \"e\", \"subject\": \"person\", \"type\": \"enum\", "
                     "\"values\": "
                     "[\"一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十一二\"], "
                     "\"source\": \"xx-a\"}"));
    fxb_schema_free(s);
    /* 256 values pass, 257 do not */
    char *json = malloc(8192);
    assert_non_null(json);
    for (int n = 256; n <= 257; n++) {
        size_t len = (size_t)snprintf(json, 8192,
                                      "{\"attributes\": [{\"name\": \"e\", \"subject\": "
                                      "\"person\", \"type\": \"enum\", \"values\": [");
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(json + len, 8192 - len, "%s\"v%d\"", i ? "," : "", i);
        snprintf(json + len, 8192 - len, "], \"source\": \"xx-a\"}]}");
        if (n == 256) {
            s = parse_ok(json);
            assert_int_equal(s->attrs[0].n_values, 256);
            assert_int_equal(fxb_schema_enum_index(&s->attrs[0], "v255"), 255);
            fxb_schema_free(s);
        } else {
            assert_refused(json, "attributes[0].values: required for enum: 1..256", NULL);
        }
    }
    free(json);
}

static void test_source_is_a_department_code(void **state)
{
    (void)state;
    static const char *const bad[] = {"\"\"",
                                      "\"XX-police\"",
                                      "\"xx_police\"",
                                      "\"xx police\"",
                                      "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
                                      "1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[256];
        snprintf(json, sizeof json,
                 ONE("{\"name\": \"x\", \"subject\": \"person\", \"type\": \"bool\", \"source\": "
                     "%s}"),
                 bad[i]);
        assert_refused(json, "attributes[0].source: required: a department code", NULL);
    }
    assert_refused(ONE("{\"name\": \"x\", \"subject\": \"person\", \"type\": \"bool\"}"),
                   "attributes[0].source: required", NULL);
    fxb_schema *s = parse_ok(ONE("{\"name\": \"x\", \"subject\": \"person\", \"type\": \"bool\", "
                                 "\"source\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa9\"}"));
    fxb_schema_free(s);
}

static void test_description_is_optional_text_of_at_most_200_characters(void **state)
{
    (void)state;
    fxb_schema *s = parse_ok(ONE("{\"name\": \"x\", \"subject\": \"person\", \"type\": \"bool\", "
                                 "\"source\": \"xx-a\", \"description\": \"退役军人\"}"));
    assert_string_equal(s->attrs[0].description, "退役军人");
    fxb_schema_free(s);
    assert_refused(ONE("{\"name\": \"x\", \"subject\": \"person\", \"type\": \"bool\", "
                       "\"source\": \"xx-a\", \"description\": 3}"),
                   "attributes[0].description:", NULL);
    char json[1024];
    char desc[256];
    memset(desc, 'd', 201);
    desc[201] = '\0';
    snprintf(json, sizeof json,
             ONE("{\"name\": \"x\", \"subject\": \"person\", \"type\": \"bool\", \"source\": "
                 "\"xx-a\", \"description\": \"%s\"}"),
             desc);
    assert_refused(json, "attributes[0].description:", NULL);
}

static void test_at_most_64_attributes_per_subject_type_counting_age(void **state)
{
    (void)state;
    char *json = malloc(64 * 1024);
    assert_non_null(json);
    /* 63 + birth_date + derived age = 65 persons: refused; 62 + birth_date + age = 64: fine */
    for (int extra = 62; extra <= 63; extra++) {
        size_t len = (size_t)snprintf(json, 64 * 1024,
                                      "{\"attributes\": [{\"name\": \"birth_date\", \"subject\": "
                                      "\"person\", \"type\": \"date\", \"source\": \"xx-a\"}");
        for (int i = 0; i < extra; i++)
            len += (size_t)snprintf(json + len, 64 * 1024 - len,
                                    ", {\"name\": \"b%d\", \"subject\": \"person\", \"type\": "
                                    "\"bool\", \"source\": \"xx-a\"}",
                                    i);
        snprintf(json + len, 64 * 1024 - len, "]}");
        if (extra == 62) {
            fxb_schema *s = parse_ok(json);
            assert_int_equal(s->n_attrs, 64);
            fxb_schema_free(s);
        } else {
            assert_refused(
                json, "attributes: 65 person attributes (with the derived age); at most 64", NULL);
        }
    }
    /* more than 128 entries in all */
    size_t len = (size_t)snprintf(json, 64 * 1024, "{\"attributes\": [");
    for (int i = 0; i < 129; i++)
        len += (size_t)snprintf(json + len, 64 * 1024 - len,
                                "%s{\"name\": \"b%d\", \"subject\": \"%s\", \"type\": \"bool\", "
                                "\"source\": \"xx-a\"}",
                                i ? ", " : "", i, i % 2 ? "person" : "enterprise");
    snprintf(json + len, 64 * 1024 - len, "]}");
    assert_refused(json, "attributes: at most 128 entries", NULL);
    free(json);
}

static void test_every_error_is_reported_at_once(void **state)
{
    (void)state;
    assert_refused("{\"attributes\": ["
                   "{\"name\": \"Bad\", \"subject\": \"person\", \"type\": \"bool\", \"source\": "
                   "\"xx-a\"},"
                   "{\"name\": \"ok\", \"subject\": \"nobody\", \"type\": \"bool\", \"source\": "
                   "\"xx-a\"},"
                   "{\"name\": \"n\", \"subject\": \"person\", \"type\": \"int\", \"source\": "
                   "\"XX\"}]}",
                   "attributes[0].name:", "attributes[1].subject:", "attributes[2].min:",
                   "attributes[2].max:", "attributes[2].source:", NULL);
    assert_int_equal(lines(errs), 5);
}

static void test_error_text_is_bounded_by_the_cap(void **state)
{
    (void)state;
    char *json = malloc(64 * 1024);
    assert_non_null(json);
    size_t len = (size_t)snprintf(json, 64 * 1024, "{\"attributes\": [");
    for (int i = 0; i < 100; i++)
        len += (size_t)snprintf(json + len, 64 * 1024 - len, "%s{\"name\": \"BAD\"}", i ? "," : "");
    snprintf(json + len, 64 * 1024 - len, "]}");
    char small[300];
    memset(small, 'z', sizeof small);
    fxb_schema *s = NULL;
    fxb_err err;
    assert_int_equal(fxb_schema_parse(json, strlen(json), &s, small, 256, &err),
                     FXB_INVALID_ARGUMENT);
    assert_true(strlen(small) < 256);
    assert_non_null(strstr(small, "...\n"));
    assert_int_equal(small[299], 'z'); /* nothing written past the cap */
    /* the message still counts every error */
    assert_non_null(strstr(err.message, "400 errors"));
    /* no buffer at all is fine */
    assert_int_equal(fxb_schema_parse(json, strlen(json), &s, NULL, 0, &err), FXB_INVALID_ARGUMENT);
    free(json);
}

static void test_lookups(void **state)
{
    (void)state;
    fxb_schema *s = parse_ok("{\"attributes\": [{\"name\": \"k\", \"subject\": \"person\", "
                             "\"type\": \"enum\", \"values\": [\"a\", \"b\"], \"source\": "
                             "\"xx-a\"}, " BOOL_ATTR "]}");
    const fxb_attr *k = fxb_schema_find(s, FXB_SUBJECT_PERSON, "k");
    assert_non_null(k);
    assert_null(fxb_schema_find(s, FXB_SUBJECT_ENTERPRISE, "k"));
    assert_null(fxb_schema_find(s, FXB_SUBJECT_PERSON, "nope"));
    assert_null(fxb_schema_find(s, FXB_SUBJECT_PERSON, NULL));
    assert_int_equal(fxb_schema_enum_index(k, "b"), 1);
    assert_int_equal(fxb_schema_enum_index(k, "c"), -1);
    assert_int_equal(fxb_schema_enum_index(fxb_schema_find(s, FXB_SUBJECT_PERSON, "veteran"), "a"),
                     -1);
    assert_int_equal(fxb_schema_enum_index(NULL, "a"), -1);
    fxb_schema_free(s);
    fxb_schema_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_embedded_seed_is_valid_and_complete),
        cmocka_unit_test(test_age_is_derived_from_a_person_date_birth_date),
        cmocka_unit_test(test_age_cannot_be_declared_for_persons),
        cmocka_unit_test(test_the_document_is_an_object_with_a_non_empty_attributes_array),
        cmocka_unit_test(test_unknown_members_of_an_attribute_are_refused),
        cmocka_unit_test(test_names_are_lower_snake_case_of_at_most_32),
        cmocka_unit_test(test_names_are_unique_per_subject_type),
        cmocka_unit_test(test_subject_is_person_or_enterprise),
        cmocka_unit_test(test_type_is_one_of_the_five),
        cmocka_unit_test(test_int_needs_64_bit_bounds_with_min_not_above_max),
        cmocka_unit_test(test_only_int_has_bounds_and_only_enum_has_values),
        cmocka_unit_test(test_enum_has_1_to_256_distinct_values_of_1_to_32_characters),
        cmocka_unit_test(test_source_is_a_department_code),
        cmocka_unit_test(test_description_is_optional_text_of_at_most_200_characters),
        cmocka_unit_test(test_at_most_64_attributes_per_subject_type_counting_age),
        cmocka_unit_test(test_every_error_is_reported_at_once),
        cmocka_unit_test(test_error_text_is_bounded_by_the_cap),
        cmocka_unit_test(test_lookups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
