/* The log format of server/log.h: one valid JSON object per line, the fields
 * of each kind of line, escaping and length caps, the level filter, and
 * whole lines under concurrency. Lines are parsed back with jansson. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/log.h"

/* --- capture ------------------------------------------------------------ */

static int g_capture_fd = -1;

static int setup(void **state)
{
    char path[] = "/tmp/fxb_test_log_XXXXXX";
    g_capture_fd = mkstemp(path);
    if (g_capture_fd < 0)
        return -1;
    unlink(path);
    fxb_log_set_fd(g_capture_fd);
    fxb_log_set_level(FXB_LOG_DEBUG);
    return 0;
}

static int teardown(void **state)
{
    fxb_log_set_fd(2);
    fxb_log_set_level(FXB_LOG_INFO);
    close(g_capture_fd);
    g_capture_fd = -1;
    return 0;
}

/* Everything logged so far (malloc'd, NUL-terminated), and clears it. */
static char *captured(size_t *len_out)
{
    off_t end = lseek(g_capture_fd, 0, SEEK_END);
    assert_true(end >= 0);
    char *text = malloc((size_t)end + 1);
    assert_non_null(text);
    assert_int_equal(pread(g_capture_fd, text, (size_t)end, 0), end);
    text[end] = '\0';
    assert_int_equal(ftruncate(g_capture_fd, 0), 0);
    assert_int_equal(lseek(g_capture_fd, 0, SEEK_SET), 0);
    if (len_out != NULL)
        *len_out = (size_t)end;
    return text;
}

/* Parses the captured output as lines of JSON; fails unless there are
 * exactly n. Returns a JSON array of the objects (caller decrefs). */
static json_t *captured_lines(size_t n)
{
    size_t len;
    char *text = captured(&len);
    json_t *lines = json_array();
    char *p = text;
    while (*p != '\0') {
        char *nl = strchr(p, '\n');
        if (nl == NULL)
            fail_msg("last line lacks a newline: %s", p);
        assert_true(nl - p + 1 <= FXB_LOG_LINE_MAX);
        json_error_t jerr;
        json_t *obj = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, &jerr);
        if (obj == NULL || !json_is_object(obj))
            fail_msg("not a JSON object (%s): %.*s", jerr.text, (int)(nl - p), p);
        json_array_append_new(lines, obj);
        p = nl + 1;
    }
    free(text);
    if (json_array_size(lines) != n)
        fail_msg("expected %zu lines, got %zu", n, json_array_size(lines));
    return lines;
}

static json_t *one_line(void)
{
    json_t *lines = captured_lines(1);
    json_t *obj = json_incref(json_array_get(lines, 0));
    json_decref(lines);
    return obj;
}

static const char *str_field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fail_msg("field %s missing or not a string", key);
    return json_string_value(v);
}

/* --- fxb_log ------------------------------------------------------------ */

static void test_log_line_is_one_json_object_with_time_level_msg(void **state)
{
    fxb_log(FXB_LOG_INFO, "listening on %s with %d workers", "127.0.0.1:50051", 4);
    json_t *obj = one_line();
    assert_int_equal(json_object_size(obj), 3);
    str_field(obj, "time");
    assert_string_equal(str_field(obj, "level"), "info");
    assert_string_equal(str_field(obj, "msg"), "listening on 127.0.0.1:50051 with 4 workers");
    json_decref(obj);
}

static void test_log_time_is_rfc3339_utc_with_milliseconds(void **state)
{
    time_t before = time(NULL);
    fxb_log(FXB_LOG_INFO, "tick");
    time_t after = time(NULL);
    json_t *obj = one_line();
    const char *t = str_field(obj, "time");
    assert_int_equal(strlen(t), 24);
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < 24; i++) {
        if (shape[i] == 'd')
            assert_true(t[i] >= '0' && t[i] <= '9');
        else
            assert_int_equal(t[i], shape[i]);
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    assert_non_null(strptime(t, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t when = timegm(&tm);
    assert_true(when >= before && when <= after);
    json_decref(obj);
}

static void test_log_level_names(void **state)
{
    fxb_log(FXB_LOG_DEBUG, "a");
    fxb_log(FXB_LOG_INFO, "b");
    fxb_log(FXB_LOG_WARN, "c");
    fxb_log(FXB_LOG_ERROR, "d");
    json_t *lines = captured_lines(4);
    const char *names[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(str_field(json_array_get(lines, i), "level"), names[i]);
    json_decref(lines);
}

static void test_log_level_filter_drops_lower_levels(void **state)
{
    fxb_log_set_level(FXB_LOG_WARN);
    assert_int_equal(fxb_log_get_level(), FXB_LOG_WARN);
    fxb_log(FXB_LOG_DEBUG, "dropped");
    fxb_log(FXB_LOG_INFO, "dropped");
    fxb_log(FXB_LOG_WARN, "kept");
    fxb_log(FXB_LOG_ERROR, "kept");
    fxb_log_rpc("r1", "/fxb.v1.X/Y", 0, NULL, 10, "ipv4:1.2.3.4:5");   /* info: dropped */
    fxb_log_rpc("r2", "/fxb.v1.X/Y", 13, "BUG", 10, "ipv4:1.2.3.4:5"); /* warn: kept */
    json_t *lines = captured_lines(3);
    assert_string_equal(str_field(json_array_get(lines, 0), "level"), "warn");
    assert_string_equal(str_field(json_array_get(lines, 1), "level"), "error");
    assert_string_equal(str_field(json_array_get(lines, 2), "request_id"), "r2");
    json_decref(lines);
}

static void test_log_escapes_quotes_and_backslashes(void **state)
{
    fxb_log(FXB_LOG_INFO, "say \"hi\" to C:\\temp\\x");
    size_t len;
    char *raw = captured(&len);
    assert_non_null(strstr(raw, "\"msg\":\"say \\\"hi\\\" to C:\\\\temp\\\\x\""));
    free(raw);
}

static void test_log_escapes_control_characters(void **state)
{
    fxb_log(FXB_LOG_INFO, "a\nb\rc\td\x01"
                          "e\x1f"
                          "f\x7f"
                          "g\x1b[31m");
    size_t len;
    char *raw = captured(&len);
    /* One line: the newline inside the message did not end it. */
    assert_int_equal(strchr(raw, '\n') - raw, (ptrdiff_t)len - 1);
    assert_non_null(strstr(raw, "a\\nb\\rc\\td\\u0001e\\u001ff\\u007fg\\u001b[31m"));
    for (size_t i = 0; i + 1 < len; i++)
        assert_true((unsigned char)raw[i] >= 0x20 && raw[i] != 0x7f);
    assert_int_equal(write(g_capture_fd, raw, len), (ssize_t)len);
    free(raw);
    json_t *obj = one_line();
    assert_string_equal(str_field(obj, "msg"), "a\nb\rc\td\x01"
                                               "e\x1f"
                                               "f\x7f"
                                               "g\x1b[31m");
    json_decref(obj);
}

static void test_log_keeps_valid_utf8(void **state)
{
    const char *text = "申报已受理 — café 🚀";
    fxb_log(FXB_LOG_INFO, "%s", text);
    json_t *obj = one_line();
    assert_string_equal(str_field(obj, "msg"), text);
    json_decref(obj);
}

static void test_log_replaces_invalid_utf8_with_replacement_character(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"a\xff"
         "b",
         "a\xEF\xBF\xBD"
         "b"},                                                                    /* never valid */
        {"\xc0\xaf", "\xEF\xBF\xBD\xEF\xBF\xBD"},                                 /* overlong '/' */
        {"\xed\xa0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},                 /* surrogate */
        {"\xf4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* > U+10FFFF */
        {"x\xe4\xb8", "x\xEF\xBF\xBD\xEF\xBF\xBD"},                               /* cut at end */
        {"\xe4\xb8"
         "a",
         "\xEF\xBF\xBD\xEF\xBF\xBD"
         "a"}, /* cut before ASCII */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fxb_log(FXB_LOG_INFO, "%s", cases[i].in);
        json_t *obj = one_line(); /* jansson rejects invalid UTF-8 */
        assert_string_equal(str_field(obj, "msg"), cases[i].out);
        json_decref(obj);
    }
}

static void test_log_caps_string_fields_at_256_bytes(void **state)
{
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fxb_log(FXB_LOG_INFO, "%s", big);
    json_t *obj = one_line();
    assert_int_equal(strlen(str_field(obj, "msg")), FXB_LOG_FIELD_MAX);
    assert_true(json_is_true(json_object_get(obj, "truncated")));
    json_decref(obj);

    /* Exactly the cap is not truncated. */
    big[FXB_LOG_FIELD_MAX] = '\0';
    fxb_log(FXB_LOG_INFO, "%s", big);
    obj = one_line();
    assert_int_equal(strlen(str_field(obj, "msg")), FXB_LOG_FIELD_MAX);
    assert_null(json_object_get(obj, "truncated"));
    json_decref(obj);
}

static void test_log_cap_counts_escaped_bytes_and_never_splits_a_character(void **state)
{
    /* 3-byte characters: 256 / 3 = 85 whole ones fit. */
    char big[3 * 200 + 1];
    for (int i = 0; i < 200; i++)
        memcpy(big + 3 * i, "\xe4\xb8\xad", 3);
    big[sizeof big - 1] = '\0';
    fxb_log(FXB_LOG_INFO, "%s", big);
    json_t *obj = one_line();
    assert_int_equal(strlen(str_field(obj, "msg")), 85 * 3);
    json_decref(obj);

    /* \u0001 is 6 bytes as written: 42 fit. */
    char ctl[200];
    memset(ctl, 1, sizeof ctl - 1);
    ctl[sizeof ctl - 1] = '\0';
    fxb_log(FXB_LOG_INFO, "%s", ctl);
    obj = one_line();
    assert_int_equal(strlen(str_field(obj, "msg")), 42);
    json_decref(obj);
}

static void test_log_preserves_errno(void **state)
{
    errno = ENOENT;
    fxb_log(FXB_LOG_INFO, "x");
    assert_int_equal(errno, ENOENT);
    errno = EAGAIN;
    fxb_log_rpc("r", "/m", 0, NULL, 1, "p");
    assert_int_equal(errno, EAGAIN);
    free(captured(NULL));
}

/* --- fxb_log_rpc -------------------------------------------------------- */

static void test_log_rpc_line_has_all_fields(void **state)
{
    fxb_log_rpc("01J9ZK3Q7Y", "/fxb.v1.FilingService/Submit", 3, "MISSING_MATERIAL", 1234,
                "ipv4:10.0.0.7:53211");
    json_t *obj = one_line();
    str_field(obj, "time");
    assert_string_equal(str_field(obj, "level"), "info");
    assert_string_equal(str_field(obj, "msg"), "rpc");
    assert_string_equal(str_field(obj, "request_id"), "01J9ZK3Q7Y");
    assert_string_equal(str_field(obj, "method"), "/fxb.v1.FilingService/Submit");
    assert_int_equal(json_integer_value(json_object_get(obj, "code")), 3);
    assert_string_equal(str_field(obj, "status"), "INVALID_ARGUMENT");
    assert_string_equal(str_field(obj, "reason"), "MISSING_MATERIAL");
    assert_int_equal(json_integer_value(json_object_get(obj, "duration_us")), 1234);
    assert_string_equal(str_field(obj, "peer"), "ipv4:10.0.0.7:53211");
    assert_int_equal(json_object_size(obj), 10);
    json_decref(obj);
}

static void test_log_rpc_omits_reason_when_none(void **state)
{
    fxb_log_rpc("r", "/m", 0, NULL, 5, "p");
    fxb_log_rpc("r", "/m", 0, "", 5, "p");
    json_t *lines = captured_lines(2);
    for (size_t i = 0; i < 2; i++) {
        json_t *obj = json_array_get(lines, i);
        assert_null(json_object_get(obj, "reason"));
        assert_string_equal(str_field(obj, "status"), "OK");
    }
    json_decref(lines);
}

static void test_log_rpc_null_strings_are_empty(void **state)
{
    fxb_log_rpc(NULL, NULL, 5, NULL, 0, NULL);
    json_t *obj = one_line();
    assert_string_equal(str_field(obj, "request_id"), "");
    assert_string_equal(str_field(obj, "method"), "");
    assert_string_equal(str_field(obj, "peer"), "");
    assert_string_equal(str_field(obj, "status"), "NOT_FOUND");
    json_decref(obj);
}

static void test_log_rpc_server_faults_are_warn_and_client_errors_info(void **state)
{
    for (int code = 0; code <= 16; code++)
        fxb_log_rpc("r", "/m", code, NULL, 1, "p");
    fxb_log_rpc("r", "/m", 99, NULL, 1, "p");
    json_t *lines = captured_lines(18);
    for (int code = 0; code <= 17; code++) {
        json_t *obj = json_array_get(lines, (size_t)code);
        bool fault = code == 2 || code == 13 || code == 14 || code == 15 || code == 17;
        assert_string_equal(str_field(obj, "level"), fault ? "warn" : "info");
    }
    assert_string_equal(str_field(json_array_get(lines, 17), "status"), "UNKNOWN");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(lines, 17), "code")), 99);
    json_decref(lines);
}

static void test_log_rpc_duration_keeps_full_64_bits(void **state)
{
    fxb_log_rpc("r", "/m", 0, NULL, UINT64_MAX, "p");
    size_t len;
    char *raw = captured(&len);
    assert_non_null(strstr(raw, "\"duration_us\":18446744073709551615,"));
    free(raw);
}

static void test_log_rpc_with_hostile_fields_stays_one_valid_line(void **state)
{
    char *junk = malloc(5000);
    assert_non_null(junk);
    for (size_t i = 0; i < 4999; i++)
        junk[i] = (char)(1 + i % 0xFF); /* every byte value but NUL */
    junk[4999] = '\0';
    fxb_log_rpc(junk, junk, 13, junk, 42, junk);
    free(junk);
    json_t *obj = one_line(); /* also checks the line fits FXB_LOG_LINE_MAX */
    assert_true(strlen(str_field(obj, "request_id")) <= FXB_LOG_FIELD_MAX);
    assert_true(strlen(str_field(obj, "peer")) <= FXB_LOG_FIELD_MAX);
    assert_true(json_is_true(json_object_get(obj, "truncated")));
    assert_int_equal(json_integer_value(json_object_get(obj, "duration_us")), 42);
    json_decref(obj);
}

/* --- concurrency -------------------------------------------------------- */

#define N_THREADS 8
#define N_PER     400

typedef struct reader {
    int fd;
    char *buf;
    size_t len;
    size_t cap;
} reader;

static void *read_all(void *arg)
{
    reader *r = arg;
    for (;;) {
        if (r->cap - r->len < 65536) {
            r->cap = r->cap * 2 + 65536;
            r->buf = realloc(r->buf, r->cap);
            if (r->buf == NULL)
                return NULL;
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
    r->buf[r->len] = '\0';
    return r;
}

static void *write_lines(void *arg)
{
    int id = (int)(intptr_t)arg;
    char pad[200];
    memset(pad, 'a' + id, sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < N_PER; i++)
        fxb_log(FXB_LOG_INFO, "%d %d %s", id, i, pad);
    return NULL;
}

static void test_log_lines_from_threads_never_interleave(void **state)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fxb_log_set_fd(p[1]);
    reader r = {p[0], NULL, 0, 0};
    pthread_t rt, wt[N_THREADS];
    assert_int_equal(pthread_create(&rt, NULL, read_all, &r), 0);
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&wt[i], NULL, write_lines, (void *)(intptr_t)i), 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(wt[i], NULL);
    fxb_log_set_fd(g_capture_fd);
    close(p[1]);
    void *ok;
    pthread_join(rt, &ok);
    close(p[0]);
    assert_non_null(ok);

    int next[N_THREADS] = {0};
    size_t count = 0;
    char *line = r.buf;
    while (*line != '\0') {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        json_error_t jerr;
        json_t *obj = json_loadb(line, (size_t)(nl - line), 0, &jerr);
        if (obj == NULL)
            fail_msg("garbled line: %.*s", (int)(nl - line), line);
        int id, seq;
        assert_int_equal(sscanf(str_field(obj, "msg"), "%d %d", &id, &seq), 2);
        assert_true(id >= 0 && id < N_THREADS);
        assert_int_equal(seq, next[id]); /* each thread's lines in order */
        next[id]++;
        json_decref(obj);
        count++;
        line = nl + 1;
    }
    assert_int_equal(count, N_THREADS * N_PER);
    free(r.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_log_line_is_one_json_object_with_time_level_msg, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_time_is_rfc3339_utc_with_milliseconds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_level_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_level_filter_drops_lower_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_escapes_quotes_and_backslashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_escapes_control_characters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_keeps_valid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_replaces_invalid_utf8_with_replacement_character,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_caps_string_fields_at_256_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_log_cap_counts_escaped_bytes_and_never_splits_a_character, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_preserves_errno, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_rpc_line_has_all_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_rpc_omits_reason_when_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_rpc_null_strings_are_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_rpc_server_faults_are_warn_and_client_errors_info,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_rpc_duration_keeps_full_64_bits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_rpc_with_hostile_fields_stays_one_valid_line,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_lines_from_threads_never_interleave, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
