/* Inbox streams against a real Redis (db 6, flushed before each test): one
 * entry per notice with kind, title, body, ref and when, in the subject's
 * own key; every bound checked before anything is appended; ids in order;
 * the stream kept at about the latest FXB_INBOX_MAX; every notice published
 * for live push once it is readable, and queued for the vendor push outbox
 * only while its subject has no live subscription; batches append in order,
 * all or nothing on validation, queue one multicast entry per kind and
 * title of a round trip naming every recipient, online or not (the push
 * adaptor checks presence when it sends), and publish
 * their subjects together ("\n" between them), one publication per round
 * trip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "fixture.h"
#include "store/inbox.h"
#include "store/keys.h"

#define TEST_DB 6

#define PERSON        "acct-42"
#define ENTERPRISE    "e0123456789abcdef01234567"
#define PERSON_KEY    "{u:" PERSON "}:inbox"
#define PERSON_ONLINE FXB_PUSH_ONLINE_PREFIX PERSON

static char test_url[FXB_STORE_URL_MAX + 64];

static int group_setup(void **state)
{
    (void)state;
    return fxb_test_redis_url(TEST_DB, test_url, sizeof test_url);
}

static int each_setup(void **state)
{
    *state = fxb_test_store_open(test_url);
    return *state != NULL ? 0 : -1;
}

static int each_teardown(void **state)
{
    fxb_store_free(*state);
    return 0;
}

static long long stream_len(fxb_store *s, const char *key)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "XLEN %s", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

/* The value of field in the entry (an XRANGE element). */
static const char *field(const redisReply *entry, const char *name)
{
    const redisReply *kv = entry->element[1];
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (strcmp(kv->element[i]->str, name) == 0)
            return kv->element[i + 1]->str;
    return NULL;
}

/* A string of n copies of c (n < 2048). */
static const char *repeat(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

static void parse_id(const char *id, uint64_t *ms, uint64_t *seq)
{
    char *end;
    *ms = strtoull(id, &end, 10);
    assert_int_equal(*end, '-');
    *seq = strtoull(end + 1, &end, 10);
    assert_int_equal(*end, '\0');
}

static void test_a_notice_holds_kind_title_body_ref_and_when(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    char id[32];
    assert_int_equal(fxb_inbox_append(s, PERSON, "proxy.offered", "代办授权邀请",
                                      "138****5678 请您代办", "g-1", 1700000000123, id, &err),
                     FXB_OK);
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - +", PERSON_KEY);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    const redisReply *e = r->element[0];
    assert_string_equal(e->element[0]->str, id);
    assert_int_equal(e->element[1]->elements, 10); /* exactly five fields */
    assert_string_equal(field(e, "kind"), "proxy.offered");
    assert_string_equal(field(e, "title"), "代办授权邀请");
    assert_string_equal(field(e, "body"), "138****5678 请您代办");
    assert_string_equal(field(e, "ref"), "g-1");
    assert_string_equal(field(e, "at_ms"), "1700000000123");
    freeReplyObject(r);
}

static void test_absent_body_and_ref_are_empty(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    assert_int_equal(fxb_inbox_append(s, PERSON, "x", "t", NULL, NULL, 0, NULL, &err), FXB_OK);
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - +", PERSON_KEY);
    assert_non_null(r);
    assert_int_equal(r->elements, 1);
    assert_string_equal(field(r->element[0], "body"), "");
    assert_string_equal(field(r->element[0], "ref"), "");
    assert_string_equal(field(r->element[0], "at_ms"), "0");
    freeReplyObject(r);
}

static void test_a_person_and_an_enterprise_each_have_their_own_key(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    char key[128];
    assert_string_equal(fxb_inbox_tag(PERSON), "u");
    assert_string_equal(fxb_inbox_tag(ENTERPRISE), "e");
    /* not quite an enterprise id: an ordinary account id */
    assert_string_equal(fxb_inbox_tag("e0123456789ABCDEF01234567"), "u");
    assert_string_equal(fxb_inbox_tag("e0123456789abcdef0123456"), "u");
    assert_null(fxb_inbox_tag(NULL));
    assert_null(fxb_inbox_tag(""));
    assert_null(fxb_inbox_tag("a}:b"));
    assert_true(fxb_inbox_key(key, sizeof key, PERSON));
    assert_string_equal(key, PERSON_KEY);
    assert_true(fxb_inbox_key(key, sizeof key, ENTERPRISE));
    assert_string_equal(key, "{e:" ENTERPRISE "}:inbox");
    assert_false(fxb_inbox_key(key, 10, ENTERPRISE));
    assert_false(fxb_inbox_key(key, sizeof key, "{u:1}"));

    assert_int_equal(
        fxb_inbox_append(s, ENTERPRISE, "benefit.granted", "企业补贴", NULL, NULL, 1, NULL, &err),
        FXB_OK);
    assert_int_equal(stream_len(s, "{e:" ENTERPRISE "}:inbox"), 1);
    assert_int_equal(stream_len(s, PERSON_KEY), 0);
}

static void test_every_bound_is_checked_and_nothing_is_appended(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    char b1[2048], b2[2048], b3[2048], b4[2048], b5[2048];
    const char *kind_max = repeat(b1, 'k', FXB_INBOX_KIND_MAX);
    const char *title_max = repeat(b2, 't', FXB_INBOX_TITLE_MAX);
    const char *body_max = repeat(b3, 'b', FXB_INBOX_BODY_MAX);
    const char *ref_max = repeat(b4, 'r', FXB_INBOX_REF_MAX);
    char long_id[FXB_KEY_ID_MAX + 2];
    repeat(long_id, 'a', FXB_KEY_ID_MAX + 1);
    char kind_long[FXB_INBOX_KIND_MAX + 2], title_long[FXB_INBOX_TITLE_MAX + 2];
    char body_long[FXB_INBOX_BODY_MAX + 2], ref_long[FXB_INBOX_REF_MAX + 2];
    repeat(kind_long, 'k', FXB_INBOX_KIND_MAX + 1);
    repeat(title_long, 't', FXB_INBOX_TITLE_MAX + 1);
    repeat(body_long, 'b', FXB_INBOX_BODY_MAX + 1);
    repeat(ref_long, 'r', FXB_INBOX_REF_MAX + 1);
    /* 199 bytes then a 3-byte character: 202 bytes, 200 characters */
    repeat(b5, 't', FXB_INBOX_TITLE_MAX - 1);
    strcat(b5, "知");
    struct {
        const char *subject, *kind, *title, *body, *ref, *field;
    } bad[] = {
        {NULL, "x", "t", "", "", "subject"},
        {"", "x", "t", "", "", "subject"},
        {"{u:1}", "x", "t", "", "", "subject"},
        {"a:b", "x", "t", "", "", "subject"},
        {long_id, "x", "t", "", "", "subject"},
        {PERSON, NULL, "t", "", "", "kind"},
        {PERSON, "", "t", "", "", "kind"},
        {PERSON, kind_long, "t", "", "", "kind"},
        {PERSON, "Proxy.Offered", "t", "", "", "kind"},
        {PERSON, "proxy offered", "t", "", "", "kind"},
        {PERSON, "proxy-offered", "t", "", "", "kind"},
        {PERSON, "proxy:offered", "t", "", "", "kind"},
        {PERSON, "x", NULL, "", "", "title"},
        {PERSON, "x", "", "", "", "title"},
        {PERSON, "x", title_long, "", "", "title"},
        {PERSON, "x", b5, "", "", "title"},
        {PERSON, "x", "bad \xff utf-8", "", "", "title"},
        {PERSON, "x", "t", body_long, "", "body"},
        {PERSON, "x", "t", "cut \xe7\x9f", "", "body"},
        {PERSON, "x", "t", "", ref_long, "ref"},
        {PERSON, "x", "t", "", "\xc0\xaf", "ref"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fxb_err_clear(&err);
        assert_int_equal(fxb_inbox_append(s, bad[i].subject, bad[i].kind, bad[i].title, bad[i].body,
                                          bad[i].ref, 1, NULL, &err),
                         FXB_INVALID_ARGUMENT);
        assert_string_equal(err.reason, "INBOX_MESSAGE_INVALID");
        if (strstr(err.message, bad[i].field) == NULL)
            fail_msg("case %zu: message \"%s\" does not name %s", i, err.message, bad[i].field);
    }
    assert_int_equal(fxb_inbox_append(s, PERSON, "x", "t", "", "", -1, NULL, &err),
                     FXB_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "at_ms"));
    assert_int_equal(stream_len(s, PERSON_KEY), 0);

    /* every bound itself is allowed */
    assert_int_equal(
        fxb_inbox_append(s, PERSON, kind_max, title_max, body_max, ref_max, 1, NULL, &err), FXB_OK);
    assert_int_equal(
        fxb_inbox_append(s, PERSON, "a.b_c.0.9", "一", "多行\n正文", "", 1, NULL, &err), FXB_OK);
    assert_int_equal(stream_len(s, PERSON_KEY), 2);
}

static void test_ids_increase_with_every_append(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    char ids[50][32];
    for (int i = 0; i < 50; i++)
        assert_int_equal(fxb_inbox_append(s, PERSON, "x", "t", NULL, NULL, i, ids[i], &err),
                         FXB_OK);
    for (int i = 1; i < 50; i++) {
        uint64_t ms0, seq0, ms1, seq1;
        parse_id(ids[i - 1], &ms0, &seq0);
        parse_id(ids[i], &ms1, &seq1);
        assert_true(ms1 > ms0 || (ms1 == ms0 && seq1 > seq0));
    }
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - +", PERSON_KEY);
    assert_non_null(r);
    assert_int_equal(r->elements, 50);
    for (size_t i = 0; i < 50; i++) {
        assert_string_equal(r->element[i]->element[0]->str, ids[i]);
        char at[8];
        snprintf(at, sizeof at, "%zu", i);
        assert_string_equal(field(r->element[i], "at_ms"), at);
    }
    freeReplyObject(r);
}

static void test_the_inbox_keeps_about_the_latest_1000(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    const int total = FXB_INBOX_MAX + 600;
    char last[32];
    for (int i = 0; i < total; i++)
        assert_int_equal(fxb_inbox_append(s, PERSON, "x", "t", NULL, NULL, i, last, &err), FXB_OK);
    /* MAXLEN ~ trims whole stream nodes (100 entries by default): never
     * below the cap, never a node's worth above it */
    long long n = stream_len(s, PERSON_KEY);
    assert_true(n >= FXB_INBOX_MAX);
    assert_true(n < FXB_INBOX_MAX + 100);
    redisReply *r = fxb_store_command(s, &err, "XREVRANGE %s + - COUNT 1", PERSON_KEY);
    assert_non_null(r);
    assert_string_equal(r->element[0]->element[0]->str, last);
    char want[24];
    snprintf(want, sizeof want, "%d", total - 1);
    assert_string_equal(field(r->element[0], "at_ms"), want);
    freeReplyObject(r);
    /* what is kept is the newest: the oldest left is exactly n from the end */
    r = fxb_store_command(s, &err, "XRANGE %s - + COUNT 1", PERSON_KEY);
    assert_non_null(r);
    snprintf(want, sizeof want, "%lld", total - n);
    assert_string_equal(field(r->element[0], "at_ms"), want);
    freeReplyObject(r);
}

static void test_unreachable_store_is_unavailable(void **state)
{
    (void)state;
    fxb_store_options opt = {.url = "redis://127.0.0.1:1/6", .connect_timeout_ms = 200};
    fxb_err err;
    fxb_store *s = fxb_store_new(&opt, &err);
    assert_non_null(s);
    assert_int_equal(fxb_inbox_append(s, PERSON, "x", "t", NULL, NULL, 1, NULL, &err),
                     FXB_UNAVAILABLE);
    fxb_store_free(s);
}

/* A subscriber on FXB_INBOX_CHANNEL (pub/sub ignores the database). */
static redisContext *subscriber(void)
{
    fxb_store_url u;
    fxb_err err;
    assert_int_equal(fxb_store_url_parse(test_url, &u, &err), FXB_OK);
    struct timeval tv = {2, 0};
    redisContext *c = u.is_unix ? redisConnectUnixWithTimeout(u.host, tv)
                                : redisConnectWithTimeout(u.host, u.port, tv);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisSetTimeout(c, tv);
    redisReply *r = redisCommand(c, "SUBSCRIBE %s", FXB_INBOX_CHANNEL);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    freeReplyObject(r);
    return c;
}

/* The next publication naming subject (others' may interleave: the channel
 * is shared by every database); fails after the 2 s read timeout. */
static void expect_published(redisContext *c, const char *subject)
{
    for (;;) {
        void *reply = NULL;
        assert_int_equal(redisGetReply(c, &reply), REDIS_OK);
        redisReply *m = reply;
        assert_int_equal(m->type, REDIS_REPLY_ARRAY);
        assert_int_equal(m->elements, 3);
        bool mine = strcmp(m->element[1]->str, FXB_INBOX_CHANNEL) == 0 &&
                    strcmp(m->element[2]->str, subject) == 0;
        freeReplyObject(m);
        if (mine)
            return;
    }
}

static void test_every_append_publishes_its_subject_once_readable(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    redisContext *c = subscriber();
    char id[32];
    assert_int_equal(
        fxb_inbox_append(s, PERSON, "proxy.offered", "代办授权邀请", NULL, NULL, 1, id, &err),
        FXB_OK);
    expect_published(c, PERSON);
    /* by the time the wake-up arrives the notice is there to read */
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s %s %s", PERSON_KEY, id, id);
    assert_non_null(r);
    assert_int_equal(r->elements, 1);
    freeReplyObject(r);
    assert_int_equal(
        fxb_inbox_append(s, ENTERPRISE, "benefit.granted", "企业补贴", NULL, NULL, 2, NULL, &err),
        FXB_OK);
    expect_published(c, ENTERPRISE);
    redisFree(c);
}

static void test_a_refused_notice_is_neither_published_nor_queued(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    redisContext *c = subscriber();
    assert_int_equal(fxb_inbox_append(s, PERSON, "Bad Kind", "t", NULL, NULL, 1, NULL, &err),
                     FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_inbox_append(s, ENTERPRISE, "x", "t", NULL, NULL, 1, NULL, &err), FXB_OK);
    /* the first publication seen for either is the good one */
    void *reply = NULL;
    for (;;) {
        assert_int_equal(redisGetReply(c, &reply), REDIS_OK);
        redisReply *m = reply;
        bool person = strcmp(m->element[2]->str, PERSON) == 0;
        bool ent = strcmp(m->element[2]->str, ENTERPRISE) == 0;
        freeReplyObject(m);
        assert_false(person);
        if (ent)
            break;
    }
    redisFree(c);
    assert_int_equal(stream_len(s, FXB_PUSH_OUTBOX), 1);
}

static void test_a_notice_to_an_offline_subject_goes_to_the_push_outbox(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    char id[32];
    assert_int_equal(fxb_inbox_append(s, PERSON, "proxy.offered", "您收到一项代办授权邀请",
                                      "138****5678 邀请您作为代办人", "g-1", 7, id, &err),
                     FXB_OK);
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - +", FXB_PUSH_OUTBOX);
    assert_non_null(r);
    assert_int_equal(r->elements, 1);
    const redisReply *e = r->element[0];
    /* subject, message id, kind, title: the body stays in the inbox */
    assert_int_equal(e->element[1]->elements, 8);
    assert_string_equal(field(e, "subject"), PERSON);
    assert_string_equal(field(e, "message_id"), id);
    assert_string_equal(field(e, "kind"), "proxy.offered");
    assert_string_equal(field(e, "title"), "您收到一项代办授权邀请");
    freeReplyObject(r);
}

static void test_a_notice_to_an_online_subject_is_not_queued_for_push(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "SET %s 2", PERSON_ONLINE);
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(fxb_inbox_append(s, PERSON, "x", "t", NULL, NULL, 1, NULL, &err), FXB_OK);
    assert_int_equal(stream_len(s, FXB_PUSH_OUTBOX), 0);
    assert_int_equal(stream_len(s, PERSON_KEY), 1);
    /* a counter at zero (or garbage) is nobody listening; another subject is
     * not online because this one is */
    r = fxb_store_command(s, &err, "SET %s 0", PERSON_ONLINE);
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(fxb_inbox_append(s, PERSON, "x", "t", NULL, NULL, 2, NULL, &err), FXB_OK);
    assert_int_equal(fxb_inbox_append(s, ENTERPRISE, "x", "t", NULL, NULL, 3, NULL, &err), FXB_OK);
    assert_int_equal(stream_len(s, FXB_PUSH_OUTBOX), 2);
}

/* --- batches (fxb_inbox_append_batch) -------------------------------------- */

/* 700 notices to one subject (a round trip, then the outbox's), each in its
 * place: the stream holds them in the order given. */
static void test_a_batch_appends_every_notice_in_order(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    enum { N = 700 };
    static char titles[N][16];
    static fxb_inbox_msg msgs[N];
    for (int i = 0; i < N; i++) {
        snprintf(titles[i], sizeof titles[i], "t%d", i);
        msgs[i] = (fxb_inbox_msg){PERSON, "benefit.granted", titles[i], i % 2 ? "正文" : NULL,
                                  i % 3 ? "b0123456789abcdef" : NULL};
    }
    size_t appended = 99;
    assert_int_equal(fxb_inbox_append_batch(s, msgs, N, 1700000000000, &appended, &err), FXB_OK);
    assert_int_equal(appended, N);
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - +", PERSON_KEY);
    assert_non_null(r);
    assert_int_equal(r->elements, N);
    uint64_t ms0 = 0, seq0 = 0;
    for (size_t i = 0; i < N; i++) {
        const redisReply *e = r->element[i];
        assert_string_equal(field(e, "title"), titles[i]);
        assert_string_equal(field(e, "kind"), "benefit.granted");
        assert_string_equal(field(e, "body"), i % 2 ? "正文" : "");
        assert_string_equal(field(e, "ref"), i % 3 ? "b0123456789abcdef" : "");
        assert_string_equal(field(e, "at_ms"), "1700000000000");
        uint64_t ms, seq;
        parse_id(e->element[0]->str, &ms, &seq);
        assert_true(i == 0 || ms > ms0 || (ms == ms0 && seq > seq0));
        ms0 = ms;
        seq0 = seq;
    }
    freeReplyObject(r);
    /* nobody listens: every one is queued for push, in the same order,
     * each its own multicast entry of one (every title differs: the
     * worst case of grouping) */
    redisReply *inbox = fxb_store_command(s, &err, "XRANGE %s - +", PERSON_KEY);
    assert_non_null(inbox);
    r = fxb_store_command(s, &err, "XRANGE %s - +", FXB_PUSH_OUTBOX);
    assert_non_null(r);
    assert_int_equal(r->elements, N);
    for (size_t i = 0; i < N; i++) {
        const redisReply *e = r->element[i];
        assert_int_equal(e->element[1]->elements, 10);
        assert_string_equal(field(e, "title"), titles[i]);
        assert_string_equal(field(e, "n"), "1");
        assert_string_equal(field(e, "subjects"), PERSON);
        assert_string_equal(field(e, "message_ids"), inbox->element[i]->element[0]->str);
    }
    freeReplyObject(r);
    freeReplyObject(inbox);
}

static void test_an_empty_batch_writes_nothing(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    size_t appended = 99;
    assert_int_equal(fxb_inbox_append_batch(s, NULL, 0, 1, &appended, &err), FXB_OK);
    assert_int_equal(appended, 0);
    assert_int_equal(stream_len(s, FXB_PUSH_OUTBOX), 0);
}

/* One bad notice anywhere refuses the whole batch, naming it and its
 * field: nothing is appended, published or queued. */
static void test_one_invalid_notice_refuses_the_whole_batch(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    char long_title[FXB_INBOX_TITLE_MAX + 2];
    repeat(long_title, 't', FXB_INBOX_TITLE_MAX + 1);
    struct {
        fxb_inbox_msg bad;
        const char *field;
    } cases[] = {
        {{"a:b", "x", "t", NULL, NULL}, "subject"},
        {{PERSON, "Bad Kind", "t", NULL, NULL}, "kind"},
        {{PERSON, "x", "", NULL, NULL}, "title"},
        {{PERSON, "x", long_title, NULL, NULL}, "title"},
        {{PERSON, "x", "t", "cut \xe7\x9f", NULL}, "body"},
        {{PERSON, "x", "t", NULL, "\xc0\xaf"}, "ref"},
    };
    enum { N = 2100 };
    static fxb_inbox_msg msgs[N];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < N; i++)
            msgs[i] = (fxb_inbox_msg){i % 2 ? PERSON : ENTERPRISE, "x", "t", NULL, NULL};
        /* the last one of the batch: every earlier chunk would be fine */
        msgs[N - 1] = cases[c].bad;
        size_t appended = 99;
        fxb_err_clear(&err);
        assert_int_equal(fxb_inbox_append_batch(s, msgs, N, 1, &appended, &err),
                         FXB_INVALID_ARGUMENT);
        assert_int_equal(appended, 0);
        assert_string_equal(err.reason, "INBOX_MESSAGE_INVALID");
        assert_non_null(strstr(err.message, cases[c].field));
        assert_non_null(strstr(err.message, "2099"));
    }
    size_t appended = 99;
    assert_int_equal(fxb_inbox_append_batch(s, msgs, N - 1, -1, &appended, &err),
                     FXB_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "at_ms"));
    assert_int_equal(stream_len(s, PERSON_KEY), 0);
    assert_int_equal(stream_len(s, "{e:" ENTERPRISE "}:inbox"), 0);
    assert_int_equal(stream_len(s, FXB_PUSH_OUTBOX), 0);
}

/* The id of the newest notice in subject's inbox into id (32 bytes). */
static void newest_id(fxb_store *s, const char *subject, char *id)
{
    char key[FXB_KEY_ID_MAX + 16];
    assert_true(fxb_inbox_key(key, sizeof key, subject));
    fxb_err err;
    redisReply *x = fxb_store_command(s, &err, "XREVRANGE %s + - COUNT 1", key);
    assert_non_null(x);
    assert_int_equal(x->elements, 1);
    assert_true(x->element[0]->element[0]->len < 32);
    strcpy(id, x->element[0]->element[0]->str);
    freeReplyObject(x);
}

static size_t count_char(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* Checks that e (an XRANGE element of the outbox) is the multicast entry
 * of kind and title for subjects[want[0..k)], in that order, each with the
 * id of the newest notice of its inbox: fields kind, title, n, subjects,
 * message_ids, exactly. */
static void expect_multicast(fxb_store *s, const redisReply *e, const char *kind, const char *title,
                             const char *const *subjects, const int *want, size_t k)
{
    const redisReply *kv = e->element[1];
    assert_int_equal(kv->elements, 10);
    static const char *const names[] = {"kind", "title", "n", "subjects", "message_ids"};
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(kv->element[2 * i]->str, names[i]);
    assert_string_equal(field(e, "kind"), kind);
    assert_string_equal(field(e, "title"), title);
    char n[24];
    snprintf(n, sizeof n, "%zu", k);
    assert_string_equal(field(e, "n"), n);
    char *subs = strdup(field(e, "subjects")), *ids = strdup(field(e, "message_ids"));
    assert_non_null(subs);
    assert_non_null(ids);
    char *sp = NULL, *ip = NULL;
    char *sub = strtok_r(subs, "\n", &sp), *id = strtok_r(ids, "\n", &ip);
    for (size_t i = 0; i < k; i++) {
        assert_non_null(sub);
        assert_non_null(id);
        assert_string_equal(sub, subjects[want[i]]);
        char newest[32];
        newest_id(s, sub, newest);
        assert_string_equal(id, newest);
        sub = strtok_r(NULL, "\n", &sp);
        id = strtok_r(NULL, "\n", &ip);
    }
    assert_null(sub);
    assert_null(id);
    /* joined with single "\n": no empty piece strtok would have hidden */
    assert_int_equal(count_char(field(e, "subjects"), '\n'), k - 1);
    assert_int_equal(count_char(field(e, "message_ids"), '\n'), k - 1);
    free(subs);
    free(ids);
}

static void set_online(fxb_store *s, const char *subject)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "SET " FXB_PUSH_ONLINE_PREFIX "%s 1", subject);
    assert_non_null(r);
    freeReplyObject(r);
}

/* A batch reads no presence: every recipient of a round trip (a thousand
 * notices), online or not, is in one multicast entry of their kind and
 * title, each with the id its inbox gave the notice; the push adaptor
 * skips the online ones when it sends. */
static void test_a_batch_queues_every_subject_online_or_not_for_push(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    enum { N = 2100 };
    static char names[N][16];
    static const char *subjects[N];
    static fxb_inbox_msg msgs[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "acct-%d", i);
        subjects[i] = names[i];
        msgs[i] = (fxb_inbox_msg){subjects[i], "benefit.granted", "高龄津贴已为您办理", "b", NULL};
        if (i % 2 == 0)
            set_online(s, subjects[i]);
    }
    size_t appended = 0;
    assert_int_equal(fxb_inbox_append_batch(s, msgs, N, 5, &appended, &err), FXB_OK);
    assert_int_equal(appended, N);
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - +", FXB_PUSH_OUTBOX);
    assert_non_null(r);
    /* round trips of 1000, 1000 and 100 notices, every subject in order
     * (half of them online) */
    assert_int_equal(r->elements, 3);
    static int want[N];
    for (int i = 0; i < N; i++)
        want[i] = i;
    expect_multicast(s, r->element[0], "benefit.granted", "高龄津贴已为您办理", subjects, want,
                     1000);
    expect_multicast(s, r->element[1], "benefit.granted", "高龄津贴已为您办理", subjects,
                     want + 1000, 1000);
    expect_multicast(s, r->element[2], "benefit.granted", "高龄津贴已为您办理", subjects,
                     want + 2000, 100);
    freeReplyObject(r);
    for (int i = 0; i < N; i += 2) {
        char key[64];
        assert_true(fxb_inbox_key(key, sizeof key, subjects[i]));
        assert_int_equal(stream_len(s, key), 1);
    }
}

/* Notices of several kinds and titles in one round trip: one entry per
 * (kind, title), in the order each first appears, each listing its
 * subjects in the batch's order, online ones too; the same title under
 * another kind is another group. */
static void test_a_batch_queues_one_multicast_entry_per_kind_and_title(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    static const char *const subjects[] = {"m-0", "m-1", "m-2", "m-3", "m-4",
                                           "m-5", "m-6", "m-7", "m-8", ENTERPRISE};
    enum { N = sizeof subjects / sizeof subjects[0] };
    /* groups: A = (benefit.granted, 津贴), B = (benefit.ended, 津贴),
     * C = (benefit.granted, 补贴) */
    static const char *const kinds[N] = {"benefit.granted", "benefit.ended",   "benefit.granted",
                                         "benefit.granted", "benefit.ended",   "benefit.granted",
                                         "benefit.granted", "benefit.granted", "benefit.ended",
                                         "benefit.granted"};
    static const char *const titles[N] = {"津贴", "津贴", "津贴", "补贴", "津贴",
                                          "补贴", "津贴", "津贴", "津贴", "补贴"};
    fxb_inbox_msg msgs[N];
    for (int i = 0; i < N; i++)
        msgs[i] = (fxb_inbox_msg){subjects[i], kinds[i], titles[i], NULL, "p-1"};
    set_online(s, "m-6"); /* A */
    set_online(s, "m-4"); /* B */
    size_t appended = 0;
    assert_int_equal(fxb_inbox_append_batch(s, msgs, N, 5, &appended, &err), FXB_OK);
    assert_int_equal(appended, N);
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - +", FXB_PUSH_OUTBOX);
    assert_non_null(r);
    assert_int_equal(r->elements, 3);
    static const int a[] = {0, 2, 6, 7}, b[] = {1, 4, 8}, c[] = {3, 5, 9};
    expect_multicast(s, r->element[0], "benefit.granted", "津贴", subjects, a, 4);
    expect_multicast(s, r->element[1], "benefit.ended", "津贴", subjects, b, 3);
    expect_multicast(s, r->element[2], "benefit.granted", "补贴", subjects, c, 3);
    freeReplyObject(r);
}

/* 2,500 notices of two kinds, a third of the subjects online: per round
 * trip (1000, 1000, 500) one entry per kind, and every subject is in
 * exactly one entry, with its own notice's id. */
static void test_a_batch_of_2500_queues_every_subject_once_per_round_trip(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    enum { N = 2500 };
    static char names[N][16];
    static const char *subjects[N];
    static fxb_inbox_msg msgs[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "big-%d", i);
        subjects[i] = names[i];
        bool ended = i % 5 == 3;
        msgs[i] = (fxb_inbox_msg){names[i], ended ? "benefit.ended" : "benefit.granted",
                                  ended ? "已结束" : "已办理", NULL, NULL};
        if (i % 3 == 0)
            set_online(s, names[i]);
    }
    assert_int_equal(fxb_inbox_append_batch(s, msgs, N, 5, NULL, &err), FXB_OK);
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - +", FXB_PUSH_OUTBOX);
    assert_non_null(r);
    assert_int_equal(r->elements, 6);
    static bool seen[N];
    int covered = 0;
    for (size_t j = 0; j < r->elements; j++) {
        const redisReply *e = r->element[j];
        size_t trip = j / 2, lo = trip * 1000, hi = lo + 1000 < N ? lo + 1000 : N;
        /* 0, 1, 2 are granted: granted comes first */
        bool ended = j % 2 == 1;
        assert_string_equal(field(e, "kind"), ended ? "benefit.ended" : "benefit.granted");
        static int want[1000];
        size_t k = 0;
        for (size_t i = lo; i < hi; i++)
            if ((i % 5 == 3) == ended)
                want[k++] = (int)i;
        expect_multicast(s, e, ended ? "benefit.ended" : "benefit.granted",
                         ended ? "已结束" : "已办理", subjects, want, k);
        for (size_t i = 0; i < k; i++) {
            assert_false(seen[want[i]]);
            seen[want[i]] = true;
            covered++;
        }
    }
    freeReplyObject(r);
    for (int i = 0; i < N; i++)
        assert_true(seen[i]);
    assert_int_equal(covered, N);
}

/* The workspace's worst case: a round trip of a thousand notices, each its
 * own group, with the longest subject ids and titles there are. */
static void test_a_round_trip_of_distinct_longest_notices_queues_each_alone(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    enum { N = 1000 };
    static char names[N][FXB_KEY_ID_MAX + 1], titles[N][FXB_INBOX_TITLE_MAX + 1];
    static const char *subjects[N];
    static fxb_inbox_msg msgs[N];
    for (int i = 0; i < N; i++) {
        memset(names[i], 'x', FXB_KEY_ID_MAX);
        snprintf(names[i], 8, "%07d", i);
        names[i][7] = 'x';
        names[i][FXB_KEY_ID_MAX] = '\0';
        memset(titles[i], 't', FXB_INBOX_TITLE_MAX);
        snprintf(titles[i], 8, "%07d", i);
        titles[i][7] = 't';
        titles[i][FXB_INBOX_TITLE_MAX] = '\0';
        subjects[i] = names[i];
        msgs[i] = (fxb_inbox_msg){names[i], "benefit.granted", titles[i], NULL, NULL};
    }
    assert_int_equal(fxb_inbox_append_batch(s, msgs, N, 5, NULL, &err), FXB_OK);
    redisReply *r = fxb_store_command(s, &err, "XRANGE %s - +", FXB_PUSH_OUTBOX);
    assert_non_null(r);
    assert_int_equal(r->elements, N);
    for (int i = 0; i < N; i++)
        expect_multicast(s, r->element[i], "benefit.granted", titles[i], subjects, &i, 1);
    freeReplyObject(r);
}

/* The payload (caller frees) of the next publication whose payload starts
 * with prefix (other tests' may interleave: the channel is shared by every
 * database); fails after the 2 s read timeout. */
static char *next_payload(redisContext *c, const char *prefix)
{
    for (;;) {
        void *reply = NULL;
        assert_int_equal(redisGetReply(c, &reply), REDIS_OK);
        redisReply *m = reply;
        assert_int_equal(m->type, REDIS_REPLY_ARRAY);
        assert_int_equal(m->elements, 3);
        char *mine = NULL;
        if (strcmp(m->element[1]->str, FXB_INBOX_CHANNEL) == 0 &&
            strncmp(m->element[2]->str, prefix, strlen(prefix)) == 0)
            mine = strdup(m->element[2]->str);
        freeReplyObject(m);
        if (mine != NULL)
            return mine;
    }
}

/* A batch wakes with one publication per round trip naming its subjects,
 * separated by "\n" (a subject named twice in a row once), sent once they
 * are readable. */
static void test_a_batch_publishes_its_subjects_together_once_readable(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    redisContext *c = subscriber();
    fxb_inbox_msg msgs[] = {{PERSON, "x", "t", NULL, NULL},
                            {PERSON, "x", "t", NULL, NULL},
                            {ENTERPRISE, "x", "t", NULL, NULL}};
    assert_int_equal(fxb_inbox_append_batch(s, msgs, 3, 1, NULL, &err), FXB_OK);
    char *p = next_payload(c, PERSON);
    assert_string_equal(p, PERSON "\n" ENTERPRISE);
    free(p);
    assert_int_equal(stream_len(s, PERSON_KEY), 2);
    assert_int_equal(stream_len(s, "{e:" ENTERPRISE "}:inbox"), 1);
    redisFree(c);
}

/* 2,300 subjects: a few publications (one per round trip of up to a
 * thousand), which together name every subject once, in the batch's
 * order. */
static void test_a_large_batch_publishes_every_subject_once(void **state)
{
    fxb_store *s = *state;
    fxb_err err;
    enum { N = 2300 };
    static char subjects[N][16];
    static fxb_inbox_msg msgs[N];
    for (int i = 0; i < N; i++) {
        snprintf(subjects[i], sizeof subjects[i], "pub-%d", i);
        msgs[i] = (fxb_inbox_msg){subjects[i], "x", "t", NULL, NULL};
    }
    redisContext *c = subscriber();
    assert_int_equal(fxb_inbox_append_batch(s, msgs, N, 1, NULL, &err), FXB_OK);
    int next = 0, publications = 0;
    while (next < N) {
        char *p = next_payload(c, "pub-");
        publications++;
        for (char *tok = strtok(p, "\n"); tok != NULL; tok = strtok(NULL, "\n"))
            assert_string_equal(tok, subjects[next++]);
        free(p);
    }
    assert_int_equal(next, N);
    assert_in_range(publications, 3, N / 100);
    redisFree(c);
}

static void test_an_unreachable_store_appends_nothing_in_a_batch(void **state)
{
    (void)state;
    fxb_store_options opt = {.url = "redis://127.0.0.1:1/6", .connect_timeout_ms = 200};
    fxb_err err;
    fxb_store *s = fxb_store_new(&opt, &err);
    assert_non_null(s);
    fxb_inbox_msg msgs[] = {{PERSON, "x", "t", NULL, NULL}};
    size_t appended = 99;
    assert_int_equal(fxb_inbox_append_batch(s, msgs, 1, 1, &appended, &err), FXB_UNAVAILABLE);
    assert_int_equal(appended, 0);
    fxb_store_free(s);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, each_setup, each_teardown)
    const struct CMUnitTest tests[] = {
        T(test_a_notice_holds_kind_title_body_ref_and_when),
        T(test_absent_body_and_ref_are_empty),
        T(test_a_person_and_an_enterprise_each_have_their_own_key),
        T(test_every_bound_is_checked_and_nothing_is_appended),
        T(test_ids_increase_with_every_append),
        T(test_the_inbox_keeps_about_the_latest_1000),
        T(test_every_append_publishes_its_subject_once_readable),
        T(test_a_refused_notice_is_neither_published_nor_queued),
        T(test_a_notice_to_an_offline_subject_goes_to_the_push_outbox),
        T(test_a_notice_to_an_online_subject_is_not_queued_for_push),
        T(test_a_batch_appends_every_notice_in_order),
        T(test_an_empty_batch_writes_nothing),
        T(test_one_invalid_notice_refuses_the_whole_batch),
        T(test_a_batch_queues_every_subject_online_or_not_for_push),
        T(test_a_batch_queues_one_multicast_entry_per_kind_and_title),
        T(test_a_batch_of_2500_queues_every_subject_once_per_round_trip),
        T(test_a_round_trip_of_distinct_longest_notices_queues_each_alone),
        T(test_a_batch_publishes_its_subjects_together_once_readable),
        T(test_a_large_batch_publishes_every_subject_once),
        cmocka_unit_test(test_unreachable_store_is_unavailable),
        cmocka_unit_test(test_an_unreachable_store_appends_nothing_in_a_batch),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
