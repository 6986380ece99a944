//! The line for SQLite's one writer connection. Writes wait here, one at a time in the
//! connection pool's own queue: the pool serves whoever asked first, and a line of our own can
//! let some writes go before others.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// Which writes go first, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteClass {
    /// A claim's lease update: one short statement, and every slot the claim fills waits for
    /// it (behind a queue of a 500-grower sync's writes, a claim waited 50-200 ms for the
    /// writer while a quarter of the engine's slots stood empty).
    Lease,
    /// Work ahead ([`super::ahead`]): an API request, a grower connected moments ago.
    Ahead,
    /// Everything else that does not give way: token upkeep, syncs of accounts still new.
    Other,
    /// Work giving way ([`super::giving_way`]): it joins the pool's queue only when nothing
    /// else waits, so any other write waits for at most the one of it writing.
    GivingWay,
}

/// Writes waiting for their turn, by class; at most one turn is out at a time.
#[derive(Debug, Default)]
pub(crate) struct WriterLine {
    state: Mutex<LineState>,
}

#[derive(Debug, Default)]
struct LineState {
    /// A turn is out: its holder is waiting for (or about to get) the connection.
    taken: bool,
    /// Waiting writes, by [`WriteClass`] in order, each in order of arrival.
    waiting: [VecDeque<oneshot::Sender<WriterTurn>>; 4],
}

/// The one place in the pool's queue, held until its write has the connection; dropped, it
/// passes to the next write in line.
#[derive(Debug)]
pub(crate) struct WriterTurn {
    /// None once disarmed (a turn its waiter gave up before it came).
    line: Option<Arc<WriterLine>>,
}

impl Drop for WriterTurn {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            line.pass_on();
        }
    }
}

impl WriterLine {
    /// Waits for this write's turn. A waiter that gives up (its future dropped) leaves the
    /// line: a turn sent to it passes on.
    pub(crate) async fn turn(self: &Arc<Self>, class: WriteClass) -> WriterTurn {
        let waiting = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !state.taken {
                state.taken = true;
                return WriterTurn {
                    line: Some(self.clone()),
                };
            }
            let (send, receive) = oneshot::channel();
            state.waiting[class as usize].push_back(send);
            receive
        };
        // The sender is only ever consumed by a send: this fails only if the line is gone.
        waiting.await.unwrap_or(WriterTurn { line: None })
    }

    /// Passes the turn to the first write waiting in the first class with any.
    fn pass_on(self: Arc<Self>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(next) = state.waiting.iter_mut().find_map(VecDeque::pop_front) {
            match next.send(WriterTurn {
                line: Some(self.clone()),
            }) {
                Ok(()) => return,
                // Its waiter gave up: the turn must not pass on from its drop (the line is
                // locked here), but to the next one.
                Err(mut turn) => turn.line = None,
            }
        }
        state.taken = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Waiting writes take the turn by class, then in order of arrival; one that gave up is
    /// skipped.
    #[tokio::test]
    async fn turns_go_by_class_then_arrival() {
        let line = Arc::new(WriterLine::default());
        let first = line.turn(WriteClass::Other).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for (name, class) in [
            ("bulk", WriteClass::GivingWay),
            ("other 1", WriteClass::Other),
            ("gave up", WriteClass::Lease),
            ("other 2", WriteClass::Other),
            ("ahead", WriteClass::Ahead),
            ("lease", WriteClass::Lease),
        ] {
            let (line, order) = (line.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let turn = line.turn(class).await;
                order.lock().unwrap().push(name);
                // Held a moment, as by a write waiting for the connection.
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(turn);
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        waiting.remove(2).abort();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        for task in waiting {
            task.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["lease", "ahead", "other 1", "other 2", "bulk"]
        );
        // The line is free again: a turn is had at once.
        tokio::time::timeout(Duration::from_secs(1), line.turn(WriteClass::GivingWay))
            .await
            .expect("a free line");
    }
}
