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
    fn a_corrupt_gzip_is_an_error_not_garbage() {
        let mut bytes = gzip(&"line\n".repeat(1000));
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        let (mut reader, _) = decompressed(&bytes[..]).unwrap();
        let mut text = String::new();
        assert!(reader.read_to_string(&mut text).is_err());
    }
}
