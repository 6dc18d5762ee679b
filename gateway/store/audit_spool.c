/* audit_spool.c: the audit spool's format, its MAC and its file (audit_spool.h). A spool being
 * written holds its entries encoded, one after the other; a spool read holds each entry decoded
 * into one block of its own (a first pass over the entry measures the block, a second fills it).
 * Invariant: nothing is decoded before the whole file's MAC verified, and a file that fails any
 * check yields no entry. */
#include "audit_spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "alloc.h"
#include "file.h"

#define MAGIC "WGSPOOL2"
#define MAGIC_V1 "WGSPOOL1" /* read, never written: its entries carry no mark */
#define MAGIC_LEN 8
#define FLAG_DOUBT 1u
#define REC_TEXTS 12
#define CHAIN_MAX 64

struct sentry {
    struct gw_audit_left e; /* pointers into block */
    char *block;
    size_t block_len;
};

struct gw_audit_spool {
    uint8_t *buf; /* written: the entries, encoded */
    size_t len, cap;
    size_t n;
    struct sentry *ents;               /* read: n decoded entries */
    int version;                       /* read: the file's (1 or 2) */
    uint8_t id[GW_AUDIT_SPOOL_ID_LEN]; /* written: the mark of the entries added unmarked */
};

size_t gw_audit_spool_cap(size_t entries)
{
    return MAGIC_LEN + 1 + CHAIN_MAX + 4 + GW_CRYPTO_MAC_LEN + 4 + GW_AUDIT_SPOOL_ENTRY_MAX +
           entries * (4 + (size_t)GW_AUDIT_SPOOL_ENTRY_BUDGET);
}

struct gw_audit_spool *gw_audit_spool_new(int *err)
{
    struct gw_audit_spool *sp = gw_calloc(1, sizeof(struct gw_audit_spool));
    int rc = sp == NULL ? GW_ENOMEM : 0;

    if (sp != NULL && RAND_bytes(sp->id, sizeof sp->id) != 1) {
        gw_free(sp);
        sp = NULL;
        rc = GW_ECRYPTO;
    }
    if (sp != NULL)
        sp->version = 2;
    if (err != NULL)
        *err = rc;
    return sp;
}

int gw_audit_spool_version(const struct gw_audit_spool *sp)
{
    return sp->version;
}

bool gw_audit_spool_marked(const struct gw_audit_left *e)
{
    const struct gw_db_stmt *s = &e->stmts[0];

    if (e->nstmts < 1 || s->sql == NULL || strcmp(s->sql, GW_AUDIT_SPOOL_MARK_SQL) != 0 ||
        s->nparams != 2 || s->values == NULL || s->values[0] == NULL || s->values[1] == NULL ||
        s->formats == NULL || s->formats[0] != 1 || s->formats[1] != 0 || s->lengths == NULL ||
        s->lengths[0] != GW_AUDIT_SPOOL_ID_LEN)
        return false;
    for (const char *d = s->values[1];; d++) /* the index: decimal (an integer column) */
        if (*d < '0' || *d > '9')
            return *d == '\0' && d > s->values[1] && d - s->values[1] <= 10;
}

bool gw_audit_spool_met_mark(const struct gw_db_result *res)
{
    return res != NULL && res->failed_stmt == 0 && res->sqlstate != NULL &&
           strcmp(res->sqlstate, "23505") == 0;
}

void gw_audit_spool_free(struct gw_audit_spool *sp)
{
    if (sp == NULL)
        return;
    gw_free_wipe(sp->buf, sp->cap);
    for (size_t i = 0; sp->ents != NULL && i < sp->n; i++)
        gw_free_wipe(sp->ents[i].block, sp->ents[i].block_len);
    gw_free(sp->ents);
    gw_free(sp);
}

size_t gw_audit_spool_count(const struct gw_audit_spool *sp)
{
    return sp->n;
}

const struct gw_audit_left *gw_audit_spool_entry(const struct gw_audit_spool *sp, size_t i)
{
    return sp->ents != NULL && i < sp->n ? &sp->ents[i].e : NULL;
}

/* ---- writing ---- */

static bool reserve(struct gw_audit_spool *sp, size_t more)
{
    size_t cap = sp->cap ? sp->cap : 4096;
    uint8_t *b;

    if (sp->len + more <= sp->cap)
        return true;
    while (cap < sp->len + more)
        cap *= 2;
    b = gw_malloc(cap);
    if (b == NULL)
        return false;
    if (sp->len)
        memcpy(b, sp->buf, sp->len);
    gw_free_wipe(sp->buf, sp->cap); /* moved, the old copy wiped */
    sp->buf = b;
    sp->cap = cap;
    return true;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* Appends v as n big-endian bytes (room reserved by the caller's measure). */
static void put_uint(struct gw_audit_spool *sp, uint64_t v, int n)
{
    put_be(sp->buf + sp->len, v, n);
    sp->len += (size_t)n;
}

static void put_bytes(struct gw_audit_spool *sp, const void *p, size_t n)
{
    if (n)
        memcpy(sp->buf + sp->len, p, n);
    sp->len += n;
}

/* A record's texts in the format's order. */
static void rec_texts(const struct gw_audit_rec *r, const char *t[REC_TEXTS])
{
    const char *v[REC_TEXTS] = {r->actor,       r->role,     r->peer,    r->cert,
                                r->branch,      r->action,   r->object,  r->purpose,
                                r->legal_basis, r->approval, r->outcome, r->detail};
    memcpy(t, v, sizeof v);
}

static size_t param_len(const struct gw_db_stmt *s, int i)
{
    return s->formats && s->formats[i] == 1 ? (size_t)(s->lengths ? s->lengths[i] : 0)
                                            : strlen(s->values[i]);
}

/* The encoded size of e's body, or 0 when e breaks a bound. */
static size_t measure(const struct gw_audit_left *e)
{
    size_t n = 1 + (e->in_doubt ? 8 + GW_AUDIT_HASH_LEN : 0) + 2;

    if (e->nstmts < 0 || e->nstmts > GW_AUDIT_STMTS_MAX || e->nrecs < 1 ||
        e->nrecs > GW_AUDIT_RECS_MAX)
        return 0;
    for (int i = 0; i < e->nstmts; i++) {
        const struct gw_db_stmt *s = &e->stmts[i];
        if (s->sql == NULL || s->nparams < 0 || s->nparams > 65535 ||
            (s->nparams > 0 && s->values == NULL))
            return 0;
        n += 4 + strlen(s->sql) + 1 + 2;
        for (int j = 0; j < s->nparams; j++)
            n += 1 + (s->values[j] != NULL ? 4 + param_len(s, j) : 0);
    }
    for (int i = 0; i < e->nrecs; i++) {
        const char *t[REC_TEXTS];
        rec_texts(&e->recs[i], t);
        for (int j = 0; j < REC_TEXTS; j++) {
            if (t[j] != NULL && strlen(t[j]) > 65535)
                return 0;
            n += 1 + (t[j] != NULL ? 2 + strlen(t[j]) : 0);
        }
        n += 8 + 1;
    }
    return n <= GW_AUDIT_SPOOL_ENTRY_MAX ? n : 0;
}

/* e with its mark first: this spool's id and index idx (as text in txt). */
static void mark(const struct gw_audit_spool *sp, const struct gw_audit_left *e, size_t idx,
                 char txt[12], const char *v[2], struct gw_audit_left *out)
{
    static const int lens[2] = {GW_AUDIT_SPOOL_ID_LEN, 0}, fmts[2] = {1, 0};

    snprintf(txt, 12, "%zu", idx);
    v[0] = (const char *)sp->id;
    v[1] = txt;
    *out = *e;
    out->stmts[0] = (struct gw_db_stmt){GW_AUDIT_SPOOL_MARK_SQL, 2, v, lens, fmts, 0};
    for (int i = 0; i < e->nstmts; i++)
        out->stmts[i + 1] = e->stmts[i];
    out->nstmts = e->nstmts + 1;
}

int gw_audit_spool_add(struct gw_audit_spool *sp, const struct gw_audit_left *le)
{
    struct gw_audit_left m;
    const struct gw_audit_left *e = le;
    const char *v[2];
    char txt[12];
    size_t body;

    /* an entry carried from an earlier spool keeps its mark: written at most once whichever
     * file holds it */
    if (!gw_audit_spool_marked(le)) {
        if (le->nstmts < 0 || le->nstmts >= GW_AUDIT_STMTS_MAX || sp->n > INT32_MAX)
            return GW_EINVAL;
        mark(sp, le, sp->n, txt, v, &m);
        e = &m;
    }
    body = measure(e);
    if (body == 0 || sp->ents != NULL)
        return GW_EINVAL;
    if (!reserve(sp, 4 + body))
        return GW_ENOMEM;
    put_uint(sp, body, 4);
    put_uint(sp, e->in_doubt ? FLAG_DOUBT : 0, 1);
    if (e->in_doubt) {
        put_uint(sp, (uint64_t)e->doubt_seq, 8);
        put_bytes(sp, e->doubt_hash, GW_AUDIT_HASH_LEN);
    }
    put_uint(sp, (uint64_t)e->nstmts, 1);
    put_uint(sp, (uint64_t)e->nrecs, 1);
    for (int i = 0; i < e->nstmts; i++) {
        const struct gw_db_stmt *s = &e->stmts[i];
        put_uint(sp, strlen(s->sql), 4);
        put_bytes(sp, s->sql, strlen(s->sql));
        put_uint(sp, s->result_format == 1, 1);
        put_uint(sp, (uint64_t)s->nparams, 2);
        for (int j = 0; j < s->nparams; j++) {
            if (s->values[j] == NULL) {
                put_uint(sp, 0, 1);
                continue;
            }
            put_uint(sp, s->formats && s->formats[j] == 1 ? 2 : 1, 1);
            put_uint(sp, param_len(s, j), 4);
            put_bytes(sp, s->values[j], param_len(s, j));
        }
    }
    for (int i = 0; i < e->nrecs; i++) {
        const char *t[REC_TEXTS];
        rec_texts(&e->recs[i], t);
        for (int j = 0; j < REC_TEXTS; j++) {
            put_uint(sp, t[j] != NULL, 1);
            if (t[j] != NULL) {
                put_uint(sp, strlen(t[j]), 2);
                put_bytes(sp, t[j], strlen(t[j]));
            }
        }
        put_uint(sp, (uint64_t)(e->recs[i].count < 0 ? -1 : e->recs[i].count), 8);
        put_uint(sp, e->recs[i].confidential, 1);
    }
    sp->n++;
    return 0;
}

static bool chain_ok(const char *chain)
{
    return chain != NULL && chain[0] != '\0' && strlen(chain) <= CHAIN_MAX;
}

int gw_audit_spool_encode(const struct gw_audit_spool *sp, struct gw_crypto *cx,
                          const struct gw_audit_mac_keys *keys, const char *chain, uint8_t **out,
                          size_t *len)
{
    size_t cl = chain_ok(chain) ? strlen(chain) : 0, n;
    uint8_t *b;

    *out = NULL;
    *len = 0;
    if (cl == 0 || keys == NULL || keys->n < 1 || sp->ents != NULL)
        return GW_EINVAL;
    n = MAGIC_LEN + 1 + cl + 4 + sp->len + GW_CRYPTO_MAC_LEN;
    if (sp->n > UINT32_MAX || (b = gw_malloc(n)) == NULL)
        return GW_ENOMEM;
    memcpy(b, MAGIC, MAGIC_LEN);
    b[MAGIC_LEN] = (uint8_t)cl;
    memcpy(b + MAGIC_LEN + 1, chain, cl);
    put_be(b + MAGIC_LEN + 1 + cl, sp->n, 4);
    if (sp->len)
        memcpy(b + MAGIC_LEN + 1 + cl + 4, sp->buf, sp->len);
    if (gw_audit_writer_mac(cx, keys->alg[0], keys->key[0], b, n - GW_CRYPTO_MAC_LEN,
                            b + n - GW_CRYPTO_MAC_LEN) != 0) {
        gw_free_wipe(b, n);
        return GW_ECRYPTO;
    }
    *out = b;
    *len = n;
    return 0;
}

/* ---- reading ---- */

struct rd {
    const uint8_t *p;
    size_t left;
    bool bad; /* read past the end */
};

static uint64_t get_uint(struct rd *r, int n)
{
    uint64_t v = 0;

    if (r->bad || r->left < (size_t)n) {
        r->bad = true;
        return 0;
    }
    for (int i = 0; i < n; i++)
        v = v << 8 | r->p[i];
    r->p += n;
    r->left -= (size_t)n;
    return v;
}

static const uint8_t *get_bytes(struct rd *r, size_t n)
{
    const uint8_t *p = r->p;

    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    r->p += n;
    r->left -= n;
    return p;
}

/* Where an entry's decoded parts go: with block NULL, only their size is added up. */
struct bump {
    char *block;
    size_t used;
};

static void *take(struct bump *b, size_t n, size_t align)
{
    void *p;

    b->used = (b->used + align - 1) / align * align;
    p = b->block != NULL ? b->block + b->used : NULL;
    b->used += n;
    return p;
}

/* n bytes of r as a NUL-terminated string (text: no NUL inside), or NULL with r->bad set. */
static const char *get_text(struct rd *r, struct bump *b, size_t n, bool text)
{
    const uint8_t *s = get_bytes(r, n);
    char *d;

    if (s == NULL || (text && memchr(s, 0, n) != NULL)) {
        r->bad = true;
        return NULL;
    }
    d = take(b, n + 1, 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d != NULL ? d : "";
}

/* Decodes one entry's body (r holds exactly it) into e, its parts taken from b. Returns false
 * when it is malformed. */
static bool decode_entry(struct rd *r, struct bump *b, struct gw_audit_left *e)
{
    uint64_t flags = get_uint(r, 1);
    const uint8_t *h;

    memset(e, 0, sizeof *e);
    if (flags & ~(uint64_t)FLAG_DOUBT)
        return false;
    if (flags & FLAG_DOUBT) {
        e->in_doubt = true;
        e->doubt_seq = (int64_t)get_uint(r, 8);
        if ((h = get_bytes(r, GW_AUDIT_HASH_LEN)) == NULL || e->doubt_seq < 1)
            return false;
        memcpy(e->doubt_hash, h, GW_AUDIT_HASH_LEN);
    }
    e->nstmts = (int)get_uint(r, 1);
    e->nrecs = (int)get_uint(r, 1);
    if (r->bad || e->nstmts > GW_AUDIT_STMTS_MAX || e->nrecs < 1 || e->nrecs > GW_AUDIT_RECS_MAX)
        return false;
    for (int i = 0; i < e->nstmts && !r->bad; i++) {
        struct gw_db_stmt *s = &e->stmts[i];
        size_t sl = (size_t)get_uint(r, 4);
        s->sql = get_text(r, b, sl, true);
        s->result_format = (int)get_uint(r, 1);
        s->nparams = (int)get_uint(r, 2);
        if (r->bad || s->result_format > 1)
            return false;
        const char **v = take(b, (size_t)s->nparams * sizeof *v, sizeof(void *));
        int *lens = take(b, (size_t)s->nparams * sizeof *lens, sizeof(int));
        int *fmts = take(b, (size_t)s->nparams * sizeof *fmts, sizeof(int));
        for (int j = 0; j < s->nparams && !r->bad; j++) {
            uint64_t kind = get_uint(r, 1);
            const char *p = NULL;
            size_t pl = 0;
            if (kind > 2)
                return false;
            if (kind != 0) {
                pl = (size_t)get_uint(r, 4);
                if (pl > INT32_MAX)
                    return false;
                p = get_text(r, b, pl, kind == 1);
            }
            if (v != NULL) {
                v[j] = p;
                lens[j] = kind == 2 ? (int)pl : 0;
                fmts[j] = kind == 2;
            }
        }
        s->values = s->nparams ? v : NULL;
        s->lengths = s->nparams ? lens : NULL;
        s->formats = s->nparams ? fmts : NULL;
    }
    for (int i = 0; i < e->nrecs && !r->bad; i++) {
        const char *t[REC_TEXTS];
        for (int j = 0; j < REC_TEXTS; j++) {
            uint64_t present = get_uint(r, 1);
            if (present > 1)
                return false;
            t[j] = present ? get_text(r, b, (size_t)get_uint(r, 2), true) : NULL;
        }
        int64_t count = (int64_t)get_uint(r, 8);
        uint64_t conf = get_uint(r, 1);
        if (conf > 1 || count < -1)
            return false;
        e->recs[i] = (struct gw_audit_rec){
            .actor = t[0],
            .role = t[1],
            .peer = t[2],
            .cert = t[3],
            .branch = t[4],
            .action = t[5],
            .object = t[6],
            .count = count,
            .purpose = t[7],
            .legal_basis = t[8],
            .approval = t[9],
            .outcome = t[10],
            .detail = t[11],
            .confidential = conf == 1,
        };
    }
    return !r->bad && r->left == 0;
}

/* Decodes the body (len bytes at p) into ent: measured, then filled into its own block. */
static int decode_one(const uint8_t *p, size_t len, struct sentry *ent, const char **why)
{
    struct rd r = {p, len, false};
    struct bump b = {NULL, 0};

    if (!decode_entry(&r, &b, &ent->e)) {
        *why = "an entry is malformed";
        return GW_EDATALOSS;
    }
    ent->block_len = b.used ? b.used : 1;
    if ((ent->block = gw_malloc(ent->block_len)) == NULL) {
        *why = "out of memory";
        return GW_ENOMEM;
    }
    r = (struct rd){p, len, false};
    b = (struct bump){ent->block, 0};
    (void)decode_entry(&r, &b, &ent->e); /* the same bytes: it passed above */
    return 0;
}

int gw_audit_spool_decode(const uint8_t *buf, size_t len, struct gw_crypto *cx,
                          const struct gw_audit_mac_keys *keys, const char *chain,
                          struct gw_audit_spool **out, const char **why)
{
    struct gw_audit_spool *sp = NULL;
    struct rd r;
    size_t cl, n;
    const uint8_t *c;
    int rc = GW_EDATALOSS;

    *out = NULL;
    *why = "out of memory";
    if (len < MAGIC_LEN + 1 + 4 + GW_CRYPTO_MAC_LEN ||
        (memcmp(buf, MAGIC, MAGIC_LEN) != 0 && memcmp(buf, MAGIC_V1, MAGIC_LEN) != 0)) {
        *why = len < MAGIC_LEN + 1 + 4 + GW_CRYPTO_MAC_LEN ? "too short to be a spool"
                                                           : "not a spool of a version read";
        return GW_EDATALOSS;
    }
    if (keys == NULL ||
        !gw_audit_mac_ok(cx, keys, buf, len - GW_CRYPTO_MAC_LEN, buf + len - GW_CRYPTO_MAC_LEN)) {
        *why = "its MAC does not verify under this keyring's spool key (altered, truncated, or "
               "written under another keyring)";
        return GW_EDATALOSS;
    }
    r = (struct rd){buf + MAGIC_LEN, len - MAGIC_LEN - GW_CRYPTO_MAC_LEN, false};
    cl = (size_t)get_uint(&r, 1);
    c = get_bytes(&r, cl);
    if (c == NULL || !chain_ok(chain) || cl != strlen(chain) || memcmp(c, chain, cl) != 0) {
        *why = "it was written for another audit chain";
        return GW_EDATALOSS;
    }
    n = (size_t)get_uint(&r, 4);
    if (r.bad || n > r.left / 5) { /* an entry takes 5 bytes at least */
        *why = "its entry count is malformed";
        return GW_EDATALOSS;
    }
    if ((sp = gw_audit_spool_new(&rc)) == NULL ||
        (sp->ents = gw_calloc(n ? n : 1, sizeof *sp->ents)) == NULL) {
        rc = rc == GW_ECRYPTO ? GW_ECRYPTO : GW_ENOMEM;
        *why = rc == GW_ECRYPTO ? "no random bytes for a spool's id (RAND_bytes failed)"
                                : "out of memory";
        goto fail;
    }
    sp->version = memcmp(buf, MAGIC, MAGIC_LEN) == 0 ? 2 : 1;
    for (sp->n = 0; sp->n < n; sp->n++) {
        size_t el = (size_t)get_uint(&r, 4);
        const uint8_t *p = get_bytes(&r, el);
        if (p == NULL || el > GW_AUDIT_SPOOL_ENTRY_MAX) {
            *why = "an entry is malformed";
            goto fail;
        }
        if ((rc = decode_one(p, el, &sp->ents[sp->n], why)) != 0)
            goto fail;
        if (sp->version == 2 && !gw_audit_spool_marked(&sp->ents[sp->n].e)) {
            sp->n++; /* freed with the others */
            *why = "an entry does not begin with its mark";
            rc = GW_EDATALOSS;
            goto fail;
        }
    }
    if (r.left != 0) {
        *why = "bytes follow its last entry";
        rc = GW_EDATALOSS;
        goto fail;
    }
    *out = sp;
    *why = NULL;
    return 0;
fail:
    gw_audit_spool_free(sp);
    return rc == 0 ? GW_EDATALOSS : rc;
}

/* ---- the file ---- */

int gw_audit_spool_save(const struct gw_audit_spool *sp, const char *path, size_t max,
                        struct gw_crypto *cx, const struct gw_audit_mac_keys *keys,
                        const char *chain, char *err, size_t errsz)
{
    char tmp[4096];
    uint8_t *b = NULL;
    size_t n = 0;
    int fd = -1, rc;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        snprintf(err, errsz, "%s: path too long", path);
        return GW_EINVAL;
    }
    rc = gw_audit_spool_encode(sp, cx, keys, chain, &b, &n);
    if (rc != 0) {
        snprintf(err, errsz, "%s: not encoded: %s", path, gw_err_str(rc));
        return rc;
    }
    if (n > max) {
        snprintf(err, errsz, "%s: %zu bytes, over the %zu a start reads", path, n, max);
        rc = GW_ETOOBIG;
        goto out;
    }
    /* a temporary file left by a stop that did not finish is ours: replaced, never followed */
    if (unlink(tmp) != 0 && errno != ENOENT) {
        snprintf(err, errsz, "%s: cannot remove: %s", tmp, strerror(errno));
        rc = GW_EIO;
        goto out;
    }
    if ((rc = gw_file_create_new(tmp, &fd, err, errsz)) != 0)
        goto out;
    if (gw_file_write_all(fd, b, n) != 0 || fsync(fd) != 0) {
        snprintf(err, errsz, "%s: cannot write: %s", tmp, strerror(errno));
        rc = GW_EIO;
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(err, errsz, "%s: cannot write: %s", tmp, strerror(errno));
        rc = GW_EIO;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(err, errsz, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        rc = GW_EIO;
        goto out;
    }
out:
    if (fd >= 0) {
        close(fd);
        (void)unlink(tmp);
    } else if (rc != 0) {
        (void)unlink(tmp);
    }
    gw_free_wipe(b, n);
    return rc;
}

int gw_audit_spool_load(const char *path, size_t max, struct gw_crypto *cx,
                        const struct gw_audit_mac_keys *keys, const char *chain,
                        struct gw_audit_spool **out, char *err, size_t errsz)
{
    char *b = NULL;
    size_t n = 0;
    const char *why = NULL;
    int rc;

    *out = NULL;
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        snprintf(err, errsz, "%s: no spool", path);
        return GW_ENOTFOUND;
    }
    rc = gw_file_read(path, max, true, &b, &n, err, errsz);
    if (rc != 0)
        return rc == GW_EINVAL ? GW_ETOOBIG : rc == GW_EPERM ? GW_EIO : rc;
    rc = gw_audit_spool_decode((const uint8_t *)b, n, cx, keys, chain, out, &why);
    if (rc != 0)
        snprintf(err, errsz, "%s: %s", path, why);
    gw_free_wipe(b, n + 1);
    return rc;
}

/* ---- a file moved aside ---- */

#define REJECTED ".rejected."
#define REJECTED_SCAN 64 /* the files so named looked at for removal, at most */

struct aside {
    long long t, k;
    char name[256];
};

/* name is base REJECTED <digits>[.<digits>]: its time and counter (0 without one). */
static bool aside_of(const char *name, const char *base, struct aside *a)
{
    size_t bl = strlen(base), rl = strlen(REJECTED);
    char *end;

    if (strncmp(name, base, bl) != 0 || strncmp(name + bl, REJECTED, rl) != 0 ||
        strlen(name) >= sizeof a->name)
        return false;
    name += bl + rl;
    if (*name < '0' || *name > '9')
        return false;
    errno = 0;
    a->t = strtoll(name, &end, 10);
    a->k = 0;
    if (*end == '.') {
        if (end[1] < '0' || end[1] > '9')
            return false;
        a->k = strtoll(end + 1, &end, 10);
    }
    return *end == '\0' && errno == 0;
}

static int older_first(const void *x, const void *y)
{
    const struct aside *a = x, *b = y;

    return a->t != b->t ? (a->t < b->t ? -1 : 1) : a->k < b->k ? -1 : a->k > b->k;
}

/* Removes the oldest of the files moved aside beyond the newest keep, never `just` (its name). */
static void prune(int dfd, const char *base, const char *just, int keep)
{
    struct aside *a = gw_calloc(REJECTED_SCAN, sizeof *a);
    DIR *d;
    struct dirent *de;
    size_t n = 0, others = keep > 1 ? (size_t)keep - 1 : 0;
    int fd;

    if (a == NULL || (fd = dup(dfd)) < 0) {
        gw_free(a);
        return;
    }
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        gw_free(a);
        return;
    }
    while ((de = readdir(d)) != NULL && n < REJECTED_SCAN) {
        if (strcmp(de->d_name, just) != 0 && aside_of(de->d_name, base, &a[n])) {
            snprintf(a[n].name, sizeof a[n].name, "%s", de->d_name);
            n++;
        }
    }
    closedir(d);
    qsort(a, n, sizeof *a, older_first);
    /* the one just moved counts among the kept */
    for (size_t i = 0; n > others && i < n - others; i++)
        (void)unlinkat(dfd, a[i].name, 0);
    gw_free(a);
}

int gw_audit_spool_reject(const char *path, long long now, int keep, char *aside, size_t asidesz,
                          char *err, size_t errsz)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    char dir[4096];
    int dfd, rc = GW_EIO;

    err[0] = '\0';
    aside[0] = '\0';
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if ((size_t)(slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    else {
        snprintf(err, errsz, "%.64s...: directory name too long", path);
        return GW_EIO;
    }
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        snprintf(err, errsz, "%s: cannot open its directory: %s", path, strerror(errno));
        return GW_EIO;
    }
    for (long long k = 0; k < 1000; k++) {
        char name[256];
        if ((size_t)(k == 0 ? snprintf(name, sizeof name, "%s" REJECTED "%lld", base, now)
                            : snprintf(name, sizeof name, "%s" REJECTED "%lld.%lld", base, now,
                                       k)) >= sizeof name) {
            snprintf(err, errsz, "%s: name too long to move aside", path);
            break;
        }
        int r = renameat2(dfd, base, dfd, name, RENAME_NOREPLACE);
        if (r != 0 && errno == EINVAL) /* a file system without it: a link never replaces */
            r = linkat(dfd, base, dfd, name, 0) == 0 ? unlinkat(dfd, base, 0) : -1;
        if (r == 0) {
            snprintf(aside, asidesz, "%s%s", path, name + strlen(base));
            prune(dfd, base, name, keep);
            rc = 0;
            break;
        }
        if (errno != EEXIST) {
            snprintf(err, errsz, "%s: cannot be moved aside to %s: %s", path, name,
                     strerror(errno));
            break;
        }
    }
    if (rc != 0 && err[0] == '\0')
        snprintf(err, errsz, "%s: no free name to move it aside", path);
    close(dfd);
    return rc;
}
