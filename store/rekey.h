/* Re-encryption of every sealed field under the active data key, for
 * `fxb-admin rekey` after `fxb-admin keys rotate-data`: once no value names
 * an old kid, that key can be retired. Safe to run while servers write:
 * each value is replaced only if it is still the one that was opened. */
#ifndef FXB_REKEY_H
#define FXB_REKEY_H

#include <stddef.h>
#include <stdio.h>

#include "server/status.h"
#include "store/crypto.h"
#include "store/store.h"

/* Keys asked of each SCAN call (a hint to Redis, not a bound). */
#define FXB_REKEY_BATCH_DEFAULT 500
#define FXB_REKEY_BATCH_MAX     10000

/* What a run did, counted per sealed value. */
typedef struct fxb_rekey_counts {
    size_t keys;    /* hashes examined */
    size_t rekeyed; /* sealed again under the active key */
    size_t current; /* already under the active key */
    size_t raced;   /* changed by someone else meanwhile: left as it is */
    size_t failed;  /* could not be opened (unknown kid, tampered, malformed) */
} fxb_rekey_counts;

/* Scans every hash that holds sealed fields (accounts' phone, the
 * accessibility relatives, identities, licence numbers in material wallets,
 * the dev population registry), opens
 * each value under the kid it names and seals it under the active one,
 * writing it back with a compare-and-set. A value that fails to open is
 * counted and reported on diag (key, field and reason, never the value),
 * and the run goes on. batch: keys per SCAN (1..FXB_REKEY_BATCH_MAX).
 * Returns FXB_OK when the scan completed (check counts->failed), or the
 * store error that stopped it, also in *err; *counts holds what was done. */
fxb_code fxb_rekey_run(fxb_store *st, const fxb_crypto *c, size_t batch, FILE *diag,
                       fxb_rekey_counts *counts, fxb_err *err);

#endif
