/* keyring_file.c: the key file backend of the keyring (format in keyring.h): loading with
 * permission, owner, syntax and per-suite completeness checks, and the CLI's
 * init/add-suite/rotate/retire as locked, atomic rewrites. Invariants: key bytes live only in
 * memory wiped before it is freed (and locked when allowed); no error message contains key bytes
 * or a line's content; a suite present in a file is complete or the file is refused; a rewrite
 * leaves no temporary copy of the keys, nor one an interrupted rewrite left. */
#include "keyring.h"

#include <ctype.h>
#include <dirent.h>
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
#include "file.h"

#define FILE_MAGIC "waygate-keyring 1"
#define FILE_MAX (1024 * 1024)
#define B64_LEN 44 /* base64 of 32 bytes, one '=' of padding */

struct secrets { /* the in-memory keys of one suite */
    uint8_t index[GW_CRYPTO_KEY_LEN];
    uint8_t token[GW_CRYPTO_KEY_LEN];
    uint8_t content[GW_CRYPTO_KEY_LEN];
    uint8_t audit[GW_CRYPTO_KEY_LEN];
};

/* One KEK of a parsed file (also the file backend's in-memory form). */
struct fkek {
    uint32_t version;
    bool active;
    uint8_t key[GW_CRYPTO_KEY_LEN]; /* zero when retired */
};

/* The items of one suite in a parsed file. */
struct pset {
    struct fkek *keks; /* secret memory */
    size_t n, cap;
    size_t first_line; /* the line of the suite's first item; 0: the file lacks the suite */
    bool have_index, have_token, have_content, have_audit;
    struct secrets sec;
};

/* A parsed key file. */
struct parsed {
    struct pset s[GW_SUITE_COUNT + 1]; /* indexed by enum gw_suite */
    bool have_watermark;
    uint8_t watermark[GW_CRYPTO_KEY_LEN];
};

static const enum gw_suite SUITES[GW_SUITE_COUNT] = {GW_SUITE_AES, GW_SUITE_SM};

/* SHA-256 of every key published in this repository: the known-answer fixtures' keyring
 * (tests/unit/data/golden/keyring, both suites). Anyone can read those keys, so a key file that
 * holds one protects nothing: every load refuses it except the known-answer test's
 * (GW_KEYRING_PUBLISHED_OK). A new fixture set lists its keys here;
 * unit:test_golden/test_keys_published checks that none is missing. */
static const uint8_t PUBLISHED[][32] = {
    /* kek */
    {0xb7, 0x8d, 0x45, 0xa0, 0xbc, 0xb2, 0xf6, 0x24, 0xf7, 0x15, 0x6c,
     0xff, 0x16, 0x16, 0x79, 0x28, 0xbf, 0x46, 0xf8, 0xab, 0xb3, 0xec,
     0x03, 0x68, 0x99, 0x54, 0xa1, 0x24, 0x7d, 0xb0, 0xd8, 0x1d},
    /* index */
    {0xe7, 0x2a, 0x00, 0xd9, 0x60, 0xbe, 0x5c, 0x43, 0xf3, 0xfa, 0x57,
     0x45, 0xde, 0x08, 0x92, 0x22, 0x80, 0x86, 0x2c, 0xf1, 0xf9, 0x89,
     0x33, 0xce, 0x48, 0xf0, 0x1e, 0x8b, 0xb5, 0xc5, 0xd2, 0xf4},
    /* token */
    {0x1b, 0x7f, 0x67, 0x8a, 0x47, 0xc5, 0xec, 0x15, 0x05, 0x2c, 0xc1,
     0x28, 0x4b, 0xc8, 0xb5, 0xa0, 0x97, 0x04, 0xbf, 0x1a, 0x8a, 0xdb,
     0xe7, 0x27, 0x06, 0x1c, 0x9c, 0x0d, 0x0e, 0x3e, 0xde, 0xed},
    /* content */
    {0x27, 0x52, 0x18, 0x13, 0x3a, 0x82, 0x09, 0x9e, 0xfc, 0x3f, 0xb6,
     0x9e, 0xf6, 0x93, 0xe9, 0xd8, 0xfd, 0xe3, 0xf9, 0x72, 0x56, 0xea,
     0x97, 0x2b, 0xaa, 0x58, 0x75, 0x32, 0xbd, 0x31, 0x98, 0x6d},
    /* audit */
    {0x8f, 0x8d, 0xab, 0xf5, 0xd4, 0x3a, 0x85, 0xa6, 0xf6, 0xba, 0x58,
     0xba, 0xff, 0x6b, 0x2d, 0x4b, 0xa5, 0x5c, 0xd0, 0x21, 0x15, 0xd2,
     0x0a, 0xe0, 0x58, 0x60, 0xa9, 0x90, 0x8c, 0xe5, 0xbd, 0x1c},
    /* watermark */
    {0x33, 0x71, 0x15, 0x99, 0x28, 0x42, 0x3b, 0x5a, 0x52, 0xbb, 0x73,
     0x07, 0x83, 0xed, 0x72, 0x6a, 0x74, 0x08, 0x95, 0x01, 0x05, 0xd5,
     0xa9, 0x80, 0xac, 0xc2, 0xba, 0x7b, 0x4c, 0xe1, 0xe2, 0xf8},
    /* sm.kek */
    {0xb9, 0x5a, 0x37, 0x3f, 0xbe, 0x9d, 0xc1, 0x16, 0xfa, 0x6b, 0x9d,
     0x53, 0xde, 0x7b, 0x8f, 0x25, 0x0e, 0x9d, 0x40, 0xa7, 0x08, 0x2f,
     0xbc, 0xa6, 0x37, 0xf3, 0x09, 0xf6, 0x9f, 0x43, 0x24, 0x00},
    /* sm.index */
    {0x02, 0x16, 0xb9, 0x74, 0xbb, 0x42, 0xb2, 0x3c, 0xc1, 0xf8, 0x97,
     0x4c, 0xbb, 0xcf, 0x64, 0x62, 0x4b, 0xb8, 0xf6, 0x63, 0xd6, 0xe9,
     0x60, 0xa7, 0x23, 0x2a, 0xf0, 0xfa, 0x2b, 0x42, 0x18, 0xd3},
    /* sm.token */
    {0x05, 0x15, 0x43, 0xdf, 0xff, 0x3d, 0x6c, 0xfb, 0xd8, 0xaa, 0xad,
     0xcc, 0x6e, 0x44, 0x92, 0xc7, 0x5d, 0x94, 0xac, 0xae, 0x01, 0xa4,
     0x58, 0x3f, 0x8c, 0xed, 0xaf, 0x60, 0x21, 0x91, 0xc8, 0x78},
    /* sm.content */
    {0x78, 0x72, 0x24, 0xb6, 0x2b, 0x4f, 0x5d, 0xfa, 0xa2, 0x20, 0xd5,
     0xa8, 0x01, 0x1f, 0x6c, 0x4d, 0x33, 0x5c, 0xd1, 0xb8, 0xdc, 0x60,
     0x0c, 0x19, 0xe2, 0xa0, 0x46, 0x79, 0x53, 0x63, 0x76, 0x73},
    /* sm.audit */
    {0x21, 0xa6, 0x77, 0x77, 0x7b, 0xaf, 0xe1, 0x03, 0x19, 0x59, 0x43,
     0x08, 0xac, 0x43, 0x1f, 0xe6, 0x89, 0x3f, 0x72, 0x01, 0x6a, 0x6c,
     0xda, 0x71, 0xcb, 0xbc, 0x7f, 0xb4, 0x4b, 0x4b, 0x31, 0x63},
};

/* The prefix of a suite's lines: "" for aes (the lines of files written before suites), "sm.". */
static const char *prefix(enum gw_suite s)
{
    return s == GW_SUITE_SM ? "sm." : "";
}

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
    for (int i = 0; i <= GW_SUITE_COUNT; i++)
        secret_free(p->s[i].keks, p->s[i].cap * sizeof *p->s[i].keks);
    OPENSSL_cleanse(p, sizeof *p);
    memset(p, 0, sizeof *p);
}

/* ---- the key file backend ---- */

struct file_be {
    struct fkek *keks[GW_SUITE_COUNT + 1]; /* secret memory, per suite */
    size_t n[GW_SUITE_COUNT + 1];
};

static const struct fkek *file_find(const struct file_be *fb, enum gw_suite suite, uint32_t version)
{
    if (suite != GW_SUITE_AES && suite != GW_SUITE_SM)
        return NULL;
    for (size_t i = 0; i < fb->n[suite]; i++)
        if (fb->keks[suite][i].version == version)
            return fb->keks[suite][i].active ? &fb->keks[suite][i] : NULL;
    return NULL;
}

static int file_wrap(void *be, struct gw_crypto *cx, enum gw_suite suite, uint32_t kek_version,
                     const uint8_t *aad, size_t aadlen, const uint8_t dek[GW_CRYPTO_DEK_LEN],
                     uint8_t out[GW_CRYPTO_WRAPPED_DEK_LEN])
{
    const struct fkek *k = file_find(be, suite, kek_version);
    size_t n = 0;
    if (!k)
        return GW_EPRECOND;
    return gw_crypto_seal_into(cx, suite, k->key, aad, aadlen, dek, GW_CRYPTO_DEK_LEN, out,
                               GW_CRYPTO_WRAPPED_DEK_LEN, &n);
}

static int file_unwrap(void *be, struct gw_crypto *cx, enum gw_suite suite, uint32_t kek_version,
                       const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t inlen,
                       uint8_t dek[GW_CRYPTO_DEK_LEN])
{
    const struct fkek *k = file_find(be, suite, kek_version);
    size_t n = 0;
    if (!k)
        return GW_EPRECOND;
    if (inlen != GW_CRYPTO_WRAPPED_DEK_LEN)
        return GW_EDATALOSS;
    int rc =
        gw_crypto_open_into(cx, suite, k->key, aad, aadlen, in, inlen, dek, GW_CRYPTO_DEK_LEN, &n);
    if (rc == 0 && n != GW_CRYPTO_DEK_LEN)
        rc = GW_EDATALOSS;
    return rc;
}

static int file_check(void *be, struct gw_crypto *cx, enum gw_suite suite, uint32_t kek_version,
                      uint8_t out[GW_CRYPTO_MAC_LEN])
{
    const struct fkek *k = file_find(be, suite, kek_version);
    if (!k)
        return GW_EPRECOND;
    return gw_crypto_hmac(cx, suite, k->key, GW_CRYPTO_KEY_LEN,
                          (const uint8_t *)GW_KEYRING_CHECK_LABEL,
                          sizeof(GW_KEYRING_CHECK_LABEL) - 1, out);
}

static void file_free(void *be)
{
    struct file_be *fb = be;
    if (!fb)
        return;
    for (int i = 0; i <= GW_SUITE_COUNT; i++)
        secret_free(fb->keks[i], fb->n[i] * sizeof *fb->keks[i]);
    gw_free(fb);
}

static const struct gw_keyring_backend file_backend = {
    .name = "file",
    .wrap = file_wrap,
    .unwrap = file_unwrap,
    .free = file_free,
    .check = file_check,
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

static int parsed_add(struct pset *p, uint32_t version, bool active, const uint8_t *key)
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

/* Parses a "kek" line (tokens after the name) of suite into ps. */
static int parse_kek(struct pset *ps, enum gw_suite suite, const char **tok, const size_t *tlen,
                     size_t nt, size_t lineno, const char *path, char *errbuf, size_t errlen)
{
    uint8_t key[GW_CRYPTO_KEY_LEN];
    uint32_t v = 0;
    int rc = GW_EINVAL;
#define IS(k, s) (tlen[k] == sizeof(s) - 1 && memcmp(tok[k], s, sizeof(s) - 1) == 0)
    bool active = nt == 4 && IS(2, "active");
    bool retired = nt == 3 && IS(2, "retired");
#undef IS
    if (!active && !retired) {
        errf(errbuf, errlen,
             "keyring %s:%zu: expected \"%skek <version> active <base64>\" "
             "or \"%skek <version> retired\"",
             path, lineno, prefix(suite), prefix(suite));
        goto out;
    }
    if (parse_version(tok[1], tlen[1], &v) != 0) {
        errf(errbuf, errlen, "keyring %s:%zu: KEK version must be an integer from 1 to %u", path,
             lineno, GW_KEYRING_MAX_VERSION);
        goto out;
    }
    if (active && b64_decode32(tok[3], tlen[3], key) != 0) {
        errf(errbuf, errlen, "keyring %s:%zu: KEK is not 32 bytes of canonical base64", path,
             lineno);
        goto out;
    }
    rc = parsed_add(ps, v, active, key);
    if (rc == GW_EEXIST || rc == GW_ETOOBIG) {
        errf(errbuf, errlen, "keyring %s:%zu: %s", path, lineno,
             rc == GW_EEXIST ? "KEK version listed twice" : "too many KEK versions");
        rc = GW_EINVAL;
    } else if (rc != 0) {
        errf(errbuf, errlen, "keyring %s: out of memory", path);
    }
out:
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

/* Parses one line (without its newline) of lineno. */
static int parse_line(struct parsed *p, const char *line, size_t len, size_t lineno,
                      const char *path, char *errbuf, size_t errlen)
{
    const char *tok[MAX_TOK];
    size_t tlen[MAX_TOK], nt = 0;
    uint8_t key[GW_CRYPTO_KEY_LEN];
    enum gw_suite suite = GW_SUITE_AES;
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
    if (tlen[0] > 3 && memcmp(tok[0], "sm.", 3) == 0) { /* an item of the sm suite */
        suite = GW_SUITE_SM;
        tok[0] += 3;
        tlen[0] -= 3;
    }
    struct pset *ps = &p->s[suite];
#define IS(k, s) (tlen[k] == sizeof(s) - 1 && memcmp(tok[k], s, sizeof(s) - 1) == 0)
    bool wm = suite == GW_SUITE_AES && IS(0, "watermark");
    if (!wm && ps->first_line == 0)
        ps->first_line = lineno;
    if (IS(0, "kek"))
        return parse_kek(ps, suite, tok, tlen, nt, lineno, path, errbuf, errlen);
    uint8_t *dst = NULL;
    bool *have = NULL;
    if (IS(0, "index")) {
        dst = ps->sec.index;
        have = &ps->have_index;
    } else if (IS(0, "token")) {
        dst = ps->sec.token;
        have = &ps->have_token;
    } else if (IS(0, "content")) {
        dst = ps->sec.content;
        have = &ps->have_content;
    } else if (IS(0, "audit")) {
        dst = ps->sec.audit;
        have = &ps->have_audit;
    } else if (wm) {
        dst = p->watermark;
        have = &p->have_watermark;
    } else {
        errf(errbuf, errlen,
             "keyring %s:%zu: unknown item (expected kek, index, token, content, audit or "
             "watermark, the first five also prefixed \"sm.\")",
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
    if (dst == ps->sec.audit && suite == GW_SUITE_SM && !gw_keyring_sm2_scalar_ok(key)) {
        errf(errbuf, errlen,
             "keyring %s:%zu: sm.audit is not an SM2 private key (a 32-byte big-endian scalar d, "
             "1 <= d <= n-2)",
             path, lineno);
        goto out;
    }
    memcpy(dst, key, GW_CRYPTO_KEY_LEN);
    *have = true;
    rc = 0;
out:
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

/* Checks that suite, present in p, is complete; the message names its first line. */
static int check_suite(struct pset *ps, enum gw_suite suite, const char *path, char *errbuf,
                       size_t errlen)
{
    const char *pre = prefix(suite), *name = gw_suite_name(suite);
    if (ps->n > 1)
        qsort(ps->keks, ps->n, sizeof *ps->keks, fkek_cmp);
    bool any_active = false;
    for (size_t i = 0; i < ps->n; i++)
        any_active |= ps->keks[i].active;
    if (!any_active) {
        errf(errbuf, errlen, "keyring %s:%zu: suite %s (from this line) has no active KEK", path,
             ps->first_line, name);
        return GW_EINVAL;
    }
    if (!ps->keks[ps->n - 1].active) {
        errf(errbuf, errlen,
             "keyring %s:%zu: suite %s (from this line): the newest KEK (version %u) is retired",
             path, ps->first_line, name, ps->keks[ps->n - 1].version);
        return GW_EINVAL;
    }
    if (!ps->have_index || !ps->have_token || !ps->have_content) {
        errf(errbuf, errlen,
             "keyring %s:%zu: suite %s (from this line) is incomplete: missing the %s%s key (a "
             "suite needs kek, index, token and content)",
             path, ps->first_line, name, pre,
             !ps->have_index   ? "index"
             : !ps->have_token ? "token"
                               : "content");
        return GW_EINVAL;
    }
    return 0;
}

int gw_keyring_key_published(const uint8_t key[GW_CRYPTO_KEY_LEN])
{
    uint8_t md[32];
    unsigned int mdlen = 0;
    int rc = 0;
    if (EVP_Digest(key, GW_CRYPTO_KEY_LEN, md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != sizeof md) {
        ERR_clear_error();
        return GW_ECRYPTO;
    }
    for (size_t i = 0; i < sizeof PUBLISHED / sizeof PUBLISHED[0]; i++)
        if (CRYPTO_memcmp(md, PUBLISHED[i], sizeof md) == 0)
            rc = 1;
    OPENSSL_cleanse(md, sizeof md);
    return rc;
}

/* Whether key, the item named pre+name (+ " version v" when v), is a published key: 0 when it
 * is not; otherwise GW_EPRECOND (or GW_ECRYPTO) with the message in errbuf. */
static int refuse_published(const uint8_t *key, const char *pre, const char *name, uint32_t v,
                            const char *path, char *errbuf, size_t errlen)
{
    int rc = gw_keyring_key_published(key);
    if (rc == 0)
        return 0;
    if (rc < 0) {
        errf(errbuf, errlen, "keyring %s: could not compare its keys with the published test keys",
             path);
        return rc;
    }
    char ver[32] = "";
    if (v != 0)
        snprintf(ver, sizeof ver, " version %u", v);
    errf(errbuf, errlen,
         "keyring %s: its %s%s key%s is a test key published in Waygate's source code, which "
         "anyone can read; make a keyring of your own with waygatectl keys init",
         path, pre, name, ver);
    return GW_EPRECOND;
}

/* Refuses a parsed file that holds any key of PUBLISHED. */
static int check_published(const struct parsed *p, const char *path, char *errbuf, size_t errlen)
{
    int rc = 0;
    for (int i = 0; i < GW_SUITE_COUNT && rc == 0; i++) {
        const struct pset *ps = &p->s[SUITES[i]];
        const char *pre = prefix(SUITES[i]);
        if (ps->first_line == 0)
            continue;
        for (size_t k = 0; k < ps->n && rc == 0; k++)
            if (ps->keks[k].active)
                rc = refuse_published(ps->keks[k].key, pre, "kek", ps->keks[k].version, path,
                                      errbuf, errlen);
        const struct {
            bool have;
            const uint8_t *key;
            const char *name;
        } items[] = {{ps->have_index, ps->sec.index, "index"},
                     {ps->have_token, ps->sec.token, "token"},
                     {ps->have_content, ps->sec.content, "content"},
                     {ps->have_audit, ps->sec.audit, "audit"}};
        for (size_t k = 0; k < sizeof items / sizeof items[0] && rc == 0; k++)
            if (items[k].have)
                rc = refuse_published(items[k].key, pre, items[k].name, 0, path, errbuf, errlen);
    }
    if (rc == 0 && p->have_watermark)
        rc = refuse_published(p->watermark, "", "watermark", 0, path, errbuf, errlen);
    return rc;
}

static int parse_file(struct parsed *p, const char *buf, size_t len, const char *path,
                      unsigned flags, char *errbuf, size_t errlen)
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
    bool any = false;
    for (int i = 0; i < GW_SUITE_COUNT && rc == 0; i++) {
        struct pset *ps = &p->s[SUITES[i]];
        if (ps->first_line == 0)
            continue;
        any = true;
        rc = check_suite(ps, SUITES[i], path, errbuf, errlen);
    }
    if (rc == 0 && !any) {
        errf(errbuf, errlen,
             "keyring %s: no keys (a key file holds the aes suite, the sm suite or both)", path);
        rc = GW_EINVAL;
    }
    if (rc == 0 && !(flags & GW_KEYRING_PUBLISHED_OK))
        rc = check_published(p, path, errbuf, errlen);
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
static int read_fd(int fd, const char *path, unsigned flags, struct parsed *p, char *errbuf,
                   size_t errlen)
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
    rc = parse_file(p, buf, len, path, flags, errbuf, errlen);
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

/* The public view of a suite's KEKs (versions and states), gw_calloc'd; NULL on failure. */
static struct gw_keyring_kek *kek_list(const struct pset *ps)
{
    struct gw_keyring_kek *keks = gw_calloc(ps->n, sizeof *keks);
    for (size_t i = 0; keks && i < ps->n; i++) {
        keks[i].version = ps->keks[i].version;
        keks[i].active = ps->keks[i].active;
    }
    return keks;
}

/* Adds suite of p to the keyring *kr (built on the first suite, over fb). */
static int load_suite(struct gw_keyring **kr, struct file_be *fb, struct pset *ps,
                      enum gw_suite suite)
{
    struct gw_keyring_kek *keks = kek_list(ps);
    struct gw_keyring_set set = {
        keks,          ps->n,           ps->sec.index,
        ps->sec.token, ps->sec.content, ps->have_audit ? ps->sec.audit : NULL};
    int rc = GW_ENOMEM;
    if (!keks)
        return GW_ENOMEM;
    fb->keks[suite] = secret_alloc(ps->n * sizeof *fb->keks[suite]);
    if (!fb->keks[suite])
        goto out;
    memcpy(fb->keks[suite], ps->keks, ps->n * sizeof *fb->keks[suite]);
    fb->n[suite] = ps->n;
    if (*kr == NULL) {
        *kr = gw_keyring_new(&file_backend, fb, suite, &set);
        rc = *kr ? 0 : GW_ENOMEM;
    } else {
        rc = gw_keyring_add_suite(*kr, suite, &set);
    }
out:
    gw_free(keks);
    return rc;
}

int gw_keyring_file_load(const char *path, struct gw_keyring **out, char *errbuf, size_t errlen)
{
    return gw_keyring_file_load_flags(path, 0, out, errbuf, errlen);
}

int gw_keyring_file_load_flags(const char *path, unsigned flags, struct gw_keyring **out,
                               char *errbuf, size_t errlen)
{
    struct parsed p;
    struct file_be *fb = NULL;
    struct gw_keyring *kr = NULL;
    int rc = GW_ENOMEM;
    *out = NULL;
    memset(&p, 0, sizeof p);
    int fd = open_file(path, O_RDONLY, errbuf, errlen);
    if (fd < 0)
        return GW_EIO;
    rc = read_fd(fd, path, flags, &p, errbuf, errlen);
    close(fd);
    if (rc != 0)
        return rc;
    fb = gw_calloc(1, sizeof *fb);
    rc = fb ? 0 : GW_ENOMEM;
    for (int i = 0; i < GW_SUITE_COUNT && rc == 0; i++)
        if (p.s[SUITES[i]].first_line != 0)
            rc = load_suite(&kr, fb, &p.s[SUITES[i]], SUITES[i]);
    if (rc == 0) {
        gw_keyring_set_watermark(kr, p.have_watermark ? p.watermark : NULL);
        if (p.have_watermark && !gw_keyring_watermark_key(kr))
            rc = GW_ENOMEM;
    }
    if (rc != 0) {
        errf(errbuf, errlen, "keyring %s: out of memory", path);
        if (kr)
            gw_keyring_free(kr); /* frees fb, which it owns */
        else
            file_free(fb);
    } else {
        *out = kr;
    }
    parsed_clear(&p);
    return rc;
}

/* ---- writing ---- */

static size_t put_key(char *buf, size_t cap, size_t len, const char *pre, const char *name,
                      const uint8_t key[GW_CRYPTO_KEY_LEN])
{
    unsigned char b64[B64_LEN + 1];
    EVP_EncodeBlock(b64, key, GW_CRYPTO_KEY_LEN);
    len += (size_t)snprintf(buf + len, cap - len, "%s%s %s\n", pre, name, (char *)b64);
    OPENSSL_cleanse(b64, sizeof b64);
    return len;
}

/* Appends the lines of suite ps (present) to buf. */
static size_t put_suite(char *buf, size_t cap, size_t len, const struct pset *ps,
                        enum gw_suite suite)
{
    const char *pre = prefix(suite);
    for (size_t i = 0; i < ps->n; i++) {
        if (ps->keks[i].active) {
            unsigned char b64[B64_LEN + 1];
            EVP_EncodeBlock(b64, ps->keks[i].key, GW_CRYPTO_KEY_LEN);
            len += (size_t)snprintf(buf + len, cap - len, "%skek %u active %s\n", pre,
                                    ps->keks[i].version, (char *)b64);
            OPENSSL_cleanse(b64, sizeof b64);
        } else {
            len += (size_t)snprintf(buf + len, cap - len, "%skek %u retired\n", pre,
                                    ps->keks[i].version);
        }
    }
    len = put_key(buf, cap, len, pre, "index", ps->sec.index);
    len = put_key(buf, cap, len, pre, "token", ps->sec.token);
    len = put_key(buf, cap, len, pre, "content", ps->sec.content);
    if (ps->have_audit)
        len = put_key(buf, cap, len, pre, "audit", ps->sec.audit);
    return len;
}

/* Serialises p into a gw_malloc'd buffer (the caller wipes it): the aes suite, the watermark
 * key, the sm suite (an aes-only file reads as files written before suites). */
static int serialise(const struct parsed *p, char **out, size_t *outlen)
{
    size_t cap = 512 + 6 * 80, len = 0;
    for (int i = 0; i <= GW_SUITE_COUNT; i++)
        cap += p->s[i].n * 80;
    char *buf = gw_malloc(cap);
    if (!buf)
        return GW_ENOMEM;
    len += (size_t)snprintf(buf + len, cap - len,
                            "%s\n# Waygate keyring: written by waygatectl keys; keep mode 0600."
                            "\n# Retired KEKs keep only their version.\n",
                            FILE_MAGIC);
    if (p->s[GW_SUITE_AES].first_line != 0)
        len = put_suite(buf, cap, len, &p->s[GW_SUITE_AES], GW_SUITE_AES);
    if (p->have_watermark)
        len = put_key(buf, cap, len, "", "watermark", p->watermark);
    if (p->s[GW_SUITE_SM].first_line != 0)
        len = put_suite(buf, cap, len, &p->s[GW_SUITE_SM], GW_SUITE_SM);
    *out = buf;
    *outlen = len;
    return 0;
}

/* After the key file is written and named: a directory that cannot be synced only puts the new
 * name at risk in a crash, which is not a reason to report the change as failed. */
static void fsync_dir(const char *path)
{
    char err[256];
    if (gw_file_sync_dir(path, err, sizeof err) != 0)
        return;
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
    if (fchmod(fd, 0600) != 0 || gw_file_write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
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

/* Removes what a writer killed between writing its temporary file and renaming it (SIGKILL, a
 * crash) left beside path: PATH.tmp-XXXXXX (mkostemp's six letters and digits), a copy of every
 * key of the file, KEKs included, which would keep a KEK retired later on disk. Called with the
 * file's lock held: each writer writes its temporary file under that lock, so none is between
 * the two steps now. Only regular files of ours with exactly that name go; best effort. */
static void remove_leftovers(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t bl = strlen(base), dl = slash ? (size_t)(slash - path) : 0;
    char *dir = gw_malloc(dl + 2);
    DIR *d = NULL;
    struct dirent *e;
    if (!dir)
        return;
    if (!slash)
        memcpy(dir, ".", 2);
    else if (dl == 0)
        memcpy(dir, "/", 2);
    else {
        memcpy(dir, path, dl);
        dir[dl] = '\0';
    }
    d = opendir(dir);
    gw_free(dir);
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        struct stat st;
        bool ours =
            strlen(n) == bl + 11 && memcmp(n, base, bl) == 0 && memcmp(n + bl, ".tmp-", 5) == 0;
        for (size_t i = bl + 5; ours && i < bl + 11; i++)
            ours = isalnum((unsigned char)n[i]) != 0;
        if (ours && fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            st.st_uid == geteuid())
            (void)unlinkat(dirfd(d), n, 0);
    }
    closedir(d);
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
            int rc = read_fd(fd, path, 0, p, errbuf, errlen);
            if (rc != 0) {
                close(fd);
                return rc;
            }
            remove_leftovers(path);
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

/* A fresh audit key of suite: aes an Ed25519 seed (any 32 bytes), sm an SM2 scalar in
 * [1, n-2] (rejection sampling: a draw falls outside with probability about 2^-32). */
static int random_audit(enum gw_suite suite, uint8_t key[GW_CRYPTO_KEY_LEN])
{
    for (int i = 0; i < 64; i++) {
        int rc = random_key(key);
        if (rc != 0 || suite != GW_SUITE_SM || gw_keyring_sm2_scalar_ok(key))
            return rc;
    }
    return GW_ECRYPTO;
}

static bool suite_valid(enum gw_suite s)
{
    return s == GW_SUITE_AES || s == GW_SUITE_SM;
}

/* Fills ps with a fresh complete set: KEK version 1, index, token, content and audit keys. */
static int fresh_set(struct pset *ps, enum gw_suite suite)
{
    uint8_t kek[GW_CRYPTO_KEY_LEN];
    int rc;
    if ((rc = random_key(kek)) != 0 || (rc = random_key(ps->sec.index)) != 0 ||
        (rc = random_key(ps->sec.token)) != 0 || (rc = random_key(ps->sec.content)) != 0 ||
        (rc = random_audit(suite, ps->sec.audit)) != 0)
        goto out;
    ps->have_index = ps->have_token = ps->have_content = ps->have_audit = true;
    ps->first_line = 1; /* present */
    rc = parsed_add(ps, 1, true, kek);
out:
    OPENSSL_cleanse(kek, sizeof kek);
    return rc;
}

int gw_keyring_file_init(const char *path, enum gw_suite suite, char *errbuf, size_t errlen)
{
    struct parsed p;
    char *buf = NULL;
    size_t len = 0;
    int fd = -1, rc;
    memset(&p, 0, sizeof p);
    if (!suite_valid(suite)) {
        errf(errbuf, errlen, "keyring %s: unknown suite", path);
        return GW_EINVAL;
    }
    if ((rc = fresh_set(&p.s[suite], suite)) != 0 || (rc = random_key(p.watermark)) != 0) {
        errf(errbuf, errlen, "keyring %s: %s", path,
             rc == GW_ENOMEM ? "out of memory" : "the random generator failed");
        goto out;
    }
    p.have_watermark = true;
    if ((rc = serialise(&p, &buf, &len)) != 0) {
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
    if (fchmod(fd, 0600) != 0 || gw_file_write_all(fd, buf, len) != 0 || fsync(fd) != 0 ||
        close(fd) != 0) {
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
    gw_free_wipe(buf, len);
    parsed_clear(&p);
    return rc;
}

int gw_keyring_file_add_suite(const char *path, enum gw_suite suite, char *errbuf, size_t errlen)
{
    struct parsed p;
    int fd = -1;
    memset(&p, 0, sizeof p);
    if (!suite_valid(suite)) {
        errf(errbuf, errlen, "keyring %s: unknown suite", path);
        return GW_EINVAL;
    }
    int rc = lock_and_read(path, &p, &fd, errbuf, errlen);
    if (rc != 0)
        return rc;
    if (p.s[suite].first_line != 0) {
        errf(errbuf, errlen, "keyring %s: already holds the %s suite", path, gw_suite_name(suite));
        rc = GW_EEXIST;
        goto out;
    }
    if ((rc = fresh_set(&p.s[suite], suite)) != 0 ||
        (!p.have_watermark && (rc = random_key(p.watermark)) != 0)) {
        errf(errbuf, errlen, "keyring %s: %s", path,
             rc == GW_ENOMEM ? "out of memory" : "the random generator failed");
        goto out;
    }
    p.have_watermark = true;
    rc = replace_file(path, &p, errbuf, errlen);
out:
    parsed_clear(&p);
    close(fd);
    return rc;
}

/* The suite of a key file being edited, or NULL (message written) when the file lacks it. */
static struct pset *edit_suite(struct parsed *p, enum gw_suite suite, const char *path,
                               char *errbuf, size_t errlen)
{
    if (!suite_valid(suite)) {
        errf(errbuf, errlen, "keyring %s: unknown suite", path);
        return NULL;
    }
    if (p->s[suite].first_line == 0) {
        errf(errbuf, errlen, "keyring %s: has no keys of the %s suite (keys add-suite --suite %s)",
             path, gw_suite_name(suite), gw_suite_name(suite));
        return NULL;
    }
    return &p->s[suite];
}

int gw_keyring_file_rotate(const char *path, enum gw_suite suite, uint32_t *new_version,
                           char *errbuf, size_t errlen)
{
    struct parsed p;
    uint8_t kek[GW_CRYPTO_KEY_LEN];
    int fd = -1;
    memset(&p, 0, sizeof p);
    memset(kek, 0, sizeof kek);
    *new_version = 0;
    int rc = lock_and_read(path, &p, &fd, errbuf, errlen);
    if (rc != 0)
        return rc;
    struct pset *ps = edit_suite(&p, suite, path, errbuf, errlen);
    if (!ps) {
        rc = GW_EPRECOND;
        goto out;
    }
    uint32_t v = ps->keks[ps->n - 1].version;
    if (v >= GW_KEYRING_MAX_VERSION) {
        errf(errbuf, errlen, "keyring %s: no KEK version left", path);
        rc = GW_EPRECOND;
        goto out;
    }
    if ((rc = random_key(kek)) != 0 ||
        (!ps->have_audit && (rc = random_audit(suite, ps->sec.audit)) != 0) ||
        (!p.have_watermark && (rc = random_key(p.watermark)) != 0)) {
        errf(errbuf, errlen, "keyring %s: the random generator failed", path);
        goto out;
    }
    ps->have_audit = p.have_watermark = true; /* a file from before they existed gains them */
    rc = parsed_add(ps, v + 1, true, kek);
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

int gw_keyring_file_retire(const char *path, enum gw_suite suite, uint32_t version, char *errbuf,
                           size_t errlen)
{
    struct parsed p;
    int fd = -1;
    memset(&p, 0, sizeof p);
    int rc = lock_and_read(path, &p, &fd, errbuf, errlen);
    if (rc != 0)
        return rc;
    struct pset *ps = edit_suite(&p, suite, path, errbuf, errlen);
    struct fkek *k = NULL;
    for (size_t i = 0; ps && i < ps->n; i++)
        if (ps->keks[i].version == version)
            k = &ps->keks[i];
    if (!ps) {
        rc = GW_EPRECOND;
    } else if (!k) {
        errf(errbuf, errlen, "keyring %s: no %s KEK version %u", path, gw_suite_name(suite),
             version);
        rc = GW_ENOTFOUND;
    } else if (k == &ps->keks[ps->n - 1]) {
        errf(errbuf, errlen,
             "keyring %s: %s KEK version %u is the newest; rotate first, then rewrap", path,
             gw_suite_name(suite), version);
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
