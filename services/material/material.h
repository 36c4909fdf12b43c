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
#include "store/blob.h"
#include "store/crypto.h"
#include "store/store.h"

#define FXB_WALLET_MAX 200

/* fxb_err reasons of the wallet (besides the upload refusals of the proto). */
#define FXB_MATERIAL_NOT_FOUND     "MATERIAL_NOT_FOUND"    /* NOT_FOUND */
#define FXB_MATERIAL_IN_USE        "MATERIAL_IN_USE"       /* FAILED_PRECONDITION */
#define FXB_WALLET_FULL            "WALLET_FULL"           /* RESOURCE_EXHAUSTED */
#define FXB_LICENCE_INVALID        "LICENCE_INVALID"       /* INVALID_ARGUMENT */
#define FXB_LICENCE_NOT_REMOVABLE  "LICENCE_NOT_REMOVABLE" /* FAILED_PRECONDITION */
#define FXB_WALLET_SUBJECT_INVALID "SUBJECT_INVALID"       /* INVALID_ARGUMENT */
/* The field of a material's hash counting the open applications that use
 * it (the filing service HINCRBYs it; DeleteMaterial refuses while > 0). */
#define FXB_MATERIAL_IN_USE_FIELD "in_use"
/* Bounds of fxb_licence's fields. */
#define FXB_LICENCE_TYPE_MAX   40  /* bytes of [a-z0-9_] */
#define FXB_LICENCE_TEXT_MAX   100 /* characters of name and issuer */
#define FXB_LICENCE_NUMBER_MAX 64  /* bytes */

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
    int64_t valid_until_ms;         /* 0 = no end */
    const char *source_application; /* NULL when none */
} fxb_licence;

fxb_code fxb_wallet_add_licence(fxb_store *s, const fxb_crypto *c, const char *subject,
                                const fxb_licence *lic, int64_t now_ms, char *id_out, fxb_err *err);

/* "{<t>:<subject>}:material:<material_id>" (t "u" for an account, "e" for
 * an enterprise) in the arena: the hash of one material, for the filing
 * service's HINCRBY of FXB_MATERIAL_IN_USE_FIELD. NULL for an invalid
 * subject or id, or out of memory. */
char *fxb_wallet_material_key(fxb_arena *a, const char *subject, const char *material_id);

/* The blob store the uploads went to (NULL before fxb_material_service_init
 * or when it could not open the store): the filing service reads
 * materials' bytes through it by their sha256. */
const fxb_blob_store *fxb_material_blobs(void);

extern const fxb_service fxb_material_service;

#endif
