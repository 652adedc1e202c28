//! Stride-1 convolutions read straight from zero-padded input planes (f32, x86-64 with AVX2
//! and FMA), without unfolding patches.
//!
//! The images of a chunk are copied once into planes where each row is followed by
//! `max(pad_left, pad_right)` zero columns and each image by `max(pad_top, pad_bottom)` zero
//! rows, shared with the next row or image. On such a plane every kernel tap `(ky, kx)` is
//! a fixed offset: the output at flat position `j` reads `plane[j + offset(ky, kx)]` for every
//! tap, including where the window hangs over an edge (it reads the shared zeros). So the
//! convolution is a GEMM whose left operand rows for `(c_in, ky, kx)` are the plane itself,
//! shifted: a microkernel loads 16 consecutive positions of the plane per tap, broadcasts
//! the weights of up to six output channels and accumulates 16 × 6 outputs in registers
//! over all input channels and taps. Positions that fall on the zero columns and rows are
//! computed too and dropped when the outputs are copied out (7–22 % of the multiply-adds on
//! CIFAR's 32 × 32 to 8 × 8 planes, against nine copies of the input for `col`).
//!
//! The weight gradient `dW[o, c, tap] = Σ_j dy[o, j] · plane_c[j + offset(tap)]` reads the
//! same planes, with `dy` copied onto the same grid (zero where the grid has no output):
//! a second microkernel streams four rows of `dy` and three shifted rows of one input
//! plane and accumulates the 4 × 3 dot products in vector registers.
//!
//! Where the machine has AVX-512, the forward microkernel (which the input gradient runs too)
//! uses its 16-lane registers: two blocks of output channels at a time, one register of 16
//! positions per channel, 12 accumulators. The weight-gradient microkernel stays on AVX2: its
//! AVX-512 forms measured no faster (4 × 3 accumulators) or half as fast (8 × 3).

use alloc::vec;
use alloc::vec::Vec;
use core::arch::x86_64::{
    __m256, __m512, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps, _mm_shuffle_ps,
    _mm256_broadcast_ss, _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps,
    _mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps, _mm512_fmadd_ps, _mm512_loadu_ps,
    _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};
use core::ops::Range;

use super::Conv2dGeometry;

/// Outputs per microkernel call along the plane (two AVX registers).
const MR: usize = 16;
/// Output channels per microkernel call at most (12 accumulators, two loads and one
/// broadcast fit the 16 AVX registers).
const NR: usize = 6;
/// Flat plane positions a chunk of images aims at: enough to keep the padding rows and
/// the last partial tile a small share on 8 × 8 planes.
const CHUNK_POSITIONS: usize = 512;

/// The vector instructions the forward microkernel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    /// AVX2 and FMA: 8 lanes.
    Avx2,
    /// AVX-512 (foundation): 16 lanes, 32 registers.
    Avx512,
}

impl Isa {
    /// The widest this machine has, given that it has AVX2 and FMA ([`supported`]).
    fn best() -> Self {
        if std::is_x86_feature_detected!("avx512f") {
            Isa::Avx512
        } else {
            Isa::Avx2
        }
    }
}

/// Where one chunk's planes put things; the same for every chunk of a call.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// The forward microkernel's instructions.
    isa: Isa,
    /// Images per chunk.
    chunk: usize,
    /// Length of a plane row: `w + gap[1]`.
    row: usize,
    /// Rows per image: `h + gap[0]`.
    image_rows: usize,
    /// Where `x[0, c, 0, 0]` lies in its plane.
    lead: usize,
    /// Plane offset read by output position 0 for each tap, row-major `[kh, kw]`.
    taps: [usize; MAX_TAPS],
    /// Microkernel calls along one chunk's planes.
    tiles: usize,
    /// Elements of one input channel's plane, slack for the last tile included.
    plane: usize,
}

/// Kernel sizes this route takes (`kh · kw`); larger ones keep the `col` route.
const MAX_TAPS: usize = 49;

impl Plan {
    /// The layout for `g`, or `None` when `g` is not a stride-1, ungrouped convolution whose
    /// padding the shared zero rows and columns can hold.
    fn new(g: &Conv2dGeometry, threads: usize) -> Option<Self> {
        let taps = g.kh * g.kw;
        if g.stride != [1, 1] || g.groups != 1 || taps > MAX_TAPS || taps == 1 {
            return None;
        }
        let reach = [g.dilation[0] * (g.kh - 1), g.dilation[1] * (g.kw - 1)];
        // Padding after the last row and column, from the output size Burn computed.
        let end = [
            (g.h_out + reach[0]).checked_sub(g.h + g.pad[0])?,
            (g.w_out + reach[1]).checked_sub(g.w + g.pad[1])?,
        ];
        let gap = [g.pad[0].max(end[0]), g.pad[1].max(end[1])];
        // Every output must lie inside its image's rows and its row's positions.
        if g.h_out > g.h + gap[0] || g.w_out > g.w + gap[1] || g.h_out * g.w_out == 0 {
            return None;
        }
        let row = g.w + gap[1];
        let image_rows = g.h + gap[0];
        let per_image = image_rows * row;
        let chunk = CHUNK_POSITIONS
            .div_ceil(per_image)
            .min(g.batch.div_ceil(threads))
            .max(1);
        let lead = gap[0] * row + gap[1];
        let base = (gap[0] - g.pad[0]) * row + (gap[1] - g.pad[1]);
        let mut offsets = [0; MAX_TAPS];
        for (t, offset) in offsets.iter_mut().take(taps).enumerate() {
            let (ky, kx) = (t / g.kw, t % g.kw);
            *offset = base + ky * g.dilation[0] * row + kx * g.dilation[1];
        }
        let tiles = (chunk * per_image).div_ceil(MR);
        let reach_max = offsets[..taps].iter().max().copied().unwrap_or(0);
        let plane = (tiles * MR + reach_max).max(lead + chunk * per_image);
        Some(Self {
            isa: Isa::best(),
            chunk,
            row,
            image_rows,
            lead,
            taps: offsets,
            tiles,
            plane,
        })
    }

    /// Flat position of the first output of row `y` of the `i`-th image of a chunk.
    fn line(&self, i: usize, y: usize) -> usize {
        (i * self.image_rows + y) * self.row
    }
}

/// Whether this machine runs the microkernel (AVX2 and FMA), checked once by `std`.
pub(super) fn supported() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// The layout of `g`'s chunks when this route takes it: f32 elements, a machine with AVX2
/// and FMA, and a geometry [`Plan::new`] accepts.
fn plan_for<T: 'static>(g: &Conv2dGeometry) -> Option<Plan> {
    let f32_elements = core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>();
    if !f32_elements || !supported() {
        return None;
    }
    Plan::new(g, threads())
}

/// `y = conv2d(x, w) + bias` for f32 operands when `g` suits this route and the machine has
/// AVX2 and FMA: writes every element of `y` and returns `true`; otherwise leaves `y`
/// untouched and returns `false`.
pub(super) fn forward<T: crate::Scalar>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: &Conv2dGeometry,
    y: &mut [T],
) -> bool {
    let Some(plan) = plan_for::<T>(g) else {
        return false;
    };
    forward_planned(
        bytemuck::cast_slice(x),
        bytemuck::cast_slice(w),
        bias.map(bytemuck::cast_slice),
        g,
        &plan,
        bytemuck::cast_slice_mut(y),
    );
    true
}

/// [`forward`] with the layout and instructions of `plan`.
fn forward_planned(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeometry,
    plan: &Plan,
    y: &mut [f32],
) {
    let packed = pack(w, g);
    let (image_in, image_out) = (g.image_in(), g.image_out());
    let run = |scratch: &mut Scratch, first: usize, y_chunk: &mut [f32]| {
        let images = y_chunk.len() / image_out;
        let x_chunk = &x[first * image_in..(first + images) * image_in];
        forward_chunk(scratch, x_chunk, &packed, bias, g, plan, y_chunk);
    };
    let chunk_len = plan.chunk * image_out;
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        y.par_chunks_mut(chunk_len).enumerate().for_each_init(
            || Scratch::new(g, plan),
            |scratch, (c, y_chunk)| run(scratch, c * plan.chunk, y_chunk),
        );
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut scratch = Scratch::new(g, plan);
        for (c, y_chunk) in y.chunks_mut(chunk_len).enumerate() {
            run(&mut scratch, c * plan.chunk, y_chunk);
        }
    }
}

/// `dW` of `y = conv2d(x, w)` for f32 operands when `g` suits this route and the machine
/// has AVX2 and FMA: writes every element of `dw` (`[C_out, C_in, kh, kw]`) and returns
/// `true`; otherwise leaves `dw` untouched and returns `false`.
///
/// Grid positions without an output carry a zero `dy`; they still multiply input values
/// (ones no real output pairs with that tap), so an infinite or NaN input there turns its
/// taps' gradients to NaN where the exact sum would skip it. Such an input makes the loss
/// non-finite anyway.
pub(super) fn weight_grad<T: crate::Scalar>(
    x: &[T],
    dy: &[T],
    g: &Conv2dGeometry,
    dw: &mut [T],
) -> bool {
    let Some(plan) = plan_for::<T>(g) else {
        return false;
    };
    let (x, dy) = (bytemuck::cast_slice(x), bytemuck::cast_slice(dy));
    let sums = super::sum_over_image_runs(g.batch, |images, _| {
        weight_grad_f32(x, dy, g, &plan, images)
    });
    bytemuck::cast_slice_mut(dw).copy_from_slice(&sums);
    true
}

fn threads() -> usize {
    #[cfg(feature = "rayon")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "rayon"))]
    {
        1
    }
}

/// The weights in the order the microkernel reads them: blocks of [`NR`] output channels
/// (the last one narrower), each `[C_in, kh·kw, block width]`.
fn pack(w: &[f32], g: &Conv2dGeometry) -> Vec<f32> {
    let k = g.c_in * g.kh * g.kw;
    let mut packed = vec![0.0; g.c_out * k];
    for c0 in (0..g.c_out).step_by(NR) {
        let width = NR.min(g.c_out - c0);
        let block = &mut packed[c0 * k..(c0 + width) * k];
        for (r, weights) in w[c0 * k..(c0 + width) * k].chunks(k).enumerate() {
            for (i, &v) in weights.iter().enumerate() {
                block[i * width + r] = v;
            }
        }
    }
    packed
}

/// Scratch of one task: the padded input planes (their zero rows and columns are never
/// written, so they stay zero from chunk to chunk) and a grid of the same shape per output
/// channel (the outputs, or `dy` for the weight gradient), channels rounded up to whole
/// weight-gradient blocks.
struct Scratch {
    planes: Vec<f32>,
    grid: Vec<f32>,
}

impl Scratch {
    fn new(g: &Conv2dGeometry, plan: &Plan) -> Self {
        Self {
            planes: vec![0.0; g.c_in * plan.plane],
            grid: vec![0.0; g.c_out.next_multiple_of(GRAD_ROWS) * plan.tiles * MR],
        }
    }
}

/// The outputs `y` of the images `x` (at most one chunk of them), through `scratch`.
fn forward_chunk(
    scratch: &mut Scratch,
    x: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeometry,
    plan: &Plan,
    y: &mut [f32],
) {
    let images = x.len() / g.image_in();
    fill_planes(x, g, plan, &mut scratch.planes);
    convolve(&scratch.planes, packed, g, plan, images, &mut scratch.grid);
    copy_out(&scratch.grid, bias, g, plan, y);
}

/// Copies the chunk's images into their places on the channel planes.
fn fill_planes(x: &[f32], g: &Conv2dGeometry, plan: &Plan, planes: &mut [f32]) {
    for (i, image) in x.chunks(g.image_in()).enumerate() {
        for (c, channel) in image.chunks(g.h * g.w).enumerate() {
            let plane = &mut planes[c * plan.plane..];
            for (r, line) in channel.chunks(g.w).enumerate() {
                let at = plan.lead + plan.line(i, r);
                plane[at..at + g.w].copy_from_slice(line);
            }
        }
    }
}

/// All outputs of the chunk's `images` on the plane grid, channel by channel, into `out`
/// (`[C_out, tiles·MR]`).
fn convolve(
    planes: &[f32],
    packed: &[f32],
    g: &Conv2dGeometry,
    plan: &Plan,
    images: usize,
    out: &mut [f32],
) {
    let taps = &plan.taps[..g.kh * g.kw];
    let k = g.c_in * taps.len();
    let stride = plan.tiles * MR;
    let tiles = (images * plan.image_rows * plan.row).div_ceil(MR);
    // Bounds of every access below: the last tile of channel `c` reads up to
    // `c·plane + tiles·MR + offset` for its largest tap offset, inside channel `c`'s plane
    // by `Plan::new`; each block writes `width` rows of `stride` outputs.
    assert!(planes.len() >= g.c_in * plan.plane && out.len() >= g.c_out * stride);
    assert!(taps.iter().all(|&offset| tiles * MR + offset <= plan.plane));
    for tile in 0..tiles {
        let mut c0 = 0;
        while c0 < g.c_out {
            let width = NR.min(g.c_out - c0);
            // SAFETY: the offsets stay inside the buffers by the assertions above.
            let at = unsafe {
                Tile {
                    planes: planes.as_ptr().add(tile * MR),
                    plane: plan.plane,
                    taps,
                    c_in: g.c_in,
                    packed: packed[c0 * k..].as_ptr(),
                    out: out.as_mut_ptr().add(c0 * stride + tile * MR),
                    stride,
                }
            };
            if plan.isa == Isa::Avx512 && g.c_out - c0 >= 2 * NR {
                // SAFETY: the machine has AVX-512 (`Isa::best`); the second block is a whole
                // one, packed right after the first, and its rows follow the first's.
                unsafe { pair_microkernel(at, packed[(c0 + NR) * k..].as_ptr()) };
                c0 += 2 * NR;
            } else {
                // SAFETY: `supported()` holds (checked by `forward`).
                unsafe { microkernel(width, at) };
                c0 += NR;
            }
        }
    }
}

/// Copies the outputs that are real positions from the grid to `y` (`[images, C_out, H_out,
/// W_out]`), adding the bias.
fn copy_out(out: &[f32], bias: Option<&[f32]>, g: &Conv2dGeometry, plan: &Plan, y: &mut [f32]) {
    let stride = plan.tiles * MR;
    for (i, image) in y.chunks_mut(g.image_out()).enumerate() {
        for (c, channel) in image.chunks_mut(g.n()).enumerate() {
            let grid = &out[c * stride..(c + 1) * stride];
            let b = bias.map_or(0.0, |bias| bias[c]);
            for (r, line) in channel.chunks_mut(g.w_out).enumerate() {
                let at = plan.line(i, r);
                let src = &grid[at..at + g.w_out];
                if b == 0.0 {
                    line.copy_from_slice(src);
                } else {
                    line.iter_mut().zip(src).for_each(|(d, &s)| *d = s + b);
                }
            }
        }
    }
}

/// Output channels per weight-gradient microkernel call (`dy` rows; the grid holds whole
/// blocks, the channels past `C_out` stay zero).
const GRAD_ROWS: usize = 4;
/// Taps per weight-gradient microkernel call (the last call of a channel may repeat tap
/// offsets whose sums are dropped).
const GRAD_TAPS: usize = 3;

/// `dW` summed over the images `images`, chunk by chunk.
fn weight_grad_f32(
    x: &[f32],
    dy: &[f32],
    g: &Conv2dGeometry,
    plan: &Plan,
    images: Range<usize>,
) -> Vec<f32> {
    let taps = g.kh * g.kw;
    let k = g.c_in * taps;
    let mut dw = vec![0.0; g.c_out * k];
    let mut scratch = Scratch::new(g, plan);
    let blocks = g.c_out.div_ceil(GRAD_ROWS);
    let stride = plan.tiles * MR;
    // Tap offsets padded to whole calls by repeating offset 0.
    let mut offsets: Vec<usize> = plan.taps[..taps].to_vec();
    offsets.resize(taps.next_multiple_of(GRAD_TAPS), plan.taps[0]);
    for first in images.clone().step_by(plan.chunk) {
        let count = plan.chunk.min(images.end - first);
        fill_planes(
            &x[first * g.image_in()..(first + count) * g.image_in()],
            g,
            plan,
            &mut scratch.planes,
        );
        // `dy` on the grid; past this chunk's last image up to a whole vector, zeros (a
        // shorter last chunk would otherwise meet the previous chunk's values there).
        let len = (count * plan.image_rows * plan.row).next_multiple_of(8);
        let dy_chunk = &dy[first * g.image_out()..(first + count) * g.image_out()];
        for (c, row) in scratch.grid.chunks_mut(stride).take(g.c_out).enumerate() {
            for i in 0..count {
                let channel = &dy_chunk[(i * g.c_out + c) * g.n()..][..g.n()];
                for (y, line) in channel.chunks(g.w_out).enumerate() {
                    let at = plan.line(i, y);
                    row[at..at + g.w_out].copy_from_slice(line);
                }
            }
            row[count * plan.image_rows * plan.row..len].fill(0.0);
        }
        assert!(len <= stride && offsets.iter().all(|&o| len + o <= plan.plane));
        for block in 0..blocks {
            for c in 0..g.c_in {
                for (t0, group) in offsets.chunks(GRAD_TAPS).enumerate() {
                    let mut sums = [[0.0; GRAD_TAPS]; GRAD_ROWS];
                    // SAFETY: `supported()` holds (checked by `weight_grad`); the rows of
                    // `grid` hold `stride ≥ len` elements and each plane read ends at
                    // `len + offset ≤ plane` (asserted above).
                    unsafe {
                        grad_microkernel(
                            scratch.grid.as_ptr().add(block * GRAD_ROWS * stride),
                            stride,
                            scratch.planes.as_ptr().add(c * plan.plane),
                            group.try_into().expect("whole groups"),
                            len,
                            &mut sums,
                        );
                    }
                    for (r, sums) in sums.iter().enumerate() {
                        let o = block * GRAD_ROWS + r;
                        for (t, &sum) in sums.iter().enumerate() {
                            let tap = t0 * GRAD_TAPS + t;
                            if o < g.c_out && tap < taps {
                                dw[o * k + c * taps + tap] += sum;
                            }
                        }
                    }
                }
            }
        }
    }
    dw
}

/// `sums[r][t] = Σ_{j < len} dy[r·stride + j] · plane[offsets[t] + j]`.
///
/// # Safety
/// AVX2 and FMA are available; `dy + r·stride` for `r <` [`GRAD_ROWS`] and
/// `plane + offsets[t]` are followed by `len` readable elements; `len` is a multiple of 8.
#[target_feature(enable = "avx2,fma")]
unsafe fn grad_microkernel(
    dy: *const f32,
    stride: usize,
    plane: *const f32,
    offsets: [usize; GRAD_TAPS],
    len: usize,
    sums: &mut [[f32; GRAD_TAPS]; GRAD_ROWS],
) {
    // SAFETY: every load is within the ranges the caller guarantees.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); GRAD_TAPS]; GRAD_ROWS];
        for j in (0..len).step_by(8) {
            let xs = offsets.map(|o| _mm256_loadu_ps(plane.add(o + j)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let d = _mm256_loadu_ps(dy.add(r * stride + j));
                for (a, &x) in acc.iter_mut().zip(&xs) {
                    *a = _mm256_fmadd_ps(d, x, *a);
                }
            }
        }
        for (sums, acc) in sums.iter_mut().zip(&acc) {
            for (s, &a) in sums.iter_mut().zip(acc) {
                *s = horizontal_sum(a);
            }
        }
    }
}

/// The sum of the eight lanes of `v`.
#[inline(always)]
unsafe fn horizontal_sum(v: __m256) -> f32 {
    // SAFETY: inlined into `grad_microkernel`, which has AVX enabled.
    unsafe {
        let halves = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
        _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)))
    }
}

/// Where one forward microkernel call reads and writes.
#[derive(Clone, Copy)]
struct Tile<'a> {
    /// The chunk's input planes, offset to the call's first position.
    planes: *const f32,
    /// Elements per input channel's plane.
    plane: usize,
    /// Plane offsets of the kernel taps.
    taps: &'a [usize],
    c_in: usize,
    /// The call's block of packed weights.
    packed: *const f32,
    /// The call's first output, of its first channel.
    out: *mut f32,
    /// Elements per output channel on the grid.
    stride: usize,
}

/// `width` (1 to [`NR`]) output channels at [`MR`] consecutive plane positions.
///
/// # Safety
/// AVX2 and FMA are available; for every input channel `c < c_in` and tap offset `o`,
/// `planes + c·plane + o` is followed by [`MR`] readable elements; `packed` holds
/// `c_in · taps.len() · width` elements; `out + r·stride` is followed by [`MR`] writable
/// elements for `r < width`.
#[target_feature(enable = "avx2,fma")]
unsafe fn microkernel(width: usize, tile: Tile<'_>) {
    // SAFETY: forwarded from the caller; each arm's block width equals `width`.
    unsafe {
        match width {
            6 => block::<6>(tile),
            5 => block::<5>(tile),
            4 => block::<4>(tile),
            3 => block::<3>(tile),
            2 => block::<2>(tile),
            _ => block::<1>(tile),
        }
    }
}

/// [`microkernel`] for a block of `N` output channels, accumulators in registers.
#[inline(always)]
unsafe fn block<const N: usize>(tile: Tile<'_>) {
    let Tile {
        planes,
        plane,
        taps,
        c_in,
        packed,
        out,
        stride,
    } = tile;
    // SAFETY: inlined into `microkernel`, whose contract covers every access.
    unsafe {
        let mut low: [__m256; N] = [_mm256_setzero_ps(); N];
        let mut high: [__m256; N] = [_mm256_setzero_ps(); N];
        let mut weights = packed;
        for c in 0..c_in {
            let channel = planes.add(c * plane);
            for &offset in taps {
                let at = channel.add(offset);
                let (x_low, x_high) = (_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8)));
                for r in 0..N {
                    let w = _mm256_broadcast_ss(&*weights.add(r));
                    low[r] = _mm256_fmadd_ps(x_low, w, low[r]);
                    high[r] = _mm256_fmadd_ps(x_high, w, high[r]);
                }
                weights = weights.add(N);
            }
        }
        for r in 0..N {
            let o = out.add(r * stride);
            _mm256_storeu_ps(o, low[r]);
            _mm256_storeu_ps(o.add(8), high[r]);
        }
    }
}

/// Two whole blocks of output channels ([`NR`] each, 12 accumulators) at [`MR`] consecutive
/// plane positions, one 16-lane register per channel: `tile` for the first block,
/// `second` the packed weights of the next (whose output rows follow the first's).
///
/// # Safety
/// AVX-512 (foundation) is available; `tile` is valid for [`microkernel`] at width [`NR`]
/// and so is `second` for the next block, whose `NR` output rows `out + r·stride`
/// (`NR ≤ r < 2·NR`) are writable.
#[target_feature(enable = "avx512f")]
unsafe fn pair_microkernel(tile: Tile<'_>, second: *const f32) {
    // SAFETY: every access is within the ranges the caller guarantees.
    unsafe {
        let mut acc: [__m512; 2 * NR] = [_mm512_setzero_ps(); 2 * NR];
        let (mut first, mut second) = (tile.packed, second);
        for c in 0..tile.c_in {
            let channel = tile.planes.add(c * tile.plane);
            for &offset in tile.taps {
                let x = _mm512_loadu_ps(channel.add(offset));
                for r in 0..NR {
                    acc[r] = _mm512_fmadd_ps(x, _mm512_set1_ps(*first.add(r)), acc[r]);
                    acc[NR + r] = _mm512_fmadd_ps(x, _mm512_set1_ps(*second.add(r)), acc[NR + r]);
                }
                first = first.add(NR);
                second = second.add(NR);
            }
        }
        for (r, &a) in acc.iter().enumerate() {
            _mm512_storeu_ps(tile.out.add(r * tile.stride), a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{reference_forward, values};
    use super::*;
    use crate::Conv2dOptions;

    /// A stride-1, ungrouped convolution: `[batch, c_in, h, w]`, `[c_out, kh, kw]`,
    /// padding `[(top, bottom), (left, right)]`, dilation.
    fn geometry(
        x: [usize; 4],
        [c_out, kh, kw]: [usize; 3],
        padding: [(usize, usize); 2],
        dilation: [usize; 2],
    ) -> Conv2dGeometry {
        let options = Conv2dOptions {
            stride: [1, 1],
            padding,
            dilation,
            groups: 1,
        };
        Conv2dGeometry::new(x, [c_out, x[1], kh, kw], &options)
    }

    /// Whether this machine runs the microkernels (AVX2 and FMA). The tests that need them
    /// are ignored where the machine that built them lacked them (`build.rs`); run anyway
    /// (`--include-ignored`), they return at once there, and the report shows
    /// `conv2d::tests::direct_route_untested_here_no_avx2_fma_or_no_std`. A test binary built where
    /// they were found fails where they are not.
    fn runs_here() -> bool {
        let runs = supported();
        assert!(
            runs || !cfg!(build_cpu_has_avx2_fma),
            "built where AVX2 and FMA were found, run where they are not: rebuild"
        );
        if !runs {
            eprintln!("skipped: this machine has no AVX2 and FMA");
        }
        runs
    }

    /// The layout [`forward`] takes for `g`, with each instruction set
    /// this machine has: AVX2, and AVX-512 where it has that too.
    fn plans(g: &Conv2dGeometry) -> Vec<Plan> {
        let plan = Plan::new(g, threads()).unwrap_or_else(|| panic!("declined {g:?}"));
        let mut isas = vec![Isa::Avx2];
        if Isa::best() == Isa::Avx512 {
            isas.push(Isa::Avx512);
        } else {
            eprintln!("no AVX-512 here: only the AVX2 microkernels are tested");
        }
        isas.into_iter()
            .map(|isa| {
                let mut plan = plan;
                plan.isa = isa;
                plan
            })
            .collect()
    }

    /// `len` deterministic values in [-1, 1), rounded to f32.
    fn f32_values(len: usize, seed: u64) -> Vec<f32> {
        values(len, seed).into_iter().map(|v| v as f32).collect()
    }

    fn widen(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&v| f64::from(v)).collect()
    }

    /// `x`, `w` and `bias` for `g` in f32, and the expected output from direct loops in f64.
    fn case(g: &Conv2dGeometry, seed: u64) -> ([Vec<f32>; 3], Vec<f64>) {
        let x = f32_values(g.batch * g.image_in(), seed);
        let w = f32_values(g.c_out * g.k(), seed + 1);
        let bias = f32_values(g.c_out, seed + 2);
        let mut expected = reference_forward(&widen(&x), &widen(&w), g);
        for (j, v) in expected.iter_mut().enumerate() {
            *v += f64::from(bias[(j / g.n()) % g.c_out]);
        }
        ([x, w, bias], expected)
    }

    fn assert_close(actual: &[f32], expected: &[f64], g: &Conv2dGeometry) {
        assert_eq!(actual.len(), expected.len(), "{g:?}");
        for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (f64::from(a) - e).abs() < 1e-4,
                "y[{i}] = {a}, expected {e}, {g:?}"
            );
        }
    }

    /// Stride-1 geometries this route takes: CIFAR's, several chunks with a short last one,
    /// every block width, padding on one side or none, dilation, kernels as large as the
    /// image.
    fn geometries() -> Vec<Conv2dGeometry> {
        let same = [(1, 1), (1, 1)];
        vec![
            geometry([3, 4, 8, 8], [5, 3, 3], same, [1, 1]), // ResNet's 3×3
            geometry([2, 16, 32, 32], [16, 3, 3], same, [1, 1]), // CIFAR's first stage
            geometry([20, 3, 8, 8], [16, 3, 3], same, [1, 1]), // several chunks, the last partial
            geometry([2, 1, 5, 7], [13, 5, 5], [(2, 2), (2, 2)], [1, 1]), // blocks 6, 6, 1
            geometry([2, 8, 8, 8], [18, 3, 3], same, [1, 1]), // blocks 6, 6, 6
            geometry([3, 2, 6, 7], [4, 3, 3], [(2, 2), (2, 2)], [2, 2]), // dilated "same"
            geometry([2, 2, 5, 5], [3, 5, 5], [(0, 0), (0, 0)], [1, 1]), // no padding
            geometry([2, 2, 6, 6], [3, 2, 2], [(0, 1), (0, 1)], [1, 1]), // padding after
            geometry([2, 2, 6, 6], [3, 2, 2], [(1, 0), (1, 0)], [1, 1]), // padding before
            geometry([2, 3, 1, 1], [2, 3, 3], same, [1, 1]), // one pixel
            geometry([2, 2, 4, 3], [7, 1, 3], [(0, 0), (1, 1)], [1, 1]), // 1×3
            geometry([1, 2, 3, 9], [2, 7, 7], [(3, 3), (3, 3)], [1, 1]), // kernel over the image
            geometry([2, 2, 5, 6], [3, 3, 3], [(2, 0), (0, 2)], [1, 1]), // shifted window
        ]
    }

    #[test]
    #[cfg_attr(
        not(build_cpu_has_avx2_fma),
        ignore = "needs AVX2 and FMA, which the machine that built the tests lacks"
    )]
    fn forward_matches_direct_loops() {
        if !runs_here() {
            return;
        }
        for (i, g) in geometries().iter().enumerate() {
            assert!(Plan::new(g, 2).is_some(), "declined {g:?}");
            let ([x, w, bias], expected) = case(g, 10 * i as u64);
            let mut y = vec![f32::NAN; g.batch * g.image_out()];
            assert!(forward(&x, &w, Some(&bias), g, &mut y));
            assert_close(&y, &expected, g);
            for plan in plans(g) {
                let mut y = vec![f32::NAN; g.batch * g.image_out()];
                forward_planned(&x, &w, Some(&bias), g, &plan, &mut y);
                assert_close(&y, &expected, g);
            }
        }
    }

    /// `dW` and, per weight, the sum of the magnitudes of its terms, by direct loops.
    fn reference_weight_grad(x: &[f64], dy: &[f64], g: &Conv2dGeometry) -> (Vec<f64>, Vec<f64>) {
        let len = g.c_out * g.k();
        let (mut dw, mut scale) = (vec![0.0; len], vec![0.0; len]);
        for b in 0..g.batch {
            for o in 0..g.c_out {
                for c in 0..g.c_in {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let at = ((o * g.c_in + c) * g.kh + ky) * g.kw + kx;
                            for y in 0..g.h_out {
                                for xo in 0..g.w_out {
                                    let iy = (y + ky * g.dilation[0]).checked_sub(g.pad[0]);
                                    let ix = (xo + kx * g.dilation[1]).checked_sub(g.pad[1]);
                                    let (Some(iy), Some(ix)) = (iy, ix) else {
                                        continue;
                                    };
                                    if iy >= g.h || ix >= g.w {
                                        continue;
                                    }
                                    let term = dy[((b * g.c_out + o) * g.h_out + y) * g.w_out + xo]
                                        * x[((b * g.c_in + c) * g.h + iy) * g.w + ix];
                                    dw[at] += term;
                                    scale[at] += term.abs();
                                }
                            }
                        }
                    }
                }
            }
        }
        (dw, scale)
    }

    #[test]
    #[cfg_attr(
        not(build_cpu_has_avx2_fma),
        ignore = "needs AVX2 and FMA, which the machine that built the tests lacks"
    )]
    fn weight_grad_matches_direct_loops() {
        if !runs_here() {
            return;
        }
        for (i, g) in geometries().iter().enumerate() {
            let x = f32_values(g.batch * g.image_in(), 50 + i as u64);
            let dy = f32_values(g.batch * g.image_out(), 60 + i as u64);
            let (expected, scale) = reference_weight_grad(&widen(&x), &widen(&dy), g);
            let mut dw = vec![f32::NAN; expected.len()];
            assert!(weight_grad(&x, &dy, g, &mut dw), "declined {g:?}");
            for (j, ((&a, &e), &s)) in dw.iter().zip(&expected).zip(&scale).enumerate() {
                assert!(
                    (f64::from(a) - e).abs() <= 1e-5 * s + 1e-6,
                    "dw[{j}] = {a}, expected {e}, {g:?}"
                );
            }
        }
    }

    /// A task's scratch goes from a full chunk to a shorter last one: the planes of the
    /// images it no longer has still hold the previous chunk's values, which no output of
    /// the shorter chunk may read.
    #[test]
    #[cfg_attr(
        not(build_cpu_has_avx2_fma),
        ignore = "needs AVX2 and FMA, which the machine that built the tests lacks"
    )]
    fn a_short_chunk_reads_only_its_own_images() {
        if !runs_here() {
            return;
        }
        let g = geometry([5, 3, 8, 8], [4, 3, 3], [(1, 1), (1, 1)], [1, 1]);
        let plan = Plan::new(&g, 1).expect("takes this geometry");
        assert_eq!(plan.chunk, 5);
        let ([x, w, bias], expected) = case(&g, 7);
        let mut scratch = Scratch::new(&g, &plan);
        let mut y = vec![0.0; g.batch * g.image_out()];
        forward_chunk(
            &mut scratch,
            &x,
            &pack(&w, &g),
            Some(&bias),
            &g,
            &plan,
            &mut y,
        );
        // The last two images alone, in the scratch the five filled.
        let (x_tail, expected_tail) = (&x[3 * g.image_in()..], &expected[3 * g.image_out()..]);
        let mut y_tail = vec![f32::NAN; 2 * g.image_out()];
        forward_chunk(
            &mut scratch,
            x_tail,
            &pack(&w, &g),
            Some(&bias),
            &g,
            &plan,
            &mut y_tail,
        );
        assert_close(&y_tail, expected_tail, &g);
    }

    #[test]
    fn declines_what_it_cannot_hold() {
        let strided = Conv2dGeometry {
            stride: [2, 2],
            ..geometry([2, 3, 8, 8], [4, 3, 3], [(1, 1), (1, 1)], [1, 1])
        };
        let grouped = Conv2dGeometry {
            groups: 3,
            ..geometry([2, 3, 8, 8], [3, 3, 3], [(1, 1), (1, 1)], [1, 1])
        };
        let pointwise = geometry([2, 3, 8, 8], [4, 1, 1], [(0, 0), (0, 0)], [1, 1]);
        // Padding beyond the kernel's reach on both sides: outputs wider than a plane row.
        let wide = geometry([2, 3, 8, 8], [4, 3, 3], [(3, 3), (3, 3)], [1, 1]);
        let huge = geometry([1, 1, 9, 9], [1, 9, 9], [(4, 4), (4, 4)], [1, 1]);
        for g in [strided, grouped, pointwise, wide, huge] {
            assert!(Plan::new(&g, 2).is_none(), "took {g:?}");
        }
    }
}
