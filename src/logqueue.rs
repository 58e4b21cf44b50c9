//! The non-blocking log writer under every log line (audit lines included): a request appends
//! its line to a shared, byte-bounded buffer and goes on; one writer thread moves the buffer to
//! stdout, many lines per write.
//!
//! Why not `tracing_appender::non_blocking`: it hands each line to its writer thread through a
//! channel, and under load that thread drains the channel and parks after nearly every line,
//! so each line costs a thread wake-up. With an audit line per request that was a quarter of
//! the warm read path's CPU (bench/last-run.md). Here a line wakes the writer only when it
//! finds the buffer empty, and the writer then waits [`LINGER`] for more before it writes: at
//! most one wake-up per `LINGER`, whatever the rate, and none when nothing is logged.

use std::{
    io::Write,
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer lets lines gather after the first one before writing them.
pub(crate) const LINGER: Duration = Duration::from_millis(5);

/// Lines dropped by every queue of the process because their buffer was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many log lines were dropped under overload so far.
pub(crate) fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a line finds the buffer empty, and on close.
    wake: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves at worst a partial line: keep logging.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer's handle: a [`MakeWriter`] for the log layer. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LogQueue {
    shared: Arc<Shared>,
}

/// Owns the writer thread; dropping it writes the lines still queued and stops the thread.
#[must_use = "dropping the guard stops the log writer"]
pub(crate) struct LogQueueGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogQueue {
    /// A queue of at most `capacity` bytes of lines in front of `out`, and its writer thread.
    pub(crate) fn new<W>(out: W, capacity: usize) -> std::io::Result<(Self, LogQueueGuard)>
    where
        W: Write + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            capacity,
        });
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || write_lines(&shared, out)
            })?;
        Ok((
            Self {
                shared: Arc::clone(&shared),
            },
            LogQueueGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    fn push(&self, line: &[u8]) {
        let mut state = self.shared.lock();
        if state.closed || state.lines.len() + line.len() > self.shared.capacity {
            drop(state);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let first = state.lines.is_empty();
        state.lines.extend_from_slice(line);
        drop(state);
        if first {
            self.shared.wake.notify_one();
        }
    }
}

fn write_lines<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.lines.is_empty() && !state.closed {
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.closed {
            std::mem::swap(&mut state.lines, &mut batch);
            drop(state);
            let _ = out.write_all(&batch);
            let _ = out.flush();
            return;
        }
        drop(state);
        std::thread::sleep(LINGER);
        std::mem::swap(&mut shared.lock().lines, &mut batch);
        // Nowhere to report a failing stdout: the lines are lost, the requests are not.
        let _ = out.write_all(&batch);
        let _ = out.flush();
        batch.clear();
        // A burst should not pin its peak size for the life of the process.
        batch.shrink_to(1 << 20);
    }
}

impl Drop for LogQueueGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One log line on its way into the queue.
pub(crate) struct LineWriter<'a> {
    queue: &'a LogQueue,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        // The log layer writes each line whole, with one call.
        self.queue.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogQueue {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { queue: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the writer thread wrote, and how many writes it took.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut sink = self.0.lock().unwrap();
            sink.0.extend_from_slice(buf);
            sink.1 += 1;
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_reaches_the_output_in_order_by_the_time_the_guard_drops() {
        let sink = Sink::default();
        let (queue, guard) = LogQueue::new(sink.clone(), 1 << 20).unwrap();
        for n in 0..1000 {
            queue
                .make_writer()
                .write_all(format!("line {n}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        let written = String::from_utf8(sink.0.lock().unwrap().0.clone()).unwrap();
        let expected: String = (0..1000).map(|n| format!("line {n}\n")).collect();
        assert_eq!(written, expected);
    }

    #[test]
    fn lines_written_together_reach_the_output_in_few_writes() {
        let sink = Sink::default();
        let (queue, guard) = LogQueue::new(sink.clone(), 1 << 20).unwrap();
        for _ in 0..1000 {
            queue.make_writer().write_all(b"a line\n").unwrap();
        }
        drop(guard);
        let writes = sink.0.lock().unwrap().1;
        // One write per line would be 1000; the writer takes them in one or two batches unless
        // this thread is held off the CPU for LINGER again and again.
        assert!(writes < 100, "{writes} writes for 1000 lines");
    }

    #[test]
    fn a_full_queue_drops_whole_lines_and_counts_them() {
        // No writer thread: nothing takes lines out while the queue fills.
        let queue = LogQueue {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                capacity: 25,
            }),
        };
        let before = dropped_lines();
        for n in 0..5 {
            queue
                .make_writer()
                .write_all(format!("line {n:04}\n").as_bytes())
                .unwrap();
        }
        assert_eq!(queue.shared.lock().lines, b"line 0000\nline 0001\n");
        assert!(dropped_lines() - before >= 3);
    }
}
