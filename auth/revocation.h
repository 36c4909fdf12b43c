/* Session revocation that takes effect at once without a Redis round trip
 * per call. A revoked session id is written to the sorted set
 * fxb:revoked (score = when the entry may be forgotten: after the longest
 * access-token lifetime) and published on fxb:revocations. Each server keeps
 * the set in memory, fed by a subscriber thread; the instance that revokes
 * adds the id locally before it answers, so its own next call already fails.
 * While the subscriber is not connected and synced, checks fall back to one
 * Redis read per call (fail closed), never to "not revoked". */
#ifndef FXB_REVOCATION_H
#define FXB_REVOCATION_H

#include <stdbool.h>
#include <stdint.h>

#include "server/status.h"
#include "store/store.h"

#define FXB_REVOKED_KEY     "fxb:revoked"
#define FXB_REVOKED_CHANNEL "fxb:revocations"
/* Entries must outlive every access token of the session. */
#define FXB_REVOCATION_KEEP_MS (20LL * 60 * 1000)
#define FXB_REVOCATION_MAX     1000000

typedef struct fxb_revocation fxb_revocation;

/* Starts the subscriber thread on its own connection to url. NULL with *err
 * on a bad URL or out of memory; an unreachable Redis is retried in the
 * background (checks are degraded meanwhile). */
fxb_revocation *fxb_revocation_start(const char *url, int connect_timeout_ms, fxb_err *err);

/* Stops the thread and frees everything. */
void fxb_revocation_stop(fxb_revocation *r);

/* Answer of a check. */
typedef enum fxb_revoked {
    FXB_REVOKED_NO = 0,
    FXB_REVOKED_YES = 1,
    FXB_REVOKED_UNKNOWN = 2, /* not synced: ask the store */
} fxb_revoked;

/* Thread-safe, lock-light lookup. */
fxb_revoked fxb_revocation_check(fxb_revocation *r, const char *sid, int64_t now_ms);

/* Records a revocation: local set first, then the store (sorted set +
 * publish) so other servers learn it. FXB_OK, or the store's error (the
 * local entry stays). */
fxb_code fxb_revocation_publish(fxb_revocation *r, fxb_store *s, const char *sid, int64_t now_ms,
                                fxb_err *err);

/* True while the subscriber is connected and has loaded the set. */
bool fxb_revocation_synced(fxb_revocation *r);

/* Number of ids held in memory (tests, metrics). */
uint64_t fxb_revocation_size(fxb_revocation *r);

#endif
