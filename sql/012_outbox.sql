-- 012_outbox: the transactional outbox towards the carrier backend (CarrierBackend.Deliver,
-- proto/waygate/v1/backend.proto). One row per delivery: a waybill accepted (kind 1) or a scan event
-- recorded (kind 2). The row is inserted by the same statement that inserts the waybill or the scan
-- (gateway/store/store_group.c, store_scan.c), so one is never committed without the other. A row
-- holds no PII: only ids, the kind and delivery bookkeeping; the backend's view is rendered from the
-- sealed record when the delivery is sent. A delivery is deleted only once the backend acknowledged
-- it; one the backend refused for good is parked with its reason (never a value) until an operator
-- retries it (`waygatectl outbox retry ID`).
-- Several gateways share the work through leases: a gateway claims ready rows (FOR UPDATE SKIP
-- LOCKED, then lease_owner/lease_until), so another gateway skips them until the lease runs out (a
-- gateway killed mid-delivery loses its lease and another one sends the delivery again: at least
-- once, delivery_id being the backend's idempotency key). Order per waybill: a row is claimable only
-- when no earlier row of the same waybill is still in the outbox (in flight, waiting or parked).
-- Every insert notifies channel 'waygate_outbox' at commit (a statement trigger), which wakes the
-- forwarders; they also poll.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE TABLE outbox (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    kind        smallint    NOT NULL CHECK (kind IN (1, 2)),
    waybill_id  uuid        NOT NULL REFERENCES waybill (id) ON DELETE CASCADE,
    scan_id     uuid        REFERENCES scan (id) ON DELETE CASCADE,
    enqueued_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts    integer     NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT '-infinity',
    lease_owner text,
    lease_until timestamptz,
    last_error  text        CHECK (octet_length(last_error) <= 200),
    parked_at   timestamptz,
    park_reason text        CHECK (octet_length(park_reason) <= 200),
    CONSTRAINT outbox_scan_kind CHECK ((kind = 2) = (scan_id IS NOT NULL))
);
-- A waybill's deliveries in order (the claim's "no earlier row" test).
CREATE INDEX outbox_waybill_idx ON outbox (waybill_id, id);
-- What may be claimed, oldest first.
CREATE INDEX outbox_ready_idx ON outbox (id) WHERE parked_at IS NULL;

COMMENT ON TABLE outbox IS
    'Deliveries to the carrier backend not yet acknowledged: ids and bookkeeping, no PII.';

CREATE FUNCTION outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('waygate_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

DO $outbox$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
BEGIN
    EXECUTE format('ALTER TABLE outbox OWNER TO %I', owner);
    EXECUTE format('ALTER FUNCTION outbox_notify() OWNER TO %I', owner);
    EXECUTE format('REVOKE ALL ON TABLE outbox FROM PUBLIC, %I, %I', gw, adm);
    EXECUTE format('REVOKE ALL ON FUNCTION outbox_notify() FROM PUBLIC');
    -- The gateway: inserts with its waybills and scans, claims, acknowledges (DELETE), retries
    -- later and parks.
    EXECUTE format('GRANT INSERT (kind, waybill_id, scan_id) ON outbox TO %I', gw);
    EXECUTE format('GRANT SELECT, DELETE ON outbox TO %I', gw);
    EXECUTE format('GRANT UPDATE (attempts, next_at, lease_owner, lease_until, last_error, '
                   'parked_at, park_reason) ON outbox TO %I', gw);
    -- waygatectl outbox status | list-parked | retry ID.
    EXECUTE format('GRANT SELECT ON outbox TO %I', adm);
    EXECUTE format('GRANT UPDATE (next_at, lease_owner, lease_until, parked_at, park_reason) '
                   'ON outbox TO %I', adm);
END
$outbox$;
