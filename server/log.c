/* Structured logging: each event is one JSON object on one line, built in a
 * stack buffer and written with a single write(2), so lines from different
 * threads never interleave (a line is at most PIPE_BUF bytes) and logging
 * never allocates. Strings are escaped here; callers cannot break the JSON. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "status.h"

/* Appended when any value was cut, and therefore always kept free. */
#define TRUNCATED_TAIL ",\"truncated\":true"
#define LINE_END       "}\n"
#define RESERVE        (sizeof TRUNCATED_TAIL - 1 + sizeof LINE_END - 1)

/* Formatted fxb_log messages longer than this are cut before escaping (the
 * escaped value is capped at FXB_LOG_FIELD_MAX anyway). */
#define MSG_FORMAT_MAX 1024

static atomic_int g_level = FXB_LOG_INFO;
static atomic_int g_fd = STDERR_FILENO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void fxb_log_set_level(fxb_log_level level)
{
    if (level < FXB_LOG_DEBUG)
        level = FXB_LOG_DEBUG;
    if (level > FXB_LOG_ERROR)
        level = FXB_LOG_ERROR;
    atomic_store_explicit(&g_level, (int)level, memory_order_relaxed);
}

fxb_log_level fxb_log_get_level(void)
{
    return (fxb_log_level)atomic_load_explicit(&g_level, memory_order_relaxed);
}

void fxb_log_set_fd(int fd)
{
    atomic_store_explicit(&g_fd, fd, memory_order_relaxed);
}

static bool enabled(fxb_log_level level)
{
    return (int)level >= atomic_load_explicit(&g_level, memory_order_relaxed);
}

static const char *level_name(fxb_log_level level)
{
    if ((int)level <= FXB_LOG_DEBUG)
        return level_names[0];
    if ((int)level >= FXB_LOG_ERROR)
        return level_names[3];
    return level_names[level];
}

/* A line under construction. limit leaves RESERVE bytes for the tail, so the
 * closing of the object always fits. */
typedef struct line {
    char buf[FXB_LOG_LINE_MAX];
    size_t len;
    size_t limit;
    bool truncated;
} line;

static bool put(line *l, const char *s, size_t n)
{
    if (l->len + n > l->limit)
        return false;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return true;
}

static bool puts_(line *l, const char *s)
{
    return put(l, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at p (2..4), or 0 when the bytes there
 * are not one (overlong forms, surrogates, > U+10FFFF, cut sequences). Stops
 * at the first bad byte, so never reads past a NUL. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    }
    return n;
}

/* Writes s as the inside of a JSON string: at most FXB_LOG_FIELD_MAX bytes
 * and never past l->limit - 1 (room for the closing quote), cutting only
 * between characters. */
static void put_escaped(line *l, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    size_t written = 0;
    while (*p != '\0') {
        char esc[8];
        const char *out = esc;
        size_t n;
        size_t adv = 1;
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            n = 2;
        } else if (c < 0x20 || c == 0x7F) {
            static const char hex[] = "0123456789abcdef";
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xF];
            n = 6;
        } else if (c < 0x80) {
            esc[0] = (char)c;
            n = 1;
        } else {
            adv = utf8_len(p);
            if (adv == 0) {
                out = "\xEF\xBF\xBD"; /* U+FFFD */
                n = 3;
                adv = 1;
            } else {
                out = (const char *)p;
                n = adv;
            }
        }
        if (written + n > FXB_LOG_FIELD_MAX || l->len + n + 1 > l->limit) {
            l->truncated = true;
            return;
        }
        memcpy(l->buf + l->len, out, n);
        l->len += n;
        written += n;
        p += adv;
    }
}

/* ,"key":"value" — or nothing (and a truncation mark) if even the empty
 * value does not fit. */
static void field_str(line *l, const char *key, const char *value)
{
    size_t mark = l->len;
    if (!puts_(l, ",\"") || !puts_(l, key) || !puts_(l, "\":\"") || l->len + 1 > l->limit) {
        l->len = mark;
        l->truncated = true;
        return;
    }
    put_escaped(l, value);
    put(l, "\"", 1); /* fits: put_escaped keeps one byte free */
}

static void field_raw(line *l, const char *key, const char *text)
{
    size_t mark = l->len;
    if (!puts_(l, ",\"") || !puts_(l, key) || !puts_(l, "\":") || !puts_(l, text)) {
        l->len = mark;
        l->truncated = true;
    }
}

static void field_u64(line *l, const char *key, unsigned long long v)
{
    char num[24];
    snprintf(num, sizeof num, "%llu", v);
    field_raw(l, key, num);
}

/* Starts {"time":"...","level":"..." with the current UTC time. */
static void begin(line *l, fxb_log_level level)
{
    struct timespec ts;
    struct tm tm;
    char when[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts.tv_nsec / 1000000));
    l->len = 0;
    l->limit = sizeof l->buf - RESERVE;
    l->truncated = false;
    puts_(l, "{\"time\":\"");
    puts_(l, when);
    puts_(l, "\",\"level\":\"");
    puts_(l, level_name(level));
    puts_(l, "\"");
}

/* Closes the object and writes the line with one write(2). A failed write
 * is dropped: there is nowhere left to report it. */
static void finish(line *l)
{
    /* RESERVE guarantees room for both. */
    if (l->truncated) {
        memcpy(l->buf + l->len, TRUNCATED_TAIL, sizeof TRUNCATED_TAIL - 1);
        l->len += sizeof TRUNCATED_TAIL - 1;
    }
    memcpy(l->buf + l->len, LINE_END, sizeof LINE_END - 1);
    l->len += sizeof LINE_END - 1;

    int fd = atomic_load_explicit(&g_fd, memory_order_relaxed);
    const char *p = l->buf;
    size_t left = l->len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += n;
        left -= (size_t)n;
    }
}

void fxb_log(fxb_log_level level, const char *fmt, ...)
{
    if (!enabled(level))
        return;
    int saved_errno = errno;
    char msg[MSG_FORMAT_MAX];
    msg[0] = '\0';
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (n < 0)
            msg[0] = '\0';
    }
    line l;
    begin(&l, level);
    field_str(&l, "msg", msg);
    finish(&l);
    errno = saved_errno;
}

/* Server-side faults are warnings; client errors (bad argument, not found,
 * permission, deadline...) are the normal life of an API and stay info. */
static fxb_log_level rpc_level(int code)
{
    switch (code) {
    case FXB_UNKNOWN:
    case FXB_INTERNAL:
    case FXB_UNAVAILABLE:
    case FXB_DATA_LOSS:
        return FXB_LOG_WARN;
    default:
        return code < FXB_OK || code > FXB_UNAUTHENTICATED ? FXB_LOG_WARN : FXB_LOG_INFO;
    }
}

void fxb_log_rpc(const char *request_id, const char *method, int code, const char *reason,
                 uint64_t duration_us, const char *peer)
{
    fxb_log_level level = rpc_level(code);
    if (!enabled(level))
        return;
    int saved_errno = errno;
    char num[24];
    line l;
    begin(&l, level);
    field_str(&l, "msg", "rpc");
    field_str(&l, "request_id", request_id);
    field_str(&l, "method", method);
    snprintf(num, sizeof num, "%d", code);
    field_raw(&l, "code", num);
    field_str(&l, "status", fxb_code_name(code));
    if (reason != NULL && reason[0] != '\0')
        field_str(&l, "reason", reason);
    field_u64(&l, "duration_us", (unsigned long long)duration_us);
    field_str(&l, "peer", peer);
    finish(&l);
    errno = saved_errno;
}
