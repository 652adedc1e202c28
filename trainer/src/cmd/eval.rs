//! `trainer eval`: a checkpoint's test-set report — accuracy, top-k, per-class precision,
//! recall and F1, the confusion matrix, the most confused pairs and the misclassified images.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::args::{BackendArg, CheckpointArg, DataArg, OutputArg};
use crate::data::CifarSet;
use crate::eval::{Evaluation, Tta, check_classes, evaluate_with};
use crate::io::write_atomic;
use crate::metrics::{ClassReport, ClassScores, class_report, most_confused};
use crate::plot;

/// Misclassified images shown in `misclassified.png`.
const GRID_IMAGES: usize = 36;

/// Options of `trainer eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub backend: BackendArg,
    /// Images per inference batch.
    #[arg(short, long, default_value_t = 256)]
    pub batch_size: usize,
    /// Test-time augmentation: average the logits over views of each image.
    #[arg(long, value_enum, default_value_t = Tta::None)]
    pub tta: Tta,
    #[command(flatten)]
    pub out: OutputArg,
}

/// Evaluates the checkpoint on the test set, writes the report files and returns the
/// evaluation and the printed report.
pub fn run(args: &EvalArgs) -> Result<(Evaluation, String)> {
    let (checkpoint, device) = args.checkpoint.load(args.backend)?;
    let dir = args.data.locate()?;
    let test = Arc::new(CifarSet::test(&dir)?);
    check_classes(&checkpoint.info.classes, &test)?;
    let result = evaluate_with(
        &checkpoint.model,
        &test,
        checkpoint.info.normalization,
        &device,
        args.batch_size.max(1),
        args.tta,
    )?;
    let out = args.checkpoint.output_dir(&args.out, "eval");
    let name = &checkpoint.model.config().name;
    write_files(&out, name, &result, &test)?;
    let mut report = format!(
        "{name}: test accuracy {:.2}% ({}/{}), top-3 {:.2}%, top-5 {:.2}%, loss {:.4}, {:.0} img/s\n\n{}",
        100.0 * result.accuracy(),
        result.correct(),
        result.total(),
        100.0 * result.top_k_accuracy(3),
        100.0 * result.top_k_accuracy(5),
        result.loss,
        result.images_per_sec,
        scores_table(&result)
    );
    report.push_str("\nMost confused (true → predicted):\n");
    for (t, p, n) in most_confused(&result.confusion, 5) {
        let (t, p) = (&result.classes[t], &result.classes[p]);
        report.push_str(&format!("  {t:<11} → {p:<11} {n}\n"));
    }
    report.push_str(&format!(
        "\nWrote report.json, per_class.csv, confusion.png and misclassified.png to {}\n",
        out.display()
    ));
    Ok((result, report))
}

fn write_files(out: &Path, name: &str, result: &Evaluation, test: &CifarSet) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let report = class_report(&result.confusion);
    let classes = &result.classes;
    let per_class: Vec<_> = classes
        .iter()
        .zip(&report.classes)
        .map(|(c, s)| json!({"class": c, "precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support}))
        .collect();
    let confused: Vec<_> = most_confused(&result.confusion, 10)
        .into_iter()
        .map(|(t, p, n)| json!({"true": classes[t], "predicted": classes[p], "count": n}))
        .collect();
    let json = json!({
        "model": name,
        "images": result.total(),
        "accuracy": result.accuracy(),
        "top_3_accuracy": result.top_k_accuracy(3),
        "top_5_accuracy": result.top_k_accuracy(5),
        "loss": result.loss,
        "per_class": per_class,
        "macro_avg": report.macro_avg,
        "weighted_avg": report.weighted_avg,
        "confusion_matrix": result.confusion,
        "most_confused": confused,
        "images_per_sec": result.images_per_sec,
    });
    write_atomic(
        &out.join("report.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["class", "precision", "recall", "f1", "support"])?;
    for (label, s) in labelled_rows(&report, classes) {
        csv.serialize((label, s.precision, s.recall, s.f1, s.support))?;
    }
    let csv = csv.into_inner().context("cannot write per_class.csv")?;
    write_atomic(&out.join("per_class.csv"), &csv)?;
    write_atomic(
        &out.join("confusion.png"),
        &plot::confusion(
            &result.confusion,
            &classes.iter().map(String::as_str).collect::<Vec<_>>(),
        )?,
    )?;
    let mut worst = result.mistakes.clone();
    worst.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let tiles: Vec<(&[u8], String)> = worst
        .iter()
        .take(GRID_IMAGES)
        .map(|m| {
            let caption = format!(
                "{} → {} {:.0}%",
                classes[m.label],
                classes[m.predicted],
                100.0 * m.confidence
            );
            (test.image(m.index), caption)
        })
        .collect();
    write_atomic(
        &out.join("misclassified.png"),
        &plot::image_grid(
            &tiles,
            "Misclassified (most confident first): true → predicted",
        )?,
    )
}

/// The rows of a class report with their labels: each class, then the two averages.
fn labelled_rows<'a>(
    report: &'a ClassReport,
    classes: &'a [String],
) -> impl Iterator<Item = (&'a str, &'a ClassScores)> {
    let averages = [
        ("macro avg", &report.macro_avg),
        ("weighted avg", &report.weighted_avg),
    ];
    classes
        .iter()
        .map(String::as_str)
        .zip(&report.classes)
        .chain(averages)
}

/// Precision, recall, F1 and support per class, with macro and weighted averages.
pub fn scores_table(result: &Evaluation) -> String {
    let report = class_report(&result.confusion);
    let mut out = format!(
        "{:<13} {:>9} {:>9} {:>9} {:>8}\n",
        "class", "precision", "recall", "f1", "support"
    );
    for (label, s) in labelled_rows(&report, &result.classes) {
        out.push_str(&format!(
            "{label:<13} {:>9.4} {:>9.4} {:>9.4} {:>8}\n",
            s.precision, s.recall, s.f1, s.support
        ));
    }
    out
}
