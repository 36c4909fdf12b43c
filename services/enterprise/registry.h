/* The enterprise registry (市场主体登记) that names an enterprise's legal
 * representative, behind an interface: production plugs in the market
 * regulation authority's service; development and tests use the dev
 * registry, a file imported by `fxb-admin enterprise-registry import` into
 * Redis. Per credit code `fxb:entreg:dev:<code>` holds the enterprise name
 * (public business data) and only the blind index (label "id_number", the
 * identity service's) of the legal representative's ID number. */
#ifndef FXB_ENTERPRISE_REGISTRY_H
#define FXB_ENTERPRISE_REGISTRY_H

#include <stdio.h>

#include "auth/uscc.h"
#include "server/status.h"
#include "store/crypto.h"
#include "store/store.h"

/* Longest enterprise name (bytes of UTF-8): 100 CJK characters. */
#define FXB_ENTREG_NAME_MAX 300
/* Longest line of an import file. */
#define FXB_ENTREG_LINE_MAX 1024
/* The blind-index label of ID numbers, shared with the identity service:
 * the two indexes must be comparable. */
#define FXB_ENTREG_ID_LABEL "id_number"

/* reasons */
#define FXB_ENTREG_UNKNOWN "ENTERPRISE_UNKNOWN" /* NOT_FOUND */

/* What the registry holds about one enterprise. */
typedef struct fxb_entreg_record {
    char name[FXB_ENTREG_NAME_MAX + 1];
    char rep_idx[FXB_CRYPTO_INDEX_HEX_LEN + 1]; /* index of the legal rep's ID number */
} fxb_entreg_record;

/* A registry: lookup(self, s, code, out, err) answers FXB_OK and fills *out
 * when the registry holds the enterprise of code (a checked, upper-case
 * credit code); FXB_NOT_FOUND ENTERPRISE_UNKNOWN when it does not;
 * FXB_UNAVAILABLE when it cannot be asked. s is the calling worker's store
 * (implementations that do not use Redis ignore it). */
typedef struct fxb_entreg {
    fxb_code (*lookup)(const void *self, fxb_store *s, const char *code, fxb_entreg_record *out,
                       fxb_err *err);
    const void *self;
} fxb_entreg;

/* The dev registry over the store's imported records. */
fxb_entreg fxb_entreg_dev(void);

/* True when name is 1..FXB_ENTREG_NAME_MAX bytes of valid UTF-8 without
 * control characters and without leading or trailing spaces. */
bool fxb_entreg_name_valid(const char *name);

/* Imports records into the dev registry, one per line: CSV
 * `credit_code,name,legal_rep_id_number` (the name may contain commas: the
 * first and the last comma split) or an NDJSON object {"credit_code",
 * "name", "legal_rep_id_number"}; blank lines and lines starting with '#'
 * are skipped; codes are upper-cased. today_yyyymmdd is for the ID number
 * check. Valid lines are written (replacing an earlier record of the same
 * code); each bad line is reported on errs by line number and the failed
 * check only (never its content) and counted. Returns FXB_OK when the input
 * was read (see *bad), or a store/crypto error that stopped the import. */
fxb_code fxb_entreg_dev_import(fxb_store *s, const fxb_crypto *c, FILE *in, int64_t today_yyyymmdd,
                               FILE *errs, size_t *imported, size_t *bad, fxb_err *err);

#endif
