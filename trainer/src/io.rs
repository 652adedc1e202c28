//! The trainer's file layer, below every command: atomic writes, where a command's output
//! goes, and reading a checkpoint onto the chosen device. It imports nothing of this crate but
//! [`crate::backend`], so every other module may use it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;
use model::Checkpoint;

use crate::backend::{self, Backend};

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so an
/// interrupted write never leaves a half-written file. The temporary file is this process's
/// own, so processes writing the same file (a search's workers) never mix their bytes.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} into place", path.display()))
}

/// Where a command writes its files: `out` when given, else `folder` beside the checkpoint.
pub fn output_dir(out: Option<&Path>, checkpoint: &Path, folder: &str) -> PathBuf {
    match out {
        Some(out) => out.to_path_buf(),
        None => checkpoint_path(checkpoint)
            .parent()
            .unwrap_or(Path::new("."))
            .join(folder),
    }
}

/// A checkpoint file, or a run folder's tested weights: its `best.safetensors` (the best
/// validation accuracy), or `last.safetensors` when it trained without validation.
pub fn checkpoint_path(path: &Path) -> PathBuf {
    if !path.is_dir() {
        return path.to_path_buf();
    }
    let best = path.join("best.safetensors");
    let last = path.join("last.safetensors");
    if !best.exists() && last.exists() {
        last
    } else {
        best
    }
}

/// Loads a checkpoint on the device chosen by `backend`; prints which one.
pub fn load_checkpoint(path: &Path, backend: Backend) -> Result<(Checkpoint, Device)> {
    let (file, bytes) = checkpoint_bytes(path)?;
    let selected = backend::select(backend)?;
    eprintln!("Backend: {}", selected.description());
    let checkpoint = parse_checkpoint(&file, &bytes, &selected.device)?;
    Ok((checkpoint, selected.device))
}

/// Loads a checkpoint (a file, or a run folder's best) on `device`.
pub fn read_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint> {
    let (file, bytes) = checkpoint_bytes(path)?;
    parse_checkpoint(&file, &bytes, device)
}

/// The checkpoint file `path` names and its bytes.
fn checkpoint_bytes(path: &Path) -> Result<(PathBuf, Vec<u8>)> {
    let file = checkpoint_path(path);
    let bytes = std::fs::read(&file)
        .with_context(|| format!("cannot read checkpoint {}", file.display()))?;
    Ok((file, bytes))
}

fn parse_checkpoint(file: &Path, bytes: &[u8], device: &Device) -> Result<Checkpoint> {
    Checkpoint::from_bytes(bytes, device).with_context(|| format!("cannot load {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_finds_a_run_folders_checkpoint() {
        let dir = std::env::temp_dir().join(format!("cifar-burn-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x.json");
        write_atomic(&file, b"{}").unwrap();
        write_atomic(&file, b"[]").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"[]");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "only x.json, no temporary file: {left:?}");
        assert_eq!(checkpoint_path(&dir), dir.join("best.safetensors"));
        write_atomic(&dir.join("last.safetensors"), b"").unwrap();
        assert_eq!(
            checkpoint_path(&dir),
            dir.join("last.safetensors"),
            "a run without validation"
        );
        write_atomic(&dir.join("best.safetensors"), b"").unwrap();
        assert_eq!(checkpoint_path(&dir), dir.join("best.safetensors"));
        assert_eq!(checkpoint_path(&file), file);
        assert_eq!(output_dir(None, &file, "viz"), dir.join("viz"));
        assert_eq!(
            output_dir(Some(Path::new("o")), &file, "viz"),
            PathBuf::from("o")
        );
        let err = format!("{:#}", load_checkpoint(&file, Backend::Flex).unwrap_err());
        assert!(
            err.contains("cannot load") && err.contains("x.json"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
