/* Benefit notices to the subjects' inboxes (store/inbox.h), in batches.
 * A person subject's notice goes to the account holding its verified
 * identity ({p:<pid>}:account); a person without an app account gets none
 * (the entitlement waits in its list for when it signs up and verifies). An
 * enterprise's goes to the enterprise inbox, which its legal representative
 * and staff with inbox.read read and subscribe to.
 *
 * Kinds: benefit.granted, benefit.awaiting (matched, the department
 * confirms), benefit.ended, benefit.paid. Titles and bodies are composed
 * here in zh-CN from the policy title and the amount; they carry no other
 * personal data. ref: the policy id. */
#ifndef FXB_BENEFIT_NOTICE_H
#define FXB_BENEFIT_NOTICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/arena.h"
#include "server/status.h"
#include "services/benefit/policy.h"
#include "store/store.h"

typedef enum fxb_benefit_notice_kind {
    FXB_NOTICE_GRANTED = 1,
    FXB_NOTICE_AWAITING,
    FXB_NOTICE_ENDED,
    FXB_NOTICE_PAID,
} fxb_benefit_notice_kind;

/* Notifies n subjects of the policy (kinds[i] for subjects[i]): one
 * pipeline resolving person accounts, then one pipelined batch of inbox
 * appends (fxb_inbox_append_batch). *sent receives the number of notices
 * written. Store errors are returned; the entitlements stand either way. */
fxb_code fxb_benefit_notify(fxb_store *s, const fxb_policy *p, const char *const *subjects,
                            const fxb_benefit_notice_kind *kinds, size_t n, int64_t now_ms,
                            size_t *sent, fxb_err *err);

/* The same in two steps, for a caller that reads the accounts in a round
 * trip it makes anyway (grantout.c: with the entitlement script):
 *
 * fxb_benefit_accounts_cmd builds in the arena the MGET of the
 * {p:<pid>}:account keys of the persons among subjects[0..n) (enterprises
 * need none) into *cmd; returns how many keys (0: no command to send) or
 * SIZE_MAX when out of memory.
 *
 * fxb_benefit_accounts_read sets inboxes[i] from that MGET's reply: the
 * account id (in the arena) for a person with a usable one, the subject
 * itself for an enterprise, NULL for a person without an account (no
 * notice: the entitlement waits in its list). False when the reply does
 * not have the MGET's shape (every person then NULL).
 *
 * fxb_benefit_notify_inboxes notifies subjects[i] (kinds[i]) in
 * inboxes[i], skipping NULL ones: fxb_inbox_append_batch per 1,000. */
size_t fxb_benefit_accounts_cmd(fxb_arena *a, const char *const *subjects, size_t n,
                                fxb_store_cmd *cmd);
bool fxb_benefit_accounts_read(fxb_arena *a, const char *const *subjects, size_t n,
                               const redisReply *mget, const char **inboxes);
fxb_code fxb_benefit_notify_inboxes(fxb_store *s, const fxb_policy *p, const char *const *subjects,
                                    const char *const *inboxes,
                                    const fxb_benefit_notice_kind *kinds, size_t n, int64_t now_ms,
                                    size_t *sent, fxb_err *err);

#endif
