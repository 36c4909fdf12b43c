/* fxb-bench-benefit: 1 M matched entitlements + inbox messages made
 * durable (issue 7), against a baseline that writes the same records the
 * naive way. bench/benefit_run.sh runs it against a Redis with AOF on (see
 * bench/README.md).
 *
 * Usage: fxb-bench-benefit [options] REDIS_URL
 * Options:
 *   -n N       person subjects (default 1000000)
 *   -b B       the baseline's pipeline depth in subjects (1..1000, default
 *              1000; fxb's batches are FXB_ENT_BATCH_MAX, as the engine's)
 *   -t T       connections of fxb_grantout_run, one thread each, as the
 *              engine's FXB_BENEFIT_WRITERS (1..8, default 8); the baseline
 *              uses as many threads
 *   -I         every account's inbox exists already (prepare appends one
 *              earlier notice to each): a city whose app users have had
 *              notices before; without it every notice creates its inbox
 *   -P         skip preparing the subjects (they are there from a run before)
 *   -B         skip the baseline
 *   -S         skip the verification
 *   -A DIR     the AOF directory to fsync after the last reply (above)
 *
 * Prepare (not timed): N person subjects "p" + 24 hex, each with
 * {p:<pid>}:account = an account id of 22 characters, every second one
 * online (fxb:push:online:<account> = 1, as live subscriptions leave it;
 * the batch path no longer reads it: the push adaptor does, when it
 * sends); a published CASH policy (no quota, no budget,
 * no confirmation) written as its hash. Then the bench waits for any AOF
 * rewrite the preparing started.
 *
 * Timed: fxb_grantout_run (services/benefit/grantout.h), the engine's
 * write-out of a full match, over T connections: batches of
 * FXB_ENT_BATCH_MAX subjects, each one fxb_ent_match_batch_with (one
 * EVALSHA, with the MGET of the subjects' accounts and the SADD naming the
 * policy's deferred lists in its round trip) and one fxb_benefit_notify
 * for the subjects granted (fxb_inbox_append_batch). The subjects' list
 * entries are deferred (services/benefit/lists.h): the script records them
 * in the policy's unlisted stream; after the timed run the bench writes
 * them as the engine does (fxb_lists_work slices on one connection) and
 * reports that time and when it is durable too. The clock stops at the last reply. With appendfsync
 * always Redis replies after the fsync, so the last reply means everything is on disk; with
 * everysec within about 1 s of it. WAITAOF (Redis 7.2+) is tried and reported when Redis has it.
 * With -A DIR (Redis's appendonlydir on this machine) the bench then fsyncs every file of DIR and
 * DIR itself: Redis write()s the AOF before it sends the replies, so once those fsyncs return
 * everything the run wrote is on disk whatever appendfsync says; the goal is judged on the last
 * reply + that fsync.
 *
 * Baseline (timed the same way, same threads, after FLUSHALL and the same
 * preparing again): the same N entitlements written naively into another
 * policy's hash, one HSET of the entitlement
 * value + one XADD of the notice to the account's inbox per subject,
 * pipelined B subjects deep: no script, no counters, no quota, no log, no
 * disbursement, no publish, no presence check, no list.
 *
 * Output: the figures, then one line "RESULT key=value ..." for scripts.
 * Exit 0 when every check held, 3 when a check failed, 1 on failure, 2 on
 * bad usage. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "services/benefit/entitlement.h"
#include "services/benefit/grantout.h"
#include "services/benefit/lists.h"
#include "services/benefit/notice.h"
#include "store/inbox.h"
#include "store/store.h"

#define PID          "b000000000000be4e"
#define BASELINE_PID "b000000000000ba5e"
#define AMOUNT_FEN   50000
#define TITLE        "高龄津贴"
#define MAX_THREADS  8
#define LISTS_SLICE  8 /* the engine's slices of deferred list entries */

static const char *redis_url;
static size_t n_subjects = 1000000;
static size_t batch = FXB_ENT_BATCH_MAX;
static int threads = 8;
static bool inboxes_exist;  /* -I: every account has an inbox already */
static const char *aof_dir; /* -A: fsync its files after the last reply */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void subject_of(char out[32], size_t i)
{
    snprintf(out, 32, "p%024zx", i);
}

static void account_of(char out[32], size_t i)
{
    snprintf(out, 32, "bench%017zu", i);
}

static fxb_store *open_store(void)
{
    fxb_store_options opt = {.url = redis_url, .command_timeout_ms = 60000};
    fxb_err err;
    fxb_store *s = fxb_store_new(&opt, &err);
    if (s == NULL || !fxb_store_ping(s)) {
        fprintf(stderr, "benefit-bench: cannot reach %s\n", redis_url);
        fxb_store_free(s);
        return NULL;
    }
    return s;
}

/* One command; its reply (caller frees) or NULL after saying why. */
static redisReply *run(fxb_store *s, int argc, const char **argv)
{
    fxb_err err;
    redisReply *r = fxb_store_commandv(s, &err, argc, argv, NULL);
    if (r == NULL)
        fprintf(stderr, "benefit-bench: %s: %s\n", argv[0], err.message);
    return r;
}

/* A field of INFO (section) as an integer; -1 when absent. */
static long long info_field(fxb_store *s, const char *section, const char *name)
{
    const char *argv[] = {"INFO", section};
    redisReply *r = run(s, 2, argv);
    long long v = -1;
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        char pat[64];
        snprintf(pat, sizeof pat, "\n%s:", name);
        const char *p = strstr(r->str, pat);
        if (p != NULL)
            v = strtoll(p + strlen(pat), NULL, 10);
    }
    if (r != NULL)
        freeReplyObject(r);
    return v;
}

static const char *info_text(fxb_store *s, const char *section, const char *name, char *out,
                             size_t cap)
{
    const char *argv[] = {"INFO", section};
    redisReply *r = run(s, 2, argv);
    snprintf(out, cap, "?");
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        char pat[64];
        snprintf(pat, sizeof pat, "\n%s:", name);
        const char *p = strstr(r->str, pat);
        if (p != NULL) {
            p += strlen(pat);
            size_t n = strcspn(p, "\r\n");
            snprintf(out, cap, "%.*s", (int)n, p);
        }
    }
    if (r != NULL)
        freeReplyObject(r);
    return out;
}

/* Redis's CPU seconds so far (INFO cpu): all its threads, and the main
 * thread alone (the one that runs commands and scripts). */
static void redis_cpu(fxb_store *s, double *all, double *main_thread)
{
    const char *argv[] = {"INFO", "cpu"};
    redisReply *r = run(s, 2, argv);
    *all = *main_thread = -1;
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        const char *u = strstr(r->str, "\nused_cpu_user:"), *y = strstr(r->str, "\nused_cpu_sys:");
        const char *mu = strstr(r->str, "\nused_cpu_user_main_thread:");
        const char *my = strstr(r->str, "\nused_cpu_sys_main_thread:");
        if (u && y)
            *all = strtod(strchr(u + 1, ':') + 1, NULL) + strtod(strchr(y + 1, ':') + 1, NULL);
        if (mu && my)
            *main_thread =
                strtod(strchr(mu + 1, ':') + 1, NULL) + strtod(strchr(my + 1, ':') + 1, NULL);
    }
    if (r != NULL)
        freeReplyObject(r);
}

/* Prints INFO commandstats of the timed phase: each command's calls and
 * main-thread time per subject, largest first. Commands a script runs are
 * counted on their own line and again in its EVALSHA; what no line shows
 * (reading and parsing requests, writing replies, feeding and writing the
 * AOF, the event loop) is the main thread's CPU minus the sum. */
typedef struct cmdstat {
    char name[32];
    long long calls;
    double usec;
} cmdstat;

static void print_commandstats(fxb_store *s, size_t n)
{
    const char *argv[] = {"INFO", "commandstats"};
    redisReply *r = run(s, 2, argv);
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        if (r != NULL)
            freeReplyObject(r);
        return;
    }
    cmdstat c[64];
    size_t k = 0;
    for (const char *p = strstr(r->str, "cmdstat_"); p != NULL && k < 64;
         p = strstr(p + 1, "\ncmdstat_")) {
        if (*p == '\n')
            p++;
        if (sscanf(p, "cmdstat_%31[^:]:calls=%lld,usec=%lf", c[k].name, &c[k].calls, &c[k].usec) ==
                3 &&
            strcmp(c[k].name, "info") != 0 && strcmp(c[k].name, "config|resetstat") != 0)
            k++;
    }
    freeReplyObject(r);
    for (size_t i = 1; i < k; i++) /* by time, largest first (insertion sort) */
        for (size_t j = i; j > 0 && c[j].usec > c[j - 1].usec; j--) {
            cmdstat t = c[j];
            c[j] = c[j - 1];
            c[j - 1] = t;
        }
    printf("  redis commandstats (main-thread us per subject; a script's commands are also in "
           "evalsha):");
    for (size_t i = 0; i < k; i++)
        printf("%s %s %.2f (%lld calls)", i > 0 ? "," : "", c[i].name, c[i].usec / (double)n,
               c[i].calls);
    printf("\n");
}

/* Waits until no AOF rewrite runs or is scheduled. */
static void wait_rewrite(fxb_store *s)
{
    for (int i = 0; i < 6000; i++) {
        if (info_field(s, "persistence", "aof_rewrite_in_progress") <= 0 &&
            info_field(s, "persistence", "aof_rewrite_scheduled") <= 0)
            return;
        usleep(100000);
    }
}

/* Runs n commands as one pipeline; false after saying why (also on an
 * error reply). */
static bool pipeline(fxb_store *s, size_t n, const fxb_store_cmd *cmds, redisReply **replies)
{
    fxb_err err;
    if (fxb_store_pipeline(s, &err, n, cmds, replies) != FXB_OK) {
        fprintf(stderr, "benefit-bench: pipeline: %s\n", err.message);
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        if (replies[i]->type == REDIS_REPLY_ERROR && ok) {
            fprintf(stderr, "benefit-bench: %s: %s\n", cmds[i].argv[0], replies[i]->str);
            ok = false;
        }
        freeReplyObject(replies[i]);
    }
    return ok;
}

/* --- prepare ---------------------------------------------------------------- */

static bool prepare(fxb_store *s)
{
    const size_t per = 1000;
    fxb_store_cmd *cmds = calloc(3 * per, sizeof *cmds);
    redisReply **replies = calloc(3 * per, sizeof *replies);
    const char *(*argv)[16] = calloc(3 * per, sizeof *argv);
    char(*keys)[64] = calloc(3 * per, 64);
    char(*accts)[32] = calloc(per, 32);
    bool ok = cmds != NULL && replies != NULL && argv != NULL && keys != NULL && accts != NULL;
    for (size_t start = 0; ok && start < n_subjects; start += per) {
        size_t nc = 0;
        for (size_t i = start; i < start + per && i < n_subjects; i++) {
            char pid[32];
            subject_of(pid, i);
            account_of(accts[i - start], i);
            snprintf(keys[nc], 64, "{p:%s}:account", pid);
            argv[nc][0] = "SET";
            argv[nc][1] = keys[nc];
            argv[nc][2] = accts[i - start];
            cmds[nc] = (fxb_store_cmd){3, argv[nc], NULL};
            nc++;
            if (i % 2 == 0) {
                snprintf(keys[nc], 64, FXB_PUSH_ONLINE_PREFIX "%s", accts[i - start]);
                argv[nc][0] = "SET";
                argv[nc][1] = keys[nc];
                argv[nc][2] = "1";
                cmds[nc] = (fxb_store_cmd){3, argv[nc], NULL};
                nc++;
            }
            if (inboxes_exist) {
                snprintf(keys[nc], 64, "{u:%s}:inbox", accts[i - start]);
                const char *x[] = {
                    "XADD",  keys[nc],     "MAXLEN", "~", "1000", "*", "kind",  "bench.earlier",
                    "title", "此前的通知", "body",   "",  "ref",  "",  "at_ms", "1"};
                memcpy(argv[nc], x, sizeof x);
                cmds[nc] = (fxb_store_cmd){16, argv[nc], NULL};
                nc++;
            }
        }
        ok = pipeline(s, nc, cmds, replies);
    }
    free(cmds);
    free(replies);
    free(argv);
    free(keys);
    free(accts);
    return ok;
}

static bool write_policy(fxb_store *s)
{
    const char *argv[] = {"HSET",           "{b:" PID "}:policy",
                          "status",         "2",
                          "benefit_kind",   "1",
                          "amount_fen",     "50000",
                          "quota",          "0",
                          "budget_fen",     "0",
                          "confirm",        "0",
                          "valid_from_ms",  "0",
                          "valid_until_ms", "0",
                          "title",          TITLE,
                          "category",       "2",
                          "subject_type",   "1",
                          "code",           "BENCH-1"};
    redisReply *r = run(s, (int)(sizeof argv / sizeof argv[0]), argv);
    if (r == NULL)
        return false;
    freeReplyObject(r);
    return true;
}

/* fsync of every regular file of dir and of dir itself; the seconds it
 * took, or -1 when one failed. */
static double fsync_dir(const char *dir)
{
    double t0 = now_s();
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    bool ok = true;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) {
            ok = false;
            continue;
        }
        int fd = open(path, O_RDONLY);
        if (fd < 0 || fsync(fd) != 0)
            ok = false;
        if (fd >= 0)
            close(fd);
    }
    int fd = dirfd(d);
    if (fsync(fd) != 0)
        ok = false;
    closedir(d);
    return ok ? now_s() - t0 : -1;
}

/* --- the timed phases ---------------------------------------------------------- */

typedef struct worker {
    pthread_t thread;
    bool ok;
    size_t matched, granted, notices;
} worker;

static atomic_size_t next_batch;
static int64_t run_ms; /* the "now" of every write */

/* The naive writes of one batch: HSET + XADD per subject, one pipeline. */
static bool baseline_batch(fxb_store *s, worker *w, size_t start, size_t n, char (*accts)[32],
                           char (*keys)[64], const char *(*argv)[16], fxb_store_cmd *cmds,
                           redisReply **replies, char (*names)[32])
{
    static const char value_fmt[] = "3,1,%" PRId64 ",%" PRId64 ",-,-";
    char value[64], at[24];
    snprintf(value, sizeof value, value_fmt, run_ms, run_ms);
    snprintf(at, sizeof at, "%" PRId64, run_ms);
    size_t nc = 0;
    for (size_t i = 0; i < n; i++) {
        subject_of(names[i], start + i);
        account_of(accts[i], start + i);
        snprintf(keys[i], 64, "{u:%s}:inbox", accts[i]);
        const char *h[] = {"HSET", "{b:" BASELINE_PID "}:ent", names[i], value};
        memcpy(argv[2 * i], h, sizeof h);
        cmds[nc++] = (fxb_store_cmd){4, argv[2 * i], NULL};
        const char *x[] = {"XADD",   keys[i],
                           "MAXLEN", "~",
                           "1000",   "*",
                           "kind",   "benefit.granted",
                           "title",  "惠民政策「" TITLE "」已为您办理",
                           "body",   "您符合「" TITLE "」的享受条件，无需申请，已为您办理。",
                           "ref",    BASELINE_PID,
                           "at_ms",  at};
        memcpy(argv[2 * i + 1], x, sizeof x);
        cmds[nc++] = (fxb_store_cmd){16, argv[2 * i + 1], NULL};
    }
    if (!pipeline(s, nc, cmds, replies))
        return false;
    w->matched += n;
    w->granted += n;
    w->notices += n;
    return true;
}

static void *work(void *arg)
{
    worker *w = arg;
    w->ok = false;
    fxb_store *s = open_store();
    char(*names)[32] = calloc(batch, 32);
    char(*accts)[32] = calloc(batch, 32);
    char(*keys)[64] = calloc(batch, 64);
    const char *(*argv)[16] = calloc(2 * batch, sizeof *argv);
    fxb_store_cmd *cmds = calloc(2 * batch, sizeof *cmds);
    redisReply **replies = calloc(2 * batch, sizeof *replies);
    bool ok = s != NULL && names && accts && keys && argv && cmds && replies;
    while (ok) {
        size_t b = atomic_fetch_add(&next_batch, 1);
        size_t start = b * batch;
        if (start >= n_subjects)
            break;
        size_t n = n_subjects - start < batch ? n_subjects - start : batch;
        ok = baseline_batch(s, w, start, n, accts, keys, argv, cmds, replies, names);
    }
    w->ok = ok;
    free(names);
    free(accts);
    free(keys);
    free(argv);
    free(cmds);
    free(replies);
    fxb_store_free(s);
    return NULL;
}

/* The timed phase of fxb: what the engine does with a full match's
 * subjects, fxb_grantout_run over T connections (opened before the clock
 * starts: the engine holds its own). *counts the sum; returns the seconds,
 * or -1 on failure. */
static double fxb_phase(fxb_grantout_counts *counts)
{
    static const fxb_policy policy = {.id = PID,
                                      .code = "BENCH-1",
                                      .title = TITLE,
                                      .category = 2,
                                      .subject = FXB_SUBJECT_PERSON,
                                      .kind = FXB_BENEFIT_CASH,
                                      .amount_fen = AMOUNT_FEN,
                                      .status = FXB_POLICY_PUBLISHED};
    char(*names)[32] = malloc(n_subjects * sizeof *names);
    const char **subjects = malloc(n_subjects * sizeof *subjects);
    fxb_store *stores[FXB_GRANTOUT_STORES_MAX] = {NULL};
    bool ok = names != NULL && subjects != NULL;
    for (size_t i = 0; ok && i < n_subjects; i++) {
        subject_of(names[i], i);
        subjects[i] = names[i];
    }
    for (int i = 0; ok && i < threads; i++)
        ok = (stores[i] = open_store()) != NULL;
    double secs = -1;
    if (ok) {
        fxb_err err;
        double t0 = now_s();
        fxb_code rc = fxb_grantout_run(stores, (size_t)threads, &policy, subjects, n_subjects,
                                       "engine", NULL, NULL, counts, &err);
        secs = now_s() - t0;
        if (rc != FXB_OK) {
            fprintf(stderr, "benefit-bench: grant-out: %s %s\n", err.reason, err.message);
            secs = -1;
        }
    }
    for (int i = 0; i < threads; i++)
        fxb_store_free(stores[i]);
    free(subjects);
    free(names);
    return secs;
}

/* Runs the baseline on every thread; the sum of the workers in *total and
 * the seconds it took. */
static double baseline_phase(worker *total)
{
    worker w[MAX_THREADS];
    memset(w, 0, sizeof w);
    memset(total, 0, sizeof *total);
    atomic_store(&next_batch, 0);
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&w[i].thread, NULL, work, &w[i]) != 0) {
            fprintf(stderr, "benefit-bench: pthread_create failed\n");
            exit(1);
        }
    }
    total->ok = true;
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].thread, NULL);
        total->ok = total->ok && w[i].ok;
        total->matched += w[i].matched;
        total->granted += w[i].granted;
        total->notices += w[i].notices;
    }
    return now_s() - t0;
}

/* --- checks ------------------------------------------------------------------------ */

static long long integer_of(fxb_store *s, int argc, const char **argv)
{
    redisReply *r = run(s, argc, argv);
    long long v = -1;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r != NULL && r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    if (r != NULL)
        freeReplyObject(r);
    return v;
}

/* Sums XLEN of every account's inbox and ZCARD of every subject's list. */
static bool count_inboxes(fxb_store *s, long long *inbox_total, long long *lists_total)
{
    const size_t per = 1000;
    fxb_store_cmd *cmds = calloc(2 * per, sizeof *cmds);
    redisReply **replies = calloc(2 * per, sizeof *replies);
    const char *(*argv)[2] = calloc(2 * per, sizeof *argv);
    char(*keys)[64] = calloc(2 * per, 64);
    bool ok = cmds && replies && argv && keys;
    *inbox_total = *lists_total = 0;
    for (size_t start = 0; ok && start < n_subjects; start += per) {
        size_t nc = 0;
        for (size_t i = start; i < start + per && i < n_subjects; i++) {
            char acct[32], pid[32];
            account_of(acct, i);
            subject_of(pid, i);
            snprintf(keys[nc], 64, "{u:%s}:inbox", acct);
            argv[nc][0] = "XLEN";
            argv[nc][1] = keys[nc];
            cmds[nc] = (fxb_store_cmd){2, argv[nc], NULL};
            nc++;
            snprintf(keys[nc], 64, "{p:%s}:benefits", pid);
            argv[nc][0] = "ZCARD";
            argv[nc][1] = keys[nc];
            cmds[nc] = (fxb_store_cmd){2, argv[nc], NULL};
            nc++;
        }
        fxb_err err;
        if (fxb_store_pipeline(s, &err, nc, cmds, replies) != FXB_OK) {
            fprintf(stderr, "benefit-bench: counting: %s\n", err.message);
            ok = false;
            break;
        }
        for (size_t j = 0; j < nc; j++) {
            if (replies[j]->type == REDIS_REPLY_INTEGER)
                *(j % 2 == 0 ? inbox_total : lists_total) += replies[j]->integer;
            freeReplyObject(replies[j]);
        }
    }
    free(cmds);
    free(replies);
    free(argv);
    free(keys);
    return ok;
}

/* The transitions the policy's log records: n of each batch entry, 1 of
 * each single one (entitlement.h); *entries receives XLEN. -1 on failure. */
static long long stream_n_total(fxb_store *s, const char *key, long long *entries)
{
    char from[48] = "-";
    long long total = 0;
    *entries = 0;
    for (;;) {
        const char *argv[] = {"XRANGE", key, from, "+", "COUNT", "1000"};
        redisReply *r = run(s, 6, argv);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
            if (r != NULL)
                freeReplyObject(r);
            return -1;
        }
        size_t k = r->elements;
        for (size_t i = 0; i < k; i++) {
            const redisReply *e = r->element[i], *kv = e->element[1];
            long long n = 1;
            for (size_t j = 0; j + 1 < kv->elements; j += 2)
                if (strcmp(kv->element[j]->str, "n") == 0)
                    n = strtoll(kv->element[j + 1]->str, NULL, 10);
            total += n;
            (*entries)++;
            if (i + 1 == k)
                snprintf(from, sizeof from, "(%s", e->element[0]->str);
        }
        freeReplyObject(r);
        if (k < 1000)
            return total;
    }
}

static int usage(void)
{
    fprintf(stderr,
            "usage: fxb-bench-benefit [-n N] [-b 1..1000] [-t 1..8] [-I] [-P] [-B] [-S] [-A DIR] "
            "REDIS_URL\n");
    return 2;
}

int main(int argc, char **argv)
{
    bool do_prepare = true, do_baseline = true, do_verify = true;
    int opt;
    while ((opt = getopt(argc, argv, "n:b:t:IPBSA:h")) != -1) {
        char *end = NULL;
        errno = 0;
        switch (opt) {
        case 'n':
            n_subjects = strtoull(optarg, &end, 10);
            if (errno || *end || n_subjects == 0 || n_subjects > 100000000)
                return usage();
            break;
        case 'b':
            batch = strtoull(optarg, &end, 10);
            if (errno || *end || batch == 0 || batch > FXB_ENT_BATCH_MAX)
                return usage();
            break;
        case 't':
            threads = (int)strtol(optarg, &end, 10);
            if (errno || *end || threads < 1 || threads > MAX_THREADS)
                return usage();
            break;
        case 'I':
            inboxes_exist = true;
            break;
        case 'P':
            do_prepare = false;
            break;
        case 'B':
            do_baseline = false;
            break;
        case 'A':
            aof_dir = optarg;
            break;
        case 'S':
            do_verify = false;
            break;
        default:
            return usage();
        }
    }
    if (optind + 1 != argc)
        return usage();
    redis_url = argv[optind];

    fxb_store *s = open_store();
    if (s == NULL)
        return 1;
    char appendonly[16], fsync[16], version[32];
    info_text(s, "persistence", "aof_enabled", appendonly, sizeof appendonly);
    info_text(s, "server", "redis_version", version, sizeof version);
    {
        const char *cargv[] = {"CONFIG", "GET", "appendfsync"};
        redisReply *r = run(s, 3, cargv);
        snprintf(fsync, sizeof fsync, "?");
        if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
            snprintf(fsync, sizeof fsync, "%s", r->element[1]->str);
        if (r != NULL)
            freeReplyObject(r);
    }
    printf("redis %s, aof_enabled %s, appendfsync %s; N=%zu subjects, batches of %zu, %d "
           "thread(s)\n",
           version, appendonly, fsync, n_subjects, batch, threads);
    if (do_prepare) {
        double t0 = now_s();
        if (!prepare(s) || !write_policy(s))
            return 1;
        double t1 = now_s();
        wait_rewrite(s);
        printf("prepared %zu subjects with accounts (every second one online%s) in %.2f s; "
               "AOF rewrites settled after %.2f s more\n",
               n_subjects, inboxes_exist ? ", each with an inbox of one earlier notice" : "",
               t1 - t0, now_s() - t1);
    }
    fflush(stdout);
    /* commandstats from here on cover the timed phase alone */
    const char *reset[] = {"CONFIG", "RESETSTAT"};
    redisReply *rr = run(s, 2, reset);
    if (rr == NULL)
        return 1;
    freeReplyObject(rr);
    long long mem0 = info_field(s, "memory", "used_memory");
    long long rewrites0 = info_field(s, "persistence", "aof_rewrites");
    run_ms = wall_ms();
    double cpu0, main0, cpu1, main1;
    redis_cpu(s, &cpu0, &main0);

    fxb_grantout_counts fxb;
    double secs = fxb_phase(&fxb);
    double fsync_s = secs >= 0 && aof_dir != NULL ? fsync_dir(aof_dir) : 0;
    redis_cpu(s, &cpu1, &main1);
    if (secs < 0)
        return 1;
    if (fsync_s < 0) {
        fprintf(stderr, "benefit-bench: fsync of the AOF in %s failed\n", aof_dir);
        return 1;
    }
    double durable = secs + fsync_s;
    /* WAITAOF (Redis 7.2+) on this connection, after every worker's last
     * reply: returns once what was written before it is fsynced locally */
    const char *wargv[] = {"WAITAOF", "1", "0", "0"};
    fxb_err werr;
    double tw = now_s();
    redisReply *wr = fxb_store_commandv(s, &werr, 4, wargv, NULL);
    double waitaof_s = now_s() - tw;
    bool have_waitaof = wr != NULL && wr->type == REDIS_REPLY_ARRAY;
    if (wr != NULL)
        freeReplyObject(wr);
    long long mem1 = info_field(s, "memory", "used_memory");
    long long rewrites1 = info_field(s, "persistence", "aof_rewrites");
    bool in_rewrite = info_field(s, "persistence", "aof_rewrite_in_progress") > 0;

    printf("\nfxb (fxb_grantout_run over %d connection(s): fxb_ent_match_batch + "
           "fxb_benefit_notify per batch of %d):\n",
           threads, FXB_ENT_BATCH_MAX);
    printf("  %zu subjects matched, %zu entitlements granted, %zu notices written in %.2f s "
           "(until the last reply)\n",
           n_subjects, fxb.granted, fxb.notices, secs);
    printf("  %.0f entitlements/s, %.0f notices/s\n", (double)fxb.granted / secs,
           (double)fxb.notices / secs);
    if (aof_dir != NULL)
        printf("  durable at %.2f s: the bench's fsync of the AOF files after the last reply "
               "took %.3f s\n",
               durable, fsync_s);
    if (have_waitaof)
        printf("  WAITAOF 1 0 0 answered %.3f s after the last reply\n", waitaof_s);
    else if (aof_dir == NULL)
        printf("  durable: %s (no WAITAOF in redis %s)\n",
               strcmp(fsync, "always") == 0
                   ? "at the last reply (appendfsync always fsyncs before replying)"
                   : "within about 1 s of the last reply (appendfsync everysec)",
               version);
    printf(
        "  redis CPU %.2f s (main thread %.2f s = %.1f us per subject); client CPU see time(1)\n",
        cpu1 - cpu0, main1 - main0, (main1 - main0) * 1e6 / (double)n_subjects);
    print_commandstats(s, n_subjects);
    printf("  AOF rewrites during the run: %lld%s\n", rewrites1 - rewrites0,
           in_rewrite ? " (one still running)" : "");
    printf("  redis used_memory %.1f MiB -> %.1f MiB (+%.0f bytes per subject)\n",
           (double)mem0 / 1048576.0, (double)mem1 / 1048576.0,
           (double)(mem1 - mem0) / (double)n_subjects);
    fflush(stdout);

    /* the list entries the write-out deferred (lists.h), as the engine
     * writes them after it: slices on one connection */
    long long owed_entries = 0;
    long long owed = stream_n_total(s, "{b:" PID "}:unlisted", &owed_entries);
    redis_cpu(s, &cpu0, &main0);
    double tl = now_s();
    fxb_lists_progress lp = {.more = true};
    size_t listed = 0, list_failed = 0;
    while (lp.more) {
        fxb_err lerr;
        if (fxb_lists_work(s, LISTS_SLICE, &lp, &lerr) != FXB_OK) {
            fprintf(stderr, "benefit-bench: the deferred lists: %s\n", lerr.message);
            return 1;
        }
        listed += lp.listed;
        list_failed += lp.failed + lp.dropped;
    }
    double lists_s = now_s() - tl;
    double lists_fsync_s = aof_dir != NULL ? fsync_dir(aof_dir) : 0;
    redis_cpu(s, &cpu1, &main1);
    printf("  deferred list entries: %lld owed (in %lld unlisted entries, durable with the "
           "entitlements); %zu written afterwards in %.2f s on one connection, slices of %d "
           "(redis main thread %.1f us per entry)\n",
           owed, owed_entries, listed, lists_s, LISTS_SLICE,
           listed > 0 ? (main1 - main0) * 1e6 / (double)listed : 0.0);
    if (aof_dir != NULL)
        printf("  lists durable at %.2f s from the start (after the fsync of the AOF files)\n",
               durable + lists_s + lists_fsync_s);
    fflush(stdout);

    int rc = 0;
    long long hlen = -1, used = -1, payouts = -1, payout_entries = -1, logs = -1, log_entries = -1,
              inboxes = -1, lists = -1;
    if (do_verify) {
        const char *a1[] = {"HLEN", "{b:" PID "}:ent"};
        const char *a2[] = {"HGET", "{b:" PID "}:policy", "grants_used"};
        hlen = integer_of(s, 2, a1);
        used = integer_of(s, 3, a2);
        payouts = stream_n_total(s, "{b:" PID "}:payouts", &payout_entries);
        logs = stream_n_total(s, "{b:" PID "}:log", &log_entries);
        if (!count_inboxes(s, &inboxes, &lists))
            return 1;
        long long want = (long long)n_subjects;
        if (inboxes_exist)
            inboxes -= want; /* the earlier notices */
        bool ok = hlen == want && used == want && payouts == want && logs == want &&
                  inboxes == want && lists == want && owed == want && listed == n_subjects &&
                  list_failed == 0 && fxb.notices == n_subjects && fxb.granted == n_subjects &&
                  fxb.refused == 0 && fxb.unsent == 0;
        printf("  check: ent HLEN %lld, grants_used %lld, disbursement keys %lld (in %lld "
               "entries), transitions logged %lld (in %lld log entries), inbox messages %lld "
               "(new), benefit lists %lld (each should be %zu): %s\n",
               hlen, used, payouts, payout_entries, logs, log_entries, inboxes, lists, n_subjects,
               ok ? "OK" : "FAILED");
        if (!ok)
            rc = 3;
    }

    double bsecs = 0;
    worker base = {0};
    long long mem2 = mem1;
    if (do_baseline) {
        /* the same starting point as the measured path: an emptied Redis
         * prepared again (so the keyspace grows through the same sizes) */
        const char *flush[] = {"FLUSHALL", "SYNC"};
        redisReply *fr = run(s, 2, flush);
        if (fr == NULL)
            return 1;
        freeReplyObject(fr);
        if (do_prepare && (!prepare(s) || !write_policy(s)))
            return 1;
        wait_rewrite(s);
        run_ms = wall_ms();
        long long memb = info_field(s, "memory", "used_memory");
        redis_cpu(s, &cpu0, &main0);
        rewrites0 = info_field(s, "persistence", "aof_rewrites");
        bsecs = baseline_phase(&base);
        redis_cpu(s, &cpu1, &main1);
        rewrites1 = info_field(s, "persistence", "aof_rewrites");
        if (!base.ok)
            return 1;
        mem2 = info_field(s, "memory", "used_memory");
        printf("\nbaseline (HSET + XADD per subject, pipelined %zu deep, no script):\n", batch);
        printf("  %zu entitlements + %zu notices in %.2f s: %.0f entitlements/s; redis "
               "used_memory +%.0f bytes per subject\n",
               base.granted, base.notices, bsecs, (double)base.granted / bsecs,
               (double)(mem2 - memb) / (double)n_subjects);
        printf("  redis CPU %.2f s (main thread %.2f s = %.1f us per subject); AOF rewrites "
               "during the baseline: %lld\n",
               cpu1 - cpu0, main1 - main0, (main1 - main0) * 1e6 / (double)n_subjects,
               rewrites1 - rewrites0);
        printf("  fxb / baseline time: %.2fx\n", secs / bsecs);
    }
    /* without -A, with everysec, the last reply is all there is to judge by
     * (durable within about a second of it) */
    printf("\ntarget: 1 M matched entitlements + inbox messages durable in under 10 s: %s "
           "(%.2f s for %zu, appendfsync %s, %s)\n",
           durable < 10.0 * (double)n_subjects / 1e6 ? "MET" : "MISSED", durable, n_subjects, fsync,
           aof_dir != NULL ? "last reply + fsync of the AOF" : "last reply");
    printf("RESULT fsync=%s n=%zu threads=%d batch=%zu secs=%.3f fsync_secs=%.3f "
           "durable_secs=%.3f ent_per_s=%.0f notices_per_s=%.0f used_memory=%lld "
           "baseline_secs=%.3f check=%s\n",
           fsync, n_subjects, threads, batch, secs, fsync_s, durable, (double)fxb.granted / secs,
           (double)fxb.notices / secs, mem1, bsecs, rc == 0 ? "ok" : "failed");
    fxb_store_free(s);
    return rc;
}
