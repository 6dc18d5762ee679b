-- 001_foundation: security incidents (SPEC Art. 17): bulk scraping detected, audit-chain break,
-- decryption failures, repeated authentication failures. Applied by `waygatectl migrate` in one
-- transaction together with its schema_migrations row: no transaction control in this file.

CREATE TABLE incident (
    id          bigserial   PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    severity    text        NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    kind        text        NOT NULL,
    principal   text,
    peer        text,
    branch      text,
    detail      text,
    record_id   uuid,
    reported_at timestamptz
);

COMMENT ON TABLE incident IS
    'Security incidents (Art. 17), kept for the regulator report; never holds clear PII.';
COMMENT ON COLUMN incident.kind IS
    'Machine-readable incident kind, e.g. bulk_scraping, audit_chain_break, decryption_failure, auth_failures.';
COMMENT ON COLUMN incident.principal IS 'Principal (account or certificate subject) involved, if any.';
COMMENT ON COLUMN incident.peer IS 'Remote address of the peer involved, if any.';
COMMENT ON COLUMN incident.branch IS 'Branch code involved, if any.';
COMMENT ON COLUMN incident.detail IS
    'Free-text detail for investigators. Never PII: refer to waybills by record_id only.';
COMMENT ON COLUMN incident.record_id IS 'Waybill record concerned, if any (never the waybill number).';
COMMENT ON COLUMN incident.reported_at IS 'When the incident was included in a report to the regulator; NULL = not yet.';

CREATE INDEX incident_occurred_at_idx ON incident (occurred_at);
