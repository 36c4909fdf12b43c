/* The configuration rules of server/config.h: defaults, ranges, strict
 * parsing, the config file format, environment precedence and the
 * cross-field checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/config.h"

/* --- helpers ------------------------------------------------------------ */

/* Writes text to a fresh temporary file; returns its path (static buffer). */
static const char *write_file(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/fxb_test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static void expect_rejected(const char *name, const char *value)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_config before = cfg;
    fxb_err err;
    fxb_err_clear(&err);
    fxb_code rc = fxb_config_set(&cfg, name, value, &err);
    if (rc != FXB_INVALID_ARGUMENT)
        fail_msg("%s=\"%s\" was accepted (rc %d)", name, value, rc);
    assert_string_equal(err.reason, "BAD_CONFIG");
    assert_non_null(strstr(err.message, name));
    /* A rejected value leaves the config as it was. */
    assert_memory_equal(&cfg, &before, sizeof cfg);
}

static void expect_accepted(const char *name, const char *value)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    fxb_err_clear(&err);
    fxb_code rc = fxb_config_set(&cfg, name, value, &err);
    if (rc != FXB_OK)
        fail_msg("%s=\"%s\" was rejected: %s", name, value, err.message);
}

/* --- defaults ----------------------------------------------------------- */

static void test_defaults_match_the_documented_values(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    assert_string_equal(cfg.listen, "127.0.0.1:50051");
    assert_string_equal(cfg.redis_url, "redis://127.0.0.1:6379/0");
    assert_string_equal(cfg.data_dir, "./var");
    assert_string_equal(cfg.metrics_listen, "127.0.0.1:9464");
    assert_int_equal(cfg.env, FXB_ENV_DEVELOPMENT);
    assert_int_equal(cfg.log_level, FXB_LOG_INFO);
    assert_int_equal(cfg.max_recv_bytes, 4194304);
    assert_int_equal(cfg.max_concurrent_streams, 1000);
    assert_int_equal(cfg.keepalive_time_ms, 7200000);
    assert_int_equal(cfg.keepalive_timeout_ms, 20000);
    assert_int_equal(cfg.grace_ms, 10000);
    assert_int_equal(cfg.redis_connect_timeout_ms, 1000);
    assert_int_equal(cfg.redis_command_timeout_ms, 2000);
    assert_true(cfg.diag);
    assert_false(cfg.diag_set);
    assert_int_equal(cfg.ekyc_min_score, 85);
}

static void test_workers_default_is_the_number_of_online_cpus_clamped(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    long expect = n < 1 ? 1 : n > FXB_CONFIG_MAX_WORKERS ? FXB_CONFIG_MAX_WORKERS : n;
    assert_int_equal(cfg.workers, expect);
}

static void test_defaults_pass_validation(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_validate(&cfg, &err), FXB_OK);
}

/* --- integers ----------------------------------------------------------- */

static void test_workers_rejects_zero(void **state)
{
    expect_rejected("FXB_WORKERS", "0");
}

static void test_workers_rejects_more_than_256(void **state)
{
    expect_rejected("FXB_WORKERS", "257");
    expect_accepted("FXB_WORKERS", "256");
    expect_accepted("FXB_WORKERS", "1");
}

static void test_integer_error_names_setting_and_range(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_set(&cfg, "FXB_WORKERS", "abc", &err), FXB_INVALID_ARGUMENT);
    assert_int_equal(err.code, FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "BAD_CONFIG");
    assert_string_equal(err.message, "FXB_WORKERS: \"abc\" is not an integer in 1..256");
}

static void test_integers_reject_trailing_garbage_and_empty(void **state)
{
    const char *bad[] = {"", " ", "4x", "4 ", " 4", "+4", "4.0", "0x10", "-", "1e3", "4\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_rejected("FXB_WORKERS", bad[i]);
}

static void test_integers_reject_overflow(void **state)
{
    expect_rejected("FXB_MAX_RECV_BYTES", "99999999999999999999999");
    expect_rejected("FXB_MAX_RECV_BYTES", "-99999999999999999999999");
    expect_rejected("FXB_KEEPALIVE_TIME_MS", "9223372036854775808");
}

static void test_integer_ranges_are_inclusive(void **state)
{
    static const struct {
        const char *name;
        const char *min, *below, *max, *above;
    } r[] = {
        {"FXB_WORKERS", "1", "0", "256", "257"},
        {"FXB_MAX_RECV_BYTES", "1024", "1023", "67108864", "67108865"},
        {"FXB_MAX_CONCURRENT_STREAMS", "1", "0", "100000", "100001"},
        {"FXB_KEEPALIVE_TIME_MS", "10000", "9999", "86400000", "86400001"},
        {"FXB_KEEPALIVE_TIMEOUT_MS", "1000", "999", "600000", "600001"},
        {"FXB_SHUTDOWN_GRACE_MS", "0", "-1", "600000", "600001"},
        {"FXB_REDIS_CONNECT_TIMEOUT_MS", "10", "9", "60000", "60001"},
        {"FXB_REDIS_COMMAND_TIMEOUT_MS", "10", "9", "60000", "60001"},
        {"FXB_EKYC_MIN_SCORE", "0", "-1", "100", "101"},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        expect_accepted(r[i].name, r[i].min);
        expect_accepted(r[i].name, r[i].max);
        expect_rejected(r[i].name, r[i].below);
        expect_rejected(r[i].name, r[i].above);
    }
}

static void test_integer_settings_land_in_their_fields(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_set(&cfg, "FXB_WORKERS", "7", &err), FXB_OK);
    assert_int_equal(fxb_config_set(&cfg, "FXB_MAX_RECV_BYTES", "2048", &err), FXB_OK);
    assert_int_equal(fxb_config_set(&cfg, "FXB_MAX_CONCURRENT_STREAMS", "12", &err), FXB_OK);
    assert_int_equal(fxb_config_set(&cfg, "FXB_KEEPALIVE_TIME_MS", "30000", &err), FXB_OK);
    assert_int_equal(fxb_config_set(&cfg, "FXB_KEEPALIVE_TIMEOUT_MS", "5000", &err), FXB_OK);
    assert_int_equal(fxb_config_set(&cfg, "FXB_SHUTDOWN_GRACE_MS", "0", &err), FXB_OK);
    assert_int_equal(fxb_config_set(&cfg, "FXB_REDIS_CONNECT_TIMEOUT_MS", "11", &err), FXB_OK);
    assert_int_equal(fxb_config_set(&cfg, "FXB_REDIS_COMMAND_TIMEOUT_MS", "12", &err), FXB_OK);
    assert_int_equal(cfg.workers, 7);
    assert_int_equal(cfg.max_recv_bytes, 2048);
    assert_int_equal(cfg.max_concurrent_streams, 12);
    assert_int_equal(cfg.keepalive_time_ms, 30000);
    assert_int_equal(cfg.keepalive_timeout_ms, 5000);
    assert_int_equal(cfg.grace_ms, 0);
    assert_int_equal(cfg.redis_connect_timeout_ms, 11);
    assert_int_equal(cfg.redis_command_timeout_ms, 12);
}

static void test_unknown_setting_is_not_found(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_set(&cfg, "FXB_NOPE", "1", &err), FXB_NOT_FOUND);
    assert_non_null(strstr(err.message, "FXB_NOPE"));
    assert_int_equal(fxb_config_set(&cfg, "fxb_workers", "1", &err), FXB_NOT_FOUND);
}

/* --- addresses ---------------------------------------------------------- */

static void test_listen_accepts_host_port_and_bracketed_ipv6(void **state)
{
    const char *good[] = {
        "127.0.0.1:1", "0.0.0.0:65535", "localhost:50051", "fxb-server.internal:443",
        "[::1]:50051", "[::]:8080",     "[2001:db8::1]:9"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        expect_accepted("FXB_LISTEN", good[i]);
        expect_accepted("FXB_METRICS_LISTEN", good[i]);
    }
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    assert_int_equal(fxb_config_set(&cfg, "FXB_LISTEN", "[::1]:7000", NULL), FXB_OK);
    assert_string_equal(cfg.listen, "[::1]:7000");
}

static void test_listen_rejects_bad_addresses(void **state)
{
    const char *bad[] = {"",           ":80",        "host",          "host:",      "host:0",
                         "host:65536", "host:-1",    "host:80x",      "::1:80",     "::1",
                         "[::1]80",    "[::1]",      "[]:80",         "[zz::1]:80", "[::1:80",
                         "a b:80",     "host:80:90", "127.0.0.1: 80", "ho\"st:80",  "off"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_rejected("FXB_LISTEN", bad[i]);
}

static void test_address_error_names_setting_and_accepted_forms(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_set(&cfg, "FXB_LISTEN", "host:0", &err), FXB_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "FXB_LISTEN: \"host:0\""));
    assert_non_null(strstr(err.message, "port 1..65535"));
    assert_non_null(strstr(err.message, "[IPv6]:port"));
}

static void test_split_hostport_returns_host_without_brackets(void **state)
{
    char host[64];
    int port = 0;
    fxb_err err;
    assert_int_equal(fxb_config_split_hostport("[::1]:9464", host, sizeof host, &port, &err),
                     FXB_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9464);
    assert_int_equal(fxb_config_split_hostport("10.1.2.3:80", host, sizeof host, &port, &err),
                     FXB_OK);
    assert_string_equal(host, "10.1.2.3");
    assert_int_equal(port, 80);
}

static void test_split_hostport_rejects_a_host_longer_than_the_buffer(void **state)
{
    char host[4];
    int port = 0;
    fxb_err err;
    assert_int_equal(fxb_config_split_hostport("abcd:80", host, sizeof host, &port, &err),
                     FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_config_split_hostport("abc:80", host, sizeof host, &port, &err), FXB_OK);
    assert_string_equal(host, "abc");
    assert_int_equal(fxb_config_split_hostport(NULL, host, sizeof host, &port, &err),
                     FXB_INVALID_ARGUMENT);
}

static void test_metrics_listen_accepts_off(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    assert_int_equal(fxb_config_set(&cfg, "FXB_METRICS_LISTEN", "off", NULL), FXB_OK);
    assert_string_equal(cfg.metrics_listen, "off");
    expect_rejected("FXB_METRICS_LISTEN", "OFF");
    expect_rejected("FXB_METRICS_LISTEN", "9464");
}

static void test_overlong_values_are_rejected(void **state)
{
    char big[FXB_CONFIG_STR_MAX + 8];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect_rejected("FXB_DATA_DIR", big);
    expect_rejected("FXB_LISTEN", big);
    memcpy(big, "redis://", 8);
    expect_rejected("FXB_REDIS_URL", big);
    /* The longest that fits is accepted. */
    big[FXB_CONFIG_STR_MAX - 1] = '\0';
    expect_accepted("FXB_DATA_DIR", big);
    expect_accepted("FXB_REDIS_URL", big);
}

/* --- other kinds -------------------------------------------------------- */

static void test_redis_url_requires_redis_or_unix_scheme(void **state)
{
    expect_accepted("FXB_REDIS_URL", "redis://10.0.0.5:6380/2");
    expect_accepted("FXB_REDIS_URL", "unix:///run/redis.sock");
    expect_rejected("FXB_REDIS_URL", "");
    expect_rejected("FXB_REDIS_URL", "redis://");
    expect_rejected("FXB_REDIS_URL", "rediss://host:6379");
    expect_rejected("FXB_REDIS_URL", "http://host:6379");
    expect_rejected("FXB_REDIS_URL", "127.0.0.1:6379");
}

static void test_redis_url_error_does_not_echo_the_value(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_set(&cfg, "FXB_REDIS_URL", "http://:s3cret@host", &err),
                     FXB_INVALID_ARGUMENT);
    assert_null(strstr(err.message, "s3cret"));
    assert_non_null(strstr(err.message, "redis://"));
    assert_non_null(strstr(err.message, "unix://"));
}

static void test_data_dir_must_be_non_empty(void **state)
{
    expect_rejected("FXB_DATA_DIR", "");
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    assert_int_equal(fxb_config_set(&cfg, "FXB_DATA_DIR", "/srv/fxb", NULL), FXB_OK);
    assert_string_equal(cfg.data_dir, "/srv/fxb");
}

static void test_env_accepts_only_development_and_production(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    assert_int_equal(fxb_config_set(&cfg, "FXB_ENV", "production", NULL), FXB_OK);
    assert_int_equal(cfg.env, FXB_ENV_PRODUCTION);
    assert_int_equal(fxb_config_set(&cfg, "FXB_ENV", "development", NULL), FXB_OK);
    assert_int_equal(cfg.env, FXB_ENV_DEVELOPMENT);
    expect_rejected("FXB_ENV", "prod");
    expect_rejected("FXB_ENV", "Production");
    expect_rejected("FXB_ENV", "");
}

static void test_log_level_accepts_only_the_four_levels(void **state)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        fxb_config cfg;
        fxb_config_defaults(&cfg);
        assert_int_equal(fxb_config_set(&cfg, "FXB_LOG_LEVEL", names[i], NULL), FXB_OK);
        assert_int_equal(cfg.log_level, i);
    }
    expect_rejected("FXB_LOG_LEVEL", "warning");
    expect_rejected("FXB_LOG_LEVEL", "INFO");
    expect_rejected("FXB_LOG_LEVEL", "1");
}

static void test_diag_accepts_0_1_true_false(void **state)
{
    static const struct {
        const char *text;
        bool value;
    } ok[] = {{"0", false}, {"1", true}, {"true", true}, {"false", false}};
    for (size_t i = 0; i < 4; i++) {
        fxb_config cfg;
        fxb_config_defaults(&cfg);
        assert_int_equal(fxb_config_set(&cfg, "FXB_DIAG", ok[i].text, NULL), FXB_OK);
        assert_int_equal(cfg.diag, ok[i].value);
        assert_true(cfg.diag_set);
    }
    expect_rejected("FXB_DIAG", "yes");
    expect_rejected("FXB_DIAG", "TRUE");
    expect_rejected("FXB_DIAG", "2");
    expect_rejected("FXB_DIAG", "");
}

static void test_diag_defaults_off_in_production(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_set(&cfg, "FXB_ENV", "production", &err), FXB_OK);
    assert_false(cfg.diag);
    assert_int_equal(fxb_config_validate(&cfg, &err), FXB_OK);
}

static void test_diag_in_production_is_refused(void **state)
{
    /* In either order: an explicit FXB_DIAG=1 is never silently dropped. */
    for (int order = 0; order < 2; order++) {
        fxb_config cfg;
        fxb_config_defaults(&cfg);
        fxb_err err;
        if (order == 0) {
            assert_int_equal(fxb_config_set(&cfg, "FXB_DIAG", "1", &err), FXB_OK);
            assert_int_equal(fxb_config_set(&cfg, "FXB_ENV", "production", &err), FXB_OK);
        } else {
            assert_int_equal(fxb_config_set(&cfg, "FXB_ENV", "production", &err), FXB_OK);
            assert_int_equal(fxb_config_set(&cfg, "FXB_DIAG", "true", &err), FXB_OK);
        }
        assert_int_equal(fxb_config_validate(&cfg, &err), FXB_INVALID_ARGUMENT);
        assert_string_equal(err.reason, "BAD_CONFIG");
        assert_string_equal(err.message,
                            "FXB_DIAG: the diagnostic service cannot run in production");
    }
}

static void test_validate_rejects_metrics_on_the_grpc_address(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_set(&cfg, "FXB_METRICS_LISTEN", cfg.listen, &err), FXB_OK);
    assert_int_equal(fxb_config_validate(&cfg, &err), FXB_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "FXB_METRICS_LISTEN"));
}

/* --- config file -------------------------------------------------------- */

static void test_file_sets_values_with_comments_blank_lines_quotes_and_whitespace(void **state)
{
    const char *path = write_file("# fxb test config\n"
                                  "\n"
                                  "   \t\n"
                                  "FXB_WORKERS=3\n"
                                  "  FXB_LISTEN =  0.0.0.0:6000  \n"
                                  "\tFXB_DATA_DIR=\"/var/lib/fxb data\"\r\n"
                                  "    # indented comment\n"
                                  "FXB_LOG_LEVEL = \"debug\"\n"
                                  "FXB_METRICS_LISTEN=off");
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    fxb_code rc = fxb_config_load_file(&cfg, path, &err);
    unlink(path);
    if (rc != FXB_OK)
        fail_msg("%s", err.message);
    assert_int_equal(cfg.workers, 3);
    assert_string_equal(cfg.listen, "0.0.0.0:6000");
    assert_string_equal(cfg.data_dir, "/var/lib/fxb data");
    assert_int_equal(cfg.log_level, FXB_LOG_DEBUG);
    assert_string_equal(cfg.metrics_listen, "off");
}

static void test_file_later_lines_override_earlier_ones(void **state)
{
    const char *path = write_file("FXB_WORKERS=3\nFXB_WORKERS=5\n");
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_load_file(&cfg, path, &err), FXB_OK);
    unlink(path);
    assert_int_equal(cfg.workers, 5);
}

static void test_file_unknown_key_names_file_and_line(void **state)
{
    const char *path = write_file("# comment\nFXB_WORKERS=2\nFXB_WROKERS=2\n");
    char expect[128];
    snprintf(expect, sizeof expect, "%s:3: unknown setting \"FXB_WROKERS\"", path);
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_load_file(&cfg, path, &err), FXB_INVALID_ARGUMENT);
    unlink(path);
    assert_string_equal(err.reason, "BAD_CONFIG");
    assert_string_equal(err.message, expect);
}

static void test_file_bad_value_names_file_line_and_setting(void **state)
{
    const char *path = write_file("FXB_LISTEN=127.0.0.1:1\n\nFXB_WORKERS=abc\n");
    char expect[160];
    snprintf(expect, sizeof expect, "%s:3: FXB_WORKERS: \"abc\" is not an integer in 1..256", path);
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_load_file(&cfg, path, &err), FXB_INVALID_ARGUMENT);
    unlink(path);
    assert_string_equal(err.message, expect);
}

static void test_file_line_without_equals_names_the_line(void **state)
{
    const char *path = write_file("FXB_WORKERS=2\nFXB_WORKERS 2\n");
    char expect[128];
    snprintf(expect, sizeof expect, "%s:2: expected KEY=VALUE", path);
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_load_file(&cfg, path, &err), FXB_INVALID_ARGUMENT);
    unlink(path);
    assert_string_equal(err.message, expect);
}

static void test_file_rejects_empty_key_and_unbalanced_quote(void **state)
{
    const char *texts[] = {"=3\n", "FXB_DATA_DIR=\"/x\n", "FXB_DATA_DIR=\"\n"};
    for (size_t i = 0; i < 3; i++) {
        const char *path = write_file(texts[i]);
        fxb_config cfg;
        fxb_config_defaults(&cfg);
        fxb_err err;
        assert_int_equal(fxb_config_load_file(&cfg, path, &err), FXB_INVALID_ARGUMENT);
        unlink(path);
        assert_non_null(strstr(err.message, ":1: "));
    }
}

static void test_file_line_of_4096_bytes_is_accepted_and_longer_is_rejected(void **state)
{
    char *text = malloc(2 * FXB_CONFIG_LINE_MAX + 64);
    assert_non_null(text);
    /* Line 2 is exactly FXB_CONFIG_LINE_MAX bytes: a comment. */
    strcpy(text, "FXB_WORKERS=2\n");
    size_t n = strlen(text);
    memset(text + n, '#', FXB_CONFIG_LINE_MAX);
    n += FXB_CONFIG_LINE_MAX;
    strcpy(text + n, "\nFXB_WORKERS=4\n");
    const char *path = write_file(text);
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_load_file(&cfg, path, &err), FXB_OK);
    unlink(path);
    assert_int_equal(cfg.workers, 4);

    /* One byte more on line 2 is an error naming line 2. */
    strcpy(text, "FXB_WORKERS=2\n");
    n = strlen(text);
    memset(text + n, '#', FXB_CONFIG_LINE_MAX + 1);
    n += FXB_CONFIG_LINE_MAX + 1;
    strcpy(text + n, "\n");
    path = write_file(text);
    free(text);
    char expect[128];
    snprintf(expect, sizeof expect, "%s:2: line longer than 4096 bytes", path);
    assert_int_equal(fxb_config_load_file(&cfg, path, &err), FXB_INVALID_ARGUMENT);
    unlink(path);
    assert_string_equal(err.message, expect);
}

static void test_file_missing_is_an_error_naming_the_path(void **state)
{
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_load_file(&cfg, "/nonexistent/fxb.conf", &err),
                     FXB_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "/nonexistent/fxb.conf"));
}

static void test_empty_file_changes_nothing(void **state)
{
    const char *path = write_file("");
    fxb_config cfg, before;
    fxb_config_defaults(&cfg);
    before = cfg;
    fxb_err err;
    assert_int_equal(fxb_config_load_file(&cfg, path, &err), FXB_OK);
    unlink(path);
    assert_memory_equal(&cfg, &before, sizeof cfg);
}

/* --- environment -------------------------------------------------------- */

static void test_env_overrides_file(void **state)
{
    const char *path = write_file("FXB_WORKERS=3\nFXB_DATA_DIR=/from/file\n");
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_load_file(&cfg, path, &err), FXB_OK);
    unlink(path);
    char *envp[] = {"PATH=/usr/bin", "FXB_WORKERS=9", NULL};
    assert_int_equal(fxb_config_load_env(&cfg, envp, &err), FXB_OK);
    assert_int_equal(cfg.workers, 9);
    assert_string_equal(cfg.data_dir, "/from/file");
}

static void test_env_ignores_unknown_fxb_variables(void **state)
{
    char *envp[] = {"FXB_TEST_REDIS_URL=redis://127.0.0.1:1/0",
                    "FXB_BUILD_DIR=/b",
                    "FXB_SOURCE_DIR=/s",
                    "FXB_SOMETHING_ELSE=x",
                    "FXB_",
                    "FXB_NOEQUALS",
                    "FXB_LOG_LEVEL=warn",
                    NULL};
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_load_env(&cfg, envp, &err), FXB_OK);
    assert_int_equal(cfg.log_level, FXB_LOG_WARN);
}

static void test_env_bad_value_is_an_error_naming_the_setting(void **state)
{
    char *envp[] = {"FXB_KEEPALIVE_TIMEOUT_MS=5s", NULL};
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_load_env(&cfg, envp, &err), FXB_INVALID_ARGUMENT);
    assert_string_equal(err.message,
                        "FXB_KEEPALIVE_TIMEOUT_MS: \"5s\" is not an integer in 1000..600000");
}

static void test_env_values_are_not_trimmed(void **state)
{
    char *envp[] = {"FXB_WORKERS= 4", NULL};
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_load_env(&cfg, envp, &err), FXB_INVALID_ARGUMENT);
}

static void test_env_null_reads_the_process_environment(void **state)
{
    setenv("FXB_SHUTDOWN_GRACE_MS", "1234", 1);
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    fxb_code rc = fxb_config_load_env(&cfg, NULL, &err);
    unsetenv("FXB_SHUTDOWN_GRACE_MS");
    assert_int_equal(rc, FXB_OK);
    assert_int_equal(cfg.grace_ms, 1234);
}

static void test_env_production_from_file_and_diag_from_env_is_refused(void **state)
{
    const char *path = write_file("FXB_ENV=production\n");
    fxb_config cfg;
    fxb_config_defaults(&cfg);
    fxb_err err;
    assert_int_equal(fxb_config_load_file(&cfg, path, &err), FXB_OK);
    unlink(path);
    char *envp[] = {"FXB_DIAG=1", NULL};
    assert_int_equal(fxb_config_load_env(&cfg, envp, &err), FXB_OK);
    assert_int_equal(fxb_config_validate(&cfg, &err), FXB_INVALID_ARGUMENT);
}

/* --- help --------------------------------------------------------------- */

static void test_help_lists_every_setting_with_default_and_range(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    fxb_config_print_help(out);
    fclose(out);
    const char *expect[] = {
        "FXB_LISTEN",
        "127.0.0.1:50051",
        "FXB_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        "FXB_DATA_DIR",
        "./var",
        "FXB_METRICS_LISTEN",
        "127.0.0.1:9464",
        "FXB_WORKERS",
        "integer 1..256",
        "FXB_ENV",
        "development|production",
        "FXB_LOG_LEVEL",
        "debug|info|warn|error",
        "FXB_MAX_RECV_BYTES",
        "integer 1024..67108864",
        "4194304",
        "FXB_MAX_CONCURRENT_STREAMS",
        "integer 1..100000",
        "FXB_KEEPALIVE_TIME_MS",
        "integer 10000..86400000",
        "7200000",
        "FXB_KEEPALIVE_TIMEOUT_MS",
        "integer 1000..600000",
        "FXB_SHUTDOWN_GRACE_MS",
        "integer 0..600000",
        "FXB_REDIS_CONNECT_TIMEOUT_MS",
        "integer 10..60000",
        "FXB_REDIS_COMMAND_TIMEOUT_MS",
        "FXB_DIAG",
        "0|1|true|false",
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        if (strstr(text, expect[i]) == NULL)
            fail_msg("help lacks %s:\n%s", expect[i], text);
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_the_documented_values),
        cmocka_unit_test(test_workers_default_is_the_number_of_online_cpus_clamped),
        cmocka_unit_test(test_defaults_pass_validation),
        cmocka_unit_test(test_workers_rejects_zero),
        cmocka_unit_test(test_workers_rejects_more_than_256),
        cmocka_unit_test(test_integer_error_names_setting_and_range),
        cmocka_unit_test(test_integers_reject_trailing_garbage_and_empty),
        cmocka_unit_test(test_integers_reject_overflow),
        cmocka_unit_test(test_integer_ranges_are_inclusive),
        cmocka_unit_test(test_integer_settings_land_in_their_fields),
        cmocka_unit_test(test_unknown_setting_is_not_found),
        cmocka_unit_test(test_listen_accepts_host_port_and_bracketed_ipv6),
        cmocka_unit_test(test_listen_rejects_bad_addresses),
        cmocka_unit_test(test_address_error_names_setting_and_accepted_forms),
        cmocka_unit_test(test_split_hostport_returns_host_without_brackets),
        cmocka_unit_test(test_split_hostport_rejects_a_host_longer_than_the_buffer),
        cmocka_unit_test(test_metrics_listen_accepts_off),
        cmocka_unit_test(test_overlong_values_are_rejected),
        cmocka_unit_test(test_redis_url_requires_redis_or_unix_scheme),
        cmocka_unit_test(test_redis_url_error_does_not_echo_the_value),
        cmocka_unit_test(test_data_dir_must_be_non_empty),
        cmocka_unit_test(test_env_accepts_only_development_and_production),
        cmocka_unit_test(test_log_level_accepts_only_the_four_levels),
        cmocka_unit_test(test_diag_accepts_0_1_true_false),
        cmocka_unit_test(test_diag_defaults_off_in_production),
        cmocka_unit_test(test_diag_in_production_is_refused),
        cmocka_unit_test(test_validate_rejects_metrics_on_the_grpc_address),
        cmocka_unit_test(test_file_sets_values_with_comments_blank_lines_quotes_and_whitespace),
        cmocka_unit_test(test_file_later_lines_override_earlier_ones),
        cmocka_unit_test(test_file_unknown_key_names_file_and_line),
        cmocka_unit_test(test_file_bad_value_names_file_line_and_setting),
        cmocka_unit_test(test_file_line_without_equals_names_the_line),
        cmocka_unit_test(test_file_rejects_empty_key_and_unbalanced_quote),
        cmocka_unit_test(test_file_line_of_4096_bytes_is_accepted_and_longer_is_rejected),
        cmocka_unit_test(test_file_missing_is_an_error_naming_the_path),
        cmocka_unit_test(test_empty_file_changes_nothing),
        cmocka_unit_test(test_env_overrides_file),
        cmocka_unit_test(test_env_ignores_unknown_fxb_variables),
        cmocka_unit_test(test_env_bad_value_is_an_error_naming_the_setting),
        cmocka_unit_test(test_env_values_are_not_trimmed),
        cmocka_unit_test(test_env_null_reads_the_process_environment),
        cmocka_unit_test(test_env_production_from_file_and_diag_from_env_is_refused),
        cmocka_unit_test(test_help_lists_every_setting_with_default_and_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
