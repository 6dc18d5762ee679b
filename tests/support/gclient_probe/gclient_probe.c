/* gclient_probe: drives gw_gclient (transport/gclient.c) against a CarrierBackend (the tests use
 * deploy/backend-sink), for tests/integration/test_gclient.py. One client for the process's
 * life, so a test can take the backend down and up under it. Commands on stdin, one per line;
 * each answer is one JSON line on stdout:
 *   call TAG N DEADLINE_MS [MARKER]  Deliver with N deliveries (ids TAG-0..; record_id TAG-rI, or
 *                                    MARKER for delivery 0); answers when the callback runs:
 *                                    {"tag","status","message","results":[{"id","outcome",
 *                                    "reason_len"}]} (results only for OK)
 *   cancel TAG N DEADLINE_MS         starts a call and cancels it at once: {"tag","cancelled",
 *                                    "inflight"}; its callback must never run (it would print)
 *   freecb TAG N DEADLINE_MS         a call whose callback frees the client and makes a new one
 *   raw TAG PATH HEX DEADLINE_MS     calls PATH with the request bytes HEX ("-" = none):
 *                                    {"tag","status","message","response":HEX}
 *   inflight                         {"inflight": n}
 *   reload                           gw_gclient_reload_tls: {"reload": 0 or an error, "message"}
 *   stats                            {"inflight","held","out_peak","out_high"}: the calls the
 *                                    client holds, the most bytes the connection's output held,
 *                                    and the client's mark
 *   sockopts                         {"tcp":[N, ...]}: TCP_NODELAY of each TCP socket this process
 *                                    holds (the client's connection; 1 = set)
 *   quit                             exits 0 (after freeing the client)
 * Usage: gclient_probe --endpoint H:P --server-name N --ca F --cert F --key F
 *                      [--max-response BYTES] [--connect-timeout MS] [--nameserver IP:PORT]
 *                      [--crl FILE]
 * (--nameserver: resolve the endpoint's host name through that DNS server only.) */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "gclient.h"
#include "waygate/v1/backend.pb-c.h"

#define PATH "/waygate.v1.CarrierBackend/Deliver"

static struct gw_gclient_params params;
static struct gw_gclient *client;
static struct event_base *base;

struct pending {
    char tag[64];
    bool free_client;
    bool raw;                    /* print the response as hex, do not unpack it */
    struct pending *prev, *next; /* calls whose callback has not run: freed at exit */
};

static struct pending *live;

static void pending_link(struct pending *p)
{
    p->next = live;
    if (live != NULL)
        live->prev = p;
    live = p;
}

/* Unlinks and frees p (NULL-safe). */
static void pending_free(struct pending *p)
{
    if (p == NULL)
        return;
    if (p->prev != NULL)
        p->prev->next = p->next;
    else if (live == p)
        live = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    free(p);
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static struct gw_gclient *make_client(void)
{
    char err[512];
    struct gw_gclient *c = gw_gclient_new(&params, err, sizeof(err));

    if (c == NULL) {
        printf("{\"event\":\"error\",\"message\":");
        json_str(err);
        printf("}\n");
        fflush(stdout);
    }
    return c;
}

static void done_cb(void *arg, const struct gw_gclient_result *r)
{
    struct pending *p = arg;
    Waygate__V1__DeliverResponse *resp = NULL;

    printf("{\"tag\":");
    json_str(p->tag);
    printf(",\"status\":%d,\"message\":", (int)r->status);
    json_str(r->message);
    if (p->raw) {
        printf(",\"response\":\"");
        for (size_t i = 0; i < r->response_len; i++)
            printf("%02x", r->response[i]);
        printf("\"");
    } else if (r->status == GW_GRPC_OK) {
        resp = waygate__v1__deliver_response__unpack(NULL, r->response_len, r->response);
        printf(",\"results\":");
        if (resp == NULL) {
            printf("null");
        } else {
            printf("[");
            for (size_t i = 0; i < resp->n_results; i++) {
                printf("%s{\"id\":", i ? "," : "");
                json_str(resp->results[i]->delivery_id);
                printf(",\"outcome\":%d,\"reason_len\":%zu}", (int)resp->results[i]->outcome,
                       strlen(resp->results[i]->reason));
            }
            printf("]");
            waygate__v1__deliver_response__free_unpacked(resp, NULL);
        }
    }
    if (p->free_client) {
        gw_gclient_free(client); /* from inside the callback: allowed by the contract */
        client = make_client();
        printf(",\"freed\":true");
    }
    printf(",\"inflight\":%zu}\n", gw_gclient_inflight(client));
    fflush(stdout);
    pending_free(p);
}

/* Starts a Deliver call; *pout (when given) receives the callback's argument, which the caller
 * frees if it cancels the call. */
static int start(const char *tag, unsigned n, unsigned deadline, const char *marker,
                 bool free_client, struct gw_gclient_call **out, struct pending **pout)
{
    Waygate__V1__DeliverRequest req = WAYGATE__V1__DELIVER_REQUEST__INIT;
    Waygate__V1__Delivery *ds = calloc(n ? n : 1, sizeof(*ds));
    Waygate__V1__Delivery **dp = calloc(n ? n : 1, sizeof(*dp));
    Waygate__V1__WaybillView *views = calloc(n ? n : 1, sizeof(*views));
    char(*ids)[80] = calloc(n ? n : 1, sizeof(*ids));
    char(*recs)[80] = calloc(n ? n : 1, sizeof(*recs));
    struct pending *p = calloc(1, sizeof(*p));
    uint8_t *buf = NULL;
    size_t len;
    int rc = -1;

    if (ds == NULL || dp == NULL || views == NULL || ids == NULL || recs == NULL || p == NULL)
        goto out;
    for (unsigned i = 0; i < n; i++) {
        waygate__v1__delivery__init(&ds[i]);
        waygate__v1__waybill_view__init(&views[i]);
        snprintf(ids[i], sizeof(ids[i]), "%s-%u", tag, i);
        snprintf(recs[i], sizeof(recs[i]), "%s", (i == 0 && marker) ? marker : ids[i]);
        ds[i].delivery_id = ids[i];
        ds[i].kind = WAYGATE__V1__DELIVERY_KIND__DELIVERY_KIND_WAYBILL_ACCEPTED;
        ds[i].record_id = recs[i];
        views[i].id = recs[i];
        views[i].status = "accepted";
        ds[i].waybill = &views[i];
        dp[i] = &ds[i];
    }
    req.n_deliveries = n;
    req.deliveries = dp;
    len = waygate__v1__deliver_request__get_packed_size(&req);
    buf = malloc(len ? len : 1);
    if (buf == NULL)
        goto out;
    waygate__v1__deliver_request__pack(&req, buf);
    snprintf(p->tag, sizeof(p->tag), "%s", tag);
    p->free_client = free_client;
    rc = gw_gclient_call(client, PATH, buf, len, deadline, done_cb, p, out);
    if (rc == 0) {
        pending_link(p);
        if (pout != NULL)
            *pout = p;
        p = NULL; /* the callback's */
    }
out:
    free(p);
    free(buf);
    free(ds);
    free(dp);
    free(views);
    free(ids);
    free(recs);
    return rc;
}

static int start_raw(const char *tag, const char *path, const char *hex, unsigned deadline)
{
    size_t n = strcmp(hex, "-") == 0 ? 0 : strlen(hex) / 2;
    uint8_t *buf = malloc(n + 1);
    struct pending *p = calloc(1, sizeof(*p));
    int rc = -1;

    if (buf == NULL || p == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            goto out;
        buf[i] = (uint8_t)v;
    }
    snprintf(p->tag, sizeof(p->tag), "%s", tag);
    p->raw = true;
    rc = gw_gclient_call(client, path, buf, n, deadline, done_cb, p, NULL);
    if (rc == 0) {
        pending_link(p);
        p = NULL;
    }
out:
    free(p);
    free(buf);
    return rc;
}

/* The TCP_NODELAY of every TCP socket among this process's descriptors (the probe opens none of
 * its own: they are the client's connection). */
static void print_sockopts(void)
{
    const char *sep = "";

    printf("{\"tcp\":[");
    for (int fd = 0; fd < 1024; fd++) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof(sa), len = sizeof(int);
        int type = 0, nodelay = 0;

        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM ||
            getsockname(fd, (struct sockaddr *)&sa, &salen) != 0 ||
            (sa.ss_family != AF_INET && sa.ss_family != AF_INET6))
            continue;
        len = sizeof(nodelay);
        if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) != 0)
            nodelay = -1;
        printf("%s%d", sep, nodelay != 0 ? (nodelay > 0 ? 1 : -1) : 0);
        sep = ",";
    }
    printf("]}\n");
}

static void command(char *line)
{
    char cmd[16] = "", tag[64] = "", marker[80] = "";
    unsigned n = 0, deadline = 0;
    int f = sscanf(line, "%15s %63s %u %u %79s", cmd, tag, &n, &deadline, marker);
    struct gw_gclient_call *k = NULL;
    struct pending *p = NULL;

    if (f >= 1 && strcmp(cmd, "quit") == 0) {
        event_base_loopbreak(base);
        return;
    }
    if (f >= 1 && strcmp(cmd, "raw") == 0) {
        char path[200] = "", hex[1024] = "";
        unsigned dl = 0;
        if (sscanf(line, "%*s %63s %199s %1023s %u", tag, path, hex, &dl) != 4 ||
            start_raw(tag, path, hex, dl) != 0)
            printf("{\"tag\":\"%s\",\"error\":\"gw_gclient_call failed\"}\n", tag);
    } else if (f >= 1 && strcmp(cmd, "sockopts") == 0) {
        print_sockopts();
    } else if (f >= 1 && strcmp(cmd, "stats") == 0) {
        printf("{\"inflight\":%zu,\"held\":%zu,\"out_peak\":%zu,\"out_high\":%u}\n",
               gw_gclient_inflight(client), gw_gclient_held(client), gw_gclient_out_peak(client),
               GW_GCLIENT_OUT_HIGH);
    } else if (f >= 1 && strcmp(cmd, "reload") == 0) {
        char err[512] = "";
        int rc = gw_gclient_reload_tls(client, err, sizeof(err));
        printf("{\"reload\":%d,\"message\":", rc);
        json_str(err);
        printf("}\n");
    } else if (f >= 1 && strcmp(cmd, "inflight") == 0) {
        printf("{\"inflight\":%zu}\n", gw_gclient_inflight(client));
    } else if (f >= 4 && (strcmp(cmd, "call") == 0 || strcmp(cmd, "freecb") == 0)) {
        if (start(tag, n, deadline, f >= 5 ? marker : NULL, cmd[0] == 'f', NULL, NULL) != 0)
            printf("{\"tag\":\"%s\",\"error\":\"gw_gclient_call failed\"}\n", tag);
    } else if (f >= 4 && strcmp(cmd, "cancel") == 0) {
        if (start(tag, n, deadline, NULL, false, &k, &p) != 0) {
            printf("{\"tag\":\"%s\",\"error\":\"gw_gclient_call failed\"}\n", tag);
        } else {
            gw_gclient_cancel(k);
            pending_free(p); /* its callback never runs */
            printf("{\"tag\":\"%s\",\"cancelled\":true,\"inflight\":%zu}\n", tag,
                   gw_gclient_inflight(client));
        }
    } else {
        printf("{\"error\":\"unknown command\"}\n");
    }
    fflush(stdout);
}

static void stdin_cb(struct bufferevent *bev, void *arg)
{
    char *line;

    (void)arg;
    while ((line = evbuffer_readln(bufferevent_get_input(bev), NULL, EVBUFFER_EOL_LF)) != NULL) {
        command(line);
        free(line);
    }
}

static void stdin_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
    struct bufferevent *in;

    params.connect_timeout_ms = 5000;
    params.max_response = 64 * 1024;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--endpoint") == 0)
            params.endpoint = v;
        else if (strcmp(k, "--server-name") == 0)
            params.server_name = v;
        else if (strcmp(k, "--ca") == 0)
            params.ca = v;
        else if (strcmp(k, "--cert") == 0)
            params.cert = v;
        else if (strcmp(k, "--key") == 0)
            params.key = v;
        else if (strcmp(k, "--max-response") == 0)
            params.max_response = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(k, "--connect-timeout") == 0)
            params.connect_timeout_ms = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(k, "--nameserver") == 0)
            params.nameserver = v;
        else if (strcmp(k, "--crl") == 0)
            params.crl = v;
        else {
            fprintf(stderr, "gclient_probe: unknown option %s\n", k);
            return 2;
        }
    }
    base = event_base_new();
    params.base = base;
    client = make_client();
    if (client == NULL)
        return 1;
    printf("{\"event\":\"ready\"}\n");
    fflush(stdout);
    in = bufferevent_socket_new(base, 0, 0);
    bufferevent_setcb(in, stdin_cb, NULL, stdin_event_cb, NULL);
    bufferevent_enable(in, EV_READ);
    event_base_dispatch(base);
    bufferevent_free(in);
    gw_gclient_free(client);
    /* a lookup cancelled by the free is released from the loop (gclient.h): two more turns, one
     * for its callback, one for the resolver's release it schedules */
    for (int i = 0; i < 2; i++)
        (void)event_base_loop(base, EVLOOP_NONBLOCK);
    while (live != NULL) /* calls the free ended without a callback */
        pending_free(live);
    event_base_free(base);
    return 0;
}
