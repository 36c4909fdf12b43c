/* The population registry (人口库) that confirms a name belongs to an ID
 * number, behind an interface: production plugs in the national
 * verification service; development and tests use the dev registry, a file
 * imported by `fxb-admin registry import` into Redis. The dev registry keeps
 * no plaintext: per person `fxb:registry:dev:<index of the ID number>` holds
 * the blind index of ID number + name and the sealed household district. */
#ifndef FXB_IDENTITY_REGISTRY_H
#define FXB_IDENTITY_REGISTRY_H

#include <stdio.h>

#include "server/status.h"
#include "store/crypto.h"
#include "store/store.h"

/* Longest name accepted (bytes of UTF-8): 30 CJK characters, or long
 * transliterated minority names. */
#define FXB_REGISTRY_NAME_MAX 90
/* A household district is a six-digit GB/T 2260 region code. */
#define FXB_REGISTRY_DISTRICT_LEN 6
/* Longest line of an import file. */
#define FXB_REGISTRY_LINE_MAX 512

/* reasons */
#define FXB_REGISTRY_MISMATCH "REGISTRY_MISMATCH" /* FAILED_PRECONDITION */

/* A registry: check(self, s, name, id, district, err) answers FXB_OK and
 * the household district (FXB_REGISTRY_DISTRICT_LEN digits + NUL) when
 * the registry holds a person with exactly this name and ID number;
 * FXB_FAILED_PRECONDITION REGISTRY_MISMATCH when it does not (an unknown
 * number and a wrong name are not told apart); FXB_UNAVAILABLE when the
 * registry cannot be asked. id is a checked, normalised ID number. s is the
 * calling worker's store (implementations that do not use Redis ignore
 * it). Messages never contain the name or the number. */
typedef struct fxb_registry {
    fxb_code (*check)(const void *self, fxb_store *s, const char *name, const char *id,
                      char district[FXB_REGISTRY_DISTRICT_LEN + 1], fxb_err *err);
    const void *self;
} fxb_registry;

/* The dev registry over the store's imported records; c must outlive it. */
fxb_registry fxb_registry_dev(const fxb_crypto *c);

/* True when name is 1..FXB_REGISTRY_NAME_MAX bytes of valid UTF-8 without
 * control characters and without leading or trailing spaces. */
bool fxb_registry_name_valid(const char *name);

/* Imports records into the dev registry, one per line: CSV
 * `name,id_number,district` or an NDJSON object {"name", "id_number",
 * "district"}; blank lines and lines starting with '#' are skipped.
 * today_yyyymmdd is for the ID number check. Valid lines are written
 * (replacing an earlier record of the same number); each bad line is
 * reported on errs by line number only (never its content) and counted.
 * Returns FXB_OK when the input was read (see *bad), or a store/crypto
 * error that stopped the import. */
fxb_code fxb_registry_dev_import(fxb_store *s, const fxb_crypto *c, FILE *in,
                                 int64_t today_yyyymmdd, FILE *errs, size_t *imported, size_t *bad,
                                 fxb_err *err);

#endif
