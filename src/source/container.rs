//! Container log wrappings: what a container runtime puts around each line a balancer writes
//! to stdout, taken off before the line is parsed.
//!
//! - **CRI** (containerd, CRI-O; the files under `/var/log/containers`):
//!   `2023-11-15T14:30:00.123456789Z stdout F <line>`. A line longer than the runtime's buffer
//!   (16 KiB) comes in pieces tagged `P`, the last one `F`: the pieces are joined.
//! - **Docker json-file**: `{"log":"<line>\n","stream":"stdout","time":"..."}`, the line
//!   JSON-escaped; a piece without its final `\n` is partial, joined with what follows.
//!
//! A controller's own stderr (nginx's error log, klog lines) is not access traffic: it counts
//! as `other`, never `unparsed`, and never reaches format recognition. Recognition is cheap and
//! per line (`auto`), so a file that is not wrapped reads as it is: no access line starts with
//! an RFC 3339 time followed by ` stdout ` or ` stderr `.

use serde::Deserialize;

/// Which wrapping to take off a log's lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Wrapping {
    /// Recognised line by line: CRI, Docker json-file, or none.
    #[default]
    Auto,
    /// CRI only (containerd, CRI-O).
    Cri,
    /// Docker json-file only.
    Docker,
    /// Lines are read as they are.
    None,
}

/// What one physical line is, once unwrapped.
#[derive(Debug, PartialEq, Eq)]
pub enum Unwrapped<'a> {
    /// A whole log line: the line itself, its unwrapped content, or joined pieces.
    Line(&'a [u8]),
    /// A piece of a longer line, held until its last piece.
    Held,
    /// A line of the container's stderr (not access traffic).
    Stderr,
    /// Joined pieces longer than the line limit: skipped, with their length.
    TooLong(u64),
}

/// Takes the wrapping off one stream's lines in order (pieces are joined across calls).
#[derive(Debug, Clone)]
pub struct Unwrapper {
    wrapping: Wrapping,
    max_line: usize,
    /// The unescaped line, or the pieces of one so far.
    buffer: Vec<u8>,
    /// Pieces are being joined in `buffer`.
    joining: bool,
    /// Bytes of the pieces so far, counted past the limit too.
    joined_len: u64,
}

/// The stream a runtime tagged a line with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

impl Unwrapper {
    /// For lines of at most `max_line` bytes once joined.
    pub fn new(wrapping: Wrapping, max_line: usize) -> Self {
        Unwrapper { wrapping, max_line, buffer: Vec::new(), joining: false, joined_len: 0 }
    }

    /// Whether it holds pieces of a line whose last piece has not come yet.
    pub fn is_joining(&self) -> bool {
        self.joining
    }

    /// Forgets a line in pieces (a new file starts).
    pub fn reset(&mut self) {
        self.joining = false;
        self.joined_len = 0;
        self.buffer.clear();
    }

    /// Takes the wrapping off one physical line.
    pub fn take_off<'a>(&'a mut self, line: &'a [u8]) -> Unwrapped<'a> {
        if self.wrapping == Wrapping::None {
            return Unwrapped::Line(line);
        }
        if self.wrapping != Wrapping::Docker
            && let Some((stream, last, content)) = cri(line)
        {
            return self.piece(stream, last, content, None);
        }
        if self.wrapping != Wrapping::Cri && line.starts_with(DOCKER_HEAD) {
            let start = self.joining.then_some(self.buffer.len());
            let mut decoded = std::mem::take(&mut self.buffer);
            if !self.joining {
                decoded.clear();
            }
            let parsed = docker(line, &mut decoded);
            self.buffer = decoded;
            if let Some((stream, last)) = parsed {
                let at = start.unwrap_or(0);
                return self.piece(stream, last, &[], Some(at));
            }
            // Not json-file after all: as it is.
            if let Some(at) = start {
                self.buffer.truncate(at);
            } else {
                self.buffer.clear();
            }
        }
        Unwrapped::Line(line)
    }

    /// One piece of content, `last` when it ends its line. `content` is the piece, or (for
    /// Docker, `decoded_at`) it has already been decoded into `buffer` from that offset.
    fn piece<'a>(
        &'a mut self,
        stream: Stream,
        last: bool,
        content: &'a [u8],
        decoded_at: Option<usize>,
    ) -> Unwrapped<'a> {
        if stream == Stream::Stderr {
            // A stdout line in pieces is not interrupted by stderr: the runtime interleaves them.
            if let Some(at) = decoded_at {
                self.buffer.truncate(at);
            }
            return if last { Unwrapped::Stderr } else { Unwrapped::Held };
        }
        let piece_len = match decoded_at {
            Some(at) => self.buffer.len() - at,
            None => content.len(),
        };
        if last && !self.joining {
            self.joined_len = 0;
            return match decoded_at {
                Some(_) if self.buffer.len() > self.max_line => {
                    Unwrapped::TooLong(piece_len as u64)
                }
                Some(_) => Unwrapped::Line(&self.buffer),
                None => Unwrapped::Line(content),
            };
        }
        if !self.joining {
            self.joining = true;
            self.joined_len = 0;
            if decoded_at.is_none() {
                self.buffer.clear();
            }
        }
        self.joined_len += piece_len as u64;
        if decoded_at.is_none() && self.buffer.len() + content.len() <= self.max_line + 1 {
            self.buffer.extend_from_slice(content);
        }
        if self.buffer.len() > self.max_line + 1 {
            // Past the limit: keep counting, stop keeping.
            self.buffer.truncate(self.max_line + 1);
        }
        if !last {
            return Unwrapped::Held;
        }
        self.joining = false;
        let length = std::mem::take(&mut self.joined_len);
        if length > self.max_line as u64 {
            self.buffer.clear();
            return Unwrapped::TooLong(length);
        }
        Unwrapped::Line(&self.buffer)
    }
}

/// A CRI line: its stream, whether it ends a line (`F`), and its content.
fn cri(line: &[u8]) -> Option<(Stream, bool, &[u8])> {
    // The runtime's time: RFC 3339, starting with a four-digit year.
    if line.len() < 30 || !line[..4].iter().all(u8::is_ascii_digit) || line[4] != b'-' {
        return None;
    }
    let space = memchr::memchr(b' ', &line[..40.min(line.len())])?;
    let rest = &line[space + 1..];
    let (stream, rest) = if let Some(rest) = rest.strip_prefix(b"stdout ") {
        (Stream::Stdout, rest)
    } else {
        (Stream::Stderr, rest.strip_prefix(b"stderr ")?)
    };
    // The tag: `F` or `P`, possibly with more `:`-separated flags in later runtimes.
    let tag_end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
    let last = match rest.first()? {
        b'F' => true,
        b'P' => false,
        _ => return None,
    };
    let content = rest.get(tag_end + 1..).unwrap_or_default();
    Some((stream, last, content))
}

const DOCKER_HEAD: &[u8] = br#"{"log":""#;

/// A Docker json-file line: `log` decoded onto `out`; its stream and whether the piece ends a
/// line (a final `\n`, which is taken off). `None` when it is not one.
fn docker(line: &[u8], out: &mut Vec<u8>) -> Option<(Stream, bool)> {
    let start = out.len();
    let mut at = DOCKER_HEAD.len();
    loop {
        let run = memchr::memchr2(b'"', b'\\', &line[at..])?;
        out.extend_from_slice(&line[at..at + run]);
        at += run;
        if line[at] == b'"' {
            at += 1;
            break;
        }
        let escape = *line.get(at + 1)?;
        at += 2;
        match escape {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'"' | b'\\' | b'/' => out.push(escape),
            b'u' => {
                let (c, used) = unicode_escape(&line[at - 2..])?;
                at += used - 2;
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
            _ => return None,
        }
    }
    let tail = &line[at..];
    let stream = match memchr::memmem::find(tail, br#""stream":""#) {
        Some(i) if tail[i + 10..].starts_with(b"stderr\"") => Stream::Stderr,
        Some(i) if tail[i + 10..].starts_with(b"stdout\"") => Stream::Stdout,
        _ => {
            out.truncate(start);
            return None;
        }
    };
    let last = out.len() > start && out.last() == Some(&b'\n');
    if last {
        out.pop();
        if out.len() > start && out.last() == Some(&b'\r') {
            out.pop();
        }
    }
    Some((stream, last))
}

/// `\uXXXX` (with a surrogate pair's second half): the character and the bytes it took.
fn unicode_escape(text: &[u8]) -> Option<(char, usize)> {
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(text.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let first = hex(2)?;
    if (0xD800..0xDC00).contains(&first) && text.get(6..8) == Some(b"\\u") {
        let second = hex(8)?;
        let c = 0x10000 + ((first - 0xD800) << 10) + (second.checked_sub(0xDC00)? & 0x3FF);
        return Some((char::from_u32(c).unwrap_or('\u{FFFD}'), 12));
    }
    Some((char::from_u32(first).unwrap_or('\u{FFFD}'), 6))
}

/// What a kubelet's log path says of the container that wrote it:
/// `/var/log/containers/<pod>_<namespace>_<container>-<id>.log` (the symlinks) and
/// `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restarts>.log` (their targets, and
/// their rotations `0.log.20231115-143000`, `.gz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPath {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The container in it.
    pub container: String,
}

/// The placeholders a pool name may hold, filled from each file's [`PodPath`].
pub const POOL_PLACEHOLDERS: [&str; 3] = ["{namespace}", "{pod}", "{container}"];

impl PodPath {
    /// Reads a path; `None` when it is not a kubelet's container log.
    pub fn read(path: &std::path::Path) -> Option<Self> {
        let parts: Vec<&str> = path.iter().map(|p| p.to_str()).collect::<Option<Vec<&str>>>()?;
        let n = parts.len();
        // /var/log/pods/<namespace>_<pod>_<uid>/<container>/<file>
        if n >= 4 && parts[n - 4] == "pods" {
            let mut pod_dir = parts[n - 3].splitn(3, '_');
            let (namespace, pod) = (pod_dir.next()?, pod_dir.next()?);
            pod_dir.next()?;
            return Some(PodPath {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                container: parts[n - 2].to_string(),
            });
        }
        // /var/log/containers/<pod>_<namespace>_<container>-<64 hex>.log
        if n >= 2 && parts[n - 2] == "containers" {
            let name = parts[n - 1].strip_suffix(".log")?;
            let mut fields = name.splitn(3, '_');
            let (pod, namespace, rest) = (fields.next()?, fields.next()?, fields.next()?);
            let (container, id) = rest.rsplit_once('-')?;
            if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            return Some(PodPath {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                container: container.to_string(),
            });
        }
        None
    }

    /// `template` with its placeholders filled.
    pub fn fill(&self, template: &str) -> String {
        template
            .replace("{namespace}", &self.namespace)
            .replace("{pod}", &self.pod)
            .replace("{container}", &self.container)
    }
}

/// Whether a pool name is filled per file from its [`PodPath`].
pub fn is_pool_template(pool: &str) -> bool {
    POOL_PLACEHOLDERS.iter().any(|p| pool.contains(p))
}

/// The pool of the file at `path` for an input whose pool is `template`: filled from its
/// path, or `None` when the template has no placeholder or the path says nothing of a pod.
pub fn pool_of_file(template: &str, path: &std::path::Path) -> Option<String> {
    if !is_pool_template(template) {
        return None;
    }
    PodPath::read(path).map(|pod| pod.fill(template))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(wrapping: Wrapping, lines: &[&str]) -> Vec<String> {
        let mut unwrapper = Unwrapper::new(wrapping, 64);
        lines
            .iter()
            .map(|line| match unwrapper.take_off(line.as_bytes()) {
                Unwrapped::Line(text) => String::from_utf8_lossy(text).into_owned(),
                Unwrapped::Held => "<held>".into(),
                Unwrapped::Stderr => "<stderr>".into(),
                Unwrapped::TooLong(n) => format!("<too long {n}>"),
            })
            .collect()
    }

    #[test]
    fn cri_lines_are_unwrapped_and_pieces_joined() {
        let lines = [
            "2023-11-15T14:30:00.123456789Z stdout F 10.0.0.1 - - GET /a",
            "2023-11-15T14:30:00.2Z stdout P 10.0.0.2 - ",
            "2023-11-15T14:30:00.2Z stderr F I1115 14:30:00 controller.go:1] sync",
            "2023-11-15T14:30:00.3Z stdout F - GET /b",
            "2023-11-15T14:30:00.4Z stdout F ",
            "10.0.0.3 - - [15/Nov/2023:14:30:00 +0000] \"GET / HTTP/1.1\" 200",
        ];
        assert_eq!(
            all(Wrapping::Auto, &lines),
            [
                "10.0.0.1 - - GET /a",
                "<held>",
                "<stderr>",
                "10.0.0.2 - - GET /b",
                "",
                "10.0.0.3 - - [15/Nov/2023:14:30:00 +0000] \"GET / HTTP/1.1\" 200",
            ]
        );
        assert_eq!(all(Wrapping::None, &lines[..1]), [lines[0]]);
    }

    #[test]
    fn docker_lines_are_unescaped_and_pieces_joined() {
        let lines = [
            r#"{"log":"10.0.0.1 \"GET /a\" ua=\u00e9\ud83d\ude00\n","stream":"stdout","time":"2023-11-15T14:30:00Z"}"#,
            r#"{"log":"first half ","stream":"stdout","time":"2023-11-15T14:30:00Z"}"#,
            r#"{"log":"an error\n","stream":"stderr","time":"2023-11-15T14:30:00Z"}"#,
            r#"{"log":"second half\r\n","stream":"stdout","time":"2023-11-15T14:30:00Z"}"#,
            r#"{"log":"no stream\n"}"#,
        ];
        assert_eq!(
            all(Wrapping::Auto, &lines),
            [
                "10.0.0.1 \"GET /a\" ua=é😀",
                "<held>",
                "<stderr>",
                "first half second half",
                r#"{"log":"no stream\n"}"#,
            ]
        );
        assert_eq!(all(Wrapping::Cri, &lines[..1]), [lines[0]]);
    }

    #[test]
    fn joined_pieces_past_the_limit_are_too_long_and_what_follows_reads() {
        let piece = format!("2023-11-15T14:30:00Z stdout P {}", "x".repeat(40));
        let end = "2023-11-15T14:30:00Z stdout F yyyy";
        let next = "2023-11-15T14:30:00Z stdout F next";
        assert_eq!(
            all(Wrapping::Auto, &[&piece, &piece, end, next]),
            ["<held>", "<held>", "<too long 84>", "next"]
        );
    }

    #[test]
    fn garbage_is_passed_on_as_it_is() {
        for line in ["2023-11-15T14:30:00Z stdout", r#"{"log":"unterminated"#, r#"{"log":"\x"}"#] {
            assert_eq!(all(Wrapping::Auto, &[line]), [line]);
        }
    }

    #[test]
    fn kubelet_paths_name_their_pod() {
        use std::path::Path;
        let id = "0123456789abcdef".repeat(4);
        let link = format!(
            "/var/log/containers/ingress-nginx-controller-7d9f_ingress-nginx_controller-{id}.log"
        );
        let expected = PodPath {
            namespace: "ingress-nginx".into(),
            pod: "ingress-nginx-controller-7d9f".into(),
            container: "controller".into(),
        };
        assert_eq!(PodPath::read(Path::new(&link)), Some(expected.clone()));
        let target = "/var/log/pods/ingress-nginx_ingress-nginx-controller-7d9f_5b1c-77/controller/0.log.20231115-143000.gz";
        assert_eq!(PodPath::read(Path::new(target)), Some(expected.clone()));
        assert_eq!(expected.fill("{namespace}/{container}"), "ingress-nginx/controller");
        assert_eq!(
            pool_of_file("{namespace}/{pod}", Path::new(&link)).as_deref(),
            Some("ingress-nginx/ingress-nginx-controller-7d9f")
        );
        assert_eq!(pool_of_file("api", Path::new(&link)), None);
        for other in ["/var/log/nginx/access.log", "/var/log/containers/x.log", "/pods/a/b"] {
            assert_eq!(PodPath::read(Path::new(other)), None, "{other}");
        }
    }
}
