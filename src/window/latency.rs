//! Latency as a window keeps it: a log-linear histogram per backend, and the compact sketch a
//! window summary carries.

/// Latency histogram with 16 log-linear buckets per power of two (about 3% relative error),
/// from about 1 µs to 17 minutes. It starts sparse (a few `(bucket, count)` pairs) and turns
/// dense once a backend's latencies spread over many buckets, so a backend that served a
/// handful of requests in a window costs a few bytes and a busy one a fixed 1.9 KB. A slot is
/// cleared and reused window after window, so recording does not allocate in steady state.
#[derive(Clone, Default)]
pub struct LatencyHistogram {
    /// Non-zero buckets while there are at most [`Self::SPARSE_MAX`] of them.
    sparse: Vec<(u16, u32)>,
    /// Every bucket, once the sparse list overflowed (kept across [`Self::clear`]).
    dense: Option<Box<[u32; N_BUCKETS]>>,
    total: u64,
}

/// Saved as its non-zero buckets, the same sparse or dense.
impl serde::Serialize for LatencyHistogram {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_sketch().buckets.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for LatencyHistogram {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let buckets: Vec<(u16, u32)> = serde::Deserialize::deserialize(deserializer)?;
        let mut histogram = LatencyHistogram::default();
        for (bucket, count) in buckets {
            let bucket = usize::from(bucket).min(N_BUCKETS - 1);
            let dense = histogram.dense.get_or_insert_with(|| Box::new([0; N_BUCKETS]));
            dense[bucket] += count;
            histogram.total += u64::from(count);
        }
        Ok(histogram)
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram").field("total", &self.total).finish_non_exhaustive()
    }
}

const SUB_BUCKETS: i64 = 16;
const MIN_EXPONENT: i64 = -20; // 2^-20 s ≈ 1 µs
const MAX_EXPONENT: i64 = 10; // 2^10 s ≈ 17 min
/// Buckets of every latency histogram.
pub const N_BUCKETS: usize = ((MAX_EXPONENT - MIN_EXPONENT) * SUB_BUCKETS) as usize;

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to the bucket range
fn bucket_of(seconds: f64) -> usize {
    if seconds.is_nan() || seconds <= 0.0 {
        return 0;
    }
    // The float's exponent and top 4 mantissa bits are the bucket: no logarithm needed.
    let bits = seconds.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let sub = ((bits >> 48) & 0xf) as i64;
    let index = (exponent - MIN_EXPONENT) * SUB_BUCKETS + sub;
    index.clamp(0, N_BUCKETS as i64 - 1) as usize
}

/// The latency a bucket stands for (its midpoint), ms.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
pub fn bucket_midpoint_ms(index: usize) -> f64 {
    let exponent = index as i64 / SUB_BUCKETS + MIN_EXPONENT;
    let sub = (index as i64 % SUB_BUCKETS) as f64;
    let base = 2f64.powi(exponent as i32);
    base * (1.0 + (sub + 0.5) / SUB_BUCKETS as f64) * 1000.0
}

/// The first bucket whose every latency is above `ms`.
pub fn first_bucket_above_ms(ms: f64) -> usize {
    (bucket_of(ms / 1000.0) + 1).min(N_BUCKETS)
}

/// The `q` quantile (0..=1) of bucket counts given in ascending bucket order, ms.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn quantile_of_buckets(
    buckets: impl Iterator<Item = (usize, u64)>,
    total: u64,
    q: f64,
) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (index, count) in buckets {
        seen += count;
        if seen >= rank {
            return Some(bucket_midpoint_ms(index));
        }
    }
    None
}

impl LatencyHistogram {
    /// Distinct buckets kept as pairs before the histogram turns dense.
    const SPARSE_MAX: usize = 24;

    /// Records one latency in seconds.
    #[inline]
    pub fn record(&mut self, seconds: f64) {
        let bucket = bucket_of(seconds);
        self.total += 1;
        if let Some(dense) = &mut self.dense {
            dense[bucket] += 1;
            return;
        }
        #[allow(clippy::cast_possible_truncation)] // N_BUCKETS < 2^16
        let key = bucket as u16;
        if let Some(pair) = self.sparse.iter_mut().find(|(b, _)| *b == key) {
            pair.1 += 1;
        } else if self.sparse.len() < Self::SPARSE_MAX {
            self.sparse.push((key, 1));
        } else {
            let mut dense = Box::new([0u32; N_BUCKETS]);
            for &(b, count) in &self.sparse {
                dense[usize::from(b)] = count;
            }
            dense[bucket] += 1;
            self.sparse.clear();
            self.dense = Some(dense);
        }
    }

    /// Latencies recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0..=1) in milliseconds, or `None` when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        self.to_sketch().quantile_ms(q)
    }

    /// The non-zero buckets, in ascending order.
    pub fn to_sketch(&self) -> LatencySketch {
        let mut buckets: Vec<(u16, u32)> = match &self.dense {
            #[allow(clippy::cast_possible_truncation)] // N_BUCKETS < 2^16
            Some(dense) => dense
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(b, c)| (b as u16, *c))
                .collect(),
            None => self.sparse.clone(),
        };
        buckets.sort_unstable_by_key(|(b, _)| *b);
        LatencySketch { buckets, total: self.total }
    }

    /// Empties it for the next window, keeping its storage.
    pub fn clear(&mut self) {
        if self.total > 0 {
            self.sparse.clear();
            if let Some(dense) = &mut self.dense {
                dense.fill(0);
            }
            self.total = 0;
        }
    }
}

/// A closed window's latencies for one backend: its non-zero histogram buckets, ascending.
/// Compact, so windows with many backends stay small, and exact enough for quantiles and for
/// counting requests slower than a threshold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencySketch {
    buckets: Vec<(u16, u32)>,
    total: u64,
}

impl LatencySketch {
    /// Latencies recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0..=1), ms.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        quantile_of_buckets(self.iter(), self.total, q)
    }

    /// (bucket, count) pairs, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (usize, u64)> + Clone + '_ {
        self.buckets.iter().map(|&(b, c)| (usize::from(b), u64::from(c)))
    }

    /// Requests in buckets from `first_bucket` up.
    pub fn count_from_bucket(&self, first_bucket: usize) -> u64 {
        self.iter().filter(|(b, _)| *b >= first_bucket).map(|(_, c)| c).sum()
    }

    /// A sketch from raw (bucket, count) pairs, for tests and generators.
    pub fn from_latencies_ms(latencies_ms: &[f64]) -> Self {
        let mut histogram = LatencyHistogram::default();
        for ms in latencies_ms {
            histogram.record(ms / 1000.0);
        }
        histogram.to_sketch()
    }
}
