/* pq_msg.h: the one-line error message of the CLI's blocking-libpq code (migrate_run.c,
 * store_admin.c): libpq's messages span lines and end in a newline; a CLI prints one line. And
 * the values libpq hands back, for the blocking and the async code alike: the hex text of a
 * bytea column (store_acct_admin.c, accounts.c), a binary-format integer (store_read.c,
 * audit.c, audit_ctl.c). */
#ifndef GW_PQ_MSG_H
#define GW_PQ_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* Formats into errbuf (errlen bytes, NUL-terminated; nothing when errbuf is NULL or errlen 0),
 * newlines and tabs turned into spaces, trailing spaces cut, then escaped (gw_text_escape: a
 * message that quotes a stored value never carries a control character, a bidi control or
 * broken UTF-8 to the terminal). */
void gw_pq_msg(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A failed statement's words (res's message, or pg's when res is NULL) into errbuf as
 * gw_pq_msg writes them. Returns GW_EINTERNAL, for the caller to return. */
int gw_pq_refused(PGconn *pg, const PGresult *res, char *errbuf, size_t errlen);

/* Decodes hex (exactly 2 * n hex digits, either case, then NUL) into out[0..n). Returns false,
 * out partly written, when hex is NULL or not that. */
bool gw_pq_hex(const char *hex, uint8_t *out, size_t n);

/* The binary-format integer (int2, int4 or int8: len 2, 4 or 8 bytes, big-endian, signed) at
 * (row, col), or 0 when it is NULL or not len bytes long. */
int64_t gw_pq_int(const PGresult *res, int row, int col, int len);
/* The same decoding of len (1..8) big-endian bytes at p: the fields of a binary record. */
int64_t gw_pq_int_at(const uint8_t *p, int len);

#endif
