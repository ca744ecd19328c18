//! Linear layer `y = x·Wᵀ + b` with PyTorch's weight layout `W: [d_out, d_in]`, on
//! `matrixmultiply`'s SGEMM (strides let it read `Wᵀ` and `dyᵀ` without copies).

/// `c[m, n] (+)= a[m, k] · b[k, n]`, each given with its row and column strides.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (isize, isize),
    b: &[f32],
    (rsb, csb): (isize, isize),
    accumulate: bool,
    c: &mut [f32],
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm shapes"
    );
    let beta = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: the asserts above keep every index matrixmultiply computes from these strides
    // inside the slices; `c` is a unique borrow, so it aliases neither `a` nor `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// `y[n, d_out] = x[n, d_in] · Wᵀ + b`.
pub fn forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    n: usize,
    d_in: usize,
    d_out: usize,
    y: &mut [f32],
) {
    gemm(
        n,
        d_in,
        d_out,
        x,
        (d_in as isize, 1),
        w,
        (1, d_in as isize),
        false,
        y,
    );
    if let Some(b) = b {
        for row in y.chunks_mut(d_out) {
            for (v, bias) in row.iter_mut().zip(b) {
                *v += bias;
            }
        }
    }
}

/// Gradients of `forward`: `dx = dy · W` (overwritten), `dW += dyᵀ · x`, `db += Σ_rows dy`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
    dx: &mut [f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    gemm(
        n,
        d_out,
        d_in,
        dy,
        (d_out as isize, 1),
        w,
        (d_in as isize, 1),
        false,
        dx,
    );
    gemm(
        d_out,
        n,
        d_in,
        dy,
        (1, d_out as isize),
        x,
        (d_in as isize, 1),
        true,
        dw,
    );
    if let Some(db) = db {
        for row in dy.chunks(d_out) {
            for (g, d) in db.iter_mut().zip(row) {
                *g += d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gradcheck::{check, dot, values};

    #[test]
    fn forward_matches_a_hand_computation() {
        // x = [[1, 2]], W = [[1, 0], [0, 1], [1, 1]], b = [0.5, 0, -1] -> [1.5, 2, 2].
        let mut y = [0.0; 3];
        forward(
            &[1.0, 2.0],
            &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            Some(&[0.5, 0.0, -1.0]),
            1,
            2,
            3,
            &mut y,
        );
        assert_eq!(y, [1.5, 2.0, 2.0]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (n, d_in, d_out) = (3, 4, 5);
        let x = values(1, n * d_in);
        let w = values(2, d_out * d_in);
        let b = values(3, d_out);
        let weights = values(4, n * d_out);
        let loss = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0; n * d_out];
            forward(x, w, Some(b), n, d_in, d_out, &mut y);
            dot(&y, &weights)
        };
        let (mut dx, mut dw, mut db) = (
            vec![0.0; n * d_in],
            vec![0.0; d_out * d_in],
            vec![0.0; d_out],
        );
        backward(
            &weights,
            &x,
            &w,
            n,
            d_in,
            d_out,
            &mut dx,
            &mut dw,
            Some(&mut db),
        );
        check("dx", &x, &dx, |p| loss(p, &w, &b));
        check("dw", &w, &dw, |p| loss(&x, p, &b));
        check("db", &b, &db, |p| loss(&x, &w, p));
    }
}
