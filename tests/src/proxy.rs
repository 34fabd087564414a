//! A small HTTP/1.1 fault proxy (tokio) to put in front of Chroma or an embedding endpoint.
//!
//! Every request is forwarded on a fresh upstream connection (`connection: close` both ways,
//! so one request per connection), unless a scheduled fault says otherwise: reset the
//! connection, delay it, answer a status (500, 503, 429 with `Retry-After`, a 4xx with a
//! message), cut the upstream's response body short, or hang without answering. Faults are
//! scheduled per path substring, either as a queue (the next N matching requests) or as a
//! standing fault; everything served is logged with its time, so tests can count what the
//! proxy did and measure the delays between a client's attempts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and return the upstream's answer.
    Pass,
    /// Close the client's connection with a TCP reset, without answering.
    Reset,
    /// Wait, then forward.
    Delay(Duration),
    /// Answer this status with a JSON body carrying `message`, without forwarding.
    Status {
        code: u16,
        retry_after: Option<u64>,
        message: String,
    },
    /// Forward, then send the upstream's headers and only half of its body, and close.
    Truncate,
    /// Never answer; hold the connection until the client gives up.
    Hang,
}

impl Fault {
    /// A status answer without Retry-After.
    pub fn status(code: u16, message: &str) -> Fault {
        Fault::Status {
            code,
            retry_after: None,
            message: message.to_string(),
        }
    }

    /// A status answer with `Retry-After: seconds`.
    pub fn throttle(code: u16, seconds: u64) -> Fault {
        Fault::Status {
            code,
            retry_after: Some(seconds),
            message: "slow down".to_string(),
        }
    }

    /// A short name for counters: `pass`, `reset`, `delay`, `status-429`, `truncate`, `hang`.
    pub fn kind(&self) -> String {
        match self {
            Fault::Pass => "pass".into(),
            Fault::Reset => "reset".into(),
            Fault::Delay(_) => "delay".into(),
            Fault::Status { code, .. } => format!("status-{code}"),
            Fault::Truncate => "truncate".into(),
            Fault::Hang => "hang".into(),
        }
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Served {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub fault: Fault,
}

#[derive(Default)]
struct State {
    /// (path substring, queued faults) in the order scheduled.
    queued: Vec<(String, VecDeque<Fault>)>,
    /// (path substring, fault for every matching request).
    standing: Vec<(String, Fault)>,
    served: Vec<Served>,
}

impl State {
    fn choose(&mut self, path: &str) -> Fault {
        for (p, q) in self.queued.iter_mut() {
            if path.contains(p.as_str()) {
                if let Some(f) = q.pop_front() {
                    return f;
                }
            }
        }
        self.standing
            .iter()
            .find(|(p, _)| path.contains(p.as_str()))
            .map(|(_, f)| f.clone())
            .unwrap_or(Fault::Pass)
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let target = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, target.clone(), st.clone()));
            }
        });
        FaultProxy { port, state, task }
    }

    /// The proxy's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next requests whose path contains `path` get `faults`, one each, in order.
    pub fn schedule(&self, path: &str, faults: impl IntoIterator<Item = Fault>) {
        let mut s = self.state.lock().unwrap();
        s.queued
            .push((path.to_string(), faults.into_iter().collect()));
    }

    /// Every request whose path contains `path` gets `fault` (after any queued ones) until
    /// [`FaultProxy::clear`].
    pub fn always(&self, path: &str, fault: Fault) {
        let mut s = self.state.lock().unwrap();
        s.standing.push((path.to_string(), fault));
    }

    /// Removes every scheduled and standing fault (the log stays).
    pub fn clear(&self) {
        let mut s = self.state.lock().unwrap();
        s.queued.clear();
        s.standing.clear();
    }

    /// Everything served so far.
    pub fn served(&self) -> Vec<Served> {
        self.state.lock().unwrap().served.clone()
    }

    /// Requests whose path contains `path`.
    pub fn served_matching(&self, path: &str) -> Vec<Served> {
        self.served()
            .into_iter()
            .filter(|s| s.path.contains(path))
            .collect()
    }

    /// How many requests got a fault of this kind (see [`Fault::kind`]).
    pub fn count(&self, kind: &str) -> usize {
        self.served()
            .iter()
            .filter(|s| s.fault.kind() == kind)
            .count()
    }

    /// Queued faults not used yet.
    pub fn pending_faults(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .queued
            .iter()
            .map(|(_, q)| q.len())
            .sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A parsed request: its head (request line and headers) and body.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// The bytes to send upstream, with `connection: close`.
    fn to_upstream(&self, host: &str) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.path).into_bytes();
        for (k, v) in &self.headers {
            let lk = k.to_ascii_lowercase();
            if lk == "connection" || lk == "host" || lk == "keep-alive" {
                continue;
            }
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("host: {host}\r\nconnection: close\r\n\r\n").as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Reads one request; `None` when the client closed the connection first.
async fn read_request(conn: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// Sends the request upstream and reads the whole response (the upstream closes after it).
async fn forward(req: &Request, target: &str) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(target).await?;
    up.write_all(&req.to_upstream(target)).await?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await?;
    Ok(resp)
}

/// The upstream's response with its `connection` header replaced by `connection: close`;
/// also returns where the body starts.
fn close_response(resp: &[u8]) -> (Vec<u8>, usize) {
    let Some(end) = find_head_end(resp) else {
        return (resp.to_vec(), resp.len());
    };
    let head = String::from_utf8_lossy(&resp[..end - 4]).to_string();
    let mut out = Vec::new();
    for line in head.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    let body_at = out.len();
    out.extend_from_slice(&resp[end..]);
    (out, body_at)
}

fn status_response(code: u16, retry_after: Option<u64>, message: &str) -> Vec<u8> {
    // Readable by Chroma clients (`message`) and OpenAI clients (`error.message`).
    let body =
        serde_json::json!({"error": {"message": message, "type": "injected"}, "message": message})
            .to_string();
    let mut head = format!(
        "HTTP/1.1 {code} Injected\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(s) = retry_after {
        head.push_str(&format!("retry-after: {s}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[allow(deprecated)] // SO_LINGER 0 closes with a reset at once; it does not block.
fn reset(conn: TcpStream) {
    let _ = conn.set_linger(Some(Duration::ZERO));
    drop(conn);
}

async fn serve(mut conn: TcpStream, target: String, state: Arc<Mutex<State>>) {
    let Some(req) = read_request(&mut conn).await else {
        return;
    };
    let fault = {
        let mut s = state.lock().unwrap();
        let f = s.choose(&req.path);
        s.served.push(Served {
            at: Instant::now(),
            method: req.method.clone(),
            path: req.path.clone(),
            fault: f.clone(),
        });
        f
    };
    match fault {
        Fault::Reset => reset(conn),
        Fault::Hang => {
            // Read until the client hangs up (or ten minutes), answering nothing.
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(600), async {
                while conn.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            })
            .await;
        }
        Fault::Status {
            code,
            retry_after,
            message,
        } => {
            let _ = conn
                .write_all(&status_response(code, retry_after, &message))
                .await;
            let _ = conn.shutdown().await;
        }
        Fault::Pass | Fault::Delay(_) | Fault::Truncate => {
            if let Fault::Delay(d) = fault {
                tokio::time::sleep(d).await;
            }
            let Ok(resp) = forward(&req, &target).await else {
                reset(conn);
                return;
            };
            let (resp, body_at) = close_response(&resp);
            let upto = if fault == Fault::Truncate {
                body_at + (resp.len() - body_at) / 2
            } else {
                resp.len()
            };
            let _ = conn.write_all(&resp[..upto]).await;
            let _ = conn.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_faults_come_first_then_standing_then_pass() {
        let mut s = State::default();
        s.queued.push((
            "upsert".into(),
            VecDeque::from([Fault::Reset, Fault::Truncate]),
        ));
        s.standing
            .push(("upsert".into(), Fault::status(400, "bad")));
        assert_eq!(s.choose("/api/v2/heartbeat"), Fault::Pass);
        assert_eq!(s.choose("/c/1/upsert"), Fault::Reset);
        assert_eq!(s.choose("/c/1/upsert"), Fault::Truncate);
        assert_eq!(s.choose("/c/1/upsert"), Fault::status(400, "bad"));
    }

    #[test]
    fn response_gets_connection_close_and_body_offset() {
        let resp = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\ncontent-length: 4\r\n\r\nabcd";
        let (out, at) = close_response(resp);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("connection: close\r\n\r\nabcd"), "{text}");
        assert!(!text.contains("keep-alive"));
        assert_eq!(&out[at..], b"abcd");
    }

    #[test]
    fn status_answer_carries_retry_after() {
        let r = String::from_utf8(status_response(429, Some(2), "slow")).unwrap();
        assert!(r.starts_with("HTTP/1.1 429 "));
        assert!(r.contains("retry-after: 2\r\n"));
        assert!(r.ends_with(r#""message":"slow"}"#) || r.contains("slow"));
    }
}
