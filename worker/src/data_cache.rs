//! Prepared datasets, shared by every trial with the same data settings: by a worker's trials,
//! the one-trial command and in-process sweeps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lrsweep_proto::domain::TrainerConfig;

use crate::trainer::PreparedData;
use crate::WorkerError;

#[derive(Default)]
pub struct DataCache(Mutex<HashMap<String, Arc<PreparedData>>>);

impl DataCache {
    pub fn get(&self, trainer: &TrainerConfig) -> Result<Arc<PreparedData>, WorkerError> {
        let key = format!(
            "{}|{}|{}|{}",
            serde_json::to_string(&trainer.dataset).unwrap_or_default(),
            trainer.seed,
            trainer.validation_fraction,
            trainer.standardize
        );
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(data) = cache.get(&key) {
            return Ok(data.clone());
        }
        let data = Arc::new(PreparedData::prepare(trainer)?);
        cache.insert(key, data.clone());
        Ok(data)
    }
}
