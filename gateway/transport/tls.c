/* tls.c: the SSL_CTX of the mTLS listener and the certificate -> principal mapping. The only
 * file that includes OpenSSL's TLS headers. Invariant: a handshake completes only with TLS >= 1.2,
 * an AEAD ECDHE suite, ALPN h2 and a client certificate that chains to tls_client_ca and (when a
 * CRL is configured) is not revoked. */
#include "tls.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "alloc.h"
#include "config.h"
#include "memwipe.h"
#include "peer.h"

struct gw_tls {
    SSL_CTX *ctx;
};

static const char tls12_ciphers[] = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                                    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
static const char tls13_suites[] =
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";

static void set_err(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char reason[160] = "no detail";

    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(err, errlen, "tls: %s%s%s: %s", what, path ? " " : "", path ? path : "", reason);
}

/* OpenSSL decrypts a record in place and keeps the plaintext in its read buffer until the next
 * record overwrites it, and frees that buffer as it is: with this option it wipes a record's
 * plaintext once handed to us, and the buffer when released. (Records we send are encrypted in
 * place in the write buffer: no plaintext stays there.) */
static void cleanse_plaintext(SSL_CTX *ctx)
{
    if (gw_memwipe_enabled())
        SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT);
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h2[] = {2, 'h', '2'};
    unsigned char *sel = NULL;

    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, h2, sizeof(h2), in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Refuses a ClientHello that carries no ALPN extension at all (the select callback only runs
 * when the extension is present). */
static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
    const unsigned char *ext = NULL;
    size_t extlen = 0;

    (void)arg;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
                                   &extlen)) {
        *al = SSL_AD_NO_APPLICATION_PROTOCOL;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* The CRL file (PEM; NULL or "": none) into ctx's store, every certificate of a peer's chain
 * then checked against it. Returns 0, or -1 with err naming the file. */
static int load_crl(SSL_CTX *ctx, const char *crl, char *err, size_t errlen)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509_LOOKUP *lu;

    if (crl == NULL || crl[0] == '\0')
        return 0;
    lu = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (lu == NULL || X509_load_crl_file(lu, crl, X509_FILETYPE_PEM) <= 0) {
        set_err(err, errlen, "cannot load CRL", crl);
        return -1;
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    return 0;
}

struct gw_tls *gw_tls_new(const struct gw_config *cfg, char *err, size_t errlen)
{
    struct gw_tls *t = NULL;
    SSL_CTX *ctx = NULL;
    STACK_OF(X509_NAME) *cas = NULL;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        set_err(err, errlen, "cannot create context", NULL);
        goto fail;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, tls12_ciphers) ||
        !SSL_CTX_set_ciphersuites(ctx, tls13_suites) ||
        !SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384")) {
        set_err(err, errlen, "cannot set protocol policy", NULL);
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    cleanse_plaintext(ctx);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);

    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        set_err(err, errlen, "cannot load certificate", cfg->tls_cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
        set_err(err, errlen, "cannot load private key", cfg->tls_key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        set_err(err, errlen, "private key does not match certificate", cfg->tls_key);
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(ctx, cfg->tls_client_ca, NULL) != 1) {
        set_err(err, errlen, "cannot load client CA", cfg->tls_client_ca);
        goto fail;
    }
    cas = SSL_load_client_CA_file(cfg->tls_client_ca);
    if (cas == NULL) {
        set_err(err, errlen, "no CA names in", cfg->tls_client_ca);
        goto fail;
    }
    SSL_CTX_set_client_CA_list(ctx, cas); /* takes ownership */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_verify_depth(ctx, 4);

    if (load_crl(ctx, cfg->tls_crl, err, errlen) != 0)
        goto fail;
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);

    t = gw_calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "tls: out of memory");
        goto fail;
    }
    t->ctx = ctx;
    return t;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* The client context: the listener's protocol policy, the backend's CA, our certificate. */
struct gw_tls *gw_tls_client_new(const char *ca, const char *cert, const char *key, const char *crl,
                                 char *err, size_t errlen)
{
    static const unsigned char h2[] = {2, 'h', '2'};
    struct gw_tls *t = NULL;
    SSL_CTX *ctx = NULL;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        set_err(err, errlen, "cannot create client context", NULL);
        goto fail;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, tls12_ciphers) ||
        !SSL_CTX_set_ciphersuites(ctx, tls13_suites) ||
        !SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") ||
        SSL_CTX_set_alpn_protos(ctx, h2, sizeof(h2)) != 0) {
        set_err(err, errlen, "cannot set client protocol policy", NULL);
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    cleanse_plaintext(ctx);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        set_err(err, errlen, "cannot load client certificate", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        set_err(err, errlen, "cannot load client private key", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        set_err(err, errlen, "client private key does not match certificate", key);
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        set_err(err, errlen, "cannot load server CA", ca);
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_verify_depth(ctx, 4);
    if (load_crl(ctx, crl, err, errlen) != 0) /* as the listener's */
        goto fail;
    t = gw_calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "tls: out of memory");
        goto fail;
    }
    t->ctx = ctx;
    return t;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* One SSL_read handles at most the records already in OpenSSL's buffer (one without read-ahead)
 * when they hold no application data: a post-handshake message (a KeyUpdate) makes it return
 * WANT_READ, and the bufferevent waits for the next readable event. With OpenSSL's default
 * (SSL_MODE_AUTO_RETRY) it went back to the socket for the next record, so a peer that kept the
 * socket full of KeyUpdates had every one of them read and answered inside one SSL_read, before
 * the loop could charge any to its budget (gw_tls_watch_key_updates). The bufferevent and
 * gw_tls_read_buffered already treat WANT_READ as "nothing more for now". */
static void no_auto_retry(SSL *ssl)
{
    SSL_clear_mode(ssl, SSL_MODE_AUTO_RETRY);
}

struct ssl_st *gw_tls_client_ssl_new(struct gw_tls *t, const char *server_name)
{
    SSL *ssl = SSL_new(t->ctx);
    X509_VERIFY_PARAM *vp;
    unsigned char ip[16];
    bool is_ip;

    if (ssl == NULL)
        return NULL;
    vp = SSL_get0_param(ssl);
    is_ip = inet_pton(AF_INET, server_name, ip) == 1 || inet_pton(AF_INET6, server_name, ip) == 1;
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if ((is_ip && X509_VERIFY_PARAM_set1_ip_asc(vp, server_name) != 1) ||
        (!is_ip && (X509_VERIFY_PARAM_set1_host(vp, server_name, 0) != 1 ||
                    SSL_set_tlsext_host_name(ssl, server_name) != 1))) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    no_auto_retry(ssl);
    return ssl;
}

void gw_tls_free(struct gw_tls *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    gw_free(t);
}

struct ssl_st *gw_tls_ssl_new(struct gw_tls *t)
{
    SSL *ssl = SSL_new(t->ctx);

    if (ssl == NULL)
        return NULL;
    /* One read(2) takes whatever records have arrived, not a 5-byte header and then a body;
     * gw_tls_read_buffered drains what the bufferevent leaves in OpenSSL's buffer. */
    SSL_set_read_ahead(ssl, 1);
    /* A write that would block is retried by the bufferevent from its own buffer. */
    SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* An idle connection holds no record buffers (about 34 KiB with read-ahead): OpenSSL frees
     * each once it is empty and allocates it again for the next record (issue 10: 10 000 idle
     * connections at most 32 KiB each). */
    SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    no_auto_retry(ssl);
    return ssl;
}

/* Sees every protocol message and record header OpenSSL reads or writes; only a received
 * handshake message of the kinds tls.h names is passed on: key_update (RFC 8446 4.6.3),
 * hello_request, and a client_hello past the first two (RFC 5246 7.4.1). */
static void watch_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                         SSL *ssl, void *arg)
{
    struct gw_tls_watch *w = arg;

    (void)version;
    (void)ssl;
    if (write_p || content_type != SSL3_RT_HANDSHAKE || len < 1)
        return;
    switch (((const uint8_t *)buf)[0]) {
    case SSL3_MT_KEY_UPDATE:
    case SSL3_MT_HELLO_REQUEST:
        break;
    case SSL3_MT_CLIENT_HELLO:
        if (w->hellos < 2) {
            w->hellos++;
            return;
        }
        break;
    default:
        return;
    }
    w->key_update(w->arg);
}

void gw_tls_watch_key_updates(struct ssl_st *ssl, struct gw_tls_watch *w)
{
    SSL_set_msg_callback(ssl, w != NULL ? watch_msg_cb : NULL);
    SSL_set_msg_callback_arg(ssl, w);
}

int gw_tls_write(struct ssl_st *ssl, const uint8_t *data, size_t len)
{
    int n;

    if (len == 0)
        return 0;
    if (len > GW_TLS_RECORD_MAX)
        len = GW_TLS_RECORD_MAX;
    ERR_clear_error();
    n = SSL_write(ssl, data, (int)len);
    if (n > 0)
        return n;
    /* Blocked or failed: the caller hands the same bytes to the bufferevent, whose SSL_write
     * retries them (the retry OpenSSL requires) or reports the failure. */
    ERR_clear_error();
    return 0;
}

bool gw_tls_has_buffered(const struct ssl_st *ssl)
{
    return SSL_has_pending(ssl) != 0;
}

int gw_tls_read_buffered(struct ssl_st *ssl, uint8_t *buf, size_t len, unsigned long *err)
{
    int n;

    *err = 0;
    if (len == 0 || !SSL_has_pending(ssl))
        return 0;
    if (len > INT_MAX)
        len = INT_MAX;
    ERR_clear_error();
    n = SSL_read(ssl, buf, (int)len);
    if (n > 0)
        return n;
    switch (SSL_get_error(ssl, n)) {
    case SSL_ERROR_WANT_READ: /* a partial record: the rest arrives on the socket */
    case SSL_ERROR_WANT_WRITE:
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return GW_EIO;
    default:
        *err = ERR_get_error();
        ERR_clear_error();
        return GW_EPROTO;
    }
}

void gw_tls_ssl_free(struct ssl_st *ssl)
{
    SSL_free(ssl);
}

bool gw_tls_alpn_is_h2(const struct ssl_st *ssl)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;

    SSL_get0_alpn_selected(ssl, &p, &n);
    return n == 2 && memcmp(p, "h2", 2) == 0;
}

static bool name_char_ok(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* Copies the single entry nid of name into out. Returns 0, 1 when absent, or GW_EAUTH. */
static int subject_field(const X509_NAME *name, int nid, char *out, size_t outlen)
{
    int idx = X509_NAME_get_index_by_NID(name, nid, -1);
    unsigned char *utf8 = NULL;
    int n, rc = GW_EAUTH;

    out[0] = '\0';
    if (idx < 0)
        return 1;
    if (X509_NAME_get_index_by_NID(name, nid, idx) >= 0)
        return GW_EAUTH; /* repeated: ambiguous */
    n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
    if (n <= 0 || (size_t)n >= outlen)
        goto out;
    for (int i = 0; i < n; i++)
        if (!name_char_ok(utf8[i]))
            goto out;
    memcpy(out, utf8, (size_t)n);
    out[n] = '\0';
    rc = 0;
out:
    OPENSSL_free(utf8);
    return rc;
}

int gw_tls_peer_cert(const struct ssl_st *ssl, struct gw_peer *out)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    const X509_NAME *subj;
    unsigned int mdlen = 0;

    out->cert = false;
    out->cert_cn[0] = out->cert_ou[0] = out->cert_l[0] = '\0';
    memset(out->cert_sha256, 0, sizeof(out->cert_sha256));
    if (cert == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return GW_EAUTH;
    if (X509_digest(cert, EVP_sha256(), out->cert_sha256, &mdlen) != 1 ||
        mdlen != sizeof(out->cert_sha256))
        return GW_ENOMEM;
    subj = X509_get_subject_name(cert);
    if (subject_field(subj, NID_commonName, out->cert_cn, sizeof(out->cert_cn)) != 0 ||
        subject_field(subj, NID_organizationalUnitName, out->cert_ou, sizeof(out->cert_ou)) < 0 ||
        subject_field(subj, NID_localityName, out->cert_l, sizeof(out->cert_l)) < 0) {
        out->cert_cn[0] = out->cert_ou[0] = out->cert_l[0] = '\0';
        memset(out->cert_sha256, 0, sizeof(out->cert_sha256));
        return GW_EAUTH;
    }
    out->cert = true;
    return 0;
}

const char *gw_tls_version(const struct ssl_st *ssl)
{
    return SSL_get_version(ssl);
}

const char *gw_tls_verify_error(const struct ssl_st *ssl)
{
    long v = SSL_get_verify_result(ssl);

    return v == X509_V_OK ? NULL : X509_verify_cert_error_string(v);
}

bool gw_tls_error_is_eof(unsigned long e)
{
    return ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

void gw_tls_error_string(unsigned long e, char *buf, size_t len)
{
    if (len == 0)
        return;
    if (e == 0) {
        snprintf(buf, len, "unknown");
        return;
    }
    ERR_error_string_n(e, buf, len);
}

/* Seconds from now to t (negative once past). */
static int64_t seconds_until(const ASN1_TIME *t)
{
    int days = 0, secs = 0;

    if (t == NULL || ASN1_TIME_diff(&days, &secs, NULL, t) != 1)
        return INT64_MIN;
    return (int64_t)days * 86400 + secs;
}

void gw_tls_expiry(const struct gw_tls *t, struct gw_tls_expiry *out)
{
    STACK_OF(X509_OBJECT) * objs;
    X509 *leaf = SSL_CTX_get0_certificate(t->ctx);

    out->cert_s = leaf != NULL ? seconds_until(X509_get0_notAfter(leaf)) : INT64_MIN;
    out->has_crl = false;
    out->crl_s = INT64_MAX;
    objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(t->ctx));
    for (int i = 0; objs != NULL && i < sk_X509_OBJECT_num(objs); i++) {
        X509_OBJECT *o = sk_X509_OBJECT_value(objs, i);
        X509_CRL *crl =
            X509_OBJECT_get_type(o) == X509_LU_CRL ? X509_OBJECT_get0_X509_CRL(o) : NULL;
        int64_t s;
        if (crl == NULL)
            continue;
        s = seconds_until(X509_CRL_get0_nextUpdate(crl));
        out->has_crl = true;
        if (s < out->crl_s)
            out->crl_s = s;
    }
}

/* ---- reload ---- */

void gw_tls_swap(struct gw_tls *t, struct gw_tls *fresh)
{
    /* SSL_CTX is reference-counted: each live SSL holds its context, so the old one lives on
     * until its last connection closes. */
    SSL_CTX_free(t->ctx);
    t->ctx = fresh->ctx;
    gw_free(fresh);
}

/* Is cert listed by one of objs' CRLs of its issuer? */
static bool listed(STACK_OF(X509_OBJECT) * objs, X509 *cert)
{
    for (int i = 0; objs != NULL && i < sk_X509_OBJECT_num(objs); i++) {
        X509_OBJECT *o = sk_X509_OBJECT_value(objs, i);
        X509_CRL *crl =
            X509_OBJECT_get_type(o) == X509_LU_CRL ? X509_OBJECT_get0_X509_CRL(o) : NULL;
        X509_REVOKED *rev = NULL;
        if (crl != NULL &&
            X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(cert)) == 0 &&
            X509_CRL_get0_by_cert(crl, &rev, cert) == 1)
            return true;
    }
    return false;
}

bool gw_tls_peer_revoked(const struct gw_tls *t, const struct ssl_st *ssl)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(t->ctx));
    STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
    X509 *cert = SSL_get0_peer_certificate(ssl);

    if (chain == NULL) /* (a resumed session keeps the peer's certificate, not its chain) */
        return cert != NULL && listed(objs, cert);
    /* the peer's certificate, then every CA certificate the handshake verified it through: a
     * revoked intermediate revokes what it issued */
    for (int i = 0; i < sk_X509_num(chain); i++)
        if (listed(objs, sk_X509_value(chain, i)))
            return true;
    return false;
}

/* ---- the metrics listener over TLS (app/metrics.c) ---- */

/* HTTP/1.1 when the client offers it; any other offer: no ALPN (the listener speaks HTTP/1.1). */
static int http_alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                               const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char *sel = NULL;

    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, http11, sizeof(http11), in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

struct gw_tls *gw_tls_http_new(const struct gw_config *cfg, char *err, size_t errlen)
{
    struct gw_tls *t = gw_tls_new(cfg, err, errlen);

    if (t == NULL)
        return NULL;
    SSL_CTX_set_alpn_select_cb(t->ctx, http_alpn_select_cb, NULL);
    SSL_CTX_set_client_hello_cb(t->ctx, NULL, NULL);
    /* a client certificate is required (gw_tls_new's verify mode, kept): a peer without one
     * fails the handshake and never reaches a request */
    return t;
}

struct ssl_st *gw_tls_http_ssl_new(struct gw_tls *t)
{
    SSL *ssl = SSL_new(t->ctx);

    /* No read-ahead: a libevent bufferevent alone (no gw_tls_read_buffered) would leave a
     * request that arrived with the handshake's last flight in OpenSSL's buffer unread. */
    if (ssl != NULL) {
        SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
        no_auto_retry(ssl); /* the KeyUpdates metrics.c counts, one a read */
    }
    return ssl;
}
