/* The wallet's store layer against a real Redis (db 2, flushed before each
 * test): licences are added with their number sealed and masked, a wallet
 * holds at most FXB_WALLET_MAX materials, reads are newest first and never
 * cross subjects, and in_use is the field the filing service counts in. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "services/material/material.h"
#include "store/crypto.h"

#define TEST_DB 2
#define NUMBER  "410702202400012345"
#define ACCOUNT "acc-wallet-1"
#define OTHER   "acc-wallet-2"
#define EID     "e0123456789abcdef01234567"

static char test_url[FXB_STORE_URL_MAX + 64];
static char key_dir[64];
static fxb_crypto *crypto;

typedef struct fixture {
    fxb_store *s;
    fxb_arena a;
} fixture;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    if (fxb_test_redis_url(TEST_DB, test_url, sizeof test_url) != 0)
        return -1;
    fxb_err err;
    snprintf(key_dir, sizeof key_dir, "/tmp/fxb-wallet-keys.XXXXXX");
    if (mkdtemp(key_dir) == NULL)
        return -1;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/data", key_dir);
    crypto = fxb_crypto_load(dir, true, &err);
    if (crypto == NULL) {
        fprintf(stderr, "keys: %s\n", err.message);
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
    if (r == NULL) {
        fxb_store_free(f->s);
        free(f);
        return -1;
    }
    freeReplyObject(r);
    fxb_arena_init(&f->a, 0);
    *state = f;
    return 0;
}

static int each_teardown(void **state)
{
    fixture *f = *state;
    fxb_arena_free(&f->a);
    fxb_store_free(f->s);
    free(f);
    return 0;
}

static fxb_licence household(void)
{
    return (fxb_licence){.type = "household_register",
                         .name = "居民户口簿",
                         .number = NUMBER,
                         .issuer = "新乡市公安局",
                         .valid_until_ms = 0,
                         .source_application = NULL};
}

static void add(fixture *f, const char *subject, int64_t now, char *mid)
{
    fxb_licence lic = household();
    fxb_err err;
    fxb_code rc = fxb_wallet_add_licence(f->s, crypto, subject, &lic, now, mid, &err);
    if (rc != FXB_OK)
        fail_msg("add_licence: %s %s", err.reason, err.message);
}

/* True when text occurs in any key or value of the database. */
static bool anywhere(fxb_store *s, const char *text)
{
    fxb_err err;
    redisReply *keys = fxb_store_command(s, &err, "KEYS *");
    assert_non_null(keys);
    bool found = false;
    for (size_t i = 0; i < keys->elements && !found; i++) {
        const char *k = keys->element[i]->str;
        if (strstr(k, text) != NULL)
            found = true;
        redisReply *t = fxb_store_command(s, &err, "TYPE %s", k);
        assert_non_null(t);
        redisReply *v = NULL;
        if (strcmp(t->str, "hash") == 0)
            v = fxb_store_command(s, &err, "HGETALL %s", k);
        else if (strcmp(t->str, "zset") == 0)
            v = fxb_store_command(s, &err, "ZRANGE %s 0 -1", k);
        freeReplyObject(t);
        for (size_t j = 0; v != NULL && j < v->elements && !found; j++)
            if (v->element[j]->type == REDIS_REPLY_STRING && strstr(v->element[j]->str, text))
                found = true;
        if (v != NULL)
            freeReplyObject(v);
    }
    freeReplyObject(keys);
    return found;
}

static const char *hget(fixture *f, const char *key, const char *field)
{
    fxb_err err;
    redisReply *r = fxb_store_command(f->s, &err, "HGET %s %s", key, field);
    assert_non_null(r);
    const char *v = r->type == REDIS_REPLY_STRING ? fxb_arena_strdup(&f->a, r->str) : NULL;
    freeReplyObject(r);
    return v;
}

static void test_a_licence_is_added_with_its_number_sealed_and_masked(void **state)
{
    fixture *f = *state;
    char mid[FXB_ID_MAX + 1];
    add(f, ACCOUNT, 1700000000000, mid);
    assert_true(strlen(mid) > 0);

    fxb_err err;
    Fxb__V1__Material *m;
    assert_int_equal(fxb_wallet_get(f->s, &f->a, ACCOUNT, mid, &m, &err), FXB_OK);
    assert_string_equal(m->material_id, mid);
    assert_int_equal(m->kind, FXB__V1__MATERIAL_KIND__MATERIAL_KIND_LICENCE);
    assert_string_equal(m->licence_type, "household_register");
    assert_string_equal(m->licence_name, "居民户口簿");
    assert_string_equal(m->issuer, "新乡市公安局");
    assert_string_equal(m->licence_number_masked, "41************2345");
    assert_int_equal(m->created_at_ms, 1700000000000);
    assert_int_equal(m->valid_until_ms, 0);
    assert_string_equal(m->source_application, "");
    assert_string_equal(m->file_name, "");

    /* the number is nowhere in clear; the sealed copy opens for the subject */
    assert_false(anywhere(f->s, NUMBER));
    assert_false(anywhere(f->s, "0001234"));
    const char *key = fxb_wallet_material_key(&f->a, ACCOUNT, mid);
    assert_non_null(key);
    assert_string_equal(key, fxb_arena_printf(&f->a, "{u:%s}:material:%s", ACCOUNT, mid));
    const char *sealed = hget(f, key, "number_enc");
    assert_non_null(sealed);
    assert_int_equal(strncmp(sealed, "v1.", 3), 0);
    uint8_t *pt;
    size_t len;
    assert_int_equal(fxb_crypto_open(crypto, "licence", ACCOUNT, sealed, &f->a, &pt, &len, &err),
                     FXB_OK);
    assert_int_equal(len, strlen(NUMBER));
    assert_memory_equal(pt, NUMBER, len);
    /* bound to its owner: another subject cannot open it */
    assert_int_not_equal(fxb_crypto_open(crypto, "licence", OTHER, sealed, &f->a, &pt, &len, &err),
                         FXB_OK);
    assert_string_equal(hget(f, key, "kind"), "licence");
    assert_string_equal(hget(f, key, FXB_MATERIAL_IN_USE_FIELD), "0");
}

static void test_short_numbers_are_masked_entirely(void **state)
{
    fixture *f = *state;
    const char *numbers[] = {"1234567", "A", "豫2024第0001号"};
    const char *masked[] = {"*******", "*", "豫2*****001号"};
    for (size_t i = 0; i < 3; i++) {
        fxb_licence lic = household();
        lic.number = numbers[i];
        char mid[FXB_ID_MAX + 1];
        fxb_err err;
        assert_int_equal(fxb_wallet_add_licence(f->s, crypto, ACCOUNT, &lic, 1, mid, &err), FXB_OK);
        Fxb__V1__Material *m;
        assert_int_equal(fxb_wallet_get(f->s, &f->a, ACCOUNT, mid, &m, &err), FXB_OK);
        assert_string_equal(m->licence_number_masked, masked[i]);
    }
}

static void test_a_wallet_holds_at_most_200_materials(void **state)
{
    fixture *f = *state;
    char mid[FXB_ID_MAX + 1];
    for (int i = 0; i < FXB_WALLET_MAX; i++)
        add(f, ACCOUNT, 1000 + i, mid);
    fxb_licence lic = household();
    fxb_err err;
    assert_int_equal(fxb_wallet_add_licence(f->s, crypto, ACCOUNT, &lic, 5000, mid, &err),
                     FXB_RESOURCE_EXHAUSTED);
    assert_string_equal(err.reason, FXB_WALLET_FULL);
    assert_string_equal(mid, "");
    Fxb__V1__Material **all;
    size_t n;
    assert_int_equal(fxb_wallet_list(f->s, &f->a, ACCOUNT, &all, &n, &err), FXB_OK);
    assert_int_equal(n, FXB_WALLET_MAX);
    /* the bound is per subject */
    add(f, OTHER, 5000, mid);
}

static void test_the_list_is_newest_first(void **state)
{
    fixture *f = *state;
    char m1[FXB_ID_MAX + 1], m2[FXB_ID_MAX + 1], m3[FXB_ID_MAX + 1];
    add(f, ACCOUNT, 1000, m1);
    add(f, ACCOUNT, 3000, m3);
    add(f, ACCOUNT, 2000, m2);
    char other[FXB_ID_MAX + 1];
    add(f, OTHER, 4000, other);
    fxb_err err;
    Fxb__V1__Material **all;
    size_t n;
    assert_int_equal(fxb_wallet_list(f->s, &f->a, ACCOUNT, &all, &n, &err), FXB_OK);
    assert_int_equal(n, 3);
    assert_string_equal(all[0]->material_id, m3);
    assert_string_equal(all[1]->material_id, m2);
    assert_string_equal(all[2]->material_id, m1);
    assert_int_equal(all[0]->created_at_ms, 3000);
    /* an empty wallet lists nothing */
    assert_int_equal(fxb_wallet_list(f->s, &f->a, "acc-empty", &all, &n, &err), FXB_OK);
    assert_int_equal(n, 0);
}

static void test_another_subjects_material_is_not_found(void **state)
{
    fixture *f = *state;
    char mid[FXB_ID_MAX + 1];
    add(f, ACCOUNT, 1000, mid);
    fxb_err err;
    Fxb__V1__Material *m;
    assert_int_equal(fxb_wallet_get(f->s, &f->a, OTHER, mid, &m, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, FXB_MATERIAL_NOT_FOUND);
    assert_null(m);
    assert_int_equal(fxb_wallet_get(f->s, &f->a, ACCOUNT, "nosuchmaterial", &m, &err),
                     FXB_NOT_FOUND);
    assert_int_equal(fxb_wallet_get(f->s, &f->a, ACCOUNT, "bad id}", &m, &err), FXB_NOT_FOUND);
}

static void test_in_use_is_counted_on_the_materials_hash(void **state)
{
    fixture *f = *state;
    char mid[FXB_ID_MAX + 1];
    add(f, ACCOUNT, 1000, mid);
    const char *key = fxb_wallet_material_key(&f->a, ACCOUNT, mid);
    fxb_err err;
    for (int i = 0; i < 2; i++) {
        redisReply *r =
            fxb_store_command(f->s, &err, "HINCRBY %s %s 1", key, FXB_MATERIAL_IN_USE_FIELD);
        assert_non_null(r);
        freeReplyObject(r);
    }
    assert_string_equal(hget(f, key, FXB_MATERIAL_IN_USE_FIELD), "2");
    Fxb__V1__Material *m;
    assert_int_equal(fxb_wallet_get(f->s, &f->a, ACCOUNT, mid, &m, &err), FXB_OK);
    /* a stray counter on a hash that holds no material is not a material */
    const char *stray = fxb_wallet_material_key(&f->a, ACCOUNT, "stray");
    redisReply *r =
        fxb_store_command(f->s, &err, "HINCRBY %s %s 1", stray, FXB_MATERIAL_IN_USE_FIELD);
    assert_non_null(r);
    freeReplyObject(r);
    r = fxb_store_command(f->s, &err, "ZADD {u:%s}:wallet 9999 stray", ACCOUNT);
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(fxb_wallet_get(f->s, &f->a, ACCOUNT, "stray", &m, &err), FXB_NOT_FOUND);
    Fxb__V1__Material **all;
    size_t n;
    assert_int_equal(fxb_wallet_list(f->s, &f->a, ACCOUNT, &all, &n, &err), FXB_OK);
    assert_int_equal(n, 1);
    assert_string_equal(all[0]->material_id, mid);
}

static void test_an_enterprise_wallet_lives_under_its_own_tag(void **state)
{
    fixture *f = *state;
    char mid[FXB_ID_MAX + 1];
    add(f, EID, 1000, mid);
    const char *key = fxb_wallet_material_key(&f->a, EID, mid);
    assert_string_equal(key, fxb_arena_printf(&f->a, "{e:%s}:material:%s", EID, mid));
    assert_string_equal(hget(f, key, "kind"), "licence");
    fxb_err err;
    redisReply *r = fxb_store_command(f->s, &err, "ZSCORE {e:%s}:wallet %s", EID, mid);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "1000");
    freeReplyObject(r);
}

static void test_invalid_licences_are_refused_and_nothing_is_written(void **state)
{
    fixture *f = *state;
    char long_number[FXB_LICENCE_NUMBER_MAX + 2], long_name[4 * FXB_LICENCE_TEXT_MAX];
    memset(long_number, '1', sizeof long_number - 1);
    long_number[sizeof long_number - 1] = '\0';
    long_name[0] = '\0';
    for (int i = 0; i < FXB_LICENCE_TEXT_MAX + 1; i++)
        strcat(long_name, "名");
    struct {
        const char *field;
        fxb_licence lic;
    } bad[] = {
        {"type", {.type = "", .name = "n", .number = "1", .issuer = "i"}},
        {"type", {.type = "Household", .name = "n", .number = "1", .issuer = "i"}},
        {"name", {.type = "t", .name = "", .number = "1", .issuer = "i"}},
        {"name", {.type = "t", .name = long_name, .number = "1", .issuer = "i"}},
        {"name", {.type = "t", .name = "a\nb", .number = "1", .issuer = "i"}},
        {"number", {.type = "t", .name = "n", .number = "", .issuer = "i"}},
        {"number", {.type = "t", .name = "n", .number = long_number, .issuer = "i"}},
        {"number", {.type = "t", .name = "n", .number = "\xff\xfe", .issuer = "i"}},
        {"issuer", {.type = "t", .name = "n", .number = "1", .issuer = NULL}},
        {"valid_until_ms",
         {.type = "t", .name = "n", .number = "1", .issuer = "i", .valid_until_ms = -1}},
        {"source_application",
         {.type = "t", .name = "n", .number = "1", .issuer = "i", .source_application = "a b"}},
    };
    fxb_err err;
    char mid[FXB_ID_MAX + 1];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(fxb_wallet_add_licence(f->s, crypto, ACCOUNT, &bad[i].lic, 1, mid, &err),
                         FXB_INVALID_ARGUMENT);
        assert_string_equal(err.reason, FXB_LICENCE_INVALID);
        assert_non_null(strstr(err.message, bad[i].field));
    }
    fxb_licence lic = household();
    assert_int_equal(fxb_wallet_add_licence(f->s, crypto, "not a subject", &lic, 1, mid, &err),
                     FXB_INVALID_ARGUMENT);
    redisReply *r = fxb_store_command(f->s, &err, "DBSIZE");
    assert_non_null(r);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, each_setup, each_teardown)
    const struct CMUnitTest tests[] = {
        T(test_a_licence_is_added_with_its_number_sealed_and_masked),
        T(test_short_numbers_are_masked_entirely),
        T(test_a_wallet_holds_at_most_200_materials),
        T(test_the_list_is_newest_first),
        T(test_another_subjects_material_is_not_found),
        T(test_in_use_is_counted_on_the_materials_hash),
        T(test_an_enterprise_wallet_lives_under_its_own_tag),
        T(test_invalid_licences_are_refused_and_nothing_is_written),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
