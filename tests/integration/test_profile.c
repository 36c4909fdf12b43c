/* Profiles against a real Redis (db 11, flushed before each test): every
 * field of a record is checked against the schema and a bad record writes
 * nothing, values are stored typed with their provenance, an identical
 * record changes nothing and adds nothing to the change feed, the subject
 * ids are the identity service's and the enterprise service's, and the
 * schema cache reloads on a new rev without freeing a schema in use. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "auth/idnumber.h"
#include "auth/uscc.h"
#include "services/benefit/profile.h"
#include "services/enterprise/enterprise.h"
#include "store/crypto.h"
#include "store/datafile.h"

#define TEST_DB 11
#define NOW     1767225600000LL /* 2026-01-01 08:00 China time */
#define POLICE  "xx-police"

static char test_url[FXB_STORE_URL_MAX + 64];
static char key_dir[64];
static fxb_crypto *crypto;
static char id_a[19], id_b[19], uscc[19];

typedef struct fixture {
    fxb_store *s;
    fxb_arena a;
    const fxb_schema *schema;
} fixture;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void make_id(const char *d17, char out[19])
{
    memcpy(out, d17, 17);
    out[17] = fxb_idnumber_check_char(d17);
    out[18] = '\0';
}

static int group_setup(void **state)
{
    (void)state;
    if (fxb_test_redis_url(TEST_DB, test_url, sizeof test_url) != 0)
        return -1;
    fxb_err err;
    snprintf(key_dir, sizeof key_dir, "/tmp/fxb-profile-keys.XXXXXX");
    if (mkdtemp(key_dir) == NULL)
        return -1;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/data", key_dir);
    crypto = fxb_crypto_load(dir, true, &err);
    if (crypto == NULL) {
        fprintf(stderr, "keys: %s\n", err.message);
        return -1;
    }
    make_id("41070219400501123", id_a);
    make_id("41072119851111002", id_b);
    /* 9 1 410700 + organisation code 12345678-? + check */
    char c17[18] = "91410700"
                   "12345678";
    c17[16] = fxb_orgcode_check_char("12345678");
    c17[17] = '\0';
    memcpy(uscc, c17, 17);
    uscc[17] = fxb_uscc_check_char(c17);
    uscc[18] = '\0';
    if (fxb_uscc_check(uscc, &err) != FXB_OK || fxb_idnumber_check(id_a, 20260101, NULL, &err) ||
        fxb_idnumber_check(id_b, 20260101, NULL, &err)) {
        fprintf(stderr, "test subjects invalid: %s\n", err.reason);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    fxb_crypto_free(crypto);
    nftw(key_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static int each_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    fxb_store_options opt = {.url = test_url};
    fxb_err err;
    f->s = fxb_store_new(&opt, &err);
    if (f->s == NULL || !fxb_store_ping(f->s)) {
        fprintf(stderr, "cannot reach %s\n", test_url);
        fxb_store_free(f->s);
        free(f);
        return -1;
    }
    redisReply *r = fxb_store_command(f->s, &err, "FLUSHDB");
    if (r == NULL)
        return -1;
    freeReplyObject(r);
    const fxb_datafile *seed = fxb_datafile_find("benefit/schema.json");
    if (seed == NULL || fxb_profile_schema_store(f->s, seed->bytes, seed->len, &err) != FXB_OK ||
        fxb_profile_schema_acquire(f->s, &f->schema, &err) != FXB_OK) {
        fprintf(stderr, "seed schema: %s\n", err.message);
        return -1;
    }
    fxb_arena_init(&f->a, 0);
    *state = f;
    return 0;
}

static int each_teardown(void **state)
{
    fixture *f = *state;
    fxb_profile_schema_release(f->schema);
    fxb_arena_free(&f->a);
    fxb_store_free(f->s);
    free(f);
    return 0;
}

/* --- building records ---------------------------------------------------------- */

typedef struct rec {
    Fxb__V1__ProfileRecord r;
    Fxb__V1__AttributeValue v[16];
    Fxb__V1__AttributeValue *vp[16];
    Fxb__V1__StringSet sets[4];
    char *clear[8];
} rec;

static void person(rec *x, const char *id)
{
    memset(x, 0, sizeof *x);
    x->r = (Fxb__V1__ProfileRecord)FXB__V1__PROFILE_RECORD__INIT;
    x->r.subject_type = FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON;
    x->r.subject_case = FXB__V1__PROFILE_RECORD__SUBJECT_ID_NUMBER;
    x->r.id_number = (char *)id;
    x->r.values = x->vp;
    x->r.clear = x->clear;
}

static void enterprise(rec *x, const char *code)
{
    person(x, NULL);
    x->r.subject_type = FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
    x->r.subject_case = FXB__V1__PROFILE_RECORD__SUBJECT_CREDIT_CODE;
    x->r.credit_code = (char *)code;
}

static Fxb__V1__AttributeValue *add(rec *x, const char *name)
{
    Fxb__V1__AttributeValue *v = &x->v[x->r.n_values];
    *v = (Fxb__V1__AttributeValue)FXB__V1__ATTRIBUTE_VALUE__INIT;
    v->name = (char *)name;
    x->vp[x->r.n_values++] = v;
    return v;
}

static void add_int(rec *x, const char *name, int64_t i)
{
    Fxb__V1__AttributeValue *v = add(x, name);
    v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_INT_VALUE;
    v->int_value = i;
}

static void add_bool(rec *x, const char *name, bool b)
{
    Fxb__V1__AttributeValue *v = add(x, name);
    v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_BOOL_VALUE;
    v->bool_value = b;
}

static void add_text(rec *x, const char *name, const char *t)
{
    Fxb__V1__AttributeValue *v = add(x, name);
    v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_TEXT_VALUE;
    v->text_value = (char *)t;
}

static void add_set(rec *x, const char *name, char **members, size_t n)
{
    Fxb__V1__AttributeValue *v = add(x, name);
    Fxb__V1__StringSet *s = &x->sets[0];
    *s = (Fxb__V1__StringSet)FXB__V1__STRING_SET__INIT;
    s->members = members;
    s->n_members = n;
    v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_SET_VALUE;
    v->set_value = s;
}

static void add_clear(rec *x, const char *name)
{
    x->clear[x->r.n_clear++] = (char *)name;
}

/* --- helpers ----------------------------------------------------------------------- */

static bool upsert(fixture *f, const char *dept, rec *x, int64_t now)
{
    bool changed = true;
    Fxb__V1__RejectedRecord rej = FXB__V1__REJECTED_RECORD__INIT;
    fxb_err err;
    fxb_code rc =
        fxb_profile_upsert(f->s, crypto, f->schema, dept, &x->r, now, &changed, &rej, &f->a, &err);
    if (rc != FXB_OK)
        fail_msg("upsert refused: %s %s %s (%s)", rej.field, rej.reason, rej.message, err.message);
    return changed;
}

static void expect_rejected(fixture *f, const char *dept, rec *x, fxb_code code, const char *field,
                            const char *reason)
{
    bool changed = true;
    Fxb__V1__RejectedRecord rej = FXB__V1__REJECTED_RECORD__INIT;
    fxb_err err;
    fxb_code rc =
        fxb_profile_upsert(f->s, crypto, f->schema, dept, &x->r, NOW, &changed, &rej, &f->a, &err);
    if (rc != code || strcmp(rej.field, field) != 0 || strcmp(rej.reason, reason) != 0)
        fail_msg("expected %s %s (%d), got %d %s %s", field, reason, code, rc, rej.field,
                 rej.reason);
    assert_false(changed);
    /* never the value in the message */
    assert_null(strstr(rej.message, id_a));
    assert_null(strstr(err.message, id_a));
}

static const char *person_key(fixture *f, const char *id)
{
    char pid[FXB_PROFILE_SUBJECT_LEN + 1];
    fxb_err err;
    assert_int_equal(fxb_profile_person_id(crypto, id, pid, &err), FXB_OK);
    return fxb_arena_printf(&f->a, "{p:%s}:profile", pid);
}

static char *hget(fixture *f, const char *key, const char *field)
{
    fxb_err err;
    redisReply *r = fxb_store_command(f->s, &err, "HGET %s %s", key, field);
    assert_non_null(r);
    char *out = r->type == REDIS_REPLY_STRING ? fxb_arena_strndup(&f->a, r->str, r->len) : NULL;
    freeReplyObject(r);
    return out;
}

static long long integer(fixture *f, const char *c1, const char *c2)
{
    fxb_err err;
    redisReply *r = fxb_store_command(f->s, &err, "%s %s", c1, c2);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

static long long changes(fixture *f)
{
    return integer(f, "XLEN", "fxb:profile:changes");
}

static long long dbsize(fixture *f)
{
    fxb_err err;
    redisReply *r = fxb_store_command(f->s, &err, "DBSIZE");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* --- tests ----------------------------------------------------------------------------- */

static void test_values_are_stored_typed_with_provenance(void **state)
{
    fixture *f = *state;
    rec x;
    person(&x, id_a);
    add_text(&x, "district", "红旗区");
    add_text(&x, "birth_date", "1940-05-01");
    add_text(&x, "household_type", "urban");
    assert_true(upsert(f, POLICE, &x, NOW));
    const char *key = person_key(f, id_a);
    assert_string_equal(hget(f, key, "district"), "红旗区");
    assert_string_equal(hget(f, key, "birth_date"), "19400501");
    assert_string_equal(hget(f, key, "@district"), "xx-police 1767225600000");
    assert_string_equal(hget(f, key, "_rev"), "1");
    assert_string_equal(hget(f, key, "_updated_at_ms"), "1767225600000");

    /* an admin feeds any attribute; provenance is the schema's source */
    person(&x, id_a);
    add_int(&x, "children", 2);
    add_bool(&x, "low_income", true);
    add_int(&x, "disability_level", 0);
    assert_true(upsert(f, NULL, &x, NOW + 1));
    assert_string_equal(hget(f, key, "children"), "2");
    assert_string_equal(hget(f, key, "low_income"), "1");
    assert_string_equal(hget(f, key, "disability_level"), "0");
    assert_string_equal(hget(f, key, "@children"), "xx-health 1767225600001");
    assert_string_equal(hget(f, key, "@low_income"), "xx-civil-affairs 1767225600001");
    /* merge: what the record does not name is kept */
    assert_string_equal(hget(f, key, "district"), "红旗区");
    assert_string_equal(hget(f, key, "@district"), "xx-police 1767225600000");
    assert_string_equal(hget(f, key, "_rev"), "2");

    /* sets: sorted, distinct, joined by U+001F */
    rec e;
    enterprise(&e, uscc);
    char *members[] = {"专精特新", "ISO9001", "专精特新", "A级纳税人"};
    add_set(&e, "certifications", members, 4);
    add_text(&e, "established_date", "2008-02-29");
    add_text(&e, "industry_code", "C");
    assert_true(upsert(f, "xx-market", &e, NOW));
    char eid[FXB_ENTERPRISE_ID_LEN + 1];
    fxb_err err;
    assert_int_equal(fxb_enterprise_id(crypto, uscc, eid, &err), FXB_OK);
    const char *ekey = fxb_arena_printf(&f->a, "{e:%s}:profile", eid);
    assert_string_equal(hget(f, ekey, "certifications"), "A级纳税人\x1fISO9001\x1f专精特新");
    assert_string_equal(hget(f, ekey, "established_date"), "20080229");
    assert_string_equal(hget(f, ekey, "@certifications"), "xx-market 1767225600000");
}

static void test_person_subject_is_the_identity_blind_index(void **state)
{
    fixture *f = *state;
    char pid[FXB_PROFILE_SUBJECT_LEN + 1], idx[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    fxb_err err;
    assert_int_equal(fxb_profile_person_id(crypto, id_a, pid, &err), FXB_OK);
    assert_int_equal(fxb_crypto_index(crypto, "id_number", id_a, idx, &err), FXB_OK);
    assert_int_equal(pid[0], 'p');
    assert_memory_equal(pid + 1, idx, 24);
    assert_int_equal(strlen(pid), FXB_PROFILE_SUBJECT_LEN);
    /* a lower-case x check character is the same person */
    char lower[19] = "11010519491231002X";
    char p1[FXB_PROFILE_SUBJECT_LEN + 1], p2[FXB_PROFILE_SUBJECT_LEN + 1];
    assert_int_equal(fxb_profile_person_id(crypto, lower, p1, &err), FXB_OK);
    lower[17] = 'x';
    assert_int_equal(fxb_profile_person_id(crypto, lower, p2, &err), FXB_OK);
    assert_string_equal(p1, p2);

    /* an account's verified identity leads to the same subject */
    redisReply *r = fxb_store_command(f->s, &err, "HSET {u:acc-1}:identity id_idx %s", idx);
    freeReplyObject(r);
    char got[FXB_PROFILE_SUBJECT_LEN + 1];
    assert_int_equal(fxb_profile_person_of_account(f->s, "acc-1", got, &err), FXB_OK);
    assert_int_equal(fxb_profile_person_id(crypto, id_a, pid, &err), FXB_OK);
    assert_string_equal(got, pid);
    assert_int_equal(fxb_profile_person_of_account(f->s, "acc-2", got, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, "IDENTITY_NOT_VERIFIED");
}

static void test_every_bad_field_is_rejected_and_writes_nothing(void **state)
{
    fixture *f = *state;
    rec x;
    /* a stored profile the bad records must leave alone */
    person(&x, id_a);
    add_text(&x, "district", "卫滨区");
    assert_true(upsert(f, POLICE, &x, NOW));
    long long keys = dbsize(f), feed = changes(f);
    const char *key = person_key(f, id_a);

    person(&x, id_a);
    x.r.subject_type = FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_UNSPECIFIED;
    expect_rejected(f, POLICE, &x, FXB_INVALID_ARGUMENT, "subject_type", "SUBJECT_TYPE_INVALID");

    char bad_check[19];
    memcpy(bad_check, id_a, 19);
    bad_check[17] = bad_check[17] == '0' ? '1' : '0';
    person(&x, bad_check);
    add_text(&x, "district", "红旗区");
    expect_rejected(f, POLICE, &x, FXB_INVALID_ARGUMENT, "id_number", "ID_NUMBER_CHECK");
    person(&x, "41070219400501");
    expect_rejected(f, POLICE, &x, FXB_INVALID_ARGUMENT, "id_number", "ID_NUMBER_FORMAT");
    person(&x, id_a);
    x.r.subject_case = FXB__V1__PROFILE_RECORD__SUBJECT_CREDIT_CODE;
    x.r.credit_code = uscc;
    expect_rejected(f, POLICE, &x, FXB_INVALID_ARGUMENT, "id_number", "ID_NUMBER_REQUIRED");
    enterprise(&x, "91410700123456789X");
    expect_rejected(f, "xx-market", &x, FXB_INVALID_ARGUMENT, "credit_code", "USCC_CHECK");

    person(&x, id_a);
    add_text(&x, "district", "红旗区");
    add_text(&x, "nonsense", "1");
    expect_rejected(f, POLICE, &x, FXB_INVALID_ARGUMENT, "values[1].name", "ATTRIBUTE_UNKNOWN");
    person(&x, id_a);
    add_text(&x, "industry_code", "C"); /* an enterprise attribute */
    expect_rejected(f, NULL, &x, FXB_INVALID_ARGUMENT, "values[0].name", "ATTRIBUTE_UNKNOWN");
    person(&x, id_a);
    add_int(&x, "age", 80);
    expect_rejected(f, NULL, &x, FXB_INVALID_ARGUMENT, "values[0].name", "ATTRIBUTE_DERIVED");
    person(&x, id_a);
    add_text(&x, "district", "红旗区");
    add_int(&x, "children", 1);
    expect_rejected(f, POLICE, &x, FXB_PERMISSION_DENIED, "values[1].name", "SOURCE_MISMATCH");
    person(&x, id_a);
    add_text(&x, "district", "红旗区");
    add_text(&x, "district", "卫滨区");
    expect_rejected(f, POLICE, &x, FXB_INVALID_ARGUMENT, "values[1].name", "ATTRIBUTE_REPEATED");
    person(&x, id_a);
    add(&x, "district");
    expect_rejected(f, POLICE, &x, FXB_INVALID_ARGUMENT, "values[0]", "VALUE_MISSING");

    /* types */
    person(&x, id_a);
    add_int(&x, "district", 3);
    expect_rejected(f, POLICE, &x, FXB_INVALID_ARGUMENT, "values[0].int_value", "TYPE_MISMATCH");
    person(&x, id_a);
    add_text(&x, "children", "2");
    expect_rejected(f, NULL, &x, FXB_INVALID_ARGUMENT, "values[0].text_value", "TYPE_MISMATCH");
    person(&x, id_a);
    add_int(&x, "veteran", 1);
    expect_rejected(f, NULL, &x, FXB_INVALID_ARGUMENT, "values[0].int_value", "TYPE_MISMATCH");
    person(&x, id_a);
    add_bool(&x, "birth_date", true);
    expect_rejected(f, NULL, &x, FXB_INVALID_ARGUMENT, "values[0].bool_value", "TYPE_MISMATCH");

    /* bounds */
    person(&x, id_a);
    add_int(&x, "children", 21);
    expect_rejected(f, NULL, &x, FXB_INVALID_ARGUMENT, "values[0].int_value", "OUT_OF_RANGE");
    person(&x, id_a);
    add_int(&x, "disability_level", -1);
    expect_rejected(f, NULL, &x, FXB_INVALID_ARGUMENT, "values[0].int_value", "OUT_OF_RANGE");

    /* enum values, dates */
    person(&x, id_a);
    add_text(&x, "district", "郑州市");
    expect_rejected(f, POLICE, &x, FXB_INVALID_ARGUMENT, "values[0].text_value",
                    "ENUM_VALUE_UNKNOWN");
    static const char *const bad_dates[] = {"1940-02-30", "1940-5-01",  "19400501",   "1900-13-01",
                                            "2023-02-29", "0999-01-01", "abcd-ef-gh", ""};
    for (size_t i = 0; i < sizeof bad_dates / sizeof bad_dates[0]; i++) {
        person(&x, id_a);
        add_text(&x, "birth_date", bad_dates[i]);
        expect_rejected(f, POLICE, &x, FXB_INVALID_ARGUMENT, "values[0].text_value",
                        "DATE_INVALID");
    }

    /* sets */
    rec e;
    char *empty_member[] = {"ok", ""};
    enterprise(&e, uscc);
    add_set(&e, "certifications", empty_member, 2);
    expect_rejected(f, "xx-market", &e, FXB_INVALID_ARGUMENT, "values[0].set_value.members[1]",
                    "MEMBER_INVALID");
    char *long_member[] = {"一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十一二三"};
    enterprise(&e, uscc);
    add_set(&e, "certifications", long_member, 1);
    expect_rejected(f, "xx-market", &e, FXB_INVALID_ARGUMENT, "values[0].set_value.members[0]",
                    "MEMBER_INVALID");
    char *bad_utf8[] = {"ab\xff"};
    enterprise(&e, uscc);
    add_set(&e, "certifications", bad_utf8, 1);
    expect_rejected(f, "xx-market", &e, FXB_INVALID_ARGUMENT, "values[0].set_value.members[0]",
                    "MEMBER_INVALID");
    char *sep[] = {"a\x1f"
                   "b"};
    enterprise(&e, uscc);
    add_set(&e, "certifications", sep, 1);
    expect_rejected(f, "xx-market", &e, FXB_INVALID_ARGUMENT, "values[0].set_value.members[0]",
                    "MEMBER_INVALID");
    char *many[65];
    char names[65][8];
    for (int i = 0; i < 65; i++) {
        snprintf(names[i], sizeof names[i], "c%d", i);
        many[i] = names[i];
    }
    enterprise(&e, uscc);
    add_set(&e, "certifications", many, 65);
    expect_rejected(f, "xx-market", &e, FXB_INVALID_ARGUMENT, "values[0].set_value",
                    "TOO_MANY_MEMBERS");

    /* clears */
    person(&x, id_a);
    add_clear(&x, "district");
    add_clear(&x, "veteran");
    expect_rejected(f, POLICE, &x, FXB_PERMISSION_DENIED, "clear[1]", "SOURCE_MISMATCH");
    person(&x, id_a);
    add_clear(&x, "age");
    expect_rejected(f, NULL, &x, FXB_INVALID_ARGUMENT, "clear[0]", "ATTRIBUTE_DERIVED");
    person(&x, id_a);
    add_text(&x, "district", "红旗区");
    add_clear(&x, "district");
    expect_rejected(f, POLICE, &x, FXB_INVALID_ARGUMENT, "clear[0]", "ATTRIBUTE_REPEATED");

    /* nothing of it reached the store */
    assert_int_equal(dbsize(f), keys);
    assert_int_equal(changes(f), feed);
    assert_string_equal(hget(f, key, "district"), "卫滨区");
    assert_string_equal(hget(f, key, "_rev"), "1");

    /* 64 members, repeated ones collapsing, are fine */
    enterprise(&e, uscc);
    add_set(&e, "certifications", many, 64);
    assert_true(upsert(f, "xx-market", &e, NOW));
}

static void test_an_identical_record_changes_nothing_and_feeds_nothing(void **state)
{
    fixture *f = *state;
    rec x;
    person(&x, id_a);
    add_text(&x, "district", "红旗区");
    add_text(&x, "household_type", "rural");
    assert_true(upsert(f, POLICE, &x, NOW));
    assert_int_equal(changes(f), 1);
    const char *key = person_key(f, id_a);
    /* same values later: unchanged, provenance and rev kept, no feed entry */
    assert_false(upsert(f, POLICE, &x, NOW + 5000));
    assert_false(upsert(f, NULL, &x, NOW + 6000));
    assert_int_equal(changes(f), 1);
    assert_string_equal(hget(f, key, "_rev"), "1");
    assert_string_equal(hget(f, key, "@district"), "xx-police 1767225600000");
    /* one value different: only it is rewritten */
    person(&x, id_a);
    add_text(&x, "district", "红旗区");
    add_text(&x, "household_type", "urban");
    assert_true(upsert(f, POLICE, &x, NOW + 7000));
    assert_string_equal(hget(f, key, "@district"), "xx-police 1767225600000");
    assert_string_equal(hget(f, key, "@household_type"), "xx-police 1767225607000");
    assert_string_equal(hget(f, key, "_rev"), "2");
    assert_int_equal(changes(f), 2);
    /* clearing: the value and its provenance go; clearing it again is no change */
    person(&x, id_a);
    add_clear(&x, "household_type");
    assert_true(upsert(f, POLICE, &x, NOW + 8000));
    assert_null(hget(f, key, "household_type"));
    assert_null(hget(f, key, "@household_type"));
    assert_false(upsert(f, POLICE, &x, NOW + 9000));
    assert_int_equal(changes(f), 3);
    /* set order and repeats do not make a change */
    rec e;
    char *m1[] = {"b", "a"}, *m2[] = {"a", "b", "a"};
    enterprise(&e, uscc);
    add_set(&e, "certifications", m1, 2);
    assert_true(upsert(f, "xx-market", &e, NOW));
    enterprise(&e, uscc);
    add_set(&e, "certifications", m2, 3);
    assert_false(upsert(f, "xx-market", &e, NOW + 1));
    /* an empty record is accepted and changes nothing */
    person(&x, id_b);
    assert_false(upsert(f, POLICE, &x, NOW));
    assert_int_equal(changes(f), 4);
}

static void test_change_feed_names_subject_type_and_rev(void **state)
{
    fixture *f = *state;
    rec x;
    person(&x, id_b);
    add_text(&x, "district", "牧野区");
    assert_true(upsert(f, POLICE, &x, NOW));
    person(&x, id_b);
    add_text(&x, "district", "凤泉区");
    assert_true(upsert(f, POLICE, &x, NOW));
    fxb_err err;
    redisReply *r = fxb_store_command(f->s, &err, "XRANGE fxb:profile:changes - +");
    assert_non_null(r);
    assert_int_equal(r->elements, 2);
    char pid[FXB_PROFILE_SUBJECT_LEN + 1];
    assert_int_equal(fxb_profile_person_id(crypto, id_b, pid, &err), FXB_OK);
    for (size_t i = 0; i < 2; i++) {
        const redisReply *fields = r->element[i]->element[1];
        assert_int_equal(fields->elements, 6);
        assert_string_equal(fields->element[0]->str, "subject");
        assert_string_equal(fields->element[1]->str, pid);
        assert_string_equal(fields->element[2]->str, "type");
        assert_string_equal(fields->element[3]->str, "person");
        assert_string_equal(fields->element[4]->str, "rev");
        assert_int_equal(atoi(fields->element[5]->str), (int)i + 1);
    }
    freeReplyObject(r);
}

static void test_no_id_number_or_credit_code_reaches_redis(void **state)
{
    fixture *f = *state;
    rec x;
    person(&x, id_a);
    add_text(&x, "district", "红旗区");
    assert_true(upsert(f, POLICE, &x, NOW));
    rec e;
    enterprise(&e, uscc);
    add_int(&e, "employees", 12);
    assert_true(upsert(f, "xx-hrss", &e, NOW));
    fxb_err err;
    redisReply *keys = fxb_store_command(f->s, &err, "KEYS *");
    assert_non_null(keys);
    for (size_t i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;
        assert_null(strstr(k, id_a));
        assert_null(strstr(k, uscc));
        redisReply *ty = fxb_store_command(f->s, &err, "TYPE %s", k);
        const char *c = strcmp(ty->str, "hash") == 0     ? "HGETALL %s"
                        : strcmp(ty->str, "stream") == 0 ? "XRANGE %s - +"
                                                         : "GET %s";
        freeReplyObject(ty);
        redisReply *v = fxb_store_command(f->s, &err, c, k);
        assert_non_null(v);
        for (size_t j = 0; j < v->elements; j++) {
            const redisReply *e1 = v->element[j];
            if (e1->type == REDIS_REPLY_STRING) {
                assert_null(strstr(e1->str, id_a));
                assert_null(strstr(e1->str, uscc));
            }
            for (size_t l = 0; e1->type == REDIS_REPLY_ARRAY && l < e1->elements; l++)
                for (size_t m = 0;
                     e1->element[l]->type == REDIS_REPLY_ARRAY && m < e1->element[l]->elements; m++)
                    assert_null(strstr(e1->element[l]->element[m]->str, id_a));
        }
        freeReplyObject(v);
    }
    freeReplyObject(keys);
}

static void test_schema_missing_is_not_found(void **state)
{
    fixture *f = *state;
    fxb_err err;
    redisReply *r = fxb_store_command(f->s, &err, "DEL fxb:profile:schema fxb:profile:schema:rev");
    freeReplyObject(r);
    const fxb_schema *s;
    assert_int_equal(fxb_profile_schema_acquire(f->s, &s, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, "SCHEMA_MISSING");
}

static void test_storing_the_same_schema_keeps_its_rev(void **state)
{
    fixture *f = *state;
    const fxb_datafile *seed = fxb_datafile_find("benefit/schema.json");
    fxb_err err;
    assert_int_equal(fxb_profile_schema_store(f->s, seed->bytes, seed->len, &err), FXB_OK);
    redisReply *r = fxb_store_command(f->s, &err, "GET fxb:profile:schema:rev");
    assert_string_equal(r->str, "1");
    freeReplyObject(r);
    const fxb_schema *s;
    assert_int_equal(fxb_profile_schema_acquire(f->s, &s, &err), FXB_OK);
    assert_ptr_equal(s, f->schema); /* the cached one, no reload */
    fxb_profile_schema_release(s);
}

/* --- concurrent reload ---------------------------------------------------------------- */

#define RELOAD_THREADS 4
#define RELOAD_ROUNDS  300

static const char *schema_variant(int k, size_t *len)
{
    static char buf[2][512];
    snprintf(buf[k & 1], sizeof buf[0],
             "{\"attributes\": [{\"name\": \"v%d\", \"subject\": \"person\", \"type\": \"int\", "
             "\"min\": 0, \"max\": %d, \"source\": \"xx-a\", \"description\": "
             "\"variant %d\"}]}",
             k, k, k);
    *len = strlen(buf[k & 1]);
    return buf[k & 1];
}

static volatile int reload_stop;

static void *reader(void *arg)
{
    (void)arg;
    fxb_store_options opt = {.url = test_url};
    fxb_err err;
    fxb_store *s = fxb_store_new(&opt, &err);
    long bad = 0;
    while (!reload_stop) {
        const fxb_schema *sc;
        if (fxb_profile_schema_acquire(s, &sc, &err) != FXB_OK) {
            bad++;
            continue;
        }
        /* read the whole schema while holding it: a reload freeing it
         * under us is an ASan report */
        for (int rep = 0; rep < 3; rep++)
            for (size_t i = 0; i < sc->n_attrs; i++) {
                const fxb_attr *a = &sc->attrs[i];
                char want[16];
                snprintf(want, sizeof want, "v%lld", (long long)a->max);
                if (strcmp(a->name, want) != 0 || strncmp(a->description, "variant ", 8) != 0)
                    bad++;
            }
        fxb_profile_schema_release(sc);
    }
    fxb_store_free(s);
    return (void *)bad;
}

static void test_a_reload_never_frees_a_schema_in_use(void **state)
{
    fixture *f = *state;
    fxb_err err;
    /* a rev this process has not cached yet */
    redisReply *r = fxb_store_command(f->s, &err, "SET fxb:profile:schema:rev 1000000");
    freeReplyObject(r);
    size_t len;
    const char *json = schema_variant(1, &len);
    assert_int_equal(fxb_profile_schema_store(f->s, json, len, &err), FXB_OK);
    /* a holder from before the reloads keeps its schema to the end */
    const fxb_schema *held;
    assert_int_equal(fxb_profile_schema_acquire(f->s, &held, &err), FXB_OK);
    assert_string_equal(held->attrs[0].name, "v1");
    reload_stop = 0;
    pthread_t th[RELOAD_THREADS];
    for (int i = 0; i < RELOAD_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader, NULL), 0);
    for (int k = 2; k < RELOAD_ROUNDS; k++) {
        json = schema_variant(k, &len);
        assert_int_equal(fxb_profile_schema_store(f->s, json, len, &err), FXB_OK);
    }
    reload_stop = 1;
    long bad = 0;
    for (int i = 0; i < RELOAD_THREADS; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        bad += (long)ret;
    }
    assert_int_equal(bad, 0);
    assert_string_equal(held->attrs[0].name, "v1");
    assert_int_equal(held->rev, 1000001);
    fxb_profile_schema_release(held);
    /* after the last store, the cache serves the last schema */
    const fxb_schema *now;
    assert_int_equal(fxb_profile_schema_acquire(f->s, &now, &err), FXB_OK);
    char want[16];
    snprintf(want, sizeof want, "v%d", RELOAD_ROUNDS - 1);
    assert_string_equal(now->attrs[0].name, want);
    assert_int_equal(now->rev, 1000000 + RELOAD_ROUNDS - 1);
    fxb_profile_schema_release(now);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_values_are_stored_typed_with_provenance, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_person_subject_is_the_identity_blind_index, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_every_bad_field_is_rejected_and_writes_nothing,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_an_identical_record_changes_nothing_and_feeds_nothing,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_change_feed_names_subject_type_and_rev, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_no_id_number_or_credit_code_reaches_redis, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_schema_missing_is_not_found, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_storing_the_same_schema_keeps_its_rev, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_a_reload_never_frees_a_schema_in_use, each_setup,
                                        each_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
