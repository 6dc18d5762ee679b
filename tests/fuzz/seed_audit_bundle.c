/* seed_audit_bundle.c: writes the seeds of fuzz_audit_bundle (tests/fuzz/make-seeds runs it): a
 * sealed bundle of two chains with records and signed checkpoints, made by the real writer
 * (domain/audit_bundle.c), each prefixed with the fuzz target's option byte. Usage:
 * seed_audit_bundle DIR. Not a fuzz target; built with them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_bundle.h"

struct buf {
    uint8_t p[1 << 16];
    size_t n;
};

static int sink(void *arg, const uint8_t *p, size_t n)
{
    struct buf *b = arg;

    if (b->n + n > sizeof(b->p))
        return GW_ETOOBIG;
    memcpy(b->p + b->n, p, n);
    b->n += n;
    return 0;
}

static const uint8_t SEED[GW_SIGN_SEED_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
static struct gw_sign_key KEY = {GW_SIGN_ED25519, SEED}; /* SM2 for the "sm2_" seeds */

static int ckpt(struct gw_bundle_writer *w, const char *chain, int64_t seq, const uint8_t *head)
{
    struct gw_audit_ckpt c = {.chain = chain, .seq = seq, .at_us = 1000 + seq};
    uint8_t msg[256], pub[GW_SIGN_PUB_MAX];
    size_t n, publen;

    memcpy(c.head, head, GW_AUDIT_HASH_LEN);
    if (gw_audit_checkpoint_msg(chain, seq, head, c.at_us, msg, sizeof msg, &n) != 0 ||
        gw_sign(&KEY, msg, n, c.sig, &c.siglen) != 0 || gw_sign_public(&KEY, pub, &publen) != 0 ||
        gw_audit_key_id(pub, publen, c.key_id) != 0)
        return -1;
    return gw_bundle_write_checkpoint(w, &c);
}

/* Chain "gw1": records 1..n1, a checkpoint at every 3rd; chain "gw2": 1..n2 and one at its end
 * (when sealed_tail is false the last records of gw1 stay uncovered). */
static int make(struct buf *b, int n1, int n2, int seal)
{
    struct gw_bundle_header h = {"waygatectl", 5000000, 0, 1000000, "auditor"};
    const char *chains[] = {"gw1", "gw2"};
    int lens[] = {n1, n2};
    struct gw_bundle_writer *w;
    uint8_t pub[GW_SIGN_PUB_MAX];
    size_t publen;

    b->n = 0;
    if (gw_sign_public(&KEY, pub, &publen) != 0 || gw_bundle_writer_new(sink, b, &h, &w) != 0)
        return -1;
    if (gw_bundle_write_key(w, pub, publen) != 0)
        return -1;
    for (int c = 0; c < 2; c++) {
        uint8_t prev[GW_AUDIT_HASH_LEN] = {0}, hash[GW_AUDIT_HASH_LEN];
        for (int i = 1; i <= lens[c]; i++) {
            char obj[16];
            snprintf(obj, sizeof obj, "o%d", i);
            struct gw_audit_rec r = {.actor = "clerk",
                                     .action = i % 2 ? "reveal" : "get",
                                     .object = obj,
                                     .count = i,
                                     .outcome = "ok"};
            struct gw_audit_link l = {.chain = chains[c], .seq = i, .at_us = 100 + i};
            memcpy(l.prev_hash, prev, sizeof prev);
            if (gw_audit_rec_hash(&r, &l, hash) != 0 || gw_bundle_write_record(w, &r, &l, hash))
                return -1;
            memcpy(prev, hash, sizeof hash);
            if ((c == 0 && i % 3 == 0) || (c == 1 && i == lens[c]))
                if (ckpt(w, chains[c], i, hash) != 0)
                    return -1;
        }
    }
    if (seal && gw_bundle_finish(w, &KEY) != 0)
        return -1;
    gw_bundle_writer_free(w);
    return 0;
}

static int put(const char *dir, const char *name, uint8_t opt, const struct buf *b)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    fputc(opt, f);
    fwrite(b->p, 1, b->n, f);
    return fclose(f);
}

int main(int argc, char **argv)
{
    static struct buf b;

    if (argc != 2) {
        fprintf(stderr, "usage: seed_audit_bundle DIR\n");
        return 2;
    }
    if (make(&b, 7, 2, 1) != 0 || put(argv[1], "sealed", 0, &b) != 0 ||
        put(argv[1], "sealed_unsealed_ok", 1, &b) != 0 || make(&b, 2, 1, 0) != 0 ||
        put(argv[1], "unsealed", 1, &b) != 0 || make(&b, 0, 0, 1) != 0 ||
        put(argv[1], "empty_sealed", 0, &b) != 0 || (KEY.alg = GW_SIGN_SM2, 0) ||
        make(&b, 7, 2, 1) != 0 || put(argv[1], "sm2_sealed", 0, &b) != 0) {
        fprintf(stderr, "seed_audit_bundle: cannot write the seeds\n");
        return 1;
    }
    return 0;
}
