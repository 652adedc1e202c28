//! `trainer viz`: the pictures of a trained network that a report needs, as PNG files in one
//! folder: `filters-<layer>.png`, `distributions.png`, `feature-maps.png`, `saliency.png` and
//! `gradcam.png`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use model::preprocess::{Framing, decode_image, to_cifar_pixels};

use crate::args::{BackendArg, CheckpointArg, DataArg, OutputArg};
use crate::data::CifarSet;
use crate::eval::check_classes;
use crate::io::write_atomic;
use crate::viz;

/// Options of `trainer viz`.
#[derive(Args, Debug)]
pub struct VizArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
    /// Image for the feature maps [default: the first test image].
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Test images in the saliency and Grad-CAM grids.
    #[arg(long, default_value_t = 12)]
    pub count: usize,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub backend: BackendArg,
}

/// Writes every picture; returns the files written.
pub fn run(args: &VizArgs) -> Result<Vec<PathBuf>> {
    let (checkpoint, device) = args.checkpoint.load(args.backend)?;
    let out = args.checkpoint.output_dir(&args.out, "viz");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let test = CifarSet::test(&args.data.locate()?)?;
    check_classes(&checkpoint.info.classes, &test)?;
    let classes = &checkpoint.info.classes;
    let model = &checkpoint.model;
    let normalization = checkpoint.info.normalization;
    let mut written = Vec::new();
    let mut save = |name: String, png: Vec<u8>| -> Result<()> {
        let path = out.join(name);
        write_atomic(&path, &png)?;
        written.push(path);
        Ok(())
    };

    let params = viz::params(model)?;
    save("distributions.png".into(), viz::distributions(&params)?)?;
    let images: Vec<(&[u8], usize)> = (0..args.count.min(test.len()))
        .map(|i| (test.image(i), test.labels[i] as usize))
        .collect();
    save(
        "saliency.png".into(),
        viz::saliency_grid(model, normalization, classes, &images, &device)?,
    )?;
    // The rest needs convolutions (an MLP has none).
    if model.cam_layer().is_some() {
        for (layer, png) in viz::filters(&params)? {
            save(format!("filters-{layer}.png"), png)?;
        }
        let pixels = match &args.image {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                to_cifar_pixels(
                    &decode_image(&bytes).with_context(|| format!("{}", path.display()))?,
                    Framing::Crop,
                )
            }
            None => test.image(0).to_vec(),
        };
        save(
            "feature-maps.png".into(),
            viz::feature_maps(model, normalization, &pixels, &device)?,
        )?;
        save(
            "gradcam.png".into(),
            viz::gradcam_grid(model, normalization, classes, &images, &device)?,
        )?;
    }
    Ok(written)
}
