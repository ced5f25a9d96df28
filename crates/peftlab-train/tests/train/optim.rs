//! The optimizer pieces against PyTorch 2.15 / transformers 5.24 on fixed numbers (computed once
//! with `torch.optim.AdamW`, `clip_grad_norm_`, `CrossEntropyLoss(label_smoothing)` and the
//! `get_*_schedule_with_warmup` functions; the script is in the test's comments). Tolerances:
//! f32 arithmetic against PyTorch's float64 — 2e-6 absolute on values of order 1.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use peftlab_data::task::Label;
use peftlab_train::optim::{AdamW, AdamWConfig, Schedule, global_grad_norm, lr_at, parameters};
use peftlab_train::trainer::classification_loss;

fn t2(v: [[f64; 3]; 2], dev: &Device) -> Tensor<2> {
    let flat: Vec<f32> = v.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(flat, [2, 3]), dev)
}

fn close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() <= tol, "{what}: {got:?} vs {want:?}");
    }
}

/// p = [[0.5,-1,2],[0.1,0,-0.3]]; AdamW(lr, betas=(0.9,0.999), eps=1e-8, weight_decay=0.01);
/// three steps with the gradients and learning rates below.
#[test]
fn adamw_matches_torch() {
    let dev = Device::default();
    let mut lin: Linear = LinearConfig::new(2, 3).init(&dev);
    lin.weight = Param::initialized(
        lin.weight.id,
        t2([[0.5, -1.0, 2.0], [0.1, 0.0, -0.3]], &dev),
    );
    let grads = [
        [[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]],
        [[0.2, 0.2, -0.2], [1.0, -1.0, 0.5]],
        [[-0.5, 1.0, 0.0], [0.3, 0.3, 0.3]],
    ];
    let want = [
        [
            0.399500001,
            -0.8990000005,
            1.898000002,
            0.0999,
            -0.0999999997,
            -0.199700001,
        ],
        [
            0.3591482026,
            -0.868918075,
            1.8797707101,
            0.0626432093,
            -0.1199609282,
            -0.1862832992,
        ],
        [
            0.3535600604,
            -0.866238251,
            1.8740516696,
            0.0479390011,
            -0.1273044122,
            -0.185583265,
        ],
    ];
    let bias0 = lin.bias.as_ref().unwrap().val().into_data();
    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: 0.01,
        ..AdamWConfig::default()
    });
    for (k, (g, lr)) in grads.iter().zip([0.1, 0.05, 0.02]).enumerate() {
        let mut gp = GradientsParams::new();
        gp.register(lin.weight.id, t2(*g, &dev));
        lin = opt.step(lin, gp, lr, 1.0);
        let v = lin
            .weight
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        close(&v, &want[k], 2e-6, &format!("step {}", k + 1));
    }
    // no gradient, no update (no weight decay either)
    assert_eq!(lin.bias.as_ref().unwrap().val().into_data(), bias0);
    // state is keyed by path and survives a record round trip
    let rec = opt.to_record();
    assert_eq!(rec.moments.keys().collect::<Vec<_>>(), vec!["weight"]);
    assert_eq!(rec.moments["weight"].0, 3);
    let mut again = AdamW::new(opt.config);
    again.load_record(&rec, &dev);
    assert_eq!(again.to_record(), rec);
}

/// `clip_grad_norm_([a, b], 1.0)` on a = [[3,4,0],[0,0,12]], b = [1,2,2]: norm 13.3417, scale
/// 1/(13.3417 + 1e-6).
#[test]
fn global_norm_and_clip_scale_match_torch() {
    let dev = Device::default();
    let lin: Linear = LinearConfig::new(2, 3).init(&dev);
    let mut gp = GradientsParams::new();
    gp.register(lin.weight.id, t2([[3.0, 4.0, 0.0], [0.0, 0.0, 12.0]], &dev));
    gp.register(
        lin.bias.as_ref().unwrap().id,
        Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0, 2.0], [3]), &dev),
    );
    let n = global_grad_norm(&lin, &gp);
    assert!((n - 13.341664064).abs() < 1e-5, "{n}");
    let scale = 1.0 / (n + 1e-6);
    assert!((3.0 * scale - 0.22485947608947754).abs() < 1e-7);
    // parameter paths as the optimizer keys them
    let names: Vec<String> = parameters(&lin).into_iter().map(|p| p.0).collect();
    assert_eq!(names, vec!["weight", "bias"]);
}

/// `CrossEntropyLoss(label_smoothing=0.1)(logits, [0, 2])` = 0.70162714, without smoothing
/// 0.62162709; regression is the mean squared error.
#[test]
fn classification_loss_matches_torch() {
    let dev = Device::default();
    let logits = t2([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]], &dev);
    let labels = [Some(Label::Class(0)), Some(Label::Class(2))];
    let l = classification_loss(logits.clone(), &labels, 0.1)
        .unwrap()
        .into_scalar::<f64>();
    assert!((l - 0.7016271352767944).abs() < 1e-6, "{l}");
    let l = classification_loss(logits.clone(), &labels, 0.0)
        .unwrap()
        .into_scalar::<f64>();
    assert!((l - 0.6216270923614502).abs() < 1e-6, "{l}");
    let err = classification_loss(logits, &[Some(Label::Class(0)), Some(Label::Class(3))], 0.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("example 1"), "{err}");
    let reg = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0], [2, 1]), &dev);
    let l = classification_loss(
        reg,
        &[Some(Label::Score(0.5)), Some(Label::Score(0.0))],
        0.0,
    )
    .unwrap()
    .into_scalar::<f64>();
    assert!((l - (0.25 + 4.0) / 2.0).abs() < 1e-6, "{l}");
}

/// transformers' `get_linear_schedule_with_warmup(opt, 3, 10)` and the cosine one, lr = 1.
#[test]
fn schedules_match_transformers() {
    let linear = [
        0.0,
        1.0 / 3.0,
        2.0 / 3.0,
        1.0,
        0.857142857,
        0.714285714,
        0.571428571,
        0.428571429,
        0.285714286,
        0.142857143,
        0.0,
    ];
    let cosine = [
        0.0,
        1.0 / 3.0,
        2.0 / 3.0,
        1.0,
        0.950484434,
        0.811744901,
        0.611260467,
        0.388739533,
        0.188255099,
        0.049515566,
        0.0,
    ];
    for (s, want) in [(Schedule::Linear, linear), (Schedule::Cosine, cosine)] {
        for (step, w) in want.iter().enumerate() {
            let got = lr_at(s, 1.0, step, 3, 10);
            assert!((got - w).abs() < 1e-8, "{s:?} step {step}: {got} vs {w}");
        }
    }
    assert_eq!(lr_at(Schedule::Constant, 2.0, 7, 3, 10), 2.0);
    assert_eq!(lr_at(Schedule::Constant, 2.0, 0, 0, 10), 2.0);
}

#[test]
fn a_module_without_grads_is_unchanged() {
    let dev = Device::default();
    let lin: Linear = LinearConfig::new(2, 3).init(&dev);
    let w0 = lin.weight.val().into_data();
    let mut opt = AdamW::new(AdamWConfig::default());
    let lin = opt.step(lin, GradientsParams::new(), 0.1, 1.0);
    assert_eq!(lin.weight.val().into_data(), w0);
    assert!(opt.is_empty());
}
