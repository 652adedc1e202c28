//! Reader for the CIFAR-10 binary format: records of 3,073 bytes, a label byte then
//! 1024 R, 1024 G, 1024 B values, row-major.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use model::{IMAGE_VALUES, MAX_CLASSES, cifar10_class_names};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Bytes in one record.
pub const RECORD_BYTES: usize = IMAGE_VALUES + 1;
/// The training batch files, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch file.
pub const TEST_FILE: &str = "test_batch.bin";

/// Whether `dir` holds all six batch files.
pub fn is_complete(dir: &Path) -> bool {
    TRAIN_FILES
        .iter()
        .chain([&TEST_FILE])
        .all(|f| dir.join(f).is_file())
}
/// The validation batch an image folder's `val/` is cached as (CIFAR-10 itself has none).
pub const VAL_FILE: &str = "val_batch.bin";
/// The class names, one per line in label order (CIFAR-10's own file; image folders' caches
/// write theirs).
pub const META_FILE: &str = "batches.meta.txt";

/// Images and labels held in memory: `pixels` has `3072` channel-major bytes per image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CifarSet {
    /// Raw pixels, `len() × 3072` bytes.
    pub pixels: Vec<u8>,
    /// One label per image, an index into `classes`.
    pub labels: Vec<u8>,
    /// The class names, in label order (CIFAR-10's ten, or an image folder's).
    pub classes: Vec<String>,
}

impl CifarSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * IMAGE_VALUES..(i + 1) * IMAGE_VALUES]
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> CifarSet {
        let mut out = CifarSet {
            pixels: Vec::with_capacity(indices.len() * IMAGE_VALUES),
            labels: Vec::with_capacity(indices.len()),
            classes: self.classes.clone(),
        };
        for &i in indices {
            out.pixels.extend_from_slice(self.image(i));
            out.labels.push(self.labels[i]);
        }
        out
    }

    /// Parses records from `bytes` whose labels index `classes`; `name` says where they came
    /// from in error messages.
    pub fn parse(bytes: &[u8], name: &str, classes: &[String]) -> Result<CifarSet> {
        ensure!(
            !bytes.is_empty(),
            "{name} is empty: expected records of {RECORD_BYTES} bytes"
        );
        if !bytes.len().is_multiple_of(RECORD_BYTES) {
            bail!(
                "{name} is truncated or not a CIFAR-10 binary batch: {} bytes is not a multiple of \
                 the {RECORD_BYTES}-byte record (the last record starts at byte offset {} and has \
                 only {} bytes)",
                bytes.len(),
                bytes.len() / RECORD_BYTES * RECORD_BYTES,
                bytes.len() % RECORD_BYTES
            );
        }
        let n = bytes.len() / RECORD_BYTES;
        let mut set = CifarSet {
            pixels: Vec::with_capacity(n * IMAGE_VALUES),
            labels: Vec::with_capacity(n),
            classes: classes.to_vec(),
        };
        for (i, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
            let label = record[0];
            if label as usize >= classes.len() {
                bail!(
                    "{name}: record {i} (byte offset {}) has label {label}; the {} classes have \
                     labels 0–{}",
                    i * RECORD_BYTES,
                    classes.len(),
                    classes.len().saturating_sub(1)
                );
            }
            set.labels.push(label);
            set.pixels.extend_from_slice(&record[1..]);
        }
        Ok(set)
    }

    /// Reads one batch file whose labels index `classes`.
    pub fn read_file(path: &Path, classes: &[String]) -> Result<CifarSet> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&bytes, &path.display().to_string(), classes)
    }

    /// Reads and concatenates batch files from `dir` (labelled by its [`class_names`]).
    pub fn read_files(dir: &Path, files: &[&str]) -> Result<CifarSet> {
        let classes = class_names(dir)?;
        let mut set = CifarSet {
            classes: classes.clone(),
            ..CifarSet::default()
        };
        for file in files {
            let part = Self::read_file(&dir.join(file), &classes)?;
            set.pixels.extend(part.pixels);
            set.labels.extend(part.labels);
        }
        Ok(set)
    }

    /// The 50,000 training images (`data_batch_1..5.bin`).
    pub fn train(dir: &Path) -> Result<CifarSet> {
        Self::read_files(dir, &TRAIN_FILES)
    }

    /// The 10,000 test images (`test_batch.bin`).
    pub fn test(dir: &Path) -> Result<CifarSet> {
        Self::read_files(dir, &[TEST_FILE])
    }

    /// The validation images of `dir` (`val_batch.bin`), when it has them.
    pub fn val(dir: &Path) -> Result<Option<CifarSet>> {
        let path = dir.join(VAL_FILE);
        if path.exists() {
            Ok(Some(Self::read_file(&path, &class_names(dir)?)?))
        } else {
            Ok(None)
        }
    }

    /// Splits off a validation set of `ratio × len` images chosen at random with `seed`;
    /// returns `(train, validation)`.
    pub fn split(&self, ratio: f64, seed: u64) -> Result<(CifarSet, CifarSet)> {
        ensure!(
            (0.0..1.0).contains(&ratio),
            "the validation ratio must be in [0, 1), got {ratio}"
        );
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let n_val = (self.len() as f64 * ratio).round() as usize;
        let (val, train) = order.split_at(n_val);
        Ok((self.subset(train), self.subset(val)))
    }
}

/// The class names of the batches in `dir`: its `batches.meta.txt` (one name per line, blank
/// lines ignored), or CIFAR-10's ten when it has none.
pub fn class_names(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(META_FILE);
    if !path.exists() {
        return Ok(cifar10_class_names());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    ensure!(
        (2..=MAX_CLASSES).contains(&names.len()),
        "{} names {} classes; a data set has 2 to {MAX_CLASSES}",
        path.display(),
        names.len()
    );
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample")
    }

    #[test]
    fn reads_the_committed_sample() {
        let train = CifarSet::train(&sample_dir()).unwrap();
        let test = CifarSet::test(&sample_dir()).unwrap();
        assert_eq!((train.len(), test.len()), (500, 200));
        assert_eq!(
            (&train.classes, &test.classes),
            (&cifar10_class_names(), &cifar10_class_names())
        );
        assert_eq!(train.pixels.len(), 500 * IMAGE_VALUES);
        // The sample is cut from the start of the real test batch: 3 8 8 0 6 6 1 6 3 1.
        assert_eq!(&train.labels[..10], &[3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
        let counts = (0..10).map(|c| train.labels.iter().filter(|&&l| l == c).count());
        assert!(
            counts.clone().all(|n| n > 20),
            "{:?}",
            counts.collect::<Vec<_>>()
        );
    }

    #[test]
    fn rejects_a_truncated_file_naming_the_offset() {
        let bytes = std::fs::read(sample_dir().join("test_batch.bin")).unwrap();
        let err = CifarSet::parse(
            &bytes[..RECORD_BYTES * 3 + 100],
            "cut.bin",
            &cifar10_class_names(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cut.bin is truncated"), "{err}");
        assert!(err.contains("byte offset 9219"), "{err}");
        let err = CifarSet::parse(&[], "empty.bin", &cifar10_class_names())
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty.bin is empty"), "{err}");
    }

    #[test]
    fn rejects_a_bad_label_naming_record_and_offset() {
        let mut bytes = std::fs::read(sample_dir().join("test_batch.bin")).unwrap();
        bytes[RECORD_BYTES * 7] = 12;
        let err = CifarSet::parse(&bytes, "bad.bin", &cifar10_class_names())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("record 7 (byte offset 21511) has label 12"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_named() {
        let err = CifarSet::train(Path::new("/nonexistent/cifar")).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/cifar/data_batch_1.bin"),
            "{err:#}"
        );
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let set = CifarSet::train(&sample_dir()).unwrap();
        let (a, va) = set.split(0.2, 7).unwrap();
        let (b, vb) = set.split(0.2, 7).unwrap();
        let (_, vc) = set.split(0.2, 8).unwrap();
        assert_eq!((a.len(), va.len()), (400, 100));
        assert_eq!((&a, &va), (&b, &vb));
        assert_ne!(va, vc);
        let mut all: Vec<_> = a.labels.iter().chain(&va.labels).copied().collect();
        let mut orig = set.labels.clone();
        all.sort();
        orig.sort();
        assert_eq!(all, orig);
        assert!(set.split(1.0, 0).is_err());
    }

    #[test]
    #[ignore = "needs the full CIFAR-10 binary data set in $CIFAR10_DIR: run ./check"]
    fn reads_the_full_data_set() {
        let dir = std::env::var("CIFAR10_DIR")
            .expect("CIFAR10_DIR names the folder of the full CIFAR-10 binary batches");
        let train = CifarSet::train(Path::new(&dir)).unwrap();
        let test = CifarSet::test(Path::new(&dir)).unwrap();
        assert_eq!((train.len(), test.len()), (50_000, 10_000));
        assert_eq!(&train.labels[..10], &[6, 9, 9, 4, 1, 1, 2, 7, 8, 3]);
        for c in 0..10u8 {
            assert_eq!(train.labels.iter().filter(|&&l| l == c).count(), 5000);
        }
    }
}
