/* fxb.v1.AuthService: sign-in by phone + SMS code or password, tokens,
 * sessions per device, step-up. */
#ifndef FXB_AUTH_SERVICE_H
#define FXB_AUTH_SERVICE_H

#include "auth/keys.h"
#include "auth/otp.h"
#include "auth/revocation.h"
#include "auth/sms.h"
#include "auth/token.h"
#include "server/handler.h"
#include "store/crypto.h"

/* What the service needs, owned by main and outliving the server. */
typedef struct fxb_auth_deps {
    const fxb_keyring *keyring;
    fxb_token_cache *cache;
    fxb_revocation *revocation;
    const fxb_crypto *crypto;
    fxb_sms_sender *sms;
    fxb_otp_params otp;
    uint8_t secret[FXB_SECRET_LEN];
    const char *issuer;
    const char *audience;
    int access_ttl_s; /* <= FXB_TOKEN_LIFETIME_MAX_S */
} fxb_auth_deps;

/* Step-up window of sensitive methods (SetPassword and the like). */
#define FXB_STEP_UP_WINDOW_S 600

/* Installs the dependencies (copied) before the server starts. */
void fxb_auth_service_init(const fxb_auth_deps *deps);

/* The dependencies, for other services that issue codes or tokens
 * (accessibility's trusted relative). NULL before init. */
const fxb_auth_deps *fxb_auth_deps_get(void);

/* The timeout multiplier (percent, 100..300) an account chose in its
 * accessibility settings; 100 when none. */
int fxb_auth_timeout_pct(fxb_store *s, const char *account_id);

extern const fxb_service fxb_auth_service;

#endif
