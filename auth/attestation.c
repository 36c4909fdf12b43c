/* Verification of eKYC provider attestations (see attestation.h for the
 * claims and the order of checks). Built like auth/token.c's verifier:
 * nothing reaches OpenSSL before the header is known to name ES256 and a
 * pinned key; the signature algorithm is fixed in code (ECDSA P-256 +
 * SHA-256 over auth/jws), never taken from the token; base64url must be
 * canonical and JSON may not repeat a name, so one attestation has exactly
 * one reading. Keys are parsed once when pinned. */
#include "auth/attestation.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/jws.h"

/* A header of ours is ~40 base64url characters. */
#define HEADER_B64_MAX 512
/* Latest time accepted in a time claim (9999-12-31T23:59:59Z). */
#define TIME_MAX 253402300799LL

#define ZH_REJECT "人脸核验结果无效，请重新进行人脸识别"
#define ZH_CONFIG "服务器内部错误"

typedef struct pinned_key {
    char kid[FXB_KEY_KID_MAX + 1];
    EVP_PKEY *pkey;
} pinned_key;

struct fxb_attestation_verifier {
    bool allow_dev_key;
    size_t count;
    pinned_key keys[FXB_ATTESTATION_KEYS_MAX];
    EVP_MD *sha256; /* fetched once */
};

static fxb_code reject(fxb_err *err, const char *reason, const char *message)
{
    return fxb_err_set(err, FXB_PERMISSION_DENIED, reason, ZH_REJECT, "%s", message);
}

static fxb_code bad_args(fxb_err *err, const char *what)
{
    return fxb_err_set(err, FXB_INTERNAL, "ATTESTATION_VERIFY_ARGS", ZH_CONFIG,
                       "attestation verify called with invalid %s", what);
}

/* --- id hash -------------------------------------------------------------- */

bool fxb_attestation_id_hash(const char *id, char out[FXB_ATTESTATION_ID_HASH_LEN + 1])
{
    out[0] = '\0';
    if (id == NULL || strnlen(id, 19) != 18)
        return false;
    char n[19];
    memcpy(n, id, sizeof(n));
    if (n[17] == 'x')
        n[17] = 'X';
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(n, 18, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != sizeof(md)) {
        ERR_clear_error();
        return false;
    }
    static const char HEX[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(md); i++) {
        out[2 * i] = HEX[md[i] >> 4];
        out[2 * i + 1] = HEX[md[i] & 15];
    }
    out[FXB_ATTESTATION_ID_HASH_LEN] = '\0';
    return true;
}

/* --- verifier and keys ---------------------------------------------------- */

fxb_attestation_verifier *fxb_attestation_verifier_new(bool allow_dev_key, fxb_err *err)
{
    fxb_attestation_verifier *v = calloc(1, sizeof(*v));
    if (v == NULL) {
        fxb_err_set(err, FXB_INTERNAL, "OUT_OF_MEMORY", ZH_CONFIG, "out of memory");
        return NULL;
    }
    v->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (v->sha256 == NULL) {
        ERR_clear_error();
        free(v);
        fxb_err_set(err, FXB_INTERNAL, "CRYPTO_UNAVAILABLE", ZH_CONFIG, "SHA-256 unavailable");
        return NULL;
    }
    v->allow_dev_key = allow_dev_key;
    return v;
}

void fxb_attestation_verifier_free(fxb_attestation_verifier *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->count; i++)
        EVP_PKEY_free(v->keys[i].pkey);
    EVP_MD_free(v->sha256);
    free(v);
}

size_t fxb_attestation_verifier_count(const fxb_attestation_verifier *v)
{
    return v == NULL ? 0 : v->count;
}

static const pinned_key *key_find(const fxb_attestation_verifier *v, const char *kid)
{
    for (size_t i = 0; i < v->count; i++) {
        if (strcmp(v->keys[i].kid, kid) == 0)
            return &v->keys[i];
    }
    return NULL;
}

/* add_pem with a label (kid or file name) for messages. */
static fxb_code add_key(fxb_attestation_verifier *v, const char *kid, const char *pem, size_t len,
                        const char *label, fxb_err *err)
{
    if (!fxb_key_kid_valid(kid))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "ATTESTATION_KEY_INVALID", ZH_CONFIG,
                           "provider key %s: kid must be 1..%d of [A-Za-z0-9_-]", label,
                           FXB_KEY_KID_MAX);
    if (strcmp(kid, FXB_ATTESTATION_DEV_KID) == 0 && !v->allow_dev_key)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, "ATTESTATION_DEV_KEY_REFUSED", ZH_CONFIG,
                           "provider key %s: the development key is not trusted here", label);
    if (key_find(v, kid) != NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "ATTESTATION_KEY_INVALID", ZH_CONFIG,
                           "provider key %s: kid pinned twice", label);
    if (v->count >= FXB_ATTESTATION_KEYS_MAX)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, "ATTESTATION_KEYS_FULL", ZH_CONFIG,
                           "provider key %s: more than %d keys", label, FXB_ATTESTATION_KEYS_MAX);
    EVP_PKEY *pkey = NULL;
    if (pem != NULL && len > 0 && len <= FXB_KEY_FILE_MAX) {
        BIO *bio = BIO_new_mem_buf(pem, (int)len);
        if (bio != NULL)
            pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    ERR_clear_error();
    if (!fxb_jws_key_is_p256(pkey)) {
        EVP_PKEY_free(pkey);
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "ATTESTATION_KEY_INVALID", ZH_CONFIG,
                           "provider key %s: not an EC P-256 public key PEM", label);
    }
    pinned_key *k = &v->keys[v->count++];
    snprintf(k->kid, sizeof(k->kid), "%s", kid);
    k->pkey = pkey;
    return FXB_OK;
}

fxb_code fxb_attestation_verifier_add_pem(fxb_attestation_verifier *v, const char *kid,
                                          const char *pem, size_t len, fxb_err *err)
{
    if (v == NULL || kid == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "ATTESTATION_KEY_INVALID", ZH_CONFIG,
                           "provider key: missing argument");
    return add_key(v, kid, pem, len, kid, err);
}

/* Reads at most FXB_KEY_FILE_MAX bytes; longer files are refused. */
static char *read_small_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(FXB_KEY_FILE_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, FXB_KEY_FILE_MAX + 1, f) : 0;
    bool bad = buf == NULL || ferror(f) || n > FXB_KEY_FILE_MAX;
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

fxb_code fxb_attestation_verifier_load_dir(fxb_attestation_verifier *v, const char *dir,
                                           fxb_err *err)
{
    if (v == NULL || dir == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "ATTESTATION_KEY_INVALID", ZH_CONFIG,
                           "provider key directory: missing argument");
    DIR *d = opendir(dir);
    if (d == NULL)
        return fxb_err_set(err, FXB_NOT_FOUND, "ATTESTATION_KEYS_MISSING", ZH_CONFIG,
                           "provider key directory %s: %s", dir, strerror(errno));
    const size_t suffix_len = strlen(FXB_ATTESTATION_PUB_SUFFIX);
    size_t loaded = 0;
    fxb_code rc = FXB_OK;
    struct dirent *de;
    while (rc == FXB_OK && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t n = strlen(name);
        if (name[0] == '.' || n <= suffix_len ||
            strcmp(name + n - suffix_len, FXB_ATTESTATION_PUB_SUFFIX) != 0)
            continue;
        char kid[FXB_KEY_KID_MAX + 2];
        size_t kn = n - suffix_len;
        if (kn >= sizeof(kid))
            kn = sizeof(kid) - 1; /* too long: fails the kid rule below */
        memcpy(kid, name, kn);
        kid[kn] = '\0';
        char path[FXB_KEYRING_PATH_MAX];
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
            rc = fxb_err_set(err, FXB_INVALID_ARGUMENT, "ATTESTATION_KEY_INVALID", ZH_CONFIG,
                             "provider key directory %s: path too long", dir);
            break;
        }
        size_t len = 0;
        char *pem = read_small_file(path, &len);
        if (pem == NULL) {
            rc = fxb_err_set(err, FXB_INVALID_ARGUMENT, "ATTESTATION_KEY_INVALID", ZH_CONFIG,
                             "provider key %s: unreadable or larger than %d bytes", path,
                             FXB_KEY_FILE_MAX);
            break;
        }
        rc = add_key(v, kid, pem, len, path, err);
        free(pem);
        if (rc == FXB_OK)
            loaded++;
    }
    closedir(d);
    if (rc == FXB_OK && loaded == 0)
        rc = fxb_err_set(err, FXB_NOT_FOUND, "ATTESTATION_KEYS_MISSING", ZH_CONFIG,
                         "provider key directory %s: no *%s file", dir, FXB_ATTESTATION_PUB_SUFFIX);
    return rc;
}

/* --- verification --------------------------------------------------------- */

static bool json_str_is(const json_t *j, const char *s, size_t n)
{
    return json_is_string(j) && json_string_length(j) == n &&
           memcmp(json_string_value(j), s, n) == 0;
}

static bool b64url_text(const char *s, size_t n, size_t min, size_t max)
{
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!fxb_b64url_char((unsigned char)s[i]))
            return false;
    }
    return true;
}

static bool get_time(json_t *o, const char *name, int64_t *out)
{
    json_t *j = json_object_get(o, name);
    if (!json_is_integer(j))
        return false;
    json_int_t t = json_integer_value(j);
    if (t < 0 || t > TIME_MAX)
        return false;
    *out = (int64_t)t;
    return true;
}

static bool action_valid(const char *s, size_t n)
{
    if (n == 0 || n > FXB_ATTESTATION_ACTION_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

/* The parsed claims, shapes checked; nothing compared yet. */
typedef struct claims {
    json_t *nonce;
    json_t *id_hash;
    bool liveness_pass;
} claims;

/* Shape of every claim (ATTESTATION_MALFORMED); fills out and c. */
static fxb_code claims_shape(json_t *pl, fxb_attestation *out, claims *c, fxb_err *err)
{
    json_t *iss = json_object_get(pl, "iss");
    if (!json_is_string(iss) || json_string_length(iss) == 0 ||
        json_string_length(iss) > FXB_ATTESTATION_ISS_MAX)
        return reject(err, "ATTESTATION_MALFORMED", "attestation claims invalid: iss");
    const char *is = json_string_value(iss);
    for (size_t i = 0; i < json_string_length(iss); i++) {
        if ((unsigned char)is[i] < 0x21 || (unsigned char)is[i] > 0x7e)
            return reject(err, "ATTESTATION_MALFORMED", "attestation claims invalid: iss");
    }
    memcpy(out->iss, is, json_string_length(iss) + 1);
    if (!get_time(pl, "iat", &out->iat) || !get_time(pl, "exp", &out->exp) || out->exp <= out->iat)
        return reject(err, "ATTESTATION_MALFORMED", "attestation claims invalid: iat, exp");
    c->nonce = json_object_get(pl, "nonce");
    if (!json_is_string(c->nonce) ||
        !b64url_text(json_string_value(c->nonce), json_string_length(c->nonce),
                     FXB_ATTESTATION_NONCE_MIN, FXB_ATTESTATION_NONCE_MAX))
        return reject(err, "ATTESTATION_MALFORMED", "attestation claims invalid: nonce");
    c->id_hash = json_object_get(pl, "id_hash");
    bool hash_ok =
        json_is_string(c->id_hash) && json_string_length(c->id_hash) == FXB_ATTESTATION_ID_HASH_LEN;
    for (size_t i = 0; hash_ok && i < FXB_ATTESTATION_ID_HASH_LEN; i++) {
        char h = json_string_value(c->id_hash)[i];
        hash_ok = (h >= '0' && h <= '9') || (h >= 'a' && h <= 'f');
    }
    if (!hash_ok)
        return reject(err, "ATTESTATION_MALFORMED", "attestation claims invalid: id_hash");
    json_t *live = json_object_get(pl, "liveness");
    if (json_str_is(live, "pass", 4))
        c->liveness_pass = true;
    else if (json_str_is(live, "fail", 4))
        c->liveness_pass = false;
    else
        return reject(err, "ATTESTATION_MALFORMED", "attestation claims invalid: liveness");
    json_t *score = json_object_get(pl, "score");
    if (!json_is_number(score) || !isfinite(json_number_value(score)) ||
        json_number_value(score) < 0 || json_number_value(score) > FXB_ATTESTATION_SCORE_MAX)
        return reject(err, "ATTESTATION_MALFORMED", "attestation claims invalid: score");
    out->score = json_number_value(score);
    json_t *actions = json_object_get(pl, "actions");
    if (actions != NULL) {
        if (!json_is_array(actions) || json_array_size(actions) > FXB_ATTESTATION_ACTIONS_MAX)
            return reject(err, "ATTESTATION_MALFORMED", "attestation claims invalid: actions");
        size_t i;
        json_t *a;
        json_array_foreach(actions, i, a)
        {
            if (!json_is_string(a) || !action_valid(json_string_value(a), json_string_length(a)))
                return reject(err, "ATTESTATION_MALFORMED", "attestation claims invalid: actions");
            memcpy(out->actions[i], json_string_value(a), json_string_length(a) + 1);
        }
        out->action_count = json_array_size(actions);
    }
    return FXB_OK;
}

/* Equal lengths and equal bytes, in time independent of where they
 * differ. */
static bool same_text(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && CRYPTO_memcmp(a, b, an) == 0;
}

/* True when the echoed actions are exactly the expected ones, in order: the
 * challenge names a sequence the person performs, and a provider that
 * reports another sequence (or none) did not check the one we asked for. */
static bool same_actions(const fxb_attestation *out, const char *const *actions, size_t n)
{
    if (out->action_count != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(out->actions[i], actions[i]) != 0)
            return false;
    return true;
}

static fxb_code verify(const fxb_attestation_verifier *v, const char *jws, const char *nonce,
                       const char *id_hash, const char *const *actions, size_t n_actions,
                       double min_score, int64_t now, int max_age, fxb_attestation *out,
                       fxb_err *err)
{
    if (jws == NULL)
        return reject(err, "ATTESTATION_MALFORMED", "attestation missing");
    size_t len = strnlen(jws, FXB_ATTESTATION_MAX_LEN + 1);
    if (len > FXB_ATTESTATION_MAX_LEN)
        return reject(err, "ATTESTATION_MALFORMED", "attestation too long");
    size_t dot[2];
    size_t dots = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)jws[i];
        if (ch == '.') {
            if (dots == 2)
                return reject(err, "ATTESTATION_MALFORMED", "attestation must have three parts");
            dot[dots++] = i;
        } else if (!fxb_b64url_char(ch)) {
            return reject(err, "ATTESTATION_MALFORMED",
                          "attestation has characters outside base64url");
        }
    }
    if (dots != 2)
        return reject(err, "ATTESTATION_MALFORMED", "attestation must have three parts");
    const char *hp = jws;
    size_t hn = dot[0];
    const char *pp = jws + dot[0] + 1;
    size_t pn = dot[1] - dot[0] - 1;
    const char *sp = jws + dot[1] + 1;
    size_t sn = len - dot[1] - 1;
    if (hn == 0 || pn == 0)
        return reject(err, "ATTESTATION_MALFORMED", "attestation part empty");

    /* Header: nothing reaches OpenSSL before alg and kid are ours. */
    if (hn > HEADER_B64_MAX)
        return reject(err, "ATTESTATION_MALFORMED", "attestation header too long");
    unsigned char hbuf[HEADER_B64_MAX / 4 * 3 + 3];
    long hlen = fxb_b64url_decode(hp, hn, hbuf, sizeof(hbuf));
    if (hlen <= 0)
        return reject(err, "ATTESTATION_MALFORMED", "attestation header is not base64url");
    json_t *header = json_loadb((const char *)hbuf, (size_t)hlen, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(header)) {
        json_decref(header);
        return reject(err, "ATTESTATION_MALFORMED", "attestation header is not a JSON object");
    }
    bool crit = json_object_get(header, "crit") != NULL;
    bool alg_ok = json_str_is(json_object_get(header, "alg"), "ES256", 5);
    json_t *kidj = json_object_get(header, "kid");
    const pinned_key *key = NULL;
    if (json_is_string(kidj) && strlen(json_string_value(kidj)) == json_string_length(kidj))
        key = key_find(v, json_string_value(kidj));
    json_decref(header);
    if (crit)
        return reject(err, "ATTESTATION_MALFORMED", "attestation header has crit");
    if (!alg_ok)
        return reject(err, "ATTESTATION_ALG_NOT_ALLOWED", "attestation algorithm not allowed");
    if (key == NULL)
        return reject(err, "ATTESTATION_KEY_UNKNOWN", "attestation key id unknown");

    unsigned char sig[FXB_JWS_ES256_SIG_LEN];
    if (sn != FXB_JWS_ES256_SIG_B64_LEN ||
        fxb_b64url_decode(sp, sn, sig, sizeof(sig)) != FXB_JWS_ES256_SIG_LEN)
        return reject(err, "ATTESTATION_SIGNATURE_INVALID", "attestation signature invalid");
    if (!fxb_jws_es256_verify(key->pkey, v->sha256, jws, dot[1], sig))
        return reject(err, "ATTESTATION_SIGNATURE_INVALID", "attestation signature invalid");
    snprintf(out->kid, sizeof(out->kid), "%s", key->kid);

    /* Payload: signed by the provider, still parsed strictly. */
    unsigned char pbuf[FXB_ATTESTATION_MAX_LEN / 4 * 3 + 3];
    long plen = fxb_b64url_decode(pp, pn, pbuf, sizeof(pbuf));
    json_t *pl = plen > 0
                     ? json_loadb((const char *)pbuf, (size_t)plen, JSON_REJECT_DUPLICATES, NULL)
                     : NULL;
    if (!json_is_object(pl)) {
        json_decref(pl);
        return reject(err, "ATTESTATION_MALFORMED", "attestation payload is not a JSON object");
    }
    claims c = {0};
    fxb_code rc = claims_shape(pl, out, &c, err);
    if (rc != FXB_OK)
        goto done;
    if (!same_text(json_string_value(c.nonce), json_string_length(c.nonce), nonce, strlen(nonce))) {
        rc = reject(err, "ATTESTATION_NONCE_MISMATCH", "attestation answers another challenge");
        goto done;
    }
    if (!same_text(json_string_value(c.id_hash), json_string_length(c.id_hash), id_hash,
                   FXB_ATTESTATION_ID_HASH_LEN)) {
        rc = reject(err, "ATTESTATION_ID_MISMATCH", "attestation is for another ID number");
        goto done;
    }
    if (!c.liveness_pass) {
        rc = reject(err, "ATTESTATION_LIVENESS_FAILED", "attestation liveness check failed");
        goto done;
    }
    if (!same_actions(out, actions, n_actions)) {
        rc = reject(err, "ATTESTATION_ACTIONS_MISMATCH",
                    "attestation liveness actions differ from the challenge's");
        goto done;
    }
    if (out->score < min_score) {
        rc = reject(err, "ATTESTATION_SCORE_TOO_LOW", "attestation face-match score too low");
        goto done;
    }
    if (out->iat < now - max_age) {
        rc = reject(err, "ATTESTATION_STALE", "attestation too old");
        goto done;
    }
    if (out->iat > now + FXB_ATTESTATION_LEEWAY_S) {
        rc = reject(err, "ATTESTATION_STALE", "attestation issued in the future");
        goto done;
    }
    if (out->exp <= now) {
        rc = reject(err, "ATTESTATION_STALE", "attestation expired");
        goto done;
    }
    out->liveness_pass = true;
done:
    json_decref(pl);
    return rc;
}

fxb_code fxb_attestation_verify(const fxb_attestation_verifier *v, const char *jws,
                                const char *expected_nonce, const char *id_number,
                                const char *const *expected_actions, size_t n_expected_actions,
                                double min_score, int64_t now_s, int max_age_s,
                                fxb_attestation *out, fxb_err *err)
{
    fxb_attestation scratch;
    if (out == NULL)
        out = &scratch;
    memset(out, 0, sizeof(*out));
    if (v == NULL)
        return bad_args(err, "verifier");
    if (expected_nonce == NULL ||
        !b64url_text(expected_nonce, strnlen(expected_nonce, FXB_ATTESTATION_NONCE_MAX + 1),
                     FXB_ATTESTATION_NONCE_MIN, FXB_ATTESTATION_NONCE_MAX))
        return bad_args(err, "expected nonce");
    char id_hash[FXB_ATTESTATION_ID_HASH_LEN + 1];
    if (!fxb_attestation_id_hash(id_number, id_hash))
        return bad_args(err, "ID number");
    if (expected_actions == NULL || n_expected_actions == 0 ||
        n_expected_actions > FXB_ATTESTATION_ACTIONS_MAX)
        return bad_args(err, "expected actions");
    for (size_t i = 0; i < n_expected_actions; i++)
        if (expected_actions[i] == NULL ||
            !action_valid(expected_actions[i],
                          strnlen(expected_actions[i], FXB_ATTESTATION_ACTION_MAX + 1)))
            return bad_args(err, "expected actions");
    if (max_age_s <= 0 || !(min_score >= 0 && min_score <= FXB_ATTESTATION_SCORE_MAX))
        return bad_args(err, "max age or min score");
    if (now_s < 0 || now_s > TIME_MAX)
        return bad_args(err, "clock");
    fxb_code rc = verify(v, jws, expected_nonce, id_hash, expected_actions, n_expected_actions,
                         min_score, now_s, max_age_s, out, err);
    if (rc != FXB_OK)
        memset(out, 0, sizeof(*out));
    OPENSSL_cleanse(id_hash, sizeof(id_hash));
    return rc;
}
