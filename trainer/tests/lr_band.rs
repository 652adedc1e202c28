//! `trainer lr-band` on the committed sample.

mod common;

use clap::Parser;
use common::{sample, temp};
use trainer::cli::{Cli, Command};
use trainer::cmd::lr_band;

#[test]
fn the_band_starts_from_one_point_and_opens_with_training() {
    let out = temp("lr-band");
    let data = sample();
    let argv = [
        "trainer",
        "lr-band",
        "--model",
        "configurable-cnn",
        "--lrs",
        "0.0001,0.01",
        "--steps",
        "4",
        "--batch-size",
        "64",
        "--backend",
        "flex",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let Some(Command::LrBand(args)) = Cli::try_parse_from(argv).unwrap().command else {
        panic!()
    };
    let [without, with] = lr_band::run(&args).unwrap();
    for runs in [&without, &with] {
        assert_eq!(runs.len(), 2);
        let band = lr_band::band(runs);
        assert_eq!(band.len(), 4);
        // Same weights, same first batch: the first loss does not depend on the rate.
        assert!((band[0].1 - band[0].0).abs() < 1e-6, "{band:?}");
        assert!(
            band[3].1 - band[3].0 > 1e-3,
            "the rates lead apart: {band:?}"
        );
        assert!(band.iter().all(|(lo, hi)| lo <= hi && lo.is_finite()));
    }
    assert_ne!(without[0][0], with[0][0], "BatchNorm changes the network");
    let csv = std::fs::read_to_string(out.join("lr-band.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 2 * 4);
    assert!(image::open(out.join("lr-band.png")).is_ok());
}
