//! The streaming body shared by chat, completions and responses: pre-built head and tail events,
//! token events stamped from a template, `ttft`/`itl` pacing, `reset_after`, `stall_after`, and
//! stream accounting.

use std::fmt::Write as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use tokio::time::{Instant, Sleep, sleep};

use crate::behavior::Behavior;
use crate::reply::{self, Ctx, EVENT_STREAM, Reply};
use crate::stats::{Injected, MockStats};
use crate::text;

/// One token event = `prefix [sequence number] after_seq "word" suffix`. Everything but the word
/// (and the sequence number of Responses events) is built once per stream.
#[derive(Default)]
pub struct TokenTemplate {
    pub prefix: String,
    /// Responses events number every event; token `i` gets `seq_base + i`.
    pub seq_base: Option<u32>,
    pub after_seq: String,
    pub suffix: String,
}

impl TokenTemplate {
    fn frame(&self, i: u32, word: &str) -> Bytes {
        let len = self.prefix.len() + self.after_seq.len() + self.suffix.len() + word.len() + 12;
        let mut b = BytesMut::with_capacity(len);
        b.put_slice(self.prefix.as_bytes());
        if let Some(base) = self.seq_base {
            let _ = write!(b, "{}", base.saturating_add(i));
        }
        b.put_slice(self.after_seq.as_bytes());
        // Vocabulary words are plain ASCII letters: quoting is all the JSON escaping they need.
        b.put_u8(b'"');
        b.put_slice(word.as_bytes());
        b.put_u8(b'"');
        b.put_slice(self.suffix.as_bytes());
        b.freeze()
    }
}

/// What a stream sends: head events, `tokens` token events, then tail events.
pub struct StreamPlan {
    pub head: Vec<Bytes>,
    pub template: TokenTemplate,
    pub tail: Vec<Bytes>,
    pub seed: u64,
    pub tokens: u32,
}

/// The 200 answer carrying `plan`, paced and cut as the request's directives say.
pub fn reply(ctx: &Ctx, plan: StreamPlan, b: &Behavior, stats: &Arc<MockStats>) -> Reply {
    let pacing = Pacing {
        ttft: b.ttft,
        itl: b.itl,
        reset_after: b.reset_after,
        stall_after: b.stall_after,
    };
    let body = Body::from_stream(SseStream::new(plan, pacing, stats.clone()));
    reply::ok(ctx, EVENT_STREAM, b.content_type.as_ref(), body)
}

#[derive(Clone, Copy, Default)]
struct Pacing {
    ttft: Duration,
    itl: Duration,
    reset_after: Option<u32>,
    stall_after: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Tokens,
    Tail,
    /// Give hyper one chance to flush what was sent, then fail the body.
    Reset {
        flushed: bool,
    },
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Timer {
    Idle,
    Armed,
    Elapsed,
}

/// A body stream: each event is its own chunk, so hyper writes (and a proxy sees) them one by one.
struct SseStream {
    plan: StreamPlan,
    pacing: Pacing,
    phase: Phase,
    idx: usize,
    next_token: u32,
    sleep: Option<Pin<Box<Sleep>>>,
    timer: Timer,
    finished: bool,
    stats: Arc<MockStats>,
}

impl SseStream {
    fn new(plan: StreamPlan, pacing: Pacing, stats: Arc<MockStats>) -> Self {
        stats.stream_started();
        SseStream {
            plan,
            pacing,
            phase: Phase::Head,
            idx: 0,
            next_token: 0,
            sleep: None,
            timer: Timer::Idle,
            finished: false,
            stats,
        }
    }

    /// Waits `d` once per token; the one boxed timer is re-armed rather than reallocated.
    fn wait(&mut self, d: Duration, cx: &mut Context<'_>) -> Poll<()> {
        if self.timer == Timer::Elapsed {
            return Poll::Ready(());
        }
        let sleep = match (&mut self.sleep, self.timer) {
            (Some(s), Timer::Armed) => s,
            (Some(s), _) => {
                s.as_mut().reset(Instant::now() + d);
                s
            }
            (slot @ None, _) => slot.insert(Box::pin(sleep(d))),
        };
        self.timer = Timer::Armed;
        ready!(sleep.as_mut().poll(cx));
        self.timer = Timer::Elapsed;
        Poll::Ready(())
    }
}

impl Stream for SseStream {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.phase {
                Phase::Head => {
                    if let Some(b) = this.plan.head.get_mut(this.idx) {
                        this.idx += 1;
                        return Poll::Ready(Some(Ok(std::mem::take(b))));
                    }
                    this.phase = Phase::Tokens;
                }
                Phase::Tokens => {
                    let i = this.next_token;
                    if this.pacing.reset_after == Some(i) {
                        this.phase = Phase::Reset { flushed: false };
                        continue;
                    }
                    if this.pacing.stall_after == Some(i) {
                        // Never woken: hyper drops the body when the client goes away.
                        return Poll::Pending;
                    }
                    if i >= this.plan.tokens {
                        this.phase = Phase::Tail;
                        this.idx = 0;
                        continue;
                    }
                    let delay = if i == 0 {
                        this.pacing.ttft
                    } else {
                        this.pacing.itl
                    };
                    if !delay.is_zero() {
                        ready!(this.wait(delay, cx));
                    }
                    this.timer = Timer::Idle;
                    this.next_token += 1;
                    this.stats.completion_tokens(1);
                    let frame = this.plan.template.frame(i, text::token(this.plan.seed, i));
                    return Poll::Ready(Some(Ok(frame)));
                }
                Phase::Tail => {
                    let Some(b) = this.plan.tail.get_mut(this.idx) else {
                        this.phase = Phase::Done;
                        continue;
                    };
                    let b = std::mem::take(b);
                    this.idx += 1;
                    if this.idx == this.plan.tail.len() {
                        this.finished = true;
                        this.stats.stream_completed();
                    }
                    return Poll::Ready(Some(Ok(b)));
                }
                Phase::Reset { flushed: false } => {
                    this.phase = Phase::Reset { flushed: true };
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Phase::Reset { flushed: true } => {
                    this.phase = Phase::Done;
                    this.finished = true;
                    this.stats.stream_aborted();
                    this.stats.injected(Injected::ResetAfter);
                    // An Err body makes hyper drop the connection without the terminating chunk.
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "tollgate-mock: reset_after",
                    ))));
                }
                Phase::Done => return Poll::Ready(None),
            }
        }
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        if !self.finished {
            // Dropped before the last event went out: the client went away.
            self.stats.stream_aborted();
        }
    }
}
