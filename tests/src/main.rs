//! The `taskraft` entry point, built inside the test crate so that process
//! tests can find it through `CARGO_BIN_EXE_taskraft-under-test`.

fn main() -> std::process::ExitCode {
    taskraft_cli::main()
}
