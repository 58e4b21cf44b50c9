//! The `protocol-graph` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    protocol_graph::cli::run()
}
