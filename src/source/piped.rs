//! Standard input as a live stream (`run` with `path = "-"`, e.g. `journalctl -f -o cat -u
//! haproxy | skewtail run ...`): read on a thread of its own, so the ingest loop never blocks
//! on it, and handed over in blocks of whole lines.
//!
//! Back-pressure, not loss: the channel holds a few blocks; when it is full the reader waits,
//! and the data waits in the pipe (the writer blocks, as with any slow reader). A pipe has no
//! offset to resume from, so a restart reads on from whatever the writer sends next.

use std::io::Read;
use std::sync::mpsc;

use super::LineReader;
use super::block::LineBlock;
use super::container::{Unwrapper, Wrapping};
use super::decompress::decompressed;

/// Blocks waiting for the ingest loop.
const BLOCKS_IN_FLIGHT: usize = 4;

/// Lines from a pipe, read on their own thread.
#[derive(Debug)]
pub struct PipedLines {
    blocks: mpsc::Receiver<LineBlock>,
    free: mpsc::SyncSender<LineBlock>,
    ended: bool,
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
    /// their container wrapping, and calls `woken` whenever a block is ready.
    pub fn spawn(
        reader: impl Read + Send + 'static,
        name: &str,
        wrapping: Wrapping,
        max_line: usize,
        woken: impl Fn() + Send + 'static,
    ) -> Self {
        let (to_ingest, blocks) = mpsc::sync_channel::<LineBlock>(BLOCKS_IN_FLIGHT);
        let (free, recycled) = mpsc::sync_channel::<LineBlock>(BLOCKS_IN_FLIGHT + 2);
        let name: std::sync::Arc<str> = name.into();
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let reader = match decompressed(reader) {
                    Ok((reader, _)) => reader,
                    Err(error) => {
                        let mut block = LineBlock::default();
                        block.error = Some(super::error::SourceError::reading("-", error));
                        block.last = true;
                        let _ = to_ingest.send(block);
                        woken();
                        return;
                    }
                };
                let mut lines = LineReader::new(reader, max_line);
                let mut unwrapper = Unwrapper::new(wrapping, max_line);
                loop {
                    let mut block = recycled.try_recv().unwrap_or_default();
                    block.clear(0, 0);
                    block.file = name.clone();
                    let ended = block.fill(&mut lines, &mut unwrapper, true);
                    block.last = ended;
                    if to_ingest.send(block).is_err() {
                        return;
                    }
                    woken();
                    if ended {
                        return;
                    }
                }
            })
            .unwrap_or_else(|error| unreachable!("cannot start the stdin thread: {error}"));
        PipedLines { blocks, free, ended: false }
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
        });
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
