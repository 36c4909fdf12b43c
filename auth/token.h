/* Access tokens: short-lived ES256 JWTs in the RFC 9068 profile (header typ
 * "at+jwt", kid naming a keyring key). Signing, the complete verification,
 * and a bounded cache of verified tokens that makes the common case (the
 * same token presented on many calls) cost a SHA-256 and a table lookup
 * instead of an ECDSA verification.
 *
 * Claims of an fxb access token (all issued by fxb_token_sign):
 *   iss, aud          strings; aud may also be an array that contains ours
 *   sub, sid, jti     ids: 1..64 characters of [A-Za-z0-9_-]
 *   iat, nbf, exp     integers (seconds); exp - iat <= 15 minutes
 *   auth_time         integer (seconds): the last proof of presence
 *   acr               INTEGER 1..3 (assurance level; "2" as a string is
 *                     refused)
 *   roles             array of "citizen" | "officer" | "admin" | "data-feed"
 *   dept              optional department code: 0..32 of [A-Za-z0-9_-]
 *   act               optional {"sub": id}: the agent acting for sub
 *   grant_id, scope   optional: delegation grant id; space-separated
 *                     RFC 6749 scope tokens, at most 1024 bytes
 * Unknown claims are ignored. Session revocation is not checked here: the
 * caller checks claims.sid after a successful verify or check. */
#ifndef FXB_AUTH_TOKEN_H
#define FXB_AUTH_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "auth/keys.h"
#include "server/handler.h"
#include "server/status.h"

/* Longest token accepted (bytes, without NUL); longer is TOKEN_MALFORMED
 * before any parsing. Ours are about 600 bytes. */
#define FXB_TOKEN_MAX_LEN 8192
/* Longest sub, sid, jti, act.sub, grant_id (= FXB_ID_MAX of handler.h). */
#define FXB_TOKEN_ID_MAX FXB_ID_MAX
/* Longest department code (= FXB_DEPT_MAX). */
#define FXB_TOKEN_DEPT_MAX FXB_DEPT_MAX
/* Longest scope string. */
#define FXB_TOKEN_SCOPE_MAX FXB_SCOPE_CLAIM_MAX
/* Longest issuer / audience. */
#define FXB_TOKEN_URI_MAX 256
/* Most entries accepted in an aud array or a roles array. */
#define FXB_TOKEN_AUD_MAX   8
#define FXB_TOKEN_ROLES_MAX 8
/* Longest lifetime (exp - iat) the signer issues. */
#define FXB_TOKEN_LIFETIME_MAX_S 900
/* Clock skew tolerated for nbf, iat, auth_time and the lifetime; never
 * for exp. */
#define FXB_TOKEN_LEEWAY_S 30
/* Latest time accepted in any time claim (9999-12-31T23:59:59Z). */
#define FXB_TOKEN_TIME_MAX 253402300799LL
#define FXB_TOKEN_TYP      "at+jwt"
#define FXB_TOKEN_ACR_MIN  FXB_LEVEL_PHONE     /* 1 */
#define FXB_TOKEN_ACR_MAX  FXB_LEVEL_REAL_FACE /* 3 */

/* Role bits are server/handler.h's FXB_ROLE_* (citizen 1, officer 2, admin 4,
 * data-feed 8); in the token, an array of their names. */
#define FXB_ROLES_KNOWN (FXB_ROLE_CITIZEN | FXB_ROLE_OFFICER | FXB_ROLE_ADMIN | FXB_ROLE_DATA_FEED)

/* The claims of a valid token; strings are NUL-terminated, empty when
 * absent. Fixed size (about 1.4 KB) so it can live on the stack. */
typedef struct fxb_token_claims {
    char sub[FXB_TOKEN_ID_MAX + 1]; /* account id */
    char sid[FXB_TOKEN_ID_MAX + 1]; /* session id */
    char jti[FXB_TOKEN_ID_MAX + 1]; /* token id */
    int64_t iat;
    int64_t nbf;
    int64_t exp;
    int64_t auth_time;
    int acr;        /* FXB_LEVEL_*: 1..3 */
    uint32_t roles; /* FXB_ROLE_* bits */
    char dept[FXB_TOKEN_DEPT_MAX + 1];
    /* Delegation: empty on ordinary tokens. */
    char act_sub[FXB_TOKEN_ID_MAX + 1];
    char grant_id[FXB_TOKEN_ID_MAX + 1];
    char scope[FXB_TOKEN_SCOPE_MAX + 1];
} fxb_token_claims;

/* What fxb_token_sign issues. iat, nbf and exp are taken from claims as
 * given (the caller reads the clock): iat <= nbf < exp, exp - iat <=
 * FXB_TOKEN_LIFETIME_MAX_S, 0 < auth_time <= iat. */
typedef struct fxb_token_params {
    const char *issuer;
    const char *audience;
    fxb_token_claims claims;
} fxb_token_params;

/* Signs a token with the keyring's active key (ES256 over OpenSSL with
 * the pre-parsed key; header {"alg":"ES256","typ":"at+jwt","kid":...}).
 * Not libjwt: 1.10.2 overwrites any typ header with "JWT" when it signs.
 * On success *out is a malloc'd NUL-terminated token the caller frees with
 * free(). Returns FXB_INVALID_ARGUMENT (reason TOKEN_PARAMS_INVALID, message
 * naming the field) for params that break a rule above, FXB_INTERNAL on a
 * crypto or allocation failure; *out is NULL then. */
fxb_code fxb_token_sign(const fxb_keyring *ring, const fxb_token_params *p, char **out,
                        fxb_err *err);

/* Writes a fresh random id (22 characters of base64url, 128 bits) for jti
 * or sid into out (FXB_TOKEN_ID_MAX + 1 bytes). FXB_INTERNAL without
 * randomness. */
fxb_code fxb_token_new_id(char *out, fxb_err *err);

typedef struct fxb_token_verifier fxb_token_verifier;

/* A verifier for tokens from issuer to audience, checked against ring
 * (borrowed: it must outlive the verifier). issuer and audience must be
 * 1..FXB_TOKEN_URI_MAX printable ASCII characters. Returns NULL and fills
 * err (FXB_INVALID_ARGUMENT / FXB_INTERNAL) on failure. Thread-safe once
 * built. Free with fxb_token_verifier_free. */
fxb_token_verifier *fxb_token_verifier_new(const fxb_keyring *ring, const char *issuer,
                                           const char *audience, fxb_err *err);

void fxb_token_verifier_free(fxb_token_verifier *v);

/* How many complete verifications (fxb_token_verify calls) this verifier
 * has run, for tests and metrics. */
uint64_t fxb_token_verifier_count(const fxb_token_verifier *v);

/* The complete, slow check of a token at time now_s (seconds since the
 * epoch), in this order: length <= FXB_TOKEN_MAX_LEN; exactly three
 * base64url parts (canonical, unpadded); header a JSON object with alg
 * "ES256", typ "at+jwt", no "crit", and a kid in the keyring; the ES256
 * signature with that key (OpenSSL with the keyring's parsed key: ECDSA
 * P-256 + SHA-256 is fixed here, never chosen by the token); payload a
 * JSON object without duplicate names; then the claims (see the file
 * comment): iss, aud, exp > now, nbf and iat <= now + leeway, lifetime,
 * auth_time, ids, acr, roles, dept, act, grant_id, scope.
 * On success fills *out and returns FXB_OK. Every rejection returns
 * FXB_UNAUTHENTICATED with reason TOKEN_MALFORMED, TOKEN_ALG_NOT_ALLOWED,
 * TOKEN_TYPE_INVALID, TOKEN_KEY_UNKNOWN, TOKEN_SIGNATURE_INVALID,
 * TOKEN_EXPIRED, TOKEN_NOT_YET_VALID, TOKEN_ISSUER_INVALID,
 * TOKEN_AUDIENCE_INVALID or TOKEN_CLAIMS_INVALID; *out (never NULL) is then
 * zeroed. The message never contains the token. now_s outside
 * 0..FXB_TOKEN_TIME_MAX is FXB_INTERNAL (CLOCK_INVALID). Thread-safe. */
fxb_code fxb_token_verify(const fxb_token_verifier *v, const char *token, int64_t now_s,
                          fxb_token_claims *out, fxb_err *err);

/* --- the cache of verified tokens ---------------------------------------- */

#define FXB_TOKEN_CACHE_DEFAULT_CAPACITY 65536u
#define FXB_TOKEN_CACHE_MAX_CAPACITY     (1u << 22)
#define FXB_TOKEN_CACHE_SHARDS           64u

typedef struct fxb_token_cache fxb_token_cache;

typedef struct fxb_token_cache_stats {
    uint64_t hits;      /* served from the cache */
    uint64_t misses;    /* not in the cache: a complete verification ran */
    uint64_t expired;   /* found but expired: removed and refused */
    uint64_t inserts;   /* verified tokens added */
    uint64_t evictions; /* least recently used entries dropped for room */
    size_t entries;     /* now in the cache */
    size_t capacity;    /* the bound on entries */
} fxb_token_cache_stats;

/* A cache of at most capacity verified tokens (0 = the default), split in
 * up to FXB_TOKEN_CACHE_SHARDS shards, each with its own lock and LRU
 * eviction. Keyed by the SHA-256 of the token (the token itself is never
 * stored); the value is the packed claims, so an entry costs about 100
 * bytes + the lengths of its strings (at most about 1.5 KB) + 32 bytes of
 * slots: ~16 MB for 65536 typical tokens. Returns NULL on
 * allocation failure or capacity > FXB_TOKEN_CACHE_MAX_CAPACITY. One cache
 * serves one verifier (one issuer, audience and keyring): after replacing
 * the keyring, clear the cache or make a new one. */
fxb_token_cache *fxb_token_cache_new(size_t capacity);

/* Releases the cache and every entry. NULL is allowed. */
void fxb_token_cache_free(fxb_token_cache *c);

/* Checks a token: a cached, unexpired token returns its claims at once; a
 * cached token with exp <= now_s is removed and refused with TOKEN_EXPIRED;
 * otherwise fxb_token_verify runs and a valid token is cached. Failures are
 * not cached. Same results and errors as fxb_token_verify (c may be NULL:
 * then it is fxb_token_verify). Thread-safe. */
fxb_code fxb_token_check(fxb_token_cache *c, const fxb_token_verifier *v, const char *token,
                         int64_t now_s, fxb_token_claims *out, fxb_err *err);

/* Removes every cached token of session sid (e.g. at logout); returns how
 * many. Scans every shard's slot array (O(capacity): about 0.5 ms at
 * 65536 entries), so it is for rare events such as logout, not per call.
 * Revocation must still be checked by the caller on every call. */
size_t fxb_token_cache_drop_session(fxb_token_cache *c, const char *sid);

/* Removes every entry. */
void fxb_token_cache_clear(fxb_token_cache *c);

/* Counters summed over the shards (each shard's under its lock). */
void fxb_token_cache_stats_get(fxb_token_cache *c, fxb_token_cache_stats *out);

#endif
