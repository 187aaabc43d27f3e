//! The `taskraft` binary: everything is in the library, so that tests can run the same entry.

/// mimalloc instead of glibc's malloc: glibc's `_int_malloc`, `free` and
/// `malloc_consolidate` were about a tenth of the masters' CPU under load;
/// with mimalloc a commit costs about 15 % less CPU (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    taskraft_cli::main()
}

/// Turns transparent huge pages off for this process. mimalloc asks for
/// them on its arenas and gives idle memory back to the kernel page by
/// page; each later touch of a given-back range then faulted in a whole
/// 2 MiB page zeroed by the kernel: `clear_page_erms` was 7 % of a
/// leader's CPU under W1 with 64 producers. Without them, the kernel
/// zeroes 4 KiB where a page is touched (docs/performance.md). Failing
/// (an old kernel) changes nothing else.
fn no_transparent_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only
    // and touches no memory of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
