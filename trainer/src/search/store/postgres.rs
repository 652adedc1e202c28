//! The PostgreSQL engine (the synchronous `postgres` client): a server that workers on any
//! number of machines share.

use anyhow::{Result, bail};
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};

use super::sql::{Cell, Db, Engine, Param, Row};

/// A connection to a PostgreSQL study store.
pub struct Postgres {
    client: Client,
}

impl Postgres {
    /// Connects to `url` (`postgres://user:password@host:port/database`, or PostgreSQL's
    /// `key=value` form), without TLS.
    pub fn connect(url: &str) -> Result<Self> {
        Ok(Self {
            client: Client::connect(url, NoTls)?,
        })
    }
}

fn boxed<'a>(param: &Param<'a>) -> Box<dyn ToSql + Sync + 'a> {
    match *param {
        Param::Int(v) => Box::new(v),
        Param::Real(v) => Box::new(v),
        Param::Text(v) => Box::new(v),
    }
}

fn cells(row: &postgres::Row) -> Result<Row> {
    (0..row.len())
        .map(|i| {
            let ty = row.columns()[i].type_();
            let cell = if *ty == Type::INT8 {
                row.try_get::<_, Option<i64>>(i)?.map(Cell::Int)
            } else if *ty == Type::INT4 {
                row.try_get::<_, Option<i32>>(i)?
                    .map(|v| Cell::Int(v.into()))
            } else if *ty == Type::FLOAT8 {
                row.try_get::<_, Option<f64>>(i)?.map(Cell::Real)
            } else if [Type::TEXT, Type::VARCHAR, Type::NAME].contains(ty) {
                row.try_get::<_, Option<String>>(i)?.map(Cell::Text)
            } else {
                bail!("column {} has type {ty}, which the store never uses", i + 1)
            };
            Ok(cell.unwrap_or(Cell::Null))
        })
        .collect()
}

impl Db for Postgres {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.client.batch_execute(sql)?)
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        let boxes: Vec<_> = params.iter().map(boxed).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = boxes.iter().map(|b| b.as_ref()).collect();
        Ok(self.client.execute(sql, &refs)?)
    }

    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        let boxes: Vec<_> = params.iter().map(boxed).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = boxes.iter().map(|b| b.as_ref()).collect();
        self.client.query(sql, &refs)?.iter().map(cells).collect()
    }
}
