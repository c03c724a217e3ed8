//! `switchyard tenants …`: the customers one Switchyard serves (admin key), and
//! `switchyard keys …`: API keys with scopes, bound to a tenant or not, short-lived or not.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use switchyard::api::Permission;
use switchyard::api::models::{
    KeyCreated, KeyIn, KeyOut, KeyPage, TenantIn, TenantOut, TenantPage, Timestamp,
};
use switchyard::tenant::TenantId;

use super::client::{Answer, Api, Body, CliError, Connection, PROFILES_HELP, encode, query};
use super::subscriptions::PageArgs;
use super::{input, output};
use crate::cli::output::outln;

/// `switchyard tenants`
#[derive(clap::Args)]
#[command(after_long_help = PROFILES_HELP)]
pub struct TenantArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: TenantCommand,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant under your own id, or change its name and metadata.
    #[command(
        after_help = "Example:\n  switchyard tenants put ws_42 --name 'Acme Inc.' --metadata '{\"plan\": \"pro\"}'"
    )]
    Put {
        /// The tenant's id: yours, e.g. your workspace id ([A-Za-z0-9_.:-], up to 128)
        #[arg(value_parser = super::tenant_arg)]
        id: TenantId,
        /// A display name
        #[arg(long)]
        name: Option<String>,
        /// Your own data about it: a JSON object, @file or @-
        #[arg(long, value_name = "JSON|@FILE")]
        metadata: Option<String>,
    },
    /// List tenants.
    #[command(after_help = "Example:\n  switchyard tenants list")]
    List(PageArgs),
    /// Show a tenant.
    #[command(after_help = "Example:\n  switchyard tenants get ws_42")]
    Get {
        /// The tenant's id.
        id: String,
    },
    /// Delete a tenant: its subscriptions and keys go, its pending deliveries are cancelled.
    #[command(after_help = "Example:\n  switchyard tenants delete ws_42")]
    Delete {
        /// The tenant's id.
        id: String,
    },
}

/// `switchyard keys`
#[derive(clap::Args)]
#[command(after_long_help = PROFILES_HELP)]
pub struct KeyArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key; prints the key, shown only now.
    #[command(
        after_help = "Example:\n  switchyard keys create --tenant ws_42 --scopes subscriptions:read,subscriptions:write,deliveries:read --expires-in 1h"
    )]
    Create {
        /// The tenant it acts in [default: any tenant]
        #[arg(long, value_name = "TENANT_ID", value_parser = super::tenant_arg)]
        tenant: Option<TenantId>,
        /// Comma-separated: admin, events:write, subscriptions:read, subscriptions:write,
        /// deliveries:read, deliveries:write, plugins:read
        #[arg(long, value_delimiter = ',', required = true, value_parser = scope_arg)]
        scopes: Vec<Permission>,
        /// Free text
        #[arg(long)]
        description: Option<String>,
        /// How long it works, e.g. 15m, 8h, 30d [default: until revoked]
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<humantime::Duration>,
    },
    /// List the keys that are not revoked (never the keys themselves).
    #[command(after_help = "Example:\n  switchyard keys list --tenant ws_42")]
    List {
        /// Only this tenant's keys
        #[arg(long, value_name = "TENANT_ID")]
        tenant: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Revoke a key at once.
    #[command(after_help = "Example:\n  switchyard keys delete key_01J...")]
    Delete {
        /// The key's id (key_…).
        id: String,
    },
}

fn scope_arg(text: &str) -> Result<Permission, String> {
    Permission::parse(text).ok_or_else(|| {
        let all: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown scope {text:?}; one of {}", all.join(", "))
    })
}

/// Runs a `tenants` command.
///
/// # Errors
/// Bad input, or the server's refusal.
pub async fn run_tenants(args: TenantArgs) -> Result<(), CliError> {
    let api = Api::connect(&args.conn)?;
    match args.command {
        TenantCommand::Put { id, name, metadata } => {
            let metadata = metadata
                .map(|m| input::json(&m, "--metadata"))
                .transpose()?
                .map(|m| serde_json::value::to_raw_value(&m))
                .transpose()
                .map_err(|e| CliError::Input(e.to_string()))?;
            let body = Body::json(&TenantIn { name, metadata })?;
            let path = format!("/v1/tenants/{}", encode(id.as_str()));
            let tenant: Answer<TenantOut> = api.call(Method::PUT, &path, Some(body)).await?;
            api.show(&tenant, show_tenant);
        }
        TenantCommand::List(page) => {
            let path = format!(
                "/v1/tenants{}",
                query(&[
                    ("limit", page.limit.map(|l| l.to_string())),
                    ("cursor", page.cursor)
                ])
            );
            let page: Answer<TenantPage> = api.get(&path).await?;
            api.show(&page, |page| {
                output::table(
                    &["id", "name", "created_at"],
                    page.data.iter().map(|t| {
                        vec![
                            t.id.to_string(),
                            output::opt(t.name.as_deref()),
                            t.created_at.to_string(),
                        ]
                    }),
                );
                output::next_page(page.next_cursor.as_deref());
            });
        }
        TenantCommand::Get { id } => {
            let tenant: Answer<TenantOut> =
                api.get(&format!("/v1/tenants/{}", encode(&id))).await?;
            api.show(&tenant, show_tenant);
        }
        TenantCommand::Delete { id } => {
            api.send(
                Method::DELETE,
                &format!("/v1/tenants/{}", encode(&id)),
                None,
            )
            .await?;
            if api.json {
                output::json(&json!({ "deleted": id }));
            } else {
                outln!("deleted tenant {id}");
            }
        }
    }
    Ok(())
}

fn show_tenant(t: &TenantOut) {
    output::record(&[
        ("id", t.id.to_string()),
        ("name", output::opt(t.name.as_deref())),
        ("metadata", t.metadata.get().to_owned()),
        ("created_at", t.created_at.to_string()),
        ("updated_at", t.updated_at.to_string()),
    ]);
}

/// Runs a `keys` command.
///
/// # Errors
/// Bad input, or the server's refusal.
pub async fn run_keys(args: KeyArgs) -> Result<(), CliError> {
    let api = Api::connect(&args.conn)?;
    match args.command {
        KeyCommand::Create {
            tenant,
            scopes,
            description,
            expires_in,
        } => {
            let expires_at = expires_in
                .map(|d| {
                    let at = time::OffsetDateTime::now_utc()
                        .checked_add(time::Duration::try_from(*d).unwrap_or(time::Duration::MAX));
                    at.map(Timestamp)
                        .ok_or_else(|| CliError::Input("--expires-in is too long".into()))
                })
                .transpose()?;
            let body = Body::json(&KeyIn {
                tenant_id: tenant,
                scopes,
                description,
                expires_at,
            })?;
            let key: Answer<KeyCreated> = api.call(Method::POST, "/v1/keys", Some(body)).await?;
            api.show(&key, |k| {
                show_key(&k.record);
                outln!("key (shown only now; store it): {}", k.key);
            });
        }
        KeyCommand::List { tenant, page } => {
            let path = format!(
                "/v1/keys{}",
                query(&[
                    ("tenant_id", tenant),
                    ("limit", page.limit.map(|l| l.to_string())),
                    ("cursor", page.cursor)
                ])
            );
            let page: Answer<KeyPage> = api.get(&path).await?;
            api.show(&page, |page| {
                output::table(
                    &["id", "tenant", "scopes", "expires_at", "description"],
                    page.data.iter().map(|k| {
                        vec![
                            k.id.clone(),
                            output::opt(k.tenant_id.as_ref()),
                            scopes_text(k),
                            output::opt(k.expires_at),
                            output::opt(k.description.as_deref()),
                        ]
                    }),
                );
                output::next_page(page.next_cursor.as_deref());
            });
        }
        KeyCommand::Delete { id } => {
            api.send(Method::DELETE, &format!("/v1/keys/{}", encode(&id)), None)
                .await?;
            if api.json {
                output::json(&json!({ "revoked": id }));
            } else {
                outln!("revoked key {id}");
            }
        }
    }
    Ok(())
}

fn scopes_text(k: &KeyOut) -> String {
    k.scopes
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn show_key(k: &KeyOut) {
    output::record(&[
        ("id", k.id.clone()),
        ("prefix", k.prefix.clone()),
        ("tenant", output::opt(k.tenant_id.as_ref())),
        ("scopes", scopes_text(k)),
        ("description", output::opt(k.description.as_deref())),
        ("created_at", k.created_at.to_string()),
        ("expires_at", output::opt(k.expires_at)),
    ]);
}
