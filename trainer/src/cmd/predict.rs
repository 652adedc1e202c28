//! `trainer predict`: the top classes of image files.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use burn::module::Module;
use burn::tensor::activation::softmax;
use clap::Args;
use model::preprocess::{Framing, to_cifar_pixels};

use super::images::{Refused, read_images};
use crate::args::{BackendArg, CheckpointArg};

/// Options of `trainer predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
    /// Image files of any size (PNG, JPEG, GIF, WebP, BMP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How a picture that is not square is fitted: `crop` (the centre square) or `pad` (the
    /// whole picture on grey).
    #[arg(long, default_value = "crop")]
    pub framing: Framing,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    #[command(flatten)]
    pub backend: BackendArg,
}

/// The ranked classes of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The image file.
    pub image: PathBuf,
    /// `(class name, probability)`, most likely first.
    pub top: Vec<(String, f32)>,
}

/// What `predict` found: the ranked classes of every usable image, and the refused files.
#[derive(Debug)]
pub struct Predictions {
    /// One per usable image, in the order given.
    pub answered: Vec<Prediction>,
    /// The files that could not be used, with their reasons.
    pub refused: Vec<Refused>,
}

/// Classifies every usable image; files that cannot be read or decoded are refused with
/// their reasons, the others still answered.
pub fn run(args: &PredictArgs) -> Result<Predictions> {
    ensure!(args.top >= 1, "--top must be at least 1");
    let files = read_images(&args.images);
    if files.images.is_empty() {
        return Ok(Predictions {
            answered: Vec::new(),
            refused: files.refused,
        });
    }
    let mut pixels = Vec::new();
    for (_, image) in &files.images {
        pixels.extend(to_cifar_pixels(image, args.framing));
    }
    let (checkpoint, device) = args.checkpoint.load(args.backend)?;
    let model = checkpoint.model.valid();
    let input = checkpoint.info.normalization.tensor(&pixels, &device);
    let probs = softmax(model.forward(input), 1)
        .into_data()
        .try_to_vec::<f32>()?;
    let classes = &checkpoint.info.classes;
    let answered = files
        .images
        .iter()
        .map(|(path, _)| path)
        .zip(probs.chunks_exact(classes.len()))
        .map(|(path, p)| {
            let mut ranked: Vec<(String, f32)> =
                classes.iter().cloned().zip(p.iter().copied()).collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            ranked.truncate(args.top);
            Prediction {
                image: path.clone(),
                top: ranked,
            }
        })
        .collect();
    Ok(Predictions {
        answered,
        refused: files.refused,
    })
}

/// The predictions as the CLI prints them.
pub fn report(predictions: &[Prediction]) -> String {
    let mut out = String::new();
    for p in predictions {
        out.push_str(&format!("{}\n", p.image.display()));
        for (rank, (class, prob)) in p.top.iter().enumerate() {
            out.push_str(&format!(
                "  {}. {class:<11} {:6.2}%\n",
                rank + 1,
                100.0 * prob
            ));
        }
    }
    out
}
