//! `trainer gradcam`: where the network looked. For each image, the heat map of the predicted
//! (or chosen) class by one class activation map method (Grad-CAM unless `--method` says
//! otherwise), or by all of them side by side, is drawn over the centre square the network saw
//! and saved as a PNG, with the same code the web page uses (`model::cam`).

use std::io::Cursor;
use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use model::cam::{CamMethod, explain_each, overlay};
use model::preprocess::{Framing, square_view, to_cifar_pixels};

use super::images::{Refused, read_image};
use crate::args::{BackendArg, CheckpointArg, OutputArg};
use crate::io::write_atomic;
use crate::plot::picture_grid;

/// Options of `trainer gradcam`.
#[derive(Args, Debug)]
pub struct GradcamArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
    /// Image files of any size (PNG, JPEG, GIF, WebP, BMP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Class to explain, by name or index [default: the predicted class of each image].
    #[arg(long)]
    pub class: Option<String>,
    /// Layer to explain [default: the model's last convolutional stage].
    #[arg(long)]
    pub layer: Option<String>,
    /// Method: gradcam, hirescam, gradcam++, xgradcam, layercam, eigencam, scorecam, or
    /// `all` for a grid of every method per image.
    #[arg(long, default_value = "gradcam")]
    pub method: String,
    #[command(flatten)]
    pub out: OutputArg,
    /// How a picture that is not square is fitted: `crop` (the centre square) or `pad` (the
    /// whole picture on grey); the heat map is drawn over what the network saw.
    #[arg(long, default_value = "crop")]
    pub framing: Framing,
    /// Opacity of the heat map over the image, 0–1.
    #[arg(long, default_value_t = 0.5)]
    pub opacity: f32,
    /// Side of the written square images, in pixels.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    #[command(flatten)]
    pub backend: BackendArg,
}

/// One written heat map (or grid of them).
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The input image.
    pub image: PathBuf,
    /// The method's name, or `all`.
    pub method: String,
    /// The overlay PNG.
    pub png: PathBuf,
    /// The class explained and its probability.
    pub class: String,
    /// Probability of `class`.
    pub probability: f32,
    /// The most likely class and its probability.
    pub predicted: (String, f32),
}

/// The heat maps written, and the files that could not be used.
#[derive(Debug)]
pub struct Explained {
    /// One per usable image, in the order given.
    pub written: Vec<Written>,
    /// The files that could not be read or decoded, with their reasons.
    pub refused: Vec<Refused>,
}

/// Explains every usable image; files that cannot be read or decoded are refused with their
/// reasons, the others still explained.
pub fn run(args: &GradcamArgs) -> Result<Explained> {
    ensure!(
        (0.0..=1.0).contains(&args.opacity),
        "--opacity must be within 0–1"
    );
    ensure!(
        (32..=4096).contains(&args.size),
        "--size must be within 32–4096"
    );
    let methods: Vec<CamMethod> = match args.method.as_str() {
        "all" => CamMethod::ALL.to_vec(),
        name => vec![name.parse()?],
    };
    let label = match methods.as_slice() {
        [only] => only.name(),
        _ => "all",
    };
    let (checkpoint, device) = args.checkpoint.load(args.backend)?;
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
    let out = args.checkpoint.output_dir(&args.out, "gradcam");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    let mut refused = Vec::new();
    for path in &args.images {
        let image = match read_image(path) {
            Ok(image) => image,
            Err(reason) => {
                refused.push(Refused {
                    path: path.clone(),
                    reason,
                });
                continue;
            }
        };
        let input = checkpoint
            .info
            .normalization
            .tensor(&to_cifar_pixels(&image, args.framing), &device);
        let cams = explain_each(
            &checkpoint.model,
            input,
            &methods,
            class,
            args.layer.as_deref(),
        )?;
        let view = square_view(&image, args.size, args.framing);
        let picture = |cam: &model::cam::Cam| overlay(&view, &cam.heat, args.opacity);
        let cam = &cams[0];
        let encoded = if let [only] = cams.as_slice() {
            let mut encoded = Cursor::new(Vec::new());
            picture(only).write_to(&mut encoded, image::ImageFormat::Png)?;
            encoded.into_inner()
        } else {
            let mut tiles = vec![(view.clone(), "what the network saw".to_string())];
            tiles.extend(
                cams.iter()
                    .map(|c| (picture(c), c.method.title().to_string())),
            );
            let title = format!(
                "{}: {} ({:.1}%) at {}",
                checkpoint.model.config().name,
                classes[cam.class],
                100.0 * cam.probabilities[cam.class],
                cam.layer
            );
            picture_grid(&tiles, 4, &title)?
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let png = out.join(format!("{stem}-{label}.png"));
        write_atomic(&png, &encoded)?;
        let top = model::cam::argmax(&cam.probabilities);
        written.push(Written {
            image: path.clone(),
            method: label.to_string(),
            png,
            class: classes[cam.class].clone(),
            probability: cam.probabilities[cam.class],
            predicted: (classes[top].clone(), cam.probabilities[top]),
        });
    }
    Ok(Explained { written, refused })
}

/// What the CLI prints.
pub fn report(written: &[Written]) -> String {
    written
        .iter()
        .map(|w| {
            format!(
                "{}: {} of {} ({:.1}%), predicted {} ({:.1}%) → {}\n",
                w.image.display(),
                w.method,
                w.class,
                100.0 * w.probability,
                w.predicted.0,
                100.0 * w.predicted.1,
                w.png.display()
            )
        })
        .collect()
}
