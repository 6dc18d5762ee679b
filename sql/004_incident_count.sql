-- 004_incident_count: an incident row can stand for several occurrences. The gateway queues the
-- incidents of refusals while PostgreSQL is away; when that queue reaches its cap it coalesces
-- incidents of one kind, principal and peer into one row instead of dropping any (Art. 17), so the
-- row says how many happened and when, by the gateway's clock, the first and the last did.
-- occurred_at stays the database's own time of recording: the gateway's role cannot set it
-- (sql/005_roles.sql), so no incident can be back-dated; first_occurred_at may precede it by the
-- time an incident waited in the gateway's queue.
-- Applied in one transaction by `waygatectl migrate`: no transaction control.

ALTER TABLE incident
    ADD COLUMN count integer NOT NULL DEFAULT 1 CONSTRAINT incident_count_positive CHECK (count >= 1),
    ADD COLUMN first_occurred_at timestamptz,
    ADD COLUMN last_occurred_at timestamptz;

COMMENT ON COLUMN incident.count IS
    'How many incidents this row stands for (more than 1 when the gateway coalesced them while its queue was full).';
COMMENT ON COLUMN incident.occurred_at IS
    'When the database recorded the row (its own clock; the gateway cannot set it).';
COMMENT ON COLUMN incident.first_occurred_at IS
    'When the (first) incident happened, as the gateway saw it; at or before occurred_at when queued.';
COMMENT ON COLUMN incident.last_occurred_at IS 'When the last of count incidents happened; NULL when count = 1.';
