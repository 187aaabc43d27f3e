//! The performance targets, each printed as met or not from the runs made.

use super::workloads::Outcome;

/// A target: what it is, the measured figure, whether that meets it, the
/// unit; a target that is a yes or no (`Check::Holds`) has no figure.
type Target = (String, Check);

enum Check {
    Figure(Option<f64>, fn(f64) -> bool, &'static str),
    Holds(Option<bool>),
}

/// The median of `values` (upper median), if any.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// The runs of the row named `name`.
fn runs<'a>(rows: &'a [(String, Vec<Outcome>)], name: &str) -> Option<&'a [Outcome]> {
    rows.iter().find(|(n, _)| n == name).map(|(_, o)| o.as_slice())
}

fn figure(o: &Outcome, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(&o.figures, |v, k| v.get(k))?.as_f64()
}

/// Prints one line per target: the figure (median of the runs) and whether it is met.
pub fn print(rows: &[(String, Vec<Outcome>)], workers: usize) {
    println!("targets (medians of the runs above):");
    for (what, verdict) in verdicts(rows, workers) {
        println!("  {what:<58} {verdict}");
    }
}

/// Each target and its verdict.
fn verdicts(rows: &[(String, Vec<Outcome>)], workers: usize) -> Vec<(String, String)> {
    let median_of = |name: &str, path: &[&str]| {
        runs(rows, name).and_then(|o| median(o.iter().filter_map(|o| figure(o, path)).collect()))
    };
    let w2 = format!("W2 drain, {workers} workers");
    let w2_batch = format!("W2 drain, {workers} workers, batch 16");
    let w3 = runs(rows, "W3 failover");
    let w3_safe = w3.map(|o| {
        o.iter().all(|o| {
            figure(o, &["lost"]) == Some(0.0) && figure(o, &["accepted_twice"]) == Some(0.0)
        })
    });
    // W1 C=64 in each connection layout run (one each if none was).
    let mut c64: Vec<&str> = rows
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| *name == "W1 enqueue, C=64" || name.starts_with("W1 enqueue, C=64,"))
        .collect();
    if c64.is_empty() {
        c64.push("W1 enqueue, C=64");
    }
    let c64 = c64.into_iter().map(|name| {
        let figure = median_of(name, &["tasks_per_s"]);
        let each = if name.contains("conn") { "" } else { ", a connection each" };
        (format!("{name}{each}: >= 30,000 /s"), Check::Figure(figure, |v| v >= 30_000.0, "/s"))
    });
    let w2_line = (
        format!("{w2}: >= 10,000 tasks/s"),
        Check::Figure(median_of(&w2, &["tasks_per_s"]), |v| v >= 10_000.0, "/s"),
    );
    let lines: Vec<Target> = std::iter::once(w2_line)
        .chain(c64)
        .chain([
            (
                "W1 enqueue, C=1: p50 <= 0.5 ms".into(),
                Check::Figure(
                    median_of("W1 enqueue, C=1", &["p50_us"]).map(|us| us / 1000.0),
                    |v| v <= 0.5,
                    " ms",
                ),
            ),
            (
                format!("{w2_batch}: >= 40,000 tasks/s"),
                Check::Figure(median_of(&w2_batch, &["tasks_per_s"]), |v| v >= 40_000.0, "/s"),
            ),
            (
                "CPU per log entry over 3 masters (W1 C=1): <= 0.7 ms".into(),
                Check::Figure(
                    median_of("W1 enqueue, C=1", &["cpu_ms_per_entry"]),
                    |v| v <= 0.7,
                    " ms",
                ),
            ),
            (
                "W3 unavailability: median <= 100 ms".into(),
                Check::Figure(
                    median_of("W3 failover", &["failover", "unavailable_ms"]),
                    |v| v <= 100.0,
                    " ms",
                ),
            ),
            ("W3: 0 lost, 0 completed twice, in every run".into(), Check::Holds(w3_safe)),
        ])
        .collect();
    let verdict = |check| match check {
        Check::Figure(None, ..) | Check::Holds(None) => "not run".to_owned(),
        Check::Figure(Some(v), met, unit) if met(v) => format!("met      {v:.2}{unit}"),
        Check::Figure(Some(v), _, unit) => format!("NOT MET  {v:.2}{unit}"),
        Check::Holds(Some(true)) => "met".to_owned(),
        Check::Holds(Some(false)) => "NOT MET".to_owned(),
    };
    lines.into_iter().map(|(what, check)| (what, verdict(check))).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::verdicts;
    use crate::cmd::bench::workloads::Outcome;

    fn run(tasks_per_s: f64) -> Outcome {
        Outcome {
            name: "w1".into(),
            tasks_per_s,
            p50_us: 0,
            p99_us: 0,
            details: String::new(),
            figures: json!({ "tasks_per_s": tasks_per_s }),
            failed_check: None,
        }
    }

    #[test]
    fn each_w1_c64_layout_run_is_judged_on_its_own_median() {
        let rows = vec![
            ("W1 enqueue, C=64".to_owned(), vec![run(20_000.0), run(25_000.0), run(21_000.0)]),
            (
                "W1 enqueue, C=64, 1 conn".to_owned(),
                vec![run(31_000.0), run(29_000.0), run(33_000.0)],
            ),
        ];
        let lines = verdicts(&rows, 8);
        let c64: Vec<_> =
            lines.iter().filter(|(what, _)| what.starts_with("W1 enqueue, C=64")).collect();
        assert_eq!(c64.len(), 2, "{lines:?}");
        assert_eq!(c64[0].1, "NOT MET  21000.00/s");
        assert_eq!(c64[1].1, "met      31000.00/s");
        let none = verdicts(&[], 8);
        let c64 =
            none.iter().find(|(what, _)| what.starts_with("W1 enqueue, C=64")).expect("listed");
        assert_eq!(c64.1, "not run");
    }
}
