-- 019_audit_partition: each login role writes only its own kind of audit chain (Art. 33).
--
-- Until now both login roles could INSERT into every chain: the gateway's role could append a
-- record to waygatectl's chain 'ctl', and the CLI's role to a gateway's chain, and the writer of
-- that chain then took the planted record as its head and signed a checkpoint over it (the
-- record hash has no secret, so a well-linked record is easy to build). The CLI's role could also
-- relabel a gateway's chain as 'ctl' (its UPDATE (kind) grant, meant only for the row lock), after
-- which the gateway refused to write its chain and every audited action failed.
--
-- Now, under row-level security (the owner, which only migrations and the destruction functions
-- use, is not subject to it):
--  - waygated (the gateway's role) may register only chains of kind 'gateway' and append records
--    and checkpoints only to such chains;
--  - waygatectl (the CLI's role) only to chains of kind 'ctl' (and registers no chain but 'ctl'
--    itself: another id registered as 'ctl' first would lock a gateway out of its own chain id);
--    it may lock its own chain's row
--    (SELECT ... FOR UPDATE needs an UPDATE policy) but no longer change any chain row: a
--    trigger refuses UPDATE and DELETE of audit_chain to everyone, as for the records;
--  - both still read every chain (recovery, export, verify, report).
-- What stays possible for someone holding the gateway's own role: appending to a gateway chain,
-- which is what the gateway itself does; docs/threat-model.md says what that allows.
--
-- A record's count is absent or non-negative: the canonical encoding writes a negative count as
-- absent, so -5 and NULL would hash alike. NOT VALID: rows already stored are not re-checked
-- here (a negative one is tampering, which `audit verify` reports); new rows are.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

ALTER TABLE audit_record ADD CONSTRAINT audit_record_count_check
    CHECK (count IS NULL OR count >= 0) NOT VALID;

CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

ALTER TABLE audit_chain ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_record ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoint ENABLE ROW LEVEL SECURITY;

DO $partition$
DECLARE
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    r     record;
BEGIN
    FOR r IN SELECT * FROM (VALUES (gw, 'gateway', 'gateway'), (adm, 'admin', 'ctl'))
                           AS v (role, tag, kind) LOOP
        EXECUTE format('CREATE POLICY audit_chain_%s_read ON audit_chain FOR SELECT TO %I '
                       'USING (true)', r.tag, r.role);
        -- the CLI's only chain is 'ctl' (which 008 created): registering another id as 'ctl'
        -- before a gateway first starts with it would make that gateway refuse its own chain
        EXECUTE format('CREATE POLICY audit_chain_%s_insert ON audit_chain FOR INSERT TO %I '
                       'WITH CHECK (kind = %L AND (kind <> ''ctl'' OR id = ''ctl''))', r.tag,
                       r.role, r.kind);
        EXECUTE format('CREATE POLICY audit_record_%s_read ON audit_record FOR SELECT TO %I '
                       'USING (true)', r.tag, r.role);
        EXECUTE format('CREATE POLICY audit_record_%s_insert ON audit_record FOR INSERT TO %I '
                       'WITH CHECK (EXISTS (SELECT 1 FROM audit_chain c WHERE c.id = chain '
                       'AND c.kind = %L))', r.tag, r.role, r.kind);
        EXECUTE format('CREATE POLICY audit_checkpoint_%s_read ON audit_checkpoint FOR SELECT '
                       'TO %I USING (true)', r.tag, r.role);
        EXECUTE format('CREATE POLICY audit_checkpoint_%s_insert ON audit_checkpoint FOR INSERT '
                       'TO %I WITH CHECK (EXISTS (SELECT 1 FROM audit_chain c WHERE c.id = chain '
                       'AND c.kind = %L))', r.tag, r.role, r.kind);
    END LOOP;
    -- the CLI's row lock on its own chain (audit_ctl.c); the trigger refuses any actual change
    EXECUTE format('CREATE POLICY audit_chain_admin_lock ON audit_chain FOR UPDATE TO %I '
                   'USING (kind = ''ctl'') WITH CHECK (false)', adm);
END
$partition$;
