//! Compressed input, recognised by its magic bytes (not its name): gzip (every member of a
//! multi-member file, as logrotate and `cat a.gz b.gz` make) and zstd. Plain input passes
//! through. Works on files and on stdin alike.

use std::io::{self, BufRead, BufReader, Read};

/// How an input is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    Plain,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// Recognises the compression from the first bytes.
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::Plain
        }
    }

    /// The compression a file's name suggests (`.gz`, `.zst`), for a file not opened yet;
    /// reading goes by the magic bytes all the same.
    pub fn from_name(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Compression::Gzip,
            Some("zst") => Compression::Zstd,
            _ => Compression::Plain,
        }
    }

    /// Its name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Plain => "plain",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Buffer size for reading compressed files: large reads keep the decoder busy.
const BUFFER: usize = 256 * 1024;

/// `reader` decompressed as its first bytes say; and which compression that was.
pub fn decompressed<'a, R: Read + Send + 'a>(
    reader: R,
) -> io::Result<(Box<dyn Read + Send + 'a>, Compression)> {
    let mut buffered = BufReader::with_capacity(BUFFER, reader);
    let compression = Compression::sniff(buffered.fill_buf()?);
    let reader: Box<dyn Read + Send + 'a> = match compression {
        Compression::Plain => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    };
    Ok((reader, compression))
}

/// Decompressed blocks handed from the decompressing thread to the reader.
const BLOCKS_IN_FLIGHT: usize = 4;

/// A reader fed by another thread: `inner` is read (and decompressed) there, in blocks, while
/// this thread parses, so a compressed replay uses two cores. The bytes are exactly
/// `inner`'s, in order.
pub struct ThreadedReader {
    blocks: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
}

impl std::fmt::Debug for ThreadedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedReader").finish_non_exhaustive()
    }
}

impl ThreadedReader {
    /// Starts reading `inner` on a thread of its own; it stops when this reader is dropped.
    pub fn spawn(mut inner: Box<dyn Read + Send>) -> Self {
        let (sender, blocks) = std::sync::mpsc::sync_channel(BLOCKS_IN_FLIGHT);
        std::thread::spawn(move || {
            loop {
                let mut block = vec![0u8; BUFFER];
                let mut filled = 0;
                // Fill the block (decoders return little at a time).
                let result = loop {
                    match inner.read(&mut block[filled..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == block.len() {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                block.truncate(filled);
                let done = filled == 0 || result.is_err();
                if filled > 0 && sender.send(Ok(block)).is_err() {
                    return;
                }
                if let Err(e) = result {
                    let _ = sender.send(Err(e));
                }
                if done {
                    return;
                }
            }
        });
        ThreadedReader { blocks, current: Vec::new(), at: 0 }
    }
}

impl Read for ThreadedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.current.len() {
            match self.blocks.recv() {
                Ok(Ok(block)) => {
                    self.current = block;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The thread finished: the end.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn read_all(bytes: &[u8]) -> (String, Compression) {
        let (mut reader, compression) = decompressed(bytes).unwrap();
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        (text, compression)
    }

    fn gzip(text: &str) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn plain_gzip_multi_member_and_zstd_by_their_magic() {
        assert_eq!(read_all(b"a\nb\n"), ("a\nb\n".to_string(), Compression::Plain));
        let mut two_members = gzip("first\n");
        two_members.extend(gzip("second\n"));
        assert_eq!(read_all(&two_members), ("first\nsecond\n".to_string(), Compression::Gzip));
        let zstd = zstd::encode_all(&b"z1\nz2\n"[..], 3).unwrap();
        assert_eq!(read_all(&zstd), ("z1\nz2\n".to_string(), Compression::Zstd));
        assert_eq!(read_all(b""), (String::new(), Compression::Plain));
    }

    #[test]
    fn a_threaded_reader_gives_the_same_bytes_and_the_errors() {
        let text: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
        let (reader, _) = decompressed(std::io::Cursor::new(gzip(&text))).unwrap();
        let mut threaded = ThreadedReader::spawn(reader);
        let mut out = String::new();
        threaded.read_to_string(&mut out).unwrap();
        assert_eq!(out, text);
        let mut bytes = gzip(&text);
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        let (reader, _) = decompressed(std::io::Cursor::new(bytes)).unwrap();
        let mut out = Vec::new();
        assert!(ThreadedReader::spawn(reader).read_to_end(&mut out).is_err());
    }

    #[test]
    fn a_corrupt_gzip_is_an_error_not_garbage() {
        let mut bytes = gzip(&"line\n".repeat(1000));
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        let (mut reader, _) = decompressed(&bytes[..]).unwrap();
        let mut text = String::new();
        assert!(reader.read_to_string(&mut text).is_err());
    }
}
