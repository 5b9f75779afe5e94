//! Errors as Flight SQL clients receive them: a gRPC status of the class
//! matching the SQLSTATE, the PostgreSQL endpoint's message, and the
//! SQLSTATE on its own in the status's metadata and details.

use tonic::Status;

use crate::error::QueryError;

/// Where a Flight client finds an error's SQLSTATE on its own, besides the
/// message: the status's metadata under this key, and its details (a
/// `google.rpc.ErrorInfo` with the SQLSTATE as `reason` and domain
/// [`ERROR_DOMAIN`]). ADBC's Flight SQL driver fills no `sqlstate` of its
/// own from anything a server sends, but hands both to the application as
/// error details (`e.details` in Python).
pub const SQLSTATE_METADATA: &str = "x-sqlstate";
pub const ERROR_DOMAIN: &str = "weir.sqlstate";

/// The same SQLSTATE-bearing message the PostgreSQL endpoint sends, as a
/// gRPC status of the matching class, with the SQLSTATE on its own too.
pub(super) fn status(e: &QueryError) -> Status {
    use tonic::Code;
    let sqlstate = e.sqlstate();
    let message = format!("{} (SQLSTATE {sqlstate})", e.message());
    let code = match &sqlstate[..2] {
        "42" | "22" => Code::InvalidArgument,
        "0A" => Code::Unimplemented,
        "58" => Code::NotFound,
        "28" => Code::Unauthenticated,
        "53" => Code::ResourceExhausted,
        _ => Code::Internal,
    };
    let info = rpc::ErrorInfo {
        reason: sqlstate.to_string(),
        domain: ERROR_DOMAIN.to_string(),
        metadata: [("sqlstate".to_string(), sqlstate.to_string())].into(),
    };
    let details = rpc::Status {
        code: code as i32,
        message: message.clone(),
        details: vec![rpc::Any {
            type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
            value: prost::Message::encode_to_vec(&info),
        }],
    };
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Ok(value) = sqlstate.parse() {
        metadata.insert(SQLSTATE_METADATA, value);
    }
    Status::with_details_and_metadata(code, message, prost::Message::encode_to_vec(&details).into(), metadata)
}

/// The few `google.rpc` messages a status's details carry (the standard
/// `grpc-status-details-bin` payload).
mod rpc {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ErrorInfo {
        #[prost(string, tag = "1")]
        pub reason: String,
        #[prost(string, tag = "2")]
        pub domain: String,
        #[prost(map = "string, string", tag = "3")]
        pub metadata: std::collections::HashMap<String, String>,
    }
}
