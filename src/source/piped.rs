//! Standard input as a live stream (`run` with `path = "-"`, e.g. `journalctl -f -o cat -u
//! haproxy | skewtail run ...`): read on a thread of its own, so the ingest loop never blocks
//! on it, and handed over in blocks of whole lines.
//!
//! Back-pressure, not loss: the channel holds a few blocks; when it is full the reader waits,
//! and the data waits in the pipe (the writer blocks, as with any slow reader). A pipe has no
//! offset to resume from, so a restart reads on from whatever the writer sends next.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use super::LineReader;
use super::block::LineBlock;
use super::container::{Unwrapper, Wrapping};
use super::decompress::decompressed;

/// Blocks waiting for the ingest loop.
const BLOCKS_IN_FLIGHT: usize = 4;

/// Lines that arrive on their own (a pipe, a syslog socket), read on threads of their own so
/// the ingest loop never waits on them, and taken by it a block at a time.
#[derive(Debug)]
pub struct PipedLines {
    blocks: mpsc::Receiver<LineBlock>,
    free: mpsc::SyncSender<LineBlock>,
    ended: bool,
    shared: Arc<Shared>,
}

/// What the reading threads and the ingest side share.
#[derive(Debug, Default)]
struct Shared {
    /// The ingest side is gone: reading threads stop.
    closed: AtomicBool,
    /// Lines dropped because the ingest loop was behind (datagrams cannot wait).
    dropped: AtomicU64,
}

/// The reading threads' end: where blocks go, and blocks to reuse.
#[derive(Clone)]
pub struct BlockSender {
    to_ingest: mpsc::SyncSender<LineBlock>,
    recycled: Arc<Mutex<mpsc::Receiver<LineBlock>>>,
    woken: Arc<dyn Fn() + Send + Sync>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BlockSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockSender").finish_non_exhaustive()
    }
}

/// What became of a block offered without waiting.
#[derive(Debug)]
pub enum Offered {
    /// Taken.
    Taken,
    /// The ingest loop is behind: its lines were dropped and counted; the block comes back.
    Dropped(LineBlock),
    /// The ingest side is gone.
    Closed,
}

impl BlockSender {
    /// An empty block, reused where one is free.
    pub fn block(&self) -> LineBlock {
        let reused = self.recycled.lock().ok().and_then(|free| free.try_recv().ok());
        let mut block = reused.unwrap_or_default();
        block.clear(0, 0);
        block
    }

    /// Hands `block` on, waiting while the ingest loop is behind (the data waits where it
    /// is: in a pipe, in a TCP sender); returns whether it was taken.
    pub fn send(&self, block: LineBlock) -> bool {
        let taken = self.to_ingest.send(block).is_ok();
        (self.woken)();
        taken
    }

    /// Hands `block` on if there is room, else drops its lines and counts them.
    pub fn offer(&self, mut block: LineBlock) -> Offered {
        match self.to_ingest.try_send(block) {
            Ok(()) => {
                (self.woken)();
                Offered::Taken
            }
            Err(mpsc::TrySendError::Full(returned)) => {
                block = returned;
                self.shared.dropped.fetch_add(block.lines(), Ordering::Relaxed);
                block.clear(0, 0);
                Offered::Dropped(block)
            }
            Err(mpsc::TrySendError::Disconnected(_)) => Offered::Closed,
        }
    }

    /// Counts lines lost before they reached a block (a kernel buffer that overflowed).
    pub fn count_dropped(&self, lines: u64) {
        self.shared.dropped.fetch_add(lines, Ordering::Relaxed);
    }

    /// Whether the ingest side is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }
}

/// A channel of blocks: the reading threads' end and the ingest loop's; `woken` is called
/// whenever a block is handed on.
pub fn channel(woken: impl Fn() + Send + Sync + 'static) -> (BlockSender, PipedLines) {
    let (to_ingest, blocks) = mpsc::sync_channel::<LineBlock>(BLOCKS_IN_FLIGHT);
    let (free, recycled) = mpsc::sync_channel::<LineBlock>(BLOCKS_IN_FLIGHT + 2);
    let shared = Arc::new(Shared::default());
    let sender = BlockSender {
        to_ingest,
        recycled: Arc::new(Mutex::new(recycled)),
        woken: Arc::new(woken),
        shared: shared.clone(),
    };
    (sender, PipedLines { blocks, free, ended: false, shared })
}

/// What [`PipedLines::next_block`] found.
#[derive(Debug)]
pub enum Piped {
    /// Whole lines.
    Block(LineBlock),
    /// Nothing yet.
    Empty,
    /// The writer closed the pipe (or reading failed: the block says why).
    Ended,
}

impl PipedLines {
    /// Starts reading `reader` (standard input), decompressed if it is, lines taken out of
    /// their container wrapping, and calls `woken` whenever a block is ready. Fails when its
    /// reader thread cannot start.
    pub fn spawn(
        reader: impl Read + Send + 'static,
        name: &str,
        wrapping: Wrapping,
        max_line: usize,
        woken: impl Fn() + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let (sender, piped) = channel(woken);
        let name: Arc<str> = name.into();
        std::thread::Builder::new().name("stdin".into()).spawn(move || {
            let reader = match decompressed(reader) {
                Ok((reader, _)) => reader,
                Err(error) => {
                    let mut block = sender.block();
                    block.error = Some(super::error::SourceError::reading("-", error));
                    block.last = true;
                    sender.send(block);
                    return;
                }
            };
            let mut lines = LineReader::new(reader, max_line);
            let mut unwrapper = Unwrapper::new(wrapping, max_line);
            loop {
                let mut block = sender.block();
                block.file = name.clone();
                let ended = block.fill(&mut lines, &mut unwrapper, true);
                block.last = ended;
                if !sender.send(block) || ended {
                    return;
                }
            }
        })?;
        Ok(piped)
    }

    /// The next block of lines, without waiting.
    pub fn next_block(&mut self) -> Piped {
        if self.ended {
            return Piped::Ended;
        }
        match self.blocks.try_recv() {
            Ok(block) => {
                self.ended = block.last;
                Piped::Block(block)
            }
            Err(mpsc::TryRecvError::Empty) => Piped::Empty,
            Err(mpsc::TryRecvError::Disconnected) => {
                self.ended = true;
                Piped::Ended
            }
        }
    }

    /// Gives a block back for reuse.
    pub fn recycle(&self, block: LineBlock) {
        let _ = self.free.try_send(block);
    }

    /// Lines dropped so far because the ingest loop was behind.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for PipedLines {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[test]
    fn lines_arrive_as_they_are_written_and_the_end_is_said() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let (woke_tx, woke) = mpsc::channel();
        let mut piped = PipedLines::spawn(reader, "-", Wrapping::Auto, 1024, move || {
            let _ = woke_tx.send(());
        })
        .unwrap();
        let next_lines = |piped: &mut PipedLines| -> Option<Vec<String>> {
            loop {
                match piped.next_block() {
                    Piped::Block(block) => {
                        let lines = block
                            .iter()
                            .map(|(l, _)| String::from_utf8_lossy(l).into_owned())
                            .collect();
                        piped.recycle(block);
                        return Some(lines);
                    }
                    Piped::Empty => {
                        woke.recv_timeout(Duration::from_secs(10)).expect("no block within 10 s");
                    }
                    Piped::Ended => return None,
                }
            }
        };
        writer.write_all(b"one\ntwo\nthr").unwrap();
        // Handed over before the writer ends, and without the partial line.
        assert_eq!(next_lines(&mut piped).unwrap(), ["one", "two"]);
        writer.write_all(b"ee\n").unwrap();
        assert_eq!(next_lines(&mut piped).unwrap(), ["three"]);
        drop(writer);
        let mut rest = Vec::new();
        while let Some(lines) = next_lines(&mut piped) {
            rest.extend(lines);
        }
        assert!(rest.is_empty(), "{rest:?}");
        assert!(matches!(piped.next_block(), Piped::Ended));
    }
}
