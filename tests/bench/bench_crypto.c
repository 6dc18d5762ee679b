/* bench_crypto.c: per-record cost of the crypto module under each suite (aes: AES-256-GCM +
 * HMAC-SHA256; sm: SM4-CTR + HMAC-SM3), and the sm/aes ratio measured in the same run. Per
 * record: a fresh data key, 23 fields of ~20 bytes sealed under it (AAD built per field), the
 * data key wrapped under the KEK; then the same plus 5 blind indexes and a content MAC; then
 * opening it all again. Single thread. The suites alternate in ROUNDS rounds of N records and
 * each figure is the median over the rounds (CPU time of the process), so a neighbour's load on
 * a shared machine hits both suites alike. A tool, not a test: nothing is asserted.
 * Build: linked against waygate_core (tests/bench/CMakeLists.txt). Run:
 * build/tests/bench/bench_crypto (both suites, alternating), or bench_crypto aes|sm (that suite
 * alone: for perf record or an A/B of two builds); BENCH_CRYPTO_N=RECORDS per round and phase
 * (default 20000). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "record.h"

enum { ROUNDS = 7, PHASES = 3 };
static int N = 20000; /* records per round and phase; BENCH_CRYPTO_N overrides */

static const char *const phase_name[PHASES] = {
    "seal 23 fields x 20 B + new DEK + wrap",
    "seal 23 fields + DEK + wrap + 5 blind indexes + content MAC",
    "unwrap DEK + open 23 fields",
};

struct keys {
    uint8_t kek[32], ikey[32], ckey[32];
};

/* One record's sealed state, kept for the open phase. */
struct sealed {
    uint8_t id[16], w[GW_CRYPTO_WRAPPED_DEK_LEN];
    uint8_t ct[GW_COL_COUNT][64];
    size_t ctn[GW_COL_COUNT];
};

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int seal_record(struct gw_crypto *cx, enum gw_suite su, const struct keys *k, int full,
                       int i, struct sealed *s)
{
    static const uint8_t val[] = "ABCDEFGHIJ0123456789";
    uint8_t dek[32], bidx[16], mac[32];
    struct gw_crypto_aad aad;
    struct gw_crypto_item items[GW_COL_COUNT];
    memset(s->id, 0, sizeof s->id);
    memcpy(s->id, &i, sizeof i);
    if (gw_crypto_dek_new(cx, dek))
        return 2;
    for (int f = 0; f < GW_COL_COUNT; f++)
        if (gw_crypto_aad_field(&aad, GW_RECORD_TABLE, gw_col_sql[f], s->id, 1) ||
            gw_crypto_seal_into(cx, su, dek, aad.b, aad.n, val, 20, s->ct[f], 64, &s->ctn[f]))
            return 3;
    if (gw_crypto_dek_wrap(cx, su, k->kek, 1, GW_RECORD_TABLE, s->id, dek, s->w))
        return 4;
    if (!full)
        return 0;
    for (int b = 0; b < 5; b++)
        if (gw_crypto_blind_index(cx, su, k->ikey, GW_BIDX_PHONE, val, 11, bidx))
            return 5;
    for (int f = 0; f < GW_COL_COUNT; f++)
        items[f] = (struct gw_crypto_item){gw_col_field[f], val, 20, gw_col_field_len[f]};
    if (gw_crypto_content_mac(cx, su, k->ckey, items, GW_COL_COUNT, mac))
        return 6;
    return 0;
}

static int open_record(struct gw_crypto *cx, enum gw_suite su, const struct keys *k,
                       const struct sealed *s)
{
    uint8_t dek[32], pt[64];
    struct gw_crypto_aad aad;
    size_t n;
    if (gw_crypto_dek_unwrap(cx, su, k->kek, 1, GW_RECORD_TABLE, s->id, s->w, sizeof s->w, dek))
        return 7;
    for (int f = 0; f < GW_COL_COUNT; f++)
        if (gw_crypto_aad_field(&aad, GW_RECORD_TABLE, gw_col_sql[f], s->id, 1) ||
            gw_crypto_open_into(cx, su, dek, aad.b, aad.n, s->ct[f], s->ctn[f], pt, sizeof pt, &n))
            return 8;
    return 0;
}

/* CPU microseconds per record of one phase over N records, or a negative error. */
static double run(struct gw_crypto *cx, enum gw_suite su, const struct keys *k, int phase,
                  struct sealed *s)
{
    double c0 = cpu_now();
    for (int i = 0; i < N; i++) {
        int rc = phase < 2 ? seal_record(cx, su, k, phase == 1, i, s) : open_record(cx, su, k, s);
        if (rc)
            return -rc;
    }
    return (cpu_now() - c0) / N * 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* bench_crypto SUITE: that suite only, ROUNDS x N records of each phase, for a profiler. */
static int one_suite(const char *name)
{
    enum gw_suite su;
    struct gw_crypto *cx = gw_crypto_new();
    struct keys k;
    struct sealed s;
    if (gw_suite_parse(name, &su) != 0 || !cx || gw_crypto_dek_new(cx, k.kek) ||
        gw_crypto_dek_new(cx, k.ikey) || gw_crypto_dek_new(cx, k.ckey) ||
        seal_record(cx, su, &k, 1, 0, &s))
        return 1;
    for (int p = 0; p < PHASES; p++) {
        double v[ROUNDS];
        for (int r = 0; r < ROUNDS; r++)
            if ((v[r] = run(cx, su, &k, p, &s)) < 0)
                return (int)-v[r];
        printf("%-60s %9.2f us (%s)\n", phase_name[p], median(v, ROUNDS), name);
    }
    gw_crypto_free(cx);
    return 0;
}

int main(int argc, char **argv)
{
    const char *n = getenv("BENCH_CRYPTO_N");
    if (n && atoi(n) > 0)
        N = atoi(n);
    if (argc == 2)
        return one_suite(argv[1]);
    static double us[PHASES][GW_SUITE_COUNT][ROUNDS], ratio[PHASES][ROUNDS];
    static const enum gw_suite suites[GW_SUITE_COUNT] = {GW_SUITE_AES, GW_SUITE_SM};
    struct gw_crypto *cx = gw_crypto_new();
    struct keys k;
    struct sealed s[GW_SUITE_COUNT];
    if (!cx || gw_crypto_dek_new(cx, k.kek) || gw_crypto_dek_new(cx, k.ikey) ||
        gw_crypto_dek_new(cx, k.ckey))
        return 1;
    for (int si = 0; si < GW_SUITE_COUNT; si++) /* warm-up, and a record to open */
        if (seal_record(cx, suites[si], &k, 1, 0, &s[si]) ||
            open_record(cx, suites[si], &k, &s[si]))
            return 1;
    for (int r = 0; r < ROUNDS; r++)
        for (int p = 0; p < PHASES; p++) {
            for (int si = 0; si < GW_SUITE_COUNT; si++) {
                int o = (r & 1) ? GW_SUITE_COUNT - 1 - si : si; /* alternate which runs first */
                double v = run(cx, suites[o], &k, p, &s[o]);
                if (v < 0)
                    return (int)-v;
                us[p][o][r] = v;
            }
            ratio[p][r] = us[p][1][r] / us[p][0][r];
        }
    printf("%d rounds x %d records, suites alternating; medians of CPU time per record\n", ROUNDS,
           N);
    printf("%-60s %9s %9s %8s\n", "", "aes us", "sm us", "sm/aes");
    for (int p = 0; p < PHASES; p++) {
        double a = median(us[p][0], ROUNDS), b = median(us[p][1], ROUNDS);
        printf("%-60s %9.2f %9.2f %8.2f\n", phase_name[p], a, b, median(ratio[p], ROUNDS));
    }
    gw_crypto_free(cx);
    return 0;
}
