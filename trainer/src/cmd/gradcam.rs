//! `trainer gradcam`: where the network looked. For each image, the Grad-CAM heat map of the
//! predicted (or chosen) class is drawn over the centre square the network saw and saved as a
//! PNG, with the same code the web page uses (`model::cam`).

use std::io::Cursor;
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use model::cam::{grad_cam, overlay};
use model::preprocess::{decode_image, square_view, to_cifar_pixels};

use crate::backend::Backend;
use crate::cli::load_checkpoint;
use crate::train::run_dir::write_atomic;

/// Options of `trainer gradcam`.
#[derive(Args, Debug)]
pub struct GradcamArgs {
    /// Checkpoint file, or a run folder (uses its best.safetensors).
    #[arg(short, long)]
    pub checkpoint: PathBuf,
    /// Image files of any size (PNG, JPEG, GIF, WebP, BMP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Class to explain, by name or index [default: the predicted class of each image].
    #[arg(long)]
    pub class: Option<String>,
    /// Layer to explain [default: the model's last convolutional stage].
    #[arg(long)]
    pub layer: Option<String>,
    /// Folder for the `<image>-gradcam.png` files.
    #[arg(long, default_value = "gradcam")]
    pub out: PathBuf,
    /// Opacity of the heat map over the image, 0–1.
    #[arg(long, default_value_t = 0.5)]
    pub opacity: f32,
    /// Side of the written square images, in pixels.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
}

/// One written heat map.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The input image.
    pub image: PathBuf,
    /// The overlay PNG.
    pub png: PathBuf,
    /// The class explained and its probability.
    pub class: String,
    /// Probability of `class`.
    pub probability: f32,
    /// The most likely class and its probability.
    pub predicted: (String, f32),
}

/// Explains every image; fails on the first unreadable one, naming it.
pub fn run(args: &GradcamArgs) -> Result<Vec<Written>> {
    ensure!(
        (0.0..=1.0).contains(&args.opacity),
        "--opacity must be within 0–1"
    );
    ensure!(
        (32..=4096).contains(&args.size),
        "--size must be within 32–4096"
    );
    let (checkpoint, device) = load_checkpoint(&args.checkpoint, args.backend)?;
    let classes = &checkpoint.info.classes;
    let class = match &args.class {
        None => None,
        Some(c) => Some(
            match (classes.iter().position(|n| n == c), c.parse::<usize>()) {
                (Some(i), _) => i,
                (None, Ok(i)) if i < classes.len() => i,
                _ => bail!(
                    "unknown class `{c}`; the classes are {}",
                    classes.join(", ")
                ),
            },
        ),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut written = Vec::new();
    for path in &args.images {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let image = decode_image(&bytes).with_context(|| format!("{}", path.display()))?;
        let input = checkpoint
            .info
            .normalization
            .tensor(&to_cifar_pixels(&image), &device);
        let cam = grad_cam(&checkpoint.model, input, class, args.layer.as_deref())?;
        let picture = overlay(&square_view(&image, args.size), &cam.heat, args.opacity);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let png = args.out.join(format!("{stem}-gradcam.png"));
        let mut encoded = Cursor::new(Vec::new());
        picture.write_to(&mut encoded, image::ImageFormat::Png)?;
        write_atomic(&png, encoded.get_ref())?;
        let top = model::cam::argmax(&cam.probabilities);
        written.push(Written {
            image: path.clone(),
            png,
            class: classes[cam.class].clone(),
            probability: cam.probabilities[cam.class],
            predicted: (classes[top].clone(), cam.probabilities[top]),
        });
    }
    Ok(written)
}

/// What the CLI prints.
pub fn report(written: &[Written]) -> String {
    written
        .iter()
        .map(|w| {
            format!(
                "{}: explained {} ({:.1}%), predicted {} ({:.1}%) → {}\n",
                w.image.display(),
                w.class,
                100.0 * w.probability,
                w.predicted.0,
                100.0 * w.predicted.1,
                w.png.display()
            )
        })
        .collect()
}
