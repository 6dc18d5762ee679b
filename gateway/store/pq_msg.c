/* pq_msg.c: one-line error messages for the CLI's blocking-libpq code (pq_msg.h). Pure. */
#include "pq_msg.h"

#include <stdarg.h>
#include <stdio.h>

void gw_pq_msg(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    if (errbuf == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    for (n = 0; errbuf[n] != '\0'; n++)
        if (errbuf[n] == '\n' || errbuf[n] == '\t' || errbuf[n] == '\r')
            errbuf[n] = ' ';
    while (n > 0 && errbuf[n - 1] == ' ')
        errbuf[--n] = '\0';
}
