-- Several instances on one store (docs/spec/instances.md). Times here are the database's
-- (timestamptz from clock_timestamp()), never an instance's clock, so clock skew between
-- machines cannot hand one mailbox to two instances.

-- The running instances: each refreshes its heartbeat every lease round; one whose heartbeat
-- is older than its lease is not counted as live.
CREATE TABLE instances (
    instance            TEXT PRIMARY KEY,
    host                TEXT NOT NULL,
    pid                 BIGINT NOT NULL,
    started_at          TIMESTAMPTZ NOT NULL,
    heartbeat_at        TIMESTAMPTZ NOT NULL,
    lease_secs          BIGINT NOT NULL,
    -- SHA-256 of the config file and the rules files it runs with: instances must agree.
    config_fingerprint  TEXT NOT NULL
);

-- Who syncs each mailbox, until when, and the fencing token: `epoch` grows by one at every
-- claim, and every write for the mailbox checks owner and epoch in its own transaction.
CREATE TABLE mailbox_leases (
    user_email  TEXT PRIMARY KEY,
    owner       TEXT,
    epoch       BIGINT NOT NULL DEFAULT 0,
    expires_at  TIMESTAMPTZ
);
CREATE INDEX mailbox_leases_by_owner ON mailbox_leases(owner);

-- The single runner of work that must happen once (retention, rules on stored mail, the
-- contact change log): a lease like a mailbox's, on a row of its own.
CREATE TABLE runner_lease (
    name        TEXT PRIMARY KEY,
    owner       TEXT,
    epoch       BIGINT NOT NULL DEFAULT 0,
    expires_at  TIMESTAMPTZ
);
INSERT INTO runner_lease (name) VALUES ('runner');
