//! The image files a command was given (`predict`, `gradcam`): each read and decoded, or
//! refused with its reason, so that one bad file never hides the answers for the rest.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Error, anyhow};
use image::DynamicImage;
use model::preprocess::decode_image;

/// A file that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The file as given.
    pub path: PathBuf,
    /// Why it was refused.
    pub reason: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// The decoded images, in the order given, and the refused files.
pub struct ImageFiles {
    /// `(file, picture)` of every usable file.
    pub images: Vec<(PathBuf, DynamicImage)>,
    /// The files that could not be read or decoded.
    pub refused: Vec<Refused>,
}

/// Reads and decodes every file of `paths`.
pub fn read_images(paths: &[PathBuf]) -> ImageFiles {
    let mut files = ImageFiles {
        images: Vec::new(),
        refused: Vec::new(),
    };
    for path in paths {
        match read_image(path) {
            Ok(image) => files.images.push((path.clone(), image)),
            Err(reason) => files.refused.push(Refused {
                path: path.clone(),
                reason,
            }),
        }
    }
    files
}

/// Reads and decodes one file, or says why it cannot be used.
pub fn read_image(path: &Path) -> Result<DynamicImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it ({e})"))?;
    decode_image(&bytes).map_err(|e| e.to_string())
}

/// The lines that name the refused files, for standard error.
pub fn refused_report(refused: &[Refused]) -> String {
    refused.iter().map(|r| format!("{r}\n")).collect()
}

/// The error a command ends with when some of its `given` files were refused (after it
/// answered the others), or `None` when every file was used.
pub fn refused_error(refused: &[Refused], given: usize) -> Option<Error> {
    (!refused.is_empty()).then(|| {
        anyhow!(
            "{} of {given} image files could not be used: {}",
            refused.len(),
            refused
                .iter()
                .map(|r| r.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}
