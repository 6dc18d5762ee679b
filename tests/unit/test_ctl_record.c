/* test_ctl_record.c: the CLI's audit vocabulary (ctl_record.h): every command that changes
 * something maps to its audit action, written out here independently; commands that change
 * nothing map to none (recorded under their own names). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "audit_rec.h"
#include "ctl_record.h"

static const struct {
    const char *admin, *audit;
} want[] = {
    {"keys.init", "key.init"},
    {"keys.add-suite", "key.add_suite"},
    {"keys.rotate", "key.rotate"},
    {"keys.retire", "key.retire"},
    {"keys.rewrap", "key.rewrap"},
    {"keys.migrate_suite", "key.migrate_suite"},
    {"segments.issue", "segment.issue"},
    {"principals.add", "principal.add"},
    {"principals.disable", "principal.disable"},
    {"accounts.bootstrap", "account.create"},
    {"accounts.create", "account.create"},
    {"accounts.disable", "account.disable"},
    {"accounts.unlock", "account.unlock"},
    {"routes.add", "route.add"},
    {"routes.remove", "route.remove"},
};

static void test_every_changing_command_has_its_action(void **state)
{
    struct gw_audit_rec r = {.actor = "x", .outcome = "ok"};

    (void)state;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *a = ctl_record_action(want[i].admin);
        assert_non_null(a);
        assert_string_equal(a, want[i].audit);
        r.action = a; /* a valid action for the record's own check */
        assert_int_equal(gw_audit_rec_check(&r), 0);
    }
}

static void test_reading_commands_have_no_vocabulary_action(void **state)
{
    static const char *const reads[] = {"principals.list",
                                        "accounts.list",
                                        "segments.list",
                                        "keys.status",
                                        "routes.list",
                                        "",
                                        "keys"};

    (void)state;
    for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
        assert_null(ctl_record_action(reads[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_changing_command_has_its_action),
        cmocka_unit_test(test_reading_commands_have_no_vocabulary_action),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
