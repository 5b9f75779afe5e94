//! The PostgreSQL wire endpoint: start-up and auth, simple and extended
//! query handlers, Arrow ↔ PostgreSQL value encoding, errors → SQLSTATE.
//!
//! * `connection`: one connection's loop from accept to close (TLS,
//!   authentication deadline, idle-session timeout, 53300 past the limit).
//! * `frame_check` / `frame_rules`: every frame's shape checked before
//!   pgwire decodes it; violations are FATAL 08P01.
//! * `hangup`: notices a client gone mid-statement, so its read is cancelled.
//! * `login_throttle`: failed logins from an address answer ever slower.
//! * `query_handler`: the simple and extended query protocols over the
//!   statement handlers (`crate::handler`).
//! * `auth`, `cancel`, `encode*`, `params*`: start-up, cancel requests,
//!   value encoding and parameter decoding.

pub mod auth;
pub mod cancel;
pub mod connection;
pub mod encode;
mod encode_column;
mod encode_text;
pub mod frame_check;
pub mod frame_rules;
mod hangup;
pub mod login_throttle;
pub mod params;
mod params_text;
pub mod query_handler;

use std::sync::Arc;

use pgwire::api::PgWireServerHandlers;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};

use crate::engine::Engine;
use query_handler::WeirHandler;

/// Hands each connection the shared handlers.
pub struct Handlers {
    query: Arc<WeirHandler>,
    startup: Arc<auth::Startup>,
    cancellers: Arc<cancel::Cancellers>,
}

impl Handlers {
    pub fn new(engine: Arc<Engine>) -> Handlers {
        let startup = Arc::new(auth::Startup::new(&engine.config.user, engine.config.password.as_deref()));
        let cancellers = Arc::new(cancel::Cancellers::default());
        Handlers { query: Arc::new(WeirHandler::new(engine, cancellers.clone())), startup, cancellers }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancellers.clone()
    }
}
