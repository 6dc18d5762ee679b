-- 008_audit: the audit trail (Art. 33, 37, 16, 17). Append-only, hash-chained records and signed
-- checkpoints; the format is specified byte for byte in docs/audit-bundle-format.md.
--
-- Chains. Each gateway instance writes its own chain (its id, `[audit] chain` in the config); the
-- chain head lives in the gateway process, which chains the records of one transaction in memory
-- (gateway/store/audit.c), so no commit waits on a chain-head row here. waygatectl writes the
-- chain 'ctl', serialised by a row lock on its audit_chain row (the CLI's rate is a few commits a
-- minute). Records: seq 1, 2, 3, ... per chain; prev_hash of seq 1 is 32 zero bytes; hash is
-- SHA-256 of the canonical encoding of the record's hashed columns and prev_hash.
-- Checkpoints: Ed25519 signatures over (chain, seq, head hash, time) by the key whose public half
-- is in audit_key.
--
-- Neither login role may ever change or remove a record: no UPDATE, DELETE or TRUNCATE privilege,
-- and a trigger refuses those statements to everyone, the owner included (a test that tampers must
-- first disable the trigger as a superuser, which is what an attacker would have to do too).
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE TABLE audit_chain (
    id         text        PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._:@-]{1,64}$'),
    kind       text        NOT NULL CHECK (kind IN ('gateway', 'ctl')),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE audit_chain IS
    'Audit chains: one per gateway instance, and ''ctl'' for waygatectl (its row is the CLI''s lock).';

CREATE TABLE audit_record (
    chain        text        NOT NULL REFERENCES audit_chain (id),
    seq          bigint      NOT NULL CHECK (seq >= 1),
    at_us        bigint      NOT NULL,       -- the writer's clock, microseconds since the epoch
    actor        text        NOT NULL,       -- account name, or certificate principal name
    role         text,
    peer         text,                       -- remote address, 'local' for the CLI
    cert         text,                       -- the certificate principal (the device or system)
    branch       text,
    action       text        NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]{0,63}$'),
    object       text,                       -- what was acted on (never PII)
    count        bigint,                     -- records affected, where meaningful
    purpose      text,
    legal_basis  text,
    approval     text,                       -- approval reference (bulk request, lawful case)
    outcome      text        NOT NULL CHECK (outcome ~ '^[a-z][a-z0-9_]{0,31}$'),
    detail       text,
    confidential boolean     NOT NULL,       -- lawful access (Art. 16): auditors only
    prev_hash    bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash         bytea       NOT NULL CHECK (octet_length(hash) = 32),
    recorded_at  timestamptz NOT NULL DEFAULT now(), -- the database's clock; not hashed
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_record_at_idx ON audit_record (at_us);
CREATE INDEX audit_record_action_idx ON audit_record (action, at_us);
COMMENT ON TABLE audit_record IS
    'Hash-chained audit records (Art. 33): who, role, where, what, why; never PII, never secrets.';

CREATE TABLE audit_key (
    key_id     text        PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{64}$'), -- hex SHA-256 of public_key
    public_key bytea       NOT NULL CHECK (octet_length(public_key) = 32),  -- raw Ed25519
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE audit_key IS
    'Public halves of the checkpoint signing keys (Ed25519); the private halves are in the keyring.';

CREATE TABLE audit_checkpoint (
    chain     text   NOT NULL REFERENCES audit_chain (id),
    seq       bigint NOT NULL CHECK (seq >= 1),
    head_hash bytea  NOT NULL CHECK (octet_length(head_hash) = 32),
    at_us     bigint NOT NULL,
    key_id    text   NOT NULL REFERENCES audit_key (key_id),
    signature bytea  NOT NULL CHECK (octet_length(signature) = 64),
    PRIMARY KEY (chain, seq)
);
COMMENT ON TABLE audit_checkpoint IS
    'Signed checkpoints: Ed25519 over (chain, seq, head hash, time); see docs/audit-bundle-format.md.';

CREATE FUNCTION audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;

CREATE TRIGGER audit_record_append_only BEFORE UPDATE OR DELETE ON audit_record
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_record_no_truncate BEFORE TRUNCATE ON audit_record
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_checkpoint
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_key_append_only BEFORE UPDATE OR DELETE ON audit_key
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

INSERT INTO audit_chain (id, kind) VALUES ('ctl', 'ctl');

DO $audit$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    t     text;
BEGIN
    FOREACH t IN ARRAY ARRAY['audit_chain', 'audit_record', 'audit_key', 'audit_checkpoint'] LOOP
        EXECUTE format('ALTER TABLE %I OWNER TO %I', t, owner);
        EXECUTE format('REVOKE ALL ON TABLE %I FROM PUBLIC, %I, %I', t, gw, adm);
    END LOOP;
    EXECUTE format('ALTER FUNCTION audit_append_only() OWNER TO %I', owner);

    -- waygated: registers its chain and its signing key, appends records and checkpoints, reads
    -- the trail (chain-head recovery at start, Compliance.ExportAudit, Report). Never UPDATE,
    -- DELETE or TRUNCATE.
    EXECUTE format('GRANT SELECT, INSERT ON audit_chain TO %I', gw);
    EXECUTE format('GRANT SELECT ON audit_record TO %I', gw);
    EXECUTE format('GRANT INSERT (chain, seq, at_us, actor, role, peer, cert, branch, action, '
                   'object, count, purpose, legal_basis, approval, outcome, detail, confidential, '
                   'prev_hash, hash) ON audit_record TO %I', gw);
    EXECUTE format('GRANT SELECT, INSERT ON audit_key TO %I', gw);
    EXECUTE format('GRANT SELECT, INSERT ON audit_checkpoint TO %I', gw);

    -- waygatectl: the same on its chain 'ctl' (locked through its audit_chain row: FOR UPDATE
    -- needs the UPDATE privilege, on a column no statement ever changes), and reads every chain
    -- for `audit verify` and `audit export`.
    EXECUTE format('GRANT SELECT, INSERT ON audit_chain TO %I', adm);
    EXECUTE format('GRANT UPDATE (kind) ON audit_chain TO %I', adm);
    EXECUTE format('GRANT SELECT ON audit_record TO %I', adm);
    EXECUTE format('GRANT INSERT (chain, seq, at_us, actor, role, peer, cert, branch, action, '
                   'object, count, purpose, legal_basis, approval, outcome, detail, confidential, '
                   'prev_hash, hash) ON audit_record TO %I', adm);
    EXECUTE format('GRANT SELECT, INSERT ON audit_key TO %I', adm);
    EXECUTE format('GRANT SELECT, INSERT ON audit_checkpoint TO %I', adm);
END
$audit$;
