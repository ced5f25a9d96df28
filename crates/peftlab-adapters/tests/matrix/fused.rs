//! MTLoRA's fused-QKV form (the released GPT-2 code): one shared `3r × 3r` T over a `c_attn`
//! layer, block-diagonal B.

use peftlab_adapters::mtlora::MtLoraConfig;
use peftlab_adapters::target::ModuleSelector;
use peftlab_adapters::{AdaptedLinear, Adapter, AdapterConfig, attach, load_adapter, save_adapter};
use peftlab_linalg::transform::TransformKind;

use super::{device, max_abs_diff, perturb, values};
use burn::tensor::{Tensor, TensorData};
use peftlab_linalg::init::{Fill, SeededRng};

fn fused(kind: TransformKind, r: usize) -> AdapterConfig {
    AdapterConfig::Mtlora(
        MtLoraConfig::new(r, kind, ModuleSelector::Regex(String::new()))
            .with_fused_qkv_modules(Some(vec![String::new()])),
    )
}

/// Parameter counts follow papers.md §2.4: GPT-2 Medium `c_attn` (1024 → 3072) at r = 4 holds
/// `3r·d + 3·d·r + (3r)²` = 12,288 + 12,288 + 144 (SHIM/ICFM), `+ (3r)²` more for CTCM/DTSM.
#[test]
fn fused_parameter_counts_match_the_digest() {
    let dev = device();
    for (kind, want) in [
        (TransformKind::Shim, 24_720),
        (TransformKind::Icfm, 24_720),
        (TransformKind::Ctcm, 24_864),
        (TransformKind::Dtsm, 24_864),
    ] {
        let mut l = AdaptedLinear::new(1024, 3072, true, &dev);
        attach(&mut l, &fused(kind, 4), 0).unwrap();
        assert_eq!(l.num_adapter_params(), want, "{kind:?}");
        let Some(Adapter::LowRank(a)) = &l.adapter else {
            panic!()
        };
        assert_eq!((a.rank(), a.groups, a.lora_b.dims()), (12, 3, [3072, 4]));
    }
}

/// The grouped forward equals the merged block-diagonal dense update, identity at init, and a
/// save/load round trip keeps the outputs.
#[test]
fn fused_forward_matches_blockdiag_merge() {
    let dev = device();
    for kind in [TransformKind::Shim, TransformKind::Ctcm] {
        let mut l = AdaptedLinear::new(8, 24, true, &dev);
        let base = l.clone();
        let x: Tensor<3> = Tensor::from_data(
            TensorData::new(
                Fill::Normal { std: 1.0 }.sample(6, 8, &mut SeededRng::new(1)),
                [2, 3, 8],
            ),
            &dev,
        );
        let y0 = values(&l.forward(x.clone()));
        attach(&mut l, &fused(kind, 2), 5).unwrap();
        assert_eq!(
            values(&l.forward(x.clone())),
            y0,
            "{kind:?}: identity at init"
        );
        perturb(&mut l, 2);
        let unmerged = values(&l.forward(x.clone()));
        assert!(max_abs_diff(&unmerged, &y0) > 1e-3);
        let dir =
            std::env::temp_dir().join(format!("peftlab-fused-{}-{kind:?}", std::process::id()));
        save_adapter(&l, &fused(kind, 2), &dir).unwrap();
        let mut loaded = base.clone();
        load_adapter(&mut loaded, &dir).unwrap();
        assert_eq!(
            values(&loaded.forward(x.clone())),
            unmerged,
            "{kind:?}: reloaded"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        l.merge(true, "").unwrap();
        assert!(
            max_abs_diff(&values(&l.forward(x)), &unmerged) <= 1e-5,
            "{kind:?}: merge"
        );
    }
    let mut bad = AdaptedLinear::new(8, 10, true, &dev);
    let err = attach(&mut bad, &fused(TransformKind::Shim, 2), 0).unwrap_err();
    assert!(err.to_string().contains("3 groups"), "{err}");
}
