//! The Tree-structured Parzen Estimator (Bergstra et al., 2011), one dimension at a time as
//! Optuna's default sampler does: the trials are split into the best γ and the rest, each
//! group's density is estimated (Gaussian kernels on numbers, smoothed counts on choices), and
//! the candidate drawn from the good density with the highest good/bad ratio is proposed.
//!
//! Written here rather than taken from the `tpe` crate: that crate needs rand 0.10, and adding
//! it changes the feature set Burn is built with (a full rebuild, twice the CI time).

use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

/// Random proposals before the model is used.
const STARTUP: usize = 10;
/// Share of trials counted as good.
const GAMMA: f64 = 0.25;
/// Candidates drawn from the good density per proposal.
const CANDIDATES: usize = 24;

/// What one dimension searches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Domain {
    /// A number in `[lo, hi]`.
    Numeric(f64, f64),
    /// One of `n` choices, `0..n`.
    Categorical(usize),
}

/// One dimension's TPE: proposes values and learns from `(value, loss)` (lower loss is better).
#[derive(Clone, Debug)]
pub struct Tpe {
    domain: Domain,
    trials: Vec<(f64, f64)>,
}

impl Tpe {
    /// A TPE over `domain` with no trials yet.
    pub fn new(domain: Domain) -> Self {
        Self {
            domain,
            trials: Vec::new(),
        }
    }

    /// Records a trial.
    pub fn tell(&mut self, value: f64, loss: f64) {
        self.trials.push((value, loss));
    }

    /// Proposes the next value.
    pub fn ask(&self, rng: &mut StdRng) -> f64 {
        if self.trials.len() < STARTUP {
            return self.uniform(rng);
        }
        let mut sorted = self.trials.clone();
        sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
        let n_good = ((GAMMA * sorted.len() as f64).ceil() as usize).max(1);
        let good: Vec<f64> = sorted[..n_good].iter().map(|t| t.0).collect();
        let bad: Vec<f64> = sorted[n_good..].iter().map(|t| t.0).collect();
        (0..CANDIDATES)
            .map(|_| self.sample(&good, rng))
            .map(|x| (x, self.density(&good, x) / self.density(&bad, x)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(x, _)| x)
            .unwrap_or_else(|| self.uniform(rng))
    }

    fn uniform(&self, rng: &mut StdRng) -> f64 {
        match self.domain {
            Domain::Numeric(lo, hi) => rng.random_range(lo..=hi),
            Domain::Categorical(n) => rng.random_range(0..n) as f64,
        }
    }

    /// Each point's kernel width, as in Bergstra et al.: the larger gap to its sorted
    /// neighbours (the domain's ends count as neighbours), clipped to between
    /// `width / min(100, n + 1)` and the domain's width.
    fn widths(&self, points: &[f64]) -> Vec<f64> {
        let Domain::Numeric(lo, hi) = self.domain else {
            return vec![0.0; points.len()];
        };
        let mut order: Vec<usize> = (0..points.len()).collect();
        order.sort_by(|&a, &b| points[a].total_cmp(&points[b]));
        let floor = (hi - lo) / (points.len() as f64 + 1.0).min(100.0);
        let mut widths = vec![0.0; points.len()];
        for (rank, &i) in order.iter().enumerate() {
            let left = if rank == 0 {
                lo
            } else {
                points[order[rank - 1]]
            };
            let right = if rank + 1 == order.len() {
                hi
            } else {
                points[order[rank + 1]]
            };
            widths[i] = (points[i] - left)
                .max(right - points[i])
                .clamp(floor, hi - lo);
        }
        widths
    }

    /// A draw from the density of `points` (with the uniform prior as one more component).
    fn sample(&self, points: &[f64], rng: &mut StdRng) -> f64 {
        let pick = rng.random_range(0..=points.len());
        if pick == points.len() {
            return self.uniform(rng);
        }
        match self.domain {
            Domain::Numeric(lo, hi) => {
                let sigma = self.widths(points)[pick];
                let normal = Normal::new(points[pick], sigma).expect("σ > 0");
                normal.sample(rng).clamp(lo, hi)
            }
            Domain::Categorical(_) => points[pick],
        }
    }

    /// The density of `points` at `x`: a kernel per point plus the uniform prior, normalised.
    fn density(&self, points: &[f64], x: f64) -> f64 {
        match self.domain {
            Domain::Numeric(lo, hi) => {
                let weight = 1.0 / (points.len() + 1) as f64;
                let kernels: f64 = points
                    .iter()
                    .zip(self.widths(points))
                    .map(|(&p, sigma)| {
                        let z = (x - p) / sigma;
                        (-0.5 * z * z).exp() / (sigma * (2.0 * std::f64::consts::PI).sqrt())
                    })
                    .sum();
                weight * (kernels + 1.0 / (hi - lo))
            }
            // Counts with one pseudo-count per choice (the prior), normalised.
            Domain::Categorical(n) => {
                let hits = points.iter().filter(|&&p| p == x).count() as f64;
                (hits + 1.0) / (points.len() + n) as f64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn proposals_stay_in_the_domain_and_move_to_good_regions() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut tpe = Tpe::new(Domain::Numeric(-5.0, 5.0));
        for _ in 0..60 {
            let x = tpe.ask(&mut rng);
            assert!((-5.0..=5.0).contains(&x));
            tpe.tell(x, (x - 2.0).powi(2));
        }
        let late: Vec<f64> = (0..20).map(|_| tpe.ask(&mut rng)).collect();
        let near = late.iter().filter(|x| (**x - 2.0).abs() < 1.0).count();
        assert!(near >= 12, "{late:?}");

        let mut cat = Tpe::new(Domain::Categorical(4));
        for _ in 0..40 {
            let c = cat.ask(&mut rng);
            assert!(c == c.floor() && (0.0..4.0).contains(&c));
            cat.tell(c, if c == 3.0 { 0.0 } else { 1.0 });
        }
        let threes = (0..20).filter(|_| cat.ask(&mut rng) == 3.0).count();
        assert!(threes >= 12, "{threes}/20");
    }
}
