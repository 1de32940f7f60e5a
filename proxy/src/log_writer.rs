//! Where log lines go: a buffer that a background thread writes to stderr every few
//! milliseconds. A request's access line is appended under a short lock and wakes no
//! thread: a writer woken for every line (a channel to a logging thread) costs each request
//! a context switch, which on a busy machine shows up as latency. A line waits at most
//! [`INTERVAL`]; past [`MAX_BUFFERED`] bytes (stderr blocked) lines are dropped and counted,
//! never making a request wait.

use std::{
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

/// How long a line may wait before it is written.
const INTERVAL: Duration = Duration::from_millis(20);
/// Bytes held before new lines are dropped.
const MAX_BUFFERED: usize = 8 << 20;

struct Shared {
    buffer: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    stop: AtomicBool,
}

/// A handle the log formatter writes each line into.
#[derive(Clone)]
pub struct LogWriter(Arc<Shared>);

/// Writes what is left and stops the thread when dropped (at the end of `main`).
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread writing to `out`.
pub fn start(out: impl Write + Send + 'static) -> std::io::Result<(LogWriter, Guard)> {
    let shared = Arc::new(Shared {
        buffer: Mutex::new(Vec::with_capacity(64 << 10)),
        dropped: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let thread = std::thread::Builder::new()
        .name("tollgate-log".into())
        .spawn({
            let shared = shared.clone();
            move || run(&shared, out)
        })?;
    Ok((
        LogWriter(shared.clone()),
        Guard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn run(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::with_capacity(64 << 10);
    loop {
        let stopping = shared.stop.load(Ordering::Acquire);
        if !stopping {
            std::thread::park_timeout(INTERVAL);
        }
        {
            let mut buffer = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *buffer, &mut spare);
        }
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if !spare.is_empty() || dropped > 0 {
            let _ = out.write_all(&spare);
            if dropped > 0 {
                let _ = writeln!(
                    out,
                    "{dropped} log lines dropped: the log output was blocked"
                );
            }
            let _ = out.flush();
            spare.clear();
        }
        if stopping {
            return;
        }
    }
}

impl LogWriter {
    /// Queues `line` (or counts it as dropped when the buffer is full).
    pub fn append(&self, line: &[u8]) {
        let mut buffer = self.0.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.len() + line.len() > MAX_BUFFERED {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            buffer.extend_from_slice(line);
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order_soon_and_all_of_them_at_the_end() {
        let out = Captured::default();
        let (mut writer, guard) = start(out.clone()).unwrap();
        writer.write_all(b"one\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.0.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the line was never written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        for i in 0..1000 {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1001);
        assert_eq!(lines[0], "one");
        assert_eq!(lines[1000], "line 999");
    }

    #[test]
    fn a_line_past_the_cap_is_dropped_and_counted() {
        let out = Captured::default();
        let (mut writer, guard) = start(out.clone()).unwrap();
        // A line over the cap never fits, whatever the thread has drained.
        let line = vec![b'y'; MAX_BUFFERED + 1];
        writer.write_all(&line).unwrap();
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with("1 log lines dropped: the log output was blocked\n"));
        assert!(!text.contains('y'));
    }
}
