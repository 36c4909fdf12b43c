/* Ordered, idempotent data migrations (migrations/NNNN_name.lua, embedded at
 * build time). The applied version lives in Redis under fxb_key_schema_version;
 * fxb-server refuses to start on a store behind or ahead of what it knows. */
#ifndef FXB_MIGRATE_H
#define FXB_MIGRATE_H

#include <stddef.h>
#include <stdio.h>

#include "store/store.h"

typedef struct fxb_migration {
    int version;        /* NNNN from the file name, strictly increasing */
    const char *name;   /* file name without .lua */
    const char *source; /* Lua; runs with KEYS[1] = the schema-version key */
} fxb_migration;

/* Generated from migrations/ by the build. */
extern const fxb_migration fxb_migrations[];
extern const size_t fxb_migrations_count;

/* Highest version this build knows (0 when there are no migrations). */
int fxb_migrate_latest(void);

/* Reads the applied version (0 when the key is absent). FXB_OK or an error
 * from the store. */
fxb_code fxb_migrate_applied(fxb_store *s, int *version, fxb_err *err);

/* Applies every pending migration in order, each atomically together with
 * the version bump; writes one line per migration to out (may be NULL).
 * Fails with FXB_FAILED_PRECONDITION when the store is ahead of this build. */
fxb_code fxb_migrate_apply(fxb_store *s, FILE *out, fxb_err *err);

/* Checks that the store is exactly at fxb_migrate_latest(). On mismatch
 * returns FXB_FAILED_PRECONDITION with a message telling the operator what
 * to do (run `fxb-admin migrate`, or upgrade fxb-server). */
fxb_code fxb_migrate_check(fxb_store *s, fxb_err *err);

#endif
