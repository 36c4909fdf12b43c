/* Configuration of fxb-server and fxb-admin: built-in defaults, then
 * --config FILE (lines KEY=VALUE using the FXB_* names, '#' comments), then
 * FXB_* environment variables, each overriding the one before. Every value is
 * validated; an invalid one stops start-up with a message naming the
 * setting (exit code 2 in main). */
#ifndef FXB_CONFIG_H
#define FXB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

#define FXB_CONFIG_STR_MAX     512
#define FXB_CONFIG_MAX_WORKERS 256
/* Longest line accepted in a config file, newline excluded. */
#define FXB_CONFIG_LINE_MAX 4096

typedef enum fxb_env { FXB_ENV_DEVELOPMENT = 0, FXB_ENV_PRODUCTION = 1 } fxb_env;
typedef enum fxb_log_level {
    FXB_LOG_DEBUG = 0,
    FXB_LOG_INFO = 1,
    FXB_LOG_WARN = 2,
    FXB_LOG_ERROR = 3,
} fxb_log_level;

typedef struct fxb_config fxb_config;
struct fxb_config {
    char listen[FXB_CONFIG_STR_MAX];         /* FXB_LISTEN host:port, default 127.0.0.1:50051 */
    char redis_url[FXB_CONFIG_STR_MAX];      /* FXB_REDIS_URL, default redis://127.0.0.1:6379/0 */
    char data_dir[FXB_CONFIG_STR_MAX];       /* FXB_DATA_DIR, default ./var */
    char metrics_listen[FXB_CONFIG_STR_MAX]; /* FXB_METRICS_LISTEN host:port or "off", default
                                                127.0.0.1:9464 */
    int workers;                             /* FXB_WORKERS 1..256, default: number of cores */
    fxb_env env;                  /* FXB_ENV development|production, default development */
    fxb_log_level log_level;      /* FXB_LOG_LEVEL debug|info|warn|error, default info */
    size_t max_recv_bytes;        /* FXB_MAX_RECV_BYTES 1024..67108864, default 4194304 */
    size_t upload_max_bytes;      /* FXB_UPLOAD_MAX_BYTES 1024..104857600, default 10485760 */
    int sweep_interval_ms;        /* FXB_SWEEP_INTERVAL_MS 100..3600000, default 30000 */
    bool benefit_engine;          /* FXB_BENEFIT_ENGINE 0|1: run the matching engine, default 1 */
    int benefit_recheck_ms;       /* FXB_BENEFIT_RECHECK_MS 1000..86400000, default 3600000 */
    int benefit_writers;          /* FXB_BENEFIT_WRITERS 1..8, default 8 */
    int max_concurrent_streams;   /* FXB_MAX_CONCURRENT_STREAMS 1..100000, default 1000 */
    int keepalive_time_ms;        /* FXB_KEEPALIVE_TIME_MS 10000..86400000, default 7200000 */
    int keepalive_timeout_ms;     /* FXB_KEEPALIVE_TIMEOUT_MS 1000..600000, default 20000 */
    int grace_ms;                 /* FXB_SHUTDOWN_GRACE_MS 0..600000, default 10000 */
    int redis_connect_timeout_ms; /* FXB_REDIS_CONNECT_TIMEOUT_MS 10..60000, default 1000 */
    int redis_command_timeout_ms; /* FXB_REDIS_COMMAND_TIMEOUT_MS 10..60000, default 2000 */
    bool diag;                    /* FXB_DIAG 0|1: serve fxb.v1.DiagService; default 1 in
                                     development, refused (error) in production */
    bool diag_set;                /* FXB_DIAG was given explicitly; when not, diag
                                     follows FXB_ENV (on in development, off in
                                     production) */
    char jwt_issuer[FXB_CONFIG_STR_MAX];   /* FXB_JWT_ISSUER */
    char jwt_audience[FXB_CONFIG_STR_MAX]; /* FXB_JWT_AUDIENCE */
    int access_ttl_s;                      /* FXB_ACCESS_TOKEN_TTL_S 60..900, default 900 */
    int token_cache_entries;               /* FXB_TOKEN_CACHE_ENTRIES, default 65536 */
    char sms[FXB_CONFIG_STR_MAX];          /* FXB_SMS auto|dev|none; dev refused in production */
    int otp_daily_phone;                   /* FXB_OTP_DAILY_PHONE, default 10 */
    int otp_daily_ip;                      /* FXB_OTP_DAILY_IP, default 50 */
    int ekyc_min_score;                    /* FXB_EKYC_MIN_SCORE 0..100, default 85 */
};

/* Fills cfg with the defaults. */
void fxb_config_defaults(fxb_config *cfg);

/* Sets one setting by its FXB_* name from text, validating it. Returns FXB_OK,
 * FXB_NOT_FOUND for an unknown name, or FXB_INVALID_ARGUMENT with a message
 * naming the setting and the accepted values. */
fxb_code fxb_config_set(fxb_config *cfg, const char *name, const char *value, fxb_err *err);

/* Reads a KEY=VALUE file. Unknown keys and bad lines are errors naming the
 * file and line. */
fxb_code fxb_config_load_file(fxb_config *cfg, const char *path, fxb_err *err);

/* Applies every known FXB_* variable found in envp (NULL = environ). */
fxb_code fxb_config_load_env(fxb_config *cfg, char **envp, fxb_err *err);

/* Cross-field checks after loading (e.g. diag refused in production). */
fxb_code fxb_config_validate(const fxb_config *cfg, fxb_err *err);

/* Splits "host:port" / "[v6]:port" into host and port (1..65535). */
fxb_code fxb_config_split_hostport(const char *hostport, char *host, size_t host_len, int *port,
                                   fxb_err *err);

/* Prints the settings with their defaults and ranges (for --help). */
void fxb_config_print_help(FILE *out);
#endif
