//! Seeded, backend-independent initializers.
//!
//! Values are drawn on the host from a [`ChaCha8Rng`] (a portable generator: the same seed gives
//! the same stream on every platform and rand version that ships ChaCha8) and uploaded, so an
//! adapter initialized with seed `s` is bit-identical on `flex`, `ndarray` or a GPU backend. burn's
//! own `Tensor::random` depends on the backend's generator and thread scheduling and is not used.

use burn::tensor::{DType, Device, Tensor, TensorData};
use rand::rngs::ChaCha8Rng;
use rand::{Rng, SeedableRng};

use crate::{LinalgError, Result};

/// A seeded random stream for parameter initialization.
#[derive(Debug)]
pub struct SeededRng(ChaCha8Rng);

impl SeededRng {
    /// A stream determined by `seed` alone.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// An independent child stream, for example one per adapted module: `fork(i)` of the same
    /// parent state always gives the same child.
    pub fn fork(&mut self, stream: u64) -> Self {
        let base = self.0.next_u64();
        Self::new(base ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Normal `N(mean, std²)` (Box–Muller).
    pub fn normal(&mut self, mean: f64, std: f64) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        mean + std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// How to fill a parameter tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// All zeros.
    Zeros,
    /// Ones on the main diagonal `[i, i]`, zeros elsewhere (rectangular allowed).
    Eye,
    /// Uniform in `[-bound, bound)`.
    Uniform {
        /// Half-width of the interval.
        bound: f64,
    },
    /// Normal with mean 0.
    Normal {
        /// Standard deviation.
        std: f64,
    },
}

impl Fill {
    /// PyTorch's `kaiming_uniform_(w, a)` for a weight with `fan_in` inputs:
    /// `bound = sqrt(6 / ((1 + a²) · fan_in))`. With `a = √5` (the `nn.Linear` default that
    /// loralib and MTLoRA use) this is `1 / sqrt(fan_in)`.
    pub fn kaiming_uniform(fan_in: usize, a: f64) -> Result<Self> {
        if fan_in == 0 {
            return Err(LinalgError::invalid(
                "kaiming_uniform fan_in",
                "must be > 0",
            ));
        }
        Ok(Self::Uniform {
            bound: (6.0 / ((1.0 + a * a) * fan_in as f64)).sqrt(),
        })
    }

    /// Draw the values of a `[rows, cols]` matrix, row-major.
    pub fn sample(&self, rows: usize, cols: usize, rng: &mut SeededRng) -> Vec<f64> {
        (0..rows * cols)
            .map(|idx| match *self {
                Fill::Zeros => 0.0,
                Fill::Eye => f64::from(u8::from(idx / cols == idx % cols)),
                Fill::Uniform { bound } => rng.uniform(-bound, bound),
                Fill::Normal { std } => rng.normal(0.0, std),
            })
            .collect()
    }

    /// A `[rows, cols]` tensor of `dtype` on `device` filled by this rule.
    pub fn tensor(
        &self,
        rows: usize,
        cols: usize,
        rng: &mut SeededRng,
        device: &Device,
        dtype: DType,
    ) -> Tensor<2> {
        let data = TensorData::new(self.sample(rows, cols, rng), [rows, cols]);
        Tensor::from_data(data, (device, dtype))
    }
}
