/* The development eKYC key pair (see devkey.h). */
#include "services/identity/devkey.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/attestation.h"

#define PATH_MAX_LEN 1024

/* Writes len bytes to path with mode, through a temp file and rename. */
static int write_key_file(const char *path, const char *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX_LEN + 8];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    int rc = fchmod(fd, mode);
    if (rc == 0 && write(fd, data, len) != (ssize_t)len)
        rc = -1;
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

/* The PEM of pkey (private as PKCS#8 when priv) in a malloc'd buffer. */
static char *key_pem(EVP_PKEY *pkey, bool priv, size_t *len)
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

fxb_code fxb_ekyc_dev_keygen(const char *dir, fxb_err *err)
{
    char priv_path[PATH_MAX_LEN], pub_path[PATH_MAX_LEN];
    if ((size_t)snprintf(priv_path, sizeof priv_path, "%s/%s.pem", dir, FXB_ATTESTATION_DEV_KID) >=
            sizeof priv_path ||
        (size_t)snprintf(pub_path, sizeof pub_path, "%s/%s%s", dir, FXB_ATTESTATION_DEV_KID,
                         FXB_ATTESTATION_PUB_SUFFIX) >= sizeof pub_path)
        return fxb_err_set(err, FXB_INTERNAL, "EKYC_DEV_KEY_FAILED", "",
                           "key directory path too long");
    if (access(pub_path, F_OK) == 0)
        return FXB_OK;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return fxb_err_set(err, FXB_INTERNAL, "EKYC_DEV_KEY_FAILED", "", "cannot create %s: %s",
                           dir, strerror(errno));
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    size_t priv_len = 0, pub_len = 0;
    char *priv = pkey ? key_pem(pkey, true, &priv_len) : NULL;
    char *pub = pkey ? key_pem(pkey, false, &pub_len) : NULL;
    fxb_code rc = FXB_OK;
    if (priv == NULL || pub == NULL)
        rc = fxb_err_set(err, FXB_INTERNAL, "EKYC_DEV_KEY_FAILED", "",
                         "cannot generate a P-256 key");
    else if (write_key_file(priv_path, priv, priv_len, 0600) != 0 ||
             write_key_file(pub_path, pub, pub_len, 0644) != 0)
        rc = fxb_err_set(err, FXB_INTERNAL, "EKYC_DEV_KEY_FAILED", "", "cannot write %s: %s",
                         priv_path, strerror(errno));
    if (priv != NULL) {
        OPENSSL_cleanse(priv, priv_len);
        free(priv);
    }
    free(pub);
    EVP_PKEY_free(pkey);
    return rc;
}
