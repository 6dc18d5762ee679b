-- 054_outbox_notify_claimable: an insert into the outbox notifies channel 'waygate_outbox' only
-- when one of its rows may be claimed now, that is, when it was inserted without a lease.
--
-- sql/012 notified at every insert. Since the fast path (sql/018), the gateway that accepts a
-- waybill inserts its delivery under a lease of its own and sends it from memory. No forwarder
-- can claim such a row before its lease runs out, so waking them at its commit only made each of
-- them run a claim that found nothing. The notification also cost every inserting transaction
-- PostgreSQL's global notification lock, held from before its commit record until that record is
-- flushed, so the inserts' commits queued behind one another. A row whose lease runs out (its
-- gateway died or dropped it) is found by the forwarders' polling (`[forward] poll_ms`), as it was
-- before: a notification at its insert could not have woken anyone for it.
--
-- The trigger sees the statement's rows as a transition table. CREATE OR REPLACE keeps the
-- function's owner and grants (sql/012); DROP TRIGGER IF EXISTS then CREATE: its row deleted,
-- this migration applies again unchanged. Applied in one transaction by `waygatectl migrate` as
-- the owner: no transaction control.

CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE lease_until IS NULL) THEN
        PERFORM pg_notify('waygate_outbox', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
