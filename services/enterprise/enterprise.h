/* fxb.v1.EnterpriseService: a real-person-verified citizen binds the
 * enterprises whose legal representative they are, lists and unbinds them.
 * A bound enterprise is a subject ({e:<eid>}) that can later receive
 * benefits and grant proxy authority. Bindings and unbindings are audited
 * (ids only). */
#ifndef FXB_ENTERPRISE_SERVICE_H
#define FXB_ENTERPRISE_SERVICE_H

#include "server/handler.h"
#include "services/enterprise/registry.h"
#include "store/crypto.h"

/* Enterprises one account may hold bound. */
#define FXB_ENTERPRISE_MAX_PER_ACCOUNT 50
/* An enterprise id: "e" + 24 hex digits of the credit code's blind index. */
#define FXB_ENTERPRISE_ID_HEX         24
#define FXB_ENTERPRISE_ID_LEN         (1 + FXB_ENTERPRISE_ID_HEX)
#define FXB_ENTERPRISE_ROLE_LEGAL_REP "legal_representative"

/* reasons */
#define FXB_ENTERPRISE_NOT_LEGAL_REP  "NOT_LEGAL_REPRESENTATIVE"  /* PERMISSION_DENIED */
#define FXB_ENTERPRISE_TOO_MANY       "ENTERPRISES_TOO_MANY"      /* RESOURCE_EXHAUSTED */
#define FXB_ENTERPRISE_NOT_BOUND      "ENTERPRISE_NOT_BOUND"      /* NOT_FOUND */
#define FXB_ENTERPRISE_NOT_CONFIGURED "ENTERPRISE_NOT_CONFIGURED" /* UNAVAILABLE */

/* What the service needs, owned by main and outliving the server. */
typedef struct fxb_enterprise_deps {
    const fxb_crypto *crypto;
    fxb_entreg registry;
} fxb_enterprise_deps;

/* Installs the dependencies (copied) before the server starts. */
void fxb_enterprise_service_init(const fxb_enterprise_deps *deps);

/* The enterprise id of a checked credit code into out
 * (FXB_ENTERPRISE_ID_LEN + 1 bytes). Returns FXB_OK or the crypto error. */
fxb_code fxb_enterprise_id(const fxb_crypto *c, const char *code,
                           char out[FXB_ENTERPRISE_ID_LEN + 1], fxb_err *err);

extern const fxb_service fxb_enterprise_service;

#endif
