//! PNG plots of a run, drawn with plotters: loss, accuracy and learning-rate curves.

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::train::run_dir::{EpochMetrics, RunDir};

/// The font every plot is labelled with, embedded so plots look the same everywhere.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers the embedded font under plotters' "sans-serif" family (once).
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            eprintln!("warning: the embedded plot font could not be loaded");
        }
    });
}

/// Width and height of the curves figure.
const SIZE: (u32, u32) = (1500, 450);

/// Draws `curves.png`: training/validation loss, training/validation accuracy, and the
/// learning rate, per epoch.
pub fn curves(run: &RunDir, history: &[EpochMetrics]) -> Result<()> {
    register_font();
    let mut pixels = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, 3));
        let epochs: Vec<f64> = history.iter().map(|m| m.epoch as f64).collect();
        let pick = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
            history
                .iter()
                .zip(&epochs)
                .filter_map(|(m, &e)| f(m).map(|v| (e, v)))
                .collect()
        };
        let loss = [
            ("train", pick(&|m| Some(m.train_loss))),
            ("validation", pick(&|m| m.val.map(|v| v.0))),
        ];
        let accuracy = [
            ("train", pick(&|m| Some(100.0 * m.train_accuracy))),
            ("validation", pick(&|m| m.val.map(|v| 100.0 * v.1))),
        ];
        let lr = [("learning rate", pick(&|m| Some(m.lr)))];
        panel(
            &panels[0],
            "Loss",
            "loss",
            &loss,
            SeriesLabelPosition::UpperRight,
        )?;
        panel(
            &panels[1],
            "Accuracy",
            "accuracy (%)",
            &accuracy,
            SeriesLabelPosition::LowerRight,
        )?;
        panel(
            &panels[2],
            "Learning rate",
            "lr",
            &lr,
            SeriesLabelPosition::UpperRight,
        )?;
        root.present()?;
    }
    let image = image::RgbImage::from_raw(SIZE.0, SIZE.1, pixels)
        .ok_or_else(|| anyhow!("plot buffer size"))?;
    let mut png = std::io::Cursor::new(Vec::new());
    image.write_to(&mut png, image::ImageFormat::Png)?;
    run.write("curves.png", &png.into_inner())
}

/// One line chart with its legend at `legend`.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    legend: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let points = series.iter().flat_map(|(_, s)| s.iter());
    let (mut x_max, mut y_min, mut y_max) = (1f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    let pad = ((y_max - y_min) * 0.05).max(y_max.abs() * 1e-3).max(1e-12);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.8f64..x_max + 0.2, y_min - pad..y_max + pad)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&|x| {
            // Whole epochs only.
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round())
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (name, data)) in series.iter().enumerate() {
        if data.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(data.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
