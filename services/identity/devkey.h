/* The development eKYC provider key pair, made the way `fxb-ekyc-sim
 * keygen` makes it, so that a development server can verify the
 * simulator's attestations out of the box (as it generates its own token
 * key). Never used in production: the verifier refuses the dev kid there. */
#ifndef FXB_IDENTITY_DEVKEY_H
#define FXB_IDENTITY_DEVKEY_H

#include "server/status.h"

/* Creates dir (0700) if needed and writes dir/ekyc-dev.pem (PKCS#8, 0600)
 * and dir/ekyc-dev.pub.pem (0644) unless the public key exists already.
 * Returns FXB_OK, or FXB_INTERNAL (reason EKYC_DEV_KEY_FAILED) naming the
 * path that could not be written. */
fxb_code fxb_ekyc_dev_keygen(const char *dir, fxb_err *err);

#endif
