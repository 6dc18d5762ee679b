-- 009_bulk: reviewed bulk operations on personal information (Art. 37, 15) and the record of every
-- destruction (Art. 26). A bulk request (export, copy or destroy) names its selector, purpose and
-- legal basis; a second person approves it, never the requester (also a CHECK here); an approval
-- expires; a request runs once. An export's watermark id (export_id) is kept with the request so
-- `waygatectl export trace` can name the export a leaked file or fragment came from.
-- A destruction deletes the waybill rows, and with them the only copies of their wrapped data
-- keys (crypto-shredding: the key-encryption key can no longer open anything of those records),
-- and keeps one destruction row per batch: counts, selector, who requested, who approved, when.
-- The gateway destroys only through bulk_destroy and retention_destroy, which check the request
-- or the age of each record themselves.
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

-- The only ways the gateway destroys waybills (it has no DELETE privilege on waybill): both run as
-- the owner (SECURITY DEFINER) and check what they are asked to do.
-- bulk_destroy: the records the stored selector of p_request selects (within its requester's
-- branch scope, if any), only for a destroy request marked executed in this transaction's claim
-- and not destroyed before; exactly p_expected of them (else nothing: the selection changed since
-- it was counted); writes the destruction record. Returns its id.
CREATE FUNCTION bulk_destroy(p_request uuid, p_selector text, p_expected bigint) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    b   bulk_request%ROWTYPE;
    n   bigint;
    did bigint;
BEGIN
    SELECT * INTO b FROM bulk_request WHERE id = p_request FOR UPDATE;
    IF NOT FOUND OR b.operation <> 'destroy' OR b.state <> 'executed' OR b.run_count IS NOT NULL
    THEN
        RAISE EXCEPTION 'not an approved destruction being run'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    WITH d AS (
        DELETE FROM waybill w
         WHERE (b.sel_branch IS NULL OR w.origin_branch = b.sel_branch)
           AND (b.sel_from IS NULL OR w.pickup_day >= b.sel_from)
           AND (b.sel_to IS NULL OR w.pickup_day <= b.sel_to)
           AND (b.sel_ids IS NULL OR w.id = ANY (b.sel_ids))
           AND (b.requester_branch IS NULL OR w.origin_branch = b.requester_branch
                OR w.dest_region_code IN (SELECT r.region_code FROM route r
                                           WHERE r.branch = b.requester_branch))
        RETURNING 1)
    SELECT count(*) INTO n FROM d;
    IF n <> p_expected THEN
        RAISE EXCEPTION 'the selection changed: % records, % expected', n, p_expected
            USING ERRCODE = 'serialization_failure';
    END IF;
    UPDATE bulk_request SET run_count = n WHERE id = p_request;
    INSERT INTO destruction (reason, request_id, selector, requester, approver, count)
    VALUES ('bulk', b.id, p_selector, b.requester, b.approver, n) RETURNING id INTO did;
    RETURN did;
END
$fn$;

-- retention_destroy: the waybills p_ids, each of which must be older than p_days (>= 1) days by
-- its pickup day (else the day accepted), China Standard Time; all of them or nothing; writes
-- the destruction record. Returns its id.
CREATE FUNCTION retention_destroy(p_ids uuid[], p_days integer, p_selector text,
                                  p_requester text) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    n   bigint;
    did bigint;
BEGIN
    IF p_days IS NULL OR p_days < 1 OR p_ids IS NULL THEN
        RAISE EXCEPTION 'a retention period of at least one day and the records are required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH d AS (
        DELETE FROM waybill w
         WHERE w.id = ANY (p_ids)
           AND coalesce(w.pickup_day, (w.accepted_at AT TIME ZONE 'Asia/Shanghai')::date)
               < (now() AT TIME ZONE 'Asia/Shanghai')::date - p_days
        RETURNING 1)
    SELECT count(*) INTO n FROM d;
    IF n <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'not every record is past its retention: % of %', n, cardinality(p_ids)
            USING ERRCODE = 'serialization_failure';
    END IF;
    INSERT INTO destruction (reason, selector, requester, count)
    VALUES ('retention', p_selector, p_requester, n) RETURNING id INTO did;
    RETURN did;
END
$fn$;

DO $bulk$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    t     text;
BEGIN
    FOREACH t IN ARRAY ARRAY['bulk_request', 'destruction'] LOOP
        EXECUTE format('ALTER TABLE %I OWNER TO %I', t, owner);
        EXECUTE format('REVOKE ALL ON TABLE %I FROM PUBLIC, %I, %I', t, gw, adm);
    END LOOP;
    EXECUTE format('REVOKE ALL ON SEQUENCE destruction_id_seq FROM PUBLIC, %I, %I', gw, adm);

    -- The destruction functions run as the owner; only the gateway may call them.
    FOREACH t IN ARRAY ARRAY['bulk_destroy(uuid, text, bigint)',
                             'retention_destroy(uuid[], integer, text, text)'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', t, owner);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', t,
                       current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', t);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', t, gw);
    END LOOP;

    -- waygated (gateway/store/store_bulk.c): creates, decides and claims requests; reads
    -- destruction records. It never deletes a waybill itself (no DELETE privilege): only through
    -- the two functions above. Destruction records are never changed or removed.
    EXECUTE format('GRANT SELECT, INSERT ON bulk_request TO %I', gw);
    EXECUTE format('GRANT UPDATE (state, approver, approver_role, decision_comment, decided_at, '
                   'expires_at, run_at, export_id) ON bulk_request TO %I', gw);
    EXECUTE format('GRANT SELECT ON destruction TO %I', gw);

    -- waygatectl (export trace; reports): reads requests and destruction records.
    EXECUTE format('GRANT SELECT ON bulk_request TO %I', adm);
    EXECUTE format('GRANT SELECT ON destruction TO %I', adm);
END
$bulk$;
