//! Gradient buckets: the flat gradient buffer cut into contiguous ranges of whole parameter
//! tensors, last parameters first — the order the backward finishes them — so each bucket can
//! be all-reduced as soon as its gradients are complete while the backward goes on.

use super::collective::Collective;
use crate::error::TrainError;
use crate::model::params::Layout;
use std::ops::Range;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buckets {
    /// Element ranges of the flat buffer, in backward order; together they cover it once.
    pub ranges: Vec<Range<usize>>,
}

impl Buckets {
    /// Buckets of at most `max_elems` elements (a larger tensor is a bucket of its own).
    pub fn new(layout: &Layout, max_elems: usize) -> Buckets {
        let mut views: Vec<(usize, usize)> = layout
            .views
            .iter()
            .map(|v| (v.offset, v.offset + v.len()))
            .collect();
        views.sort();
        let mut ranges: Vec<Range<usize>> = Vec::new();
        for (start, end) in views.into_iter().rev() {
            match ranges.last_mut() {
                Some(last) if last.start == end && last.end - start <= max_elems => {
                    last.start = start;
                }
                _ => ranges.push(start..end),
            }
        }
        Buckets { ranges }
    }

    /// Sum `grads` over the ranks of `collective`, bucket by bucket.
    pub fn all_reduce(
        &self,
        grads: &mut [f32],
        collective: &dyn Collective,
    ) -> Result<(), TrainError> {
        for range in &self.ranges {
            collective.all_reduce_sum(&mut grads[range.clone()])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::ModelConfig;
    use crate::parallel::collective::InProcess;

    #[test]
    fn buckets_cover_the_buffer_once_in_backward_order() {
        let layout = Layout::new(&ModelConfig::preset("tiny-topk-moe").unwrap());
        for max in [1, 1000, 20_000, usize::MAX] {
            let buckets = Buckets::new(&layout, max);
            let mut covered = 0;
            let mut previous_start = layout.len;
            for range in &buckets.ranges {
                assert_eq!(range.end, previous_start, "contiguous, last first");
                previous_start = range.start;
                covered += range.len();
                let single = layout.views.iter().any(|v| v.range() == *range);
                assert!(range.len() <= max || single, "{range:?} over {max}");
            }
            assert_eq!((covered, previous_start), (layout.len, 0));
        }
        // Everything in one bucket, or one per tensor.
        assert_eq!(
            Buckets::new(&layout, usize::MAX).ranges,
            vec![0..layout.len]
        );
        assert_eq!(Buckets::new(&layout, 1).ranges.len(), layout.views.len());
    }

    #[test]
    fn bucketed_all_reduce_sums_every_rank() {
        let layout = Layout::new(&ModelConfig::preset("tiny-dense").unwrap());
        let buckets = Buckets::new(&layout, 10_000);
        assert!(buckets.ranges.len() > 3);
        let world = 3;
        let grads = |rank: usize| -> Vec<f32> {
            (0..layout.len)
                .map(|i| ((i * 7 + rank * 13) % 101) as f32)
                .collect()
        };
        let results: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = InProcess::group(world)
                .into_iter()
                .map(|c| {
                    let buckets = &buckets;
                    scope.spawn(move || {
                        let mut g = grads(c.rank());
                        buckets.all_reduce(&mut g, &c).unwrap();
                        g
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let all: Vec<Vec<f32>> = (0..world).map(grads).collect();
        let want: Vec<f32> = (0..layout.len)
            .map(|i| all.iter().map(|g| g[i]).sum())
            .collect();
        for r in results {
            assert!(r == want);
        }
    }
}
