//! Where a study lives: `--storage` parsed, shown without its password, and opened.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};

use super::sql::Db;
use super::{migrations, postgres, sqlite};

/// Where a study lives, as `--storage` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `sqlite:PATH`: a database file.
    Sqlite(PathBuf),
    /// `postgres://user:password@host:port/database`: a PostgreSQL server.
    Postgres(String),
}

impl Storage {
    /// Parses `sqlite:PATH` (or `sqlite://PATH`) and `postgres://…` (or `postgresql://…`).
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            ensure!(!path.is_empty(), "`{url}` names no database file");
            Ok(Storage::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Storage::Postgres(url.to_string()))
        } else {
            bail!(
                "`{url}` is not a study store: expected sqlite:PATH or \
                 postgres://user:password@host:port/database"
            )
        }
    }

    /// Whether `text` is a store's address rather than a folder.
    pub fn is_url(text: &str) -> bool {
        ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|prefix| text.starts_with(prefix))
    }

    /// The address to hand to another worker (with its password).
    pub fn url(&self) -> String {
        match self {
            Storage::Sqlite(path) => format!("sqlite:{}", path.display()),
            Storage::Postgres(url) => url.clone(),
        }
    }

    /// Connects, and brings the schema up to date.
    pub(super) fn connect(&self) -> Result<Box<dyn Db>> {
        let mut db: Box<dyn Db> = match self {
            Storage::Sqlite(path) => Box::new(sqlite::Sqlite::open(path)?),
            Storage::Postgres(url) => Box::new(
                postgres::Postgres::connect(url)
                    .with_context(|| format!("cannot connect to the study store {self}"))?,
            ),
        };
        migrations::migrate(db.as_mut())
            .with_context(|| format!("cannot prepare the study store {self}"))?;
        Ok(db)
    }
}

/// The address with its password hidden, for messages.
impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Storage::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Storage::Postgres(url) => {
                let hidden = url.split_once("://").and_then(|(scheme, rest)| {
                    let (credentials, host) = rest.rsplit_once('@')?;
                    let (user, _) = credentials.split_once(':')?;
                    Some(format!("{scheme}://{user}:***@{host}"))
                });
                f.write_str(hidden.as_deref().unwrap_or(url))
            }
        }
    }
}
