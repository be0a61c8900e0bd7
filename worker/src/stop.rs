//! A trial's stop order: polled before every step by the built-in trainer, awaited by a command
//! trial so its program gets SIGTERM within milliseconds of the order.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct StopSignal(Arc<watch::Sender<bool>>);

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal(Arc::new(watch::Sender::new(false)))
    }
}

impl StopSignal {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once `stop` has been called (at once if it already was).
    pub async fn stopped(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_waiters_and_stays_stopped() {
        let stop = StopSignal::default();
        assert!(!stop.is_stopped());
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.stopped().await }
        });
        stop.stop();
        waiter.await.unwrap();
        assert!(stop.is_stopped());
        // Already stopped: resolves at once.
        stop.stopped().await;
    }
}
