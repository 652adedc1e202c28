//! The command line: subcommands and the options they share.

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::cmd::{
    bench::BenchArgs, eval::EvalArgs, gradcam::GradcamArgs, landscape::LandscapeArgs,
    lr_band::LrBandArgs, predict::PredictArgs, report::ReportArgs, ship::ShipArgs, viz::VizArgs,
};
use crate::train::{TrainArgs, TrainJob};

/// Train, evaluate and use CIFAR-10 classifiers on Burn (GPU through wgpu, CPU through Flex).
///
/// Without a subcommand, trains the default model (`train` with its defaults).
#[derive(Parser, Debug)]
#[command(
    name = "trainer",
    version,
    about,
    long_about,
    args_override_self = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model, evaluate it on the test set and write a run folder.
    Train(Box<TrainArgs>),
    /// Test accuracy and per-class accuracy of a checkpoint.
    Eval(EvalArgs),
    /// Top-5 classes of image files (any size, PNG/JPEG/GIF/WebP/BMP).
    Predict(PredictArgs),
    /// Class activation maps (Grad-CAM, or `--method` one of six others, or all) of image
    /// files, drawn over each image as PNG files.
    Gradcam(GradcamArgs),
    /// How faithful each class activation map method is to a checkpoint's network (confidence
    /// change and ROAD on test images): a ranking, a CSV, a JSON and a plot.
    CamEval(crate::cmd::cam_eval::CamEvalArgs),
    /// Copy a checkpoint into weights/ and record its measured test accuracy, size and
    /// SHA-256 in weights/manifest.json (what the web page loads).
    Ship(ShipArgs),
    /// Pictures of a trained network: filters, parameter distributions, feature maps,
    /// saliency and Grad-CAM grids (PNG).
    Viz(VizArgs),
    /// The loss surface around a checkpoint's weights along two random filter-normalised
    /// directions (CSV, contour and 3-D PNG).
    Landscape(LandscapeArgs),
    /// Seed 002's figure: per-step training-loss band over several learning rates, with and
    /// without BatchNorm.
    LrBand(Box<LrBandArgs>),
    /// One self-contained HTML page of a run: summary, curves, metrics, evaluation and
    /// visualisations.
    Report(ReportArgs),
    /// Hyperparameter search (grid, random or Bayesian) over a space written in TOML, by any
    /// number of workers on any machines sharing one study store (SQLite or PostgreSQL).
    Search(crate::search::SearchArgs),
    /// Analyse a search, from its folder or its store: best trial, score histogram, each
    /// option against the score, correlations, learning curves (PNG and HTML).
    SearchReport(crate::search::SearchReportArgs),
    /// List every registered model with its parameter count.
    Models,
    /// A checkpoint in PyTorch's names and layouts (a state dict that the twins of
    /// export/torch_models.py load with strict=True).
    Export(crate::cmd::export::ExportArgs),
    /// A checkpoint from a PyTorch state dict (SafeTensors) of one of the networks' twins.
    Import(crate::cmd::import::ImportArgs),
    /// What a data folder holds (CIFAR-10 binary batches or an image folder).
    Data(crate::cmd::data::DataArgs),
    /// Throughput of the training step, inference and the data pipeline per model (a table
    /// and a CSV; `bench/compare` puts it beside PyTorch's).
    Bench(BenchArgs),
}

/// What a command line asks for.
#[derive(Debug)]
pub enum Action {
    /// Train (or, with `print_config`, only print the merged configuration).
    Train {
        /// The merged configuration and the run to continue.
        job: Box<TrainJob>,
        /// `--print-config`.
        print_config: bool,
    },
    /// Any other subcommand.
    Run(Box<Command>),
}

impl Cli {
    /// Parses `argv`; for `train`, also merges its configuration (see
    /// [`TrainArgs::job`]). `trainer` alone is `trainer train`.
    pub fn action(argv: Vec<String>) -> Result<Action> {
        let matches = Self::command().try_get_matches_from(argv)?;
        let cli = Self::from_arg_matches(&matches)?;
        match cli.command {
            Some(Command::Train(args)) => {
                let sub = matches
                    .subcommand_matches("train")
                    .expect("the train subcommand matched");
                Ok(Action::Train {
                    job: Box::new(args.job(sub)?),
                    print_config: args.print_config,
                })
            }
            Some(other) => Ok(Action::Run(Box::new(other))),
            None => Ok(Action::Train {
                job: Box::new(TrainArgs::parse_job::<&str>(&[])?),
                print_config: false,
            }),
        }
    }
}
