//! `trainer landscape`: the 2-D loss surface around a checkpoint's weights along two random
//! filter-normalised directions, as `landscape.csv`, `landscape-contour.png` and
//! `landscape-surface.png`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use crate::args::{BackendArg, CheckpointArg, DataArg, OutputArg};
use crate::data::CifarSet;
use crate::io::write_atomic;
use crate::viz::{Landscape, contour_png, landscape, surface_png};

/// Options of `trainer landscape`.
#[derive(Args, Debug)]
pub struct LandscapeArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
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
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub backend: BackendArg,
}

/// Computes the surface and writes the files; returns it with the folder written to.
pub fn run(args: &LandscapeArgs) -> Result<(Landscape, PathBuf)> {
    let (checkpoint, device) = args.checkpoint.load(args.backend)?;
    let test = CifarSet::test(&args.data.locate()?)?;
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
    let out = args.checkpoint.output_dir(&args.out, "viz");
    std::fs::create_dir_all(&out)?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["alpha", "beta", "loss"])?;
    let n = land.coords.len();
    for (k, loss) in land.loss.iter().enumerate() {
        csv.serialize((land.coords[k % n], land.coords[k / n], loss))?;
    }
    let csv = csv.into_inner().context("cannot write landscape.csv")?;
    write_atomic(&out.join("landscape.csv"), &csv)?;
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
