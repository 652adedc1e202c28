//! The SQLite engine (rusqlite, SQLite compiled in): a file that workers on one machine share.
//! Write-ahead logging lets readers go on while a worker writes; a writer waits for the lock
//! rather than failing.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::Connection;
use rusqlite::types::{Value, ValueRef};

use super::sql::{Cell, Db, Engine, Param, Row};

/// How long a statement waits for another worker's write lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to a SQLite study file.
pub struct Sqlite {
    connection: Connection,
}

impl Sqlite {
    /// Opens (creating when missing) the database file `path` and its folder.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let connection = Connection::open(path)
            .with_context(|| format!("cannot open the SQLite store {}", path.display()))?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "foreign_keys", true)?;
        Ok(Self { connection })
    }
}

/// SQLite numbers its parameters `?1, ?2, …`.
fn placeholders(sql: &str) -> String {
    sql.replace('$', "?")
}

fn value(param: &Param) -> Value {
    match *param {
        Param::Int(v) => v.map_or(Value::Null, Value::Integer),
        Param::Real(v) => v.map_or(Value::Null, Value::Real),
        Param::Text(v) => v.map_or(Value::Null, |s| Value::Text(s.to_string())),
    }
}

fn cell(value: ValueRef) -> Result<Cell> {
    Ok(match value {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        ValueRef::Real(x) => Cell::Real(x),
        ValueRef::Text(bytes) => Cell::Text(String::from_utf8(bytes.to_vec())?),
        ValueRef::Blob(_) => anyhow::bail!("the study store holds no binary values"),
    })
}

impl Db for Sqlite {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.connection.execute_batch(sql)?)
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        let params = rusqlite::params_from_iter(params.iter().map(value));
        Ok(self.connection.execute(&placeholders(sql), params)? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        let mut statement = self.connection.prepare(&placeholders(sql))?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params.iter().map(value)))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(
                (0..columns)
                    .map(|i| cell(row.get_ref(i)?))
                    .collect::<Result<Row>>()?,
            );
        }
        Ok(out)
    }
}
