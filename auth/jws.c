/* Canonical base64url and ES256 in the JOSE form, for compact JWS that are
 * not our access tokens. Same algorithms as auth/token.c (which is left
 * untouched): the signature algorithm is fixed by the caller's code, never
 * read from a token, and signatures are converted between JOSE r || s and
 * the DER form OpenSSL speaks. */
#include "auth/jws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

bool fxb_b64url_char(unsigned char c)
{
    return b64url_value(c) >= 0;
}

size_t fxb_b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        out[o++] = B64URL[(v >> 6) & 63];
        out[o++] = B64URL[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        out[o++] = B64URL[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

long fxb_b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 == 1)
        return -1;
    size_t need = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
    if (need > cap)
        return -1;
    size_t o = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        int a = b64url_value((unsigned char)in[i]);
        int b = b64url_value((unsigned char)in[i + 1]);
        int c = b64url_value((unsigned char)in[i + 2]);
        int d = b64url_value((unsigned char)in[i + 3]);
        if ((a | b | c | d) < 0)
            return -1;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    size_t rem = n - i;
    if (rem >= 2) {
        int a = b64url_value((unsigned char)in[i]);
        int b = b64url_value((unsigned char)in[i + 1]);
        int c = rem == 3 ? b64url_value((unsigned char)in[i + 2]) : 0;
        if ((a | b | c) < 0)
            return -1;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
        if (rem == 2 && (v & 0xFFFF) != 0)
            return -1;
        if (rem == 3 && (v & 0xFF) != 0)
            return -1;
        out[o++] = (unsigned char)(v >> 16);
        if (rem == 3)
            out[o++] = (unsigned char)(v >> 8);
    }
    return (long)o;
}

bool fxb_jws_key_is_p256(EVP_PKEY *pkey)
{
    char group[64];
    size_t glen = 0;
    if (pkey == NULL || !EVP_PKEY_is_a(pkey, "EC"))
        return false;
    if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        &glen)) {
        ERR_clear_error();
        return false;
    }
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

bool fxb_jws_es256_sign(EVP_PKEY *pkey, const char *msg, size_t n,
                        unsigned char sig[FXB_JWS_ES256_SIG_LEN])
{
    bool ok = false;
    unsigned char der[80];
    size_t der_len = sizeof(der);
    ECDSA_SIG *es = NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1 ||
        EVP_DigestSign(ctx, der, &der_len, (const unsigned char *)msg, n) != 1)
        goto done;
    const unsigned char *dp = der;
    es = d2i_ECDSA_SIG(NULL, &dp, (long)der_len);
    if (es == NULL)
        goto done;
    const BIGNUM *r = NULL;
    const BIGNUM *s = NULL;
    ECDSA_SIG_get0(es, &r, &s);
    ok = BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32;
done:
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

bool fxb_jws_es256_verify(EVP_PKEY *pkey, const EVP_MD *sha256, const char *msg, size_t n,
                          const unsigned char sig[FXB_JWS_ES256_SIG_LEN])
{
    bool ok = false;
    unsigned char der[80];
    unsigned char *dp = der;
    BIGNUM *r = BN_bin2bn(sig, 32, NULL);
    BIGNUM *s = BN_bin2bn(sig + 32, 32, NULL);
    ECDSA_SIG *es = ECDSA_SIG_new();
    EVP_MD_CTX *ctx = NULL;
    if (r == NULL || s == NULL || es == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        goto done;
    }
    /* es owns r and s now. */
    if (i2d_ECDSA_SIG(es, NULL) > (int)sizeof(der))
        goto done;
    int der_len = i2d_ECDSA_SIG(es, &dp);
    if (der_len <= 0)
        goto done;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL ||
        EVP_DigestVerifyInit(ctx, NULL, sha256 != NULL ? sha256 : EVP_sha256(), NULL, pkey) != 1)
        goto done;
    ok = EVP_DigestVerify(ctx, der, (size_t)der_len, (const unsigned char *)msg, n) == 1;
done:
    EVP_MD_CTX_free(ctx);
    ECDSA_SIG_free(es);
    ERR_clear_error();
    return ok;
}

char *fxb_jws_es256_compact(EVP_PKEY *pkey, const char *header_json, const char *payload_json)
{
    size_t hn = strlen(header_json);
    size_t pn = strlen(payload_json);
    size_t cap =
        FXB_B64URL_ENCODED_CAP(hn) + FXB_B64URL_ENCODED_CAP(pn) + FXB_JWS_ES256_SIG_B64_LEN + 1;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    size_t n = fxb_b64url_encode((const unsigned char *)header_json, hn, out);
    out[n++] = '.';
    n += fxb_b64url_encode((const unsigned char *)payload_json, pn, out + n);
    unsigned char sig[FXB_JWS_ES256_SIG_LEN];
    if (!fxb_jws_es256_sign(pkey, out, n, sig)) {
        free(out);
        return NULL;
    }
    out[n++] = '.';
    fxb_b64url_encode(sig, sizeof(sig), out + n);
    return out;
}
