//! Hyperparameter search (`trainer search`): grid, random or Bayesian (TPE) over a space written
//! in TOML. A study lives in a store (SQLite on one machine, PostgreSQL for many) that any
//! number of workers share; every trial is a normal run folder, and `search.csv` is written from
//! the store as trials end. `trainer search-report` analyses the results.

mod analysis;
mod local;
mod runner;
mod sampler;
mod signals;
mod space;
pub mod store;
mod table;
mod tpe;
mod trial;
mod worker;

pub use analysis::{SearchReportArgs, numeric_series, pearson, report};
pub use runner::{SearchArgs, run, trial_config};
pub use sampler::{Params, Sampler};
pub use space::{Dist, Method, SearchSpec, arg_value};
pub use store::Storage;
pub use table::read_csv;
pub use trial::{Trial, TrialState};
