//! End to end on the committed CIFAR-10 sample: train, evaluate, predict, and the wgpu path.

mod common;

use std::path::Path;

use clap::Parser;
use common::{sample, temp};
use image::{DynamicImage, ImageFormat, RgbImage};
use trainer::backend::{self, Backend};
use trainer::cli::{Cli, Command};
use trainer::cmd::{eval, predict};
use trainer::data::CifarSet;
use trainer::train::{self, TrainArgs, TrainJob};

fn parse(args: &[&str]) -> Command {
    Cli::try_parse_from(std::iter::once("trainer").chain(args.iter().copied()))
        .unwrap()
        .command
        .unwrap()
}

fn train_args(extra: &[&str], runs: &Path) -> TrainJob {
    let data = sample();
    let mut args = vec![
        "--data-dir",
        data.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    TrainArgs::parse_job(&args).unwrap()
}

/// Saves CIFAR-10 pixels (channel-major) as an RGB image scaled to `w × h`.
fn save_scaled(pixels: &[u8], w: u32, h: u32, path: &Path, format: ImageFormat) {
    let img = RgbImage::from_fn(32, 32, |x, y| {
        let i = (y * 32 + x) as usize;
        image::Rgb([pixels[i], pixels[1024 + i], pixels[2048 + i]])
    });
    let img =
        DynamicImage::ImageRgb8(img).resize_exact(w, h, image::imageops::FilterType::CatmullRom);
    img.save_with_format(path, format).unwrap();
}

#[test]
fn training_on_the_sample_lowers_the_loss_and_the_run_can_be_evaluated_and_used() {
    let runs = temp("runs");
    let args = train_args(
        &[
            "--model",
            "tiny-cnn",
            "--epochs",
            "4",
            "--batch-size",
            "32",
            "--lr",
            "0.003",
            "--val-ratio",
            "0.2",
            "--backend",
            "flex",
            "--name",
            "sample",
        ],
        &runs,
    );
    let outcome = train::run(&args).unwrap();
    let losses: Vec<f64> = outcome.epochs.iter().map(|e| e.train_loss).collect();
    assert!(
        losses[3] < 0.85 * losses[0],
        "loss did not fall: {losses:?}"
    );
    assert!(outcome.epochs[3].train_accuracy > outcome.epochs[0].train_accuracy);

    let run = runs.join("sample");
    for file in [
        "config.json",
        "metrics.csv",
        "best.safetensors",
        "last.safetensors",
        "summary.txt",
        "summary.json",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["model"]["model"], "tiny-cnn");
    assert_eq!(config["train_images"], 400);

    // `eval` on the run folder reproduces the test accuracy the run reported.
    let Command::Eval(eval_args) = parse(&[
        "eval",
        "--checkpoint",
        run.to_str().unwrap(),
        "--data-dir",
        sample().to_str().unwrap(),
        "--backend",
        "flex",
    ]) else {
        unreachable!()
    };
    let (result, report) = eval::run(&eval_args).unwrap();
    assert_eq!(result.correct(), outcome.test.correct());
    assert_eq!(result.total(), 200);
    assert!(
        report.contains("airplane") && report.contains("truck") && report.contains("macro avg"),
        "{report}"
    );
    assert!(result.top_k_accuracy(1) <= result.top_k_accuracy(3));
    assert!(result.top_k_accuracy(3) <= result.top_k_accuracy(5));
    assert_eq!(result.mistakes.len(), result.total() - result.correct());
    let eval_dir = run.join("eval");
    for file in [
        "report.json",
        "per_class.csv",
        "confusion.png",
        "misclassified.png",
    ] {
        assert!(eval_dir.join(file).is_file(), "eval/{file} missing");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["accuracy"].as_f64().unwrap(), result.accuracy());
    let cells: u64 = json["confusion_matrix"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(cells, 200);

    // `predict` on a PNG and a JPEG of other sizes, and on an exact 32 × 32 PNG.
    let test = CifarSet::test(&sample()).unwrap();
    let dir = temp("predict");
    let png = dir.join("wide.png");
    let jpg = dir.join("tall.jpg");
    let exact = dir.join("exact.png");
    save_scaled(test.image(0), 200, 150, &png, ImageFormat::Png);
    save_scaled(test.image(1), 45, 90, &jpg, ImageFormat::Jpeg);
    save_scaled(test.image(2), 32, 32, &exact, ImageFormat::Png);
    let Command::Predict(predict_args) = parse(&[
        "predict",
        "--checkpoint",
        run.join("best.safetensors").to_str().unwrap(),
        png.to_str().unwrap(),
        jpg.to_str().unwrap(),
        exact.to_str().unwrap(),
    ]) else {
        unreachable!()
    };
    let predictions = predict::run(&predict_args).unwrap().answered;
    assert_eq!(predictions.len(), 3);
    for p in &predictions {
        assert_eq!(p.top.len(), 5);
        assert!(p.top.windows(2).all(|w| w[0].1 >= w[1].1), "{p:?}");
        let total: f32 = p.top.iter().map(|t| t.1).sum();
        assert!(total > 0.0 && total <= 1.0 + 1e-4, "{p:?}");
    }
    // The exact-size PNG goes through the same preprocessing as the test record it came from,
    // so its top class is the one `eval` predicts for that record.
    let single = CifarSet {
        pixels: test.image(2).to_vec(),
        labels: vec![test.labels[2]],
        classes: test.classes.clone(),
    };
    let checkpoint = model::Checkpoint::from_bytes(
        &std::fs::read(run.join("best.safetensors")).unwrap(),
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    let logits = checkpoint.model.forward(
        checkpoint
            .info
            .normalization
            .tensor(&single.pixels, &burn::tensor::Device::flex()),
    );
    let top = logits.argmax(1).into_scalar::<i64>() as usize;
    assert_eq!(predictions[2].top[0].0, model::CLASSES[top]);
    assert!(predict::report(&predictions).contains("1. "));

    // Bad files among good ones: every good one is answered, each bad one is named with its
    // reason, and the command fails after printing the answers.
    let bogus = dir.join("notes.png");
    std::fs::write(&bogus, b"hello").unwrap();
    let cut = dir.join("cut.png");
    let whole = std::fs::read(&exact).unwrap();
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let missing = dir.join("missing.png");
    let mixed_files = [&png, &bogus, &cut, &missing, &exact].map(|p| p.to_str().unwrap());
    let mut mixed_argv = vec!["predict", "--checkpoint", run.to_str().unwrap()];
    mixed_argv.extend(mixed_files);
    let Command::Predict(mixed) = parse(&mixed_argv) else {
        unreachable!()
    };
    let found = predict::run(&mixed).unwrap();
    assert_eq!(found.answered.len(), 2);
    assert_eq!(found.answered[0], predictions[0]);
    assert_eq!(found.answered[1], predictions[2]);
    let reasons: Vec<(&Path, &str)> = found
        .refused
        .iter()
        .map(|r| (r.path.as_path(), r.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].0 == bogus && reasons[0].1.contains("not an image"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == cut && reasons[1].1.contains("cannot decode"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].0 == missing && reasons[2].1.contains("cannot read"),
        "{reasons:?}"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(&mixed_argv)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("wide.png") && stdout.contains("exact.png"),
        "{stdout}"
    );
    assert!(
        stderr.contains("notes.png: ") && stderr.contains("3 of 5 image files could not be used"),
        "{stderr}"
    );
    // A file that is not a checkpoint is refused clearly.
    let Command::Predict(bad) = parse(&[
        "predict",
        "--checkpoint",
        png.to_str().unwrap(),
        png.to_str().unwrap(),
    ]) else {
        unreachable!()
    };
    let err = format!("{:#}", predict::run(&bad).unwrap_err());
    assert!(err.contains("not a SafeTensors file"), "{err}");
    std::fs::remove_dir_all(&runs).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "needs a Vulkan driver (mesa-vulkan-drivers): run ./check"]
fn wgpu_learns_like_flex() {
    assert!(
        backend::select(Backend::Wgpu).is_ok(),
        "wgpu has no adapter: install a Vulkan driver (Debian: mesa-vulkan-drivers)"
    );
    let runs = temp("wgpu");
    let common = [
        "--model",
        "tiny-cnn",
        "--dropout",
        "0",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--lr",
        "0.003",
        "--val-ratio",
        "0",
        "--limit",
        "256",
    ];
    let run = |backend: &str| {
        let mut a: Vec<&str> = common.to_vec();
        a.extend(["--backend", backend, "--name", backend]);
        train::run(&train_args(&a, &runs)).unwrap()
    };
    let flex = run("flex");
    let wgpu = run("wgpu");
    for (f, w) in flex.epochs.iter().zip(&wgpu.epochs) {
        let rel = (f.train_loss - w.train_loss).abs() / f.train_loss;
        assert!(
            rel < 0.02,
            "epoch {}: flex {} vs wgpu {}",
            f.epoch,
            f.train_loss,
            w.train_loss
        );
    }
    assert!(wgpu.epochs[1].train_loss < wgpu.epochs[0].train_loss);
    std::fs::remove_dir_all(&runs).unwrap();
}
