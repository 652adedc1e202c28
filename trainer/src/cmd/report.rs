//! `trainer report RUN`: one self-contained HTML page (pictures embedded) gathering a run's
//! summary, configuration, per-epoch metrics and curves, its evaluation (`eval/`) and its
//! visualisations (`viz/`), whichever of them exist.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::Args;

use crate::html::{csv_table, escape, picture, text_block};
use crate::io::write_atomic;

/// Options of `trainer report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run folder.
    pub run: PathBuf,
    /// Where to write the page [default: report.html in the run folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Builds the page; returns where it was written.
pub fn run(args: &ReportArgs) -> Result<PathBuf> {
    let dir = &args.run;
    ensure!(
        dir.join("metrics.csv").exists() || dir.join("summary.txt").exists(),
        "{} is not a run folder (no metrics.csv or summary.txt)",
        dir.display()
    );
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let mut body = format!("<h1>{}</h1>\n", escape(&name));
    body.push_str("<h2>Summary</h2>\n");
    body.push_str(&text_block(&dir.join("summary.txt"))?);
    body.push_str("<h2>Training</h2>\n");
    body.push_str(&picture(
        &dir.join("curves.png"),
        "Loss, accuracy and learning rate per epoch",
    )?);
    body.push_str(&csv_table(&dir.join("metrics.csv"))?);
    let eval = dir.join("eval");
    if eval.exists() {
        body.push_str("<h2>Evaluation on the test set</h2>\n");
        body.push_str(&csv_table(&eval.join("per_class.csv"))?);
        body.push_str(&picture(&eval.join("confusion.png"), "Confusion matrix")?);
        body.push_str(&picture(
            &eval.join("misclassified.png"),
            "Most confident mistakes",
        )?);
    }
    let viz = dir.join("viz");
    if viz.exists() {
        body.push_str("<h2>Visualisations</h2>\n");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&viz)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        files.sort();
        for file in files {
            let stem = file
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            body.push_str(&picture(&file, &stem.replace('-', " "))?);
        }
    }
    body.push_str("<h2>Configuration</h2>\n");
    body.push_str(&text_block(&dir.join("config.toml"))?);
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — cifar-burn report</title>\n\
         <style>body{{font:15px/1.45 system-ui,sans-serif;max-width:1200px;margin:1rem auto;padding:0 1rem;color:#1d2330}}\
         img{{max-width:100%}}figure{{margin:1rem 0}}figcaption{{color:#5b6476;font-size:.9rem}}\
         table{{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}}td,th{{border:1px solid #dcdcd6;padding:.15rem .5rem;text-align:right}}\
         pre{{background:#f3f4f6;padding:.6rem;overflow:auto}}</style></head>\n<body>\n{body}</body></html>\n",
        escape(&name)
    );
    let out = args.out.clone().unwrap_or_else(|| dir.join("report.html"));
    write_atomic(&out, page.as_bytes())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_tabulates() {
        assert_eq!(escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
        let dir =
            std::env::temp_dir().join(format!("cifar-burn-report-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("m.csv");
        std::fs::write(&csv, "epoch,loss\n1,0.123456\n").unwrap();
        let table = csv_table(&csv).unwrap();
        assert!(table.contains("<th>loss</th>") && table.contains("<td>1</td><td>0.1235</td>"));
        assert_eq!(picture(&dir.join("missing.png"), "x").unwrap(), "");
        std::fs::remove_dir_all(&dir).ok();
    }
}
