//! The training toolkit end to end on the committed sample: every option changes training,
//! config files and presets, early stopping, divergence, and resuming a killed run.

mod common;

use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use common::{sample, temp};
use trainer::train::config::PRESETS;
use trainer::train::{self, TrainArgs, TrainJob};

fn parse(args: &[&str]) -> anyhow::Result<TrainJob> {
    TrainArgs::parse_job(args)
}

/// A quick tiny-cnn run on the sample with `extra` options; returns the per-epoch train loss.
fn quick(runs: &Path, name: &str, extra: &[&str]) -> Vec<f64> {
    let data = sample();
    let mut args = vec![
        "--model",
        "tiny-cnn",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--limit",
        "192",
        "--val-ratio",
        "0.25",
        "--backend",
        "flex",
        "--data-dir",
        data.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    let outcome = train::run(&parse(&args).unwrap()).unwrap();
    outcome.epochs.iter().map(|e| e.train_loss).collect()
}

#[test]
fn every_training_option_changes_training() {
    let runs = temp("options");
    let baseline = quick(&runs, "baseline", &[]);
    assert_eq!(
        baseline,
        quick(&runs, "again", &[]),
        "a fixed seed gives the same run on CPU"
    );
    let options: [&[&str]; 27] = [
        &["--loss", "focal"],
        &["--loss", "focal", "--focal-gamma", "1"],
        &["--loss", "focal", "--focal-alpha", "0.5"],
        &["--label-smoothing", "0.1"],
        &["--l1", "0.001"],
        &["--l2", "0.01"],
        &["--optimizer", "sgd", "--lr", "0.01"],
        &["--optimizer", "sgd", "--lr", "0.01", "--nesterov"],
        &["--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.5"],
        &["--optimizer", "adamw", "--weight-decay", "0.1"],
        &["--optimizer", "rmsprop", "--lr", "0.0003"],
        &["--optimizer", "custom", "--momentum", "0.5"],
        &["--weight-decay", "0.1"],
        &["--classifier-optimizer", "sgd", "--classifier-lr", "0.05"],
        &["--schedule", "cosine"],
        &["--schedule", "one-cycle"],
        &["--warmup-epochs", "1"],
        &["--clip-norm", "0.05"],
        &["--crop-padding", "4"],
        &["--flip"],
        &["--cutout", "8"],
        &["--mixup", "0.4"],
        &["--crop-padding", "4", "--crop-fill", "reflect"],
        &["--flip", "--alternating-flip"],
        &["--schedule", "triangle"],
        &["--norm-bias-lr-scale", "16"],
        &["--lookahead-every", "2"],
    ];
    for (i, extra) in options.iter().enumerate() {
        let losses = quick(&runs, &format!("option-{i}"), extra);
        assert_ne!(losses, baseline, "{extra:?} made no difference");
    }
    // The airbench options against their neighbours: mirrored against black padding, and
    // alternating against random flips.
    assert_ne!(
        quick(&runs, "black", &["--crop-padding", "4"]),
        quick(
            &runs,
            "mirrored",
            &["--crop-padding", "4", "--crop-fill", "reflect"]
        )
    );
    assert_ne!(
        quick(&runs, "random-flip", &["--flip"]),
        quick(&runs, "alternating", &["--flip", "--alternating-flip"])
    );
    // Distillation from a shipped network: it changes training, and with α = 0 it does not.
    let teacher = sample().join("../../weights/basic-cnn.safetensors");
    let teacher = teacher.to_str().unwrap();
    let distilled = quick(&runs, "distilled", &["--teacher", teacher]);
    assert_ne!(distilled, baseline);
    // A teacher answering with its mirror-averaged logits teaches something else.
    assert_ne!(
        quick(
            &runs,
            "mirror-teacher",
            &["--teacher", teacher, "--teacher-tta", "mirror"]
        ),
        distilled
    );
    // An ensemble of two teachers teaches something else than either alone.
    let second = sample().join("../../weights/tiny-cnn.safetensors");
    let second = second.to_str().unwrap();
    let ensemble = quick(
        &runs,
        "ensemble-teacher",
        &["--teacher", teacher, "--teacher", second],
    );
    assert_ne!(ensemble, distilled);
    assert_ne!(
        ensemble,
        quick(&runs, "second-teacher", &["--teacher", second])
    );
    assert_eq!(
        quick(
            &runs,
            "alpha-0",
            &["--teacher", teacher, "--distill-weight", "0"]
        ),
        baseline
    );
    // Step and exponential schedules act from the second epoch on.
    let csv = |name: &str| std::fs::read_to_string(runs.join(name).join("metrics.csv")).unwrap();
    quick(
        &runs,
        "step",
        &["--schedule", "step", "--step-size", "1", "--gamma", "0.5"],
    );
    quick(
        &runs,
        "exp",
        &["--schedule", "exponential", "--gamma", "0.1"],
    );
    let lr = |name: &str, row: usize| {
        csv(name)
            .lines()
            .nth(row)
            .unwrap()
            .split(',')
            .nth(5)
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!((lr("step", 1), lr("step", 2)), (0.001, 0.0005));
    assert!((lr("exp", 2) - 0.0001).abs() < 1e-12);
    assert!(
        runs.join("step/curves.png").is_file(),
        "curves are plotted every epoch"
    );
    std::fs::remove_dir_all(&runs).unwrap();
}

#[test]
fn config_files_presets_and_flags_combine_in_that_order() {
    let dir = temp("config");
    let file = dir.join("run.toml");
    std::fs::write(
        &file,
        "model = \"tiny-cnn\"\nepochs = 2\nlr = 0.002\nflip = true\nlabel_smoothing = 0.1\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let args = parse(&["--config", f, "--epochs", "3"]).unwrap().config;
    assert_eq!(
        (args.model.model.as_str(), args.optim.epochs, args.optim.lr),
        ("tiny-cnn", 3.0, 0.002)
    );
    assert!(args.augment.flip);
    assert_eq!(args.loss.label_smoothing, 0.1);
    // The same options in sections, and flags over a preset over the file's defaults.
    std::fs::write(
        &file,
        "[model]\nmodel = \"tiny-cnn\"\n[optim]\nepochs = 2\nlr = 0.002\n[augment]\nflip = true\n",
    )
    .unwrap();
    let sectioned = parse(&["--config", f, "--epochs", "3"]).unwrap().config;
    assert_eq!(sectioned.optim, args.optim);
    assert_eq!(sectioned.augment, args.augment);
    let layered = parse(&["--preset", "fast", "--config", f, "--lr", "0.3"])
        .unwrap()
        .config;
    assert_eq!(
        (
            layered.model.model.as_str(),
            layered.optim.epochs,
            layered.optim.lr
        ),
        ("tiny-cnn", 2.0, 0.3)
    );
    assert_eq!(
        layered.optim.batch_size, 512,
        "the preset's batch size stays"
    );

    std::fs::write(&file, "epochs = 2\nlearning_rate = 0.1\n").unwrap();
    let err = parse(&["--config", f]).unwrap_err().to_string();
    assert!(
        err.contains("unknown option `learning_rate`") && err.contains("run.toml"),
        "{err}"
    );
    std::fs::write(&file, "epochs = [2]\n").unwrap();
    assert!(parse(&["--config", f]).is_err());

    let preset = parse(&["--preset", "seed004-tiny-cnn", "--epochs", "1"])
        .unwrap()
        .config;
    assert_eq!(
        (
            preset.model.model.as_str(),
            preset.optim.epochs,
            preset.schedule.gamma
        ),
        ("tiny-cnn", 1.0, 0.995)
    );
    assert_eq!(preset.stop.patience, Some(5));
    // An unknown preset is refused with the list of presets, from the same list the code
    // uses, as --help shows it.
    let err = parse(&["--preset", "seed999"]).unwrap_err().to_string();
    let help = TrainArgs::augment_args(clap::Command::new("train"))
        .render_help()
        .to_string();
    for (name, _) in PRESETS {
        assert!(err.contains(name), "{name} missing from: {err}");
        assert!(help.contains(name), "{name} missing from --help");
    }
    assert!(err.contains("seed999"), "{err}");
    // Every preset parses and names a buildable model; its options survive the round trip
    // through the run folder's config.toml.
    for (name, _) in PRESETS {
        let args = parse(&["--preset", name]).unwrap().config;
        model::ModelConfig::from_name(&args.model.model, &args.model.options).unwrap();
        std::fs::write(&file, args.to_toml().unwrap()).unwrap();
        let again = parse(&["--config", f]).unwrap().config;
        assert_eq!(again, args, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn early_stopping_and_divergence_stop_the_run_clearly() {
    let runs = temp("stop");
    let data = sample();
    let base = [
        "--model",
        "tiny-cnn",
        "--batch-size",
        "32",
        "--limit",
        "128",
        "--val-ratio",
        "0.25",
        "--backend",
        "flex",
        "--data-dir",
        data.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    // A learning rate too small to change the validation accuracy of an MLP (no batch-norm
    // statistics to move): patience 2 stops after epoch 3.
    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "--model",
        "mlp",
        "--epochs",
        "10",
        "--lr",
        "1e-9",
        "--patience",
        "2",
        "--name",
        "patient",
    ]);
    let outcome = train::run(&parse(&args).unwrap()).unwrap();
    assert_eq!(outcome.epochs.len(), 3);
    let reason = outcome.stopped_early.unwrap();
    assert!(
        matches!(reason, train::StopReason::Patience { epoch: 3, .. }),
        "{reason:?}"
    );
    assert!(reason.to_string().contains("early stop after epoch 3"));

    // --min-delta: gains smaller than 0.9 do not count, so patience 1 stops after epoch 2,
    // and the best checkpoint is still the epoch with the best validation accuracy.
    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "--epochs",
        "6",
        "--lr",
        "0.003",
        "--patience",
        "1",
        "--min-delta",
        "0.9",
    ]);
    args.extend(["--name", "delta"]);
    let outcome = train::run(&parse(&args).unwrap()).unwrap();
    assert_eq!(outcome.epochs.len(), 2);
    let summary = std::fs::read_to_string(runs.join("delta/summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let best = outcome
        .epochs
        .iter()
        .map(|e| e.val.unwrap().1)
        .fold(0.0, f64::max);
    assert_eq!(summary["best_val_accuracy"].as_f64().unwrap(), best);
    assert_eq!(summary["tested_weights"], "best-validation");

    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "--model",
        "mlp",
        "--epochs",
        "2",
        "--optimizer",
        "sgd",
        "--lr",
        "1e12",
        "--name",
        "diverge",
    ]);
    let err = train::run(&parse(&args).unwrap()).unwrap_err().to_string();
    assert!(
        err.contains("training diverged") && err.contains("epoch 1, steps 1–"),
        "{err}"
    );
    assert!(err.contains("no checkpoint was saved yet"), "{err}");
    std::fs::remove_dir_all(&runs).unwrap();
}

#[test]
fn a_killed_run_resumes_to_the_same_result() {
    let runs = temp("resume");
    let data = sample();
    let common = [
        "train",
        "--model",
        "tiny-cnn",
        "--epochs",
        "8",
        "--batch-size",
        "32",
        "--limit",
        "320",
        "--val-ratio",
        "0.2",
        "--crop-padding",
        "4",
        "--flip",
        "--optimizer",
        "sgd",
        "--lr",
        "0.02",
        "--schedule",
        "cosine",
        // The lookahead average restarts from the loaded network: exact at an epoch's end.
        "--lookahead-every",
        "3",
        "--lookahead-from",
        "2",
        "--backend",
        "flex",
        "--data-dir",
        data.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    let trainer = |extra: &[&str]| {
        let mut c = Process::new(env!("CARGO_BIN_EXE_trainer"));
        c.args(common)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    assert!(trainer(&["--name", "whole"]).status().unwrap().success());

    let mut child = trainer(&["--name", "killed"]).spawn().unwrap();
    let state = runs.join("killed/state.json");
    let start = Instant::now();
    loop {
        let epoch = std::fs::read_to_string(&state)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["epoch"].as_u64());
        if epoch.is_some_and(|e| e >= 2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no epoch finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(
        saved["epoch"].as_u64().unwrap() < 8,
        "the run finished before it was killed"
    );
    // state.json holds the configuration the saved epoch was trained with, and --resume
    // continues from it: config.toml is only the readable copy.
    assert_eq!(saved["config"]["optim"]["lr"], 0.02, "{saved}");
    assert_eq!(saved["config"]["model"]["model"], "tiny-cnn", "{saved}");
    std::fs::write(runs.join("killed/config.toml"), "not = [toml").unwrap();
    let resumed = Process::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["train", "--resume", runs.join("killed").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("Resuming"));

    let read =
        |name: &str, file: &str| std::fs::read_to_string(runs.join(name).join(file)).unwrap();
    assert_eq!(read("killed", "metrics.csv").lines().count(), 9);
    let strip_time = |csv: String| -> Vec<String> {
        csv.lines()
            .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(
        strip_time(read("killed", "metrics.csv")),
        strip_time(read("whole", "metrics.csv"))
    );
    let test_acc = |name: &str| {
        serde_json::from_str::<serde_json::Value>(&read(name, "summary.json")).unwrap()["test_accuracy"].clone()
    };
    assert_eq!(test_acc("killed"), test_acc("whole"));
    std::fs::remove_dir_all(&runs).unwrap();
}

/// Runs `--preset airbench94` on 300 sample images in batches of 100 with `extra` options;
/// returns the run folder and the outcome.
fn airbench(runs: &Path, name: &str, extra: &[&str]) -> (std::path::PathBuf, train::TrainOutcome) {
    let data = sample();
    let mut args = vec![
        "--preset",
        "airbench94",
        "--batch-size",
        "100",
        "--limit",
        "300",
        "--backend",
        "flex",
        "--data-dir",
        data.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    let outcome = train::run(&parse(&args).unwrap()).unwrap();
    (runs.join(name), outcome)
}

/// The float tensor `name` of a checkpoint file.
fn tensor(file: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(file).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = tensors.tensor(name).unwrap();
    assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
    view.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn tensor_names(file: &Path) -> Vec<String> {
    let bytes = std::fs::read(file).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    tensors.names().into_iter().map(String::from).collect()
}

#[test]
fn the_airbench94_preset_trains_as_its_original() {
    let runs = temp("airbench");
    // 1.5 epochs of 3 full batches (the preset drops an incomplete last one): 3 + 2 steps.
    let (dir, outcome) = airbench(&runs, "airbench", &["--epochs", "1.5"]);
    assert_eq!(outcome.epochs.len(), 2);
    assert_eq!(outcome.summary.steps, 5);
    let last = dir.join("last.safetensors");
    let names = tensor_names(&last);
    // Six batch norms whose scale never left 1; their shifts did move.
    let gammas: Vec<&String> = names.iter().filter(|n| n.ends_with("gamma")).collect();
    assert_eq!(gammas.len(), 6, "{names:?}");
    for name in gammas {
        assert!(
            tensor(&last, name).iter().all(|&g| g == 1.0),
            "{name} was trained"
        );
        let beta = tensor(&last, &name.replace("gamma", "beta"));
        assert!(beta.iter().any(|&b| b != 0.0), "{name}'s shift never moved");
    }
    // The whitening filters are still ± the same 12: training would have broken the symmetry.
    let whiten = names.iter().find(|n| n.ends_with("whiten.weight")).unwrap();
    let w = tensor(&last, whiten);
    assert_eq!(w.len(), 24 * 12);
    let (plus, minus) = w.split_at(12 * 12);
    assert!(plus.iter().zip(minus).all(|(a, b)| *a == -*b));
    assert!(
        plus.iter().any(|&v| v.abs() > 1.0),
        "set from the images, not random"
    );
    // Without a validation split the final weights are tested, and nothing is called
    // validation: no best checkpoint, no best validation accuracy.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["test_tta"], "mirror-translate");
    assert_eq!(summary["tested_weights"], "final");
    assert!(summary["best_val_accuracy"].is_null() && summary["best_epoch"].is_null());
    assert!(!dir.join("best.safetensors").exists());
    let checkpoint = model::Checkpoint::from_bytes(
        &std::fs::read(&last).unwrap(),
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    let test = std::sync::Arc::new(trainer::data::CifarSet::test(&sample()).unwrap());
    let tested = trainer::eval::evaluate_with(
        &checkpoint.model,
        &test,
        checkpoint.info.normalization,
        &burn::tensor::Device::flex(),
        256,
        trainer::eval::Tta::MirrorTranslate,
    )
    .unwrap();
    assert_eq!(summary["test_accuracy"], tested.accuracy());
    std::fs::remove_dir_all(&runs).unwrap();
}
