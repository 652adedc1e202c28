//! `trainer viz`: the pictures of a trained network that a report needs, as PNG files in one
//! folder: `filters-<layer>.png`, `distributions.png`, `feature-maps.png`, `saliency.png` and
//! `gradcam.png`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use model::preprocess::{Framing, decode_image, to_cifar_pixels};

use crate::backend::Backend;
use crate::data::{CifarSet, locate};
use crate::io::write_atomic;
use crate::io::{load_checkpoint, output_dir};
use crate::viz;

/// Options of `trainer viz`.
#[derive(Args, Debug)]
pub struct VizArgs {
    /// Checkpoint file, or a run folder (uses its best.safetensors).
    #[arg(short, long)]
    pub checkpoint: PathBuf,
    /// Image for the feature maps [default: the first test image].
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Test images in the saliency and Grad-CAM grids.
    #[arg(long, default_value_t = 12)]
    pub count: usize,
    /// Folder for the PNG files [default: a `viz` folder beside the checkpoint].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder of the CIFAR-10 binary batches [default: $CIFAR10_DIR, then data/cifar-10-batches-bin].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
}

/// Writes every picture; returns the files written.
pub fn run(args: &VizArgs) -> Result<Vec<PathBuf>> {
    let (checkpoint, device) = load_checkpoint(&args.checkpoint, args.backend)?;
    let out = output_dir(args.out.as_deref(), &args.checkpoint, "viz");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let test = CifarSet::test(&locate::find(args.data_dir.as_deref())?)?;
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
        viz::saliency_grid(model, normalization, &images, &device)?,
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
            viz::gradcam_grid(model, normalization, &images, &device)?,
        )?;
    }
    Ok(written)
}
