/* fxb-ekyc-sim: a stand-in for the face-verification provider, for
 * development and tests only. It makes the development key pair and signs
 * attestations with it in exactly the form auth/attestation.h verifies.
 *
 *   fxb-ekyc-sim keygen DIR
 *       writes DIR/ekyc-dev.pem (PKCS#8 private key, mode 0600) and
 *       DIR/ekyc-dev.pub.pem (public key, 0644); kid "ekyc-dev".
 *   fxb-ekyc-sim attest --key DIR/ekyc-dev.pem --nonce N --id ID
 *       [--score 97.5] [--liveness pass|fail] [--iat S] [--exp S]
 *       [--iss ID] [--kid KID] [--actions a,b] [--alg ES256]
 *       prints the JWS and a newline on stdout. iat defaults to now, exp to
 *       iat + 300.
 *
 * Test aids for hostile cases (never accepted by the verifier):
 *   --alg none                              unsigned token ("h.p.")
 *   --alg HS256 --hmac-key-file PUB.pem     HMAC-SHA256 keyed with the
 *                                           public key PEM: the classic
 *                                           algorithm-confusion attack
 * Nothing but the token ever goes to stdout; errors go to stderr with exit
 * status 2 (usage) or 1 (failure). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth/attestation.h"
#include "auth/jws.h"

#define PATH_MAX_LEN 1024

static int usage(void)
{
    fputs("usage: fxb-ekyc-sim keygen DIR\n"
          "       fxb-ekyc-sim attest --key PEM --nonce N --id ID [--score S]\n"
          "           [--liveness pass|fail] [--iat S] [--exp S] [--iss ISS] [--kid KID]\n"
          "           [--actions a,b] [--alg ES256|none|HS256] [--hmac-key-file PEM]\n",
          stderr);
    return 2;
}

/* Writes len bytes to path with mode (temp file + rename, so a reader never
 * sees half a key). */
static int write_file(const char *path, const char *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX_LEN + 8];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    int rc = fchmod(fd, mode);
    size_t off = 0;
    while (rc == 0 && off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = -1;
        else
            off += (size_t)w;
    }
    if (rc == 0)
        rc = fsync(fd);
    if (close(fd) != 0)
        rc = -1;
    if (rc == 0)
        rc = rename(tmp, path);
    if (rc != 0)
        unlink(tmp);
    return rc;
}

/* The PEM text of pkey (private when priv) in a malloc'd buffer. */
static char *pem_of(EVP_PKEY *pkey, int priv, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return NULL;
    int ok = priv ? PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)
                  : PEM_write_bio_PUBKEY(bio, pkey);
    char *data = NULL;
    long n = ok ? BIO_get_mem_data(bio, &data) : 0;
    char *out = n > 0 ? malloc((size_t)n) : NULL;
    if (out != NULL) {
        memcpy(out, data, (size_t)n);
        *len = (size_t)n;
    }
    BIO_free(bio);
    return out;
}

static int keygen(const char *dir)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "fxb-ekyc-sim: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char priv_path[PATH_MAX_LEN];
    char pub_path[PATH_MAX_LEN];
    if ((size_t)snprintf(priv_path, sizeof(priv_path), "%s/%s.pem", dir, FXB_ATTESTATION_DEV_KID) >=
            sizeof(priv_path) ||
        (size_t)snprintf(pub_path, sizeof(pub_path), "%s/%s%s", dir, FXB_ATTESTATION_DEV_KID,
                         FXB_ATTESTATION_PUB_SUFFIX) >= sizeof(pub_path)) {
        fputs("fxb-ekyc-sim: directory path too long\n", stderr);
        return 1;
    }
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    size_t priv_len = 0;
    size_t pub_len = 0;
    char *priv = pkey != NULL ? pem_of(pkey, 1, &priv_len) : NULL;
    char *pub = pkey != NULL ? pem_of(pkey, 0, &pub_len) : NULL;
    int rc = 1;
    if (priv == NULL || pub == NULL)
        fputs("fxb-ekyc-sim: cannot generate a P-256 key\n", stderr);
    else if (write_file(priv_path, priv, priv_len, 0600) != 0)
        fprintf(stderr, "fxb-ekyc-sim: cannot write %s: %s\n", priv_path, strerror(errno));
    else if (write_file(pub_path, pub, pub_len, 0644) != 0)
        fprintf(stderr, "fxb-ekyc-sim: cannot write %s: %s\n", pub_path, strerror(errno));
    else
        rc = 0;
    if (priv != NULL) {
        OPENSSL_cleanse(priv, priv_len);
        free(priv);
    }
    free(pub);
    EVP_PKEY_free(pkey);
    return rc;
}

static int parse_int64(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(FXB_KEY_FILE_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, FXB_KEY_FILE_MAX, f) : 0;
    fclose(f);
    if (buf == NULL || n == 0) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

typedef struct attest_opts {
    const char *key;
    const char *nonce;
    const char *id;
    const char *liveness;
    const char *iss;
    const char *kid;
    const char *actions;
    const char *alg;
    const char *hmac_key_file;
    double score;
    int64_t iat;
    int64_t exp;
    int have_iat;
    int have_exp;
} attest_opts;

static json_t *payload_json(const attest_opts *o, const char *id_hash)
{
    json_t *p = json_pack("{s:s, s:I, s:I, s:s, s:s, s:s, s:f}", "iss", o->iss, "iat",
                          (json_int_t)o->iat, "exp", (json_int_t)o->exp, "nonce", o->nonce,
                          "id_hash", id_hash, "liveness", o->liveness, "score", o->score);
    if (p == NULL || o->actions == NULL)
        return p;
    json_t *arr = json_array();
    char *copy = strdup(o->actions);
    if (arr == NULL || copy == NULL) {
        json_decref(arr);
        free(copy);
        json_decref(p);
        return NULL;
    }
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
        json_array_append_new(arr, json_string(t));
    free(copy);
    json_object_set_new(p, "actions", arr);
    return p;
}

/* "<b64 header>.<b64 payload>" of two JSON texts, malloc'd, with room for
 * a signature of up to 128 base64url characters after it. */
static char *signing_input(const char *h, const char *p, size_t *n)
{
    size_t hn = strlen(h);
    size_t pn = strlen(p);
    char *out = malloc(FXB_B64URL_ENCODED_CAP(hn) + FXB_B64URL_ENCODED_CAP(pn) + 130);
    if (out == NULL)
        return NULL;
    size_t o = fxb_b64url_encode((const unsigned char *)h, hn, out);
    out[o++] = '.';
    o += fxb_b64url_encode((const unsigned char *)p, pn, out + o);
    *n = o;
    return out;
}

static char *make_token(const attest_opts *o, const char *header, const char *payload)
{
    if (strcmp(o->alg, "ES256") == 0) {
        FILE *f = fopen(o->key, "rb");
        if (f == NULL) {
            fprintf(stderr, "fxb-ekyc-sim: cannot open %s: %s\n", o->key, strerror(errno));
            return NULL;
        }
        EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        if (!fxb_jws_key_is_p256(pkey)) {
            fprintf(stderr, "fxb-ekyc-sim: %s is not a P-256 private key\n", o->key);
            EVP_PKEY_free(pkey);
            return NULL;
        }
        char *tok = fxb_jws_es256_compact(pkey, header, payload);
        EVP_PKEY_free(pkey);
        return tok;
    }
    size_t n = 0;
    char *tok = signing_input(header, payload, &n);
    if (tok == NULL)
        return NULL;
    tok[n++] = '.';
    tok[n] = '\0';
    if (strcmp(o->alg, "none") == 0)
        return tok;
    /* HS256 keyed with a file's bytes (the public key PEM, for the attack). */
    size_t klen = 0;
    char *k = read_text(o->hmac_key_file, &klen);
    unsigned char mac[32];
    unsigned int mlen = 0;
    if (k == NULL ||
        HMAC(EVP_sha256(), k, (int)klen, (const unsigned char *)tok, n - 1, mac, &mlen) == NULL) {
        fprintf(stderr, "fxb-ekyc-sim: cannot HMAC with %s\n", o->hmac_key_file);
        free(k);
        free(tok);
        return NULL;
    }
    free(k);
    fxb_b64url_encode(mac, mlen, tok + n);
    return tok;
}

static int attest(int argc, char **argv)
{
    attest_opts o = {.liveness = "pass",
                     .iss = "ekyc-sim",
                     .kid = FXB_ATTESTATION_DEV_KID,
                     .alg = "ES256",
                     .score = 97.5};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (val == NULL)
            return usage();
        i++;
        if (strcmp(a, "--key") == 0) {
            o.key = val;
        } else if (strcmp(a, "--nonce") == 0) {
            o.nonce = val;
        } else if (strcmp(a, "--id") == 0) {
            o.id = val;
        } else if (strcmp(a, "--liveness") == 0) {
            o.liveness = val;
        } else if (strcmp(a, "--iss") == 0) {
            o.iss = val;
        } else if (strcmp(a, "--kid") == 0) {
            o.kid = val;
        } else if (strcmp(a, "--actions") == 0) {
            o.actions = val;
        } else if (strcmp(a, "--alg") == 0) {
            o.alg = val;
        } else if (strcmp(a, "--hmac-key-file") == 0) {
            o.hmac_key_file = val;
        } else if (strcmp(a, "--score") == 0) {
            char *end = NULL;
            o.score = strtod(val, &end);
            if (end == val || *end != '\0')
                return usage();
        } else if (strcmp(a, "--iat") == 0) {
            if (parse_int64(val, &o.iat) != 0)
                return usage();
            o.have_iat = 1;
        } else if (strcmp(a, "--exp") == 0) {
            if (parse_int64(val, &o.exp) != 0)
                return usage();
            o.have_exp = 1;
        } else {
            return usage();
        }
    }
    int es = strcmp(o.alg, "ES256") == 0;
    int hs = strcmp(o.alg, "HS256") == 0;
    if (o.nonce == NULL || o.id == NULL || (es && o.key == NULL) ||
        (hs && o.hmac_key_file == NULL) || (!es && !hs && strcmp(o.alg, "none") != 0))
        return usage();
    if (!o.have_iat)
        o.iat = (int64_t)time(NULL);
    if (!o.have_exp)
        o.exp = o.iat + 300;
    char id_hash[FXB_ATTESTATION_ID_HASH_LEN + 1];
    if (!fxb_attestation_id_hash(o.id, id_hash)) {
        fputs("fxb-ekyc-sim: --id must be 18 characters\n", stderr);
        return 2;
    }
    json_t *h = json_pack("{s:s, s:s, s:s}", "alg", o.alg, "typ", "JWT", "kid", o.kid);
    json_t *p = payload_json(&o, id_hash);
    char *hs_text = h != NULL ? json_dumps(h, JSON_COMPACT) : NULL;
    char *ps_text = p != NULL ? json_dumps(p, JSON_COMPACT) : NULL;
    json_decref(h);
    json_decref(p);
    char *tok = NULL;
    if (hs_text != NULL && ps_text != NULL)
        tok = make_token(&o, hs_text, ps_text);
    free(hs_text);
    free(ps_text);
    if (tok == NULL) {
        fputs("fxb-ekyc-sim: cannot make the attestation\n", stderr);
        return 1;
    }
    int rc = printf("%s\n", tok) < 0 || fflush(stdout) != 0 ? 1 : 0;
    free(tok);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "keygen") == 0)
        return keygen(argv[2]);
    if (argc >= 2 && strcmp(argv[1], "attest") == 0)
        return attest(argc - 2, argv + 2);
    return usage();
}
