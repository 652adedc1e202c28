//! The options that several commands share, declared once so that their names, help and
//! defaults agree: the checkpoint a command reads, the data folder, the backend and the
//! output folder. Commands flatten the ones they take (`#[command(flatten)]`).

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::Device;
use clap::Args;
use model::Checkpoint;
use serde::{Deserialize, Serialize};

use crate::backend::{self, Backend, Selected};
use crate::data::locate;
use crate::io;

/// `-c, --checkpoint`: the checkpoint a command reads.
#[derive(Args, Clone, Debug)]
pub struct CheckpointArg {
    /// Checkpoint file, or a run folder (its best.safetensors; last.safetensors when it
    /// trained without validation).
    #[arg(short, long)]
    pub checkpoint: PathBuf,
}

impl CheckpointArg {
    /// The checkpoint file (a run folder's tested weights, see [`io::checkpoint_path`]).
    pub fn path(&self) -> PathBuf {
        io::checkpoint_path(&self.checkpoint)
    }

    /// Loads the checkpoint on the device `backend` chooses; prints which one.
    pub fn load(&self, backend: BackendArg) -> Result<(Checkpoint, Device)> {
        io::load_checkpoint(&self.checkpoint, backend.backend)
    }

    /// Where a command writes: `out` when given, else the folder `folder` beside the
    /// checkpoint.
    pub fn output_dir(&self, out: &OutputArg, folder: &str) -> PathBuf {
        io::output_dir(out.out.as_deref(), &self.checkpoint, folder)
    }
}

/// `--data-dir`: where the images come from. In a configuration file it is the key
/// `data-dir` (the struct is transparent to serde).
#[derive(Args, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct DataArg {
    /// Folder of the CIFAR-10 binary batches, or an image folder (train/<class>/…,
    /// test/<class>/…) [default: $CIFAR10_DIR, then data/cifar-10-batches-bin, downloaded
    /// there when missing].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl DataArg {
    /// The folder of binary batches to read (an image folder's cache; see
    /// [`locate::find`]).
    pub fn locate(&self) -> Result<PathBuf> {
        locate::find(self.data_dir.as_deref())
    }
}

/// `--backend`: which device runs the network. In a configuration file it is the key
/// `backend` (the struct is transparent to serde).
#[derive(Args, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct BackendArg {
    /// Compute backend (the values and what `auto` tries are listed below).
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
}

impl BackendArg {
    /// The chosen device (see [`backend::select`]).
    pub fn select(self) -> Result<Selected> {
        backend::select(self.backend)
    }
}

/// `-o, --out`: where a command that reads a checkpoint writes its files.
#[derive(Args, Clone, Debug, Default)]
pub struct OutputArg {
    /// Output folder [default: the command's folder beside the checkpoint: eval/, viz/,
    /// cam-eval/ or gradcam/].
    #[arg(short, long)]
    pub out: Option<PathBuf>,
}
