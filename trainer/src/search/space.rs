//! The search file: method, budget, fixed options and the space of the searched ones.
//!
//! ```toml
//! method = "bayesian"        # grid | random | bayesian
//! trials = 20                # random and bayesian (grid runs its whole grid)
//! epochs = 3                 # budget of every trial
//! seed = 0
//! cut-below = 0.3            # optional: stop trials under 30 % after their first epoch
//! [fixed]                    # any `trainer train` option, the same for every trial
//! model = "basic-cnn"
//! [space]
//! lr = { log-uniform = [1e-4, 1e-1] }
//! dropout = { uniform = [0.0, 0.5] }
//! batch-size = { choices = [64, 128, 256] }
//! hidden = { int = [128, 1024] }
//! ```

use std::collections::BTreeMap;

use anyhow::{Result, bail, ensure};
use serde::{Deserialize, Serialize};

/// How trials pick their options.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Every combination (continuous ranges at a few points).
    Grid,
    /// Independent random draws.
    Random,
    /// Tree-structured Parzen estimator (Bayesian optimisation).
    Bayesian,
}

/// The range of one searched option.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Dist {
    /// One of these values.
    Choices(Vec<toml::Value>),
    /// A float in `[lo, hi]`.
    Uniform([f64; 2]),
    /// A float in `[lo, hi]`, uniform in its logarithm.
    LogUniform([f64; 2]),
    /// An integer in `[lo, hi]`.
    Int([i64; 2]),
}

/// A parsed search file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    /// How trials pick their options.
    pub method: Method,
    /// Number of trials (random, bayesian).
    #[serde(default = "default_trials")]
    pub trials: usize,
    /// Epochs of every trial.
    pub epochs: usize,
    /// Seed of the sampler (trial `k` trains with seed `seed + k`).
    #[serde(default)]
    pub seed: u64,
    /// Points of a continuous range in a grid.
    #[serde(default = "default_grid_points", rename = "grid-points")]
    pub grid_points: usize,
    /// Trials whose validation accuracy after their first epoch is below this (0–1) stop
    /// there and are recorded as `cut`.
    #[serde(default, rename = "cut-below")]
    pub cut_below: Option<f64>,
    /// Options every trial gets.
    #[serde(default)]
    pub fixed: toml::Table,
    /// The searched options.
    pub space: BTreeMap<String, Dist>,
}

fn default_trials() -> usize {
    10
}

fn default_grid_points() -> usize {
    3
}

impl SearchSpec {
    /// Parses and checks a search file's text.
    pub fn parse(text: &str) -> Result<Self> {
        let spec: SearchSpec = toml::from_str(text)?;
        ensure!(spec.epochs >= 1, "epochs must be at least 1");
        ensure!(spec.trials >= 1, "trials must be at least 1");
        ensure!(spec.grid_points >= 2, "grid-points must be at least 2");
        ensure!(!spec.space.is_empty(), "the [space] table is empty");
        for (name, dist) in &spec.space {
            ensure!(
                !spec.fixed.contains_key(name),
                "`{name}` is both fixed and searched"
            );
            match dist {
                Dist::Choices(c) if c.is_empty() => bail!("`{name}`: no choices"),
                Dist::Uniform([lo, hi]) if lo.partial_cmp(hi) != Some(std::cmp::Ordering::Less) => {
                    bail!("`{name}`: empty range")
                }
                Dist::LogUniform([lo, hi])
                    if *lo <= 0.0 || lo.partial_cmp(hi) != Some(std::cmp::Ordering::Less) =>
                {
                    bail!("`{name}`: log-uniform needs 0 < lo < hi")
                }
                Dist::Int([lo, hi]) if lo > hi => bail!("`{name}`: empty range"),
                _ => {}
            }
        }
        Ok(spec)
    }
}

impl SearchSpec {
    /// What differs from `other`, one line per setting (`epochs is 3 in the study but 5
    /// here`), empty when the two are the same search.
    pub fn differences(&self, other: &SearchSpec) -> Vec<String> {
        let mut out = Vec::new();
        match (toml::Value::try_from(self), toml::Value::try_from(other)) {
            (Ok(a), Ok(b)) => differ("", Some(&a), Some(&b), &mut out),
            _ if self != other => out.push("the two searches differ".into()),
            _ => {}
        }
        out
    }
}

/// Adds to `out` where `a` and `b` differ, `path` naming the place (`space.lr`).
fn differ(path: &str, a: Option<&toml::Value>, b: Option<&toml::Value>, out: &mut Vec<String>) {
    if let (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) = (a, b) {
        let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for key in keys {
            let inner = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            differ(&inner, x.get(key), y.get(key), out);
        }
    } else if a != b {
        let show = |v: Option<&toml::Value>| v.map_or("absent".to_string(), |v| format!("`{v}`"));
        out.push(format!(
            "{path} is {} in the study but {} here",
            show(a),
            show(b)
        ));
    }
}

/// An option value as a command-line argument.
pub fn arg_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
