//! ReLU and its backward pass over large slices, in parallel chunks.
//!
//! Flex's element-wise operations run on the calling thread. In a CNN's training step the
//! ReLU of every convolution output and its backward pass are the largest of them: each
//! is a full pass over an activation, and while one core streams it the other waits. Here
//! the slice is split into chunks that the rayon pool shares (the caller decides from what
//! size that pays: Flex's wiring takes tensors of at least 256 Ki elements). The results are
//! the same element for element as Flex's own ReLU: a NaN input stays NaN, and its gradient
//! passes through.

use alloc::vec::Vec;

use crate::{Scalar, for_each_chunk, uninit_vec};

/// Whether ReLU passes `x` (and its gradient) through: positive or NaN.
fn passes<T: Scalar>(x: T) -> bool {
    x.is_nan() | (x > T::zero())
}

/// `max(x, 0)` of each element (NaN stays NaN) into a new vector.
pub fn relu<T: Scalar>(x: &[T]) -> Vec<T> {
    let mut out = uninit_vec::<T>(x.len());
    for_each_chunk(&mut out, |start, out| {
        let x = &x[start..start + out.len()];
        out.iter_mut()
            .zip(x)
            .for_each(|(o, &v)| *o = if passes(v) { v } else { T::zero() });
    });
    out
}

/// [`relu`] in place.
pub fn relu_in_place<T: Scalar>(x: &mut [T]) {
    for_each_chunk(x, |_, out| {
        out.iter_mut()
            .for_each(|o| *o = if passes(*o) { *o } else { T::zero() });
    });
}

/// The gradient of ReLU from its output and the output gradient `grad`: `grad` where the
/// output is positive or NaN, else zero, into a new vector.
///
/// # Panics
/// If `output` and `grad` differ in length.
pub fn relu_backward<T: Scalar>(output: &[T], grad: &[T]) -> Vec<T> {
    assert_eq!(output.len(), grad.len(), "relu_backward: lengths");
    let mut out = uninit_vec::<T>(grad.len());
    for_each_chunk(&mut out, |start, out| {
        let range = start..start + out.len();
        for ((o, &y), &g) in out.iter_mut().zip(&output[range.clone()]).zip(&grad[range]) {
            *o = if passes(y) { g } else { T::zero() };
        }
    });
    out
}

/// [`relu_backward`] written over `grad`.
///
/// # Panics
/// If `output` and `grad` differ in length.
pub fn relu_backward_in_place<T: Scalar>(output: &[T], grad: &mut [T]) {
    assert_eq!(output.len(), grad.len(), "relu_backward_in_place: lengths");
    for_each_chunk(grad, |start, out| {
        let output = &output[start..start + out.len()];
        out.iter_mut()
            .zip(output)
            .for_each(|(o, &y)| *o = if passes(y) { *o } else { T::zero() });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several chunks and a partial last one.
    const LEN: usize = 3 * (1 << 15) + 1234;

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

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    /// Forward and backward, in place and into a new buffer, against the definition.
    #[test]
    fn matches_the_definition_in_place_and_not() {
        let x = values(0);
        let want: Vec<u32> = x
            .iter()
            .map(|&v| if v.is_nan() || v > 0.0 { v } else { 0.0 }.to_bits())
            .collect();
        let y_new = relu(&x);
        assert_eq!(bits(&y_new), want);
        let mut y_in_place = x.clone();
        relu_in_place(&mut y_in_place);
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
        assert_eq!(bits(&relu_backward(&y_new, &g)), want);
        let mut g_in_place = g.clone();
        relu_backward_in_place(&y_new, &mut g_in_place);
        assert_eq!(bits(&g_in_place), want);
    }

    /// f64 takes the same code.
    #[test]
    fn f64_matches_the_definition() {
        let x: Vec<f64> = values(3).into_iter().map(f64::from).collect();
        let y = relu(&x);
        for (&v, &y) in x.iter().zip(&y) {
            let want = if v.is_nan() || v > 0.0 { v } else { 0.0 };
            assert_eq!(y.to_bits(), want.to_bits());
        }
    }
}
