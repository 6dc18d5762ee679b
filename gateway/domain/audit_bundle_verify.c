/* audit_bundle_verify.c: the bundle verifier (audit_bundle.h): a byte-stream parser that checks
 * each item as it completes, in bounded memory (one item, plus a summary per chain and per key,
 * the keys indexed by id), and names every bad place it finds. Within a chain the check never
 * stops: a checkpoint that fails is reported, then ignored (it anchors and covers nothing); a
 * record that does not fit is reported and the chain is followed on from it, or from the run it
 * interrupted (resynchronisation, below). A bad place in the bundle's own structure (framing,
 * order, manifest, seal) ends the check. The rules are those of docs/audit-bundle-format.md, in the
 * order listed there; tests/audit/verify_bundle.py applies the same rules independently. */
#include "audit_bundle.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "audit_bundle_int.h"
#include "utf8.h"

enum phase { PH_MAGIC, PH_HEADER, PH_BODY, PH_MANIFEST, PH_SEALED };

struct key {
    char id[65];
    uint8_t pub[GW_SIGN_PUB_MAX];
    size_t publen;
    enum gw_sign_alg alg;
    bool signed_any; /* has signed a checkpoint or the seal (gw_bundle_verify_signer) */
};

/* What the next record of a run must follow: the chain's start (seq 1, 32 zero bytes), a
 * checkpoint that holds (the anchor, or one that showed records gone), a record, or anything (a
 * time range's chain whose anchor failed: nothing trusted precedes its first record). */
enum tip_kind { TIP_START, TIP_CKPT, TIP_RECORD, TIP_ANY };

/* A run: records each linked to the one before it (seq + 1, prev_hash its hash), and what they
 * follow. A checkpoint that holds over its tip covers the whole run back to where it started, so
 * the run is what coverage is counted by. */
struct run {
    enum tip_kind kind;
    int64_t seq;                     /* the tip's (0 at the start) */
    uint8_t link[GW_AUDIT_HASH_LEN]; /* the tip's hash: the stored one */
    /* a tip whose content does not match its stored hash: the next record may follow either
     * (the content altered, or the stored column) */
    uint8_t link2[GW_AUDIT_HASH_LEN];
    bool has_link2;
    uint64_t pending;  /* its records no checkpoint has covered yet */
    int64_t pend_from; /* the seq of the first of them */
};

struct chain_state {
    char id[GW_BUNDLE_CHAIN_MAX + 1];
    uint64_t records;
    /* -1: none. last_ckpt: the last checkpoint that held (the anchor included); ckpt_item: the
     * last C item, held or not (the manifest's) */
    int64_t first, last, last_ckpt, ckpt_item;
    uint8_t head[GW_AUDIT_HASH_LEN]; /* the content's hash of `last` (the manifest's head) */
    uint8_t digest[GW_AUDIT_HASH_LEN];
    /* cur: the run the last record read belongs to. alt: after a record that did not fit, the
     * run it interrupted (the resume point), until a record or a checkpoint settles which of the
     * two the chain goes on with; only the first such run is kept (nearest to the trusted
     * start). */
    struct run cur, alt;
    bool has_alt;
    uint64_t cut_off; /* records no checkpoint covers or can cover any more */
};

struct gw_bundle_verifier {
    struct gw_bundle_verify_opts o; /* its trust_keys pointer cleared: trust[] holds them */
    char trust[GW_BUNDLE_TRUST_MAX][65];
    size_t ntrust;
    enum phase ph;
    int err;                     /* sticky: the check has ended */
    char msg[GW_BUNDLE_ERR_MAX]; /* the first bad place (or the failure) */
    /* the item being read */
    uint8_t hdr[5];
    size_t hdr_have;
    uint8_t *item;
    size_t item_cap, item_len, item_have;
    uint64_t offset; /* bytes consumed */
    EVP_MD_CTX *all, *chain;
    struct key *keys;
    size_t nkeys, capkeys;
    /* an open-addressing index of keys by id (slot: 1 + the key's index, 0 empty; nslots a power
     * of two, at least twice nkeys), so that a bundle of n keys costs O(n), not O(n^2) */
    uint32_t *slots;
    size_t nslots;
    struct chain_state cur;
    bool in_chain;
    struct chain_state *done; /* closed chains, in order */
    size_t ndone, capdone;
    struct gw_bundle_verify_stats st;
};

static void note(struct gw_bundle_verifier *v, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* A bad place: reported (opts.report), counted, kept when it is the first. */
static void note(struct gw_bundle_verifier *v, const char *fmt, va_list ap)
{
    char place[GW_BUNDLE_ERR_MAX];
    vsnprintf(place, sizeof place, fmt, ap);
    if (v->st.bad++ == 0)
        memcpy(v->msg, place, sizeof place);
    if (v->o.report)
        v->o.report(v->o.report_arg, place);
}

static int bad(struct gw_bundle_verifier *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int flag(struct gw_bundle_verifier *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A bad place that ends the check: returns GW_EDATALOSS (nothing after the first such). */
static int bad(struct gw_bundle_verifier *v, const char *fmt, ...)
{
    va_list ap;
    if (v->err)
        return v->err;
    va_start(ap, fmt);
    note(v, fmt, ap);
    va_end(ap);
    v->err = GW_EDATALOSS;
    return v->err;
}

/* A bad place the check goes on past (a checkpoint, then ignored): returns 0. */
static int flag(struct gw_bundle_verifier *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    note(v, fmt, ap);
    va_end(ap);
    return 0;
}

static int fail(struct gw_bundle_verifier *v, int rc)
{
    if (!v->err) {
        v->err = rc;
        snprintf(v->msg, sizeof v->msg, "%s", rc == GW_ENOMEM ? "out of memory" : "crypto failure");
    }
    return rc;
}

int gw_bundle_verifier_new(const struct gw_bundle_verify_opts *o, struct gw_bundle_verifier **out)
{
    struct gw_bundle_verifier *v;
    *out = NULL;
    if (o && o->ntrust > GW_BUNDLE_TRUST_MAX)
        return GW_EINVAL;
    v = gw_calloc(1, sizeof *v);
    if (!v)
        return GW_ENOMEM;
    if (o)
        v->o = *o;
    for (size_t i = 0; o && i < o->ntrust; i++)
        snprintf(v->trust[v->ntrust++], sizeof v->trust[0], "%s", o->trust_keys[i]);
    v->o.trust_keys = NULL;
    v->o.ntrust = 0;
    v->all = EVP_MD_CTX_new();
    v->chain = EVP_MD_CTX_new();
    if (!v->all || !v->chain || EVP_DigestInit_ex(v->all, EVP_sha256(), NULL) != 1) {
        gw_bundle_verifier_free(v);
        ERR_clear_error();
        return GW_ENOMEM;
    }
    *out = v;
    return 0;
}

void gw_bundle_verifier_free(struct gw_bundle_verifier *v)
{
    if (!v)
        return;
    EVP_MD_CTX_free(v->all);
    EVP_MD_CTX_free(v->chain);
    gw_free(v->item);
    gw_free(v->keys);
    gw_free(v->slots);
    gw_free(v->done);
    gw_free(v);
}

const char *gw_bundle_verify_error(const struct gw_bundle_verifier *v)
{
    return v->msg;
}

void gw_bundle_verify_stats(const struct gw_bundle_verifier *v, struct gw_bundle_verify_stats *out)
{
    *out = v->st;
}

const char *gw_bundle_verify_chain(const struct gw_bundle_verifier *v, size_t i, int64_t *last,
                                   uint8_t head[GW_AUDIT_HASH_LEN])
{
    if (i >= v->ndone)
        return NULL;
    *last = v->done[i].records > 0 ? v->done[i].last : -1;
    memcpy(head, v->done[i].head, GW_AUDIT_HASH_LEN);
    return v->done[i].id;
}

const char *gw_bundle_verify_tally(const struct gw_bundle_verifier *v, size_t i, uint64_t *records,
                                   uint64_t *not_covered)
{
    const struct chain_state *c;
    if (i < v->ndone)
        c = &v->done[i];
    else if (i == v->ndone && v->in_chain)
        c = &v->cur;
    else
        return NULL;
    *records = c->records;
    *not_covered = c->cut_off + c->cur.pending + (c->has_alt ? c->alt.pending : 0);
    return c->id;
}

const char *gw_bundle_verify_uncovered(const struct gw_bundle_verifier *v, size_t i, int64_t *from,
                                       int64_t *to)
{
    const struct run *r;
    if (i >= v->ndone)
        return NULL;
    r = &v->done[i].cur;
    *from = r->pending > 0 ? r->pend_from : -1;
    *to = r->pending > 0 ? r->seq : -1;
    return v->done[i].id;
}

const char *gw_bundle_verify_signer(const struct gw_bundle_verifier *v, size_t i,
                                    enum gw_sign_alg *alg)
{
    for (size_t k = 0; k < v->nkeys; k++) {
        if (!v->keys[k].signed_any || i-- > 0)
            continue;
        *alg = v->keys[k].alg;
        return v->keys[k].id;
    }
    return NULL;
}

static int digest_now(EVP_MD_CTX *src, uint8_t out[GW_AUDIT_HASH_LEN])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int n = 0;
    int rc = c && EVP_MD_CTX_copy_ex(c, src) == 1 && EVP_DigestFinal_ex(c, out, &n) == 1
                 ? 0
                 : GW_ECRYPTO;
    EVP_MD_CTX_free(c);
    ERR_clear_error();
    return rc;
}

/* ---- fields ---- */

/* The next field of d as text (present, UTF-8, at most max bytes) into out (NUL-terminated). */
static bool text_field(struct gw_bfdec *d, char *out, size_t max, bool required)
{
    const uint8_t *f;
    size_t n;
    int k = gw_bf_next(d, &f, &n);
    if (k < 0 || (k == 0 && required))
        return false;
    if (k == 0) {
        out[0] = '\0';
        return true;
    }
    if (n > max || memchr(f, 0, n) || !gw_utf8_valid((const char *)f, n))
        return false;
    memcpy(out, f, n);
    out[n] = '\0';
    return true;
}

static bool int_field(struct gw_bfdec *d, int64_t *val, bool *present)
{
    const uint8_t *f;
    size_t n;
    int k = gw_bf_next(d, &f, &n);
    if (present)
        *present = k == 1;
    if (k == 0 && present)
        return true;
    return k == 1 && gw_bf_decimal(f, n, val);
}

static bool bytes_field(struct gw_bfdec *d, uint8_t *out, size_t want)
{
    const uint8_t *f;
    size_t n;
    if (gw_bf_next(d, &f, &n) != 1 || n != want)
        return false;
    memcpy(out, f, n);
    return true;
}

/* A present field of 1..max bytes into out, its length in *len. */
static bool varbytes_field(struct gw_bfdec *d, uint8_t *out, size_t max, size_t *len)
{
    const uint8_t *f;
    size_t n;
    if (gw_bf_next(d, &f, &n) != 1 || n == 0 || n > max)
        return false;
    memcpy(out, f, n);
    *len = n;
    return true;
}

/* A key item's public key and algorithm: 32 bytes Ed25519 or 65 bytes SM2 (04|x|y), then the
 * algorithm's name, which must agree with the length (absent in bundles before the sm suite:
 * then the key must be Ed25519). */
static bool key_fields(struct gw_bfdec *d, struct key *k)
{
    char name[16];
    enum gw_sign_alg named;
    if (!varbytes_field(d, k->pub, GW_SIGN_PUB_MAX, &k->publen) ||
        gw_sign_pub_alg(k->pub, k->publen, &k->alg) != 0)
        return false;
    if (d->off == d->n)
        return k->alg == GW_SIGN_ED25519;
    return text_field(d, name, sizeof name - 1, true) &&
           gw_sign_alg_parse(name, strlen(name), &named) == 0 && named == k->alg;
}

static bool chain_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > GW_BUNDLE_CHAIN_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@-", s[i]))
            return false;
    return true;
}

/* The first slot of key id (its first bytes; ids are SHA-256 hex, so any bytes spread). */
static size_t key_slot(const struct gw_bundle_verifier *v, const char *id)
{
    size_t h = 5381;
    for (size_t i = 0; i < 16 && id[i]; i++)
        h = h * 33 + (unsigned char)id[i];
    return h & (v->nslots - 1);
}

static struct key *find_key(struct gw_bundle_verifier *v, const char *id)
{
    if (v->nslots == 0)
        return NULL;
    for (size_t i = key_slot(v, id); v->slots[i] != 0; i = (i + 1) & (v->nslots - 1)) {
        v->st.key_probes++;
        if (strcmp(v->keys[v->slots[i] - 1].id, id) == 0)
            return &v->keys[v->slots[i] - 1];
    }
    return NULL;
}

/* Appends k to the keys and the index (growing both by doubling). Returns 0 or GW_ENOMEM. */
static int add_key(struct gw_bundle_verifier *v, const struct key *k)
{
    if (v->nkeys == v->capkeys) {
        size_t cap = v->capkeys ? 2 * v->capkeys : 4;
        struct key *p = cap < UINT32_MAX ? gw_realloc(v->keys, cap * sizeof *p) : NULL;
        if (!p)
            return GW_ENOMEM;
        v->keys = p;
        v->capkeys = cap;
    }
    if (2 * (v->nkeys + 1) > v->nslots) {
        size_t n = v->nslots ? 2 * v->nslots : 16;
        uint32_t *q = gw_calloc(n, sizeof *q);
        if (!q)
            return GW_ENOMEM;
        gw_free(v->slots);
        v->slots = q;
        v->nslots = n;
        for (size_t j = 0; j < v->nkeys; j++) {
            size_t i = key_slot(v, v->keys[j].id);
            while (v->slots[i] != 0) {
                v->st.key_probes++;
                i = (i + 1) & (n - 1);
            }
            v->slots[i] = (uint32_t)(j + 1);
        }
    }
    v->keys[v->nkeys] = *k;
    size_t i = key_slot(v, k->id);
    while (v->slots[i] != 0) {
        v->st.key_probes++;
        i = (i + 1) & (v->nslots - 1);
    }
    v->slots[i] = (uint32_t)(++v->nkeys);
    return 0;
}

static bool trusted(const struct gw_bundle_verifier *v, const char *id)
{
    for (size_t i = 0; i < v->ntrust; i++)
        if (strcmp(v->trust[i], id) == 0)
            return true;
    return v->ntrust == 0;
}

/* The key `id` for `what`, known and trusted; NULL after naming the fault: a bad place that
 * ends the check when `fatal` (the seal's), else one it goes on past (a checkpoint's). One
 * pinned key keeps the words of docs/audit-bundle-format.md (verify_bundle.py's); with several,
 * the key is named whole, for the operator to look up. */
static struct key *signing_key(struct gw_bundle_verifier *v, const char *id, const char *what,
                               bool fatal)
{
    int (*say)(struct gw_bundle_verifier *, const char *, ...)
        __attribute__((format(printf, 2, 3))) = fatal ? bad : flag;
    struct key *k = find_key(v, id);
    if (!k) {
        say(v, "%s: signed by key %.16s..., which is not in the bundle", what, id);
        return NULL;
    }
    if (!trusted(v, id)) {
        if (v->ntrust == 1)
            say(v, "%s: signed by key %.16s..., not by the trusted key %.16s...", what, id,
                v->trust[0]);
        else
            say(v, "%s: signed by key %s, which is not one of the %zu trusted keys", what, id,
                v->ntrust);
        return NULL;
    }
    return k;
}

/* ---- items ---- */

static int on_header(struct gw_bundle_verifier *v, struct gw_bfdec *d)
{
    char ver[8], gen[65], by[GW_AUDIT_TEXT_MAX + 1];
    int64_t created;
    if (!text_field(d, ver, 7, true) || strcmp(ver, "1") != 0)
        return bad(v, "header: format version is not 1");
    if (!text_field(d, gen, 64, true) || !int_field(d, &created, NULL) ||
        !int_field(d, &v->st.from_us, NULL) || !int_field(d, &v->st.to_us, NULL) ||
        !text_field(d, by, GW_AUDIT_TEXT_MAX, false) || d->off != d->n)
        return bad(v, "header: malformed");
    return 0;
}

static int on_key(struct gw_bundle_verifier *v, struct gw_bfdec *d)
{
    struct key k = {0};
    char id[65];
    if (!text_field(d, k.id, 64, true) || !key_fields(d, &k) || d->off != d->n)
        return bad(v, "key %" PRIu64 ": malformed", v->st.keys + 1);
    if (gw_audit_key_id(k.pub, k.publen, id) != 0)
        return fail(v, GW_ECRYPTO);
    if (strcmp(id, k.id) != 0)
        return bad(v, "key %.16s...: its id is not the SHA-256 of its public key", k.id);
    if (find_key(v, k.id))
        return bad(v, "key %.16s...: listed twice", k.id);
    if (!gw_sign_pub_valid(k.pub, k.publen)) /* rule 4: an SM2 key is a point of the curve */
        return bad(v, "key %" PRIu64 ": malformed", v->st.keys + 1);
    if (add_key(v, &k) != 0)
        return fail(v, GW_ENOMEM);
    v->st.keys++;
    return 0;
}

static int close_chain(struct gw_bundle_verifier *v)
{
    struct chain_state *c = &v->cur;
    unsigned int n = 0;
    if (!v->in_chain)
        return 0;
    v->in_chain = false;
    if (EVP_DigestFinal_ex(v->chain, c->digest, &n) != 1)
        return fail(v, GW_ECRYPTO);
    /* the current run's tail waits for the next checkpoint; a run still set aside has lost it */
    if (c->cur.pending > 0) {
        v->st.uncovered += c->cur.pending;
        if (!v->st.uncovered_note[0])
            snprintf(v->st.uncovered_note, sizeof v->st.uncovered_note,
                     "chain %s: seq %" PRId64 "..%" PRId64 " not yet covered by a checkpoint",
                     c->id, c->cur.pend_from, c->cur.seq);
    }
    v->st.cut_off += c->cut_off + (c->has_alt ? c->alt.pending : 0);
    if (v->ndone == v->capdone) {
        size_t ncap = v->capdone ? 2 * v->capdone : 8;
        struct chain_state *p = gw_realloc(v->done, ncap * sizeof *p);
        if (!p)
            return fail(v, GW_ENOMEM);
        v->done = p;
        v->capdone = ncap;
    }
    v->done[v->ndone++] = *c;
    return 0;
}

/* Makes `id` the current chain: the same, or a new one after every chain before it. */
static int enter_chain(struct gw_bundle_verifier *v, const char *id)
{
    int rc;
    if (v->in_chain && strcmp(v->cur.id, id) == 0)
        return 0;
    if (v->ndone > 0 || v->in_chain) {
        const char *prev = v->in_chain ? v->cur.id : v->done[v->ndone - 1].id;
        if (strcmp(id, prev) <= 0)
            return bad(v, "chain %s: its items are not together, or chains not in ascending order",
                       id);
    }
    rc = close_chain(v);
    if (rc != 0)
        return rc;
    memset(&v->cur, 0, sizeof v->cur);
    snprintf(v->cur.id, sizeof v->cur.id, "%s", id);
    v->cur.first = v->cur.last = v->cur.last_ckpt = v->cur.ckpt_item = -1;
    v->cur.cur.kind = TIP_START; /* seq 0, 32 zero bytes: what seq 1 follows */
    v->in_chain = true;
    v->st.chains++;
    if (EVP_DigestInit_ex(v->chain, EVP_sha256(), NULL) != 1)
        return fail(v, GW_ECRYPTO);
    return 0;
}

/* The record encoding (audit_rec.h): the fields it must have; chain, seq, prev_hash out. */
static bool parse_record(const uint8_t *p, size_t n, char *chain, int64_t *seq,
                         uint8_t prev[GW_AUDIT_HASH_LEN])
{
    char text[GW_AUDIT_TEXT_MAX + 1];
    /* after chain, seq: at_us, actor, role, peer, cert, branch, action, object, count, purpose,
     * legal_basis, approval, outcome, detail, confidential; 'i' integer, 'I' optional integer,
     * 'T' required text, 't' optional text */
    static const char shape[] = "iTttttTtItttTt";
    struct gw_bfdec d = {p, n, sizeof GW_BUNDLE_REC_MAGIC};
    int64_t x;
    bool present;
    char conf[4];
    if (n < sizeof GW_BUNDLE_REC_MAGIC ||
        memcmp(p, GW_BUNDLE_REC_MAGIC, sizeof GW_BUNDLE_REC_MAGIC))
        return false;
    if (!text_field(&d, chain, GW_BUNDLE_CHAIN_MAX, true) || !chain_id_ok(chain) ||
        !int_field(&d, seq, NULL) || *seq < 1)
        return false;
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        bool ok;
        switch (shape[i]) {
        case 'i':
            ok = int_field(&d, &x, NULL);
            break;
        case 'I':
            ok = int_field(&d, &x, &present) && (!present || x >= 0);
            break;
        default:
            ok = text_field(&d, text, GW_AUDIT_TEXT_MAX, shape[i] == 'T');
        }
        if (!ok)
            return false;
    }
    if (!text_field(&d, conf, 1, true) || (strcmp(conf, "0") != 0 && strcmp(conf, "1") != 0))
        return false;
    return bytes_field(&d, prev, GW_AUDIT_HASH_LEN) && d.off == d.n;
}

/* Does a record (seq, prev_hash) follow run r's tip? */
static bool fits(const struct run *r, int64_t seq, const uint8_t *prev)
{
    if (r->kind == TIP_ANY)
        return true;
    return seq == r->seq + 1 && (memcmp(prev, r->link, GW_AUDIT_HASH_LEN) == 0 ||
                                 (r->has_link2 && memcmp(prev, r->link2, GW_AUDIT_HASH_LEN) == 0));
}

/* Record seq, whose stored hash is `stored`, becomes r's tip. */
static void extend(struct run *r, int64_t seq, const uint8_t *stored)
{
    r->kind = TIP_RECORD;
    r->seq = seq;
    memcpy(r->link, stored, GW_AUDIT_HASH_LEN);
    r->has_link2 = false;
    if (r->pending++ == 0)
        r->pend_from = seq;
}

/* A record did not fit the current run: the run is set aside as the resume point, unless one
 * is set aside already (then this one is left: nothing can cover its records any more), and a
 * new run starts, empty, for the record to begin. */
static void break_run(struct chain_state *c)
{
    if (!c->has_alt) {
        c->alt = c->cur;
        c->has_alt = true;
    } else {
        c->cut_off += c->cur.pending;
    }
    memset(&c->cur, 0, sizeof c->cur);
}

/* Reports how record (seq, prev) fails to follow the current run's tip (the item before it). */
static void misfit(struct gw_bundle_verifier *v, int64_t seq, const uint8_t *prev)
{
    static const uint8_t zero[GW_AUDIT_HASH_LEN];
    const struct chain_state *c = &v->cur;
    const struct run *t = &c->cur;
    if (t->kind == TIP_START && seq != 1)
        flag(v,
             "chain %s: seq 1 expected, found seq %" PRId64 " (records 1..%" PRId64
             " missing, and no checkpoint anchors the chain here)",
             c->id, seq, seq - 1);
    else if (t->kind == TIP_START && memcmp(prev, zero, sizeof zero) != 0)
        flag(v, "chain %s: seq 1: prev_hash is not 32 zero bytes", c->id);
    else if (t->kind == TIP_CKPT && seq != t->seq + 1)
        flag(v,
             "chain %s: seq %" PRId64 " expected after the checkpoint at seq %" PRId64
             ", found seq %" PRId64 " (a record missing or out of order)",
             c->id, t->seq + 1, t->seq, seq);
    else if (t->kind == TIP_CKPT)
        flag(v,
             "chain %s: seq %" PRId64
             ": prev_hash is not the head of the checkpoint at seq %" PRId64
             " (the record or the checkpoint altered)",
             c->id, seq, t->seq);
    else if (seq != t->seq + 1)
        flag(v,
             "chain %s: seq %" PRId64 " expected after seq %" PRId64 ", found seq %" PRId64
             " (a record missing or out of order)",
             c->id, t->seq + 1, t->seq, seq);
    else
        flag(v,
             "chain %s: seq %" PRId64 ": prev_hash is not the hash of seq %" PRId64 " (seq %" PRId64
             " altered, or this link)",
             c->id, seq, t->seq, t->seq);
}

/* A record's place in its chain. It extends the current run when it follows its tip; else, when
 * it follows the resume point, the records since that run was interrupted were put in between
 * (a junk record with a seq already taken, or one claiming a place between) and it resumes that
 * run: they stay reported (at the first of them) and covered by nothing; else it is reported and
 * begins a new run. A record whose content does not match its stored hash is reported and covers
 * nothing (its content is attested by nothing); the next record may follow its stored hash or
 * its content's. Either way the check goes on. */
static void link_record(struct gw_bundle_verifier *v, int64_t seq, const uint8_t *prev,
                        const uint8_t *stored, const uint8_t *h)
{
    struct chain_state *c = &v->cur;
    if (memcmp(h, stored, GW_AUDIT_HASH_LEN) != 0) {
        flag(v,
             "chain %s: seq %" PRId64 ": the record's content does not match its hash "
             "(the record altered)",
             c->id, seq);
        c->cut_off++;
        break_run(c);
        extend(&c->cur, seq, stored);
        c->cur.pending = 0;
        memcpy(c->cur.link2, h, GW_AUDIT_HASH_LEN);
        c->cur.has_link2 = true;
        return;
    }
    if (fits(&c->cur, seq, prev)) {
        extend(&c->cur, seq, stored);
        return;
    }
    if (c->has_alt && fits(&c->alt, seq, prev)) {
        c->cut_off += c->cur.pending;
        c->cur = c->alt;
        c->has_alt = false;
        extend(&c->cur, seq, stored);
        return;
    }
    misfit(v, seq, prev);
    break_run(c);
    extend(&c->cur, seq, stored);
}

static int on_record(struct gw_bundle_verifier *v, struct gw_bfdec *d)
{
    const uint8_t *enc;
    size_t elen;
    uint8_t stored[GW_AUDIT_HASH_LEN], prev[GW_AUDIT_HASH_LEN], h[GW_AUDIT_HASH_LEN];
    char chain[GW_BUNDLE_CHAIN_MAX + 1];
    int64_t seq;
    struct chain_state *c = &v->cur;
    int rc;
    if (gw_bf_next(d, &enc, &elen) != 1 || !bytes_field(d, stored, sizeof stored) ||
        d->off != d->n || !parse_record(enc, elen, chain, &seq, prev))
        return bad(v, "record %" PRIu64 " of the bundle: malformed encoding", v->st.records + 1);
    rc = enter_chain(v, chain);
    if (rc != 0)
        return rc;
    if (EVP_Digest(enc, elen, h, NULL, EVP_sha256(), NULL) != 1)
        return fail(v, GW_ECRYPTO);
    link_record(v, seq, prev, stored, h);
    if (c->records++ == 0)
        c->first = seq;
    c->last = seq;
    memcpy(c->head, h, sizeof h);
    v->st.records++;
    return 0;
}

/* A record the exporter could not carry (docs/audit-bundle-format.md §5, rule 5b): reported,
 * and nothing else changes: the chain goes on as without that record, so the next record's seq
 * shows it missing, as the live check shows a row it leaves out. */
static int on_left_out(struct gw_bundle_verifier *v, struct gw_bfdec *d)
{
    char chain[GW_BUNDLE_CHAIN_MAX + 1];
    uint8_t stored[GW_AUDIT_HASH_LEN];
    int64_t seq;
    int rc;
    if (!text_field(d, chain, GW_BUNDLE_CHAIN_MAX, true) || !chain_id_ok(chain) ||
        !int_field(d, &seq, NULL) || seq < 1 || !bytes_field(d, stored, sizeof stored) ||
        d->off != d->n)
        return bad(v, "left-out record %" PRIu64 " of the bundle: malformed", v->st.left_out + 1);
    rc = enter_chain(v, chain);
    if (rc != 0)
        return rc;
    v->st.left_out++;
    return flag(v,
                "chain %s: seq %" PRId64 ": not a record the audit format can hold (an empty "
                "actor, or a text over %d bytes); left out of the bundle",
                chain, seq, GW_AUDIT_TEXT_MAX);
}

/* 1: checkpoint k of `chain` is signed by a known, trusted key (then counted as a signer); 0: it
 * is not, which was reported; or a failure. */
static int ckpt_signed(struct gw_bundle_verifier *v, const char *chain,
                       const struct gw_audit_ckpt *k, const char *what)
{
    uint8_t msg[256];
    size_t mlen = 0;
    struct key *key = signing_key(v, k->key_id, what, false);
    int rc;
    if (!key)
        return 0;
    if (gw_audit_checkpoint_msg(chain, k->seq, k->head, k->at_us, msg, sizeof msg, &mlen) != 0)
        return bad(v, "%s: malformed", what);
    rc = gw_sign_verify(key->pub, key->publen, msg, mlen, k->sig, k->siglen);
    if (rc == GW_EDATALOSS)
        return flag(v, "%s: the signature does not verify (forged or altered checkpoint)", what);
    if (rc != 0)
        return fail(v, rc);
    key->signed_any = true;
    return 1;
}

/* Does a checkpoint's head name run r's tip? */
static bool heads(const struct run *r, int64_t seq, const uint8_t *head)
{
    return r->kind == TIP_RECORD && seq == r->seq &&
           (memcmp(head, r->link, GW_AUDIT_HASH_LEN) == 0 ||
            (r->has_link2 && memcmp(head, r->link2, GW_AUDIT_HASH_LEN) == 0));
}

/* A signed checkpoint in its place (before the chain's first record: the anchor; else right
 * after the record of its seq, with that record's hash): then it anchors the chain or covers the
 * current run, which settles a pending break in that run's favour (the run set aside loses its
 * chance of cover). One over the resume point's tip instead settles it the other way. One out of
 * place, or over another head, is reported and covers nothing. One that names records the chain
 * lacks shows them gone: reported, and the chain goes on from it as from an anchor. */
static int place_ckpt(struct gw_bundle_verifier *v, const struct gw_audit_ckpt *k, bool first,
                      const char *what)
{
    struct chain_state *c = &v->cur;
    if (c->records == 0 && c->cur.kind != TIP_CKPT && (v->o.whole || first)) {
        if (v->o.whole) /* records are never deleted: a whole chain starts at seq 1, and a
                         * checkpoint before its first record means the records up to it are gone
                         * (or the chain has none) */
            flag(v,
                 "chain %s: seq 1..%" PRId64 " missing: the checkpoint at seq %" PRId64
                 " comes before any record (a whole chain starts at seq 1)",
                 c->id, k->seq, k->seq);
        c->cur.kind = TIP_CKPT; /* the anchor: what the first record follows */
        c->cur.seq = k->seq;
        memcpy(c->cur.link, k->head, GW_AUDIT_HASH_LEN);
        c->last_ckpt = k->seq;
        return 0;
    }
    if (c->records == 0)
        return flag(v, "%s: out of place (a second checkpoint before any record)", what);
    if (c->has_alt && k->seq > c->last_ckpt && heads(&c->alt, k->seq, k->head) &&
        !heads(&c->cur, k->seq, k->head)) {
        c->cut_off += c->cur.pending; /* what followed the break was put in between */
        c->cur = c->alt;
        c->has_alt = false;
        c->cur.pending = 0;
        c->last_ckpt = k->seq;
        return 0;
    }
    if (k->seq > c->cur.seq) {
        flag(v,
             "chain %s: seq %" PRId64 "..%" PRId64 " missing: the checkpoint at seq %" PRId64
             " covers records the chain does not have (it ends at seq %" PRId64 ")",
             c->id, c->cur.seq + 1, k->seq, k->seq, c->cur.seq);
        c->cut_off += c->cur.pending + (c->has_alt ? c->alt.pending : 0);
        c->has_alt = false;
        memset(&c->cur, 0, sizeof c->cur);
        c->cur.kind = TIP_CKPT;
        c->cur.seq = k->seq;
        memcpy(c->cur.link, k->head, GW_AUDIT_HASH_LEN);
        c->last_ckpt = k->seq;
        return 0;
    }
    if (k->seq < c->cur.seq || k->seq <= c->last_ckpt)
        return flag(v, "%s: out of place (after seq %" PRId64 ")", what, c->last);
    if (!heads(&c->cur, k->seq, k->head))
        return flag(v,
                    "%s: its head hash is not the hash of seq %" PRId64
                    " (the record or the checkpoint altered)",
                    what, k->seq);
    c->cur.pending = 0;
    if (c->has_alt) /* the break is settled: the chain goes on with the current run */
        c->cut_off += c->alt.pending;
    c->has_alt = false;
    c->last_ckpt = k->seq;
    return 0;
}

/* A checkpoint that fails (its signer, its signature, its place) is reported and then ignored:
 * it anchors and covers nothing, and the check goes on with the next item. In a time range's
 * bundle, a chain whose first item is such a checkpoint takes its first record as it is. */
static int on_checkpoint(struct gw_bundle_verifier *v, struct gw_bfdec *d)
{
    struct gw_audit_ckpt k;
    char chain[GW_BUNDLE_CHAIN_MAX + 1], what[GW_BUNDLE_CHAIN_MAX + 64];
    struct chain_state *c = &v->cur;
    bool first;
    int ok, rc;
    if (!text_field(d, chain, GW_BUNDLE_CHAIN_MAX, true) || !chain_id_ok(chain) ||
        !int_field(d, &k.seq, NULL) || k.seq < 1 || !bytes_field(d, k.head, GW_AUDIT_HASH_LEN) ||
        !int_field(d, &k.at_us, NULL) || !text_field(d, k.key_id, 64, true) ||
        !varbytes_field(d, k.sig, GW_SIGN_SIG_MAX, &k.siglen) || d->off != d->n)
        return bad(v, "checkpoint %" PRIu64 " of the bundle: malformed", v->st.checkpoints + 1);
    snprintf(what, sizeof what, "chain %s: checkpoint at seq %" PRId64, chain, k.seq);
    ok = ckpt_signed(v, chain, &k, what);
    if (ok < 0)
        return ok;
    rc = enter_chain(v, chain);
    if (rc != 0)
        return rc;
    first = c->records == 0 && c->ckpt_item < 0;
    c->ckpt_item = k.seq;
    v->st.checkpoints++;
    if (c->records == 0 && !v->o.whole && c->cur.kind == TIP_START)
        c->cur.kind = TIP_ANY; /* unless it holds and anchors the chain (place_ckpt) */
    return ok ? place_ckpt(v, &k, first, what) : 0;
}

static int manifest_chain(struct gw_bundle_verifier *v, struct gw_bfdec *d, size_t i)
{
    char id[GW_BUNDLE_CHAIN_MAX + 1];
    int64_t records, first = -1, last = -1, ckpt = -1;
    bool has_first, has_last, has_ckpt;
    uint8_t head[GW_AUDIT_HASH_LEN] = {0}, digest[GW_AUDIT_HASH_LEN];
    const uint8_t *f;
    size_t n;
    const struct chain_state *c;
    int k;
    if (!text_field(d, id, GW_BUNDLE_CHAIN_MAX, true) || !int_field(d, &records, NULL) ||
        !int_field(d, &first, &has_first) || !int_field(d, &last, &has_last))
        return bad(v, "manifest: chain entry %zu malformed", i + 1);
    k = gw_bf_next(d, &f, &n);
    if (k < 0 || (k == 1 && n != GW_AUDIT_HASH_LEN))
        return bad(v, "manifest: chain entry %zu malformed", i + 1);
    if (k == 1)
        memcpy(head, f, n);
    if (!int_field(d, &ckpt, &has_ckpt) || !bytes_field(d, digest, sizeof digest))
        return bad(v, "manifest: chain entry %zu malformed", i + 1);
    if (i >= v->ndone)
        return bad(v,
                   "chain %s: missing from the bundle (its manifest lists seq %" PRId64 "..%" PRId64
                   ")",
                   id, first, last);
    c = &v->done[i];
    if (strcmp(c->id, id) != 0)
        return bad(v, "chain %s: missing from the bundle (the manifest lists it before chain %s)",
                   id, c->id);
    if (has_last && c->records > 0 && last > c->last)
        return bad(v,
                   "chain %s: the bundle ends at seq %" PRId64 " but its manifest at seq %" PRId64
                   ": seq %" PRId64 "..%" PRId64 " missing (tail truncated)",
                   id, c->last, last, c->last + 1, last);
    if (has_first != (c->records > 0) || has_last != (c->records > 0) ||
        (uint64_t)records != c->records || (has_first && first != c->first) ||
        (has_last && last != c->last) || has_ckpt != (c->ckpt_item >= 0) ||
        (has_ckpt && ckpt != c->ckpt_item) ||
        (c->records > 0 && memcmp(head, c->head, GW_AUDIT_HASH_LEN) != 0))
        return bad(v,
                   "chain %s: the manifest does not describe the bundle's records (it says seq "
                   "%" PRId64 "..%" PRId64 ", %" PRId64 " records; the bundle has %" PRId64
                   "..%" PRId64 ", %" PRIu64 ")",
                   id, first, last, records, c->first, c->last, c->records);
    if (memcmp(digest, c->digest, sizeof digest) != 0)
        return bad(v, "chain %s: the manifest's SHA-256 of its items does not match", id);
    return 0;
}

static int on_manifest(struct gw_bundle_verifier *v, struct gw_bfdec *d,
                       const uint8_t before[GW_AUDIT_HASH_LEN])
{
    int64_t keys, chains, records, ckpts;
    uint8_t content[GW_AUDIT_HASH_LEN];
    int rc = close_chain(v);
    if (rc != 0)
        return rc;
    if (!int_field(d, &keys, NULL) || !int_field(d, &chains, NULL) ||
        !int_field(d, &records, NULL) || !int_field(d, &ckpts, NULL) || chains < 0)
        return bad(v, "manifest: malformed");
    for (size_t i = 0; i < (size_t)chains; i++) {
        rc = manifest_chain(v, d, i);
        if (rc != 0)
            return rc;
    }
    if ((size_t)chains < v->ndone)
        return bad(v, "chain %s: in the bundle but not in its manifest", v->done[chains].id);
    if (!bytes_field(d, content, sizeof content) || d->off != d->n)
        return bad(v, "manifest: malformed");
    if ((uint64_t)keys != v->st.keys || (uint64_t)records != v->st.records ||
        (uint64_t)ckpts != v->st.checkpoints)
        return bad(v, "manifest: counts (keys, records, checkpoints) do not match the bundle");
    if (memcmp(content, before, sizeof content) != 0)
        return bad(v, "manifest: the SHA-256 of the bundle before it does not match");
    return 0;
}

static int on_seal(struct gw_bundle_verifier *v, struct gw_bfdec *d,
                   const uint8_t before[GW_AUDIT_HASH_LEN])
{
    char id[65];
    uint8_t sig[GW_SIGN_SIG_MAX], msg[sizeof GW_BUNDLE_SEAL_MAGIC + GW_AUDIT_HASH_LEN];
    size_t siglen = 0;
    struct key *k;
    int rc;
    if (!text_field(d, id, 64, true) || !varbytes_field(d, sig, sizeof sig, &siglen) ||
        d->off != d->n)
        return bad(v, "seal: malformed");
    k = signing_key(v, id, "seal", true);
    if (!k)
        return v->err;
    memcpy(msg, GW_BUNDLE_SEAL_MAGIC, sizeof GW_BUNDLE_SEAL_MAGIC);
    memcpy(msg + sizeof GW_BUNDLE_SEAL_MAGIC, before, GW_AUDIT_HASH_LEN);
    rc = gw_sign_verify(k->pub, k->publen, msg, sizeof msg, sig, siglen);
    if (rc == GW_EDATALOSS)
        return bad(v, "seal: the signature does not verify (the bundle was altered after export)");
    if (rc != 0)
        return fail(v, rc);
    k->signed_any = true;
    return 0;
}

static const char *type_name(uint8_t t)
{
    switch (t) {
    case GW_BUNDLE_HEADER:
        return "header";
    case GW_BUNDLE_KEY:
        return "key";
    case GW_BUNDLE_RECORD:
        return "record";
    case GW_BUNDLE_CHECKPOINT:
        return "checkpoint";
    case GW_BUNDLE_MANIFEST:
        return "manifest";
    case GW_BUNDLE_SEAL:
        return "seal";
    case GW_BUNDLE_LEFT_OUT:
        return "left-out record";
    }
    return NULL;
}

/* One complete item; `before` is the SHA-256 of every byte before it. */
static int on_item(struct gw_bundle_verifier *v, uint8_t type, const uint8_t before[32])
{
    struct gw_bfdec d = {v->item, v->item_len, 0};
    const char *name = type_name(type);
    bool body =
        type == GW_BUNDLE_RECORD || type == GW_BUNDLE_CHECKPOINT || type == GW_BUNDLE_LEFT_OUT;
    int rc;
    if (!name)
        return bad(v, "byte %" PRIu64 ": unknown item type 0x%02x", v->offset, type);
    if (v->ph == PH_SEALED || (v->ph == PH_MANIFEST && type != GW_BUNDLE_SEAL))
        return bad(v, "%s after the %s: the bundle must end there", name,
                   v->ph == PH_SEALED ? "seal" : "manifest");
    if ((v->ph == PH_HEADER) != (type == GW_BUNDLE_HEADER))
        return bad(v, "%s: out of place (the header comes first, once)", name);
    if (type == GW_BUNDLE_KEY && (v->st.records || v->st.checkpoints || v->st.left_out))
        return bad(v, "key: out of place (keys come before the records)");
    if (type == GW_BUNDLE_SEAL && v->ph != PH_MANIFEST)
        return bad(v, "seal: out of place (it follows the manifest)");
    switch (type) {
    case GW_BUNDLE_HEADER:
        rc = on_header(v, &d);
        v->ph = PH_BODY;
        break;
    case GW_BUNDLE_KEY:
        rc = on_key(v, &d);
        break;
    case GW_BUNDLE_RECORD:
        rc = on_record(v, &d);
        break;
    case GW_BUNDLE_CHECKPOINT:
        rc = on_checkpoint(v, &d);
        break;
    case GW_BUNDLE_LEFT_OUT:
        rc = on_left_out(v, &d);
        break;
    case GW_BUNDLE_MANIFEST:
        rc = on_manifest(v, &d, before);
        v->ph = PH_MANIFEST;
        break;
    default:
        rc = on_seal(v, &d, before);
        v->ph = PH_SEALED;
    }
    if (rc == 0 && body &&
        (EVP_DigestUpdate(v->chain, v->hdr, 5) != 1 ||
         (v->item_len && EVP_DigestUpdate(v->chain, v->item, v->item_len) != 1)))
        rc = fail(v, GW_ECRYPTO);
    return rc;
}

/* An item's 5-byte header is complete: its length checked, room made for its payload. */
static int start_item(struct gw_bundle_verifier *v)
{
    v->item_len = ((size_t)v->hdr[1] << 24) | ((size_t)v->hdr[2] << 16) | ((size_t)v->hdr[3] << 8) |
                  v->hdr[4];
    v->item_have = 0;
    if (v->item_len > GW_BUNDLE_ITEM_MAX)
        return bad(v, "byte %" PRIu64 ": item longer than %u bytes", v->offset, GW_BUNDLE_ITEM_MAX);
    if (v->item_len > v->item_cap) {
        uint8_t *q = gw_realloc(v->item, v->item_len);
        if (!q)
            return fail(v, GW_ENOMEM);
        v->item = q;
        v->item_cap = v->item_len;
    }
    return 0;
}

/* An item is complete: checked with the digest of what came before, then added to it. */
static int end_item(struct gw_bundle_verifier *v)
{
    uint8_t before[GW_AUDIT_HASH_LEN];
    int rc = digest_now(v->all, before);
    if (rc != 0)
        return fail(v, rc);
    rc = on_item(v, v->hdr[0], before);
    if (rc != 0)
        return rc;
    if (EVP_DigestUpdate(v->all, v->hdr, 5) != 1 ||
        (v->item_len && EVP_DigestUpdate(v->all, v->item, v->item_len) != 1))
        return fail(v, GW_ECRYPTO);
    v->offset += 5 + v->item_len;
    v->hdr_have = 0;
    return 0;
}

int gw_bundle_verify_feed(struct gw_bundle_verifier *v, const uint8_t *p, size_t n)
{
    while (n > 0 && !v->err) {
        size_t take;
        if (v->ph == PH_MAGIC) {
            take = sizeof GW_BUNDLE_MAGIC - v->hdr_have;
            take = take < n ? take : n;
            if (memcmp(p, &GW_BUNDLE_MAGIC[v->hdr_have], take) != 0)
                return bad(v, "byte 0: not a Waygate audit bundle (magic)");
            if (EVP_DigestUpdate(v->all, p, take) != 1)
                return fail(v, GW_ECRYPTO);
            v->hdr_have += take;
            v->offset += take;
            if (v->hdr_have == sizeof GW_BUNDLE_MAGIC) {
                v->ph = PH_HEADER;
                v->hdr_have = 0;
            }
            p += take;
            n -= take;
            continue;
        }
        if (v->hdr_have < 5) {
            take = 5 - v->hdr_have < n ? 5 - v->hdr_have : n;
            memcpy(v->hdr + v->hdr_have, p, take);
            v->hdr_have += take;
            if (v->hdr_have == 5) {
                int rc = start_item(v);
                if (rc != 0)
                    return rc;
            }
        } else {
            take = v->item_len - v->item_have < n ? v->item_len - v->item_have : n;
            memcpy(v->item + v->item_have, p, take);
            v->item_have += take;
        }
        p += take;
        n -= take;
        if (v->hdr_have == 5 && v->item_have == v->item_len) {
            int rc = end_item(v);
            if (rc != 0)
                return rc;
        }
    }
    return v->err;
}

int gw_bundle_verify_end(struct gw_bundle_verifier *v)
{
    if (v->err)
        return v->err;
    if (v->ph == PH_MAGIC)
        return bad(v, "byte 0: not a Waygate audit bundle (magic)");
    if (v->hdr_have != 0)
        return bad(v, "bundle truncated inside an item at byte %" PRIu64, v->offset);
    if (v->ph == PH_HEADER)
        return bad(v, "bundle truncated: no header");
    if (v->ph == PH_BODY) {
        int rc = close_chain(v);
        if (rc != 0)
            return rc;
        return bad(v, "bundle truncated: no manifest (after %s%s, %" PRIu64 " records)",
                   v->ndone ? "chain " : "the keys", v->ndone ? v->done[v->ndone - 1].id : "",
                   v->st.records);
    }
    if (v->ph == PH_MANIFEST && !v->o.unsealed)
        return bad(v, "bundle truncated: no seal after the manifest");
    return v->st.bad ? GW_EDATALOSS : 0; /* checkpoints it went on past */
}

int gw_bundle_verify_sink(void *arg, const uint8_t *p, size_t n)
{
    return gw_bundle_verify_feed(arg, p, n);
}
