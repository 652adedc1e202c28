//! `trainer lr-band`: seed 002's figure on what BatchNorm does to optimisation (after Santurkar
//! et al., 2018): the same network trained from the same start at several learning rates, the
//! per-step training loss's min–max band across those rates, with and without BatchNorm.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use burn::tensor::Device;
use clap::Args;
use model::{ModelConfig, ModelOptions, Normalization};
use plotters::prelude::*;

use crate::data::CifarSet;
use crate::data::batcher::{BatchPlan, batches};
use crate::io::write_atomic;
use crate::plot::render;
use crate::train::{StepPlan, TrainConfig, Trainer, init_model};

/// Options of `trainer lr-band`: its own, then every option of `trainer train` (the
/// optimizer, batch size, loss, …; `--lr` is replaced by `--lrs`).
#[derive(Args, Debug)]
#[command(mut_arg("model", |a| a.default_value("configurable-cnn")
    .help("A model that takes --batch-norm (configurable-cnn; see `trainer models`)")))]
pub struct LrBandArgs {
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
    /// Folder for lr-band.csv and lr-band.png.
    #[arg(long, default_value = "runs/lr-band")]
    pub out: PathBuf,
    /// The training options.
    #[command(flatten)]
    pub train: TrainConfig,
}

/// The training loss of every step of one run at learning rate `lr`: the same start and the
/// same batches (in the data's order, without augmentation) for every rate.
fn step_losses(
    config: &TrainConfig,
    net: &ModelConfig,
    train: &Arc<CifarSet>,
    normalization: Normalization,
    steps: usize,
    device: &Device,
) -> Result<Vec<f64>> {
    let device = device.clone().autodiff();
    let model = init_model(net, &device, config.run.seed)?;
    let plan = StepPlan {
        per_epoch: StepPlan::new(train.len(), config.optim.batch_size, 1.0, true).per_epoch,
        total: steps,
    };
    let mut trainer = Trainer::new(model, config, plan, None, &device);
    let batch_plan = BatchPlan {
        batch_size: config.optim.batch_size,
        min_last: config.optim.batch_size,
        normalization,
        augment: None,
        flip_phase: None,
    };
    let order: Vec<usize> = (0..train.len()).collect();
    let mut losses = Vec::with_capacity(steps);
    while !trainer.finished() {
        for batch in batches(train.clone(), order.clone(), batch_plan.clone()) {
            if trainer.finished() {
                break;
            }
            let n = batch.len() as f64;
            let stats = trainer.step(batch);
            losses.push(stats.loss_sum.into_scalar::<f32>() as f64 / n);
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
    ensure!(
        args.lrs.iter().all(|lr| *lr > 0.0 && lr.is_finite()),
        "--lrs must be positive numbers"
    );
    let data_dir = args.train.data.data_dir.locate()?;
    let train = Arc::new(CifarSet::train(&data_dir)?);
    ensure!(
        train.len() >= args.train.optim.batch_size,
        "{} has {} training images, fewer than one batch of {}",
        data_dir.display(),
        train.len(),
        args.train.optim.batch_size
    );
    let normalization = Normalization::measure(&train.pixels);
    let selected = args.train.run.backend.select()?;
    eprintln!("Backend: {}", selected.description());
    let mut all: [Vec<Vec<f64>>; 2] = [Vec::new(), Vec::new()];
    for (i, bn) in [false, true].into_iter().enumerate() {
        let options = ModelOptions {
            batch_norm: Some(bn),
            ..args.train.model.options.clone()
        };
        let net = ModelConfig::from_name(&args.train.model.model, &options)?;
        for &lr in &args.lrs {
            eprintln!(
                "{} lr {lr}",
                if bn {
                    "with BatchNorm,"
                } else {
                    "without BatchNorm,"
                }
            );
            let mut config = args.train.clone();
            config.optim.lr = lr;
            all[i].push(step_losses(
                &config,
                &net,
                &train,
                normalization,
                args.steps,
                &selected.device,
            )?);
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["batch_norm", "lr", "step", "loss"])?;
    for (i, runs) in all.iter().enumerate() {
        for (lr, losses) in args.lrs.iter().zip(runs) {
            for (step, loss) in losses.iter().enumerate() {
                csv.serialize((i == 1, lr, step + 1, loss))?;
            }
        }
    }
    let csv = csv.into_inner().context("cannot write lr-band.csv")?;
    write_atomic(&args.out.join("lr-band.csv"), &csv)?;
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
                    args.train.model.model,
                    lrs.join(", "),
                    args.train.optim.optimizer
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
