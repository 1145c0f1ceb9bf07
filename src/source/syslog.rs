//! A syslog listener for `run` (`syslog = "udp://127.0.0.1:5514"`): HAProxy does not write
//! files, it sends each line to a syslog address (`log 127.0.0.1:5514 local0`); nginx can too
//! (`access_log syslog:server=...`).
//!
//! - **UDP**: one datagram, one message. Datagrams cannot wait: when the ingest loop is
//!   behind, the lines are dropped and counted (`skewtail_input_dropped_total`), never lost
//!   silently.
//! - **TCP**: newline framing or octet counting (RFC 6587: `LEN SP MSG`), told apart by each
//!   frame's first byte. A slow ingest loop slows the sender (TCP waits), nothing is dropped;
//!   at most [`MAX_CONNECTIONS`] at once.
//! - The header (RFC 3164 `<PRI>Mmm dd hh:mm:ss host tag: `, RFC 5424 `<PRI>1 TIME HOST APP
//!   PROCID MSGID SD `) is taken off; the message goes to the input's format.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Line;
use super::block::LineBlock;
use super::piped::{BlockSender, Offered, PipedLines, channel};

/// TCP connections served at once; more are refused (closed at once) and logged.
pub const MAX_CONNECTIONS: usize = 64;

/// The UDP socket's receive buffer asked for.
const UDP_BUFFER: usize = 16 << 20;

/// How long lines may wait in a block before it is handed on, when they come slowly.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Where to listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogListen {
    /// `udp://ADDR:PORT`.
    Udp(SocketAddr),
    /// `tcp://ADDR:PORT`.
    Tcp(SocketAddr),
}

impl std::str::FromStr for SyslogListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not a syslog address: write udp://127.0.0.1:5514 or tcp://127.0.0.1:5514"
            )
        };
        let (scheme, address) = text.split_once("://").ok_or_else(bad)?;
        let address: SocketAddr = address.parse().map_err(|_| bad())?;
        match scheme {
            "udp" => Ok(SyslogListen::Udp(address)),
            "tcp" => Ok(SyslogListen::Tcp(address)),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for SyslogListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyslogListen::Udp(address) => write!(f, "udp://{address}"),
            SyslogListen::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

/// A syslog message without its header: what the sender logged.
pub fn message(frame: &[u8]) -> &[u8] {
    let frame = frame.strip_suffix(b"\n").unwrap_or(frame);
    let frame = frame.strip_suffix(b"\r").unwrap_or(frame);
    let Some(rest) = frame.strip_prefix(b"<") else { return frame };
    let Some(close) = rest.iter().take(4).position(|&b| b == b'>') else { return frame };
    if close == 0 || !rest[..close].iter().all(u8::is_ascii_digit) {
        return frame;
    }
    let rest = &rest[close + 1..];
    if let Some(after) = rest.strip_prefix(b"1 ") {
        // RFC 5424: TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, then STRUCTURED-DATA.
        let mut at = 0;
        for _ in 0..5 {
            match memchr::memchr(b' ', &after[at..]) {
                Some(space) => at += space + 1,
                None => return &after[after.len()..],
            }
        }
        let sd = &after[at..];
        let body = if let Some(rest) = sd.strip_prefix(b"- ") {
            rest
        } else if sd.starts_with(b"[") {
            // Elements `[id k="v" ...]`, a `]` inside a value escaped as `\]`.
            let mut i = 0;
            let mut escaped = false;
            let mut depth = 0;
            while i < sd.len() {
                match sd[i] {
                    b'\\' if !escaped => escaped = true,
                    b'[' if !escaped && depth == 0 => depth = 1,
                    b']' if !escaped && depth == 1 => {
                        depth = 0;
                        if sd.get(i + 1) != Some(&b'[') {
                            i += 1;
                            break;
                        }
                    }
                    _ => escaped = false,
                }
                if sd[i] != b'\\' {
                    escaped = false;
                }
                i += 1;
            }
            sd[i..].strip_prefix(b" ").unwrap_or(&sd[i..])
        } else {
            sd
        };
        return body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body);
    }
    // RFC 3164: `Mmm dd hh:mm:ss ` then an optional host, then `tag[pid]: `.
    let has_time = rest.len() > 16 && rest[3] == b' ' && rest[6] == b' ' && rest[9] == b':';
    if !has_time {
        return rest;
    }
    let after_time = &rest[16..];
    // The tag ends at the first `: ` within the header's first words.
    let head = &after_time[..after_time.len().min(96)];
    match memchr::memmem::find(head, b": ") {
        Some(at) if !head[..at].contains(&b'[') || head[..at].ends_with(b"]") => {
            &after_time[at + 2..]
        }
        _ => after_time,
    }
}

/// Binds `listen` now (a port in use is an error at start) and serves it on threads of its
/// own; returns the lines' channel and the address bound (the port chosen for port 0).
pub fn listen(
    listen: SyslogListen,
    name: &str,
    max_line: usize,
    woken: impl Fn() + Send + Sync + 'static,
) -> std::io::Result<(PipedLines, SocketAddr)> {
    let (sender, piped) = channel(woken);
    let name: Arc<str> = name.into();
    let bound = match listen {
        SyslogListen::Udp(address) => {
            let socket = UdpSocket::bind(address)?;
            socket.set_read_timeout(Some(FLUSH_EVERY))?;
            // Room for bursts while the reader thread is busy: the kernel drops what does not
            // fit (counted from /proc/net/udp, see `kernel_drops`). The system may cap it at
            // net.core.rmem_max; what it grants is what it grants.
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, UDP_BUFFER);
            let bound = socket.local_addr()?;
            spawn("syslog-udp", move || receive_datagrams(&socket, &sender, &name, max_line))?;
            bound
        }
        SyslogListen::Tcp(address) => {
            let listener = TcpListener::bind(address)?;
            let bound = listener.local_addr()?;
            spawn("syslog-tcp", move || accept(&listener, &sender, &name, max_line))?;
            bound
        }
    };
    Ok((piped, bound))
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new().name(name.into()).spawn(work).map(|_| ())
}

/// Lines gathered into blocks, handed on when full or when they have waited long enough.
struct Gather {
    block: LineBlock,
    number: u64,
    since: Instant,
    max_line: usize,
}

impl Gather {
    fn new(sender: &BlockSender, name: &Arc<str>, max_line: usize) -> Self {
        let mut block = sender.block();
        block.file = name.clone();
        Gather { block, number: 0, since: Instant::now(), max_line }
    }

    fn push(&mut self, frame: &[u8]) {
        self.number += 1;
        let message = message(frame);
        if message.len() > self.max_line {
            self.block.push_too_long(self.number, message.len() as u64);
        } else {
            self.block.push(Line { bytes: message, number: self.number, offset: 0 });
        }
    }

    fn due(&self) -> bool {
        self.block.is_full() || (self.block.lines() > 0 && self.since.elapsed() >= FLUSH_EVERY)
    }

    /// Hands the block on: waiting (TCP) or dropping when behind (UDP). Returns whether the
    /// ingest side is still there.
    fn hand_on(&mut self, sender: &BlockSender, wait: bool) -> bool {
        self.since = Instant::now();
        if self.block.lines() == 0 {
            return !sender.is_closed();
        }
        let name = self.block.file.clone();
        let block = std::mem::take(&mut self.block);
        let next = if wait {
            if !sender.send(block) {
                return false;
            }
            sender.block()
        } else {
            match sender.offer(block) {
                Offered::Taken => sender.block(),
                Offered::Dropped(block) => block,
                Offered::Closed => return false,
            }
        };
        self.block = next;
        self.block.file = name;
        true
    }
}

fn receive_datagrams(socket: &UdpSocket, sender: &BlockSender, name: &Arc<str>, max_line: usize) {
    let mut gather = Gather::new(sender, name, max_line);
    let mut datagram = vec![0u8; 64 * 1024];
    let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut kernel_dropped = kernel_drops(port).unwrap_or(0);
    let mut last_look = Instant::now();
    loop {
        // Datagrams the kernel dropped (its buffer was full) are lines lost too: counted.
        if last_look.elapsed() >= Duration::from_secs(1) {
            last_look = Instant::now();
            if let Some(now) = kernel_drops(port) {
                sender.count_dropped(now.saturating_sub(kernel_dropped));
                kernel_dropped = now;
            }
        }
        match socket.recv(&mut datagram) {
            Ok(n) => gather.push(&datagram[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(error) => {
                tracing::warn!(message = "Syslog receive failed.", input = %name, %error);
            }
        }
        if (gather.due() || sender.is_closed()) && !gather.hand_on(sender, false) {
            return;
        }
        if sender.is_closed() {
            return;
        }
    }
}

/// A read that timed out (the socket's read timeout, so the thread looks around).
fn is_timeout(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// Datagrams the kernel dropped for the UDP socket on `port` (Linux: the `drops` column of
/// /proc/net/udp and udp6); `None` where that cannot be read.
fn kernel_drops(port: u16) -> Option<u64> {
    let port_hex = format!(":{port:04X}");
    let mut total = None;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1).is_some_and(|local| local.ends_with(&port_hex))
                && let Some(drops) = fields.last().and_then(|d| d.parse::<u64>().ok())
            {
                *total.get_or_insert(0) += drops;
            }
        }
    }
    total
}

fn accept(listener: &TcpListener, sender: &BlockSender, name: &Arc<str>, max_line: usize) {
    let open = Arc::new(AtomicUsize::new(0));
    let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    // Accept only when a connection waits, looking up every FLUSH_EVERY: once the ingest side
    // is gone (shutdown, or a reload that dropped this input) the port is let go at once.
    let _ = listener.set_nonblocking(true);
    while !sender.is_closed() {
        let mut ready = [rustix::event::PollFd::new(listener, rustix::event::PollFlags::IN)];
        let wait = rustix::time::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
        if !matches!(rustix::event::poll(&mut ready, Some(&wait)), Ok(n) if n > 0) {
            continue;
        }
        let stream = match listener.accept().map(|(stream, _)| stream) {
            Ok(stream) => stream,
            Err(e) if is_timeout(&e) => continue,
            Err(error) => {
                tracing::warn!(message = "Syslog accept failed.", input = %name, %error);
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            tracing::warn!(message = "Too many syslog connections: one refused.", input = %name, max = MAX_CONNECTIONS);
            continue;
        }
        // The connection itself blocks (with its read timeout), whatever the listener does.
        let _ = stream.set_nonblocking(false);
        open.fetch_add(1, Ordering::Relaxed);
        if let (Ok(clone), Ok(mut all)) = (stream.try_clone(), streams.lock()) {
            all.push(clone);
        }
        let (sender, name, open) = (sender.clone(), name.clone(), open.clone());
        let served = spawn("syslog-conn", move || {
            serve_connection(stream, &sender, &name, max_line);
            open.fetch_sub(1, Ordering::Relaxed);
        });
        if let Err(error) = served {
            tracing::warn!(message = "Cannot serve a syslog connection.", %error);
        }
    }
    if let Ok(all) = streams.lock() {
        for stream in all.iter() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn serve_connection(stream: TcpStream, sender: &BlockSender, name: &Arc<str>, max_line: usize) {
    let _ = stream.set_read_timeout(Some(FLUSH_EVERY));
    let mut reader = BufReader::new(stream);
    let mut gather = Gather::new(sender, name, max_line);
    let mut frame = Vec::new();
    loop {
        match next_frame(&mut reader, &mut frame, max_line) {
            Ok(Some(())) => {
                gather.push(&frame);
                frame.clear();
            }
            Ok(None) => {
                gather.hand_on(sender, true);
                return;
            }
            // A read timeout keeps what it read in `frame`: the frame goes on next time.
            Err(e) if is_timeout(&e) => {}
            Err(_) => {
                gather.hand_on(sender, true);
                return;
            }
        }
        if (gather.due() || sender.is_closed()) && !gather.hand_on(sender, true) {
            return;
        }
    }
}

/// Reads one frame into `frame` (which may hold the start of it from an interrupted read):
/// octet-counted when it starts with a digit, else up to its newline. `None` at the end.
fn next_frame(
    reader: &mut BufReader<TcpStream>,
    frame: &mut Vec<u8>,
    max_line: usize,
) -> std::io::Result<Option<()>> {
    let limit = max_line as u64 + 64;
    if frame.is_empty() {
        let buffered = reader.fill_buf()?;
        if buffered.is_empty() {
            return Ok(None);
        }
    }
    let counted = frame.first().or(reader.buffer().first()).is_some_and(u8::is_ascii_digit);
    if counted {
        if !frame.contains(&b' ') {
            reader.by_ref().take(24).read_until(b' ', frame)?;
        }
        let Some(space) = frame.iter().position(|&b| b == b' ') else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no length"));
        };
        let length: usize = std::str::from_utf8(&frame[..space])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad length"))?;
        let have = frame.len() - space - 1;
        let want = length.saturating_sub(have).min(limit as usize);
        let read = reader.by_ref().take(want as u64).read_to_end(frame)?;
        if read < want {
            return if read == 0 && want > 0 {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::WouldBlock.into())
            };
        }
        frame.drain(..=space);
        return Ok(Some(()));
    }
    reader.by_ref().take(limit).read_until(b'\n', frame)?;
    if frame.last() == Some(&b'\n') || frame.len() as u64 >= limit {
        return Ok(Some(()));
    }
    // The sender closed mid-line: what came is the last frame.
    if reader.fill_buf()?.is_empty() {
        return Ok(if frame.is_empty() { None } else { Some(()) });
    }
    Err(std::io::ErrorKind::WouldBlock.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_taken_off() {
        let haproxy = "10.0.0.1:5555 [15/Nov/2023:14:30:00.123] fe be/s1 0/0/1/2/3 200 10 - - ---- 1/1/0/0/0 0/0 \"GET / HTTP/1.1\"";
        for frame in [
            format!("<134>Nov 15 14:30:00 haproxy[1234]: {haproxy}"),
            format!("<134>Nov  5 14:30:00 lb-1 haproxy[1234]: {haproxy}\n"),
            format!("<134>1 2023-11-15T14:30:00.123Z lb-1 haproxy 1234 - - {haproxy}"),
            format!(
                "<134>1 2023-11-15T14:30:00Z lb-1 haproxy 1234 ID47 [ex@1 a=\"x\\]y\"][b@2 c=\"d\"] \u{feff}{haproxy}"
            ),
            haproxy.to_string(),
        ] {
            assert_eq!(String::from_utf8_lossy(message(frame.as_bytes())), haproxy, "{frame}");
        }
        assert_eq!(message(b"<13>"), b"");
        assert_eq!(message(b"<x>y"), b"<x>y");
    }

    #[test]
    fn addresses_read() {
        assert_eq!(
            "udp://127.0.0.1:5514".parse::<SyslogListen>(),
            Ok(SyslogListen::Udp("127.0.0.1:5514".parse().unwrap()))
        );
        assert!("tcp://[::1]:514".parse::<SyslogListen>().is_ok());
        assert!("127.0.0.1:514".parse::<SyslogListen>().unwrap_err().contains("udp://"));
    }

    fn lines_of(piped: &mut PipedLines, want: usize) -> Vec<String> {
        let started = Instant::now();
        let mut lines = Vec::new();
        while lines.len() < want && started.elapsed() < Duration::from_secs(10) {
            if let super::super::piped::Piped::Block(block) = piped.next_block() {
                lines.extend(block.iter().map(|(l, _)| String::from_utf8_lossy(l).into_owned()));
                piped.recycle(block);
            } else {
                std::thread::yield_now();
            }
        }
        lines
    }

    #[test]
    fn udp_and_tcp_with_both_framings_on_loopback() {
        let localhost = "127.0.0.1:0".parse().unwrap();
        let (mut udp, at) = listen(SyslogListen::Udp(localhost), "u", 1024, || {}).unwrap();
        let client = UdpSocket::bind(localhost).unwrap();
        for n in 0..3 {
            client
                .send_to(format!("<134>Nov 15 14:30:00 haproxy[1]: line {n}").as_bytes(), at)
                .unwrap();
        }
        assert_eq!(lines_of(&mut udp, 3), ["line 0", "line 1", "line 2"]);

        let (mut tcp, at) = listen(SyslogListen::Tcp(localhost), "t", 1024, || {}).unwrap();
        let mut stream = TcpStream::connect(at).unwrap();
        let counted = "<134>Nov 15 14:30:00 haproxy[1]: counted";
        let text = format!(
            "<134>Nov 15 14:30:00 haproxy[1]: newline\n{} {counted}<134>Nov 15 14:30:00 haproxy[1]: last\n",
            counted.len()
        );
        std::io::Write::write_all(&mut stream, text.as_bytes()).unwrap();
        drop(stream);
        assert_eq!(lines_of(&mut tcp, 3), ["newline", "counted", "last"]);
    }

    #[test]
    fn a_dropped_tcp_listener_lets_its_port_go() {
        let localhost = "127.0.0.1:0".parse().unwrap();
        let (tcp, at) = listen(SyslogListen::Tcp(localhost), "t", 1024, || {}).unwrap();
        drop(tcp);
        let started = Instant::now();
        while TcpListener::bind(at).is_err() {
            assert!(started.elapsed() < Duration::from_secs(5), "{at} still held after 5 s");
            std::thread::yield_now();
        }
    }
}
