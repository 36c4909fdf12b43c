/* Inbox streams: one XADD per notice, checked fields only, trimmed to about
 * FXB_INBOX_MAX entries by Redis itself (MAXLEN ~ trims whole nodes, which
 * costs nothing on the write path), pipelined with the live-push wake-up
 * (PUBLISH) and, for a single notice, the presence read that decides
 * whether it also goes to the vendor push outbox (a second round trip,
 * offline subjects only: the outbox entry needs the id Redis just gave). A
 * batch wakes once per round trip, not once per notice (one PUBLISH of all
 * its subjects), and reads no presence at all: it queues one multicast
 * outbox entry per kind and title of the round trip naming every
 * recipient, and the vendor push adaptor skips, when it sends, the
 * subjects online then (the presence MGET cost Redis about 0.55 us per
 * notice, some 6 % of a bulk notice's write, and presence at send time is
 * the fresher answer anyway). Reading and read marks live in the
 * InboxService (services/inbox), which owns the scripts over both keys. */
#include "store/inbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/keys.h"

/* An enterprise id: "e" + 24 lower-case hex (services/enterprise). */
#define EID_HEX 24
/* Room the header promises for id_out. */
#define ID_OUT_MAX 32

static bool eid_valid(const char *s)
{
    if (strnlen(s, EID_HEX + 2) != EID_HEX + 1 || s[0] != 'e')
        return false;
    for (size_t i = 1; i <= EID_HEX; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

const char *fxb_inbox_tag(const char *subject)
{
    if (!fxb_key_id_valid(subject))
        return NULL;
    return eid_valid(subject) ? "e" : "u";
}

bool fxb_inbox_key(char *buf, size_t cap, const char *subject)
{
    const char *tag = fxb_inbox_tag(subject);
    if (buf == NULL || tag == NULL)
        return false;
    int n = snprintf(buf, cap, "{%s:%s}:inbox", tag, subject);
    return n > 0 && (size_t)n < cap;
}

static bool kind_valid(const char *kind)
{
    size_t n = kind ? strnlen(kind, FXB_INBOX_KIND_MAX + 1) : 0;
    if (n == 0 || n > FXB_INBOX_KIND_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = kind[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_'))
            return false;
    }
    return true;
}

/* Well-formed UTF-8 of n bytes (no overlongs, surrogates or values past
 * U+10FFFF): the fields go out as proto3 strings, which must be UTF-8. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return false;
        i += len;
    }
    return true;
}

/* min..max bytes of UTF-8. */
static bool text_valid(const char *s, size_t min, size_t max)
{
    size_t n = strnlen(s, max + 1);
    return n >= min && n <= max && utf8_valid((const unsigned char *)s, n);
}

static fxb_code invalid(fxb_err *err, const char *field)
{
    return fxb_err_set(err, FXB_INVALID_ARGUMENT, "INBOX_MESSAGE_INVALID", "系统繁忙，请稍后重试",
                       "inbox message: %s is invalid", field);
}

/* Queues the notice for the vendor push adaptor (offline devices). Titles
 * carry no personal data (see the header), so they may leave the system;
 * bodies stay in the inbox. Best effort: a failure only counts in
 * fxb_store_error_count. */
static void outbox_add(fxb_store *s, const char *subject, const char *id, const char *kind,
                       const char *title)
{
    char max[16];
    snprintf(max, sizeof max, "%d", FXB_PUSH_OUTBOX_MAX);
    const char *argv[] = {"XADD",  FXB_PUSH_OUTBOX, "MAXLEN", "~",    max,  "*",     "subject",
                          subject, "message_id",    id,       "kind", kind, "title", title};
    fxb_err err;
    redisReply *r = fxb_store_commandv(s, &err, (int)(sizeof argv / sizeof argv[0]), argv, NULL);
    if (r != NULL)
        freeReplyObject(r);
}

/* The room an inbox key needs. */
#define INBOX_KEY_MAX (FXB_KEY_ID_MAX + 16)

/* Checks one notice (body and ref NULL = "") and writes its stream key to
 * key (INBOX_KEY_MAX bytes). Returns NULL when it may be appended, else the
 * name of the first field that is not valid. */
static const char *message_check(const char *subject, const char *kind, const char *title,
                                 const char *body, const char *ref, char *key)
{
    if (!fxb_inbox_key(key, INBOX_KEY_MAX, subject))
        return "subject";
    if (!kind_valid(kind))
        return "kind";
    if (title == NULL || !text_valid(title, 1, FXB_INBOX_TITLE_MAX))
        return "title";
    if (body != NULL && !text_valid(body, 0, FXB_INBOX_BODY_MAX))
        return "body";
    if (ref != NULL && !text_valid(ref, 0, FXB_INBOX_REF_MAX))
        return "ref";
    return NULL;
}

fxb_code fxb_inbox_append(fxb_store *s, const char *subject, const char *kind, const char *title,
                          const char *body, const char *ref, int64_t now_ms, char *id_out,
                          fxb_err *err)
{
    if (body == NULL)
        body = "";
    if (ref == NULL)
        ref = "";
    char key[INBOX_KEY_MAX];
    const char *bad = message_check(subject, kind, title, body, ref, key);
    if (bad != NULL)
        return invalid(err, bad);
    if (now_ms < 0)
        return invalid(err, "at_ms");
    char at[24], max[16];
    snprintf(at, sizeof at, "%" PRId64, now_ms);
    snprintf(max, sizeof max, "%d", FXB_INBOX_MAX);
    char online[sizeof FXB_PUSH_ONLINE_PREFIX + FXB_KEY_ID_MAX];
    snprintf(online, sizeof online, "%s%s", FXB_PUSH_ONLINE_PREFIX, subject);
    /* one round trip: the notice, the wake-up of every server's
     * subscriptions (published after the XADD, so a woken reader finds it),
     * and whether anyone is listening */
    const char *xadd[] = {"XADD",  key,   "MAXLEN", "~",  max,   "*", "kind",  kind,
                          "title", title, "body",   body, "ref", ref, "at_ms", at};
    const char *publish[] = {"PUBLISH", FXB_INBOX_CHANNEL, subject};
    const char *get[] = {"GET", online};
    fxb_store_cmd cmds[3] = {
        {(int)(sizeof xadd / sizeof xadd[0]), xadd, NULL}, {3, publish, NULL}, {2, get, NULL}};
    redisReply *r[3] = {NULL, NULL, NULL};
    fxb_code rc = fxb_store_pipeline(s, err, 3, cmds, r);
    if (rc != FXB_OK)
        return rc;
    bool ok = r[0]->type == REDIS_REPLY_STRING && r[0]->len < ID_OUT_MAX;
    char id[ID_OUT_MAX];
    if (ok)
        memcpy(id, r[0]->str, r[0]->len + 1);
    else if (r[0]->type == REDIS_REPLY_ERROR)
        rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", "系统繁忙，请稍后重试",
                         "XADD of an inbox failed");
    else
        rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", "系统繁忙，请稍后重试",
                         "XADD of an inbox answered in an unexpected shape");
    /* a counter that is absent, unreadable or not positive: nobody listens */
    bool offline = r[2]->type != REDIS_REPLY_STRING || strtoll(r[2]->str, NULL, 10) <= 0;
    for (int i = 0; i < 3; i++)
        freeReplyObject(r[i]);
    if (!ok)
        return rc;
    if (id_out != NULL)
        memcpy(id_out, id, strlen(id) + 1);
    if (offline)
        outbox_add(s, subject, id, kind, title);
    return FXB_OK;
}

/* Notices per pipelined round trip of fxb_inbox_append_batch: their XADDs
 * and ONE PUBLISH naming all their subjects, after the outbox entries of
 * the chunk before (which need the ids its XADDs returned): one multicast
 * entry per (kind, title) of its notices, so a batch of n costs about
 * n / BATCH_CHUNK + 1 round trips and n + 1 commands per chunk plus one
 * per group (a bulk notice is one group; before, a PUBLISH, a GET and an
 * outbox XADD per notice each cost Redis about as much as the inbox XADD,
 * and a presence MGET per chunk still about 6 % of the whole: presence
 * is now the vendor push adaptor's check, at send time). A thousand per round trip
 * (the benefit engine's batch: two round trips) rather than a few
 * hundred: with appendfsync always every round trip waits for an fsync,
 * and a thousand notices keep Redis busy for only a few ms. */
#define BATCH_CHUNK 1000

/* Hash slots of the (kind, title) groups of a round trip: a power of two
 * at least twice BATCH_CHUNK, so probes stay short. */
#define GROUP_SLOTS 2048
_Static_assert(BATCH_CHUNK <= FXB_PUSH_MULTICAST_MAX, "a group must fit one multicast entry");
_Static_assert(GROUP_SLOTS >= 2 * BATCH_CHUNK && (GROUP_SLOTS & (GROUP_SLOTS - 1)) == 0,
               "GROUP_SLOTS: a power of two, at least twice BATCH_CHUNK");

/* What one round trip of a batch needs; allocated once per batch. The
 * outbox part holds the entries of the round trip before (sent with this
 * one): every group's text fits, since a round trip's groups together
 * hold at most BATCH_CHUNK notices, each at most FXB_KEY_ID_MAX + 1 bytes
 * of subjects and ID_OUT_MAX of ids with their separator. */
typedef struct batch_ws {
    char key[BATCH_CHUNK][INBOX_KEY_MAX];
    const char *xadd[BATCH_CHUNK][16];
    const char *publish[3];
    char payload[BATCH_CHUNK * (FXB_KEY_ID_MAX + 1)]; /* subjects, "\n" between */
    fxb_store_cmd cmds[2 * BATCH_CHUNK + 1];
    redisReply *replies[2 * BATCH_CHUNK + 1];
    /* grouping the notices of a round trip by (kind, title) */
    char id[BATCH_CHUNK][ID_OUT_MAX]; /* by place in the chunk, appended ones only */
    uint16_t slot[GROUP_SLOTS];       /* group + 1, 0 = free */
    size_t first[BATCH_CHUNK];        /* a group's first notice: its kind and title */
    size_t last[BATCH_CHUNK];         /* and its last, to append */
    size_t count[BATCH_CHUNK];
    size_t next[BATCH_CHUNK]; /* a notice's successor in its group */
    /* the multicast entries, one per group */
    char subjects[BATCH_CHUNK * (FXB_KEY_ID_MAX + 1)];
    char ids[BATCH_CHUNK * ID_OUT_MAX];
    char n_text[BATCH_CHUNK][24];
    const char *outbox[BATCH_CHUNK][16];
} batch_ws;

/* FNV-1a of kind, a NUL, and title. */
static uint32_t group_hash(const char *kind, const char *title)
{
    uint32_t h = 2166136261u;
    for (const char *p = kind;; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
        if (*p == '\0')
            break;
    }
    for (const char *p = title; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

/* The group of notice i of the chunk (msgs = the chunk) among the ng groups
 * so far; a new one (ng + 1) when its kind and title are new. */
static size_t group_find(batch_ws *w, const fxb_inbox_msg *msgs, size_t i, size_t *ng)
{
    const fxb_inbox_msg *m = &msgs[i];
    size_t h = group_hash(m->kind, m->title) & (GROUP_SLOTS - 1);
    for (;; h = (h + 1) & (GROUP_SLOTS - 1)) {
        if (w->slot[h] == 0) {
            size_t g = (*ng)++;
            w->slot[h] = (uint16_t)(g + 1);
            w->first[g] = i;
            w->last[g] = i;
            w->count[g] = 0;
            return g;
        }
        const fxb_inbox_msg *f = &msgs[w->first[w->slot[h] - 1]];
        if (strcmp(f->kind, m->kind) == 0 && strcmp(f->title, m->title) == 0)
            return w->slot[h] - 1u;
    }
}

/* Writes the multicast outbox entry of every group (ng of them, appended
 * notices of the chunk msgs linked by w->next) into w->outbox; returns ng.
 * Subjects and ids go into w->subjects and w->ids, one group after the
 * other. */
static size_t outbox_groups(batch_ws *w, const fxb_inbox_msg *msgs, size_t ng,
                            const char *outbox_max)
{
    size_t sl = 0, il = 0;
    for (size_t g = 0; g < ng; g++) {
        char *subjects = w->subjects + sl, *ids = w->ids + il;
        size_t i = w->first[g];
        for (size_t k = 0; k < w->count[g]; k++, i = w->next[i]) {
            size_t ns = strlen(msgs[i].subject); /* checked: at most FXB_KEY_ID_MAX */
            size_t ni = strlen(w->id[i]);        /* below ID_OUT_MAX */
            if (k > 0) {
                w->subjects[sl++] = '\n';
                w->ids[il++] = '\n';
            }
            memcpy(w->subjects + sl, msgs[i].subject, ns);
            memcpy(w->ids + il, w->id[i], ni);
            sl += ns;
            il += ni;
        }
        w->subjects[sl++] = '\0';
        w->ids[il++] = '\0';
        snprintf(w->n_text[g], sizeof w->n_text[g], "%zu", w->count[g]);
        const fxb_inbox_msg *f = &msgs[w->first[g]];
        const char *o[16] = {"XADD", FXB_PUSH_OUTBOX, "MAXLEN",   "~",      outbox_max,
                             "*",    "kind",          f->kind,    "title",  f->title,
                             "n",    w->n_text[g],    "subjects", subjects, "message_ids",
                             ids};
        memcpy(w->outbox[g], o, sizeof o);
    }
    return ng;
}

/* Joins the subjects of msgs[0..m) with "\n" into out (room for m subjects
 * of FXB_KEY_ID_MAX and their separators), skipping a subject equal to the
 * one before it (a batch to one inbox wakes it once). Returns the length. */
static size_t join_subjects(char *out, const fxb_inbox_msg *msgs, size_t m)
{
    size_t len = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < m; i++) {
        const char *sub = msgs[i].subject;
        if (prev != NULL && strcmp(prev, sub) == 0)
            continue;
        size_t n = strlen(sub); /* checked: at most FXB_KEY_ID_MAX */
        if (len > 0)
            out[len++] = '\n';
        memcpy(out + len, sub, n);
        len += n;
        prev = sub;
    }
    out[len] = '\0';
    return len;
}

fxb_code fxb_inbox_append_batch(fxb_store *s, const fxb_inbox_msg *msgs, size_t n, int64_t now_ms,
                                size_t *appended, fxb_err *err)
{
    size_t done = 0;
    if (appended != NULL)
        *appended = 0;
    if (n == 0)
        return FXB_OK;
    if (msgs == NULL)
        return invalid(err, "messages");
    if (now_ms < 0)
        return invalid(err, "at_ms");
    for (size_t i = 0; i < n; i++) {
        char key[INBOX_KEY_MAX];
        const fxb_inbox_msg *m = &msgs[i];
        const char *bad = message_check(m->subject, m->kind, m->title, m->body, m->ref, key);
        if (bad != NULL)
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, "INBOX_MESSAGE_INVALID",
                               "系统繁忙，请稍后重试", "inbox message %zu: %s is invalid", i, bad);
    }
    batch_ws *w = malloc(sizeof *w);
    if (w == NULL)
        return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "系统繁忙，请稍后重试",
                           "out of memory for an inbox batch");
    char at[24], max[16], outbox_max[16];
    snprintf(at, sizeof at, "%" PRId64, now_ms);
    snprintf(max, sizeof max, "%d", FXB_INBOX_MAX);
    snprintf(outbox_max, sizeof outbox_max, "%d", FXB_PUSH_OUTBOX_MAX);
    w->publish[0] = "PUBLISH";
    w->publish[1] = FXB_INBOX_CHANNEL;
    w->publish[2] = w->payload;
    fxb_code rc = FXB_OK;
    size_t start = 0, pending = 0; /* outbox entries prepared, not yet sent */
    bool failed = false;
    while (start < n || pending > 0) {
        size_t m = n - start < BATCH_CHUNK ? n - start : BATCH_CHUNK;
        size_t nc = 0;
        for (size_t j = 0; j < pending; j++)
            w->cmds[nc++] = (fxb_store_cmd){16, w->outbox[j], NULL};
        if (m == 0) {
            /* the last outbox entries: sent without waiting for their
             * replies (best effort; read before the connection's next
             * command, fxb_store_send), which saves the batch a round
             * trip */
            fxb_err serr;
            (void)fxb_store_send(s, &serr, nc, w->cmds);
            break;
        }
        for (size_t i = 0; i < m; i++) {
            const fxb_inbox_msg *msg = &msgs[start + i];
            fxb_inbox_key(w->key[i], INBOX_KEY_MAX, msg->subject);
            const char *x[16] = {"XADD",   w->key[i],
                                 "MAXLEN", "~",
                                 max,      "*",
                                 "kind",   msg->kind,
                                 "title",  msg->title,
                                 "body",   msg->body != NULL ? msg->body : "",
                                 "ref",    msg->ref != NULL ? msg->ref : "",
                                 "at_ms",  at};
            memcpy(w->xadd[i], x, sizeof x);
            w->cmds[nc++] = (fxb_store_cmd){16, w->xadd[i], NULL};
        }
        if (m > 0) {
            /* after the XADDs, so that a woken reader finds them */
            join_subjects(w->payload, msgs + start, m);
            w->cmds[nc++] = (fxb_store_cmd){3, w->publish, NULL};
        }
        fxb_err perr;
        fxb_code prc = fxb_store_pipeline(s, &perr, nc, w->cmds, w->replies);
        if (prc != FXB_OK) {
            /* a round trip of outbox entries only is best effort too */
            if (m > 0 && rc == FXB_OK) {
                rc = prc;
                if (err != NULL)
                    fxb_err_copy(err, &perr);
            }
            break;
        }
        /* the outbox entries and the PUBLISH are best effort: an error
         * reply only counts in fxb_store_error_count (fxb_store_pipeline
         * did) */
        redisReply **r = w->replies + pending;
        size_t ng = 0;
        if (m > 0)
            memset(w->slot, 0, sizeof w->slot);
        for (size_t i = 0; i < m; i++) {
            const redisReply *x = r[i];
            if (x->type != REDIS_REPLY_STRING || x->len >= ID_OUT_MAX) {
                failed = true;
                continue;
            }
            done++;
            /* into its (kind, title) group for the vendor push adaptor,
             * which skips the subjects online when it sends */
            memcpy(w->id[i], x->str, x->len + 1);
            size_t k = group_find(w, msgs + start, i, &ng);
            if (w->count[k]++ > 0)
                w->next[w->last[k]] = i;
            w->last[k] = i;
        }
        pending = outbox_groups(w, msgs + start, ng, outbox_max);
        for (size_t j = 0; j < nc; j++)
            freeReplyObject(w->replies[j]);
        start += m;
        if (failed && rc == FXB_OK) {
            /* stop after this chunk; the notices appended so far still go
             * to the outbox */
            n = start;
            rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", "系统繁忙，请稍后重试",
                             "XADD of an inbox failed in a batch");
        }
    }
    free(w);
    if (appended != NULL)
        *appended = done;
    return rc;
}
