//! `trainer search-report`: what a finished search says — the best trial, the distribution of
//! scores, each option against the score (box plots for choices, scatter plots for numbers) and
//! the correlations between numeric options and the score (seed 000's analysis), as PNG files
//! and one HTML page. It reads the study store (from any machine that reaches it), or a search
//! folder.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use clap::Args;
use plotters::prelude::*;

use super::runner::sole_study;
use super::sampler::Sampler;
use super::space::{Dist, SearchSpec, arg_value};
use super::store::Storage;
use super::table::{read_csv, write_csv};
use super::trial::{Trial, TrialState};
use crate::html::{csv_table, escape, picture};
use crate::io::write_atomic;
use crate::plot::render;

/// Options of `trainer search-report`.
#[derive(Args, Debug)]
pub struct SearchReportArgs {
    /// A search folder (runs/<name>: its study.db, else its search.toml and search.csv), or a
    /// study store: sqlite:PATH or postgres://user:password@host:port/database.
    pub search: String,
    /// The study, when the store holds several.
    #[arg(long)]
    pub name: Option<String>,
    /// Where the report goes [default: the search folder; for a store, runs/<study>].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What a report is made of.
struct Search {
    name: String,
    spec: SearchSpec,
    trials: Vec<Trial>,
    out: PathBuf,
}

/// The study that `args` names, and where its report goes (`search.csv` is written there).
fn load(args: &SearchReportArgs) -> Result<Search> {
    let folder = (!Storage::is_url(&args.search)).then(|| PathBuf::from(&args.search));
    let storage = match &folder {
        None => Some(Storage::parse(&args.search)?),
        Some(dir) if dir.join("study.db").is_file() => Some(Storage::Sqlite(dir.join("study.db"))),
        Some(_) => None,
    };
    let search = match (storage, folder) {
        (Some(storage), folder) => {
            let mut store = storage.open()?;
            let name = match &args.name {
                Some(name) => name.clone(),
                None => sole_study(&mut store, &storage)?,
            };
            let study = store
                .study(&name)
                .with_context(|| format!("in {storage}"))?;
            let trials = store.trials(&study)?;
            let out = args
                .out
                .clone()
                .or(folder)
                .unwrap_or_else(|| PathBuf::from("runs").join(&name));
            Search {
                name,
                spec: study.spec,
                trials,
                out,
            }
        }
        (None, Some(dir)) => {
            let toml = dir.join("search.toml");
            let text = std::fs::read_to_string(&toml).with_context(|| {
                format!(
                    "{} is not a search folder (no study.db or search.toml)",
                    dir.display()
                )
            })?;
            let spec = SearchSpec::parse(&text).with_context(|| toml.display().to_string())?;
            let trials = read_csv(&dir.join("search.csv"), &spec)?;
            Search {
                name: dir
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                spec,
                trials,
                out: args.out.clone().unwrap_or(dir),
            }
        }
        (None, None) => unreachable!("a store URL parses or fails above"),
    };
    std::fs::create_dir_all(&search.out)
        .with_context(|| format!("cannot create {}", search.out.display()))?;
    write_csv(&search.out.join("search.csv"), &search.spec, &search.trials)?;
    Ok(search)
}

/// The value of a numeric option as analysed: the logarithm (base 10) for log-uniform ones.
fn numeric(dist: &Dist, value: &toml::Value) -> Option<f64> {
    let v = value
        .as_float()
        .or_else(|| value.as_integer().map(|i| i as f64))?;
    match dist {
        Dist::LogUniform(_) => Some(v.log10()),
        Dist::Uniform(_) | Dist::Int(_) => Some(v),
        Dist::Choices(_) => None,
    }
}

fn axis_name(name: &str, dist: &Dist) -> String {
    match dist {
        Dist::LogUniform(_) => format!("log10({name})"),
        _ => name.to_string(),
    }
}

/// Pearson correlation of two equally long series (0 when either is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sx = x.iter().map(|a| (a - mx).powi(2)).sum::<f64>().sqrt();
    let sy = y.iter().map(|b| (b - my).powi(2)).sum::<f64>().sqrt();
    if sx == 0.0 || sy == 0.0 {
        0.0
    } else {
        cov / (sx * sy)
    }
}

/// Names and values (one series per numeric option, then the score) of the successful trials.
pub fn numeric_series(spec: &SearchSpec, ok: &[&Trial]) -> Vec<(String, Vec<f64>)> {
    let mut series: Vec<(String, Vec<f64>)> = spec
        .space
        .iter()
        .enumerate()
        .filter(|(_, (_, d))| !matches!(d, Dist::Choices(_)))
        .map(|(i, (name, dist))| {
            let values = ok
                .iter()
                .filter_map(|r| numeric(dist, &r.params[i].1))
                .collect();
            (axis_name(name, dist), values)
        })
        .collect();
    series.push((
        "score".into(),
        ok.iter().map(|r| r.score.unwrap_or(0.0)).collect(),
    ));
    series
}

fn histogram_png(scores: &[f64]) -> Result<Vec<u8>> {
    let (lo, hi) = scores
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &s| (l.min(s), h.max(s)));
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.01, hi + 0.01)
    };
    let bins = 12;
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u32; bins];
    for &s in scores {
        counts[(((s - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1);
    render((800, 500), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Score of the trials (validation accuracy)",
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(45)
            .build_cartesian_2d(100.0 * lo..100.0 * hi, 0u32..top + 1)?;
        chart
            .configure_mesh()
            .x_desc("accuracy (%)")
            .y_desc("trials")
            .label_style(("sans-serif", 13))
            .draw()?;
        chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let x0 = 100.0 * (lo + i as f64 * width);
            Rectangle::new([(x0, 0), (x0 + 100.0 * width, c)], BLUE.mix(0.7).filled())
        }))?;
        Ok(())
    })
}

fn params_png(spec: &SearchSpec, ok: &[&Trial]) -> Result<Vec<u8>> {
    let dims: Vec<(usize, &String, &Dist)> = spec
        .space
        .iter()
        .enumerate()
        .map(|(i, (n, d))| (i, n, d))
        .collect();
    let cols = dims.len().min(3);
    let rows = dims.len().div_ceil(cols);
    let scores: Vec<f64> = ok.iter().map(|r| 100.0 * r.score.unwrap_or(0.0)).collect();
    let (s_lo, s_hi) = scores
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &s| (l.min(s), h.max(s)));
    let (s_lo, s_hi) = (s_lo - 1.0, s_hi + 1.0);
    render((500 * cols as u32, 380 * rows as u32), |root| {
        for (panel, &(i, name, dist)) in root.split_evenly((rows, cols)).iter().zip(&dims) {
            if let Dist::Choices(choices) = dist {
                let mut chart = ChartBuilder::on(panel)
                    .caption(
                        format!("{name} (box: quartiles, line: median)"),
                        ("sans-serif", 16),
                    )
                    .margin(12)
                    .x_label_area_size(35)
                    .y_label_area_size(45)
                    .build_cartesian_2d(-0.5f64..choices.len() as f64 - 0.5, s_lo..s_hi)?;
                chart
                    .configure_mesh()
                    .x_labels(choices.len())
                    .x_label_formatter(&|x| {
                        choices
                            .get(x.round().max(0.0) as usize)
                            .map(arg_value)
                            .unwrap_or_default()
                    })
                    .y_desc("accuracy (%)")
                    .label_style(("sans-serif", 12))
                    .draw()?;
                for (c, choice) in choices.iter().enumerate() {
                    let mut v: Vec<f64> = ok
                        .iter()
                        .zip(&scores)
                        .filter(|(r, _)| &r.params[i].1 == choice)
                        .map(|(_, &s)| s)
                        .collect();
                    if v.is_empty() {
                        continue;
                    }
                    v.sort_by(f64::total_cmp);
                    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
                    let x = c as f64;
                    chart.draw_series([Rectangle::new(
                        [(x - 0.25, q(0.25)), (x + 0.25, q(0.75))],
                        BLUE.mix(0.3).filled(),
                    )])?;
                    chart.draw_series(LineSeries::new(
                        [(x - 0.25, q(0.5)), (x + 0.25, q(0.5))],
                        BLACK.stroke_width(2),
                    ))?;
                    chart.draw_series(LineSeries::new([(x, v[0]), (x, v[v.len() - 1])], BLACK))?;
                    chart.draw_series(v.iter().map(|&s| Circle::new((x, s), 3, RED.filled())))?;
                }
            } else {
                let xs: Vec<f64> = ok
                    .iter()
                    .filter_map(|r| numeric(dist, &r.params[i].1))
                    .collect();
                let (x_lo, x_hi) = xs
                    .iter()
                    .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
                let pad = ((x_hi - x_lo) * 0.05).max(1e-6);
                let mut chart = ChartBuilder::on(panel)
                    .caption(axis_name(name, dist), ("sans-serif", 16))
                    .margin(12)
                    .x_label_area_size(35)
                    .y_label_area_size(45)
                    .build_cartesian_2d(x_lo - pad..x_hi + pad, s_lo..s_hi)?;
                chart
                    .configure_mesh()
                    .y_desc("accuracy (%)")
                    .label_style(("sans-serif", 12))
                    .draw()?;
                chart.draw_series(
                    xs.iter()
                        .zip(&scores)
                        .map(|(&x, &s)| Circle::new((x, s), 4, RED.filled())),
                )?;
            }
        }
        Ok(())
    })
}

fn correlation_png(series: &[(String, Vec<f64>)]) -> Result<Vec<u8>> {
    let n = series.len();
    render(
        ((160 + 110 * n as u32).max(640), 80 + 110 * n as u32),
        |root| {
            root.draw(&Text::new(
                "Correlation (Pearson) between numeric options and the score".to_string(),
                (10, 10),
                ("sans-serif", 18),
            ))?;
            for (r, (rn, rv)) in series.iter().enumerate() {
                root.draw(&Text::new(
                    rn.clone(),
                    (10, 95 + 110 * r as i32),
                    ("sans-serif", 14),
                ))?;
                for (c, (cn, cv)) in series.iter().enumerate() {
                    let rho = pearson(rv, cv);
                    let (x, y) = (150 + 110 * c as i32, 50 + 110 * r as i32);
                    let t = ((rho + 1.0) / 2.0) as f32;
                    let [red, green, blue] = model::cam::heat_color(t);
                    root.draw(&Rectangle::new(
                        [(x, y), (x + 105, y + 105)],
                        RGBColor(red, green, blue).filled(),
                    ))?;
                    root.draw(&Text::new(
                        format!("{rho:+.2}"),
                        (x + 30, y + 45),
                        ("sans-serif", 18),
                    ))?;
                    if r == 0 {
                        root.draw(&Text::new(cn.clone(), (x + 5, 35), ("sans-serif", 13)))?;
                    }
                }
            }
            Ok(())
        },
    )
}

/// Validation accuracy after each epoch, a line per trial (none when no trial has a
/// validation split or recorded epochs).
fn curves_png(trials: &[Trial]) -> Result<Option<Vec<u8>>> {
    let lines: Vec<(usize, Vec<(f64, f64)>)> = trials
        .iter()
        .map(|t| {
            let points = t
                .epochs
                .iter()
                .filter_map(|m| m.val.map(|(_, acc)| (m.epoch as f64, 100.0 * acc)))
                .collect::<Vec<_>>();
            (t.number, points)
        })
        .filter(|(_, points)| !points.is_empty())
        .collect();
    if lines.is_empty() {
        return Ok(None);
    }
    let all = lines.iter().flat_map(|(_, p)| p);
    let last = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(l, h), p| (l.min(p.1), h.max(p.1)));
    let png = render((800, 500), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Validation accuracy of each trial", ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(45)
            .build_cartesian_2d(1.0..last.max(2.0), (lo - 1.0)..(hi + 1.0))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("accuracy (%)")
            .label_style(("sans-serif", 13))
            .draw()?;
        for (i, (number, points)) in lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(format!("trial {number}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], color));
        }
        if lines.len() <= 12 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })?;
    Ok(Some(png))
}

/// Writes `search.csv`, `accuracy-histogram.png`, `params.png`, `correlation.png`,
/// `curves.png` (when epochs were recorded) and `search-report.html`; returns the best trial
/// and the page's path.
pub fn report(args: &SearchReportArgs) -> Result<(Trial, PathBuf)> {
    let Search {
        name,
        spec,
        trials,
        out,
    } = load(args)?;
    let ok: Vec<&Trial> = trials.iter().filter(|t| t.score.is_some()).collect();
    ensure!(!ok.is_empty(), "study `{name}`: no trial succeeded yet");
    let best = (*ok
        .iter()
        .max_by(|a, b| a.score.unwrap_or(0.0).total_cmp(&b.score.unwrap_or(0.0)))
        .expect("non-empty"))
    .clone();
    let scores: Vec<f64> = ok.iter().filter_map(|t| t.score).collect();
    let series = numeric_series(&spec, &ok);
    let mut files = vec![
        ("accuracy-histogram.png", histogram_png(&scores)?),
        ("params.png", params_png(&spec, &ok)?),
        ("correlation.png", correlation_png(&series)?),
    ];
    if let Some(png) = curves_png(&trials)? {
        files.push(("curves.png", png));
    }
    for (file, png) in &files {
        write_atomic(&out.join(file), png)?;
    }
    let best_toml: String = best
        .params
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    let states: Vec<String> = TrialState::ALL
        .iter()
        .map(|&state| (state, trials.iter().filter(|t| t.state == state).count()))
        .filter(|(_, count)| *count > 0)
        .map(|(state, count)| format!("{count} {}", state.as_str()))
        .collect();
    let checkpoint = best
        .checkpoint
        .as_ref()
        .map(|path| format!("<p>Its checkpoint: <code>{}</code></p>\n", escape(path)))
        .unwrap_or_default();
    let mut body = format!(
        "<h1>Search {}</h1>\n<p>{} of {} trials so far ({}). Best: trial {} with score {:.2} % (test {:.2} %):</p>\n<pre>{}</pre>\n{checkpoint}",
        escape(&name),
        trials.len(),
        Sampler::new(&spec)?.trials(&spec),
        states.join(", "),
        best.number,
        100.0 * best.score.unwrap_or(0.0),
        100.0 * best.test_accuracy.unwrap_or(0.0),
        escape(&best_toml)
    );
    for (file, _) in &files {
        body.push_str(&picture(&out.join(file), file.trim_end_matches(".png"))?);
    }
    body.push_str(&csv_table(&out.join("search.csv"))?);
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>search report</title>\
         <style>body{{font:15px/1.45 system-ui,sans-serif;max-width:1200px;margin:1rem auto;padding:0 1rem}}img{{max-width:100%}}\
         table{{border-collapse:collapse;font-size:.85rem}}td,th{{border:1px solid #ddd;padding:.15rem .5rem}}</style></head>\n<body>\n{body}</body></html>\n"
    );
    let path = out.join("search-report.html");
    write_atomic(&path, page.as_bytes())?;
    Ok((best, path))
}
