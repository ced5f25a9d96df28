//! Triangular strips (papers.md §4.1, §4.6): growth, assembly, parameter counts.

use super::common::*;
use burn::tensor::DType;
use peftlab_linalg::LinalgError;
use peftlab_linalg::init::SeededRng;
use peftlab_linalg::strips::{
    StripInit, TriangularStrips, strip_params, strip_params_constant_block,
    strip_params_default_growth, strip_params_rank1,
};
use proptest::prelude::*;

fn grow_all(sizes: &[usize], init: StripInit, seed: u64) -> (TriangularStrips, Vec<Vec<f64>>) {
    let dev = device();
    let mut rng = SeededRng::new(seed);
    let mut s = TriangularStrips::new();
    let mut snapshots = Vec::new();
    for &k in sizes {
        s = s.grow(k, init, &mut rng, &dev, DType::F32).unwrap();
        snapshots.push(values(&s.assemble().unwrap()));
    }
    (s, snapshots)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Growing never changes an existing strip, nor the old top-left `R×R` block of `C`; `C`
    /// equals `L + U`; `L` is zero above and `U` below the block diagonal; counts follow §4.6.
    #[test]
    fn growth_preserves_existing_entries(
        sizes in prop::collection::vec(1usize..4, 1..6),
        seed in any::<u64>(),
    ) {
        let dev = device();
        let mut rng = SeededRng::new(seed);
        let mut s = TriangularStrips::new();
        let mut prev_c: Option<(usize, Vec<f64>)> = None;
        let mut prev_strips: Vec<Vec<f64>> = Vec::new();
        for &k in &sizes {
            s = s.grow(k, StripInit::Normal { std: 1.0 }, &mut rng, &dev, DType::F32).unwrap();
            let r = s.rank();
            // existing strips untouched, bit for bit
            for (i, old) in prev_strips.iter().enumerate() {
                prop_assert_eq!(&values(&s.rows[i].val()), old);
            }
            let c = values(&s.assemble().unwrap());
            if let Some((pr, pc)) = &prev_c {
                for i in 0..*pr {
                    for j in 0..*pr {
                        prop_assert_eq!(c[i * r + j], pc[i * pr + j], "C[{},{}] changed", i, j);
                    }
                }
            }
            let l = values(&s.lower().unwrap());
            let u = values(&s.upper().unwrap());
            let sum: Vec<f64> = l.iter().zip(&u).map(|(a, b)| a + b).collect();
            prop_assert!(max_abs_diff(&sum, &c) <= 1e-6);
            // block structure: entry (i, j) of L is zero when j is beyond the end of i's block
            let mut block_end = vec![0usize; r];
            let mut acc = 0;
            for kb in s.block_sizes() {
                for e in block_end.iter_mut().skip(acc).take(kb) { *e = acc + kb; }
                acc += kb;
            }
            for i in 0..r {
                for j in 0..r {
                    if j >= block_end[i] { prop_assert_eq!(l[i * r + j], 0.0); }
                    if i >= block_end[j] { prop_assert_eq!(u[i * r + j], 0.0); }
                }
            }
            prop_assert_eq!(s.num_params(), strip_params(&s.block_sizes()));
            prev_strips = s.rows.iter().map(|p| values(&p.val())).collect();
            prev_c = Some((r, c));
        }
        prop_assert_eq!(s.rank(), sizes.iter().sum::<usize>());
        prop_assert_eq!(s.block_sizes(), sizes);
    }

    /// The closed forms of §4.6 agree with the general count and with the tensors held.
    #[test]
    fn parameter_count_formulas(r in 1usize..12, k in 1usize..5, m in 0usize..5) {
        prop_assert_eq!(strip_params(&vec![1; r]), strip_params_rank1(r));
        prop_assert_eq!(strip_params(&vec![k; r]), strip_params_constant_block(r * k, k));
        let mut default = vec![1usize];
        default.extend(std::iter::repeat_n(4, m));
        prop_assert_eq!(strip_params(&default), strip_params_default_growth(m));
        let (s, _) = grow_all(&default, StripInit::Zeros, 0);
        prop_assert_eq!(s.num_params(), strip_params_default_growth(m));
    }
}

#[test]
fn rank_one_growth_is_exactly_triangular() {
    let (s, _) = grow_all(&[1, 1, 1, 1], StripInit::Normal { std: 1.0 }, 7);
    let l = values(&s.lower().unwrap());
    let u = values(&s.upper().unwrap());
    for i in 0..4 {
        for j in 0..4 {
            if j > i {
                assert_eq!(l[i * 4 + j], 0.0);
            } else {
                assert_ne!(l[i * 4 + j], 0.0, "L[{i},{j}] should be a parameter");
            }
            if i > j {
                assert_eq!(u[i * 4 + j], 0.0);
            }
        }
    }
    assert_eq!(s.num_params(), 20); // 4·5
}

#[test]
fn init_schemes_place_ones_where_documented() {
    // DiagonalIdentity: each new diagonal block of C is 2I, everything else 0.
    let (_, snaps) = grow_all(&[2, 3], StripInit::DiagonalIdentity, 0);
    let c = snaps.last().unwrap();
    for i in 0..5 {
        for j in 0..5 {
            let want = if i == j { 2.0 } else { 0.0 };
            assert_eq!(c[i * 5 + j], want, "C[{i},{j}]");
        }
    }
    // LeadingIdentity (torch eye_ on each strip): second block's row strip [3, 5] has ones at
    // [0,0],[1,1],[2,2], i.e. rows 2..5 of L get ones in columns 0..3.
    let (s, _) = grow_all(&[2, 3], StripInit::LeadingIdentity, 0);
    let l = values(&s.lower().unwrap());
    assert_eq!(l[2 * 5], 1.0);
    assert_eq!(l[3 * 5 + 1], 1.0);
    assert_eq!(l[4 * 5 + 2], 1.0);
    assert_eq!(l[4 * 5 + 4], 0.0);
}

#[test]
fn assembly_is_differentiable_in_every_strip() {
    let dev = device().autodiff();
    let mut rng = SeededRng::new(3);
    let s = TriangularStrips::new()
        .grow(
            1,
            StripInit::Normal { std: 1.0 },
            &mut rng,
            &dev,
            DType::F32,
        )
        .unwrap()
        .grow(
            2,
            StripInit::Normal { std: 1.0 },
            &mut rng,
            &dev,
            DType::F32,
        )
        .unwrap();
    // L = Σ_ij w_ij C_ij with w_ij = i·R + j + 1: each strip entry's gradient is its weight
    // (strip entries on the diagonal blocks appear once in L and once in U).
    let r = s.rank();
    let w: Vec<f64> = (0..r * r).map(|x| x as f64 + 1.0).collect();
    let wt = tensor(&w, r, r, &dev, DType::F32);
    let loss = (s.assemble().unwrap() * wt).sum();
    let grads = loss.backward();
    let g_row1 = values(&s.rows[1].val().grad(&grads).unwrap()); // rows 1..3, cols 0..3
    assert_eq!(g_row1, vec![4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let g_col1 = values(&s.cols[1].val().grad(&grads).unwrap()); // rows 0..3, cols 1..3
    assert_eq!(g_col1, vec![2.0, 3.0, 5.0, 6.0, 8.0, 9.0]);
}

#[test]
fn bad_growth_is_a_typed_error() {
    let dev = device();
    let mut rng = SeededRng::new(0);
    let s = TriangularStrips::new();
    assert!(matches!(s.assemble(), Err(LinalgError::Empty { .. })));
    let s = s
        .grow(2, StripInit::Zeros, &mut rng, &dev, DType::F32)
        .unwrap();
    let row = tensor(&[0.0; 4], 1, 4, &dev, DType::F32); // should be [1, 3]
    let col = tensor(&[0.0; 3], 3, 1, &dev, DType::F32);
    let err = s.grow_with(row, col).unwrap_err();
    assert!(err.to_string().contains("row strip"), "{err}");
    let s = TriangularStrips::new();
    assert!(matches!(
        s.grow(0, StripInit::Zeros, &mut rng, &dev, DType::F32),
        Err(LinalgError::InvalidArgument { .. })
    ));
}
