/* peer.h: what the transport knows about the other end of a connection, as plain data: its
 * address and, over mutual TLS, the verified client certificate (subject fields, SHA-256
 * fingerprint). The transport fills it once per connection; the identity module (policy layer)
 * turns it into a principal. Nothing here is trusted beyond what the TLS layer verified. */
#ifndef GW_PEER_H
#define GW_PEER_H

#include <stdbool.h>
#include <stdint.h>

#define GW_PEER_FPR_LEN 32

struct gw_peer {
    char addr[64];    /* "ip:port" or "[ip6]:port", for logs and audit records */
    bool tls;         /* false only on the insecure loopback listener */
    bool cert;        /* a client certificate chained to the CA, not revoked, verified */
    char cert_cn[64]; /* subject CN, OU, L: single-valued, [A-Za-z0-9_.-]; "" when absent */
    char cert_ou[32];
    char cert_l[32];
    uint8_t cert_sha256[GW_PEER_FPR_LEN]; /* fingerprint of the DER certificate */
    uint32_t over_cert_limit; /* nonzero: the certificate held this many connections already
                               * ([server] max_connections_per_certificate) when this one
                               * authenticated; every call on it is refused */
    bool bad_subject; /* the certificate verified, but its subject names no principal the way
                       * cert_cn etc. require (cert is then false): every call is refused */
};

#endif
