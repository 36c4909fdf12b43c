/* In-memory revoked-session set fed by Redis pub/sub. The set is an
 * open-addressing hash table of (sid, forget_at_ms) under a rwlock; expired
 * entries are dropped when the table is rebuilt on growth or on the
 * subscriber's periodic prune. */
#include "auth/revocation.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "server/handler.h"

#define SID_MAX      64
#define PRUNE_MS     60000
#define READ_TIMEOUT 500
#define BACKOFF_MAX  2000

typedef struct slot {
    char sid[SID_MAX + 1]; /* "" = empty */
    int64_t forget_at_ms;
} slot;

struct fxb_revocation {
    pthread_rwlock_t lock;
    slot *slots;
    size_t cap, used; /* power-of-two capacity; used counts occupied slots */
    fxb_store_url url;
    int connect_timeout_ms;
    pthread_t thread;
    atomic_bool stop;
    atomic_bool synced;
};

static uint64_t hash_sid(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

/* Caller holds the write lock. Returns false when full and cannot grow. */
static bool insert_locked(fxb_revocation *r, const char *sid, int64_t forget_at, int64_t now);

static bool rebuild_locked(fxb_revocation *r, size_t cap, int64_t now)
{
    slot *old = r->slots;
    size_t old_cap = r->cap;
    slot *n = calloc(cap, sizeof *n);
    if (n == NULL)
        return false;
    r->slots = n;
    r->cap = cap;
    r->used = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].sid[0] && old[i].forget_at_ms > now)
            insert_locked(r, old[i].sid, old[i].forget_at_ms, now);
    free(old);
    return true;
}

static bool insert_locked(fxb_revocation *r, const char *sid, int64_t forget_at, int64_t now)
{
    if (strlen(sid) > SID_MAX || sid[0] == '\0')
        return false;
    if ((r->used + 1) * 2 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        /* grow only if pruning expired entries does not make room */
        size_t live = 0;
        for (size_t i = 0; i < r->cap; i++)
            if (r->slots[i].sid[0] && r->slots[i].forget_at_ms > now)
                live++;
        while ((live + 1) * 2 > cap)
            cap *= 2;
        if (live >= FXB_REVOCATION_MAX || !rebuild_locked(r, cap, now))
            return false;
    }
    size_t mask = r->cap - 1;
    for (size_t i = hash_sid(sid) & mask;; i = (i + 1) & mask) {
        slot *sl = &r->slots[i];
        if (sl->sid[0] == '\0') {
            strcpy(sl->sid, sid);
            sl->forget_at_ms = forget_at;
            r->used++;
            return true;
        }
        if (strcmp(sl->sid, sid) == 0) {
            if (forget_at > sl->forget_at_ms)
                sl->forget_at_ms = forget_at;
            return true;
        }
    }
}

static void add(fxb_revocation *r, const char *sid, int64_t forget_at)
{
    pthread_rwlock_wrlock(&r->lock);
    insert_locked(r, sid, forget_at, fxb_wall_ms());
    pthread_rwlock_unlock(&r->lock);
}

fxb_revoked fxb_revocation_check(fxb_revocation *r, const char *sid, int64_t now_ms)
{
    fxb_revoked res = FXB_REVOKED_NO;
    pthread_rwlock_rdlock(&r->lock);
    if (r->cap > 0) {
        size_t mask = r->cap - 1;
        for (size_t i = hash_sid(sid) & mask;; i = (i + 1) & mask) {
            const slot *sl = &r->slots[i];
            if (sl->sid[0] == '\0')
                break;
            if (strcmp(sl->sid, sid) == 0) {
                /* an id is revoked for good; forget_at only bounds memory
                 * (every token of the session has expired by then) */
                res = FXB_REVOKED_YES;
                break;
            }
        }
    }
    pthread_rwlock_unlock(&r->lock);
    (void)now_ms;
    if (res == FXB_REVOKED_NO && !atomic_load(&r->synced))
        return FXB_REVOKED_UNKNOWN;
    return res;
}

bool fxb_revocation_synced(fxb_revocation *r)
{
    return atomic_load(&r->synced);
}

uint64_t fxb_revocation_size(fxb_revocation *r)
{
    pthread_rwlock_rdlock(&r->lock);
    uint64_t n = r->used;
    pthread_rwlock_unlock(&r->lock);
    return n;
}

fxb_code fxb_revocation_publish(fxb_revocation *r, fxb_store *s, const char *sid, int64_t now_ms,
                                fxb_err *err)
{
    int64_t forget = now_ms + FXB_REVOCATION_KEEP_MS;
    if (r)
        add(r, sid, forget);
    char score[32];
    snprintf(score, sizeof score, "%lld", (long long)forget);
    const char *zadd[] = {"ZADD", FXB_REVOKED_KEY, score, sid};
    const char *pub[] = {"PUBLISH", FXB_REVOKED_CHANNEL, sid};
    char now[32];
    snprintf(now, sizeof now, "(%lld", (long long)now_ms);
    const char *trim[] = {"ZREMRANGEBYSCORE", FXB_REVOKED_KEY, "-inf", now};
    fxb_store_cmd cmds[3] = {{4, zadd, NULL}, {3, pub, NULL}, {4, trim, NULL}};
    redisReply *replies[3] = {NULL, NULL, NULL};
    fxb_code rc = fxb_store_pipeline(s, err, 3, cmds, replies);
    for (int i = 0; i < 3; i++) {
        if (rc == FXB_OK && replies[i] && replies[i]->type == REDIS_REPLY_ERROR)
            rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", "系统繁忙，请稍后重试",
                             "recording a revocation failed");
        if (replies[i])
            freeReplyObject(replies[i]);
    }
    return rc;
}

/* --- subscriber thread -------------------------------------------------- */

static redisContext *connect_url(const fxb_revocation *r)
{
    struct timeval tv = {r->connect_timeout_ms / 1000, (r->connect_timeout_ms % 1000) * 1000};
    redisContext *c = r->url.is_unix ? redisConnectUnixWithTimeout(r->url.host, tv)
                                     : redisConnectWithTimeout(r->url.host, r->url.port, tv);
    if (c == NULL || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    if (r->url.db != 0) {
        redisReply *rep = redisCommand(c, "SELECT %d", r->url.db);
        bool ok = rep && rep->type != REDIS_REPLY_ERROR;
        if (rep)
            freeReplyObject(rep);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

/* Loads every live entry of the sorted set. */
static bool load_all(fxb_revocation *r)
{
    redisContext *c = connect_url(r);
    if (c == NULL)
        return false;
    struct timeval tv = {2, 0};
    redisSetTimeout(c, tv);
    int64_t now = fxb_wall_ms();
    redisReply *rep =
        redisCommand(c, "ZRANGEBYSCORE %s %lld +inf WITHSCORES", FXB_REVOKED_KEY, (long long)now);
    bool ok = rep && rep->type == REDIS_REPLY_ARRAY;
    if (ok) {
        for (size_t i = 0; i + 1 < rep->elements; i += 2) {
            if (rep->element[i]->type == REDIS_REPLY_STRING &&
                rep->element[i + 1]->type == REDIS_REPLY_STRING)
                add(r, rep->element[i]->str, strtoll(rep->element[i + 1]->str, NULL, 10));
        }
    }
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return ok;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *subscriber_main(void *arg)
{
    fxb_revocation *r = arg;
    int backoff = 50;
    int64_t last_prune = fxb_wall_ms();
    while (!atomic_load(&r->stop)) {
        redisContext *c = connect_url(r);
        redisReply *rep = c ? redisCommand(c, "SUBSCRIBE %s", FXB_REVOKED_CHANNEL) : NULL;
        /* subscribe first, then load: nothing published in between is lost */
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR || !load_all(r)) {
            if (rep)
                freeReplyObject(rep);
            if (c)
                redisFree(c);
            sleep_ms(backoff);
            backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
            continue;
        }
        freeReplyObject(rep);
        backoff = 50;
        struct timeval tv = {0, READ_TIMEOUT * 1000};
        redisSetTimeout(c, tv);
        atomic_store(&r->synced, true);
        while (!atomic_load(&r->stop)) {
            void *reply = NULL;
            if (redisGetReply(c, &reply) != REDIS_OK) {
                if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    /* read timeout: the connection is fine, nothing came */
                    c->err = 0;
                    c->errstr[0] = '\0';
                    int64_t now = fxb_wall_ms();
                    if (now - last_prune > PRUNE_MS) {
                        pthread_rwlock_wrlock(&r->lock);
                        rebuild_locked(r, r->cap ? r->cap : 1024, now);
                        pthread_rwlock_unlock(&r->lock);
                        last_prune = now;
                    }
                    continue;
                }
                break;
            }
            redisReply *m = reply;
            if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
                m->element[2]->type == REDIS_REPLY_STRING)
                add(r, m->element[2]->str, fxb_wall_ms() + FXB_REVOCATION_KEEP_MS);
            freeReplyObject(m);
        }
        atomic_store(&r->synced, false);
        redisFree(c);
    }
    return NULL;
}

fxb_revocation *fxb_revocation_start(const char *url, int connect_timeout_ms, fxb_err *err)
{
    fxb_revocation *r = calloc(1, sizeof *r);
    if (r == NULL) {
        fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统错误", "out of memory");
        return NULL;
    }
    if (fxb_store_url_parse(url, &r->url, err) != FXB_OK) {
        free(r);
        return NULL;
    }
    r->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : 1000;
    pthread_rwlock_init(&r->lock, NULL);
    atomic_init(&r->stop, false);
    atomic_init(&r->synced, false);
    if (pthread_create(&r->thread, NULL, subscriber_main, r) != 0) {
        pthread_rwlock_destroy(&r->lock);
        free(r);
        fxb_err_set(err, FXB_INTERNAL, "START_FAILED", "系统错误", "cannot start a thread");
        return NULL;
    }
    return r;
}

void fxb_revocation_stop(fxb_revocation *r)
{
    if (r == NULL)
        return;
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    pthread_rwlock_destroy(&r->lock);
    free(r->slots);
    free(r);
}
