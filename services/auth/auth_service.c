/* AuthService handlers: proto <-> the auth modules. Every path that ends a
 * session publishes its revocation before answering, so the very next call
 * with one of its access tokens fails on every server. */
#include "services/auth/auth_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/account.h"
#include "auth/password.h"
#include "auth/phone.h"
#include "auth/session.h"
#include "fxb/v1/auth.pb-c.h"
#include "server/log.h"
#include "store/keys.h"

#define RELOGIN_ZH "登录已失效，请重新登录"

static fxb_auth_deps deps;
static bool deps_set;

void fxb_auth_service_init(const fxb_auth_deps *d)
{
    deps = *d;
    deps_set = true;
}

const fxb_auth_deps *fxb_auth_deps_get(void)
{
    return deps_set ? &deps : NULL;
}

static fxb_code not_ready(fxb_ctx *ctx)
{
    return fxb_ctx_fail(ctx, FXB_UNAVAILABLE, "AUTH_NOT_CONFIGURED", "系统繁忙，请稍后重试",
                        "the authentication service is not configured");
}

int fxb_auth_timeout_pct(fxb_store *s, const char *account_id)
{
    char key[128];
    if (!fxb_key_id_valid(account_id))
        return 100;
    snprintf(key, sizeof key, "{u:%s}:a11y", account_id);
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "HGET %s timeout_pct", key);
    int pct = 100;
    if (r && r->type == REDIS_REPLY_STRING)
        pct = atoi(r->str);
    if (r)
        freeReplyObject(r);
    return pct < 100 ? 100 : pct > 300 ? 300 : pct;
}

/* --- building responses ------------------------------------------------- */

static Fxb__V1__Account *account_msg(fxb_arena *a, const fxb_account *acc)
{
    Fxb__V1__Account *m = fxb_arena_alloc(a, sizeof *m);
    if (m == NULL)
        return NULL;
    fxb__v1__account__init(m);
    m->account_id = fxb_arena_strdup(a, acc->id);
    m->masked_phone = fxb_arena_strdup(a, acc->masked_phone);
    m->assurance_level = (uint32_t)acc->level;
    m->department = fxb_arena_strdup(a, acc->dept);
    m->has_password = acc->has_password;
    m->created_at_ms = acc->created_ms;
    static const struct {
        uint32_t bit;
        Fxb__V1__Role role;
    } map[] = {{FXB_ROLE_CITIZEN, FXB__V1__ROLE__ROLE_CITIZEN},
               {FXB_ROLE_OFFICER, FXB__V1__ROLE__ROLE_OFFICER},
               {FXB_ROLE_ADMIN, FXB__V1__ROLE__ROLE_ADMIN},
               {FXB_ROLE_DATA_FEED, FXB__V1__ROLE__ROLE_DATA_FEED}};
    m->roles = fxb_arena_calloc(a, 4, sizeof *m->roles);
    for (size_t i = 0; m->roles && i < 4; i++)
        if (acc->roles & map[i].bit)
            m->roles[m->n_roles++] = map[i].role;
    return m;
}

/* Signs an access token for the account's session. */
static fxb_code issue_access(fxb_ctx *ctx, const fxb_account *acc, const char *sid,
                             int64_t auth_time_ms, Fxb__V1__TokenResponse *resp)
{
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_err err;
    fxb_token_params p;
    memset(&p, 0, sizeof p);
    p.issuer = deps.issuer;
    p.audience = deps.audience;
    int64_t now = fxb_wall_ms() / 1000;
    snprintf(p.claims.sub, sizeof p.claims.sub, "%s", acc->id);
    snprintf(p.claims.sid, sizeof p.claims.sid, "%s", sid);
    snprintf(p.claims.dept, sizeof p.claims.dept, "%s", acc->dept);
    if (fxb_token_new_id(p.claims.jti, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    p.claims.iat = p.claims.nbf = now;
    p.claims.exp = now + deps.access_ttl_s;
    p.claims.auth_time = auth_time_ms / 1000;
    if (p.claims.auth_time <= 0 || p.claims.auth_time > now)
        p.claims.auth_time = now;
    p.claims.acr = acc->level;
    p.claims.roles = acc->roles ? acc->roles : FXB_ROLE_CITIZEN;
    char *tok = NULL;
    if (fxb_token_sign(deps.keyring, &p, &tok, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    resp->access_token = fxb_arena_strdup(a, tok);
    free(tok);
    resp->access_expires_at_ms = p.claims.exp * 1000;
    resp->session_id = fxb_arena_strdup(a, sid);
    resp->account = account_msg(a, acc);
    if (resp->access_token == NULL || resp->session_id == NULL || resp->account == NULL)
        return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                            "out of memory");
    return FXB_OK;
}

/* Ends sessions other code decided to end, on every server. */
static void publish_ended(fxb_ctx *ctx, const char *sid)
{
    if (sid == NULL || sid[0] == '\0')
        return;
    fxb_err err;
    if (fxb_revocation_publish(deps.revocation, fxb_ctx_store(ctx), sid, fxb_wall_ms(), &err) !=
        FXB_OK)
        fxb_log(FXB_LOG_WARN, "publishing a revocation failed: %s", err.reason);
    fxb_token_cache_drop_session(deps.cache, sid);
}

static fxb_code client_ip(fxb_ctx *ctx, char ip[FXB_PEER_IP_MAX])
{
    if (!fxb_peer_ip(fxb_ctx_peer(ctx), ip))
        snprintf(ip, FXB_PEER_IP_MAX, "unknown");
    return FXB_OK;
}

/* --- SendCode ----------------------------------------------------------- */

/* Where sign-in codes of an account go: its trusted relative's phone when
 * the account opted in (accessibility), else its own. */
static void code_destination(fxb_ctx *ctx, const char *phone, char dest[FXB_PHONE_LEN + 1])
{
    snprintf(dest, FXB_PHONE_LEN + 1, "%s", phone);
    fxb_account acc;
    fxb_err err;
    if (fxb_account_by_phone(fxb_ctx_store(ctx), deps.crypto, phone, &acc, &err) != FXB_OK)
        return;
    char key[128];
    snprintf(key, sizeof key, "{u:%s}:a11y", acc.id);
    redisReply *r = fxb_store_command(fxb_ctx_store(ctx), &err, "HGET %s relative_enc", key);
    if (r && r->type == REDIS_REPLY_STRING && r->len > 0) {
        uint8_t *pt = NULL;
        size_t len = 0;
        if (fxb_crypto_open(deps.crypto, "relative_phone", acc.id, r->str, fxb_ctx_arena(ctx), &pt,
                            &len, &err) == FXB_OK &&
            len == FXB_PHONE_LEN)
            snprintf(dest, FXB_PHONE_LEN + 1, "%s", (const char *)pt);
    }
    if (r)
        freeReplyObject(r);
}

static fxb_code send_code(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SendCodeRequest *req = (const Fxb__V1__SendCodeRequest *)req_msg;
    Fxb__V1__SendCodeResponse *resp = (Fxb__V1__SendCodeResponse *)resp_msg;
    if (!deps_set)
        return not_ready(ctx);
    fxb_err err;
    char phone[FXB_PHONE_LEN + 1];
    if (fxb_phone_normalize(req->phone, phone, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    int purpose = req->purpose == FXB__V1__CODE_PURPOSE__CODE_PURPOSE_UNSPECIFIED
                      ? FXB_OTP_SIGN_IN
                      : (int)req->purpose;
    if (purpose != FXB_OTP_SIGN_IN && purpose != FXB_OTP_STEP_UP)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "CODE_PURPOSE_INVALID", "请求参数有误",
                            "purpose must be SIGN_IN or STEP_UP here");
    char ip[FXB_PEER_IP_MAX];
    client_ip(ctx, ip);
    int pct = 100;
    fxb_account acc;
    if (fxb_account_by_phone(fxb_ctx_store(ctx), deps.crypto, phone, &acc, &err) == FXB_OK)
        pct = fxb_auth_timeout_pct(fxb_ctx_store(ctx), acc.id);
    if (deps.sms == NULL)
        return fxb_ctx_fail(ctx, FXB_UNAVAILABLE, "SMS_NOT_CONFIGURED", "短信服务暂不可用",
                            "no SMS sender is configured on this server");
    char code[FXB_OTP_DIGITS + 1];
    int64_t expires = 0, resend = 0, now = fxb_wall_ms();
    if (fxb_otp_issue(fxb_ctx_store(ctx), &deps.otp, phone, ip, purpose, pct, now, code, &expires,
                      &resend, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    char dest[FXB_PHONE_LEN + 1];
    code_destination(ctx, phone, dest);
    char text[256];
    fxb_code rc = FXB_OK;
    if (!fxb_otp_sms_text(purpose, code, expires - now, text, sizeof text))
        rc = fxb_ctx_fail(ctx, FXB_INTERNAL, "SMS_TEXT_FAILED", "系统错误", "cannot build the SMS");
    else if (fxb_sms_send(deps.sms, dest, text, &err) != FXB_OK)
        rc = fxb_ctx_fail_err(ctx, &err);
    memset(code, 0, sizeof code);
    memset(text, 0, sizeof text);
    if (rc != FXB_OK)
        return rc;
    char masked[FXB_PHONE_LEN + 1];
    fxb_phone_mask(dest, masked);
    resp->expires_at_ms = expires;
    resp->resend_after_ms = resend;
    resp->masked_phone = fxb_arena_strdup(fxb_ctx_arena(ctx), masked);
    return FXB_OK;
}

/* --- sign-in ------------------------------------------------------------ */

static fxb_code open_session(fxb_ctx *ctx, const fxb_account *acc, const Fxb__V1__Device *dev,
                             bool created, Fxb__V1__TokenResponse *resp)
{
    fxb_err err;
    fxb_session_tokens st;
    char replaced[FXB_ID_MAX + 1], oldest[FXB_ID_MAX + 1];
    int pct = fxb_auth_timeout_pct(fxb_ctx_store(ctx), acc->id);
    if (fxb_session_open(fxb_ctx_store(ctx), acc->id, dev->device_id, dev->name, fxb_wall_ms(), pct,
                         &st, replaced, oldest, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    publish_ended(ctx, replaced);
    publish_ended(ctx, oldest);
    fxb_code irc = issue_access(ctx, acc, st.session_id, st.auth_time_ms, resp);
    if (irc != FXB_OK)
        return irc;
    resp->refresh_token = fxb_arena_strdup(fxb_ctx_arena(ctx), st.refresh_token);
    resp->refresh_expires_at_ms = st.refresh_idle_exp_ms;
    resp->account_created = created;
    memset(&st, 0, sizeof st);
    return FXB_OK;
}

static fxb_code check_device(fxb_ctx *ctx, const Fxb__V1__Device *dev)
{
    fxb_err err;
    if (dev == NULL)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "DEVICE_REQUIRED", "缺少设备信息",
                            "device is required");
    if (fxb_session_device_valid(dev->device_id, dev->name, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

static fxb_code sign_in_code(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SignInWithCodeRequest *req = (const Fxb__V1__SignInWithCodeRequest *)req_msg;
    Fxb__V1__TokenResponse *resp = (Fxb__V1__TokenResponse *)resp_msg;
    if (!deps_set)
        return not_ready(ctx);
    fxb_err err;
    char phone[FXB_PHONE_LEN + 1];
    if (fxb_phone_normalize(req->phone, phone, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_code drc = check_device(ctx, req->device);
    if (drc != FXB_OK)
        return drc;
    int64_t now = fxb_wall_ms();
    if (fxb_otp_verify(fxb_ctx_store(ctx), &deps.otp, phone, FXB_OTP_SIGN_IN, req->code, now,
                       &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_account acc;
    bool created = false;
    if (fxb_account_sign_in(fxb_ctx_store(ctx), deps.crypto, phone, now, &acc, &created, &err) !=
        FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return open_session(ctx, &acc, req->device, created, resp);
}

static fxb_code sign_in_password(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                 ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SignInWithPasswordRequest *req =
        (const Fxb__V1__SignInWithPasswordRequest *)req_msg;
    Fxb__V1__TokenResponse *resp = (Fxb__V1__TokenResponse *)resp_msg;
    if (!deps_set)
        return not_ready(ctx);
    fxb_err err;
    char phone[FXB_PHONE_LEN + 1];
    if (fxb_phone_normalize(req->phone, phone, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_code drc = check_device(ctx, req->device);
    if (drc != FXB_OK)
        return drc;
    if (strlen(req->password) > FXB_PASSWORD_MAX_BYTES)
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PASSWORD_TOO_LONG", "密码过长",
                            "password longer than %d bytes", FXB_PASSWORD_MAX_BYTES);
    fxb_account acc;
    bool have = false;
    char encoded[FXB_PASSWORD_HASH_MAX];
    bool have_pw = false;
    fxb_code rc = fxb_account_by_phone(fxb_ctx_store(ctx), deps.crypto, phone, &acc, &err);
    if (rc == FXB_OK) {
        have = true;
        rc = fxb_account_password(fxb_ctx_store(ctx), acc.id, encoded, sizeof encoded, &err);
        if (rc == FXB_OK)
            have_pw = true;
        else if (rc != FXB_NOT_FOUND)
            return fxb_ctx_fail_err(ctx, &err);
    } else if (rc != FXB_NOT_FOUND) {
        return fxb_ctx_fail_err(ctx, &err);
    }
    if (fxb_password_authenticate(fxb_ctx_store(ctx), deps.secret, phone, have ? acc.id : NULL,
                                  have_pw ? encoded : NULL, req->password, fxb_wall_ms(),
                                  &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return open_session(ctx, &acc, req->device, false, resp);
}

/* --- refresh ------------------------------------------------------------ */

static fxb_code refresh(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    const Fxb__V1__RefreshRequest *req = (const Fxb__V1__RefreshRequest *)req_msg;
    Fxb__V1__TokenResponse *resp = (Fxb__V1__TokenResponse *)resp_msg;
    if (!deps_set)
        return not_ready(ctx);
    fxb_err err;
    fxb_session_tokens st;
    char account_id[FXB_ID_MAX + 1], reused[FXB_ID_MAX + 1];
    /* the idle window follows the account's timeout multiplier; the account
     * id leads the token ("<account>.<session>.<secret>") */
    int pct = 100;
    const char *dot = strchr(req->refresh_token, '.');
    if (dot && dot > req->refresh_token && (size_t)(dot - req->refresh_token) <= FXB_ID_MAX) {
        char acct[FXB_ID_MAX + 1];
        memcpy(acct, req->refresh_token, (size_t)(dot - req->refresh_token));
        acct[dot - req->refresh_token] = '\0';
        if (fxb_key_id_valid(acct))
            pct = fxb_auth_timeout_pct(fxb_ctx_store(ctx), acct);
    }
    fxb_code rc = fxb_session_refresh(fxb_ctx_store(ctx), req->refresh_token, fxb_wall_ms(), pct,
                                      &st, account_id, reused, &err);
    if (rc != FXB_OK) {
        if (reused[0]) {
            publish_ended(ctx, reused);
            fxb_log(FXB_LOG_WARN, "refresh token reuse detected: session ended");
        }
        return fxb_ctx_fail_err(ctx, &err);
    }
    fxb_account acc;
    if (fxb_account_get(fxb_ctx_store(ctx), account_id, &acc, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_code irc = issue_access(ctx, &acc, st.session_id, st.auth_time_ms, resp);
    if (irc != FXB_OK)
        return irc;
    resp->refresh_token = fxb_arena_strdup(fxb_ctx_arena(ctx), st.refresh_token);
    resp->refresh_expires_at_ms = st.refresh_idle_exp_ms;
    memset(&st, 0, sizeof st);
    return FXB_OK;
}

/* --- step-up and password ----------------------------------------------- */

/* The caller's own phone number, decrypted (for code checks). */
static fxb_code caller_phone(fxb_ctx *ctx, const char *account_id, char phone[FXB_PHONE_LEN + 1])
{
    fxb_err err;
    if (fxb_account_phone(fxb_ctx_store(ctx), deps.crypto, account_id, fxb_ctx_arena(ctx), phone,
                          &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

static fxb_code step_up(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    const Fxb__V1__StepUpRequest *req = (const Fxb__V1__StepUpRequest *)req_msg;
    Fxb__V1__TokenResponse *resp = (Fxb__V1__TokenResponse *)resp_msg;
    const fxb_caller *who = fxb_ctx_caller(ctx);
    if (!deps_set)
        return not_ready(ctx);
    fxb_err err;
    char phone[FXB_PHONE_LEN + 1];
    int64_t now = fxb_wall_ms();
    fxb_code prc = caller_phone(ctx, who->account_id, phone);
    if (prc != FXB_OK)
        return prc;
    if (req->proof_case == FXB__V1__STEP_UP_REQUEST__PROOF_CODE) {
        if (fxb_otp_verify(fxb_ctx_store(ctx), &deps.otp, phone, FXB_OTP_STEP_UP, req->code, now,
                           &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
    } else if (req->proof_case == FXB__V1__STEP_UP_REQUEST__PROOF_PASSWORD) {
        char encoded[FXB_PASSWORD_HASH_MAX];
        bool have_pw = fxb_account_password(fxb_ctx_store(ctx), who->account_id, encoded,
                                            sizeof encoded, &err) == FXB_OK;
        if (fxb_password_authenticate(fxb_ctx_store(ctx), deps.secret, phone, who->account_id,
                                      have_pw ? encoded : NULL, req->password, now, &err) != FXB_OK)
            return fxb_ctx_fail_err(ctx, &err);
    } else {
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "PROOF_REQUIRED", "请提供验证码或密码",
                            "a code or a password is required");
    }
    if (fxb_session_mark_auth(fxb_ctx_store(ctx), who->account_id, who->session_id, now, &err) !=
        FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    fxb_account acc;
    if (fxb_account_get(fxb_ctx_store(ctx), who->account_id, &acc, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return issue_access(ctx, &acc, who->session_id, now, resp);
}

static fxb_code set_password(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                             ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SetPasswordRequest *req = (const Fxb__V1__SetPasswordRequest *)req_msg;
    const fxb_caller *who = fxb_ctx_caller(ctx);
    if (!deps_set)
        return not_ready(ctx);
    fxb_err err;
    char phone[FXB_PHONE_LEN + 1];
    fxb_code prc = caller_phone(ctx, who->account_id, phone);
    if (prc != FXB_OK)
        return prc;
    if (fxb_password_policy(req->new_password, phone, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    char encoded[FXB_PASSWORD_HASH_MAX];
    if (fxb_password_hash(req->new_password, encoded, sizeof encoded, &err) != FXB_OK ||
        fxb_account_set_password(fxb_ctx_store(ctx), who->account_id, encoded, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

/* --- account and sessions ----------------------------------------------- */

static fxb_code get_me(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    Fxb__V1__Account *resp = (Fxb__V1__Account *)resp_msg;
    fxb_err err;
    fxb_account acc;
    if (fxb_account_get(fxb_ctx_store(ctx), fxb_ctx_caller(ctx)->account_id, &acc, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    Fxb__V1__Account *m = account_msg(fxb_ctx_arena(ctx), &acc);
    if (m == NULL)
        return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                            "out of memory");
    *resp = *m;
    return FXB_OK;
}

/* The caller's active sessions, in the call arena. */
static fxb_code own_sessions(fxb_ctx *ctx, fxb_session_info **out, size_t *n)
{
    fxb_err err;
    *out = fxb_arena_calloc(fxb_ctx_arena(ctx), FXB_SESSIONS_PER_ACCOUNT, sizeof **out);
    *n = 0;
    if (*out == NULL)
        return fxb_ctx_fail(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                            "out of memory");
    if (fxb_session_list(fxb_ctx_store(ctx), fxb_ctx_caller(ctx)->account_id, *out,
                         FXB_SESSIONS_PER_ACCOUNT, n, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return FXB_OK;
}

static fxb_code list_sessions(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                              ProtobufCMessage *resp_msg)
{
    Fxb__V1__ListSessionsResponse *resp = (Fxb__V1__ListSessionsResponse *)resp_msg;
    const fxb_caller *who = fxb_ctx_caller(ctx);
    fxb_arena *a = fxb_ctx_arena(ctx);
    fxb_session_info *infos;
    size_t n = 0;
    fxb_code rc = own_sessions(ctx, &infos, &n);
    if (rc != FXB_OK)
        return rc;
    resp->sessions = fxb_arena_calloc(a, n ? n : 1, sizeof *resp->sessions);
    for (size_t i = 0; resp->sessions && i < n; i++) {
        Fxb__V1__Session *s = fxb_arena_alloc(a, sizeof *s);
        if (s == NULL)
            break;
        fxb__v1__session__init(s);
        s->session_id = fxb_arena_strdup(a, infos[i].session_id);
        s->device_id = fxb_arena_strdup(a, infos[i].device_id);
        s->device_name = fxb_arena_strdup(a, infos[i].device_name);
        s->created_at_ms = infos[i].created_ms;
        s->last_used_at_ms = infos[i].last_used_ms;
        s->current = strcmp(infos[i].session_id, who->session_id) == 0;
        resp->sessions[resp->n_sessions++] = s;
    }
    return FXB_OK;
}

static fxb_code end_one(fxb_ctx *ctx, const char *account_id, const char *sid, uint32_t *ended)
{
    fxb_err err;
    bool was = false;
    if (fxb_session_end(fxb_ctx_store(ctx), account_id, sid, fxb_wall_ms(), &was, &err) != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    publish_ended(ctx, sid);
    if (was)
        (*ended)++;
    return FXB_OK;
}

static fxb_code sign_out(fxb_ctx *ctx, const ProtobufCMessage *req_msg, ProtobufCMessage *resp_msg)
{
    const Fxb__V1__SignOutRequest *req = (const Fxb__V1__SignOutRequest *)req_msg;
    Fxb__V1__SignOutResponse *resp = (Fxb__V1__SignOutResponse *)resp_msg;
    const fxb_caller *who = fxb_ctx_caller(ctx);
    const char *sid = req->session_id[0] ? req->session_id : who->session_id;
    if (!fxb_key_id_valid(sid))
        return fxb_ctx_fail(ctx, FXB_INVALID_ARGUMENT, "SESSION_ID_INVALID", "请求参数有误",
                            "session_id is not a session id");
    fxb_session_info info;
    fxb_err err;
    /* only the caller's own sessions: an unknown id looks the same as
     * another account's */
    fxb_code rc = fxb_session_get(fxb_ctx_store(ctx), who->account_id, sid, &info, &err);
    if (rc == FXB_NOT_FOUND)
        return fxb_ctx_fail(ctx, FXB_NOT_FOUND, "SESSION_NOT_FOUND", "会话不存在",
                            "no such session of this account");
    if (rc != FXB_OK)
        return fxb_ctx_fail_err(ctx, &err);
    return end_one(ctx, who->account_id, sid, &resp->ended);
}

static fxb_code sign_out_others(fxb_ctx *ctx, const ProtobufCMessage *req_msg,
                                ProtobufCMessage *resp_msg)
{
    Fxb__V1__SignOutResponse *resp = (Fxb__V1__SignOutResponse *)resp_msg;
    const fxb_caller *who = fxb_ctx_caller(ctx);
    fxb_session_info *infos;
    size_t n = 0;
    fxb_code rc = own_sessions(ctx, &infos, &n);
    if (rc != FXB_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(infos[i].session_id, who->session_id) == 0)
            continue;
        fxb_code erc = end_one(ctx, who->account_id, infos[i].session_id, &resp->ended);
        if (erc != FXB_OK)
            return erc;
    }
    return FXB_OK;
}

#define SIGNED_IN                                                                                  \
    {                                                                                              \
        .kind = FXB_ACCESS_SIGNED_IN                                                               \
    }

static const fxb_method methods[] = {
    {.path = "/fxb.v1.AuthService/SendCode",
     .request = &fxb__v1__send_code_request__descriptor,
     .response = &fxb__v1__send_code_response__descriptor,
     .unary = send_code,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = 1024}},
    {.path = "/fxb.v1.AuthService/SignInWithCode",
     .request = &fxb__v1__sign_in_with_code_request__descriptor,
     .response = &fxb__v1__token_response__descriptor,
     .unary = sign_in_code,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = 2048}},
    {.path = "/fxb.v1.AuthService/SignInWithPassword",
     .request = &fxb__v1__sign_in_with_password_request__descriptor,
     .response = &fxb__v1__token_response__descriptor,
     .unary = sign_in_password,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = 2048}},
    {.path = "/fxb.v1.AuthService/Refresh",
     .request = &fxb__v1__refresh_request__descriptor,
     .response = &fxb__v1__token_response__descriptor,
     .unary = refresh,
     .access = {.kind = FXB_ACCESS_PUBLIC},
     .limits = {.max_request_bytes = 1024}},
    {.path = "/fxb.v1.AuthService/StepUp",
     .request = &fxb__v1__step_up_request__descriptor,
     .response = &fxb__v1__token_response__descriptor,
     .unary = step_up,
     .access = SIGNED_IN,
     .limits = {.max_request_bytes = 1024}},
    {.path = "/fxb.v1.AuthService/SetPassword",
     .request = &fxb__v1__set_password_request__descriptor,
     .response = &fxb__v1__set_password_response__descriptor,
     .unary = set_password,
     .access = {.kind = FXB_ACCESS_SIGNED_IN, .step_up_s = FXB_STEP_UP_WINDOW_S},
     .limits = {.max_request_bytes = 1024}},
    {.path = "/fxb.v1.AuthService/GetMe",
     .request = &fxb__v1__get_me_request__descriptor,
     .response = &fxb__v1__account__descriptor,
     .unary = get_me,
     .access = SIGNED_IN},
    {.path = "/fxb.v1.AuthService/ListSessions",
     .request = &fxb__v1__list_sessions_request__descriptor,
     .response = &fxb__v1__list_sessions_response__descriptor,
     .unary = list_sessions,
     .access = SIGNED_IN},
    {.path = "/fxb.v1.AuthService/SignOut",
     .request = &fxb__v1__sign_out_request__descriptor,
     .response = &fxb__v1__sign_out_response__descriptor,
     .unary = sign_out,
     .access = SIGNED_IN},
    {.path = "/fxb.v1.AuthService/SignOutOthers",
     .request = &fxb__v1__sign_out_others_request__descriptor,
     .response = &fxb__v1__sign_out_response__descriptor,
     .unary = sign_out_others,
     .access = SIGNED_IN},
};

const fxb_service fxb_auth_service = {
    .name = "fxb.v1.AuthService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
