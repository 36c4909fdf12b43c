/* The subjects' benefit lists ({p:<pid>}:benefits / {e:<eid>}:benefits,
 * entitlement.h), written after a full match instead of during it.
 *
 * A full match of a million subjects (fxb_grantout_run) would otherwise
 * write a million list entries, each a new key, in the same burst as the
 * entitlements and the notices: about a quarter of Redis's work in that
 * burst. The list is derived data (readers trust {b:<pid>}:ent), so the
 * grant-out defers it (FXB_ENT_DEFER_LISTS): the match script records the
 * subjects it created in the policy's unlisted stream, in the same script
 * as the entitlements (so nothing is lost in a crash), and the grant-out
 * names the policy in FXB_LISTS_PENDING. Then:
 *   - the engine writes the list entries in slices between the changes it
 *     follows (fxb_lists_work), deleting each stream entry once its list
 *     entries are written, and takes the policy out of FXB_LISTS_PENDING
 *     when its stream is empty;
 *   - until then a reader finds what is not yet listed: ListMyEntitlements
 *     writes the subject's own entries first (fxb_lists_repair: one
 *     SMEMBERS, empty but for the minutes after a large match), and the
 *     engine counts every pending policy as one the subject may hold
 *     (fxb_lists_pending_has) when it decides what a profile change ends.
 *
 * Who writes FXB_LISTS_PENDING: the grant-out adds the policy after every
 * batch (fxb_lists_pending_cmd, in the batch's round trip, after its
 * script); fxb_lists_work removes it when it finds the stream empty and then
 * looks once more (XLEN), adding it back when a batch came in between. A
 * batch whose SADD was lost (a connection that broke after the script) is
 * found by fxb_lists_recover, which the engine runs over its policies when
 * it builds and at every re-check. */
#ifndef FXB_BENEFIT_LISTS_H
#define FXB_BENEFIT_LISTS_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "server/status.h"
#include "store/store.h"

/* set: policy ids whose unlisted stream may hold entries */
#define FXB_LISTS_PENDING "fxb:benefit:unlisted"

/* Stream entries fxb_lists_work takes per round of one policy. */
#define FXB_LISTS_ROUND 16

/* The SADD naming policy_id in FXB_LISTS_PENDING, in argv (3 slots, which
 * must outlive *cmd): for fxb_ent_match_batch_with's extra commands. */
void fxb_lists_pending_cmd(const char *argv[3], const char *policy_id, fxb_store_cmd *cmd);

typedef struct fxb_lists_progress {
    size_t entries; /* stream entries done (listed and deleted) */
    size_t listed;  /* list entries written (ZADD NX: new or already there) */
    size_t dropped; /* malformed stream entries deleted, and subjects in
                       them that are not p / e + 24 hex */
    size_t failed;  /* list entries Redis refused (a key of another type) */
    bool more;      /* work is left: call again */
} fxb_lists_progress;

/* One slice: at most max_entries (>= 1) stream entries over the pending
 * policies, each one pipeline of its subjects' ZADD NX (score at_ms,
 * member the policy id) and the XDEL of the entry. A transient failure
 * returns its code and leaves the entry for the next call (the ZADDs are
 * idempotent). *out receives what was done. */
fxb_code fxb_lists_work(fxb_store *s, size_t max_entries, fxb_lists_progress *out, fxb_err *err);

/* Writes the list entries of subject's entitlements in pending policies
 * (HGET {b:<pid>}:ent, then ZADD NX with the entitlement's created_ms), so
 * that its list is whole before it is read. *added (may be NULL) receives
 * the ZADDs made. One SMEMBERS when nothing is pending. INVALID_ARGUMENT
 * SUBJECT_ID_INVALID for a subject not p / e + 24 hex. */
fxb_code fxb_lists_repair(fxb_store *s, const char *subject, size_t *added, fxb_err *err);

/* Adds to FXB_LISTS_PENDING each of the n policies whose unlisted stream
 * is not empty (one pipeline of XLEN, one SADD). *found (may be NULL)
 * receives how many. Ids that are not policy ids are skipped. */
fxb_code fxb_lists_recover(fxb_store *s, const char *const *policy_ids, size_t n, size_t *found,
                           fxb_err *err);

/* True when an SMEMBERS reply of FXB_LISTS_PENDING names policy_id. */
bool fxb_lists_pending_has(const redisReply *members, const char *policy_id);

#endif
