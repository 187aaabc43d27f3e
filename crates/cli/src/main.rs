//! The `taskraft` binary: everything is in the library, so that tests can run the same entry.

/// mimalloc instead of glibc's malloc: glibc's `_int_malloc`, `free` and
/// `malloc_consolidate` were about a tenth of the masters' CPU under load;
/// with mimalloc a commit costs about 15 % less CPU (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    taskraft_cli::main()
}
