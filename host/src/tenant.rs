//! Tenants: one Switchyard serves many customers. Every subscription, event, delivery and
//! attempt belongs to exactly one tenant, and every store function that reads or changes them
//! takes a [`Scope`]: the API builds it from the caller's key (a tenant-bound key yields
//! `Scope::One`), so a handler cannot forget to scope a query — there is no unscoped variant
//! to call.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The tenant that owns everything created without one (and every row of a database made
/// before tenants existed).
pub const DEFAULT_TENANT: &str = "default";

/// Longest tenant id.
pub const MAX_TENANT_ID: usize = 128;

/// A tenant's id: the provider's own id for its customer, `[A-Za-z0-9_.:-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[A-Za-z0-9_.:-]{1,128}$", example = "ws_42")]
pub struct TenantId(String);

/// A string that is not a tenant id.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{0:?} is not a tenant id: use 1 to 128 characters of letters, digits, '_', '.', ':' and '-'"
)]
pub struct InvalidTenantId(pub String);

impl TenantId {
    /// Checks the grammar.
    ///
    /// # Errors
    /// When `id` is empty, too long or has other characters.
    pub fn parse(id: &str) -> Result<Self, InvalidTenantId> {
        let ok = !id.is_empty()
            && id.len() <= MAX_TENANT_ID
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if ok {
            Ok(Self(id.to_owned()))
        } else {
            Err(InvalidTenantId(
                id.chars().take(MAX_TENANT_ID + 1).collect(),
            ))
        }
    }

    /// The `default` tenant.
    pub fn default_tenant() -> Self {
        Self(DEFAULT_TENANT.to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the `default` tenant.
    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_TENANT
    }

    /// From a stored value (already checked when it was written).
    pub(crate) fn from_stored(id: String) -> Self {
        Self(id)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Which tenants a store call may see or change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant (the admin key, an unbound key; internal work such as dispatch).
    Any,
    /// Only this tenant's objects: another tenant's id is "not found".
    One(TenantId),
}

impl Scope {
    /// The tenant to filter by, as bound to `(?N IS NULL OR tenant_id = ?N)`.
    pub fn filter(&self) -> Option<String> {
        match self {
            Self::Any => None,
            Self::One(t) => Some(t.as_str().to_owned()),
        }
    }

    /// Whether an object of `tenant` is inside the scope.
    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            Self::Any => true,
            Self::One(t) => t.as_str() == tenant,
        }
    }

    /// Narrows to one tenant: `Any` becomes `One(tenant)`; `One(t)` stays only if it is
    /// `tenant` (else `None`: the caller may not act there).
    pub fn narrow(&self, tenant: &TenantId) -> Option<Self> {
        match self {
            Self::Any => Some(Self::One(tenant.clone())),
            Self::One(t) if t == tenant => Some(self.clone()),
            Self::One(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar() {
        for ok in ["default", "ws_42", "acme.eu:1-b", &"x".repeat(128)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(129), "a\n"] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<TenantId>("\"a/b\"").is_err());
    }

    #[test]
    fn scopes() {
        let a = TenantId::parse("a").unwrap();
        let b = TenantId::parse("b").unwrap();
        assert!(Scope::Any.allows("a"));
        assert!(!Scope::One(a.clone()).allows("b"));
        assert_eq!(Scope::Any.narrow(&a), Some(Scope::One(a.clone())));
        assert_eq!(Scope::One(a.clone()).narrow(&b), None);
        assert_eq!(Scope::One(a.clone()).filter().as_deref(), Some("a"));
        assert_eq!(Scope::Any.filter(), None);
    }
}
