//! The seam between the study store and its two database engines: statements written once
//! with `$1, $2, …` placeholders, parameters and cells of four kinds, and the few pieces of SQL
//! that differ between SQLite and PostgreSQL.

use anyhow::{Result, anyhow};

/// A statement parameter. The `Option` is SQL's NULL; PostgreSQL checks each parameter's type
/// against its column, so a NULL keeps its kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Param<'a> {
    /// A `BIGINT`.
    Int(Option<i64>),
    /// A `DOUBLE PRECISION`.
    Real(Option<f64>),
    /// A `TEXT`.
    Text(Option<&'a str>),
}

/// One value of a result row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
}

impl Cell {
    /// The integer in this cell.
    pub fn int(&self) -> Result<i64> {
        match self {
            Cell::Int(i) => Ok(*i),
            other => Err(anyhow!("expected an integer, found {other:?}")),
        }
    }

    /// The number in this cell, or `None` for NULL.
    pub fn real(&self) -> Result<Option<f64>> {
        match self {
            Cell::Null => Ok(None),
            Cell::Real(x) => Ok(Some(*x)),
            Cell::Int(i) => Ok(Some(*i as f64)),
            other => Err(anyhow!("expected a number, found {other:?}")),
        }
    }

    /// The text in this cell, or `None` for NULL.
    pub fn text(&self) -> Result<Option<String>> {
        match self {
            Cell::Null => Ok(None),
            Cell::Text(s) => Ok(Some(s.clone())),
            other => Err(anyhow!("expected text, found {other:?}")),
        }
    }
}

/// A result row.
pub type Row = Vec<Cell>;

/// Which database engine a connection talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// SQLite (a file; workers on one machine).
    Sqlite,
    /// PostgreSQL (a server; workers anywhere).
    Postgres,
}

impl Engine {
    /// The database clock in seconds since 1970 (one clock for every worker, whatever their
    /// machines' clocks say).
    pub fn now(self) -> &'static str {
        match self {
            Engine::Sqlite => "((julianday('now') - 2440587.5) * 86400.0)",
            Engine::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION)",
        }
    }

    /// Starts a transaction that will write: SQLite takes the database's write lock at once
    /// (`BEGIN IMMEDIATE`), so two writers never both read and then collide.
    pub fn begin(self) -> &'static str {
        match self {
            Engine::Sqlite => "BEGIN IMMEDIATE",
            Engine::Postgres => "BEGIN",
        }
    }

    /// What a `SELECT` of rows to claim ends with: PostgreSQL locks the row it returns and
    /// passes over rows another transaction holds (SQLite's `BEGIN IMMEDIATE` already lets one
    /// writer in at a time).
    pub fn claim_rows(self) -> &'static str {
        match self {
            Engine::Sqlite => "",
            Engine::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// What a `SELECT` of the study's row ends with to hold the study for the rest of the
    /// transaction (PostgreSQL; SQLite's `BEGIN IMMEDIATE` already holds the whole file).
    pub fn lock_rows(self) -> &'static str {
        match self {
            Engine::Sqlite => "",
            Engine::Postgres => " FOR UPDATE",
        }
    }
}

/// A connection to a study store's database.
pub trait Db: Send {
    /// The engine behind the connection.
    fn engine(&self) -> Engine;
    /// Runs statements without parameters (schema changes, `BEGIN`, `COMMIT`).
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// Runs one statement; returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64>;
    /// Runs one statement that returns rows.
    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>>;
}

/// Runs `body` in a transaction begun with `begin`: committed when it returns `Ok`, rolled
/// back when it fails.
pub fn transaction<T>(
    db: &mut dyn Db,
    begin: &str,
    body: impl FnOnce(&mut dyn Db) -> Result<T>,
) -> Result<T> {
    db.batch(begin)?;
    match body(db) {
        Ok(value) => {
            db.batch("COMMIT")?;
            Ok(value)
        }
        Err(e) => {
            // The connection may be gone; the error that matters is the first one.
            let _ = db.batch("ROLLBACK");
            Err(e)
        }
    }
}
