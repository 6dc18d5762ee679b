-- 014_audit_sm2: checkpoint signatures under the sm suite (issue 11). A checkpoint is signed by
-- the configured suite's audit key: Ed25519 (aes; 32-byte key, 64-byte signature) or SM2 with
-- SM3 and the default identifier (sm; GB/T 32918.2: the key the uncompressed point 04|x|y, 65
-- bytes; the signature DER SEQUENCE{r, s}, 8..72 bytes). The key's length names its algorithm;
-- the column `algorithm` states it too, and must agree. Existing rows are Ed25519 and stay valid.
ALTER TABLE audit_key DROP CONSTRAINT audit_key_public_key_check;
ALTER TABLE audit_key ADD COLUMN algorithm text NOT NULL DEFAULT 'ed25519';
ALTER TABLE audit_key ADD CONSTRAINT audit_key_public_key_check CHECK (
    (algorithm = 'ed25519' AND octet_length(public_key) = 32) OR
    (algorithm = 'sm2' AND octet_length(public_key) = 65 AND get_byte(public_key, 0) = 4));
COMMENT ON TABLE audit_key IS
    'Public halves of the checkpoint signing keys (Ed25519 or SM2, column algorithm); the private '
    'halves are in the keyring.';

ALTER TABLE audit_checkpoint DROP CONSTRAINT audit_checkpoint_signature_check;
ALTER TABLE audit_checkpoint ADD CONSTRAINT audit_checkpoint_signature_check
    CHECK (octet_length(signature) BETWEEN 8 AND 72);
COMMENT ON TABLE audit_checkpoint IS
    'Signed checkpoints: Ed25519 or SM2 (by the key''s algorithm) over (chain, seq, head hash, '
    'time); see docs/audit-bundle-format.md.';
