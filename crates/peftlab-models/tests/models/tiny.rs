//! Parity with Hugging Face transformers on small random-initialized checkpoints made by
//! `scripts/transformers_fixtures.py` (torch 2.15.0, transformers 5.24.0, peft 0.21.2):
//! `BertForSequenceClassification`, `RobertaForSequenceClassification` and
//! `DebertaV2ForSequenceClassification` in v3 settings (log buckets, shared attention keys,
//! LayerNorm-ed relative embeddings, no absolute positions) and v2 settings (no buckets,
//! `pos_key_proj`/`pos_query_proj`, absolute positions, token types) — 2 layers, d = 16,
//! 3 labels, padded batch — last hidden state and logits within 1e-5 (f32, values O(1)), and a
//! PEFT LoRA adapter with the saved head modules on top — logits within 1e-5 of PEFT's. Runs
//! everywhere (the fixtures are committed, ~30 KB each).

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_adapters::load_adapter;
use peftlab_models::bert::BertForSequenceClassification;
use peftlab_models::deberta::DebertaV2ForSequenceClassification;
use safetensors::SafeTensors;

use crate::common::{f32s, fixture, max_diff};

fn read(st: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<u8>) {
    let v = st.tensor(name).unwrap();
    (v.shape().to_vec(), v.data().to_vec())
}

/// What the parity check needs of a sequence classifier.
trait Classifier: peftlab_adapters::AdapterHost + burn::module::Module {
    fn hidden(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3>;
    fn logits(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2>;
}

impl Classifier for BertForSequenceClassification {
    fn hidden(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        self.bert.forward(ids, mask)
    }
    fn logits(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        self.forward(ids, mask)
    }
}

impl Classifier for DebertaV2ForSequenceClassification {
    fn hidden(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        self.deberta.forward(ids, mask)
    }
    fn logits(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        self.forward(ids, mask)
    }
}

fn bert(dir: &Path) -> BertForSequenceClassification {
    BertForSequenceClassification::from_dir(dir, 3, 0, &Device::default()).unwrap()
}

fn deberta(dir: &Path) -> DebertaV2ForSequenceClassification {
    DebertaV2ForSequenceClassification::from_dir(dir, 3, 0, &Device::default()).unwrap()
}

#[test]
fn bert_classifier_and_peft_lora_match_transformers() {
    let dir = fixture("tiny_bert");
    check(&dir, bert(&dir));
}

#[test]
fn deberta_v3_classifier_and_peft_lora_match_transformers() {
    let dir = fixture("tiny_deberta_v3");
    check(&dir, deberta(&dir));
}

#[test]
fn deberta_v2_classifier_and_peft_lora_match_transformers() {
    let dir = fixture("tiny_deberta_v2");
    check(&dir, deberta(&dir));
}

/// RoBERTa: positions numbered from `pad_token_id + 1` over non-pad ids, no pooler, the
/// `classifier.dense` → tanh → `classifier.out_proj` head.
#[test]
fn roberta_classifier_and_peft_lora_match_transformers() {
    let dir = fixture("tiny_roberta");
    check(&dir, bert(&dir));
}

fn check<M: Classifier>(dir: &Path, mut model: M) {
    let dir = || dir.to_path_buf();
    let dev = Device::default();
    let bytes = std::fs::read(dir().join("io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (shape, ids) = read(&st, "ids");
    let ids: Vec<i64> = ids
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &dev);
    let (_, mask) = read(&st, "mask");
    let mask = Tensor::<2>::from_data(TensorData::new(f32s(&mask), [shape[0], shape[1]]), &dev);

    let hidden = model
        .hidden(ids.clone(), mask.clone())
        .try_to_vec_as::<f64>()
        .unwrap();
    let want_hidden = f32s(&read(&st, "hidden").1);
    // padded positions of the second sentence are garbage in both implementations but compare
    // the same; all positions are checked
    assert!(
        max_diff(&hidden, &want_hidden) <= 1e-5,
        "hidden {}",
        max_diff(&hidden, &want_hidden)
    );
    let logits = model
        .logits(ids.clone(), mask.clone())
        .try_to_vec_as::<f64>()
        .unwrap();
    let want = f32s(&read(&st, "logits").1);
    assert!(
        max_diff(&logits, &want) <= 1e-5,
        "logits {logits:?} vs {want:?}"
    );

    let report = load_adapter(&mut model, &dir().join("lora")).unwrap();
    assert!(report.unknown_keys.is_empty(), "{:?}", report.unknown_keys);
    let lora = model.logits(ids, mask).try_to_vec_as::<f64>().unwrap();
    let want = f32s(&read(&st, "lora_logits").1);
    assert!(
        max_diff(&lora, &want) <= 1e-5,
        "LoRA logits {lora:?} vs PEFT {want:?}"
    );
    assert!(
        max_diff(&lora, &logits) > 1e-3,
        "the adapter changes the logits"
    );
}

/// Mean pooling: the classifier applied to the masked mean of transformers' last hidden states.
#[test]
fn bert_mean_pooling_head_classifies_the_masked_mean() {
    let dir = fixture("tiny_bert");
    let dev = Device::default();
    let model = bert(&dir).with_mean_pooling(true);
    let bytes = std::fs::read(dir.join("io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (shape, ids) = read(&st, "ids");
    let ids: Vec<i64> = ids
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let mask = f32s(&read(&st, "mask").1);
    let hidden = f32s(&read(&st, "hidden").1);
    let (b, t, d) = (shape[0], shape[1], 16);
    let w = model
        .classifier
        .weight
        .val()
        .try_to_vec_as::<f64>()
        .unwrap(); // [d, 3]
    let bias = model
        .classifier
        .bias
        .as_ref()
        .unwrap()
        .val()
        .try_to_vec_as::<f64>()
        .unwrap();
    let mut want = Vec::new();
    for r in 0..b {
        let n: f64 = mask[r * t..(r + 1) * t].iter().sum();
        let mean: Vec<f64> = (0..d)
            .map(|k| {
                (0..t)
                    .map(|j| mask[r * t + j] * hidden[(r * t + j) * d + k])
                    .sum::<f64>()
                    / n
            })
            .collect();
        for c in 0..3 {
            want.push(bias[c] + (0..d).map(|k| mean[k] * w[k * 3 + c]).sum::<f64>());
        }
    }
    let got = model
        .forward(
            Tensor::from_data(TensorData::new(ids, [b, t]), &dev),
            Tensor::from_data(TensorData::new(mask, [b, t]), &dev),
        )
        .try_to_vec_as::<f64>()
        .unwrap();
    assert!(max_diff(&got, &want) <= 1e-5, "{got:?} vs {want:?}");
}

/// Training runs through the autodiff path (burn's decomposed attention and GELU) while
/// inference takes the fast path (fused attention, vectorized GELU): the gradient of
/// `L = Σ logits ⊙ c` w.r.t. every LoRA `B` of BERT, RoBERTa and DeBERTa, taken on the autodiff
/// device, must predict the inference-path change of `L` along that gradient:
/// `(L(B + εG) − L(B − εG)) / 2ε ≈ ‖G‖²` (f32, ε = 1e-2; relative tolerance 2e-2).
#[test]
fn autodiff_gradients_agree_with_the_inference_path() {
    use peftlab_adapters::lora::LoraConfig;
    use peftlab_adapters::target::ModuleSelector;
    use peftlab_adapters::{AdapterConfig, attach};

    fn loss<M: Classifier>(m: &M, ids: &Tensor<2, Int>, mask: &Tensor<2>) -> Tensor<1> {
        let logits = m.logits(ids.clone(), mask.clone());
        let dev = logits.device();
        let c = Tensor::<2>::from_data(
            TensorData::new(vec![0.3f32, -1.1, 0.7, 1.3, 0.2, -0.5], [2, 3]),
            &dev,
        );
        (logits * c).sum()
    }
    fn b_params<M: Classifier>(m: &mut M) -> Vec<Tensor<2>> {
        let mut out = Vec::new();
        m.for_each_linear_mut("", &mut |_, l| {
            if let Some(a) = l.adapter.as_mut() {
                for n in a.named_params_mut() {
                    if n.name.starts_with("lora_B") {
                        out.push(n.param.val());
                    }
                }
            }
        });
        out
    }
    fn set_b<M: Classifier>(m: &mut M, values: &[Tensor<2>]) {
        let mut i = 0;
        m.for_each_linear_mut("", &mut |_, l| {
            if let Some(a) = l.adapter.as_mut() {
                for n in a.named_params_mut() {
                    if n.name.starts_with("lora_B") {
                        *n.param = burn::module::Param::from_tensor(values[i].clone());
                        i += 1;
                    }
                }
            }
        });
    }
    fn check_model<M: Classifier>(load: &dyn Fn(&Device) -> M, targets: &[&str]) {
        let plain = Device::default();
        let ad = plain.clone().autodiff();
        let cfg = AdapterConfig::Lora(LoraConfig::new(2, ModuleSelector::list(targets)));
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(vec![1i64, 5, 9, 7, 2, 1, 8, 4, 2, 0], [2, 5]),
            &plain,
        );
        let mask = Tensor::<2>::from_data(
            TensorData::new(vec![1f32, 1., 1., 1., 1., 1., 1., 1., 1., 0.], [2, 5]),
            &plain,
        );
        // B starts at zero; move it off zero (same values on both devices) so A matters too
        let mut m_ad = load(&ad);
        attach(&mut m_ad, &cfg, 7).unwrap();
        let start: Vec<Tensor<2>> = b_params(&mut m_ad)
            .iter()
            .enumerate()
            .map(|(k, b)| {
                let [r, c] = b.dims();
                let v: Vec<f32> = (0..r * c)
                    .map(|i| ((i * 7 + k * 3) % 11) as f32 * 0.05 - 0.25)
                    .collect();
                Tensor::from_data(TensorData::new(v, [r, c]), &plain)
            })
            .collect();
        let on = |ts: &[Tensor<2>], dev: &Device| -> Vec<Tensor<2>> {
            ts.iter()
                .map(|t| Tensor::from_data(t.clone().into_data(), dev).require_grad())
                .collect()
        };
        set_b(&mut m_ad, &on(&start, &ad));
        let grads = loss(
            &m_ad,
            &ids.clone().to_device(&ad),
            &mask.clone().to_device(&ad),
        )
        .backward();
        let g: Vec<Tensor<2>> = b_params(&mut m_ad)
            .iter()
            .map(|b| {
                Tensor::from_data(
                    b.grad(&grads).expect("B has a gradient").into_data(),
                    &plain,
                )
            })
            .collect();
        let norm2: f64 = g
            .iter()
            .map(|t| t.clone().square().sum().into_scalar::<f64>())
            .sum();
        assert!(norm2 > 1e-6, "gradients are non-zero");
        let eps = 1e-2 / norm2.sqrt();
        let mut m = load(&plain);
        attach(&mut m, &cfg, 7).unwrap();
        let at = |sign: f64, m: &mut M| {
            let moved: Vec<Tensor<2>> = start
                .iter()
                .zip(&g)
                .map(|(s, gi)| s.clone() + gi.clone() * (sign * eps))
                .collect();
            set_b(m, &moved);
            loss(m, &ids, &mask).into_scalar::<f64>()
        };
        let fd = (at(1.0, &mut m) - at(-1.0, &mut m)) / (2.0 * eps);
        assert!(
            (fd - norm2).abs() <= 2e-2 * norm2,
            "directional derivative {fd} vs ‖G‖² {norm2}"
        );
    }
    let dir = fixture("tiny_bert");
    check_model(
        &|d| BertForSequenceClassification::from_dir(&dir, 3, 0, d).unwrap(),
        &["query", "value", "intermediate.dense"],
    );
    let dir = fixture("tiny_roberta");
    check_model(
        &|d| BertForSequenceClassification::from_dir(&dir, 3, 0, d).unwrap(),
        &["query", "value"],
    );
    let dir = fixture("tiny_deberta_v3");
    check_model(
        &|d| DebertaV2ForSequenceClassification::from_dir(&dir, 3, 0, d).unwrap(),
        &["query_proj", "value_proj", "intermediate.dense"],
    );
}
