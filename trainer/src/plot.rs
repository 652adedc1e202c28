//! PNG figures drawn with plotters: a run's loss, accuracy and learning-rate curves, the
//! confusion matrix, and grids of captioned images and pictures.

use anyhow::{Result, anyhow};
use model::preprocess::rgb_picture;
use plotters::prelude::*;

use crate::metrics::Confusion;
use crate::metrics::EpochMetrics;

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

/// Renders a `size` figure with `draw` and encodes it as PNG.
pub(crate) fn render(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<Vec<u8>> {
    register_font();
    let mut pixels = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    let image = image::RgbImage::from_raw(size.0, size.1, pixels)
        .ok_or_else(|| anyhow!("plot buffer size"))?;
    let mut png = std::io::Cursor::new(Vec::new());
    image.write_to(&mut png, image::ImageFormat::Png)?;
    Ok(png.into_inner())
}

/// Draws a run's `curves.png`: training/validation loss, training/validation accuracy, and
/// the learning rate, per epoch; returns the PNG.
pub fn curves(history: &[EpochMetrics]) -> Result<Vec<u8>> {
    let png = render(SIZE, |root| {
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
            ("epoch", "loss"),
            &loss,
            SeriesLabelPosition::UpperRight,
        )?;
        panel(
            &panels[1],
            "Accuracy",
            ("epoch", "accuracy (%)"),
            &accuracy,
            SeriesLabelPosition::LowerRight,
        )?;
        panel(
            &panels[2],
            "Learning rate",
            ("epoch", "lr"),
            &lr,
            SeriesLabelPosition::UpperRight,
        )
    })?;
    Ok(png)
}

/// ROAD's curves per method: the mean change of the explained class's probability after
/// removing the most relevant (left) and least relevant (right) share of the pixels.
pub fn road_curves(
    morf: &[(&str, Vec<(f64, f64)>)],
    lerf: &[(&str, Vec<(f64, f64)>)],
) -> Result<Vec<u8>> {
    render((1400, 520), |root| {
        let panels = root.split_evenly((1, 2));
        let axes = ("pixels removed (%)", "change in probability");
        panel(
            &panels[0],
            "Most relevant first (lower: more faithful)",
            axes,
            morf,
            SeriesLabelPosition::LowerLeft,
        )?;
        panel(
            &panels[1],
            "Least relevant first (higher: more faithful)",
            axes,
            lerf,
            SeriesLabelPosition::LowerLeft,
        )
    })
}

/// A confusion-matrix heat map with the count in every cell (rows: true class, columns:
/// predicted class).
pub fn confusion(matrix: &Confusion, classes: &[&str]) -> Result<Vec<u8>> {
    let n = classes.len();
    // Ten classes get 64-pixel cells; more classes share the same width.
    let cell = (640 / n.max(10) as i32).max(6);
    let (left, top) = (120i32, 90i32);
    let size = (
        (left + cell * n as i32 + 20) as u32,
        (top + cell * n as i32 + 110) as u32,
    );
    render(size, |root| {
        let max = matrix.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
        root.draw(&Text::new(
            "Confusion matrix (rows: true, columns: predicted)",
            (left, 20),
            ("sans-serif", 22),
        ))?;
        for (t, row) in matrix.iter().enumerate().take(n) {
            for (p, &count) in row.iter().enumerate().take(n) {
                let (x, y) = (left + p as i32 * cell, top + t as i32 * cell);
                let v = count as f64 / max;
                let shade = (255.0 * (1.0 - 0.85 * v)) as u8;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    RGBColor(shade, shade, 255).filled(),
                ))?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    RGBColor(200, 200, 200),
                ))?;
                let ink = if v > 0.55 { WHITE } else { BLACK };
                let text = count.to_string();
                let style = ("sans-serif", 16).into_font().color(&ink);
                root.draw(&Text::new(
                    text.clone(),
                    (x + cell / 2 - 4 * text.len() as i32, y + cell / 2 - 8),
                    style,
                ))?;
            }
            root.draw(&Text::new(
                classes[t].to_string(),
                (8, top + t as i32 * cell + cell / 2 - 8),
                ("sans-serif", 15),
            ))?;
        }
        for (p, class) in classes.iter().enumerate() {
            let style = ("sans-serif", 15)
                .into_font()
                .transform(FontTransform::Rotate90);
            root.draw(&Text::new(
                class.to_string(),
                (
                    left + p as i32 * cell + cell / 2 - 8,
                    top + n as i32 * cell + 8,
                ),
                style,
            ))?;
        }
        root.draw(&Text::new(
            "true ↓   predicted →",
            (8, top - 30),
            ("sans-serif", 15),
        ))?;
        Ok(())
    })
}

/// A grid of CIFAR-10 images (channel-major `u8`, 32 × 32), shown 3× larger, each with a
/// caption, under a title.
pub fn image_grid(tiles: &[(&[u8], String)], title: &str) -> Result<Vec<u8>> {
    let (scale, cols) = (3i32, 6usize);
    let (tile_w, tile_h) = (200i32, 32 * scale + 30);
    let rows = tiles.len().div_ceil(cols).max(1);
    let size = (
        (tile_w * cols as i32) as u32,
        (50 + tile_h * rows as i32) as u32,
    );
    render(size, |root| {
        root.draw(&Text::new(title.to_string(), (10, 12), ("sans-serif", 20)))?;
        for (i, (pixels, caption)) in tiles.iter().enumerate() {
            let x0 = (i % cols) as i32 * tile_w + (tile_w - 32 * scale) / 2;
            let y0 = 50 + (i / cols) as i32 * tile_h;
            let picture = rgb_picture(pixels);
            for y in 0..32 {
                for x in 0..32 {
                    let [r, g, b] = picture.get_pixel(x as u32, y as u32).0;
                    let color = RGBColor(r, g, b);
                    let (px, py) = (x0 + x * scale, y0 + y * scale);
                    root.draw(&Rectangle::new(
                        [(px, py), (px + scale, py + scale)],
                        color.filled(),
                    ))?;
                }
            }
            let cx = (i % cols) as i32 * tile_w + 4;
            root.draw(&Text::new(
                caption.clone(),
                (cx, y0 + 32 * scale + 6),
                ("sans-serif", 13),
            ))?;
        }
        Ok(())
    })
}

/// Pictures of one size (the first one's), `cols` to a row, each with a caption under it, under
/// a title.
pub fn picture_grid(
    pictures: &[(image::RgbImage, String)],
    cols: usize,
    title: &str,
) -> Result<Vec<u8>> {
    let (w, h) = pictures.first().map_or((32, 32), |(p, _)| p.dimensions());
    let (w, h) = (w as i32, h as i32);
    let (pad, caption, top) = (10i32, 26i32, 40i32);
    let cols = cols.clamp(1, pictures.len().max(1));
    let rows = pictures.len().div_ceil(cols).max(1);
    let size = (
        (pad + cols as i32 * (w + pad)) as u32,
        (top + rows as i32 * (h + caption + pad)) as u32,
    );
    render(size, |root| {
        root.draw(&Text::new(title.to_string(), (pad, 12), ("sans-serif", 18)))?;
        for (i, (picture, text)) in pictures.iter().enumerate() {
            let x0 = pad + (i % cols) as i32 * (w + pad);
            let y0 = top + (i / cols) as i32 * (h + caption + pad);
            for (x, y, p) in picture
                .enumerate_pixels()
                .filter(|(x, y, _)| (*x as i32) < w && (*y as i32) < h)
            {
                root.draw_pixel((x0 + x as i32, y0 + y as i32), &RGBColor(p[0], p[1], p[2]))?;
            }
            root.draw(&Text::new(
                text.clone(),
                (x0, y0 + h + 6),
                ("sans-serif", 14),
            ))?;
        }
        Ok(())
    })
}

/// One line chart with its legend at `legend`.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    (x_label, y_label): (&str, &str),
    series: &[(&str, Vec<(f64, f64)>)],
    legend: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let points = series.iter().flat_map(|(_, s)| s.iter());
    let (mut x_min, mut x_max) = (f64::INFINITY, 1f64);
    let (mut y_min, mut y_max) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    let x_min = x_min.min(x_max);
    let x_pad = ((x_max - x_min) * 0.03).max(0.2);
    // A flat series (a constant learning rate) gets ±10 % around its value.
    let pad = if y_max - y_min > y_max.abs() * 1e-6 {
        (y_max - y_min) * 0.05
    } else {
        (y_max.abs() * 0.1).max(1e-6)
    };
    // Enough decimals that neighbouring tick labels differ.
    let step = (y_max - y_min + 2.0 * pad) / 10.0;
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_min - x_pad..x_max + x_pad, y_min - pad..y_max + pad)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .x_label_formatter(&|x| {
            // Whole numbers only.
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round())
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .y_label_formatter(&|y| format!("{y:.decimals$}"))
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
