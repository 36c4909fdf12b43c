/* The filesystem blob store in a temp directory: a committed blob is
 * named by its SHA-256 and reads back byte for byte; the same bytes twice
 * are one blob; an aborted or failed write leaves nothing; directories and
 * files are private; stale temp files of a crash are swept. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "store/blob.h"

/* SHA-256("abc") and SHA-256("") (FIPS 180-2 examples). */
#define SHA_ABC   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct fixture {
    char dir[64];
    fxb_blob_store *bs;
} fixture;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/fxb-blob-test.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    fxb_err err;
    f->bs = fxb_blob_fs_new(f->dir, &err);
    if (f->bs == NULL) {
        fprintf(stderr, "fxb_blob_fs_new: %s\n", err.message);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    fxb_blob_store_free(f->bs);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Entries of <dir>/blobs/tmp. */
static int tmp_entries(const fixture *f)
{
    char path[256];
    snprintf(path, sizeof path, "%s/blobs/tmp", f->dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void blob_file(const fixture *f, const char *hex, char *out, size_t cap)
{
    snprintf(out, cap, "%s/blobs/sha256/%.2s/%.2s/%s", f->dir, hex, hex + 2, hex);
}

/* Writes data in chunks of step bytes and commits; hex gets the digest. */
static void store_bytes(fixture *f, const void *data, size_t len, size_t step, char *hex,
                        bool *created)
{
    fxb_err err;
    fxb_blob_writer *w = NULL;
    assert_int_equal(fxb_blob_begin(f->bs, &w, &err), FXB_OK);
    assert_non_null(w);
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        assert_int_equal(fxb_blob_write(f->bs, w, (const char *)data + off, n, &err), FXB_OK);
    }
    assert_int_equal(fxb_blob_commit(f->bs, w, hex, created, &err), FXB_OK);
}

static void test_the_digest_is_the_sha256_of_the_bytes(void **state)
{
    fixture *f = *state;
    char hex[FXB_BLOB_HEX_LEN + 1];
    bool created;
    store_bytes(f, "abc", 3, 1, hex, &created);
    assert_string_equal(hex, SHA_ABC);
    assert_true(created);

    /* digest before commit gives the same value, and may be asked twice */
    fxb_err err;
    fxb_blob_writer *w;
    char early[FXB_BLOB_HEX_LEN + 1], again[FXB_BLOB_HEX_LEN + 1];
    assert_int_equal(fxb_blob_begin(f->bs, &w, &err), FXB_OK);
    assert_int_equal(fxb_blob_digest(f->bs, w, early, &err), FXB_OK);
    assert_int_equal(fxb_blob_digest(f->bs, w, again, &err), FXB_OK);
    assert_string_equal(early, SHA_EMPTY);
    assert_string_equal(again, SHA_EMPTY);
    assert_int_not_equal(fxb_blob_write(f->bs, w, "x", 1, &err), FXB_OK);
    fxb_blob_abort(f->bs, w);
}

static void test_a_committed_blob_reads_back_byte_for_byte(void **state)
{
    fixture *f = *state;
    /* larger than the write buffer, in odd chunks */
    size_t len = 3 * FXB_BLOB_WRITE_BUFFER + 12345;
    unsigned char *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(i * 131 + i / 7);
    char hex[FXB_BLOB_HEX_LEN + 1];
    store_bytes(f, data, len, 7001, hex, NULL);

    fxb_err err;
    uint64_t size = 0;
    assert_int_equal(fxb_blob_stat(f->bs, hex, &size, &err), FXB_OK);
    assert_int_equal(size, len);
    assert_true(fxb_blob_exists(f->bs, hex));
    unsigned char *back = malloc(len + 10);
    assert_non_null(back);
    size_t got = 0, n;
    do {
        assert_int_equal(fxb_blob_read(f->bs, hex, got, back + got, 5000, &n, &err), FXB_OK);
        got += n;
    } while (n > 0);
    assert_int_equal(got, len);
    assert_memory_equal(back, data, len);
    /* the file is at its content address, private */
    char path[512];
    blob_file(f, hex, path, sizeof path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char dir[256];
    snprintf(dir, sizeof dir, "%s/blobs", f->dir);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(tmp_entries(f), 0);
    free(back);
    free(data);
}

static void test_the_same_bytes_twice_are_one_blob(void **state)
{
    fixture *f = *state;
    char a[FXB_BLOB_HEX_LEN + 1], b[FXB_BLOB_HEX_LEN + 1];
    bool created_a, created_b;
    store_bytes(f, "%PDF-1.7 same", 13, 13, a, &created_a);
    char path[512];
    blob_file(f, a, path, sizeof path);
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    store_bytes(f, "%PDF-1.7 same", 13, 4, b, &created_b);
    assert_string_equal(a, b);
    assert_true(created_a);
    assert_false(created_b);
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino); /* the first file was kept */
    assert_int_equal(tmp_entries(f), 0);
}

static void test_an_aborted_write_leaves_nothing(void **state)
{
    fixture *f = *state;
    fxb_err err;
    fxb_blob_writer *w;
    assert_int_equal(fxb_blob_begin(f->bs, &w, &err), FXB_OK);
    assert_int_equal(tmp_entries(f), 1);
    assert_int_equal(fxb_blob_write(f->bs, w, "abc", 3, &err), FXB_OK);
    fxb_blob_abort(f->bs, w);
    assert_int_equal(tmp_entries(f), 0);
    assert_false(fxb_blob_exists(f->bs, SHA_ABC));
    fxb_blob_abort(f->bs, NULL); /* a no-op */
    /* aborted after the digest was taken: still nothing */
    assert_int_equal(fxb_blob_begin(f->bs, &w, &err), FXB_OK);
    assert_int_equal(fxb_blob_write(f->bs, w, "abc", 3, &err), FXB_OK);
    assert_int_equal(fxb_blob_digest(f->bs, w, NULL, &err), FXB_OK);
    fxb_blob_abort(f->bs, w);
    assert_int_equal(tmp_entries(f), 0);
    assert_false(fxb_blob_exists(f->bs, SHA_ABC));
}

static void test_a_failed_commit_leaves_nothing(void **state)
{
    fixture *f = *state;
    /* a file where the blob's first directory should go: mkdir fails */
    char path[256];
    snprintf(path, sizeof path, "%s/blobs/sha256/%.2s", f->dir, SHA_ABC);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    fxb_err err;
    fxb_blob_writer *w;
    assert_int_equal(fxb_blob_begin(f->bs, &w, &err), FXB_OK);
    assert_int_equal(fxb_blob_write(f->bs, w, "abc", 3, &err), FXB_OK);
    bool created = true;
    assert_int_equal(fxb_blob_commit(f->bs, w, NULL, &created, &err), FXB_INTERNAL);
    assert_string_equal(err.reason, FXB_BLOB_IO);
    assert_false(created);
    assert_int_equal(tmp_entries(f), 0);
    assert_false(fxb_blob_exists(f->bs, SHA_ABC));
}

static void test_unknown_and_malformed_digests(void **state)
{
    fixture *f = *state;
    fxb_err err;
    char buf[8];
    size_t n = 99;
    assert_int_equal(fxb_blob_stat(f->bs, SHA_ABC, NULL, &err), FXB_NOT_FOUND);
    assert_string_equal(err.reason, FXB_BLOB_NOT_FOUND);
    assert_int_equal(fxb_blob_read(f->bs, SHA_ABC, 0, buf, sizeof buf, &n, &err), FXB_NOT_FOUND);
    assert_int_equal(n, 0);
    const char *bad[] = {"", "abc", "../../../../etc/passwd",
                         "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                         SHA_ABC "0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(fxb_blob_digest_valid(bad[i]));
        assert_int_equal(fxb_blob_stat(f->bs, bad[i], NULL, &err), FXB_INVALID_ARGUMENT);
        assert_int_equal(fxb_blob_read(f->bs, bad[i], 0, buf, sizeof buf, &n, &err),
                         FXB_INVALID_ARGUMENT);
        assert_int_equal(fxb_blob_remove(f->bs, bad[i], &err), FXB_INVALID_ARGUMENT);
    }
    assert_true(fxb_blob_digest_valid(SHA_ABC));
}

static void test_remove_deletes_and_is_idempotent(void **state)
{
    fixture *f = *state;
    fxb_err err;
    char hex[FXB_BLOB_HEX_LEN + 1];
    store_bytes(f, "abc", 3, 3, hex, NULL);
    assert_true(fxb_blob_exists(f->bs, hex));
    assert_int_equal(fxb_blob_remove(f->bs, hex, &err), FXB_OK);
    assert_false(fxb_blob_exists(f->bs, hex));
    assert_int_equal(fxb_blob_remove(f->bs, hex, &err), FXB_OK);
}

static void test_reads_past_the_end_return_nothing(void **state)
{
    fixture *f = *state;
    fxb_err err;
    char hex[FXB_BLOB_HEX_LEN + 1], buf[16];
    size_t n;
    store_bytes(f, "abcdef", 6, 6, hex, NULL);
    assert_int_equal(fxb_blob_read(f->bs, hex, 4, buf, sizeof buf, &n, &err), FXB_OK);
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "ef", 2);
    assert_int_equal(fxb_blob_read(f->bs, hex, 6, buf, sizeof buf, &n, &err), FXB_OK);
    assert_int_equal(n, 0);
    assert_int_equal(fxb_blob_read(f->bs, hex, 1000, buf, sizeof buf, &n, &err), FXB_OK);
    assert_int_equal(n, 0);
}

static void test_stale_temp_files_are_swept_when_the_store_opens(void **state)
{
    fixture *f = *state;
    char stale[256], fresh[256];
    snprintf(stale, sizeof stale, "%s/blobs/tmp/up-stale", f->dir);
    snprintf(fresh, sizeof fresh, "%s/blobs/tmp/up-fresh", f->dir);
    int fd = open(stale, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    fd = open(fresh, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    struct timeval old[2] = {{.tv_sec = 1000000}, {.tv_sec = 1000000}};
    assert_int_equal(utimes(stale, old), 0);
    fxb_err err;
    fxb_blob_store *again = fxb_blob_fs_new(f->dir, &err);
    assert_non_null(again);
    assert_int_equal(access(stale, F_OK), -1);
    assert_int_equal(access(fresh, F_OK), 0); /* maybe a write in progress */
    fxb_blob_store_free(again);
    unlink(fresh);
}

static void test_a_missing_data_directory_is_refused(void **state)
{
    (void)state;
    fxb_err err;
    assert_null(fxb_blob_fs_new("", &err));
    assert_null(fxb_blob_fs_new("/nonexistent/fxb/blob/test", &err));
    assert_string_equal(err.reason, FXB_BLOB_IO);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_the_digest_is_the_sha256_of_the_bytes),
        T(test_a_committed_blob_reads_back_byte_for_byte),
        T(test_the_same_bytes_twice_are_one_blob),
        T(test_an_aborted_write_leaves_nothing),
        T(test_a_failed_commit_leaves_nothing),
        T(test_unknown_and_malformed_digests),
        T(test_remove_deletes_and_is_idempotent),
        T(test_reads_past_the_end_return_nothing),
        T(test_stale_temp_files_are_swept_when_the_store_opens),
        cmocka_unit_test(test_a_missing_data_directory_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
