/* test_keyring.c: the key file backend (init, load checks, rotate, retire, atomic rewrite) and
 * the keyring interface (wrap/unwrap through a backend, rotation, retirement). Each test works
 * in its own temporary directory. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include "alloc.h"
#include "crypto.h"
#include "keyring.h"

struct fx {
    char dir[64];
    char path[128];
    struct gw_crypto *cx;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/gw-keyring-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/keyring", f->dir);
    f->cx = gw_crypto_new();
    *state = f;
    return f->cx ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    gw_crypto_free(f->cx);
    free(f);
    return 0;
}

static char *slurp(const char *path)
{
    static char buf[8192];
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = 0;
    return buf;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static const uint8_t RID[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void test_init(void **state)
{
    struct fx *f = *state;
    char err[256] = "";
    struct stat st;
    assert_int_equal(gw_keyring_file_init(f->path, GW_SUITE_AES, err, sizeof err), 0);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char before[8192];
    snprintf(before, sizeof before, "%s", slurp(f->path));
    assert_non_null(strstr(before, "waygate-keyring 1\n"));
    assert_non_null(strstr(before, "\nkek 1 active "));
    /* refuses to overwrite, and leaves the file alone */
    assert_int_equal(gw_keyring_file_init(f->path, GW_SUITE_AES, err, sizeof err), GW_EEXIST);
    assert_non_null(strstr(err, f->path));
    assert_string_equal(slurp(f->path), before);

    struct gw_keyring *kr = NULL;
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_AES), 1);
    assert_int_equal(gw_keyring_kek_count(kr, GW_SUITE_AES), 1);
    assert_string_equal(gw_keyring_backend_name(kr), "file");
    const uint8_t *ik = gw_keyring_index_key(kr, GW_SUITE_AES),
                  *tk = gw_keyring_token_key(kr, GW_SUITE_AES),
                  *ck = gw_keyring_content_key(kr, GW_SUITE_AES);
    assert_memory_not_equal(ik, tk, 32);
    assert_memory_not_equal(ik, ck, 32);
    assert_memory_not_equal(tk, ck, 32);
    gw_keyring_free(kr);
    gw_keyring_free(NULL);

    /* two keyrings never share keys */
    char other[160];
    snprintf(other, sizeof other, "%s/other", f->dir);
    assert_int_equal(gw_keyring_file_init(other, GW_SUITE_AES, err, sizeof err), 0);
    struct gw_keyring *k2 = NULL;
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_load(other, &k2, err, sizeof err), 0);
    assert_memory_not_equal(gw_keyring_index_key(kr, GW_SUITE_AES),
                            gw_keyring_index_key(k2, GW_SUITE_AES), 32);
    gw_keyring_free(kr);
    gw_keyring_free(k2);
}

static void test_load_refuses_modes(void **state)
{
    struct fx *f = *state;
    char err[256] = "";
    struct gw_keyring *kr = NULL;
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), GW_EIO); /* missing */
    assert_null(kr);
    assert_non_null(strstr(err, f->path));
    assert_int_equal(gw_keyring_file_init(f->path, GW_SUITE_AES, err, sizeof err), 0);
    mode_t bad[] = {0640, 0604, 0660, 0644, 0601, 0610, 0700 | 0004};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char want[16];
        assert_int_equal(chmod(f->path, bad[i]), 0);
        err[0] = 0;
        assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), GW_EPERM);
        assert_null(kr);
        snprintf(want, sizeof want, "%04o", (unsigned)bad[i]);
        assert_non_null(strstr(err, want));
        assert_non_null(strstr(err, f->path));
    }
    assert_int_equal(chmod(f->path, 0400), 0); /* read-only for the owner is fine */
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    gw_keyring_free(kr);
    assert_int_equal(chmod(f->path, 0600), 0);
    if (geteuid() == 0) { /* owned by someone else */
        assert_int_equal(chown(f->path, 65534, 65534), 0);
        assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), GW_EPERM);
        assert_non_null(strstr(err, "owned by uid 65534"));
        assert_int_equal(chown(f->path, 0, 0), 0);
    }
    /* rotate and retire check the file the same way */
    uint32_t v = 0;
    assert_int_equal(chmod(f->path, 0640), 0);
    assert_int_equal(gw_keyring_file_rotate(f->path, GW_SUITE_AES, &v, err, sizeof err), GW_EPERM);
    assert_int_equal(gw_keyring_file_retire(f->path, GW_SUITE_AES, 1, err, sizeof err), GW_EPERM);
}

#define B64A "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define B64B "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
/* a complete aes set on lines 2..5 */
#define AES_SET                                                                                    \
    "waygate-keyring 1\nkek 1 active " B64A "\nindex " B64A "\ntoken " B64A "\ncontent " B64A "\n"

static void test_load_refuses_malformed(void **state)
{
    struct fx *f = *state;
    struct {
        const char *text;
        const char *want; /* substring of the message */
    } cases[] = {
        {"", "empty"},
        {"waygate-keyring 2\n", ":1:"},
        {"waygate-keyring 1\nkek 1 active " B64A "\nindex " B64A "\ntoken " B64A "\ncontent nope\n",
         ":5:"},
        {"waygate-keyring 1\n# c\n\nkek 1 active " B64A "x\n", ":4:"},
        {"waygate-keyring 1\nkek 0 active " B64A "\n", ":2:"},
        {"waygate-keyring 1\nkek 01 active " B64A "\n", ":2:"},
        {"waygate-keyring 1\nkek 2147483648 active " B64A "\n", ":2:"},
        {"waygate-keyring 1\nkek 1 active\n", ":2:"},
        {"waygate-keyring 1\nkek 1 retired " B64A "\n", ":2:"},
        {"waygate-keyring 1\nkek 1  active " B64A "\n", ":2:"},
        {"waygate-keyring 1\nkek 1 active " B64A "\r\n", ":2:"},
        {"waygate-keyring 1\nkek 1 active " B64A "\nkek 1 active " B64B "\n", ":3:"},
        {"waygate-keyring 1\nkek 1 active " B64A "\nsecret " B64B "\n", ":3:"},
        {"waygate-keyring 1\nkek 1 active " B64A "\nindex " B64A "\nindex " B64B "\n", ":4:"},
        /* non-canonical base64: stray bits in the last character */
        {"waygate-keyring 1\nkek 1 active AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\n", ":2:"},
        {"waygate-keyring 1\nindex " B64A "\ntoken " B64A "\ncontent " B64A "\n", "no active KEK"},
        {"waygate-keyring 1\nkek 1 retired\nindex " B64A "\ntoken " B64A "\ncontent " B64A "\n",
         "no active KEK"},
        {"waygate-keyring 1\nkek 1 active " B64A "\nkek 2 retired\nindex " B64A "\ntoken " B64A
         "\ncontent " B64A "\n",
         "newest KEK (version 2) is retired"},
        {"waygate-keyring 1\nkek 1 active " B64A "\nindex " B64A "\ntoken " B64A "\n",
         "missing the content key"},
        {"waygate-keyring 1\nkek 1 active " B64A "\ntoken " B64A "\ncontent " B64A "\n",
         "missing the index key"},
        /* the sm suite: incomplete sets are refused naming the suite's first line and the item */
        {AES_SET "sm.kek 1 active " B64B "\nsm.index " B64B "\nsm.token " B64B "\n",
         ":6: suite sm (from this line) is incomplete: missing the sm.content key"},
        {AES_SET "\n# sm\nsm.index " B64B "\nsm.kek 1 active " B64B "\nsm.content " B64B "\n",
         ":8: suite sm (from this line) is incomplete: missing the sm.token key"},
        {AES_SET "sm.index " B64B "\nsm.token " B64B "\nsm.content " B64B "\n",
         ":6: suite sm (from this line) has no active KEK"},
        {AES_SET "sm.kek 1 active " B64B "\nsm.kek 2 retired\nsm.index " B64B "\nsm.token " B64B
                 "\nsm.content " B64B "\n",
         ":6: suite sm (from this line): the newest KEK (version 2) is retired"},
        {AES_SET "sm.kek 1 active\n", ":6:"},
        {AES_SET "sm.kek 1 active " B64B "\nsm.kek 1 active " B64A "\n", ":7:"},
        {AES_SET "sm.watermark " B64B "\n", ":6: unknown item"},
        {AES_SET "sm. " B64B "\n", ":6: unknown item"},
        {AES_SET "sm.index " B64B "\nsm.index " B64A "\n", ":7: key listed twice"},
        /* an SM2 private key outside [1, n-2] */
        {AES_SET "sm.audit //////////////////////////////////////////8=\n", ":6: sm.audit"},
        {AES_SET "sm.audit AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", ":6: sm.audit"},
        {AES_SET "sm.audit /////v///////////////3ID32shxgUrU7v0CTnVQSI=\n", ":6: sm.audit"},
        {"waygate-keyring 1\nwatermark " B64A "\n", "no keys"},
        {"waygate-keyring 1\n# nothing\n", "no keys"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        struct gw_keyring *kr = NULL;
        write_file(f->path, cases[i].text, 0600);
        int rc = gw_keyring_file_load(f->path, &kr, err, sizeof err);
        if (rc != GW_EINVAL || !strstr(err, cases[i].want))
            fail_msg("case %zu: rc %d, message \"%s\", wanted \"%s\"", i, rc, err, cases[i].want);
        assert_null(kr);
        /* no key material in messages */
        assert_null(strstr(err, "AAECAw"));
        assert_null(strstr(err, "ICEiIy"));
    }
    /* a well-formed hand-written file with comments, retired KEKs and versions out of order */
    char err[256] = "";
    struct gw_keyring *kr = NULL;
    write_file(f->path,
               "waygate-keyring 1\n# hand-written\nkek 7 active " B64B "\nkek 3 retired\n"
               "kek 5 active " B64A "\n\nindex " B64A "\ntoken " B64B "\ncontent " B64A,
               0600);
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_AES), 7);
    assert_int_equal(gw_keyring_kek_count(kr, GW_SUITE_AES), 3);
    assert_int_equal(gw_keyring_kek_at(kr, GW_SUITE_AES, 0).version, 3);
    assert_false(gw_keyring_kek_at(kr, GW_SUITE_AES, 0).active);
    assert_int_equal(gw_keyring_kek_at(kr, GW_SUITE_AES, 1).version, 5);
    assert_true(gw_keyring_kek_at(kr, GW_SUITE_AES, 1).active);
    assert_int_equal(gw_keyring_kek_at(kr, GW_SUITE_AES, 9).version, 0);
    assert_int_equal(gw_keyring_index_key(kr, GW_SUITE_AES)[1], 1);
    assert_int_equal(gw_keyring_token_key(kr, GW_SUITE_AES)[0], 0x20);
    assert_false(gw_keyring_has_suite(kr, GW_SUITE_SM));
    assert_null(gw_keyring_audit_seed(kr, GW_SUITE_AES)); /* optional when loading */
    gw_keyring_free(kr);
    /* a hand-written file of both suites, sm first, the largest SM2 scalar allowed (n-2) */
    write_file(f->path,
               "waygate-keyring 1\nsm.kek 3 active " B64B "\nsm.index " B64A "\nsm.token " B64B
               "\nsm.content " B64A "\nsm.audit /////v///////////////3ID32shxgUrU7v0CTnVQSE=\n"
               "kek 1 active " B64A "\nindex " B64B "\ntoken " B64A "\ncontent " B64B "\n",
               0600);
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_SM), 3);
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_AES), 1);
    assert_int_equal(gw_keyring_suite(kr), GW_SUITE_AES);
    assert_int_equal(gw_keyring_index_key(kr, GW_SUITE_SM)[1], 1);
    assert_int_equal(gw_keyring_index_key(kr, GW_SUITE_AES)[0], 0x20);
    assert_int_equal(gw_keyring_audit_seed(kr, GW_SUITE_SM)[0], 0xFF);
    assert_null(gw_keyring_audit_seed(kr, GW_SUITE_AES));
    gw_keyring_free(kr);
}

static void test_rotate_retire(void **state)
{
    struct fx *f = *state;
    char err[256] = "";
    uint32_t v = 0;
    struct stat st;
    struct gw_keyring *kr = NULL;
    assert_int_equal(gw_keyring_file_init(f->path, GW_SUITE_AES, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_rotate(f->path, GW_SUITE_AES, &v, err, sizeof err), 0);
    assert_int_equal(v, 2);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_AES), 2);
    assert_int_equal(gw_keyring_kek_count(kr, GW_SUITE_AES), 2);
    const uint8_t ik = gw_keyring_index_key(kr, GW_SUITE_AES)[0];
    gw_keyring_free(kr);

    /* the v1 key text, to check that retiring erases it */
    char v1[64] = "";
    const char *p = strstr(slurp(f->path), "kek 1 active ");
    assert_non_null(p);
    memcpy(v1, p + 13, 44);

    assert_int_equal(gw_keyring_file_retire(f->path, GW_SUITE_AES, 2, err, sizeof err),
                     GW_EPRECOND);
    assert_non_null(strstr(err, "newest"));
    assert_int_equal(gw_keyring_file_retire(f->path, GW_SUITE_AES, 9, err, sizeof err),
                     GW_ENOTFOUND);
    assert_int_equal(gw_keyring_file_retire(f->path, GW_SUITE_AES, 1, err, sizeof err), 0);
    const char *text = slurp(f->path);
    assert_non_null(strstr(text, "\nkek 1 retired\n"));
    assert_null(strstr(text, v1));
    assert_int_equal(gw_keyring_file_retire(f->path, GW_SUITE_AES, 1, err, sizeof err),
                     0); /* idempotent */
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(gw_keyring_file_rotate(f->path, GW_SUITE_AES, &v, err, sizeof err), 0);
    assert_int_equal(v, 3);
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_AES), 3);
    assert_false(gw_keyring_kek_at(kr, GW_SUITE_AES, 0).active);
    assert_int_equal(gw_keyring_index_key(kr, GW_SUITE_AES)[0], ik); /* the other keys are kept */
    gw_keyring_free(kr);
    /* no temporary files left behind */
    char cmd[200];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", f->dir);
    assert_int_equal(system(cmd), 0);
}

/* The check value of a KEK (sql/036_kek_version.sql) is HMAC(KEK, "waygate-kek-check-v1"), computed
 * where the key is: one per active version, different for different keys, never the key; a
 * retired version has none; a backend without the operation says so. */
static void test_kek_check(void **state)
{
    struct fx *f = *state;
    char err[256] = "", other[160];
    uint32_t v = 0;
    struct gw_keyring *kr = NULL, *kr2 = NULL;
    struct gw_keyring_check *c = NULL, *c2 = NULL;
    size_t n = 0, n2 = 0;
    uint8_t key[48], want[GW_CRYPTO_MAC_LEN], one[GW_CRYPTO_MAC_LEN];

    assert_int_equal(gw_keyring_file_init(f->path, GW_SUITE_AES, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_add_suite(f->path, GW_SUITE_SM, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_rotate(f->path, GW_SUITE_AES, &v, err, sizeof err), 0);
    const char *p = strstr(slurp(f->path), "\nkek 1 active ");
    assert_non_null(p);
    assert_int_equal(EVP_DecodeBlock(key, (const unsigned char *)p + 14, 44), 33);
    assert_int_equal(gw_crypto_hmac(f->cx, GW_SUITE_AES, key, 32,
                                    (const uint8_t *)"waygate-kek-check-v1", 20, want),
                     0);
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    assert_int_equal(gw_keyring_kek_checks(kr, &c, &n), 0);
    assert_int_equal(n, 3); /* aes 1, aes 2, sm 1 */
    assert_int_equal(c[0].suite, GW_SUITE_AES);
    assert_int_equal(c[0].version, 1);
    assert_int_equal(c[1].version, 2);
    assert_int_equal(c[2].suite, GW_SUITE_SM);
    assert_int_equal(c[2].version, 1);
    assert_memory_equal(c[0].value, want, sizeof want);
    assert_memory_not_equal(c[0].value, key, 32);
    assert_memory_not_equal(c[0].value, c[1].value, GW_CRYPTO_MAC_LEN);
    assert_memory_not_equal(c[0].value, c[2].value, GW_CRYPTO_MAC_LEN);
    assert_int_equal(gw_keyring_kek_check(kr, f->cx, GW_SUITE_AES, 1, one), 0);
    assert_memory_equal(one, want, sizeof want);
    assert_int_equal(gw_keyring_kek_check(kr, f->cx, GW_SUITE_AES, 9, one), GW_EPRECOND);
    gw_keyring_free(kr);

    /* another key file: its version 1 is another key, with another check value */
    snprintf(other, sizeof other, "%s/other", f->dir);
    assert_int_equal(gw_keyring_file_init(other, GW_SUITE_AES, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_load(other, &kr2, err, sizeof err), 0);
    assert_int_equal(gw_keyring_kek_checks(kr2, &c2, &n2), 0);
    assert_int_equal(n2, 1);
    assert_memory_not_equal(c2[0].value, c[0].value, GW_CRYPTO_MAC_LEN);
    gw_keyring_free(kr2);
    gw_free(c2);

    /* retired: no bytes, no check value, left out of the list */
    assert_int_equal(gw_keyring_file_retire(f->path, GW_SUITE_AES, 1, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    assert_int_equal(gw_keyring_kek_check(kr, f->cx, GW_SUITE_AES, 1, one), GW_EPRECOND);
    gw_free(c);
    assert_int_equal(gw_keyring_kek_checks(kr, &c, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(c[0].version, 2);
    gw_free(c);
    gw_keyring_free(kr);
}

/* A rewrite killed between writing its temporary file and the rename (SIGKILL, a crash) leaves
 * PATH.tmp-XXXXXX with every key of the file. The next rotate or retire removes it under the lock,
 * so a KEK it retires is not kept on disk by that copy; names that only look alike, and a
 * directory, stay. */
static void test_leftover_temporary_removed(void **state)
{
    struct fx *f = *state;
    char err[256] = "", left[160], other[160], sub[160], cmd[400], v1[64] = "";
    uint32_t v = 0;
    assert_int_equal(gw_keyring_file_init(f->path, GW_SUITE_AES, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_rotate(f->path, GW_SUITE_AES, &v, err, sizeof err), 0);
    const char *p = strstr(slurp(f->path), "kek 1 active ");
    assert_non_null(p);
    memcpy(v1, p + 13, 44);
    /* what a rewrite killed before its rename leaves: a copy of the file, v1's key in it */
    snprintf(left, sizeof left, "%s.tmp-Ab3xYz", f->path);
    write_file(left, slurp(f->path), 0600);
    snprintf(other, sizeof other, "%s.tmp-Ab3xYz1", f->path);
    write_file(other, "not a leftover\n", 0600);
    snprintf(sub, sizeof sub, "%s.tmp-dir123", f->path);
    assert_int_equal(mkdir(sub, 0700), 0);

    assert_int_equal(gw_keyring_file_retire(f->path, GW_SUITE_AES, 1, err, sizeof err), 0);
    assert_int_equal(access(left, F_OK), -1);
    assert_int_equal(access(other, F_OK), 0);
    assert_int_equal(access(sub, F_OK), 0);
    /* v1's key text is in no file of the directory */
    snprintf(cmd, sizeof cmd, "grep -rqF '%s' '%s'", v1, f->dir);
    assert_int_not_equal(system(cmd), 0);
}

/* wrap under v1, rotate, unwrap still works, rewrap to v2, retire v1, unwrap works. */
static void test_rotation_flow(void **state)
{
    struct fx *f = *state;
    char err[256] = "";
    uint32_t v = 0;
    struct gw_keyring *k1 = NULL, *k2 = NULL, *k3 = NULL;
    uint8_t dek[32], back[32], w1[GW_CRYPTO_WRAPPED_DEK_LEN], w2[GW_CRYPTO_WRAPPED_DEK_LEN];
    uint8_t rid2[16];
    memcpy(rid2, RID, 16);
    rid2[3] ^= 1;
    assert_int_equal(gw_keyring_file_init(f->path, GW_SUITE_AES, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_load(f->path, &k1, err, sizeof err), 0);
    assert_int_equal(gw_crypto_dek_new(f->cx, dek), 0);
    assert_int_equal(gw_keyring_wrap(k1, f->cx, GW_SUITE_AES, gw_keyring_current(k1, GW_SUITE_AES),
                                     "waybill", RID, dek, w1),
                     0);
    /* moved to another record -> refused */
    assert_int_equal(gw_keyring_unwrap(k1, f->cx, 1, "waybill", rid2, w1, sizeof w1, back),
                     GW_EDATALOSS);
    assert_int_equal(gw_keyring_unwrap(k1, f->cx, 2, "waybill", RID, w1, sizeof w1, back),
                     GW_EPRECOND); /* no such version yet */
    assert_int_equal(gw_keyring_wrap(k1, f->cx, GW_SUITE_AES, 2, "waybill", RID, dek, w2),
                     GW_EPRECOND);

    assert_int_equal(gw_keyring_file_rotate(f->path, GW_SUITE_AES, &v, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_load(f->path, &k2, err, sizeof err), 0);
    assert_int_equal(gw_keyring_current(k2, GW_SUITE_AES), 2);
    assert_int_equal(gw_keyring_unwrap(k2, f->cx, 1, "waybill", RID, w1, sizeof w1, back), 0);
    assert_memory_equal(back, dek, 32);
    /* rewrap: unwrap under v1, wrap under v2 */
    assert_int_equal(gw_keyring_wrap(k2, f->cx, GW_SUITE_AES, 2, "waybill", RID, back, w2), 0);
    /* the v1 wrapping does not open as v2 */
    assert_int_equal(gw_keyring_unwrap(k2, f->cx, 2, "waybill", RID, w1, sizeof w1, back),
                     GW_EDATALOSS);
    assert_int_equal(gw_keyring_file_retire(f->path, GW_SUITE_AES, 1, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_load(f->path, &k3, err, sizeof err), 0);
    assert_int_equal(gw_keyring_unwrap(k3, f->cx, 2, "waybill", RID, w2, sizeof w2, back), 0);
    assert_memory_equal(back, dek, 32);
    assert_int_equal(gw_keyring_unwrap(k3, f->cx, 1, "waybill", RID, w1, sizeof w1, back),
                     GW_EPRECOND); /* retired */
    for (int i = 0; i < 32; i++)
        assert_int_equal(back[i], 0);
    /* a keyring loaded before the retirement still holds v1 in memory until reloaded */
    assert_int_equal(gw_keyring_unwrap(k1, f->cx, 1, "waybill", RID, w1, sizeof w1, back), 0);
    gw_keyring_free(k1);
    gw_keyring_free(k2);
    gw_keyring_free(k3);
}

/* A backend other than the file plugs in through gw_keyring_new (as an HSM backend would). */
struct mock_be {
    uint8_t kek[32];
    int wraps, unwraps, freed;
    size_t last_aadlen;
    enum gw_suite last_suite;
};
static int mock_wrap(void *be, struct gw_crypto *cx, enum gw_suite suite, uint32_t v,
                     const uint8_t *aad, size_t aadlen, const uint8_t *dek, uint8_t *out)
{
    struct mock_be *m = be;
    size_t n;
    m->wraps++;
    m->last_aadlen = aadlen;
    m->last_suite = suite;
    if (v != 4)
        return GW_EPRECOND;
    return gw_crypto_seal_into(cx, suite, m->kek, aad, aadlen, dek, 32, out,
                               GW_CRYPTO_WRAPPED_DEK_LEN, &n);
}
static int mock_unwrap(void *be, struct gw_crypto *cx, enum gw_suite suite, uint32_t v,
                       const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t inlen,
                       uint8_t *dek)
{
    struct mock_be *m = be;
    size_t n;
    m->unwraps++;
    m->last_suite = suite;
    if (v != 4)
        return GW_EPRECOND;
    return gw_crypto_open_into(cx, suite, m->kek, aad, aadlen, in, inlen, dek, 32, &n);
}
static void mock_free(void *be)
{
    ((struct mock_be *)be)->freed++;
}

static void test_custom_backend(void **state)
{
    struct fx *f = *state;
    static const struct gw_keyring_backend ops = {"mock", mock_wrap, mock_unwrap, mock_free, NULL};
    struct mock_be m = {.wraps = 0};
    struct gw_keyring_kek keks[] = {{4, true}, {2, false}};
    struct gw_keyring_kek bad[] = {{4, false}};
    uint8_t keys[32] = {7}, dek[32] = {1, 2, 3}, back[32], w[GW_CRYPTO_WRAPPED_DEK_LEN];
    struct gw_keyring_set set = {keks, 2, keys, keys, keys, NULL};
    uint8_t check[GW_CRYPTO_MAC_LEN];
    struct gw_keyring_set badset = {bad, 1, keys, keys, keys, NULL};
    struct gw_keyring_set none = {keks, 0, keys, keys, keys, NULL};
    memset(m.kek, 0x42, 32);
    assert_null(gw_keyring_new(&ops, &m, GW_SUITE_AES, &badset)); /* newest retired */
    assert_null(gw_keyring_new(&ops, &m, GW_SUITE_AES, &none));
    assert_null(gw_keyring_new(&ops, &m, (enum gw_suite)3, &set));
    struct gw_keyring *kr = gw_keyring_new(&ops, &m, GW_SUITE_AES, &set);
    assert_non_null(kr);
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_AES), 4);
    assert_int_equal(gw_keyring_kek_at(kr, GW_SUITE_AES, 0).version, 2);
    assert_string_equal(gw_keyring_backend_name(kr), "mock");
    /* a backend without a check operation cannot vouch for its keys: said, not guessed */
    assert_int_equal(gw_keyring_kek_check(kr, f->cx, GW_SUITE_AES, 4, check), GW_EUNIMPL);
    assert_int_equal(gw_keyring_wrap(kr, f->cx, GW_SUITE_AES, 4, "waybill", RID, dek, w), 0);
    assert_int_equal(gw_keyring_unwrap(kr, f->cx, 4, "waybill", RID, w, sizeof w, back), 0);
    assert_memory_equal(back, dek, 32);
    /* the keyring, not the backend, binds the record: same AAD as gw_crypto_dek_wrap */
    assert_int_equal(
        gw_crypto_dek_unwrap(f->cx, GW_SUITE_AES, m.kek, 4, "waybill", RID, w, sizeof w, back), 0);
    assert_int_equal(m.wraps, 1);
    assert_int_equal(m.unwraps, 1);
    /* a second suite joins the same backend; the backend is told which */
    assert_int_equal(gw_keyring_wrap(kr, f->cx, GW_SUITE_SM, 4, "waybill", RID, dek, w),
                     GW_EPRECOND);
    assert_int_equal(gw_keyring_add_suite(kr, GW_SUITE_SM, &set), 0);
    assert_int_equal(gw_keyring_add_suite(kr, GW_SUITE_SM, &set), GW_EEXIST);
    assert_int_equal(gw_keyring_wrap(kr, f->cx, GW_SUITE_SM, 4, "waybill", RID, dek, w), 0);
    assert_int_equal(m.last_suite, GW_SUITE_SM);
    assert_int_equal(w[1], GW_SUITE_SM);
    m.last_suite = GW_SUITE_AES;
    assert_int_equal(gw_keyring_unwrap(kr, f->cx, 4, "waybill", RID, w, sizeof w, back), 0);
    assert_int_equal(m.last_suite, GW_SUITE_SM); /* from the value's algorithm byte */
    assert_memory_equal(back, dek, 32);
    gw_keyring_free(kr);
    assert_int_equal(m.freed, 1);
}

/* One key file with both suites: separate keys and KEK versions per suite, the suite of new
 * records chosen by set_suite, unwrap by the wrapped value's algorithm byte, per-suite rotate,
 * retire and add-suite. */
static void test_both_suites(void **state)
{
    struct fx *f = *state;
    char err[256] = "";
    uint32_t v = 0;
    struct gw_keyring *kr = NULL;
    uint8_t dek[32], back[32], wa[GW_CRYPTO_WRAPPED_DEK_LEN], ws[GW_CRYPTO_WRAPPED_DEK_LEN];
    assert_int_equal(gw_keyring_file_init(f->path, GW_SUITE_AES, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_add_suite(f->path, GW_SUITE_SM, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_add_suite(f->path, GW_SUITE_SM, err, sizeof err), GW_EEXIST);
    assert_non_null(strstr(err, "already holds the sm suite"));
    assert_int_equal(gw_keyring_file_add_suite(f->path, GW_SUITE_AES, err, sizeof err), GW_EEXIST);
    const char *text = slurp(f->path);
    assert_non_null(strstr(text, "\nkek 1 active "));
    assert_non_null(strstr(text, "\nsm.kek 1 active "));
    assert_non_null(strstr(text, "\nsm.index "));
    assert_non_null(strstr(text, "\nsm.token "));
    assert_non_null(strstr(text, "\nsm.content "));
    assert_non_null(strstr(text, "\nsm.audit "));
    assert_non_null(strstr(text, "\nwatermark "));
    assert_null(strstr(text, "sm.watermark"));

    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    assert_true(gw_keyring_has_suite(kr, GW_SUITE_AES));
    assert_true(gw_keyring_has_suite(kr, GW_SUITE_SM));
    assert_int_equal(gw_keyring_suite(kr), GW_SUITE_AES); /* the default with both */
    assert_int_equal(gw_keyring_set_suite(kr, GW_SUITE_SM), 0);
    assert_int_equal(gw_keyring_suite(kr), GW_SUITE_SM);
    assert_int_equal(gw_keyring_set_suite(kr, (enum gw_suite)7), GW_EINVAL);
    assert_int_equal(gw_keyring_suite(kr), GW_SUITE_SM);
    /* every key differs between the suites */
    assert_memory_not_equal(gw_keyring_index_key(kr, GW_SUITE_AES),
                            gw_keyring_index_key(kr, GW_SUITE_SM), 32);
    assert_memory_not_equal(gw_keyring_token_key(kr, GW_SUITE_AES),
                            gw_keyring_token_key(kr, GW_SUITE_SM), 32);
    assert_memory_not_equal(gw_keyring_content_key(kr, GW_SUITE_AES),
                            gw_keyring_content_key(kr, GW_SUITE_SM), 32);
    assert_non_null(gw_keyring_audit_seed(kr, GW_SUITE_AES));
    assert_non_null(gw_keyring_audit_seed(kr, GW_SUITE_SM));
    assert_true(gw_keyring_sm2_scalar_ok(gw_keyring_audit_seed(kr, GW_SUITE_SM)));
    assert_non_null(gw_keyring_watermark_key(kr));
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_AES), 1);
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_SM), 1);

    /* the same data key wrapped under each suite's version 1: distinct KEKs, each value names
     * its suite, unwrap follows the value's byte */
    assert_int_equal(gw_crypto_dek_new(f->cx, dek), 0);
    assert_int_equal(gw_keyring_wrap(kr, f->cx, GW_SUITE_AES, 1, "waybill", RID, dek, wa), 0);
    assert_int_equal(gw_keyring_wrap(kr, f->cx, GW_SUITE_SM, 1, "waybill", RID, dek, ws), 0);
    assert_int_equal(wa[1], GW_SUITE_AES);
    assert_int_equal(ws[1], GW_SUITE_SM);
    assert_int_equal(gw_keyring_unwrap(kr, f->cx, 1, "waybill", RID, wa, sizeof wa, back), 0);
    assert_memory_equal(back, dek, 32);
    assert_int_equal(gw_keyring_unwrap(kr, f->cx, 1, "waybill", RID, ws, sizeof ws, back), 0);
    assert_memory_equal(back, dek, 32);
    /* the algorithm byte switched: opened under the other suite's KEK, refused */
    wa[1] = GW_SUITE_SM;
    assert_int_equal(gw_keyring_unwrap(kr, f->cx, 1, "waybill", RID, wa, sizeof wa, back),
                     GW_EDATALOSS);
    wa[1] = 9;
    assert_int_equal(gw_keyring_unwrap(kr, f->cx, 1, "waybill", RID, wa, sizeof wa, back),
                     GW_EDATALOSS);
    wa[1] = GW_SUITE_AES;
    gw_keyring_free(kr);

    /* rotation and retirement are per suite */
    assert_int_equal(gw_keyring_file_rotate(f->path, GW_SUITE_SM, &v, err, sizeof err), 0);
    assert_int_equal(v, 2);
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_SM), 2);
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_AES), 1);
    gw_keyring_free(kr);
    assert_int_equal(gw_keyring_file_retire(f->path, GW_SUITE_AES, 1, err, sizeof err),
                     GW_EPRECOND); /* aes 1 is its newest */
    assert_int_equal(gw_keyring_file_retire(f->path, GW_SUITE_SM, 1, err, sizeof err), 0);
    text = slurp(f->path);
    assert_non_null(strstr(text, "\nsm.kek 1 retired\n"));
    assert_non_null(strstr(text, "\nkek 1 active "));
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    assert_int_equal(gw_keyring_unwrap(kr, f->cx, 1, "waybill", RID, wa, sizeof wa, back), 0);
    assert_int_equal(gw_keyring_unwrap(kr, f->cx, 1, "waybill", RID, ws, sizeof ws, back),
                     GW_EPRECOND); /* sm 1 retired */
    gw_keyring_free(kr);
}

/* A key file of the sm suite alone: the default suite is sm, the aes suite is refused
 * everywhere (set_suite, wrap, unwrap of an aes value, rotate, retire), never silently used. */
static void test_sm_only(void **state)
{
    struct fx *f = *state;
    char err[256] = "", other[160];
    uint32_t v = 0;
    struct gw_keyring *kr = NULL, *ka = NULL;
    uint8_t dek[32] = {5}, back[32], w[GW_CRYPTO_WRAPPED_DEK_LEN];
    assert_int_equal(gw_keyring_file_init(f->path, GW_SUITE_SM, err, sizeof err), 0);
    const char *text = slurp(f->path);
    assert_null(strstr(text, "\nkek "));
    assert_non_null(strstr(text, "\nsm.kek 1 active "));
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    assert_false(gw_keyring_has_suite(kr, GW_SUITE_AES));
    assert_int_equal(gw_keyring_suite(kr), GW_SUITE_SM);
    assert_int_equal(gw_keyring_set_suite(kr, GW_SUITE_AES), GW_EPRECOND);
    assert_int_equal(gw_keyring_suite(kr), GW_SUITE_SM); /* unchanged */
    assert_null(gw_keyring_index_key(kr, GW_SUITE_AES));
    assert_null(gw_keyring_audit_seed(kr, GW_SUITE_AES));
    assert_int_equal(gw_keyring_current(kr, GW_SUITE_AES), 0);
    assert_int_equal(gw_keyring_kek_count(kr, GW_SUITE_AES), 0);
    assert_int_equal(gw_keyring_wrap(kr, f->cx, GW_SUITE_AES, 1, "waybill", RID, dek, w),
                     GW_EPRECOND);
    /* an aes value from another keyring: this one lacks the suite */
    snprintf(other, sizeof other, "%s/aes", f->dir);
    assert_int_equal(gw_keyring_file_init(other, GW_SUITE_AES, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_load(other, &ka, err, sizeof err), 0);
    assert_int_equal(gw_keyring_wrap(ka, f->cx, GW_SUITE_AES, 1, "waybill", RID, dek, w), 0);
    assert_int_equal(gw_keyring_unwrap(kr, f->cx, 1, "waybill", RID, w, sizeof w, back),
                     GW_EPRECOND);
    gw_keyring_free(ka);
    gw_keyring_free(kr);
    assert_int_equal(gw_keyring_file_rotate(f->path, GW_SUITE_AES, &v, err, sizeof err),
                     GW_EPRECOND);
    assert_non_null(strstr(err, "no keys of the aes suite"));
    assert_int_equal(gw_keyring_file_retire(f->path, GW_SUITE_AES, 1, err, sizeof err),
                     GW_EPRECOND);
    assert_int_equal(gw_keyring_file_rotate(f->path, GW_SUITE_SM, &v, err, sizeof err), 0);
    assert_int_equal(v, 2);
}

/* A key file holding any key published in this repository (the known-answer tests' keyring,
 * data/golden/keyring) is refused by every load, with the key's name and without its bytes, and
 * by the CLI's edits: each of those keys alone, in a keyring otherwise of fresh keys, is enough.
 * GW_KEYRING_PUBLISHED_OK (the known-answer test's) accepts it. */
static void test_load_refuses_published(void **state)
{
    struct fx *f = *state;
    char err[512] = "", golden[512], fresh[8192], text[8192], line[256], name[32], at_line[48],
         want[64];
    const char *d = getenv("WAYGATE_TEST_DATA");
    struct gw_keyring *kr = NULL;
    uint32_t v = 0;
    int tried = 0;

    snprintf(golden, sizeof golden, "%s/golden/keyring", d ? d : "data");
    assert_int_equal(gw_keyring_file_init(f->path, GW_SUITE_AES, err, sizeof err), 0);
    assert_int_equal(gw_keyring_file_add_suite(f->path, GW_SUITE_SM, err, sizeof err), 0);
    snprintf(fresh, sizeof fresh, "%s", slurp(f->path));
    FILE *g = fopen(golden, "r");
    assert_non_null(g);
    while (fgets(line, sizeof line, g)) {
        if (line[0] == '#' || line[0] == '\n' || strncmp(line, "waygate-keyring", 15) == 0)
            continue;
        size_t n = strcspn(line, " "), ll = strlen(line);
        assert_true(n < sizeof name && ll > 45 && line[ll - 1] == '\n');
        snprintf(name, sizeof name, "%.*s", (int)n, line);
        bool kek = strcmp(name, "kek") == 0 || strcmp(name, "sm.kek") == 0;
        snprintf(at_line, sizeof at_line, kek ? "\n%s 1 active " : "\n%s ", name);
        snprintf(want, sizeof want, kek ? "its %s key version 1 " : "its %s key ", name);
        /* the fresh file with this item's line replaced by the published one */
        const char *at = strstr(fresh, at_line);
        assert_non_null(at);
        const char *end = strchr(at + 1, '\n');
        assert_non_null(end);
        snprintf(text, sizeof text, "%.*s%s%s", (int)(at + 1 - fresh), fresh, line, end + 1);
        write_file(f->path, text, 0600);

        assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), GW_EPRECOND);
        assert_null(kr);
        assert_non_null(strstr(err, f->path));
        assert_non_null(strstr(err, want));
        assert_non_null(strstr(err, "published"));
        char b64[45];
        snprintf(b64, sizeof b64, "%.44s", line + ll - 45);
        assert_null(strstr(err, b64));
        assert_int_equal(gw_keyring_file_rotate(f->path, GW_SUITE_AES, &v, err, sizeof err),
                         GW_EPRECOND);
        assert_string_equal(slurp(f->path), text);
        assert_int_equal(
            gw_keyring_file_load_flags(f->path, GW_KEYRING_PUBLISHED_OK, &kr, err, sizeof err), 0);
        gw_keyring_free(kr);
        kr = NULL;
        tried++;
    }
    fclose(g);
    assert_true(tried >= 11); /* both suites' kek, index, token, content, audit; the watermark */
    write_file(f->path, fresh, 0600);
    assert_int_equal(gw_keyring_file_load(f->path, &kr, err, sizeof err), 0);
    gw_keyring_free(kr);
}

/* The SM2 private scalar's range, 1 <= d <= n-2. */
static void test_sm2_scalar(void **state)
{
    uint8_t d[32];
    (void)state;
    memset(d, 0, 32);
    assert_false(gw_keyring_sm2_scalar_ok(d));
    d[31] = 1;
    assert_true(gw_keyring_sm2_scalar_ok(d));
    static const uint8_t n2[32] = {0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                   0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x72, 0x03, 0xDF, 0x6B, 0x21, 0xC6,
                                   0x05, 0x2B, 0x53, 0xBB, 0xF4, 0x09, 0x39, 0xD5, 0x41, 0x21};
    memcpy(d, n2, 32);
    assert_true(gw_keyring_sm2_scalar_ok(d)); /* n-2 */
    d[31] = 0x22;
    assert_false(gw_keyring_sm2_scalar_ok(d)); /* n-1 */
    memset(d, 0xFF, 32);
    assert_false(gw_keyring_sm2_scalar_ok(d));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_retire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftover_temporary_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kek_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_both_suites, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sm_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_published, setup, teardown),
        cmocka_unit_test(test_sm2_scalar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
