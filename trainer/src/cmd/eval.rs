//! `trainer eval`: test accuracy of a checkpoint, overall and per class.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use model::CLASSES;

use crate::backend::Backend;
use crate::cli::load_checkpoint;
use crate::data::{CifarSet, locate};
use crate::eval::{Evaluation, evaluate};

/// Options of `trainer eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint file, or a run folder (uses its best.safetensors).
    #[arg(short, long)]
    pub checkpoint: PathBuf,
    /// Folder of the CIFAR-10 binary batches [default: $CIFAR10_DIR, then data/cifar-10-batches-bin].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Images per inference batch.
    #[arg(short, long, default_value_t = 256)]
    pub batch_size: usize,
}

/// Evaluates the checkpoint on the test set and returns the printed report.
pub fn run(args: &EvalArgs) -> Result<(Evaluation, String)> {
    let (checkpoint, device) = load_checkpoint(&args.checkpoint, args.backend)?;
    let dir = locate::find(args.data_dir.as_deref())?;
    let test = Arc::new(CifarSet::test(&dir)?);
    let result = evaluate(
        &checkpoint.model,
        &test,
        checkpoint.info.normalization,
        &device,
        args.batch_size.max(1),
    )?;
    let report = format!(
        "{}: test accuracy {:.2}% ({}/{}), loss {:.4}, {:.0} img/s\n{}",
        checkpoint.model.config().name,
        100.0 * result.accuracy(),
        result.correct,
        result.total,
        result.loss,
        result.images_per_sec,
        per_class_table(&result)
    );
    Ok((result, report))
}

/// A table of per-class accuracy.
pub fn per_class_table(result: &Evaluation) -> String {
    let mut out = format!("{:<12} {:>9} {:>13}\n", "class", "accuracy", "correct");
    for (class, (correct, total)) in CLASSES.iter().zip(result.per_class) {
        let acc = 100.0 * correct as f64 / total.max(1) as f64;
        out.push_str(&format!(
            "{class:<12} {acc:>8.2}% {:>13}\n",
            format!("{correct}/{total}")
        ));
    }
    out
}
