/* The write-out of a full match (issue 7, 免申即享: publishing a policy
 * for a city can grant a million subjects at once): the matched subjects in
 * batches of FXB_ENT_BATCH_MAX, each batch one fxb_ent_match_batch (the
 * entitlements, counters, quota, budget, log and disbursement file, one
 * script) followed by one fxb_benefit_notify for what the batch changed
 * (granted: benefit.granted; awaiting confirmation: benefit.awaiting).
 *
 * The batches are spread over n_stores Redis connections, one thread each:
 * the caller's thread works on stores[0], and n_stores - 1 threads started
 * for the run work on the others, each taking the next batch not yet taken.
 * Redis runs commands on one thread; a second connection keeps it busy
 * while the first's thread builds its next batch and reads its replies
 * (about a fifth of the time of a batch), which is where the write-out of
 * one connection loses time. Batches run in no fixed order relative to each
 * other: with a quota, which subjects are granted and which are held
 * depends on the order the batches reach Redis, as with any two matchers
 * (every grant is still counted atomically: never more than the quota).
 *
 * The subjects' list entries ({p:|e:<subject>}:benefits) are not written
 * here: each batch's script records the subjects it created in the
 * policy's unlisted stream and the batch names the policy in
 * FXB_LISTS_PENDING, and the engine writes the entries after the run
 * (lists.h). That keeps a million new keys out of the burst.
 *
 * The engine (engine.c) uses it for every full match; bench/benefit_bench.c
 * measures it. */
#ifndef FXB_BENEFIT_GRANTOUT_H
#define FXB_BENEFIT_GRANTOUT_H

#include <stdbool.h>
#include <stddef.h>

#include "server/status.h"
#include "services/benefit/policy.h"
#include "store/store.h"

#define FXB_GRANTOUT_STORES_MAX 8

typedef struct fxb_grantout_counts {
    size_t granted;   /* FXB_ENT_NEW_GRANTED */
    size_t waiting;   /* FXB_ENT_NEW_WAITING */
    size_t held;      /* FXB_ENT_NEW_HELD */
    size_t unchanged; /* FXB_ENT_UNCHANGED */
    size_t not_open;  /* FXB_ENT_NOT_OPEN: the policy closed or left its window */
    size_t refused;   /* subjects of batches the scripts refused (logged, skipped) */
    size_t notices;   /* notices written */
    size_t unsent;    /* notices of batches whose notices failed (logged; a person
                       * without an account gets none, which is not counted) */
} fxb_grantout_counts;

/* True for a failure the next batches would meet too (Redis away, a
 * timeout, memory, the caller stopping): the write-out stops on it. Any
 * other failure (a refusal of the entitlement scripts) concerns one batch,
 * which is logged and skipped. The engine judges its own batches the same
 * way. */
bool fxb_grantout_transient(fxb_code rc);

/* Asked on the caller's thread before each of its batches: FXB_OK goes on,
 * anything else (with *err filled) stops every thread after its current
 * batch and is returned. NULL: always go on. */
typedef fxb_code (*fxb_grantout_go_fn)(void *arg, fxb_err *err);

/* Grants (or holds, or queues for confirmation) subjects[0..n) under policy
 * p (published; p->id names its keys), "by" in the log. A batch the
 * entitlement scripts refuse (not a transient failure) is logged and
 * skipped, as is a failed notice; a transient failure (Redis unavailable,
 * timeout, out of memory) stops every thread and is returned, the batches
 * done before it staying done (the next re-check matches the rest: a match
 * is idempotent). counts (may be NULL) is summed over the threads. n_stores
 * 1..FXB_GRANTOUT_STORES_MAX (a thread that cannot start leaves its batches
 * to the others). */
fxb_code fxb_grantout_run(fxb_store *const *stores, size_t n_stores, const fxb_policy *p,
                          const char *const *subjects, size_t n, const char *by,
                          fxb_grantout_go_fn go, void *go_arg, fxb_grantout_counts *counts,
                          fxb_err *err);

#endif
