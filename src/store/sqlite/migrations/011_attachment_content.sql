-- Attachment content kept content-addressed in `[store] attachments_dir` (the file is named
-- by `sha256`, never by `file_name`). `stored` = the file exists for this row's content;
-- `too_large` = over `max_attachment_bytes`, metadata only.
ALTER TABLE attachments ADD COLUMN stored INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attachments ADD COLUMN too_large INTEGER NOT NULL DEFAULT 0;
CREATE INDEX attachments_by_sha256 ON attachments(sha256);
