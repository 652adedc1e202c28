//! `trainer cam-eval`: which class activation map method is faithful to a network. Every method
//! explains the predicted class of the first test images; each map is scored by the
//! confidence change when the image is multiplied by it and by ROAD (see
//! [`crate::faithfulness`]); the methods are ranked by ROAD's combined score. `--record NAME`
//! writes the most faithful single-pass method (and a slower one that beat it, if any) into the
//! shipped model's manifest entry, where the page takes its default method from.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use model::cam::{CamMethod, explain_each};
use model::manifest::{Explanation, Manifest, MethodScore};
use model::{IMAGE_SIZE, IMAGE_VALUES};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::args::{BackendArg, CheckpointArg, DataArg, OutputArg};
use crate::cmd::ship::{read_manifest, write_manifest};
use crate::data::CifarSet;
use crate::faithfulness::{Faithfulness, MapScores, PERCENTILES, score_maps};
use crate::io::write_atomic;
use crate::plot::road_curves;

/// Options of `trainer cam-eval`.
#[derive(Args, Debug)]
pub struct CamEvalArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
    /// Methods to compare, comma-separated (gradcam, hirescam, gradcam++, xgradcam, layercam,
    /// eigencam, scorecam) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// How many test images (the first ones of the test set).
    #[arg(long, default_value_t = 100)]
    pub images: usize,
    #[command(flatten)]
    pub data: DataArg,
    /// Seed of ROAD's imputation noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub backend: BackendArg,
    #[command(flatten)]
    pub out: OutputArg,
    /// Record the most faithful method in the manifest entry of the shipped model NAME (the
    /// checkpoint must be that model's file, byte for byte).
    #[arg(long, value_name = "NAME")]
    pub record: Option<String>,
    /// The weights folder holding manifest.json (for `--record`).
    #[arg(long, default_value = "weights")]
    pub weights_dir: PathBuf,
}

/// One method's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    /// The method.
    pub method: CamMethod,
    /// Its measures averaged over the images.
    pub faithfulness: Faithfulness,
}

/// What `cam-eval` measured: the methods, most faithful first, and where the files went.
#[derive(Clone, Debug)]
pub struct CamEval {
    /// The model's name.
    pub model: String,
    /// The methods by ROAD's combined score, best first.
    pub ranking: Vec<Ranked>,
    /// The output folder.
    pub out: PathBuf,
}

/// Measures every asked method on the first test images and writes the files.
pub fn run(args: &CamEvalArgs) -> Result<CamEval> {
    let methods: Vec<CamMethod> = if args.methods.is_empty() {
        CamMethod::ALL.to_vec()
    } else {
        args.methods
            .iter()
            .map(|m| m.parse())
            .collect::<Result<_, _>>()?
    };
    ensure!(args.images > 0, "--images must be at least 1");
    // A record must describe the shipped file: checked before the long measurement.
    let checkpoint_bytes = std::fs::read(args.checkpoint.path())
        .with_context(|| format!("cannot read {}", args.checkpoint.checkpoint.display()))?;
    if let Some(name) = &args.record {
        recorded_entry(args, name, &checkpoint_bytes)?;
    }
    let (checkpoint, device) = args.checkpoint.load(args.backend)?;
    let model = checkpoint.model.valid();
    ensure!(
        model.cam_layer().is_some(),
        "`{}` has no convolutional layer to explain",
        model.config().name
    );
    let dir = args.data.locate()?;
    let test = CifarSet::test(&dir)?;
    let images = args.images.min(test.len());
    let normalization = checkpoint.info.normalization;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut scores: Vec<Vec<MapScores>> = vec![Vec::new(); methods.len()];
    for (i, pixels) in test
        .pixels
        .chunks_exact(IMAGE_VALUES)
        .take(images)
        .enumerate()
    {
        let mut image = vec![0f32; IMAGE_VALUES];
        normalization.normalize_into(pixels, &mut image);
        let input = Tensor::<4>::from_data(
            TensorData::new(image.clone(), [1, 3, IMAGE_SIZE, IMAGE_SIZE]),
            &device,
        );
        let cams = explain_each(&model, input, &methods, None, None)
            .with_context(|| format!("test image {i}"))?;
        for (m, s) in score_maps(&model, &image, &cams, &mut rng, &device)?
            .into_iter()
            .enumerate()
        {
            scores[m].push(s);
        }
        if (i + 1) % 25 == 0 {
            eprintln!("{}/{images} images", i + 1);
        }
    }
    let mut ranking: Vec<Ranked> = methods
        .iter()
        .zip(&scores)
        .map(|(&method, s)| Ranked {
            method,
            faithfulness: Faithfulness::of(s),
        })
        .collect();
    ranking.sort_by(|a, b| b.faithfulness.road().total_cmp(&a.faithfulness.road()));
    let out = args.checkpoint.output_dir(&args.out, "cam-eval");
    let result = CamEval {
        model: model.config().name.clone(),
        ranking,
        out,
    };
    write_files(&result, &model.cam_layer().unwrap_or_default())?;
    if let Some(name) = &args.record {
        record(args, name, &checkpoint_bytes, &result.ranking)?;
    }
    Ok(result)
}

/// Writes the most faithful single-pass method that explains a class (the page's default,
/// which must answer at once and follow its "Explain" class picker) into the manifest entry
/// `name`, with the multi-pass method that beat it, if any.
fn record(args: &CamEvalArgs, name: &str, checkpoint: &[u8], ranking: &[Ranked]) -> Result<()> {
    let Some(chosen) = ranking
        .iter()
        .find(|r| r.method.is_single_pass() && r.method.is_class_specific())
    else {
        bail!(
            "--record needs a single-pass method that explains a class among --methods \
             (every method but Score-CAM and Eigen-CAM)"
        );
    };
    let (path, mut manifest) = recorded_entry(args, name, checkpoint)?;
    let score = |r: &Ranked| MethodScore {
        method: r.method.name().to_string(),
        road: r.faithfulness.road(),
        road_error: r.faithfulness.road_error,
    };
    let entry = manifest
        .models
        .iter_mut()
        .find(|m| m.name == name)
        .expect("checked by recorded_entry");
    let slower_but_better = ranking
        .iter()
        .take_while(|r| r.method != chosen.method)
        .find(|r| !r.method.is_single_pass());
    entry.explanation = Some(Explanation {
        method: chosen.method.name().to_string(),
        road: chosen.faithfulness.road(),
        road_error: chosen.faithfulness.road_error,
        images: chosen.faithfulness.images,
        slower_but_better: slower_but_better.map(score),
    });
    write_manifest(&path, &manifest)
}

/// The manifest that `--record NAME` writes to, after checking that it has the entry NAME and
/// that the entry's file is the checkpoint measured.
fn recorded_entry(
    args: &CamEvalArgs,
    name: &str,
    checkpoint: &[u8],
) -> Result<(PathBuf, Manifest)> {
    let path = args.weights_dir.join("manifest.json");
    let manifest = read_manifest(&path)?;
    let entry = manifest.get(name).with_context(|| {
        format!(
            "{} has no model named `{name}` to record for",
            path.display()
        )
    })?;
    ensure!(
        format!("{:x}", Sha256::digest(checkpoint)) == entry.sha256,
        "{} is not the shipped `{name}` ({}): measure that file, or ship this one first",
        args.checkpoint.checkpoint.display(),
        args.weights_dir.join(&entry.file).display()
    );
    Ok((path, manifest))
}

fn write_files(result: &CamEval, layer: &str) -> Result<()> {
    let out = &result.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec![
        "rank".to_string(),
        "method".into(),
        "images".into(),
        "road_combined".into(),
        "road_combined_se".into(),
        "average_drop_pct".into(),
        "increase_pct".into(),
    ];
    for order in ["morf", "lerf"] {
        header.extend(PERCENTILES.iter().map(|p| format!("{order}_{p}")));
    }
    writer.write_record(&header)?;
    for (rank, r) in result.ranking.iter().enumerate() {
        let f = &r.faithfulness;
        let mut row = vec![
            (rank + 1).to_string(),
            r.method.name().to_string(),
            f.images.to_string(),
            format!("{:.6}", f.road()),
            format!("{:.6}", f.road_error),
            format!("{:.4}", f.average_drop),
            format!("{:.4}", f.increase),
        ];
        row.extend(f.morf.iter().chain(&f.lerf).map(|v| format!("{v:.6}")));
        writer.write_record(&row)?;
    }
    write_atomic(&out.join("cam-eval.csv"), &writer.into_inner()?)?;

    let ranking: Vec<_> = result
        .ranking
        .iter()
        .map(|r| {
            let f = &r.faithfulness;
            json!({
                "method": r.method.name(),
                "title": r.method.title(),
                "road_combined": f.road(),
                "road_combined_se": f.road_error,
                "average_drop_pct": f.average_drop,
                "increase_pct": f.increase,
                "morf": f.morf,
                "lerf": f.lerf,
            })
        })
        .collect();
    let json = json!({
        "model": result.model,
        "layer": layer,
        "images": result.ranking.first().map_or(0, |r| r.faithfulness.images),
        "explained": "the predicted class",
        "percentiles": PERCENTILES,
        "most_faithful": result.ranking.first().map(|r| r.method.name()),
        "ranking": ranking,
    });
    write_atomic(
        &out.join("cam-eval.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;

    let curve = |values: &[f64; 4]| -> Vec<(f64, f64)> {
        PERCENTILES
            .iter()
            .map(|&p| p as f64)
            .zip(values.iter().copied())
            .collect()
    };
    let morf: Vec<_> = result
        .ranking
        .iter()
        .map(|r| (r.method.title(), curve(&r.faithfulness.morf)))
        .collect();
    let lerf: Vec<_> = result
        .ranking
        .iter()
        .map(|r| (r.method.title(), curve(&r.faithfulness.lerf)))
        .collect();
    write_atomic(&out.join("cam-eval.png"), &road_curves(&morf, &lerf)?)
}

/// The table the CLI prints.
pub fn report(result: &CamEval) -> String {
    let images = result.ranking.first().map_or(0, |r| r.faithfulness.images);
    let mut text = format!(
        "{}: {images} test images, the predicted class explained\n\
         ROAD: mean of (LeRF − MoRF) / 2 over 20/40/60/80 % removed, higher is more faithful\n\
         (± its standard error over the images); average drop: lower is better; increase:\n\
         share of images whose confidence rose\n\n\
         rank  method        ROAD             avg drop  increase   MoRF@80  LeRF@80\n",
        result.model
    );
    for (rank, r) in result.ranking.iter().enumerate() {
        let f = &r.faithfulness;
        text.push_str(&format!(
            "{:>4}  {:<12} {:>6.3} ± {:.3}  {:>7.1}%  {:>7.1}%  {:>8.3}  {:>7.3}\n",
            rank + 1,
            r.method.title(),
            f.road(),
            f.road_error,
            f.average_drop,
            f.increase,
            f.morf[3],
            f.lerf[3]
        ));
    }
    text.push_str(&format!(
        "\nWrote cam-eval.csv, cam-eval.json and cam-eval.png to {}\n",
        result.out.display()
    ));
    text
}
