/* CatalogService: the service items of Xinxiang with their versioned guides
 * (art. 8, 10, 13, 17, 22), public. Written only by `fxb-admin catalog
 * import` (catalog_import.c); read here and by the services that check
 * applications against a guide (fxb_catalog_get).
 *
 * Keys (global, not per owner: the catalogue belongs to nobody):
 *   fxb:item:<code>               hash: name, department, department_name,
 *                                 level (city|county|township|village),
 *                                 category (also read by auth/grant.c for
 *                                 category scopes: keep the name), version
 *                                 (current), and the summary fields
 *                                 immediate, notify_commit_allowed,
 *                                 tolerated_acceptance ("1"/"0"),
 *                                 time_limit_working_days, fee_fen,
 *                                 plain_summary, so lists need no guide
 *   fxb:item:<code>:guide:<v>     string: packed fxb.v1.Guide of version v
 *                                 (1, 2, ...); never overwritten, since
 *                                 applications refer to the version they
 *                                 were drafted on
 *   fxb:items                     sorted set (all scores 0) of item codes
 *   fxb:departments               hash: department code -> name
 *   fxb:categories                hash: category code -> name
 *   fxb:bundle:<code>             string: packed fxb.v1.Bundle
 *   fxb:bundles                   set of bundle codes
 *   fxb:catalog:rev               counter, incremented by every import
 *                                 script that changed something
 *
 * Lists and searches read an in-process snapshot of every item's summary,
 * rebuilt when fxb:catalog:rev differs from the snapshot's (one GET per
 * call). The rebuild runs under a mutex; readers hold a reference, so a
 * rebuild never frees a snapshot a worker is reading. The snapshot reads the
 * revision before the data, so a change that lands during a rebuild is
 * picked up by the next call. */
#include "services/catalog/catalog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/scope.h"
#include "services/catalog/catalog_import.h"
#include "server/text.h"
#include "store/keys.h"

#define PAGE_DEFAULT  20
#define PAGE_MAX      100
#define SMALL_REQUEST 256
#define KEYWORD_MAX   32 /* characters */
/* "i" + hex(code) (ListItems), "s" + rank + hex(code) (SearchItems) */
#define TOKEN_MAX            (2 + 2 * FXB_CATALOG_CODE_MAX)
#define SNAPSHOT_ARENA_LIMIT (512u * 1024u * 1024u)
#define PIPELINE_BATCH       256

#define ZH_BUSY "系统繁忙，请稍后重试"

/* Item hash fields read for a summary, in this order. */
static const char *const summary_fields[] = {"name",
                                             "department",
                                             "department_name",
                                             "level",
                                             "category",
                                             "version",
                                             "immediate",
                                             "notify_commit_allowed",
                                             "tolerated_acceptance",
                                             "time_limit_working_days",
                                             "fee_fen",
                                             "plain_summary"};
#define N_SUMMARY_FIELDS (sizeof summary_fields / sizeof summary_fields[0])

/* --- reading the store ------------------------------------------------------ */

static fxb_code oom_err(fxb_err *err)
{
    return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code shape_err(fxb_err *err, const char *what)
{
    return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                       "%s answered in an unexpected shape", what);
}

static const char *str_or_empty(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_STRING ? r->str : "";
}

/* Every stored bundle, unpacked into the arena, sorted by code. */
static fxb_code read_bundles(fxb_store *s, fxb_arena *a, Fxb__V1__Bundle ***out, size_t *n_out,
                             fxb_err *err)
{
    *out = NULL;
    *n_out = 0;
    redisReply *m = fxb_store_command(s, err, "SMEMBERS " FXB_CATALOG_KEY_BUNDLES);
    if (m == NULL)
        return err->code;
    if (m->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(m);
        return shape_err(err, "SMEMBERS of the bundles");
    }
    size_t n = m->elements;
    Fxb__V1__Bundle **list = fxb_arena_calloc(a, n ? n : 1, sizeof *list);
    fxb_code rc = list ? FXB_OK : oom_err(err);
    for (size_t i = 0; rc == FXB_OK && i < n; i += PIPELINE_BATCH) {
        size_t k = n - i < PIPELINE_BATCH ? n - i : PIPELINE_BATCH;
        fxb_store_cmd cmds[PIPELINE_BATCH];
        const char *argv[PIPELINE_BATCH][2];
        redisReply *replies[PIPELINE_BATCH];
        for (size_t j = 0; j < k; j++) {
            const char *code = str_or_empty(m->element[i + j]);
            argv[j][0] = "GET";
            argv[j][1] = fxb_arena_printf(a, FXB_CATALOG_KEY_BUNDLE_PREFIX "%s", code);
            if (argv[j][1] == NULL)
                argv[j][1] = FXB_CATALOG_KEY_BUNDLE_PREFIX;
            cmds[j] = (fxb_store_cmd){2, argv[j], NULL};
        }
        rc = fxb_store_pipeline(s, err, k, cmds, replies);
        for (size_t j = 0; rc == FXB_OK && j < k; j++) {
            if (replies[j]->type == REDIS_REPLY_STRING) {
                Fxb__V1__Bundle *b = fxb__v1__bundle__unpack(
                    fxb_arena_allocator(a), (size_t)replies[j]->len, (uint8_t *)replies[j]->str);
                if (b != NULL)
                    list[(*n_out)++] = b;
            }
        }
        for (size_t j = 0; rc == FXB_OK && j < k; j++)
            freeReplyObject(replies[j]);
    }
    freeReplyObject(m);
    if (rc != FXB_OK)
        return rc;
    /* by code: the first member of a Bundle is its code */
    for (size_t i = 1; i < *n_out; i++)
        for (size_t j = i; j > 0 && strcmp(list[j - 1]->code, list[j]->code) > 0; j--) {
            Fxb__V1__Bundle *t = list[j];
            list[j] = list[j - 1];
            list[j - 1] = t;
        }
    *out = list;
    return FXB_OK;
}

static bool bundle_has(const Fxb__V1__Bundle *b, const char *code)
{
    for (size_t i = 0; i < b->n_item_codes; i++)
        if (strcmp(b->item_codes[i], code) == 0)
            return true;
    return false;
}

/* Builds the item of code with its guide of version from the store (four
 * round trips: the item, the guide and category name, the bundles). */
static fxb_code catalog_build(fxb_store *s, fxb_arena *a, const char *code, uint32_t version,
                              Fxb__V1__ServiceItem **out, fxb_err *err)
{
    *out = NULL;
    if (!fxb_scope_item_code_valid(code))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "ITEM_CODE_INVALID", "事项编码格式不正确",
                           "an item code is 1..%d of [A-Za-z0-9._-]", FXB_CATALOG_CODE_MAX);
    redisReply *r = fxb_store_command(s, err,
                                      "HMGET " FXB_CATALOG_KEY_ITEM_PREFIX
                                      "%s name department department_name level category version",
                                      code);
    if (r == NULL)
        return err->code;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 6) {
        freeReplyObject(r);
        return shape_err(err, "HMGET of an item");
    }
    if (r->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return fxb_err_set(err, FXB_NOT_FOUND, "ITEM_NOT_FOUND", "未找到该办事事项",
                           "no service item %s", code);
    }
    Fxb__V1__ServiceItem *it = fxb_arena_alloc(a, sizeof *it);
    if (it == NULL) {
        freeReplyObject(r);
        return oom_err(err);
    }
    fxb__v1__service_item__init(it);
    it->code = fxb_arena_strdup(a, code);
    it->name = fxb_arena_strdup(a, str_or_empty(r->element[0]));
    it->department = fxb_arena_strdup(a, str_or_empty(r->element[1]));
    it->department_name = fxb_arena_strdup(a, str_or_empty(r->element[2]));
    it->level = fxb_catalog_level_parse(str_or_empty(r->element[3]));
    it->category = fxb_arena_strdup(a, str_or_empty(r->element[4]));
    it->current_version = (uint32_t)strtoul(str_or_empty(r->element[5]), NULL, 10);
    freeReplyObject(r);
    if (it->code == NULL || it->name == NULL || it->department == NULL ||
        it->department_name == NULL || it->category == NULL)
        return oom_err(err);
    uint32_t want = version ? version : it->current_version;
    if (want == 0 || want > it->current_version)
        return fxb_err_set(err, FXB_NOT_FOUND, "GUIDE_VERSION_NOT_FOUND", "未找到该版本的办事指南",
                           "item %s has no guide version %u (current %u)", code, want,
                           it->current_version);

    char guide_key[sizeof FXB_CATALOG_KEY_ITEM_PREFIX + FXB_CATALOG_CODE_MAX + 32];
    snprintf(guide_key, sizeof guide_key, FXB_CATALOG_KEY_ITEM_PREFIX "%s:guide:%u", code, want);
    const char *get[] = {"GET", guide_key};
    const char *cat[] = {"HGET", FXB_CATALOG_KEY_CATEGORIES, it->category};
    fxb_store_cmd cmds[] = {{2, get, NULL}, {3, cat, NULL}};
    redisReply *rs[2];
    fxb_code rc = fxb_store_pipeline(s, err, 2, cmds, rs);
    if (rc != FXB_OK)
        return rc;
    if (rs[0]->type == REDIS_REPLY_STRING)
        it->guide = fxb__v1__guide__unpack(fxb_arena_allocator(a), (size_t)rs[0]->len,
                                           (uint8_t *)rs[0]->str);
    bool missing = rs[0]->type != REDIS_REPLY_STRING;
    it->category_name = fxb_arena_strdup(a, str_or_empty(rs[1]));
    freeReplyObject(rs[0]);
    freeReplyObject(rs[1]);
    if (missing)
        return fxb_err_set(err, FXB_NOT_FOUND, "GUIDE_VERSION_NOT_FOUND", "未找到该版本的办事指南",
                           "item %s has no guide version %u", code, want);
    if (it->guide == NULL)
        return fxb_err_set(err, FXB_DATA_LOSS, "GUIDE_UNREADABLE", ZH_BUSY,
                           "guide version %u of item %s cannot be read", want, code);
    if (it->category_name == NULL)
        return oom_err(err);

    Fxb__V1__Bundle **bundles;
    size_t n_bundles;
    rc = read_bundles(s, a, &bundles, &n_bundles, err);
    if (rc != FXB_OK)
        return rc;
    it->bundles = fxb_arena_calloc(a, n_bundles ? n_bundles : 1, sizeof *it->bundles);
    if (it->bundles == NULL)
        return oom_err(err);
    for (size_t i = 0; i < n_bundles; i++)
        if (bundle_has(bundles[i], code))
            it->bundles[it->n_bundles++] = bundles[i]->code;
    *out = it;
    return FXB_OK;
}

/* --- the item cache --------------------------------------------------------- */

/* Built items (packed ServiceItem with its guide) by (code, version asked
 * for), valid while fxb:catalog:rev is the revision they were built at:
 * every import that changes anything moves the revision, and guide versions
 * are never rewritten. A hit costs one GET instead of four round trips (the
 * filing service reads the guide on every submit). */
#define ITEM_CACHE_SLOTS 4096 /* power of two; a full table is emptied */

typedef struct cached_item {
    char key[FXB_CATALOG_CODE_MAX + 16]; /* "<code>#<version>" ("" = free) */
    uint64_t stamp;                      /* revision and store creation time (fxb_catalog_get) */
    uint8_t *packed;
    size_t len;
} cached_item;

static pthread_mutex_t item_cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cached_item item_cache[ITEM_CACHE_SLOTS];
static size_t item_cache_used;

static size_t cache_slot(const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)h & (ITEM_CACHE_SLOTS - 1);
}

/* The unpacked item for key at rev from the cache, or NULL. */
static Fxb__V1__ServiceItem *cache_get(fxb_arena *a, const char *key, uint64_t stamp)
{
    Fxb__V1__ServiceItem *it = NULL;
    pthread_mutex_lock(&item_cache_mu);
    for (size_t n = 0, i = cache_slot(key); n < ITEM_CACHE_SLOTS;
         n++, i = (i + 1) & (ITEM_CACHE_SLOTS - 1)) {
        cached_item *c = &item_cache[i];
        if (c->key[0] == '\0')
            break;
        if (strcmp(c->key, key) == 0) {
            if (c->stamp == stamp)
                it = fxb__v1__service_item__unpack(fxb_arena_allocator(a), c->len, c->packed);
            break;
        }
    }
    pthread_mutex_unlock(&item_cache_mu);
    return it;
}

static void cache_put(const char *key, uint64_t stamp, const Fxb__V1__ServiceItem *it)
{
    size_t len = fxb__v1__service_item__get_packed_size(it);
    uint8_t *packed = malloc(len ? len : 1);
    if (packed == NULL)
        return;
    fxb__v1__service_item__pack(it, packed);
    pthread_mutex_lock(&item_cache_mu);
    if (item_cache_used >= ITEM_CACHE_SLOTS / 2) {
        for (size_t i = 0; i < ITEM_CACHE_SLOTS; i++) {
            free(item_cache[i].packed);
            item_cache[i] = (cached_item){0};
        }
        item_cache_used = 0;
    }
    size_t i = cache_slot(key);
    while (item_cache[i].key[0] != '\0' && strcmp(item_cache[i].key, key) != 0)
        i = (i + 1) & (ITEM_CACHE_SLOTS - 1);
    cached_item *c = &item_cache[i];
    if (c->key[0] == '\0') {
        snprintf(c->key, sizeof c->key, "%s", key);
        item_cache_used++;
    }
    free(c->packed);
    c->stamp = stamp;
    c->packed = packed;
    c->len = len;
    pthread_mutex_unlock(&item_cache_mu);
}

fxb_code fxb_catalog_get(fxb_store *s, fxb_arena *a, const char *code, uint32_t version,
                         Fxb__V1__ServiceItem **out, fxb_err *err)
{
    *out = NULL;
    if (!fxb_scope_item_code_valid(code))
        return catalog_build(s, a, code, version, out, err); /* its refusal */
    /* the revision, and the store's creation time: a store flushed and
     * loaded again restarts its revisions */
    const char *get[] = {"GET", FXB_CATALOG_KEY_REV};
    const char *born[] = {"HGET", FXB_KEY_META, "created_at"};
    fxb_store_cmd cmds[] = {{2, get, NULL}, {3, born, NULL}};
    redisReply *rs[2];
    fxb_code rc = fxb_store_pipeline(s, err, 2, cmds, rs);
    if (rc != FXB_OK)
        return rc;
    uint64_t rev = rs[0]->type == REDIS_REPLY_STRING ? strtoull(rs[0]->str, NULL, 10) : 0;
    uint64_t created = rs[1]->type == REDIS_REPLY_STRING ? strtoull(rs[1]->str, NULL, 10) : 0;
    freeReplyObject(rs[0]);
    freeReplyObject(rs[1]);
    uint64_t stamp = rev * 1000003u ^ created; /* one number for both */
    char key[FXB_CATALOG_CODE_MAX + 16];
    snprintf(key, sizeof key, "%s#%u", code, version);
    Fxb__V1__ServiceItem *hit = cache_get(a, key, stamp);
    if (hit != NULL) {
        *out = hit;
        return FXB_OK;
    }
    rc = catalog_build(s, a, code, version, out, err);
    if (rc == FXB_OK)
        cache_put(key, stamp, *out);
    return rc;
}

void fxb_catalog_cache_clear(void)
{
    pthread_mutex_lock(&item_cache_mu);
    for (size_t i = 0; i < ITEM_CACHE_SLOTS; i++) {
        free(item_cache[i].packed);
        item_cache[i] = (cached_item){0};
    }
    item_cache_used = 0;
    pthread_mutex_unlock(&item_cache_mu);
}

fxb_code fxb_catalog_bundle(fxb_store *s, fxb_arena *a, const char *code, Fxb__V1__Bundle **out,
                            fxb_err *err)
{
    *out = NULL;
    if (!fxb_scope_item_code_valid(code))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "BUNDLE_CODE_INVALID",
                           "“一件事”编码格式不正确", "a bundle code is 1..%d of [A-Za-z0-9._-]",
                           FXB_CATALOG_CODE_MAX);
    redisReply *r = fxb_store_command(s, err, "GET " FXB_CATALOG_KEY_BUNDLE_PREFIX "%s", code);
    if (r == NULL)
        return err->code;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return fxb_err_set(err, FXB_NOT_FOUND, "BUNDLE_NOT_FOUND", "未找到该“一件事”",
                           "no bundle %s", code);
    }
    *out = fxb__v1__bundle__unpack(fxb_arena_allocator(a), (size_t)r->len, (uint8_t *)r->str);
    freeReplyObject(r);
    if (*out == NULL)
        return fxb_err_set(err, FXB_DATA_LOSS, "BUNDLE_UNREADABLE", ZH_BUSY,
                           "bundle %s cannot be read", code);
    return FXB_OK;
}

/* --- the snapshot ------------------------------------------------------------- */

typedef struct snap_item {
    const char *code, *name, *department, *department_name, *category, *plain_summary;
    /* ASCII-lower-cased copies for search: the name, then the rest */
    const char *l_name, *l_code, *l_dept, *l_summary;
    Fxb__V1__ItemLevel level;
    uint32_t version, time_limit;
    int64_t fee_fen;
    bool immediate, notify_commit_allowed, tolerated_acceptance;
} snap_item;

typedef struct snap_count {
    const char *code, *name;
    uint32_t count;
} snap_count;

typedef struct snapshot {
    atomic_int refs;
    long long rev;
    fxb_arena arena;  /* everything below */
    snap_item *items; /* sorted by code */
    size_t n_items;
    snap_count cats[FXB_CATALOG_CATEGORIES]; /* sorted by code */
    snap_count *depts;                       /* departments with items, sorted by code */
    size_t n_depts;
    Fxb__V1__Bundle **bundles; /* sorted by code */
    size_t n_bundles;
} snapshot;

static pthread_mutex_t snap_mu = PTHREAD_MUTEX_INITIALIZER;
static snapshot *snap_current; /* guarded by snap_mu; holds one reference */

static void snap_unref(snapshot *sn)
{
    if (sn != NULL && atomic_fetch_sub(&sn->refs, 1) == 1) {
        fxb_arena_free(&sn->arena);
        free(sn);
    }
}

static char *lower_dup(fxb_arena *a, const char *s)
{
    char *d = fxb_arena_strdup(a, s);
    for (char *p = d; p != NULL && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return d;
}

static fxb_code read_rev(fxb_store *s, long long *rev, fxb_err *err)
{
    redisReply *r = fxb_store_command(s, err, "GET " FXB_CATALOG_KEY_REV);
    if (r == NULL)
        return err->code;
    *rev = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return FXB_OK;
}

/* A hash as field/value pairs (HGETALL), looked up by field. */
static const char *hash_get(const redisReply *kv, const char *field)
{
    for (size_t i = 0; kv != NULL && i + 1 < kv->elements; i += 2)
        if (kv->element[i]->type == REDIS_REPLY_STRING && strcmp(kv->element[i]->str, field) == 0)
            return str_or_empty(kv->element[i + 1]);
    return NULL;
}

static bool fill_snap_item(fxb_arena *a, const char *code, const redisReply *r, snap_item *it)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != N_SUMMARY_FIELDS ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return false; /* gone since ZRANGE, or not an item: left out */
    const redisReply *const *e = (const redisReply *const *)r->element;
    it->code = fxb_arena_strdup(a, code);
    it->name = fxb_arena_strdup(a, str_or_empty(e[0]));
    it->department = fxb_arena_strdup(a, str_or_empty(e[1]));
    it->department_name = fxb_arena_strdup(a, str_or_empty(e[2]));
    it->level = fxb_catalog_level_parse(str_or_empty(e[3]));
    it->category = fxb_arena_strdup(a, str_or_empty(e[4]));
    it->version = (uint32_t)strtoul(str_or_empty(e[5]), NULL, 10);
    it->immediate = strcmp(str_or_empty(e[6]), "1") == 0;
    it->notify_commit_allowed = strcmp(str_or_empty(e[7]), "1") == 0;
    it->tolerated_acceptance = strcmp(str_or_empty(e[8]), "1") == 0;
    it->time_limit = (uint32_t)strtoul(str_or_empty(e[9]), NULL, 10);
    it->fee_fen = strtoll(str_or_empty(e[10]), NULL, 10);
    it->plain_summary = fxb_arena_strdup(a, str_or_empty(e[11]));
    it->l_name = lower_dup(a, it->name ? it->name : "");
    it->l_code = lower_dup(a, code);
    it->l_dept = lower_dup(a, it->department_name ? it->department_name : "");
    it->l_summary = lower_dup(a, it->plain_summary ? it->plain_summary : "");
    return true;
}

static int snap_item_cmp(const void *a, const void *b)
{
    return strcmp(((const snap_item *)a)->code, ((const snap_item *)b)->code);
}

static int snap_count_cmp(const void *a, const void *b)
{
    return strcmp(((const snap_count *)a)->code, ((const snap_count *)b)->code);
}

static fxb_code snap_items(fxb_store *s, snapshot *sn, bool *oom, fxb_err *err)
{
    fxb_arena *a = &sn->arena;
    redisReply *codes = fxb_store_command(s, err, "ZRANGE " FXB_CATALOG_KEY_ITEMS " 0 -1");
    if (codes == NULL)
        return err->code;
    if (codes->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(codes);
        return shape_err(err, "ZRANGE of the items");
    }
    size_t n = codes->elements;
    sn->items = fxb_arena_calloc(a, n ? n : 1, sizeof *sn->items);
    fxb_code rc = sn->items ? FXB_OK : oom_err(err);
    for (size_t i = 0; rc == FXB_OK && i < n; i += PIPELINE_BATCH) {
        size_t k = n - i < PIPELINE_BATCH ? n - i : PIPELINE_BATCH;
        fxb_store_cmd cmds[PIPELINE_BATCH];
        const char *argv[PIPELINE_BATCH][2 + N_SUMMARY_FIELDS];
        redisReply *replies[PIPELINE_BATCH];
        char keys[PIPELINE_BATCH][sizeof FXB_CATALOG_KEY_ITEM_PREFIX + FXB_CATALOG_CODE_MAX + 1];
        for (size_t j = 0; j < k; j++) {
            const char *code = str_or_empty(codes->element[i + j]);
            if (!fxb_scope_item_code_valid(code))
                code = "-"; /* never an item: left out */
            snprintf(keys[j], sizeof keys[j], FXB_CATALOG_KEY_ITEM_PREFIX "%s", code);
            argv[j][0] = "HMGET";
            argv[j][1] = keys[j];
            for (size_t f = 0; f < N_SUMMARY_FIELDS; f++)
                argv[j][2 + f] = summary_fields[f];
            cmds[j] = (fxb_store_cmd){(int)(2 + N_SUMMARY_FIELDS), argv[j], NULL};
        }
        rc = fxb_store_pipeline(s, err, k, cmds, replies);
        if (rc != FXB_OK)
            break;
        for (size_t j = 0; j < k; j++) {
            const char *code = str_or_empty(codes->element[i + j]);
            snap_item *it = &sn->items[sn->n_items];
            if (fxb_scope_item_code_valid(code) && fill_snap_item(a, code, replies[j], it)) {
                if (it->code == NULL || it->l_summary == NULL || it->l_dept == NULL ||
                    it->l_name == NULL || it->l_code == NULL || it->category == NULL ||
                    it->department == NULL)
                    *oom = true;
                else
                    sn->n_items++;
            }
            freeReplyObject(replies[j]);
        }
    }
    freeReplyObject(codes);
    if (rc == FXB_OK && *oom)
        rc = oom_err(err);
    if (rc == FXB_OK)
        qsort(sn->items, sn->n_items, sizeof *sn->items, snap_item_cmp);
    return rc;
}

/* Category and department names and counts. */
static fxb_code snap_counts(fxb_store *s, snapshot *sn, fxb_err *err)
{
    fxb_arena *a = &sn->arena;
    const char *c1[] = {"HGETALL", FXB_CATALOG_KEY_CATEGORIES};
    const char *c2[] = {"HGETALL", FXB_CATALOG_KEY_DEPARTMENTS};
    fxb_store_cmd cmds[] = {{2, c1, NULL}, {2, c2, NULL}};
    redisReply *rs[2];
    fxb_code rc = fxb_store_pipeline(s, err, 2, cmds, rs);
    if (rc != FXB_OK)
        return rc;
    for (size_t i = 0; i < FXB_CATALOG_CATEGORIES; i++) {
        const char *name = hash_get(rs[0], fxb_catalog_categories[i]);
        sn->cats[i] =
            (snap_count){fxb_catalog_categories[i], fxb_arena_strdup(a, name ? name : ""), 0};
    }
    sn->depts = fxb_arena_calloc(a, sn->n_items ? sn->n_items : 1, sizeof *sn->depts);
    bool oom = sn->depts == NULL;
    for (size_t i = 0; !oom && i < sn->n_items; i++) {
        const snap_item *it = &sn->items[i];
        snap_count key = {it->category, NULL, 0};
        snap_count *c =
            bsearch(&key, sn->cats, FXB_CATALOG_CATEGORIES, sizeof *sn->cats, snap_count_cmp);
        if (c != NULL)
            c->count++;
        snap_count *d = NULL;
        for (size_t k = 0; k < sn->n_depts && d == NULL; k++)
            if (strcmp(sn->depts[k].code, it->department) == 0)
                d = &sn->depts[k];
        if (d == NULL) {
            const char *name = hash_get(rs[1], it->department);
            d = &sn->depts[sn->n_depts++];
            *d = (snap_count){it->department,
                              fxb_arena_strdup(a, name ? name : it->department_name), 0};
            oom = d->name == NULL;
        }
        d->count++;
    }
    freeReplyObject(rs[0]);
    freeReplyObject(rs[1]);
    for (size_t i = 0; i < FXB_CATALOG_CATEGORIES; i++)
        oom = oom || sn->cats[i].name == NULL;
    if (oom)
        return oom_err(err);
    qsort(sn->depts, sn->n_depts, sizeof *sn->depts, snap_count_cmp);
    return FXB_OK;
}

static fxb_code snap_build(fxb_store *s, snapshot **out, fxb_err *err)
{
    snapshot *sn = calloc(1, sizeof *sn);
    if (sn == NULL)
        return oom_err(err);
    atomic_init(&sn->refs, 1);
    fxb_arena_init(&sn->arena, SNAPSHOT_ARENA_LIMIT);
    bool oom = false;
    fxb_code rc = read_rev(s, &sn->rev, err);
    if (rc == FXB_OK)
        rc = snap_items(s, sn, &oom, err);
    if (rc == FXB_OK)
        rc = snap_counts(s, sn, err);
    if (rc == FXB_OK)
        rc = read_bundles(s, &sn->arena, &sn->bundles, &sn->n_bundles, err);
    if (rc != FXB_OK) {
        snap_unref(sn);
        return rc;
    }
    *out = sn;
    return FXB_OK;
}

/* A reference to a snapshot as current as fxb:catalog:rev; the caller
 * releases it with snap_unref. */
static fxb_code snap_acquire(fxb_store *s, snapshot **out, fxb_err *err)
{
    long long rev = 0;
    fxb_code rc = read_rev(s, &rev, err);
    if (rc != FXB_OK)
        return rc;
    pthread_mutex_lock(&snap_mu);
    /* Another worker may have rebuilt while this one waited: read the
     * revision again before rebuilding, so waiters do not rebuild in turn
     * (and a revision that went back, after a flush, still rebuilds). */
    if (snap_current != NULL && snap_current->rev != rev)
        rc = read_rev(s, &rev, err);
    if (rc == FXB_OK && (snap_current == NULL || snap_current->rev != rev)) {
        snapshot *fresh = NULL;
        rc = snap_build(s, &fresh, err);
        if (rc == FXB_OK) {
            snap_unref(snap_current);
            snap_current = fresh;
        }
    }
    if (rc == FXB_OK) {
        atomic_fetch_add(&snap_current->refs, 1);
        *out = snap_current;
    }
    pthread_mutex_unlock(&snap_mu);
    return rc;
}

static const char *category_name(const snapshot *sn, const char *code)
{
    snap_count key = {code, NULL, 0};
    const snap_count *c =
        bsearch(&key, sn->cats, FXB_CATALOG_CATEGORIES, sizeof *sn->cats, snap_count_cmp);
    return c ? c->name : "";
}

/* --- request checks and paging ------------------------------------------------ */

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code check_page_size(fxb_ctx *ctx, uint32_t page_size, uint32_t *out)
{
    if (page_size > PAGE_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PAGE_SIZE_INVALID",
                            "每页条数应在1到100之间", "page_size must be 1..%d (0 = %d)", PAGE_MAX,
                            PAGE_DEFAULT);
    *out = page_size ? page_size : PAGE_DEFAULT;
    return FXB_OK;
}

static fxb_code check_category(fxb_ctx *ctx, const char *category)
{
    if (category[0] != '\0' && !fxb_scope_category_known(category))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "CATEGORY_UNKNOWN", "事项分类不存在",
                            "category must be empty or one of the %d catalogue categories "
                            "(ListCategories)",
                            FXB_CATALOG_CATEGORIES);
    return FXB_OK;
}

static fxb_code bad_token(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PAGE_TOKEN_INVALID", "分页标记无效",
                        "page_token must be a next_page_token of the same method");
}

/* A page position: after (rank, code). */
typedef struct position {
    int rank;
    char code[FXB_CATALOG_CODE_MAX + 1];
} position;

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parses a token of kind ('i' or 's'); "" is the first page (*has = false). */
static bool token_parse(const char *tok, char kind, position *pos, bool *has)
{
    *has = false;
    pos->rank = 0;
    pos->code[0] = '\0';
    if (tok == NULL || tok[0] == '\0')
        return true;
    size_t n = strnlen(tok, TOKEN_MAX + 1);
    if (n > TOKEN_MAX || tok[0] != kind)
        return false;
    const char *hex = tok + 1;
    if (kind == 's') {
        if (tok[1] != '0' && tok[1] != '1')
            return false;
        pos->rank = tok[1] - '0';
        hex++;
    }
    size_t h = strlen(hex);
    if (h == 0 || h % 2 != 0 || h / 2 > FXB_CATALOG_CODE_MAX)
        return false;
    for (size_t i = 0; i < h / 2; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        pos->code[i] = (char)(hi * 16 + lo);
    }
    pos->code[h / 2] = '\0';
    if (!fxb_scope_item_code_valid(pos->code))
        return false;
    *has = true;
    return true;
}

static char *token_make(fxb_arena *a, char kind, int rank, const char *code)
{
    size_t n = strlen(code);
    char *t = fxb_arena_alloc(a, 3 + 2 * n);
    if (t == NULL)
        return NULL;
    size_t k = 0;
    t[k++] = kind;
    if (kind == 's')
        t[k++] = (char)('0' + rank);
    for (size_t i = 0; i < n; i++) {
        static const char digits[] = "0123456789abcdef";
        t[k++] = digits[(unsigned char)code[i] >> 4];
        t[k++] = digits[(unsigned char)code[i] & 15];
    }
    t[k] = '\0';
    return t;
}

/* A page of matches, collected in order: holds up to size summaries, counts
 * every match, and remembers whether any follows the page. */
typedef struct page {
    const snap_item **hits;
    int *ranks;
    size_t n, size;
    uint32_t total;
    bool more;
} page;

static void page_offer(page *p, const snap_item *it, int rank, const position *after, bool has)
{
    p->total++;
    if (has && (rank < after->rank || (rank == after->rank && strcmp(it->code, after->code) <= 0)))
        return;
    if (p->n < p->size) {
        p->hits[p->n] = it;
        p->ranks[p->n] = rank;
        p->n++;
    } else {
        p->more = true;
    }
}

static fxb_code page_reply(fxb_ctx *ctx, const snapshot *sn, const page *p, char kind,
                           Fxb__V1__ListItemsResponse *resp)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    Fxb__V1__ItemSummary **list = fxb_arena_calloc(a, p->n ? p->n : 1, sizeof *list);
    Fxb__V1__ItemSummary *sums = fxb_arena_calloc(a, p->n ? p->n : 1, sizeof *sums);
    if (list == NULL || sums == NULL)
        return out_of_memory(ctx);
    for (size_t i = 0; i < p->n; i++) {
        const snap_item *it = p->hits[i];
        Fxb__V1__ItemSummary *s = &sums[i];
        fxb__v1__item_summary__init(s);
        s->code = fxb_arena_strdup(a, it->code);
        s->name = fxb_arena_strdup(a, it->name);
        s->department = fxb_arena_strdup(a, it->department);
        s->department_name = fxb_arena_strdup(a, it->department_name);
        s->level = it->level;
        s->category = fxb_arena_strdup(a, it->category);
        s->category_name = fxb_arena_strdup(a, category_name(sn, it->category));
        s->current_version = it->version;
        s->immediate = it->immediate;
        s->notify_commit_allowed = it->notify_commit_allowed;
        s->tolerated_acceptance = it->tolerated_acceptance;
        s->time_limit_working_days = it->time_limit;
        s->fee_fen = it->fee_fen;
        s->plain_summary = fxb_arena_strdup(a, it->plain_summary);
        if (s->code == NULL || s->name == NULL || s->department == NULL ||
            s->department_name == NULL || s->category == NULL || s->category_name == NULL ||
            s->plain_summary == NULL)
            return out_of_memory(ctx);
        list[i] = s;
    }
    resp->items = list;
    resp->n_items = p->n;
    resp->total = p->total;
    if (p->more && p->n > 0) {
        resp->next_page_token = token_make(a, kind, p->ranks[p->n - 1], p->hits[p->n - 1]->code);
        if (resp->next_page_token == NULL)
            return out_of_memory(ctx);
    }
    return FXB_OK;
}

static fxb_code page_init(fxb_ctx *ctx, page *p, uint32_t size)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    *p = (page){.size = size};
    p->hits = fxb_arena_calloc(a, size, sizeof *p->hits);
    p->ranks = fxb_arena_calloc(a, size, sizeof *p->ranks);
    if (p->hits == NULL || p->ranks == NULL)
        return out_of_memory(ctx);
    return FXB_OK;
}

/* --- ListItems ------------------------------------------------------------------ */

static fxb_code list_items(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                           ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListItemsRequest *req = (const Fxb__V1__ListItemsRequest *)req_msg;
    Fxb__V1__ListItemsResponse *resp = (Fxb__V1__ListItemsResponse *)resp_msg;
    uint32_t size = 0;
    fxb_code rc = check_page_size(ctx, req->page_size, &size);
    if (rc != FXB_OK)
        return rc;
    if ((int)req->level < 0 || (int)req->level > 4)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "LEVEL_INVALID", "事项层级无效",
                            "level must be ITEM_LEVEL_UNSPECIFIED (all) or a known level");
    if ((rc = check_category(ctx, req->category)) != FXB_OK)
        return rc;
    if (req->department[0] != '\0' && !fxb_catalog_dept_valid(req->department))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "DEPARTMENT_INVALID", "部门编码格式不正确",
                            "department must be empty or 1..%d of [a-z0-9-]", FXB_CATALOG_DEPT_MAX);
    position after;
    bool has;
    if (!token_parse(req->page_token, 'i', &after, &has))
        return bad_token(ctx);
    page p;
    if ((rc = page_init(ctx, &p, size)) != FXB_OK)
        return rc;
    snapshot *sn;
    fxb_err err;
    if (snap_acquire(fxb_ctx_store(ctx), &sn, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    for (size_t i = 0; i < sn->n_items; i++) {
        const snap_item *it = &sn->items[i];
        if ((req->department[0] && strcmp(it->department, req->department) != 0) ||
            (req->level && it->level != req->level) ||
            (req->category[0] && strcmp(it->category, req->category) != 0))
            continue;
        page_offer(&p, it, 0, &after, has);
    }
    rc = page_reply(ctx, sn, &p, 'i', resp);
    snap_unref(sn);
    return rc;
}

/* --- SearchItems ---------------------------------------------------------------- */

static fxb_code search_items(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SearchItemsRequest *req = (const Fxb__V1__SearchItemsRequest *)req_msg;
    Fxb__V1__ListItemsResponse *resp = (Fxb__V1__ListItemsResponse *)resp_msg;
    uint32_t size = 0;
    fxb_code rc = check_page_size(ctx, req->page_size, &size);
    if (rc != FXB_OK)
        return rc;
    /* surrounding spaces do not count */
    const char *kw = req->keyword;
    while (*kw == ' ')
        kw++;
    size_t n = strlen(kw);
    while (n > 0 && kw[n - 1] == ' ')
        n--;
    long chars = fxb_text_chars(kw, n);
    if (chars < 1 || chars > KEYWORD_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "KEYWORD_INVALID", "请输入1到32个字的关键词",
                            "keyword must be 1..%d characters of text", KEYWORD_MAX);
    if ((rc = check_category(ctx, req->category)) != FXB_OK)
        return rc;
    position after;
    bool has;
    if (!token_parse(req->page_token, 's', &after, &has))
        return bad_token(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    char *needle = fxb_arena_strndup(a, kw, n);
    if (needle == NULL)
        return out_of_memory(ctx);
    for (char *q = needle; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q - 'A' + 'a');
    page p;
    if ((rc = page_init(ctx, &p, size)) != FXB_OK)
        return rc;
    snapshot *sn;
    fxb_err err;
    if (snap_acquire(fxb_ctx_store(ctx), &sn, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    /* name matches first, then the rest; each in code order */
    for (int rank = 0; rank < 2; rank++)
        for (size_t i = 0; i < sn->n_items; i++) {
            const snap_item *it = &sn->items[i];
            if (req->category[0] && strcmp(it->category, req->category) != 0)
                continue;
            bool in_name = strstr(it->l_name, needle) != NULL;
            bool hit = rank == 0 ? in_name
                                 : !in_name && (strstr(it->l_code, needle) != NULL ||
                                                strstr(it->l_dept, needle) != NULL ||
                                                strstr(it->l_summary, needle) != NULL);
            if (hit)
                page_offer(&p, it, rank, &after, has);
        }
    rc = page_reply(ctx, sn, &p, 's', resp);
    snap_unref(sn);
    return rc;
}

/* --- GetItem, GetBundle --------------------------------------------------------- */

static fxb_code get_item(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GetItemRequest *req = (const Fxb__V1__GetItemRequest *)req_msg;
    Fxb__V1__ServiceItem *resp = (Fxb__V1__ServiceItem *)resp_msg;
    Fxb__V1__ServiceItem *it;
    fxb_err err;
    if (fxb_catalog_get(fxb_ctx_store(ctx), fxb_ctx_arena(ctx), req->code, req->version, &it,
                        &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    *resp = *it;
    return FXB_OK;
}

static fxb_code get_bundle(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                           ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GetBundleRequest *req = (const Fxb__V1__GetBundleRequest *)req_msg;
    Fxb__V1__Bundle *resp = (Fxb__V1__Bundle *)resp_msg;
    Fxb__V1__Bundle *b;
    fxb_err err;
    if (fxb_catalog_bundle(fxb_ctx_store(ctx), fxb_ctx_arena(ctx), req->code, &b, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    *resp = *b;
    return FXB_OK;
}

/* --- ListCategories, ListDepartments, ListBundles ------------------------------ */

static fxb_code list_categories(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                ProtobufCMessage *resp_msg)
{
    Fxb__V1__ListCategoriesResponse *resp = (Fxb__V1__ListCategoriesResponse *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    snapshot *sn;
    fxb_err err;
    if (snap_acquire(fxb_ctx_store(ctx), &sn, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    Fxb__V1__Category **list = fxb_arena_calloc(a, FXB_CATALOG_CATEGORIES, sizeof *list);
    Fxb__V1__Category *cats = fxb_arena_calloc(a, FXB_CATALOG_CATEGORIES, sizeof *cats);
    bool oom = list == NULL || cats == NULL;
    for (size_t i = 0; !oom && i < FXB_CATALOG_CATEGORIES; i++) {
        fxb__v1__category__init(&cats[i]);
        cats[i].code = (char *)fxb_catalog_categories[i];
        cats[i].name = fxb_arena_strdup(a, sn->cats[i].name);
        cats[i].item_count = sn->cats[i].count;
        oom = cats[i].name == NULL;
        list[i] = &cats[i];
    }
    snap_unref(sn);
    if (oom)
        return out_of_memory(ctx);
    resp->categories = list;
    resp->n_categories = FXB_CATALOG_CATEGORIES;
    return FXB_OK;
}

static fxb_code list_departments(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                 ProtobufCMessage *resp_msg)
{
    Fxb__V1__ListDepartmentsResponse *resp = (Fxb__V1__ListDepartmentsResponse *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    snapshot *sn;
    fxb_err err;
    if (snap_acquire(fxb_ctx_store(ctx), &sn, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    size_t n = sn->n_depts;
    Fxb__V1__Department **list = fxb_arena_calloc(a, n ? n : 1, sizeof *list);
    Fxb__V1__Department *ds = fxb_arena_calloc(a, n ? n : 1, sizeof *ds);
    bool oom = list == NULL || ds == NULL;
    for (size_t i = 0; !oom && i < n; i++) {
        fxb__v1__department__init(&ds[i]);
        ds[i].code = fxb_arena_strdup(a, sn->depts[i].code);
        ds[i].name = fxb_arena_strdup(a, sn->depts[i].name);
        ds[i].item_count = sn->depts[i].count;
        oom = ds[i].code == NULL || ds[i].name == NULL;
        list[i] = &ds[i];
    }
    snap_unref(sn);
    if (oom)
        return out_of_memory(ctx);
    resp->departments = list;
    resp->n_departments = n;
    return FXB_OK;
}

static fxb_code list_bundles(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    Fxb__V1__ListBundlesResponse *resp = (Fxb__V1__ListBundlesResponse *)resp_msg;
    fxb_arena *a = fxb_ctx_arena(ctx);
    snapshot *sn;
    fxb_err err;
    if (snap_acquire(fxb_ctx_store(ctx), &sn, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    size_t n = sn->n_bundles;
    Fxb__V1__Bundle **list = fxb_arena_calloc(a, n ? n : 1, sizeof *list);
    bool oom = list == NULL;
    /* a copy in the call's arena: the snapshot may go before the reply */
    for (size_t i = 0; !oom && i < n; i++) {
        size_t len = protobuf_c_message_get_packed_size(&sn->bundles[i]->base);
        uint8_t *buf = fxb_arena_alloc(a, len ? len : 1);
        if (buf != NULL) {
            protobuf_c_message_pack(&sn->bundles[i]->base, buf);
            list[i] = fxb__v1__bundle__unpack(fxb_arena_allocator(a), len, buf);
        }
        oom = buf == NULL || list[i] == NULL;
    }
    snap_unref(sn);
    if (oom)
        return out_of_memory(ctx);
    resp->bundles = list;
    resp->n_bundles = n;
    return FXB_OK;
}

/* --- method table --------------------------------------------------------------- */

#define CATALOG_METHOD(name, req, resp, fn)                                                        \
    {                                                                                              \
        .path = "/fxb.v1.CatalogService/" name, .request = &req##__descriptor,                     \
        .response = &resp##__descriptor, .kind = FXB_RPC_UNARY, .unary = fn,                       \
        .access = {.kind = FXB_ACCESS_PUBLIC}, .limits = {                                         \
            .max_request_bytes = SMALL_REQUEST                                                     \
        }                                                                                          \
    }

static const fxb_method methods[] = {
    CATALOG_METHOD("ListItems", fxb__v1__list_items_request, fxb__v1__list_items_response,
                   list_items),
    CATALOG_METHOD("SearchItems", fxb__v1__search_items_request, fxb__v1__list_items_response,
                   search_items),
    CATALOG_METHOD("GetItem", fxb__v1__get_item_request, fxb__v1__service_item, get_item),
    CATALOG_METHOD("ListCategories", fxb__v1__list_categories_request,
                   fxb__v1__list_categories_response, list_categories),
    CATALOG_METHOD("ListDepartments", fxb__v1__list_departments_request,
                   fxb__v1__list_departments_response, list_departments),
    CATALOG_METHOD("ListBundles", fxb__v1__list_bundles_request, fxb__v1__list_bundles_response,
                   list_bundles),
    CATALOG_METHOD("GetBundle", fxb__v1__get_bundle_request, fxb__v1__bundle, get_bundle),
};

const fxb_service fxb_catalog_service = {
    .name = "fxb.v1.CatalogService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
