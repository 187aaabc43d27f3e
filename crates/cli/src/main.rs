//! The `taskraft` binary: everything is in the library, so that tests can run the same entry.

fn main() -> std::process::ExitCode {
    taskraft_cli::main()
}
