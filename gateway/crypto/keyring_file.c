/* keyring_file.c: the key file backend of the keyring (format in keyring.h): loading with
 * permission, owner and syntax checks, and the CLI's init/rotate/retire as locked, atomic
 * rewrites. Invariants: key bytes live only in memory wiped before it is freed (and locked when
 * allowed); no error message contains key bytes or a line's content. */
#include "keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "alloc.h"

#define FILE_MAGIC "waygate-keyring 1"
#define FILE_MAX (1024 * 1024)
#define B64_LEN 44 /* base64 of 32 bytes, one '=' of padding */

struct secrets { /* the in-memory keys */
    uint8_t index[GW_CRYPTO_KEY_LEN];
    uint8_t token[GW_CRYPTO_KEY_LEN];
    uint8_t content[GW_CRYPTO_KEY_LEN];
    uint8_t audit[GW_CRYPTO_KEY_LEN];
    uint8_t watermark[GW_CRYPTO_KEY_LEN];
};

/* One KEK of a parsed file (also the file backend's in-memory form). */
struct fkek {
    uint32_t version;
    bool active;
    uint8_t key[GW_CRYPTO_KEY_LEN]; /* zero when retired */
};

/* A parsed key file. */
struct parsed {
    struct fkek *keks;
    size_t n, cap;
    bool have_index, have_token, have_content, have_audit, have_watermark;
    struct secrets sec;
};

static void errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* Secret memory: gw_calloc'd, locked when possible, wiped on free. */
static void *secret_alloc(size_t n)
{
    void *p = gw_calloc(1, n ? n : 1);
    if (p)
        (void)mlock(p, n ? n : 1); /* best effort: RLIMIT_MEMLOCK may forbid it */
    return p;
}

static void secret_free(void *p, size_t n)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, n ? n : 1);
    (void)munlock(p, n ? n : 1);
    gw_free(p);
}

static void parsed_clear(struct parsed *p)
{
    secret_free(p->keks, p->cap * sizeof *p->keks);
    OPENSSL_cleanse(&p->sec, sizeof p->sec);
    memset(p, 0, sizeof *p);
}

/* ---- the key file backend ---- */

struct file_be {
    struct fkek *keks; /* secret memory */
    size_t n;
};

static const struct fkek *file_find(const struct file_be *fb, uint32_t version)
{
    for (size_t i = 0; i < fb->n; i++)
        if (fb->keks[i].version == version)
            return fb->keks[i].active ? &fb->keks[i] : NULL;
    return NULL;
}

static int file_wrap(void *be, struct gw_crypto *cx, uint32_t kek_version, const uint8_t *aad,
                     size_t aadlen, const uint8_t dek[GW_CRYPTO_DEK_LEN],
                     uint8_t out[GW_CRYPTO_WRAPPED_DEK_LEN])
{
    const struct fkek *k = file_find(be, kek_version);
    size_t n = 0;
    if (!k)
        return GW_EPRECOND;
    return gw_crypto_seal_into(cx, GW_SUITE_AES, k->key, aad, aadlen, dek, GW_CRYPTO_DEK_LEN, out,
                               GW_CRYPTO_WRAPPED_DEK_LEN, &n);
}

static int file_unwrap(void *be, struct gw_crypto *cx, uint32_t kek_version, const uint8_t *aad,
                       size_t aadlen, const uint8_t *in, size_t inlen,
                       uint8_t dek[GW_CRYPTO_DEK_LEN])
{
    const struct fkek *k = file_find(be, kek_version);
    size_t n = 0;
    if (!k)
        return GW_EPRECOND;
    if (inlen != GW_CRYPTO_WRAPPED_DEK_LEN)
        return GW_EDATALOSS;
    int rc = gw_crypto_open_into(cx, GW_SUITE_AES, k->key, aad, aadlen, in, inlen, dek,
                                 GW_CRYPTO_DEK_LEN, &n);
    if (rc == 0 && n != GW_CRYPTO_DEK_LEN)
        rc = GW_EDATALOSS;
    return rc;
}

static void file_free(void *be)
{
    struct file_be *fb = be;
    if (!fb)
        return;
    secret_free(fb->keks, fb->n * sizeof *fb->keks);
    gw_free(fb);
}

static const struct gw_keyring_backend file_backend = {
    .name = "file",
    .wrap = file_wrap,
    .unwrap = file_unwrap,
    .free = file_free,
};

/* ---- parsing ---- */

static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* Decodes exactly 32 bytes of canonical standard base64. */
static int b64_decode32(const char *s, size_t len, uint8_t out[GW_CRYPTO_KEY_LEN])
{
    uint8_t buf[36];
    unsigned char enc[B64_LEN + 1];
    int rc = GW_EINVAL;
    if (len != B64_LEN || s[B64_LEN - 1] != '=')
        return GW_EINVAL;
    for (size_t i = 0; i < B64_LEN - 1; i++)
        if (!b64_char(s[i]))
            return GW_EINVAL;
    if (EVP_DecodeBlock(buf, (const unsigned char *)s, B64_LEN) != 33)
        goto out;
    /* canonical: re-encoding gives the same text (no stray bits in the last character) */
    if (EVP_EncodeBlock(enc, buf, GW_CRYPTO_KEY_LEN) != B64_LEN || memcmp(enc, s, B64_LEN) != 0)
        goto out;
    memcpy(out, buf, GW_CRYPTO_KEY_LEN);
    rc = 0;
out:
    OPENSSL_cleanse(buf, sizeof buf);
    OPENSSL_cleanse(enc, sizeof enc);
    return rc;
}

static int parse_version(const char *s, size_t len, uint32_t *v)
{
    uint64_t x = 0;
    if (len == 0 || len > 10 || s[0] == '0')
        return GW_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return GW_EINVAL;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (x == 0 || x > GW_KEYRING_MAX_VERSION)
        return GW_EINVAL;
    *v = (uint32_t)x;
    return 0;
}

static int parsed_add(struct parsed *p, uint32_t version, bool active, const uint8_t *key)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->keks[i].version == version)
            return GW_EEXIST;
    if (p->n == GW_KEYRING_MAX_KEKS)
        return GW_ETOOBIG;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        struct fkek *k = secret_alloc(cap * sizeof *k);
        if (!k)
            return GW_ENOMEM;
        if (p->n)
            memcpy(k, p->keks, p->n * sizeof *k);
        secret_free(p->keks, p->cap * sizeof *p->keks);
        p->keks = k;
        p->cap = cap;
    }
    struct fkek *k = &p->keks[p->n++];
    k->version = version;
    k->active = active;
    if (active)
        memcpy(k->key, key, GW_CRYPTO_KEY_LEN);
    else
        memset(k->key, 0, GW_CRYPTO_KEY_LEN);
    return 0;
}

static int fkek_cmp(const void *a, const void *b)
{
    uint32_t x = ((const struct fkek *)a)->version, y = ((const struct fkek *)b)->version;
    return x < y ? -1 : x > y;
}

#define MAX_TOK 5

/* Parses one line (without its newline) of lineno. */
static int parse_line(struct parsed *p, const char *line, size_t len, size_t lineno,
                      const char *path, char *errbuf, size_t errlen)
{
    const char *tok[MAX_TOK];
    size_t tlen[MAX_TOK], nt = 0;
    uint8_t key[GW_CRYPTO_KEY_LEN];
    int rc = GW_EINVAL;

    for (size_t i = 0; i < len; i++)
        if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] >= 0x7f) {
            errf(errbuf, errlen, "keyring %s:%zu: unexpected control or non-ASCII character", path,
                 lineno);
            return GW_EINVAL;
        }
    for (size_t i = 0; i <= len;) {
        size_t j = i;
        while (j < len && line[j] != ' ')
            j++;
        if (j == i || nt == MAX_TOK) {
            errf(errbuf, errlen,
                 "keyring %s:%zu: malformed line (fields are separated by one "
                 "space)",
                 path, lineno);
            return GW_EINVAL;
        }
        tok[nt] = line + i;
        tlen[nt++] = j - i;
        i = j + 1;
    }
#define IS(k, s) (tlen[k] == sizeof(s) - 1 && memcmp(tok[k], s, sizeof(s) - 1) == 0)
    if (IS(0, "kek")) {
        uint32_t v = 0;
        bool active = nt == 4 && IS(2, "active");
        bool retired = nt == 3 && IS(2, "retired");
        if (!active && !retired) {
            errf(errbuf, errlen,
                 "keyring %s:%zu: expected \"kek <version> active <base64>\" "
                 "or \"kek <version> retired\"",
                 path, lineno);
            goto out;
        }
        if (parse_version(tok[1], tlen[1], &v) != 0) {
            errf(errbuf, errlen, "keyring %s:%zu: KEK version must be an integer from 1 to %u",
                 path, lineno, GW_KEYRING_MAX_VERSION);
            goto out;
        }
        if (active && b64_decode32(tok[3], tlen[3], key) != 0) {
            errf(errbuf, errlen, "keyring %s:%zu: KEK is not 32 bytes of canonical base64", path,
                 lineno);
            goto out;
        }
        rc = parsed_add(p, v, active, key);
        if (rc == GW_EEXIST || rc == GW_ETOOBIG) {
            errf(errbuf, errlen, "keyring %s:%zu: %s", path, lineno,
                 rc == GW_EEXIST ? "KEK version listed twice" : "too many KEK versions");
            rc = GW_EINVAL;
        } else if (rc != 0) {
            errf(errbuf, errlen, "keyring %s: out of memory", path);
        }
        goto out;
    }
    uint8_t *dst = NULL;
    bool *have = NULL;
    if (IS(0, "index")) {
        dst = p->sec.index;
        have = &p->have_index;
    } else if (IS(0, "token")) {
        dst = p->sec.token;
        have = &p->have_token;
    } else if (IS(0, "content")) {
        dst = p->sec.content;
        have = &p->have_content;
    } else if (IS(0, "audit")) {
        dst = p->sec.audit;
        have = &p->have_audit;
    } else if (IS(0, "watermark")) {
        dst = p->sec.watermark;
        have = &p->have_watermark;
    } else {
        errf(errbuf, errlen,
             "keyring %s:%zu: unknown item (expected kek, index, token, content, audit or "
             "watermark)",
             path, lineno);
        goto out;
    }
#undef IS
    if (nt != 2 || b64_decode32(tok[1], tlen[1], key) != 0) {
        errf(errbuf, errlen, "keyring %s:%zu: expected \"<name> <base64 of 32 bytes>\"", path,
             lineno);
        goto out;
    }
    if (*have) {
        errf(errbuf, errlen, "keyring %s:%zu: key listed twice", path, lineno);
        goto out;
    }
    memcpy(dst, key, GW_CRYPTO_KEY_LEN);
    *have = true;
    rc = 0;
out:
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

static int parse_file(struct parsed *p, const char *buf, size_t len, const char *path, char *errbuf,
                      size_t errlen)
{
    size_t lineno = 0;
    int rc = 0;
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t l = nl ? (size_t)(nl - (buf + i)) : len - i;
        const char *line = buf + i;
        i += l + (nl ? 1 : 0);
        lineno++;
        if (lineno == 1) {
            if (l != sizeof FILE_MAGIC - 1 || memcmp(line, FILE_MAGIC, l) != 0) {
                errf(errbuf, errlen, "keyring %s:1: first line must be \"%s\"", path, FILE_MAGIC);
                rc = GW_EINVAL;
                goto fail;
            }
            continue;
        }
        if (l == 0 || line[0] == '#')
            continue;
        rc = parse_line(p, line, l, lineno, path, errbuf, errlen);
        if (rc != 0)
            goto fail;
    }
    if (lineno == 0) {
        errf(errbuf, errlen, "keyring %s: empty file", path);
        rc = GW_EINVAL;
        goto fail;
    }
    if (p->n > 1)
        qsort(p->keks, p->n, sizeof *p->keks, fkek_cmp);
    bool any_active = false;
    for (size_t i = 0; i < p->n; i++)
        any_active |= p->keks[i].active;
    if (!any_active) {
        errf(errbuf, errlen, "keyring %s: no active KEK", path);
        rc = GW_EINVAL;
    } else if (!p->keks[p->n - 1].active) {
        errf(errbuf, errlen, "keyring %s: the newest KEK (version %u) is retired", path,
             p->keks[p->n - 1].version);
        rc = GW_EINVAL;
    } else if (!p->have_index || !p->have_token || !p->have_content) {
        errf(errbuf, errlen, "keyring %s: missing the %s key", path,
             !p->have_index   ? "index"
             : !p->have_token ? "token"
                              : "content");
        rc = GW_EINVAL;
    }
    if (rc != 0)
        goto fail;
    return 0;
fail:
    parsed_clear(p);
    return rc;
}

/* Checks an open key file: regular, owned by us, no group/other bits. */
static int check_fd(int fd, const char *path, char *errbuf, size_t errlen, struct stat *st)
{
    if (fstat(fd, st) != 0) {
        errf(errbuf, errlen, "keyring %s: %s", path, strerror(errno));
        return GW_EIO;
    }
    if (!S_ISREG(st->st_mode)) {
        errf(errbuf, errlen, "keyring %s: not a regular file", path);
        return GW_EIO;
    }
    if (st->st_uid != geteuid()) {
        errf(errbuf, errlen, "keyring %s: owned by uid %u, not by the current user (uid %u)", path,
             (unsigned)st->st_uid, (unsigned)geteuid());
        return GW_EPERM;
    }
    if (st->st_mode & 077) {
        errf(errbuf, errlen,
             "keyring %s: mode %04o gives access to group or others; run chmod 600 on it", path,
             (unsigned)(st->st_mode & 07777));
        return GW_EPERM;
    }
    return 0;
}

/* Reads and parses the key file behind fd. */
static int read_fd(int fd, const char *path, struct parsed *p, char *errbuf, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = check_fd(fd, path, errbuf, errlen, &st);
    if (rc != 0)
        return rc;
    if (st.st_size > FILE_MAX) {
        errf(errbuf, errlen, "keyring %s: larger than %d bytes", path, FILE_MAX);
        return GW_EINVAL;
    }
    cap = (size_t)st.st_size + 1;
    buf = gw_malloc(cap);
    if (!buf) {
        errf(errbuf, errlen, "keyring %s: out of memory", path);
        return GW_ENOMEM;
    }
    for (;;) {
        ssize_t r = pread(fd, buf + len, cap - len, (off_t)len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            errf(errbuf, errlen, "keyring %s: read: %s", path, strerror(errno));
            rc = GW_EIO;
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == cap) { /* the file grew while we read it */
            errf(errbuf, errlen, "keyring %s: changed while being read", path);
            rc = GW_EIO;
            goto out;
        }
    }
    rc = parse_file(p, buf, len, path, errbuf, errlen);
out:
    gw_free_wipe(buf, cap);
    return rc;
}

static int open_file(const char *path, int flags, char *errbuf, size_t errlen)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        errf(errbuf, errlen, "keyring %s: %s", path, strerror(errno));
    return fd;
}

int gw_keyring_file_load(const char *path, struct gw_keyring **out, char *errbuf, size_t errlen)
{
    struct parsed p;
    struct file_be *fb = NULL;
    struct gw_keyring_kek *keks = NULL;
    int rc = GW_ENOMEM;
    *out = NULL;
    memset(&p, 0, sizeof p);
    int fd = open_file(path, O_RDONLY, errbuf, errlen);
    if (fd < 0)
        return GW_EIO;
    rc = read_fd(fd, path, &p, errbuf, errlen);
    close(fd);
    if (rc != 0)
        return rc;
    rc = GW_ENOMEM;
    fb = gw_calloc(1, sizeof *fb);
    keks = gw_calloc(p.n, sizeof *keks);
    if (!fb || !keks)
        goto fail;
    fb->keks = secret_alloc(p.n * sizeof *fb->keks);
    if (!fb->keks)
        goto fail;
    memcpy(fb->keks, p.keks, p.n * sizeof *fb->keks);
    fb->n = p.n;
    for (size_t i = 0; i < p.n; i++) {
        keks[i].version = p.keks[i].version;
        keks[i].active = p.keks[i].active;
    }
    *out = gw_keyring_new(&file_backend, fb, keks, p.n, p.sec.index, p.sec.token, p.sec.content);
    if (*out)
        gw_keyring_set_extra(*out, p.have_audit ? p.sec.audit : NULL,
                             p.have_watermark ? p.sec.watermark : NULL);
    if (!*out)
        goto fail;
    fb = NULL;
    rc = 0;
fail:
    if (rc != 0)
        errf(errbuf, errlen, "keyring %s: out of memory", path);
    file_free(fb);
    gw_free(keks);
    parsed_clear(&p);
    return rc;
}

/* ---- writing ---- */

/* Serialises p into a gw_malloc'd buffer (the caller wipes it). */
static int serialise(const struct parsed *p, char **out, size_t *outlen)
{
    size_t cap = 256 + p->n * 80 + 5 * 64, len = 0;
    char *buf = gw_malloc(cap);
    unsigned char b64[B64_LEN + 1];
    if (!buf)
        return GW_ENOMEM;
    len += (size_t)snprintf(buf + len, cap - len,
                            "%s\n# Waygate keyring: written by waygatectl keys; keep mode 0600."
                            "\n# Retired KEKs keep only their version.\n",
                            FILE_MAGIC);
    for (size_t i = 0; i < p->n; i++) {
        if (p->keks[i].active) {
            EVP_EncodeBlock(b64, p->keks[i].key, GW_CRYPTO_KEY_LEN);
            len += (size_t)snprintf(buf + len, cap - len, "kek %u active %s\n", p->keks[i].version,
                                    (char *)b64);
        } else {
            len += (size_t)snprintf(buf + len, cap - len, "kek %u retired\n", p->keks[i].version);
        }
    }
    const uint8_t *keys[3] = {p->sec.index, p->sec.token, p->sec.content};
    const char *names[3] = {"index", "token", "content"};
    for (int k = 0; k < 3; k++) {
        EVP_EncodeBlock(b64, keys[k], GW_CRYPTO_KEY_LEN);
        len += (size_t)snprintf(buf + len, cap - len, "%s %s\n", names[k], (char *)b64);
    }
    if (p->have_audit) {
        EVP_EncodeBlock(b64, p->sec.audit, GW_CRYPTO_KEY_LEN);
        len += (size_t)snprintf(buf + len, cap - len, "audit %s\n", (char *)b64);
    }
    if (p->have_watermark) {
        EVP_EncodeBlock(b64, p->sec.watermark, GW_CRYPTO_KEY_LEN);
        len += (size_t)snprintf(buf + len, cap - len, "watermark %s\n", (char *)b64);
    }
    OPENSSL_cleanse(b64, sizeof b64);
    *out = buf;
    *outlen = len;
    return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static void fsync_dir(const char *path)
{
    char *dir = gw_strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash == dir)
        d = "/";
    else if (slash) {
        *slash = 0;
        d = dir;
    }
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    gw_free(dir);
}

/* Writes p to a temporary file beside path (mode 0600), fsyncs it and renames it over path. */
static int replace_file(const char *path, const struct parsed *p, char *errbuf, size_t errlen)
{
    char *buf = NULL, *tmp = NULL;
    size_t len = 0, tl = strlen(path) + 16;
    int fd = -1, rc = serialise(p, &buf, &len);
    if (rc != 0) {
        errf(errbuf, errlen, "keyring %s: out of memory", path);
        return rc;
    }
    rc = GW_EIO;
    tmp = gw_malloc(tl);
    if (!tmp) {
        rc = GW_ENOMEM;
        errf(errbuf, errlen, "keyring %s: out of memory", path);
        goto out;
    }
    snprintf(tmp, tl, "%s.tmp-XXXXXX", path);
    fd = mkostemp(tmp, O_CLOEXEC); /* creates with mode 0600 */
    if (fd < 0) {
        errf(errbuf, errlen, "keyring %s: cannot create a temporary file beside it: %s", path,
             strerror(errno));
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
        errf(errbuf, errlen, "keyring %s: writing the new file: %s", path, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        errf(errbuf, errlen, "keyring %s: writing the new file: %s", path, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        errf(errbuf, errlen, "keyring %s: rename: %s", path, strerror(errno));
        goto out;
    }
    gw_free(tmp);
    tmp = NULL;
    fsync_dir(path);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        gw_free(tmp);
    }
    gw_free_wipe(buf, len);
    return rc;
}

/* Opens path, takes an exclusive lock on it and parses it. The lock is held on the returned
 * descriptor until it is closed; a file replaced while we waited is opened again. */
static int lock_and_read(const char *path, struct parsed *p, int *fdout, char *errbuf,
                         size_t errlen)
{
    *fdout = -1;
    for (int attempt = 0; attempt < 20; attempt++) {
        struct stat a, b;
        int fd = open_file(path, O_RDONLY, errbuf, errlen);
        if (fd < 0)
            return GW_EIO;
        if (flock(fd, LOCK_EX) != 0) {
            errf(errbuf, errlen, "keyring %s: lock: %s", path, strerror(errno));
            close(fd);
            return GW_EIO;
        }
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            int rc = read_fd(fd, path, p, errbuf, errlen);
            if (rc != 0) {
                close(fd);
                return rc;
            }
            *fdout = fd;
            return 0;
        }
        close(fd); /* replaced by another writer while we waited: read the new one */
    }
    errf(errbuf, errlen, "keyring %s: keeps changing; another process is rewriting it", path);
    return GW_EIO;
}

static int random_key(uint8_t key[GW_CRYPTO_KEY_LEN])
{
    if (RAND_priv_bytes(key, GW_CRYPTO_KEY_LEN) != 1) {
        ERR_clear_error();
        return GW_ECRYPTO;
    }
    return 0;
}

int gw_keyring_file_init(const char *path, char *errbuf, size_t errlen)
{
    struct parsed p;
    uint8_t kek[GW_CRYPTO_KEY_LEN];
    char *buf = NULL;
    size_t len = 0;
    int fd = -1, rc;
    memset(&p, 0, sizeof p);
    if ((rc = random_key(kek)) != 0 || (rc = random_key(p.sec.index)) != 0 ||
        (rc = random_key(p.sec.token)) != 0 || (rc = random_key(p.sec.content)) != 0 ||
        (rc = random_key(p.sec.audit)) != 0 || (rc = random_key(p.sec.watermark)) != 0) {
        errf(errbuf, errlen, "keyring %s: the random generator failed", path);
        goto out;
    }
    p.have_index = p.have_token = p.have_content = p.have_audit = p.have_watermark = true;
    if ((rc = parsed_add(&p, 1, true, kek)) != 0 || (rc = serialise(&p, &buf, &len)) != 0) {
        errf(errbuf, errlen, "keyring %s: out of memory", path);
        goto out;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = errno == EEXIST ? GW_EEXIST : GW_EIO;
        errf(errbuf, errlen, "keyring %s: %s%s", path, strerror(errno),
             errno == EEXIST ? " (refusing to overwrite an existing keyring)" : "");
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, buf, len) != 0 || fsync(fd) != 0 || close(fd) != 0) {
        errf(errbuf, errlen, "keyring %s: write: %s", path, strerror(errno));
        fd = -1;
        unlink(path);
        rc = GW_EIO;
        goto out;
    }
    fd = -1;
    fsync_dir(path);
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    OPENSSL_cleanse(kek, sizeof kek);
    gw_free_wipe(buf, len);
    parsed_clear(&p);
    return rc;
}

int gw_keyring_file_rotate(const char *path, uint32_t *new_version, char *errbuf, size_t errlen)
{
    struct parsed p;
    uint8_t kek[GW_CRYPTO_KEY_LEN];
    int fd = -1;
    memset(&p, 0, sizeof p);
    *new_version = 0;
    int rc = lock_and_read(path, &p, &fd, errbuf, errlen);
    if (rc != 0)
        return rc;
    uint32_t v = p.keks[p.n - 1].version;
    if (v >= GW_KEYRING_MAX_VERSION) {
        errf(errbuf, errlen, "keyring %s: no KEK version left", path);
        rc = GW_EPRECOND;
        goto out;
    }
    if ((rc = random_key(kek)) != 0 || (!p.have_audit && (rc = random_key(p.sec.audit)) != 0) ||
        (!p.have_watermark && (rc = random_key(p.sec.watermark)) != 0)) {
        errf(errbuf, errlen, "keyring %s: the random generator failed", path);
        goto out;
    }
    p.have_audit = p.have_watermark = true; /* a file from before they existed gains them */
    rc = parsed_add(&p, v + 1, true, kek);
    if (rc != 0) {
        errf(errbuf, errlen, "keyring %s: %s", path,
             rc == GW_ETOOBIG ? "too many KEK versions: retire old ones" : "out of memory");
        goto out;
    }
    rc = replace_file(path, &p, errbuf, errlen);
    if (rc == 0)
        *new_version = v + 1;
out:
    OPENSSL_cleanse(kek, sizeof kek);
    parsed_clear(&p);
    close(fd);
    return rc;
}

int gw_keyring_file_retire(const char *path, uint32_t version, char *errbuf, size_t errlen)
{
    struct parsed p;
    int fd = -1;
    memset(&p, 0, sizeof p);
    int rc = lock_and_read(path, &p, &fd, errbuf, errlen);
    if (rc != 0)
        return rc;
    struct fkek *k = NULL;
    for (size_t i = 0; i < p.n; i++)
        if (p.keks[i].version == version)
            k = &p.keks[i];
    if (!k) {
        errf(errbuf, errlen, "keyring %s: no KEK version %u", path, version);
        rc = GW_ENOTFOUND;
    } else if (k == &p.keks[p.n - 1]) {
        errf(errbuf, errlen, "keyring %s: KEK version %u is the newest; rotate first, then rewrap",
             path, version);
        rc = GW_EPRECOND;
    } else if (k->active) {
        k->active = false;
        OPENSSL_cleanse(k->key, sizeof k->key);
        rc = replace_file(path, &p, errbuf, errlen);
    }
    parsed_clear(&p);
    close(fd);
    return rc;
}
