/* bench_audit_gen.c: writes, as a psql script on stdout, one audit chain of N records with a
 * signed checkpoint every K records (and at the end), hashed and signed as the gateway's writer
 * does (domain/audit_rec), for the bundle export benchmark (tests/bench/audit_export.sh). COPY
 * streams, so psql loads a million records in seconds; memory is one record.
 *
 *   bench_audit_gen CHAIN N K KEYRING T0_US | psql -d DB-as-owner */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_rec.h"
#include "keyring.h"

static void hex(const uint8_t *p, size_t n)
{
    fputs("\\\\x", stdout);
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
}

int main(int argc, char **argv)
{
    struct gw_keyring *kr = NULL;
    char err[256], key_id[65];
    uint8_t pub[GW_AUDIT_PUB_LEN], prev[GW_AUDIT_HASH_LEN] = {0}, h[GW_AUDIT_HASH_LEN];
    const uint8_t *seed;
    if (argc != 6) {
        fprintf(stderr, "usage: bench_audit_gen CHAIN N K KEYRING T0_US\n");
        return 2;
    }
    const char *chain = argv[1];
    int64_t n = strtoll(argv[2], NULL, 10), k = strtoll(argv[3], NULL, 10);
    int64_t t0 = strtoll(argv[5], NULL, 10);
    if (n < 1 || k < 1 || gw_keyring_file_load(argv[4], &kr, err, sizeof err) != 0 ||
        !(seed = gw_keyring_audit_seed(kr, GW_SUITE_AES)) || gw_audit_public(seed, pub) != 0 ||
        gw_audit_key_id(pub, key_id) != 0) {
        fprintf(stderr, "bench_audit_gen: bad arguments or keyring: %s\n", err);
        return 1;
    }
    printf("INSERT INTO audit_chain (id, kind) VALUES ('%s', 'gateway') ON CONFLICT DO NOTHING;\n"
           "INSERT INTO audit_key (key_id, public_key) VALUES ('%s', '\\x",
           chain, key_id);
    for (size_t i = 0; i < sizeof pub; i++)
        printf("%02x", pub[i]);
    printf("') ON CONFLICT DO NOTHING;\n");
    /* records first (their COPY), remembering nothing but the running hash; checkpoints are
     * re-derived in a second pass over the same deterministic records */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0)
            printf("COPY audit_record (chain, seq, at_us, actor, role, peer, cert, branch, action, "
                   "object, count, purpose, legal_basis, approval, outcome, detail, "
                   "confidential, prev_hash, hash) FROM stdin;\n");
        else
            printf("COPY audit_checkpoint (chain, seq, head_hash, at_us, key_id, signature) "
                   "FROM stdin;\n");
        memset(prev, 0, sizeof prev);
        for (int64_t s = 1; s <= n; s++) {
            char obj[64], peer[32];
            snprintf(obj, sizeof obj, "3f2c9a1e-0000-4000-8000-%012" PRId64 ":phone", s);
            snprintf(peer, sizeof peer, "10.1.%d.%d", (int)(s / 250 % 250), (int)(s % 250));
            struct gw_audit_rec r = {.actor = "clerk_a",
                                     .role = "branch_clerk",
                                     .peer = peer,
                                     .cert = "branch_a",
                                     .branch = "a",
                                     .action = "reveal",
                                     .object = obj,
                                     .count = -1,
                                     .purpose = "delivery dispute",
                                     .outcome = "ok"};
            struct gw_audit_link l = {.chain = chain, .seq = s, .at_us = t0 + s * 1000};
            memcpy(l.prev_hash, prev, sizeof prev);
            if (gw_audit_rec_hash(&r, &l, h) != 0)
                return 1;
            if (pass == 0) {
                printf("%s\t%" PRId64 "\t%" PRId64 "\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\\N\t%s\t\\N\t\\N"
                       "\t%s\t\\N\tf\t",
                       chain, s, l.at_us, r.actor, r.role, r.peer, r.cert, r.branch, r.action,
                       r.object, r.purpose, r.outcome);
                hex(prev, sizeof prev);
                putchar('\t');
                hex(h, sizeof h);
                putchar('\n');
            } else if (s % k == 0 || s == n) {
                uint8_t msg[256], sig[GW_AUDIT_SIG_LEN];
                size_t len;
                int64_t at = l.at_us + 500;
                if (gw_audit_checkpoint_msg(chain, s, h, at, msg, sizeof msg, &len) != 0 ||
                    gw_audit_sign(seed, msg, len, sig) != 0)
                    return 1;
                printf("%s\t%" PRId64 "\t", chain, s);
                hex(h, sizeof h);
                printf("\t%" PRId64 "\t%s\t", at, key_id);
                hex(sig, sizeof sig);
                putchar('\n');
            }
            memcpy(prev, h, sizeof h);
        }
        printf("\\.\n");
    }
    gw_keyring_free(kr);
    return fflush(stdout) == 0 ? 0 : 1;
}
