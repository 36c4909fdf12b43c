/* The Redis URL grammar accepted by fxb_store_url_parse: every accepted form
 * and every way a URL is refused (always BAD_REDIS_URL, never a crash). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "store/store.h"

static fxb_store_url parse_ok(const char *url)
{
    fxb_store_url u;
    fxb_err err;
    memset(&u, 0x5a, sizeof u);
    fxb_err_clear(&err);
    assert_int_equal(fxb_store_url_parse(url, &u, &err), FXB_OK);
    return u;
}

static void assert_rejected(const char *url, const char *message_part)
{
    fxb_store_url u;
    fxb_err err;
    fxb_err_clear(&err);
    assert_int_equal(fxb_store_url_parse(url, &u, &err), FXB_INVALID_ARGUMENT);
    assert_int_equal(err.code, FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "BAD_REDIS_URL");
    if (strstr(err.message, message_part) == NULL)
        fail_msg("message \"%s\" does not mention \"%s\"", err.message, message_part);
    assert_true(err.message_zh[0] != '\0');
}

static void test_url_accepts_host_port_db(void **state)
{
    fxb_store_url u = parse_ok("redis://redis.internal:6380/3");
    assert_false(u.is_unix);
    assert_string_equal(u.host, "redis.internal");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);
}

static void test_url_defaults_port_to_6379_and_db_to_0(void **state)
{
    fxb_store_url u = parse_ok("redis://127.0.0.1");
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
}

static void test_url_defaults_port_when_only_db_given(void **state)
{
    fxb_store_url u = parse_ok("redis://localhost/15");
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 15);
}

static void test_url_defaults_db_when_only_port_given(void **state)
{
    fxb_store_url u = parse_ok("redis://localhost:7000");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 0);
}

static void test_url_accepts_trailing_slash(void **state)
{
    fxb_store_url u = parse_ok("redis://localhost:7000/");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 0);
    u = parse_ok("redis://localhost:7000/2/");
    assert_int_equal(u.db, 2);
}

static void test_url_accepts_port_bounds(void **state)
{
    assert_int_equal(parse_ok("redis://h:1/0").port, 1);
    assert_int_equal(parse_ok("redis://h:65535/0").port, 65535);
}

static void test_url_accepts_db_bounds(void **state)
{
    assert_int_equal(parse_ok("redis://h:1/0").db, 0);
    assert_int_equal(parse_ok("redis://h:1/15").db, 15);
}

static void test_url_accepts_bracketed_ipv6_host(void **state)
{
    fxb_store_url u = parse_ok("redis://[::1]:6390/4");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6390);
    assert_int_equal(u.db, 4);
}

static void test_url_scheme_is_case_insensitive(void **state)
{
    assert_int_equal(parse_ok("REDIS://h:2/1").port, 2);
    assert_true(parse_ok("Unix:///tmp/r.sock").is_unix);
}

static void test_url_accepts_unix_socket(void **state)
{
    fxb_store_url u = parse_ok("unix:///var/run/redis/redis.sock");
    assert_true(u.is_unix);
    assert_string_equal(u.host, "/var/run/redis/redis.sock");
    assert_int_equal(u.db, 0);
}

static void test_url_accepts_unix_socket_with_db(void **state)
{
    fxb_store_url u = parse_ok("unix:///tmp/redis.sock?db=7");
    assert_true(u.is_unix);
    assert_string_equal(u.host, "/tmp/redis.sock");
    assert_int_equal(u.db, 7);
}

static void test_url_accepts_host_of_255_characters(void **state)
{
    char url[8 + 255 + 8];
    strcpy(url, "redis://");
    memset(url + 8, 'h', 255);
    strcpy(url + 8 + 255, ":1/0");
    assert_int_equal(strlen(parse_ok(url).host), 255);
}

static void test_url_rejects_null(void **state)
{
    fxb_store_url u;
    fxb_err err;
    assert_int_equal(fxb_store_url_parse(NULL, &u, &err), FXB_INVALID_ARGUMENT);
    assert_string_equal(err.reason, "BAD_REDIS_URL");
}

static void test_url_rejection_tolerates_null_err(void **state)
{
    fxb_store_url u;
    assert_int_equal(fxb_store_url_parse("http://h", &u, NULL), FXB_INVALID_ARGUMENT);
}

static void test_url_rejects_empty_string(void **state)
{
    assert_rejected("", "scheme");
}

static void test_url_rejects_unknown_scheme(void **state)
{
    assert_rejected("http://localhost:6379/0", "scheme");
    assert_rejected("localhost:6379", "scheme");
    assert_rejected("redis:/localhost", "scheme");
}

static void test_url_rejects_tls_scheme_with_explanation(void **state)
{
    assert_rejected("rediss://localhost:6379/0", "TLS");
}

static void test_url_rejects_empty_host(void **state)
{
    assert_rejected("redis://", "host is empty");
    assert_rejected("redis://:6379/0", "host is empty");
    assert_rejected("redis:///0", "host is empty");
    assert_rejected("redis://[]:6379", "host is empty");
}

static void test_url_rejects_host_with_space(void **state)
{
    assert_rejected("redis://local host:6379", "space");
    assert_rejected("redis://local\thost", "space");
}

static void test_url_rejects_unterminated_ipv6_host(void **state)
{
    assert_rejected("redis://[::1:6379/0", "'['");
}

static void test_url_rejects_garbage_after_ipv6_host(void **state)
{
    assert_rejected("redis://[::1]x:6379", "unexpected character");
}

static void test_url_rejects_too_long_host(void **state)
{
    char url[300 + 16];
    strcpy(url, "redis://");
    memset(url + 8, 'h', 300);
    strcpy(url + 8 + 300, ":1/0");
    assert_rejected(url, "host is too long");
}

static void test_url_rejects_credentials(void **state)
{
    assert_rejected("redis://:secret@localhost:6379/0", "credentials");
}

static void test_url_rejection_never_echoes_the_url(void **state)
{
    fxb_store_url u;
    fxb_err err;
    fxb_store_url_parse("redis://user:s3cr3t@localhost:6379/0", &u, &err);
    assert_null(strstr(err.message, "s3cr3t"));
}

static void test_url_rejects_query_on_tcp_url(void **state)
{
    assert_rejected("redis://localhost:6379/0?timeout=1", "query");
    assert_rejected("redis://localhost#frag", "query");
}

static void test_url_rejects_empty_port(void **state)
{
    assert_rejected("redis://localhost:/0", "port");
    assert_rejected("redis://localhost:", "port");
}

static void test_url_rejects_garbage_port(void **state)
{
    assert_rejected("redis://localhost:abc/0", "port");
    assert_rejected("redis://localhost:63x9/0", "port");
    assert_rejected("redis://localhost:-1/0", "port");
    assert_rejected("redis://localhost:+80/0", "port");
    assert_rejected("redis://localhost: 80/0", "port");
}

static void test_url_rejects_port_out_of_range(void **state)
{
    assert_rejected("redis://localhost:0/0", "1..65535");
    assert_rejected("redis://localhost:65536/0", "1..65535");
    assert_rejected("redis://localhost:999999/0", "1..65535");
    assert_rejected("redis://localhost:99999999999999999999/0", "1..65535");
}

static void test_url_rejects_db_out_of_range(void **state)
{
    assert_rejected("redis://localhost:6379/16", "0..15");
    assert_rejected("redis://localhost:6379/100", "0..15");
    assert_rejected("unix:///tmp/r.sock?db=16", "0..15");
}

static void test_url_rejects_garbage_db(void **state)
{
    assert_rejected("redis://localhost:6379/x", "database");
    assert_rejected("redis://localhost:6379/-1", "database");
    assert_rejected("redis://localhost:6379/1x", "database");
    assert_rejected("redis://localhost:6379//", "database");
    assert_rejected("unix:///tmp/r.sock?db=", "database");
    assert_rejected("unix:///tmp/r.sock?db=a", "database");
}

static void test_url_rejects_extra_path_segments(void **state)
{
    assert_rejected("redis://localhost:6379/1/2", "path");
}

static void test_url_rejects_unix_relative_path(void **state)
{
    assert_rejected("unix://tmp/redis.sock", "absolute");
    assert_rejected("unix://", "absolute");
}

static void test_url_rejects_unix_empty_path(void **state)
{
    assert_rejected("unix:///", "empty");
    assert_rejected("unix:///?db=1", "empty");
}

static void test_url_rejects_unix_path_longer_than_sun_path(void **state)
{
    char url[200];
    strcpy(url, "unix:///");
    memset(url + 8, 'p', 150);
    url[8 + 150] = '\0';
    assert_rejected(url, "too long");
}

static void test_url_rejects_unix_unknown_query(void **state)
{
    assert_rejected("unix:///tmp/r.sock?database=1", "db=N");
    assert_rejected("unix:///tmp/r.sock#x", "fragment");
}

static void test_url_rejects_longer_than_max(void **state)
{
    char url[FXB_STORE_URL_MAX + 64];
    strcpy(url, "redis://localhost:6379/0?");
    size_t n = strlen(url);
    memset(url + n, 'x', sizeof url - n - 1);
    url[sizeof url - 1] = '\0';
    assert_rejected(url, "longer than");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_accepts_host_port_db),
        cmocka_unit_test(test_url_defaults_port_to_6379_and_db_to_0),
        cmocka_unit_test(test_url_defaults_port_when_only_db_given),
        cmocka_unit_test(test_url_defaults_db_when_only_port_given),
        cmocka_unit_test(test_url_accepts_trailing_slash),
        cmocka_unit_test(test_url_accepts_port_bounds),
        cmocka_unit_test(test_url_accepts_db_bounds),
        cmocka_unit_test(test_url_accepts_bracketed_ipv6_host),
        cmocka_unit_test(test_url_scheme_is_case_insensitive),
        cmocka_unit_test(test_url_accepts_unix_socket),
        cmocka_unit_test(test_url_accepts_unix_socket_with_db),
        cmocka_unit_test(test_url_accepts_host_of_255_characters),
        cmocka_unit_test(test_url_rejects_null),
        cmocka_unit_test(test_url_rejection_tolerates_null_err),
        cmocka_unit_test(test_url_rejects_empty_string),
        cmocka_unit_test(test_url_rejects_unknown_scheme),
        cmocka_unit_test(test_url_rejects_tls_scheme_with_explanation),
        cmocka_unit_test(test_url_rejects_empty_host),
        cmocka_unit_test(test_url_rejects_host_with_space),
        cmocka_unit_test(test_url_rejects_unterminated_ipv6_host),
        cmocka_unit_test(test_url_rejects_garbage_after_ipv6_host),
        cmocka_unit_test(test_url_rejects_too_long_host),
        cmocka_unit_test(test_url_rejects_credentials),
        cmocka_unit_test(test_url_rejection_never_echoes_the_url),
        cmocka_unit_test(test_url_rejects_query_on_tcp_url),
        cmocka_unit_test(test_url_rejects_empty_port),
        cmocka_unit_test(test_url_rejects_garbage_port),
        cmocka_unit_test(test_url_rejects_port_out_of_range),
        cmocka_unit_test(test_url_rejects_db_out_of_range),
        cmocka_unit_test(test_url_rejects_garbage_db),
        cmocka_unit_test(test_url_rejects_extra_path_segments),
        cmocka_unit_test(test_url_rejects_unix_relative_path),
        cmocka_unit_test(test_url_rejects_unix_empty_path),
        cmocka_unit_test(test_url_rejects_unix_path_longer_than_sun_path),
        cmocka_unit_test(test_url_rejects_unix_unknown_query),
        cmocka_unit_test(test_url_rejects_longer_than_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
