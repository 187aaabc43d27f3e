//! Paged listing: bounded pages, and a cursor walk that sees every task once.

use super::tests::{assign, submit, task};
use super::*;

const ROOMY: PageLimits = PageLimits { rows: 1000, bytes: 1 << 20, scan: 100_000 };

fn ids(page: &Page<'_>) -> Vec<u64> {
    page.tasks.iter().map(|t| t.id.0).collect()
}

fn table_of(n: usize) -> Table {
    let mut t = Table::default();
    submit(&mut t, (0..n).map(|i| task(&format!("task {i}"))).collect());
    t
}

#[test]
fn a_walk_with_the_cursor_sees_every_task_once() {
    let t = table_of(25);
    let limits = PageLimits { rows: 10, ..ROOMY };
    let (mut seen, mut after, mut pages) = (Vec::new(), TaskId(0), 0);
    loop {
        let page = t.page(None, after, limits);
        seen.extend(ids(&page));
        pages += 1;
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    assert_eq!(pages, 3);
}

#[test]
fn the_last_page_says_there_is_no_more() {
    let t = table_of(3);
    let page = t.page(None, TaskId(0), ROOMY);
    assert_eq!((ids(&page), page.next_after), (vec![1, 2, 3], None));
    assert_eq!(t.page(None, TaskId(3), ROOMY).tasks, Vec::<&Task>::new());
}

#[test]
fn a_status_filter_scans_a_bounded_number_of_rows() {
    let mut t = table_of(50);
    assign(&mut t, "w01", 0);
    let limits = PageLimits { scan: 20, ..ROOMY };
    let page = t.page(Some(Status::Idle), TaskId(1), limits);
    assert_eq!(ids(&page), (2..=21).collect::<Vec<_>>());
    assert_eq!(page.next_after, Some(TaskId(21)));
    // Nothing in progress past task 1: the pages come back empty but move on.
    let page = t.page(Some(Status::InProgress), TaskId(1), limits);
    assert_eq!((ids(&page), page.next_after), (vec![], Some(TaskId(21))));
}

#[test]
fn a_page_stops_at_its_byte_budget_but_never_returns_nothing() {
    let mut t = Table::default();
    submit(&mut t, vec![task(&"x".repeat(600)), task(&"y".repeat(600)), task("z")]);
    let limits = PageLimits { bytes: 500, ..ROOMY };
    let page = t.page(None, TaskId(0), limits);
    assert_eq!((ids(&page), page.next_after), (vec![1], Some(TaskId(1))));
    let page = t.page(None, TaskId(1), PageLimits { bytes: 1000, ..ROOMY });
    assert_eq!((ids(&page), page.next_after), (vec![2, 3], None));
}
