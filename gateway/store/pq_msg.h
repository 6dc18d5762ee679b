/* pq_msg.h: the one-line error message of the CLI's blocking-libpq code (migrate_run.c,
 * store_admin.c): libpq's messages span lines and end in a newline; a CLI prints one line. */
#ifndef GW_PQ_MSG_H
#define GW_PQ_MSG_H

#include <stddef.h>

/* Formats into errbuf (errlen bytes, NUL-terminated; nothing when errbuf is NULL or errlen 0),
 * newlines and tabs turned into spaces, trailing spaces cut. */
void gw_pq_msg(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
