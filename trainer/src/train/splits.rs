//! The data a run trains on: the training split, the validation split (a share of the
//! training images, or an image folder's own `val/`), the test set, and the input statistics
//! measured on the training split.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, ensure};
use model::Normalization;

use super::config::DataConfig;
use crate::data::CifarSet;

/// The three splits of a run and what they share.
pub struct Splits {
    /// Where the data came from.
    pub dir: PathBuf,
    /// The images the network trains on.
    pub train: Arc<CifarSet>,
    /// The images that choose the best checkpoint and stop early (may be empty).
    pub val: Arc<CifarSet>,
    /// The test set.
    pub test: Arc<CifarSet>,
    /// Per-channel mean and standard deviation of the training split.
    pub normalization: Normalization,
    /// Class names, in label order.
    pub classes: Vec<String>,
}

impl Splits {
    /// Reads the data `config` names and splits it with `seed`.
    pub fn load(config: &DataConfig, seed: u64) -> Result<Self> {
        let dir = config.data_dir.locate()?;
        let mut full = CifarSet::train(&dir)?;
        if let Some(limit) = config.limit {
            full = full.subset(&(0..limit.min(full.len())).collect::<Vec<_>>());
        }
        let test = Arc::new(CifarSet::test(&dir)?);
        let (train, val) = match CifarSet::val(&dir)? {
            Some(val) => (full, val),
            None => full.split(config.val_ratio, seed)?,
        };
        ensure!(
            train.len() >= 2,
            "the training split has {} images; need at least 2",
            train.len()
        );
        Ok(Self {
            dir,
            normalization: Normalization::measure(&train.pixels),
            classes: train.classes.clone(),
            train: Arc::new(train),
            val: Arc::new(val),
            test,
        })
    }

    /// Whether the run has a validation split.
    pub fn validates(&self) -> bool {
        !self.val.is_empty()
    }

    /// One line saying where the data is and how it was split.
    pub fn describe(&self) -> String {
        format!(
            "{} ({} train, {} validation, {} test images)",
            self.dir.display(),
            self.train.len(),
            self.val.len(),
            self.test.len()
        )
    }
}
