//! Tenants and API keys.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::common::Timestamp;
use crate::api::principal::Permission;
use crate::store::{StoredKey, Tenant};
use crate::tenant::TenantId;

/// `PUT /v1/tenants/{id}`'s body (may be left out: a tenant with no name and `{}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Acme Inc.", "metadata": {"plan": "pro"}}))]
pub struct TenantIn {
    /// A display name, up to 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Anything the provider wants to keep with the tenant: a JSON object, up to 16 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
}

/// A tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantOut {
    /// Its id (the provider's own).
    pub id: TenantId,
    /// Its display name.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Its metadata, as sent.
    #[schema(value_type = Object)]
    pub metadata: Box<RawValue>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl TryFrom<&Tenant> for TenantOut {
    type Error = serde_json::Error;

    fn try_from(t: &Tenant) -> Result<Self, Self::Error> {
        Ok(Self {
            id: t.id.clone(),
            name: t.name.clone(),
            metadata: RawValue::from_string(t.metadata.clone())?,
            created_at: Timestamp::from_unix_ms(t.created_at),
            updated_at: Timestamp::from_unix_ms(t.updated_at),
        })
    }
}

/// `?tenant_id=` of a list: only that tenant's (a key of any tenant sees all without it; a
/// tenant-bound key sees only its own either way, and naming another is `403`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// Only this tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub tenant_id: Option<TenantId>,
}

/// `POST /v1/keys`'s body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"tenant_id": "ws_42", "scopes": ["subscriptions:read", "subscriptions:write", "deliveries:read"], "description": "Acme's portal", "expires_at": "2026-12-02T00:00:00Z"}))]
pub struct KeyIn {
    /// The tenant the key acts in; left out, the key acts in any tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    /// What it may do (at least one; `admin` only without `tenant_id`).
    pub scopes: Vec<Permission>,
    /// Free text, up to 1000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When it stops working (answered `401` after); left out, never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// A key (never the key itself, except in [`KeyCreated`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyOut {
    /// Its id (`key_…`), the path of `DELETE /v1/keys/{id}`.
    pub id: String,
    /// The key's public start (`sy_key_…`), to recognise it.
    pub prefix: String,
    /// The tenant it acts in; `null`: any.
    #[schema(required = true)]
    pub tenant_id: Option<TenantId>,
    /// What it may do.
    pub scopes: Vec<Permission>,
    /// Free text.
    #[schema(required = true)]
    pub description: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops working; `null`: never.
    #[schema(required = true)]
    pub expires_at: Option<Timestamp>,
    /// When it last authenticated, to the minute (a use within a minute of the one shown is
    /// not written); `null`: never used.
    #[schema(required = true)]
    pub last_used_at: Option<Timestamp>,
}

impl From<&StoredKey> for KeyOut {
    fn from(k: &StoredKey) -> Self {
        Self {
            id: k.id.clone(),
            prefix: k.prefix.clone(),
            tenant_id: k.tenant_id.clone(),
            scopes: k
                .scopes
                .iter()
                .filter_map(|s| Permission::parse(s))
                .collect(),
            description: k.description.clone(),
            created_at: Timestamp::from_unix_ms(k.created_at),
            expires_at: k.expires_at.map(Timestamp::from_unix_ms),
            last_used_at: k.last_used_at.map(Timestamp::from_unix_ms),
        }
    }
}

/// `POST /v1/keys`'s answer: the key, shown only now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyCreated {
    /// The key: `Authorization: Bearer <key>`. Stored only as a hash; not shown again.
    pub key: String,
    /// The key's record.
    #[serde(flatten)]
    pub record: KeyOut,
}
