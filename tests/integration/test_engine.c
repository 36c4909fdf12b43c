/* The benefit matching engine against a private redis-server (its leader
 * lease and its scans of every profile are process-wide Redis state):
 * a published policy is granted to exactly the subjects the rule evaluator
 * says, a profile change grants or ends, a newly published policy is
 * matched and a closed one ends what was not granted (also when it was
 * closed while no engine ran), changes trimmed from the feed before the
 * engine applied them are not missed, the periodic re-check follows ages
 * across a birthday, a rule the schema no longer admits is skipped, and
 * only the holder of the lease works. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture.h"
#include "auth/idnumber.h"
#include "auth/uscc.h"
#include "server/config.h"
#include "server/handler.h"
#include "services/benefit/benefit.h"
#include "services/benefit/engine.h"
#include "services/benefit/entitlement.h"
#include "services/benefit/lists.h"
#include "services/benefit/policy.h"
#include "services/benefit/profile.h"
#include "services/benefit/profile_view.h"
#include "services/benefit/rule.h"
#include "services/enterprise/enterprise.h"
#include "services/identity/identity.h"
#include "store/crypto.h"
#include "store/datafile.h"

#define N_PERSONS     48
#define N_ENTERPRISES 12
#define SYNC_MS       30000
#define DAY_MS        86400000LL

#define P1 "b0000000000000001"
#define P2 "b0000000000000002"
#define P3 "b0000000000000003"
#define E1 "b00000000000000e1"
#define PX "b00000000000000ff"

#define RULE_P1 "age >= 60 && district in {\"红旗区\", \"卫滨区\"} && !receives_pension"
#define RULE_P2 "low_income && children >= 2"
#define RULE_P3 "age >= 60 && age < 64"
#define RULE_E1 "size_class in {\"micro\", \"small\"} && certifications contains \"科技型中小企业\""

static char url[FXB_STORE_URL_MAX];
static char key_dir[64];
static fxb_crypto *crypto;
static fxb_store *s;
static fxb_arena a;
static char persons[N_PERSONS + 3][FXB_PROFILE_SUBJECT_LEN + 1];
static char enterprises[N_ENTERPRISES][FXB_PROFILE_SUBJECT_LEN + 1];
static size_t n_persons;

/* --- records ---------------------------------------------------------------------------- */

typedef struct rec {
    Fxb__V1__ProfileRecord r;
    Fxb__V1__AttributeValue v[16];
    Fxb__V1__AttributeValue *vp[16];
    Fxb__V1__StringSet set;
    char id[19];
    char date[16];
} rec;

static Fxb__V1__AttributeValue *add(rec *x, const char *name)
{
    Fxb__V1__AttributeValue *v = &x->v[x->r.n_values];
    *v = (Fxb__V1__AttributeValue)FXB__V1__ATTRIBUTE_VALUE__INIT;
    v->name = (char *)name;
    x->vp[x->r.n_values++] = v;
    return v;
}

static void add_int(rec *x, const char *name, int64_t i)
{
    Fxb__V1__AttributeValue *v = add(x, name);
    v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_INT_VALUE;
    v->int_value = i;
}

static void add_bool(rec *x, const char *name, bool b)
{
    Fxb__V1__AttributeValue *v = add(x, name);
    v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_BOOL_VALUE;
    v->bool_value = b;
}

static void add_text(rec *x, const char *name, const char *t)
{
    Fxb__V1__AttributeValue *v = add(x, name);
    v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_TEXT_VALUE;
    v->text_value = (char *)t;
}

/* A person born on birth (yyyymmdd), number seq; the subject into out. */
static void person(rec *x, int birth, int seq, char out[FXB_PROFILE_SUBJECT_LEN + 1])
{
    memset(x, 0, sizeof *x);
    x->r = (Fxb__V1__ProfileRecord)FXB__V1__PROFILE_RECORD__INIT;
    x->r.subject_type = FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_PERSON;
    x->r.subject_case = FXB__V1__PROFILE_RECORD__SUBJECT_ID_NUMBER;
    char d17[32];
    snprintf(d17, sizeof d17, "410702%08u%03u", (unsigned)birth % 100000000u,
             (unsigned)seq % 1000u);
    memcpy(x->id, d17, 17);
    x->id[17] = fxb_idnumber_check_char(d17);
    x->id[18] = '\0';
    x->r.id_number = x->id;
    x->r.values = x->vp;
    snprintf(x->date, sizeof x->date, "%04d-%02d-%02d", birth / 10000, birth / 100 % 100,
             birth % 100);
    add_text(x, "birth_date", x->date);
    fxb_err err;
    assert_int_equal(fxb_profile_person_id(crypto, x->id, out, &err), FXB_OK);
}

static void enterprise(rec *x, int seq, char out[FXB_PROFILE_SUBJECT_LEN + 1])
{
    memset(x, 0, sizeof *x);
    x->r = (Fxb__V1__ProfileRecord)FXB__V1__PROFILE_RECORD__INIT;
    x->r.subject_type = FXB__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
    x->r.subject_case = FXB__V1__PROFILE_RECORD__SUBJECT_CREDIT_CODE;
    char org[16], c17[32];
    snprintf(org, sizeof org, "%08u", 12345000u + (unsigned)seq % 1000u);
    snprintf(c17, sizeof c17, "91410700%s?", org);
    c17[16] = fxb_orgcode_check_char(org);
    memcpy(x->id, c17, 17);
    x->id[17] = fxb_uscc_check_char(c17);
    x->id[18] = '\0';
    x->r.credit_code = x->id;
    x->r.values = x->vp;
    fxb_err err;
    assert_int_equal(fxb_enterprise_id(crypto, x->id, out, &err), FXB_OK);
}

static void upsert(rec *x)
{
    bool changed = false;
    Fxb__V1__RejectedRecord rej = FXB__V1__REJECTED_RECORD__INIT;
    fxb_err err;
    const fxb_schema *schema;
    assert_int_equal(fxb_profile_schema_acquire(s, &schema, &err), FXB_OK);
    fxb_code rc =
        fxb_profile_upsert(s, crypto, schema, NULL, &x->r, fxb_wall_ms(), &changed, &rej, &a, &err);
    fxb_profile_schema_release(schema);
    if (rc != FXB_OK)
        fail_msg("upsert refused: %s %s %s (%s)", rej.field, rej.reason, rej.message, err.message);
}

static const char *const DISTRICTS[] = {"红旗区", "卫滨区", "凤泉区", "牧野区"};
static const char *const SIZES[] = {"micro", "small", "medium", "large"};

/* N_PERSONS persons and N_ENTERPRISES enterprises with varied (and some
 * missing) values. */
static void seed_profiles(void)
{
    rec x;
    for (int i = 0; i < N_PERSONS; i++) {
        int birth = (1935 + (i * 7) % 70) * 10000 + (1 + i % 12) * 100 + 1 + i % 28;
        person(&x, birth, i, persons[i]);
        if (i % 11 != 0)
            add_text(&x, "district", DISTRICTS[i % 4]);
        if (i % 3 != 2)
            add_bool(&x, "receives_pension", i % 3 == 0);
        add_bool(&x, "low_income", i % 2 == 0);
        add_int(&x, "children", i % 4);
        upsert(&x);
    }
    n_persons = N_PERSONS;
    for (int i = 0; i < N_ENTERPRISES; i++) {
        enterprise(&x, i, enterprises[i]);
        add_text(&x, "size_class", SIZES[i % 4]);
        if (i % 5 != 0) {
            char *m[2];
            size_t n = 0;
            if (i % 2 == 0)
                m[n++] = "科技型中小企业";
            if (i % 3 == 0)
                m[n++] = "专精特新";
            Fxb__V1__AttributeValue *v = add(&x, "certifications");
            x.set = (Fxb__V1__StringSet)FXB__V1__STRING_SET__INIT;
            x.set.members = m;
            x.set.n_members = n;
            v->value_case = FXB__V1__ATTRIBUTE_VALUE__VALUE_SET_VALUE;
            v->set_value = &x.set;
            upsert(&x);
        } else {
            upsert(&x);
        }
    }
}

/* --- policies, written as the policy service stores them ---------------------------------- */

static void run(int argc, const char **argv)
{
    fxb_err err;
    redisReply *r = fxb_store_commandv(s, &err, argc, argv, NULL);
    if (r == NULL)
        fail_msg("%s: %s", argv[0], err.message);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

static void publish(const char *id, int subject_type, const char *rule, bool confirm, int kind)
{
    char key[64], st[4], kd[4];
    snprintf(key, sizeof key, "{b:%s}:policy", id);
    snprintf(st, sizeof st, "%d", subject_type);
    snprintf(kd, sizeof kd, "%d", kind);
    const char *hset[] = {"HSET",           key,        "code",          id,
                          "title",          "测试政策", "category",      "2",
                          "department",     "xx-civil", "subject_type",  st,
                          "rule",           rule,       "benefit_kind",  kd,
                          "amount_fen",     "10000",    "valid_from_ms", "0",
                          "valid_until_ms", "0",        "budget_fen",    "0",
                          "quota",          "0",        "confirm",       confirm ? "1" : "0",
                          "status",         "2",        "version",       "2"};
    run(sizeof hset / sizeof hset[0], hset);
    const char *sadd[] = {"SADD", FXB_BENEFIT_PUBLISHED, id};
    run(3, sadd);
    const char *incr[] = {"INCR", FXB_BENEFIT_REV};
    run(2, incr);
}

/* As fxb_policy_close does: the record, the published set, the engine's
 * to-do set of closes, the revision. */
static void close_policy(const char *id)
{
    char key[64];
    snprintf(key, sizeof key, "{b:%s}:policy", id);
    const char *hset[] = {"HSET", key, "status", "3", "version", "3"};
    run(6, hset);
    const char *srem[] = {"SREM", FXB_BENEFIT_PUBLISHED, id};
    run(3, srem);
    const char *sadd[] = {"SADD", FXB_BENEFIT_CLOSING, id};
    run(3, sadd);
    const char *incr[] = {"INCR", FXB_BENEFIT_REV};
    run(2, incr);
}

static long long integer(const char *fmt, const char *arg)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, fmt, arg);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* --- the engine --------------------------------------------------------------------------- */

/* Each start uses the next of 8 (the default), 1 and 4 write-out
 * connections (FXB_BENEFIT_WRITERS), so the tests cover all three. */
static void engine_start(void)
{
    static const int writers[] = {8, 1, 4};
    static unsigned starts;
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    snprintf(cfg.redis_url, sizeof cfg.redis_url, "%s", url);
    cfg.benefit_writers = writers[starts++ % 3];
    fxb_err err;
    assert_int_equal(fxb_engine_start(&cfg, 3600000, &err), FXB_OK);
}

static bool wait_leader(int ms)
{
    for (int i = 0; i < ms / 20; i++) {
        fxb_engine_status st;
        fxb_engine_status_get(&st);
        if (st.leader)
            return true;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static fxb_engine_status sync_engine(bool recheck)
{
    fxb_engine_status st;
    fxb_err err;
    assert_true(wait_leader(5000));
    fxb_code rc = fxb_engine_sync(recheck, SYNC_MS, &st, &err);
    if (rc != FXB_OK)
        fail_msg("sync: %s %s", err.reason, err.message);
    return st;
}

/* --- what the rule says, and what the engine did ---------------------------------------- */

static fxb_truth eval(const char *subject, const char *rule_text, uint32_t today)
{
    fxb_err err;
    const fxb_schema *schema;
    assert_int_equal(fxb_profile_schema_acquire(s, &schema, &err), FXB_OK);
    fxb_subject_type type = subject[0] == 'p' ? FXB_SUBJECT_PERSON : FXB_SUBJECT_ENTERPRISE;
    fxb_rule *rule;
    fxb_rule_error where;
    assert_int_equal(fxb_rule_compile(schema, type, rule_text, &rule, &where, &err), FXB_OK);
    const char *key = fxb_arena_printf(&a, "{%c:%s}:profile", subject[0], subject);
    redisReply *h = fxb_store_command(s, &err, "HGETALL %s", key);
    assert_non_null(h);
    fxb_profile_decoded d;
    assert_true(fxb_profile_decode(schema, type, h, &a, &d));
    fxb_profile_view v = fxb_profile_decoded_view(&d);
    fxb_truth t = fxb_rule_eval(rule, &v, today, NULL);
    freeReplyObject(h);
    fxb_rule_free(rule);
    fxb_profile_schema_release(schema);
    return t;
}

static bool ent(const char *policy, const char *subject, fxb_ent *out)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "HGET {b:%s}:ent %s", policy, subject);
    assert_non_null(r);
    bool found = r->type == REDIS_REPLY_STRING;
    if (found)
        assert_true(fxb_ent_parse(subject, r->str, r->len, out));
    freeReplyObject(r);
    return found;
}

static size_t ent_count(const char *policy)
{
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "HLEN {b:%s}:ent", policy);
    assert_non_null(r);
    size_t n = (size_t)r->integer;
    freeReplyObject(r);
    return n;
}

/* Every subject the rule is TRUE for holds an entitlement in state `live`;
 * every other one holds none (or an ended one). Returns how many hold. */
static size_t expect_exact(const char *policy, const char *rule, bool person_rule, int live)
{
    uint32_t today = (uint32_t)fxb_idv_today(fxb_wall_ms());
    size_t n = person_rule ? n_persons : N_ENTERPRISES, holders = 0;
    for (size_t i = 0; i < n; i++) {
        const char *subj = person_rule ? persons[i] : enterprises[i];
        bool want = eval(subj, rule, today) == FXB_TRUE;
        fxb_ent e;
        bool have = ent(policy, subj, &e);
        if (want) {
            if (!have || e.state != live)
                fail_msg("policy %s: subject %zu should be in state %d (has %d, state %d)", policy,
                         i, live, have, have ? e.state : 0);
            holders++;
        } else if (have && e.state != FXB_ENT_ENDED) {
            fail_msg("policy %s: subject %zu is not eligible but in state %d", policy, i, e.state);
        }
    }
    return holders;
}

/* --- fixtures ----------------------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    if (fxb_test_private_redis_start(url, sizeof url) != 0)
        return -1;
    snprintf(key_dir, sizeof key_dir, "/tmp/fxb-engine-keys.XXXXXX");
    if (mkdtemp(key_dir) == NULL)
        return -1;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/data", key_dir);
    fxb_err err;
    crypto = fxb_crypto_load(dir, true, &err);
    if (crypto == NULL) {
        fprintf(stderr, "keys: %s\n", err.message);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    fxb_crypto_free(crypto);
    nftw(key_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    fxb_test_private_redis_stop();
    return 0;
}

static int each_setup(void **state)
{
    (void)state;
    s = fxb_test_store_open(url);
    if (s == NULL)
        return -1;
    fxb_arena_init(&a, 0);
    fxb_err err;
    const fxb_datafile *seed = fxb_datafile_find("benefit/schema.json");
    if (seed == NULL || fxb_profile_schema_store(s, seed->bytes, seed->len, &err) != FXB_OK) {
        fprintf(stderr, "seed schema: %s\n", err.message);
        return -1;
    }
    seed_profiles();
    return 0;
}

static int each_teardown(void **state)
{
    (void)state;
    fxb_engine_stop();
    fxb_clock_set_offset_ms(0);
    fxb_arena_free(&a);
    fxb_store_free(s);
    s = NULL;
    return 0;
}

/* --- the rules of the engine ------------------------------------------------------------- */

static void test_published_policies_grant_exactly_whom_the_rule_holds_for(void **state)
{
    (void)state;
    publish(P1, 1, RULE_P1, false, FXB_BENEFIT_SERVICE);
    publish(E1, 2, RULE_E1, false, FXB_BENEFIT_SERVICE);
    publish(PX, 1, "no_such_attribute >= 3", false, FXB_BENEFIT_SERVICE);
    engine_start();
    fxb_engine_status st = sync_engine(false);
    assert_true(st.leader);
    assert_true(st.ready);
    assert_int_equal(st.persons, N_PERSONS);
    assert_int_equal(st.enterprises, N_ENTERPRISES);
    assert_int_equal(st.policies, 3);
    size_t p = expect_exact(P1, RULE_P1, true, FXB_ENT_GRANTED);
    size_t e = expect_exact(E1, RULE_E1, false, FXB_ENT_GRANTED);
    /* the data is varied enough to say something */
    assert_true(p > 0 && p < N_PERSONS);
    assert_true(e > 0 && e < N_ENTERPRISES);
    assert_int_equal(ent_count(P1), p);
    assert_int_equal(ent_count(E1), e);
    /* a rule the schema does not admit is skipped, never matched */
    assert_int_equal(ent_count(PX), 0);
    /* a second sync changes nothing (matching is idempotent) */
    sync_engine(true);
    assert_int_equal(ent_count(P1), p);
    assert_int_equal(expect_exact(P1, RULE_P1, true, FXB_ENT_GRANTED), p);
}

static void test_profile_changes_grant_and_end(void **state)
{
    (void)state;
    publish(P1, 1, RULE_P1, false, FXB_BENEFIT_SERVICE);
    /* X: eligible but for the pension; Y: eligible */
    rec x;
    char *X = persons[N_PERSONS], *Y = persons[N_PERSONS + 1];
    person(&x, 19400101, 900, X);
    add_text(&x, "district", "红旗区");
    add_bool(&x, "receives_pension", true);
    upsert(&x);
    person(&x, 19410202, 901, Y);
    add_text(&x, "district", "卫滨区");
    add_bool(&x, "receives_pension", false);
    upsert(&x);
    n_persons = N_PERSONS + 2;
    engine_start();
    sync_engine(false);
    fxb_ent e;
    assert_false(ent(P1, X, &e));
    assert_true(ent(P1, Y, &e));
    assert_int_equal(e.state, FXB_ENT_GRANTED);

    /* X stops receiving a pension: granted, with the conditions that held */
    person(&x, 19400101, 900, X);
    add_bool(&x, "receives_pension", false);
    upsert(&x);
    /* Y starts: no longer eligible */
    person(&x, 19410202, 901, Y);
    add_bool(&x, "receives_pension", true);
    upsert(&x);
    fxb_engine_status st = sync_engine(false);
    assert_true(ent(P1, X, &e));
    assert_int_equal(e.state, FXB_ENT_GRANTED);
    /* each condition's own truth: receives_pension is false, so its negation held */
    assert_string_equal(e.held, "TTF");
    assert_true(ent(P1, Y, &e));
    assert_int_equal(e.state, FXB_ENT_ENDED);
    assert_string_equal(e.reason, "NO_LONGER_ELIGIBLE");
    assert_int_not_equal(strcmp(st.feed_id, "0-0"), 0);
    expect_exact(P1, RULE_P1, true, FXB_ENT_GRANTED);

    /* a profile that disappears (deleted, with its change noted) ends too */
    fxb_err err;
    redisReply *r = fxb_store_command(s, &err, "DEL %s", fxb_arena_printf(&a, "{p:%s}:profile", X));
    assert_non_null(r);
    freeReplyObject(r);
    r = fxb_store_command(s, &err, "XADD fxb:profile:changes * subject %s type person rev 9", X);
    assert_non_null(r);
    freeReplyObject(r);
    sync_engine(false);
    assert_true(ent(P1, X, &e));
    assert_int_equal(e.state, FXB_ENT_ENDED);
}

/* A full match defers its subjects' list entries (lists.h): a sync finds
 * them written; a change of a subject whose entry is still owed ends its
 * entitlement all the same, and the next re-check writes the entry. */
static void test_a_change_ends_an_entitlement_not_yet_listed(void **state)
{
    (void)state;
    publish(P1, 1, RULE_P1, false, FXB_BENEFIT_SERVICE);
    rec x;
    char *Y = persons[N_PERSONS];
    person(&x, 19410202, 901, Y);
    add_text(&x, "district", "卫滨区");
    add_bool(&x, "receives_pension", false);
    upsert(&x);
    n_persons = N_PERSONS + 1;
    engine_start();
    sync_engine(false);
    fxb_ent e;
    assert_true(ent(P1, Y, &e));
    assert_int_equal(e.state, FXB_ENT_GRANTED);
    const char *list = fxb_arena_printf(&a, "{p:%s}:benefits", Y);
    assert_int_equal(integer("ZCARD %s", list), 1);
    assert_int_equal(integer("SCARD %s", FXB_LISTS_PENDING), 0);
    assert_int_equal(integer("XLEN %s", "{b:" P1 "}:unlisted"), 0);

    /* as if the match had just run: Y's entry owed */
    char created[24];
    snprintf(created, sizeof created, "%" PRId64, e.created_ms);
    const char *del[] = {"DEL", list};
    run(2, del);
    const char *xadd[] = {"XADD", "{b:" P1 "}:unlisted", "*", "n", "1", "subjects", Y, "at_ms",
                          created};
    run(9, xadd);
    const char *sadd[] = {"SADD", FXB_LISTS_PENDING, P1};
    run(3, sadd);
    person(&x, 19410202, 901, Y);
    add_bool(&x, "receives_pension", true);
    upsert(&x);
    sync_engine(false);
    assert_true(ent(P1, Y, &e));
    assert_int_equal(e.state, FXB_ENT_ENDED);
    assert_string_equal(e.reason, "NO_LONGER_ELIGIBLE");
    sync_engine(true);
    assert_int_equal(integer("ZCARD %s", list), 1);
    assert_int_equal(integer("SCARD %s", FXB_LISTS_PENDING), 0);
}

static void test_publish_matches_and_close_ends_what_was_not_granted(void **state)
{
    (void)state;
    publish(P1, 1, RULE_P1, false, FXB_BENEFIT_SERVICE);
    engine_start();
    fxb_engine_status st = sync_engine(false);
    assert_int_equal(st.policies, 1);
    size_t p1 = ent_count(P1);

    /* published while the engine runs: matched at once, awaiting confirmation */
    publish(P2, 1, RULE_P2, true, FXB_BENEFIT_SUBSIDY);
    st = sync_engine(false);
    assert_int_equal(st.policies, 2);
    size_t n = expect_exact(P2, RULE_P2, true, FXB_ENT_MATCHED);
    assert_true(n > 0);

    /* closed: the not-granted ones end; the other policy is untouched */
    close_policy(P2);
    st = sync_engine(false);
    assert_int_equal(st.policies, 1);
    for (size_t i = 0; i < n_persons; i++) {
        fxb_ent e;
        if (!ent(P2, persons[i], &e))
            continue;
        assert_int_equal(e.state, FXB_ENT_ENDED);
        assert_string_equal(e.reason, "POLICY_CLOSED");
    }
    assert_int_equal(ent_count(P2), n);
    assert_int_equal(ent_count(P1), p1);
    expect_exact(P1, RULE_P1, true, FXB_ENT_GRANTED);
}

static void test_a_close_while_no_engine_leads_ends_what_was_not_granted_at_its_start(void **state)
{
    (void)state;
    publish(P1, 1, RULE_P1, false, FXB_BENEFIT_SERVICE);
    publish(P2, 1, RULE_P2, true, FXB_BENEFIT_SUBSIDY);
    engine_start();
    sync_engine(false);
    size_t p1 = ent_count(P1);
    size_t n = expect_exact(P2, RULE_P2, true, FXB_ENT_MATCHED);
    assert_true(n > 0);
    fxb_engine_stop();

    /* closed (by the policy module, as ClosePolicy does) while no engine
     * runs: the close is owed, not lost */
    fxb_policy cur;
    fxb_err err;
    int64_t version = 0;
    assert_int_equal(fxb_policy_load(s, P2, &a, &cur, &err), FXB_OK);
    assert_int_equal(fxb_policy_close(s, &cur, "测试结束", fxb_wall_ms(), &version, &err), FXB_OK);
    assert_true(version > cur.version);
    assert_int_equal(integer("SISMEMBER %s " P2, FXB_BENEFIT_CLOSING), 1);
    /* a stale id in the set (a policy not closed) is dropped, not acted on */
    const char *sadd[] = {"SADD", FXB_BENEFIT_CLOSING, P1};
    run(3, sadd);
    assert_int_equal(integer("SCARD %s", FXB_BENEFIT_CLOSING), 2);
    engine_start();
    fxb_engine_status st = sync_engine(false);
    assert_int_equal(st.policies, 1);
    size_t ended = 0;
    for (size_t i = 0; i < n_persons; i++) {
        fxb_ent e;
        if (!ent(P2, persons[i], &e))
            continue;
        assert_int_equal(e.state, FXB_ENT_ENDED);
        assert_string_equal(e.reason, "POLICY_CLOSED");
        ended++;
    }
    assert_int_equal(ended, n);
    assert_int_equal(integer("SCARD %s", FXB_BENEFIT_CLOSING), 0);
    assert_int_equal(ent_count(P1), p1);
    expect_exact(P1, RULE_P1, true, FXB_ENT_GRANTED);
}

static void set_pension(const char *subject, bool on)
{
    char key[64];
    snprintf(key, sizeof key, "{p:%s}:profile", subject);
    const char *hset[] = {"HSET", key, "receives_pension", on ? "1" : "0"};
    run(4, hset);
    const char *xadd[] = {
        "XADD", "fxb:profile:changes", "*", "subject", subject, "type", "person", "rev", "99"};
    run(9, xadd);
}

static void test_changes_trimmed_from_the_feed_before_they_were_applied_are_not_missed(void **state)
{
    (void)state;
    publish(P1, 1, RULE_P1, false, FXB_BENEFIT_SERVICE);
    /* X and Z: eligible but for the pension; Y: eligible */
    rec x;
    char *X = persons[N_PERSONS], *Y = persons[N_PERSONS + 1], *Z = persons[N_PERSONS + 2];
    person(&x, 19400101, 930, X);
    add_text(&x, "district", "红旗区");
    add_bool(&x, "receives_pension", true);
    upsert(&x);
    person(&x, 19410202, 931, Y);
    add_text(&x, "district", "卫滨区");
    add_bool(&x, "receives_pension", false);
    upsert(&x);
    person(&x, 19420303, 932, Z);
    add_text(&x, "district", "红旗区");
    add_bool(&x, "receives_pension", true);
    upsert(&x);
    n_persons = N_PERSONS + 3;
    engine_start();
    sync_engine(false);
    fxb_ent e;
    assert_false(ent(P1, X, &e));
    assert_true(ent(P1, Y, &e));
    assert_int_equal(e.state, FXB_ENT_GRANTED);
    assert_false(ent(P1, Z, &e));

    /* X and Z stop receiving a pension, Y starts; then the feed is trimmed
     * to its last entry (Z's), as its cap trims a feed the engine lags
     * behind. One transaction, so that the engine, waiting on the feed,
     * reads none of the three changes before the trim. */
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    const char *trim[] = {"XTRIM", "fxb:profile:changes", "MAXLEN", "1"};
    run(1, multi);
    set_pension(X, false);
    set_pension(Y, true);
    set_pension(Z, false);
    run(4, trim);
    run(1, exec);
    assert_int_equal(integer("XLEN %s", "fxb:profile:changes"), 1);
    /* the engine saw only Z's change, noticed the two lost ones, rebuilt
     * its index and re-checked the policy */
    sync_engine(false);
    assert_true(ent(P1, X, &e));
    assert_int_equal(e.state, FXB_ENT_GRANTED);
    assert_true(ent(P1, Y, &e));
    assert_int_equal(e.state, FXB_ENT_ENDED);
    assert_string_equal(e.reason, "NO_LONGER_ELIGIBLE");
    assert_true(ent(P1, Z, &e));
    assert_int_equal(e.state, FXB_ENT_GRANTED);
    expect_exact(P1, RULE_P1, true, FXB_ENT_GRANTED);

    /* the whole feed trimmed away (nothing left to read): noticed too */
    run(1, multi);
    set_pension(Z, true);
    const char *trim0[] = {"XTRIM", "fxb:profile:changes", "MAXLEN", "0"};
    run(4, trim0);
    run(1, exec);
    sync_engine(false);
    assert_true(ent(P1, Z, &e));
    assert_int_equal(e.state, FXB_ENT_ENDED);
    assert_string_equal(e.reason, "NO_LONGER_ELIGIBLE");

    /* and it follows the feed as before */
    person(&x, 19400101, 930, X);
    add_bool(&x, "receives_pension", true);
    upsert(&x);
    sync_engine(false);
    assert_true(ent(P1, X, &e));
    assert_int_equal(e.state, FXB_ENT_ENDED);
    expect_exact(P1, RULE_P1, true, FXB_ENT_GRANTED);
}

/* yyyymmdd of the China date at now_ms minus years */
static int years_before(int64_t now_ms, int years)
{
    int64_t d = fxb_idv_today(now_ms);
    return (int)(d - (int64_t)years * 10000);
}

static void test_recheck_follows_ages_across_a_birthday(void **state)
{
    (void)state;
    /* A turns 60 tomorrow (eligible from then); B turns 64 (no longer) */
    int64_t tomorrow = fxb_wall_ms() + DAY_MS;
    rec x;
    char *A = persons[N_PERSONS], *B = persons[N_PERSONS + 1];
    person(&x, years_before(tomorrow, 60), 910, A);
    upsert(&x);
    person(&x, years_before(tomorrow, 64), 911, B);
    upsert(&x);
    n_persons = N_PERSONS + 2;
    publish(P3, 1, RULE_P3, false, FXB_BENEFIT_SERVICE);
    engine_start();
    sync_engine(false);
    fxb_ent e;
    assert_false(ent(P3, A, &e));
    assert_true(ent(P3, B, &e));
    assert_int_equal(e.state, FXB_ENT_GRANTED);
    expect_exact(P3, RULE_P3, true, FXB_ENT_GRANTED);

    fxb_clock_set_offset_ms(DAY_MS);
    fxb_engine_status st = sync_engine(true);
    assert_true(st.last_recheck_ms >= tomorrow - 1000);
    assert_true(ent(P3, A, &e));
    assert_int_equal(e.state, FXB_ENT_GRANTED);
    assert_true(ent(P3, B, &e));
    assert_int_equal(e.state, FXB_ENT_ENDED);
    assert_string_equal(e.reason, "NO_LONGER_ELIGIBLE");
    expect_exact(P3, RULE_P3, true, FXB_ENT_GRANTED);
}

static void test_a_rule_the_new_schema_does_not_admit_is_skipped(void **state)
{
    (void)state;
    publish(P1, 1, RULE_P1, false, FXB_BENEFIT_SERVICE);
    publish(P2, 1, RULE_P2, false, FXB_BENEFIT_SUBSIDY);
    engine_start();
    sync_engine(false);
    size_t p2 = ent_count(P2);
    assert_true(p2 > 0);
    /* a schema without low_income: P2 no longer compiles; P1 still works */
    const char *json =
        "{\"attributes\": ["
        "{\"name\": \"birth_date\", \"subject\": \"person\", \"type\": \"date\", \"source\": "
        "\"xx-police\"},"
        "{\"name\": \"district\", \"subject\": \"person\", \"type\": \"enum\", \"values\": "
        "[\"红旗区\", \"卫滨区\", \"凤泉区\", \"牧野区\"], \"source\": \"xx-police\"},"
        "{\"name\": \"receives_pension\", \"subject\": \"person\", \"type\": \"bool\", "
        "\"source\": \"xx-hrss\"},"
        "{\"name\": \"children\", \"subject\": \"person\", \"type\": \"int\", \"min\": 0, "
        "\"max\": 20, \"source\": \"xx-health\"}]}";
    fxb_err err;
    assert_int_equal(fxb_profile_schema_store(s, json, strlen(json), &err), FXB_OK);
    fxb_engine_status st = sync_engine(false);
    assert_true(st.ready);
    assert_int_equal(st.persons, N_PERSONS);
    expect_exact(P1, RULE_P1, true, FXB_ENT_GRANTED);
    assert_int_equal(ent_count(P2), p2);
    /* and it keeps following changes */
    rec x;
    char *X = persons[N_PERSONS];
    person(&x, 19400101, 920, X);
    add_text(&x, "district", "红旗区");
    add_bool(&x, "receives_pension", false);
    upsert(&x);
    n_persons = N_PERSONS + 1;
    sync_engine(false);
    fxb_ent e;
    assert_true(ent(P1, X, &e));
    assert_int_equal(e.state, FXB_ENT_GRANTED);
}

static void test_only_the_lease_holder_works(void **state)
{
    (void)state;
    publish(P1, 1, RULE_P1, false, FXB_BENEFIT_SERVICE);
    /* another server holds the lease */
    const char *set[] = {"SET", FXB_BENEFIT_LEADER_KEY, "another-server", "PX", "60000"};
    run(5, set);
    engine_start();
    struct timespec ts = {0, 500 * 1000 * 1000};
    nanosleep(&ts, NULL);
    fxb_engine_status st;
    fxb_engine_status_get(&st);
    assert_true(st.running);
    assert_false(st.leader);
    fxb_err err;
    assert_int_equal(fxb_engine_sync(false, 1000, &st, &err), FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, "ENGINE_NOT_LEADER");
    assert_int_equal(ent_count(P1), 0);

    /* it lapses: this engine takes over within the follower's poll */
    const char *del[] = {"DEL", FXB_BENEFIT_LEADER_KEY};
    run(2, del);
    assert_true(wait_leader(5000));
    sync_engine(false);
    expect_exact(P1, RULE_P1, true, FXB_ENT_GRANTED);

    /* stopping gives the lease back at once */
    fxb_engine_stop();
    redisReply *r = fxb_store_command(s, &err, "GET %s", FXB_BENEFIT_LEADER_KEY);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    fxb_engine_status_get(&st);
    assert_false(st.running);
    assert_int_equal(fxb_engine_sync(false, 1000, &st, &err), FXB_FAILED_PRECONDITION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_published_policies_grant_exactly_whom_the_rule_holds_for, each_setup,
            each_teardown),
        cmocka_unit_test_setup_teardown(test_profile_changes_grant_and_end, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_a_change_ends_an_entitlement_not_yet_listed,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_publish_matches_and_close_ends_what_was_not_granted,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_close_while_no_engine_leads_ends_what_was_not_granted_at_its_start, each_setup,
            each_teardown),
        cmocka_unit_test_setup_teardown(
            test_changes_trimmed_from_the_feed_before_they_were_applied_are_not_missed, each_setup,
            each_teardown),
        cmocka_unit_test_setup_teardown(test_recheck_follows_ages_across_a_birthday, each_setup,
                                        each_teardown),
        cmocka_unit_test_setup_teardown(test_a_rule_the_new_schema_does_not_admit_is_skipped,
                                        each_setup, each_teardown),
        cmocka_unit_test_setup_teardown(test_only_the_lease_holder_works, each_setup,
                                        each_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
