//! The lab's backend server: answers on TCP (a line protocol and HTTP) and
//! UDP with its own name, so clients can tell which backend served them.
//!
//! `lab-server NAME [TCP_ADDR] [UDP_ADDR]` (defaults `[::]:80`, `[::]:53`;
//! dual-stack sockets also take IPv4).

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{TcpListener, UdpSocket},
    thread,
};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "backend".into());
    let tcp = args.next().unwrap_or_else(|| "[::]:80".into());
    let udp = args.next().unwrap_or_else(|| "[::]:53".into());
    let listener = TcpListener::bind(&tcp)?;
    let sock = UdpSocket::bind(&udp)?;
    let udp_name = name.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let reply = format!("{udp_name} {}", String::from_utf8_lossy(&buf[..n]).trim());
            let _ = sock.send_to(reply.as_bytes(), from);
        }
    });
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let name = name.clone();
        thread::spawn(move || {
            let Ok(read) = s.try_clone() else { return };
            let mut lines = BufReader::new(read);
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if line.starts_with("GET ") {
                    // HTTP health checks and curl: answer and close.
                    let body = format!("{name}\n");
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    return;
                }
                if s.write_all(format!("{name} {}", line).as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
        });
    }
    Ok(())
}
