//! The `protocol-graph` binary: everything lives in the library.

/// Requests allocate on one worker thread and free on the other: glibc's arenas then take a
/// lock on each free, and under load the two workers wait on each other. mimalloc frees into
/// the owning thread's heap without one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    protocol_graph::cli::run()
}
