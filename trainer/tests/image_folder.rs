//! Image-folder datasets on real CIFAR images (the committed sample written out as PNG and
//! JPEG files): read, cached, refreshed, refused when wrong, and trained on.

mod common;

use std::path::Path;

use common::{sample, temp};
use image::{ImageFormat, RgbImage};
use model::preprocess::{Framing, rgb_picture};
use model::{CLASSES, Checkpoint, IMAGE_VALUES};
use trainer::args::{BackendArg, CheckpointArg, DataArg, OutputArg};
use trainer::backend::Backend;
use trainer::cmd::data::{DataInfoArgs, info};
use trainer::cmd::eval::EvalArgs;
use trainer::cmd::export::{self, ExportArgs, ExportFormat};
use trainer::cmd::import::{self, ImportArgs};
use trainer::cmd::predict::{self, PredictArgs};
use trainer::data::folder::{cached_batches, is_image_folder};
use trainer::data::{CifarSet, locate};
use trainer::train::config::ModelArgs;
use trainer::train::{self, TrainArgs, TrainJob};

/// Writes image `i` of `set` as `dir/<class>/<i>.<ext>`, scaled to `w × h`.
fn save(set: &CifarSet, i: usize, dir: &Path, w: u32, h: u32, format: ImageFormat) {
    let pixels = set.image(i);
    let image = RgbImage::from_fn(32, 32, |x, y| {
        let p = (y * 32 + x) as usize;
        image::Rgb([pixels[p], pixels[1024 + p], pixels[2048 + p]])
    });
    let image = image::imageops::resize(&image, w, h, image::imageops::FilterType::Triangle);
    let ext = if format == ImageFormat::Png {
        "png"
    } else {
        "jpg"
    };
    let path = dir
        .join(CLASSES[set.labels[i] as usize])
        .join(format!("{i:04}.{ext}"));
    image.save_with_format(path, format).unwrap();
}

#[test]
fn an_image_folder_is_read_once_cached_checked_and_trained_on() {
    let set = CifarSet::test(&sample()).unwrap();
    let root = temp("image-folder");
    for split in ["train", "test"] {
        for class in CLASSES {
            std::fs::create_dir_all(root.join(split).join(class)).unwrap();
        }
    }
    // 60 training images as lossless 32 × 32 PNG, 30 test images as 64 × 48 JPEG.
    for i in 0..60 {
        save(&set, i, &root.join("train"), 32, 32, ImageFormat::Png);
    }
    for i in 60..90 {
        save(&set, i, &root.join("test"), 64, 48, ImageFormat::Jpeg);
    }
    std::fs::write(root.join("train/cat/broken.jpg"), b"not really a JPEG").unwrap();
    assert!(is_image_folder(&root));

    let (cache, info) = cached_batches(&root, false).unwrap();
    assert_eq!(info.bad.len(), 1);
    assert!(
        info.bad[0].file.ends_with("broken.jpg") && info.bad[0].reason.contains("not an image"),
        "{:?}",
        info.bad
    );
    let train = CifarSet::train(&cache).unwrap();
    let test = CifarSet::test(&cache).unwrap();
    assert_eq!((train.len(), test.len()), (60, 30));
    // The classes interleaved (the first file of each class in CIFAR-10's alphabetical
    // order, then the second, …), files by name; 32 × 32 PNGs are kept exactly.
    let interleaved = |images: std::ops::Range<usize>| {
        let rank = |i: usize| {
            images
                .clone()
                .filter(|&j| j < i && set.labels[j] == set.labels[i])
                .count()
        };
        let mut order: Vec<usize> = images.clone().collect();
        order.sort_by_key(|&i| (rank(i), set.labels[i]));
        order
    };
    let order = interleaved(0..60);
    for (k, &i) in order.iter().enumerate() {
        assert_eq!(train.labels[k], set.labels[i]);
        assert_eq!(train.image(k), set.image(i), "image {i}");
    }
    assert_eq!(info.sizes.max, (64, 48));
    assert_eq!(info.sizes.min, (32, 32));
    // The 64 × 48 JPEGs seen as their centre square: close to the originals.
    let sorted = interleaved(60..90);
    let error: f64 = sorted
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let (a, b) = (test.image(k), set.image(i));
            a.iter()
                .zip(b)
                .map(|(x, y)| (*x as f64 - *y as f64).abs())
                .sum::<f64>()
        })
        .sum::<f64>()
        / (30 * IMAGE_VALUES) as f64;
    assert!(error < 40.0, "mean error {error} per byte");

    // The second time, the cache is used as it is; a changed folder rebuilds it.
    let batch = cache.join("data_batch_1.bin");
    let written = std::fs::metadata(&batch).unwrap().modified().unwrap();
    assert_eq!(locate::find(Some(&root)).unwrap(), cache);
    assert_eq!(
        std::fs::metadata(&batch).unwrap().modified().unwrap(),
        written
    );
    std::fs::remove_file(root.join("train/cat/broken.jpg")).unwrap();
    let (_, info) = cached_batches(&root, true).unwrap();
    assert!(info.bad.is_empty());
    assert_eq!(CifarSet::train(&cache).unwrap().len(), 60);

    // `--strict` refuses unusable files, naming them.
    std::fs::write(root.join("test/dog/notes.txt"), b"taken on holiday").unwrap();
    let err = format!("{:#}", cached_batches(&root, true).unwrap_err());
    assert!(
        err.contains("notes.txt") && err.contains("--strict"),
        "{err}"
    );
    let report = info_report(&root);
    assert!(
        report.contains("image folder, 10 classes") && report.contains("notes.txt"),
        "{report}"
    );
    assert!(
        report.contains("total") && report.contains("60"),
        "{report}"
    );

    // A training run reads it through --data-dir like the binary batches.
    let job = tiny_cnn_job(&root, 1);
    let outcome = train::run(&job).unwrap();
    assert_eq!(outcome.test.total(), 30);

    // A `val/` folder becomes the validation set, instead of a share of train/.
    for class in CLASSES {
        std::fs::create_dir_all(root.join("val").join(class)).unwrap();
    }
    for i in 90..110 {
        save(&set, i, &root.join("val"), 40, 40, ImageFormat::Png);
    }
    let (cache, info) = cached_batches(&root, false).unwrap();
    assert_eq!(info.counts["val"].iter().sum::<usize>(), 20);
    assert_eq!(CifarSet::val(&cache).unwrap().unwrap().len(), 20);
    assert!(info_report(&root).contains("val"), "{}", info_report(&root));
    let outcome = train::run(&job).unwrap();
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(outcome.run_dir.join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            summary["train_images"].as_u64(),
            summary["val_images"].as_u64()
        ),
        (Some(60), Some(20)),
        "{summary}"
    );
    // Removed again: no validation batch is left behind.
    std::fs::remove_dir_all(root.join("val")).unwrap();
    let (cache, _) = cached_batches(&root, false).unwrap();
    assert!(CifarSet::val(&cache).unwrap().is_none());

    // train/ and test/ must have the same class folders.
    std::fs::rename(root.join("train/cat"), root.join("train/kitten")).unwrap();
    let err = format!("{:#}", cached_batches(&root, false).unwrap_err());
    assert!(
        err.contains("kitten") && err.contains("same classes"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// Writes image `i` of `set` as a 32 × 32 PNG `dir/<name>/<i>.png`.
/// `trainer eval` of `checkpoint` on the data in `data`, on Flex, writing into `out`.
fn evaluate(checkpoint: &Path, data: &Path, out: &Path) -> anyhow::Result<()> {
    trainer::cmd::eval::run(&EvalArgs {
        checkpoint: CheckpointArg {
            checkpoint: checkpoint.to_path_buf(),
        },
        data: DataArg {
            data_dir: Some(data.to_path_buf()),
        },
        backend: BackendArg {
            backend: Backend::Flex,
        },
        batch_size: 64,
        tta: Default::default(),
        out: OutputArg {
            out: Some(out.to_path_buf()),
        },
    })
    .map(drop)
}

fn save_as(set: &CifarSet, i: usize, dir: &Path, name: &str) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    rgb_picture(set.image(i))
        .save_with_format(dir.join(name).join(format!("{i:04}.png")), ImageFormat::Png)
        .unwrap();
}

#[test]
fn a_folder_of_other_classes_trains_a_network_that_names_them() {
    // Three classes of the sample under other names: cats, dogs and ships become kitty, puppy
    // and "boat,ship" (so the folders' sorted order is not CIFAR-10's, and a class name holds
    // the CSV files' separator).
    let renamed = [(3u8, "kitty"), (5, "puppy"), (8, "boat,ship")];
    let root = temp("other-classes");
    for (split, set) in [
        ("train", CifarSet::train(&sample()).unwrap()),
        ("test", CifarSet::test(&sample()).unwrap()),
    ] {
        for i in 0..set.len() {
            if let Some((_, name)) = renamed.iter().find(|(l, _)| *l == set.labels[i]) {
                save_as(&set, i, &root.join(split), name);
            }
        }
    }
    let names = ["boat,ship", "kitty", "puppy"].map(String::from).to_vec();
    let (cache, info) = cached_batches(&root, true).unwrap();
    assert_eq!(info.classes, names);
    let test = CifarSet::test(&cache).unwrap();
    assert_eq!(test.classes, names);
    assert!(
        test.labels.iter().all(|&l| l < 3) && test.len() > 30,
        "{}",
        test.len()
    );
    assert!(
        info_report(&root).contains("3 classes"),
        "{}",
        info_report(&root)
    );

    // Trained on it, the network has three outputs, and the checkpoint names the classes.
    let job = tiny_cnn_job(&root, 2);
    let outcome = train::run(&job).unwrap();
    assert_eq!(outcome.test.total(), test.len());
    assert_eq!(outcome.test.classes, names);
    assert_eq!(outcome.test.confusion.len(), 3);
    // Better than always answering the largest class (chance is about a third).
    let largest = outcome.test.per_class().iter().map(|c| c.1).max().unwrap();
    assert!(
        outcome.test.correct() > largest,
        "{} correct of {}",
        outcome.test.correct(),
        test.len()
    );
    let checkpoint = outcome.run_dir.join("best.safetensors");
    let (config, stored) = Checkpoint::read_header(&std::fs::read(&checkpoint).unwrap()).unwrap();
    assert_eq!((config.classes(), &stored.classes), (3, &names));

    // Predictions rank the folder's three classes, by their names.
    let ship = (0..test.len()).find(|&i| test.labels[i] == 0).unwrap();
    let photo = root.join("ship.png");
    rgb_picture(test.image(ship)).save(&photo).unwrap();
    let predicted = predict::run(&PredictArgs {
        checkpoint: CheckpointArg {
            checkpoint: checkpoint.clone(),
        },
        images: vec![photo],
        framing: Framing::Crop,
        top: 5,
        backend: BackendArg {
            backend: Backend::Flex,
        },
    })
    .unwrap()
    .answered;
    let mut ranked: Vec<&str> = predicted[0].top.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(ranked.len(), 3, "{ranked:?}");
    ranked.sort();
    assert_eq!(ranked, ["boat,ship", "kitty", "puppy"]);

    // Evaluated, the class names survive per_class.csv and the run's report reads them back.
    let run_eval = outcome.run_dir.join("eval");
    evaluate(&checkpoint, &root, &run_eval).unwrap();
    let mut per_class = csv::Reader::from_path(run_eval.join("per_class.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = per_class.records().map(Result::unwrap).collect();
    assert_eq!(&rows[0][0], "boat,ship");
    assert!(rows.iter().all(|r| r.len() == 5), "{rows:?}");
    let html = trainer::cmd::report::run(&trainer::cmd::report::ReportArgs {
        run: outcome.run_dir.clone(),
        out: None,
    })
    .unwrap();
    let html = std::fs::read_to_string(html).unwrap();
    assert!(html.contains("<td>boat,ship</td>"), "{html}");

    // Exported to PyTorch and imported back, it keeps its three classes and their names (the
    // state dict's metadata carries them).
    let exported = export::run(&ExportArgs {
        checkpoint: CheckpointArg {
            checkpoint: checkpoint.clone(),
        },
        format: ExportFormat::Pytorch,
        out: Some(root.join("three.pytorch.safetensors")),
    })
    .unwrap();
    let imported = import::run(&ImportArgs {
        pytorch: exported,
        model: ModelArgs {
            model: "tiny-cnn".into(),
            ..Default::default()
        },
        mean: None,
        std: None,
        classes: None,
        out: root.join("imported.safetensors"),
    })
    .unwrap();
    assert_eq!(imported.info.classes, names);
    assert_eq!(imported.model.config().classes(), 3);

    // A CIFAR-10 network cannot be evaluated on these classes: the error says why.
    let err = format!(
        "{:#}",
        evaluate(
            &sample().join("../../weights/tiny-cnn.safetensors"),
            &root,
            &root.join("eval"),
        )
        .unwrap_err()
    );
    assert!(
        err.contains("classifies [airplane") && err.contains("[boat,ship, kitty, puppy]"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// Training tiny-cnn on the folder `root` for `epochs` (batches of 16, on Flex), into
/// `root/runs`.
fn tiny_cnn_job(root: &Path, epochs: usize) -> TrainJob {
    let epochs = epochs.to_string();
    let runs = root.join("runs");
    TrainArgs::parse_job(&[
        "--model",
        "tiny-cnn",
        "--epochs",
        &epochs,
        "--batch-size",
        "16",
        "--backend",
        "flex",
        "--data-dir",
        root.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ])
    .unwrap()
}

fn info_report(dir: &Path) -> String {
    info(&DataInfoArgs {
        dir: dir.to_path_buf(),
        strict: false,
    })
    .unwrap()
}
