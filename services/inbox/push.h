/* Live inbox push (InboxService.Subscribe): one subscriber thread per
 * process listens on FXB_INBOX_CHANNEL (store/inbox.h) and wakes the local
 * subscriptions of the subject named in each message; every subscription
 * reads its subject's stream from its last sent id on its own worker, so no
 * gap, no duplicate and no worker held while it waits. The thread also
 * keeps the presence counters fresh and, in development, stands for the
 * vendor push adaptor (outbox -> fxb:dev:push). Keys: see push.c. */
#ifndef FXB_INBOX_PUSH_H
#define FXB_INBOX_PUSH_H

#include <stdbool.h>

#include "server/config.h"
#include "server/handler.h"

/* Subscriptions of one subject on one server (a person's devices and
 * agents): one more is RESOURCE_EXHAUSTED TOO_MANY_SUBSCRIPTIONS. */
#define FXB_PUSH_MAX_PER_SUBJECT 64
/* Subscriptions on one server. */
#define FXB_PUSH_MAX_SUBSCRIPTIONS 200000

/* Starts the subscriber thread (its own Redis connections to
 * cfg->redis_url; an unreachable Redis is retried with backoff). Idempotent;
 * Subscribe also starts it on first use. FXB_OK, or INTERNAL when the
 * thread cannot start / INVALID_ARGUMENT for a bad URL (*err filled).
 * Refused (FAILED_PRECONDITION) after fxb_inbox_push_stop. */
fxb_code fxb_inbox_push_start(const fxb_config *cfg, fxb_err *err);

/* For shutdown, before the server drains: every open subscription ends with
 * UNAVAILABLE SHUTTING_DOWN, new ones are refused the same way, and the
 * thread is joined. Idempotent. Subscriptions unregister as their calls
 * end; what the registry still holds is freed with the last of them. */
void fxb_inbox_push_stop(void);

/* Number of subscriptions registered in this process (tests, metrics). */
size_t fxb_inbox_push_count(void);

/* --- the stream, for services/inbox/inbox.c --------------------------- */

/* Subscribe's on_start once the request is checked and the subject
 * resolved: subject (an account or enterprise id) is copied; after_id is a
 * valid "<ms>-<seq>" or "" (from the oldest kept message). Registers the
 * call, then replays what is after after_id. */
fxb_next fxb_inbox_push_subscribe(fxb_ctx *ctx, const char *subject, const char *after_id);

/* The remaining callbacks of Subscribe's fxb_stream_ops. */
fxb_next fxb_inbox_push_on_event(fxb_ctx *ctx, void *event);
fxb_next fxb_inbox_push_on_writable(fxb_ctx *ctx);
void fxb_inbox_push_on_end(fxb_ctx *ctx, bool cancelled);

#endif
