/* Access tokens and their keyring, as rules: what the keyring refuses to
 * load, what the signer refuses to issue, every hostile token the verifier
 * must refuse (each with its reason), and the cache's bounds. Hostile
 * tokens are built by hand here (base64url + OpenSSL ECDSA / HMAC / RSA),
 * and with libjwt where an attacker would use it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth/keys.h"
#include "auth/token.h"

#define ISS "https://id.fxb.example"
#define AUD "fxb-api"
#define NOW 1750000000LL

/* --- fixture ------------------------------------------------------------- */

static struct {
    char base[128];
    char dir[256];       /* two keys: old, then active */
    char other_dir[256]; /* one key nobody trusts */
    char kid[FXB_KEY_KID_MAX + 1];
    char old_kid[FXB_KEY_KID_MAX + 1];
    fxb_keyring *ring;
    fxb_keyring *ring_old; /* loaded before the rotation: active = old key */
    fxb_keyring *other;
    fxb_token_verifier *v;
    EVP_PKEY *rsa;
} F;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int fixture_up(void **state)
{
    memset(&F, 0, sizeof(F));
    snprintf(F.base, sizeof(F.base), "/tmp/fxb-test-token.XXXXXX");
    if (mkdtemp(F.base) == NULL)
        return -1;
    snprintf(F.dir, sizeof(F.dir), "%s/data/keys/jwt", F.base);
    snprintf(F.other_dir, sizeof(F.other_dir), "%s/other", F.base);
    fxb_err err;
    if (fxb_keyring_generate(F.dir, F.old_kid, &err) != FXB_OK)
        return -1;
    F.ring_old = fxb_keyring_load(F.dir, &err);
    if (F.ring_old == NULL || fxb_keyring_generate(F.dir, F.kid, &err) != FXB_OK)
        return -1;
    F.ring = fxb_keyring_load(F.dir, &err);
    if (F.ring == NULL || fxb_keyring_generate(F.other_dir, NULL, &err) != FXB_OK)
        return -1;
    F.other = fxb_keyring_load(F.other_dir, &err);
    F.v = fxb_token_verifier_new(F.ring, ISS, AUD, &err);
    if (F.other == NULL || F.v == NULL)
        return -1;
    F.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    return F.rsa == NULL ? -1 : 0;
}

static int fixture_down(void **state)
{
    fxb_token_verifier_free(F.v);
    fxb_keyring_free(F.ring);
    fxb_keyring_free(F.ring_old);
    fxb_keyring_free(F.other);
    EVP_PKEY_free(F.rsa);
    rm_rf(F.base);
    return 0;
}

/* --- building tokens by hand --------------------------------------------- */

static char *b64url(const void *data, size_t n)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *in = data;
    char *out = malloc(n / 3 * 4 + 5);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = A[(v >> 18) & 63];
        out[o++] = A[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = A[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = A[v & 63];
    }
    out[o] = '\0';
    return out;
}

/* Inverse of b64url for test inspection; returns malloc'd bytes. */
static unsigned char *unb64url(const char *s, size_t n, size_t *out_len)
{
    char *std = malloc(n + 4);
    assert_non_null(std);
    for (size_t i = 0; i < n; i++)
        std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    size_t m = n;
    while (m % 4 != 0)
        std[m++] = '=';
    unsigned char *out = malloc(m / 4 * 3 + 1);
    assert_non_null(out);
    int got = EVP_DecodeBlock(out, (unsigned char *)std, (int)m);
    assert_true(got >= 0);
    *out_len = (size_t)got - (n % 4 == 2 ? 2 : n % 4 == 3 ? 1 : 0);
    free(std);
    return out;
}

typedef enum { SIG_NONE, SIG_ES256, SIG_HS256, SIG_RS256 } sig_kind;

/* ES256 in the JOSE form r || s. */
static void es256_jose(EVP_PKEY *pkey, const char *msg, size_t n, unsigned char sig[64])
{
    unsigned char der[80];
    size_t der_len = sizeof(der);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey), 1);
    assert_int_equal(EVP_DigestSign(ctx, der, &der_len, (const unsigned char *)msg, n), 1);
    EVP_MD_CTX_free(ctx);
    const unsigned char *dp = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &dp, (long)der_len);
    assert_non_null(es);
    const BIGNUM *r;
    const BIGNUM *s;
    ECDSA_SIG_get0(es, &r, &s);
    BN_bn2binpad(r, sig, 32);
    BN_bn2binpad(s, sig + 32, 32);
    ECDSA_SIG_free(es);
}

/* header.payload.signature over the given bytes (payload may hold NULs). */
static char *forge_n(const char *header, const char *payload, size_t payload_len, sig_kind kind,
                     EVP_PKEY *pkey, const void *hmac_key, size_t hmac_key_len)
{
    char *h = b64url(header, strlen(header));
    char *p = b64url(payload, payload_len);
    size_t n = strlen(h) + 1 + strlen(p);
    char *msg = malloc(n + 1);
    assert_non_null(msg);
    snprintf(msg, n + 1, "%s.%s", h, p);
    free(h);
    free(p);
    unsigned char sig[512];
    size_t sig_len = 0;
    if (kind == SIG_ES256) {
        es256_jose(pkey, msg, n, sig);
        sig_len = 64;
    } else if (kind == SIG_HS256) {
        unsigned int len = 0;
        assert_non_null(
            HMAC(EVP_sha256(), hmac_key, (int)hmac_key_len, (unsigned char *)msg, n, sig, &len));
        sig_len = len;
    } else if (kind == SIG_RS256) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        sig_len = sizeof(sig);
        assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey), 1);
        assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, (unsigned char *)msg, n), 1);
        EVP_MD_CTX_free(ctx);
    }
    char *s = b64url(sig, sig_len);
    char *tok = malloc(n + 2 + strlen(s));
    assert_non_null(tok);
    sprintf(tok, "%s.%s", msg, s);
    free(msg);
    free(s);
    return tok;
}

static EVP_PKEY *key_of(const fxb_keyring *ring)
{
    return fxb_key_pkey(fxb_keyring_active(ring));
}

/* Dumps and releases both objects; ES256 with the active key of F.ring
 * unless told otherwise. */
static char *forge_json(json_t *header, json_t *payload, sig_kind kind, EVP_PKEY *pkey)
{
    char *h = json_dumps(header, JSON_COMPACT);
    char *p = json_dumps(payload, JSON_COMPACT);
    assert_non_null(h);
    assert_non_null(p);
    char *tok = forge_n(h, p, strlen(p), kind, pkey, NULL, 0);
    free(h);
    free(p);
    json_decref(header);
    json_decref(payload);
    return tok;
}

static json_t *good_header(void)
{
    return json_pack("{s:s, s:s, s:s}", "alg", "ES256", "typ", "at+jwt", "kid", F.kid);
}

static json_t *good_payload(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:[s,s], s:s}", "iss", ISS,
                     "aud", AUD, "sub", "u_1001", "sid", "s-77", "jti", "j-1", "iat",
                     (json_int_t)NOW, "nbf", (json_int_t)NOW, "exp", (json_int_t)(NOW + 600),
                     "auth_time", (json_int_t)(NOW - 100), "acr", 2, "roles", "citizen", "officer",
                     "dept", "civil_affairs");
}

static char *good_forged(void)
{
    return forge_json(good_header(), good_payload(), SIG_ES256, key_of(F.ring));
}

static fxb_token_params good_params(void)
{
    fxb_token_params p;
    memset(&p, 0, sizeof(p));
    p.issuer = ISS;
    p.audience = AUD;
    snprintf(p.claims.sub, sizeof(p.claims.sub), "u_1001");
    snprintf(p.claims.sid, sizeof(p.claims.sid), "s-77");
    snprintf(p.claims.jti, sizeof(p.claims.jti), "j-1");
    p.claims.iat = NOW;
    p.claims.nbf = NOW;
    p.claims.exp = NOW + 600;
    p.claims.auth_time = NOW - 100;
    p.claims.acr = 2;
    p.claims.roles = FXB_ROLE_CITIZEN | FXB_ROLE_OFFICER;
    snprintf(p.claims.dept, sizeof(p.claims.dept), "civil_affairs");
    return p;
}

static char *sign_ok(const fxb_keyring *ring, const fxb_token_params *p)
{
    /* Out-parameter on the heap: gcc 12 -O3 otherwise takes the returned
     * token for a pointer into this frame (-Wdangling-pointer). */
    char **slot = calloc(1, sizeof(char *));
    assert_non_null(slot);
    fxb_err err;
    assert_int_equal(fxb_token_sign(ring, p, slot, &err), FXB_OK);
    char *tok = *slot;
    free(slot);
    assert_non_null(tok);
    return tok;
}

/* Asserts a rejection with this reason, a zeroed result and a message that
 * carries no part of the token. */
static void expect_reject_at(const char *tok, int64_t now, const char *reason)
{
    fxb_token_claims c;
    memset(&c, 0xAB, sizeof(c));
    fxb_err err;
    fxb_err_clear(&err);
    assert_int_equal(fxb_token_verify(F.v, tok, now, &c, &err), FXB_UNAUTHENTICATED);
    assert_string_equal(err.reason, reason);
    assert_true(err.message[0] != '\0');
    assert_true(err.message_zh[0] != '\0');
    fxb_token_claims zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&c, &zero, sizeof(c));
    /* No part of the token (header, payload or signature text) leaks. */
    if (tok != NULL) {
        const char *p = tok;
        while (*p != '\0') {
            const char *end = strchr(p, '.');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            if (n >= 12) {
                char part[13];
                memcpy(part, p, 12);
                part[12] = '\0';
                assert_null(strstr(err.message, part));
                assert_null(strstr(err.message_zh, part));
            }
            p += n;
            if (*p == '.')
                p++;
        }
    }
}

static void expect_reject(const char *tok, const char *reason)
{
    expect_reject_at(tok, NOW, reason);
}

static void expect_ok(const char *tok, fxb_token_claims *c)
{
    fxb_err err;
    fxb_err_clear(&err);
    fxb_token_claims local;
    if (c == NULL)
        c = &local;
    fxb_code rc = fxb_token_verify(F.v, tok, NOW, c, &err);
    if (rc != FXB_OK)
        fail_msg("rejected: %s (%s)", err.reason, err.message);
}

/* Forges the good payload with one claim replaced (value NULL = removed). */
static char *with_claim(const char *name, json_t *value)
{
    json_t *p = good_payload();
    if (value == NULL)
        json_object_del(p, name);
    else
        json_object_set_new(p, name, value);
    return forge_json(good_header(), p, SIG_ES256, key_of(F.ring));
}

static char *with_header(const char *name, json_t *value)
{
    json_t *h = good_header();
    if (value == NULL)
        json_object_del(h, name);
    else
        json_object_set_new(h, name, value);
    return forge_json(h, good_payload(), SIG_ES256, key_of(F.ring));
}

/* --- keyring --------------------------------------------------------------- */

static void write_file(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void write_pkey(const char *path, EVP_PKEY *pkey, int traditional, const char *pass)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    BIO *b = BIO_new_fp(f, BIO_NOCLOSE);
    assert_non_null(b);
    if (traditional)
        assert_int_equal(PEM_write_bio_PrivateKey_traditional(b, pkey, NULL, NULL, 0, NULL, NULL),
                         1);
    else if (pass != NULL)
        assert_int_equal(
            PEM_write_bio_PrivateKey(b, pkey, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)pass), 1);
    else
        assert_int_equal(PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL), 1);
    BIO_free(b);
    fclose(f);
}

static void subdir(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", F.base, name);
    rm_rf(out);
    assert_int_equal(mkdir(out, 0700), 0);
}

static void test_keyring_generate_makes_a_private_dir_a_0600_key_and_activates_it(void **state)
{
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/gen/a/b", F.base);
    char kid[FXB_KEY_KID_MAX + 1];
    fxb_err err;
    assert_int_equal(fxb_keyring_generate(dir, kid, &err), FXB_OK);
    assert_true(fxb_key_kid_valid(kid));
    assert_int_equal(kid[0], 'k');
    assert_int_equal(strlen(kid), 26); /* k + YYYYMMDDTHHMMSSZ + - + 8 hex */
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    char path[400];
    snprintf(path, sizeof(path), "%s/%s.pem", dir, kid);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    fxb_keyring *ring = fxb_keyring_load(dir, &err);
    assert_non_null(ring);
    assert_int_equal(fxb_keyring_count(ring), 1);
    assert_string_equal(fxb_key_kid(fxb_keyring_active(ring)), kid);
    size_t n = 0;
    assert_non_null(strstr(fxb_key_public_pem(fxb_keyring_active(ring), &n), "PUBLIC KEY"));
    assert_true(n > 0);
    assert_non_null(strstr(fxb_key_private_pem(fxb_keyring_active(ring), NULL), "PRIVATE KEY"));
    fxb_keyring_free(ring);
}

static void test_keyring_with_two_keys_signs_with_the_active_one(void **state)
{
    assert_int_equal(fxb_keyring_count(F.ring), 2);
    assert_string_equal(fxb_key_kid(fxb_keyring_active(F.ring)), F.kid);
    assert_non_null(fxb_keyring_find(F.ring, F.old_kid));
    assert_null(fxb_keyring_find(F.ring, "nope"));
    assert_string_equal(fxb_key_kid(fxb_keyring_active(F.ring_old)), F.old_kid);
}

static void test_keyring_without_active_file_uses_the_greatest_kid(void **state)
{
    char dir[300];
    subdir(dir, sizeof(dir), "noactive");
    char a[FXB_KEY_KID_MAX + 1];
    char b[FXB_KEY_KID_MAX + 1];
    fxb_err err;
    assert_int_equal(fxb_keyring_generate(dir, a, &err), FXB_OK);
    assert_int_equal(fxb_keyring_generate(dir, b, &err), FXB_OK);
    char path[400];
    snprintf(path, sizeof(path), "%s/active", dir);
    assert_int_equal(unlink(path), 0);
    fxb_keyring *ring = fxb_keyring_load(dir, &err);
    assert_non_null(ring);
    assert_string_equal(fxb_key_kid(fxb_keyring_active(ring)), strcmp(a, b) > 0 ? a : b);
    fxb_keyring_free(ring);
}

static void test_keyring_refuses_an_empty_or_missing_directory(void **state)
{
    char dir[300];
    subdir(dir, sizeof(dir), "empty");
    fxb_err err;
    assert_null(fxb_keyring_load(dir, &err));
    assert_int_equal(err.code, FXB_NOT_FOUND);
    assert_string_equal(err.reason, "KEYRING_EMPTY");
    assert_non_null(strstr(err.message, dir));
    assert_non_null(strstr(err.message, "fxb-admin keys generate"));
    snprintf(dir, sizeof(dir), "%s/absent", F.base);
    assert_null(fxb_keyring_load(dir, &err));
    assert_int_equal(err.code, FXB_NOT_FOUND);
    assert_non_null(strstr(err.message, dir));
}

static void test_keyring_refuses_an_invalid_file_naming_it_but_never_its_content(void **state)
{
    char dir[300];
    subdir(dir, sizeof(dir), "invalid");
    char path[400];
    snprintf(path, sizeof(path), "%s/kbad.pem", dir);
    const char junk[] = "-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVUU0VDUkVU\n"
                        "-----END PRIVATE KEY-----\n";
    write_file(path, junk, sizeof(junk) - 1);
    fxb_err err;
    assert_null(fxb_keyring_load(dir, &err));
    assert_int_equal(err.code, FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "KEYRING_INVALID");
    assert_non_null(strstr(err.message, "kbad.pem"));
    assert_null(strstr(err.message, "U0VDUkVU"));
    assert_null(strstr(err.message, "BEGIN"));
}

static void test_keyring_refuses_keys_that_are_not_p256(void **state)
{
    char dir[300];
    subdir(dir, sizeof(dir), "notp256");
    char path[400];
    snprintf(path, sizeof(path), "%s/k384.pem", dir);
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    assert_non_null(p384);
    write_pkey(path, p384, 0, NULL);
    EVP_PKEY_free(p384);
    fxb_err err;
    assert_null(fxb_keyring_load(dir, &err));
    assert_non_null(strstr(err.message, "k384.pem"));
    assert_non_null(strstr(err.message, "P-256"));
    unlink(path);
    snprintf(path, sizeof(path), "%s/krsa.pem", dir);
    write_pkey(path, F.rsa, 0, NULL);
    assert_null(fxb_keyring_load(dir, &err));
    assert_non_null(strstr(err.message, "krsa.pem"));
}

static void test_keyring_refuses_an_encrypted_key_without_prompting(void **state)
{
    char dir[300];
    subdir(dir, sizeof(dir), "encrypted");
    char path[400];
    snprintf(path, sizeof(path), "%s/kenc.pem", dir);
    write_pkey(path, key_of(F.ring), 0, "secret-pass");
    fxb_err err;
    assert_null(fxb_keyring_load(dir, &err));
    assert_non_null(strstr(err.message, "kenc.pem"));
}

static void test_keyring_accepts_sec1_and_pkcs8_keys(void **state)
{
    char dir[300];
    subdir(dir, sizeof(dir), "formats");
    char path[400];
    snprintf(path, sizeof(path), "%s/ksec1.pem", dir);
    write_pkey(path, key_of(F.other), 1, NULL);
    snprintf(path, sizeof(path), "%s/kpkcs8.pem", dir);
    write_pkey(path, key_of(F.ring), 0, NULL);
    fxb_err err;
    fxb_keyring *ring = fxb_keyring_load(dir, &err);
    assert_non_null(ring);
    assert_int_equal(fxb_keyring_count(ring), 2);
    assert_string_equal(fxb_key_kid(fxb_keyring_active(ring)), "ksec1");
    assert_int_equal(EVP_PKEY_eq(fxb_key_pkey(fxb_keyring_find(ring, "ksec1")), key_of(F.other)),
                     1);
    fxb_keyring_free(ring);
}

static void test_keyring_refuses_a_bad_kid_file_name(void **state)
{
    char dir[300];
    subdir(dir, sizeof(dir), "badkid");
    char path[400];
    snprintf(path, sizeof(path), "%s/has space.pem", dir);
    write_pkey(path, key_of(F.ring), 0, NULL);
    fxb_err err;
    assert_null(fxb_keyring_load(dir, &err));
    assert_non_null(strstr(err.message, "has space.pem"));
    unlink(path);
    snprintf(path, sizeof(path), "%s/%s.pem", dir, "k123456789012345678901234567890123");
    write_pkey(path, key_of(F.ring), 0, NULL);
    assert_null(fxb_keyring_load(dir, &err));
    assert_non_null(strstr(err.message, "longer than 32"));
    /* A key generated next to it could never be loaded either. */
    assert_int_equal(fxb_keyring_generate(dir, NULL, &err), FXB_FAILED_PRECONDITION);
}

static void test_keyring_ignores_dot_files_and_other_names(void **state)
{
    char dir[300];
    subdir(dir, sizeof(dir), "ignored");
    char path[400];
    snprintf(path, sizeof(path), "%s/kok.pem", dir);
    write_pkey(path, key_of(F.ring), 0, NULL);
    snprintf(path, sizeof(path), "%s/.kok.pem.XXXXXX", dir);
    write_file(path, "partial", 7);
    snprintf(path, sizeof(path), "%s/README", dir);
    write_file(path, "notes", 5);
    fxb_err err;
    fxb_keyring *ring = fxb_keyring_load(dir, &err);
    assert_non_null(ring);
    assert_int_equal(fxb_keyring_count(ring), 1);
    fxb_keyring_free(ring);
}

static void test_keyring_refuses_active_naming_a_missing_key(void **state)
{
    char dir[300];
    subdir(dir, sizeof(dir), "badactive");
    fxb_err err;
    assert_int_equal(fxb_keyring_generate(dir, NULL, &err), FXB_OK);
    char path[400];
    snprintf(path, sizeof(path), "%s/active", dir);
    write_file(path, "kgone\n", 6);
    assert_null(fxb_keyring_load(dir, &err));
    assert_non_null(strstr(err.message, "kgone"));
    write_file(path, "two words\n", 10);
    assert_null(fxb_keyring_load(dir, &err));
    assert_non_null(strstr(err.message, "active"));
}

static void test_keyring_holds_at_most_16_keys(void **state)
{
    char dir[300];
    subdir(dir, sizeof(dir), "many");
    fxb_err err;
    for (int i = 0; i < FXB_KEYRING_MAX_KEYS; i++)
        assert_int_equal(fxb_keyring_generate(dir, NULL, &err), FXB_OK);
    fxb_keyring *ring = fxb_keyring_load(dir, &err);
    assert_non_null(ring);
    assert_int_equal(fxb_keyring_count(ring), FXB_KEYRING_MAX_KEYS);
    fxb_keyring_free(ring);
    /* Generate refuses a 17th key, which no server could load. */
    assert_int_equal(fxb_keyring_generate(dir, NULL, &err), FXB_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "16 keys"));
    /* And load refuses 17 keys put there by hand. */
    char path[400];
    snprintf(path, sizeof(path), "%s/zz-extra.pem", dir);
    write_pkey(path, key_of(F.ring), 0, NULL);
    assert_null(fxb_keyring_load(dir, &err));
    assert_non_null(strstr(err.message, "more than 16"));
}

static void test_keyring_path_is_below_the_data_dir(void **state)
{
    char out[64];
    fxb_err err;
    assert_int_equal(fxb_keyring_path("/var/lib/fxb", out, sizeof(out), &err), FXB_OK);
    assert_string_equal(out, "/var/lib/fxb/keys/jwt");
    assert_int_equal(fxb_keyring_path("/var/lib/fxb", out, 10, &err), FXB_INVALID_ARGUMENT);
}

/* --- signing ---------------------------------------------------------------- */

static void test_signed_token_header_is_es256_at_jwt_with_the_active_kid(void **state)
{
    fxb_token_params p = good_params();
    char *tok = sign_ok(F.ring, &p);
    size_t n = 0;
    unsigned char *h = unb64url(tok, (size_t)(strchr(tok, '.') - tok), &n);
    json_t *hdr = json_loadb((const char *)h, n, 0, NULL);
    assert_non_null(hdr);
    assert_string_equal(json_string_value(json_object_get(hdr, "alg")), "ES256");
    assert_string_equal(json_string_value(json_object_get(hdr, "typ")), "at+jwt");
    assert_string_equal(json_string_value(json_object_get(hdr, "kid")), F.kid);
    json_decref(hdr);
    free(h);
    free(tok);
}

static void test_acr_is_an_integer_and_optional_claims_appear_only_when_set(void **state)
{
    fxb_token_params p = good_params();
    p.claims.dept[0] = '\0';
    char *tok = sign_ok(F.ring, &p);
    const char *pl = strchr(tok, '.') + 1;
    size_t n = 0;
    unsigned char *raw = unb64url(pl, (size_t)(strchr(pl, '.') - pl), &n);
    json_t *o = json_loadb((const char *)raw, n, 0, NULL);
    assert_non_null(o);
    assert_true(json_is_integer(json_object_get(o, "acr")));
    assert_true(json_is_array(json_object_get(o, "roles")));
    assert_null(json_object_get(o, "act"));
    assert_null(json_object_get(o, "scope"));
    assert_null(json_object_get(o, "grant_id"));
    assert_null(json_object_get(o, "dept"));
    json_decref(o);
    free(raw);
    free(tok);
}

static void test_sign_refuses_a_lifetime_over_15_minutes(void **state)
{
    fxb_token_params p = good_params();
    p.claims.exp = p.claims.iat + FXB_TOKEN_LIFETIME_MAX_S + 1;
    char *tok = (char *)1;
    fxb_err err;
    assert_int_equal(fxb_token_sign(F.ring, &p, &tok, &err), FXB_INVALID_ARGUMENT);
    assert_null(tok);
    assert_string_equal(err.reason, "TOKEN_PARAMS_INVALID");
    p.claims.exp = p.claims.iat + FXB_TOKEN_LIFETIME_MAX_S;
    tok = sign_ok(F.ring, &p);
    free(tok);
}

static void test_sign_refuses_malformed_claims(void **state)
{
    fxb_err err;
    char *tok = NULL;
    fxb_token_params p = good_params();
    snprintf(p.claims.sub, sizeof(p.claims.sub), "a b");
    assert_int_equal(fxb_token_sign(F.ring, &p, &tok, &err), FXB_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "sub"));
    p = good_params();
    p.claims.acr = 4;
    assert_int_equal(fxb_token_sign(F.ring, &p, &tok, &err), FXB_INVALID_ARGUMENT);
    p = good_params();
    p.claims.roles = 16;
    assert_int_equal(fxb_token_sign(F.ring, &p, &tok, &err), FXB_INVALID_ARGUMENT);
    p = good_params();
    p.claims.jti[0] = '\0';
    assert_int_equal(fxb_token_sign(F.ring, &p, &tok, &err), FXB_INVALID_ARGUMENT);
    p = good_params();
    snprintf(p.claims.scope, sizeof(p.claims.scope), "a  b");
    assert_int_equal(fxb_token_sign(F.ring, &p, &tok, &err), FXB_INVALID_ARGUMENT);
    p = good_params();
    p.claims.auth_time = p.claims.iat + 1;
    assert_int_equal(fxb_token_sign(F.ring, &p, &tok, &err), FXB_INVALID_ARGUMENT);
    p = good_params();
    p.audience = "";
    assert_int_equal(fxb_token_sign(F.ring, &p, &tok, &err), FXB_INVALID_ARGUMENT);
    assert_null(tok);
}

static void test_new_ids_are_random_valid_ids(void **state)
{
    char a[FXB_TOKEN_ID_MAX + 1];
    char b[FXB_TOKEN_ID_MAX + 1];
    fxb_err err;
    assert_int_equal(fxb_token_new_id(a, &err), FXB_OK);
    assert_int_equal(fxb_token_new_id(b, &err), FXB_OK);
    assert_int_equal(strlen(a), 22);
    assert_string_not_equal(a, b);
    assert_true(fxb_key_kid_valid(a)); /* same alphabet */
}

/* --- the good token ------------------------------------------------------- */

static void test_good_token_verifies_and_its_claims_round_trip(void **state)
{
    fxb_token_params p = good_params();
    char *tok = sign_ok(F.ring, &p);
    fxb_token_claims c;
    expect_ok(tok, &c);
    assert_memory_equal(&c, &p.claims, sizeof(c));
    free(tok);

    /* A delegated token: act, grant_id, scope, every role, acr 3. */
    p = good_params();
    p.claims.acr = 3;
    p.claims.roles = FXB_ROLES_KNOWN;
    snprintf(p.claims.act_sub, sizeof(p.claims.act_sub), "agent-9");
    snprintf(p.claims.grant_id, sizeof(p.claims.grant_id), "g_42");
    snprintf(p.claims.scope, sizeof(p.claims.scope), "filing:read filing:submit");
    tok = sign_ok(F.ring, &p);
    expect_ok(tok, &c);
    assert_memory_equal(&c, &p.claims, sizeof(c));
    free(tok);
}

static void test_signature_is_jose_r_s_checkable_by_plain_openssl(void **state)
{
    /* Independent of fxb's verifier: split, turn r || s into DER, verify
     * with the public key read back from the keyring's public PEM. */
    fxb_token_params p = good_params();
    char *tok = sign_ok(F.ring, &p);
    const char *sig64 = strrchr(tok, '.') + 1;
    size_t n = 0;
    unsigned char *raw = unb64url(sig64, strlen(sig64), &n);
    assert_int_equal(n, 64);
    ECDSA_SIG *es = ECDSA_SIG_new();
    assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL)),
                     1);
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(es, &der);
    assert_true(der_len > 0);
    size_t pem_len = 0;
    const char *pem = fxb_key_public_pem(fxb_keyring_active(F.ring), &pem_len);
    BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
    EVP_PKEY *pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    assert_non_null(pub);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub), 1);
    assert_int_equal(EVP_DigestVerify(ctx, der, (size_t)der_len, (const unsigned char *)tok,
                                      (size_t)(sig64 - 1 - tok)),
                     1);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pub);
    BIO_free(bio);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    free(raw);
    free(tok);
}

static void test_hand_built_token_with_the_same_rules_verifies(void **state)
{
    char *tok = good_forged();
    expect_ok(tok, NULL);
    free(tok);
}

static void test_rotation_token_signed_by_the_old_key_still_verifies(void **state)
{
    fxb_token_params p = good_params();
    char *tok = sign_ok(F.ring_old, &p);
    fxb_token_claims c;
    expect_ok(tok, &c);
    assert_string_equal(c.sub, "u_1001");
    free(tok);
}

/* --- hostile tokens: header ------------------------------------------------ */

static void test_alg_none_unsigned_is_refused(void **state)
{
    json_t *h = json_pack("{s:s, s:s, s:s}", "alg", "none", "typ", "at+jwt", "kid", F.kid);
    char *tok = forge_json(h, good_payload(), SIG_NONE, NULL);
    assert_int_equal(tok[strlen(tok) - 1], '.'); /* empty signature */
    expect_reject(tok, "TOKEN_ALG_NOT_ALLOWED");
    free(tok);
    h = json_pack("{s:s, s:s, s:s}", "alg", "NONE", "typ", "at+jwt", "kid", F.kid);
    tok = forge_json(h, good_payload(), SIG_NONE, NULL);
    expect_reject(tok, "TOKEN_ALG_NOT_ALLOWED");
    free(tok);
}

static void test_hs256_keyed_with_our_public_pem_is_refused(void **state)
{
    size_t n = 0;
    const char *pem = fxb_key_public_pem(fxb_keyring_active(F.ring), &n);
    /* Hand-built, with our typ and kid. */
    json_t *h = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "typ", "at+jwt", "kid", F.kid);
    char *hs = json_dumps(h, JSON_COMPACT);
    json_t *pl = good_payload();
    char *ps = json_dumps(pl, JSON_COMPACT);
    char *tok = forge_n(hs, ps, strlen(ps), SIG_HS256, NULL, pem, n);
    expect_reject(tok, "TOKEN_ALG_NOT_ALLOWED");
    free(tok);
    free(hs);
    free(ps);
    json_decref(h);
    json_decref(pl);

    /* Built by libjwt itself, the way an attacker would. */
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)pem, (int)n), 0);
    assert_int_equal(jwt_add_header(jwt, "kid", F.kid), 0);
    pl = good_payload();
    ps = json_dumps(pl, JSON_COMPACT);
    assert_int_equal(jwt_add_grants_json(jwt, ps), 0);
    tok = jwt_encode_str(jwt);
    assert_non_null(tok);
    expect_reject(tok, "TOKEN_ALG_NOT_ALLOWED");
    free(tok);
    free(ps);
    json_decref(pl);
    jwt_free(jwt);
}

static void test_rs256_is_refused(void **state)
{
    json_t *h = json_pack("{s:s, s:s, s:s}", "alg", "RS256", "typ", "at+jwt", "kid", F.kid);
    char *tok = forge_json(h, good_payload(), SIG_RS256, F.rsa);
    expect_reject(tok, "TOKEN_ALG_NOT_ALLOWED");
    free(tok);
}

static void test_alg_must_be_exactly_es256(void **state)
{
    const char *algs[] = {"es256", "ES384", "ES256 ", "", "ES512"};
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        char *tok = with_header("alg", json_string(algs[i]));
        expect_reject(tok, "TOKEN_ALG_NOT_ALLOWED");
        free(tok);
    }
    char *tok = with_header("alg", NULL);
    expect_reject(tok, "TOKEN_ALG_NOT_ALLOWED");
    free(tok);
    tok = with_header("alg", json_integer(7));
    expect_reject(tok, "TOKEN_ALG_NOT_ALLOWED");
    free(tok);
}

static void test_signature_by_an_unknown_key_under_a_known_kid_is_refused(void **state)
{
    char *tok = forge_json(good_header(), good_payload(), SIG_ES256, key_of(F.other));
    expect_reject(tok, "TOKEN_SIGNATURE_INVALID");
    free(tok);
    /* And the other ring's own signer, under its own kid: unknown here. */
    fxb_token_params p = good_params();
    tok = sign_ok(F.other, &p);
    expect_reject(tok, "TOKEN_KEY_UNKNOWN");
    free(tok);
}

static void test_unknown_or_missing_kid_is_refused(void **state)
{
    char *tok = with_header("kid", json_string("k-not-ours"));
    expect_reject(tok, "TOKEN_KEY_UNKNOWN");
    free(tok);
    tok = with_header("kid", NULL);
    expect_reject(tok, "TOKEN_KEY_UNKNOWN");
    free(tok);
    tok = with_header("kid", json_integer(1));
    expect_reject(tok, "TOKEN_KEY_UNKNOWN");
    free(tok);
    /* \u0000 in the header: jansson refuses it, so the header is no JSON
     * object to us; also when the part before the NUL is one of our kids. */
    tok = with_header("kid", json_stringn("x\0y", 3));
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
    char kid_nul[FXB_KEY_KID_MAX + 3];
    size_t kn = strlen(F.kid);
    memcpy(kid_nul, F.kid, kn);
    kid_nul[kn] = '\0';
    kid_nul[kn + 1] = 'x';
    tok = with_header("kid", json_stringn(kid_nul, kn + 2));
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
}

static void test_typ_missing_or_not_at_jwt_is_refused(void **state)
{
    char *tok = with_header("typ", NULL);
    expect_reject(tok, "TOKEN_TYPE_INVALID");
    free(tok);
    tok = with_header("typ", json_string("JWT"));
    expect_reject(tok, "TOKEN_TYPE_INVALID");
    free(tok);
    tok = with_header("typ", json_string("AT+JWT "));
    expect_reject(tok, "TOKEN_TYPE_INVALID");
    free(tok);
}

static void test_crit_header_is_refused(void **state)
{
    char *tok = with_header("crit", json_pack("[s]", "exp"));
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
}

static void test_header_that_is_not_a_json_object_is_refused(void **state)
{
    const char *headers[] = {"[\"ES256\"]",
                             "\"ES256\"",
                             "42",
                             "null",
                             "{\"alg\":\"ES256\"",
                             "{\"alg\":\"ES256\",\"alg\":\"ES256\",\"typ\":\"at+jwt\"}"};
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char *tok = forge_n(headers[i], "{}", 2, SIG_ES256, key_of(F.ring), NULL, 0);
        expect_reject(tok, "TOKEN_MALFORMED");
        free(tok);
    }
}

static void test_deeply_nested_json_is_refused(void **state)
{
    /* In the header: refused by its size bound. */
    char deep[2001];
    for (int i = 0; i < 1000; i++) {
        deep[i] = '[';
        deep[1999 - i] = ']';
    }
    deep[2000] = '\0';
    char *tok = forge_n(deep, "{}", 2, SIG_ES256, key_of(F.ring), NULL, 0);
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
    /* In a signed payload, past jansson's depth limit (2048). */
    json_t *pl = good_payload();
    char *ps = json_dumps(pl, JSON_COMPACT);
    json_decref(pl);
    size_t depth = 2100;
    size_t n = strlen(ps);
    char *big = malloc(n + 2 * depth + 16);
    assert_non_null(big);
    memcpy(big, ps, n - 1); /* drop the closing brace */
    size_t o = n - 1;
    memcpy(big + o, ",\"x\":", 5);
    o += 5;
    memset(big + o, '[', depth);
    o += depth;
    memset(big + o, ']', depth);
    o += depth;
    big[o++] = '}';
    big[o] = '\0';
    json_t *h = good_header();
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    tok = forge_n(hs, big, o, SIG_ES256, key_of(F.ring), NULL, 0);
    assert_true(strlen(tok) <= FXB_TOKEN_MAX_LEN);
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
    free(big);
    free(hs);
    free(ps);
}

/* --- hostile tokens: shape -------------------------------------------------- */

static void test_tampered_payload_with_the_signature_kept_is_refused(void **state)
{
    char *good = good_forged();
    /* Same header and signature, payload with sub changed. */
    json_t *pl = good_payload();
    json_object_set_new(pl, "sub", json_string("u_1002"));
    char *ps = json_dumps(pl, JSON_COMPACT);
    json_decref(pl);
    char *p64 = b64url(ps, strlen(ps));
    const char *d1 = strchr(good, '.');
    const char *d2 = strchr(d1 + 1, '.');
    char *tok = malloc(strlen(good) + strlen(p64) + 4);
    sprintf(tok, "%.*s.%s%s", (int)(d1 - good), good, p64, d2);
    expect_reject(tok, "TOKEN_SIGNATURE_INVALID");
    free(tok);
    free(p64);
    free(ps);
    free(good);
}

static void test_tampered_signature_is_refused(void **state)
{
    char *good = good_forged();
    const char *sig = strrchr(good, '.') + 1;
    size_t n = 0;
    for (int bit = 0; bit < 512; bit += 37) {
        unsigned char *raw = unb64url(sig, strlen(sig), &n);
        assert_int_equal(n, 64);
        raw[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        char *s64 = b64url(raw, n);
        char *tok = malloc(strlen(good) + 1);
        sprintf(tok, "%.*s%s", (int)(sig - good), good, s64);
        expect_reject(tok, "TOKEN_SIGNATURE_INVALID");
        free(tok);
        free(s64);
        free(raw);
    }
    free(good);
}

static void test_non_canonical_base64url_is_refused(void **state)
{
    /* 64 bytes = 86 characters with 4 unused low bits: setting one makes a
     * second text for the same signature. */
    char *tok = good_forged();
    char *last = tok + strlen(tok) - 1;
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int v = (int)(strchr(A, *last) - A);
    *last = A[v ^ 1];
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
}

static void test_truncated_token_is_refused(void **state)
{
    char *tok = good_forged();
    size_t n = strlen(tok);
    tok[n - 1] = '\0';
    expect_reject(tok, "TOKEN_SIGNATURE_INVALID");
    tok[n - 10] = '\0';
    expect_reject(tok, "TOKEN_SIGNATURE_INVALID");
    *strrchr(tok, '.') = '\0';
    expect_reject(tok, "TOKEN_MALFORMED");
    tok[5] = '\0';
    expect_reject(tok, "TOKEN_MALFORMED");
    tok[0] = '\0';
    expect_reject(tok, "TOKEN_MALFORMED");
    expect_reject(NULL, "TOKEN_MALFORMED");
    free(tok);
}

static void test_four_parts_are_refused(void **state)
{
    char *good = good_forged();
    char *tok = malloc(strlen(good) + 8);
    sprintf(tok, "%s.AAAA", good);
    expect_reject(tok, "TOKEN_MALFORMED");
    sprintf(tok, "%s.", good);
    expect_reject(tok, "TOKEN_MALFORMED");
    sprintf(tok, ".%s", good);
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
    free(good);
}

static void test_characters_outside_base64url_are_refused(void **state)
{
    const char bad[] = {'=', '+', '/', ' ', '\n', '"', '{', (char)0xC3, '\t', '%'};
    char *good = good_forged();
    for (size_t i = 0; i < sizeof(bad); i++) {
        char *tok = strdup(good);
        tok[10] = bad[i];
        expect_reject(tok, "TOKEN_MALFORMED");
        free(tok);
    }
    char *tok = malloc(strlen(good) + 3);
    sprintf(tok, "%s==", good);
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
    free(good);
}

static void test_100_kib_token_is_refused_before_parsing(void **state)
{
    size_t n = 100 * 1024;
    char *tok = malloc(n + 1);
    memset(tok, 'A', n);
    tok[100] = '.';
    tok[200] = '.';
    tok[n] = '\0';
    expect_reject(tok, "TOKEN_MALFORMED");
    /* Just over the cap, also refused. */
    tok[FXB_TOKEN_MAX_LEN + 1] = '\0';
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
}

static void test_nul_bytes_are_refused(void **state)
{
    /* \u0000 inside a claim: the payload is refused as JSON. */
    char *tok = with_claim("sub", json_stringn("u_1\0001", 5));
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
    /* A raw NUL inside the signed JSON. */
    json_t *h = good_header();
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    json_t *pl = good_payload();
    char *ps = json_dumps(pl, JSON_COMPACT);
    json_decref(pl);
    size_t n = strlen(ps);
    char *raw = malloc(n + 2);
    memcpy(raw, ps, n);
    raw[n] = '\0';
    raw[n + 1] = ' ';
    tok = forge_n(hs, raw, n + 2, SIG_ES256, key_of(F.ring), NULL, 0);
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
    memcpy(raw, ps, n);
    char *q = strstr(raw, "u_1001");
    q[2] = '\0';
    tok = forge_n(hs, raw, n, SIG_ES256, key_of(F.ring), NULL, 0);
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
    free(raw);
    free(hs);
    free(ps);
    /* A NUL inside the token text ends the C string: what is left is cut. */
    tok = good_forged();
    tok[strlen(tok) - 20] = '\0';
    expect_reject(tok, "TOKEN_SIGNATURE_INVALID");
    free(tok);
}

static void test_duplicate_claims_are_refused(void **state)
{
    json_t *h = good_header();
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    json_t *pl = good_payload();
    char *ps = json_dumps(pl, JSON_COMPACT);
    json_decref(pl);
    size_t n = strlen(ps);
    char *dup = malloc(n + 32);
    snprintf(dup, n + 32, "%.*s,\"sub\":\"admin\"}", (int)(n - 1), ps);
    char *tok = forge_n(hs, dup, strlen(dup), SIG_ES256, key_of(F.ring), NULL, 0);
    expect_reject(tok, "TOKEN_MALFORMED");
    free(tok);
    free(dup);
    free(hs);
    free(ps);
}

static void test_payload_that_is_not_a_json_object_is_refused(void **state)
{
    json_t *h = good_header();
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    const char *bodies[] = {"[]", "\"x\"", "{", "nul"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char *tok = forge_n(hs, bodies[i], strlen(bodies[i]), SIG_ES256, key_of(F.ring), NULL, 0);
        expect_reject(tok, "TOKEN_MALFORMED");
        free(tok);
    }
    free(hs);
}

/* --- hostile tokens: claims ------------------------------------------------- */

static void test_expired_by_one_second_is_refused(void **state)
{
    char *tok = with_claim("exp", json_integer(NOW - 1));
    expect_reject(tok, "TOKEN_EXPIRED");
    free(tok);
    /* exp == now is already expired: no leeway for exp. */
    tok = good_forged();
    expect_reject_at(tok, NOW + 600, "TOKEN_EXPIRED");
    expect_reject_at(tok, NOW + 601, "TOKEN_EXPIRED");
    free(tok);
}

static void test_nbf_60_seconds_ahead_is_refused_but_20_is_within_leeway(void **state)
{
    char *tok = with_claim("nbf", json_integer(NOW + 60));
    expect_reject(tok, "TOKEN_NOT_YET_VALID");
    free(tok);
    tok = with_claim("nbf", json_integer(NOW + 20));
    expect_ok(tok, NULL);
    free(tok);
}

static void test_iat_in_the_future_is_refused(void **state)
{
    json_t *pl = good_payload();
    json_object_set_new(pl, "iat", json_integer(NOW + 120));
    json_object_set_new(pl, "nbf", json_integer(NOW + 120));
    json_object_set_new(pl, "exp", json_integer(NOW + 700));
    json_object_set_new(pl, "auth_time", json_integer(NOW + 100));
    char *tok = forge_json(good_header(), pl, SIG_ES256, key_of(F.ring));
    expect_reject(tok, "TOKEN_NOT_YET_VALID");
    free(tok);
    tok = with_claim("iat", json_integer(NOW + 45));
    expect_reject(tok, "TOKEN_NOT_YET_VALID");
    free(tok);
}

static void test_lifetime_over_15_minutes_is_refused(void **state)
{
    char *tok = with_claim("exp", json_integer(NOW + 16 * 60));
    expect_reject(tok, "TOKEN_CLAIMS_INVALID");
    free(tok);
    tok = with_claim("exp", json_integer(NOW + 15 * 60));
    expect_ok(tok, NULL);
    free(tok);
    /* exp before iat. */
    json_t *pl = good_payload();
    json_object_set_new(pl, "iat", json_integer(NOW + 10));
    json_object_set_new(pl, "exp", json_integer(NOW + 5));
    tok = forge_json(good_header(), pl, SIG_ES256, key_of(F.ring));
    expect_reject(tok, "TOKEN_CLAIMS_INVALID");
    free(tok);
}

static void test_time_claims_must_be_present_integers(void **state)
{
    const char *names[] = {"exp", "iat", "nbf", "auth_time"};
    for (size_t i = 0; i < 4; i++) {
        char *tok = with_claim(names[i], NULL);
        expect_reject(tok, "TOKEN_CLAIMS_INVALID");
        free(tok);
        tok = with_claim(names[i], json_real((double)NOW + 300.5));
        expect_reject(tok, "TOKEN_CLAIMS_INVALID");
        free(tok);
        tok = with_claim(names[i], json_string("1750000300"));
        expect_reject(tok, "TOKEN_CLAIMS_INVALID");
        free(tok);
        tok = with_claim(names[i], json_integer(-5));
        expect_reject(tok, "TOKEN_CLAIMS_INVALID");
        free(tok);
    }
    char *tok = with_claim("exp", json_integer(INT64_MAX));
    expect_reject(tok, "TOKEN_CLAIMS_INVALID");
    free(tok);
}

static void test_auth_time_after_issue_is_refused(void **state)
{
    char *tok = with_claim("auth_time", json_integer(NOW + 60));
    expect_reject(tok, "TOKEN_CLAIMS_INVALID");
    free(tok);
    tok = with_claim("auth_time", json_integer(0));
    expect_reject(tok, "TOKEN_CLAIMS_INVALID");
    free(tok);
}

static void test_wrong_issuer_is_refused(void **state)
{
    const char *bad[] = {"https://evil.example", "https://id.fxb.example/", "",
                         "HTTPS://ID.FXB.EXAMPLE"};
    for (size_t i = 0; i < 4; i++) {
        char *tok = with_claim("iss", json_string(bad[i]));
        expect_reject(tok, "TOKEN_ISSUER_INVALID");
        free(tok);
    }
    char *tok = with_claim("iss", NULL);
    expect_reject(tok, "TOKEN_ISSUER_INVALID");
    free(tok);
    tok = with_claim("iss", json_pack("[s]", ISS));
    expect_reject(tok, "TOKEN_ISSUER_INVALID");
    free(tok);
}

static void test_wrong_audience_is_refused(void **state)
{
    char *tok = with_claim("aud", json_string("other-api"));
    expect_reject(tok, "TOKEN_AUDIENCE_INVALID");
    free(tok);
    tok = with_claim("aud", NULL);
    expect_reject(tok, "TOKEN_AUDIENCE_INVALID");
    free(tok);
    tok = with_claim("aud", json_pack("[s,s]", "a", "b"));
    expect_reject(tok, "TOKEN_AUDIENCE_INVALID");
    free(tok);
    tok = with_claim("aud", json_pack("[]"));
    expect_reject(tok, "TOKEN_AUDIENCE_INVALID");
    free(tok);
    tok = with_claim("aud", json_pack("[s,i]", AUD, 1));
    expect_reject(tok, "TOKEN_AUDIENCE_INVALID");
    free(tok);
}

static void test_audience_array_containing_ours_is_accepted(void **state)
{
    char *tok = with_claim("aud", json_pack("[s,s]", "other-api", AUD));
    expect_ok(tok, NULL);
    free(tok);
}

static void test_acr_must_be_an_integer_from_1_to_3(void **state)
{
    json_t *bad[] = {json_integer(0), json_integer(4), json_string("2"),
                     json_real(2.0),  json_true(),     NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *tok = with_claim("acr", bad[i]);
        expect_reject(tok, "TOKEN_CLAIMS_INVALID");
        free(tok);
    }
}

static void test_roles_must_be_an_array_of_known_names(void **state)
{
    json_t *bad[] = {json_pack("[s]", "superuser"),
                     json_pack("[s,s]", "citizen", "Admin"),
                     json_string("citizen"),
                     json_pack("[i]", 1),
                     json_pack("[s,s,s,s,s,s,s,s,s]", "citizen", "citizen", "citizen", "citizen",
                               "citizen", "citizen", "citizen", "citizen", "citizen"),
                     NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *tok = with_claim("roles", bad[i]);
        expect_reject(tok, "TOKEN_CLAIMS_INVALID");
        free(tok);
    }
    fxb_token_claims c;
    char *tok = with_claim("roles", json_pack("[s,s]", "admin", "data-feed"));
    expect_ok(tok, &c);
    assert_int_equal(c.roles, FXB_ROLE_ADMIN | FXB_ROLE_DATA_FEED);
    free(tok);
}

static void test_ids_with_spaces_braces_or_excess_length_are_refused(void **state)
{
    char long_id[FXB_TOKEN_ID_MAX + 2];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    const char *bad[] = {"u 1", "{u:1}", "u:1", "", "ü", long_id};
    const char *names[] = {"sub", "sid", "jti"};
    for (size_t n = 0; n < 3; n++) {
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            char *tok = with_claim(names[n], json_string(bad[i]));
            expect_reject(tok, "TOKEN_CLAIMS_INVALID");
            free(tok);
        }
        char *tok = with_claim(names[n], NULL);
        expect_reject(tok, "TOKEN_CLAIMS_INVALID");
        free(tok);
        tok = with_claim(names[n], json_integer(1001));
        expect_reject(tok, "TOKEN_CLAIMS_INVALID");
        free(tok);
    }
    /* Exactly 64 characters is fine. */
    long_id[FXB_TOKEN_ID_MAX] = '\0';
    char *tok = with_claim("sub", json_string(long_id));
    expect_ok(tok, NULL);
    free(tok);
}

static void test_dept_act_grant_and_scope_are_checked(void **state)
{
    char *tok = with_claim("dept", json_string("a b"));
    expect_reject(tok, "TOKEN_CLAIMS_INVALID");
    free(tok);
    tok = with_claim("act", json_string("agent-9"));
    expect_reject(tok, "TOKEN_CLAIMS_INVALID");
    free(tok);
    tok = with_claim("act", json_pack("{s:s, s:{s:s}}", "sub", "a1", "act", "sub", "a2"));
    expect_reject(tok, "TOKEN_CLAIMS_INVALID");
    free(tok);
    tok = with_claim("act", json_pack("{}"));
    expect_reject(tok, "TOKEN_CLAIMS_INVALID");
    free(tok);
    tok = with_claim("grant_id", json_string("g 1"));
    expect_reject(tok, "TOKEN_CLAIMS_INVALID");
    free(tok);
    const char *scopes[] = {"a  b", " a", "a ", "a\"b", "a\\b", "", "a\tb"};
    for (size_t i = 0; i < sizeof(scopes) / sizeof(scopes[0]); i++) {
        tok = with_claim("scope", json_string(scopes[i]));
        expect_reject(tok, "TOKEN_CLAIMS_INVALID");
        free(tok);
    }
    fxb_token_claims c;
    tok = with_claim("act", json_pack("{s:s}", "sub", "agent-9"));
    expect_ok(tok, &c);
    assert_string_equal(c.act_sub, "agent-9");
    free(tok);
}

/* --- the cache -------------------------------------------------------------- */

static void check_ok(fxb_token_cache *cache, const char *tok, int64_t now, fxb_token_claims *c)
{
    fxb_err err;
    fxb_code rc = fxb_token_check(cache, F.v, tok, now, c, &err);
    if (rc != FXB_OK)
        fail_msg("check refused: %s (%s)", err.reason, err.message);
}

static void test_cache_hit_returns_the_same_claims_without_verifying_again(void **state)
{
    fxb_token_cache *cache = fxb_token_cache_new(0);
    assert_non_null(cache);
    fxb_token_params p = good_params();
    snprintf(p.claims.scope, sizeof(p.claims.scope), "filing:read");
    char *tok = sign_ok(F.ring, &p);
    uint64_t before = fxb_token_verifier_count(F.v);
    fxb_token_claims a;
    fxb_token_claims b;
    check_ok(cache, tok, NOW, &a);
    check_ok(cache, tok, NOW + 1, &b);
    check_ok(cache, tok, NOW + 599, &b);
    assert_int_equal(fxb_token_verifier_count(F.v) - before, 1);
    assert_memory_equal(&a, &p.claims, sizeof(a));
    assert_memory_equal(&a, &b, sizeof(a));
    fxb_token_cache_stats st;
    fxb_token_cache_stats_get(cache, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.capacity, FXB_TOKEN_CACHE_DEFAULT_CAPACITY);
    free(tok);
    fxb_token_cache_free(cache);
}

static void test_cache_honours_expiry_on_a_hit(void **state)
{
    fxb_token_cache *cache = fxb_token_cache_new(16);
    fxb_token_params p = good_params();
    char *tok = sign_ok(F.ring, &p);
    fxb_token_claims c;
    check_ok(cache, tok, NOW, &c);
    fxb_err err;
    memset(&c, 0x5A, sizeof(c));
    assert_int_equal(fxb_token_check(cache, F.v, tok, p.claims.exp, &c, &err), FXB_UNAUTHENTICATED);
    assert_string_equal(err.reason, "TOKEN_EXPIRED");
    assert_int_equal(c.sub[0], '\0');
    fxb_token_cache_stats st;
    fxb_token_cache_stats_get(cache, &st);
    assert_int_equal(st.expired, 1);
    assert_int_equal(st.entries, 0);
    /* And again, now a miss: the full verify says the same. */
    assert_int_equal(fxb_token_check(cache, F.v, tok, p.claims.exp, &c, &err), FXB_UNAUTHENTICATED);
    assert_string_equal(err.reason, "TOKEN_EXPIRED");
    free(tok);
    fxb_token_cache_free(cache);
}

static void test_cache_never_holds_more_than_its_capacity(void **state)
{
    const size_t cap = 100;
    fxb_token_cache *cache = fxb_token_cache_new(cap);
    assert_non_null(cache);
    fxb_token_params p = good_params();
    for (size_t i = 0; i < 10 * cap; i++) {
        snprintf(p.claims.jti, sizeof(p.claims.jti), "j-%zu", i);
        char *tok = sign_ok(F.ring, &p);
        fxb_token_claims c;
        check_ok(cache, tok, NOW, &c);
        assert_string_equal(c.jti, p.claims.jti);
        free(tok);
        fxb_token_cache_stats st;
        fxb_token_cache_stats_get(cache, &st);
        assert_true(st.entries <= cap);
    }
    fxb_token_cache_stats st;
    fxb_token_cache_stats_get(cache, &st);
    assert_int_equal(st.inserts, 10 * cap);
    assert_int_equal(st.inserts - st.evictions, st.entries);
    assert_true(st.entries > cap / 2); /* shards fill unevenly, but fill */
    fxb_token_cache_free(cache);

    /* Fewer entries than shards. */
    cache = fxb_token_cache_new(1);
    for (int i = 0; i < 5; i++) {
        snprintf(p.claims.jti, sizeof(p.claims.jti), "one-%d", i);
        char *tok = sign_ok(F.ring, &p);
        fxb_token_claims c;
        check_ok(cache, tok, NOW, &c);
        free(tok);
    }
    fxb_token_cache_stats_get(cache, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.evictions, 4);
    fxb_token_cache_free(cache);
    assert_null(fxb_token_cache_new(FXB_TOKEN_CACHE_MAX_CAPACITY + 1));
}

static void test_cache_evicts_the_least_recently_used(void **state)
{
    /* Two entries per shard. The hot token is used again after every new
     * token, so in its shard the entry to go is always the other one; a
     * FIFO would have dropped it long before 400 inserts. */
    fxb_token_cache *cache = fxb_token_cache_new(2 * FXB_TOKEN_CACHE_SHARDS);
    fxb_token_params p = good_params();
    snprintf(p.claims.jti, sizeof(p.claims.jti), "hot");
    char *hot = sign_ok(F.ring, &p);
    fxb_token_claims c;
    uint64_t before = fxb_token_verifier_count(F.v);
    check_ok(cache, hot, NOW, &c);
    for (int i = 0; i < 400; i++) {
        snprintf(p.claims.jti, sizeof(p.claims.jti), "cold-%d", i);
        char *tok = sign_ok(F.ring, &p);
        check_ok(cache, tok, NOW, &c);
        free(tok);
        check_ok(cache, hot, NOW, &c);
        assert_string_equal(c.jti, "hot");
    }
    /* One verification for hot, one per cold token. */
    assert_int_equal(fxb_token_verifier_count(F.v) - before, 1 + 400);
    fxb_token_cache_stats st;
    fxb_token_cache_stats_get(cache, &st);
    assert_int_equal(st.hits, 400);
    assert_true(st.evictions > 0);
    assert_true(st.entries <= 2 * FXB_TOKEN_CACHE_SHARDS);
    free(hot);
    fxb_token_cache_free(cache);
}

static void test_cache_does_not_cache_failures(void **state)
{
    fxb_token_cache *cache = fxb_token_cache_new(16);
    char *tok = with_claim("aud", json_string("other-api"));
    uint64_t before = fxb_token_verifier_count(F.v);
    fxb_token_claims c;
    fxb_err err;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fxb_token_check(cache, F.v, tok, NOW, &c, &err), FXB_UNAUTHENTICATED);
        assert_string_equal(err.reason, "TOKEN_AUDIENCE_INVALID");
    }
    assert_int_equal(fxb_token_verifier_count(F.v) - before, 3);
    fxb_token_cache_stats st;
    fxb_token_cache_stats_get(cache, &st);
    assert_int_equal(st.entries, 0);
    free(tok);
    fxb_token_cache_free(cache);
}

static void test_cache_keys_distinct_tokens_apart(void **state)
{
    /* room for both in any shard: with 16 entries (16 shards of one) the
     * two tokens shared a shard one run in 16, and one evicted the other */
    fxb_token_cache *cache = fxb_token_cache_new(1024);
    fxb_token_params p = good_params();
    /* Same claims signed twice: ECDSA is randomized, two texts. */
    char *a = sign_ok(F.ring, &p);
    char *b = sign_ok(F.ring, &p);
    assert_string_not_equal(a, b);
    fxb_token_claims c;
    check_ok(cache, a, NOW, &c);
    check_ok(cache, b, NOW, &c);
    fxb_token_cache_stats st;
    fxb_token_cache_stats_get(cache, &st);
    assert_int_equal(st.entries, 2);
    /* A cached token with one byte changed or appended is not a hit. */
    fxb_err err;
    char *t = malloc(strlen(a) + 2);
    sprintf(t, "%sA", a);
    assert_int_equal(fxb_token_check(cache, F.v, t, NOW, &c, &err), FXB_UNAUTHENTICATED);
    strcpy(t, a);
    t[strlen(t) - 3] = t[strlen(t) - 3] == 'A' ? 'B' : 'A';
    assert_int_equal(fxb_token_check(cache, F.v, t, NOW, &c, &err), FXB_UNAUTHENTICATED);
    assert_string_equal(err.reason, "TOKEN_SIGNATURE_INVALID");
    fxb_token_cache_stats_get(cache, &st);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.entries, 2);
    free(t);
    free(a);
    free(b);
    fxb_token_cache_free(cache);
}

static void test_cache_drops_every_token_of_a_session(void **state)
{
    fxb_token_cache *cache = fxb_token_cache_new(256);
    fxb_token_params p = good_params();
    char *toks[6];
    fxb_token_claims c;
    for (int i = 0; i < 6; i++) {
        snprintf(p.claims.sid, sizeof(p.claims.sid), "%s", i < 4 ? "s-gone" : "s-kept");
        snprintf(p.claims.jti, sizeof(p.claims.jti), "j-%d", i);
        toks[i] = sign_ok(F.ring, &p);
        check_ok(cache, toks[i], NOW, &c);
    }
    assert_int_equal(fxb_token_cache_drop_session(cache, "s-gone"), 4);
    assert_int_equal(fxb_token_cache_drop_session(cache, "s-gone"), 0);
    assert_int_equal(fxb_token_cache_drop_session(cache, "s-gon"), 0);
    fxb_token_cache_stats st;
    fxb_token_cache_stats_get(cache, &st);
    assert_int_equal(st.entries, 2);
    fxb_token_cache_clear(cache);
    fxb_token_cache_stats_get(cache, &st);
    assert_int_equal(st.entries, 0);
    for (int i = 0; i < 6; i++)
        free(toks[i]);
    fxb_token_cache_free(cache);
}

#define THREADS         4
#define THREAD_TOKENS   200
#define THREAD_ROUNDS   3000
#define THREAD_CAPACITY 128

typedef struct {
    fxb_token_cache *cache;
    char **toks;
    unsigned seed;
    int failures;
} thread_arg;

static void *thread_main(void *p)
{
    thread_arg *a = p;
    for (int i = 0; i < THREAD_ROUNDS; i++) {
        a->seed = a->seed * 1103515245u + 12345u;
        size_t k = (a->seed >> 8) % THREAD_TOKENS;
        fxb_token_claims c;
        fxb_err err;
        char want[FXB_TOKEN_ID_MAX + 1];
        snprintf(want, sizeof(want), "t-%zu", k);
        if (fxb_token_check(a->cache, F.v, a->toks[k], NOW, &c, &err) != FXB_OK ||
            strcmp(c.jti, want) != 0)
            a->failures++;
        if (i % 500 == 0)
            fxb_token_cache_drop_session(a->cache, "s-none");
    }
    return NULL;
}

static void test_cache_is_safe_from_4_threads(void **state)
{
    fxb_token_cache *cache = fxb_token_cache_new(THREAD_CAPACITY);
    char *toks[THREAD_TOKENS];
    fxb_token_params p = good_params();
    for (int i = 0; i < THREAD_TOKENS; i++) {
        snprintf(p.claims.jti, sizeof(p.claims.jti), "t-%d", i);
        toks[i] = sign_ok(F.ring, &p);
    }
    pthread_t th[THREADS];
    thread_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (thread_arg){.cache = cache, .toks = toks, .seed = 7u + (unsigned)i};
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    fxb_token_cache_stats st;
    fxb_token_cache_stats_get(cache, &st);
    assert_true(st.entries <= THREAD_CAPACITY);
    assert_int_equal(st.hits + st.misses, THREADS * THREAD_ROUNDS);
    assert_true(st.hits > 0);
    for (int i = 0; i < THREAD_TOKENS; i++)
        free(toks[i]);
    fxb_token_cache_free(cache);
}

static void test_check_without_a_cache_is_a_plain_verify(void **state)
{
    char *tok = good_forged();
    uint64_t before = fxb_token_verifier_count(F.v);
    fxb_token_claims c;
    check_ok(NULL, tok, NOW, &c);
    check_ok(NULL, tok, NOW, &c);
    assert_int_equal(fxb_token_verifier_count(F.v) - before, 2);
    free(tok);
}

static void test_a_clock_out_of_range_is_an_internal_error(void **state)
{
    char *tok = good_forged();
    fxb_token_claims c;
    fxb_err err;
    assert_int_equal(fxb_token_verify(F.v, tok, INT64_MAX, &c, &err), FXB_INTERNAL);
    assert_string_equal(err.reason, "CLOCK_INVALID");
    assert_int_equal(fxb_token_verify(F.v, tok, -1, &c, &err), FXB_INTERNAL);
    free(tok);
}

static void test_verifier_refuses_bad_configuration(void **state)
{
    fxb_err err;
    assert_null(fxb_token_verifier_new(F.ring, "", AUD, &err));
    assert_int_equal(err.code, FXB_INVALID_ARGUMENT);
    assert_null(fxb_token_verifier_new(F.ring, ISS, "has space", &err));
    assert_null(fxb_token_verifier_new(NULL, ISS, AUD, &err));
}

int main(void)
{
    const struct CMUnitTest keyring_and_cache[] = {
        cmocka_unit_test(test_keyring_generate_makes_a_private_dir_a_0600_key_and_activates_it),
        cmocka_unit_test(test_keyring_with_two_keys_signs_with_the_active_one),
        cmocka_unit_test(test_keyring_without_active_file_uses_the_greatest_kid),
        cmocka_unit_test(test_keyring_refuses_an_empty_or_missing_directory),
        cmocka_unit_test(test_keyring_refuses_an_invalid_file_naming_it_but_never_its_content),
        cmocka_unit_test(test_keyring_refuses_keys_that_are_not_p256),
        cmocka_unit_test(test_keyring_refuses_an_encrypted_key_without_prompting),
        cmocka_unit_test(test_keyring_accepts_sec1_and_pkcs8_keys),
        cmocka_unit_test(test_keyring_refuses_a_bad_kid_file_name),
        cmocka_unit_test(test_keyring_ignores_dot_files_and_other_names),
        cmocka_unit_test(test_keyring_refuses_active_naming_a_missing_key),
        cmocka_unit_test(test_keyring_holds_at_most_16_keys),
        cmocka_unit_test(test_keyring_path_is_below_the_data_dir),
        cmocka_unit_test(test_signed_token_header_is_es256_at_jwt_with_the_active_kid),
        cmocka_unit_test(test_acr_is_an_integer_and_optional_claims_appear_only_when_set),
        cmocka_unit_test(test_sign_refuses_a_lifetime_over_15_minutes),
        cmocka_unit_test(test_sign_refuses_malformed_claims),
        cmocka_unit_test(test_new_ids_are_random_valid_ids),
        cmocka_unit_test(test_signature_is_jose_r_s_checkable_by_plain_openssl),
        cmocka_unit_test(test_verifier_refuses_bad_configuration),
        cmocka_unit_test(test_a_clock_out_of_range_is_an_internal_error),
        cmocka_unit_test(test_cache_hit_returns_the_same_claims_without_verifying_again),
        cmocka_unit_test(test_cache_honours_expiry_on_a_hit),
        cmocka_unit_test(test_cache_never_holds_more_than_its_capacity),
        cmocka_unit_test(test_cache_evicts_the_least_recently_used),
        cmocka_unit_test(test_cache_does_not_cache_failures),
        cmocka_unit_test(test_cache_keys_distinct_tokens_apart),
        cmocka_unit_test(test_cache_drops_every_token_of_a_session),
        cmocka_unit_test(test_cache_is_safe_from_4_threads),
        cmocka_unit_test(test_check_without_a_cache_is_a_plain_verify),
    };
    const struct CMUnitTest hostile[] = {
        cmocka_unit_test(test_good_token_verifies_and_its_claims_round_trip),
        cmocka_unit_test(test_hand_built_token_with_the_same_rules_verifies),
        cmocka_unit_test(test_rotation_token_signed_by_the_old_key_still_verifies),
        cmocka_unit_test(test_alg_none_unsigned_is_refused),
        cmocka_unit_test(test_hs256_keyed_with_our_public_pem_is_refused),
        cmocka_unit_test(test_rs256_is_refused),
        cmocka_unit_test(test_alg_must_be_exactly_es256),
        cmocka_unit_test(test_signature_by_an_unknown_key_under_a_known_kid_is_refused),
        cmocka_unit_test(test_unknown_or_missing_kid_is_refused),
        cmocka_unit_test(test_typ_missing_or_not_at_jwt_is_refused),
        cmocka_unit_test(test_crit_header_is_refused),
        cmocka_unit_test(test_header_that_is_not_a_json_object_is_refused),
        cmocka_unit_test(test_deeply_nested_json_is_refused),
        cmocka_unit_test(test_tampered_payload_with_the_signature_kept_is_refused),
        cmocka_unit_test(test_tampered_signature_is_refused),
        cmocka_unit_test(test_non_canonical_base64url_is_refused),
        cmocka_unit_test(test_truncated_token_is_refused),
        cmocka_unit_test(test_four_parts_are_refused),
        cmocka_unit_test(test_characters_outside_base64url_are_refused),
        cmocka_unit_test(test_100_kib_token_is_refused_before_parsing),
        cmocka_unit_test(test_nul_bytes_are_refused),
        cmocka_unit_test(test_duplicate_claims_are_refused),
        cmocka_unit_test(test_payload_that_is_not_a_json_object_is_refused),
        cmocka_unit_test(test_expired_by_one_second_is_refused),
        cmocka_unit_test(test_nbf_60_seconds_ahead_is_refused_but_20_is_within_leeway),
        cmocka_unit_test(test_iat_in_the_future_is_refused),
        cmocka_unit_test(test_lifetime_over_15_minutes_is_refused),
        cmocka_unit_test(test_time_claims_must_be_present_integers),
        cmocka_unit_test(test_auth_time_after_issue_is_refused),
        cmocka_unit_test(test_wrong_issuer_is_refused),
        cmocka_unit_test(test_wrong_audience_is_refused),
        cmocka_unit_test(test_audience_array_containing_ours_is_accepted),
        cmocka_unit_test(test_acr_must_be_an_integer_from_1_to_3),
        cmocka_unit_test(test_roles_must_be_an_array_of_known_names),
        cmocka_unit_test(test_ids_with_spaces_braces_or_excess_length_are_refused),
        cmocka_unit_test(test_dept_act_grant_and_scope_are_checked),
    };
    int failed = cmocka_run_group_tests_name("keyring, signing and cache", keyring_and_cache,
                                             fixture_up, fixture_down);
    failed += cmocka_run_group_tests_name("hostile tokens", hostile, fixture_up, fixture_down);
    return failed;
}
