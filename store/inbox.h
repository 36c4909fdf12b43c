/* Inboxes: one durable Redis stream of notices per subject (a person's
 * account, or an enterprise), newest last, capped at FXB_INBOX_MAX entries
 * (XADD MAXLEN ~). Read state is one stream id per subject: every message
 * up to it is read.
 *
 * Keys:
 *   {u:<id>}:inbox / {e:<eid>}:inbox       stream: kind, title, body, ref, at_ms
 *   {u:<id>}:inbox:read / {e:<eid>}:inbox:read   string: last read stream id
 * Titles and bodies are composed by the server for the subject itself
 * (zh-CN); they never carry another person's personal data (masked phones
 * and enterprise names only). The InboxService (services/inbox) reads
 * them; services/inbox/push.c delivers them live (InboxService.Subscribe).
 *
 * Every append also notifies, in the same round trip as its XADD:
 *   fxb:inbox:new                 pub/sub channel, so every fxb-server wakes
 *                                 its subscriptions of the subjects named:
 *                                 the subject id (fxb_inbox_append), or the
 *                                 subjects of one round trip of a batch
 *                                 separated by "\n" (fxb_inbox_append_batch;
 *                                 ids never contain it). Subscribers split
 *                                 the payload on "\n"
 *   fxb:push:online:<subject>     read: a counter of live subscriptions of
 *                                 the subject on any server (push.c keeps
 *                                 it); one GET per fxb_inbox_append, none
 *                                 for a batch (see the outbox)
 *   fxb:push:outbox               stream of notices for the vendor push
 *                                 adaptor, which delivers them to offline
 *                                 devices (capped ~ FXB_PUSH_OUTBOX_MAX).
 *                                 Two shapes of entry:
 *                                 single (fxb_inbox_append): subject,
 *                                   message_id, kind, title; written only
 *                                   when the subject was offline (counter
 *                                   absent or not positive) at write time;
 *                                 multicast (fxb_inbox_append_batch,
 *                                   always, even for one subject): kind,
 *                                   title, n (decimal, 1..
 *                                   FXB_PUSH_MULTICAST_MAX), subjects (n
 *                                   ids joined by "\n"), message_ids (their
 *                                   n inbox ids, same order): one entry per
 *                                   (kind, title) of a round trip's
 *                                   notices, in order of first appearance,
 *                                   naming EVERY recipient of the round
 *                                   trip, online or not, in the batch's
 *                                   order. Presence is decided at send
 *                                   time: the adaptor (in production the
 *                                   vendor push adaptor's own consumer
 *                                   group; in development the sink of
 *                                   services/inbox/push.c) skips a subject
 *                                   whose fxb:push:online:<subject> counter
 *                                   is > 0 when it sends (its device got
 *                                   the notice live). Vendor push services
 *                                   take one message to many devices, so a
 *                                   bulk notice costs Redis one entry per
 *                                   round trip, not one per subject, and no
 *                                   presence read. An entry with n,
 *                                   subjects or message_ids is multicast */
#ifndef FXB_STORE_INBOX_H
#define FXB_STORE_INBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "server/status.h"
#include "store/store.h"

#define FXB_INBOX_MAX       1000
#define FXB_INBOX_KIND_MAX  32
#define FXB_INBOX_TITLE_MAX 200
#define FXB_INBOX_BODY_MAX  1000
#define FXB_INBOX_REF_MAX   64

#define FXB_INBOX_CHANNEL      "fxb:inbox:new"
#define FXB_PUSH_ONLINE_PREFIX "fxb:push:online:"
#define FXB_PUSH_OUTBOX        "fxb:push:outbox"
#define FXB_PUSH_OUTBOX_MAX    100000
/* Subjects in one multicast outbox entry at most (a round trip of a
 * batch). */
#define FXB_PUSH_MULTICAST_MAX 1000

/* "u" for an account id, "e" for an enterprise id ("e" + 24 lower-case
 * hex); NULL when subject is neither. */
const char *fxb_inbox_tag(const char *subject);

/* "{<tag>:<subject>}:inbox" into buf; false when subject is invalid or buf
 * too small. */
bool fxb_inbox_key(char *buf, size_t cap, const char *subject);

/* Appends a notice. kind: 1..FXB_INBOX_KIND_MAX of [a-z0-9._]; title
 * 1..FXB_INBOX_TITLE_MAX bytes, body 0..FXB_INBOX_BODY_MAX (NULL = ""), ref
 * 0..FXB_INBOX_REF_MAX (NULL = ""), all valid UTF-8 (they go out as proto3
 * strings). On success the new stream id is written
 * to id_out when not NULL (at least 32 bytes). INVALID_ARGUMENT reason
 * INBOX_MESSAGE_INVALID naming the field, or a store error. The notice is
 * published on FXB_INBOX_CHANNEL and, when the subject is offline, queued
 * in FXB_PUSH_OUTBOX; once the XADD succeeded those two are best effort (a
 * failure counts in fxb_store_error_count and the call still succeeds: the
 * notice is kept either way, and a retry would duplicate it). */
fxb_code fxb_inbox_append(fxb_store *s, const char *subject, const char *kind, const char *title,
                          const char *body, const char *ref, int64_t now_ms, char *id_out,
                          fxb_err *err);

/* One notice of a batch (fields as for fxb_inbox_append). */
typedef struct fxb_inbox_msg {
    const char *subject, *kind, *title, *body, *ref;
} fxb_inbox_msg;

/* Appends n notices in pipelined round trips (the XADDs of
 * fxb_inbox_append, up to a thousand per round trip, with one PUBLISH per
 * round trip, and one multicast outbox entry per (kind, title) of the
 * round trip's appended notices, naming every recipient, sent with the
 * next one, the last ones by fxb_store_send without waiting for their
 * replies; no presence read: the push adaptor skips online subjects when
 * it sends): for bulk notices (benefits granted to many subjects). Every
 * message is validated first (INVALID_ARGUMENT INBOX_MESSAGE_INVALID, nothing
 * written). *appended receives how many XADDs succeeded (a store failure
 * part-way returns the error with the count so far). */
fxb_code fxb_inbox_append_batch(fxb_store *s, const fxb_inbox_msg *msgs, size_t n, int64_t now_ms,
                                size_t *appended, fxb_err *err);

#endif
