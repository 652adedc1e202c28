//! Pictures of the parameters: first-layer filters and per-layer distributions.

use anyhow::{Result, ensure};
use burn::store::ModuleSnapshot;
use model::Model;
use plotters::prelude::*;

use super::tiles::{gray_tile, to_bytes};
use crate::plot::{image_grid, render};

/// One trainable tensor of a model.
#[derive(Debug, Clone)]
pub struct Param {
    /// The layer's path, e.g. `net.Cnn.layers.0.Conv.conv`.
    pub layer: String,
    /// `weight`, `bias`, `gamma` or `beta`.
    pub kind: String,
    /// The tensor's shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f32>,
}

/// Every trainable tensor (BatchNorm running statistics left out), in path order.
pub fn params(model: &Model) -> Result<Vec<Param>> {
    let mut out = Vec::new();
    for tensor in model.collect(None, None, false) {
        let (layer, kind) = tensor.name.rsplit_once('.').unwrap_or(("", &tensor.name));
        if kind.starts_with("running") {
            continue;
        }
        let bytes = tensor.to_bytes()?;
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.push(Param {
            layer: layer.to_string(),
            kind: kind.to_string(),
            shape: tensor.shape.to_vec(),
            values,
        });
    }
    Ok(out)
}

/// Short layer names for captions: the path without the model prefix and enum variants.
fn short(layer: &str) -> String {
    layer
        .split('.')
        .filter(|p| !p.is_empty() && !p.chars().next().unwrap().is_uppercase() && *p != "net")
        .collect::<Vec<_>>()
        .join(".")
}

/// The convolution filters: `(layer, png)` for each conv layer, the first as RGB tiles (every
/// filter's three input channels, all filters on one scale), deeper ones as the first input
/// channel of each filter in gray, each on its own scale (seed 004's figures). At most 36
/// filters a layer.
pub fn filters(params: &[Param]) -> Result<Vec<(String, Vec<u8>)>> {
    let convs: Vec<&Param> = params
        .iter()
        .filter(|p| p.kind == "weight" && p.shape.len() == 4)
        .collect();
    ensure!(!convs.is_empty(), "the model has no convolutional layer");
    let mut out = Vec::new();
    for (n, conv) in convs.iter().enumerate() {
        let [filters, inputs, kh, kw] =
            [conv.shape[0], conv.shape[1], conv.shape[2], conv.shape[3]];
        let per_filter = inputs * kh * kw;
        let shown = filters.min(36);
        let tiles: Vec<(Vec<u8>, String)> = if n == 0 && inputs == 3 {
            let scaled = to_bytes(&conv.values[..shown * per_filter]);
            (0..shown)
                .map(|f| {
                    let mut tile = vec![0u8; 3 * 1024];
                    for c in 0..3 {
                        let plane = &scaled[f * per_filter + c * kh * kw..][..kh * kw];
                        let gray = gray_tile(plane, kh);
                        tile[c * 1024..(c + 1) * 1024].copy_from_slice(&gray[..1024]);
                    }
                    (tile, format!("filter {f}"))
                })
                .collect()
        } else {
            (0..shown)
                .map(|f| {
                    let plane = to_bytes(&conv.values[f * per_filter..][..kh * kw]);
                    (gray_tile(&plane, kh), format!("filter {f}, input 0"))
                })
                .collect()
        };
        let refs: Vec<(&[u8], String)> = tiles
            .iter()
            .map(|(t, c)| (t.as_slice(), c.clone()))
            .collect();
        let name = short(&conv.layer);
        let title = format!(
            "{name}: {filters} filters {kh}×{kw} over {inputs} channels{}",
            if n == 0 && inputs == 3 {
                " (RGB, one scale)"
            } else {
                " (first input channel, each filter scaled)"
            }
        );
        out.push((name, image_grid(&refs, &title)?));
    }
    Ok(out)
}

/// Histograms of every layer's weights, biases and BatchNorm γ/β, one panel each, with mean
/// and standard deviation in the panel's title.
pub fn distributions(params: &[Param]) -> Result<Vec<u8>> {
    ensure!(!params.is_empty(), "the model has no parameters");
    let cols = 4;
    let rows = params.len().div_ceil(cols);
    render((1600, 260 * rows as u32), |root| {
        for (panel, p) in root.split_evenly((rows, cols)).iter().zip(params) {
            let n = p.values.len() as f32;
            let mean = p.values.iter().sum::<f32>() / n;
            let std = (p.values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
            let (lo, hi) = p
                .values
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let (lo, hi) = if hi > lo {
                (lo, hi)
            } else {
                (lo - 0.5, hi + 0.5)
            };
            let bins = 40;
            let width = (hi - lo) / bins as f32;
            let mut counts = vec![0u32; bins];
            for &v in &p.values {
                counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
            }
            let top = *counts.iter().max().unwrap_or(&1) as f32;
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    format!("{} {} (μ {mean:.3}, σ {std:.3})", short(&p.layer), p.kind),
                    ("sans-serif", 15),
                )
                .margin(8)
                .x_label_area_size(22)
                .y_label_area_size(40)
                .build_cartesian_2d(lo..hi, 0f32..top * 1.05)?;
            chart
                .configure_mesh()
                .x_labels(4)
                .y_labels(3)
                .label_style(("sans-serif", 11))
                .draw()?;
            chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x0 = lo + i as f32 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f32)], BLUE.mix(0.7).filled())
            }))?;
        }
        Ok(())
    })
}
