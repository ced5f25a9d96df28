//! Frozen linear layers `y = x·W + b` on a CPU fast path: `W` packed once, no `∂L/∂W`.
//!
//! In PEFT training the base weight never changes, yet burn's `linear` re-packs it on every
//! call, and for a `[batch, seq, d]` input runs one small GEMM per batch row (each packing `W`
//! again): 21 % of a MiniLM LoRA step went to packing alone (docs/performance.md, issue 16).
//! [`FrozenPack`] keeps `W: [d_in, d_out]` packed in the micro-kernel's panel layout
//! ([`crate::gemm`]) — and `Wᵀ` for the input gradient, packed the first time a gradient is
//! needed — and [`FrozenPack::linear`] runs one GEMM over all `rows = ∏ leading dims` with the
//! bias added in the kernel's epilogue, writing an output that is never zero-filled first.
//!
//! Under autodiff it is one custom operation whose backward is `∂L/∂x = ∂L/∂y · Wᵀ` alone:
//! the weight and bias are constants (the fast path is only taken when neither is tracked),
//! so no `∂L/∂W` is ever formed.
//!
//! When it applies: f32 tensors on the `flex` device, with or without autodiff (burn's default
//! no-checkpointing strategy), weight and bias untracked. Anywhere else (other backends,
//! dtypes, a trainable base) it is burn's `module::linear`, with the same results to f32
//! rounding (tests: `tests/properties/frozen.rs`).
//!
//! **Precision.** [`Precision::F32`] (the default) multiplies in f32. [`Precision::Bf16`] is the
//! opt-in bf16 frozen base ([`crate::gemm_bf16`]): the weight is rounded to bf16 once, when it is
//! packed, and each product rounds its other operand (the input `x` forward, `∂L/∂y` backward)
//! to bf16, with f32 sums and f32 adapters, bias and outputs — about twice the multiply rate on
//! a CPU with `avx512_bf16`, at bf16's 8-bit mantissa in the base products (what PyTorch's
//! `autocast(dtype=torch.bfloat16)` does to a linear layer). [`Precision::check`] refuses bf16
//! on CPUs without the instruction, where it would be slower than f32. Other backends ignore the
//! setting (burn's f32 `linear`).
//!
//! **Staleness.** The pack remembers the weight it was made from by holding a handle to that
//! weight's storage (so the storage cannot be freed and its address reused) and is re-made
//! whenever the layer's current weight is another storage or view — after a merge, an unmerge,
//! a loaded record, or any other replacement, however it happened. [`FrozenPack::invalidate`]
//! frees it early.

use std::sync::{Arc, Mutex, PoisonError};

use burn::tensor::Tensor;

#[cfg(feature = "flex")]
use crate::gemm::{PackedMatrix, gemm_packed};
#[cfg(feature = "flex")]
use crate::gemm_bf16::{PackedBf16, gemm_bf16_packed};
use crate::{LinalgError, Result};

/// The arithmetic of the frozen base's products (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 operands, f32 sums (exact to f32 rounding against burn's `linear`).
    #[default]
    F32,
    /// bf16 operands (weight rounded once, input rounded per product), f32 sums.
    Bf16,
}

impl Precision {
    /// `Ok` when this CPU runs `self` at least as fast as f32: always for f32, only with
    /// `avx512_bf16` for bf16 (elsewhere the portable bf16 kernel would be far slower).
    pub fn check(self) -> Result<()> {
        match self {
            Precision::F32 => Ok(()),
            Precision::Bf16 => {
                if crate::gemm_bf16::Bf16Kernel::Avx512Bf16.is_available() {
                    Ok(())
                } else {
                    Err(LinalgError::InvalidArgument {
                        what: "base_precision = \"bf16\"".into(),
                        reason: "this CPU has no avx512_bf16 instructions (bf16 products would \
                                 be slower than f32); use \"f32\""
                            .into(),
                    })
                }
            }
        }
    }
}

/// The packed form of one frozen weight, made on first use (see the module docs).
///
/// Cloning shares the current pack (it is immutable); each clone re-packs on its own if its
/// weight changes. Keep it beside the weight, e.g. as a `#[module(skip)]` field.
#[derive(Default)]
pub struct FrozenPack {
    #[cfg(feature = "flex")]
    slot: Mutex<Option<Arc<flex::Packs>>>,
    #[cfg(not(feature = "flex"))]
    slot: Mutex<Option<Arc<()>>>,
    precision: Precision,
}

impl Clone for FrozenPack {
    fn clone(&self) -> Self {
        Self {
            slot: Mutex::new(self.lock().clone()),
            precision: self.precision,
        }
    }
}

impl std::fmt::Debug for FrozenPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenPack")
            .field("packed", &self.is_packed())
            .field("precision", &self.precision)
            .finish()
    }
}

impl FrozenPack {
    /// An empty pack (packs on first use), f32.
    pub fn new() -> Self {
        Self::default()
    }

    /// The arithmetic of the products.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Set the arithmetic of the products; a change drops the packed copy. Does not check the
    /// CPU (callers that take it from a user's config call [`Precision::check`] first).
    pub fn set_precision(&mut self, precision: Precision) {
        if precision != self.precision {
            self.precision = precision;
            self.invalidate();
        }
    }

    #[cfg(feature = "flex")]
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<flex::Packs>>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(not(feature = "flex"))]
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<()>>> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drop the packed copy (the next fast-path call packs again).
    pub fn invalidate(&self) {
        *self.lock() = None;
    }

    /// Whether a packed copy is held.
    pub fn is_packed(&self) -> bool {
        self.lock().is_some()
    }

    /// How many times this pack (or the clone it came from) has packed a weight; for tests that
    /// check a pack is reused, and re-made after the weight changes.
    pub fn generation(&self) -> u64 {
        #[cfg(feature = "flex")]
        {
            self.lock().as_ref().map_or(0, |p| p.generation)
        }
        #[cfg(not(feature = "flex"))]
        {
            0
        }
    }

    /// `x: [..., d_in]`, `weight: [d_in, d_out]`, `bias: [d_out]` → `[..., d_out]`, equal to
    /// `burn::tensor::module::linear(x, weight, bias)` to f32 rounding. Takes the packed fast
    /// path where the module docs say, burn's `linear` otherwise.
    pub fn linear<const D: usize>(
        &self,
        x: Tensor<D>,
        weight: &Tensor<2>,
        bias: Option<&Tensor<1>>,
    ) -> Tensor<D> {
        #[cfg(feature = "flex")]
        if let Some(y) = self.try_fast(&x, weight, bias) {
            return y;
        }
        burn::tensor::module::linear(x, weight.clone(), bias.cloned())
    }

    /// Whether [`FrozenPack::linear`] takes the fast path for these operands.
    pub fn applies<const D: usize>(
        x: &Tensor<D>,
        weight: &Tensor<2>,
        bias: Option<&Tensor<1>>,
    ) -> bool {
        #[cfg(feature = "flex")]
        {
            flex::operands(x, weight, bias).is_some()
        }
        #[cfg(not(feature = "flex"))]
        {
            let _ = (x, weight, bias);
            false
        }
    }

    #[cfg(feature = "flex")]
    fn try_fast<const D: usize>(
        &self,
        x: &Tensor<D>,
        weight: &Tensor<2>,
        bias: Option<&Tensor<1>>,
    ) -> Option<Tensor<D>> {
        let ops = flex::operands(x, weight, bias)?;
        let packs = {
            let mut slot = self.lock();
            match slot.as_ref() {
                Some(p) if p.matches(&ops.weight) => p.clone(),
                old => {
                    let generation = old.map_or(0, |p| p.generation) + 1;
                    let p = Arc::new(flex::Packs::new(
                        ops.weight.clone(),
                        self.precision,
                        generation,
                    ));
                    *slot = Some(p.clone());
                    p
                }
            }
        };
        Some(flex::run(ops, packs))
    }
}

#[cfg(feature = "flex")]
mod flex {
    use std::sync::OnceLock;

    use super::*;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::DType;
    use burn_flex::FlexTensor;

    use crate::fastpath::{contiguous, f32s, from_vec};

    /// The input's flex primitive, with or without autodiff.
    pub(super) enum Input {
        Plain(FlexTensor),
        Autodiff(FloatTensor<Autodiff<Flex>>),
    }

    /// The operands' flex primitives, when the fast path applies (each converted once).
    pub(super) struct Operands {
        pub(super) x: Input,
        pub(super) weight: FlexTensor,
        pub(super) bias: Option<FlexTensor>,
    }

    pub(super) fn operands<const D: usize>(
        x: &Tensor<D>,
        weight: &Tensor<2>,
        bias: Option<&Tensor<1>>,
    ) -> Option<Operands> {
        if x.dtype() != DType::F32 || weight.dtype() != DType::F32 || D < 1 {
            return None;
        }
        if bias.is_some_and(|b| b.dtype() != DType::F32 || b.dims()[0] != weight.dims()[1]) {
            return None;
        }
        if x.dims()[D - 1] != weight.dims()[0] {
            // burn's linear reports the mismatch
            return None;
        }
        let autodiff = x.device().is_autodiff();
        let inner = |t: Tensor<2>| -> Option<FlexTensor> {
            if autodiff {
                let t = t.try_into_primitive::<Autodiff<Flex>>().ok()?;
                (!t.is_tracked()).then(|| t.into_primitive())
            } else {
                t.try_into_primitive::<Flex>().ok()
            }
        };
        let weight = inner(weight.clone())?;
        let bias = match bias {
            Some(b) => Some(inner(b.clone().unsqueeze::<2>())?),
            None => None,
        };
        let x = if autodiff {
            Input::Autodiff(x.clone().try_into_primitive::<Autodiff<Flex>>().ok()?)
        } else {
            Input::Plain(x.clone().try_into_primitive::<Flex>().ok()?)
        };
        Some(Operands { x, weight, bias })
    }

    /// One packed operand, in the pack's precision.
    #[derive(Debug)]
    pub(super) enum Packed {
        F32(PackedMatrix),
        Bf16(PackedBf16),
    }

    impl Packed {
        /// Pack `w: [k, n]` (or `wᵀ` with `transpose`) from any strided view.
        fn new(w: &FlexTensor, transpose: bool, precision: Precision) -> Self {
            let w = if w.layout().strides().iter().any(|s| *s < 0) {
                w.to_contiguous()
            } else {
                w.clone()
            };
            let shape = w.layout().shape();
            let (mut k, mut n) = (shape[0], shape[1]);
            let strides = w.layout().strides();
            let (mut rs, mut cs) = (strides[0] as usize, strides[1] as usize);
            if transpose {
                (k, n, rs, cs) = (n, k, cs, rs);
            }
            let storage = &w.storage::<f32>()[w.layout().start_offset()..];
            match precision {
                Precision::F32 => Self::F32(PackedMatrix::pack(storage, k, n, rs, cs)),
                Precision::Bf16 => Self::Bf16(PackedBf16::pack(storage, k, n, rs, cs)),
            }
        }

        fn k(&self) -> usize {
            match self {
                Self::F32(b) => b.k(),
                Self::Bf16(b) => b.k(),
            }
        }

        fn n(&self) -> usize {
            match self {
                Self::F32(b) => b.n(),
                Self::Bf16(b) => b.n(),
            }
        }

        /// `x: [..., k]` · this `[k, n]` (+ bias) → `[..., n]` on flex.
        fn product(&self, x: &FlexTensor, bias: Option<&FlexTensor>) -> FlexTensor {
            let x = contiguous(x);
            let xs = f32s(&x);
            let mut dims = x.layout().shape().to_vec();
            let (k, n) = (self.k(), self.n());
            let rows = xs
                .len()
                .checked_div(k)
                .unwrap_or_else(|| dims[..dims.len() - 1].iter().product());
            *dims.last_mut().expect("rank ≥ 1") = n;
            let bias = bias.map(contiguous);
            let bias = bias.as_ref().map(f32s);
            let mut out: Vec<f32> = Vec::with_capacity(rows * n);
            let c = out.spare_capacity_mut();
            match self {
                Self::F32(b) => gemm_packed(xs, k, rows, b, bias, c),
                Self::Bf16(b) => gemm_bf16_packed(xs, k, rows, b, bias, c),
            }
            // SAFETY: the GEMM wrote all rows·n elements.
            unsafe { out.set_len(rows * n) };
            from_vec(out, dims)
        }
    }

    /// `W` packed for `x·W`, and `Wᵀ` for `dY·Wᵀ` once a gradient is asked for.
    pub(super) struct Packs {
        source: FlexTensor,
        precision: Precision,
        fwd: Packed,
        bwd: OnceLock<Arc<Packed>>,
        pub(super) generation: u64,
    }

    impl Packs {
        pub(super) fn new(weight: FlexTensor, precision: Precision, generation: u64) -> Self {
            let fwd = Packed::new(&weight, false, precision);
            Self {
                source: weight,
                precision,
                fwd,
                bwd: OnceLock::new(),
                generation,
            }
        }

        /// Same storage, same view.
        pub(super) fn matches(&self, weight: &FlexTensor) -> bool {
            Arc::ptr_eq(&self.source.data_arc(), &weight.data_arc())
                && self.source.layout() == weight.layout()
                && self.source.dtype() == weight.dtype()
        }

        fn bwd(&self) -> Arc<Packed> {
            self.bwd
                .get_or_init(|| Arc::new(Packed::new(&self.source, true, self.precision)))
                .clone()
        }
    }

    #[derive(Debug)]
    struct FrozenLinearBackward;

    impl Backward<Flex, 1> for FrozenLinearBackward {
        type State = Arc<Packed>;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let wt = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| wt.product(&grad, None));
        }
    }

    pub(super) fn run<const D: usize>(ops: Operands, packs: Arc<Packs>) -> Tensor<D> {
        let x = match ops.x {
            Input::Plain(x) => {
                let y = packs.fwd.product(&x, ops.bias.as_ref());
                return Tensor::from_primitive::<Flex>(y);
            }
            Input::Autodiff(x) => x,
        };
        let out = match FrozenLinearBackward
            .prepare::<NoCheckpointing>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = packs.fwd.product(x.primitive(), ops.bias.as_ref());
                prep.finish(packs.bwd(), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(packs.fwd.product(x.primitive(), ops.bias.as_ref()))
            }
        };
        Tensor::from_primitive::<Autodiff<Flex>>(out)
    }
}
