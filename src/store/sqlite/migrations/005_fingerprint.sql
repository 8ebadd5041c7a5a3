-- What copies of one message share (sender, date, subject, body, attachments), so a message
-- that reuses another's Message-ID is kept apart instead of merged into it.
ALTER TABLE activities ADD COLUMN fingerprint TEXT;
