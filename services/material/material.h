/* fxb.v1.MaterialService (proto/fxb/v1/material.proto): the material wallet
 * of a subject (an account, or an enterprise): uploads through a blob store
 * and electronic licences; and the wallet as the filing service reads it.
 * The key schema is documented in material.c, the blob store in
 * store/blob.h. */
#ifndef FXB_MATERIAL_SERVICE_H
#define FXB_MATERIAL_SERVICE_H

#include <stdint.h>

#include "fxb/v1/material.pb-c.h"
#include "server/handler.h"
#include "store/crypto.h"
#include "store/store.h"

#define FXB_WALLET_MAX 200

typedef struct fxb_material_deps {
    const fxb_crypto *crypto; /* licence numbers are sealed */
    const char *data_dir;     /* blobs under <data_dir>/blobs */
    uint64_t max_upload_bytes;
} fxb_material_deps;

void fxb_material_service_init(const fxb_material_deps *deps);

/* One material of subject's wallet, unpacked into the arena. NOT_FOUND
 * MATERIAL_NOT_FOUND (also for another subject's id), or a store error. */
fxb_code fxb_wallet_get(fxb_store *s, fxb_arena *a, const char *subject, const char *material_id,
                        Fxb__V1__Material **out, fxb_err *err);

/* Every material of subject's wallet, newest first (at most
 * FXB_WALLET_MAX), unpacked into the arena. */
fxb_code fxb_wallet_list(fxb_store *s, fxb_arena *a, const char *subject, Fxb__V1__Material ***out,
                         size_t *n, fxb_err *err);

/* Adds an electronic licence to subject's wallet (the number sealed and
 * masked) and returns its material id in id_out (FXB_ID_MAX + 1 bytes).
 * Used by fxb-admin licence issue and by the filing service when an
 * application completes with a licence as its result. */
typedef struct fxb_licence {
    const char *type;   /* e.g. "household_register": [a-z0-9_]{1,40} */
    const char *name;   /* 居民户口簿 */
    const char *number; /* the licence number (personal data) */
    const char *issuer;
    int64_t valid_until_ms;          /* 0 = no end */
    const char *source_application;  /* NULL when none */
} fxb_licence;

fxb_code fxb_wallet_add_licence(fxb_store *s, const fxb_crypto *c, const char *subject,
                                const fxb_licence *lic, int64_t now_ms, char *id_out, fxb_err *err);

extern const fxb_service fxb_material_service;

#endif
