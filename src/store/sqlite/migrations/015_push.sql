-- Push: when each mailbox's Gmail watch runs out (seconds since the epoch; NULL = no watch),
-- and whether new mail reaches it by push ('push') or by polling ('polling'; NULL = push is
-- not configured).
ALTER TABLE sync_state ADD COLUMN watch_expires_at INTEGER;
ALTER TABLE sync_state ADD COLUMN push_state TEXT CHECK (push_state IN ('push', 'polling'));
