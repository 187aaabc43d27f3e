//! The nemesis's schedule: which fault comes next, on which node, for how
//! long, and the pause before it, all drawn from one seeded generator.
//!
//! The schedule is a pure function of the seed: the same seed gives the
//! same list of faults. It names nodes by role ("the leader", "a
//! follower", "any node") and the runner resolves them at run time, so a
//! seed reproduces the faults but not the exact interleaving with the
//! cluster's own timing.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Which node a fault hits, resolved when it is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The current leader (favoured: it is where faults hurt most).
    Leader,
    /// A node that is not the leader, by index among the followers.
    Follower(usize),
}

/// One fault and how long it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, and a restart after `down`.
    Kill { target: Target, down: Duration },
    /// SIGSTOP, and SIGCONT after `down`.
    Pause { target: Target, down: Duration },
    /// Every peer link into and out of the node cut (`blackhole`: traffic
    /// swallowed, so peers see timeouts instead of errors).
    Isolate { target: Target, down: Duration, blackhole: bool },
    /// The links from the node to the others cut one way: it cannot send,
    /// it still hears them.
    OneWay { target: Target, down: Duration },
    /// One group of clients cut from the node (the others and the peers
    /// keep their links).
    ClientCut { target: Target, group: usize, down: Duration },
    /// A pull worker dropped while it holds leases, and a fresh one started.
    KillWorker { index: usize },
    /// The push worker SIGKILLed, and restarted after `down`.
    KillPushWorker { down: Duration },
    /// The node removed from the membership, its data dir wiped, started
    /// blank and added back (the runbook of a lost machine).
    Replace { target: Target },
}

impl Fault {
    /// A short name, for the fault counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill",
            Fault::Pause { .. } => "pause",
            Fault::Isolate { blackhole: false, .. } => "isolate",
            Fault::Isolate { blackhole: true, .. } => "isolate-blackhole",
            Fault::OneWay { .. } => "one-way",
            Fault::ClientCut { .. } => "client-cut",
            Fault::KillWorker { .. } => "kill-worker",
            Fault::KillPushWorker { .. } => "kill-push-worker",
            Fault::Replace { .. } => "replace",
        }
    }
}

/// The seeded source of faults.
pub struct Schedule {
    rng: StdRng,
    /// Pull workers and client groups to choose from.
    workers: usize,
    groups: usize,
    /// Whether membership changes are in the mix.
    replace: bool,
}

impl Schedule {
    /// A schedule for a cluster with `workers` pull workers and `groups`
    /// client groups; `replace` adds membership changes.
    pub fn new(seed: u64, workers: usize, groups: usize, replace: bool) -> Schedule {
        Schedule { rng: StdRng::seed_from_u64(seed), workers, groups, replace }
    }

    /// The pause before the next fault, and the fault.
    fn draw(&mut self) -> (Duration, Fault) {
        let gap = self.ms(300, 2500);
        let target = self.target();
        let down = self.ms(300, 4000);
        let fault = match self.rng.gen_range(0..100) {
            0..=21 => Fault::Kill { target, down },
            22..=35 => Fault::Pause { target, down },
            36..=51 => Fault::Isolate { target, down, blackhole: self.rng.gen_bool(0.5) },
            52..=61 => Fault::OneWay { target, down },
            62..=71 => Fault::ClientCut { target, group: self.rng.gen_range(0..self.groups), down },
            72..=83 => Fault::KillWorker { index: self.rng.gen_range(0..self.workers) },
            84..=91 => Fault::KillPushWorker { down: self.ms(200, 2000) },
            _ if self.replace => {
                Fault::Replace { target: Target::Follower(self.rng.gen_range(0..2)) }
            }
            _ => Fault::Kill { target, down },
        };
        (gap, fault)
    }

    /// The leader three times in five, else a follower.
    fn target(&mut self) -> Target {
        match self.rng.gen_bool(0.6) {
            true => Target::Leader,
            false => Target::Follower(self.rng.gen_range(0..2)),
        }
    }

    fn ms(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.rng.gen_range(low..=high))
    }
}

/// Endless: the pause before each fault, and the fault.
impl Iterator for Schedule {
    type Item = (Duration, Fault);

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.draw())
    }
}

/// The seed of the day (days since 1970, UTC): the CI run that differs
/// from day to day while a failure on a given day can be replayed.
pub fn seed_of_the_day() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_secs() / 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(seed: u64, n: usize) -> Vec<(Duration, Fault)> {
        Schedule::new(seed, 4, 2, true).take(n).collect()
    }

    #[test]
    fn a_seed_gives_the_same_schedule_and_another_seed_another() {
        assert_eq!(faults(7, 50), faults(7, 50));
        assert_ne!(faults(7, 50), faults(8, 50));
    }

    #[test]
    fn the_schedule_favours_the_leader_and_mixes_every_kind() {
        let all = faults(1, 2000);
        let kinds: std::collections::BTreeSet<&str> = all.iter().map(|(_, f)| f.kind()).collect();
        assert_eq!(kinds.len(), 9, "{kinds:?}");
        let on_leader = all
            .iter()
            .filter(|(_, f)| matches!(f, Fault::Kill { target: Target::Leader, .. }))
            .count();
        let on_followers = all
            .iter()
            .filter(|(_, f)| matches!(f, Fault::Kill { target: Target::Follower(_), .. }))
            .count();
        assert!(on_leader > on_followers, "{on_leader} vs {on_followers}");
        for (gap, f) in &all {
            assert!((300..=2500).contains(&(gap.as_millis() as u64)));
            if let Fault::Kill { down, .. } | Fault::Pause { down, .. } = f {
                assert!((300..=4000).contains(&(down.as_millis() as u64)));
            }
        }
    }
}
