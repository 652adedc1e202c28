//! `trainer predict`: the top classes of image files.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use burn::module::Module;
use burn::tensor::activation::softmax;
use clap::Args;
use model::preprocess::{Framing, decode_image, to_cifar_pixels};

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

/// Classifies every image; fails on the first unreadable one, naming it.
pub fn run(args: &PredictArgs) -> Result<Vec<Prediction>> {
    ensure!(args.top >= 1, "--top must be at least 1");
    let mut pixels = Vec::new();
    for path in &args.images {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let image = decode_image(&bytes).with_context(|| format!("{}", path.display()))?;
        pixels.extend(to_cifar_pixels(&image, args.framing));
    }
    let (checkpoint, device) = args.checkpoint.load(args.backend)?;
    let model = checkpoint.model.valid();
    let input = checkpoint.info.normalization.tensor(&pixels, &device);
    let probs = softmax(model.forward(input), 1)
        .into_data()
        .try_to_vec::<f32>()?;
    let classes = &checkpoint.info.classes;
    Ok(args
        .images
        .iter()
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
        .collect())
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
