//! A tiny transformer block (single-head attention + GELU MLP) built from `AdaptedLinear`, with
//! Hugging Face BERT module paths, used to run every adapter method through the same tests.

use burn::module::Module;
use burn::module::Param;
use burn::tensor::DType;
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Tensor};
use peftlab_adapters::{AdaptedLinear, AdapterHost, child_path};
use peftlab_linalg::init::{Fill, SeededRng};

/// A linear layer with seeded `U(−1/√d_in, 1/√d_in)` weights (burn's default init is unseeded).
fn linear(d_in: usize, d_out: usize, device: &Device, rng: &mut SeededRng) -> AdaptedLinear {
    let mut l = AdaptedLinear::new(d_in, d_out, true, device);
    let bound = 1.0 / (d_in as f64).sqrt();
    let w = Fill::Uniform { bound }.tensor(d_in, d_out, rng, device, DType::F32);
    let b = Fill::Uniform { bound }
        .tensor(1, d_out, rng, device, DType::F32)
        .reshape([d_out]);
    l.weight = Param::from_tensor(w);
    l.bias = Some(Param::from_tensor(b));
    l
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct Block {
    pub query: AdaptedLinear,
    pub key: AdaptedLinear,
    pub value: AdaptedLinear,
    pub attn_out: AdaptedLinear,
    pub intermediate: AdaptedLinear,
    pub output: AdaptedLinear,
}

/// `n_layers` blocks of width `d` and FFN width `d_ff`.
#[derive(Module, Debug)]
pub struct TinyEncoder {
    pub layers: Vec<Block>,
}

impl Block {
    fn new(d: usize, d_ff: usize, device: &Device, rng: &mut SeededRng) -> Self {
        Self {
            query: linear(d, d, device, rng),
            key: linear(d, d, device, rng),
            value: linear(d, d, device, rng),
            attn_out: linear(d, d, device, rng),
            intermediate: linear(d, d_ff, device, rng),
            output: linear(d_ff, d, device, rng),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let d = x.dims()[2] as f64;
        let q = self.query.forward(x.clone());
        let k = self.key.forward(x.clone());
        let v = self.value.forward(x.clone());
        let att = softmax(q.matmul(k.swap_dims(1, 2)) / d.sqrt(), 2);
        let h = x + self.attn_out.forward(att.matmul(v));
        h.clone() + self.output.forward(gelu(self.intermediate.forward(h)))
    }
}

peftlab_adapters::adapter_host!(Block {
    "attention.self.query" => query,
    "attention.self.key" => key,
    "attention.self.value" => value,
    "attention.output.dense" => attn_out,
    "intermediate.dense" => intermediate,
    "output.dense" => output,
});

impl TinyEncoder {
    /// Seeded (always the same weights for the same shape).
    pub fn new(n_layers: usize, d: usize, d_ff: usize, device: &Device) -> Self {
        let mut rng = SeededRng::new(0);
        Self {
            layers: (0..n_layers)
                .map(|_| Block::new(d, d_ff, device, &mut rng))
                .collect(),
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.layers.iter().fold(x, |h, b| b.forward(h))
    }
}

impl AdapterHost for TinyEncoder {
    fn for_each_linear(&self, prefix: &str, f: &mut dyn FnMut(&str, &AdaptedLinear)) {
        for (i, b) in self.layers.iter().enumerate() {
            b.for_each_linear(&child_path(prefix, &format!("encoder.layer.{i}")), f);
        }
    }
    fn for_each_linear_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut AdaptedLinear)) {
        for (i, b) in self.layers.iter_mut().enumerate() {
            b.for_each_linear_mut(&child_path(prefix, &format!("encoder.layer.{i}")), f);
        }
    }
}
