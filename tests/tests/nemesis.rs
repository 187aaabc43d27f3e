//! The nemesis in CI: 60 s of seeded random faults against three master
//! processes (kills, pauses, partitions, one-way cuts, clients cut off,
//! worker crashes, a master replaced through the membership), one master
//! running with its wall clock 30 s off under libfaketime and made to
//! lead; then the checker over the whole history and every replica.
//! One run has a fixed seed, the other the day's, so that each day tries
//! a new schedule and a failing one can be replayed with
//! `scripts/nemesis.sh --seed N`.
//!
//! Needs Debian's `faketime` (`.ci/run` installs it when missing); without
//! it this test fails, it does not skip.

use std::time::Duration;

use taskraft_tests::nemesis::{run, schedule::seed_of_the_day, Options};

const BIN: &str = env!("CARGO_BIN_EXE_taskraft-under-test");

async fn nemesis(seed: u64, skew: (u64, &str)) {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nemesis-{seed}"));
    let report = run(Options {
        bin: BIN.into(),
        duration: Duration::from_secs(60),
        seed,
        skew: Some((skew.0, skew.1.to_string())),
        replace: true,
        max_gap: Duration::from_secs(15),
        out: Some(out.clone()),
    })
    .await;
    println!("{}\n(history and logs in {})", report.summary(), out.display());
    assert!(report.ok(), "{}\n(history and logs in {})", report.summary(), out.display());
    // The run did what it says: faults of many kinds, a real load.
    assert!(report.faults.len() >= 5, "{:?}", report.faults);
    assert!(report.verdict.acknowledged > 500, "{}", report.summary());
    assert!(report.pushed > 0, "pull and push workers both ran: {}", report.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_with_a_fixed_seed_and_a_master_30s_ahead() {
    nemesis(20261130, (3, "+30s")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemesis_with_the_seed_of_the_day_and_a_master_30s_behind() {
    nemesis(seed_of_the_day(), (2, "-30s")).await;
}
