-- 006_accounts: who may call (Art. 31, 34, 35, 38). Registered principals (devices, branch
-- systems, the backend and the administration workstation, each known by its client
-- certificate's SHA-256 fingerprint), people's accounts with scrypt password hashes and their
-- history, bearer-token sessions (only the SHA-256 of a token is stored), and the record of every
-- administrative call (Art. 31; the audit issue chains it). Nothing here is delivery-user PII.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

-- Principals known by their client certificate. `admin` marks a certificate registered for
-- administration: accounts of the administrative roles may be used only over such a connection.
CREATE TABLE principal (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._-]{1,63}$'),
    fingerprint bytea       NOT NULL UNIQUE CHECK (octet_length(fingerprint) = 32),
    role        text        NOT NULL CHECK (role IN ('courier', 'branch_clerk', 'customer_service',
                                'compliance_auditor', 'security_admin', 'system_admin',
                                'lawful_access', 'backend')),
    branch      text        CHECK (branch ~ '^[A-Za-z0-9_-]{1,31}$'),
    admin       boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text        NOT NULL,
    disabled_at timestamptz,
    disabled_by text,
    CONSTRAINT principal_branch_roles CHECK
        ((role IN ('courier', 'branch_clerk', 'customer_service')) = (branch IS NOT NULL))
);

COMMENT ON TABLE principal IS
    'Client certificates registered as principals (SHA-256 fingerprint -> name, role, branch).';

-- People. Exactly one role per account; `person` is the staff identity behind the account, so that
-- separation of duties (三员, Art. 34) holds per person: one person holds at most one account of the
-- three administrator roles (the unique index below), whoever creates it and however
-- concurrently. Password: scrypt (N, r, p in pw_params) over a per-account 16-byte salt.
CREATE TABLE account (
    id              bigserial   PRIMARY KEY,
    name            text        NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9._-]{3,64}$'),
    person          text        NOT NULL CHECK (octet_length(person) BETWEEN 1 AND 64),
    role            text        NOT NULL CHECK (role IN ('branch_clerk', 'customer_service',
                                    'compliance_auditor', 'security_admin', 'system_admin',
                                    'lawful_access')),
    branch          text        CHECK (branch ~ '^[A-Za-z0-9_-]{1,31}$'),
    pw_hash         bytea       NOT NULL CHECK (octet_length(pw_hash) = 32),
    pw_salt         bytea       NOT NULL CHECK (octet_length(pw_salt) = 16),
    pw_params       text        NOT NULL,
    pw_set_at       timestamptz NOT NULL DEFAULT now(),
    must_change     boolean     NOT NULL DEFAULT true,
    failed_count    integer     NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text        NOT NULL,
    last_used_at    timestamptz,
    disabled_at     timestamptz,
    disabled_by     text,
    disabled_reason text,
    CONSTRAINT account_branch_roles CHECK
        ((role IN ('branch_clerk', 'customer_service')) = (branch IS NOT NULL))
);

CREATE UNIQUE INDEX account_one_admin_role_per_person ON account (person)
    WHERE role IN ('system_admin', 'security_admin', 'compliance_auditor');

COMMENT ON TABLE account IS 'People''s accounts (Art. 35, 38): scrypt hashes only, one role each.';
COMMENT ON INDEX account_one_admin_role_per_person IS
    'Separation of duties (三员): one person, at most one of system_admin, security_admin, compliance_auditor.';

-- The five passwords before the current one (no reuse, Art. 35).
CREATE TABLE account_password_history (
    account_id bigint      NOT NULL REFERENCES account (id),
    pw_hash    bytea       NOT NULL CHECK (octet_length(pw_hash) = 32),
    pw_salt    bytea       NOT NULL CHECK (octet_length(pw_salt) = 16),
    pw_params  text        NOT NULL,
    set_at     timestamptz NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_password_history_idx ON account_password_history (account_id, retired_at);

-- Bearer-token sessions. The token itself is never stored: only its SHA-256. `limited`: issued
-- while the password must be changed; such a token may call ChangePassword only.
CREATE TABLE session (
    token_hash bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    account_id bigint      NOT NULL REFERENCES account (id),
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    peer       text,
    cert       text,
    limited    boolean     NOT NULL DEFAULT false
);
CREATE INDEX session_account_idx ON session (account_id);

-- Every administrative call (Art. 31: remote administrative access is logged): who (account or
-- certificate principal), over which certificate, from which address, what, on what, and the
-- outcome. The audit issue chains these records.
CREATE TABLE admin_log (
    id         bigserial   PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text        NOT NULL,
    role       text,
    cert       text,
    peer       text,
    via        text        NOT NULL CHECK (via IN ('grpc', 'cli', 'gateway')),
    action     text        NOT NULL,
    object     text,
    outcome    text        NOT NULL,
    detail     text
);
CREATE INDEX admin_log_at_idx ON admin_log (at);

COMMENT ON TABLE admin_log IS
    'Administrative calls (Art. 31) with peer address and certificate; never holds PII or secrets.';

-- The CLI records its separation-of-duties refusals (Art. 17) through this function only, as the
-- owner: a grant on `incident` itself would be lost whenever sql/005_roles.sql, which sets that
-- table's grants, is run again, and the function lets the CLI write these columns and nothing
-- else (peer 'local', the database's own time).
CREATE FUNCTION cli_record_incident(p_severity text, p_kind text, p_principal text,
                                    p_branch text, p_detail text) RETURNS void
    LANGUAGE sql AS $fn$
        INSERT INTO incident (severity, kind, principal, peer, branch, detail)
        VALUES (p_severity, p_kind, p_principal, 'local', p_branch, p_detail)
    $fn$;

DO $grants$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    t     text;
BEGIN
    FOREACH t IN ARRAY ARRAY['principal', 'account', 'account_password_history', 'session',
                             'admin_log'] LOOP
        EXECUTE format('ALTER TABLE %I OWNER TO %I', t, owner);
        EXECUTE format('REVOKE ALL ON TABLE %I FROM PUBLIC, %I, %I', t, gw, adm);
    END LOOP;
    EXECUTE format('REVOKE ALL ON SEQUENCE principal_id_seq, account_id_seq, admin_log_id_seq '
                   'FROM PUBLIC, %I, %I', gw, adm);

    -- waygated: resolves certificates and tokens, logs people in (failure count, lock, last use,
    -- sessions), changes passwords (with history), creates and disables accounts for a security
    -- admin, disables inactive accounts, and records administrative calls. It never deletes an
    -- account, never changes a role, and cannot rewrite the administrative record.
    EXECUTE format('GRANT SELECT (id, name, fingerprint, role, branch, admin, disabled_at) '
                   'ON principal TO %I', gw);
    EXECUTE format('GRANT SELECT (id, name, person, role, branch, pw_hash, pw_salt, pw_params, '
                   'pw_set_at, must_change, failed_count, locked_until, created_at, '
                   'last_used_at, disabled_at) ON account TO %I', gw);
    EXECUTE format('GRANT INSERT (name, person, role, branch, pw_hash, pw_salt, pw_params, '
                   'must_change, created_by) ON account TO %I', gw);
    EXECUTE format('GRANT UPDATE (pw_hash, pw_salt, pw_params, pw_set_at, must_change, '
                   'failed_count, locked_until, last_used_at, disabled_at, disabled_by, '
                   'disabled_reason) ON account TO %I', gw);
    EXECUTE format('GRANT USAGE ON SEQUENCE account_id_seq TO %I', gw);
    EXECUTE format('GRANT SELECT, INSERT ON account_password_history TO %I', gw);
    EXECUTE format('GRANT DELETE ON account_password_history TO %I', gw);
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON session TO %I', gw);
    EXECUTE format('GRANT INSERT (actor, role, cert, peer, via, action, object, outcome, detail) '
                   'ON admin_log TO %I', gw);
    EXECUTE format('GRANT USAGE ON SEQUENCE admin_log_id_seq TO %I', gw);

    -- waygatectl: registers, lists and disables principals; bootstraps, creates, lists and
    -- disables accounts (ending their sessions); records what it did.
    EXECUTE format('GRANT SELECT, INSERT ON principal TO %I', adm);
    EXECUTE format('GRANT UPDATE (disabled_at, disabled_by) ON principal TO %I', adm);
    EXECUTE format('GRANT USAGE ON SEQUENCE principal_id_seq TO %I', adm);
    EXECUTE format('GRANT SELECT (id, name, person, role, branch, pw_set_at, must_change, '
                   'failed_count, locked_until, created_at, created_by, last_used_at, '
                   'disabled_at, disabled_by, disabled_reason) ON account TO %I', adm);
    EXECUTE format('GRANT INSERT (name, person, role, branch, pw_hash, pw_salt, pw_params, '
                   'must_change, created_by) ON account TO %I', adm);
    EXECUTE format('GRANT UPDATE (disabled_at, disabled_by, disabled_reason) ON account TO %I',
                   adm);
    EXECUTE format('GRANT USAGE ON SEQUENCE account_id_seq TO %I', adm);
    EXECUTE format('GRANT DELETE ON session TO %I', adm);
    EXECUTE format('GRANT SELECT (account_id) ON session TO %I', adm);
    EXECUTE format('GRANT INSERT (actor, role, cert, peer, via, action, object, outcome, detail) '
                   'ON admin_log TO %I', adm);
    EXECUTE format('GRANT SELECT ON admin_log TO %I', adm);
    EXECUTE format('GRANT USAGE ON SEQUENCE admin_log_id_seq TO %I', adm);
    -- the separation-of-duties refusals are incidents (Art. 17), through cli_record_incident
    EXECUTE format('ALTER FUNCTION cli_record_incident(text, text, text, text, text) OWNER TO %I',
                   owner);
    EXECUTE format('ALTER FUNCTION cli_record_incident(text, text, text, text, text) '
                   'SECURITY DEFINER SET search_path = %I, pg_temp', current_schema());
    REVOKE ALL ON FUNCTION cli_record_incident(text, text, text, text, text) FROM PUBLIC;
    EXECUTE format('GRANT EXECUTE ON FUNCTION cli_record_incident(text, text, text, text, text) '
                   'TO %I', adm);
END
$grants$;
