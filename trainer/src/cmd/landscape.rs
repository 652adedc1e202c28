//! `trainer landscape`: the 2-D loss surface around a checkpoint's weights along two random
//! filter-normalised directions, as `landscape.csv`, `landscape-contour.png` and
//! `landscape-surface.png`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use crate::backend::Backend;
use crate::data::{CifarSet, locate};
use crate::io::write_atomic;
use crate::io::{load_checkpoint, output_dir};
use crate::viz::{Landscape, contour_png, landscape, surface_png};

/// Options of `trainer landscape`.
#[derive(Args, Debug)]
pub struct LandscapeArgs {
    /// Checkpoint file, or a run folder (uses its best.safetensors).
    #[arg(short, long)]
    pub checkpoint: PathBuf,
    /// Grid points a side (odd; the centre is the trained weights).
    #[arg(long, default_value_t = 21)]
    pub points: usize,
    /// The grid covers α, β in [−span, span] (1 = one filter norm).
    #[arg(long, default_value_t = 1.0)]
    pub span: f32,
    /// Test images the loss is measured on (the first ones of the test set).
    #[arg(long, default_value_t = 500)]
    pub images: usize,
    /// Seed of the random directions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for the files [default: a `viz` folder beside the checkpoint].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder of the CIFAR-10 binary batches [default: $CIFAR10_DIR, then data/cifar-10-batches-bin].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
}

/// Computes the surface and writes the files; returns it with the folder written to.
pub fn run(args: &LandscapeArgs) -> Result<(Landscape, PathBuf)> {
    let (checkpoint, device) = load_checkpoint(&args.checkpoint, args.backend)?;
    let test = CifarSet::test(&locate::find(args.data_dir.as_deref())?)?;
    let count = args.images.clamp(1, test.len());
    let images = Arc::new(test.subset(&(0..count).collect::<Vec<_>>()));
    let land = landscape(
        &checkpoint.model,
        checkpoint.info.normalization,
        &images,
        args.points,
        args.span,
        args.seed,
        &device,
    )?;
    let out = output_dir(args.out.as_deref(), &args.checkpoint, "viz");
    std::fs::create_dir_all(&out)?;
    let mut csv = String::from("alpha,beta,loss\n");
    let n = land.coords.len();
    for (k, loss) in land.loss.iter().enumerate() {
        csv.push_str(&format!(
            "{},{},{loss}\n",
            land.coords[k % n],
            land.coords[k / n]
        ));
    }
    write_atomic(&out.join("landscape.csv"), csv.as_bytes())?;
    let title = format!(
        "{}: test loss around the trained weights ({count} images, log scale)",
        checkpoint.model.config().name
    );
    write_atomic(
        &out.join("landscape-contour.png"),
        &contour_png(&land, &title)?,
    )?;
    write_atomic(
        &out.join("landscape-surface.png"),
        &surface_png(&land, &title)?,
    )?;
    Ok((land, out))
}
