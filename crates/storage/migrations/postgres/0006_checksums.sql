-- Flexible checksums (CRC32, CRC32C, CRC64NVME, SHA1, SHA256).
--
-- A version's checksum is a column of its row, written by the same statement as the
-- version and moving with it from `objects` to `versions`: `ALGORITHM:BASE64` (the
-- gateway owns the format), NULL when the write carried none (and for multipart
-- objects, delete markers and every version written before this migration).
ALTER TABLE objects ADD COLUMN checksum TEXT;
ALTER TABLE versions ADD COLUMN checksum TEXT;
