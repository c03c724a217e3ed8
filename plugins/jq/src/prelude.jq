# Switchyard's additions to jq's prelude (documented in README.md).

# `skip("why")`: deliver nothing for this event, recorded as skipped with this reason.
# It raises an error the plugin recognises, so it also ends a `reduce` or `foreach`
# (a `try` around it would catch it, like any error).
def skip($reason): error({"__switchyard_skip": $reason});
