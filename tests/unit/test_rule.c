/* The eligibility rule language (services/benefit/rule.h) as rules: the
 * grammar and its precedence, the type of every attribute and what it
 * takes, where and why a rule is refused (line:column in characters, the
 * token, the message), the limits at and beyond their bounds, hostile
 * input, Kleene's three-valued evaluation, explanations, and the birth-date
 * ranges of age conditions checked by brute force against fxb_rule_age.
 *
 * The schema is built in C here, not parsed: district (enum), birth_date
 * (date) with the derived age (int 0..150), receives_pension / veteran /
 * disabled (bool), children (int 0..20), tags (set) for persons; employees,
 * balance (int), industry (enum), is_sme (bool), registered_on (date),
 * certifications (set) for enterprises. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/benefit/rule.h"

#define P FXB_SUBJECT_PERSON
#define E FXB_SUBJECT_ENTERPRISE

static char *district_values[] = {"红旗区", "卫滨区", "牧野区"};
static char *industry_values[] = {"制造业", "软件和信息技术服务业"};

static fxb_attr attrs[] = {
    {.name = "district",
     .subject = P,
     .type = FXB_ATTR_ENUM,
     .values = district_values,
     .n_values = 3},
    {.name = "birth_date", .subject = P, .type = FXB_ATTR_DATE},
    {.name = "receives_pension", .subject = P, .type = FXB_ATTR_BOOL},
    {.name = "veteran", .subject = P, .type = FXB_ATTR_BOOL},
    {.name = "disabled", .subject = P, .type = FXB_ATTR_BOOL},
    {.name = "children", .subject = P, .type = FXB_ATTR_INT, .min = 0, .max = 20},
    {.name = "tags", .subject = P, .type = FXB_ATTR_SET},
    {.name = "employees", .subject = E, .type = FXB_ATTR_INT, .min = 0, .max = 10000000},
    {.name = "balance", .subject = E, .type = FXB_ATTR_INT, .min = INT64_MIN, .max = INT64_MAX},
    {.name = "industry",
     .subject = E,
     .type = FXB_ATTR_ENUM,
     .values = industry_values,
     .n_values = 2},
    {.name = "is_sme", .subject = E, .type = FXB_ATTR_BOOL},
    {.name = "registered_on", .subject = E, .type = FXB_ATTR_DATE},
    {.name = "certifications", .subject = E, .type = FXB_ATTR_SET},
    {.name = "age", .subject = P, .type = FXB_ATTR_INT, .min = 0, .max = 150, .derived = true},
};
static const fxb_schema schema = {.attrs = attrs, .n_attrs = sizeof attrs / sizeof attrs[0]};

static const fxb_attr *attr(const char *name)
{
    for (size_t i = 0; i < schema.n_attrs; i++)
        if (strcmp(attrs[i].name, name) == 0)
            return &attrs[i];
    fail_msg("no attribute %s", name);
    return NULL;
}

static fxb_rule *compile(fxb_subject_type subject, const char *text)
{
    fxb_rule *r = NULL;
    fxb_rule_error where;
    fxb_err err;
    fxb_code rc = fxb_rule_compile(&schema, subject, text, &r, &where, &err);
    if (rc != FXB_OK)
        fail_msg("refused %s: %u:%u '%s' %s", text, where.line, where.col, where.token,
                 where.message);
    assert_non_null(r);
    return r;
}

static fxb_rule *ok(const char *text)
{
    return compile(P, text);
}

/* Compiles text expecting a refusal with exactly this reason, position and
 * token, and a message containing msg. */
static void refused_as(fxb_subject_type subject, const char *text, const char *reason,
                       uint32_t line, uint32_t col, const char *token, const char *msg)
{
    fxb_rule *r = (fxb_rule *)0x1;
    fxb_rule_error where;
    fxb_err err;
    fxb_code rc = fxb_rule_compile(&schema, subject, text, &r, &where, &err);
    if (rc != FXB_INVALID_ARGUMENT || strcmp(err.reason, reason) != 0 || where.line != line ||
        where.col != col || (token != NULL && strcmp(where.token, token) != 0) ||
        strstr(where.message, msg) == NULL)
        fail_msg("%s\n  got %s %s %u:%u token '%s': %s\n  want %s %u:%u token '%s': %s", text,
                 fxb_code_name(rc), err.reason, where.line, where.col, where.token, where.message,
                 reason, line, col, token ? token : "(any)", msg);
    assert_null(r);
    assert_non_null(strstr(err.message, where.message));
    assert_true(strlen(err.message_zh) > 0);
    for (const char *c = where.token; *c; c++)
        assert_true((unsigned char)*c >= 0x20 && *c != 0x7f);
    assert_true(strlen(where.token) <= 60);
}

static void refused(const char *text, const char *reason, uint32_t line, uint32_t col,
                    const char *token, const char *msg)
{
    refused_as(P, text, reason, line, col, token, msg);
}

/* --- a profile for evaluation -------------------------------------------------- */

typedef struct profile {
    struct {
        const fxb_attr *a;
        fxb_profile_value v;
    } e[16];
    size_t n;
    int calls;
} profile;

static void profile_get(void *self, const fxb_attr *a, fxb_profile_value *out)
{
    profile *p = self;
    p->calls++;
    assert_false(a->derived); /* age is never asked for: birth_date is */
    for (size_t i = 0; i < p->n; i++)
        if (p->e[i].a == a) {
            *out = p->e[i].v;
            return;
        }
    out->present = false;
}

static void set_i(profile *p, const char *name, int64_t i)
{
    p->e[p->n].a = attr(name);
    p->e[p->n].v = (fxb_profile_value){.present = true, .i = i};
    p->n++;
}

static void set_members(profile *p, const char *name, const char *const *m, size_t n)
{
    p->e[p->n].a = attr(name);
    p->e[p->n].v = (fxb_profile_value){.present = true, .members = m, .n_members = n};
    p->n++;
}

static fxb_truth eval_on(const char *text, profile *p, uint32_t today)
{
    fxb_rule *r = ok(text);
    fxb_profile_view view = {profile_get, p};
    fxb_truth held[FXB_RULE_CONDITIONS_MAX];
    fxb_truth t = fxb_rule_eval(r, &view, today, held);
    /* with or without explanations, the answer is the same */
    assert_int_equal(fxb_rule_eval(r, &view, today, NULL), t);
    fxb_rule_free(r);
    return t;
}

#define TODAY 20250615u

/* --- grammar ---------------------------------------------------------------------- */

static void test_every_form_of_condition_is_accepted(void **state)
{
    (void)state;
    const char *rules[] = {
        "receives_pension",
        "age >= 80",
        "age == 80",
        "age != 80",
        "age < 80",
        "age <= 80",
        "age > 80",
        "age in {60, 65, 70}",
        "age in {60}",
        "children >= 0",
        "district == \"红旗区\"",
        "district != \"卫滨区\"",
        "district in {\"红旗区\", \"卫滨区\"}",
        "receives_pension == true",
        "receives_pension != false",
        "birth_date < \"1950-01-01\"",
        "birth_date == \"2000-02-29\"",
        "birth_date != \"2000-02-29\"",
        "birth_date <= \"2000-02-29\"",
        "birth_date > \"2000-02-29\"",
        "birth_date >= \"2000-02-29\"",
        "tags contains \"低保户\"",
        "!receives_pension",
        "(receives_pension)",
        "age >= 80 && district in {\"红旗区\", \"卫滨区\"} && !receives_pension",
        "age>=80&&!receives_pension||(children>2)",
        "\n\t age   >=\n80  ",
        "age >= 80 &&\r\n receives_pension",
        "age == -0",
        "age == 000000000000000080",
        "tags contains \"a \\\"quoted\\\" \\\\ text\"",
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        fxb_rule_free(ok(rules[i]));
    fxb_rule *r =
        compile(E, "employees > 50 && industry == \"制造业\" && is_sme && "
                   "registered_on >= \"2020-01-01\" && certifications contains \"ISO9001\"");
    assert_int_equal(fxb_rule_conditions(r), 5);
    fxb_rule_free(r);
}

static void test_and_binds_tighter_than_or(void **state)
{
    (void)state;
    fxb_rule *r = ok("veteran || disabled && receives_pension");
    const fxb_rule_node *n = fxb_rule_root(r);
    assert_int_equal(n->kind, FXB_RN_OR);
    assert_int_equal(n->a->kind, FXB_RN_TRUTH);
    assert_ptr_equal(n->a->attr, attr("veteran"));
    assert_int_equal(n->b->kind, FXB_RN_AND);
    assert_ptr_equal(n->b->a->attr, attr("disabled"));
    assert_ptr_equal(n->b->b->attr, attr("receives_pension"));
    fxb_rule_free(r);

    r = ok("veteran && disabled || receives_pension");
    n = fxb_rule_root(r);
    assert_int_equal(n->kind, FXB_RN_OR);
    assert_int_equal(n->a->kind, FXB_RN_AND);
    assert_int_equal(n->b->kind, FXB_RN_TRUTH);
    fxb_rule_free(r);
}

static void test_not_binds_tightest(void **state)
{
    (void)state;
    fxb_rule *r = ok("!veteran && disabled");
    const fxb_rule_node *n = fxb_rule_root(r);
    assert_int_equal(n->kind, FXB_RN_AND);
    assert_int_equal(n->a->kind, FXB_RN_NOT);
    assert_ptr_equal(n->a->a->attr, attr("veteran"));
    assert_null(n->a->b);
    assert_int_equal(n->b->kind, FXB_RN_TRUTH);
    fxb_rule_free(r);

    /* ! takes the whole condition, operator and value included */
    r = ok("!age >= 80");
    n = fxb_rule_root(r);
    assert_int_equal(n->kind, FXB_RN_NOT);
    assert_int_equal(n->a->kind, FXB_RN_CMP);
    assert_int_equal(n->a->op, FXB_OP_GE);
    assert_int_equal(n->a->value, 80);
    fxb_rule_free(r);

    r = ok("!!veteran");
    n = fxb_rule_root(r);
    assert_int_equal(n->kind, FXB_RN_NOT);
    assert_int_equal(n->a->kind, FXB_RN_NOT);
    assert_int_equal(n->a->a->kind, FXB_RN_TRUTH);
    fxb_rule_free(r);
}

static void test_parentheses_override_precedence(void **state)
{
    (void)state;
    fxb_rule *r = ok("(veteran || disabled) && receives_pension");
    const fxb_rule_node *n = fxb_rule_root(r);
    assert_int_equal(n->kind, FXB_RN_AND);
    assert_int_equal(n->a->kind, FXB_RN_OR);
    assert_int_equal(n->b->kind, FXB_RN_TRUTH);
    fxb_rule_free(r);

    r = ok("!(veteran || disabled)");
    n = fxb_rule_root(r);
    assert_int_equal(n->kind, FXB_RN_NOT);
    assert_int_equal(n->a->kind, FXB_RN_OR);
    fxb_rule_free(r);

    r = ok("((((veteran))))");
    assert_int_equal(fxb_rule_root(r)->kind, FXB_RN_TRUTH);
    fxb_rule_free(r);
}

static void test_chains_associate_to_the_left(void **state)
{
    (void)state;
    fxb_rule *r = ok("veteran && disabled && receives_pension");
    const fxb_rule_node *n = fxb_rule_root(r);
    assert_int_equal(n->kind, FXB_RN_AND);
    assert_int_equal(n->a->kind, FXB_RN_AND);
    assert_ptr_equal(n->a->a->attr, attr("veteran"));
    assert_ptr_equal(n->a->b->attr, attr("disabled"));
    assert_ptr_equal(n->b->attr, attr("receives_pension"));
    fxb_rule_free(r);
}

static void test_conditions_are_numbered_in_source_order_with_their_source(void **state)
{
    (void)state;
    fxb_rule *r =
        ok("age>=80&&\n  district in {\"卫滨区\",\"红旗区\"} || !(tags  contains \"低保户\" "
           "&& receives_pension) || receives_pension != false || children<-0");
    assert_int_equal(fxb_rule_conditions(r), 6);
    const fxb_rule_node *n = fxb_rule_root(r);
    /* ((c0 && c1) || !(c2 && c3)) || c4 || c5 */
    const fxb_rule_node *c[6] = {n->a->a->a->a,    n->a->a->a->b, n->a->a->b->a->a,
                                 n->a->a->b->a->b, n->a->b,       n->b};
    const char *src[6] = {"age >= 80",
                          "district in {\"卫滨区\", \"红旗区\"}",
                          "tags contains \"低保户\"",
                          "receives_pension",
                          "receives_pension != false",
                          "children < -0"};
    for (uint32_t i = 0; i < 6; i++) {
        assert_int_equal(c[i]->index, i);
        assert_string_equal(c[i]->source, src[i]);
    }
    assert_string_equal(c[2]->text, "低保户");
    assert_int_equal(c[2]->kind, FXB_RN_CONTAINS);
    fxb_rule_free(r);
}

static void test_values_are_stored_in_the_attribute_form(void **state)
{
    (void)state;
    fxb_rule *r = ok("district == \"牧野区\"");
    assert_int_equal(fxb_rule_root(r)->value, 2); /* its index in the schema */
    assert_ptr_equal(fxb_rule_root(r)->attr, attr("district"));
    fxb_rule_free(r);
    r = ok("birth_date <= \"1944-02-29\"");
    assert_int_equal(fxb_rule_root(r)->value, 19440229);
    assert_int_equal(fxb_rule_root(r)->op, FXB_OP_LE);
    fxb_rule_free(r);
    r = ok("receives_pension == true");
    assert_int_equal(fxb_rule_root(r)->value, 1);
    fxb_rule_free(r);
    r = ok("receives_pension != false");
    assert_int_equal(fxb_rule_root(r)->value, 0);
    assert_int_equal(fxb_rule_root(r)->op, FXB_OP_NE);
    fxb_rule_free(r);
    r = ok("age > -0");
    assert_int_equal(fxb_rule_root(r)->value, 0);
    assert_ptr_equal(fxb_rule_root(r)->attr, attr("age"));
    fxb_rule_free(r);
    r = compile(E, "balance >= -999999999999999999");
    assert_true(fxb_rule_root(r)->value == -999999999999999999LL);
    fxb_rule_free(r);
    r = compile(E, "balance <= 999999999999999999");
    assert_true(fxb_rule_root(r)->value == 999999999999999999LL);
    fxb_rule_free(r);
}

static void test_in_lists_are_sorted_and_distinct(void **state)
{
    (void)state;
    fxb_rule *r = ok("age in {70, 60, 70, 65, 60}");
    const fxb_rule_node *n = fxb_rule_root(r);
    assert_int_equal(n->kind, FXB_RN_IN);
    assert_int_equal(n->n_values, 3);
    assert_int_equal(n->values[0], 60);
    assert_int_equal(n->values[1], 65);
    assert_int_equal(n->values[2], 70);
    fxb_rule_free(r);

    r = ok("district in {\"牧野区\", \"红旗区\", \"牧野区\"}");
    n = fxb_rule_root(r);
    assert_int_equal(n->n_values, 2);
    assert_int_equal(n->values[0], 0);
    assert_int_equal(n->values[1], 2);
    fxb_rule_free(r);
}

/* --- refusals: syntax ---------------------------------------------------------------- */

static void test_syntax_errors_name_the_token_and_what_was_expected(void **state)
{
    (void)state;
    refused("age >=", "RULE_SYNTAX", 1, 7, "",
            "unexpected end of rule: expected a literal after '>='");
    refused("age >= && veteran", "RULE_SYNTAX", 1, 8, "&&",
            "expected a literal after '>=', found '&&'");
    refused("(age >= 60", "RULE_SYNTAX", 1, 11, "",
            "unexpected end of rule: '(' at 1:1 is not closed");
    refused("veteran && ((age >= 60)", "RULE_SYNTAX", 1, 24, "",
            "unexpected end of rule: '(' at 1:12 is not closed");
    refused("(age >= 60 veteran)", "RULE_SYNTAX", 1, 12, "veteran",
            "expected ')' to close '(' at 1:1, found 'veteran'");
    refused("age >= 60)", "RULE_SYNTAX", 1, 10, ")", "')' has no matching '('");
    refused("age >= 60 receives_pension", "RULE_SYNTAX", 1, 11, "receives_pension",
            "expected '&&', '||' or the end of the rule, found 'receives_pension'");
    refused("age 60", "RULE_SYNTAX", 1, 5, "60", "expected an operator between 'age' and '60'");
    refused("veteran true", "RULE_SYNTAX", 1, 9, "true",
            "expected an operator between 'veteran' and 'true'");
    refused("age = 60", "RULE_SYNTAX", 1, 5, "=", "unexpected character '=': write '=='");
    refused("veteran & disabled", "RULE_SYNTAX", 1, 9, "&", "write '&&'");
    refused("veteran | disabled", "RULE_SYNTAX", 1, 9, "|", "write '||'");
    refused("&& veteran", "RULE_SYNTAX", 1, 1, "&&", "expected a condition, found '&&'");
    refused("veteran &&", "RULE_SYNTAX", 1, 11, "",
            "unexpected end of rule: expected a condition after '&&'");
    refused("veteran ||\n", "RULE_SYNTAX", 2, 1, "",
            "unexpected end of rule: expected a condition after '||'");
    refused("!", "RULE_SYNTAX", 1, 2, "", "unexpected end of rule: expected a condition after '!'");
    refused("veteran && ()", "RULE_SYNTAX", 1, 13, ")", "expected a condition, found ')'");
    refused("in", "RULE_SYNTAX", 1, 1, "in", "expected a condition, found 'in'");
    refused("60 <= age", "RULE_SYNTAX", 1, 1, "60",
            "expected a condition, found '60' (a condition starts with the attribute)");
    refused("district in \"红旗区\"", "RULE_SYNTAX", 1, 13, "\"红旗区\"",
            "expected '{' after 'in', found '\"红旗区\"'");
    refused("district in", "RULE_SYNTAX", 1, 12, "",
            "unexpected end of rule: expected '{' after 'in'");
    refused("district in {}", "RULE_SYNTAX", 1, 14, "}", "expected a value after '{', found '}'");
    refused("district in {\"红旗区\",}", "RULE_SYNTAX", 1, 20, "}",
            "expected a value after ',', found '}'");
    refused("district in {\"红旗区\" \"卫滨区\"}", "RULE_SYNTAX", 1, 20, "\"卫滨区\"",
            "expected ',' or '}' after a value, found '\"卫滨区\"'");
    refused("district in {\"红旗区\"", "RULE_SYNTAX", 1, 19, "",
            "unexpected end of rule: '{' at 1:13 is not closed");
    refused("tags contains 5", "RULE_SYNTAX", 1, 15, "5",
            "expected a string after 'contains', found '5'");
    refused("tags contains", "RULE_SYNTAX", 1, 14, "",
            "unexpected end of rule: expected a string after 'contains'");
    refused("Age > 5", "RULE_SYNTAX", 1, 1, "A",
            "unexpected character 'A': attribute names are lower case");
    refused("age > - 5", "RULE_SYNTAX", 1, 7, "-", "unexpected character '-'");
    refused("age > 'x'", "RULE_SYNTAX", 1, 7, "'", "strings are written in double quotes");
    refused("age >= 60 &&\n  district == “红旗区”", "RULE_SYNTAX", 2, 15, "“",
            "unexpected character '“': strings are written in ASCII double quotes");
    refused("（veteran）", "RULE_SYNTAX", 1, 1, "（", "use ASCII parentheses");
    refused("age >= 60 # comment", "RULE_SYNTAX", 1, 11, "#", "unexpected character '#'");
}

static void test_strings_take_only_two_escapes_and_1_to_32_characters(void **state)
{
    (void)state;
    refused("tags contains \"a\\nb\"", "RULE_SYNTAX", 1, 17, "\\n",
            "unknown escape in a string: only \\\" and \\\\ are allowed");
    refused("tags contains \"a\\u0041\"", "RULE_SYNTAX", 1, 17, "\\u", "unknown escape");
    refused("tags contains \"\"", "RULE_SYNTAX", 1, 15, "\"\"", "empty string");
    refused("tags contains \"abc", "RULE_SYNTAX", 1, 19, "",
            "unexpected end of rule: the string at 1:15 is not closed");
    refused("tags contains \"abc\\", "RULE_SYNTAX", 1, 19, "\\",
            "unexpected end of rule: the string at 1:15 is not closed");
    refused("tags contains \"abc\n\" && veteran", "RULE_SYNTAX", 1, 19, "?",
            "the string at 1:15 is not closed before the end of the line");
    /* 32 characters, Chinese ones included, are fine; 33 are not */
    fxb_rule_free(
        ok("tags contains \"一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十一二\""));
    fxb_rule_free(ok("tags contains \"abcdefghijklmnopqrstuvwxyz012345\""));
    refused("tags contains \"一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十一二三\"",
            "RULE_SYNTAX", 1, 15, NULL, "a string is at most 32 characters");
    /* an escape is one character */
    char text[128] = "tags contains \"";
    for (int i = 0; i < 32; i++)
        strcat(text, "\\\\");
    strcat(text, "\"");
    fxb_rule *r = ok(text);
    assert_int_equal(strlen(fxb_rule_root(r)->text), 32);
    fxb_rule_free(r);
    memcpy(text + strlen(text) - 1, "\\\\\"", 4);
    refused(text, "RULE_SYNTAX", 1, 15, NULL, "a string is at most 32 characters");
    r = ok("tags contains \"a\\\"b\\\\c\"");
    assert_string_equal(fxb_rule_root(r)->text, "a\"b\\c");
    assert_string_equal(fxb_rule_root(r)->source, "tags contains \"a\\\"b\\\\c\"");
    fxb_rule_free(r);
}

static void test_integers_have_at_most_18_digits(void **state)
{
    (void)state;
    refused_as(E, "balance >= 1234567890123456789", "RULE_SYNTAX", 1, 12, "1234567890123456789",
               "integer out of range: at most 18 digits");
    refused_as(E, "balance >= -99999999999999999999999999999999", "RULE_SYNTAX", 1, 12, NULL,
               "integer out of range");
    refused_as(E, "balance >= 9223372036854775808", "RULE_SYNTAX", 1, 12, NULL, "out of range");
    fxb_rule_free(compile(E, "balance >= 123456789012345678"));
}

/* --- refusals: types ------------------------------------------------------------------- */

static void test_unknown_attributes_and_other_subjects_are_refused(void **state)
{
    (void)state;
    refused("agee >= 60", "RULE_TYPE", 1, 1, "agee",
            "unknown attribute 'agee' (did you mean 'age'?)");
    refused("zzzzzzzz >= 60", "RULE_TYPE", 1, 1, "zzzzzzzz", "unknown attribute 'zzzzzzzz'");
    refused("veteran && x", "RULE_TYPE", 1, 12, "x", "unknown attribute 'x'");
    refused("employees > 5", "RULE_TYPE", 1, 1, "employees",
            "'employees' is an enterprise attribute, the rule is for people");
    refused_as(E, "is_sme && age >= 60", "RULE_TYPE", 1, 11, "age",
               "'age' is a person attribute, the rule is for enterprises");
    refused_as(E, "district == \"红旗区\"", "RULE_TYPE", 1, 1, "district",
               "'district' is a person attribute, the rule is for enterprises");
    /* keywords are not attributes */
    refused("true", "RULE_SYNTAX", 1, 1, "true", "expected a condition, found 'true'");
}

static void test_each_type_takes_its_operators_and_literals(void **state)
{
    (void)state;
    /* enum */
    refused("district == \"红旗\"", "RULE_TYPE", 1, 13, "\"红旗\"",
            "'district' is an enum: '红旗' is not one of its values");
    refused("district < \"红旗区\"", "RULE_TYPE", 1, 10, "<",
            "operator '<' does not apply to enum 'district'");
    refused("district >= \"红旗区\"", "RULE_TYPE", 1, 10,
            ">=", "operator '>=' does not apply to enum 'district'");
    refused("district == 5", "RULE_TYPE", 1, 13, "5",
            "'district' is an enum: expected one of its values as a string, found '5'");
    refused("district in {\"红旗区\", \"x\"}", "RULE_TYPE", 1, 21, "\"x\"",
            "'district' is an enum: 'x' is not one of its values");
    refused("district contains \"红旗区\"", "RULE_TYPE", 1, 10, "contains",
            "'contains' applies to set attributes only, and 'district' is an enum");
    /* bool */
    refused("receives_pension < true", "RULE_TYPE", 1, 18, "<",
            "operator '<' does not apply to bool 'receives_pension'");
    refused("receives_pension == 1", "RULE_TYPE", 1, 21, "1",
            "'receives_pension' is a bool: compare it with true or false, not '1'");
    refused("receives_pension == \"true\"", "RULE_TYPE", 1, 21, "\"true\"",
            "'receives_pension' is a bool: compare it with true or false");
    refused("receives_pension in {true}", "RULE_TYPE", 1, 18, "in",
            "operator 'in' does not apply to bool 'receives_pension'");
    refused("receives_pension contains \"x\"", "RULE_TYPE", 1, 18, "contains",
            "'receives_pension' is a bool");
    /* int and age */
    refused("age >= \"60\"", "RULE_TYPE", 1, 8, "\"60\"",
            "'age' is an int: expected an integer, found a string");
    refused("age >= true", "RULE_TYPE", 1, 8, "true",
            "'age' is an int: expected an integer, found true");
    refused("age > 200", "RULE_TYPE", 1, 7, "200", "'age' ranges from 0 to 150: 200 is outside it");
    refused("children == -1", "RULE_TYPE", 1, 13, "-1",
            "'children' ranges from 0 to 20: -1 is outside it");
    refused("age in {60, 151}", "RULE_TYPE", 1, 13, "151", "'age' ranges from 0 to 150");
    refused("age contains \"x\"", "RULE_TYPE", 1, 5, "contains", "and 'age' is an int");
    /* date */
    refused("birth_date < \"2024-02-30\"", "RULE_TYPE", 1, 14, "\"2024-02-30\"",
            "'2024-02-30' is not a real date");
    refused("birth_date < \"2023-02-29\"", "RULE_TYPE", 1, 14, NULL,
            "'2023-02-29' is not a real date");
    refused("birth_date < \"1900-02-29\"", "RULE_TYPE", 1, 14, NULL, "not a real date");
    refused("birth_date < \"2024-13-01\"", "RULE_TYPE", 1, 14, NULL, "not a real date");
    refused("birth_date < \"0000-01-01\"", "RULE_TYPE", 1, 14, NULL, "not a real date");
    refused("birth_date < \"2024/02/01\"", "RULE_TYPE", 1, 14, NULL,
            "'birth_date' is a date: '2024/02/01' is not written \"YYYY-MM-DD\"");
    refused("birth_date < \"2024-2-1\"", "RULE_TYPE", 1, 14, NULL, "is not written \"YYYY-MM-DD\"");
    refused("birth_date < 20240101", "RULE_TYPE", 1, 14, "20240101",
            "'birth_date' is a date: write it as a string \"YYYY-MM-DD\"");
    refused("birth_date in {\"2024-01-01\"}", "RULE_TYPE", 1, 12, "in",
            "operator 'in' does not apply to date 'birth_date'");
    fxb_rule_free(ok("birth_date == \"2000-02-29\" || birth_date > \"1600-02-29\""));
    /* set */
    refused("tags == \"x\"", "RULE_TYPE", 1, 6,
            "==", "operator '==' does not apply to set 'tags': use contains");
    refused("tags >= \"x\"", "RULE_TYPE", 1, 6, ">=", "operator '>=' does not apply to set 'tags'");
    refused("tags in {\"x\"}", "RULE_TYPE", 1, 6, "in",
            "operator 'in' does not apply to set 'tags'");
    /* only a bool stands alone */
    refused("age", "RULE_TYPE", 1, 1, "age", "'age' is an int: only a bool stands alone");
    refused("veteran && !district", "RULE_TYPE", 1, 13, "district",
            "'district' is an enum: only a bool stands alone");
    refused("(tags)", "RULE_TYPE", 1, 2, "tags", "'tags' is a set: only a bool stands alone");
    refused("birth_date", "RULE_TYPE", 1, 1, "birth_date", "'birth_date' is a date");
}

static void test_age_needs_a_birth_date_in_the_schema(void **state)
{
    (void)state;
    fxb_attr only_age[] = {
        {.name = "age", .subject = P, .type = FXB_ATTR_INT, .min = 0, .max = 150, .derived = true},
    };
    fxb_schema s = {.attrs = only_age, .n_attrs = 1};
    fxb_rule *r = NULL;
    fxb_rule_error where;
    fxb_err err;
    assert_int_equal(fxb_rule_compile(&s, P, "age >= 60", &r, &where, &err), FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "RULE_TYPE");
    assert_non_null(strstr(where.message, "derived"));
    assert_null(r);
    /* where and err are optional */
    assert_int_equal(fxb_rule_compile(&s, P, "age >= 60", &r, NULL, NULL), FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_rule_compile(&schema, P, "age >= 60", NULL, NULL, &err), FXB_INTERNAL);
    assert_int_equal(fxb_rule_compile(NULL, P, "age >= 60", &r, NULL, &err), FXB_INTERNAL);
    assert_int_equal(fxb_rule_compile(&schema, P, NULL, &r, &where, &err), FXB_INVALID_ARGUMENT);
    assert_string_equal(where.message, "the rule is empty");
}

static void test_columns_count_characters_across_lines(void **state)
{
    (void)state;
    refused("district == \"红旗区\" &&\n  tags contains \"低保\" &&\n  district == \"红旗\"",
            "RULE_TYPE", 3, 15, "\"红旗\"",
            "'district' is an enum: '红旗' is not one of its values");
    /* 24, not the byte offset 30 */
    refused("tags contains \"低保户\" && agee > 1", "RULE_TYPE", 1, 24, "agee",
            "unknown attribute 'agee'");
    refused("tags contains \"低保户\"\n\t&&\t!agee", "RULE_TYPE", 2, 6, "agee",
            "unknown attribute");
    refused("tags contains \"低保户\" &&\r\n  age >=", "RULE_SYNTAX", 2, 9, "",
            "expected a literal after '>='");
    refused("(\n(\n veteran &&\n district == \"红旗区\")", "RULE_SYNTAX", 4, 20, "",
            "unexpected end of rule: '(' at 1:1 is not closed");
}

/* --- limits ---------------------------------------------------------------------------------- */

static char *repeat_join(const char *item, const char *sep, int n)
{
    size_t len = (strlen(item) + strlen(sep)) * (size_t)n + 1;
    char *s = malloc(len);
    assert_non_null(s);
    s[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i > 0)
            strcat(s, sep);
        strcat(s, item);
    }
    return s;
}

static void test_the_rule_is_at_most_2000_bytes(void **state)
{
    (void)state;
    char text[2100];
    memset(text, ' ', sizeof text);
    memcpy(text, "veteran", 7);
    text[2000] = '\0';
    fxb_rule_free(ok(text));
    text[2000] = 'x';
    text[2001] = '\0';
    refused(text, "RULE_SYNTAX", 1, 2001, "x", "the rule is too long: at most 2000 bytes");
    /* counted in bytes, reported in characters */
    memset(text, ' ', sizeof text);
    const char *head = "tags contains \"低保户\" ||\n";
    memcpy(text, head, strlen(head));
    memcpy(text + 100, "veteran", 7);
    text[2000] = '\0';
    fxb_rule_free(ok(text));
    text[2000] = '!';
    text[2001] = '\0';
    refused(text, "RULE_SYNTAX", 2, 2000 - (uint32_t)strlen(head) + 1, "!", "too long");
}

static void test_a_rule_has_at_most_64_conditions(void **state)
{
    (void)state;
    char *s = repeat_join("veteran", " || ", 64);
    fxb_rule *r = ok(s);
    assert_int_equal(fxb_rule_conditions(r), 64);
    fxb_rule_free(r);
    free(s);
    s = repeat_join("veteran", " || ", 65);
    refused(s, "RULE_SYNTAX", 1, 64 * 11 + 1, "veteran",
            "too many conditions: a rule has at most 64");
    free(s);
}

static void test_a_rule_nests_at_most_32_levels(void **state)
{
    (void)state;
    char text[1200];
    /* 32 parentheses */
    snprintf(text, sizeof text, "%.32s%s%.32s", "((((((((((((((((((((((((((((((((((((((((",
             "veteran", "))))))))))))))))))))))))))))))))))))))))");
    fxb_rule_free(ok(text));
    snprintf(text, sizeof text, "%.33s%s%.33s", "((((((((((((((((((((((((((((((((((((((((",
             "veteran", "))))))))))))))))))))))))))))))))))))))))");
    refused(text, "RULE_SYNTAX", 1, 33, "(", "the rule nests too deep: at most 32 levels");
    /* 32 negations */
    snprintf(text, sizeof text, "%.32sveteran", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    fxb_rule_free(ok(text));
    snprintf(text, sizeof text, "%.33sveteran", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    refused(text, "RULE_SYNTAX", 1, 33, "!", "nests too deep");
    /* both count */
    char *s = repeat_join("!(", "", 16);
    snprintf(text, sizeof text, "%sveteran%.16s", s, "))))))))))))))))))))))))");
    fxb_rule_free(ok(text));
    free(s);
    s = repeat_join("(!", "", 16);
    snprintf(text, sizeof text, "%s(veteran)%.16s", s, "))))))))))))))))))))))))");
    refused(text, "RULE_SYNTAX", 1, 33, "(", "nests too deep");
    free(s);
    /* levels are nesting, not length: siblings do not add up */
    s = repeat_join("(((((((((((((((((((((((((((((((veteran)))))))))))))))))))))))))))))))", " && ",
                    3);
    fxb_rule_free(ok(s));
    free(s);
    /* 1,000 open parentheses stop at the 33rd */
    memset(text, '(', 1000);
    text[1000] = '\0';
    refused(text, "RULE_SYNTAX", 1, 33, "(", "nests too deep");
}

static void test_an_in_list_has_at_most_64_values(void **state)
{
    (void)state;
    char text[1024];
    size_t o = (size_t)snprintf(text, sizeof text, "age in {");
    for (int i = 0; i < 64; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, "%s%d", i ? ", " : "", i);
    snprintf(text + o, sizeof text - o, "}");
    fxb_rule *r = ok(text);
    assert_int_equal(fxb_rule_root(r)->n_values, 64);
    fxb_rule_free(r);
    snprintf(text + o, sizeof text - o, ", 64}");
    refused(text, "RULE_SYNTAX", 1, (uint32_t)o + 3, "64",
            "too many values: an 'in' list has at most 64");
    /* duplicates count as written */
    o = (size_t)snprintf(text, sizeof text, "age in {");
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, "%s7", i ? ", " : "");
    snprintf(text + o, sizeof text - o, "}");
    refused(text, "RULE_SYNTAX", 1, (uint32_t)o, "7", "too many values");
}

static void test_an_empty_rule_is_refused(void **state)
{
    (void)state;
    refused("", "RULE_SYNTAX", 1, 1, "", "the rule is empty");
    refused("   \n\t  ", "RULE_SYNTAX", 2, 4, "", "the rule is empty");
    refused("\r\n", "RULE_SYNTAX", 2, 1, "", "the rule is empty");
}

/* --- hostile input ---------------------------------------------------------------------------- */

static void test_control_characters_are_refused_and_never_echoed(void **state)
{
    (void)state;
    refused("age >= 60 \x01", "RULE_SYNTAX", 1, 11, "?",
            "control character U+0001 is not allowed in a rule");
    refused("age >= 60\x1b[2J", "RULE_SYNTAX", 1, 10, "?", "control character U+001B");
    refused("age >= 60 \x7f", "RULE_SYNTAX", 1, 11, "?", "control character U+007F");
    refused("veteran\r", "RULE_SYNTAX", 1, 8, "?", "control character U+000D");
    refused("veteran\v", "RULE_SYNTAX", 1, 8, "?", "control character U+000B");
    refused("veteran\f", "RULE_SYNTAX", 1, 8, "?", "control character U+000C");
    refused("tags contains \"a\x07z\"", "RULE_SYNTAX", 1, 17, "?",
            "control character U+0007 is not allowed in a string");
    refused("tags contains \"a\tz\"", "RULE_SYNTAX", 1, 17, "?", "control character U+0009");
    refused("tags contains \"a\xc2\x85z\"", "RULE_SYNTAX", 1, 17, "?", "control character U+0085");
    /* Trojan Source: bidirectional overrides hide what a rule says */
    refused("tags contains \"a\xe2\x80\xaez\"", "RULE_SYNTAX", 1, 17, "?",
            "control character U+202E");
    refused("veteran \xe2\x81\xa6&& disabled", "RULE_SYNTAX", 1, 9, "?",
            "control character U+2066");
    refused("\xef\xbb\xbfveteran", "RULE_SYNTAX", 1, 1, "?", "control character U+FEFF");
}

static void test_invalid_utf8_is_refused(void **state)
{
    (void)state;
    refused("veteran && \xff", "RULE_SYNTAX", 1, 12, "?", "invalid UTF-8 (byte 0xFF)");
    refused("tags contains \"\xe7\xba\"", "RULE_SYNTAX", 1, 16, "?",
            "invalid UTF-8 (byte 0xE7) in a string");
    refused("tags contains \"\xc0\xaf\"", "RULE_SYNTAX", 1, 16, "?",
            "invalid UTF-8"); /* overlong */
    refused("tags contains \"\xe0\x80\xaf\"", "RULE_SYNTAX", 1, 16, "?",
            "invalid UTF-8"); /* overlong */
    refused("tags contains \"\xed\xa0\x80\"", "RULE_SYNTAX", 1, 16, "?",
            "invalid UTF-8"); /* surrogate */
    refused("tags contains \"\xf4\x90\x80\x80\"", "RULE_SYNTAX", 1, 16, "?",
            "invalid UTF-8"); /* > U+10FFFF */
    refused("tags contains \"\x80\"", "RULE_SYNTAX", 1, 16, "?", "invalid UTF-8");
    refused("tags contains \"ok\xe7\"", "RULE_SYNTAX", 1, 18, "?", "invalid UTF-8");
    /* 4-byte characters are fine and are one column */
    refused("tags contains \"\xf0\x9f\x8e\x86\" && agee", "RULE_TYPE", 1, 22, "agee",
            "unknown attribute 'agee'");
}

static void test_long_names_are_refused_with_a_bounded_echo(void **state)
{
    (void)state;
    char *name = malloc(10001);
    assert_non_null(name);
    memset(name, 'a', 10000);
    name[10000] = '\0';
    /* 10,000 characters: too long before anything is read */
    refused(name, "RULE_SYNTAX", 1, 2001, NULL, "the rule is too long");
    /* 1,500 characters: a name is at most 32 */
    name[1500] = '\0';
    refused(name, "RULE_SYNTAX", 1, 1, NULL, "a name is at most 32 characters");
    fxb_rule_error where;
    fxb_rule *r = NULL;
    fxb_err err;
    assert_int_equal(fxb_rule_compile(&schema, P, name, &r, &where, &err), FXB_INVALID_ARGUMENT);
    assert_true(strlen(where.token) <= 60);
    assert_int_equal(strncmp(where.token, "aaaaaaaaaa", 10), 0);
    assert_non_null(strstr(where.token, "..."));
    free(name);
    /* 33 characters is one too many, 32 is an unknown attribute */
    refused("abcdefghijklmnopqrstuvwxyz0123456", "RULE_SYNTAX", 1, 1, NULL,
            "at most 32 characters");
    refused("abcdefghijklmnopqrstuvwxyz012345", "RULE_TYPE", 1, 1,
            "abcdefghijklmnopqrstuvwxyz012345", "unknown attribute");
    /* a long Chinese echo is cut at a character boundary */
    char text[400] = "district == \"";
    for (int i = 0; i < 40; i++)
        strcat(text, "区");
    strcat(text, "\"");
    assert_int_equal(fxb_rule_compile(&schema, P, text, &r, &where, &err), FXB_INVALID_ARGUMENT);
    assert_true(strlen(where.token) <= 60);
    size_t n = strlen(where.token);
    assert_string_equal(where.token + n - 3, "...");
    assert_int_equal((n - 4) % 3, 0); /* the quote, whole 3-byte characters, the dots */
}

/* --- evaluation ----------------------------------------------------------------------------------
 */

/* Sets a bool attribute to T / F or leaves it missing (U). */
static void set_truth(profile *p, const char *name, fxb_truth t)
{
    if (t != FXB_TRUTH_UNKNOWN)
        set_i(p, name, t == FXB_TRUE);
}

static void test_and_or_not_follow_kleene(void **state)
{
    (void)state;
    const fxb_truth T = FXB_TRUE, F = FXB_FALSE, U = FXB_TRUTH_UNKNOWN;
    const fxb_truth vals[3] = {T, F, U};
    /* [a][b] in the order T, F, U */
    const fxb_truth and_table[3][3] = {{T, F, U}, {F, F, F}, {U, F, U}};
    const fxb_truth or_table[3][3] = {{T, T, T}, {T, F, U}, {T, U, U}};
    const fxb_truth not_table[3] = {F, T, U};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            profile p = {0};
            set_truth(&p, "veteran", vals[i]);
            set_truth(&p, "disabled", vals[j]);
            assert_int_equal(eval_on("veteran && disabled", &p, TODAY), and_table[i][j]);
            assert_int_equal(eval_on("veteran || disabled", &p, TODAY), or_table[i][j]);
            assert_int_equal(eval_on("!(veteran && disabled)", &p, TODAY),
                             not_table[and_table[i][j] == T   ? 0
                                       : and_table[i][j] == F ? 1
                                                              : 2]);
        }
        profile p = {0};
        set_truth(&p, "veteran", vals[i]);
        assert_int_equal(eval_on("!veteran", &p, TODAY), not_table[i]);
        assert_int_equal(eval_on("!!veteran", &p, TODAY), vals[i]);
        assert_int_equal(eval_on("veteran == true", &p, TODAY), vals[i]);
        assert_int_equal(eval_on("veteran != true", &p, TODAY), not_table[i]);
        assert_int_equal(eval_on("veteran == false", &p, TODAY), not_table[i]);
    }
}

static void test_missing_values_are_unknown_so_negation_grants_nothing(void **state)
{
    (void)state;
    profile p = {0};
    assert_int_equal(eval_on("!receives_pension", &p, TODAY), FXB_TRUTH_UNKNOWN);
    assert_int_equal(eval_on("age >= 80", &p, TODAY), FXB_TRUTH_UNKNOWN);
    assert_int_equal(eval_on("!(age >= 80)", &p, TODAY), FXB_TRUTH_UNKNOWN);
    assert_int_equal(eval_on("district != \"红旗区\"", &p, TODAY), FXB_TRUTH_UNKNOWN);
    assert_int_equal(eval_on("tags contains \"低保户\"", &p, TODAY), FXB_TRUTH_UNKNOWN);
    assert_int_equal(eval_on("children in {1, 2}", &p, TODAY), FXB_TRUTH_UNKNOWN);
    /* UNKNOWN || TRUE is TRUE; UNKNOWN && FALSE is FALSE */
    set_i(&p, "children", 3);
    assert_int_equal(eval_on("receives_pension || children == 3", &p, TODAY), FXB_TRUE);
    assert_int_equal(eval_on("receives_pension && children == 4", &p, TODAY), FXB_FALSE);
    /* a birth date that is not a date gives an unknown age */
    profile q = {0};
    set_i(&q, "birth_date", 20230229);
    assert_int_equal(eval_on("age >= 0", &q, TODAY), FXB_TRUTH_UNKNOWN);
}

static void test_each_type_evaluates_on_its_stored_form(void **state)
{
    (void)state;
    static const char *const tags[] = {"退役军人", "低保户"};
    profile p = {0};
    set_i(&p, "district", 1); /* 卫滨区 */
    set_i(&p, "birth_date", 19440301);
    set_i(&p, "receives_pension", 0);
    set_i(&p, "children", 3);
    set_members(&p, "tags", tags, 2);
    const struct {
        const char *rule;
        fxb_truth want;
    } cases[] = {
        {"district == \"卫滨区\"", FXB_TRUE},
        {"district != \"卫滨区\"", FXB_FALSE},
        {"district in {\"红旗区\", \"卫滨区\"}", FXB_TRUE},
        {"district in {\"红旗区\", \"牧野区\"}", FXB_FALSE},
        {"birth_date < \"1944-03-01\"", FXB_FALSE},
        {"birth_date <= \"1944-03-01\"", FXB_TRUE},
        {"birth_date == \"1944-03-01\"", FXB_TRUE},
        {"birth_date > \"1944-02-29\"", FXB_TRUE},
        {"birth_date >= \"1944-03-02\"", FXB_FALSE},
        {"birth_date != \"1944-03-01\"", FXB_FALSE},
        {"age == 81", FXB_TRUE}, /* on 2025-06-15 */
        {"age >= 80", FXB_TRUE},
        {"age > 81", FXB_FALSE},
        {"age < 82", FXB_TRUE},
        {"age <= 80", FXB_FALSE},
        {"age != 81", FXB_FALSE},
        {"age in {60, 81, 90}", FXB_TRUE},
        {"age in {60, 80, 90}", FXB_FALSE},
        {"receives_pension", FXB_FALSE},
        {"!receives_pension", FXB_TRUE},
        {"receives_pension == false", FXB_TRUE},
        {"children > 2", FXB_TRUE},
        {"children in {0, 1, 2}", FXB_FALSE},
        {"children in {3}", FXB_TRUE},
        {"tags contains \"低保户\"", FXB_TRUE},
        {"tags contains \"低保\"", FXB_FALSE},
        {"age >= 80 && district in {\"红旗区\", \"卫滨区\"} && !receives_pension", FXB_TRUE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (eval_on(cases[i].rule, &p, TODAY) != cases[i].want)
            fail_msg("%s: want %d", cases[i].rule, cases[i].want);
    /* a bool stored as any non-zero is true */
    profile b = {0};
    set_i(&b, "veteran", 7);
    assert_int_equal(eval_on("veteran == true", &b, TODAY), FXB_TRUE);
    /* an empty set contains nothing */
    profile s = {0};
    set_members(&s, "tags", NULL, 0);
    assert_int_equal(eval_on("tags contains \"低保户\"", &s, TODAY), FXB_FALSE);
}

static void test_age_is_computed_from_birth_date_on_the_day(void **state)
{
    (void)state;
    profile p = {0};
    set_i(&p, "birth_date", 20000229);
    assert_int_equal(eval_on("age == 22", &p, 20230228), FXB_TRUE);
    assert_int_equal(eval_on("age == 23", &p, 20230301), FXB_TRUE);
    assert_int_equal(eval_on("age == 24", &p, 20240229), FXB_TRUE);
    assert_int_equal(eval_on("age == 23", &p, 20240228), FXB_TRUE);
    assert_int_equal(fxb_rule_age(20000229, 20230228), 22);
    assert_int_equal(fxb_rule_age(20000229, 20230301), 23);
    assert_int_equal(fxb_rule_age(20000229, 20240228), 23);
    assert_int_equal(fxb_rule_age(20000229, 20240229), 24);
    assert_int_equal(fxb_rule_age(19440615, 20250614), 80);
    assert_int_equal(fxb_rule_age(19440615, 20250615), 81);
    assert_int_equal(fxb_rule_age(20250615, 20250615), 0);
    assert_int_equal(fxb_rule_age(20251231, 20250615), 0); /* after today: 0 */
    assert_int_equal(fxb_rule_age(19991231, 20000101), 0);
    assert_int_equal(fxb_rule_age(19000101, 20250615), 125);
}

static void test_explanations_give_each_condition_its_own_truth(void **state)
{
    (void)state;
    profile p = {0};
    set_i(&p, "birth_date", 19400101);
    set_i(&p, "district", 1);
    set_i(&p, "children", 1);
    fxb_rule *r = ok("children > 2 && age >= 80 || district in {\"红旗区\", \"卫滨区\"} && "
                     "!receives_pension");
    fxb_profile_view view = {profile_get, &p};
    fxb_truth held[FXB_RULE_CONDITIONS_MAX];
    memset(held, 0x55, sizeof held);
    assert_int_equal(fxb_rule_eval(r, &view, TODAY, held), FXB_TRUTH_UNKNOWN);
    /* the first condition decides its conjunction, yet the second is still explained */
    assert_int_equal(held[0], FXB_FALSE);
    assert_int_equal(held[1], FXB_TRUE);
    assert_int_equal(held[2], FXB_TRUE);
    assert_int_equal(held[3], FXB_TRUTH_UNKNOWN); /* its own truth, not its negation */
    const fxb_rule_node *n = fxb_rule_root(r);
    assert_string_equal(n->a->a->source, "children > 2");
    assert_string_equal(n->a->b->source, "age >= 80");
    assert_string_equal(n->b->a->source, "district in {\"红旗区\", \"卫滨区\"}");
    assert_string_equal(n->b->b->a->source, "receives_pension");
    /* without explanations the evaluator may stop early */
    p.calls = 0;
    assert_int_equal(fxb_rule_eval(r, &view, TODAY, NULL), FXB_TRUTH_UNKNOWN);
    assert_int_equal(p.calls, 3);
    p.calls = 0;
    assert_int_equal(fxb_rule_eval(r, &view, TODAY, held), FXB_TRUTH_UNKNOWN);
    assert_int_equal(p.calls, 4);
    /* no view: everything unknown */
    assert_int_equal(fxb_rule_eval(r, NULL, TODAY, held), FXB_TRUTH_UNKNOWN);
    assert_int_equal(held[0], FXB_TRUTH_UNKNOWN);
    assert_int_equal(fxb_rule_eval(NULL, &view, TODAY, NULL), FXB_TRUTH_UNKNOWN);
    fxb_rule_free(r);
    fxb_rule_free(NULL);
    assert_null(fxb_rule_root(NULL));
    assert_int_equal(fxb_rule_conditions(NULL), 0);
}

/* --- age ranges
 * ------------------------------------------------------------------------------------- */

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static uint32_t next_day(uint32_t d)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = (int)(d / 10000), m = (int)(d / 100 % 100), day = (int)(d % 100);
    int last = m == 2 && is_leap(y) ? 29 : days[m - 1];
    if (day < last)
        return d + 1;
    if (m < 12)
        return (uint32_t)(y * 10000 + (m + 1) * 100 + 1);
    return (uint32_t)((y + 1) * 10000 + 101);
}

static bool holds(fxb_rule_op op, int64_t age, int64_t years)
{
    switch (op) {
    case FXB_OP_EQ:
    case FXB_OP_NE: /* the range is EQ's; the caller inverts */
        return age == years;
    case FXB_OP_LT:
        return age < years;
    case FXB_OP_LE:
        return age <= years;
    case FXB_OP_GT:
        return age > years;
    case FXB_OP_GE:
        return age >= years;
    }
    return false;
}

static void test_age_ranges_hold_exactly_the_matching_birth_dates(void **state)
{
    (void)state;
    enum { MAX_DAYS = 40000 };
    uint32_t *dates = malloc(MAX_DAYS * sizeof *dates);
    int64_t *ages = malloc(MAX_DAYS * sizeof *ages);
    assert_non_null(dates);
    assert_non_null(ages);
    size_t n = 0;
    for (uint32_t d = 19200101; d <= 20261231; d = next_day(d))
        dates[n++] = d;
    const uint32_t todays[] = {20240229, 20250228, 20250301, 20240228, 20231231, 20260101};
    for (size_t t = 0; t < sizeof todays / sizeof todays[0]; t++) {
        for (size_t i = 0; i < n; i++)
            ages[i] = fxb_rule_age(dates[i], todays[t]);
        for (int op = FXB_OP_EQ; op <= FXB_OP_GE; op++) {
            for (int64_t years = -2; years <= 112; years++) {
                uint32_t lo = 1, hi = 0;
                bool any = fxb_rule_age_range((fxb_rule_op)op, years, todays[t], &lo, &hi);
                for (size_t i = 0; i < n; i++) {
                    bool in = any && lo <= dates[i] && dates[i] <= hi;
                    if (in != holds((fxb_rule_op)op, ages[i], years))
                        fail_msg("today %u op %d years %lld: birth %u age %lld, range %d "
                                 "%u..%u",
                                 todays[t], op, (long long)years, dates[i], (long long)ages[i], any,
                                 lo, hi);
                }
            }
        }
    }
    free(dates);
    free(ages);
}

static void test_age_ranges_use_open_ends_and_report_impossible_ones(void **state)
{
    (void)state;
    uint32_t lo, hi;
    assert_true(fxb_rule_age_range(FXB_OP_GE, 80, 20240229, &lo, &hi));
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 19440229);
    assert_true(fxb_rule_age_range(FXB_OP_GE, 80, 20250228, &lo, &hi));
    assert_int_equal(hi, 19450228);
    assert_true(fxb_rule_age_range(FXB_OP_GE, 81, 20250228, &lo, &hi));
    assert_int_equal(hi, 19440228); /* born 1944-02-29: 81 only on 1 March */
    assert_true(fxb_rule_age_range(FXB_OP_LT, 18, 20250615, &lo, &hi));
    assert_int_equal(lo, 20070616);
    assert_int_equal(hi, 99991231);
    assert_true(fxb_rule_age_range(FXB_OP_EQ, 60, 20250615, &lo, &hi));
    assert_int_equal(lo, 19640616);
    assert_int_equal(hi, 19650615);
    assert_true(fxb_rule_age_range(FXB_OP_NE, 60, 20250615, &lo, &hi));
    assert_int_equal(lo, 19640616);
    assert_int_equal(hi, 19650615);
    assert_true(fxb_rule_age_range(FXB_OP_GE, 0, 20250615, &lo, &hi));
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 99991231);
    assert_false(fxb_rule_age_range(FXB_OP_LT, 0, 20250615, &lo, &hi));
    assert_false(fxb_rule_age_range(FXB_OP_LE, -1, 20250615, &lo, &hi));
    assert_false(fxb_rule_age_range(FXB_OP_EQ, -1, 20250615, &lo, &hi));
    assert_false(fxb_rule_age_range(FXB_OP_GE, 3000, 20250615, &lo, &hi));
    assert_false(fxb_rule_age_range(FXB_OP_GT, INT64_MAX, 20250615, &lo, &hi));
    assert_true(fxb_rule_age_range(FXB_OP_LT, INT64_MAX, 20250615, &lo, &hi));
    assert_true(fxb_rule_age_range(FXB_OP_GE, INT64_MIN, 20250615, &lo, &hi));
}

/* --- fuzz
 * -------------------------------------------------------------------------------------------- */

/* Token vocabulary with an independent acceptor: the grammar and types of
 * rule.h re-stated over token kinds, so that every random sequence has a
 * known verdict. */
enum fk {
    K_ATTR,
    K_OP,
    K_IN,
    K_CONTAINS,
    K_LB,
    K_RB,
    K_COMMA,
    K_LP,
    K_RP,
    K_NOT,
    K_AND,
    K_OR,
    K_LIT
};
enum lk { L_INT, L_STR, L_BOOL };

typedef struct ftok {
    const char *text;
    enum fk kind;
    int attr; /* K_ATTR: index into fuzz_attrs; K_OP: 1 when ordering */
    enum lk lit;
    int64_t ival;
} ftok;

static const struct {
    const char *name;
    fxb_attr_type type;
    int64_t min, max;
    bool known;
} fuzz_attrs[] = {
    {"age", FXB_ATTR_INT, 0, 150, true},     {"children", FXB_ATTR_INT, 0, 20, true},
    {"district", FXB_ATTR_ENUM, 0, 0, true}, {"birth_date", FXB_ATTR_DATE, 0, 0, true},
    {"veteran", FXB_ATTR_BOOL, 0, 0, true},  {"tags", FXB_ATTR_SET, 0, 0, true},
    {"agee", FXB_ATTR_INT, 0, 0, false},     {"employees", FXB_ATTR_INT, 0, 0, false},
};

static const ftok vocab[] = {
    {"age", K_ATTR, 0, 0, 0},
    {"children", K_ATTR, 1, 0, 0},
    {"district", K_ATTR, 2, 0, 0},
    {"birth_date", K_ATTR, 3, 0, 0},
    {"veteran", K_ATTR, 4, 0, 0},
    {"tags", K_ATTR, 5, 0, 0},
    {"agee", K_ATTR, 6, 0, 0},
    {"employees", K_ATTR, 7, 0, 0},
    {"==", K_OP, 0, 0, 0},
    {"!=", K_OP, 0, 0, 0},
    {"<", K_OP, 1, 0, 0},
    {"<=", K_OP, 1, 0, 0},
    {">", K_OP, 1, 0, 0},
    {">=", K_OP, 1, 0, 0},
    {"in", K_IN, 0, 0, 0},
    {"contains", K_CONTAINS, 0, 0, 0},
    {"{", K_LB, 0, 0, 0},
    {"}", K_RB, 0, 0, 0},
    {",", K_COMMA, 0, 0, 0},
    {"(", K_LP, 0, 0, 0},
    {")", K_RP, 0, 0, 0},
    {"!", K_NOT, 0, 0, 0},
    {"&&", K_AND, 0, 0, 0},
    {"||", K_OR, 0, 0, 0},
    {"5", K_LIT, 0, L_INT, 5},
    {"80", K_LIT, 0, L_INT, 80},
    {"-1", K_LIT, 0, L_INT, -1},
    {"\"红旗区\"", K_LIT, 0, L_STR, 0},
    {"\"卫滨区\"", K_LIT, 0, L_STR, 0},
    {"\"红旗\"", K_LIT, 0, L_STR, 1},
    {"\"2024-02-29\"", K_LIT, 0, L_STR, 2},
    {"\"2023-02-29\"", K_LIT, 0, L_STR, 3},
    {"true", K_LIT, 0, L_BOOL, 1},
    {"false", K_LIT, 0, L_BOOL, 0},
};
#define N_VOCAB (sizeof vocab / sizeof vocab[0])

typedef struct acceptor {
    const ftok *t[64];
    size_t n, i;
    int depth, conds;
} acceptor;

static enum fk peek(const acceptor *a)
{
    return a->i < a->n ? a->t[a->i]->kind : (enum fk) - 1;
}

/* Whether literal l fits an attribute of type ty (ival of strings: 0 a
 * district value, 1 an unknown string, 2 a real date, 3 an impossible one). */
static bool fits(int at, const ftok *l)
{
    switch (fuzz_attrs[at].type) {
    case FXB_ATTR_INT:
        return l->lit == L_INT && l->ival >= fuzz_attrs[at].min && l->ival <= fuzz_attrs[at].max;
    case FXB_ATTR_BOOL:
        return l->lit == L_BOOL;
    case FXB_ATTR_ENUM:
        return l->lit == L_STR && l->ival == 0;
    case FXB_ATTR_DATE:
        return l->lit == L_STR && l->ival == 2;
    case FXB_ATTR_SET:
        return false;
    }
    return false;
}

static bool acc_or(acceptor *a);

static bool acc_cond(acceptor *a)
{
    int at = a->t[a->i++]->attr;
    if (!fuzz_attrs[at].known)
        return false;
    fxb_attr_type ty = fuzz_attrs[at].type;
    a->conds++;
    switch (peek(a)) {
    case K_OP: {
        bool ordering = a->t[a->i++]->attr == 1;
        if (ty == FXB_ATTR_SET || (ordering && (ty == FXB_ATTR_BOOL || ty == FXB_ATTR_ENUM)))
            return false;
        if (peek(a) != K_LIT)
            return false;
        return fits(at, a->t[a->i++]);
    }
    case K_IN:
        a->i++;
        if (ty != FXB_ATTR_INT && ty != FXB_ATTR_ENUM)
            return false;
        if (peek(a) != K_LB)
            return false;
        a->i++;
        for (;;) {
            if (peek(a) != K_LIT || !fits(at, a->t[a->i++]))
                return false;
            if (peek(a) == K_COMMA) {
                a->i++;
                continue;
            }
            if (peek(a) != K_RB)
                return false;
            a->i++;
            return true;
        }
    case K_CONTAINS:
        a->i++;
        if (ty != FXB_ATTR_SET || peek(a) != K_LIT || a->t[a->i]->lit != L_STR)
            return false;
        a->i++;
        return true;
    default:
        return ty == FXB_ATTR_BOOL;
    }
}

static bool acc_unary(acceptor *a)
{
    if (peek(a) == K_NOT) {
        a->i++;
        if (++a->depth > FXB_RULE_DEPTH_MAX)
            return false;
        bool r = acc_unary(a);
        a->depth--;
        return r;
    }
    if (peek(a) == K_LP) {
        a->i++;
        if (++a->depth > FXB_RULE_DEPTH_MAX || !acc_or(a) || peek(a) != K_RP)
            return false;
        a->i++;
        a->depth--;
        return true;
    }
    if (peek(a) == K_ATTR)
        return acc_cond(a);
    return false;
}

static bool acc_and(acceptor *a)
{
    if (!acc_unary(a))
        return false;
    while (peek(a) == K_AND) {
        a->i++;
        if (!acc_unary(a))
            return false;
    }
    return true;
}

static bool acc_or(acceptor *a)
{
    if (!acc_and(a))
        return false;
    while (peek(a) == K_OR) {
        a->i++;
        if (!acc_and(a))
            return false;
    }
    return true;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static const ftok *vocab_of(enum fk k)
{
    for (;;) {
        const ftok *t = &vocab[rnd(N_VOCAB)];
        if (t->kind == k)
            return t;
    }
}

static const ftok *lit_for(int at);

/* A sequence shaped by the grammar (often well-typed), to mutate. */
static void gen(acceptor *a, int budget)
{
    if (a->n + 8 >= 60)
        return;
    uint32_t r = rnd(10);
    if (budget > 0 && r < 2) {
        gen(a, budget - 1);
        a->t[a->n++] = vocab_of(rnd(2) ? K_AND : K_OR);
        gen(a, budget - 1);
        return;
    }
    if (budget > 0 && r == 2) {
        a->t[a->n++] = vocab_of(K_NOT);
        gen(a, budget - 1);
        return;
    }
    if (budget > 0 && r == 3) {
        a->t[a->n++] = vocab_of(K_LP);
        gen(a, budget - 1);
        a->t[a->n++] = vocab_of(K_RP);
        return;
    }
    static const char *good[] = {"age", "children", "district", "birth_date", "veteran", "tags"};
    const ftok *at = NULL;
    for (size_t i = 0; i < N_VOCAB && at == NULL; i++)
        if (strcmp(vocab[i].text, good[rnd(6)]) == 0)
            at = &vocab[i];
    if (at == NULL)
        at = vocab_of(K_ATTR);
    a->t[a->n++] = at;
    switch (fuzz_attrs[at->attr].type) {
    case FXB_ATTR_BOOL:
        if (rnd(2)) {
            a->t[a->n++] = &vocab[8 + rnd(2)];
            a->t[a->n++] = lit_for(at->attr);
        }
        break;
    case FXB_ATTR_SET:
        a->t[a->n++] = vocab_of(K_CONTAINS);
        a->t[a->n++] = lit_for(at->attr);
        break;
    default:
        if (rnd(3) == 0) {
            a->t[a->n++] = vocab_of(K_IN);
            a->t[a->n++] = vocab_of(K_LB);
            int k = 1 + (int)rnd(3);
            for (int i = 0; i < k; i++) {
                if (i)
                    a->t[a->n++] = vocab_of(K_COMMA);
                a->t[a->n++] = lit_for(at->attr);
            }
            a->t[a->n++] = vocab_of(K_RB);
        } else {
            a->t[a->n++] =
                fuzz_attrs[at->attr].type == FXB_ATTR_ENUM ? &vocab[8 + rnd(2)] : vocab_of(K_OP);
            a->t[a->n++] = lit_for(at->attr);
        }
    }
}

/* A literal for attribute at: usually one that fits, sometimes any. */
static const ftok *lit_for(int at)
{
    const ftok *l = vocab_of(K_LIT);
    for (int i = 0; i < 50 && rnd(5) != 0; i++) {
        if (fuzz_attrs[at].type == FXB_ATTR_SET ? l->lit == L_STR : fits(at, l))
            return l;
        l = vocab_of(K_LIT);
    }
    return l;
}

static void test_random_token_sequences_never_crash_and_malformed_ones_are_refused(void **state)
{
    (void)state;
    static const char *const tags[] = {"低保户"};
    profile p = {0};
    set_i(&p, "birth_date", 19440229);
    set_i(&p, "district", 0);
    set_i(&p, "veteran", 1);
    set_members(&p, "tags", tags, 1);
    fxb_profile_view view = {profile_get, &p};
    static const char *const gaps[] = {" ", "\n", "  ", "\t", "\r\n"};
    int accepted = 0;
    for (int iter = 0; iter < 100000; iter++) {
        acceptor a = {0};
        if (iter % 2 == 0) {
            size_t n = 1 + rnd(14);
            for (size_t i = 0; i < n; i++)
                a.t[a.n++] = &vocab[rnd(N_VOCAB)];
        } else {
            gen(&a, 4);
            uint32_t m = rnd(4); /* 0: as generated; else replace / insert / delete */
            if (m == 1 && a.n > 0)
                a.t[rnd((uint32_t)a.n)] = &vocab[rnd(N_VOCAB)];
            else if (m == 2 && a.n < 63) {
                size_t at = rnd((uint32_t)a.n + 1);
                memmove(&a.t[at + 1], &a.t[at], (a.n - at) * sizeof a.t[0]);
                a.t[at] = &vocab[rnd(N_VOCAB)];
                a.n++;
            } else if (m == 3 && a.n > 1) {
                size_t at = rnd((uint32_t)a.n);
                memmove(&a.t[at], &a.t[at + 1], (a.n - at - 1) * sizeof a.t[0]);
                a.n--;
            }
        }
        char text[1024];
        size_t o = 0;
        for (size_t i = 0; i < a.n; i++)
            o += (size_t)snprintf(text + o, sizeof text - o, "%s%s", i ? gaps[rnd(5)] : "",
                                  a.t[i]->text);
        text[o] = '\0';
        bool want = a.n > 0 && acc_or(&a) && a.i == a.n;

        fxb_rule *r = NULL;
        fxb_rule_error where;
        fxb_err err;
        fxb_code rc = fxb_rule_compile(&schema, P, text, &r, &where, &err);
        if ((rc == FXB_OK) != want)
            fail_msg("%s: compiled %s (%s), the acceptor says %s", text, fxb_code_name(rc),
                     where.message, want ? "valid" : "invalid");
        if (rc == FXB_OK) {
            accepted++;
            assert_int_equal(fxb_rule_conditions(r), a.conds);
            fxb_truth held[FXB_RULE_CONDITIONS_MAX];
            fxb_truth t = fxb_rule_eval(r, &view, TODAY, held);
            assert_true(t == FXB_TRUE || t == FXB_FALSE || t == FXB_TRUTH_UNKNOWN);
            fxb_rule_free(r);
        } else {
            assert_null(r);
            assert_true(where.line >= 1 && where.col >= 1);
            assert_true(strlen(where.message) > 0);
        }
    }
    assert_true(accepted > 5000); /* the fuzz reaches valid rules too */
}

static void test_random_bytes_never_crash(void **state)
{
    (void)state;
    static const char alphabet[] = "agecontainsin_xyz0123456789-=!<>&|(){},\" \n\t\r\\\x01\x7f";
    static const char *const extra[] = {
        "\xe7\xba\xa2",     "\xff",         "\xc2\x85", "\xe2\x80\xae",
        "\xf0\x9f\x8e\x86", "\xed\xa0\x80", "veteran",  "age"};
    for (int iter = 0; iter < 20000; iter++) {
        char text[256];
        size_t o = 0, n = rnd(60);
        for (size_t i = 0; i < n && o < 200; i++) {
            if (rnd(8) == 0) {
                const char *e = extra[rnd(8)];
                memcpy(text + o, e, strlen(e));
                o += strlen(e);
            } else {
                text[o++] = alphabet[rnd(sizeof alphabet - 1)];
            }
        }
        text[o] = '\0';
        fxb_rule *r = NULL;
        fxb_rule_error where;
        fxb_err err;
        if (fxb_rule_compile(&schema, P, text, &r, &where, &err) == FXB_OK) {
            profile p = {0};
            fxb_profile_view view = {profile_get, &p};
            fxb_rule_eval(r, &view, TODAY, NULL);
            fxb_rule_free(r);
        } else {
            for (const char *c = where.token; *c; c++)
                assert_true((unsigned char)*c >= 0x20 && *c != 0x7f);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_form_of_condition_is_accepted),
        cmocka_unit_test(test_and_binds_tighter_than_or),
        cmocka_unit_test(test_not_binds_tightest),
        cmocka_unit_test(test_parentheses_override_precedence),
        cmocka_unit_test(test_chains_associate_to_the_left),
        cmocka_unit_test(test_conditions_are_numbered_in_source_order_with_their_source),
        cmocka_unit_test(test_values_are_stored_in_the_attribute_form),
        cmocka_unit_test(test_in_lists_are_sorted_and_distinct),
        cmocka_unit_test(test_syntax_errors_name_the_token_and_what_was_expected),
        cmocka_unit_test(test_strings_take_only_two_escapes_and_1_to_32_characters),
        cmocka_unit_test(test_integers_have_at_most_18_digits),
        cmocka_unit_test(test_unknown_attributes_and_other_subjects_are_refused),
        cmocka_unit_test(test_each_type_takes_its_operators_and_literals),
        cmocka_unit_test(test_age_needs_a_birth_date_in_the_schema),
        cmocka_unit_test(test_columns_count_characters_across_lines),
        cmocka_unit_test(test_the_rule_is_at_most_2000_bytes),
        cmocka_unit_test(test_a_rule_has_at_most_64_conditions),
        cmocka_unit_test(test_a_rule_nests_at_most_32_levels),
        cmocka_unit_test(test_an_in_list_has_at_most_64_values),
        cmocka_unit_test(test_an_empty_rule_is_refused),
        cmocka_unit_test(test_control_characters_are_refused_and_never_echoed),
        cmocka_unit_test(test_invalid_utf8_is_refused),
        cmocka_unit_test(test_long_names_are_refused_with_a_bounded_echo),
        cmocka_unit_test(test_and_or_not_follow_kleene),
        cmocka_unit_test(test_missing_values_are_unknown_so_negation_grants_nothing),
        cmocka_unit_test(test_each_type_evaluates_on_its_stored_form),
        cmocka_unit_test(test_age_is_computed_from_birth_date_on_the_day),
        cmocka_unit_test(test_explanations_give_each_condition_its_own_truth),
        cmocka_unit_test(test_age_ranges_hold_exactly_the_matching_birth_dates),
        cmocka_unit_test(test_age_ranges_use_open_ends_and_report_impossible_ones),
        cmocka_unit_test(test_random_token_sequences_never_crash_and_malformed_ones_are_refused),
        cmocka_unit_test(test_random_bytes_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
