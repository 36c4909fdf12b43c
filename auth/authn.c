/* Fast path per call: one SHA-256 and a shard lookup for the token, one
 * hash-set lookup for revocation; no store round trip while the revocation
 * subscriber is synced. */
#include "auth/authn.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth/grant.h"
#include "auth/scope.h"
#include "auth/session.h"
#include "server/log.h"

#define RELOGIN_ZH "登录已失效，请重新登录"

_Static_assert(FXB_AUTHORIZATION_MAX >= 7 + FXB_TOKEN_MAX_LEN,
               "the runtime must keep an authorization header as long as the longest token");

static const char *level_name(int level)
{
    switch (level) {
    case FXB_LEVEL_REAL_NAME:
        return "real-name verification (L2)";
    case FXB_LEVEL_REAL_FACE:
        return "real-person verification (L3)";
    default:
        return "a verified phone (L1)";
    }
}

fxb_code fxb_authn_check_rule(const fxb_access *access, const fxb_caller *caller, int64_t now_s,
                              fxb_err *err)
{
    if (caller->delegated && !access->delegable)
        return fxb_err_set(err, FXB_PERMISSION_DENIED, "DELEGATION_NOT_ALLOWED",
                           "此事项不能由他人代办",
                           "this method cannot be called under a proxy grant");
    if (access->roles && !(caller->roles & access->roles))
        return fxb_err_set(err, FXB_PERMISSION_DENIED, "ROLE_REQUIRED", "无权访问",
                           "the caller lacks the role this method requires");
    if (access->min_level > 0 && caller->level < access->min_level) {
        if (access->min_level >= FXB_LEVEL_REAL_FACE)
            return fxb_err_set(err, FXB_PERMISSION_DENIED, "LEVEL_TOO_LOW", "请先完成实人认证",
                               "this method requires %s", level_name(access->min_level));
        return fxb_err_set(err, FXB_PERMISSION_DENIED, "LEVEL_TOO_LOW", "请先完成实名认证",
                           "this method requires %s", level_name(access->min_level));
    }
    if (access->step_up_s > 0 && now_s - caller->auth_time_s > (int64_t)access->step_up_s) {
        fxb_err_set(
            err, FXB_UNAUTHENTICATED, "STEP_UP_REQUIRED", "为了您的账号安全，请再次验证身份",
            "this method needs a sign-in proof at most %u s old", (unsigned)access->step_up_s);
        return FXB_UNAUTHENTICATED;
    }
    return FXB_OK;
}

/* A delegated token: the method must accept delegation, the grant must be
 * active at this moment (read from the store on every call: a revocation
 * applies to the very next call) and its scopes must hold the method's
 * capability. */
static fxb_code check_delegation(fxb_ctx *ctx, const fxb_method *m, fxb_caller *caller,
                                 int64_t now_ms, fxb_err *err)
{
    if (!m->access.delegable)
        return fxb_err_set(err, FXB_PERMISSION_DENIED, "DELEGATION_NOT_ALLOWED",
                           "此事项不能由他人代办",
                           "this method cannot be called under a proxy grant");
    if (caller->grant_id[0] == '\0')
        return fxb_err_set(err, FXB_PERMISSION_DENIED, FXB_GRANT_REVOKED, "该代办授权已终止",
                           "a delegated token must name its grant");
    fxb_grant_live live;
    fxb_code rc = fxb_grant_check_live(fxb_ctx_store(ctx), caller->grant_id, caller->account_id,
                                       caller->agent_id, now_ms, &live, err);
    if (rc != FXB_OK)
        return rc;
    /* the grant's scopes rule, not the token's copy */
    memcpy(caller->scope, live.scope, sizeof caller->scope);
    caller->grant_notify = live.notify;
    caller->grant_expires_at_ms = live.expires_at_ms;
    if (!fxb_scope_has(caller->scope, m->access.scope))
        return fxb_err_set(err, FXB_PERMISSION_DENIED, FXB_OUT_OF_SCOPE, "超出代办授权范围",
                           "the proxy grant does not include %s", m->access.scope);
    return FXB_OK;
}

/* "Bearer <token>", scheme case-insensitive, exactly one space. */
static const char *bearer(const char *header)
{
    if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
        return NULL;
    const char *t = header + 7;
    return *t && *t != ' ' ? t : NULL;
}

fxb_code fxb_authn_authenticate(void *state, fxb_ctx *ctx, const fxb_method *m, fxb_caller *caller,
                                fxb_err *err)
{
    fxb_authn *a = state;
    const char *header = fxb_ctx_authorization(ctx);
    if (header == NULL)
        return fxb_err_set(err, FXB_UNAUTHENTICATED, "TOKEN_MISSING", "请先登录",
                           "this method needs an access token (authorization: Bearer ...)");
    const char *token = bearer(header);
    if (token == NULL)
        return fxb_err_set(err, FXB_UNAUTHENTICATED, "TOKEN_MALFORMED", RELOGIN_ZH,
                           "the authorization header is not \"Bearer <token>\"");
    int64_t now_ms = fxb_wall_ms();
    fxb_token_claims claims;
    if (fxb_token_check(a->cache, a->verifier, token, now_ms / 1000, &claims, err) != FXB_OK)
        return err->code;

    /* a delegated token rides on the agent's session */
    const char *session_owner = claims.act_sub[0] ? claims.act_sub : claims.sub;
    fxb_revoked rv = fxb_revocation_check(a->revocation, claims.sid, now_ms);
    if (rv == FXB_REVOKED_UNKNOWN) {
        /* the revocation feed is not synced: ask the store, fail closed */
        fxb_session_info info;
        fxb_code rc = fxb_session_get(fxb_ctx_store(ctx), session_owner, claims.sid, &info, err);
        if (rc == FXB_NOT_FOUND || (rc == FXB_OK && !info.active))
            rv = FXB_REVOKED_YES;
        else if (rc != FXB_OK)
            return err->code;
        else
            rv = FXB_REVOKED_NO;
    }
    if (rv == FXB_REVOKED_YES)
        return fxb_err_set(err, FXB_UNAUTHENTICATED, "SESSION_REVOKED", RELOGIN_ZH,
                           "the session of this token has ended");

    memset(caller, 0, sizeof *caller);
    caller->signed_in = true;
    snprintf(caller->account_id, sizeof caller->account_id, "%s", claims.sub);
    snprintf(caller->session_id, sizeof caller->session_id, "%s", claims.sid);
    snprintf(caller->token_id, sizeof caller->token_id, "%s", claims.jti);
    snprintf(caller->dept, sizeof caller->dept, "%s", claims.dept);
    caller->level = claims.acr;
    caller->roles = claims.roles;
    caller->auth_time_s = claims.auth_time;
    caller->expires_s = claims.exp;
    if (claims.act_sub[0]) {
        caller->delegated = true;
        snprintf(caller->agent_id, sizeof caller->agent_id, "%s", claims.act_sub);
        snprintf(caller->grant_id, sizeof caller->grant_id, "%s", claims.grant_id);
        snprintf(caller->scope, sizeof caller->scope, "%s", claims.scope);
        fxb_code rc = check_delegation(ctx, m, caller, now_ms, err);
        if (rc != FXB_OK)
            return rc;
    }
    return fxb_authn_check_rule(&m->access, caller, now_ms / 1000, err);
}

fxb_code fxb_authn_check_item(void *state, fxb_ctx *ctx, const fxb_caller *caller, const char *item,
                              fxb_err *err)
{
    (void)state;
    if (!caller->delegated)
        return FXB_OK;
    if (!fxb_scope_item_code_valid(item))
        return fxb_err_set(err, FXB_PERMISSION_DENIED, FXB_OUT_OF_SCOPE, "超出代办授权范围",
                           "the call names no valid service item, which a proxy grant must "
                           "admit");
    char category[FXB_SCOPE_WORD_MAX + 1];
    if (fxb_grant_item_category(fxb_ctx_store(ctx), item, category, sizeof category, err) != FXB_OK)
        return err->code;
    if (!fxb_scope_allows_item(caller->scope, item, category))
        return fxb_err_set(err, FXB_PERMISSION_DENIED, FXB_OUT_OF_SCOPE, "超出代办授权范围",
                           "the proxy grant does not cover service item %s", item);
    return FXB_OK;
}

void fxb_authn_record_act(void *state, fxb_ctx *ctx, const fxb_caller *caller, const char *item,
                          fxb_code code, const char *reason)
{
    (void)state;
    fxb_grant_act act = {
        .grant_id = caller->grant_id,
        .principal = caller->account_id,
        .agent = caller->agent_id,
        .method = fxb_ctx_method(ctx)->path,
        .item = item,
        .result = code,
        .reason = reason,
        .at_ms = fxb_wall_ms(),
        .notify = caller->grant_notify,
        .grant_expires_at_ms = caller->grant_expires_at_ms,
    };
    fxb_err err;
    if (fxb_grant_record_act(fxb_ctx_store(ctx), &act, &err) != FXB_OK)
        fxb_log(FXB_LOG_WARN, "an act under a proxy grant was not recorded: %s", err.reason);
}
