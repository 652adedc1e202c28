//! `trainer`: train, evaluate and use CIFAR-10 classifiers. See `trainer --help`.

use anyhow::Result;
use clap::Parser;
use trainer::cli::{Cli, Command};
use trainer::cmd::{eval, models, predict};
use trainer::train;

fn main() -> Result<()> {
    // `trainer` alone trains the default model with the defaults of `trainer train`.
    let command = match Cli::parse().command {
        Some(command) => command,
        None => Cli::parse_from(["trainer", "train"])
            .command
            .expect("`train` parses"),
    };
    match command {
        Command::Train(args) => {
            train::run(&args)?;
        }
        Command::Eval(args) => print!("{}", eval::run(&args)?.1),
        Command::Predict(args) => print!("{}", predict::report(&predict::run(&args)?)),
        Command::Models => print!("{}", models::table()?),
    }
    Ok(())
}
