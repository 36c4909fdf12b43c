/* eKYC provider attestations as rules: a good one verifies; every hostile
 * or wrong one is refused with the reason of the first failing check, as
 * PERMISSION_DENIED, never naming the ID number; the dev key is trusted
 * only outside production; and the simulator's output is what the verifier
 * accepts. Keys are generated into a temp dir; tokens are built here with
 * auth/jws (ES256) or by hand (none, HS256). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth/attestation.h"
#include "auth/jws.h"

#define NOW     1750000000LL
#define NONCE   "q3J0cW9uY2UtY2hhbGxlbmdlLTAx"
#define ID      "11010519491231002X"
#define OTHERID "410702199001011237"
#define MIN     80.0
#define MAX_AGE 300

/* The challenge's liveness actions; good() attestations echo these. */
static const char *const ACTIONS[] = {"blink", "turn_left"};
static const char *const SIM_ACTIONS[] = {"blink", "nod"};

static struct {
    char dir[128];               /* ekyc-dev.pem, ekyc-dev.pub.pem, prov-a.pub.pem */
    char prod_dir[160];          /* prov-a.pub.pem only */
    char pub_path[200];          /* the dev public key PEM file */
    EVP_PKEY *dev;               /* kid ekyc-dev */
    EVP_PKEY *prov;              /* kid prov-a */
    EVP_PKEY *stranger;          /* pinned nowhere */
    fxb_attestation_verifier *v; /* dev allowed, both keys */
    char id_hash[FXB_ATTESTATION_ID_HASH_LEN + 1];
} F;

/* --- fixture --------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int write_pem(const char *path, EVP_PKEY *k, int priv)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int ok = priv ? PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) : PEM_write_PUBKEY(f, k);
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int fixture_up(void **state)
{
    (void)state;
    memset(&F, 0, sizeof(F));
    snprintf(F.dir, sizeof(F.dir), "/tmp/fxb-test-attestation.XXXXXX");
    if (mkdtemp(F.dir) == NULL)
        return -1;
    snprintf(F.prod_dir, sizeof(F.prod_dir), "%s/prod", F.dir);
    snprintf(F.pub_path, sizeof(F.pub_path), "%s/ekyc-dev.pub.pem", F.dir);
    F.dev = EVP_EC_gen("P-256");
    F.prov = EVP_EC_gen("P-256");
    F.stranger = EVP_EC_gen("P-256");
    if (F.dev == NULL || F.prov == NULL || F.stranger == NULL || mkdir(F.prod_dir, 0700) != 0)
        return -1;
    char path[256];
    snprintf(path, sizeof(path), "%s/ekyc-dev.pem", F.dir);
    if (write_pem(path, F.dev, 1) != 0 || write_pem(F.pub_path, F.dev, 0) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/prov-a.pub.pem", F.dir);
    if (write_pem(path, F.prov, 0) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/prov-a.pub.pem", F.prod_dir);
    if (write_pem(path, F.prov, 0) != 0)
        return -1;
    fxb_err err;
    F.v = fxb_attestation_verifier_new(true, &err);
    if (F.v == NULL || fxb_attestation_verifier_load_dir(F.v, F.dir, &err) != FXB_OK)
        return -1;
    if (!fxb_attestation_id_hash(ID, F.id_hash))
        return -1;
    return 0;
}

static int fixture_down(void **state)
{
    (void)state;
    fxb_attestation_verifier_free(F.v);
    EVP_PKEY_free(F.dev);
    EVP_PKEY_free(F.prov);
    EVP_PKEY_free(F.stranger);
    nftw(F.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* --- token builders ---------------------------------------------------------- */

typedef struct claims {
    const char *iss;
    long long iat;
    long long exp;
    const char *nonce;
    const char *id_hash;
    const char *liveness;
    const char *score; /* JSON text */
} claims;

static claims good(void)
{
    return (claims){.iss = "prov-a",
                    .iat = NOW - 10,
                    .exp = NOW + 290,
                    .nonce = NONCE,
                    .id_hash = F.id_hash,
                    .liveness = "pass",
                    .score = "92.5"};
}

static char *payload_text(const claims *c)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf),
             "{\"iss\":\"%s\",\"iat\":%lld,\"exp\":%lld,\"nonce\":\"%s\",\"id_hash\":\"%s\","
             "\"liveness\":\"%s\",\"score\":%s,\"actions\":[\"blink\",\"turn_left\"]}",
             c->iss, c->iat, c->exp, c->nonce, c->id_hash, c->liveness, c->score);
    return buf;
}

#define HDR_DEV  "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"ekyc-dev\"}"
#define HDR_PROV "{\"alg\":\"ES256\",\"kid\":\"prov-a\"}"

/* ES256 with key over raw header and payload JSON texts; caller frees. */
static char *es256(EVP_PKEY *key, const char *header, const char *payload)
{
    char *t = fxb_jws_es256_compact(key, header, payload);
    assert_non_null(t);
    return t;
}

static char *sign_claims(const claims *c)
{
    return es256(F.prov, HDR_PROV, payload_text(c));
}

/* "<b64 h>.<b64 p>." plus a signature of the given kind: none (empty) or
 * HS256 keyed with the bytes of keyfile. */
static char *unsigned_or_hmac(const char *header, const char *payload, const char *keyfile)
{
    size_t hn = strlen(header);
    size_t pn = strlen(payload);
    char *t = malloc(FXB_B64URL_ENCODED_CAP(hn) + FXB_B64URL_ENCODED_CAP(pn) + 64);
    assert_non_null(t);
    size_t n = fxb_b64url_encode((const unsigned char *)header, hn, t);
    t[n++] = '.';
    n += fxb_b64url_encode((const unsigned char *)payload, pn, t + n);
    size_t signed_len = n;
    t[n++] = '.';
    t[n] = '\0';
    if (keyfile != NULL) {
        FILE *f = fopen(keyfile, "rb");
        assert_non_null(f);
        char key[1024];
        size_t klen = fread(key, 1, sizeof(key), f);
        fclose(f);
        unsigned char mac[32];
        unsigned int mlen = 0;
        assert_non_null(
            HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)t, signed_len, mac, &mlen));
        fxb_b64url_encode(mac, mlen, t + n);
    }
    return t;
}

static void expect_reason_v(const fxb_attestation_verifier *v, const char *jws, const char *nonce,
                            const char *id, double min, int64_t now, const char *reason)
{
    fxb_attestation out;
    fxb_err err;
    memset(&out, 0x5a, sizeof(out));
    fxb_code rc =
        fxb_attestation_verify(v, jws, nonce, id, ACTIONS, 2, min, now, MAX_AGE, &out, &err);
    if (rc != FXB_PERMISSION_DENIED || strcmp(err.reason, reason) != 0)
        fail_msg("expected PERMISSION_DENIED %s, got %s %s (%s)", reason, fxb_code_name(rc),
                 err.reason, err.message);
    assert_null(strstr(err.message, ID));
    assert_null(strstr(err.message, OTHERID));
    assert_null(strstr(err.message_zh, ID));
    assert_int_equal(out.iat, 0);
    assert_int_equal(out.action_count, 0);
    assert_string_equal(out.iss, "");
}

static void expect_reason(const char *jws, const char *reason)
{
    expect_reason_v(F.v, jws, NONCE, ID, MIN, NOW, reason);
}

static void expect_ok_at(const char *jws, double min, int64_t now)
{
    fxb_attestation out;
    fxb_err err;
    fxb_code rc =
        fxb_attestation_verify(F.v, jws, NONCE, ID, ACTIONS, 2, min, now, MAX_AGE, &out, &err);
    if (rc != FXB_OK)
        fail_msg("expected OK, got %s %s (%s)", fxb_code_name(rc), err.reason, err.message);
}

static void expect_claims_reason(const claims *c, const char *reason)
{
    char *t = sign_claims(c);
    expect_reason(t, reason);
    free(t);
}

/* --- rules ----------------------------------------------------------------- */

static void test_id_hash_is_lowercase_hex_sha256_of_upper_case_id(void **state)
{
    (void)state;
    char h[FXB_ATTESTATION_ID_HASH_LEN + 1];
    /* printf 11010519491231002X | sha256sum */
    assert_true(fxb_attestation_id_hash("11010519491231002X", h));
    assert_string_equal(h, "426695a0efdb59b9eaedaf0b5ca3eddf013cc2a7f9e283437704ea605f421e6d");
    assert_true(fxb_attestation_id_hash("11010519491231002x", h));
    assert_string_equal(h, "426695a0efdb59b9eaedaf0b5ca3eddf013cc2a7f9e283437704ea605f421e6d");
    assert_false(fxb_attestation_id_hash("11010519491231002", h));
    assert_string_equal(h, "");
}

static void test_good_attestation_verifies_and_reports_claims(void **state)
{
    (void)state;
    claims c = good();
    char *t = sign_claims(&c);
    fxb_attestation out;
    fxb_err err;
    assert_int_equal(
        fxb_attestation_verify(F.v, t, NONCE, ID, ACTIONS, 2, MIN, NOW, MAX_AGE, &out, &err),
        FXB_OK);
    assert_string_equal(out.iss, "prov-a");
    assert_string_equal(out.kid, "prov-a");
    assert_int_equal(out.iat, NOW - 10);
    assert_int_equal(out.exp, NOW + 290);
    assert_true(out.liveness_pass);
    assert_true(out.score > 92.49 && out.score < 92.51);
    assert_int_equal(out.action_count, 2);
    assert_string_equal(out.actions[0], "blink");
    assert_string_equal(out.actions[1], "turn_left");
    /* The lower-case x form of the same number matches too. */
    assert_int_equal(fxb_attestation_verify(F.v, t, NONCE, "11010519491231002x", ACTIONS, 2, MIN,
                                            NOW, MAX_AGE, &out, &err),
                     FXB_OK);
    free(t);
    /* The dev key signs for a verifier that allows it. */
    t = es256(F.dev, HDR_DEV, payload_text(&c));
    expect_ok_at(t, MIN, NOW);
    free(t);
}

static void test_integer_score_is_accepted(void **state)
{
    (void)state;
    claims c = good();
    c.score = "100";
    char *t = sign_claims(&c);
    expect_ok_at(t, 100.0, NOW);
    free(t);
}

static void test_signature_by_another_key_is_signature_invalid(void **state)
{
    (void)state;
    claims c = good();
    char *t = es256(F.stranger, HDR_PROV, payload_text(&c));
    expect_reason(t, "ATTESTATION_SIGNATURE_INVALID");
    free(t);
    /* The dev key claiming to be prov-a. */
    t = es256(F.dev, HDR_PROV, payload_text(&c));
    expect_reason(t, "ATTESTATION_SIGNATURE_INVALID");
    free(t);
}

static void test_tampered_payload_or_signature_is_signature_invalid(void **state)
{
    (void)state;
    claims c = good();
    char *t = sign_claims(&c);
    char *sig = strrchr(t, '.') + 1;
    sig[10] = sig[10] == 'A' ? 'B' : 'A';
    expect_reason(t, "ATTESTATION_SIGNATURE_INVALID");
    free(t);
    /* A signature of the wrong length. */
    t = sign_claims(&c);
    t[strlen(t) - 2] = '\0';
    expect_reason(t, "ATTESTATION_SIGNATURE_INVALID");
    free(t);
    /* Payload swapped for another (score 99) under the old signature. */
    char *a = sign_claims(&c);
    c.score = "99";
    char *b = sign_claims(&c);
    char *a_sig = strrchr(a, '.');
    char *b_sig = strrchr(b, '.');
    size_t keep = (size_t)(b_sig - b);
    char forged[2048];
    snprintf(forged, sizeof(forged), "%.*s%s", (int)keep, b, a_sig);
    expect_reason(forged, "ATTESTATION_SIGNATURE_INVALID");
    free(a);
    free(b);
}

static void test_alg_none_is_refused(void **state)
{
    (void)state;
    claims c = good();
    char *t = unsigned_or_hmac("{\"alg\":\"none\",\"kid\":\"prov-a\"}", payload_text(&c), NULL);
    expect_reason(t, "ATTESTATION_ALG_NOT_ALLOWED");
    free(t);
    t = unsigned_or_hmac("{\"alg\":\"NONE\",\"kid\":\"prov-a\"}", payload_text(&c), NULL);
    expect_reason(t, "ATTESTATION_ALG_NOT_ALLOWED");
    free(t);
}

static void test_hs256_keyed_with_the_public_key_pem_is_refused(void **state)
{
    (void)state;
    claims c = good();
    char *t =
        unsigned_or_hmac("{\"alg\":\"HS256\",\"kid\":\"ekyc-dev\"}", payload_text(&c), F.pub_path);
    expect_reason(t, "ATTESTATION_ALG_NOT_ALLOWED");
    free(t);
}

static void test_any_alg_but_es256_is_refused(void **state)
{
    (void)state;
    claims c = good();
    static const char *headers[] = {
        "{\"alg\":\"RS256\",\"kid\":\"prov-a\"}",
        "{\"alg\":\"ES384\",\"kid\":\"prov-a\"}",
        "{\"alg\":\"es256\",\"kid\":\"prov-a\"}",
        "{\"alg\":\"ES256 \",\"kid\":\"prov-a\"}",
        "{\"kid\":\"prov-a\"}",
        "{\"alg\":null,\"kid\":\"prov-a\"}",
        "{\"alg\":[\"ES256\"],\"kid\":\"prov-a\"}",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        /* Even properly ES256-signed: the header decides nothing but is
         * checked first. */
        char *t = es256(F.prov, headers[i], payload_text(&c));
        expect_reason(t, "ATTESTATION_ALG_NOT_ALLOWED");
        free(t);
    }
}

static void test_unknown_or_missing_kid_is_key_unknown(void **state)
{
    (void)state;
    claims c = good();
    static const char *headers[] = {
        "{\"alg\":\"ES256\",\"kid\":\"prov-b\"}",
        "{\"alg\":\"ES256\"}",
        "{\"alg\":\"ES256\",\"kid\":7}",
        "{\"alg\":\"ES256\",\"kid\":\"\"}",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char *t = es256(F.stranger, headers[i], payload_text(&c));
        expect_reason(t, "ATTESTATION_KEY_UNKNOWN");
        free(t);
    }
}

static void test_nonce_of_another_challenge_is_nonce_mismatch(void **state)
{
    (void)state;
    claims c = good();
    c.nonce = "q3J0cW9uY2UtY2hhbGxlbmdlLTAy";
    expect_claims_reason(&c, "ATTESTATION_NONCE_MISMATCH");
    c.nonce = NONCE "A"; /* a prefix of it is ours */
    expect_claims_reason(&c, "ATTESTATION_NONCE_MISMATCH");
}

static void test_attestation_for_another_id_number_is_id_mismatch(void **state)
{
    (void)state;
    claims c = good();
    char other[FXB_ATTESTATION_ID_HASH_LEN + 1];
    assert_true(fxb_attestation_id_hash(OTHERID, other));
    c.id_hash = other;
    expect_claims_reason(&c, "ATTESTATION_ID_MISMATCH");
    /* And our attestation presented for someone else's number. */
    c = good();
    char *t = sign_claims(&c);
    expect_reason_v(F.v, t, NONCE, OTHERID, MIN, NOW, "ATTESTATION_ID_MISMATCH");
    free(t);
}

static void test_liveness_fail_is_refused(void **state)
{
    (void)state;
    claims c = good();
    c.liveness = "fail";
    expect_claims_reason(&c, "ATTESTATION_LIVENESS_FAILED");
}

static void test_score_below_threshold_fails_equal_passes(void **state)
{
    (void)state;
    claims c = good();
    c.score = "80";
    char *t = sign_claims(&c);
    expect_ok_at(t, 80.0, NOW);
    expect_reason_v(F.v, t, NONCE, ID, 80.01, NOW, "ATTESTATION_SCORE_TOO_LOW");
    free(t);
    c.score = "79.99";
    expect_claims_reason(&c, "ATTESTATION_SCORE_TOO_LOW");
    c.score = "0";
    expect_claims_reason(&c, "ATTESTATION_SCORE_TOO_LOW");
}

static void test_old_iat_is_stale_at_max_age_it_is_not(void **state)
{
    (void)state;
    claims c = good();
    c.iat = NOW - MAX_AGE;
    c.exp = NOW + 60;
    char *t = sign_claims(&c);
    expect_ok_at(t, MIN, NOW);
    free(t);
    c.iat = NOW - MAX_AGE - 1;
    expect_claims_reason(&c, "ATTESTATION_STALE");
}

static void test_iat_more_than_30_s_ahead_is_stale(void **state)
{
    (void)state;
    claims c = good();
    c.iat = NOW + 30;
    c.exp = NOW + 300;
    char *t = sign_claims(&c);
    expect_ok_at(t, MIN, NOW);
    free(t);
    c.iat = NOW + 31;
    expect_claims_reason(&c, "ATTESTATION_STALE");
}

static void test_expired_attestation_is_stale(void **state)
{
    (void)state;
    claims c = good();
    c.exp = NOW;
    expect_claims_reason(&c, "ATTESTATION_STALE");
    c.exp = NOW + 1;
    char *t = sign_claims(&c);
    expect_ok_at(t, MIN, NOW);
    free(t);
}

static void test_not_three_parts_or_not_base64url_is_malformed(void **state)
{
    (void)state;
    claims c = good();
    char *t = sign_claims(&c);
    char buf[2048];
    expect_reason(NULL, "ATTESTATION_MALFORMED");
    expect_reason("", "ATTESTATION_MALFORMED");
    expect_reason("abc", "ATTESTATION_MALFORMED");
    expect_reason("abc.def", "ATTESTATION_MALFORMED");
    snprintf(buf, sizeof(buf), "%s.AAAA", t); /* four parts */
    expect_reason(buf, "ATTESTATION_MALFORMED");
    snprintf(buf, sizeof(buf), "%s", strchr(t, '.')); /* empty header */
    expect_reason(buf, "ATTESTATION_MALFORMED");
    snprintf(buf, sizeof(buf), "%s=", t); /* padding */
    expect_reason(buf, "ATTESTATION_MALFORMED");
    snprintf(buf, sizeof(buf), "%s", t);
    buf[3] = '+'; /* standard base64, not url */
    expect_reason(buf, "ATTESTATION_MALFORMED");
    snprintf(buf, sizeof(buf), " %s", t);
    expect_reason(buf, "ATTESTATION_MALFORMED");
    /* A header of 5 characters (5 mod 4 = 1) cannot be base64url. */
    snprintf(buf, sizeof(buf), "eyJhb%s", strchr(t, '.'));
    expect_reason(buf, "ATTESTATION_MALFORMED");
    /* Non-canonical: "e30" is "{}"; "e31" has unused low bits set. */
    snprintf(buf, sizeof(buf), "e31%s", strchr(t, '.'));
    expect_reason(buf, "ATTESTATION_MALFORMED");
    /* Too long. */
    char *big = malloc(FXB_ATTESTATION_MAX_LEN + 2);
    assert_non_null(big);
    memset(big, 'A', FXB_ATTESTATION_MAX_LEN + 1);
    big[FXB_ATTESTATION_MAX_LEN + 1] = '\0';
    expect_reason(big, "ATTESTATION_MALFORMED");
    free(big);
    free(t);
}

static void test_header_not_a_json_object_or_with_crit_is_malformed(void **state)
{
    (void)state;
    claims c = good();
    static const char *headers[] = {
        "not json",
        "[\"ES256\"]",
        "{\"alg\":\"ES256\",\"alg\":\"ES256\",\"kid\":\"prov-a\"}", /* duplicate */
        "{\"alg\":\"ES256\",\"kid\":\"prov-a\",\"crit\":[\"exp\"]}",
        "{\"alg\":\"none\",\"kid\":\"prov-a\"",           /* truncated: malformed before alg */
        "{\"alg\":\"ES256\",\"kid\":\"prov-a\\u0000x\"}", /* NUL: jansson refuses */
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char *t = es256(F.prov, headers[i], payload_text(&c));
        expect_reason(t, "ATTESTATION_MALFORMED");
        free(t);
    }
}

static void test_signed_payload_not_json_or_with_bad_claims_is_malformed(void **state)
{
    (void)state;
    char hash_upper[FXB_ATTESTATION_ID_HASH_LEN + 1];
    memcpy(hash_upper, F.id_hash, sizeof(hash_upper));
    for (size_t i = 0; hash_upper[i] != '\0'; i++) {
        if (hash_upper[i] >= 'a' && hash_upper[i] <= 'f')
            hash_upper[i] = (char)(hash_upper[i] - 'a' + 'A');
    }
    char p[12][1024];
    int n = 0;
    snprintf(p[n++], sizeof(p[0]), "not json");
    snprintf(p[n++], sizeof(p[0]), "[1,2]");
    /* Duplicate nonce: which one would count? Neither. */
    snprintf(p[n++], sizeof(p[0]),
             "{\"iss\":\"prov-a\",\"iat\":%lld,\"exp\":%lld,\"nonce\":\"%s\",\"nonce\":\"%s\","
             "\"id_hash\":\"%s\",\"liveness\":\"pass\",\"score\":90}",
             NOW, NOW + 60, NONCE, NONCE, F.id_hash);
#define FMT                                                                                        \
    "{\"iss\":%s,\"iat\":%s,\"exp\":%s,\"nonce\":%s,\"id_hash\":\"%s\",\"liveness\":%s,"           \
    "\"score\":%s}"
    char iat[32], exp[32], nonce[64];
    snprintf(iat, sizeof(iat), "%lld", NOW);
    snprintf(exp, sizeof(exp), "%lld", NOW + 60);
    snprintf(nonce, sizeof(nonce), "\"%s\"", NONCE);
    snprintf(p[n++], sizeof(p[0]), FMT, "\"a\"", iat, exp, nonce, F.id_hash, "\"pass\"", "101");
    snprintf(p[n++], sizeof(p[0]), FMT, "\"a\"", iat, exp, nonce, F.id_hash, "\"pass\"", "\"95\"");
    snprintf(p[n++], sizeof(p[0]), FMT, "\"a\"", iat, exp, nonce, F.id_hash, "\"PASS\"", "95");
    snprintf(p[n++], sizeof(p[0]), FMT, "\"a\"", iat, exp, nonce, hash_upper, "\"pass\"", "95");
    snprintf(p[n++], sizeof(p[0]), FMT, "\"a\"", iat, exp, "\"short\"", F.id_hash, "\"pass\"",
             "95");
    snprintf(p[n++], sizeof(p[0]), FMT, "\"a\"", "\"1750000000\"", exp, nonce, F.id_hash,
             "\"pass\"", "95");
    snprintf(p[n++], sizeof(p[0]), FMT, "\"a\"", exp, iat, nonce, F.id_hash, "\"pass\"",
             "95"); /* exp before iat */
    snprintf(p[n++], sizeof(p[0]), FMT, "\"\"", iat, exp, nonce, F.id_hash, "\"pass\"", "95");
    snprintf(p[n++], sizeof(p[0]), FMT, "\"a\"", iat, exp, nonce, F.id_hash, "\"pass\"", "-1");
#undef FMT
    for (int i = 0; i < n; i++) {
        char *t = es256(F.prov, HDR_PROV, p[i]);
        expect_reason(t, "ATTESTATION_MALFORMED");
        free(t);
    }
    /* Payload part not base64url-canonical, signed as it stands. */
    char signing_input[512];
    snprintf(signing_input, sizeof(signing_input), "eyJhbGciOiJFUzI1NiIsImtpZCI6InByb3YtYSJ9.e31");
    unsigned char sig[FXB_JWS_ES256_SIG_LEN];
    assert_true(fxb_jws_es256_sign(F.prov, signing_input, strlen(signing_input), sig));
    char tok[1024];
    size_t k = (size_t)snprintf(tok, sizeof(tok), "%s.", signing_input);
    fxb_b64url_encode(sig, sizeof(sig), tok + k);
    expect_reason(tok, "ATTESTATION_MALFORMED");
    /* Actions: not strings, too many. */
    char act[1024];
    snprintf(act, sizeof(act),
             "{\"iss\":\"a\",\"iat\":%lld,\"exp\":%lld,\"nonce\":\"%s\",\"id_hash\":\"%s\","
             "\"liveness\":\"pass\",\"score\":95,\"actions\":[\"Blink\"]}",
             NOW, NOW + 60, NONCE, F.id_hash);
    char *t = es256(F.prov, HDR_PROV, act);
    expect_reason(t, "ATTESTATION_MALFORMED");
    free(t);
    snprintf(act, sizeof(act),
             "{\"iss\":\"a\",\"iat\":%lld,\"exp\":%lld,\"nonce\":\"%s\",\"id_hash\":\"%s\","
             "\"liveness\":\"pass\",\"score\":95,\"actions\":[\"a\",\"a\",\"a\",\"a\",\"a\","
             "\"a\",\"a\",\"a\",\"a\"]}",
             NOW, NOW + 60, NONCE, F.id_hash);
    t = es256(F.prov, HDR_PROV, act);
    expect_reason(t, "ATTESTATION_MALFORMED");
    free(t);
}

/* The echoed actions must be the challenge's, in its order; the check
 * comes right after liveness and before the score. */
static void test_actions_missing_or_other_than_the_challenges_are_mismatch(void **state)
{
    (void)state;
    claims c = good();
    char *t = sign_claims(&c);
    static const char *const swapped[] = {"turn_left", "blink"};
    static const char *const fewer[] = {"blink"};
    static const char *const more[] = {"blink", "turn_left", "nod"};
    static const char *const other[] = {"blink", "nod"};
    const char *const *cases[] = {swapped, fewer, more, other};
    const size_t counts[] = {2, 1, 3, 2};
    for (size_t i = 0; i < 4; i++) {
        fxb_attestation out;
        fxb_err err;
        assert_int_equal(fxb_attestation_verify(F.v, t, NONCE, ID, cases[i], counts[i], MIN, NOW,
                                                MAX_AGE, &out, &err),
                         FXB_PERMISSION_DENIED);
        assert_string_equal(err.reason, "ATTESTATION_ACTIONS_MISMATCH");
        assert_int_equal(out.action_count, 0);
    }
    free(t);
    /* no actions claim at all */
    char p[1024];
    snprintf(p, sizeof(p),
             "{\"iss\":\"a\",\"iat\":%lld,\"exp\":%lld,\"nonce\":\"%s\",\"id_hash\":\"%s\","
             "\"liveness\":\"%s\",\"score\":%s}",
             NOW, NOW + 60, NONCE, F.id_hash, "pass", "95");
    t = es256(F.prov, HDR_PROV, p);
    expect_reason(t, "ATTESTATION_ACTIONS_MISMATCH");
    free(t);
    /* ...an empty list is as missing */
    snprintf(p, sizeof(p),
             "{\"iss\":\"a\",\"iat\":%lld,\"exp\":%lld,\"nonce\":\"%s\",\"id_hash\":\"%s\","
             "\"liveness\":\"%s\",\"score\":%s,\"actions\":[]}",
             NOW, NOW + 60, NONCE, F.id_hash, "pass", "95");
    t = es256(F.prov, HDR_PROV, p);
    expect_reason(t, "ATTESTATION_ACTIONS_MISMATCH");
    free(t);
    /* order: liveness before actions, actions before score */
    snprintf(p, sizeof(p),
             "{\"iss\":\"a\",\"iat\":%lld,\"exp\":%lld,\"nonce\":\"%s\",\"id_hash\":\"%s\","
             "\"liveness\":\"%s\",\"score\":%s}",
             NOW, NOW + 60, NONCE, F.id_hash, "fail", "10");
    t = es256(F.prov, HDR_PROV, p);
    expect_reason(t, "ATTESTATION_LIVENESS_FAILED");
    free(t);
    snprintf(p, sizeof(p),
             "{\"iss\":\"a\",\"iat\":%lld,\"exp\":%lld,\"nonce\":\"%s\",\"id_hash\":\"%s\","
             "\"liveness\":\"%s\",\"score\":%s}",
             NOW, NOW + 60, NONCE, F.id_hash, "pass", "10");
    t = es256(F.prov, HDR_PROV, p);
    expect_reason(t, "ATTESTATION_ACTIONS_MISMATCH");
    free(t);
}

/* Several things wrong at once: the reason is the first in the documented
 * order. */
static void test_first_failing_check_decides_the_reason(void **state)
{
    (void)state;
    claims c = good();
    c.nonce = "AAAAAAAAAAAAAAAAAAAAAA";
    c.liveness = "fail";
    c.score = "1";
    c.iat = NOW - 10000;
    c.exp = NOW - 9000;
    expect_claims_reason(&c, "ATTESTATION_NONCE_MISMATCH");
    c.nonce = NONCE;
    char other[FXB_ATTESTATION_ID_HASH_LEN + 1];
    assert_true(fxb_attestation_id_hash(OTHERID, other));
    c.id_hash = other;
    expect_claims_reason(&c, "ATTESTATION_ID_MISMATCH");
    c.id_hash = F.id_hash;
    expect_claims_reason(&c, "ATTESTATION_LIVENESS_FAILED");
    c.liveness = "pass";
    expect_claims_reason(&c, "ATTESTATION_SCORE_TOO_LOW");
    c.score = "90";
    expect_claims_reason(&c, "ATTESTATION_STALE");
    /* alg none with an unknown kid and no signature: the alg answers. */
    char *t = unsigned_or_hmac("{\"alg\":\"none\",\"kid\":\"nobody\"}", payload_text(&c), NULL);
    expect_reason(t, "ATTESTATION_ALG_NOT_ALLOWED");
    free(t);
    /* Unknown kid and bad claims: the kid answers (claims are not read
     * before the signature). */
    t = es256(F.stranger, "{\"alg\":\"ES256\",\"kid\":\"nobody\"}", "not json");
    expect_reason(t, "ATTESTATION_KEY_UNKNOWN");
    free(t);
}

static void test_dev_key_is_refused_by_a_production_verifier(void **state)
{
    (void)state;
    fxb_err err;
    fxb_attestation_verifier *prod = fxb_attestation_verifier_new(false, &err);
    assert_non_null(prod);
    /* A directory holding the dev key fails as a whole. */
    assert_int_equal(fxb_attestation_verifier_load_dir(prod, F.dir, &err), FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "ATTESTATION_DEV_KEY_REFUSED");
    fxb_attestation_verifier_free(prod);

    prod = fxb_attestation_verifier_new(false, &err);
    assert_non_null(prod);
    assert_int_equal(fxb_attestation_verifier_load_dir(prod, F.prod_dir, &err), FXB_OK);
    assert_int_equal(fxb_attestation_verifier_count(prod), 1);
    /* So a dev-signed attestation is KEY_UNKNOWN there... */
    claims c = good();
    char *t = es256(F.dev, HDR_DEV, payload_text(&c));
    expect_reason_v(prod, t, NONCE, ID, MIN, NOW, "ATTESTATION_KEY_UNKNOWN");
    free(t);
    /* ...and the provider's verifies. */
    t = sign_claims(&c);
    fxb_attestation out;
    assert_int_equal(
        fxb_attestation_verify(prod, t, NONCE, ID, ACTIONS, 2, MIN, NOW, MAX_AGE, &out, &err),
        FXB_OK);
    free(t);
    /* Adding the dev key by buffer is refused too. */
    char *pem = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&pem, &len);
    assert_non_null(m);
    assert_true(PEM_write_PUBKEY(m, F.dev));
    fclose(m);
    assert_int_equal(
        fxb_attestation_verifier_add_pem(prod, FXB_ATTESTATION_DEV_KID, pem, len, &err),
        FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "ATTESTATION_DEV_KEY_REFUSED");
    free(pem);
    fxb_attestation_verifier_free(prod);
}

static void test_key_loading_refuses_bad_keys_and_empty_dirs(void **state)
{
    (void)state;
    fxb_err err;
    fxb_attestation_verifier *v = fxb_attestation_verifier_new(true, &err);
    assert_non_null(v);
    char path[256];
    snprintf(path, sizeof(path), "%s/missing", F.dir);
    assert_int_equal(fxb_attestation_verifier_load_dir(v, path, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, "ATTESTATION_KEYS_MISSING");
    /* A directory with only a private key has no public key file. */
    snprintf(path, sizeof(path), "%s/privonly", F.dir);
    assert_int_equal(mkdir(path, 0700), 0);
    char file[300];
    snprintf(file, sizeof(file), "%s/ekyc-dev.pem", path);
    assert_int_equal(write_pem(file, F.dev, 1), 0);
    assert_int_equal(fxb_attestation_verifier_load_dir(v, path, &err), FXB_NOT_FOUND);
    /* Not P-256, not a PEM, a bad kid, a duplicate. */
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    assert_non_null(p384);
    char *pem = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&pem, &len);
    assert_true(PEM_write_PUBKEY(m, p384));
    fclose(m);
    assert_int_equal(fxb_attestation_verifier_add_pem(v, "p384", pem, len, &err),
                     FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "ATTESTATION_KEY_INVALID");
    free(pem);
    EVP_PKEY_free(p384);
    assert_int_equal(fxb_attestation_verifier_add_pem(v, "junk", "hello", 5, &err),
                     FXB_INVALID_ARGUMENT);
    m = open_memstream(&pem, &len);
    assert_true(PEM_write_PUBKEY(m, F.prov));
    fclose(m);
    assert_int_equal(fxb_attestation_verifier_add_pem(v, "bad kid", pem, len, &err),
                     FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_attestation_verifier_add_pem(v, "prov-a", pem, len, &err), FXB_OK);
    assert_int_equal(fxb_attestation_verifier_add_pem(v, "prov-a", pem, len, &err),
                     FXB_INVALID_ARGUMENT);
    for (int i = 1; i < FXB_ATTESTATION_KEYS_MAX; i++) {
        char kid[16];
        snprintf(kid, sizeof(kid), "k%d", i);
        assert_int_equal(fxb_attestation_verifier_add_pem(v, kid, pem, len, &err), FXB_OK);
    }
    assert_int_equal(fxb_attestation_verifier_add_pem(v, "one-more", pem, len, &err),
                     FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "ATTESTATION_KEYS_FULL");
    free(pem);
    fxb_attestation_verifier_free(v);
}

static void test_bad_server_arguments_are_internal(void **state)
{
    (void)state;
    claims c = good();
    char *t = sign_claims(&c);
    fxb_attestation out;
    fxb_err err;
    struct {
        const fxb_attestation_verifier *v;
        const char *nonce;
        const char *id;
        double min;
        int64_t now;
        int max_age;
    } cases[] = {
        {NULL, NONCE, ID, MIN, NOW, MAX_AGE},   {F.v, NULL, ID, MIN, NOW, MAX_AGE},
        {F.v, "short", ID, MIN, NOW, MAX_AGE},  {F.v, NONCE, NULL, MIN, NOW, MAX_AGE},
        {F.v, NONCE, "123", MIN, NOW, MAX_AGE}, {F.v, NONCE, ID, 101, NOW, MAX_AGE},
        {F.v, NONCE, ID, -1, NOW, MAX_AGE},     {F.v, NONCE, ID, MIN, -1, MAX_AGE},
        {F.v, NONCE, ID, MIN, NOW, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(fxb_attestation_verify(cases[i].v, t, cases[i].nonce, cases[i].id, ACTIONS,
                                                2, cases[i].min, cases[i].now, cases[i].max_age,
                                                &out, &err),
                         FXB_INTERNAL);
        assert_string_equal(err.reason, "ATTESTATION_VERIFY_ARGS");
    }
    /* expected actions: none, too many, of the wrong shape */
    static const char *const bad_shape[] = {"blink", "Turn-Left"};
    static const char *const nine[] = {"a", "a", "a", "a", "a", "a", "a", "a", "a"};
    assert_int_equal(
        fxb_attestation_verify(F.v, t, NONCE, ID, NULL, 2, MIN, NOW, MAX_AGE, &out, &err),
        FXB_INTERNAL);
    assert_int_equal(
        fxb_attestation_verify(F.v, t, NONCE, ID, ACTIONS, 0, MIN, NOW, MAX_AGE, &out, &err),
        FXB_INTERNAL);
    assert_int_equal(
        fxb_attestation_verify(F.v, t, NONCE, ID, nine, 9, MIN, NOW, MAX_AGE, &out, &err),
        FXB_INTERNAL);
    assert_int_equal(
        fxb_attestation_verify(F.v, t, NONCE, ID, bad_shape, 2, MIN, NOW, MAX_AGE, &out, &err),
        FXB_INTERNAL);
    assert_string_equal(err.reason, "ATTESTATION_VERIFY_ARGS");
    free(t);
}

/* --- the simulator ---------------------------------------------------------- */

/* The fxb-ekyc-sim next to this test's build directory, or skip. */
static void sim_path(char *out, size_t cap)
{
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        skip();
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        skip();
    *slash = '\0'; /* .../tests */
    snprintf(out, cap, "%s/../fxb-ekyc-sim", self);
    if (access(out, X_OK) != 0)
        skip();
}

/* Runs the simulator; returns stdout's first line (malloc'd) or NULL. */
static char *run(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, p);
    char extra[16];
    size_t more = fread(extra, 1, sizeof(extra), p); /* nothing else on stdout */
    int rc = pclose(p);
    assert_int_equal(more, 0);
    if (n <= 0 || rc != 0) {
        free(line);
        return NULL;
    }
    if (line[n - 1] == '\n')
        line[n - 1] = '\0';
    return line;
}

static void test_simulator_attestations_verify_and_its_attacks_do_not(void **state)
{
    (void)state;
    char sim[600];
    sim_path(sim, sizeof(sim));
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/sim", F.dir);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "'%s' keygen '%s'", sim, dir);
    assert_int_equal(system(cmd), 0);
    char priv[300];
    snprintf(priv, sizeof(priv), "%s/ekyc-dev.pem", dir);
    struct stat st;
    assert_int_equal(stat(priv, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    fxb_err err;
    fxb_attestation_verifier *v = fxb_attestation_verifier_new(true, &err);
    assert_non_null(v);
    assert_int_equal(fxb_attestation_verifier_load_dir(v, dir, &err), FXB_OK);
    assert_int_equal(fxb_attestation_verifier_count(v), 1);

    snprintf(cmd, sizeof(cmd),
             "'%s' attest --key '%s' --nonce %s --id 11010519491231002x --score 97.5 --iat %lld "
             "--exp %lld --actions blink,nod",
             sim, priv, NONCE, NOW - 5, NOW + 120);
    char *t = run(cmd);
    assert_non_null(t);
    fxb_attestation out;
    assert_int_equal(
        fxb_attestation_verify(v, t, NONCE, ID, SIM_ACTIONS, 2, 97.5, NOW, MAX_AGE, &out, &err),
        FXB_OK);
    assert_string_equal(out.kid, FXB_ATTESTATION_DEV_KID);
    assert_int_equal(out.action_count, 2);
    free(t);

    snprintf(cmd, sizeof(cmd),
             "'%s' attest --key '%s' --nonce %s --id %s --liveness fail --iat %lld", sim, priv,
             NONCE, ID, NOW);
    t = run(cmd);
    assert_non_null(t);
    expect_reason_v(v, t, NONCE, ID, MIN, NOW, "ATTESTATION_LIVENESS_FAILED");
    free(t);

    snprintf(cmd, sizeof(cmd), "'%s' attest --alg none --nonce %s --id %s --iat %lld", sim, NONCE,
             ID, NOW);
    t = run(cmd);
    assert_non_null(t);
    expect_reason_v(v, t, NONCE, ID, MIN, NOW, "ATTESTATION_ALG_NOT_ALLOWED");
    free(t);

    snprintf(cmd, sizeof(cmd),
             "'%s' attest --alg HS256 --hmac-key-file '%s/ekyc-dev.pub.pem' --nonce %s --id %s "
             "--iat %lld",
             sim, dir, NONCE, ID, NOW);
    t = run(cmd);
    assert_non_null(t);
    expect_reason_v(v, t, NONCE, ID, MIN, NOW, "ATTESTATION_ALG_NOT_ALLOWED");
    free(t);

    /* Usage errors print nothing on stdout. */
    snprintf(cmd, sizeof(cmd), "'%s' attest --nonce %s 2>/dev/null", sim, NONCE);
    assert_null(run(cmd));
    fxb_attestation_verifier_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_hash_is_lowercase_hex_sha256_of_upper_case_id),
        cmocka_unit_test(test_good_attestation_verifies_and_reports_claims),
        cmocka_unit_test(test_integer_score_is_accepted),
        cmocka_unit_test(test_signature_by_another_key_is_signature_invalid),
        cmocka_unit_test(test_tampered_payload_or_signature_is_signature_invalid),
        cmocka_unit_test(test_alg_none_is_refused),
        cmocka_unit_test(test_hs256_keyed_with_the_public_key_pem_is_refused),
        cmocka_unit_test(test_any_alg_but_es256_is_refused),
        cmocka_unit_test(test_unknown_or_missing_kid_is_key_unknown),
        cmocka_unit_test(test_nonce_of_another_challenge_is_nonce_mismatch),
        cmocka_unit_test(test_attestation_for_another_id_number_is_id_mismatch),
        cmocka_unit_test(test_liveness_fail_is_refused),
        cmocka_unit_test(test_actions_missing_or_other_than_the_challenges_are_mismatch),
        cmocka_unit_test(test_score_below_threshold_fails_equal_passes),
        cmocka_unit_test(test_old_iat_is_stale_at_max_age_it_is_not),
        cmocka_unit_test(test_iat_more_than_30_s_ahead_is_stale),
        cmocka_unit_test(test_expired_attestation_is_stale),
        cmocka_unit_test(test_not_three_parts_or_not_base64url_is_malformed),
        cmocka_unit_test(test_header_not_a_json_object_or_with_crit_is_malformed),
        cmocka_unit_test(test_signed_payload_not_json_or_with_bad_claims_is_malformed),
        cmocka_unit_test(test_first_failing_check_decides_the_reason),
        cmocka_unit_test(test_dev_key_is_refused_by_a_production_verifier),
        cmocka_unit_test(test_key_loading_refuses_bad_keys_and_empty_dirs),
        cmocka_unit_test(test_bad_server_arguments_are_internal),
        cmocka_unit_test(test_simulator_attestations_verify_and_its_attacks_do_not),
    };
    return cmocka_run_group_tests(tests, fixture_up, fixture_down);
}
