//! Finding the data set: `--data-dir`, then `CIFAR10_DIR`, then `data/cifar-10-batches-bin`,
//! downloading it there when it is missing and the network allows. A given folder may also be
//! an image folder (`train/<class>/…`, `test/<class>/…`): its cached binary batches are used.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::cifar::{TEST_FILE, TRAIN_FILES, is_complete};
use super::{download, folder};

/// The environment variable that points at the data set.
pub const ENV_VAR: &str = "CIFAR10_DIR";
/// Where the data set lives by default, relative to the working directory.
pub const DEFAULT_DIR: &str = "data/cifar-10-batches-bin";

/// Accepts the batch folder itself or a folder that contains `cifar-10-batches-bin`.
fn normalise(dir: &Path) -> PathBuf {
    let inner = dir.join("cifar-10-batches-bin");
    if !is_complete(dir) && is_complete(&inner) {
        inner
    } else {
        dir.to_path_buf()
    }
}

fn missing_files(dir: &Path) -> String {
    let missing: Vec<_> = TRAIN_FILES
        .iter()
        .chain([&TEST_FILE])
        .filter(|f| !dir.join(f).is_file())
        .copied()
        .collect();
    missing.join(", ")
}

/// The folder of the CIFAR-10 binary batches. An explicit `--data-dir` or `CIFAR10_DIR` must
/// exist; the default folder is downloaded into when missing.
pub fn find(data_dir: Option<&Path>) -> Result<PathBuf> {
    let env = std::env::var_os(ENV_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let (dir, source) = match (data_dir, env) {
        (Some(d), _) => (normalise(d), "--data-dir"),
        (None, Some(e)) => (normalise(&e), ENV_VAR),
        (None, None) => {
            let default = PathBuf::from(DEFAULT_DIR);
            if is_complete(&default) {
                return Ok(default);
            }
            let parent = default.parent().unwrap_or(Path::new("."));
            return download::fetch_cifar10(parent).map_err(|e| {
                e.context(format!(
                    "CIFAR-10 is not in {DEFAULT_DIR} and could not be downloaded. Download \
                     {url} yourself and unpack it so that {DEFAULT_DIR}/data_batch_1.bin exists, \
                     or point --data-dir or {ENV_VAR} at a folder with data_batch_1..5.bin and \
                     test_batch.bin",
                    url = download::CIFAR10_URL
                ))
            });
        }
    };
    if folder::is_image_folder(&dir) {
        return Ok(folder::cached_batches(&dir, false)?.0);
    }
    if !is_complete(&dir) {
        bail!(
            "{source} points at {} but it lacks {}; it must hold the CIFAR-10 binary batches \
             (data_batch_1..5.bin, test_batch.bin) or be an image folder (train/<class>/…, \
             test/<class>/…)",
            dir.display(),
            missing_files(&dir)
        );
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sample_and_names_what_is_missing() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample");
        assert_eq!(find(Some(&sample)).unwrap(), sample);
        let empty = std::env::temp_dir().join(format!("cifar-burn-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let err = find(Some(&empty)).unwrap_err().to_string();
        assert!(
            err.contains("--data-dir points at") && err.contains("data_batch_1.bin"),
            "{err}"
        );
        std::fs::remove_dir_all(&empty).unwrap();
    }
}
