//! ReLU and its backward pass over large contiguous tensors, in parallel chunks.
//!
//! Flex's element-wise operations run on the calling thread. In a CNN's training step the
//! ReLU of every convolution output and its backward pass are the largest of them: each
//! is a full pass over an activation, and while one core streams it the other waits. Here
//! tensors of at least [`PARALLEL_THRESHOLD`](super::PARALLEL_THRESHOLD) elements are split
//! into chunks that the rayon pool shares; smaller or strided ones, and other dtypes, take
//! Flex's own single-pass operation. The results are the same element for element: a NaN
//! input stays NaN, and its gradient passes through, as in Flex's own ReLU.

use burn_backend::{DType, Element};
use burn_std::Bytes;
use num_traits::Float;

use super::conv2d_gemm::{nchw_kernels_enabled, uninit_vec};
use crate::{FlexTensor, Layout};

/// Elements per task: large enough that dispatch costs nothing, small enough to balance.
#[cfg(feature = "rayon")]
const CHUNK: usize = 1 << 15;

/// Whether these kernels take a tensor of this layout and dtype.
fn applies(t: &FlexTensor) -> bool {
    #[cfg(feature = "rayon")]
    let large = t.layout().num_elements() >= super::PARALLEL_THRESHOLD;
    #[cfg(not(feature = "rayon"))]
    let large = false;
    nchw_kernels_enabled()
        && large
        && matches!(t.dtype(), DType::F32 | DType::F64)
        && t.layout().contiguous_offsets().is_some()
}

/// `f(start, chunk)` for consecutive chunks of `out` (`start` is the chunk's offset), in
/// parallel where rayon is on.
fn for_each_chunk<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Send + Sync) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| f(i * CHUNK, chunk));
    }
    #[cfg(not(feature = "rayon"))]
    f(0, out);
}

/// Whether ReLU passes `x` (and its gradient) through: positive or NaN.
fn passes<T: Float>(x: T) -> bool {
    x.is_nan() | (x > T::zero())
}

/// The contiguous elements of `t`.
fn elements<T: Element + bytemuck::Pod>(t: &FlexTensor) -> &[T] {
    let (start, end) = t.layout().contiguous_offsets().expect("checked contiguous");
    &t.storage::<T>()[start..end]
}

/// `f(a, b)` element-wise, written over `b` when `b` owns its buffer alone (a ReLU's input,
/// an output gradient), else into a new buffer. `a` and `b` have the same shape.
fn map2<T: Element + bytemuck::Pod + Float + Send + Sync>(
    a: Option<&FlexTensor>,
    mut b: FlexTensor,
    f: impl Fn(T, T) -> T + Send + Sync,
) -> FlexTensor {
    if b.is_unique() && b.layout().start_offset() == 0 {
        let n = b.layout().num_elements();
        let a = a.map(elements::<T>);
        for_each_chunk(&mut b.storage_mut::<T>()[..n], |start, out| match a {
            Some(a) => {
                let a = &a[start..start + out.len()];
                out.iter_mut().zip(a).for_each(|(o, &a)| *o = f(a, *o));
            }
            None => out.iter_mut().for_each(|o| *o = f(*o, *o)),
        });
        return b;
    }
    let src = elements::<T>(&b);
    let a = a.map_or(src, elements::<T>);
    let mut out = uninit_vec::<T>(src.len());
    for_each_chunk(&mut out, |start, out| {
        let range = start..start + out.len();
        for ((o, &a), &b) in out.iter_mut().zip(&a[range.clone()]).zip(&src[range]) {
            *o = f(a, b);
        }
    });
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(b.layout().shape().clone()),
        b.dtype(),
    )
}

/// `max(x, 0)` (NaN stays NaN), or `Err(x)` where Flex's own operation takes it.
pub(crate) fn forward(x: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    if !applies(&x) {
        return Err(x);
    }
    // In place when `x` owns its buffer.
    let y = match x.dtype() {
        DType::F32 => map2::<f32>(None, x, |v, _| if passes(v) { v } else { 0.0 }),
        _ => map2::<f64>(None, x, |v, _| if passes(v) { v } else { 0.0 }),
    };
    Ok(y)
}

/// The gradient of ReLU from its output and the output gradient, or `Err(grad)` where Flex's
/// own operation takes them.
pub(crate) fn backward(output: &FlexTensor, grad: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    if !applies(output)
        || !applies(&grad)
        || output.dtype() != grad.dtype()
        || output.layout().shape() != grad.layout().shape()
    {
        return Err(grad);
    }
    let dx = match output.dtype() {
        DType::F32 => map2::<f32>(Some(output), grad, |y, g| if passes(y) { g } else { 0.0 }),
        _ => map2::<f64>(Some(output), grad, |y, g| if passes(y) { g } else { 0.0 }),
    };
    Ok(dx)
}

#[cfg(all(test, feature = "rayon"))]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use burn_std::Shape;

    const LEN: usize = super::super::PARALLEL_THRESHOLD + 1234;

    fn tensor(data: Vec<f32>) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(Shape::from(alloc::vec![2, LEN / 2])),
            DType::F32,
        )
    }

    fn values(seed: usize) -> Vec<f32> {
        (0..LEN)
            .map(|i| match (i * 31 + seed) % 97 {
                0 => f32::NAN,
                1 => 0.0,
                2 => -0.0,
                k => k as f32 - 48.5,
            })
            .collect()
    }

    fn bits(t: &FlexTensor) -> Vec<u32> {
        elements::<f32>(t).iter().map(|v| v.to_bits()).collect()
    }

    /// Forward and backward, in place and into a new buffer, against the definition.
    #[test]
    fn matches_the_definition_in_place_and_not() {
        let x = values(0);
        let want: Vec<u32> = x
            .iter()
            .map(|&v| if v.is_nan() || v > 0.0 { v } else { 0.0 }.to_bits())
            .collect();
        let shared = tensor(x.clone());
        let keep = shared.clone();
        let y_new = forward(shared).expect("large f32 is taken");
        assert_eq!(bits(&y_new), want);
        assert!(bits(&keep) == x.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        let y_in_place = forward(tensor(x.clone())).expect("large f32 is taken");
        assert_eq!(bits(&y_in_place), want);

        let g = values(5);
        let want: Vec<u32> = want
            .iter()
            .zip(&g)
            .map(|(&y, &g)| {
                let y = f32::from_bits(y);
                if y.is_nan() || y > 0.0 { g } else { 0.0 }.to_bits()
            })
            .collect();
        let grad = tensor(g.clone());
        let held = grad.clone();
        assert_eq!(bits(&backward(&y_new, grad).unwrap()), want);
        let g_bits: Vec<u32> = g.iter().map(|v| v.to_bits()).collect();
        assert!(
            bits(&held) == g_bits,
            "a shared gradient is not overwritten"
        );
        assert_eq!(bits(&backward(&y_new, tensor(g)).unwrap()), want);
    }

    #[test]
    fn small_tensors_take_flex_own_route() {
        let small = FlexTensor::new(
            Bytes::from_elems(alloc::vec![1.0f32; 8]),
            Layout::contiguous(Shape::from(alloc::vec![8])),
            DType::F32,
        );
        assert!(forward(small).is_err());
    }
}
