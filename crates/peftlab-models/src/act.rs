//! Activations with a fast CPU inference path.
//!
//! burn-flex computes GELU and SiLU one element at a time through libm (≈ 5 ns per element, one
//! thread), which made GELU as expensive as a whole MLP GEMM in MiniLM's forward pass
//! (docs/performance.md). When a tensor is f32 on the flex device without autodiff, these
//! functions take its buffer, apply a branch-free, vectorizable kernel on both cores (AVX-512 /
//! AVX2+FMA chosen at run time, plain SIMD otherwise), and hand it back.
//!
//! Under autodiff on the flex device (training), burn's GELU is the same scalar libm loop in
//! the forward pass and a second one (erf and exp) in the backward pass — 20 % of a MiniLM LoRA
//! step. There the activation is applied as its *local linearization*: one vectorized pass over
//! `x` gives the slope `s = f'(x)` and the offset `k = f(x) − x·f'(x)`, both constants, and the
//! result is `x·s + k`. Its value is `f(x)` (to rounding: `|x·s|` and `|k|` are at most a few
//! times `|f(x)| + x²·φ(x)`, error < 1e-7 absolute in the tests) and its gradient is exactly
//! `grad·f'(x)`, so burn's autodiff sees one multiply and one add. On other backends or dtypes
//! these functions call burn's own operation.
//!
//! Accuracy of the fast path (tested against f64 references): `exp` relative error < 2e-7;
//! `erf` absolute error < 2e-7 (Abramowitz & Stegun 7.1.26); so GELU is within
//! `1e-7·|x| + 1e-7` of the exact value, well inside the 1e-5 parity tolerances.

use burn::tensor::{Tensor, TensorData};

/// Which activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `0.5·x·(1 + erf(x/√2))` (BERT, DeBERTa: `"gelu"`).
    GeluErf,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (GPT-2: `"gelu_new"`).
    GeluTanh,
    /// `x·σ(x)` (Llama: `"silu"`).
    Silu,
}

/// Apply `act` to `x` (any shape).
pub fn apply<const D: usize>(act: Activation, x: Tensor<D>) -> Tensor<D> {
    if fast_path(&x) {
        let dims = x.dims();
        let device = x.device();
        let mut v = x
            .into_data()
            .try_into_vec::<f32>()
            .expect("fast_path checked the dtype is f32");
        apply_slice(act, &mut v);
        return Tensor::from_data(TensorData::new(v, dims), &device);
    }
    #[cfg(feature = "flex")]
    if fast_path_autodiff(&x)
        && let Some(y) = flex_op::apply(act, &x)
    {
        return y;
    }
    match act {
        Activation::GeluErf => burn::tensor::activation::gelu(x),
        Activation::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044715) * c;
            x * (inner.tanh() + 1.0) * 0.5
        }
        Activation::Silu => burn::tensor::activation::silu(x),
    }
}

#[cfg(feature = "flex")]
fn fast_path<const D: usize>(x: &Tensor<D>) -> bool {
    let device = x.device();
    !device.is_autodiff()
        && device == burn::tensor::Device::flex()
        && x.dtype() == burn::tensor::DType::F32
}

#[cfg(not(feature = "flex"))]
fn fast_path<const D: usize>(_: &Tensor<D>) -> bool {
    false
}

#[cfg(feature = "flex")]
fn fast_path_autodiff<const D: usize>(x: &Tensor<D>) -> bool {
    let device = x.device();
    device.is_autodiff()
        && device.without_autodiff() == burn::tensor::Device::flex()
        && x.dtype() == burn::tensor::DType::F32
}

use peftlab_linalg::simd::exp;

/// `erf(x)`, Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7 in exact arithmetic).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    (1.0 - poly * exp(-a * a)).copysign(x)
}

peftlab_linalg::vectorized! {
    fn kernel_dispatch(act: Activation, v: &mut [f32]) {
        // one loop per activation so each is a straight-line, vectorizable body
        match act {
            Activation::GeluErf => {
                for x in v {
                    *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2));
                }
            }
            Activation::GeluTanh => {
                const C: f32 = 0.797_884_6; // √(2/π)
                for x in v {
                    let u = C * (*x + 0.044_715 * *x * *x * *x);
                    // tanh(u) = 1 − 2/(e^{2u} + 1)
                    let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
                    *x = 0.5 * *x * (1.0 + tanh);
                }
            }
            Activation::Silu => {
                for x in v {
                    *x /= 1.0 + exp(-*x);
                }
            }
        }
    }
}

peftlab_linalg::vectorized! {
    /// Slope `f'(x)` and offset `f(x) − x·f'(x)` of the activation at each `x`, written so that the
    /// offset has no cancellation (it is `−x²·(…)` in closed form for all three).
    fn linearize_dispatch(act: Activation, x: &[f32], slope: &mut [f32], offset: &mut [f32]) {
        const INV_SQRT_2PI: f32 = 0.398_942_3; // 1/√(2π)
        match act {
            Activation::GeluErf => {
                // f = x·Φ(x), f' = Φ + x·φ, f − x·f' = −x²·φ
                for ((&x, s), k) in x.iter().zip(slope.iter_mut()).zip(offset.iter_mut()) {
                    let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
                    let pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
                    *s = cdf + x * pdf;
                    *k = -x * x * pdf;
                }
            }
            Activation::GeluTanh => {
                // f = ½x(1 + t), t = tanh(u), u = C(x + a·x³);
                // f' = ½(1 + t) + ½x(1 − t²)·C(1 + 3a·x²), f − x·f' = −½x²(1 − t²)·C(1 + 3a·x²)
                const C: f32 = 0.797_884_6;
                const A: f32 = 0.044_715;
                for ((&x, s), k) in x.iter().zip(slope.iter_mut()).zip(offset.iter_mut()) {
                    let u = C * (x + A * x * x * x);
                    let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
                    let du = C * (1.0 + 3.0 * A * x * x);
                    let sech2 = 1.0 - t * t;
                    *s = 0.5 * (1.0 + t) + 0.5 * x * sech2 * du;
                    *k = -0.5 * x * x * sech2 * du;
                }
            }
            Activation::Silu => {
                // f = x·σ, f' = σ + x·σ(1 − σ), f − x·f' = −x²·σ(1 − σ)
                for ((&x, s), k) in x.iter().zip(slope.iter_mut()).zip(offset.iter_mut()) {
                    let sig = 1.0 / (1.0 + exp(-x));
                    let ds = sig * (1.0 - sig);
                    *s = sig + x * ds;
                    *k = -x * x * ds;
                }
            }
        }
    }
}

/// `(f'(x), f(x) − x·f'(x))` for every element of `x`, split over the rayon pool when large:
/// `x·slope + offset` is the activation, and `slope` its derivative.
pub fn linearize_slice(act: Activation, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 15;
    let mut slope = vec![0.0; x.len()];
    let mut offset = vec![0.0; x.len()];
    if x.len() <= CHUNK {
        linearize_dispatch(act, x, &mut slope, &mut offset);
    } else {
        x.par_chunks(CHUNK)
            .zip(slope.par_chunks_mut(CHUNK))
            .zip(offset.par_chunks_mut(CHUNK))
            .for_each(|((x, s), k)| linearize_dispatch(act, x, s, k));
    }
    (slope, offset)
}

/// Under autodiff on flex: one custom operation whose forward is one vectorized pass giving
/// `f(x)` and `f'(x)` (kept for the backward) and whose backward is `grad·f'(x)`, one more pass.
/// The value is the linearization `x·f'(x) + (f(x) − x·f'(x))`, rounded as two f32 operations.
#[cfg(feature = "flex")]
mod flex_op {
    use super::*;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn::backend::{Autodiff, Flex};
    use burn_flex::FlexTensor;
    use peftlab_linalg::fastpath::{contiguous, f32s, like};
    use rayon::prelude::*;

    const CHUNK: usize = 1 << 15;

    #[derive(Debug)]
    struct ActivationBackward;

    impl Backward<Flex, 1> for ActivationBackward {
        type State = FlexTensor;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let slope = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
                let grad = contiguous(&grad);
                let (g, s) = (f32s(&grad), f32s(&slope));
                let mut out = vec![0.0f32; g.len()];
                out.par_chunks_mut(CHUNK)
                    .zip(g.par_chunks(CHUNK).zip(s.par_chunks(CHUNK)))
                    .for_each(|(o, (g, s))| {
                        for ((o, g), s) in o.iter_mut().zip(g).zip(s) {
                            *o = g * s;
                        }
                    });
                like(&grad, out)
            });
        }
    }

    /// `(f(x), f'(x))`, the value as `x·s + k` of the linearization.
    fn value_and_slope(act: Activation, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let mut y = vec![0.0f32; x.len()];
        let mut slope = vec![0.0f32; x.len()];
        x.par_chunks(CHUNK)
            .zip(y.par_chunks_mut(CHUNK).zip(slope.par_chunks_mut(CHUNK)))
            .for_each(|(x, (y, s))| {
                linearize_dispatch(act, x, s, y); // y holds the offset k
                for ((y, x), s) in y.iter_mut().zip(x).zip(s.iter()) {
                    *y += x * s;
                }
            });
        (y, slope)
    }

    pub(super) fn apply<const D: usize>(act: Activation, x: &Tensor<D>) -> Option<Tensor<D>> {
        let xa = x.clone().try_into_primitive::<Autodiff<Flex>>().ok()?;
        let xf = contiguous(xa.primitive());
        let xs = xf.as_slice::<f32>()?;
        let out = match ActivationBackward
            .prepare::<NoCheckpointing>([xa.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, slope) = value_and_slope(act, xs);
                prep.finish(like(&xf, slope), like(&xf, y))
            }
            OpsKind::UnTracked(prep) => {
                let mut y = xs.to_vec();
                apply_slice(act, &mut y);
                prep.finish(like(&xf, y))
            }
        };
        Some(Tensor::from_primitive::<Autodiff<Flex>>(out))
    }
}

/// Apply `act` in place to an f32 slice, split over the rayon pool when large.
pub fn apply_slice(act: Activation, v: &mut [f32]) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 15;
    if v.len() <= CHUNK {
        kernel_dispatch(act, v);
    } else {
        v.par_chunks_mut(CHUNK)
            .for_each(|c| kernel_dispatch(act, c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf64(x: f64) -> f64 {
        // high-accuracy reference: series for |x| < 3, asymptotic continued fraction beyond
        if x.abs() < 3.0 {
            let mut sum = 0.0;
            let mut term = x;
            let mut n = 0.0;
            while term.abs() > 1e-17 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
            }
            2.0 / std::f64::consts::PI.sqrt() * sum
        } else {
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
            (1.0 - erfc).copysign(x)
        }
    }

    #[test]
    fn fast_kernels_match_f64_references() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.0025).collect();
        let mut max_exp = 0.0f64;
        for &x in &xs {
            let e = f64::from(x) * 8.0;
            let got = f64::from(exp(e as f32));
            max_exp = max_exp.max((got - e.exp()).abs() / e.exp());
        }
        assert!(max_exp < 2e-7, "exp relative error {max_exp}");
        for (act, reference) in [
            (
                Activation::GeluErf,
                (|x: f64| 0.5 * x * (1.0 + erf64(x / 2f64.sqrt()))) as fn(f64) -> f64,
            ),
            (Activation::GeluTanh, |x: f64| {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }),
            (Activation::Silu, |x: f64| x / (1.0 + (-x).exp())),
        ] {
            let mut v = xs.clone();
            apply_slice(act, &mut v);
            for (&x, &y) in xs.iter().zip(&v) {
                let want = reference(f64::from(x));
                let tol = 2e-7 * f64::from(x).abs() + 2e-7;
                assert!(
                    (f64::from(y) - want).abs() <= tol,
                    "{act:?}({x}) = {y}, want {want}"
                );
            }
        }
        // extremes stay finite and saturate correctly
        let mut v = vec![-1e4f32, 1e4, 0.0, -0.0];
        apply_slice(Activation::GeluErf, &mut v);
        assert_eq!(v[..3], [0.0, 1e4, 0.0]);
        let mut v = vec![-1e4f32, 1e4];
        apply_slice(Activation::Silu, &mut v);
        assert!(v[0].abs() < 1e-30 && v[1] == 1e4, "{v:?}");
    }

    /// An activation, its f64 reference and the reference's derivative.
    type Reference = (Activation, fn(f64) -> f64, fn(f64) -> f64);

    /// The three activations and their derivatives in f64.
    fn references() -> [Reference; 3] {
        fn gelu(x: f64) -> f64 {
            0.5 * x * (1.0 + erf64(x / 2f64.sqrt()))
        }
        fn dgelu(x: f64) -> f64 {
            0.5 * (1.0 + erf64(x / 2f64.sqrt()))
                + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
        }
        fn u(x: f64) -> f64 {
            (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)
        }
        fn gelu_tanh(x: f64) -> f64 {
            0.5 * x * (1.0 + u(x).tanh())
        }
        fn dgelu_tanh(x: f64) -> f64 {
            let t = u(x).tanh();
            let du = (2.0 / std::f64::consts::PI).sqrt() * (1.0 + 3.0 * 0.044715 * x * x);
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
        }
        fn silu(x: f64) -> f64 {
            x / (1.0 + (-x).exp())
        }
        fn dsilu(x: f64) -> f64 {
            let s = 1.0 / (1.0 + (-x).exp());
            s + x * s * (1.0 - s)
        }
        [
            (Activation::GeluErf, gelu, dgelu),
            (Activation::GeluTanh, gelu_tanh, dgelu_tanh),
            (Activation::Silu, silu, dsilu),
        ]
    }

    /// Slope and `x·slope + offset` against f64 derivatives and values. Tolerance: the f32 kernels
    /// are good to ~2e-7; the slope and the recombined value get `4e-7·(1 + |x|)` (one extra
    /// rounding of terms up to a few times the result). A sign error, a missing `x·φ` term or an
    /// offset with the wrong power of `x` is off by ≥ 1e-3 somewhere on [-10, 10].
    #[test]
    fn linearization_gives_value_and_derivative() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.0025).collect();
        for (act, f, df) in references() {
            let (slope, offset) = linearize_slice(act, &xs);
            for ((&x, &s), &k) in xs.iter().zip(&slope).zip(&offset) {
                let x64 = f64::from(x);
                let tol = 4e-7 * (1.0 + x64.abs());
                let value = f64::from(x * s + k);
                assert!((value - f(x64)).abs() <= tol, "{act:?}({x}) = {value}");
                assert!((f64::from(s) - df(x64)).abs() <= tol, "{act:?}'({x}) = {s}");
            }
        }
        // saturation stays finite: far left the activation and its slope vanish, far right the
        // slope is 1 and the offset ~0 (exp's clamp at e^-87 leaves ~1e-30)
        let (s, k) = linearize_slice(Activation::GeluErf, &[-1e4, 1e4]);
        assert!(s[1] == 1.0 && k[1].abs() < 1e-20, "{s:?} {k:?}");
        assert!(s[0].abs() < 1e-30 && k[0].abs() < 1e-20, "{s:?} {k:?}");
    }

    /// Under autodiff on the flex device `apply` takes the linearized path: its values and the
    /// gradients it passes back equal burn's own GELU / SiLU (which compute them with libm) within
    /// 2e-6 on inputs in [-6, 6] and upstream gradients in [-1, 1].
    #[test]
    fn autodiff_path_matches_burn_gradients() {
        let dev = burn::tensor::Device::default().autodiff();
        let n = 600;
        let xs: Vec<f32> = (0..n).map(|i| (i as f32 - 300.0) * 0.02).collect();
        let ws: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let w = Tensor::<2>::from_data(TensorData::new(ws, [20, 30]), &dev);
        for act in [Activation::GeluErf, Activation::Silu] {
            let run = |ours: bool| {
                let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [20, 30]), &dev)
                    .require_grad();
                let y = match (ours, act) {
                    (true, _) => apply(act, x.clone()),
                    (false, Activation::Silu) => burn::tensor::activation::silu(x.clone()),
                    (false, _) => burn::tensor::activation::gelu(x.clone()),
                };
                let grads = (y.clone() * w.clone()).sum().backward();
                let g = x.grad(&grads).expect("x requires grad");
                (
                    y.try_to_vec_as::<f64>().unwrap(),
                    g.try_to_vec_as::<f64>().unwrap(),
                )
            };
            let (y, g) = run(true);
            let (y_ref, g_ref) = run(false);
            for i in 0..n {
                assert!((y[i] - y_ref[i]).abs() < 2e-6, "{act:?} value {i}");
                assert!((g[i] - g_ref[i]).abs() < 2e-6, "{act:?} grad {i}");
            }
        }
    }

    #[test]
    fn tensor_path_equals_burn_reference() {
        let dev = burn::tensor::Device::default();
        let x = Tensor::<2>::from_data(
            TensorData::new(
                (0..600).map(|i| (i as f32 - 300.0) * 0.02).collect(),
                [20, 30],
            ),
            &dev,
        );
        for (act, want) in [
            (
                Activation::GeluErf,
                burn::tensor::activation::gelu(x.clone()),
            ),
            (Activation::Silu, burn::tensor::activation::silu(x.clone())),
        ] {
            let got = apply(act, x.clone()).try_to_vec_as::<f64>().unwrap();
            let want = want.try_to_vec_as::<f64>().unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 2e-6, "{act:?}: {g} vs {w}");
            }
        }
    }
}
