//! Learning-rate schedules, evaluated at any fractional epoch so that warm-up and one-cycle
//! change the rate every step while step/exponential schedules change it per epoch.

use std::f64::consts::PI;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The shape of the schedule.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step,
    /// Multiply by `gamma` every epoch.
    Exponential,
    /// Cosine annealing from the base rate to `eta_min` over the run.
    Cosine,
    /// One-cycle: rise from base/25 to the base rate over the first 30 % of the run (cosine),
    /// then anneal to base/25/10⁴ (PyTorch's `OneCycleLR` defaults).
    OneCycle,
    /// airbench94's triangle: linear from 0.2 × the base rate to the base rate at 23 % of the
    /// run, then linear down to 0.07 × the base rate at its end.
    Triangle,
}

/// A schedule with its parameters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Schedule {
    /// The shape.
    pub kind: ScheduleKind,
    /// The base (peak) learning rate.
    pub lr: f64,
    /// Epochs of the run (a fraction ends the last one early).
    pub epochs: f64,
    /// Epochs between decays (`step`).
    pub step_size: usize,
    /// Decay factor (`step`, `exponential`).
    pub gamma: f64,
    /// Final rate (`cosine`).
    pub eta_min: f64,
    /// Epochs of linear warm-up from 0 to the scheduled rate (any shape but one-cycle).
    pub warmup_epochs: f64,
}

impl Schedule {
    /// The learning rate at `epoch` (0-based, fractional: 2.5 is halfway through the third).
    pub fn lr_at(&self, epoch: f64) -> f64 {
        let total = self.epochs.max(f64::MIN_POSITIVE);
        let whole = epoch.floor();
        let base = match self.kind {
            ScheduleKind::Constant => self.lr,
            ScheduleKind::Step => {
                self.lr
                    * self
                        .gamma
                        .powi((whole as usize / self.step_size.max(1)) as i32)
            }
            ScheduleKind::Exponential => self.lr * self.gamma.powi(whole as i32),
            ScheduleKind::Cosine => {
                self.eta_min + 0.5 * (self.lr - self.eta_min) * (1.0 + (PI * epoch / total).cos())
            }
            ScheduleKind::OneCycle => return self.one_cycle(epoch / total),
            ScheduleKind::Triangle => return self.triangle(epoch / total),
        };
        if epoch < self.warmup_epochs {
            base * epoch / self.warmup_epochs
        } else {
            base
        }
    }

    fn triangle(&self, progress: f64) -> f64 {
        let (start, peak, end) = (0.2, 0.23, 0.07);
        let t = progress.clamp(0.0, 1.0);
        let factor = if t < peak {
            start + (1.0 - start) * t / peak
        } else {
            1.0 + (end - 1.0) * (t - peak) / (1.0 - peak)
        };
        self.lr * factor
    }

    fn one_cycle(&self, progress: f64) -> f64 {
        let (start, end, rise) = (self.lr / 25.0, self.lr / 25.0 / 1e4, 0.3);
        let cos = |from: f64, to: f64, t: f64| {
            to + 0.5 * (from - to) * (1.0 + (PI * t.clamp(0.0, 1.0)).cos())
        };
        if progress < rise {
            cos(start, self.lr, progress / rise)
        } else {
            cos(self.lr, end, (progress - rise) / (1.0 - rise))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> Schedule {
        Schedule {
            kind,
            lr: 0.1,
            epochs: 10.0,
            step_size: 3,
            gamma: 0.5,
            eta_min: 0.001,
            warmup_epochs: 0.0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn each_shape_gives_its_rates() {
        let c = schedule(ScheduleKind::Constant);
        assert!(close(c.lr_at(0.0), 0.1) && close(c.lr_at(9.9), 0.1));
        let s = schedule(ScheduleKind::Step);
        assert!(
            close(s.lr_at(2.9), 0.1) && close(s.lr_at(3.0), 0.05) && close(s.lr_at(6.5), 0.025)
        );
        let e = schedule(ScheduleKind::Exponential);
        assert!(close(e.lr_at(1.0), 0.05) && close(e.lr_at(3.2), 0.0125));
        let cos = schedule(ScheduleKind::Cosine);
        assert!(close(cos.lr_at(0.0), 0.1));
        assert!(close(cos.lr_at(5.0), 0.001 + 0.5 * 0.099));
        assert!(close(cos.lr_at(10.0), 0.001));
        let one = schedule(ScheduleKind::OneCycle);
        assert!(close(one.lr_at(0.0), 0.004));
        assert!(close(one.lr_at(3.0), 0.1));
        assert!(close(one.lr_at(10.0), 0.004 / 1e4));
        assert!(one.lr_at(1.5) > one.lr_at(1.0) && one.lr_at(6.0) < one.lr_at(5.0));
        let tri = schedule(ScheduleKind::Triangle);
        assert!(close(tri.lr_at(0.0), 0.02) && close(tri.lr_at(2.3), 0.1));
        assert!(close(tri.lr_at(1.15), 0.06) && close(tri.lr_at(10.0), 0.007));
        assert!(close(tri.lr_at(6.15), 0.1 + (0.007 - 0.1) * 0.5));
    }

    #[test]
    fn warm_up_ramps_linearly_then_hands_over() {
        let mut w = schedule(ScheduleKind::Cosine);
        w.warmup_epochs = 2.0;
        assert!(close(w.lr_at(0.0), 0.0));
        assert!(close(
            w.lr_at(1.0),
            0.5 * (0.001 + 0.5 * 0.099 * (1.0 + (PI * 0.1).cos()))
        ));
        assert!(close(
            w.lr_at(2.0),
            0.001 + 0.5 * 0.099 * (1.0 + (PI * 0.2).cos())
        ));
    }
}
