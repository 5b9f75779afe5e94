//! A real S3-compatible server for tests: moto's `moto_server` (from the
//! `moto[server]` package in the test venv) as a child process on a free
//! loopback port, killed on drop, plus a proxy in front of it that a test
//! can cut and restore to make the store unreachable without losing what
//! it holds (moto keeps everything in memory).
//!
//! The binary is `moto_server` beside `WEIR_PYTHON` (exported by
//! `scripts/test.sh`).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The credentials every test client uses (moto accepts any).
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";
pub const REGION: &str = "us-east-1";

pub struct Moto {
    child: Child,
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn moto_binary() -> PathBuf {
    let python = std::env::var("WEIR_PYTHON").expect("WEIR_PYTHON (run the tests with bash scripts/test.sh)");
    let bin = PathBuf::from(python).parent().expect("venv bin dir").join("moto_server");
    assert!(bin.exists(), "{} is missing: the test venv needs moto[server]", bin.display());
    bin
}

/// One HTTP/1.0 request without a body; the status code and the body.
fn exchange(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

fn request(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    exchange(port, method, path).map(|(status, _)| status)
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while request(port, "GET", "/").is_err() {
            assert!(Instant::now() < deadline, "moto_server did not answer within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let status = request(self.port, "PUT", &format!("/{bucket}")).expect("create bucket");
        assert_eq!(status, 200, "creating bucket {bucket}");
    }

    /// The keys under `prefix` in `bucket` (moto answers unsigned requests).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (status, body) = exchange(self.port, "GET", &format!("/{bucket}?list-type=2&max-keys=100000&prefix={prefix}"))
            .expect("list objects");
        assert_eq!(status, 200, "listing {bucket}/{prefix}: {body}");
        body.split("<Key>").skip(1).filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string())).collect()
    }

    /// The environment a weir server needs to use this store by default.
    pub fn env(endpoint: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", endpoint.to_string()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on its own port to `target`; [`Proxy::cut`] closes every
/// connection and refuses new ones until [`Proxy::restore`].
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (accepting, tracked) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if !accepting.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let mut guard = tracked.lock().unwrap_or_else(|p| p.into_inner());
                for stream in [&client, &server] {
                    if let Ok(copy) = stream.try_clone() {
                        guard.push(copy);
                    }
                }
                drop(guard);
                for (mut from, mut to) in
                    [(client.try_clone().expect("clone"), server.try_clone().expect("clone")), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Proxy { port, up, open }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every open connection is reset and new ones are closed at once.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for stream in self.open.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
