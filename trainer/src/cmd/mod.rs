//! The subcommands other than `train` (which lives in [`crate::train`]).

pub mod bench;
pub mod cam_eval;
pub mod card;
pub mod data;
pub mod eval;
pub mod export;
pub mod gradcam;
pub mod images;
pub mod import;
pub mod landscape;
pub mod lr_band;
pub mod models;
pub mod predict;
pub mod report;
pub mod ship;
pub mod viz;
