//! Notices that a client has hung up while its statement runs.
//!
//! A query reads nothing from the socket until it is done, so without this a
//! read that never ends (a recursive CTE without a bound) would run on for
//! a client long gone. The socket is watched through a second descriptor
//! for the same connection: readiness with the peer's FIN or RST (epoll's
//! `EPOLLRDHUP`/`EPOLLHUP`, tokio's `is_read_closed`) means nobody is left
//! to read the rows, as PostgreSQL's `client_connection_check_interval`
//! decides with `POLLRDHUP`. Bytes waiting in the socket are left alone
//! (they are the client's next messages).

use std::io;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// A watch on one connection's socket; it only looks, never reads.
pub struct HangupWatch {
    /// A duplicate of the connection's descriptor, registered with tokio on
    /// its own. It keeps the connection open until dropped, so it lives
    /// exactly as long as the connection's task.
    watched: TcpStream,
}

impl HangupWatch {
    /// `None` if the descriptor cannot be duplicated (out of descriptors):
    /// the connection then works as before, without the watch.
    pub fn new(socket: &TcpStream) -> Option<HangupWatch> {
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            let fd = socket.as_fd().try_clone_to_owned().ok()?;
            let std_stream = std::net::TcpStream::from(fd);
            std_stream.set_nonblocking(true).ok()?;
            TcpStream::from_std(std_stream).ok().map(|watched| HangupWatch { watched })
        }
        #[cfg(not(unix))]
        {
            let _ = socket;
            None
        }
    }

    /// Completes once the client has closed its end of the connection.
    pub async fn hung_up(&self) {
        loop {
            match self.watched.ready(Interest::READABLE).await {
                Ok(ready) if ready.is_read_closed() => return,
                // Data from the client, not a hang-up: forget this readiness
                // (without reading) and wait for the next event.
                Ok(_) => {
                    let _ = self.watched.try_io(Interest::READABLE, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
    }
}
