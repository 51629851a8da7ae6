//! The PostgreSQL schema, versioned: [`MIGRATIONS`] in order, each applied once.
//!
//! [`migrate`] runs at every start ([`super::Pg::connect`]), in one transaction under a
//! transaction-scoped advisory lock, so two gateways starting together do not both migrate; a
//! database written by a newer schoolgate is refused. The version reached is kept in
//! `schema_version` (one row per migration applied).
//!
//! To change the schema, APPEND a migration with the next version; never edit one that has
//! shipped (a database that ran it would not run it again).

use deadpool_postgres::Object;

use crate::store::StoreError;

/// The advisory lock the migrations run under ("sg" "mi" in ASCII).
const MIGRATION_LOCK: i64 = 0x7367_6d69;

/// `(version, SQL)`: migration `version` takes the schema from `version - 1` to `version`.
pub const MIGRATIONS: &[(i64, &str)] = &[
    // The audit trail, as in SQLite: the record's JSON exactly as hashed (`record`), the
    // columns an export searches by, the export index (`a:ADDRESS`, `r:RULE` → seq), the head as
    // of the last commit (which `verify` compares with the newest record) and checkpoints.
    (
        1,
        "
        CREATE TABLE audit (
            seq       BIGINT PRIMARY KEY,
            time      TEXT NOT NULL,
            kind      TEXT NOT NULL,
            mail_from TEXT,
            outcome   TEXT,
            record    TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash      TEXT NOT NULL
        );
        CREATE INDEX audit_time ON audit (time);
        CREATE INDEX audit_kind ON audit (kind, seq);
        CREATE TABLE audit_key (
            key TEXT NOT NULL,
            seq BIGINT NOT NULL,
            PRIMARY KEY (key, seq)
        );
        CREATE INDEX audit_key_seq ON audit_key (seq);
        CREATE TABLE audit_head (
            id   INTEGER PRIMARY KEY CHECK (id = 1),
            seq  BIGINT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TABLE audit_checkpoint (
            seq  BIGINT PRIMARY KEY,
            hash TEXT NOT NULL,
            time TEXT NOT NULL
        );
        ",
    ),
    // The quarantine (with the held bytes), accounts, failed logins, release links, web
    // sessions and the alert and notice queues: see `super::shared`.
    (2, super::shared::MIGRATION),
    // In a trust, the schools an account is restricted to (a JSON array; `[]`: trust-wide), as
    // SQLite's schema version 8 keeps them.
    (
        3,
        "ALTER TABLE web_user ADD COLUMN schools TEXT NOT NULL DEFAULT '[]';",
    ),
    // The messages the relay answered 250 for (delivered or held), by identity, written in the
    // transaction that appends their record, as SQLite's schema version 9 keeps them: a
    // client's retry on either node after a crash is answered, not delivered again (see
    // `crate::store::answered`).
    (
        4,
        "
        CREATE TABLE answered_message (
            identity      TEXT PRIMARY KEY,
            time          TEXT NOT NULL,
            seq           BIGINT NOT NULL,
            queue_id      TEXT NOT NULL,
            outcome       TEXT NOT NULL,
            quarantine_id TEXT
        );
        CREATE INDEX answered_message_time ON answered_message (time);
        ",
    ),
    // A node appends in one round trip when the chain still ends where its own last append
    // left it: this, in the locked transaction before the inserts, raises (and so turns the
    // COMMIT into a rollback) when the newest record or the head mark is anything else (see
    // `super::audit::append_pipelined`).
    (
        5,
        "
        CREATE FUNCTION audit_head_is(expected_seq BIGINT, expected_hash TEXT) RETURNS VOID
        LANGUAGE plpgsql AS $f$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM audit_head
                           WHERE id = 1 AND seq = expected_seq AND hash = expected_hash)
               OR NOT EXISTS (SELECT 1 FROM (SELECT seq, hash FROM audit
                                             ORDER BY seq DESC LIMIT 1) AS newest
                              WHERE newest.seq = expected_seq AND newest.hash = expected_hash)
            THEN
                RAISE EXCEPTION 'schoolgate: the audit chain moved' USING ERRCODE = 'SG001';
            END IF;
        END
        $f$;
        ",
    ),
    // The relay's two statements a message, each one call: CPU in the database, not round
    // trips, is what bounds a node on PostgreSQL, and each statement costs the server a
    // fixed amount (portal, snapshot, executor) besides its rows.
    // - `audit_append_after`: the whole of `super::audit::append_after`'s transaction (the
    //   lock, `audit_head_is`, the rows, their export keys, the messages answered and the
    //   new head mark) as one statement, which commits by itself: seven statements a batch
    //   become one. It raises SG001, and so writes nothing, as `audit_head_is` does.
    // - `answered_find`: a batch of retry look-ups in one statement, each still the primary
    //   key's equality (`identity = id`), never `= ANY` (see `crate::store::answered`).
    // The inserts repeat `super::audit`'s `INSERT_ROWS`, `INSERT_KEYS` and `INSERT_ANSWERED`
    // (the long path still sends those) on purpose: a migration is frozen once shipped, so it
    // cannot be built from constants that may change.
    (
        6,
        "
        CREATE FUNCTION audit_append_after(
            expected_seq BIGINT, expected_hash TEXT,
            seqs BIGINT[], times TEXT[], kinds TEXT[], mail_froms TEXT[], outcomes TEXT[],
            records TEXT[], prev_hashes TEXT[], hashes TEXT[],
            keys TEXT[], key_seqs BIGINT[],
            answered_identities TEXT[], answered_times TEXT[], answered_seqs BIGINT[],
            answered_queue_ids TEXT[], answered_outcomes TEXT[],
            answered_quarantine_ids TEXT[]
        ) RETURNS VOID
        LANGUAGE plpgsql AS $f$
        BEGIN
            PERFORM pg_advisory_xact_lock(1936154997);
            PERFORM audit_head_is(expected_seq, expected_hash);
            INSERT INTO audit (seq, time, kind, mail_from, outcome, record, prev_hash, hash)
                SELECT * FROM unnest(seqs, times, kinds, mail_froms, outcomes, records,
                                     prev_hashes, hashes);
            IF cardinality(keys) > 0 THEN
                INSERT INTO audit_key (key, seq) SELECT * FROM unnest(keys, key_seqs)
                    ON CONFLICT DO NOTHING;
            END IF;
            IF cardinality(answered_identities) > 0 THEN
                INSERT INTO answered_message
                        (identity, time, seq, queue_id, outcome, quarantine_id)
                    SELECT * FROM unnest(answered_identities, answered_times, answered_seqs,
                                         answered_queue_ids, answered_outcomes,
                                         answered_quarantine_ids)
                    ON CONFLICT DO NOTHING;
            END IF;
            UPDATE audit_head SET seq = seqs[cardinality(seqs)], hash = hashes[cardinality(hashes)]
                WHERE id = 1;
        END
        $f$;
        CREATE FUNCTION answered_find(identities TEXT[]) RETURNS SETOF answered_message
        LANGUAGE plpgsql STABLE AS $f$
        DECLARE
            wanted TEXT;
        BEGIN
            FOREACH wanted IN ARRAY identities LOOP
                RETURN QUERY SELECT * FROM answered_message WHERE identity = wanted;
            END LOOP;
        END
        $f$;
        ",
    ),
];

/// The schema version this schoolgate writes.
pub fn known_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// Brings the database's schema up to [`known_version`], or refuses one that is newer.
pub async fn migrate(client: &mut Object, database: &str) -> Result<(), StoreError> {
    let known = known_version();
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version BIGINT PRIMARY KEY,
             applied TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
    if found > known {
        return Err(StoreError::PgTooNew {
            database: database.to_string(),
            found,
            known,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[version],
        )
        .await?;
        tracing::info!(database, version, "PostgreSQL schema migrated");
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one() {
        for (i, (version, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                *version,
                i as i64 + 1,
                "migration {i} has the wrong version"
            );
        }
    }
}
