//! `switchyard verify`: checks a received webhook's signature offline, the way a receiver's
//! code should, and says exactly why it fails — for people debugging their verification.
//! Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`, secret
//! `whsec_…`) by default; the hex scheme (`sha256=<hex>` over the body, or over
//! `"<timestamp>.<body>"` with a timestamp header) with `--scheme hmac-sha256-hex`.

use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::input;
use crate::cli::output::outln;

/// Shown under `switchyard verify --help`.
pub const EXAMPLE: &str = "Examples:\n  switchyard verify --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --body @body.json \\\n    --header 'webhook-id: evt_01J...' --header 'webhook-timestamp: 1733050000' \\\n    --header 'webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4='\n  switchyard verify --scheme hmac-sha256-hex --signature-header x-hub-signature-256 \\\n    --secret \"$SECRET\" --body @body.json --header 'x-hub-signature-256: sha256=7571...'\n\nExit status: 0 valid, 1 invalid (the reason is printed), 2 bad input.";

/// Standard Webhooks' recommended tolerance for the timestamp.
const DEFAULT_TOLERANCE: &str = "5m";

/// `switchyard verify`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The subscription's signing secret (whsec_… for Standard Webhooks; the text as-is for hex)
    #[arg(long, env = "SWITCHYARD_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// The body exactly as received: TEXT, @file or @- (stdin)
    #[arg(long, value_name = "TEXT|@FILE")]
    body: String,
    /// A received header, 'name: value' (repeatable)
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Signature scheme
    #[arg(long, value_enum, default_value = "standard-webhooks")]
    scheme: SchemeArg,
    /// Hex scheme: the header carrying the signature
    #[arg(long, default_value = "x-hub-signature-256")]
    signature_header: String,
    /// Hex scheme: text before the hex digest
    #[arg(long, default_value = "sha256=")]
    prefix: String,
    /// Hex scheme: the header carrying the signed timestamp, when the scheme signs one
    #[arg(long)]
    timestamp_header: Option<String>,
    /// How far the timestamp may be from now (replays older than this are refused)
    #[arg(long, default_value = DEFAULT_TOLERANCE)]
    tolerance: String,
    /// Do not check the timestamp's age (for webhooks captured earlier)
    #[arg(long)]
    ignore_timestamp: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SchemeArg {
    /// Standard Webhooks
    StandardWebhooks,
    /// sha256=<hex> HMAC (GitHub-style), optionally over "<timestamp>.<body>"
    HmacSha256Hex,
}

/// A verdict with its explanation.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Valid(String),
    Invalid(String),
}

/// Runs `verify`.
pub fn run(args: &Args) -> ExitCode {
    match check(args) {
        Ok(Verdict::Valid(why)) => {
            outln!("valid: {why}");
            ExitCode::SUCCESS
        }
        Ok(Verdict::Invalid(why)) => {
            outln!("invalid: {why}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn check(args: &Args) -> Result<Verdict, String> {
    let body = body_bytes(&args.body)?;
    let headers: Vec<(String, String)> = args
        .headers
        .iter()
        .map(|h| input::header(h).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let tolerance = if args.ignore_timestamp {
        None
    } else {
        Some(
            humantime::parse_duration(&args.tolerance)
                .map_err(|e| format!("--tolerance {:?}: {e}", args.tolerance))?,
        )
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let received = Received { headers: &headers };
    Ok(match args.scheme {
        SchemeArg::StandardWebhooks => standard(&args.secret, &received, &body, now, tolerance),
        SchemeArg::HmacSha256Hex => hex_scheme(args, &received, &body, now, tolerance),
    })
}

fn body_bytes(arg: &str) -> Result<Vec<u8>, String> {
    match arg.strip_prefix('@') {
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .map_err(|e| format!("reading standard input: {e}"))?;
            Ok(bytes)
        }
        Some(path) => std::fs::read(path).map_err(|e| format!("{path}: {e}")),
        None => Ok(arg.as_bytes().to_vec()),
    }
}

struct Received<'a> {
    headers: &'a [(String, String)],
}

impl Received<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Checks the timestamp header's value against now and the tolerance.
fn timestamp(value: &str, now: i64, tolerance: Option<Duration>) -> Result<i64, String> {
    let ts: i64 = value
        .trim()
        .parse()
        .map_err(|_| format!("the timestamp {value:?} is not unix seconds"))?;
    if let Some(tolerance) = tolerance {
        let limit = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
        let age = now.saturating_sub(ts);
        if age > limit {
            return Err(format!(
                "the timestamp is {age} s old, more than the tolerance of {limit} s (a replay? use --ignore-timestamp for a captured webhook)"
            ));
        }
        if age < -limit {
            return Err(format!(
                "the timestamp is {} s in the future, more than the tolerance of {limit} s (is a clock wrong?)",
                -age
            ));
        }
    }
    Ok(ts)
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

fn standard(
    secret: &str,
    received: &Received<'_>,
    body: &[u8],
    now: i64,
    tolerance: Option<Duration>,
) -> Verdict {
    let key = match BASE64.decode(secret.strip_prefix("whsec_").unwrap_or(secret)) {
        Ok(key) if !key.is_empty() => key,
        _ => {
            return Verdict::Invalid(
                "the secret is not whsec_ followed by base64 (is this the subscription's secret?)"
                    .into(),
            );
        }
    };
    let (Some(id), Some(ts), Some(signatures)) = (
        received.get("webhook-id"),
        received.get("webhook-timestamp"),
        received.get("webhook-signature"),
    ) else {
        let missing: Vec<&str> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .into_iter()
            .filter(|h| received.get(h).is_none())
            .collect();
        return Verdict::Invalid(format!("missing header(s): {}", missing.join(", ")));
    };
    let ts = match timestamp(ts, now, tolerance) {
        Ok(ts) => ts,
        Err(why) => return Verdict::Invalid(why),
    };
    let candidates: Vec<&str> = signatures.split_whitespace().collect();
    let v1: Vec<&str> = candidates
        .iter()
        .filter_map(|c| c.strip_prefix("v1,"))
        .collect();
    if v1.is_empty() {
        return Verdict::Invalid(format!(
            "webhook-signature has no v1,<base64> entry (got {signatures:?})"
        ));
    }
    for (i, candidate) in v1.iter().enumerate() {
        let Ok(given) = BASE64.decode(candidate) else {
            continue;
        };
        let mut mac = mac(&key);
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        if mac.verify_slice(&given).is_ok() {
            return Verdict::Valid(format!(
                "signature {} of {} matches (webhook-id {id}, timestamp {ts}, {} s ago)",
                i + 1,
                v1.len(),
                now.saturating_sub(ts)
            ));
        }
    }
    Verdict::Invalid(format!(
        "none of the {} v1 signature(s) matches: the body, webhook-id or webhook-timestamp differ from what was signed, or the secret is not this subscription's (the body must be the exact bytes received, before any JSON parsing)",
        v1.len()
    ))
}

fn hex_scheme(
    args: &Args,
    received: &Received<'_>,
    body: &[u8],
    now: i64,
    tolerance: Option<Duration>,
) -> Verdict {
    let Some(value) = received.get(&args.signature_header) else {
        return Verdict::Invalid(format!("missing header {}", args.signature_header));
    };
    let Some(digest) = value.trim().strip_prefix(args.prefix.as_str()) else {
        return Verdict::Invalid(format!(
            "{} does not start with {:?} (got {value:?}; see --prefix)",
            args.signature_header, args.prefix
        ));
    };
    let Ok(given) = hex::decode(digest) else {
        return Verdict::Invalid(format!("{:?} is not a hex digest", digest));
    };
    let mut mac = mac(args.secret.as_bytes());
    let mut signed_ts = None;
    if let Some(ts_header) = &args.timestamp_header {
        let Some(ts) = received.get(ts_header) else {
            return Verdict::Invalid(format!("missing header {ts_header}"));
        };
        match timestamp(ts, now, tolerance) {
            Ok(ts) => signed_ts = Some(ts),
            Err(why) => return Verdict::Invalid(why),
        }
        mac.update(format!("{}.", ts.trim()).as_bytes());
    }
    mac.update(body);
    if mac.verify_slice(&given).is_ok() {
        let over = match signed_ts {
            Some(ts) => format!("\"{ts}.<body>\""),
            None => "the body".to_owned(),
        };
        Verdict::Valid(format!(
            "{} matches (HMAC-SHA256 over {over})",
            args.signature_header
        ))
    } else {
        Verdict::Invalid(format!(
            "{} does not match: the body differs from what was signed, or the secret is not this subscription's{}",
            args.signature_header,
            if args.timestamp_header.is_none() {
                " (does the sender sign a timestamp too? see --timestamp-header)"
            } else {
                ""
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(secret: &str, body: &str, headers: &[(&str, &str)]) -> Args {
        Args {
            secret: secret.into(),
            body: body.into(),
            headers: headers.iter().map(|(n, v)| format!("{n}: {v}")).collect(),
            scheme: SchemeArg::StandardWebhooks,
            signature_header: "x-hub-signature-256".into(),
            prefix: "sha256=".into(),
            timestamp_header: None,
            tolerance: "5m".into(),
            ignore_timestamp: false,
        }
    }

    /// Signed by the independent `standardwebhooks` crate, checked by us.
    #[test]
    fn accepts_what_the_reference_library_signs_and_says_why_not_otherwise() {
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let body = r#"{"type":"post.published"}"#;
        let signature = standardwebhooks::Webhook::new(secret)
            .unwrap()
            .sign("evt_1", now, body.as_bytes())
            .unwrap();
        let ts = now.to_string();
        let good = [
            ("Webhook-Id", "evt_1"),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", signature.as_str()),
        ];
        assert!(matches!(
            check(&args(secret, body, &good)),
            Ok(Verdict::Valid(_))
        ));

        let tampered = check(&args(secret, r#"{"type":"post.deleted"}"#, &good)).unwrap();
        assert!(
            matches!(&tampered, Verdict::Invalid(why) if why.contains("none of the 1")),
            "{tampered:?}"
        );

        let old = (now - 3600).to_string();
        let stale = [good[0], ("webhook-timestamp", old.as_str()), good[2]];
        let verdict = check(&args(secret, body, &stale)).unwrap();
        assert!(
            matches!(&verdict, Verdict::Invalid(why) if why.contains("3600 s old")),
            "{verdict:?}"
        );

        let verdict = check(&args(secret, body, &good[..2])).unwrap();
        assert_eq!(
            verdict,
            Verdict::Invalid("missing header(s): webhook-signature".into())
        );

        let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        assert!(matches!(
            check(&args(other, body, &good)),
            Ok(Verdict::Invalid(_))
        ));
    }

    /// The spec's test vector, with the timestamp check off (it is from 2022).
    #[test]
    fn the_spec_vector_verifies_when_the_age_is_ignored() {
        let mut a = args(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            r#"{"email":"test@example.com","username":"test_user"}"#,
            &[
                ("webhook-id", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
                ("webhook-timestamp", "1649367553"),
                (
                    "webhook-signature",
                    "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
                ),
            ],
        );
        assert!(matches!(check(&a), Ok(Verdict::Invalid(why)) if why.contains("old")));
        a.ignore_timestamp = true;
        assert!(matches!(check(&a), Ok(Verdict::Valid(_))));
    }

    /// GitHub's documented example.
    #[test]
    fn hex_scheme_checks_githubs_example() {
        let mut a = args(
            "It's a Secret to Everybody",
            "Hello, World!",
            &[(
                "X-Hub-Signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            )],
        );
        a.scheme = SchemeArg::HmacSha256Hex;
        assert!(matches!(check(&a), Ok(Verdict::Valid(_))));
        a.body = "Hello, World?".into();
        assert!(
            matches!(check(&a), Ok(Verdict::Invalid(why)) if why.contains("--timestamp-header"))
        );
    }
}
