/* Personal data at rest (PIPL art. 51, GB/T 35273 §6.3): what the field
 * encryption, the blind index, the key directory and the masks promise. Each
 * test runs against its own temporary key directory. Test values are
 * fictitious. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/crypto.h"

#define PHONE "13800138000"
#define OWNER "u42"

typedef struct fixture {
    char root[64];
    char dir[128];
    fxb_crypto *c;
    fxb_arena arena;
} fixture;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->root, sizeof f->root, "/tmp/fxb_crypto_XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof f->dir, "%s/" FXB_CRYPTO_KEY_SUBDIR, f->root);
    fxb_err err;
    fxb_err_clear(&err);
    f->c = fxb_crypto_load(f->dir, true, &err);
    assert_non_null(f->c);
    fxb_arena_init(&f->arena, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    fxb_crypto_free(f->c);
    fxb_arena_free(&f->arena);
    nftw(f->root, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Loads f->dir again (after files were changed), replacing f->c. */
static void reload(fixture *f)
{
    fxb_err err;
    fxb_crypto_free(f->c);
    f->c = fxb_crypto_load(f->dir, false, &err);
    assert_non_null(f->c);
}

static char *seal(fixture *f, const char *label, const char *owner, const char *pt)
{
    char *out = NULL;
    fxb_err err;
    fxb_code rc =
        fxb_crypto_seal(f->c, label, owner, (const uint8_t *)pt, strlen(pt), &f->arena, &out, &err);
    /* the arena's copy, not the local that received it (GCC's
     * dangling-pointer check at -O2 cannot tell them apart through the
     * assertion macros) */
    char *sealed = rc == FXB_OK ? out : NULL;
    assert_int_equal(rc, FXB_OK);
    assert_non_null(sealed);
    return sealed;
}

/* Opens and expects failure with code/reason; checks no plaintext escapes. */
static void assert_open_fails(fixture *f, const char *label, const char *owner, const char *sealed,
                              fxb_code code, const char *reason)
{
    uint8_t *pt = (uint8_t *)"sentinel";
    size_t len = 99;
    fxb_err err;
    fxb_err_clear(&err);
    assert_int_equal(fxb_crypto_open(f->c, label, owner, sealed, &f->arena, &pt, &len, &err), code);
    assert_int_equal(err.code, code);
    if (reason != NULL)
        assert_string_equal(err.reason, reason);
    assert_null(pt);
    assert_int_equal(len, 0);
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void path_in(const fixture *f, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", f->dir, name);
}

/* ---- encryption ---------------------------------------------------------- */

static void test_sealed_value_opens_to_the_same_bytes(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    uint8_t *pt = NULL;
    size_t len = 0;
    fxb_err err;
    assert_int_equal(fxb_crypto_open(f->c, "phone", OWNER, s, &f->arena, &pt, &len, &err), FXB_OK);
    assert_int_equal(len, strlen(PHONE));
    assert_memory_equal(pt, PHONE, len);
    assert_int_equal(pt[len], '\0');
}

static void test_binary_empty_and_maximal_plaintexts_round_trip(void **state)
{
    fixture *f = *state;
    static uint8_t big[FXB_CRYPTO_PLAINTEXT_MAX];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7);
    size_t sizes[] = {0, 1, 2, 3, 17, sizeof big};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        char *s = NULL;
        fxb_err err;
        assert_int_equal(fxb_crypto_seal(f->c, "blob", OWNER, big, sizes[k], &f->arena, &s, &err),
                         FXB_OK);
        assert_true(strlen(s) <= FXB_CRYPTO_SEALED_MAX);
        uint8_t *pt = NULL;
        size_t len = 1;
        assert_int_equal(fxb_crypto_open(f->c, "blob", OWNER, s, &f->arena, &pt, &len, &err),
                         FXB_OK);
        assert_int_equal(len, sizes[k]);
        if (len > 0)
            assert_memory_equal(pt, big, len);
    }
    char *s = NULL;
    fxb_err err;
    assert_int_equal(fxb_crypto_seal(f->c, "blob", OWNER, NULL, 0, &f->arena, &s, &err), FXB_OK);
}

static void test_plaintext_over_4096_bytes_is_refused(void **state)
{
    fixture *f = *state;
    static uint8_t big[FXB_CRYPTO_PLAINTEXT_MAX + 1];
    char *s = (char *)"x";
    fxb_err err;
    assert_int_equal(fxb_crypto_seal(f->c, "blob", OWNER, big, sizeof big, &f->arena, &s, &err),
                     FXB_INVALID_ARGUMENT);
    assert_null(s);
}

static void test_sealed_string_has_the_v1_kid_base64url_format(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "v1.%s.", fxb_crypto_active_kid(f->c));
    assert_int_equal(strncmp(s, prefix, strlen(prefix)), 0);
    const char *b = s + strlen(prefix);
    /* nonce 12 + 11 bytes + tag 16 = 39 bytes = 52 base64url characters. */
    assert_int_equal(strlen(b), 52);
    assert_int_equal(strspn(b, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     strlen(b));
}

static void test_sealed_string_never_contains_the_plaintext(void **state)
{
    fixture *f = *state;
    const char *values[] = {PHONE, "410702199001011234", "ZHANGSAN", "张三"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char *s = seal(f, "phone", OWNER, values[i]);
        assert_null(strstr(s, values[i]));
        /* nor a recognisable piece of it */
        char piece[5];
        memcpy(piece, values[i], 4);
        piece[4] = '\0';
        assert_null(strstr(s, piece));
    }
}

static void test_two_seals_of_the_same_value_differ(void **state)
{
    fixture *f = *state;
    char *a = seal(f, "phone", OWNER, PHONE);
    char *b = seal(f, "phone", OWNER, PHONE);
    assert_string_not_equal(a, b);
    /* the nonces (first 16 base64 characters after the kid) differ */
    const char *na = strrchr(a, '.') + 1, *nb = strrchr(b, '.') + 1;
    assert_int_not_equal(memcmp(na, nb, 16), 0);
}

static void test_value_moved_to_another_field_fails_with_decrypt_failed(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    assert_open_fails(f, "id_number", OWNER, s, FXB_DATA_LOSS, FXB_CRYPTO_DECRYPT_FAILED);
}

static void test_value_moved_to_another_owner_fails_with_decrypt_failed(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    assert_open_fails(f, "phone", "u43", s, FXB_DATA_LOSS, FXB_CRYPTO_DECRYPT_FAILED);
    assert_open_fails(f, "phone", "u4", s, FXB_DATA_LOSS, FXB_CRYPTO_DECRYPT_FAILED);
}

static void test_labels_and_owners_that_could_blur_the_aad_are_refused(void **state)
{
    fixture *f = *state;
    const char *bad_labels[] = {NULL,    "",          "a|b",
                                "Phone", "has space", "a23456789012345678901234567890123"};
    const char *bad_owners[] = {NULL, "", "u|1", "u 1", "用户"};
    char *s = NULL;
    fxb_err err;
    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++)
        assert_int_equal(fxb_crypto_seal(f->c, bad_labels[i], OWNER, (const uint8_t *)"x", 1,
                                         &f->arena, &s, &err),
                         FXB_INVALID_ARGUMENT);
    for (size_t i = 0; i < sizeof bad_owners / sizeof bad_owners[0]; i++)
        assert_int_equal(fxb_crypto_seal(f->c, "phone", bad_owners[i], (const uint8_t *)"x", 1,
                                         &f->arena, &s, &err),
                         FXB_INVALID_ARGUMENT);
    char owner[FXB_CRYPTO_OWNER_MAX + 2];
    memset(owner, 'a', sizeof owner - 1);
    owner[sizeof owner - 1] = '\0';
    assert_int_equal(
        fxb_crypto_seal(f->c, "phone", owner, (const uint8_t *)"x", 1, &f->arena, &s, &err),
        FXB_INVALID_ARGUMENT);
    owner[FXB_CRYPTO_OWNER_MAX] = '\0';
    s = seal(f, "phone", owner, "x");
    assert_non_null(s);
}

/* Replaces s[i] with ch in a copy. */
static char *with_char(fixture *f, const char *s, size_t i, char ch)
{
    char *t = fxb_arena_strdup(&f->arena, s);
    assert_non_null(t);
    t[i] = ch;
    return t;
}

static void test_tampered_tag_fails_with_decrypt_failed(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    size_t last = strlen(s) - 1; /* inside the tag */
    /* 39 bytes: the last character carries 6 full bits, so any change of it
     * changes the tag. */
    assert_open_fails(f, "phone", OWNER, with_char(f, s, last, s[last] == 'A' ? 'B' : 'A'),
                      FXB_DATA_LOSS, FXB_CRYPTO_DECRYPT_FAILED);
}

static void test_tampered_nonce_fails_with_decrypt_failed(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    size_t first = (size_t)(strrchr(s, '.') - s) + 1;
    assert_open_fails(f, "phone", OWNER, with_char(f, s, first, s[first] == 'A' ? 'B' : 'A'),
                      FXB_DATA_LOSS, FXB_CRYPTO_DECRYPT_FAILED);
}

static void test_every_single_character_change_fails_and_never_crashes(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    const char repl[] = {'A', 'z', '0', '-', '_', '.', '=', '+', '/', ' ', '\x80', 'v', '1'};
    for (size_t i = 0; s[i] != '\0'; i++) {
        for (size_t r = 0; r < sizeof repl; r++) {
            if (repl[r] == s[i])
                continue;
            assert_open_fails(f, "phone", OWNER, with_char(f, s, i, repl[r]), FXB_DATA_LOSS, NULL);
        }
        fxb_arena_reset(&f->arena);
        s = seal(f, "phone", OWNER, PHONE);
    }
}

static void test_unknown_kid_fails_with_key_unknown(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    const char *body = strrchr(s, '.');
    char *t = fxb_arena_printf(&f->arena, "v1.nosuchkey%s", body);
    assert_open_fails(f, "phone", OWNER, t, FXB_DATA_LOSS, FXB_CRYPTO_KEY_UNKNOWN);
}

static void test_kid_swapped_to_another_loaded_key_fails_with_decrypt_failed(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    char old[FXB_CRYPTO_KID_MAX + 1];
    snprintf(old, sizeof old, "%s", fxb_crypto_active_kid(f->c));
    char kid[FXB_CRYPTO_KID_MAX + 1];
    fxb_err err;
    assert_int_equal(fxb_crypto_generate_key(f->dir, kid, &err), FXB_OK);
    reload(f);
    char *t = fxb_arena_printf(&f->arena, "v1.%s%s", kid, strrchr(s, '.'));
    assert_open_fails(f, "phone", OWNER, t, FXB_DATA_LOSS, FXB_CRYPTO_DECRYPT_FAILED);
}

static void test_bad_version_prefix_is_malformed(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    const char *prefixes[] = {"v2", "V1", "v0", "", "v", "v11", "x1"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        char *t = fxb_arena_printf(&f->arena, "%s%s", prefixes[i], s + 2);
        assert_open_fails(f, "phone", OWNER, t, FXB_DATA_LOSS, FXB_CRYPTO_SEALED_MALFORMED);
    }
}

static void test_base64_garbage_is_malformed(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    const char *kid = fxb_crypto_active_kid(f->c);
    const char *body = strrchr(s, '.') + 1;
    const char *garbage[] = {
        "!!!!",
        "AAAA====",
        "A",
        "",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",   /* well-formed, not ours */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 53: len % 4 == 1 */
        "ab+/",
        "ab cd",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        char *t = fxb_arena_printf(&f->arena, "v1.%s.%s", kid, garbage[i]);
        assert_open_fails(f, "phone", OWNER, t, FXB_DATA_LOSS, NULL);
    }
    /* padding appended to a valid body */
    assert_open_fails(f, "phone", OWNER, fxb_arena_printf(&f->arena, "%s=", s), FXB_DATA_LOSS,
                      FXB_CRYPTO_SEALED_MALFORMED);
    /* a second separator, missing kid, bad kid characters */
    const char *shapes[] = {"v1..", "v1.", "v1.KID.", "v1.a.b.", "v1.index."};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char *t = fxb_arena_printf(&f->arena, "%s%s", shapes[i], body);
        assert_open_fails(f, "phone", OWNER, t, FXB_DATA_LOSS, NULL);
    }
    assert_open_fails(f, "phone", OWNER, NULL, FXB_DATA_LOSS, FXB_CRYPTO_SEALED_MALFORMED);
    assert_open_fails(f, "phone", OWNER, "", FXB_DATA_LOSS, FXB_CRYPTO_SEALED_MALFORMED);
}

static void test_non_canonical_base64_spelling_is_refused(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    /* 39-byte body = 52 chars, no spare bits; 54 chars carry 40 bytes and 4
     * spare bits, and 'B' sets one of them. */
    char *t = fxb_arena_printf(&f->arena, "%sAB", s);
    assert_open_fails(f, "phone", OWNER, t, FXB_DATA_LOSS, FXB_CRYPTO_SEALED_MALFORMED);
}

static void test_every_truncation_fails_and_never_crashes(void **state)
{
    fixture *f = *state;
    char *s = seal(f, "phone", OWNER, PHONE);
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        char *t = fxb_arena_strndup(&f->arena, s, i);
        assert_open_fails(f, "phone", OWNER, t, FXB_DATA_LOSS, NULL);
    }
}

static void test_oversized_sealed_input_is_refused_before_decoding(void **state)
{
    fixture *f = *state;
    size_t n = FXB_CRYPTO_SEALED_MAX + 100;
    char *t = fxb_arena_alloc(&f->arena, n + 1);
    int k = snprintf(t, n + 1, "v1.%s.", fxb_crypto_active_kid(f->c));
    memset(t + k, 'A', n - (size_t)k);
    t[n] = '\0';
    assert_open_fails(f, "phone", OWNER, t, FXB_DATA_LOSS, FXB_CRYPTO_SEALED_MALFORMED);
}

/* ---- rotation ------------------------------------------------------------ */

static void test_rotation_old_key_opens_new_seals_use_new_key(void **state)
{
    fixture *f = *state;
    char old_kid[FXB_CRYPTO_KID_MAX + 1];
    snprintf(old_kid, sizeof old_kid, "%s", fxb_crypto_active_kid(f->c));
    char *old = seal(f, "phone", OWNER, PHONE);
    assert_false(fxb_crypto_needs_rekey(f->c, old));

    char kid[FXB_CRYPTO_KID_MAX + 1] = "";
    fxb_err err;
    assert_int_equal(fxb_crypto_generate_key(f->dir, kid, &err), FXB_OK);
    assert_string_not_equal(kid, old_kid);
    reload(f);
    assert_string_equal(fxb_crypto_active_kid(f->c), kid);

    uint8_t *pt = NULL;
    size_t len = 0;
    assert_int_equal(fxb_crypto_open(f->c, "phone", OWNER, old, &f->arena, &pt, &len, &err),
                     FXB_OK);
    assert_memory_equal(pt, PHONE, len);

    char *fresh = seal(f, "phone", OWNER, PHONE);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "v1.%s.", kid);
    assert_int_equal(strncmp(fresh, prefix, strlen(prefix)), 0);

    assert_true(fxb_crypto_needs_rekey(f->c, old));
    assert_false(fxb_crypto_needs_rekey(f->c, fresh));
    assert_false(fxb_crypto_needs_rekey(f->c, "garbage"));
    assert_false(fxb_crypto_needs_rekey(f->c, NULL));
}

static void test_active_file_selects_the_sealing_key(void **state)
{
    fixture *f = *state;
    char first[FXB_CRYPTO_KID_MAX + 1], kid[FXB_CRYPTO_KID_MAX + 1];
    snprintf(first, sizeof first, "%s", fxb_crypto_active_kid(f->c));
    fxb_err err;
    assert_int_equal(fxb_crypto_generate_key(f->dir, kid, &err), FXB_OK);
    char path[256];
    path_in(f, "active", path, sizeof path);
    char line[32];
    snprintf(line, sizeof line, "%s\n", first);
    write_file(path, line, strlen(line), 0600);
    reload(f);
    assert_string_equal(fxb_crypto_active_kid(f->c), first);
}

static void test_without_active_file_the_greatest_kid_seals(void **state)
{
    fixture *f = *state;
    char path[256];
    uint8_t key[FXB_CRYPTO_KEY_LEN] = {1};
    path_in(f, "9.key", path, sizeof path);
    write_file(path, key, sizeof key, 0600);
    path_in(f, "10.key", path, sizeof path);
    write_file(path, key, sizeof key, 0600);
    path_in(f, "active", path, sizeof path);
    assert_int_equal(unlink(path), 0);
    reload(f);
    /* the generated kid (k + 14 digits) is longer than "10" */
    assert_int_equal(fxb_crypto_active_kid(f->c)[0], 'k');
    /* remove it: among "9" and "10", 10 is greater */
    char gen[FXB_CRYPTO_KID_MAX + 16];
    snprintf(gen, sizeof gen, "%s.key", fxb_crypto_active_kid(f->c));
    path_in(f, gen, path, sizeof path);
    assert_int_equal(unlink(path), 0);
    reload(f);
    assert_string_equal(fxb_crypto_active_kid(f->c), "10");
}

static void test_active_naming_a_missing_key_is_refused(void **state)
{
    fixture *f = *state;
    char path[256];
    path_in(f, "active", path, sizeof path);
    write_file(path, "nosuch\n", 7, 0600);
    fxb_err err;
    assert_null(fxb_crypto_load(f->dir, false, &err));
    assert_int_equal(err.code, FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, FXB_CRYPTO_KEY_FILE_INVALID);
}

static void test_a_seventeenth_key_is_refused(void **state)
{
    fixture *f = *state;
    fxb_err err;
    char kid[FXB_CRYPTO_KID_MAX + 1];
    for (unsigned i = 1; i < FXB_CRYPTO_KEYS_MAX; i++)
        assert_int_equal(fxb_crypto_generate_key(f->dir, kid, &err), FXB_OK);
    reload(f); /* 16 keys load */
    assert_int_equal(fxb_crypto_generate_key(f->dir, kid, &err), FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, FXB_CRYPTO_KEYS_TOO_MANY);

    char path[256];
    uint8_t key[FXB_CRYPTO_KEY_LEN] = {0};
    path_in(f, "zz.key", path, sizeof path);
    write_file(path, key, sizeof key, 0600);
    assert_null(fxb_crypto_load(f->dir, false, &err));
    assert_string_equal(err.reason, FXB_CRYPTO_KEYS_TOO_MANY);
}

/* ---- blind index --------------------------------------------------------- */

static void test_index_is_deterministic_128_bit_hex(void **state)
{
    fixture *f = *state;
    char a[FXB_CRYPTO_INDEX_HEX_LEN + 1], b[FXB_CRYPTO_INDEX_HEX_LEN + 1];
    assert_int_equal(fxb_crypto_index(f->c, "phone", PHONE, a, NULL), FXB_OK);
    assert_int_equal(fxb_crypto_index(f->c, "phone", PHONE, b, NULL), FXB_OK);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_null(strstr(a, PHONE));
    /* the same after a reload */
    reload(f);
    assert_int_equal(fxb_crypto_index(f->c, "phone", PHONE, b, NULL), FXB_OK);
    assert_string_equal(a, b);
}

static void test_index_separates_labels_and_values(void **state)
{
    fixture *f = *state;
    char a[33], b[33], c[33], d[33];
    assert_int_equal(fxb_crypto_index(f->c, "phone", PHONE, a, NULL), FXB_OK);
    assert_int_equal(fxb_crypto_index(f->c, "id_number", PHONE, b, NULL), FXB_OK);
    assert_int_equal(fxb_crypto_index(f->c, "phone", "13800138001", c, NULL), FXB_OK);
    assert_string_not_equal(a, b);
    assert_string_not_equal(a, c);
    /* label || 0x00 || value: moving a byte across the boundary changes it */
    assert_int_equal(fxb_crypto_index(f->c, "ab", "c", c, NULL), FXB_OK);
    assert_int_equal(fxb_crypto_index(f->c, "a", "bc", d, NULL), FXB_OK);
    assert_string_not_equal(c, d);
}

static void test_index_survives_data_key_rotation(void **state)
{
    fixture *f = *state;
    char a[33], b[33];
    assert_int_equal(fxb_crypto_index(f->c, "phone", PHONE, a, NULL), FXB_OK);
    char kid[FXB_CRYPTO_KID_MAX + 1];
    fxb_err err;
    assert_int_equal(fxb_crypto_generate_key(f->dir, kid, &err), FXB_OK);
    reload(f);
    assert_int_equal(fxb_crypto_index(f->c, "phone", PHONE, b, NULL), FXB_OK);
    assert_string_equal(a, b);
}

static void test_index_depends_on_the_index_key(void **state)
{
    fixture *f = *state;
    char other[256];
    snprintf(other, sizeof other, "%s/other", f->root);
    fxb_err err;
    fxb_crypto *c2 = fxb_crypto_load(other, true, &err);
    assert_non_null(c2);
    char a[33], b[33];
    assert_int_equal(fxb_crypto_index(f->c, "phone", PHONE, a, NULL), FXB_OK);
    assert_int_equal(fxb_crypto_index(c2, "phone", PHONE, b, NULL), FXB_OK);
    assert_string_not_equal(a, b);
    /* and a value sealed under one key set does not open under another */
    char *s = seal(f, "phone", OWNER, PHONE);
    uint8_t *pt = NULL;
    size_t len = 0;
    fxb_code code = fxb_crypto_open(c2, "phone", OWNER, s, &f->arena, &pt, &len, &err);
    assert_int_equal(code, FXB_DATA_LOSS);
    fxb_crypto_free(c2);
}

static void test_index_refuses_bad_labels(void **state)
{
    fixture *f = *state;
    char a[33] = "x";
    fxb_err err;
    assert_int_equal(fxb_crypto_index(f->c, "", PHONE, a, &err), FXB_INVALID_ARGUMENT);
    assert_string_equal(a, "");
    assert_string_equal(err.reason, FXB_CRYPTO_BAD_ARGUMENT);
    assert_int_equal(fxb_crypto_index(f->c, "Phone", PHONE, a, &err), FXB_INVALID_ARGUMENT);
    assert_int_equal(fxb_crypto_index(f->c, "phone", NULL, a, &err), FXB_INVALID_ARGUMENT);
    static char big[FXB_CRYPTO_PLAINTEXT_MAX + 2];
    memset(big, '1', sizeof big - 1);
    assert_int_equal(fxb_crypto_index(f->c, "phone", big, a, &err), FXB_INVALID_ARGUMENT);
    assert_null(strstr(err.message, "1111"));
}

/* ---- key files ----------------------------------------------------------- */

static void test_created_keys_are_private_32_byte_files(void **state)
{
    fixture *f = *state;
    struct stat st;
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    char name[64], path[256];
    snprintf(name, sizeof name, "%s.key", fxb_crypto_active_kid(f->c));
    const char *files[] = {name, "index.key"};
    for (size_t i = 0; i < 2; i++) {
        path_in(f, files[i], path, sizeof path);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(st.st_size, FXB_CRYPTO_KEY_LEN);
    }
    path_in(f, "active", path, sizeof path);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_missing_directory_without_create_is_refused(void **state)
{
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/nowhere", f->root);
    fxb_err err;
    assert_null(fxb_crypto_load(path, false, &err));
    assert_int_equal(err.code, FXB_FAILED_PRECONDITION);
    assert_string_equal(err.reason, FXB_CRYPTO_KEYS_MISSING);
    assert_int_equal(fxb_crypto_generate_key(path, NULL, &err), FXB_FAILED_PRECONDITION);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
}

static void test_loading_again_with_create_keeps_existing_keys(void **state)
{
    fixture *f = *state;
    char a[33], b[33];
    char *s = seal(f, "phone", OWNER, PHONE);
    assert_int_equal(fxb_crypto_index(f->c, "phone", PHONE, a, NULL), FXB_OK);
    fxb_err err;
    fxb_crypto *c2 = fxb_crypto_load(f->dir, true, &err);
    assert_non_null(c2);
    assert_string_equal(fxb_crypto_active_kid(c2), fxb_crypto_active_kid(f->c));
    assert_int_equal(fxb_crypto_index(c2, "phone", PHONE, b, NULL), FXB_OK);
    assert_string_equal(a, b);
    uint8_t *pt;
    size_t len;
    assert_int_equal(fxb_crypto_open(c2, "phone", OWNER, s, &f->arena, &pt, &len, &err), FXB_OK);
    fxb_crypto_free(c2);
}

static void test_key_file_of_wrong_size_is_refused_naming_the_file(void **state)
{
    fixture *f = *state;
    const size_t sizes[] = {0, 16, 31, 33, 64};
    char path[256];
    path_in(f, "bad.key", path, sizeof path);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t key[64];
        memset(key, 'Q', sizeof key);
        write_file(path, key, sizes[i], 0600);
        fxb_err err;
        assert_null(fxb_crypto_load(f->dir, false, &err));
        assert_int_equal(err.code, FXB_FAILED_PRECONDITION);
        assert_string_equal(err.reason, FXB_CRYPTO_KEY_FILE_INVALID);
        assert_non_null(strstr(err.message, "bad.key"));
        assert_null(strstr(err.message, "QQQQ"));
    }
}

static void test_group_or_world_readable_key_file_is_refused(void **state)
{
    fixture *f = *state;
    char name[64], path[256];
    snprintf(name, sizeof name, "%s.key", fxb_crypto_active_kid(f->c));
    const char *files[] = {name, "index.key"};
    const mode_t modes[] = {0644, 0640, 0604, 0620, 0602};
    for (size_t i = 0; i < 2; i++) {
        path_in(f, files[i], path, sizeof path);
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            assert_int_equal(chmod(path, modes[m]), 0);
            fxb_err err;
            assert_null(fxb_crypto_load(f->dir, false, &err));
            assert_int_equal(err.code, FXB_FAILED_PRECONDITION);
            assert_string_equal(err.reason, FXB_CRYPTO_KEY_FILE_INSECURE);
            assert_non_null(strstr(err.message, files[i]));
        }
        assert_int_equal(chmod(path, 0600), 0);
    }
    /* 0400 (read-only for the owner) is fine */
    path_in(f, name, path, sizeof path);
    assert_int_equal(chmod(path, 0400), 0);
    reload(f);
}

static void test_group_writable_key_directory_is_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(chmod(f->dir, 0770), 0);
    fxb_err err;
    assert_null(fxb_crypto_load(f->dir, false, &err));
    assert_string_equal(err.reason, FXB_CRYPTO_KEY_FILE_INSECURE);
    assert_int_equal(chmod(f->dir, 0700), 0);
}

static void test_symlinked_key_file_is_refused(void **state)
{
    fixture *f = *state;
    char target[256], link_path[256];
    snprintf(target, sizeof target, "%s/outside.key", f->root);
    uint8_t key[FXB_CRYPTO_KEY_LEN] = {0};
    write_file(target, key, sizeof key, 0600);
    path_in(f, "linked.key", link_path, sizeof link_path);
    assert_int_equal(symlink(target, link_path), 0);
    fxb_err err;
    assert_null(fxb_crypto_load(f->dir, false, &err));
    assert_string_equal(err.reason, FXB_CRYPTO_KEY_FILE_INSECURE);
}

static void test_key_names_that_are_not_kids_are_refused(void **state)
{
    fixture *f = *state;
    const char *names[] = {"Upper.key", "under_score.key", "a2345678901234567.key", "x-y.key"};
    uint8_t key[FXB_CRYPTO_KEY_LEN] = {0};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[256];
        path_in(f, names[i], path, sizeof path);
        write_file(path, key, sizeof key, 0600);
        fxb_err err;
        assert_null(fxb_crypto_load(f->dir, false, &err));
        assert_string_equal(err.reason, FXB_CRYPTO_KEY_FILE_INVALID);
        assert_int_equal(unlink(path), 0);
    }
    /* temp files and unrelated names are ignored */
    char path[256];
    path_in(f, ".tmp-1-abc", path, sizeof path);
    write_file(path, "x", 1, 0644);
    path_in(f, "README", path, sizeof path);
    write_file(path, "x", 1, 0644);
    reload(f);
}

static void test_data_keys_without_index_key_are_refused_even_with_create(void **state)
{
    fixture *f = *state;
    char path[256];
    path_in(f, "index.key", path, sizeof path);
    assert_int_equal(unlink(path), 0);
    fxb_err err;
    assert_null(fxb_crypto_load(f->dir, true, &err));
    assert_string_equal(err.reason, FXB_CRYPTO_KEYS_MISSING);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
}

static void test_empty_directory_without_create_is_refused(void **state)
{
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/empty", f->root);
    assert_int_equal(mkdir(path, 0700), 0);
    fxb_err err;
    assert_null(fxb_crypto_load(path, false, &err));
    assert_string_equal(err.reason, FXB_CRYPTO_KEYS_MISSING);
}

/* ---- masks --------------------------------------------------------------- */

static void test_id_number_mask_keeps_first_six_and_last_four(void **state)
{
    char out[19];
    assert_true(fxb_mask_id_number("410702199001011234", out));
    assert_string_equal(out, "410702********1234");
    assert_true(fxb_mask_id_number("41070219900101123X", out));
    assert_string_equal(out, "410702********123X");
    assert_true(fxb_mask_id_number("41070219900101123x", out));
    assert_string_equal(out, "410702********123X");
}

static void test_unrecognised_id_number_masks_to_a_star(void **state)
{
    const char *bad[] = {NULL,
                         "",
                         "41070219900101123",   /* 17 */
                         "4107021990010112345", /* 19 */
                         "410702199001011X34",  /* X not last */
                         "41070219900101123Y",
                         "410702-99001011234",
                         "410702199001011234\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[19];
        memset(out, '#', sizeof out);
        assert_false(fxb_mask_id_number(bad[i], out));
        assert_string_equal(out, "*");
    }
}

static void assert_name_mask(const char *name, const char *want)
{
    char out[64];
    assert_true(fxb_mask_name(name, out, sizeof out));
    assert_string_equal(out, want);
}

static void test_name_mask_shows_first_character_and_a_star_per_character(void **state)
{
    assert_name_mask("张三", "张*");
    assert_name_mask("李小龙", "李**");
    assert_name_mask("Li Lei", "L*****");
    assert_name_mask("𠀀三", "𠀀*"); /* 4-byte character (CJK Ext. B) */
    assert_name_mask("é三", "é*");
}

static void test_four_character_compound_surname_keeps_only_first_character(void **state)
{
    assert_name_mask("欧阳娜娜", "欧***");
    assert_name_mask("司马相如", "司***");
    assert_name_mask("诸葛孔明", "诸***");
}

static void test_one_character_name_is_fully_masked(void **state)
{
    assert_name_mask("张", "*");
    assert_name_mask("𠀀", "*");
    assert_name_mask("", "");
}

static void test_invalid_utf8_name_masks_to_a_star(void **state)
{
    const char *bad[] = {
        "\xff",                     /* never valid */
        "\xe5\xbc",                 /* truncated 张 */
        "\xe5\xbc\xa0\xe4",         /* 张 then a truncated character */
        "\xbc\xa0",                 /* stray continuation bytes */
        "\xc0\xaf",                 /* overlong '/' */
        "\xe0\x80\xaf",             /* overlong '/' */
        "\xed\xa0\x80\xe4\xb8\x89", /* surrogate */
        "\xf4\x90\x80\x80",         /* above U+10FFFF */
        "\xe5\xbc\xa0\x80",         /* 张 + lone continuation */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[64];
        memset(out, '#', sizeof out);
        assert_false(fxb_mask_name(bad[i], out, sizeof out));
        assert_string_equal(out, "*");
    }
    char out[8];
    assert_false(fxb_mask_name(NULL, out, sizeof out));
    assert_string_equal(out, "*");
}

static void test_name_mask_never_overflows_the_output(void **state)
{
    char out[8];
    /* "欧***" needs 3 + 3 + 1 = 7 bytes */
    assert_true(fxb_mask_name("欧阳娜娜", out, 7));
    assert_string_equal(out, "欧***");
    memset(out, '#', sizeof out);
    assert_false(fxb_mask_name("欧阳娜娜", out, 6));
    assert_string_equal(out, "*");
    assert_false(fxb_mask_name("欧阳娜娜", out, 1));
    assert_string_equal(out, "");
    assert_false(fxb_mask_name("欧阳娜娜", out, 0));
    assert_false(fxb_mask_name("张三", NULL, 8));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_sealed_value_opens_to_the_same_bytes),
        T(test_binary_empty_and_maximal_plaintexts_round_trip),
        T(test_plaintext_over_4096_bytes_is_refused),
        T(test_sealed_string_has_the_v1_kid_base64url_format),
        T(test_sealed_string_never_contains_the_plaintext),
        T(test_two_seals_of_the_same_value_differ),
        T(test_value_moved_to_another_field_fails_with_decrypt_failed),
        T(test_value_moved_to_another_owner_fails_with_decrypt_failed),
        T(test_labels_and_owners_that_could_blur_the_aad_are_refused),
        T(test_tampered_tag_fails_with_decrypt_failed),
        T(test_tampered_nonce_fails_with_decrypt_failed),
        T(test_every_single_character_change_fails_and_never_crashes),
        T(test_unknown_kid_fails_with_key_unknown),
        T(test_kid_swapped_to_another_loaded_key_fails_with_decrypt_failed),
        T(test_bad_version_prefix_is_malformed),
        T(test_base64_garbage_is_malformed),
        T(test_non_canonical_base64_spelling_is_refused),
        T(test_every_truncation_fails_and_never_crashes),
        T(test_oversized_sealed_input_is_refused_before_decoding),
        T(test_rotation_old_key_opens_new_seals_use_new_key),
        T(test_active_file_selects_the_sealing_key),
        T(test_without_active_file_the_greatest_kid_seals),
        T(test_active_naming_a_missing_key_is_refused),
        T(test_a_seventeenth_key_is_refused),
        T(test_index_is_deterministic_128_bit_hex),
        T(test_index_separates_labels_and_values),
        T(test_index_survives_data_key_rotation),
        T(test_index_depends_on_the_index_key),
        T(test_index_refuses_bad_labels),
        T(test_created_keys_are_private_32_byte_files),
        T(test_missing_directory_without_create_is_refused),
        T(test_loading_again_with_create_keeps_existing_keys),
        T(test_key_file_of_wrong_size_is_refused_naming_the_file),
        T(test_group_or_world_readable_key_file_is_refused),
        T(test_group_writable_key_directory_is_refused),
        T(test_symlinked_key_file_is_refused),
        T(test_key_names_that_are_not_kids_are_refused),
        T(test_data_keys_without_index_key_are_refused_even_with_create),
        T(test_empty_directory_without_create_is_refused),
#undef T
        cmocka_unit_test(test_id_number_mask_keeps_first_six_and_last_four),
        cmocka_unit_test(test_unrecognised_id_number_masks_to_a_star),
        cmocka_unit_test(test_name_mask_shows_first_character_and_a_star_per_character),
        cmocka_unit_test(test_four_character_compound_surname_keeps_only_first_character),
        cmocka_unit_test(test_one_character_name_is_fully_masked),
        cmocka_unit_test(test_invalid_utf8_name_masks_to_a_star),
        cmocka_unit_test(test_name_mask_never_overflows_the_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
