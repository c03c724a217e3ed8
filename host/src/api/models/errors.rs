//! The error body and every error code, each with its one HTTP status.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::plugins::LogLineOut;

/// Defines [`ErrorCode`] from one table: adding a code is one line (status, variant, code,
/// when it is answered); the status, the OpenAPI enum and the docs follow from it.
macro_rules! error_codes {
    ($($status:literal $variant:ident $code:literal $doc:literal;)*) => {
        /// Every `code` the API answers with. Each code has one status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum ErrorCode {
            $(
                #[doc = $doc]
                #[serde(rename = $code)]
                $variant,
            )*
        }

        impl ErrorCode {
            /// All codes, in the table's order (by status).
            pub const ALL: &'static [ErrorCode] = &[$(Self::$variant),*];

            /// The code as sent.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $code,)* }
            }

            /// The HTTP status it is answered with.
            pub fn status(self) -> u16 {
                match self { $(Self::$variant => $status,)* }
            }

            /// When it is answered.
            pub fn description(self) -> &'static str {
                match self { $(Self::$variant => $doc,)* }
            }
        }
    };
}

error_codes! {
    400 MalformedJson "malformed_json" "The body is not JSON: a syntax error, not UTF-8, empty, or nested too deeply.";
    400 BadRequest "bad_request" "The request could not be read.";
    400 InvalidQuery "invalid_query" "A query parameter is not valid (e.g. `limit` outside 1-250, an unknown `status`).";
    400 InvalidPath "invalid_path" "A path segment does not decode (not UTF-8).";
    400 InvalidName "invalid_name" "A plugin name is not `[a-z0-9][a-z0-9_-]{0,62}`.";
    400 InvalidTenant "invalid_tenant" "A `tenant_id` is not 1 to 128 characters of letters, digits, `_`, `.`, `:` and `-`.";
    401 Unauthorized "unauthorized" "No `Authorization: Bearer <key>`, not a key, or a key that was revoked or has expired.";
    403 Forbidden "forbidden" "The key lacks the scope this route needs, or is bound to a tenant and the request names another.";
    404 NotFound "not_found" "No such id, name or route.";
    405 MethodNotAllowed "method_not_allowed" "The route exists, with other methods.";
    408 RequestTimeout "request_timeout" "The request's body did not arrive within `body_timeout`; the connection is closed.";
    409 PluginInUse "plugin_in_use" "A subscription uses the plugin: change or delete it first.";
    409 SubscriptionDisabled "subscription_disabled" "The subscription is disabled: enable it first.";
    409 SubscriptionDeleted "subscription_deleted" "The delivery's subscription was deleted.";
    409 AlreadyQueued "already_queued" "The delivery is already pending or being delivered.";
    409 DefaultTenant "default_tenant" "The `default` tenant cannot be deleted.";
    409 ConcurrentUpdate "concurrent_update" "The subscription kept changing under this PATCH; send it again.";
    413 PayloadTooLarge "payload_too_large" "The body is larger than the limit (`max_event_bytes`, or the component size for plugin uploads).";
    415 UnsupportedMediaType "unsupported_media_type" "Wrong `content-type`: `application/json` (or `application/wasm` for plugin uploads).";
    422 InvalidBody "invalid_body" "The JSON does not fit the request's shape: a wrong type, a missing or unknown field, not an object.";
    422 InvalidUrl "invalid_url" "The subscription URL is not an absolute `https` URL (or `http` with private networks allowed), or has credentials.";
    422 InvalidEvents "invalid_events" "`events` is not 1 to 100 event types or patterns (`a.b`, `a.*`, `*`).";
    422 InvalidDescription "invalid_description" "`description` is longer than 1000 characters.";
    422 InvalidHeaders "invalid_headers" "A custom header is invalid, reserved, too long (8 KiB a value, 16 KiB in all), or there are more than 32.";
    422 InvalidSignature "invalid_signature" "The `signature` scheme's header names are invalid or reserved.";
    422 InvalidSecret "invalid_secret" "The secret does not fit the signature scheme (also when a PATCH changes the scheme to one the stored secret cannot serve).";
    422 UnknownPlugin "unknown_plugin" "The subscription names a plugin that is not loaded.";
    422 InvalidPluginConfig "invalid_plugin_config" "The plugin refused `plugin_config` (its `validate-config`), or there is a config without a plugin.";
    422 InvalidType "invalid_type" "Not an event type: up to 128 characters of dot-separated segments of letters, digits, `_` and `-`.";
    422 InvalidScopes "invalid_scopes" "`scopes` is empty, names an unknown scope, or gives `admin` to a key bound to a tenant.";
    422 InvalidMetadata "invalid_metadata" "A tenant's `metadata` is not a JSON object of at most 16 KiB, or its `name` is longer than 200 characters.";
    422 ReservedType "reserved_type" "Event types starting with `switchyard.` are Switchyard's own operational events; producers may not publish them.";
    422 InvalidExpiry "invalid_expiry" "`expires_at` is not in the future.";
    422 InvalidId "invalid_id" "The idempotency key (`id`) is not 1 to 255 characters.";
    422 NotAComponent "not_a_component" "The upload is not a WebAssembly component.";
    422 WrongWorld "wrong_world" "The component does not implement the `switchyard:plugin` `transformer` world.";
    422 Compile "compile" "The component failed to validate or compile.";
    422 CompileBudgetExceeded "compile_budget_exceeded" "Compiling the component took more time or memory than the budget (`plugin_compile_timeout`, `plugin_compile_memory_mb`).";
    422 InstanceTooLarge "instance_too_large" "One instance of the component needs more core instances, memories or tables than a plugin may use.";
    422 InputTooLarge "input_too_large" "The event is larger than the plugin input limit.";
    422 Timeout "timeout" "The plugin ran past its deadline.";
    422 OutOfMemory "out_of_memory" "The plugin ran out of memory.";
    422 StackOverflow "stack_overflow" "The plugin overflowed its stack.";
    422 Trap "trap" "The plugin trapped (a panic, `unreachable`, …); the message says why.";
    422 PluginError "plugin_error" "The plugin returned an error (or refused the config).";
    422 OutputTooLarge "output_too_large" "The plugin's output is larger than allowed.";
    422 InvalidHeader "invalid_header" "The plugin set an invalid or reserved header.";
    429 RateLimited "rate_limited" "Too many events (or bytes of events) are waiting for their commit, too many plugin uploads are in progress, or this address sent too many wrong keys: retry after `Retry-After` seconds. Nothing was stored.";
    500 Internal "internal" "A bug or an infrastructure failure (logged by the service, not described here).";
    503 Unavailable "unavailable" "The service is shutting down.";
    503 StorageFull "storage_full" "The disk holding the database is full: nothing was stored. Retry after `Retry-After` seconds.";
    503 StorageUnavailable "storage_unavailable" "The database cannot be written (or its file is not the one opened): nothing was stored. Retry after `Retry-After` seconds.";
    503 PluginLoading "plugin_loading" "The plugin is still compiling after a start (its cached artefact was missing) and did not become ready while the request waited: retry after `Retry-After` seconds.";
    503 Busy "busy" "Every plugin instance was busy for the whole call deadline; the plugin did not run. Retry after `Retry-After` seconds.";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error: `{"error": {"code", "message"}}`; a plugin failure in a dry run also has the
/// lines it logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
    /// What the plugin logged before failing (dry runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Vec<LogLineOut>>,
}

/// The code (stable, for programs) and the message (for people) of an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code.
    pub code: ErrorCode,
    /// What happened and what to do, in words.
    #[schema(example = "subscription \"sub_01JF3Y9G8Q0V7ZC2M6T4N5B8KD\" not found")]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_are_snake_case_unique_and_serialize_as_written() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{text}"
            );
            assert_eq!(serde_json::to_value(code).unwrap(), text);
            assert!((400..600).contains(&code.status()), "{text}");
            assert!(!code.description().is_empty());
        }
    }
}
