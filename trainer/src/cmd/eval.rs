//! `trainer eval`: a checkpoint's test-set report — accuracy, top-k, per-class precision,
//! recall and F1, the confusion matrix, the most confused pairs and the misclassified images.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use model::CLASSES;
use serde_json::json;

use crate::backend::Backend;
use crate::data::{CifarSet, locate};
use crate::eval::{Evaluation, evaluate};
use crate::io::write_atomic;
use crate::io::{load_checkpoint, output_dir};
use crate::metrics::{ClassReport, ClassScores, class_report, most_confused};
use crate::plot;

/// Misclassified images shown in `misclassified.png`.
const GRID_IMAGES: usize = 36;

/// Options of `trainer eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint file, or a run folder (uses its best.safetensors).
    #[arg(short, long)]
    pub checkpoint: PathBuf,
    /// Folder of the CIFAR-10 binary batches [default: $CIFAR10_DIR, then data/cifar-10-batches-bin].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Images per inference batch.
    #[arg(short, long, default_value_t = 256)]
    pub batch_size: usize,
    /// Where report.json, per_class.csv, confusion.png and misclassified.png go
    /// [default: an `eval` folder beside the checkpoint].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Evaluates the checkpoint on the test set, writes the report files and returns the
/// evaluation and the printed report.
pub fn run(args: &EvalArgs) -> Result<(Evaluation, String)> {
    let (checkpoint, device) = load_checkpoint(&args.checkpoint, args.backend)?;
    let dir = locate::find(args.data_dir.as_deref())?;
    let test = Arc::new(CifarSet::test(&dir)?);
    let result = evaluate(
        &checkpoint.model,
        &test,
        checkpoint.info.normalization,
        &device,
        args.batch_size.max(1),
    )?;
    let out = output_dir(args.out.as_deref(), &args.checkpoint, "eval");
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
        report.push_str(&format!("  {:<11} → {:<11} {n}\n", CLASSES[t], CLASSES[p]));
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
    let per_class: Vec<_> = CLASSES
        .iter()
        .zip(&report.classes)
        .map(|(c, s)| json!({"class": c, "precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support}))
        .collect();
    let confused: Vec<_> = most_confused(&result.confusion, 10)
        .into_iter()
        .map(|(t, p, n)| json!({"true": CLASSES[t], "predicted": CLASSES[p], "count": n}))
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
    let mut csv = String::from("class,precision,recall,f1,support\n");
    for (label, s) in labelled_rows(&report) {
        csv.push_str(&format!(
            "{label},{:.6},{:.6},{:.6},{}\n",
            s.precision, s.recall, s.f1, s.support
        ));
    }
    write_atomic(&out.join("per_class.csv"), csv.as_bytes())?;
    write_atomic(
        &out.join("confusion.png"),
        &plot::confusion(&result.confusion, &CLASSES)?,
    )?;
    let mut worst = result.mistakes.clone();
    worst.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let tiles: Vec<(&[u8], String)> = worst
        .iter()
        .take(GRID_IMAGES)
        .map(|m| {
            let caption = format!(
                "{} → {} {:.0}%",
                CLASSES[m.label],
                CLASSES[m.predicted],
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
fn labelled_rows(report: &ClassReport) -> impl Iterator<Item = (&'static str, &ClassScores)> {
    let averages = [
        ("macro avg", &report.macro_avg),
        ("weighted avg", &report.weighted_avg),
    ];
    CLASSES.iter().copied().zip(&report.classes).chain(averages)
}

/// Precision, recall, F1 and support per class, with macro and weighted averages.
pub fn scores_table(result: &Evaluation) -> String {
    let report = class_report(&result.confusion);
    let mut out = format!(
        "{:<13} {:>9} {:>9} {:>9} {:>8}\n",
        "class", "precision", "recall", "f1", "support"
    );
    for (label, s) in labelled_rows(&report) {
        out.push_str(&format!(
            "{label:<13} {:>9.4} {:>9.4} {:>9.4} {:>8}\n",
            s.precision, s.recall, s.f1, s.support
        ));
    }
    out
}
