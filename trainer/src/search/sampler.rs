//! Where the next trial's options come from: a grid, random draws, or TPE (Bayesian
//! optimisation that models the densities of good and bad trials per option, [`super::tpe`]).

use anyhow::{Result, anyhow};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tpe::{Domain, Tpe};

use super::space::{Dist, Method, SearchSpec};

/// Options of one trial, in the order of the space.
pub type Params = Vec<(String, toml::Value)>;

/// Proposes trials and learns from their results.
pub enum Sampler {
    /// The whole grid, in order.
    Grid(Vec<Params>),
    /// Independent draws.
    Random(Vec<(String, Dist)>, StdRng),
    /// One TPE optimiser per option.
    Bayesian(Vec<(String, Dist, Tpe)>, StdRng),
}

/// The value of `dist` at `x`, where `x` lies in the range TPE searches for it.
fn decode(dist: &Dist, x: f64) -> toml::Value {
    match dist {
        Dist::Choices(c) => c[(x as usize).min(c.len() - 1)].clone(),
        Dist::Uniform(_) => toml::Value::Float(x),
        Dist::LogUniform(_) => toml::Value::Float(x.exp()),
        Dist::Int([_, hi]) => toml::Value::Integer((x.floor() as i64).min(*hi)),
    }
}

/// The range TPE searches for `dist`.
fn tpe_for(dist: &Dist) -> Tpe {
    Tpe::new(match dist {
        Dist::Choices(c) => Domain::Categorical(c.len()),
        Dist::Uniform([lo, hi]) => Domain::Numeric(*lo, *hi),
        Dist::LogUniform([lo, hi]) => Domain::Numeric(lo.ln(), hi.ln()),
        Dist::Int([lo, hi]) => Domain::Numeric(*lo as f64, *hi as f64 + 1.0 - 1e-9),
    })
}

/// `points` values spread over a range for the grid.
fn grid_values(dist: &Dist, points: usize) -> Vec<toml::Value> {
    let spread = |lo: f64, hi: f64| {
        (0..points).map(move |i| lo + (hi - lo) * i as f64 / (points - 1) as f64)
    };
    match dist {
        Dist::Choices(c) => c.clone(),
        Dist::Uniform([lo, hi]) => spread(*lo, *hi).map(toml::Value::Float).collect(),
        Dist::LogUniform([lo, hi]) => spread(lo.ln(), hi.ln())
            .map(|x| toml::Value::Float(x.exp()))
            .collect(),
        Dist::Int([lo, hi]) => {
            let mut v: Vec<i64> = spread(*lo as f64, *hi as f64)
                .map(|x| x.round() as i64)
                .collect();
            v.dedup();
            v.into_iter().map(toml::Value::Integer).collect()
        }
    }
}

impl Sampler {
    /// The sampler of a search.
    pub fn new(spec: &SearchSpec) -> Result<Self> {
        let space: Vec<(String, Dist)> = spec.space.clone().into_iter().collect();
        Ok(match spec.method {
            Method::Grid => {
                let mut grid: Vec<Params> = vec![Vec::new()];
                for (name, dist) in &space {
                    grid = grid
                        .into_iter()
                        .flat_map(|p| {
                            grid_values(dist, spec.grid_points)
                                .into_iter()
                                .map(move |v| {
                                    let mut q = p.clone();
                                    q.push((name.clone(), v));
                                    q
                                })
                        })
                        .collect();
                }
                Sampler::Grid(grid)
            }
            Method::Random => Sampler::Random(space, StdRng::seed_from_u64(spec.seed)),
            Method::Bayesian => Sampler::Bayesian(
                space
                    .into_iter()
                    .map(|(n, d)| {
                        let tpe = tpe_for(&d);
                        (n, d, tpe)
                    })
                    .collect(),
                StdRng::seed_from_u64(spec.seed),
            ),
        })
    }

    /// How many trials the search runs.
    pub fn trials(&self, spec: &SearchSpec) -> usize {
        match self {
            Sampler::Grid(grid) => grid.len(),
            _ => spec.trials,
        }
    }

    /// The options of trial `k` (trials are asked in order 0, 1, 2, …).
    pub fn ask(&mut self, k: usize) -> Result<Params> {
        Ok(match self {
            Sampler::Grid(grid) => grid[k].clone(),
            Sampler::Random(space, rng) => space
                .iter()
                .map(|(name, dist)| {
                    let value = match dist {
                        Dist::Choices(c) => c[rng.random_range(0..c.len())].clone(),
                        Dist::Uniform([lo, hi]) => toml::Value::Float(rng.random_range(*lo..=*hi)),
                        Dist::LogUniform([lo, hi]) => {
                            toml::Value::Float(rng.random_range(lo.ln()..=hi.ln()).exp())
                        }
                        Dist::Int([lo, hi]) => toml::Value::Integer(rng.random_range(*lo..=*hi)),
                    };
                    (name.clone(), value)
                })
                .collect(),
            Sampler::Bayesian(optims, rng) => {
                let mut params = Vec::new();
                for (name, dist, tpe) in optims.iter() {
                    params.push((name.clone(), decode(dist, tpe.ask(rng))));
                }
                params
            }
        })
    }

    /// Reports a trial's score (higher is better; `None`: it failed and counts as worst).
    pub fn tell(&mut self, params: &Params, score: Option<f64>) -> Result<()> {
        if let Sampler::Bayesian(optims, _) = self {
            let loss = -score.unwrap_or(0.0);
            for ((_, dist, tpe), (_, value)) in optims.iter_mut().zip(params) {
                tpe.tell(encode(dist, value)?, loss);
            }
        }
        Ok(())
    }
}

/// The options of trial `k`, given trials `0..k`: their options and, for the finished ones,
/// their scores (`Some(None)`: failed). The sampler is replayed over them, so one worker gets
/// exactly the sequence of asking and telling in turn, and every worker's proposal has seen
/// every trial that has finished (TPE's model), yet never repeats a grid point.
pub fn propose(
    spec: &SearchSpec,
    k: usize,
    earlier: &[(Params, Option<Option<f64>>)],
) -> Result<Params> {
    let mut sampler = Sampler::new(spec)?;
    for (j, (params, result)) in earlier.iter().enumerate().take(k) {
        sampler.ask(j)?;
        if let Some(score) = result {
            sampler.tell(params, *score)?;
        }
    }
    sampler.ask(k)
}

/// Where `value` lies in TPE's range for `dist` (the inverse of `decode`).
fn encode(dist: &Dist, value: &toml::Value) -> Result<f64> {
    let number = || {
        value
            .as_float()
            .or_else(|| value.as_integer().map(|i| i as f64))
            .ok_or_else(|| anyhow!("`{value}` is not a number"))
    };
    Ok(match dist {
        Dist::Choices(c) => {
            c.iter()
                .position(|v| v == value)
                .ok_or_else(|| anyhow!("`{value}` is not one of the choices"))? as f64
        }
        Dist::Uniform(_) => number()?,
        Dist::LogUniform(_) => number()?.ln(),
        Dist::Int(_) => number()? + 0.5,
    })
}
