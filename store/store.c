/* One synchronous hiredis connection per thread, with fail-fast behaviour
 * when Redis is away: a broken connection is dropped at once, and reconnects
 * are attempted only as commands arrive and no more often than an
 * exponential backoff allows, so a dead Redis costs callers microseconds, not
 * a connect timeout each. */
#include "store/store.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <time.h>

#include <openssl/evp.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 1000
#define DEFAULT_COMMAND_TIMEOUT_MS 2000
#define DEFAULT_BACKOFF_MIN_MS     50
#define DEFAULT_BACKOFF_MAX_MS     2000

/* Redis databases a default server has; SELECT beyond fails. */
#define STORE_DB_MAX 15

#define ZH_UNAVAILABLE    "系统繁忙，请稍后重试"
#define ZH_INTERNAL       "系统错误，请稍后重试"
#define ZH_BAD_CONFIG     "服务配置错误"
#define SHA_STATE_EMPTY   0
#define SHA_STATE_FILLING 1
#define SHA_STATE_READY   2

struct fxb_store {
    fxb_store_url url;
    redisContext *c; /* NULL while disconnected */
    struct timeval connect_tv;
    struct timeval command_tv;
    long long backoff_min_ms;
    long long backoff_max_ms;
    long long backoff_ms;      /* wait after the next failed connect */
    long long next_attempt_ms; /* monotonic; no connect before this */
    bool proven;               /* the current connection has answered */
    unsigned pending;          /* replies of fxb_store_send not read yet */
    char last_cause[128];      /* why the last connect failed, for messages */
};

static atomic_uint_least64_t store_errors;

uint64_t fxb_store_error_count(void)
{
    return (uint64_t)atomic_load_explicit(&store_errors, memory_order_relaxed);
}

static void count_errors(uint64_t n)
{
    atomic_fetch_add_explicit(&store_errors, n, memory_order_relaxed);
}

static void count_error(void)
{
    count_errors(1);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval ms_to_tv(int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

/* ---- URL --------------------------------------------------------------- */

static fxb_code bad_url(fxb_err *err, const char *what)
{
    /* The URL itself is not echoed: it may carry a password. */
    return fxb_err_set(err, FXB_INVALID_ARGUMENT, "BAD_REDIS_URL", ZH_BAD_CONFIG,
                       "bad Redis URL: %s", what);
}

/* Parses 1..max_digits decimal digits spanning exactly [s, end). */
static bool parse_uint(const char *s, const char *end, int max_digits, long *out)
{
    if (end <= s || end - s > max_digits)
        return false;
    long v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return true;
}

static fxb_code parse_db(const char *s, const char *end, int *db, fxb_err *err)
{
    long v;
    if (!parse_uint(s, end, 2, &v) || v > STORE_DB_MAX)
        return bad_url(err, "database must be a number 0..15");
    *db = (int)v;
    return FXB_OK;
}

static fxb_code parse_tcp(const char *rest, fxb_store_url *out, fxb_err *err)
{
    if (strpbrk(rest, "@"))
        return bad_url(err, "credentials in the URL are not supported");
    if (strpbrk(rest, "?#"))
        return bad_url(err, "redis:// URLs take no query or fragment");

    const char *host = rest, *host_end, *p;
    if (*rest == '[') { /* [IPv6] */
        host = rest + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL)
            return bad_url(err, "unterminated '[' in host");
        p = host_end + 1;
    } else {
        host_end = rest + strcspn(rest, ":/");
        p = host_end;
    }
    if (host_end == host)
        return bad_url(err, "host is empty");
    if ((size_t)(host_end - host) >= sizeof out->host)
        return bad_url(err, "host is too long");
    for (const char *h = host; h < host_end; h++)
        if (!isgraph((unsigned char)*h))
            return bad_url(err, "host contains a space or control character");

    int port = 6379;
    if (*p == ':') {
        const char *port_end = p + 1 + strcspn(p + 1, "/");
        long v;
        if (!parse_uint(p + 1, port_end, 5, &v) || v < 1 || v > 65535)
            return bad_url(err, "port must be a number 1..65535");
        port = (int)v;
        p = port_end;
    } else if (*p != '/' && *p != '\0') {
        return bad_url(err, "unexpected character after host");
    }

    int db = 0;
    if (*p == '/' && p[1] != '\0') {
        const char *db_end = p + 1 + strcspn(p + 1, "/");
        if (*db_end == '/' && db_end[1] != '\0')
            return bad_url(err, "path must be just /db");
        fxb_code rc = parse_db(p + 1, db_end, &db, err);
        if (rc != FXB_OK)
            return rc;
    }

    memset(out, 0, sizeof *out);
    memcpy(out->host, host, (size_t)(host_end - host));
    out->port = port;
    out->db = db;
    return FXB_OK;
}

static fxb_code parse_unix(const char *rest, fxb_store_url *out, fxb_err *err)
{
    if (rest[0] != '/')
        return bad_url(err, "unix socket path must be absolute (unix:///path)");
    size_t path_len = strcspn(rest, "?#");
    if (path_len < 2)
        return bad_url(err, "unix socket path is empty");
    /* hiredis copies the path into sun_path and silently truncates. */
    if (path_len >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return bad_url(err, "unix socket path is too long");
    for (size_t i = 0; i < path_len; i++)
        if (iscntrl((unsigned char)rest[i]))
            return bad_url(err, "unix socket path contains a control character");

    int db = 0;
    const char *q = rest + path_len;
    if (*q == '#')
        return bad_url(err, "unix:// URLs take no fragment");
    if (*q == '?') {
        if (strncmp(q, "?db=", 4) != 0)
            return bad_url(err, "the only query parameter is db=N");
        const char *v = q + 4;
        fxb_code rc = parse_db(v, v + strlen(v), &db, err);
        if (rc != FXB_OK)
            return rc;
    }

    memset(out, 0, sizeof *out);
    out->is_unix = true;
    memcpy(out->host, rest, path_len);
    out->db = db;
    return FXB_OK;
}

fxb_code fxb_store_url_parse(const char *url, fxb_store_url *out, fxb_err *err)
{
    if (url == NULL || out == NULL)
        return bad_url(err, "no URL given");
    if (strnlen(url, FXB_STORE_URL_MAX + 1) > FXB_STORE_URL_MAX)
        return bad_url(err, "longer than 512 characters");
    if (strncasecmp(url, "redis://", 8) == 0)
        return parse_tcp(url + 8, out, err);
    if (strncasecmp(url, "unix://", 7) == 0)
        return parse_unix(url + 7, out, err);
    if (strncasecmp(url, "rediss://", 9) == 0)
        return bad_url(err, "TLS (rediss://) is not supported");
    return bad_url(err, "scheme must be redis:// or unix://");
}

/* ---- connection -------------------------------------------------------- */

static fxb_code unavailable(fxb_store *s, fxb_err *err, const char *cause)
{
    count_error();
    fxb_err_set(err, FXB_UNAVAILABLE, "STORE_UNAVAILABLE", ZH_UNAVAILABLE,
                "the data store is unavailable; retry shortly (%s)", cause);
    if (err != NULL) {
        long long wait = s->next_attempt_ms - now_ms();
        err->retry_after_ms = wait > s->backoff_min_ms ? wait : s->backoff_min_ms;
    }
    return FXB_UNAVAILABLE;
}

static void backoff(fxb_store *s)
{
    s->next_attempt_ms = now_ms() + s->backoff_ms;
    s->backoff_ms = s->backoff_ms * 2 > s->backoff_max_ms ? s->backoff_max_ms : s->backoff_ms * 2;
}

/* Drops a broken connection. One that had answered may be replaced at once:
 * a single broken socket says little about Redis. One that died before any
 * answer counts as a failed connect, so a Redis that accepts and drops
 * (maxclients, a stalled process) is not hammered. */
static void mark_dead(fxb_store *s)
{
    if (s->c == NULL)
        return;
    snprintf(s->last_cause, sizeof s->last_cause, "%s",
             s->c->err ? s->c->errstr : "connection lost");
    redisFree(s->c);
    s->c = NULL;
    s->pending = 0;
    if (s->proven)
        s->next_attempt_ms = 0;
    else
        backoff(s);
}

/* An answer proves the connection, which ends the backoff. */
static void note_answer(fxb_store *s)
{
    if (!s->proven) {
        s->proven = true;
        s->backoff_ms = s->backoff_min_ms;
    }
}

/* A synchronous context has nothing to read between commands: readable
 * means the peer closed it (Redis restarted, idle timeout, CLIENT KILL).
 * Catching that here lets the command go to a fresh connection instead of
 * failing on the stale one. */
static bool looks_stale(redisContext *c)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    return poll(&pfd, 1, 0) > 0;
}

static bool try_connect(fxb_store *s)
{
    redisContext *c = s->url.is_unix
                          ? redisConnectUnixWithTimeout(s->url.host, s->connect_tv)
                          : redisConnectWithTimeout(s->url.host, s->url.port, s->connect_tv);
    if (c == NULL) {
        snprintf(s->last_cause, sizeof s->last_cause, "out of memory");
        return false;
    }
    if (c->err) {
        snprintf(s->last_cause, sizeof s->last_cause, "connect: %.100s", c->errstr);
        redisFree(c);
        return false;
    }
    if (redisSetTimeout(c, s->command_tv) != REDIS_OK) {
        snprintf(s->last_cause, sizeof s->last_cause, "set timeout: %s", strerror(errno));
        redisFree(c);
        return false;
    }
    if (s->url.db != 0) {
        redisReply *r = redisCommand(c, "SELECT %d", s->url.db);
        bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (!ok)
            snprintf(s->last_cause, sizeof s->last_cause, "SELECT %d: %.80s", s->url.db,
                     r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
        if (r != NULL)
            freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return false;
        }
    }
    s->c = c;
    s->proven = false;
    return true;
}

/* Reads the replies of commands sent without waiting (fxb_store_send):
 * an error reply is counted, a lost connection dropped. */
static void drain(fxb_store *s)
{
    size_t errors = 0;
    while (s->c != NULL && s->pending > 0) {
        void *r = NULL;
        if (redisGetReply(s->c, &r) != REDIS_OK || r == NULL) {
            mark_dead(s);
            errors++;
            break;
        }
        s->pending--;
        note_answer(s);
        if (((redisReply *)r)->type == REDIS_REPLY_ERROR)
            errors++;
        freeReplyObject(r);
    }
    count_errors(errors);
}

/* Makes sure s->c is usable, reconnecting if the backoff allows. */
static fxb_code ensure_connected(fxb_store *s, fxb_err *err)
{
    if (s->c != NULL && s->pending > 0)
        drain(s); /* before the staleness check: those replies are readable */
    if (s->c != NULL && (s->c->err || looks_stale(s->c)))
        mark_dead(s);
    if (s->c != NULL)
        return FXB_OK;

    long long now = now_ms();
    if (now < s->next_attempt_ms)
        return unavailable(s, err, s->last_cause);
    if (try_connect(s)) {
        s->next_attempt_ms = 0;
        return FXB_OK;
    }
    backoff(s);
    return unavailable(s, err, s->last_cause);
}

fxb_store *fxb_store_new(const fxb_store_options *opt, fxb_err *err)
{
    if (opt == NULL) {
        bad_url(err, "no options given");
        return NULL;
    }
    fxb_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_INTERNAL,
                    "out of memory creating the store");
        return NULL;
    }
    if (fxb_store_url_parse(opt->url, &s->url, err) != FXB_OK) {
        free(s);
        return NULL;
    }
    int connect_ms =
        opt->connect_timeout_ms > 0 ? opt->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    int command_ms =
        opt->command_timeout_ms > 0 ? opt->command_timeout_ms : DEFAULT_COMMAND_TIMEOUT_MS;
    s->connect_tv = ms_to_tv(connect_ms);
    s->command_tv = ms_to_tv(command_ms);
    s->backoff_min_ms = opt->backoff_min_ms > 0 ? opt->backoff_min_ms : DEFAULT_BACKOFF_MIN_MS;
    s->backoff_max_ms = opt->backoff_max_ms > 0 ? opt->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
    if (s->backoff_max_ms < s->backoff_min_ms)
        s->backoff_max_ms = s->backoff_min_ms;
    s->backoff_ms = s->backoff_min_ms;
    snprintf(s->last_cause, sizeof s->last_cause, "not connected yet");

    /* A down Redis at start-up is not fatal: later commands retry. */
    (void)ensure_connected(s, NULL);
    return s;
}

void fxb_store_free(fxb_store *s)
{
    if (s == NULL)
        return;
    if (s->c != NULL)
        redisFree(s->c);
    free(s);
}

bool fxb_store_connected(const fxb_store *s)
{
    return s != NULL && s->c != NULL && s->c->err == 0;
}

/* ---- commands ---------------------------------------------------------- */

/* Turns a NULL reply (I/O error or timeout) or an error reply into *err.
 * Returns the reply when it is a success, else NULL (reply freed). */
static redisReply *check_reply(fxb_store *s, redisReply *r, fxb_err *err)
{
    if (r == NULL) {
        char cause[128];
        snprintf(cause, sizeof cause, "%s", s->c->errstr[0] ? s->c->errstr : "I/O error");
        mark_dead(s);
        unavailable(s, err, cause);
        return NULL;
    }
    note_answer(s);
    if (r->type == REDIS_REPLY_ERROR) {
        /* Room past the cap so the UTF-8-aware cut below has work to do. */
        char text[FXB_STORE_ERROR_TEXT_MAX + 8];
        snprintf(text, sizeof text, "%s", r->str);
        fxb_utf8_truncate(text, FXB_STORE_ERROR_TEXT_MAX);
        freeReplyObject(r);
        count_error();
        fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_INTERNAL, "Redis error: %s", text);
        return NULL;
    }
    return r;
}

redisReply *fxb_store_command(fxb_store *s, fxb_err *err, const char *fmt, ...)
{
    if (ensure_connected(s, err) != FXB_OK)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(s->c, fmt, ap);
    va_end(ap);
    return check_reply(s, r, err);
}

redisReply *fxb_store_commandv(fxb_store *s, fxb_err *err, int argc, const char **argv,
                               const size_t *argvlen)
{
    if (ensure_connected(s, err) != FXB_OK)
        return NULL;
    return check_reply(s, redisCommandArgv(s->c, argc, argv, argvlen), err);
}

fxb_code fxb_store_pipeline(fxb_store *s, fxb_err *err, size_t n, const fxb_store_cmd *cmds,
                            redisReply **replies)
{
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    if (n > 0 && cmds == NULL) {
        count_error();
        return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_INTERNAL,
                           "bad call to fxb_store_pipeline");
    }
    fxb_code rc = ensure_connected(s, err);
    if (rc != FXB_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (redisAppendCommandArgv(s->c, cmds[i].argc, cmds[i].argv, cmds[i].argvlen) != REDIS_OK) {
            /* Part of the batch may sit in the output buffer: the context
             * can no longer be trusted to pair replies with commands. */
            mark_dead(s);
            return unavailable(s, err, "could not queue a pipelined command");
        }
    }
    size_t errors = 0;
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(s->c, &r) != REDIS_OK || r == NULL) {
            char cause[128];
            snprintf(cause, sizeof cause, "%s", s->c->errstr[0] ? s->c->errstr : "I/O error");
            for (size_t j = 0; j < i; j++) {
                freeReplyObject(replies[j]);
                replies[j] = NULL;
            }
            mark_dead(s);
            return unavailable(s, err, cause);
        }
        replies[i] = r;
        note_answer(s);
        if (replies[i]->type == REDIS_REPLY_ERROR)
            errors++;
    }
    count_errors(errors);
    return FXB_OK;
}

fxb_code fxb_store_send(fxb_store *s, fxb_err *err, size_t n, const fxb_store_cmd *cmds)
{
    if (n > 0 && cmds == NULL) {
        count_error();
        return fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_INTERNAL,
                           "bad call to fxb_store_send");
    }
    fxb_code rc = ensure_connected(s, err);
    if (rc != FXB_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (redisAppendCommandArgv(s->c, cmds[i].argc, cmds[i].argv, cmds[i].argvlen) != REDIS_OK) {
            mark_dead(s);
            return unavailable(s, err, "could not queue a command");
        }
    }
    int done = 0;
    while (!done) {
        if (redisBufferWrite(s->c, &done) != REDIS_OK) {
            char cause[128];
            snprintf(cause, sizeof cause, "%s", s->c->errstr[0] ? s->c->errstr : "I/O error");
            mark_dead(s);
            return unavailable(s, err, cause);
        }
    }
    s->pending += (unsigned)n;
    return FXB_OK;
}

void fxb_store_drain(fxb_store *s)
{
    if (s != NULL)
        drain(s);
}

bool fxb_store_ping(fxb_store *s)
{
    redisReply *r = fxb_store_command(s, NULL, "PING");
    bool ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r != NULL)
        freeReplyObject(r);
    return ok;
}

/* ---- scripts ----------------------------------------------------------- */

static bool sha1_hex(const char *src, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(src, strlen(src), md, &md_len, EVP_sha1(), NULL) != 1 || md_len != 20)
        return false;
    static const char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < md_len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
    return true;
}

/* Returns the script's SHA-1 (in the script once published, else in local),
 * or NULL if it cannot be computed. Threads racing on first use each hash
 * into their own buffer, and exactly one publishes, so no one waits. */
static const char *script_sha(fxb_script *sc, char local[41])
{
    if (__atomic_load_n(&sc->sha_state, __ATOMIC_ACQUIRE) == SHA_STATE_READY)
        return sc->sha;
    if (!sha1_hex(sc->source, local))
        return NULL;
    int expected = SHA_STATE_EMPTY;
    if (__atomic_compare_exchange_n(&sc->sha_state, &expected, SHA_STATE_FILLING, false,
                                    __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        memcpy(sc->sha, local, 41);
        __atomic_store_n(&sc->sha_state, SHA_STATE_READY, __ATOMIC_RELEASE);
    }
    return local;
}

/* Redis 7 appends " script: <sha>, on @user_script:N." to errors raised with
 * error({err=...}) (not to redis.error_reply); cut it so messages stay ours. */
static void strip_script_suffix(char *text)
{
    char *cut = NULL;
    for (char *p = strstr(text, " script: "); p != NULL; p = strstr(p + 1, " script: "))
        cut = p;
    if (cut != NULL && strspn(cut + 9, "0123456789abcdef") == 40)
        *cut = '\0';
}

static const char *zh_for(fxb_code code)
{
    switch (code) {
    case FXB_INVALID_ARGUMENT:
    case FXB_OUT_OF_RANGE:
        return "请求参数有误";
    case FXB_NOT_FOUND:
        return "未找到相关数据";
    case FXB_ALREADY_EXISTS:
        return "数据已存在";
    case FXB_PERMISSION_DENIED:
        return "没有权限执行此操作";
    case FXB_RESOURCE_EXHAUSTED:
        return "操作过于频繁，请稍后重试";
    case FXB_FAILED_PRECONDITION:
        return "当前状态不允许此操作";
    case FXB_ABORTED:
        return "数据已被修改，请刷新后重试";
    case FXB_UNAVAILABLE:
        return ZH_UNAVAILABLE;
    default:
        return ZH_INTERNAL;
    }
}

/* "FXB <code> <REASON>[ <message>]" -> *err. False when text does not follow
 * the convention exactly (then it is an ordinary script failure). */
static bool parse_fxb_error(const char *text, fxb_err *err)
{
    if (strncmp(text, "FXB ", 4) != 0)
        return false;
    const char *p = text + 4;
    const char *num_end = p + strspn(p, "0123456789");
    long code;
    if (!parse_uint(p, num_end, 2, &code) || code < 1 || code > FXB_UNAUTHENTICATED ||
        *num_end != ' ')
        return false;
    const char *reason = num_end + 1;
    size_t reason_len = strspn(reason, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
    if (reason_len == 0 || reason_len >= FXB_ERR_REASON_MAX || !isupper((unsigned char)*reason))
        return false;
    const char *msg = reason + reason_len;
    if (*msg == ' ')
        msg++;
    else if (*msg != '\0')
        return false;

    char reason_buf[FXB_ERR_REASON_MAX];
    memcpy(reason_buf, reason, reason_len);
    reason_buf[reason_len] = '\0';
    fxb_err_set(err, (fxb_code)code, reason_buf, zh_for((fxb_code)code), "%s",
                *msg ? msg : reason_buf);
    return true;
}

redisReply *fxb_store_eval(fxb_store *s, fxb_err *err, fxb_script *script, int nkeys,
                           const char **keys, int nargs, const char **args, const size_t *arglens)
{
    return fxb_store_eval_with(s, err, script, nkeys, keys, nargs, args, arglens, 0, NULL, NULL);
}

redisReply *fxb_store_eval_with(fxb_store *s, fxb_err *err, fxb_script *script, int nkeys,
                                const char **keys, int nargs, const char **args,
                                const size_t *arglens, size_t n_extra, const fxb_store_cmd *extra,
                                redisReply **extra_replies)
{
    for (size_t i = 0; i < n_extra && extra_replies != NULL; i++)
        extra_replies[i] = NULL;
    if (script == NULL || script->source == NULL || nkeys < 0 || nargs < 0 ||
        (nkeys > 0 && keys == NULL) || (nargs > 0 && args == NULL) ||
        (n_extra > 0 && (extra == NULL || extra_replies == NULL))) {
        count_error();
        fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_INTERNAL, "bad call to fxb_store_eval");
        return NULL;
    }
    if (ensure_connected(s, err) != FXB_OK)
        return NULL;

    size_t argc = 3 + (size_t)nkeys + (size_t)nargs;
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    fxb_store_cmd *cmds = malloc((1 + n_extra) * sizeof *cmds);
    redisReply **replies = malloc((1 + n_extra) * sizeof *replies);
    if (argv == NULL || lens == NULL || cmds == NULL || replies == NULL) {
        free(argv);
        free(lens);
        free(cmds);
        free(replies);
        count_error();
        fxb_err_set(err, FXB_RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", ZH_INTERNAL,
                    "out of memory running script %s", script->name);
        return NULL;
    }
    char local_sha[41];
    const char *sha = script_sha(script, local_sha);
    char nkeys_txt[16];
    snprintf(nkeys_txt, sizeof nkeys_txt, "%d", nkeys);
    argv[2] = nkeys_txt;
    lens[2] = strlen(nkeys_txt);
    for (int i = 0; i < nkeys; i++) {
        argv[3 + i] = keys[i];
        lens[3 + i] = strlen(keys[i]);
    }
    for (int i = 0; i < nargs; i++) {
        argv[3 + nkeys + i] = args[i];
        lens[3 + nkeys + i] = arglens != NULL ? arglens[i] : strlen(args[i]);
    }

    redisReply *r = NULL;
    bool failed = false;
    if (sha != NULL) {
        argv[0] = "EVALSHA";
        argv[1] = sha;
        lens[0] = 7;
        lens[1] = 40;
        if (n_extra == 0) {
            r = redisCommandArgv(s->c, (int)argc, argv, lens);
        } else {
            /* the extra commands ride in the same round trip */
            cmds[0] = (fxb_store_cmd){(int)argc, argv, lens};
            memcpy(cmds + 1, extra, n_extra * sizeof *cmds);
            if (fxb_store_pipeline(s, err, 1 + n_extra, cmds, replies) != FXB_OK) {
                failed = true;
            } else {
                r = replies[0];
                memcpy(extra_replies, replies + 1, n_extra * sizeof *replies);
            }
        }
        if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            /* Script cache is empty after a Redis restart or SCRIPT FLUSH;
             * EVAL runs it and caches it again. */
            freeReplyObject(r);
            r = NULL;
            sha = NULL;
        }
    }
    if (sha == NULL && !failed) {
        argv[0] = "EVAL";
        argv[1] = script->source;
        lens[0] = 4;
        lens[1] = strlen(script->source);
        r = redisCommandArgv(s->c, (int)argc, argv, lens);
        if (n_extra > 0 && extra_replies[0] == NULL &&
            fxb_store_pipeline(s, err, n_extra, extra, extra_replies) != FXB_OK) {
            /* the script ran; its extras could not: the caller sees NULL
             * replies */
            for (size_t i = 0; i < n_extra; i++)
                extra_replies[i] = NULL;
        }
    }
    free(argv);
    free(lens);
    free(cmds);
    free(replies);
    if (failed)
        return NULL;

    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        note_answer(s);
        char text[2 * FXB_ERR_MESSAGE_MAX];
        snprintf(text, sizeof text, "%s", r->str);
        strip_script_suffix(text);
        if (parse_fxb_error(text, err)) {
            /* A business outcome the script chose, not a store failure. */
            freeReplyObject(r);
            return NULL;
        }
        fxb_utf8_truncate(text, FXB_STORE_ERROR_TEXT_MAX);
        freeReplyObject(r);
        count_error();
        fxb_err_set(err, FXB_INTERNAL, "STORE_ERROR", ZH_INTERNAL, "script %s failed: %s",
                    script->name ? script->name : "?", text);
        return NULL;
    }
    return check_reply(s, r, err);
}

const char *fxb_store_hash_get(const redisReply *kv, const char *field)
{
    if (kv == NULL || kv->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (kv->element[i]->type == REDIS_REPLY_STRING &&
            kv->element[i + 1]->type == REDIS_REPLY_STRING &&
            strcmp(kv->element[i]->str, field) == 0)
            return kv->element[i + 1]->str;
    return NULL;
}

int64_t fxb_store_hash_int(const redisReply *kv, const char *field)
{
    const char *v = fxb_store_hash_get(kv, field);
    return v != NULL ? strtoll(v, NULL, 10) : 0;
}
