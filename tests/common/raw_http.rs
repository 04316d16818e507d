//! The pieces of small scripted HTTP/1.1 servers on 127.0.0.1, for the cases a real sandbox
//! never shows (hanging up before answering, never answering, closing after an answer).

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A complete answer to the token call (with a field the client must ignore).
pub const TOKEN_REPLY: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 66\r\n\r\n{\"access_token\":\"t\",\"token_type\":\"bearer\",\"expires_in\":3600,\"x\":1}";

/// Reads one request (head and Content-Length body); its request line, or `None` when the
/// peer closed.
pub async fn read_request(sock: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if sock.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).await.ok()?;
    Some(head.lines().next().unwrap_or_default().to_owned())
}
