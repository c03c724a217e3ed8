//! Who is calling: the tenant scope and the permissions of the request's key, put in the
//! request by the key check ([`super::auth::require_key`]) and taken by every `/v1` handler as
//! an extractor. A handler gets the [`Scope`] every store call needs only through
//! [`Principal::allow`], which checks the permission first: a tenant-bound key cannot reach an
//! unscoped query, and a handler cannot skip the permission.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiError;
use crate::tenant::{Scope, TenantId};

/// What a key may do. `admin` is everything, in every tenant (it cannot be bound to one).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Permission {
    /// Everything: tenants, keys, plugin uploads and deletes, and every other route.
    #[serde(rename = "admin")]
    Admin,
    /// Publish events (`POST /v1/events`): what a producer's backend holds.
    #[serde(rename = "events:write")]
    EventsWrite,
    /// List and show subscriptions.
    #[serde(rename = "subscriptions:read")]
    SubscriptionsRead,
    /// Create, change, delete, rotate, test and enable subscriptions.
    #[serde(rename = "subscriptions:write")]
    SubscriptionsWrite,
    /// Show events, deliveries and attempts.
    #[serde(rename = "deliveries:read")]
    DeliveriesRead,
    /// Retry deliveries and recover a subscription's failed ones.
    #[serde(rename = "deliveries:write")]
    DeliveriesWrite,
    /// List and show plugins, and dry-run them.
    #[serde(rename = "plugins:read")]
    PluginsRead,
}

impl Permission {
    /// Every permission.
    pub const ALL: &'static [Self] = &[
        Self::Admin,
        Self::EventsWrite,
        Self::SubscriptionsRead,
        Self::SubscriptionsWrite,
        Self::DeliveriesRead,
        Self::DeliveriesWrite,
        Self::PluginsRead,
    ];

    /// The word as written in `scopes`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::EventsWrite => "events:write",
            Self::SubscriptionsRead => "subscriptions:read",
            Self::SubscriptionsWrite => "subscriptions:write",
            Self::DeliveriesRead => "deliveries:read",
            Self::DeliveriesWrite => "deliveries:write",
            Self::PluginsRead => "plugins:read",
        }
    }

    /// Parses a word of `scopes`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == text)
    }
}

/// The caller of a `/v1` request.
#[derive(Debug, Clone)]
pub struct Principal {
    scope: Scope,
    permissions: Vec<Permission>,
}

impl Principal {
    /// The bootstrap admin key: everything, any tenant.
    pub fn admin() -> Self {
        Self {
            scope: Scope::Any,
            permissions: vec![Permission::Admin],
        }
    }

    /// A key's principal.
    pub fn new(tenant: Option<TenantId>, permissions: Vec<Permission>) -> Self {
        Self {
            scope: tenant.map_or(Scope::Any, Scope::One),
            permissions,
        }
    }

    fn has(&self, permission: Permission) -> bool {
        self.permissions
            .iter()
            .any(|p| *p == Permission::Admin || *p == permission)
    }

    /// The caller's scope, if it holds `permission` (else `403 forbidden`).
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] without the permission.
    pub fn allow(&self, permission: Permission) -> Result<Scope, ApiError> {
        if self.has(permission) {
            Ok(self.scope.clone())
        } else {
            Err(ApiError::Forbidden(format!(
                "this key lacks the scope {:?}",
                permission.as_str()
            )))
        }
    }

    /// The tenant a write acts in: the one named (default `default`) for a key of any
    /// tenant; a tenant-bound key's own (naming another is `403 forbidden`).
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] without the permission or when naming another tenant.
    pub fn tenant_for_write(
        &self,
        permission: Permission,
        named: Option<TenantId>,
    ) -> Result<TenantId, ApiError> {
        match (self.allow(permission)?, named) {
            (Scope::Any, named) => Ok(named.unwrap_or_else(TenantId::default_tenant)),
            (Scope::One(own), None) => Ok(own),
            (Scope::One(own), Some(named)) if named == own => Ok(own),
            (Scope::One(own), Some(named)) => Err(other_tenant(&own, &named)),
        }
    }

    /// The scope a list reads: `?tenant_id=` narrows it (all tenants without it, for a key of
    /// any tenant); a tenant-bound key naming another tenant is `403 forbidden`.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] without the permission or when naming another tenant.
    pub fn scope_for_list(
        &self,
        permission: Permission,
        named: Option<TenantId>,
    ) -> Result<Scope, ApiError> {
        let scope = self.allow(permission)?;
        match named {
            None => Ok(scope),
            Some(named) => scope.narrow(&named).ok_or_else(|| match &scope {
                Scope::One(own) => other_tenant(own, &named),
                Scope::Any => ApiError::Internal("narrowing Any failed".into()),
            }),
        }
    }
}

fn other_tenant(own: &TenantId, named: &TenantId) -> ApiError {
    ApiError::Forbidden(format!(
        "this key acts only in tenant {own:?}, not {named:?}"
    ))
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Put there by the key check of every /v1 route; absent only on a route outside it.
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn a_bound_key_acts_only_in_its_tenant() {
        let p = Principal::new(Some(tenant("a")), vec![Permission::SubscriptionsWrite]);
        let w = Permission::SubscriptionsWrite;
        assert_eq!(p.tenant_for_write(w, None).unwrap(), tenant("a"));
        assert_eq!(
            p.tenant_for_write(w, Some(tenant("a"))).unwrap(),
            tenant("a")
        );
        assert!(matches!(
            p.tenant_for_write(w, Some(tenant("b"))),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            p.allow(Permission::DeliveriesRead),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            p.scope_for_list(w, Some(tenant("b"))),
            Err(ApiError::Forbidden(_))
        ));
        assert_eq!(p.allow(w).unwrap(), Scope::One(tenant("a")));
    }

    #[test]
    fn admin_may_do_everything_anywhere() {
        let p = Principal::admin();
        for perm in Permission::ALL {
            assert_eq!(p.allow(*perm).unwrap(), Scope::Any);
        }
        assert_eq!(
            p.tenant_for_write(Permission::EventsWrite, None).unwrap(),
            TenantId::default_tenant()
        );
        assert_eq!(
            p.scope_for_list(Permission::DeliveriesRead, Some(tenant("b")))
                .unwrap(),
            Scope::One(tenant("b"))
        );
        for perm in Permission::ALL {
            assert_eq!(Permission::parse(perm.as_str()), Some(*perm));
        }
    }
}
