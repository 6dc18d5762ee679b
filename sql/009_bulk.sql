-- 009_bulk: reviewed bulk operations on personal information (Art. 37, 15) and the record of every
-- destruction (Art. 26). A bulk request (export, copy or destroy) names its selector, purpose and
-- legal basis; a second person approves it, never the requester (also a CHECK here); an approval
-- expires; a request runs once. An export's watermark id (export_id) is kept with the request so
-- `waygatectl export trace` can name the export a leaked file or fragment came from.
-- A destruction deletes the waybill rows, and with them the only copies of their wrapped data
-- keys (crypto-shredding: the key-encryption key can no longer open anything of those records),
-- and keeps one destruction row per batch: counts, selector, who requested, who approved, when.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE TABLE bulk_request (
    id                uuid        PRIMARY KEY,
    operation         text        NOT NULL CHECK (operation IN ('export', 'copy', 'destroy')),
    sel_branch        text        CHECK (sel_branch ~ '^[A-Za-z0-9_-]{1,31}$'),
    sel_from          date,
    sel_to            date,
    sel_ids           uuid[],
    purpose           text        NOT NULL CHECK (purpose <> ''),
    legal_basis       text        NOT NULL CHECK (legal_basis <> ''),
    destination       text,
    requester         text        NOT NULL,
    requester_role    text        NOT NULL,
    requester_branch  text,
    record_count      bigint      NOT NULL CHECK (record_count >= 0),
    state             text        NOT NULL DEFAULT 'pending'
                                  CHECK (state IN ('pending', 'approved', 'rejected', 'executed')),
    requested_at      timestamptz NOT NULL DEFAULT now(),
    approver          text,
    approver_role     text,
    decision_comment  text,
    decided_at        timestamptz,
    expires_at        timestamptz,
    run_at            timestamptz,
    export_id         uuid        UNIQUE,
    run_count         bigint,
    CONSTRAINT bulk_request_second_person CHECK (approver IS NULL OR approver <> requester),
    CONSTRAINT bulk_request_approved_expires CHECK (state <> 'approved' OR expires_at IS NOT NULL)
);
CREATE INDEX bulk_request_requested_at_idx ON bulk_request (requested_at);
COMMENT ON TABLE bulk_request IS
    'Bulk export/copy/destroy requests (Art. 37): selector, purpose, legal basis (Art. 15), '
    'requester, the second person''s decision, its expiry, the run and its watermark id.';

CREATE TABLE destruction (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    reason      text        NOT NULL CHECK (reason IN ('bulk', 'retention')),
    request_id  uuid        REFERENCES bulk_request (id),
    selector    text        NOT NULL,
    requester   text        NOT NULL,
    approver    text,
    count       bigint      NOT NULL CHECK (count >= 0),
    CONSTRAINT destruction_bulk_request CHECK ((reason = 'bulk') = (request_id IS NOT NULL))
);
CREATE INDEX destruction_at_idx ON destruction (at);
COMMENT ON TABLE destruction IS
    'Destruction records (Art. 26, 37): what was destroyed (selector, count), who asked, who '
    'approved, when. Never a record''s content.';

DO $bulk$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    s     text := 'coalesce(current_setting(''waygate.scope'', true), '''')';
    t     text;
BEGIN
    FOREACH t IN ARRAY ARRAY['bulk_request', 'destruction'] LOOP
        EXECUTE format('ALTER TABLE %I OWNER TO %I', t, owner);
        EXECUTE format('REVOKE ALL ON TABLE %I FROM PUBLIC, %I, %I', t, gw, adm);
    END LOOP;
    EXECUTE format('REVOKE ALL ON SEQUENCE destruction_id_seq FROM PUBLIC, %I, %I', gw, adm);

    -- waygated (gateway/store/store_bulk.c): creates, decides and runs requests; writes
    -- destruction records; deletes the waybills of an approved destruction or of the retention
    -- sweep, within the request's scope (row-level security, as for reads). Destruction records
    -- are never changed or removed.
    EXECUTE format('GRANT SELECT, INSERT ON bulk_request TO %I', gw);
    EXECUTE format('GRANT UPDATE (state, approver, approver_role, decision_comment, decided_at, '
                   'expires_at, run_at, export_id, run_count) ON bulk_request TO %I', gw);
    EXECUTE format('GRANT SELECT, INSERT ON destruction TO %I', gw);
    EXECUTE format('GRANT USAGE ON SEQUENCE destruction_id_seq TO %I', gw);
    EXECUTE format('GRANT DELETE ON waybill TO %I', gw);
    EXECUTE format('CREATE POLICY waybill_gateway_destroy ON waybill FOR DELETE TO %I USING ('
                   '%s = ''*'' OR (%s <> '''' AND (origin_branch = %s OR dest_region_code IN '
                   '(SELECT r.region_code FROM route r WHERE r.branch = %s))))', gw, s, s, s, s);

    -- waygatectl (export trace; reports): reads requests and destruction records.
    EXECUTE format('GRANT SELECT ON bulk_request TO %I', adm);
    EXECUTE format('GRANT SELECT ON destruction TO %I', adm);
END
$bulk$;
