/* The per-call authenticator the runtime runs before every non-public
 * method: Bearer token -> verified claims (cache of verified tokens, so the
 * ES256 check runs once per token) -> session not revoked (in-memory set, or
 * one store read while that set is not synced) -> the method's access rule
 * (level, roles, step-up). Department scope is checked by the runtime. */
#ifndef FXB_AUTHN_H
#define FXB_AUTHN_H

#include "auth/revocation.h"
#include "auth/token.h"
#include "server/runtime.h"

typedef struct fxb_authn {
    const fxb_token_verifier *verifier;
    fxb_token_cache *cache;
    fxb_revocation *revocation;
} fxb_authn;

/* An fxb_authenticate_fn; state is a fxb_authn. Errors: UNAUTHENTICATED
 * (TOKEN_MISSING, TOKEN_MALFORMED and the token module's reasons,
 * SESSION_REVOKED, STEP_UP_REQUIRED), PERMISSION_DENIED (LEVEL_TOO_LOW,
 * ROLE_REQUIRED, DELEGATION_NOT_ALLOWED, and for delegated tokens
 * GRANT_REVOKED, GRANT_EXPIRED, GRANT_NOT_ACTIVE, OUT_OF_SCOPE), UNAVAILABLE when the session
 * cannot be checked. */
fxb_code fxb_authn_authenticate(void *state, fxb_ctx *ctx, const fxb_method *m, fxb_caller *caller,
                                fxb_err *err);

/* fxb_delegation_ops of the runtime (state is a fxb_authn): the item
 * check against the grant's item / category scopes (PERMISSION_DENIED
 * OUT_OF_SCOPE), and the activity log of acts under a grant (failures to
 * record are logged, never fail the call). */
fxb_code fxb_authn_check_item(void *state, fxb_ctx *ctx, const fxb_caller *caller, const char *item,
                              fxb_err *err);
void fxb_authn_record_act(void *state, fxb_ctx *ctx, const fxb_caller *caller, const char *item,
                          fxb_code code, const char *reason);

/* The rule part alone (for unit tests): does caller satisfy access at
 * now_s? */
fxb_code fxb_authn_check_rule(const fxb_access *access, const fxb_caller *caller, int64_t now_s,
                              fxb_err *err);

#endif
