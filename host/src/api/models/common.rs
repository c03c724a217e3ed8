//! Types shared by every resource: typed ids, timestamps, pages, and PATCH fields.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, ToSchema};

/// Defines an id type: a string with a fixed prefix (`sub_`, `evt_`, `dlv_`) and a ULID, so ids
/// sort by creation time and one kind cannot be passed where another is meant. Any string
/// deserializes (an id that does not exist, or of the wrong kind, is answered `404`, not `400`);
/// the prefix is what the service generates.
macro_rules! create_id_type {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $example:literal) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, example = $example)]
        pub struct $name(pub String);

        impl $name {
            /// The prefix of ids the service generates.
            pub const PREFIX: &'static str = $prefix;

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

create_id_type!(
    /// A subscription's id: `sub_` and a ULID.
    SubscriptionId,
    "sub_",
    "sub_01JF3Y9G8Q0V7ZC2M6T4N5B8KD"
);
create_id_type!(
    /// An event's id: `evt_` and a ULID. Receivers get it as `webhook-id`.
    EventId,
    "evt_",
    "evt_01JF3YA2W7H1K9D3F5R8X0P6QS"
);
create_id_type!(
    /// A delivery's id (one event to one subscription): `dlv_` and a ULID.
    DeliveryId,
    "dlv_",
    "dlv_01JF3YA2W8B4N6T2V9C1M3Z7HE"
);

/// A point in time, as RFC 3339 in UTC (`2026-12-01T11:27:00.123Z`). The one formatter of the
/// API's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = DateTime, example = "2026-12-01T11:27:00.123Z")]
pub struct Timestamp(#[serde(with = "time::serde::rfc3339")] pub time::OffsetDateTime);

impl Timestamp {
    /// From Unix milliseconds (the store's unit); out-of-range values clamp to the epoch.
    pub fn from_unix_ms(ms: i64) -> Self {
        Self(
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        )
    }

    /// As Unix milliseconds, saturating.
    pub fn unix_ms(self) -> i64 {
        i64::try_from(self.0.unix_timestamp_nanos() / 1_000_000).unwrap_or(
            if self.0.year() < 1970 {
                i64::MIN
            } else {
                i64::MAX
            },
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self
            .0
            .format(&time::format_description::well_known::Rfc3339)
        {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "{}", self.0),
        }
    }
}

/// A page of a list: `data` and the cursor of the next page (`null` on the last one). Pass it
/// back as `?cursor=` with the same filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// This page's items.
    pub data: Vec<T>,
    /// The cursor of the next page, or `null` when this is the last.
    pub next_cursor: Option<String>,
}

/// `Page<SubscriptionOut>` is the schema `SubscriptionPage`, its items a reference to
/// `SubscriptionOut` (a derive would inline the item type under a generated name).
impl<T: ToSchema> utoipa::PartialSchema for Page<T> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "A page of a list: `data` and the cursor of the next page (`null` on the last \
                 one). Pass it back as `?cursor=` with the same filters.",
            ))
            .property(
                "data",
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(T::name()))
                    .description(Some("This page's items.")),
            )
            .required("data")
            .property(
                "next_cursor",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .description(Some(
                        "The cursor of the next page, or `null` when this is the last.",
                    )),
            )
            .required("next_cursor")
            .into()
    }
}

impl<T: ToSchema> ToSchema for Page<T> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}Page", T::name().trim_end_matches("Out")))
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

impl<T> Page<T> {
    /// A page from `limit + 1` rows: the extra row only says there is a next page, whose
    /// cursor is the last kept row's `cursor`.
    pub fn from_rows<R>(
        mut rows: Vec<R>,
        limit: usize,
        cursor: impl Fn(&R) -> String,
        view: impl Fn(R) -> T,
    ) -> Self {
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more { rows.last().map(cursor) } else { None };
        Self {
            data: rows.into_iter().map(view).collect(),
            next_cursor,
        }
    }
}

/// `?limit=&cursor=` of a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 250.
    #[param(minimum = 1, maximum = 250, default = 50)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A field of a PATCH body that may be left out (keep the current value), set to `null` (clear
/// it) or given a value. Use with `#[serde(default, skip_serializing_if = "Patch::is_absent")]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    /// Not in the body: the current value stays.
    #[default]
    Absent,
    /// `null`: the value is cleared.
    Null,
    /// A new value.
    Value(T),
}

impl<T> Patch<T> {
    /// Whether the field was left out.
    pub fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }

    /// The same patch of another value.
    pub fn map_value<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Self::Absent => Patch::Absent,
            Self::Null => Patch::Null,
            Self::Value(value) => Patch::Value(f(value)),
        }
    }

    /// The value after the patch, given the current one.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Self::Absent => current,
            Self::Null => None,
            Self::Value(value) => Some(value),
        }
    }
}

impl<T> From<Option<T>> for Patch<T> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Self::Value)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Only called when the field is present (absent fields take `Default`).
        Option::<T>::deserialize(d).map(Self::from)
    }
}

impl<T: Serialize> Serialize for Patch<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // Skipped with `skip_serializing_if`; `null` if a caller forgets.
            Self::Absent | Self::Null => s.serialize_none(),
            Self::Value(value) => s.serialize_some(value),
        }
    }
}

/// A field of a PATCH body that may be left out (keep the current value) or given a value, but
/// not set to `null` (the field cannot be empty). Use with
/// `#[serde(default, skip_serializing_if = "NonNullPatch::is_absent")]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NonNullPatch<T> {
    /// Not in the body: the current value stays.
    #[default]
    Absent,
    /// A new value.
    Value(T),
}

impl<T> NonNullPatch<T> {
    /// Whether the field was left out.
    pub fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }

    /// The value after the patch, given the current one.
    pub fn apply(self, current: T) -> T {
        match self {
            Self::Absent => current,
            Self::Value(value) => value,
        }
    }

    /// The new value, if one was given.
    pub fn into_option(self) -> Option<T> {
        match self {
            Self::Absent => None,
            Self::Value(value) => Some(value),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonNullPatch<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `T` itself refuses `null` (unless `T` is an `Option`).
        T::deserialize(d).map(Self::Value)
    }
}

impl<T: Serialize> Serialize for NonNullPatch<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Absent => s.serialize_none(),
            Self::Value(value) => value.serialize(s),
        }
    }
}

/// `GET /healthz`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthOut {
    /// `ok` when the store can keep what it acknowledges (else a 503 error).
    #[schema(example = "ok")]
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Body {
        #[serde(default, skip_serializing_if = "Patch::is_absent")]
        nullable: Patch<String>,
        #[serde(default, skip_serializing_if = "NonNullPatch::is_absent")]
        required: NonNullPatch<String>,
    }

    #[test]
    fn patch_fields_tell_absent_from_null_from_a_value() {
        let parse = |text: &str| serde_json::from_str::<Body>(text);
        let body = parse("{}").unwrap();
        assert_eq!(body.nullable, Patch::Absent);
        assert_eq!(body.required, NonNullPatch::Absent);
        let body = parse(r#"{"nullable": null, "required": "b"}"#).unwrap();
        assert_eq!(body.nullable, Patch::Null);
        assert_eq!(body.required, NonNullPatch::Value("b".into()));
        let body = parse(r#"{"nullable": "a"}"#).unwrap();
        assert_eq!(body.nullable, Patch::Value("a".into()));
        assert!(parse(r#"{"required": null}"#).is_err(), "null is refused");
        assert!(parse(r#"{"nullable": 1}"#).is_err());
        // And back: absent fields stay out, null stays null.
        for text in [
            r#"{}"#,
            r#"{"nullable":null}"#,
            r#"{"nullable":"a","required":"b"}"#,
        ] {
            assert_eq!(serde_json::to_string(&parse(text).unwrap()).unwrap(), text);
        }
        assert_eq!(Patch::Value(1).apply(Some(2)), Some(1));
        assert_eq!(Patch::<i32>::Null.apply(Some(2)), None);
        assert_eq!(Patch::<i32>::Absent.apply(Some(2)), Some(2));
        assert_eq!(NonNullPatch::Absent.apply(2), 2);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_and_round_trip() {
        let at = Timestamp::from_unix_ms(1_700_000_000_123);
        let text = serde_json::to_string(&at).unwrap();
        assert_eq!(text, r#""2023-11-14T22:13:20.123Z""#);
        let back: Timestamp = serde_json::from_str(&text).unwrap();
        assert_eq!(back.unix_ms(), 1_700_000_000_123);
        assert_eq!(
            serde_json::to_string(&Timestamp::from_unix_ms(0)).unwrap(),
            r#""1970-01-01T00:00:00Z""#
        );
    }

    #[test]
    fn pages_keep_limit_rows_and_point_past_the_last() {
        let page = Page::from_rows(vec![1, 2, 3], 2, |n| n.to_string(), |n| n * 10);
        assert_eq!(page.data, [10, 20]);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let page = Page::from_rows(vec![1, 2], 2, |n| n.to_string(), |n| n);
        assert_eq!(page.next_cursor, None);
    }
}
