/* pq_msg.c: one-line error messages for the CLI's blocking-libpq code, and bytea hex text
 * (pq_msg.h). Pure. */
#include "pq_msg.h"

#include <stdarg.h>
#include <stdio.h>

#include "err.h"
#include "text.h"

void gw_pq_msg(char *errbuf, size_t errlen, const char *fmt, ...)
{
    char msg[2048]; /* longer than any errbuf of its callers */
    va_list ap;
    size_t n;

    if (errbuf == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (n = 0; msg[n] != '\0'; n++)
        if (msg[n] == '\n' || msg[n] == '\t' || msg[n] == '\r')
            msg[n] = ' ';
    while (n > 0 && msg[n - 1] == ' ')
        msg[--n] = '\0';
    /* the server's message can quote a stored value (a key that exists already, a value a CHECK
     * refused): escaped, so it reaches the terminal as text */
    (void)gw_text_escape(errbuf, errlen, msg, n);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool gw_pq_hex(const char *hex, uint8_t *out, size_t n)
{
    if (hex == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]), lo = hi < 0 ? -1 : hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[2 * n] == '\0';
}

int64_t gw_pq_int_at(const uint8_t *p, int len)
{
    uint64_t v = 0;

    for (int i = 0; i < len; i++)
        v = v << 8 | p[i];
    if (len < 8 && (v >> (8 * len - 1)) != 0) /* sign-extend */
        v |= ~0ull << (8 * len);
    return (int64_t)v;
}

int64_t gw_pq_int(const PGresult *res, int row, int col, int len)
{
    if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != len)
        return 0;
    return gw_pq_int_at((const uint8_t *)PQgetvalue(res, row, col), len);
}

int gw_pq_refused(PGconn *pg, const PGresult *res, char *errbuf, size_t errlen)
{
    gw_pq_msg(errbuf, errlen, "%s", res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(pg));
    return GW_EINTERNAL;
}
