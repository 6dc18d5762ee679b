-- 042_custody_ends_out_for_delivery_elsewhere: a branch's custody of a waybill also ends when the
-- waybill is later taken out for delivery, or its delivery fails, at another branch (Art. 34:
-- custody follows the parcel; docs/roles.md).
--
-- Custody is the latest ARRIVED's branch until that branch's DEPARTED or any DELIVERED after it
-- (011, 015, 023). Any branch may scan a stored waybill in, and an event takes its place by the
-- time its device gave (a scanner uploading late dates its scans in the past). So a courier of a
-- branch X outside the waybill's scope could send an ARRIVED dated between branch B's ARRIVED
-- and B's OUT_FOR_DELIVERY: X became the custodian while the latest event stayed B's
-- OUT_FOR_DELIVERY, and a courier's Reveal of the recipient's phone (custodian + latest event out
-- for delivery, api_reveal.c) was granted to X, who delivers nothing. A parcel out for delivery
-- from B is no longer at X: now an OUT_FOR_DELIVERY (4) or DELIVERY_FAILED (6) at another branch
-- after X's arrival ends X's custody, so custody with a latest event out for delivery always
-- means that event was the custodian's own. B, whose arrival X's back-dated one displaced, scans
-- it in again. The database's row-level security and the facts the gateway reads
-- (waybill_scan_facts) call this function, so both follow. Owner, SECURITY DEFINER, search_path
-- and grants stay (CREATE OR REPLACE keeps them). Rerunnable as is.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

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
                                  AND (f.event = 5 OR (f.event = 3 AND f.branch = a.branch)
                                       OR (f.event IN (4, 6) AND f.branch <> a.branch))));
END
$$;
