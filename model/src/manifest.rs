//! `weights/manifest.json`: the models shipped with cifar-burn, as `trainer ship` records them
//! and the web page lists them.

use std::io;

use serde::{Deserialize, Serialize};
use serde_json::ser::{Formatter, PrettyFormatter};

use crate::ModelConfig;
use crate::checkpoint::Precision;

/// The list of shipped models.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Name of the model the page loads first.
    pub default: String,
    /// Every shipped model.
    pub models: Vec<ShippedModel>,
}

/// One shipped checkpoint and what was measured about it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShippedModel {
    /// Short unique name (also the file stem).
    pub name: String,
    /// Checkpoint file, relative to the manifest.
    pub file: String,
    /// The network, as stored in the checkpoint.
    pub config: ModelConfig,
    /// Trainable parameters (counted like PyTorch).
    pub parameters: usize,
    /// How the file stores the weights (`f32` when absent).
    #[serde(default)]
    pub precision: Precision,
    /// Top-1 accuracy of this file on the test set, measured by `trainer eval`'s code.
    pub test_accuracy: f64,
    /// For a file stored in `f16`: the test accuracy of the f32 weights it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f32_test_accuracy: Option<f64>,
    /// Top-5 accuracy on the same images.
    pub top5_accuracy: f64,
    /// Number of test images measured.
    pub test_images: usize,
    /// File size in bytes.
    pub bytes: u64,
    /// Size after gzip (what a web server typically sends), in bytes.
    pub gzip_bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// How it was trained (command, data, epochs, machine, time).
    pub trained: String,
    /// The class activation map method most faithful to this model, as
    /// `trainer cam-eval --record` measured it (the page's default method); absent until
    /// measured, and dropped when the weights are shipped again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// The most faithful single-pass explanation method of a shipped model that explains a class,
/// by ROAD's combined score: the page's default, which must answer at interactive speed and
/// follow the class the person asks about.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Explanation {
    /// The method's name (`model::cam::CamMethod::name`).
    pub method: String,
    /// Its ROAD combined score (higher is more faithful).
    pub road: f64,
    /// The standard error of `road` over the images.
    pub road_error: f64,
    /// Test images measured.
    pub images: usize,
    /// A multi-pass method (Score-CAM) that scored higher still, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slower_but_better: Option<MethodScore>,
}

/// One method's ROAD score.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MethodScore {
    /// The method's name.
    pub method: String,
    /// Its ROAD combined score.
    pub road: f64,
    /// The standard error of `road`.
    pub road_error: f64,
}

impl Manifest {
    /// The manifest as pretty-printed JSON whose numbers read back exactly (see
    /// [`ExactFloats`]), so that rewriting it leaves the other entries' numbers as they were.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let mut serializer =
            serde_json::Serializer::with_formatter(&mut out, ExactFloats(PrettyFormatter::new()));
        self.serialize(&mut serializer)
            .expect("a manifest serialises to JSON");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&ShippedModel> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Adds or replaces the entry with the same name.
    pub fn upsert(&mut self, model: ShippedModel) {
        match self.models.iter_mut().find(|m| m.name == model.name) {
            Some(existing) => *existing = model,
            None => self.models.push(model),
        }
    }
}

/// serde_json's pretty printer, writing every float with at most 15 significant digits.
///
/// serde_json (without its `float_roundtrip` feature, which would rebuild all of Burn) may
/// read a 16- or 17-digit number one unit in the last place off, so a manifest rewritten by
/// `trainer ship` drifted (found by the `manifest` fuzz target). Any 15-digit decimal of
/// moderate size is read exactly (an integer below 2⁵³ times an exact power of ten), and 15
/// digits are more than any measurement here has.
struct ExactFloats(PrettyFormatter<'static>);

impl ExactFloats {
    /// `value` rounded to 15 significant digits, in the shortest form that reads back as it.
    fn text(value: f64) -> String {
        let rounded: f64 = format!("{value:.14e}")
            .parse()
            .expect("a formatted float parses");
        if rounded == 0.0 || (1e-5..1e15).contains(&rounded.abs()) {
            format!("{rounded}")
        } else {
            format!("{rounded:e}")
        }
    }
}

impl Formatter for ExactFloats {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        if value.is_finite() {
            writer.write_all(Self::text(value).as_bytes())
        } else {
            writer.write_all(b"null")
        }
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `manifest` fuzz target's finding: a 17-digit ROAD score read by serde_json and
    /// written again came back one unit in the last place off, so every rewrite of the
    /// manifest changed it.
    #[test]
    fn numbers_survive_a_rewrite_exactly() {
        for text in [
            "1.24120440436527159",
            "1.2412044043652717",
            "0.18297708755359057",
            "0.8093",
            "1e-300",
            "123456789.123456789",
        ] {
            let value: f64 = serde_json::from_str(text).unwrap();
            let written = ExactFloats::text(value);
            let again: f64 = serde_json::from_str(&written).unwrap();
            assert_eq!(ExactFloats::text(again), written, "{text}");
            assert!(
                (again - value).abs() <= 1e-14 * value.abs(),
                "{text} → {written}"
            );
        }
        assert_eq!(ExactFloats::text(0.8093), "0.8093");
        assert_eq!(ExactFloats::text(0.18297708755359057), "0.182977087553591");
    }
}
