/* fuzz_audit_bundle.c: the audit-bundle verifier (domain/audit_bundle_verify.c), the parser an
 * auditor runs on a file from elsewhere. The first byte chooses the options (unsealed allowed, a
 * trusted key required) and how the rest is cut into feeds; the verdict must not depend on the
 * cutting (the bundle is fed once whole and once in pieces), a refusal must name its place, and
 * nothing may be read outside the input. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "audit_bundle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int verify(const uint8_t *p, size_t n, uint8_t sel, bool pieces, char *why, size_t whysz)
{
    static const char *const trust[] = {"0123456789abcdef0123456789abcdef"};
    struct gw_bundle_verify_opts o = {
        .unsealed = sel & 1,
        .whole = sel & 4,
        .trust_keys = trust,
        .ntrust = sel & 2 ? 1 : 0,
    };
    struct gw_bundle_verifier *v = NULL;
    uint32_t x = sel * 2654435761u + 7u;
    size_t off = 0;
    int rc;

    if (gw_bundle_verifier_new(&o, &v) != 0)
        __builtin_trap();
    rc = 0;
    while (off < n && rc == 0) {
        size_t take = n - off;
        if (pieces) {
            x = x * 1103515245u + 12345u;
            take = 1 + (x >> 16) % 61;
            if (take > n - off)
                take = n - off;
        }
        rc = gw_bundle_verify_feed(v, p + off, take);
        off += take;
    }
    if (rc == 0)
        rc = gw_bundle_verify_end(v);
    snprintf(why, whysz, "%s", gw_bundle_verify_error(v));
    if (rc != 0 && why[0] == '\0')
        __builtin_trap(); /* a refusal names the first bad place */
    gw_bundle_verifier_free(v);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char w1[GW_BUNDLE_ERR_MAX], w2[GW_BUNDLE_ERR_MAX];
    int r1, r2;

    if (size < 1)
        return 0;
    r1 = verify(data + 1, size - 1, data[0], false, w1, sizeof(w1));
    r2 = verify(data + 1, size - 1, data[0], true, w2, sizeof(w2));
    if (r1 != r2)
        __builtin_trap();
    return 0;
}
