//! nginx: every `upstream` block, with `include` spliced in wherever it stands (in `http`,
//! or inside an `upstream` listing its servers), and whether the client address comes from
//! `real_ip`.

use std::path::{Path, PathBuf};

use super::{BalancerConfig, BalancerError, Invalid, Kind, Method, Pool, Server, parse_time_s};

/// Includes nested deeper than this are a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// What nginx's grammar is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// A word, unquoted.
    Word(String),
    /// `{`
    Open,
    /// `}`
    Close,
    /// `;`
    End,
}

/// A piece and where it is: an index into the files read, and a 1-based line.
#[derive(Debug, Clone)]
struct Token {
    file: usize,
    line: usize,
    piece: Piece,
}

/// `text` as (line, piece): comments dropped, quoted words kept whole (a `;` inside quotes
/// ends nothing).
fn tokenize(text: &str) -> Vec<(usize, Piece)> {
    let mut pieces = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, pieces: &mut Vec<(usize, Piece)>, line| {
        if !word.is_empty() {
            pieces.push((line, Piece::Word(std::mem::take(word))));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_empty() => while chars.next_if(|&c| c != '\n').is_some() {},
            '"' | '\'' if word.is_empty() => {
                let start = line;
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => word.extend(chars.next()),
                        q if q == c => break,
                        '\n' => {
                            line += 1;
                            word.push('\n');
                        }
                        q => word.push(q),
                    }
                }
                pieces.push((start, Piece::Word(std::mem::take(&mut word))));
            }
            '{' | '}' | ';' => {
                flush(&mut word, &mut pieces, line);
                let piece = match c {
                    '{' => Piece::Open,
                    '}' => Piece::Close,
                    _ => Piece::End,
                };
                pieces.push((line, piece));
            }
            c if c.is_whitespace() => {
                flush(&mut word, &mut pieces, line);
                if c == '\n' {
                    line += 1;
                }
            }
            c => word.push(c),
        }
    }
    flush(&mut word, &mut pieces, line);
    pieces
}

/// Whether `text` has nginx's shape: `;`-terminated directives, `{}` blocks that balance,
/// nothing left unterminated at the end.
pub(super) fn is_well_formed(text: &str) -> bool {
    let pieces = tokenize(text);
    let mut depth = 0usize;
    for (_, piece) in &pieces {
        match piece {
            Piece::Open => depth += 1,
            Piece::Close if depth == 0 => return false,
            Piece::Close => depth -= 1,
            _ => {}
        }
    }
    depth == 0
        && pieces.iter().any(|(_, p)| *p == Piece::End)
        && matches!(pieces.last(), Some((_, Piece::End | Piece::Close)))
}

/// The token stream of a config with every include in place.
struct Spliced {
    base: PathBuf,
    files: Vec<PathBuf>,
    tokens: Vec<Token>,
}

impl Spliced {
    fn load(&mut self, path: &Path, depth: usize) -> Result<(), BalancerError> {
        let text = super::read_text(path)?;
        let file = self.files.len();
        self.files.push(path.to_path_buf());
        let pieces = tokenize(&text);
        let mut at_start = true;
        let mut at = 0;
        while at < pieces.len() {
            if let (
                true,
                [(line, Piece::Word(include)), (_, Piece::Word(pattern)), (_, Piece::End), ..],
            ) = (at_start, &pieces[at..])
                && include == "include"
            {
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(BalancerError {
                        path: path.to_path_buf(),
                        line: *line,
                        message: format!(
                            "includes nest deeper than {MAX_INCLUDE_DEPTH}: does a file include itself?"
                        ),
                    });
                }
                for included in expand(&self.base, pattern) {
                    self.load(&included, depth + 1)?;
                }
                at += 3;
                continue;
            }
            let (line, piece) = pieces[at].clone();
            at_start = !matches!(piece, Piece::Word(_));
            self.tokens.push(Token { file, line, piece });
            at += 1;
        }
        Ok(())
    }
}

/// The files an `include` names: a glob's matches in order (none is fine, as for nginx), or
/// the one file (which must then exist).
fn expand(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let full =
        if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { base.join(pattern) };
    if !pattern.contains(['*', '?', '[']) {
        return vec![full];
    }
    let mut files: Vec<PathBuf> = glob::glob(&full.to_string_lossy())
        .map(|paths| paths.filter_map(Result::ok).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Reads `path` and what it includes (relative includes are from `path`'s directory).
pub(super) fn read(path: &Path) -> Result<BalancerConfig, BalancerError> {
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut spliced = Spliced { base, files: Vec::new(), tokens: Vec::new() };
    spliced.load(path, 0)?;
    let Spliced { files, tokens, .. } = spliced;
    let mut config = BalancerConfig::empty(Kind::Nginx);
    let mut directive: Vec<&str> = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        let token = &tokens[at];
        at += 1;
        match &token.piece {
            Piece::Word(word) => directive.push(word),
            Piece::Open => {
                if let ["upstream", name] = directive.as_slice() {
                    let (pool, next) = upstream(&files, token, name, &tokens, at)?;
                    config.pools.push(pool);
                    at = next;
                }
                directive.clear();
            }
            Piece::Close => directive.clear(),
            Piece::End => {
                if let Some(&("real_ip_header" | "set_real_ip_from")) = directive.first() {
                    config.real_client_address = true;
                }
                directive.clear();
            }
        }
    }
    config.files = files;
    Ok(config)
}

/// Reads `upstream NAME { ... }` from the token after `{`; returns it and the token after
/// its `}`.
fn upstream(
    files: &[PathBuf],
    open: &Token,
    name: &str,
    tokens: &[Token],
    mut at: usize,
) -> Result<(Pool, usize), BalancerError> {
    let mut pool = Pool::new(&files[open.file], open.line, name, "round-robin");
    let mut directive: Vec<&str> = Vec::new();
    let mut first: Option<&Token> = None;
    while at < tokens.len() {
        let token = &tokens[at];
        at += 1;
        match &token.piece {
            Piece::Close => return Ok((pool, at)),
            Piece::Word(word) => {
                first.get_or_insert(token);
                directive.push(word);
            }
            Piece::Open => {}
            Piece::End => {
                if let (Some(start), Some((&keyword, args))) = (first, directive.split_first()) {
                    let (file, line) = (&files[start.file], start.line);
                    match keyword {
                        "server" => server(file, line, args, &mut pool),
                        "hash" => {
                            pool.method = Method::Hash {
                                key: args.first().copied().unwrap_or_default().to_string(),
                                consistent: args.contains(&"consistent"),
                            };
                            pool.method_line = line;
                        }
                        "ip_hash" => {
                            pool.method = Method::ClientAddress {
                                first_three_octets: true,
                                consistent: false,
                            };
                            pool.method_line = line;
                        }
                        "least_conn" | "random" | "least_time" => {
                            pool.method = Method::Spread(keyword.to_string());
                            pool.method_line = line;
                        }
                        _ => {}
                    }
                }
                directive.clear();
                first = None;
            }
        }
    }
    Err(BalancerError {
        path: files[open.file].clone(),
        line: open.line,
        message: format!("`upstream {name}` is never closed with `}}`"),
    })
}

/// One `server ADDRESS [weight=N] [max_fails=N] [slow_start=T] [backup] [down] ...;`.
fn server(file: &Path, line: usize, args: &[&str], pool: &mut Pool) {
    let mut invalid = |message: String| {
        pool.invalid.push(Invalid { file: file.to_path_buf(), line, message });
    };
    let Some(&address) = args.first() else {
        invalid("`server` without an address".to_string());
        return;
    };
    let mut server = Server {
        file: file.to_path_buf(),
        line,
        name: address.to_string(),
        address: address.to_string(),
        weight: 1.0,
        backup: false,
        down: false,
        max_fails: None,
        checked: true,
        slow_start_s: None,
    };
    for &parameter in &args[1..] {
        match parameter.split_once('=') {
            Some(("weight", value)) => match value.parse::<f64>() {
                Ok(weight) if weight > 0.0 && weight.is_finite() => server.weight = weight,
                _ => invalid(format!(
                    "`weight={value}` is not a positive number; nginx refuses to load it"
                )),
            },
            Some(("max_fails", value)) => match value.parse() {
                Ok(max_fails) => server.max_fails = Some(max_fails),
                Err(_) => invalid(format!("`max_fails={value}` is not a whole number")),
            },
            Some(("slow_start", value)) => match parse_time_s(value, 1000) {
                Some(seconds) => server.slow_start_s = Some(seconds),
                None => invalid(format!("`slow_start={value}` is not a time like 30s or 2m")),
            },
            None if parameter == "backup" => server.backup = true,
            None if parameter == "down" => server.down = true,
            _ => {}
        }
    }
    // nginx counts failures of real requests (passive checks) unless max_fails=0.
    server.checked = server.max_fails != Some(0);
    pool.servers.push(server);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(
        files: &[(&str, &str)],
    ) -> (tempfile::TempDir, Result<BalancerConfig, BalancerError>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let config = read(&dir.path().join(files[0].0));
        (dir, config)
    }

    #[test]
    fn upstreams_methods_servers_and_includes() {
        let (_dir, config) = read_text(&[
            (
                "nginx.conf",
                "http {\n  set_real_ip_from 10.0.0.0/8;\n  include conf.d/*.conf;\n  upstream web { ip_hash; server 10.1.0.1; }\n}\n",
            ),
            (
                "conf.d/api.conf",
                "upstream api {\n  hash $request_uri;\n  server 10.0.0.1:80 weight=10;\n  server 10.0.0.2:80 max_fails=0;\n  server 10.0.0.3:80 backup;\n}\n",
            ),
        ]);
        let config = config.unwrap();
        assert!(config.real_client_address);
        assert_eq!(config.files.len(), 2);
        let api = &config.pools[0];
        assert_eq!((api.name.as_str(), api.line, api.method_line), ("api", 1, 2));
        assert!(api.file.ends_with("conf.d/api.conf"));
        assert_eq!(api.method, Method::Hash { key: "$request_uri".into(), consistent: false });
        assert_eq!(api.servers[0].weight, 10.0);
        assert!(!api.servers[1].checked);
        assert!(api.servers[2].backup);
        let web = &config.pools[1];
        assert!(matches!(web.method, Method::ClientAddress { .. }));
        assert_eq!(web.servers[0].line, 4);
    }

    #[test]
    fn an_include_inside_an_upstream_lists_its_servers() {
        let (_dir, config) = read_text(&[
            (
                "nginx.conf",
                "http {\n upstream api {\n  least_conn;\n  include \"api-servers.conf\";\n }\n}\n",
            ),
            (
                "api-servers.conf",
                "# generated\nserver 10.0.0.1:8080 weight=3;\nserver 10.0.0.2:8080;\n",
            ),
        ]);
        let config = config.unwrap();
        let api = &config.pools[0];
        assert_eq!(api.servers.len(), 2);
        assert_eq!((api.servers[0].line, api.servers[0].weight), (2, 3.0));
        assert!(api.servers[0].file.ends_with("api-servers.conf"));
        assert_eq!(api.method, Method::Spread("least_conn".into()));
    }

    #[test]
    fn bad_parameters_are_kept_with_their_line() {
        let (_dir, config) = read_text(&[(
            "nginx.conf",
            "upstream api {\n server 10.0.0.1 weight=x;\n server 10.0.0.2 slow_start=soon;\n}\n",
        )]);
        let invalid = config.unwrap().pools[0].invalid.clone();
        assert_eq!(invalid.iter().map(|i| i.line).collect::<Vec<_>>(), [2, 3]);
        assert!(invalid[0].message.contains("weight=x"));
    }

    #[test]
    fn unclosed_and_looping_configs_are_errors_with_their_line() {
        let (_dir, config) = read_text(&[("nginx.conf", "http {\n upstream api {\n server a;\n")]);
        let error = config.unwrap_err();
        assert_eq!(error.line, 2);
        assert!(
            error.to_string().contains("nginx.conf:2: `upstream api` is never closed"),
            "{error}"
        );
        let (_dir, config) = read_text(&[("nginx.conf", "include nginx.conf;\n")]);
        assert!(config.unwrap_err().message.contains("nest deeper"));
        let (_dir, config) = read_text(&[("nginx.conf", "include missing.conf;\n")]);
        assert!(config.unwrap_err().to_string().contains("missing.conf"));
    }

    #[test]
    fn quotes_and_comments() {
        let pieces = tokenize("log_format x '$a; {b}' # not; a {\n;");
        assert_eq!(
            pieces,
            [
                (1, Piece::Word("log_format".into())),
                (1, Piece::Word("x".into())),
                (1, Piece::Word("$a; {b}".into())),
                (2, Piece::End)
            ]
        );
    }
}
