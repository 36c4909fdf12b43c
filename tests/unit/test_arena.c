/* The per-call arena: bounded, aligned, reusable, and usable by protobuf-c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "fxb/v1/diag.pb-c.h"
#include "server/arena.h"

static void test_allocations_are_aligned_and_distinct(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    void *prev = NULL;
    for (size_t i = 1; i < 200; i++) {
        void *p = fxb_arena_alloc(&a, i);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        assert_ptr_not_equal(p, prev);
        memset(p, 0xAB, i);
        prev = p;
    }
    fxb_arena_free(&a);
}

static void test_zero_size_allocation_is_valid(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    assert_non_null(fxb_arena_alloc(&a, 0));
    fxb_arena_free(&a);
}

static void test_limit_refuses_allocation_past_it(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 10000);
    assert_non_null(fxb_arena_alloc(&a, 6000));
    assert_null(fxb_arena_alloc(&a, 6000));
    assert_non_null(fxb_arena_alloc(&a, 1000));
    assert_null(fxb_arena_alloc(&a, SIZE_MAX));
    fxb_arena_free(&a);
}

static void test_calloc_detects_overflow_and_zeroes(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    assert_null(fxb_arena_calloc(&a, SIZE_MAX / 2, 4));
    unsigned char *p = fxb_arena_calloc(&a, 100, 3);
    assert_non_null(p);
    for (size_t i = 0; i < 300; i++)
        assert_int_equal(p[i], 0);
    fxb_arena_free(&a);
}

static void test_large_allocation_gets_its_own_chunk(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    char *big = fxb_arena_alloc(&a, 3u * 1024u * 1024u);
    assert_non_null(big);
    memset(big, 1, 3u * 1024u * 1024u);
    fxb_arena_free(&a);
}

static void test_reset_releases_and_allows_reuse(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 64 * 1024);
    for (int round = 0; round < 100; round++) {
        for (int i = 0; i < 10; i++)
            assert_non_null(fxb_arena_alloc(&a, 5000));
        fxb_arena_reset(&a);
        assert_int_equal(a.used, 0);
    }
    fxb_arena_free(&a);
}

static void test_strings_are_copied(void **state)
{
    fxb_arena a;
    fxb_arena_init(&a, 0);
    char src[] = "新乡市 abc";
    char *d = fxb_arena_strdup(&a, src);
    src[0] = 'X';
    assert_string_equal(d, "新乡市 abc");
    assert_string_equal(fxb_arena_strndup(&a, "abcdef", 3), "abc");
    assert_string_equal(fxb_arena_printf(&a, "%d-%s", 42, "x"), "42-x");
    fxb_arena_free(&a);
}

static void test_protobuf_unpack_uses_the_arena(void **state)
{
    Fxb__V1__EchoRequest req = FXB__V1__ECHO_REQUEST__INIT;
    req.text = "你好";
    req.sleep_ms = 7;
    uint8_t buf[64];
    size_t n = fxb__v1__echo_request__pack(&req, buf);
    fxb_arena a;
    fxb_arena_init(&a, 0);
    Fxb__V1__EchoRequest *out = fxb__v1__echo_request__unpack(fxb_arena_allocator(&a), n, buf);
    assert_non_null(out);
    assert_string_equal(out->text, "你好");
    assert_int_equal(out->sleep_ms, 7);
    assert_true(a.used > 0);
    fxb_arena_free(&a); /* no per-field free: LeakSanitizer checks */
}

static void test_protobuf_unpack_fails_cleanly_at_the_limit(void **state)
{
    Fxb__V1__EchoRequest req = FXB__V1__ECHO_REQUEST__INIT;
    static uint8_t pad[20000];
    req.padding.data = pad;
    req.padding.len = sizeof pad;
    static uint8_t buf[21000];
    size_t n = fxb__v1__echo_request__pack(&req, buf);
    fxb_arena a;
    fxb_arena_init(&a, 8192);
    assert_null(fxb__v1__echo_request__unpack(fxb_arena_allocator(&a), n, buf));
    fxb_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocations_are_aligned_and_distinct),
        cmocka_unit_test(test_zero_size_allocation_is_valid),
        cmocka_unit_test(test_limit_refuses_allocation_past_it),
        cmocka_unit_test(test_calloc_detects_overflow_and_zeroes),
        cmocka_unit_test(test_large_allocation_gets_its_own_chunk),
        cmocka_unit_test(test_reset_releases_and_allows_reuse),
        cmocka_unit_test(test_strings_are_copied),
        cmocka_unit_test(test_protobuf_unpack_uses_the_arena),
        cmocka_unit_test(test_protobuf_unpack_fails_cleanly_at_the_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
