//! `match` conditions: compiled once from the config's JSON (so validation and evaluation share
//! one parser and cannot disagree), then checked against an event's envelope.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};
use switchyard_plugin_sdk::path::{check as check_path, lookup};
use switchyard_plugin_sdk::text::truncate;

/// Longest rendering of a value inside a skip reason: a whole object would drown the reason.
const MAX_SHOWN: usize = 80;
/// Longest skip reason: nested `$or`s list every branch's failure.
const MAX_REASON: usize = 1000;

/// A compiled condition object: every clause must hold (its keys are an implicit `$and`).
///
/// Clauses run in key order (alphabetical, so `$and` and `$or` first) because the config is a
/// JSON object; the first failing one names the skip reason.
#[derive(Debug)]
pub struct Condition(Vec<Clause>);

/// One key of a condition object.
#[derive(Debug)]
enum Clause {
    /// `"path": literal` or `"path": {"$op": operand, …}`: every test must hold.
    Field {
        path: String,
        tests: Vec<(Op, Value)>,
    },
    /// `"$and": [conditions]`: all must hold.
    And(Vec<Condition>),
    /// `"$or": [conditions]`: at least one must hold.
    Or(Vec<Condition>),
}

/// The comparison operators (Convoy's names, including its singular `$exist`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Nin,
    Exist,
}

/// Operator names, also listed in the error for an unknown one.
const OPERATORS: [(&str, Op); 9] = [
    ("$eq", Op::Eq),
    ("$neq", Op::Neq),
    ("$gt", Op::Gt),
    ("$gte", Op::Gte),
    ("$lt", Op::Lt),
    ("$lte", Op::Lte),
    ("$in", Op::In),
    ("$nin", Op::Nin),
    ("$exist", Op::Exist),
];

impl Condition {
    /// Compile the config's `match` value.
    ///
    /// # Errors
    /// A message naming the offending key: unknown operators, malformed operands, empty paths,
    /// `$and`/`$or` that are not non-empty arrays, a `match` that is not an object.
    pub fn compile(value: &Value) -> Result<Self, String> {
        compile_at(value, "match")
    }

    /// `None` when the envelope matches; otherwise the skip reason naming the first failed
    /// condition, e.g. `filter did not match: data.total $gte 100 (got 42)`.
    pub fn skip_reason(&self, envelope: &Value) -> Option<String> {
        let failure = self.check(envelope).err()?;
        Some(truncate(
            &format!("filter did not match: {failure}"),
            MAX_REASON,
        ))
    }

    /// `Ok` when every clause holds, else the description of the first that does not.
    fn check(&self, envelope: &Value) -> Result<(), String> {
        self.0.iter().try_for_each(|clause| clause.check(envelope))
    }
}

impl Clause {
    /// `Ok` when the clause holds, else why not.
    fn check(&self, envelope: &Value) -> Result<(), String> {
        match self {
            Clause::Field { path, tests } => {
                let actual = lookup(envelope, path);
                tests.iter().try_for_each(|(op, operand)| {
                    if op.holds(actual, operand) {
                        return Ok(());
                    }
                    let got =
                        actual.map_or_else(|| "missing".to_owned(), |v| format!("got {}", show(v)));
                    Err(format!("{path} {} {} ({got})", op.name(), show(operand)))
                })
            }
            Clause::And(conditions) => conditions.iter().try_for_each(|c| c.check(envelope)),
            Clause::Or(conditions) => {
                let mut failures = Vec::with_capacity(conditions.len());
                for condition in conditions {
                    match condition.check(envelope) {
                        Ok(()) => return Ok(()),
                        Err(failure) => failures.push(failure),
                    }
                }
                Err(format!("$or: no branch matched ({})", failures.join("; ")))
            }
        }
    }
}

impl Op {
    /// The operator called `name`, if there is one.
    fn parse(name: &str) -> Option<Op> {
        OPERATORS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, op)| *op)
    }

    /// The operator's config name, for skip reasons.
    fn name(self) -> &'static str {
        OPERATORS
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("$?", |(n, _)| n)
    }

    /// Refuse operands the operator cannot use, so a typo fails at subscription time instead of
    /// silently never matching. `Err` holds what the operand should be.
    fn check_operand(self, operand: &Value) -> Result<(), &'static str> {
        let fits = match self {
            Op::Eq | Op::Neq => true,
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => operand.is_number() || operand.is_string(),
            Op::In | Op::Nin => operand.as_array().is_some_and(|items| !items.is_empty()),
            Op::Exist => operand.is_boolean(),
        };
        match (fits, self) {
            (true, _) => Ok(()),
            (false, Op::Gt | Op::Gte | Op::Lt | Op::Lte) => Err("a number or a string"),
            (false, Op::In | Op::Nin) => Err("a non-empty array of values"),
            (false, _) => Err("true or false"),
        }
    }

    /// Whether the field's value (`None` when missing) passes this operator. A missing field
    /// fails everything but `$neq`, `$nin` and `$exist: false`.
    fn holds(self, actual: Option<&Value>, operand: &Value) -> bool {
        let order = || actual.and_then(|a| compare(a, operand));
        let list = || operand.as_array().map(Vec::as_slice).unwrap_or_default();
        match self {
            Op::Eq => actual.is_some_and(|a| matches_literal(a, operand)),
            Op::Neq => !Op::Eq.holds(actual, operand),
            Op::Gt => order() == Some(Ordering::Greater),
            Op::Gte => matches!(order(), Some(Ordering::Greater | Ordering::Equal)),
            Op::Lt => order() == Some(Ordering::Less),
            Op::Lte => matches!(order(), Some(Ordering::Less | Ordering::Equal)),
            Op::In => list().iter().any(|item| Op::Eq.holds(actual, item)),
            Op::Nin => !Op::In.holds(actual, operand),
            Op::Exist => operand.as_bool() == Some(actual.is_some()),
        }
    }
}

/// Compile a condition object found at `at` (a config location used in error messages).
fn compile_at(value: &Value, at: &str) -> Result<Condition, String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "`{at}` must be an object of conditions, got {}",
            show(value)
        ));
    };
    map.iter()
        .map(|(key, value)| compile_clause(key, value, at))
        .collect::<Result<_, _>>()
        .map(Condition)
}

/// Compile one key of a condition object.
fn compile_clause(key: &str, value: &Value, at: &str) -> Result<Clause, String> {
    match key {
        "$and" => compile_list(value, &format!("{at}.$and")).map(Clause::And),
        "$or" => compile_list(value, &format!("{at}.$or")).map(Clause::Or),
        _ if key.starts_with('$') => Err(format!(
            "unknown key `{key}` in `{at}`: only `$and` and `$or` go beside paths; \
             operators go under a path, e.g. {{\"data.total\": {{\"$gte\": 100}}}}"
        )),
        path => {
            // refuse paths that can never name a field: `""`, `data.`, `data..x`
            check_path(at, path).map_err(|e| e.message().to_owned())?;
            let tests = compile_tests(path, value)?;
            Ok(Clause::Field {
                path: path.to_owned(),
                tests,
            })
        }
    }
}

/// Compile the array under `$and` / `$or`; an empty one has no sensible meaning.
fn compile_list(value: &Value, at: &str) -> Result<Vec<Condition>, String> {
    match value {
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| compile_at(item, &format!("{at}[{i}]")))
            .collect(),
        _ => Err(format!(
            "`{at}` must be a non-empty array of conditions, got {}",
            show(value)
        )),
    }
}

/// The tests for one path: an operator object, or a literal meaning `$eq`.
fn compile_tests(path: &str, value: &Value) -> Result<Vec<(Op, Value)>, String> {
    let Some(operators) = operator_object(path, value)? else {
        return Ok(vec![(Op::Eq, value.clone())]);
    };
    operators
        .iter()
        .map(|(name, operand)| {
            let known = OPERATORS.map(|(n, _)| n).join(", ");
            let op = Op::parse(name)
                .ok_or_else(|| format!("unknown operator `{name}` on `{path}` (known: {known})"))?;
            op.check_operand(operand).map_err(|want| {
                format!("`{name}` on `{path}` needs {want}, got {}", show(operand))
            })?;
            Ok((op, operand.clone()))
        })
        .collect()
}

/// `Some` when `value` is an operator object (its keys start with `$`), `None` for a literal.
/// An object mixing both is refused: it is either a typo or an attempt at nesting.
fn operator_object<'a>(
    path: &str,
    value: &'a Value,
) -> Result<Option<&'a Map<String, Value>>, String> {
    let Value::Object(map) = value else {
        return Ok(None);
    };
    let operators = map.keys().filter(|k| k.starts_with('$')).count();
    if operators == 0 {
        return Ok(None);
    }
    if operators < map.len() {
        return Err(format!(
            "`{path}` mixes operators and plain keys ({}): use either {{\"$op\": …}} or a literal",
            map.keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Some(map))
}

/// Equality with Convoy's implicit contains: an array field matches a literal it holds.
fn matches_literal(actual: &Value, literal: &Value) -> bool {
    json_eq(actual, literal)
        || actual
            .as_array()
            .is_some_and(|items| items.iter().any(|item| json_eq(item, literal)))
}

/// JSON equality where numbers compare by value (`1 == 1.0`), which `Value`'s own `==` does not.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Order for the range operators: numbers numerically, strings lexicographically, else none.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Compare integers exactly and fall back to floats, so ids above 2^53 still compare right.
fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// Compact JSON for a skip reason, shortened to [`MAX_SHOWN`] characters.
fn show(value: &Value) -> String {
    truncate(&value.to_string(), MAX_SHOWN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope() -> Value {
        json!({
            "id": "evt_1",
            "type": "order.created",
            "timestamp": "2026-11-23T15:04:05Z",
            "data": {
                "total": 42,
                "price": 9.5,
                "country": "US",
                "vip": false,
                "note": null,
                "tags": ["new", "gift"],
                "items": [{"sku": "A-1"}, {"sku": "B-2"}],
                "big": 18_446_744_073_709_551_615_u64,
                "name": "Zoë",
            }
        })
    }

    /// The skip reason for `condition` against [`envelope`], `None` on a match.
    fn run(condition: Value) -> Option<String> {
        run_on(condition, &envelope())
    }

    fn run_on(condition: Value, envelope: &Value) -> Option<String> {
        match Condition::compile(&condition) {
            Ok(compiled) => compiled.skip_reason(envelope),
            Err(e) => panic!("config refused: {e}"),
        }
    }

    fn refused(condition: Value) -> String {
        Condition::compile(&condition).err().unwrap_or_default()
    }

    #[test]
    fn literal_equality() {
        assert_eq!(run(json!({"type": "order.created", "id": "evt_1"})), None);
        assert_eq!(
            run(json!({"type": "order.paid"})).as_deref(),
            Some("filter did not match: type $eq \"order.paid\" (got \"order.created\")")
        );
        assert_eq!(
            run(json!({"data.total": 42.0})),
            None,
            "numbers compare by value"
        );
        assert_eq!(run(json!({"data.note": null})), None);
        assert!(run(json!({"data.vip": true})).is_some());
        assert_eq!(
            run(json!({"data.items": [{"sku": "A-1"}, {"sku": "B-2"}]})),
            None
        );
        assert_eq!(run(json!({"data.items.1.sku": "B-2"})), None);
        assert_eq!(
            run(json!({})),
            None,
            "an empty condition matches everything"
        );
    }

    #[test]
    fn equality_on_arrays_contains() {
        assert_eq!(run(json!({"data.tags": "gift"})), None);
        assert_eq!(run(json!({"data.tags": {"$eq": "new"}})), None);
        assert_eq!(run(json!({"data.tags": ["new", "gift"]})), None);
        assert_eq!(run(json!({"data.items": {"sku": "B-2"}})), None);
        assert!(run(json!({"data.tags": "old"})).is_some());
        assert!(run(json!({"data.tags": {"$neq": "gift"}})).is_some());
        assert_eq!(run(json!({"data.tags": {"$in": ["old", "gift"]}})), None);
        assert!(run(json!({"data.tags": {"$nin": ["old", "gift"]}})).is_some());
    }

    #[test]
    fn comparisons() {
        assert_eq!(run(json!({"data.total": {"$gt": 41, "$lt": 43}})), None);
        assert_eq!(run(json!({"data.total": {"$gte": 42, "$lte": 42}})), None);
        assert_eq!(run(json!({"data.price": {"$gt": 9, "$lt": 10.0}})), None);
        assert_eq!(
            run(json!({"data.total": {"$gte": 100}})).as_deref(),
            Some("filter did not match: data.total $gte 100 (got 42)")
        );
        assert!(run(json!({"data.total": {"$lt": 42}})).is_some());
        assert!(run(json!({"data.total": {"$gt": 42}})).is_some());
        assert!(run(json!({"data.total": {"$lte": 41.5}})).is_some());
        assert_eq!(
            run(json!({"data.big": {"$gt": 18_446_744_073_709_551_614_u64}})),
            None
        );
        assert_eq!(run(json!({"data.big": {"$gt": -1}})), None);
        assert_eq!(
            run(json!({"timestamp": {"$gte": "2026-01-01"}})),
            None,
            "strings compare"
        );
        assert_eq!(run(json!({"data.name": {"$gt": "Zo"}})), None);
        // mismatched kinds never match
        assert!(run(json!({"data.country": {"$gt": 1}})).is_some());
        assert!(run(json!({"data.total": {"$gt": "1"}})).is_some());
        assert!(run(json!({"data.tags": {"$gte": "a"}})).is_some());
    }

    #[test]
    fn membership() {
        assert_eq!(run(json!({"data.country": {"$in": ["US", "CA"]}})), None);
        assert_eq!(
            run(json!({"data.country": {"$in": ["DE", "FR"]}})).as_deref(),
            Some("filter did not match: data.country $in [\"DE\",\"FR\"] (got \"US\")")
        );
        assert_eq!(run(json!({"data.country": {"$nin": ["DE", "FR"]}})), None);
        assert!(run(json!({"data.country": {"$nin": ["US"]}})).is_some());
        assert_eq!(run(json!({"data.total": {"$in": [1, 42.0]}})), None);
    }

    #[test]
    fn existence_and_missing_fields() {
        assert_eq!(run(json!({"data.total": {"$exist": true}})), None);
        assert_eq!(
            run(json!({"data.note": {"$exist": true}})),
            None,
            "null exists"
        );
        assert_eq!(run(json!({"data.nope": {"$exist": false}})), None);
        assert_eq!(
            run(json!({"data.nope": {"$exist": true}})).as_deref(),
            Some("filter did not match: data.nope $exist true (missing)")
        );
        assert!(run(json!({"data.total": {"$exist": false}})).is_some());
        // a missing field fails everything except $neq, $nin and $exist: false
        assert_eq!(run(json!({"data.nope": {"$neq": 1}})), None);
        assert_eq!(run(json!({"data.nope": {"$nin": [1]}})), None);
        for op in ["$eq", "$gt", "$gte", "$lt", "$lte"] {
            assert_eq!(
                run(json!({"data.nope": {op: 1}})),
                Some(format!("filter did not match: data.nope {op} 1 (missing)"))
            );
        }
        assert!(run(json!({"data.nope": {"$in": [1]}})).is_some());
        assert!(
            run(json!({"data.nope": null})).is_some(),
            "missing is not null"
        );
        // paths through scalars, out-of-range and non-numeric indexes are missing
        assert!(run(json!({"data.total.x": {"$exist": false}})).is_none());
        assert!(run(json!({"data.items.5.sku": {"$exist": false}})).is_none());
        assert!(run(json!({"data.items.x": {"$exist": false}})).is_none());
        assert!(run(json!({"data.items.-1": {"$exist": false}})).is_none());
    }

    #[test]
    fn and_or() {
        let spec_example = json!({
            "type": "order.created",
            "data.total": {"$gte": 10},
            "$or": [{"data.country": {"$in": ["DE", "FR"]}}, {"data.vip": false}]
        });
        assert_eq!(run(spec_example), None);
        assert_eq!(
            run(json!({"$or": [{"data.country": "DE"}, {"data.vip": true}]})).as_deref(),
            Some(
                "filter did not match: $or: no branch matched \
                 (data.country $eq \"DE\" (got \"US\"); data.vip $eq true (got false))"
            )
        );
        assert_eq!(
            run(json!({"$and": [{"data.total": 42}, {"data.vip": false}]})),
            None
        );
        assert_eq!(
            run(json!({"$and": [{"data.total": 42}, {"data.vip": true}]})).as_deref(),
            Some("filter did not match: data.vip $eq true (got false)")
        );
        assert_eq!(
            run(json!({"$or": [{"$and": [{"data.total": 1}]}, {"$or": [{"id": "evt_1"}]}]})),
            None
        );
    }

    #[test]
    fn odd_data() {
        for data in [json!(5), json!(null), json!("text"), json!([1, 2])] {
            let env = json!({"id": "e", "type": "t", "timestamp": "x", "data": data});
            assert_eq!(run_on(json!({"data.x": {"$exist": false}}), &env), None);
            assert!(run_on(json!({"data.x": 1}), &env).is_some());
        }
        let env = json!({"data": 5});
        assert_eq!(run_on(json!({"data": {"$gte": 5}}), &env), None);
        let env = json!({"data": [1, 2]});
        assert_eq!(run_on(json!({"data": 2, "data.0": 1}), &env), None);
    }

    #[test]
    fn long_values_are_shortened() {
        let env = json!({"data": {"text": "é".repeat(500)}});
        let reason = run_on(json!({"data.text": "x"}), &env).unwrap_or_default();
        assert!(reason.ends_with("…)"), "{reason}");
        assert!(reason.chars().count() < 150);
    }

    #[test]
    fn refuses_bad_configs() {
        assert_eq!(
            refused(json!({"data.total": {"$gtee": 1}})),
            "unknown operator `$gtee` on `data.total` \
             (known: $eq, $neq, $gt, $gte, $lt, $lte, $in, $nin, $exist)"
        );
        assert_eq!(
            refused(json!({"data.country": {"$in": "DE"}})),
            "`$in` on `data.country` needs a non-empty array of values, got \"DE\""
        );
        assert!(refused(json!({"data.country": {"$nin": []}})).contains("non-empty array"));
        assert!(refused(json!({"data.x": {"$exist": "yes"}})).contains("true or false"));
        assert!(refused(json!({"data.x": {"$gt": [1]}})).contains("a number or a string"));
        assert_eq!(
            refused(json!({"$or": []})),
            "`match.$or` must be a non-empty array of conditions, got []"
        );
        assert!(refused(json!({"$and": {"a": 1}})).starts_with("`match.$and` must be"));
        assert_eq!(
            refused(json!({"$or": [{"a": 1}, 3]})),
            "`match.$or[1]` must be an object of conditions, got 3"
        );
        assert_eq!(refused(json!({"": 1})), "empty path in `match`");
        assert_eq!(
            refused(json!({"data..x": 1})),
            "path `data..x` in `match` has an empty segment"
        );
        assert!(refused(json!({"$or": [{"data.": 1}]})).contains("`match.$or[0]`"));
        assert!(refused(json!({"$gte": 1})).starts_with("unknown key `$gte` in `match`"));
        assert!(refused(json!({"a": {"$eq": 1, "b": 2}})).contains("mixes operators"));
        assert!(refused(json!(["a"])).starts_with("`match` must be an object"));
    }
}
