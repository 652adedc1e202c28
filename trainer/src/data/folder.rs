//! Image-folder datasets, torchvision `ImageFolder` style: `DIR/train/<class>/*.png|jpg|…`,
//! `DIR/test/<class>/…` and, when there is one, `DIR/val/<class>/…` (the validation set
//! training then uses instead of a share of `train/`), classes from the folder names, sorted. The images (any size; resized
//! the way `model::preprocess` prepares a photo, centre square at 32 × 32) are read in parallel
//! once and cached as CIFAR-10 binary batches in `DIR/.cifar-burn/`, which every command then
//! reads like the official data; the cache is rebuilt when the folder's files change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result, bail, ensure};
use image::GenericImageView;
use model::preprocess::{Framing, decode_image, to_cifar_pixels};
use model::{IMAGE_VALUES, MAX_CLASSES};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cifar::{TEST_FILE, TRAIN_FILES, VAL_FILE};
use crate::io::write_atomic;

/// The cache folder inside an image folder.
pub const CACHE_DIR: &str = ".cifar-burn";
/// What the cache records about its source (`DIR/.cifar-burn/source.json`).
const SOURCE_FILE: &str = "source.json";

/// Whether `dir` is an image folder: `train/` and `test/` folders and no binary batches.
pub fn is_image_folder(dir: &Path) -> bool {
    dir.join("train").is_dir() && dir.join("test").is_dir() && !dir.join(TRAIN_FILES[0]).exists()
}

/// A file that could not be used, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BadFile {
    /// Path relative to the image folder.
    pub file: String,
    /// Why it was skipped.
    pub reason: String,
}

/// What the cache was built from and what it holds (`source.json`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FolderInfo {
    /// Files per split, their total bytes and newest modification time: the cache is
    /// current while these agree with the folder.
    pub fingerprint: BTreeMap<String, (usize, u64, u64)>,
    /// Class names, sorted (label `i` is `classes[i]`).
    pub classes: Vec<String>,
    /// Images used per split and class.
    pub counts: BTreeMap<String, Vec<usize>>,
    /// Smallest and largest width × height, and the most common one.
    pub sizes: SizeSummary,
    /// Files skipped, with the reason.
    pub bad: Vec<BadFile>,
    /// How the records are laid out ([`CACHE_LAYOUT`]; absent, 0, in caches written with the
    /// classes one after the other, which are rebuilt).
    #[serde(default)]
    pub layout: u32,
}

/// The record layout of caches written now: classes interleaved.
pub const CACHE_LAYOUT: u32 = 1;

/// Image sizes seen in a folder.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SizeSummary {
    /// Smallest width and height.
    pub min: (u32, u32),
    /// Largest width and height.
    pub max: (u32, u32),
    /// The most common width × height, and how many images have it.
    pub most_common: ((u32, u32), usize),
}

/// A file decoded into a record's pixels and its original width and height, or why not.
type Decoded = Result<(Vec<u8>, (u32, u32)), String>;

/// One split's files with their labels, the classes interleaved: the first file (by name) of
/// each class, then the second of each, and so on, so that the first N images (`--limit`)
/// hold every class.
struct SplitFiles {
    name: &'static str,
    files: Vec<(PathBuf, u8)>,
}

/// The sorted class folders of `dir`.
fn class_folders(dir: &Path) -> Result<Vec<String>> {
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() && !name.starts_with('.') {
            classes.push(name);
        }
    }
    classes.sort();
    Ok(classes)
}

/// The files of split `name`, labelled by `classes`.
fn split_files(root: &Path, name: &'static str, classes: &[String]) -> Result<SplitFiles> {
    let dir = root.join(name);
    let found = class_folders(&dir)?;
    ensure!(
        found == classes,
        "{} has the class folders [{}], but train/ has [{}]: both need the same classes",
        dir.display(),
        found.join(", "),
        classes.join(", ")
    );
    let mut per_class = Vec::new();
    for class in classes {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join(class))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        names.sort();
        per_class.push(names.into_iter());
    }
    let total: usize = per_class.iter().map(|names| names.len()).sum();
    let mut files = Vec::with_capacity(total);
    while files.len() < total {
        for (label, names) in per_class.iter_mut().enumerate() {
            files.extend(names.next().map(|p| (p, label as u8)));
        }
    }
    Ok(SplitFiles { name, files })
}

/// `(files, total bytes, newest modification time in seconds)` of a split.
fn fingerprint(split: &SplitFiles) -> Result<(usize, u64, u64)> {
    let mut bytes = 0;
    let mut newest = 0;
    for (path, _) in &split.files {
        let meta = std::fs::metadata(path)?;
        bytes += meta.len();
        let modified = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        newest = newest.max(modified.as_secs());
    }
    Ok((split.files.len(), bytes, newest))
}

/// The cached binary batches of the image folder `dir`, built (or rebuilt, when the folder's
/// files changed) first. Files that are not readable images are skipped and listed on
/// standard error, or refused with `strict`.
pub fn cached_batches(dir: &Path, strict: bool) -> Result<(PathBuf, FolderInfo)> {
    let classes = class_folders(&dir.join("train"))?;
    ensure!(
        !classes.is_empty(),
        "{} has no class folders",
        dir.join("train").display()
    );
    ensure!(
        (2..=MAX_CLASSES).contains(&classes.len()),
        "{} has {} class folders ([{}]); a data set needs 2 to {MAX_CLASSES}",
        dir.join("train").display(),
        classes.len(),
        classes.join(", ")
    );
    // The cache lists the classes one per line (`batches.meta.txt`).
    if let Some(odd) = classes
        .iter()
        .find(|c| c.trim() != c.as_str() || c.contains(['\n', '\r']))
    {
        bail!(
            "the class folder name {odd:?} starts or ends with a space or holds a line break: \
             rename it"
        );
    }
    let mut splits = vec![
        split_files(dir, "train", &classes)?,
        split_files(dir, "test", &classes)?,
    ];
    if dir.join("val").is_dir() {
        splits.push(split_files(dir, "val", &classes)?);
    }
    let mut prints = BTreeMap::new();
    for split in &splits {
        prints.insert(split.name.to_string(), fingerprint(split)?);
    }
    let cache = dir.join(CACHE_DIR);
    if let Ok(text) = std::fs::read_to_string(cache.join(SOURCE_FILE))
        && let Ok(info) = serde_json::from_str::<FolderInfo>(&text)
        && info.fingerprint == prints
        && info.layout == CACHE_LAYOUT
        && (!strict || info.bad.is_empty())
    {
        return Ok((cache, info));
    }
    eprintln!(
        "Reading the images of {} into {} (once; later runs use the cache)",
        dir.display(),
        cache.display()
    );
    let mut counts = BTreeMap::new();
    let mut bad = Vec::new();
    let mut sizes = Vec::new();
    let mut all_records = Vec::new();
    for split in &splits {
        let read: Vec<Decoded> = split
            .files
            .par_iter()
            .map(|(path, _)| {
                let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
                let image = decode_image(&bytes).map_err(|e| e.to_string())?;
                Ok((to_cifar_pixels(&image, Framing::Crop), image.dimensions()))
            })
            .collect();
        let mut records = Vec::with_capacity(split.files.len() * (IMAGE_VALUES + 1));
        let mut per_class = vec![0usize; classes.len()];
        for ((path, label), result) in split.files.iter().zip(read) {
            match result {
                Ok((pixels, size)) => {
                    records.push(*label);
                    records.extend_from_slice(&pixels);
                    per_class[*label as usize] += 1;
                    sizes.push(size);
                }
                Err(reason) => bad.push(BadFile {
                    file: path.strip_prefix(dir).unwrap_or(path).display().to_string(),
                    reason,
                }),
            }
        }
        all_records.push((split.name, records));
        counts.insert(split.name.to_string(), per_class);
    }
    if !bad.is_empty() {
        let list: Vec<String> = bad
            .iter()
            .take(20)
            .map(|b| format!("  {}: {}", b.file, b.reason))
            .collect();
        let more = bad.len().saturating_sub(20);
        let more = if more > 0 {
            format!("\n  … and {more} more")
        } else {
            String::new()
        };
        if strict {
            bail!(
                "{} files of {} are not usable images (--strict):\n{}{more}",
                bad.len(),
                dir.display(),
                list.join("\n")
            );
        }
        eprintln!(
            "Skipped {} files that are not usable images:\n{}{more}",
            bad.len(),
            list.join("\n")
        );
    }
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create the cache folder {}", cache.display()))?;
    for (split, records) in &all_records {
        write_split(&cache, split, records)?;
    }
    // A `val/` folder that was removed leaves no validation batch behind.
    if !dir.join("val").is_dir() && cache.join(VAL_FILE).exists() {
        std::fs::remove_file(cache.join(VAL_FILE))
            .with_context(|| format!("cannot remove {}", cache.join(VAL_FILE).display()))?;
    }
    let info = FolderInfo {
        fingerprint: prints,
        classes: classes.clone(),
        counts,
        sizes: summarise(&sizes),
        bad,
        layout: CACHE_LAYOUT,
    };
    write_atomic(
        &cache.join("batches.meta.txt"),
        (classes.join("\n") + "\n").as_bytes(),
    )?;
    // Last: a cache without its source.json is rebuilt.
    write_atomic(
        &cache.join(SOURCE_FILE),
        serde_json::to_string_pretty(&info)?.as_bytes(),
    )?;
    Ok((cache, info))
}

/// Writes a split's records as the official files: the training records spread over the five
/// `data_batch_*.bin`, the test records in `test_batch.bin`, the validation records in
/// `val_batch.bin`.
fn write_split(cache: &Path, split: &str, records: &[u8]) -> Result<()> {
    let record = IMAGE_VALUES + 1;
    let n = records.len() / record;
    if let Some(file) = match split {
        "test" => Some(TEST_FILE),
        "val" => Some(VAL_FILE),
        _ => None,
    } {
        ensure!(n > 0, "the {split} split has no usable image");
        return write_atomic(&cache.join(file), records);
    }
    ensure!(
        n >= TRAIN_FILES.len(),
        "the train split has {n} usable images; at least {} are needed",
        TRAIN_FILES.len()
    );
    // With n ≥ 5, every file gets at least one record.
    let files = TRAIN_FILES.len();
    for (i, file) in TRAIN_FILES.iter().enumerate() {
        let (from, to) = (i * n / files, (i + 1) * n / files);
        write_atomic(&cache.join(file), &records[from * record..to * record])?;
    }
    Ok(())
}

/// The smallest, largest and most common size.
fn summarise(sizes: &[(u32, u32)]) -> SizeSummary {
    if sizes.is_empty() {
        return SizeSummary::default();
    }
    let mut tally: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    for &s in sizes {
        *tally.entry(s).or_default() += 1;
    }
    let most_common = tally
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(s, n)| (*s, *n))
        .expect("not empty");
    SizeSummary {
        min: (
            sizes.iter().map(|s| s.0).min().expect("not empty"),
            sizes.iter().map(|s| s.1).min().expect("not empty"),
        ),
        max: (
            sizes.iter().map(|s| s.0).max().expect("not empty"),
            sizes.iter().map(|s| s.1).max().expect("not empty"),
        ),
        most_common,
    }
}
