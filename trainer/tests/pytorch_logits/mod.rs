//! Comparing a checkpoint's logits with the ones PyTorch computed for a fixture.

use burn::tensor::{Device, Tensor};
use model::Checkpoint;
use serde_json::Value;

/// Asserts that `checkpoint`'s logits on `pixels` (channel-major CIFAR records) equal the
/// fixture's `logits` (float64, row-major) within 1e-4 of the largest one.
pub fn assert_pytorchs_logits(checkpoint: &Checkpoint, pixels: &[u8], logits: &Value, what: &str) {
    let device = Device::flex();
    let input = checkpoint.info.normalization.tensor(pixels, &device);
    let ours: Tensor<2> = checkpoint.model.forward(input);
    let ours: Vec<f32> = ours.into_data().try_into_vec().unwrap();
    let theirs: Vec<f64> = logits
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(ours.len(), theirs.len(), "{what}");
    let scale = theirs.iter().fold(1f64, |m, v| m.max(v.abs()));
    for (a, b) in ours.iter().zip(&theirs) {
        assert!(
            (f64::from(*a) - b).abs() <= 1e-4 * scale,
            "{what}: logit {a} here, {b} in PyTorch"
        );
    }
}
