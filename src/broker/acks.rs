//! Settling one consumer's messages with the broker, coalesced. A delivery tag
//! is acked with `multiple` once it and every earlier tag of the channel are
//! done: a run of deliveries settled together is one `basic.ack` (one frame,
//! one lapin task, one settle in a quorum queue's log) instead of one each.
//! On two shared cores the broker is the busiest process, and this is the
//! frame a bare consume -> POST -> ack loop cannot save.
//!
//! A done delivery behind one still in flight waits for it, at most `hold` of
//! them; past that they are acked one by one, so a slow endpoint never keeps
//! more than `hold` of the prefetch. A requeue is never held.
//!
//! `multiple` acks every unsettled tag up to it, so the order of frames is the
//! guarantee: one task per consumer sends them, each after the one before is
//! written. lapin sends each settle from a task of its own, which does not keep
//! the order of two settles sent at once; a requeue overtaken by a `multiple`
//! ack would be acked, and the message lost.

use std::collections::VecDeque;

use lapin::{
    Acker,
    options::{BasicAckOptions, BasicNackOptions},
};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::consumer::Settle;

/// The handle the consume loop and its handlers tell what was taken and how
/// it was settled. The task behind it ends once every handle is dropped.
#[derive(Clone)]
pub struct Acks {
    notes: mpsc::UnboundedSender<Note>,
}

enum Note {
    Taken(u64, Acker),
    Settled(u64, Settle),
}

impl Acks {
    /// Starts the settling task on `tracker`, so a drain waits for its last
    /// frames; at most `hold` done deliveries wait behind an unsettled one.
    pub fn start(tracker: &TaskTracker, hold: usize) -> Self {
        let (notes, received) = mpsc::unbounded_channel();
        tracker.spawn(settle_in_order(received, Window::new(hold)));
        Self { notes }
    }

    /// A delivery taken off the channel; tags must come in the channel's order.
    pub fn taken(&self, tag: u64, acker: Acker) {
        // The task only ends once every handle is gone: this cannot fail.
        let _ = self.notes.send(Note::Taken(tag, acker));
    }

    pub fn settled(&self, tag: u64, settle: Settle) {
        let _ = self.notes.send(Note::Settled(tag, settle));
    }
}

/// Takes every note there is, works out what to send, sends it in order and
/// waits for it to be written; meanwhile the next notes gather.
async fn settle_in_order(mut received: mpsc::UnboundedReceiver<Note>, mut window: Window<Acker>) {
    let mut notes = Vec::new();
    let mut sends = Vec::new();
    while received.recv_many(&mut notes, usize::MAX).await > 0 {
        for note in notes.drain(..) {
            match note {
                Note::Taken(tag, acker) => window.take(tag, acker),
                Note::Settled(tag, settle) => window.settle(tag, settle, &mut sends),
            }
        }
        window.flush(&mut sends);
        send_in_order(&mut sends).await;
    }
    // Every handle is gone. Left in the window: done deliveries behind one
    // that never settled (its handler panicked); they go one by one, and the
    // broker redelivers the other when the channel closes.
    window.release(&mut sends);
    send_in_order(&mut sends).await;
}

/// Each frame once the one before is written.
async fn send_in_order(frames: &mut Vec<Frame<Acker>>) {
    for frame in frames.drain(..) {
        frame.send().await;
    }
}

/// The channel's deliveries not yet settled with the broker, oldest first,
/// each with what settles it (lapin's `Acker`; a tag in the tests).
struct Window<A> {
    open: VecDeque<Open<A>>,
    /// How many in `open` are done.
    done: usize,
    hold: usize,
}

struct Open<A> {
    tag: u64,
    acker: A,
    done: bool,
}

/// One frame to the broker.
#[derive(Debug, PartialEq, Eq)]
enum Frame<A> {
    Ack { acker: A, multiple: bool },
    Requeue(A),
}

impl<A> Window<A> {
    fn new(hold: usize) -> Self {
        Self {
            open: VecDeque::new(),
            done: 0,
            hold: hold.max(1),
        }
    }

    fn take(&mut self, tag: u64, acker: A) {
        debug_assert!(self.open.back().is_none_or(|last| last.tag < tag));
        let done = false;
        self.open.push_back(Open { tag, acker, done });
    }

    /// A requeue goes out at once, ahead of any later `multiple` ack that
    /// could cover its tag; an ack waits for `flush`.
    fn settle(&mut self, tag: u64, settle: Settle, sends: &mut Vec<Frame<A>>) {
        let Ok(i) = self.open.binary_search_by_key(&tag, |open| open.tag) else {
            debug!(tag, "a settle for a delivery not taken, ignored");
            return;
        };
        match settle {
            Settle::Ack => {
                self.open[i].done = true;
                self.done += 1;
            }
            Settle::Requeue => {
                let open = self.open.remove(i).expect("found above");
                sends.push(Frame::Requeue(open.acker));
            }
        }
    }

    /// The done run at the front as one `multiple` ack, then, if more than
    /// `hold` are left waiting behind an unsettled delivery, the oldest of
    /// them one by one (their tags are past the run's, so nothing overlaps).
    fn flush(&mut self, sends: &mut Vec<Frame<A>>) {
        let mut last = None;
        while self.open.front().is_some_and(|open| open.done) {
            last = self.open.pop_front();
            self.done -= 1;
        }
        if let Some(open) = last {
            let multiple = true;
            sends.push(Frame::Ack {
                acker: open.acker,
                multiple,
            });
        }
        let mut i = 0;
        while self.done > self.hold {
            if self.open[i].done {
                let open = self.open.remove(i).expect("in range");
                self.done -= 1;
                let multiple = false;
                sends.push(Frame::Ack {
                    acker: open.acker,
                    multiple,
                });
            } else {
                i += 1;
            }
        }
    }

    /// Every done delivery, one by one.
    fn release(&mut self, sends: &mut Vec<Frame<A>>) {
        self.flush(sends);
        for open in self.open.drain(..).filter(|open| open.done) {
            let multiple = false;
            sends.push(Frame::Ack {
                acker: open.acker,
                multiple,
            });
        }
        self.done = 0;
    }
}

impl Frame<Acker> {
    async fn send(self) {
        let sent = match &self {
            Self::Ack { acker, multiple } => {
                let multiple = *multiple;
                acker.ack(BasicAckOptions { multiple }).await
            }
            Self::Requeue(acker) => {
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                };
                acker.nack(requeue).await
            }
        };
        if let Err(err) = sent {
            // The channel is gone; the broker redelivers what it had not settled: duplicates.
            debug!(error = %err, "settling with the broker failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window of `open` tags, each settled by its own tag.
    fn window(hold: usize, open: std::ops::RangeInclusive<u64>) -> Window<u64> {
        let mut window = Window::new(hold);
        for tag in open {
            window.take(tag, tag);
        }
        window
    }

    fn ack(tag: u64, multiple: bool) -> Frame<u64> {
        Frame::Ack {
            acker: tag,
            multiple,
        }
    }

    /// Settles `acks` as acked and flushes: what goes to the broker.
    fn acked(window: &mut Window<u64>, acks: &[u64]) -> Vec<Frame<u64>> {
        let mut sends = Vec::new();
        for &tag in acks {
            window.settle(tag, Settle::Ack, &mut sends);
        }
        window.flush(&mut sends);
        sends
    }

    #[test]
    fn a_run_settled_together_is_one_multiple_ack_at_its_last_tag() {
        let mut w = window(64, 1..=5);
        assert_eq!(acked(&mut w, &[3, 2]), []);
        assert_eq!(acked(&mut w, &[1]), [ack(3, true)]);
        assert_eq!(acked(&mut w, &[5, 4]), [ack(5, true)]);
        assert!(w.open.is_empty());
        assert_eq!(w.done, 0);
    }

    #[test]
    fn a_requeue_goes_out_at_once_and_before_the_ack_that_passes_its_tag() {
        let mut w = window(64, 1..=3);
        let mut sends = Vec::new();
        w.settle(2, Settle::Requeue, &mut sends);
        assert_eq!(sends, [Frame::Requeue(2)]);
        w.settle(3, Settle::Ack, &mut sends);
        w.settle(1, Settle::Ack, &mut sends);
        w.flush(&mut sends);
        assert_eq!(sends, [Frame::Requeue(2), ack(3, true)]);
    }

    #[test]
    fn no_more_than_hold_wait_behind_a_slow_delivery() {
        let mut w = window(2, 1..=6);
        // 1 is slow: 2 and 3 wait; 4 and 5 push the oldest out one by one.
        assert_eq!(acked(&mut w, &[2, 3]), []);
        assert_eq!(acked(&mut w, &[4, 5]), [ack(2, false), ack(3, false)]);
        assert_eq!(w.done, 2);
        // 1 ends: the run up to 5 is one ack (2 and 3 are settled already).
        assert_eq!(acked(&mut w, &[1]), [ack(5, true)]);
        assert_eq!(acked(&mut w, &[6]), [ack(6, true)]);
    }

    #[test]
    fn a_taken_delivery_that_never_settles_keeps_every_later_ack_single() {
        let mut w = window(1, 1..=4);
        assert_eq!(acked(&mut w, &[2, 3]), [ack(2, false)]);
        let mut sends = Vec::new();
        w.settle(4, Settle::Ack, &mut sends);
        w.release(&mut sends);
        assert_eq!(sends, [ack(3, false), ack(4, false)]);
        assert!(w.open.is_empty());
    }

    #[test]
    fn a_settle_for_an_unknown_tag_changes_nothing() {
        let mut w = window(4, 1..=2);
        assert_eq!(acked(&mut w, &[9]), []);
        assert_eq!(acked(&mut w, &[1, 2]), [ack(2, true)]);
    }
}
