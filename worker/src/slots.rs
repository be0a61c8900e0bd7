//! A worker's slots: how many trials it trains at once, which slot each trial has (a command
//! trial's `{slot}`), and the accelerator each slot owns (`--devices`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Slots {
    permits: Arc<Semaphore>,
    free: Arc<Mutex<BTreeSet<u32>>>,
    count: u32,
    /// Device of slot k (`CUDA_VISIBLE_DEVICES` of its command trials); empty: none assigned.
    devices: Vec<String>,
}

/// A slot held by one trial; freed on drop.
pub struct Slot {
    pub index: u32,
    pub device: Option<String>,
    free: Arc<Mutex<BTreeSet<u32>>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.index);
    }
}

impl Slots {
    /// `count` slots; `devices` is empty or has one entry per slot.
    pub fn new(count: u32, devices: Vec<String>) -> Slots {
        Slots {
            permits: Arc::new(Semaphore::new(count as usize)),
            free: Arc::new(Mutex::new((0..count).collect())),
            count,
            devices,
        }
    }

    /// Waits for a free slot and takes the lowest one; None once the slots are closed.
    pub async fn acquire(&self) -> Option<Slot> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let index = self
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_first()?;
        Some(Slot {
            index,
            device: self.devices.get(index as usize).cloned(),
            free: self.free.clone(),
            _permit: permit,
        })
    }

    /// Resolves once no trial holds a slot.
    pub async fn idle(&self) {
        if let Ok(all) = self.permits.acquire_many(self.count).await {
            drop(all);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_numbered_and_carry_their_device() {
        let slots = Slots::new(2, vec!["3".into(), "5".into()]);
        let a = slots.acquire().await.unwrap();
        let b = slots.acquire().await.unwrap();
        assert_eq!((a.index, a.device.as_deref()), (0, Some("3")));
        assert_eq!((b.index, b.device.as_deref()), (1, Some("5")));
        drop(a);
        let c = slots.acquire().await.unwrap();
        assert_eq!(c.index, 0);
        let idle = slots.idle();
        drop((b, c));
        tokio::time::timeout(std::time::Duration::from_secs(5), idle)
            .await
            .unwrap();
        let plain = Slots::new(1, Vec::new());
        assert_eq!(plain.acquire().await.unwrap().device, None);
    }
}
