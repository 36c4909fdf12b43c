/* Grants as the auth layer reads them: one HMGET per delegated call (no
 * cache, so a revocation applies to the very next call) and one XADD per
 * act (plus an inbox notice when the principal asked for them). */
#include "auth/grant.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/scope.h"
#include "store/inbox.h"
#include "store/keys.h"

#define ITEM_KEY_PREFIX "fxb:item:"

static bool owned_key(char *buf, size_t cap, const char *gid, const char *suffix)
{
    if (!fxb_key_id_valid(gid))
        return false;
    int n = snprintf(buf, cap, "{g:%s}:%s", gid, suffix);
    return n > 0 && (size_t)n < cap;
}

bool fxb_grant_key(char *buf, size_t cap, const char *gid)
{
    return owned_key(buf, cap, gid, "grant");
}

bool fxb_grant_activity_key(char *buf, size_t cap, const char *gid)
{
    return owned_key(buf, cap, gid, "activity");
}

static fxb_code revoked(fxb_err *err)
{
    return fxb_err_set(err, FXB_PERMISSION_DENIED, FXB_GRANT_REVOKED, "该代办授权已终止",
                       "the proxy grant of this token has ended");
}

static bool field_is(const redisReply *r, const char *s)
{
    return r->type == REDIS_REPLY_STRING && strcmp(r->str, s) == 0;
}

static int64_t field_int(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
}

fxb_code fxb_grant_check_live(fxb_store *s, const char *gid, const char *principal,
                              const char *agent, int64_t now_ms, fxb_grant_live *out, fxb_err *err)
{
    out->notify = false;
    out->scope[0] = '\0';
    out->expires_at_ms = 0;
    char key[FXB_KEY_ID_MAX + 16];
    if (!fxb_grant_key(key, sizeof key, gid))
        return revoked(err);
    /* one round trip: the record, and its expiry for the activity log */
    const char *hmget[] = {"HMGET",          key,
                           "status",         "principal",
                           "agent",          "valid_from_ms",
                           "valid_until_ms", "notify_activity",
                           "scope"};
    const char *pexpiretime[] = {"PEXPIRETIME", key};
    fxb_store_cmd cmds[] = {{9, hmget, NULL}, {2, pexpiretime, NULL}};
    redisReply *replies[2] = {NULL, NULL};
    if (fxb_store_pipeline(s, err, 2, cmds, replies) != FXB_OK)
        return err->code;
    redisReply *r = replies[0];
    if (replies[1]->type == REDIS_REPLY_INTEGER && replies[1]->integer > 0)
        out->expires_at_ms = replies[1]->integer;
    freeReplyObject(replies[1]);
    fxb_code rc = FXB_OK;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 7 ||
        r->element[0]->type != REDIS_REPLY_STRING || !field_is(r->element[1], principal) ||
        !field_is(r->element[2], agent)) {
        rc = revoked(err); /* missing, purged, or naming others */
    } else if (field_is(r->element[0], "pending_agent") ||
               field_is(r->element[0], "pending_principal")) {
        rc = fxb_err_set(err, FXB_PERMISSION_DENIED, FXB_GRANT_NOT_ACTIVE, "该代办授权尚未生效",
                         "the proxy grant has not been accepted yet");
    } else if (field_is(r->element[0], "expired") ||
               (field_is(r->element[0], "active") && now_ms >= field_int(r->element[4]))) {
        rc = fxb_err_set(err, FXB_PERMISSION_DENIED, FXB_GRANT_EXPIRED, "该代办授权已过期",
                         "the proxy grant has expired");
    } else if (!field_is(r->element[0], "active")) {
        rc = revoked(err);
    } else if (now_ms < field_int(r->element[3])) {
        rc = fxb_err_set(err, FXB_PERMISSION_DENIED, FXB_GRANT_NOT_ACTIVE, "该代办授权尚未生效",
                         "the proxy grant is not valid yet");
    } else if (r->element[6]->type != REDIS_REPLY_STRING ||
               r->element[6]->len >= sizeof out->scope) {
        rc = revoked(err); /* a record without its scope grants nothing */
    } else {
        out->notify = field_is(r->element[5], "1");
        memcpy(out->scope, r->element[6]->str, r->element[6]->len + 1);
    }
    freeReplyObject(r);
    return rc;
}

fxb_code fxb_grant_item_category(fxb_store *s, const char *code, char *out, size_t cap,
                                 fxb_err *err)
{
    if (cap > 0)
        out[0] = '\0';
    if (!fxb_scope_item_code_valid(code) || cap == 0)
        return FXB_OK;
    redisReply *r = fxb_store_command(s, err, "HGET " ITEM_KEY_PREFIX "%s category", code);
    if (r == NULL)
        return err->code;
    if (r->type == REDIS_REPLY_STRING && r->len < cap && fxb_scope_category_known(r->str))
        memcpy(out, r->str, r->len + 1);
    freeReplyObject(r);
    return FXB_OK;
}

/* "/fxb.v1.InboxService/ListMessages" -> "InboxService/ListMessages" for
 * the notice text. */
static const char *short_method(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strchr(path + 1, '/');
    return dot && slash && dot < slash ? dot + 1 : path;
}

/* KEYS[1] the grant record, KEYS[2] its activity stream; ARGV: maxlen,
 * then the entry's field/value pairs. Nothing is written for a grant that
 * does not exist (a forged or purged id); the stream ends with the record. */
static fxb_script act_script =
    FXB_SCRIPT("grant_act", "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                            "local entry = {KEYS[2], 'MAXLEN', '~', ARGV[1], '*'}\n"
                            "for i = 2, #ARGV do entry[#entry + 1] = ARGV[i] end\n"
                            "redis.call('XADD', unpack(entry))\n"
                            "local t = redis.call('PEXPIRETIME', KEYS[1])\n"
                            "if t > 0 then redis.call('PEXPIREAT', KEYS[2], t) end\n"
                            "return 1\n");

fxb_code fxb_grant_record_act(fxb_store *s, const fxb_grant_act *act, fxb_err *err)
{
    char gkey[FXB_KEY_ID_MAX + 16], key[FXB_KEY_ID_MAX + 16];
    if (!fxb_grant_key(gkey, sizeof gkey, act->grant_id) ||
        !fxb_grant_activity_key(key, sizeof key, act->grant_id) || act->method == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "ACTIVITY_INVALID", "系统错误",
                           "an act needs a valid grant id and a method");
    char at[24], max[16];
    snprintf(at, sizeof at, "%" PRId64, act->at_ms);
    snprintf(max, sizeof max, "%d", FXB_GRANT_ACTIVITY_MAX);
    const char *item = act->item ? act->item : "";
    const char *result = fxb_code_name((int)act->result);
    const char *reason = act->reason && act->result != FXB_OK ? act->reason : "";
    const char *agent = act->agent ? act->agent : "";
    bool written;
    if (act->grant_expires_at_ms > 0) {
        /* the grant was read on this call: append without waiting for the
         * reply (it is read before this connection's next command) */
        char exp[24];
        snprintf(exp, sizeof exp, "%" PRId64, act->grant_expires_at_ms);
        const char *xadd[] = {"XADD",   key,    "MAXLEN", "~",         max,     "*",
                              "at_ms",  at,     "method", act->method, "item",  item,
                              "result", result, "reason", reason,      "agent", agent};
        const char *pexpireat[] = {"PEXPIREAT", key, exp};
        fxb_store_cmd cmds[] = {{(int)(sizeof xadd / sizeof xadd[0]), xadd, NULL},
                                {3, pexpireat, NULL}};
        if (fxb_store_send(s, err, 2, cmds) != FXB_OK)
            return err->code;
        written = true;
    } else {
        const char *keys[] = {gkey, key};
        const char *args[] = {max,      "at_ms", at,       "method", act->method, "item", item,
                              "result", result,  "reason", reason,   "agent",     agent};
        redisReply *r = fxb_store_eval(s, err, &act_script, 2, keys,
                                       (int)(sizeof args / sizeof args[0]), args, NULL);
        if (r == NULL)
            return err->code;
        written = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
    }
    if (!written || !act->notify || act->principal == NULL)
        return FXB_OK;
    char body[FXB_INBOX_BODY_MAX];
    snprintf(body, sizeof body, "%s%s%s，结果：%s", short_method(act->method),
             item[0] ? "，事项：" : "", item, act->result == FXB_OK ? "成功" : "未获准");
    return fxb_inbox_append(s, act->principal, "proxy.activity", "您的代办人代您办理了一项事务",
                            body, act->grant_id, act->at_ms, NULL, err);
}
