//! The sources one continuous query reads: one stream, or two for a
//! stream-stream join. Polls them in turn, so a quiet side never starves
//! the other, and keeps their checkpoints together in the epoch's commit.
//!
//! With one source the checkpoint is that source's own (what epochs
//! committed before joins existed); with two it is `{"inputs": [a, b]}`.

use std::time::Duration;

use crate::source::{Bound, Chunk, Poll, Source, SourceError};

/// What [`Inputs::poll`] found.
pub enum Polled {
    /// A chunk of input `index` (position in the query's stream list).
    Data(usize, Chunk),
    Idle,
    /// Every source is bounded and has delivered everything.
    End,
}

pub struct Inputs {
    sources: Vec<Box<dyn Source>>,
    /// Sources that reported their end (bounded triggers).
    ended: Vec<bool>,
    /// Which source the next poll asks first (round robin).
    next: usize,
}

impl Inputs {
    pub fn new(sources: Vec<Box<dyn Source>>) -> Inputs {
        let ended = vec![false; sources.len()];
        Inputs { sources, ended, next: 0 }
    }

    /// Whether each checkpoint stands alone: only when every source's does.
    pub fn checkpoint_is_cumulative(&self) -> bool {
        self.sources.iter().all(|s| s.checkpoint_is_cumulative())
    }

    /// Hands each source its own part of the committed checkpoints.
    pub async fn restore(&mut self, committed: &[serde_json::Value], bound: Bound) -> Result<(), SourceError> {
        if self.sources.len() == 1 {
            return self.sources[0].restore(committed, bound).await;
        }
        for (i, source) in self.sources.iter_mut().enumerate() {
            let own: Vec<serde_json::Value> =
                committed.iter().filter_map(|c| c.get("inputs").and_then(|inputs| inputs.get(i)).cloned()).collect();
            source.restore(&own, bound).await?;
        }
        Ok(())
    }

    /// Asks each source that has not ended, starting after the one that
    /// answered last, sharing `wait` between them.
    pub async fn poll(&mut self, max_records: usize, wait: Duration) -> Result<Polled, SourceError> {
        let live: Vec<usize> =
            (0..self.sources.len()).map(|k| (self.next + k) % self.sources.len()).filter(|&i| !self.ended[i]).collect();
        if live.is_empty() {
            return Ok(Polled::End);
        }
        let share = wait / live.len() as u32;
        for i in live {
            match self.sources[i].poll(max_records, share).await? {
                Poll::Data(chunk) => {
                    self.next = (i + 1) % self.sources.len();
                    return Ok(Polled::Data(i, chunk));
                }
                Poll::Idle => {}
                Poll::End => self.ended[i] = true,
            }
        }
        Ok(if self.ended.iter().all(|e| *e) { Polled::End } else { Polled::Idle })
    }

    pub fn checkpoint(&mut self) -> serde_json::Value {
        if self.sources.len() == 1 {
            return self.sources[0].checkpoint();
        }
        let parts: Vec<serde_json::Value> = self.sources.iter_mut().map(|s| s.checkpoint()).collect();
        serde_json::json!({ "inputs": parts })
    }

    /// Records waiting in all sources, when any can tell.
    pub fn lag(&self) -> Option<i64> {
        let known: Vec<i64> = self.sources.iter().filter_map(|s| s.lag()).collect();
        (!known.is_empty()).then(|| known.iter().sum())
    }

    /// Input the sources found lost and skipped since the last call.
    pub fn take_data_loss(&mut self) -> Option<String> {
        let lost: Vec<String> = self.sources.iter_mut().filter_map(|s| s.take_data_loss()).collect();
        (!lost.is_empty()).then(|| lost.join("; "))
    }

    /// The partitions input `index` reads (see [`Source::partitions`]).
    pub fn partitions(&self, index: usize) -> Vec<i32> {
        self.sources.get(index).map(|s| s.partitions()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that yields `chunks` one-record chunks, then ends.
    struct Counting {
        chunks: usize,
        read: usize,
        committed: Vec<serde_json::Value>,
    }

    #[async_trait::async_trait]
    impl Source for Counting {
        async fn restore(&mut self, committed: &[serde_json::Value], _bound: Bound) -> Result<(), SourceError> {
            self.committed = committed.to_vec();
            Ok(())
        }
        async fn poll(&mut self, _max: usize, _wait: Duration) -> Result<Poll, SourceError> {
            if self.read == self.chunks {
                return Ok(Poll::End);
            }
            self.read += 1;
            Ok(Poll::Data(Chunk { batches: Vec::new(), input_records: 1, bad_records: Vec::new() }))
        }
        fn checkpoint(&mut self) -> serde_json::Value {
            serde_json::json!(self.read)
        }
    }

    fn counting(chunks: usize) -> Box<dyn Source> {
        Box::new(Counting { chunks, read: 0, committed: Vec::new() })
    }

    #[tokio::test]
    async fn two_sources_take_turns_and_end_together() {
        let mut inputs = Inputs::new(vec![counting(2), counting(1)]);
        let mut order = Vec::new();
        loop {
            match inputs.poll(10, Duration::ZERO).await.unwrap() {
                Polled::Data(i, _) => order.push(i),
                Polled::Idle => panic!("counting sources are never idle"),
                Polled::End => break,
            }
        }
        assert_eq!(order, vec![0, 1, 0]);
        assert_eq!(inputs.checkpoint(), serde_json::json!({ "inputs": [2, 1] }));
    }

    #[tokio::test]
    async fn one_source_keeps_its_own_checkpoint_format() {
        let mut inputs = Inputs::new(vec![counting(1)]);
        inputs.restore(&[serde_json::json!(7)], Bound::Unbounded).await.unwrap();
        assert!(matches!(inputs.poll(10, Duration::ZERO).await.unwrap(), Polled::Data(0, _)));
        assert_eq!(inputs.checkpoint(), serde_json::json!(1));
    }
}
