//! Interop with Python PEFT, on the committed fixture made by `scripts/peft_fixture.py make`
//! (torch 2.15.0, peft 0.21.2): a PEFT LoRA adapter loads here and gives PEFT's outputs within
//! 1e-5, and what we save from it has PEFT's keys, shapes and values.
//!
//! The other direction (a peftlab-saved adapter loading in PEFT) is checked by
//! `scripts/peft_fixture.py check`, which needs torch: set `PEFTLAB_WRITE_PEFT_CHECK=DIR` to have
//! this test write `DIR/rust_adapter/` and `DIR/rust_io.safetensors` for it.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use peftlab_adapters::io::{CONFIG_FILE, WEIGHTS_FILE};
use peftlab_adapters::{AdapterConfig, AdapterHost, load_adapter, save_adapter};
use safetensors::SafeTensors;

use super::model::TinyEncoder;
use super::{device, max_abs_diff, values};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft_tiny")
}

fn read_f32(st: &SafeTensors<'_>, key: &str) -> (Vec<usize>, Vec<f32>) {
    let v = st
        .tensor(key)
        .unwrap_or_else(|_| panic!("fixture lacks {key}"));
    let data = v
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (v.shape().to_vec(), data)
}

/// The torch base model of the fixture as a `TinyEncoder` (torch `[out, in]` → burn `[in, out]`).
fn base_model(dev: &Device) -> TinyEncoder {
    let bytes = fs::read(fixture().join("base.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut m = TinyEncoder::new(2, 8, 12, dev);
    m.for_each_linear_mut("", &mut |p, l| {
        let (shape, w) = read_f32(&st, &format!("{p}.weight"));
        let w = Tensor::<2>::from_data(TensorData::new(w, [shape[0], shape[1]]), dev).transpose();
        l.weight = Param::initialized(l.weight.id, w);
        let (shape, b) = read_f32(&st, &format!("{p}.bias"));
        l.bias = Some(Param::initialized(
            l.bias.as_ref().unwrap().id,
            Tensor::from_data(TensorData::new(b, [shape[0]]), dev),
        ));
    });
    m
}

fn io(dev: &Device) -> (Tensor<3>, Vec<f64>) {
    let bytes = fs::read(fixture().join("io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (xs, x) = read_f32(&st, "x");
    let (_, y) = read_f32(&st, "y");
    (
        Tensor::from_data(TensorData::new(x, [xs[0], xs[1], xs[2]]), dev),
        y.into_iter().map(f64::from).collect(),
    )
}

#[test]
fn peft_lora_adapter_loads_with_peft_outputs() {
    let dev = device();
    let mut m = base_model(&dev);
    let report = load_adapter(&mut m, &fixture().join("peft_adapter")).unwrap();
    assert!(report.unknown_keys.is_empty(), "{:?}", report.unknown_keys);
    // trainable: LoRA on q (r 4) / v (r 2 by rank_pattern) / intermediate (r 4) of both layers
    // + the saved head (12·8 weights + 8 biases)
    let lora: usize = 2 * (4 * (8 + 8) + 2 * (8 + 8) + 4 * (8 + 12));
    assert_eq!(
        peftlab_adapters::param_report(&m).trainable,
        lora + 12 * 8 + 8
    );
    assert!(
        m.layers[1].output.base_trainable,
        "modules_to_save head trains"
    );
    let AdapterConfig::Lora(c) = &report.config else {
        panic!("not LoRA")
    };
    assert_eq!((c.r, c.lora_alpha), (4, 8.0));
    assert_eq!(c.rank_pattern.as_ref().unwrap()["value"], 2);
    assert_eq!(
        c.alpha_pattern.as_ref().unwrap()["intermediate.dense"],
        16.0
    );
    let (x, y_peft) = io(&dev);
    let y = values(&m.forward(x.clone()));
    assert!(
        max_abs_diff(&y, &y_peft) <= 1e-5,
        "max diff {}",
        max_abs_diff(&y, &y_peft)
    );

    // What we save has exactly PEFT's tensor keys, shapes and values.
    let dir = std::env::temp_dir().join(format!("peftlab-peft-{}", std::process::id()));
    save_adapter(&m, &report.config, &dir).unwrap();
    let ours = fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let theirs = fs::read(fixture().join("peft_adapter").join(WEIGHTS_FILE)).unwrap();
    let (ours, theirs) = (
        SafeTensors::deserialize(&ours).unwrap(),
        SafeTensors::deserialize(&theirs).unwrap(),
    );
    let mut a = ours.names();
    let mut b = theirs.names();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for k in a {
        assert_eq!(read_f32(&ours, k), read_f32(&theirs, k), "{k}");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join(CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    if let Ok(out) = std::env::var("PEFTLAB_WRITE_PEFT_CHECK") {
        let out = PathBuf::from(out);
        let _ = fs::remove_dir_all(out.join("rust_adapter"));
        fs::create_dir_all(&out).unwrap();
        fs::rename(&dir, out.join("rust_adapter")).unwrap();
        let xs: Vec<f32> = x.try_to_vec_as::<f32>().unwrap();
        let ys: Vec<f32> = y.iter().map(|v| *v as f32).collect();
        let to_bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
        let (xb, yb) = (to_bytes(&xs), to_bytes(&ys));
        let views = vec![
            (
                "x",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 5, 8], &xb)
                    .unwrap(),
            ),
            (
                "y",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 5, 8], &yb)
                    .unwrap(),
            ),
        ];
        fs::write(
            out.join("rust_io.safetensors"),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
    } else {
        fs::remove_dir_all(&dir).unwrap();
    }
}
