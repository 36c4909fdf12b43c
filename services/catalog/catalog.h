/* fxb.v1.CatalogService (proto/fxb/v1/catalog.proto) and the catalogue as
 * the other services read it (filing checks applications against the guide
 * version they were drafted on). The key schema is documented in
 * catalog.c; `fxb:item:<code>` field `category` is also read by the proxy
 * scope check (auth/grant.c). */
#ifndef FXB_CATALOG_SERVICE_H
#define FXB_CATALOG_SERVICE_H

#include <stdint.h>

#include "fxb/v1/catalog.pb-c.h"
#include "server/handler.h"
#include "store/store.h"

/* The item of code with the guide of version (0 = current), unpacked into
 * the arena: *out->guide is set. NOT_FOUND ITEM_NOT_FOUND /
 * GUIDE_VERSION_NOT_FOUND, INVALID_ARGUMENT ITEM_CODE_INVALID, or a store
 * error. */
fxb_code fxb_catalog_get(fxb_store *s, fxb_arena *a, const char *code, uint32_t version,
                         Fxb__V1__ServiceItem **out, fxb_err *err);

/* Empties the process's cache of built items (fxb_catalog_get keeps them
 * while fxb:catalog:rev does not move); for shutdown and tests. */
void fxb_catalog_cache_clear(void);

/* The bundle of code, unpacked into the arena. NOT_FOUND BUNDLE_NOT_FOUND. */
fxb_code fxb_catalog_bundle(fxb_store *s, fxb_arena *a, const char *code, Fxb__V1__Bundle **out,
                            fxb_err *err);

extern const fxb_service fxb_catalog_service;

#endif
