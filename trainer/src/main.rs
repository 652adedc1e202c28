//! `trainer`: train, evaluate and use CIFAR-10 classifiers. See `trainer --help`.

use anyhow::Result;
use trainer::cli::{Action, Cli, Command};
use trainer::cmd::{
    bench, cam_eval, data, eval, export, gradcam, images, import, landscape, lr_band, models,
    predict, report, ship, viz,
};
use trainer::train;

/// Names the refused files on standard error and fails when there are any, after the
/// command printed what it could answer.
fn finish_files(refused: &[images::Refused], given: usize) -> Result<()> {
    eprint!("{}", images::refused_report(refused));
    match images::refused_error(refused, given) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn main() -> Result<()> {
    trainer::allocator::keep_freed_memory();
    let argv: Vec<String> = std::env::args().collect();
    let command = match Cli::action(argv) {
        Ok(Action::Train { job, print_config }) => {
            if print_config {
                print!("{}", job.config.to_toml()?);
            } else {
                train::run(&job)?;
            }
            return Ok(());
        }
        Ok(Action::Run(command)) => *command,
        Err(e) => match e.downcast::<clap::Error>() {
            Ok(clap_error) => clap_error.exit(),
            Err(other) => return Err(other),
        },
    };
    match command {
        Command::Train(_) => unreachable!("`Cli::action` turns `train` into a job"),
        Command::Eval(args) => print!("{}", eval::run(&args)?.1),
        Command::Predict(args) => {
            let found = predict::run(&args)?;
            print!("{}", predict::report(&found.answered));
            finish_files(&found.refused, args.images.len())?;
        }
        Command::Gradcam(args) => {
            let found = gradcam::run(&args)?;
            print!("{}", gradcam::report(&found.written));
            finish_files(&found.refused, args.images.len())?;
        }
        Command::CamEval(args) => print!("{}", cam_eval::report(&cam_eval::run(&args)?)),
        Command::Ship(args) => print!("{}", ship::report(&ship::run(&args)?, &args.weights_dir)),
        Command::Viz(args) => {
            for path in viz::run(&args)? {
                println!("wrote {}", path.display());
            }
        }
        Command::Landscape(args) => {
            let (land, out) = landscape::run(&args)?;
            println!(
                "loss at the trained weights {:.4}, lowest {:.4}, highest {:.4}; wrote landscape.csv, \
                 landscape-contour.png and landscape-surface.png to {}",
                land.centre(),
                land.loss.iter().copied().fold(f32::MAX, f32::min),
                land.loss.iter().copied().fold(f32::MIN, f32::max),
                out.display()
            );
        }
        Command::Report(args) => println!("wrote {}", report::run(&args)?.display()),
        Command::Search(args) => {
            let trials = trainer::search::run(&args)?;
            let best = trials
                .iter()
                .filter_map(|t| t.score.map(|s| (s, t)))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            match best {
                Some((score, t)) => println!(
                    "{} trials; best: trial {} with score {:.2}% ({:?})",
                    trials.len(),
                    t.number,
                    100.0 * score,
                    t.params
                ),
                None => println!("{} trials, none succeeded", trials.len()),
            }
        }
        Command::SearchReport(args) => {
            let (best, page) = trainer::search::report(&args)?;
            println!(
                "best: trial {} with score {:.2}% ({:?}); wrote {}",
                best.number,
                100.0 * best.score.unwrap_or(0.0),
                best.params,
                page.display()
            );
            if let Some(checkpoint) = &best.checkpoint {
                println!("its checkpoint: {checkpoint}");
            }
        }
        Command::LrBand(args) => {
            lr_band::run(&args)?;
            println!(
                "wrote lr-band.csv and lr-band.png to {}",
                args.out.display()
            );
        }
        Command::Models => print!("{}", models::table()?),
        Command::Export(args) => println!("wrote {}", export::run(&args)?.display()),
        Command::Import(args) => {
            let checkpoint = import::run(&args)?;
            println!(
                "wrote {} ({}, {} parameters)",
                args.out.display(),
                checkpoint.model.config().name,
                checkpoint.model.parameter_count()
            );
        }
        Command::Data(args) => match &args.command {
            data::DataCommand::Info(info) => print!("{}", data::info(info)?),
        },
        Command::Bench(args) => {
            bench::run(&args)?;
            println!("wrote {}", args.csv.display());
        }
    }
    Ok(())
}
