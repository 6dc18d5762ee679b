/* bench_base.c: what run.sh's baselines take from the gateway's own code, so that a baseline
 * does the same work as the gateway's step it stands for:
 *   bench_base get-sql            prints the statement the gateway's Get runs (store_read.c:
 *                                 the same columns, the same expressions), $1 the blind index
 *   bench_base scrypt N SECONDS   password verifications per second on one thread with scrypt
 *                                 cost N (r 8, p 1: crypto/password.h), the Login baseline
 * Output: one line, "RESULT ..." for scrypt. Exit status 0, or 2 on a usage or set-up error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "password.h"
#include "store_int.h"

static double wall_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int scrypt_rate(uint64_t n, double seconds)
{
    static const char pw[] = "bench-Password-42"; /* a made-up password, 17 characters */
    struct gw_pw_params pp = gw_pw_params_default(n);
    uint8_t salt[GW_PW_SALT_LEN], want[GW_PW_HASH_LEN];
    long count = 0;
    double t0, t;

    if (gw_pw_salt(salt) != 0 || gw_pw_hash(pw, strlen(pw), salt, &pp, want) != 0) {
        fprintf(stderr, "bench_base: scrypt with N=%llu failed\n", (unsigned long long)n);
        return 2;
    }
    t0 = wall_now();
    do {
        if (!gw_pw_verify(pw, strlen(pw), salt, &pp, want)) {
            fprintf(stderr, "bench_base: a verification failed\n");
            return 2;
        }
        count++;
        t = wall_now();
    } while (t - t0 < seconds);
    printf("RESULT mode=scrypt n=%llu verifies=%ld window_s=%.3f per_s=%.2f ms_each=%.3f\n",
           (unsigned long long)n, count, t - t0, (double)count / (t - t0),
           (t - t0) * 1e3 / (double)count);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "get-sql") == 0) {
        char *sql = gw_store_get_sql_new();
        if (!sql) {
            fprintf(stderr, "bench_base: cannot build the statement\n");
            return 2;
        }
        printf("%s\n", sql);
        free(sql);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "scrypt") == 0) {
        uint64_t n = strtoull(argv[2], NULL, 10);
        double s = atof(argv[3]);
        if (n < 1024 || (n & (n - 1)) != 0 || s <= 0 || s > 600) {
            fprintf(stderr, "bench_base: scrypt N (a power of two >= 1024) SECONDS (0..600)\n");
            return 2;
        }
        return scrypt_rate(n, s);
    }
    fprintf(stderr, "usage: bench_base get-sql | bench_base scrypt N SECONDS\n");
    return 2;
}
