/* fuzz_policy.c: the policy parser (policy/policy_file.c, gw_policy_parse) on arbitrary text. A
 * parse either fails with a one-line message or yields a policy that can be asked questions. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_policy *pol = NULL;
    char err[256];
    int rc;

    rc = gw_policy_parse((const char *)data, size, "fuzz.conf", NULL, 0, &pol, err, sizeof(err));
    if (rc != 0) {
        if (pol != NULL || memchr(err, '\0', sizeof(err)) == NULL)
            __builtin_trap(); /* a failure leaves no policy and a terminated message */
        return 0;
    }
    gw_policy_free(pol);
    return 0;
}
