/* fxb.v1.ProxyService (授权代办): grants offered by a principal or requested
 * by an agent, accepted, revoked, resigned, expired; delegated tokens
 * (RFC 8693) for the agent; the activity log of acts under a grant. The
 * per-call checks of delegated tokens live in auth/authn.c and auth/grant.c;
 * the key schema in auth/grant.h. */
#ifndef FXB_PROXY_SERVICE_H
#define FXB_PROXY_SERVICE_H

#include "server/handler.h"
#include "store/crypto.h"

typedef struct fxb_proxy_deps {
    const fxb_crypto *crypto; /* phone and ID number blind indexes */
} fxb_proxy_deps;

/* Installs the dependencies (copied) before the server starts. Token
 * signing uses the auth service's dependencies (fxb_auth_deps_get). */
void fxb_proxy_service_init(const fxb_proxy_deps *deps);

extern const fxb_service fxb_proxy_service;

#endif
