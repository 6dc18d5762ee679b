/* preauthq.c: the queue of unauthenticated connections, oldest first (see preauthq.h).
 * Invariants: len equals the nodes reachable from oldest through newer, each with queued set;
 * oldest and newest are both NULL exactly when len is 0. */
#include "preauthq.h"

void gw_preauthq_push(struct gw_preauthq *q, struct gw_preauthq_node *n, void *conn)
{
    n->conn = conn;
    n->older = q->newest;
    n->newer = NULL;
    n->queued = true;
    if (q->newest != NULL)
        q->newest->newer = n;
    else
        q->oldest = n;
    q->newest = n;
    q->len++;
}

void gw_preauthq_remove(struct gw_preauthq *q, struct gw_preauthq_node *n)
{
    if (!n->queued)
        return;
    if (n->older != NULL)
        n->older->newer = n->newer;
    else
        q->oldest = n->newer;
    if (n->newer != NULL)
        n->newer->older = n->older;
    else
        q->newest = n->older;
    n->older = n->newer = NULL;
    n->queued = false;
    q->len--;
}

void *gw_preauthq_victim(const struct gw_preauthq *q)
{
    return q->oldest != NULL ? q->oldest->conn : NULL;
}

size_t gw_preauthq_len(const struct gw_preauthq *q)
{
    return q->len;
}
