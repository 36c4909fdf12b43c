/* Account records live in {u:<id>}:account; the phone index fxb:phone:<idx>
 * maps the blind index of a number to its account. Creation claims the index
 * first (SET NX), then fills the record with HSETNX, so a crash between the
 * two leaves an index that the next sign-in completes. */
#include "auth/account.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/phone.h"
#include "auth/token.h"
#include "store/keys.h"

#define PHONE_INDEX_PREFIX "fxb:phone:"
#define PHONE_LABEL        "phone"

static fxb_script claim_script =
    FXB_SCRIPT("account_claim", "local cur = redis.call('GET', KEYS[1])\n"
                                "if cur then return cur end\n"
                                "redis.call('SET', KEYS[1], ARGV[1])\n"
                                "return ARGV[1]\n");

/* KEYS[1] account; ARGV: phone_enc, phone_idx, masked, now_ms, roles, level */
static fxb_script create_script =
    FXB_SCRIPT("account_create", "redis.call('HSETNX', KEYS[1], 'phone_enc', ARGV[1])\n"
                                 "redis.call('HSETNX', KEYS[1], 'phone_idx', ARGV[2])\n"
                                 "redis.call('HSETNX', KEYS[1], 'phone_masked', ARGV[3])\n"
                                 "redis.call('HSETNX', KEYS[1], 'created_ms', ARGV[4])\n"
                                 "redis.call('HSETNX', KEYS[1], 'roles', ARGV[5])\n"
                                 "redis.call('HSETNX', KEYS[1], 'level', ARGV[6])\n"
                                 "return redis.call('HGET', KEYS[1], 'phone_idx')\n");

/* KEYS[1] account; ARGV: roles to add, dept ("" keeps) */
static fxb_script grant_script =
    FXB_SCRIPT("account_grant",
               "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
               "  return redis.error_reply('FXB 5 ACCOUNT_NOT_FOUND no such account') end\n"
               "local r = tonumber(redis.call('HGET', KEYS[1], 'roles') or '1')\n"
               "local add = tonumber(ARGV[1])\n"
               "local out = 0\n"
               "for b = 0, 7 do\n"
               "  local bit = 2 ^ b\n"
               "  if (r % (2 * bit) >= bit) or (add % (2 * bit) >= bit) then out = out + bit end\n"
               "end\n"
               "redis.call('HSET', KEYS[1], 'roles', out)\n"
               "if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'dept', ARGV[2]) end\n"
               "return out\n");

/* KEYS[1] account; ARGV[1] level */
static fxb_script raise_script =
    FXB_SCRIPT("account_raise_level",
               "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
               "  return redis.error_reply('FXB 5 ACCOUNT_NOT_FOUND no such account') end\n"
               "local cur = tonumber(redis.call('HGET', KEYS[1], 'level') or '1')\n"
               "if tonumber(ARGV[1]) > cur then redis.call('HSET', KEYS[1], 'level', ARGV[1]) end\n"
               "return 1\n");

static fxb_script set_level_script =
    FXB_SCRIPT("account_set_level",
               "if redis.call('EXISTS', KEYS[1]) == 0 then\n"
               "  return redis.error_reply('FXB 5 ACCOUNT_NOT_FOUND no such account') end\n"
               "redis.call('HSET', KEYS[1], 'level', ARGV[1])\n"
               "return 1\n");

static bool account_key(char *out, size_t cap, const char *id)
{
    if (!fxb_key_id_valid(id))
        return false;
    return (size_t)snprintf(out, cap, "{u:%s}:account", id) < cap;
}

static fxb_code not_found(fxb_err *err)
{
    return fxb_err_set(err, FXB_NOT_FOUND, "ACCOUNT_NOT_FOUND", "账号不存在", "no such account");
}

static void copy_field(char *dst, size_t cap, const redisReply *r)
{
    dst[0] = '\0';
    if (r && r->type == REDIS_REPLY_STRING && r->len < cap) {
        memcpy(dst, r->str, r->len);
        dst[r->len] = '\0';
    }
}

fxb_code fxb_account_get(fxb_store *s, const char *id, fxb_account *out, fxb_err *err)
{
    char key[128];
    if (!account_key(key, sizeof key, id))
        return not_found(err);
    redisReply *r =
        fxb_store_command(s, err, "HMGET %s roles level dept phone_masked created_ms pw", key);
    if (r == NULL)
        return err->code;
    fxb_code rc = FXB_OK;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 6 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        rc = not_found(err);
    } else {
        memset(out, 0, sizeof *out);
        snprintf(out->id, sizeof out->id, "%s", id);
        out->roles = (uint32_t)strtoul(r->element[0]->str, NULL, 10);
        out->level = r->element[1]->type == REDIS_REPLY_STRING ? atoi(r->element[1]->str) : 1;
        if (out->level < FXB_LEVEL_PHONE || out->level > FXB_LEVEL_REAL_FACE)
            out->level = FXB_LEVEL_PHONE;
        copy_field(out->dept, sizeof out->dept, r->element[2]);
        copy_field(out->masked_phone, sizeof out->masked_phone, r->element[3]);
        out->created_ms =
            r->element[4]->type == REDIS_REPLY_STRING ? strtoll(r->element[4]->str, NULL, 10) : 0;
        out->has_password = r->element[5]->type == REDIS_REPLY_STRING && r->element[5]->len > 0;
    }
    freeReplyObject(r);
    return rc;
}

static fxb_code phone_index(const fxb_crypto *c, const char *phone, char key[64], fxb_err *err)
{
    char idx[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    if (fxb_crypto_index(c, PHONE_LABEL, phone, idx, err) != FXB_OK)
        return err->code;
    snprintf(key, 64, PHONE_INDEX_PREFIX "%s", idx);
    return FXB_OK;
}

fxb_code fxb_account_by_phone(fxb_store *s, const fxb_crypto *c, const char *phone,
                              fxb_account *out, fxb_err *err)
{
    char key[64];
    if (phone_index(c, phone, key, err) != FXB_OK)
        return err->code;
    redisReply *r = fxb_store_command(s, err, "GET %s", key);
    if (r == NULL)
        return err->code;
    char id[FXB_ID_MAX + 1];
    copy_field(id, sizeof id, r);
    freeReplyObject(r);
    if (id[0] == '\0')
        return not_found(err);
    return fxb_account_get(s, id, out, err);
}

/* Claims the phone's index for a new id (or finds the existing one) and
 * makes sure the record exists. */
static fxb_code ensure_account(fxb_store *s, const fxb_crypto *c, const char *phone, uint32_t roles,
                               int64_t now_ms, char id[FXB_ID_MAX + 1], bool *created, fxb_err *err)
{
    char key[64];
    if (phone_index(c, phone, key, err) != FXB_OK)
        return err->code;
    char fresh[FXB_ID_MAX + 1];
    if (fxb_token_new_id(fresh, err) != FXB_OK)
        return err->code;
    const char *keys[] = {key};
    const char *args[] = {fresh};
    redisReply *r = fxb_store_eval(s, err, &claim_script, 1, keys, 1, args, NULL);
    if (r == NULL)
        return err->code;
    copy_field(id, FXB_ID_MAX + 1, r);
    freeReplyObject(r);
    if (!fxb_key_id_valid(id))
        return fxb_err_set(err, FXB_DATA_LOSS, "ACCOUNT_INDEX_CORRUPT", "系统错误",
                           "the phone index holds an invalid account id");
    *created = strcmp(id, fresh) == 0;

    char akey[128];
    account_key(akey, sizeof akey, id);
    fxb_arena a;
    fxb_arena_init(&a, 64 * 1024);
    char *sealed = NULL;
    fxb_code rc = fxb_crypto_seal(c, PHONE_LABEL, id, (const uint8_t *)phone, strlen(phone), &a,
                                  &sealed, err);
    if (rc == FXB_OK) {
        char masked[FXB_PHONE_LEN + 1];
        fxb_phone_mask(phone, masked);
        char now[24], rl[16];
        snprintf(now, sizeof now, "%lld", (long long)now_ms);
        snprintf(rl, sizeof rl, "%u", roles);
        const char *k2[] = {akey};
        const char *a2[] = {sealed, key + strlen(PHONE_INDEX_PREFIX), masked, now, rl, "1"};
        redisReply *r2 = fxb_store_eval(s, err, &create_script, 1, k2, 6, a2, NULL);
        if (r2 == NULL)
            rc = err->code;
        else
            freeReplyObject(r2);
    }
    fxb_arena_free(&a);
    return rc;
}

fxb_code fxb_account_sign_in(fxb_store *s, const fxb_crypto *c, const char *phone, int64_t now_ms,
                             fxb_account *out, bool *created, fxb_err *err)
{
    char id[FXB_ID_MAX + 1];
    if (ensure_account(s, c, phone, FXB_ROLE_CITIZEN, now_ms, id, created, err) != FXB_OK)
        return err->code;
    return fxb_account_get(s, id, out, err);
}

fxb_code fxb_account_grant_role(fxb_store *s, const fxb_crypto *c, const char *phone,
                                uint32_t roles, const char *dept, int64_t now_ms, fxb_account *out,
                                fxb_err *err)
{
    if ((roles & FXB_ROLE_OFFICER) && (dept == NULL || dept[0] == '\0'))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "DEPARTMENT_REQUIRED", "缺少部门",
                           "an officer needs a department code");
    if (dept && dept[0] && (strlen(dept) > FXB_DEPT_MAX || !fxb_key_id_valid(dept)))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "DEPARTMENT_INVALID", "部门代码不正确",
                           "department code must be 1..%d of [A-Za-z0-9_-]", FXB_DEPT_MAX);
    char id[FXB_ID_MAX + 1];
    bool created = false;
    if (ensure_account(s, c, phone, FXB_ROLE_CITIZEN, now_ms, id, &created, err) != FXB_OK)
        return err->code;
    char akey[128], rl[16];
    account_key(akey, sizeof akey, id);
    snprintf(rl, sizeof rl, "%u", roles);
    const char *keys[] = {akey};
    const char *args[] = {rl, dept ? dept : ""};
    redisReply *r = fxb_store_eval(s, err, &grant_script, 1, keys, 2, args, NULL);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    return fxb_account_get(s, id, out, err);
}

fxb_code fxb_account_phone(fxb_store *s, const fxb_crypto *c, const char *id, fxb_arena *a,
                           char phone[12], fxb_err *err)
{
    char key[128];
    if (!account_key(key, sizeof key, id))
        return not_found(err);
    redisReply *r = fxb_store_command(s, err, "HGET %s phone_enc", key);
    if (r == NULL)
        return err->code;
    fxb_code rc = FXB_OK;
    uint8_t *pt = NULL;
    size_t len = 0;
    if (r->type != REDIS_REPLY_STRING)
        rc = not_found(err);
    else if (fxb_crypto_open(c, PHONE_LABEL, id, r->str, a, &pt, &len, err) != FXB_OK)
        rc = err->code;
    else if (len != FXB_PHONE_LEN)
        rc = fxb_err_set(err, FXB_DATA_LOSS, "PHONE_CORRUPT", "系统错误",
                         "the stored phone number is not one");
    else
        memcpy(phone, pt, FXB_PHONE_LEN + 1);
    if (pt != NULL)
        memset(pt, 0, len);
    freeReplyObject(r);
    return rc;
}

fxb_code fxb_account_password(fxb_store *s, const char *id, char *out, size_t cap, fxb_err *err)
{
    char key[128];
    if (!account_key(key, sizeof key, id))
        return not_found(err);
    redisReply *r = fxb_store_command(s, err, "HGET %s pw", key);
    if (r == NULL)
        return err->code;
    fxb_code rc = FXB_OK;
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len >= cap)
        rc = fxb_err_set(err, FXB_NOT_FOUND, "PASSWORD_NOT_SET", "未设置密码",
                         "the account has no password");
    else
        memcpy(out, r->str, r->len + 1);
    freeReplyObject(r);
    return rc;
}

fxb_code fxb_account_set_password(fxb_store *s, const char *id, const char *encoded, fxb_err *err)
{
    char key[128];
    if (!account_key(key, sizeof key, id))
        return not_found(err);
    redisReply *r = fxb_store_command(s, err, "HSET %s pw %s", key, encoded);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    return FXB_OK;
}

fxb_code fxb_account_raise_level(fxb_store *s, const char *id, int level, fxb_err *err)
{
    char key[128], lv[8];
    if (!account_key(key, sizeof key, id) || level < FXB_LEVEL_PHONE || level > FXB_LEVEL_REAL_FACE)
        return not_found(err);
    snprintf(lv, sizeof lv, "%d", level);
    const char *keys[] = {key};
    const char *args[] = {lv};
    redisReply *r = fxb_store_eval(s, err, &raise_script, 1, keys, 1, args, NULL);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    return FXB_OK;
}

fxb_code fxb_account_set_level(fxb_store *s, const char *id, int level, fxb_err *err)
{
    char key[128], lv[8];
    if (!account_key(key, sizeof key, id) || level < FXB_LEVEL_PHONE || level > FXB_LEVEL_REAL_FACE)
        return not_found(err);
    snprintf(lv, sizeof lv, "%d", level);
    const char *keys[] = {key};
    const char *args[] = {lv};
    redisReply *r = fxb_store_eval(s, err, &set_level_script, 1, keys, 1, args, NULL);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    return FXB_OK;
}
