-- 034_audit_append_in_order: a login role appends a record only at the seq after one its chain
-- holds, and a checkpoint only over a record its chain holds, with that record's hash (Art. 33).
--
-- Row-level security (sql/019) let each login role insert records and checkpoints at any seq of
-- its own kind of chain. Whoever held the gateway's role (or the CLI's, on chain 'ctl') could
-- therefore:
--  - plant checkpoint rows ahead of a chain's head, at every seq its writer would sign next (one
--    INSERT ... SELECT over generate_series, a junk signature). Each checkpoint the gateway then
--    signed met a planted row (ON CONFLICT DO NOTHING) and was not stored, so no record of the
--    chain was covered by a signature any more: the records after its last real checkpoint,
--    which docs/threat-model.md bounds by [audit] checkpoint_ms, stayed unattested for as long as
--    the planted rows lasted, for a DBA to cut or rewrite with no valid checkpoint to show it
--    (waygatectl, which inserts its checkpoint without ON CONFLICT, failed every command);
--  - plant a record at a seq far beyond the head, the largest bigint (9223372036854775807)
--    included: at its next start or recovery the gateway reads it as its head, and the seq after
--    it, where audit.break must go, does not exist, so it could write no audit record again and
--    every audited action failed, a lasting denial of service.
-- Now, restrictive policies (ANDed with 019's), for both login roles: a record's seq is 1, or
-- its chain holds seq - 1 already (a record of the same transaction counts: the writers insert
-- in seq order); a checkpoint's chain holds the record of its seq with the checkpoint's head
-- hash (the writers insert a checkpoint after its record, in the same transaction or a later
-- one). The link itself (prev_hash) is not checked here: audit.break starts a segment linked to
-- nothing, and a record that links properly is what the role can write anyway; the writer MAC
-- (sql/028) and the verifiers judge links. The owner, which only migrations and tests use, is
-- not subject to row-level security.
-- DROP POLICY IF EXISTS, then CREATE: its row deleted, this migration applies again unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

DO $in_order$
DECLARE
    gw  text := current_database() || '_gateway';
    adm text := current_database() || '_admin';
    r   record;
BEGIN
    FOR r IN SELECT * FROM (VALUES (gw, 'gateway'), (adm, 'admin')) AS v (role, tag) LOOP
        EXECUTE format('DROP POLICY IF EXISTS audit_record_%s_in_order ON audit_record', r.tag);
        EXECUTE format('CREATE POLICY audit_record_%s_in_order ON audit_record AS RESTRICTIVE '
                       'FOR INSERT TO %I WITH CHECK (audit_record.seq = 1 OR EXISTS (SELECT 1 '
                       'FROM audit_record p WHERE p.chain = audit_record.chain '
                       'AND p.seq = audit_record.seq - 1))', r.tag, r.role);
        EXECUTE format('DROP POLICY IF EXISTS audit_checkpoint_%s_over_a_record ON '
                       'audit_checkpoint', r.tag);
        EXECUTE format('CREATE POLICY audit_checkpoint_%s_over_a_record ON audit_checkpoint AS '
                       'RESTRICTIVE FOR INSERT TO %I WITH CHECK (EXISTS (SELECT 1 FROM '
                       'audit_record p WHERE p.chain = audit_checkpoint.chain '
                       'AND p.seq = audit_checkpoint.seq AND p.hash = audit_checkpoint.head_hash))',
                       r.tag, r.role);
    END LOOP;
END
$in_order$;
