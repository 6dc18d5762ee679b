-- 023_scan_order: a scan event takes its place in its waybill's history at the time its device
-- gave it, but never later than the second the database received it (Art. 34: the status and the
-- custody follow the parcel, not a device's claim about the future).
--
-- A device may date an event up to GW_SCAN_CLOCK_SKEW (300 s) ahead of the gateway's clock, for
-- devices whose clocks run fast. Ordered by that time alone, an ARRIVED dated 300 s ahead by any
-- courier stayed the latest event for five minutes: its branch kept custody meanwhile, every
-- honest event of those minutes (a DEPARTED, the custodian's own ARRIVED) was ordered before it,
-- and the custodian's DELIVERED was refused as dated before the latest event. Now every event is
-- ordered by order_at = least(event_time, recorded_at cut to the second), then by seq (the order
-- of receipt). An event dated in the past, as a scan is, keeps its own time; one dated ahead
-- takes its place when it arrived, so anything recorded later is after it. event_time stays what
-- the device said: the idempotency key (scan_idempotent) and the time the backend is sent.
-- recorded_at is the database's now(), which the gateway's role cannot set (011's grants), so
-- order_at is computed here, not sent. Seconds, because event_time has whole seconds: an event
-- dated now and received in the same second as one dated ahead sorts after it (seq). The gateway
-- judges a new event's time against the latest's order_at (waybill_last_event_at), which is never
-- after now: an event dated ahead passes that check as it would at its own place.
-- The three scan facts' functions and 017's waybill_scan_facts order by it; their owner, SECURITY
-- DEFINER, search_path and grants stay (CREATE OR REPLACE keeps them).
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

ALTER TABLE scan
    ADD COLUMN order_at timestamptz NOT NULL
        GENERATED ALWAYS AS (least(event_time, date_bin('1 second', recorded_at,
                                                         timestamptz 'epoch'))) STORED;

COMMENT ON COLUMN scan.order_at IS
    'The event''s place in its waybill''s history: its time, but never after the second it was '
    'recorded (023_scan_order.sql).';

CREATE INDEX scan_order_idx ON scan (waybill_id, order_at, seq);
DROP INDEX scan_waybill_idx;

CREATE OR REPLACE FUNCTION waybill_last_event(w uuid) RETURNS smallint
LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
BEGIN
    RETURN coalesce((SELECT s.event FROM scan s WHERE s.waybill_id = w
                      ORDER BY s.order_at DESC, s.seq DESC LIMIT 1), 0::smallint);
END
$$;

-- The latest event's place (order_at), in seconds since the epoch: what RecordScan judges a new
-- event against and what its insert checks is still the latest.
CREATE OR REPLACE FUNCTION waybill_last_event_at(w uuid) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
BEGIN
    RETURN coalesce((SELECT extract(epoch FROM s.order_at)::bigint FROM scan s
                      WHERE s.waybill_id = w ORDER BY s.order_at DESC, s.seq DESC LIMIT 1), 0);
END
$$;

CREATE OR REPLACE FUNCTION waybill_custodian(w uuid) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
BEGIN
    RETURN (SELECT a.branch
              FROM (SELECT s.branch, s.order_at, s.seq FROM scan s
                     WHERE s.waybill_id = w AND s.event = 2
                     ORDER BY s.order_at DESC, s.seq DESC LIMIT 1) a
             WHERE NOT EXISTS (SELECT 1 FROM scan f
                                WHERE f.waybill_id = w
                                  AND (f.order_at, f.seq) > (a.order_at, a.seq)
                                  AND (f.event = 5 OR (f.event = 3 AND f.branch = a.branch))));
END
$$;

CREATE OR REPLACE FUNCTION waybill_scan_facts(w uuid, OUT custodian text, OUT last_event smallint,
                                              OUT last_event_at bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
BEGIN
    SELECT s.event, extract(epoch FROM s.order_at)::bigint INTO last_event, last_event_at
      FROM scan s WHERE s.waybill_id = w ORDER BY s.order_at DESC, s.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        last_event := 0;
        last_event_at := 0;
        RETURN;
    END IF;
    custodian := waybill_custodian(w);
END
$$;

DO $order$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['waybill_last_event(uuid)', 'waybill_last_event_at(uuid)',
                             'waybill_custodian(uuid)', 'waybill_scan_facts(uuid)'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
    END LOOP;
END
$order$;
