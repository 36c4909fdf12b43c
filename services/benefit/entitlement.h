/* Entitlements: one per (policy, subject), the outcome of matching a
 * policy's rule (policy.h) against a subject's profile.
 *
 * States (benefit.proto EntitlementState numbers):
 *   MATCHED (1)   eligible, not granted: waiting for the department's
 *                 confirmation (reason AWAITING_CONFIRMATION) or held because
 *                 the quota / budget is used up (QUOTA_EXHAUSTED /
 *                 BUDGET_EXHAUSTED; granted at a later match when room frees)
 *   CONFIRMED (2) the department confirmed; granted at once when there is
 *                 room, else held here (QUOTA_EXHAUSTED / BUDGET_EXHAUSTED)
 *   GRANTED (3)   granted: counts against quota (1) and budget (amount);
 *                 cash grants have a disbursement in the policy's payout
 *                 outbox
 *   PAID (4)      the payment system recorded the payment (cash only); final
 *   DECLINED (5)  the subject declined (from MATCHED, CONFIRMED or GRANTED
 *                 before payment; a granted one gives back its quota and
 *                 budget and its disbursement is cancelled); final: matching
 *                 never reopens it
 *   ENDED (6)     NO_LONGER_ELIGIBLE (re-match found the rule no longer TRUE;
 *                 cash grants once GRANTED are not ended this way: paid as
 *                 decided), POLICY_CLOSED, POLICY_EXPIRED,
 *                 REJECTED_BY_DEPARTMENT. A later match reopens an ENDED
 *                 NO_LONGER_ELIGIBLE / POLICY_EXPIRED entitlement as a new
 *                 round (round + 1) — never one rejected or closed.
 * Matching is idempotent: matching a subject that already has a live
 * entitlement (MATCHED awaiting confirmation, CONFIRMED, GRANTED, PAID) or a
 * final one changes nothing; a held one (quota / budget) is granted when
 * room has freed.
 *
 * Keys, all in the policy's slot {b:<pid>} so every transition with its
 * counters, quota, budget, log and disbursement is ONE Lua script:
 *   {b:<pid>}:policy     the counters (policy.h): n_matched, n_confirmed,
 *                        n_granted, n_paid, n_declined, n_ended, grants_used,
 *                        budget_used_fen (the record's status and window are
 *                        checked by the scripts: only PUBLISHED policies
 *                        inside their window grant)
 *   {b:<pid>}:ent        hash: subject -> "<state>,<round>,<created_ms>,
 *                        <updated_ms>,<reason>,<held>"; state the enum
 *                        number, reason UPPER_SNAKE or "-", held one letter
 *                        per rule condition (T / F / U: the subject's own
 *                        truth when decided, for the explanation) or "-"
 *   {b:<pid>}:queue      zset: subjects awaiting confirmation (MATCHED with
 *                        AWAITING_CONFIRMATION), score created_ms
 *   {b:<pid>}:log        stream, the transitions: a single transition
 *                        (confirm, reject, decline, pay) is one entry
 *                        subject, from, to, reason, by, at_ms; a batch
 *                        (fxb_ent_match_batch, fxb_ent_end_batch) is one
 *                        entry per kind of transition it made (from, to,
 *                        reason): from, to, reason, by, at_ms, n, subjects
 *                        (the n subjects joined by ","), e.g. a full match
 *                        granting 1,000 subjects writes one entry instead
 *                        of 1,000. Capped MAXLEN ~ 2,000,000 entries
 *   {b:<pid>}:payouts    stream, the disbursement outbox of the policy's
 *                        cash grants, in batches as a bank's 批量代发 file:
 *                        op ("pay" / "cancel"), n, keys (the n
 *                        disbursement keys "<pid>:<subject>:<round>", the
 *                        payment system's idempotency keys, joined by ","),
 *                        amount_fen (each), at_ms. A match batch writes
 *                        one "pay" entry for all its grants; a single
 *                        transition (confirm, decline) an entry of n = 1.
 *                        The payment adaptor reads the subject's payout
 *                        account itself ({p:|e:<subject>}:payout, sealed)
 *                        when it pays, and reports each key by
 *                        RecordPayment.
 *   {b:<pid>}:paid       hash: disbursement key -> "<reference>,<paid_at_ms>"
 *                        (RecordPayment repeated with the same reference
 *                        answers the same; another reference for a paid key
 *                        is ALREADY_EXISTS PAYMENT_CONFLICT)
 *   {b:<pid>}:unlisted   stream: the subjects of a full match's batches
 *                        whose list entries are deferred
 *                        (FXB_ENT_DEFER_LISTS): one entry per batch, n,
 *                        subjects (joined by ","), at_ms (their created_ms).
 *                        lists.h writes their list entries later and
 *                        deletes the entry; until then readers find them
 *                        through fxb:benefit:unlisted (lists.h)
 * Derived, written after the script (readers trust {b:<pid>}:ent):
 *   {p:<pid>}:benefits / {e:<eid>}:benefits   zset policy id -> created_ms:
 *                        the subject's entitlements, for its list. A crash
 *                        between the script and the ZADD leaves an
 *                        entitlement out of its subject's list until the
 *                        subject's next change-driven match: a match batch
 *                        of at most FXB_ENT_REPAIR_MAX subjects (the change
 *                        feed's: a profile change re-matches its subject
 *                        against each policy, in batches of the changes
 *                        read at once) also ZADDs NX the subjects it leaves
 *                        UNCHANGED, scored by their created_ms. A full
 *                        match or re-check (batches of FXB_ENT_BATCH_MAX),
 *                        or a burst of changes (an import) read as larger
 *                        batches, does not repair: re-adding every entry of
 *                        a million-subject policy on every re-check would
 *                        cost Redis about a microsecond per subject, to
 *                        repair what only a crash in that window breaks.
 *                        A full match's write-out (grantout.h) defers the
 *                        entries of what it creates (FXB_ENT_DEFER_LISTS):
 *                        the script records them in {b:<pid>}:unlisted,
 *                        so no crash loses them, and lists.h writes them
 *                        after the burst; readers repair their own first
 *   {p:<pid>}:account    string: the account holding the person's verified
 *                        identity (written by the identity service), to
 *                        which person notices go; enterprises' notices go to
 *                        the enterprise inbox (its representative and staff
 *                        with inbox.read read it) */
#ifndef FXB_BENEFIT_ENTITLEMENT_H
#define FXB_BENEFIT_ENTITLEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/arena.h"
#include "server/status.h"
#include "store/store.h"

enum {
    FXB_ENT_MATCHED = 1,
    FXB_ENT_CONFIRMED = 2,
    FXB_ENT_GRANTED = 3,
    FXB_ENT_PAID = 4,
    FXB_ENT_DECLINED = 5,
    FXB_ENT_ENDED = 6,
};

#define FXB_ENT_HELD_MAX   64 /* = FXB_RULE_CONDITIONS_MAX */
#define FXB_ENT_REASON_MAX 32
#define FXB_ENT_BATCH_MAX  1000 /* subjects per script call */
#define FXB_ENT_REPAIR_MAX 16   /* match batches up to this repair the lists */
#define FXB_ENT_KEY_MAX    (17 + 1 + 25 + 1 + 10)

/* One stored entitlement. */
typedef struct fxb_ent {
    char subject[26];
    int state;
    uint32_t round;
    int64_t created_ms, updated_ms;
    char reason[FXB_ENT_REASON_MAX + 1]; /* "" when none */
    char held[FXB_ENT_HELD_MAX + 1];     /* "" when none */
} fxb_ent;

/* Parses a stored "<state>,<round>,..." value; false when malformed. */
bool fxb_ent_parse(const char *subject, const char *value, size_t len, fxb_ent *out);

/* A policy id: "b" + 16 lower-case hex (policy.h). */
bool fxb_ent_policy_id_ok(const char *id);
/* A person ("p") or enterprise ("e") subject: the letter + 24 lower-case
 * hex. */
bool fxb_ent_subject_ok(const char *s);

/* The disbursement idempotency key "<pid>:<subject>:<round>". */
void fxb_ent_disbursement_key(char out[FXB_ENT_KEY_MAX + 1], const char *policy_id,
                              const char *subject, uint32_t round);

/* What matching did to one subject. */
typedef enum fxb_ent_outcome {
    FXB_ENT_UNCHANGED = 0, /* live or final already: nothing written */
    FXB_ENT_NEW_GRANTED,   /* created (or reopened / released from a hold) and GRANTED */
    FXB_ENT_NEW_WAITING,   /* created MATCHED, AWAITING_CONFIRMATION */
    FXB_ENT_NEW_HELD,      /* created MATCHED, held: QUOTA_ / BUDGET_EXHAUSTED */
    FXB_ENT_ENDED_NOW,     /* (fxb_ent_end) moved to ENDED */
    FXB_ENT_NOT_OPEN,      /* the policy is not PUBLISHED or outside its window */
} fxb_ent_outcome;

/* One subject the rule is TRUE for, with its per-condition truths
 * ("TTU..." or "" when not computed). */
typedef struct fxb_ent_match {
    const char *subject;
    const char *held;
} fxb_ent_match;

/* Matches n (<= FXB_ENT_BATCH_MAX) subjects to the policy in ONE script
 * (counters, quota and budget atomic; disbursements for cash grants in the
 * same script); then, for created entitlements (and, when n <=
 * FXB_ENT_REPAIR_MAX, for the unchanged ones too: see {..}:benefits above),
 * ZADDs NX the subjects' {..}:benefits indexes in one pipeline. The log
 * gets one entry per kind of transition of the batch. outcomes[i] receives each
 * subject's outcome. `by` names the actor in the log ("engine", an officer
 * account id). A subject named twice in one batch is matched once (the
 * second gets UNCHANGED). INVALID_ARGUMENT (POLICY_ID_INVALID,
 * SUBJECT_ID_INVALID, HELD_INVALID, ACTOR_INVALID, BATCH_TOO_LARGE) before
 * anything is written; when the script ran but the ZADDs failed, outcomes
 * are filled and the store error is returned. */
fxb_code fxb_ent_match_batch(fxb_store *s, const char *policy_id, const fxb_ent_match *m, size_t n,
                             int64_t now_ms, const char *by, fxb_ent_outcome *outcomes,
                             fxb_err *err);

/* fxb_ent_match_batch with flags and n_extra more commands in the script's
 * round trip (fxb_store_eval_with: commands whose result does not depend on
 * the script, e.g. the subjects' account links for their notices).
 * extra_replies[i] receives each reply (the caller frees them) or NULL when
 * they did not run (a refusal before anything was sent, a lost
 * connection). flags: FXB_ENT_DEFER_LISTS or 0. */
#define FXB_ENT_DEFER_LISTS                                                                        \
    1u /* the created subjects' list entries go to the                                             \
          policy's unlisted stream (lists.h) */
fxb_code fxb_ent_match_batch_with(fxb_store *s, const char *policy_id, const fxb_ent_match *m,
                                  size_t n, int64_t now_ms, const char *by,
                                  fxb_ent_outcome *outcomes, unsigned flags, size_t n_extra,
                                  const fxb_store_cmd *extra, redisReply **extra_replies,
                                  fxb_err *err);

/* Ends the live entitlements of n subjects no longer eligible (reason
 * NO_LONGER_ELIGIBLE) or all not yet granted at policy close
 * (POLICY_CLOSED): MATCHED / CONFIRMED always, GRANTED only for non-cash
 * kinds and only with NO_LONGER_ELIGIBLE / POLICY_EXPIRED (an ended grant
 * gives its quota place and amount back). outcomes[i]:
 * FXB_ENT_ENDED_NOW or FXB_ENT_UNCHANGED. One log entry per state left.
 * reason: one of the three above, else INVALID_ARGUMENT END_REASON_INVALID. */
fxb_code fxb_ent_end_batch(fxb_store *s, const char *policy_id, const char *const *subjects,
                           size_t n, const char *reason, int64_t now_ms, const char *by,
                           fxb_ent_outcome *outcomes, fxb_err *err);

/* Single transitions; each returns the entitlement after it in *out.
 * FAILED_PRECONDITION ENTITLEMENT_STATE for a state the step does not
 * start from; NOT_FOUND ENTITLEMENT_NOT_FOUND. */
/* MATCHED (AWAITING_CONFIRMATION) -> CONFIRMED -> GRANTED when there is
 * room (else stays CONFIRMED, held). FAILED_PRECONDITION POLICY_NOT_OPEN
 * (nothing written) when the policy is not PUBLISHED inside its window. */
fxb_code fxb_ent_confirm(fxb_store *s, const char *policy_id, const char *subject, int64_t now_ms,
                         const char *by, fxb_ent *out, fxb_err *err);
/* MATCHED -> ENDED REJECTED_BY_DEPARTMENT. */
fxb_code fxb_ent_reject(fxb_store *s, const char *policy_id, const char *subject, int64_t now_ms,
                        const char *by, fxb_ent *out, fxb_err *err);
/* MATCHED / CONFIRMED / GRANTED -> DECLINED (a granted one returns quota
 * and budget; a cash one gets a "cancel" disbursement with its key). */
fxb_code fxb_ent_decline(fxb_store *s, const char *policy_id, const char *subject, int64_t now_ms,
                         const char *by, fxb_ent *out, fxb_err *err);
/* GRANTED -> PAID by disbursement key; PAID already with the same key: the
 * same answer (idempotent). FAILED_PRECONDITION ENTITLEMENT_STATE when the
 * entitlement was declined / ended; NOT_FOUND DISBURSEMENT_NOT_FOUND for a
 * key naming no grant (also a stale round). INVALID_ARGUMENT
 * DISBURSEMENT_KEY_INVALID for a key not of that form (round without
 * leading zeros), PAYMENT_REFERENCE_INVALID unless reference is 1..64 of
 * [A-Za-z0-9-_.]. paid_at_ms 0 = now_ms. policy_id_out (NULL or
 * FXB_POLICY_ID_LEN + 1 bytes) receives the key's policy id. */
fxb_code fxb_ent_pay(fxb_store *s, const char *disbursement_key, const char *reference,
                     int64_t paid_at_ms, int64_t now_ms, fxb_ent *out, char *policy_id_out,
                     fxb_err *err);

/* Reads one entitlement: FXB_OK, NOT_FOUND ENTITLEMENT_NOT_FOUND. */
fxb_code fxb_ent_get(fxb_store *s, const char *policy_id, const char *subject, fxb_ent *out,
                     fxb_err *err);

/* Every subject with an entitlement of the policy in one of the states of
 * mask (bit 1 << state), via HSCAN: calls fn(subject, ent, arg) for each
 * until it returns false. For the engine's re-check and close. As HSCAN
 * does, a subject may be seen twice when the hash is resized during the
 * walk; values that do not parse are skipped. */
fxb_code fxb_ent_each(fxb_store *s, const char *policy_id, uint32_t state_mask,
                      bool (*fn)(const fxb_ent *e, void *arg), void *arg, fxb_err *err);

#endif
