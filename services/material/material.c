/* MaterialService handlers and the wallet as the filing service reads it.
 * An upload streams through the blob store (store/blob.h) while it is
 * checked, so nothing but a temp file exists until every check passed;
 * the wallet entry is written last, by one script that keeps the bound.
 *
 * Keys (store/keys.h conventions; <t> is "u" for an account, "e" for an
 * enterprise id "e" + 24 hex; the subject is the caller, or the principal
 * of a delegated caller):
 *   {<t>:<subject>}:wallet            sorted set: material id, score created_at_ms
 *                                     (at most FXB_WALLET_MAX members)
 *   {<t>:<subject>}:material:<mid>    hash, one per material:
 *     kind                "upload" | "licence"
 *     file_name           uploads: as the client gave it (it may name a
 *                         person: stored, shown back, never logged)
 *     content_type        uploads: sniffed (application/pdf, image/jpeg, image/png)
 *     size, sha256        uploads: bytes and the blob's digest; several
 *                         entries may share one blob
 *     material_code       uploads: the guide material meant ("" none)
 *     created_at_ms
 *     in_use              integer: open applications using it (the filing
 *                         service HINCRBYs it); only 0 may be deleted
 *     licence_type, licence_name, issuer, valid_until_ms (0 = no end),
 *     source_application  licences ("" none)
 *     number_enc          licences: the number sealed (store/crypto.h,
 *                         label "licence", owner the subject)
 *     number_masked       licences: what is shown
 * Material ids are fxb_token_new_id ids (22 of [A-Za-z0-9_-]). Both keys
 * of a subject share its hash tag, so adding and deleting are single-slot
 * scripts. */
#include "services/material/material.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/scope.h"
#include "auth/token.h"
#include "server/log.h"
#include "server/text.h"
#include "store/inbox.h"
#include "store/keys.h"

#define CHUNK_MAX         262144 /* bytes of data per UploadChunk */
#define CHUNK_FRAMING     64     /* tag and length of the oneof field, with room */
#define FILE_NAME_MAX     100    /* characters */
#define FILE_NAME_BYTES   (4 * FILE_NAME_MAX)
#define MATERIAL_CODE_MAX 16
#define PAGE_DEFAULT      20
#define PAGE_MAX          100
#define PAGE_TOKEN_MAX    200 /* hex characters */
#define FETCH_BATCH       32  /* materials read per pipeline while paging */
#define SNIFF_MAX         8   /* the longest signature (PNG) */
#define SMALL_REQUEST     256
#define LICENCE_ARENA     (64 * 1024)

#define KIND_UPLOAD  "upload"
#define KIND_LICENCE "licence"
#define LABEL_NUMBER "licence"

#define ZH_BUSY "系统繁忙，请稍后重试"

static fxb_material_deps deps;
static fxb_blob_store *blobs;

/* --- scripts ---------------------------------------------------------------- */

/* KEYS[1] wallet, KEYS[2] the new material's hash; ARGV: material id,
 * created_at_ms, the bound, then the hash's field/value pairs. */
static fxb_script add_script = FXB_SCRIPT(
    "wallet_add",
    "if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then\n"
    "  return redis.error_reply('FXB 8 " FXB_WALLET_FULL " the wallet holds the most materials')\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then\n"
    "  return redis.error_reply('FXB 6 MATERIAL_ID_TAKEN a material id was drawn twice')\n"
    "end\n"
    "redis.call('HSET', KEYS[2], unpack(ARGV, 4))\n"
    "redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])\n"
    "return 1\n");

/* KEYS[1] wallet, KEYS[2] the material's hash; ARGV[1] material id. A hash
 * without a kind (a stray HINCRBY after a delete) is no material. */
static fxb_script delete_script = FXB_SCRIPT(
    "wallet_delete",
    "local m = redis.call('HMGET', KEYS[2], 'kind', '" FXB_MATERIAL_IN_USE_FIELD "')\n"
    "if not m[1] then\n"
    "  redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "  return redis.error_reply('FXB 5 " FXB_MATERIAL_NOT_FOUND " no such material')\n"
    "end\n"
    "if m[1] == '" KIND_LICENCE "' then\n"
    "  return redis.error_reply('FXB 9 " FXB_LICENCE_NOT_REMOVABLE " licences stay')\n"
    "end\n"
    "if (tonumber(m[2]) or 0) > 0 then\n"
    "  return redis.error_reply('FXB 9 " FXB_MATERIAL_IN_USE " an open application uses it')\n"
    "end\n"
    "redis.call('DEL', KEYS[2])\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "return 1\n");

/* KEYS[1] wallet, KEYS[2] the material's hash; ARGV[1] material id. Takes
 * back an upload whose call was cancelled after it was added (unless an
 * application uses it already). 1 removed, 0 kept. */
static fxb_script undo_script = FXB_SCRIPT(
    "wallet_undo_upload",
    "if (tonumber(redis.call('HGET', KEYS[2], '" FXB_MATERIAL_IN_USE_FIELD "')) or 0) > 0 then\n"
    "  return 0\n"
    "end\n"
    "redis.call('DEL', KEYS[2])\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "return 1\n");

/* --- setup ------------------------------------------------------------------ */

static void set_upload_limit(uint64_t max_upload_bytes);

void fxb_material_service_init(const fxb_material_deps *d)
{
    deps = *d;
    set_upload_limit(deps.max_upload_bytes);
    if (blobs == NULL) {
        fxb_err err;
        blobs = fxb_blob_fs_new(deps.data_dir, &err);
        if (blobs == NULL)
            fxb_log(FXB_LOG_ERROR, "material uploads disabled: %s", err.message);
    }
}

const fxb_blob_store *fxb_material_blobs(void)
{
    return blobs;
}

/* --- text checks ------------------------------------------------------------ */

/* 1..max characters of well-formed UTF-8 without controls (nor path
 * separators when no_slash). */
static bool text_valid(const char *s, size_t max_chars, bool no_slash)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, 4 * max_chars + 1);
    if (n == 0 || n > 4 * max_chars)
        return false;
    size_t chars = 0;
    for (size_t i = 0; i < n; chars++) {
        uint32_t cp;
        size_t len = fxb_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (len == 0 || fxb_text_is_control(cp) || (no_slash && (cp == '/' || cp == '\\')))
            return false;
        i += len;
    }
    return chars <= max_chars;
}

static bool code_valid(const char *s)
{
    size_t n = strnlen(s, MATERIAL_CODE_MAX + 1);
    if (n > MATERIAL_CODE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool licence_type_valid(const char *s)
{
    size_t n = s ? strnlen(s, FXB_LICENCE_TYPE_MAX + 1) : 0;
    if (n == 0 || n > FXB_LICENCE_TYPE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* A licence number shown: the first 2 and last 4 characters of 8 or more,
 * every character of a shorter one as '*' (out holds 4 bytes per
 * character of number + 1). */
static void mask_number(const char *number, char *out)
{
    size_t n = strlen(number), chars = 0;
    size_t starts[FXB_LICENCE_NUMBER_MAX + 1];
    for (size_t i = 0; i < n && chars < FXB_LICENCE_NUMBER_MAX;) {
        uint32_t cp;
        size_t len = fxb_utf8_next((const unsigned char *)number + i, n - i, &cp);
        starts[chars++] = i;
        i += len ? len : 1;
    }
    starts[chars] = n;
    size_t o = 0;
    for (size_t c = 0; c < chars; c++) {
        bool shown = chars >= 8 && (c < 2 || c >= chars - 4);
        if (shown) {
            memcpy(out + o, number + starts[c], starts[c + 1] - starts[c]);
            o += starts[c + 1] - starts[c];
        } else {
            out[o++] = '*';
        }
    }
    out[o] = '\0';
}

/* --- keys and reading --------------------------------------------------------- */

static char *wallet_key(fxb_arena *a, const char *subject)
{
    const char *tag = fxb_inbox_tag(subject);
    return tag ? fxb_key_owned(a, tag, subject, "wallet") : NULL;
}

char *fxb_wallet_material_key(fxb_arena *a, const char *subject, const char *material_id)
{
    const char *tag = fxb_inbox_tag(subject);
    if (tag == NULL || !fxb_key_id_valid(material_id))
        return NULL;
    char *suffix = fxb_arena_printf(a, "material:%s", material_id);
    return suffix ? fxb_key_owned(a, tag, subject, suffix) : NULL;
}

static fxb_code not_found(fxb_err *err)
{
    return fxb_err_set(err, FXB_NOT_FOUND, FXB_MATERIAL_NOT_FOUND, "材料不存在",
                       "no such material in this wallet");
}

static fxb_code oom(fxb_err *err)
{
    return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code bad_key(fxb_err *err)
{
    return fxb_err_set(err, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY,
                       "the subject's id cannot form a key");
}

/* An HGETALL reply into a new Material in the arena. FXB_NOT_FOUND when
 * the hash holds no material, RESOURCE_EXHAUSTED out of memory. */
static fxb_code material_from(fxb_arena *a, const char *mid, const redisReply *kv,
                              Fxb__V1__Material **out, fxb_err *err)
{
    *out = NULL;
    if (kv == NULL || kv->type != REDIS_REPLY_ARRAY)
        return not_found(err);
    const char *kind = fxb_store_hash_get(kv, "kind");
    if (kind == NULL)
        return not_found(err);
    Fxb__V1__Material *m = fxb_arena_alloc(a, sizeof *m);
    if (m == NULL)
        return oom(err);
    fxb__v1__material__init(m);
    m->kind = strcmp(kind, KIND_LICENCE) == 0 ? FXB__V1__MATERIAL_KIND__MATERIAL_KIND_LICENCE
                                              : FXB__V1__MATERIAL_KIND__MATERIAL_KIND_UPLOAD;
    struct {
        const char *name;
        char **dst;
    } strs[] = {
        {"file_name", &m->file_name},
        {"content_type", &m->content_type},
        {"sha256", &m->sha256},
        {"material_code", &m->material_code},
        {"licence_type", &m->licence_type},
        {"licence_name", &m->licence_name},
        {"number_masked", &m->licence_number_masked},
        {"issuer", &m->issuer},
        {"source_application", &m->source_application},
    };
    m->material_id = fxb_arena_strdup(a, mid);
    if (m->material_id == NULL)
        return oom(err);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        const char *v = fxb_store_hash_get(kv, strs[i].name);
        if (v == NULL)
            continue;
        *strs[i].dst = fxb_arena_strdup(a, v);
        if (*strs[i].dst == NULL)
            return oom(err);
    }
    const char *v;
    if ((v = fxb_store_hash_get(kv, "size")) != NULL)
        m->size = strtoull(v, NULL, 10);
    if ((v = fxb_store_hash_get(kv, "created_at_ms")) != NULL)
        m->created_at_ms = strtoll(v, NULL, 10);
    if ((v = fxb_store_hash_get(kv, "valid_until_ms")) != NULL)
        m->valid_until_ms = strtoll(v, NULL, 10);
    *out = m;
    return FXB_OK;
}

/* HGETALL of n materials in one pipeline; out[i] is NULL for an id whose
 * hash is gone (deleted meanwhile). */
static fxb_code fetch_materials(fxb_store *s, fxb_arena *a, const char *subject, char **mids,
                                size_t n, Fxb__V1__Material **out, fxb_err *err)
{
    if (n == 0)
        return FXB_OK;
    fxb_store_cmd *cmds = fxb_arena_calloc(a, n, sizeof *cmds);
    const char **argv = fxb_arena_calloc(a, 2 * n, sizeof *argv);
    redisReply **replies = fxb_arena_calloc(a, n, sizeof *replies);
    if (cmds == NULL || argv == NULL || replies == NULL)
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        argv[2 * i] = "HGETALL";
        argv[2 * i + 1] = fxb_wallet_material_key(a, subject, mids[i]);
        if (argv[2 * i + 1] == NULL)
            return bad_key(err);
        cmds[i] = (fxb_store_cmd){.argc = 2, .argv = &argv[2 * i]};
    }
    if (fxb_store_pipeline(s, err, n, cmds, replies) != FXB_OK)
        return err->code;
    fxb_code rc = FXB_OK;
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
        if (rc == FXB_OK && replies[i] != NULL && replies[i]->type == REDIS_REPLY_ERROR)
            rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                             "HGETALL of a material failed");
        else if (rc == FXB_OK) {
            fxb_code one = material_from(a, mids[i], replies[i], &out[i], err);
            if (one != FXB_OK && one != FXB_NOT_FOUND)
                rc = one;
        }
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
    }
    return rc;
}

/* The wallet's ids newest first with their scores (at most
 * FXB_WALLET_MAX), in the arena. */
static fxb_code wallet_ids(fxb_store *s, fxb_arena *a, const char *subject, char ***mids,
                           int64_t **scores, size_t *n, fxb_err *err)
{
    *n = 0;
    const char *wkey = wallet_key(a, subject);
    if (wkey == NULL)
        return bad_key(err);
    redisReply *r =
        fxb_store_command(s, err, "ZREVRANGE %s 0 %d WITHSCORES", wkey, FXB_WALLET_MAX - 1);
    if (r == NULL)
        return err->code;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        freeReplyObject(r);
        return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                           "ZREVRANGE of a wallet answered in an unexpected shape");
    }
    size_t count = r->elements / 2;
    *mids = fxb_arena_calloc(a, count ? count : 1, sizeof **mids);
    *scores = fxb_arena_calloc(a, count ? count : 1, sizeof **scores);
    if (*mids == NULL || *scores == NULL) {
        freeReplyObject(r);
        return oom(err);
    }
    for (size_t i = 0; i < count; i++) {
        const redisReply *m = r->element[2 * i], *sc = r->element[2 * i + 1];
        if (m->type != REDIS_REPLY_STRING || sc->type != REDIS_REPLY_STRING ||
            !fxb_key_id_valid(m->str))
            continue; /* not one of ours: never shown */
        (*mids)[*n] = fxb_arena_strdup(a, m->str);
        if ((*mids)[*n] == NULL) {
            freeReplyObject(r);
            return oom(err);
        }
        (*scores)[*n] = strtoll(sc->str, NULL, 10);
        (*n)++;
    }
    freeReplyObject(r);
    return FXB_OK;
}

fxb_code fxb_wallet_get(fxb_store *s, fxb_arena *a, const char *subject, const char *material_id,
                        Fxb__V1__Material **out, fxb_err *err)
{
    *out = NULL;
    if (fxb_inbox_tag(subject) == NULL)
        return bad_key(err);
    if (!fxb_key_id_valid(material_id))
        return not_found(err);
    char *key = fxb_wallet_material_key(a, subject, material_id);
    if (key == NULL)
        return oom(err);
    redisReply *r = fxb_store_command(s, err, "HGETALL %s", key);
    if (r == NULL)
        return err->code;
    fxb_code rc = material_from(a, material_id, r, out, err);
    freeReplyObject(r);
    return rc;
}

fxb_code fxb_wallet_list(fxb_store *s, fxb_arena *a, const char *subject, Fxb__V1__Material ***out,
                         size_t *n, fxb_err *err)
{
    *out = NULL;
    *n = 0;
    char **mids;
    int64_t *scores;
    size_t count;
    if (wallet_ids(s, a, subject, &mids, &scores, &count, err) != FXB_OK)
        return err->code;
    Fxb__V1__Material **all = fxb_arena_calloc(a, count ? count : 1, sizeof *all);
    if (all == NULL)
        return oom(err);
    if (fetch_materials(s, a, subject, mids, count, all, err) != FXB_OK)
        return err->code;
    size_t k = 0;
    for (size_t i = 0; i < count; i++)
        if (all[i] != NULL)
            all[k++] = all[i];
    *out = all;
    *n = k;
    return FXB_OK;
}

fxb_code fxb_wallet_add_licence(fxb_store *s, const fxb_crypto *c, const char *subject,
                                const fxb_licence *lic, int64_t now_ms, char *id_out, fxb_err *err)
{
    if (id_out != NULL)
        id_out[0] = '\0';
    const char *tag = fxb_inbox_tag(subject);
    if (tag == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_WALLET_SUBJECT_INVALID, ZH_BUSY,
                           "a wallet belongs to an account or an enterprise id");
    const char *bad = NULL;
    if (c == NULL || lic == NULL)
        bad = "licence";
    else if (!licence_type_valid(lic->type))
        bad = "type";
    else if (!text_valid(lic->name, FXB_LICENCE_TEXT_MAX, false))
        bad = "name";
    else if (lic->number == NULL ||
             strnlen(lic->number, FXB_LICENCE_NUMBER_MAX + 1) > FXB_LICENCE_NUMBER_MAX ||
             !text_valid(lic->number, FXB_LICENCE_NUMBER_MAX, false))
        bad = "number";
    else if (!text_valid(lic->issuer, FXB_LICENCE_TEXT_MAX, false))
        bad = "issuer";
    else if (lic->valid_until_ms < 0)
        bad = "valid_until_ms";
    else if (lic->source_application != NULL && lic->source_application[0] != '\0' &&
             !fxb_key_id_valid(lic->source_application))
        bad = "source_application";
    else if (now_ms < 0)
        bad = "now_ms";
    if (bad != NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, FXB_LICENCE_INVALID, ZH_BUSY,
                           "licence: %s is invalid", bad);

    char mid[FXB_ID_MAX + 1];
    if (fxb_token_new_id(mid, err) != FXB_OK)
        return err->code;
    fxb_arena a;
    fxb_arena_init(&a, LICENCE_ARENA);
    char *sealed = NULL;
    char masked[4 * FXB_LICENCE_NUMBER_MAX + 1];
    const char *keys[2] = {wallet_key(&a, subject), fxb_wallet_material_key(&a, subject, mid)};
    fxb_code rc = FXB_OK;
    if (keys[0] == NULL || keys[1] == NULL)
        rc = bad_key(err);
    else
        rc = fxb_crypto_seal(c, LABEL_NUMBER, subject, (const uint8_t *)lic->number,
                             strlen(lic->number), &a, &sealed, err);
    if (rc == FXB_OK) {
        mask_number(lic->number, masked);
        char now[24], until[24], max[16];
        snprintf(now, sizeof now, "%" PRId64, now_ms);
        snprintf(until, sizeof until, "%" PRId64, lic->valid_until_ms);
        snprintf(max, sizeof max, "%d", FXB_WALLET_MAX);
        const char *args[] = {mid,
                              now,
                              max,
                              "kind",
                              KIND_LICENCE,
                              "created_at_ms",
                              now,
                              FXB_MATERIAL_IN_USE_FIELD,
                              "0",
                              "licence_type",
                              lic->type,
                              "licence_name",
                              lic->name,
                              "number_enc",
                              sealed,
                              "number_masked",
                              masked,
                              "issuer",
                              lic->issuer,
                              "valid_until_ms",
                              until,
                              "source_application",
                              lic->source_application ? lic->source_application : ""};
        redisReply *r = fxb_store_eval(s, err, &add_script, 2, keys,
                                       (int)(sizeof args / sizeof args[0]), args, NULL);
        if (r == NULL) {
            rc = err->code;
            if (strcmp(err->reason, FXB_WALLET_FULL) == 0)
                snprintf(err->message_zh, sizeof err->message_zh,
                         "材料库已满（最多%d份），请先删除不再需要的材料", FXB_WALLET_MAX);
        } else {
            freeReplyObject(r);
            if (id_out != NULL)
                memcpy(id_out, mid, strlen(mid) + 1);
        }
    }
    fxb_arena_free(&a);
    return rc;
}

/* --- handlers: helpers ------------------------------------------------------ */

static fxb_code out_of_memory(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

static fxb_code bad_id(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "MATERIAL_ID_INVALID", "材料标识无效",
                        "material_id must be 1..%d of [A-Za-z0-9_-]", FXB_KEY_ID_MAX);
}

/* The subject: the caller's account, or a delegated caller's principal. */
static const char *subject_of(fxb_ctx *ctx)
{
    return fxb_ctx_caller(ctx)->account_id;
}

/* --- UploadMaterial ------------------------------------------------------------ */

typedef struct upload {
    bool have_header;
    char *file_name;
    char *material_code;
    char *expect_sha; /* NULL: not announced */
    uint64_t expect_size;
    uint64_t received;
    const char *content_type; /* NULL until the leading bytes tell */
    unsigned char head[SNIFF_MAX];
    size_t head_len;
    fxb_blob_writer *w; /* NULL until the first byte, and after commit */
    /* set once the upload is in the wallet, for on_end to take it back
     * when the call ends cancelled after all */
    char *added_mid;
    char *added_sha;
    bool blob_created;
} upload;

static const struct {
    const char *type;
    const char *magic;
    size_t len;
} signatures[] = {
    {"application/pdf", "%PDF-", 5},
    {"image/jpeg", "\xff\xd8\xff", 3},
    {"image/png", "\x89PNG\r\n\x1a\n", 8},
};

/* 1 with *type when head starts with a signature, 0 while head is still a
 * prefix of one, -1 when it can be none. */
static int sniff(const unsigned char *head, size_t n, const char **type)
{
    bool maybe = false;
    for (size_t i = 0; i < sizeof signatures / sizeof signatures[0]; i++) {
        size_t m = n < signatures[i].len ? n : signatures[i].len;
        if (memcmp(head, signatures[i].magic, m) != 0)
            continue;
        if (n >= signatures[i].len) {
            *type = signatures[i].type;
            return 1;
        }
        maybe = true;
    }
    return maybe ? 0 : -1;
}

static fxb_next refuse_type(fxb_ctx *ctx)
{
    fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "CONTENT_TYPE_NOT_ALLOWED",
                 "仅支持PDF、JPEG或PNG格式的文件",
                 "the content is not PDF, JPEG or PNG (judged by its leading bytes)");
    return FXB_NEXT_FINISH;
}

static fxb_next refuse_too_large(fxb_ctx *ctx)
{
    fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "UPLOAD_TOO_LARGE", "文件过大，请压缩后重新上传",
                 "the upload is larger than %" PRIu64 " bytes", deps.max_upload_bytes);
    return FXB_NEXT_FINISH;
}

static fxb_next refuse_size(fxb_ctx *ctx, const upload *up, uint64_t got)
{
    fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "UPLOAD_SIZE_MISMATCH",
                 "文件大小与声明不符，请重新上传",
                 "%" PRIu64 " bytes announced, %" PRIu64 " arrived", up->expect_size, got);
    return FXB_NEXT_FINISH;
}

_Static_assert(FXB_WALLET_MAX == 200, "the zh-CN text of WALLET_FULL names the bound");

static fxb_next refuse_full(fxb_ctx *ctx)
{
    fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, FXB_WALLET_FULL,
                 "材料库已满（最多200份），请先删除不再需要的材料",
                 "the wallet holds %d materials, the most allowed", FXB_WALLET_MAX);
    return FXB_NEXT_FINISH;
}

static fxb_next store_failed(fxb_ctx *ctx, const fxb_err *err)
{
    fxb_ctx_fail_err(ctx, err);
    return FXB_NEXT_FINISH;
}

/* ZCARD of the subject's wallet: refuses a full wallet before any byte is
 * stored (the add script checks again, atomically). */
static fxb_next check_room(fxb_ctx *ctx)
{
    const char *wkey = wallet_key(fxb_ctx_arena(ctx), subject_of(ctx));
    if (wkey == NULL) {
        fxb_err err;
        bad_key(&err);
        return store_failed(ctx, &err);
    }
    fxb_err err;
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err, "ZCARD %s", wkey);
    if (r == NULL)
        return store_failed(ctx, &err);
    bool full = r->type == REDIS_REPLY_INTEGER && r->integer >= FXB_WALLET_MAX;
    freeReplyObject(r);
    return full ? refuse_full(ctx) : FXB_NEXT_CONTINUE;
}

static fxb_next upload_header(fxb_ctx *ctx, upload *up, const Fxb__V1__UploadHeader *h)
{
    if (up->have_header) {
        fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "UPLOAD_HEADER_REPEATED", "上传请求格式有误",
                     "the header comes once, first");
        return FXB_NEXT_FINISH;
    }
    if (!text_valid(h->file_name, FILE_NAME_MAX, true)) {
        fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "FILE_NAME_INVALID",
                     "文件名应为1到100个字符，且不能包含斜杠或控制字符",
                     "file_name must be 1..%d characters of UTF-8 without '/', '\\\\' or "
                     "control characters",
                     FILE_NAME_MAX);
        return FXB_NEXT_FINISH;
    }
    const char *code = h->material_code ? h->material_code : "";
    const char *sha = h->sha256 ? h->sha256 : "";
    if (!code_valid(code)) {
        fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "UPLOAD_HEADER_INVALID", "上传请求格式有误",
                     "material_code must be 0..%d of [A-Za-z0-9_-]", MATERIAL_CODE_MAX);
        return FXB_NEXT_FINISH;
    }
    if (sha[0] != '\0' && !fxb_blob_digest_valid(sha)) {
        fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "UPLOAD_HEADER_INVALID", "上传请求格式有误",
                     "sha256 must be empty or %d lower-case hex digits", FXB_BLOB_HEX_LEN);
        return FXB_NEXT_FINISH;
    }
    if (h->size > deps.max_upload_bytes)
        return refuse_too_large(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    up->file_name = fxb_arena_strdup(a, h->file_name);
    up->material_code = fxb_arena_strdup(a, code);
    up->expect_sha = sha[0] ? fxb_arena_strdup(a, sha) : NULL;
    if (up->file_name == NULL || up->material_code == NULL || (sha[0] && up->expect_sha == NULL)) {
        out_of_memory(ctx);
        return FXB_NEXT_FINISH;
    }
    up->expect_size = h->size;
    up->have_header = true;
    return check_room(ctx);
}

static fxb_next upload_data(fxb_ctx *ctx, upload *up, const ProtobufCBinaryData *d)
{
    if (d->len > CHUNK_MAX) {
        fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "MESSAGE_TOO_LARGE", "提交的内容过大",
                     "a data chunk holds at most %d bytes", CHUNK_MAX);
        return FXB_NEXT_FINISH;
    }
    if (d->len == 0)
        return FXB_NEXT_CONTINUE;
    if (up->content_type == NULL) {
        size_t take = SNIFF_MAX - up->head_len;
        if (take > d->len)
            take = d->len;
        memcpy(up->head + up->head_len, d->data, take);
        up->head_len += take;
        if (sniff(up->head, up->head_len, &up->content_type) < 0)
            return refuse_type(ctx);
    }
    uint64_t total = up->received + d->len;
    if (total > deps.max_upload_bytes)
        return refuse_too_large(ctx);
    if (up->expect_size != 0 && total > up->expect_size)
        return refuse_size(ctx, up, total);
    fxb_err err;
    if (up->w == NULL && fxb_blob_begin(blobs, &up->w, &err) != FXB_OK)
        return store_failed(ctx, &err);
    if (fxb_blob_write(blobs, up->w, d->data, d->len, &err) != FXB_OK)
        return store_failed(ctx, &err);
    up->received = total;
    return FXB_NEXT_CONTINUE;
}

static fxb_next upload_start(fxb_ctx *ctx, const ProtobufCMessage *req)
{
    if (blobs == NULL) {
        fxb_ctx_fail(ctx, FXB_UNAVAILABLE, "MATERIAL_STORE_UNAVAILABLE", ZH_BUSY,
                     "the blob store of this server is not available");
        return FXB_NEXT_FINISH;
    }
    upload *up = fxb_arena_calloc(fxb_ctx_arena(ctx), 1, sizeof *up);
    if (up == NULL) {
        out_of_memory(ctx);
        return FXB_NEXT_FINISH;
    }
    fxb_ctx_set_user(ctx, up);
    return FXB_NEXT_CONTINUE;
}

static fxb_next upload_message(fxb_ctx *ctx, const ProtobufCMessage *msg)
{
    const Fxb__V1__UploadChunk *chunk = (const Fxb__V1__UploadChunk *)msg;
    upload *up = fxb_ctx_user(ctx);
    if (chunk->part_case == FXB__V1__UPLOAD_CHUNK__PART_HEADER && chunk->header != NULL)
        return upload_header(ctx, up, chunk->header);
    if (!up->have_header) {
        fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "UPLOAD_HEADER_REQUIRED", "上传请求格式有误",
                     "the first message must be the header");
        return FXB_NEXT_FINISH;
    }
    if (chunk->part_case == FXB__V1__UPLOAD_CHUNK__PART_DATA)
        return upload_data(ctx, up, &chunk->data);
    return FXB_NEXT_CONTINUE; /* an empty message carries nothing */
}

static fxb_next upload_half_close(fxb_ctx *ctx, ProtobufCMessage *resp_msg)
{
    Fxb__V1__Material *resp = (Fxb__V1__Material *)resp_msg;
    upload *up = fxb_ctx_user(ctx);
    /* the core may end a cancelled stream's reads as if the client had
     * finished sending: nothing is stored for a call known to be gone */
    if (fxb_ctx_cancelled(ctx)) {
        fxb_ctx_fail(ctx, FXB_CANCELLED, "CANCELLED", "请求已取消", "the upload was cancelled");
        return FXB_NEXT_FINISH;
    }
    if (!up->have_header) {
        fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "UPLOAD_HEADER_REQUIRED", "上传请求格式有误",
                     "the first message must be the header");
        return FXB_NEXT_FINISH;
    }
    if (up->received == 0) {
        fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "UPLOAD_EMPTY", "文件内容为空",
                     "the upload carried no data");
        return FXB_NEXT_FINISH;
    }
    if (up->content_type == NULL)
        return refuse_type(ctx); /* shorter than the signature it began */
    if (up->expect_size != 0 && up->received != up->expect_size)
        return refuse_size(ctx, up, up->received);
    fxb_err err;
    char sha[FXB_BLOB_HEX_LEN + 1];
    if (fxb_blob_digest(blobs, up->w, sha, &err) != FXB_OK)
        return store_failed(ctx, &err);
    if (up->expect_sha != NULL && CRYPTO_memcmp(sha, up->expect_sha, FXB_BLOB_HEX_LEN) != 0) {
        fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "UPLOAD_DIGEST_MISMATCH",
                     "文件校验失败，请重新上传",
                     "the SHA-256 of what arrived is not the one announced");
        return FXB_NEXT_FINISH;
    }
    if (check_room(ctx) != FXB_NEXT_CONTINUE)
        return FXB_NEXT_FINISH;

    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *subject = subject_of(ctx);
    char mid[FXB_ID_MAX + 1];
    if (fxb_token_new_id(mid, &err) != FXB_OK)
        return store_failed(ctx, &err);
    const char *keys[2] = {wallet_key(a, subject), fxb_wallet_material_key(a, subject, mid)};
    if (keys[0] == NULL || keys[1] == NULL) {
        bad_key(&err);
        return store_failed(ctx, &err);
    }
    bool created = false;
    fxb_blob_writer *w = up->w;
    up->w = NULL; /* commit frees it, whatever happens */
    if (fxb_blob_commit(blobs, w, NULL, &created, &err) != FXB_OK)
        return store_failed(ctx, &err);

    int64_t now = fxb_wall_ms();
    char now_text[24], size[24], max[16];
    snprintf(now_text, sizeof now_text, "%" PRId64, now);
    snprintf(size, sizeof size, "%" PRIu64, up->received);
    snprintf(max, sizeof max, "%d", FXB_WALLET_MAX);
    const char *args[] = {mid,
                          now_text,
                          max,
                          "kind",
                          KIND_UPLOAD,
                          "file_name",
                          up->file_name,
                          "content_type",
                          up->content_type,
                          "size",
                          size,
                          "sha256",
                          sha,
                          "material_code",
                          up->material_code,
                          "created_at_ms",
                          now_text,
                          FXB_MATERIAL_IN_USE_FIELD,
                          "0"};
    redisReply *r = fxb_store_eval(fxb_ctx_store(ctx), &err, &add_script, 2, keys,
                                   (int)(sizeof args / sizeof args[0]), args, NULL);
    if (r == NULL) {
        /* A blob this upload made has no other record: take it back. (One
         * that existed is shared and stays.) */
        fxb_err ignored;
        if (created)
            fxb_blob_remove(blobs, sha, &ignored);
        if (strcmp(err.reason, FXB_WALLET_FULL) == 0)
            return refuse_full(ctx);
        return store_failed(ctx, &err);
    }
    freeReplyObject(r);

    resp->material_id = fxb_arena_strdup(a, mid);
    resp->sha256 = fxb_arena_strdup(a, sha);
    if (resp->material_id == NULL || resp->sha256 == NULL) {
        out_of_memory(ctx); /* the entry stays: the client may list it */
        return FXB_NEXT_FINISH;
    }
    up->added_mid = resp->material_id;
    up->added_sha = resp->sha256;
    up->blob_created = created;
    resp->kind = FXB__V1__MATERIAL_KIND__MATERIAL_KIND_UPLOAD;
    resp->file_name = up->file_name;
    resp->content_type = (char *)up->content_type;
    resp->size = up->received;
    resp->material_code = up->material_code;
    resp->created_at_ms = now;
    return FXB_NEXT_FINISH;
}

/* A cancelled call whose upload reached the wallet (the client never
 * learned its id, or may not have): the entry goes, and the blob when this
 * upload made it. Best effort: the call is over either way. */
static void undo_upload(fxb_ctx *ctx, upload *up)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *subject = subject_of(ctx);
    const char *keys[2] = {wallet_key(a, subject),
                           fxb_wallet_material_key(a, subject, up->added_mid)};
    if (keys[0] == NULL || keys[1] == NULL)
        return;
    const char *args[] = {up->added_mid};
    fxb_err err;
    redisReply *r = fxb_store_eval(fxb_ctx_store(ctx), &err, &undo_script, 2, keys, 1, args, NULL);
    if (r == NULL)
        return;
    bool removed = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (removed && up->blob_created)
        fxb_blob_remove(blobs, up->added_sha, &err);
}

/* Whatever ended the call (a refusal, a cancel, a broken connection), an
 * unfinished write is dropped: its temp file goes. */
static void upload_end(fxb_ctx *ctx, bool cancelled)
{
    upload *up = fxb_ctx_user(ctx);
    if (up == NULL)
        return;
    if (up->w != NULL) {
        fxb_blob_abort(blobs, up->w);
        up->w = NULL;
    }
    if (cancelled && up->added_mid != NULL)
        undo_upload(ctx, up);
}

/* --- ListWallet --------------------------------------------------------------- */

/* Page tokens: hex of "<created_at_ms>:<material id>", the last material of
 * the page; the next page starts after it in wallet order. */
static char *token_encode(fxb_arena *a, int64_t score, const char *mid)
{
    char raw[24 + FXB_ID_MAX + 2];
    int n = snprintf(raw, sizeof raw, "%" PRId64 ":%s", score, mid);
    if (n < 0 || (size_t)n >= sizeof raw)
        return NULL;
    char *out = fxb_arena_alloc(a, 2 * (size_t)n + 1);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", (unsigned char)raw[i]);
    return out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool token_decode(const char *tok, int64_t *score, char mid[FXB_ID_MAX + 1])
{
    size_t n = strnlen(tok, PAGE_TOKEN_MAX + 1);
    if (n == 0 || n > PAGE_TOKEN_MAX || n % 2 != 0)
        return false;
    char raw[PAGE_TOKEN_MAX / 2 + 1];
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(tok[2 * i]), lo = hexval(tok[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        raw[i] = (char)(hi * 16 + lo);
    }
    raw[n / 2] = '\0';
    if (strlen(raw) != n / 2)
        return false;
    char *colon = strchr(raw, ':');
    if (colon == NULL || colon == raw || colon - raw > 19)
        return false;
    *colon = '\0';
    for (const char *p = raw; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    if (!fxb_key_id_valid(colon + 1))
        return false;
    *score = strtoll(raw, NULL, 10);
    memcpy(mid, colon + 1, strlen(colon + 1) + 1);
    return true;
}

static fxb_code list_wallet(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                            ProtobufCMessage *resp_msg)
{
    const Fxb__V1__ListWalletRequest *req = (const Fxb__V1__ListWalletRequest *)req_msg;
    Fxb__V1__ListWalletResponse *resp = (Fxb__V1__ListWalletResponse *)resp_msg;
    if (req->page_size > PAGE_MAX)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PAGE_SIZE_INVALID",
                            "每页条数应在1到100之间", "page_size must be 1..%d (0 = %d)", PAGE_MAX,
                            PAGE_DEFAULT);
    size_t page_size = req->page_size ? req->page_size : PAGE_DEFAULT;
    int kind = (int)req->kind;
    if (kind != FXB__V1__MATERIAL_KIND__MATERIAL_KIND_UNSPECIFIED &&
        kind != FXB__V1__MATERIAL_KIND__MATERIAL_KIND_UPLOAD &&
        kind != FXB__V1__MATERIAL_KIND__MATERIAL_KIND_LICENCE)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "KIND_INVALID", "材料类型无效",
                            "kind must be UNSPECIFIED, UPLOAD or LICENCE");
    bool after = req->page_token != NULL && req->page_token[0] != '\0';
    int64_t after_score = 0;
    char after_mid[FXB_ID_MAX + 1] = "";
    if (after && !token_decode(req->page_token, &after_score, after_mid))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PAGE_TOKEN_INVALID", "分页标记无效",
                            "page_token is not one this server gave");

    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_store *st = fxb_ctx_store(ctx);
    const char *subject = subject_of(ctx);
    fxb_err err;
    char **mids;
    int64_t *scores;
    size_t count;
    if (wallet_ids(st, a, subject, &mids, &scores, &count, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    /* wallet order: score descending, then id descending (ZREVRANGE) */
    size_t i = 0;
    if (after)
        while (i < count && (scores[i] > after_score ||
                             (scores[i] == after_score && strcmp(mids[i], after_mid) >= 0)))
            i++;
    Fxb__V1__Material **page = fxb_arena_calloc(a, page_size + 1, sizeof *page);
    int64_t *page_scores = fxb_arena_calloc(a, page_size + 1, sizeof *page_scores);
    Fxb__V1__Material *batch[FETCH_BATCH];
    if (page == NULL || page_scores == NULL)
        return out_of_memory(ctx);
    size_t n = 0;
    while (i < count && n <= page_size) {
        size_t take = count - i < FETCH_BATCH ? count - i : FETCH_BATCH;
        if (fetch_materials(st, a, subject, mids + i, take, batch, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
        for (size_t k = 0; k < take && n <= page_size; k++) {
            if (batch[k] == NULL || (kind != 0 && (int)batch[k]->kind != kind))
                continue;
            page_scores[n] = scores[i + k];
            page[n++] = batch[k];
        }
        i += take;
    }
    if (n > page_size) {
        n = page_size;
        resp->next_page_token = token_encode(a, page_scores[n - 1], page[n - 1]->material_id);
        if (resp->next_page_token == NULL)
            return out_of_memory(ctx);
    }
    resp->materials = page;
    resp->n_materials = n;
    return FXB_OK;
}

/* --- GetMaterial / DeleteMaterial ------------------------------------------------ */

static fxb_code get_material(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    const Fxb__V1__GetMaterialRequest *req = (const Fxb__V1__GetMaterialRequest *)req_msg;
    Fxb__V1__Material *resp = (Fxb__V1__Material *)resp_msg;
    if (!fxb_key_id_valid(req->material_id))
        return bad_id(ctx);
    fxb_err err;
    Fxb__V1__Material *m;
    if (fxb_wallet_get(fxb_ctx_store(ctx), fxb_ctx_arena(ctx), subject_of(ctx), req->material_id,
                       &m, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    *resp = *m;
    return FXB_OK;
}

static fxb_code delete_material(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                ProtobufCMessage *resp_msg)
{
    const Fxb__V1__DeleteMaterialRequest *req = (const Fxb__V1__DeleteMaterialRequest *)req_msg;
    if (!fxb_key_id_valid(req->material_id))
        return bad_id(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    const char *subject = subject_of(ctx);
    const char *keys[2] = {wallet_key(a, subject),
                           fxb_wallet_material_key(a, subject, req->material_id)};
    fxb_err err;
    if (keys[0] == NULL || keys[1] == NULL) {
        bad_key(&err);
        return fxb_ctx_fail_err(ctx, &err);
    }
    const char *args[] = {req->material_id};
    redisReply *r =
        fxb_store_eval(fxb_ctx_store(ctx), &err, &delete_script, 2, keys, 1, args, NULL);
    if (r == NULL) {
        if (strcmp(err.reason, FXB_MATERIAL_NOT_FOUND) == 0)
            not_found(&err);
        else if (strcmp(err.reason, FXB_LICENCE_NOT_REMOVABLE) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s", "电子证照不能删除");
        else if (strcmp(err.reason, FXB_MATERIAL_IN_USE) == 0)
            snprintf(err.message_zh, sizeof err.message_zh, "%s",
                     "该材料正被办理中的事项使用，暂不能删除");
        return fxb_ctx_fail_err(ctx, &err);
    }
    freeReplyObject(r);
    /* the blob stays: other entries may share it */
    return FXB_OK;
}

/* --- method table --------------------------------------------------------------- */

static const fxb_stream_ops upload_ops = {
    .on_start = upload_start,
    .on_message = upload_message,
    .on_half_close = upload_half_close,
    .on_end = upload_end,
};

#define WALLET_WRITER                                                                              \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .delegable = true, .scope = FXB_CAP_FILING_SUBMIT            \
    }
#define WALLET_READER                                                                              \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN, .delegable = true, .scope = FXB_CAP_FILING_READ              \
    }

/* Not const: the upload's message bound follows FXB_UPLOAD_MAX_BYTES
 * (set by fxb_material_service_init, before the server starts). */
static fxb_method methods[] = {
    {.path = "/fxb.v1.MaterialService/UploadMaterial",
     .request = &fxb__v1__upload_chunk__descriptor,
     .response = &fxb__v1__material__descriptor,
     .kind = FXB_RPC_CLIENT_STREAMING,
     .stream = &upload_ops,
     .access = WALLET_WRITER,
     .limits = {.max_request_bytes = CHUNK_MAX + CHUNK_FRAMING}},
    {.path = "/fxb.v1.MaterialService/ListWallet",
     .request = &fxb__v1__list_wallet_request__descriptor,
     .response = &fxb__v1__list_wallet_response__descriptor,
     .unary = list_wallet,
     .access = WALLET_READER,
     .limits = {.max_request_bytes = SMALL_REQUEST + PAGE_TOKEN_MAX}},
    {.path = "/fxb.v1.MaterialService/GetMaterial",
     .request = &fxb__v1__get_material_request__descriptor,
     .response = &fxb__v1__material__descriptor,
     .unary = get_material,
     .access = WALLET_READER,
     .limits = {.max_request_bytes = SMALL_REQUEST}},
    {.path = "/fxb.v1.MaterialService/DeleteMaterial",
     .request = &fxb__v1__delete_material_request__descriptor,
     .response = &fxb__v1__delete_material_response__descriptor,
     .unary = delete_material,
     .access = WALLET_WRITER,
     .limits = {.max_request_bytes = SMALL_REQUEST}},
};

/* The header, then as many 1-byte chunks as the cap allows, then one more:
 * that one the handler refuses UPLOAD_TOO_LARGE. */
static void set_upload_limit(uint64_t max_upload_bytes)
{
    uint64_t msgs = max_upload_bytes + 2;
    methods[0].limits.max_messages = msgs > UINT32_MAX ? UINT32_MAX : (uint32_t)msgs;
}

const fxb_service fxb_material_service = {
    .name = "fxb.v1.MaterialService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
