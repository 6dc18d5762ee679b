/* prom.c: the Prometheus text format (prom.h). */
#include "prom.h"

#include <math.h>
#include <stdio.h>

#include <event2/buffer.h>

const double gw_prom_buckets[GW_PROM_NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1,   0.25,   0.5,   1,    2.5,   10};

void gw_prom_hist_observe(struct gw_prom_hist *h, double seconds)
{
    for (size_t i = 0; i < GW_PROM_NBUCKETS; i++) {
        if (seconds <= gw_prom_buckets[i]) {
            h->bucket[i]++;
            break;
        }
    }
    h->count++;
    h->sum += seconds;
}

void gw_prom_family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void add_label(struct evbuffer *b, const char *k, const char *v)
{
    evbuffer_add_printf(b, "%s=\"", k);
    for (const char *p = v; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"')
            evbuffer_add_printf(b, "\\%c", *p);
        else if (*p == '\n')
            evbuffer_add(b, "\\n", 2);
        else
            evbuffer_add(b, p, 1);
    }
    evbuffer_add(b, "\"", 1);
}

static void add_value(struct evbuffer *b, double value)
{
    if (isinf(value))
        evbuffer_add_printf(b, " %s\n", value > 0 ? "+Inf" : "-Inf");
    else if (value == floor(value) && fabs(value) < 9.007199254740992e15)
        evbuffer_add_printf(b, " %.0f\n", value);
    else
        evbuffer_add_printf(b, " %.9g\n", value);
}

void gw_prom_sample(struct evbuffer *b, const char *name, const char *k1, const char *v1,
                    const char *k2, const char *v2, double value)
{
    evbuffer_add_printf(b, "%s", name);
    if (k1 != NULL) {
        evbuffer_add(b, "{", 1);
        add_label(b, k1, v1);
        if (k2 != NULL) {
            evbuffer_add(b, ",", 1);
            add_label(b, k2, v2);
        }
        evbuffer_add(b, "}", 1);
    }
    add_value(b, value);
}

void gw_prom_hist_write(struct evbuffer *b, const char *name, const char *k, const char *v,
                        const struct gw_prom_hist *h)
{
    char le[32], n[128];
    uint64_t cum = 0;

    snprintf(n, sizeof(n), "%s_bucket", name);
    for (size_t i = 0; i < GW_PROM_NBUCKETS; i++) {
        cum += h->bucket[i];
        snprintf(le, sizeof(le), "%g", gw_prom_buckets[i]);
        gw_prom_sample(b, n, k, v, "le", le, (double)cum);
    }
    gw_prom_sample(b, n, k, v, "le", "+Inf", (double)h->count);
    snprintf(n, sizeof(n), "%s_sum", name);
    gw_prom_sample(b, n, k, v, NULL, NULL, h->sum);
    snprintf(n, sizeof(n), "%s_count", name);
    gw_prom_sample(b, n, k, v, NULL, NULL, (double)h->count);
}
