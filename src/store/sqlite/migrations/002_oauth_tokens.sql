-- Per-user OAuth refresh tokens (installed-app flow), written by `mailsync auth login`.
-- Only the daemon's own account should be able to read the store file.
CREATE TABLE oauth_tokens (
    user_email     TEXT PRIMARY KEY NOT NULL,
    client_id      TEXT NOT NULL,
    refresh_token  TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
) WITHOUT ROWID;
