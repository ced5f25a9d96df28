//! The real scalar types the decompositions run in (`f32`, `f64`).

use burn::tensor::{DType, Element};
use faer::traits::RealField;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A real floating-point type usable both by faer's decompositions and as a burn tensor element.
///
/// Implemented for `f32` and `f64` only (sealed).
pub trait Real: RealField + Element + Copy + PartialOrd + sealed::Sealed {
    /// The burn dtype of this scalar.
    const DTYPE: DType;
    /// Machine epsilon, as f64.
    const EPSILON: f64;
    /// Lossy conversion from f64.
    fn from_f64(x: f64) -> Self;
    /// Lossless conversion to f64.
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    const DTYPE: DType = DType::F32;
    const EPSILON: f64 = f32::EPSILON as f64;
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    const DTYPE: DType = DType::F64;
    const EPSILON: f64 = f64::EPSILON;
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
}
