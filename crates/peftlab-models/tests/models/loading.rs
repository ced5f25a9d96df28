//! Loading through the zoo: architecture detection, sharded checkpoints, and bad input — a
//! missing, extra or mis-shaped tensor, an unknown `model_type`, a truncated file, a shard
//! index that disagrees with its shards — each an error naming the file and the tensor or key.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use peftlab_adapters::AdapterHost;
use peftlab_models::ModelError;
use peftlab_models::gguf::{GgufFile, MetaValue, write_f32};
use peftlab_models::llama::LlamaForCausalLm;
use peftlab_models::zoo::{LoadOptions, Model, load};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::common::fixture;

/// A scratch copy of a fixture directory (config.json + model.safetensors).
fn scratch(name: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("peftlab-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(name).join(f), dir.join(f)).unwrap();
    }
    dir
}

/// Rewrite `dir/file` keeping the tensors for which `keep` holds, plus `extra`.
fn rewrite(
    src: &Path,
    dst: &Path,
    keep: impl Fn(&str) -> bool,
    extra: Vec<(String, Vec<usize>, Vec<u8>)>,
) {
    let bytes = std::fs::read(src).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut views: Vec<(String, TensorView<'_>)> =
        st.tensors().into_iter().filter(|(n, _)| keep(n)).collect();
    for (n, shape, data) in &extra {
        views.push((
            n.clone(),
            TensorView::new(Dtype::F32, shape.clone(), data).unwrap(),
        ));
    }
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(dst, out).unwrap();
}

fn logits(model: &Model) -> Vec<f64> {
    let dev = Device::default();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5, 9, 3], [1, 4]), &dev);
    model
        .causal_lm()
        .unwrap()
        .logits(ids, None)
        .try_to_vec_as::<f64>()
        .unwrap()
}

#[test]
fn zoo_detects_every_architecture() {
    let dev = Device::default();
    let cases = [
        ("tiny_bert", "BertForSequenceClassification"),
        ("tiny_roberta", "RobertaForSequenceClassification"),
        ("tiny_deberta_v3", "DebertaV2ForSequenceClassification"),
        ("tiny_gpt2", "GPT2LMHeadModel"),
        ("tiny_llama", "LlamaForCausalLM"),
    ];
    for (name, arch) in cases {
        let l = load(&fixture(name), &LoadOptions::default(), &dev).unwrap();
        assert_eq!(l.model.architecture(), arch);
        let mut n = 0;
        l.model.for_each_linear("", &mut |_, _| n += 1);
        assert!(n >= 8, "{name}: {n} adaptable layers");
        if name.contains("bert") {
            assert_eq!(l.labels, ["LABEL_0", "LABEL_1", "LABEL_2"], "{name}");
            assert!(l.model.causal_lm().is_none());
        } else {
            assert_eq!(l.eos_token_id, Some(0));
        }
    }
    let err = load(&fixture("nope"), &LoadOptions::default(), &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nope") && err.contains("no such"), "{err}");
}

#[test]
fn sharded_checkpoint_loads_like_the_single_file() {
    let dev = Device::default();
    let single = load(&fixture("tiny_gpt2"), &LoadOptions::default(), &dev).unwrap();
    let dir = scratch("tiny_gpt2", "sharded");
    let src = dir.join("model.safetensors");
    let first = |n: &str| n.contains(".h.0.") || n.contains("wte");
    rewrite(
        &src,
        &dir.join("model-00001-of-00002.safetensors"),
        first,
        vec![],
    );
    rewrite(
        &src,
        &dir.join("model-00002-of-00002.safetensors"),
        |n| !first(n),
        vec![],
    );
    let bytes = std::fs::read(&src).unwrap();
    let names: Vec<String> = SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let map: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|n| {
            let shard = if first(n) { 1 } else { 2 };
            (
                n.clone(),
                format!("model-0000{shard}-of-00002.safetensors").into(),
            )
        })
        .collect();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::remove_file(&src).unwrap();
    let sharded = load(&dir, &LoadOptions::default(), &dev).unwrap();
    assert_eq!(logits(&sharded.model), logits(&single.model));

    // the index places a tensor in the wrong shard: named with the shard file
    let mut wrong = index.clone();
    wrong["weight_map"]["transformer.ln_f.weight"] = "model-00001-of-00002.safetensors".into();
    std::fs::write(dir.join("model.safetensors.index.json"), wrong.to_string()).unwrap();
    let err = load(&dir, &LoadOptions::default(), &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("transformer.ln_f.weight") && err.contains("model-0000"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_checkpoints_name_the_file_and_tensor() {
    let dev = Device::default();
    let opts = LoadOptions::default();
    let dir = scratch("tiny_llama", "bad");
    let w = dir.join("model.safetensors");
    let orig = std::fs::read(&w).unwrap();
    let original = fixture("tiny_llama").join("model.safetensors");

    // missing tensor
    rewrite(
        &original,
        &w,
        |n| !n.contains("layers.1.mlp.up_proj"),
        vec![],
    );
    let err = load(&dir, &opts, &dev).err().unwrap();
    assert!(
        matches!(&err, ModelError::Tensor { path, name, reason }
            if path.ends_with("model.safetensors")
                && name == "model.layers.1.mlp.up_proj.weight" && reason == "missing"),
        "{err}"
    );
    // extra tensor
    rewrite(
        &original,
        &w,
        |_| true,
        vec![("model.layers.9.extra".into(), vec![2], vec![0; 8])],
    );
    let err = load(&dir, &opts, &dev).err().unwrap().to_string();
    assert!(
        err.contains("model.layers.9.extra") && err.contains("unexpected"),
        "{err}"
    );
    // config disagrees with the shapes
    std::fs::write(&w, &orig).unwrap();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"intermediate_size\": 24", "\"intermediate_size\": 32"),
    )
    .unwrap();
    let err = load(&dir, &opts, &dev).err().unwrap().to_string();
    assert!(
        err.contains("model.layers.0.mlp.gate_proj.weight") && err.contains("[24, 16]"),
        "{err}"
    );
    // unknown model type
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"model_type\": \"llama\"", "\"model_type\": \"mamba\""),
    )
    .unwrap();
    let err = load(&dir, &opts, &dev).err().unwrap().to_string();
    assert!(
        err.contains("config.json") && err.contains("model_type") && err.contains("mamba"),
        "{err}"
    );
    // truncated weights
    std::fs::write(dir.join("config.json"), &config).unwrap();
    std::fs::write(&w, &orig[..orig.len() / 2]).unwrap();
    let err = load(&dir, &opts, &dev).err().unwrap().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("not a valid"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gguf_with_wrong_architecture_or_tensors_is_an_error() {
    let dev = Device::default();
    let p = Path::new("synthetic.gguf");
    let meta = |arch: &str| {
        vec![
            ("general.architecture", MetaValue::Str(arch.into())),
            ("llama.block_count", MetaValue::U64(1)),
            ("llama.embedding_length", MetaValue::U64(8)),
            ("llama.feed_forward_length", MetaValue::U64(12)),
            ("llama.attention.head_count", MetaValue::U64(2)),
            ("llama.attention.head_count_kv", MetaValue::U64(1)),
            (
                "llama.attention.layer_norm_rms_epsilon",
                MetaValue::F64(1e-5),
            ),
            ("llama.context_length", MetaValue::U64(32)),
            (
                "tokenizer.ggml.tokens",
                MetaValue::Array((0..10).map(|i| MetaValue::Str(format!("t{i}"))).collect()),
            ),
        ]
    };
    let t = |name: &str, shape: Vec<usize>| {
        let n = shape.iter().product();
        (
            name.to_string(),
            shape,
            (0..n).map(|i| (i % 7) as f32 * 0.1).collect::<Vec<f32>>(),
        )
    };
    let mut tensors = vec![
        t("token_embd.weight", vec![10, 8]),
        t("output_norm.weight", vec![8]),
        t("blk.0.attn_norm.weight", vec![8]),
        t("blk.0.attn_q.weight", vec![8, 8]),
        t("blk.0.attn_k.weight", vec![4, 8]),
        t("blk.0.attn_v.weight", vec![4, 8]),
        t("blk.0.attn_output.weight", vec![8, 8]),
        t("blk.0.ffn_norm.weight", vec![8]),
        t("blk.0.ffn_gate.weight", vec![12, 8]),
        t("blk.0.ffn_up.weight", vec![12, 8]),
        t("blk.0.ffn_down.weight", vec![8, 12]),
    ];
    let build = |meta: &[(&str, MetaValue)], tensors: &[(String, Vec<usize>, Vec<f32>)]| {
        let ts: Vec<(&str, Vec<usize>, Vec<f32>)> = tensors
            .iter()
            .map(|(n, s, d)| (n.as_str(), s.clone(), d.clone()))
            .collect();
        GgufFile::parse(p, write_f32(meta, &ts)).unwrap()
    };
    let ok = build(&meta("llama"), &tensors);
    let (model, cfg) = LlamaForCausalLm::from_gguf(&ok, &dev).unwrap();
    assert!(cfg.tie_word_embeddings && model.lm_head.is_none());

    let err = LlamaForCausalLm::from_gguf(&build(&meta("gemma3"), &tensors), &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("synthetic.gguf") && err.contains("general.architecture"),
        "{err}"
    );

    tensors[9] = t("blk.0.ffn_up.weight", vec![12, 9]);
    let err = LlamaForCausalLm::from_gguf(&build(&meta("llama"), &tensors), &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("blk.0.ffn_up.weight") && err.contains("[12, 8]"),
        "{err}"
    );

    tensors[9] = t("blk.0.ffn_up.weight", vec![12, 8]);
    tensors.push(t("blk.0.attn_q.bias", vec![8]));
    let err = LlamaForCausalLm::from_gguf(&build(&meta("llama"), &tensors), &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("blk.0.attn_q.bias") && err.contains("unexpected"),
        "{err}"
    );
}
