//! The `trainer` crate: the CIFAR-10 data pipeline, the training loop, evaluation and
//! prediction behind the `trainer` command line.

pub mod allocator;
pub mod args;
pub mod backend;
pub mod cli;
pub mod cmd;
pub mod data;
pub mod eval;
pub mod faithfulness;
pub mod html;
pub mod io;
pub mod metrics;
pub mod option_name;
pub mod plot;
pub mod search;
pub mod train;
pub mod viz;
