/* The audit stream: one XADD per record, checked fields only, so that the
 * stream can be handed to an auditor without redaction. */
#include "store/audit.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "store/keys.h"

static bool action_valid(const char *action)
{
    size_t n = action ? strnlen(action, FXB_AUDIT_ACTION_MAX + 1) : 0;
    if (n == 0 || n > FXB_AUDIT_ACTION_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = action[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_'))
            return false;
    }
    return true;
}

static bool why_valid(const char *why)
{
    size_t n = strnlen(why, FXB_AUDIT_WHY_MAX + 1);
    if (n > FXB_AUDIT_WHY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)why[i] < 0x20 || why[i] == 0x7f)
            return false;
    return true;
}

static fxb_code invalid(fxb_err *err, const char *field)
{
    return fxb_err_set(err, FXB_INVALID_ARGUMENT, "AUDIT_RECORD_INVALID", "系统繁忙，请稍后重试",
                       "audit record: %s is invalid", field);
}

fxb_code fxb_audit_append(fxb_store *s, const char *actor_account, const char *subject_account,
                          const char *action, const char *why, int64_t now_ms, fxb_err *err)
{
    if (why == NULL)
        why = "";
    if (!fxb_key_id_valid(actor_account))
        return invalid(err, "actor");
    if (!fxb_key_id_valid(subject_account))
        return invalid(err, "subject");
    if (!action_valid(action))
        return invalid(err, "action");
    if (!why_valid(why))
        return invalid(err, "why");
    if (now_ms < 0)
        return invalid(err, "at_ms");
    char at[24];
    snprintf(at, sizeof at, "%" PRId64, now_ms);
    const char *argv[] = {"XADD",    FXB_AUDIT_STREAM, "*",      "actor", actor_account,
                          "subject", subject_account,  "action", action,  "why",
                          why,       "at_ms",          at};
    redisReply *r = fxb_store_commandv(s, err, (int)(sizeof argv / sizeof argv[0]), argv, NULL);
    if (r == NULL)
        return err->code;
    bool ok = r->type == REDIS_REPLY_STRING;
    freeReplyObject(r);
    if (!ok)
        return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", "系统繁忙，请稍后重试",
                           "XADD %s answered in an unexpected shape", FXB_AUDIT_STREAM);
    return FXB_OK;
}
