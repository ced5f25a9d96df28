//! Helpers shared by the CPU fast paths ([`crate::frozen`], [`crate::attention`],
//! [`crate::norm`], [`crate::dropout`], and `peftlab-models`' activation op): they read and
//! build burn-flex tensors without copies where the layout allows.

use burn::tensor::TensorData;
use burn_flex::FlexTensor;

/// `x` itself (a cheap handle clone) when it is a contiguous f32 view, else a contiguous copy.
pub fn contiguous(x: &FlexTensor) -> FlexTensor {
    if x.as_slice::<f32>().is_some() {
        x.clone()
    } else {
        x.to_contiguous()
    }
}

/// The elements of a tensor made by [`contiguous`] (or any contiguous f32 tensor).
///
/// # Panics
/// If `x` is not a contiguous f32 view.
pub fn f32s(x: &FlexTensor) -> &[f32] {
    x.as_slice::<f32>()
        .expect("fast path: a contiguous f32 tensor (see `contiguous`)")
}

/// A contiguous tensor of `shape` holding `values` (moved, not copied).
pub fn from_vec(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// A contiguous tensor of `like`'s shape holding `values`.
pub fn like(like: &FlexTensor, values: Vec<f32>) -> FlexTensor {
    from_vec(values, like.layout().shape().clone())
}
