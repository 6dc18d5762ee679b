/* test_file.c: core/file.c's output helpers: gw_file_create_new makes a new file, mode 0600
 * whatever the umask, and refuses anything already at the path (a symbolic link planted there,
 * whose target stays untouched, or a regular file); gw_file_sync_dir syncs a file's directory;
 * gw_file_read refuses a FIFO at once (never blocks in open) and follows a symbolic link. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "file.h"

struct fx {
    char dir[64], path[128], victim[128];
};

static int setup(void **state)
{
    static struct fx f;
    snprintf(f.dir, sizeof f.dir, "/tmp/gw-file-XXXXXX");
    if (!mkdtemp(f.dir))
        return -1;
    snprintf(f.path, sizeof f.path, "%s/out.partial", f.dir);
    snprintf(f.victim, sizeof f.victim, "%s/victim", f.dir);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    unlink(f->path);
    unlink(f->victim);
    return rmdir(f->dir) == 0 ? 0 : -1;
}

static void put(const char *path, const char *text)
{
    FILE *w = fopen(path, "w");
    assert_non_null(w);
    assert_int_equal(fputs(text, w) >= 0, 1);
    assert_int_equal(fclose(w), 0);
}

static void assert_holds(const char *path, const char *text)
{
    char buf[64] = {0};
    FILE *r = fopen(path, "r");
    assert_non_null(r);
    size_t n = fread(buf, 1, sizeof buf - 1, r);
    fclose(r);
    assert_int_equal(n, strlen(text));
    assert_string_equal(buf, text);
}

static void test_new_file_is_0600_whatever_the_umask(void **state)
{
    struct fx *f = *state;
    struct stat st;
    char err[256];
    int fd = -1;
    mode_t old = umask(0);
    int rc = gw_file_create_new(f->path, &fd, err, sizeof err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "bundle", 6), 6);
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    assert_int_equal(close(fd), 0);
    assert_int_equal(gw_file_sync_dir(f->path, err, sizeof err), 0);
}

static void test_planted_symlink_is_refused_and_its_target_untouched(void **state)
{
    struct fx *f = *state;
    struct stat st;
    char err[256];
    int fd = 7;
    put(f->victim, "precious");
    assert_int_equal(chmod(f->victim, 0644), 0);
    assert_int_equal(symlink(f->victim, f->path), 0);
    assert_int_equal(gw_file_create_new(f->path, &fd, err, sizeof err), GW_EEXIST);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "already exists"));
    assert_non_null(strstr(err, "symbolic link there is never written through"));
    assert_holds(f->victim, "precious");
    assert_int_equal(stat(f->victim, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    /* a dangling link too: O_CREAT alone would create its target */
    assert_int_equal(unlink(f->victim), 0);
    assert_int_equal(gw_file_create_new(f->path, &fd, err, sizeof err), GW_EEXIST);
    assert_int_equal(lstat(f->victim, &st), -1);
}

static void test_existing_file_is_refused_and_kept(void **state)
{
    struct fx *f = *state;
    char err[256];
    int fd = 7;
    put(f->path, "left over");
    assert_int_equal(gw_file_create_new(f->path, &fd, err, sizeof err), GW_EEXIST);
    assert_int_equal(fd, -1);
    assert_holds(f->path, "left over");
}

static void test_missing_directory_is_an_io_error(void **state)
{
    struct fx *f = *state;
    char err[256], path[160];
    int fd = 7;
    snprintf(path, sizeof path, "%s/no/such", f->dir);
    assert_int_equal(gw_file_create_new(path, &fd, err, sizeof err), GW_EIO);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(err, "cannot create"));
    assert_int_equal(gw_file_sync_dir(path, err, sizeof err), GW_EIO);
    assert_int_equal(gw_file_sync_dir("relative-name", err, sizeof err), 0);
}

static void test_read_refuses_a_fifo_at_once(void **state)
{
    struct fx *f = *state;
    char err[256], *buf = (char *)1;
    size_t len = 7;
    assert_int_equal(mkfifo(f->path, 0600), 0);
    /* blocking in open (nothing writes the FIFO) would hang here: SIGALRM ends the test red */
    alarm(5);
    assert_int_equal(gw_file_read(f->path, 4096, true, &buf, &len, err, sizeof err), GW_EIO);
    alarm(0);
    assert_null(buf);
    assert_int_equal(len, 0);
    assert_non_null(strstr(err, "not a regular file (a FIFO)"));
}

static void test_read_follows_a_symlink_to_a_regular_file(void **state)
{
    struct fx *f = *state;
    char err[256], *buf = NULL;
    size_t len = 0;
    put(f->victim, "[server]\n");
    assert_int_equal(symlink(f->victim, f->path), 0);
    assert_int_equal(gw_file_read(f->path, 4096, false, &buf, &len, err, sizeof err), 0);
    assert_int_equal(len, 9);
    assert_string_equal(buf, "[server]\n");
    gw_free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_file_is_0600_whatever_the_umask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_planted_symlink_is_refused_and_its_target_untouched,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_existing_file_is_refused_and_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_directory_is_an_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_refuses_a_fifo_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_follows_a_symlink_to_a_regular_file, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
