/* Demo data for development stores (migrations/demo/NNNN_name.lua, embedded
 * at build time). fxb-admin demo-load runs them; every script is idempotent
 * so loading twice changes nothing. Never run against production. */
#ifndef FXB_DEMO_H
#define FXB_DEMO_H

#include <stdio.h>

#include "store/migrate.h"

extern const fxb_migration fxb_demo_scripts[];
extern const size_t fxb_demo_scripts_count;

/* Runs every demo script in order, one line each to out (may be NULL).
 * Returns FXB_OK or the first failure. */
fxb_code fxb_demo_load(fxb_store *s, FILE *out, fxb_err *err);

#endif
