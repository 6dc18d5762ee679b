/* bench_crypto.c: per-record cost of the crypto module: a fresh data key, 23 fields of ~20 bytes
 * sealed under it (AAD built per field), the data key wrapped under the KEK; then the same plus
 * 5 blind indexes and a content MAC; then opening it all again. Single thread, 100k records.
 * Build: linked against waygate_core (tests/bench/CMakeLists.txt), or by hand:
 *   gcc -O2 -Igateway tests/bench/bench_crypto.c gateway/{crypto,alloc,record}.c -lcrypto */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "record.h"

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double wall_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(void)
{
    enum { N = 100000 };
    struct gw_crypto *cx = gw_crypto_new();
    uint8_t kek[32], ikey[32], ckey[32], id[16] = {0}, dek[32], w[GW_CRYPTO_WRAPPED_DEK_LEN];
    uint8_t ct[GW_COL_COUNT][64], pt[64], bidx[16], mac[32];
    size_t ctn[GW_COL_COUNT], n;
    struct gw_crypto_aad aad;
    struct gw_crypto_item items[GW_COL_COUNT];
    const uint8_t *val = (const uint8_t *)"ABCDEFGHIJ0123456789";
    if (!cx || gw_crypto_dek_new(cx, kek) || gw_crypto_dek_new(cx, ikey) ||
        gw_crypto_dek_new(cx, ckey))
        return 1;
    for (int pass = 0; pass < 2; pass++) {
        double w0 = wall_now(), c0 = cpu_now();
        for (int i = 0; i < N; i++) {
            memcpy(id, &i, sizeof i);
            if (gw_crypto_dek_new(cx, dek))
                return 2;
            for (int f = 0; f < GW_COL_COUNT; f++) {
                if (gw_crypto_aad_field(&aad, GW_RECORD_TABLE, gw_col_sql[f], id, 1) ||
                    gw_crypto_seal_into(cx, GW_SUITE_AES, dek, aad.b, aad.n, val, 20, ct[f], 64,
                                        &ctn[f]))
                    return 3;
            }
            if (gw_crypto_dek_wrap(cx, GW_SUITE_AES, kek, 1, GW_RECORD_TABLE, id, dek, w))
                return 4;
            if (pass == 1) {
                for (int b = 0; b < 5; b++)
                    if (gw_crypto_blind_index(cx, GW_SUITE_AES, ikey, GW_BIDX_PHONE, val, 11, bidx))
                        return 5;
                for (int f = 0; f < GW_COL_COUNT; f++)
                    items[f] = (struct gw_crypto_item){gw_col_field[f], val, 20};
                if (gw_crypto_content_mac(cx, GW_SUITE_AES, ckey, items, GW_COL_COUNT, mac))
                    return 6;
            }
        }
        double w1 = wall_now(), c1 = cpu_now();
        printf("%-58s %6.2f us/record cpu, %6.2f us wall\n",
               pass == 0 ? "seal 23 fields x 20 B + new DEK + wrap"
                         : "seal 23 fields + DEK + wrap + 5 blind indexes + content MAC",
               (c1 - c0) / N * 1e6, (w1 - w0) / N * 1e6);
    }
    double w0 = wall_now(), c0 = cpu_now();
    for (int i = 0; i < N; i++) {
        if (gw_crypto_dek_unwrap(cx, GW_SUITE_AES, kek, 1, GW_RECORD_TABLE, id, w, sizeof w, dek))
            return 7;
        for (int f = 0; f < GW_COL_COUNT; f++)
            if (gw_crypto_aad_field(&aad, GW_RECORD_TABLE, gw_col_sql[f], id, 1) ||
                gw_crypto_open_into(cx, GW_SUITE_AES, dek, aad.b, aad.n, ct[f], ctn[f], pt,
                                    sizeof pt, &n))
                return 8;
    }
    double w1 = wall_now(), c1 = cpu_now();
    printf("%-58s %6.2f us/record cpu, %6.2f us wall\n", "unwrap DEK + open 23 fields",
           (c1 - c0) / N * 1e6, (w1 - w0) / N * 1e6);
    gw_crypto_free(cx);
    return 0;
}
