//! `trainer ship`, `trainer gradcam` and `trainer cam-eval` on the committed, trained weights.

mod common;

use std::path::Path;

use clap::Parser;
use common::{sample, temp};
use model::cam::CamMethod;
use model::checkpoint::Precision;
use model::manifest::Manifest;
use sha2::{Digest, Sha256};
use trainer::cli::{Cli, Command};
use trainer::cmd::{cam_eval, eval, gradcam, predict, ship};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn parse(args: &[&str]) -> Command {
    Cli::try_parse_from(std::iter::once("trainer").chain(args.iter().copied()))
        .unwrap()
        .command
        .unwrap()
}

#[test]
fn ship_records_measured_accuracy_size_and_hash() {
    let dir = temp("ship");
    let weights = dir.join("weights");
    let data = sample();
    let ship_with = |source: &str, name: &str, default: bool, extra: &[&str]| {
        let mut args = vec![
            "ship",
            "--checkpoint",
            source,
            "--name",
            name,
            "--trained",
            "test",
            "--weights-dir",
            weights.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--backend",
            "flex",
        ];
        if default {
            args.push("--default");
        }
        args.extend(extra);
        match parse(&args) {
            Command::Ship(a) => ship::run(&a).unwrap(),
            other => panic!("{other:?}"),
        }
    };
    let ship_one = |source: &str, name: &str, default: bool| ship_with(source, name, default, &[]);
    let tiny = format!("{ROOT}/weights/tiny-cnn.safetensors");
    let basic = format!("{ROOT}/weights/basic-cnn.safetensors");
    let first = ship_one(&tiny, "small", false);
    ship_one(&basic, "big", false);
    ship_one(&basic, "big", false);
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(weights.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest.default, "small",
        "the first shipped model is the default"
    );
    assert_eq!(
        manifest.models.len(),
        2,
        "shipping a name again replaces it"
    );
    let copied = std::fs::read(weights.join("small.safetensors")).unwrap();
    assert_eq!(copied, std::fs::read(&tiny).unwrap());
    assert_eq!(first.bytes, copied.len() as u64);
    assert_eq!(first.sha256, format!("{:x}", Sha256::digest(&copied)));
    assert!(first.gzip_bytes > 0 && first.gzip_bytes < first.bytes);
    assert_eq!(first.test_images, 200, "the sample's test batch");
    // The accuracy is the one `trainer eval` measures on the same images.
    let evaluated = match parse(&[
        "eval",
        "--checkpoint",
        &tiny,
        "--data-dir",
        data.to_str().unwrap(),
        "--backend",
        "flex",
        "--out",
        dir.join("eval").to_str().unwrap(),
    ]) {
        Command::Eval(a) => eval::run(&a).unwrap().0,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.test_accuracy, evaluated.accuracy());
    // The model card states what was measured, in its front matter and its text.
    let card = std::fs::read_to_string(weights.join("small.md")).unwrap();
    assert!(
        card.starts_with("---\nlicense: MIT OR Apache-2.0\n"),
        "{card}"
    );
    let value = format!("value: {:.4}", first.test_accuracy);
    let percent = format!("**{:.2} %**", 100.0 * first.test_accuracy);
    assert!(card.contains(&value) && card.contains(&percent), "{card}");
    assert!(
        card.contains(&first.sha256) && card.contains("| cat |"),
        "{card}"
    );
    // In f16: about half the bytes, the f16 file's accuracy measured next to the f32 one's.
    let big = ship_one(&basic, "big", false);
    let half = ship_with(&basic, "half", false, &["--f16"]);
    assert_eq!(half.precision, Precision::F16);
    assert_eq!(half.f32_test_accuracy, Some(big.test_accuracy));
    assert!((half.test_accuracy - big.test_accuracy).abs() <= 0.001);
    let ratio = half.bytes as f64 / big.bytes as f64;
    assert!((0.49..0.52).contains(&ratio), "{ratio}");
    let stored = std::fs::read(weights.join("half.safetensors")).unwrap();
    assert_eq!(half.sha256, format!("{:x}", Sha256::digest(&stored)));
    let card = std::fs::read_to_string(weights.join("half.md")).unwrap();
    assert!(card.contains("f16"), "{card}");
    ship_one(&basic, "big", true);
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(weights.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest.default, "big");
    let bad = parse(&["ship", "-c", &tiny, "--name", "../x", "--trained", "t"]);
    let Command::Ship(bad) = bad else { panic!() };
    assert!(ship::run(&bad).unwrap_err().to_string().contains("--name"));
}

#[test]
fn gradcam_writes_overlays_of_the_chosen_class_and_method() {
    let out = temp("gradcam");
    let cat = format!("{ROOT}/docs/photos/chelsea-cat.png");
    let truck = format!("{ROOT}/web-demo/gallery/00504-truck.png");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "gradcam",
            "--checkpoint",
            "../weights/basic-cnn.safetensors",
            "--out",
            out.to_str().unwrap(),
            &cat,
            &truck,
        ];
        args.extend_from_slice(extra);
        match parse(&args) {
            Command::Gradcam(a) => gradcam::run(&a).map(|explained| explained.written),
            other => panic!("{other:?}"),
        }
    };
    let written = run(&[]).unwrap();
    assert_eq!(written.len(), 2);
    assert_eq!(written[1].predicted.0, "truck");
    assert_eq!(
        written[1].class, "truck",
        "explains the predicted class by default"
    );
    let predicted = image::open(&written[0].png).unwrap().to_rgb8();
    assert_eq!(predicted.dimensions(), (256, 256));
    let plain = model::preprocess::square_view(
        &image::open(&cat).unwrap(),
        256,
        model::preprocess::Framing::Crop,
    );
    assert_ne!(predicted, plain, "the heat map is drawn over the photo");

    let chosen = run(&["--class", "frog", "--opacity", "0.8"]).unwrap();
    assert_eq!(chosen[0].class, "frog");
    assert_eq!(chosen[0].predicted, written[0].predicted);
    let frog = image::open(&chosen[0].png).unwrap().to_rgb8();
    assert_ne!(frog, predicted, "another class, another map");
    assert!(Path::new(&chosen[1].png).exists());

    // Another method, and all of them side by side.
    let hires = run(&["--method", "HiResCAM", "--size", "64"]).unwrap();
    assert!(
        hires[0].png.ends_with("chelsea-cat-hirescam.png"),
        "{:?}",
        hires[0].png
    );
    assert_eq!(hires[0].predicted, written[0].predicted);
    let all = run(&["--method", "all", "--size", "64"]).unwrap();
    assert!(all[1].png.ends_with("00504-truck-all.png"));
    let grid = image::open(&all[1].png).unwrap().to_rgb8();
    // Four columns of 64-pixel pictures, two rows (the view and seven methods).
    assert_eq!(grid.dimensions(), (10 + 4 * 74, 40 + 2 * 100));
    let err = run(&["--method", "saliency"]).unwrap_err().to_string();
    assert!(err.contains("unknown CAM method `saliency`"), "{err}");

    // A wide picture: the truck between two wide white margins. Cropped, the network sees
    // only white; padded, it sees the whole strip (and the overlay at opacity 0 is exactly
    // that view).
    let truck_image = image::open(&truck).unwrap().to_rgb8();
    let mut wide = image::RgbImage::from_pixel(160, 32, image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut wide, &truck_image, 0, 0);
    let wide_path = out.join("wide-truck.png");
    wide.save(&wide_path).unwrap();
    let wide_path = wide_path.to_str().unwrap();
    let framed = |framing: &str| {
        let args = [
            "gradcam",
            "-c",
            "../weights/basic-cnn.safetensors",
            "--out",
            out.to_str().unwrap(),
            "--opacity",
            "0",
            "--size",
            "64",
            "--framing",
            framing,
            wide_path,
        ];
        let Command::Gradcam(a) = parse(&args) else {
            panic!()
        };
        let written = gradcam::run(&a).unwrap().written.remove(0);
        (
            written.predicted,
            image::open(&written.png).unwrap().to_rgb8(),
        )
    };
    let wide = image::DynamicImage::ImageRgb8(wide);
    for framing in [
        model::preprocess::Framing::Crop,
        model::preprocess::Framing::Pad,
    ] {
        let (_, drawn) = framed(framing.name());
        assert_eq!(
            drawn,
            model::preprocess::square_view(&wide, 64, framing),
            "{framing:?}"
        );
    }
    let (cropped, _) = framed("crop");
    let (padded, _) = framed("pad");
    assert_ne!(cropped, padded, "the network saw different pictures");
    let predicted = |framing: &str| {
        let args = [
            "predict",
            "-c",
            "../weights/basic-cnn.safetensors",
            "--framing",
            framing,
            wide_path,
        ];
        let Command::Predict(a) = parse(&args) else {
            panic!()
        };
        predict::run(&a).unwrap().answered.remove(0).top[0].clone()
    };
    for (framing, gradcam) in [("pad", &padded), ("crop", &cropped)] {
        let (class, p) = predicted(framing);
        assert_eq!(&class, &gradcam.0, "{framing}");
        assert!(
            (p - gradcam.1).abs() < 1e-4,
            "{framing}: {p} vs {}",
            gradcam.1
        );
    }

    let err = run(&["--class", "unicorn"]).unwrap_err().to_string();
    assert!(err.contains("unknown class `unicorn`"), "{err}");
    let out_dir = out.to_str().unwrap();
    let mut args = vec![
        "gradcam",
        "-c",
        "../weights/basic-cnn.safetensors",
        "--out",
        out_dir,
    ];
    let text = format!("{ROOT}/README.md");
    args.push(&text);
    let Command::Gradcam(a) = parse(&args) else {
        panic!()
    };
    let explained = gradcam::run(&a).unwrap();
    assert!(explained.written.is_empty());
    let refused = &explained.refused[0];
    assert!(
        refused.path.ends_with("README.md") && refused.reason.contains("not an image"),
        "{refused}"
    );
}

#[test]
fn cam_eval_ranks_the_methods_by_faithfulness() {
    let out = temp("cam-eval");
    let data = sample();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "cam-eval",
            "-c",
            "../weights/basic-cnn.safetensors",
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        match parse(&args) {
            Command::CamEval(a) => cam_eval::run(&a),
            other => panic!("{other:?}"),
        }
    };
    let result = run(&["--images", "12", "--methods", "gradcam,eigencam,layercam"]).unwrap();
    let ranking = &result.ranking;
    assert_eq!(ranking.len(), 3);
    assert!(
        ranking
            .windows(2)
            .all(|w| w[0].faithfulness.road() >= w[1].faithfulness.road()),
        "best first"
    );
    assert!(ranking.iter().all(|r| r.faithfulness.images == 12));
    // Grad-CAM is faithful to the trained network: removing the pixels it points at lowers
    // the class's probability more than removing the others.
    let grad_cam = ranking
        .iter()
        .find(|r| r.method == CamMethod::GradCam)
        .unwrap();
    let f = &grad_cam.faithfulness;
    assert!(f.road() > 0.0 && f.morf[3] < f.lerf[3], "{f:?}");
    assert!((0.0..=100.0).contains(&f.average_drop) && (0.0..=100.0).contains(&f.increase));

    let mut csv = csv::Reader::from_path(out.join("cam-eval.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(&rows[0][1], ranking[0].method.name());
    assert_eq!(csv.headers().unwrap().len(), 7 + 8);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cam-eval.json")).unwrap()).unwrap();
    assert_eq!(json["most_faithful"], ranking[0].method.name());
    assert_eq!(json["layer"], "conv3");
    assert!(image::open(out.join("cam-eval.png")).is_ok());
    let report = cam_eval::report(&result);
    assert!(
        report.contains("Grad-CAM") && report.contains("Eigen-CAM"),
        "{report}"
    );

    // --record writes the winner into the shipped model's manifest entry (here a copy).
    let weights = out.join("weights");
    std::fs::create_dir_all(&weights).unwrap();
    for file in ["manifest.json", "basic-cnn.safetensors"] {
        std::fs::copy(format!("{ROOT}/weights/{file}"), weights.join(file)).unwrap();
    }
    let weights_dir = weights.to_str().unwrap();
    let record_with = |name: &str, methods: &str| {
        let mut args = vec!["--images", "4", "--methods", methods];
        args.extend(["--weights-dir", weights_dir, "--record", name]);
        run(&args)
    };
    let record = |name: &str| record_with(name, "gradcam,hirescam,scorecam");
    let recorded = record("basic-cnn").unwrap();
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(weights.join("manifest.json")).unwrap())
            .unwrap();
    let explanation = manifest
        .get("basic-cnn")
        .unwrap()
        .explanation
        .clone()
        .unwrap();
    // The page's default: the most faithful single-pass method that explains a class;
    // Score-CAM (one pass per channel) is recorded beside it when it scored higher.
    let best = recorded
        .ranking
        .iter()
        .find(|r| r.method != CamMethod::ScoreCam)
        .unwrap();
    assert_eq!(explanation.method, best.method.name());
    assert_eq!(explanation.images, 4);
    assert!((explanation.road - best.faithfulness.road()).abs() < 1e-12);
    let top = &recorded.ranking[0];
    match &explanation.slower_but_better {
        Some(slower) => {
            assert_eq!(top.method, CamMethod::ScoreCam);
            assert_eq!(slower.method, "scorecam");
            assert!((slower.road - top.faithfulness.road()).abs() < 1e-12);
        }
        None => assert_ne!(top.method, CamMethod::ScoreCam),
    }
    let err = format!("{:#}", record_with("basic-cnn", "scorecam").unwrap_err());
    assert!(err.contains("single-pass"), "{err}");
    // Eigen-CAM ignores the class the page's picker asks about: never the default.
    let err = format!("{:#}", record_with("basic-cnn", "eigencam").unwrap_err());
    assert!(err.contains("explains a class"), "{err}");
    // Only for the file that was shipped under that name.
    let err = format!("{:#}", record("tiny-cnn").unwrap_err());
    assert!(err.contains("is not the shipped `tiny-cnn`"), "{err}");
    let err = format!("{:#}", record("nobody").unwrap_err());
    assert!(err.contains("no model named `nobody`"), "{err}");

    let err = run(&["--methods", "gradcam,nope"]).unwrap_err().to_string();
    assert!(err.contains("unknown CAM method `nope`"), "{err}");
    let err = run(&["--images", "0"]).unwrap_err().to_string();
    assert!(err.contains("--images"), "{err}");
}
