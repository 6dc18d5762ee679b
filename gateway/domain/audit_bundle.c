/* audit_bundle.c: the bundle writer (audit_bundle.h, docs/audit-bundle-format.md). One pass, one
 * item at a time: memory is one record's encoding plus one manifest entry per chain. Invariants:
 * the running SHA-256 covers exactly the bytes handed to the sink; each chain's digest exactly
 * its own record and checkpoint items. */
#include "audit_bundle.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "audit_bundle_int.h"

struct chain_sum {
    char id[GW_BUNDLE_CHAIN_MAX + 1];
    uint64_t records;
    int64_t first, last, last_ckpt; /* 0 / -1: none */
    uint8_t head[GW_AUDIT_HASH_LEN];
    uint8_t digest[GW_AUDIT_HASH_LEN];
};

struct gw_bundle_writer {
    gw_bundle_sink_fn sink;
    void *arg;
    EVP_MD_CTX *all;   /* every byte written */
    EVP_MD_CTX *chain; /* the current chain's items */
    struct chain_sum *sums;
    size_t nsums, capsums;
    uint64_t keys, records, checkpoints;
    uint8_t *scratch; /* one item's payload */
    size_t cap;
    uint8_t key_pub[GW_SIGN_PUB_MAX]; /* the last key written (the seal's) */
    size_t key_publen;
    bool have_key, finished;
};

static int emit(struct gw_bundle_writer *w, const uint8_t *p, size_t n)
{
    if (EVP_DigestUpdate(w->all, p, n) != 1)
        return GW_ECRYPTO;
    return w->sink(w->arg, p, n);
}

/* One item: type, 4-byte big-endian length, payload; also into the current chain's digest. */
static int emit_item(struct gw_bundle_writer *w, uint8_t type, const uint8_t *p, size_t n,
                     bool in_chain)
{
    uint8_t h[5] = {type, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    int rc;
    if (n > GW_BUNDLE_ITEM_MAX)
        return GW_ETOOBIG;
    if (in_chain &&
        (EVP_DigestUpdate(w->chain, h, sizeof h) != 1 || EVP_DigestUpdate(w->chain, p, n) != 1))
        return GW_ECRYPTO;
    rc = emit(w, h, sizeof h);
    return rc != 0 ? rc : emit(w, p, n);
}

static int reserve(struct gw_bundle_writer *w, size_t n)
{
    uint8_t *p;
    if (n <= w->cap)
        return 0;
    p = gw_realloc(w->scratch, n);
    if (!p)
        return GW_ENOMEM;
    w->scratch = p;
    w->cap = n;
    return 0;
}

static int final_digest(EVP_MD_CTX *src, uint8_t out[GW_AUDIT_HASH_LEN])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int n = 0;
    int rc = c && EVP_MD_CTX_copy_ex(c, src) == 1 && EVP_DigestFinal_ex(c, out, &n) == 1 &&
                     n == GW_AUDIT_HASH_LEN
                 ? 0
                 : GW_ECRYPTO;
    EVP_MD_CTX_free(c);
    ERR_clear_error();
    return rc;
}

void gw_bundle_writer_digest(const struct gw_bundle_writer *w, uint8_t out[GW_AUDIT_HASH_LEN])
{
    if (final_digest(w->all, out) != 0)
        memset(out, 0, GW_AUDIT_HASH_LEN);
}

uint64_t gw_bundle_writer_records(const struct gw_bundle_writer *w)
{
    return w->records;
}

int gw_bundle_writer_new(gw_bundle_sink_fn sink, void *arg, const struct gw_bundle_header *h,
                         struct gw_bundle_writer **out)
{
    struct gw_bundle_writer *w;
    struct gw_bfenc e;
    int rc;

    *out = NULL;
    if (!sink || !h || !h->generator)
        return GW_EINVAL;
    w = gw_calloc(1, sizeof *w);
    if (!w)
        return GW_ENOMEM;
    w->sink = sink;
    w->arg = arg;
    w->all = EVP_MD_CTX_new();
    w->chain = EVP_MD_CTX_new();
    rc = GW_ECRYPTO;
    if (!w->all || !w->chain || EVP_DigestInit_ex(w->all, EVP_sha256(), NULL) != 1)
        goto fail;
    rc = reserve(w, 4096);
    if (rc != 0)
        goto fail;
    rc = emit(w, (const uint8_t *)GW_BUNDLE_MAGIC, sizeof GW_BUNDLE_MAGIC);
    if (rc != 0)
        goto fail;
    e = (struct gw_bfenc){w->scratch, w->cap, 0};
    gw_bf_text(&e, "1");
    gw_bf_text(&e, h->generator);
    gw_bf_int(&e, h->created_at_us);
    gw_bf_int(&e, h->from_us);
    gw_bf_int(&e, h->to_us);
    gw_bf_text(&e, h->exported_by);
    rc = e.len <= e.cap ? emit_item(w, GW_BUNDLE_HEADER, w->scratch, e.len, false) : GW_EINVAL;
    if (rc != 0)
        goto fail;
    *out = w;
    return 0;
fail:
    gw_bundle_writer_free(w);
    return rc;
}

void gw_bundle_writer_free(struct gw_bundle_writer *w)
{
    if (!w)
        return;
    EVP_MD_CTX_free(w->all);
    EVP_MD_CTX_free(w->chain);
    gw_free(w->sums);
    gw_free(w->scratch);
    gw_free(w);
}

int gw_bundle_write_key(struct gw_bundle_writer *w, const uint8_t *pub, size_t publen)
{
    char id[65];
    struct gw_bfenc e = {w->scratch, w->cap, 0};
    enum gw_sign_alg alg;
    int rc = gw_sign_pub_alg(pub, publen, &alg);
    if (rc != 0)
        return rc;
    rc = gw_audit_key_id(pub, publen, id);
    if (rc != 0)
        return rc;
    gw_bf_text(&e, id);
    gw_bf_bytes(&e, pub, publen);
    gw_bf_text(&e, gw_sign_alg_name(alg));
    rc = emit_item(w, GW_BUNDLE_KEY, w->scratch, e.len, false);
    if (rc == 0) {
        memcpy(w->key_pub, pub, publen);
        w->key_publen = publen;
        w->have_key = true;
        w->keys++;
    }
    return rc;
}

static struct chain_sum *cur_sum(struct gw_bundle_writer *w)
{
    return w->nsums ? &w->sums[w->nsums - 1] : NULL;
}

static int close_chain(struct gw_bundle_writer *w)
{
    struct chain_sum *s = cur_sum(w);
    unsigned int n = 0;
    if (!s)
        return 0;
    if (EVP_DigestFinal_ex(w->chain, s->digest, &n) != 1)
        return GW_ECRYPTO;
    return 0;
}

/* Makes `chain` the current chain, opening a new manifest entry when it changes. */
static int enter_chain(struct gw_bundle_writer *w, const char *chain)
{
    struct chain_sum *s = cur_sum(w);
    int rc;
    if (strlen(chain) > GW_BUNDLE_CHAIN_MAX)
        return GW_EINVAL;
    if (s && strcmp(s->id, chain) == 0)
        return 0;
    rc = close_chain(w);
    if (rc != 0)
        return rc;
    if (w->nsums == w->capsums) {
        size_t ncap = w->capsums ? 2 * w->capsums : 8;
        struct chain_sum *p = gw_realloc(w->sums, ncap * sizeof *p);
        if (!p)
            return GW_ENOMEM;
        w->sums = p;
        w->capsums = ncap;
    }
    s = &w->sums[w->nsums++];
    memset(s, 0, sizeof *s);
    s->last_ckpt = -1;
    snprintf(s->id, sizeof s->id, "%s", chain);
    return EVP_DigestInit_ex(w->chain, EVP_sha256(), NULL) == 1 ? 0 : GW_ECRYPTO;
}

int gw_bundle_write_record(struct gw_bundle_writer *w, const struct gw_audit_rec *r,
                           const struct gw_audit_link *l, const uint8_t hash[GW_AUDIT_HASH_LEN])
{
    size_t n = 0;
    struct chain_sum *s;
    struct gw_bfenc e;
    int rc = gw_audit_rec_encode(r, l, NULL, 0, &n);
    if (rc != GW_ETOOBIG && rc != 0)
        return rc;
    rc = reserve(w, n + 5 + 5 + GW_AUDIT_HASH_LEN);
    if (rc == 0)
        rc = enter_chain(w, l->chain);
    if (rc == 0)
        rc = gw_audit_rec_encode(r, l, w->scratch + 5, n, &n);
    if (rc != 0)
        return rc;
    /* the encoding was written in place after its field header */
    e = (struct gw_bfenc){w->scratch, w->cap, 0};
    gw_bf_head(&e, n);
    e.len += n;
    gw_bf_bytes(&e, hash, GW_AUDIT_HASH_LEN);
    s = cur_sum(w);
    rc = emit_item(w, GW_BUNDLE_RECORD, w->scratch, e.len, true);
    if (rc != 0)
        return rc;
    if (s->records++ == 0)
        s->first = l->seq;
    s->last = l->seq;
    /* the manifest states the head as the content makes it, whatever the stored column says */
    w->records++;
    return EVP_Digest(w->scratch + 5, n, s->head, NULL, EVP_sha256(), NULL) == 1 ? 0 : GW_ECRYPTO;
}

int gw_bundle_write_checkpoint(struct gw_bundle_writer *w, const struct gw_audit_ckpt *c)
{
    struct gw_bfenc e = {w->scratch, w->cap, 0};
    int rc = enter_chain(w, c->chain);
    if (rc != 0)
        return rc;
    gw_bf_text(&e, c->chain);
    gw_bf_int(&e, c->seq);
    gw_bf_bytes(&e, c->head, GW_AUDIT_HASH_LEN);
    gw_bf_int(&e, c->at_us);
    gw_bf_text(&e, c->key_id);
    if (c->siglen == 0 || c->siglen > GW_SIGN_SIG_MAX)
        return GW_EINVAL;
    gw_bf_bytes(&e, c->sig, c->siglen);
    if (e.len > e.cap)
        return GW_EINVAL;
    rc = emit_item(w, GW_BUNDLE_CHECKPOINT, w->scratch, e.len, true);
    if (rc == 0) {
        cur_sum(w)->last_ckpt = c->seq;
        w->checkpoints++;
    }
    return rc;
}

int gw_bundle_write_left_out(struct gw_bundle_writer *w, const char *chain, int64_t seq,
                             const uint8_t hash[GW_AUDIT_HASH_LEN])
{
    struct gw_bfenc e = {w->scratch, w->cap, 0};
    int rc;
    if (!chain || !chain[0] || seq < 1)
        return GW_EINVAL;
    rc = enter_chain(w, chain);
    if (rc != 0)
        return rc;
    gw_bf_text(&e, chain);
    gw_bf_int(&e, seq);
    gw_bf_bytes(&e, hash, GW_AUDIT_HASH_LEN);
    if (e.len > e.cap)
        return GW_EINVAL;
    /* in its chain's digest like its records; counted in no manifest total */
    return emit_item(w, GW_BUNDLE_LEFT_OUT, w->scratch, e.len, true);
}

static void put_opt_int(struct gw_bfenc *e, bool present, int64_t v)
{
    if (present)
        gw_bf_int(e, v);
    else
        gw_bf_absent(e);
}

static int write_manifest(struct gw_bundle_writer *w)
{
    uint8_t content[GW_AUDIT_HASH_LEN];
    struct gw_bfenc e;
    int rc = reserve(w, 128 + w->nsums * (GW_BUNDLE_CHAIN_MAX + 200));
    if (rc == 0)
        rc = final_digest(w->all, content);
    if (rc != 0)
        return rc;
    e = (struct gw_bfenc){w->scratch, w->cap, 0};
    gw_bf_int(&e, (int64_t)w->keys);
    gw_bf_int(&e, (int64_t)w->nsums);
    gw_bf_int(&e, (int64_t)w->records);
    gw_bf_int(&e, (int64_t)w->checkpoints);
    for (size_t i = 0; i < w->nsums; i++) {
        const struct chain_sum *s = &w->sums[i];
        gw_bf_text(&e, s->id);
        gw_bf_int(&e, (int64_t)s->records);
        put_opt_int(&e, s->records > 0, s->first);
        put_opt_int(&e, s->records > 0, s->last);
        if (s->records > 0)
            gw_bf_bytes(&e, s->head, GW_AUDIT_HASH_LEN);
        else
            gw_bf_absent(&e);
        put_opt_int(&e, s->last_ckpt >= 0, s->last_ckpt);
        gw_bf_bytes(&e, s->digest, GW_AUDIT_HASH_LEN);
    }
    gw_bf_bytes(&e, content, GW_AUDIT_HASH_LEN);
    if (e.len > e.cap)
        return GW_EINVAL;
    return emit_item(w, GW_BUNDLE_MANIFEST, w->scratch, e.len, false);
}

static int write_seal(struct gw_bundle_writer *w, const struct gw_sign_key *key)
{
    uint8_t msg[sizeof GW_BUNDLE_SEAL_MAGIC + GW_AUDIT_HASH_LEN], sig[GW_SIGN_SIG_MAX];
    uint8_t pub[GW_SIGN_PUB_MAX];
    size_t publen = 0, siglen = 0;
    char id[65];
    struct gw_bfenc e = {w->scratch, w->cap, 0};
    int rc = gw_sign_public(key, pub, &publen);
    if (rc != 0)
        return rc;
    if (!w->have_key || publen != w->key_publen || memcmp(pub, w->key_pub, publen) != 0)
        return GW_EINVAL; /* the sealing key must be the bundle's (last) key */
    memcpy(msg, GW_BUNDLE_SEAL_MAGIC, sizeof GW_BUNDLE_SEAL_MAGIC);
    rc = final_digest(w->all, msg + sizeof GW_BUNDLE_SEAL_MAGIC);
    if (rc == 0)
        rc = gw_sign(key, msg, sizeof msg, sig, &siglen);
    if (rc == 0)
        rc = gw_audit_key_id(pub, publen, id);
    if (rc != 0)
        return rc;
    gw_bf_text(&e, id);
    gw_bf_bytes(&e, sig, siglen);
    return emit_item(w, GW_BUNDLE_SEAL, w->scratch, e.len, false);
}

int gw_bundle_finish(struct gw_bundle_writer *w, const struct gw_sign_key *key)
{
    int rc;
    if (w->finished)
        return GW_EINVAL;
    w->finished = true;
    rc = close_chain(w);
    if (rc == 0)
        rc = write_manifest(w);
    if (rc == 0 && key)
        rc = write_seal(w, key);
    return rc;
}
