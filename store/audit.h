/* The audit stream (DESIGN.md): every read of another person's data by an
 * officer or a proxy, and every sensitive change, appended to one Redis
 * stream with who, whom, what and why. Ids and action names only, never
 * personal data. Append-only: nothing here trims or deletes; retention is an
 * operator matter (export, then XTRIM by hand under the retention policy). */
#ifndef FXB_AUDIT_H
#define FXB_AUDIT_H

#include <stdint.h>

#include "server/status.h"
#include "store/store.h"

/* The stream key. */
#define FXB_AUDIT_STREAM "fxb:audit"
/* Longest action ("identity.unbind") and why text accepted. */
#define FXB_AUDIT_ACTION_MAX 64
#define FXB_AUDIT_WHY_MAX    256

/* XADD fxb:audit * actor <actor> subject <subject> action <action> why <why>
 * at_ms <now_ms>. actor and subject are account ids (fxb_key_id_valid), action
 * is 1..FXB_AUDIT_ACTION_MAX of [a-z0-9._], why 0..FXB_AUDIT_WHY_MAX bytes
 * (NULL = "") of printable text chosen by the caller, never user input
 * carrying personal data. Returns FXB_OK, FXB_INVALID_ARGUMENT (reason
 * AUDIT_RECORD_INVALID) naming the bad field, or a store error; on error
 * nothing was appended. */
fxb_code fxb_audit_append(fxb_store *s, const char *actor_account, const char *subject_account,
                          const char *action, const char *why, int64_t now_ms, fxb_err *err);

#endif
