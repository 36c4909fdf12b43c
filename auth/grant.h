/* Proxy grants in the store, as the auth layer needs them: the record's
 * keys and fields, the check made on every call with a delegated token (no
 * cache: a revocation applies to the very next call), and the activity log
 * of acts under a grant. The ProxyService (services/proxy) owns the grant
 * lifecycle; this module only reads grants and appends activity.
 *
 * Keys:
 *   {g:<gid>}:grant      hash, the authoritative record:
 *       principal        account id, or enterprise id ("e" + 24 hex)
 *       principal_kind   "person" | "enterprise"
 *       principal_label  masked phone, or the enterprise name
 *       agent            account id
 *       agent_label      masked phone
 *       scope            canonical scope string (auth/scope.h)
 *       purpose          text
 *       status           pending_agent | pending_principal | active |
 *                        declined | rejected | revoked | resigned |
 *                        withdrawn | expired
 *       initiated_by     principal | agent
 *       created_at_ms, valid_from_ms, valid_until_ms, pending_until_ms
 *       ended_at_ms, end_reason  (ended grants)
 *       approved_by      the account that made the principal's decision
 *       notify_activity  "1" | "0"
 *     Ended grants expire (PEXPIREAT) 15 months after their end, with
 *     their activity log. "active" with valid_until_ms <= now reads as
 *     expired; a pending grant past pending_until_ms reads as expired.
 *   {g:<gid>}:activity   stream of acts: at_ms, method, item, result,
 *                        reason, agent (capped at FXB_GRANT_ACTIVITY_MAX)
 *   {<t>:<id>}:grants:principal / :grants:agent
 *                        zset of live (pending or active) grant ids of a
 *                        subject (t = u for accounts, e for enterprises),
 *                        score = the time the grant stops being live
 *   {<t>:<id>}:grants:principal:ended / :grants:agent:ended
 *                        zset of ended grant ids, score = ended_at_ms
 *   {<t>:<id>}:grants:dedupe
 *                        hash "<agent> <scope>" -> grant id of a live grant
 */
#ifndef FXB_AUTH_GRANT_H
#define FXB_AUTH_GRANT_H

#include <stdbool.h>
#include <stdint.h>

#include "server/handler.h"
#include "store/store.h"

#define FXB_GRANT_ACTIVITY_MAX      10000
#define FXB_GRANT_RETENTION_MS      (456LL * 24 * 3600 * 1000) /* 15 months (456 days) */
#define FXB_GRANT_PENDING_MAX_MS    (7LL * 24 * 3600 * 1000)
#define FXB_GRANT_DEFAULT_MS        (90LL * 24 * 3600 * 1000)
#define FXB_GRANT_LIFETIME_MAX_MS   (366LL * 24 * 3600 * 1000)
#define FXB_GRANT_TOKEN_TTL_S       600
#define FXB_GRANT_MAX_PER_PRINCIPAL 10
#define FXB_GRANT_MAX_PER_AGENT     20

/* Reasons of refused delegated calls (PERMISSION_DENIED). */
#define FXB_GRANT_REVOKED    "GRANT_REVOKED" /* revoked, resigned, or otherwise ended */
#define FXB_GRANT_EXPIRED    "GRANT_EXPIRED"
#define FXB_GRANT_NOT_ACTIVE "GRANT_NOT_ACTIVE" /* pending, or not valid yet */
#define FXB_OUT_OF_SCOPE     "OUT_OF_SCOPE"

/* "{g:<gid>}:grant" / "{g:<gid>}:activity" into buf; false when gid is not
 * a valid key id or buf is too small. */
bool fxb_grant_key(char *buf, size_t cap, const char *gid);
bool fxb_grant_activity_key(char *buf, size_t cap, const char *gid);

/* What a live grant gives a delegated call: the grant's own scopes (the
 * authority, whatever the token says) and whether the principal wants a
 * notice per act. */
typedef struct fxb_grant_live {
    char scope[FXB_SCOPE_CLAIM_MAX + 1];
    bool notify;
    int64_t expires_at_ms; /* the record's expiry (PEXPIRETIME); 0 = none or unknown */
} fxb_grant_live;

/* The live state of a grant for a delegated call made by agent for
 * principal at now_ms: FXB_OK when the grant exists, names exactly this
 * principal and agent, is active and now is inside [valid_from,
 * valid_until); *out is filled then. Else PERMISSION_DENIED with
 * GRANT_REVOKED (missing, ended, or naming others), GRANT_EXPIRED or
 * GRANT_NOT_ACTIVE; or a store error. */
fxb_code fxb_grant_check_live(fxb_store *s, const char *gid, const char *principal,
                              const char *agent, int64_t now_ms, fxb_grant_live *out, fxb_err *err);

/* The catalogue category of a service item ("" when the catalogue does not
 * know it): HGET fxb:item:<code> category. */
fxb_code fxb_grant_item_category(fxb_store *s, const char *code, char *out, size_t cap,
                                 fxb_err *err);

/* One act under a grant, appended to its activity log: method path, item
 * code (NULL or "" when none), result (gRPC status code) and reason (NULL
 * or "" when OK). Nothing is written for a grant record that does not
 * exist; the log expires with the record. */
typedef struct fxb_grant_act {
    const char *grant_id;
    const char *principal;
    const char *agent;
    const char *method;
    const char *item;
    fxb_code result;
    const char *reason;
    int64_t at_ms;
    bool notify; /* also an inbox notice to the principal */
    /* The record's expiry as read on this call (fxb_grant_live), or 0.
     * Known: the entry is sent without waiting for its reply (one round
     * trip saved on every delegated call) and expires with the record.
     * 0: one script checks the record exists first (refused calls whose
     * grant may be gone). */
    int64_t grant_expires_at_ms;
} fxb_grant_act;

fxb_code fxb_grant_record_act(fxb_store *s, const fxb_grant_act *act, fxb_err *err);

#endif
