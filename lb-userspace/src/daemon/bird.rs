//! The BIRD adapter: the include file lbd writes its VIP routes into, and
//! BIRD's control socket, over which it asks BIRD to re-read its
//! configuration.
//!
//! Why a generated file and `configure` rather than control-socket
//! commands per route: BIRD has no command that adds a route; its static
//! protocols are configuration. Re-reading them is soft (BGP sessions
//! stay up; only the static protocol's routes change), atomic (BIRD parses
//! the whole file first and keeps running its old configuration if the new
//! one does not parse), and survives a BIRD restart on its own: the file
//! is still there. The file holds exactly what lbd last decided, so an
//! agent restarting reads it back and changes nothing until it decides
//! otherwise.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixStream,
};

use super::state::write_atomically_as;

#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    #[error("BIRD control socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("BIRD control socket {0}: no answer within 5 s")]
    Timeout(PathBuf),
    #[error("BIRD refused `{command}`: {reply}")]
    Refused { command: String, reply: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The include file for `routes`: one static protocol per family, always
/// both (an empty one is valid), so the BGP export filter can name them.
pub fn render(protocol: &str, routes: &BTreeSet<IpAddr>) -> String {
    let mut out = String::from(
        "# Written by lbd: the VIP addresses this host announces. Do not edit;\n\
         # lbd rewrites it and asks BIRD to re-read its configuration.\n",
    );
    for (family, bits, v4) in [("ipv4", 32, true), ("ipv6", 128, false)] {
        let suffix = if v4 { 4 } else { 6 };
        out.push_str(&format!(
            "protocol static {protocol}{suffix} {{\n    {family};\n"
        ));
        for a in routes.iter().filter(|a| a.is_ipv4() == v4) {
            out.push_str(&format!("    route {a}/{bits} blackhole;\n"));
        }
        out.push_str("}\n");
    }
    out
}

/// The addresses an include file announces (what a previous agent left).
pub fn announced_in(text: &str) -> BTreeSet<IpAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("route "))
        .filter_map(|r| r.split('/').next()?.parse().ok())
        .collect()
}

pub fn read_announced(path: &Path) -> BTreeSet<IpAddr> {
    std::fs::read_to_string(path)
        .map(|t| announced_in(&t))
        .unwrap_or_default()
}

/// Writes the include file (atomically: BIRD never reads half of it;
/// world-readable: BIRD runs as its own user).
pub fn write(path: &Path, protocol: &str, routes: &BTreeSet<IpAddr>) -> Result<(), BirdError> {
    let text = render(protocol, routes);
    write_atomically_as(path, text.as_bytes(), Some(0o644)).map_err(|source| BirdError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// One command over the control socket; the reply's lines. BIRD answers
/// with lines `CODE-text` (more follow) and `CODE text` (the last); codes
/// from 8000 up are errors.
pub async fn command(socket: &Path, command: &str) -> Result<Vec<String>, BirdError> {
    let io = |source| BirdError::Socket {
        path: socket.to_path_buf(),
        source,
    };
    let talk = async {
        let stream = UnixStream::connect(socket).await.map_err(io)?;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        // The greeting: `0001 BIRD 2.0.12 ready.`
        let _ = last_reply(&mut lines).await.map_err(io)?;
        write
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(io)?;
        last_reply(&mut lines).await.map_err(io)
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), talk)
        .await
        .map_err(|_| BirdError::Timeout(socket.to_path_buf()))??;
    match reply.last() {
        Some(l) if l.starts_with(['8', '9']) => Err(BirdError::Refused {
            command: command.into(),
            reply: reply.join(" / "),
        }),
        _ => Ok(reply),
    }
}

/// Lines up to and including the last one of a reply.
async fn last_reply(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
) -> std::io::Result<Vec<String>> {
    let mut out = vec![];
    while let Some(l) = lines.next_line().await? {
        let last = l.len() >= 5
            && l.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && l.as_bytes()[4] == b' ';
        out.push(l);
        if last {
            return Ok(out);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "BIRD closed the control socket mid-reply",
    ))
}

/// Asks BIRD to re-read its configuration (and with it the include file).
pub async fn configure(socket: &Path) -> Result<(), BirdError> {
    command(socket, "configure").await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_include_file_reads_back_what_it_announces() {
        let routes: BTreeSet<IpAddr> = ["10.100.0.1", "10.100.0.2", "fd00:100::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let text = render("lb_vips", &routes);
        assert!(
            text.contains(
                "protocol static lb_vips4 {\n    ipv4;\n    route 10.100.0.1/32 blackhole;"
            )
        );
        assert!(text.contains(
            "protocol static lb_vips6 {\n    ipv6;\n    route fd00:100::1/128 blackhole;"
        ));
        assert_eq!(announced_in(&text), routes);
        let empty = render("lb_vips", &BTreeSet::new());
        assert!(empty.contains("protocol static lb_vips4 {\n    ipv4;\n}"));
        assert!(announced_in(&empty).is_empty());
    }
}
