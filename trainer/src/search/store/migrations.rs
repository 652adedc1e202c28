//! The store's schema, as numbered migrations kept in the code. Opening a store applies the
//! ones it lacks, in order, in one transaction that holds off other workers doing the same;
//! `schema_migrations` records which ran. The SQL is the part of SQLite's and PostgreSQL's
//! dialects they share (`BIGINT`, `DOUBLE PRECISION`, `TEXT`; times are seconds since 1970 by
//! the database's clock).

use anyhow::{Result, bail};

use super::sql::{Db, Engine, Param, transaction};

/// `(version, what it does, SQL)`, oldest first. Never edit one that has shipped: add another.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "studies, their trials and the trials' epochs",
    "CREATE TABLE studies (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE trials (
        study TEXT NOT NULL REFERENCES studies (name),
        number BIGINT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cut')),
        params TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        lost BIGINT NOT NULL DEFAULT 0,
        worker TEXT,
        heartbeat_at DOUBLE PRECISION,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        seconds DOUBLE PRECISION,
        score DOUBLE PRECISION,
        test_accuracy DOUBLE PRECISION,
        run_dir TEXT,
        checkpoint TEXT,
        error TEXT,
        PRIMARY KEY (study, number)
    );
    CREATE INDEX trials_by_state ON trials (study, state);
    CREATE TABLE trial_epochs (
        study TEXT NOT NULL,
        number BIGINT NOT NULL,
        epoch BIGINT NOT NULL,
        train_loss DOUBLE PRECISION NOT NULL,
        train_accuracy DOUBLE PRECISION NOT NULL,
        val_loss DOUBLE PRECISION,
        val_accuracy DOUBLE PRECISION,
        lr DOUBLE PRECISION NOT NULL,
        seconds DOUBLE PRECISION NOT NULL,
        images_per_sec DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (study, number, epoch),
        FOREIGN KEY (study, number) REFERENCES trials (study, number)
    );",
)];

/// Brings the schema of `db` up to the newest migration; refuses a store that a newer build
/// migrated further.
pub fn migrate(db: &mut dyn Db) -> Result<()> {
    let engine = db.engine();
    transaction(db, engine.begin(), |db| {
        if engine == Engine::Postgres {
            // Two workers starting together: the second waits here until the first committed.
            db.execute("SELECT pg_advisory_xact_lock(271027)", &[])?;
        }
        db.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at DOUBLE PRECISION NOT NULL
            )",
        )?;
        let applied = db
            .query("SELECT MAX(version) FROM schema_migrations", &[])?
            .first()
            .and_then(|row| row[0].int().ok())
            .unwrap_or(0);
        let newest = MIGRATIONS.last().map_or(0, |m| m.0);
        if applied > newest {
            bail!(
                "the store's schema is at version {applied}, newer than this trainer knows \
                 ({newest}): use a newer trainer"
            );
        }
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
            db.batch(sql)?;
            db.execute(
                &format!(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, {})",
                    engine.now()
                ),
                &[Param::Int(Some(*version)), Param::Text(Some(name))],
            )?;
        }
        Ok(())
    })
}
