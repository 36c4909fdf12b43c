/* The JWS building blocks shared by verifiers of compact ES256 tokens other
 * than our access tokens (provider attestations) and by the tools that make
 * them: canonical base64url (RFC 4648 §5, unpadded) and ES256 (RFC 7518
 * §3.4: ECDSA P-256 + SHA-256, signature in the JOSE r || s form) over
 * OpenSSL with a pre-parsed key. auth/token.c keeps its own copies. */
#ifndef FXB_AUTH_JWS_H
#define FXB_AUTH_JWS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/types.h>

/* ES256 signature: r || s, 32 bytes each; 86 characters in base64url. */
#define FXB_JWS_ES256_SIG_LEN     64
#define FXB_JWS_ES256_SIG_B64_LEN 86

/* Characters needed to encode n bytes, plus the NUL. */
#define FXB_B64URL_ENCODED_CAP(n) (((n) + 2) / 3 * 4 + 1)

/* True for A-Z a-z 0-9 - _. */
bool fxb_b64url_char(unsigned char c);

/* Writes the unpadded encoding of n bytes plus a NUL into out, which must
 * hold FXB_B64URL_ENCODED_CAP(n) bytes. Returns the length. */
size_t fxb_b64url_encode(const unsigned char *in, size_t n, char *out);

/* Decodes n characters into out (cap bytes). Only the canonical encoding
 * is accepted (no padding, unused low bits zero), so one byte string has
 * exactly one text. Returns the decoded length, or -1 on a bad character,
 * a non-canonical ending, or when the result would not fit. */
long fxb_b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap);

/* True when pkey is an EC key on P-256, the only curve ES256 uses. NULL
 * gives false. */
bool fxb_jws_key_is_p256(EVP_PKEY *pkey);

/* Signs msg with the private key pkey (ECDSA P-256, SHA-256) and writes
 * the JOSE form r || s. Returns false on any crypto failure (the OpenSSL
 * error queue is cleared). */
bool fxb_jws_es256_sign(EVP_PKEY *pkey, const char *msg, size_t n,
                        unsigned char sig[FXB_JWS_ES256_SIG_LEN]);

/* Verifies a JOSE r || s signature over msg with pkey. The algorithm is
 * fixed here (ECDSA + SHA-256); sha256 is a pre-fetched digest or NULL
 * (then fetched implicitly). Returns true only for a valid signature. */
bool fxb_jws_es256_verify(EVP_PKEY *pkey, const EVP_MD *sha256, const char *msg, size_t n,
                          const unsigned char sig[FXB_JWS_ES256_SIG_LEN]);

/* Builds "<b64url(header)>.<b64url(payload)>.<b64url(ES256 sig)>" from two
 * JSON texts, signed with pkey. Returns a malloc'd NUL-terminated string
 * the caller frees, or NULL on allocation or crypto failure. */
char *fxb_jws_es256_compact(EVP_PKEY *pkey, const char *header_json, const char *payload_json);

#endif
