//! Hyperparameter search (`trainer search`): grid, random or Bayesian (TPE) over a space written
//! in TOML; every trial is a normal run folder, and `search.csv` gets a line as each ends.
//! `trainer search-report` analyses the results.

mod analysis;
mod runner;
mod sampler;
mod space;
mod tpe;

pub use analysis::{SearchReportArgs, numeric_series, pearson, report};
pub use runner::{SearchArgs, TrialResult, read_csv, run, trial_config};
pub use sampler::{Params, Sampler};
pub use space::{Dist, Method, SearchSpec, arg_value};
