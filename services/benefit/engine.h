/* The matching engine (issue 7, 免申即享): keeps every profile of both
 * subject types in an in-memory matching index (index.h) and grants the
 * published policies (policy.h) to whoever their rules hold for
 * (entitlement.h), continuously:
 *   - on publish: a full match of the policy over all subjects of its type;
 *   - on every profile change (the fxb:profile:changes stream, profile.h):
 *     the subject's profile is re-read, the index updated, and every
 *     published policy of its type re-evaluated for it (eligible: matched;
 *     no longer eligible: its live entitlements ended);
 *   - on close: entitlements not yet granted end (POLICY_CLOSED); closes
 *     are queued in fxb:benefit:closing (policy.h), so one made while no
 *     engine leads is processed when one does;
 *   - periodically (FXB_BENEFIT_RECHECK_MS): a full re-match of every
 *     published policy against its entitlements — grants what became true
 *     without a profile change (ages, dates), ends what is no longer met,
 *     ends not-yet-granted entitlements of policies past their window
 *     (POLICY_EXPIRED), grants held ones when room freed.
 * Notices go to the subjects' inboxes (notice.h).
 *
 * One engine works per Redis: engines of several fxb-server processes elect
 * a leader with a lease (fxb:benefit:engine:leader, SET NX PX, renewed);
 * the others wait (no index held) and take over when the lease lapses.
 * The leader builds its index by SCAN of the profile hashes after noting
 * the change feed's last id, then follows the feed from that id (so no
 * change is missed), then runs a full match of every published policy. The
 * feed is capped: when entries were trimmed before the engine applied them
 * (XINFO STREAM's entries-added, read with every XREAD), the engine
 * rebuilds its index and re-checks every policy.
 *
 * The engine runs on its own thread with its own Redis connection; it never
 * holds a worker. A full match writes its grants and notices through
 * fxb_grantout_run (grantout.h) over that connection and FXB_BENEFIT_WRITERS
 * - 1 more, one short-lived thread each; the subjects' list entries it
 * defers (lists.h) the engine writes afterwards, a slice (about 8,000
 * entries) between two looks at the feed, so that changes keep being
 * applied while a million entries are written. */
#ifndef FXB_BENEFIT_ENGINE_H
#define FXB_BENEFIT_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "server/config.h"
#include "server/status.h"

#define FXB_BENEFIT_LEADER_KEY "fxb:benefit:engine:leader"

/* Starts the engine thread (process-wide, idempotent). cfg->redis_url is
 * used; recheck_ms is the periodic re-check interval. */
fxb_code fxb_engine_start(const fxb_config *cfg, int recheck_ms, fxb_err *err);

/* Stops and joins the thread, frees the index. Idempotent. */
void fxb_engine_stop(void);

typedef struct fxb_engine_status {
    bool running, leader, ready;   /* ready: index built, feed followed */
    uint64_t persons, enterprises; /* subjects in the index */
    uint32_t policies;             /* published policies loaded */
    char feed_id[48];              /* last change feed id applied */
    int64_t last_recheck_ms;
} fxb_engine_status;

void fxb_engine_status_get(fxb_engine_status *out);

/* For tests and operations (DiagService/SyncBenefitEngine): waits until the
 * leader engine of THIS process has applied the change feed up to its end as
 * of the call and has reloaded the policies as of the call (running any
 * publish / close work they need), and, with recheck, has run one full
 * re-check pass started after the call; either way with every list entry
 * owed by then written (lists.h). FAILED_PRECONDITION
 * ENGINE_NOT_LEADER when this process's engine is not the leader (or not
 * running); DEADLINE_EXCEEDED ENGINE_BUSY after timeout_ms. */
fxb_code fxb_engine_sync(bool recheck, int timeout_ms, fxb_engine_status *out, fxb_err *err);

#endif
