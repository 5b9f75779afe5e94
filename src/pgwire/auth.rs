//! Connection start-up: trust (the loopback default) or SCRAM-SHA-256 when
//! a password is configured.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::ClientInfo;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

const SCRAM_ITERATIONS: usize = 4096;

/// Picks the authentication flow once, at server start.
pub enum Startup {
    Trust(TrustAll),
    Scram(Box<SASLAuthStartupHandler<DefaultServerParameterProvider>>),
}

impl Startup {
    pub fn new(user: &str, password: Option<&str>) -> Startup {
        match password {
            None => Startup::Trust(TrustAll),
            Some(password) => {
                let salt = crate::random::bytes();
                let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
                let source = Arc::new(FixedUser { user: user.to_string(), salt, salted });
                let mut scram = ScramAuth::new(source);
                scram.set_iterations(SCRAM_ITERATIONS);
                let mut params = DefaultServerParameterProvider::default();
                params.server_version = crate::catalog::PG_VERSION.to_string();
                params.time_zone = "UTC".to_string();
                let handler = SASLAuthStartupHandler::new(Arc::new(params)).with_scram(scram);
                Startup::Scram(Box::new(handler))
            }
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Trust(h) => h.on_startup(client, message).await,
            Startup::Scram(h) => h.on_startup(client, message).await.map_err(|e| match e {
                // pgwire names the user from SCRAM's client-first message,
                // where libpq and most drivers leave it empty (the user is
                // the start-up packet's): name the one the client logged in as.
                PgWireError::InvalidPassword(_) => {
                    let user = client.metadata().get("user").cloned().unwrap_or_default();
                    PgWireError::UserError(Box::new(ErrorInfo::new(
                        "FATAL".to_string(),
                        "28P01".to_string(),
                        format!("password authentication failed for user \"{user}\""),
                    )))
                }
                other => other,
            }),
        }
    }
}

/// Accepts every client: the default, suitable for a loopback listener.
pub struct TrustAll;

impl NoopStartupHandler for TrustAll {}

/// The one configured user, with the password salted and hashed once at
/// start-up: SCRAM asks for it more than once per login and every answer
/// must agree (and PBKDF2 per login would be wasted work).
#[derive(Debug)]
struct FixedUser {
    user: String,
    salt: Vec<u8>,
    salted: Vec<u8>,
}

#[async_trait]
impl AuthSource for FixedUser {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        if user != self.user {
            return Err(PgWireError::InvalidPassword(user.to_string()));
        }
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
}
