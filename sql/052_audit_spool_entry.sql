-- 052_audit_spool_entry: each entry of the audit spool is written at most once (Art. 33, 17).
--
-- The audit spool ([audit] spool, gateway/store/audit_spool.c) holds, between a stop and the next
-- start, the records and incident rows the database had not taken. It is MAC'd, but a MAC proves
-- who wrote a file, not that it was not replayed already: a hard kill while a replay ran left the
-- file as it was read, and an old file copied back into place (whoever can write the spool's
-- directory, without the key) verified and was written again, its records and rows a second time.
-- Now every spool has a random id and each entry an index in it; an entry's first statement
-- inserts (spool, idx) here, in the entry's own transaction, so a row here exists exactly when
-- the entry committed, and a second write of it fails on the primary key (23505) and writes
-- nothing: the replay counts it as written before and goes on. An entry carried into a later
-- spool keeps its (spool, idx).
--
-- Append-only like the audit tables (audit_append_only(), sql/008): a row removed would let its
-- entry be written again. The gateway's role may only INSERT (no SELECT: the primary key decides);
-- the CLI's role reads it. Applied in one transaction by `waygatectl migrate` as the owner: no
-- transaction control; rerunnable, as every migration is (the table kept, its triggers made
-- again).

CREATE TABLE IF NOT EXISTS audit_spool_entry (
    spool      bytea NOT NULL CHECK (octet_length(spool) = 16),
    idx        integer NOT NULL CHECK (idx >= 0),
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (spool, idx)
);
COMMENT ON TABLE audit_spool_entry IS
    'Audit spool entries written: (spool id, index), inserted by the entry''s own transaction.';

DROP TRIGGER IF EXISTS audit_spool_entry_append_only ON audit_spool_entry;
CREATE TRIGGER audit_spool_entry_append_only BEFORE UPDATE OR DELETE ON audit_spool_entry
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
DROP TRIGGER IF EXISTS audit_spool_entry_no_truncate ON audit_spool_entry;
CREATE TRIGGER audit_spool_entry_no_truncate BEFORE TRUNCATE ON audit_spool_entry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

DO $spool$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
BEGIN
    EXECUTE format('ALTER TABLE audit_spool_entry OWNER TO %I', owner);
    EXECUTE format('REVOKE ALL ON TABLE audit_spool_entry FROM PUBLIC, %I, %I', gw, adm);
    EXECUTE format('GRANT INSERT ON audit_spool_entry TO %I', gw);
    EXECUTE format('GRANT SELECT ON audit_spool_entry TO %I', adm);
END
$spool$;
