//! `trainer lr-band`: seed 002's figure on what BatchNorm does to optimisation (after Santurkar
//! et al., 2018): the same network trained from the same start at several learning rates, the
//! per-step training loss's min–max band across those rates, with and without BatchNorm.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, ensure};
use burn::optim::GradientsParams;
use burn::tensor::Device;
use clap::Args;
use model::{ModelConfig, ModelOptions, Normalization};
use plotters::prelude::*;

use crate::args::{BackendArg, DataArg};
use crate::data::CifarSet;
use crate::data::batcher::{BatchPlan, batches};
use crate::io::write_atomic;
use crate::plot::render;
use crate::train::init_model;
use crate::train::loss::Objective;
use crate::train::optim::{self, OptimizerKind, OptimizerSpec};

/// Options of `trainer lr-band`.
#[derive(Args, Debug)]
pub struct LrBandArgs {
    /// A model that takes `--batch-norm` (configurable-cnn; see `trainer models`).
    #[arg(short, long, default_value = "configurable-cnn")]
    pub model: String,
    /// Learning rates, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.0001,0.0005,0.001,0.005"
    )]
    pub lrs: Vec<f64>,
    /// Training steps per learning rate.
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub optimizer: OptimizerKind,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Seed of the weights and the batch order (the same for every run).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Folder for lr-band.csv and lr-band.png.
    #[arg(long, default_value = "runs/lr-band")]
    pub out: PathBuf,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub backend: BackendArg,
}

/// The training loss of every step of one run.
fn step_losses(
    config: &ModelConfig,
    train: &Arc<CifarSet>,
    normalization: Normalization,
    lr: f64,
    args: &LrBandArgs,
    device: &Device,
) -> Result<Vec<f64>> {
    let device = device.clone().autodiff();
    let mut model = init_model(config, &device, args.seed)?;
    let spec = OptimizerSpec {
        kind: args.optimizer,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
    };
    let mut optimizer = optim::build(&model, &spec, None, 1.0);
    let objective = Objective::cross_entropy();
    let plan = BatchPlan {
        batch_size: args.batch_size,
        min_last: 2,
        normalization,
        augment: None,
        flip_phase: None,
    };
    let order: Vec<usize> = (0..train.len()).collect();
    let mut losses = Vec::with_capacity(args.steps);
    while losses.len() < args.steps {
        for batch in batches(train.clone(), order.clone(), plan.clone()) {
            if losses.len() == args.steps {
                break;
            }
            let batch = batch.to_device(&device);
            let loss = objective.loss(model.forward(batch.images), batch.targets, &model);
            losses.push(loss.clone().into_scalar::<f32>() as f64);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
        }
    }
    Ok(losses)
}

/// Per-step minimum and maximum over runs.
pub fn band(runs: &[Vec<f64>]) -> Vec<(f64, f64)> {
    let steps = runs.iter().map(Vec::len).min().unwrap_or(0);
    (0..steps)
        .map(|s| {
            runs.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| {
                (lo.min(r[s]), hi.max(r[s]))
            })
        })
        .collect()
}

/// Trains every learning rate without and with BatchNorm; returns the per-step losses,
/// `[without, with][lr][step]`, after writing lr-band.csv and lr-band.png.
pub fn run(args: &LrBandArgs) -> Result<[Vec<Vec<f64>>; 2]> {
    ensure!(
        !args.lrs.is_empty() && args.steps >= 2,
        "need learning rates and at least 2 steps"
    );
    let data_dir = args.data.locate()?;
    let train = Arc::new(CifarSet::train(&data_dir)?);
    let normalization = Normalization::measure(&train.pixels);
    let selected = args.backend.select()?;
    eprintln!("Backend: {}", selected.description());
    let mut all: [Vec<Vec<f64>>; 2] = [Vec::new(), Vec::new()];
    for (i, bn) in [false, true].into_iter().enumerate() {
        let options = ModelOptions {
            batch_norm: Some(bn),
            ..Default::default()
        };
        let config = ModelConfig::from_name(&args.model, &options)?;
        for &lr in &args.lrs {
            eprintln!(
                "{} lr {lr}",
                if bn {
                    "with BatchNorm,"
                } else {
                    "without BatchNorm,"
                }
            );
            all[i].push(step_losses(
                &config,
                &train,
                normalization,
                lr,
                args,
                &selected.device,
            )?);
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let mut csv = String::from("batch_norm,lr,step,loss\n");
    for (i, runs) in all.iter().enumerate() {
        for (lr, losses) in args.lrs.iter().zip(runs) {
            for (s, l) in losses.iter().enumerate() {
                csv.push_str(&format!("{},{lr},{},{l}\n", i == 1, s + 1));
            }
        }
    }
    write_atomic(&args.out.join("lr-band.csv"), csv.as_bytes())?;
    write_atomic(&args.out.join("lr-band.png"), &plot(args, &all)?)?;
    Ok(all)
}

fn plot(args: &LrBandArgs, all: &[Vec<Vec<f64>>; 2]) -> Result<Vec<u8>> {
    let bands = [band(&all[0]), band(&all[1])];
    let top = bands
        .iter()
        .flatten()
        .map(|b| b.1)
        .fold(0.0f64, f64::max)
        .min(4.0);
    let lrs: Vec<String> = args.lrs.iter().map(|l| format!("{l}")).collect();
    render((1000, 600), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "{}: training loss, min–max over learning rates {} ({:?})",
                    args.model,
                    lrs.join(", "),
                    args.optimizer
                ),
                ("sans-serif", 18),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(1f64..args.steps as f64, 0f64..top * 1.05)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .label_style(("sans-serif", 13))
            .draw()?;
        for (band, colour, label) in [
            (&bands[0], RED, "without BatchNorm"),
            (&bands[1], BLUE, "with BatchNorm"),
        ] {
            let mut outline: Vec<(f64, f64)> = band
                .iter()
                .enumerate()
                .map(|(s, b)| ((s + 1) as f64, b.1.min(top)))
                .collect();
            outline.extend(
                band.iter()
                    .enumerate()
                    .rev()
                    .map(|(s, b)| ((s + 1) as f64, b.0.min(top))),
            );
            chart
                .draw_series([Polygon::new(outline, colour.mix(0.35).filled())])?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], colour.mix(0.5).filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        Ok(())
    })
}
