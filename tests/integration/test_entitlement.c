/* Entitlements and benefit notices against a private redis-server (its
 * database emptied before each test): every transition and every refusal
 * of entitlement.h, idempotent re-matching (a lone re-match repairing a
 * lost list entry), one log entry per kind of transition of a batch,
 * quota and budget held and
 * released, the confirmation step, declines that cancel a disbursement,
 * payments recorded once, the end of entitlements by reason, reopening as a
 * new round, nothing granted outside a published policy's window, two
 * matchers racing for one quota, and the notices of notice.h reaching the
 * right inbox. Policies are written directly as hashes (policy.h's fields). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "services/benefit/entitlement.h"
#include "services/benefit/notice.h"
#include "store/inbox.h"

#define PID     "b0123456789abcdef"
#define PKEY    "{b:" PID "}:policy"
#define ENT     "{b:" PID "}:ent"
#define QUEUE   "{b:" PID "}:queue"
#define LOG     "{b:" PID "}:log"
#define PAYOUTS "{b:" PID "}:payouts"
#define NOW     1750000000000LL
#define AMOUNT  50000

static int each_setup(void **state)
{
    *state = fxb_test_store_open(fxb_test_private_url());
    return *state != NULL ? 0 : -1;
}

static int each_teardown(void **state)
{
    fxb_store_free(*state);
    return 0;
}

/* --- helpers ----------------------------------------------------------------- */

/* Subject i: a person ("p") or an enterprise ("e") with 24 hex digits. */
static const char *subj(char buf[32], char tag, unsigned i)
{
    snprintf(buf, 32, "%c%024x", tag, i);
    return buf;
}

static void cmd(fxb_store *s, const char *fmt, ...)
{
    fxb_err err;
    va_list ap;
    va_start(ap, fmt);
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* split on spaces: the test's own commands have no spaces in values */
    const char *argv[32];
    int argc = 0;
    for (char *tok = strtok(line, " "); tok != NULL && argc < 32; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    redisReply *r = fxb_store_commandv(s, &err, argc, argv, NULL);
    if (r == NULL)
        fail_msg("%s: %s", argv[0], err.message);
    freeReplyObject(r);
}

typedef struct policy_opts {
    int status, kind, confirm;
    long long quota, budget, amount, from, until;
} policy_opts;

static void make_policy(fxb_store *s, policy_opts o)
{
    cmd(s,
        "HSET " PKEY " status %d benefit_kind %d confirm %d quota %lld budget_fen %lld "
        "amount_fen %lld valid_from_ms %lld valid_until_ms %lld title t",
        o.status ? o.status : 2, o.kind ? o.kind : 1, o.confirm, o.quota, o.budget,
        o.amount ? o.amount : AMOUNT, o.from, o.until);
}

static long long hget_ll(fxb_store *s, const char *key, const char *field)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "HGET %s %s", key, field);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return v;
}

static long long len_of(fxb_store *s, const char *cmd_name, const char *key)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "%s %s", cmd_name, key);
    assert_non_null(r);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

typedef struct counters {
    long long matched, confirmed, granted, paid, declined, ended, used, spent;
} counters;

static counters read_counters(fxb_store *s)
{
    return (counters){hget_ll(s, PKEY, "n_matched"),   hget_ll(s, PKEY, "n_confirmed"),
                      hget_ll(s, PKEY, "n_granted"),   hget_ll(s, PKEY, "n_paid"),
                      hget_ll(s, PKEY, "n_declined"),  hget_ll(s, PKEY, "n_ended"),
                      hget_ll(s, PKEY, "grants_used"), hget_ll(s, PKEY, "budget_used_fen")};
}

static void assert_counters(fxb_store *s, counters want)
{
    counters c = read_counters(s);
    if (memcmp(&c, &want, sizeof c) != 0)
        fail_msg("counters m%lld c%lld g%lld p%lld d%lld e%lld used %lld spent %lld, want "
                 "m%lld c%lld g%lld p%lld d%lld e%lld used %lld spent %lld",
                 c.matched, c.confirmed, c.granted, c.paid, c.declined, c.ended, c.used, c.spent,
                 want.matched, want.confirmed, want.granted, want.paid, want.declined, want.ended,
                 want.used, want.spent);
}

/* Matches subjects [first, first + n) of tag at now. */
static void match_range(fxb_store *s, char tag, unsigned first, size_t n, int64_t now,
                        fxb_ent_outcome *out)
{
    char(*names)[32] = calloc(n, 32);
    fxb_ent_match *m = calloc(n, sizeof *m);
    assert_non_null(names);
    assert_non_null(m);
    for (size_t i = 0; i < n; i++) {
        m[i].subject = subj(names[i], tag, first + (unsigned)i);
        m[i].held = "TT";
    }
    fxb_err err;
    fxb_code rc = fxb_ent_match_batch(s, PID, m, n, now, "engine", out, &err);
    if (rc != FXB_OK)
        fail_msg("match: %s %s", err.reason, err.message);
    free(names);
    free(m);
}

static fxb_ent_outcome match_one(fxb_store *s, const char *subject, int64_t now)
{
    fxb_ent_match m = {subject, "TFU"};
    fxb_ent_outcome o = 99;
    fxb_err err;
    assert_int_equal(fxb_ent_match_batch(s, PID, &m, 1, now, "engine", &o, &err), FXB_OK);
    return o;
}

static fxb_ent get_ent(fxb_store *s, const char *subject)
{
    fxb_ent e;
    fxb_err err;
    if (fxb_ent_get(s, PID, subject, &e, &err) != FXB_OK)
        fail_msg("get %s: %s", subject, err.reason);
    return e;
}

/* The value of field in a stream entry. */
static const char *field(const redisReply *entry, const char *name)
{
    const redisReply *kv = entry->element[1];
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (strcmp(kv->element[i]->str, name) == 0)
            return kv->element[i + 1]->str;
    return NULL;
}

static redisReply *xrange(fxb_store *s, const char *key)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - +", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    return r;
}

static size_t count_outcome(const fxb_ent_outcome *o, size_t n, fxb_ent_outcome want)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += o[i] == want;
    return k;
}

/* The items listed by the entries of a stream: each entry's n items joined
 * by "," in its list field (checked against n); an entry without n (a
 * single transition of the log) counts one, with its `single` field. */
static long long listed(fxb_store *s, const char *key, const char *list_field, const char *single)
{
    redisReply *r = xrange(s, key);
    long long total = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const char *n = field(r->element[i], "n"), *list = field(r->element[i], list_field);
        if (n == NULL && single != NULL) {
            assert_non_null(field(r->element[i], single));
            total++;
            continue;
        }
        assert_non_null(n);
        assert_non_null(list);
        long long k = 1;
        for (const char *c = list; *c; c++)
            k += *c == ',';
        assert_int_equal(k, strtoll(n, NULL, 10));
        total += k;
    }
    freeReplyObject(r);
    return total;
}

/* The transitions the log records. */
static long long log_transitions(fxb_store *s)
{
    return listed(s, LOG, "subjects", "subject");
}

/* The disbursement keys of the payout outbox. */
static long long disbursement_keys(fxb_store *s)
{
    return listed(s, PAYOUTS, "keys", NULL);
}

/* The recipients queued for vendor push: a multicast entry (a batch's
 * notices, store/inbox.h) counts its n, a single one 1. */
static long long push_recipients(fxb_store *s)
{
    redisReply *r = xrange(s, FXB_PUSH_OUTBOX);
    long long total = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const char *n = field(r->element[i], "n");
        total += n != NULL ? strtoll(n, NULL, 10) : 1;
    }
    freeReplyObject(r);
    return total;
}

/* The score of policy PID in the subject's list, or -1 when absent. */
static long long list_score(fxb_store *s, const char *subject)
{
    char list[64];
    snprintf(list, sizeof list, "{%c:%s}:benefits", subject[0], subject);
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "ZSCORE %s %s", list, PID);
    if (r == NULL)
        fail_msg("ZSCORE %s: %s", list, err.message);
    long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : -1;
    freeReplyObject(r);
    return v;
}

/* --- matching ------------------------------------------------------------------ */

static void test_a_match_grants_at_once_with_log_payout_and_list(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){0});
    char p[32];
    subj(p, 'p', 1);
    assert_int_equal(match_one(s, p, NOW), FXB_ENT_NEW_GRANTED);
    fxb_ent e = get_ent(s, p);
    assert_string_equal(e.subject, p);
    assert_int_equal(e.state, FXB_ENT_GRANTED);
    assert_int_equal(e.round, 1);
    assert_int_equal(e.created_ms, NOW);
    assert_int_equal(e.updated_ms, NOW);
    assert_string_equal(e.reason, "");
    assert_string_equal(e.held, "TFU");
    assert_counters(s, (counters){.granted = 1, .used = 1, .spent = AMOUNT});

    /* a match is a batch (of one here): its log entry names its subjects */
    redisReply *r = xrange(s, LOG);
    assert_int_equal(r->elements, 1);
    assert_null(field(r->element[0], "subject"));
    assert_string_equal(field(r->element[0], "subjects"), p);
    assert_string_equal(field(r->element[0], "n"), "1");
    assert_string_equal(field(r->element[0], "reason"), "-");
    assert_string_equal(field(r->element[0], "from"), "0");
    assert_string_equal(field(r->element[0], "to"), "3");
    assert_string_equal(field(r->element[0], "by"), "engine");
    assert_string_equal(field(r->element[0], "at_ms"), "1750000000000");
    freeReplyObject(r);

    r = xrange(s, PAYOUTS);
    assert_int_equal(r->elements, 1);
    char key[FXB_ENT_KEY_MAX + 1];
    fxb_ent_disbursement_key(key, PID, p, 1);
    assert_string_equal(field(r->element[0], "keys"), key);
    assert_string_equal(field(r->element[0], "n"), "1");
    assert_string_equal(field(r->element[0], "op"), "pay");
    assert_null(field(r->element[0], "subject"));
    assert_string_equal(field(r->element[0], "amount_fen"), "50000");
    assert_string_equal(field(r->element[0], "at_ms"), "1750000000000");
    freeReplyObject(r);

    char list[64];
    snprintf(list, sizeof list, "{p:%s}:benefits", p);
    fxb_err err;
    r = fxb_store_command(s, &err, "ZSCORE %s %s", list, PID);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "1750000000000");
    freeReplyObject(r);
}

static void test_a_non_cash_grant_has_no_disbursement(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.kind = FXB_BENEFIT_SERVICE, .amount = 0, .budget = 0});
    char e[32];
    subj(e, 'e', 7);
    assert_int_equal(match_one(s, e, NOW), FXB_ENT_NEW_GRANTED);
    assert_int_equal(len_of(s, "EXISTS", PAYOUTS), 0);
    assert_int_equal(len_of(s, "ZCARD", "{e:e000000000000000000000007}:benefits"), 1);
}

static void test_rematching_the_same_batch_changes_nothing(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.quota = 30});
    enum { N = 50 };
    fxb_ent_outcome o[N];
    match_range(s, 'p', 0, N, NOW, o);
    assert_int_equal(count_outcome(o, N, FXB_ENT_NEW_GRANTED), 30);
    assert_int_equal(count_outcome(o, N, FXB_ENT_NEW_HELD), 20);
    counters before = read_counters(s);
    long long log_len = len_of(s, "XLEN", LOG), pay_len = len_of(s, "XLEN", PAYOUTS);
    match_range(s, 'p', 0, N, NOW + 1000, o);
    assert_int_equal(count_outcome(o, N, FXB_ENT_UNCHANGED), N);
    assert_counters(s, before);
    assert_int_equal(len_of(s, "XLEN", LOG), log_len);
    assert_int_equal(len_of(s, "XLEN", PAYOUTS), pay_len);
    char p[32];
    assert_int_equal(get_ent(s, subj(p, 'p', 0)).updated_ms, NOW);
}

/* A batch's cash grants are one disbursement entry (批量代发): every key of
 * a grant in subject order, none for the held ones; each key is payable. */
static void test_a_batch_writes_one_disbursement_entry_for_its_grants(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.quota = 700});
    enum { N = FXB_ENT_BATCH_MAX };
    static fxb_ent_outcome o[N];
    match_range(s, 'p', 0, N, NOW, o);
    assert_int_equal(count_outcome(o, N, FXB_ENT_NEW_GRANTED), 700);
    redisReply *r = xrange(s, PAYOUTS);
    assert_int_equal(r->elements, 1);
    assert_string_equal(field(r->element[0], "op"), "pay");
    assert_string_equal(field(r->element[0], "n"), "700");
    assert_string_equal(field(r->element[0], "amount_fen"), "50000");
    const char *keys = field(r->element[0], "keys");
    size_t at = 0;
    for (unsigned i = 0; i < 700; i++) {
        char p[32], key[FXB_ENT_KEY_MAX + 1];
        fxb_ent_disbursement_key(key, PID, subj(p, 'p', i), 1);
        size_t len = strlen(key);
        if (strncmp(keys + at, key, len) != 0 || keys[at + len] != (i + 1 < 700 ? ',' : '\0'))
            fail_msg("key %u is not %s at offset %zu", i, key, at);
        at += len + 1;
    }
    /* the last key of the file pays like any other */
    char p[32], key[FXB_ENT_KEY_MAX + 1];
    fxb_ent_disbursement_key(key, PID, subj(p, 'p', 699), 1);
    freeReplyObject(r);
    fxb_ent e;
    fxb_err err;
    assert_int_equal(fxb_ent_pay(s, key, "PAY-0699", NOW + 5, NOW + 6, &e, NULL, &err), FXB_OK);
    assert_int_equal(e.state, FXB_ENT_PAID);
    /* re-matching writes no second file; a held subject granted later is
     * its own batch */
    match_range(s, 'p', 0, N, NOW + 10, o);
    assert_int_equal(len_of(s, "XLEN", PAYOUTS), 1);
    cmd(s, "HSET " PKEY " quota 701");
    match_range(s, 'p', 0, N, NOW + 20, o);
    assert_int_equal(count_outcome(o, N, FXB_ENT_NEW_GRANTED), 1);
    r = xrange(s, PAYOUTS);
    assert_int_equal(r->elements, 2);
    assert_string_equal(field(r->element[1], "n"), "1");
    fxb_ent_disbursement_key(key, PID, subj(p, 'p', 700), 1);
    assert_string_equal(field(r->element[1], "keys"), key);
    freeReplyObject(r);
}

static void test_a_subject_twice_in_one_batch_is_matched_once(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){0});
    char p[32];
    subj(p, 'p', 3);
    fxb_ent_match m[] = {{p, ""}, {p, ""}};
    fxb_ent_outcome o[2];
    fxb_err err;
    assert_int_equal(fxb_ent_match_batch(s, PID, m, 2, NOW, "engine", o, &err), FXB_OK);
    assert_int_equal(o[0], FXB_ENT_NEW_GRANTED);
    assert_int_equal(o[1], FXB_ENT_UNCHANGED);
    assert_counters(s, (counters){.granted = 1, .used = 1, .spent = AMOUNT});
    assert_string_equal(get_ent(s, p).held, "");
}

static void test_a_batch_logs_one_entry_per_kind_of_transition(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.quota = 3});
    enum { N = 5 };
    fxb_ent_outcome o[N];
    match_range(s, 'p', 0, N, NOW, o);
    redisReply *r = xrange(s, LOG);
    assert_int_equal(r->elements, 2);
    const redisReply *g = r->element[0], *h = r->element[1];
    assert_string_equal(field(g, "from"), "0");
    assert_string_equal(field(g, "to"), "3");
    assert_string_equal(field(g, "reason"), "-");
    assert_string_equal(field(g, "by"), "engine");
    assert_string_equal(field(g, "at_ms"), "1750000000000");
    assert_string_equal(field(g, "n"), "3");
    assert_string_equal(field(g, "subjects"), "p000000000000000000000000,p000000000000000000000001,"
                                              "p000000000000000000000002");
    assert_string_equal(field(h, "from"), "0");
    assert_string_equal(field(h, "to"), "1");
    assert_string_equal(field(h, "reason"), "QUOTA_EXHAUSTED");
    assert_string_equal(field(h, "n"), "2");
    assert_string_equal(field(h, "subjects"),
                        "p000000000000000000000003,p000000000000000000000004");
    freeReplyObject(r);
    /* a single transition keeps its own entry */
    char p[32];
    fxb_err err;
    assert_int_equal(fxb_ent_decline(s, PID, subj(p, 'p', 0), NOW + 1, "acct", NULL, &err), FXB_OK);
    r = xrange(s, LOG);
    assert_int_equal(r->elements, 3);
    assert_string_equal(field(r->element[2], "subject"), p);
    assert_null(field(r->element[2], "subjects"));
    freeReplyObject(r);
    assert_int_equal(log_transitions(s), 6);
}

/* The list entry is derived (written after the script): when it is lost (a
 * crash in between), re-matching the subject alone, as a profile change
 * does, puts it back with its created_ms; a full match's batch does not. */
static void test_a_lone_rematch_repairs_a_lost_list_entry(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.quota = 1});
    char p[32], q[32], list[64];
    subj(p, 'p', 1);
    subj(q, 'p', 2);
    assert_int_equal(match_one(s, p, NOW), FXB_ENT_NEW_GRANTED);
    assert_int_equal(match_one(s, q, NOW + 1), FXB_ENT_NEW_HELD);
    snprintf(list, sizeof list, "{p:%s}:benefits", p);
    cmd(s, "ZREM %s %s", list, PID);
    snprintf(list, sizeof list, "{p:%s}:benefits", q);
    cmd(s, "DEL %s", list);
    assert_int_equal(list_score(s, p), -1);
    long long log_len = len_of(s, "XLEN", LOG);
    counters before = read_counters(s);

    assert_int_equal(match_one(s, p, NOW + 50), FXB_ENT_UNCHANGED);
    assert_int_equal(list_score(s, p), NOW);
    /* a held one is live too */
    assert_int_equal(match_one(s, q, NOW + 60), FXB_ENT_UNCHANGED);
    assert_int_equal(list_score(s, q), NOW + 1);
    /* nothing else moved: no transition, no log entry */
    assert_counters(s, before);
    assert_int_equal(len_of(s, "XLEN", LOG), log_len);
    assert_int_equal(get_ent(s, p).updated_ms, NOW);
    /* a present entry keeps its score (NX) */
    assert_int_equal(match_one(s, p, NOW + 70), FXB_ENT_UNCHANGED);
    assert_int_equal(list_score(s, p), NOW);

    /* a batch larger than FXB_ENT_REPAIR_MAX (a full match or re-check)
     * leaves it to the subject's next lone match */
    enum { N = FXB_ENT_REPAIR_MAX + 1 };
    fxb_ent_outcome o[N];
    cmd(s, "DEL %s", list);
    match_range(s, 'p', 2, N, NOW + 80, o);
    assert_int_equal(o[0], FXB_ENT_UNCHANGED);
    assert_int_equal(list_score(s, q), -1);
    assert_int_equal(match_one(s, q, NOW + 90), FXB_ENT_UNCHANGED);
    assert_int_equal(list_score(s, q), NOW + 1);
}

static void test_quota_holds_the_rest_until_a_decline_frees_a_place(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.quota = 3});
    fxb_ent_outcome o[5];
    match_range(s, 'p', 0, 5, NOW, o);
    char p[32];
    for (unsigned i = 0; i < 5; i++) {
        fxb_ent e = get_ent(s, subj(p, 'p', i));
        assert_int_equal(o[i], i < 3 ? FXB_ENT_NEW_GRANTED : FXB_ENT_NEW_HELD);
        assert_int_equal(e.state, i < 3 ? FXB_ENT_GRANTED : FXB_ENT_MATCHED);
        assert_string_equal(e.reason, i < 3 ? "" : "QUOTA_EXHAUSTED");
    }
    assert_counters(s, (counters){.matched = 2, .granted = 3, .used = 3, .spent = 3 * AMOUNT});

    fxb_ent e;
    fxb_err err;
    assert_int_equal(fxb_ent_decline(s, PID, subj(p, 'p', 1), NOW + 1, "acct-1", &e, &err), FXB_OK);
    assert_int_equal(e.state, FXB_ENT_DECLINED);
    assert_string_equal(e.reason, "DECLINED_BY_SUBJECT");
    assert_counters(
        s, (counters){.matched = 2, .granted = 2, .declined = 1, .used = 2, .spent = 2 * AMOUNT});

    /* the next match grants one held subject (the first in the batch), the
     * other stays held */
    match_range(s, 'p', 0, 5, NOW + 2, o);
    assert_int_equal(count_outcome(o, 5, FXB_ENT_NEW_GRANTED), 1);
    assert_int_equal(o[3], FXB_ENT_NEW_GRANTED);
    assert_int_equal(o[4], FXB_ENT_UNCHANGED);
    e = get_ent(s, subj(p, 'p', 3));
    assert_int_equal(e.state, FXB_ENT_GRANTED);
    assert_int_equal(e.created_ms, NOW);
    assert_int_equal(e.updated_ms, NOW + 2);
    assert_string_equal(e.held, "TT");
    assert_string_equal(get_ent(s, subj(p, 'p', 4)).reason, "QUOTA_EXHAUSTED");
    assert_counters(
        s, (counters){.matched = 1, .granted = 3, .declined = 1, .used = 3, .spent = 3 * AMOUNT});
    /* declined is final: matching never reopens it */
    assert_int_equal(match_one(s, subj(p, 'p', 1), NOW + 3), FXB_ENT_UNCHANGED);
    assert_int_equal(get_ent(s, p).state, FXB_ENT_DECLINED);
}

static void test_budget_holds_the_rest_until_a_decline_frees_it(void **state)
{
    fxb_store *s = *state;
    /* room for two grants and a half */
    make_policy(s, (policy_opts){.budget = 2 * AMOUNT + AMOUNT / 2});
    fxb_ent_outcome o[5];
    match_range(s, 'p', 0, 5, NOW, o);
    assert_int_equal(count_outcome(o, 5, FXB_ENT_NEW_GRANTED), 2);
    assert_int_equal(count_outcome(o, 5, FXB_ENT_NEW_HELD), 3);
    char p[32];
    assert_string_equal(get_ent(s, subj(p, 'p', 4)).reason, "BUDGET_EXHAUSTED");
    assert_counters(s, (counters){.matched = 3, .granted = 2, .used = 2, .spent = 2 * AMOUNT});
    fxb_err err;
    assert_int_equal(fxb_ent_decline(s, PID, subj(p, 'p', 0), NOW + 1, "acct", NULL, &err), FXB_OK);
    match_range(s, 'p', 0, 5, NOW + 2, o);
    assert_int_equal(count_outcome(o, 5, FXB_ENT_NEW_GRANTED), 1);
    assert_int_equal(o[2], FXB_ENT_NEW_GRANTED);
    assert_counters(
        s, (counters){.matched = 2, .granted = 2, .declined = 1, .used = 2, .spent = 2 * AMOUNT});
}

static void test_not_published_or_outside_the_window_grants_nothing(void **state)
{
    fxb_store *s = *state;
    char p[32];
    subj(p, 'p', 1);
    policy_opts cases[] = {
        {.status = 1},                                      /* draft */
        {.status = 3},                                      /* closed */
        {.from = NOW + 1},                                  /* not yet */
        {.from = NOW - 10, .until = NOW},                   /* until is exclusive */
        {.from = NOW - 10, .until = NOW - 1, .confirm = 1}, /* over */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cmd(s, "FLUSHDB");
        make_policy(s, cases[c]);
        assert_int_equal(match_one(s, p, NOW), FXB_ENT_NOT_OPEN);
        assert_int_equal(len_of(s, "EXISTS", ENT), 0);
        assert_int_equal(len_of(s, "EXISTS", LOG), 0);
        assert_int_equal(len_of(s, "EXISTS", PAYOUTS), 0);
        assert_int_equal(len_of(s, "EXISTS", "{p:p000000000000000000000001}:benefits"), 0);
        assert_counters(s, (counters){0});
    }
    /* no policy at all */
    cmd(s, "FLUSHDB");
    assert_int_equal(match_one(s, p, NOW), FXB_ENT_NOT_OPEN);
    /* the first moment of the window is inside it */
    make_policy(s, (policy_opts){.from = NOW, .until = NOW + 1});
    assert_int_equal(match_one(s, p, NOW), FXB_ENT_NEW_GRANTED);
}

static void test_bad_arguments_are_refused_before_anything_is_written(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){0});
    fxb_err err;
    fxb_ent_outcome o[FXB_ENT_BATCH_MAX + 1];
    char p[32];
    subj(p, 'p', 1);
    fxb_ent_match good = {p, ""};
    struct {
        const char *pid, *subject, *held, *by, *reason;
    } bad[] = {
        {"b0123456789ABCDEF", p, "", "engine", "POLICY_ID_INVALID"},
        {"x0123456789abcdef", p, "", "engine", "POLICY_ID_INVALID"},
        {"b0123456789abcde", p, "", "engine", "POLICY_ID_INVALID"},
        {NULL, p, "", "engine", "POLICY_ID_INVALID"},
        {PID, "u000000000000000000000001", "", "engine", "SUBJECT_ID_INVALID"},
        {PID, "p00000000000000000000001", "", "engine", "SUBJECT_ID_INVALID"},
        {PID, "p00000000000000000000000G", "", "engine", "SUBJECT_ID_INVALID"},
        {PID, "p}0000000000000000000000{", "", "engine", "SUBJECT_ID_INVALID"},
        {PID, p, "TX", "engine", "HELD_INVALID"},
        {PID, p, "", "", "ACTOR_INVALID"},
        {PID, p, "", "a,b", "ACTOR_INVALID"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fxb_ent_match m = {bad[i].subject, bad[i].held};
        assert_int_equal(fxb_ent_match_batch(s, bad[i].pid, &m, 1, NOW, bad[i].by, o, &err),
                         FXB_INVALID_ARGUMENT);
        assert_string_equal(err.reason, bad[i].reason);
    }
    fxb_ent_match *many = calloc(FXB_ENT_BATCH_MAX + 1, sizeof *many);
    for (size_t i = 0; i <= FXB_ENT_BATCH_MAX; i++)
        many[i] = good;
    assert_int_equal(
        fxb_ent_match_batch(s, PID, many, FXB_ENT_BATCH_MAX + 1, NOW, "engine", o, &err),
        FXB_INVALID_ARGUMENT);
    free(many);
    const char *subjects[] = {p};
    assert_int_equal(
        fxb_ent_end_batch(s, PID, subjects, 1, "REJECTED_BY_DEPARTMENT", NOW, "engine", o, &err),
        FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "END_REASON_INVALID");
    assert_int_equal(len_of(s, "EXISTS", ENT), 0);
    /* an empty batch is nothing to do */
    assert_int_equal(fxb_ent_match_batch(s, PID, NULL, 0, NOW, "engine", NULL, &err), FXB_OK);
}

/* --- the confirmation step ------------------------------------------------------------------- */

static void test_confirm_flow_matched_then_confirmed_then_granted(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.confirm = 1, .quota = 1});
    char p[32], q[32];
    subj(p, 'p', 1);
    subj(q, 'p', 2);
    assert_int_equal(match_one(s, p, NOW), FXB_ENT_NEW_WAITING);
    assert_int_equal(match_one(s, q, NOW + 1), FXB_ENT_NEW_WAITING);
    fxb_ent e = get_ent(s, p);
    assert_int_equal(e.state, FXB_ENT_MATCHED);
    assert_string_equal(e.reason, "AWAITING_CONFIRMATION");
    assert_int_equal(len_of(s, "ZCARD", QUEUE), 2);
    assert_int_equal(len_of(s, "EXISTS", PAYOUTS), 0);
    assert_counters(s, (counters){.matched = 2});
    /* waiting is live: re-matching changes nothing */
    assert_int_equal(match_one(s, p, NOW + 2), FXB_ENT_UNCHANGED);

    fxb_err err;
    assert_int_equal(fxb_ent_confirm(s, PID, p, NOW + 10, "officer-1", &e, &err), FXB_OK);
    assert_int_equal(e.state, FXB_ENT_GRANTED);
    assert_int_equal(e.updated_ms, NOW + 10);
    assert_int_equal(len_of(s, "ZCARD", QUEUE), 1);
    assert_int_equal(len_of(s, "XLEN", PAYOUTS), 1);
    assert_counters(s, (counters){.matched = 1, .granted = 1, .used = 1, .spent = AMOUNT});
    redisReply *r = xrange(s, LOG);
    assert_int_equal(r->elements, 4); /* two matches, then 1 -> 2 -> 3 */
    assert_string_equal(field(r->element[2], "from"), "1");
    assert_string_equal(field(r->element[2], "to"), "2");
    assert_string_equal(field(r->element[2], "by"), "officer-1");
    assert_string_equal(field(r->element[3], "from"), "2");
    assert_string_equal(field(r->element[3], "to"), "3");
    freeReplyObject(r);

    /* confirming again: not from GRANTED */
    assert_int_equal(fxb_ent_confirm(s, PID, p, NOW + 11, "officer-1", &e, &err),
                     FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "ENTITLEMENT_STATE");

    /* the quota is used: q is confirmed and held */
    assert_int_equal(fxb_ent_confirm(s, PID, q, NOW + 12, "officer-1", &e, &err), FXB_OK);
    assert_int_equal(e.state, FXB_ENT_CONFIRMED);
    assert_string_equal(e.reason, "QUOTA_EXHAUSTED");
    assert_int_equal(len_of(s, "ZCARD", QUEUE), 0);
    assert_counters(s, (counters){.confirmed = 1, .granted = 1, .used = 1, .spent = AMOUNT});
    assert_int_equal(match_one(s, q, NOW + 13), FXB_ENT_UNCHANGED);
    /* a decline frees the place: the next match grants the confirmed one */
    assert_int_equal(fxb_ent_decline(s, PID, p, NOW + 14, "acct", &e, &err), FXB_OK);
    assert_int_equal(match_one(s, q, NOW + 15), FXB_ENT_NEW_GRANTED);
    assert_int_equal(get_ent(s, q).state, FXB_ENT_GRANTED);
    assert_counters(s, (counters){.granted = 1, .declined = 1, .used = 1, .spent = AMOUNT});
}

static void test_confirm_is_refused_outside_the_window_and_for_unknown_subjects(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.confirm = 1, .until = NOW + 5});
    char p[32], q[32];
    subj(p, 'p', 1);
    subj(q, 'p', 2);
    assert_int_equal(match_one(s, p, NOW), FXB_ENT_NEW_WAITING);
    fxb_ent e;
    fxb_err err;
    assert_int_equal(fxb_ent_confirm(s, PID, p, NOW + 5, "officer-1", &e, &err),
                     FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "POLICY_NOT_OPEN");
    assert_int_equal(get_ent(s, p).state, FXB_ENT_MATCHED);
    assert_int_equal(fxb_ent_confirm(s, PID, q, NOW, "officer-1", &e, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, "ENTITLEMENT_NOT_FOUND");
    assert_string_equal(err.message_zh, "未找到该享受记录");
    assert_int_equal(fxb_ent_get(s, PID, q, &e, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, "ENTITLEMENT_NOT_FOUND");
    assert_int_equal(fxb_ent_confirm(s, PID, "p1", NOW, "officer-1", &e, &err),
                     FXB_INVALID_ARGUMENT);
}

static void test_reject_ends_a_matched_entitlement_for_good(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.confirm = 1});
    char p[32];
    subj(p, 'p', 1);
    assert_int_equal(match_one(s, p, NOW), FXB_ENT_NEW_WAITING);
    fxb_ent e;
    fxb_err err;
    assert_int_equal(fxb_ent_reject(s, PID, p, NOW + 1, "officer-1", &e, &err), FXB_OK);
    assert_int_equal(e.state, FXB_ENT_ENDED);
    assert_string_equal(e.reason, "REJECTED_BY_DEPARTMENT");
    assert_string_equal(e.held, "TFU");
    assert_int_equal(len_of(s, "ZCARD", QUEUE), 0);
    assert_counters(s, (counters){.ended = 1});
    /* never reopened, never rejected twice */
    assert_int_equal(match_one(s, p, NOW + 2), FXB_ENT_UNCHANGED);
    assert_int_equal(get_ent(s, p).round, 1);
    assert_int_equal(fxb_ent_reject(s, PID, p, NOW + 3, "officer-1", &e, &err),
                     FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "ENTITLEMENT_STATE");
    assert_int_equal(fxb_ent_decline(s, PID, p, NOW + 3, "acct", &e, &err),
                     FXB_FAILED_PRECONDITION);
    /* a granted one is not the department's to reject */
    cmd(s, "HSET " PKEY " confirm 0");
    char q[32];
    assert_int_equal(match_one(s, subj(q, 'p', 2), NOW), FXB_ENT_NEW_GRANTED);
    assert_int_equal(fxb_ent_reject(s, PID, q, NOW + 3, "officer-1", &e, &err),
                     FXB_FAILED_PRECONDITION);
}

static void test_decline_of_a_cash_grant_cancels_its_disbursement_with_the_same_key(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){0});
    char p[32];
    subj(p, 'p', 1);
    assert_int_equal(match_one(s, p, NOW), FXB_ENT_NEW_GRANTED);
    fxb_ent e;
    fxb_err err;
    assert_int_equal(fxb_ent_decline(s, PID, p, NOW + 1, "acct-9", &e, &err), FXB_OK);
    redisReply *r = xrange(s, PAYOUTS);
    assert_int_equal(r->elements, 2);
    assert_string_equal(field(r->element[0], "op"), "pay");
    assert_string_equal(field(r->element[1], "op"), "cancel");
    assert_string_equal(field(r->element[1], "keys"), field(r->element[0], "keys"));
    assert_string_equal(field(r->element[1], "n"), "1");
    assert_string_equal(field(r->element[1], "amount_fen"), "50000");
    freeReplyObject(r);
    assert_counters(s, (counters){.declined = 1});
    assert_int_equal(fxb_ent_decline(s, PID, p, NOW + 2, "acct-9", &e, &err),
                     FXB_FAILED_PRECONDITION);
    assert_int_equal(len_of(s, "XLEN", PAYOUTS), 2);
}

/* --- payments
 * --------------------------------------------------------------------------------------- */

static void test_payment_is_recorded_once_and_conflicts_are_refused(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){0});
    char p[32], key[FXB_ENT_KEY_MAX + 1], pid[FXB_POLICY_ID_LEN + 1];
    subj(p, 'p', 1);
    assert_int_equal(match_one(s, p, NOW), FXB_ENT_NEW_GRANTED);
    fxb_ent_disbursement_key(key, PID, p, 1);
    assert_string_equal(key, PID ":p000000000000000000000001:1");
    fxb_ent e;
    fxb_err err;
    assert_int_equal(fxb_ent_pay(s, key, "PAY-0001", NOW + 5, NOW + 6, &e, pid, &err), FXB_OK);
    assert_string_equal(pid, PID);
    assert_int_equal(e.state, FXB_ENT_PAID);
    assert_int_equal(e.updated_ms, NOW + 6);
    assert_counters(s, (counters){.paid = 1, .used = 1, .spent = AMOUNT});
    fxb_err e2;
    redisReply *r = fxb_store_command(s, &e2, "HGET {b:" PID "}:paid %s", key);
    assert_non_null(r);
    assert_string_equal(r->str, "PAY-0001,1750000000005");
    freeReplyObject(r);
    /* the same again: the same answer, nothing more written */
    long long log_len = len_of(s, "XLEN", LOG);
    fxb_ent again;
    assert_int_equal(fxb_ent_pay(s, key, "PAY-0001", NOW + 5, NOW + 60, &again, NULL, &err),
                     FXB_OK);
    assert_memory_equal(&again, &e, sizeof e);
    assert_int_equal(len_of(s, "XLEN", LOG), log_len);
    /* another reference for a paid key */
    assert_int_equal(fxb_ent_pay(s, key, "PAY-0002", NOW + 5, NOW + 60, &again, NULL, &err),
                     FXB_ALREADY_EXISTS);
    assert_string_equal(err.reason, "PAYMENT_CONFLICT");
    assert_counters(s, (counters){.paid = 1, .used = 1, .spent = AMOUNT});
    /* paid is final */
    assert_int_equal(fxb_ent_decline(s, PID, p, NOW + 61, "acct", NULL, &err),
                     FXB_FAILED_PRECONDITION);
    assert_int_equal(match_one(s, p, NOW + 62), FXB_ENT_UNCHANGED);
}

static void test_payment_of_a_declined_stale_or_unknown_disbursement_is_refused(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){0});
    char p[32], q[32], key[FXB_ENT_KEY_MAX + 1];
    subj(p, 'p', 1);
    subj(q, 'p', 2);
    fxb_ent e;
    fxb_err err;
    /* declined */
    assert_int_equal(match_one(s, p, NOW), FXB_ENT_NEW_GRANTED);
    assert_int_equal(fxb_ent_decline(s, PID, p, NOW + 1, "acct", NULL, &err), FXB_OK);
    fxb_ent_disbursement_key(key, PID, p, 1);
    assert_int_equal(fxb_ent_pay(s, key, "R1", 0, NOW + 2, &e, NULL, &err),
                     FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "ENTITLEMENT_STATE");
    /* a stale round: q ended and reopened as round 2 */
    assert_int_equal(match_one(s, q, NOW), FXB_ENT_NEW_GRANTED);
    cmd(s, "HSET " PKEY " benefit_kind 2");
    const char *subjects[] = {q};
    fxb_ent_outcome o;
    assert_int_equal(
        fxb_ent_end_batch(s, PID, subjects, 1, "NO_LONGER_ELIGIBLE", NOW + 1, "engine", &o, &err),
        FXB_OK);
    assert_int_equal(o, FXB_ENT_ENDED_NOW);
    cmd(s, "HSET " PKEY " benefit_kind 1");
    assert_int_equal(match_one(s, q, NOW + 2), FXB_ENT_NEW_GRANTED);
    assert_int_equal(get_ent(s, q).round, 2);
    fxb_ent_disbursement_key(key, PID, q, 1);
    assert_int_equal(fxb_ent_pay(s, key, "R2", 0, NOW + 3, &e, NULL, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, "DISBURSEMENT_NOT_FOUND");
    fxb_ent_disbursement_key(key, PID, q, 3);
    assert_int_equal(fxb_ent_pay(s, key, "R2", 0, NOW + 3, &e, NULL, &err), FXB_NOT_FOUND);
    fxb_ent_disbursement_key(key, PID, q, 2);
    assert_int_equal(fxb_ent_pay(s, key, "R2", 0, NOW + 3, &e, NULL, &err), FXB_OK);
    assert_int_equal(e.state, FXB_ENT_PAID);
    /* nobody's */
    char r[32];
    fxb_ent_disbursement_key(key, PID, subj(r, 'e', 5), 1);
    assert_int_equal(fxb_ent_pay(s, key, "R3", 0, NOW, &e, NULL, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, "DISBURSEMENT_NOT_FOUND");
    /* malformed keys and references */
    const char *bad_keys[] = {"",
                              "b0123456789abcdef:p000000000000000000000002",
                              "b0123456789abcdef:p000000000000000000000002:02",
                              "b0123456789abcdef:p000000000000000000000002:0",
                              "b0123456789abcdef:p000000000000000000000002:x",
                              "b0123456789abcdef:p000000000000000000000002:99999999999",
                              "b0123456789abcdef-p000000000000000000000002:2",
                              "B0123456789abcdef:p000000000000000000000002:2",
                              NULL};
    for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
        assert_int_equal(fxb_ent_pay(s, bad_keys[i], "R4", 0, NOW, &e, NULL, &err),
                         FXB_INVALID_ARGUMENT);
        assert_string_equal(err.reason, "DISBURSEMENT_KEY_INVALID");
    }
    fxb_ent_disbursement_key(key, PID, q, 2);
    const char *bad_refs[] = {
        "", "a b", "a,b", "0123456789012345678901234567890123456789012345678901234567890123456789",
        NULL};
    for (size_t i = 0; i < sizeof bad_refs / sizeof bad_refs[0]; i++) {
        assert_int_equal(fxb_ent_pay(s, key, bad_refs[i], 0, NOW, &e, NULL, &err),
                         FXB_INVALID_ARGUMENT);
        assert_string_equal(err.reason, "PAYMENT_REFERENCE_INVALID");
    }
}

static void test_a_non_cash_grant_cannot_be_paid(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.kind = FXB_BENEFIT_VOUCHER});
    char p[32], key[FXB_ENT_KEY_MAX + 1];
    assert_int_equal(match_one(s, subj(p, 'p', 1), NOW), FXB_ENT_NEW_GRANTED);
    fxb_ent_disbursement_key(key, PID, p, 1);
    fxb_err err;
    assert_int_equal(fxb_ent_pay(s, key, "R1", 0, NOW, NULL, NULL, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, "DISBURSEMENT_NOT_FOUND");
}

/* --- ending and reopening --------------------------------------------------------------------- */

static void test_ending_spares_cash_grants_and_ends_non_cash_ones(void **state)
{
    fxb_store *s = *state;
    char n[4][32];
    const char *subjects[4] = {subj(n[0], 'p', 1), subj(n[1], 'p', 2), subj(n[2], 'p', 3),
                               subj(n[3], 'p', 4)};
    fxb_ent_outcome o[4];
    fxb_err err;
    /* cash, quota 1: p1 granted, p2 held; p3 nothing */
    make_policy(s, (policy_opts){.quota = 1});
    match_range(s, 'p', 1, 2, NOW, o);
    assert_int_equal(
        fxb_ent_end_batch(s, PID, subjects, 3, "NO_LONGER_ELIGIBLE", NOW + 1, "engine", o, &err),
        FXB_OK);
    assert_int_equal(o[0], FXB_ENT_UNCHANGED); /* cash GRANTED: paid as decided */
    assert_int_equal(o[1], FXB_ENT_ENDED_NOW);
    assert_int_equal(o[2], FXB_ENT_UNCHANGED);
    assert_int_equal(get_ent(s, subjects[0]).state, FXB_ENT_GRANTED);
    fxb_ent e = get_ent(s, subjects[1]);
    assert_int_equal(e.state, FXB_ENT_ENDED);
    assert_string_equal(e.reason, "NO_LONGER_ELIGIBLE");
    assert_counters(s, (counters){.granted = 1, .ended = 1, .used = 1, .spent = AMOUNT});

    /* non-cash: the grant ends too and gives its place back, but not at
     * policy close */
    cmd(s, "FLUSHDB");
    make_policy(s, (policy_opts){.kind = FXB_BENEFIT_SERVICE, .quota = 10, .confirm = 0});
    match_range(s, 'p', 1, 2, NOW, o);
    cmd(s, "HSET " PKEY " confirm 1");
    match_range(s, 'p', 3, 2, NOW, o); /* p3, p4 waiting */
    assert_int_equal(len_of(s, "ZCARD", QUEUE), 2);
    assert_int_equal(
        fxb_ent_end_batch(s, PID, subjects, 4, "POLICY_CLOSED", NOW + 1, "engine", o, &err),
        FXB_OK);
    assert_int_equal(o[0], FXB_ENT_UNCHANGED);
    assert_int_equal(o[1], FXB_ENT_UNCHANGED);
    assert_int_equal(o[2], FXB_ENT_ENDED_NOW);
    assert_int_equal(o[3], FXB_ENT_ENDED_NOW);
    assert_int_equal(len_of(s, "ZCARD", QUEUE), 0);
    assert_counters(s, (counters){.granted = 2, .ended = 2, .used = 2, .spent = 2 * AMOUNT});
    assert_int_equal(
        fxb_ent_end_batch(s, PID, subjects, 4, "NO_LONGER_ELIGIBLE", NOW + 2, "engine", o, &err),
        FXB_OK);
    assert_int_equal(o[0], FXB_ENT_ENDED_NOW);
    assert_int_equal(o[1], FXB_ENT_ENDED_NOW);
    assert_int_equal(o[2], FXB_ENT_UNCHANGED);
    assert_counters(s, (counters){.ended = 4});
    /* the two grants ended by one batch: one log entry naming both */
    redisReply *r = xrange(s, LOG);
    const redisReply *last = r->element[r->elements - 1];
    assert_string_equal(field(last, "from"), "3");
    assert_string_equal(field(last, "to"), "6");
    assert_string_equal(field(last, "reason"), "NO_LONGER_ELIGIBLE");
    assert_string_equal(field(last, "n"), "2");
    char both[64];
    snprintf(both, sizeof both, "%s,%s", subjects[0], subjects[1]);
    assert_string_equal(field(last, "subjects"), both);
    freeReplyObject(r);
}

static void test_an_ended_entitlement_reopens_as_the_next_round(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.kind = FXB_BENEFIT_SUBSIDY});
    char n[3][32];
    const char *subjects[] = {subj(n[0], 'p', 1), subj(n[1], 'p', 2), subj(n[2], 'p', 3)};
    fxb_ent_outcome o[3];
    fxb_err err;
    match_range(s, 'p', 1, 3, NOW, o);
    assert_int_equal(
        fxb_ent_end_batch(s, PID, subjects, 1, "NO_LONGER_ELIGIBLE", NOW + 1, "engine", o, &err),
        FXB_OK);
    assert_int_equal(
        fxb_ent_end_batch(s, PID, subjects + 1, 1, "POLICY_EXPIRED", NOW + 1, "engine", o, &err),
        FXB_OK);
    assert_int_equal(fxb_ent_decline(s, PID, subjects[2], NOW + 1, "acct", NULL, &err), FXB_OK);
    assert_counters(s, (counters){.ended = 2, .declined = 1});

    match_range(s, 'p', 1, 3, NOW + 10, o);
    assert_int_equal(o[0], FXB_ENT_NEW_GRANTED);
    assert_int_equal(o[1], FXB_ENT_NEW_GRANTED);
    assert_int_equal(o[2], FXB_ENT_UNCHANGED);
    fxb_ent e = get_ent(s, subjects[0]);
    assert_int_equal(e.state, FXB_ENT_GRANTED);
    assert_int_equal(e.round, 2);
    assert_int_equal(e.created_ms, NOW + 10);
    assert_string_equal(e.reason, "");
    assert_int_equal(get_ent(s, subjects[1]).round, 2);
    assert_counters(s, (counters){.granted = 2, .declined = 1, .used = 2, .spent = 2 * AMOUNT});

    /* closed ones stay closed; a cash reopen pays under the new key */
    cmd(s, "HSET " PKEY " benefit_kind 1");
    assert_int_equal(
        fxb_ent_end_batch(s, PID, subjects, 1, "POLICY_CLOSED", NOW + 11, "engine", o, &err),
        FXB_OK);
    assert_int_equal(o[0], FXB_ENT_UNCHANGED); /* granted: not ended at close */
    cmd(s, "HSET " ENT " %s 6,1,%lld,%lld,POLICY_CLOSED,-", subjects[2], NOW, NOW);
    assert_int_equal(match_one(s, subjects[2], NOW + 12), FXB_ENT_UNCHANGED);
    cmd(s, "HSET " ENT " %s 6,4,%lld,%lld,NO_LONGER_ELIGIBLE,-", subjects[2], NOW, NOW);
    assert_int_equal(match_one(s, subjects[2], NOW + 12), FXB_ENT_NEW_GRANTED);
    assert_int_equal(get_ent(s, subjects[2]).round, 5);
    redisReply *r = xrange(s, PAYOUTS);
    assert_string_equal(field(r->element[r->elements - 1], "keys"),
                        PID ":p000000000000000000000003:5");
    freeReplyObject(r);
}

/* --- listing ---------------------------------------------------------------------------------- */

typedef struct tally {
    long long by_state[8];
    size_t calls;
    size_t stop_after;
} tally;

static bool count_one(const fxb_ent *e, void *arg)
{
    tally *t = arg;
    t->by_state[e->state]++;
    t->calls++;
    return t->stop_after == 0 || t->calls < t->stop_after;
}

static void test_each_walks_the_entitlements_of_the_states_asked(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.quota = 1200});
    enum { N = 2500 };
    static fxb_ent_outcome o[N];
    for (unsigned b = 0; b < N; b += FXB_ENT_BATCH_MAX)
        match_range(s, 'p', b, N - b < FXB_ENT_BATCH_MAX ? N - b : FXB_ENT_BATCH_MAX, NOW, o + b);
    cmd(s, "HSET " ENT " p00000000000000000000000zz 1,1,1,1,-,-"); /* not a subject */
    cmd(s, "HSET " ENT " p000000000000000000009999 garbage");
    tally t = {{0}, 0, 0};
    fxb_err err;
    assert_int_equal(fxb_ent_each(s, PID, 1u << FXB_ENT_GRANTED, count_one, &t, &err), FXB_OK);
    assert_int_equal(t.by_state[FXB_ENT_GRANTED], 1200);
    assert_int_equal(t.calls, 1200);
    memset(&t, 0, sizeof t);
    assert_int_equal(fxb_ent_each(s, PID, (1u << FXB_ENT_GRANTED) | (1u << FXB_ENT_MATCHED),
                                  count_one, &t, &err),
                     FXB_OK);
    assert_int_equal(t.by_state[FXB_ENT_MATCHED], 1300);
    assert_int_equal(t.calls, N);
    memset(&t, 0, sizeof t);
    t.stop_after = 10;
    assert_int_equal(fxb_ent_each(s, PID, 0xff, count_one, &t, &err), FXB_OK);
    assert_int_equal(t.calls, 10);
}

static void test_a_stored_value_parses_back(void **state)
{
    (void)state;
    fxb_ent e;
    const char *v = "3,12,1700000000000,1700000000001,QUOTA_EXHAUSTED,TFU";
    assert_true(fxb_ent_parse("p000000000000000000000001", v, strlen(v), &e));
    assert_int_equal(e.state, 3);
    assert_int_equal(e.round, 12);
    assert_int_equal(e.created_ms, 1700000000000LL);
    assert_int_equal(e.updated_ms, 1700000000001LL);
    assert_string_equal(e.reason, "QUOTA_EXHAUSTED");
    assert_string_equal(e.held, "TFU");
    v = "6,1,0,0,-,-";
    assert_true(fxb_ent_parse("e000000000000000000000001", v, strlen(v), &e));
    assert_string_equal(e.reason, "");
    assert_string_equal(e.held, "");
    const char *bad[] = {"",
                         "3,1,0,0,-",
                         "3,1,0,0,-,-,",
                         "7,1,0,0,-,-",
                         "0,1,0,0,-,-",
                         "3,0,0,0,-,-",
                         "3,01,0,0,-,-",
                         "3,1,x,0,-,-",
                         "3,1,0,0,bad,-",
                         "3,1,0,0,-,TX",
                         "3,1,0,0,,-",
                         "3,4294967296,0,0,-,-"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (fxb_ent_parse("p000000000000000000000001", bad[i], strlen(bad[i]), &e))
            fail_msg("\"%s\" parsed", bad[i]);
}

/* --- two matchers, one quota --------------------------------------------------------------------
 */

typedef struct racer {
    unsigned first;
    size_t granted;
    fxb_code rc;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    fxb_store_options opt = {.url = fxb_test_private_url()};
    fxb_err err;
    fxb_store *s = fxb_store_new(&opt, &err);
    r->rc = s != NULL ? FXB_OK : FXB_UNAVAILABLE;
    enum { BATCH = 25, PER = 300 };
    char names[BATCH][32];
    fxb_ent_match m[BATCH];
    fxb_ent_outcome o[BATCH];
    for (unsigned b = 0; b < PER && r->rc == FXB_OK; b += BATCH) {
        for (unsigned i = 0; i < BATCH; i++)
            m[i] = (fxb_ent_match){subj(names[i], 'p', r->first + b + i), ""};
        r->rc = fxb_ent_match_batch(s, PID, m, BATCH, NOW, "engine", o, &err);
        r->granted += count_outcome(o, BATCH, FXB_ENT_NEW_GRANTED);
    }
    fxb_store_free(s);
    return NULL;
}

static void test_two_matchers_racing_grant_exactly_the_quota(void **state)
{
    fxb_store *s = *state;
    make_policy(s, (policy_opts){.quota = 100});
    /* subjects 0..299 and 150..449: 450 distinct, 150 matched by both */
    racer r[2] = {{.first = 0}, {.first = 150}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(r[0].rc, FXB_OK);
    assert_int_equal(r[1].rc, FXB_OK);
    assert_int_equal(r[0].granted + r[1].granted, 100);
    tally all = {{0}, 0, 0};
    fxb_err err;
    assert_int_equal(fxb_ent_each(s, PID, 0xff, count_one, &all, &err), FXB_OK);
    assert_int_equal(all.calls, 450);
    assert_int_equal(all.by_state[FXB_ENT_GRANTED], 100);
    assert_int_equal(all.by_state[FXB_ENT_MATCHED], 350);
    assert_counters(s, (counters){.matched = all.by_state[FXB_ENT_MATCHED],
                                  .granted = all.by_state[FXB_ENT_GRANTED],
                                  .used = 100,
                                  .spent = 100LL * AMOUNT});
    assert_int_equal(disbursement_keys(s), 100);
    assert_int_equal(log_transitions(s), 450);
}

/* --- notices
 * ------------------------------------------------------------------------------------------ */

static fxb_policy test_policy(const char *title, int kind, int64_t amount)
{
    fxb_policy p = {.id = PID,
                    .title = title,
                    .code = "GX-1",
                    .department = "xx-civil",
                    .category = 2,
                    .subject = FXB_SUBJECT_PERSON,
                    .kind = kind,
                    .amount_fen = amount,
                    .status = FXB_POLICY_PUBLISHED};
    return p;
}

static redisReply *inbox_of(fxb_store *s, const char *subject)
{
    char key[96];
    assert_true(fxb_inbox_key(key, sizeof key, subject));
    return xrange(s, key);
}

static void test_notices_reach_accounts_and_enterprises_not_unlinked_persons(void **state)
{
    fxb_store *s = *state;
    char n[3][32];
    const char *subjects[] = {subj(n[0], 'p', 1), subj(n[1], 'p', 2), subj(n[2], 'e', 3)};
    cmd(s, "SET {p:%s}:account acct-1", subjects[0]);
    fxb_policy p = test_policy("高龄津贴", FXB_BENEFIT_CASH, 123450);
    fxb_benefit_notice_kind kinds[] = {FXB_NOTICE_GRANTED, FXB_NOTICE_GRANTED, FXB_NOTICE_GRANTED};
    size_t sent = 99;
    fxb_err err;
    assert_int_equal(fxb_benefit_notify(s, &p, subjects, kinds, 3, NOW, &sent, &err), FXB_OK);
    assert_int_equal(sent, 2);

    redisReply *r = inbox_of(s, "acct-1");
    assert_int_equal(r->elements, 1);
    assert_string_equal(field(r->element[0], "kind"), "benefit.granted");
    assert_string_equal(field(r->element[0], "title"), "惠民政策「高龄津贴」已为您办理");
    assert_non_null(strstr(field(r->element[0], "body"), "补贴 1234.50 元"));
    assert_string_equal(field(r->element[0], "ref"), PID);
    assert_string_equal(field(r->element[0], "at_ms"), "1750000000000");
    freeReplyObject(r);
    r = inbox_of(s, subjects[2]);
    assert_int_equal(r->elements, 1);
    assert_string_equal(field(r->element[0], "kind"), "benefit.granted");
    freeReplyObject(r);
    /* the person without an account: nothing anywhere but the two */
    fxb_err e2;
    r = fxb_store_command(s, &e2, "KEYS *inbox");
    assert_non_null(r);
    assert_int_equal(r->elements, 2);
    freeReplyObject(r);
    /* both notified accounts are queued for push (a batch names every
     * recipient; the push adaptor checks presence when it sends) */
    assert_int_equal(push_recipients(s), 2);
}

static void test_each_kind_of_notice_says_what_happened(void **state)
{
    fxb_store *s = *state;
    char e[32];
    const char *subjects[] = {subj(e, 'e', 1), e, e, e};
    fxb_policy p = test_policy("稳岗补贴", FXB_BENEFIT_CASH, 100000);
    p.category = 1;
    fxb_benefit_notice_kind kinds[] = {FXB_NOTICE_GRANTED, FXB_NOTICE_AWAITING, FXB_NOTICE_ENDED,
                                       FXB_NOTICE_PAID};
    size_t sent = 0;
    fxb_err err;
    assert_int_equal(fxb_benefit_notify(s, &p, subjects, kinds, 4, NOW, &sent, &err), FXB_OK);
    assert_int_equal(sent, 4);
    redisReply *r = inbox_of(s, e);
    assert_int_equal(r->elements, 4);
    static const char *const want_kind[] = {"benefit.granted", "benefit.awaiting", "benefit.ended",
                                            "benefit.paid"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(field(r->element[i], "kind"), want_kind[i]);
    assert_string_equal(field(r->element[0], "title"), "惠企政策「稳岗补贴」已为您办理");
    assert_string_equal(field(r->element[1], "body"),
                        "您符合「稳岗补贴」的享受条件，待部门确认后发放。");
    assert_non_null(strstr(field(r->element[2], "title"), "已结束"));
    assert_non_null(strstr(field(r->element[3], "body"), "1000.00 元"));
    freeReplyObject(r);
    /* a bad kind or subject refuses the call */
    fxb_benefit_notice_kind bad_kind = 9;
    assert_int_equal(fxb_benefit_notify(s, &p, subjects, &bad_kind, 1, NOW, &sent, &err),
                     FXB_INVALID_ARGUMENT);
    const char *bad_subject[] = {"acct-1"};
    assert_int_equal(fxb_benefit_notify(s, &p, bad_subject, kinds, 1, NOW, &sent, &err),
                     FXB_INVALID_ARGUMENT);
}

static void test_a_long_policy_title_is_cut_at_a_character(void **state)
{
    fxb_store *s = *state;
    char title[400] = "";
    for (int i = 0; i < 100; i++)
        strcat(title, "惠"); /* 100 characters, 300 bytes */
    char e[32];
    const char *subjects[] = {subj(e, 'e', 1)};
    fxb_policy p = test_policy(title, FXB_BENEFIT_SERVICE, 0);
    fxb_benefit_notice_kind kinds[] = {FXB_NOTICE_GRANTED};
    size_t sent = 0;
    fxb_err err;
    assert_int_equal(fxb_benefit_notify(s, &p, subjects, kinds, 1, NOW, &sent, &err), FXB_OK);
    assert_int_equal(sent, 1);
    redisReply *r = inbox_of(s, e);
    const char *t = field(r->element[0], "title");
    assert_true(strlen(t) <= FXB_INBOX_TITLE_MAX);
    assert_true(strlen(t) > FXB_INBOX_TITLE_MAX - 3);
    assert_non_null(strstr(t, "…」已为您办理"));
    assert_int_equal(strncmp(t, "惠民政策「惠惠", strlen("惠民政策「惠惠")), 0);
    /* the body has room for the whole title */
    assert_non_null(strstr(field(r->element[0], "body"), title));
    freeReplyObject(r);
}

static void test_many_notices_in_one_call(void **state)
{
    fxb_store *s = *state;
    enum { N = 2300 };
    static char names[N][32];
    static const char *subjects[N];
    static fxb_benefit_notice_kind kinds[N];
    for (unsigned i = 0; i < N; i++) {
        subjects[i] = subj(names[i], 'p', i);
        kinds[i] = FXB_NOTICE_GRANTED;
        if (i % 3 != 0)
            cmd(s, "SET {p:%s}:account acct-%u", subjects[i], i);
        if (i % 2 == 0)
            cmd(s, "SET " FXB_PUSH_ONLINE_PREFIX "acct-%u 1", i);
    }
    fxb_policy p = test_policy("高龄津贴", FXB_BENEFIT_CASH, 10000);
    size_t sent = 0;
    fxb_err err;
    assert_int_equal(fxb_benefit_notify(s, &p, subjects, kinds, N, NOW, &sent, &err), FXB_OK);
    size_t want = 0;
    for (unsigned i = 0; i < N; i++)
        want += i % 3 != 0;
    assert_int_equal(sent, want);
    /* every notified account, online (the even ones) or not: the push
     * adaptor skips the online ones when it sends */
    assert_int_equal(push_recipients(s), want);
    redisReply *r = inbox_of(s, "acct-5");
    assert_int_equal(r->elements, 1);
    freeReplyObject(r);
    r = inbox_of(s, "acct-6");
    assert_int_equal(r->elements, 0);
    freeReplyObject(r);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, each_setup, each_teardown)
    const struct CMUnitTest tests[] = {
        T(test_a_match_grants_at_once_with_log_payout_and_list),
        T(test_a_non_cash_grant_has_no_disbursement),
        T(test_rematching_the_same_batch_changes_nothing),
        T(test_a_batch_writes_one_disbursement_entry_for_its_grants),
        T(test_a_subject_twice_in_one_batch_is_matched_once),
        T(test_a_batch_logs_one_entry_per_kind_of_transition),
        T(test_a_lone_rematch_repairs_a_lost_list_entry),
        T(test_quota_holds_the_rest_until_a_decline_frees_a_place),
        T(test_budget_holds_the_rest_until_a_decline_frees_it),
        T(test_not_published_or_outside_the_window_grants_nothing),
        T(test_bad_arguments_are_refused_before_anything_is_written),
        T(test_confirm_flow_matched_then_confirmed_then_granted),
        T(test_confirm_is_refused_outside_the_window_and_for_unknown_subjects),
        T(test_reject_ends_a_matched_entitlement_for_good),
        T(test_decline_of_a_cash_grant_cancels_its_disbursement_with_the_same_key),
        T(test_payment_is_recorded_once_and_conflicts_are_refused),
        T(test_payment_of_a_declined_stale_or_unknown_disbursement_is_refused),
        T(test_a_non_cash_grant_cannot_be_paid),
        T(test_ending_spares_cash_grants_and_ends_non_cash_ones),
        T(test_an_ended_entitlement_reopens_as_the_next_round),
        T(test_each_walks_the_entitlements_of_the_states_asked),
        cmocka_unit_test(test_a_stored_value_parses_back),
        T(test_two_matchers_racing_grant_exactly_the_quota),
        T(test_notices_reach_accounts_and_enterprises_not_unlinked_persons),
        T(test_each_kind_of_notice_says_what_happened),
        T(test_a_long_policy_title_is_cut_at_a_character),
        T(test_many_notices_in_one_call),
    };
    return cmocka_run_group_tests(tests, fxb_test_private_group_setup,
                                  fxb_test_private_group_teardown);
}
