-- 037_last_security_admin: at least one enabled security_admin account is left (Art. 31, 34, 38).
--
-- A security admin could disable every other security admin (DisableAccount, or the operator's
-- `waygatectl accounts disable`), and then their own account, leaving nobody able to create or
-- disable accounts: recovery was `waygatectl accounts bootstrap`, on the database host. Two
-- security admins disabling each other at the same moment both succeeded, each transaction still
-- seeing the other account enabled. Now the change that would leave no enabled security_admin
-- account (disabling it, deleting it, giving it another role, whoever writes: the gateway, the
-- CLI, the inactivity sweep, the owner) is refused with WA001 in its own transaction. The check
-- takes a transaction-scoped advisory lock first, so that such changes run one after another: the
-- second one waits for the first to end and then, in READ COMMITTED (every writer's isolation),
-- counts what the first committed. REPEATABLE READ and SERIALIZABLE would count from a snapshot
-- taken before the wait (PostgreSQL's serializable checks do not see a READ COMMITTED writer), so
-- that two disables could each count the other's account enabled: both refused.
-- A security admin disabling their own account is such a change, and counts the same way.
-- Locked accounts (account.locked_until) stay enabled: a lock runs out, or `accounts unlock`
-- clears it.
-- CREATE OR REPLACE, DROP TRIGGER IF EXISTS: this migration applies again unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE OR REPLACE FUNCTION account_keep_security_admin() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
BEGIN
    -- the lock key is documented (docs/threat-model.md) and taken by nothing else
    PERFORM pg_advisory_xact_lock(hashtext('waygate.accounts.security_admin'));
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'account: a security_admin account is disabled only in a READ COMMITTED '
                        'transaction' USING ERRCODE = 'WA001';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM account WHERE role = 'security_admin' AND disabled_at IS NULL)
    THEN
        RAISE EXCEPTION 'account: the last enabled security_admin account stays enabled'
            USING ERRCODE = 'WA001';
    END IF;
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION account_keep_security_admin() IS
    'Refuses (WA001) a change that leaves no enabled security_admin account; serialised by an '
    'advisory lock (Art. 31, 34).';

DROP TRIGGER IF EXISTS account_keep_security_admin_update ON account;
CREATE TRIGGER account_keep_security_admin_update
    AFTER UPDATE OF disabled_at, role ON account FOR EACH ROW
    WHEN (OLD.role = 'security_admin' AND OLD.disabled_at IS NULL AND
          (NEW.disabled_at IS NOT NULL OR NEW.role <> 'security_admin'))
    EXECUTE FUNCTION account_keep_security_admin();

DROP TRIGGER IF EXISTS account_keep_security_admin_delete ON account;
CREATE TRIGGER account_keep_security_admin_delete
    AFTER DELETE ON account FOR EACH ROW
    WHEN (OLD.role = 'security_admin' AND OLD.disabled_at IS NULL)
    EXECUTE FUNCTION account_keep_security_admin();

DO $keep$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
BEGIN
    EXECUTE format('ALTER FUNCTION account_keep_security_admin() OWNER TO %I', owner);
    REVOKE ALL ON FUNCTION account_keep_security_admin() FROM PUBLIC;
END
$keep$;
