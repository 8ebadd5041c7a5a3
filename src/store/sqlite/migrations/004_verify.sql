-- Reconciliation (`mailsync verify` and the daemon's schedule): when it last ran for a user and
-- how many listed messages had no decision.
ALTER TABLE sync_state ADD COLUMN last_verify_at INTEGER;
ALTER TABLE sync_state ADD COLUMN verify_gaps INTEGER NOT NULL DEFAULT 0;
