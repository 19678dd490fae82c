//! Medians with a distribution-free confidence interval, and budgets judged
//! on the interval rather than on one median.

use serde::{Deserialize, Serialize};

/// A median over rounds and the interval between two order statistics
/// that covers the true median with probability `level` (at least 95%
/// when the rounds allow it; with few rounds, the widest there is).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ci {
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
    pub level: f64,
    pub n: usize,
}

/// P(X <= k) for X ~ Binomial(n, 1/2).
fn binom_cdf_half(n: usize, k: usize) -> f64 {
    let mut c = 1.0f64; // C(n, 0)
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        if i > 0 {
            c = c * (n - i + 1) as f64 / i as f64;
        }
        sum += c;
    }
    sum / 2f64.powi(n as i32)
}

impl Ci {
    /// Ignores NaN samples (operations that did not run).
    pub fn of(samples: &[f64]) -> Self {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        s.sort_by(|a, b| a.total_cmp(b));
        let n = s.len();
        if n == 0 {
            return Self { median: f64::NAN, lo: f64::NAN, hi: f64::NAN, level: 0.0, n };
        }
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        // Largest j (1-based) with P(X <= j-1) <= 2.5%; at least 1.
        let mut j = 1;
        while j < n.div_ceil(2) && binom_cdf_half(n, j) <= 0.025 {
            j += 1;
        }
        let level = 1.0 - 2.0 * binom_cdf_half(n, j - 1);
        Self { median, lo: s[j - 1], hi: s[n - j], level, n }
    }
}

impl std::fmt::Display for Ci {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} [{:.3}..{:.3}]", self.median, self.lo, self.hi)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The whole interval is within the limit.
    Holds,
    /// The whole interval is above it.
    Missed,
    /// The interval straddles it: this run cannot tell.
    Unresolved,
}

impl Verdict {
    pub fn judge(ci: &Ci, limit: f64) -> Self {
        if !ci.hi.is_finite() {
            Verdict::Unresolved
        } else if ci.hi <= limit {
            Verdict::Holds
        } else if ci.lo > limit {
            Verdict::Missed
        } else {
            Verdict::Unresolved
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Missed => "MISSED",
            Verdict::Unresolved => "unresolved",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_rounds_take_the_4th_and_12th() {
        let s: Vec<f64> = (1..=15).map(f64::from).collect();
        let ci = Ci::of(&s);
        assert_eq!((ci.median, ci.lo, ci.hi), (8.0, 4.0, 12.0));
        assert!(ci.level >= 0.95 && ci.level < 0.97, "{}", ci.level);
    }

    #[test]
    fn three_rounds_take_the_range_and_say_so() {
        let ci = Ci::of(&[3.0, 1.0, 2.0]);
        assert_eq!((ci.median, ci.lo, ci.hi), (2.0, 1.0, 3.0));
        assert!((ci.level - 0.75).abs() < 1e-9);
    }

    #[test]
    fn nan_samples_are_left_out() {
        let ci = Ci::of(&[f64::NAN, 1.0, 3.0]);
        assert_eq!((ci.median, ci.n), (2.0, 2));
    }

    #[test]
    fn verdicts_follow_the_interval() {
        let ci = |lo, hi| Ci { median: (lo + hi) / 2.0, lo, hi, level: 0.95, n: 15 };
        assert_eq!(Verdict::judge(&ci(0.98, 1.04), 1.05), Verdict::Holds);
        assert_eq!(Verdict::judge(&ci(1.06, 1.20), 1.05), Verdict::Missed);
        assert_eq!(Verdict::judge(&ci(1.00, 1.10), 1.05), Verdict::Unresolved);
    }
}
