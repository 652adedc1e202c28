//! The `trainer` binary itself: help, the model list and clear failures.

use std::process::Command;

fn trainer(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn models_lists_every_network_with_its_parameter_count() {
    let (ok, out) = trainer(&["models"]);
    assert!(ok, "{out}");
    for (name, _) in model::registry::MODELS {
        assert!(
            out.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{out}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("basic-cnn") && l.contains("1147466")),
        "{out}"
    );
}

#[test]
fn help_explains_the_options() {
    let (ok, out) = trainer(&["train", "--help"]);
    assert!(ok);
    for option in [
        "--model",
        "--epochs",
        "--batch-size",
        "--lr",
        "--optimizer",
        "--weight-decay",
        "--val-ratio",
        "--seed",
        "--backend",
        "--data-dir",
    ] {
        assert!(out.contains(option), "{option} missing from help");
    }
}

#[test]
fn help_lists_the_presets_and_backends_the_code_knows() {
    use clap::ValueEnum;
    let backends: Vec<String> = trainer::backend::Backend::value_variants()
        .iter()
        .map(|b| b.to_string())
        .collect();
    for command in ["train", "eval", "predict", "gradcam", "bench", "lr-band"] {
        let (ok, out) = trainer(&[command, "--help"]);
        assert!(ok, "{out}");
        for backend in &backends {
            assert!(
                out.contains(&format!("- {backend}:")),
                "`{command} --help` misses the backend {backend}:\n{out}"
            );
        }
    }
    for command in ["train", "bench"] {
        let (_, out) = trainer(&[command, "--help"]);
        for name in trainer::train::config::preset_names() {
            assert!(
                out.contains(name),
                "`{command} --help` misses the preset {name}"
            );
        }
    }
}

#[test]
fn bad_input_fails_with_a_clear_message() {
    let (ok, out) = trainer(&["train", "--model", "resnet21", "--data-dir", "/nonexistent"]);
    assert!(!ok);
    assert!(out.contains("6n+2"), "{out}");
    let (ok, out) = trainer(&["train", "--data-dir", "/nonexistent/cifar"]);
    assert!(!ok);
    assert!(
        out.contains("--data-dir points at /nonexistent/cifar"),
        "{out}"
    );
    let (ok, out) = trainer(&["eval", "--checkpoint", "/nonexistent/best.safetensors"]);
    assert!(!ok);
    assert!(
        out.contains("cannot read checkpoint /nonexistent/best.safetensors"),
        "{out}"
    );
}

#[test]
fn choosing_the_backend_prints_only_its_own_lines() {
    // Without a display, asking wgpu's GL backend made Wayland's library print an error line.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args([
            "predict",
            "-c",
            &format!("{root}/weights/tiny-cnn.safetensors"),
            &format!("{root}/web-demo/gallery/00515-cat.png"),
        ])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("00515-cat.png"), "{stdout}");
    // Standard error is back after the probe: the choice is printed, nothing else.
    assert!(stderr.contains("Backend: "), "{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}
