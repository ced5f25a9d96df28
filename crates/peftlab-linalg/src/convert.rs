//! Conversion between burn tensors and faer matrices.
//!
//! burn tensors are row-major `[rows, cols]`; faer matrices are column-major. Both directions copy.
//! Reading a tensor converts its element type to the requested scalar (`f16`/`bf16`/`f32`/`f64`
//! tensors can all be read as `f32` or `f64`).

use burn::tensor::{DType, Device, Tensor, TensorData};
use faer::{Mat, MatRef};

use crate::{LinalgError, Real, Result};

/// Read a 2-D tensor `[rows, cols]` into a faer matrix of scalar `T`, rejecting NaN and ±inf.
///
/// `what` names the operand in errors.
pub fn tensor_to_mat<T: Real>(tensor: &Tensor<2>, what: &str) -> Result<Mat<T>> {
    let [rows, cols] = tensor.dims();
    let dtype = tensor.dtype();
    if !dtype.is_float() {
        return Err(LinalgError::DType {
            what: what.to_string(),
            dtype: format!("{dtype:?}"),
        });
    }
    let values = tensor.try_to_vec_as::<T>().map_err(|e| LinalgError::Read {
        what: what.to_string(),
        reason: format!("{e:?}"),
    })?;
    let mat = Mat::from_fn(rows, cols, |i, j| values[i * cols + j]);
    check_finite(mat.as_ref(), what)?;
    Ok(mat)
}

/// Read a 1-D tensor into a `Vec<T>`, rejecting NaN and ±inf.
pub fn tensor_to_vec<T: Real>(tensor: &Tensor<1>, what: &str) -> Result<Vec<T>> {
    let values = tensor.try_to_vec_as::<T>().map_err(|e| LinalgError::Read {
        what: what.to_string(),
        reason: format!("{e:?}"),
    })?;
    if let Some((i, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !v.to_f64().is_finite())
    {
        return Err(LinalgError::NonFinite {
            what: what.to_string(),
            row: i,
            col: 0,
            value: v.to_f64(),
        });
    }
    Ok(values)
}

/// Copy a faer matrix into a new 2-D tensor `[rows, cols]` of the given dtype on `device`.
pub fn mat_to_tensor<T: Real>(mat: MatRef<'_, T>, device: &Device, dtype: DType) -> Tensor<2> {
    let (rows, cols) = (mat.nrows(), mat.ncols());
    let mut values = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            values.push(mat[(i, j)]);
        }
    }
    Tensor::from_data(TensorData::new(values, [rows, cols]), (device, dtype))
}

/// Copy a slice into a new 1-D tensor `[len]` of the given dtype on `device`.
pub fn slice_to_tensor<T: Real>(values: &[T], device: &Device, dtype: DType) -> Tensor<1> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len()]),
        (device, dtype),
    )
}

/// Fail with [`LinalgError::NonFinite`] naming the first NaN/inf entry (column-major scan order).
pub fn check_finite<T: Real>(mat: MatRef<'_, T>, what: &str) -> Result<()> {
    for j in 0..mat.ncols() {
        for i in 0..mat.nrows() {
            let v = mat[(i, j)].to_f64();
            if !v.is_finite() {
                return Err(LinalgError::NonFinite {
                    what: what.to_string(),
                    row: i,
                    col: j,
                    value: v,
                });
            }
        }
    }
    Ok(())
}

/// Fail with [`LinalgError::Empty`] when the matrix has no rows or no columns.
pub fn check_nonempty<T>(mat: MatRef<'_, T>, what: &str) -> Result<()> {
    if mat.nrows() == 0 || mat.ncols() == 0 {
        return Err(LinalgError::Empty {
            what: what.to_string(),
            rows: mat.nrows(),
            cols: mat.ncols(),
        });
    }
    Ok(())
}

/// The dtype a host computation on `tensor` should return: `f64` stays `f64`, every other float
/// type is computed in `f32` and returned in the tensor's own dtype.
pub(crate) fn compute_in_f64(tensor: &Tensor<2>) -> bool {
    tensor.dtype() == DType::F64
}
