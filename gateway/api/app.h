/* app.h: what a handler can reach. main.c builds one struct gw_app and owns everything in it;
 * handlers receive it through gw_call_app() and must not keep pointers past their call. */
#ifndef GW_APP_H
#define GW_APP_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct gw_config;
struct gw_audit;
struct gw_db;
struct gw_crypto;
struct gw_incidents;
struct gw_keyring;
struct gw_segcache;
struct gw_store;
struct gw_throttle;
struct gw_wraplease;

struct gw_workers;
struct gw_audit;

/* >= GW_API_AUTH_QUEUE plus the hashing threads ([auth] workers, at most 64): a slot for every
 * job in flight, so that only a certificate at its share is refused for its share */
#define GW_APP_PWSHARE_SLOTS 128

struct gw_app {
    const struct gw_config *cfg;
    struct event_base *base;
    struct gw_db *db;               /* the asynchronous PostgreSQL pool */
    struct gw_keyring *keys;        /* the loaded keyring (replaced whole on SIGHUP) */
    struct gw_crypto *crypto;       /* the loop's crypto context (not thread-safe: one per loop) */
    struct gw_store *store;         /* the SQL layer for waybills and segments */
    struct gw_segcache *segs;       /* waybill-number segments, cached */
    struct gw_incidents *incidents; /* security incidents, queued until written (Art. 17) */
    struct gw_throttle *throttle;   /* distinct lookups per principal (scraping throttle) */
    struct gw_workers *workers;     /* threads for password hashing (scrypt), off the loop */
    struct gw_audit *audit;         /* this instance's audit chain (store/audit.h, Art. 33) */
    struct gw_refusals *refusals;   /* refused calls' records, bounded (refusals.h) */
    /* data-key wraps this gateway holds leased under its current KEK (domain/wraplease.h,
     * sql/050): Submit seals a record only against one; owned by app/wrapguard.c */
    struct gw_wraplease *wraps;
    bool draining; /* SIGTERM received: health says NOT_SERVING */
    /* the keyring loaded at start is not yet vouched for by the database (app/kekguard.h, Art.
     * 36): health says NOT_SERVING and Submit seals nothing */
    bool keys_unchecked;
    bool kek_retired_reported;    /* a Submit under a retired KEK had its incident (api_intake.c) */
    uint64_t keys_generation;     /* counts the keyrings loaded: a SIGHUP's reload adds one */
    uint64_t records_opened;      /* stored waybills unsealed for a caller (metrics) */
    uint64_t cert_lookups;        /* database lookups of a certificate's principal (metrics) */
    uint64_t cert_lookups_shared; /* calls that waited for another call's lookup (metrics) */
    unsigned reports_counting;    /* Compliance.Report counts in flight (api_report.c) */
    /* password-hashing jobs in flight per certificate principal (api_admin_util.c: at most
     * GW_API_AUTH_SHARE each); a slot with n == 0 is free */
    struct gw_app_pwshare {
        char cert[64];
        uint32_t n;
    } pwshare[GW_APP_PWSHARE_SLOTS];
};

#endif
