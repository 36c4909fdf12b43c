/* fxb.v1.BenefitService (proto/fxb/v1/benefit.proto, regulation art. 24):
 * policies for administrators and the issuing department's officers, the
 * confirmation step, payments recorded by the payment system, the public
 * policy list, and citizens' and enterprises' own entitlements with their
 * explanations and payout accounts.
 *
 * Besides the keys of policy.h and entitlement.h:
 *   {p:<pid>}:payout / {e:<eid>}:payout   hash: bank_name, account_enc
 *       (the account number sealed, label "payout_account", owner the
 *       subject), name_enc (the account name sealed, label "payout_name"),
 *       last4, updated_at_ms
 *   fxb:audit   benefit.confirm, benefit.reject, benefit.payout_account
 *
 * The policy lifecycle is policy.h's; the service drives it after its
 * access checks. */
#ifndef FXB_BENEFIT_SERVICE_H
#define FXB_BENEFIT_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "fxb/v1/benefit.pb-c.h"
#include "server/handler.h"
#include "services/benefit/policy.h"
#include "services/benefit/rule.h"
#include "store/crypto.h"
#include "store/store.h"

/* Payout accounts. */
#define FXB_PAYOUT_BANK_MAX      60 /* characters */
#define FXB_PAYOUT_NAME_MAX      60
#define FXB_PAYOUT_NUMBER_MIN    8 /* digits */
#define FXB_PAYOUT_NUMBER_MAX    32
#define FXB_PAYOUT_LABEL_ACCOUNT "payout_account"
#define FXB_PAYOUT_LABEL_NAME    "payout_name"
#define FXB_PAYOUT_STEP_UP_S     300 /* SetPayoutAccount: step-up at most this old */

/* --- the service ---------------------------------------------------------------- */

typedef struct fxb_benefit_deps {
    const fxb_crypto *crypto; /* payout accounts, page tokens */
} fxb_benefit_deps;

/* Installs the dependencies (copied) before the server starts. */
void fxb_benefit_service_init(const fxb_benefit_deps *deps);

extern const fxb_service fxb_benefit_service;

#endif
