//! `trainer viz` on the committed, trained weights and the committed sample.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use clap::Parser;
use common::{sample, temp};
use model::{Checkpoint, IMAGE_VALUES};
use trainer::cli::{Cli, Command};
use trainer::cmd::{eval, report, viz as viz_cmd};
use trainer::data::CifarSet;
use trainer::viz;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn parse(args: &[&str]) -> Command {
    Cli::try_parse_from(std::iter::once("trainer").chain(args.iter().copied()))
        .unwrap()
        .command
        .unwrap()
}

fn checkpoint(name: &str) -> Checkpoint {
    let bytes = std::fs::read(format!("{ROOT}/weights/{name}.safetensors")).unwrap();
    Checkpoint::from_bytes(&bytes, &Device::flex()).unwrap()
}

#[test]
fn parameters_are_listed_without_running_statistics() {
    let tiny = checkpoint("tiny-cnn");
    let params = viz::params(&tiny.model).unwrap();
    let total: usize = params.iter().map(|p| p.values.len()).sum();
    assert_eq!(total, tiny.model.parameter_count());
    let kinds: Vec<&str> = params.iter().map(|p| p.kind.as_str()).collect();
    for kind in ["weight", "bias", "gamma", "beta"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    assert!(
        params
            .iter()
            .all(|p| p.values.iter().all(|v| v.is_finite()))
    );
    let first = &params.iter().find(|p| p.shape.len() == 4).unwrap();
    assert_eq!(first.shape, vec![32, 3, 3, 3]);
}

#[test]
fn the_saliency_gradient_matches_finite_differences() {
    let basic = checkpoint("basic-cnn");
    let test = CifarSet::test(&sample()).unwrap();
    let device = Device::flex();
    let norm = basic.info.normalization;
    let pixels = test.image(3);
    let (class, gradient) = viz::input_gradient(&basic.model, norm, pixels, &device).unwrap();
    assert_eq!(gradient.len(), IMAGE_VALUES);
    let mut input = vec![0f32; IMAGE_VALUES];
    norm.normalize_into(pixels, &mut input);
    let score = |values: &[f32]| -> f32 {
        let x = Tensor::<4>::from_data(TensorData::new(values.to_vec(), [1, 3, 32, 32]), &device);
        basic
            .model
            .forward(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()[class]
    };
    // The three most sensitive inputs: a central difference agrees with the gradient.
    let mut order: Vec<usize> = (0..IMAGE_VALUES).collect();
    order.sort_by(|&a, &b| gradient[b].abs().total_cmp(&gradient[a].abs()));
    for &i in &order[..3] {
        let eps = 1e-2;
        let (mut up, mut down) = (input.clone(), input.clone());
        up[i] += eps;
        down[i] -= eps;
        let numeric = (score(&up) - score(&down)) / (2.0 * eps);
        assert!(
            (numeric - gradient[i]).abs() <= 0.05 * gradient[i].abs(),
            "input {i}: finite difference {numeric}, gradient {}",
            gradient[i]
        );
    }
}

#[test]
fn viz_writes_every_picture() {
    let out = temp("viz");
    let data = sample();
    let args = [
        "viz",
        "--checkpoint",
        "../weights/tiny-cnn.safetensors",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--count",
        "6",
    ];
    let Command::Viz(a) = parse(&args) else {
        panic!()
    };
    let written = viz_cmd::run(&a).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for name in [
        "distributions.png",
        "filters-layers.0.conv.png",
        "filters-layers.2.conv.png",
        "feature-maps.png",
        "gradcam.png",
        "saliency.png",
    ] {
        assert!(names.contains(&name.to_string()), "{names:?}");
        let png = image::open(out.join(name)).unwrap();
        assert!(png.width() >= 600 && png.height() >= 200, "{name}");
    }
}

#[test]
fn the_landscape_centre_is_the_models_loss_and_the_minimum_of_the_grid() {
    let basic = checkpoint("basic-cnn");
    let device = Device::flex();
    let test = CifarSet::test(&sample()).unwrap();
    let images = std::sync::Arc::new(test.subset(&(0..100).collect::<Vec<_>>()));
    let norm = basic.info.normalization;
    let land = viz::landscape(&basic.model, norm, &images, 5, 1.0, 7, &device).unwrap();
    assert_eq!(land.coords, vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
    let direct = trainer::eval::evaluate(&basic.model, &images, norm, &device, 100)
        .unwrap()
        .loss as f32;
    assert!(
        (land.centre() - direct).abs() < 1e-4,
        "centre {} vs the model's loss {direct}",
        land.centre()
    );
    // Trained weights sit in a basin: every other grid point has a higher loss.
    let lowest = land.loss.iter().copied().fold(f32::MAX, f32::min);
    assert_eq!(lowest, land.centre());
    assert!(land.loss[0] > 2.0 * land.centre(), "{:?}", land.loss);
    assert!(viz::landscape(&basic.model, norm, &images, 4, 1.0, 7, &device).is_err());
}

#[test]
fn report_gathers_a_run_into_one_self_contained_page() {
    let root = temp("report");
    let data = sample();
    let data = data.to_str().unwrap();
    let runs = root.to_str().unwrap();
    let train_args = [
        "--model",
        "tiny-cnn",
        "--epochs",
        "1",
        "--data-dir",
        data,
        "--runs-dir",
        runs,
        "--name",
        "tiny",
        "--backend",
        "flex",
    ];
    let job = trainer::train::TrainArgs::parse_job(&train_args).unwrap();
    let outcome = trainer::train::run(&job).unwrap();
    let run = outcome.run_dir.to_str().unwrap();
    let Command::Eval(a) = parse(&["eval", "-c", run, "--data-dir", data, "--backend", "flex"])
    else {
        panic!()
    };
    eval::run(&a).unwrap();
    let Command::Viz(a) = parse(&["viz", "-c", run, "--data-dir", data, "--count", "4"]) else {
        panic!()
    };
    let pictures = viz_cmd::run(&a).unwrap().len();
    let Command::Report(a) = parse(&["report", run]) else {
        panic!()
    };
    let page = std::fs::read_to_string(report::run(&a).unwrap()).unwrap();
    // curves + confusion + misclassified + every viz picture, all embedded.
    assert_eq!(
        page.matches("src=\"data:image/png;base64,").count(),
        3 + pictures
    );
    assert!(
        !page.contains("src=\"http"),
        "nothing loaded from elsewhere"
    );
    assert!(page.contains("<th>precision</th>") && page.contains("<td>airplane</td>"));
    let accuracy = format!("{:.2}%", 100.0 * outcome.test.accuracy());
    assert!(
        page.contains(&accuracy),
        "summary with the test accuracy {accuracy}"
    );
    assert!(
        page.contains("model = &quot;tiny-cnn&quot;"),
        "the configuration"
    );
    let Command::Report(a) = parse(&["report", data]) else {
        panic!()
    };
    assert!(
        report::run(&a)
            .unwrap_err()
            .to_string()
            .contains("not a run folder")
    );
}
