/* prom.h: the Prometheus text exposition format (version 0.0.4), written into a libevent buffer:
 * a family's HELP and TYPE lines, then its samples. Label values are escaped as the format
 * requires (backslash, double quote, newline). Names are the caller's constants. Invariant: what
 * is written is always well-formed text, whatever the label values hold. */
#ifndef GW_PROM_H
#define GW_PROM_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Latency buckets of every duration histogram, seconds (the last, +Inf, is implicit). */
#define GW_PROM_NBUCKETS 12
extern const double gw_prom_buckets[GW_PROM_NBUCKETS];

/* One histogram's state: cumulative only when written. */
struct gw_prom_hist {
    uint64_t bucket[GW_PROM_NBUCKETS]; /* observations <= gw_prom_buckets[i] (not cumulative) */
    uint64_t count;
    double sum;
};

void gw_prom_hist_observe(struct gw_prom_hist *h, double seconds);

/* "# HELP name help\n# TYPE name type\n"; type: counter, gauge or histogram. */
void gw_prom_family(struct evbuffer *b, const char *name, const char *type, const char *help);

/* name{k1="v1",k2="v2"} value; labels may be NULL (no braces); k2 may be NULL. */
void gw_prom_sample(struct evbuffer *b, const char *name, const char *k1, const char *v1,
                    const char *k2, const char *v2, double value);

/* The _bucket (cumulative, with le), _sum and _count lines of a histogram with one label. */
void gw_prom_hist_write(struct evbuffer *b, const char *name, const char *k, const char *v,
                        const struct gw_prom_hist *h);

#endif
