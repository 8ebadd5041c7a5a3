//! Mailbox leases, fencing and the single runner (docs/spec/instances.md), in PostgreSQL.
//!
//! - Time is the database's (`clock_timestamp()`), never an instance's clock.
//! - A claim bumps the lease's `epoch`, the fencing token. Every write for a mailbox checks,
//!   in its own transaction, that the lease row still names this instance with the epoch it
//!   claimed and has not expired, and holds the row (`FOR SHARE`) until it commits: a takeover
//!   (an UPDATE of that row) waits for the write, or the write sees the takeover and rolls
//!   back. A stalled writer cannot hold the row for long: the server ends a transaction idle
//!   for `IDLE_IN_TRANSACTION_TIMEOUT`.
//! - Claims use `FOR UPDATE SKIP LOCKED`, so instances never wait on each other's claims.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use postgres::types::Type;

use super::PostgresStore;
use crate::store::{InstanceInfo, InstanceView, LeaseRound, LeaseView, StoreError};

/// What this process holds, as the store's writes check it: the instance, and the epoch of
/// each mailbox lease it claimed. Written by `lease_round` only.
#[derive(Debug, Default)]
pub(super) struct Held {
    pub instance: Option<InstanceInfo>,
    pub epochs: HashMap<String, i64>,
}

/// How long an instance stays in `instances` after its last heartbeat (for `status`), in
/// leases: long enough to see that it died, short enough not to pile up.
const DEAD_INSTANCE_LEASES: f64 = 20.0;

/// How many of `mailboxes` the instance ranked `rank` (by name) among `live` ones holds: as
/// even as can be, the remainder going to the first in name order, so every instance
/// computes the same spread without talking to the others.
fn fair_share(mailboxes: usize, live: usize, rank: usize) -> usize {
    mailboxes / live + usize::from(rank < mailboxes % live)
}

impl PostgresStore {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The instance and epoch a write for `user_email`'s mailbox must match; `None` when
    /// this store is not an instance's (a command), whose writes are not fenced.
    pub(super) fn fence_token(
        &self,
        user_email: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let held = self.held();
        let Some(instance) = &held.instance else {
            return Ok(None);
        };
        match held.epochs.get(user_email) {
            Some(epoch) => Ok(Some((instance.instance.clone(), *epoch))),
            None => Err(StoreError::Fenced(user_email.to_string())),
        }
    }

    /// Inside a write transaction for `user_email`'s mailbox: fails with `Fenced` unless this
    /// instance still holds the lease with the epoch it claimed, and keeps the lease row
    /// from changing hands until the transaction ends.
    pub(super) fn fence(
        &self,
        transaction: &mut postgres::Transaction<'_>,
        user_email: &str,
    ) -> Result<(), StoreError> {
        let Some((instance, epoch)) = self.fence_token(user_email)? else {
            return Ok(());
        };
        // Typed: one round trip, in every mailbox write.
        let holds = transaction
            .query_typed_opt(
                "SELECT 1 FROM mailbox_leases
                 WHERE user_email = $1 AND owner = $2 AND epoch = $3 AND expires_at > clock_timestamp()
                 FOR SHARE",
                &[
                    (&user_email, Type::TEXT),
                    (&instance, Type::TEXT),
                    (&epoch, Type::INT8),
                ],
            )?
            .is_some();
        if holds {
            Ok(())
        } else {
            Err(StoreError::Fenced(user_email.to_string()))
        }
    }

    pub(super) fn join_instance(&self, instance: &InstanceInfo) -> Result<(), StoreError> {
        let mut client = self.client()?;
        client.execute(
            "INSERT INTO instances (instance, host, pid, started_at, heartbeat_at, lease_secs, config_fingerprint)
             VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp(), $4, $5)
             ON CONFLICT (instance) DO UPDATE SET heartbeat_at = clock_timestamp(),
               lease_secs = excluded.lease_secs, config_fingerprint = excluded.config_fingerprint",
            &[
                &instance.instance,
                &instance.host,
                &i64::from(instance.pid),
                &(instance.lease_secs as i64),
                &instance.config_fingerprint,
            ],
        )?;
        let mut held = self.held();
        // Joining again as the same instance (after a reload: a new config fingerprint)
        // keeps its leases; another name starts with none.
        if held.instance.as_ref().map(|joined| &joined.instance) != Some(&instance.instance) {
            held.epochs.clear();
        }
        held.instance = Some(instance.clone());
        Ok(())
    }

    pub(super) fn run_lease_round(
        &self,
        wanted: &[String],
        lease: Duration,
    ) -> Result<LeaseRound, StoreError> {
        let Some(instance) = self.held().instance.clone() else {
            return Err(StoreError::Conflict(
                "a lease round before the instance joined the store".to_string(),
            ));
        };
        let me = instance.instance.as_str();
        let lease_secs = lease.as_secs_f64();
        let mut client = self.client()?;
        // The heartbeat; a row someone removed is written again.
        if client.execute(
            "UPDATE instances SET heartbeat_at = clock_timestamp() WHERE instance = $1",
            &[&me],
        )? == 0
        {
            drop(client);
            self.join_instance(&instance)?;
            client = self.client()?;
        }
        client.execute(
            "DELETE FROM instances
             WHERE heartbeat_at < clock_timestamp() - make_interval(secs => lease_secs * $1::FLOAT8)",
            &[&DEAD_INSTANCE_LEASES],
        )?;
        client.execute(
            "INSERT INTO mailbox_leases (user_email) SELECT unnest($1::TEXT[]) ON CONFLICT DO NOTHING",
            &[&wanted],
        )?;
        // Mailboxes whose sync is off, or that left the config, are let go.
        client.execute(
            "UPDATE mailbox_leases SET owner = NULL, expires_at = NULL
             WHERE owner = $1 AND NOT (user_email = ANY($2))",
            &[&me, &wanted],
        )?;
        // Renewal: only leases that have not run out. One that ran out may already be
        // another's; if not, it is claimed again below, with a new epoch.
        let mut epochs: HashMap<String, i64> = client
            .query(
                "UPDATE mailbox_leases SET expires_at = clock_timestamp() + make_interval(secs => $2::FLOAT8)
                 WHERE owner = $1 AND expires_at > clock_timestamp()
                 RETURNING user_email, epoch",
                &[&me, &lease_secs],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let live: Vec<(String, bool)> = client
            .query(
                "SELECT instance, config_fingerprint != $1 FROM instances
                 WHERE heartbeat_at > clock_timestamp() - make_interval(secs => lease_secs)
                 ORDER BY instance",
                &[&instance.config_fingerprint],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let live_instances = live.len().max(1) as u64;
        let config_mismatches = live.iter().filter(|(_, differs)| *differs).count() as u64;
        let rank = live.iter().position(|(name, _)| name == me).unwrap_or(0);
        let share = fair_share(wanted.len(), live.len().max(1), rank);
        if epochs.len() > share {
            // Over the fair share (an instance joined): the excess goes back, the last in
            // address order.
            let mut mine: Vec<String> = epochs.keys().cloned().collect();
            mine.sort();
            let excess: Vec<String> = mine.split_off(share);
            client.execute(
                "UPDATE mailbox_leases SET owner = NULL, expires_at = NULL
                 WHERE owner = $1 AND user_email = ANY($2)",
                &[&me, &excess],
            )?;
            for email in &excess {
                epochs.remove(email);
            }
        } else if epochs.len() < share {
            let claimed = client.query(
                "UPDATE mailbox_leases l
                 SET owner = $1, epoch = l.epoch + 1,
                     expires_at = clock_timestamp() + make_interval(secs => $2::FLOAT8)
                 WHERE l.user_email IN (
                     SELECT user_email FROM mailbox_leases
                     WHERE user_email = ANY($3)
                       AND (owner IS NULL OR expires_at IS NULL OR expires_at <= clock_timestamp())
                     ORDER BY user_email
                     LIMIT $4
                     FOR UPDATE SKIP LOCKED)
                 RETURNING l.user_email, l.epoch",
                &[&me, &lease_secs, &wanted, &((share - epochs.len()) as i64)],
            )?;
            for row in claimed {
                epochs.insert(row.get(0), row.get(1));
            }
        }
        let runner = client
            .query_opt(
                "UPDATE runner_lease
                 SET epoch = CASE WHEN owner = $1 THEN epoch ELSE epoch + 1 END,
                     owner = $1,
                     expires_at = clock_timestamp() + make_interval(secs => $2::FLOAT8)
                 WHERE name = 'runner'
                   AND (owner = $1 OR owner IS NULL OR expires_at IS NULL OR expires_at <= clock_timestamp())
                 RETURNING epoch",
                &[&me, &lease_secs],
            )?
            .is_some();
        let held: BTreeSet<String> = epochs.keys().cloned().collect();
        self.held().epochs = epochs;
        Ok(LeaseRound {
            held,
            runner,
            live_instances,
            config_mismatches,
        })
    }

    pub(super) fn leave_store(&self) -> Result<(), StoreError> {
        let Some(instance) = self.held().instance.clone() else {
            return Ok(());
        };
        let mut client = self.client()?;
        let mut transaction = client.transaction()?;
        for sql in [
            "UPDATE mailbox_leases SET owner = NULL, expires_at = NULL WHERE owner = $1",
            "UPDATE runner_lease SET owner = NULL, expires_at = NULL WHERE owner = $1",
            "DELETE FROM instances WHERE instance = $1",
        ] {
            transaction.execute(sql, &[&instance.instance])?;
        }
        transaction.commit()?;
        *self.held() = Held::default();
        Ok(())
    }

    /// Leaves a wake-up for the live owner of `user_email`'s lease; false when none holds it.
    pub(super) fn forward_wake_to_owner(&self, user_email: &str) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let forwarded = client.execute_typed(
            "INSERT INTO mailbox_wakes (user_email, owner, requested_at)
             SELECT user_email, owner, clock_timestamp() FROM mailbox_leases
             WHERE user_email = $1 AND owner IS NOT NULL AND expires_at > clock_timestamp()
             ON CONFLICT (user_email) DO UPDATE
               SET owner = excluded.owner, requested_at = excluded.requested_at",
            &[(&user_email, Type::TEXT)],
        )?;
        Ok(forwarded > 0)
    }

    /// Takes the wake-ups left for this instance. One left for a mailbox it no longer holds
    /// is taken too, and wakes nothing: the mailbox's new owner synced it when it took it.
    pub(super) fn take_wakes_for_instance(&self) -> Result<Vec<String>, StoreError> {
        let Some(instance) = self
            .held()
            .instance
            .as_ref()
            .map(|info| info.instance.clone())
        else {
            return Ok(Vec::new());
        };
        let mut client = self.client()?;
        Ok(client
            .query_typed(
                "DELETE FROM mailbox_wakes WHERE owner = $1 RETURNING user_email",
                &[(&instance, Type::TEXT)],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    pub(super) fn live_instances(&self) -> Result<Vec<InstanceView>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query(
                "SELECT i.instance, i.host, i.pid,
                        extract(epoch FROM i.started_at)::BIGINT, extract(epoch FROM i.heartbeat_at)::BIGINT,
                        (SELECT count(*) FROM mailbox_leases l
                         WHERE l.owner = i.instance AND l.expires_at > clock_timestamp()),
                        i.config_fingerprint
                 FROM instances i
                 WHERE i.heartbeat_at > clock_timestamp() - make_interval(secs => i.lease_secs)
                 ORDER BY i.started_at, i.instance",
                &[],
            )?
            .iter()
            .map(|row| InstanceView {
                instance: row.get(0),
                host: row.get(1),
                pid: row.get::<_, i64>(2) as u32,
                started_at: super::rfc3339(row.get(3)),
                heartbeat_at: super::rfc3339(row.get(4)),
                mailboxes: row.get::<_, i64>(5) as u64,
                config_fingerprint: row.get(6),
            })
            .collect())
    }

    pub(super) fn mailbox_leases(&self) -> Result<Vec<LeaseView>, StoreError> {
        let mut client = self.client()?;
        Ok(client
            .query(
                "SELECT user_email,
                        CASE WHEN expires_at > clock_timestamp() THEN owner END,
                        CASE WHEN expires_at > clock_timestamp() THEN extract(epoch FROM expires_at)::BIGINT END
                 FROM mailbox_leases ORDER BY user_email COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|row| LeaseView {
                user_email: row.get(0),
                instance: row.get(1),
                expires_at: row.get::<_, Option<i64>>(2).and_then(super::rfc3339),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::fair_share;

    #[test]
    fn shares_differ_by_at_most_one_and_add_up() {
        for mailboxes in 0..40 {
            for live in 1..6 {
                let shares: Vec<usize> = (0..live)
                    .map(|rank| fair_share(mailboxes, live, rank))
                    .collect();
                assert_eq!(
                    shares.iter().sum::<usize>(),
                    mailboxes,
                    "{mailboxes}/{live}"
                );
                let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(max - min <= 1, "{mailboxes}/{live}: {shares:?}");
            }
        }
    }
}
