//! torch's CPU float `sum` / `mean` over a contiguous 1-D tensor, bit-exact.
//!
//! Followed: `aten/src/ATen/native/cpu/SumKernel.cpp` (`cascade_sum`: `vectorized_inner_sum`
//! over 8-lane vectors, `row_sum` with 4 interleaved accumulators, `multi_row_sum`'s 4-level
//! cascade), `TensorIterator::parallel_reduce` (more than `GRAIN_SIZE` = 32768 elements and
//! more than one thread: `at::parallel_for` chunks of `ceil(n / threads)`, partial sums added in
//! thread order) and `mean` = `sum / n` on CPU. Checked against torch 2.15 (its sum kernel runs
//! with 8 f32 lanes on AVX2 and AVX-512 machines alike) for every length up to 300 and
//! large ones, serial and with two threads.

/// Lanes of torch's `Vectorized<float>` in the sum kernel.
const LANES: usize = 8;
/// `at::internal::GRAIN_SIZE`.
const GRAIN_SIZE: usize = 32768;

fn ceil_log2(x: usize) -> u32 {
    if x <= 1 {
        0
    } else {
        usize::BITS - (x - 1).leading_zeros()
    }
}

/// `multi_row_sum` over `size` rows of `nrows` accumulators of type `T`, `load(i, k)` giving
/// element `k` of row `i`.
fn multi_row_sum<T: Copy + Default + std::ops::AddAssign>(
    size: usize,
    nrows: usize,
    load: impl Fn(usize, usize) -> T,
) -> Vec<T> {
    const LEVELS: usize = 4;
    let level_power = std::cmp::max(4, ceil_log2(size) / LEVELS as u32);
    let level_step = 1usize << level_power;
    let level_mask = level_step - 1;
    let mut acc = vec![vec![T::default(); nrows]; LEVELS];
    let mut i = 0usize;
    while i + level_step <= size {
        for _ in 0..level_step {
            for (k, a) in acc[0].iter_mut().enumerate() {
                *a += load(i, k);
            }
            i += 1;
        }
        for j in 1..LEVELS {
            let (below, above) = acc.split_at_mut(j);
            for (hi, lo) in above[0].iter_mut().zip(below[j - 1].iter_mut()) {
                *hi += *lo;
                *lo = T::default();
            }
            if i & (level_mask << (j as u32 * level_power)) != 0 {
                break;
            }
        }
    }
    while i < size {
        for (k, a) in acc[0].iter_mut().enumerate() {
            *a += load(i, k);
        }
        i += 1;
    }
    let (first, rest) = acc.split_at_mut(1);
    for level in rest.iter() {
        for (a, v) in first[0].iter_mut().zip(level) {
            *a += *v;
        }
    }
    acc.swap_remove(0)
}

/// `row_sum`: 4 interleaved accumulators (`ilp_factor`), remainder into the first.
fn row_sum<T: Copy + Default + std::ops::AddAssign>(size: usize, load: impl Fn(usize) -> T) -> T {
    const ILP: usize = 4;
    let size_ilp = size / ILP;
    let mut partial = multi_row_sum(size_ilp, ILP, |i, k| load(i * ILP + k));
    for i in size_ilp * ILP..size {
        partial[0] += load(i);
    }
    let mut total = partial[0];
    for p in &partial[1..] {
        total += *p;
    }
    total
}

#[derive(Clone, Copy, Default)]
struct Lanes([f32; LANES]);

impl std::ops::AddAssign for Lanes {
    fn add_assign(&mut self, o: Lanes) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
    }
}

/// The serial kernel on one contiguous chunk.
fn serial_sum(x: &[f32]) -> f32 {
    let n = x.len();
    if n < LANES {
        return row_sum(n, |i| x[i]);
    }
    let vecs = n / LANES;
    let vacc = row_sum(vecs, |i| {
        let mut l = [0f32; LANES];
        l.copy_from_slice(&x[i * LANES..(i + 1) * LANES]);
        Lanes(l)
    });
    let mut total = 0f32;
    for v in &x[vecs * LANES..] {
        total += v;
    }
    for v in vacc.0 {
        total += v;
    }
    total
}

/// `torch.sum` of a contiguous f32 tensor with `threads` intra-op threads.
pub fn torch_sum(x: &[f32], threads: usize) -> f32 {
    let n = x.len();
    let tasks = threads.max(1).min(n.div_ceil(GRAIN_SIZE));
    if tasks <= 1 {
        return serial_sum(x);
    }
    let chunk = n.div_ceil(tasks);
    let mut total = 0f32;
    for part in x.chunks(chunk) {
        total += serial_sum(part);
    }
    total
}

/// `torch.mean` of a contiguous f32 tensor (`sum / n`).
pub fn torch_mean(x: &[f32], threads: usize) -> f32 {
    torch_sum(x, threads) / x.len() as f32
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn small_sums_use_four_interleaved_accumulators() {
        // ((1e8 + 1) + 1 ...) loses the ones; the 4-way split keeps them apart until the end.
        let x = [1e8f32, 1.0, 1.0, 1.0, -1e8];
        assert_eq!(torch_sum(&x, 1), 3.0);
    }

    #[test]
    fn threads_only_matter_above_the_grain_size() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32).sin()).collect();
        assert_eq!(torch_sum(&x, 1).to_bits(), torch_sum(&x, 8).to_bits());
    }
}
