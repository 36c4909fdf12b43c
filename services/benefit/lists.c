/* Deferred benefit lists (lists.h). */
#include "services/benefit/lists.h"

#include <stdlib.h>
#include <string.h>

#include "server/arena.h"
#include "server/log.h"
#include "services/benefit/entitlement.h"
#include "store/keys.h"

#define ZH_BUSY "系统繁忙，请稍后重试"
#define AT_MAX  20 /* digits of a created_ms */

static fxb_code oom(fxb_err *err)
{
    return fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_BUSY,
                       "out of memory for the benefit lists");
}

static fxb_code unexpected(fxb_err *err, const char *what)
{
    return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                       "%s of the benefit lists answered in an unexpected shape", what);
}

/* "{p:<pid>}:benefits" / "{e:<eid>}:benefits" in a */
static const char *list_key(fxb_arena *a, const char *subject)
{
    char tag[2] = {subject[0], '\0'};
    return fxb_key_owned(a, tag, subject, "benefits");
}

static bool digits(const char *s, size_t len)
{
    if (len == 0 || len > AT_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

void fxb_lists_pending_cmd(const char *argv[3], const char *policy_id, fxb_store_cmd *cmd)
{
    argv[0] = "SADD";
    argv[1] = FXB_LISTS_PENDING;
    argv[2] = policy_id;
    *cmd = (fxb_store_cmd){3, argv, NULL};
}

bool fxb_lists_pending_has(const redisReply *members, const char *policy_id)
{
    if (members == NULL || members->type != REDIS_REPLY_ARRAY || policy_id == NULL)
        return false;
    for (size_t i = 0; i < members->elements; i++) {
        const redisReply *m = members->element[i];
        if (m->type == REDIS_REPLY_STRING && strcmp(m->str, policy_id) == 0)
            return true;
    }
    return false;
}

/* The pending policy ids (valid ones only) as an SMEMBERS reply; NULL with
 * *err set on failure. */
static redisReply *pending(fxb_store *s, fxb_err *err)
{
    redisReply *r = fxb_store_command(s, err, "SMEMBERS %s", FXB_LISTS_PENDING);
    if (r != NULL && r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        unexpected(err, "SMEMBERS");
        return NULL;
    }
    return r;
}

/* --- the materializer ----------------------------------------------------- */

/* The fields of one stream entry [id, [field, value, ...]]: its subjects
 * and at_ms; false when it has not that shape. */
static bool entry_fields(const redisReply *en, const redisReply **id, const redisReply **subjects,
                         const redisReply **at)
{
    *id = *subjects = *at = NULL;
    if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
        en->element[0]->type != REDIS_REPLY_STRING || en->element[1]->type != REDIS_REPLY_ARRAY)
        return false;
    *id = en->element[0];
    const redisReply *kv = en->element[1];
    for (size_t f = 0; f + 1 < kv->elements; f += 2) {
        const redisReply *name = kv->element[f], *val = kv->element[f + 1];
        if (name->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(name->str, "subjects") == 0)
            *subjects = val;
        else if (strcmp(name->str, "at_ms") == 0)
            *at = val;
    }
    return *subjects != NULL && *at != NULL && digits((*at)->str, (*at)->len);
}

/* One stream entry: the ZADD NX of each of its subjects' list entries and
 * the XDEL of the entry, in one pipeline. A malformed entry is only
 * deleted. */
static fxb_code list_entry(fxb_store *s, const char *pid, const char *stream, const redisReply *en,
                           fxb_lists_progress *out, fxb_err *err)
{
    const redisReply *id, *subjects, *at;
    bool ok = entry_fields(en, &id, &subjects, &at);
    if (id == NULL)
        return unexpected(err, "XRANGE");
    fxb_arena a;
    fxb_arena_init(&a, 0);
    size_t cap = 1;
    if (ok)
        for (size_t i = 0; i < subjects->len; i++)
            cap += subjects->str[i] == ',';
    fxb_store_cmd *cmds = fxb_arena_alloc(&a, (cap + 1) * sizeof *cmds);
    redisReply **replies = fxb_arena_calloc(&a, cap + 1, sizeof *replies);
    const char **argv = fxb_arena_alloc(&a, (5 * cap + 3) * sizeof *argv);
    char *list = ok ? fxb_arena_strndup(&a, subjects->str, subjects->len) : NULL;
    if (cmds == NULL || replies == NULL || argv == NULL || (ok && list == NULL)) {
        fxb_arena_free(&a);
        return oom(err);
    }
    size_t n = 0, bad = 0;
    for (char *next = list, *subj; ok && (subj = next) != NULL;) {
        char *comma = strchr(subj, ',');
        next = comma != NULL ? comma + 1 : NULL;
        if (comma != NULL)
            *comma = '\0';
        const char *key = fxb_ent_subject_ok(subj) ? list_key(&a, subj) : NULL;
        if (key == NULL) {
            bad++;
            continue;
        }
        const char **v = &argv[5 * n];
        v[0] = "ZADD";
        v[1] = key;
        v[2] = "NX";
        v[3] = at->str;
        v[4] = pid;
        cmds[n++] = (fxb_store_cmd){5, v, NULL};
    }
    const char **x = &argv[5 * n];
    x[0] = "XDEL";
    x[1] = stream;
    x[2] = id->str;
    cmds[n] = (fxb_store_cmd){3, x, NULL};
    fxb_code rc = fxb_store_pipeline(s, err, n + 1, cmds, replies);
    if (rc == FXB_OK) {
        size_t failed = 0;
        for (size_t i = 0; i < n; i++)
            failed += replies[i]->type == REDIS_REPLY_ERROR;
        if (replies[n]->type == REDIS_REPLY_ERROR)
            rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                             "XDEL of an unlisted entry of policy %s failed", pid);
        out->entries++;
        out->listed += n - failed;
        out->failed += failed;
        out->dropped += bad + (ok ? 0 : 1);
        if (failed > 0)
            fxb_log(FXB_LOG_WARN,
                    "benefit lists: policy %s: %zu list entries refused (keys of another type)",
                    pid, failed);
        if (bad > 0 || !ok)
            fxb_log(FXB_LOG_WARN,
                    "benefit lists: policy %s: a malformed unlisted entry (%zu bad subjects) "
                    "deleted",
                    pid, bad);
    }
    for (size_t i = 0; i <= n; i++)
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
    fxb_arena_free(&a);
    return rc;
}

/* A policy found with nothing left: out of the pending set, then one more
 * look in case a batch came in between (added back then). */
static fxb_code settle(fxb_store *s, const char *pid, const char *stream, fxb_lists_progress *out,
                       fxb_err *err)
{
    const char *srem[] = {"SREM", FXB_LISTS_PENDING, pid};
    const char *xlen[] = {"XLEN", stream};
    fxb_store_cmd cmds[2] = {{3, srem, NULL}, {2, xlen, NULL}};
    redisReply *r[2] = {NULL, NULL};
    fxb_code rc = fxb_store_pipeline(s, err, 2, cmds, r);
    if (rc == FXB_OK && (r[1]->type != REDIS_REPLY_INTEGER || r[0]->type == REDIS_REPLY_ERROR))
        rc = unexpected(err, "SREM / XLEN");
    bool again = rc == FXB_OK && r[1]->integer > 0;
    for (int i = 0; i < 2; i++)
        if (r[i] != NULL)
            freeReplyObject(r[i]);
    if (again) {
        redisReply *a = fxb_store_command(s, err, "SADD %s %s", FXB_LISTS_PENDING, pid);
        if (a == NULL)
            return err->code;
        freeReplyObject(a);
        out->more = true;
    }
    return rc;
}

/* Up to *budget entries of one policy's stream. */
static fxb_code work_policy(fxb_store *s, const char *pid, size_t *budget, fxb_lists_progress *out,
                            fxb_err *err)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    const char *stream = fxb_key_owned(&a, "b", pid, "unlisted");
    if (stream == NULL) {
        fxb_arena_free(&a);
        return oom(err);
    }
    fxb_code rc = FXB_OK;
    while (*budget > 0 && rc == FXB_OK) {
        size_t count = *budget < FXB_LISTS_ROUND ? *budget : FXB_LISTS_ROUND;
        redisReply *r = fxb_store_command(s, err, "XRANGE %s - + COUNT %d", stream, (int)count);
        if (r == NULL) {
            rc = err->code;
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            rc = unexpected(err, "XRANGE");
            break;
        }
        if (r->elements == 0) {
            freeReplyObject(r);
            rc = settle(s, pid, stream, out, err);
            break;
        }
        for (size_t i = 0; i < r->elements && rc == FXB_OK; i++) {
            rc = list_entry(s, pid, stream, r->element[i], out, err);
            (*budget)--;
        }
        bool full = r->elements == count;
        freeReplyObject(r);
        if (!full && rc == FXB_OK) {
            rc = settle(s, pid, stream, out, err);
            break;
        }
    }
    if (*budget == 0)
        out->more = true;
    fxb_arena_free(&a);
    return rc;
}

fxb_code fxb_lists_work(fxb_store *s, size_t max_entries, fxb_lists_progress *out, fxb_err *err)
{
    memset(out, 0, sizeof *out);
    if (max_entries == 0)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "LISTS_INVALID", ZH_BUSY,
                           "a slice of the benefit lists needs max_entries >= 1");
    redisReply *m = pending(s, err);
    if (m == NULL)
        return err->code;
    fxb_code rc = FXB_OK;
    size_t budget = max_entries;
    for (size_t i = 0; i < m->elements && rc == FXB_OK; i++) {
        const redisReply *id = m->element[i];
        if (id->type != REDIS_REPLY_STRING)
            continue;
        if (!fxb_ent_policy_id_ok(id->str)) {
            /* not a policy id: nothing of ours to list */
            redisReply *r =
                fxb_store_command(s, err, "SREM %s %b", FXB_LISTS_PENDING, id->str, id->len);
            if (r == NULL)
                rc = err->code;
            else
                freeReplyObject(r);
            continue;
        }
        if (budget == 0) {
            out->more = true;
            break;
        }
        rc = work_policy(s, id->str, &budget, out, err);
    }
    freeReplyObject(m);
    return rc;
}

/* --- readers -------------------------------------------------------------- */

fxb_code fxb_lists_repair(fxb_store *s, const char *subject, size_t *added, fxb_err *err)
{
    if (added != NULL)
        *added = 0;
    if (!fxb_ent_subject_ok(subject))
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "SUBJECT_ID_INVALID", "请求参数有误",
                           "subject is not p / e + 24 hex digits");
    redisReply *m = pending(s, err);
    if (m == NULL)
        return err->code;
    size_t np = m->elements;
    if (np == 0) {
        freeReplyObject(m);
        return FXB_OK;
    }
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_store_cmd *cmds = fxb_arena_alloc(&a, np * sizeof *cmds);
    redisReply **replies = fxb_arena_calloc(&a, np, sizeof *replies);
    const char **argv = fxb_arena_alloc(&a, 3 * np * sizeof *argv);
    const char **pids = fxb_arena_alloc(&a, np * sizeof *pids);
    const char *key = list_key(&a, subject);
    if (cmds == NULL || replies == NULL || argv == NULL || pids == NULL || key == NULL) {
        freeReplyObject(m);
        fxb_arena_free(&a);
        return oom(err);
    }
    size_t n = 0;
    for (size_t i = 0; i < np; i++) {
        const redisReply *id = m->element[i];
        if (id->type != REDIS_REPLY_STRING || !fxb_ent_policy_id_ok(id->str))
            continue;
        const char *ent = fxb_key_owned(&a, "b", id->str, "ent");
        pids[n] = fxb_arena_strndup(&a, id->str, id->len);
        if (ent == NULL || pids[n] == NULL) {
            freeReplyObject(m);
            fxb_arena_free(&a);
            return oom(err);
        }
        const char **v = &argv[3 * n];
        v[0] = "HGET";
        v[1] = ent;
        v[2] = subject;
        cmds[n++] = (fxb_store_cmd){3, v, NULL};
    }
    freeReplyObject(m);
    fxb_code rc = n > 0 ? fxb_store_pipeline(s, err, n, cmds, replies) : FXB_OK;
    /* the ZADDs reuse cmds and replies */
    size_t nz = 0;
    for (size_t i = 0; i < n && rc == FXB_OK; i++) {
        fxb_ent e;
        const redisReply *v = replies[i];
        if (v->type != REDIS_REPLY_STRING || !fxb_ent_parse(subject, v->str, v->len, &e))
            continue;
        const char *score = fxb_arena_printf(&a, "%lld", (long long)e.created_ms);
        if (score == NULL) {
            rc = oom(err);
            break;
        }
        const char **z = fxb_arena_alloc(&a, 5 * sizeof *z);
        if (z == NULL) {
            rc = oom(err);
            break;
        }
        z[0] = "ZADD";
        z[1] = key;
        z[2] = "NX";
        z[3] = score;
        z[4] = pids[i];
        cmds[nz++] = (fxb_store_cmd){5, z, NULL};
    }
    for (size_t i = 0; i < n; i++)
        if (replies[i] != NULL) {
            freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
    if (rc == FXB_OK && nz > 0) {
        rc = fxb_store_pipeline(s, err, nz, cmds, replies);
        for (size_t i = 0; i < nz && rc == FXB_OK; i++)
            if (replies[i]->type == REDIS_REPLY_ERROR)
                rc = fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_BUSY,
                                 "ZADD of a subject's benefit list failed");
        for (size_t i = 0; i < nz; i++)
            if (replies[i] != NULL)
                freeReplyObject(replies[i]);
        if (rc == FXB_OK && added != NULL)
            *added = nz;
    }
    fxb_arena_free(&a);
    return rc;
}

fxb_code fxb_lists_recover(fxb_store *s, const char *const *policy_ids, size_t n, size_t *found,
                           fxb_err *err)
{
    if (found != NULL)
        *found = 0;
    if (n == 0)
        return FXB_OK;
    if (policy_ids == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, "LISTS_INVALID", ZH_BUSY,
                           "no policy ids to recover the lists of");
    fxb_arena a;
    fxb_arena_init(&a, 0);
    fxb_store_cmd *cmds = fxb_arena_alloc(&a, n * sizeof *cmds);
    redisReply **replies = fxb_arena_calloc(&a, n, sizeof *replies);
    const char **argv = fxb_arena_alloc(&a, (2 * n + 2 + n) * sizeof *argv);
    const char **ids = fxb_arena_alloc(&a, n * sizeof *ids);
    if (cmds == NULL || replies == NULL || argv == NULL || ids == NULL) {
        fxb_arena_free(&a);
        return oom(err);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!fxb_ent_policy_id_ok(policy_ids[i]))
            continue;
        const char *stream = fxb_key_owned(&a, "b", policy_ids[i], "unlisted");
        if (stream == NULL) {
            fxb_arena_free(&a);
            return oom(err);
        }
        argv[2 * k] = "XLEN";
        argv[2 * k + 1] = stream;
        ids[k] = policy_ids[i];
        cmds[k] = (fxb_store_cmd){2, &argv[2 * k], NULL};
        k++;
    }
    fxb_code rc = k > 0 ? fxb_store_pipeline(s, err, k, cmds, replies) : FXB_OK;
    const char **sadd = &argv[2 * k];
    int argc = 2;
    sadd[0] = "SADD";
    sadd[1] = FXB_LISTS_PENDING;
    for (size_t i = 0; i < k && rc == FXB_OK; i++) {
        if (replies[i]->type != REDIS_REPLY_INTEGER)
            rc = unexpected(err, "XLEN");
        else if (replies[i]->integer > 0)
            sadd[argc++] = ids[i];
    }
    for (size_t i = 0; i < k; i++)
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
    if (rc == FXB_OK && argc > 2) {
        redisReply *r = fxb_store_commandv(s, err, argc, sadd, NULL);
        if (r == NULL)
            rc = err->code;
        else
            freeReplyObject(r);
        if (rc == FXB_OK && found != NULL)
            *found = (size_t)(argc - 2);
    }
    fxb_arena_free(&a);
    return rc;
}
