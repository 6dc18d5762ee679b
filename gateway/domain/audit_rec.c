/* audit_rec.c: the canonical encoding of audit records and checkpoints (audit_rec.h), their
 * SHA-256 and the key ids, on OpenSSL's EVP interfaces (the signatures: crypto/sign.c). */
#include "audit_rec.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "utf8.h"

static const char REC_MAGIC[] = "waygate.audit.v1";       /* followed by its NUL */
static const char CKPT_MAGIC[] = "waygate.checkpoint.v1"; /* followed by its NUL */

/* An encoder that counts what it could not write, so one pass sizes and a second fills. */
struct enc {
    uint8_t *buf;
    size_t cap, len;
};

static void put(struct enc *e, const void *p, size_t n)
{
    if (e->len + n <= e->cap && n)
        memcpy(e->buf + e->len, p, n);
    e->len += n;
}

static void put_absent(struct enc *e)
{
    uint8_t z = 0;
    put(e, &z, 1);
}

static void put_field(struct enc *e, const void *p, size_t n)
{
    uint8_t h[5] = {1, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    put(e, h, sizeof h);
    put(e, p, n);
}

static void put_text(struct enc *e, const char *s)
{
    if (!s)
        put_absent(e);
    else
        put_field(e, s, strlen(s));
}

static void put_int(struct enc *e, int64_t v)
{
    char d[24];
    int n = snprintf(d, sizeof d, "%" PRId64, v);
    put_field(e, d, (size_t)n);
}

static bool matches(const char *s, size_t maxlen, bool dots)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > maxlen || s[0] < 'a' || s[0] > 'z')
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (dots && c == '.')))
            return false;
    }
    return true;
}

static bool text_ok(const char *s)
{
    size_t n;
    if (!s)
        return true;
    n = strlen(s);
    return n <= GW_AUDIT_TEXT_MAX && gw_utf8_valid(s, n);
}

int gw_audit_rec_check(const struct gw_audit_rec *r)
{
    if (!r || !r->actor || !r->actor[0] || !matches(r->action, 64, true) ||
        !matches(r->outcome, 32, false))
        return GW_EINVAL;
    const char *t[] = {r->actor,  r->role,    r->peer,        r->cert,     r->branch,
                       r->object, r->purpose, r->legal_basis, r->approval, r->detail};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!text_ok(t[i]))
            return GW_EINVAL;
    return 0;
}

static void encode(struct enc *e, const struct gw_audit_rec *r, const struct gw_audit_link *l)
{
    put(e, REC_MAGIC, sizeof REC_MAGIC); /* with its NUL */
    put_text(e, l->chain);
    put_int(e, l->seq);
    put_int(e, l->at_us);
    put_text(e, r->actor);
    put_text(e, r->role);
    put_text(e, r->peer);
    put_text(e, r->cert);
    put_text(e, r->branch);
    put_text(e, r->action);
    put_text(e, r->object);
    if (r->count < 0)
        put_absent(e);
    else
        put_int(e, r->count);
    put_text(e, r->purpose);
    put_text(e, r->legal_basis);
    put_text(e, r->approval);
    put_text(e, r->outcome);
    put_text(e, r->detail);
    put_text(e, r->confidential ? "1" : "0");
    put_field(e, l->prev_hash, GW_AUDIT_HASH_LEN);
}

int gw_audit_rec_encode(const struct gw_audit_rec *r, const struct gw_audit_link *l, uint8_t *buf,
                        size_t cap, size_t *len)
{
    struct enc e = {buf, cap, 0};
    if (gw_audit_rec_check(r) != 0 || !l || !l->chain || l->seq < 1)
        return GW_EINVAL;
    encode(&e, r, l);
    *len = e.len;
    return e.len <= cap ? 0 : GW_ETOOBIG;
}

static int sha256(const uint8_t *p, size_t n, uint8_t out[GW_AUDIT_HASH_LEN])
{
    unsigned int dn = 0;
    if (EVP_Digest(p, n, out, &dn, EVP_sha256(), NULL) != 1 || dn != GW_AUDIT_HASH_LEN) {
        ERR_clear_error();
        return GW_ECRYPTO;
    }
    return 0;
}

int gw_audit_rec_hash(const struct gw_audit_rec *r, const struct gw_audit_link *l,
                      uint8_t hash[GW_AUDIT_HASH_LEN])
{
    uint8_t stackbuf[2048], *buf = stackbuf;
    size_t len = 0;
    int rc = gw_audit_rec_encode(r, l, stackbuf, sizeof stackbuf, &len);
    if (rc == GW_ETOOBIG) {
        buf = gw_malloc(len);
        if (!buf)
            return GW_ENOMEM;
        rc = gw_audit_rec_encode(r, l, buf, len, &len);
    }
    if (rc == 0)
        rc = sha256(buf, len, hash);
    if (buf != stackbuf)
        gw_free(buf);
    return rc;
}

int gw_audit_checkpoint_msg(const char *chain, int64_t seq, const uint8_t head[GW_AUDIT_HASH_LEN],
                            int64_t at_us, uint8_t *buf, size_t cap, size_t *len)
{
    struct enc e = {buf, cap, 0};
    put(&e, CKPT_MAGIC, sizeof CKPT_MAGIC);
    put_text(&e, chain);
    put_int(&e, seq);
    put_field(&e, head, GW_AUDIT_HASH_LEN);
    put_int(&e, at_us);
    *len = e.len;
    return e.len <= cap ? 0 : GW_ETOOBIG;
}

int gw_audit_key_id(const uint8_t *pub, size_t publen, char key_id[65])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t h[GW_AUDIT_HASH_LEN];
    int rc = sha256(pub, publen, h);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < sizeof h; i++) {
        key_id[2 * i] = hex[h[i] >> 4];
        key_id[2 * i + 1] = hex[h[i] & 15];
    }
    key_id[64] = '\0';
    return 0;
}
