//! The loss landscape around trained weights (Li et al., 2018, seed 000's figure): the test
//! loss at θ + α·d₁ + β·d₂ for two random directions, each filter of which is scaled to the
//! norm of the matching filter of θ ("filter normalisation"; biases and BatchNorm parameters
//! stay fixed), on an `n × n` grid of α, β in [−span, span].

use std::sync::Arc;

use anyhow::{Result, ensure};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};
use model::{Model, Normalization};
use plotters::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

use crate::data::CifarSet;
use crate::eval::evaluate;
use crate::plot::render;

/// Loss values on a square grid of direction coefficients.
#[derive(Debug, Clone)]
pub struct Landscape {
    /// The coefficients along each axis (odd count, 0 in the middle).
    pub coords: Vec<f32>,
    /// `loss[j * n + i]`: the loss at α = `coords[i]`, β = `coords[j]`.
    pub loss: Vec<f32>,
}

impl Landscape {
    /// The loss at the trained weights (the grid's centre).
    pub fn centre(&self) -> f32 {
        let n = self.coords.len();
        self.loss[(n / 2) * n + n / 2]
    }
}

/// Scales each filter of `direction` to the norm of the same filter of `weights`: filters are
/// the rows of dim 0 for convolutions `[out, in, kh, kw]` and the columns of Burn's linear
/// weights `[in, out]`.
fn filter_normalise(direction: &mut [f32], weights: &[f32], shape: &[usize]) {
    let (filters, stride, step) = match shape {
        [out, rest @ ..] if shape.len() == 4 => (*out, rest.iter().product::<usize>(), 1),
        [_, out] => (*out, 1, *out),
        _ => return,
    };
    let len = weights.len() / filters;
    for f in 0..filters {
        let index = |k: usize| {
            if step == 1 {
                f * stride + k
            } else {
                k * step + f
            }
        };
        let norm = |v: &[f32]| (0..len).map(|k| v[index(k)].powi(2)).sum::<f32>().sqrt();
        let scale = norm(weights) / norm(direction).max(1e-12);
        for k in 0..len {
            direction[index(k)] *= scale;
        }
    }
}

/// Draws the random directions, one entry per visited parameter (`None`: kept fixed).
struct Sampler {
    rng: StdRng,
    directions: Vec<Option<TensorData>>,
}

impl ModuleMapper for Sampler {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D < 2 {
            self.directions.push(None);
            return param;
        }
        let shape = param.val().dims().to_vec();
        let weights = param
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("float weights");
        let mut direction: Vec<f32> = (0..weights.len())
            .map(|_| StandardNormal.sample(&mut self.rng))
            .collect();
        filter_normalise(&mut direction, &weights, &shape);
        self.directions
            .push(Some(TensorData::new(direction, shape)));
        param
    }
}

/// Moves every parameter by α·d₁ + β·d₂.
struct Shift<'a> {
    alpha: f32,
    beta: f32,
    first: &'a [Option<TensorData>],
    second: &'a [Option<TensorData>],
    index: usize,
    device: Device,
}

impl ModuleMapper for Shift<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let i = self.index;
        self.index += 1;
        let (Some(d1), Some(d2)) = (&self.first[i], &self.second[i]) else {
            return param;
        };
        let (id, tensor, _) = param.consume();
        let d1 = Tensor::<D>::from_data(d1.clone(), &self.device);
        let d2 = Tensor::<D>::from_data(d2.clone(), &self.device);
        Param::initialized(id, tensor + d1 * self.alpha + d2 * self.beta)
    }
}

/// Computes the landscape on `images` with `points` coefficients a side (odd, ≥ 3).
pub fn landscape(
    model: &Model,
    normalization: Normalization,
    images: &Arc<CifarSet>,
    points: usize,
    span: f32,
    seed: u64,
    device: &Device,
) -> Result<Landscape> {
    ensure!(
        points >= 3 && points % 2 == 1,
        "--points must be odd and at least 3"
    );
    ensure!(span > 0.0, "--span must be positive");
    let mut sampler = Sampler {
        rng: StdRng::seed_from_u64(seed),
        directions: Vec::new(),
    };
    let model = model.clone().map(&mut sampler);
    let first = sampler.directions;
    sampler.directions = Vec::new();
    let model = model.map(&mut sampler);
    let second = sampler.directions;
    let coords: Vec<f32> = (0..points)
        .map(|i| span * (2.0 * i as f32 / (points - 1) as f32 - 1.0))
        .collect();
    let mut loss = Vec::with_capacity(points * points);
    for &beta in &coords {
        for &alpha in &coords {
            let mut shift = Shift {
                alpha,
                beta,
                first: &first,
                second: &second,
                index: 0,
                device: device.clone(),
            };
            let moved = model.clone().map(&mut shift);
            loss.push(evaluate(&moved, images, normalization, device, 500)?.loss as f32);
        }
    }
    Ok(Landscape { coords, loss })
}

/// Colour of a loss value on the log scale between `lo` and `hi`.
fn shade(value: f32, lo: f32, hi: f32) -> RGBColor {
    let t = ((value.ln() - lo.ln()) / (hi.ln() - lo.ln()).max(1e-9)).clamp(0.0, 1.0);
    let [r, g, b] = model::cam::heat_color(t);
    RGBColor(r, g, b)
}

/// The segments where the bilinear surface of one grid cell crosses `level` (marching squares).
fn crossings(corners: [(f32, f32, f32); 4], level: f32) -> Vec<(f32, f32)> {
    let mut points = Vec::new();
    for k in 0..4 {
        let (a, b) = (corners[k], corners[(k + 1) % 4]);
        if (a.2 < level) != (b.2 < level) {
            let t = (level - a.2) / (b.2 - a.2);
            points.push((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
        }
    }
    points
}

/// `landscape-contour.png`: the surface as a log-scale heat map with contour lines.
pub fn contour_png(land: &Landscape, title: &str) -> Result<Vec<u8>> {
    let n = land.coords.len();
    let (lo, hi) = min_max(&land.loss);
    let (a0, a1) = (land.coords[0], land.coords[n - 1]);
    render((900, 800), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(a0..a1, a0..a1)?;
        chart
            .configure_mesh()
            .x_desc("α (direction 1)")
            .y_desc("β (direction 2)")
            .label_style(("sans-serif", 14))
            .draw()?;
        let half = (land.coords[1] - land.coords[0]) / 2.0;
        chart.draw_series((0..n * n).map(|k| {
            let (x, y) = (land.coords[k % n], land.coords[k / n]);
            Rectangle::new(
                [(x - half, y - half), (x + half, y + half)],
                shade(land.loss[k], lo, hi).filled(),
            )
        }))?;
        // Contour lines at ten loss levels spaced evenly on the log scale.
        for l in 1..=10 {
            let level = (lo.ln() + (hi.ln() - lo.ln()) * l as f32 / 11.0).exp();
            for j in 0..n - 1 {
                for i in 0..n - 1 {
                    let at =
                        |i: usize, j: usize| (land.coords[i], land.coords[j], land.loss[j * n + i]);
                    let cell = [at(i, j), at(i + 1, j), at(i + 1, j + 1), at(i, j + 1)];
                    let points = crossings(cell, level);
                    for pair in points.chunks_exact(2) {
                        chart.draw_series(LineSeries::new(
                            pair.iter().copied(),
                            BLACK.stroke_width(1),
                        ))?;
                    }
                }
            }
        }
        chart.draw_series(PointSeries::of_element(
            [(0f32, 0f32)],
            6,
            WHITE.filled(),
            &|c, s, st| EmptyElement::at(c) + Circle::new((0, 0), s, st),
        ))?;
        Ok(())
    })
}

/// `landscape-surface.png`: the same surface drawn in 3-D (log of the loss).
pub fn surface_png(land: &Landscape, title: &str) -> Result<Vec<u8>> {
    let n = land.coords.len();
    let (lo, hi) = min_max(&land.loss);
    let (a0, a1) = (land.coords[0] as f64, land.coords[n - 1] as f64);
    let log = |v: f32| v.ln() as f64;
    render((900, 800), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .build_cartesian_3d(a0..a1, log(lo)..log(hi), a0..a1)?;
        chart.with_projection(|mut p| {
            p.pitch = 0.5;
            p.yaw = 0.6;
            p.scale = 0.85;
            p.into_matrix()
        });
        chart
            .configure_axes()
            .label_style(("sans-serif", 12))
            .draw()?;
        let index = |x: f64| {
            ((x - a0) / (a1 - a0) * (n - 1) as f64)
                .round()
                .clamp(0.0, (n - 1) as f64) as usize
        };
        let coords: Vec<f64> = land.coords.iter().map(|&c| c as f64).collect();
        chart.draw_series(
            SurfaceSeries::xoz(coords.iter().copied(), coords.iter().copied(), |x, z| {
                log(land.loss[index(z) * n + index(x)])
            })
            .style_func(&|&y| {
                let t = ((y - log(lo)) / (log(hi) - log(lo)).max(1e-9)) as f32;
                let [r, g, b] = model::cam::heat_color(t);
                RGBColor(r, g, b).mix(0.85).filled()
            }),
        )?;
        Ok(())
    })
}

fn min_max(values: &[f32]) -> (f32, f32) {
    values
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_get_the_norms_of_the_weights() {
        // A conv weight [2, 1, 1, 2]: filters (3, 4) and (0, 1).
        let mut d = vec![1.0, 0.0, 2.0, 2.0];
        filter_normalise(&mut d, &[3.0, 4.0, 0.0, 1.0], &[2, 1, 1, 2]);
        assert_eq!(d[..2], [5.0, 0.0]);
        let second = (d[2] * d[2] + d[3] * d[3]).sqrt();
        assert!((second - 1.0).abs() < 1e-6);
        // A linear weight [in 2, out 2]: columns are the filters.
        let mut d = vec![1.0, 1.0, 0.0, 1.0];
        filter_normalise(&mut d, &[6.0, 0.0, 8.0, 2.0], &[2, 2]);
        assert!((d[0] - 10.0).abs() < 1e-6 && d[2] == 0.0, "{d:?}");
        let col = (d[1] * d[1] + d[3] * d[3]).sqrt();
        assert!((col - 2.0).abs() < 1e-6, "{d:?}");
    }

    #[test]
    fn marching_squares_finds_the_crossings() {
        let cell = [
            (0.0, 0.0, 0.0),
            (1.0, 0.0, 1.0),
            (1.0, 1.0, 1.0),
            (0.0, 1.0, 0.0),
        ];
        assert_eq!(crossings(cell, 0.5), vec![(0.5, 0.0), (0.5, 1.0)]);
        assert!(crossings(cell, 2.0).is_empty());
    }
}
