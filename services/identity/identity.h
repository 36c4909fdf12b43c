/* fxb.v1.IdentityService: remote identity verification (regulation art. 9,
 * 远程认证) raising an account from L1 to L3 (face) or L2 (real name
 * only, requested_level 2), and the caller's masked
 * identity. Personal data is sealed at rest, found by blind index, shown
 * masked and never logged (PIPL art. 28/51). */
#ifndef FXB_IDENTITY_SERVICE_H
#define FXB_IDENTITY_SERVICE_H

#include "auth/attestation.h"
#include "server/handler.h"
#include "services/identity/registry.h"
#include "store/crypto.h"

/* A challenge is valid this long after StartVerification. */
#define FXB_IDV_CHALLENGE_TTL_MS (5 * 60 * 1000)
/* Failed CompleteVerification calls allowed per account and per ID number
 * per day (China Standard Time); the next is RESOURCE_EXHAUSTED. */
#define FXB_IDV_FAILURES_DAY 5
/* StartVerification calls allowed per account per day. */
#define FXB_IDV_STARTS_DAY 30
/* Face-match score required when the deps give none (0..100 scale). */
#define FXB_IDV_MIN_SCORE_DEFAULT 85.0
/* Oldest attestation accepted (its iat), seconds. */
#define FXB_IDV_ATTESTATION_MAX_AGE_S 300
/* Liveness actions asked per challenge. */
#define FXB_IDV_ACTIONS 2

/* reasons */
#define FXB_IDV_CHALLENGE_UNKNOWN        "CHALLENGE_UNKNOWN"               /* FAILED_PRECONDITION */
#define FXB_IDV_CHALLENGE_EXPIRED        "CHALLENGE_EXPIRED"               /* FAILED_PRECONDITION */
#define FXB_IDV_CHALLENGE_USED           "CHALLENGE_USED"                  /* FAILED_PRECONDITION */
#define FXB_IDV_ID_ALREADY_BOUND         "ID_ALREADY_BOUND"                /* ALREADY_EXISTS */
#define FXB_IDV_ALREADY_VERIFIED         "IDENTITY_ALREADY_VERIFIED"       /* FAILED_PRECONDITION */
#define FXB_IDV_TOO_MANY_FAILURES        "VERIFICATION_ATTEMPTS_EXHAUSTED" /* RESOURCE_EXHAUSTED */
#define FXB_IDV_TOO_MANY_STARTS          "VERIFICATION_STARTS_EXHAUSTED"   /* RESOURCE_EXHAUSTED */
#define FXB_IDV_NOT_CONFIGURED           "EKYC_NOT_CONFIGURED"             /* UNAVAILABLE */
#define FXB_IDV_LEVEL_INVALID            "REQUESTED_LEVEL_INVALID"         /* INVALID_ARGUMENT */
#define FXB_IDV_ATTESTATION_NOT_EXPECTED "ATTESTATION_NOT_EXPECTED"        /* INVALID_ARGUMENT */

/* What the service needs, owned by main and outliving the server. verifier
 * may be NULL (no provider keys): CompleteVerification then answers
 * UNAVAILABLE EKYC_NOT_CONFIGURED. */
typedef struct fxb_identity_deps {
    const fxb_attestation_verifier *verifier;
    const fxb_crypto *crypto;
    fxb_registry registry;
    double min_score; /* 0..100 (FXB_EKYC_MIN_SCORE); < 0 = FXB_IDV_MIN_SCORE_DEFAULT */
} fxb_identity_deps;

/* Installs the dependencies (copied) before the server starts. */
void fxb_identity_service_init(const fxb_identity_deps *deps);

/* Today's date (yyyymmdd) in China Standard Time at now_ms, and the
 * milliseconds until the next midnight there. */
int64_t fxb_idv_today(int64_t now_ms);
int64_t fxb_idv_ms_to_midnight(int64_t now_ms);

extern const fxb_service fxb_identity_service;

#endif
