/* preauthq.h: the unauthenticated connections in the order they were accepted, so that at the
 * gateway's caps the oldest gives way to a new one (server.c). Pure: no sockets, no libevent, no
 * logging.
 *
 * Intrusive: each connection embeds a node (conn.h, gw_conn_preauth_node) that names it. A node
 * is in at most one queue; the owner removes it exactly when the connection authenticates or is
 * unlinked, whichever comes first (removing a node not queued does nothing). */
#ifndef GW_PREAUTHQ_H
#define GW_PREAUTHQ_H

#include <stdbool.h>
#include <stddef.h>

struct gw_preauthq_node {
    struct gw_preauthq_node *older, *newer;
    void *conn;  /* what the node names (the owner's connection) */
    bool queued; /* in a queue now */
};

struct gw_preauthq {
    struct gw_preauthq_node *oldest, *newest;
    size_t len;
};

/* Queues n, naming conn, as the newest. n must not be queued. */
void gw_preauthq_push(struct gw_preauthq *q, struct gw_preauthq_node *n, void *conn);

/* Takes n out of q; does nothing when n is not queued. */
void gw_preauthq_remove(struct gw_preauthq *q, struct gw_preauthq_node *n);

/* The connection to close so that a new one fits: the one accepted first, whatever it has sent
 * since (a ClientHello trickled a byte at a time is no claim to stay); NULL when q is empty. */
void *gw_preauthq_victim(const struct gw_preauthq *q);

/* Connections queued. */
size_t gw_preauthq_len(const struct gw_preauthq *q);

#endif
