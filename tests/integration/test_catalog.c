/* The catalogue import and reads against a real Redis (db 4, flushed before
 * each test): a file is checked as a whole and written only without a
 * single error, every error is reported at once, a changed guide becomes a
 * new version while old versions stay readable, and a second import of the
 * same file changes nothing. Fixtures are built here with jansson. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fixture.h"
#include "auth/scope.h"
#include "server/arena.h"
#include "services/catalog/catalog.h"
#include "services/catalog/catalog_import.h"

#define TEST_DB 4
#define T0      1700000000000LL

static char test_url[FXB_STORE_URL_MAX + 64];

static int group_setup(void **state)
{
    (void)state;
    return fxb_test_redis_url(TEST_DB, test_url, sizeof test_url);
}

static int each_setup(void **state)
{
    *state = fxb_test_store_open(test_url);
    /* a flushed store starts its revisions again: forget built items */
    fxb_catalog_cache_clear();
    return *state != NULL ? 0 : -1;
}

static int each_teardown(void **state)
{
    fxb_store_free(*state);
    return 0;
}

/* --- fixtures ----------------------------------------------------------------- */

static const char *const cat_names[] = {"民政",       "教育", "企业服务", "卫生健康",
                                        "住房公积金", "市场", "公安",     "不动产",
                                        "社会保障",   "税务", "交通",     "水电气暖"};

static json_t *guide(void)
{
    return json_pack(
        "{s[s] s[s] s[{ss ss ss s[ss] s[s] ss ss si}] ss s[sss] si si ss si sb sb sb si si s[] "
        "ss ss sb ss s[ss]}",
        "legal_basis", "《中华人民共和国居民身份证法》", "conditions", "本市户籍居民", "materials",
        "code", "M01", "name", "居民户口簿", "requirement", "required", "accepted_forms", "pdf",
        "jpeg", "licence_types", "household_register", "description", "户主页和本人页", "source",
        "户籍所在地派出所", "max_files", 2, "review_standard", "材料齐全、符合法定形式",
        "procedure", "申请", "受理", "办结", "time_limit_working_days", 10,
        "legal_time_limit_working_days", 20, "fee_basis", "", "fee_fen", 0, "immediate", 0,
        "notify_commit_allowed", 0, "tolerated_acceptance", 0, "supplement_working_days", 0,
        "correction_working_days", 5, "special_procedures", "result_name", "居民身份证",
        "result_licence_type", "id_card", "appointment_available", 1, "plain_summary",
        "带户口簿到派出所办身份证", "service_channels", "app", "hall");
}

static json_t *item(const char *code, const char *name, const char *dept, const char *level,
                    const char *category)
{
    return json_pack("{ss ss ss ss ss so}", "code", code, "name", name, "department", dept, "level",
                     level, "category", category, "guide", guide());
}

/* Three items of two departments and one bundle of two of them. */
static json_t *base_file(void)
{
    json_t *cats = json_array();
    for (size_t i = 0; i < FXB_CATALOG_CATEGORIES; i++)
        json_array_append_new(
            cats, json_pack("{ss ss}", "code", fxb_catalog_categories[i], "name", cat_names[i]));
    json_t *root = json_pack(
        "{s[{ss ss}{ss ss}] so s[ooo] s[{ss ss ss s[ss] ss}]}", "departments", "code", "xx-police",
        "name", "新乡市公安局", "code", "xx-edu", "name", "新乡市教育局", "categories", cats,
        "items", item("XX-GA-0001", "居民身份证申领", "xx-police", "city", "police"),
        item("XX-GA-0002", "户口迁移", "xx-police", "county", "police"),
        item("XX-JY-0001", "小学入学报名", "xx-edu", "county", "education"), "bundles", "code",
        "B-BIRTH", "name", "新生儿出生一件事", "description", "出生落户与入学一次办", "item_codes",
        "XX-GA-0001", "XX-JY-0001", "plain_summary", "孩子出生后的事一次办");
    assert_non_null(root);
    return root;
}

/* The value at a path like "items[0].guide.fee_fen" (NULL when absent). */
static json_t *at(json_t *root, const char *path, json_t **parent, char *last, size_t last_cap,
                  long *last_index)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = root;
    *parent = NULL;
    char *save = NULL;
    for (char *seg = strtok_r(buf, ".", &save); seg != NULL; seg = strtok_r(NULL, ".", &save)) {
        char *br = strchr(seg, '[');
        long idx = -1;
        if (br != NULL) {
            idx = strtol(br + 1, NULL, 10);
            *br = '\0';
        }
        *parent = cur;
        snprintf(last, last_cap, "%s", seg);
        *last_index = -1;
        cur = json_object_get(cur, seg);
        if (idx >= 0) {
            *parent = cur;
            *last_index = idx;
            cur = json_array_get(cur, (size_t)idx);
        }
    }
    return cur;
}

/* Sets (or with value_json NULL, deletes) the value at path. */
static void set_path(json_t *root, const char *path, const char *value_json)
{
    json_t *parent;
    char last[64];
    long idx = -1;
    at(root, path, &parent, last, sizeof last, &idx);
    assert_non_null(parent);
    json_t *v = NULL;
    if (value_json != NULL) {
        json_error_t e;
        v = json_loads(value_json, JSON_DECODE_ANY, &e);
        assert_non_null(v);
    }
    if (idx >= 0) {
        if (v == NULL)
            json_array_remove(parent, (size_t)idx);
        else if ((size_t)idx < json_array_size(parent))
            json_array_set_new(parent, (size_t)idx, v);
        else
            json_array_append_new(parent, v);
    } else if (v == NULL) {
        json_object_del(parent, last);
    } else {
        json_object_set_new(parent, last, v);
    }
}

typedef struct run {
    fxb_code rc;
    fxb_err err;
    fxb_catalog_import_stats st;
    char *out, *errs;
} run;

static void run_free(run *r)
{
    free(r->out);
    free(r->errs);
}

static run import(fxb_store *s, json_t *root, int64_t now_ms)
{
    run r;
    memset(&r, 0, sizeof r);
    char *text = json_dumps(root, JSON_COMPACT);
    assert_non_null(text);
    size_t out_len, errs_len;
    FILE *out = open_memstream(&r.out, &out_len);
    FILE *errs = open_memstream(&r.errs, &errs_len);
    r.rc = fxb_catalog_import(s, text, strlen(text), now_ms, out, errs, &r.st, &r.err);
    fclose(out);
    fclose(errs);
    free(text);
    return r;
}

static long long dbsize(fxb_store *s)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "DBSIZE");
    assert_non_null(r);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

static long long rev(fxb_store *s)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "GET %s", FXB_CATALOG_KEY_REV);
    assert_non_null(r);
    long long n = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return n;
}

static void import_ok(fxb_store *s, json_t *root, int64_t now_ms, fxb_catalog_import_stats *st)
{
    run r = import(s, root, now_ms);
    if (r.rc != FXB_OK)
        fprintf(stderr, "import failed: %s\n%s", r.err.message, r.errs);
    assert_int_equal(r.rc, FXB_OK);
    if (st != NULL)
        *st = r.st;
    run_free(&r);
}

/* --- a valid file -------------------------------------------------------------- */

static void test_a_valid_file_imports_every_item_guide_and_bundle(void **state)
{
    fxb_store *s = *state;
    json_t *root = base_file();
    run r = import(s, root, T0);
    assert_int_equal(r.rc, FXB_OK);
    assert_string_equal(r.out, "catalog: 3 items (3 new, 0 new guide versions, 0 unchanged), "
                               "1 bundles, 2 departments\n");
    assert_string_equal(r.errs, "");
    run_free(&r);

    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_err err;
    Fxb__V1__ServiceItem *it;
    assert_int_equal(fxb_catalog_get(s, &a, "XX-GA-0001", 0, &it, &err), FXB_OK);
    assert_string_equal(it->name, "居民身份证申领");
    assert_string_equal(it->department, "xx-police");
    assert_string_equal(it->department_name, "新乡市公安局");
    assert_int_equal(it->level, FXB__V1__ITEM_LEVEL__ITEM_LEVEL_CITY);
    assert_string_equal(it->category, "police");
    assert_string_equal(it->category_name, "公安");
    assert_int_equal(it->current_version, 1);
    assert_int_equal(it->guide->version, 1);
    assert_int_equal(it->guide->published_at_ms, T0);
    assert_int_equal(it->guide->n_materials, 1);
    const Fxb__V1__MaterialSpec *m = it->guide->materials[0];
    assert_string_equal(m->code, "M01");
    assert_int_equal(m->requirement, FXB__V1__MATERIAL_REQUIREMENT__MATERIAL_REQUIREMENT_REQUIRED);
    assert_int_equal(m->n_accepted_forms, 2);
    assert_string_equal(m->licence_types[0], "household_register");
    assert_int_equal(m->max_files, 2);
    assert_int_equal(it->guide->time_limit_working_days, 10);
    assert_int_equal(it->guide->legal_time_limit_working_days, 20);
    assert_int_equal(it->guide->n_procedure, 3);
    assert_int_equal(it->n_bundles, 1);
    assert_string_equal(it->bundles[0], "B-BIRTH");
    assert_int_equal(fxb_catalog_get(s, &a, "XX-GA-0002", 0, &it, &err), FXB_OK);
    assert_int_equal(it->n_bundles, 0);

    Fxb__V1__Bundle *b;
    assert_int_equal(fxb_catalog_bundle(s, &a, "B-BIRTH", &b, &err), FXB_OK);
    assert_int_equal(b->n_item_codes, 2);
    assert_int_equal(b->n_departments, 2);
    assert_string_equal(b->departments[0], "xx-police");
    assert_string_equal(b->departments[1], "xx-edu");

    /* the category field the proxy scope check reads */
    redisReply *rr = fxb_store_command(s, &err, "HGET fxb:item:XX-JY-0001 category");
    assert_non_null(rr);
    assert_string_equal(rr->str, "education");
    freeReplyObject(rr);
    fxb_arena_free(&a);
    json_decref(root);
}

static void test_the_categories_are_the_scope_categories(void **state)
{
    (void)state;
    for (size_t i = 0; i < FXB_CATALOG_CATEGORIES; i++)
        assert_true(fxb_scope_category_known(fxb_catalog_categories[i]));
    assert_false(fxb_scope_category_known("weather"));
}

/* --- versions and idempotence ------------------------------------------------ */

static void test_a_second_import_of_the_same_file_changes_nothing(void **state)
{
    fxb_store *s = *state;
    json_t *root = base_file();
    import_ok(s, root, T0, NULL);
    long long r1 = rev(s), keys = dbsize(s);
    assert_true(r1 > 0);
    run r = import(s, root, T0 + 1000);
    assert_int_equal(r.rc, FXB_OK);
    assert_string_equal(r.out, "catalog: 3 items (0 new, 0 new guide versions, 3 unchanged), "
                               "1 bundles, 2 departments\n");
    assert_false(r.st.changed);
    run_free(&r);
    assert_int_equal(rev(s), r1);
    assert_int_equal(dbsize(s), keys);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_err err;
    Fxb__V1__ServiceItem *it;
    assert_int_equal(fxb_catalog_get(s, &a, "XX-GA-0001", 0, &it, &err), FXB_OK);
    assert_int_equal(it->current_version, 1);
    assert_int_equal(it->guide->published_at_ms, T0);
    fxb_arena_free(&a);
    json_decref(root);
}

static void test_a_changed_guide_is_a_new_version_and_the_old_one_stays_readable(void **state)
{
    fxb_store *s = *state;
    json_t *root = base_file();
    import_ok(s, root, T0, NULL);
    long long r1 = rev(s);
    set_path(root, "items[0].guide.time_limit_working_days", "7");
    fxb_catalog_import_stats st;
    import_ok(s, root, T0 + 5000, &st);
    assert_int_equal(st.added, 0);
    assert_int_equal(st.versioned, 1);
    assert_int_equal(st.unchanged, 2);
    assert_true(st.changed);
    assert_true(rev(s) > r1);

    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_err err;
    Fxb__V1__ServiceItem *it;
    assert_int_equal(fxb_catalog_get(s, &a, "XX-GA-0001", 0, &it, &err), FXB_OK);
    assert_int_equal(it->current_version, 2);
    assert_int_equal(it->guide->version, 2);
    assert_int_equal(it->guide->published_at_ms, T0 + 5000);
    assert_int_equal(it->guide->time_limit_working_days, 7);
    assert_int_equal(fxb_catalog_get(s, &a, "XX-GA-0001", 1, &it, &err), FXB_OK);
    assert_int_equal(it->current_version, 2);
    assert_int_equal(it->guide->version, 1);
    assert_int_equal(it->guide->published_at_ms, T0);
    assert_int_equal(it->guide->time_limit_working_days, 10);
    assert_int_equal(fxb_catalog_get(s, &a, "XX-GA-0001", 3, &it, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, "GUIDE_VERSION_NOT_FOUND");

    /* the same file again: still version 2 */
    import_ok(s, root, T0 + 9000, &st);
    assert_int_equal(st.versioned, 0);
    assert_int_equal(st.unchanged, 3);
    assert_int_equal(fxb_catalog_get(s, &a, "XX-GA-0001", 0, &it, &err), FXB_OK);
    assert_int_equal(it->current_version, 2);
    assert_int_equal(it->guide->published_at_ms, T0 + 5000);
    fxb_arena_free(&a);
    json_decref(root);
}

static void test_a_renamed_item_keeps_its_guide_version(void **state)
{
    fxb_store *s = *state;
    json_t *root = base_file();
    import_ok(s, root, T0, NULL);
    long long r1 = rev(s);
    set_path(root, "items[1].name", "\"户口迁入\"");
    fxb_catalog_import_stats st;
    import_ok(s, root, T0 + 1, &st);
    assert_int_equal(st.unchanged, 3);
    assert_true(st.changed);
    assert_true(rev(s) > r1);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_err err;
    Fxb__V1__ServiceItem *it;
    assert_int_equal(fxb_catalog_get(s, &a, "XX-GA-0002", 0, &it, &err), FXB_OK);
    assert_string_equal(it->name, "户口迁入");
    assert_int_equal(it->current_version, 1);
    fxb_arena_free(&a);
    json_decref(root);
}

static void test_items_absent_from_the_file_are_kept_and_listed(void **state)
{
    fxb_store *s = *state;
    json_t *root = base_file();
    import_ok(s, root, T0, NULL);
    set_path(root, "items[1]", NULL);
    run r = import(s, root, T0 + 1);
    assert_int_equal(r.rc, FXB_OK);
    assert_non_null(strstr(r.out, "item XX-GA-0002: kept, not in file\n"));
    assert_non_null(strstr(r.out, "catalog: 2 items (0 new, 0 new guide versions, 2 unchanged)"));
    assert_int_equal(r.st.kept, 1);
    run_free(&r);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_err err;
    Fxb__V1__ServiceItem *it;
    assert_int_equal(fxb_catalog_get(s, &a, "XX-GA-0002", 0, &it, &err), FXB_OK);
    fxb_arena_free(&a);
    json_decref(root);
}

/* --- reads ---------------------------------------------------------------------- */

static void test_get_refuses_a_malformed_code_and_an_unknown_item(void **state)
{
    fxb_store *s = *state;
    json_t *root = base_file();
    import_ok(s, root, T0, NULL);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_err err;
    Fxb__V1__ServiceItem *it;
    assert_int_equal(fxb_catalog_get(s, &a, "XX GA", 0, &it, &err), FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "ITEM_CODE_INVALID");
    assert_int_equal(fxb_catalog_get(s, &a, "fxb:items", 0, &it, &err), FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_catalog_get(s, &a, "", 0, &it, &err), FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_catalog_get(s, &a, "XX-GA-9999", 0, &it, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, "ITEM_NOT_FOUND");
    assert_null(it);
    Fxb__V1__Bundle *b;
    assert_int_equal(fxb_catalog_bundle(s, &a, "B-NONE", &b, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, "BUNDLE_NOT_FOUND");
    assert_int_equal(fxb_catalog_bundle(s, &a, "B:x", &b, &err), FXB_INVALID_ARGUMENT);
    fxb_arena_free(&a);
    json_decref(root);
}

/* --- validation ------------------------------------------------------------------ */

typedef struct rule {
    const char *path;
    const char *value; /* JSON; NULL deletes */
    const char *error; /* a line of the report */
} rule;

static const rule rules[] = {
    /* categories and departments */
    {"categories[11]", NULL, "category utilities: code: missing from categories"},
    {"categories[0].code", "\"weather\"", "category [0]: code: not a catalogue category"},
    {"categories[1].name", "\"一二三四五六七八九十一二三四五六七八九十一\"",
     "category education: name: must be 1..20 characters"},
    {"departments[0].code", "\"XX_Police\"", "department [0]: code: must be 1..32 of [a-z0-9-]"},
    {"departments[1].name", "\"\"", "department xx-edu: name: must be 1..40 characters"},
    /* items */
    {"items[0].code", "\"XX GA 0001\"", "item [0]: code: must be 1..40 of [A-Za-z0-9._-]"},
    {"items[0].code", "\"XX-GA-0002\"", "item XX-GA-0002: code: duplicate"},
    {"items[0].name", "\"\"", "item XX-GA-0001: name: must be 1..60 characters"},
    {"items[0].level", "\"province\"", "item XX-GA-0001: level: must be city, county, township"},
    {"items[0].category", "\"weather\"", "item XX-GA-0001: category: \"weather\" is not a "},
    {"items[0].department", "\"xx-tax\"", "item XX-GA-0001: department: \"xx-tax\" is not in"},
    {"items[0].colour", "\"red\"", "item XX-GA-0001: colour: unknown field"},
    {"items[0].guide", NULL, "item XX-GA-0001: guide: missing"},
    {"items[0].name", "\"a\\u0007b\"", "item XX-GA-0001: name: must be UTF-8 text without"},
    /* materials */
    {"items[0].guide.materials[0].code", "\"M 1\"",
     "item XX-GA-0001: guide.materials[0].code: must be 1..16 of [A-Za-z0-9_-]"},
    {"items[0].guide.materials[1]",
     "{\"code\":\"M01\",\"name\":\"照片\",\"requirement\":\"required\",\"accepted_forms\":["
     "\"jpeg\"]}",
     "item XX-GA-0001: guide.materials[1].code: duplicate \"M01\""},
    {"items[0].guide.materials[0].name", "\"其他材料\"",
     "item XX-GA-0001: guide.materials[0].name: \"其他材料\" is a catch-all"},
    {"items[0].guide.materials[0].name", "\"申请人相关材料\"",
     "item XX-GA-0001: guide.materials[0].name: \"相关材料\" is a catch-all"},
    {"items[0].guide.materials[0].name", "\"其他有关材料\"",
     "item XX-GA-0001: guide.materials[0].name: \"其他有关材料\" is a catch-all"},
    {"items[0].guide.materials[0].accepted_forms", "[\"pdf\",\"docx\"]",
     "item XX-GA-0001: guide.materials[0].accepted_forms[1]: must be pdf, jpeg or png"},
    {"items[0].guide.materials[0].licence_types", "[]",
     NULL /* accepted_forms still holds pdf, jpeg: fine */},
    {"items[0].guide.materials[0]",
     "{\"code\":\"M01\",\"name\":\"照片\",\"requirement\":\"required\",\"accepted_forms\":[]}",
     "item XX-GA-0001: guide.materials[0].accepted_forms: empty: allowed only when"},
    {"items[0].guide.materials[0].licence_types", "[\"Household\"]",
     "item XX-GA-0001: guide.materials[0].licence_types[0]: must be 1..40 of [a-z0-9_]"},
    {"items[0].guide.materials[0].max_files", "11",
     "item XX-GA-0001: guide.materials[0].max_files: must be 1..10"},
    {"items[0].guide.materials[0].max_files", "0",
     "item XX-GA-0001: guide.materials[0].max_files: must be 1..10"},
    {"items[0].guide.materials[0].requirement", "\"tolerable\"",
     "item XX-GA-0001: guide.materials[0].requirement: \"tolerable\" only when"},
    {"items[0].guide.materials[0].requirement", "\"maybe\"",
     "item XX-GA-0001: guide.materials[0].requirement: must be required, optional or tolerable"},
    {"items[0].guide.tolerated_acceptance", "true",
     "item XX-GA-0001: guide.supplement_working_days: must be 1..60 with tolerated_acceptance"},
    {"items[0].guide.supplement_working_days", "5",
     "item XX-GA-0001: guide.supplement_working_days: only with tolerated_acceptance"},
    /* time limits, fees, summary */
    {"items[0].guide.immediate", "true",
     "item XX-GA-0001: guide.time_limit_working_days: must be 0 for an immediate item"},
    {"items[0].guide.time_limit_working_days", "0",
     "item XX-GA-0001: guide.time_limit_working_days: must be 1..200 (0 only for an immediate"},
    {"items[0].guide.time_limit_working_days", "201",
     "item XX-GA-0001: guide.time_limit_working_days: must be 0..200"},
    {"items[0].guide.time_limit_working_days", "21",
     "item XX-GA-0001: guide.time_limit_working_days: 21 is more than the legal time limit"},
    {"items[0].guide.correction_working_days", "0",
     "item XX-GA-0001: guide.correction_working_days: must be 1..30"},
    {"items[0].guide.correction_working_days", "31",
     "item XX-GA-0001: guide.correction_working_days: must be 0..30"},
    {"items[0].guide.fee_fen", "-1", "item XX-GA-0001: guide.fee_fen: must be 0..1000000000"},
    {"items[0].guide.fee_fen", "500", "item XX-GA-0001: guide.fee_basis: required when fee_fen"},
    {"items[0].guide.plain_summary", "\"\"",
     "item XX-GA-0001: guide.plain_summary: must be 1..200 characters"},
    {"items[0].guide.immediate", "\"yes\"",
     "item XX-GA-0001: guide.immediate: must be true or false"},
    {"items[0].guide.legal_basis", "[]",
     "item XX-GA-0001: guide.legal_basis: needs at least 1 entries"},
    {"items[0].guide.conditions",
     "[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\","
     "\"15\",\"16\",\"17\",\"18\",\"19\",\"20\",\"21\",\"22\",\"23\",\"24\",\"25\",\"26\",\"27\","
     "\"28\",\"29\",\"30\",\"31\"]",
     "item XX-GA-0001: guide.conditions: at most 30 entries"},
    {"items[0].guide.service_channels", "[\"fax\"]",
     "item XX-GA-0001: guide.service_channels[0]: must be app, hall or mail"},
    {"items[0].guide.special_procedures",
     "[{\"code\":\"S1\",\"kind\":\"lottery\",\"name\":\"抽签\","
     "\"time_limit_working_days\":5}]",
     "item XX-GA-0001: guide.special_procedures[0].kind: must be site_inspection"},
    /* bundles */
    {"bundles[0].item_codes", "[\"XX-GA-0001\"]", "bundle B-BIRTH: item_codes: must name 2..10"},
    {"bundles[0].item_codes[1]", "\"XX-MISSING\"",
     "bundle B-BIRTH: item_codes[1]: \"XX-MISSING\" is not an item of the file"},
    {"bundles[0].code", "\"B BIRTH\"", "bundle [0]: code: must be 1..40 of [A-Za-z0-9._-]"},
};

static void test_each_rule_is_checked_and_nothing_is_written_on_error(void **state)
{
    fxb_store *s = *state;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        json_t *root = base_file();
        set_path(root, rules[i].path, rules[i].value);
        run r = import(s, root, T0);
        if (rules[i].error == NULL) {
            if (r.rc != FXB_OK)
                fail_msg("rule %zu (%s) should pass: %s", i, rules[i].path, r.errs);
        } else {
            if (r.rc != FXB_INVALID_ARGUMENT || strstr(r.errs, rules[i].error) == NULL)
                fail_msg("rule %zu (%s = %s): expected \"%s\" in:\n%s", i, rules[i].path,
                         rules[i].value ? rules[i].value : "(deleted)", rules[i].error, r.errs);
            assert_string_equal(r.err.reason, "CATALOG_INVALID");
            assert_int_equal(dbsize(s), 0);
            assert_string_equal(r.out, "");
        }
        run_free(&r);
        json_decref(root);
        redisReply *f = fxb_store_command(s, &(fxb_err){0}, "FLUSHDB");
        assert_non_null(f);
        freeReplyObject(f);
        fxb_catalog_cache_clear();
    }
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_every_error_of_a_file_is_reported_at_once(void **state)
{
    fxb_store *s = *state;
    json_t *root = base_file();
    set_path(root, "items[0].level", "\"province\"");
    set_path(root, "items[1].guide.fee_fen", "100");
    set_path(root, "items[2].guide.materials[0].name", "\"其他材料\"");
    set_path(root, "items[2].guide.plain_summary", "\"\"");
    set_path(root, "departments[1].name", "\"\"");
    run r = import(s, root, T0);
    assert_int_equal(r.rc, FXB_INVALID_ARGUMENT);
    assert_int_equal(r.st.errors, 5);
    assert_int_equal(count_lines(r.errs), 5);
    assert_non_null(strstr(r.errs, "item XX-GA-0001: level: "));
    assert_non_null(strstr(r.errs, "item XX-GA-0002: guide.fee_basis: "));
    assert_non_null(strstr(r.errs, "item XX-JY-0001: guide.materials[0].name: "));
    assert_non_null(strstr(r.errs, "item XX-JY-0001: guide.plain_summary: "));
    assert_non_null(strstr(r.errs, "department xx-edu: name: "));
    assert_int_equal(dbsize(s), 0);
    run_free(&r);
    json_decref(root);
}

static void test_an_invalid_file_leaves_an_imported_catalogue_untouched(void **state)
{
    fxb_store *s = *state;
    json_t *root = base_file();
    import_ok(s, root, T0, NULL);
    long long r1 = rev(s), keys = dbsize(s);
    set_path(root, "items[0].guide.time_limit_working_days", "7"); /* would be a new version */
    set_path(root, "items[2].guide.fee_fen", "100");               /* but this is an error */
    run r = import(s, root, T0 + 1);
    assert_int_equal(r.rc, FXB_INVALID_ARGUMENT);
    run_free(&r);
    assert_int_equal(rev(s), r1);
    assert_int_equal(dbsize(s), keys);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_err err;
    Fxb__V1__ServiceItem *it;
    assert_int_equal(fxb_catalog_get(s, &a, "XX-GA-0001", 0, &it, &err), FXB_OK);
    assert_int_equal(it->current_version, 1);
    fxb_arena_free(&a);
    json_decref(root);
}

static void test_text_that_is_not_a_json_object_is_refused(void **state)
{
    fxb_store *s = *state;
    const char *bad[] = {"{\"items\": [", "[]", "{\"note\": \"placeholder\"}", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fxb_catalog_import_stats st;
        fxb_err err;
        char *errs = NULL;
        size_t len;
        FILE *f = open_memstream(&errs, &len);
        assert_int_equal(fxb_catalog_import(s, bad[i], strlen(bad[i]), T0, NULL, f, &st, &err),
                         FXB_INVALID_ARGUMENT);
        fclose(f);
        assert_true(st.errors > 0);
        assert_true(strlen(errs) > 0);
        free(errs);
    }
    assert_int_equal(dbsize(s), 0);
}

static void test_thousands_of_items_import_and_read(void **state)
{
    fxb_store *s = *state;
    json_t *root = base_file();
    json_t *items = json_object_get(root, "items");
    for (int i = 0; i < 3000; i++) {
        char code[32];
        snprintf(code, sizeof code, "XX-BULK-%05d", i);
        json_array_append_new(items, item(code, "批量事项", "xx-edu", "village", "education"));
    }
    fxb_catalog_import_stats st;
    import_ok(s, root, T0, &st);
    assert_int_equal(st.items, 3003);
    assert_int_equal(st.added, 3003);
    import_ok(s, root, T0 + 1, &st);
    assert_int_equal(st.unchanged, 3003);
    assert_false(st.changed);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_err err;
    Fxb__V1__ServiceItem *it;
    assert_int_equal(fxb_catalog_get(s, &a, "XX-BULK-02999", 0, &it, &err), FXB_OK);
    assert_int_equal(it->level, FXB__V1__ITEM_LEVEL__ITEM_LEVEL_VILLAGE);
    fxb_arena_free(&a);
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, each_setup, each_teardown)
        T(test_a_valid_file_imports_every_item_guide_and_bundle),
        T(test_the_categories_are_the_scope_categories),
        T(test_a_second_import_of_the_same_file_changes_nothing),
        T(test_a_changed_guide_is_a_new_version_and_the_old_one_stays_readable),
        T(test_a_renamed_item_keeps_its_guide_version),
        T(test_items_absent_from_the_file_are_kept_and_listed),
        T(test_get_refuses_a_malformed_code_and_an_unknown_item),
        T(test_each_rule_is_checked_and_nothing_is_written_on_error),
        T(test_every_error_of_a_file_is_reported_at_once),
        T(test_an_invalid_file_leaves_an_imported_catalogue_untouched),
        T(test_text_that_is_not_a_json_object_is_refused),
        T(test_thousands_of_items_import_and_read),
#undef T
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
