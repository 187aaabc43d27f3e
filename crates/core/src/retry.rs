//! When a task that failed (or whose lease expired) may run again:
//! exponential backoff with a deterministic jitter.
//!
//! The delay before attempt `n + 1`, after attempt `n` ended without a
//! result, is `min(base · 2^(n-1), max)` plus a jitter of up to a quarter
//! of that, derived from the task id and the attempt: every replica computes
//! the same delay, and tasks that failed together do not all come back in
//! the same millisecond.

use crate::task::TaskId;

/// The delay (ms) after attempt `attempt` (1 for the first) of `task` ended
/// without a result; 0 when `base_ms` is 0.
pub fn backoff_ms(base_ms: u64, max_ms: u64, task: TaskId, attempt: u32) -> u64 {
    let shift = attempt.saturating_sub(1).min(63);
    let grown = base_ms.checked_shl(shift).filter(|d| d >> shift == base_ms).unwrap_or(u64::MAX);
    let delay = grown.min(max_ms);
    let spread = delay / 4;
    if spread == 0 {
        return delay;
    }
    delay.saturating_add(mix(task.0 ^ (u64::from(attempt) << 40)) % (spread + 1))
}

/// splitmix64's finalizer: a well-spread, deterministic hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let within = |attempt, lo: u64| {
            let d = backoff_ms(1000, 60_000, TaskId(7), attempt);
            assert!((lo..=lo + lo / 4).contains(&d), "attempt {attempt}: {d} ms, nominal {lo}");
        };
        within(1, 1000);
        within(2, 2000);
        within(3, 4000);
        within(7, 60_000); // 64 s, capped
        within(40, 60_000);
        assert_eq!(backoff_ms(0, 60_000, TaskId(7), 5), 0, "no base, no delay");
        assert!(backoff_ms(u64::MAX / 2, u64::MAX, TaskId(1), 60) >= u64::MAX / 2, "saturates");
    }

    #[test]
    fn jitter_differs_between_tasks() {
        let delays: std::collections::BTreeSet<u64> =
            (1..50).map(|t| backoff_ms(1000, 60_000, TaskId(t), 1)).collect();
        assert!(delays.len() > 25, "{delays:?}");
    }

    proptest! {
        #[test]
        fn within_bounds_and_deterministic(
            base in 0u64..100_000,
            max in 0u64..10_000_000,
            task in 1u64..1_000_000,
            attempt in 1u32..100,
        ) {
            let d = backoff_ms(base, max, TaskId(task), attempt);
            let grown = (base as u128) << (attempt - 1).min(63);
            let nominal = grown.min(max as u128) as u64;
            prop_assert!(d >= nominal, "{d} < {nominal}");
            prop_assert!(d <= nominal + nominal / 4, "{d} > {nominal} + a quarter");
            prop_assert_eq!(d, backoff_ms(base, max, TaskId(task), attempt));
        }

        #[test]
        fn never_shorter_for_a_later_attempt_below_the_cap(
            base in 1u64..10_000,
            task in 1u64..1000,
            attempt in 1u32..20,
        ) {
            // The nominal delay doubles, which is more than any jitter adds.
            let max = u64::MAX;
            let now = backoff_ms(base, max, TaskId(task), attempt);
            let next = backoff_ms(base, max, TaskId(task), attempt + 1);
            prop_assert!(next >= now);
        }
    }
}
