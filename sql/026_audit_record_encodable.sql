-- 026_audit_record_encodable: an audit record the bundle format cannot hold is refused (Art. 33).
--
-- The writers (gateway/store/audit.c, gateway/store/audit_ctl.c) only ever store a record that
-- gw_audit_rec_check accepts: an actor that is not empty, and no text longer than 1024 bytes
-- (docs/audit-bundle-format.md: a text field holds at most 1024 bytes); the action and outcome
-- patterns are CHECKs since 008. But the database accepted more, and whoever holds the gateway's
-- role (which may insert records into gateway chains: that is how the gateway writes them) could
-- plant one row with an empty actor or a long text: `waygatectl audit verify` then stopped with
-- "invalid argument" at that row, leaving that chain and every chain after it unchecked, and no
-- bundle of the trail could be exported (both exporters refuse to write such a record).
--
-- Now every role, the owner included, is refused such a row. NOT VALID: rows already stored are
-- not re-checked here (one planted before this migration is tampering: the live check names it,
-- leaves it out and checks the rest of its chain and the other chains; docs/threat-model.md).
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

ALTER TABLE audit_record ADD CONSTRAINT audit_record_encodable CHECK (
    actor <> '' AND octet_length(actor) <= 1024
    AND coalesce(octet_length(role), 0) <= 1024
    AND coalesce(octet_length(peer), 0) <= 1024
    AND coalesce(octet_length(cert), 0) <= 1024
    AND coalesce(octet_length(branch), 0) <= 1024
    AND coalesce(octet_length(object), 0) <= 1024
    AND coalesce(octet_length(purpose), 0) <= 1024
    AND coalesce(octet_length(legal_basis), 0) <= 1024
    AND coalesce(octet_length(approval), 0) <= 1024
    AND coalesce(octet_length(detail), 0) <= 1024
) NOT VALID;
