//! How fast the convolutions of a network's training step run, layer by layer: forward, input
//! gradient and weight gradient of each 3 × 3 convolution at the step's batch, in GFLOP/s of
//! useful multiply-adds and as a share of the cores' FMA peak.
//!
//! ```text
//! cargo run --release -p nchw-kernels --features std,rayon --example conv_speed -- \
//!     [airbench94|airbench93|resnet20] [--batch 1024] [--repeats 3] [--peak-gflops 96.5]
//! ```
//!
//! `--peak-gflops` is one core's FMA peak (frequency × 2 FMA units × 8 lanes × 2 FLOP);
//! the default is what a register-only FMA loop measured on the development machine (AMD EPYC
//! Zen 3). Threads: rayon's pool (`RAYON_NUM_THREADS`).

use std::time::Instant;

use nchw_kernels::{Conv2dGeometry, Conv2dOptions, conv2d, conv2d_weight_grad, conv2d_x_grad};

/// One 3 × 3, stride-1, padding-1 convolution: input channels, output channels, input size.
struct Layer {
    name: &'static str,
    c_in: usize,
    c_out: usize,
    size: usize,
}

const fn layer(name: &'static str, c_in: usize, c_out: usize, size: usize) -> Layer {
    Layer {
        name,
        c_in,
        c_out,
        size,
    }
}

/// The 3 × 3 convolutions of a network (the whitening and 1 × 1 layers are left out).
fn layers(network: &str) -> Option<Vec<Layer>> {
    let airbench = |w: [usize; 3]| {
        vec![
            layer("group1.conv1", 24, w[0], 31),
            layer("group1.conv2", w[0], w[0], 15),
            layer("group2.conv1", w[0], w[1], 15),
            layer("group2.conv2", w[1], w[1], 7),
            layer("group3.conv1", w[1], w[2], 7),
            layer("group3.conv2", w[2], w[2], 3),
        ]
    };
    match network {
        "airbench94" => Some(airbench([64, 256, 256])),
        "airbench93" => Some(airbench([64, 128, 128])),
        "resnet20" => Some(vec![
            layer("stage1 (×6)", 16, 16, 32),
            layer("stage2 (×5)", 32, 32, 16),
            layer("stage3 (×5)", 64, 64, 8),
        ]),
        _ => None,
    }
}

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The fastest of `repeats` timings of `f`, in seconds.
fn best_of(repeats: usize, mut f: impl FnMut()) -> f64 {
    (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut network, mut batch, mut repeats, mut peak) = ("airbench94".to_string(), 1024, 3, 96.5);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--batch" => batch = value().parse().expect("--batch: a number"),
            "--repeats" => repeats = value().parse().expect("--repeats: a number"),
            "--peak-gflops" => peak = value().parse().expect("--peak-gflops: a number"),
            _ if !arg.starts_with('-') => network = arg,
            _ => panic!("unknown option {arg}"),
        }
    }
    let layers = layers(&network)
        .unwrap_or_else(|| panic!("unknown network {network}: airbench94, airbench93, resnet20"));
    let threads = rayon::current_num_threads();
    let peak_all = peak * threads as f64;
    println!(
        "{network}, batch {batch}, {threads} threads, peak {peak_all:.1} GFLOP/s \
         ({peak} per core); best of {repeats}"
    );
    println!(
        "{:<14} {:>6} {:>10} {:>10} {:>10} {:>7}",
        "layer", "GFLOP", "forward", "input grad", "weight grad", "of peak"
    );
    let options = Conv2dOptions::new([1, 1], [1, 1], [1, 1], 1);
    let (mut flop_total, mut seconds_total) = (0.0, 0.0);
    for l in &layers {
        let g = Conv2dGeometry::new(
            [batch, l.c_in, l.size, l.size],
            [l.c_out, l.c_in, 3, 3],
            &options,
        );
        let x = values(batch * l.c_in * l.size * l.size, 1);
        let w = values(l.c_out * l.c_in * 9, 2);
        let dy = values(batch * l.c_out * l.size * l.size, 3);
        let flop = 2.0 * (batch * l.size * l.size * l.c_out * l.c_in * 9) as f64 / 1e9;
        let times = [
            best_of(repeats, || {
                drop(std::hint::black_box(conv2d(&x, &w, None, &g)))
            }),
            best_of(repeats, || {
                drop(std::hint::black_box(conv2d_x_grad(&dy, &w, &g)))
            }),
            best_of(repeats, || {
                drop(std::hint::black_box(conv2d_weight_grad(&x, &dy, &g)))
            }),
        ];
        let rate = times.map(|t| flop / t);
        let seconds: f64 = times.iter().sum();
        println!(
            "{:<14} {:>6.2} {:>10.1} {:>10.1} {:>10.1} {:>6.0}%",
            l.name,
            flop,
            rate[0],
            rate[1],
            rate[2],
            100.0 * 3.0 * flop / seconds / peak_all
        );
        flop_total += 3.0 * flop;
        seconds_total += seconds;
    }
    println!(
        "all: {flop_total:.1} GFLOP in {:.2} s: {:.1} GFLOP/s, {:.0}% of peak (GFLOP/s columns)",
        seconds_total,
        flop_total / seconds_total,
        100.0 * flop_total / seconds_total / peak_all
    );
}
