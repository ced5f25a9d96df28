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
//! **Staleness.** The pack remembers the weight it was made from by holding a handle to that
//! weight's storage (so the storage cannot be freed and its address reused) and is re-made
//! whenever the layer's current weight is another storage or view — after a merge, an unmerge,
//! a loaded record, or any other replacement, however it happened. [`FrozenPack::invalidate`]
//! frees it early.

use std::sync::{Arc, Mutex, PoisonError};

use burn::tensor::Tensor;

#[cfg(feature = "flex")]
use crate::gemm::{PackedMatrix, gemm_packed};

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
}

impl Clone for FrozenPack {
    fn clone(&self) -> Self {
        Self {
            slot: Mutex::new(self.lock().clone()),
        }
    }
}

impl std::fmt::Debug for FrozenPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenPack")
            .field("packed", &self.is_packed())
            .finish()
    }
}

impl FrozenPack {
    /// An empty pack (packs on first use).
    pub fn new() -> Self {
        Self::default()
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
                    let p = Arc::new(flex::Packs::new(ops.weight.clone(), generation));
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

    /// `W` packed for `x·W`, and `Wᵀ` for `dY·Wᵀ` once a gradient is asked for.
    pub(super) struct Packs {
        source: FlexTensor,
        fwd: PackedMatrix,
        bwd: OnceLock<Arc<PackedMatrix>>,
        pub(super) generation: u64,
    }

    impl Packs {
        pub(super) fn new(weight: FlexTensor, generation: u64) -> Self {
            let fwd = pack(&weight, false);
            Self {
                source: weight,
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

        fn bwd(&self) -> Arc<PackedMatrix> {
            self.bwd
                .get_or_init(|| Arc::new(pack(&self.source, true)))
                .clone()
        }
    }

    /// Pack `w: [k, n]` (or `wᵀ` with `transpose`) from any strided view.
    fn pack(w: &FlexTensor, transpose: bool) -> PackedMatrix {
        let w = if w.layout().strides().iter().any(|s| *s < 0) {
            w.to_contiguous()
        } else {
            w.clone()
        };
        let shape = w.layout().shape();
        let (k, n) = (shape[0], shape[1]);
        let strides = w.layout().strides();
        let (rs, cs) = (strides[0] as usize, strides[1] as usize);
        let storage = &w.storage::<f32>()[w.layout().start_offset()..];
        if transpose {
            PackedMatrix::pack(storage, n, k, cs, rs)
        } else {
            PackedMatrix::pack(storage, k, n, rs, cs)
        }
    }

    /// `x: [..., k]` · packed `[k, n]` (+ bias) → `[..., n]` on flex.
    fn product(x: &FlexTensor, b: &PackedMatrix, bias: Option<&FlexTensor>) -> FlexTensor {
        let x = contiguous(x);
        let xs = f32s(&x);
        let mut dims = x.layout().shape().to_vec();
        let k = b.k();
        let rows = xs
            .len()
            .checked_div(k)
            .unwrap_or_else(|| dims[..dims.len() - 1].iter().product());
        *dims.last_mut().expect("rank ≥ 1") = b.n();
        let bias = bias.map(contiguous);
        let mut out: Vec<f32> = Vec::with_capacity(rows * b.n());
        gemm_packed(
            xs,
            k,
            rows,
            b,
            bias.as_ref().map(f32s),
            out.spare_capacity_mut(),
        );
        // SAFETY: gemm_packed wrote all rows·n elements.
        unsafe { out.set_len(rows * b.n()) };
        from_vec(out, dims)
    }

    #[derive(Debug)]
    struct FrozenLinearBackward;

    impl Backward<Flex, 1> for FrozenLinearBackward {
        type State = Arc<PackedMatrix>;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let wt = ops.state;
            unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
                product(&grad, &wt, None)
            });
        }
    }

    pub(super) fn run<const D: usize>(ops: Operands, packs: Arc<Packs>) -> Tensor<D> {
        let x = match ops.x {
            Input::Plain(x) => {
                let y = product(&x, &packs.fwd, ops.bias.as_ref());
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
                let y = product(x.primitive(), &packs.fwd, ops.bias.as_ref());
                prep.finish(packs.bwd(), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(product(x.primitive(), &packs.fwd, ops.bias.as_ref()))
            }
        };
        Tensor::from_primitive::<Autodiff<Flex>>(out)
    }
}
