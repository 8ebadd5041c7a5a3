-- Retention (`[retention] body_days`): when an activity's subject, body, attachment names and
-- attachment content were erased. Metadata (date, direction, contacts, sources, attachment
-- type, size and hash) stays; the fingerprint stays too, so a later copy of the same message
-- is recognised and does not bring the content back.
ALTER TABLE activities ADD COLUMN content_erased_at INTEGER;
