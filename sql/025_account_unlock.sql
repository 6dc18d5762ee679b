-- 025_account_unlock: `waygatectl accounts unlock NAME` (Art. 31, 35). An account locked by
-- failed logins (account.failed_count, account.locked_until) stayed locked until the lock ran
-- out: the CLI's role could not clear it, no command did, and `accounts bootstrap` still counts a
-- locked security admin as enabled; so whoever could make five failed logins every 15 minutes
-- could keep an account (every security admin, and with them DisableAccount) locked for as long
-- as they liked. The CLI's role (D_admin) may now set exactly these two columns; it already reads
-- them (`accounts list`). It may not set the password, must_change or anything else of an
-- account (sql/006_accounts.sql), so an unlock never lets anyone in without the account's own
-- password. The command records itself in admin_log and the audit chain (account.unlock), in
-- the transaction of the change.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

COMMENT ON COLUMN account.locked_until IS
    'Set by the gateway at lockout_failures consecutive failed logins (Art. 35); cleared by a '
    'successful login, or by `waygatectl accounts unlock` (with failed_count).';

DO $unlock$
DECLARE
    adm text := current_database() || '_admin';
BEGIN
    EXECUTE format('GRANT UPDATE (failed_count, locked_until) ON account TO %I', adm);
END
$unlock$;
