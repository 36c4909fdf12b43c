/* Live inbox push. A subscription never holds a worker: it is a registry
 * entry plus a read position. Whoever appends a notice publishes the
 * subject id (store/inbox.c, same round trip as the XADD; a batch publishes
 * its subjects together); one subscriber thread per process turns each
 * publication into a wake-up event posted to the local subscriptions of
 * the subjects it names, and each subscription, on its own
 * worker, reads its stream from the id after the last one it sent. Stream
 * ids only grow, so "after the last sent id" is the whole protocol: no gap
 * and no duplicate, across wake-ups, reconnects of the subscriber (which
 * wakes everyone, for what was published while it was away) and reconnects
 * of the client (which resumes with after_id). A reader that does not keep
 * up costs the send queue's bound: reading stops when fxb_ctx_send reports
 * the queue full and resumes on on_writable; the messages wait in Redis.
 * Messages the inbox trimmed (it keeps the latest FXB_INBOX_MAX) before a
 * reader asked for them are gone: the reader sees the ids jump.
 *
 * Keys and channels:
 *   fxb:inbox:new               channel: a subject id per appended notice
 *                               (published by fxb_inbox_append), or the
 *                               subjects of a batch's round trip separated
 *                               by "\n" (fxb_inbox_append_batch). Pub/sub
 *                               ignores the database number: deployments
 *                               sharing one Redis see each other's wake-ups
 *                               (harmless: a woken reader finds nothing)
 *   {u:<id>}:inbox, {e:<eid>}:inbox, ...:inbox:read
 *                               the streams and read marks (store/inbox.h)
 *   fxb:push:online:<subject>   string: live subscriptions of the subject on
 *                               all servers; +1 when one starts (MULTI INCR
 *                               + EXPIRE), -1 when it ends (deleted at 0),
 *                               TTL ONLINE_TTL_S refreshed every REFRESH_MS
 *                               by each server for the subjects it serves,
 *                               so a crashed server's counts vanish within
 *                               ONLINE_TTL_S. fxb_inbox_append reads it: a
 *                               subject online is not sent to the outbox;
 *                               the push adaptor reads it at send time for
 *                               multicast entries
 *   fxb:push:outbox             stream of notices for the vendor push
 *                               adaptor (capped ~100,000), in two shapes
 *                               (store/inbox.h): single, subject,
 *                               message_id, kind, title (fxb_inbox_append,
 *                               only for a subject offline at write time);
 *                               multicast, kind, title, n, subjects and
 *                               message_ids ("\n" between the n of each,
 *                               same order; one per kind and title of a
 *                               round trip of fxb_inbox_append_batch), for
 *                               vendors that send one message to many
 *                               devices. A multicast entry names EVERY
 *                               recipient of the batch, online or not: the
 *                               adaptor skips, when it sends, each subject
 *                               whose fxb:push:online:<subject> counter is
 *                               > 0 then (its device got the notice live).
 *                               In production it is left to that adaptor
 *                               (its own consumer group); in development
 *                               this thread is the adaptor: consumer
 *                               "fxb-server" of group "dev-sink" moves
 *                               every entry, a single one as it is, a
 *                               multicast one as one single-shape entry
 *                               per subject offline at send time, to
 *   fxb:dev:push                stream (development only, capped ~10,000):
 *                               what the vendor would have pushed, in the
 *                               single shape only; tests read it. */
#include "services/inbox/push.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "fxb/v1/inbox.pb-c.h"
#include "server/log.h"
#include "server/runtime.h"
#include "store/inbox.h"
#include "store/keys.h"
#include "store/store.h"

/* Entries read per XRANGE at most; fewer when the send queue holds some. */
#define READ_BATCH 64
/* Presence: TTL of a counter, and how often each server refreshes it. */
#define ONLINE_TTL_S 90
#define REFRESH_MS   30000
/* The subscriber's socket read timeout: how often the thread looks at its
 * housekeeping (shutdown, presence, dev sink) when nothing is published. */
#define READ_TIMEOUT_MS 200
#define BACKOFF_MIN_MS  50
#define BACKOFF_MAX_MS  2000
/* Development sink: how often and how much it moves per run (a read
 * script, a presence read, a copy script; each script atomic, so Redis
 * serves nobody else meanwhile): at most SINK_BATCH entries and, once they
 * make SINK_COPIES copies, no further entry. A
 * multicast entry of up to FXB_PUSH_MULTICAST_MAX subjects becomes that
 * many copies, so a run of 256 such entries would be 256,000 XADDs (about
 * half a second of Redis); bounded by copies it is at most SINK_COPIES +
 * FXB_PUSH_MULTICAST_MAX - 1 (measured here: 2,000 copies in 3.4 ms, so a
 * worst-case run takes about 5 ms), while 256 single-shape entries still
 * move in one run. SINK_RUNS_MAX runs per period keep up with about 80,000
 * copies a second, more than the sink (capped at DEV_SINK_MAX) keeps. */
#define SINK_PERIOD_MS 200
#define SINK_BATCH     256
#define SINK_COPIES    2000
#define SINK_RUNS_MAX  8
#define DEV_SINK_KEY   "fxb:dev:push"
#define DEV_SINK_MAX   10000
#define DEV_GROUP      "dev-sink"
#define DEV_CONSUMER   "fxb-server"
/* Registry hash table: initial bucket count (a power of two). */
#define BUCKETS_MIN 256

/* "<ms>-<seq>", both unsigned 64-bit decimals. */
#define ID_PART_MAX 20
#define ID_TEXT_MAX (2 * ID_PART_MAX + 1)
#define KEY_MAX     (FXB_KEY_ID_MAX + 32)

#define ZH_BUSY     "系统繁忙，请稍后重试"
#define ZH_SHUTDOWN "服务正在重启，请稍后重试"

/* Events posted to a subscription. Static tokens: nothing to free. */
#define EV_WAKE     ((void *)(intptr_t)1)
#define EV_SHUTDOWN ((void *)(intptr_t)2)

typedef struct stream_id {
    uint64_t ms, seq;
} stream_id;

typedef struct push_entry push_entry;

/* One subscription, in its call's arena (alive while the registry holds
 * its ctx reference). Fields marked "worker" are touched only by the
 * call's worker; links only under reg.mu. */
typedef struct push_sub {
    struct push_sub *next, *prev; /* the subject's list (reg.mu) */
    push_entry *entry;            /* NULL once unregistered (reg.mu) */
    fxb_ctx *ctx;
    atomic_bool wake_pending;                /* an EV_WAKE is posted and not yet handled */
    bool counted;                            /* worker: the presence counter was raised */
    bool paused;                             /* worker: the send queue was full */
    bool have_last;                          /* worker: last is set; else from the oldest */
    stream_id last;                          /* worker: the last id sent */
    char key[KEY_MAX];                       /* the inbox stream */
    char mark_key[KEY_MAX + sizeof ":read"]; /* its read mark */
    char online_key[KEY_MAX];                /* the presence counter */
} push_sub;

/* The subscriptions of one subject; in a bucket chain and in the list of
 * all entries. */
struct push_entry {
    push_entry *chain;
    push_entry *all_next, *all_prev;
    push_sub *subs;
    size_t n;
    char subject[FXB_KEY_ID_MAX + 1];
};

/* The process-wide registry and thread: the one hidden global of this
 * module. */
static struct {
    pthread_mutex_t mu;
    push_entry **buckets;
    size_t n_buckets, n_entries, n_subs;
    push_entry *all;
    bool started; /* the thread was created */
    bool joined;  /* fxb_inbox_push_stop took it */
    bool down;    /* shutting down: subscriptions end, new ones refused */
    pthread_t thread;
    atomic_bool stop;
    /* the thread's setup and connections (globals, so they stay reachable
     * for leak checkers even if the process exits with the thread running) */
    fxb_store_url url;
    int connect_timeout_ms;
    bool dev_sink;
    fxb_store *cmd;
    redisContext *sub;
} reg = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* --- stream ids --------------------------------------------------------- */

static bool id_part(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > ID_PART_MAX || (n > 1 && s[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Strict "<ms>-<seq>" (what Redis writes); false for anything else. */
static bool id_parse(const char *s, stream_id *out)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, ID_TEXT_MAX + 1);
    if (n > ID_TEXT_MAX)
        return false;
    const char *dash = memchr(s, '-', n);
    if (dash == NULL)
        return false;
    size_t head = (size_t)(dash - s);
    return id_part(s, head, &out->ms) && id_part(dash + 1, n - head - 1, &out->seq);
}

static bool id_le(const stream_id *a, const stream_id *b)
{
    return a->ms < b->ms || (a->ms == b->ms && a->seq <= b->seq);
}

/* The smallest id above *id into buf (an inclusive XRANGE start: "(" would
 * fail past the largest id); false when there is none. */
static bool id_after(const stream_id *id, char *buf, size_t cap)
{
    if (id->seq < UINT64_MAX)
        snprintf(buf, cap, "%" PRIu64 "-%" PRIu64, id->ms, id->seq + 1);
    else if (id->ms < UINT64_MAX)
        snprintf(buf, cap, "%" PRIu64 "-0", id->ms + 1);
    else
        return false;
    return true;
}

/* --- registry ----------------------------------------------------------- */

static uint64_t hash_subject(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

/* Caller holds reg.mu. */
static push_entry *entry_find(const char *subject)
{
    if (reg.buckets == NULL)
        return NULL;
    push_entry *e = reg.buckets[hash_subject(subject) & (reg.n_buckets - 1)];
    while (e != NULL && strcmp(e->subject, subject) != 0)
        e = e->chain;
    return e;
}

/* Caller holds reg.mu. Doubles the table when it is full; a failed growth
 * leaves longer chains, which still work. */
static void buckets_grow(void)
{
    size_t cap = reg.n_buckets ? reg.n_buckets * 2 : BUCKETS_MIN;
    push_entry **b = calloc(cap, sizeof *b);
    if (b == NULL)
        return;
    for (push_entry *e = reg.all; e != NULL; e = e->all_next) {
        size_t i = hash_subject(e->subject) & (cap - 1);
        e->chain = b[i];
        b[i] = e;
    }
    free(reg.buckets);
    reg.buckets = b;
    reg.n_buckets = cap;
}

/* Caller holds reg.mu. NULL when out of memory. */
static push_entry *entry_get(const char *subject)
{
    push_entry *e = entry_find(subject);
    if (e != NULL)
        return e;
    if (reg.n_entries >= reg.n_buckets)
        buckets_grow();
    if (reg.buckets == NULL)
        return NULL;
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    snprintf(e->subject, sizeof e->subject, "%s", subject);
    size_t i = hash_subject(subject) & (reg.n_buckets - 1);
    e->chain = reg.buckets[i];
    reg.buckets[i] = e;
    e->all_next = reg.all;
    if (reg.all)
        reg.all->all_prev = e;
    reg.all = e;
    reg.n_entries++;
    return e;
}

/* Caller holds reg.mu; e has no subscription left. */
static void entry_remove(push_entry *e)
{
    push_entry **p = &reg.buckets[hash_subject(e->subject) & (reg.n_buckets - 1)];
    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    if (e->all_prev)
        e->all_prev->all_next = e->all_next;
    else
        reg.all = e->all_next;
    if (e->all_next)
        e->all_next->all_prev = e->all_prev;
    reg.n_entries--;
    free(e);
}

/* Caller holds reg.mu: once down and empty, the table goes. */
static void maybe_free_table(void)
{
    if (reg.down && reg.n_subs == 0 && reg.buckets != NULL) {
        free(reg.buckets);
        reg.buckets = NULL;
        reg.n_buckets = 0;
    }
}

/* Caller holds reg.mu. At most one EV_WAKE per subscription is in flight:
 * a burst of publications costs one read, and the mailbox stays bounded. */
static void wake(push_sub *s)
{
    if (!atomic_exchange(&s->wake_pending, true) && !fxb_ctx_post(s->ctx, EV_WAKE))
        atomic_store(&s->wake_pending, false); /* the call has ended */
}

/* Wakes the local subscriptions of every subject a publication names: one
 * subject id, or several separated by "\n" (a batch's round trip,
 * store/inbox.h). A piece that is empty or longer than an id names nobody. */
static void wake_subjects(const char *payload, size_t len)
{
    char subject[FXB_KEY_ID_MAX + 1];
    pthread_mutex_lock(&reg.mu);
    const char *p = payload, *end = payload + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl != NULL ? nl : end) - p);
        if (n > 0 && n <= FXB_KEY_ID_MAX) {
            memcpy(subject, p, n);
            subject[n] = '\0';
            push_entry *e = entry_find(subject);
            for (push_sub *s = e ? e->subs : NULL; s != NULL; s = s->next)
                wake(s);
        }
        p += n + 1;
    }
    pthread_mutex_unlock(&reg.mu);
}

static void wake_all(void)
{
    pthread_mutex_lock(&reg.mu);
    for (push_entry *e = reg.all; e != NULL; e = e->all_next)
        for (push_sub *s = e->subs; s != NULL; s = s->next)
            wake(s);
    pthread_mutex_unlock(&reg.mu);
}

/* Caller holds reg.mu. Every open subscription ends UNAVAILABLE; a call
 * that has already ended refuses the post, and its on_end unregisters. */
static void shut_down_locked(void)
{
    if (reg.down)
        return;
    reg.down = true;
    for (push_entry *e = reg.all; e != NULL; e = e->all_next)
        for (push_sub *s = e->subs; s != NULL; s = s->next)
            fxb_ctx_post(s->ctx, EV_SHUTDOWN);
}

/* The server began draining without fxb_inbox_push_stop (the lazy start):
 * any registered call can tell, since the runtime frees a server only
 * after every call ended, and a call is registered until its on_end. */
static void notice_shutdown(void)
{
    pthread_mutex_lock(&reg.mu);
    if (!reg.down && reg.all != NULL && fxb_ctx_shutting_down(reg.all->subs->ctx))
        shut_down_locked();
    /* down and drained: nothing is left to do (a lazily started thread
     * ends here; fxb_inbox_push_stop still joins it) */
    if (reg.down && reg.n_subs == 0)
        atomic_store(&reg.stop, true);
    pthread_mutex_unlock(&reg.mu);
}

size_t fxb_inbox_push_count(void)
{
    pthread_mutex_lock(&reg.mu);
    size_t n = reg.n_subs;
    pthread_mutex_unlock(&reg.mu);
    return n;
}

/* --- the subscriber thread ---------------------------------------------- */

static int64_t mono_ms(void)
{
    return (int64_t)(fxb_now_us() / 1000u);
}

static redisContext *connect_url(void)
{
    struct timeval tv = {reg.connect_timeout_ms / 1000, (reg.connect_timeout_ms % 1000) * 1000};
    redisContext *c = reg.url.is_unix ? redisConnectUnixWithTimeout(reg.url.host, tv)
                                      : redisConnectWithTimeout(reg.url.host, reg.url.port, tv);
    if (c == NULL || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    /* SUBSCRIBE must not hang on a Redis that accepts but does not answer;
     * pub/sub ignores the database: nothing to SELECT */
    redisSetTimeout(c, tv);
    return c;
}

/* The development sink plays the vendor push adaptor in three steps per
 * run, so that presence is read at send time and every key a script
 * touches is in its KEYS (the presence counters are one key per subject,
 * read in C):
 *   1. sink_read_script takes entries for consumer "fxb-server": first its
 *      own pending ones (left by a run that stopped or crashed after
 *      step 1), then new ones;
 *   2. one pipelined MGET per well-formed multicast entry reads its
 *      subjects' presence counters;
 *   3. sink_copy_script, per entry, XACKs it and only if the XACK took it
 *      off the pending list (1) copies it to the sink, skipping the
 *      multicast subjects found online: ack and copy are atomic, so an
 *      entry is copied once, even when two servers of one deployment read
 *      the same pending entry (same consumer name).
 * A crash or a Redis failure between the steps leaves the entries pending
 * and the next run reads them again: nothing is lost. */

/* KEYS[1] the outbox; ARGV: group, consumer, entries at most, copies at
 * most, FXB_PUSH_MULTICAST_MAX. Creates the group when absent, then reads
 * entries one at a time (the consumer's pending ones first, then new
 * ones) until it has `entries` of them or they make at least `copies`
 * copies (a multicast entry counts its n when that is plain decimal
 * 1..max, any other entry 1): a run costs Redis at most about copies +
 * max - 1 XADDs whatever the shapes. Returns {entries as XREADGROUP
 * returns them (id, fields or nil for a deleted one), 1 when it stopped at
 * a bound (more may wait), else 0}. */
static fxb_script sink_read_script =
    FXB_SCRIPT("push_dev_sink_read",
               "redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')\n"
               "local entries, copies = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
               "local nmax = tonumber(ARGV[5])\n"
               "local out, cost, from = {}, 0, '0'\n"
               "while #out < entries and cost < copies do\n"
               "  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1,\n"
               "                       'STREAMS', KEYS[1], from)\n"
               "  local e = r and r[1][2][1]\n"
               "  if e then\n"
               "    out[#out + 1] = e\n"
               "    if from ~= '>' then from = e[1] end\n"
               "    local c, f = 1, e[2]\n"
               "    if f and #f <= 64 then\n"
               "      for i = 1, #f - 1, 2 do\n"
               "        local v = f[i + 1]\n"
               "        if f[i] == 'n' and #v <= 9 and string.match(v, '^[1-9]%d*$') and\n"
               "           tonumber(v) <= nmax then c = tonumber(v) end\n"
               "      end\n"
               "    end\n"
               "    cost = cost + c\n"
               "  elseif from == '>' then\n"
               "    return {out, 0}\n"
               "  else\n"
               "    from = '>'\n"
               "  end\n"
               "end\n"
               "return {out, 1}\n");

/* KEYS[1] the outbox, KEYS[2] the dev sink; ARGV: group, sink cap,
 * FXB_PUSH_MULTICAST_MAX, then per entry its id and its presence mask (for
 * a multicast entry, "1" at place k when subject k is online, "0" or
 * nothing when not; "" for other entries). Each entry that is still
 * pending is acked and copied, a single-shape entry as it is, a
 * multicast one (store/inbox.h) as one single-shape entry per offline
 * subject, in order. A malformed multicast entry (n not 1..max in plain
 * decimal, a list with another count of pieces or an empty one, kind or
 * title missing), an entry of more than 32 fields or one deleted from the
 * outbox is acked and dropped: one bad entry must not stop the queue.
 * Returns {entries acked, copies made}. */
static fxb_script sink_copy_script = FXB_SCRIPT(
    "push_dev_sink_copy",
    "local group, cap, nmax = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
    "local function split(s, n)\n"
    "  local out, pos = {}, 1\n"
    "  while #out < n do\n"
    "    local i = string.find(s, '\\n', pos, true)\n"
    "    local piece = string.sub(s, pos, i and i - 1 or -1)\n"
    "    if piece == '' then return nil end\n"
    "    out[#out + 1] = piece\n"
    "    if not i then break end\n"
    "    pos = i + 1\n"
    "    if #out == n then return nil end\n"
    "  end\n"
    "  if #out ~= n then return nil end\n"
    "  return out\n"
    "end\n"
    "local moved, copied = 0, 0\n"
    "for a = 4, #ARGV - 1, 2 do\n"
    "  local id, mask = ARGV[a], ARGV[a + 1]\n"
    "  if redis.call('XACK', KEYS[1], group, id) == 1 then\n"
    "    moved = moved + 1\n"
    "    local e = redis.call('XRANGE', KEYS[1], id, id)[1]\n"
    "    local f = e and e[2]\n"
    "    if f and #f <= 64 then\n"
    "      local m = {}\n"
    "      for i = 1, #f - 1, 2 do m[f[i]] = f[i + 1] end\n"
    "      if m.n or m.subjects or m.message_ids then\n"
    "        local n = m.n and #m.n <= 9 and string.match(m.n, '^[1-9]%d*$') and tonumber(m.n)\n"
    "        local subs, ids\n"
    "        if n and n <= nmax and m.kind and m.title and m.subjects and m.message_ids then\n"
    "          subs = split(m.subjects, n)\n"
    "          ids = subs and split(m.message_ids, n)\n"
    "        end\n"
    "        if ids then\n"
    "          for k = 1, n do\n"
    "            if string.byte(mask, k) ~= 49 then\n"
    "              redis.call('XADD', KEYS[2], 'MAXLEN', '~', cap, '*', 'subject', subs[k],\n"
    "                         'message_id', ids[k], 'kind', m.kind, 'title', m.title)\n"
    "              copied = copied + 1\n"
    "            end\n"
    "          end\n"
    "        end\n"
    "      else\n"
    "        redis.call('XADD', KEYS[2], 'MAXLEN', '~', cap, '*', unpack(f))\n"
    "        copied = copied + 1\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {moved, copied}\n");

/* One entry of a sink run: its id and, for a well-formed multicast entry,
 * its n subjects (the "subjects" value, "\n" between) to look up. */
typedef struct sink_entry {
    const char *id;
    const char *subjects; /* NULL: nothing to look up */
    size_t subjects_len;
    size_t n;
    const char *mask; /* "" or n bytes of '0' / '1' */
} sink_entry;

/* The value of field name in an entry's field array, or NULL. */
static const redisReply *sink_field(const redisReply *f, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == len && memcmp(k->str, name, len) == 0)
            return f->element[i + 1]->type == REDIS_REPLY_STRING ? f->element[i + 1] : NULL;
    }
    return NULL;
}

/* Fills e from one XREADGROUP entry; false when it has no id. The subjects
 * are looked up when the entry is multicast with n (plain decimal,
 * 1..FXB_PUSH_MULTICAST_MAX) non-empty subjects, as sink_copy_script
 * checks: otherwise that script copies it whole or drops it anyway. */
static bool sink_entry_parse(const redisReply *x, sink_entry *e)
{
    *e = (sink_entry){.mask = ""};
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
        x->element[0]->type != REDIS_REPLY_STRING)
        return false;
    e->id = x->element[0]->str;
    const redisReply *f = x->element[1];
    if (f->type != REDIS_REPLY_ARRAY || f->elements > 64)
        return true;
    const redisReply *n = sink_field(f, "n"), *subs = sink_field(f, "subjects");
    if (n == NULL || subs == NULL || n->len == 0 || n->len > 9 || n->str[0] == '0')
        return true;
    size_t v = 0;
    for (size_t i = 0; i < n->len; i++) {
        if (n->str[i] < '0' || n->str[i] > '9')
            return true;
        v = v * 10 + (size_t)(n->str[i] - '0');
    }
    if (v > FXB_PUSH_MULTICAST_MAX)
        return true;
    /* exactly v pieces, none empty */
    size_t pieces = 1, start = 0;
    for (size_t i = 0; i <= subs->len; i++) {
        if (i < subs->len && subs->str[i] != '\n')
            continue;
        if (i == start)
            return true;
        if (i < subs->len)
            pieces++;
        start = i + 1;
    }
    if (pieces != v)
        return true;
    e->subjects = subs->str;
    e->subjects_len = subs->len;
    e->n = v;
    return true;
}

/* Reads the presence of the subjects of entries e[0..n) (one pipelined
 * MGET per entry with subjects) and points each one's mask into masks
 * (room for the sum of their n plus n bytes). An entry whose MGET failed
 * keeps mask "": all its subjects count as offline (a redundant push is
 * better than a lost one). False when Redis could not be reached: the
 * entries stay pending for the next run. */
static bool sink_presence(sink_entry *e, size_t n, char *masks)
{
    size_t lookups = 0, keys = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].subjects == NULL)
            continue;
        lookups++;
        keys += e[i].n;
        bytes += e[i].n * (sizeof FXB_PUSH_ONLINE_PREFIX - 1) + e[i].subjects_len;
    }
    if (lookups == 0)
        return true;
    const char **argv = malloc((keys + lookups) * sizeof *argv);
    size_t *argvlen = malloc((keys + lookups) * sizeof *argvlen);
    char *buf = malloc(bytes);
    fxb_store_cmd *cmds = malloc(lookups * sizeof *cmds);
    redisReply **replies = malloc(lookups * sizeof *replies);
    bool ok = argv != NULL && argvlen != NULL && buf != NULL && cmds != NULL && replies != NULL;
    if (ok) {
        size_t a = 0, b = 0, c = 0;
        for (size_t i = 0; i < n; i++) {
            if (e[i].subjects == NULL)
                continue;
            cmds[c++] = (fxb_store_cmd){(int)(1 + e[i].n), argv + a, argvlen + a};
            argv[a] = "MGET";
            argvlen[a++] = 4;
            const char *p = e[i].subjects, *end = p + e[i].subjects_len;
            for (size_t k = 0; k < e[i].n; k++) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t len = (size_t)((nl != NULL ? nl : end) - p);
                argv[a] = buf + b;
                memcpy(buf + b, FXB_PUSH_ONLINE_PREFIX, sizeof FXB_PUSH_ONLINE_PREFIX - 1);
                b += sizeof FXB_PUSH_ONLINE_PREFIX - 1;
                memcpy(buf + b, p, len);
                b += len;
                argvlen[a] = (size_t)(buf + b - argv[a]);
                a++;
                p = nl != NULL ? nl + 1 : end;
            }
        }
        fxb_err err;
        ok = fxb_store_pipeline(reg.cmd, &err, lookups, cmds, replies) == FXB_OK;
    }
    if (ok) {
        size_t c = 0, m = 0;
        for (size_t i = 0; i < n; i++) {
            if (e[i].subjects == NULL)
                continue;
            const redisReply *r = replies[c++];
            if (r->type != REDIS_REPLY_ARRAY || r->elements != e[i].n)
                continue;
            char *mask = masks + m;
            for (size_t k = 0; k < e[i].n; k++) {
                const redisReply *v = r->element[k];
                /* absent, unreadable or not positive: nobody listens */
                bool online = v->type == REDIS_REPLY_STRING && strtoll(v->str, NULL, 10) > 0;
                masks[m++] = online ? '1' : '0';
            }
            masks[m++] = '\0';
            e[i].mask = mask;
        }
        for (size_t j = 0; j < lookups; j++)
            freeReplyObject(replies[j]);
    }
    free(argv);
    free(argvlen);
    free(buf);
    free(cmds);
    free(replies);
    return ok;
}

/* One run of the sink (see above). True when it stopped at a bound and
 * more entries may wait. */
static bool sink_run(void)
{
    char entries[16], copies[16], max[16], multicast[16];
    snprintf(entries, sizeof entries, "%d", SINK_BATCH);
    snprintf(copies, sizeof copies, "%d", SINK_COPIES);
    snprintf(max, sizeof max, "%d", DEV_SINK_MAX);
    snprintf(multicast, sizeof multicast, "%d", FXB_PUSH_MULTICAST_MAX);
    const char *read_keys[] = {FXB_PUSH_OUTBOX};
    const char *read_args[] = {DEV_GROUP, DEV_CONSUMER, entries, copies, multicast};
    fxb_err err;
    redisReply *r =
        fxb_store_eval(reg.cmd, &err, &sink_read_script, 1, read_keys, 5, read_args, NULL);
    if (r == NULL)
        return false;
    const redisReply *list = NULL;
    bool more = false;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements <= SINK_BATCH) {
        list = r->element[0];
        more = r->element[1]->type == REDIS_REPLY_INTEGER && r->element[1]->integer == 1;
    }
    if (list == NULL || list->elements == 0) {
        freeReplyObject(r);
        return false;
    }
    sink_entry e[SINK_BATCH];
    size_t n = 0, mask_bytes = 0;
    for (size_t i = 0; i < list->elements; i++)
        if (sink_entry_parse(list->element[i], &e[n])) {
            mask_bytes += e[n].n + 1;
            n++;
        }
    char *masks = malloc(mask_bytes);
    bool ok = masks != NULL && sink_presence(e, n, masks);
    if (ok) {
        const char *copy_keys[] = {FXB_PUSH_OUTBOX, DEV_SINK_KEY};
        const char *args[3 + 2 * SINK_BATCH] = {DEV_GROUP, max, multicast};
        for (size_t i = 0; i < n; i++) {
            args[3 + 2 * i] = e[i].id;
            args[4 + 2 * i] = e[i].mask;
        }
        redisReply *c = fxb_store_eval(reg.cmd, &err, &sink_copy_script, 2, copy_keys,
                                       (int)(3 + 2 * n), args, NULL);
        if (c != NULL)
            freeReplyObject(c);
        ok = c != NULL;
    }
    free(masks);
    freeReplyObject(r);
    return ok && more;
}

static void dev_sink(void)
{
    for (int run = 0; run < SINK_RUNS_MAX; run++)
        if (!sink_run())
            return;
}

/* EXPIRE on the counter of every subject served here. Only refreshed,
 * never re-created: a counter lost to an outage makes the subject look
 * offline (a redundant vendor push) until its next subscription, which is
 * better than a stale one that would suppress pushes. */
static void refresh_presence(void)
{
    pthread_mutex_lock(&reg.mu);
    size_t n = reg.n_entries;
    char(*subjects)[FXB_KEY_ID_MAX + 1] = n ? malloc(n * sizeof *subjects) : NULL;
    size_t k = 0;
    for (push_entry *e = reg.all; subjects != NULL && e != NULL && k < n; e = e->all_next)
        memcpy(subjects[k++], e->subject, sizeof e->subject);
    pthread_mutex_unlock(&reg.mu);
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", ONLINE_TTL_S);
    /* pipelined in slices: one round trip per 256 subjects */
    enum { SLICE = 256 };
    char keys[SLICE][KEY_MAX];
    const char *argv[SLICE][3];
    fxb_store_cmd cmds[SLICE];
    redisReply *replies[SLICE];
    for (size_t i = 0; i < k; i += SLICE) {
        size_t m = k - i < SLICE ? k - i : SLICE;
        for (size_t j = 0; j < m; j++) {
            snprintf(keys[j], sizeof keys[j], "%s%s", FXB_PUSH_ONLINE_PREFIX, subjects[i + j]);
            argv[j][0] = "EXPIRE";
            argv[j][1] = keys[j];
            argv[j][2] = ttl;
            cmds[j] = (fxb_store_cmd){3, argv[j], NULL};
        }
        fxb_err err;
        if (fxb_store_pipeline(reg.cmd, &err, m, cmds, replies) != FXB_OK)
            break;
        for (size_t j = 0; j < m; j++)
            freeReplyObject(replies[j]);
    }
    free(subjects);
}

typedef struct housekeeping {
    int64_t last_refresh, last_sink;
} housekeeping;

/* Runs between reads: shutdown detection, presence, dev sink. */
static void housekeep(housekeeping *h)
{
    notice_shutdown();
    int64_t now = mono_ms();
    if (now - h->last_refresh >= REFRESH_MS) {
        h->last_refresh = now;
        refresh_presence();
    }
    if (reg.dev_sink && now - h->last_sink >= SINK_PERIOD_MS) {
        h->last_sink = now;
        dev_sink();
    }
}

/* Sleeps ms in slices, keeping house; false when told to stop. */
static bool pause_ms(int ms, housekeeping *h)
{
    int64_t until = mono_ms() + ms;
    while (!atomic_load(&reg.stop)) {
        housekeep(h);
        int64_t left = until - mono_ms();
        if (left <= 0)
            return true;
        if (left > READ_TIMEOUT_MS)
            left = READ_TIMEOUT_MS;
        struct timespec ts = {0, (long)left * 1000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* Reads publications until the connection breaks or the thread stops. */
static void listen_on(redisContext *c, housekeeping *h)
{
    struct timeval tv = {0, READ_TIMEOUT_MS * 1000};
    redisSetTimeout(c, tv);
    int64_t last_house = mono_ms();
    while (!atomic_load(&reg.stop)) {
        void *reply = NULL;
        if (redisGetReply(c, &reply) != REDIS_OK) {
            if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                /* the read timed out: the connection is fine, nothing came */
                c->err = 0;
                c->errstr[0] = '\0';
                housekeep(h);
                last_house = mono_ms();
                continue;
            }
            return;
        }
        redisReply *m = reply;
        if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
            m->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(m->element[0]->str, "message") == 0 && m->element[2]->type == REDIS_REPLY_STRING)
            wake_subjects(m->element[2]->str, m->element[2]->len);
        freeReplyObject(m);
        /* a steady flood must not starve the housekeeping */
        if (mono_ms() - last_house >= READ_TIMEOUT_MS) {
            housekeep(h);
            last_house = mono_ms();
        }
    }
}

static void *push_main(void *arg)
{
    (void)arg;
    housekeeping h = {.last_refresh = mono_ms(), .last_sink = 0};
    int backoff = BACKOFF_MIN_MS;
    bool warned = false;
    while (!atomic_load(&reg.stop)) {
        reg.sub = connect_url();
        redisReply *r = reg.sub ? redisCommand(reg.sub, "SUBSCRIBE %s", FXB_INBOX_CHANNEL) : NULL;
        bool ok = r != NULL && r->type == REDIS_REPLY_ARRAY;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            if (reg.sub) {
                redisFree(reg.sub);
                reg.sub = NULL;
            }
            if (!warned)
                fxb_log(FXB_LOG_WARN, "inbox push: cannot subscribe to Redis; retrying");
            warned = true;
            if (!pause_ms(backoff, &h))
                break;
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        if (warned)
            fxb_log(FXB_LOG_INFO, "inbox push: subscribed again");
        warned = false;
        backoff = BACKOFF_MIN_MS;
        /* whatever was published while we were not listening */
        wake_all();
        listen_on(reg.sub, &h);
        redisFree(reg.sub);
        reg.sub = NULL;
    }
    fxb_store_free(reg.cmd);
    reg.cmd = NULL;
    return NULL;
}

/* Caller holds reg.mu. */
static fxb_code start_locked(const fxb_config *cfg, fxb_err *err)
{
    if (reg.started)
        return FXB_OK;
    if (reg.down)
        return fxb_err_set(err, FXB_FAILED_PRECONDITION, "SHUTTING_DOWN", ZH_SHUTDOWN,
                           "inbox push was stopped");
    if (fxb_store_url_parse(cfg->redis_url, &reg.url, err) != FXB_OK)
        return err->code;
    reg.connect_timeout_ms =
        cfg->redis_connect_timeout_ms > 0 ? cfg->redis_connect_timeout_ms : 1000;
    reg.dev_sink = cfg->env == FXB_ENV_DEVELOPMENT;
    fxb_store_options so = {.url = cfg->redis_url,
                            .connect_timeout_ms = cfg->redis_connect_timeout_ms,
                            .command_timeout_ms = cfg->redis_command_timeout_ms};
    reg.cmd = fxb_store_new(&so, err);
    if (reg.cmd == NULL)
        return err->code;
    atomic_store(&reg.stop, false);
    if (pthread_create(&reg.thread, NULL, push_main, NULL) != 0) {
        fxb_store_free(reg.cmd);
        reg.cmd = NULL;
        return fxb_err_set(err, FXB_INTERNAL, "START_FAILED", ZH_BUSY,
                           "cannot start the inbox push thread");
    }
    reg.started = true;
    return FXB_OK;
}

fxb_code fxb_inbox_push_start(const fxb_config *cfg, fxb_err *err)
{
    pthread_mutex_lock(&reg.mu);
    fxb_code rc = start_locked(cfg, err);
    pthread_mutex_unlock(&reg.mu);
    return rc;
}

void fxb_inbox_push_stop(void)
{
    pthread_mutex_lock(&reg.mu);
    shut_down_locked();
    bool join = reg.started && !reg.joined;
    reg.joined = true;
    maybe_free_table();
    pthread_mutex_unlock(&reg.mu);
    atomic_store(&reg.stop, true);
    if (join)
        pthread_join(reg.thread, NULL);
}

/* --- a subscription ----------------------------------------------------- */

/* A stream entry's field, "" when absent. */
static const char *field_of(const redisReply *kv, const char *name)
{
    const char *v = fxb_store_hash_get(kv, name);
    return v != NULL ? v : "";
}

static fxb_next fail_unexpected(fxb_ctx *ctx, const char *what)
{
    fxb_ctx_fail(ctx, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY, "%s answered in an unexpected shape",
                 what);
    return FXB_NEXT_FINISH;
}

/* Sends what follows s->last, batch by batch, until caught up or the send
 * queue is full (then on_writable resumes). Each batch is one round trip:
 * XRANGE and the read mark (same hash tag), so read flags are current. */
static fxb_next pump(fxb_ctx *ctx, push_sub *s)
{
    while (!s->paused) {
        char start[ID_TEXT_MAX + 1] = "-";
        if (s->have_last && !id_after(&s->last, start, sizeof start))
            return FXB_NEXT_CONTINUE; /* the largest id was sent: nothing can follow */
        size_t queued = fxb_ctx_send_queued(ctx);
        size_t want = queued < FXB_STREAM_MAX_QUEUED ? FXB_STREAM_MAX_QUEUED - queued : 1;
        if (want > READ_BATCH)
            want = READ_BATCH;
        char count[24];
        snprintf(count, sizeof count, "%zu", want);
        const char *xrange[] = {"XRANGE", s->key, start, "+", "COUNT", count};
        const char *get[] = {"GET", s->mark_key};
        fxb_store_cmd cmds[2] = {{6, xrange, NULL}, {2, get, NULL}};
        redisReply *r[2] = {NULL, NULL};
        fxb_err err;
        if (fxb_store_pipeline(fxb_ctx_store(ctx), &err, 2, cmds, r) != FXB_OK) {
            fxb_ctx_fail_err(ctx, &err);
            return FXB_NEXT_FINISH;
        }
        stream_id mark = {0, 0};
        if (r[1]->type == REDIS_REPLY_STRING && !id_parse(r[1]->str, &mark))
            mark = (stream_id){0, 0}; /* unreadable: nothing read (as ListMessages) */
        const redisReply *page = r[0];
        if (page->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r[0]);
            freeReplyObject(r[1]);
            return fail_unexpected(ctx, "XRANGE of an inbox");
        }
        size_t n = page->elements;
        fxb_next next = FXB_NEXT_CONTINUE;
        for (size_t i = 0; i < n; i++) {
            const redisReply *e = page->element[i];
            stream_id id;
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[0]->type != REDIS_REPLY_STRING ||
                e->element[1]->type != REDIS_REPLY_ARRAY || !id_parse(e->element[0]->str, &id)) {
                next = fail_unexpected(ctx, "XRANGE of an inbox");
                break;
            }
            const redisReply *kv = e->element[1];
            Fxb__V1__InboxMessage m = FXB__V1__INBOX_MESSAGE__INIT;
            m.message_id = e->element[0]->str;
            m.kind = (char *)field_of(kv, "kind");
            m.title = (char *)field_of(kv, "title");
            m.body = (char *)field_of(kv, "body");
            m.ref = (char *)field_of(kv, "ref");
            m.at_ms = strtoll(field_of(kv, "at_ms"), NULL, 10);
            m.read = id_le(&id, &mark);
            fxb_code rc = fxb_ctx_send(ctx, &m.base);
            if (rc == FXB_RESOURCE_EXHAUSTED) {
                s->paused = true; /* the rest stays in Redis */
                break;
            }
            if (rc != FXB_OK) {
                next = FXB_NEXT_FINISH; /* the call ended */
                break;
            }
            s->last = id;
            s->have_last = true;
        }
        freeReplyObject(r[0]);
        freeReplyObject(r[1]);
        if (next != FXB_NEXT_CONTINUE || n < want)
            return next;
    }
    return FXB_NEXT_CONTINUE;
}

/* KEYS[1] a presence counter: -1, deleted at 0 (and never created by a
 * decrement, if it expired meanwhile). */
static fxb_script offline_script =
    FXB_SCRIPT("push_offline", "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                               "local n = redis.call('DECR', KEYS[1])\n"
                               "if n <= 0 then redis.call('DEL', KEYS[1]) end\n"
                               "return n\n");

/* Raises the presence counter (MULTI: never a counter without its TTL).
 * Best effort: a failure only means the subject looks offline. */
static void count_online(fxb_ctx *ctx, push_sub *s)
{
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", ONLINE_TTL_S);
    const char *multi[] = {"MULTI"};
    const char *incr[] = {"INCR", s->online_key};
    const char *expire[] = {"EXPIRE", s->online_key, ttl};
    const char *exec[] = {"EXEC"};
    fxb_store_cmd cmds[4] = {{1, multi, NULL}, {2, incr, NULL}, {3, expire, NULL}, {1, exec, NULL}};
    redisReply *r[4];
    fxb_err err;
    if (fxb_store_pipeline(fxb_ctx_store(ctx), &err, 4, cmds, r) != FXB_OK)
        return;
    s->counted = r[3]->type == REDIS_REPLY_ARRAY && r[3]->elements == 2 &&
                 r[3]->element[0]->type == REDIS_REPLY_INTEGER;
    for (int i = 0; i < 4; i++)
        freeReplyObject(r[i]);
}

static fxb_next refuse(fxb_ctx *ctx, fxb_code code, const char *reason, const char *zh,
                       const char *msg)
{
    fxb_ctx_fail(ctx, code, reason, zh, "%s", msg);
    return FXB_NEXT_FINISH;
}

fxb_next fxb_inbox_push_subscribe(fxb_ctx *ctx, const char *subject, const char *after_id)
{
    if (fxb_ctx_shutting_down(ctx))
        return refuse(ctx, FXB_UNAVAILABLE, "SHUTTING_DOWN", ZH_SHUTDOWN,
                      "the server is shutting down");
    push_sub *s = fxb_arena_calloc(fxb_ctx_arena(ctx), 1, sizeof *s);
    if (s == NULL)
        return refuse(ctx, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    const char *tag = fxb_inbox_tag(subject);
    int n1 = tag ? snprintf(s->key, sizeof s->key, "{%s:%s}:inbox", tag, subject) : -1;
    int n2 = snprintf(s->mark_key, sizeof s->mark_key, "%s:read", s->key);
    int n3 = snprintf(s->online_key, sizeof s->online_key, "%s%s", FXB_PUSH_ONLINE_PREFIX, subject);
    if (n1 < 0 || (size_t)n1 >= sizeof s->key || n2 < 0 || (size_t)n2 >= sizeof s->mark_key ||
        n3 < 0 || (size_t)n3 >= sizeof s->online_key)
        return refuse(ctx, FXB_INTERNAL, "KEY_INVALID", ZH_BUSY,
                      "the subject's id cannot form a key");
    if (after_id != NULL && after_id[0] != '\0') {
        if (!id_parse(after_id, &s->last))
            return refuse(ctx, FXB_INVALID_ARGUMENT, "MESSAGE_ID_INVALID", "消息标识无效",
                          "after_id must be a message id \"<ms>-<seq>\" (unsigned decimals)");
        s->have_last = true;
    }
    s->ctx = ctx;
    atomic_init(&s->wake_pending, false);

    /* register first, read second: a message published in between wakes
     * us, and the read finds it either way */
    fxb_err err;
    fxb_err_clear(&err);
    pthread_mutex_lock(&reg.mu);
    fxb_code rc = reg.down ? fxb_err_set(&err, FXB_FAILED_PRECONDITION, "SHUTTING_DOWN",
                                         ZH_SHUTDOWN, "inbox push was stopped")
                           : start_locked(fxb_ctx_config(ctx), &err);
    push_entry *e = NULL;
    if (rc == FXB_OK && reg.n_subs >= FXB_PUSH_MAX_SUBSCRIPTIONS)
        rc = fxb_err_set(&err, FXB_RESOURCE_EXHAUSTED, "TOO_MANY_SUBSCRIPTIONS", ZH_BUSY,
                         "this server holds too many subscriptions");
    if (rc == FXB_OK && (e = entry_get(subject)) == NULL)
        rc = fxb_err_set(&err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY, "out of memory");
    if (rc == FXB_OK && e->n >= FXB_PUSH_MAX_PER_SUBJECT)
        rc = fxb_err_set(
            &err, FXB_RESOURCE_EXHAUSTED, "TOO_MANY_SUBSCRIPTIONS", "该消息箱同时打开的订阅过多",
            "at most %d subscriptions of one inbox per server", FXB_PUSH_MAX_PER_SUBJECT);
    if (rc == FXB_OK) {
        fxb_ctx_ref(ctx);
        s->entry = e;
        s->next = e->subs;
        if (e->subs)
            e->subs->prev = s;
        e->subs = s;
        e->n++;
        reg.n_subs++;
        fxb_ctx_set_user(ctx, s);
    } else if (e != NULL && e->n == 0) {
        entry_remove(e);
    }
    pthread_mutex_unlock(&reg.mu);
    if (rc != FXB_OK) {
        if (err.code == FXB_FAILED_PRECONDITION) /* stopped: the server is going down */
            return refuse(ctx, FXB_UNAVAILABLE, "SHUTTING_DOWN", ZH_SHUTDOWN,
                          "the server is shutting down");
        fxb_ctx_fail_err(ctx, &err);
        return FXB_NEXT_FINISH;
    }
    count_online(ctx, s);
    return pump(ctx, s);
}

fxb_next fxb_inbox_push_on_event(fxb_ctx *ctx, void *event)
{
    push_sub *s = fxb_ctx_user(ctx);
    if (event == EV_SHUTDOWN)
        return refuse(ctx, FXB_UNAVAILABLE, "SHUTTING_DOWN", ZH_SHUTDOWN,
                      "the server is shutting down");
    if (s == NULL || event != EV_WAKE)
        return FXB_NEXT_CONTINUE;
    /* While paused the flag stays set, so publications post nothing:
     * on_writable reads from the last sent id anyway. A queue that is empty
     * is not full (a failed enqueue reports full too): read again. */
    if (s->paused && fxb_ctx_send_queued(ctx) > 0)
        return FXB_NEXT_CONTINUE;
    s->paused = false;
    /* cleared before reading: a publication from now on posts again */
    atomic_store(&s->wake_pending, false);
    return pump(ctx, s);
}

fxb_next fxb_inbox_push_on_writable(fxb_ctx *ctx)
{
    push_sub *s = fxb_ctx_user(ctx);
    if (s == NULL)
        return FXB_NEXT_CONTINUE;
    s->paused = false;
    atomic_store(&s->wake_pending, false);
    return pump(ctx, s);
}

void fxb_inbox_push_on_end(fxb_ctx *ctx, bool cancelled)
{
    (void)cancelled;
    push_sub *s = fxb_ctx_user(ctx);
    if (s == NULL)
        return;
    bool registered = false;
    pthread_mutex_lock(&reg.mu);
    push_entry *e = s->entry;
    if (e != NULL) {
        if (s->prev)
            s->prev->next = s->next;
        else
            e->subs = s->next;
        if (s->next)
            s->next->prev = s->prev;
        s->entry = NULL;
        if (--e->n == 0)
            entry_remove(e);
        reg.n_subs--;
        registered = true;
        maybe_free_table();
    }
    pthread_mutex_unlock(&reg.mu);
    if (s->counted) {
        const char *keys[] = {s->online_key};
        fxb_err err;
        redisReply *r =
            fxb_store_eval(fxb_ctx_store(ctx), &err, &offline_script, 1, keys, 0, NULL, NULL);
        if (r)
            freeReplyObject(r);
        s->counted = false;
    }
    fxb_ctx_set_user(ctx, NULL);
    if (registered)
        fxb_ctx_unref(ctx);
}
