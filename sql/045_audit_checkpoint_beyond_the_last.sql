-- 045_audit_checkpoint_beyond_the_last: a login role inserts a checkpoint only beyond every
-- checkpoint its chain holds (Art. 33).
--
-- sql/034 held a checkpoint to a stored record of its chain, with that record's hash, but not to
-- the chain's end: whoever held the gateway's role (or the CLI's, on chain 'ctl') inserted, in
-- one statement, a checkpoint with a junk signature over every record already signed (seq 1 to
-- 13 under a real checkpoint at 14, review). `audit verify` named each as forged, as it should,
-- but the trail is append-only, so it failed so for good; and both exporters took the checkpoints
-- around a range by position alone (gateway/store/audit_read.c widen, audit_scan.c's plan), so a
-- bundle was anchored and covered by planted rows instead of the real checkpoint after them, and
-- verified with its records "not covered by a valid checkpoint".
-- Now, restrictive policies (ANDed with 019's and 034's), for both login roles: a checkpoint's
-- seq is greater than that of every checkpoint of its chain over a stored record with that
-- record's hash (the only kind 034 lets them insert; a row only the owner could plant past the
-- head does not stop the writers). The writers sign their chain's head
-- under the chain's lock (the gateway's advisory lock, the CLI's row lock on audit_chain), so each
-- of their checkpoints is beyond the last; a planted row can now go only over records no
-- checkpoint covers yet, those written within `[audit] checkpoint_ms` (or the CLI's records of
-- runs without the keyring), as docs/threat-model.md says. The gateway's own insert skips a seq
-- already passed (gateway/store/audit.c CHECKPOINT_SQL), as it skipped a planted row at its seq.
-- DROP POLICY IF EXISTS, then CREATE: its row deleted, this migration applies again unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

DO $beyond_the_last$
DECLARE
    gw  text := current_database() || '_gateway';
    adm text := current_database() || '_admin';
    r   record;
BEGIN
    FOR r IN SELECT * FROM (VALUES (gw, 'gateway'), (adm, 'admin')) AS v (role, tag) LOOP
        EXECUTE format('DROP POLICY IF EXISTS audit_checkpoint_%s_beyond_the_last ON '
                       'audit_checkpoint', r.tag);
        EXECUTE format('CREATE POLICY audit_checkpoint_%s_beyond_the_last ON audit_checkpoint AS '
                       'RESTRICTIVE FOR INSERT TO %I WITH CHECK (NOT EXISTS (SELECT 1 FROM '
                       'audit_checkpoint k JOIN audit_record p ON p.chain = k.chain '
                       'AND p.seq = k.seq AND p.hash = k.head_hash '
                       'WHERE k.chain = audit_checkpoint.chain '
                       'AND k.seq >= audit_checkpoint.seq))', r.tag, r.role);
    END LOOP;
END
$beyond_the_last$;
