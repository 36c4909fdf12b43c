/* Configuration: built-in defaults, then a KEY=VALUE file, then FXB_*
 * environment variables. One table describes every setting (name, kind,
 * range, accepted values, help), so parsing, error messages and --help cannot
 * drift apart. Values are parsed strictly: a typo stops start-up rather than
 * silently running with a default. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

#define BAD_CONFIG    "BAD_CONFIG"
#define BAD_CONFIG_ZH "服务器配置无效"

/* Longest excerpt of a bad value quoted back in an error message. */
#define SHOW_MAX 64
/* Longest setting name; longer FXB_* names cannot be ours. */
#define NAME_MAX_LEN 64
/* Longest host name (RFC 1035 text form). */
#define HOST_MAX 253

typedef enum kind {
    K_INT,      /* int field, min..max */
    K_SIZE,     /* size_t field, min..max */
    K_HOSTPORT, /* host:port */
    K_HOSTPORT_OR_OFF,
    K_REDIS_URL,
    K_PATH,
    K_TEXT, /* printable ASCII word: 1..255 bytes, no spaces */
    K_ENV,
    K_LEVEL,
    K_BOOL,
} kind;

typedef struct setting {
    const char *name;
    kind kind;
    size_t offset;
    long min;
    long max;
    const char *help;
} setting;

#define FIELD(f) offsetof(fxb_config, f)

static const setting settings[] = {
    {"FXB_LISTEN", K_HOSTPORT, FIELD(listen), 0, 0, "gRPC listen address"},
    {"FXB_REDIS_URL", K_REDIS_URL, FIELD(redis_url), 0, 0, "Redis server"},
    {"FXB_DATA_DIR", K_PATH, FIELD(data_dir), 0, 0, "directory for server-side files"},
    {"FXB_METRICS_LISTEN", K_HOSTPORT_OR_OFF, FIELD(metrics_listen), 0, 0,
     "Prometheus /metrics listen address"},
    {"FXB_WORKERS", K_INT, FIELD(workers), 1, FXB_CONFIG_MAX_WORKERS, "worker threads"},
    {"FXB_ENV", K_ENV, FIELD(env), 0, 0, "deployment environment"},
    {"FXB_LOG_LEVEL", K_LEVEL, FIELD(log_level), 0, 0, "minimum log level"},
    {"FXB_MAX_RECV_BYTES", K_SIZE, FIELD(max_recv_bytes), 1024, 67108864,
     "largest request message in bytes"},
    {"FXB_UPLOAD_MAX_BYTES", K_SIZE, FIELD(upload_max_bytes), 1024, 104857600,
     "largest material upload in bytes (MaterialService)"},
    {"FXB_SWEEP_INTERVAL_MS", K_INT, FIELD(sweep_interval_ms), 100, 3600000,
     "how often expired application deadlines are swept (withdraw / revoke)"},
    {"FXB_BENEFIT_ENGINE", K_BOOL, FIELD(benefit_engine), 0, 0,
     "run the benefit matching engine (one leader per Redis matches policies to profiles)"},
    {"FXB_BENEFIT_WRITERS", K_INT, FIELD(benefit_writers), 1, 8,
     "Redis connections (one thread each) a full benefit match writes its grants over"},
    {"FXB_BENEFIT_RECHECK_MS", K_INT, FIELD(benefit_recheck_ms), 1000, 86400000,
     "how often the benefit engine re-checks every published policy against its entitlements"},
    {"FXB_MAX_CONCURRENT_STREAMS", K_INT, FIELD(max_concurrent_streams), 1, 100000,
     "concurrent calls per HTTP/2 connection"},
    {"FXB_KEEPALIVE_TIME_MS", K_INT, FIELD(keepalive_time_ms), 10000, 86400000,
     "idle time before a keepalive ping, ms"},
    {"FXB_KEEPALIVE_TIMEOUT_MS", K_INT, FIELD(keepalive_timeout_ms), 1000, 600000,
     "wait for a keepalive ack before closing, ms"},
    {"FXB_SHUTDOWN_GRACE_MS", K_INT, FIELD(grace_ms), 0, 600000,
     "time in-flight calls get to finish at shutdown, ms"},
    {"FXB_REDIS_CONNECT_TIMEOUT_MS", K_INT, FIELD(redis_connect_timeout_ms), 10, 60000,
     "Redis connect timeout, ms"},
    {"FXB_REDIS_COMMAND_TIMEOUT_MS", K_INT, FIELD(redis_command_timeout_ms), 10, 60000,
     "Redis command timeout, ms"},
    {"FXB_DIAG", K_BOOL, FIELD(diag), 0, 0, "serve fxb.v1.DiagService (refused in production)"},
    {"FXB_JWT_ISSUER", K_TEXT, FIELD(jwt_issuer), 0, 0, "iss of access tokens"},
    {"FXB_JWT_AUDIENCE", K_TEXT, FIELD(jwt_audience), 0, 0, "aud of access tokens"},
    {"FXB_ACCESS_TOKEN_TTL_S", K_INT, FIELD(access_ttl_s), 60, 900,
     "access token lifetime, seconds"},
    {"FXB_TOKEN_CACHE_ENTRIES", K_INT, FIELD(token_cache_entries), 1024, 4194304,
     "verified access tokens kept in memory"},
    {"FXB_SMS", K_TEXT, FIELD(sms), 0, 0,
     "SMS sender: auto (dev in development, none in production), dev (a Redis stream the tests "
     "read; refused in production), none"},
    {"FXB_OTP_DAILY_PHONE", K_INT, FIELD(otp_daily_phone), 1, 100000,
     "one-time codes per phone number per day"},
    {"FXB_OTP_DAILY_IP", K_INT, FIELD(otp_daily_ip), 1, 100000,
     "one-time codes per client address per day"},
    {"FXB_EKYC_MIN_SCORE", K_INT, FIELD(ekyc_min_score), 0, 100,
     "face-match score (0..100) an identity verification attestation must reach"},
};

#define N_SETTINGS (sizeof settings / sizeof settings[0])

static const char *const env_names[] = {"development", "production"};
static const char *const level_names[] = {"debug", "info", "warn", "error"};

#define HOSTPORT_ACCEPTED "host:port or [IPv6]:port with port 1..65535"

static const setting *find_setting(const char *name)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    }
    return NULL;
}

/* Copies at most SHOW_MAX bytes of untrusted text for quoting in a message:
 * whole UTF-8 sequences only, control characters and quotes as '?', "..."
 * when cut. out must hold SHOW_MAX + 4 bytes. */
static const char *show(const char *in, char *out)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t n = 0;
    while (*p != '\0') {
        size_t len = 1;
        if (*p >= 0xF0)
            len = 4;
        else if (*p >= 0xE0)
            len = 3;
        else if (*p >= 0xC0)
            len = 2;
        if (n + len > SHOW_MAX) {
            memcpy(out + n, "...", 3);
            n += 3;
            break;
        }
        for (size_t i = 0; i < len; i++) {
            unsigned char c = p[i];
            if (c == '\0') {
                len = i;
                break;
            }
            out[n++] = (c < 0x20 || c == 0x7F || c == '"') ? '?' : (char)c;
        }
        p += len;
    }
    out[n] = '\0';
    return out;
}

/* Strict decimal integer: optional '-', digits only, whole string, no
 * overflow. strtol alone would accept " 4", "+4" and "4x". */
static bool parse_long(const char *s, long *out)
{
    if (!((*s >= '0' && *s <= '9') || *s == '-'))
        return false;
    errno = 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (errno == ERANGE || end == s || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

/* Parses "host:port" or "[v6]:port". On failure returns false and *why says
 * what is wrong. host (without brackets) and port are optional outputs. */
static bool hostport_parse(const char *hp, char *host, size_t host_len, int *port, const char **why)
{
    const char *h;
    size_t hlen;
    const char *rest;
    if (strlen(hp) >= FXB_CONFIG_STR_MAX) {
        *why = "too long";
        return false;
    }
    if (hp[0] == '[') {
        const char *close = strchr(hp, ']');
        if (close == NULL) {
            *why = "missing ']'";
            return false;
        }
        h = hp + 1;
        hlen = (size_t)(close - h);
        rest = close + 1;
        char v6[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof v6) {
            *why = "bad IPv6 address";
            return false;
        }
        memcpy(v6, h, hlen);
        v6[hlen] = '\0';
        if (inet_pton(AF_INET6, v6, &a6) != 1) {
            *why = "bad IPv6 address";
            return false;
        }
        if (*rest != ':') {
            *why = "missing ':port'";
            return false;
        }
    } else {
        const char *colon = strchr(hp, ':');
        if (colon == NULL) {
            *why = "missing ':port'";
            return false;
        }
        if (strchr(colon + 1, ':') != NULL) {
            *why = "IPv6 addresses must be in brackets";
            return false;
        }
        h = hp;
        hlen = (size_t)(colon - hp);
        rest = colon;
        if (hlen == 0) {
            *why = "empty host";
            return false;
        }
        if (hlen > HOST_MAX) {
            *why = "host too long";
            return false;
        }
        for (size_t i = 0; i < hlen; i++) {
            if (!host_char_ok(h[i])) {
                *why = "bad character in host";
                return false;
            }
        }
    }
    long p;
    if (!parse_long(rest + 1, &p) || p < 1 || p > 65535) {
        *why = "port must be 1..65535";
        return false;
    }
    if (host != NULL) {
        if (hlen >= host_len) {
            *why = "host too long";
            return false;
        }
        memcpy(host, h, hlen);
        host[hlen] = '\0';
    }
    if (port != NULL)
        *port = (int)p;
    return true;
}

fxb_code fxb_config_split_hostport(const char *hostport, char *host, size_t host_len, int *port,
                                   fxb_err *err)
{
    if (hostport == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                           "no address given; expected " HOSTPORT_ACCEPTED);
    const char *why = NULL;
    if (!hostport_parse(hostport, host, host_len, port, &why)) {
        char buf[SHOW_MAX + 4];
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                           "\"%s\" is not a valid address (%s); expected " HOSTPORT_ACCEPTED,
                           show(hostport, buf), why);
    }
    return FXB_OK;
}

static fxb_code set_string(fxb_config *cfg, const setting *s, const char *value)
{
    char *field = (char *)cfg + s->offset;
    size_t len = strlen(value);
    /* Callers checked the length; this keeps the copy safe on its own. */
    if (len >= FXB_CONFIG_STR_MAX)
        return FXB_INVALID_ARGUMENT;
    memcpy(field, value, len + 1);
    return FXB_OK;
}

static int word_index(const char *value, const char *const *words, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(value, words[i]) == 0)
            return (int)i;
    }
    return -1;
}

fxb_code fxb_config_set(fxb_config *cfg, const char *name, const char *value, fxb_err *err)
{
    char nbuf[SHOW_MAX + 4];
    char vbuf[SHOW_MAX + 4];
    if (cfg == NULL || name == NULL || value == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                           "fxb_config_set: NULL argument");
    const setting *s = find_setting(name);
    if (s == NULL)
        return fxb_err_set(err, FXB_NOT_FOUND, BAD_CONFIG, BAD_CONFIG_ZH, "%s: unknown setting",
                           show(name, nbuf));

    switch (s->kind) {
    case K_INT:
    case K_SIZE: {
        long v;
        if (!parse_long(value, &v) || v < s->min || v > s->max)
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                               "%s: \"%s\" is not an integer in %ld..%ld", s->name,
                               show(value, vbuf), s->min, s->max);
        if (s->kind == K_INT)
            *(int *)((char *)cfg + s->offset) = (int)v;
        else
            *(size_t *)((char *)cfg + s->offset) = (size_t)v;
        return FXB_OK;
    }
    case K_HOSTPORT_OR_OFF:
        if (strcmp(value, "off") == 0)
            return set_string(cfg, s, value);
        /* fall through */
    case K_HOSTPORT: {
        const char *why = NULL;
        if (!hostport_parse(value, NULL, 0, NULL, &why))
            return fxb_err_set(
                err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                "%s: \"%s\" is not a valid address (%s); expected %s" HOSTPORT_ACCEPTED, s->name,
                show(value, vbuf), why, s->kind == K_HOSTPORT_OR_OFF ? "\"off\" or " : "");
        return set_string(cfg, s, value);
    }
    case K_REDIS_URL: {
        /* The value is not quoted back: a URL may carry a password. */
        size_t len = strlen(value);
        bool redis = strncmp(value, "redis://", 8) == 0 && len > 8;
        bool unix_ = strncmp(value, "unix://", 7) == 0 && len > 7;
        if (len >= FXB_CONFIG_STR_MAX)
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                               "%s: longer than %d bytes", s->name, FXB_CONFIG_STR_MAX - 1);
        if (!redis && !unix_)
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                               "%s: expected redis://host[:port][/db] or unix:///path", s->name);
        return set_string(cfg, s, value);
    }
    case K_TEXT: {
        size_t n = strlen(value);
        bool ok = n > 0 && n < 256;
        for (size_t i = 0; ok && i < n; i++)
            ok = value[i] > 0x20 && value[i] < 0x7f;
        if (!ok)
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                               "%s: expected 1..255 printable ASCII characters without spaces",
                               s->name);
        return set_string(cfg, s, value);
    }
    case K_PATH:
        if (value[0] == '\0' || strlen(value) >= FXB_CONFIG_STR_MAX)
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                               "%s: expected a non-empty path of at most %d bytes", s->name,
                               FXB_CONFIG_STR_MAX - 1);
        return set_string(cfg, s, value);
    case K_ENV: {
        int i = word_index(value, env_names, 2);
        if (i < 0)
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                               "%s: \"%s\" is not one of development|production", s->name,
                               show(value, vbuf));
        cfg->env = (fxb_env)i;
        if (!cfg->diag_set)
            cfg->diag = cfg->env == FXB_ENV_DEVELOPMENT;
        return FXB_OK;
    }
    case K_LEVEL: {
        int i = word_index(value, level_names, 4);
        if (i < 0)
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                               "%s: \"%s\" is not one of debug|info|warn|error", s->name,
                               show(value, vbuf));
        cfg->log_level = (fxb_log_level)i;
        return FXB_OK;
    }
    case K_BOOL: {
        bool *field = (bool *)((char *)cfg + s->offset);
        if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0) {
            *field = true;
        } else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0) {
            *field = false;
        } else {
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                               "%s: \"%s\" is not one of 0|1|true|false", s->name,
                               show(value, vbuf));
        }
        if (s->offset == FIELD(diag))
            cfg->diag_set = true;
        return FXB_OK;
    }
    }
    return fxb_err_set(err, FXB_INTERNAL, BAD_CONFIG, BAD_CONFIG_ZH, "%s: no parser", s->name);
}

static int default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    if (n > FXB_CONFIG_MAX_WORKERS)
        return FXB_CONFIG_MAX_WORKERS;
    return (int)n;
}

void fxb_config_defaults(fxb_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->listen, "127.0.0.1:50051");
    strcpy(cfg->redis_url, "redis://127.0.0.1:6379/0");
    strcpy(cfg->data_dir, "./var");
    strcpy(cfg->metrics_listen, "127.0.0.1:9464");
    cfg->workers = default_workers();
    cfg->env = FXB_ENV_DEVELOPMENT;
    cfg->log_level = FXB_LOG_INFO;
    cfg->max_recv_bytes = 4194304;
    cfg->upload_max_bytes = 10485760;
    cfg->sweep_interval_ms = 30000;
    cfg->benefit_engine = true;
    cfg->benefit_recheck_ms = 3600000;
    cfg->benefit_writers = 8;
    cfg->max_concurrent_streams = 1000;
    cfg->keepalive_time_ms = 7200000;
    cfg->keepalive_timeout_ms = 20000;
    cfg->grace_ms = 10000;
    cfg->redis_connect_timeout_ms = 1000;
    cfg->redis_command_timeout_ms = 2000;
    cfg->diag = true;
    cfg->diag_set = false;
    strcpy(cfg->jwt_issuer, "https://fxb.xinxiang.gov.cn");
    strcpy(cfg->jwt_audience, "fxb-app");
    cfg->access_ttl_s = 900;
    cfg->token_cache_entries = 65536;
    strcpy(cfg->sms, "auto");
    cfg->otp_daily_phone = 10;
    cfg->otp_daily_ip = 50;
    cfg->ekyc_min_score = 85;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Trims in place; returns the start of the trimmed text. */
static char *trim(char *s)
{
    while (is_space(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && is_space(s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Re-labels an error from fxb_config_set with "file:line: ". */
static fxb_code at_line(fxb_err *err, fxb_code code, const char *path, unsigned line,
                        const char *msg)
{
    return fxb_err_set(err, code, BAD_CONFIG, BAD_CONFIG_ZH, "%s:%u: %s", path, line, msg);
}

static fxb_code parse_line(fxb_config *cfg, const char *path, unsigned lineno, char *line,
                           fxb_err *err)
{
    char nbuf[SHOW_MAX + 4];
    char *text = trim(line);
    if (text[0] == '\0' || text[0] == '#')
        return FXB_OK;
    char *eq = strchr(text, '=');
    if (eq == NULL)
        return at_line(err, FXB_INVALID_ARGUMENT, path, lineno, "expected KEY=VALUE");
    *eq = '\0';
    char *key = trim(text);
    char *value = trim(eq + 1);
    if (key[0] == '\0')
        return at_line(err, FXB_INVALID_ARGUMENT, path, lineno, "empty key before '='");
    size_t vlen = strlen(value);
    if (vlen > 0 && value[0] == '"') {
        if (vlen < 2 || value[vlen - 1] != '"')
            return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                               "%s:%u: %s: unbalanced double quote", path, lineno, show(key, nbuf));
        value[vlen - 1] = '\0';
        value++;
    }
    if (find_setting(key) == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                           "%s:%u: unknown setting \"%s\"", path, lineno, show(key, nbuf));
    fxb_err sub;
    fxb_code rc = fxb_config_set(cfg, key, value, &sub);
    if (rc != FXB_OK)
        return at_line(err, FXB_INVALID_ARGUMENT, path, lineno, sub.message);
    return FXB_OK;
}

fxb_code fxb_config_load_file(fxb_config *cfg, const char *path, fxb_err *err)
{
    if (cfg == NULL || path == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                           "fxb_config_load_file: NULL argument");
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                           "%s: cannot open config file: %s", path, strerror(errno));

    char line[FXB_CONFIG_LINE_MAX + 1];
    fxb_code rc = FXB_OK;
    for (unsigned lineno = 1; rc == FXB_OK; lineno++) {
        size_t n = 0;
        bool too_long = false;
        bool nul = false;
        int c;
        while ((c = getc(f)) != EOF && c != '\n') {
            if (c == '\0')
                nul = true;
            if (n < FXB_CONFIG_LINE_MAX)
                line[n++] = (char)c;
            else
                too_long = true;
        }
        if (c == EOF && ferror(f)) {
            rc = fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                             "%s:%u: read error", path, lineno);
            break;
        }
        if (c == EOF && n == 0 && !too_long)
            break;
        line[n] = '\0';
        char *start = line;
        /* A UTF-8 byte order mark, as some editors write, is not part of the key. */
        if (lineno == 1 && n >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0)
            start += 3;
        if (too_long)
            rc = fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                             "%s:%u: line longer than %d bytes", path, lineno, FXB_CONFIG_LINE_MAX);
        else if (nul)
            rc = at_line(err, FXB_INVALID_ARGUMENT, path, lineno, "NUL byte in line");
        else
            rc = parse_line(cfg, path, lineno, start, err);
        if (c == EOF)
            break;
    }
    fclose(f);
    return rc;
}

fxb_code fxb_config_load_env(fxb_config *cfg, char **envp, fxb_err *err)
{
    if (cfg == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                           "fxb_config_load_env: NULL config");
    char **e = envp != NULL ? envp : environ;
    for (; e != NULL && *e != NULL; e++) {
        /* Other FXB_* variables (FXB_TEST_*, FXB_BUILD_DIR, ...) belong to
         * tools and tests, so unknown names are skipped here. */
        if (strncmp(*e, "FXB_", 4) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        size_t klen = (size_t)(eq - *e);
        char name[NAME_MAX_LEN + 1];
        if (klen > NAME_MAX_LEN)
            continue;
        memcpy(name, *e, klen);
        name[klen] = '\0';
        if (find_setting(name) == NULL)
            continue;
        fxb_code rc = fxb_config_set(cfg, name, eq + 1, err);
        if (rc != FXB_OK)
            return rc;
    }
    return FXB_OK;
}

fxb_code fxb_config_validate(const fxb_config *cfg, fxb_err *err)
{
    if (cfg == NULL)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                           "fxb_config_validate: NULL config");
    if (cfg->diag && cfg->env == FXB_ENV_PRODUCTION)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                           "FXB_DIAG: the diagnostic service cannot run in production");
    if (strcmp(cfg->metrics_listen, cfg->listen) == 0)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                           "FXB_METRICS_LISTEN: must differ from FXB_LISTEN (%s)", cfg->listen);
    if (strcmp(cfg->sms, "auto") != 0 && strcmp(cfg->sms, "dev") != 0 &&
        strcmp(cfg->sms, "none") != 0)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                           "FXB_SMS: expected auto, dev or none");
    if (strcmp(cfg->sms, "dev") == 0 && cfg->env == FXB_ENV_PRODUCTION)
        return fxb_err_set(err, FXB_INVALID_ARGUMENT, BAD_CONFIG, BAD_CONFIG_ZH,
                           "FXB_SMS: the development SMS sink cannot run in production");
    return FXB_OK;
}

/* The accepted values of a setting, as shown by --help. */
static void accepted(const setting *s, char *buf, size_t len)
{
    switch (s->kind) {
    case K_INT:
    case K_SIZE:
        snprintf(buf, len, "integer %ld..%ld", s->min, s->max);
        return;
    case K_HOSTPORT:
        snprintf(buf, len, "%s", HOSTPORT_ACCEPTED);
        return;
    case K_HOSTPORT_OR_OFF:
        snprintf(buf, len, "\"off\" or %s", HOSTPORT_ACCEPTED);
        return;
    case K_REDIS_URL:
        snprintf(buf, len, "redis://host[:port][/db] or unix:///path");
        return;
    case K_PATH:
        snprintf(buf, len, "non-empty path, at most %d bytes", FXB_CONFIG_STR_MAX - 1);
        return;
    case K_TEXT:
        snprintf(buf, len, "1..255 printable ASCII characters, no spaces");
        return;
    case K_ENV:
        snprintf(buf, len, "development|production");
        return;
    case K_LEVEL:
        snprintf(buf, len, "debug|info|warn|error");
        return;
    case K_BOOL:
        snprintf(buf, len, "0|1|true|false");
        return;
    }
    snprintf(buf, len, "?");
}

/* The default of a setting, as shown by --help. */
static void default_text(const setting *s, const fxb_config *d, char *buf, size_t len)
{
    const char *field = (const char *)d + s->offset;
    switch (s->kind) {
    case K_INT:
        if (strcmp(s->name, "FXB_WORKERS") == 0)
            snprintf(buf, len, "number of online CPUs (%d here)", *(const int *)field);
        else
            snprintf(buf, len, "%d", *(const int *)field);
        return;
    case K_SIZE:
        snprintf(buf, len, "%zu", *(const size_t *)field);
        return;
    case K_HOSTPORT:
    case K_HOSTPORT_OR_OFF:
    case K_REDIS_URL:
    case K_PATH:
    case K_TEXT:
        snprintf(buf, len, "%s", field);
        return;
    case K_ENV:
        snprintf(buf, len, "%s", env_names[d->env]);
        return;
    case K_LEVEL:
        snprintf(buf, len, "%s", level_names[d->log_level]);
        return;
    case K_BOOL:
        if (s->offset == FIELD(diag))
            snprintf(buf, len, "1 in development, 0 in production");
        else
            snprintf(buf, len, "%d", *(const bool *)field ? 1 : 0);
        return;
    }
    snprintf(buf, len, "?");
}

void fxb_config_print_help(FILE *out)
{
    fxb_config d;
    fxb_config_defaults(&d);
    fprintf(out, "Settings: defaults, then --config FILE (KEY=VALUE lines, '#' comments),\n"
                 "then environment variables of the same names.\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char acc[160];
        char def[FXB_CONFIG_STR_MAX + 64];
        accepted(&settings[i], acc, sizeof acc);
        default_text(&settings[i], &d, def, sizeof def);
        fprintf(out, "  %-30s %s\n  %-30s   default: %s\n  %-30s   accepted: %s\n",
                settings[i].name, settings[i].help, "", def, "", acc);
    }
}
