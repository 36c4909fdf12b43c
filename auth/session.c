/* Keys, all under the account's hash tag so every script is slot-local:
 *   {u:A}:sess:<sid>   hash: status active|revoked, device_id, device_name,
 *                      created_ms, last_used_ms, auth_time_ms, abs_exp_ms
 *   {u:A}:sessions     zset sid -> created_ms (active sessions)
 *   {u:A}:devices      hash device_id -> sid
 *   {u:A}:rt:<sha256>  hash: sid, status current|rotated, idle_exp_ms,
 *                      abs_exp_ms; expires at abs_exp_ms
 * A rotated refresh token is kept until its absolute expiry so that its
 * reuse is recognised for as long as it could have been valid. */
#include "auth/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>

#include "store/keys.h"

/* Revoked sessions are kept this long for reuse detection and listing. */
#define REVOKED_KEEP_MS (FXB_REFRESH_ABSOLUTE_MS)

/* KEYS: sess, sessions, devices, rt. ARGV: sid, device_id, device_name, now,
 * abs_exp, idle_exp, max_sessions. Returns {replaced_sid, oldest_sid}. */
static fxb_script open_script = FXB_SCRIPT(
    "session_open",
    "local old = redis.call('HGET', KEYS[3], ARGV[2]) or ''\n"
    "redis.call('HSET', KEYS[1], 'status', 'active', 'device_id', ARGV[2], 'device_name', "
    "ARGV[3],\n"
    "  'created_ms', ARGV[4], 'last_used_ms', ARGV[4], 'auth_time_ms', ARGV[4],\n"
    "  'abs_exp_ms', ARGV[5])\n"
    "redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[5]) + 60000)\n"
    "redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])\n"
    "redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])\n"
    "redis.call('HSET', KEYS[4], 'sid', ARGV[1], 'status', 'current', 'idle_exp_ms', ARGV[6],\n"
    "  'abs_exp_ms', ARGV[5])\n"
    "redis.call('PEXPIREAT', KEYS[4], ARGV[5])\n"
    "local oldest = ''\n"
    "if redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[7]) then\n"
    "  oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]\n"
    "end\n"
    "return {old, oldest}\n");

/* KEYS: sess, sessions, devices. ARGV: sid, now, keep_ms. 1 if it was active. */
static fxb_script end_script = FXB_SCRIPT(
    "session_end", "redis.call('ZREM', KEYS[2], ARGV[1])\n"
                   "local st = redis.call('HMGET', KEYS[1], 'status', 'device_id')\n"
                   "if st[2] and redis.call('HGET', KEYS[3], st[2]) == ARGV[1] then\n"
                   "  redis.call('HDEL', KEYS[3], st[2]) end\n"
                   "if st[1] ~= 'active' then return 0 end\n"
                   "redis.call('HSET', KEYS[1], 'status', 'revoked', 'revoked_ms', ARGV[2])\n"
                   "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
                   "return 1\n");

/* KEYS: rt_old, rt_new, sess, sessions, devices. ARGV: sid, now, idle_ms.
 * Returns {'OK', idle_exp, abs_exp, auth_time} or {'REUSED'}. */
static fxb_script rotate_script = FXB_SCRIPT(
    "session_rotate",
    "local rt = redis.call('HMGET', KEYS[1], 'sid', 'status', 'idle_exp_ms', 'abs_exp_ms')\n"
    "if not rt[1] or rt[1] ~= ARGV[1] then\n"
    "  return redis.error_reply('FXB 16 REFRESH_INVALID unknown refresh token') end\n"
    "local st = redis.call('HMGET', KEYS[3], 'status', 'auth_time_ms', 'device_id')\n"
    "if st[1] ~= 'active' then\n"
    "  return redis.error_reply('FXB 16 SESSION_REVOKED the session has ended') end\n"
    "if rt[2] ~= 'current' then\n"
    "  redis.call('HSET', KEYS[3], 'status', 'revoked', 'revoked_ms', ARGV[2],\n"
    "    'revoked_reason', 'refresh_reuse')\n"
    "  redis.call('ZREM', KEYS[4], ARGV[1])\n"
    "  if st[3] and redis.call('HGET', KEYS[5], st[3]) == ARGV[1] then\n"
    "    redis.call('HDEL', KEYS[5], st[3]) end\n"
    "  return {'REUSED'}\n"
    "end\n"
    "local now = tonumber(ARGV[2])\n"
    "local abs = tonumber(rt[4])\n"
    "if now >= tonumber(rt[3]) or now >= abs then\n"
    "  return redis.error_reply('FXB 16 REFRESH_EXPIRED the refresh token has expired') end\n"
    "local idle = math.min(now + tonumber(ARGV[3]), abs)\n"
    "redis.call('HSET', KEYS[1], 'status', 'rotated', 'rotated_ms', ARGV[2])\n"
    "redis.call('HSET', KEYS[2], 'sid', ARGV[1], 'status', 'current', 'idle_exp_ms', idle,\n"
    "  'abs_exp_ms', abs)\n"
    "redis.call('PEXPIREAT', KEYS[2], abs)\n"
    "redis.call('HSET', KEYS[3], 'last_used_ms', ARGV[2])\n"
    "return {'OK', tostring(idle), tostring(abs), st[2] or '0'}\n");

/* KEYS: sess. ARGV: now. */
static fxb_script mark_auth_script =
    FXB_SCRIPT("session_mark_auth",
               "if redis.call('HGET', KEYS[1], 'status') ~= 'active' then\n"
               "  return redis.error_reply('FXB 16 SESSION_REVOKED the session has ended') end\n"
               "redis.call('HSET', KEYS[1], 'auth_time_ms', ARGV[1], 'last_used_ms', ARGV[1])\n"
               "return 1\n");

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static bool random_secret(char out[FXB_REFRESH_SECRET_CHARS + 1])
{
    unsigned char b[33];
    if (getrandom(b, 32, 0) != 32)
        return false;
    b[32] = 0;
    size_t o = 0;
    for (size_t i = 0; i < 32; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)(i + 1 < 32 ? b[i + 1] : 0) << 8 |
                     (uint32_t)(i + 2 < 32 ? b[i + 2] : 0);
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        if (i + 1 < 32)
            out[o++] = B64URL[(v >> 6) & 63];
        if (i + 2 < 32)
            out[o++] = B64URL[v & 63];
    }
    out[o] = '\0';
    return o == FXB_REFRESH_SECRET_CHARS;
}

static bool new_id(char out[FXB_ID_MAX + 1])
{
    char s[FXB_REFRESH_SECRET_CHARS + 1];
    if (!random_secret(s))
        return false;
    memcpy(out, s, 22); /* 132 bits */
    out[22] = '\0';
    return true;
}

static void sha256_hex(const char *s, char out[65])
{
    unsigned char d[32];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), d, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static bool key_of(char *out, size_t cap, const char *acct, const char *suffix, const char *id)
{
    if (!fxb_key_id_valid(acct))
        return false;
    int n = id ? snprintf(out, cap, "{u:%s}:%s%s", acct, suffix, id)
               : snprintf(out, cap, "{u:%s}:%s", acct, suffix);
    return n > 0 && (size_t)n < cap;
}

static void copy_str(char *dst, size_t cap, const redisReply *r)
{
    dst[0] = '\0';
    if (r && r->type == REDIS_REPLY_STRING && r->len < cap) {
        memcpy(dst, r->str, r->len);
        dst[r->len] = '\0';
    }
}

static fxb_code refresh_invalid(fxb_err *err)
{
    return fxb_err_set(err, FXB_UNAUTHENTICATED, "REFRESH_INVALID", "登录已失效，请重新登录",
                       "unknown or malformed refresh token");
}

/* UTF-8 validity and character count, no control characters. */
static bool utf8_text_ok(const char *s, size_t max_chars)
{
    size_t chars = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n;
        uint32_t cp;
        if (*p < 0x80) {
            n = 1;
            cp = *p;
        } else if ((*p & 0xE0) == 0xC0) {
            n = 2;
            cp = *p & 0x1F;
        } else if ((*p & 0xF0) == 0xE0) {
            n = 3;
            cp = *p & 0x0F;
        } else if ((*p & 0xF8) == 0xF0) {
            n = 4;
            cp = *p & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i < n; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp < 0x20 || cp == 0x7F ||
            (cp >= 0x80 && cp < 0xA0))
            return false;
        p += n;
        if (++chars > max_chars)
            return false;
    }
    return chars > 0;
}

fxb_code fxb_session_device_valid(const char *device_id, const char *device_name, fxb_err *err)
{
    size_t n = device_id ? strlen(device_id) : 0;
    if (n < FXB_DEVICE_ID_MIN || n > FXB_DEVICE_ID_MAX || !fxb_key_id_valid(device_id))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "DEVICE_ID_INVALID", "设备标识不正确",
                           "device.device_id must be %d..%d of [A-Za-z0-9_-]", FXB_DEVICE_ID_MIN,
                           FXB_DEVICE_ID_MAX);
    if (device_name == NULL || !utf8_text_ok(device_name, FXB_DEVICE_NAME_MAX_CHARS))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "DEVICE_NAME_INVALID", "设备名称不正确",
                           "device.name must be 1..%d characters of text",
                           FXB_DEVICE_NAME_MAX_CHARS);
    return FXB_OK;
}

static int64_t idle_ms(int idle_pct)
{
    if (idle_pct < 100)
        idle_pct = 100;
    if (idle_pct > 300)
        idle_pct = 300;
    int64_t ms = FXB_REFRESH_IDLE_MS * idle_pct / 100;
    return ms > FXB_REFRESH_ABSOLUTE_MS ? FXB_REFRESH_ABSOLUTE_MS : ms;
}

static fxb_code new_refresh(const char *acct, const char *sid, char tok[FXB_REFRESH_MAX + 1],
                            char rt_key[256], fxb_err *err)
{
    char secret[FXB_REFRESH_SECRET_CHARS + 1];
    if (!random_secret(secret))
        return fxb_err_set(err, FXB_INTERNAL, "NO_RANDOMNESS", "系统错误", "no randomness");
    snprintf(tok, FXB_REFRESH_MAX + 1, "%s.%s.%s", acct, sid, secret);
    char h[65];
    sha256_hex(tok, h);
    if (!key_of(rt_key, 256, acct, "rt:", h))
        return refresh_invalid(err);
    return FXB_OK;
}

fxb_code fxb_session_open(fxb_store *s, const char *account_id, const char *device_id,
                          const char *device_name, int64_t now_ms, int idle_pct,
                          fxb_session_tokens *out, char replaced_sid[FXB_ID_MAX + 1],
                          char ended_oldest[FXB_ID_MAX + 1], fxb_err *err)
{
    replaced_sid[0] = ended_oldest[0] = '\0';
    memset(out, 0, sizeof *out);
    if (!new_id(out->session_id))
        return fxb_err_set(err, FXB_INTERNAL, "NO_RANDOMNESS", "系统错误", "no randomness");
    char sess[192], sessions[128], devices[128], rt[256];
    if (!key_of(sess, sizeof sess, account_id, "sess:", out->session_id) ||
        !key_of(sessions, sizeof sessions, account_id, "sessions", NULL) ||
        !key_of(devices, sizeof devices, account_id, "devices", NULL))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "ACCOUNT_INVALID", "系统错误",
                           "invalid account id");
    if (new_refresh(account_id, out->session_id, out->refresh_token, rt, err) != FXB_OK)
        return err->code;
    out->refresh_abs_exp_ms = now_ms + FXB_REFRESH_ABSOLUTE_MS;
    out->refresh_idle_exp_ms = now_ms + idle_ms(idle_pct);
    out->auth_time_ms = now_ms;
    char now[24], abs[24], idle[24], maxs[8];
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    snprintf(abs, sizeof abs, "%lld", (long long)out->refresh_abs_exp_ms);
    snprintf(idle, sizeof idle, "%lld", (long long)out->refresh_idle_exp_ms);
    snprintf(maxs, sizeof maxs, "%d", FXB_SESSIONS_PER_ACCOUNT);
    const char *keys[] = {sess, sessions, devices, rt};
    const char *args[] = {out->session_id, device_id, device_name, now, abs, idle, maxs};
    redisReply *r = fxb_store_eval(s, err, &open_script, 4, keys, 7, args, NULL);
    if (r == NULL)
        return err->code;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        copy_str(replaced_sid, FXB_ID_MAX + 1, r->element[0]);
        copy_str(ended_oldest, FXB_ID_MAX + 1, r->element[1]);
    }
    freeReplyObject(r);
    bool was;
    if (replaced_sid[0] &&
        fxb_session_end(s, account_id, replaced_sid, now_ms, &was, err) != FXB_OK)
        return err->code;
    if (ended_oldest[0] &&
        fxb_session_end(s, account_id, ended_oldest, now_ms, &was, err) != FXB_OK)
        return err->code;
    return FXB_OK;
}

/* Splits "<acct>.<sid>.<secret>" after checking its shape. */
static bool parse_refresh(const char *tok, char acct[FXB_ID_MAX + 1], char sid[FXB_ID_MAX + 1])
{
    if (tok == NULL || strlen(tok) > FXB_REFRESH_MAX)
        return false;
    const char *d1 = strchr(tok, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (d1 == NULL || d2 == NULL || strchr(d2 + 1, '.') != NULL)
        return false;
    size_t la = (size_t)(d1 - tok), ls = (size_t)(d2 - d1 - 1);
    if (la == 0 || la > FXB_ID_MAX || ls == 0 || ls > FXB_ID_MAX ||
        strlen(d2 + 1) != FXB_REFRESH_SECRET_CHARS)
        return false;
    memcpy(acct, tok, la);
    acct[la] = '\0';
    memcpy(sid, d1 + 1, ls);
    sid[ls] = '\0';
    for (const char *p = d2 + 1; *p; p++)
        if (strchr(B64URL, *p) == NULL)
            return false;
    return fxb_key_id_valid(acct) && fxb_key_id_valid(sid);
}

fxb_code fxb_session_refresh(fxb_store *s, const char *refresh_token, int64_t now_ms, int idle_pct,
                             fxb_session_tokens *out, char account_id[FXB_ID_MAX + 1],
                             char reused_sid[FXB_ID_MAX + 1], fxb_err *err)
{
    reused_sid[0] = '\0';
    memset(out, 0, sizeof *out);
    char sid[FXB_ID_MAX + 1];
    if (!parse_refresh(refresh_token, account_id, sid))
        return refresh_invalid(err);
    char h[65], rt_old[256], rt_new[256], sess[192], sessions[128], devices[128];
    sha256_hex(refresh_token, h);
    key_of(rt_old, sizeof rt_old, account_id, "rt:", h);
    key_of(sess, sizeof sess, account_id, "sess:", sid);
    key_of(sessions, sizeof sessions, account_id, "sessions", NULL);
    key_of(devices, sizeof devices, account_id, "devices", NULL);
    if (new_refresh(account_id, sid, out->refresh_token, rt_new, err) != FXB_OK)
        return err->code;
    char now[24], idle[24];
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    snprintf(idle, sizeof idle, "%lld", (long long)idle_ms(idle_pct));
    const char *keys[] = {rt_old, rt_new, sess, sessions, devices};
    const char *args[] = {sid, now, idle};
    redisReply *r = fxb_store_eval(s, err, &rotate_script, 5, keys, 3, args, NULL);
    if (r == NULL) {
        if (err->code == FXB_UNAUTHENTICATED)
            snprintf(err->message_zh, sizeof err->message_zh, "%s", "登录已失效，请重新登录");
        return err->code;
    }
    fxb_code rc = FXB_OK;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        snprintf(reused_sid, FXB_ID_MAX + 1, "%s", sid);
        rc = fxb_err_set(err, FXB_UNAUTHENTICATED, "REFRESH_REUSED", "账号存在异常登录，请重新登录",
                         "a rotated refresh token was used again: the session has been ended");
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
               r->element[0]->type == REDIS_REPLY_STRING) {
        snprintf(out->session_id, sizeof out->session_id, "%s", sid);
        out->refresh_idle_exp_ms = strtoll(r->element[1]->str, NULL, 10);
        out->refresh_abs_exp_ms = strtoll(r->element[2]->str, NULL, 10);
        out->auth_time_ms = strtoll(r->element[3]->str, NULL, 10);
    } else {
        rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", "系统错误", "unexpected rotate reply");
    }
    freeReplyObject(r);
    if (rc != FXB_OK)
        memset(out->refresh_token, 0, sizeof out->refresh_token);
    return rc;
}

fxb_code fxb_session_end(fxb_store *s, const char *account_id, const char *sid, int64_t now_ms,
                         bool *was_active, fxb_err *err)
{
    *was_active = false;
    char sess[192], sessions[128], devices[128];
    if (!fxb_key_id_valid(sid) || !key_of(sess, sizeof sess, account_id, "sess:", sid) ||
        !key_of(sessions, sizeof sessions, account_id, "sessions", NULL) ||
        !key_of(devices, sizeof devices, account_id, "devices", NULL))
        return FXB_OK;
    char now[24], keep[24];
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    snprintf(keep, sizeof keep, "%lld", (long long)REVOKED_KEEP_MS);
    const char *keys[] = {sess, sessions, devices};
    const char *args[] = {sid, now, keep};
    redisReply *r = fxb_store_eval(s, err, &end_script, 3, keys, 3, args, NULL);
    if (r == NULL)
        return err->code;
    *was_active = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return FXB_OK;
}

static void fill_info(fxb_session_info *o, const char *sid, redisReply *r)
{
    memset(o, 0, sizeof *o);
    snprintf(o->session_id, sizeof o->session_id, "%s", sid);
    char buf[32];
    o->active =
        r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "active") == 0;
    copy_str(o->device_id, sizeof o->device_id, r->element[1]);
    copy_str(o->device_name, sizeof o->device_name, r->element[2]);
    copy_str(buf, sizeof buf, r->element[3]);
    o->created_ms = strtoll(buf, NULL, 10);
    copy_str(buf, sizeof buf, r->element[4]);
    o->last_used_ms = strtoll(buf, NULL, 10);
    copy_str(buf, sizeof buf, r->element[5]);
    o->auth_time_ms = strtoll(buf, NULL, 10);
}

fxb_code fxb_session_get(fxb_store *s, const char *account_id, const char *sid,
                         fxb_session_info *out, fxb_err *err)
{
    char sess[192];
    if (!fxb_key_id_valid(sid) || !key_of(sess, sizeof sess, account_id, "sess:", sid))
        return fxb_err_set(err, FXB_NOT_FOUND, "SESSION_NOT_FOUND", "会话不存在",
                           "no such session");
    redisReply *r = fxb_store_command(
        s, err, "HMGET %s status device_id device_name created_ms last_used_ms auth_time_ms", sess);
    if (r == NULL)
        return err->code;
    fxb_code rc = FXB_OK;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 6 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        rc = fxb_err_set(err, FXB_NOT_FOUND, "SESSION_NOT_FOUND", "会话不存在", "no such session");
    else
        fill_info(out, sid, r);
    freeReplyObject(r);
    return rc;
}

fxb_code fxb_session_list(fxb_store *s, const char *account_id, fxb_session_info *out, size_t cap,
                          size_t *n, fxb_err *err)
{
    *n = 0;
    char sessions[128];
    if (!key_of(sessions, sizeof sessions, account_id, "sessions", NULL))
        return FXB_OK;
    redisReply *r =
        fxb_store_command(s, err, "ZREVRANGE %s 0 %d", sessions, FXB_SESSIONS_PER_ACCOUNT * 2);
    if (r == NULL)
        return err->code;
    fxb_code rc = FXB_OK;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && *n < cap; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        fxb_session_info info;
        fxb_code got = fxb_session_get(s, account_id, r->element[i]->str, &info, err);
        if (got == FXB_OK && info.active) {
            out[(*n)++] = info;
        } else if (got != FXB_OK && got != FXB_NOT_FOUND) {
            rc = got; /* the store failed: say so rather than list partially */
            break;
        }
    }
    freeReplyObject(r);
    return rc;
}

fxb_code fxb_session_mark_auth(fxb_store *s, const char *account_id, const char *sid,
                               int64_t now_ms, fxb_err *err)
{
    char sess[192], now[24];
    if (!fxb_key_id_valid(sid) || !key_of(sess, sizeof sess, account_id, "sess:", sid))
        return fxb_err_set(err, FXB_UNAUTHENTICATED, "SESSION_REVOKED", "登录已失效，请重新登录",
                           "the session has ended");
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    const char *keys[] = {sess};
    const char *args[] = {now};
    redisReply *r = fxb_store_eval(s, err, &mark_auth_script, 1, keys, 1, args, NULL);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    return FXB_OK;
}
