/* Attestations from the face-verification (eKYC) provider: a compact JWS,
 * ES256 with one of the provider's pinned keys, saying "the person in front
 * of the camera answered your challenge, is alive, and matches the photo
 * of this ID number". The server issues the challenge (nonce), the app
 * hands it to the provider SDK, the provider signs the result, and the app
 * passes the attestation back; the server verifies it here.
 *
 * Header: {"alg":"ES256","kid":<pinned key id>} (typ is not checked; crit
 * is refused). Payload claims (unknown claims are ignored):
 *   iss       string, 1..FXB_ATTESTATION_ISS_MAX printable ASCII: the
 *             provider id, reported, not matched (the key is the trust)
 *   iat, exp  integers, seconds since the epoch; iat < exp
 *   nonce     our challenge, as issued: 16..FXB_ATTESTATION_NONCE_MAX
 *             base64url characters
 *   id_hash   fxb_attestation_id_hash of the ID number the provider
 *             checked: 64 lower-case hex digits
 *   liveness  "pass" or "fail"
 *   score     face-match score, a JSON number (integer or real) in
 *             0..100, higher is better; compared with min_score (same
 *             scale), equal passes
 *   actions   array of at most FXB_ATTESTATION_ACTIONS_MAX strings
 *             (1..FXB_ATTESTATION_ACTION_MAX of [a-z0-9_]): the liveness
 *             actions performed, in the order performed. Optional in the
 *             shape (absent = none), but fxb_attestation_verify requires it
 *             to equal the challenge's list
 *
 * The ID number itself is never in the token, never in an error message,
 * and never in *out. Note that id_hash is an unsalted SHA-256 of a
 * low-entropy value: it binds the attestation to one person, it does not
 * hide the number from someone holding the token. */
#ifndef FXB_AUTH_ATTESTATION_H
#define FXB_AUTH_ATTESTATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

#include "auth/keys.h"
#include "server/status.h"

/* Longest attestation accepted (bytes); longer is ATTESTATION_MALFORMED
 * before any parsing. The simulator's are about 450 bytes. */
#define FXB_ATTESTATION_MAX_LEN     4096
#define FXB_ATTESTATION_ISS_MAX     128
#define FXB_ATTESTATION_NONCE_MIN   16
#define FXB_ATTESTATION_NONCE_MAX   128
#define FXB_ATTESTATION_ACTIONS_MAX 8
#define FXB_ATTESTATION_ACTION_MAX  32
#define FXB_ATTESTATION_SCORE_MAX   100.0
#define FXB_ATTESTATION_ID_HASH_LEN 64
/* Most provider keys one verifier pins (current + next for rotation, and
 * the dev key). */
#define FXB_ATTESTATION_KEYS_MAX 8
/* Clock skew tolerated for an iat in the future. */
#define FXB_ATTESTATION_LEEWAY_S 30
/* The development key made by `fxb-ekyc-sim keygen`: trusted only by a
 * verifier created with allow_dev_key. */
#define FXB_ATTESTATION_DEV_KID "ekyc-dev"
/* Public key files in a provider key directory: <kid>.pub.pem. */
#define FXB_ATTESTATION_PUB_SUFFIX ".pub.pem"

/* A verified attestation. */
typedef struct fxb_attestation {
    char iss[FXB_ATTESTATION_ISS_MAX + 1];
    char kid[FXB_KEY_KID_MAX + 1];
    int64_t iat;
    int64_t exp;
    double score;
    bool liveness_pass; /* always true in a verified attestation */
    size_t action_count;
    char actions[FXB_ATTESTATION_ACTIONS_MAX][FXB_ATTESTATION_ACTION_MAX + 1];
} fxb_attestation;

/* The id_hash of an ID number: lower-case hex of SHA-256 over exactly the
 * 18 ASCII characters of the number with a lower-case x made X (no salt,
 * no separator, no newline). out receives 64 hex digits and a NUL. Returns
 * false (out = "") when id is not 18 characters or SHA-256 fails. The
 * caller validates the number first (fxb_idnumber_check). */
bool fxb_attestation_id_hash(const char *id, char out[FXB_ATTESTATION_ID_HASH_LEN + 1]);

typedef struct fxb_attestation_verifier fxb_attestation_verifier;

/* An empty verifier. allow_dev_key: whether the key with kid
 * FXB_ATTESTATION_DEV_KID may be pinned -- true only outside production.
 * Returns NULL (FXB_INTERNAL) on allocation failure. Free with
 * fxb_attestation_verifier_free. Adding keys is not thread-safe; once
 * built, verification is. */
fxb_attestation_verifier *fxb_attestation_verifier_new(bool allow_dev_key, fxb_err *err);

void fxb_attestation_verifier_free(fxb_attestation_verifier *v);

/* Pins an EC P-256 public key (SubjectPublicKeyInfo PEM, len bytes) under
 * kid. FXB_INVALID_ARGUMENT (ATTESTATION_KEY_INVALID) for a bad kid, a
 * duplicate kid, or a PEM that is not a P-256 public key;
 * FXB_FAILED_PRECONDITION (ATTESTATION_DEV_KEY_REFUSED) for the dev kid on
 * a verifier without allow_dev_key, or (ATTESTATION_KEYS_FULL) beyond
 * FXB_ATTESTATION_KEYS_MAX keys. */
fxb_code fxb_attestation_verifier_add_pem(fxb_attestation_verifier *v, const char *kid,
                                          const char *pem, size_t len, fxb_err *err);

/* Pins every <kid>.pub.pem in dir (other files, e.g. private keys, are
 * ignored). FXB_NOT_FOUND (ATTESTATION_KEYS_MISSING) when dir is missing or
 * holds no public key file; otherwise fails as add_pem does, the message
 * naming the file -- a production directory that holds the dev key fails
 * as a whole rather than being silently trimmed. Keys added before a
 * failure stay pinned; callers discard the verifier then. */
fxb_code fxb_attestation_verifier_load_dir(fxb_attestation_verifier *v, const char *dir,
                                           fxb_err *err);

/* Number of pinned keys. */
size_t fxb_attestation_verifier_count(const fxb_attestation_verifier *v);

/* Verifies jws at now_s against the challenge (expected_nonce and its
 * n_expected_actions liveness actions, 1..FXB_ATTESTATION_ACTIONS_MAX) and
 * the ID number id_number (as for fxb_attestation_id_hash), requiring
 * score >= min_score and iat within max_age_s of now_s. Checks in this
 * order; the first failure answers, with FXB_PERMISSION_DENIED and reason:
 *   ATTESTATION_MALFORMED          length, three base64url parts (canonical),
 *                                  header a JSON object without duplicates
 *                                  or crit; after the signature, also the
 *                                  payload JSON and every claim's shape
 *   ATTESTATION_ALG_NOT_ALLOWED    alg other than "ES256" (none, HS256, ...)
 *   ATTESTATION_KEY_UNKNOWN        kid missing or not pinned
 *   ATTESTATION_SIGNATURE_INVALID  ES256 with the pinned key (the
 *                                  algorithm is fixed here)
 *   ATTESTATION_NONCE_MISMATCH     nonce != expected_nonce
 *   ATTESTATION_ID_MISMATCH        id_hash != hash of id_number
 *   ATTESTATION_LIVENESS_FAILED    liveness != "pass"
 *   ATTESTATION_ACTIONS_MISMATCH   actions missing, or not exactly the
 *                                  expected actions in the same order (the
 *                                  challenge asks for a sequence; another
 *                                  order is another sequence)
 *   ATTESTATION_SCORE_TOO_LOW      score < min_score
 *   ATTESTATION_STALE              iat < now - max_age_s, iat > now + 30 s,
 *                                  or exp <= now
 * Why PERMISSION_DENIED: the caller is signed in (its access token is
 * fine), so UNAUTHENTICATED would wrongly tell the app to sign in again;
 * and nothing about the server's state is missing (FAILED_PRECONDITION):
 * the evidence offered does not entitle the caller to the identity it
 * claims. Retrying the same attestation never helps; a new face check
 * with a new challenge may.
 * Bad arguments from the server itself (NULL v, expected_nonce or
 * id_number, an expected_nonce or id_number of the wrong shape, expected
 * actions NULL, empty, too many or of the wrong shape, max_age_s
 * <= 0, min_score outside 0..100, now_s < 0) are FXB_INTERNAL
 * (ATTESTATION_VERIFY_ARGS). On success fills *out (may be NULL);
 * otherwise *out is zeroed. Messages never contain the ID number or the token. */
fxb_code fxb_attestation_verify(const fxb_attestation_verifier *v, const char *jws,
                                const char *expected_nonce, const char *id_number,
                                const char *const *expected_actions, size_t n_expected_actions,
                                double min_score, int64_t now_s, int max_age_s,
                                fxb_attestation *out, fxb_err *err);

#endif
