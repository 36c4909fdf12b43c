/* The write-out of a full match (grantout.h): threads over connections,
 * each taking the next batch by an atomic counter. */
#include "services/benefit/grantout.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/arena.h"
#include "server/handler.h"
#include "server/log.h"
#include "services/benefit/entitlement.h"
#include "services/benefit/lists.h"
#include "services/benefit/notice.h"

#define ZH_BUSY "系统繁忙，请稍后重试"

typedef struct run {
    const fxb_policy *p;
    const char *const *subjects;
    size_t n, n_batches;
    const char *by;
    atomic_size_t next; /* the next batch to take */
    atomic_bool stop;   /* a transient failure or the caller's go said stop */
    pthread_mutex_t mu; /* the first failure */
    fxb_code rc;
    fxb_err err;
} run;

typedef struct lane {
    run *r;
    fxb_store *st;
    fxb_grantout_counts counts;
} lane;

static void fail(run *r, fxb_code rc, const fxb_err *err)
{
    pthread_mutex_lock(&r->mu);
    if (r->rc == FXB_OK) {
        r->rc = rc;
        fxb_err_copy(&r->err, err);
    }
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->stop, true);
}

/* One batch in two round trips: the script with the MGET of the persons'
 * account links and the SADD naming the policy among those with list
 * entries deferred (fxb_ent_match_batch_with, FXB_ENT_DEFER_LISTS), then
 * the notices to what it changed (their multicast outbox entries follow
 * without a wait: fxb_inbox_append_batch). */
static void batch(lane *l, size_t b)
{
    run *r = l->r;
    size_t first = b * FXB_ENT_BATCH_MAX;
    size_t n = r->n - first < FXB_ENT_BATCH_MAX ? r->n - first : FXB_ENT_BATCH_MAX;
    const char *const *subjects = r->subjects + first;
    fxb_ent_match m[FXB_ENT_BATCH_MAX];
    fxb_ent_outcome o[FXB_ENT_BATCH_MAX];
    const char *who[FXB_ENT_BATCH_MAX], *inbox_of[FXB_ENT_BATCH_MAX], *to[FXB_ENT_BATCH_MAX];
    fxb_benefit_notice_kind kinds[FXB_ENT_BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        m[i] = (fxb_ent_match){.subject = subjects[i], .held = ""};
    fxb_err err;
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_store_cmd mget;
    size_t ng = fxb_benefit_accounts_cmd(&a, subjects, n, &mget);
    if (ng == SIZE_MAX) {
        fxb_arena_free(&a);
        fxb_err_set(&err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                    "out of memory for a grant-out batch");
        fail(r, err.code, &err);
        return;
    }
    /* after the script: the account links, and the policy named among
     * those with list entries to write (lists.h) */
    fxb_store_cmd extra[2];
    redisReply *replies[2] = {NULL, NULL};
    const char *sadd[3];
    size_t n_extra = 0;
    if (ng > 0)
        extra[n_extra++] = mget;
    fxb_lists_pending_cmd(sadd, r->p->id, &extra[n_extra++]);
    fxb_code rc = fxb_ent_match_batch_with(l->st, r->p->id, m, n, fxb_wall_ms(), r->by, o,
                                           FXB_ENT_DEFER_LISTS, n_extra, extra, replies, &err);
    redisReply *accounts = ng > 0 ? replies[0] : NULL;
    if (replies[n_extra - 1] != NULL && replies[n_extra - 1]->type == REDIS_REPLY_ERROR)
        fxb_log(FXB_LOG_WARN,
                "benefit grant-out: policy %s: not named among the unlisted (the engine's "
                "re-check finds it)",
                r->p->id);
    if (replies[n_extra - 1] != NULL)
        freeReplyObject(replies[n_extra - 1]);
    if (rc != FXB_OK) {
        if (accounts != NULL)
            freeReplyObject(accounts);
        fxb_arena_free(&a);
        if (fxb_grantout_transient(rc)) {
            fail(r, rc, &err);
        } else {
            fxb_log(FXB_LOG_ERROR,
                    "benefit grant-out: policy %s: a match of %zu subjects refused (%s: %s)",
                    r->p->id, n, err.reason, err.message);
            l->counts.refused += n;
        }
        return;
    }
    /* a failed or odd MGET leaves every person without an inbox: counted
     * as unsent below, the entitlements stand */
    bool resolved = fxb_benefit_accounts_read(&a, subjects, n, accounts, inbox_of);
    if (accounts != NULL)
        freeReplyObject(accounts);
    size_t k = 0, persons_unresolved = 0;
    for (size_t i = 0; i < n; i++) {
        fxb_benefit_notice_kind kind;
        switch (o[i]) {
        case FXB_ENT_NEW_GRANTED:
            l->counts.granted++;
            kind = FXB_NOTICE_GRANTED;
            break;
        case FXB_ENT_NEW_WAITING:
            l->counts.waiting++;
            kind = FXB_NOTICE_AWAITING;
            break;
        case FXB_ENT_NEW_HELD:
            l->counts.held++;
            continue;
        case FXB_ENT_NOT_OPEN:
            l->counts.not_open++;
            continue;
        default:
            l->counts.unchanged++;
            continue;
        }
        if (!resolved && subjects[i][0] == 'p')
            persons_unresolved++;
        who[k] = subjects[i];
        to[k] = inbox_of[i];
        kinds[k++] = kind;
    }
    if (persons_unresolved > 0) {
        fxb_log(FXB_LOG_WARN,
                "benefit grant-out: policy %s: the account links of a batch could not be read; "
                "%zu notices not sent",
                r->p->id, persons_unresolved);
        l->counts.unsent += persons_unresolved;
    }
    size_t sent = 0;
    if (k > 0 && fxb_benefit_notify_inboxes(l->st, r->p, who, to, kinds, k, fxb_wall_ms(), &sent,
                                            &err) != FXB_OK) {
        fxb_log(FXB_LOG_WARN, "benefit grant-out: policy %s: %zu of %zu notices not sent: %s",
                r->p->id, k - sent, k, err.message);
        l->counts.unsent += k - sent;
    }
    /* (persons without an account get none, which is not a failure) */
    l->counts.notices += sent;
    fxb_arena_free(&a);
}

bool fxb_grantout_transient(fxb_code rc)
{
    return rc == FXB_UNAVAILABLE || rc == FXB_ABORTED || rc == FXB_RESOURCE_EXHAUSTED ||
           rc == FXB_DEADLINE_EXCEEDED;
}

static size_t take(run *r)
{
    if (atomic_load(&r->stop))
        return SIZE_MAX;
    size_t b = atomic_fetch_add(&r->next, 1);
    return b < r->n_batches ? b : SIZE_MAX;
}

static void *lane_main(void *arg)
{
    lane *l = arg;
    for (size_t b; (b = take(l->r)) != SIZE_MAX;)
        batch(l, b);
    /* the replies of what was sent without a wait: the run ends when
     * Redis has answered everything */
    fxb_store_drain(l->st);
    return NULL;
}

fxb_code fxb_grantout_run(fxb_store *const *stores, size_t n_stores, const fxb_policy *p,
                          const char *const *subjects, size_t n, const char *by,
                          fxb_grantout_go_fn go, void *go_arg, fxb_grantout_counts *counts,
                          fxb_err *err)
{
    if (counts != NULL)
        memset(counts, 0, sizeof *counts);
    if (stores == NULL || n_stores == 0 || n_stores > FXB_GRANTOUT_STORES_MAX || p == NULL ||
        (subjects == NULL && n > 0))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "GRANTOUT_INVALID", ZH_BUSY,
                           "a grant-out needs 1..%d stores, a policy and its subjects",
                           FXB_GRANTOUT_STORES_MAX);
    for (size_t i = 0; i < n_stores; i++)
        if (stores[i] == NULL)
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, "GRANTOUT_INVALID", ZH_BUSY,
                               "store %zu of the grant-out is missing", i);
    if (n == 0)
        return FXB_OK;
    run *r = calloc(1, sizeof *r);
    lane *lanes = calloc(n_stores, sizeof *lanes);
    pthread_t *threads = calloc(n_stores, sizeof *threads);
    bool *started = calloc(n_stores, sizeof *started);
    if (r == NULL || lanes == NULL || threads == NULL || started == NULL) {
        free(r);
        free(lanes);
        free(threads);
        free(started);
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                           "out of memory for a grant-out");
    }
    r->p = p;
    r->subjects = subjects;
    r->n = n;
    r->n_batches = (n + FXB_ENT_BATCH_MAX - 1) / FXB_ENT_BATCH_MAX;
    r->by = by;
    atomic_init(&r->next, 0);
    atomic_init(&r->stop, false);
    pthread_mutex_init(&r->mu, NULL);
    r->rc = FXB_OK;
    /* no more threads than batches: a batch is the unit of work */
    size_t lanes_used = n_stores < r->n_batches ? n_stores : r->n_batches;
    for (size_t i = 0; i < lanes_used; i++) {
        lanes[i].r = r;
        lanes[i].st = stores[i];
    }
    for (size_t i = 1; i < lanes_used; i++)
        started[i] = pthread_create(&threads[i], NULL, lane_main, &lanes[i]) == 0;
    /* the caller's thread: asks go before each of its batches */
    for (;;) {
        if (go != NULL) {
            fxb_err gerr;
            fxb_code grc = go(go_arg, &gerr);
            if (grc != FXB_OK) {
                fail(r, grc, &gerr);
                break;
            }
        }
        size_t b = take(r);
        if (b == SIZE_MAX)
            break;
        batch(&lanes[0], b);
    }
    fxb_store_drain(lanes[0].st);
    for (size_t i = 1; i < lanes_used; i++)
        if (started[i])
            pthread_join(threads[i], NULL);
    fxb_code rc = r->rc;
    if (rc != FXB_OK && err != NULL)
        fxb_err_copy(err, &r->err);
    if (counts != NULL)
        for (size_t i = 0; i < lanes_used; i++) {
            const fxb_grantout_counts *c = &lanes[i].counts;
            counts->granted += c->granted;
            counts->waiting += c->waiting;
            counts->held += c->held;
            counts->unchanged += c->unchanged;
            counts->not_open += c->not_open;
            counts->refused += c->refused;
            counts->notices += c->notices;
            counts->unsent += c->unsent;
        }
    pthread_mutex_destroy(&r->mu);
    free(r);
    free(lanes);
    free(threads);
    free(started);
    return rc;
}
