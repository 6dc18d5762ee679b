/* wgload.c: a gRPC load generator for waygate.v1.WaybillIntake (Submit, SubmitBatch),
 * WaybillQuery (Get, Search by phone) and Admin.Login over mTLS and HTTP/2 that presents a client
 * certificate (h2load cannot). C connections keep S streams each in flight (closed loop); every
 * response's HTTP status, grpc-status and content (a batch's item codes, a view's record id, a
 * Search's number of results, a Login's token) is checked. With --rate R the load is an
 * open loop instead: R calls a second over all connections, each sent when it is due whatever
 * the answers, its latency counted from when it was due (wgload.h). One thread, one libevent loop,
 * libnghttp2 1.52 API; its own CPU time (getrusage) is reported apart from the server's.
 * Submit uses waybill numbers once each, in order, from --first within the segment; `next=` in
 * the RESULT line is the first unused one. Secrets (password, token) come from the environment,
 * never from argv, and are never printed. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "waygate/v1/intake.pb-c.h"
#include "wgload.h"

static double rusage_s(const struct rusage *r)
{
    return (double)r->ru_utime.tv_sec + (double)r->ru_utime.tv_usec / 1e6 +
           (double)r->ru_stime.tv_sec + (double)r->ru_stime.tv_usec / 1e6;
}

static void ssl_errors(const char *what)
{
    unsigned long e;
    char buf[256];
    fprintf(stderr, "wgload: %s\n", what);
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        fprintf(stderr, "  %s\n", buf);
    }
}

/* ---- set-up and report ---- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint32_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i] / 1000.0;
}

static uint64_t sum_errs(const struct errs *e)
{
    uint64_t s = e->http + e->reset + e->nostatus + e->decode + e->conn + e->unfinished +
                 e->exhausted + e->count;
    for (int i = 0; i <= NCODES; i++)
        s += e->grpc[i] + e->item[i];
    return s;
}

static void print_codes(const char *label, const uint64_t *v)
{
    bool any = false;
    for (int i = 0; i <= NCODES; i++)
        if (v[i]) {
            printf("%s%s %s=%" PRIu64, any ? "," : "", any ? "" : label,
                   i < NCODES ? wl_code_names[i] : "OTHER", v[i]);
            any = true;
        }
    if (any)
        printf("\n");
}

static const char *const mode_names[] = {"submit", "batch", "get", "search", "login"};
static const char *const item_names[] = {"waybills", "waybills", "lookups", "results", "logins"};

/* The call status counts as "NAME:N,NAME:N", or "-". */
static void codes_text(const uint64_t *v, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i <= NCODES && len < n; i++)
        if (v[i])
            len += (size_t)snprintf(out + len, n - len, "%s%s:%" PRIu64, len ? "," : "",
                                    i < NCODES ? wl_code_names[i] : "OTHER", v[i]);
    if (!out[0])
        snprintf(out, n, "-");
}

static int report(struct load *L)
{
    const struct opts *o = &L->o;
    double win = L->t_meas1 - L->t_meas0;
    if (win <= 0)
        win = 1e-9;
    if (L->nlat)
        qsort(L->lat_us, L->nlat, sizeof *L->lat_us, cmp_u32);
    double p50 = pct_ms(L->lat_us, L->nlat, 0.50), p90 = pct_ms(L->lat_us, L->nlat, 0.90);
    double p99 = pct_ms(L->lat_us, L->nlat, 0.99);
    double mx = L->nlat ? L->lat_us[L->nlat - 1] / 1000.0 : 0;
    double cpu = rusage_s(&L->ru1) - rusage_s(&L->ru0);
    double wps = (double)L->m_wb_ok / win, rps = (double)L->m_req_ok / win;
    uint64_t nerr = sum_errs(&L->e);
    static const char *const calls[] = {"Submit", "SubmitBatch", "Get", "Search by phone", "Login"};
    const char *items = item_names[o->mode];
    char codes[256];

    codes_text(L->e.grpc, codes, sizeof codes);
    printf("wgload: %s", calls[o->mode]);
    if (o->mode == WL_BATCH)
        printf(" of %d", o->batch);
    if (o->mode == WL_GET)
        printf(" of %" PRIu64 " numbers", o->count);
    if (o->mode == WL_SEARCH)
        printf(" (%d results a call)", o->expect);
    if (o->rate > 0)
        printf(", open loop at %.1f calls/s, %d connection(s) x at most %d streams, warm-up %.1f "
               "s, measured %.2f s\n",
               o->rate, o->conns, o->streams, o->warmup, win);
    else
        printf(", %d connection(s) x %d streams = %d concurrent calls, warm-up %.1f s, measured "
               "%.2f s\n",
               o->conns, o->streams, o->conns * o->streams, o->warmup, win);
    printf("  %s/s   %.1f  (calls/s %.1f)\n", items, wps, rps);
    printf("  latency      p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  (per call, %zu "
           "calls)\n",
           p50, p90, p99, mx, L->nlat);
    if (o->mode == WL_SUBMIT || o->mode == WL_BATCH)
        printf("  accepted     %" PRIu64 " waybills in the window, %" PRIu64 " in the whole run, "
               "%" PRIu64 " reported as duplicates\n",
               L->m_wb_ok, L->all_wb_ok, L->all_dup);
    else
        printf("  answered     %" PRIu64 " %s in the window, %" PRIu64 " in the whole run\n",
               L->m_wb_ok, items, L->all_wb_ok);
    if (o->mode == WL_LOGIN && L->must_change)
        printf("  note         %" PRIu64 " tokens allow only ChangePassword (password expired or "
               "initial)\n",
               L->must_change);
    printf("  errors       %" PRIu64 "  (http %" PRIu64 ", reset %" PRIu64
           ", no grpc-status %" PRIu64 ", undecodable %" PRIu64 ", connection %" PRIu64
           ", unfinished %" PRIu64 "%s%s)\n",
           nerr, L->e.http, L->e.reset, L->e.nostatus, L->e.decode, L->e.conn, L->e.unfinished,
           L->e.exhausted ? ", segment exhausted or request not buildable" : "",
           L->e.count ? ", wrong number of Search results" : "");
    print_codes("  call status ", L->e.grpc);
    print_codes("  item status ", L->e.item);
    for (int i = 0; i < L->nsamples; i++)
        printf("  e.g.         %s\n", L->samples[i]);
    if (o->rate > 0)
        printf("  open loop    %" PRIu64 " calls due in the window: %" PRIu64 " sent, %" PRIu64
               " of them more than %.0f ms after they were due (%" PRIu64
               " waited for a free stream), %" PRIu64 " never sent; longest send lag %.2f ms; "
               "latency counts from the due time\n",
               L->r_sent + L->r_unsent, L->r_sent, L->r_late, LATE_S * 1e3, L->r_waited,
               L->r_unsent, L->lag_max * 1e3);
    printf("  client CPU   %.2f s user+sys in the window = %.0f%% of one core, %.1f us per call\n",
           cpu, 100.0 * cpu / win, L->m_req_ok ? cpu * 1e6 / (double)L->m_req_ok : 0.0);
    printf("RESULT mode=%s batch=%d conns=%d streams=%d concurrency=%d window_s=%.3f wps=%.1f "
           "cps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f ok_wb=%" PRIu64
           " ok_all=%" PRIu64 " errors=%" PRIu64 " dup=%" PRIu64
           " cpu_s=%.3f cpu_us_per_wb=%.2f next=%" PRIu64 " unimplemented=%" PRIu64 " codes=%s\n",
           mode_names[o->mode], o->batch ? o->batch : 1, o->conns, o->streams,
           o->conns * o->streams, win, wps, rps, p50, p90, p99, mx, L->m_wb_ok, L->all_wb_ok, nerr,
           L->all_dup, cpu, L->m_wb_ok ? cpu * 1e6 / (double)L->m_wb_ok : 0.0, L->next_no,
           L->e.grpc[12], codes);
    if (o->rate > 0)
        printf("RATE rate=%.1f due=%" PRIu64 " sent=%" PRIu64 " late=%" PRIu64 " waited=%" PRIu64
               " unsent=%" PRIu64 " lag_max_ms=%.3f\n",
               o->rate, L->r_sent + L->r_unsent, L->r_sent, L->r_late, L->r_waited, L->r_unsent,
               L->lag_max * 1e3);
    return nerr == 0 && L->m_wb_ok > 0 ? 0 : 1;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* --metadata "name: value": the name lower-cased (HTTP/2 requires it), not a pseudo-header nor
 * one wgload sets itself. Points into arg (argv lives as long as the run). */
static int add_metadata(struct opts *o, char *arg)
{
    static const char *const own[] = {"content-type", "te", "user-agent", "grpc-timeout"};
    char *colon = strchr(arg, ':');
    if (!colon || colon == arg || arg[0] == ':' || o->nmeta >= MAX_META) {
        fprintf(stderr, "wgload: --metadata wants 'name: value' (at most %d)\n", MAX_META);
        return -1;
    }
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    for (char *p = arg; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (strcmp(arg, own[i]) == 0) {
            fprintf(stderr, "wgload: --metadata may not set %s\n", arg);
            return -1;
        }
    o->meta_name[o->nmeta] = arg;
    o->meta_value[o->nmeta++] = v;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: wgload [options]\n"
        "  --addr HOST:PORT      gateway mTLS listener (default $WAYGATE_ADDR)\n"
        "  --ca FILE             CA bundle that signs the server certificate (default "
        "$WAYGATE_CA)\n"
        "  --cert FILE --key FILE  client certificate and key (default "
        "$WAYGATE_P_courier_a_CERT/KEY)\n"
        "  --segment P:FROM-TO   waybill-number segment (default $WAYGATE_SEGMENT_A)\n"
        "  --first N             first numeric part to use (default FROM)\n"
        "  --width W             digits of the numeric part (default: those of TO)\n"
        "  -c, --connections C   connections (default 1)\n"
        "  -s, --streams S       concurrent calls per connection (default 16)\n"
        "  -b, --batch N         SubmitBatch of N waybills per call (default 0: Submit)\n"
        "  -d, --duration SEC    measured duration (default 10)\n"
        "  -w, --warmup SEC      warm-up before measuring (default 1; 0 with -n)\n"
        "  -n, --requests N      stop after N calls instead of a duration\n"
        "  --get                 WaybillQuery/Get of numbers submitted earlier: random ones of\n"
        "                        --first .. --first + --count - 1\n"
        "  --count N             how many numbers --get picks from (from --first)\n"
        "  --search-phone PHONE  WaybillQuery/Search by PHONE; each call must stream exactly\n"
        "                        --expect results (default 20)\n"
        "  --login ACCOUNT       Admin/Login of ACCOUNT; the password is read from the\n"
        "                        environment variable named by --password-env VAR\n"
        "  --same-phone PHONE    Submit: every recipient gets PHONE (a target for --search-phone)\n"
        "  --metadata 'NAME: VALUE'  an extra header on every call (repeatable)\n"
        "  --rate R              open loop: R calls/s over all connections, each sent when due\n"
        "                        (at most -s in flight per connection); latency counts from\n"
        "                        the due time; calls sent late or never are reported\n"
        "  --token-env VAR       send 'authorization: Bearer $VAR' (a token from Login)\n"
        "  --as ACCOUNT          log in as ACCOUNT first (password: --password-env VAR), then\n"
        "                        send its token with every call of the load\n"
        "  --timeout-ms MS       send grpc-timeout\n"
        "  --origin-branch CODE  origin_branch of every waybill (default empty: the caller's)\n"
        "  --servername NAME     name (or IP) to verify in the server certificate (default: host)\n"
        "  --seed N              varies the synthetic content (default: from the clock)\n"
        "  --path PATH           override the method path\n"
        "  --dump N              print N synthetic waybills and exit\n"
        "  --self-test           check the ID check digit and the generator, then exit\n"
        "Exit status: 0 when every call succeeded, 1 when any failed, 2 on set-up errors.\n");
}

static int parse_segment(struct opts *o, const char *s)
{
    const char *colon = strchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof o->prefix)
        return -1;
    memcpy(o->prefix, s, (size_t)(colon - s));
    o->prefix[colon - s] = '\0';
    const char *to = strchr(colon + 1, '-');
    if (!to)
        return -1;
    char *end;
    errno = 0;
    o->seg_from = strtoull(colon + 1, &end, 10);
    if (end != to || errno)
        return -1;
    o->seg_to = strtoull(to + 1, &end, 10);
    if (*end || errno || o->seg_to < o->seg_from || end == to + 1)
        return -1;
    if (o->width == 0)
        o->width = (int)strlen(to + 1);
    return 0;
}

static int resolve(struct load *L, char *host, size_t hostlen)
{
    const char *a = L->o.addr, *port;
    if (a[0] == '[') {
        const char *rb = strchr(a, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - a - 1) >= hostlen)
            return -1;
        memcpy(host, a + 1, (size_t)(rb - a - 1));
        host[rb - a - 1] = '\0';
        port = rb + 2;
    } else {
        const char *c = strrchr(a, ':');
        if (!c || (size_t)(c - a) >= hostlen)
            return -1;
        memcpy(host, a, (size_t)(c - a));
        host[c - a] = '\0';
        port = c + 1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rv = getaddrinfo(host, port, &hints, &res);
    if (rv != 0 || !res) {
        fprintf(stderr, "wgload: %s: %s\n", a, gai_strerror(rv));
        return -1;
    }
    memcpy(&L->sa, res->ai_addr, res->ai_addrlen);
    L->salen = res->ai_addrlen;
    freeaddrinfo(res);
    snprintf(L->authority, sizeof L->authority, "%s", a);
    return 0;
}

static SSL_CTX *make_ssl(const struct opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3) != 0 ||
        SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void dump(struct load *L)
{
    struct wl_synth *s = &L->synth[0];
    for (int i = 0; i < L->o.dump; i++) {
        if (wl_synth_fill(s, &L->scfg, L->next_no + (uint64_t)i) != 0) {
            printf("(number does not fit)\n");
            return;
        }
        const Waygate__V1__Party *p = &s->sender, *q = &s->recipient;
        printf("%s | %s %s %s%s%s%s [%s] id=%s g=%d | %s %s %s%s%s%s | %s | dest %s | %ug %s\n",
               s->wb.waybill_no, p->name, p->phone, p->province, p->city, p->district,
               p->address_detail, p->company, p->id_number, p->gender, q->name, q->phone,
               q->province, q->city, q->district, q->address_detail, s->wb.item_description,
               s->wb.dest_region_code, s->wb.weight_grams, s->wb.service_type);
    }
}

int main(int argc, char **argv)
{
    static struct load load; /* zeroed; big, so not on the stack */
    struct load *L = &load;
    struct opts *o = &L->o;
    int rc = 2;
    const char *segment = getenv("WAYGATE_SEGMENT_A");
    bool first_set = false, warm_set = false, selftest = false;
    int nmodes = 0;
    const char *pwenv = NULL, *tokenv = NULL;

    o->addr = getenv("WAYGATE_ADDR");
    o->ca = getenv("WAYGATE_CA");
    o->cert = getenv("WAYGATE_P_courier_a_CERT");
    o->key = getenv("WAYGATE_P_courier_a_KEY");
    o->origin_branch = "";
    o->conns = 1;
    o->streams = 16;
    o->duration = 10;
    o->warmup = 1;
    o->seed = (uint64_t)time(NULL);

    enum {
        O_ADDR = 256,
        O_CA,
        O_CERT,
        O_KEY,
        O_SEG,
        O_FIRST,
        O_WIDTH,
        O_TMO,
        O_BRANCH,
        O_SNI,
        O_SEED,
        O_PATH,
        O_DUMP,
        O_SELF,
        O_GET,
        O_COUNT,
        O_SEARCH,
        O_EXPECT,
        O_LOGIN,
        O_PWENV,
        O_SAME,
        O_META,
        O_TOKENV,
        O_AS,
        O_RATE
    };
    static const struct option lo[] = {{"addr", 1, NULL, O_ADDR},
                                       {"ca", 1, NULL, O_CA},
                                       {"cert", 1, NULL, O_CERT},
                                       {"key", 1, NULL, O_KEY},
                                       {"segment", 1, NULL, O_SEG},
                                       {"first", 1, NULL, O_FIRST},
                                       {"width", 1, NULL, O_WIDTH},
                                       {"connections", 1, NULL, 'c'},
                                       {"streams", 1, NULL, 's'},
                                       {"batch", 1, NULL, 'b'},
                                       {"duration", 1, NULL, 'd'},
                                       {"warmup", 1, NULL, 'w'},
                                       {"requests", 1, NULL, 'n'},
                                       {"timeout-ms", 1, NULL, O_TMO},
                                       {"origin-branch", 1, NULL, O_BRANCH},
                                       {"servername", 1, NULL, O_SNI},
                                       {"seed", 1, NULL, O_SEED},
                                       {"path", 1, NULL, O_PATH},
                                       {"dump", 1, NULL, O_DUMP},
                                       {"self-test", 0, NULL, O_SELF},
                                       {"get", 0, NULL, O_GET},
                                       {"count", 1, NULL, O_COUNT},
                                       {"search-phone", 1, NULL, O_SEARCH},
                                       {"expect", 1, NULL, O_EXPECT},
                                       {"login", 1, NULL, O_LOGIN},
                                       {"password-env", 1, NULL, O_PWENV},
                                       {"same-phone", 1, NULL, O_SAME},
                                       {"metadata", 1, NULL, O_META},
                                       {"token-env", 1, NULL, O_TOKENV},
                                       {"as", 1, NULL, O_AS},
                                       {"rate", 1, NULL, O_RATE},
                                       {"help", 0, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "c:s:b:d:w:n:h", lo, NULL)) != -1) {
        switch (ch) {
        case O_ADDR:
            o->addr = optarg;
            break;
        case O_CA:
            o->ca = optarg;
            break;
        case O_CERT:
            o->cert = optarg;
            break;
        case O_KEY:
            o->key = optarg;
            break;
        case O_SEG:
            segment = optarg;
            break;
        case O_FIRST:
            o->first = strtoull(optarg, NULL, 10);
            first_set = true;
            break;
        case O_WIDTH:
            o->width = atoi(optarg);
            break;
        case 'c':
            o->conns = atoi(optarg);
            break;
        case 's':
            o->streams = atoi(optarg);
            break;
        case 'b':
            o->batch = atoi(optarg);
            break;
        case 'd':
            o->duration = atof(optarg);
            break;
        case 'w':
            o->warmup = atof(optarg);
            warm_set = true;
            break;
        case 'n':
            o->requests = atoll(optarg);
            break;
        case O_TMO:
            o->timeout_ms = atol(optarg);
            break;
        case O_BRANCH:
            o->origin_branch = optarg;
            break;
        case O_SNI:
            o->servername = optarg;
            break;
        case O_SEED:
            o->seed = strtoull(optarg, NULL, 10);
            break;
        case O_PATH:
            o->path = optarg;
            break;
        case O_DUMP:
            o->dump = atoi(optarg);
            break;
        case O_SELF:
            selftest = true;
            break;
        case O_GET:
            o->mode = WL_GET;
            nmodes++;
            break;
        case O_COUNT:
            o->count = strtoull(optarg, NULL, 10);
            break;
        case O_SEARCH:
            o->mode = WL_SEARCH;
            o->search_phone = optarg;
            nmodes++;
            break;
        case O_EXPECT:
            o->expect = atoi(optarg);
            break;
        case O_LOGIN:
            o->mode = WL_LOGIN;
            o->login_account = optarg;
            nmodes++;
            break;
        case O_PWENV:
            pwenv = optarg;
            break;
        case O_SAME:
            o->same_phone = optarg;
            break;
        case O_META:
            if (add_metadata(o, optarg) != 0)
                return 2;
            break;
        case O_TOKENV:
            tokenv = optarg;
            break;
        case O_AS:
            o->as_account = optarg;
            break;
        case O_RATE:
            o->rate = atof(optarg);
            if (!(o->rate > 0 && o->rate <= 1e6)) {
                fprintf(stderr, "wgload: --rate wants calls per second, 0 < R <= 1000000\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (selftest) {
        int bad = wl_synth_selftest() != 0 || wl_pace_selftest() != 0;
        printf("wgload self-test: %s\n", bad ? "FAILED" : "ok");
        return bad ? 1 : 0;
    }
    if (o->batch > 0 && o->mode == WL_SUBMIT)
        o->mode = WL_BATCH;
    if (nmodes > 1 || (o->batch > 0 && o->mode != WL_BATCH)) {
        fprintf(stderr, "wgload: --batch, --get, --search-phone and --login exclude each other\n");
        return 2;
    }
    bool numbered = o->mode == WL_SUBMIT || o->mode == WL_BATCH || o->mode == WL_GET || o->dump;
    if (!numbered && (!segment || !*segment))
        segment = "WG:1000000000-1999999999"; /* unused: Search and Login send no number */
    if (optind != argc || !segment || parse_segment(o, segment) != 0) {
        fprintf(stderr, "wgload: need --segment PREFIX:FROM-TO (or $WAYGATE_SEGMENT_A)\n");
        return 2;
    }
    if (o->mode == WL_SEARCH) {
        if (o->expect == 0)
            o->expect = 20;
        if (o->expect < 1 || o->expect > 10000 || !o->search_phone[0]) {
            fprintf(stderr, "wgload: --search-phone needs a phone and --expect 1..10000\n");
            return 2;
        }
    }
    if (o->mode == WL_LOGIN) {
        o->password = pwenv ? getenv(pwenv) : NULL;
        if (!o->password || !o->password[0] || !o->login_account[0]) {
            fprintf(stderr, "wgload: --login needs an account and --password-env VAR naming a "
                            "set, non-empty environment variable\n");
            return 2;
        }
    }
    if (o->as_account) {
        o->password = pwenv ? getenv(pwenv) : NULL;
        if (o->mode == WL_LOGIN || tokenv || !o->password || !o->password[0]) {
            fprintf(stderr, "wgload: --as needs --password-env VAR (a set, non-empty variable), "
                            "and excludes --login and --token-env\n");
            return 2;
        }
    }
    if (tokenv) {
        const char *tok = getenv(tokenv);
        if (!tok || !tok[0]) {
            fprintf(stderr, "wgload: --token-env %s: variable unset or empty\n", tokenv);
            return 2;
        }
        size_t n = strlen(tok) + sizeof "Bearer ";
        L->bearer = malloc(n);
        if (!L->bearer) {
            fprintf(stderr, "wgload: out of memory\n");
            return 2;
        }
        snprintf(L->bearer, n, "Bearer %s", tok);
    }
    if (!first_set)
        o->first = o->seg_from;
    if (o->first < o->seg_from || o->first > o->seg_to) {
        fprintf(stderr, "wgload: --first is outside the segment\n");
        goto out;
    }
    if (o->mode == WL_GET && (o->count == 0 || o->count - 1 > o->seg_to - o->first)) {
        fprintf(stderr, "wgload: --get needs --count N with --first .. --first + N - 1 in the "
                        "segment\n");
        goto out;
    }
    L->count_mode = o->requests > 0;
    if (L->count_mode && !warm_set)
        o->warmup = 0;
    if (!o->path) {
        static const char *const paths[] = {
            "/waygate.v1.WaybillIntake/Submit", "/waygate.v1.WaybillIntake/SubmitBatch",
            "/waygate.v1.WaybillQuery/Get", "/waygate.v1.WaybillQuery/Search",
            "/waygate.v1.Admin/Login"};
        o->path = paths[o->mode];
    }
    L->rng = mix64(o->seed) | 1; /* xorshift state: never 0 */
    if (o->timeout_ms)
        snprintf(L->timeout_hdr, sizeof L->timeout_hdr, "%ldm", o->timeout_ms);
    L->next_no = o->first;
    L->scfg = (struct wl_synth_cfg){.prefix = o->prefix,
                                    .width = o->width,
                                    .origin_branch = o->origin_branch,
                                    .seed = o->seed,
                                    .now = (int64_t)time(NULL),
                                    .same_phone = o->same_phone};
    size_t nsynth = o->batch ? (size_t)o->batch : 1;
    L->synth = calloc(nsynth, sizeof *L->synth);
    L->wbp = calloc(nsynth, sizeof *L->wbp);
    L->conns = calloc((size_t)o->conns, sizeof *L->conns);
    if (!L->synth || !L->wbp || !L->conns) {
        fprintf(stderr, "wgload: out of memory\n");
        goto out;
    }
    if (o->dump) {
        dump(L);
        rc = 0;
        goto out;
    }
    if (!o->addr || !o->ca || !o->cert || !o->key) {
        fprintf(stderr, "wgload: need --addr, --ca, --cert and --key (or the WAYGATE_* env)\n");
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    char host[256];
    if (resolve(L, host, sizeof host) != 0)
        goto out;
    if (!o->servername)
        o->servername = host;
    L->ssl = make_ssl(o);
    if (!L->ssl) {
        ssl_errors("cannot set up TLS (CA, certificate or key)");
        goto out;
    }
    /* open loop: timers to the microsecond (timerfd), not epoll's millisecond */
    struct event_config *ecfg = event_config_new();
    if (ecfg && o->rate > 0)
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    L->base = ecfg ? event_base_new_with_config(ecfg) : NULL;
    if (ecfg)
        event_config_free(ecfg);
    L->ev_timer = L->base ? evtimer_new(L->base, wl_timer_cb, L) : NULL;
    L->ev_pace = L->ev_timer ? evtimer_new(L->base, wl_pace_cb, L) : NULL;
    if (!L->ev_pace) {
        fprintf(stderr, "wgload: cannot set up libevent\n");
        goto out;
    }
    for (int i = 0; i < o->conns; i++)
        if (wl_conn_open(L, &L->conns[i]) != 0) {
            ssl_errors("cannot open a connection");
            goto out;
        }
    event_base_dispatch(L->base);
    if (L->phase == PH_CONNECT || L->phase == PH_LOGIN) {
        fprintf(stderr, "wgload: not every connection came up; no load was sent\n");
        goto out;
    }
    rc = report(L);
out:
    for (int i = 0; L->conns && i < o->conns; i++) {
        struct conn *c = &L->conns[i];
        while (c->reqs) {
            struct req *r = c->reqs;
            c->reqs = r->next;
            wl_req_free(r);
        }
        nghttp2_session_del(c->ng);
        if (c->bev)
            bufferevent_free(c->bev);
    }
    if (L->ev_pace)
        event_free(L->ev_pace);
    if (L->ev_timer)
        event_free(L->ev_timer);
    if (L->base)
        event_base_free(L->base);
    SSL_CTX_free(L->ssl);
    free(L->conns);
    free(L->synth);
    free(L->wbp);
    free(L->lat_us);
    if (L->bearer) {
        OPENSSL_cleanse(L->bearer, strlen(L->bearer));
        free(L->bearer);
    }
    return rc;
}
