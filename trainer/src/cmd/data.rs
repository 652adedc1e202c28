//! `trainer data info DIR`: what a data folder holds (CIFAR-10 binary batches or an image
//! folder): classes, images per split and class, image sizes, files that cannot be used.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use model::IMAGE_SIZE;

use crate::data::cifar::class_names;
use crate::data::folder::{self, FolderInfo};
use crate::data::{CifarSet, locate};

/// Options of `trainer data`.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DataCommand,
}

/// The subcommands of `trainer data`.
#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Classes, images per split and class, sizes and unusable files of a data folder; for
    /// an image folder, also builds (or checks) its cache.
    Info(DataInfoArgs),
}

/// Options of `trainer data info`.
#[derive(Args, Debug)]
pub struct DataInfoArgs {
    /// The folder: CIFAR-10 binary batches, or an image folder (`train/<class>/…`,
    /// `test/<class>/…`).
    pub dir: PathBuf,
    /// Refuse an image folder with files that are not usable images (instead of skipping
    /// them).
    #[arg(long)]
    pub strict: bool,
}

/// The report of `trainer data info`.
pub fn info(args: &DataInfoArgs) -> Result<String> {
    if folder::is_image_folder(&args.dir) {
        let (cache, info) = folder::cached_batches(&args.dir, args.strict)?;
        return Ok(folder_report(&args.dir, &cache, &info));
    }
    let dir = locate::find(Some(&args.dir))?;
    let classes = class_names(&dir)?;
    let mut counts = Vec::new();
    for (name, set) in [
        ("train", CifarSet::train(&dir)?),
        ("test", CifarSet::test(&dir)?),
    ] {
        let mut per_class = vec![0usize; classes.len()];
        for &label in &set.labels {
            per_class[label as usize] += 1;
        }
        counts.push((name, per_class));
    }
    let mut out = format!(
        "{}: binary batches (CIFAR-10's format), {} classes, {IMAGE_SIZE} × {IMAGE_SIZE} images\n",
        dir.display(),
        classes.len()
    );
    out.push_str(&count_table(
        &classes,
        &counts
            .iter()
            .map(|(n, c)| (n.to_string(), c.clone()))
            .collect::<Vec<_>>(),
    ));
    Ok(out)
}

fn folder_report(dir: &std::path::Path, cache: &std::path::Path, info: &FolderInfo) -> String {
    let mut out = format!(
        "{}: image folder, {} classes; cached as binary batches in {}\n",
        dir.display(),
        info.classes.len(),
        cache.display()
    );
    let counts: Vec<(String, Vec<usize>)> = info
        .counts
        .iter()
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    out.push_str(&count_table(&info.classes, &counts));
    let s = &info.sizes;
    let _ = writeln!(
        out,
        "image sizes: {} × {} to {} × {}, most often {} × {} ({} images); the networks see the \
         centre square at {IMAGE_SIZE} × {IMAGE_SIZE}",
        s.min.0, s.min.1, s.max.0, s.max.1, s.most_common.0.0, s.most_common.0.1, s.most_common.1
    );
    if info.bad.is_empty() {
        out.push_str("unusable files: none\n");
    } else {
        let _ = writeln!(out, "unusable files (skipped): {}", info.bad.len());
        for bad in &info.bad {
            let _ = writeln!(out, "  {}: {}", bad.file, bad.reason);
        }
    }
    out
}

/// A table of images per class (rows) and split (columns), with totals.
fn count_table(classes: &[String], counts: &[(String, Vec<usize>)]) -> String {
    let mut out = format!("{:<14}", "class");
    for (split, _) in counts {
        let _ = write!(out, "{split:>8}");
    }
    out.push('\n');
    for (i, class) in classes.iter().enumerate() {
        let _ = write!(out, "{class:<14}");
        for (_, per_class) in counts {
            let _ = write!(out, "{:>8}", per_class[i]);
        }
        out.push('\n');
    }
    let _ = write!(out, "{:<14}", "total");
    for (_, per_class) in counts {
        let _ = write!(out, "{:>8}", per_class.iter().sum::<usize>());
    }
    out.push('\n');
    out
}
