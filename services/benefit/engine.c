/* The matching engine (engine.h): one thread per process, one leader per
 * Redis. The leader holds both matching indexes (persons, enterprises) and
 * the compiled published policies, follows the profile change feed and the
 * policy revision counter, and turns what the rules say into entitlements
 * (entitlement.h) and notices (notice.h).
 *
 * Only the engine thread touches the indexes, the policies and its Redis
 * connection, so none of them is locked; other threads see the engine
 * through `g.status` and the sync counters, under g.mu.
 *
 * Sync (fxb_engine_sync): a caller raises sync_req (and recheck_req); the
 * thread, at the top of its next step (which begins after the call),
 * captures the counters, reads the feed's last id and the policy revision
 * (both at least as new as at the call), does the work they imply, and only
 * then publishes sync_done / recheck_done. Work that fails is retried and
 * the counters are not advanced, so a sync never reports stale success.
 *
 * Keeping the lease: renewed every RENEW_MS with compare-and-extend; when
 * the key is gone (it expired while Redis was unreachable, or Redis
 * restarted) the engine takes it again with SET NX and carries on from its
 * feed position (a feed that went backwards means a new Redis: rebuild);
 * when another engine holds it, this one steps down and drops its index.
 *
 * Nothing is missed while no engine follows: closes are also written to
 * the to-do set FXB_BENEFIT_CLOSING (policy.h), read on every policy
 * reload (so whenever an engine becomes leader) and emptied only once the
 * close's entitlements ended; and every XREAD of the capped change feed
 * comes with an XINFO STREAM in the same round trip, so a feed trimmed
 * past the engine's position (it fell behind by more than the cap, or
 * carried on after its lease lapsed) is noticed before anything after
 * the gap is applied, and answered with a rebuild and a full re-check
 * (feed_lost). */
#include "services/benefit/engine.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "server/arena.h"
#include "server/handler.h"
#include "server/log.h"
#include "services/benefit/entitlement.h"
#include "services/benefit/grantout.h"
#include "services/benefit/lists.h"
#include "services/benefit/index.h"
#include "services/benefit/notice.h"
#include "services/benefit/policy.h"
#include "services/benefit/profile.h"
#include "services/benefit/profile_view.h"
#include "services/benefit/rule.h"
#include "services/benefit/schema.h"
#include "services/identity/identity.h"
#include "store/store.h"

#define LEASE_MS       15000
#define RENEW_MS       5000
#define FOLLOW_POLL_MS 2000 /* a follower tries the lease this often */
/* Each step blocks on the feed at most this long: it bounds how late a
 * policy publish, a schema change or a sync request is noticed. */
#define FEED_BLOCK_MS 100
#define FEED_COUNT    1000 /* feed entries applied per batch */
/* unlisted entries (of up to FXB_ENT_BATCH_MAX subjects each) whose list
 * entries one step writes (lists.h) before it looks at the feed again:
 * about 10-20 ms of Redis's time */
#define LISTS_SLICE    8
#define SCAN_COUNT     1000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define SLEEP_SLICE_MS 50
#define TOKEN_LEN      32
#define ID_TEXT_MAX    47 /* fxb_engine_status.feed_id - 1 */
#define SUBJECT_MAX    32 /* index.h */
#define BY             "engine"

#define KEY_CHANGES    "fxb:profile:changes"
#define KEY_SCHEMA_REV "fxb:profile:schema:rev"

#define ZH_BUSY       "系统繁忙，请稍后重试"
#define ZH_NOT_LEADER "匹配引擎不在本服务器运行"

/* One published policy as the engine holds it. */
typedef struct slot {
    fxb_arena arena; /* the record's strings */
    fxb_policy p;
    fxb_rule *rule; /* NULL when it does not compile under the schema */
    size_t n_conds;
    bool need_full; /* a full match is owed (publish, change, or it failed) */
    /* per change batch: the subjects to match / end (batch arena) */
    fxb_ent_match *grp_match;
    const char **grp_end;
    size_t n_match, n_end;
} slot;

/* The leader's working state (engine thread only). */
typedef struct eng {
    fxb_store *st;
    /* a full match's write-out (grantout.h) runs on st and these, one
     * thread each: n_stores = FXB_BENEFIT_WRITERS */
    fxb_store *writers[FXB_GRANTOUT_STORES_MAX - 1];
    size_t n_stores;
    const fxb_schema *schema;
    fxb_index *ix[2]; /* by fxb_subject_type */
    slot **pols;
    size_t n_pols;
    slot **closing; /* closed since the last load, their entitlements to end */
    size_t n_closing;
    int64_t benefit_rev; /* -1: not loaded */
    int64_t schema_rev;
    char last_id[ID_TEXT_MAX + 1];
    /* how many entries were ever added to the feed up to last_id (XINFO
     * STREAM entries-added, counted on); -1 when Redis does not say */
    int64_t fed;
    /* the feed existed at the last look: read_feed asks XINFO STREAM (an
     * error reply for a missing key, counted as a store error), else only
     * EXISTS until it appears */
    bool feed_exists;
    bool need_build, recheck_owed, check_feed, lost;
    /* list entries may be owed (lists.h): after a full match, a re-check,
     * a build; listed counts them until none are */
    bool lists_owed;
    size_t listed;
    uint64_t renewed_ms; /* monotonic, last successful lease renewal */
    uint64_t next_recheck_ms;
    int block_ms;
    fxb_arena batch; /* per change batch / scan page */
} eng;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC; signalled when anything below changes */
    bool cv_ready;
    bool started;
    pthread_t thread;
    atomic_bool stop;
    int recheck_ms;
    char url[FXB_CONFIG_STR_MAX];
    int connect_timeout_ms, command_timeout_ms;
    char token[TOKEN_LEN + 1];
    fxb_engine_status status;
    uint64_t sync_req, sync_done, recheck_req, recheck_done;
    eng e; /* global so leak checkers reach it while the thread runs */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* --- small helpers ------------------------------------------------------ */

static uint64_t mono_ms(void)
{
    return fxb_now_us() / 1000u;
}

static bool stopping(void)
{
    return atomic_load(&g.stop);
}

/* Sleeps ms in slices; false when told to stop. */
static bool pause_ms(int ms)
{
    uint64_t until = mono_ms() + (uint64_t)ms;
    while (!stopping()) {
        uint64_t now = mono_ms();
        if (now >= until)
            return true;
        uint64_t left = until - now;
        if (left > SLEEP_SLICE_MS)
            left = SLEEP_SLICE_MS;
        struct timespec ts = {0, (long)left * 1000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

static uint32_t today(int64_t now_ms)
{
    return (uint32_t)fxb_idv_today(now_ms);
}

typedef struct stream_id {
    uint64_t ms, seq;
} stream_id;

static bool id_parse(const char *s, stream_id *out)
{
    char *end;
    errno = 0;
    unsigned long long ms = strtoull(s, &end, 10);
    if (end == s || *end != '-' || errno != 0)
        return false;
    const char *p = end + 1;
    unsigned long long seq = strtoull(p, &end, 10);
    if (end == p || *end != '\0' || errno != 0)
        return false;
    out->ms = ms;
    out->seq = seq;
    return true;
}

/* a < b; unparsable ids compare as 0-0 */
static bool id_less(const char *a, const char *b)
{
    stream_id x = {0, 0}, y = {0, 0};
    id_parse(a, &x);
    id_parse(b, &y);
    return x.ms < y.ms || (x.ms == y.ms && x.seq < y.seq);
}

static fxb_code unexpected(fxb_err *err, const char *what)
{
    return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                       "%s answered in an unexpected shape", what);
}

static fxb_code oom(fxb_err *err)
{
    return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
}

/* The reason long work gives up when the thread stops or the lease is lost. */
static fxb_code interrupted(fxb_err *err)
{
    return fxb_err_set(err, FXB_ABORTED, "ENGINE_INTERRUPTED", ZH_BUSY,
                       "the engine is stopping or lost its lease");
}

static bool subject_valid(const char *s, size_t len)
{
    if (len < 2 || len > SUBJECT_MAX || (s[0] != 'p' && s[0] != 'e'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z')))
            return false;
    return true;
}

static fxb_subject_type type_of(const char *subject)
{
    return subject[0] == 'p' ? FXB_SUBJECT_PERSON : FXB_SUBJECT_ENTERPRISE;
}

/* --- status and sync counters ------------------------------------------ */

static void broadcast_locked(void)
{
    if (g.cv_ready)
        pthread_cond_broadcast(&g.cv);
}

static void set_leader(bool leader)
{
    pthread_mutex_lock(&g.mu);
    if (g.status.leader != leader || !leader) {
        g.status.leader = leader;
        if (!leader) {
            g.status.ready = false;
            g.status.persons = g.status.enterprises = 0;
            g.status.policies = 0;
        }
        broadcast_locked();
    }
    pthread_mutex_unlock(&g.mu);
}

static void publish_status(eng *e, bool ready)
{
    fxb_index_stats ps, es;
    fxb_index_stats_get(e->ix[FXB_SUBJECT_PERSON], &ps);
    fxb_index_stats_get(e->ix[FXB_SUBJECT_ENTERPRISE], &es);
    pthread_mutex_lock(&g.mu);
    g.status.ready = ready;
    g.status.persons = ps.subjects;
    g.status.enterprises = es.subjects;
    g.status.policies = (uint32_t)e->n_pols;
    snprintf(g.status.feed_id, sizeof g.status.feed_id, "%s", e->last_id);
    pthread_mutex_unlock(&g.mu);
}

static void publish_feed_id(eng *e)
{
    pthread_mutex_lock(&g.mu);
    snprintf(g.status.feed_id, sizeof g.status.feed_id, "%s", e->last_id);
    pthread_mutex_unlock(&g.mu);
}

static void wanted(uint64_t *sync, uint64_t *recheck)
{
    pthread_mutex_lock(&g.mu);
    *sync = g.sync_req;
    *recheck = g.recheck_req;
    pthread_mutex_unlock(&g.mu);
}

static void mark_synced(uint64_t sync)
{
    pthread_mutex_lock(&g.mu);
    if (sync > g.sync_done) {
        g.sync_done = sync;
        broadcast_locked();
    }
    pthread_mutex_unlock(&g.mu);
}

static void mark_rechecked(uint64_t recheck, int64_t at_ms)
{
    pthread_mutex_lock(&g.mu);
    g.status.last_recheck_ms = at_ms;
    if (recheck > g.recheck_done)
        g.recheck_done = recheck;
    broadcast_locked();
    pthread_mutex_unlock(&g.mu);
}

/* --- the lease ---------------------------------------------------------- */

/* KEYS[1] the lease; ARGV: token, ms. 1 when extended (ours), else 0. */
static fxb_script extend_script =
    FXB_SCRIPT("engine_lease_extend", "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                      "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                      "end\n"
                                      "return 0\n");

/* KEYS[1] the lease; ARGV: token. Deletes it when ours. */
static fxb_script release_script =
    FXB_SCRIPT("engine_lease_release", "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                       "  return redis.call('DEL', KEYS[1])\n"
                                       "end\n"
                                       "return 0\n");

/* 1 taken (or already ours), 0 held by another, -1 Redis error. */
static int lease_take(eng *e)
{
    fxb_err err;
    char px[16];
    snprintf(px, sizeof px, "%d", LEASE_MS);
    redisReply *r =
        fxb_store_command(e->st, &err, "SET %s %s NX PX %s", FXB_BENEFIT_LEADER_KEY, g.token, px);
    if (r == NULL)
        return -1;
    bool ok = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
    freeReplyObject(r);
    if (!ok) {
        const char *keys[] = {FXB_BENEFIT_LEADER_KEY};
        const char *args[] = {g.token, px};
        r = fxb_store_eval(e->st, &err, &extend_script, 1, keys, 2, args, NULL);
        if (r == NULL)
            return -1;
        ok = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
    }
    if (ok)
        e->renewed_ms = mono_ms();
    return ok ? 1 : 0;
}

/* Renews the lease when due; false when the thread stops or the lease is
 * lost (another engine holds it). Redis errors keep what we have: nothing
 * can be done without Redis anyway, and the next renewal retries. */
static bool lease_ok(eng *e)
{
    if (stopping() || e->lost)
        return false;
    if (mono_ms() - e->renewed_ms < RENEW_MS)
        return true;
    fxb_err err;
    char px[16];
    snprintf(px, sizeof px, "%d", LEASE_MS);
    const char *keys[] = {FXB_BENEFIT_LEADER_KEY};
    const char *args[] = {g.token, px};
    redisReply *r = fxb_store_eval(e->st, &err, &extend_script, 1, keys, 2, args, NULL);
    if (r == NULL)
        return true;
    bool ours = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (ours) {
        e->renewed_ms = mono_ms();
        return true;
    }
    /* gone (expired while we could not renew, or a new Redis): take it again
     * when free and check the feed did not go backwards */
    int t = lease_take(e);
    if (t == 1) {
        e->check_feed = true;
        fxb_log(FXB_LOG_WARN, "benefit engine: the lease had lapsed; taken again");
        return true;
    }
    if (t == 0) {
        fxb_log(FXB_LOG_WARN, "benefit engine: another server holds the lease; stepping down");
        e->lost = true;
        return false;
    }
    return true;
}

static void lease_release(eng *e)
{
    fxb_err err;
    const char *keys[] = {FXB_BENEFIT_LEADER_KEY};
    const char *args[] = {g.token};
    redisReply *r = fxb_store_eval(e->st, &err, &release_script, 1, keys, 1, args, NULL);
    if (r != NULL)
        freeReplyObject(r);
}

/* --- policies ----------------------------------------------------------- */

static void slot_free(slot *s)
{
    if (s == NULL)
        return;
    fxb_rule_free(s->rule);
    fxb_arena_free(&s->arena);
    free(s);
}

static void slots_free(slot **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        slot_free(v[i]);
    free(v);
}

/* Loads one policy record into a new slot (*out NULL when it is gone). */
static fxb_code slot_load(eng *e, const char *id, slot **out, fxb_err *err)
{
    *out = NULL;
    slot *s = calloc(1, sizeof *s);
    if (s == NULL)
        return oom(err);
    fxb_arena_init(&s->arena, 0);
    fxb_code rc = fxb_policy_load(e->st, id, &s->arena, &s->p, err);
    if (rc != FXB_OK) {
        slot_free(s);
        return rc == FXB_NOT_FOUND ? FXB_OK : rc;
    }
    *out = s;
    return FXB_OK;
}

/* Compiles the slot's rule under the engine's schema; a rule that does not
 * compile any more (the schema changed) is logged and the policy skipped. */
static void slot_compile(eng *e, slot *s)
{
    fxb_rule_error where;
    fxb_err err;
    memset(&where, 0, sizeof where);
    fxb_err_clear(&err);
    if (s->p.rule == NULL ||
        fxb_rule_compile(e->schema, s->p.subject, s->p.rule, &s->rule, &where, &err) != FXB_OK) {
        s->rule = NULL;
        fxb_log(FXB_LOG_ERROR,
                "benefit engine: policy %s: its rule does not compile under profile schema rev "
                "%" PRId64 " (line %u col %u: %s); the policy is not matched",
                s->p.id, e->schema_rev, where.line, where.col,
                where.message[0] ? where.message : err.message);
        return;
    }
    s->n_conds = fxb_rule_conditions(s->rule);
}

static slot *find_slot(slot **v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != NULL && strcmp(v[i]->p.id, id) == 0)
            return v[i];
    return NULL;
}

static bool holds(slot *const *v, size_t n, const slot *x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

/* SREM of one id of FXB_BENEFIT_CLOSING: its close is done (or void). */
static fxb_code closing_done(eng *e, const char *id, fxb_err *err)
{
    redisReply *r = fxb_store_command(e->st, err, "SREM %s %s", FXB_BENEFIT_CLOSING, id);
    if (r == NULL)
        return err->code;
    freeReplyObject(r);
    return FXB_OK;
}

/* Reads FXB_BENEFIT_CLOSING (policy.h): every CLOSED policy it names and
 * `closing` does not hold yet joins `closing` (owed_work ends its
 * not-granted entitlements, then removes the id); an id naming no policy,
 * or one not CLOSED (the set is only ever added to after the record
 * moved), is removed at once. */
static fxb_code load_closing(eng *e, fxb_err *err)
{
    redisReply *r = fxb_store_command(e->st, err, "SMEMBERS %s", FXB_BENEFIT_CLOSING);
    if (r == NULL)
        return err->code;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return unexpected(err, "SMEMBERS");
    }
    fxb_code rc = FXB_OK;
    for (size_t i = 0; i < r->elements && rc == FXB_OK; i++) {
        const redisReply *m = r->element[i];
        if (m->type != REDIS_REPLY_STRING)
            continue;
        if (!fxb_policy_id_valid(m->str)) {
            rc = closing_done(e, m->str, err);
            continue;
        }
        if (find_slot(e->closing, e->n_closing, m->str) != NULL)
            continue;
        slot *c;
        rc = slot_load(e, m->str, &c, err);
        if (rc != FXB_OK)
            break;
        if (c == NULL || c->p.status != FXB_POLICY_CLOSED) {
            slot_free(c);
            rc = closing_done(e, m->str, err);
            continue;
        }
        slot **v = realloc(e->closing, (e->n_closing + 1) * sizeof *v);
        if (v == NULL) {
            slot_free(c);
            rc = oom(err);
            break;
        }
        e->closing = v;
        e->closing[e->n_closing++] = c;
    }
    freeReplyObject(r);
    return rc;
}

/* Reloads the published set after fxb:benefit:rev changed: new ones owe a
 * full match (so do changed ones: a raised quota frees room for held
 * subjects); ones no longer published that are CLOSED go to `closing`,
 * and so do the ones FXB_BENEFIT_CLOSING names (closed while no engine
 * followed: this reload runs whenever an engine becomes leader). On a
 * failure the reload is retried (the revision is not taken). */
static fxb_code reload_policies(eng *e, int64_t rev, fxb_err *err)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    char **ids = NULL;
    size_t n = 0;
    fxb_code rc = fxb_policy_published_ids(e->st, &a, &ids, &n, err);
    if (rc != FXB_OK) {
        fxb_arena_free(&a);
        return rc;
    }
    slot **next = calloc(n ? n : 1, sizeof *next);
    slot **closed = calloc(e->n_pols ? e->n_pols : 1, sizeof *closed);
    size_t k = 0, n_closed = 0;
    if (next == NULL || closed == NULL)
        rc = oom(err);
    for (size_t i = 0; i < n && rc == FXB_OK; i++) {
        if (find_slot(next, k, ids[i]) != NULL)
            continue;
        slot *s;
        rc = slot_load(e, ids[i], &s, err);
        if (rc != FXB_OK || s == NULL)
            continue;
        if (s->p.status != FXB_POLICY_PUBLISHED) {
            slot_free(s); /* the set lags the record; the record decides */
            continue;
        }
        slot *old = find_slot(e->pols, e->n_pols, ids[i]);
        if (old != NULL && old->p.version == s->p.version) {
            slot_free(s);
            next[k++] = old;
            continue;
        }
        slot_compile(e, s);
        s->need_full = s->rule != NULL;
        next[k++] = s;
    }
    /* what left the set: closed ones end their not-granted entitlements
     * (normally also named by FXB_BENEFIT_CLOSING, read below) */
    for (size_t j = 0; j < e->n_pols && rc == FXB_OK; j++) {
        slot *old = e->pols[j];
        if (find_slot(next, k, old->p.id) != NULL ||
            find_slot(e->closing, e->n_closing, old->p.id) != NULL)
            continue;
        slot *s;
        rc = slot_load(e, old->p.id, &s, err);
        if (rc == FXB_OK && s != NULL && s->p.status == FXB_POLICY_CLOSED)
            closed[n_closed++] = s;
        else
            slot_free(s);
    }
    slot **c = NULL;
    if (rc == FXB_OK && n_closed > 0) {
        c = realloc(e->closing, (e->n_closing + n_closed) * sizeof *c);
        if (c == NULL)
            rc = oom(err);
    }
    fxb_arena_free(&a);
    if (rc != FXB_OK) {
        for (size_t i = 0; i < k; i++)
            if (!holds(e->pols, e->n_pols, next[i]))
                slot_free(next[i]);
        slots_free(closed, n_closed);
        free(next);
        return rc;
    }
    if (n_closed > 0) {
        e->closing = c;
        memcpy(e->closing + e->n_closing, closed, n_closed * sizeof *closed);
        e->n_closing += n_closed;
    }
    free(closed);
    for (size_t j = 0; j < e->n_pols; j++)
        if (!holds(next, k, e->pols[j]))
            slot_free(e->pols[j]);
    free(e->pols);
    e->pols = next;
    e->n_pols = k;
    rc = load_closing(e, err);
    if (rc != FXB_OK)
        return rc; /* the set is taken; the closes are read again next time */
    e->benefit_rev = rev;
    return FXB_OK;
}

/* --- entitlements and notices ------------------------------------------ */

static void notify(eng *e, const slot *s, const char *const *subjects,
                   const fxb_ent_outcome *outcomes, size_t n)
{
    const char *who[FXB_ENT_BATCH_MAX];
    fxb_benefit_notice_kind kinds[FXB_ENT_BATCH_MAX];
    size_t k = 0;
    for (size_t i = 0; i < n && k < FXB_ENT_BATCH_MAX; i++) {
        fxb_benefit_notice_kind kind;
        switch (outcomes[i]) {
        case FXB_ENT_NEW_GRANTED:
            kind = FXB_NOTICE_GRANTED;
            break;
        case FXB_ENT_NEW_WAITING:
            kind = FXB_NOTICE_AWAITING;
            break;
        case FXB_ENT_ENDED_NOW:
            kind = FXB_NOTICE_ENDED;
            break;
        default:
            continue;
        }
        who[k] = subjects[i];
        kinds[k++] = kind;
    }
    if (k == 0)
        return;
    size_t sent = 0;
    fxb_err err;
    if (fxb_benefit_notify(e->st, &s->p, who, kinds, k, fxb_wall_ms(), &sent, &err) != FXB_OK)
        fxb_log(FXB_LOG_WARN, "benefit engine: policy %s: %zu notices not sent: %s", s->p.id, k,
                err.message);
}

/* A transient failure (fxb_grantout_transient) is returned and retried; a
 * refusal of the entitlement scripts would fail the same way again and
 * must not stop the engine: it is logged and the batch skipped (the next
 * re-check tries again). */
static fxb_code skip_refusal(const slot *s, const char *what, size_t n, fxb_code rc, fxb_err *err)
{
    if (rc == FXB_OK || fxb_grantout_transient(rc))
        return rc;
    fxb_log(FXB_LOG_ERROR, "benefit engine: policy %s: %s of %zu subjects refused (%s: %s)",
            s->p.id, what, n, err->reason, err->message);
    return FXB_OK;
}

/* Matches n (<= FXB_ENT_BATCH_MAX) subjects, then notifies. */
static fxb_code match_batch(eng *e, const slot *s, const fxb_ent_match *m, size_t n, fxb_err *err)
{
    if (n == 0)
        return FXB_OK;
    fxb_ent_outcome outcomes[FXB_ENT_BATCH_MAX];
    const char *subjects[FXB_ENT_BATCH_MAX];
    fxb_code rc = fxb_ent_match_batch(e->st, s->p.id, m, n, fxb_wall_ms(), BY, outcomes, err);
    if (rc != FXB_OK)
        return skip_refusal(s, "a match", n, rc, err);
    for (size_t i = 0; i < n; i++)
        subjects[i] = m[i].subject;
    notify(e, s, subjects, outcomes, n);
    return FXB_OK;
}

/* Ends n (<= FXB_ENT_BATCH_MAX) subjects' entitlements, then notifies. */
static fxb_code end_batch(eng *e, const slot *s, const char *const *subjects, size_t n,
                          const char *reason, fxb_err *err)
{
    if (n == 0)
        return FXB_OK;
    fxb_ent_outcome outcomes[FXB_ENT_BATCH_MAX];
    fxb_code rc =
        fxb_ent_end_batch(e->st, s->p.id, subjects, n, reason, fxb_wall_ms(), BY, outcomes, err);
    if (rc != FXB_OK)
        return skip_refusal(s, "an end", n, rc, err);
    notify(e, s, subjects, outcomes, n);
    return FXB_OK;
}

/* Rows of one match, findable by subject: open addressing over row + 1. */
typedef struct rowset {
    const fxb_index *ix;
    uint32_t *slots;
    size_t cap; /* power of two */
} rowset;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ^ (h >> 31);
}

static bool rowset_add(uint32_t row, void *arg)
{
    rowset *rs = arg;
    const char *subj = fxb_index_subject(rs->ix, row);
    if (subj == NULL)
        return true;
    size_t i = hash_str(subj) & (rs->cap - 1);
    while (rs->slots[i] != 0)
        i = (i + 1) & (rs->cap - 1);
    rs->slots[i] = row + 1;
    return true;
}

static bool rowset_init(rowset *rs, const fxb_index *ix, const void *rows)
{
    uint64_t n = fxb_index_rows_count(rows);
    size_t cap = 16;
    while (cap < n * 2 + 1)
        cap *= 2;
    rs->ix = ix;
    rs->cap = cap;
    rs->slots = calloc(cap, sizeof *rs->slots);
    if (rs->slots == NULL)
        return false;
    fxb_index_rows_each(rows, rowset_add, rs);
    return true;
}

static bool rowset_has(const rowset *rs, const char *subject)
{
    size_t i = hash_str(subject) & (rs->cap - 1);
    while (rs->slots[i] != 0) {
        const char *s = fxb_index_subject(rs->ix, rs->slots[i] - 1);
        if (s != NULL && strcmp(s, subject) == 0)
            return true;
        i = (i + 1) & (rs->cap - 1);
    }
    return false;
}

/* The matched rows' subjects, for fxb_grantout_run. */
typedef struct collector {
    const fxb_index *ix;
    const char **subjects;
    size_t n, cap;
} collector;

static bool collect_row(uint32_t row, void *arg)
{
    collector *c = arg;
    const char *subj = fxb_index_subject(c->ix, row);
    if (subj != NULL && c->n < c->cap)
        c->subjects[c->n++] = subj;
    return true;
}

/* fxb_grantout_run's go: the lease, before each batch of the engine's
 * thread. */
static fxb_code grantout_go(void *arg, fxb_err *err)
{
    return lease_ok(arg) ? FXB_OK : interrupted(err);
}

/* Full match of a policy: grants (or holds / queues) every subject its rule
 * is TRUE for today. *rows_out (when not NULL) receives the match bitmap
 * (free with fxb_index_rows_free). */
static fxb_code full_match(eng *e, const slot *s, void **rows_out, fxb_err *err)
{
    if (rows_out != NULL)
        *rows_out = NULL;
    const fxb_index *ix = e->ix[s->p.subject];
    int64_t now = fxb_wall_ms();
    void *rows = fxb_index_match(ix, s->rule, today(now));
    if (rows == NULL)
        return oom(err);
    /* the subjects are the index's own strings: the index does not change
     * while this thread writes them out */
    size_t cap = (size_t)fxb_index_rows_count(rows);
    collector c = {ix, malloc((cap + 1) * sizeof *c.subjects), 0, cap};
    if (c.subjects == NULL) {
        fxb_index_rows_free(rows);
        return oom(err);
    }
    fxb_index_rows_each(rows, collect_row, &c);
    fxb_store *stores[FXB_GRANTOUT_STORES_MAX] = {e->st};
    for (size_t i = 1; i < e->n_stores; i++)
        stores[i] = e->writers[i - 1];
    fxb_code rc = fxb_grantout_run(stores, e->n_stores, &s->p, c.subjects, c.n, BY, grantout_go, e,
                                   NULL, err);
    free(c.subjects);
    e->lists_owed = true; /* the write-out defers them (lists.h), even when it failed */
    uint64_t count = fxb_index_rows_count(rows);
    if (rc == FXB_OK) {
        fxb_err nerr;
        if (fxb_policy_note_match(e->st, s->p.id, now, count, &nerr) != FXB_OK)
            fxb_log(FXB_LOG_WARN, "benefit engine: policy %s: match not recorded: %s", s->p.id,
                    nerr.message);
    }
    if (rc == FXB_OK && rows_out != NULL)
        *rows_out = rows;
    else
        fxb_index_rows_free(rows);
    return rc;
}

/* Ends entitlements found by fxb_ent_each, in batches; `keep` (when not
 * NULL) spares the subjects it holds. */
typedef struct ender {
    eng *e;
    const slot *s;
    const char *reason;
    const rowset *keep;
    char subj[FXB_ENT_BATCH_MAX][SUBJECT_MAX + 1];
    const char *ptr[FXB_ENT_BATCH_MAX];
    size_t n;
    fxb_code rc;
    fxb_err *err;
} ender;

static bool ender_flush(ender *en)
{
    if (en->n == 0)
        return true;
    if (!lease_ok(en->e)) {
        en->rc = interrupted(en->err);
        return false;
    }
    en->rc = end_batch(en->e, en->s, en->ptr, en->n, en->reason, en->err);
    en->n = 0;
    return en->rc == FXB_OK;
}

static bool ender_one(const fxb_ent *ent, void *arg)
{
    ender *en = arg;
    size_t len = strnlen(ent->subject, sizeof ent->subject);
    if (!subject_valid(ent->subject, len))
        return true;
    if (en->keep != NULL && rowset_has(en->keep, ent->subject))
        return true;
    memcpy(en->subj[en->n], ent->subject, len + 1);
    en->ptr[en->n] = en->subj[en->n];
    if (++en->n == FXB_ENT_BATCH_MAX)
        return ender_flush(en);
    return true;
}

#define MASK(st) (1u << (st))

static fxb_code end_each(eng *e, const slot *s, uint32_t mask, const char *reason,
                         const rowset *keep, fxb_err *err)
{
    ender *en = malloc(sizeof *en);
    if (en == NULL)
        return oom(err);
    en->e = e;
    en->s = s;
    en->reason = reason;
    en->keep = keep;
    en->n = 0;
    en->rc = FXB_OK;
    en->err = err;
    fxb_code rc = fxb_ent_each(e->st, s->p.id, mask, ender_one, en, err);
    if (rc == FXB_OK && en->rc == FXB_OK)
        ender_flush(en);
    if (rc == FXB_OK)
        rc = en->rc;
    free(en);
    return skip_refusal(s, "a listing", 0, rc, err);
}

/* The periodic re-check of one policy (engine.h). Past its window
 * (valid_until): what was not granted ends POLICY_EXPIRED, grants stay,
 * nothing new is matched. Before its window (valid_from): nothing yet; the
 * first re-check inside it grants. */
static fxb_code recheck_policy(eng *e, slot *s, fxb_err *err)
{
    int64_t now = fxb_wall_ms();
    if (s->p.valid_until_ms != 0 && now >= s->p.valid_until_ms)
        return end_each(e, s, MASK(FXB_ENT_MATCHED) | MASK(FXB_ENT_CONFIRMED), "POLICY_EXPIRED",
                        NULL, err);
    if (!fxb_policy_in_window(&s->p, now))
        return FXB_OK;
    void *rows;
    fxb_code rc = full_match(e, s, &rows, err);
    if (rc != FXB_OK)
        return rc;
    s->need_full = false;
    rowset rs;
    if (!rowset_init(&rs, e->ix[s->p.subject], rows)) {
        fxb_index_rows_free(rows);
        return oom(err);
    }
    rc = end_each(e, s, MASK(FXB_ENT_MATCHED) | MASK(FXB_ENT_CONFIRMED) | MASK(FXB_ENT_GRANTED),
                  "NO_LONGER_ELIGIBLE", &rs, err);
    free(rs.slots);
    fxb_index_rows_free(rows);
    return rc;
}

/* Names among the unlisted every policy whose unlisted stream holds
 * entries (lists.h: a grant-out batch whose SADD was lost). */
static fxb_code lists_recover(eng *e, fxb_err *err)
{
    const char **ids = calloc(e->n_pols + e->n_closing + 1, sizeof *ids);
    if (ids == NULL)
        return oom(err);
    size_t n = 0;
    for (size_t i = 0; i < e->n_pols; i++)
        ids[n++] = e->pols[i]->p.id;
    for (size_t i = 0; i < e->n_closing; i++)
        ids[n++] = e->closing[i]->p.id;
    size_t found = 0;
    fxb_code rc = fxb_lists_recover(e->st, ids, n, &found, err);
    free(ids);
    if (rc == FXB_OK && found > 0)
        e->lists_owed = true;
    return rc;
}

static fxb_code recheck_all(eng *e, fxb_err *err)
{
    fxb_code lrc = lists_recover(e, err);
    if (lrc != FXB_OK)
        return lrc;
    for (size_t i = 0; i < e->n_pols; i++) {
        slot *s = e->pols[i];
        if (s->rule == NULL)
            continue;
        fxb_code rc = recheck_policy(e, s, err);
        if (rc != FXB_OK) {
            fxb_log(FXB_LOG_WARN, "benefit engine: re-check of policy %s failed: %s", s->p.id,
                    err->message);
            return rc;
        }
    }
    return FXB_OK;
}

/* Work owed by policy changes: closes, then full matches of new ones. */
static fxb_code owed_work(eng *e, fxb_err *err)
{
    while (e->n_closing > 0) {
        slot *c = e->closing[e->n_closing - 1];
        fxb_code rc = end_each(e, c, MASK(FXB_ENT_MATCHED) | MASK(FXB_ENT_CONFIRMED),
                               "POLICY_CLOSED", NULL, err);
        if (rc == FXB_OK)
            rc = closing_done(e, c->p.id, err);
        if (rc != FXB_OK)
            return rc;
        fxb_log(FXB_LOG_INFO, "benefit engine: policy %s closed: not-granted entitlements ended",
                c->p.id);
        slot_free(c);
        e->n_closing--;
    }
    for (size_t i = 0; i < e->n_pols; i++) {
        slot *s = e->pols[i];
        if (!s->need_full || s->rule == NULL)
            continue;
        if (fxb_policy_in_window(&s->p, fxb_wall_ms())) {
            fxb_code rc = full_match(e, s, NULL, err);
            if (rc != FXB_OK)
                return rc;
        }
        s->need_full = false;
    }
    return FXB_OK;
}

/* --- building the index ------------------------------------------------- */

static void drop_state(eng *e)
{
    for (int t = 0; t < 2; t++) {
        fxb_index_free(e->ix[t]);
        e->ix[t] = NULL;
    }
    slots_free(e->pols, e->n_pols);
    e->pols = NULL;
    e->n_pols = 0;
    slots_free(e->closing, e->n_closing);
    e->closing = NULL;
    e->n_closing = 0;
    if (e->schema != NULL)
        fxb_profile_schema_release(e->schema);
    e->schema = NULL;
    e->benefit_rev = -1;
    e->schema_rev = 0;
}

/* What XINFO STREAM says of the change feed. */
typedef struct feed_info {
    bool exists;
    char last_generated[ID_TEXT_MAX + 1]; /* "0-0" when absent */
    char first[ID_TEXT_MAX + 1];          /* first entry still held, "" when none */
    int64_t length;
    int64_t added; /* entries-added (Redis >= 7.0), -1 when not given */
} feed_info;

/* Parses an XINFO STREAM reply (an error reply "no such key": no feed);
 * false for any other shape. r NULL: *out gets the defaults (no feed). */
static bool feed_info_parse(const redisReply *r, feed_info *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->last_generated, sizeof out->last_generated, "0-0");
    out->added = -1;
    if (r == NULL)
        return false;
    if (r->type == REDIS_REPLY_ERROR)
        return strstr(r->str, "no such key") != NULL;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0)
        return false;
    out->exists = true;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS)
            return false;
        if (strcmp(k->str, "length") == 0 && v->type == REDIS_REPLY_INTEGER) {
            out->length = v->integer;
        } else if (strcmp(k->str, "entries-added") == 0 && v->type == REDIS_REPLY_INTEGER) {
            out->added = v->integer;
        } else if (strcmp(k->str, "last-generated-id") == 0 && v->type == REDIS_REPLY_STRING) {
            if (v->len > ID_TEXT_MAX)
                return false;
            snprintf(out->last_generated, sizeof out->last_generated, "%s", v->str);
        } else if (strcmp(k->str, "first-entry") == 0 && v->type == REDIS_REPLY_ARRAY &&
                   v->elements >= 1 && v->element[0]->type == REDIS_REPLY_STRING) {
            if (v->element[0]->len > ID_TEXT_MAX)
                return false;
            snprintf(out->first, sizeof out->first, "%s", v->element[0]->str);
        }
    }
    return true;
}

/* True when entries the engine has not applied (after last_id) are gone
 * from the feed: trimmed by its cap (MAXLEN ~, profile.c) while the engine
 * lagged or did not lead, trimmed or deleted by hand, or the feed itself
 * deleted. Redis trims from the oldest end, so with the count of entries
 * ever added up to last_id (e->fed), changes were lost exactly when more
 * entries have left the feed (entries-added - length) than were added up
 * to last_id. Without entries-added (Redis < 7.0) the test is the first
 * entry still held being after last_id (which also fires when only
 * last_id's own entry was trimmed, a needless rebuild at worst). Read
 * after the XREAD it judges, so a trim in between can only make it fire. */
static bool feed_lost(const eng *e, const feed_info *fi, int64_t *how_many)
{
    *how_many = -1;
    if (!fi->exists)
        return strcmp(e->last_id, "0-0") != 0;
    if (e->fed >= 0 && fi->added >= 0) {
        int64_t gone = fi->added - fi->length;
        if (gone > e->fed) {
            *how_many = gone - e->fed;
            return true;
        }
        return false;
    }
    return fi->first[0] != '\0' && id_less(e->last_id, fi->first);
}

/* XINFO STREAM of the feed when it exists (EXISTS first: no error reply
 * for a feed not there yet). */
static fxb_code feed_info_read(eng *e, feed_info *fi, fxb_err *err)
{
    feed_info_parse(NULL, fi);
    redisReply *r = fxb_store_command(e->st, err, "EXISTS %s", KEY_CHANGES);
    if (r == NULL)
        return err->code;
    bool exists = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (!exists)
        return FXB_OK;
    r = fxb_store_command(e->st, err, "XINFO STREAM %s", KEY_CHANGES);
    if (r == NULL)
        return err->code;
    bool ok = feed_info_parse(r, fi);
    freeReplyObject(r);
    return ok ? FXB_OK : unexpected(err, "XINFO STREAM");
}

/* The feed's last id ("0-0" when empty) into out. */
static fxb_code feed_end(eng *e, char out[ID_TEXT_MAX + 1], fxb_err *err)
{
    redisReply *r = fxb_store_command(e->st, err, "XREVRANGE %s + - COUNT 1", KEY_CHANGES);
    if (r == NULL)
        return err->code;
    fxb_code rc = FXB_OK;
    if (r->type != REDIS_REPLY_ARRAY) {
        rc = unexpected(err, "XREVRANGE");
    } else if (r->elements == 0) {
        snprintf(out, ID_TEXT_MAX + 1, "0-0");
    } else {
        const redisReply *en = r->element[0];
        if (en->type != REDIS_REPLY_ARRAY || en->elements < 1 ||
            en->element[0]->type != REDIS_REPLY_STRING || en->element[0]->len > ID_TEXT_MAX)
            rc = unexpected(err, "XREVRANGE");
        else
            snprintf(out, ID_TEXT_MAX + 1, "%s", en->element[0]->str);
    }
    freeReplyObject(r);
    return rc;
}

/* Indexes one page of profile keys (SCAN result) of one type. */
static fxb_code index_page(eng *e, fxb_subject_type type, const redisReply *keys, fxb_err *err)
{
    size_t n = keys->elements;
    if (n == 0)
        return FXB_OK;
    fxb_arena_reset(&e->batch);
    fxb_store_cmd *cmds = fxb_arena_calloc(&e->batch, n, sizeof *cmds);
    const char **argv = fxb_arena_calloc(&e->batch, 2 * n, sizeof *argv);
    redisReply **replies = fxb_arena_calloc(&e->batch, n, sizeof *replies);
    if (cmds == NULL || argv == NULL || replies == NULL)
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING)
            return unexpected(err, "SCAN");
        argv[2 * i] = "HGETALL";
        argv[2 * i + 1] = keys->element[i]->str;
        cmds[i] = (fxb_store_cmd){2, &argv[2 * i], NULL};
    }
    fxb_code rc = fxb_store_pipeline(e->st, err, n, cmds, replies);
    if (rc != FXB_OK)
        return rc;
    size_t bad = 0;
    for (size_t i = 0; i < n && rc == FXB_OK; i++) {
        /* "{p:<subject>}:profile" */
        const char *key = keys->element[i]->str;
        const char *close = strchr(key, '}');
        if (close == NULL || key[0] != '{' || strlen(key) < 4 || key[2] != ':')
            continue;
        char subj[SUBJECT_MAX + 1];
        size_t len = (size_t)(close - key) - 3;
        if (!subject_valid(key + 3, len) || len > SUBJECT_MAX || key[3] != key[1])
            continue;
        memcpy(subj, key + 3, len);
        subj[len] = '\0';
        if (replies[i] == NULL || replies[i]->type != REDIS_REPLY_ARRAY ||
            replies[i]->elements == 0)
            continue;
        fxb_profile_decoded d;
        if (!fxb_profile_decode(e->schema, type, replies[i], &e->batch, &d)) {
            rc = oom(err);
            break;
        }
        fxb_index_values iv = fxb_profile_decoded_index_values(&d);
        if (fxb_index_set(e->ix[type], subj, &iv) < 0)
            bad++;
    }
    for (size_t i = 0; i < n; i++)
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
    if (bad > 0)
        fxb_log(FXB_LOG_WARN, "benefit engine: %zu profiles could not be indexed", bad);
    return rc;
}

static fxb_code scan_type(eng *e, fxb_subject_type type, fxb_err *err)
{
    const char *match = type == FXB_SUBJECT_PERSON ? "{p:*}:profile" : "{e:*}:profile";
    char cursor[32] = "0";
    do {
        if (!lease_ok(e))
            return interrupted(err);
        redisReply *r =
            fxb_store_command(e->st, err, "SCAN %s MATCH %s COUNT %d", cursor, match, SCAN_COUNT);
        if (r == NULL)
            return err->code;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof cursor ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return unexpected(err, "SCAN");
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        fxb_code rc = index_page(e, type, r->element[1], err);
        freeReplyObject(r);
        if (rc != FXB_OK)
            return rc;
    } while (strcmp(cursor, "0") != 0);
    return FXB_OK;
}

/* Everything from nothing: schema, feed position, both indexes, policies. */
static fxb_code build(eng *e, fxb_err *err)
{
    drop_state(e);
    pthread_mutex_lock(&g.mu);
    g.status.ready = false;
    pthread_mutex_unlock(&g.mu);
    fxb_code rc = fxb_profile_schema_acquire(e->st, &e->schema, err);
    if (rc != FXB_OK)
        return rc;
    e->schema_rev = e->schema->rev;
    /* the feed position first (with the count of entries added up to it,
     * for feed_lost): a change made during the scan is applied again
     * afterwards (harmless), never missed */
    feed_info fi;
    rc = feed_info_read(e, &fi, err);
    if (rc != FXB_OK)
        return rc;
    snprintf(e->last_id, sizeof e->last_id, "%s", fi.last_generated);
    e->fed = fi.exists ? fi.added : 0;
    e->feed_exists = fi.exists;
    uint64_t t0 = mono_ms();
    for (int t = 0; t < 2; t++) {
        e->ix[t] = fxb_index_new(e->schema, (fxb_subject_type)t);
        if (e->ix[t] == NULL)
            return oom(err);
    }
    rc = scan_type(e, FXB_SUBJECT_PERSON, err);
    if (rc == FXB_OK)
        rc = scan_type(e, FXB_SUBJECT_ENTERPRISE, err);
    if (rc != FXB_OK)
        return rc;
    for (int t = 0; t < 2; t++)
        fxb_index_optimize(e->ix[t]);
    fxb_index_stats ps, es;
    fxb_index_stats_get(e->ix[FXB_SUBJECT_PERSON], &ps);
    fxb_index_stats_get(e->ix[FXB_SUBJECT_ENTERPRISE], &es);
    fxb_log(FXB_LOG_INFO,
            "benefit engine: index built under schema rev %" PRId64 ": %" PRIu64
            " persons, %" PRIu64 " enterprises, %" PRIu64 " bitmap bytes, %" PRIu64 " ms",
            e->schema_rev, ps.subjects, es.subjects, ps.bytes + es.bytes, mono_ms() - t0);
    e->need_build = false;
    /* the first pass over the policies is a full re-check: it grants, and
     * ends what changed while no engine was following the feed */
    e->recheck_owed = true;
    e->benefit_rev = -1;
    e->lists_owed = true; /* whatever a previous leader left */
    return FXB_OK;
}

/* --- following the change feed ----------------------------------------- */

typedef struct change {
    const char *subject;
} change;

static int cmp_change(const void *a, const void *b)
{
    return strcmp(((const change *)a)->subject, ((const change *)b)->subject);
}

static bool has_policy(const redisReply *benefits, const char *id)
{
    if (benefits == NULL || benefits->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t i = 0; i < benefits->elements; i++)
        if (benefits->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(benefits->element[i]->str, id) == 0)
            return true;
    return false;
}

static char truth_letter(fxb_truth t)
{
    return t == FXB_TRUE ? 'T' : t == FXB_FALSE ? 'F' : 'U';
}

/* Re-evaluates the changed subjects (distinct, n <= FEED_COUNT) against
 * every published policy of their type. */
static fxb_code apply_subjects(eng *e, change *ch, size_t n, fxb_err *err)
{
    fxb_arena *a = &e->batch;
    /* per subject its profile and its list, then the policies whose list
     * entries are not all written yet (lists.h) */
    fxb_store_cmd *cmds = fxb_arena_calloc(a, 2 * n + 1, sizeof *cmds);
    const char **argv = fxb_arena_calloc(a, 8 * n + 2, sizeof *argv);
    redisReply **replies = fxb_arena_calloc(a, 2 * n + 1, sizeof *replies);
    if (cmds == NULL || argv == NULL || replies == NULL)
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        const char *s = ch[i].subject;
        const char *pk = fxb_arena_printf(a, "{%c:%s}:profile", s[0], s);
        const char *bk = fxb_arena_printf(a, "{%c:%s}:benefits", s[0], s);
        if (pk == NULL || bk == NULL)
            return oom(err);
        const char **v = &argv[8 * i];
        v[0] = "HGETALL";
        v[1] = pk;
        v[2] = "ZRANGE";
        v[3] = bk;
        v[4] = "0";
        v[5] = "-1";
        cmds[2 * i] = (fxb_store_cmd){2, v, NULL};
        cmds[2 * i + 1] = (fxb_store_cmd){4, v + 2, NULL};
    }
    const char **sm = &argv[8 * n];
    sm[0] = "SMEMBERS";
    sm[1] = FXB_LISTS_PENDING;
    cmds[2 * n] = (fxb_store_cmd){2, sm, NULL};
    fxb_code rc = fxb_store_pipeline(e->st, err, 2 * n + 1, cmds, replies);
    if (rc != FXB_OK)
        return rc;
    const redisReply *unlisted = replies[2 * n];
    for (size_t j = 0; j < e->n_pols; j++) {
        slot *s = e->pols[j];
        s->n_match = s->n_end = 0;
        s->grp_match = NULL;
        s->grp_end = NULL;
    }
    int64_t now = fxb_wall_ms();
    uint32_t day = today(now);
    fxb_truth held[FXB_RULE_CONDITIONS_MAX];
    for (size_t i = 0; i < n && rc == FXB_OK; i++) {
        const char *subj = ch[i].subject;
        fxb_subject_type type = type_of(subj);
        const redisReply *h = replies[2 * i], *b = replies[2 * i + 1];
        if (h == NULL || h->type != REDIS_REPLY_ARRAY) {
            /* not a hash (a key written by hand): nothing to evaluate */
            fxb_log(FXB_LOG_WARN, "benefit engine: a changed profile is unreadable; skipped");
            continue;
        }
        fxb_profile_decoded d;
        if (!fxb_profile_decode(e->schema, type, h, a, &d)) {
            rc = oom(err);
            break;
        }
        if (h->elements == 0) {
            fxb_index_remove(e->ix[type], subj);
        } else {
            fxb_index_values iv = fxb_profile_decoded_index_values(&d);
            if (fxb_index_set(e->ix[type], subj, &iv) < 0)
                fxb_log(FXB_LOG_WARN, "benefit engine: a changed profile could not be indexed");
        }
        fxb_profile_view view = fxb_profile_decoded_view(&d);
        for (size_t j = 0; j < e->n_pols; j++) {
            slot *s = e->pols[j];
            if (s->rule == NULL || s->p.subject != type)
                continue;
            fxb_truth t = fxb_rule_eval(s->rule, &view, day, held);
            if (t == FXB_TRUE) {
                if (!fxb_policy_in_window(&s->p, now))
                    continue;
                if (s->grp_match == NULL)
                    s->grp_match = fxb_arena_calloc(a, n, sizeof *s->grp_match);
                char *txt = fxb_arena_alloc(a, s->n_conds + 1);
                if (s->grp_match == NULL || txt == NULL) {
                    rc = oom(err);
                    break;
                }
                for (size_t c = 0; c < s->n_conds; c++)
                    txt[c] = truth_letter(held[c]);
                txt[s->n_conds] = '\0';
                s->grp_match[s->n_match].subject = subj;
                s->grp_match[s->n_match++].held = txt;
            } else if (has_policy(b, s->p.id) || fxb_lists_pending_has(unlisted, s->p.id)) {
                /* (a pending policy may hold it unlisted: an end of a
                 * subject without one changes nothing) */
                if (s->grp_end == NULL)
                    s->grp_end = fxb_arena_calloc(a, n, sizeof *s->grp_end);
                if (s->grp_end == NULL) {
                    rc = oom(err);
                    break;
                }
                s->grp_end[s->n_end++] = subj;
            }
        }
    }
    for (size_t i = 0; i <= 2 * n; i++)
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
    for (size_t j = 0; j < e->n_pols && rc == FXB_OK; j++) {
        slot *s = e->pols[j];
        for (size_t k = 0; k < s->n_match && rc == FXB_OK; k += FXB_ENT_BATCH_MAX) {
            size_t m = s->n_match - k < FXB_ENT_BATCH_MAX ? s->n_match - k : FXB_ENT_BATCH_MAX;
            rc = match_batch(e, s, s->grp_match + k, m, err);
        }
        for (size_t k = 0; k < s->n_end && rc == FXB_OK; k += FXB_ENT_BATCH_MAX) {
            size_t m = s->n_end - k < FXB_ENT_BATCH_MAX ? s->n_end - k : FXB_ENT_BATCH_MAX;
            rc = end_batch(e, s, s->grp_end + k, m, "NO_LONGER_ELIGIBLE", err);
        }
    }
    return rc;
}

/* Applies one XREAD reply; advances last_id only when all of it applied.
 * *got receives the number of entries read. */
static fxb_code apply_feed(eng *e, const redisReply *r, size_t *got, fxb_err *err)
{
    *got = 0;
    if (r->type == REDIS_REPLY_NIL)
        return FXB_OK;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2 ||
        r->element[0]->element[1]->type != REDIS_REPLY_ARRAY)
        return unexpected(err, "XREAD");
    const redisReply *entries = r->element[0]->element[1];
    size_t n = entries->elements;
    if (n == 0)
        return FXB_OK;
    fxb_arena_reset(&e->batch);
    change *ch = fxb_arena_calloc(&e->batch, n, sizeof *ch);
    if (ch == NULL)
        return oom(err);
    size_t k = 0;
    const char *last = NULL;
    for (size_t i = 0; i < n; i++) {
        const redisReply *en = entries->element[i];
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
            en->element[0]->type != REDIS_REPLY_STRING || en->element[0]->len > ID_TEXT_MAX)
            return unexpected(err, "XREAD");
        last = en->element[0]->str;
        const redisReply *kv = en->element[1];
        if (kv->type != REDIS_REPLY_ARRAY)
            continue;
        for (size_t f = 0; f + 1 < kv->elements; f += 2) {
            const redisReply *name = kv->element[f], *val = kv->element[f + 1];
            if (name->type == REDIS_REPLY_STRING && val->type == REDIS_REPLY_STRING &&
                strcmp(name->str, "subject") == 0 && subject_valid(val->str, val->len)) {
                ch[k++].subject = val->str;
                break;
            }
        }
    }
    /* one evaluation per subject however often it changed in the batch */
    qsort(ch, k, sizeof *ch, cmp_change);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || strcmp(ch[u - 1].subject, ch[i].subject) != 0)
            ch[u++] = ch[i];
    fxb_code rc = u > 0 ? apply_subjects(e, ch, u, err) : FXB_OK;
    if (rc != FXB_OK)
        return rc;
    snprintf(e->last_id, sizeof e->last_id, "%s", last);
    *got = n;
    return FXB_OK;
}

/* One XREAD from last_id (blocking block_ms, or not at all with 0), with
 * an XINFO STREAM in the same round trip (O(1)) that tells whether the
 * feed lost changes the engine has not applied (feed_lost). Then nothing
 * of the batch is applied: the engine logs it and rebuilds (a new index
 * from SCAN, then a full re-check of every published policy, which is
 * what the lost changes would have caused). */
static fxb_code read_feed(eng *e, int block_ms, size_t *got, fxb_err *err)
{
    *got = 0;
    char count[16], block[16];
    snprintf(count, sizeof count, "%d", FEED_COUNT);
    snprintf(block, sizeof block, "%d", block_ms);
    const char *xread[] = {"XREAD", "COUNT",   count,       "BLOCK",
                           block,   "STREAMS", KEY_CHANGES, e->last_id};
    const char *xread_now[] = {"XREAD", "COUNT", count, "STREAMS", KEY_CHANGES, e->last_id};
    const char *xinfo[] = {"XINFO", "STREAM", KEY_CHANGES};
    const char *exists[] = {"EXISTS", KEY_CHANGES};
    fxb_store_cmd cmds[] = {
        block_ms > 0 ? (fxb_store_cmd){8, xread, NULL} : (fxb_store_cmd){6, xread_now, NULL},
        e->feed_exists ? (fxb_store_cmd){3, xinfo, NULL} : (fxb_store_cmd){2, exists, NULL}};
    redisReply *rs[2] = {NULL, NULL};
    fxb_code rc = fxb_store_pipeline(e->st, err, 2, cmds, rs);
    if (rc != FXB_OK)
        return rc;
    feed_info fi;
    bool appeared = false;
    if (rs[0]->type == REDIS_REPLY_ERROR) {
        rc = unexpected(err, "XREAD");
    } else if (!e->feed_exists) {
        /* when the feed appeared: nothing applied, read again with XINFO */
        if (rs[1]->type != REDIS_REPLY_INTEGER)
            rc = unexpected(err, "EXISTS");
        else
            appeared = e->feed_exists = rs[1]->integer == 1;
    } else if (!feed_info_parse(rs[1], &fi)) {
        rc = unexpected(err, "XINFO STREAM");
    } else {
        e->feed_exists = fi.exists;
        int64_t lost = -1;
        if (feed_lost(e, &fi, &lost)) {
            if (lost >= 0)
                fxb_log(FXB_LOG_WARN,
                        "benefit engine: the change feed was trimmed past the engine's position "
                        "(unapplied entries gone: %" PRId64 "): rebuilding the index and "
                        "re-checking every policy",
                        lost);
            else
                fxb_log(FXB_LOG_WARN,
                        "benefit engine: profile changes left the change feed before they were "
                        "applied (trimmed or deleted): rebuilding the index and re-checking "
                        "every policy");
            e->need_build = true;
        } else {
            rc = apply_feed(e, rs[0], got, err);
            if (rc == FXB_OK && e->fed >= 0)
                e->fed += (int64_t)*got;
        }
    }
    for (int i = 0; i < 2; i++)
        freeReplyObject(rs[i]);
    if (rc == FXB_OK && appeared)
        return read_feed(e, 0, got, err);
    if (rc == FXB_OK && *got > 0)
        publish_status(e, true);
    return rc;
}

/* --- the leader's loop -------------------------------------------------- */

/* The stored schema and policy revisions, in one round trip. */
static fxb_code read_revs(eng *e, int64_t *schema_rev, int64_t *benefit_rev, fxb_err *err)
{
    const char *a1[] = {"GET", KEY_SCHEMA_REV}, *a2[] = {"GET", FXB_BENEFIT_REV};
    fxb_store_cmd cmds[] = {{2, a1, NULL}, {2, a2, NULL}};
    redisReply *rep[2] = {NULL, NULL};
    fxb_code rc = fxb_store_pipeline(e->st, err, 2, cmds, rep);
    if (rc != FXB_OK)
        return rc;
    int64_t *out[] = {schema_rev, benefit_rev};
    for (int i = 0; i < 2; i++) {
        *out[i] = 0;
        if (rep[i] != NULL && rep[i]->type == REDIS_REPLY_STRING)
            *out[i] = strtoll(rep[i]->str, NULL, 10);
        else if (rep[i] == NULL || rep[i]->type != REDIS_REPLY_NIL)
            rc = unexpected(err, "GET");
        if (rep[i] != NULL)
            freeReplyObject(rep[i]);
    }
    return rc;
}

/* One round of the leader: revisions, owed work, syncs, re-check, feed. */
/* One slice of the list entries owed (lists.h). */
static fxb_code lists_slice(eng *e, fxb_err *err)
{
    fxb_lists_progress pr;
    fxb_code rc = fxb_lists_work(e->st, LISTS_SLICE, &pr, err);
    if (rc != FXB_OK)
        return rc;
    e->listed += pr.listed;
    e->lists_owed = pr.more;
    if (!pr.more && e->listed > 0) {
        fxb_log(FXB_LOG_INFO, "benefit engine: %zu deferred list entries written", e->listed);
        e->listed = 0;
    }
    return FXB_OK;
}

/* Every list entry owed: a sync waits for them (tests read the lists). */
static fxb_code lists_drain(eng *e, fxb_err *err)
{
    while (e->lists_owed) {
        if (!lease_ok(e))
            return interrupted(err);
        fxb_code rc = lists_slice(e, err);
        if (rc != FXB_OK)
            return rc;
    }
    return FXB_OK;
}

static fxb_code step(eng *e, fxb_err *err)
{
    uint64_t want_sync, want_recheck;
    wanted(&want_sync, &want_recheck);
    int64_t schema_rev, benefit_rev;
    fxb_code rc = read_revs(e, &schema_rev, &benefit_rev, err);
    if (rc != FXB_OK)
        return rc;
    if (schema_rev != e->schema_rev) {
        fxb_log(FXB_LOG_INFO, "benefit engine: profile schema rev %" PRId64 ": rebuilding",
                schema_rev);
        e->need_build = true;
        return FXB_OK;
    }
    if (e->check_feed) {
        char end[ID_TEXT_MAX + 1];
        rc = feed_end(e, end, err);
        if (rc != FXB_OK)
            return rc;
        e->check_feed = false;
        if (id_less(end, e->last_id)) {
            fxb_log(FXB_LOG_WARN, "benefit engine: the change feed went backwards: rebuilding");
            e->need_build = true;
            return FXB_OK;
        }
    }
    if (benefit_rev != e->benefit_rev) {
        rc = reload_policies(e, benefit_rev, err);
        if (rc != FXB_OK)
            return rc;
        publish_status(e, true);
    }
    if (e->recheck_owed) {
        int64_t at = fxb_wall_ms();
        rc = recheck_all(e, err);
        if (rc != FXB_OK)
            return rc;
        e->recheck_owed = false;
        e->next_recheck_ms = mono_ms() + (uint64_t)g.recheck_ms;
        mark_rechecked(0, at);
    }
    rc = owed_work(e, err);
    if (rc != FXB_OK)
        return rc;
    pthread_mutex_lock(&g.mu);
    bool sync_owed = want_sync > g.sync_done;
    bool recheck_asked = want_recheck > g.recheck_done;
    pthread_mutex_unlock(&g.mu);
    if (sync_owed) {
        char target[ID_TEXT_MAX + 1];
        rc = feed_end(e, target, err);
        if (rc != FXB_OK)
            return rc;
        while (id_less(e->last_id, target)) {
            if (!lease_ok(e))
                return interrupted(err);
            size_t got;
            rc = read_feed(e, 0, &got, err);
            if (rc != FXB_OK)
                return rc;
            if (e->need_build)
                return FXB_OK; /* changes lost: the sync waits for the rebuild */
            if (got == 0)
                break; /* deleted: nothing more to read */
        }
        rc = lists_drain(e, err);
        if (rc != FXB_OK)
            return rc;
        publish_feed_id(e);
        mark_synced(want_sync);
    }
    if (recheck_asked || mono_ms() >= e->next_recheck_ms) {
        int64_t at = fxb_wall_ms();
        rc = recheck_all(e, err);
        if (rc == FXB_OK && recheck_asked)
            rc = lists_drain(e, err);
        if (rc != FXB_OK)
            return rc;
        e->next_recheck_ms = mono_ms() + (uint64_t)g.recheck_ms;
        mark_rechecked(want_recheck, at);
        return FXB_OK;
    }
    if (!lease_ok(e))
        return interrupted(err);
    if (e->lists_owed) {
        rc = lists_slice(e, err);
        if (rc != FXB_OK)
            return rc;
    }
    size_t got;
    /* with list entries still owed, only a look at the feed */
    rc = read_feed(e, e->lists_owed ? 0 : e->block_ms, &got, err);
    if (rc == FXB_OK && got > 0)
        publish_feed_id(e);
    return rc;
}

/* Leads until the lease is lost or the thread stops. */
static void lead(eng *e)
{
    e->need_build = true;
    e->lost = false;
    e->check_feed = false;
    int backoff = BACKOFF_MIN_MS;
    bool warned = false;
    while (!stopping() && !e->lost) {
        fxb_err err;
        fxb_err_clear(&err);
        fxb_code rc = FXB_OK;
        if (!lease_ok(e))
            break;
        if (e->need_build) {
            rc = build(e, &err);
            if (rc == FXB_OK)
                publish_status(e, true);
        }
        if (rc == FXB_OK && !e->need_build)
            rc = step(e, &err);
        if (rc == FXB_OK) {
            if (warned)
                fxb_log(FXB_LOG_INFO, "benefit engine: working again");
            warned = false;
            backoff = BACKOFF_MIN_MS;
            continue;
        }
        if (stopping() || e->lost)
            break;
        if (strcmp(err.reason, "SCHEMA_MISSING") == 0) {
            /* nothing to index or match yet: syncs have nothing to wait for */
            pthread_mutex_lock(&g.mu);
            g.sync_done = g.sync_req;
            g.recheck_done = g.recheck_req;
            broadcast_locked();
            pthread_mutex_unlock(&g.mu);
            if (!pause_ms(FOLLOW_POLL_MS))
                break;
            continue;
        }
        if (!warned)
            fxb_log(FXB_LOG_WARN, "benefit engine: %s (%s); retrying", err.message, err.reason);
        warned = true;
        if (!pause_ms(backoff))
            break;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    drop_state(e);
}

static void *engine_main(void *arg)
{
    (void)arg;
    eng *e = &g.e;
    int backoff = BACKOFF_MIN_MS;
    while (!stopping()) {
        int t = lease_take(e);
        if (t != 1) {
            set_leader(false);
            if (!pause_ms(t == 0 ? FOLLOW_POLL_MS : backoff))
                break;
            backoff = t == 0 ? BACKOFF_MIN_MS
                             : (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2);
            continue;
        }
        backoff = BACKOFF_MIN_MS;
        fxb_log(FXB_LOG_INFO, "benefit engine: leader");
        set_leader(true);
        lead(e);
        set_leader(false);
        if (!e->lost)
            lease_release(e);
    }
    set_leader(false);
    return NULL;
}

/* --- the API ------------------------------------------------------------ */

static bool random_token(char out[TOKEN_LEN + 1])
{
    unsigned char b[TOKEN_LEN / 2];
    FILE *f = fopen("/dev/urandom", "rb");
    bool ok = f != NULL && fread(b, 1, sizeof b, f) == sizeof b;
    if (f != NULL)
        fclose(f);
    if (!ok)
        return false;
    for (size_t i = 0; i < sizeof b; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return true;
}

static void stores_free(eng *e)
{
    fxb_store_free(e->st);
    e->st = NULL;
    for (size_t i = 0; i + 1 < e->n_stores; i++) {
        fxb_store_free(e->writers[i]);
        e->writers[i] = NULL;
    }
    e->n_stores = 0;
}

fxb_code fxb_engine_start(const fxb_config *cfg, int recheck_ms, fxb_err *err)
{
    pthread_mutex_lock(&g.mu);
    if (g.started) {
        pthread_mutex_unlock(&g.mu);
        return FXB_OK;
    }
    if (!g.cv_ready) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&g.cv, &ca);
        pthread_condattr_destroy(&ca);
        g.cv_ready = true;
    }
    fxb_code rc = FXB_OK;
    if (!random_token(g.token)) {
        rc = fxb_err_set(err, FXB_INTERNAL, "START_FAILED", ZH_BUSY,
                         "cannot draw the benefit engine's lease token");
        goto out;
    }
    snprintf(g.url, sizeof g.url, "%s", cfg->redis_url);
    g.recheck_ms = recheck_ms > 0 ? recheck_ms : 3600000;
    eng *e = &g.e;
    memset(e, 0, sizeof *e);
    e->benefit_rev = -1;
    fxb_arena_init(&e->batch, 0);
    int cmd_ms = cfg->redis_command_timeout_ms > 0 ? cfg->redis_command_timeout_ms : 2000;
    e->block_ms = cmd_ms / 2 < FEED_BLOCK_MS ? cmd_ms / 2 : FEED_BLOCK_MS;
    fxb_store_options so = {.url = g.url,
                            .connect_timeout_ms = cfg->redis_connect_timeout_ms,
                            .command_timeout_ms = cfg->redis_command_timeout_ms};
    e->st = fxb_store_new(&so, err);
    if (e->st == NULL) {
        rc = err->code;
        goto out;
    }
    e->n_stores = 1;
    size_t writers = cfg->benefit_writers >= 1 && cfg->benefit_writers <= FXB_GRANTOUT_STORES_MAX
                         ? (size_t)cfg->benefit_writers
                         : 4;
    while (e->n_stores < writers) {
        e->writers[e->n_stores - 1] = fxb_store_new(&so, err);
        if (e->writers[e->n_stores - 1] == NULL) {
            rc = err->code;
            stores_free(e);
            goto out;
        }
        e->n_stores++;
    }
    memset(&g.status, 0, sizeof g.status);
    snprintf(g.status.feed_id, sizeof g.status.feed_id, "0-0");
    atomic_store(&g.stop, false);
    if (pthread_create(&g.thread, NULL, engine_main, NULL) != 0) {
        stores_free(e);
        rc = fxb_err_set(err, FXB_INTERNAL, "START_FAILED", ZH_BUSY,
                         "cannot start the benefit engine thread");
        goto out;
    }
    g.started = true;
    g.status.running = true;
out:
    pthread_mutex_unlock(&g.mu);
    return rc;
}

void fxb_engine_stop(void)
{
    pthread_mutex_lock(&g.mu);
    bool join = g.started;
    g.started = false;
    atomic_store(&g.stop, true);
    broadcast_locked();
    pthread_mutex_unlock(&g.mu);
    if (!join)
        return;
    pthread_join(g.thread, NULL);
    eng *e = &g.e;
    drop_state(e);
    fxb_arena_free(&e->batch);
    stores_free(e);
    pthread_mutex_lock(&g.mu);
    g.status.running = false;
    g.status.leader = false;
    g.status.ready = false;
    broadcast_locked();
    pthread_mutex_unlock(&g.mu);
}

void fxb_engine_status_get(fxb_engine_status *out)
{
    pthread_mutex_lock(&g.mu);
    *out = g.status;
    pthread_mutex_unlock(&g.mu);
}

static fxb_code not_leader(fxb_err *err)
{
    return fxb_err_set(err, FXB_FAILED_PRECONDITION, "ENGINE_NOT_LEADER", ZH_NOT_LEADER,
                       "the benefit engine of this server is not the leader");
}

fxb_code fxb_engine_sync(bool recheck, int timeout_ms, fxb_engine_status *out, fxb_err *err)
{
    pthread_mutex_lock(&g.mu);
    if (!g.started || !g.status.leader) {
        if (out != NULL)
            *out = g.status;
        pthread_mutex_unlock(&g.mu);
        return not_leader(err);
    }
    uint64_t my = ++g.sync_req;
    uint64_t my_recheck = recheck ? ++g.recheck_req : 0;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    int64_t ns = (int64_t)until.tv_nsec + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000;
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec = (long)(ns % 1000000000);
    fxb_code rc = FXB_OK;
    while (g.sync_done < my || g.recheck_done < my_recheck) {
        if (!g.started || !g.status.leader) {
            rc = not_leader(err);
            break;
        }
        if (pthread_cond_timedwait(&g.cv, &g.mu, &until) == ETIMEDOUT &&
            (g.sync_done < my || g.recheck_done < my_recheck)) {
            rc = fxb_err_set(err, FXB_DEADLINE_EXCEEDED, "ENGINE_BUSY", ZH_BUSY,
                             "the benefit engine did not catch up within %d ms", timeout_ms);
            break;
        }
    }
    if (out != NULL)
        *out = g.status;
    pthread_mutex_unlock(&g.mu);
    return rc;
}
