/* The catalogue import (fxb-admin catalog import) and what the catalogue's
 * modules share: the key names (schema in catalog.c) and the level names.
 * The import validates the whole JSON file first and writes nothing when it
 * holds an error; a guide that changed becomes a new version, an unchanged
 * one keeps its version, so a second run of the same file changes nothing. */
#ifndef FXB_CATALOG_IMPORT_H
#define FXB_CATALOG_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fxb/v1/catalog.pb-c.h"
#include "server/status.h"
#include "store/store.h"

#define FXB_CATALOG_KEY_ITEM_PREFIX   "fxb:item:" /* + code: hash; + ":guide:<v>" */
#define FXB_CATALOG_KEY_ITEMS         "fxb:items" /* sorted set of codes */
#define FXB_CATALOG_KEY_DEPARTMENTS   "fxb:departments"
#define FXB_CATALOG_KEY_CATEGORIES    "fxb:categories"
#define FXB_CATALOG_KEY_BUNDLE_PREFIX "fxb:bundle:" /* + code: packed fxb.v1.Bundle */
#define FXB_CATALOG_KEY_BUNDLES       "fxb:bundles"
#define FXB_CATALOG_KEY_REV           "fxb:catalog:rev"

/* Bounds of the file and of what it describes. */
#define FXB_CATALOG_FILE_MAX        (64u * 1024u * 1024u)
#define FXB_CATALOG_ITEMS_MAX       20000
#define FXB_CATALOG_DEPARTMENTS_MAX 2000
#define FXB_CATALOG_BUNDLES_MAX     1000
#define FXB_CATALOG_DEPT_MAX        32 /* department code: [a-z0-9-], like an officer's dept */
#define FXB_CATALOG_CODE_MAX        40 /* item and bundle codes: [A-Za-z0-9._-] */
#define FXB_CATALOG_SUMMARY_MAX     200

/* The catalogue's categories (the codes fxb_scope_category_known accepts),
 * sorted. */
#define FXB_CATALOG_CATEGORIES 12
extern const char *const fxb_catalog_categories[FXB_CATALOG_CATEGORIES];

/* "city", "county", "township", "village" for a level (NULL otherwise), and
 * back (ITEM_LEVEL_UNSPECIFIED for an unknown name). */
const char *fxb_catalog_level_name(Fxb__V1__ItemLevel level);
Fxb__V1__ItemLevel fxb_catalog_level_parse(const char *name);

/* True for 1..FXB_CATALOG_DEPT_MAX characters of [a-z0-9-]. */
bool fxb_catalog_dept_valid(const char *code);

typedef struct fxb_catalog_import_stats {
    size_t items;       /* in the file */
    size_t added;       /* new items (version 1) */
    size_t versioned;   /* existing items given a new guide version */
    size_t unchanged;   /* existing items whose guide is unchanged */
    size_t kept;        /* in the store, not in the file: kept as they are */
    size_t bundles;     /* in the file */
    size_t departments; /* in the file */
    size_t errors;      /* validation errors (nothing written when > 0) */
    bool changed;       /* the import changed something (fxb:catalog:rev moved) */
} fxb_catalog_import_stats;

/* Imports the catalogue in json (len bytes). Every validation error goes to
 * errs as one line "item <code>: <field>: <why>" (department, category,
 * bundle and file errors alike); then nothing is written and the call
 * returns FXB_INVALID_ARGUMENT reason CATALOG_INVALID. Otherwise each item
 * is written by one atomic script, kept items are listed on out as
 * "item <code>: kept, not in file" followed by the summary line, and new
 * guide versions carry published_at_ms = now_ms. Store errors stop the
 * import (the items already written stay: run it again). */
fxb_code fxb_catalog_import(fxb_store *s, const char *json, size_t len, int64_t now_ms, FILE *out,
                            FILE *errs, fxb_catalog_import_stats *st, fxb_err *err);

#endif
