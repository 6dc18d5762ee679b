/* pq_msg.h: the one-line error message of the CLI's blocking-libpq code (migrate_run.c,
 * store_admin.c): libpq's messages span lines and end in a newline; a CLI prints one line. And
 * the hex text of a bytea column, for the blocking and the async code (store_acct_admin.c,
 * accounts.c). */
#ifndef GW_PQ_MSG_H
#define GW_PQ_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Formats into errbuf (errlen bytes, NUL-terminated; nothing when errbuf is NULL or errlen 0),
 * newlines and tabs turned into spaces, trailing spaces cut. */
void gw_pq_msg(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Decodes hex (exactly 2 * n hex digits, either case, then NUL) into out[0..n). Returns false,
 * out partly written, when hex is NULL or not that. */
bool gw_pq_hex(const char *hex, uint8_t *out, size_t n);

#endif
